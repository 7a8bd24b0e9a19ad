//! The driver scenarios, each written once and run per transport by `per_transport!`;
//! shared helpers here, scenarios by theme in the submodules.

mod crud;
mod sessions;
mod transport;

pub use crud::*;
pub use sessions::*;
pub use transport::*;

use std::path::PathBuf;
use std::time::Duration;

use easyisp_agent::routeros::{HotspotUserSpec, PppProfileSpec, PppSecretSpec};
use easyisp_protocol::Secret;
use serde_json::Value;

use super::T;

fn secret_spec(name: &str, profile: &str) -> PppSecretSpec {
    PppSecretSpec {
        name: name.into(),
        password: Secret::new("pw-1".into()),
        service: "pppoe".into(),
        profile: profile.into(),
        disabled: false,
        comment: Some(format!("easyisp:{name}").into()),
        local_address: None,
        remote_address: None,
        caller_id: None,
    }
}

fn profile_spec(name: &str, rate: &str) -> PppProfileSpec {
    PppProfileSpec {
        name: name.into(),
        rate_limit: Some(rate.into()),
        comment: Some(format!("easyisp:pkg-{name}").into()),
        ..Default::default()
    }
}

fn hotspot_spec(name: &str, profile: &str) -> HotspotUserSpec {
    HotspotUserSpec {
        name: name.into(),
        password: Secret::new("hs-pw".into()),
        profile: profile.into(),
        server: None,
        mac_address: None,
        address: None,
        disabled: false,
        comment: Some(format!("easyisp:{name}").into()),
        limit_uptime: Some(Duration::from_secs(3600)),
        limit_bytes_total: Some(1_000_000_000),
    }
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn is_true(v: &Value, key: &str) -> bool {
    matches!(s(v, key).as_str(), "true" | "yes")
}

// ---------------------------------------------------------------- scenarios

fn service_of(t: T) -> &'static str {
    match t {
        T::Rest | T::RestTls => "rest",
        T::Api | T::ApiSsl => "api",
        T::Ssh => "ssh",
    }
}

/// The `easyisp-agent` binary next to this test binary (`cargo test --workspace` builds it
/// because the agent crate has integration tests).
fn agent_binary() -> PathBuf {
    easyisp_tests::binaries::workspace_bin("easyisp-agent")
}
