//! Targeted reconcile: after a change to a few customers (a batch from central, a command),
//! observe only those customers' router objects and sessions with filtered reads, plan with
//! the ordinary planner, and apply. A full pass reads every menu whole, which at 10,000
//! customers costs far more than the change itself; the periodic full pass still repairs
//! whatever a targeted pass cannot see.
//!
//! What a targeted pass reads, per customer: the secret, hotspot user, queue and address-list
//! entry whose comment is exactly its marker; by name, the secret, user or queue it should
//! have (to find a name held by an object we do not own, or ours with a note appended to the
//! comment); the live sessions under its current and former usernames. Package profiles are
//! neither read nor planned (a package change asks for a full pass).
//!
//! It gives up (the caller runs a full pass instead) when a name it needs is held by an object
//! owned by a customer outside the set: only the full view can tell which of the two keeps it.

use super::desired::Desired;
use super::owner_of;
use super::plan::Observed;
use crate::routeros::status::{
    HOTSPOT_ACTIVE_MENU, HOTSPOT_ACTIVE_PROPLIST, PPP_ACTIVE_MENU, PPP_ACTIVE_PROPLIST,
    join_ppp_sessions,
};
use crate::routeros::{
    AddressListEntry, HotspotSession, HotspotUser, Id, PppSecret, Router, RouterError,
    RouterObject, Row, SimpleQueue, Text,
};
use std::collections::{BTreeSet, HashSet};
use uuid::Uuid;

/// More changed customers than this, and one full pass is cheaper than the filtered reads.
pub const MAX_CUSTOMERS: usize = 32;

/// Why a targeted pass handed over to a full one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsFullPass(pub String);

/// The desired state restricted to `owners`, without package profiles.
pub fn restrict(mut desired: Desired) -> Desired {
    desired.ppp_profiles.clear();
    desired.hotspot_profiles.clear();
    desired
}

/// Reads the router objects and sessions of `owners` (one filtered read per object, run
/// concurrently). `desired` must be built from exactly those customers.
pub async fn observe(
    router: &dyn Router,
    desired: &Desired,
    owners: &BTreeSet<Uuid>,
) -> Result<Result<Observed, NeedsFullPass>, RouterError> {
    let by_comment = |id: &Uuid| vec![("comment", Text::from(super::marker(*id)))];
    let secret_queries = owners.iter().map(by_comment).chain(
        desired
            .ppp_secrets
            .values()
            .map(|s| vec![("name", s.name.clone())]),
    );
    let user_queries = owners.iter().map(by_comment).chain(
        desired
            .hotspot_users
            .values()
            .map(|u| vec![("name", u.name.clone())]),
    );
    let queue_queries = owners.iter().map(by_comment).chain(
        desired
            .queues
            .values()
            .map(|q| vec![("name", q.name.clone())]),
    );
    let entry_queries = owners
        .iter()
        .map(by_comment)
        .chain(desired.cutoffs.values().map(|e| {
            vec![
                ("list", e.list.clone()),
                ("address", Text::from(e.address.as_str())),
            ]
        }));
    let (secrets, users, queues, entries) = tokio::try_join!(
        rows::<PppSecret>(router, secret_queries.collect()),
        rows::<HotspotUser>(router, user_queries.collect()),
        rows::<SimpleQueue>(router, queue_queries.collect()),
        rows::<AddressListEntry>(router, entry_queries.collect()),
    )?;
    let mut observed = Observed::default();
    let outsider = |comment: Option<&Text>| {
        comment
            .and_then(|c| owner_of(&c.to_string_lossy()))
            .filter(|owner| !owners.contains(owner))
    };
    for (what, comment) in secrets
        .iter()
        .map(|s| (&s.name, s.comment.as_ref()))
        .chain(users.iter().map(|u| (&u.name, u.comment.as_ref())))
        .chain(queues.iter().map(|q| (&q.name, q.comment.as_ref())))
        .chain(entries.iter().map(|e| (&e.address, e.comment.as_ref())))
    {
        if let Some(owner) = outsider(comment) {
            return Ok(Err(NeedsFullPass(format!(
                "{:?} on the router belongs to customer {owner}, outside this change",
                what.to_string_lossy()
            ))));
        }
    }
    // Sessions under every name the customers have or had on the router.
    let ppp_names: BTreeSet<&Text> = desired
        .ppp_secrets
        .values()
        .map(|s| &s.name)
        .chain(secrets.iter().map(|s| &s.name))
        .collect();
    let hotspot_names: BTreeSet<&Text> = desired
        .hotspot_users
        .values()
        .map(|u| &u.name)
        .chain(users.iter().map(|u| &u.name))
        .collect();
    let cut: BTreeSet<Text> = desired
        .cut_users
        .iter()
        .map(|u| Text::from(u.as_str()))
        .collect();
    let ppp_queries = ppp_names
        .into_iter()
        .cloned()
        .chain(cut.iter().cloned())
        .collect::<BTreeSet<Text>>();
    let hotspot_queries = hotspot_names
        .into_iter()
        .cloned()
        .chain(cut.iter().cloned())
        .collect::<BTreeSet<Text>>();
    let (ppp_active, hotspot_active) = tokio::try_join!(
        each(
            router,
            PPP_ACTIVE_MENU,
            "name",
            ppp_queries,
            PPP_ACTIVE_PROPLIST
        ),
        each(
            router,
            HOTSPOT_ACTIVE_MENU,
            "user",
            hotspot_queries,
            HOTSPOT_ACTIVE_PROPLIST
        ),
    )?;
    // Counters are not needed to plan: no interface rows to join.
    observed.ppp_sessions = join_ppp_sessions(&ppp_active, &[])?;
    observed.hotspot_sessions = hotspot_active
        .iter()
        .map(HotspotSession::from_row)
        .collect::<Result<_, _>>()?;
    observed.ppp_secrets = secrets;
    observed.hotspot_users = users;
    observed.queues = queues;
    observed.address_list = entries;
    Ok(Ok(observed))
}

/// The objects of menu `O` matching any of `queries`, each once. The reads of one menu run
/// one after the other (RouterOS serves a connection's requests in order anyway).
async fn rows<O: RouterObject>(
    router: &dyn Router,
    queries: Vec<Vec<(&'static str, Text)>>,
) -> Result<Vec<O>, RouterError> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut out = Vec::new();
    let mut answers = Vec::new();
    for query in &queries {
        answers.extend(router.print(O::MENU, query, O::PROPLIST).await?);
    }
    for row in answers {
        match O::from_row(&row) {
            Ok(object) => {
                if seen.insert(object.id().clone()) {
                    out.push(object);
                }
            }
            Err(e) => tracing::warn!(
                kind = O::KIND,
                error = %e,
                "skipping a row the router sent that we cannot parse"
            ),
        }
    }
    Ok(out)
}

/// The rows of `menu` whose `key` equals any of `values`, each row once (by `.id`).
async fn each(
    router: &dyn Router,
    menu: &str,
    key: &str,
    values: BTreeSet<Text>,
    proplist: &[&str],
) -> Result<Vec<Row>, RouterError> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut out = Vec::new();
    for value in values {
        for row in router.print(menu, &[(key, value)], proplist).await? {
            if seen.insert(row.id()?) {
                out.push(row);
            }
        }
    }
    Ok(out)
}
