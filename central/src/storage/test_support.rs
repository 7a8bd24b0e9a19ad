//! What the storage tests share: a database of their own with one tenant, and a new
//! customer with only what a create requires.

use super::customer_row::NewCustomer;
use super::{Storage, StorageOptions};
use easyisp_protocol::{ConnectionType, Secret};
use uuid::Uuid;

/// A fresh database file in a temporary directory (kept while the `TempDir` lives), with
/// the tenant "t".
pub(crate) async fn open_with_tenant() -> (tempfile::TempDir, Storage, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions {
        readers: 2,
        synchronous_full: false,
    };
    let storage = Storage::open(dir.path(), options).unwrap();
    let tenant = storage
        .create_tenant("t".into(), None, "admin".into(), "hash".into())
        .await
        .unwrap();
    (dir, storage, tenant)
}

/// A PPPoE customer with the password "Zebra-Lamp-42" and nothing optional set.
pub(crate) fn new_customer(username: &str, name: &str) -> NewCustomer {
    NewCustomer {
        username: username.into(),
        password: Secret::new("Zebra-Lamp-42".into()),
        name: name.into(),
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
        disabled: false,
        auto_renew: false,
        static_ip: None,
        mac_bindings: Vec::new(),
        tags: Vec::new(),
    }
}
