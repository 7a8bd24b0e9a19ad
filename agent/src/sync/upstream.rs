//! Upstream flow control, pure: which outbox changes to publish next (go-back-N over at most
//! [`WINDOW`] unacknowledged batches), and how to cut them into batches of at most
//! [`MAX_BATCH_CHANGES`] changes and about [`TARGET_BATCH_BYTES`]. Time is an argument; the
//! publisher task (`publisher.rs`) reads the outbox, publishes and sleeps.

use easyisp_protocol::envelope::{Change, ChangeBody, MAX_BATCH_CHANGES, TARGET_BATCH_BYTES};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Batches published and not yet acknowledged, at most.
pub const WINDOW: usize = 4;
/// Without an ack this long after a batch was published, everything unacknowledged is resent.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for the envelope around the changes (`v`, router, epoch, seqs).
const ENVELOPE_BYTES: usize = 256;

/// The sender's cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Central acknowledged every change up to here.
    acked: u64,
    /// The next seq to publish.
    next: u64,
    /// `(last seq, published at)` of each unacknowledged batch, oldest first.
    in_flight: VecDeque<(u64, Instant)>,
}

impl Window {
    pub fn new(acked: u64) -> Window {
        Window {
            acked,
            next: acked + 1,
            in_flight: VecDeque::new(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The first seq of the next batch to publish.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another batch may be published now.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < WINDOW
    }

    /// A batch ending at `last` was published at `at`.
    pub fn sent(&mut self, last: u64, at: Instant) {
        self.next = last + 1;
        self.in_flight.push_back((last, at));
    }

    /// Central's cumulative ack. Returns whether it acknowledged something new.
    pub fn ack(&mut self, through: u64) -> bool {
        let advanced = through > self.acked;
        if advanced {
            self.acked = through;
        }
        self.in_flight.retain(|(last, _)| *last > self.acked);
        if self.next <= self.acked {
            // Central has more than this process sent (it was sent before a restart).
            self.next = self.acked + 1;
        }
        advanced
    }

    /// Go back to `from` (central's `resendFrom`): everything in flight is forgotten.
    pub fn rewind(&mut self, from: u64) {
        self.next = from.max(1);
        self.in_flight.clear();
    }

    /// After a reconnect, or an ack timeout: resend everything unacknowledged.
    pub fn restart(&mut self) {
        self.rewind(self.acked + 1);
    }

    /// Whether the oldest unacknowledged batch waited longer than [`ACK_TIMEOUT`].
    pub fn timed_out(&self, now: Instant) -> bool {
        self.in_flight
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= ACK_TIMEOUT)
    }
}

/// The next batch starting at `from`. `rows` are outbox rows with `seq >= from`, ascending
/// (at most [`MAX_BATCH_CHANGES`]); `last_written` is the highest seq the outbox ever gave out.
/// Seqs below the first row were deleted after an earlier ack (central asks for them again
/// only after losing its own state): they go as `Noop` placeholders so its cursor can move on.
pub fn assemble(from: u64, rows: Vec<Change>, last_written: u64) -> Vec<Change> {
    let gap_end = rows
        .first()
        .map_or(last_written, |first| first.seq.saturating_sub(1));
    let mut batch: Vec<Change> = (from..=gap_end)
        .take(MAX_BATCH_CHANGES)
        .map(|seq| Change {
            seq,
            id: Uuid::now_v7(),
            body: ChangeBody::Noop,
        })
        .collect();
    let room = MAX_BATCH_CHANGES - batch.len();
    batch.extend(rows.into_iter().take(room));
    let mut bytes = ENVELOPE_BYTES;
    let mut keep = 0;
    for change in &batch {
        bytes += serde_json::to_vec(change).map_or(0, |v| v.len()) + 1;
        // At least one change per batch, whatever its size.
        if keep > 0 && bytes > TARGET_BATCH_BYTES {
            break;
        }
        keep += 1;
    }
    batch.truncate(keep);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seqs: std::ops::RangeInclusive<u64>, size: usize) -> Vec<Change> {
        seqs.map(|seq| Change {
            seq,
            id: Uuid::now_v7(),
            body: ChangeBody::Audit(easyisp_protocol::audit::AuditEvent {
                id: Uuid::now_v7(),
                tenant_id: Uuid::nil(),
                entity: "x".repeat(size),
                entity_id: Uuid::nil(),
                at: chrono::DateTime::UNIX_EPOCH,
                actor: easyisp_protocol::ledger::Actor {
                    kind: easyisp_protocol::ledger::ActorKind::System,
                    id: None,
                    name: "t".into(),
                },
                action: "a".into(),
                changes: Vec::new(),
            }),
        })
        .collect()
    }

    fn seqs(batch: &[Change]) -> Vec<u64> {
        batch.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn batches_stay_under_the_count_and_size_limits() {
        let small: Vec<Change> = (1..=300)
            .map(|seq| Change {
                seq,
                id: Uuid::now_v7(),
                body: ChangeBody::Noop,
            })
            .collect();
        let batch = assemble(1, small, 300);
        assert_eq!(batch.len(), MAX_BATCH_CHANGES);
        let big = assemble(1, rows(1..=50, 10_000), 50);
        let bytes: usize = big
            .iter()
            .map(|c| serde_json::to_vec(c).unwrap().len())
            .sum();
        assert!(
            big.len() < 50 && bytes <= TARGET_BATCH_BYTES,
            "{} changes",
            big.len()
        );
        let huge = assemble(1, rows(1..=2, 100_000), 2);
        assert_eq!(
            seqs(&huge),
            vec![1],
            "one oversized change still goes alone"
        );
    }

    #[test]
    fn changes_deleted_after_an_earlier_ack_are_resent_as_placeholders() {
        let batch = assemble(3, rows(6..=7, 1), 7);
        assert_eq!(seqs(&batch), vec![3, 4, 5, 6, 7]);
        assert!(matches!(batch[0].body, ChangeBody::Noop));
        assert!(matches!(batch[3].body, ChangeBody::Audit(_)));
        assert!(assemble(8, Vec::new(), 7).is_empty(), "nothing to send");
        assert_eq!(seqs(&assemble(6, Vec::new(), 7)), vec![6, 7]);
    }

    #[test]
    fn the_window_is_go_back_n_with_at_most_four_batches() {
        let t0 = Instant::now();
        let mut w = Window::new(10);
        assert_eq!(w.next(), 11);
        for last in [12, 14, 16, 18] {
            assert!(w.has_room());
            w.sent(last, t0);
        }
        assert!(!w.has_room(), "four batches in flight");
        assert!(w.ack(14));
        assert_eq!((w.acked(), w.in_flight(), w.next()), (14, 2, 19));
        assert!(!w.ack(12), "an old ack changes nothing");
        assert!(!w.timed_out(t0 + Duration::from_secs(9)));
        assert!(w.timed_out(t0 + ACK_TIMEOUT));
        w.restart();
        assert_eq!((w.next(), w.in_flight()), (15, 0));
        w.rewind(3);
        assert_eq!(w.next(), 3, "central asked for more than it acknowledged");
        assert!(w.ack(30));
        assert_eq!(w.next(), 31, "central holds more than this process sent");
    }

    /// Model check: the window and the batch cutter over a channel that loses batches and
    /// acks at random, against a model of central's cursor. However the losses fall, central
    /// ends up with every change exactly once, in order, and the outbox ends empty.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Debug, Clone)]
        enum Step {
            Fill,
            Deliver { lose_batch: bool, lose_ack: bool },
            Wait,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                Just(Step::Fill),
                (any::<bool>(), any::<bool>()).prop_map(|(lose_batch, lose_ack)| Step::Deliver {
                    lose_batch,
                    lose_ack
                }),
                Just(Step::Wait),
            ]
        }

        struct World {
            outbox: Vec<u64>,
            last_written: u64,
            window: Window,
            wire: VecDeque<Vec<Change>>,
            central: u64,
            applied: Vec<u64>,
            now: Instant,
        }

        impl World {
            fn fill(&mut self) {
                while self.window.has_room() {
                    let from = self.window.next();
                    let rows: Vec<Change> = self
                        .outbox
                        .iter()
                        .filter(|s| **s >= from)
                        .take(MAX_BATCH_CHANGES)
                        .map(|&seq| Change {
                            seq,
                            id: Uuid::nil(),
                            body: ChangeBody::Noop,
                        })
                        .collect();
                    let batch = assemble(from, rows, self.last_written);
                    let Some(last) = batch.last().map(|c| c.seq) else {
                        return;
                    };
                    self.wire.push_back(batch);
                    self.window.sent(last, self.now);
                }
            }

            fn deliver(&mut self, lose_batch: bool, lose_ack: bool) {
                let Some(batch) = self.wire.pop_front() else {
                    return;
                };
                if lose_batch {
                    return;
                }
                let first = batch[0].seq;
                let (through, resend) = if first > self.central + 1 {
                    (self.central, Some(self.central + 1))
                } else {
                    for change in batch.iter().filter(|c| c.seq > self.central) {
                        self.applied.push(change.seq);
                    }
                    self.central = self.central.max(batch.last().map_or(0, |c| c.seq));
                    (self.central, None)
                };
                if lose_ack {
                    return;
                }
                self.window.ack(through);
                self.outbox.retain(|s| *s > self.window.acked());
                if let Some(from) = resend {
                    self.window.rewind(from);
                }
            }
        }

        proptest! {
            #[test]
            fn every_change_arrives_once_in_order(
                total in 1u64..700,
                steps in proptest::collection::vec(step(), 0..300),
            ) {
                let mut world = World {
                    outbox: (1..=total).collect(),
                    last_written: total,
                    window: Window::new(0),
                    wire: VecDeque::new(),
                    central: 0,
                    applied: Vec::new(),
                    now: Instant::now(),
                };
                for step in steps {
                    match step {
                        Step::Fill => world.fill(),
                        Step::Deliver { lose_batch, lose_ack } => {
                            world.deliver(lose_batch, lose_ack)
                        }
                        Step::Wait => {
                            world.now += ACK_TIMEOUT;
                            if world.window.timed_out(world.now) {
                                world.window.restart();
                            }
                        }
                    }
                }
                // Then the link behaves: timeouts and resends finish the job.
                for _ in 0..10_000 {
                    if world.central == total && world.outbox.is_empty() {
                        break;
                    }
                    world.fill();
                    while !world.wire.is_empty() {
                        world.deliver(false, false);
                    }
                    world.now += ACK_TIMEOUT;
                    if world.window.timed_out(world.now) {
                        world.window.restart();
                    }
                }
                prop_assert_eq!(world.applied, (1..=total).collect::<Vec<_>>());
                prop_assert!(world.outbox.is_empty());
            }
        }
    }
}
