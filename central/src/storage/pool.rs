//! The pool of read-only connections. A read borrows one inside `spawn_blocking`, so SQLite
//! never blocks an async runtime thread; a semaphore bounds concurrent reads to the pool size.

use super::{Result, StorageError};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub struct ReaderPool {
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

/// How much of the database file a reader reads through a memory map: SQLite's largest,
/// about 2 GiB (a million customers fit). Pages come straight from the OS page cache instead
/// of a `pread` and a copy each; searches, which read thousands of index and row pages, took
/// 15-35 % less time at a million customers (docs/benchmarks.md). The database file never
/// shrinks while central runs (backups are written to a new file with `VACUUM INTO`), which
/// a mapped file needs. The writer reads through its own page cache as before: mapping it
/// did not speed up imports.
const MMAP_BYTES: i64 = 2_147_418_112;

impl ReaderPool {
    pub fn open(path: &Path, size: usize) -> Result<ReaderPool> {
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "cache_size", -32768)?;
            conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
            conn.set_prepared_statement_cache_capacity(256);
            super::plan_once(&conn)?;
            idle.push(conn);
        }
        Ok(ReaderPool {
            idle: Arc::new(Mutex::new(idle)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::WriterGone)?;
        let idle = self.idle.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle
                .lock()
                .map_err(|_| StorageError::ReadTask("reader pool lock poisoned".into()))?
                .pop()
                .ok_or_else(|| StorageError::ReadTask("no idle reader despite a permit".into()))?;
            let result = f(&conn);
            if let Ok(mut idle) = idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StorageError::ReadTask(e.to_string()))?
    }
}
