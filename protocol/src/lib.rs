//! What EasyISP's central and its agents must agree on: domain types, validation, hybrid
//! logical clocks, merge rules, MQTT topics and envelopes, RouterOS rate-limit strings.
//!
//! This crate is pure: no I/O, no tokio, no clock. Functions that depend on time take `now`.

pub mod secret;

pub use secret::Secret;
