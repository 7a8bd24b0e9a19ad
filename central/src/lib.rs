//! EasyISP central: the operators' server. The REST API of the customer module on SQLite,
//! with tenants, operators and permissions, packages, routers, the ledger and the audit log.
//!
//! Layout: `storage` is the only module that opens SQLite; `api` is the only module that
//! speaks HTTP (errors are mapped in `api::error`); `secrets` holds the key file, the AEAD for
//! customer passwords, operator password hashes and opaque tokens; `permissions` is the pure
//! role → permission table; `server` wires the tasks together and shuts them down.

pub mod api;
pub mod permissions;
pub mod retention;
pub mod secrets;
pub mod server;
pub mod storage;
