//! Faults on demand: added latency, failing or hanging the next N requests of a service, and
//! the REST request timeout (`Session closed`, routeros.md §1.8). Refusing connections and
//! dropping sockets live in `server` because they act on listeners.

use serde::{Deserialize, Serialize};

/// A router-facing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Service {
    Rest,
    Api,
    Ssh,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Rest, Service::Api, Service::Ssh];
}

/// Fail the next `count` requests (of `service`, or of any service when absent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailNext {
    pub count: u32,
    #[serde(default)]
    pub service: Option<Service>,
    /// RouterOS error text (REST `detail`, API `!trap` message, CLI output).
    #[serde(default = "default_busy")]
    pub message: String,
    /// REST status code.
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_busy() -> String {
    "failure: router busy".into()
}
fn default_status() -> u16 {
    500
}

/// Hang the next `count` requests: REST answers `Session closed` after the REST timeout, the
/// API and SSH say nothing until the connection is dropped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HangNext {
    pub count: u32,
    #[serde(default)]
    pub service: Option<Service>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every REST request, API command and SSH command.
    pub latency_ms: u64,
    pub fail_next: Option<FailNext>,
    pub hang_next: Option<HangNext>,
    /// REST's hard per-request limit; 60 s on a real router.
    pub rest_timeout_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            fail_next: None,
            hang_next: None,
            rest_timeout_ms: 60_000,
        }
    }
}

/// What to do with the request at hand.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Proceed,
    Fail { status: u16, message: String },
    Hang,
}

impl Faults {
    /// Consumes one fault charge for `svc`, if any applies.
    pub fn take(&mut self, svc: Service) -> Action {
        if let Some(h) = &mut self.hang_next
            && h.service.is_none_or(|s| s == svc)
            && h.count > 0
        {
            h.count -= 1;
            if h.count == 0 {
                self.hang_next = None;
            }
            return Action::Hang;
        }
        if let Some(f) = &mut self.fail_next
            && f.service.is_none_or(|s| s == svc)
            && f.count > 0
        {
            f.count -= 1;
            let a = Action::Fail {
                status: f.status,
                message: f.message.clone(),
            };
            if f.count == 0 {
                self.fail_next = None;
            }
            return a;
        }
        Action::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_per_service() {
        let mut f = Faults {
            fail_next: Some(FailNext {
                count: 2,
                service: Some(Service::Api),
                message: "x".into(),
                status: 500,
            }),
            ..Faults::default()
        };
        assert_eq!(f.take(Service::Rest), Action::Proceed);
        assert!(matches!(f.take(Service::Api), Action::Fail { .. }));
        assert!(matches!(f.take(Service::Api), Action::Fail { .. }));
        assert_eq!(f.take(Service::Api), Action::Proceed);
    }
}
