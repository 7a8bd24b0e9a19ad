//! The RouterOS simulator: one in-memory router state (`state`, `schema`, `sessions`,
//! `traffic`) served over REST (`rest`), the classic API (`api`, `wire`), SSH CLI (`ssh`,
//! `cli`, `cli_parse`, `cli_format`) and a JSON control interface for tests (`control`).
//! Test support only, never product; behaviour follows `shared/routeros.md`. Nothing here may
//! bind anything but 127.0.0.1.
//!
//! Modelled: the menus of routeros.md §4 with defaults, `.id` allocation and renumbering on
//! reboot, uniqueness with the real duplicate texts, profile references with prefix
//! completion and the ambiguity error, enum/bool/int/duration/rate-limit validation, unknown
//! parameters; sessions with `<pppoe-NAME>` interfaces, dynamic queues and address-list
//! entries, redial after an admin disconnect (not when disabled), counter resets on
//! reconnect/reboot, v6 32-bit interface counters, hotspot MAC cookies and cumulative user
//! counters; version gates for REST, `!empty`, login methods, date format and `\?`.
//!
//! Also: address-list `timeout` expiry, `/ppp/active print stats`, hotspot `limit-bytes-total`
//! logout, API `listen`/`/cancel`, `count-only`, `!fatal` after too many commands before login.
//!
//! Not modelled (yet): users/groups/policies (one admin user), `/ip/hotspot/active/login`,
//! `limit-bytes-*` enforcement for PPP, `limit-uptime` enforcement, interactive SSH shells,
//! persistence across restarts, and the "400 but applied" quirk of `/user` password changes.

pub mod api;
pub mod cli;
pub mod cli_format;
pub mod cli_parse;
pub mod command;
pub mod control;
pub mod faults;
pub mod format;
pub mod http;
pub mod json;
pub mod launch;
pub mod query;
pub mod ratelimit;
pub mod rest;
pub mod schema;
pub mod server;
pub mod sessions;
pub mod ssh;
pub mod state;
pub mod tls;
pub mod traffic;
pub mod version;
pub mod wire;
