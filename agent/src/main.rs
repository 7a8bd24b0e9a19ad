//! `easyisp-agent` command line: parses arguments, sets up logging, runs one subcommand.
//! The work lives in the library; this file stays thin.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use easyisp_agent::cli;
use easyisp_agent::probe::{self, ProbeArgs};
use easyisp_agent::routeros::RouterUrl;
use easyisp_protocol::Secret;

/// EasyISP agent: runs next to one MikroTik router, makes it match the ISP's customer list and
/// reports sessions and usage.
#[derive(Debug, Parser)]
#[command(name = "easyisp-agent", version, about, long_about = None)]
struct Cli {
    /// Agent configuration file (TOML, mode 0600). Default /etc/easyisp/agent.toml. `enroll`
    /// writes it; `probe` does not use it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// How to write logs (to standard error): `human` lines (coloured on a terminal only) or
    /// `json`, one object per line for journald and log shippers. RUST_LOG filters both.
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the router read-only and print identity, version, board, clock and counts of
    /// PPP secrets, hotspot users and active sessions. Changes nothing on the router.
    /// The password comes from the environment variable EASYISP_ROUTER_PASSWORD.
    Probe(ProbeArgs),

    /// Join central: redeem a one-time enrollment token, receive the broker account and
    /// central's CA certificate, and write the config file (mode 0600) with the router's URL
    /// and password (from EASYISP_ROUTER_PASSWORD or a prompt). Checks the router read-only
    /// first and warns if it does not answer. Refuses to replace an existing config without
    /// --force.
    Enroll(easyisp_agent::enroll::EnrollArgs),

    /// Run the agent: keep the router in line with the replica (reconcile on every change and
    /// in full every reconcile interval), cut customers off at the exact second they expire,
    /// auto-renew from the wallet, turn session counters into sessions, and sync with central
    /// over MQTT when the config has a [central] section (standalone otherwise). One daemon
    /// per data directory: it holds DATA_DIR/agent.lock and a second one is refused. Stops on
    /// SIGTERM.
    Run(cli::RunArgs),

    /// Show what the agent knows: whether its daemon is running, router reachable, customers
    /// by status, active sessions, pending changes, clock state, a held mass cut-off, the last
    /// reconcile, and sync with central (broker connected, applied position, last
    /// acknowledgement). Changes nothing.
    Status(cli::StatusArgs),

    /// List the router's PPP secrets and hotspot users that EasyISP does not own; with --apply,
    /// take them over as customers. Without --apply nothing changes.
    Adopt(cli::AdoptArgs),

    /// Release a held mass cut-off: the next reconcile cuts those customers off.
    ConfirmCutoff,

    /// Check what the agent needs, one line each (OK, WARN, or FAIL with what to do): config
    /// file permissions, router reachable with its credentials, broker reachable with the
    /// agent's credentials, clock synchronised, disk space, data directory writable, replica
    /// integrity. Read-only; safe beside a running agent. Exits 1 when a check fails, 2 when
    /// the config cannot be loaded.
    Doctor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // The daemon logs its lifecycle and every router change; one-shot commands only problems;
    // doctor only errors, since its report already says what went wrong.
    let default_level = match cli.command {
        Command::Run(_) => "info",
        Command::Doctor => "error",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::Probe(args) => run_probe(args),
        Command::Enroll(args) => run_enroll(cli.config.as_deref(), args),
        Command::Doctor => run_doctor(cli.config.as_deref()),
        command => run_with_config(cli.config.as_deref(), command),
    }
}

/// Logs to standard error, filtered by RUST_LOG (default `default_level`). Colours only on a
/// terminal: journald and files get plain text.
fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Keeps glibc's heap close to what the agent really uses (docs/benchmarks.md, agent memory).
///
/// - One malloc arena instead of one per thread (glibc's default allows 8 per core): memory
///   freed by one thread is reused by the others, instead of each blocking thread (SQLite
///   reads, SSH) keeping a heap of its own.
/// - A fixed mmap threshold: a large buffer gets its own mapping and goes back to the system
///   when freed. glibc's default raises the threshold after such a free, so later large buffers
///   come from the heap and remain as holes in it.
///
/// An operator's own `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` takes precedence.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let configured = |name: &str| std::env::var_os(name).is_some();
        if configured("MALLOC_ARENA_MAX") || configured("GLIBC_TUNABLES") {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters, and it runs first in `main`,
        // before any other thread exists. A parameter it refuses stays at its default.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn run_enroll(
    config: Option<&std::path::Path>,
    args: easyisp_agent::enroll::EnrollArgs,
) -> ExitCode {
    let path = config.unwrap_or(std::path::Path::new(easyisp_agent::config::DEFAULT_CONFIG));
    // Checked before asking for a password the technician would type in vain.
    if let Err(e) = easyisp_agent::enroll::existing_config(path, args.force) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let password = match easyisp_agent::enroll::router_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(easyisp_agent::enroll::enroll(path, &args, password)) {
        Ok(done) => {
            if let Some(warning) = &done.router_warning {
                eprintln!(
                    "warning: the router did not answer with these credentials: {warning}\n\
                     warning: the config is written anyway; fix [router] in it (or enroll again \
                     with --force) before starting the agent"
                );
            }
            let name = if done.router_name.is_empty() {
                String::new()
            } else {
                format!("{:?} ", done.router_name)
            };
            println!("Enrolled router {name}({}).", done.router_id);
            println!(
                "Config written to {} (mode 0600); replica in {}.",
                done.config.display(),
                done.data_dir.display()
            );
            println!("Broker: {}", done.broker);
            println!(
                "Start the agent: easyisp-agent --config {} run",
                done.config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `doctor`: loads the config without refusing open permissions (that is one of its checks).
fn run_doctor(config: Option<&std::path::Path>) -> ExitCode {
    let path = config.unwrap_or(std::path::Path::new(easyisp_agent::config::DEFAULT_CONFIG));
    let config = match easyisp_agent::config::Config::load_ignoring_permissions(path) {
        Ok(config) => config,
        Err(e) => {
            println!("FAIL config: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = runtime.block_on(easyisp_agent::doctor::doctor(&config));
    print!("{report}");
    ExitCode::from(report.exit_code())
}

/// The commands that work from the configuration file.
fn run_with_config(config: Option<&std::path::Path>, command: Command) -> ExitCode {
    let config = match cli::load_config(config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Run(args) => cli::run(config, args).await,
            Command::Status(args) => cli::status(&config, &args).await,
            Command::Adopt(args) => cli::adopt(&config, &args).await,
            Command::ConfirmCutoff => cli::confirm_cutoff(&config).await,
            Command::Probe(_) | Command::Enroll(_) | Command::Doctor => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_probe(args: ProbeArgs) -> ExitCode {
    let url: RouterUrl = match args.router.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(password) = std::env::var_os("EASYISP_ROUTER_PASSWORD") else {
        eprintln!("error: set EASYISP_ROUTER_PASSWORD to the router user's password");
        return ExitCode::from(2);
    };
    let Ok(password) = password.into_string() else {
        eprintln!("error: EASYISP_ROUTER_PASSWORD is not valid UTF-8");
        return ExitCode::from(2);
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(probe::probe(&args, &url, Secret::new(password))) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", probe::human_error(&e));
            ExitCode::from(probe::exit_code(&e))
        }
    }
}
