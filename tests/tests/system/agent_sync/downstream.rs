//! Central → agent: batches applied once, in order, into the replica and onto the router;
//! gaps, other epochs and foreign records; restarts; snapshots.

use super::*;
use easyisp_protocol::envelope::{Ack, SnapshotChunk};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};

fn payment(customer: Uuid, minor: i64, key: &str) -> ChangeBody {
    ChangeBody::Ledger(LedgerEntry {
        id: Uuid::now_v7(),
        tenant_id: TENANT,
        customer_id: customer,
        kind: LedgerKind::Recharge,
        amount: Money::from_minor(minor),
        method: Some("CASH".into()),
        transaction_id: None,
        description: None,
        idempotency_key: Some(key.into()),
        actor: Actor {
            kind: ActorKind::Operator,
            id: None,
            name: "op".into(),
        },
        created_at: Utc::now(),
    })
}

fn acks_through(site: &Site, through: u64) -> usize {
    site.central
        .all::<Ack>(SiteTopic::UpAck)
        .iter()
        .filter(|a| a.acked_through == through && a.resend_from.is_none())
        .count()
}

#[tokio::test]
async fn a_batch_reaches_the_router_once_and_a_gap_asks_for_a_resend() {
    let site = Site::start().await;
    let status = site.online(0).await;
    let epoch = status
        .epoch
        .clone()
        .expect("the online status names the epoch");
    assert_eq!(status.applied_through, Some(0));
    let router = site.router;
    let alice = Uuid::now_v7();

    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                1,
                vec![
                    package(),
                    body(customer(alice, "alice", router)),
                    payment(alice, 50_000, "pay-1"),
                ],
            ),
        )
        .await;
    let ack = site
        .central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 3)
        .await
        .unwrap_or_else(|| panic!("ack through 3\n{}", site.log()));
    assert_eq!(ack.epoch, epoch);
    assert!(
        ack.resend_from.is_none() && ack.rejected.is_empty(),
        "{ack:?}"
    );
    site.eventually("alice's secret with the package's profile", || async {
        site.secret("alice")
            .await
            .is_some_and(|s| s["profile"] == "Home 10" && s["disabled"] == "false")
    })
    .await;

    // The same seqs again, carrying a different payment (a broken resend): skipped by seq.
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                1,
                vec![
                    package(),
                    body(customer(alice, "alice", router)),
                    payment(alice, 50_000, "pay-2"),
                ],
            ),
        )
        .await;
    site.eventually("the duplicate acknowledged again", || async {
        acks_through(&site, 3) >= 2
    })
    .await;
    let totals = site
        .replica()
        .read(move |c| store::ledger_totals(c, alice))
        .await
        .expect("ledger readable");
    assert_eq!(
        totals.wallet_balance,
        Money::from_minor(50_000),
        "applied once"
    );

    // A gap: seq 4 and 5 are missing.
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(router, &epoch, 6, vec![ChangeBody::Noop]),
        )
        .await;
    let gap = site
        .central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.resend_from.is_some())
        .await
        .expect("gap answered");
    assert_eq!((gap.acked_through, gap.resend_from), (3, Some(4)));

    // A batch for another epoch is ignored; the real seq 4 adds bob, seq 5 moves him to
    // another router, seq 6 is a customer of another tenant.
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                "another-epoch",
                4,
                vec![body(customer(Uuid::now_v7(), "carol", router))],
            ),
        )
        .await;
    let bob = Uuid::now_v7();
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(router, &epoch, 4, vec![body(customer(bob, "bob", router))]),
        )
        .await;
    site.eventually("bob's secret", || async {
        site.secret("bob").await.is_some()
    })
    .await;
    let mut moved = customer(bob, "bob", Uuid::now_v7());
    moved.router_id = Some(Lww::new(Some(Uuid::now_v7()), stamp()));
    let mut stranger = customer(Uuid::now_v7(), "mallory", router);
    stranger.tenant_id = Uuid::now_v7();
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(router, &epoch, 5, vec![body(moved), body(stranger)]),
        )
        .await;
    let ack = site
        .central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 6)
        .await
        .expect("ack through 6");
    assert_eq!(ack.rejected.len(), 1, "{ack:?}");
    assert_eq!(ack.rejected[0].seq, 6);
    site.eventually(
        "bob, moved to another router, is gone from this one",
        || async { site.secret("bob").await.is_none() },
    )
    .await;
    assert!(site.secret("alice").await.is_some());
    assert!(site.secret("carol").await.is_none(), "other epoch ignored");
    assert!(
        site.secret("mallory").await.is_none(),
        "other tenant rejected"
    );
}

#[tokio::test]
async fn after_a_restart_the_agent_resumes_from_its_applied_position() {
    let mut site = Site::start().await;
    let first = site.online(0).await;
    let epoch = first.epoch.clone().expect("epoch");
    let router = site.router;
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                1,
                vec![package(), body(customer(Uuid::now_v7(), "alice", router))],
            ),
        )
        .await;
    site.central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 2)
        .await
        .expect("ack through 2");

    // A clean stop says offline itself (same session as its birth).
    site.stop_agent().await;
    let offline = site
        .central
        .wait::<Status>(SiteTopic::Status, |s| !s.online)
        .await
        .expect("offline status on SIGTERM");
    assert_eq!(offline.session, first.session);

    site.spawn_agent();
    let second = site.online(first.session).await;
    assert_eq!(second.epoch.as_deref(), Some(epoch.as_str()));
    assert_eq!(
        second.applied_through,
        Some(2),
        "resumes after what it applied"
    );

    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                3,
                vec![body(customer(Uuid::now_v7(), "bob", router))],
            ),
        )
        .await;
    site.central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 3)
        .await
        .expect("ack through 3");
    site.eventually("bob's secret", || async {
        site.secret("bob").await.is_some()
    })
    .await;
    // An old batch resent after the restart is a duplicate.
    let before = acks_through(&site, 3);
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(router, &epoch, 1, vec![package(), ChangeBody::Noop]),
        )
        .await;
    site.eventually("the old batch acked as applied through 3", || async {
        acks_through(&site, 3) > before
    })
    .await;
}

fn chunk(
    router: Uuid,
    epoch: &str,
    id: Uuid,
    index: u32,
    count: u32,
    items: Vec<ChangeBody>,
) -> SnapshotChunk {
    SnapshotChunk {
        v: PROTOCOL_VERSION,
        router,
        snapshot_id: id,
        epoch: epoch.to_string(),
        index,
        count,
        high_water_seq: 10,
        items,
    }
}

#[tokio::test]
async fn a_snapshot_replaces_the_replica_and_what_it_lacks_leaves_the_router() {
    let site = Site::start().await;
    let epoch = site.online(0).await.epoch.expect("epoch");
    let router = site.router;
    let (alice, bob, carol) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                1,
                vec![
                    package(),
                    body(customer(alice, "alice", router)),
                    body(customer(bob, "bob", router)),
                ],
            ),
        )
        .await;
    site.eventually("alice and bob provisioned", || async {
        site.secret("alice").await.is_some() && site.secret("bob").await.is_some()
    })
    .await;

    // Half of an abandoned snapshot, then a complete one (chunks out of order) without bob.
    site.central
        .publish(
            SiteTopic::DownSnapshot,
            &chunk(router, &epoch, Uuid::now_v7(), 0, 2, vec![package()]),
        )
        .await;
    let id = Uuid::now_v7();
    site.central
        .publish(
            SiteTopic::DownSnapshot,
            &chunk(
                router,
                &epoch,
                id,
                1,
                2,
                vec![body(customer(carol, "carol", router))],
            ),
        )
        .await;
    site.central
        .publish(
            SiteTopic::DownSnapshot,
            &chunk(
                router,
                &epoch,
                id,
                0,
                2,
                vec![package(), body(customer(alice, "alice", router))],
            ),
        )
        .await;
    site.central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 10)
        .await
        .unwrap_or_else(|| panic!("snapshot acked at its high-water mark\n{}", site.log()));
    site.eventually("bob removed, carol added, alice kept", || async {
        site.secret("bob").await.is_none()
            && site.secret("carol").await.is_some()
            && site.secret("alice").await.is_some()
    })
    .await;

    // The stream continues after the high-water mark.
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                router,
                &epoch,
                11,
                vec![body(customer(Uuid::now_v7(), "dave", router))],
            ),
        )
        .await;
    site.eventually("dave provisioned after the snapshot", || async {
        site.secret("dave").await.is_some()
    })
    .await;
}
