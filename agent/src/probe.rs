//! `easyisp-agent probe`: the first thing a technician runs at a POP. Connects read-only to the
//! router and reports identity, RouterOS version, board, clock, and counts of PPP secrets,
//! hotspot users and active sessions. It only reads: no command it sends changes the router.

use std::path::PathBuf;
use std::time::Duration;

use easyisp_protocol::Secret;
use serde::Serialize;

use crate::routeros::{self, ConnectOptions, Router, RouterError, RouterUrl};

/// Options of `easyisp-agent probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Router to probe: rest+https://USER@HOST[:PORT], rest+http://…, api://…, api-ssl://…
    /// or ssh://… (default ports 443, 80, 8728, 8729, 22). Add ?fingerprint=SHA256HEX to pin a
    /// self-signed certificate (REST over HTTPS, API-SSL). The password is read from the
    /// environment variable EASYISP_ROUTER_PASSWORD, never from the URL.
    // Parsed after clap, not by a value_parser: clap would echo a URL with a password in it.
    #[arg(long, value_name = "URL")]
    pub router: String,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// SSH only: known-hosts file pinning the router's host key. A router not yet in the file
    /// is recorded on first use; a different key later is refused.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Give up on a request after this long (e.g. 10s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_cli_duration)]
    pub timeout: Duration,
}

fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    routeros::value::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 10s, 1m or 500ms"))
}

/// What `probe` found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub router: String,
    pub transport: &'static str,
    pub identity: String,
    pub version: String,
    pub board: Option<String>,
    pub architecture: Option<String>,
    /// Router wall clock, `YYYY-MM-DD HH:MM:SS` in its own time zone.
    pub clock: Option<String>,
    pub time_zone: Option<String>,
    pub uptime_secs: Option<u64>,
    pub ppp_secrets: usize,
    /// `None` when the router has no hotspot menu.
    pub hotspot_users: Option<usize>,
    pub ppp_active: usize,
    pub hotspot_active: Option<usize>,
}

impl ProbeReport {
    pub fn to_text(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let count = |v: Option<usize>| v.map_or_else(|| "n/a".into(), |n| n.to_string());
        format!(
            "router:          {}\n\
             identity:        {}\n\
             version:         {}\n\
             board:           {}\n\
             architecture:    {}\n\
             clock:           {}{}\n\
             uptime:          {}\n\
             ppp secrets:     {}\n\
             hotspot users:   {}\n\
             active sessions: {} (ppp {}, hotspot {})\n",
            self.router,
            self.identity,
            self.version,
            opt(&self.board),
            opt(&self.architecture),
            opt(&self.clock),
            self.time_zone
                .as_ref()
                .map(|z| format!(" ({z})"))
                .unwrap_or_default(),
            self.uptime_secs
                .map_or_else(|| "-".into(), |s| format!("{s}s")),
            self.ppp_secrets,
            count(self.hotspot_users),
            self.ppp_active + self.hotspot_active.unwrap_or(0),
            self.ppp_active,
            count(self.hotspot_active),
        )
    }
}

/// Reads everything the report needs over an open driver.
pub async fn probe_router(
    router: &dyn Router,
    transport: &'static str,
) -> Result<ProbeReport, RouterError> {
    let info = router.system_info().await?;
    let ppp_secrets = router.count("/ppp/secret").await?;
    let ppp_active = router.count("/ppp/active").await?;
    let hotspot_users = optional(router.count("/ip/hotspot/user").await)?;
    let hotspot_active = optional(router.count("/ip/hotspot/active").await)?;
    Ok(ProbeReport {
        router: router.describe(),
        transport,
        identity: info.identity.to_string_lossy(),
        version: info.resources.version.clone(),
        board: info.resources.board_name.clone(),
        architecture: info.resources.architecture_name.clone(),
        clock: info
            .clock
            .date_time
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        time_zone: info.clock.time_zone.clone(),
        uptime_secs: info.resources.uptime.map(|d| d.as_secs()),
        ppp_secrets,
        hotspot_users,
        ppp_active,
        hotspot_active,
    })
}

/// A menu the router does not have (hotspot package missing) is "n/a", not a failure.
fn optional(r: Result<usize, RouterError>) -> Result<Option<usize>, RouterError> {
    match r {
        Ok(n) => Ok(Some(n)),
        Err(RouterError::InvalidValue { .. } | RouterError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Connects to `url` with `password` and probes.
pub async fn probe(
    args: &ProbeArgs,
    url: &RouterUrl,
    password: Secret<String>,
) -> Result<ProbeReport, RouterError> {
    let opts = ConnectOptions {
        password,
        timeout: args.timeout,
        known_hosts: args.known_hosts.clone(),
    };
    let router = routeros::connect(url, opts).await?;
    probe_router(router.as_ref(), url.transport.scheme()).await
}

/// One line for a technician, with what to check.
pub fn human_error(e: &RouterError) -> String {
    match e {
        RouterError::AuthFailed => {
            "authentication failed: check the user and EASYISP_ROUTER_PASSWORD".into()
        }
        RouterError::Unreachable(m) => format!(
            "router unreachable: {m} (check the address, port and that the service is enabled under /ip service)"
        ),
        RouterError::Timeout(m) => format!("router did not answer in time: {m}"),
        RouterError::PermissionDenied(m) => format!(
            "the router user lacks a permission ({m}): give its group read, api/rest-api/ssh and sensitive policies"
        ),
        other => other.to_string(),
    }
}

/// Process exit code for an error: 3 unreachable/timeout, 4 credentials/permissions,
/// 5 certificate or host key mismatch, 1 anything else. (2 is clap's usage error.)
pub fn exit_code(e: &RouterError) -> u8 {
    match e {
        RouterError::Unreachable(_) | RouterError::Timeout(_) => 3,
        RouterError::AuthFailed | RouterError::PermissionDenied(_) => 4,
        RouterError::Pinning(_) => 5,
        _ => 1,
    }
}
