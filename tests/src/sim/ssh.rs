//! SSH server (russh) running the simulator's CLI on exec channels (routeros.md §3.1): password
//! auth against the router credentials, the `+cet1024w`-style login-name suffix stripped, one
//! command script per exec request, output on the channel, then exit status, EOF and close.
//! Interactive shells get a one-line notice; the agent uses exec channels only.

use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, ssh_key};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::cli;
use super::faults::{Action, Service};
use super::server::Sim;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host key: {0}")]
    Key(String),
}

pub struct SshServer {
    sim: Arc<Sim>,
    config: Arc<russh::server::Config>,
    fingerprint: String,
}

fn seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// Splits RouterOS console options off a login name: `admin+cet1024w` → `admin`.
pub fn strip_login_options(user: &str) -> &str {
    match user.rsplit_once('+') {
        Some((name, opts)) if opts.chars().all(|c| c.is_ascii_alphanumeric()) => name,
        _ => user,
    }
}

impl SshServer {
    /// `key_seed` makes the host key deterministic (same key across restarts); `None` gives a
    /// fresh key per process.
    pub fn new(sim: Arc<Sim>, key_seed: Option<&str>) -> Result<Self, SshError> {
        let seed: [u8; 32] = match key_seed {
            Some(s) => Sha256::digest(s.as_bytes()).into(),
            None => seed(),
        };
        let keypair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::from(keypair);
        let blob = key
            .public_key()
            .to_bytes()
            .map_err(|e| SshError::Key(e.to_string()))?;
        let fingerprint = hex::encode(Sha256::digest(&blob));
        let config = russh::server::Config {
            keys: vec![key],
            auth_rejection_time: Duration::from_millis(100),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            inactivity_timeout: Some(Duration::from_secs(600)),
            nodelay: true,
            ..Default::default()
        };
        Ok(SshServer {
            sim,
            config: Arc::new(config),
            fingerprint,
        })
    }

    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    pub async fn serve(&self, stream: TcpStream) {
        let handler = Handler {
            sim: self.sim.clone(),
            authed: false,
        };
        match russh::server::run_stream(self.config.clone(), stream, handler).await {
            Ok(running) => {
                // russh runs the session on its own task; when this future is dropped (the
                // service's connections are dropped or it stops), end that task too, as a
                // router closing the connection would.
                let guard = DisconnectOnDrop(Some(running.handle()));
                if let Err(e) = running.await {
                    tracing::debug!(error = %e, "ssh session ended with an error");
                }
                guard.defuse();
            }
            Err(e) => tracing::debug!(error = %e, "ssh handshake failed"),
        }
    }
}

/// Disconnects an SSH session when dropped, unless defused after the session ended by itself.
struct DisconnectOnDrop(Option<russh::server::Handle>);

impl DisconnectOnDrop {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "connection closed".into(),
                        "en".into(),
                    )
                    .await;
            });
        }
    }
}

struct Handler {
    sim: Arc<Sim>,
    authed: bool,
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let name = strip_login_options(user);
        if self.sim.creds().check(name, password.as_bytes()) {
            self.authed = true;
            Ok(Auth::Accept)
        } else {
            tracing::info!(user = %name, "ssh login failure");
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authed {
            reply.accept().await;
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(
            channel,
            b"routeros-sim: interactive shells are not simulated; use exec\r\n".to_vec(),
        )?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let output = match self.sim.before_request(Service::Ssh).await {
            Action::Proceed => cli::run_script(&self.sim, data),
            Action::Fail { message, .. } => format!("{message}\n").into_bytes(),
            Action::Hang => {
                // Say nothing; the client's timeout or a dropped connection ends this.
                return Ok(());
            }
        };
        if !output.is_empty() {
            session.data(channel, output)?;
        }
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_options_are_stripped_from_the_login_name() {
        assert_eq!(strip_login_options("admin+cet1024w"), "admin");
        assert_eq!(strip_login_options("admin"), "admin");
        assert_eq!(strip_login_options("a+b+ct"), "a+b");
    }
}
