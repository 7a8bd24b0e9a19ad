//! A `routeros-sim` process for one test (started through `easyisp_tests::sim_harness`), and
//! its control interface (plain HTTP JSON on loopback). The process dies with the `Sim`.

use std::time::Duration;

use easyisp_tests::sim_harness::{PortLine, SimOptions, SimProcess, install_crypto_provider};
use serde_json::Value;

/// The router user's password in every simulator these tests start (quotes, `$`, `;` and a
/// space: it must survive every transport's quoting).
pub const PASSWORD: &str = "s3cret pw;$x\"";

/// A simulator (the shared harness's `SimProcess`) plus raw JSON access to its control
/// interface by path, which keeps the scenarios close to the control API's documentation.
pub struct Sim {
    pub process: SimProcess,
    http: reqwest::Client,
    control: String,
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_version("7.16").await
    }

    /// A simulator emulating RouterOS `version` (login method, `!empty`, date format).
    pub async fn start_version(version: &str) -> Sim {
        install_crypto_provider();
        let options = SimOptions {
            version: version.into(),
            password: PASSWORD.into(),
            // Subscribers redial only when a test says so.
            redial_ms: None,
            ..SimOptions::default()
        };
        let process = SimProcess::start(options)
            .await
            .expect("start routeros-sim");
        let control = format!("http://127.0.0.1:{}", process.ports.control);
        Sim {
            process,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
            control,
        }
    }

    pub fn ports(&self) -> &PortLine {
        &self.process.ports
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.control));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("control {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("control body");
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "control {method} {path} → {status} {v}"
        );
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    pub async fn get_status(&self, path: &str) -> u16 {
        self.send(reqwest::Method::GET, path, None).await.0
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.ok(reqwest::Method::DELETE, path, None).await
    }
}
