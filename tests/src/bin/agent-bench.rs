//! Agent benchmark: a full reconcile of 10,000 customers against the RouterOS simulator, and
//! the agent's memory while it manages them. Prints figures; asserts nothing.
//!
//! Run it with the profile the agent ships with, and the simulator and agent built beside it:
//! `cargo build --profile release-small -p easyisp-tests -p easyisp-agent --bins &&
//! target/release-small/agent-bench`
//!
//! `AGENT_BENCH_SCHEMES=api,ssh` picks the drivers (default: REST, API and SSH);
//! `AGENT_BENCH_SESSIONS=N` the number of customers online (default half of them);
//! `AGENT_BENCH_MALLOC_ARENA_MAX=N` is passed to the agent binary as `MALLOC_ARENA_MAX`.

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
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

const CUSTOMERS: usize = 10_000;
const TENANT: Uuid = Uuid::from_u128(0xbe);

/// Counts heap bytes in use and their peak, so a reconcile pass's heap can be told apart from
/// what the allocator keeps and from the mapped binary (both part of RSS).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap in use now, in MB.
fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

/// Starts a new peak measurement at the current heap size.
fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn peak_mb() -> f64 {
    PEAK.load(Ordering::Relaxed) as f64 / 1e6
}

#[tokio::main]
async fn main() -> Result<()> {
    install_crypto_provider();
    let schemes =
        std::env::var("AGENT_BENCH_SCHEMES").unwrap_or_else(|_| "rest+http,api,ssh".into());
    let sessions = match std::env::var("AGENT_BENCH_SESSIONS") {
        Ok(n) => n.parse().context("AGENT_BENCH_SESSIONS")?,
        Err(_) => CUSTOMERS / 2,
    };
    let sim = SimProcess::start(SimOptions::default()).await?;
    for scheme in schemes.split(',') {
        bench(&sim, scheme, sessions).await?;
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

async fn bench(sim: &SimProcess, scheme: &str, sessions: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    let router = Uuid::now_v7();
    // The SSH driver runs one CLI command per create, which makes creating 10,000 objects
    // slow: the site is created over the API, and only the measured passes use SSH.
    let first_scheme = if scheme == "ssh" { "api" } else { scheme };
    let config = |scheme: &str| RawConfig {
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
    };
    config(first_scheme).write(&path)?;
    let shared = Shared::open(Config::load(&path)?)?;
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
        "[{scheme}] first reconcile over {first_scheme} (creates everything): {} operations in {:.2} s",
        first.applied,
        first.duration.as_secs_f64()
    );
    anyhow::ensure!(first.is_clean(), "first pass failed: {first:?}");
    drop(shared);
    connect_sessions(sim, sessions).await?;
    config(scheme).write(&path)?;
    let shared = Shared::open(Config::load(&path)?)?;
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..5 {
        let before = live_mb();
        reset_peak();
        let started = Instant::now();
        let report = reconcile_once(&shared, Utc::now()).await?;
        anyhow::ensure!(
            report.planned == 0,
            "an unchanged site planned {} operations",
            report.planned
        );
        times.push(started.elapsed());
        peaks.push(peak_mb() - before);
    }
    times.sort();
    peaks.sort_by(f64::total_cmp);
    println!(
        "[{scheme}] full reconcile of {CUSTOMERS} unchanged customers, {sessions} online: min {:.3} s, median {:.3} s, max {:.3} s (target < 5 s); heap growth during a pass: max {:.1} MB",
        secs(times[0]),
        secs(times[times.len() / 2]),
        secs(times[times.len() - 1]),
        peaks[peaks.len() - 1]
    );
    drop(shared);
    agent_memory(&path, scheme).await
}

/// Brings `n` customers online: even-numbered ones dial PPPoE, odd-numbered ones log in to
/// the hotspot, so the counter polls read `n` sessions.
async fn connect_sessions(sim: &SimProcess, n: usize) -> Result<()> {
    let started = Instant::now();
    for i in 0..n.min(CUSTOMERS) {
        let name = format!("bench{i:05}");
        let mac = format!(
            "02:00:00:{:02X}:{:02X}:{:02X}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        if i % 2 == 0 {
            sim.control.ppp_connect(&name, &mac, None).await?;
        } else {
            sim.control.hotspot_login(&name, &mac, None).await?;
        }
    }
    println!("connected {n} sessions in {:?}", started.elapsed());
    Ok(())
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
    // Let it run a few full reconciles and polls, sampling its memory as it goes.
    let mut lowest_rss = u64::MAX;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        lowest_rss = lowest_rss.min(status_kib(pid, "VmRSS:")?);
    }
    let (rss, hwm, anon) = (
        status_kib(pid, "VmRSS:")?,
        status_kib(pid, "VmHWM:")?,
        status_kib(pid, "RssAnon:")?,
    );
    println!(
        "[{scheme}] agent binary with {CUSTOMERS} customers after 10 s of 2 s reconciles and 1 s polls: VmRSS {rss} KiB (lowest sample {lowest_rss} KiB, RssAnon {anon} KiB), VmHWM {hwm} KiB (target < 20 MB)"
    );
    child.kill().await?;
    Ok(())
}

/// One `KiB` field of `/proc/PID/status`.
fn status_kib(pid: u32, name: &str) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("agent still running")?;
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{name} in /proc/{pid}/status"))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
