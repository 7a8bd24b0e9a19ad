//! Customer status, derived at an instant and never stored.
//!
//! DISABLED if `disabled`; else SUSPENDED if `suspended`; else EXPIRED if `now >= expiresAt`;
//! else ACTIVE. Central and every agent compute the same answer from the same replicated
//! fields, so expiry takes effect at the edge without any message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    Active,
    Suspended,
    Expired,
    Disabled,
}

impl CustomerStatus {
    pub const ALL: [CustomerStatus; 4] = [
        CustomerStatus::Active,
        CustomerStatus::Suspended,
        CustomerStatus::Expired,
        CustomerStatus::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::Active => "active",
            CustomerStatus::Suspended => "suspended",
            CustomerStatus::Expired => "expired",
            CustomerStatus::Disabled => "disabled",
        }
    }

    /// Whether a customer in this status may be online (everything else is cut off).
    pub fn has_access(self) -> bool {
        self == CustomerStatus::Active
    }
}

impl fmt::Display for CustomerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown status {0:?}: expected active, suspended, expired or disabled")]
pub struct UnknownStatus(pub String);

/// Parsed case-insensitively: `ACTIVE`, `active` and `Active` are the same status.
impl FromStr for CustomerStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<CustomerStatus, UnknownStatus> {
        CustomerStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownStatus(s.chars().take(32).collect()))
    }
}

impl<'de> Deserialize<'de> for CustomerStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<CustomerStatus, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The inputs the status is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusInputs {
    pub disabled: bool,
    pub suspended: bool,
    /// `None`: the customer never expires (staff, test accounts).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The customer's status at `now`.
pub fn status_at(inputs: StatusInputs, now: DateTime<Utc>) -> CustomerStatus {
    if inputs.disabled {
        CustomerStatus::Disabled
    } else if inputs.suspended {
        CustomerStatus::Suspended
    } else if inputs.expires_at.is_some_and(|at| now >= at) {
        CustomerStatus::Expired
    } else {
        CustomerStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap()
    }

    #[test]
    fn precedence_is_disabled_then_suspended_then_expired() {
        let inputs = StatusInputs {
            disabled: true,
            suspended: true,
            expires_at: Some(t(0)),
        };
        assert_eq!(status_at(inputs, t(10)), CustomerStatus::Disabled);
        let inputs = StatusInputs {
            disabled: false,
            ..inputs
        };
        assert_eq!(status_at(inputs, t(10)), CustomerStatus::Suspended);
        let inputs = StatusInputs {
            suspended: false,
            ..inputs
        };
        assert_eq!(status_at(inputs, t(10)), CustomerStatus::Expired);
    }

    #[test]
    fn expired_customer_is_expired_at_the_exact_instant() {
        let inputs = StatusInputs {
            disabled: false,
            suspended: false,
            expires_at: Some(t(100)),
        };
        assert_eq!(status_at(inputs, t(99)), CustomerStatus::Active);
        assert_eq!(status_at(inputs, t(100)), CustomerStatus::Expired);
    }

    #[test]
    fn no_expiry_means_active() {
        let inputs = StatusInputs {
            disabled: false,
            suspended: false,
            expires_at: None,
        };
        assert_eq!(
            status_at(inputs, t(i32::MAX as i64)),
            CustomerStatus::Active
        );
    }

    #[test]
    fn status_parses_case_insensitively_and_serialises_lower_case() {
        assert_eq!(
            "ACTIVE".parse::<CustomerStatus>().unwrap(),
            CustomerStatus::Active
        );
        assert_eq!(
            "Suspended".parse::<CustomerStatus>().unwrap(),
            CustomerStatus::Suspended
        );
        assert!("gone".parse::<CustomerStatus>().is_err());
        assert_eq!(
            serde_json::to_string(&CustomerStatus::Expired).unwrap(),
            "\"expired\""
        );
        assert_eq!(
            serde_json::from_str::<CustomerStatus>("\"DISABLED\"").unwrap(),
            CustomerStatus::Disabled
        );
    }
}
