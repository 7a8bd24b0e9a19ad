//! The money ledger: append-only entries; balances are sums, never stored fields.
//!
//! `walletBalance` is the sum of all amounts (credits positive, debits negative). `totalSpent`
//! is what package charges took from the wallet, net of refunds. Payments history is the
//! ledger's recharge (credit) side.

use crate::merge::Entry;
use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKind {
    /// Money paid in by the customer (positive).
    Recharge,
    /// A package period charged to the wallet (negative).
    PackageCharge,
    /// Money given back for a package charge (positive).
    Refund,
    /// An operator's correction (either sign).
    Adjustment,
}

/// Who caused an entry or an event.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub kind: ActorKind,
    /// Operator id, router id (for an agent), or none for the system.
    pub id: Option<Uuid>,
    /// A readable name (operator username, router name, `system`).
    pub name: String,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Operator,
    Agent,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub kind: LedgerKind,
    /// Signed: credits to the wallet are positive, debits negative.
    pub amount: Money,
    /// Payment method of a recharge (`CASH`, `MPESA`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Makes a retried request or a re-run renewal apply once: unique per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub actor: Actor,
    pub created_at: DateTime<Utc>,
}

impl Entry for LedgerEntry {
    fn entry_id(&self) -> Uuid {
        self.id
    }
}

/// The two figures derived from a customer's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub wallet_balance: Money,
    pub total_spent: Money,
    pub total_paid: Money,
}

pub fn totals<'a>(entries: impl IntoIterator<Item = &'a LedgerEntry>) -> Totals {
    let mut balance = Vec::new();
    let mut spent = Vec::new();
    let mut paid = Vec::new();
    for entry in entries {
        balance.push(entry.amount);
        match entry.kind {
            LedgerKind::PackageCharge => spent.push(Money::from_minor(-entry.amount.minor())),
            LedgerKind::Refund => spent.push(Money::from_minor(-entry.amount.minor())),
            LedgerKind::Recharge => paid.push(entry.amount),
            LedgerKind::Adjustment => {}
        }
    }
    Totals {
        wallet_balance: Money::sum(balance),
        total_spent: Money::sum(spent),
        total_paid: Money::sum(paid),
    }
}

/// The idempotency key of an auto-renewal: one charge per customer and period, whoever retries.
pub fn renewal_key(customer: Uuid, period_start: DateTime<Utc>) -> String {
    format!("renew:{customer}:{}", period_start.timestamp())
}

/// One row of `GET /api/customers/:id/payments`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: Uuid,
    pub amount: Money,
    pub method: String,
    pub status: String,
    pub transaction_id: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Payment {
    /// A recharge as the payments history shows it; other kinds are not payments.
    pub fn from_entry(entry: &LedgerEntry) -> Option<Payment> {
        (entry.kind == LedgerKind::Recharge).then(|| Payment {
            id: entry.id,
            amount: entry.amount,
            method: entry.method.clone().unwrap_or_else(|| "CASH".to_string()),
            status: "COMPLETED".to_string(),
            transaction_id: entry.transaction_id.clone(),
            description: entry.description.clone(),
            created_at: entry.created_at,
        })
    }
}
