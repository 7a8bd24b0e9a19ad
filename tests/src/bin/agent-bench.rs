//! Agent benchmark: a full reconcile of 10,000 customers against the RouterOS simulator, and
//! the agent's memory while it manages them. Prints figures; asserts nothing.
//!
//! Run it in release mode with the simulator built beside it:
//! `cargo build --release -p easyisp-tests -p easyisp-agent --bins && target/release/agent-bench`

use anyhow::{Context, Result};
use chrono::Utc;
use easyisp_agent::config::{Config, RawAgent, RawConfig, RawRouter};
use easyisp_agent::daemon::{Shared, reconcile_once};
use easyisp_agent::replica::store;
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::{Hlc, Money, NodeId};
use easyisp_tests::sim_harness::{SimOptions, SimProcess, install_crypto_provider};
use std::time::{Duration, Instant};
use uuid::Uuid;

const CUSTOMERS: usize = 10_000;
const TENANT: Uuid = Uuid::from_u128(0xbe);

#[tokio::main]
async fn main() -> Result<()> {
    install_crypto_provider();
    let sim = SimProcess::start(SimOptions::default()).await?;
    for scheme in ["rest+http", "api"] {
        bench(&sim, scheme).await?;
        sim.control.reboot().await?;
        wipe(&sim).await?;
    }
    Ok(())
}

async fn wipe(sim: &SimProcess) -> Result<()> {
    for menu in [
        "ppp/secret",
        "ip/hotspot/user",
        "ppp/profile",
        "ip/hotspot/user/profile",
    ] {
        for row in sim.control.menu(menu).await? {
            let comment = row["comment"].as_str().unwrap_or_default();
            if let (true, Some(id)) = (comment.starts_with("easyisp:"), row[".id"].as_str()) {
                sim.control.remove(menu, id).await?;
            }
        }
    }
    Ok(())
}

async fn bench(sim: &SimProcess, scheme: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    let router = Uuid::now_v7();
    RawConfig {
        agent: RawAgent {
            router_id: router.to_string(),
            tenant_id: TENANT.to_string(),
            data_dir: Some(dir.path().join("data")),
            reconcile_interval_secs: None,
            poll_interval_secs: None,
            mass_cutoff_percent: None,
            mass_cutoff_min: None,
            assume_clock_synchronised: Some(true),
            telemetry_interval_secs: None,
            metrics_listen: None,
            metrics_allow_remote: None,
        },
        router: RawRouter {
            url: sim.router_url(scheme),
            password: sim.options.password.clone(),
            timeout_secs: Some(60),
            known_hosts: None,
        },
        central: None,
    }
    .write(&path)?;
    let config = Config::load(&path)?;
    let shared = Shared::open(config)?;
    let stamp = Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(1));
    let package = Uuid::now_v7();
    let seeded = Instant::now();
    shared
        .replica
        .write(move |tx| {
            let mut p = PackageRecord::empty(package, TENANT);
            p.name = Some(Lww::new("Bench 10".into(), stamp));
            p.price = Some(Lww::new(Money::from_minor(100_000), stamp));
            p.download_speed = Some(Lww::new(Speed::from_mbps(10), stamp));
            p.upload_speed = Some(Lww::new(Speed::from_mbps(5), stamp));
            store::merge_package(tx, &p)?;
            for n in 0..CUSTOMERS {
                let mut c = CustomerRecord::empty(Uuid::now_v7(), TENANT);
                c.username = Some(Lww::new(format!("bench{n:05}"), stamp));
                c.password = Some(Lww::new(SyncedSecret::new(format!("Pw-{n:08}-x")), stamp));
                let kind = if n % 2 == 0 {
                    ConnectionType::Pppoe
                } else {
                    ConnectionType::Hotspot
                };
                c.connection_type = Some(Lww::new(kind, stamp));
                c.package_id = Some(Lww::new(Some(package), stamp));
                c.router_id = Some(Lww::new(Some(router), stamp));
                c.expires_at = Some(Lww::new(
                    Some(Utc::now() + chrono::Duration::days(30)),
                    stamp,
                ));
                store::merge_customer(tx, &c)?;
            }
            Ok(())
        })
        .await?;
    println!(
        "[{scheme}] seeded {CUSTOMERS} customers into the replica in {:?}",
        seeded.elapsed()
    );

    let first = reconcile_once(&shared, Utc::now()).await?;
    println!(
        "[{scheme}] first reconcile (creates everything): {} operations in {:.2} s",
        first.applied,
        first.duration.as_secs_f64()
    );
    anyhow::ensure!(first.is_clean(), "first pass failed: {first:?}");
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report = reconcile_once(&shared, Utc::now()).await?;
        anyhow::ensure!(
            report.planned == 0,
            "an unchanged site planned {} operations",
            report.planned
        );
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "[{scheme}] full reconcile of {CUSTOMERS} unchanged customers: min {:.3} s, median {:.3} s, max {:.3} s (target < 5 s)",
        secs(times[0]),
        secs(times[times.len() / 2]),
        secs(times[times.len() - 1])
    );
    drop(shared);
    agent_memory(&path, scheme).await
}

/// Runs the real agent binary on the same replica and router and reads its memory once it
/// has done full reconciles and counter polls of the 10,000 customers.
async fn agent_memory(config: &std::path::Path, scheme: &str) -> Result<()> {
    let exe = std::env::current_exe()?.with_file_name("easyisp-agent");
    anyhow::ensure!(
        exe.exists(),
        "{} missing: build the agent in release mode too",
        exe.display()
    );
    let mut child = tokio::process::Command::new(&exe)
        .arg("--config")
        .arg(config)
        .args(["run", "--reconcile-interval", "2s", "--poll-interval", "1s"])
        .envs(
            std::env::var("AGENT_BENCH_MALLOC_ARENA_MAX")
                .ok()
                .map(|v| ("MALLOC_ARENA_MAX", v)),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("agent pid")?;
    // Let it run a few full reconciles and polls.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("agent still running")?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "[{scheme}] agent binary with {CUSTOMERS} customers after 10 s of 2 s reconciles and 1 s polls: VmRSS {} KiB, VmHWM {} KiB (target < 20 MB)",
        field("VmRSS:"),
        field("VmHWM:")
    );
    child.kill().await?;
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
