//! Downstream: a first birth gets a snapshot, API changes stream live, acks delete outbox
//! rows, gaps and silence are answered with resends, births resume, new epochs resnapshot.

use super::harness::{Agent, Env, WAIT, eventually, usernames};
use easyisp_protocol::envelope::{Ack, ChangeBody};
use easyisp_protocol::topics::SiteTopic;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_first_birth_gets_a_snapshot_and_api_changes_stream_live() {
    let env = Env::start().await;
    let router = env.router("POP North").await;
    env.customer("early", Some(router)).await;
    let mut agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!((ack.acked_through, ack.epoch.as_str()), (0, "epoch-a"));
    let (high_water, items) = agent.snapshot().await;
    assert_eq!(usernames(&items), ["early"]);
    // Passwords travel to the agent (and only to it).
    let ChangeBody::Customer(early) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(early.password_secret().unwrap().expose(), "Zebra-Lamp-42");
    agent.ack(high_water, None).await;
    // The snapshot is acknowledged once the router shows nothing pending.
    eventually(WAIT, "snapshot acknowledged", || async {
        let r = env.get(&format!("/api/routers/{router}")).await;
        r["status"] == "online" && r["sync"]["pendingChanges"] == 0
    })
    .await;

    let started = Instant::now();
    let late = env.customer("late", Some(router)).await;
    let batch = agent.batch().await;
    let latency = started.elapsed();
    assert_eq!(
        (batch.first_seq, batch.last_seq),
        (high_water + 1, high_water + 1)
    );
    assert_eq!(usernames(batch.changes.iter().map(|c| &c.body)), ["late"]);
    assert!(
        latency < Duration::from_secs(2),
        "API → batch took {latency:?}"
    );
    // A later change of the same customer carries its current state.
    let r = env
        .central
        .put(
            &format!("/api/customers/{late}/suspend"),
            &env.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let batch = agent.batch().await;
    let ChangeBody::Customer(record) = &batch.changes[0].body else {
        panic!("{batch:?}")
    };
    assert!(record.suspended.as_ref().unwrap().value);
    assert_eq!(env.outbox_rows(router), 2);
    agent.ack(batch.last_seq, None).await;
    eventually(WAIT, "acked rows deleted", || async {
        env.outbox_rows(router) == 0
    })
    .await;
    // Packages go to every synced router of the tenant.
    let p = env
        .central
        .post(
            "/api/packages",
            &env.admin,
            json!({"name": "Home 10", "price": 1500, "downloadSpeed": 10, "uploadSpeed": 5, "validityDays": 30}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let batch = agent.batch().await;
    assert!(
        matches!(&batch.changes[0].body, ChangeBody::Package(p) if p.package_name() == "Home 10")
    );
}

#[tokio::test]
async fn gaps_and_silence_are_resent_and_births_resume_where_the_agent_is() {
    let env = Env::start().await;
    let router = env.router("POP").await;
    let mut agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    agent.sync_up().await;
    for name in ["c1", "c2", "c3"] {
        env.customer(name, Some(router)).await;
    }
    let mut last = 0;
    while last < 3 {
        last = agent.batch().await.last_seq;
    }
    // The agent saw a gap after 1: central resends from 2.
    agent.ack(1, Some(2)).await;
    let resent = agent.batch().await;
    assert_eq!(resent.first_seq, 2);
    assert_eq!(env.outbox_rows(router), 2);

    // A new connection that applied everything resumes after 3, without a snapshot.
    agent.shutdown().await;
    let mut agent = Agent::connect(&env, router, "epoch-a", 2, 3).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!(ack.acked_through, 0);
    eventually(WAIT, "the birth counts as an ack", || async {
        env.outbox_rows(router) == 0
    })
    .await;
    env.customer("c4", Some(router)).await;
    let batch = agent.batch().await;
    assert_eq!(batch.first_seq, 4);
    assert!(
        agent
            .try_next::<serde_json::Value>(SiteTopic::DownSnapshot, Duration::from_millis(300))
            .await
            .is_none(),
        "no snapshot for a resumed stream"
    );
    // No ack: the batch comes again after the 10 s timeout.
    let again = agent
        .try_next::<easyisp_protocol::envelope::ChangeBatch>(
            SiteTopic::DownChanges,
            Duration::from_secs(15),
        )
        .await
        .expect("resent after the ack timeout");
    assert_eq!((again.first_seq, again.last_seq), (4, 4));
}

#[tokio::test]
async fn a_new_epoch_gets_a_snapshot_with_every_customer_of_its_router() {
    let env = Env::start().await;
    let (north, south) = (env.router("North").await, env.router("South").await);
    env.customer("n1", Some(north)).await;
    let gone = env.customer("n2", Some(north)).await;
    env.customer("s1", Some(south)).await;
    let mut agent = Agent::connect(&env, north, "epoch-a", 7, 0).await;
    agent.sync_up().await;
    let r = env
        .central
        .delete(&format!("/api/customers/{gone}"), &env.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    env.customer("n3", Some(north)).await;
    // The agent's database was replaced: a new epoch, its session counter restarted.
    agent.shutdown().await;
    let mut agent = Agent::connect(&env, north, "epoch-b", 1, 0).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!((ack.epoch.as_str(), ack.acked_through), ("epoch-b", 0));
    let (high_water, items) = agent.snapshot().await;
    let mut names = usernames(&items);
    names.sort();
    assert_eq!(
        names,
        ["n1", "n2", "n3"],
        "deleted ones too, not another router's"
    );
    let deleted = items
        .iter()
        .any(|i| matches!(i, ChangeBody::Customer(c) if c.username() == "n2" && c.is_deleted()));
    assert!(deleted);
    assert_eq!(high_water, 2, "the two changes since the first snapshot");
    agent.ack(high_water, None).await;
    eventually(WAIT, "rows covered by the snapshot deleted", || async {
        env.outbox_rows(north) == 0
    })
    .await;
}
