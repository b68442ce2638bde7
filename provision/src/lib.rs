//! The EC2 half of image-provision: find the AMI, make the security group and
//! key pair, launch the instance, give it an Elastic IP and its name in
//! Route 53, wait for SSH, list, stop, start and destroy managed servers.
//!
//! Everything goes through the [`Ec2Api`] and [`Route53Api`] traits so that
//! one flow serves both a real run ([`SdkApi`]) and `--dry-run`
//! ([`DryRunApi`], which prints each call and makes none). The cloud's tags are the source of truth: nothing here
//! depends on local state to find what it made.

pub mod ami;
mod api;
mod connect;
pub mod cost;
mod create;
mod destroy;
pub mod dns;
mod dry;
mod error;
pub mod fleet;
mod poll;
mod sdk;
mod spec;
mod stopstart;
pub mod tags;

pub use api::*;
pub use connect::{AwsOptions, ConnectError, KNOWN_REGIONS, check_region, connect};
pub use create::{CreateReport, Created, SshReady, associate_elastic_ip, create, wait_for_ssh};
pub use destroy::{BadlyNamed, DestroyReport, ExpiredSweep, destroy, destroy_expired, expired};
pub use dry::DryRunApi;
pub use error::{AwsError, Error, Result};
pub use sdk::SdkApi;
pub use spec::{BaseImage, CreateSpec, KeySource, UbuntuRelease, gpu_of};
pub use stopstart::{StartReport, StopReport, start, stop, the_instance};

/// List managed servers, newest first.
pub async fn list<A: Ec2Api>(api: &A) -> Result<Vec<Instance>> {
    let mut all = api.find_instances(None).await?;
    all.sort_by(|a, b| b.launch_time.cmp(&a.launch_time));
    Ok(all)
}
