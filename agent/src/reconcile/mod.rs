//! The reconcile controller: makes the router match the replica.
//!
//! `desired` computes what the router should hold from the replica's customers and packages;
//! `plan` compares it with what the router holds (one list read per menu) and returns the
//! operations to apply, touching only objects whose comment carries our marker
//! (`easyisp:<customer or package id>`). The controller applying the plan is level-triggered
//! and idempotent: running it twice changes nothing the second time.

pub mod desired;
pub mod plan;
pub mod run;
pub mod targeted;

use uuid::Uuid;

/// The comment prefix that marks router objects EasyISP owns.
pub const MARKER: &str = "easyisp:";

/// The address list whose entries cut off DHCP and static customers (the ISP's firewall drops
/// or redirects traffic from it).
pub const CUTOFF_LIST: &str = "easyisp-cutoff";

/// The comment for an object owned on behalf of `owner` (a customer or package id).
pub fn marker(owner: Uuid) -> String {
    format!("{MARKER}{owner}")
}

/// The owner named by a comment, if the comment is ours. Text after the id (an operator's note
/// appended at the router) is allowed.
pub fn owner_of(comment: &str) -> Option<Uuid> {
    let rest = comment.trim_start().strip_prefix(MARKER)?;
    let id = rest.get(..36)?;
    Uuid::parse_str(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_marker_means_ownership() {
        let id = Uuid::from_u128(0xabc);
        assert_eq!(owner_of(&marker(id)), Some(id));
        assert_eq!(
            owner_of(&format!("{} moved to new CPE", marker(id))),
            Some(id)
        );
        assert_eq!(owner_of("easyisp:not-a-uuid"), None);
        assert_eq!(owner_of("customer of Bob"), None);
        assert_eq!(owner_of(""), None);
    }
}

#[cfg(test)]
mod plan_tests;
