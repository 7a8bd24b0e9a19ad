//! Fault tests: kill -9 of either program in the middle of a batch, the broker killed and
//! restarted, the agent offline during a burst, edits on both sides of a partition,
//! duplicated and reordered deliveries, and an agent whose clock is hours ahead. After each,
//! the replica equals central for every field, ledger sums agree, and nothing was applied
//! twice (the router holds each secret once, balances are not doubled).

use super::{Pop, PopOptions};
use easyisp_protocol::customer::CustomerRecord;
use easyisp_tests::sim_harness::SessionKind;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

/// Every customer of this POP as central's API shows it, by id.
async fn central_customers(pop: &Pop) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut page = 1;
    loop {
        let r = pop
            .central
            .get(
                &format!("/api/customers?page={page}&pageSize=100"),
                &pop.token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rows = r.body["customers"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            let id = row["id"].as_str().unwrap_or_default().to_string();
            let detail = pop
                .central
                .get(&format!("/api/customers/{id}"), &pop.token)
                .await;
            out.insert(id, detail.body);
        }
        if rows.len() < 100 {
            return out;
        }
        page += 1;
    }
}

/// The agent's replica, read straight from its SQLite file (read-only; the agent may run).
type ReplicaView = (BTreeMap<String, CustomerRecord>, BTreeMap<String, i64>);

/// Fails (the caller polls again) while the agent has not created its tables yet.
fn replica(pop: &Pop) -> rusqlite::Result<ReplicaView> {
    let path = pop.dir.path().join("data").join("replica.db");
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut customers = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT id, record FROM customers")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (id, text) = row?;
        let record: CustomerRecord = serde_json::from_str(&text).expect("replica record");
        customers.insert(id, record);
    }
    let mut sums = BTreeMap::new();
    let mut stmt =
        conn.prepare("SELECT customer_id, SUM(amount_minor) FROM ledger GROUP BY customer_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (id, sum) = row?;
        sums.insert(id, sum);
    }
    Ok((customers, sums))
}

fn opt_text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The first difference between central and the replica, if any.
async fn difference(pop: &Pop) -> Option<String> {
    let central = central_customers(pop).await;
    let (replica, sums) = match replica(pop) {
        Ok(view) => view,
        Err(e) => return Some(format!("the replica cannot be read yet: {e}")),
    };
    let live: Vec<&String> = replica
        .iter()
        .filter(|(_, r)| {
            !r.is_deleted() && r.router().map(|u| u.to_string()) == Some(pop.router.clone())
        })
        .map(|(id, _)| id)
        .collect();
    if live.len() != central.len() {
        return Some(format!(
            "central has {} customers, the replica {} live ones",
            central.len(),
            live.len()
        ));
    }
    for (id, c) in &central {
        let Some(r) = replica.get(id) else {
            return Some(format!("{id} missing from the replica"));
        };
        let pairs: [(&str, Option<String>, Option<String>); 8] = [
            (
                "username",
                opt_text(&c["username"]),
                Some(r.username().to_string()),
            ),
            (
                "name",
                opt_text(&c["name"]),
                r.name.as_ref().map(|l| l.value.clone()),
            ),
            (
                "phone",
                opt_text(&c["phone"]),
                r.phone.as_ref().and_then(|l| l.value.clone()),
            ),
            (
                "packageId",
                opt_text(&c["packageId"]),
                r.package().map(|u| u.to_string()),
            ),
            (
                "expiresAt",
                c["expiresAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis().to_string()),
                r.expires().map(|t| t.timestamp_millis().to_string()),
            ),
            (
                "suspended",
                Some((c["status"] == "suspended").to_string()),
                Some(r.suspended.as_ref().is_some_and(|l| l.value).to_string()),
            ),
            (
                "lastIp",
                opt_text(&c["lastIp"]),
                r.last_ip.as_ref().and_then(|l| l.value.clone()),
            ),
            (
                "autoRenew",
                Some(c["autoRenew"].as_bool().unwrap_or(false).to_string()),
                Some(r.auto_renews().to_string()),
            ),
        ];
        for (field, at_central, at_site) in pairs {
            if at_central != at_site {
                return Some(format!(
                    "{id} {field}: central {at_central:?}, replica {at_site:?}"
                ));
            }
        }
        let balance = c["walletBalance"].as_f64().unwrap_or(0.0);
        let site = *sums.get(id).unwrap_or(&0) as f64 / 100.0;
        if (balance - site).abs() > 0.001 {
            return Some(format!(
                "{id} balance: central {balance}, replica ledger {site}"
            ));
        }
    }
    // The router holds each live PPPoE customer's secret exactly once.
    let secrets = pop.sim.control.menu("ppp/secret").await.unwrap_or_default();
    for (id, c) in &central {
        let owned = secrets
            .iter()
            .filter(|s| s["comment"].as_str() == Some(&format!("easyisp:{id}")))
            .count();
        if c["connectionType"] == "PPPOE" && owned != 1 {
            return Some(format!(
                "{id} ({}) has {owned} secrets on the router",
                c["username"]
            ));
        }
    }
    None
}

/// Waits until the replica equals central and the router holds each live customer's secret
/// exactly once.
async fn assert_converged(pop: &Pop) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = difference(pop).await;
        if last.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(diff) = last {
        panic!("the replica never matched central: {diff}\n{}", pop.logs());
    }
}

async fn recharge(pop: &Pop, id: &str, amount: u32) {
    let r = pop
        .central
        .post(
            &format!("/api/customers/{id}/recharge"),
            &pop.token,
            json!({"amount": amount, "description": "test"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn kill_9_of_the_agent_mid_batch_loses_and_doubles_nothing() {
    let mut pop = Pop::start().await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let id = pop.customer(&format!("ka{n:03}"), json!({})).await;
        recharge(&pop, &id, 100).await;
        ids.push(id);
        if n == 20 {
            pop.kill_agent().await;
        }
    }
    pop.spawn_agent(&[]);
    assert_converged(&pop).await;
}

#[tokio::test]
async fn kill_9_of_central_mid_batch_loses_and_doubles_nothing() {
    let mut pop = Pop::start().await;
    for n in 0..30 {
        let id = pop.customer(&format!("kc{n:03}"), json!({})).await;
        recharge(&pop, &id, 250).await;
    }
    pop.central.kill();
    pop.central.restart().await;
    pop.token = pop.central.admin().await;
    for n in 30..40 {
        pop.customer(&format!("kc{n:03}"), json!({})).await;
    }
    assert_converged(&pop).await;
}

#[tokio::test]
async fn the_broker_killed_and_restarted_by_central_loses_nothing() {
    let pop = Pop::start().await;
    pop.customer("br000", json!({})).await;
    pop.wait_for("first secret", CONVERGE, || async {
        pop.secret("br000").await.is_some()
    })
    .await;
    let pid_file = pop
        .central
        .data_dir()
        .join("mosquitto")
        .join("mosquitto.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("broker pid file");
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for n in 1..20 {
        pop.customer(&format!("br{n:03}"), json!({})).await;
    }
    assert_converged(&pop).await;
}

#[tokio::test]
async fn an_agent_offline_during_a_burst_of_changes_catches_up() {
    let mut pop = Pop::start().await;
    pop.kill_agent().await;
    for n in 0..60 {
        let id = pop.customer(&format!("of{n:03}"), json!({})).await;
        let r = pop
            .central
            .put(
                &format!("/api/customers/{id}"),
                &pop.token,
                json!({"name": format!("Renamed {n}")}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        recharge(&pop, &id, 50).await;
    }
    pop.spawn_agent(&[]);
    assert_converged(&pop).await;
}

#[tokio::test]
async fn edits_on_both_sides_of_a_partition_all_survive() {
    let pop = Pop::start_with(PopOptions {
        proxy: true,
        ..PopOptions::default()
    })
    .await;
    let x = pop.customer("px", json!({})).await;
    let y = pop.customer("py", json!({})).await;
    pop.wait_for("both secrets", CONVERGE, || async {
        pop.secret("px").await.is_some() && pop.secret("py").await.is_some()
    })
    .await;

    pop.proxy.as_ref().expect("proxy").partition();
    // Site side: x dials in with an address (lastIp, a session); central side: y suspended,
    // x renamed.
    pop.sim
        .control
        .ppp_connect("px", "AA:BB:CC:00:00:09", Some("10.9.9.9"))
        .await
        .expect("px dials in");
    pop.sim
        .control
        .traffic(SessionKind::Ppp, "px", 5_000, 70_000)
        .await
        .expect("traffic");
    let r = pop
        .central
        .put_empty(&format!("/api/customers/{y}/suspend"), &pop.token)
        .await;
    assert_eq!(r.status, 200);
    let r = pop
        .central
        .put(
            &format!("/api/customers/{x}"),
            &pop.token,
            json!({"name": "Renamed while partitioned"}),
        )
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pop.secret("py")
            .await
            .is_some_and(|s| s["disabled"] != "true"),
        "the suspension cannot have crossed the partition"
    );

    pop.proxy.as_ref().expect("proxy").heal();
    pop.wait_for("px's lastIp at central", CONVERGE, || async {
        let r = pop
            .central
            .get(&format!("/api/customers/{x}"), &pop.token)
            .await;
        r.body["lastIp"] == "10.9.9.9"
    })
    .await;
    pop.wait_for("py disabled on the router", CONVERGE, || async {
        pop.secret("py")
            .await
            .is_some_and(|s| s["disabled"] == "true")
    })
    .await;
    assert_converged(&pop).await;
}

/// Central's own broker login, read from its data directory, to replay captured traffic.
fn central_endpoint(pop: &Pop) -> easyisp_mqtt::Endpoint {
    let data = pop.central.data_dir();
    let config = std::fs::read_to_string(&pop.config).expect("agent config");
    let url = config
        .lines()
        .find(|l| l.trim_start().starts_with("mqtt_url"))
        .and_then(|l| l.split('"').nth(1))
        .expect("mqtt_url")
        .parse()
        .expect("broker URL");
    easyisp_mqtt::Endpoint {
        url,
        username: "easyisp-central".into(),
        password: easyisp_protocol::Secret::new(
            std::fs::read_to_string(data.join("mosquitto").join("central.secret"))
                .expect("central's broker secret")
                .trim()
                .to_string(),
        ),
        ca_pem: Some(std::fs::read_to_string(data.join("tls").join("ca.crt")).expect("CA")),
    }
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_are_applied_once() {
    let pop = Pop::start().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let site = format!("easyisp/v1/site/{}", pop.router);
    let mut link = easyisp_mqtt::connect(
        &central_endpoint(&pop),
        easyisp_mqtt::Session {
            client_id: format!("replayer-{}", uuid::Uuid::new_v4()),
            keep_alive: Duration::from_secs(30),
            will: None,
            subscriptions: vec![
                (
                    format!("{site}/down/changes"),
                    easyisp_mqtt::QoS::AtLeastOnce,
                ),
                (format!("{site}/up/changes"), easyisp_mqtt::QoS::AtLeastOnce),
            ],
        },
        cancel.clone(),
    )
    .expect("replayer connects");
    // Wait for the subscription before any traffic.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), link.events.recv()).await {
            Ok(Some(easyisp_mqtt::LinkEvent::Connected)) => break,
            Ok(Some(_)) => continue,
            other => panic!("replayer did not connect: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    for n in 0..5 {
        let id = pop.customer(&format!("dup{n}"), json!({})).await;
        recharge(&pop, &id, 300).await;
    }
    pop.sim
        .control
        .ppp_connect("dup0", "AA:BB:CC:00:00:0D", Some("10.1.1.1"))
        .await
        .ok();
    assert_converged(&pop).await;

    let mut captured = Vec::new();
    while let Ok(event) = link.events.try_recv() {
        if let easyisp_mqtt::LinkEvent::Message { topic, payload } = event {
            captured.push((topic, payload));
        }
    }
    assert!(
        captured.iter().any(|(t, _)| t.ends_with("/down/changes")),
        "no downstream batch was captured"
    );
    // Every batch again, newest first: duplicates, and out of order.
    for (topic, payload) in captured.iter().rev() {
        link.client
            .publish(
                topic.clone(),
                easyisp_mqtt::QoS::AtLeastOnce,
                false,
                payload.clone(),
            )
            .await
            .expect("replayed");
    }
    let id = pop.customer("dup-after", json!({})).await;
    recharge(&pop, &id, 300).await;
    assert_converged(&pop).await;
    for (_, c) in central_customers(&pop).await {
        assert_eq!(c["walletBalance"].as_f64(), Some(300.0), "{c}");
    }
    cancel.cancel();
}

#[tokio::test]
async fn an_agent_clock_hours_ahead_cannot_override_later_edits_at_central() {
    let mut pop = Pop::start().await;
    let id = pop
        .customer(
            "skew",
            json!({"autoRenew": true, "expiresAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    recharge(&pop, &id, 5_000).await;
    pop.wait_for("skew's secret", CONVERGE, || async {
        pop.secret("skew").await.is_some()
    })
    .await;
    // The agent restarts with its clock three hours ahead: to it the customer has expired, so
    // it auto-renews (a ledger entry and a new expiry stamped three hours in the future).
    pop.kill_agent().await;
    pop.spawn_agent_skewed("+3h", &[]);
    pop.wait_for("the renewal at central", CONVERGE, || async {
        let r = pop
            .central
            .get(&format!("/api/customers/{id}"), &pop.token)
            .await;
        r.body["walletBalance"]
            .as_f64()
            .is_some_and(|b| b < 5_000.0)
    })
    .await;
    // The operator then sets the expiry: it must win on both sides.
    let target = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let r = pop
        .central
        .put(
            &format!("/api/customers/{id}/expiry"),
            &pop.token,
            json!({"expiresAt": target}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_converged(&pop).await;
    let r = pop
        .central
        .get(&format!("/api/customers/{id}"), &pop.token)
        .await;
    let expires = chrono::DateTime::parse_from_rfc3339(r.body["expiresAt"].as_str().unwrap())
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(expires, target);
}
