//! Process wiring: the shared `Sim` (state, credentials, faults, per-service on/off switches),
//! binding every listener on 127.0.0.1, accept loops that can stop listening or drop all
//! sockets on demand, and the one JSON line announcing the ports.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults::{Action, Faults, Service};
use super::state::{Hardware, State};
use super::version::RosVersion;

/// Start-up settings (from the command line).
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub version: RosVersion,
    pub user: String,
    pub password: String,
    pub identity: String,
    pub board: String,
    pub latency_ms: u64,
    /// `None` = redial only on the control interface's `POST /redial/now`.
    pub redial_ms: Option<u64>,
    pub rest_timeout_ms: u64,
    /// Status code of successful PUT (add) replies.
    pub rest_put_status: u16,
    /// Status code of successful DELETE replies.
    pub rest_delete_status: u16,
    /// Seed for a deterministic SSH host key.
    pub ssh_host_key_seed: Option<String>,
    pub ports: Ports,
}

/// Requested ports (0 = ephemeral).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    pub rest: u16,
    pub rest_tls: u16,
    pub api: u16,
    pub api_ssl: u16,
    pub ssh: u16,
    pub control: u16,
}

/// Router login credentials. Debug never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        self.user == user && self.password.as_bytes() == password
    }
}

/// The connections a service accepted since its last drop: cancelled together, and tracked
/// so that a drop can wait until every one of their sockets is closed.
#[derive(Debug, Default)]
struct Generation {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// How long a drop waits for its connections to close (a handler stuck in a blocking call
/// would otherwise hold up the control interface).
const DROP_WAIT: Duration = Duration::from_secs(5);

/// On/off switch and connection generation of one service.
#[derive(Debug)]
pub struct ServiceCtl {
    up: watch::Sender<bool>,
    conns: Mutex<Generation>,
}

impl ServiceCtl {
    fn new() -> Self {
        ServiceCtl {
            up: watch::channel(true).0,
            conns: Mutex::new(Generation::default()),
        }
    }
    /// Runs a new connection's handler until it ends or its generation is dropped.
    fn spawn_connection<F>(&self, handler: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let conns = lock(&self.conns);
        let cancel = conns.cancel.child_token();
        conns.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handler => {}
            }
        });
    }
    /// Closes every open connection of this service and returns once their sockets are
    /// closed, as a router's are when its control call answers: a client's next request
    /// then meets a closed connection, never one that closes under it a moment later.
    pub async fn drop_connections(&self) {
        let old = std::mem::take(&mut *lock(&self.conns));
        old.cancel.cancel();
        old.tasks.close();
        if tokio::time::timeout(DROP_WAIT, old.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open 5 s after they were dropped");
        }
    }
    /// Stops (false) or resumes (true) listening; stopping also drops open connections.
    pub async fn set_listening(&self, up: bool) {
        self.up.send_replace(up);
        if !up {
            self.drop_connections().await;
        }
    }
    pub fn listening(&self) -> bool {
        *self.up.borrow()
    }
}

/// Locks a std mutex, recovering from poisoning: the simulator's state stays usable for the
/// remaining tests even if one handler panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
pub struct Sim {
    pub state: Mutex<State>,
    pub creds: Mutex<Credentials>,
    pub faults: Mutex<Faults>,
    /// RouterOS' web server answers REST requests one at a time (routeros.md §1.8).
    pub rest_serial: tokio::sync::Mutex<()>,
    pub rest_put_status: u16,
    pub rest_delete_status: u16,
    rest: ServiceCtl,
    api: ServiceCtl,
    ssh: ServiceCtl,
}

impl Sim {
    pub fn new(cfg: &SimConfig) -> Arc<Self> {
        let hw = Hardware {
            board: cfg.board.clone(),
            architecture: "mmips".into(),
        };
        let state = State::new(
            cfg.version,
            &cfg.identity,
            hw,
            cfg.redial_ms.map(Duration::from_millis),
        );
        Arc::new(Sim {
            state: Mutex::new(state),
            creds: Mutex::new(Credentials {
                user: cfg.user.clone(),
                password: cfg.password.clone(),
            }),
            faults: Mutex::new(Faults {
                latency_ms: cfg.latency_ms,
                rest_timeout_ms: cfg.rest_timeout_ms,
                ..Faults::default()
            }),
            rest_serial: tokio::sync::Mutex::new(()),
            rest_put_status: cfg.rest_put_status,
            rest_delete_status: cfg.rest_delete_status,
            rest: ServiceCtl::new(),
            api: ServiceCtl::new(),
            ssh: ServiceCtl::new(),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
    pub fn creds(&self) -> Credentials {
        lock(&self.creds).clone()
    }
    pub fn version(&self) -> RosVersion {
        self.state().version
    }
    pub fn service(&self, s: Service) -> &ServiceCtl {
        match s {
            Service::Rest => &self.rest,
            Service::Api => &self.api,
            Service::Ssh => &self.ssh,
        }
    }

    /// Applies latency and takes one fault charge for a request on `svc`.
    pub async fn before_request(&self, svc: Service) -> Action {
        let (latency, action) = {
            let mut f = lock(&self.faults);
            (f.latency_ms, f.take(svc))
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        action
    }

    pub fn rest_timeout(&self) -> Duration {
        Duration::from_millis(lock(&self.faults).rest_timeout_ms)
    }
}

/// Binds 127.0.0.1:`port`.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Accepts connections while the service is up; when it goes down the listener is closed (new
/// connections are refused) and reopened on the same port when it comes back.
pub async fn accept_loop<H, Fut>(sim: Arc<Sim>, svc: Service, listener: TcpListener, handler: H)
where
    H: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let ctl = sim.service(svc);
    let mut up = ctl.up.subscribe();
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, ?svc, "listener has no local address");
            return;
        }
    };
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.take() else {
            // Down: wait to be switched back on, then bind the same port again.
            if up.wait_for(|u| *u).await.is_err() {
                return;
            }
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, ?svc, "rebinding failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        loop {
            tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(?svc, %peer, "connection accepted");
                        let _ = stream.set_nodelay(true);
                        ctl.spawn_connection(handler(stream));
                    }
                    Err(e) => tracing::warn!(error = %e, ?svc, "accept failed"),
                },
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*up.borrow_and_update() {
                        tracing::info!(?svc, "stopped listening");
                        break;
                    }
                }
            }
        }
        drop(l);
    }
}
