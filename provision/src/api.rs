//! The EC2 and Route 53 calls image-provision makes, as plain data.
//!
//! Requests are our own serializable structs rather than SDK builders so that
//! the dry run can print exactly what a real run would send.

use serde::Serialize;

use crate::Result;

/// A tag as EC2 stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag { key: key.into(), value: value.into() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub creation_date: String,
    pub root_device_name: String,
    /// `pending`, `available`, `failed`, ...
    pub state: String,
    /// The AWS account that owns it.
    pub owner_id: String,
    pub tags: Vec<Tag>,
    /// The EBS snapshots behind its block devices, once EC2 has started them.
    pub snapshot_ids: Vec<String>,
}

impl Image {
    /// Its tag `key`'s value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// CreateImage of a running instance, as `ami bake` asks it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateImageRequest {
    pub instance_id: String,
    pub name: String,
    pub description: String,
    /// True: EC2 does not reboot the instance (`ami bake` quiesces Docker and
    /// syncs the disk itself, and the secrets it holds aside in /run would
    /// not survive a reboot).
    pub no_reboot: bool,
    /// On the image, at creation. (The snapshots are tagged once their ids
    /// are known: moto serves no snapshot tags in CreateImage.)
    pub image_tags: Vec<Tag>,
}

/// An EBS snapshot, as `ami delete` checks that it is ours.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub default_for_az: bool,
}

/// One ingress rule: a TCP port open to one CIDR (IPv4 or IPv6), or to
/// the members of one security group (`cidr` is then its id, `sg-...`: a
/// fleet's servers take web traffic from its balancer's group only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct IngressRule {
    pub port: u16,
    pub cidr: String,
}

impl IngressRule {
    pub fn is_ipv6(&self) -> bool {
        self.cidr.contains(':')
    }
    /// Whether the rule admits a security group's members, not a range.
    pub fn is_group(&self) -> bool {
        self.cidr.starts_with("sg-")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub ingress: Vec<IngressRule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub state: String,
    pub instance_type: String,
    pub public_ip: Option<String>,
    /// Its first IPv6 address, when its subnet gives it one.
    pub ipv6_address: Option<String>,
    pub launch_time: Option<String>,
    pub expires_at: Option<String>,
    pub vpc_id: Option<String>,
    pub availability_zone: Option<String>,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub image_id: Option<String>,
    /// The EBS volumes attached to it (its root volume among them).
    pub volume_ids: Vec<String>,
    /// The host name whose DNS records were made for it (its domain tag).
    pub domain: Option<String>,
    /// The web UI's host name whose DNS records were made for it (its
    /// webui-domain tag).
    pub webui_domain: Option<String>,
    /// Its instance metadata answers only with an IMDSv2 token and only one
    /// network hop away (not to containers on Docker's bridge network).
    pub imds_locked: bool,
    /// Its idle stop, from its autostop tag (`30m`; `off` once removed).
    pub autostop: Option<String>,
    /// The fleet it serves in (its fleet tag), if any.
    pub fleet: Option<String>,
}

impl Instance {
    /// Whether its tags give it an idle stop (it then stops, rather than
    /// terminates, when it shuts itself down).
    pub fn stops_when_idle(&self) -> bool {
        self.autostop.as_deref().is_some_and(|a| !a.is_empty() && a != crate::tags::AUTOSTOP_OFF)
    }

    /// States in which an instance still exists and costs or may cost money.
    pub fn is_live(&self) -> bool {
        !matches!(self.state.as_str(), "terminated" | "shutting-down")
    }

    /// When the server expires, if its expires-at tag holds a valid time.
    pub fn expiry(&self) -> Option<jiff::Timestamp> {
        self.expires_at.as_deref().and_then(|at| at.parse().ok())
    }

    /// Seconds from `now` until it expires, negative once it has; None
    /// without a (valid) expiry.
    pub fn seconds_left(&self, now: jiff::Timestamp) -> Option<i64> {
        self.expiry().map(|at| at.duration_since(now).as_secs())
    }

    /// Whether it has expired at `now` (what `destroy --expired` removes).
    pub fn has_expired(&self, now: jiff::Timestamp) -> bool {
        self.expiry().is_some_and(|at| at <= now)
    }
}

/// An EBS volume, as its price needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    pub id: String,
    pub size_gib: i32,
    pub volume_type: String,
    pub iops: Option<i32>,
    pub throughput_mibps: Option<i32>,
}

/// An Elastic IP.
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    pub allocation_id: String,
    pub association_id: Option<String>,
    pub public_ip: String,
    /// The instance it is associated with.
    pub instance_id: Option<String>,
    /// Its domain tag: the host name whose DNS records point at it.
    pub domain: Option<String>,
    /// The server it was allocated for, when its tags say image-provision
    /// made it (managed and named); None: not ours.
    pub managed_for: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunInstancesRequest {
    pub image_id: String,
    pub instance_type: String,
    pub key_name: String,
    pub security_group_ids: Vec<String>,
    pub subnet_id: String,
    pub client_token: String,
    pub root_device_name: String,
    pub volume_size_gib: i32,
    pub volume_type: String,
    /// gp3's throughput (MiB/s) and IOPS; None: EBS's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_throughput_mibps: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_iops: Option<i32>,
    pub delete_on_termination: bool,
    /// The root volume is encrypted: with `kms_key_id`, else the account's
    /// default EBS key.
    pub encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Instance metadata: IMDSv2 tokens required, at most this many network
    /// hops (1: the host itself, not its containers).
    pub metadata_hop_limit: i32,
    pub spot: bool,
    /// Set for ephemeral servers: a shutdown inside the host ends its bill too.
    pub shutdown_terminates: bool,
    pub instance_tags: Vec<Tag>,
    pub volume_tags: Vec<Tag>,
    /// Cloud-init user data, plain text; the SDK adapter base64-encodes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

/// The EC2 API as image-provision uses it.
///
/// Implemented by [`crate::SdkApi`] (real calls) and [`crate::DryRunApi`]
/// (prints each call, makes none). Methods that only read may return
/// placeholders in a dry run.
#[allow(async_fn_in_trait)]
pub trait Ec2Api {
    /// Whether this API only prints (dry run).
    fn is_dry_run(&self) -> bool {
        false
    }

    /// Images owned by `owner` whose name matches the glob `name_pattern`,
    /// available, x86_64.
    async fn find_images(&self, owner: &str, name_pattern: &str) -> Result<Vec<Image>>;
    async fn image(&self, image_id: &str) -> Result<Option<Image>>;
    /// Images this account owns, in every state, matching DescribeImages'
    /// filter `name` = `value` (`tag-key`, `tag:KEY`, `name`).
    async fn own_images(&self, filter_name: &str, value: &str) -> Result<Vec<Image>>;
    /// Returns the new image's id.
    async fn create_image(&self, request: &CreateImageRequest) -> Result<String>;
    async fn deregister_image(&self, image_id: &str) -> Result<()>;
    /// The snapshots with these ids (those that exist).
    async fn snapshots(&self, snapshot_ids: &[String]) -> Result<Vec<Snapshot>>;
    /// Snapshots this account owns whose tag `key` is `value`.
    async fn own_snapshots_tagged(&self, key: &str, value: &str) -> Result<Vec<Snapshot>>;
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()>;

    async fn default_vpc(&self) -> Result<Option<String>>;
    async fn subnet(&self, subnet_id: &str) -> Result<Option<Subnet>>;
    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>>;

    async fn security_group(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>>;
    /// Managed security groups for a NAME, in any VPC (destroy works from tags).
    async fn managed_security_groups(&self, name: &str) -> Result<Vec<SecurityGroup>>;
    async fn default_security_group(&self, vpc_id: &str) -> Result<Option<String>>;
    /// Managed security groups whose tag `key` is `value`, in any VPC.
    async fn security_groups_tagged(&self, key: &str, value: &str) -> Result<Vec<SecurityGroup>>;
    /// The lowest current spot price (USD an hour) of a Linux instance of
    /// this type in the region; None when EC2 reports none.
    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>>;
    async fn create_security_group(&self, vpc_id: &str, name: &str, description: &str, tags: &[Tag]) -> Result<String>;
    /// Adds rules; a rule that already exists is not an error.
    async fn authorize_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()>;
    /// Removes rules; a rule already gone is not an error.
    async fn revoke_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()>;
    async fn delete_security_group(&self, group_id: &str) -> Result<()>;

    async fn key_pair(&self, name: &str) -> Result<Option<KeyPair>>;
    async fn import_key_pair(&self, name: &str, public_key: &str, tags: &[Tag]) -> Result<KeyPair>;
    async fn delete_key_pair(&self, key_pair: &KeyPair) -> Result<()>;

    /// Managed instances (tag `image-provision:managed=true`), optionally only
    /// those named `name`, in every state but terminated.
    async fn find_instances(&self, name: Option<&str>) -> Result<Vec<Instance>>;
    async fn instance(&self, instance_id: &str) -> Result<Option<Instance>>;
    async fn run_instance(&self, request: &RunInstancesRequest) -> Result<Instance>;
    async fn set_instance_security_groups(&self, instance_id: &str, group_ids: &[String]) -> Result<()>;
    /// Whether a shutdown from inside the instance terminates it (rather than
    /// stopping it).
    async fn shutdown_terminates(&self, instance_id: &str) -> Result<bool>;
    /// Make a shutdown from inside the instance terminate it.
    async fn set_shutdown_terminates(&self, instance_id: &str) -> Result<()>;
    /// Make a shutdown from inside the instance stop it (EC2's default).
    async fn set_shutdown_stops(&self, instance_id: &str) -> Result<()>;
    async fn terminate_instance(&self, instance_id: &str) -> Result<()>;
    /// StopInstances: the instance, its volumes and its Elastic IP stay.
    async fn stop_instance(&self, instance_id: &str) -> Result<()>;
    /// StartInstances, for a stopped instance.
    async fn start_instance(&self, instance_id: &str) -> Result<()>;
    /// The EBS volumes with these ids (those that exist).
    async fn volumes(&self, volume_ids: &[String]) -> Result<Vec<Volume>>;
    /// Require IMDSv2 tokens with a hop limit of 1 on a running instance.
    async fn lock_instance_metadata(&self, instance_id: &str) -> Result<()>;

    /// The AWS account the calls are made in, and the region: what a DNS
    /// ownership record names besides the server, so that two servers of one
    /// name in two regions or accounts never take each other's records.
    async fn account_id(&self) -> Result<String>;
    fn region(&self) -> String;

    /// Adds `tags` to every resource, replacing the value of a key already there.
    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<()>;

    /// Elastic IPs associated with the instance.
    async fn addresses(&self, instance_id: &str) -> Result<Vec<Address>>;
    /// Managed Elastic IPs of server NAME, associated or not (found by tags).
    async fn managed_addresses(&self, name: &str) -> Result<Vec<Address>>;
    /// A new Elastic IP for use in a VPC, tagged at allocation.
    async fn allocate_address(&self, tags: &[Tag]) -> Result<Address>;
    /// Returns the association id.
    async fn associate_address(&self, allocation_id: &str, instance_id: &str) -> Result<String>;
    /// Disassociates it first if it is associated.
    async fn release_address(&self, address: &Address) -> Result<()>;
}

/// A Route 53 hosted zone.
#[derive(Debug, Clone, Serialize)]
pub struct HostedZone {
    /// As Route 53 gives it, e.g. `/hostedzone/Z0123456789`.
    pub id: String,
    /// Fully qualified, with the final dot: `example.org.`.
    pub name: String,
    /// Answers only inside the VPCs attached to it.
    pub private: bool,
}

/// AWS's Price List API as the cost estimate reads it.
///
/// Implemented by [`crate::SdkApi`] (GetProducts, through the API's own
/// endpoint) and [`crate::DryRunApi`] (prints the call, answers nothing).
#[allow(async_fn_in_trait)]
pub trait PriceListApi {
    /// The price-list documents (one JSON text per product) of
    /// `service_code` whose attributes match every `(field, value)` exactly.
    async fn products(&self, service_code: &str, filters: &[(&str, &str)]) -> Result<Vec<String>>;
}

/// A Route 53 record set: simple (values), or an alias (not weighted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSet {
    /// Fully qualified, with the final dot.
    pub name: String,
    /// `A`, `AAAA`, `TXT`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub ttl: Option<i64>,
    /// TXT values carry their double quotes, as Route 53 stores them.
    pub values: Vec<String>,
    /// An alias record's target (no TTL, no values): a fleet's load balancer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasTarget>,
}

/// Where an alias record points: an AWS resource's DNS name in its zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasTarget {
    /// The target's own hosted zone (a load balancer's canonical zone).
    pub zone_id: String,
    /// Fully qualified, lowercase, with the final dot.
    pub dns_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeAction {
    Upsert,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordChange {
    pub action: ChangeAction,
    pub record: RecordSet,
}

/// The Route 53 API as image-provision uses it. Implemented, like [`Ec2Api`],
/// by [`crate::SdkApi`] and [`crate::DryRunApi`]. Route 53 is a global
/// service: the region does not matter.
#[allow(async_fn_in_trait)]
pub trait Route53Api {
    /// Every hosted zone of the account, public and private.
    async fn hosted_zones(&self) -> Result<Vec<HostedZone>>;
    /// The record sets named exactly `name` (fully qualified) in the zone.
    async fn record_sets(&self, zone_id: &str, name: &str) -> Result<Vec<RecordSet>>;
    /// Applies the changes as one batch, all or none; returns the change id.
    async fn change_record_sets(&self, zone_id: &str, comment: &str, changes: &[RecordChange]) -> Result<String>;
    /// Whether the change has reached every Route 53 name server.
    async fn change_in_sync(&self, change_id: &str) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring(expires_at: Option<&str>) -> Instance {
        Instance {
            id: "i-1".into(),
            name: "web".into(),
            state: "running".into(),
            instance_type: "g5.xlarge".into(),
            public_ip: None,
            launch_time: None,
            expires_at: expires_at.map(str::to_owned),
            vpc_id: None,
            availability_zone: None,
            security_group_ids: vec![],
            key_name: None,
            image_id: None,
            volume_ids: vec![],
            ipv6_address: None,
            domain: None,
            webui_domain: None,
            imds_locked: true,
            autostop: None,
            fleet: None,
        }
    }

    #[test]
    fn seconds_left_counts_down_past_zero_and_only_with_a_valid_expiry() {
        let now: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let at_noon = expiring(Some("2026-01-01T12:00:00Z"));
        assert_eq!(at_noon.seconds_left(now), Some(7200));
        assert!(!at_noon.has_expired(now));
        let at_nine = expiring(Some("2026-01-01T09:00:00Z"));
        assert_eq!(at_nine.seconds_left(now), Some(-3600));
        assert!(at_nine.has_expired(now));
        assert!(expiring(Some("2026-01-01T10:00:00Z")).has_expired(now));
        for never in [expiring(None), expiring(Some("soon"))] {
            assert_eq!(never.seconds_left(now), None);
            assert!(!never.has_expired(now));
        }
    }
}
