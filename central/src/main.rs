//! The `easyisp-central` command line: `tenant add`, `mqtt-monitor`, `serve`, `backup` and
//! `doctor`. The only
//! place that uses `anyhow`; everything else returns typed errors.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use easyisp_central::api::ApiConfig;
use easyisp_central::broker::{self, BrokerMode};
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
    /// Directory of the SQLite database, the key file that encrypts customer passwords and
    /// the managed MQTT broker's files (tls/, mosquitto/). Created (mode 0700) on first
    /// start; migrations run automatically.
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
    /// Serve the REST API and run (or connect to) the MQTT broker agents sync through.
    ///
    /// The HTTP port also answers GET /metrics (Prometheus text format; aggregate numbers,
    /// no customer data). It needs no token unless the environment variable
    /// EASYISP_METRICS_TOKEN (at least 16 characters) is set; then scrapers send it as
    /// `Authorization: Bearer TOKEN`. See docs/monitoring.md, "Metrics".
    Serve(ServeArgs),
    /// Manage read-only MQTT monitor accounts: they may read every site's `status` and
    /// `telemetry` topics and nothing else (see docs/monitoring.md).
    MqttMonitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// Write a consistent copy of the database to FILE while central keeps running, and
    /// check its integrity. Keep the data directory's key file (customer-secrets.key) and
    /// tls/ with it: without the key the customers' passwords cannot be read back. See
    /// docs/backup.md for restoring.
    Backup {
        /// The backup file to create (refused if it exists); written with mode 0600.
        file: PathBuf,
    },
    /// Check this installation without changing it: data directory and key file modes,
    /// database integrity and schema version, the broker's certificates (expiry, names),
    /// the managed Mosquitto running and accepting central's login. Prints one line per
    /// check (OK, WARN or FAIL with what to do); exits 1 when any check fails. Run it as the
    /// service user: sudo -u easyisp-central easyisp-central doctor.
    Doctor {
        /// Also check that serve's HTTP API answers GET /api/health at this address, e.g.
        /// 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
enum MonitorCommand {
    /// Create a monitor account, or give an existing one a new password.
    ///
    /// The password comes from the environment variable EASYISP_MQTT_PASSWORD (at least 12
    /// characters); without it one is generated and printed once. A running managed broker
    /// picks the change up at once.
    Add {
        /// Username: 1-64 letters, digits, _ or -; not a UUID and not easyisp-central.
        name: String,
    },
    /// Delete a monitor account; its open connections are dropped.
    Remove {
        /// The monitor's username.
        name: String,
    },
    /// List every broker account (central, monitors, agents) with its kind.
    List,
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
    /// Address the managed MQTT broker listens on for agents (TLS), e.g. 0.0.0.0:8883.
    /// Central runs Mosquitto itself with its files in DATA_DIR/mosquitto and DATA_DIR/tls.
    /// Required unless --broker names an external broker.
    #[arg(long, value_name = "ADDR", required_unless_present = "broker")]
    mqtt: Option<SocketAddr>,
    /// The broker URL enrolled agents are told to dial, e.g. mqtts://central.example.net:8883.
    /// Default: mqtts://IP:PORT of --mqtt, or this machine's host name and the port when
    /// --mqtt listens on every address. Its host is written into the broker's certificate.
    #[arg(long, value_name = "URL", conflicts_with = "broker")]
    mqtt_advertise: Option<easyisp_mqtt::BrokerUrl>,
    /// Use an existing MQTT broker at this URL (mqtts://HOST:PORT or mqtt://HOST:PORT)
    /// instead of running Mosquitto; agents dial the same URL. Its password comes from the
    /// environment variable EASYISP_BROKER_PASSWORD. See docs/sync.md, "External broker".
    #[arg(long, value_name = "URL")]
    broker: Option<easyisp_mqtt::BrokerUrl>,
    /// Central's username on the external broker (with --broker).
    #[arg(long, value_name = "NAME", default_value = broker::CENTRAL_USERNAME)]
    broker_username: String,
    /// PEM file of the CA that signs the external broker's certificate; required for an
    /// mqtts:// --broker, and handed to enrolled agents.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_ca: Option<PathBuf>,
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

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
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
    // Doctor's report is its output; the MQTT client's retry chatter would only blur it.
    let quiet = matches!(cli.command, Command::Doctor { .. });
    init_logging(cli.log_format, if quiet { "error" } else { "info" });
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
        Command::MqttMonitor { command } => runtime.block_on(mqtt_monitor(cli.data_dir, command)),
        Command::Backup { file } => backup(&cli.data_dir, &file),
        Command::Doctor { http } => {
            let checks = runtime.block_on(easyisp_central::doctor::run(&cli.data_dir, http));
            for check in &checks {
                println!("{check}");
            }
            let code = easyisp_central::doctor::exit_code(&checks);
            drop(runtime);
            std::process::exit(code);
        }
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

/// The broker flags as a [`BrokerMode`], with every problem reported before anything starts.
fn broker_mode(args: &ServeArgs) -> anyhow::Result<BrokerMode> {
    if let Some(url) = &args.broker {
        let password = std::env::var("EASYISP_BROKER_PASSWORD").map_err(|_| {
            anyhow::anyhow!("set EASYISP_BROKER_PASSWORD to central's password on {url}")
        })?;
        let ca_pem = match &args.broker_ca {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading --broker-ca {}", file.display()))?,
            ),
            None if url.tls => bail!("--broker {url} uses TLS: give its CA with --broker-ca FILE"),
            None => None,
        };
        if args.broker_username.is_empty() || args.broker_username.contains(':') {
            bail!("--broker-username must be non-empty and must not contain ':'");
        }
        return Ok(BrokerMode::External {
            url: url.clone(),
            username: args.broker_username.clone(),
            password: Secret::new(password),
            ca_pem,
        });
    }
    // clap requires --mqtt when --broker is absent.
    let Some(listen) = args.mqtt else {
        bail!("give --mqtt ADDR (the managed broker's listener) or --broker URL");
    };
    let advertise = match &args.mqtt_advertise {
        Some(url) if !url.tls => {
            bail!("--mqtt-advertise {url}: the managed broker speaks TLS only; use mqtts://")
        }
        Some(url) => url.clone(),
        None => broker::default_advertise(listen),
    };
    Ok(BrokerMode::Managed { listen, advertise })
}

async fn mqtt_monitor(data_dir: PathBuf, command: MonitorCommand) -> anyhow::Result<()> {
    if let MonitorCommand::Add { name } | MonitorCommand::Remove { name } = &command {
        broker::monitor::validate_name(name)
            .map_err(|e| anyhow::anyhow!("invalid monitor name {name:?}: {e}"))?;
    }
    let dir = data_dir.clone();
    let storage =
        tokio::task::spawn_blocking(move || Storage::open(&dir, StorageOptions::default()))
            .await?
            .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    let result = match command {
        MonitorCommand::Add { name } => {
            let password = std::env::var("EASYISP_MQTT_PASSWORD").ok().map(Secret::new);
            broker::monitor::add(&data_dir, &storage, &name, password)
                .await
                .map(|added| {
                    if added.generated {
                        println!("{}", added.password.expose());
                        eprintln!(
                            "created the monitor {name}; its password is printed above, once"
                        );
                    } else {
                        eprintln!("saved the monitor {name} with the password from EASYISP_MQTT_PASSWORD");
                    }
                    if !added.reloaded {
                        eprintln!("no managed broker is running; it will load the account when serve starts");
                    }
                })
        }
        MonitorCommand::Remove { name } => broker::monitor::remove(&data_dir, &storage, &name)
            .await
            .and_then(|(removed, _)| {
                if removed {
                    eprintln!("removed the monitor {name}");
                    Ok(())
                } else {
                    Err(broker::BrokerError::Config(format!(
                        "there is no monitor {name:?}"
                    )))
                }
            }),
        MonitorCommand::List => broker::monitor::list(&storage).await.map(|accounts| {
            for account in accounts {
                println!(
                    "{}\t{}\t{}",
                    account.kind.as_str(),
                    account.username,
                    account.created_at.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
        }),
    };
    tokio::task::spawn_blocking(move || storage.shutdown()).await?;
    result.context("mqtt-monitor")
}

async fn run_serve(data_dir: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let broker = broker_mode(&args)?;
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
        broker,
        api: ApiConfig {
            customer_create_per_minute: args.customer_create_rate,
            token_ttl: Duration::from_secs(args.token_ttl_hours.max(1) * 3600),
            enroll_ttl: Duration::from_secs(args.enroll_ttl_minutes.max(1) * 60),
            login_failures_per_user: args.login_failures_per_user.max(1),
            login_failures_per_address: args.login_failures_per_address.max(1),
            metrics_token: metrics_token()?,
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

/// `EASYISP_METRICS_TOKEN`: when set (non-empty), `/metrics` wants it as a bearer token.
fn metrics_token() -> anyhow::Result<Option<easyisp_central::api::metrics::MetricsToken>> {
    match std::env::var("EASYISP_METRICS_TOKEN") {
        Ok(token) if token.trim().is_empty() => Ok(None),
        Ok(token) if token.trim().len() < 16 => {
            bail!("EASYISP_METRICS_TOKEN must have at least 16 characters")
        }
        Ok(token) => Ok(Some(easyisp_central::api::metrics::MetricsToken::new(
            token.trim(),
        ))),
        Err(_) => Ok(None),
    }
}

fn backup(data_dir: &std::path::Path, file: &std::path::Path) -> anyhow::Result<()> {
    let report = easyisp_central::storage::backup(data_dir, file)
        .with_context(|| format!("backing up {} to {}", data_dir.display(), file.display()))?;
    println!(
        "wrote {} ({} bytes, schema version {}); keep {} and {} with it",
        file.display(),
        report.bytes,
        report.schema_version,
        data_dir.join(easyisp_central::secrets::KEY_FILE).display(),
        data_dir.join("tls").display(),
    );
    Ok(())
}
