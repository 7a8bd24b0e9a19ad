//! Read-only monitor accounts (`easyisp-central mqtt-monitor add|remove|list`) and finding
//! the managed Mosquitto from outside `serve` through its pid file.
//!
//! The command runs as a separate process beside a running `serve`: it changes the accounts
//! table, rewrites the account files under the shared file lock, and sends SIGHUP to the
//! managed Mosquitto when one runs. The pid is trusted only when `/proc/PID/cmdline` names
//! this data directory's `mosquitto.conf`, so a stale pid file never signals a stranger.

use super::files::Paths;
use super::{BrokerError, CENTRAL_USERNAME, passwd, random_error, write_account_files};
use crate::storage::{AccountKind, BrokerAccount, Storage};
use easyisp_protocol::Secret;
use std::path::Path;
use std::time::{Duration, Instant};

/// Shortest password accepted for a monitor account chosen by a person.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A monitor name: 1–64 of `A-Z a-z 0-9 _ -`, not a UUID (those are agents' usernames) and
/// not central's own account.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("the name must be 1 to 64 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("the name may contain only letters, digits, _ and -".into());
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err("the name must not be a UUID: those are the agents' usernames".into());
    }
    if name.eq_ignore_ascii_case(CENTRAL_USERNAME) {
        return Err(format!("{CENTRAL_USERNAME} is central's own account"));
    }
    Ok(())
}

/// The outcome of `mqtt-monitor add`.
#[derive(Debug)]
pub struct MonitorAdded {
    pub password: Secret<String>,
    /// Whether central made the password (then it is printed once).
    pub generated: bool,
    /// Whether a running managed Mosquitto was told to reload.
    pub reloaded: bool,
}

/// Creates the monitor account, or replaces its password.
pub async fn add(
    data_dir: &Path,
    storage: &Storage,
    name: &str,
    password: Option<Secret<String>>,
) -> Result<MonitorAdded, BrokerError> {
    validate_name(name).map_err(BrokerError::Config)?;
    let (password, generated) = match password {
        Some(p) if p.expose().chars().count() < MIN_PASSWORD_CHARS => {
            return Err(BrokerError::Config(format!(
                "the password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        Some(p) if p.expose().len() > 256 || p.expose().contains(['\n', '\r']) => {
            return Err(BrokerError::Config(
                "the password must be one line of at most 256 bytes".into(),
            ));
        }
        Some(p) => (p, false),
        None => (passwd::generate_password().map_err(random_error)?, true),
    };
    let hash = passwd::hash(&password).map_err(random_error)?;
    storage
        .put_broker_account(name.to_string(), AccountKind::Monitor, hash)
        .await?;
    let reloaded = rewrite_and_signal(data_dir, storage).await?;
    Ok(MonitorAdded {
        password,
        generated,
        reloaded,
    })
}

/// Deletes a monitor account: `(removed, reloaded)`.
pub async fn remove(
    data_dir: &Path,
    storage: &Storage,
    name: &str,
) -> Result<(bool, bool), BrokerError> {
    let removed = storage
        .delete_broker_account(name.to_string(), AccountKind::Monitor)
        .await?;
    let reloaded = rewrite_and_signal(data_dir, storage).await?;
    Ok((removed, reloaded))
}

/// Every broker account (central, monitors, agents), by username.
pub async fn list(storage: &Storage) -> Result<Vec<BrokerAccount>, BrokerError> {
    Ok(storage.broker_accounts().await?)
}

async fn rewrite_and_signal(data_dir: &Path, storage: &Storage) -> Result<bool, BrokerError> {
    let paths = Paths::new(data_dir);
    super::files::private_dir(&paths.dir)?;
    write_account_files(&paths, storage).await?;
    Ok(match running_mosquitto(&paths) {
        Some(pid) => send(pid, libc::SIGHUP),
        None => false,
    })
}

/// The pid of the Mosquitto started with this data directory's config, if it runs.
pub(super) fn running_mosquitto(paths: &Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&paths.pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 1 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let conf = paths.conf.as_os_str().as_encoded_bytes();
    let ours = cmdline.split(|b| *b == 0).any(|arg| arg == conf);
    ours.then_some(pid)
}

fn send(pid: i32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory effects; the pid was checked to be our Mosquitto.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Stops a Mosquitto left running with this data directory's config by an earlier `serve`
/// (one that could not stop it, e.g. under a debugger), so the new one can take the port.
pub(super) async fn stop_stale_mosquitto(paths: &Paths) {
    let Some(pid) = running_mosquitto(paths) else {
        return;
    };
    tracing::warn!(pid, "stopping a mosquitto left over from an earlier run");
    send(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() >= deadline {
            send(pid, libc::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_names_are_checked() {
        for good in ["noc", "grafana-1", "Zabbix_Proxy", &"a".repeat(64)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "with space",
            "colon:name",
            "easyisp-central",
            "EasyISP-Central",
            "0193a4c2-7d1e-7000-8000-000000000001",
            "0193a4c27d1e70008000000000000001",
            "ünïcode",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
