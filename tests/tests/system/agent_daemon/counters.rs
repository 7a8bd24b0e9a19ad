//! Sessions and counters: start, update, reconnect, and the 32-bit wrap of RouterOS 6.

use super::*;

#[tokio::test]
async fn sessions_and_counters_reach_the_replica_and_survive_a_reconnect() {
    let (sim, site) = started(SimOptions::default(), "api").await;
    put(
        &site,
        customer(
            "ivy",
            ConnectionType::Pppoe,
            Utc::now() + chrono::Duration::days(3),
        ),
    )
    .await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("provisioned");
    sim.control
        .ppp_connect("ivy", "AA:BB:CC:00:11:22", Some("10.1.0.9"))
        .await
        .expect("dials in");
    sim.control
        .traffic(SessionKind::Ppp, "ivy", 1_000, 50_000)
        .await
        .expect("traffic");

    let stop = CancellationToken::new();
    let overrides = Overrides {
        poll_interval: Some(Duration::from_millis(200)),
        ..Overrides::default()
    };
    let agent = tokio::spawn(daemon::run(site.config.clone(), overrides, stop.clone()));
    let seen = eventually(Duration::from_secs(5), || async {
        let sessions = site
            .shared
            .replica
            .read(store::active_sessions)
            .await
            .unwrap_or_default();
        sessions.iter().any(|(r, ..)| {
            r.username == "ivy" && r.input_octets == 1_000 && r.output_octets == 50_000
        })
    })
    .await;
    assert!(seen, "session with upload 1000 / download 50000");
    let ip = site
        .shared
        .replica
        .read(|c| store::customer_by_username(c, "ivy"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ip.last_ip.and_then(|f| f.value).as_deref(),
        Some("10.1.0.9")
    );

    // Reconnect: the old session stops with its totals, a new one counts from zero.
    sim.control
        .hang_up(SessionKind::Ppp, "ivy")
        .await
        .expect("hang up");
    sim.control
        .ppp_connect("ivy", "AA:BB:CC:00:11:22", Some("10.1.0.10"))
        .await
        .expect("dials in again");
    sim.control
        .traffic(SessionKind::Ppp, "ivy", 10, 20)
        .await
        .expect("traffic");
    let rolled = eventually(Duration::from_secs(5), || async {
        let sessions = site
            .shared
            .replica
            .read(store::active_sessions)
            .await
            .unwrap_or_default();
        sessions
            .iter()
            .any(|(r, ..)| r.username == "ivy" && r.input_octets == 10 && r.output_octets == 20)
    })
    .await;
    assert!(rolled, "a new session counted from zero");
    stop.cancel();
    agent.await.expect("agent task").expect("agent stopped");
    assert!(
        site.shared.replica.read(store::outbox_depth).await.unwrap() >= 3,
        "sessions queued for central"
    );
}

#[tokio::test]
async fn counters_of_a_routeros_6_router_survive_the_32_bit_wrap() {
    let (sim, site) = started(SimOptions::default().version("6.49.10"), "api").await;
    put(
        &site,
        customer(
            "jo",
            ConnectionType::Pppoe,
            Utc::now() + chrono::Duration::days(3),
        ),
    )
    .await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("provisioned over the API");
    sim.control
        .ppp_connect("jo", "AA:BB:CC:00:11:33", Some("10.1.0.11"))
        .await
        .expect("dials in");
    let near_top = u64::from(u32::MAX) - 999;
    sim.control
        .set_counters(SessionKind::Ppp, "jo", 0, near_top)
        .await
        .expect("counters set");

    let stop = CancellationToken::new();
    let overrides = Overrides {
        poll_interval: Some(Duration::from_millis(200)),
        ..Overrides::default()
    };
    let agent = tokio::spawn(daemon::run(site.config.clone(), overrides, stop.clone()));
    let download = |min: u64| {
        let replica = site.shared.replica.clone();
        async move {
            let sessions = replica
                .read(store::active_sessions)
                .await
                .unwrap_or_default();
            sessions
                .iter()
                .any(|(r, ..)| r.username == "jo" && r.output_octets >= min)
        }
    };
    assert!(
        eventually(Duration::from_secs(5), || download(near_top)).await,
        "first reading seen"
    );
    // 5,000 more bytes: the router's 32-bit counter wraps to 4,000.
    sim.control
        .traffic(SessionKind::Ppp, "jo", 0, 5_000)
        .await
        .expect("traffic");
    let wrapped = eventually(Duration::from_secs(5), || download(near_top + 5_000)).await;
    stop.cancel();
    agent.await.expect("agent task").expect("agent stopped");
    assert!(wrapped, "the 64-bit total kept growing across the wrap");
}
