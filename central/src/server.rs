//! Serving: opens storage, starts the HTTP listener and the retention job as tasks under one
//! cancellation token, and shuts everything down on SIGTERM/SIGINT (HTTP drains, then the
//! writer finishes its queue).

use crate::api::{self, ApiConfig, AppState};
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
    /// The MQTT listener address; recorded for the sync issue, not served yet.
    pub mqtt: String,
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
}

/// Runs until `shutdown` is cancelled.
pub async fn serve(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let data_dir = config.data_dir.clone();
    let storage =
        tokio::task::spawn_blocking(move || Storage::open(&data_dir, config.storage.clone()))
            .await
            .map_err(|e| ServeError::Http(std::io::Error::other(e)))??;
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.http,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(http = %local, mqtt = %config.mqtt, data_dir = %config.data_dir.display(),
        "easyisp-central is serving (the MQTT listener is recorded; sync is not enabled yet)");
    let tracker = TaskTracker::new();
    tracker.spawn(crate::retention::run(
        storage.clone(),
        config.retention_days,
        config.retention_interval,
        shutdown.child_token(),
    ));
    let app = api::router(AppState::new(storage.clone(), config.api.clone()));
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
    tokio::task::spawn_blocking(move || storage.shutdown())
        .await
        .ok();
    tracing::info!("easyisp-central stopped");
    result.map_err(ServeError::Http)
}
