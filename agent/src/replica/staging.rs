//! The staging area of snapshot chunks: each chunk is written to disk as it arrives, so a
//! snapshot of a large site never sits in memory and survives an agent restart half way.
//! Only one snapshot is staged at a time; a chunk of another snapshot starts over.

use super::{ReplicaError, Result};
use easyisp_protocol::envelope::{ChangeBody, SnapshotChunk};
use rusqlite::{Connection, params};

/// How far the staging of one snapshot has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub received: u32,
    pub count: u32,
}

impl Progress {
    pub fn complete(self) -> bool {
        self.received == self.count
    }
}

/// Stores one chunk. Chunks of any other snapshot (another id, or the same id announcing a
/// different size or high-water mark) are dropped first; a chunk already staged is kept.
pub fn stage(conn: &Connection, chunk: &SnapshotChunk) -> Result<Progress> {
    let id = chunk.snapshot_id.to_string();
    conn.prepare_cached(
        "DELETE FROM snapshot_chunks WHERE snapshot_id <> ?1 OR count <> ?2 OR high_water <> ?3",
    )?
    .execute(params![id, chunk.count, chunk.high_water_seq as i64])?;
    let items = serde_json::to_string(&chunk.items).map_err(|e| ReplicaError::Corrupt {
        id: id.clone(),
        reason: e.to_string(),
    })?;
    conn.prepare_cached(
        "INSERT INTO snapshot_chunks (snapshot_id, idx, count, high_water, items)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        id,
        chunk.index,
        chunk.count,
        chunk.high_water_seq as i64,
        items
    ])?;
    let received: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM snapshot_chunks WHERE snapshot_id = ?1")?
        .query_row([&id], |r| r.get(0))?;
    Ok(Progress {
        received: received as u32,
        count: chunk.count,
    })
}

/// The items of staged chunk `index`, in the order central sent them.
pub fn items(conn: &Connection, snapshot_id: &str, index: u32) -> Result<Vec<ChangeBody>> {
    let text: String = conn
        .prepare_cached("SELECT items FROM snapshot_chunks WHERE snapshot_id = ?1 AND idx = ?2")?
        .query_row(params![snapshot_id, index], |r| r.get(0))?;
    serde_json::from_str(&text).map_err(|e| ReplicaError::Corrupt {
        id: format!("snapshot {snapshot_id} chunk {index}"),
        reason: e.to_string(),
    })
}

/// Empties the staging area (after a snapshot was applied).
pub fn clear(conn: &Connection) -> Result<()> {
    conn.prepare_cached("DELETE FROM snapshot_chunks")?
        .execute([])?;
    Ok(())
}

/// The snapshot being staged and its progress, for `status`.
pub fn in_progress(conn: &Connection) -> Result<Option<(String, Progress)>> {
    let row: Option<(String, i64, i64)> = rusqlite::OptionalExtension::optional(
        conn.prepare_cached(
            "SELECT snapshot_id, COUNT(*), MAX(count) FROM snapshot_chunks GROUP BY snapshot_id LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))),
    )?;
    Ok(row.map(|(id, received, count)| {
        (
            id,
            Progress {
                received: received as u32,
                count: count as u32,
            },
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::super::Replica;
    use super::*;
    use uuid::Uuid;

    fn chunk(id: u128, index: u32, count: u32) -> SnapshotChunk {
        SnapshotChunk {
            v: 1,
            router: Uuid::from_u128(1),
            snapshot_id: Uuid::from_u128(id),
            epoch: "e".into(),
            index,
            count,
            high_water_seq: 9,
            items: vec![ChangeBody::Noop],
        }
    }

    #[tokio::test]
    async fn a_new_snapshot_restarts_staging_and_duplicates_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let p = replica
            .write(|tx| stage(tx, &chunk(1, 0, 3)))
            .await
            .unwrap();
        assert_eq!(
            p,
            Progress {
                received: 1,
                count: 3
            }
        );
        let p = replica
            .write(|tx| stage(tx, &chunk(1, 0, 3)))
            .await
            .unwrap();
        assert_eq!(p.received, 1, "a resent chunk is staged once");
        let p = replica
            .write(|tx| stage(tx, &chunk(1, 1, 3)))
            .await
            .unwrap();
        assert_eq!(p.received, 2);
        let p = replica
            .write(|tx| stage(tx, &chunk(2, 0, 2)))
            .await
            .unwrap();
        assert_eq!(
            p,
            Progress {
                received: 1,
                count: 2
            },
            "another id starts over"
        );
        let p = replica
            .write(|tx| stage(tx, &chunk(2, 1, 2)))
            .await
            .unwrap();
        assert!(p.complete());
        let items = replica
            .read(|c| items(c, &Uuid::from_u128(2).to_string(), 1))
            .await
            .unwrap();
        assert_eq!(items, vec![ChangeBody::Noop]);
        replica.write(|tx| clear(tx)).await.unwrap();
        assert_eq!(replica.read(in_progress).await.unwrap(), None);
    }
}
