//! The processes of a benchmark run, each in a temp dir and killed when its guard drops:
//! `easyisp-central serve` (with its managed Mosquitto, which dies with it), the RouterOS
//! simulator, and a real agent enrolled through central's API, as scripts/demo does by hand.

use crate::Args;
use crate::api::{Api, pending_changes};
use crate::tap::Tap;
use anyhow::{Context, Result, bail};
use easyisp_tests::sim_harness::{SimOptions, SimProcess};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const TENANT: &str = "bench";

/// A program built beside this one (`target/release/NAME`).
pub fn beside(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name(name);
    if !exe.is_file() {
        bail!(
            "{} is missing: build it in the same profile (see --help)",
            exe.display()
        );
    }
    Ok(exe)
}

/// The 1-minute load average, for the printed machine context.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

/// A running `easyisp-central serve` with one tenant and a logged-in admin.
pub struct Central {
    child: Child,
    pub api: Api,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Central {
    /// `log_name`: the log's file name in `--log-dir` (or in central's temp dir).
    pub async fn start(args: &Args, log_name: &str) -> Result<Central> {
        let binary = beside("easyisp-central")?;
        let dir = tempfile::tempdir()?;
        let log = args.log_path(dir.path(), log_name);
        let data = dir.path().join("data");
        // A fresh random password per run; it is never printed.
        let password = format!("Bench-{}", uuid::Uuid::new_v4().simple());
        let added = Command::new(&binary)
            .arg("--data-dir")
            .arg(&data)
            .args(["tenant", "add", "--name", TENANT, "--admin", "admin"])
            .env("EASYISP_ADMIN_PASSWORD", &password)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !added.status.success() {
            bail!(
                "easyisp-central tenant add failed: {}",
                String::from_utf8_lossy(&added.stderr)
            );
        }
        let (http, mqtt) = (free_port()?, free_port()?);
        let child = Command::new(&binary)
            .arg("--data-dir")
            .arg(&data)
            .arg("serve")
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--mqtt")
            .arg(format!("127.0.0.1:{mqtt}"))
            .args(["--customer-create-rate", "0"])
            .args(["--sqlite-synchronous", args.sqlite_synchronous.flag()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting easyisp-central serve")?;
        let mut central = Central {
            child,
            api: Api::new(format!("http://127.0.0.1:{http}"))?,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !central.api.healthy().await {
            if let Ok(Some(status)) = central.child.try_wait() {
                bail!(
                    "central exited ({status}); its log:\n{}",
                    central.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "central did not answer within 60 s:\n{}",
                    central.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        central.api.login(TENANT, "admin", &password).await?;
        Ok(central)
    }

    /// The end of central's log, for error messages (it never logs secrets).
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One POP: central, the simulated router behind the tap, the enrolled agent and the
/// customers of `--customers`.
pub struct Pop {
    pub central: Central,
    pub sim: SimProcess,
    pub tap: Tap,
    pub router: String,
    /// Customer ids and usernames, in creation order.
    pub customers: Vec<(String, String)>,
    agent: Option<Child>,
    config: PathBuf,
    agent_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pop {
    pub async fn start(args: &Args) -> Result<Pop> {
        let agent_binary = beside("easyisp-agent")?;
        let central = Central::start(args, "central.log").await?;
        let sim = SimProcess::start(SimOptions::default()).await?;
        let tap = Tap::start(([127, 0, 0, 1], sim.ports.rest).into()).await?;
        let api = &central.api;
        let package = api.package("Bench 10").await?;
        let router = api.router("Bench POP").await?;

        let dir = tempfile::tempdir()?;
        let config = dir.path().join("agent.toml");
        let token = api.enroll_token(&router).await?;
        let enrolled = Command::new(&agent_binary)
            .arg("--config")
            .arg(&config)
            .args(["enroll", "--central", api.base(), "--token", &token])
            .arg("--router")
            .arg(format!("rest+http://{}@{}", sim.options.user, tap.addr()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("EASYISP_ROUTER_PASSWORD", &sim.options.password)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !enrolled.status.success() {
            bail!(
                "easyisp-agent enroll failed: {}",
                String::from_utf8_lossy(&enrolled.stderr)
            );
        }
        // A VM or container may not report NTP synchronisation; trust its clock here, as
        // scripts/demo does, or the agent holds cut-offs (which this bench never causes).
        let text = std::fs::read_to_string(&config)?.replacen(
            "[agent]\n",
            "[agent]\nassume_clock_synchronised = true\n",
            1,
        );
        std::fs::write(&config, text)?;

        let mut pop = Pop {
            central,
            sim,
            tap,
            router,
            customers: Vec::new(),
            agent: None,
            config,
            agent_log: args.log_path(dir.path(), "agent.log"),
            _dir: dir,
        };
        pop.start_agent()?;
        pop.create_customers(&package, args).await?;
        Ok(pop)
    }

    /// Creates the customers over the API with `--concurrency` requests in flight, then waits
    /// until the router has every secret and central's outbox is acked.
    async fn create_customers(&mut self, package: &str, args: &Args) -> Result<()> {
        let started = Instant::now();
        let api = self.central.api.clone();
        let (package, router) = (package.to_string(), self.router.clone());
        let names: Vec<String> = (0..args.customers).map(|n| format!("lat{n:05}")).collect();
        let ids = run_concurrently(args.concurrency, names.clone(), move |name| {
            let (api, package, router) = (api.clone(), package.clone(), router.clone());
            async move {
                api.customer(&name, &initial_password(&name), &package, &router)
                    .await
            }
        })
        .await?;
        self.customers = ids.into_iter().zip(names).collect();
        let created = started.elapsed();
        self.wait_converged(args.timeout(), |_| None).await?;
        println!(
            "setup: {} customers created over the API in {:.1} s, on the router and acked after {:.1} s",
            args.customers,
            created.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Starts `easyisp-agent run` with the config's intervals (logs to `agent.log`).
    pub fn start_agent(&mut self) -> Result<()> {
        let child = Command::new(beside("easyisp-agent")?)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.agent_log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting easyisp-agent run")?;
        self.agent = Some(child);
        Ok(())
    }

    /// kill -9 of the agent.
    pub async fn kill_agent(&mut self) -> Result<()> {
        if let Some(mut child) = self.agent.take() {
            child.kill().await?;
        }
        Ok(())
    }

    pub fn agent_log_tail(&self) -> String {
        tail(&self.agent_log)
    }

    /// Central's outbox for the router is empty (`sync.pendingChanges` = 0).
    pub async fn outbox_acked(&self) -> Result<bool> {
        let view = self.central.api.router_view(&self.router).await?;
        Ok(pending_changes(&view) == Some(0))
    }

    /// Whether the router holds every customer's secret with the password `expected` gives
    /// (`None`: the initial one) and nothing else of ours.
    pub async fn router_matches(&self, expected: &dyn Fn(usize) -> Option<String>) -> Result<bool> {
        let secrets = self.sim.control.menu("ppp/secret").await?;
        let on_router: std::collections::HashMap<&str, &str> = secrets
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?, s["password"].as_str()?)))
            .collect();
        Ok(self.customers.iter().enumerate().all(|(n, (_, name))| {
            let want = expected(n).unwrap_or_else(|| initial_password(name));
            on_router.get(name.as_str()) == Some(&want.as_str())
        }))
    }

    /// Polls every 50 ms until the router matches `expected` and the outbox is acked.
    /// Returns when each of the two first held, measured from the call.
    pub async fn wait_converged(
        &self,
        timeout: Duration,
        expected: impl Fn(usize) -> Option<String>,
    ) -> Result<(Duration, Duration)> {
        let started = Instant::now();
        let (mut router_at, mut acked_at) = (None, None);
        loop {
            if router_at.is_none() && self.router_matches(&expected).await? {
                router_at = Some(started.elapsed());
            }
            if acked_at.is_none() && self.outbox_acked().await? {
                acked_at = Some(started.elapsed());
            }
            if let (Some(router), Some(acked)) = (router_at, acked_at) {
                // The outbox may have been acked (empty) before the last change was made
                // visible; both must hold together at the end.
                if self.outbox_acked().await? {
                    return Ok((router, acked));
                }
                acked_at = None;
            }
            if started.elapsed() > timeout {
                bail!(
                    "not converged within {timeout:?} (router: {router_at:?}, outbox acked: {acked_at:?})\n--- central ---\n{}\n--- agent ---\n{}",
                    self.central.log_tail(),
                    self.agent_log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn initial_password(username: &str) -> String {
    format!("Init-{username}-pw")
}

/// Runs `work` over `items` with at most `limit` in flight; results in the items' order.
pub async fn run_concurrently<T, R, F, Fut>(limit: usize, items: Vec<T>, work: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R>> + Send + 'static,
{
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    let work = std::sync::Arc::new(work);
    let mut tasks = Vec::with_capacity(items.len());
    for item in items {
        let permit = semaphore.clone().acquire_owned().await?;
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let result = work(item).await;
            drop(permit);
            result
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}
