//! Sessions from router counters. `track` is the pure core: it turns successive polls of the
//! router's active sessions into session records with 64-bit totals that survive counter
//! resets and 32-bit wraps. The poller task reads the router and persists what it returns.

pub mod track;
