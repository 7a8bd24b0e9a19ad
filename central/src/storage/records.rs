//! The replicated records the sync issue sends to agents, built from a row and its per-field
//! stamps (`stamps`): `load_customer_record` and `load_package_record`.

use super::customer_row::CustomerRow;
use super::packages::PackageRow;
use super::stamps::Stamps;
use super::{Result, Storage};
use easyisp_protocol::customer::SyncedSecret;
use easyisp_protocol::hlc::Hlc;
use easyisp_protocol::merge::Lww;
use easyisp_protocol::{CustomerRecord, PackageRecord};
use uuid::Uuid;

fn lww<T>(stamps: &Stamps, field: &str, value: T) -> Option<Lww<T>> {
    Some(Lww::new(value, stamps.get(field)))
}

/// The customer as a replicated record, read on `conn` (see [`Storage::load_customer_record`]).
pub(super) fn customer_record(
    conn: &rusqlite::Connection,
    cipher: &crate::secrets::Cipher,
    tenant: Uuid,
    id: Uuid,
) -> Result<CustomerRecord> {
    let row = CustomerRow::load(conn, tenant, id, true)?;
    let stamps = row.stamps.clone().into_parsed()?;
    let password = match &row.password_enc {
        Some(sealed) => Some(SyncedSecret(
            cipher.decrypt(&CustomerRow::aad(tenant, id), sealed)?,
        )),
        // A wiped password (anonymisation) travels as an empty one with its newer stamp, so
        // replicas drop the old secret too instead of keeping it forever.
        None if stamps.get("password") != Hlc::default() => Some(SyncedSecret::new("")),
        None => None,
    };
    Ok(record_of_row(&row, &stamps, password))
}

/// Builds the replicated record of a row with its stamps; `password` is the decrypted secret
/// when the caller needs it (records sent to agents do, merges only when one arrives).
pub(super) fn record_of_row(
    row: &CustomerRow,
    s: &Stamps,
    password: Option<SyncedSecret>,
) -> CustomerRecord {
    let mut r = CustomerRecord::empty(row.id, row.tenant_id);
    r.username = lww(s, "username", row.username.clone());
    r.password = password.and_then(|p| lww(s, "password", p));
    r.name = lww(s, "name", row.name.clone());
    r.email = lww(s, "email", row.email.clone());
    r.phone = lww(s, "phone", row.phone.clone());
    r.connection_type = lww(s, "connection_type", row.connection_type);
    r.package_id = lww(s, "package_id", row.package_id);
    r.router_id = lww(s, "router_id", row.router_id);
    r.expires_at = lww(s, "expires_at", row.expires_at);
    r.location = lww(s, "location", row.location.clone());
    r.latitude = lww(s, "latitude", row.latitude);
    r.longitude = lww(s, "longitude", row.longitude);
    r.apartment_number = lww(s, "apartment_number", row.apartment_number.clone());
    r.house_number = lww(s, "house_number", row.house_number.clone());
    r.suspended = lww(s, "suspended", row.suspended);
    r.disabled = lww(s, "disabled", row.disabled);
    r.auto_renew = lww(s, "auto_renew", row.auto_renew);
    r.static_ip = lww(s, "static_ip", row.static_ip.clone());
    r.mac_bindings = lww(s, "mac_bindings", row.mac_bindings.clone());
    r.tags = lww(s, "tags", row.tags.clone());
    r.last_ip = lww(s, "last_ip", row.last_ip.clone());
    r.last_mac = lww(s, "last_mac", row.last_mac.clone());
    r.created_at = lww(s, "created_at", row.created_at);
    r.deleted_at = lww(s, "deleted_at", row.deleted_at);
    r
}

/// The package as a replicated record, read on `conn`.
pub(super) fn package_record(
    conn: &rusqlite::Connection,
    tenant: Uuid,
    id: Uuid,
) -> Result<PackageRecord> {
    let row = PackageRow::load(conn, tenant, id, true)?;
    let s = &row.stamps;
    let mut r = PackageRecord::empty(row.id, row.tenant_id);
    r.name = lww(s, "name", row.name.clone());
    r.price = lww(s, "price", row.price);
    r.download_speed = lww(s, "download_speed", row.download_speed);
    r.upload_speed = lww(s, "upload_speed", row.upload_speed);
    r.validity_days = lww(s, "validity_days", row.validity_days);
    r.data_limit = lww(s, "data_limit", row.data_limit);
    r.session_time_limit = lww(s, "session_time_limit", row.session_time_limit);
    r.burst = lww(s, "burst", row.burst);
    r.created_at = lww(s, "created_at", row.created_at);
    r.deleted_at = lww(s, "deleted_at", row.deleted_at);
    Ok(r)
}

impl Storage {
    /// The customer as a replicated record with every field and its stamp (password
    /// decrypted: records travel only the authenticated sync channel). Deleted customers are
    /// included: their `deletedAt` is a replicated field too.
    pub async fn load_customer_record(&self, tenant: Uuid, id: Uuid) -> Result<CustomerRecord> {
        let cipher = self.cipher();
        self.read(move |conn| customer_record(conn, &cipher, tenant, id))
            .await
    }

    /// The package as a replicated record with every field and its stamp.
    pub async fn load_package_record(&self, tenant: Uuid, id: Uuid) -> Result<PackageRecord> {
        self.read(move |conn| package_record(conn, tenant, id))
            .await
    }
}
