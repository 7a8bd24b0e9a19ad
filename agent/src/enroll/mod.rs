//! `easyisp-agent enroll`: joins this agent to central (docs/sync.md "Enrollment").
//!
//! Redeems a one-time token at `POST {central}/api/agents/enroll`, receives the router's id,
//! its tenant, the broker account and central's CA certificate, and writes the config file
//! (mode 0600) with the router's URL and password, so `run` needs nothing else. Before the
//! token is spent it refuses to replace an existing config (unless `--force`) and checks,
//! read-only, that the router answers with the given credentials (a warning if not: the
//! technician may enroll before the router is cabled).

use crate::config::{ConfigError, DEFAULT_DATA_DIR, RawAgent, RawCentral, RawConfig, RawRouter};
use crate::routeros::{self, ConnectOptions, RouterUrl};
use easyisp_mqtt::BrokerUrl;
use easyisp_protocol::Secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

mod password;
pub use password::router_password;

/// How long to wait for central and for the router check.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, clap::Args)]
pub struct EnrollArgs {
    /// Central's base URL, e.g. https://central.example.net.
    #[arg(long, value_name = "URL")]
    pub central: String,

    /// The one-time enrollment token created at central for this router (valid for a short
    /// time, usable once).
    #[arg(long, value_name = "TOKEN")]
    pub token: String,

    /// The router: rest+https://USER@HOST[:PORT], rest+http://…, api://…, api-ssl://… or
    /// ssh://… (see `probe --help`). The password comes from EASYISP_ROUTER_PASSWORD or, on a
    /// terminal, a prompt; it is stored in the config file.
    // Parsed after clap, not by a value_parser: clap would echo a URL with a password in it.
    #[arg(long, value_name = "ROUTER_URL")]
    pub router: String,

    /// Where the agent keeps its replica. Default /var/lib/easyisp-agent.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Replace an existing config file (re-enrolling rotates the broker password). Settings
    /// that enrollment does not set (intervals, timeouts) are kept.
    #[arg(long)]
    pub force: bool,

    /// Trust only this CA certificate (PEM file) for central's HTTPS instead of the system's
    /// trust store, for a central whose certificate a private CA signed.
    #[arg(long, value_name = "FILE")]
    pub central_ca: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum EnrollError {
    #[error(
        "{0} already exists: this agent is enrolled. Run enroll with --force to replace it \
         (the broker password is rotated; settings such as intervals are kept)"
    )]
    ConfigExists(PathBuf),
    #[error("{0}")]
    RouterUrl(#[from] routeros::url::UrlError),
    #[error("central URL {0:?} must start with https:// (or http:// on a trusted network)")]
    CentralUrl(String),
    #[error(
        "central refused the enrollment token: {0}. Tokens work once and expire quickly: \
         create a new one for this router at central and run enroll again"
    )]
    TokenInvalid(String),
    #[error("central answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach central at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("central's answer is not what this agent expects: {0}")]
    BadResponse(String),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// `POST /api/agents/enroll`'s answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    pub router_id: Uuid,
    pub tenant_id: Uuid,
    #[serde(default)]
    pub router_name: String,
    pub mqtt: MqttAccount,
    /// Central's CA (PEM); absent or null when its broker has no TLS.
    #[serde(default)]
    pub ca_cert: Option<String>,
}

#[derive(Clone, Deserialize)]
pub struct MqttAccount {
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for MqttAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttAccount")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// What `enroll` did, for the message to the technician.
#[derive(Debug)]
pub struct Enrolled {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub router_id: Uuid,
    pub router_name: String,
    pub broker: String,
    /// Why the router check failed, if it did (the config is written anyway).
    pub router_warning: Option<String>,
}

/// Refuses to overwrite an existing config without `--force`; with it, returns the old file
/// (if it still parses) so its other settings survive.
pub fn existing_config(path: &Path, force: bool) -> Result<Option<RawConfig>, EnrollError> {
    if !path.exists() {
        return Ok(None);
    }
    if !force {
        return Err(EnrollError::ConfigExists(path.to_path_buf()));
    }
    match RawConfig::read(path) {
        Ok(raw) => Ok(Some(raw)),
        Err(e) => {
            tracing::warn!(error = %e, "the existing config is unreadable; writing a new one");
            Ok(None)
        }
    }
}

/// Runs the whole enrollment.
pub async fn enroll(
    config_path: &Path,
    args: &EnrollArgs,
    router_password: Secret<String>,
) -> Result<Enrolled, EnrollError> {
    let previous = existing_config(config_path, args.force)?;
    let router_url: RouterUrl = args.router.parse()?;
    let central = args.central.trim_end_matches('/').to_string();
    if !(central.starts_with("https://") || central.starts_with("http://")) {
        return Err(EnrollError::CentralUrl(args.central.clone()));
    }
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| previous.as_ref().and_then(|p| p.agent.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let router_warning = check_router(&router_url, &router_password, &data_dir)
        .await
        .err();
    let central_ca = match &args.central_ca {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| EnrollError::Tls(format!("cannot read {}: {e}", file.display())))?,
        ),
        None => None,
    };
    let response = redeem(&central, &args.token, central_ca.as_deref()).await?;
    let broker = check_response(&response)?;
    if let Some(old) = previous.as_ref().map(|p| p.agent.router_id.as_str())
        && old != response.router_id.to_string()
        && data_dir.join("replica.db").exists()
    {
        tracing::warn!(
            previous_router = old,
            router = %response.router_id,
            data_dir = %data_dir.display(),
            "the data directory holds the replica of another router; move it away before starting the agent"
        );
    }
    let raw = build_config(
        previous,
        &response,
        &central,
        &router_url,
        router_password,
        &data_dir,
    );
    raw.write(config_path)?;
    // Load it back as `run` will: a problem shows now, not at the first start.
    crate::config::Config::load(config_path)?;
    Ok(Enrolled {
        config: config_path.to_path_buf(),
        data_dir,
        router_id: response.router_id,
        router_name: response.router_name,
        broker: broker.to_string(),
        router_warning,
    })
}

/// Connects to the router and reads its identity: read-only.
async fn check_router(
    url: &RouterUrl,
    password: &Secret<String>,
    data_dir: &Path,
) -> Result<(), String> {
    let mut options = ConnectOptions::new(password.clone());
    options.timeout = Duration::from_secs(10);
    options.known_hosts = Some(data_dir.join("known_hosts"));
    let check = async {
        let router = routeros::connect(url, options).await?;
        router.identity().await
    };
    match tokio::time::timeout(TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::probe::human_error(&e)),
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

/// The error JSON of central's API: `{"error": {"code", "message"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

async fn redeem(
    central: &str,
    token: &str,
    central_ca: Option<&str>,
) -> Result<EnrollResponse, EnrollError> {
    routeros::install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT);
    if central.starts_with("https://") {
        builder = builder.tls_backend_preconfigured(tls_config(central_ca)?);
    }
    let client = builder
        .build()
        .map_err(|e| EnrollError::Tls(format!("HTTP client setup: {e}")))?;
    let url = format!("{central}/api/agents/enroll");
    let response = client
        .post(&url)
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .map_err(|e| EnrollError::Unreachable {
            url: url.clone(),
            reason: error_chain(&e),
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| EnrollError::Unreachable {
            url: url.clone(),
            reason: error_chain(&e),
        })?;
    interpret(status.as_u16(), &body)
}

/// Turns central's answer into the enrollment or a clear error.
pub fn interpret(status: u16, body: &[u8]) -> Result<EnrollResponse, EnrollError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| EnrollError::BadResponse(e.to_string()));
    }
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    match detail {
        Some(d) if d.code == "enroll_token_invalid" => Err(EnrollError::TokenInvalid(d.message)),
        Some(d) => Err(EnrollError::Refused {
            status,
            message: d.message,
        }),
        None if status == 404 => Err(EnrollError::Refused {
            status,
            message:
                "no enrollment endpoint here: is this central's URL, and is central up to date?"
                    .into(),
        }),
        None => Err(EnrollError::Refused {
            status,
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
        }),
    }
}

/// Checks what central sent before anything is written; returns the broker URL.
pub fn check_response(response: &EnrollResponse) -> Result<BrokerUrl, EnrollError> {
    if response.mqtt.username != response.router_id.to_string() {
        return Err(EnrollError::BadResponse(format!(
            "the broker username {:?} is not the router id {}",
            response.mqtt.username, response.router_id
        )));
    }
    if response.mqtt.password.is_empty() {
        return Err(EnrollError::BadResponse(
            "the broker password is empty".into(),
        ));
    }
    let url: BrokerUrl = response
        .mqtt
        .url
        .parse()
        .map_err(|e: easyisp_mqtt::MqttError| EnrollError::BadResponse(e.to_string()))?;
    match ca_pem(response) {
        Some(pem) => {
            easyisp_mqtt::tls_config(pem)
                .map_err(|e| EnrollError::BadResponse(format!("caCert: {e}")))?;
        }
        None if url.tls => {
            return Err(EnrollError::BadResponse(format!(
                "{url} uses TLS but central sent no CA certificate"
            )));
        }
        None => {}
    }
    Ok(url)
}

fn ca_pem(response: &EnrollResponse) -> Option<&str> {
    response
        .ca_cert
        .as_deref()
        .filter(|pem| !pem.trim().is_empty())
}

/// The config file after enrollment: the previous file's other settings, the enrolled values.
pub fn build_config(
    previous: Option<RawConfig>,
    response: &EnrollResponse,
    central: &str,
    router: &RouterUrl,
    router_password: Secret<String>,
    data_dir: &Path,
) -> RawConfig {
    let (agent, router_section) = match previous {
        Some(p) => (p.agent, Some(p.router)),
        None => (
            RawAgent {
                router_id: String::new(),
                tenant_id: String::new(),
                data_dir: None,
                reconcile_interval_secs: None,
                poll_interval_secs: None,
                mass_cutoff_percent: None,
                mass_cutoff_min: None,
                assume_clock_synchronised: None,
                telemetry_interval_secs: None,
                metrics_listen: None,
                metrics_allow_remote: None,
            },
            None,
        ),
    };
    let ca_pem = ca_pem(response).map(str::to_string);
    RawConfig {
        agent: RawAgent {
            router_id: response.router_id.to_string(),
            tenant_id: response.tenant_id.to_string(),
            data_dir: Some(data_dir.to_path_buf()),
            ..agent
        },
        router: RawRouter {
            url: router.to_string(),
            password: router_password.into_inner(),
            timeout_secs: router_section.as_ref().and_then(|r| r.timeout_secs),
            known_hosts: router_section.and_then(|r| r.known_hosts),
        },
        central: Some(RawCentral {
            url: central.to_string(),
            mqtt_url: Some(response.mqtt.url.clone()),
            mqtt_password: Some(response.mqtt.password.clone()),
            ca_pem,
        }),
    }
}

/// HTTPS to central: the platform's trust store, or only the given CA.
fn tls_config(central_ca: Option<&str>) -> Result<rustls::ClientConfig, EnrollError> {
    if let Some(pem) = central_ca {
        return easyisp_mqtt::tls_config(pem)
            .map_err(|e| EnrollError::Tls(format!("--central-ca: {e}")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| EnrollError::Tls(format!("system trust store: {e}")))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> EnrollResponse {
        let router = Uuid::from_u128(0x10);
        EnrollResponse {
            router_id: router,
            tenant_id: Uuid::from_u128(0x20),
            router_name: "POP North".into(),
            mqtt: MqttAccount {
                url: "mqtt://127.0.0.1:1883".into(),
                username: router.to_string(),
                password: "broker-secret-1".into(),
            },
            ca_cert: None,
        }
    }

    #[test]
    fn the_written_config_loads_with_the_enrolled_values_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/agent.toml");
        let url: RouterUrl = "rest+http://admin@127.0.0.1:8080".parse().unwrap();
        let raw = build_config(
            None,
            &response(),
            "http://central.test",
            &url,
            Secret::new("router-pw-1".into()),
            &dir.path().join("data"),
        );
        raw.write(&path).unwrap();
        let config = crate::config::Config::load(&path).unwrap();
        assert_eq!(config.router_id, Uuid::from_u128(0x10));
        assert_eq!(config.tenant_id, Uuid::from_u128(0x20));
        assert_eq!(config.router_password.expose(), "router-pw-1");
        assert_eq!(config.data_dir, dir.path().join("data"));
        let central = config.central.expect("central section");
        assert_eq!(central.broker.username, Uuid::from_u128(0x10).to_string());
        assert_eq!(central.broker.password.expose(), "broker-secret-1");
        assert_eq!(central.broker.url.to_string(), "mqtt://127.0.0.1:1883");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn an_existing_config_is_kept_unless_forced_and_then_its_settings_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        assert!(existing_config(&path, false).unwrap().is_none());
        let url: RouterUrl = "api://admin@127.0.0.1".parse().unwrap();
        let mut first = build_config(
            None,
            &response(),
            "http://central.test",
            &url,
            Secret::new("pw-1".into()),
            dir.path(),
        );
        first.agent.reconcile_interval_secs = Some(15);
        first.router.timeout_secs = Some(7);
        first.write(&path).unwrap();

        let err = match existing_config(&path, false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an existing config is refused without --force"),
        };
        assert!(err.contains("--force"), "{err}");
        let previous = existing_config(&path, true).unwrap();
        let again = build_config(
            previous,
            &response(),
            "http://central.test",
            &url,
            Secret::new("pw-2".into()),
            dir.path(),
        );
        assert_eq!(again.agent.reconcile_interval_secs, Some(15));
        assert_eq!(again.router.timeout_secs, Some(7));
        assert_eq!(again.router.password, "pw-2");
    }

    #[test]
    fn a_used_or_expired_token_gets_a_message_that_says_what_to_do() {
        let body = br#"{"error":{"code":"enroll_token_invalid","message":"the token was already used","field":null}}"#;
        let err = interpret(401, body).unwrap_err();
        assert!(matches!(err, EnrollError::TokenInvalid(_)));
        let text = err.to_string();
        assert!(
            text.contains("already used") && text.contains("create a new one"),
            "{text}"
        );
        let err = interpret(500, b"oops").unwrap_err().to_string();
        assert!(err.contains("500"), "{err}");
    }

    #[test]
    fn central_s_answer_parses_with_or_without_a_ca() {
        let router = Uuid::from_u128(0x10);
        let body = format!(
            r#"{{"routerId":"{router}","tenantId":"{router}","routerName":"POP North",
               "mqtt":{{"url":"mqtt://127.0.0.1:1883","username":"{router}","password":"p"}},
               "caCert":null}}"#
        );
        let parsed = interpret(200, body.as_bytes()).unwrap();
        assert_eq!(parsed.router_name, "POP North");
        assert!(parsed.ca_cert.is_none());
        assert!(
            !format!("{parsed:?}").contains("\"p\""),
            "Debug hides the password"
        );
    }

    #[test]
    fn an_answer_for_another_broker_user_is_refused() {
        let mut r = response();
        assert!(check_response(&r).is_ok());
        r.mqtt.username = "someone-else".into();
        assert!(check_response(&r).is_err());
        let mut r = response();
        r.mqtt.url = "mqtts://central.test".into();
        assert!(check_response(&r).is_err(), "TLS without a CA certificate");
    }
}
