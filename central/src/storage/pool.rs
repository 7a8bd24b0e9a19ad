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
