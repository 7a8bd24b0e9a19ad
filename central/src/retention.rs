//! The retention job: anonymises customers soft-deleted longer ago than the retention period
//! (default 90 days), in small batches so it never holds the writer for long, and drops the
//! sync backlog of agents that have not acknowledged anything for as long (they get a snapshot
//! instead, see `storage::sync::horizon`).

use crate::storage::Storage;
use chrono::Utc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 200;

/// Runs every `interval` until cancelled.
pub async fn run(
    storage: Storage,
    retention_days: u32,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(retention_days));
        let mut done = 0usize;
        // Bounded: at most 1000 batches per pass, then the next pass continues.
        for _ in 0..1000 {
            match storage.anonymize_deleted_before(cutoff, BATCH).await {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retrying at the next interval");
                    break;
                }
            }
        }
        // The same horizon bounds the sync outbox of agents that stopped acknowledging.
        match storage.compact_sync_backlogs(cutoff, 100).await {
            Ok(0) => {}
            Ok(routers) => tracing::info!(
                routers,
                retention_days,
                "compacted sync backlogs past the horizon"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "sync backlog compaction failed; retrying at the next interval")
            }
        }
        if done > 0 {
            tracing::info!(
                anonymised = done,
                retention_days,
                "anonymised customers past their retention"
            );
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
