//! Commands: `POST /api/customers/:id/disconnect` round-trips through the router's agent
//! (503 when the agent is offline or silent, 409 without a router), and
//! `live-status?fresh=true` asks the router, falling back to synced sessions.

use super::harness::{Agent, Env};
use chrono::Utc;
use easyisp_protocol::envelope::{
    Command, CommandKind, CommandOutcome, CommandResult, PROTOCOL_VERSION,
};
use easyisp_protocol::session::{SessionKind, SessionRecord};
use easyisp_protocol::topics::SiteTopic;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn answer(agent: &mut Agent, outcome: CommandOutcome) -> Command {
    let command: Command = agent.next(SiteTopic::DownCmd).await;
    let result = CommandResult {
        v: PROTOCOL_VERSION,
        id: command.id,
        outcome,
    };
    agent.publish(SiteTopic::UpCmdResult, &result).await;
    command
}

#[tokio::test]
async fn disconnect_round_trips_through_the_agent_and_fails_clearly_without_it() {
    let env = Env::start().await;
    let router = env.router("POP").await;
    let customer = env.customer("hank", Some(router)).await;
    let loose = env.customer("ivy", None).await;
    let path = format!("/api/customers/{customer}/disconnect");

    let r = env.central.post(&path, &env.admin, json!({})).await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "agent_offline"),
        "{}",
        r.body
    );
    let r = env
        .central
        .post(
            &format!("/api/customers/{loose}/disconnect"),
            &env.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let viewer = env.central.operator(&env.admin, "viewer1", "viewer").await;
    let r = env.central.post(&path, &viewer, json!({})).await;
    assert_eq!(r.status, 403, "{}", r.body);

    let mut agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    agent.sync_up().await;
    let (response, command) = tokio::join!(
        env.central.post(&path, &env.admin, json!({})),
        answer(&mut agent, CommandOutcome::Done),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body, json!({"success": true}));
    assert_eq!(
        command.command,
        CommandKind::Disconnect {
            customer_id: customer
        }
    );
    assert!(command.expires_at > Utc::now());

    // The agent stays silent: 503 after about 5 s.
    let started = Instant::now();
    let r = env.central.post(&path, &env.admin, json!({})).await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "agent_timeout"),
        "{}",
        r.body
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let _ignored: Command = agent.next(SiteTopic::DownCmd).await;

    // The router says it failed: 502 with its reason.
    let (response, _) = tokio::join!(
        env.central.post(&path, &env.admin, json!({})),
        answer(
            &mut agent,
            CommandOutcome::Failed("router unreachable".into())
        ),
    );
    assert_eq!(response.status, 502, "{}", response.body);
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("router unreachable")
    );
}

#[tokio::test]
async fn fresh_live_status_asks_the_router_and_falls_back_to_synced_sessions() {
    let env = Env::start().await;
    let router = env.router("POP").await;
    let customer = env.customer("jack", Some(router)).await;
    let path = format!("/api/customers/{customer}/live-status?fresh=true");
    // No agent: the synced data (none yet).
    let offline = env.get(&path).await;
    assert_eq!(offline["isOnline"], false);

    let mut agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    agent.sync_up().await;
    let session = SessionRecord {
        id: Uuid::now_v7(),
        tenant_id: env.tenant(),
        router_id: router,
        customer_id: Some(customer),
        username: "jack".into(),
        kind: SessionKind::Pppoe,
        session_id: "81a00001".into(),
        start_time: Utc::now() - chrono::Duration::minutes(30),
        stop_time: None,
        input_octets: 1_000_000,
        output_octets: 5_000_000,
        framed_ip: Some("100.64.0.33".into()),
        mac_address: Some("AA:BB:CC:00:11:22".into()),
        terminate_cause: None,
        updated_at: Utc::now(),
    };
    let (response, command) = tokio::join!(
        env.central.get(&path, &env.admin),
        answer(
            &mut agent,
            CommandOutcome::LiveStatus(Some(Box::new(session)))
        ),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        command.command,
        CommandKind::LiveStatus {
            customer_id: customer
        }
    );
    assert_eq!(response.body["isOnline"], true);
    assert_eq!(response.body["session"]["framedIp"], "100.64.0.33");
    assert_eq!(response.body["session"]["outputOctets"], 5_000_000);
    // Without fresh=true nothing is asked.
    let synced = env
        .get(&format!("/api/customers/{customer}/live-status"))
        .await;
    assert_eq!(synced["isOnline"], false);
}
