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

/// What the expiry planner needs for every customer, read in one pass.
pub(super) fn expiry_inputs(
    conn: &rusqlite::Connection,
    now: DateTime<Utc>,
) -> crate::replica::Result<Vec<ExpiryInput>> {
    let packages: HashMap<_, _> = store::packages(conn)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut inputs = Vec::new();
    let mut renewing = Vec::new();
    store::for_each_customer(conn, |c| {
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
