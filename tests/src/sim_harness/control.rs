//! Typed client of the simulator's control interface (see `sim::control` for the endpoints).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FailNext, Faults, Service, SessionKind, install_crypto_provider};

/// Ids of the rows a new session created.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub active_id: String,
    pub interface_id: Option<String>,
    pub queue_id: Option<String>,
    pub session_id: Option<String>,
    pub address: String,
}

/// Reads and writes received per menu from REST/API/SSH.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct OpCounts {
    pub writes: std::collections::BTreeMap<String, u64>,
    pub reads: std::collections::BTreeMap<String, u64>,
}

impl OpCounts {
    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }
}

/// Typed client of the control interface.
#[derive(Debug, Clone)]
pub struct SimControl {
    base: String,
    http: reqwest::Client,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl SimControl {
    pub fn new(port: u16) -> Result<Self> {
        install_crypto_provider();
        Ok(SimControl {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("control {method} {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("control {method} {path}: {status} {v}");
        }
        Ok(v)
    }
    async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn info(&self) -> Result<Value> {
        self.get("/info").await
    }
    /// Every menu as `{ "ppp/secret": [ {...}, ... ], ... }`.
    pub async fn state(&self) -> Result<Value> {
        self.get("/state").await
    }
    /// Rows of one menu (`ppp/secret`).
    pub async fn menu(&self, path: &str) -> Result<Vec<Value>> {
        match self.get(&format!("/menu/{path}")).await? {
            Value::Array(a) => Ok(a),
            other => Err(anyhow!("expected an array, got {other}")),
        }
    }
    /// One row of `path` by `.id` or name (a 404 is an error).
    pub async fn item(&self, path: &str, item: &str) -> Result<Value> {
        self.get(&format!("/menu/{path}/{}", enc(item))).await
    }
    /// The first row of `path` whose `field` equals `value`.
    pub async fn find(&self, path: &str, field: &str, value: &str) -> Result<Option<Value>> {
        Ok(self
            .menu(path)
            .await?
            .into_iter()
            .find(|r| r.get(field).and_then(Value::as_str) == Some(value)))
    }
    pub async fn secret(&self, name: &str) -> Result<Option<Value>> {
        self.find("ppp/secret", "name", name).await
    }
    pub async fn hotspot_user(&self, name: &str) -> Result<Option<Value>> {
        self.find("ip/hotspot/user", "name", name).await
    }
    /// Adds a row as a person at the router would; returns its `.id`.
    pub async fn add(&self, path: &str, props: Value) -> Result<String> {
        let v = self
            .send(reqwest::Method::POST, &format!("/menu/{path}"), Some(props))
            .await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no id in {v}"))
    }
    /// Adds many rows in one request; returns their ids.
    pub async fn bulk_add(&self, path: &str, rows: Vec<Value>) -> Result<Vec<String>> {
        let v = self
            .send(
                reqwest::Method::POST,
                &format!("/bulk/{path}"),
                Some(Value::Array(rows)),
            )
            .await?;
        Ok(serde_json::from_value(v)?)
    }
    /// Sets fields of a row (by `.id` or name) with RouterOS validation.
    pub async fn set(&self, path: &str, item: &str, props: Value) -> Result<()> {
        self.send(
            reqwest::Method::PATCH,
            &format!("/menu/{path}/{}", enc(item)),
            Some(props),
        )
        .await
        .map(|_| ())
    }
    /// Sets any fields, read-only ones included, without validation.
    pub async fn force_set(&self, path: &str, item: &str, props: Value) -> Result<()> {
        self.send(
            reqwest::Method::PATCH,
            &format!("/menu/{path}/{}?force=true", enc(item)),
            Some(props),
        )
        .await
        .map(|_| ())
    }
    pub async fn remove(&self, path: &str, item: &str) -> Result<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/menu/{path}/{}", enc(item)),
            None,
        )
        .await
        .map(|_| ())
    }
    /// A PPPoE client dials in with secret `name`.
    pub async fn ppp_connect(
        &self,
        name: &str,
        caller_id: &str,
        address: Option<&str>,
    ) -> Result<SessionInfo> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/sessions/ppp",
                Some(json!({ "name": name, "callerId": caller_id, "address": address })),
            )
            .await?;
        Ok(serde_json::from_value(v)?)
    }
    /// A hotspot client logs in as `user`.
    pub async fn hotspot_login(
        &self,
        user: &str,
        mac: &str,
        address: Option<&str>,
    ) -> Result<SessionInfo> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/sessions/hotspot",
                Some(json!({ "user": user, "mac": mac, "address": address })),
            )
            .await?;
        Ok(serde_json::from_value(v)?)
    }
    /// The subscriber hangs up for good (no redial).
    pub async fn hang_up(&self, kind: SessionKind, name: &str) -> Result<()> {
        let k = match kind {
            SessionKind::Ppp => "ppp",
            SessionKind::Hotspot => "hotspot",
        };
        self.send(
            reqwest::Method::DELETE,
            &format!("/sessions/{k}/{}", enc(name)),
            None,
        )
        .await
        .map(|_| ())
    }
    /// Adds traffic: `up` = customer upload, `down` = download.
    pub async fn traffic(&self, kind: SessionKind, name: &str, up: u64, down: u64) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            "/traffic",
            Some(json!({ "kind": kind, "name": name, "up": up, "down": down })),
        )
        .await
        .map(|_| ())
    }
    /// Sets a session's counters (e.g. near 2^32 to test wrap on v6).
    pub async fn set_counters(
        &self,
        kind: SessionKind,
        name: &str,
        up: u64,
        down: u64,
    ) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            "/counters",
            Some(json!({ "kind": kind, "name": name, "up": up, "down": down })),
        )
        .await
        .map(|_| ())
    }
    /// Sessions drop, ids change, counters restart.
    pub async fn reboot(&self) -> Result<()> {
        self.send(reqwest::Method::POST, "/reboot", None)
            .await
            .map(|_| ())
    }
    /// `None` = redial only on `redial_now`.
    pub async fn set_redial_delay(&self, ms: Option<u64>) -> Result<()> {
        self.send(
            reqwest::Method::PUT,
            "/redial",
            Some(json!({ "delayMs": ms })),
        )
        .await
        .map(|_| ())
    }
    /// Runs every pending redial now; returns how many were attempted.
    pub async fn redial_now(&self) -> Result<u64> {
        let v = self
            .send(reqwest::Method::POST, "/redial/now", None)
            .await?;
        Ok(v.get("redialed").and_then(Value::as_u64).unwrap_or(0))
    }
    pub async fn faults(&self) -> Result<Faults> {
        Ok(serde_json::from_value(self.get("/faults").await?)?)
    }
    pub async fn set_faults(&self, f: &Faults) -> Result<()> {
        self.send(
            reqwest::Method::PUT,
            "/faults",
            Some(serde_json::to_value(f)?),
        )
        .await
        .map(|_| ())
    }
    /// Fails the next `count` requests of `service` (any when `None`) with `message`.
    pub async fn fail_next(
        &self,
        count: u32,
        service: Option<Service>,
        message: &str,
        status: u16,
    ) -> Result<()> {
        let mut f = self.faults().await?;
        f.fail_next = Some(FailNext {
            count,
            service,
            message: message.into(),
            status,
        });
        self.set_faults(&f).await
    }
    pub async fn set_latency(&self, ms: u64) -> Result<()> {
        let mut f = self.faults().await?;
        f.latency_ms = ms;
        self.set_faults(&f).await
    }
    fn svc(s: Service) -> &'static str {
        match s {
            Service::Rest => "rest",
            Service::Api => "api",
            Service::Ssh => "ssh",
        }
    }
    /// Stops listening (connections refused) and drops open sockets.
    pub async fn stop_service(&self, s: Service) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            &format!("/services/{}/stop", Self::svc(s)),
            None,
        )
        .await
        .map(|_| ())
    }
    pub async fn start_service(&self, s: Service) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            &format!("/services/{}/start", Self::svc(s)),
            None,
        )
        .await
        .map(|_| ())
    }
    /// Drops open sockets but keeps listening.
    pub async fn drop_connections(&self, s: Service) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            &format!("/services/{}/drop", Self::svc(s)),
            None,
        )
        .await
        .map(|_| ())
    }
    pub async fn ops(&self) -> Result<OpCounts> {
        Ok(serde_json::from_value(self.get("/ops").await?)?)
    }
    pub async fn reset_ops(&self) -> Result<()> {
        self.send(reqwest::Method::POST, "/ops/reset", None)
            .await
            .map(|_| ())
    }
    pub async fn set_version(&self, v: &str) -> Result<()> {
        self.send(
            reqwest::Method::PUT,
            "/version",
            Some(json!({ "version": v })),
        )
        .await
        .map(|_| ())
    }
    pub async fn set_credentials(&self, user: &str, password: &str) -> Result<()> {
        self.send(
            reqwest::Method::PUT,
            "/credentials",
            Some(json!({ "user": user, "password": password })),
        )
        .await
        .map(|_| ())
    }
}
