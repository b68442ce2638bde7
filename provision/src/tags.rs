//! Tag keys and resource names: how image-provision recognises what it made.

use crate::Tag;

pub const NAME: &str = "Name";
pub const SERVER_NAME: &str = "image-provision:name";
pub const MANAGED: &str = "image-provision:managed";
pub const EXPIRES_AT: &str = "image-provision:expires-at";

/// The name given to the security group and the key pair of server `name`.
pub fn resource_name(name: &str) -> String {
    format!("image-provision-{name}")
}

/// The tags every managed resource carries.
pub fn managed_tags(name: &str, expires_at: Option<&str>) -> Vec<Tag> {
    let mut tags = vec![Tag::new(NAME, name), Tag::new(SERVER_NAME, name), Tag::new(MANAGED, "true")];
    if let Some(at) = expires_at {
        tags.push(Tag::new(EXPIRES_AT, at));
    }
    tags
}

/// RunInstances' idempotency token. Derived from NAME and the security group
/// made for this incarnation of NAME, so a create killed after RunInstances
/// and run again gets the same instance back, while a create after a destroy
/// (new group) launches a new one. EC2 allows 64 ASCII characters, so the pair
/// is hashed rather than truncated (a truncated long NAME would lose the group).
pub fn client_token(name: &str, security_group_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{name}/{security_group_id}"));
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("image-provision-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_fits_ec2_limit_and_depends_on_the_group() {
        let long = "a".repeat(63);
        assert!(client_token(&long, "sg-1").len() <= 64);
        assert_ne!(client_token("x", "sg-1"), client_token("x", "sg-2"));
        assert_ne!(client_token(&long, "sg-1"), client_token(&long, "sg-2"));
        assert_eq!(client_token("x", "sg-1"), client_token("x", "sg-1"));
    }

    #[test]
    fn managed_tags_carry_expiry_only_when_set() {
        assert_eq!(managed_tags("web", None).len(), 3);
        let tags = managed_tags("web", Some("2026-01-01T00:00:00Z"));
        assert!(tags.contains(&Tag::new(EXPIRES_AT, "2026-01-01T00:00:00Z")));
    }
}
