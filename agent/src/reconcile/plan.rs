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
pub trait Owned {
    fn id(&self) -> &Id;
    fn comment(&self) -> Option<&Text>;
    fn name(&self) -> &Text;
    fn owner(&self) -> Option<Uuid> {
        self.comment().and_then(|c| owner_of(&c.to_string_lossy()))
    }
}

macro_rules! owned {
    ($($t:ty => $name:ident),* $(,)?) => {
        $(impl Owned for $t {
            fn id(&self) -> &Id { &self.id }
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

/// A desired object: the router object it becomes, its name there, and when an observed
/// object already is what it asks for.
pub trait Spec: Sync {
    type Object: Owned + Send;
    /// The menu's name in messages.
    const LABEL: &'static str;
    fn name(&self) -> &[u8];
    fn satisfied_by(&self, object: &Self::Object) -> bool;
}

impl Spec for PppProfileSpec {
    type Object = PppProfile;
    const LABEL: &'static str = "PPP profile";
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn satisfied_by(&self, o: &PppProfile) -> bool {
        o.name == self.name
            && same_rate(&o.rate_limit, &self.rate_limit)
            && text_eq(&o.comment, &self.comment)
    }
}

impl Spec for HotspotUserProfileSpec {
    type Object = HotspotUserProfile;
    const LABEL: &'static str = "hotspot user profile";
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn satisfied_by(&self, o: &HotspotUserProfile) -> bool {
        o.name == self.name
            && same_rate(&o.rate_limit, &self.rate_limit)
            && text_eq(&o.comment, &self.comment)
    }
}

impl Spec for PppSecretSpec {
    type Object = PppSecret;
    const LABEL: &'static str = "PPP secret";
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn satisfied_by(&self, o: &PppSecret) -> bool {
        o.name == self.name
            && o.profile == self.profile
            && o.disabled == self.disabled
            && o.service == self.service
            && o.remote_address == self.remote_address
            && text_eq(&o.comment, &self.comment)
            // A router that hides passwords from this user cannot be compared; trust it.
            && o.password.as_ref().is_none_or(|p| p.expose() == self.password.expose())
    }
}

impl Spec for HotspotUserSpec {
    type Object = HotspotUser;
    const LABEL: &'static str = "hotspot user";
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn satisfied_by(&self, o: &HotspotUser) -> bool {
        o.name == self.name
            && o.profile == self.profile
            && o.disabled == self.disabled
            && text_eq(&o.comment, &self.comment)
            && o.password
                .as_ref()
                .is_none_or(|p| p.expose() == self.password.expose())
    }
}

impl Spec for SimpleQueueSpec {
    type Object = SimpleQueue;
    const LABEL: &'static str = "simple queue";
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn satisfied_by(&self, o: &SimpleQueue) -> bool {
        o.name == self.name
            && o.target.as_deref().map(normalise_target) == Some(normalise_target(&self.target))
            && same_rate(&o.max_limit, &self.max_limit)
            && o.disabled == self.disabled
            && text_eq(&o.comment, &self.comment)
    }
}

impl Spec for AddressListEntrySpec {
    type Object = AddressListEntry;
    const LABEL: &'static str = "address-list entry";
    fn name(&self) -> &[u8] {
        self.address.as_bytes()
    }
    fn satisfied_by(&self, o: &AddressListEntry) -> bool {
        o.address.as_bytes() == self.address.as_bytes()
            && !o.disabled
            && text_eq(&o.comment, &self.comment)
    }
}

/// One menu's observed objects, compared with its desired specs one object at a time as they
/// arrive from the router. Only what must change is kept: an object that already matches its
/// spec is dropped at once, so a pass never holds a whole menu.
pub struct MenuDiff<'d, S: Spec> {
    desired: &'d BTreeMap<Uuid, S>,
    /// Owners whose first object has been seen (later ones are duplicates).
    seen: HashSet<Uuid>,
    /// Owners whose object carries another name: a rename is a new object.
    renamed: HashSet<Uuid>,
    update: Vec<(Uuid, S::Object)>,
    remove: Vec<S::Object>,
    /// Names held by objects we do not own.
    foreign: HashSet<Vec<u8>>,
}

/// What a menu needs: specs to create, objects to update with their spec, objects to remove.
struct Changes<'d, S: Spec> {
    create: Vec<&'d S>,
    update: Vec<(S::Object, &'d S)>,
    remove: Vec<S::Object>,
}

impl<S: Spec + Clone> Changes<'_, S> {
    /// The menu's creations, then its updates, as ops.
    fn writes(&self, create: fn(S) -> Op, update: fn(Id, S) -> Op) -> impl Iterator<Item = Op> {
        let creates = self.create.iter().map(move |spec| create((*spec).clone()));
        let updates = self
            .update
            .iter()
            .map(move |(object, spec)| update(object.id().clone(), (*spec).clone()));
        creates.chain(updates)
    }
}

impl<'d, S: Spec> MenuDiff<'d, S> {
    pub fn new(desired: &'d BTreeMap<Uuid, S>) -> Self {
        MenuDiff {
            desired,
            seen: HashSet::new(),
            renamed: HashSet::new(),
            update: Vec::new(),
            remove: Vec::new(),
            foreign: HashSet::new(),
        }
    }

    /// Compares one observed object with what its owner wants.
    pub fn visit(&mut self, object: S::Object) {
        let Some(owner) = object.owner() else {
            self.foreign.insert(object.name().as_bytes().to_vec());
            return;
        };
        match self.desired.get(&owner) {
            Some(spec) if self.seen.insert(owner) => {
                if object.name().as_bytes() != spec.name() {
                    // RouterOS drivers never rename in an update (the name is the key they
                    // re-resolve by), so a rename is a new object and the removal of the old.
                    self.renamed.insert(owner);
                    self.remove.push(object);
                } else if !spec.satisfied_by(&object) {
                    self.update.push((owner, object));
                }
            }
            // A duplicate (a hand-made copy of our comment; the first seen is kept), or the
            // object of an owner that wants none here any more.
            _ => self.remove.push(object),
        }
    }

    fn finish(self, blocked: &mut Vec<(Uuid, String)>) -> Changes<'d, S> {
        let mut create = Vec::new();
        for (owner, spec) in self.desired {
            if self.renamed.contains(owner) {
                create.push(spec);
            } else if self.seen.contains(owner) {
                continue;
            } else if self.foreign.contains(spec.name()) {
                blocked.push((
                    *owner,
                    format!(
                        "{} {:?} exists on the router but is not EasyISP's; adopt it",
                        S::LABEL,
                        String::from_utf8_lossy(spec.name())
                    ),
                ));
            } else {
                create.push(spec);
            }
        }
        let mut update = self.update;
        update.sort_by_key(|(owner, _)| *owner);
        let desired = self.desired;
        Changes {
            create,
            update: update
                .into_iter()
                .map(|(owner, object)| (object, &desired[&owner]))
                .collect(),
            remove: self.remove,
        }
    }
}

fn text_eq(a: &Option<Text>, b: &Option<Text>) -> bool {
    a.as_ref().map(Text::as_bytes) == b.as_ref().map(Text::as_bytes)
}

fn same_rate(observed: &Option<String>, desired: &Option<String>) -> bool {
    let norm = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    norm(observed) == norm(desired)
}

/// The configuration menus of one pass, each compared as its objects arrive. Feed every
/// menu's objects (address-list entries of [`CUTOFF_LIST`] only), then [`finish`] it.
///
/// [`finish`]: Menus::finish
pub struct Menus<'d> {
    desired: &'d Desired,
    pub ppp_profiles: MenuDiff<'d, PppProfileSpec>,
    pub hotspot_profiles: MenuDiff<'d, HotspotUserProfileSpec>,
    pub ppp_secrets: MenuDiff<'d, PppSecretSpec>,
    pub hotspot_users: MenuDiff<'d, HotspotUserSpec>,
    pub queues: MenuDiff<'d, SimpleQueueSpec>,
    pub cutoffs: MenuDiff<'d, AddressListEntrySpec>,
}

impl<'d> Menus<'d> {
    pub fn new(desired: &'d Desired) -> Self {
        Menus {
            desired,
            ppp_profiles: MenuDiff::new(&desired.ppp_profiles),
            hotspot_profiles: MenuDiff::new(&desired.hotspot_profiles),
            ppp_secrets: MenuDiff::new(&desired.ppp_secrets),
            hotspot_users: MenuDiff::new(&desired.hotspot_users),
            queues: MenuDiff::new(&desired.queues),
            cutoffs: MenuDiff::new(&desired.cutoffs),
        }
    }

    /// The configuration operations, in a safe order, and which live sessions must go.
    pub fn finish(self) -> Sessions<'d> {
        let desired = self.desired;
        let mut blocked = Vec::new();
        let ppp_profiles = self.ppp_profiles.finish(&mut blocked);
        let hotspot_profiles = self.hotspot_profiles.finish(&mut blocked);
        let secrets = self.ppp_secrets.finish(&mut blocked);
        let users = self.hotspot_users.finish(&mut blocked);
        let queues = self.queues.finish(&mut blocked);
        let cutoffs = self.cutoffs.finish(&mut blocked);

        // Creations and updates, profiles first.
        let mut ops = Vec::new();
        ops.extend(ppp_profiles.writes(Op::CreatePppProfile, Op::UpdatePppProfile));
        ops.extend(hotspot_profiles.writes(Op::CreateHotspotProfile, Op::UpdateHotspotProfile));
        ops.extend(secrets.writes(Op::CreatePppSecret, Op::UpdatePppSecret));
        ops.extend(users.writes(Op::CreateHotspotUser, Op::UpdateHotspotUser));
        ops.extend(queues.writes(Op::CreateQueue, Op::UpdateQueue));
        ops.extend(cutoffs.create.into_iter().cloned().map(Op::CreateCutoff));

        // A customer whose speeds changed (new package, or the package's rate-limit changed)
        // gets them on reconnect only (RouterOS applies a profile at login): its live session
        // is dropped so the CPE redials at once with the new speeds, as an operator expects.
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
        if !changed_profiles.is_empty() {
            let secret_names = desired
                .ppp_secrets
                .values()
                .filter(|s| changed_profiles.contains(s.profile.as_bytes()))
                .map(|s| &s.name);
            let user_names = desired
                .hotspot_users
                .values()
                .filter(|u| changed_profiles.contains(u.profile.as_bytes()))
                .map(|u| &u.name);
            reprofiled.extend(
                secret_names
                    .chain(user_names)
                    .map(|n| n.as_bytes().to_vec()),
            );
        }

        // Removals of objects that reference profiles come before the profiles.
        let removed_secrets = secrets
            .remove
            .iter()
            .map(|s| s.name.as_bytes().to_vec())
            .collect();
        let removed_users = users
            .remove
            .iter()
            .map(|u| u.name.as_bytes().to_vec())
            .collect();
        ops.extend(cutoffs.remove.into_iter().map(Op::RemoveCutoff));
        ops.extend(queues.remove.into_iter().map(Op::RemoveQueue));
        ops.extend(secrets.remove.into_iter().map(Op::RemovePppSecret));
        ops.extend(users.remove.into_iter().map(Op::RemoveHotspotUser));
        let mut last = Vec::new();
        last.extend(ppp_profiles.remove.into_iter().map(Op::RemovePppProfile));
        last.extend(
            hotspot_profiles
                .remove
                .into_iter()
                .map(Op::RemoveHotspotProfile),
        );
        Sessions {
            cut: desired.cut_users.iter().map(|u| u.as_bytes()).collect(),
            ours_ppp: desired
                .ppp_secrets
                .values()
                .map(|s| s.name.as_bytes())
                .collect(),
            ours_hotspot: desired
                .hotspot_users
                .values()
                .map(|u| u.name.as_bytes())
                .collect(),
            removed_secrets,
            removed_users,
            reprofiled,
            plan: Plan { ops, blocked },
            last,
        }
    }
}

/// The second half of a pass: which live sessions to drop. Sessions are dropped only after
/// their secret is disabled or gone, so the CPE's redial fails (removing the session first
/// lets it reconnect before the disable lands); profiles are removed last.
pub struct Sessions<'d> {
    cut: HashSet<&'d [u8]>,
    ours_ppp: HashSet<&'d [u8]>,
    ours_hotspot: HashSet<&'d [u8]>,
    removed_secrets: HashSet<Vec<u8>>,
    removed_users: HashSet<Vec<u8>>,
    reprofiled: HashSet<Vec<u8>>,
    plan: Plan,
    last: Vec<Op>,
}

impl Sessions<'_> {
    /// Whether the live PPP session of `name` must be dropped.
    pub fn drops_ppp(&self, name: &[u8]) -> bool {
        let ours = self.ours_ppp.contains(name);
        (ours && (self.cut.contains(name) || self.reprofiled.contains(name)))
            || self.removed_secrets.contains(name)
    }

    /// Whether the live hotspot session of `user` must be dropped.
    pub fn drops_hotspot(&self, user: &[u8]) -> bool {
        let ours = self.ours_hotspot.contains(user);
        (ours && (self.cut.contains(user) || self.reprofiled.contains(user)))
            || self.removed_users.contains(user)
    }

    /// The whole plan, given the sessions to drop (`(id, name)`, as the router listed them).
    pub fn finish(mut self, ppp: Vec<(Id, Text)>, hotspot: Vec<(Id, Text)>) -> Plan {
        let ops = &mut self.plan.ops;
        ops.extend(ppp.into_iter().map(|(id, name)| Op::KickPpp { id, name }));
        ops.extend(
            hotspot
                .into_iter()
                .map(|(id, name)| Op::KickHotspot { id, name }),
        );
        ops.append(&mut self.last);
        self.plan
    }
}

/// Compares the replica's wishes with a router state read whole, and returns the operations.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut menus = Menus::new(desired);
    for o in &observed.ppp_profiles {
        menus.ppp_profiles.visit(o.clone());
    }
    for o in &observed.hotspot_profiles {
        menus.hotspot_profiles.visit(o.clone());
    }
    for o in &observed.ppp_secrets {
        menus.ppp_secrets.visit(o.clone());
    }
    for o in &observed.hotspot_users {
        menus.hotspot_users.visit(o.clone());
    }
    for o in &observed.queues {
        menus.queues.visit(o.clone());
    }
    for o in observed
        .address_list
        .iter()
        .filter(|e| e.list == CUTOFF_LIST)
    {
        menus.cutoffs.visit(o.clone());
    }
    let sessions = menus.finish();
    let ppp = observed
        .ppp_sessions
        .iter()
        .filter(|s| sessions.drops_ppp(s.name.as_bytes()))
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let hotspot = observed
        .hotspot_sessions
        .iter()
        .filter(|s| sessions.drops_hotspot(s.user.as_bytes()))
        .map(|s| (s.id.clone(), s.user.clone()))
        .collect();
    sessions.finish(ppp, hotspot)
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
