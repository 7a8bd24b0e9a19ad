//! The pure expiry planner. Takes the replica's view of customers and the clock's health, and
//! decides: which auto-renewals are due, up to which instant expiry may be enforced (the
//! gate), and when to wake up next. It never reads a clock: `now` is an argument.
//!
//! Two safety rules come from running on a Raspberry Pi without a battery clock:
//! - while the system clock is not synchronised, or has jumped backwards past the last time
//!   the agent persisted, expiry is enforced only up to that last trusted time;
//! - when a single pass would cut off a large share of the site at once (a clock jump forward,
//!   a bad bulk edit), those cut-offs are held until an operator confirms them.

use chrono::{DateTime, Duration, Utc};
use easyisp_protocol::Money;
use easyisp_protocol::envelope::{ClockState, MassCutoffHold};
use easyisp_protocol::ledger::renewal_key;
use uuid::Uuid;

/// What the planner needs to know about one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryInput {
    pub id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    /// Suspended, disabled or deleted: access is off for another reason, so expiry changes
    /// nothing and auto-renew does not charge.
    pub cut_for_other_reason: bool,
    pub auto_renew: bool,
    /// The package's price and validity, when the customer has a package.
    pub renew_terms: Option<RenewTerms>,
    pub wallet_balance: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewTerms {
    pub price: Money,
    pub validity_days: u32,
}

/// An auto-renewal the agent must write (ledger charge + new expiry, in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub customer: Uuid,
    pub charge: Money,
    pub period_start: DateTime<Utc>,
    pub new_expires_at: DateTime<Utc>,
    /// customer + period: the same period is never charged twice, whoever retries.
    pub idempotency_key: String,
}

/// How the site's operator limits mass cut-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MassCutoffPolicy {
    /// Hold when one pass would cut off at least this percentage of the site's customers ...
    pub share_percent: u8,
    /// ... and at least this many customers (small sites legitimately expire together).
    pub min_customers: u64,
}

impl Default for MassCutoffPolicy {
    fn default() -> Self {
        MassCutoffPolicy {
            share_percent: 30,
            min_customers: 20,
        }
    }
}

/// Up to which instant expiry is enforced, and why not further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Customers whose `expiresAt` is at or before this instant are cut off; later ones keep
    /// access for now. Equals `now` when nothing is held.
    pub enforce_through: DateTime<Utc>,
    pub hold: Option<Hold>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The clock cannot be trusted; expiry waits for it.
    Clock(ClockState),
    /// Too many customers would drop at once; waits for confirmation.
    MassCutoff(MassCutoffHold),
}

impl Gate {
    pub fn open(now: DateTime<Utc>) -> Gate {
        Gate {
            enforce_through: now,
            hold: None,
        }
    }

    /// Whether `expires_at` is enforced by this gate (the customer counts as expired).
    pub fn enforces(&self, expires_at: Option<DateTime<Utc>>) -> bool {
        expires_at.is_some_and(|at| at <= self.enforce_through)
    }
}

/// Judges the system clock. `synchronised` comes from the OS (NTP); `last_trusted` is the
/// newest time the agent persisted while the clock was good. A small backwards step (NTP
/// slew, `tolerance`) is normal; a larger one means the clock is wrong now.
pub fn clock_state(
    synchronised: bool,
    now: DateTime<Utc>,
    last_trusted: Option<DateTime<Utc>>,
    tolerance: Duration,
) -> ClockState {
    if last_trusted.is_some_and(|t| now + tolerance < t) {
        ClockState::JumpedBackwards
    } else if !synchronised {
        ClockState::Unsynchronised
    } else {
        ClockState::Synchronised
    }
}

/// What [`gate`] weighs besides the customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateInputs {
    pub now: DateTime<Utc>,
    pub clock: ClockState,
    /// The newest time persisted while the clock was good.
    pub last_trusted: Option<DateTime<Utc>>,
    /// The `enforce_through` of the previous pass (persisted): customers that expired before
    /// it are already cut off, so only the ones in `(last_enforced, now]` are new.
    pub last_enforced: Option<DateTime<Utc>>,
    pub policy: MassCutoffPolicy,
    /// Set once an operator confirmed a held mass cut-off.
    pub mass_confirmed: bool,
    /// When the current hold began, to report it unchanged while it lasts.
    pub held_since: Option<DateTime<Utc>>,
}

/// Decides up to which instant expiry may be enforced in this pass.
pub fn gate(customers: &[ExpiryInput], inputs: &GateInputs) -> Gate {
    let GateInputs {
        now,
        clock,
        last_trusted,
        last_enforced,
        policy,
        mass_confirmed,
        held_since,
    } = *inputs;
    if clock != ClockState::Synchronised {
        // Enforce only what was already due at the last trusted instant.
        let through = last_trusted.unwrap_or(DateTime::<Utc>::MIN_UTC).min(now);
        return Gate {
            enforce_through: through,
            hold: Some(Hold::Clock(clock)),
        };
    }
    let Some(previous) = last_enforced else {
        // First pass ever: nothing to compare with; the router is brought in line with the
        // replica as it stands.
        return Gate::open(now);
    };
    let newly_expiring = customers
        .iter()
        .filter(|c| !c.cut_for_other_reason)
        .filter(|c| c.expires_at.is_some_and(|at| at > previous && at <= now))
        .count() as u64;
    let total = customers.iter().filter(|c| !c.cut_for_other_reason).count() as u64;
    let share_reached = newly_expiring * 100 >= u64::from(policy.share_percent) * total.max(1);
    if !mass_confirmed && newly_expiring >= policy.min_customers && share_reached {
        let hold = MassCutoffHold {
            customers: newly_expiring,
            of_total: total,
            since: held_since.unwrap_or(now),
        };
        return Gate {
            enforce_through: previous,
            hold: Some(Hold::MassCutoff(hold)),
        };
    }
    Gate::open(now)
}

/// The auto-renewals due at `now`: customers with `autoRenew`, a package and enough wallet
/// balance whose expiry has come. One period per pass, counted from the old expiry so the
/// customer's paid time is continuous; a later pass renews again if still due.
pub fn renewals(customers: &[ExpiryInput], now: DateTime<Utc>) -> Vec<Renewal> {
    customers
        .iter()
        .filter(|c| c.auto_renew && !c.cut_for_other_reason)
        .filter_map(|c| {
            let expires = c.expires_at.filter(|at| *at <= now)?;
            let terms = c.renew_terms.filter(|t| t.validity_days > 0)?;
            if c.wallet_balance < terms.price {
                return None;
            }
            Some(Renewal {
                customer: c.id,
                charge: terms.price,
                period_start: expires,
                new_expires_at: expires + Duration::days(i64::from(terms.validity_days)),
                idempotency_key: renewal_key(c.id, expires),
            })
        })
        .collect()
}

/// When the expiry task must wake next: the earliest expiry still in the future among
/// customers who have access — or `None` when nobody will expire.
pub fn next_wake(customers: &[ExpiryInput], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    customers
        .iter()
        .filter(|c| !c.cut_for_other_reason)
        .filter_map(|c| c.expires_at)
        .filter(|at| *at > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("in range")
    }

    fn inputs(now: DateTime<Utc>, clock: ClockState) -> GateInputs {
        GateInputs {
            now,
            clock,
            last_trusted: Some(t(0)),
            last_enforced: Some(t(0)),
            policy: MassCutoffPolicy::default(),
            mass_confirmed: false,
            held_since: None,
        }
    }

    fn customer(n: u128, expires: Option<i64>) -> ExpiryInput {
        ExpiryInput {
            id: Uuid::from_u128(n),
            expires_at: expires.map(t),
            cut_for_other_reason: false,
            auto_renew: false,
            renew_terms: Some(RenewTerms {
                price: Money::from_minor(200_000),
                validity_days: 30,
            }),
            wallet_balance: Money::ZERO,
        }
    }

    #[test]
    fn wakes_at_the_next_expiry() {
        let customers = [
            customer(1, Some(50)),
            customer(2, Some(20)),
            customer(3, Some(-5)),
            customer(4, None),
        ];
        assert_eq!(next_wake(&customers, t(0)), Some(t(20)));
        assert_eq!(next_wake(&customers, t(20)), Some(t(50)));
        assert_eq!(next_wake(&customers, t(50)), None);
    }

    #[test]
    fn expired_customer_is_cut_off_at_expiry() {
        let customers = [customer(1, Some(10))];
        let gate = gate(
            &customers,
            &GateInputs {
                last_trusted: Some(t(9)),
                last_enforced: Some(t(9)),
                ..inputs(t(10), ClockState::Synchronised)
            },
        );
        assert!(gate.enforces(Some(t(10))));
        assert!(!gate.enforces(Some(t(11))));
        assert!(!gate.enforces(None));
    }

    #[test]
    fn nothing_new_is_cut_off_while_the_clock_is_unsynchronised() {
        let customers = [customer(1, Some(10)), customer(2, Some(-100))];
        let gate = gate(&customers, &inputs(t(20), ClockState::Unsynchronised));
        assert_eq!(gate.hold, Some(Hold::Clock(ClockState::Unsynchronised)));
        assert!(
            gate.enforces(Some(t(-100))),
            "long-expired customers stay cut off"
        );
        assert!(
            !gate.enforces(Some(t(10))),
            "expiry after the last trusted time waits"
        );
    }

    #[test]
    fn a_clock_that_jumped_backwards_is_detected() {
        let tolerance = Duration::seconds(5);
        assert_eq!(
            clock_state(true, t(100), Some(t(103)), tolerance),
            ClockState::Synchronised
        );
        assert_eq!(
            clock_state(true, t(100), Some(t(200)), tolerance),
            ClockState::JumpedBackwards
        );
        assert_eq!(
            clock_state(false, t(100), Some(t(50)), tolerance),
            ClockState::Unsynchronised
        );
        assert_eq!(
            clock_state(true, t(100), None, tolerance),
            ClockState::Synchronised
        );
    }

    #[test]
    fn a_mass_cutoff_is_held_until_confirmed() {
        let customers: Vec<_> = (0..100)
            .map(|n| customer(n, Some(if n < 40 { 10 } else { 1000 })))
            .collect();
        let policy = MassCutoffPolicy {
            share_percent: 30,
            min_customers: 20,
        };
        let held = gate(
            &customers,
            &GateInputs {
                policy,
                ..inputs(t(20), ClockState::Synchronised)
            },
        );
        let Some(Hold::MassCutoff(hold)) = &held.hold else {
            panic!("expected a hold, got {held:?}")
        };
        assert_eq!((hold.customers, hold.of_total), (40, 100));
        assert!(!held.enforces(Some(t(10))));
        let confirmed = gate(
            &customers,
            &GateInputs {
                policy,
                mass_confirmed: true,
                ..inputs(t(20), ClockState::Synchronised)
            },
        );
        assert_eq!(confirmed, Gate::open(t(20)));
    }

    #[test]
    fn a_few_expiries_together_are_not_a_mass_cutoff() {
        let customers: Vec<_> = (0..10).map(|n| customer(n, Some(10))).collect();
        let gate = gate(&customers, &inputs(t(20), ClockState::Synchronised));
        assert_eq!(gate.hold, None, "below min_customers");
    }

    #[test]
    fn auto_renew_charges_one_period_from_the_old_expiry_when_the_wallet_allows() {
        let mut rich = customer(1, Some(10));
        rich.auto_renew = true;
        rich.wallet_balance = Money::from_minor(500_000);
        let mut poor = rich.clone();
        poor.id = Uuid::from_u128(2);
        poor.wallet_balance = Money::from_minor(199_999);
        let mut not_due = rich.clone();
        not_due.id = Uuid::from_u128(3);
        not_due.expires_at = Some(t(100));
        let mut suspended = rich.clone();
        suspended.id = Uuid::from_u128(4);
        suspended.cut_for_other_reason = true;

        let due = renewals(&[rich, poor, not_due, suspended], t(10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].customer, Uuid::from_u128(1));
        assert_eq!(due[0].charge, Money::from_minor(200_000));
        assert_eq!(due[0].new_expires_at, t(10) + Duration::days(30));
        assert_eq!(
            due[0].idempotency_key,
            renewal_key(Uuid::from_u128(1), t(10))
        );
    }
}
