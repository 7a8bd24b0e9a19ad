//! The real `easyisp-agent` binary: `run` converges after `kill -9` in the middle of a
//! reconcile, `status` reports what it knows, SIGTERM stops it cleanly.

use chrono::Utc;
use easyisp_agent::config::{RawAgent, RawConfig, RawRouter};
use easyisp_agent::replica::{Replica, store};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::{Hlc, NodeId};
use easyisp_tests::binaries::workspace_bin;
use easyisp_tests::sim_harness::{SimOptions, SimProcess, install_crypto_provider};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x51);
const CUSTOMERS: usize = 150;

fn spawn_agent(config: &Path) -> Child {
    Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(config)
        .args(["run", "--reconcile-interval", "1s", "--poll-interval", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts")
}

async fn ours(sim: &SimProcess) -> Vec<serde_json::Value> {
    let secrets = sim.control.menu("ppp/secret").await.unwrap_or_default();
    secrets
        .into_iter()
        .filter(|s| {
            s["comment"]
                .as_str()
                .is_some_and(|c| c.starts_with("easyisp:"))
        })
        .collect()
}

#[tokio::test]
async fn the_agent_converges_after_kill_9_mid_reconcile_and_stops_on_sigterm() {
    install_crypto_provider();
    let sim = SimProcess::start(SimOptions {
        latency_ms: 10,
        ..SimOptions::default()
    })
    .await
    .expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let data = dir.path().join("data");
    let router = Uuid::now_v7();
    RawConfig {
        agent: RawAgent {
            router_id: router.to_string(),
            tenant_id: TENANT.to_string(),
            data_dir: Some(data.clone()),
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
            url: sim.router_url("rest+http"),
            password: sim.options.password.clone(),
            timeout_secs: Some(10),
            known_hosts: None,
        },
        central: None,
    }
    .write(&config)
    .unwrap();
    let replica = Replica::open(&data.join("replica.db")).unwrap();
    let stamp = Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(3));
    let package = Uuid::now_v7();
    replica
        .write(move |tx| {
            let mut p = PackageRecord::empty(package, TENANT);
            p.name = Some(Lww::new("Home 10".into(), stamp));
            p.download_speed = Some(Lww::new(Speed::from_mbps(10), stamp));
            p.upload_speed = Some(Lww::new(Speed::from_mbps(5), stamp));
            store::merge_package(tx, &p)?;
            for n in 0..CUSTOMERS {
                let mut c = CustomerRecord::empty(Uuid::now_v7(), TENANT);
                c.username = Some(Lww::new(format!("k{n:03}"), stamp));
                c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), stamp));
                c.connection_type = Some(Lww::new(ConnectionType::Pppoe, stamp));
                c.package_id = Some(Lww::new(Some(package), stamp));
                c.router_id = Some(Lww::new(Some(router), stamp));
                c.expires_at = Some(Lww::new(
                    Some(Utc::now() + chrono::Duration::days(5)),
                    stamp,
                ));
                store::merge_customer(tx, &c)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    drop(replica);

    // Start, let it create part of the secrets, then kill -9 in the middle of the pass.
    let mut agent = spawn_agent(&config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ours(&sim).await.len() < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.start_kill().expect("SIGKILL sent");
    agent.wait().await.unwrap();
    let partial = ours(&sim).await.len();
    assert!(
        (20..CUSTOMERS).contains(&partial),
        "killed mid-reconcile with {partial} of {CUSTOMERS} created"
    );

    // Killed, it holds nothing: status says so rather than showing its last state as live.
    assert_eq!(status_json(&config).await["daemonRunning"], false);

    // Restarted, it finishes the job without duplicates or errors.
    let mut agent = spawn_agent(&config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ours(&sim).await.len() < CUSTOMERS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secrets = ours(&sim).await;
    assert_eq!(
        secrets.len(),
        CUSTOMERS,
        "every customer has exactly one secret"
    );
    assert!(
        secrets
            .iter()
            .all(|s| s["disabled"] == "false" && s["profile"] == "Home 10")
    );

    // A second daemon on the same data directory is refused at once.
    let second = tokio::time::timeout(
        Duration::from_secs(15),
        Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .output(),
    )
    .await
    .expect("the second run exits")
    .expect("second run starts");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already running"), "{stderr}");

    let report = status_json(&config).await;
    assert_eq!(report["daemonRunning"], true);
    assert_eq!(report["customers"], CUSTOMERS as u64);
    assert_eq!(report["routerReachable"], true);
    assert_eq!(report["customersByStatus"]["active"], CUSTOMERS as u64);
    let text = report.to_string();
    assert!(
        !text.contains("Zebra-Lamp-42") && !text.contains(&sim.options.password),
        "no secret in status"
    );

    let pid = agent.id().expect("running");
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .expect("stops")
        .unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
}

/// `easyisp-agent status --json`, parsed.
async fn status_json(config: &Path) -> serde_json::Value {
    let status = Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .await
        .expect("status runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_slice(&status.stdout).expect("status JSON")
}
