//! The Elastic Load Balancing (v2) and ACM calls a fleet makes, as plain data.

use serde::Serialize;

use crate::{Result, Tag};

/// An Application Load Balancer.
#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    /// Its public DNS name (`NAME-123.us-east-1.elb.amazonaws.com`).
    pub dns_name: String,
    /// The Route 53 zone its DNS name lives in: an alias record names it.
    pub canonical_zone_id: String,
    /// `provisioning`, `active`, `failed`, ...
    pub state: String,
    pub vpc_id: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub tags: Vec<Tag>,
}

/// What a listener does with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ListenerAction {
    /// To the target group.
    Forward { target_group_arn: String },
    /// A permanent redirect to the same URL over HTTPS.
    RedirectToHttps,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub arn: String,
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// With HTTPS: the certificate it serves.
    pub certificate_arn: Option<String>,
    pub action: Option<ListenerAction>,
}

/// A listener to create.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerSpec {
    pub port: u16,
    pub protocol: String,
    pub certificate_arn: Option<String>,
    /// ELB's TLS policy, with HTTPS.
    pub ssl_policy: Option<String>,
    pub action: ListenerAction,
}

/// One registered target's health as the balancer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetHealth {
    pub instance_id: String,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`.
    pub state: String,
    /// Why, when not healthy (`Target.ResponseCodeMismatch`, ...).
    pub reason: Option<String>,
}

/// The target group's health check.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_secs: i32,
    pub timeout_secs: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
}

/// An ACM certificate, with the DNS record that validates it.
#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    pub arn: String,
    pub domain: String,
    /// `PENDING_VALIDATION`, `ISSUED`, `FAILED`, `EXPIRED`, ...
    pub status: String,
    /// The CNAME ACM checks: (name, value), both fully qualified.
    pub validation_record: Option<(String, String)>,
    /// The listeners (their load balancers) that serve it.
    pub in_use_by: Vec<String>,
    /// Its tags, where the call that found it read them (empty otherwise).
    pub tags: Vec<Tag>,
}

/// The Elastic Load Balancing v2 and ACM APIs as a fleet uses them.
/// Implemented by [`crate::SdkApi`].
#[allow(async_fn_in_trait)]
pub trait BalancerApi {
    /// Load balancers whose tag `key` is `value`.
    async fn load_balancers_tagged(&self, key: &str, value: &str) -> Result<Vec<LoadBalancer>>;
    async fn load_balancer(&self, arn: &str) -> Result<Option<LoadBalancer>>;
    /// An internet-facing application load balancer in these subnets (two
    /// zones at least), tagged at creation.
    async fn create_load_balancer(
        &self,
        name: &str,
        subnet_ids: &[String],
        security_group_id: &str,
        tags: &[Tag],
    ) -> Result<LoadBalancer>;
    async fn delete_load_balancer(&self, arn: &str) -> Result<()>;

    async fn target_groups_tagged(&self, key: &str, value: &str) -> Result<Vec<TargetGroup>>;
    /// HTTP on port 80 to instances, with this health check and
    /// deregistration delay, tagged at creation.
    async fn create_target_group(
        &self,
        name: &str,
        vpc_id: &str,
        health: &HealthCheck,
        deregistration_delay_secs: u32,
        tags: &[Tag],
    ) -> Result<TargetGroup>;
    async fn delete_target_group(&self, arn: &str) -> Result<()>;
    async fn register_target(&self, target_group_arn: &str, instance_id: &str) -> Result<()>;
    async fn deregister_target(&self, target_group_arn: &str, instance_id: &str) -> Result<()>;
    async fn target_health(&self, target_group_arn: &str) -> Result<Vec<TargetHealth>>;

    async fn listeners(&self, load_balancer_arn: &str) -> Result<Vec<Listener>>;
    async fn create_listener(&self, load_balancer_arn: &str, spec: &ListenerSpec) -> Result<Listener>;
    async fn delete_listener(&self, arn: &str) -> Result<()>;

    /// Certificates whose tag `key` is `value`.
    async fn certificates_tagged(&self, key: &str, value: &str) -> Result<Vec<Certificate>>;
    async fn certificate(&self, arn: &str) -> Result<Option<Certificate>>;
    /// A DNS-validated certificate for `domain`; a repeated `token` within
    /// an hour returns the same certificate.
    async fn request_certificate(&self, domain: &str, token: &str, tags: &[Tag]) -> Result<String>;
    async fn delete_certificate(&self, arn: &str) -> Result<()>;
}
