//! Conformance suite for the agent's RouterOS drivers (issue 5): the same scenarios
//! (`scenarios`) run through the REST, classic API and SSH drivers against the `routeros-sim`
//! process (`sim`), plus TLS variants (REST over HTTPS, API-SSL) and the `easyisp-agent probe`
//! binary over each transport.
//!
//! Every test starts its own simulator, so tests are independent and run in parallel. The
//! simulator is driven through its control interface as a person or subscriber would be:
//! adding objects by hand, starting sessions, moving counters, rebooting, dropping sockets.

mod scenarios;
mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use easyisp_agent::routeros::{self, ConnectOptions, Router, RouterUrl};
use easyisp_protocol::Secret;

use sim::{PASSWORD, Sim};

/// Which driver (and TLS or not) a scenario runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    Rest,
    RestTls,
    Api,
    ApiSsl,
    Ssh,
}

/// A running simulator plus a driver connected to it.
pub struct Env {
    pub sim: Sim,
    pub router: Arc<dyn Router>,
    pub known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn url(sim: &Sim, t: T) -> RouterUrl {
    let p = sim.ports();
    let s = match t {
        T::Rest => format!("rest+http://admin@127.0.0.1:{}", p.rest),
        T::RestTls => format!(
            "rest+https://admin@127.0.0.1:{}?fingerprint={}",
            p.rest_tls, p.rest_tls_fingerprint
        ),
        T::Api => format!("api://admin@127.0.0.1:{}", p.api),
        T::ApiSsl => format!(
            "api-ssl://admin@127.0.0.1:{}?fingerprint={}",
            p.api_ssl, p.rest_tls_fingerprint
        ),
        T::Ssh => format!("ssh://admin@127.0.0.1:{}", p.ssh),
    };
    s.parse().expect("valid sim URL")
}

fn options(password: &str, known_hosts: PathBuf) -> ConnectOptions {
    ConnectOptions {
        password: Secret::new(password.to_string()),
        timeout: Duration::from_secs(10),
        known_hosts: Some(known_hosts),
    }
}

impl Env {
    pub async fn start(t: T) -> Env {
        Env::start_version(t, "7.16").await
    }

    pub async fn start_version(t: T, version: &str) -> Env {
        // Subscribers redial only when a test says so (`--redial-ms 0`).
        let sim = Sim::start_version(version).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let known_hosts = dir.path().join("known_hosts");
        let router = routeros::connect(&url(&sim, t), options(PASSWORD, known_hosts.clone()))
            .await
            .unwrap_or_else(|e| panic!("{t:?} driver cannot connect: {e}"));
        Env {
            sim,
            router,
            known_hosts,
            _dir: dir,
        }
    }

    /// A second driver of another transport on the same simulator.
    pub async fn other(&self, t: T) -> Arc<dyn Router> {
        routeros::connect(
            &url(&self.sim, t),
            options(PASSWORD, self.known_hosts.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{t:?} driver cannot connect: {e}"))
    }
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn eventually<F, Fut, R>(limit: Duration, mut f: F) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<R>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = f().await {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

macro_rules! per_transport {
    ($mod:ident, $t:expr, [$($name:ident),* $(,)?]) => {
        mod $mod {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::scenarios::$name($t).await
                }
            )*
        }
    };
}

per_transport!(
    rest,
    super::T::Rest,
    [
        identity,
        ppp_crud,
        hotspot_crud,
        queues_leases_and_lists,
        adopt_listing,
        duplicates_are_already_exists,
        bad_profile_is_invalid_value,
        vanished_id_is_re_resolved_after_reboot,
        sessions_and_counters,
        removing_active_sessions,
        reconnects_after_dropped_connection,
        non_utf8_names_survive,
        wrong_password_is_auth_failed,
        hung_router_times_out,
        probe_binary,
        listing_10k_secrets_is_one_request,
    ]
);

per_transport!(
    api,
    super::T::Api,
    [
        identity,
        ppp_crud,
        hotspot_crud,
        queues_leases_and_lists,
        adopt_listing,
        duplicates_are_already_exists,
        bad_profile_is_invalid_value,
        vanished_id_is_re_resolved_after_reboot,
        sessions_and_counters,
        removing_active_sessions,
        reconnects_after_dropped_connection,
        non_utf8_names_survive,
        wrong_password_is_auth_failed,
        hung_router_times_out,
        probe_binary,
        listing_10k_secrets_is_one_request,
    ]
);

per_transport!(
    ssh,
    super::T::Ssh,
    [
        identity,
        ppp_crud,
        hotspot_crud,
        queues_leases_and_lists,
        adopt_listing,
        duplicates_are_already_exists,
        bad_profile_is_invalid_value,
        vanished_id_is_re_resolved_after_reboot,
        sessions_and_counters,
        removing_active_sessions,
        reconnects_after_dropped_connection,
        non_utf8_names_survive,
        wrong_password_is_auth_failed,
        hung_router_times_out,
        probe_binary,
        listing_10k_secrets_is_one_request,
    ]
);

per_transport!(
    rest_tls,
    super::T::RestTls,
    [
        identity,
        ppp_crud,
        wrong_password_is_auth_failed,
        probe_binary
    ]
);
per_transport!(
    api_ssl,
    super::T::ApiSsl,
    [
        identity,
        ppp_crud,
        wrong_password_is_auth_failed,
        probe_binary
    ]
);

// Version- and transport-specific behaviour.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_md5_challenge_login_on_pre_6_43_routers() {
    scenarios::old_router_challenge_login(T::Api).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_understands_empty_replies_of_7_18() {
    scenarios::empty_replies(T::Api, "7.18").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_on_7_18_lists_empty_menus() {
    scenarios::empty_replies(T::Rest, "7.18").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_key_is_recorded_then_enforced() {
    scenarios::ssh_host_key_pinning().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_mismatch_is_refused() {
    scenarios::tls_pinning(T::RestTls).await;
    scenarios::tls_pinning(T::ApiSsl).await;
}
