//! Router sessions as central sees them: written by the sync issue (from the agents), read
//! here for `live-status` and the session history.

use super::customer_row::CustomerRow;
use super::{Result, Storage, from_ms, ms, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::session::{SessionKind, SessionRecord, SessionView, human_ago};
use rusqlite::params;
use serde::Serialize;
use uuid::Uuid;

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStatus {
    pub is_online: bool,
    pub session: Option<SessionView>,
    pub last_seen: Option<String>,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsPage {
    pub sessions: Vec<SessionView>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

const COLUMNS: &str =
    "id, tenant_id, router_id, customer_id, username, kind, session_id, start_time,
    stop_time, input_octets, output_octets, framed_ip, mac_address, terminate_cause, updated_at";

fn read(row: &rusqlite::Row<'_>) -> Result<SessionRecord> {
    let customer: Option<String> = row.get(3)?;
    Ok(SessionRecord {
        id: parse_uuid(&row.get::<_, String>(0)?)?,
        tenant_id: parse_uuid(&row.get::<_, String>(1)?)?,
        router_id: parse_uuid(&row.get::<_, String>(2)?)?,
        customer_id: customer.map(|c| parse_uuid(&c)).transpose()?,
        username: row.get(4)?,
        kind: if row.get::<_, String>(5)? == "HOTSPOT" {
            SessionKind::Hotspot
        } else {
            SessionKind::Pppoe
        },
        session_id: row.get(6)?,
        start_time: from_ms(row.get(7)?)?,
        stop_time: row.get::<_, Option<i64>>(8)?.map(from_ms).transpose()?,
        input_octets: row.get::<_, i64>(9)?.max(0) as u64,
        output_octets: row.get::<_, i64>(10)?.max(0) as u64,
        framed_ip: row.get(11)?,
        mac_address: row.get(12)?,
        terminate_cause: row.get(13)?,
        updated_at: from_ms(row.get(14)?)?,
    })
}

impl Storage {
    /// Online when the customer has a session without a stop time; `lastSeen` is how long ago
    /// its newest session was last updated (null when it never had one).
    pub async fn live_status(
        &self,
        tenant: Uuid,
        customer: Uuid,
        now: DateTime<Utc>,
    ) -> Result<LiveStatus> {
        self.read(move |conn| {
            CustomerRow::load(conn, tenant, customer, false)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE tenant_id = ?1 AND customer_id = ?2
                 ORDER BY (stop_time IS NULL) DESC, start_time DESC LIMIT 1"
            ))?;
            let mut rows = stmt.query(params![tenant.to_string(), customer.to_string()])?;
            let Some(row) = rows.next()? else {
                return Ok(LiveStatus {
                    is_online: false,
                    session: None,
                    last_seen: None,
                });
            };
            let record = read(row)?;
            let last = record
                .stop_time
                .unwrap_or(record.updated_at)
                .max(record.updated_at);
            let ago = human_ago((now - last).num_seconds().max(0) as u64);
            let online = record.is_active();
            Ok(LiveStatus {
                is_online: online,
                session: online.then(|| SessionView::at(&record, now)),
                last_seen: Some(ago),
            })
        })
        .await
    }

    pub async fn sessions(
        &self,
        tenant: Uuid,
        customer: Uuid,
        page: u32,
        page_size: u32,
        now: DateTime<Utc>,
    ) -> Result<SessionsPage> {
        self.read(move |conn| {
            CustomerRow::load(conn, tenant, customer, false)?;
            let total: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM sessions WHERE tenant_id = ?1 AND customer_id = ?2",
                )?
                .query_row(params![tenant.to_string(), customer.to_string()], |r| {
                    r.get(0)
                })?;
            let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE tenant_id = ?1 AND customer_id = ?2
                 ORDER BY start_time DESC, id DESC LIMIT ?3 OFFSET ?4"
            ))?;
            let mut rows = stmt.query(params![
                tenant.to_string(),
                customer.to_string(),
                page_size,
                offset
            ])?;
            let mut sessions = Vec::new();
            while let Some(row) = rows.next()? {
                sessions.push(SessionView::at(&read(row)?, now));
            }
            Ok(SessionsPage {
                sessions,
                total: total.max(0) as u64,
                page,
                page_size,
            })
        })
        .await
    }

    /// Inserts or merges a session reported by an agent (per-session maximum of counters).
    /// Sync applies agents' sessions with [`upsert`]; tests use this to simulate an agent.
    pub async fn upsert_session(&self, record: SessionRecord) -> Result<()> {
        self.write(move |tx| upsert(tx.conn(), record)).await
    }
}

/// Inserts a session or merges it into the stored one (per-session maximum of counters).
pub(super) fn upsert(conn: &rusqlite::Connection, record: SessionRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND tenant_id = ?2"
    ))?;
    let mut rows = stmt.query(params![record.id.to_string(), record.tenant_id.to_string()])?;
    let merged = match rows.next()? {
        Some(row) => {
            let mut existing = read(row)?;
            existing.merge(&record);
            existing
        }
        None => record,
    };
    drop(rows);
    let kind = match merged.kind {
        SessionKind::Pppoe => "PPPOE",
        SessionKind::Hotspot => "HOTSPOT",
    };
    conn.prepare_cached(
        "INSERT INTO sessions (id, tenant_id, router_id, customer_id, username, kind, session_id,
            start_time, stop_time, input_octets, output_octets, framed_ip, mac_address,
            terminate_cause, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id,
            stop_time = excluded.stop_time, input_octets = excluded.input_octets,
            output_octets = excluded.output_octets, framed_ip = excluded.framed_ip,
            mac_address = excluded.mac_address, terminate_cause = excluded.terminate_cause,
            updated_at = excluded.updated_at
         WHERE sessions.tenant_id = excluded.tenant_id",
    )?
    .execute(params![
        merged.id.to_string(),
        merged.tenant_id.to_string(),
        merged.router_id.to_string(),
        merged.customer_id.map(|c| c.to_string()),
        merged.username,
        kind,
        merged.session_id,
        ms(merged.start_time),
        merged.stop_time.map(ms),
        merged.input_octets.min(i64::MAX as u64) as i64,
        merged.output_octets.min(i64::MAX as u64) as i64,
        merged.framed_ip,
        merged.mac_address,
        merged.terminate_cause,
        ms(merged.updated_at),
    ])?;
    Ok(())
}
