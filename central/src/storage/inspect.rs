//! Read-only inspection of the database for `easyisp-central doctor`: schema version and
//! SQLite's `quick_check`, without the writer, the key file or any migration. Opening never
//! creates or changes a file (see [`inspect_database`]).

use super::{DB_FILE, Result, StorageError, migrations};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What doctor learns about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseFacts {
    /// `PRAGMA user_version`: how many migrations the database has had.
    pub schema_version: i64,
    /// How many migrations this build knows.
    pub known_version: i64,
    /// `PRAGMA quick_check`'s lines: `["ok"]` for a sound database.
    pub quick_check: Vec<String>,
}

/// Opens `DATA_DIR/central.sqlite3` read-only and checks it. `NotFound` when there is no
/// database file.
///
/// While central runs, the WAL's `-shm` file exists and a plain read-only connection shares
/// it. Without one (central stopped cleanly), a read-only connection would create `-wal` and
/// `-shm` files, owned by whoever runs doctor (root locking central out of its own database);
/// the database is opened `immutable` then: nothing writes it, so no locking is needed.
pub fn inspect_database(data_dir: &Path) -> Result<DatabaseFacts> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StorageError::NotFound);
    }
    let shm = data_dir.join(format!("{DB_FILE}-shm"));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = if shm.exists() {
        Connection::open_with_flags(&path, flags)?
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(&path));
        Connection::open_with_flags(uri, flags)?
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let quick_check = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(DatabaseFacts {
        schema_version,
        known_version: migrations::known_version(),
        quick_check,
    })
}

/// `path` with the characters a URI gives meaning to (`%`, `?`, `#`) percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Storage, StorageOptions};

    #[test]
    fn a_fresh_database_is_current_and_sound_and_inspecting_it_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        storage.shutdown();
        drop(storage);
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let facts = inspect_database(dir.path()).unwrap();
        assert_eq!(facts.schema_version, facts.known_version);
        assert_eq!(facts.quick_check, vec!["ok".to_string()]);
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_missing_database_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            inspect_database(dir.path()),
            Err(StorageError::NotFound)
        ));
    }
}
