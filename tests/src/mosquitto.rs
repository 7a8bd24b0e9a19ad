//! A real Mosquitto broker per test, on a free loopback port, killed when dropped.
//!
//! Tests never share a broker and never use the system's: each gets its own config file,
//! password file and ACL file in a temp dir. The defaults mirror what central configures for
//! production (TCP_NODELAY, generous queues; see docs/architecture.md) so latency and loss seen
//! in tests are the ones production would see.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a test broker is configured.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// `(username, password)` pairs; when empty the broker allows anonymous clients.
    pub users: Vec<(String, String)>,
    /// Lines of a Mosquitto ACL file (`user x`, `topic read ...`, `pattern readwrite ...`).
    pub acl: Vec<String>,
}

/// A running `mosquitto` child process.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts an anonymous broker.
    pub fn start() -> Result<Mosquitto> {
        Self::start_with(BrokerOptions::default())
    }

    pub fn start_with(options: BrokerOptions) -> Result<Mosquitto> {
        let dir = tempfile::tempdir().context("creating the broker's temp dir")?;
        let port = free_port()?;
        let config = write_config(dir.path(), port, &options)?;
        let log = std::fs::File::create(dir.path().join("mosquitto.log"))?;
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting mosquitto (install it: apt-get install mosquitto)")?;
        let mut broker = Mosquitto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        broker.wait_until_listening(Duration::from_secs(10))?;
        Ok(broker)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the broker logged so far (for test failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker abruptly, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port with the same config.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))?;
        self.child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.wait_until_listening(Duration::from_secs(10))
    }

    fn wait_until_listening(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("mosquitto exited with {status}: {}", self.log());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "mosquitto did not listen on {} within {timeout:?}: {}",
            self.addr,
            self.log()
        )
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn mosquitto_binary() -> PathBuf {
    // Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    let sbin = Path::new("/usr/sbin/mosquitto");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("mosquitto")
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_config(dir: &Path, port: u16, options: &BrokerOptions) -> Result<PathBuf> {
    let mut conf = format!(
        "listener {port} 127.0.0.1\n\
         persistence false\n\
         set_tcp_nodelay true\n\
         max_queued_messages 100000\n\
         max_inflight_messages 100\n\
         max_packet_size 1048576\n\
         log_dest stdout\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n"
    );
    if options.users.is_empty() {
        conf.push_str("allow_anonymous true\n");
    } else {
        let passwd = dir.join("passwd");
        let mut file = std::fs::File::create(&passwd)?;
        for (user, password) in &options.users {
            writeln!(file, "{user}:{password}")?;
        }
        drop(file);
        // Hash the plain-text file in place, as central does for its managed broker.
        let status = Command::new("mosquitto_passwd")
            .arg("-U")
            .arg(&passwd)
            .status()
            .context("running mosquitto_passwd (install mosquitto)")?;
        if !status.success() {
            bail!("mosquitto_passwd -U failed with {status}");
        }
        conf.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ));
    }
    if !options.acl.is_empty() {
        let acl = dir.join("acl");
        std::fs::write(&acl, options.acl.join("\n") + "\n")?;
        conf.push_str(&format!("acl_file {}\n", acl.display()));
    }
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}
