//! The agent's reconcile controller and expiry enforcement against the RouterOS simulator.
//! The replica is fed through the agent's own library (sync from central comes later); the
//! router side is the simulator over REST or the classic API.

use chrono::{DateTime, Utc};
use easyisp_agent::config::{Config, RawAgent, RawConfig, RawRouter};
use easyisp_agent::daemon::state;
use easyisp_agent::daemon::{self, Overrides, Shared, reconcile_once};
use easyisp_agent::replica::store;
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::{Hlc, Money, NodeId};
use easyisp_tests::sim_harness::{SessionKind, SimOptions, SimProcess, install_crypto_provider};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x7e);
const PACKAGE: Uuid = Uuid::from_u128(0x9a);

struct Site {
    _dir: tempfile::TempDir,
    config: Config,
    shared: Shared,
}

async fn site(sim: &SimProcess, scheme: &str) -> Site {
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    RawConfig {
        agent: RawAgent {
            router_id: Uuid::now_v7().to_string(),
            tenant_id: TENANT.to_string(),
            data_dir: Some(dir.path().join("data")),
            reconcile_interval_secs: Some(60),
            poll_interval_secs: Some(60),
            mass_cutoff_percent: None,
            mass_cutoff_min: None,
            // This machine's kernel does not report NTP state; tests of the clock guard set
            // their own state instead.
            assume_clock_synchronised: Some(true),
        },
        router: RawRouter {
            url: sim.router_url(scheme),
            password: sim.options.password.clone(),
            timeout_secs: Some(10),
            known_hosts: None,
        },
        central: None,
    }
    .write(&path)
    .expect("config written");
    let config = Config::load(&path).expect("config loads");
    let shared = Shared::open(config.clone()).expect("replica opens");
    Site {
        _dir: dir,
        config,
        shared,
    }
}

fn stamp() -> Hlc {
    Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(0xc0ffee))
}

async fn put_package(site: &Site) {
    let mut p = PackageRecord::empty(PACKAGE, TENANT);
    let s = stamp();
    p.name = Some(Lww::new("Home 10".into(), s));
    p.price = Some(Lww::new(Money::from_minor(200_000), s));
    p.download_speed = Some(Lww::new(Speed::from_mbps(10), s));
    p.upload_speed = Some(Lww::new(Speed::from_mbps(5), s));
    p.validity_days = Some(Lww::new(30, s));
    site.shared
        .replica
        .write(move |tx| store::merge_package(tx, &p).map(drop))
        .await
        .expect("package stored");
}

fn customer(name: &str, kind: ConnectionType, expires: DateTime<Utc>) -> CustomerRecord {
    let mut c = CustomerRecord::empty(Uuid::now_v7(), TENANT);
    let s = stamp();
    c.username = Some(Lww::new(name.into(), s));
    c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), s));
    c.connection_type = Some(Lww::new(kind, s));
    c.package_id = Some(Lww::new(Some(PACKAGE), s));
    c.expires_at = Some(Lww::new(Some(expires), s));
    c
}

async fn put(site: &Site, record: CustomerRecord) {
    site.shared
        .replica
        .write(move |tx| store::merge_customer(tx, &record).map(drop))
        .await
        .expect("stored");
    site.shared.replica_changed();
}

async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn field<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

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
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
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
async fn an_expiring_customer_is_cut_off_within_a_second_of_expiry() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
    let expires = Utc::now() + chrono::Duration::seconds(2);
    put(&site, customer("carol", ConnectionType::Pppoe, expires)).await;
    put(
        &site,
        customer(
            "dave",
            ConnectionType::Pppoe,
            Utc::now() + chrono::Duration::days(3),
        ),
    )
    .await;

    let stop = CancellationToken::new();
    let agent = tokio::spawn(daemon::run(
        site.config.clone(),
        Overrides::default(),
        stop.clone(),
    ));
    let provisioned = eventually(Duration::from_secs(5), || async {
        sim.control
            .secret("carol")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| field(&s, "disabled") == "false")
    })
    .await;
    assert!(provisioned, "carol provisioned and enabled before expiry");
    sim.control
        .ppp_connect("carol", "00:11:22:33:44:66", None)
        .await
        .expect("dials in");

    let cut = eventually(Duration::from_secs(6), || async {
        sim.control
            .secret("carol")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| field(&s, "disabled") == "true")
    })
    .await;
    let noticed = Utc::now();
    assert!(cut, "carol was cut off");
    assert!(noticed >= expires, "not before expiry");
    assert!(
        noticed - expires <= chrono::Duration::milliseconds(1000),
        "cut off {} ms after expiry",
        (noticed - expires).num_milliseconds()
    );
    let dropped = eventually(Duration::from_secs(2), || async {
        sim.control
            .menu("ppp/active")
            .await
            .is_ok_and(|rows| rows.iter().all(|r| field(r, "name") != "carol"))
    })
    .await;
    assert!(dropped, "carol's session was removed");
    assert_eq!(
        field(
            &sim.control.secret("dave").await.unwrap().unwrap(),
            "disabled"
        ),
        "false"
    );
    stop.cancel();
    agent
        .await
        .expect("agent task")
        .expect("agent stopped cleanly");
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
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
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

#[tokio::test]
async fn auto_renew_charges_the_wallet_once_and_keeps_the_customer_online() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
    let expires = Utc::now() + chrono::Duration::seconds(1);
    let mut gina = customer("gina", ConnectionType::Pppoe, expires);
    gina.auto_renew = Some(Lww::new(true, stamp()));
    let gina_id = gina.id;
    put(&site, gina).await;
    let topup = LedgerEntry {
        id: Uuid::now_v7(),
        tenant_id: TENANT,
        customer_id: gina_id,
        kind: LedgerKind::Recharge,
        amount: Money::from_minor(500_000),
        method: Some("CASH".into()),
        transaction_id: None,
        description: None,
        idempotency_key: None,
        actor: Actor {
            kind: ActorKind::Operator,
            id: None,
            name: "cashier".into(),
        },
        created_at: Utc::now(),
    };
    site.shared
        .replica
        .write(move |tx| store::insert_ledger(tx, &topup).map(drop))
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let agent = tokio::spawn(daemon::run(
        site.config.clone(),
        Overrides::default(),
        stop.clone(),
    ));
    let renewed = eventually(Duration::from_secs(5), || async {
        let record = site
            .shared
            .replica
            .read(move |c| store::load_customer(c, gina_id))
            .await
            .ok()
            .flatten();
        record.is_some_and(|r| {
            r.expires()
                .is_some_and(|at| at > expires + chrono::Duration::days(29))
        })
    })
    .await;
    assert!(renewed, "gina's expiry moved one period on");
    let totals = site
        .shared
        .replica
        .read(move |c| store::ledger_totals(c, gina_id))
        .await
        .unwrap();
    assert_eq!(
        totals.wallet_balance,
        Money::from_minor(300_000),
        "charged the package price once"
    );
    assert_eq!(totals.total_spent, Money::from_minor(200_000));
    assert_eq!(
        field(
            &sim.control.secret("gina").await.unwrap().unwrap(),
            "disabled"
        ),
        "false",
        "never cut off"
    );
    stop.cancel();
    agent.await.expect("agent task").expect("agent stopped");
    let outbox = site.shared.replica.read(store::outbox_depth).await.unwrap();
    assert!(
        outbox >= 3,
        "ledger entry, customer change and audit event queued for central"
    );
}

#[tokio::test]
async fn a_clock_that_jumped_backwards_is_reported_and_enforces_only_what_is_provably_due() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
    let now = Utc::now();
    put(
        &site,
        customer(
            "hank",
            ConnectionType::Pppoe,
            now - chrono::Duration::seconds(30),
        ),
    )
    .await;
    // The agent last trusted its clock an hour in the future: the clock has since jumped back.
    site.shared
        .replica
        .write(move |tx| state::set_time(tx, state::LAST_TRUSTED, now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    put(
        &site,
        customer(
            "iris",
            ConnectionType::Pppoe,
            now + chrono::Duration::minutes(10),
        ),
    )
    .await;
    reconcile_once(&site.shared, now).await.expect("pass runs");
    let clock: Option<easyisp_protocol::envelope::ClockState> = site
        .shared
        .replica
        .read(|c| state::get_json(c, state::CLOCK))
        .await
        .unwrap();
    assert_eq!(
        clock,
        Some(easyisp_protocol::envelope::ClockState::JumpedBackwards)
    );
    // Only what is provably expired is enforced: the true time is at least the last trusted
    // time, so hank (expired even by the wrong clock) is cut off; nothing else changes.
    assert_eq!(
        field(
            &sim.control.secret("hank").await.unwrap().unwrap(),
            "disabled"
        ),
        "true"
    );
    assert_eq!(
        field(
            &sim.control.secret("iris").await.unwrap().unwrap(),
            "disabled"
        ),
        "false"
    );
    let last_trusted = site
        .shared
        .replica
        .read(|c| state::get_time(c, state::LAST_TRUSTED))
        .await
        .unwrap();
    assert_eq!(
        last_trusted,
        Some(now + chrono::Duration::hours(1)),
        "a bad clock never moves trust"
    );
}

#[tokio::test]
async fn a_mass_cutoff_is_held_until_confirmed() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
    let now = Utc::now();
    for n in 0..25 {
        put(
            &site,
            customer(
                &format!("m{n:02}"),
                ConnectionType::Pppoe,
                now + chrono::Duration::seconds(10),
            ),
        )
        .await;
    }
    reconcile_once(&site.shared, now)
        .await
        .expect("first pass provisions everyone");
    // Ten seconds later all 25 (100 %) expire at once: held, nobody is cut off.
    let later = now + chrono::Duration::seconds(11);
    reconcile_once(&site.shared, later)
        .await
        .expect("pass runs");
    let secrets = sim.control.menu("ppp/secret").await.unwrap();
    assert!(
        secrets.iter().all(|s| field(s, "disabled") == "false"),
        "held: nobody cut off"
    );
    let hold = site
        .shared
        .replica
        .read(state::held)
        .await
        .unwrap()
        .expect("hold recorded");
    assert_eq!((hold.customers, hold.of_total), (25, 25));

    site.shared
        .replica
        .write(|tx| state::set_json(tx, state::MASS_CUTOFF_CONFIRMED, &true))
        .await
        .unwrap();
    reconcile_once(&site.shared, later)
        .await
        .expect("pass runs");
    let secrets = sim.control.menu("ppp/secret").await.unwrap();
    assert!(
        secrets.iter().all(|s| field(s, "disabled") == "true"),
        "confirmed: all cut off"
    );
    assert!(
        site.shared
            .replica
            .read(state::held)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sessions_and_counters_reach_the_replica_and_survive_a_reconnect() {
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "api").await;
    put_package(&site).await;
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
async fn adopt_lists_without_changing_and_takes_over_with_apply() {
    use easyisp_agent::adopt::adopt;
    use easyisp_agent::routeros::{ConnectOptions, connect};
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("sim starts");
    let site = site(&sim, "rest+http").await;
    put_package(&site).await;
    reconcile_once(&site.shared, Utc::now())
        .await
        .expect("profiles created");
    for (name, profile) in [("old-jane", "Home 10"), ("old-kim", "default")] {
        sim.control
            .add("ppp/secret", serde_json::json!({"name": name, "password": "Old-Pass-77", "profile": profile, "service": "pppoe", "comment": "legacy billing"}))
            .await
            .expect("legacy secret");
    }
    sim.control
        .add(
            "ppp/secret",
            serde_json::json!({"name": "bad name", "password": "x"}),
        )
        .await
        .expect("odd secret");
    let router = connect(
        &site.config.router_url,
        ConnectOptions::new(site.config.router_password.clone()),
    )
    .await
    .expect("connects");
    let before = sim.control.state().await.unwrap();

    let listed = adopt(&site.config, router.as_ref(), false)
        .await
        .expect("lists");
    assert_eq!(listed.candidates.len(), 3);
    assert_eq!(listed.adopted, 0);
    let jane = listed
        .candidates
        .iter()
        .find(|c| c.name == "old-jane")
        .unwrap();
    assert_eq!(
        jane.package,
        Some(PACKAGE),
        "profile name matches the package"
    );
    assert!(
        listed
            .candidates
            .iter()
            .find(|c| c.name == "bad name")
            .unwrap()
            .problem
            .is_some()
    );
    assert_eq!(
        sim.control.state().await.unwrap(),
        before,
        "listing changes nothing"
    );

    let applied = adopt(&site.config, router.as_ref(), true)
        .await
        .expect("adopts");
    assert_eq!(applied.adopted, 2);
    let jane = site
        .shared
        .replica
        .read(|c| store::customer_by_username(c, "old-jane"))
        .await
        .unwrap()
        .expect("in replica");
    let secret = sim.control.secret("old-jane").await.unwrap().unwrap();
    assert_eq!(field(&secret, "comment"), format!("easyisp:{}", jane.id));
    assert_eq!(
        field(&secret, "password"),
        "Old-Pass-77",
        "the customer keeps working"
    );

    let report = reconcile_once(&site.shared, Utc::now())
        .await
        .expect("reconcile");
    assert!(report.is_clean(), "{report:?}");
    let secret = sim.control.secret("old-jane").await.unwrap().unwrap();
    assert_eq!(
        (field(&secret, "disabled"), field(&secret, "profile")),
        ("false", "Home 10")
    );
    assert!(
        sim.control.secret("bad name").await.unwrap().is_some(),
        "not adoptable: left alone"
    );
    let again = adopt(&site.config, router.as_ref(), true)
        .await
        .expect("idempotent");
    assert_eq!(
        again.candidates.len(),
        1,
        "only the unadoptable one is left"
    );
}

#[tokio::test]
async fn counters_of_a_routeros_6_router_survive_the_32_bit_wrap() {
    let sim = SimProcess::start(SimOptions::default().version("6.49.10"))
        .await
        .expect("sim starts");
    let site = site(&sim, "api").await;
    put_package(&site).await;
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
