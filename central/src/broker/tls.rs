//! The managed broker's certificates in `DATA_DIR/tls/`: a CA made on first start (`ca.crt`,
//! `ca.key`), which every enrolled agent trusts, and a server certificate signed by it
//! (`server.crt`, `server.key`) for the names agents and central dial.
//!
//! The CA is never replaced once it exists: agents pinned it at enrollment, so a new CA would
//! lock every agent out. The server certificate is replaced when it does not cover a required
//! name, expires within [`RENEW_BEFORE_DAYS`], or was not issued by the CA on disk.

use super::BrokerError;
use super::files::{private_dir, write_atomic};
use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A server certificate this close to its end is replaced at start.
pub const RENEW_BEFORE_DAYS: i64 = 30;
const CA_VALID_DAYS: i64 = 20 * 365;
const SERVER_VALID_DAYS: i64 = 2 * 365;
const CA_NAME: &str = "EasyISP central broker CA";

/// Where the files are and the CA that clients must trust.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_pem: String,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Makes sure the CA exists and the server certificate covers `hosts` (DNS names or IP
/// addresses) for at least [`RENEW_BEFORE_DAYS`] more days; `localhost`, `127.0.0.1` and `::1`
/// are always included so central's own client can dial the loopback.
pub fn ensure(dir: &Path, hosts: &[String], now: DateTime<Utc>) -> Result<TlsFiles, BrokerError> {
    private_dir(dir)?;
    let files = TlsFiles {
        ca_pem: String::new(),
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    let ca_key_path = dir.join("ca.key");
    let (ca_pem, ca_key_pem) = match (files.ca_cert.exists(), ca_key_path.exists()) {
        (true, true) => (read(&files.ca_cert)?, read(&ca_key_path)?),
        (false, false) => {
            let (cert, key) = new_ca(now)?;
            // The key first: a crash between the two writes leaves no CA without its key.
            write_atomic(&ca_key_path, key.as_bytes(), 0o600)?;
            write_atomic(&files.ca_cert, cert.as_bytes(), 0o644)?;
            tracing::info!(path = %files.ca_cert.display(), "created the broker's certificate authority");
            (cert, key)
        }
        _ => {
            return Err(BrokerError::Tls(format!(
                "{} holds only one of ca.crt and ca.key; restore the missing file from a backup, \
                 or remove both to make a new CA (every agent must then be enrolled again)",
                dir.display()
            )));
        }
    };
    let mut wanted: Vec<String> = Vec::new();
    let defaults = ["localhost", "127.0.0.1", "::1"].map(String::from);
    for name in hosts.iter().map(|h| normalise(h)).chain(defaults) {
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    let keep = match (read(&files.server_cert), files.server_key.exists()) {
        (Ok(server_pem), true) => match server_is_usable(&server_pem, &ca_pem, &wanted, now) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(reason = %why, "replacing the broker's server certificate");
                false
            }
        },
        _ => false,
    };
    if !keep {
        let (cert, key) = new_server(&ca_pem, &ca_key_pem, &wanted, now)?;
        write_atomic(&files.server_key, key.as_bytes(), 0o600)?;
        write_atomic(&files.server_cert, cert.as_bytes(), 0o644)?;
        tracing::info!(names = ?wanted, "issued the broker's server certificate");
    }
    Ok(TlsFiles { ca_pem, ..files })
}

fn read(path: &Path) -> Result<String, BrokerError> {
    std::fs::read_to_string(path).map_err(|source| BrokerError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// IP addresses in their canonical text, DNS names in lower case, without IPv6 brackets.
pub fn normalise(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

fn rcgen_error(e: rcgen::Error) -> BrokerError {
    BrokerError::Tls(e.to_string())
}

/// Sets the validity from the day before `now` (tolerates a clock slightly behind) for `days`.
fn validity(params: &mut CertificateParams, now: DateTime<Utc>, days: i64) {
    // `date_time_ymd` takes a calendar date, and chrono's dates are always valid ones.
    let ymd = |at: DateTime<Utc>| rcgen::date_time_ymd(at.year(), at.month() as u8, at.day() as u8);
    params.not_before = ymd(now - Duration::days(1));
    params.not_after = ymd(now + Duration::days(days));
}

fn new_ca(now: DateTime<Utc>) -> Result<(String, String), BrokerError> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "EasyISP");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_VALID_DAYS);
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_server(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<(String, String), BrokerError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(rcgen_error)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(rcgen_error)?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().map_or("localhost", |n| n));
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|_| BrokerError::Tls(format!("{name:?} is not a valid DNS name")))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, SERVER_VALID_DAYS);
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `Ok` when the certificate was issued by the CA, names every one of `names` and stays valid
/// for [`RENEW_BEFORE_DAYS`]; otherwise the reason it must be replaced.
fn server_is_usable(
    server_pem: &str,
    ca_pem: &str,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let facts = server_facts(server_pem, ca_pem)?;
    if !facts.issued_by_ca {
        return Err("it was issued by another CA".into());
    }
    if facts.not_after < now + Duration::days(RENEW_BEFORE_DAYS) {
        return Err(format!("it expires within {RENEW_BEFORE_DAYS} days"));
    }
    match names.iter().find(|n| !facts.names.contains(n)) {
        Some(missing) => Err(format!("it does not name {missing}")),
        None => Ok(()),
    }
}

/// What a server certificate says about itself (read by `serve` and by `doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertFacts {
    /// Whether its issuer is the CA given.
    pub issued_by_ca: bool,
    pub not_after: DateTime<Utc>,
    /// The names it covers (subject alternative names), normalised like [`normalise`].
    pub names: Vec<String>,
}

/// Parses the server certificate and the CA (both PEM).
pub fn server_facts(server_pem: &str, ca_pem: &str) -> Result<ServerCertFacts, String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;
    let (_, server) = parse_x509_pem(server_pem.as_bytes()).map_err(|e| e.to_string())?;
    let server = server.parse_x509().map_err(|e| e.to_string())?;
    let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    let ca = ca.parse_x509().map_err(|e| e.to_string())?;
    let not_after = DateTime::<Utc>::from_timestamp(server.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "its expiry date is out of range".to_string())?;
    let mut covered = Vec::new();
    if let Ok(Some(san)) = server.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => covered.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    covered.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(ServerCertFacts {
        issued_by_ca: server.issuer().as_raw() == ca.subject().as_raw(),
        not_after,
        names: covered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn first_start_makes_a_ca_and_a_server_certificate_for_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let now = Utc::now();
        let files = ensure(&tls, &names(&["Central.Example.NET"]), now).unwrap();
        assert!(files.ca_pem.contains("BEGIN CERTIFICATE"));
        let server = std::fs::read_to_string(&files.server_cert).unwrap();
        let wanted = names(&["central.example.net", "localhost", "127.0.0.1", "::1"]);
        assert_eq!(
            server_is_usable(&server, &files.ca_pem, &wanted, now),
            Ok(())
        );
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(tls.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn the_ca_is_kept_and_the_server_certificate_follows_the_names_and_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let now = Utc::now();
        let first = ensure(&tls, &names(&["10.0.0.5"]), now).unwrap();
        let server_1 = std::fs::read_to_string(&first.server_cert).unwrap();

        // Same names: nothing changes.
        let again = ensure(&tls, &names(&["10.0.0.5"]), now).unwrap();
        assert_eq!(again.ca_pem, first.ca_pem);
        assert_eq!(
            std::fs::read_to_string(&again.server_cert).unwrap(),
            server_1
        );

        // A new advertised name: a new server certificate from the same CA.
        let renamed = ensure(&tls, &names(&["broker.example.net"]), now).unwrap();
        assert_eq!(renamed.ca_pem, first.ca_pem);
        let server_2 = std::fs::read_to_string(&renamed.server_cert).unwrap();
        assert_ne!(server_2, server_1);

        // Close to expiry: replaced again, CA still the same.
        let later = now + Duration::days(SERVER_VALID_DAYS - RENEW_BEFORE_DAYS + 1);
        let renewed = ensure(&tls, &names(&["broker.example.net"]), later).unwrap();
        assert_eq!(renewed.ca_pem, first.ca_pem);
        assert_ne!(
            std::fs::read_to_string(&renewed.server_cert).unwrap(),
            server_2
        );
    }

    #[test]
    fn a_ca_without_its_key_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        ensure(&tls, &[], Utc::now()).unwrap();
        std::fs::remove_file(tls.join("ca.key")).unwrap();
        let err = ensure(&tls, &[], Utc::now()).unwrap_err().to_string();
        assert!(err.contains("ca.key"), "{err}");
        assert!(tls.join("ca.crt").exists());
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("[::1]"), "::1");
        assert_eq!(normalise("Host.Example"), "host.example");
        assert_eq!(normalise("010.0.0.1"), "010.0.0.1");
        assert_eq!(normalise("0:0:0:0:0:0:0:1"), "::1");
    }
}
