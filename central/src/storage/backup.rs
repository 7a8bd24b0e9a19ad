//! Online backup: a consistent copy of the database while `serve` keeps running.
//!
//! `VACUUM INTO` reads the database inside one read transaction (WAL lets writers go on) and
//! writes a compact copy; the copy is then checked with `PRAGMA integrity_check`. The key file
//! that encrypts customer passwords is not inside the database: a backup is only complete
//! together with it (and with `tls/` for the broker's CA), which docs/backup.md says.

use super::{DB_FILE, Result, StorageError};
use rusqlite::{Connection, OpenFlags};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub bytes: u64,
    pub schema_version: i64,
}

/// Copies `data_dir`'s database into `target` (which must not exist), mode 0600, and checks
/// the copy's integrity.
pub fn backup(data_dir: &Path, target: &Path) -> Result<BackupReport> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StorageError::Io { path, source }
    };
    let source = data_dir.join(DB_FILE);
    if !source.exists() {
        return Err(StorageError::Io {
            path: source.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no database here: is --data-dir right?",
            ),
        });
    }
    if target.exists() {
        return Err(StorageError::Io {
            path: target.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the backup file exists already; choose a new name",
            ),
        });
    }
    let target_text = target
        .to_str()
        .ok_or_else(|| StorageError::Invalid {
            field: "file",
            message: "the backup path must be valid UTF-8".into(),
        })?
        .to_string();
    let conn = Connection::open_with_flags(
        &source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [&target_text])?;
    drop(conn);
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o600)).map_err(io(target))?;

    let copy = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::corrupt(format!(
            "the backup failed its integrity check: {check}"
        )));
    }
    let schema_version: i64 = copy.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let bytes = std::fs::metadata(target).map_err(io(target))?.len();
    Ok(BackupReport {
        bytes,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Storage, StorageOptions};

    #[tokio::test]
    async fn a_backup_is_a_consistent_private_copy_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let storage = Storage::open(&data, StorageOptions::default()).unwrap();
        let tenant = storage
            .create_tenant(
                "acme".into(),
                None,
                "admin".into(),
                "not-a-real-hash".into(),
            )
            .await
            .unwrap();
        let target = dir.path().join("central-backup.sqlite3");
        let report = backup(&data, &target).unwrap();
        assert!(report.bytes > 0);
        assert!(report.schema_version >= 1);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let copy = Connection::open(&target).unwrap();
        let n: i64 = copy
            .query_row(
                "SELECT COUNT(*) FROM tenants WHERE id = ?1",
                [tenant.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        let again = backup(&data, &target).unwrap_err().to_string();
        assert!(again.contains("exists already"), "{again}");
        let missing = backup(&dir.path().join("nowhere"), &dir.path().join("x")).unwrap_err();
        assert!(missing.to_string().contains("--data-dir"), "{missing}");
        storage.shutdown();
    }
}
