//! Exact expiry: when customers lose access because time passed, and when it must not happen.
//!
//! `plan` is the pure core (what is due, what is held, when to wake up next); the daemon's
//! expiry task sleeps until [`plan::next_wake`] or a change notice and then runs it.

pub mod plan;
