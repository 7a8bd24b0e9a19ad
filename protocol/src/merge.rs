//! Merge rules shared by central and agent.
//!
//! - Replicated records (customers, packages): per-field last-writer-wins on [`Hlc`] stamps.
//!   A field absent from one side (a partial change) simply takes the other side's value.
//! - Append-only entries (ledger, audit): union on their UUIDs.
//! - Session counters: per-session maximum (see `session.rs`).
//!
//! All merges are commutative, associative and idempotent (property-tested in
//! `tests/merge_properties.rs`), so delivery order and duplicates never change the result.

use crate::hlc::Hlc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A value with the stamp of its last write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    #[serde(rename = "v")]
    pub value: T,
    #[serde(rename = "t")]
    pub stamp: Hlc,
}

impl<T> Lww<T> {
    pub fn new(value: T, stamp: Hlc) -> Lww<T> {
        Lww { value, stamp }
    }
}

/// A replicated field's value: ordered (to break the tie of two writes carrying the same stamp,
/// which only a buggy node can produce, the same way on every node) and shown in audit logs.
pub trait FieldValue: Clone + Ord {
    /// How the value appears in an audit event or a conflict record. Secrets say "changed".
    fn audit_value(&self) -> Value;
}

/// A concurrent write that lost a merge, kept for the conflict log (never silently dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub field: String,
    pub kept: Value,
    pub kept_stamp: Hlc,
    pub lost: Value,
    pub lost_stamp: Hlc,
}

/// Merges `incoming` into `local` for one field and reports the losing write when the two
/// sides held different values.
pub fn merge_field<T: FieldValue>(
    field: &str,
    local: &mut Option<Lww<T>>,
    incoming: &Option<Lww<T>>,
) -> Option<Conflict> {
    let incoming = incoming.as_ref()?;
    let Some(current) = local.as_mut() else {
        *local = Some(incoming.clone());
        return None;
    };
    if current.value == incoming.value {
        // Same value: keep the larger stamp so every node ends with identical state.
        if incoming.stamp > current.stamp {
            current.stamp = incoming.stamp;
        }
        return None;
    }
    let incoming_wins = (incoming.stamp, &incoming.value) > (current.stamp, &current.value);
    let (winner, loser) = if incoming_wins {
        (incoming, &*current)
    } else {
        (&*current, incoming)
    };
    let conflict = Conflict {
        field: field.to_string(),
        kept: winner.value.audit_value(),
        kept_stamp: winner.stamp,
        lost: loser.value.audit_value(),
        lost_stamp: loser.stamp,
    };
    if incoming_wins {
        *current = incoming.clone();
    }
    Some(conflict)
}

macro_rules! audit_via_serde {
    ($($t:ty),* $(,)?) => {
        $(impl FieldValue for $t {
            fn audit_value(&self) -> Value {
                serde_json::to_value(self).unwrap_or(Value::Null)
            }
        })*
    };
}

audit_via_serde!(
    String,
    bool,
    u32,
    u64,
    Uuid,
    chrono::DateTime<chrono::Utc>,
    Vec<String>,
    crate::money::Money,
);

impl<T: FieldValue> FieldValue for Option<T> {
    fn audit_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, FieldValue::audit_value)
    }
}

/// Declares a replicated record: an id and tenant that never change, and fields that each carry
/// an [`Lww`] stamp and are absent in a partial change. Generates `merge` and `max_stamp`.
macro_rules! lww_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub id: uuid::Uuid,
            pub tenant_id: uuid::Uuid,
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$crate::merge::Lww<$fty>>,
            )*
        }

        impl $name {
            /// A record with no fields set; fill it with [`Self::set`]-style assignments.
            pub fn empty(id: uuid::Uuid, tenant_id: uuid::Uuid) -> Self {
                $name { id, tenant_id, $( $field: None, )* }
            }

            /// Per-field last-writer-wins merge of `other` into `self`; returns the losing writes.
            /// Records of different ids are never merged (the caller's bug): nothing changes.
            pub fn merge(&mut self, other: &Self) -> Vec<$crate::merge::Conflict> {
                if self.id != other.id || self.tenant_id != other.tenant_id {
                    return Vec::new();
                }
                let mut conflicts = Vec::new();
                $(
                    conflicts.extend($crate::merge::merge_field(
                        stringify!($field),
                        &mut self.$field,
                        &other.$field,
                    ));
                )*
                conflicts
            }

            /// The newest stamp of any field (the record's version).
            pub fn max_stamp(&self) -> Option<$crate::hlc::Hlc> {
                [$( self.$field.as_ref().map(|f| f.stamp), )*].into_iter().flatten().max()
            }

            /// Names of the fields this (possibly partial) record carries.
            pub fn present_fields(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.$field.is_some() { names.push(stringify!($field)); } )*
                names
            }
        }
    };
}
pub(crate) use lww_record;

/// An append-only entry identified by its UUID.
pub trait Entry: Clone + Serialize {
    fn entry_id(&self) -> Uuid;
}

/// Union merge of append-only entries. Two different entries under one id (a bug somewhere)
/// resolve the same way on every node: the larger canonical JSON wins.
pub fn union_merge<T: Entry>(local: &mut BTreeMap<Uuid, T>, incoming: impl IntoIterator<Item = T>) {
    for entry in incoming {
        match local.get(&entry.entry_id()) {
            None => {
                local.insert(entry.entry_id(), entry);
            }
            Some(existing) => {
                let canonical = |e: &T| serde_json::to_string(e).unwrap_or_default();
                if canonical(&entry) > canonical(existing) {
                    local.insert(entry.entry_id(), entry);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::NodeId;

    fn stamp(ms: u64, node: u64) -> Hlc {
        Hlc::new(ms, 0, NodeId(node))
    }

    #[test]
    fn newer_stamp_wins_and_the_loser_is_reported() {
        let mut local = Some(Lww::new("old".to_string(), stamp(1, 1)));
        let incoming = Some(Lww::new("new".to_string(), stamp(2, 2)));
        let conflict = merge_field("name", &mut local, &incoming).expect("values differ");
        assert_eq!(local.unwrap().value, "new");
        assert_eq!(conflict.lost, Value::String("old".into()));
        assert_eq!(conflict.kept_stamp, stamp(2, 2));
    }

    #[test]
    fn older_incoming_write_loses() {
        let mut local = Some(Lww::new(true, stamp(5, 1)));
        let incoming = Some(Lww::new(false, stamp(4, 2)));
        let conflict = merge_field("suspended", &mut local, &incoming).expect("values differ");
        assert!(local.unwrap().value);
        assert_eq!(conflict.lost, Value::Bool(false));
    }

    #[test]
    fn absent_incoming_field_changes_nothing() {
        let mut local = Some(Lww::new(3u32, stamp(1, 1)));
        assert!(merge_field("validityDays", &mut local, &None).is_none());
        assert_eq!(local.unwrap().value, 3);
    }
}
