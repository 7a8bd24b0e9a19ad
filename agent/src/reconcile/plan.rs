//! Desired versus observed router state → the operations that make them equal.
//!
//! Objects are matched by the owner id in their comment, not by name, so renaming a customer
//! or a package replaces its router object (created under the new name, the old one removed). An object we do not own is never changed or
//! removed; if it holds a name we need, that customer is reported as blocked (adopt it first).
//! Operations come out in a safe order (routeros.md §7): profiles before the secrets that
//! reference them, disable before dropping a live session, secrets removed before profiles.

use super::CUTOFF_LIST;
use super::desired::Desired;
use super::owner_of;
use crate::routeros::{
    AddressListEntry, AddressListEntrySpec, HotspotSession, HotspotUser, HotspotUserProfile,
    HotspotUserProfileSpec, HotspotUserSpec, Id, PppProfile, PppProfileSpec, PppSecret,
    PppSecretSpec, PppSession, SimpleQueue, SimpleQueueSpec, Text,
};
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// What the router holds, read with one list request per menu.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub ppp_profiles: Vec<PppProfile>,
    pub hotspot_profiles: Vec<HotspotUserProfile>,
    pub ppp_secrets: Vec<PppSecret>,
    pub hotspot_users: Vec<HotspotUser>,
    pub queues: Vec<SimpleQueue>,
    pub address_list: Vec<AddressListEntry>,
    pub ppp_sessions: Vec<PppSession>,
    pub hotspot_sessions: Vec<HotspotSession>,
}

/// One change to make on the router.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreatePppProfile(PppProfileSpec),
    UpdatePppProfile(Id, PppProfileSpec),
    CreateHotspotProfile(HotspotUserProfileSpec),
    UpdateHotspotProfile(Id, HotspotUserProfileSpec),
    CreatePppSecret(PppSecretSpec),
    UpdatePppSecret(Id, PppSecretSpec),
    CreateHotspotUser(HotspotUserSpec),
    UpdateHotspotUser(Id, HotspotUserSpec),
    CreateQueue(SimpleQueueSpec),
    UpdateQueue(Id, SimpleQueueSpec),
    CreateCutoff(AddressListEntrySpec),
    /// Drop a live PPP session (after its secret was disabled or removed).
    KickPpp {
        id: Id,
        name: Text,
    },
    /// Drop a live hotspot session.
    KickHotspot {
        id: Id,
        name: Text,
    },
    RemoveCutoff(AddressListEntry),
    RemoveQueue(SimpleQueue),
    RemovePppSecret(PppSecret),
    RemoveHotspotUser(HotspotUser),
    RemovePppProfile(PppProfile),
    RemoveHotspotProfile(HotspotUserProfile),
}

/// The operations, in order, and what could not be planned.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// `(owner, reason)`: desired objects blocked by something we do not own.
    pub blocked: Vec<(Uuid, String)>,
}

/// A router object that may carry our ownership marker.
trait Owned {
    fn comment(&self) -> Option<&Text>;
    fn name(&self) -> &Text;
    fn owner(&self) -> Option<Uuid> {
        self.comment().and_then(|c| owner_of(&c.to_string_lossy()))
    }
}

macro_rules! owned {
    ($($t:ty => $name:ident),* $(,)?) => {
        $(impl Owned for $t {
            fn comment(&self) -> Option<&Text> { self.comment.as_ref() }
            fn name(&self) -> &Text { &self.$name }
        })*
    };
}

owned!(
    PppProfile => name,
    HotspotUserProfile => name,
    PppSecret => name,
    HotspotUser => name,
    SimpleQueue => name,
    AddressListEntry => address,
);

/// How one menu's desired specs compare with its observed objects.
struct MenuDiff<'a, O, S> {
    create: Vec<&'a S>,
    update: Vec<(&'a O, &'a S)>,
    remove: Vec<&'a O>,
}

fn diff<'a, O: Owned, S>(
    desired: &'a BTreeMap<Uuid, S>,
    observed: &'a [O],
    spec_name: impl Fn(&S) -> Text,
    same: impl Fn(&O, &S) -> bool,
    menu: &str,
    blocked: &mut Vec<(Uuid, String)>,
) -> MenuDiff<'a, O, S> {
    let mut ours: BTreeMap<Uuid, Vec<&O>> = BTreeMap::new();
    let mut foreign_names = HashSet::new();
    for object in observed {
        match object.owner() {
            Some(owner) => ours.entry(owner).or_default().push(object),
            None => {
                foreign_names.insert(object.name().as_bytes().to_vec());
            }
        }
    }
    let mut out = MenuDiff {
        create: Vec::new(),
        update: Vec::new(),
        remove: Vec::new(),
    };
    for (owner, spec) in desired {
        match ours.remove(owner) {
            Some(mut objects) => {
                // Keep the first; duplicates (a hand-made copy of our comment) go.
                let first = objects.remove(0);
                out.remove.extend(objects);
                if first.name().as_bytes() != spec_name(spec).as_bytes() {
                    // RouterOS drivers never rename in an update (the name is the key they
                    // re-resolve by), so a rename is a new object and the removal of the old.
                    out.create.push(spec);
                    out.remove.push(first);
                } else if !same(first, spec) {
                    out.update.push((first, spec));
                }
            }
            None if foreign_names.contains(spec_name(spec).as_bytes()) => blocked.push((
                *owner,
                format!(
                    "{menu} {:?} exists on the router but is not EasyISP's; adopt it",
                    spec_name(spec).to_string_lossy()
                ),
            )),
            None => out.create.push(spec),
        }
    }
    out.remove.extend(ours.into_values().flatten());
    out
}

fn text_eq(a: &Option<Text>, b: &Option<Text>) -> bool {
    a.as_ref().map(Text::as_bytes) == b.as_ref().map(Text::as_bytes)
}

fn same_rate(observed: &Option<String>, desired: &Option<String>) -> bool {
    let norm = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    norm(observed) == norm(desired)
}

/// Compares the replica's wishes with the router and returns the operations.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    let blocked = &mut plan.blocked;

    let ppp_profiles = diff(
        &desired.ppp_profiles,
        &observed.ppp_profiles,
        |s| s.name.clone(),
        |o, s| {
            o.name == s.name
                && same_rate(&o.rate_limit, &s.rate_limit)
                && text_eq(&o.comment, &s.comment)
        },
        "PPP profile",
        blocked,
    );
    let hotspot_profiles = diff(
        &desired.hotspot_profiles,
        &observed.hotspot_profiles,
        |s| s.name.clone(),
        |o, s| {
            o.name == s.name
                && same_rate(&o.rate_limit, &s.rate_limit)
                && text_eq(&o.comment, &s.comment)
        },
        "hotspot user profile",
        blocked,
    );
    let secrets = diff(
        &desired.ppp_secrets,
        &observed.ppp_secrets,
        |s| s.name.clone(),
        |o, s| {
            o.name == s.name
                && o.profile == s.profile
                && o.disabled == s.disabled
                && o.service == s.service
                && o.remote_address == s.remote_address
                && text_eq(&o.comment, &s.comment)
                // A router that hides passwords from this user cannot be compared; trust it.
                && o.password.as_ref().is_none_or(|p| p.expose() == s.password.expose())
        },
        "PPP secret",
        blocked,
    );
    let users = diff(
        &desired.hotspot_users,
        &observed.hotspot_users,
        |s| s.name.clone(),
        |o, s| {
            o.name == s.name
                && o.profile == s.profile
                && o.disabled == s.disabled
                && text_eq(&o.comment, &s.comment)
                && o.password
                    .as_ref()
                    .is_none_or(|p| p.expose() == s.password.expose())
        },
        "hotspot user",
        blocked,
    );
    let queues = diff(
        &desired.queues,
        &observed.queues,
        |s| s.name.clone(),
        |o, s| {
            o.name == s.name
                && o.target.as_deref().map(normalise_target) == Some(normalise_target(&s.target))
                && same_rate(&o.max_limit, &s.max_limit)
                && o.disabled == s.disabled
                && text_eq(&o.comment, &s.comment)
        },
        "simple queue",
        blocked,
    );
    let cutoff_entries: Vec<AddressListEntry> = observed
        .address_list
        .iter()
        .filter(|e| e.list == CUTOFF_LIST)
        .cloned()
        .collect();
    let cutoffs = diff(
        &desired.cutoffs,
        &cutoff_entries,
        |s| Text::from(s.address.as_str()),
        |o, s| {
            o.address.as_bytes() == s.address.as_bytes()
                && !o.disabled
                && text_eq(&o.comment, &s.comment)
        },
        "address-list entry",
        blocked,
    );

    // Creations and updates, profiles first.
    let ops = &mut plan.ops;
    ops.extend(
        ppp_profiles
            .create
            .into_iter()
            .cloned()
            .map(Op::CreatePppProfile),
    );
    ops.extend(
        ppp_profiles
            .update
            .iter()
            .map(|(o, s)| Op::UpdatePppProfile(o.id.clone(), (*s).clone())),
    );
    ops.extend(
        hotspot_profiles
            .create
            .into_iter()
            .cloned()
            .map(Op::CreateHotspotProfile),
    );
    ops.extend(
        hotspot_profiles
            .update
            .iter()
            .map(|(o, s)| Op::UpdateHotspotProfile(o.id.clone(), (*s).clone())),
    );
    ops.extend(secrets.create.into_iter().cloned().map(Op::CreatePppSecret));
    ops.extend(
        secrets
            .update
            .iter()
            .map(|(o, s)| Op::UpdatePppSecret(o.id.clone(), (*s).clone())),
    );
    ops.extend(users.create.into_iter().cloned().map(Op::CreateHotspotUser));
    ops.extend(
        users
            .update
            .iter()
            .map(|(o, s)| Op::UpdateHotspotUser(o.id.clone(), (*s).clone())),
    );
    ops.extend(queues.create.into_iter().cloned().map(Op::CreateQueue));
    ops.extend(
        queues
            .update
            .iter()
            .map(|(o, s)| Op::UpdateQueue(o.id.clone(), (*s).clone())),
    );
    ops.extend(cutoffs.create.into_iter().cloned().map(Op::CreateCutoff));
    // Removals of objects that reference profiles come before the profiles.
    let removed_secrets: HashSet<Vec<u8>> = secrets
        .remove
        .iter()
        .map(|s| s.name.as_bytes().to_vec())
        .collect();
    let removed_users: HashSet<Vec<u8>> = users
        .remove
        .iter()
        .map(|u| u.name.as_bytes().to_vec())
        .collect();
    ops.extend(cutoffs.remove.into_iter().cloned().map(Op::RemoveCutoff));
    ops.extend(queues.remove.into_iter().cloned().map(Op::RemoveQueue));
    ops.extend(secrets.remove.into_iter().cloned().map(Op::RemovePppSecret));
    ops.extend(users.remove.into_iter().cloned().map(Op::RemoveHotspotUser));
    // A customer whose speeds changed (new package, or the package's rate-limit changed) gets
    // them on reconnect only (RouterOS applies a profile at login): drop the live session so
    // the CPE redials at once with the new speeds, as an operator expects.
    let changed_profiles: HashSet<&[u8]> = ppp_profiles
        .update
        .iter()
        .map(|(_, s)| s.name.as_bytes())
        .chain(
            hotspot_profiles
                .update
                .iter()
                .map(|(_, s)| s.name.as_bytes()),
        )
        .collect();
    let mut reprofiled: HashSet<Vec<u8>> = HashSet::new();
    for (observed, spec) in &secrets.update {
        if observed.profile != spec.profile {
            reprofiled.insert(spec.name.as_bytes().to_vec());
        }
    }
    for (observed, spec) in &users.update {
        if observed.profile != spec.profile {
            reprofiled.insert(spec.name.as_bytes().to_vec());
        }
    }
    for spec in desired
        .ppp_secrets
        .values()
        .filter(|s| changed_profiles.contains(s.profile.as_bytes()))
    {
        reprofiled.insert(spec.name.as_bytes().to_vec());
    }
    for spec in desired
        .hotspot_users
        .values()
        .filter(|s| changed_profiles.contains(s.profile.as_bytes()))
    {
        reprofiled.insert(spec.name.as_bytes().to_vec());
    }
    // Only now drop live sessions: their secret is already disabled or gone, so the CPE's
    // redial fails (removing the session first lets it reconnect before the disable lands).
    let cut: HashSet<&[u8]> = desired.cut_users.iter().map(|u| u.as_bytes()).collect();
    let ours_ppp: HashSet<&[u8]> = desired
        .ppp_secrets
        .values()
        .map(|s| s.name.as_bytes())
        .collect();
    let ours_hotspot: HashSet<&[u8]> = desired
        .hotspot_users
        .values()
        .map(|u| u.name.as_bytes())
        .collect();
    for session in &observed.ppp_sessions {
        let name = session.name.as_bytes();
        let reconnect = ours_ppp.contains(name) && reprofiled.contains(name);
        if (cut.contains(name) && ours_ppp.contains(name))
            || removed_secrets.contains(name)
            || reconnect
        {
            ops.push(Op::KickPpp {
                id: session.id.clone(),
                name: session.name.clone(),
            });
        }
    }
    for session in &observed.hotspot_sessions {
        let name = session.user.as_bytes();
        let reconnect = ours_hotspot.contains(name) && reprofiled.contains(name);
        if (cut.contains(name) && ours_hotspot.contains(name))
            || removed_users.contains(name)
            || reconnect
        {
            ops.push(Op::KickHotspot {
                id: session.id.clone(),
                name: session.user.clone(),
            });
        }
    }
    ops.extend(
        ppp_profiles
            .remove
            .into_iter()
            .cloned()
            .map(Op::RemovePppProfile),
    );
    ops.extend(
        hotspot_profiles
            .remove
            .into_iter()
            .cloned()
            .map(Op::RemoveHotspotProfile),
    );
    plan
}

/// RouterOS prints a single-address target as `10.0.0.5/32` or `10.0.0.5`; compare both.
fn normalise_target(target: &str) -> String {
    target.strip_suffix("/32").unwrap_or(target).to_string()
}

impl Op {
    /// A one-line description for logs: never contains a password.
    pub fn describe(&self) -> String {
        let name = |t: &Text| t.to_string_lossy();
        match self {
            Op::CreatePppProfile(s) => format!(
                "create PPP profile {} rate-limit={:?}",
                name(&s.name),
                s.rate_limit
            ),
            Op::UpdatePppProfile(id, s) => format!(
                "update PPP profile {id} {} rate-limit={:?}",
                name(&s.name),
                s.rate_limit
            ),
            Op::CreateHotspotProfile(s) => format!(
                "create hotspot profile {} rate-limit={:?}",
                name(&s.name),
                s.rate_limit
            ),
            Op::UpdateHotspotProfile(id, s) => {
                format!(
                    "update hotspot profile {id} {} rate-limit={:?}",
                    name(&s.name),
                    s.rate_limit
                )
            }
            Op::CreatePppSecret(s) => {
                format!(
                    "create PPP secret {} profile={} disabled={}",
                    name(&s.name),
                    name(&s.profile),
                    s.disabled
                )
            }
            Op::UpdatePppSecret(id, s) => {
                format!(
                    "update PPP secret {id} {} profile={} disabled={}",
                    name(&s.name),
                    name(&s.profile),
                    s.disabled
                )
            }
            Op::CreateHotspotUser(s) => {
                format!(
                    "create hotspot user {} profile={} disabled={}",
                    name(&s.name),
                    name(&s.profile),
                    s.disabled
                )
            }
            Op::UpdateHotspotUser(id, s) => {
                format!(
                    "update hotspot user {id} {} profile={} disabled={}",
                    name(&s.name),
                    name(&s.profile),
                    s.disabled
                )
            }
            Op::CreateQueue(s) => format!(
                "create queue {} target={} max-limit={:?}",
                name(&s.name),
                s.target,
                s.max_limit
            ),
            Op::UpdateQueue(id, s) => {
                format!(
                    "update queue {id} {} target={} max-limit={:?}",
                    name(&s.name),
                    s.target,
                    s.max_limit
                )
            }
            Op::CreateCutoff(s) => format!("add {} to {}", s.address, name(&s.list)),
            Op::KickPpp { id, name: n } => format!("drop PPP session {id} of {}", name(n)),
            Op::KickHotspot { id, name: n } => format!("drop hotspot session {id} of {}", name(n)),
            Op::RemoveCutoff(e) => format!("remove {} from {}", name(&e.address), name(&e.list)),
            Op::RemoveQueue(q) => format!("remove queue {}", name(&q.name)),
            Op::RemovePppSecret(s) => format!("remove PPP secret {}", name(&s.name)),
            Op::RemoveHotspotUser(u) => format!("remove hotspot user {}", name(&u.name)),
            Op::RemovePppProfile(p) => format!("remove PPP profile {}", name(&p.name)),
            Op::RemoveHotspotProfile(p) => format!("remove hotspot profile {}", name(&p.name)),
        }
    }
}
