//! The AWS options every EC2 command takes: `--region` and `--profile`
//! over the `[ec2]` table.

use image_provision_playbooks::validate::shown;
use image_provision_provision::AwsOptions;

use super::*;
use crate::args::AwsArgs;
use crate::config::Ec2Config;
use crate::errors::UsageError;

pub(super) fn check_region_name(region: &str) -> bool {
    image_provision_provision::check_region(region).is_ok()
}

pub fn unknown_region(region: &str) -> UsageError {
    UsageError::new(format!("unknown AWS region {}", shown(region)))
        .hint(format!("use one of: {}", image_provision_provision::KNOWN_REGIONS.join(", ")))
}

/// --region and --profile over the file's, every region checked.
pub(super) fn aws_options(args: &AwsArgs, file: &Ec2Config, hooks: &TestHooks) -> Result<AwsOptions, UsageError> {
    for r in args.region.iter().chain(file.region.iter()) {
        image_provision_provision::check_region(r).map_err(|_| unknown_region(r))?;
    }
    for p in args.profile.iter().chain(file.profile.iter()) {
        check_profile(p)?;
    }
    Ok(AwsOptions {
        region: args.region.clone(),
        fallback_region: file.region.clone(),
        profile: args.profile.clone(),
        fallback_profile: file.profile.clone(),
        test_kill_after_calls: hooks.kill_after_calls,
    })
}

/// An AWS profile's name, as it stands in ~/.aws/config's `[profile NAME]`.
pub(super) fn check_profile(p: &str) -> Result<(), UsageError> {
    let ok = !p.is_empty()
        && p.len() <= 128
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+=,@".contains(&b))
        && !p.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!("--profile {} is not an AWS profile name", shown(p)))
            .hint("give the name of a profile in ~/.aws/config (`aws configure list-profiles` lists them)"))
    }
}
