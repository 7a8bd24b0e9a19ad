//! The outbox publisher task: publishes the replica's outbox to `up/changes` in batches, keeps
//! at most four unacknowledged, resends after [`ACK_TIMEOUT`](super::upstream::ACK_TIMEOUT),
//! after a reconnect and on central's `resendFrom`, and deletes what central's cumulative ack
//! covers. It wakes when another task queued a change (`Shared::outbox_changed`), and every
//! few seconds in case another process (`adopt`) did.
//!
//! It never waits on the MQTT event loop: publishes are queued with `try_publish`; one that
//! cannot be queued is simply sent again by the resend rules.

use super::upstream::{Window, assemble};
use crate::daemon::{Shared, state};
use crate::replica::store;
use easyisp_mqtt::{AsyncClient, QoS};
use easyisp_protocol::envelope::{self, Ack, ChangeBatch, MAX_BATCH_CHANGES, PROTOCOL_VERSION};
use easyisp_protocol::topics::SiteTopic;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the outbox is looked at when nothing woke the publisher.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// What the connection task tells the publisher.
#[derive(Debug)]
pub enum Input {
    /// Connected (again): publish from the first unacknowledged change with this client.
    Connected(AsyncClient),
    Disconnected,
    /// A `down/ack` for this replica's epoch.
    Ack(Ack),
}

pub async fn run(
    shared: Shared,
    epoch: String,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    cancel: CancellationToken,
) {
    let router = shared.config.router_id;
    let acked = match shared
        .replica
        .read(|c| state::get_u64(c, state::SYNC_UP_ACKED))
        .await
    {
        Ok(acked) => acked,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the upstream position; not publishing the outbox");
            return;
        }
    };
    let mut window = Window::new(acked);
    let mut client: Option<AsyncClient> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_idle_check = Instant::now();
    loop {
        let fill_now = tokio::select! {
            _ = cancel.cancelled() => return,
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Connected(c)) => {
                    client = Some(c);
                    window.restart();
                    true
                }
                Some(Input::Disconnected) => {
                    client = None;
                    false
                }
                Some(Input::Ack(ack)) => on_ack(&shared, &mut window, ack).await,
            },
            _ = shared.outbox_grew.notified() => true,
            _ = tick.tick() => {
                let now = Instant::now();
                if client.is_some() && window.timed_out(now) {
                    tracing::warn!(
                        acked = window.acked(),
                        "central did not acknowledge upstream changes within 10 s; resending"
                    );
                    window.restart();
                    true
                } else if now >= next_idle_check && window.in_flight() == 0 {
                    next_idle_check = now + IDLE_CHECK;
                    true
                } else {
                    false
                }
            }
        };
        if let (true, Some(c)) = (fill_now, &client)
            && let Err(e) = fill(&shared, &mut window, c, router, &epoch).await
        {
            tracing::error!(error = %e, "cannot read the outbox");
        }
    }
}

/// Publishes batches while the window has room and the outbox has changes.
async fn fill(
    shared: &Shared,
    window: &mut Window,
    client: &AsyncClient,
    router: Uuid,
    epoch: &str,
) -> crate::replica::Result<()> {
    while window.has_room() {
        let from = window.next();
        let (rows, last_written) = shared
            .replica
            .read(move |c| {
                Ok((
                    store::outbox_after(c, from - 1, MAX_BATCH_CHANGES)?,
                    store::outbox_last_seq(c)?,
                ))
            })
            .await?;
        let changes = assemble(from, rows, last_written);
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(());
        };
        let (first_seq, last_seq) = (first.seq, last.seq);
        let batch = ChangeBatch {
            v: PROTOCOL_VERSION,
            router,
            epoch: epoch.to_string(),
            first_seq,
            last_seq,
            changes,
        };
        let payload = envelope::encode(&batch);
        let topic = SiteTopic::UpChanges.for_router(router);
        if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            // Full request queue or a closed connection: the resend rules retry.
            tracing::debug!(error = %e, "could not queue an upstream batch");
            return Ok(());
        }
        tracing::debug!(
            direction = "up",
            first_seq,
            last_seq,
            "published upstream changes"
        );
        window.sent(last_seq, Instant::now());
    }
    Ok(())
}

/// Central's ack: delete what it covers, remember it, go back if asked. Returns whether to
/// publish more now.
async fn on_ack(shared: &Shared, window: &mut Window, ack: Ack) -> bool {
    for rejected in &ack.rejected {
        tracing::warn!(
            seq = rejected.seq,
            reason = %rejected.reason,
            "central rejected an upstream change"
        );
    }
    if ack.must_resync {
        tracing::warn!("central cannot continue the upstream stream incrementally");
    }
    let through = ack.acked_through;
    let now = chrono::Utc::now();
    let stored = shared
        .replica
        .write(move |tx| {
            let acked = state::get_u64(tx, state::SYNC_UP_ACKED)?;
            if through > acked {
                store::ack_outbox(tx, through)?;
                state::set_u64(tx, state::SYNC_UP_ACKED, through)?;
            }
            state::set_json(
                tx,
                state::SYNC_LAST_ACK,
                &state::LastAck {
                    at: now,
                    through: through.max(acked),
                },
            )
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot record central's acknowledgement");
        return false;
    }
    window.ack(through);
    if let Some(from) = ack.resend_from {
        tracing::info!(from, "central asked to resend upstream changes");
        window.rewind(from);
    }
    true
}
