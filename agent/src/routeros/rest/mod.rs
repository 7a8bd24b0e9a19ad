//! RouterOS REST driver (RouterOS 7.1+, routeros.md §1): reqwest over HTTPS (rustls, pinned
//! fingerprint or platform roots) or HTTP, Basic auth, keep-alive, per-request timeout.
//!
//! Reads are `GET /rest/<menu>?k=v&.proplist=…` (one request per menu), parsed row by row as
//! the body arrives (`json::Elements`), so a listing's body is never held whole; writes are PUT (add),
//! PATCH (set), DELETE (remove) and POST (commands). Error bodies
//! `{"error":N,"message":…,"detail":…}` become typed errors via
//! [`RouterError::from_router_message`].

pub mod json;

use async_trait::async_trait;
use easyisp_protocol::Secret;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use tracing::{debug, info};

use super::error::{Result, RouterError};
use super::url::{RouterUrl, Transport};
use super::value::{Id, Row, Text};
use super::{ConnectOptions, Router, tls};
use json::Json;

/// RFC 3986 unreserved characters stay as they are; everything else is %-encoded (byte-wise,
/// so non-UTF-8 names survive).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Path segments additionally keep `*` (ids like `*1F`, routeros.md §1.3).
const SEGMENT: &AsciiSet = &QUERY.remove(b'*');

pub struct RestRouter {
    client: reqwest::Client,
    base: String,
    url: RouterUrl,
    password: Secret<String>,
}

impl RestRouter {
    pub fn new(url: RouterUrl, opts: ConnectOptions) -> Result<Self> {
        let scheme = match url.transport {
            Transport::RestHttps => "https",
            Transport::RestHttp => "http",
            other => {
                return Err(RouterError::Protocol(format!(
                    "{} is not a REST URL",
                    other.scheme()
                )));
            }
        };
        // reqwest built with `rustls-no-provider` panics at build() without a process-wide
        // provider, even for plain HTTP.
        tls::install_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(50))
            .pool_max_idle_per_host(1)
            .tcp_keepalive(std::time::Duration::from_secs(30));
        if url.transport == Transport::RestHttps {
            builder = builder.tls_backend_preconfigured(tls::client_config(url.fingerprint)?);
        }
        let client = builder
            .build()
            .map_err(|e| RouterError::Protocol(format!("HTTP client setup: {}", chain(&e))))?;
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let base = format!("{scheme}://{host}:{}/rest", url.port);
        Ok(RestRouter {
            client,
            base,
            url,
            password: opts.password,
        })
    }

    /// One request; GET, PATCH and DELETE are retried once after a connection error (a pooled
    /// keep-alive connection the router closed, e.g. after a reboot). PUT and POST are not:
    /// the router may have applied them.
    async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Json> {
        let idempotent = matches!(method, Method::GET | Method::PATCH | Method::DELETE);
        match self.request_once(method.clone(), path, body.clone()).await {
            Err(e) if idempotent && e.is_connection_error() => {
                debug!(error = %e, "REST connection failed; retrying once");
                self.request_once(method, path, body).await
            }
            other => other,
        }
    }

    async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Json> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(map_reqwest)?;
        if status.is_success() {
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(Json::Arr(Vec::new()));
            }
            return json::parse(&bytes)
                .map_err(|e| RouterError::Protocol(format!("bad JSON from router: {e}")));
        }
        Err(error_from_response(status, &bytes, path))
    }

    /// Sends one request and returns the response once its headers are in.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.base, path);
        debug!(%method, %url, "rest request");
        let mut req = self
            .client
            .request(method, &url)
            .basic_auth(&self.url.user, Some(self.password.expose()));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        req.send().await.map_err(map_reqwest)
    }

    /// One GET whose rows go to `visit` as the body arrives. Returns how many rows it visited
    /// next to the outcome, so a caller retries only a read that visited none.
    async fn get_each(
        &self,
        path: &str,
        visit: &mut (dyn FnMut(Row) + Send),
    ) -> (usize, Result<()>) {
        let mut visited = 0;
        let outcome = async {
            let mut resp = self.send(Method::GET, path, None).await?;
            let status = resp.status();
            if !status.is_success() {
                let bytes = resp.bytes().await.map_err(map_reqwest)?;
                return Err(error_from_response(status, &bytes, path));
            }
            let mut each = |value: Json| -> Result<()> {
                for row in rows_from(value)? {
                    visited += 1;
                    visit(row);
                }
                Ok(())
            };
            let mut elements = json::Elements::default();
            while let Some(piece) = resp.chunk().await.map_err(map_reqwest)? {
                elements.feed(&piece, &mut each)?;
            }
            match elements.finish() {
                Ok(None) => Ok(()),
                Ok(Some(whole)) => each(whole),
                // A body of nothing but whitespace is an empty listing.
                Err(Err(json::NotJson(bytes))) if bytes.trim_ascii().is_empty() => Ok(()),
                Err(Err(json::NotJson(_))) => Err(json::JsonError("not JSON".into()).into()),
                Err(Ok(e)) => Err(e.into()),
            }
        }
        .await;
        (visited, outcome)
    }

    fn log_write(&self, verb: &str, menu: &str, id: Option<&Id>, attrs: &[(&str, Text)]) {
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
        info!(router = %self.describe(), transport = "rest", verb, menu, id = ?id.map(Id::as_str), properties = ?keys, "router change");
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

fn map_reqwest(e: reqwest::Error) -> RouterError {
    let msg = chain(&e);
    if e.is_timeout() {
        RouterError::Timeout(msg)
    } else if msg.contains("fingerprint") && msg.contains("does not match") {
        RouterError::Pinning(msg)
    } else {
        RouterError::Unreachable(msg)
    }
}

fn error_from_response(status: StatusCode, body: &[u8], path: &str) -> RouterError {
    let (mut message, mut detail) = (None, None);
    if let Ok(Json::Obj(fields)) = json::parse(body) {
        for (k, v) in fields {
            if let Json::Str(s) = v {
                let s = String::from_utf8_lossy(&s).into_owned();
                match k.as_slice() {
                    b"message" => message = Some(s),
                    b"detail" => detail = Some(s),
                    _ => {}
                }
            }
        }
    }
    let text = detail
        .clone()
        .or(message.clone())
        .unwrap_or_else(|| status.to_string());
    match status {
        StatusCode::UNAUTHORIZED => RouterError::AuthFailed,
        StatusCode::NOT_FOUND if detail.is_none() => {
            RouterError::NotFound(format!("{path}: {text}"))
        }
        _ => match RouterError::from_router_message(&text) {
            RouterError::Other(m) if status.is_client_error() => {
                RouterError::InvalidValue { message: m }
            }
            RouterError::Other(m) => RouterError::Other(format!("HTTP {}: {m}", status.as_u16())),
            e => e,
        },
    }
}

pub(crate) fn rows_from(json: Json) -> Result<Vec<Row>> {
    match json {
        Json::Arr(items) => items.into_iter().map(row_from).collect(),
        obj @ Json::Obj(_) => Ok(vec![row_from(obj)?]),
        _ => Err(RouterError::Protocol(
            "expected a JSON array or object from the router".into(),
        )),
    }
}

impl From<json::JsonError> for RouterError {
    fn from(e: json::JsonError) -> Self {
        RouterError::Protocol(format!("bad JSON from router: {}", e.0))
    }
}

fn row_from(json: Json) -> Result<Row> {
    let Json::Obj(fields) = json else {
        return Err(RouterError::Protocol(
            "expected a JSON object per row".into(),
        ));
    };
    let mut row = Row::default();
    for (k, v) in fields {
        let key = String::from_utf8_lossy(&k).into_owned();
        let value = match v {
            Json::Str(s) => Text::new(s),
            Json::Num(n) => Text::from(n),
            Json::Bool(b) => Text::from(if b { "true" } else { "false" }),
            Json::Null | Json::Arr(_) | Json::Obj(_) => continue,
        };
        row.insert(key, value);
    }
    Ok(row)
}

fn encode_query(query: &[(&str, Text)], proplist: &[&str]) -> String {
    let mut parts: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                percent_encoding::percent_encode(v.as_bytes(), QUERY)
            )
        })
        .collect();
    if !proplist.is_empty() {
        parts.push(format!(
            ".proplist={}",
            utf8_percent_encode(&proplist.join(","), QUERY)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn id_path(menu: &str, id: &Id) -> String {
    format!("{menu}/{}", utf8_percent_encode(id.as_str(), SEGMENT))
}

fn body_of(attrs: &[(&str, Text)]) -> Vec<u8> {
    json::write_object(attrs.iter().map(|(k, v)| (*k, v.as_bytes())))
}

#[async_trait]
impl Router for RestRouter {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    async fn print(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
    ) -> Result<Vec<Row>> {
        let path = format!("{menu}{}", encode_query(query, proplist));
        rows_from(self.request(Method::GET, &path, None).await?)
    }

    async fn print_each(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
        visit: &mut (dyn FnMut(Row) + Send),
    ) -> Result<()> {
        let path = format!("{menu}{}", encode_query(query, proplist));
        match self.get_each(&path, visit).await {
            // As `request`: once, after a pooled connection the router closed; never after rows
            // were handed over, or the caller would see them twice.
            (0, Err(e)) if e.is_connection_error() => {
                debug!(error = %e, "REST connection failed; retrying once");
                self.get_each(&path, visit).await.1
            }
            (_, outcome) => outcome,
        }
    }

    async fn add(&self, menu: &str, attrs: &[(&str, Text)]) -> Result<Id> {
        self.log_write("add", menu, None, attrs);
        let reply = self
            .request(Method::PUT, menu, Some(body_of(attrs)))
            .await?;
        let row = rows_from(reply)?.into_iter().next().unwrap_or_default();
        row.id().or_else(|_| {
            row.string("ret")
                .map(Id)
                .ok_or_else(|| RouterError::Protocol("add returned no .id".into()))
        })
    }

    async fn set(&self, menu: &str, id: &Id, attrs: &[(&str, Text)]) -> Result<()> {
        self.log_write("set", menu, Some(id), attrs);
        self.request(Method::PATCH, &id_path(menu, id), Some(body_of(attrs)))
            .await?;
        Ok(())
    }

    async fn remove(&self, menu: &str, id: &Id) -> Result<()> {
        self.log_write("remove", menu, Some(id), &[]);
        self.request(Method::DELETE, &id_path(menu, id), None)
            .await?;
        Ok(())
    }

    async fn command(&self, menu: &str, command: &str, args: &[(&str, Text)]) -> Result<Vec<Row>> {
        self.log_write(command, menu, None, args);
        let path = format!("{menu}/{command}");
        rows_from(
            self.request(Method::POST, &path, Some(body_of(args)))
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encodes_raw_bytes_and_special_characters() {
        let q = encode_query(
            &[("name", Text::new(b"a@b c/\xe9".to_vec()))],
            &[".id", "name"],
        );
        assert_eq!(q, "?name=a%40b%20c%2F%E9&.proplist=.id%2Cname");
        assert_eq!(encode_query(&[], &[]), "");
        assert_eq!(id_path("/ppp/secret", &Id::from("*1F")), "/ppp/secret/*1F");
    }

    #[test]
    fn error_bodies_map_to_typed_errors() {
        let e = error_from_response(
            StatusCode::UNAUTHORIZED,
            br#"{"error":401,"message":"Unauthorized"}"#,
            "/x",
        );
        assert!(matches!(e, RouterError::AuthFailed));
        let e = error_from_response(
            StatusCode::NOT_FOUND,
            br#"{"error":404,"message":"Not Found"}"#,
            "/x",
        );
        assert!(matches!(e, RouterError::NotFound(_)));
        let e = error_from_response(
            StatusCode::BAD_REQUEST,
            br#"{"detail":"failure: secret with the same name already exists","error":400,"message":"Bad Request"}"#,
            "/x",
        );
        assert!(matches!(e, RouterError::AlreadyExists(_)));
        let e = error_from_response(
            StatusCode::BAD_REQUEST,
            br#"{"detail":"input does not match any value of profile","error":400,"message":"Bad Request"}"#,
            "/x",
        );
        assert!(matches!(e, RouterError::InvalidValue { .. }));
        let e = error_from_response(
            StatusCode::BAD_REQUEST,
            br#"{"detail":"Session closed","error":400,"message":"Bad Request"}"#,
            "/x",
        );
        assert!(matches!(e, RouterError::Timeout(_)));
        let e = error_from_response(StatusCode::INTERNAL_SERVER_ERROR, b"<html>", "/x");
        assert!(matches!(e, RouterError::Other(_)));
    }

    #[test]
    fn rows_accept_array_object_and_skip_nested() {
        let rows = rows_from(json::parse(br#"{"name":"r1","x":[1],"n":5}"#).unwrap()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text("n"), "5");
        assert!(rows[0].get("x").is_none());
        assert!(rows_from(Json::Str(vec![])).is_err());
    }
}
