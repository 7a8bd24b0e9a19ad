//! The writer thread: owns the only write connection and runs closures sent over a channel.
//!
//! Jobs queued together are group-committed: one `BEGIN IMMEDIATE` ... `COMMIT`, one savepoint
//! per job so a failing job rolls back alone. Replies go out only after the commit, so a
//! caller never sees a success that was not durable. This is the single place where a change
//! commits together with its audit events ([`Tx::flush`]); the sync issue adds its outbox rows
//! in `flush` as well.

use super::{Result, StorageError, audit};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::AuditEvent;
use easyisp_protocol::hlc::{DEFAULT_MAX_DRIFT_MS, Hlc, HlcClock, NodeId};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Jobs in one group commit at most.
const MAX_GROUP: usize = 256;
/// Queued jobs before callers wait (back-pressure).
const QUEUE: usize = 4096;

/// What a write closure sees: the connection inside the open transaction, the clock for field
/// stamps, the time of the job, and the audit events to commit with it.
pub struct Tx<'c> {
    conn: &'c Connection,
    clock: &'c mut HlcClock,
    now: DateTime<Utc>,
    audit: Vec<AuditEvent>,
}

impl<'c> Tx<'c> {
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// The wall time of this job (one value for all of its rows).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// A fresh hybrid-logical-clock stamp for a field written by this job.
    pub fn stamp(&mut self) -> Hlc {
        let wall = u64::try_from(self.now.timestamp_millis()).unwrap_or(0);
        self.clock.tick(wall)
    }

    /// Records an audit event; it is written by [`Tx::flush`] in the same transaction.
    pub fn audit(&mut self, event: AuditEvent) {
        self.audit.push(event);
    }

    /// The event recorded last, to amend before it is written (anonymisation redacts it).
    pub fn last_audit_mut(&mut self) -> Option<&mut AuditEvent> {
        self.audit.last_mut()
    }

    /// Writes the job's audit events (and, later, outbox rows). Called once per job by
    /// `Storage::write` after the closure succeeded, still inside the job's savepoint.
    fn flush(&mut self) -> Result<()> {
        for event in self.audit.drain(..) {
            audit::insert(self.conn, &event)?;
        }
        Ok(())
    }
}

trait Pending: Send {
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, commit: std::result::Result<(), String>);
}

struct Reply<T> {
    result: Result<T>,
    to: oneshot::Sender<Result<T>>,
}

impl<T: Send> Pending for Reply<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn finish(self: Box<Self>, commit: std::result::Result<(), String>) {
        let result = match commit {
            Ok(()) => self.result,
            Err(e) if self.result.is_ok() => Err(StorageError::Commit(e)),
            Err(_) => self.result,
        };
        // The caller may have gone away (request cancelled); nothing to tell then.
        let _ = self.to.send(result);
    }
}

/// A queued closure. It receives `None` when its transaction could not begin, and then only
/// answers its caller with the error.
type Job = Box<dyn for<'a, 'c> FnOnce(Option<&'a mut Tx<'c>>) -> Box<dyn Pending> + Send>;

#[derive(Clone)]
pub struct WriterHandle {
    sender: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl WriterHandle {
    pub fn start(conn: Connection) -> Result<WriterHandle> {
        let clock = load_clock(&conn)?;
        let (sender, receiver) = mpsc::channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, clock, receiver))
            .map_err(|e| StorageError::Io {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok(WriterHandle {
            sender: Arc::new(Mutex::new(Some(sender))),
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (to, from) = oneshot::channel();
        let job: Job = Box::new(move |tx: Option<&mut Tx<'_>>| {
            let result = match tx {
                Some(tx) => f(tx).and_then(|value| tx.flush().map(|()| value)),
                None => Err(StorageError::WriterGone),
            };
            Box::new(Reply { result, to }) as Box<dyn Pending>
        });
        let sender = self
            .sender
            .lock()
            .map_err(|_| StorageError::WriterGone)?
            .clone();
        let sender = sender.ok_or(StorageError::WriterGone)?;
        sender
            .send(job)
            .await
            .map_err(|_| StorageError::WriterGone)?;
        from.await.map_err(|_| StorageError::WriterGone)?
    }

    /// Closes the queue; the thread finishes the jobs already queued, then exits.
    pub fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the storage writer thread panicked");
        }
    }
}

fn load_clock(conn: &Connection) -> Result<HlcClock> {
    let get = |key: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let node = match get("node_id")? {
        Some(hex) => NodeId(u64::from_str_radix(&hex, 16).map_err(StorageError::corrupt)?),
        None => {
            let mut raw = [0u8; 8];
            crate::secrets::random_bytes(&mut raw)?;
            let node = NodeId(u64::from_le_bytes(raw));
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('node_id', ?1)",
                [format!("{:016x}", node.0)],
            )?;
            node
        }
    };
    Ok(match get("hlc")? {
        Some(text) => {
            let high: Hlc = text.parse().map_err(StorageError::corrupt)?;
            HlcClock::restore(node, high, DEFAULT_MAX_DRIFT_MS)
        }
        None => HlcClock::new(node, DEFAULT_MAX_DRIFT_MS),
    })
}

/// The current time at millisecond precision (what the database stores), so a response
/// built from a job's `now` equals what a later read returns.
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn run(conn: Connection, mut clock: HlcClock, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&conn, &mut clock, group);
    }
    tracing::debug!("storage writer stopped");
}

fn run_group(conn: &Connection, clock: &mut HlcClock, group: Vec<Job>) {
    let mut replies: Vec<Box<dyn Pending>> = Vec::with_capacity(group.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "could not begin a write transaction");
        for job in group {
            job(None).finish(Err(e.to_string()));
        }
        return;
    }
    // A lone job needs no savepoint: the transaction is its own. (Savepoints also make
    // SQLite keep a sub-journal that grows with the job, which bulk jobs would pay for.)
    let alone = group.len() == 1;
    for job in group {
        let savepoint = if alone {
            Ok(())
        } else {
            conn.execute_batch("SAVEPOINT job")
        };
        let mut tx = Tx {
            conn,
            clock,
            now: now_ms(),
            audit: Vec::new(),
        };
        let reply = job(Some(&mut tx));
        if alone && reply.failed() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
            reply.finish(Ok(()));
            return;
        }
        if !alone {
            let undo = reply.failed() || savepoint.is_err();
            let end = if undo {
                "ROLLBACK TO job; RELEASE job"
            } else {
                "RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "savepoint handling failed");
            }
        }
        replies.push(reply);
    }
    let high = clock.high_water().to_string();
    let commit = conn
        .execute("INSERT INTO meta(key, value) VALUES ('hlc', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![high])
        .and_then(|_| conn.execute_batch("COMMIT"))
        .map_err(|e| e.to_string());
    if let Err(e) = &commit {
        tracing::error!(error = %e, "a write transaction failed to commit; rolling back");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply.finish(commit.clone());
    }
}
