//! The router state the replica asks for, computed without touching the router.
//!
//! - Each package → one PPP profile and one hotspot user profile named after the package, with
//!   `rate-limit` = upload/download (RouterOS `rx/tx`).
//! - PPPoE customer → `/ppp/secret`; hotspot customer → `/ip/hotspot/user`; both disabled when
//!   the customer has no access (suspended, disabled, or expired per the expiry gate). A
//!   customer without a package uses the router's `default` profile.
//! - DHCP and static customers → a simple queue on their address, and an entry in the
//!   `easyisp-cutoff` address list while they have no access.
//! - Soft-deleted customers and packages have no router objects.
//! - A customer whose router (`nasId`) is not this router is absent: the replica may still hold
//!   the record of a customer that moved away, and its objects here must go.

use super::{CUTOFF_LIST, marker};
use crate::expiry::plan::Gate;
use crate::routeros::{
    AddressListEntrySpec, HotspotUserProfileSpec, HotspotUserSpec, PppProfileSpec, PppSecretSpec,
    SimpleQueueSpec, Text,
};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord};
use easyisp_protocol::package::{PackageRecord, rate_limit};
use easyisp_protocol::{CustomerStatus, Secret};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// The desired router objects, keyed by their owner's id.
#[derive(Debug, Default)]
pub struct Desired {
    pub ppp_profiles: BTreeMap<Uuid, PppProfileSpec>,
    pub hotspot_profiles: BTreeMap<Uuid, HotspotUserProfileSpec>,
    pub ppp_secrets: BTreeMap<Uuid, PppSecretSpec>,
    pub hotspot_users: BTreeMap<Uuid, HotspotUserSpec>,
    pub queues: BTreeMap<Uuid, SimpleQueueSpec>,
    pub cutoffs: BTreeMap<Uuid, AddressListEntrySpec>,
    /// Usernames whose live sessions must not exist (no access, or deleted).
    pub cut_users: Vec<String>,
    /// Customers whose router objects could not be built, with the reason.
    pub problems: Vec<(Uuid, String)>,
}

/// Builds the desired state incrementally, one customer at a time, so a site of 10,000
/// customers never holds all its records in memory at once.
///
/// Customers' objects are gathered in vectors and turned into maps by [`finish`]: a map built
/// from sorted entries has full nodes, while inserting one entry at a time in id order (the
/// replica's order) leaves nodes about half empty, which at 10,000 customers costs megabytes
/// for as long as the pass runs.
///
/// [`finish`]: Builder::finish
pub struct Builder {
    router: Uuid,
    packages: HashMap<Uuid, PackageRecord>,
    gate: Gate,
    now: DateTime<Utc>,
    desired: Desired,
    ppp_secrets: Vec<(Uuid, PppSecretSpec)>,
    hotspot_users: Vec<(Uuid, HotspotUserSpec)>,
    queues: Vec<(Uuid, SimpleQueueSpec)>,
    cutoffs: Vec<(Uuid, AddressListEntrySpec)>,
}

impl Builder {
    /// `router` is this agent's router: only its customers get objects.
    pub fn new(
        router: Uuid,
        packages: Vec<PackageRecord>,
        gate: Gate,
        now: DateTime<Utc>,
    ) -> Builder {
        let mut desired = Desired::default();
        let mut names = HashMap::new();
        for package in packages.iter().filter(|p| !p.is_deleted()) {
            let name = package.package_name().to_string();
            if let Some(other) = names.insert(name.clone(), package.id) {
                desired.problems.push((
                    package.id,
                    format!("package name {name:?} is also used by package {other}"),
                ));
                continue;
            }
            let limit = rate_limit(&package.shaping());
            let comment = Some(Text::from(marker(package.id)));
            desired.ppp_profiles.insert(
                package.id,
                PppProfileSpec {
                    name: Text::from(name.as_str()),
                    rate_limit: Some(limit.clone()),
                    comment: comment.clone(),
                    ..PppProfileSpec::default()
                },
            );
            desired.hotspot_profiles.insert(
                package.id,
                HotspotUserProfileSpec {
                    name: Text::from(name.as_str()),
                    rate_limit: Some(limit),
                    shared_users: None,
                    address_pool: None,
                    address_list: None,
                    comment,
                },
            );
        }
        let packages = packages.into_iter().map(|p| (p.id, p)).collect();
        Builder {
            router,
            packages,
            gate,
            now,
            desired,
            ppp_secrets: Vec::new(),
            hotspot_users: Vec::new(),
            queues: Vec::new(),
            cutoffs: Vec::new(),
        }
    }

    /// Whether the customer may be online now, as the agent enforces it: operator flags at
    /// once, expiry only as far as the expiry gate allows.
    pub fn has_access(&self, customer: &CustomerRecord) -> bool {
        match customer.status_at(self.now) {
            CustomerStatus::Active => true,
            CustomerStatus::Expired => !self.gate.enforces(customer.expires()),
            CustomerStatus::Suspended | CustomerStatus::Disabled => false,
        }
    }

    pub fn add(&mut self, customer: &CustomerRecord) {
        if customer.router() != Some(self.router) {
            // Absent, not cut off: its objects (if any) are removed like any unwanted object.
            return;
        }
        let username = customer.username().to_string();
        if customer.is_deleted() || username.is_empty() {
            if !username.is_empty() {
                self.desired.cut_users.push(username);
            }
            return;
        }
        let package = customer
            .package()
            .and_then(|id| self.packages.get(&id))
            .filter(|p| !p.is_deleted() && self.desired.ppp_profiles.contains_key(&p.id));
        // No package means no shaping (the router's `default` profile), not no access: the
        // status alone decides access, as it does at central.
        let access = self.has_access(customer);
        if !access {
            self.desired.cut_users.push(username.clone());
        }
        let comment = Some(Text::from(marker(customer.id)));
        let profile = Text::from(package.map_or("default", |p| p.package_name()));
        let password = customer
            .password_secret()
            // An anonymised customer's wiped password arrives as "": no secret at all.
            .filter(|s| !s.expose().is_empty())
            .map(|s| Secret::new(s.expose().to_string()));
        match customer.connection_type() {
            ConnectionType::Pppoe => {
                let Some(password) = password else {
                    self.desired
                        .problems
                        .push((customer.id, "PPPoE customer has no password".into()));
                    return;
                };
                self.ppp_secrets.push((
                    customer.id,
                    PppSecretSpec {
                        name: Text::from(username.as_str()),
                        password,
                        service: "pppoe".into(),
                        profile,
                        disabled: !access,
                        comment,
                        local_address: None,
                        remote_address: static_ip(customer),
                        caller_id: None,
                    },
                ));
            }
            ConnectionType::Hotspot => {
                let Some(password) = password else {
                    self.desired
                        .problems
                        .push((customer.id, "hotspot customer has no password".into()));
                    return;
                };
                self.hotspot_users.push((
                    customer.id,
                    HotspotUserSpec {
                        name: Text::from(username.as_str()),
                        password,
                        profile,
                        server: None,
                        mac_address: None,
                        address: None,
                        disabled: !access,
                        comment,
                        limit_uptime: None,
                        limit_bytes_total: None,
                    },
                ));
            }
            ConnectionType::Dhcp | ConnectionType::Static => {
                let Some(address) = static_ip(customer).or_else(|| last_ip(customer)) else {
                    self.desired.problems.push((
                        customer.id,
                        "no address known yet to shape or cut off".into(),
                    ));
                    return;
                };
                let limit = package
                    .map(|p| rate_limit(&p.shaping()))
                    .filter(|l| !l.is_empty());
                self.queues.push((
                    customer.id,
                    SimpleQueueSpec {
                        name: Text::from(username.as_str()),
                        target: format!("{address}/32"),
                        max_limit: limit
                            .map(|l| l.split(' ').next().unwrap_or_default().to_string()),
                        limit_at: None,
                        burst_limit: None,
                        parent: None,
                        disabled: false,
                        comment: comment.clone(),
                    },
                ));
                if !access {
                    self.cutoffs.push((
                        customer.id,
                        AddressListEntrySpec {
                            list: Text::from(CUTOFF_LIST),
                            address,
                            comment,
                            disabled: false,
                        },
                    ));
                }
            }
        }
    }

    pub fn finish(self) -> Desired {
        let mut desired = self.desired;
        desired.ppp_secrets = into_map(self.ppp_secrets);
        desired.hotspot_users = into_map(self.hotspot_users);
        desired.queues = into_map(self.queues);
        desired.cutoffs = into_map(self.cutoffs);
        desired
    }
}

/// The map of `entries`, built in bulk (collecting sorts them, stably, in place); for an id
/// seen twice the later entry wins, as repeated inserts would have it.
fn into_map<S>(entries: Vec<(Uuid, S)>) -> BTreeMap<Uuid, S> {
    entries.into_iter().collect()
}

fn static_ip(customer: &CustomerRecord) -> Option<String> {
    customer.static_ip.as_ref().and_then(|f| f.value.clone())
}

fn last_ip(customer: &CustomerRecord) -> Option<String> {
    customer.last_ip.as_ref().and_then(|f| f.value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_built_in_bulk_keep_the_later_of_two_entries_for_one_id() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let map = into_map(vec![(b, "b"), (a, "first a"), (a, "second a")]);
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [(a, "second a"), (b, "b")]
        );
    }
}
