//! What the reconcile and expiry tasks both read about time: whether the clock can be trusted
//! and, for every customer, the inputs of the expiry planner.

use super::state;
use crate::expiry::plan::{ExpiryInput, RenewTerms, clock_state};
use crate::replica::store;
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::ClockState;
use std::collections::HashMap;

/// A backwards step of the clock smaller than this is NTP slewing, not a jump.
const CLOCK_STEP_TOLERANCE: chrono::Duration = chrono::Duration::seconds(5);

/// The clock's state at `now` and the last trusted time it was judged against.
/// `synchronised` comes from [`super::Shared::clock_synchronised`] (not read here: this runs on
/// a blocking thread inside a replica read).
pub(super) fn read_clock(
    conn: &rusqlite::Connection,
    now: DateTime<Utc>,
    synchronised: bool,
) -> crate::replica::Result<(ClockState, Option<DateTime<Utc>>)> {
    let last_trusted = state::get_time(conn, state::LAST_TRUSTED)?;
    Ok((
        clock_state(synchronised, now, last_trusted, CLOCK_STEP_TOLERANCE),
        last_trusted,
    ))
}

/// What the expiry planner needs for every customer of `router`, read in one pass. Records
/// of customers served by another router are left out: that router's agent expires and
/// renews them.
pub(super) fn expiry_inputs(
    conn: &rusqlite::Connection,
    router: uuid::Uuid,
    now: DateTime<Utc>,
) -> crate::replica::Result<Vec<ExpiryInput>> {
    let packages: HashMap<_, _> = store::packages(conn)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut inputs = Vec::new();
    let mut renewing = Vec::new();
    store::for_each_customer(conn, |c| {
        if c.router() != Some(router) {
            return;
        }
        let inputs_status = c.status_inputs();
        let terms = c
            .package()
            .and_then(|id| packages.get(&id))
            .filter(|p| !p.is_deleted())
            .map(|p| RenewTerms {
                price: p.price.as_ref().map(|f| f.value).unwrap_or_default(),
                validity_days: p.validity_days.as_ref().map_or(0, |f| f.value),
            });
        if c.auto_renews() && c.expires().is_some_and(|at| at <= now) {
            renewing.push(inputs.len());
        }
        inputs.push(ExpiryInput {
            id: c.id,
            expires_at: c.expires(),
            cut_for_other_reason: c.is_deleted()
                || inputs_status.disabled
                || inputs_status.suspended,
            auto_renew: c.auto_renews(),
            renew_terms: terms,
            wallet_balance: easyisp_protocol::Money::ZERO,
        });
    })?;
    // Wallet balances only for those due a renewal: a ledger sum per customer is not free.
    for index in renewing {
        inputs[index].wallet_balance = store::ledger_totals(conn, inputs[index].id)?.wallet_balance;
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Replica;
    use easyisp_protocol::customer::CustomerRecord;
    use easyisp_protocol::merge::Lww;
    use easyisp_protocol::{Hlc, NodeId};
    use uuid::Uuid;

    #[tokio::test]
    async fn customers_of_other_routers_are_neither_expired_nor_renewed_here() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let (here, elsewhere) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let now = Utc::now();
        replica
            .write(move |tx| {
                for (n, router) in [(10, Some(here)), (11, Some(elsewhere)), (12, None)] {
                    let stamp = Hlc::new(1, 0, NodeId(1));
                    let mut c = CustomerRecord::empty(Uuid::from_u128(n), Uuid::from_u128(3));
                    c.username = Some(Lww::new(format!("c{n}"), stamp));
                    c.router_id = Some(Lww::new(router, stamp));
                    c.auto_renew = Some(Lww::new(true, stamp));
                    c.expires_at = Some(Lww::new(Some(now - chrono::Duration::hours(1)), stamp));
                    store::merge_customer(tx, &c)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let inputs = replica
            .read(move |c| expiry_inputs(c, here, now))
            .await
            .unwrap();
        let ids: Vec<Uuid> = inputs.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![Uuid::from_u128(10)]);
    }
}
