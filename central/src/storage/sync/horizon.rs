//! The outbox horizon: a router whose agent has left changes unacknowledged for longer than
//! the horizon (default 90 days, the retention period) stops accumulating `sync_down` rows.
//! Its backlog is dropped and a snapshot is owed instead: at the agent's next birth it gets
//! the full current state, which says everything the dropped rows said (docs/sync.md,
//! "Epochs, snapshots, restores").

use crate::storage::{Result, Storage, ms};
use chrono::{DateTime, Utc};
use rusqlite::params;

impl Storage {
    /// Drops the backlog of up to `limit` routers whose oldest unacknowledged change is older
    /// than `before`, and marks a snapshot owed for each. Returns the routers compacted.
    pub async fn compact_sync_backlogs(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize> {
        self.write(move |tx| {
            let conn = tx.conn();
            let routers: Vec<String> = conn
                .prepare_cached(
                    "SELECT router_id FROM sync_down GROUP BY router_id
                     HAVING MIN(created_at) < ?1 LIMIT ?2",
                )?
                .query_map(params![ms(before), limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for router in &routers {
                conn.prepare_cached("DELETE FROM sync_down WHERE router_id = ?1")?
                    .execute([router])?;
                conn.prepare_cached(
                    "UPDATE sync_routers SET snapshot_pending = 1, down_acked = down_next - 1
                     WHERE router_id = ?1",
                )?
                .execute([router])?;
                tracing::warn!(
                    %router,
                    "the router's agent left changes unacknowledged past the horizon: its backlog was dropped and it gets a snapshot at its next connection"
                );
            }
            Ok(routers.len())
        })
        .await
    }
}
