//! Presence: a router is pending until its agent connects, online after a birth, offline
//! after its Will; a late Will of an older connection and messages of unknown routers are
//! ignored.

use super::harness::{Agent, Env, WAIT, eventually, status};
use easyisp_protocol::envelope::{ClockState, PROTOCOL_VERSION, Telemetry, encode};
use easyisp_protocol::topics::SiteTopic;
use uuid::Uuid;

fn telemetry(router: Uuid, customers: u64) -> Telemetry {
    Telemetry {
        v: PROTOCOL_VERSION,
        router,
        at: chrono::Utc::now(),
        router_reachable: true,
        customers,
        active_sessions: 3,
        outbox_depth: 0,
        last_reconcile: None,
        clock: ClockState::Synchronised,
        mass_cutoff_hold: None,
    }
}

#[tokio::test]
async fn routers_show_births_and_wills_and_ignore_stale_wills() {
    let env = Env::start().await;
    let router = env.router("POP West").await;
    let path = format!("/api/routers/{router}");
    let view = env.get(&path).await;
    assert_eq!(
        (view["status"].as_str(), &view["lastSeen"]),
        (Some("pending"), &serde_json::Value::Null)
    );

    let mut agent = Agent::connect(&env, router, "epoch-a", 5, 0).await;
    agent.sync_up().await;
    eventually(WAIT, "router online", || async {
        let v = env.get(&path).await;
        v["status"] == "online"
            && v["lastSeen"].is_string()
            && v["sync"]["agentVersion"] == "test-agent"
    })
    .await;

    // A Will of an older connection arrives late: ignored. The telemetry published after it
    // is handled after it, so once it shows, the stale status has been seen too.
    let late_will = status(router, false, 4, None, None);
    env.publish_as_other(
        SiteTopic::Status.for_router(router),
        encode(&late_will),
        true,
    )
    .await;
    agent
        .publish(SiteTopic::Telemetry, &telemetry(router, 42))
        .await;
    eventually(WAIT, "telemetry stored", || async {
        env.get(&path).await["sync"]["telemetry"]["customers"] == 42
    })
    .await;
    assert_eq!(env.get(&path).await["status"], "online");
    let list = env.get("/api/routers").await;
    assert_eq!(list["routers"][0]["status"], "online");

    // The agent dies: its Will sets the router offline.
    agent.crash();
    eventually(WAIT, "router offline after the Will", || async {
        env.get(&path).await["status"] == "offline"
    })
    .await;

    // A router central does not know is ignored (and logged).
    let stranger = Uuid::now_v7();
    env.publish_as_other(
        SiteTopic::Status.for_router(stranger),
        encode(&status(stranger, true, 1, Some("e"), Some(0))),
        false,
    )
    .await;
    eventually(WAIT, "unknown router logged", || async {
        env.central.log().contains("does not know")
    })
    .await;
}
