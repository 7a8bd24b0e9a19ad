//! Exact expiry, auto-renewal, the clock guard and the mass cut-off hold.

use super::*;

#[tokio::test]
async fn an_expiring_customer_is_cut_off_within_a_second_of_expiry() {
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
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
async fn auto_renew_charges_the_wallet_once_and_keeps_the_customer_online() {
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
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
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
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
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
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
