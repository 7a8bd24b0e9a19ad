//! Operating the agent: `easyisp-agent doctor` against the RouterOS simulator and a real
//! Mosquitto (all OK; a wrong router password, wrong broker password and an open config file
//! each FAIL with the fix), and the Prometheus endpoint and JSON logs of a running agent.

use chrono::Utc;
use easyisp_agent::config::{RawAgent, RawCentral, RawConfig, RawRouter};
use easyisp_agent::replica::{Replica, store};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::{Hlc, NodeId};
use easyisp_tests::binaries::workspace_bin;
use easyisp_tests::mosquitto::{BrokerOptions, Mosquitto, free_port};
use easyisp_tests::sim_harness::{SimOptions, SimProcess, install_crypto_provider};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x0b5);
const BROKER_PASSWORD: &str = "agent-ops-broker-pw";
/// Long enough for a debug build on a loaded machine; conditions are polled, never slept on.
const WAIT: Duration = Duration::from_secs(20);

/// A simulator, a broker that knows the agent, and a config and replica in a temp dir.
struct Site {
    broker: Mosquitto,
    sim: SimProcess,
    router: Uuid,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Site {
    async fn start() -> Site {
        install_crypto_provider();
        let router = Uuid::now_v7();
        let broker = Mosquitto::start_with(BrokerOptions {
            users: vec![(router.to_string(), BROKER_PASSWORD.into())],
            acl: Vec::new(),
        })
        .expect("broker starts");
        let sim = SimProcess::start(SimOptions::default())
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("agent.toml");
        let site = Site {
            broker,
            sim,
            router,
            dir,
            config,
        };
        site.write_config(|_| {});
        site
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the config (mode 0600), changed by `edit`.
    fn write_config(&self, edit: impl FnOnce(&mut RawConfig)) {
        let mut raw = RawConfig {
            agent: RawAgent {
                router_id: self.router.to_string(),
                tenant_id: TENANT.to_string(),
                data_dir: Some(self.data_dir()),
                reconcile_interval_secs: Some(60),
                poll_interval_secs: Some(1),
                mass_cutoff_percent: None,
                mass_cutoff_min: None,
                // The test machine's kernel may not report NTP synchronisation.
                assume_clock_synchronised: Some(true),
                telemetry_interval_secs: None,
                metrics_listen: None,
                metrics_allow_remote: None,
            },
            router: RawRouter {
                url: self.sim.router_url("rest+http"),
                password: self.sim.options.password.clone(),
                timeout_secs: Some(5),
                known_hosts: None,
            },
            central: Some(RawCentral {
                url: "http://127.0.0.1:9".into(),
                mqtt_url: Some(format!("mqtt://127.0.0.1:{}", self.broker.port())),
                mqtt_password: Some(BROKER_PASSWORD.into()),
                ca_pem: None,
            }),
        };
        edit(&mut raw);
        raw.write(&self.config).expect("config written");
    }

    /// Runs `doctor`: (exit code, standard output, standard error).
    async fn doctor(&self) -> (i32, String, String) {
        let output = Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&self.config)
            .arg("doctor")
            .stdin(Stdio::null())
            .output();
        let output = tokio::time::timeout(WAIT, output)
            .await
            .expect("doctor finishes")
            .expect("doctor runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// The line of `report` for `check`.
fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| panic!("no {check} line in\n{report}"))
}

/// Three active customers of this router (and one package) in the replica.
async fn seed(replica: &Replica, router: Uuid) {
    let stamp = Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(3));
    let package = Uuid::now_v7();
    replica
        .write(move |tx| {
            let mut p = PackageRecord::empty(package, TENANT);
            p.name = Some(Lww::new("Home 10".into(), stamp));
            p.download_speed = Some(Lww::new(Speed::from_mbps(10), stamp));
            p.upload_speed = Some(Lww::new(Speed::from_mbps(5), stamp));
            store::merge_package(tx, &p)?;
            for n in 0..3 {
                let mut c = CustomerRecord::empty(Uuid::now_v7(), TENANT);
                c.username = Some(Lww::new(format!("ops{n}"), stamp));
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
        .expect("replica seeded");
}

#[tokio::test]
async fn doctor_passes_a_healthy_site_and_fails_each_broken_part_with_the_fix() {
    let site = Site::start().await;
    drop(Replica::open(&site.data_dir().join("replica.db")).expect("replica created"));

    let (code, report, stderr) = site.doctor().await;
    assert_eq!(code, 0, "healthy site\n{report}\n{stderr}");
    assert!(!report.contains("FAIL"), "{report}");
    for check in ["config", "router", "broker", "data dir", "replica"] {
        assert!(
            line(&report, check).starts_with("OK   "),
            "{check} is OK\n{report}"
        );
    }
    assert!(
        line(&report, "clock").starts_with("WARN clock"),
        "assumed clock warns\n{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.get(5..).is_some_and(|r| r.starts_with("disk")))
    );
    for secret in [BROKER_PASSWORD, site.sim.options.password.as_str()] {
        assert!(!report.contains(secret) && !stderr.contains(secret));
    }

    // A wrong router password: FAIL router, with the key to fix.
    site.write_config(|raw| raw.router.password = "not-the-password".into());
    let (code, report, _) = site.doctor().await;
    assert_eq!(code, 1, "{report}");
    let router = line(&report, "router");
    assert!(router.starts_with("FAIL router"), "{report}");
    assert!(router.contains("router.password"), "{router}");
    assert!(!report.contains("not-the-password"), "{report}");

    // A wrong broker password: FAIL broker, telling to enroll again.
    site.write_config(|raw| {
        if let Some(central) = raw.central.as_mut() {
            central.mqtt_password = Some("wrong-broker-pw".into());
        }
    });
    let (code, report, _) = site.doctor().await;
    assert_eq!(code, 1, "{report}");
    let broker = line(&report, "broker");
    assert!(broker.starts_with("FAIL broker"), "{report}");
    assert!(broker.contains("enroll again"), "{broker}");

    // A config others can read: FAIL config with the chmod, the other checks still run.
    site.write_config(|_| {});
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report, _) = site.doctor().await;
    assert_eq!(code, 1, "{report}");
    let config = line(&report, "config");
    assert!(config.starts_with("FAIL config"), "{report}");
    assert!(config.contains("chmod 600"), "{config}");
    assert!(line(&report, "router").starts_with("OK   "), "{report}");

    // A config that cannot be loaded: exit 2 with the config error.
    std::fs::write(&site.config, "[agent]\nrouter_id = 3\n").unwrap();
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, report, _) = site.doctor().await;
    assert_eq!(code, 2, "{report}");
    assert!(report.starts_with("FAIL config"), "{report}");
}

/// `GET /metrics` over a plain TCP connection: (status line, body).
async fn scrape(port: u16) -> Option<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn spawn_agent(site: &Site, port: u16) -> Child {
    let log = std::fs::File::create(site.dir.path().join("agent.log")).expect("agent log");
    Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(&site.config)
        .args(["--log-format", "json", "run", "--metrics-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts")
}

#[tokio::test]
async fn a_running_agent_serves_metrics_logs_json_and_survives_a_doctor_beside_it() {
    let site = Site::start().await;
    let replica = Replica::open(&site.data_dir().join("replica.db")).expect("replica created");
    seed(&replica, site.router).await;
    drop(replica);
    let port = free_port().expect("free port");
    let mut agent = spawn_agent(&site, port);
    let log = || std::fs::read_to_string(site.dir.path().join("agent.log")).unwrap_or_default();

    let ready = |body: &str| {
        body.lines()
            .any(|l| l == "easyisp_agent_customers{status=\"active\"} 3")
            && body
                .lines()
                .any(|l| l == "easyisp_agent_broker_connected 1")
            && body
                .lines()
                .any(|l| l == "easyisp_agent_router_reachable 1")
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = scrape(port).await;
        if last.as_ref().is_some_and(|(_, body)| ready(body)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = last.unwrap_or_else(|| panic!("no metrics\nagent log:\n{}", log()));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        ready(&body),
        "metrics not ready:\n{body}\nagent log:\n{}",
        log()
    );
    for name in [
        "easyisp_agent_active_sessions ",
        "easyisp_agent_router_errors_total ",
        "easyisp_agent_reconcile_duration_seconds ",
        "easyisp_agent_reconcile_total{result=\"ok\"} ",
        "easyisp_agent_outbox_depth ",
        "easyisp_agent_sync_applied_seq ",
        "easyisp_agent_clock_synchronised 1",
        "easyisp_agent_mass_cutoff_held 0",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "{name} in\n{body}"
        );
    }

    // doctor beside the daemon uses its own client id: the daemon stays connected.
    let (code, report, _) = site.doctor().await;
    assert_eq!(code, 0, "{report}");
    assert!(line(&report, "broker").starts_with("OK   "), "{report}");
    let (_, body) = scrape(port).await.expect("metrics after doctor");
    assert!(
        body.lines()
            .any(|l| l == "easyisp_agent_broker_connected 1"),
        "{body}"
    );
    assert!(
        !log().contains("lost the broker connection"),
        "doctor kicked the daemon off:\n{}",
        log()
    );

    // JSON logs: every line one object, the metrics address among the events.
    let pid = agent.id().expect("agent pid");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = tokio::time::timeout(WAIT, agent.wait())
        .await
        .expect("agent stops")
        .expect("exit status");
    assert!(status.success(), "{status}\n{}", log());
    let log = log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("serving Prometheus metrics"))
            && e["level"] == "INFO"),
        "{log}"
    );
    assert!(!log.contains(BROKER_PASSWORD), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a file");
}
