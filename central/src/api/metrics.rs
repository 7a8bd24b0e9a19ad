//! `GET /metrics`: Prometheus text format 0.0.4, written by hand (a few dozen lines do not
//! justify a client library). Aggregate numbers and ids only, never customer data: tenants,
//! customers by status, routers' presence and sync figures, the agents' latest telemetry,
//! the broker link and HTTP responses by status class.
//!
//! No bearer token is required unless `serve` was started with `EASYISP_METRICS_TOKEN`
//! (docs/monitoring.md, "Metrics"): Prometheus scrapers rarely carry one, and nothing here
//! identifies a customer.

use super::AppState;
use super::error::ApiError;
use crate::storage::metrics::MetricsFigures;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Responses by status class (1xx..5xx), counted by [`count_responses`].
#[derive(Debug, Default)]
pub struct HttpCounters([AtomicU64; 5]);

impl HttpCounters {
    pub fn record(&self, status: u16) {
        if let Some(counter) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.0.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Middleware: counts every response by its status class.
pub async fn count_responses(
    State(counters): State<Arc<HttpCounters>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    counters.record(response.status().as_u16());
    response
}

/// The token a scraper must send when `EASYISP_METRICS_TOKEN` is set; only its hash is kept.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl MetricsToken {
    pub fn new(token: &str) -> MetricsToken {
        MetricsToken(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares hashes in constant time, so timing tells nothing about the token.
    pub fn matches(&self, offered: &str) -> bool {
        let offered: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        offered
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Figures that live in memory rather than the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeFigures {
    /// Central's sync connection to the broker is up.
    pub broker_connected: bool,
    /// Restarts of the managed Mosquitto; `None` with an external broker.
    pub broker_restarts: Option<u32>,
    /// Responses by status class 1xx..5xx.
    pub http_responses: [u64; 5],
}

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.metrics_token {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.matches(offered) {
            return Err(ApiError::Unauthorized);
        }
    }
    let now = Utc::now();
    let figures = state.storage.metrics_figures(now).await?;
    let runtime = RuntimeFigures {
        broker_connected: state.sync.as_ref().is_some_and(|s| s.broker_connected()),
        broker_restarts: state.broker.restarts(),
        http_responses: state.http.snapshot(),
    };
    let body = render(&figures, &runtime, now);
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

/// Writes metric families in the text format: `HELP` and `TYPE` once, then the samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// The whole exposition as of `now`.
pub fn render(figures: &MetricsFigures, runtime: &RuntimeFigures, now: DateTime<Utc>) -> String {
    let mut e = Exposition::default();
    let tenants: Vec<(String, &crate::storage::metrics::TenantFigures)> = figures
        .tenants
        .iter()
        .map(|t| (t.id.to_string(), t))
        .collect();
    e.family(
        "easyisp_tenant_info",
        "gauge",
        "A tenant (ISP): always 1; joins the tenant id to its name.",
    );
    for (id, t) in &tenants {
        e.sample(
            "easyisp_tenant_info",
            &[("tenant", id), ("name", &t.name)],
            1.0,
        );
    }
    e.family(
        "easyisp_customers",
        "gauge",
        "Live (not deleted) customers by status.",
    );
    for (id, t) in &tenants {
        for (status, n) in &t.customers {
            e.sample(
                "easyisp_customers",
                &[("tenant", id), ("status", status.as_str())],
                *n as f64,
            );
        }
    }
    e.family(
        "easyisp_active_sessions",
        "gauge",
        "PPPoE and hotspot sessions active now, from the latest telemetry of the tenant's online routers.",
    );
    for (id, t) in &tenants {
        e.sample(
            "easyisp_active_sessions",
            &[("tenant", id)],
            t.active_sessions as f64,
        );
    }

    let routers: Vec<(String, String, &crate::storage::metrics::RouterFigures)> = figures
        .routers
        .iter()
        .map(|r| (r.id.to_string(), r.tenant.to_string(), r))
        .collect();
    e.family(
        "easyisp_router_info",
        "gauge",
        "A router: always 1; joins the router id to its tenant and name.",
    );
    for (id, tenant, r) in &routers {
        e.sample(
            "easyisp_router_info",
            &[("router", id), ("tenant", tenant), ("name", &r.name)],
            1.0,
        );
    }
    e.family(
        "easyisp_router_online",
        "gauge",
        "1 while the router's agent is connected to the broker (its last status was online).",
    );
    for (id, tenant, r) in &routers {
        e.sample(
            "easyisp_router_online",
            &[("router", id), ("tenant", tenant)],
            flag(r.online),
        );
    }
    e.family(
        "easyisp_router_last_seen_timestamp_seconds",
        "gauge",
        "When central last heard from the router's agent (status or telemetry), unix seconds.",
    );
    for (id, _, r) in &routers {
        if let Some(at) = r.last_seen {
            e.sample(
                "easyisp_router_last_seen_timestamp_seconds",
                &[("router", id)],
                seconds(at),
            );
        }
    }
    e.family(
        "easyisp_sync_outbox_depth",
        "gauge",
        "Changes central has for the router that its agent has not acknowledged.",
    );
    for (id, _, r) in &routers {
        if let Some(outbox) = r.outbox {
            e.sample(
                "easyisp_sync_outbox_depth",
                &[("router", id)],
                outbox.depth as f64,
            );
        }
    }
    e.family(
        "easyisp_sync_lag_seconds",
        "gauge",
        "Age of the oldest change the router's agent has not acknowledged; 0 when none waits.",
    );
    for (id, _, r) in &routers {
        if let Some(outbox) = r.outbox {
            let lag = outbox
                .oldest
                .map(|at| ((now - at).num_milliseconds().max(0)) as f64 / 1000.0)
                .unwrap_or(0.0);
            e.sample("easyisp_sync_lag_seconds", &[("router", id)], lag);
        }
    }
    let agents: Vec<(&String, crate::storage::metrics::AgentFigures)> = routers
        .iter()
        .filter_map(|(id, _, r)| r.agent.map(|a| (id, a)))
        .collect();
    e.family(
        "easyisp_agent_telemetry_timestamp_seconds",
        "gauge",
        "When the agent sent its latest telemetry (every 30 s while connected), unix seconds.",
    );
    for (id, a) in &agents {
        e.sample(
            "easyisp_agent_telemetry_timestamp_seconds",
            &[("router", id)],
            seconds(a.at),
        );
    }
    e.family(
        "easyisp_agent_outbox_depth",
        "gauge",
        "Changes made at the site that central has not acknowledged, per the agent's latest telemetry.",
    );
    for (id, a) in &agents {
        e.sample(
            "easyisp_agent_outbox_depth",
            &[("router", id)],
            a.outbox_depth as f64,
        );
    }
    e.family(
        "easyisp_agent_router_reachable",
        "gauge",
        "1 when the agent could talk to its MikroTik at its last attempt.",
    );
    for (id, a) in &agents {
        e.sample(
            "easyisp_agent_router_reachable",
            &[("router", id)],
            flag(a.router_reachable),
        );
    }
    e.family(
        "easyisp_agent_clock_synchronised",
        "gauge",
        "1 when the agent's clock is NTP-synchronised; otherwise it holds cut-offs.",
    );
    for (id, a) in &agents {
        e.sample(
            "easyisp_agent_clock_synchronised",
            &[("router", id)],
            flag(a.clock_synchronised),
        );
    }
    e.family(
        "easyisp_agent_last_reconcile_timestamp_seconds",
        "gauge",
        "When the agent last made the router match its replica, unix seconds.",
    );
    for (id, a) in &agents {
        if let Some(at) = a.last_reconcile {
            e.sample(
                "easyisp_agent_last_reconcile_timestamp_seconds",
                &[("router", id)],
                seconds(at),
            );
        }
    }
    e.family(
        "easyisp_broker_connected",
        "gauge",
        "1 while central's own sync connection to the MQTT broker is up.",
    );
    e.sample(
        "easyisp_broker_connected",
        &[],
        flag(runtime.broker_connected),
    );
    if let Some(restarts) = runtime.broker_restarts {
        e.family(
            "easyisp_broker_restarts_total",
            "counter",
            "Times the managed Mosquitto exited on its own and was restarted since central started.",
        );
        e.sample("easyisp_broker_restarts_total", &[], f64::from(restarts));
    }
    e.family(
        "easyisp_http_responses_total",
        "counter",
        "HTTP responses since central started, by status class.",
    );
    for (i, n) in runtime.http_responses.iter().enumerate() {
        let class = format!("{}xx", i + 1);
        e.sample(
            "easyisp_http_responses_total",
            &[("class", &class)],
            *n as f64,
        );
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::metrics::{AgentFigures, OutboxFigures, RouterFigures, TenantFigures};
    use easyisp_protocol::CustomerStatus;
    use uuid::Uuid;

    #[test]
    fn labels_are_escaped_and_numbers_are_plain() {
        let mut e = Exposition::default();
        e.family("m", "gauge", "Help with a \\ and\na newline.");
        e.sample("m", &[("name", "a \"quoted\" \\ name\nline")], 3.0);
        e.sample("m", &[], 0.25);
        e.sample("m", &[("a", "1"), ("b", "2")], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP m Help with a \\\\ and\\na newline.\n\
             # TYPE m gauge\n\
             m{name=\"a \\\"quoted\\\" \\\\ name\\nline\"} 3\n\
             m 0.25\n\
             m{a=\"1\",b=\"2\"} NaN\n"
        );
    }

    #[test]
    fn http_responses_are_counted_by_class() {
        let counters = HttpCounters::default();
        for status in [200, 201, 404, 500, 99, 600] {
            counters.record(status);
        }
        assert_eq!(counters.snapshot(), [0, 2, 0, 1, 1]);
    }

    #[test]
    fn the_token_matches_only_itself() {
        let token = MetricsToken::new("scrape-secret");
        assert!(token.matches("scrape-secret"));
        assert!(!token.matches("scrape-secreT"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "[redacted]");
    }

    #[test]
    fn the_exposition_shows_customers_routers_agents_and_the_broker() {
        let now: DateTime<Utc> = "2026-03-01T08:10:00Z".parse().unwrap();
        let tenant = Uuid::now_v7();
        let router = Uuid::now_v7();
        let figures = MetricsFigures {
            tenants: vec![TenantFigures {
                id: tenant,
                name: "Acme".into(),
                customers: vec![(CustomerStatus::Active, 7), (CustomerStatus::Expired, 2)],
                active_sessions: 5,
            }],
            routers: vec![RouterFigures {
                id: router,
                tenant,
                name: "POP West".into(),
                online: true,
                last_seen: Some("2026-03-01T08:09:30Z".parse().unwrap()),
                outbox: Some(OutboxFigures {
                    depth: 3,
                    oldest: Some("2026-03-01T08:00:00Z".parse().unwrap()),
                }),
                agent: Some(AgentFigures {
                    at: "2026-03-01T08:09:30Z".parse().unwrap(),
                    outbox_depth: 1,
                    router_reachable: false,
                    clock_synchronised: true,
                    last_reconcile: None,
                    active_sessions: 5,
                }),
            }],
        };
        let runtime = RuntimeFigures {
            broker_connected: true,
            broker_restarts: Some(2),
            http_responses: [0, 10, 0, 1, 0],
        };
        let text = render(&figures, &runtime, now);
        for line in [
            format!("easyisp_customers{{tenant=\"{tenant}\",status=\"active\"}} 7"),
            format!("easyisp_customers{{tenant=\"{tenant}\",status=\"expired\"}} 2"),
            format!("easyisp_active_sessions{{tenant=\"{tenant}\"}} 5"),
            format!("easyisp_router_online{{router=\"{router}\",tenant=\"{tenant}\"}} 1"),
            format!(
                "easyisp_router_info{{router=\"{router}\",tenant=\"{tenant}\",name=\"POP West\"}} 1"
            ),
            format!("easyisp_router_last_seen_timestamp_seconds{{router=\"{router}\"}} 1772352570"),
            format!("easyisp_sync_outbox_depth{{router=\"{router}\"}} 3"),
            format!("easyisp_sync_lag_seconds{{router=\"{router}\"}} 600"),
            format!("easyisp_agent_outbox_depth{{router=\"{router}\"}} 1"),
            format!("easyisp_agent_router_reachable{{router=\"{router}\"}} 0"),
            format!("easyisp_agent_clock_synchronised{{router=\"{router}\"}} 1"),
            "easyisp_broker_connected 1".to_string(),
            "easyisp_broker_restarts_total 2".to_string(),
            "easyisp_http_responses_total{class=\"2xx\"} 10".to_string(),
            "easyisp_http_responses_total{class=\"4xx\"} 1".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // No reconcile yet: no sample rather than a zero timestamp.
        assert!(!text.contains("easyisp_agent_last_reconcile_timestamp_seconds{"));
        // Every family is declared once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(types, helps);
    }
}
