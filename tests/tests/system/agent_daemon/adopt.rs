//! Adopting router objects that EasyISP does not own.

use super::*;

#[tokio::test]
async fn adopt_lists_without_changing_and_takes_over_with_apply() {
    use easyisp_agent::adopt::adopt;
    use easyisp_agent::routeros::{ConnectOptions, connect};
    let (sim, site) = started(SimOptions::default(), "rest+http").await;
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
