//! Customers: the replicated record (per-field stamps) and the API's JSON views.
//!
//! The record holds the inputs (`expiresAt`, `suspended`, `disabled`, package, ...), never the
//! status, which is derived by [`crate::status::status_at`]. The views are the exact JSON shapes
//! of the customer module's API.

use crate::decimal::{self, ExtraDigits};
use crate::merge::{FieldValue, Lww, lww_record};
use crate::money::Money;
use crate::secret::Secret;
use crate::status::{CustomerStatus, StatusInputs, status_at};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;
use uuid::Uuid;

/// How a customer reaches the network. `PPPOE | HOTSPOT | DHCP | STATIC` on the wire, parsed
/// case-insensitively (filters arrive as `pppoe`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnectionType {
    Pppoe,
    Hotspot,
    Dhcp,
    Static,
}

impl ConnectionType {
    pub const ALL: [ConnectionType; 4] = [
        ConnectionType::Pppoe,
        ConnectionType::Hotspot,
        ConnectionType::Dhcp,
        ConnectionType::Static,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Pppoe => "PPPOE",
            ConnectionType::Hotspot => "HOTSPOT",
            ConnectionType::Dhcp => "DHCP",
            ConnectionType::Static => "STATIC",
        }
    }
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown connection type {0:?}: expected PPPOE, HOTSPOT, DHCP or STATIC")]
pub struct UnknownConnectionType(pub String);

impl FromStr for ConnectionType {
    type Err = UnknownConnectionType;

    fn from_str(s: &str) -> Result<ConnectionType, UnknownConnectionType> {
        ConnectionType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownConnectionType(s.chars().take(32).collect()))
    }
}

impl<'de> Deserialize<'de> for ConnectionType {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<ConnectionType, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A latitude or longitude in units of 1e-7 degrees (about 1 cm). Written as a JSON number;
/// digits beyond the seventh decimal (GPS apps send fifteen) are truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Degrees(i64);

impl Degrees {
    pub const SCALE: u32 = 7;

    pub const fn from_e7(value: i64) -> Degrees {
        Degrees(value)
    }

    pub const fn e7(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Degrees, decimal::DecimalError> {
        decimal::parse_fixed(text, Self::SCALE, ExtraDigits::Truncate).map(Degrees)
    }
}

impl fmt::Display for Degrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal::format_fixed(self.0, Self::SCALE, 0))
    }
}

impl Serialize for Degrees {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        decimal::json::serialize_number(&self.to_string(), ser)
    }
}

impl<'de> Deserialize<'de> for Degrees {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Degrees, D::Error> {
        let text = decimal::json::number_text(de)?;
        Degrees::parse(&text).map_err(|e| serde::de::Error::custom(format!("coordinate {e}")))
    }
}

/// A customer's PPPoE/hotspot password inside a replicated record. It must reach the router in
/// clear text (CHAP needs it), so unlike [`Secret`] it serialises — but only records travel
/// the TLS-protected sync channel; API views never contain it. Debug prints `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncedSecret(pub Secret<String>);

impl SyncedSecret {
    pub fn new(value: impl Into<String>) -> SyncedSecret {
        SyncedSecret(Secret::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl Serialize for SyncedSecret {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.0.expose())
    }
}

impl<'de> Deserialize<'de> for SyncedSecret {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<SyncedSecret, D::Error> {
        String::deserialize(de).map(SyncedSecret::new)
    }
}

impl FieldValue for SyncedSecret {
    fn audit_value(&self) -> Value {
        Value::String("changed".into())
    }
}

impl FieldValue for ConnectionType {
    fn audit_value(&self) -> Value {
        Value::String(self.as_str().into())
    }
}

impl FieldValue for Degrees {
    fn audit_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

lww_record! {
    /// A customer as replicated between central and the agent of its router. Every field is
    /// optional so the same type carries a full record and a partial change.
    pub struct CustomerRecord {
        username: String,
        password: SyncedSecret,
        name: String,
        email: Option<String>,
        phone: Option<String>,
        connection_type: ConnectionType,
        package_id: Option<Uuid>,
        /// The seed's `nasId`: the router (and so the agent) that serves the customer.
        router_id: Option<Uuid>,
        expires_at: Option<DateTime<Utc>>,
        location: Option<String>,
        latitude: Option<Degrees>,
        longitude: Option<Degrees>,
        apartment_number: Option<String>,
        house_number: Option<String>,
        suspended: bool,
        disabled: bool,
        auto_renew: bool,
        static_ip: Option<String>,
        mac_bindings: Vec<String>,
        tags: Vec<String>,
        last_ip: Option<String>,
        last_mac: Option<String>,
        created_at: DateTime<Utc>,
        deleted_at: Option<DateTime<Utc>>,
    }
}

fn value<T>(field: &Option<Lww<T>>) -> Option<&T> {
    field.as_ref().map(|f| &f.value)
}

impl CustomerRecord {
    pub fn username(&self) -> &str {
        value(&self.username).map_or("", String::as_str)
    }

    pub fn connection_type(&self) -> ConnectionType {
        value(&self.connection_type)
            .copied()
            .unwrap_or(ConnectionType::Pppoe)
    }

    pub fn package(&self) -> Option<Uuid> {
        value(&self.package_id).copied().flatten()
    }

    pub fn router(&self) -> Option<Uuid> {
        value(&self.router_id).copied().flatten()
    }

    pub fn expires(&self) -> Option<DateTime<Utc>> {
        value(&self.expires_at).copied().flatten()
    }

    pub fn is_deleted(&self) -> bool {
        value(&self.deleted_at).copied().flatten().is_some()
    }

    pub fn auto_renews(&self) -> bool {
        value(&self.auto_renew).copied().unwrap_or(false)
    }

    pub fn password_secret(&self) -> Option<&SyncedSecret> {
        value(&self.password)
    }

    pub fn status_inputs(&self) -> StatusInputs {
        StatusInputs {
            disabled: value(&self.disabled).copied().unwrap_or(false),
            suspended: value(&self.suspended).copied().unwrap_or(false),
            expires_at: self.expires(),
        }
    }

    /// The derived status at `now`; never stored.
    pub fn status_at(&self, now: DateTime<Utc>) -> CustomerStatus {
        status_at(self.status_inputs(), now)
    }
}

/// The package as embedded in a customer list item.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRef {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
}

/// The package as embedded in a customer's detail.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetailRef {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    pub download_speed: crate::package::Speed,
    pub upload_speed: crate::package::Speed,
    pub data_limit: Option<u64>,
}

/// The router as embedded in customer responses.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterRef {
    pub id: Uuid,
    pub name: String,
    pub ip_address: String,
}

/// One row of `GET /api/customers`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSummary {
    pub id: Uuid,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub connection_type: ConnectionType,
    pub status: CustomerStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub wallet_balance: Money,
    pub package: Option<PackageRef>,
    pub router: Option<RouterRef>,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/customers/:id` (and the body of create and update responses). Never has a
/// password field.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDetail {
    pub id: Uuid,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub connection_type: ConnectionType,
    pub status: CustomerStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub latitude: Option<Degrees>,
    pub longitude: Option<Degrees>,
    pub apartment_number: Option<String>,
    pub house_number: Option<String>,
    pub last_ip: Option<String>,
    pub last_mac: Option<String>,
    pub wallet_balance: Money,
    pub total_spent: Money,
    pub package: Option<PackageDetailRef>,
    pub router: Option<RouterRef>,
    pub package_id: Option<Uuid>,
    pub nas_id: Option<Uuid>,
    pub auto_renew: bool,
    pub static_ip: Option<String>,
    pub mac_bindings: Vec<String>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}
