//! The agent's local replica: this router's customers, packages, the ledger entries it needs,
//! sessions, the sync outbox and the staging area of snapshots, in one SQLite file.
//!
//! Only this module opens SQLite. One writer thread owns the write connection and runs
//! closures sent over a channel, each in a `BEGIN IMMEDIATE` transaction with
//! `synchronous=FULL`, so a crash at any instant loses nothing that was committed (and
//! acknowledged upstream). Reads run on blocking threads with their own read-only connections.
//!
//! Page caches are small on purpose (`WRITER_CACHE_KIB`, `READER_CACHE_KIB`): the agent's
//! reads are whole-table scans and point lookups that the OS page cache serves as well, and
//! SQLite's default of 2 MiB per connection would be a large share of the agent's memory.

pub mod migrations;
pub mod staging;
pub mod store;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use thiserror::Error;
use tokio::sync::oneshot;

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("replica database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("replica record {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("replica database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the replica has schema version {found}, newer than this easyisp-agent knows ({known}): \
         a newer version migrated it; run that version, or move the replica aside and let \
         central send a fresh snapshot (docs/upgrade.md)"
    )]
    NewerSchema { found: usize, known: usize },
    #[error("the replica's writer thread has stopped")]
    WriterGone,
}

pub type Result<T> = std::result::Result<T, ReplicaError>;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Page cache of the long-lived write connection (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 1024;
/// Page cache of each short-lived read connection.
const READER_CACHE_KIB: i64 = 256;

/// A handle to the replica; cheap to clone.
#[derive(Clone)]
pub struct Replica {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("path", &self.path).finish()
    }
}

impl Replica {
    /// Opens (creating if needed) the replica at `path`, applies migrations, and starts the
    /// writer thread. A new database gets a fresh random epoch.
    pub fn open(path: &Path) -> Result<Replica> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReplicaError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A negative size is in KiB.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        restrict_permissions(path);
        let (jobs, inbox) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("replica-writer".into())
            .spawn(move || {
                for job in inbox {
                    job(&mut conn);
                }
            })
            .map_err(|e| ReplicaError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Replica {
            jobs,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in one immediate write transaction on the writer thread; commits when it
    /// returns `Ok`, rolls back otherwise.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let outcome = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            let _ = reply.send(outcome);
        });
        self.jobs.send(job).map_err(|_| ReplicaError::WriterGone)?;
        answer.await.map_err(|_| ReplicaError::WriterGone)?
    }

    /// Runs `work` on a blocking thread with a read-only connection.
    pub async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            work(&conn)
        })
        .await
        .map_err(|_| ReplicaError::WriterGone)?
    }

    /// `PRAGMA integrity_check` (for `doctor` and start-up checks).
    pub async fn integrity_check(&self) -> Result<String> {
        self.read(|conn| Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
            .await
    }
}

/// What `doctor` learns about a replica file without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `PRAGMA quick_check`'s first line: `ok` for a sound file.
    pub quick_check: String,
    /// Migrations applied (`user_version`); compare with [`migrations::known`].
    pub schema_version: usize,
}

/// Opens `path` read-only (never creating or migrating it) and checks its structure.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let schema_version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
    let quick_check = conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))?;
    Ok(Inspection {
        quick_check,
        schema_version: usize::try_from(schema_version).unwrap_or(0),
    })
}

/// The replica holds customers' router passwords: readable by the agent's user only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
}
