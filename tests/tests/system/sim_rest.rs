//! Conformance of the simulator's REST API with routeros.md §1: raw HTTP requests against
//! `routeros-sim`, checking status codes, reply shapes and RouterOS error texts.

use std::time::{Duration, Instant};

use easyisp_tests::sim_harness::{
    Faults, HangNext, Service, SimOptions, SimProcess, install_crypto_provider,
};
use serde_json::{Value, json};

struct Rest {
    sim: SimProcess,
    http: reqwest::Client,
}

impl Rest {
    async fn start(opts: SimOptions) -> Rest {
        install_crypto_provider();
        let sim = SimProcess::start(opts).await.expect("simulator starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Rest { sim, http }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.sim.rest_url()))
            .basic_auth(&self.sim.options.user, Some(&self.sim.options.password));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, b) = self.call(method, path, body).await;
        let v = if b.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&b).unwrap_or_else(|e| panic!("JSON from {path}: {e}: {b:?}"))
        };
        (s, v)
    }
}

fn all_strings(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(Value::is_string),
        Value::Array(a) => a.iter().all(all_strings),
        _ => false,
    }
}

#[tokio::test]
async fn rest_refuses_bad_credentials_with_the_routeros_401_body() {
    let r = Rest::start(SimOptions::default()).await;
    let resp = r
        .http
        .get(format!("{}/ppp/secret", r.sim.rest_url()))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":401,"message":"Unauthorized"}"#
    );
    let resp = r
        .http
        .get(format!("{}/ppp/secret", r.sim.rest_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn rest_crud_has_routeros_shapes() {
    let r = Rest::start(SimOptions::default()).await;
    let (s, list) = r.json("GET", "/ppp/secret", None).await;
    assert_eq!((s, list), (200, json!([])));

    let (s, created) = r
        .json(
            "PUT",
            "/ppp/secret",
            Some(json!({"name":"cust1@isp.x","password":"s3cr3t","service":"pppoe","comment":"easyisp:42","limit-bytes-in":1000})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(all_strings(&created), "every value is a string: {created}");
    let id = created[".id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with('*') && u32::from_str_radix(&id[1..], 16).is_ok(),
        "{id}"
    );
    assert_eq!(created["disabled"], "false");
    assert_eq!(created["profile"], "default");
    assert_eq!(created["limit-bytes-in"], "1000");

    let (_, filtered) = r.json("GET", "/ppp/secret?name=cust1%40isp.x", None).await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let (_, none) = r.json("GET", "/ppp/secret?name=nobody", None).await;
    assert_eq!(none, json!([]));
    let (_, cut) = r
        .json("GET", "/ppp/secret?.proplist=name,disabled", None)
        .await;
    assert_eq!(
        cut,
        json!([{".id": id, "name": "cust1@isp.x", "disabled": "false"}])
    );
    let (s, one) = r.json("GET", &format!("/ppp/secret/{id}"), None).await;
    assert_eq!((s, one["name"].as_str()), (200, Some("cust1@isp.x")));

    let (s, patched) = r
        .json(
            "PATCH",
            &format!("/ppp/secret/{id}"),
            Some(json!({"disabled":"yes","comment":"x"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(patched["disabled"], "true");
    assert_eq!(patched["password"], "s3cr3t");

    let (s, body) = r.call("DELETE", &format!("/ppp/secret/{id}"), None).await;
    assert_eq!((s, body.as_slice()), (200, b"".as_slice()));
    let (s, body) = r.call("DELETE", &format!("/ppp/secret/{id}"), None).await;
    assert_eq!(s, 404);
    assert_eq!(body, br#"{"error":404,"message":"Not Found"}"#);
    let (s, _) = r
        .call(
            "PATCH",
            &format!("/ppp/secret/{id}"),
            Some(json!({"comment":"y"})),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn rest_errors_carry_routeros_texts() {
    let r = Rest::start(SimOptions::default()).await;
    let detail = |v: &Value| v["detail"].as_str().unwrap_or_default().to_owned();
    let (s, _) = r
        .json("PUT", "/ppp/secret", Some(json!({"name":"a"})))
        .await;
    assert_eq!(s, 200);
    let (s, v) = r
        .json("PUT", "/ppp/secret", Some(json!({"name":"a"})))
        .await;
    assert_eq!(
        (s, detail(&v)),
        (
            400,
            "failure: secret with the same name already exists".into()
        )
    );
    assert_eq!(v["error"], json!(400));
    assert_eq!(v["message"], "Bad Request");

    let (s, v) = r
        .json(
            "PUT",
            "/ppp/secret",
            Some(json!({"name":"b","profile":"10M"})),
        )
        .await;
    assert_eq!(
        (s, detail(&v)),
        (400, "input does not match any value of profile".into())
    );
    r.json(
        "PUT",
        "/ppp/profile",
        Some(json!({"name":"10M-a","rate-limit":"5M/10M"})),
    )
    .await;
    r.json("PUT", "/ppp/profile", Some(json!({"name":"10M-b"})))
        .await;
    let (_, v) = r
        .json(
            "PUT",
            "/ppp/secret",
            Some(json!({"name":"b","profile":"10M"})),
        )
        .await;
    assert!(detail(&v).starts_with("ambiguous value of profile"), "{v}");
    let (s, v) = r
        .json(
            "PUT",
            "/ppp/profile",
            Some(json!({"name":"bad","rate-limit":"fast"})),
        )
        .await;
    assert_eq!(
        (s, detail(&v)),
        (400, "invalid value for argument rate-limit".into())
    );

    let (s, v) = r
        .json(
            "PUT",
            "/ppp/secret",
            Some(json!({"name":"c","interface":"x"})),
        )
        .await;
    assert_eq!((s, detail(&v)), (400, "unknown parameter interface".into()));
    let (_, v) = r
        .json("PUT", "/ppp/secret", Some(json!({".id":"*1","name":"d"})))
        .await;
    assert_eq!(detail(&v), "unknown parameter .id");

    r.json("PUT", "/ip/hotspot/user", Some(json!({"name":"u"})))
        .await;
    let (_, v) = r
        .json("PUT", "/ip/hotspot/user", Some(json!({"name":"u"})))
        .await;
    assert_eq!(
        detail(&v),
        "failure: already have user with this name for this server"
    );
    r.json(
        "PUT",
        "/ip/firewall/address-list",
        Some(json!({"list":"expired","address":"100.64.0.5"})),
    )
    .await;
    let (_, v) = r
        .json(
            "PUT",
            "/ip/firewall/address-list",
            Some(json!({"list":"expired","address":"100.64.0.5"})),
        )
        .await;
    assert_eq!(detail(&v), "failure: already have such entry");

    let (s, v) = r.json("GET", "/nonexistent", None).await;
    assert_eq!(
        (s, detail(&v)),
        (400, "no such command or directory (nonexistent)".into())
    );
    let (s, v) = r.json("DELETE", "/interface/ether1", None).await;
    assert_eq!(
        (s, detail(&v)),
        (406, "no such command or directory (remove)".into())
    );
    assert_eq!(v["message"], "Not Acceptable");
    let (s, v) = r.json("GET", "/ip/firewall/address-list/print", None).await;
    assert_eq!((s, detail(&v)), (400, "no such command".into()));
    let (s, _) = r.call("HEAD", "/ppp/secret", None).await;
    assert_eq!(s, 501);
}

#[tokio::test]
async fn rest_post_commands_mirror_the_api() {
    let r = Rest::start(SimOptions::default()).await;
    let (s, v) = r
        .json(
            "POST",
            "/ppp/secret/add",
            Some(json!({"name":"x","password":"p"})),
        )
        .await;
    assert_eq!(s, 200);
    let id = v["ret"].as_str().unwrap().to_owned();
    assert!(id.starts_with('*'));
    let (_, v) = r
        .json("POST", "/ppp/secret/disable", Some(json!({"numbers": id})))
        .await;
    assert_eq!(v, json!([]));
    let (_, v) = r
        .json(
            "POST",
            "/ppp/secret/set",
            Some(json!({".id": id, "comment":"c"})),
        )
        .await;
    assert_eq!(v, json!([]));
    let (_, v) = r
        .json(
            "POST",
            "/interface/print",
            Some(json!({".proplist":["name","type"],".query":["type=ether","name=ether1","#&"]})),
        )
        .await;
    assert_eq!(v, json!([{".id":"*1","name":"ether1","type":"ether"}]));
    let (_, v) = r
        .json(
            "POST",
            "/ppp/secret/print",
            Some(json!({".proplist":"name,disabled"})),
        )
        .await;
    assert_eq!(v, json!([{".id": id, "name":"x","disabled":"true"}]));
    let (s, v) = r
        .json(
            "POST",
            "/ppp/active/remove",
            Some(json!({".id":"*8000FFFF"})),
        )
        .await;
    assert_eq!((s, v["detail"].as_str()), (400, Some("no such item")));
    let (_, v) = r
        .json("POST", "/ppp/secret/remove", Some(json!({".id": id})))
        .await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn rest_singletons_are_bare_objects() {
    let r = Rest::start(SimOptions {
        identity: "pop-1".into(),
        board: "CCR2004".into(),
        ..SimOptions::default()
    })
    .await;
    let (_, v) = r.json("GET", "/system/identity", None).await;
    assert_eq!(v, json!({"name":"pop-1"}));
    let (_, v) = r.json("GET", "/system/resource", None).await;
    assert_eq!(v["board-name"], "CCR2004");
    assert!(v["version"].as_str().unwrap().starts_with("7.16"));
    assert!(all_strings(&v));
    let (_, v) = r.json("GET", "/system/clock", None).await;
    let date = v["date"].as_str().unwrap();
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-',
        "ISO date on 7.16: {date}"
    );
    let (_, v) = r
        .json(
            "POST",
            "/system/identity/set",
            Some(json!({"name":"pop-2"})),
        )
        .await;
    assert_eq!(v, json!([]));
    assert_eq!(
        r.json("GET", "/system/identity", None).await.1,
        json!({"name":"pop-2"})
    );
}

#[tokio::test]
async fn rest_does_not_exist_on_v6() {
    let r = Rest::start(SimOptions::default().version("6.49.10")).await;
    let (s, _) = r.call("GET", "/system/resource", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn rest_over_https_presents_the_announced_certificate() {
    let r = Rest::start(SimOptions::default()).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let resp = http
        .get(format!("{}/system/identity", r.sim.rest_tls_url()))
        .basic_auth("admin", Some(&r.sim.options.password))
        .send()
        .await
        .unwrap();
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .cloned()
        .expect("tls info");
    let der = info.peer_certificate().expect("peer certificate");
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(der)),
        r.sim.ports.rest_tls_fingerprint
    );
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn rest_faults_fail_hang_and_delay_requests() {
    let r = Rest::start(SimOptions {
        rest_timeout_ms: 300,
        ..SimOptions::default()
    })
    .await;
    let c = &r.sim.control;
    c.fail_next(1, Some(Service::Rest), "failure: router busy", 503)
        .await
        .unwrap();
    let (s, v) = r.json("GET", "/ppp/secret", None).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (503, Some("failure: router busy"))
    );
    assert_eq!(r.json("GET", "/ppp/secret", None).await.0, 200);

    let mut f: Faults = c.faults().await.unwrap();
    f.hang_next = Some(HangNext {
        count: 1,
        service: Some(Service::Rest),
    });
    c.set_faults(&f).await.unwrap();
    let (s, body) = r.call("GET", "/ppp/secret", None).await;
    assert_eq!(s, 400);
    assert_eq!(
        body,
        br#"{"detail":"Session closed","error":400,"message":"Bad Request"}"#
    );

    c.set_latency(200).await.unwrap();
    let t = Instant::now();
    assert_eq!(r.json("GET", "/ppp/secret", None).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn rest_refuses_connections_while_the_service_is_stopped() {
    let r = Rest::start(SimOptions::default()).await;
    let c = &r.sim.control;
    c.stop_service(Service::Rest).await.unwrap();
    let port = r.sim.ports.rest;
    easyisp_tests::sim_harness::eventually(Duration::from_secs(5), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await
    .unwrap();
    c.start_service(Service::Rest).await.unwrap();
    easyisp_tests::sim_harness::eventually(Duration::from_secs(5), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
    .unwrap();
    assert_eq!(r.json("GET", "/ppp/secret", None).await.0, 200);
}

#[tokio::test]
async fn rest_returns_non_utf8_bytes_raw_and_counts_operations() {
    let r = Rest::start(SimOptions::default()).await;
    let mut api = r.sim.api_login().await.unwrap();
    let reply = api
        .call(&[
            b"/ppp/secret/add".as_slice(),
            b"=name=caf\xe9",
            b"=comment=\xff\xfe",
        ])
        .await
        .unwrap();
    assert_eq!(reply[0][0], b"!done");
    let (_, body) = r
        .call("GET", "/ppp/secret?.proplist=name,comment", None)
        .await;
    assert!(
        body.windows(5).any(|w| w == b"caf\xe9\""),
        "raw byte kept: {body:?}"
    );
    let ops = r.sim.control.ops().await.unwrap();
    assert_eq!(ops.writes.get("ppp/secret"), Some(&1));
    assert_eq!(ops.reads.get("ppp/secret"), Some(&1));
    r.sim
        .control
        .add("ppp/secret", json!({"name":"by-hand"}))
        .await
        .unwrap();
    assert_eq!(
        r.sim.control.ops().await.unwrap().total_writes(),
        1,
        "control edits are not router writes"
    );
}
