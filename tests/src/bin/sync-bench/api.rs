//! A small client of central's HTTP API: the calls the scenarios make, each checked for the
//! status it should answer. Bodies are never printed: some carry passwords.

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    pub fn new(base: String) -> Result<Api> {
        Ok(Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .build()?,
            token: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: u16,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status != expect {
            // The error JSON names a code and a message, never a secret.
            let error = serde_json::from_str::<Value>(&text)
                .ok()
                .map(|v| v["error"].to_string())
                .unwrap_or_default();
            bail!("{method} {path}: status {status}, expected {expect}: {error}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/api/health", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Logs in and keeps the bearer token for the following calls.
    pub async fn login(&mut self, tenant: &str, username: &str, password: &str) -> Result<()> {
        let body = json!({"tenant": tenant, "username": username, "password": password});
        let reply = self
            .call(Method::POST, "/api/auth/login", Some(body), 200)
            .await?;
        self.token = Some(text(&reply, "token")?);
        Ok(())
    }

    pub async fn package(&self, name: &str) -> Result<String> {
        let body = json!({"name": name, "price": 2000, "downloadSpeed": 10, "uploadSpeed": 5, "validityDays": 30});
        text(
            &self
                .call(Method::POST, "/api/packages", Some(body), 201)
                .await?,
            "id",
        )
    }

    pub async fn router(&self, name: &str) -> Result<String> {
        let body = json!({"name": name, "ipAddress": "192.0.2.1"});
        text(
            &self
                .call(Method::POST, "/api/routers", Some(body), 201)
                .await?,
            "id",
        )
    }

    /// A PPPoE customer on `router` with `package`, expiring in 30 days; returns its id.
    pub async fn customer(
        &self,
        username: &str,
        password: &str,
        package: &str,
        router: &str,
    ) -> Result<String> {
        let body = json!({
            "username": username,
            "password": password,
            "name": format!("Bench {username}"),
            "connectionType": "PPPOE",
            "packageId": package,
            "nasId": router,
            "expiresAt": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        });
        text(
            &self
                .call(Method::POST, "/api/customers", Some(body), 201)
                .await?,
            "id",
        )
    }

    pub async fn set_password(&self, customer: &str, password: &str) -> Result<()> {
        self.call(
            Method::PUT,
            &format!("/api/customers/{customer}"),
            Some(json!({ "password": password })),
            200,
        )
        .await
        .map(|_| ())
    }

    /// A one-time enrollment token for `router`.
    pub async fn enroll_token(&self, router: &str) -> Result<String> {
        text(
            &self
                .call(
                    Method::POST,
                    &format!("/api/routers/{router}/enroll"),
                    None,
                    201,
                )
                .await?,
            "token",
        )
    }

    /// `GET /api/routers/:id`.
    pub async fn router_view(&self, router: &str) -> Result<Value> {
        self.call(Method::GET, &format!("/api/routers/{router}"), None, 200)
            .await
    }

    /// `GET /api/routers`: every router of the tenant with its `sync` figures.
    pub async fn routers(&self) -> Result<Vec<Value>> {
        let reply = self.call(Method::GET, "/api/routers", None, 200).await?;
        Ok(reply["routers"].as_array().cloned().unwrap_or_default())
    }
}

/// `sync.pendingChanges` of a router view; `None` before its agent has connected.
pub fn pending_changes(view: &Value) -> Option<u64> {
    view["sync"]["pendingChanges"].as_u64()
}

pub fn text(value: &Value, key: &str) -> Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {key:?} in the reply"))
}
