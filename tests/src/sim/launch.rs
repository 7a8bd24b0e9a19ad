//! Starts every listener of the simulator on 127.0.0.1 and reports the bound ports as the
//! single JSON line tests read from stdout.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use super::faults::Service;
use super::server::{Sim, SimConfig, accept_loop, bind};
use super::{api, control, http, rest, ssh, tls};

/// The JSON line printed after binding.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortLine {
    pub rest: u16,
    pub rest_tls: u16,
    pub api: u16,
    pub api_ssl: u16,
    pub ssh: u16,
    pub control: u16,
    /// SHA-256 of the DER certificate used by REST-TLS and API-SSL, lower-case hex.
    pub rest_tls_fingerprint: String,
    /// SHA-256 of the SSH host key blob, lower-case hex (what libssh2's
    /// `host_key_hash(Sha256)` returns, hex-encoded).
    pub ssh_host_key_fingerprint: String,
    /// The certificate as PEM, for clients that trust it as a root instead of pinning.
    pub rest_tls_cert_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("binding a listener failed: {0}")]
    Bind(#[from] std::io::Error),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("SSH setup failed: {0}")]
    Ssh(#[from] ssh::SshError),
}

/// Binds everything, prints the port line, and serves until the process is killed.
pub async fn run(cfg: SimConfig) -> Result<(), LaunchError> {
    let sim = Sim::new(&cfg);
    let tls = tls::generate()?;
    let p = cfg.ports;
    let rest_l = bind(p.rest).await?;
    let rest_tls_l = bind(p.rest_tls).await?;
    let api_l = bind(p.api).await?;
    let api_ssl_l = bind(p.api_ssl).await?;
    let ssh_l = bind(p.ssh).await?;
    let control_l = bind(p.control).await?;
    let ssh_server = ssh::SshServer::new(sim.clone(), cfg.ssh_host_key_seed.as_deref())?;
    let line = PortLine {
        rest: rest_l.local_addr()?.port(),
        rest_tls: rest_tls_l.local_addr()?.port(),
        api: api_l.local_addr()?.port(),
        api_ssl: api_ssl_l.local_addr()?.port(),
        ssh: ssh_l.local_addr()?.port(),
        control: control_l.local_addr()?.port(),
        rest_tls_fingerprint: tls.fingerprint.clone(),
        ssh_host_key_fingerprint: ssh_server.fingerprint(),
        rest_tls_cert_pem: tls.cert_pem.clone(),
    };

    let s = sim.clone();
    tokio::spawn(accept_loop(
        sim.clone(),
        Service::Rest,
        rest_l,
        move |stream| {
            let s = s.clone();
            async move { http::serve(stream, move |req| rest::handle(s.clone(), req)).await }
        },
    ));
    let s = sim.clone();
    let acceptor = tls.acceptor.clone();
    tokio::spawn(accept_loop(
        sim.clone(),
        Service::Rest,
        rest_tls_l,
        move |stream| {
            let s = s.clone();
            let acceptor = acceptor.clone();
            async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => http::serve(tls, move |req| rest::handle(s.clone(), req)).await,
                    Err(e) => tracing::debug!(error = %e, "rest tls handshake failed"),
                }
            }
        },
    ));
    let s = sim.clone();
    tokio::spawn(accept_loop(
        sim.clone(),
        Service::Api,
        api_l,
        move |stream| api::serve(s.clone(), stream),
    ));
    let s = sim.clone();
    let acceptor = tls.acceptor.clone();
    tokio::spawn(accept_loop(
        sim.clone(),
        Service::Api,
        api_ssl_l,
        move |stream| {
            let s = s.clone();
            let acceptor = acceptor.clone();
            async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => api::serve(s, tls).await,
                    Err(e) => tracing::debug!(error = %e, "api-ssl handshake failed"),
                }
            }
        },
    ));
    let ssh_server = Arc::new(ssh_server);
    tokio::spawn(accept_loop(
        sim.clone(),
        Service::Ssh,
        ssh_l,
        move |stream| {
            let srv = ssh_server.clone();
            async move { srv.serve(stream).await }
        },
    ));
    // Redials are also driven by a ticker so that state dumps and sessions appear on time
    // even while nobody sends a request.
    let s = sim.clone();
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            iv.tick().await;
            let mut st = s.state();
            super::sessions::tick(&mut st, std::time::Instant::now());
        }
    });

    let json = serde_json::to_string(&line).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()?;
    drop(out);
    tracing::info!(version = %cfg.version, "routeros-sim ready");

    let s = sim.clone();
    loop {
        let (stream, _) = control_l.accept().await?;
        let s = s.clone();
        tokio::spawn(async move {
            http::serve(stream, move |req| control::handle(s.clone(), req)).await
        });
    }
}
