//! WAL checkpoints off the writer thread: copying committed pages from the write-ahead log
//! into the database file is done by a thread and connection of their own, so the writer
//! thread mostly only commits.
//!
//! SQLite's default (`wal_autocheckpoint`, 1000 pages) has the committing connection copy the
//! log inside its `COMMIT`: a fifth of the writer's time in a bulk import, and the latency of
//! every group commit that crossed the threshold. Here the writer's WAL hook only asks the
//! checkpointer thread, which runs a `PASSIVE` checkpoint (it never blocks the writer or
//! readers, and copies what no reader still needs). The checkpointer's connection never
//! begins a transaction: the writer thread stays the only one that changes data.
//!
//! SQLite starts the log from its beginning again only when a write transaction begins after
//! a checkpoint copied all of it. A writer that never pauses (a bulk import) always begins
//! while the checkpointer is still copying, so the log would grow without end; past
//! [`BOUND_PAGES`] the writer therefore waits, between two transactions, for one whole pass
//! of the checkpointer ([`Checkpointer::bound_log`]).
//!
//! Checkpointing never decides durability: a commit is durable once its WAL frames are
//! synced (`synchronous=FULL`), and a crash during a checkpoint leaves the log to be copied
//! again at the next start.

use super::{Result, StorageError};
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// WAL pages after a commit that ask for a checkpoint (16 MiB). Larger than SQLite's default
/// (1000): pages that every commit rewrites (index ends, counts) are copied once per pass.
const CHECKPOINT_PAGES: c_int = 4096;

/// WAL pages past which the writer waits for a whole checkpoint pass before its next
/// transaction, so that one starts the log anew (64 MiB).
const BOUND_PAGES: c_int = 16_384;

#[derive(Default)]
struct State {
    /// A checkpoint was asked for and has not started yet.
    wanted: bool,
    /// A checkpoint is running.
    running: bool,
    /// Checkpoint passes finished so far.
    passes: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the thread (a request, the stop) and the writer (a finished pass).
    changed: Condvar,
    /// WAL pages after the writer's last commit.
    log_pages: AtomicI32,
}

/// The checkpointer thread. Stops (after the checkpoint asked for) when dropped.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to the database at `path` and starts its thread.
    pub fn start(path: &Path, synchronous_full: bool) -> Result<Arc<Checkpointer>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A checkpoint syncs the log before and the database after copying, as the writer's
        // own checkpoints did.
        conn.pragma_update(
            None,
            "synchronous",
            if synchronous_full { "FULL" } else { "NORMAL" },
        )?;
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &shared)
            })
            .map_err(|source| StorageError::Io {
                path: "checkpoint thread".into(),
                source,
            })?;
        Ok(Arc::new(Checkpointer {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Asks for a checkpoint and returns the number of passes after which one that started
    /// after this request has finished.
    fn request(&self) -> Option<u64> {
        let mut state = self.shared.state.lock().ok()?;
        state.wanted = true;
        self.shared.changed.notify_all();
        // A running pass may have started before the frames this request is about.
        Some(state.passes + if state.running { 2 } else { 1 })
    }

    /// Called by the writer between transactions: past [`BOUND_PAGES`] of log, waits for a
    /// whole checkpoint pass, so the next transaction starts the log anew (unless a reader
    /// still needs old frames; then the log waits for it, as with SQLite's own checkpoints).
    pub fn bound_log(&self) {
        if self.shared.log_pages.load(Ordering::Relaxed) < BOUND_PAGES {
            return;
        }
        let Some(target) = self.request() else {
            return;
        };
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        // A pass copies at most this bound and one transaction: far less than the limit,
        // which only keeps a stuck checkpointer from stopping the writer.
        let deadline = Instant::now() + Duration::from_secs(30);
        while state.passes < target && !state.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("the WAL checkpointer is not finishing; the log keeps growing");
                return;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(_) => return,
            };
        }
        self.shared.log_pages.store(0, Ordering::Relaxed);
    }

    /// Stops the thread after the checkpoint asked for, and waits for it.
    pub fn stop(&self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.stop = true;
            self.shared.changed.notify_all();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the storage checkpoint thread panicked");
        }
    }

    /// Replaces SQLite's automatic checkpoints on the writer's connection with requests to
    /// this thread.
    pub fn take_over(self: &Arc<Self>, writer: &mut Connection) -> Result<()> {
        let checkpointer = self.clone();
        writer.wal_hook(Some(move |_: &mut Wal, pages: c_int| {
            checkpointer
                .shared
                .log_pages
                .store(pages, Ordering::Relaxed);
            if pages >= CHECKPOINT_PAGES {
                checkpointer.request();
            }
            Ok(())
        }))?;
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            while !state.wanted && !state.stop {
                state = match shared.changed.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            // A checkpoint asked for before the stop still runs.
            if !state.wanted {
                return;
            }
            state.wanted = false;
            state.running = true;
        }
        if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            tracing::warn!(error = %e, "a WAL checkpoint failed; the next commit retries");
        }
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        state.running = false;
        state.passes += 1;
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_pages(writer: &Connection, pages: i64) {
        writer
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO t SELECT zeroblob(400) FROM n",
                [pages],
            )
            .unwrap();
    }

    /// A WAL database of 512-byte pages (one row of `t` fills one), with the checkpointer.
    fn open(path: &Path) -> (Connection, Arc<Checkpointer>) {
        let mut writer = Connection::open(path).unwrap();
        writer.pragma_update(None, "page_size", 512).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer = Checkpointer::start(path, true).unwrap();
        checkpointer.take_over(&mut writer).unwrap();
        (writer, checkpointer)
    }

    #[test]
    fn the_checkpointer_copies_the_log_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (writer, checkpointer) = open(&path);
        let size = || std::fs::metadata(&path).unwrap().len();

        // Below the threshold nothing is copied: the writer no longer checkpoints itself.
        commit_pages(&writer, 100);
        assert!(size() < 100 * 512, "{} bytes", size());

        // Past it the commit asks the checkpointer, which copies the log before it stops.
        commit_pages(&writer, i64::from(CHECKPOINT_PAGES));
        checkpointer.stop();
        assert!(
            size() >= (100 + u64::try_from(CHECKPOINT_PAGES).unwrap()) * 512,
            "{} bytes",
            size()
        );
    }

    #[test]
    fn past_the_bound_the_next_transaction_starts_the_log_anew() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, checkpointer) = open(&dir.path().join("db"));
        commit_pages(&writer, i64::from(BOUND_PAGES));
        let log = || checkpointer.shared.log_pages.load(Ordering::Relaxed);
        assert!(log() > BOUND_PAGES, "{}", log());
        checkpointer.bound_log();
        commit_pages(&writer, 10);
        assert!(log() < 100, "{}", log());
    }
}
