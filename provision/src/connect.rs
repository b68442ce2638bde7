//! Building the EC2, Route 53 and Price List clients the way the aws CLI would: the standard chain for
//! credentials and region, with `--region` / `--profile` on top.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, ProvideCredentials, Region, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;

use crate::SdkApi;

/// Regions EC2 offers (commercial, GovCloud and China partitions), checked
/// before any call so that a typo is a usage error and not a DNS failure.
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Beats AWS_REGION and the profile's region.
    pub region: Option<String>,
    /// Used when neither `region` nor the environment names one.
    pub fallback_region: Option<String>,
    pub profile: Option<String>,
    pub fallback_profile: Option<String>,
    /// Test-only: end the process once this many AWS calls have completed
    /// ([`KillAfterCalls`]).
    pub test_kill_after_calls: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unknown AWS region {0:?}")]
    UnknownRegion(String),
    #[error("no AWS region is set")]
    NoRegion,
    #[error("no AWS credentials found: {0}")]
    NoCredentials(String),
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Check a region name before anything uses it.
pub fn check_region(region: &str) -> Result<(), ConnectError> {
    if KNOWN_REGIONS.contains(&region) { Ok(()) } else { Err(ConnectError::UnknownRegion(region.to_owned())) }
}

/// Load configuration, check the region and that credentials resolve.
pub async fn connect(opts: &AwsOptions) -> Result<(SdkApi, String), ConnectError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let profile =
        opts.profile.clone().or_else(|| if env_set("AWS_PROFILE") { None } else { opts.fallback_profile.clone() });
    if let Some(p) = &profile {
        loader = loader.profile_name(p);
    }
    let region = opts.region.clone().or_else(|| {
        if env_set("AWS_REGION") || env_set("AWS_DEFAULT_REGION") { None } else { opts.fallback_region.clone() }
    });
    if let Some(r) = &region {
        check_region(r)?;
        loader = loader.region(Region::new(r.clone()));
    }
    let config = loader.load().await;
    let region = config.region().map(|r| r.to_string()).ok_or(ConnectError::NoRegion)?;
    check_region(&region)?;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| ConnectError::NoCredentials("no credentials provider is configured".into()))?;
    if let Err(e) = provider.provide_credentials().await {
        return Err(ConnectError::NoCredentials(aws_sdk_ec2::error::DisplayErrorContext(&e).to_string()));
    }
    let mut ec2 = aws_sdk_ec2::config::Builder::from(&config);
    // Route 53 is global: a client from the same configuration reaches it
    // whatever the region.
    let mut route53 = aws_sdk_route53::config::Builder::from(&config);
    // One count for the calls of every service.
    let kill_counter = opts.test_kill_after_calls.map(|n| Arc::new(AtomicUsize::new(n)));
    if let Some(remaining) = &kill_counter {
        ec2 = ec2.interceptor(KillAfterCalls { remaining: remaining.clone() });
        route53 = route53.interceptor(KillAfterCalls { remaining: remaining.clone() });
    }
    let pricing = aws_sdk_pricing::Client::from_conf(pricing_config(&config, &region));
    let mut sts = aws_sdk_sts::config::Builder::from(&config);
    let mut elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(&config);
    let mut acm = aws_sdk_acm::config::Builder::from(&config);
    if let Some(remaining) = &kill_counter {
        sts = sts.interceptor(KillAfterCalls { remaining: remaining.clone() });
        elb = elb.interceptor(KillAfterCalls { remaining: remaining.clone() });
        acm = acm.interceptor(KillAfterCalls { remaining: remaining.clone() });
    }
    Ok((
        SdkApi::new(
            aws_sdk_ec2::Client::from_conf(ec2.build()),
            aws_sdk_route53::Client::from_conf(route53.build()),
            pricing,
            aws_sdk_sts::Client::from_conf(sts.build()),
            aws_sdk_elasticloadbalancingv2::Client::from_conf(elb.build()),
            aws_sdk_acm::Client::from_conf(acm.build()),
            region.clone(),
        ),
        region,
    ))
}

/// The Price List API answers in a few regions only (us-east-1 for AWS's
/// commercial regions, cn-northwest-1 for China), whatever region the
/// servers are in. Only the cost estimate asks it, and that has a price
/// table to fall back on: so short time limits and one retry, never a
/// wait that holds up a create or a list.
fn pricing_config(config: &aws_config::SdkConfig, region: &str) -> aws_sdk_pricing::Config {
    use aws_sdk_pricing::config::{retry::RetryConfig, timeout::TimeoutConfig};
    use std::time::Duration;
    let endpoint_region = if region.starts_with("cn-") { "cn-northwest-1" } else { "us-east-1" };
    aws_sdk_pricing::config::Builder::from(config)
        .region(Region::new(endpoint_region))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build()
}

/// Test-only (the command line's IMAGE_PROVISION_TEST_KILL_AFTER_CALLS=N): end the process
/// abruptly, with no clean-up, once N AWS calls have completed. The tests use
/// it to prove that a create killed at any point converges when run again.
#[derive(Debug)]
struct KillAfterCalls {
    remaining: Arc<AtomicUsize>,
}

impl Intercept for KillAfterCalls {
    fn name(&self) -> &'static str {
        "KillAfterCalls"
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            eprintln!("test hook: killed after the AWS call limit (IMAGE_PROVISION_TEST_KILL_AFTER_CALLS)");
            // 137 is what a shell reports for SIGKILL; exit() runs no destructors.
            std::process::exit(137);
        }
        Ok(())
    }
}
