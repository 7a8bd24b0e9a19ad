//! A change to one customer reaches the router through a targeted pass (only that customer's
//! objects are read and written); a package change, or a periodic pass, looks at everything.
//! Hand-made drift on another customer's secret shows which kind of pass ran: only a full
//! pass repairs it.

use super::{Pop, PopOptions, text};
use serde_json::json;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_customer_change_touches_only_that_customer_and_a_package_change_repairs_all() {
    // No periodic full pass during the test: only the start-up pass and a package change.
    let pop = Pop::start_with(PopOptions {
        agent_args: vec!["--reconcile-interval".into(), "1h".into()],
        ..PopOptions::default()
    })
    .await;
    let alice = pop.customer("alice", json!({})).await;
    pop.customer("bob", json!({})).await;
    pop.wait_for("both secrets on the router", CONVERGE, || async {
        pop.secret("alice").await.is_some() && pop.secret("bob").await.is_some()
    })
    .await;
    // Someone edits bob's secret by hand at the router, and adds a secret of their own.
    let bob_secret = pop.secret("bob").await.expect("bob's secret");
    pop.sim
        .control
        .force_set(
            "ppp/secret",
            text(&bob_secret, ".id"),
            json!({"password": "Hand-Edited-1"}),
        )
        .await
        .expect("hand edit");
    pop.sim
        .control
        .add(
            "ppp/secret",
            json!({"name": "walk-in", "password": "x-1", "service": "pppoe"}),
        )
        .await
        .expect("unowned secret");

    // Alice's new password reaches the router; bob's drift is left for the next full pass.
    let r = pop
        .central
        .put(
            &format!("/api/customers/{alice}"),
            &pop.token,
            json!({"password": "Quartz-Owl-77"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    pop.wait_for("alice's new password on the router", CONVERGE, || async {
        pop.secret("alice")
            .await
            .is_some_and(|s| text(&s, "password") == "Quartz-Owl-77")
    })
    .await;
    // Give a (wrong) full pass time to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bob_secret = pop.secret("bob").await.expect("bob's secret");
    assert_eq!(
        text(&bob_secret, "password"),
        "Hand-Edited-1",
        "a change to alice must not rewrite bob's secret\n{}",
        pop.logs()
    );
    let walk_in = pop.secret("walk-in").await.expect("unowned secret kept");
    assert_eq!(text(&walk_in, "password"), "x-1");

    // A package change is a full pass: the profile changes and bob's secret is repaired.
    let r = pop
        .central
        .put(
            &format!("/api/packages/{}", pop.package),
            &pop.token,
            json!({"downloadSpeed": 20}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    pop.wait_for(
        "bob's secret repaired by the full pass",
        CONVERGE,
        || async {
            pop.secret("bob")
                .await
                .is_some_and(|s| text(&s, "password") == "Zebra-Lamp-42")
        },
    )
    .await;
    let profile = pop
        .sim
        .control
        .find("ppp/profile", "name", "10 Mbps Home")
        .await
        .expect("profile lookup")
        .expect("package profile");
    assert_eq!(text(&profile, "rate-limit"), "5M/20M");
    assert!(pop.secret("walk-in").await.is_some(), "unowned secret kept");
}
