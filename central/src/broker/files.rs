//! The broker's files in `DATA_DIR/mosquitto/`: `mosquitto.conf`, `passwd` (Mosquitto's
//! `user:$7$…` lines), `acl`, `central.secret` (central's own broker password), the pid file
//! Mosquitto writes, and a lock file that serialises rewrites between `serve` and the
//! `mqtt-monitor` command. Rendering is pure; writes are atomic (temp file + rename) so
//! Mosquitto never reads half a file on SIGHUP.

use super::BrokerError;
use crate::storage::{AccountKind, BrokerAccount};
use easyisp_protocol::topics;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The paths of the managed broker's files under a data directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub passwd: PathBuf,
    pub acl: PathBuf,
    pub pid: PathBuf,
    pub central_secret: PathBuf,
    pub lock: PathBuf,
    /// What `serve` last ran (managed or external, and the URL agents dial), for `doctor`.
    pub record: PathBuf,
    pub tls_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Paths {
        let dir = data_dir.join("mosquitto");
        Paths {
            conf: dir.join("mosquitto.conf"),
            passwd: dir.join("passwd"),
            acl: dir.join("acl"),
            pid: dir.join("mosquitto.pid"),
            central_secret: dir.join("central.secret"),
            lock: dir.join("files.lock"),
            record: dir.join("serve.info"),
            tls_dir: data_dir.join("tls"),
            dir,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` (and its parents) with mode 0700 when it does not exist yet.
pub fn private_dir(dir: &Path) -> Result<(), BrokerError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// Writes `contents` to a temporary file beside `path` with `mode`, flushes it to disk and
/// renames it over `path`: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), BrokerError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io_error(path))
}

/// An exclusive lock on `Paths::lock`, held while the account files are read from the
/// database and rewritten, so `serve` and `mqtt-monitor` never interleave. Released on drop.
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Blocks until the lock is ours: call off the async runtime.
    pub fn acquire(path: &Path) -> Result<FileLock, BrokerError> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_error(path))?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_error(path)(error));
            }
        }
    }
}

/// `user:hash` per account, sorted by username so unchanged accounts give an unchanged file.
pub fn render_passwd(accounts: &[BrokerAccount]) -> String {
    let mut lines: Vec<String> = accounts
        .iter()
        .map(|a| format!("{}:{}\n", a.username, a.password_hash))
        .collect();
    lines.sort();
    lines.concat()
}

/// The ACL: the agent pattern for everyone, central's account on the whole site tree, and
/// each monitor on every site's `status` and `telemetry`.
pub fn render_acl(accounts: &[BrokerAccount]) -> String {
    let mut out = String::from(
        "# Written by easyisp-central; changes made here are overwritten.\n\
         # Agents log in with their router id as username; this pattern confines each to its\n\
         # own subtree. Pattern lines apply to every user.\n",
    );
    out.push_str(topics::AGENT_ACL_PATTERN);
    out.push('\n');
    let mut named: Vec<&BrokerAccount> = accounts
        .iter()
        .filter(|a| a.kind != AccountKind::Agent)
        .collect();
    named.sort_by(|a, b| (a.kind, &a.username).cmp(&(b.kind, &b.username)));
    for account in named {
        out.push_str(&format!("\nuser {}\n", account.username));
        match account.kind {
            AccountKind::Central => {
                out.push_str(&format!("topic readwrite {}/#\n", topics::ROOT));
            }
            AccountKind::Monitor => {
                out.push_str(&format!("topic read {}\n", topics::ALL_STATUS));
                out.push_str(&format!("topic read {}\n", topics::ALL_TELEMETRY));
            }
            AccountKind::Agent => {}
        }
    }
    out
}

/// Mosquitto's queue and packet limits: generous queues so a burst towards a slow agent is
/// not dropped, and the packet limit both sides of the sync protocol use.
pub const MAX_QUEUED_MESSAGES: u32 = 10_000;
pub const MAX_INFLIGHT_MESSAGES: u32 = 100;

/// `mosquitto.conf` for one TLS listener on `listen`.
pub fn render_conf(
    paths: &Paths,
    listen: SocketAddr,
    tls: &super::tls::TlsFiles,
    run_as_root: bool,
) -> Result<String, BrokerError> {
    let path = |p: &Path| -> Result<String, BrokerError> {
        let text = p.display().to_string();
        if text.contains('\n') || text.contains('\r') {
            return Err(BrokerError::Config(format!(
                "the path {text:?} cannot be written into mosquitto.conf"
            )));
        }
        Ok(text)
    };
    let mut conf = String::from(
        "# Written by easyisp-central at every start; changes made here are overwritten.\n\
         # Accounts and the ACL live in the files below, rewritten when agents are enrolled\n\
         # or revoked and monitors added (followed by SIGHUP).\n",
    );
    if run_as_root {
        // Started as root, Mosquitto switches to the user "mosquitto", which cannot read the
        // files in central's private data directory; keep the user central runs as.
        conf.push_str("user root\n");
    }
    conf.push_str(&format!(
        "per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         pid_file {pid}\n\
         # Our own outboxes and cursors are the truth, not the broker's state.\n\
         persistence false\n\
         set_tcp_nodelay true\n\
         max_packet_size {packet}\n\
         max_queued_messages {queued}\n\
         max_inflight_messages {inflight}\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         log_timestamp false\n\
         connection_messages true\n\
         \n\
         listener {port} {host}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         cafile {ca}\n",
        passwd = path(&paths.passwd)?,
        acl = path(&paths.acl)?,
        pid = path(&paths.pid)?,
        packet = easyisp_mqtt::MAX_PACKET_BYTES,
        queued = MAX_QUEUED_MESSAGES,
        inflight = MAX_INFLIGHT_MESSAGES,
        port = listen.port(),
        host = listen.ip(),
        cert = path(&tls.server_cert)?,
        key = path(&tls.server_key)?,
        ca = path(&tls.ca_cert)?,
    ));
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn account(username: &str, kind: AccountKind) -> BrokerAccount {
        BrokerAccount {
            username: username.to_string(),
            kind,
            tenant_id: None,
            router_id: None,
            password_hash: format!("$7$1000$salt-of-{username}$hash"),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn acl_confines_agents_and_gives_monitors_status_and_telemetry_only() {
        let router = Uuid::now_v7().to_string();
        let accounts = vec![
            account(&router, AccountKind::Agent),
            account("noc-grafana", AccountKind::Monitor),
            account("easyisp-central", AccountKind::Central),
        ];
        let acl = render_acl(&accounts);
        assert!(acl.contains("pattern readwrite easyisp/v1/site/%u/#\n"));
        assert!(acl.contains("user easyisp-central\ntopic readwrite easyisp/v1/site/#\n"));
        assert!(acl.contains(
            "user noc-grafana\ntopic read easyisp/v1/site/+/status\ntopic read easyisp/v1/site/+/telemetry\n"
        ));
        // Agents need no user section: the pattern covers them.
        assert!(!acl.contains(&router));
        let passwd = render_passwd(&accounts);
        assert_eq!(passwd.lines().count(), 3);
        assert!(passwd.contains(&format!("{router}:$7$1000$salt-of-{router}$hash\n")));
    }

    #[test]
    fn atomic_writes_replace_the_file_with_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        write_atomic(&file, b"one", 0o600).unwrap();
        write_atomic(&file, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
