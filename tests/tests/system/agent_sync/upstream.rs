//! Agent → central: the outbox goes up in batches, is deleted when central acknowledges it,
//! and is sent again when central does not, or asks for it.

use super::*;
use easyisp_protocol::envelope::Ack;

fn ack(site: &Site, epoch: &str, through: u64, resend_from: Option<u64>) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        router: site.router,
        epoch: epoch.to_string(),
        acked_through: through,
        resend_from,
        rejected: Vec::new(),
        must_resync: false,
    }
}

fn has_session(batch: &ChangeBatch) -> bool {
    batch
        .changes
        .iter()
        .any(|c| matches!(&c.body, ChangeBody::Session(s) if s.username == "alice"))
}

#[tokio::test]
async fn the_outbox_goes_up_is_deleted_on_ack_and_is_resent_without_one() {
    let site = Site::start().await;
    let epoch = site.online(0).await.epoch.expect("epoch");
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
    site.eventually("alice's secret", || async {
        site.secret("alice").await.is_some()
    })
    .await;

    // alice dials in: the counters task records a session (and her lastIp) in the outbox.
    site.sim
        .control
        .ppp_connect("alice", "AA:BB:CC:00:11:22", Some("10.1.0.9"))
        .await
        .expect("alice dials in");
    let first = site
        .central
        .wait::<ChangeBatch>(SiteTopic::UpChanges, has_session)
        .await
        .unwrap_or_else(|| panic!("alice's session published\n{}", site.log()));
    assert_eq!(first.epoch, epoch);
    assert_eq!(first.router, router);
    assert!(first.changes.len() <= 200);
    assert!(
        site.outbox_depth().await > 0,
        "kept until central acknowledges"
    );

    // No ack: after 10 s the same changes come again.
    let resent = tokio::time::timeout(Duration::from_secs(25), async {
        loop {
            let copies = site
                .central
                .all::<ChangeBatch>(SiteTopic::UpChanges)
                .iter()
                .filter(|b| b.first_seq == first.first_seq)
                .count();
            if copies >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(resent.is_ok(), "resent without an ack\n{}", site.log());

    // Acknowledged: deleted.
    let last = site
        .central
        .all::<ChangeBatch>(SiteTopic::UpChanges)
        .iter()
        .map(|b| b.last_seq)
        .max()
        .expect("batches");
    site.central
        .publish(SiteTopic::DownAck, &ack(&site, &epoch, last, None))
        .await;
    site.eventually("the acknowledged outbox rows deleted", || async {
        site.outbox_depth().await == 0
    })
    .await;

    // Central lost its copy and asks from 1 again: the deleted changes go as placeholders.
    site.central
        .publish(SiteTopic::DownAck, &ack(&site, &epoch, 0, Some(1)))
        .await;
    let again = site
        .central
        .wait::<ChangeBatch>(SiteTopic::UpChanges, |b| {
            b.first_seq == 1 && matches!(b.changes[0].body, ChangeBody::Noop)
        })
        .await
        .unwrap_or_else(|| panic!("resent from 1\n{}", site.log()));
    assert!(again.last_seq >= last, "{again:?}");
    assert!(
        again
            .changes
            .iter()
            .take(last as usize)
            .all(|c| matches!(c.body, ChangeBody::Noop)),
        "{again:?}"
    );
}
