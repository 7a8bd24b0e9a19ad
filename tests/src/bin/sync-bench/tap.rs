//! A loopback TCP proxy between the agent and the simulator's REST port that notes the
//! moment a given byte string (a new password, unique per change) passes towards the router.
//! That is when the router receives the write, to the microsecond, without polling the
//! router; the simulator applies a request within the same millisecond. It also notes the
//! first request of any kind after it was armed: the start of the agent's reconcile pass
//! (its reads of every menu), which splits a change's latency in two.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the tap looks for, and whom to tell.
struct Watch {
    needle: Vec<u8>,
    first_request: Option<Instant>,
    seen: oneshot::Sender<Seen>,
}

/// When the router got the agent's first request after arming, and the watched bytes.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub first_request: Instant,
    pub needle: Instant,
}

type Slot = Arc<Mutex<Option<Watch>>>;

pub struct Tap {
    addr: SocketAddr,
    slot: Slot,
    task: JoinHandle<()>,
}

impl Tap {
    pub async fn start(target: SocketAddr) -> std::io::Result<Tap> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let slot: Slot = Arc::default();
        let task = tokio::spawn(accept_loop(listener, target, slot.clone()));
        Ok(Tap { addr, slot, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms the tap: the receiver gets the time `needle` is first seen going to the router
    /// (and of the first request since arming). A new watch replaces an older one.
    pub fn watch(&self, needle: &str) -> oneshot::Receiver<Seen> {
        let (seen, receiver) = oneshot::channel();
        let watch = Watch {
            needle: needle.as_bytes().to_vec(),
            first_request: None,
            seen,
        };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(watch);
        }
        receiver
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, slot: Slot) {
    while let Ok((client, _)) = listener.accept().await {
        let slot = slot.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let upstream = async move {
                let mut buf = vec![0u8; 64 * 1024];
                // The end of the previous read, so a needle split across reads is found.
                let mut carry: Vec<u8> = Vec::new();
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let at = Instant::now();
                    carry.extend_from_slice(&buf[..n]);
                    check(&slot, &carry, at);
                    let keep = carry.len().saturating_sub(256);
                    carry.drain(..keep);
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = server_write.shutdown().await;
            };
            let downstream = async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                let _ = client_write.shutdown().await;
            };
            tokio::join!(upstream, downstream);
        });
    }
}

fn check(slot: &Slot, data: &[u8], at: Instant) {
    let Ok(mut slot) = slot.lock() else {
        return;
    };
    let Some(watch) = slot.as_mut() else {
        return;
    };
    let first_request = *watch.first_request.get_or_insert(at);
    let found =
        !watch.needle.is_empty() && data.windows(watch.needle.len()).any(|w| w == watch.needle);
    if found && let Some(watch) = slot.take() {
        let _ = watch.seen.send(Seen {
            first_request,
            needle: at,
        });
    }
}
