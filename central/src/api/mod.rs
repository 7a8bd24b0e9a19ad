//! The HTTP API (axum). Handlers live per domain (`auth`, `operators`, `packages`,
//! `routers`, `agents`, `customers`, `customer_actions`); errors become responses only in `error`.
//! Every response is JSON with `X-Content-Type-Options: nosniff`; bodies over 1 MiB are 413.

pub mod agents;
pub mod auth;
pub mod customer_actions;
pub mod customer_input;
pub mod customers;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod operators;
pub mod packages;
pub mod routers;
pub mod token_cache;

use crate::broker::Broker;
use crate::storage::Storage;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// API settings (from the command line).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Customer creations per tenant per minute; 0 disables the limit. Default 120.
    pub customer_create_per_minute: u32,
    /// Lifetime of a login token. Default 12 hours.
    pub token_ttl: Duration,
    /// Lifetime of a router enrollment token. Default 1 hour.
    pub enroll_ttl: Duration,
    /// Failed logins per tenant+username before throttling (per 15 minutes). Default 5.
    pub login_failures_per_user: u32,
    /// Failed logins per client address before throttling (per 15 minutes). Default 30.
    pub login_failures_per_address: u32,
    /// The bearer token `/metrics` wants (`EASYISP_METRICS_TOKEN`). Default: none, open.
    pub metrics_token: Option<metrics::MetricsToken>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            customer_create_per_minute: 120,
            token_ttl: Duration::from_secs(12 * 3600),
            enroll_ttl: Duration::from_secs(3600),
            login_failures_per_user: 5,
            login_failures_per_address: 30,
            metrics_token: None,
        }
    }
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    /// The MQTT broker: agent accounts (enroll, revoke) and what agents are told to dial.
    pub broker: Broker,
    pub config: Arc<ApiConfig>,
    pub user_throttle: Arc<limits::FailureThrottle>,
    pub address_throttle: Arc<limits::FailureThrottle>,
    pub create_limiter: Arc<limits::RateLimiter>,
    pub tokens: Arc<token_cache::TokenCache>,
    /// Central's sync engine: commands to routers' agents (disconnect, live status). `None`
    /// when sync is not running (then those endpoints answer 503).
    pub sync: Option<crate::sync::SyncHandle>,
    /// HTTP responses by status class, for `/metrics`.
    pub http: Arc<metrics::HttpCounters>,
    /// When set, `/metrics` wants `Authorization: Bearer` with this token.
    pub metrics_token: Option<metrics::MetricsToken>,
    calling_codes: Arc<Mutex<HashMap<Uuid, Option<String>>>>,
}

impl AppState {
    pub fn new(storage: Storage, broker: Broker, config: ApiConfig) -> AppState {
        let window = Duration::from_secs(15 * 60);
        AppState {
            storage,
            broker,
            user_throttle: Arc::new(limits::FailureThrottle::new(
                config.login_failures_per_user,
                window,
            )),
            address_throttle: Arc::new(limits::FailureThrottle::new(
                config.login_failures_per_address,
                window,
            )),
            create_limiter: Arc::new(limits::RateLimiter::new(config.customer_create_per_minute)),
            tokens: Arc::new(token_cache::TokenCache::default()),
            sync: None,
            http: Arc::new(metrics::HttpCounters::default()),
            metrics_token: config.metrics_token.clone(),
            config: Arc::new(config),
            calling_codes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The state with central's sync engine attached.
    pub fn with_sync(mut self, sync: crate::sync::SyncHandle) -> AppState {
        self.sync = Some(sync);
        self
    }

    /// The tenant's default calling code (immutable, so cached).
    pub async fn calling_code(&self, tenant: Uuid) -> Result<Option<String>, ApiError> {
        if let Some(code) = self
            .calling_codes
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant).cloned())
        {
            return Ok(code);
        }
        let code = self.storage.tenant_calling_code(tenant).await?;
        if let Ok(mut map) = self.calling_codes.lock() {
            map.insert(tenant, code.clone());
        }
        Ok(code)
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    use customer_actions as act;
    let http = state.http.clone();
    Router::new()
        .route("/api/health", get(auth::health))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/me", get(auth::me))
        .route(
            "/api/operators",
            get(operators::list).post(operators::create),
        )
        .route(
            "/api/operators/{id}",
            get(operators::get)
                .put(operators::update)
                .delete(operators::delete),
        )
        .route("/api/packages", get(packages::list).post(packages::create))
        .route(
            "/api/packages/{id}",
            get(packages::get)
                .put(packages::update)
                .delete(packages::delete),
        )
        .route("/api/routers", get(routers::list).post(routers::create))
        .route(
            "/api/routers/{id}",
            get(routers::get)
                .put(routers::update)
                .delete(routers::delete),
        )
        .route("/api/routers/{id}/enroll", post(routers::enroll))
        .route("/api/routers/{id}/revoke", post(routers::revoke))
        .route("/api/agents/enroll", post(agents::enroll))
        .route(
            "/api/customers",
            get(customers::list).post(customers::create),
        )
        .route(
            "/api/customers/{id}",
            get(customers::get)
                .put(customers::update)
                .delete(customers::delete),
        )
        .route("/api/customers/{id}/live-status", get(act::live_status))
        .route("/api/customers/{id}/disconnect", post(act::disconnect))
        .route("/api/customers/{id}/sessions", get(act::sessions))
        .route("/api/customers/{id}/payments", get(act::payments))
        .route("/api/customers/{id}/recharge", post(act::recharge))
        .route("/api/customers/{id}/expiry", put(act::expiry))
        .route("/api/customers/{id}/package", put(act::package))
        .route("/api/customers/{id}/suspend", put(act::suspend))
        .route("/api/customers/{id}/activate", put(act::activate))
        .route("/api/customers/{id}/audit", get(act::audit))
        .route("/api/customers/{id}/restore", post(act::restore))
        .route("/api/customers/{id}/anonymize", post(act::anonymize))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(headers_and_span))
        .layer(middleware::from_fn_with_state(
            http,
            metrics::count_responses,
        ))
        .with_state(state)
}

/// One span per request; security headers on every response.
async fn headers_and_span(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
        operator = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request done"
            );
        }
    });
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
