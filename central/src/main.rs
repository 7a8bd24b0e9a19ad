//! The `easyisp-central` command line: `tenant add` and `serve`. The only place that uses
//! `anyhow`; everything else returns typed errors.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use easyisp_central::api::ApiConfig;
use easyisp_central::server::{ServeConfig, serve};
use easyisp_central::storage::{Storage, StorageOptions};
use easyisp_protocol::{Secret, validate};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// EasyISP central: the operators' server (customer module REST API on SQLite).
#[derive(Parser)]
#[command(name = "easyisp-central", version, about, long_about = None)]
struct Cli {
    /// Directory of the SQLite database and the key file that encrypts customer passwords.
    /// Created (mode 0700) with both on first start; migrations run automatically.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/easyisp-central",
        env = "EASYISP_DATA_DIR"
    )]
    data_dir: PathBuf,

    /// Log format on stderr: `human` (default) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Manage tenants (one ISP each).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Serve the REST API.
    Serve(ServeArgs),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and its first admin operator, and print the tenant id.
    ///
    /// The admin's password comes from the environment variable EASYISP_ADMIN_PASSWORD, or a
    /// prompt when standard input is a terminal.
    Add {
        /// The tenant's name (unique, case-insensitive); operators may log in with it or the id.
        #[arg(long)]
        name: String,
        /// Username of the tenant's first admin operator.
        #[arg(long, value_name = "USERNAME")]
        admin: String,
        /// Country calling code added to customer phone numbers written without one
        /// (e.g. 254 turns 0700 000 000 into +254700000000). Without it such numbers are refused.
        #[arg(long, value_name = "CODE")]
        calling_code: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API listener, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    http: SocketAddr,
    /// Address of the MQTT broker listener that central manages, e.g. 0.0.0.0:8883. Recorded
    /// for agent sync (not served by this version).
    #[arg(long, value_name = "ADDR")]
    mqtt: String,
    /// Customer creations allowed per tenant per minute (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 120)]
    customer_create_rate: u32,
    /// Days after which soft-deleted customers are anonymised.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    retention_days: u32,
    /// Seconds between retention passes.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    retention_interval_secs: u64,
    /// Lifetime of operator login tokens, in hours.
    #[arg(long, value_name = "HOURS", default_value_t = 12)]
    token_ttl_hours: u64,
    /// Lifetime of router enrollment tokens, in minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    enroll_ttl_minutes: u64,
    /// Failed logins per tenant+username within 15 minutes before further attempts get 429.
    #[arg(long, value_name = "N", default_value_t = 5)]
    login_failures_per_user: u32,
    /// Failed logins per client address within 15 minutes before further attempts get 429.
    #[arg(long, value_name = "N", default_value_t = 30)]
    login_failures_per_address: u32,
    /// Read-only SQLite connections in the read pool.
    #[arg(long, value_name = "N", default_value_t = 4)]
    readers: usize,
    /// SQLite durability: `full` (every commit survives power loss) or `normal` (faster; a
    /// power cut may lose the last commits, a crash of the process does not).
    #[arg(long, value_enum, default_value_t = Sync::Full)]
    sqlite_synchronous: Sync,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sync {
    Full,
    Normal,
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Tenant {
            command:
                TenantCommand::Add {
                    name,
                    admin,
                    calling_code,
                },
        } => runtime.block_on(tenant_add(cli.data_dir, name, admin, calling_code)),
        Command::Serve(args) => runtime.block_on(run_serve(cli.data_dir, args)),
    }
}

fn read_password() -> anyhow::Result<Secret<String>> {
    if let Ok(value) = std::env::var("EASYISP_ADMIN_PASSWORD") {
        return Ok(Secret::new(value));
    }
    if !std::io::stdin().is_terminal() {
        bail!("set EASYISP_ADMIN_PASSWORD (standard input is not a terminal to prompt on)");
    }
    let echo = |on: bool| {
        std::process::Command::new("stty")
            .arg(if on { "echo" } else { "-echo" })
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    eprint!("Password for the admin operator: ");
    std::io::stderr().flush().ok();
    let hidden = echo(false);
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        echo(true);
    }
    eprintln!();
    read.context("reading the password")?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_string()))
}

async fn tenant_add(
    data_dir: PathBuf,
    name: String,
    admin: String,
    calling_code: Option<String>,
) -> anyhow::Result<()> {
    validate::required_text("name", &name, validate::TEXT_MAX).context("invalid --name")?;
    validate::username(&admin).context("invalid --admin")?;
    if let Some(code) = &calling_code {
        validate::calling_code(code).context("invalid --calling-code")?;
    }
    let password = read_password()?;
    validate::operator_password(password.expose(), &admin).context("invalid admin password")?;
    let hash =
        tokio::task::spawn_blocking(move || easyisp_central::secrets::hash_password(&password))
            .await??;
    let dir = data_dir.clone();
    let storage =
        tokio::task::spawn_blocking(move || Storage::open(&dir, StorageOptions::default()))
            .await?
            .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let tenant = storage
        .create_tenant(name.trim().to_string(), calling_code, admin, hash)
        .await;
    tokio::task::spawn_blocking(move || storage.shutdown()).await?;
    let tenant = tenant.context("creating the tenant")?;
    println!("{tenant}");
    Ok(())
}

async fn run_serve(data_dir: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
        signals.cancel();
    });
    let config = ServeConfig {
        data_dir,
        http: args.http,
        mqtt: args.mqtt,
        api: ApiConfig {
            customer_create_per_minute: args.customer_create_rate,
            token_ttl: Duration::from_secs(args.token_ttl_hours.max(1) * 3600),
            enroll_ttl: Duration::from_secs(args.enroll_ttl_minutes.max(1) * 60),
            login_failures_per_user: args.login_failures_per_user.max(1),
            login_failures_per_address: args.login_failures_per_address.max(1),
        },
        storage: StorageOptions {
            readers: args.readers.max(1),
            synchronous_full: matches!(args.sqlite_synchronous, Sync::Full),
        },
        retention_days: args.retention_days,
        retention_interval: Duration::from_secs(args.retention_interval_secs.max(1)),
    };
    serve(config, shutdown).await.context("serving")
}
