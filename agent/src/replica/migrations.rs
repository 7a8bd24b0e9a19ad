//! Numbered schema migrations, embedded and applied at start. An applied migration is never
//! edited; changes come as new entries. The applied count is SQLite's `user_version`.

use super::Result;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: replicated records as JSON (with their per-field stamps) plus the columns queries
    // need; ledger and sessions; the sync outbox and key/value state.
    r#"
    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL DEFAULT '',
        connection_type TEXT NOT NULL DEFAULT 'PPPOE',
        package_id TEXT,
        expires_at INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0,
        record TEXT NOT NULL
    );
    CREATE INDEX customers_username ON customers(username);
    CREATE INDEX customers_expires ON customers(expires_at) WHERE deleted = 0;
    CREATE TABLE packages (
        id TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
    CREATE TABLE ledger (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        idempotency_key TEXT UNIQUE,
        entry TEXT NOT NULL
    );
    CREATE INDEX ledger_customer ON ledger(customer_id);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        username TEXT NOT NULL,
        active INTEGER NOT NULL,
        router_session TEXT NOT NULL,
        raw_in INTEGER NOT NULL,
        raw_out INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX sessions_active ON sessions(active, kind, username);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: sync. Which customer an outbox change concerns (a snapshot keeps a customer that
    // still has unacknowledged local changes; a losing local write is a conflict only while
    // central has not seen it), filled in for the rows already queued; and the staging area
    // where snapshot chunks wait until all of them have arrived.
    r#"
    ALTER TABLE outbox ADD COLUMN customer_id TEXT;
    UPDATE outbox SET customer_id = COALESCE(
        json_extract(body, '$.customer.id'),
        json_extract(body, '$.ledger.customerId'),
        json_extract(body, '$.session.customerId'),
        CASE WHEN json_extract(body, '$.audit.entity') = 'customer'
             THEN json_extract(body, '$.audit.entityId') END
    ) WHERE json_valid(body);
    CREATE INDEX outbox_customer ON outbox(customer_id) WHERE customer_id IS NOT NULL;
    CREATE TABLE snapshot_chunks (
        snapshot_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        count INTEGER NOT NULL,
        high_water INTEGER NOT NULL,
        items TEXT NOT NULL,
        PRIMARY KEY (snapshot_id, idx)
    );
    "#,
];

pub fn apply(conn: &mut Connection) -> Result<()> {
    let applied: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if applied > known() {
        return Err(super::ReplicaError::NewerSchema {
            found: applied,
            known: known(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = index + 1, "applied replica migration");
    }
    Ok(())
}

/// How many migrations this build knows (for `doctor`).
pub fn known() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_from_a_newer_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", (known() + 1) as i64)
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(
            matches!(err, super::super::ReplicaError::NewerSchema { .. }),
            "{err}"
        );
    }

    #[test]
    fn changes_queued_before_the_sync_migration_name_their_customer() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let customer = "0190a000-0000-7000-8000-000000000001";
        let body = format!(r#"{{"customer":{{"id":"{customer}","tenantId":"{customer}"}}}}"#);
        conn.execute(
            "INSERT INTO outbox (id, body, created_at) VALUES ('a', ?1, 0), ('b', '\"noop\"', 0)",
            [&body],
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let ids: Vec<Option<String>> = conn
            .prepare("SELECT customer_id FROM outbox ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(ids, vec![Some(customer.to_string()), None]);
        assert_eq!(
            conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                .unwrap() as usize,
            known()
        );
    }
}
