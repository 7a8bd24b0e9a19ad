//! A lazily connected, shared router connection. A connection error drops it so the next user
//! reconnects; the password stays inside (`Secret`) and is never logged.

use crate::config::Config;
use crate::routeros::{ConnectOptions, Router, RouterError, RouterUrl, connect};
use easyisp_protocol::Secret;
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone)]
pub struct RouterLink {
    url: RouterUrl,
    options: Arc<ConnectOptionsSource>,
    current: Arc<Mutex<Option<Arc<dyn Router>>>>,
}

struct ConnectOptionsSource {
    password: Secret<String>,
    timeout: std::time::Duration,
    known_hosts: std::path::PathBuf,
}

impl RouterLink {
    pub fn new(config: &Config) -> RouterLink {
        RouterLink {
            url: config.router_url.clone(),
            options: Arc::new(ConnectOptionsSource {
                password: config.router_password.clone(),
                timeout: config.router_timeout,
                known_hosts: config.known_hosts.clone(),
            }),
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// The connected router, connecting first if needed.
    pub async fn get(&self) -> Result<Arc<dyn Router>, RouterError> {
        let mut current = self.current.lock().await;
        if let Some(router) = current.as_ref() {
            return Ok(router.clone());
        }
        let mut options = ConnectOptions::new(self.options.password.clone());
        options.timeout = self.options.timeout;
        options.known_hosts = Some(self.options.known_hosts.clone());
        let router = connect(&self.url, options).await?;
        tracing::info!(url = %self.url, "connected to the router");
        *current = Some(router.clone());
        Ok(router)
    }

    /// Forgets the connection after a connection error, so the next `get` reconnects.
    pub async fn reset_if(&self, error: &RouterError) {
        if error.is_connection_error() {
            *self.current.lock().await = None;
        }
    }
}
