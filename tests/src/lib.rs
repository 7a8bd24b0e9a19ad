//! Test support for cross-process tests.
pub mod mosquitto;
