//! Presence and health: the retained online status after connecting, telemetry, the Last Will
//! when the agent is killed, and `status` showing the sync state.

use super::*;
use easyisp_protocol::envelope::{Ack, Telemetry};

#[tokio::test]
async fn a_killed_agent_is_marked_offline_by_its_last_will() {
    let mut site = Site::start().await;
    let online = site.online(0).await;
    assert_eq!(online.router, site.router);
    assert!(online.agent_version.is_some() && online.started_at.is_some());
    let telemetry = site
        .central
        .wait::<Telemetry>(SiteTopic::Telemetry, |t| t.router_reachable)
        .await
        .unwrap_or_else(|| panic!("telemetry with the router reachable\n{}", site.log()));
    assert_eq!(telemetry.router, site.router);

    site.kill_agent().await;
    let will = site
        .central
        .wait::<Status>(SiteTopic::Status, |s| !s.online)
        .await
        .expect("the broker publishes the Last Will");
    assert_eq!(
        will.session, online.session,
        "the Will names the connection it ends"
    );

    // A new connection gets a new session number, so a late Will can be told apart.
    site.spawn_agent();
    site.online(online.session).await;
}

#[tokio::test]
async fn status_shows_the_connection_and_the_positions() {
    let site = Site::start().await;
    let epoch = site.online(0).await.epoch.expect("epoch");
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                site.router,
                &epoch,
                1,
                vec![
                    package(),
                    body(customer(Uuid::now_v7(), "alice", site.router)),
                ],
            ),
        )
        .await;
    site.central
        .wait::<Ack>(SiteTopic::UpAck, |a| a.acked_through == 2)
        .await
        .expect("ack");
    let output = Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(&site.config)
        .args(["status", "--json"])
        .output()
        .await
        .expect("status runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let sync = &report["sync"];
    assert_eq!(sync["link"]["connected"], true, "{report}");
    assert_eq!(sync["appliedThrough"], 2, "{report}");
    assert_eq!(sync["epoch"], epoch.as_str());
    assert_eq!(report["customers"], 1);

    let text = Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(&site.config)
        .arg("status")
        .output()
        .await
        .expect("status runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sync:             connected to"), "{text}");
    assert!(text.contains("applied through change 2"), "{text}");
}

#[tokio::test]
async fn without_the_broker_expiry_is_still_enforced_and_the_agent_reconnects_later() {
    let mut site = Site::start().await;
    let first = site.online(0).await;
    let epoch = first.epoch.clone().expect("epoch");
    let mut alice = customer(Uuid::now_v7(), "alice", site.router);
    alice.expires_at = Some(Lww::new(
        Some(Utc::now() + chrono::Duration::seconds(3)),
        stamp(),
    ));
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(site.router, &epoch, 1, vec![package(), body(alice)]),
        )
        .await;
    site.eventually("alice provisioned and enabled", || async {
        site.secret("alice")
            .await
            .is_some_and(|s| s["disabled"] == "false")
    })
    .await;

    site.broker.kill();
    site.eventually(
        "alice cut off at expiry with central unreachable",
        || async {
            site.secret("alice")
                .await
                .is_some_and(|s| s["disabled"] == "true")
        },
    )
    .await;

    site.broker.restart().expect("broker restarts");
    let back = site.online(first.session).await;
    assert_eq!(back.applied_through, Some(2));
}
