//! What EasyISP's central and its agents must agree on: domain types, validation, hybrid
//! logical clocks, merge rules, MQTT topics and envelopes, RouterOS rate-limit strings.
//!
//! This crate is pure: no I/O, no tokio, no clock. Functions that depend on time take `now`.

pub mod audit;
pub mod customer;
pub mod decimal;
pub mod envelope;
pub mod hlc;
pub mod ledger;
pub mod merge;
pub mod money;
pub mod package;
pub mod router;
#[cfg(feature = "schema")]
mod schema;
pub mod secret;
pub mod session;
pub mod status;
pub mod topics;
pub mod validate;

pub use customer::{ConnectionType, CustomerRecord};
pub use hlc::{Hlc, HlcClock, NodeId};
pub use money::Money;
pub use package::{PackageRecord, Speed, rate_limit};
pub use secret::Secret;
pub use status::{CustomerStatus, status_at};
