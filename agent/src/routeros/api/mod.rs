//! RouterOS classic API driver (TCP 8728, API-SSL 8729; RouterOS 6 and 7; routeros.md §2),
//! implemented here: framing in `codec`, the tagged connection in `conn`, login and reconnect
//! in this file.
//!
//! Login tries the 6.43+ plain method and answers the pre-6.43 MD5 challenge if the router
//! replies with `=ret=`. A broken connection (`!fatal`, EOF, cancelled write, timeout) is
//! replaced on the next call; prints, sets and removes that fail on a reused connection are
//! retried once on a fresh one, adds and other commands are not (the router may have applied
//! them).

pub mod codec;
pub mod conn;

use std::sync::Arc;

use async_trait::async_trait;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::error::{Result, RouterError};
use super::url::{RouterUrl, Transport};
use super::value::{Id, Row, Text};
use super::{ConnectOptions, Router, tls};
use codec::{ReplyKind, encode_sentence, parse_reply, read_sentence};
use conn::{BoxStream, Conn, Response};

pub struct ApiRouter {
    url: RouterUrl,
    opts: ConnectOptions,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl ApiRouter {
    /// Connects and logs in now, so a wrong password or address fails early.
    pub async fn connect(url: RouterUrl, opts: ConnectOptions) -> Result<Self> {
        if !matches!(url.transport, Transport::Api | Transport::ApiSsl) {
            return Err(RouterError::Protocol(format!(
                "{} is not an API URL",
                url.transport.scheme()
            )));
        }
        let router = ApiRouter {
            url,
            opts,
            conn: tokio::sync::Mutex::new(None),
        };
        router.connection().await?;
        Ok(router)
    }

    /// The current connection, or a new one when there is none or it broke.
    /// Returns whether the connection was reused.
    async fn connection(&self) -> Result<(Arc<Conn>, bool)> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok((c.clone(), true));
        }
        let fresh = tokio::time::timeout(self.opts.timeout, self.open())
            .await
            .map_err(|_| RouterError::timeout(self.opts.timeout))??;
        let fresh = Arc::new(fresh);
        *slot = Some(fresh.clone());
        Ok((fresh, false))
    }

    async fn open(&self) -> Result<Conn> {
        let addr = (self.url.host.as_str(), self.url.port);
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| RouterError::Unreachable(format!("{}: {e}", self.describe())))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: BoxStream = if self.url.transport == Transport::ApiSsl {
            let config = tls::client_config(self.url.fingerprint)?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = tls::server_name(&self.url.host)?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                let msg = format!("TLS handshake with {}: {e}", self.describe());
                if msg.contains("does not match the pinned") {
                    RouterError::Pinning(msg)
                } else {
                    RouterError::Unreachable(msg)
                }
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        login(&mut stream, &self.url.user, self.opts.password.expose()).await?;
        info!(router = %self.describe(), "logged in over the RouterOS API");
        Ok(Conn::start(stream))
    }

    async fn call(&self, words: Vec<Vec<u8>>, idempotent: bool) -> Result<Response> {
        let mut rows = Vec::new();
        let mut resp = self
            .call_each(words, idempotent, &mut |row| rows.push(row))
            .await?;
        resp.rows = rows;
        Ok(resp)
    }

    /// A command whose `!re` rows go to `on_row` as they arrive. An idempotent one is retried
    /// once on a fresh connection, unless rows were handed over already.
    async fn call_each(
        &self,
        words: Vec<Vec<u8>>,
        idempotent: bool,
        on_row: &mut (dyn FnMut(Row) + Send),
    ) -> Result<Response> {
        let (conn, reused) = self.connection().await?;
        let mut visited = 0usize;
        let first = self
            .call_on(&conn, words.clone(), &mut |row| {
                visited += 1;
                on_row(row);
            })
            .await;
        match first {
            Err(e) if e.is_connection_error() && reused && idempotent && visited == 0 => {
                debug!(error = %e, "API connection went stale; retrying on a new one");
                let (conn, _) = self.connection().await?;
                self.call_on(&conn, words, on_row).await
            }
            other => other,
        }
    }

    async fn call_on(
        &self,
        conn: &Conn,
        words: Vec<Vec<u8>>,
        on_row: &mut (dyn FnMut(Row) + Send),
    ) -> Result<Response> {
        let resp =
            match tokio::time::timeout(self.opts.timeout, conn.call_each(words, on_row)).await {
                Ok(r) => r?,
                Err(_) => {
                    // A router that stopped answering is as good as gone; start afresh next time.
                    conn.mark_broken("timed out");
                    return Err(RouterError::timeout(self.opts.timeout));
                }
            };
        if let Some(trap) = resp.traps.first() {
            let mut message = trap.text("message").to_string_lossy();
            for t in &resp.traps[1..] {
                message.push_str("; ");
                message.push_str(&t.text("message").to_string_lossy());
            }
            return Err(RouterError::from_router_message(&message));
        }
        Ok(resp)
    }

    fn log_write(&self, verb: &str, menu: &str, id: Option<&Id>, attrs: &[(&str, Text)]) {
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
        info!(router = %self.describe(), transport = "api", verb, menu, id = ?id.map(Id::as_str), properties = ?keys, "router change");
    }
}

fn attr_word(key: &str, value: &Text) -> Vec<u8> {
    let mut w = Vec::with_capacity(key.len() + value.as_bytes().len() + 2);
    w.push(b'=');
    w.extend_from_slice(key.as_bytes());
    w.push(b'=');
    w.extend_from_slice(value.as_bytes());
    w
}

fn print_words(menu: &str, query: &[(&str, Text)], proplist: &[&str]) -> Vec<Vec<u8>> {
    let mut words = vec![format!("{menu}/print").into_bytes()];
    if !proplist.is_empty() {
        words.push(format!("=.proplist={}", proplist.join(",")).into_bytes());
    }
    for (k, v) in query {
        let mut w = format!("?{k}=").into_bytes();
        w.extend_from_slice(v.as_bytes());
        words.push(w);
    }
    words
}

fn command_words(menu: &str, command: &str, attrs: &[(&str, Text)]) -> Vec<Vec<u8>> {
    let mut words = vec![format!("{menu}/{command}").into_bytes()];
    words.extend(attrs.iter().map(|(k, v)| attr_word(k, v)));
    words
}

/// `00` + hex(md5(0x00 ‖ password ‖ challenge)) for pre-6.43 routers (routeros.md §2.5).
pub fn challenge_response(password: &[u8], challenge_hex: &str) -> Result<String> {
    let challenge = hex_decode(challenge_hex)
        .ok_or_else(|| RouterError::Protocol("login challenge is not hex".into()))?;
    let mut h = Md5::new();
    h.update([0u8]);
    h.update(password);
    h.update(&challenge);
    let digest = h.finalize();
    Ok(format!(
        "00{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Sends one untagged sentence and reads replies up to `!done` (used before the reader starts).
async fn exchange(stream: &mut BoxStream, words: &[Vec<u8>]) -> Result<(Row, Vec<Row>)> {
    let frame = encode_sentence(words).map_err(|e| RouterError::Protocol(e.to_string()))?;
    let io = |e: std::io::Error| RouterError::Unreachable(format!("during login: {e}"));
    stream.write_all(&frame).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut traps = Vec::new();
    // Bounded: a login exchange is a handful of sentences.
    for _ in 0..64 {
        let reply = parse_reply(read_sentence(stream).await.map_err(io)?)
            .map_err(|e| RouterError::Protocol(e.to_string()))?;
        match reply.kind {
            ReplyKind::Done => return Ok((reply.attrs, traps)),
            ReplyKind::Trap => traps.push(reply.attrs),
            ReplyKind::Fatal => {
                let reason = reply.reason.to_string_lossy();
                return Err(match RouterError::from_router_message(&reason) {
                    RouterError::Other(m) => RouterError::Unreachable(m),
                    e => e,
                });
            }
            ReplyKind::Re | ReplyKind::Empty => {}
        }
    }
    Err(RouterError::Protocol("login reply never ended".into()))
}

fn login_error(traps: &[Row]) -> RouterError {
    let msg = traps[0].text("message").to_string_lossy();
    match RouterError::from_router_message(&msg) {
        // Any refusal of /login is a credentials problem for the technician.
        RouterError::AuthFailed | RouterError::Other(_) | RouterError::InvalidValue { .. } => {
            RouterError::AuthFailed
        }
        e => e,
    }
}

async fn login(stream: &mut BoxStream, user: &str, password: &str) -> Result<()> {
    let name = attr_word("name", &Text::from(user));
    let words = vec![
        b"/login".to_vec(),
        name.clone(),
        attr_word("password", &Text::from(password)),
    ];
    let (done, traps) = exchange(stream, &words).await?;
    if !traps.is_empty() {
        return Err(login_error(&traps));
    }
    let Some(challenge) = done.string("ret") else {
        return Ok(());
    };
    // Pre-6.43 router: it ignored the password and sent an MD5 challenge.
    let response = challenge_response(password.as_bytes(), &challenge)?;
    let words = vec![
        b"/login".to_vec(),
        name,
        attr_word("response", &Text::from(response)),
    ];
    let (_, traps) = exchange(stream, &words).await?;
    if !traps.is_empty() {
        return Err(login_error(&traps));
    }
    Ok(())
}

#[async_trait]
impl Router for ApiRouter {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    async fn print(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
    ) -> Result<Vec<Row>> {
        Ok(self
            .call(print_words(menu, query, proplist), true)
            .await?
            .rows)
    }

    async fn print_each(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
        visit: &mut (dyn FnMut(Row) + Send),
    ) -> Result<()> {
        self.call_each(print_words(menu, query, proplist), true, visit)
            .await?;
        Ok(())
    }

    async fn add(&self, menu: &str, attrs: &[(&str, Text)]) -> Result<Id> {
        self.log_write("add", menu, None, attrs);
        let resp = self.call(command_words(menu, "add", attrs), false).await?;
        resp.done
            .string("ret")
            .map(Id)
            .ok_or_else(|| RouterError::Protocol("add returned no =ret=".into()))
    }

    async fn set(&self, menu: &str, id: &Id, attrs: &[(&str, Text)]) -> Result<()> {
        self.log_write("set", menu, Some(id), attrs);
        let mut all = vec![(".id", Text::from(id.as_str()))];
        all.extend(attrs.iter().cloned());
        // `set` is idempotent: retrying it on a fresh connection is safe.
        self.call(command_words(menu, "set", &all), true).await?;
        Ok(())
    }

    async fn remove(&self, menu: &str, id: &Id) -> Result<()> {
        self.log_write("remove", menu, Some(id), &[]);
        let words = command_words(menu, "remove", &[(".id", Text::from(id.as_str()))]);
        // A repeated remove answers `no such item`, which callers treat as done.
        self.call(words, true).await?;
        Ok(())
    }

    async fn command(&self, menu: &str, command: &str, args: &[(&str, Text)]) -> Result<Vec<Row>> {
        self.log_write(command, menu, None, args);
        let resp = self.call(command_words(menu, command, args), false).await?;
        if resp.rows.is_empty() && !resp.done.0.is_empty() {
            return Ok(vec![resp.done]);
        }
        Ok(resp.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_challenge_matches_the_vendor_example() {
        // routeros.md §2.5: user admin, empty password.
        let r = challenge_response(b"", "93b438ec9b80057c06dd9fe67d56aa9a").unwrap();
        assert_eq!(r, "00e134102a9d330dd7b1849fedfea3cb57");
        assert!(challenge_response(b"", "xyz").is_err());
    }

    #[test]
    fn command_words_keep_raw_bytes() {
        let w = command_words(
            "/ppp/secret",
            "add",
            &[("name", Text::new(b"caf\xe9=x".to_vec()))],
        );
        assert_eq!(w[0], b"/ppp/secret/add");
        assert_eq!(w[1], b"=name=caf\xe9=x");
    }
}
