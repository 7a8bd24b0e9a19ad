//! The MQTT broker agents sync through (docs/sync.md, "Broker and accounts").
//!
//! - Managed (the default): central runs Mosquitto as a child process. It owns the broker's
//!   files in `DATA_DIR/mosquitto/` (config, `passwd`, `acl`) and the certificates in
//!   `DATA_DIR/tls/`, restarts Mosquitto when it dies, and sends SIGHUP when accounts change.
//! - External: an existing broker at a URL; central only connects to it, and keeps writing
//!   `passwd` and `acl` in Mosquitto's formats for that broker to use.
//!
//! Accounts live in the `broker_accounts` table (hashes only); the files are always rendered
//! from the table as a whole, under a file lock shared with the `mqtt-monitor` command, so
//! they never lose an account that another process added. This module never speaks MQTT
//! itself: central's sync client gets [`Broker::central_endpoint`] and connects on its own.

mod files;
pub mod health;
pub mod monitor;
pub mod passwd;
mod process;
mod tls;

use crate::storage::{AccountKind, Enrolled, Storage, StorageError, system_actor};
use easyisp_mqtt::{BrokerUrl, Endpoint};
use easyisp_protocol::Secret;
use files::{FileLock, Paths};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use uuid::Uuid;

pub use files::{MAX_INFLIGHT_MESSAGES, MAX_QUEUED_MESSAGES};

/// Username of central's own broker account in managed mode (and the default for
/// `--broker-username`).
pub const CENTRAL_USERNAME: &str = "easyisp-central";
/// How long `Broker::start` waits for a fresh Mosquitto to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Which broker central uses.
#[derive(Clone)]
pub enum BrokerMode {
    /// Central runs Mosquitto: listens on `listen`, agents are told to dial `advertise`.
    Managed {
        listen: SocketAddr,
        advertise: BrokerUrl,
    },
    /// An existing broker; central only connects to it.
    External {
        url: BrokerUrl,
        username: String,
        password: Secret<String>,
        ca_pem: Option<String>,
    },
}

impl std::fmt::Debug for BrokerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerMode::Managed { listen, advertise } => f
                .debug_struct("Managed")
                .field("listen", listen)
                .field("advertise", &advertise.to_string())
                .finish(),
            BrokerMode::External { url, username, .. } => f
                .debug_struct("External")
                .field("url", &url.to_string())
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// Where the broker's files live and which broker to use.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub mode: BrokerMode,
}

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(
        "mosquitto is not installed (looked in PATH and /usr/sbin); install mosquitto: apt-get install mosquitto"
    )]
    NotInstalled,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("broker certificates: {0}")]
    Tls(String),
    #[error("broker configuration: {0}")]
    Config(String),
    #[error("mosquitto: {0}")]
    Start(String),
    #[error("the system's random generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn random_error(e: getrandom::Error) -> BrokerError {
    BrokerError::Random(e.to_string())
}

/// The running broker (or the external one's coordinates). Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    storage: Storage,
    central: Endpoint,
    agent_url: BrokerUrl,
    ca_pem: Option<String>,
    /// `None` for an external broker.
    supervisor: Option<process::Supervisor>,
    /// Serialises rewrites within this process (the file lock covers other processes).
    rewrite: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("managed", &self.inner.supervisor.is_some())
            .field("agent_url", &self.inner.agent_url.to_string())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Managed: prepares certificates, accounts and config, starts Mosquitto and returns once
    /// it accepts TCP connections. External: writes the account files and returns.
    pub async fn start(config: BrokerConfig, storage: Storage) -> Result<Broker, BrokerError> {
        let paths = Paths::new(&config.data_dir);
        files::private_dir(&paths.dir)?;
        let broker = match config.mode {
            BrokerMode::Managed { listen, advertise } => {
                start_managed(paths, storage, listen, advertise).await?
            }
            BrokerMode::External {
                url,
                username,
                password,
                ca_pem,
            } => {
                ensure_central_account(&storage, &username, &password).await?;
                let broker = Broker {
                    inner: Arc::new(Inner {
                        paths,
                        storage,
                        central: Endpoint {
                            url: url.clone(),
                            username,
                            password,
                            ca_pem: ca_pem.clone(),
                        },
                        agent_url: url,
                        ca_pem,
                        supervisor: None,
                        rewrite: tokio::sync::Mutex::new(()),
                    }),
                };
                broker.reload_accounts().await?;
                tracing::info!(broker = %broker.inner.agent_url, "using an external MQTT broker");
                broker
            }
        };
        let record = health::Record {
            managed: broker.is_managed(),
            url: broker.inner.agent_url.to_string(),
        };
        files::write_atomic(
            &broker.inner.paths.record,
            record.render().as_bytes(),
            0o600,
        )?;
        Ok(broker)
    }

    /// How many times the managed Mosquitto exited on its own and was restarted; `None` for
    /// an external broker.
    pub fn restarts(&self) -> Option<u32> {
        self.inner.supervisor.as_ref().map(|s| s.unexpected_exits())
    }

    /// How central's own sync client logs in.
    pub fn central_endpoint(&self) -> Endpoint {
        self.inner.central.clone()
    }

    /// What enrolled agents dial.
    pub fn agent_url(&self) -> BrokerUrl {
        self.inner.agent_url.clone()
    }

    /// The CA certificate (PEM) agents trust; `None` for an external broker given no CA.
    pub fn ca_pem(&self) -> Option<String> {
        self.inner.ca_pem.clone()
    }

    /// Whether central runs the broker itself.
    pub fn is_managed(&self) -> bool {
        self.inner.supervisor.is_some()
    }

    /// The managed Mosquitto's pid while it runs (tests kill it to prove the restart).
    pub fn mosquitto_pid(&self) -> Option<u32> {
        self.inner.supervisor.as_ref().and_then(|s| s.pid())
    }

    /// Creates or rotates the router's account, rewrites the files and reloads the broker.
    /// The new password is returned once and stored only as a hash.
    pub async fn enroll_agent(
        &self,
        tenant: Uuid,
        router: Uuid,
    ) -> Result<Secret<String>, BrokerError> {
        let (password, hash) = new_password().await?;
        self.inner
            .storage
            .set_agent_account(tenant, router, system_actor("enrollment"), hash)
            .await?;
        self.reload_accounts().await?;
        Ok(password)
    }

    /// Redeems a one-time enrollment token (by its hash): `None` for an unknown, used or
    /// expired token; otherwise the router and its new broker password, with the account
    /// already live in the broker.
    pub async fn redeem(
        &self,
        token_hash: Vec<u8>,
    ) -> Result<Option<(Enrolled, Secret<String>)>, BrokerError> {
        let (password, hash) = new_password().await?;
        let Some(enrolled) = self
            .inner
            .storage
            .redeem_enroll_token(token_hash, hash)
            .await?
        else {
            return Ok(None);
        };
        self.reload_accounts().await?;
        tracing::info!(tenant = %enrolled.tenant_id, router = %enrolled.router_id, "agent enrolled");
        Ok(Some((enrolled, password)))
    }

    /// Removes the router's account and reloads: the connected agent is dropped and cannot
    /// log in again until it is enrolled again.
    pub async fn revoke_agent(&self, router: Uuid) -> Result<(), BrokerError> {
        self.inner.storage.remove_agent_account(router).await?;
        self.reload_accounts().await
    }

    /// Rewrites `passwd` and `acl` from the accounts table and, in managed mode, tells
    /// Mosquitto to re-read them (it drops clients whose account is gone) and waits until it
    /// has.
    pub async fn reload_accounts(&self) -> Result<(), BrokerError> {
        let _guard = self.inner.rewrite.lock().await;
        write_account_files(&self.inner.paths, &self.inner.storage).await?;
        if self.inner.supervisor.is_some() {
            // Callers answer only once the broker holds the new accounts: an agent that is
            // handed its password logs in at once, and a revoked one must be out by then.
            let inner = self.inner.clone();
            let confirmed = tokio::task::spawn_blocking(move || {
                inner
                    .supervisor
                    .as_ref()
                    .is_some_and(|supervisor| supervisor.reload_and_wait())
            })
            .await
            .unwrap_or(false);
            if !confirmed {
                tracing::warn!(
                    "mosquitto did not confirm re-reading its accounts within 5 s; \
                     the change applies once it does (or at its next start)"
                );
            }
        }
        Ok(())
    }

    /// Stops the managed Mosquitto (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(supervisor) = &inner.supervisor {
                supervisor.stop();
            }
        })
        .await;
    }
}

async fn new_password() -> Result<(Secret<String>, String), BrokerError> {
    let password = passwd::generate_password().map_err(random_error)?;
    let copy = password.clone();
    let hash = tokio::task::spawn_blocking(move || passwd::hash(&copy))
        .await
        .map_err(|e| BrokerError::Random(e.to_string()))?
        .map_err(random_error)?;
    Ok((password, hash))
}

/// Renders both account files from the table while holding the cross-process file lock.
async fn write_account_files(paths: &Paths, storage: &Storage) -> Result<(), BrokerError> {
    let lock_path = paths.lock.clone();
    let lock = tokio::task::spawn_blocking(move || FileLock::acquire(&lock_path))
        .await
        .map_err(|e| BrokerError::Start(e.to_string()))??;
    let accounts = storage.broker_accounts().await?;
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || {
        files::write_atomic(
            &paths.passwd,
            files::render_passwd(&accounts).as_bytes(),
            0o600,
        )?;
        files::write_atomic(&paths.acl, files::render_acl(&accounts).as_bytes(), 0o600)?;
        drop(lock);
        Ok(())
    })
    .await
    .map_err(|e| BrokerError::Start(e.to_string()))?
}

/// Stores central's account (hash of `password`) unless the stored hash already matches.
async fn ensure_central_account(
    storage: &Storage,
    username: &str,
    password: &Secret<String>,
) -> Result<(), BrokerError> {
    let accounts = storage.broker_accounts().await?;
    let current = accounts
        .iter()
        .find(|a| a.kind == AccountKind::Central && a.username == username);
    let only_one = accounts
        .iter()
        .filter(|a| a.kind == AccountKind::Central)
        .count()
        == 1;
    if let Some(account) = current
        && only_one
        && passwd::verify(password.expose(), &account.password_hash)
    {
        return Ok(());
    }
    let hash = passwd::hash(password).map_err(random_error)?;
    storage
        .put_broker_account(username.to_string(), AccountKind::Central, hash)
        .await?;
    Ok(())
}

/// Central's managed-broker password from `central.secret`, made on first start (or when
/// the file is empty); the account's hash follows it in [`ensure_central_account`].
fn central_secret(paths: &Paths) -> Result<Secret<String>, BrokerError> {
    let path = &paths.central_secret;
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BrokerError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    }
    let password = passwd::generate_password().map_err(random_error)?;
    files::write_atomic(path, password.expose().as_bytes(), 0o600)?;
    Ok(password)
}

/// The address central's own client dials: the listener's, or the loopback when the
/// listener takes every address.
fn local_dial(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

async fn start_managed(
    paths: Paths,
    storage: Storage,
    listen: SocketAddr,
    advertise: BrokerUrl,
) -> Result<Broker, BrokerError> {
    if listen.port() == 0 {
        return Err(BrokerError::Config(
            "the MQTT listener needs a fixed port (agents are told to dial it)".into(),
        ));
    }
    let binary = process::find_mosquitto()?;
    let mut hosts = vec![advertise.host.clone()];
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    let setup_paths = paths.clone();
    let (tls, password) = tokio::task::spawn_blocking(move || {
        let tls = tls::ensure(&setup_paths.tls_dir, &hosts, chrono::Utc::now())?;
        let password = central_secret(&setup_paths)?;
        Ok::<_, BrokerError>((tls, password))
    })
    .await
    .map_err(|e| BrokerError::Start(e.to_string()))??;
    ensure_central_account(&storage, CENTRAL_USERNAME, &password).await?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let run_as_root = unsafe { libc::geteuid() } == 0;
    let conf = files::render_conf(&paths, listen, &tls, run_as_root)?;
    files::write_atomic(&paths.conf, conf.as_bytes(), 0o600)?;
    write_account_files(&paths, &storage).await?;

    let probe = SocketAddr::new(local_dial(listen), listen.port());
    monitor::stop_stale_mosquitto(&paths).await;
    if tokio::net::TcpStream::connect(probe).await.is_ok() {
        return Err(BrokerError::Start(format!(
            "another program already listens on {probe}; stop it or choose another --mqtt address"
        )));
    }
    let supervisor = process::Supervisor::start(binary, paths.conf.clone())?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if supervisor.unexpected_exits() > 0 {
            let log = supervisor.log_tail();
            tokio::task::spawn_blocking(move || supervisor.stop())
                .await
                .ok();
            return Err(BrokerError::Start(format!(
                "it exited during the start; its last words:\n{log}"
            )));
        }
        if tokio::net::TcpStream::connect(probe).await.is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            let log = supervisor.log_tail();
            tokio::task::spawn_blocking(move || supervisor.stop())
                .await
                .ok();
            return Err(BrokerError::Start(format!(
                "it did not accept connections on {probe} within {} s:\n{log}",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = BrokerUrl::new(true, local_dial(listen).to_string(), listen.port());
    tracing::info!(listen = %listen, advertise = %advertise, "the managed MQTT broker is up");
    Ok(Broker {
        inner: Arc::new(Inner {
            paths,
            storage,
            central: Endpoint {
                url,
                username: CENTRAL_USERNAME.to_string(),
                password,
                ca_pem: Some(tls.ca_pem.clone()),
            },
            agent_url: advertise,
            ca_pem: Some(tls.ca_pem),
            supervisor: Some(supervisor),
            rewrite: tokio::sync::Mutex::new(()),
        }),
    })
}

/// The URL agents dial by default for a listener on `listen`: its address, or this
/// machine's host name when it listens on every address.
pub fn default_advertise(listen: SocketAddr) -> BrokerUrl {
    let host = if listen.ip().is_unspecified() {
        hostname().unwrap_or_else(|| "localhost".to_string())
    } else {
        listen.ip().to_string()
    };
    BrokerUrl::new(true, host, listen.port())
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_dial_the_listener_or_the_host_name() {
        let url = default_advertise("10.0.0.5:8883".parse().unwrap());
        assert_eq!(url.to_string(), "mqtts://10.0.0.5:8883");
        let url = default_advertise("[::]:8883".parse().unwrap());
        assert!(url.tls);
        assert_ne!(url.host, "::");
        assert_eq!(
            local_dial("0.0.0.0:1".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            local_dial("[::]:1".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn debug_prints_no_password() {
        let mode = BrokerMode::External {
            url: "mqtts://broker.example.net".parse().unwrap(),
            username: "central".into(),
            password: Secret::new("hunter2-secret".into()),
            ca_pem: None,
        };
        assert!(!format!("{mode:?}").contains("hunter2"));
    }
}
