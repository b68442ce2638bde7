//! The one place where errors become what a person reads. Errors say what
//! happened; each kind's `hint()` says what to do ([`hint`] finds it along
//! the error's chain); [`report`] prints both and picks the exit code (2 for
//! usage or configuration, 1 for a failure while acting).

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

/// A failure while acting, with what to do about it.
#[derive(Debug)]
pub struct Failed {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

impl Failed {
    /// `message`, with the hint of the SSH error `e` (if it has one) before
    /// `then`.
    pub fn remote(message: String, e: &image_provision_remote::Error, then: &str) -> Failed {
        let hint = match e.hint() {
            Some(h) => format!("{h}; {then}"),
            None => then.to_string(),
        };
        Failed { message, hint }
    }
}

/// An EC2 error, with the instance type it was about (the quota advice
/// names it).
#[derive(Debug)]
pub struct Ec2Failed {
    pub error: Ec2Error,
    pub instance_type: Option<String>,
}

impl fmt::Display for Ec2Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Ec2Failed {}

/// A provision error, kept with the instance type for its hint.
pub fn ec2_error(error: Ec2Error, instance_type: Option<&str>) -> anyhow::Error {
    Ec2Failed { error, instance_type: instance_type.map(str::to_string) }.into()
}

const QUOTA_URL: &str = "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas";

/// What to do about an AWS error, by its code.
pub fn aws_hint(e: &AwsError, instance_type: Option<&str>) -> Option<String> {
    let code = e.code.as_deref()?;
    let itype = instance_type.unwrap_or("the instance type");
    Some(match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => format!(
            "your AWS identity may not call {}; ask your AWS administrator to allow it \
             (decode the message with `aws sts decode-authorization-message` for details)",
            if e.action.contains(':') { e.action.to_string() } else { format!("ec2:{}", e.action) }
        ),
        "AddressLimitExceeded" => "this region's Elastic IP quota (5 by default) is used up: release addresses \
             no server uses, ask for more at https://console.aws.amazon.com/servicequotas/, or pass --no-elastic-ip"
            .into(),
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

/// What to do about a provision error.
pub fn ec2_hint(e: &Ec2Error, instance_type: Option<&str>) -> Option<String> {
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
        Ec2Error::DnsNotInSync { .. } => Some(
            "Route 53 is slow to spread the change: run the same command again, which finds the server and its \
             records and waits again"
                .into(),
        ),
        Ec2Error::InstanceFailed { .. } => Some(
            "start it again in the EC2 console, or remove it with `image-provision ec2 destroy NAME` and create it anew"
                .into(),
        ),
        Ec2Error::NoServer(_) => Some(
            "check the name and the region (--region) with `image-provision ec2 list`; a server is created with \
             `image-provision ec2 create NAME`"
                .into(),
        ),
        Ec2Error::ManyInstances { .. } => Some(
            "terminate the instances that should not be there in the EC2 console, or remove them all with \
             `image-provision ec2 destroy NAME`"
                .into(),
        ),
        Ec2Error::Ending { .. } => {
            Some("it cannot be stopped or started any more: create the server anew with `ec2 create NAME`".into())
        }
        Ec2Error::FleetZones { .. } => Some(
            "a load balancer spans two availability zones at least: add a default subnet in another zone with \
             `aws ec2 create-default-subnet --availability-zone ZONE`, or use another --region"
                .into(),
        ),
        Ec2Error::FleetTimeout { .. } => Some(
            "run the same command again: it finds what was made and waits again; `image-provision fleet list` shows \
             each server's health at the balancer"
                .into(),
        ),
        Ec2Error::FleetBalancerFailed(_) | Ec2Error::FleetCertificate { .. } => Some(
            "remove the fleet with `image-provision fleet destroy NAME` and create it again; for a certificate, \
             check that the domain's zone is in Route 53 (or that its validation CNAME was made by hand) and that \
             no CAA record forbids Amazon"
                .into(),
        ),
        Ec2Error::NotOurs { .. } => Some(
            "it carries no image-provision fleet tags: remove or rename it yourself, or give the fleet another name"
                .into(),
        ),
        Ec2Error::FleetServer { .. } => Some(
            "a fleet's server serves behind its balancer: `image-provision fleet create` or `fleet scale` changes \
             it"
                .into(),
        ),
        _ => e.aws().and_then(|a| aws_hint(a, instance_type)),
    }
}

/// What to do about not reaching AWS at all.
pub fn connect_hint(e: &ConnectError) -> Option<String> {
    Some(match e {
        ConnectError::UnknownRegion(_) => {
            format!("use one of: {}", image_provision_provision::KNOWN_REGIONS.join(", "))
        }
        ConnectError::NoRegion => {
            "pass --region, set AWS_REGION, put region in the config file, or set one in your AWS profile".into()
        }
        ConnectError::NoCredentials(_) => {
            "configure them as for the aws CLI: `aws configure`, `aws sso login --profile NAME` with \
             --profile NAME, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
                .into()
        }
    })
}

/// The first hint along the error's chain.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(u) = cause.downcast_ref::<UsageError>() {
            u.hint.clone()
        } else if let Some(f) = cause.downcast_ref::<Failed>() {
            Some(f.hint.clone())
        } else if let Some(e) = cause.downcast_ref::<Ec2Failed>() {
            ec2_hint(&e.error, e.instance_type.as_deref())
        } else if let Some(e) = cause.downcast_ref::<Ec2Error>() {
            ec2_hint(e, None)
        } else if let Some(e) = cause.downcast_ref::<ConnectError>() {
            connect_hint(e)
        } else {
            cause.downcast_ref::<image_provision_remote::Error>().and_then(image_provision_remote::Error::hint)
        }
    })
}

/// Print an error for a person; return the exit code. A missing region or
/// an unknown one is the person's input (2), as is every [`UsageError`].
pub fn report(err: &anyhow::Error) -> i32 {
    let usage = err.chain().any(|c| {
        c.is::<UsageError>()
            || matches!(c.downcast_ref::<ConnectError>(), Some(ConnectError::UnknownRegion(_) | ConnectError::NoRegion))
    });
    if let Some(u) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {}", u.message);
    } else {
        eprintln!("error: {err:#}");
    }
    if let Some(h) = hint(err) {
        eprintln!("  hint: {h}");
    }
    if usage { 2 } else { 1 }
}
