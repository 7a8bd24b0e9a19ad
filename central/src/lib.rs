//! EasyISP central: the operators' server. The REST API of the customer module on SQLite,
//! with tenants, operators and permissions, packages, routers, the ledger and the audit log.
//!
//! Layout: `storage` is the only module that opens SQLite; `api` is the only module that
//! speaks HTTP (errors are mapped in `api::error`); `secrets` holds the key file, the AEAD for
//! customer passwords, operator password hashes and opaque tokens; `permissions` is the pure
//! role → permission table; `broker` runs (or points at) the MQTT broker agents sync through
//! and owns its accounts and files; `sync` is central's side of sync with the agents over
//! that broker (docs/sync.md); `server` wires the tasks together and shuts them down;
//! `doctor` checks an installation read-only (docs/central.md).

pub mod api;
pub mod broker;
pub mod doctor;
pub mod permissions;
pub mod retention;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod sync;
