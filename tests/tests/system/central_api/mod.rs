//! easyisp-central's REST API over real HTTP, against a real `easyisp-central serve` process
//! per test (free loopback port, temporary data directory). Every response body is checked
//! for password fields by the harness.

mod auth;
mod customers;
mod customers_actions;
pub(crate) mod harness;
mod operators;
mod packages_routers;
mod search_paging;
