//! Numbered schema migrations, embedded in the binary and applied at start. An applied
//! migration is never edited: add a new one. `PRAGMA user_version` records how many ran.
//!
//! Times are INTEGER unix milliseconds; ids are TEXT UUIDs (UUIDv7 for our own rows); money is
//! INTEGER minor units. Customers keep SQLite's integer rowid as their list order and keyset
//! cursor (newest first) and as the FTS5 content rowid.

use super::{Result, StorageError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the customer module.
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    calling_code TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX tenants_name ON tenants(name COLLATE NOCASE);

CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX operators_username ON operators(tenant_id, username COLLATE NOCASE)
    WHERE deleted_at IS NULL;

CREATE TABLE auth_tokens (
    token_hash BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX auth_tokens_operator ON auth_tokens(tenant_id, operator_id);

CREATE TABLE packages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    price INTEGER NOT NULL,
    download_kbps INTEGER NOT NULL,
    upload_kbps INTEGER NOT NULL,
    validity_days INTEGER NOT NULL,
    data_limit INTEGER,
    session_time_limit INTEGER,
    burst TEXT,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    stamps TEXT NOT NULL
);
CREATE INDEX packages_tenant ON packages(tenant_id, created_at);

CREATE TABLE routers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    ip_address TEXT NOT NULL,
    location TEXT,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen INTEGER,
    agent_secret_hash BLOB,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX routers_tenant ON routers(tenant_id, created_at);

CREATE TABLE enroll_tokens (
    token_hash BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) WITHOUT ROWID;
CREATE INDEX enroll_tokens_router ON enroll_tokens(tenant_id, router_id);

CREATE TABLE customers (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    username TEXT NOT NULL,
    password_enc BLOB,
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    connection_type TEXT NOT NULL,
    package_id TEXT,
    router_id TEXT,
    expires_at INTEGER,
    location TEXT,
    latitude_e7 INTEGER,
    longitude_e7 INTEGER,
    apartment_number TEXT,
    house_number TEXT,
    -- 0 = neither flag (active or expired, by expires_at), 1 = suspended, 2 = disabled.
    -- A pure function of the stored flags, kept for indexes and counts; status itself is
    -- derived at request time.
    state INTEGER NOT NULL,
    suspended INTEGER NOT NULL,
    disabled INTEGER NOT NULL,
    auto_renew INTEGER NOT NULL,
    static_ip TEXT,
    mac_bindings TEXT NOT NULL,
    tags TEXT NOT NULL,
    last_ip TEXT,
    last_mac TEXT,
    balance INTEGER NOT NULL DEFAULT 0,
    total_spent INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    anonymized_at INTEGER,
    stamps TEXT NOT NULL
);
CREATE UNIQUE INDEX customers_username ON customers(tenant_id, username);
CREATE INDEX customers_live ON customers(tenant_id) WHERE deleted_at IS NULL;
CREATE INDEX customers_state ON customers(tenant_id, state) WHERE deleted_at IS NULL;
CREATE INDEX customers_state_expiry ON customers(tenant_id, state, expires_at)
    WHERE deleted_at IS NULL;
CREATE INDEX customers_type ON customers(tenant_id, connection_type) WHERE deleted_at IS NULL;
CREATE INDEX customers_package ON customers(tenant_id, package_id) WHERE deleted_at IS NULL;
CREATE INDEX customers_router ON customers(tenant_id, router_id);
CREATE INDEX customers_deleted ON customers(deleted_at) WHERE deleted_at IS NOT NULL
    AND anonymized_at IS NULL;

CREATE VIRTUAL TABLE customers_fts USING fts5(
    username, name, phone, content='customers', content_rowid='rowid', tokenize='trigram'
);
CREATE TRIGGER customers_fts_insert AFTER INSERT ON customers BEGIN
    INSERT INTO customers_fts(rowid, username, name, phone)
    VALUES (new.rowid, new.username, new.name, new.phone);
END;
CREATE TRIGGER customers_fts_update AFTER UPDATE OF username, name, phone ON customers BEGIN
    INSERT INTO customers_fts(customers_fts, rowid, username, name, phone)
    VALUES ('delete', old.rowid, old.username, old.name, old.phone);
    INSERT INTO customers_fts(rowid, username, name, phone)
    VALUES (new.rowid, new.username, new.name, new.phone);
END;
CREATE TRIGGER customers_fts_delete AFTER DELETE ON customers BEGIN
    INSERT INTO customers_fts(customers_fts, rowid, username, name, phone)
    VALUES ('delete', old.rowid, old.username, old.name, old.phone);
END;

-- Live (not deleted) customers per tenant x state x connection type x package: the list's
-- `total` for any combination of those filters is a SUM over at most a few hundred rows.
CREATE TABLE customer_counts (
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    connection_type TEXT NOT NULL,
    package_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state, connection_type, package_id)
) WITHOUT ROWID;

-- State-0 customers with an expiry, bucketed by UTC day of expires_at. The number of expired
-- customers at `now` = SUM(n) of the days before today + an index range count of today's
-- bucket up to now; so the `status` filter's total is exact at any instant.
CREATE TABLE customer_expiry_counts (
    tenant_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    connection_type TEXT NOT NULL,
    package_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, connection_type, package_id)
) WITHOUT ROWID;

CREATE TABLE ledger (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    method TEXT,
    transaction_id TEXT,
    description TEXT,
    idempotency_key TEXT,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_customer ON ledger(tenant_id, customer_id, created_at);
CREATE UNIQUE INDEX ledger_idempotency ON ledger(tenant_id, customer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX audit_entity ON audit(tenant_id, entity_id, at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    router_id TEXT NOT NULL,
    customer_id TEXT,
    username TEXT NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    stop_time INTEGER,
    input_octets INTEGER NOT NULL,
    output_octets INTEGER NOT NULL,
    framed_ip TEXT,
    mac_address TEXT,
    terminate_cause TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX sessions_customer ON sessions(tenant_id, customer_id, start_time);
"#,
    // 2: expiry buckets per day without the other dimensions, so the unfiltered `status`
    // totals sum a few hundred rows instead of days x types x packages.
    r#"
CREATE TABLE customer_expiry_days (
    tenant_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;
INSERT INTO customer_expiry_days (tenant_id, day, n)
    SELECT tenant_id, day, SUM(n) FROM customer_expiry_counts GROUP BY tenant_id, day;
"#,
    // 3: accounts of the managed MQTT broker (central itself, one per enrolled agent, read-only
    // monitors). Only Mosquitto's PBKDF2 hash is kept; the plain password is shown once.
    r#"
CREATE TABLE broker_accounts (
    username TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant_id TEXT,
    router_id TEXT,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX broker_accounts_router ON broker_accounts(router_id);
"#,
    // 4: sync with the agents (docs/sync.md). `sync_down` is the downstream outbox: one row per
    // change to a router's customers, packages or ledger, written in the transaction of the
    // change; the payload is the entity's state when the batch is built. `sync_routers` holds
    // each router's cursors both ways, its replica epoch and its presence.
    r#"
CREATE TABLE sync_down (
    router_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    change_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (router_id, seq)
) WITHOUT ROWID;
CREATE TABLE sync_routers (
    router_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    down_next INTEGER NOT NULL DEFAULT 1,
    down_acked INTEGER NOT NULL DEFAULT 0,
    epoch TEXT,
    up_applied INTEGER NOT NULL DEFAULT 0,
    presence_session INTEGER NOT NULL DEFAULT 0,
    agent_version TEXT,
    telemetry TEXT,
    telemetry_at INTEGER
) WITHOUT ROWID;
"#,
    // 5: a snapshot owed to a router's agent (decided at its birth or on a resync request)
    // survives a restart of central until the agent acknowledges one; `sync_down` rows are
    // read per router in seq order, which the primary key already serves.
    r#"
ALTER TABLE sync_routers ADD COLUMN snapshot_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sync_routers_tenant ON sync_routers(tenant_id);
"#,
    // 6: new customers enter the search index from storage code (`index_for_search`), no
    // longer by trigger: the trigger made each customer INSERT open a statement savepoint, at
    // which FTS5 writes its pending terms as a new index segment, so a bulk import wrote one
    // segment per customer and the index stayed fragmented. Updates and deletes keep their
    // triggers. 'optimize' merges the index an older version left behind into one segment.
    r#"
DROP TRIGGER customers_fts_insert;
INSERT INTO customers_fts(customers_fts) VALUES ('optimize');
"#,
    // 7: finds a later outbox row for the same customer, so a batch can leave out a state
    // that a later change of the router's outbox carries anyway (`read_down`).
    r#"
CREATE INDEX sync_down_entity ON sync_down(router_id, entity_id, seq);
"#,
    // 8: customer rows store their field stamps in a compact form (`storage::stamps`, about
    // 84 bytes for a new customer instead of 1.2 KB of JSON). Rows written before keep their
    // JSON until they are next written; both forms are read, so nothing is converted here,
    // but an older central cannot read the new form, and this migration's number makes it
    // refuse the database instead. Customers without a router leave the router index: every
    // query of it names a router.
    r#"
DROP INDEX customers_router;
CREATE INDEX customers_router ON customers(tenant_id, router_id) WHERE router_id IS NOT NULL;
"#,
];

/// The schema version this build brings a database to (the number of migrations).
pub fn known_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction.
pub fn apply(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > known_version() {
        // Its tables may mean something this build does not know: refuse rather than guess.
        return Err(StorageError::NewerSchema {
            found: current,
            known: known_version(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", known_version() + 1)
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(matches!(err, StorageError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn migration_6_keeps_customers_indexed_by_the_old_trigger_searchable() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
             INSERT INTO customers (id, tenant_id, username, name, phone, connection_type, state,
                 suspended, disabled, auto_renew, mac_bindings, tags, created_at, stamps)
             VALUES ('c1', 't', 'old1', 'Old Wanjiku', '+254711000111', 'PPPOE', 0, 0, 0, 0,
                 '[]', '[]', 0, '{}');",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'customers_fts_insert'"),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM customers_fts WHERE customers_fts MATCH '\"wanjiku\"'"),
            1
        );
        conn.execute(
            "INSERT INTO customers_fts (customers_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn migration_8_indexes_only_customers_with_a_router_and_their_lookup_uses_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
             INSERT INTO customers (id, tenant_id, username, name, connection_type, router_id,
                 state, suspended, disabled, auto_renew, mac_bindings, tags, created_at, stamps)
             VALUES ('c1', 't', 'on', 'On Router', 'PPPOE', 'r1', 0, 0, 0, 0, '[]', '[]', 0, '{}'),
                    ('c2', 't', 'off', 'No Router', 'PPPOE', NULL, 0, 0, 0, 0, '[]', '[]', 0, '{}');",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        super::super::plan_once(&conn).unwrap();
        let entries: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM customers INDEXED BY customers_router
                 WHERE router_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(entries, 1);
        // The router's customers (sync snapshots, router deletion) are found through it.
        for sql in [
            "SELECT id FROM customers WHERE tenant_id = ?1 AND router_id = ?2 ORDER BY rowid",
            "SELECT COUNT(*) FROM customers WHERE tenant_id = ?1 AND router_id = ?2 AND deleted_at IS NULL",
        ] {
            let plan: String = conn
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), ["t", "r1"], |r| {
                    r.get(3)
                })
                .unwrap();
            assert!(plan.contains("customers_router"), "{sql}: {plan}");
        }
    }
}
