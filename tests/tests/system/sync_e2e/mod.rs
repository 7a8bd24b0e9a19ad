//! The whole system end to end: a real `easyisp-central serve` (with its managed Mosquitto),
//! a real `easyisp-agent` enrolled through central's API and running against the RouterOS
//! simulator, and faults between them (kill -9, broker restarts, partitions through a proxy).

mod faults;
mod flow;
mod targeted;

use crate::central_api::harness::Central;
use easyisp_tests::binaries::workspace_bin;
use easyisp_tests::proxy::Proxy;
use easyisp_tests::sim_harness::{SimOptions, SimProcess, install_crypto_provider};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// One POP: central, a simulated router, and its enrolled agent.
pub(crate) struct Pop {
    pub central: Central,
    pub token: String,
    pub sim: SimProcess,
    pub router: String,
    pub package: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Between the agent and the broker when the POP was started with one.
    pub proxy: Option<Proxy>,
    agent: Option<Child>,
}

#[derive(Default)]
pub(crate) struct PopOptions {
    /// Route the agent's broker connection through a proxy the test can partition.
    pub proxy: bool,
    /// Extra `run` flags for the agent.
    pub agent_args: Vec<String>,
}

impl Pop {
    pub async fn start() -> Pop {
        Pop::start_with(PopOptions::default()).await
    }

    pub async fn start_with(options: PopOptions) -> Pop {
        install_crypto_provider();
        let central = Central::start().await;
        let token = central.admin().await;
        let (package, router) = central.package_and_router(&token).await;
        let sim = SimProcess::start(SimOptions::default())
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("agent.toml");

        let enroll = central
            .post(&format!("/api/routers/{router}/enroll"), &token, json!({}))
            .await;
        assert_eq!(enroll.status, 201, "{}", enroll.body);
        let output = std::process::Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&config)
            .args(["enroll", "--central", &central.base, "--token"])
            .arg(enroll.body["token"].as_str().expect("enroll token"))
            .arg("--router")
            .arg(sim.router_url("rest+http"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("EASYISP_ROUTER_PASSWORD", &sim.options.password)
            .output()
            .expect("easyisp-agent enroll runs");
        assert!(
            output.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let mut text = std::fs::read_to_string(&config).expect("config written by enroll");
        // This machine's kernel does not report NTP synchronisation; trust its clock.
        text = text.replacen(
            "[agent]\n",
            "[agent]\nassume_clock_synchronised = true\n",
            1,
        );
        let proxy = if options.proxy {
            let broker = mqtt_addr(&text);
            let proxy = Proxy::start(broker).await.expect("proxy starts");
            text = text.replace(
                &format!(":{}\"", broker.port()),
                &format!(":{}\"", proxy.addr().port()),
            );
            Some(proxy)
        } else {
            None
        };
        std::fs::write(&config, text).expect("config rewritten");

        let mut pop = Pop {
            central,
            token,
            sim,
            router,
            package,
            dir,
            config,
            proxy,
            agent: None,
        };
        pop.spawn_agent(&options.agent_args);
        pop
    }

    /// Starts `easyisp-agent run` (logs to `agent.log` in the POP's temp dir).
    pub fn spawn_agent(&mut self, extra: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .args(run_args(extra))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts");
        self.agent = Some(child);
    }

    /// Starts the agent with its wall clock shifted by `offset` (`+3h`, `-2h`) through
    /// libfaketime; its timers (monotonic clock) run normally.
    pub fn spawn_agent_skewed(&mut self, offset: &str, extra: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        // The library preloaded into the agent itself, not the `faketime` wrapper: the wrapper
        // forks, and killing it (kill_agent, or the test's end) would leave the agent running.
        let library = faketime_library().expect(
            "libfaketime is installed (apt-get install faketime, as scripts/install-deps does)",
        );
        let child = Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .args(run_args(extra))
            .env("RUST_LOG", "info")
            .env("LD_PRELOAD", library)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the agent starts");
        self.agent = Some(child);
    }

    /// kill -9 of the agent.
    pub async fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Both programs' logs, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "--- central ---\n{}\n--- agent ---\n{}",
            tail(&self.central.log()),
            tail(&self.agent_log())
        )
    }

    /// Creates a PPPoE customer on this POP's router and package; returns its id.
    pub async fn customer(&self, username: &str, extra: Value) -> String {
        let mut body = json!({
            "username": username,
            "password": "Zebra-Lamp-42",
            "name": format!("Customer {username}"),
            "phone": "0712345678",
            "connectionType": "PPPOE",
            "packageId": self.package,
            "nasId": self.router,
            "expiresAt": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let r = self.central.post("/api/customers", &self.token, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }

    /// The router's PPP secret of `username`, as the simulator holds it.
    pub async fn secret(&self, username: &str) -> Option<Value> {
        self.sim.control.secret(username).await.ok().flatten()
    }

    /// Waits until `check` holds, up to `timeout`; panics with both logs otherwise.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}\n{}", self.logs());
    }
}

/// libfaketime's preload library, where Debian's `faketime` package puts it.
fn faketime_library() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .find_map(|dir| {
            let candidate = dir.path().join("faketime/libfaketime.so.1");
            candidate.exists().then_some(candidate)
        });
    lib.or_else(|| {
        let candidate = PathBuf::from("/usr/lib/faketime/libfaketime.so.1");
        candidate.exists().then_some(candidate)
    })
}

/// `run`'s flags: a 5 s full reconcile and a 1 s counter poll unless `extra` sets its own.
fn run_args(extra: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, default) in [("--reconcile-interval", "5s"), ("--poll-interval", "1s")] {
        if !extra.iter().any(|a| a == flag) {
            args.extend([flag.to_string(), default.to_string()]);
        }
    }
    args.extend(extra.iter().cloned());
    args
}

/// A string property of a simulator row (`""` when absent).
pub(crate) fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(6000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    &log[start..]
}

/// The broker address in the `mqtt_url` line of an agent config.
fn mqtt_addr(config: &str) -> SocketAddr {
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with("mqtt_url"))
        .expect("enroll wrote mqtt_url");
    let url = line.split('"').nth(1).expect("quoted URL");
    let hostport = url.split("://").nth(1).expect("scheme");
    hostport.parse().expect("host:port of a loopback broker")
}
