//! What the agent reads and writes in its replica. Functions take a connection or a
//! transaction so callers group them: a change, its outbox row and the applied position
//! commit together or not at all.

use super::{ReplicaError, Result};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::CustomerRecord;
use easyisp_protocol::envelope::{Change, ChangeBody};
use easyisp_protocol::ledger::{LedgerEntry, Totals, totals};
use easyisp_protocol::merge::Conflict;
use easyisp_protocol::package::PackageRecord;
use easyisp_protocol::session::SessionRecord;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use uuid::Uuid;

fn to_json<T: Serialize>(value: &T) -> String {
    // Our records hold only strings, numbers, booleans and string-keyed maps: always valid JSON.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(id: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ReplicaError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

// ---- key/value state -------------------------------------------------------------------

pub fn get_state(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM state WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set_state(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

/// The replica's epoch: a random id made when the database was created, so central knows a
/// new or restored replica when it sees one.
pub fn epoch(conn: &Connection) -> Result<String> {
    if let Some(epoch) = get_state(conn, "epoch")? {
        return Ok(epoch);
    }
    let epoch = Uuid::new_v4().simple().to_string();
    set_state(conn, "epoch", &epoch)?;
    Ok(epoch)
}

// ---- customers and packages ---------------------------------------------------------------

/// Merges a (possibly partial) customer record into the replica by the per-field rule and
/// returns the conflicts (losing writes) for the audit log.
pub fn merge_customer(
    conn: &Connection,
    incoming: &CustomerRecord,
) -> Result<(CustomerRecord, Vec<Conflict>)> {
    let (merged, conflicts) = match load_customer(conn, incoming.id)? {
        Some(mut current) => {
            let conflicts = current.merge(incoming);
            (current, conflicts)
        }
        None => (incoming.clone(), Vec::new()),
    };
    conn.prepare_cached(
        "INSERT INTO customers (id, username, connection_type, package_id, expires_at, deleted, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET username = excluded.username,
            connection_type = excluded.connection_type, package_id = excluded.package_id,
            expires_at = excluded.expires_at, deleted = excluded.deleted, record = excluded.record",
    )?
    .execute(params![
        merged.id.to_string(),
        merged.username(),
        merged.connection_type().as_str(),
        merged.package().map(|p| p.to_string()),
        merged.expires().map(|t| t.timestamp_millis()),
        merged.is_deleted(),
        to_json(&merged),
    ])?;
    Ok((merged, conflicts))
}

pub fn load_customer(conn: &Connection, id: Uuid) -> Result<Option<CustomerRecord>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT record FROM customers WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    text.map(|t| from_json(&id.to_string(), &t)).transpose()
}

pub fn customer_by_username(conn: &Connection, username: &str) -> Result<Option<CustomerRecord>> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT id, record FROM customers WHERE username = ?1 AND deleted = 0 LIMIT 1",
        )?
        .query_row([username], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(id, text)| from_json(&id, &text)).transpose()
}

/// Visits every customer (deleted ones too: the reconcile removes their router objects)
/// without holding them all in memory.
pub fn for_each_customer(conn: &Connection, mut visit: impl FnMut(CustomerRecord)) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT id, record FROM customers ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, text): (String, String) = (row.get(0)?, row.get(1)?);
        visit(from_json(&id, &text)?);
    }
    Ok(())
}

/// The ids of `router`'s customers (not deleted) with these usernames, by username: what the
/// counters task needs for the sessions it has not seen before, read through the username
/// index instead of every record.
pub fn customer_ids_by_username(
    conn: &Connection,
    router: Uuid,
    usernames: &[String],
) -> Result<HashMap<String, Uuid>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, record FROM customers WHERE username = ?1 AND deleted = 0")?;
    let mut found = HashMap::new();
    for username in usernames {
        let mut rows = stmt.query([username])?;
        while let Some(row) = rows.next()? {
            let (id, text): (String, String) = (row.get(0)?, row.get(1)?);
            let customer: CustomerRecord = from_json(&id, &text)?;
            if customer.router() == Some(router) {
                found.insert(username.clone(), customer.id);
            }
        }
    }
    Ok(found)
}

/// Every customer id in the replica (a snapshot removes the ones it does not list).
pub fn customer_ids(conn: &Connection) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM customers")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|row| {
        let id = row?;
        Uuid::parse_str(&id).map_err(|e| ReplicaError::Corrupt {
            id,
            reason: e.to_string(),
        })
    })
    .collect()
}

/// Removes a customer and its ledger entries from the replica (not a soft delete: central no
/// longer sends it to this router).
pub fn remove_customer(conn: &Connection, id: Uuid) -> Result<()> {
    conn.prepare_cached("DELETE FROM ledger WHERE customer_id = ?1")?
        .execute([id.to_string()])?;
    conn.prepare_cached("DELETE FROM customers WHERE id = ?1")?
        .execute([id.to_string()])?;
    Ok(())
}

/// Customers that are not deleted and belong to `router` (the replica may also hold records
/// of customers that moved to another router).
pub fn customer_count_for_router(conn: &Connection, router: Uuid) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM customers WHERE deleted = 0
             AND json_extract(record, '$.routerId.v') = ?1",
        )?
        .query_row([router.to_string()], |r| r.get::<_, i64>(0))? as u64)
}

pub fn active_session_count(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM sessions WHERE active = 1", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

pub fn customer_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM customers WHERE deleted = 0",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

pub fn merge_package(
    conn: &Connection,
    incoming: &PackageRecord,
) -> Result<(PackageRecord, Vec<Conflict>)> {
    let (merged, conflicts) = match load_package(conn, incoming.id)? {
        Some(mut current) => {
            let conflicts = current.merge(incoming);
            (current, conflicts)
        }
        None => (incoming.clone(), Vec::new()),
    };
    conn.prepare_cached(
        "INSERT INTO packages (id, record) VALUES (?1, ?2)
         ON CONFLICT(id) DO UPDATE SET record = excluded.record",
    )?
    .execute(params![merged.id.to_string(), to_json(&merged)])?;
    Ok((merged, conflicts))
}

pub fn load_package(conn: &Connection, id: Uuid) -> Result<Option<PackageRecord>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT record FROM packages WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    text.map(|t| from_json(&id.to_string(), &t)).transpose()
}

pub fn packages(conn: &Connection) -> Result<Vec<PackageRecord>> {
    let mut stmt = conn.prepare_cached("SELECT id, record FROM packages ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (id, text) = row?;
        from_json(&id, &text)
    })
    .collect()
}

// ---- ledger ---------------------------------------------------------------------------------

/// Inserts a ledger entry unless one with the same id or idempotency key exists (union
/// merge). Returns whether it was new.
pub fn insert_ledger(conn: &Connection, entry: &LedgerEntry) -> Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO ledger (id, customer_id, amount_minor, idempotency_key, entry)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            entry.id.to_string(),
            entry.customer_id.to_string(),
            entry.amount.minor(),
            entry.idempotency_key,
            to_json(entry),
        ])?;
    Ok(inserted == 1)
}

pub fn ledger_totals(conn: &Connection, customer: Uuid) -> Result<Totals> {
    let mut stmt = conn.prepare_cached("SELECT id, entry FROM ledger WHERE customer_id = ?1")?;
    let rows = stmt.query_map([customer.to_string()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let entries = rows
        .map(|row| {
            let (id, text) = row?;
            from_json::<LedgerEntry>(&id, &text)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(totals(entries.iter()))
}

// ---- sessions -------------------------------------------------------------------------------

/// Stores a session report with the raw router counters it was computed from (so a restart
/// resumes counting without double counting).
pub fn upsert_session(
    conn: &Connection,
    record: &SessionRecord,
    router_session: &str,
    raw: (u64, u64),
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, kind, username, active, router_session, raw_in, raw_out, updated_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(id) DO UPDATE SET active = excluded.active, router_session = excluded.router_session,
            raw_in = excluded.raw_in, raw_out = excluded.raw_out, updated_at = excluded.updated_at,
            record = excluded.record",
    )?
    .execute(params![
        record.id.to_string(),
        serde_json::to_value(record.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        record.username,
        record.is_active(),
        router_session,
        raw.0 as i64,
        raw.1 as i64,
        record.updated_at.timestamp_millis(),
        to_json(record),
    ])?;
    Ok(())
}

/// Active sessions with their raw counters, to resume the tracker after a restart.
pub fn active_sessions(conn: &Connection) -> Result<Vec<(SessionRecord, String, u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, record, router_session, raw_in, raw_out FROM sessions WHERE active = 1",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    rows.map(|row| {
        let (id, text, router_session, raw_in, raw_out) = row?;
        Ok((
            from_json(&id, &text)?,
            router_session,
            raw_in as u64,
            raw_out as u64,
        ))
    })
    .collect()
}

// ---- outbox ---------------------------------------------------------------------------------

/// Appends a change to the upstream outbox; call inside the transaction of the change itself.
pub fn enqueue(conn: &Connection, body: &ChangeBody, now: DateTime<Utc>) -> Result<u64> {
    conn.prepare_cached(
        "INSERT INTO outbox (id, body, created_at, customer_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        Uuid::now_v7().to_string(),
        to_json(body),
        now.timestamp_millis(),
        concerned_customer(body).map(|id| id.to_string()),
    ])?;
    Ok(conn.last_insert_rowid() as u64)
}

/// The customer a change is about, if any.
fn concerned_customer(body: &ChangeBody) -> Option<Uuid> {
    match body {
        ChangeBody::Customer(c) => Some(c.id),
        ChangeBody::Ledger(e) => Some(e.customer_id),
        ChangeBody::Session(s) => s.customer_id,
        ChangeBody::Audit(a) if a.entity == "customer" => Some(a.entity_id),
        ChangeBody::Audit(_) | ChangeBody::Package(_) | ChangeBody::Noop => None,
    }
}

/// Whether the outbox still holds a change about `customer` that central has not
/// acknowledged (acknowledged rows are deleted).
pub fn outbox_has_customer(conn: &Connection, customer: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM outbox WHERE customer_id = ?1 LIMIT 1")?
        .query_row([customer.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The highest sequence number ever given to an outbox row (0 before the first).
pub fn outbox_last_seq(conn: &Connection) -> Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Up to `limit` unacknowledged changes after `after`, oldest first.
pub fn outbox_after(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Change>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, id, body FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (seq, id, body) = row?;
        let uuid = Uuid::parse_str(&id).map_err(|e| ReplicaError::Corrupt {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        Ok(Change {
            seq: seq as u64,
            id: uuid,
            body: from_json(&id, &body)?,
        })
    })
    .collect()
}

/// Drops every change the receiver acknowledged (cumulative ack).
pub fn ack_outbox(conn: &Connection, through: u64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([through as i64])?)
}

pub fn outbox_depth(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64)
}

#[cfg(test)]
mod tests {
    use super::super::Replica;
    use super::*;
    use easyisp_protocol::customer::{ConnectionType, SyncedSecret};
    use easyisp_protocol::ledger::{Actor, ActorKind, LedgerKind};
    use easyisp_protocol::merge::Lww;
    use easyisp_protocol::{Hlc, Money, NodeId};

    fn record(name: &str, ms: u64) -> CustomerRecord {
        let mut c = CustomerRecord::empty(Uuid::from_u128(1), Uuid::from_u128(2));
        let stamp = Hlc::new(ms, 0, NodeId(1));
        c.username = Some(Lww::new(name.to_string(), stamp));
        c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), stamp));
        c.connection_type = Some(Lww::new(ConnectionType::Pppoe, stamp));
        c
    }

    #[tokio::test]
    async fn customers_merge_per_field_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.db");
        let replica = Replica::open(&path).unwrap();
        replica
            .write(|tx| merge_customer(tx, &record("alice", 10)).map(|_| ()))
            .await
            .unwrap();
        let conflicts = replica
            .write(|tx| Ok(merge_customer(tx, &record("alice2", 5))?.1))
            .await
            .unwrap();
        assert_eq!(conflicts.len(), 1, "the older write lost and is reported");
        drop(replica);

        let replica = Replica::open(&path).unwrap();
        let loaded = replica
            .read(|c| load_customer(c, Uuid::from_u128(1)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.username(), "alice");
        let by_name = replica
            .read(|c| customer_by_username(c, "alice"))
            .await
            .unwrap();
        assert!(by_name.is_some());
    }

    #[tokio::test]
    async fn a_failed_transaction_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let outcome: Result<()> = replica
            .write(|tx| {
                merge_customer(tx, &record("alice", 10))?;
                enqueue(tx, &ChangeBody::Noop, Utc::now())?;
                Err(ReplicaError::Corrupt {
                    id: "x".into(),
                    reason: "simulated failure".into(),
                })
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(replica.read(customer_count).await.unwrap(), 0);
        assert_eq!(replica.read(outbox_depth).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_outbox_is_drained_only_by_acks() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        for _ in 0..5 {
            replica
                .write(|tx| enqueue(tx, &ChangeBody::Noop, Utc::now()))
                .await
                .unwrap();
        }
        let batch = replica.read(|c| outbox_after(c, 0, 3)).await.unwrap();
        assert_eq!(
            batch.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        replica.write(|tx| ack_outbox(tx, 2)).await.unwrap();
        let rest = replica.read(|c| outbox_after(c, 2, 10)).await.unwrap();
        assert_eq!(
            rest.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(replica.read(outbox_depth).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_ledger_entry_is_applied_once_by_id_and_by_idempotency_key() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let entry = LedgerEntry {
            id: Uuid::from_u128(10),
            tenant_id: Uuid::from_u128(2),
            customer_id: Uuid::from_u128(1),
            kind: LedgerKind::Recharge,
            amount: Money::from_minor(50_000),
            method: None,
            transaction_id: None,
            description: None,
            idempotency_key: Some("k1".into()),
            actor: Actor {
                kind: ActorKind::System,
                id: None,
                name: "system".into(),
            },
            created_at: Utc::now(),
        };
        let retry = LedgerEntry {
            id: Uuid::from_u128(11),
            ..entry.clone()
        };
        let e = entry.clone();
        assert!(
            replica
                .write(move |tx| insert_ledger(tx, &e))
                .await
                .unwrap()
        );
        let e = entry.clone();
        assert!(
            !replica
                .write(move |tx| insert_ledger(tx, &e))
                .await
                .unwrap()
        );
        assert!(
            !replica
                .write(move |tx| insert_ledger(tx, &retry))
                .await
                .unwrap()
        );
        let t = replica
            .read(|c| ledger_totals(c, Uuid::from_u128(1)))
            .await
            .unwrap();
        assert_eq!(t.wallet_balance, Money::from_minor(50_000));
    }

    #[tokio::test]
    async fn the_epoch_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let first = replica.write(|tx| epoch(tx)).await.unwrap();
        let second = replica.write(|tx| epoch(tx)).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
    }
}
