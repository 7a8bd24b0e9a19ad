//! The "done when": an operator creates a customer at central and, with nothing else
//! done, the router has the secret with the right speed profile; suspending it drops the
//! session; sessions and presence come back to central.

use super::{Pop, text};
use easyisp_tests::sim_harness::SessionKind;
use serde_json::json;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_customer_created_at_central_appears_on_the_router_with_its_speed_profile() {
    let pop = Pop::start().await;
    let id = pop.customer("alice", json!({})).await;

    pop.wait_for("alice's secret on the router", CONVERGE, || async {
        pop.secret("alice").await.is_some()
    })
    .await;
    let secret = pop.secret("alice").await.expect("secret");
    assert_eq!(text(&secret, "service"), "pppoe");
    assert_eq!(text(&secret, "profile"), "10 Mbps Home");
    assert_eq!(text(&secret, "password"), "Zebra-Lamp-42");
    assert_eq!(text(&secret, "comment"), format!("easyisp:{id}"));
    assert_ne!(text(&secret, "disabled"), "true");
    let profile = pop
        .sim
        .control
        .find("ppp/profile", "name", "10 Mbps Home")
        .await
        .expect("profile lookup")
        .expect("package profile on the router");
    assert_eq!(text(&profile, "rate-limit"), "5M/10M");

    // The router shows online at central once the agent is connected.
    let router = pop.router.clone();
    pop.wait_for("router online at central", CONVERGE, || async {
        let r = pop
            .central
            .get(&format!("/api/routers/{router}"), &pop.token)
            .await;
        r.body["status"] == "online" && r.body["lastSeen"].is_string()
    })
    .await;
}

#[tokio::test]
async fn suspending_at_central_drops_the_live_session_and_activating_restores_it() {
    let pop = Pop::start().await;
    let id = pop.customer("bob", json!({})).await;
    pop.wait_for("bob's secret", CONVERGE, || async {
        pop.secret("bob").await.is_some()
    })
    .await;
    pop.sim
        .control
        .set_redial_delay(None)
        .await
        .expect("no automatic redial");
    pop.sim
        .control
        .ppp_connect("bob", "AA:BB:CC:00:00:01", None)
        .await
        .expect("bob dials in");

    let r = pop
        .central
        .put_empty(&format!("/api/customers/{id}/suspend"), &pop.token)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    pop.wait_for("bob disabled and dropped", CONVERGE, || async {
        let disabled = pop
            .secret("bob")
            .await
            .is_some_and(|s| text(&s, "disabled") == "true");
        let active = pop.sim.control.menu("ppp/active").await.unwrap_or_default();
        disabled && !active.iter().any(|a| text(a, "name") == "bob")
    })
    .await;

    let r = pop
        .central
        .put_empty(&format!("/api/customers/{id}/activate"), &pop.token)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    pop.wait_for("bob enabled again", CONVERGE, || async {
        pop.secret("bob")
            .await
            .is_some_and(|s| text(&s, "disabled") != "true")
    })
    .await;
}

#[tokio::test]
async fn sessions_and_usage_reach_central_and_the_will_marks_the_router_offline() {
    let mut pop = Pop::start().await;
    let id = pop.customer("carol", json!({})).await;
    pop.wait_for("carol's secret", CONVERGE, || async {
        pop.secret("carol").await.is_some()
    })
    .await;
    pop.sim
        .control
        .ppp_connect("carol", "AA:BB:CC:00:00:02", Some("10.20.0.7"))
        .await
        .expect("carol dials in");
    pop.sim
        .control
        .traffic(SessionKind::Ppp, "carol", 1_000, 50_000)
        .await
        .expect("traffic");

    pop.wait_for("carol's usage at central", CONVERGE, || async {
        let r = pop
            .central
            .get(&format!("/api/customers/{id}/live-status"), &pop.token)
            .await;
        r.body["isOnline"] == true
            && r.body["session"]["inputOctets"].as_u64().unwrap_or(0) >= 1_000
            && r.body["session"]["outputOctets"].as_u64().unwrap_or(0) >= 50_000
    })
    .await;
    let detail = pop
        .central
        .get(&format!("/api/customers/{id}"), &pop.token)
        .await;
    assert_eq!(detail.body["lastIp"], "10.20.0.7", "{}", detail.body);

    pop.kill_agent().await;
    let router = pop.router.clone();
    pop.wait_for("router offline at central", CONVERGE, || async {
        let r = pop
            .central
            .get(&format!("/api/routers/{router}"), &pop.token)
            .await;
        r.body["status"] == "offline"
    })
    .await;
}
