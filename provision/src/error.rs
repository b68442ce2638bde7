use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error AWS returned (or the SDK raised before AWS could answer).
#[derive(Debug, Clone)]
pub struct AwsError {
    /// The EC2 action, e.g. `RunInstances`, or another service's with its
    /// prefix, e.g. `route53:GetChange`.
    pub action: &'static str,
    /// The AWS error code, e.g. `UnauthorizedOperation`; `None` when the
    /// request never got an answer (network, credentials).
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.action, self.message),
            None => write!(f, "{} failed: {}", self.action, self.message),
        }
    }
}

impl AwsError {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Aws(AwsError),

    #[error("no AMI matches {pattern} (owner {owner}, x86_64, available) in this region")]
    NoImage { owner: String, pattern: String },

    #[error("AMI {0} does not exist in this region or is not visible to this account")]
    ImageNotFound(String),

    #[error("this region has no default VPC")]
    NoDefaultVpc,

    #[error("subnet {0} does not exist in this region")]
    SubnetNotFound(String),

    #[error("VPC {0} has no subnets to launch into")]
    NoSubnets(String),

    #[error("no capacity for {instance_type} in any zone tried ({}): {last}", zones.join(", "))]
    NoCapacity { instance_type: String, zones: Vec<String>, last: AwsError },

    #[error("instance {instance_id} did not {what} within {waited_secs} s (last seen: {last})")]
    Timeout { instance_id: String, what: &'static str, waited_secs: u64, last: String },

    #[error("Route 53 change {change_id} was not on every name server (INSYNC) within {waited_secs} s")]
    DnsNotInSync { change_id: String, waited_secs: u64 },

    #[error("instance {0} disappeared while waiting for it")]
    InstanceVanished(String),

    #[error("no server named {0} exists in this region (no live instance tagged image-provision:name={0} and managed)")]
    NoServer(String),

    #[error("server {name} has more than one live instance ({}): image-provision acts on one only", ids.join(", "))]
    ManyInstances { name: String, ids: Vec<String> },

    #[error("instance {instance_id} is {state}: it is being (or was) terminated")]
    Ending { instance_id: String, state: String },

    #[error("no image named {0} made by image-provision in this region (ami list shows them)")]
    NoOwnImage(String),

    #[error("the image name {name} is taken by {image_id}, which image-provision did not make: it is left alone")]
    ImageNameTaken { name: String, image_id: String },

    #[error("image {image_id} is {state}: EC2 could not make it")]
    ImageFailed { image_id: String, state: String },

    #[error("image {image_id} did not {what} within {waited_secs} s (last seen: {last})")]
    ImageTimeout { image_id: String, what: &'static str, waited_secs: u64, last: String },

    #[error("server {name}'s instance {instance_id} is {state}: a bake needs it running")]
    NotRunning { name: String, instance_id: String, state: String },

    #[error("instance {instance_id} entered state {state} while waiting for it to run")]
    InstanceFailed { instance_id: String, state: String },

    #[error("a fleet's balancer needs two availability zones; VPC {vpc_id} has subnets in {}", if zones.is_empty() { "none".to_string() } else { zones.join(", ") })]
    FleetZones { vpc_id: String, zones: Vec<String> },

    #[error("gave up waiting for {what} after {waited_secs} s (last seen: {last})")]
    FleetTimeout { what: String, waited_secs: u64, last: String },

    #[error("load balancer {0} failed or vanished while it was being made")]
    FleetBalancerFailed(String),

    #[error("ACM's certificate for {domain} is {status}: it will not be issued")]
    FleetCertificate { domain: String, status: String },

    #[error("{what} exists but is not tagged as this fleet's: it is left alone")]
    NotOurs { what: String },

    #[error(
        "server {name} serves in fleet {fleet}: change it with `fleet create` or `fleet scale`, or remove it with `fleet destroy`"
    )]
    FleetServer { name: String, fleet: String },
}

impl Error {
    /// The AWS error behind this one, if any.
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            Error::Aws(e) | Error::NoCapacity { last: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        Error::Aws(e)
    }
}
