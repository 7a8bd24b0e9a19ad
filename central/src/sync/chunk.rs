//! Pure helpers: cutting a snapshot into chunks under the size limit, and wrapping changes
//! into a batch envelope.

use easyisp_protocol::envelope::{
    Change, ChangeBatch, ChangeBody, PROTOCOL_VERSION, SnapshotChunk,
};
use uuid::Uuid;

/// Snapshot chunks stay under 128 KiB; this is what their items may take, leaving room for
/// the envelope's own fields.
pub const CHUNK_ITEMS_BYTES: usize = 120 * 1024;

/// Cuts `items` into chunks whose items' JSON stays within `budget` bytes (an item larger
/// than the budget travels alone). An empty snapshot is one empty chunk, so the agent still
/// learns `highWaterSeq`.
pub fn snapshot_chunks(
    router: Uuid,
    epoch: &str,
    snapshot_id: Uuid,
    high_water_seq: u64,
    items: Vec<ChangeBody>,
    budget: usize,
) -> Vec<SnapshotChunk> {
    let mut groups: Vec<Vec<ChangeBody>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        // One for the comma between items.
        let size = serde_json::to_vec(&item).map_or(0, |v| v.len()) + 1;
        if !current.is_empty() && bytes + size > budget {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() || groups.is_empty() {
        groups.push(current);
    }
    let count = groups.len() as u32;
    groups
        .into_iter()
        .enumerate()
        .map(|(index, items)| SnapshotChunk {
            v: PROTOCOL_VERSION,
            router,
            snapshot_id,
            epoch: epoch.to_string(),
            index: index as u32,
            count,
            high_water_seq,
            items,
        })
        .collect()
}

/// A batch of contiguous changes; `None` for no changes.
pub fn batch(router: Uuid, epoch: &str, changes: Vec<Change>) -> Option<ChangeBatch> {
    let first_seq = changes.first()?.seq;
    let last_seq = changes.last()?.seq;
    Some(ChangeBatch {
        v: PROTOCOL_VERSION,
        router,
        epoch: epoch.to_string(),
        first_seq,
        last_seq,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use easyisp_protocol::CustomerRecord;
    use easyisp_protocol::envelope::encode;
    use easyisp_protocol::hlc::{Hlc, NodeId};
    use easyisp_protocol::merge::Lww;

    fn customer(i: usize) -> ChangeBody {
        let mut record = CustomerRecord::empty(Uuid::from_u128(i as u128), Uuid::from_u128(1));
        let stamp = Hlc::new(1_764_000_000_000, 0, NodeId(1));
        record.name = Some(Lww::new("x".repeat(900), stamp));
        record.username = Some(Lww::new(format!("user{i}"), stamp));
        ChangeBody::Customer(Box::new(record))
    }

    #[test]
    fn snapshot_chunks_stay_under_128_kib_and_keep_every_item_in_order() {
        let items: Vec<ChangeBody> = (0..1000).map(customer).collect();
        let chunks = snapshot_chunks(
            Uuid::from_u128(9),
            "e",
            Uuid::from_u128(3),
            42,
            items.clone(),
            CHUNK_ITEMS_BYTES,
        );
        assert!(chunks.len() > 5, "{}", chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(
                (chunk.index as usize, chunk.count as usize),
                (i, chunks.len())
            );
            assert_eq!(chunk.high_water_seq, 42);
            assert!(encode(chunk).len() < 128 * 1024, "chunk {i}");
        }
        let all: Vec<ChangeBody> = chunks.into_iter().flat_map(|c| c.items).collect();
        assert_eq!(all, items);
    }

    #[test]
    fn an_empty_snapshot_is_one_empty_chunk() {
        let chunks = snapshot_chunks(Uuid::nil(), "e", Uuid::nil(), 0, Vec::new(), 1000);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].count, chunks[0].items.len()), (1, 0));
    }
}
