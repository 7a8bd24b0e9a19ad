//! Subscriber behaviour of the simulator (routeros.md §4.3–4.7, §7.3–7.8, §7.19): sessions
//! and their dynamic interfaces/queues, disable ≠ disconnect, redial after removal, counter
//! resets on reconnect and reboot, 32-bit wrap on v6, hotspot cookies and cumulative user
//! counters, and speed with 10,000 secrets and 10,000 hotspot users.

use std::time::{Duration, Instant};

use easyisp_tests::sim_harness::{SessionKind, SimOptions, SimProcess, attr, eventually};
use serde_json::{Value, json};

async fn sim(version: &str) -> SimProcess {
    SimProcess::start(SimOptions::default().version(version))
        .await
        .expect("simulator starts")
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_session_creates_its_interface_and_queue_and_disable_does_not_drop_it() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    c.add(
        "ppp/profile",
        json!({"name":"10M","rate-limit":"5M/10M","address-list":"pppoe-users"}),
    )
    .await
    .unwrap();
    c.add(
        "ppp/secret",
        json!({"name":"cust1","password":"p","profile":"10M"}),
    )
    .await
    .unwrap();
    let info = c
        .ppp_connect("cust1", "AA:BB:CC:00:00:01", Some("100.64.0.5"))
        .await
        .unwrap();
    let active = c
        .find("ppp/active", "name", "cust1")
        .await
        .unwrap()
        .expect("active row");
    assert_eq!(s(&active, ".id"), info.active_id);
    assert_eq!(s(&active, "address"), "100.64.0.5");
    assert_eq!(s(&active, "caller-id"), "AA:BB:CC:00:00:01");
    assert!(
        active.get("bytes").is_none(),
        "no counters in /ppp/active on v7"
    );
    let iface = c
        .find("interface", "name", "<pppoe-cust1>")
        .await
        .unwrap()
        .expect("dynamic interface");
    assert_eq!(
        (s(&iface, "type"), s(&iface, "dynamic")),
        ("pppoe-in".into(), "true".into())
    );
    let queue = c
        .find("queue/simple", "name", "<pppoe-cust1>")
        .await
        .unwrap()
        .expect("dynamic queue");
    assert_eq!(s(&queue, "max-limit"), "5000000/10000000");

    c.traffic(SessionKind::Ppp, "cust1", 1_000, 50_000)
        .await
        .unwrap();
    let iface = c
        .find("interface", "name", "<pppoe-cust1>")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s(&iface, "rx-byte"), s(&iface, "tx-byte")),
        ("1000".into(), "50000".into())
    );

    let mut api = sim.api_login().await.unwrap();
    let r = api
        .call(&["/ppp/active/print", "=stats=", "?name=cust1"])
        .await
        .unwrap();
    assert_eq!(
        attr(&r[0], "bytes"),
        Some(b"50000/1000".as_slice()),
        "stats are download/upload"
    );
    api.call(&["/ppp/secret/set", "=numbers=cust1", "=disabled=yes"])
        .await
        .unwrap();
    let r = api
        .call(&["/ppp/active/print", "?name=cust1"])
        .await
        .unwrap();
    assert_eq!(
        r[0][0], b"!re",
        "disabling the secret leaves the session up"
    );
    let entry = c
        .find("ip/firewall/address-list", "list", "pppoe-users")
        .await
        .unwrap()
        .expect("dynamic address-list entry while connected");
    assert_eq!(s(&entry, "address"), "100.64.0.5");
    assert_eq!(s(&entry, "dynamic"), "true");
    c.hang_up(SessionKind::Ppp, "cust1").await.unwrap();
    assert!(
        c.find("ip/firewall/address-list", "list", "pppoe-users")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        c.redial_now().await.unwrap(),
        0,
        "a subscriber who hung up does not redial"
    );
}

#[tokio::test]
async fn removed_sessions_redial_with_fresh_ids_and_zero_counters_unless_disabled() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    c.add("ppp/secret", json!({"name":"cust1"})).await.unwrap();
    let first = c
        .ppp_connect("cust1", "AA:BB:CC:00:00:01", None)
        .await
        .unwrap();
    c.traffic(SessionKind::Ppp, "cust1", 10, 20).await.unwrap();
    let mut api = sim.api_login().await.unwrap();
    let rm = format!("=.id={}", first.active_id);
    let r = api.call(&["/ppp/active/remove", &rm]).await.unwrap();
    assert_eq!(r[0][0], b"!done");
    assert!(
        c.find("ppp/active", "name", "cust1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.find("interface", "name", "<pppoe-cust1>")
            .await
            .unwrap()
            .is_none()
    );
    let secret = c.secret("cust1").await.unwrap().unwrap();
    assert_eq!(s(&secret, "last-disconnect-reason"), "nas-request");
    assert_eq!(s(&secret, "last-caller-id"), "AA:BB:CC:00:00:01");
    // Removing it again: the row vanished.
    let r = api.call(&["/ppp/active/remove", &rm]).await.unwrap();
    assert_eq!(attr(&r[0], "message"), Some(b"no such item".as_slice()));

    assert_eq!(c.redial_now().await.unwrap(), 1);
    let again = c
        .find("ppp/active", "name", "cust1")
        .await
        .unwrap()
        .expect("redialled");
    assert_ne!(s(&again, ".id"), first.active_id);
    assert_ne!(s(&again, "session-id"), first.session_id.clone().unwrap());
    let iface = c
        .find("interface", "name", "<pppoe-cust1>")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(Some(s(&iface, ".id")), first.interface_id);
    assert_eq!(s(&iface, "rx-byte"), "0");

    // Cut-off in the right order: disable, then remove; the CPE cannot come back.
    api.call(&["/ppp/secret/disable", "=numbers=cust1"])
        .await
        .unwrap();
    let rm = format!("=.id={}", s(&again, ".id"));
    api.call(&["/ppp/active/remove", &rm]).await.unwrap();
    c.redial_now().await.unwrap();
    assert!(
        c.find("ppp/active", "name", "cust1")
            .await
            .unwrap()
            .is_none()
    );
    // It keeps trying, so re-enabling brings it back.
    api.call(&["/ppp/secret/enable", "=numbers=cust1"])
        .await
        .unwrap();
    c.redial_now().await.unwrap();
    assert!(
        c.find("ppp/active", "name", "cust1")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn timed_redial_happens_after_the_configured_delay() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    c.set_redial_delay(Some(100)).await.unwrap();
    c.add("ppp/secret", json!({"name":"cust1"})).await.unwrap();
    let info = c
        .ppp_connect("cust1", "AA:BB:CC:00:00:01", None)
        .await
        .unwrap();
    c.remove("ppp/active", &info.active_id).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        c.find("ppp/active", "name", "cust1")
            .await
            .unwrap()
            .is_some()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reboot_renumbers_ids_drops_sessions_and_zeroes_counters() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    let secret_id = c.add("ppp/secret", json!({"name":"cust1"})).await.unwrap();
    let addr_id = c
        .add(
            "ip/firewall/address-list",
            json!({"list":"expired","address":"10.0.0.1"}),
        )
        .await
        .unwrap();
    c.ppp_connect("cust1", "AA:BB:CC:00:00:01", None)
        .await
        .unwrap();
    c.traffic(SessionKind::Ppp, "cust1", 5, 5).await.unwrap();
    let mut api = sim.api_login().await.unwrap();
    c.reboot().await.unwrap();
    assert!(
        api.call(&["/system/identity/print"]).await.is_err(),
        "reboot drops connections"
    );
    let secret = c.secret("cust1").await.unwrap().unwrap();
    assert_ne!(s(&secret, ".id"), secret_id);
    assert_eq!(s(&secret, "last-disconnect-reason"), "reboot");
    let entry = c
        .find("ip/firewall/address-list", "list", "expired")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(s(&entry, ".id"), addr_id);
    assert!(c.menu("ppp/active").await.unwrap().is_empty());
    let ether = c
        .find("interface", "name", "ether1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s(&ether, "rx-byte"), "0");
    let res = c.menu("system/resource").await.unwrap();
    assert!(s(&res[0], "uptime").ends_with('s'));
    c.redial_now().await.unwrap();
    let iface = c
        .find("interface", "name", "<pppoe-cust1>")
        .await
        .unwrap()
        .expect("back after reboot");
    assert_eq!(s(&iface, "tx-byte"), "0");
}

#[tokio::test]
async fn v6_interface_counters_wrap_at_2_pow_32_and_v7_do_not() {
    for (v, expect) in [("6.49.10", "99"), ("7.16", "4294967395")] {
        let sim = sim(v).await;
        let c = &sim.control;
        c.add("ppp/secret", json!({"name":"cust1"})).await.unwrap();
        c.ppp_connect("cust1", "AA:BB:CC:00:00:01", None)
            .await
            .unwrap();
        c.set_counters(SessionKind::Ppp, "cust1", 0, (1u64 << 32) - 1)
            .await
            .unwrap();
        c.traffic(SessionKind::Ppp, "cust1", 0, 100).await.unwrap();
        let iface = c
            .find("interface", "name", "<pppoe-cust1>")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s(&iface, "tx-byte"), expect, "version {v}");
        if v.starts_with('6') {
            let secret = c.secret("cust1").await.unwrap().unwrap();
            assert!(secret.get("last-logged-out").is_none());
            let res = c.menu("system/clock").await.unwrap();
            assert!(s(&res[0], "date").contains('/'), "old date format on v6");
        }
    }
}

#[tokio::test]
async fn hotspot_cookies_log_users_back_in_and_user_counters_accumulate() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    c.add(
        "ip/hotspot/user/profile",
        json!({"name":"1H","rate-limit":"512k/1M"}),
    )
    .await
    .unwrap();
    c.add(
        "ip/hotspot/user",
        json!({"name":"u1","password":"p","profile":"1H","limit-uptime":"01:00:00"}),
    )
    .await
    .unwrap();
    let info = c
        .hotspot_login("u1", "02:00:00:00:00:09", Some("10.5.50.2"))
        .await
        .unwrap();
    let active = c
        .find("ip/hotspot/active", "user", "u1")
        .await
        .unwrap()
        .unwrap();
    assert!(active.get("session-time-left").is_some());
    assert_eq!(s(&active, "login-by"), "http-chap");
    assert!(
        c.find("ip/hotspot/cookie", "user", "u1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        c.find("queue/simple", "name", "<hotspot-u1>")
            .await
            .unwrap()
            .is_some()
    );
    c.traffic(SessionKind::Hotspot, "u1", 100, 1000)
        .await
        .unwrap();

    // Removing only the active entry: the MAC cookie logs the user straight back in.
    c.remove("ip/hotspot/active", &info.active_id)
        .await
        .unwrap();
    c.redial_now().await.unwrap();
    let back = c
        .find("ip/hotspot/active", "user", "u1")
        .await
        .unwrap()
        .expect("cookie login");
    assert_eq!(s(&back, "login-by"), "cookie");
    assert_eq!(s(&back, "bytes-out"), "0");
    c.traffic(SessionKind::Hotspot, "u1", 1, 1).await.unwrap();
    let user = c.hotspot_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (s(&user, "bytes-in"), s(&user, "bytes-out")),
        ("101".into(), "1001".into())
    );

    // Suspension done right: disable, remove cookie, remove active.
    let mut api = sim.api_login().await.unwrap();
    api.call(&["/ip/hotspot/user/disable", "=numbers=u1"])
        .await
        .unwrap();
    let cookie = c
        .find("ip/hotspot/cookie", "user", "u1")
        .await
        .unwrap()
        .unwrap();
    api.call(&[
        "/ip/hotspot/cookie/remove",
        &format!("=.id={}", s(&cookie, ".id")),
    ])
    .await
    .unwrap();
    api.call(&[
        "/ip/hotspot/active/remove",
        &format!("=.id={}", s(&back, ".id")),
    ])
    .await
    .unwrap();
    c.redial_now().await.unwrap();
    assert!(c.menu("ip/hotspot/active").await.unwrap().is_empty());
    let r = api
        .call(&["/ip/hotspot/user/reset-counters", "=numbers=u1"])
        .await
        .unwrap();
    assert_eq!(r[0][0], b"!done");
    assert_eq!(
        s(&c.hotspot_user("u1").await.unwrap().unwrap(), "bytes-in"),
        "0"
    );
}

#[tokio::test]
async fn ten_thousand_customers_read_quickly_in_one_request_per_menu() {
    let sim = sim("7.16").await;
    let c = &sim.control;
    let secrets: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("cust{i:05}"), "password":"p", "service":"pppoe", "comment": format!("easyisp:{i}")}))
        .collect();
    let users: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("hs{i:05}"), "password":"p"}))
        .collect();
    let t = Instant::now();
    assert_eq!(
        c.bulk_add("ppp/secret", secrets).await.unwrap().len(),
        10_000
    );
    assert_eq!(
        c.bulk_add("ip/hotspot/user", users).await.unwrap().len(),
        10_000
    );
    let load = t.elapsed();

    let mut api = sim.api_login().await.unwrap();
    let t = Instant::now();
    let r = api
        .call(&[
            "/ppp/secret/print",
            "=.proplist=.id,name,profile,disabled,comment",
        ])
        .await
        .unwrap();
    assert_eq!(r.len(), 10_001);
    let r = api.call(&["/ip/hotspot/user/print"]).await.unwrap();
    assert_eq!(r.len(), 10_001);
    let r = api
        .call(&["/ppp/secret/print", "?name=cust09999"])
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    let api_reads = t.elapsed();

    let http = reqwest::Client::new();
    let t = Instant::now();
    let body = http
        .get(format!("{}/ppp/secret", sim.rest_url()))
        .basic_auth("admin", Some(&sim.options.password))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.len(), 10_000);
    let rest_read = t.elapsed();
    // Generous bounds for debug builds on 2 cores; the point is "no O(n²)".
    assert!(load < Duration::from_secs(10), "bulk load took {load:?}");
    assert!(
        api_reads < Duration::from_secs(5),
        "API reads took {api_reads:?}"
    );
    assert!(
        rest_read < Duration::from_secs(5),
        "REST read took {rest_read:?}"
    );
}

#[tokio::test]
async fn address_list_entries_with_a_timeout_are_dynamic_and_expire() {
    let sim = sim("7.16").await;
    let mut api = sim.api_login().await.unwrap();
    let r = api
        .call(&[
            "/ip/firewall/address-list/add",
            "=list=expired",
            "=address=100.64.0.9",
            "=timeout=00:00:01",
        ])
        .await
        .unwrap();
    assert_eq!(r[0][0], b"!done");
    let c = &sim.control;
    let entry = c
        .find("ip/firewall/address-list", "address", "100.64.0.9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s(&entry, "dynamic"), "true");
    assert!(s(&entry, "timeout").ends_with('s'));
    eventually(Duration::from_secs(5), || async {
        c.find("ip/firewall/address-list", "address", "100.64.0.9")
            .await
            .unwrap()
            .is_none()
    })
    .await
    .unwrap();
}
