//! Sync benchmark: the whole system on loopback (central with its managed Mosquitto, the
//! RouterOS simulator, a real enrolled agent, or many in-process agents) and three figures
//! the sync issue asks for. Prints figures; asserts nothing beyond "the run completed".
//!
//! - `latency`: an operator's change at central's API until the router has it, one change at
//!   a time (password changes, customers round-robin).
//! - `catchup`: the agent killed while central takes many changes, then restarted: time
//!   until the router holds every customer's final state and central's outbox is acked.
//! - `fanout`: many routers through one broker, their agents played by in-process MQTT
//!   clients that speak the agent's side of docs/sync.md: changes delivered and acked per
//!   second.
//!
//! Run it in release mode with central, the agent and the simulator built beside it:
//! `cargo build --release -p easyisp-central -p easyisp-agent --bins &&
//!  cargo build --release -p easyisp-tests --bins && target/release/sync-bench`
//!
//! Every child process is killed when the bench ends, also on an error or Ctrl-C.

mod api;
mod catchup;
mod fake_agent;
mod fanout;
mod latency;
mod system;
mod tap;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sync-bench",
    about = "Sync benchmarks: central change -> router latency, agent catch-up after an outage, fan-out through one broker",
    long_about = None
)]
pub struct Args {
    /// Scenarios to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,catchup,fanout"
    )]
    pub scenario: Vec<Scenario>,
    /// Customers on the simulated router (latency and catch-up share them).
    #[arg(long, default_value_t = 1_000)]
    pub customers: usize,
    /// latency: changes made one after another (password changes, customers round-robin).
    #[arg(long, default_value_t = 1_000)]
    pub changes: usize,
    /// catchup: updates per customer while the agent is down (customers × updates changes).
    #[arg(long, default_value_t = 100)]
    pub updates: usize,
    /// catchup and fanout: API requests in flight while making changes.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// fanout: routers, each with its own in-process agent.
    #[arg(long, default_value_t = 100)]
    pub routers: usize,
    /// fanout: customers per router.
    #[arg(long, default_value_t = 100)]
    pub router_customers: usize,
    /// fanout: updates per customer in each of the two phases.
    #[arg(long, default_value_t = 1)]
    pub fanout_updates: usize,
    /// Central's SQLite durability (`serve --sqlite-synchronous`).
    #[arg(long, value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,
    /// Give up on any single wait (convergence, catch-up) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Keep central's and the agent's logs in this directory (default: a temp dir, removed
    /// at the end). Their level follows RUST_LOG, which the children inherit.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

impl Args {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Where a child's log goes: `--log-dir` or `fallback` (a temp dir).
    pub fn log_path(&self, fallback: &Path, name: &str) -> PathBuf {
        self.log_dir.as_deref().unwrap_or(fallback).join(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Latency,
    Catchup,
    Fanout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    pub fn flag(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.customers > 0 && args.routers > 0 && args.router_customers > 0,
        "--customers, --routers and --router-customers must be at least 1"
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    if let Some(dir) = &args.log_dir {
        std::fs::create_dir_all(dir)?;
    }
    easyisp_tests::sim_harness::install_crypto_provider();
    // Dropping `run` (Ctrl-C) drops every process guard, which kills the children.
    tokio::select! {
        result = run(&args) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

async fn run(args: &Args) -> Result<()> {
    println!(
        "sync-bench: {} build, {} CPUs, load average at start {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        system::load_average()
    );
    let wants = |s| args.scenario.contains(&s);
    if wants(Scenario::Latency) || wants(Scenario::Catchup) {
        let pop = system::Pop::start(args).await?;
        if wants(Scenario::Latency) {
            latency::run(&pop, args).await?;
        }
        if wants(Scenario::Catchup) {
            let mut pop = pop;
            catchup::run(&mut pop, args).await?;
        }
    }
    if wants(Scenario::Fanout) {
        fanout::run(args).await?;
    }
    Ok(())
}

/// Percentiles of a sample (nearest rank); `sorted` must be ascending and non-empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
