//! `routeros-sim`: the RouterOS simulator process used by cross-process tests. Parses flags,
//! sets up logging on stderr (stdout carries only the port line) and runs `sim::launch`.

use clap::Parser;
use easyisp_tests::sim::launch;
use easyisp_tests::sim::server::{Ports, SimConfig};
use easyisp_tests::sim::version::RosVersion;

/// A simulated MikroTik RouterOS router (REST, classic API, SSH CLI) for tests. Binds only
/// 127.0.0.1; port 0 means ephemeral. Prints one JSON line with the bound ports on stdout.
#[derive(Debug, Parser)]
#[command(name = "routeros-sim", disable_version_flag = true)]
struct Args {
    /// Emulated RouterOS version: v6 disables REST and uses old dates and 32-bit interface
    /// counters; < 6.43 challenge login only, 6.43–6.45.0 both, 6.45.1+ plain only; 7.18+
    /// sends `!empty`.
    #[arg(long = "version", default_value = "7.16")]
    ros_version: RosVersion,
    /// Router user name.
    #[arg(long, env = "ROUTEROS_SIM_USER", default_value = "admin")]
    user: String,
    /// Router password (prefer the environment variable).
    #[arg(
        long,
        env = "ROUTEROS_SIM_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    password: String,
    /// `/system/identity` name.
    #[arg(long, default_value = "MikroTik")]
    identity: String,
    /// `/system/resource` board-name.
    #[arg(long, default_value = "hEX")]
    board: String,
    /// Latency added to every REST request, API command and SSH command.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay before a disconnected subscriber redials; 0 = only on `POST /redial/now`.
    #[arg(long, default_value_t = 2000)]
    redial_ms: u64,
    /// REST per-request timeout (`Session closed`); 60 s on a real router.
    #[arg(long, default_value_t = 60_000)]
    rest_timeout_ms: u64,
    /// Status code of a successful REST PUT.
    #[arg(long, default_value_t = 200)]
    rest_put_status: u16,
    /// Status code of a successful REST DELETE.
    #[arg(long, default_value_t = 200)]
    rest_delete_status: u16,
    /// Derive the SSH host key from this string, so it stays the same across restarts
    /// (default: a fresh key per process).
    #[arg(long)]
    ssh_host_key_seed: Option<String>,
    /// REST over plain HTTP port.
    #[arg(long, default_value_t = 0)]
    rest_port: u16,
    /// REST over HTTPS port.
    #[arg(long, default_value_t = 0)]
    rest_tls_port: u16,
    /// Classic API port.
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    /// API-SSL port.
    #[arg(long, default_value_t = 0)]
    api_ssl_port: u16,
    /// SSH port.
    #[arg(long, default_value_t = 0)]
    ssh_port: u16,
    /// Control interface (HTTP JSON) port.
    #[arg(long, default_value_t = 0)]
    control_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROUTEROS_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let a = Args::parse();
    let cfg = SimConfig {
        version: a.ros_version,
        user: a.user,
        password: a.password,
        identity: a.identity,
        board: a.board,
        latency_ms: a.latency_ms,
        redial_ms: (a.redial_ms > 0).then_some(a.redial_ms),
        rest_timeout_ms: a.rest_timeout_ms,
        rest_put_status: a.rest_put_status,
        rest_delete_status: a.rest_delete_status,
        ssh_host_key_seed: a.ssh_host_key_seed,
        ports: Ports {
            rest: a.rest_port,
            rest_tls: a.rest_tls_port,
            api: a.api_port,
            api_ssl: a.api_ssl_port,
            ssh: a.ssh_port,
            control: a.control_port,
        },
    };
    launch::run(cfg).await?;
    Ok(())
}
