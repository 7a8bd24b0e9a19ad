//! Provisioning, suspension, ownership, drift repair and an unreachable router.

use super::*;

#[tokio::test]
async fn customers_are_provisioned_with_their_package_speeds() {
    for scheme in ["rest+http", "api"] {
        let sim = SimProcess::start(SimOptions::default())
            .await
            .expect("sim starts");
        let site = site(&sim, scheme).await;
        put_package(&site).await;
        let later = Utc::now() + chrono::Duration::days(30);
        let alice = customer("alice", ConnectionType::Pppoe, later);
        let bob = customer("bob", ConnectionType::Hotspot, later);
        let alice_id = alice.id;
        put(&site, alice).await;
        put(&site, bob).await;

        let report = reconcile_once(&site.shared, Utc::now())
            .await
            .expect("reconcile runs");
        assert!(report.is_clean(), "{scheme}: {report:?}");

        let profile = sim
            .control
            .find("ppp/profile", "name", "Home 10")
            .await
            .unwrap()
            .expect("PPP profile");
        assert_eq!(
            field(&profile, "rate-limit"),
            "5M/10M",
            "{scheme}: upload/download as rx/tx"
        );
        let hotspot_profile = sim
            .control
            .find("ip/hotspot/user/profile", "name", "Home 10")
            .await
            .unwrap()
            .expect("hotspot profile");
        assert_eq!(field(&hotspot_profile, "rate-limit"), "5M/10M");
        let secret = sim.control.secret("alice").await.unwrap().expect("secret");
        assert_eq!(field(&secret, "profile"), "Home 10");
        assert_eq!(field(&secret, "service"), "pppoe");
        assert_eq!(field(&secret, "disabled"), "false");
        assert_eq!(field(&secret, "password"), "Zebra-Lamp-42");
        assert_eq!(field(&secret, "comment"), format!("easyisp:{alice_id}"));
        let user = sim
            .control
            .hotspot_user("bob")
            .await
            .unwrap()
            .expect("hotspot user");
        assert_eq!(field(&user, "profile"), "Home 10");

        let again = reconcile_once(&site.shared, Utc::now())
            .await
            .expect("reconcile runs");
        assert_eq!(again.planned, 0, "{scheme}: a second pass changes nothing");
    }
}

#[tokio::test]
async fn suspending_a_customer_disables_the_secret_and_drops_the_session() {
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
    let alice = customer(
        "alice",
        ConnectionType::Pppoe,
        Utc::now() + chrono::Duration::days(30),
    );
    put(&site, alice.clone()).await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("provisioned");
    sim.control
        .ppp_connect("alice", "00:11:22:33:44:55", Some("10.0.0.7"))
        .await
        .expect("dials in");
    assert_eq!(sim.control.menu("ppp/active").await.unwrap().len(), 1);

    let mut suspended = CustomerRecord::empty(alice.id, TENANT);
    suspended.suspended = Some(Lww::new(true, stamp()));
    put(&site, suspended).await;
    let report = reconcile_once(&site.shared, Utc::now())
        .await
        .expect("reconcile runs");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        field(
            &sim.control.secret("alice").await.unwrap().unwrap(),
            "disabled"
        ),
        "true"
    );
    assert!(
        sim.control.menu("ppp/active").await.unwrap().is_empty(),
        "the session was dropped"
    );

    let mut active = CustomerRecord::empty(alice.id, TENANT);
    active.suspended = Some(Lww::new(false, stamp()));
    put(&site, active).await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("reconcile runs");
    assert_eq!(
        field(
            &sim.control.secret("alice").await.unwrap().unwrap(),
            "disabled"
        ),
        "false"
    );
}

#[tokio::test]
async fn objects_the_agent_does_not_own_are_left_alone_and_hand_edits_to_its_own_are_repaired() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    sim.control
        .add("ppp/secret", serde_json::json!({"name": "legacy", "password": "old-pass-1", "comment": "from the old billing"}))
        .await
        .expect("legacy secret added by hand");
    let legacy_before = sim.control.secret("legacy").await.unwrap().unwrap();
    put_package(&site).await;
    put(
        &site,
        customer(
            "erin",
            ConnectionType::Pppoe,
            Utc::now() + chrono::Duration::days(3),
        ),
    )
    .await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("provisioned");

    let erin = sim.control.secret("erin").await.unwrap().unwrap();
    let id = field(&erin, ".id").to_string();
    sim.control
        .set(
            "ppp/secret",
            &id,
            serde_json::json!({"password": "changed-at-router", "disabled": "yes"}),
        )
        .await
        .expect("hand edit");
    let report = reconcile_once(&site.shared, Utc::now())
        .await
        .expect("reconcile runs");
    assert!(report.applied >= 1, "{report:?}");
    let erin = sim.control.secret("erin").await.unwrap().unwrap();
    assert_eq!(
        (field(&erin, "password"), field(&erin, "disabled")),
        ("Zebra-Lamp-42", "false")
    );
    assert_eq!(
        sim.control.secret("legacy").await.unwrap().unwrap(),
        legacy_before,
        "not ours: untouched"
    );
}

#[tokio::test]
async fn an_unreachable_router_loses_nothing_and_converges_when_back() {
    use easyisp_tests::sim_harness::Service;
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
    sim.control
        .stop_service(Service::Rest)
        .await
        .expect("REST stopped");
    put(
        &site,
        customer(
            "frank",
            ConnectionType::Pppoe,
            Utc::now() + chrono::Duration::days(3),
        ),
    )
    .await;
    let report = reconcile_once(&site.shared, Utc::now())
        .await
        .expect("pass runs");
    assert!(report.aborted.is_some(), "router down: pass incomplete");

    sim.control
        .start_service(Service::Rest)
        .await
        .expect("REST back");
    let report = reconcile_once(&site.shared, Utc::now())
        .await
        .expect("pass runs");
    assert!(report.is_clean(), "{report:?}");
    assert!(sim.control.secret("frank").await.unwrap().is_some());
}
