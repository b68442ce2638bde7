//! `ec2 create`, `ec2 destroy`, `ec2 stop` and `ec2 start`: the instance's
//! own options (image, type, volume, network, lifetime) over the `[ec2]`
//! table, and the host steps `create` runs once the instance answers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use image_provision_playbooks::settings::{self, Config, Llm};
use image_provision_playbooks::validate::shown;
use image_provision_provision::AwsOptions;

use super::*;
use crate::args::{CreateArgs, DestroyArgs, ServerArgs, StartArgs, StopArgs, Ubuntu};
use crate::config::{ConfigFile, Ec2Config};
use crate::errors::UsageError;

pub const DEFAULT_INSTANCE_TYPE: &str = "g5.xlarge";
pub const DEFAULT_VOLUME_SIZE: i32 = 1000;
pub const DEFAULT_VOLUME_TYPE: &str = "gp3";
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);
const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

/// A whole-number `ec2 create` option, by flag and by `[ec2]` key, and the
/// values EBS takes for it.
pub struct WholeNumber {
    pub flag: &'static str,
    pub key: &'static str,
    /// What the value is, for the message: "a size".
    pub what: &'static str,
    pub unit: &'static str,
    pub range: std::ops::RangeInclusive<i32>,
}

/// A root volume: EBS's limits for gp2/gp3 (io1/io2/st1/sc1 take as much).
pub const VOLUME_SIZE: WholeNumber =
    WholeNumber { flag: "--volume-size", key: "volume_size", what: "a size", unit: "GiB", range: 8..=65536 };

/// gp3's provisioned throughput, above its baseline of 125 MiB/s.
pub const VOLUME_THROUGHPUT: WholeNumber = WholeNumber {
    flag: "--volume-throughput",
    key: "volume_throughput",
    what: "a throughput",
    unit: "MiB/s",
    range: 125..=1000,
};

/// gp3's provisioned IOPS, above its baseline of 3000.
pub const VOLUME_IOPS: WholeNumber =
    WholeNumber { flag: "--volume-iops", key: "volume_iops", what: "an IOPS rate", unit: "IOPS", range: 3000..=16000 };

/// What a gp3 volume has without --volume-iops: its throughput limit is
/// counted from this.
pub(super) const GP3_BASELINE_IOPS: i32 = 3000;
/// gp3: at most 0.25 MiB/s of throughput per provisioned IOPS.
pub(super) const GP3_IOPS_PER_MIBPS: i32 = 4;
/// gp3: at most 500 IOPS per GiB of volume size.
pub(super) const GP3_IOPS_PER_GIB: i32 = 500;

/// --volume-throughput and --volume-iops: gp3's own, and within what gp3
/// allows together with each other and the volume's size (EBS would refuse
/// RunInstances otherwise, after the key pair and security group were made).
pub(super) fn gp3_performance(
    args: &CreateArgs,
    f: &Ec2Config,
    volume_type: &str,
    volume_size: i32,
) -> Result<(Option<i32>, Option<i32>), UsageError> {
    let throughput = VOLUME_THROUGHPUT.resolve(args.volume_throughput.as_ref(), f.volume_throughput)?;
    let iops = VOLUME_IOPS.resolve(args.volume_iops.as_ref(), f.volume_iops)?;
    if throughput.is_none() && iops.is_none() {
        return Ok((None, None));
    }
    if volume_type != "gp3" {
        return Err(UsageError::new(format!(
            "--volume-throughput and --volume-iops are for gp3 volumes, and the volume type is {volume_type}"
        ))
        .hint("leave them out, or use --volume-type gp3"));
    }
    let provisioned = iops.unwrap_or(GP3_BASELINE_IOPS);
    if let Some(t) = throughput
        && t > provisioned / GP3_IOPS_PER_MIBPS
    {
        return Err(UsageError::new(format!(
            "--volume-throughput {t} needs {} IOPS (gp3 gives at most 1 MiB/s per {GP3_IOPS_PER_MIBPS} IOPS), and the volume has {provisioned}",
            t * GP3_IOPS_PER_MIBPS
        ))
        .hint(format!("add --volume-iops {}, or give at most {} MiB/s", t * GP3_IOPS_PER_MIBPS, provisioned / GP3_IOPS_PER_MIBPS)));
    }
    if let Some(i) = iops
        && i64::from(i) > i64::from(volume_size) * i64::from(GP3_IOPS_PER_GIB)
    {
        return Err(UsageError::new(format!(
            "--volume-iops {i} is more than gp3's {GP3_IOPS_PER_GIB} IOPS per GiB of the {volume_size} GiB volume"
        ))
        .hint(format!(
            "give at most {} IOPS, or a --volume-size of at least {} GiB",
            volume_size * GP3_IOPS_PER_GIB,
            (i + GP3_IOPS_PER_GIB - 1) / GP3_IOPS_PER_GIB
        )));
    }
    Ok((throughput, iops))
}

impl WholeNumber {
    fn refused(&self, given: String) -> UsageError {
        let (from, to) = (self.range.start(), self.range.end());
        UsageError::new(format!("{given} is not {}: give whole {} from {from} to {to}", self.what, self.unit))
    }

    /// The flag's value over the config file's; `None` when neither is set.
    /// The flag comes as text (so that `-5` reaches this check rather than
    /// clap's "unexpected argument"), the file's as TOML's integer.
    fn resolve(&self, flag: Option<&String>, file: Option<i64>) -> Result<Option<i32>, UsageError> {
        let in_range = |n: i64| i32::try_from(n).ok().filter(|n| self.range.contains(n));
        match (flag, file) {
            (Some(text), _) => text
                .trim()
                .parse()
                .ok()
                .and_then(in_range)
                .map(Some)
                .ok_or_else(|| self.refused(format!("{} {}", self.flag, plain(text)))),
            (None, Some(n)) => {
                in_range(n).map(Some).ok_or_else(|| self.refused(format!("config file: [ec2] {} = {n}", self.key)))
            }
            (None, None) => Ok(None),
        }
    }
}
/// A KMS key as EC2's KmsKeyId takes it: a key id (a UUID, or `mrk-` and 32
/// hex digits for a multi-Region key), `alias/NAME`, or the ARN of either.
pub(super) fn check_kms_key(key: &str) -> Result<(), UsageError> {
    let key_id = |k: &str| {
        let uuid = k.len() == 36
            && k.bytes()
                .enumerate()
                .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
        let mrk = k.strip_prefix("mrk-").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        uuid || mrk
    };
    let alias = |k: &str| {
        k.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty() && n.len() <= 250 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        })
    };
    let arn = |k: &str| {
        let parts: Vec<&str> = k.splitn(6, ':').collect();
        parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "kms"
            && check_region_name(parts[3])
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && (parts[5].strip_prefix("key/").is_some_and(key_id) || alias(parts[5]))
    };
    if key_id(key) || alias(key) || arn(key) {
        return Ok(());
    }
    Err(UsageError::new(format!("--kms-key {} is not a KMS key", shown(key))).hint(
        "give a key id (1234abcd-12ab-34cd-56ef-1234567890ab), alias/NAME, or the ARN of either; \
         leave it out for the account's default EBS key",
    ))
}

pub(super) fn check_cidr(cidr: &str) -> Result<(), UsageError> {
    let bad = || {
        UsageError::new(format!("--ssh-cidr {} is not a CIDR block", shown(cidr)))
            .hint("write it like 203.0.113.7/32 or 2001:db8::/48")
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if len > if ip.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok(())
}

/// An EC2 id: `prefix` and 8 or 17 lowercase hex digits.
pub(super) fn is_resource_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An EC2 instance type: FAMILY.SIZE, lowercase letters, digits and hyphens.
pub(super) fn check_instance_type(t: &str) -> Result<(), UsageError> {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = t.len() <= 32 && t.split_once('.').is_some_and(|(family, size)| word(family) && word(size));
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!("--instance-type {} is not an EC2 instance type", shown(t)))
            .hint("instance types look like g5.xlarge or g6e.2xlarge"))
    }
}

/// `ec2 create`, resolved.
#[derive(Debug, Clone)]
pub struct CreateSettings {
    pub name: String,
    pub aws: AwsOptions,
    pub ami: Option<String>,
    pub ubuntu: Ubuntu,
    pub base_image: image_provision_provision::BaseImage,
    pub instance_type: String,
    pub volume_size: i32,
    pub volume_type: String,
    /// gp3 only: MiB/s above the baseline; None: EBS's default.
    pub volume_throughput: Option<i32>,
    /// gp3 only; None: EBS's default.
    pub volume_iops: Option<i32>,
    pub subnet: Option<String>,
    /// The root volume's KMS key; None: the account's default EBS key.
    pub kms_key: Option<String>,
    pub ssh_cidrs: Vec<String>,
    /// --ssh-cidr (or the config file's ssh_cidr) was given, not the default.
    pub ssh_cidrs_asked: bool,
    pub ssh_key: Option<PathBuf>,
    pub ssh_user: String,
    pub spot: bool,
    pub spot_only: bool,
    pub ttl: Option<Duration>,
    pub ready_timeout: Duration,
    /// Give the server a tagged Elastic IP (with --domain, unless --no-elastic-ip).
    pub elastic_ip: bool,
    /// Make Route 53 records for this host name (--domain, unless --no-dns).
    pub dns_domain: Option<String>,
    /// And for the web UI's (--llm-webui, with dns_domain).
    pub webui_dns_domain: Option<String>,
    pub no_bootstrap: bool,
    pub dry_run: bool,
    pub json: bool,
    /// The host steps, once the instance answers.
    pub steps: Config,
    /// Test-only: where SSH goes instead of the instance's address.
    pub ssh_addr: Option<SocketAddr>,
    /// A fleet's server: the fleet's name (tagged on the instance).
    pub fleet: Option<String>,
    /// A fleet's server: its balancer's group, the only source of web traffic.
    pub web_from_group: Option<String>,
    /// A fleet's server: progress lines named after the server, no summary
    /// (the fleet prints one for all).
    pub quiet: bool,
}

pub(super) fn create(args: &CreateArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<CreateSettings, UsageError> {
    let f = &file.ec2;
    check_name(&args.name)?;
    let ubuntu = match (&args.ubuntu, &f.ubuntu) {
        (Some(u), _) => *u,
        (None, Some(s)) => Ubuntu::from_str(s, false).map_err(|_| {
            UsageError::new(format!("config file: ubuntu = {} is not supported", shown(s)))
                .hint("use \"22.04\" or \"24.04\"")
        })?,
        (None, None) => Ubuntu::Jammy,
    };
    let ami = args.ami.clone().or_else(|| f.ami.clone());
    let base_image = match args.base_image.as_ref().or(f.base_image.as_ref()).map(String::as_str) {
        None | Some("ubuntu") => image_provision_provision::BaseImage::Ubuntu,
        Some("dlami") if ami.is_some() => {
            return Err(UsageError::new("--base-image dlami with --ami: two choices of image")
                .hint("give one: --ami ID launches that image, --base-image dlami the newest Deep Learning Base AMI"));
        }
        Some("dlami") => image_provision_provision::BaseImage::Dlami,
        Some(other) => {
            return Err(UsageError::new(format!("--base-image {} is not a base image", shown(other)))
                .hint("give ubuntu (Canonical's Ubuntu server image) or dlami (AWS's Deep Learning Base GPU AMI)"));
        }
    };
    if let Some(ami) = &ami
        && !is_resource_id(ami, "ami-")
        && (ami.starts_with("ami-") || !image_provision_provision::tags::is_image_name(ami))
    {
        return Err(UsageError::new(format!("{} is not an AMI id or an image name", shown(ami))).hint(
            "AMI ids look like ami-0123456789abcdef0; the names of images `ami bake` made, as `ami list` shows \
             them, like image-2026.12.07",
        ));
    }
    let subnet = args.subnet.clone().or_else(|| f.subnet.clone());
    if let Some(subnet) = &subnet
        && !is_resource_id(subnet, "subnet-")
    {
        return Err(UsageError::new(format!("--subnet {} is not a subnet id", shown(subnet)))
            .hint("subnet ids look like subnet-0123456789abcdef0 (`aws ec2 describe-subnets` lists them)"));
    }
    let volume_size = VOLUME_SIZE.resolve(args.volume_size.as_ref(), f.volume_size)?.unwrap_or(DEFAULT_VOLUME_SIZE);
    let volume_type = args.volume_type.clone().or_else(|| f.volume_type.clone()).unwrap_or(DEFAULT_VOLUME_TYPE.into());
    if !VOLUME_TYPES.contains(&volume_type.as_str()) {
        return Err(UsageError::new(format!("volume type {} is not an EBS volume type", shown(&volume_type)))
            .hint(format!("use one of {}", VOLUME_TYPES.join(", "))));
    }
    let (volume_throughput, volume_iops) = gp3_performance(args, f, &volume_type, volume_size)?;
    let ssh_cidrs_asked = !args.ssh_cidr.is_empty() || f.ssh_cidr.is_some();
    let ssh_cidrs = if !args.ssh_cidr.is_empty() {
        args.ssh_cidr.clone()
    } else {
        f.ssh_cidr.clone().unwrap_or_else(|| vec!["0.0.0.0/0".into(), "::/0".into()])
    };
    if ssh_cidrs.is_empty() {
        return Err(UsageError::new("ssh_cidr = [] in the config file leaves SSH closed to everyone")
            .hint("name at least one CIDR block, e.g. ssh_cidr = [\"203.0.113.7/32\"]"));
    }
    let kms_key = args.kms_key.clone().or_else(|| f.kms_key.clone());
    if let Some(key) = &kms_key {
        check_kms_key(key)?;
    }
    for c in &ssh_cidrs {
        check_cidr(c)?;
    }
    let spot = on(args.spot, f.spot);
    let spot_only = on(args.spot_only, f.spot_only);
    if spot_only && !spot {
        return Err(UsageError::new("--spot-only needs --spot"));
    }
    let ttl = args.ttl.as_ref().or(f.ttl.as_ref()).map(|t| duration("--ttl", t)).transpose()?;
    let ready_timeout = duration_or(
        "--ready-timeout",
        args.ready_timeout.as_ref().or(f.ready_timeout.as_ref()),
        DEFAULT_READY_TIMEOUT,
    )?;
    let ssh_user = ssh_user(args.ssh_user.as_ref(), f.ssh_user.as_ref())?;
    // Checked here as well as in the host steps: with --no-stack those do
    // not read it, and the name still gets its address and record.
    let domain = domain(args.steps.domain.as_ref(), file.host.domain.as_ref())?;
    let aws = aws_options(&args.aws, f, hooks)?;
    // --no-bootstrap: the steps do not run now, so no LLM need be chosen.
    let steps = host_steps(&args.steps, &file.host, hooks, !args.no_bootstrap)?;
    if spot && matches!(steps.autostop, settings::Autostop::After(_)) {
        return Err(UsageError::new(
            "--autostop with --spot: a one-time spot instance cannot be stopped, only terminated",
        )
        .hint("drop --spot for a server that stops itself when idle, or use --ttl DURATION to end a spot server"));
    }
    let instance_type =
        args.instance_type.clone().or_else(|| f.instance_type.clone()).unwrap_or(DEFAULT_INSTANCE_TYPE.into());
    check_instance_type(&instance_type)?;
    // A local LLM that cannot fit this instance's GPU stops before anything
    // is launched.
    if let Some(img) = steps.image.as_ref().filter(|i| i.llm == Llm::Local)
        && let Some((gpu, gib)) = image_provision_provision::gpu_of(&instance_type)
    {
        let spec = image_provision_playbooks::steps::llm::spec(img.local_llm.runtime);
        image_provision_playbooks::steps::llm::size(spec, gib, img.local_llm.model.as_deref()).map_err(|e| {
            UsageError::new(format!("a local LLM ({}) on a {instance_type} ({gpu}): {e}", spec.name))
                .hint(image_provision_playbooks::steps::llm::TOO_SMALL_HINT)
        })?;
    }
    Ok(CreateSettings {
        name: args.name.clone(),
        aws,
        ami,
        ubuntu,
        base_image,
        instance_type,
        volume_size,
        volume_type,
        volume_throughput,
        volume_iops,
        subnet,
        kms_key,
        ssh_cidrs,
        ssh_cidrs_asked,
        ssh_key: args.ssh_key.clone().or_else(|| f.ssh_key.clone()),
        ssh_user,
        spot,
        spot_only,
        ttl,
        ready_timeout,
        elastic_ip: domain.is_some() && !on(args.no_elastic_ip, f.no_elastic_ip),
        webui_dns_domain: steps
            .image
            .as_ref()
            .and_then(|i| i.webui.as_ref())
            .map(|w| w.host.clone())
            .filter(|_| domain.is_some() && !on(args.no_dns, f.no_dns)),
        dns_domain: domain.filter(|_| !on(args.no_dns, f.no_dns)),
        no_bootstrap: args.no_bootstrap,
        dry_run: args.dry_run,
        json: args.json,
        steps,
        ssh_addr: hooks.ssh_addr,
        fleet: None,
        web_from_group: None,
        quiet: false,
    })
}

/// `ec2 destroy`, resolved.
#[derive(Debug, Clone)]
pub struct DestroySettings {
    pub name: Option<String>,
    pub aws: AwsOptions,
    pub expired: bool,
    pub yes: bool,
    pub dry_run: bool,
    pub json: bool,
}

pub(super) fn destroy(a: &DestroyArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<DestroySettings, UsageError> {
    if let Some(name) = &a.name {
        check_name(name)?;
    }
    Ok(DestroySettings {
        name: a.name.clone(),
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        expired: a.expired,
        yes: a.yes,
        dry_run: a.dry_run,
        json: a.json,
    })
}

/// How long `ec2 stop` waits for the instance to stop, by default.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(600);

/// `ec2 stop`, resolved.
#[derive(Debug, Clone)]
pub struct StopSettings {
    pub name: String,
    pub aws: AwsOptions,
    pub timeout: Duration,
    pub json: bool,
}

pub(super) fn stop(a: &StopArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<StopSettings, UsageError> {
    check_name(&a.name)?;
    Ok(StopSettings {
        name: a.name.clone(),
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        timeout: duration_or("--stop-timeout", a.stop_timeout.as_ref(), DEFAULT_STOP_TIMEOUT)?,
        json: a.json,
    })
}

/// `ec2 start`, resolved: the server as verify reaches it by NAME.
pub struct StartSettings {
    pub name: String,
    pub aws: AwsOptions,
    pub ready_timeout: Duration,
    pub health_timeout: Duration,
    /// Wait for the stack and verify it (not --no-verify).
    pub verify: bool,
    pub server: ServerSettings,
    /// Test-only: where SSH goes instead of the instance's address.
    pub ssh_addr: Option<SocketAddr>,
}

pub(super) fn start(a: &StartArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<StartSettings, UsageError> {
    check_name(&a.name)?;
    let as_verify = ServerArgs {
        name: Some(a.name.clone()),
        host: None,
        identity: a.identity.clone(),
        accept_new_host_key: false,
        ssh_user: a.ssh_user.clone(),
        aws: a.aws.clone(),
        domain: a.domain.clone(),
        base_dir: a.base_dir.clone(),
        no_gpu: a.no_gpu,
        no_stack: a.no_stack,
        no_request: a.no_request,
        json: a.json,
    };
    let server = server(&as_verify, file, hooks)?;
    let ready_timeout = duration_or(
        "--ready-timeout",
        a.ready_timeout.as_ref().or(file.ec2.ready_timeout.as_ref()),
        DEFAULT_READY_TIMEOUT,
    )?;
    let (_, health_timeout) = stack_timeouts(None, a.health_timeout.as_ref(), &file.host)?;
    Ok(StartSettings {
        name: a.name.clone(),
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        ready_timeout,
        health_timeout,
        verify: !a.no_verify,
        server,
        ssh_addr: hooks.ssh_addr,
    })
}
