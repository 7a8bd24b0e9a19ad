//! Router addresses: `rest+https://user@host[:port]`, `rest+http://…`, `api://…`,
//! `api-ssl://…`, `ssh://…` (default ports 443/80/8728/8729/22), with an optional
//! `?fingerprint=<sha256 hex>` to pin a self-signed TLS certificate (REST over HTTPS, API-SSL).
//!
//! A password in the URL is refused: URLs end up in logs, shell history and config listings,
//! so the password comes from `EASYISP_ROUTER_PASSWORD` instead.

use std::fmt;
use std::str::FromStr;

/// Which of RouterOS's management interfaces to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    RestHttps,
    RestHttp,
    Api,
    ApiSsl,
    Ssh,
}

impl Transport {
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::RestHttps => "rest+https",
            Transport::RestHttp => "rest+http",
            Transport::Api => "api",
            Transport::ApiSsl => "api-ssl",
            Transport::Ssh => "ssh",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Transport::RestHttps => 443,
            Transport::RestHttp => 80,
            Transport::Api => 8728,
            Transport::ApiSsl => 8729,
            Transport::Ssh => 22,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Transport::RestHttps | Transport::ApiSsl)
    }
}

/// A parsed router URL. Holds no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterUrl {
    pub transport: Transport,
    pub user: String,
    /// Host name or IP address; IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// SHA-256 of the router's DER certificate, 32 bytes, when pinned.
    pub fingerprint: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid router URL: {0}")]
pub struct UrlError(pub String);

fn err(msg: impl Into<String>) -> UrlError {
    UrlError(msg.into())
}

impl FromStr for RouterUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            err(
                "the URL has no scheme; expected e.g. rest+https://admin@192.0.2.1 \
                 (schemes: rest+https, rest+http, api, api-ssl, ssh)",
            )
        })?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "rest+https" => Transport::RestHttps,
            "rest+http" => Transport::RestHttp,
            "api" => Transport::Api,
            "api-ssl" => Transport::ApiSsl,
            "ssh" => Transport::Ssh,
            other => {
                return Err(err(format!(
                    "unknown scheme {other:?}; use rest+https, rest+http, api, api-ssl or ssh"
                )));
            }
        };
        let (authority_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority_path.strip_suffix('/').unwrap_or(authority_path);
        if authority.contains('/') {
            return Err(err(
                "a router URL has no path: use scheme://user@host[:port]",
            ));
        }
        let (userinfo, hostport) = authority.rsplit_once('@').ok_or_else(|| {
            err("the URL names no user: use scheme://user@host[:port] (the password comes from EASYISP_ROUTER_PASSWORD)")
        })?;
        if userinfo.contains(':') {
            return Err(err(
                "the URL contains a password; remove it and put the password in the environment variable EASYISP_ROUTER_PASSWORD",
            ));
        }
        let user = percent_encoding::percent_decode_str(userinfo)
            .decode_utf8()
            .map_err(|_| err("the user name is not valid UTF-8"))?
            .into_owned();
        if user.is_empty() {
            return Err(err("the user name is empty"));
        }
        let (host, port) = split_host_port(hostport)?;
        let port = port.unwrap_or(transport.default_port());
        let mut fingerprint = None;
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    "fingerprint" => {
                        if !transport.uses_tls() {
                            return Err(err(format!(
                                "fingerprint pinning needs TLS; {} does not use it",
                                transport.scheme()
                            )));
                        }
                        fingerprint = Some(parse_fingerprint(v)?);
                    }
                    other => {
                        return Err(err(format!(
                            "unknown parameter {other:?}; the only one is fingerprint=<sha256 hex>"
                        )));
                    }
                }
            }
        }
        Ok(RouterUrl {
            transport,
            user,
            host,
            port,
            fingerprint,
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| err("unterminated [ in IPv6 address"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("expected :port after ]"))?,
                ),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(err("put IPv6 addresses in brackets: [2001:db8::1]")),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(err("the host is empty"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err(format!("invalid port {p:?}")))?,
        ),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// Accepts 64 hex digits, optionally separated by `:` (as `openssl x509 -fingerprint` prints).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], UrlError> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bad = || err("fingerprint must be the 64 hex digits of the certificate's SHA-256");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

pub fn fingerprint_hex(fp: &[u8]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for RouterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{}@{}:{}",
            self.transport.scheme(),
            self.user,
            host,
            self.port
        )?;
        if let Some(fp) = &self.fingerprint {
            write!(f, "?fingerprint={}", fingerprint_hex(fp))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_gets_its_default_port() {
        for (url, t, port) in [
            ("rest+https://admin@10.0.0.1", Transport::RestHttps, 443),
            ("rest+http://admin@10.0.0.1", Transport::RestHttp, 80),
            ("api://admin@10.0.0.1", Transport::Api, 8728),
            ("api-ssl://admin@10.0.0.1", Transport::ApiSsl, 8729),
            ("ssh://admin@10.0.0.1", Transport::Ssh, 22),
        ] {
            let u: RouterUrl = url.parse().unwrap();
            assert_eq!(u.transport, t);
            assert_eq!(u.port, port);
            assert_eq!(u.user, "admin");
            assert_eq!(u.host, "10.0.0.1");
        }
    }

    #[test]
    fn explicit_port_ipv6_and_fingerprint_parse() {
        let fp = "ab".repeat(32);
        let u: RouterUrl = format!("api-ssl://easyisp@[::1]:9000?fingerprint={fp}")
            .parse()
            .unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 9000);
        assert_eq!(u.fingerprint, Some([0xab; 32]));
        assert_eq!(
            u.to_string(),
            format!("api-ssl://easyisp@[::1]:9000?fingerprint={fp}")
        );
    }

    #[test]
    fn password_in_url_is_rejected_with_a_pointer_to_the_env_var() {
        let e = "rest+https://admin:secret@10.0.0.1"
            .parse::<RouterUrl>()
            .unwrap_err();
        assert!(e.to_string().contains("EASYISP_ROUTER_PASSWORD"), "{e}");
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn malformed_urls_are_rejected() {
        for bad in [
            "10.0.0.1",
            "telnet://admin@10.0.0.1",
            "api://10.0.0.1",
            "api://admin@10.0.0.1:0",
            "api://admin@10.0.0.1:99999",
            "api://admin@",
            "api://admin@10.0.0.1/rest",
            "api://admin@10.0.0.1?fingerprint=abcd",
            "ssh://admin@10.0.0.1?fingerprint=".to_string().leak(),
            "api://admin@10.0.0.1?foo=bar",
            "api://admin@::1",
        ] {
            assert!(bad.parse::<RouterUrl>().is_err(), "{bad} accepted");
        }
    }
}
