//! Central's sync engine (docs/sync.md) against a real `easyisp-central serve` and a real
//! Mosquitto, with a hand-driven test agent: snapshots and the live downstream stream, acks
//! and resends, the upstream apply, presence, and commands.

mod commands;
mod downstream;
pub(crate) mod harness;
mod presence;
mod upstream;
