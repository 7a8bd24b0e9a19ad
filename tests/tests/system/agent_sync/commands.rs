//! Central's commands: hang up, live status, resync, confirm a mass cut-off; expired ones are
//! ignored.

use super::*;
use easyisp_protocol::envelope::{
    Command, CommandKind, CommandOutcome, CommandResult, ResyncRequest,
};

fn command(kind: CommandKind, valid_for: chrono::Duration) -> Command {
    Command {
        v: PROTOCOL_VERSION,
        id: Uuid::now_v7(),
        expires_at: Utc::now() + valid_for,
        command: kind,
    }
}

async fn result(site: &Site, id: Uuid) -> CommandOutcome {
    site.central
        .wait::<CommandResult>(SiteTopic::UpCmdResult, |r| r.id == id)
        .await
        .unwrap_or_else(|| panic!("a result for command {id}\n{}", site.log()))
        .outcome
}

#[tokio::test]
async fn commands_hang_up_read_live_status_and_expire() {
    let site = Site::start().await;
    let epoch = site.online(0).await.epoch.expect("epoch");
    let alice = Uuid::now_v7();
    site.central
        .publish(
            SiteTopic::DownChanges,
            &batch(
                site.router,
                &epoch,
                1,
                vec![package(), body(customer(alice, "alice", site.router))],
            ),
        )
        .await;
    site.eventually("alice's secret", || async {
        site.secret("alice").await.is_some()
    })
    .await;
    site.sim
        .control
        .ppp_connect("alice", "AA:BB:CC:00:11:22", Some("10.1.0.9"))
        .await
        .expect("alice dials in");
    let minute = chrono::Duration::minutes(1);

    let expired = command(
        CommandKind::Disconnect { customer_id: alice },
        chrono::Duration::seconds(-1),
    );
    site.central.publish(SiteTopic::DownCmd, &expired).await;

    let live = command(CommandKind::LiveStatus { customer_id: alice }, minute);
    site.central.publish(SiteTopic::DownCmd, &live).await;
    match result(&site, live.id).await {
        CommandOutcome::LiveStatus(Some(session)) => {
            assert_eq!(session.username, "alice");
            assert_eq!(session.customer_id, Some(alice));
            assert_eq!(session.framed_ip.as_deref(), Some("10.1.0.9"));
            assert!(session.stop_time.is_none());
        }
        other => panic!("live status: {other:?}"),
    }
    assert!(
        site.sim.control.menu("ppp/active").await.unwrap().len() == 1,
        "the expired disconnect was ignored"
    );

    let hang_up = command(CommandKind::Disconnect { customer_id: alice }, minute);
    site.central.publish(SiteTopic::DownCmd, &hang_up).await;
    assert_eq!(result(&site, hang_up.id).await, CommandOutcome::Done);
    let active = site.sim.control.menu("ppp/active").await.unwrap();
    assert!(active.is_empty(), "alice's session dropped: {active:?}");

    let unknown = command(
        CommandKind::Disconnect {
            customer_id: Uuid::now_v7(),
        },
        minute,
    );
    site.central.publish(SiteTopic::DownCmd, &unknown).await;
    assert!(matches!(
        result(&site, unknown.id).await,
        CommandOutcome::Failed(_)
    ));

    let resync = command(CommandKind::Resync, minute);
    site.central.publish(SiteTopic::DownCmd, &resync).await;
    assert_eq!(result(&site, resync.id).await, CommandOutcome::Done);
    let request = site
        .central
        .wait::<ResyncRequest>(SiteTopic::UpResync, |_| true)
        .await
        .expect("the agent asks for a snapshot");
    assert_eq!(request.epoch, epoch);

    let confirm = command(CommandKind::ConfirmMassCutoff, minute);
    site.central.publish(SiteTopic::DownCmd, &confirm).await;
    assert!(
        matches!(result(&site, confirm.id).await, CommandOutcome::Failed(m) if m.contains("no mass cut-off")),
        "nothing held"
    );
    assert!(
        site.central
            .all::<CommandResult>(SiteTopic::UpCmdResult)
            .iter()
            .all(|r| r.id != expired.id),
        "an expired command gets no answer"
    );
}
