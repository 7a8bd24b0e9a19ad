//! Hotspot users (`/ip/hotspot/user`, routeros.md §4.5) and user profiles
//! (`/ip/hotspot/user/profile`, §4.6).

use std::time::Duration;

use easyisp_protocol::Secret;

use super::{Attr, ObjectSpec, RouterObject, opt_string, push_opt};
use crate::routeros::error::Result;
use crate::routeros::value::{Id, Row, Text, bool_text};

// ---------------------------------------------------------------- hotspot user (§4.5)

#[derive(Debug, Clone, PartialEq)]
pub struct HotspotUser {
    pub id: Id,
    pub name: Text,
    pub password: Option<Secret<String>>,
    pub profile: Text,
    pub server: Option<String>,
    pub mac_address: Option<String>,
    pub address: Option<String>,
    pub disabled: bool,
    pub dynamic: bool,
    pub comment: Option<Text>,
    pub limit_uptime: Option<Duration>,
    pub limit_bytes_in: Option<u64>,
    pub limit_bytes_out: Option<u64>,
    pub limit_bytes_total: Option<u64>,
    pub uptime: Option<Duration>,
    /// Cumulative bytes from the client (upload), across sessions (§4.5, §7.7).
    pub bytes_in: Option<u64>,
    /// Cumulative bytes to the client (download).
    pub bytes_out: Option<u64>,
}

impl RouterObject for HotspotUser {
    const MENU: &'static str = "/ip/hotspot/user";
    const KIND: &'static str = "hotspot user";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "name",
        "password",
        "profile",
        "server",
        "mac-address",
        "address",
        "disabled",
        "dynamic",
        "comment",
        "limit-uptime",
        "limit-bytes-in",
        "limit-bytes-out",
        "limit-bytes-total",
        "uptime",
        "bytes-in",
        "bytes-out",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(HotspotUser {
            id: r.id()?,
            name: r.text("name"),
            password: r.get("password").map(|p| Secret::new(p.to_string_lossy())),
            profile: r.opt_text("profile").unwrap_or_else(|| "default".into()),
            server: opt_string(r, "server"),
            mac_address: opt_string(r, "mac-address"),
            address: opt_string(r, "address"),
            disabled: r.flag("disabled")?,
            dynamic: r.flag("dynamic")?,
            comment: r.opt_text("comment"),
            limit_uptime: r.duration("limit-uptime")?,
            limit_bytes_in: r.u64("limit-bytes-in")?,
            limit_bytes_out: r.u64("limit-bytes-out")?,
            limit_bytes_total: r.u64("limit-bytes-total")?,
            uptime: r.duration("uptime")?,
            bytes_in: r.u64("bytes-in")?,
            bytes_out: r.u64("bytes-out")?,
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
pub struct HotspotUserSpec {
    pub name: Text,
    pub password: Secret<String>,
    pub profile: Text,
    pub server: Option<String>,
    pub mac_address: Option<String>,
    pub address: Option<String>,
    pub disabled: bool,
    pub comment: Option<Text>,
    /// Written as whole seconds (`3600s`), accepted by every version.
    pub limit_uptime: Option<Duration>,
    pub limit_bytes_total: Option<u64>,
}

impl ObjectSpec for HotspotUserSpec {
    type Object = HotspotUser;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![
            ("name", self.name.clone()),
            ("password", Text::from(self.password.expose().as_str())),
            ("profile", self.profile.clone()),
            ("disabled", bool_text(self.disabled)),
        ];
        push_opt(&mut a, "server", &self.server);
        push_opt(&mut a, "mac-address", &self.mac_address);
        push_opt(&mut a, "address", &self.address);
        push_opt(&mut a, "comment", &self.comment);
        push_opt(
            &mut a,
            "limit-uptime",
            &self.limit_uptime.map(|d| format!("{}s", d.as_secs())),
        );
        push_opt(
            &mut a,
            "limit-bytes-total",
            &self.limit_bytes_total.map(|n| n.to_string()),
        );
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}

// ---------------------------------------------------------------- hotspot user profile (§4.6)

#[derive(Debug, Clone, PartialEq)]
pub struct HotspotUserProfile {
    pub id: Id,
    pub name: Text,
    pub rate_limit: Option<String>,
    /// A number or `unlimited`.
    pub shared_users: Option<String>,
    pub session_timeout: Option<Duration>,
    pub idle_timeout: Option<String>,
    pub address_pool: Option<String>,
    pub address_list: Option<String>,
    pub comment: Option<Text>,
}

impl RouterObject for HotspotUserProfile {
    const MENU: &'static str = "/ip/hotspot/user/profile";
    const KIND: &'static str = "hotspot user profile";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "name",
        "rate-limit",
        "shared-users",
        "session-timeout",
        "idle-timeout",
        "address-pool",
        "address-list",
        "comment",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(HotspotUserProfile {
            id: r.id()?,
            name: r.text("name"),
            rate_limit: opt_string(r, "rate-limit"),
            shared_users: opt_string(r, "shared-users"),
            session_timeout: r.duration("session-timeout").ok().flatten(),
            idle_timeout: opt_string(r, "idle-timeout"),
            address_pool: opt_string(r, "address-pool"),
            address_list: opt_string(r, "address-list"),
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
pub struct HotspotUserProfileSpec {
    pub name: Text,
    pub rate_limit: Option<String>,
    pub shared_users: Option<String>,
    pub address_pool: Option<String>,
    pub address_list: Option<String>,
    pub comment: Option<Text>,
}

impl ObjectSpec for HotspotUserProfileSpec {
    type Object = HotspotUserProfile;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![("name", self.name.clone())];
        push_opt(&mut a, "rate-limit", &self.rate_limit);
        push_opt(&mut a, "shared-users", &self.shared_users);
        push_opt(&mut a, "address-pool", &self.address_pool);
        push_opt(&mut a, "address-list", &self.address_list);
        push_opt(&mut a, "comment", &self.comment);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}
