//! EasyISP agent: runs next to one MikroTik router, keeps it in line with the ISP's customer
//! list and reports sessions. `routeros` holds the drivers; `probe` the read-only check a
//! technician runs first; `enroll` joins central; `sync` keeps the replica in step with it.

pub mod adopt;
pub mod cli;
pub mod clock;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod doctor;
pub mod enroll;
pub mod expiry;
pub mod probe;
pub mod reconcile;
pub mod replica;
pub mod routeros;
pub mod status;
pub mod sync;
