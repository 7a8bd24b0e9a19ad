//! Storage: the ONLY module that opens SQLite. Everything above it calls typed functions;
//! no SQL leaves this folder, so a PostgreSQL backend can follow behind the same API.
//!
//! - One writer thread owns the write connection and runs closures sent over a channel
//!   (`Storage::write`), grouped into `BEGIN IMMEDIATE` transactions with one savepoint per
//!   closure (group commit). A closure's change and its audit events commit together: the
//!   closure records events with [`Tx::audit`], and [`Tx::flush`] writes them and the
//!   downstream sync outbox rows (`sync`) inside the same savepoint.
//! - Reads run on a small pool of read-only connections through `spawn_blocking`
//!   (`Storage::read`); no SQLite call ever runs on an async runtime thread.
//! - WAL checkpoints run on a thread and connection of their own (`checkpoint`), which never
//!   begins a transaction.
//! - Every query names `tenant_id`. Ids are UUIDv7 (time-ordered: inserts stay cheap).

mod audit;
mod backup;
mod broker_accounts;
mod checkpoint;
mod counts;
mod customer_import;
mod customer_list;
mod customer_row;
mod customer_search;
mod customers;
pub mod inspect;
mod ledger;
pub mod metrics;
mod migrations;
mod operators;
mod packages;
mod pool;
mod records;
mod routers;
mod search_fold;
mod sessions;
mod stamps;
pub mod sync;
mod tenants;
mod writer;

pub use audit::AuditPage;
pub use backup::{BackupReport, backup};
pub use broker_accounts::{AccountKind, BrokerAccount, Enrolled};
pub use customer_import::PreparedImport;
pub use customer_list::{CustomerFilter, CustomerPage, SEARCH_TOTAL_CAP};
pub use customer_row::{CustomerPatch, NewCustomer};
pub use ledger::{PaymentsPage, Recharge, RechargeOutcome};
pub use operators::{AuthedOperator, OperatorView};
pub use packages::{PackageInput, PackagePatch};
pub use routers::{EnrollToken, RouterInput, RouterPatch};
pub use sessions::{LiveStatus, SessionsPage};
pub use writer::Tx;

use crate::secrets::{Cipher, SecretsError};
use chrono::{DateTime, TimeZone, Utc};
use easyisp_protocol::ledger::{Actor, ActorKind};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use uuid::Uuid;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "central.sqlite3";

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict the client can resolve (409).
    #[error("{message}")]
    Conflict {
        field: Option<&'static str>,
        message: String,
    },
    /// Input that only the database can judge (an unknown package id, ...): 400.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(
        "the database has schema version {found}, newer than this easyisp-central knows ({known}): \
         a newer version migrated it; run that version, or restore a backup taken before the \
         upgrade (docs/upgrade.md)"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the transaction could not commit: {0}")]
    Commit(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("a read task failed: {0}")]
    ReadTask(String),
}

impl StorageError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt(what.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Tuning knobs with production defaults.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Read-only connections in the pool (default 4).
    pub readers: usize,
    /// `synchronous=FULL` (default) or NORMAL: NORMAL survives a process crash but may lose the
    /// last commits on power loss.
    pub synchronous_full: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            readers: 4,
            synchronous_full: true,
        }
    }
}

/// The handle every other module uses. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    writer: writer::WriterHandle,
    readers: Arc<pool::ReaderPool>,
    cipher: Arc<Cipher>,
    path: Arc<PathBuf>,
    down_signal: Arc<sync::DownSignal>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Creates the data directory (mode 0700), its key file and database on first start,
    /// applies pending migrations and starts the writer thread.
    pub fn open(data_dir: &Path, options: StorageOptions) -> Result<Storage> {
        create_data_dir(data_dir)?;
        let cipher = Arc::new(Cipher::load_or_create(data_dir)?);
        let path = data_dir.join(DB_FILE);
        let fresh = !path.exists();
        let mut conn = Connection::open(&path)?;
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            // The database holds hashes and ciphertexts: keep it private like the key file.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StorageError::Io {
                    path: path.display().to_string(),
                    source,
                },
            )?;
        }
        configure(&conn, options.synchronous_full)?;
        migrations::apply(&mut conn)?;
        let checkpointer = checkpoint::Checkpointer::start(&path, options.synchronous_full)?;
        checkpointer.take_over(&mut conn)?;
        let down_signal = Arc::new(sync::DownSignal::default());
        let writer = writer::WriterHandle::start(conn, down_signal.clone(), checkpointer)?;
        let readers = Arc::new(pool::ReaderPool::open(&path, options.readers.max(1))?);
        Ok(Storage {
            writer,
            readers,
            cipher,
            path: Arc::new(path),
            down_signal,
        })
    }

    /// Runs `f` in the writer thread inside a transaction; its audit events commit with it.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.writer.run(writer::JobKind::General, f).await
    }

    /// Like [`Storage::write`] for a job that only adds customers and changes no existing
    /// customer row (see [`writer::JobKind::AddsCustomers`]).
    async fn write_adding_customers<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.writer.run(writer::JobKind::AddsCustomers, f).await
    }

    /// Runs `f` on a pooled read-only connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.run(f).await
    }

    pub fn cipher(&self) -> Arc<Cipher> {
        self.cipher.clone()
    }

    /// Tells the sync engine, right after each commit, which routers got downstream changes.
    pub fn down_signal(&self) -> Arc<sync::DownSignal> {
        self.down_signal.clone()
    }

    /// Stops the writer after the jobs already queued and waits for its thread.
    pub fn shutdown(&self) {
        self.writer.shutdown();
    }
}

fn create_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| StorageError::Io {
        path: dir.display().to_string(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    Ok(())
}

fn configure(conn: &Connection, synchronous_full: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if synchronous_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(128);
    plan_once(conn)?;
    Ok(())
}

/// Lets a cached statement keep its query plan whatever values are bound to it.
///
/// Otherwise SQLite marks a statement whose planning looked at a parameter (the customer
/// `SELECT` with its `LEFT JOIN`s does, and so does a `LIKE ?`) to be prepared again each
/// time a new value is bound: with the statement cache that meant parsing and planning the
/// customer read on every create, update and detail request (about a fifth of the writer's
/// time per API create). Our plans do not depend on the values: no statistics are gathered
/// (`ANALYZE`), and the partial indexes' conditions are written into the queries.
pub(crate) fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(value: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(value)
        .single()
        .ok_or_else(|| StorageError::corrupt(format!("time {value}")))
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| StorageError::corrupt(format!("id {text:?}")))
}

/// The actor of a system job (retention, ...).
pub fn system_actor(name: &str) -> Actor {
    Actor {
        kind: ActorKind::System,
        id: None,
        name: name.to_string(),
    }
}

pub(crate) fn actor_json(actor: &Actor) -> String {
    serde_json::to_string(actor).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod import_tests;
#[cfg(test)]
mod search_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
