//! RouterOS SSH CLI driver (routeros.md §3) on the blocking ssh2 crate, run on tokio's
//! blocking pool. One exec channel per command on one authenticated session.
//!
//! Host keys are pinned: with a known-hosts file, an unknown router's key is recorded on first
//! use and a different key later is refused. The login name gets the `+cet1024w` suffix (no
//! colours, dumb terminal, 1024 columns) so rows do not wrap. Values are quoted by `cli::quote`;
//! errors are read from the output, not the exit status (§3.5). Reads use
//! `:serialize to=json [print as-value]` (exact bytes and `.id`s; RouterOS 7.13+), parsed row
//! by row as the output is read, and fall back to `:put [print as-value]` on routers without
//! `:serialize`.

pub mod cli;

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ssh2::{CheckResult, KnownHostFileKind, Session};
use tracing::{debug, info, warn};

use super::error::{Result, RouterError};
use super::rest::json::{Elements, NotJson};
use super::rest::rows_from;
use super::url::{RouterUrl, Transport};
use super::value::{Id, Row, Text};
use super::{ConnectOptions, Router};

pub struct SshRouter {
    url: RouterUrl,
    opts: ConnectOptions,
    session: Arc<Mutex<Option<Session>>>,
    /// Set once the router refused `:serialize`; reads then use `print as-value`.
    no_serialize: AtomicBool,
}

impl SshRouter {
    pub async fn connect(url: RouterUrl, opts: ConnectOptions) -> Result<Self> {
        if url.transport != Transport::Ssh {
            return Err(RouterError::Protocol(format!(
                "{} is not an SSH URL",
                url.transport.scheme()
            )));
        }
        if opts.known_hosts.is_none() {
            warn!(router = %url, "no known-hosts file given: the router's SSH host key is not pinned");
        }
        let router = SshRouter {
            url,
            opts,
            session: Arc::new(Mutex::new(None)),
            no_serialize: AtomicBool::new(false),
        };
        // Fail early on a wrong address, key or password.
        router.run(Vec::new(), true).await?;
        Ok(router)
    }

    /// Runs one command line (empty: only make sure a session exists) and returns its output.
    async fn run(&self, line: Vec<u8>, idempotent: bool) -> Result<Vec<u8>> {
        let session = self.session.clone();
        let url = self.url.clone();
        let opts = self.opts.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            run_blocking(&session, &url, &opts, &line, idempotent, &mut |piece| {
                out.extend_from_slice(piece);
            })?;
            Ok(out)
        });
        // The blocking call has its own timeout (set_timeout); this one bounds the whole task.
        match tokio::time::timeout(self.opts.timeout * 3, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(RouterError::Protocol(format!("SSH task failed: {e}"))),
            Err(_) => Err(RouterError::timeout(self.opts.timeout * 3)),
        }
    }

    /// Runs an idempotent command line and hands its output to `piece` as it is read, so a
    /// long listing is never held whole.
    async fn run_streamed(
        &self,
        line: Vec<u8>,
        piece: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
    ) -> Result<()> {
        let session = self.session.clone();
        let url = self.url.clone();
        let opts = self.opts.clone();
        let (pieces, mut arriving) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let task = tokio::task::spawn_blocking(move || {
            run_blocking(&session, &url, &opts, &line, true, &mut |p| {
                // Fails only when the reader below gave up; the output is drained regardless,
                // so the session stays usable.
                let _ = pieces.blocking_send(p.to_vec());
            })
        });
        let work = async {
            let mut read = Ok(());
            while let Some(p) = arriving.recv().await {
                if read.is_ok() {
                    read = piece(&p);
                }
            }
            let ran = task
                .await
                .map_err(|e| RouterError::Protocol(format!("SSH task failed: {e}")))?;
            ran.and(read)
        };
        match tokio::time::timeout(self.opts.timeout * 3, work).await {
            Ok(r) => r,
            Err(_) => Err(RouterError::timeout(self.opts.timeout * 3)),
        }
    }

    fn log_write(&self, verb: &str, menu: &str, id: Option<&Id>, attrs: &[(&str, Text)]) {
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
        info!(router = %self.describe(), transport = "ssh", verb, menu, id = ?id.map(Id::as_str), properties = ?keys, "router change");
    }

    /// Runs a mutating command: any output is an error (routeros.md §3.5).
    async fn run_quiet(&self, line: Vec<u8>, idempotent: bool) -> Result<()> {
        let out = self.run(line, idempotent).await?;
        if out.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        Err(cli::error_in(&out).unwrap_or_else(|| {
            RouterError::Other(String::from_utf8_lossy(&out).trim().to_string())
        }))
    }
}

/// Runs `line` on the router's session (opening one if needed), handing the output to `out`
/// piece by piece; an empty line only makes sure a session exists. A stale session is replaced
/// and an idempotent command retried once, unless output was handed over already.
fn run_blocking(
    session: &Mutex<Option<Session>>,
    url: &RouterUrl,
    opts: &ConnectOptions,
    line: &[u8],
    idempotent: bool,
    out: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    let mut slot = session
        .lock()
        .map_err(|_| RouterError::Protocol("SSH session lock poisoned".into()))?;
    let reused = slot.is_some();
    if slot.is_none() {
        *slot = Some(open_session(url, opts)?);
    }
    if line.is_empty() {
        return Ok(());
    }
    let mut handed_over = false;
    let first = match slot.as_ref() {
        Some(s) => exec(s, line, &mut |p| {
            handed_over = true;
            out(p);
        }),
        None => Err(RouterError::Unreachable("no SSH session".into())),
    };
    match first {
        Err(e) if e.is_connection_error() => {
            *slot = None;
            if reused && idempotent && !handed_over {
                debug!(error = %e, "SSH session went stale; retrying on a new one");
                let fresh = open_session(url, opts)?;
                let ran = exec(&fresh, line, out);
                if ran.is_ok() {
                    *slot = Some(fresh);
                }
                ran
            } else {
                Err(e)
            }
        }
        // A timed-out exec leaves the session mid-conversation: start afresh next time.
        Err(e @ RouterError::Timeout(_)) => {
            *slot = None;
            Err(e)
        }
        other => other,
    }
}

fn unreachable(e: impl std::fmt::Display) -> RouterError {
    RouterError::Unreachable(e.to_string())
}

fn open_session(url: &RouterUrl, opts: &ConnectOptions) -> Result<Session> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("{url}: {e}")))?
        .next()
        .ok_or_else(|| unreachable(format!("{url}: no address")))?;
    let tcp = TcpStream::connect_timeout(&addr, opts.timeout)
        .map_err(|e| unreachable(format!("{url}: {e}")))?;
    let mut sess = Session::new().map_err(|e| unreachable(format!("SSH: {e}")))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(u32::try_from(opts.timeout.as_millis()).unwrap_or(u32::MAX));
    sess.handshake()
        .map_err(|e| unreachable(format!("SSH handshake with {url}: {e}")))?;
    if let Some(path) = &opts.known_hosts {
        check_host_key(&sess, &url.host, url.port, path)?;
    }
    let user = format!("{}+cet1024w", url.user);
    if let Err(e) = sess.userauth_password(&user, opts.password.expose()) {
        debug!(error = %e, "SSH password authentication refused");
        return Err(RouterError::AuthFailed);
    }
    if !sess.authenticated() {
        return Err(RouterError::AuthFailed);
    }
    info!(router = %url, "logged in over SSH");
    Ok(sess)
}

/// Records the host key on first use; refuses a key that differs from the recorded one.
fn check_host_key(sess: &Session, host: &str, port: u16, path: &Path) -> Result<()> {
    let (key, key_type) = sess
        .host_key()
        .ok_or_else(|| RouterError::Protocol("router sent no SSH host key".into()))?;
    let mut kh = sess
        .known_hosts()
        .map_err(|e| RouterError::Protocol(format!("known hosts: {e}")))?;
    if path.exists() {
        kh.read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(|e| {
                RouterError::Pinning(format!(
                    "cannot read known-hosts file {}: {e}",
                    path.display()
                ))
            })?;
    }
    match kh.check_port(host, port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(RouterError::Pinning(format!(
            "the SSH host key of {host}:{port} differs from the one recorded in {}; \
             if the router was replaced or reinstalled, remove its line from that file",
            path.display()
        ))),
        CheckResult::NotFound => {
            let entry = if port == 22 {
                host.to_string()
            } else {
                format!("[{host}]:{port}")
            };
            kh.add(&entry, key, "easyisp-agent", key_type.into())
                .map_err(|e| RouterError::Pinning(format!("recording host key: {e}")))?;
            kh.write_file(path, KnownHostFileKind::OpenSSH)
                .map_err(|e| {
                    RouterError::Pinning(format!(
                        "cannot write known-hosts file {}: {e}",
                        path.display()
                    ))
                })?;
            info!(host, port, file = %path.display(), "recorded the router's SSH host key (first use)");
            Ok(())
        }
        CheckResult::Failure => Err(RouterError::Pinning(format!(
            "cannot check the SSH host key of {host}:{port}"
        ))),
    }
}

/// Receive window of an exec channel, in bytes.
const SSH_WINDOW: u32 = 256 * 1024;
/// Largest packet the router may send on it (libssh2's default).
const SSH_PACKET: u32 = 32 * 1024;

/// Runs one command on its own channel; standard output then standard error go to `out` in
/// pieces as they are read.
fn exec(sess: &Session, line: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<()> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        let msg = format!("SSH {what}: {e}");
        if msg.contains("timed out") || msg.contains("Timed out") {
            RouterError::Timeout(msg)
        } else {
            RouterError::Unreachable(msg)
        }
    };
    // A small receive window: libssh2 queues up to a window of output that we have not read
    // yet, and its default (2 MiB per channel) is more than the agent's whole budget for a
    // listing. 256 KiB still keeps a LAN link busy.
    let mut ch = sess
        .channel_open("session", SSH_WINDOW, SSH_PACKET, None)
        .map_err(|e| io("channel", &e))?;
    // ssh2 takes the command as &str. `cli::quote` writes every non-ASCII byte as `\XX`, so
    // lines we build are ASCII; anything else is refused rather than sent corrupted.
    let cmd = std::str::from_utf8(line).map_err(|_| RouterError::InvalidValue {
        message: "SSH command line is not UTF-8".into(),
    })?;
    ch.exec(cmd).map_err(|e| io("exec", &e))?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match ch.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("read", &e)),
        }
    }
    let mut err = Vec::new();
    let _ = ch.stderr().read_to_end(&mut err);
    let _ = ch.wait_close();
    if !err.is_empty() {
        out(&err);
    }
    Ok(())
}

#[async_trait]
impl Router for SshRouter {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    async fn print(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        self.print_each(menu, query, proplist, &mut |row| rows.push(row))
            .await?;
        Ok(rows)
    }

    async fn print_each(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
        visit: &mut (dyn FnMut(Row) + Send),
    ) -> Result<()> {
        if !self.no_serialize.load(Ordering::Relaxed) {
            let mut elements = Elements::default();
            let line = cli::print_line(menu, query, proplist)?;
            self.run_streamed(line, &mut |piece| {
                elements.feed(piece, &mut |value| {
                    rows_from(value)?.into_iter().for_each(&mut *visit);
                    Ok::<_, RouterError>(())
                })
            })
            .await?;
            let not_json = match elements.finish() {
                Ok(None) => return Ok(()),
                Ok(Some(whole)) => {
                    rows_from(whole)?.into_iter().for_each(&mut *visit);
                    return Ok(());
                }
                Err(Ok(e)) => return Err(e.into()),
                Err(Err(NotJson(output))) => output,
            };
            // Not JSON: an error text, maybe the one of a router without `:serialize`.
            match cli::parse_json_rows(&not_json) {
                Err(RouterError::InvalidValue { message }) if message.contains("serialize") => {
                    info!(router = %self.describe(), "router has no :serialize (RouterOS 6?); reading `print as-value` instead");
                    self.no_serialize.store(true, Ordering::Relaxed);
                }
                other => {
                    other?.into_iter().for_each(&mut *visit);
                    return Ok(());
                }
            }
        }
        let out = self
            .run(cli::print_as_value_line(menu, query, proplist)?, true)
            .await?;
        cli::parse_as_value(&out)?.into_iter().for_each(visit);
        Ok(())
    }

    async fn add(&self, menu: &str, attrs: &[(&str, Text)]) -> Result<Id> {
        self.log_write("add", menu, None, attrs);
        let out = self.run(cli::add_line(menu, attrs)?, false).await?;
        let text = String::from_utf8_lossy(&out);
        let first = text.trim();
        if first.starts_with('*') && !first.contains(char::is_whitespace) {
            return Ok(Id(first.to_string()));
        }
        Err(cli::error_in(&out)
            .unwrap_or_else(|| RouterError::Protocol(format!("add printed {first:?}, not an id"))))
    }

    async fn set(&self, menu: &str, id: &Id, attrs: &[(&str, Text)]) -> Result<()> {
        self.log_write("set", menu, Some(id), attrs);
        self.run_quiet(cli::verb_line(menu, "set", Some(id.as_str()), attrs)?, true)
            .await
    }

    async fn remove(&self, menu: &str, id: &Id) -> Result<()> {
        self.log_write("remove", menu, Some(id), &[]);
        self.run_quiet(
            cli::verb_line(menu, "remove", Some(id.as_str()), &[])?,
            true,
        )
        .await
    }

    async fn command(&self, menu: &str, command: &str, args: &[(&str, Text)]) -> Result<Vec<Row>> {
        self.log_write(command, menu, None, args);
        self.run_quiet(cli::verb_line(menu, command, None, args)?, false)
            .await?;
        Ok(Vec::new())
    }
}
