//! PPP secrets (`/ppp/secret`, routeros.md §4.1) and PPP profiles (`/ppp/profile`, §4.2).

use std::time::Duration;

use easyisp_protocol::Secret;

use super::{Attr, ObjectSpec, RouterObject, opt_string, push_opt};
use crate::routeros::error::Result;
use crate::routeros::value::{Id, Row, Text, bool_text};

// ---------------------------------------------------------------- PPP secret (§4.1)

#[derive(Debug, Clone, PartialEq)]
pub struct PppSecret {
    pub id: Id,
    pub name: Text,
    /// Only present when the router user has the `sensitive` policy.
    pub password: Option<Secret<String>>,
    pub service: Text,
    pub profile: Text,
    pub disabled: bool,
    pub comment: Option<Text>,
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    pub caller_id: Option<String>,
    pub limit_bytes_in: Option<u64>,
    pub limit_bytes_out: Option<u64>,
    pub last_logged_out: Option<chrono::NaiveDateTime>,
    pub last_disconnect_reason: Option<String>,
}

impl RouterObject for PppSecret {
    const MENU: &'static str = "/ppp/secret";
    const KIND: &'static str = "ppp secret";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "name",
        "password",
        "service",
        "profile",
        "disabled",
        "comment",
        "local-address",
        "remote-address",
        "caller-id",
        "limit-bytes-in",
        "limit-bytes-out",
        "last-logged-out",
        "last-disconnect-reason",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(PppSecret {
            id: r.id()?,
            name: r.text("name"),
            password: r.get("password").map(|p| Secret::new(p.to_string_lossy())),
            service: r.opt_text("service").unwrap_or_else(|| "any".into()),
            profile: r.opt_text("profile").unwrap_or_else(|| "default".into()),
            disabled: r.flag("disabled")?,
            comment: r.opt_text("comment"),
            local_address: opt_string(r, "local-address"),
            remote_address: opt_string(r, "remote-address"),
            caller_id: opt_string(r, "caller-id"),
            limit_bytes_in: r.u64("limit-bytes-in")?,
            limit_bytes_out: r.u64("limit-bytes-out")?,
            // Routers that never saw a logout print odd placeholders; tolerate them.
            last_logged_out: r.datetime("last-logged-out").ok().flatten(),
            last_disconnect_reason: opt_string(r, "last-disconnect-reason"),
        })
    }
    fn id(&self) -> &Id {
        &self.id
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PppSecretSpec {
    pub name: Text,
    pub password: Secret<String>,
    /// `pppoe` for EasyISP customers.
    pub service: Text,
    pub profile: Text,
    pub disabled: bool,
    pub comment: Option<Text>,
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    pub caller_id: Option<String>,
}

impl ObjectSpec for PppSecretSpec {
    type Object = PppSecret;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![
            ("name", self.name.clone()),
            ("password", Text::from(self.password.expose().as_str())),
            ("service", self.service.clone()),
            ("profile", self.profile.clone()),
            ("disabled", bool_text(self.disabled)),
        ];
        push_opt(&mut a, "comment", &self.comment);
        push_opt(&mut a, "local-address", &self.local_address);
        push_opt(&mut a, "remote-address", &self.remote_address);
        push_opt(&mut a, "caller-id", &self.caller_id);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}

// ---------------------------------------------------------------- PPP profile (§4.2)

#[derive(Debug, Clone, PartialEq)]
pub struct PppProfile {
    pub id: Id,
    pub name: Text,
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    /// `rx/tx` from the router's view: upload/download of the customer (§5).
    pub rate_limit: Option<String>,
    pub address_list: Option<String>,
    pub dns_server: Option<String>,
    pub only_one: Option<String>,
    pub session_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub comment: Option<Text>,
    /// The built-in `default`/`default-encryption` profiles (cannot be removed).
    pub builtin: bool,
}

impl RouterObject for PppProfile {
    const MENU: &'static str = "/ppp/profile";
    const KIND: &'static str = "ppp profile";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "name",
        "local-address",
        "remote-address",
        "rate-limit",
        "address-list",
        "dns-server",
        "only-one",
        "session-timeout",
        "idle-timeout",
        "comment",
        "default",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        let name = r.text("name");
        Ok(PppProfile {
            id: r.id()?,
            builtin: r.flag("default")? || name == "default" || name == "default-encryption",
            name,
            local_address: opt_string(r, "local-address"),
            remote_address: opt_string(r, "remote-address"),
            rate_limit: opt_string(r, "rate-limit"),
            address_list: opt_string(r, "address-list"),
            dns_server: opt_string(r, "dns-server"),
            only_one: opt_string(r, "only-one"),
            session_timeout: r.duration("session-timeout").ok().flatten(),
            idle_timeout: r.duration("idle-timeout").ok().flatten(),
            comment: r.opt_text("comment"),
        })
    }
    fn id(&self) -> &Id {
        &self.id
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PppProfileSpec {
    pub name: Text,
    pub local_address: Option<String>,
    pub remote_address: Option<String>,
    /// Router syntax `upload/download`, e.g. `5M/10M` (§5).
    pub rate_limit: Option<String>,
    pub address_list: Option<String>,
    pub dns_server: Option<String>,
    pub only_one: Option<String>,
    pub comment: Option<Text>,
}

impl ObjectSpec for PppProfileSpec {
    type Object = PppProfile;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![("name", self.name.clone())];
        push_opt(&mut a, "local-address", &self.local_address);
        push_opt(&mut a, "remote-address", &self.remote_address);
        push_opt(&mut a, "rate-limit", &self.rate_limit);
        push_opt(&mut a, "address-list", &self.address_list);
        push_opt(&mut a, "dns-server", &self.dns_server);
        push_opt(&mut a, "only-one", &self.only_one);
        push_opt(&mut a, "comment", &self.comment);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}
