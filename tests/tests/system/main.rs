//! One test binary for every cross-process test, one module per area.

mod agent_binary;
mod agent_daemon;
mod agent_ops;
mod agent_sync;
mod central_api;
mod central_broker;
mod central_ops;
mod central_sync;
mod mqtt_harness;
mod packaging;
mod routeros_drivers;
mod sim_api;
mod sim_rest;
mod sim_sessions;
mod sim_ssh;
mod sync_e2e;
