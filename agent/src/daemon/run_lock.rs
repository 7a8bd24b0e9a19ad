//! One daemon per data directory: `run` holds an exclusive lock on `DATA_DIR/agent.lock` for
//! as long as it runs (the kernel releases it when the process ends, also on kill -9), so a
//! second `run` on the same replica fails at once instead of fighting the first over the
//! router, and `status` can tell whether the state it shows is live.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file inside a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.lock")
}

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the lock, or says who holds it.
pub fn acquire(data_dir: &Path) -> anyhow::Result<RunLock> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let path = path(data_dir);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "another easyisp-agent is already running on {} (it holds {}); stop it first \
             (systemctl stop easyisp-agent) or give this one its own data_dir",
            data_dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}

/// Whether a daemon holds the lock of `data_dir` right now. `None` when that cannot be told
/// (the file is unreadable to this user).
pub fn held(data_dir: &Path) -> Option<bool> {
    let file = match File::open(path(data_dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    match file.try_lock_shared() {
        Ok(()) => Some(false),
        Err(TryLockError::WouldBlock) => Some(true),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_and_the_lock_goes_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(held(dir.path()), Some(false), "no lock file yet");
        let first = acquire(dir.path()).expect("first daemon");
        assert_eq!(held(dir.path()), Some(true));
        let second = acquire(dir.path()).expect_err("second daemon refused");
        assert!(second.to_string().contains("already running"), "{second}");
        drop(first);
        assert_eq!(held(dir.path()), Some(false));
        let _again = acquire(dir.path()).expect("free again");
    }
}
