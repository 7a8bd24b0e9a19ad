//! Serving: opens storage, starts the MQTT broker (managed Mosquitto or an external one), then
//! the HTTP listener and the retention job as tasks under one cancellation token, and shuts
//! everything down on SIGTERM/SIGINT (HTTP drains, the broker stops, then the writer finishes
//! its queue).

use crate::api::{self, ApiConfig, AppState};
use crate::broker::{Broker, BrokerConfig, BrokerMode};
use crate::storage::{Storage, StorageOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    /// The broker agents sync through: a managed Mosquitto or an external broker.
    pub broker: BrokerMode,
    pub api: ApiConfig,
    pub storage: StorageOptions,
    pub retention_days: u32,
    pub retention_interval: Duration,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("MQTT broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
}

/// Runs until `shutdown` is cancelled.
pub async fn serve(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let data_dir = config.data_dir.clone();
    let storage =
        tokio::task::spawn_blocking(move || Storage::open(&data_dir, config.storage.clone()))
            .await
            .map_err(|e| ServeError::Http(std::io::Error::other(e)))??;
    let broker = match Broker::start(
        BrokerConfig {
            data_dir: config.data_dir.clone(),
            mode: config.broker,
        },
        storage.clone(),
    )
    .await
    {
        Ok(broker) => broker,
        Err(e) => {
            let storage = storage.clone();
            tokio::task::spawn_blocking(move || storage.shutdown())
                .await
                .ok();
            return Err(e.into());
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.http).await {
        Ok(listener) => listener,
        Err(source) => {
            broker.shutdown().await;
            tokio::task::spawn_blocking(move || storage.shutdown())
                .await
                .ok();
            return Err(ServeError::Listen {
                addr: config.http,
                source,
            });
        }
    };
    let local = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(http = %local, agents_dial = %broker.agent_url(), data_dir = %config.data_dir.display(),
        "easyisp-central is serving");
    let tracker = TaskTracker::new();
    tracker.spawn(crate::retention::run(
        storage.clone(),
        config.retention_days,
        config.retention_interval,
        shutdown.child_token(),
    ));
    let mut state = AppState::new(storage.clone(), broker.clone(), config.api.clone());
    match crate::sync::start(
        storage.clone(),
        &broker.central_endpoint(),
        shutdown.child_token(),
        &tracker,
    ) {
        Ok(sync) => state = state.with_sync(sync),
        Err(e) => tracing::error!(error = %e,
            "sync with the agents cannot start: fix the broker settings and restart"),
    }
    let app = api::router(state);
    let http_shutdown = shutdown.child_token();
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
    .await;
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 10 s");
    }
    broker.shutdown().await;
    tokio::task::spawn_blocking(move || storage.shutdown())
        .await
        .ok();
    tracing::info!("easyisp-central stopped");
    result.map_err(ServeError::Http)
}
