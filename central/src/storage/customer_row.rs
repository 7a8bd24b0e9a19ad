//! A customer's row: how it is read (with its package and router joined for the views), how
//! it is written, how two versions differ (stamps + audit changes), and the API views built
//! from it. The password column holds AEAD ciphertext and never reaches a view.

use super::stamps::LazyStamps;
use super::{Result, StorageError, Tx, from_ms, ms, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{FieldChange, secret_change};
use easyisp_protocol::customer::{
    CustomerDetail, CustomerSummary, Degrees, PackageDetailRef, PackageRef, RouterRef,
};
use easyisp_protocol::merge::FieldValue;
use easyisp_protocol::money::Money;
use easyisp_protocol::package::Speed;
use easyisp_protocol::{ConnectionType, Secret, status_at};
use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

/// A new customer, already validated by the API (ids of package and router are checked here).
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub username: String,
    pub password: Secret<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub connection_type: ConnectionType,
    pub package_id: Option<Uuid>,
    pub router_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub latitude: Option<Degrees>,
    pub longitude: Option<Degrees>,
    pub apartment_number: Option<String>,
    pub house_number: Option<String>,
    pub disabled: bool,
    pub auto_renew: bool,
    pub static_ip: Option<String>,
    pub mac_bindings: Vec<String>,
    pub tags: Vec<String>,
}

/// A partial update; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub connection_type: Option<ConnectionType>,
    pub package_id: Option<Option<Uuid>>,
    pub router_id: Option<Option<Uuid>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub location: Option<Option<String>>,
    pub latitude: Option<Option<Degrees>>,
    pub longitude: Option<Option<Degrees>>,
    pub apartment_number: Option<Option<String>>,
    pub house_number: Option<Option<String>>,
    pub suspended: Option<bool>,
    pub disabled: Option<bool>,
    pub auto_renew: Option<bool>,
    pub static_ip: Option<Option<String>>,
    pub mac_bindings: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageJoin {
    pub name: String,
    pub price: Money,
    pub download: Speed,
    pub upload: Speed,
    pub data_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub rowid: i64,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub username: String,
    pub password_enc: Option<Vec<u8>>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub connection_type: ConnectionType,
    pub package_id: Option<Uuid>,
    pub router_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub latitude: Option<Degrees>,
    pub longitude: Option<Degrees>,
    pub apartment_number: Option<String>,
    pub house_number: Option<String>,
    pub suspended: bool,
    pub disabled: bool,
    pub auto_renew: bool,
    pub static_ip: Option<String>,
    pub mac_bindings: Vec<String>,
    pub tags: Vec<String>,
    pub last_ip: Option<String>,
    pub last_mac: Option<String>,
    pub balance: Money,
    pub total_spent: Money,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub anonymized_at: Option<DateTime<Utc>>,
    pub stamps: LazyStamps,
    pub package: Option<PackageJoin>,
    pub router: Option<(String, String)>,
}

/// The SELECT every customer read uses; callers append WHERE / ORDER BY.
pub const SELECT: &str = "SELECT c.rowid, c.id, c.tenant_id, c.username, c.password_enc, c.name,
    c.email, c.phone, c.connection_type, c.package_id, c.router_id, c.expires_at, c.location,
    c.latitude_e7, c.longitude_e7, c.apartment_number, c.house_number, c.suspended, c.disabled,
    c.auto_renew, c.static_ip, c.mac_bindings, c.tags, c.last_ip, c.last_mac, c.balance,
    c.total_spent, c.created_at, c.deleted_at, c.anonymized_at, c.stamps,
    p.name, p.price, p.download_kbps, p.upload_kbps, p.data_limit, r.name, r.ip_address
    FROM customers c
    LEFT JOIN packages p ON p.id = c.package_id AND p.tenant_id = c.tenant_id
    LEFT JOIN routers r ON r.id = c.router_id AND r.tenant_id = c.tenant_id";

/// Every stamped field of a customer, in the order `changed_fields` visits them. A field's
/// index is its position in the stored stamps (`stamps`): add new fields at the end only.
pub const STAMPED_FIELDS: [&str; 24] = [
    "username",
    "password",
    "name",
    "email",
    "phone",
    "connection_type",
    "package_id",
    "router_id",
    "expires_at",
    "location",
    "latitude",
    "longitude",
    "apartment_number",
    "house_number",
    "suspended",
    "disabled",
    "auto_renew",
    "static_ip",
    "mac_bindings",
    "tags",
    "last_ip",
    "last_mac",
    "created_at",
    "deleted_at",
];

/// Adds the customers with rowids `first..=last` to the search index in one statement.
///
/// Inserts index explicitly rather than by trigger (migration 6): a trigger makes every
/// customer `INSERT` open a statement savepoint, and FTS5 writes its pending terms out as a
/// new index segment at each savepoint — one tiny segment per row in a bulk import, merged
/// again and again. One statement per import batch leaves one segment per batch.
pub(super) fn index_for_search(conn: &Connection, first: i64, last: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO customers_fts (rowid, username, name, phone)
         SELECT rowid, username, name, phone FROM customers WHERE rowid BETWEEN ?1 AND ?2",
    )?
    .execute(params![first, last])?;
    Ok(())
}

/// Null, false, "" and [] : what a new record's unset fields look like.
pub fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn opt_uuid(text: Option<String>) -> Result<Option<Uuid>> {
    text.map(|t| parse_uuid(&t)).transpose()
}

fn opt_time(value: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    value.map(from_ms).transpose()
}

fn list(text: String) -> Result<Vec<String>> {
    serde_json::from_str(&text).map_err(StorageError::corrupt)
}

impl CustomerRow {
    /// The AEAD associated data binding a password ciphertext to its customer.
    pub fn aad(tenant: Uuid, id: Uuid) -> Vec<u8> {
        format!("customer:{tenant}:{id}").into_bytes()
    }

    pub fn read(row: &rusqlite::Row<'_>) -> Result<CustomerRow> {
        let connection_type: String = row.get(8)?;
        let package = match row.get::<_, Option<String>>(31)? {
            Some(name) => Some(PackageJoin {
                name,
                price: Money::from_minor(row.get(32)?),
                download: Speed::from_kbps(row.get(33)?),
                upload: Speed::from_kbps(row.get(34)?),
                data_limit: row.get::<_, Option<i64>>(35)?.map(|v| v.max(0) as u64),
            }),
            None => None,
        };
        let router = match row.get::<_, Option<String>>(36)? {
            Some(name) => Some((name, row.get(37)?)),
            None => None,
        };
        Ok(CustomerRow {
            rowid: row.get(0)?,
            id: parse_uuid(&row.get::<_, String>(1)?)?,
            tenant_id: parse_uuid(&row.get::<_, String>(2)?)?,
            username: row.get(3)?,
            password_enc: row.get(4)?,
            name: row.get(5)?,
            email: row.get(6)?,
            phone: row.get(7)?,
            connection_type: connection_type.parse().map_err(StorageError::corrupt)?,
            package_id: opt_uuid(row.get(9)?)?,
            router_id: opt_uuid(row.get(10)?)?,
            expires_at: opt_time(row.get(11)?)?,
            location: row.get(12)?,
            latitude: row.get::<_, Option<i64>>(13)?.map(Degrees::from_e7),
            longitude: row.get::<_, Option<i64>>(14)?.map(Degrees::from_e7),
            apartment_number: row.get(15)?,
            house_number: row.get(16)?,
            suspended: row.get(17)?,
            disabled: row.get(18)?,
            auto_renew: row.get(19)?,
            static_ip: row.get(20)?,
            mac_bindings: list(row.get(21)?)?,
            tags: list(row.get(22)?)?,
            last_ip: row.get(23)?,
            last_mac: row.get(24)?,
            balance: Money::from_minor(row.get(25)?),
            total_spent: Money::from_minor(row.get(26)?),
            created_at: from_ms(row.get(27)?)?,
            deleted_at: opt_time(row.get(28)?)?,
            anonymized_at: opt_time(row.get(29)?)?,
            stamps: LazyStamps::Raw(row.get::<_, String>(30)?),
            package,
            router,
        })
    }

    /// Loads one customer of `tenant`; a deleted one only with `include_deleted`.
    pub fn load(
        conn: &Connection,
        tenant: Uuid,
        id: Uuid,
        include_deleted: bool,
    ) -> Result<CustomerRow> {
        let mut stmt =
            conn.prepare_cached(&format!("{SELECT} WHERE c.id = ?1 AND c.tenant_id = ?2"))?;
        let mut rows = stmt.query(params![id.to_string(), tenant.to_string()])?;
        let row = match rows.next()? {
            Some(row) => CustomerRow::read(row)?,
            None => return Err(StorageError::NotFound),
        };
        if row.deleted_at.is_some() && !include_deleted {
            return Err(StorageError::NotFound);
        }
        Ok(row)
    }

    /// 0 = neither flag, 1 = suspended, 2 = disabled (see the migration).
    pub fn state(&self) -> i64 {
        if self.disabled {
            2
        } else if self.suspended {
            1
        } else {
            0
        }
    }

    /// Updates every column (an update trigger keeps the search index in step).
    pub fn save(&mut self, conn: &Connection) -> Result<()> {
        self.write_row(conn, false)
    }

    /// Inserts the row (setting its new rowid) and hands it to the job's search indexing
    /// (`Tx::index_new_customer`: at once, or with the rest of a group of API creates).
    pub(super) fn insert(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        self.write_row(tx.conn(), true)?;
        tx.index_new_customer(self.rowid)
    }

    /// Inserts the row without adding it to the search index: a bulk import indexes its whole
    /// range of rowids at once with [`index_for_search`] before its job ends.
    pub(super) fn insert_unindexed(&mut self, conn: &Connection) -> Result<()> {
        self.write_row(conn, true)
    }

    fn write_row(&mut self, conn: &Connection, insert: bool) -> Result<()> {
        let sql = if insert {
            "INSERT INTO customers (id, tenant_id, username, password_enc, name, email, phone,
                connection_type, package_id, router_id, expires_at, location, latitude_e7,
                longitude_e7, apartment_number, house_number, state, suspended, disabled,
                auto_renew, static_ip, mac_bindings, tags, last_ip, last_mac, balance,
                total_spent, created_at, deleted_at, anonymized_at, stamps)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)"
        } else {
            "UPDATE customers SET username = ?3, password_enc = ?4, name = ?5, email = ?6,
                phone = ?7, connection_type = ?8, package_id = ?9, router_id = ?10,
                expires_at = ?11, location = ?12, latitude_e7 = ?13, longitude_e7 = ?14,
                apartment_number = ?15, house_number = ?16, state = ?17, suspended = ?18,
                disabled = ?19, auto_renew = ?20, static_ip = ?21, mac_bindings = ?22, tags = ?23,
                last_ip = ?24, last_mac = ?25, balance = ?26, total_spent = ?27,
                created_at = ?28, deleted_at = ?29, anonymized_at = ?30, stamps = ?31
             WHERE id = ?1 AND tenant_id = ?2"
        };
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        conn.prepare_cached(sql)?.execute(params![
            self.id.to_string(),
            self.tenant_id.to_string(),
            self.username,
            self.password_enc,
            self.name,
            self.email,
            self.phone,
            self.connection_type.as_str(),
            self.package_id.map(|u| u.to_string()),
            self.router_id.map(|u| u.to_string()),
            self.expires_at.map(ms),
            self.location,
            self.latitude.map(Degrees::e7),
            self.longitude.map(Degrees::e7),
            self.apartment_number,
            self.house_number,
            self.state(),
            self.suspended,
            self.disabled,
            self.auto_renew,
            self.static_ip,
            json(&self.mac_bindings),
            json(&self.tags),
            self.last_ip,
            self.last_mac,
            self.balance.minor(),
            self.total_spent.minor(),
            ms(self.created_at),
            self.deleted_at.map(ms),
            self.anonymized_at.map(ms),
            self.stamps.to_stored(),
        ])?;
        if insert {
            self.rowid = conn.last_insert_rowid();
        }
        Ok(())
    }

    /// Applies a patch; a new password is encrypted by the caller into `password_enc`.
    pub fn apply(&mut self, patch: CustomerPatch) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { self.$f = v; } )* };
        }
        set!(
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
            tags
        );
    }

    /// Stamps every field that differs from `old` (all fields for a new row) after its
    /// previous stamp, and returns the audit changes, old → new, with the password shown only
    /// as "changed".
    pub fn diff(&mut self, tx: &mut Tx<'_>, old: Option<&CustomerRow>) -> Result<Vec<FieldChange>> {
        let mut stamps = std::mem::take(&mut self.stamps).into_parsed()?;
        let mut changes = Vec::new();
        for (field, change) in self.changed_fields(old) {
            let stamp = tx.stamp_after(stamps.get(field));
            stamps.set(field, stamp);
            changes.extend(change);
        }
        self.stamps = LazyStamps::Parsed(stamps);
        Ok(changes)
    }

    /// The fields that differ from `old` (every field for a new row), in the order they are
    /// stamped, each with its audit change when it is worth one. Needs no clock, so bulk
    /// imports run it off the writer thread.
    pub fn changed_fields(
        &self,
        old: Option<&CustomerRow>,
    ) -> Vec<(&'static str, Option<FieldChange>)> {
        let mut fields = Vec::with_capacity(STAMPED_FIELDS.len());
        macro_rules! field {
            ($f:ident, $name:literal, $camel:literal) => {
                let before = old.map(|o| o.$f.audit_value());
                let after = self.$f.audit_value();
                if before.as_ref() != Some(&after) {
                    // A new record's empty fields are not worth an audit line each.
                    let change =
                        (before.is_some() || !is_empty_value(&after)).then(|| FieldChange {
                            field: $camel.into(),
                            old: before.unwrap_or(Value::Null),
                            new: after,
                        });
                    fields.push(($name, change));
                }
            };
        }
        field!(username, "username", "username");
        if old.map(|o| &o.password_enc) != Some(&self.password_enc) {
            let shown = |p: Option<&Option<Vec<u8>>>| match p {
                Some(Some(_)) => secret_change(),
                _ => Value::Null,
            };
            let new = if self.password_enc.is_some() {
                secret_change()
            } else {
                Value::Null
            };
            let change = FieldChange {
                field: "password".into(),
                old: shown(old.map(|o| &o.password_enc)),
                new,
            };
            fields.push(("password", Some(change)));
        }
        field!(name, "name", "name");
        field!(email, "email", "email");
        field!(phone, "phone", "phone");
        field!(connection_type, "connection_type", "connectionType");
        field!(package_id, "package_id", "packageId");
        field!(router_id, "router_id", "nasId");
        field!(expires_at, "expires_at", "expiresAt");
        field!(location, "location", "location");
        field!(latitude, "latitude", "latitude");
        field!(longitude, "longitude", "longitude");
        field!(apartment_number, "apartment_number", "apartmentNumber");
        field!(house_number, "house_number", "houseNumber");
        field!(suspended, "suspended", "suspended");
        field!(disabled, "disabled", "disabled");
        field!(auto_renew, "auto_renew", "autoRenew");
        field!(static_ip, "static_ip", "staticIp");
        field!(mac_bindings, "mac_bindings", "macBindings");
        field!(tags, "tags", "tags");
        field!(last_ip, "last_ip", "lastIp");
        field!(last_mac, "last_mac", "lastMac");
        field!(created_at, "created_at", "createdAt");
        field!(deleted_at, "deleted_at", "deletedAt");
        fields
    }

    fn router_ref(&self) -> Option<RouterRef> {
        let (id, (name, ip)) = (self.router_id?, self.router.as_ref()?);
        Some(RouterRef {
            id,
            name: name.clone(),
            ip_address: ip.clone(),
        })
    }

    pub fn summary(&self, now: DateTime<Utc>) -> CustomerSummary {
        CustomerSummary {
            id: self.id,
            username: self.username.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            connection_type: self.connection_type,
            status: self.status(now),
            expires_at: self.expires_at,
            location: self.location.clone(),
            wallet_balance: self.balance,
            package: self
                .package_id
                .zip(self.package.as_ref())
                .map(|(id, p)| PackageRef {
                    id,
                    name: p.name.clone(),
                    price: p.price,
                }),
            router: self.router_ref(),
            created_at: self.created_at,
        }
    }

    pub fn status(&self, now: DateTime<Utc>) -> easyisp_protocol::CustomerStatus {
        status_at(
            easyisp_protocol::status::StatusInputs {
                disabled: self.disabled,
                suspended: self.suspended,
                expires_at: self.expires_at,
            },
            now,
        )
    }

    pub fn detail(&self, now: DateTime<Utc>) -> CustomerDetail {
        CustomerDetail {
            id: self.id,
            username: self.username.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            connection_type: self.connection_type,
            status: self.status(now),
            expires_at: self.expires_at,
            location: self.location.clone(),
            latitude: self.latitude,
            longitude: self.longitude,
            apartment_number: self.apartment_number.clone(),
            house_number: self.house_number.clone(),
            last_ip: self.last_ip.clone(),
            last_mac: self.last_mac.clone(),
            wallet_balance: self.balance,
            total_spent: self.total_spent,
            package: self
                .package_id
                .zip(self.package.as_ref())
                .map(|(id, p)| PackageDetailRef {
                    id,
                    name: p.name.clone(),
                    price: p.price,
                    download_speed: p.download,
                    upload_speed: p.upload,
                    data_limit: p.data_limit,
                }),
            router: self.router_ref(),
            package_id: self.package_id,
            nas_id: self.router_id,
            auto_renew: self.auto_renew,
            static_ip: self.static_ip.clone(),
            mac_bindings: self.mac_bindings.clone(),
            tags: self.tags.clone(),
            created_at: self.created_at,
            deleted_at: self.deleted_at,
        }
    }
}
