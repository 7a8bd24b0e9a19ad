//! EasyISP agent: runs next to one MikroTik router.
pub mod counters;
pub mod expiry;
pub mod replica;
