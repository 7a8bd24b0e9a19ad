//! One logged-in classic API connection: a writer shared by callers and a reader task that
//! demultiplexes replies by `.tag`, so several commands can be in flight at once.
//!
//! Cancellation safety: a caller whose future is dropped in the middle of writing a sentence
//! would leave half a frame on the socket, which desynchronises the router's parser. The
//! write guard marks the connection broken in that case, so the next call reconnects.
//! `!fatal`, EOF and read errors also mark it broken and fail every waiting call.
//!
//! Each call has a small bounded queue of replies: a listing of 10,000 `!re` sentences is
//! handed to its caller row by row (`call_each`) while the reader waits for room, instead of
//! piling up in memory. The reader then waits for the slowest caller, which only ever turns a
//! row into a typed object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::codec::{self, Reply, ReplyKind};
use crate::routeros::error::{Result, RouterError};
use crate::routeros::value::Row;

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub type BoxStream = Box<dyn Stream>;

type Pending = Arc<Mutex<HashMap<String, mpsc::Sender<Reply>>>>;

/// Replies queued per call before the reader waits for the caller.
const QUEUED_REPLIES: usize = 32;

/// What one command returned.
#[derive(Debug, Default)]
pub struct Response {
    pub rows: Vec<Row>,
    pub done: Row,
    pub traps: Vec<Row>,
}

pub struct Conn {
    writer: tokio::sync::Mutex<WriteHalf<BoxStream>>,
    pending: Pending,
    state: Arc<State>,
    next_tag: AtomicU64,
    reader: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    broken: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl State {
    fn break_with(&self, reason: String) {
        self.broken.store(true, Ordering::SeqCst);
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "connection closed".into())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// Starts the reader task on an already logged-in stream.
    pub fn start(stream: BoxStream) -> Conn {
        let (read, write) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let state: Arc<State> = Arc::default();
        let reader = tokio::spawn(read_loop(read, pending.clone(), state.clone()));
        Conn {
            writer: tokio::sync::Mutex::new(write),
            pending,
            state,
            next_tag: AtomicU64::new(1),
            reader,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.state.broken.load(Ordering::SeqCst)
    }

    pub fn mark_broken(&self, reason: &str) {
        self.state.break_with(reason.to_string());
    }

    /// Sends one command (its words without `.tag`) and collects replies up to `!done`.
    pub async fn call(&self, words: Vec<Vec<u8>>) -> Result<Response> {
        let mut rows = Vec::new();
        let mut resp = self.call_each(words, &mut |row| rows.push(row)).await?;
        resp.rows = rows;
        Ok(resp)
    }

    /// [`call`](Conn::call), handing each `!re` row to `on_row` as it arrives; the response's
    /// `rows` stay empty.
    pub async fn call_each(
        &self,
        words: Vec<Vec<u8>>,
        on_row: &mut (dyn FnMut(Row) + Send),
    ) -> Result<Response> {
        if self.is_broken() {
            return Err(RouterError::Unreachable(self.state.reason()));
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, mut rx) = mpsc::channel(QUEUED_REPLIES);
        self.pending
            .lock()
            .map_err(|_| RouterError::Protocol("API connection state poisoned".into()))?
            .insert(tag.clone(), tx);
        let _unregister = Unregister {
            pending: &self.pending,
            tag: &tag,
        };
        // The reader marks the connection broken before it drops all senders, so after this
        // check our sender is either dropped by the reader or the reader is still running.
        if self.is_broken() {
            return Err(RouterError::Unreachable(self.state.reason()));
        }
        let mut words = words;
        words.push(format!(".tag={tag}").into_bytes());
        let frame =
            codec::encode_sentence(&words).map_err(|e| RouterError::Protocol(e.to_string()))?;
        {
            let mut w = self.writer.lock().await;
            let mut guard = WriteGuard {
                state: &self.state,
                armed: true,
            };
            let res = async {
                w.write_all(&frame).await?;
                w.flush().await
            }
            .await;
            if let Err(e) = res {
                self.state.break_with(format!("write failed: {e}"));
                return Err(RouterError::Unreachable(format!("write failed: {e}")));
            }
            guard.armed = false;
        }
        let mut resp = Response::default();
        loop {
            let Some(reply) = rx.recv().await else {
                return Err(RouterError::Unreachable(self.state.reason()));
            };
            match reply.kind {
                ReplyKind::Re => on_row(reply.attrs),
                ReplyKind::Trap => resp.traps.push(reply.attrs),
                ReplyKind::Empty => {}
                ReplyKind::Done => {
                    resp.done = reply.attrs;
                    return Ok(resp);
                }
                // The reader turns !fatal into a closed channel; a tagged one is handled alike.
                ReplyKind::Fatal => {
                    return Err(RouterError::Unreachable(format!(
                        "router closed the API session: {}",
                        reply.reason
                    )));
                }
            }
        }
    }
}

/// Removes the caller's tag when its call ends or is dropped; late replies are then discarded.
struct Unregister<'a> {
    pending: &'a Pending,
    tag: &'a str,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(self.tag);
        }
    }
}

/// Marks the connection broken if dropped while a frame may be half-written.
struct WriteGuard<'a> {
    state: &'a State,
    armed: bool,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state
                .break_with("a command was cancelled while being written".into());
        }
    }
}

async fn read_loop(read: ReadHalf<BoxStream>, pending: Pending, state: Arc<State>) {
    // Words are read a few bytes at a time; buffer so that is not one syscall per byte.
    let mut read = tokio::io::BufReader::with_capacity(64 * 1024, read);
    let reason = loop {
        let words = match codec::read_sentence(&mut read).await {
            Ok(w) => w,
            Err(e) => break format!("connection lost: {e}"),
        };
        let reply = match codec::parse_reply(words) {
            Ok(r) => r,
            Err(e) => break format!("protocol error: {e}"),
        };
        if reply.kind == ReplyKind::Fatal {
            break format!("router closed the API session: {}", reply.reason);
        }
        let Some(tag) = reply.tag.clone() else {
            warn!(kind = ?reply.kind, "ignoring an untagged API reply");
            continue;
        };
        let sender = pending.lock().ok().and_then(|p| p.get(&tag).cloned());
        match sender {
            // Fails only when the caller has gone meanwhile: its reply is of no use then.
            Some(tx) => {
                let _ = tx.send(reply).await;
            }
            None => debug!(tag, "discarding a reply for a cancelled command"),
        }
    };
    debug!(%reason, "API connection ended");
    state.break_with(reason);
    // Dropping the senders wakes every waiting call with "connection closed".
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routeros::api::codec::{encode_sentence, read_sentence};
    use tokio::io::AsyncWriteExt;

    fn tag_of(words: &[Vec<u8>]) -> String {
        words
            .iter()
            .find_map(|w| w.strip_prefix(b".tag="))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .expect("tagged command")
    }

    #[tokio::test]
    async fn replies_are_demultiplexed_by_tag() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let conn = Arc::new(Conn::start(Box::new(client)));
        let a = tokio::spawn({
            let c = conn.clone();
            async move { c.call(vec![b"/a/print".to_vec()]).await }
        });
        let first = read_sentence(&mut server).await.unwrap();
        let b = tokio::spawn({
            let c = conn.clone();
            async move { c.call(vec![b"/b/print".to_vec()]).await }
        });
        let second = read_sentence(&mut server).await.unwrap();
        let (ta, tb) = (tag_of(&first), tag_of(&second));
        // Answer the second command first, and interleave the rows.
        for (tag, name) in [(&tb, "b1"), (&ta, "a1"), (&tb, "b2")] {
            let s = encode_sentence(&[
                b"!re".to_vec(),
                format!("=name={name}").into_bytes(),
                format!(".tag={tag}").into_bytes(),
            ])
            .unwrap();
            server.write_all(&s).await.unwrap();
        }
        for tag in [&tb, &ta] {
            let s =
                encode_sentence(&[b"!done".to_vec(), format!(".tag={tag}").into_bytes()]).unwrap();
            server.write_all(&s).await.unwrap();
        }
        let ra = a.await.unwrap().unwrap();
        let rb = b.await.unwrap().unwrap();
        let names = |r: &Response| -> Vec<String> {
            r.rows.iter().map(|x| x.text("name").to_string()).collect()
        };
        assert_eq!(names(&ra), ["a1"]);
        assert_eq!(names(&rb), ["b1", "b2"]);
        assert!(!conn.is_broken());
    }

    #[tokio::test]
    async fn cancelled_write_marks_the_connection_broken() {
        // A tiny pipe that nobody reads: the write blocks part-way through the frame.
        let (client, _server) = tokio::io::duplex(16);
        let conn = Conn::start(Box::new(client));
        let big = vec![b'x'; 4096];
        let call = conn.call(vec![b"/ppp/secret/add".to_vec(), big]);
        let res = tokio::time::timeout(std::time::Duration::from_millis(50), call).await;
        assert!(res.is_err(), "the write cannot complete");
        assert!(conn.is_broken(), "half a frame is on the wire");
        let e = conn.call(vec![b"/x/print".to_vec()]).await.unwrap_err();
        assert!(e.is_connection_error());
    }

    #[tokio::test]
    async fn fatal_and_eof_fail_waiting_calls() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let conn = Arc::new(Conn::start(Box::new(client)));
        let waiting = tokio::spawn({
            let c = conn.clone();
            async move { c.call(vec![b"/quit".to_vec()]).await }
        });
        let _ = read_sentence(&mut server).await.unwrap();
        let s = encode_sentence(&[
            b"!fatal".to_vec(),
            b"session terminated on request".to_vec(),
        ])
        .unwrap();
        server.write_all(&s).await.unwrap();
        let e = waiting.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("session terminated"), "{e}");
        assert!(conn.is_broken());
    }
}
