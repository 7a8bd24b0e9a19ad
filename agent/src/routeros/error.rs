//! Typed errors of the RouterOS drivers, and the one place that maps RouterOS error texts
//! (REST `detail`, API `!trap =message=`, CLI output; routeros.md §1.7, §2.4, §3.5, §7) onto them.
//!
//! RouterOS errors are console text that may end in a numeric suffix such as ` (6)`, so matching
//! is by substring, never by equality. The controller only needs [`RouterError::is_retryable`]
//! to decide between "back off and try again" and "give up on this object".

use std::time::Duration;

/// Everything a driver call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router could not be reached or the connection broke (connect refused, TLS failure,
    /// socket closed, `!fatal`). Retry with backoff.
    #[error("router unreachable: {0}")]
    Unreachable(String),
    /// The router refused the credentials (REST 401, API/SSH login failure).
    #[error("authentication failed: check the user and EASYISP_ROUTER_PASSWORD")]
    AuthFailed,
    /// The user lacks a policy the command needs (`not allowed`).
    #[error("permission denied by the router: {0}")]
    PermissionDenied(String),
    /// The item (by `.id` or name) does not exist (REST 404, `no such item`).
    #[error("not found: {0}")]
    NotFound(String),
    /// An item with the same key already exists (`already exists`, `already have ...`).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The router rejected a value (unknown profile, unknown parameter, bad syntax).
    #[error("invalid value: {message}")]
    InvalidValue { message: String },
    /// The router took too long or is busy (REST `Session closed`, our own timeout).
    #[error("router busy or timed out: {0}")]
    Timeout(String),
    /// The router answered something we cannot understand (bad framing, unexpected JSON).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS certificate or SSH host key does not match the pinned one.
    #[error("router identity mismatch: {0}")]
    Pinning(String),
    /// The operation was cancelled by the caller.
    #[error("operation cancelled")]
    Cancelled,
    /// Any other error text the router returned.
    #[error("router error: {0}")]
    Other(String),
}

pub type Result<T, E = RouterError> = std::result::Result<T, E>;

impl RouterError {
    /// Whether retrying the same call later may succeed. Connection trouble and timeouts are
    /// transient; a refused value or a wrong password will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RouterError::Unreachable(_) | RouterError::Timeout(_))
    }

    /// Whether the error means the connection is no longer usable (the driver reconnects).
    pub fn is_connection_error(&self) -> bool {
        matches!(self, RouterError::Unreachable(_))
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        RouterError::Timeout(format!("no answer within {}", humantime_like(after)))
    }

    /// Classify a RouterOS error text (REST `detail`, API trap message, CLI output line).
    pub fn from_router_message(message: &str) -> Self {
        let m = message.trim();
        let lower = m.to_ascii_lowercase();
        let has = |needle: &str| lower.contains(needle);
        if has("invalid user name or password") || has("cannot log in") || has("unauthorized") {
            RouterError::AuthFailed
        } else if has("not allowed") || has("permission denied") {
            RouterError::PermissionDenied(m.to_string())
        } else if has("already exists") || has("already have") {
            RouterError::AlreadyExists(m.to_string())
        } else if has("no such item") || has("not found") {
            RouterError::NotFound(m.to_string())
        } else if has("session closed") || has("timeout") || has("timed out") || has("busy") {
            RouterError::Timeout(m.to_string())
        } else if has("input does not match any value")
            || has("ambiguous value")
            || has("unknown parameter")
            || has("invalid value")
            || has("expected end of command")
            || has("syntax error")
            || has("bad command name")
            || has("no such command")
            || has("value of")
            || has("failure:")
        {
            RouterError::InvalidValue {
                message: m.to_string(),
            }
        } else {
            RouterError::Other(m.to_string())
        }
    }
}

/// `1.5s`, `30s`, `2m0s` for messages; avoids a dependency for one line.
fn humantime_like(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_router_texts_map_to_their_kinds() {
        type Check = fn(&RouterError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("invalid user name or password (6)", |e| {
                matches!(e, RouterError::AuthFailed)
            }),
            ("cannot log in", |e| matches!(e, RouterError::AuthFailed)),
            ("no such item (4)", |e| {
                matches!(e, RouterError::NotFound(_))
            }),
            ("no such item", |e| matches!(e, RouterError::NotFound(_))),
            ("failure: secret with the same name already exists", |e| {
                matches!(e, RouterError::AlreadyExists(_))
            }),
            (
                "failure: already have user with this name for this server",
                |e| matches!(e, RouterError::AlreadyExists(_)),
            ),
            ("failure: already have such entry", |e| {
                matches!(e, RouterError::AlreadyExists(_))
            }),
            ("input does not match any value of profile", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
            (
                "ambiguous value of profile, more than one possible value matches input",
                |e| matches!(e, RouterError::InvalidValue { .. }),
            ),
            ("unknown parameter interface", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
            ("Session closed", |e| matches!(e, RouterError::Timeout(_))),
            ("std failure: not allowed (9)", |e| {
                matches!(e, RouterError::PermissionDenied(_))
            }),
            ("bad command name foo (line 1 column 1)", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
            ("expected end of command (line 1 column 12)", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
            ("invalid value for argument address", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
            ("failure: chain does not exist", |e| {
                matches!(e, RouterError::InvalidValue { .. })
            }),
        ];
        for (text, check) in cases {
            let e = RouterError::from_router_message(text);
            assert!(check(&e), "{text:?} mapped to {e:?}");
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(RouterError::Unreachable("x".into()).is_retryable());
        assert!(RouterError::Timeout("x".into()).is_retryable());
        assert!(!RouterError::AuthFailed.is_retryable());
        assert!(!RouterError::AlreadyExists("x".into()).is_retryable());
        assert!(
            !RouterError::InvalidValue {
                message: "x".into()
            }
            .is_retryable()
        );
    }
}
