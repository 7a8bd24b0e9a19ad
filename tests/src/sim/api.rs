//! The classic API server (8728 plain, 8729 TLS; routeros.md §2): login flows gated by the
//! emulated version, `.tag` echo, `!re/!done/!trap/!fatal/!empty`, query words, `.proplist`,
//! `listen` with `/cancel`, and `/quit`. Commands run through `command::execute`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::command::{self, CmdError, Origin, Outcome, Request};
use super::faults::{Action, Service};
use super::schema;
use super::server::Sim;
use super::state::{Bytes, Rendered};
use super::wire;

type Sentence = Vec<Bytes>;

fn w(s: &str) -> Bytes {
    s.as_bytes().to_vec()
}

fn attr(k: &str, v: &[u8]) -> Bytes {
    [b"=", k.as_bytes(), b"=", v].concat()
}

/// Sends sentences to the connection's writer task.
#[derive(Clone)]
struct Out {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl Out {
    fn send(&self, reply: &str, tag: Option<&Bytes>, attrs: Vec<Bytes>) {
        let mut s: Sentence = vec![w(reply)];
        if let Some(t) = tag {
            s.push([b".tag=".as_slice(), t].concat());
        }
        s.extend(attrs);
        let _ = self.tx.send(wire::encode_sentence(&s));
    }
    fn trap(&self, tag: Option<&Bytes>, message: &str, category: Option<u8>) {
        let mut attrs = Vec::new();
        if let Some(c) = category {
            attrs.push(attr("category", c.to_string().as_bytes()));
        }
        attrs.push(attr("message", message.as_bytes()));
        self.send("!trap", tag, attrs);
    }
    fn done(&self, tag: Option<&Bytes>) {
        self.send("!done", tag, Vec::new());
    }
}

/// The pieces of one command sentence.
#[derive(Debug, Default)]
struct Parsed {
    command: String,
    args: Vec<(String, Bytes)>,
    queries: Vec<Bytes>,
    proplist: Option<Vec<String>>,
    tag: Option<Bytes>,
}

fn parse(words: Sentence) -> Parsed {
    let mut p = Parsed::default();
    let mut it = words.into_iter();
    if let Some(c) = it.next() {
        p.command = String::from_utf8_lossy(&c).into_owned();
    }
    for word in it {
        if let Some(rest) = word.strip_prefix(b"=") {
            let (k, v) = match rest.iter().position(|b| *b == b'=') {
                Some(i) => (
                    String::from_utf8_lossy(&rest[..i]).into_owned(),
                    rest[i + 1..].to_vec(),
                ),
                None => (String::from_utf8_lossy(rest).into_owned(), Vec::new()),
            };
            if k == ".proplist" {
                p.proplist = Some(
                    String::from_utf8_lossy(&v)
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            } else {
                p.args.push((k, v));
            }
        } else if let Some(q) = word.strip_prefix(b"?") {
            p.queries.push(q.to_vec());
        } else if let Some(t) = word.strip_prefix(b".tag=") {
            p.tag = Some(t.to_vec());
        }
    }
    p
}

fn random16() -> [u8; 16] {
    let mut out = [0u8; 16];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// `"00" + hex(md5(0x00 ‖ password ‖ challenge))` (routeros.md §2.5).
pub fn challenge_response(password: &[u8], challenge: &[u8]) -> String {
    let mut h = Md5::new();
    h.update([0u8]);
    h.update(password);
    h.update(challenge);
    format!("00{}", hex::encode(h.finalize()))
}

/// Commands refused before login that a client may send before the router closes.
const MAX_BEFORE_LOGIN: u32 = 8;

struct Conn {
    sim: Arc<Sim>,
    out: Out,
    logged_in: bool,
    /// Sentences refused before login; the router gives up on such clients.
    refused_before_login: u32,
    challenge: Option<[u8; 16]>,
    listeners: HashMap<Bytes, CancellationToken>,
    closing: CancellationToken,
}

/// Serves one API connection until the client leaves, `/quit`, or a fatal framing error.
pub async fn serve<S>(sim: Arc<Sim>, io: S)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut rd = tokio::io::BufReader::new(rd);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let closing = CancellationToken::new();
    let writer_closing = closing.clone();
    let writer = tokio::spawn(async move {
        while let Some(mut buf) = rx.recv().await {
            // Coalesce queued sentences into one write: a 10,000-row print is one burst.
            while buf.len() < (1 << 20) {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        writer_closing.cancel();
    });
    let mut conn = Conn {
        sim,
        out: Out { tx },
        logged_in: false,
        refused_before_login: 0,
        challenge: None,
        listeners: HashMap::new(),
        closing: closing.clone(),
    };
    loop {
        let sentence = tokio::select! {
            s = wire::read_sentence(&mut rd) => s,
            _ = closing.cancelled() => break,
        };
        match sentence {
            Ok(words) => {
                if !conn.handle(words).await {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "api connection ended");
                break;
            }
        }
    }
    for t in conn.listeners.values() {
        t.cancel();
    }
    drop(conn);
    let _ = writer.await;
}

impl Conn {
    /// Handles one sentence; `false` closes the connection.
    async fn handle(&mut self, words: Sentence) -> bool {
        let p = parse(words);
        let tag = p.tag.clone();
        if p.command == "/quit" {
            self.out
                .send("!fatal", None, vec![w("session terminated on request")]);
            return false;
        }
        if p.command == "/login" {
            self.login(&p);
            return true;
        }
        if !self.logged_in {
            self.refused_before_login += 1;
            if self.refused_before_login > MAX_BEFORE_LOGIN {
                // The vendor documents a `!fatal` for too many commands before login; the
                // exact reason text is not documented [U].
                self.out
                    .send("!fatal", None, vec![w("too many commands before login")]);
                return false;
            }
            self.out.trap(tag.as_ref(), "not logged in", None);
            self.out.done(tag.as_ref());
            return true;
        }
        if p.command == "/cancel" {
            self.cancel(&p);
            return true;
        }
        match self.sim.before_request(Service::Api).await {
            Action::Proceed => {}
            Action::Fail { message, .. } => {
                self.out.trap(tag.as_ref(), &message, None);
                self.out.done(tag.as_ref());
                return true;
            }
            Action::Hang => return true,
        }
        let path = p.command.trim_start_matches('/').to_owned();
        let (menu_path, verb) = match path.rsplit_once('/') {
            Some((m, v)) => (m.to_owned(), v.to_owned()),
            None => (String::new(), path.clone()),
        };
        if verb == "listen" {
            self.listen(&menu_path, p);
            return true;
        }
        let req = Request {
            path: menu_path,
            verb,
            args: p.args,
            queries: p.queries,
            proplist: p.proplist,
        };
        let (result, empty_reply) = {
            let mut st = self.sim.state();
            let r = command::execute(&mut st, &req, Origin::Api, Instant::now(), Utc::now());
            (r, st.version.empty_reply())
        };
        match result {
            Ok(Outcome::Rows(rows)) => {
                if rows.is_empty() && empty_reply {
                    self.out.send("!empty", tag.as_ref(), Vec::new());
                }
                for r in rows {
                    self.out.send(
                        "!re",
                        tag.as_ref(),
                        r.iter().map(|(k, v)| attr(k, v)).collect(),
                    );
                }
                self.out.done(tag.as_ref());
            }
            Ok(Outcome::Ret(v)) => self.out.send("!done", tag.as_ref(), vec![attr("ret", &v)]),
            Ok(Outcome::Done) => self.out.done(tag.as_ref()),
            Err(e) => {
                let cat = e.category();
                let msg = match &e {
                    CmdError::NoSuchPath(_) => "no such command prefix".to_owned(),
                    other => other.to_string(),
                };
                self.out.trap(tag.as_ref(), &msg, cat);
                self.out.done(tag.as_ref());
            }
        }
        true
    }

    fn login(&mut self, p: &Parsed) {
        let tag = p.tag.as_ref();
        let version = self.sim.version();
        let creds = self.sim.creds();
        let arg = |k: &str| p.args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let name = arg("name").map(|n| String::from_utf8_lossy(&n).into_owned());
        if let (Some(name), Some(response)) = (&name, arg("response")) {
            let ok = version.challenge_login()
                && self.challenge.is_some_and(|c| {
                    creds.check(name, creds.password.as_bytes())
                        && challenge_response(creds.password.as_bytes(), &c).as_bytes() == response
                });
            self.challenge = None;
            if ok {
                self.logged_in = true;
                self.out.done(tag);
            } else {
                tracing::info!(user = %name, "api login failure (challenge)");
                self.out.trap(tag, "cannot log in", None);
                self.out.done(tag);
            }
            return;
        }
        if let (Some(name), Some(password), true) = (&name, arg("password"), version.plain_login())
        {
            if creds.check(name, &password) {
                self.logged_in = true;
                self.out.done(tag);
            } else {
                tracing::info!(user = %name, "api login failure");
                self.out
                    .trap(tag, "invalid user name or password (6)", None);
                self.out.done(tag);
            }
            return;
        }
        if version.challenge_login() {
            // Before 6.43 a router ignores `=name=`/`=password=` and answers with a challenge.
            let c = random16();
            self.challenge = Some(c);
            self.out
                .send("!done", tag, vec![attr("ret", hex::encode(c).as_bytes())]);
        } else {
            self.out
                .trap(tag, "invalid user name or password (6)", None);
            self.out.done(tag);
        }
    }

    fn cancel(&mut self, p: &Parsed) {
        let target = p
            .args
            .iter()
            .find(|(k, _)| k == "tag")
            .map(|(_, v)| v.clone());
        let tags: Vec<Bytes> = match target {
            Some(t) => vec![t],
            None => self.listeners.keys().cloned().collect(),
        };
        for t in tags {
            if let Some(tok) = self.listeners.remove(&t) {
                tok.cancel();
                self.out.trap(Some(&t), "interrupted", Some(2));
                self.out.done(Some(&t));
            }
        }
        self.out.done(p.tag.as_ref());
    }

    /// `listen`: streams changed rows (`=.dead=yes` for removed ones) until `/cancel`.
    fn listen(&mut self, menu_path: &str, p: Parsed) {
        let tag = p.tag.clone().unwrap_or_default();
        let Some(menu) = schema::menu(menu_path) else {
            self.out
                .trap(p.tag.as_ref(), "no such command prefix", Some(0));
            self.out.done(p.tag.as_ref());
            return;
        };
        let token = self.closing.child_token();
        self.listeners.insert(tag.clone(), token.clone());
        let sim = self.sim.clone();
        let out = self.out.clone();
        let snapshot = |sim: &Sim| -> (u64, BTreeMap<Bytes, Rendered>) {
            let st = sim.state();
            let now = Instant::now();
            let wall = Utc::now();
            let rows = st
                .table(menu.path)
                .rows()
                .map(|r| {
                    let mut rendered = st.render(menu, r, now, wall);
                    rendered.retain(|(k, _)| k != "uptime");
                    (super::state::format_id(r.id).into_bytes(), rendered)
                })
                .collect();
            (st.generation, rows)
        };
        // What the menu holds when the command is read: a change made after it, even before
        // the streaming task first runs, is reported, as the router reports it.
        let (mut generation, mut last) = snapshot(&sim);
        tokio::spawn(async move {
            let tag = Some(tag);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                }
                if sim.state().generation == generation {
                    continue;
                }
                let (g, now_rows) = snapshot(&sim);
                generation = g;
                for (id, row) in &now_rows {
                    if last.get(id) != Some(row) {
                        out.send(
                            "!re",
                            tag.as_ref(),
                            row.iter().map(|(k, v)| attr(k, v)).collect(),
                        );
                    }
                }
                for id in last.keys() {
                    if !now_rows.contains_key(id) {
                        out.send(
                            "!re",
                            tag.as_ref(),
                            vec![attr(".id", id), attr(".dead", b"yes")],
                        );
                    }
                }
                last = now_rows;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_challenge_vector_matches() {
        let c = hex::decode("93b438ec9b80057c06dd9fe67d56aa9a").unwrap();
        assert_eq!(
            challenge_response(b"", &c),
            "00e134102a9d330dd7b1849fedfea3cb57"
        );
    }
}
