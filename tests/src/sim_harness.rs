//! Test-side handle on the RouterOS simulator: `SimProcess::start` spawns the `routeros-sim`
//! binary, reads its port line and kills it on drop; `SimControl` is a typed client for the
//! control interface; `RawApi` speaks raw classic-API sentences; `eventually` polls a
//! condition with a deadline (never sleep to synchronise).
//!
//! Finding the binary: `$ROUTEROS_SIM_BIN` if set; else `routeros-sim` next to the running
//! test executable's `deps/` directory (cargo puts it there for `cargo test --workspace` and
//! for this crate's tests); else it is built once with `cargo build --bin routeros-sim` into
//! `<target>/routeros-sim-build` (a separate target dir, so a running `cargo test` holding
//! the main target lock cannot deadlock it).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, Once};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

pub use crate::sim::faults::{FailNext, Faults, HangNext, Service};
pub use crate::sim::launch::PortLine;
pub use crate::sim::sessions::SessionKind;

mod control;
mod raw_api;

pub use control::{OpCounts, SessionInfo, SimControl};
pub use raw_api::{RawApi, Sentence, attr};

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Emulated RouterOS version (`7.16`, `6.45.1`, ...).
    pub version: String,
    pub user: String,
    pub password: String,
    pub identity: String,
    pub board: String,
    pub latency_ms: u64,
    /// Redial delay after an admin disconnect; `None` (default) = only on `redial_now`, which
    /// keeps tests deterministic.
    pub redial_ms: Option<u64>,
    pub rest_timeout_ms: u64,
    /// Any further command-line flags.
    pub extra_args: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            version: "7.16".into(),
            user: "admin".into(),
            password: "sim-secret".into(),
            identity: "MikroTik".into(),
            board: "hEX".into(),
            latency_ms: 0,
            redial_ms: None,
            rest_timeout_ms: 60_000,
            extra_args: Vec::new(),
        }
    }
}

impl SimOptions {
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
}

/// A running simulator; killed when dropped.
pub struct SimProcess {
    child: tokio::process::Child,
    pub ports: PortLine,
    pub options: SimOptions,
    pub control: SimControl,
}

static BUILD: Mutex<Option<PathBuf>> = Mutex::new(None);

fn target_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// Path of the simulator binary, building it if needed (see the module docs).
pub fn sim_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ROUTEROS_SIM_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe_name = format!("routeros-sim{}", std::env::consts::EXE_SUFFIX);
    let profile_dir = target_profile_dir().context("cannot locate the target directory")?;
    let beside = profile_dir.join(&exe_name);
    if beside.is_file() {
        return Ok(beside);
    }
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return Ok(p.clone());
    }
    let target = profile_dir
        .parent()
        .unwrap_or(&profile_dir)
        .join("routeros-sim-build");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "easyisp-tests",
            "--bin",
            "routeros-sim",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .context("running cargo build for routeros-sim")?;
    if !status.success() {
        bail!("cargo build of routeros-sim failed: {status}");
    }
    let p = target.join("debug").join(&exe_name);
    *built = Some(p.clone());
    Ok(p)
}

impl SimProcess {
    pub async fn start(options: SimOptions) -> Result<SimProcess> {
        let bin = sim_binary()?;
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.arg("--version")
            .arg(&options.version)
            .arg("--user")
            .arg(&options.user)
            .arg("--identity")
            .arg(&options.identity)
            .arg("--board")
            .arg(&options.board)
            .arg("--latency-ms")
            .arg(options.latency_ms.to_string())
            .arg("--redial-ms")
            .arg(options.redial_ms.unwrap_or(0).to_string())
            .arg("--rest-timeout-ms")
            .arg(options.rest_timeout_ms.to_string())
            .args(&options.extra_args)
            .env("ROUTEROS_SIM_PASSWORD", &options.password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
            .await
            .context("routeros-sim did not print its port line within 30 s")??;
        let ports: PortLine = serde_json::from_str(line.trim())
            .with_context(|| format!("bad port line from routeros-sim: {line:?}"))?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move {
            let mut sink = String::new();
            while reader.read_line(&mut sink).await.is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let control = SimControl::new(ports.control)?;
        Ok(SimProcess {
            child,
            ports,
            options,
            control,
        })
    }

    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}/rest", self.ports.rest)
    }
    pub fn rest_tls_url(&self) -> String {
        format!("https://127.0.0.1:{}/rest", self.ports.rest_tls)
    }
    /// Router URL in the agent's syntax: `rest+http`, `rest+https`, `api`, `api-ssl`, `ssh`.
    pub fn router_url(&self, scheme: &str) -> String {
        let port = match scheme {
            "rest+http" => self.ports.rest,
            "rest+https" => self.ports.rest_tls,
            "api" => self.ports.api,
            "api-ssl" => self.ports.api_ssl,
            _ => self.ports.ssh,
        };
        format!("{scheme}://{}@127.0.0.1:{port}", self.options.user)
    }

    /// Kills the simulator now (e.g. to test an unreachable router).
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Opens a raw API connection and logs in with the plain method.
    pub async fn api_login(&self) -> Result<RawApi> {
        let mut api = RawApi::connect(self.ports.api).await?;
        let reply = api
            .call(&[
                "/login",
                &format!("=name={}", self.options.user),
                &format!("=password={}", self.options.password),
            ])
            .await?;
        if reply
            .first()
            .is_none_or(|s| s.first().is_none_or(|w| w != b"!done"))
        {
            bail!("API login failed: {reply:?}");
        }
        Ok(api)
    }
}

/// Installs rustls' `ring` provider once; reqwest is built with `rustls-no-provider`.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_reports_a_condition_that_never_holds() {
        let err = eventually(Duration::from_millis(60), || async { false }).await;
        assert!(err.is_err());
        let mut n = 0;
        eventually(Duration::from_secs(5), || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await
        .unwrap();
    }
}
