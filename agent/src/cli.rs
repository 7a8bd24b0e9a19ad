//! The daemon-side commands of `easyisp-agent` (`run`, `status`, `adopt`, `confirm-cutoff`):
//! argument types and what each does, so `main.rs` only parses and dispatches.

use crate::config::Config;
use crate::daemon::{self, Overrides, state};
use crate::replica::Replica;
use crate::routeros::{ConnectOptions, connect};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Full reconcile (drift repair) every DURATION, e.g. 30s or 2m. Overrides
    /// `agent.reconcile_interval_secs` of the config file (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reconcile_interval: Option<Duration>,

    /// Read session counters every DURATION. Overrides `agent.poll_interval_secs` (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9184. Overrides
    /// `agent.metrics_listen`. A non-loopback address needs `agent.metrics_allow_remote = true`
    /// (the endpoint has no authentication).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// Take the listed objects over as customers. Without it, nothing changes.
    #[arg(long)]
    pub apply: bool,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::routeros::value::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 2s, 1m or 500ms"))
}

/// `run`: the daemon, until SIGTERM or Ctrl-C.
pub async fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    // Checked before anything starts, so a typo stops `run` instead of running unwatched.
    let metrics_listen = match args.metrics_listen.as_deref() {
        Some(text) => Some(
            crate::config::metrics_address(text, config.metrics_allow_remote)
                .map_err(|e| anyhow::anyhow!("--metrics-listen: {e}"))?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    let overrides = Overrides {
        reconcile_interval: args.reconcile_interval,
        poll_interval: args.poll_interval,
        metrics_listen,
    };
    daemon::run(config, overrides, shutdown).await
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// `status`.
pub async fn status(config: &Config, args: &StatusArgs) -> anyhow::Result<()> {
    let report = crate::status::status(config).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// `adopt`.
pub async fn adopt(config: &Config, args: &AdoptArgs) -> anyhow::Result<()> {
    let mut options = ConnectOptions::new(config.router_password.clone());
    options.timeout = config.router_timeout;
    options.known_hosts = Some(config.known_hosts.clone());
    let router = connect(&config.router_url, options).await?;
    let report = crate::adopt::adopt(config, router.as_ref(), args.apply).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if report.candidates.is_empty() {
        println!("Every PPP secret and hotspot user on the router is already EasyISP's.");
        return Ok(());
    }
    for c in &report.candidates {
        let package = c.package.map_or_else(
            || "no matching package".to_string(),
            |p| format!("package {p}"),
        );
        match &c.problem {
            None => println!(
                "  {:<8} {:<24} profile {:<16} {package}",
                c.kind.as_str(),
                c.name,
                c.profile
            ),
            Some(problem) => println!(
                "  {:<8} {:<24} CANNOT ADOPT: {problem}",
                c.kind.as_str(),
                c.name
            ),
        }
    }
    let adoptable = report
        .candidates
        .iter()
        .filter(|c| c.problem.is_none())
        .count();
    if report.applied {
        println!(
            "Adopted {} of {} objects; they sync to central as customers.",
            report.adopted,
            report.candidates.len()
        );
    } else {
        println!(
            "{adoptable} of {} objects can be adopted. Nothing was changed; run with --apply to adopt them.",
            report.candidates.len()
        );
    }
    Ok(())
}

/// `confirm-cutoff`: releases a held mass cut-off; the daemon's next reconcile applies it.
pub async fn confirm_cutoff(config: &Config) -> anyhow::Result<()> {
    let replica = Replica::open(&config.replica_path())?;
    let hold = replica.read(state::held).await?;
    let Some(hold) = hold else {
        println!("No mass cut-off is held.");
        return Ok(());
    };
    replica
        .write(|tx| state::set_json(tx, state::MASS_CUTOFF_CONFIRMED, &true))
        .await?;
    println!(
        "Confirmed: {} of {} customers will be cut off at the next reconcile.",
        hold.customers, hold.of_total
    );
    Ok(())
}

/// Loads the config file, defaulting to `/etc/easyisp/agent.toml`.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let path = path.unwrap_or(Path::new(crate::config::DEFAULT_CONFIG));
    Ok(Config::load(path)?)
}
