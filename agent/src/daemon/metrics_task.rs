//! The metrics task: a minimal HTTP/1.1 server on `agent.metrics_listen` answering
//! `GET /metrics` with [`metrics::render`] of a fresh [`Snapshot`]. One request per
//! connection, no keep-alive, no body: Prometheus needs nothing more, and a hand-written
//! handler keeps an HTTP framework out of a daemon that runs on a Raspberry Pi.
//!
//! It only reads (the replica through its read path, the counters in `Shared`).

use super::Shared;
use super::metrics::{self, Snapshot, SyncSnapshot};
use super::state::{self, LastReconcile};
use crate::replica::store;
use chrono::Utc;
use easyisp_protocol::{CustomerStatus, status_at};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request head larger than this is refused; Prometheus sends a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// A client that does not send its request (or read the answer) within this is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn run(shared: Shared, listener: TcpListener, cancel: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = shared.clone();
                connections.spawn(async move {
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, serve(&shared, stream)).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
}

async fn serve(shared: &Shared, mut stream: TcpStream) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let response = match route(&head) {
        Route::Metrics => match snapshot(shared).await {
            Ok(s) => response("200 OK", CONTENT_TYPE, &metrics::render(&s)),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the replica");
                response(
                    "503 Service Unavailable",
                    "text/plain",
                    "cannot read the replica\n",
                )
            }
        },
        Route::Index => response(
            "200 OK",
            "text/plain",
            "easyisp-agent: metrics at /metrics\n",
        ),
        Route::NotFound => response("404 Not Found", "text/plain", "not found\n"),
        Route::NotAllowed => response("405 Method Not Allowed", "text/plain", "use GET\n"),
        Route::Bad => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Index,
    NotFound,
    NotAllowed,
    Bad,
}

/// Where a request goes, from its request line (`GET /metrics HTTP/1.1`).
fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::NotAllowed;
    }
    // Prometheus may add query parameters; they change nothing here.
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/" => Route::Index,
        _ => Route::NotFound,
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Gathers one scrape: gauges from the replica (one read), counters from `Shared`.
pub async fn snapshot(shared: &Shared) -> crate::replica::Result<Snapshot> {
    let router = shared.config.router_id;
    let now = Utc::now();
    let from_replica = shared
        .replica
        .read(move |conn| {
            let mut by_status: BTreeMap<String, u64> = CustomerStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
            store::for_each_customer(conn, |c| {
                if !c.is_deleted() && c.router() == Some(router) {
                    *by_status
                        .entry(status_at(c.status_inputs(), now).as_str().to_string())
                        .or_default() += 1;
                }
            })?;
            let oldest: Option<i64> =
                conn.query_row("SELECT MIN(created_at) FROM outbox", [], |r| r.get(0))?;
            Ok((
                by_status,
                store::active_session_count(conn)?,
                state::get_json::<bool>(conn, state::ROUTER_REACHABLE)?.unwrap_or(false),
                state::get_json::<LastReconcile>(conn, state::LAST_RECONCILE)?,
                store::outbox_depth(conn)?,
                oldest,
                state::get_u64(conn, state::SYNC_DOWN_APPLIED)?,
                state::held(conn)?.is_some(),
            ))
        })
        .await?;
    let (by_status, sessions, reachable, last, depth, oldest, applied, held) = from_replica;
    let (reconciles_ok, reconciles_failed) = shared.metrics.reconciles();
    let oldest_age = oldest
        .map(|ms| (now.timestamp_millis() - ms).max(0) as u64)
        .map(Duration::from_millis)
        .unwrap_or_default();
    Ok(Snapshot {
        customers_by_status: by_status,
        active_sessions: sessions,
        router_reachable: reachable,
        router_errors_total: shared.metrics.router_errors(),
        last_reconcile: last.map(|r| (Duration::from_millis(r.duration_ms), r.at.timestamp())),
        reconciles_ok,
        reconciles_failed,
        outbox_depth: depth,
        outbox_oldest_age: oldest_age,
        sync: shared.config.central.as_ref().map(|_| SyncSnapshot {
            applied_seq: applied,
            broker_connected: shared.metrics.broker_connected(),
        }),
        clock_synchronised: shared.clock_synchronised(),
        mass_cutoff_held: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(
            route("GET /metrics?x=1 HTTP/1.0\r\nHost: a\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::Index);
        assert_eq!(route("GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route("garbage\r\n\r\n"), Route::Bad);
        assert_eq!(route("GET /metrics SPDY/3\r\n\r\n"), Route::Bad);
    }

    #[test]
    fn a_response_says_its_length_and_closes() {
        let r = response("200 OK", CONTENT_TYPE, "abc\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.contains("Connection: close\r\n\r\nabc\n"));
    }
}
