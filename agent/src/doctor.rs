//! `easyisp-agent doctor`: checks what the agent needs, one line per check: `OK`, `WARN` (works,
//! but look at it) or `FAIL` (the agent cannot do its job until fixed), each problem with what
//! to do. It only reads: it changes nothing on the router, the broker, the replica or the
//! disk, so it is safe beside a running agent.
//!
//! The verdicts are pure functions of what was observed (unit-tested below); the `check_*`
//! functions only observe.

use crate::config::Config;
use crate::replica::{self, migrations};
use crate::routeros::{self, ConnectOptions, RouterError};
use easyisp_mqtt::{LinkEvent, Session};
use std::fmt;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the router and the broker each get to answer.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found; for WARN and FAIL, also what to do.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.verdict {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{label:<4} {}", self.name)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Every check, in the order a technician would fix them.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// 0 without a FAIL, 1 with one.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.checks.iter().any(|c| c.verdict == Verdict::Fail))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

/// Runs every check against `config` (loaded without the permission check: that is one of
/// the checks here).
pub async fn doctor(config: &Config) -> Report {
    let (router, broker) = tokio::join!(check_router(config), check_broker(config));
    Report {
        checks: vec![
            check_config_file(&config.path),
            router,
            broker,
            check_clock(config),
            check_disk(&config.data_dir),
            check_data_dir(&config.data_dir),
            check_replica(&config.replica_path()),
        ],
    }
}

// ---- config file ----------------------------------------------------------------------------

fn check_config_file(path: &Path) -> Check {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(meta) => {
                // SAFETY: `geteuid` only reads the process's credentials and cannot fail.
                let me = unsafe { libc::geteuid() };
                let agent_user = if me == 0 { uid_of(AGENT_USER) } else { None };
                config_verdict(path, meta.mode() & 0o777, meta.uid(), me, agent_user)
            }
            Err(e) => Check::new("config", Verdict::Fail, format!("{}: {e}", path.display())),
        }
    }
    #[cfg(not(unix))]
    {
        Check::new("config", Verdict::Ok, path.display().to_string())
    }
}

/// The user the systemd unit runs the agent as.
const AGENT_USER: &str = "easyisp-agent";

#[cfg(unix)]
fn uid_of(user: &str) -> Option<u32> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: `name` is a valid C string; `getpwnam` returns null or a pointer to a static
    // record that we read at once, before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        (!entry.is_null()).then(|| (*entry).pw_uid)
    }
}

/// Mode 0600 (no access for group and others) and owned by the user the agent runs as: the
/// caller when not root; for root, the `easyisp-agent` user when it exists.
fn config_verdict(path: &Path, mode: u32, owner: u32, me: u32, agent_user: Option<u32>) -> Check {
    let file = path.display();
    if mode & 0o077 != 0 {
        return Check::new(
            "config",
            Verdict::Fail,
            format!(
                "{file} has mode {mode:o}: others can read the router and broker passwords in \
                 it, and the agent refuses to start: chmod 600 {file}"
            ),
        );
    }
    let expected = if me == 0 { agent_user } else { Some(me) };
    match expected {
        Some(uid) if uid != owner => Check::new(
            "config",
            Verdict::Warn,
            format!(
                "{file} is owned by uid {owner}, not by the user the agent runs as (uid {uid}): \
                 chown {AGENT_USER}: {file} (or run doctor as the agent's user)"
            ),
        ),
        _ => Check::new(
            "config",
            Verdict::Ok,
            format!("{file} (mode {mode:o}, owner uid {owner})"),
        ),
    }
}

// ---- router ---------------------------------------------------------------------------------

async fn check_router(config: &Config) -> Check {
    let mut options = ConnectOptions::new(config.router_password.clone());
    options.timeout = config.router_timeout.min(NETWORK_TIMEOUT);
    // Read-only: an unpinned SSH host key is left for `run` to record.
    options.known_hosts = config
        .known_hosts
        .exists()
        .then(|| config.known_hosts.clone());
    let url = &config.router_url;
    let read = async {
        let router = routeros::connect(url, options).await?;
        router.system_info().await
    };
    let outcome = match tokio::time::timeout(NETWORK_TIMEOUT + Duration::from_secs(2), read).await {
        Ok(outcome) => outcome,
        Err(_) => Err(RouterError::Timeout(format!(
            "no answer within {} s",
            NETWORK_TIMEOUT.as_secs() + 2
        ))),
    };
    match outcome {
        Ok(info) => Check::new(
            "router",
            Verdict::Ok,
            format!(
                "{url}: {:?}, RouterOS {}",
                info.identity.to_string_lossy(),
                info.resources.version
            ),
        ),
        Err(e) => Check::new(
            "router",
            Verdict::Fail,
            router_problem(&e, url, &config.path),
        ),
    }
}

/// What went wrong reaching the router and what to do about it.
fn router_problem(e: &RouterError, url: &routeros::RouterUrl, config: &Path) -> String {
    let file = config.display();
    match e {
        RouterError::AuthFailed => format!(
            "{url} refused the credentials: check the user in router.url and router.password in \
             {file} (the user must exist under /user on the router)"
        ),
        RouterError::Unreachable(m) if m.to_ascii_lowercase().contains("refused") => format!(
            "{url} refused the connection ({m}): check the port in router.url and that the \
             service is enabled under /ip service on the router"
        ),
        RouterError::Unreachable(m) => format!(
            "cannot connect to {url} ({m}): check the address in router.url, the network path \
             and the router's firewall"
        ),
        RouterError::Timeout(m) => format!(
            "{url} did not answer ({m}): check the address in router.url, the network path and \
             the router's firewall (a firewall that drops packets looks like this)"
        ),
        RouterError::PermissionDenied(m) => format!(
            "the router user lacks a permission ({m}): give its group the read, write, api or \
             rest-api, and sensitive policies"
        ),
        RouterError::Pinning(m) => format!("the router's identity does not match: {m}"),
        other => format!("{url}: {other}"),
    }
}

// ---- broker ---------------------------------------------------------------------------------

async fn check_broker(config: &Config) -> Check {
    let Some(central) = &config.central else {
        return Check::new(
            "broker",
            Verdict::Ok,
            "not configured (standalone; `enroll` joins central)",
        );
    };
    let url = &central.broker.url;
    // Not the daemon's client id: the broker would disconnect a running agent to let the
    // check in. No Last Will and no subscriptions: the check publishes and receives nothing.
    let session = Session {
        client_id: format!("{}-doctor", crate::sync::client_id(config.router_id)),
        keep_alive: Duration::from_secs(10),
        will: None,
        subscriptions: Vec::new(),
    };
    let cancel = CancellationToken::new();
    let mut link = match easyisp_mqtt::connect(&central.broker, session, cancel.clone()) {
        Ok(link) => link,
        Err(e) => return Check::new("broker", Verdict::Fail, format!("{url}: {e}")),
    };
    let first = tokio::time::timeout(NETWORK_TIMEOUT, link.events.recv()).await;
    // Cancelling sends DISCONNECT when connected, so the broker logs a clean goodbye.
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut link.task).await;
    match first {
        Ok(Some(LinkEvent::Connected)) => Check::new(
            "broker",
            Verdict::Ok,
            format!(
                "{url} accepted {} with the agent's password{}",
                central.broker.username,
                if url.tls {
                    " over TLS (central.ca_pem)"
                } else {
                    " (no TLS)"
                }
            ),
        ),
        Ok(Some(LinkEvent::Disconnected { reason })) => {
            Check::new("broker", Verdict::Fail, broker_problem(&reason, url))
        }
        Ok(Some(LinkEvent::Message { .. }) | None) => Check::new(
            "broker",
            Verdict::Fail,
            format!("{url}: the connection ended before the broker answered"),
        ),
        Err(_) => Check::new(
            "broker",
            Verdict::Fail,
            format!(
                "{url} did not answer within {} s: check the address and port in \
                 central.mqtt_url and the firewall between this machine and central",
                NETWORK_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// What a failed broker connection means, from the transport's reason.
fn broker_problem(reason: &str, url: &easyisp_mqtt::BrokerUrl) -> String {
    if reason.contains("NotAuthorized") || reason.contains("BadUserNamePassword") {
        format!(
            "{url} refused the agent's username or password ({reason}): enroll again \
             (easyisp-agent enroll --force) to get a new broker password"
        )
    } else if reason.starts_with("TLS") || reason.to_ascii_lowercase().contains("certificate") {
        format!(
            "TLS with {url} failed ({reason}): central.ca_pem must be the CA that signs the \
             broker's certificate and the host in central.mqtt_url must be in that certificate; \
             enroll again to refresh both"
        )
    } else if reason.to_ascii_lowercase().contains("refused") {
        format!(
            "{url} refused the connection ({reason}): check the port in central.mqtt_url and \
             that central's broker is running"
        )
    } else {
        format!("cannot connect to {url} ({reason}): check central.mqtt_url, DNS and the firewall")
    }
}

// ---- clock ----------------------------------------------------------------------------------

fn check_clock(config: &Config) -> Check {
    clock_verdict(
        config.assume_clock_synchronised,
        crate::clock::kernel_says_synchronised(),
    )
}

fn clock_verdict(assumed: bool, kernel_synchronised: bool) -> Check {
    match (kernel_synchronised, assumed) {
        (true, _) => Check::new("clock", Verdict::Ok, "NTP-synchronised"),
        (false, true) => Check::new(
            "clock",
            Verdict::Warn,
            "the kernel does not report NTP synchronisation; agent.assume_clock_synchronised = \
             true makes the agent trust it anyway: make sure the clock is right (timedatectl)",
        ),
        (false, false) => Check::new(
            "clock",
            Verdict::Fail,
            "the system clock is not NTP-synchronised, so expiry cut-offs are held: enable NTP \
             (timedatectl set-ntp true, or chrony) and check that UDP port 123 is open",
        ),
    }
}

// ---- disk -----------------------------------------------------------------------------------

const MB: u64 = 1024 * 1024;

fn check_disk(data_dir: &Path) -> Check {
    // The data dir may not exist before the first `run`: measure the filesystem it will be on.
    let Some(existing) = data_dir.ancestors().find(|p| p.exists()) else {
        return Check::new(
            "disk",
            Verdict::Warn,
            "cannot find the data directory's filesystem",
        );
    };
    match free_space(existing) {
        Ok((available, total)) => disk_verdict(data_dir, available, total),
        Err(e) => Check::new(
            "disk",
            Verdict::Warn,
            format!("cannot measure free space at {}: {e}", existing.display()),
        ),
    }
}

/// `(bytes available to this user, bytes in all)` of the filesystem holding `path`.
#[cfg(unix)]
// The widths of `statvfs`'s fields differ between platforms; `u64::from` fits them all.
#[allow(clippy::useless_conversion)]
fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is a valid C string and `stat` a zeroed struct we own; `statvfs` only
    // writes into it.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    let fragment = u64::from(stat.f_frsize);
    let (available, total) = (u64::from(stat.f_bavail), u64::from(stat.f_blocks));
    Ok((available * fragment, total * fragment))
}

#[cfg(not(unix))]
fn free_space(_: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not supported on this platform"))
}

/// FAIL below 2 % or 50 MB free, WARN below 10 % or 500 MB: SQLite needs room for its WAL
/// and a checkpoint, and a full disk stops the agent from recording anything.
fn disk_verdict(data_dir: &Path, available: u64, total: u64) -> Check {
    let percent = if total == 0 {
        0.0
    } else {
        available as f64 * 100.0 / total as f64
    };
    let found = format!(
        "{} MB free ({percent:.1} %) on the filesystem of {}",
        available / MB,
        data_dir.display()
    );
    if available < 50 * MB || percent < 2.0 {
        Check::new(
            "disk",
            Verdict::Fail,
            format!("{found}: free space now (old logs: journalctl --vacuum-size=100M)"),
        )
    } else if available < 500 * MB || percent < 10.0 {
        Check::new(
            "disk",
            Verdict::Warn,
            format!("{found}: free some space before it runs out"),
        )
    } else {
        Check::new("disk", Verdict::Ok, found)
    }
}

// ---- data dir and replica -------------------------------------------------------------------

fn check_data_dir(data_dir: &Path) -> Check {
    let dir = data_dir.display();
    if !data_dir.exists() {
        let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty());
        return match parent {
            Some(parent) if writable(parent) => Check::new(
                "data dir",
                Verdict::Warn,
                format!("{dir} does not exist yet: `run` creates it"),
            ),
            _ => Check::new(
                "data dir",
                Verdict::Fail,
                format!(
                    "{dir} does not exist and cannot be created: mkdir -m 700 {dir} && chown \
                     {AGENT_USER}: {dir} (or set agent.data_dir)"
                ),
            ),
        };
    }
    if writable(data_dir) {
        Check::new("data dir", Verdict::Ok, format!("{dir} is writable"))
    } else {
        Check::new(
            "data dir",
            Verdict::Fail,
            format!(
                "{dir} is not writable by this user: chown -R {AGENT_USER}: {dir} (or run \
                 doctor as the agent's user)"
            ),
        )
    }
}

/// Whether this process may create files in `dir`, asked without creating one.
fn writable(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `c_path` is a valid C string; `access` only reads the file system.
        unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    }
    #[cfg(not(unix))]
    {
        dir.metadata()
            .map(|m| !m.permissions().readonly())
            .unwrap_or(false)
    }
}

fn check_replica(path: &Path) -> Check {
    if !path.exists() {
        return Check::new(
            "replica",
            Verdict::Warn,
            format!("{} does not exist yet: `run` creates it", path.display()),
        );
    }
    match replica::inspect(path) {
        Ok(found) => replica_verdict(path, &found, migrations::known()),
        Err(e) => Check::new(
            "replica",
            Verdict::Fail,
            format!(
                "cannot read {}: {e}: check its owner and mode (the agent's user, 600)",
                path.display()
            ),
        ),
    }
}

fn replica_verdict(path: &Path, found: &replica::Inspection, known: usize) -> Check {
    let file = path.display();
    if found.quick_check != "ok" {
        return Check::new(
            "replica",
            Verdict::Fail,
            format!(
                "{file} is damaged ({}): stop the agent, move the file aside and start it \
                 again: central sends a fresh snapshot (changes not yet acknowledged by central \
                 are lost)",
                found.quick_check
            ),
        );
    }
    let version = found.schema_version;
    if version > known {
        Check::new(
            "replica",
            Verdict::Fail,
            format!(
                "{file} has schema version {version} but this agent knows only {known}: a newer \
                 agent wrote it; install that version again"
            ),
        )
    } else if version < known {
        Check::new(
            "replica",
            Verdict::Warn,
            format!("{file} has schema version {version} of {known}: the next `run` migrates it"),
        )
    } else {
        Check::new(
            "replica",
            Verdict::Ok,
            format!("{file} (schema version {version}, structure ok)"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_a_padded_verdict_and_the_check_name() {
        assert_eq!(
            Check::new("router", Verdict::Ok, "").to_string(),
            "OK   router"
        );
        assert_eq!(
            Check::new("disk", Verdict::Warn, "low").to_string(),
            "WARN disk: low"
        );
        assert_eq!(
            Check::new("clock", Verdict::Fail, "off").to_string(),
            "FAIL clock: off"
        );
    }

    #[test]
    fn only_a_fail_makes_the_exit_code_one() {
        let mut report = Report {
            checks: vec![
                Check::new("a", Verdict::Ok, ""),
                Check::new("b", Verdict::Warn, "w"),
            ],
        };
        assert_eq!(report.exit_code(), 0);
        report.checks.push(Check::new("c", Verdict::Fail, "f"));
        assert_eq!(report.exit_code(), 1);
        assert_eq!(report.to_string().lines().count(), 3);
    }

    #[test]
    fn disk_space_warns_below_ten_percent_or_500_mb_and_fails_below_two_percent_or_50_mb() {
        let dir = Path::new("/var/lib/easyisp-agent");
        let gb = 1024 * MB;
        assert_eq!(disk_verdict(dir, 50 * gb, 100 * gb).verdict, Verdict::Ok);
        assert_eq!(disk_verdict(dir, 9 * gb, 100 * gb).verdict, Verdict::Warn);
        assert_eq!(disk_verdict(dir, 400 * MB, 2 * gb).verdict, Verdict::Warn);
        assert_eq!(disk_verdict(dir, gb, 100 * gb).verdict, Verdict::Fail);
        assert_eq!(disk_verdict(dir, 40 * MB, 200 * MB).verdict, Verdict::Fail);
        assert_eq!(disk_verdict(dir, 0, 0).verdict, Verdict::Fail);
        let line = disk_verdict(dir, 9 * gb, 100 * gb).to_string();
        assert!(line.contains("9216 MB free (9.0 %)"), "{line}");
    }

    #[test]
    fn a_config_others_can_read_fails_with_the_chmod_to_run() {
        let path = Path::new("/etc/easyisp/agent.toml");
        let check = config_verdict(path, 0o644, 1000, 1000, None);
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.detail.contains("chmod 600 /etc/easyisp/agent.toml"));
        assert_eq!(
            config_verdict(path, 0o600, 1000, 1000, None).verdict,
            Verdict::Ok
        );
        assert_eq!(
            config_verdict(path, 0o600, 0, 1000, None).verdict,
            Verdict::Warn
        );
        // Root checking the file of the agent's user, and root without that user.
        assert_eq!(
            config_verdict(path, 0o600, 998, 0, Some(998)).verdict,
            Verdict::Ok
        );
        assert_eq!(
            config_verdict(path, 0o600, 0, 0, Some(998)).verdict,
            Verdict::Warn
        );
        assert_eq!(config_verdict(path, 0o600, 0, 0, None).verdict, Verdict::Ok);
    }

    #[test]
    fn an_unsynchronised_clock_fails_unless_assumed_which_warns() {
        assert_eq!(clock_verdict(false, true).verdict, Verdict::Ok);
        assert_eq!(clock_verdict(true, true).verdict, Verdict::Ok);
        assert_eq!(clock_verdict(true, false).verdict, Verdict::Warn);
        assert_eq!(clock_verdict(false, false).verdict, Verdict::Fail);
    }

    #[test]
    fn router_problems_name_the_fix() {
        let url: routeros::RouterUrl = "api://admin@192.0.2.1".parse().unwrap();
        let config = Path::new("/etc/easyisp/agent.toml");
        let auth = router_problem(&RouterError::AuthFailed, &url, config);
        assert!(
            auth.contains("router.password in /etc/easyisp/agent.toml"),
            "{auth}"
        );
        assert!(!auth.contains("EASYISP_ROUTER_PASSWORD"), "{auth}");
        let refused = router_problem(
            &RouterError::Unreachable("Connection refused (os error 111)".into()),
            &url,
            config,
        );
        assert!(refused.contains("/ip service"), "{refused}");
        let timeout = router_problem(&RouterError::Timeout("10 s".into()), &url, config);
        assert!(timeout.contains("firewall"), "{timeout}");
    }

    #[test]
    fn broker_problems_tell_credentials_tls_and_refusal_apart() {
        let url: easyisp_mqtt::BrokerUrl = "mqtts://central.example.net".parse().unwrap();
        assert!(
            broker_problem("Connection refused, return code: `NotAuthorized`", &url)
                .contains("enroll again")
        );
        assert!(broker_problem("TLS: invalid peer certificate", &url).contains("central.ca_pem"));
        assert!(
            broker_problem("I/O: Connection refused (os error 111)", &url)
                .contains("central's broker is running")
        );
    }

    #[test]
    fn a_replica_is_judged_by_its_structure_and_schema_version() {
        let path = Path::new("/var/lib/easyisp-agent/replica.db");
        let found = |check: &str, version| replica::Inspection {
            quick_check: check.into(),
            schema_version: version,
        };
        assert_eq!(
            replica_verdict(path, &found("ok", 2), 2).verdict,
            Verdict::Ok
        );
        assert_eq!(
            replica_verdict(path, &found("ok", 1), 2).verdict,
            Verdict::Warn
        );
        assert_eq!(
            replica_verdict(path, &found("ok", 3), 2).verdict,
            Verdict::Fail
        );
        assert_eq!(
            replica_verdict(path, &found("*** in database main ***", 2), 2).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn a_replica_file_is_inspected_without_being_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.db");
        std::fs::write(&path, b"").unwrap();
        let found = replica::inspect(&path).unwrap();
        assert_eq!(found.schema_version, 0);
        assert_eq!(found.quick_check, "ok");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "nothing written"
        );
        assert_eq!(
            check_replica(&dir.path().join("missing.db")).verdict,
            Verdict::Warn
        );
        assert!(!dir.path().join("missing.db").exists());
    }
}
