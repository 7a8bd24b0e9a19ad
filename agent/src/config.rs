//! The agent's configuration file (TOML, mode 0600: it holds the router's and the broker's
//! passwords). `enroll` writes it; `run`, `status` and `adopt` read it.
//!
//! `RawConfig` mirrors the file (unknown keys are errors); [`Config::load`] turns it into typed
//! values and reports every problem at once, each naming its key and the fix.

use crate::routeros::RouterUrl;
use easyisp_mqtt::{BrokerUrl, Endpoint};
use easyisp_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

/// Where `enroll` writes and the other commands read the configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/easyisp/agent.toml";
/// Where the replica lives by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/easyisp-agent";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file as written. Every field's comment states its default.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub agent: RawAgent,
    pub router: RawRouter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central: Option<RawCentral>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// This router's id at central (also the agent's MQTT username). Required.
    pub router_id: String,
    /// The ISP (tenant) the router belongs to. Required.
    pub tenant_id: String,
    /// Where the replica database lives. Default `/var/lib/easyisp-agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Seconds between full reconciles (drift repair). Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_interval_secs: Option<u64>,
    /// Seconds between reads of session counters. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    /// Hold a cut-off that would drop at least this percentage of customers at once. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_cutoff_percent: Option<u8>,
    /// ... and at least this many customers. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_cutoff_min: Option<u64>,
    /// Trust the system clock without asking the kernel whether NTP synchronised it (for
    /// machines whose kernel does not report it). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_clock_synchronised: Option<bool>,
    /// Seconds between telemetry messages to central (router reachable, customers, sessions,
    /// outbox depth, clock). Only used with a `[central]` section. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_interval_secs: Option<u64>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`, e.g. `"127.0.0.1:9184"`. Default
    /// `""`: no metrics. `run --metrics-listen` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Allow `metrics_listen` on an address other than loopback (the endpoint has no
    /// authentication). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_allow_remote: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    /// `rest+https://user@host[:port]`, `rest+http://...`, `api://...`, `api-ssl://...` or
    /// `ssh://...`. Required.
    pub url: String,
    /// The router user's password. Required.
    pub password: String,
    /// Seconds before a router request times out. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// SSH only: where the router's host key is pinned. Default `<data_dir>/known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
}

/// Written by `enroll`. Without this section the agent runs standalone (no sync); with it,
/// `mqtt_url` and `mqtt_password` are required, and `ca_pem` for an `mqtts://` broker.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCentral {
    /// Central's base URL, as used to enroll.
    pub url: String,
    /// The broker agents dial, e.g. `mqtts://central.example.net:8883` (`mqtt://` without
    /// TLS only for tests and trusted networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_url: Option<String>,
    /// The agent's broker password (its username is `agent.router_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_password: Option<String>,
    /// Central's CA certificate (PEM) that signs the broker's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub router_id: Uuid,
    pub tenant_id: Uuid,
    pub data_dir: PathBuf,
    pub reconcile_interval: Duration,
    pub poll_interval: Duration,
    pub mass_cutoff_percent: u8,
    pub mass_cutoff_min: u64,
    pub assume_clock_synchronised: bool,
    pub telemetry_interval: Duration,
    /// Where the daemon serves Prometheus metrics; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_allow_remote: bool,
    pub router_url: RouterUrl,
    pub router_password: Secret<String>,
    pub router_timeout: Duration,
    pub known_hosts: PathBuf,
    pub central: Option<CentralConfig>,
}

/// Where central is and how to log in to its broker (username = the router id).
#[derive(Debug, Clone)]
pub struct CentralConfig {
    pub url: String,
    pub broker: Endpoint,
}

impl Config {
    pub fn replica_path(&self) -> PathBuf {
        self.data_dir.join("replica.db")
    }

    /// Reads and validates `path`, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path, true)
    }

    /// Like [`Config::load`] but accepts a file others can read: `doctor` reports that as
    /// one of its checks instead of refusing to check anything else.
    pub fn load_ignoring_permissions(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path, false)
    }

    fn load_checked(path: &Path, check_mode: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        if let Some(mode) = file_mode(path).filter(|m| check_mode && m & 0o077 != 0) {
            problems.push(format!(
                "the file is readable by others (mode {mode:o}); it holds passwords: chmod 600 {}",
                path.display()
            ));
        }
        let config = Config::from_raw(path, raw, &mut problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }),
        }
    }

    fn from_raw(path: &Path, raw: RawConfig, problems: &mut Vec<String>) -> Option<Config> {
        let mut uuid = |key: &str, value: &str| match Uuid::parse_str(value) {
            Ok(id) => Some(id),
            Err(_) => {
                problems.push(format!(
                    "{key} = {value:?} is not a UUID: copy it from central (or enroll again)"
                ));
                None
            }
        };
        let router_id = uuid("agent.router_id", &raw.agent.router_id);
        let tenant_id = uuid("agent.tenant_id", &raw.agent.tenant_id);
        let mut seconds = |key: &str, value: Option<u64>, default: u64, min: u64| {
            let secs = value.unwrap_or(default);
            if secs < min {
                problems.push(format!("{key} = {secs} is too small: use at least {min}"));
            }
            Duration::from_secs(secs)
        };
        let reconcile_interval = seconds(
            "agent.reconcile_interval_secs",
            raw.agent.reconcile_interval_secs,
            60,
            1,
        );
        let poll_interval = seconds(
            "agent.poll_interval_secs",
            raw.agent.poll_interval_secs,
            30,
            1,
        );
        let router_timeout = seconds("router.timeout_secs", raw.router.timeout_secs, 30, 1);
        let telemetry_interval = seconds(
            "agent.telemetry_interval_secs",
            raw.agent.telemetry_interval_secs,
            30,
            1,
        );
        let mass_cutoff_percent = raw.agent.mass_cutoff_percent.unwrap_or(30);
        if !(1..=100).contains(&mass_cutoff_percent) {
            problems.push(format!(
                "agent.mass_cutoff_percent = {mass_cutoff_percent}: use 1 to 100"
            ));
        }
        let router_url = match raw.router.url.parse::<RouterUrl>() {
            Ok(url) => Some(url),
            Err(e) => {
                problems.push(format!("router.url: {e}"));
                None
            }
        };
        if raw.router.password.is_empty() {
            problems.push("router.password is empty: set the router user's password".into());
        }
        let data_dir = raw
            .agent
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let known_hosts = raw
            .router
            .known_hosts
            .unwrap_or_else(|| data_dir.join("known_hosts"));
        let metrics_allow_remote = raw.agent.metrics_allow_remote.unwrap_or(false);
        let metrics_listen = match raw.agent.metrics_listen.as_deref() {
            None | Some("") => None,
            Some(text) => match metrics_address(text, metrics_allow_remote) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    problems.push(format!("agent.metrics_listen: {e}"));
                    None
                }
            },
        };
        let central = match raw.central {
            Some(c) => Some(central(c, router_id?, problems)?),
            None => None,
        };
        Some(Config {
            path: path.to_path_buf(),
            router_id: router_id?,
            tenant_id: tenant_id?,
            data_dir,
            reconcile_interval,
            poll_interval,
            mass_cutoff_percent,
            mass_cutoff_min: raw.agent.mass_cutoff_min.unwrap_or(20),
            assume_clock_synchronised: raw.agent.assume_clock_synchronised.unwrap_or(false),
            telemetry_interval,
            metrics_listen,
            metrics_allow_remote,
            router_url: router_url?,
            router_password: Secret::new(raw.router.password),
            router_timeout,
            known_hosts,
            central,
        })
    }
}

/// Parses a metrics address (`IP:PORT`). The endpoint has no authentication, so it must be a
/// loopback address unless `allow_remote` (`agent.metrics_allow_remote`) says otherwise.
pub fn metrics_address(text: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP:PORT address such as 127.0.0.1:9184"))?;
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address and the metrics endpoint has no authentication: \
             use 127.0.0.1:PORT, or set agent.metrics_allow_remote = true and firewall the port"
        ));
    }
    Ok(addr)
}

/// Checks the `[central]` section: a present section must say how to reach the broker.
fn central(raw: RawCentral, router_id: Uuid, problems: &mut Vec<String>) -> Option<CentralConfig> {
    let before = problems.len();
    if !(raw.url.starts_with("https://") || raw.url.starts_with("http://")) {
        problems.push(format!(
            "central.url = {:?} is not an http(s):// URL: enroll again",
            raw.url
        ));
    }
    let url = match raw.mqtt_url.as_deref() {
        None => {
            problems.push(
                "central.mqtt_url is missing (e.g. mqtts://central.example.net:8883): enroll again \
                 or remove the [central] section to run standalone"
                    .into(),
            );
            None
        }
        Some(text) => match text.parse::<BrokerUrl>() {
            Ok(url) => Some(url),
            Err(e) => {
                problems.push(format!("central.mqtt_url: {e}"));
                None
            }
        },
    };
    let password = raw.mqtt_password.filter(|p| !p.is_empty());
    if password.is_none() {
        problems.push("central.mqtt_password is missing or empty: enroll again".into());
    }
    match (&url, raw.ca_pem.as_deref()) {
        (Some(url), None) if url.tls => problems.push(format!(
            "central.ca_pem is missing: {url} uses TLS and needs central's CA certificate; enroll again"
        )),
        (_, Some(pem)) => {
            if let Err(e) = easyisp_mqtt::tls_config(pem) {
                problems.push(format!("central.ca_pem: {e}"));
            }
        }
        _ => {}
    }
    if problems.len() > before {
        return None;
    }
    Some(CentralConfig {
        url: raw.url,
        broker: Endpoint {
            url: url?,
            username: router_id.to_string(),
            password: Secret::new(password?),
            ca_pem: raw.ca_pem,
        },
    })
}

impl RawConfig {
    /// Reads the file without validating it (`enroll --force` keeps the settings it does not
    /// replace).
    pub fn read(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the file with mode 0600 (created so, never briefly world-readable), through a
    /// temporary file and a rename, so a crash never leaves half a config behind.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let fail = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| fail(std::io::Error::other(e.to_string())))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let _ = std::fs::remove_file(&temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = (|| {
            let mut file = options.open(&temp)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(fail)
    }
}

fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawConfig {
        RawConfig {
            agent: RawAgent {
                router_id: Uuid::from_u128(1).to_string(),
                tenant_id: Uuid::from_u128(2).to_string(),
                data_dir: Some("/tmp/x".into()),
                reconcile_interval_secs: None,
                poll_interval_secs: Some(5),
                mass_cutoff_percent: None,
                mass_cutoff_min: None,
                assume_clock_synchronised: None,
                telemetry_interval_secs: None,
                metrics_listen: None,
                metrics_allow_remote: None,
            },
            router: RawRouter {
                url: url.into(),
                password: "pw-1234567".into(),
                timeout_secs: None,
                known_hosts: None,
            },
            central: None,
        }
    }

    #[test]
    fn a_written_config_loads_back_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        raw("api://admin@127.0.0.1:8728").write(&path).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.reconcile_interval, Duration::from_secs(60));
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.router_password.expose(), "pw-1234567");
        assert!(
            !format!("{config:?}").contains("pw-1234567"),
            "Debug never shows the password"
        );
        assert_eq!(file_mode(&path), Some(0o600));
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let mut bad = raw("telnet://router");
        bad.agent.router_id = "nope".into();
        bad.agent.mass_cutoff_percent = Some(0);
        bad.write(&path).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.router_id"), "{err}");
        assert!(err.contains("router.url"), "{err}");
        assert!(err.contains("agent.mass_cutoff_percent"), "{err}");
    }

    #[test]
    fn a_central_section_must_say_how_to_reach_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let mut incomplete = raw("api://admin@127.0.0.1");
        incomplete.central = Some(RawCentral {
            url: "https://central.example.net".into(),
            mqtt_url: Some("mqtts://central.example.net".into()),
            mqtt_password: None,
            ca_pem: None,
        });
        incomplete.write(&path).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("central.mqtt_password"), "{err}");
        assert!(err.contains("central.ca_pem"), "{err}");

        let mut plain = raw("api://admin@127.0.0.1");
        plain.agent.telemetry_interval_secs = Some(5);
        plain.central = Some(RawCentral {
            url: "http://127.0.0.1:8080".into(),
            mqtt_url: Some("mqtt://127.0.0.1:1883".into()),
            mqtt_password: Some("broker-pw".into()),
            ca_pem: None,
        });
        plain.write(&path).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.telemetry_interval, Duration::from_secs(5));
        let central = config.central.expect("sync configured");
        assert_eq!(central.broker.username, Uuid::from_u128(1).to_string());
        assert!(!format!("{central:?}").contains("broker-pw"));
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_loopback_only_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let mut r = raw("api://admin@127.0.0.1");
        r.agent.metrics_listen = Some(String::new());
        r.write(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap().metrics_listen, None);

        r.agent.metrics_listen = Some("127.0.0.1:9184".into());
        r.write(&path).unwrap();
        assert_eq!(
            Config::load(&path).unwrap().metrics_listen,
            Some("127.0.0.1:9184".parse().unwrap())
        );

        r.agent.metrics_listen = Some("0.0.0.0:9184".into());
        r.write(&path).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.metrics_listen"), "{err}");
        assert!(err.contains("metrics_allow_remote"), "{err}");

        r.agent.metrics_allow_remote = Some(true);
        r.write(&path).unwrap();
        assert!(Config::load(&path).unwrap().metrics_listen.is_some());
        assert!(
            metrics_address("localhost:1", false).is_err(),
            "IP:PORT only"
        );
    }

    #[test]
    fn unknown_keys_and_open_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        raw("api://admin@127.0.0.1").write(&path).unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[router]", "[router]\nspeed = 3");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Syntax { .. })
        ));

        raw("api://admin@127.0.0.1").write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                Config::load(&path)
                    .unwrap_err()
                    .to_string()
                    .contains("chmod 600")
            );
        }
    }
}
