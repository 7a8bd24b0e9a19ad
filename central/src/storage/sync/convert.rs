//! Between replicated customer records and central's rows: writing a merged record into a
//! row with its stamps, listing what a merge changed (for the audit) and which of an agent's
//! writes lost (for the conflict log), and checking values that arrive from a site.

use crate::storage::customer_row::{CustomerRow, is_empty_value};
use crate::storage::stamps::{LazyStamps, Stamps};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{FieldChange, secret_change};
use easyisp_protocol::merge::Conflict;
use easyisp_protocol::money::Money;
use easyisp_protocol::{ConnectionType, CustomerRecord, validate};
use serde_json::Value;

/// Copies every field `record` carries (except the password, which the caller encrypts) into
/// `row`, with its stamp.
pub fn write_into_row(record: &CustomerRecord, row: &mut CustomerRow, stamps: &mut Stamps) {
    macro_rules! take {
        ($($f:ident),* $(,)?) => {
            $(
                if let Some(field) = &record.$f {
                    row.$f = field.value.clone();
                    stamps.set(stringify!($f), field.stamp);
                }
            )*
        };
    }
    take!(
        username,
        name,
        email,
        phone,
        connection_type,
        package_id,
        router_id,
        expires_at,
        location,
        latitude,
        longitude,
        apartment_number,
        house_number,
        suspended,
        disabled,
        auto_renew,
        static_ip,
        mac_bindings,
        tags,
        last_ip,
        last_mac,
        created_at,
        deleted_at,
    );
}

/// An empty row for a customer a site created (an adopted router secret); `write_into_row`
/// fills it.
pub fn blank_row(record: &CustomerRecord, now: DateTime<Utc>) -> CustomerRow {
    CustomerRow {
        rowid: 0,
        id: record.id,
        tenant_id: record.tenant_id,
        username: String::new(),
        password_enc: None,
        name: String::new(),
        email: None,
        phone: None,
        connection_type: ConnectionType::Pppoe,
        package_id: None,
        router_id: None,
        expires_at: None,
        location: None,
        latitude: None,
        longitude: None,
        apartment_number: None,
        house_number: None,
        suspended: false,
        disabled: false,
        auto_renew: false,
        static_ip: None,
        mac_bindings: Vec::new(),
        tags: Vec::new(),
        last_ip: None,
        last_mac: None,
        balance: Money::ZERO,
        total_spent: Money::ZERO,
        created_at: now,
        deleted_at: None,
        anonymized_at: None,
        stamps: LazyStamps::default(),
        package: None,
        router: None,
    }
}

/// `last_ip` → `lastIp`: the record's JSON key of a field name.
fn camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The field name an audit event uses (`routerId` is the API's `nasId`).
fn audit_name(key: &str) -> String {
    if key == "routerId" {
        "nasId".to_string()
    } else {
        key.to_string()
    }
}

fn shown(key: &str, value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(_) if key == "password" => secret_change(),
        Some(v) => v.clone(),
    }
}

fn values(record: &CustomerRecord) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

fn value_of<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
    record.get(key).and_then(|f| f.get("v"))
}

/// What a merge changed among the fields `incoming` carried, old → new (secrets as
/// "changed"). `before` is `None` for a new customer.
pub fn changes(
    before: Option<&CustomerRecord>,
    incoming: &CustomerRecord,
    after: &CustomerRecord,
) -> Vec<FieldChange> {
    let (old, new) = (before.map(values), values(after));
    incoming
        .present_fields()
        .into_iter()
        .filter_map(|field| {
            let key = camel(field);
            let was = old.as_ref().and_then(|o| value_of(o, &key));
            let now = value_of(&new, &key);
            let unchanged = was == now;
            let empty_new = before.is_none() && now.is_none_or(is_empty_value);
            (!unchanged && !empty_new).then(|| FieldChange {
                field: audit_name(&key),
                old: shown(&key, was),
                new: shown(&key, now),
            })
        })
        .collect()
}

/// The conflicts in which the agent's write lost (its value is not what the merge kept), as
/// audit changes: `old` is the losing value, `new` the kept one (as the agent records its
/// own conflicts).
pub fn lost_writes(
    conflicts: &[Conflict],
    incoming: &CustomerRecord,
    merged: &CustomerRecord,
) -> Vec<FieldChange> {
    let (incoming, merged) = (values(incoming), values(merged));
    conflicts
        .iter()
        .filter(|c| {
            let key = camel(&c.field);
            value_of(&incoming, &key) != value_of(&merged, &key)
        })
        .map(|c| FieldChange {
            field: audit_name(&camel(&c.field)),
            old: c.lost.clone(),
            new: c.kept.clone(),
        })
        .collect()
}

/// Checks the values of a customer row that a site wrote (the API checks its own input).
pub fn check_row(row: &CustomerRow) -> Result<(), String> {
    let text = |field: &'static str, value: &Option<String>| match value {
        Some(v) => validate::text(field, v, validate::TEXT_MAX).map_err(|e| e.to_string()),
        None => Ok(()),
    };
    validate::username(&row.username).map_err(|e| e.to_string())?;
    validate::required_text("name", &row.name, validate::TEXT_MAX).map_err(|e| e.to_string())?;
    text("email", &row.email)?;
    text("phone", &row.phone)?;
    text("location", &row.location)?;
    text("apartmentNumber", &row.apartment_number)?;
    text("houseNumber", &row.house_number)?;
    text("staticIp", &row.static_ip)?;
    text("lastIp", &row.last_ip)?;
    text("lastMac", &row.last_mac)?;
    for (field, list) in [("macBindings", &row.mac_bindings), ("tags", &row.tags)] {
        if list.len() > 100 || list.iter().any(|v| v.len() > validate::TEXT_MAX) {
            return Err(format!(
                "{field}: at most 100 entries of {} characters",
                validate::TEXT_MAX
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_become_record_keys() {
        assert_eq!(camel("last_ip"), "lastIp");
        assert_eq!(camel("apartment_number"), "apartmentNumber");
        assert_eq!(camel("name"), "name");
        assert_eq!(audit_name(&camel("router_id")), "nasId");
    }
}
