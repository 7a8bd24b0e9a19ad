//! The writer thread: owns the only write connection and runs closures sent over a channel.
//!
//! Jobs queued together are group-committed: one `BEGIN IMMEDIATE` ... `COMMIT`, one savepoint
//! per job so a failing job rolls back alone. Replies go out only after the commit, so a
//! caller never sees a success that was not durable. This is the single place where a change
//! commits together with its audit events and its downstream sync outbox rows ([`Tx::flush`]);
//! after a commit that wrote outbox rows the writer wakes the sync engine ([`DownSignal`]).
//!
//! New customers of [`JobKind::AddsCustomers`] jobs enter the search index once per group,
//! just before the commit (or before the next job of another kind), not per job: FTS5 writes
//! its pending terms out as a new index segment at every savepoint, so indexing per job wrote
//! one tiny segment per API create, which FTS5 then kept merging (a fifth of the writer's
//! time per create).

use super::audit::{self, PreparedEvent};
use super::checkpoint::Checkpointer;
use super::customer_row::index_for_search;
use super::sync::outbox::{self, DownItem, DownSignal};
use super::{Result, StorageError};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::AuditEvent;
use easyisp_protocol::hlc::{ClockError, DEFAULT_MAX_DRIFT_MS, Hlc, HlcClock, NodeId};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Jobs in one group commit at most.
const MAX_GROUP: usize = 256;
/// Queued jobs before callers wait (back-pressure).
const QUEUE: usize = 4096;

/// What a job may do, as far as the writer needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Anything.
    General,
    /// Adds new customers and changes no customer row that existed before the job: their
    /// search entries can wait for the end of the group (see the module docs). A job that
    /// updated an earlier row would make its update trigger remove a search entry that was
    /// not written yet.
    AddsCustomers,
}

/// What a write closure sees: the connection inside the open transaction, the clock for field
/// stamps, the time of the job, and the audit events and outbox entries to commit with it.
pub struct Tx<'c> {
    conn: &'c Connection,
    kind: JobKind,
    /// Rowids of customers this job added whose search entries wait for the group's end.
    search_later: Vec<i64>,
    clock: &'c mut HlcClock,
    now: DateTime<Utc>,
    audit: Vec<AuditEvent>,
    /// Events of bulk imports, serialised before the job ran.
    prepared_audit: Vec<PreparedEvent<'static>>,
    down: Vec<DownItem>,
    /// The router whose agent sent the change being applied: it gets no echo of it.
    no_echo: Option<uuid::Uuid>,
    /// Routers that got `sync_down` rows from this job (filled by `flush`).
    touched: Vec<uuid::Uuid>,
}

/// How far a job's pending audit events and outbox entries reached, to undo a part of a job
/// (one rejected change of an upstream batch) together with its savepoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxMark {
    audit: usize,
    prepared_audit: usize,
    down: usize,
    search_later: usize,
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

    /// Records an audit event built (and serialised) before the job; written like
    /// [`Tx::audit`]'s.
    pub(crate) fn audit_prepared(&mut self, event: PreparedEvent<'static>) {
        self.prepared_audit.push(event);
    }

    /// The event recorded last, to amend before it is written (anonymisation redacts it).
    pub fn last_audit_mut(&mut self) -> Option<&mut AuditEvent> {
        self.audit.last_mut()
    }

    /// A fresh stamp for a field whose current stamp is `previous`: greater than both the
    /// clock and `previous`, so a write at central always supersedes what a field holds, even
    /// a stamp from an agent whose clock runs ahead (which the clock itself refuses to take).
    pub fn stamp_after(&mut self, previous: Hlc) -> Hlc {
        let stamp = self.stamp();
        if stamp > previous {
            return stamp;
        }
        match previous.counter.checked_add(1) {
            Some(counter) => Hlc::new(previous.wall_ms, counter, stamp.node),
            None => Hlc::new(previous.wall_ms + 1, 0, stamp.node),
        }
    }

    /// Takes in a stamp written by another node (an agent), so later local stamps order
    /// after it; refuses stamps too far ahead of this job's time.
    pub fn observe(&mut self, stamp: Hlc) -> std::result::Result<(), ClockError> {
        let wall = u64::try_from(self.now.timestamp_millis()).unwrap_or(0);
        self.clock.observe(stamp, wall)
    }

    /// Queues a downstream change; `flush` turns it into `sync_down` rows of the routers it
    /// affects, in this transaction.
    pub(crate) fn sync_down(&mut self, item: DownItem) {
        self.down.push(item);
    }

    /// The agent of `router` sent the change this job applies: no `sync_down` row for it.
    pub(crate) fn suppress_echo(&mut self, router: uuid::Uuid) {
        self.no_echo = Some(router);
    }

    pub(crate) fn mark(&self) -> TxMark {
        TxMark {
            audit: self.audit.len(),
            prepared_audit: self.prepared_audit.len(),
            down: self.down.len(),
            search_later: self.search_later.len(),
        }
    }

    /// Forgets the audit events and outbox entries queued after `mark`.
    pub(crate) fn undo_to(&mut self, mark: TxMark) {
        self.audit.truncate(mark.audit);
        self.prepared_audit.truncate(mark.prepared_audit);
        self.down.truncate(mark.down);
        self.search_later.truncate(mark.search_later);
    }

    /// Adds a customer this job inserted to the search index: at once, or for a
    /// [`JobKind::AddsCustomers`] job at the end of its group.
    pub(crate) fn index_new_customer(&mut self, rowid: i64) -> Result<()> {
        match self.kind {
            JobKind::AddsCustomers => self.search_later.push(rowid),
            JobKind::General => index_for_search(self.conn, rowid, rowid)?,
        }
        Ok(())
    }

    /// Writes the job's audit events and outbox rows. Called once per job by
    /// `Storage::write` after the closure succeeded, still inside the job's savepoint.
    fn flush(&mut self) -> Result<()> {
        for event in self.audit.drain(..) {
            audit::insert(self.conn, &event)?;
        }
        for event in self.prepared_audit.drain(..) {
            audit::insert_row(self.conn, &event)?;
        }
        if !self.down.is_empty() {
            let items = std::mem::take(&mut self.down);
            self.touched = outbox::write(self.conn, &items, self.no_echo, self.now)?;
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

/// A queued closure. It receives the reason instead of a transaction when it cannot run (the
/// transaction could not begin, or its group already failed), and then only answers its
/// caller with that error.
type Run = Box<
    dyn for<'a, 'c> FnOnce(std::result::Result<&'a mut Tx<'c>, String>) -> Box<dyn Pending> + Send,
>;

struct Job {
    kind: JobKind,
    run: Run,
}

impl Job {
    /// A job running `f`, and where its result arrives after the commit.
    fn new<T, F>(kind: JobKind, f: F) -> (Job, oneshot::Receiver<Result<T>>)
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (to, from) = oneshot::channel();
        let run: Run = Box::new(move |tx: std::result::Result<&mut Tx<'_>, String>| {
            let result = match tx {
                Ok(tx) => f(tx).and_then(|value| tx.flush().map(|()| value)),
                Err(reason) => Err(StorageError::Commit(reason)),
            };
            Box::new(Reply { result, to }) as Box<dyn Pending>
        });
        (Job { kind, run }, from)
    }
}

#[derive(Clone)]
pub struct WriterHandle {
    sender: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Checkpoints the log this writer commits to; stopped after the writer.
    checkpointer: Arc<Checkpointer>,
}

impl WriterHandle {
    pub fn start(
        conn: Connection,
        signal: Arc<DownSignal>,
        checkpointer: Arc<Checkpointer>,
    ) -> Result<WriterHandle> {
        let clock = load_clock(&conn)?;
        let (sender, receiver) = mpsc::channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn({
                let checkpointer = checkpointer.clone();
                move || run(conn, clock, receiver, &signal, &checkpointer)
            })
            .map_err(|e| StorageError::Io {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok(WriterHandle {
            sender: Arc::new(Mutex::new(Some(sender))),
            thread: Arc::new(Mutex::new(Some(thread))),
            checkpointer,
        })
    }

    pub async fn run<T, F>(&self, kind: JobKind, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (job, from) = Job::new(kind, f);
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
        self.checkpointer.stop();
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
pub(super) fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn run(
    conn: Connection,
    mut clock: HlcClock,
    mut receiver: mpsc::Receiver<Job>,
    signal: &DownSignal,
    checkpointer: &Checkpointer,
) {
    while let Some(first) = receiver.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&conn, &mut clock, group, signal);
        checkpointer.bound_log();
    }
    tracing::debug!("storage writer stopped");
}

/// Runs and commits one group; after the commit (before answering the callers) it tells the
/// sync engine which routers got `sync_down` rows.
fn run_group(conn: &Connection, clock: &mut HlcClock, group: Vec<Job>, signal: &DownSignal) {
    let mut touched = Vec::new();
    let mut replies: Vec<Box<dyn Pending>> = Vec::with_capacity(group.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "could not begin a write transaction");
        for job in group {
            (job.run)(Err(e.to_string())).finish(Err(e.to_string()));
        }
        return;
    }
    // A lone job needs no savepoint: the transaction is its own. (Savepoints also make
    // SQLite keep a sub-journal that grows with the job, which bulk jobs would pay for.)
    let alone = group.len() == 1;
    // New customers of finished jobs whose search entries wait (see the module docs).
    let mut search_later: Vec<i64> = Vec::new();
    // Set when the group cannot commit any more: its remaining jobs do not run.
    let mut broken: Option<String> = None;
    for job in group {
        if broken.is_none() && job.kind == JobKind::General && !search_later.is_empty() {
            broken = index_later(conn, &mut search_later).err();
        }
        if let Some(reason) = &broken {
            replies.push((job.run)(Err(reason.clone())));
            continue;
        }
        let savepoint = if alone {
            Ok(())
        } else {
            conn.execute_batch("SAVEPOINT job")
        };
        let mut tx = Tx {
            conn,
            kind: job.kind,
            search_later: Vec::new(),
            clock,
            now: now_ms(),
            audit: Vec::new(),
            prepared_audit: Vec::new(),
            down: Vec::new(),
            no_echo: None,
            touched: Vec::new(),
        };
        let reply = (job.run)(Ok(&mut tx));
        if alone && reply.failed() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
            reply.finish(Ok(()));
            return;
        }
        let undone = reply.failed() || (!alone && savepoint.is_err());
        if !undone {
            touched.append(&mut tx.touched);
            search_later.append(&mut tx.search_later);
        }
        if !alone {
            let end = if undone {
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
    if broken.is_none() && !search_later.is_empty() {
        broken = index_later(conn, &mut search_later).err();
    }
    let high = clock.high_water().to_string();
    let commit = match broken {
        Some(reason) => Err(reason),
        None => conn
            .execute("INSERT INTO meta(key, value) VALUES ('hlc', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![high])
            .and_then(|_| conn.execute_batch("COMMIT"))
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = &commit {
        tracing::error!(error = %e, "a write transaction failed to commit; rolling back");
        let _ = conn.execute_batch("ROLLBACK");
    } else {
        signal.mark(touched);
    }
    for reply in replies {
        reply.finish(commit.clone());
    }
}

/// Adds the waiting new customers to the search index, one statement per run of consecutive
/// rowids (a group of creates is one run). A failure fails the whole group: its customers
/// must not commit without their search entries, which later updates and deletes remove.
fn index_later(conn: &Connection, rowids: &mut Vec<i64>) -> std::result::Result<(), String> {
    rowids.sort_unstable();
    let mut rest = rowids.as_slice();
    while let Some(&first) = rest.first() {
        let run = rest
            .iter()
            .zip(first..)
            .take_while(|(rowid, expected)| **rowid == *expected)
            .count();
        let last = first + run as i64 - 1;
        if let Err(e) = index_for_search(conn, first, last) {
            tracing::error!(error = %e, "could not add new customers to the search index");
            return Err(e.to_string());
        }
        rest = &rest[run..];
    }
    rowids.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::customer_row::CustomerRow;
    use super::super::customers::insert_new;
    use super::super::test_support::new_customer;
    use super::*;
    use crate::secrets::Cipher;
    use uuid::Uuid;

    /// A create as the API's: adds one customer, its search entry waits for the group.
    fn create(tenant: Uuid, username: &str, name: &str) -> (Job, oneshot::Receiver<Result<i64>>) {
        let input = new_customer(username, name);
        Job::new(JobKind::AddsCustomers, move |tx| {
            let cipher = Cipher::from_key(&[7u8; 32]);
            let actor = super::super::system_actor("test");
            Ok(insert_new(tx, &cipher, tenant, &actor, input)?.rowid)
        })
    }

    /// Renames a customer (a general job; its update trigger rewrites the search entry).
    fn rename(tenant: Uuid, username: &str, name: &str) -> (Job, oneshot::Receiver<Result<()>>) {
        let (username, name) = (username.to_string(), name.to_string());
        Job::new(JobKind::General, move |tx| {
            let id: String = tx.conn().query_row(
                "SELECT id FROM customers WHERE tenant_id = ?1 AND username = ?2",
                params![tenant.to_string(), username],
                |r| r.get(0),
            )?;
            let id = super::super::parse_uuid(&id)?;
            let mut row = CustomerRow::load(tx.conn(), tenant, id, false)?;
            row.name = name;
            row.save(tx.conn())
        })
    }

    fn searched(conn: &Connection, term: &str) -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM customers_fts WHERE customers_fts MATCH ?1",
            [format!("\"{term}\"")],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn new_customers_of_a_group_are_indexed_before_a_later_job_and_once_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db")).unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let tenant = Uuid::now_v7();
        conn.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (?1, 't', 0)",
            [tenant.to_string()],
        )
        .unwrap();
        let mut clock = HlcClock::new(NodeId(1), DEFAULT_MAX_DRIFT_MS);
        let signal = DownSignal::default();
        let (old, old_done) = create(tenant, "old", "Old Otieno");
        run_group(&conn, &mut clock, vec![old], &signal);
        assert!(old_done.blocking_recv().unwrap().is_ok());

        // One group: creates, a rename of one created earlier in the same group and of an
        // older one, a failing create (taken username), and creates after them.
        let jobs = [
            create(tenant, "a", "Amina Achieng"),
            create(tenant, "b", "Baraka Barasa"),
        ];
        let renames = [
            rename(tenant, "a", "Amina Akinyi"),
            rename(tenant, "old", "Old Ouma"),
        ];
        let failing = create(tenant, "b", "Bahati Bett");
        let after = create(tenant, "c", "Chebet Cherono");
        let mut group = Vec::new();
        let mut created = Vec::new();
        for (job, done) in jobs {
            group.push(job);
            created.push(done);
        }
        let mut renamed = Vec::new();
        for (job, done) in renames {
            group.push(job);
            renamed.push(done);
        }
        group.push(failing.0);
        group.push(after.0);
        created.push(after.1);
        run_group(&conn, &mut clock, group, &signal);
        for done in created {
            assert!(done.blocking_recv().unwrap().is_ok());
        }
        for done in renamed {
            assert!(done.blocking_recv().unwrap().is_ok());
        }
        assert!(matches!(
            failing.1.blocking_recv().unwrap(),
            Err(StorageError::Conflict { .. })
        ));

        for (term, n) in [
            ("Akinyi", 1),
            ("Achieng", 0),
            ("Baraka", 1),
            ("Bahati", 0),
            ("Chebet", 1),
            ("Ouma", 1),
            ("Otieno", 0),
        ] {
            assert_eq!(searched(&conn, term), n, "{term}");
        }
        conn.execute(
            "INSERT INTO customers_fts (customers_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .unwrap();
    }
}
