//! Upstream: an agent's batch is applied once (a duplicate changes nothing), a gap is
//! answered with `resendFrom`, a change central does not accept is rejected alone, and the
//! site's edits show in the customer's audit with the agent as the actor.

use super::harness::{Agent, Env};
use chrono::Utc;
use easyisp_protocol::CustomerRecord;
use easyisp_protocol::envelope::{Ack, Change, ChangeBatch, ChangeBody, PROTOCOL_VERSION};
use easyisp_protocol::hlc::{Hlc, NodeId};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::topics::SiteTopic;
use easyisp_protocol::{Money, PackageRecord};
use uuid::Uuid;

fn batch(agent: &Agent, first: u64, bodies: Vec<ChangeBody>) -> ChangeBatch {
    let changes: Vec<Change> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Change {
            seq: first + i as u64,
            id: Uuid::now_v7(),
            body,
        })
        .collect();
    ChangeBatch {
        v: PROTOCOL_VERSION,
        router: agent.router,
        epoch: agent.epoch.clone(),
        first_seq: first,
        last_seq: first + changes.len() as u64 - 1,
        changes,
    }
}

#[tokio::test]
async fn an_upstream_batch_is_applied_once_and_a_gap_asks_for_a_resend() {
    let env = Env::start().await;
    let router = env.router("POP East").await;
    let customer = env.customer("gina", Some(router)).await;
    let mut agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    agent.sync_up().await;

    let renewal = LedgerEntry {
        id: Uuid::now_v7(),
        tenant_id: env.tenant(),
        customer_id: customer,
        kind: LedgerKind::Recharge,
        amount: Money::from_minor(50_000),
        method: Some("MPESA".into()),
        transaction_id: Some("QWE123".into()),
        description: None,
        idempotency_key: Some("site-recharge-1".into()),
        actor: Actor {
            kind: ActorKind::Agent,
            id: Some(router),
            name: "POP East".into(),
        },
        created_at: Utc::now(),
    };
    let mut seen = CustomerRecord::empty(customer, env.tenant());
    let stamp = Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(0xA6E));
    seen.last_ip = Some(Lww::new(Some("100.64.1.20".into()), stamp));
    let first = batch(
        &agent,
        1,
        vec![
            ChangeBody::Ledger(renewal.clone()),
            ChangeBody::Customer(Box::new(seen)),
        ],
    );
    agent.publish(SiteTopic::UpChanges, &first).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!((ack.acked_through, ack.resend_from), (2, None));
    assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);

    // The same batch again (the agent missed the ack): acked, not applied twice.
    agent.publish(SiteTopic::UpChanges, &first).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!(ack.acked_through, 2);
    let detail = env.get(&format!("/api/customers/{customer}")).await;
    assert_eq!(detail["walletBalance"], 500);
    assert_eq!(detail["lastIp"], "100.64.1.20");

    // A batch after a gap is refused with the place to resend from.
    let later = batch(&agent, 5, vec![ChangeBody::Noop]);
    agent.publish(SiteTopic::UpChanges, &later).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!((ack.acked_through, ack.resend_from), (2, Some(3)));

    // Packages belong to central: rejected, and the stream still moves on.
    let package = PackageRecord::empty(Uuid::now_v7(), env.tenant());
    let bad = batch(
        &agent,
        3,
        vec![ChangeBody::Package(Box::new(package)), ChangeBody::Noop],
    );
    agent.publish(SiteTopic::UpChanges, &bad).await;
    let ack: Ack = agent.next(SiteTopic::DownAck).await;
    assert_eq!(ack.acked_through, 4);
    assert_eq!(ack.rejected.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);

    // The site's edits are in the customer's audit, by the agent; nothing was echoed back.
    let audit = env.get(&format!("/api/customers/{customer}/audit")).await;
    let by_agent: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"]["kind"] == "agent" && e["actor"]["id"] == router.to_string())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        by_agent.contains(&"recharge") && by_agent.contains(&"update"),
        "{audit}"
    );
    assert_eq!(env.outbox_rows(router), 0);
    let payments = env
        .get(&format!("/api/customers/{customer}/payments"))
        .await;
    assert_eq!(payments["total"], 1);
}
