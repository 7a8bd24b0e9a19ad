//! One test binary for every cross-process test, one module per area.

mod agent_binary;
mod agent_daemon;
mod central_api;
mod mqtt_harness;
mod routeros_drivers;
mod sim_api;
mod sim_rest;
mod sim_sessions;
mod sim_ssh;
