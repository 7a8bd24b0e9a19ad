//! The figures behind `GET /metrics`: aggregate numbers only, read in one pass from the
//! maintained counts (`counts`), `routers`, `sync_routers` and the head of each router's
//! `sync_down`. Nothing here scans `customers` or `sessions`, so a tenant with a million
//! customers answers in milliseconds; no customer data leaves this module.

use super::{Result, Storage, counts, from_ms, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::CustomerStatus;
use easyisp_protocol::envelope::{ClockState, Telemetry};
use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

/// Everything `/metrics` shows that lives in the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsFigures {
    pub tenants: Vec<TenantFigures>,
    pub routers: Vec<RouterFigures>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantFigures {
    pub id: Uuid,
    pub name: String,
    /// Live customers per status, every status present (zeros included).
    pub customers: Vec<(CustomerStatus, u64)>,
    /// Sum of `activeSessions` in the latest telemetry of the tenant's online routers.
    pub active_sessions: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouterFigures {
    pub id: Uuid,
    pub tenant: Uuid,
    pub name: String,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    /// Downstream figures; `None` until the router's agent has synced once (has an epoch).
    pub outbox: Option<OutboxFigures>,
    /// The latest telemetry the agent sent, when it could be read.
    pub agent: Option<AgentFigures>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFigures {
    /// Changes assigned to the router and not acknowledged by its agent.
    pub depth: u64,
    /// When the oldest of them was written; `None` when the outbox is empty.
    pub oldest: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFigures {
    pub at: DateTime<Utc>,
    pub outbox_depth: u64,
    pub router_reachable: bool,
    pub clock_synchronised: bool,
    pub last_reconcile: Option<DateTime<Utc>>,
    pub active_sessions: u64,
}

impl AgentFigures {
    /// The figures of a stored telemetry payload; `None` for one this build cannot read.
    pub fn from_json(text: &str) -> Option<AgentFigures> {
        let telemetry: Telemetry = serde_json::from_str(text).ok()?;
        Some(AgentFigures {
            at: telemetry.at,
            outbox_depth: telemetry.outbox_depth,
            router_reachable: telemetry.router_reachable,
            clock_synchronised: telemetry.clock == ClockState::Synchronised,
            last_reconcile: telemetry.last_reconcile,
            active_sessions: telemetry.active_sessions,
        })
    }
}

impl Storage {
    /// The figures for `/metrics` as of `now` (which splits active from expired).
    pub async fn metrics_figures(&self, now: DateTime<Utc>) -> Result<MetricsFigures> {
        self.read(move |conn| figures(conn, now)).await
    }
}

fn figures(conn: &Connection, now: DateTime<Utc>) -> Result<MetricsFigures> {
    let routers = routers(conn)?;
    let mut tenants = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT id, name FROM tenants ORDER BY created_at, id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id = parse_uuid(&row.get::<_, String>(0)?)?;
        let mut customers = Vec::with_capacity(CustomerStatus::ALL.len());
        for status in CustomerStatus::ALL {
            customers.push((
                status,
                counts::total(conn, id, Some(status), None, None, now)?,
            ));
        }
        let active_sessions = routers
            .iter()
            .filter(|r| r.tenant == id && r.online)
            .filter_map(|r| r.agent.map(|a| a.active_sessions))
            .sum();
        tenants.push(TenantFigures {
            id,
            name: row.get(1)?,
            customers,
            active_sessions,
        });
    }
    Ok(MetricsFigures { tenants, routers })
}

fn routers(conn: &Connection) -> Result<Vec<RouterFigures>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.tenant_id, r.name, r.online, r.last_seen, s.epoch IS NOT NULL,
            s.down_next, s.down_acked, s.telemetry
         FROM routers r LEFT JOIN sync_routers s ON s.router_id = r.id
         WHERE r.deleted_at IS NULL ORDER BY r.tenant_id, r.created_at, r.id",
    )?;
    let mut oldest = conn.prepare_cached(
        "SELECT created_at FROM sync_down WHERE router_id = ?1 AND seq > ?2
         ORDER BY seq LIMIT 1",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id_text: String = row.get(0)?;
        let synced: Option<bool> = row.get(5)?;
        let outbox = if synced == Some(true) {
            let (next, acked): (i64, i64) = (row.get(6)?, row.get(7)?);
            let first: Option<i64> = oldest
                .query_row(rusqlite::params![id_text, acked], |r| r.get(0))
                .optional()?;
            Some(OutboxFigures {
                depth: (next - 1 - acked).max(0) as u64,
                oldest: first.map(from_ms).transpose()?,
            })
        } else {
            None
        };
        let telemetry: Option<String> = row.get(8)?;
        out.push(RouterFigures {
            id: parse_uuid(&id_text)?,
            tenant: parse_uuid(&row.get::<_, String>(1)?)?,
            name: row.get(2)?,
            online: row.get(3)?,
            last_seen: row.get::<_, Option<i64>>(4)?.map(from_ms).transpose()?,
            outbox,
            agent: telemetry.as_deref().and_then(AgentFigures::from_json),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_figures_come_from_the_stored_telemetry() {
        let text = r#"{"v":1,"router":"0193a4c2-7d1e-7000-8000-000000000001",
            "at":"2026-03-01T08:00:30Z","routerReachable":true,"customers":412,
            "activeSessions":388,"outboxDepth":2,"lastReconcile":"2026-03-01T08:00:12Z",
            "clock":"jumpedBackwards"}"#;
        let figures = AgentFigures::from_json(text).unwrap();
        assert_eq!(figures.active_sessions, 388);
        assert_eq!(figures.outbox_depth, 2);
        assert!(figures.router_reachable);
        assert!(!figures.clock_synchronised);
        assert!(figures.last_reconcile.is_some());
        assert_eq!(AgentFigures::from_json("{\"v\":1}"), None);
    }

    #[tokio::test]
    async fn figures_of_a_fresh_database_are_empty_and_cheap() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), Default::default()).unwrap();
        let figures = storage.metrics_figures(Utc::now()).await.unwrap();
        assert_eq!(figures, MetricsFigures::default());
        storage.shutdown();
    }
}
