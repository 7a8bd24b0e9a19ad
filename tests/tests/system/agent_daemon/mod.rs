//! The agent's reconcile controller and expiry enforcement against the RouterOS simulator.
//! The replica is fed through the agent's own library (sync from central comes later); the
//! router side is the simulator over REST or the classic API.

mod adopt;
mod counters;
mod expiry;
mod reconcile;

pub(super) use chrono::{DateTime, Utc};
pub(super) use easyisp_agent::config::{Config, RawAgent, RawConfig, RawRouter};
pub(super) use easyisp_agent::daemon::state;
pub(super) use easyisp_agent::daemon::{self, Overrides, Shared, reconcile_once};
pub(super) use easyisp_agent::replica::store;
pub(super) use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
pub(super) use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};
pub(super) use easyisp_protocol::merge::Lww;
pub(super) use easyisp_protocol::package::{PackageRecord, Speed};
pub(super) use easyisp_protocol::{Hlc, Money, NodeId};
pub(super) use easyisp_tests::sim_harness::{
    SessionKind, SimOptions, SimProcess, install_crypto_provider,
};
pub(super) use serde_json::Value;
pub(super) use std::time::Duration;
pub(super) use tokio_util::sync::CancellationToken;
pub(super) use uuid::Uuid;

pub(super) const TENANT: Uuid = Uuid::from_u128(0x7e);
pub(super) const PACKAGE: Uuid = Uuid::from_u128(0x9a);
/// The router every test site serves (each test has its own replica and simulator).
pub(super) const ROUTER: Uuid = Uuid::from_u128(0x5e);

pub(super) struct Site {
    _dir: tempfile::TempDir,
    pub(super) config: Config,
    pub(super) shared: Shared,
}

pub(super) async fn site(sim: &SimProcess, scheme: &str) -> Site {
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    RawConfig {
        agent: RawAgent {
            router_id: ROUTER.to_string(),
            tenant_id: TENANT.to_string(),
            data_dir: Some(dir.path().join("data")),
            reconcile_interval_secs: Some(60),
            poll_interval_secs: Some(60),
            mass_cutoff_percent: None,
            mass_cutoff_min: None,
            // This machine's kernel does not report NTP state; tests of the clock guard set
            // their own state instead.
            assume_clock_synchronised: Some(true),
            telemetry_interval_secs: None,
            metrics_listen: None,
            metrics_allow_remote: None,
        },
        router: RawRouter {
            url: sim.router_url(scheme),
            password: sim.options.password.clone(),
            timeout_secs: Some(10),
            known_hosts: None,
        },
        central: None,
    }
    .write(&path)
    .expect("config written");
    let config = Config::load(&path).expect("config loads");
    let shared = Shared::open(config.clone()).expect("replica opens");
    Site {
        _dir: dir,
        config,
        shared,
    }
}

pub(super) fn stamp() -> Hlc {
    Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(0xc0ffee))
}

pub(super) async fn put_package(site: &Site) {
    let mut p = PackageRecord::empty(PACKAGE, TENANT);
    let s = stamp();
    p.name = Some(Lww::new("Home 10".into(), s));
    p.price = Some(Lww::new(Money::from_minor(200_000), s));
    p.download_speed = Some(Lww::new(Speed::from_mbps(10), s));
    p.upload_speed = Some(Lww::new(Speed::from_mbps(5), s));
    p.validity_days = Some(Lww::new(30, s));
    site.shared
        .replica
        .write(move |tx| store::merge_package(tx, &p).map(drop))
        .await
        .expect("package stored");
}

pub(super) fn customer(name: &str, kind: ConnectionType, expires: DateTime<Utc>) -> CustomerRecord {
    let mut c = CustomerRecord::empty(Uuid::now_v7(), TENANT);
    let s = stamp();
    c.username = Some(Lww::new(name.into(), s));
    c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), s));
    c.connection_type = Some(Lww::new(kind, s));
    c.package_id = Some(Lww::new(Some(PACKAGE), s));
    c.router_id = Some(Lww::new(Some(ROUTER), s));
    c.expires_at = Some(Lww::new(Some(expires), s));
    c
}

pub(super) async fn put(site: &Site, record: CustomerRecord) {
    site.shared
        .replica
        .write(move |tx| store::merge_customer(tx, &record).map(drop))
        .await
        .expect("stored");
    site.shared.replica_changed();
}

pub(super) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub(super) fn field<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

/// A simulator and an agent site on it with the test package stored.
pub(super) async fn started(options: SimOptions, scheme: &str) -> (SimProcess, Site) {
    let sim = SimProcess::start(options).await.expect("sim starts");
    let site = site(&sim, scheme).await;
    put_package(&site).await;
    (sim, site)
}
