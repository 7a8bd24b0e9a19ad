//! `easyisp-central doctor`: checks an installation without changing it, and prints one line
//! per check, `OK   <check>`, `WARN <check>: <what to do>` or `FAIL <check>: <what to do>`.
//!
//! The verdicts are pure functions of facts (modes, versions, dates, names) so they are
//! tested without a machine to break; [`run`] gathers the facts: the data directory and key
//! file modes, the database read-only (schema version, `quick_check`), the broker's
//! certificates, the managed Mosquitto through its pid file and `/proc`, a login to it with
//! central's own account, and optionally `GET /api/health`.

use crate::broker::health;
use crate::storage::inspect::{DatabaseFacts, inspect_database};
use chrono::{DateTime, Duration as Days, Utc};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// What a stopped central's operator is told.
pub const NOT_RUNNING: &str = "central is not running (start it: systemctl start easyisp-central)";
/// A server certificate closer to its end than this is a warning.
const EXPIRY_WARN_DAYS: i64 = 30;
/// How long the broker login and the HTTP check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub level: Level,
    pub name: String,
    /// For OK a short note (may be empty); otherwise what is wrong and what to do.
    pub detail: String,
}

impl Check {
    fn ok(name: impl Into<String>, note: impl Into<String>) -> Check {
        Check {
            level: Level::Ok,
            name: name.into(),
            detail: note.into(),
        }
    }

    fn warn(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            level: Level::Warn,
            name: name.into(),
            detail: detail.into(),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            level: Level::Fail,
            name: name.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.level, self.detail.is_empty()) {
            (Level::Ok, true) => write!(f, "OK   {}", self.name),
            (Level::Ok, false) => write!(f, "OK   {} ({})", self.name, self.detail),
            (Level::Warn, _) => write!(f, "WARN {}: {}", self.name, self.detail),
            (Level::Fail, _) => write!(f, "FAIL {}: {}", self.name, self.detail),
        }
    }
}

/// 0 when no check failed, 1 otherwise (warnings do not fail).
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.level == Level::Fail))
}

/// The data directory: exists, owned by the user running doctor, not group/world writable.
pub fn data_dir_verdict(dir: &Path, facts: Option<(u32, u32)>, euid: u32) -> Check {
    let name = "data directory";
    let shown = dir.display();
    let Some((uid, mode)) = facts else {
        return Check::fail(
            name,
            format!(
                "{shown} does not exist: check --data-dir (or EASYISP_DATA_DIR); serve creates it on first start"
            ),
        );
    };
    if uid != euid {
        return Check::fail(
            name,
            format!(
                "{shown} belongs to uid {uid}, not to the user running doctor (uid {euid}): run doctor as the service user (sudo -u easyisp-central easyisp-central doctor), or fix the owner: chown -R easyisp-central: {shown}"
            ),
        );
    }
    if mode & 0o022 != 0 {
        return Check::fail(
            name,
            format!(
                "{shown} has mode {:o}: other users can write into it; chmod 700 {shown}",
                mode & 0o7777
            ),
        );
    }
    Check::ok(name, shown.to_string())
}

/// A file only central may read (mode 0600 or stricter).
pub fn private_file_verdict(name: &str, path: &Path, mode: Option<u32>) -> Check {
    let shown = path.display();
    match mode {
        None => Check::fail(
            name,
            format!(
                "{shown} is missing: restore it from the backup (docs/backup.md); without the key file customers' passwords cannot be read"
            ),
        ),
        Some(mode) if mode & 0o077 != 0 => Check::fail(
            name,
            format!(
                "{shown} has mode {:o}: other users may read it; chmod 600 {shown}",
                mode & 0o7777
            ),
        ),
        Some(_) => Check::ok(name, ""),
    }
}

/// The database's schema version against the migrations this build knows.
pub fn schema_verdict(schema_version: i64, known_version: i64) -> Check {
    let name = "database schema";
    match schema_version.cmp(&known_version) {
        std::cmp::Ordering::Equal => Check::ok(name, format!("version {schema_version}")),
        std::cmp::Ordering::Less => Check::warn(
            name,
            format!(
                "the database is at version {schema_version} and this binary brings it to {known_version}: start (or restart) serve to apply the pending migrations"
            ),
        ),
        std::cmp::Ordering::Greater => Check::fail(
            name,
            format!(
                "the database is at version {schema_version}, newer than this binary knows ({known_version}): this binary is older than the database: upgrade easyisp-central"
            ),
        ),
    }
}

/// `PRAGMA quick_check`'s answer.
pub fn integrity_verdict(lines: &[String]) -> Check {
    let name = "database integrity";
    if lines.len() == 1 && lines[0] == "ok" {
        return Check::ok(name, "");
    }
    let first: Vec<&str> = lines.iter().take(3).map(String::as_str).collect();
    Check::fail(
        name,
        format!(
            "quick_check found damage ({}): stop central and restore the latest backup (docs/backup.md)",
            first.join("; ")
        ),
    )
}

/// The server certificate's remaining life.
pub fn expiry_verdict(not_after: DateTime<Utc>, now: DateTime<Utc>) -> Check {
    let name = "broker certificate expiry";
    let day = not_after.format("%Y-%m-%d");
    if not_after <= now {
        Check::fail(
            name,
            format!(
                "the server certificate expired on {day}: restart serve, which issues a new one"
            ),
        )
    } else if not_after - now < Days::days(EXPIRY_WARN_DAYS) {
        Check::warn(
            name,
            format!("the server certificate expires on {day}: restart serve, which renews it"),
        )
    } else {
        Check::ok(name, format!("until {day}"))
    }
}

/// Whether the certificate names every host agents and central dial.
pub fn names_verdict(covered: &[String], wanted: &[String]) -> Check {
    let name = "broker certificate names";
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !covered.contains(w))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Check::ok(name, wanted.join(", "))
    } else {
        Check::fail(
            name,
            format!(
                "the server certificate does not name {}: agents dialling it will refuse the broker; restart serve, which issues a certificate for the advertised host",
                missing.join(", ")
            ),
        )
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.mode())
}

/// Runs every check against `data_dir` (and `http`, when given). Reads only.
pub async fn run(data_dir: &Path, http: Option<SocketAddr>) -> Vec<Check> {
    let mut checks = Vec::new();
    let dir_facts = std::fs::metadata(data_dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.uid(), m.mode()));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    checks.push(data_dir_verdict(data_dir, dir_facts, euid));
    if dir_facts.is_none() {
        return checks;
    }
    let key = data_dir.join(crate::secrets::KEY_FILE);
    checks.push(private_file_verdict("key file", &key, mode_of(&key)));
    for file in health::private_files(data_dir) {
        if let Some(mode) = mode_of(&file) {
            let label = file
                .strip_prefix(data_dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            checks.push(private_file_verdict(&label, &file, Some(mode)));
        }
    }
    checks.extend(database(data_dir).await);
    checks.extend(broker(data_dir).await);
    if let Some(addr) = http {
        checks.push(http_check(addr).await);
    }
    checks
}

async fn database(data_dir: &Path) -> Vec<Check> {
    let dir = data_dir.to_path_buf();
    let facts = tokio::task::spawn_blocking(move || inspect_database(&dir)).await;
    match facts {
        Ok(Ok(DatabaseFacts {
            schema_version,
            known_version,
            quick_check,
        })) => vec![
            schema_verdict(schema_version, known_version),
            integrity_verdict(&quick_check),
        ],
        Ok(Err(crate::storage::StorageError::NotFound)) => vec![Check::fail(
            "database",
            format!(
                "{} has no database ({}): start serve to create it, or restore a backup (docs/backup.md)",
                data_dir.display(),
                crate::storage::DB_FILE
            ),
        )],
        Ok(Err(e)) => vec![Check::fail(
            "database",
            format!(
                "cannot read it read-only: {e}; check its owner and mode, or restore a backup (docs/backup.md)"
            ),
        )],
        Err(e) => vec![Check::fail("database", format!("the check failed: {e}"))],
    }
}

async fn broker(data_dir: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let record = health::record(data_dir);
    if let Some(record) = &record
        && !record.managed
    {
        checks.push(Check::ok(
            "broker",
            format!(
                "external broker {}; doctor checks only the managed broker",
                record.url
            ),
        ));
        return checks;
    }
    match health::mosquitto_binary() {
        Ok(path) => checks.push(Check::ok("mosquitto installed", path.display().to_string())),
        Err(e) => checks.push(Check::fail("mosquitto installed", e.to_string())),
    }
    let listen = health::listener(data_dir);
    let (ca, server) = health::certificate_paths(data_dir);
    match (ca.is_file(), server.is_file()) {
        (true, true) => match health::server_certificate(data_dir) {
            Ok(facts) if !facts.issued_by_ca => checks.push(Check::fail(
                "broker certificates",
                format!(
                    "{} was not issued by {}: restart serve, which issues a new server certificate",
                    server.display(),
                    ca.display()
                ),
            )),
            Ok(facts) => {
                checks.push(Check::ok("broker certificates", ""));
                checks.push(expiry_verdict(facts.not_after, Utc::now()));
                let mut wanted = Vec::new();
                match &record {
                    Some(record) => {
                        if let Ok(url) = record.url.parse::<easyisp_mqtt::BrokerUrl>() {
                            wanted.push(health::normalise_host(&url.host));
                        }
                    }
                    None => checks.push(Check::warn(
                        "advertised broker address",
                        "unknown: serve records it at start; start (or restart) serve once with this version",
                    )),
                }
                if let Ok(listen) = &listen
                    && !listen.ip().is_unspecified()
                {
                    wanted.push(listen.ip().to_string());
                }
                wanted.dedup();
                if !wanted.is_empty() {
                    checks.push(names_verdict(&facts.names, &wanted));
                }
            }
            Err(e) => checks.push(Check::fail(
                "broker certificates",
                format!("cannot read them ({e}): restore DATA_DIR/tls from the backup"),
            )),
        },
        _ => checks.push(Check::fail(
            "broker certificates",
            format!(
                "{} or {} is missing: start serve to create them (a new CA means every agent must be enrolled again; restore DATA_DIR/tls from the backup if one exists)",
                ca.display(),
                server.display()
            ),
        )),
    }
    match health::mosquitto_pid(data_dir) {
        None => checks.push(Check::fail("broker running", NOT_RUNNING)),
        Some(pid) => {
            let parent = health::parent_pid(pid)
                .map(|p| format!(", central pid {p}"))
                .unwrap_or_default();
            checks.push(Check::ok(
                "broker running",
                format!("mosquitto pid {pid}{parent}"),
            ));
            checks.push(match &listen {
                Err(e) => Check::fail(
                    "broker login",
                    format!("cannot tell where it listens ({e}): restart serve"),
                ),
                Ok(listen) => match health::login(data_dir, *listen, PROBE_TIMEOUT).await {
                    Ok(()) => Check::ok("broker login", format!("as {} on port {}", crate::broker::CENTRAL_USERNAME, listen.port())),
                    Err(reason) => Check::fail(
                        "broker login",
                        format!(
                            "central's own account cannot log in on port {}: {reason}; see central's log (journalctl -u easyisp-central) and restart it",
                            listen.port()
                        ),
                    ),
                },
            });
        }
    }
    checks
}

/// `GET /api/health` over plain HTTP/1.1: central's listener is loopback or behind a proxy.
async fn http_check(addr: SocketAddr) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = "http";
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(reply)) => {
            let status = reply.lines().next().unwrap_or_default().to_string();
            if status.split_whitespace().nth(1) == Some("200") {
                Check::ok(name, format!("http://{addr}/api/health answers"))
            } else {
                Check::fail(
                    name,
                    format!("http://{addr}/api/health answered {status:?}: see central's log"),
                )
            }
        }
        Ok(Err(e)) => Check::fail(
            name,
            format!(
                "http://{addr}/api/health: {e}: is serve running with --http {addr}? {NOT_RUNNING}"
            ),
        ),
        Err(_) => Check::fail(
            name,
            format!(
                "http://{addr}/api/health did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        PathBuf::from("/var/lib/easyisp-central")
    }

    #[test]
    fn a_private_data_directory_of_the_user_is_ok() {
        let check = data_dir_verdict(&dir(), Some((1000, 0o40700)), 1000);
        assert_eq!(check.level, Level::Ok);
        assert_eq!(
            check.to_string(),
            "OK   data directory (/var/lib/easyisp-central)"
        );
    }

    #[test]
    fn a_world_writable_or_foreign_or_missing_data_directory_fails() {
        let writable = data_dir_verdict(&dir(), Some((1000, 0o40777)), 1000);
        assert_eq!(writable.level, Level::Fail);
        assert!(writable.to_string().starts_with("FAIL data directory: "));
        assert!(writable.detail.contains("chmod 700"), "{}", writable.detail);
        let group = data_dir_verdict(&dir(), Some((1000, 0o40770)), 1000);
        assert_eq!(group.level, Level::Fail);
        let foreign = data_dir_verdict(&dir(), Some((0, 0o40700)), 1000);
        assert!(foreign.detail.contains("uid 0"), "{}", foreign.detail);
        let missing = data_dir_verdict(&dir(), None, 1000);
        assert!(missing.detail.contains("--data-dir"), "{}", missing.detail);
    }

    #[test]
    fn the_key_file_must_be_private() {
        let key = dir().join("customer-secrets.key");
        assert_eq!(
            private_file_verdict("key file", &key, Some(0o100600)).level,
            Level::Ok
        );
        assert_eq!(
            private_file_verdict("key file", &key, Some(0o100400)).level,
            Level::Ok
        );
        let open = private_file_verdict("key file", &key, Some(0o100644));
        assert_eq!(open.level, Level::Fail);
        assert!(open.detail.contains("chmod 600"), "{}", open.detail);
        assert_eq!(
            private_file_verdict("key file", &key, None).level,
            Level::Fail
        );
    }

    #[test]
    fn pending_migrations_warn_and_a_newer_database_fails() {
        assert_eq!(schema_verdict(5, 5).level, Level::Ok);
        let pending = schema_verdict(4, 5);
        assert_eq!(pending.level, Level::Warn);
        assert!(pending.detail.contains("start (or restart) serve"));
        let newer = schema_verdict(6, 5);
        assert_eq!(newer.level, Level::Fail);
        assert!(newer.detail.contains("upgrade"));
    }

    #[test]
    fn quick_check_must_say_ok() {
        assert_eq!(integrity_verdict(&["ok".into()]).level, Level::Ok);
        let damaged = integrity_verdict(&["row 3 missing from index x".into()]);
        assert_eq!(damaged.level, Level::Fail);
        assert!(damaged.detail.contains("row 3 missing"));
        assert_eq!(integrity_verdict(&[]).level, Level::Fail);
    }

    #[test]
    fn certificates_warn_within_30_days_and_fail_once_expired() {
        let now: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiry_verdict(now + Days::days(300), now).level, Level::Ok);
        assert_eq!(expiry_verdict(now + Days::days(29), now).level, Level::Warn);
        assert_eq!(expiry_verdict(now - Days::days(1), now).level, Level::Fail);
    }

    #[test]
    fn the_certificate_must_name_the_advertised_host() {
        let covered: Vec<String> = ["central.example.net", "localhost", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            names_verdict(&covered, &["central.example.net".into()]).level,
            Level::Ok
        );
        let wrong = names_verdict(&covered, &["broker.example.net".into()]);
        assert_eq!(wrong.level, Level::Fail);
        assert!(wrong.detail.contains("broker.example.net"));
    }

    #[test]
    fn only_failures_fail_the_exit_code() {
        let ok = Check::ok("a", "");
        let warn = Check::warn("b", "soon");
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 0);
        assert_eq!(exit_code(&[ok, warn, Check::fail("c", "broken")]), 1);
    }
}
