//! Tag keys and resource names: how image-provision recognises what it made.

use crate::Tag;

pub const NAME: &str = "Name";
pub const SERVER_NAME: &str = "image-provision:name";
pub const MANAGED: &str = "image-provision:managed";
pub const EXPIRES_AT: &str = "image-provision:expires-at";
/// On the instance: its idle stop (`--autostop`), as a duration (`30m`,
/// `1h 30m`), or `off` once removed.
pub const AUTOSTOP: &str = "image-provision:autostop";
/// The autostop tag's value of a server whose idle stop was removed.
pub const AUTOSTOP_OFF: &str = "off";
/// On the instance and its Elastic IP: the host name whose DNS records were
/// made for the server, so that destroy finds them from the tags alone.
pub const DOMAIN: &str = "image-provision:domain";
/// On the instance: the web UI's host name (`--llm-webui`) whose DNS
/// records were made for the server, so that destroy and start find them.
pub const WEBUI_DOMAIN: &str = "image-provision:webui-domain";

/// On a fleet's servers, its balancer, target group, certificate and
/// security group: the fleet's name. A fleet's own resources carry no
/// server-name tag, so that no server command takes them for a server's.
pub const FLEET: &str = "image-provision:fleet";

/// On an image `ami bake` made, and on its snapshots: the image's name (IMAGE_NAME).
pub const BAKED_IMAGE: &str = "image-provision:image";
/// On a baked image: the server it was made from.
pub const SOURCE_SERVER: &str = "image-provision:source-server";
/// On a baked image: the IMAGE-server commit its clone was at.
pub const REPO_COMMIT: &str = "image-provision:repo-commit";
/// On a baked image: the NVIDIA driver branch installed (`570-server`), or `none`.
pub const DRIVER_BRANCH: &str = "image-provision:driver-branch";
/// On a baked image, one tag a compose service: `image-provision:digest:SERVICE`
/// = the digest (`sha256:...`) of the image it ran.
pub const DIGEST_PREFIX: &str = "image-provision:digest:";
/// On a baked image's snapshots: the image they belong to (the snapshot's
/// own record, checked before `ami delete` deletes it).
pub const IMAGE_ID: &str = "image-provision:image-id";

/// Whether `name` may name a baked image: 3 to 128 lowercase letters,
/// digits, dots, hyphens and underscores, a letter or digit first. A subset
/// of what EC2 allows in an AMI name (which also takes spaces, brackets,
/// slashes and quotes), so that it is safe in a tag filter, a path and a
/// terminal alike.
pub fn is_image_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// The label before DOMAIN of the TXT record that says which server DOMAIN's
/// A/AAAA records were made for (external-dns' ownership record). At a name
/// of its own rather than at DOMAIN itself: an UPSERT replaces every TXT
/// value at its name, so a TXT at DOMAIN would wipe the owner's SPF or
/// site-verification values there, and a name holding a CNAME can hold no TXT.
pub const OWNERSHIP_LABEL: &str = "_image-provision";

/// Whether `name` is a server name: a DNS label (1 to 63 lowercase letters,
/// digits and hyphens, no hyphen at either end). Typed names are checked
/// against it, and so is every name read back from a tag before it names
/// anything: a tag is anyone's to write who may tag instances.
pub fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

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

/// The value of tag `key` among `tags`.
pub fn value_of(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.clone())
}

/// The name of DOMAIN's ownership TXT record (see [`OWNERSHIP_LABEL`]).
pub fn ownership_record_name(domain: &str) -> String {
    format!("{OWNERSHIP_LABEL}.{domain}")
}

/// The ownership TXT value for server NAME of `account` in `region`, quoted
/// as Route 53 stores TXT values. A server is known by all three: two
/// servers called `demo` in two regions (or two accounts sharing a hosted
/// zone) are two owners.
pub fn ownership_value(name: &str, account: &str, region: &str) -> String {
    format!("\"heritage=image-provision,server={name},account={account},region={region}\"")
}

/// The ownership TXT value for fleet NAME's records (its balancer's alias,
/// its certificate's validation record): a fleet and a server of one name
/// are two owners.
pub fn fleet_ownership_value(name: &str, account: &str, region: &str) -> String {
    format!("\"heritage=image-provision,fleet={name},account={account},region={region}\"")
}

/// The value versions before the account and the region wrote: still read as
/// NAME's own, so that servers made then keep their records (a publish
/// rewrites it in the form above).
pub fn legacy_ownership_value(name: &str) -> String {
    format!("\"heritage=image-provision,server={name}\"")
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
    fn image_names_are_a_safe_subset_of_ec2s() {
        for good in ["web-2026.12.07", "abc", "image_1", &"a".repeat(128)] {
            assert!(is_image_name(good), "{good}");
        }
        for bad in ["ab", "-web", ".web", "Web", "web 1", "web/1", "web\n", "", &"a".repeat(129), "wéb"] {
            assert!(!is_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn managed_tags_carry_expiry_only_when_set() {
        assert_eq!(managed_tags("web", None).len(), 3);
        let tags = managed_tags("web", Some("2026-01-01T00:00:00Z"));
        assert!(tags.contains(&Tag::new(EXPIRES_AT, "2026-01-01T00:00:00Z")));
    }
}
