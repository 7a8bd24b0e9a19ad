//! Test support for cross-process tests.
pub mod binaries;
pub mod mosquitto;
pub mod proxy;
pub mod sim;
pub mod sim_harness;
