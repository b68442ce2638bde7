//! The one place where errors become what a person reads: the message, then
//! what to do about it, and the exit code (2 usage or configuration, 1 a
//! failure while acting).

use std::fmt;

use image_provision_provision::{AwsError, ConnectError, Error as Ec2Error};

/// Bad flags, configuration or input: exit code 2, nothing was changed.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    pub hint: Option<String>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError { message: message.into(), hint: None }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// A failure that already carries its advice.
#[derive(Debug)]
pub struct Advised {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Advised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Advised {}

const QUOTA_URL: &str = "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas";

/// What to do about an AWS error, by its code.
pub fn aws_hint(e: &AwsError, instance_type: Option<&str>) -> Option<String> {
    let code = e.code.as_deref()?;
    let itype = instance_type.unwrap_or("the instance type");
    Some(match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => format!(
            "your AWS identity may not call ec2:{}; ask your AWS administrator to allow it \
             (decode the message with `aws sts decode-authorization-message` for details)",
            e.action
        ),
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "RequestExpired" => {
            "AWS rejected the credentials: check them with `aws sts get-caller-identity`, \
             refresh an SSO session with `aws sso login`, or pick another --profile"
                .into()
        }
        "VcpuLimitExceeded" | "InstanceLimitExceeded" | "MaxSpotInstanceCountExceeded" => format!(
            "{itype} needs vCPU quota: a g5.xlarge needs 4 vCPUs of the \"Running On-Demand G and VT instances\" \
             quota (L-DB2E81BA; spot: \"All G and VT Spot Instance Requests\", L-3819A6DF). \
             Request an increase at {QUOTA_URL} or with `aws service-quotas request-service-quota-increase \
             --service-code ec2 --quota-code L-DB2E81BA --desired-value 8`, or use another region (--region)"
        ),
        "RequestLimitExceeded" | "Throttling" => {
            "AWS throttled the requests even after retries; wait a minute and run the command again".into()
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" => {
            "check the AMI id and the region, or leave out --ami to use the newest Canonical Ubuntu image".into()
        }
        "InvalidSubnetID.NotFound" => "check the --subnet id and that it is in this region".into(),
        "InvalidParameterValue" | "InvalidParameterCombination" => {
            format!("check the options given for {itype} (instance type, volume, subnet)")
        }
        "OptInRequired" => "this account is not subscribed to the region or the AMI; opt in or use another".into(),
        _ => return None,
    })
}

/// A provision error as message + advice.
pub fn ec2_advice(e: &Ec2Error, instance_type: Option<&str>) -> Option<String> {
    match e {
        Ec2Error::NoDefaultVpc => Some(
            "create one with `aws ec2 create-default-vpc`, or pass --subnet with a public subnet of another VPC".into(),
        ),
        Ec2Error::ImageNotFound(_) => {
            Some("check the AMI id and the region, or leave out --ami to use the newest Canonical Ubuntu image".into())
        }
        Ec2Error::NoImage { .. } => Some("pass --ami with an image id, or try another region".into()),
        Ec2Error::SubnetNotFound(_) => Some("check the --subnet id and that it is in this region".into()),
        Ec2Error::NoCapacity { .. } => Some(
            "AWS has no spare capacity for this type in the zones tried: run again later, pick another --region, \
             or another --instance-type"
                .into(),
        ),
        Ec2Error::Timeout { .. } => Some(
            "the instance may still be booting: run the same command again to keep waiting (it reuses the instance), \
             or look at its console output in the EC2 console"
                .into(),
        ),
        Ec2Error::InstanceFailed { .. } => Some(
            "start it again in the EC2 console, or remove it with `image-provision ec2 destroy NAME` and create it anew"
                .into(),
        ),
        _ => e.aws().and_then(|a| aws_hint(a, instance_type)),
    }
}

pub fn connect_error(e: ConnectError) -> anyhow::Error {
    match e {
        ConnectError::UnknownRegion(r) => crate::config::unknown_region(&r).into(),
        ConnectError::NoRegion => UsageError::new("no AWS region is set")
            .hint("pass --region, set AWS_REGION, put region in the config file, or set one in your AWS profile")
            .into(),
        ConnectError::NoCredentials(why) => Advised {
            message: format!("no AWS credentials found ({why})"),
            hint: "configure them as for the aws CLI: `aws configure`, `aws sso login --profile NAME` with \
                   --profile NAME, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
                .into(),
        }
        .into(),
    }
}

/// Print an error for a person; return the exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if let Some(u) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {}", u.message);
        if let Some(h) = &u.hint {
            eprintln!("  hint: {h}");
        }
        return 2;
    }
    eprintln!("error: {err:#}");
    if let Some(a) = err.downcast_ref::<Advised>() {
        eprintln!("  hint: {}", a.hint);
    }
    1
}
