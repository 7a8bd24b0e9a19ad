//! Per-address objects: simple queues (`/queue/simple`, routeros.md §4.8), DHCP leases
//! (`/ip/dhcp-server/lease`, §4.9) and firewall address-list entries (§4.10).

use std::time::Duration;

use super::{Attr, ObjectSpec, RouterObject, opt_string, push_opt};
use crate::routeros::error::Result;
use crate::routeros::value::{Id, Row, Text, bool_text};

// ---------------------------------------------------------------- simple queue (§4.8)

#[derive(Debug, Clone, PartialEq)]
pub struct SimpleQueue {
    pub id: Id,
    pub name: Text,
    pub target: Option<String>,
    /// `upload/download` of the target, in bits/s.
    pub max_limit: Option<String>,
    pub limit_at: Option<String>,
    pub burst_limit: Option<String>,
    pub parent: Option<String>,
    pub disabled: bool,
    pub dynamic: bool,
    pub comment: Option<Text>,
    /// `(upload, download)` byte counters of the target.
    pub bytes: Option<(u64, u64)>,
}

impl RouterObject for SimpleQueue {
    const MENU: &'static str = "/queue/simple";
    const KIND: &'static str = "simple queue";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "name",
        "target",
        "max-limit",
        "limit-at",
        "burst-limit",
        "parent",
        "disabled",
        "dynamic",
        "comment",
        "bytes",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(SimpleQueue {
            id: r.id()?,
            name: r.text("name"),
            target: opt_string(r, "target"),
            max_limit: opt_string(r, "max-limit"),
            limit_at: opt_string(r, "limit-at"),
            burst_limit: opt_string(r, "burst-limit"),
            parent: opt_string(r, "parent"),
            disabled: r.flag("disabled")?,
            dynamic: r.flag("dynamic")?,
            comment: r.opt_text("comment"),
            bytes: r.u64_pair("bytes")?,
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
pub struct SimpleQueueSpec {
    pub name: Text,
    pub target: String,
    /// `upload/download`, e.g. `5M/10M`.
    pub max_limit: Option<String>,
    pub limit_at: Option<String>,
    pub burst_limit: Option<String>,
    pub parent: Option<String>,
    pub disabled: bool,
    pub comment: Option<Text>,
}

impl ObjectSpec for SimpleQueueSpec {
    type Object = SimpleQueue;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![
            ("name", self.name.clone()),
            ("target", Text::from(&self.target)),
            ("disabled", bool_text(self.disabled)),
        ];
        push_opt(&mut a, "max-limit", &self.max_limit);
        push_opt(&mut a, "limit-at", &self.limit_at);
        push_opt(&mut a, "burst-limit", &self.burst_limit);
        push_opt(&mut a, "parent", &self.parent);
        push_opt(&mut a, "comment", &self.comment);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("name", self.name.clone())]
    }
}

// ---------------------------------------------------------------- DHCP lease (§4.9)

#[derive(Debug, Clone, PartialEq)]
pub struct DhcpLease {
    pub id: Id,
    pub address: Option<String>,
    pub mac_address: Text,
    pub server: Option<String>,
    pub comment: Option<Text>,
    pub disabled: bool,
    pub dynamic: bool,
    pub block_access: bool,
    pub status: Option<String>,
    pub host_name: Option<Text>,
    pub active_address: Option<String>,
    pub rate_limit: Option<String>,
    pub address_lists: Option<String>,
}

impl RouterObject for DhcpLease {
    const MENU: &'static str = "/ip/dhcp-server/lease";
    const KIND: &'static str = "dhcp lease";
    const PROPLIST: &'static [&'static str] = &[
        ".id",
        "address",
        "mac-address",
        "server",
        "comment",
        "disabled",
        "dynamic",
        "block-access",
        "status",
        "host-name",
        "active-address",
        "rate-limit",
        "address-lists",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(DhcpLease {
            id: r.id()?,
            address: opt_string(r, "address"),
            mac_address: r.text("mac-address"),
            server: opt_string(r, "server"),
            comment: r.opt_text("comment"),
            disabled: r.flag("disabled")?,
            dynamic: r.flag("dynamic")?,
            block_access: r.flag("block-access")?,
            status: opt_string(r, "status"),
            host_name: r.opt_text("host-name"),
            active_address: opt_string(r, "active-address"),
            rate_limit: opt_string(r, "rate-limit"),
            address_lists: opt_string(r, "address-lists"),
        })
    }
    fn id(&self) -> &Id {
        &self.id
    }
    fn key(&self) -> Vec<Attr> {
        vec![("mac-address", self.mac_address.clone())]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DhcpLeaseSpec {
    pub address: String,
    /// Upper-case `AA:BB:CC:DD:EE:FF`; the lease's identity.
    pub mac_address: String,
    pub server: Option<String>,
    pub comment: Option<Text>,
    pub disabled: bool,
    pub block_access: bool,
    pub rate_limit: Option<String>,
    pub address_lists: Option<String>,
}

impl ObjectSpec for DhcpLeaseSpec {
    type Object = DhcpLease;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![
            ("address", Text::from(&self.address)),
            ("mac-address", Text::from(&self.mac_address)),
            ("disabled", bool_text(self.disabled)),
            ("block-access", bool_text(self.block_access)),
        ];
        push_opt(&mut a, "server", &self.server);
        push_opt(&mut a, "comment", &self.comment);
        push_opt(&mut a, "rate-limit", &self.rate_limit);
        push_opt(&mut a, "address-lists", &self.address_lists);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![("mac-address", Text::from(&self.mac_address))]
    }
}

// ---------------------------------------------------------------- address list (§4.10)

#[derive(Debug, Clone, PartialEq)]
pub struct AddressListEntry {
    pub id: Id,
    pub list: Text,
    pub address: Text,
    pub comment: Option<Text>,
    pub disabled: bool,
    pub dynamic: bool,
    pub timeout: Option<Duration>,
}

impl RouterObject for AddressListEntry {
    const MENU: &'static str = "/ip/firewall/address-list";
    const KIND: &'static str = "address-list entry";
    const PROPLIST: &'static [&'static str] = &[
        ".id", "list", "address", "comment", "disabled", "dynamic", "timeout",
    ];
    fn from_row(r: &Row) -> Result<Self> {
        Ok(AddressListEntry {
            id: r.id()?,
            list: r.text("list"),
            address: r.text("address"),
            comment: r.opt_text("comment"),
            disabled: r.flag("disabled")?,
            dynamic: r.flag("dynamic")?,
            timeout: r.duration("timeout").ok().flatten(),
        })
    }
    fn id(&self) -> &Id {
        &self.id
    }
    fn key(&self) -> Vec<Attr> {
        vec![
            ("list", self.list.clone()),
            ("address", self.address.clone()),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressListEntrySpec {
    pub list: Text,
    pub address: String,
    pub comment: Option<Text>,
    pub disabled: bool,
}

impl ObjectSpec for AddressListEntrySpec {
    type Object = AddressListEntry;
    fn attrs(&self) -> Vec<Attr> {
        let mut a = vec![
            ("list", self.list.clone()),
            ("address", Text::from(&self.address)),
            ("disabled", bool_text(self.disabled)),
        ];
        push_opt(&mut a, "comment", &self.comment);
        a
    }
    fn key(&self) -> Vec<Attr> {
        vec![
            ("list", self.list.clone()),
            ("address", Text::from(&self.address)),
        ]
    }
}
