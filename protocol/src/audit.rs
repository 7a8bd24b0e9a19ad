//! Audit events: append-only, who did what, old → new per field. Secrets appear only as
//! `"changed"`. Merged by union on their UUIDs.

use crate::ledger::Actor;
use crate::merge::Entry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `customer`, `package`, `router`, `operator`.
    pub entity: String,
    pub entity_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// `create`, `update`, `delete`, `restore`, `suspend`, `activate`, `recharge`, `expiry`,
    /// `package`, `renew`, `cutoff`, `conflict`, ...
    pub action: String,
    #[serde(default)]
    pub changes: Vec<FieldChange>,
}

impl Entry for AuditEvent {
    fn entry_id(&self) -> Uuid {
        self.id
    }
}

/// The value an audit event shows for a secret field.
pub fn secret_change() -> Value {
    Value::String("changed".to_string())
}
