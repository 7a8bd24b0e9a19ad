//! Typed RouterOS configuration objects (PPP secrets and profiles, hotspot users and user
//! profiles, simple queues, DHCP leases, firewall address-list entries): what a print returns
//! (`PppSecret`, …) and what the agent writes (`PppSecretSpec`, …).
//!
//! Parsing happens here, at the edge; a malformed value is an `Err`, never a panic. Specs turn
//! into attribute lists; they never print a password (`Secret` redacts itself).

mod hotspot;
mod network;
mod ppp;

pub use hotspot::*;
pub use network::*;
pub use ppp::*;

use super::error::Result;
use super::value::{Id, Row, Text};

/// A key/value attribute to write. Keys are RouterOS property names.
pub type Attr = (&'static str, Text);

/// An object type that lives in one RouterOS menu and is keyed by name (or by another field).
pub trait RouterObject: Sized + Send + Sync {
    /// API/REST menu path, e.g. `/ppp/secret`.
    const MENU: &'static str;
    /// Human name for logs.
    const KIND: &'static str;
    /// Properties read by a listing (`.proplist`); `.id` is always included.
    const PROPLIST: &'static [&'static str];
    fn from_row(row: &Row) -> Result<Self>;
    fn id(&self) -> &Id;
    /// The fields that identify the object across reboots (usually `name`).
    fn key(&self) -> Vec<Attr>;
}

/// What the agent writes for an object of type `Object`.
pub trait ObjectSpec: Send + Sync {
    type Object: RouterObject;
    /// All properties to write on create and update (password included, never logged).
    fn attrs(&self) -> Vec<Attr>;
    /// The identifying fields (same keys as [`RouterObject::key`]).
    fn key(&self) -> Vec<Attr>;
}

/// Renders a key for logs: `name=cust1`, `list=expired address=100.64.0.5`.
pub fn key_label(key: &[Attr]) -> String {
    key.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn push_opt(attrs: &mut Vec<Attr>, key: &'static str, value: &Option<impl Clone + Into<Text>>) {
    if let Some(v) = value {
        attrs.push((key, v.clone().into()));
    }
}

fn opt_string(row: &Row, key: &str) -> Option<String> {
    row.string(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use easyisp_protocol::Secret;

    #[test]
    fn secret_row_parses_with_defaults_and_redacts_password() {
        let mut r = Row::default();
        r.insert(".id", "*1F");
        r.insert("name", "cust1");
        r.insert("password", "s3cr3t");
        r.insert("profile", "10M");
        r.insert("disabled", "true");
        r.insert("limit-bytes-in", "0");
        r.insert("last-logged-out", "jan/02/1970 00:00:00");
        let s = PppSecret::from_row(&r).unwrap();
        assert_eq!(s.id.as_str(), "*1F");
        assert!(s.disabled);
        assert_eq!(s.service, "any");
        assert_eq!(s.limit_bytes_in, Some(0));
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn spec_debug_never_shows_the_password() {
        let spec = PppSecretSpec {
            name: "a".into(),
            password: Secret::new("hunter2".into()),
            service: "pppoe".into(),
            profile: "10M".into(),
            disabled: false,
            comment: None,
            local_address: None,
            remote_address: None,
            caller_id: None,
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert!(
            spec.attrs()
                .iter()
                .any(|(k, v)| *k == "password" && v == "hunter2")
        );
    }

    #[test]
    fn bad_counter_is_an_error_not_a_panic() {
        let mut r = Row::default();
        r.insert(".id", "*1");
        r.insert("name", "u");
        r.insert("bytes-in", "lots");
        assert!(HotspotUser::from_row(&r).is_err());
        let mut r = Row::default();
        r.insert("name", "no id");
        assert!(SimpleQueue::from_row(&r).is_err());
    }
}
