//! The emulated RouterOS version and every behaviour that depends on it (REST availability,
//! `!empty`, login methods, date format, 32-bit interface counters). Keep all version gates
//! here so a reader can see the whole matrix of routeros.md §0 in one place.

use std::fmt;
use std::str::FromStr;

/// A RouterOS version such as `7.16` or `6.45.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid RouterOS version {0:?} (expected e.g. 7.16 or 6.45.1)")]
pub struct VersionError(String);

impl FromStr for RosVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.');
        let mut next = |required: bool| -> Result<u32, VersionError> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| VersionError(s.to_owned())),
                None if required => Err(VersionError(s.to_owned())),
                None => Ok(0),
            }
        };
        let v = RosVersion {
            major: next(true)?,
            minor: next(true)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return Err(VersionError(s.to_owned()));
        }
        Ok(v)
    }
}

impl fmt::Display for RosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

impl RosVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        RosVersion {
            major,
            minor,
            patch,
        }
    }

    /// REST exists from 7.1 (routeros.md §0).
    pub fn rest_enabled(self) -> bool {
        self >= RosVersion::new(7, 1, 0)
    }

    /// `!empty` before `!done` for empty results, 7.18+.
    pub fn empty_reply(self) -> bool {
        self >= RosVersion::new(7, 18, 0)
    }

    /// Plain-text `/login =name= =password=`, 6.43+.
    pub fn plain_login(self) -> bool {
        self >= RosVersion::new(6, 43, 0)
    }

    /// MD5 challenge login, removed in 6.45.1.
    pub fn challenge_login(self) -> bool {
        self < RosVersion::new(6, 45, 1)
    }

    /// ISO dates (`2023-07-14 19:13:29`) from 7.10, `jul/14/2023 19:13:29` before.
    pub fn iso_dates(self) -> bool {
        self >= RosVersion::new(7, 10, 0)
    }

    /// v6 interface byte counters wrap at 2^32 (DESIGN.md "32-bit wraps"; routeros.md §7.6).
    pub fn counter_modulus(self) -> Option<u64> {
        if self.major < 7 { Some(1 << 32) } else { None }
    }

    /// `\?` is a valid CLI escape only before 7.1rc2.
    pub fn cli_question_escape(self) -> bool {
        self.major < 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_methods_follow_the_version_matrix() {
        let v = |s: &str| s.parse::<RosVersion>().unwrap();
        assert!(v("6.42").challenge_login() && !v("6.42").plain_login());
        assert!(v("6.43").challenge_login() && v("6.43").plain_login());
        assert!(v("6.45").challenge_login() && v("6.45").plain_login());
        assert!(!v("6.45.1").challenge_login() && v("6.45.1").plain_login());
        assert!(!v("7.17").empty_reply() && v("7.18").empty_reply());
        assert_eq!(v("7.16").to_string(), "7.16");
    }
}
