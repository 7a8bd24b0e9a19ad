//! `Secret<T>`: a value that must never reach a log line, a `Debug` print or an API response.
//!
//! `Debug` and `Display` print `[redacted]` and there is deliberately no blanket `Serialize`:
//! the only way to get the value out is [`Secret::expose`], which makes every use greppable.
//! The sync channel, which must carry customer passwords to the agent, opts in field by field
//! with [`wire`] (`#[serde(with = "easyisp_protocol::secret::wire")]`).

use std::fmt;

/// A value that redacts itself in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Call sites are the places to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serde adapter for the few places that must carry a secret on purpose (the TLS-protected sync
/// channel, the agent's 0600 config file). Use as `#[serde(with = "secret::wire")]`.
pub mod wire {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        s: &Secret<T>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        s.expose().serialize(ser)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Secret<T>, D::Error> {
        T::deserialize(de).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-password".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-password");
    }
}
