//! Parse once, resolve once: the parsed arguments (flags and their
//! environment variables), the config file and the built-in defaults become
//! one checked settings value per command, here and nowhere else. Flags beat
//! the file, which beats the defaults. Every check of the person's input is
//! made before anything connects, so bad input changes nothing. The
//! test-only environment hooks are read here too, in [`TestHooks`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use image_provision_playbooks::report::ReportOptions;
use image_provision_playbooks::settings::{self, Config, ImageConfig, Llm, Profile, RepoCredentials, Upkeep};
use image_provision_playbooks::validate::{self, shown};
use image_provision_provision::AwsOptions;
use image_provision_remote::{HostKeyPolicy, Identity, Target};

use crate::args::{
    AwsArgs, BootstrapArgs, Command, CreateArgs, DestroyArgs, Ec2Command, HostStepArgs, ImageProfile, ListArgs,
    ServerArgs, StartArgs, StopArgs, Ubuntu, UpdateArgs,
};
use crate::config::{ConfigFile, Ec2Config, HostConfig};
use crate::errors::UsageError;

pub const DEFAULT_INSTANCE_TYPE: &str = "g5.xlarge";
pub const DEFAULT_VOLUME_SIZE: i32 = 1000;
pub const DEFAULT_VOLUME_TYPE: &str = "gp3";
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_SSH_USER: &str = "ubuntu";
const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

/// Test-only: send everything that goes over SSH to this address instead of
/// an EC2 instance's public IP (moto's addresses are not real).
pub const TEST_SSH_ADDR: &str = "IMAGE_PROVISION_TEST_SSH_ADDR";
/// Test-only: a test host without real Traefik and an ACME server has
/// nothing serving https://DOMAIN/, so no HTTPS health check.
pub const TEST_NO_HTTPS_HEALTH: &str = "IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH";
/// Test-only: end the process once this many AWS calls have completed.
pub const TEST_KILL_AFTER_CALLS: &str = "IMAGE_PROVISION_TEST_KILL_AFTER_CALLS";

/// The test-only environment hooks.
#[derive(Clone, Debug)]
pub struct TestHooks {
    pub ssh_addr: Option<SocketAddr>,
    pub https_check: bool,
    pub kill_after_calls: Option<usize>,
}

impl TestHooks {
    pub fn from_env() -> Result<TestHooks, UsageError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let ssh_addr = var(TEST_SSH_ADDR)
            .map(|v| {
                v.parse().map_err(|_| {
                    UsageError::new(format!("{TEST_SSH_ADDR}={} is not an address", shown(&v)))
                        .hint("write it as 127.0.0.1:2222")
                })
            })
            .transpose()?;
        Ok(TestHooks {
            ssh_addr,
            https_check: std::env::var_os(TEST_NO_HTTPS_HEALTH).is_none(),
            kill_after_calls: var(TEST_KILL_AFTER_CALLS).and_then(|v| v.parse().ok()),
        })
    }
}

/// A command, resolved.
// Resolved once per run: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Resolved {
    Create(CreateSettings),
    List { aws: AwsOptions, json: bool },
    Destroy(DestroySettings),
    Stop(StopSettings),
    Start(StartSettings),
    Bootstrap(BootstrapSettings),
    Verify(ServerSettings),
    Update(UpdateSettings),
}

pub fn resolve(command: &Command, file: &ConfigFile, hooks: &TestHooks) -> Result<Resolved, UsageError> {
    Ok(match command {
        Command::Ec2(Ec2Command::Create(a)) => Resolved::Create(create(a, file, hooks)?),
        Command::Ec2(Ec2Command::List(ListArgs { aws, json })) => {
            Resolved::List { aws: aws_options(aws, &file.ec2, hooks)?, json: *json }
        }
        Command::Ec2(Ec2Command::Destroy(a)) => Resolved::Destroy(destroy(a, file, hooks)?),
        Command::Ec2(Ec2Command::Stop(a)) => Resolved::Stop(stop(a, file, hooks)?),
        Command::Ec2(Ec2Command::Start(a)) => Resolved::Start(start(a, file, hooks)?),
        Command::Bootstrap(a) => Resolved::Bootstrap(bootstrap(a, &file.host, hooks)?),
        Command::Verify(a) => Resolved::Verify(server(&a.server, file, hooks)?),
        Command::Update(a) => Resolved::Update(update(a, file, hooks)?),
    })
}

/// The longest duration any flag takes: a year. Longer cannot be meant
/// (and a time limit far beyond it overflows the clocks it is added to).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration flag: at least a second (the host's scripts count whole
/// seconds, and EC2's tags whole seconds too), at most [`MAX_DURATION`].
pub fn duration(flag: &str, value: &str) -> Result<Duration, UsageError> {
    duration_at_least(flag, value, Duration::from_secs(1))
}

/// A duration flag of at least `min` (and at most [`MAX_DURATION`]); the
/// message names the flag and the least it takes, whatever was wrong (a
/// negative one, a typo, too short), or the most.
fn duration_at_least(flag: &str, value: &str, min: Duration) -> Result<Duration, UsageError> {
    let least = humantime::format_duration(min);
    let refused = |why: String| {
        UsageError::new(format!("{flag} {} is not a duration of at least {least}: {why}", shown(value)))
            .hint("write it like 30s, 30m, 4h or 2d")
    };
    if value.trim_start().starts_with('-') {
        return Err(refused("it is negative".into()));
    }
    let d = humantime::parse_duration(value).map_err(|e| refused(e.to_string()))?;
    if d < min {
        return Err(refused("too short".into()));
    }
    if d > MAX_DURATION {
        return Err(UsageError::new(format!(
            "{flag} {} is longer than 365d, the most any time limit or expiry takes",
            shown(value)
        ))
        .hint("write it like 30s, 30m, 4h or 2d"));
    }
    Ok(d)
}

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
const GP3_BASELINE_IOPS: i32 = 3000;
/// gp3: at most 0.25 MiB/s of throughput per provisioned IOPS.
const GP3_IOPS_PER_MIBPS: i32 = 4;
/// gp3: at most 500 IOPS per GiB of volume size.
const GP3_IOPS_PER_GIB: i32 = 500;

/// --volume-throughput and --volume-iops: gp3's own, and within what gp3
/// allows together with each other and the volume's size (EBS would refuse
/// RunInstances otherwise, after the key pair and security group were made).
fn gp3_performance(
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

/// A value as a message shows it: as it is when short and printable, else
/// as [`shown`] shows it (quoted, escaped, cut short).
fn plain(v: &str) -> String {
    if v.chars().count() <= 64 && !v.chars().any(char::is_control) { v.to_string() } else { shown(v) }
}

fn duration_or(flag: &str, value: Option<&String>, default: Duration) -> Result<Duration, UsageError> {
    value.map(|v| duration(flag, v)).transpose().map(|d| d.unwrap_or(default))
}

/// A server name must be usable as a DNS label: it names resources and may
/// become part of a host name.
pub fn check_name(name: &str) -> Result<(), UsageError> {
    if image_provision_provision::tags::is_server_name(name) {
        Ok(())
    } else {
        Err(UsageError::new(format!("server name {} is not a DNS label", shown(name))).hint(
            "use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen, e.g. image-test-1",
        ))
    }
}

/// A KMS key as EC2's KmsKeyId takes it: a key id (a UUID, or `mrk-` and 32
/// hex digits for a multi-Region key), `alias/NAME`, or the ARN of either.
fn check_kms_key(key: &str) -> Result<(), UsageError> {
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

fn check_region_name(region: &str) -> bool {
    image_provision_provision::check_region(region).is_ok()
}

fn check_cidr(cidr: &str) -> Result<(), UsageError> {
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

pub fn unknown_region(region: &str) -> UsageError {
    UsageError::new(format!("unknown AWS region {}", shown(region)))
        .hint(format!("use one of: {}", image_provision_provision::KNOWN_REGIONS.join(", ")))
}

/// --region and --profile over the file's, every region checked.
fn aws_options(args: &AwsArgs, file: &Ec2Config, hooks: &TestHooks) -> Result<AwsOptions, UsageError> {
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
fn check_profile(p: &str) -> Result<(), UsageError> {
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

/// A login name as useradd takes it: at most 32 of letters, digits, `.`,
/// `_` and `-`, not starting with `-`, not digits alone.
fn is_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !user.starts_with('-')
        && !user.bytes().all(|b| b.is_ascii_digit())
}

fn ssh_user(flag: Option<&String>, file: Option<&String>) -> Result<String, UsageError> {
    let user = flag.or(file).cloned().unwrap_or_else(|| DEFAULT_SSH_USER.into());
    if !is_user_name(&user) {
        return Err(UsageError::new(format!("--ssh-user {} is not a user name", shown(&user)))
            .hint("the AMI's login user, e.g. ubuntu"));
    }
    Ok(user)
}

/// --host: its user a login name, its host a host name or an IP address.
fn target(host: &str) -> Result<Target, UsageError> {
    let hint = "e.g. --host ubuntu@203.0.113.7 or --host admin@example.org:2222";
    let target: Target =
        host.parse().map_err(|e: image_provision_remote::Error| UsageError::new(format!("--host: {e}")).hint(hint))?;
    if !is_user_name(&target.user) {
        return Err(UsageError::new(format!("--host: the user {} is not a user name", shown(&target.user))).hint(hint));
    }
    let address = target.host.parse::<IpAddr>().is_ok();
    if !address && !validate::is_host_name(&target.host) {
        return Err(
            UsageError::new(format!("--host: {} is not a host name or IP address", shown(&target.host))).hint(hint)
        );
    }
    Ok(target)
}

/// --identity: a private key file that exists. `otherwise`: what logs in
/// without it.
fn identity(path: Option<&PathBuf>, otherwise: &str) -> Result<Option<Identity>, UsageError> {
    match path {
        Some(p) if !p.is_file() => Err(UsageError::new(format!("--identity {}: no such file", p.display()))
            .hint(format!("give the private key file (not the .pub), or leave out --identity to use {otherwise}"))),
        Some(p) => Ok(Some(Identity::key_file(p))),
        None => Ok(None),
    }
}

/// A switch is on when its flag or the file turns it on.
fn on(flag: bool, file: Option<bool>) -> bool {
    flag || file.unwrap_or(false)
}

/// The stack's time limits, the flags' over the file's: (imageup, health).
fn stack_timeouts(
    imageup: Option<&String>,
    health: Option<&String>,
    f: &HostConfig,
) -> Result<(Duration, Duration), UsageError> {
    Ok((
        duration_or("--imageup-timeout", imageup.or(f.imageup_timeout.as_ref()), settings::DEFAULT_IMAGEUP_TIMEOUT)?,
        duration_or("--health-timeout", health.or(f.health_timeout.as_ref()), settings::DEFAULT_HEALTH_TIMEOUT)?,
    ))
}

fn policy(accept_new: bool) -> HostKeyPolicy {
    if accept_new { HostKeyPolicy::AcceptNew } else { HostKeyPolicy::Strict }
}

/// An EC2 id: `prefix` and 8 or 17 lowercase hex digits.
fn is_resource_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An EC2 instance type: FAMILY.SIZE, lowercase letters, digits and hyphens.
fn check_instance_type(t: &str) -> Result<(), UsageError> {
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
    pub no_bootstrap: bool,
    pub dry_run: bool,
    pub json: bool,
    /// The host steps, once the instance answers.
    pub steps: Config,
    /// Test-only: where SSH goes instead of the instance's address.
    pub ssh_addr: Option<SocketAddr>,
}

fn create(args: &CreateArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<CreateSettings, UsageError> {
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
    {
        return Err(
            UsageError::new(format!("{} is not an AMI id", shown(ami))).hint("AMI ids look like ami-0123456789abcdef0")
        );
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
        image_provision_playbooks::steps::llm::size(gib, img.local_llm.model.as_deref()).map_err(|e| {
            UsageError::new(format!("--llm local on a {instance_type} ({gpu}): {e}"))
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
        dns_domain: domain.filter(|_| !on(args.no_dns, f.no_dns)),
        no_bootstrap: args.no_bootstrap,
        dry_run: args.dry_run,
        json: args.json,
        steps,
        ssh_addr: hooks.ssh_addr,
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

fn destroy(a: &DestroyArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<DestroySettings, UsageError> {
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

fn stop(a: &StopArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<StopSettings, UsageError> {
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

fn start(a: &StartArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<StartSettings, UsageError> {
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

/// `bootstrap --host`, resolved.
pub struct BootstrapSettings {
    pub target: Target,
    pub identity: Identity,
    pub policy: HostKeyPolicy,
    pub dry_run: bool,
    pub steps: Config,
}

fn bootstrap(a: &BootstrapArgs, file: &HostConfig, hooks: &TestHooks) -> Result<BootstrapSettings, UsageError> {
    let target = target(&a.host)?;
    let identity = identity(a.identity.as_ref(), "the ssh-agent")?.unwrap_or(Identity::Agent);
    let mut steps = host_steps(&a.steps, file, hooks, true)?;
    steps.expiry = bootstrap_expiry(a.ttl.as_deref())?;
    Ok(BootstrapSettings { target, identity, policy: policy(a.accept_new_host_key), dry_run: a.dry_run, steps })
}

/// `bootstrap --ttl DURATION|off`: the power-off this long from now (read
/// as `ec2 create --ttl` is), or none; without it, the host's is kept.
fn bootstrap_expiry(ttl: Option<&str>) -> Result<settings::Expiry, UsageError> {
    Ok(match ttl.map(str::trim) {
        None => settings::Expiry::Keep,
        Some("off") => settings::Expiry::Off,
        Some(t) => {
            let d = duration("--ttl", t).map_err(|e| e.hint("write it like 30m, 4h or 2d, or `off` for no expiry"))?;
            settings::Expiry::At(settings::expires_after(d).map_err(UsageError::new)?)
        }
    })
}

/// --domain over the file's `[host] domain`: checked, lowercase.
fn domain(flag: Option<&String>, file: Option<&String>) -> Result<Option<String>, UsageError> {
    Ok(checked("--domain", flag, file, validate::check_domain)
        .map_err(|e| {
            e.hint("give the server's public host name, e.g. --domain image.example.org, whose DNS record points at the server")
        })?
        .map(|d| d.to_ascii_lowercase()))
}

/// A text flag over the file's value: trimmed, not empty, and `check`ed.
fn checked(
    flag: &str,
    value: Option<&String>,
    file: Option<&String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, UsageError> {
    match value.or(file).map(|v| v.trim()) {
        None => Ok(None),
        Some("") => Err(UsageError::new(format!("{flag} is empty"))),
        Some(s) => check(s).map(|()| Some(s.to_string())).map_err(|e| UsageError::new(format!("{flag}: {e}"))),
    }
}

/// The host steps' settings (`bootstrap`, `ec2 create`): the flags over the
/// file's `[host]` table over the defaults. Every supplied env file is read
/// and checked here, before anything connects.
/// The host steps' settings. `running`: they run now (not only recorded
/// with `ec2 create --no-bootstrap`), so the stack needs its LLM chosen.
fn host_steps(a: &HostStepArgs, f: &HostConfig, hooks: &TestHooks, running: bool) -> Result<Config, UsageError> {
    let defaults = Config::default();
    let timeout = |flag: &str, value: &Option<String>, file: &Option<String>, default| {
        duration_or(flag, value.as_ref().or(file.as_ref()), default)
    };
    Ok(Config {
        gpu: !on(a.no_gpu, f.no_gpu),
        force_distro: on(a.force_distro, f.force_distro),
        nvidia_driver_branch: checked(
            "--nvidia-driver",
            a.nvidia_driver.as_ref(),
            f.nvidia_driver.as_ref(),
            validate::check_driver_branch,
        )
        .map_err(|e| {
            e.hint("e.g. 580-server (the default), 570-server or 580-server-open (the package is nvidia-driver-BRANCH)")
        })?
        .unwrap_or(defaults.nvidia_driver_branch),
        nvidia_repo: checked(
            "--nvidia-repo",
            a.nvidia_repo.as_ref(),
            f.nvidia_repo.as_ref(),
            validate::check_apt_source,
        )
        .map_err(apt_source_hint)?
        .unwrap_or(defaults.nvidia_repo),
        nvidia_repo_key: checked(
            "--nvidia-repo-key",
            a.nvidia_repo_key.as_ref(),
            f.nvidia_repo_key.as_ref(),
            validate::check_key_url,
        )
        .map_err(key_url_hint)?
        .unwrap_or(defaults.nvidia_repo_key),
        docker_repo: checked(
            "--docker-repo",
            a.docker_repo.as_ref(),
            f.docker_repo.as_ref(),
            validate::check_apt_source,
        )
        .map_err(apt_source_hint)?
        .unwrap_or(defaults.docker_repo),
        docker_repo_key: checked(
            "--docker-repo-key",
            a.docker_repo_key.as_ref(),
            f.docker_repo_key.as_ref(),
            validate::check_key_url,
        )
        .map_err(key_url_hint)?
        .unwrap_or(defaults.docker_repo_key),
        reboot_timeout: timeout("--reboot-timeout", &a.reboot_timeout, &f.reboot_timeout, defaults.reboot_timeout)?,
        cloud_init_timeout: timeout(
            "--cloud-init-timeout",
            &a.cloud_init_timeout,
            &f.cloud_init_timeout,
            defaults.cloud_init_timeout,
        )?,
        lock_timeout: timeout("--apt-lock-timeout", &a.apt_lock_timeout, &f.apt_lock_timeout, defaults.lock_timeout)?,
        command_time_limit: timeout(
            "--command-timeout",
            &a.command_timeout,
            &f.command_timeout,
            defaults.command_time_limit,
        )?,
        apt_lists_max_age: defaults.apt_lists_max_age,
        image: if on(a.no_stack, f.no_stack) { None } else { Some(image_steps(a, f, hooks, running)?) },
        // `bootstrap --ttl`; `ec2 create` sets it from the instance's tag.
        expiry: settings::Expiry::Keep,
        autostop: autostop(a.autostop.as_deref(), on(a.no_stack, f.no_stack))?,
    })
}

/// The shortest `--autostop`: its check runs every 5 s at the least.
const MIN_AUTOSTOP: Duration = Duration::from_secs(10);

/// `--autostop DURATION|off` (bootstrap and ec2 create): a stop after this
/// long without a request, or none; without it, the host's is kept. Idle
/// is counted from the orchestrator's requests, so a --no-stack server
/// takes only `off`.
fn autostop(value: Option<&str>, no_stack: bool) -> Result<settings::Autostop, UsageError> {
    Ok(match value.map(str::trim) {
        None => settings::Autostop::Keep,
        Some("off") => settings::Autostop::Off,
        Some(t) => {
            let d = duration_at_least("--autostop", t, MIN_AUTOSTOP)
                .map_err(|e| e.hint("write it like 30m, 2h or 1d, or `off` for no idle stop"))?;
            if no_stack {
                return Err(UsageError::new(format!(
                    "--autostop {} with --no-stack: idle is counted from the requests that reach the IMAGE \
                     orchestrator, and a server without the stack has none",
                    shown(t)
                ))
                .hint("drop --no-stack, or use --ttl DURATION for a server that ends at a time"));
            }
            settings::Autostop::After(d)
        }
    })
}

/// Where credentials go instead of a URL.
const CREDENTIALS_HINT: &str = "credentials go in files, never on command lines or in URLs (ps, shell history and \
    logs keep those): give the URL without USER:PASSWORD@";

/// The hint for a refused URL: [`CREDENTIALS_HINT`] when it carried
/// credentials, else `otherwise`.
fn url_hint(e: UsageError, otherwise: &str) -> UsageError {
    if e.message.contains(validate::URL_CREDENTIALS) { e.hint(CREDENTIALS_HINT) } else { e.hint(otherwise) }
}

/// Where a private repository's credentials go instead of --repo-url.
const REPO_CREDENTIALS_HINT: &str = "credentials go in files, never on command lines or in URLs (ps, shell \
    history and logs keep those): give the URL without USER:TOKEN@, and the credential as one line \
    https://USER:TOKEN@HOST in a file of mode 0600 with --repo-credentials PATH";

fn apt_source_hint(e: UsageError) -> UsageError {
    url_hint(
        e,
        "an https:// repository, e.g. \"https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\" (a flat \
         repository has SUITE /), or file:/PATH for one on the host",
    )
}

fn key_url_hint(e: UsageError) -> UsageError {
    url_hint(e, "give an https:// URL of an ASCII-armored key, or file:///PATH for a key on the host")
}

/// The IMAGE steps' settings.
fn image_steps(a: &HostStepArgs, f: &HostConfig, hooks: &TestHooks, running: bool) -> Result<ImageConfig, UsageError> {
    let defaults = ImageConfig::default();
    let domain = domain(a.domain.as_ref(), f.domain.as_ref())?;
    let domain_for_dns = domain.clone();
    // Checked whether or not it is used: bad input is refused either way.
    let dns_timeout =
        duration_or("--dns-timeout", a.dns_timeout.as_ref().or(f.dns_timeout.as_ref()), settings::DEFAULT_DNS_TIMEOUT)?;
    let acme_email = checked("--acme-email", a.acme_email.as_ref(), f.acme_email.as_ref(), validate::check_email)?;
    if domain.is_some() && acme_email.is_none() {
        return Err(UsageError::new("--domain needs --acme-email").hint(
            "Let's Encrypt registers the certificate's account under an e-mail address: pass --acme-email you@example.org",
        ));
    }
    let staging = on(a.acme_staging, f.acme_staging);
    let acme_server =
        checked("--acme-server", a.acme_server.as_ref(), f.acme_server.as_ref(), validate::check_acme_server).map_err(
            |e| {
                url_hint(e, "an ACME directory over https, e.g. https://acme-staging-v02.api.letsencrypt.org/directory")
            },
        )?;
    if staging && acme_server.is_some() {
        return Err(UsageError::new("--acme-staging and --acme-server name two ACME servers")
            .hint("give one: --acme-staging for Let's Encrypt's staging server, or --acme-server URL for another"));
    }
    if domain.is_none() && (staging || acme_server.is_some()) {
        return Err(UsageError::new("--acme-staging or --acme-server without --domain")
            .hint("they choose where the certificate of --domain comes from; give --domain too"));
    }
    let acme_server = match (staging, acme_server) {
        (true, _) => settings::LETS_ENCRYPT_STAGING.to_string(),
        (false, Some(url)) => url,
        (false, None) => settings::LETS_ENCRYPT.to_string(),
    };
    if domain.is_none() && acme_email.is_some() {
        return Err(UsageError::new("--acme-email without --domain")
            .hint("the e-mail is for the certificate of --domain; give both"));
    }
    let profile = match (a.image_profile, &f.image_profile) {
        (Some(p), _) => p,
        (None, Some(p)) => ImageProfile::from_str(p, false).map_err(|_| {
            UsageError::new(format!("config file: [host] image_profile = {} is not a profile", shown(p)))
                .hint("use \"production\" or \"test\"")
        })?,
        (None, None) => ImageProfile::Production,
    };
    let env_specs: Vec<String> = match (&a.env_file, &f.env_files) {
        (flags, Some(files)) if flags.is_empty() => {
            files.iter().map(|(name, path)| format!("{name}={}", path.display())).collect()
        }
        (flags, _) => flags.clone(),
    };
    let mut env_files: Vec<(String, Vec<u8>)> = Vec::new();
    for spec in &env_specs {
        let (name, content) = read_env_file(spec)?;
        if env_files.iter().any(|(n, _)| *n == name) {
            return Err(UsageError::new(format!("--env-file {name} is given twice")));
        }
        env_files.push((name, content));
    }
    // The LLM, decided before anything connects: several IMAGE services
    // exit at start-up without one, so a stack brought up without a choice
    // never gets healthy.
    let has_llm = env_files.iter().any(|(n, _)| n == "llm.env");
    let local = match a.llm.as_ref().or(f.llm.as_ref()).map(String::as_str) {
        None => false,
        Some("local") => true,
        Some(other) => {
            return Err(UsageError::new(format!("--llm {} is not a choice", shown(other)))
                .hint("--llm local runs the LLM on this server; an LLM elsewhere is --env-file llm.env=PATH"));
        }
    };
    let choices = [has_llm, on(a.no_llm, f.no_llm), local];
    if choices.iter().filter(|c| **c).count() > 1 {
        return Err(UsageError::new("more than one choice for the LLM (--env-file llm.env, --no-llm, --llm local)")
            .hint("give one: --env-file llm.env=PATH to use that LLM, --llm local to run one here, or --no-llm to run without one"));
    }
    if !local && (a.llm_model.is_some() || f.llm_model.is_some()) {
        return Err(UsageError::new("--llm-model is for --llm local").hint("add --llm local, or leave --llm-model out"));
    }
    if !local && env_files.iter().any(|(n, _)| n == "hf.env") {
        return Err(UsageError::new("--env-file hf.env is for --llm local (vLLM's Hugging Face token)")
            .hint("add --llm local, or leave hf.env out"));
    }
    let local_llm = settings::LocalLlm {
        model: a.llm_model.clone().or(f.llm_model.clone()),
        timeout: duration_or(
            "--llm-timeout",
            a.llm_timeout.as_ref().or(f.llm_timeout.as_ref()),
            settings::DEFAULT_LLM_TIMEOUT,
        )?,
    };
    if let Some(model) = &local_llm.model {
        if model.len() > 128 || !model.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
            return Err(UsageError::new(format!("--llm-model {} is not a model id", shown(model))).hint(
                "a Hugging Face model id such as Qwen/Qwen2.5-VL-3B-Instruct (README.md, \"Local LLM\", lists them)",
            ));
        }
        // Known here, so a typo stops before anything is installed.
        image_provision_playbooks::steps::llm::size(f64::MAX, Some(model))
            .map_err(|e| UsageError::new(e).hint(image_provision_playbooks::steps::llm::TOO_SMALL_HINT))?;
    }
    let llm = match (has_llm, on(a.no_llm, f.no_llm)) {
        _ if local => Llm::Local,
        (true, _) => Llm::EnvFile,
        (false, true) => Llm::Without,
        (false, false) if !running => Llm::Without,
        (false, false) => {
            return Err(UsageError::new("no LLM chosen: the IMAGE services that describe photos, answer follow-up questions and segment diagrams need one")
                .hint(format!(
                    "give --env-file llm.env=PATH (LLM_URL, LLM_API_KEY and LLM_MODEL of an OpenAI-compatible server, e.g. vLLM), --llm local to run one on this server's GPU, or --no-llm to run without them ({}); in a config file: [host.env_files] \"llm.env\" = \"PATH\", or [host] no_llm = true",
                    image_provision_playbooks::steps::stack::NO_LLM_LOSS
                )));
        }
    };
    let (imageup_timeout, health_timeout) = stack_timeouts(a.imageup_timeout.as_ref(), a.health_timeout.as_ref(), f)?;
    let text = |v: Option<String>, default: String| v.unwrap_or(default);
    let repo_url = text(
        checked("--repo-url", a.repo_url.as_ref(), f.repo_url.as_ref(), validate::check_repo_url).map_err(|e| {
            if e.message.contains(validate::URL_CREDENTIALS) {
                e.hint(REPO_CREDENTIALS_HINT)
            } else {
                e.hint("e.g. https://github.com/Shared-Reality-Lab/IMAGE-server.git")
            }
        })?,
        defaults.repo_url,
    );
    Ok(ImageConfig {
        base_dir: text(
            checked("--base-dir", a.base_dir.as_ref(), f.base_dir.as_ref(), validate::check_base_dir)?,
            defaults.base_dir,
        ),
        repo_credentials: repo_credentials(a.repo_credentials.as_ref(), f.repo_credentials.as_ref(), &repo_url)?,
        repo_url,
        repo_branch: text(
            checked("--repo-branch", a.repo_branch.as_ref(), f.repo_branch.as_ref(), validate::check_branch)?,
            defaults.repo_branch,
        ),
        domain,
        acme_email,
        acme_server,
        registry_tag: text(
            checked("--registry-tag", a.registry_tag.as_ref(), f.registry_tag.as_ref(), validate::check_registry_tag)?,
            defaults.registry_tag,
        ),
        profile: match profile {
            ImageProfile::Production => Profile::Production,
            ImageProfile::Test => Profile::Test,
        },
        pii_logging: on(a.pii_logging, f.pii_logging),
        env_files,
        llm,
        local_llm,
        overpass_url: text(
            checked("--overpass-url", a.overpass_url.as_ref(), f.overpass_url.as_ref(), validate::check_service_url)
                .map_err(|e| url_hint(e, "e.g. https://overpass-api.de/api/interpreter"))?,
            defaults.overpass_url,
        ),
        nominatim_fallback: text(
            checked(
                "--nominatim-fallback",
                a.nominatim_fallback.as_ref(),
                f.nominatim_fallback.as_ref(),
                validate::check_service_url,
            )
            .map_err(|e| url_hint(e, "e.g. https://nominatim.openstreetmap.org"))?,
            defaults.nominatim_fallback,
        ),
        imageup: !on(a.no_imageup, f.no_imageup),
        imageup_timeout,
        health_timeout,
        https_check: hooks.https_check,
        upkeep: upkeep(a, f, profile)?,
        // The address is filled in by the command that reaches the server.
        dns_check: match (&domain_for_dns, on(a.no_dns_check, f.no_dns_check)) {
            (Some(_), false) => Some(settings::DnsCheck { address: String::new(), timeout: dns_timeout }),
            _ => None,
        },
    })
}

/// What runs on the server by itself: the flags over the file.
fn upkeep(a: &HostStepArgs, f: &HostConfig, profile: ImageProfile) -> Result<Upkeep, UsageError> {
    let defaults = Upkeep::default();
    let healthcheck_every = match a.healthcheck_every.as_ref().or(f.healthcheck_every.as_ref()).map(String::as_str) {
        None => defaults.healthcheck_every,
        Some("off") => None,
        Some(v) => {
            // The check lists every container and asks nvidia-smi: not
            // more often than once a minute.
            Some(
                duration_at_least("--healthcheck-every", v, Duration::from_secs(60))
                    .map_err(|e| e.hint("e.g. 5m, 10m, 1h, or off"))?,
            )
        }
    };
    let auto_update = match a.auto_update.as_ref().or(f.auto_update.as_ref()).map(String::as_str) {
        None | Some("off") => None,
        Some(when) => {
            let calendar = auto_update_calendar(when).ok_or_else(|| {
                UsageError::new(format!("--auto-update {} is not a time", shown(when)))
                    .hint("give daily (04:00 UTC), a time of day as HH:MM in UTC (e.g. 03:30), or off")
            })?;
            if profile == ImageProfile::Production {
                return Err(UsageError::new("--auto-update on a production server: the IMAGE team's imageup skips runs started by a timer when ENVIRONMENT is production")
                    .hint("update a production server on purpose with `image-provision update`; --auto-update is for --image-profile test"));
            }
            Some(calendar)
        }
    };
    let prune = match a.prune.as_ref().or(f.prune.as_ref()).map(String::as_str) {
        None => defaults.prune,
        Some("off") => None,
        Some(when @ ("daily" | "weekly" | "monthly")) => Some(when.to_string()),
        Some(other) => {
            return Err(UsageError::new(format!("--prune {} is not a schedule", shown(other)))
                .hint("give daily, weekly, monthly or off"));
        }
    };
    Ok(Upkeep { start_at_boot: !on(a.no_start_at_boot, f.no_start_at_boot), healthcheck_every, auto_update, prune })
}

/// `daily` or HH:MM (UTC) as a systemd calendar event.
fn auto_update_calendar(when: &str) -> Option<String> {
    let (h, m) = if when == "daily" { ("04", "00") } else { when.split_once(':')? };
    let valid = |v: &str, max: u32| v.len() == 2 && v.parse::<u32>().is_ok_and(|n| n <= max);
    (valid(h, 23) && valid(m, 59)).then(|| format!("*-*-* {h}:{m}:00 UTC"))
}

/// `--env-file NAME=PATH`: read and check the file. Messages name the file
/// and the line, never a value (the files hold credentials).
fn read_env_file(spec: &str) -> Result<(String, Vec<u8>), UsageError> {
    let known = validate::SUPPLIED_ENV_FILES.join(", ");
    let Some((name, path)) = spec.split_once('=') else {
        return Err(UsageError::new(format!("--env-file {}: expected NAME=PATH", shown(spec)))
            .hint(format!("e.g. --env-file llm.env=./llm.env; NAME is one of {known}")));
    };
    let name = name.trim();
    if !validate::SUPPLIED_ENV_FILES.contains(&name) {
        return Err(UsageError::new(format!("--env-file {name}: not a file the IMAGE stack reads"))
            .hint(format!("NAME is one of {known}")));
    }
    // `NAME=`, no path: empty it on the server (a file not given is kept).
    if path.is_empty() {
        if name == "llm.env" {
            return Err(UsageError::new("--env-file llm.env= (no path): llm.env cannot be emptied")
                .hint("the LLM is chosen with --env-file llm.env=PATH, --llm local or --no-llm"));
        }
        return Ok((name.to_string(), Vec::new()));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        let path = plain(path);
        UsageError::new(format!("--env-file {name}={path}: cannot read {path}: {e}"))
            .hint("give the path of an existing file on this machine; nothing was changed on the host")
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        UsageError::new(format!("--env-file {name}={}: not UTF-8 text", plain(path)))
            .hint("nothing was changed on the host")
    })?;
    validate::check_env_file(name, &text).map_err(|e| {
        UsageError::new(format!("--env-file {name}={}: {e}", plain(path))).hint(
            "fix the file (KEY=value lines as compose reads them: `KEY = value`, quotes, `export `, # comments are fine) and run again; nothing was changed on the host",
        )
    })?;
    Ok((name.to_string(), text.into_bytes()))
}

/// `--repo-credentials PATH|none` over the file's `repo_credentials`:
/// without either the server's are kept. The local file must be a regular
/// file only its owner can read or write (it holds a token), with one
/// credential for `repo_url`'s host. Messages name the file and the line,
/// never a value.
fn repo_credentials(
    flag: Option<&String>,
    file: Option<&String>,
    repo_url: &str,
) -> Result<RepoCredentials, UsageError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Some(spec) = flag.or(file) else {
        return Ok(RepoCredentials::Keep);
    };
    let usage = "give a file of yours, mode 0600, with one line https://USER:TOKEN@HOST (git's credential \
                 store format), or none to remove the server's; nothing was changed on the host";
    match spec.as_str() {
        "none" => return Ok(RepoCredentials::Remove),
        "" => return Err(UsageError::new("--repo-credentials is empty").hint(usage)),
        _ => {}
    }
    let shown_path = plain(spec);
    let refused = |why: String| UsageError::new(format!("--repo-credentials {shown_path}: {why}"));
    let Some(host) = validate::https_host(repo_url) else {
        return Err(refused(format!(
            "the repository {} is not fetched over https://, where credentials are asked",
            plain(repo_url)
        ))
        .hint("credentials are for an https:// --repo-url; leave --repo-credentials out for a file:// one"));
    };
    // Its kind first: opening a FIFO would wait for a writer.
    let kind = std::fs::metadata(spec).map_err(|e| refused(format!("cannot read it: {e}")).hint(usage))?;
    if !kind.is_file() {
        return Err(refused("not a regular file".into()).hint(usage));
    }
    let mut f = std::fs::File::open(spec).map_err(|e| refused(format!("cannot read it: {e}")).hint(usage))?;
    // The mode of the file read, not of whatever the path named before.
    let mode = f.metadata().map_err(|e| refused(format!("cannot read it: {e}")))?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refused(format!("mode {mode:04o} lets others than its owner read or change the token in it"))
            .hint(format!("chmod 600 {shown_path}, then run again; nothing was changed on the host")));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| refused(format!("cannot read it as text: {e}")).hint(usage))?;
    let credential = validate::parse_git_credential(&text).map_err(|e| refused(e).hint(usage))?;
    if credential.host != host {
        return Err(refused(format!(
            "the credential is for {}, and the repository {} is on {host}",
            plain(&credential.host),
            plain(repo_url)
        ))
        .hint("give the credential for the --repo-url's host (the same host and port)"));
    }
    Ok(RepoCredentials::Set(credential.line.into_bytes()))
}

/// Which server `verify` and `update` talk to.
pub enum Server {
    /// Any host, as bootstrap reaches it.
    Host { target: Target, identity: Identity, policy: HostKeyPolicy },
    /// An EC2 server by name: its address from its tags, its key and
    /// known_hosts from the state directory (unless `identity`).
    Ec2 { name: String, aws: AwsOptions, identity: Option<Identity>, ssh_user: String, ssh_addr: Option<SocketAddr> },
}

/// `verify` (and the first half of `update`), resolved.
pub struct ServerSettings {
    pub server: Server,
    pub report: ReportOptions,
    pub json: bool,
}

fn server(a: &ServerArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<ServerSettings, UsageError> {
    let f = &file.host;
    let domain = domain(a.domain.as_ref(), f.domain.as_ref())?;
    let base_dir = checked("--base-dir", a.base_dir.as_ref(), f.base_dir.as_ref(), validate::check_base_dir)?;
    let report = ReportOptions {
        base_dir: base_dir.unwrap_or_else(|| settings::DEFAULT_BASE_DIR.into()),
        domain,
        gpu: !on(a.no_gpu, f.no_gpu),
        https_check: hooks.https_check,
        stack: !on(a.no_stack, f.no_stack),
        request: !a.no_request,
    };
    let otherwise = if a.host.is_some() { "the ssh-agent" } else { "the key image-provision made for the server" };
    let id = identity(a.identity.as_ref(), otherwise)?;
    // Checked with --host too, where they are not used: a bad value is
    // refused whatever else was given.
    let aws = aws_options(&a.aws, &file.ec2, hooks)?;
    let ssh_user = ssh_user(a.ssh_user.as_ref(), file.ec2.ssh_user.as_ref())?;
    let server = match (&a.host, &a.name) {
        (Some(host), _) => Server::Host {
            target: target(host)?,
            identity: id.unwrap_or(Identity::Agent),
            policy: policy(a.accept_new_host_key),
        },
        (None, Some(name)) => {
            check_name(name)?;
            Server::Ec2 { name: name.clone(), aws, identity: id, ssh_user, ssh_addr: hooks.ssh_addr }
        }
        (None, None) => return Err(UsageError::new("give the server's NAME or --host")),
    };
    Ok(ServerSettings { server, report, json: a.json })
}

/// `update`, resolved.
pub struct UpdateSettings {
    pub server: ServerSettings,
    pub imageup: bool,
    pub imageup_timeout: Duration,
    pub health_timeout: Duration,
    /// Upgrade the held NVIDIA driver first (and reboot when it changed),
    /// with this time limit for the reboot.
    pub upgrade_driver: Option<Duration>,
    /// `--rollback`: no update, back to what ran before the last good one.
    pub rollback: bool,
}

fn update(a: &UpdateArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<UpdateSettings, UsageError> {
    let f = &file.host;
    let server = server(&a.server, file, hooks)?;
    if !server.report.stack {
        return Err(UsageError::new("update keeps the IMAGE stack current, and this server has none (--no-stack)")
            .hint("run `image-provision bootstrap` without --no-stack to add the stack"));
    }
    let (imageup_timeout, health_timeout) = stack_timeouts(a.imageup_timeout.as_ref(), a.health_timeout.as_ref(), f)?;
    if a.reboot_timeout.is_some() && !a.upgrade_driver {
        return Err(UsageError::new(
            "--reboot-timeout is for --upgrade-driver (update reboots only for a driver upgrade)",
        )
        .hint("add --upgrade-driver, or leave --reboot-timeout out"));
    }
    let upgrade_driver = a
        .upgrade_driver
        .then(|| {
            duration_or(
                "--reboot-timeout",
                a.reboot_timeout.as_ref().or(f.reboot_timeout.as_ref()),
                Config::default().reboot_timeout,
            )
        })
        .transpose()?;
    Ok(UpdateSettings {
        imageup: !on(a.no_imageup, f.no_imageup),
        imageup_timeout,
        health_timeout,
        upgrade_driver,
        rollback: a.rollback,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn hooks() -> TestHooks {
        TestHooks { ssh_addr: None, https_check: true, kill_after_calls: None }
    }

    /// `ec2 create x` (the LLM chosen: --no-llm) with `f`'s changes.
    fn create_with(f: &dyn Fn(&mut CreateArgs), file: &ConfigFile) -> Result<CreateSettings, UsageError> {
        let mut a = CreateArgs { name: "x".into(), ..Default::default() };
        a.steps.no_llm = true;
        f(&mut a);
        create(&a, file, &hooks())
    }

    #[test]
    fn kms_keys_are_ids_aliases_or_their_arns() {
        for ok in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "alias/image-servers",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:alias/image_servers",
        ] {
            assert!(check_kms_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alias/",
            "1234",
            "{{x}}",
            "../key",
            "arn:aws:kms:nowhere-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:1111:alias/x",
            "alias/a\nb",
        ] {
            assert!(check_kms_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_must_be_dns_labels() {
        for ok in ["a", "image-1", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let file = parse(include_str!("../../examples/image-provision.toml")).expect("examples/image-provision.toml");
        // It leaves the LLM to be chosen: refused until it is.
        let err = create_with(&|a| a.steps.no_llm = false, &file).unwrap_err();
        assert!(err.to_string().contains("no LLM chosen"), "{err}");
        let s = create_with(&|_| {}, &file).unwrap();
        assert_eq!((s.instance_type.as_str(), s.volume_size, s.volume_type.as_str()), ("g5.xlarge", 1000, "gp3"));
        let img = s.steps.image.expect("the example runs the IMAGE steps");
        assert_eq!(img.registry_tag, "latest");
        assert_eq!(img.profile, Profile::Production);
    }

    #[test]
    fn host_options_come_from_the_file_unless_a_flag_set_them() {
        let dir = tempfile::tempdir().unwrap();
        let llm = dir.path().join("llm.env");
        std::fs::write(&llm, "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").unwrap();
        let file = parse(&format!(
            "[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nregistry_tag = \"unstable\"\n\
             no_gpu = true\nimage_profile = \"test\"\nenv_files = {{ \"llm.env\" = {:?} }}\n",
            llm.display()
        ))
        .unwrap();
        let args = HostStepArgs { registry_tag: Some("v1".into()), ..Default::default() };
        let cfg = host_steps(&args, &file.host, &hooks(), true).unwrap();
        let img = cfg.image.unwrap();
        assert_eq!(img.domain.as_deref(), Some("image.example.org"));
        assert_eq!(img.registry_tag, "v1", "the flag wins");
        assert!(!cfg.gpu);
        assert_eq!(img.profile, Profile::Test);
        assert_eq!(img.env_files.len(), 1);
        assert_eq!(img.env_files[0].0, "llm.env");
        let bad = parse("[host]\nimage_profile = \"staging\"\n").unwrap();
        assert!(host_steps(&HostStepArgs::default(), &bad.host, &hooks(), true).is_err());
    }

    /// The LLM is chosen before anything runs: llm.env or --no-llm, one of
    /// the two; none is refused with both choices named, unless the steps
    /// do not run now (`ec2 create --no-bootstrap`) or the stack is off.
    #[test]
    fn the_llm_is_an_env_file_or_none_and_never_left_undecided() {
        let dir = tempfile::tempdir().unwrap();
        let llm = dir.path().join("llm.env");
        std::fs::write(&llm, "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").unwrap();
        let env_file = vec![format!("llm.env={}", llm.display())];
        let none = ConfigFile::default().host;
        let choice =
            |a: HostStepArgs, running: bool| host_steps(&a, &none, &hooks(), running).map(|c| c.image.unwrap().llm);
        assert_eq!(
            choice(HostStepArgs { env_file: env_file.clone(), ..Default::default() }, true).unwrap(),
            Llm::EnvFile
        );
        assert_eq!(choice(HostStepArgs { no_llm: true, ..Default::default() }, true).unwrap(), Llm::Without);
        let err = choice(HostStepArgs::default(), true).unwrap_err();
        assert!(err.message.starts_with("no LLM chosen"), "{err}");
        let hint = err.hint.unwrap();
        assert!(hint.contains("--env-file llm.env=PATH") && hint.contains("--no-llm"), "{hint}");
        let both = choice(HostStepArgs { env_file: env_file.clone(), no_llm: true, ..Default::default() }, true);
        assert!(both.unwrap_err().message.contains("more than one choice"));
        // --llm local: alone, with a known model; not with another choice.
        let local = |model: Option<&str>| HostStepArgs {
            llm: Some("local".into()),
            llm_model: model.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(choice(local(None), true).unwrap(), Llm::Local);
        let cfg = host_steps(&local(Some("Qwen/Qwen2.5-VL-3B-Instruct")), &none, &hooks(), true).unwrap();
        assert_eq!(cfg.image.unwrap().local_llm.model.as_deref(), Some("Qwen/Qwen2.5-VL-3B-Instruct"));
        assert!(choice(local(Some("some/model")), true).unwrap_err().message.contains("not one whose size is known"));
        assert!(choice(HostStepArgs { env_file, ..local(None) }, true).unwrap_err().message.contains("more than one"));
        let remote = HostStepArgs { llm: Some("remote".into()), ..Default::default() };
        assert!(choice(remote, true).is_err());
        let model_alone =
            HostStepArgs { llm_model: Some("Qwen/Qwen2.5-VL-3B-Instruct".into()), no_llm: true, ..Default::default() };
        assert!(choice(model_alone, true).unwrap_err().message.contains("--llm-model is for --llm local"));
        // vLLM's Hugging Face token: with --llm local only.
        let hf = dir.path().join("hf.env");
        std::fs::write(&hf, "HF_TOKEN=hf_x\n").unwrap();
        let hf_file = vec![format!("hf.env={}", hf.display())];
        assert_eq!(choice(HostStepArgs { env_file: hf_file.clone(), ..local(None) }, true).unwrap(), Llm::Local);
        let hf_alone = HostStepArgs { env_file: hf_file, no_llm: true, ..Default::default() };
        assert!(choice(hf_alone, true).unwrap_err().message.contains("hf.env is for --llm local"));
        assert_eq!(choice(HostStepArgs::default(), false).unwrap(), Llm::Without, "not running now");
        let no_stack = HostStepArgs { no_stack: true, ..Default::default() };
        assert!(host_steps(&no_stack, &none, &hooks(), true).unwrap().image.is_none());
        let from_file = parse("[host]\nno_llm = true\n").unwrap();
        let cfg = host_steps(&HostStepArgs::default(), &from_file.host, &hooks(), true).unwrap();
        assert_eq!(cfg.image.unwrap().llm, Llm::Without);
    }

    /// `--env-file NAME=` (no path) empties that file on the server, the
    /// way to remove a secret (a file not given is kept); llm.env cannot be
    /// emptied (the LLM has its own choices), hf.env only with --llm local.
    #[test]
    fn an_env_file_with_no_path_is_emptied_on_purpose() {
        let none = ConfigFile::default().host;
        let files = |env_file: &[&str], a: HostStepArgs| {
            let a = HostStepArgs { env_file: env_file.iter().map(|s| s.to_string()).collect(), ..a };
            host_steps(&a, &none, &hooks(), true).map(|c| c.image.unwrap().env_files)
        };
        let no_llm = || HostStepArgs { no_llm: true, ..Default::default() };
        let emptied = files(&["healthcheck.env=", "maps.env="], no_llm()).unwrap();
        assert_eq!(emptied, [("healthcheck.env".to_string(), Vec::new()), ("maps.env".to_string(), Vec::new())]);
        let local = HostStepArgs { llm: Some("local".into()), ..Default::default() };
        assert_eq!(files(&["hf.env="], local).unwrap(), [("hf.env".to_string(), Vec::new())]);
        let err = files(&["hf.env="], no_llm()).unwrap_err();
        assert!(err.message.contains("hf.env is for --llm local"), "{err}");
        let err = files(&["llm.env="], HostStepArgs::default()).unwrap_err();
        assert!(err.message.contains("llm.env cannot be emptied"), "{err}");
        assert!(err.hint.unwrap().contains("--no-llm"));
        // The same from the config file: an empty path.
        let file = parse("[host]\nno_llm = true\nenv_files = { \"healthcheck.env\" = \"\" }\n").unwrap();
        let img = host_steps(&HostStepArgs::default(), &file.host, &hooks(), true).unwrap().image.unwrap();
        assert_eq!(img.env_files, [("healthcheck.env".to_string(), Vec::new())]);
    }

    /// --repo-credentials: a 0600 regular file with one credential for the
    /// repository's host, read and written as git's store writes it; kept
    /// when not given, removed with `none`; the same from the config file.
    /// Every refusal is a usage error naming the file, never the token.
    #[test]
    fn repo_credentials_come_from_a_private_file_for_the_repositorys_host() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p.display().to_string()
        };
        let none = HostConfig::default();
        let creds = |flag: Option<String>, repo: Option<&str>, f: &HostConfig| {
            let a = HostStepArgs {
                no_llm: true,
                repo_credentials: flag,
                repo_url: repo.map(str::to_string),
                ..Default::default()
            };
            host_steps(&a, f, &hooks(), true).map(|c| c.image.unwrap().repo_credentials)
        };
        let good = write("good", "# deploy token\nhttps://x-access-token:ghp_S3cr3t%2F1@github.com\n", 0o600);
        let line = b"https://x-access-token:ghp_S3cr3t%2f1@github.com\n".to_vec();
        assert_eq!(creds(Some(good.clone()), None, &none).unwrap(), RepoCredentials::Set(line.clone()));
        let read_only = write("read-only", "https://u:ghp_S3cr3t@github.com\n", 0o400);
        assert!(matches!(creds(Some(read_only), None, &none).unwrap(), RepoCredentials::Set(_)), "0400 is stricter");
        assert_eq!(creds(None, None, &none).unwrap(), RepoCredentials::Keep);
        assert_eq!(creds(Some("none".into()), None, &none).unwrap(), RepoCredentials::Remove);
        let file = parse(&format!("[host]\nno_llm = true\nrepo_credentials = {good:?}\n")).unwrap();
        assert_eq!(creds(None, None, &file.host).unwrap(), RepoCredentials::Set(line), "from the config file");
        let file = parse("[host]\nrepo_credentials = \"none\"\n").unwrap();
        assert_eq!(creds(None, None, &file.host).unwrap(), RepoCredentials::Remove);
        assert!(
            matches!(creds(Some(good.clone()), None, &file.host).unwrap(), RepoCredentials::Set(_)),
            "the flag wins"
        );

        let other_host = write("gitlab", "https://u:ghp_S3cr3t@gitlab.com\n", 0o600);
        let open = write("open", "https://u:ghp_S3cr3t@github.com\n", 0o644);
        let group = write("group", "https://u:ghp_S3cr3t@github.com\n", 0o660);
        let empty = write("empty", "", 0o600);
        let two = write("two", "https://u:ghp_S3cr3t@github.com\nhttps://v:ghp_S3cr3t@github.com\n", 0o600);
        let dir_path = dir.path().display().to_string();
        let local_repo = Some("file:///srv/IMAGE-server");
        for (flag, repo, says) in [
            (
                other_host,
                None,
                "the credential is for gitlab.com, and the repository https://github.com/Shared-Reality-Lab/IMAGE-server.git is on github.com",
            ),
            (open.clone(), None, "mode 0644 lets others than its owner read or change the token"),
            (group, None, "mode 0660"),
            (empty, None, "no credential in it"),
            (two, None, "line 2: a second credential"),
            (dir_path, None, "not a regular file"),
            (format!("{}/absent", dir.path().display()), None, "cannot read it"),
            (String::new(), None, "--repo-credentials is empty"),
            (good.clone(), local_repo, "is not fetched over https://"),
        ] {
            let e = creds(Some(flag.clone()), repo, &none).err().unwrap_or_else(|| panic!("{flag} taken"));
            assert!(e.message.contains(says), "{flag}: {e}");
            assert!(e.message.starts_with("--repo-credentials"), "{e}");
            assert!(!e.message.contains("S3cr3t") && !e.hint.as_deref().unwrap_or_default().contains("S3cr3t"), "{e}");
        }
        let e = creds(Some(open.clone()), None, &none).unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some(format!("chmod 600 {open}, then run again; nothing was changed on the host").as_str())
        );
        // --repo-url with credentials in it: the hint names the file instead.
        let e = creds(None, Some("https://me:ghp_S3cr3t@github.com/lab/IMAGE-server.git"), &none).unwrap_err();
        assert!(e.hint.unwrap().contains("--repo-credentials PATH"));
    }

    #[test]
    fn the_acme_server_is_production_staging_or_the_one_given() {
        let file =
            parse("[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nno_llm = true\n").unwrap();
        let server = |a: HostStepArgs| host_steps(&a, &file.host, &hooks(), true).unwrap().image.unwrap().acme_server;
        assert_eq!(server(HostStepArgs::default()), settings::LETS_ENCRYPT);
        assert_eq!(server(HostStepArgs { acme_staging: true, ..Default::default() }), settings::LETS_ENCRYPT_STAGING);
        let other = "https://acme.example.org/directory";
        assert_eq!(server(HostStepArgs { acme_server: Some(other.into()), ..Default::default() }), other);
        let staging_file =
            parse("[host]\ndomain = \"image.example.org\"\nacme_email = \"ops@example.org\"\nacme_staging = true\nno_llm = true\n")
                .unwrap();
        let from_file = host_steps(&HostStepArgs::default(), &staging_file.host, &hooks(), true).unwrap();
        assert_eq!(from_file.image.unwrap().acme_server, settings::LETS_ENCRYPT_STAGING);
    }

    #[test]
    fn verify_and_update_read_the_host_table_under_their_flags() {
        let file = parse(
            "[host]\nbase_dir = \"/srv/image\"\ndomain = \"image.example.org\"\nno_gpu = true\n\
             imageup_timeout = \"2h\"\nhealth_timeout = \"9m\"\nregistry_tag = \"unstable\"\nno_imageup = true\n",
        )
        .unwrap();
        let mut a = UpdateArgs { health_timeout: Some("1m".into()), ..Default::default() };
        a.server.host = Some("admin@203.0.113.7".into());
        a.server.domain = Some("other.example.org".into());
        let u = update(&a, &file, &hooks()).unwrap();
        assert_eq!(u.server.report.base_dir, "/srv/image");
        assert_eq!(u.server.report.domain.as_deref(), Some("other.example.org"), "the flag wins");
        assert!(!u.server.report.gpu);
        assert!(!u.imageup, "a --no-imageup server is updated without imageup");
        assert_eq!(u.imageup_timeout, Duration::from_secs(7200));
        assert_eq!(u.health_timeout, Duration::from_secs(60), "the flag wins");
        let v = server(&a.server, &ConfigFile::default(), &hooks()).unwrap();
        assert_eq!(v.report.base_dir, settings::DEFAULT_BASE_DIR);
        assert!(v.report.gpu, "no file, no change");
    }

    /// What runs by itself: the flags over the file; bad schedules and a
    /// timer-driven update of a production server are usage errors.
    #[test]
    fn upkeep_flags_and_keys() {
        let upkeep = |s: &CreateSettings| s.steps.image.as_ref().unwrap().upkeep.clone();
        let d = create_with(&|_| {}, &ConfigFile::default()).unwrap();
        assert_eq!(upkeep(&d), Upkeep::default());
        let file = parse(
            "[host]\nimage_profile = \"test\"\nauto_update = \"daily\"\nprune = \"off\"\nhealthcheck_every = \"1h\"\n\
             no_start_at_boot = true\n",
        )
        .unwrap();
        let s = create_with(&|a| a.steps.healthcheck_every = Some("5m".into()), &file).unwrap();
        let u = upkeep(&s);
        assert!(!u.start_at_boot);
        assert_eq!(u.healthcheck_every, Some(Duration::from_secs(300)), "the flag wins");
        assert_eq!(u.auto_update.as_deref(), Some("*-*-* 04:00:00 UTC"));
        assert_eq!(u.prune, None);
        let s = create_with(&|a| a.steps.auto_update = Some("23:05".into()), &file).unwrap();
        assert_eq!(upkeep(&s).auto_update.as_deref(), Some("*-*-* 23:05:00 UTC"));
        for bad in ["24:00", "7:30", "nightly", "03:60"] {
            assert!(create_with(&|a| a.steps.auto_update = Some(bad.into()), &file).is_err(), "{bad}");
        }
        let production = create_with(&|a| a.steps.auto_update = Some("daily".into()), &ConfigFile::default());
        assert!(production.err().unwrap().to_string().contains("production"));
        for (flag, value) in [("healthcheck", "30s"), ("healthcheck", "often"), ("prune", "hourly")] {
            let r = create_with(
                &|a| match flag {
                    "healthcheck" => a.steps.healthcheck_every = Some(value.into()),
                    _ => a.steps.prune = Some(value.into()),
                },
                &file,
            );
            assert!(r.is_err(), "{flag} {value}");
        }
        let off = create_with(&|a| a.steps.healthcheck_every = Some("off".into()), &file).unwrap();
        assert_eq!(upkeep(&off).healthcheck_every, None);
    }

    /// --llm local on an instance whose GPU cannot hold a model beside
    /// IMAGE's services is refused before launch, with the numbers.
    #[test]
    fn a_local_llm_too_big_for_the_instance_is_refused() {
        let local = |itype: &'static str| {
            move |a: &mut CreateArgs| {
                a.steps.no_llm = false;
                a.steps.llm = Some("local".into());
                a.instance_type = Some(itype.into());
            }
        };
        let err = create_with(&local("g4dn.xlarge"), &ConfigFile::default()).unwrap_err();
        assert!(err.message.contains("g4dn.xlarge (NVIDIA T4)") && err.message.contains("GiB left"), "{err}");
        assert!(create_with(&local("g5.xlarge"), &ConfigFile::default()).is_ok());
        assert!(create_with(&local("g6e.xlarge"), &ConfigFile::default()).is_ok());
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file = parse("[ec2]\ninstance_type = \"g5.2xlarge\"\nvolume_size = 500\n").unwrap();
        let s = create_with(&|a| a.volume_size = Some("200".into()), &file).unwrap();
        assert_eq!(s.instance_type, "g5.2xlarge");
        assert_eq!(s.volume_size, 200);
        assert_eq!(s.volume_type, "gp3");
        assert_eq!(s.ssh_cidrs, ["0.0.0.0/0", "::/0"]);
    }

    /// --domain brings an Elastic IP and Route 53 records, each of which can
    /// be switched off by flag or config key, also with --no-stack.
    #[test]
    fn a_domain_brings_an_elastic_ip_and_dns_records_unless_switched_off() {
        let none = ConfigFile::default();
        let with_domain = |a: &mut CreateArgs| {
            a.steps.domain = Some("Srv.Lab.Example.org".into());
            a.steps.acme_email = Some("ops@example.org".into());
        };
        let s = create_with(&with_domain, &none).unwrap();
        assert!(s.elastic_ip);
        assert_eq!(s.dns_domain.as_deref(), Some("srv.lab.example.org"));
        let s = create_with(&|a| a.no_elastic_ip = true, &none).unwrap();
        assert!(!s.elastic_ip && s.dns_domain.is_none(), "no domain: nothing to switch off, and no error");
        let s = create_with(
            &|a| {
                with_domain(a);
                a.no_elastic_ip = true;
                a.no_dns = true;
            },
            &none,
        )
        .unwrap();
        assert!(!s.elastic_ip && s.dns_domain.is_none());
        let file = parse("[ec2]\nno_elastic_ip = true\nno_dns = true\n").unwrap();
        let s = create_with(&with_domain, &file).unwrap();
        assert!(!s.elastic_ip && s.dns_domain.is_none(), "from the file");
        let s = create_with(
            &|a| {
                a.steps.domain = Some("srv.example.org".into());
                a.steps.no_stack = true;
            },
            &none,
        )
        .unwrap();
        assert_eq!((s.elastic_ip, s.dns_domain.as_deref()), (true, Some("srv.example.org")), "--no-stack");
        for bad in ["srv..example.org", "srv_example", "-srv.example.org", "srv.example.org/x"] {
            let e = create_with(
                &|a| {
                    a.steps.domain = Some(bad.into());
                    a.steps.no_stack = true;
                },
                &none,
            )
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.message.starts_with("--domain"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let file = ConfigFile::default();
        assert!(create_with(&|a| a.ttl = Some("soon".into()), &file).is_err());
        assert!(create_with(&|a| a.ttl = Some("100ms".into()), &file).is_err());
        assert!(create_with(&|a| a.ssh_cidr = vec!["10.0.0.0/33".into()], &file).is_err());
        assert!(create_with(&|a| a.ami = Some("ubuntu".into()), &file).is_err());
        assert!(create_with(&|a| a.aws.region = Some("us-est-1".into()), &file).is_err());
        assert!(create_with(&|a| a.spot_only = true, &file).is_err());
        assert!(create_with(&|a| a.volume_type = Some("ssd".into()), &file).is_err());
        assert!(create_with(&|a| a.steps.nvidia_driver = Some("535;rm".into()), &file).is_err());
        assert!(create_with(&|a| a.steps.docker_repo = Some("https://x".into()), &file).is_err());
        assert!(create_with(&|a| a.steps.reboot_timeout = Some("0s".into()), &file).is_err());
        assert!(create_with(&|a| a.ttl = Some("4h".into()), &file).is_ok());
        let e = create_with(&|a| a.volume_size = Some("-5".into()), &file).err().unwrap();
        assert_eq!(e.message, "--volume-size -5 is not a size: give whole GiB from 8 to 65536");
        let huge = parse("[ec2]\nvolume_size = 9999999999\n").unwrap();
        let e = create_with(&|_| {}, &huge).err().unwrap();
        assert!(e.message.starts_with("config file: [ec2] volume_size = 9999999999 is not a size"), "{e}");
        let gp3 = parse("[ec2]\nvolume_throughput = 1000\nvolume_iops = 4000\n").unwrap();
        let s = create_with(&|_| {}, &gp3).unwrap();
        assert_eq!((s.volume_throughput, s.volume_iops), (Some(1000), Some(4000)));
        let e = create_with(&|a| a.volume_iops = Some("3000".into()), &gp3).err().unwrap();
        assert!(e.message.starts_with("--volume-throughput 1000 needs 4000 IOPS"), "the flag's IOPS count: {e}");
        let e = create_with(&|a| a.volume_type = Some("gp2".into()), &gp3).err().unwrap();
        assert!(e.message.contains("are for gp3 volumes"), "{e}");
        let e = create_with(&|a| a.ttl = Some("-4h".into()), &file).err().unwrap();
        assert_eq!(e.message, "--ttl \"-4h\" is not a duration of at least 1s: it is negative");
    }

    /// Values that cannot be right are refused, each naming its flag;
    /// a URL's credentials are never shown back, and the hint says where
    /// they go.
    #[test]
    fn values_that_cannot_be_right_are_refused() {
        let file = ConfigFile::default();
        let refused = |f: &dyn Fn(&mut CreateArgs)| create_with(f, &file).expect_err("refused");
        assert!(refused(&|a| a.subnet = Some("subnet-123".into())).message.starts_with("--subnet"));
        assert!(create_with(&|a| a.subnet = Some("subnet-0123456789abcdef0".into()), &file).is_ok());
        for bad in ["g5", "{{x}}", "G5.xlarge", "g5.xlarge\n"] {
            assert!(refused(&|a| a.instance_type = Some(bad.into())).message.starts_with("--instance-type"), "{bad}");
        }
        assert!(create_with(&|a| a.instance_type = Some("g6e.2xlarge".into()), &file).is_ok());
        assert!(refused(&|a| a.ami = Some("ami-123".into())).message.contains("is not an AMI id"));
        assert!(refused(&|a| a.aws.profile = Some("a b".into())).message.starts_with("--profile"));
        assert!(create_with(&|a| a.aws.profile = Some("lab".into()), &file).is_ok());
        for bad in ["1000", &"a".repeat(33), "-u"] {
            assert!(refused(&|a| a.ssh_user = Some(bad.into())).message.starts_with("--ssh-user"), "{bad}");
        }
        let e = refused(&|a| a.ttl = Some("366d".into()));
        assert_eq!(e.message, "--ttl \"366d\" is longer than 365d, the most any time limit or expiry takes");
        assert!(create_with(&|a| a.ttl = Some("365d".into()), &file).is_ok());
        let e = refused(&|a| a.steps.repo_url = Some("https://me:ghp_s3cr3t@github.com/x/y.git".into()));
        assert!(e.message.starts_with("--repo-url: ") && !e.message.contains("s3cr3t"), "{e}");
        assert_eq!(e.hint.as_deref(), Some(REPO_CREDENTIALS_HINT));
        let e = refused(&|a| a.steps.overpass_url = Some("https://example.org/{{x}}".into()));
        assert!(
            e.message.starts_with("--overpass-url: ") && e.hint.unwrap().contains("overpass-api.de"),
            "{}",
            e.message
        );
        let e = refused(&|a| a.steps.nvidia_repo_key = Some("http://example.org/key".into()));
        assert!(e.message.contains("is not an https:// URL"), "{e}");
        let e = refused(&|a| {
            a.steps.no_llm = false;
            a.steps.llm = Some("local".into());
            a.steps.llm_model = Some("a\nb".into());
        });
        assert_eq!(e.message, "--llm-model \"a\\nb\" is not a model id");
        for bad in ["root@{{x}}", "{{x}}@example.org", "root@999", "root@exa mple.org"] {
            let a = BootstrapArgs { host: bad.into(), ..Default::default() };
            let e = bootstrap(&a, &HostConfig::default(), &hooks()).err().expect("refused");
            assert!(e.message.starts_with("--host"), "{bad}: {e}");
        }
        // verify --host: the flags for an EC2 server are checked all the same.
        let mut v = ServerArgs { host: Some("admin@203.0.113.7".into()), ..Default::default() };
        v.aws.region = Some("{{x}}".into());
        assert!(server(&v, &file, &hooks()).is_err());
        v.aws.region = None;
        v.ssh_user = Some("{{x}}".into());
        assert!(server(&v, &file, &hooks()).is_err());
    }

    #[test]
    fn bad_host_is_a_usage_error() {
        let a = BootstrapArgs { host: "a@b@c:x".into(), ..Default::default() };
        let e = bootstrap(&a, &HostConfig::default(), &hooks()).err().expect("refused");
        assert!(e.message.starts_with("--host:"), "{}", e.message);
        let mut ok = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
        ok.steps.no_llm = true;
        let s = bootstrap(&ok, &HostConfig::default(), &hooks()).unwrap();
        assert_eq!(s.steps.nvidia_driver_branch, settings::DEFAULT_NVIDIA_DRIVER_BRANCH);
        assert!(s.steps.gpu);
    }

    /// bootstrap --ttl: a duration from now, as `ec2 create --ttl` reads it,
    /// or `off`; without it the host's expiry is kept. Bad input is refused
    /// naming the flag and both forms.
    #[test]
    fn bootstrap_ttl_is_a_duration_or_off() {
        let with = |ttl: Option<&str>| {
            let mut a =
                BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ttl: ttl.map(str::to_string), ..Default::default() };
            a.steps.no_llm = true;
            bootstrap(&a, &HostConfig::default(), &hooks()).map(|s| s.steps.expiry)
        };
        assert_eq!(with(None).unwrap(), settings::Expiry::Keep);
        assert_eq!(with(Some("off")).unwrap(), settings::Expiry::Off);
        let at = with(Some("4h")).unwrap();
        let at = at.at().expect("a time").parse::<jiff::Timestamp>().unwrap();
        let left = at.duration_since(jiff::Timestamp::now()).as_secs();
        assert!((4 * 3600 - 5..=4 * 3600).contains(&left), "{left}");
        for bad in ["-1h", "soon", "0s", "never"] {
            let e = with(Some(bad)).err().unwrap_or_else(|| panic!("{bad} taken"));
            assert!(e.message.starts_with(&format!("--ttl {bad:?} is not a duration")), "{e}");
            assert!(e.hint.as_deref().is_some_and(|h| h.contains("`off`")), "{e:?}");
        }
    }

    /// --autostop (bootstrap and ec2 create): a duration of at least 10 s or
    /// `off`; without it the host's is kept. Refused with --no-stack (but
    /// `off`) and, on ec2 create, with --spot; bad input names the flag and
    /// both forms.
    #[test]
    fn autostop_is_a_duration_or_off_and_needs_the_stack() {
        let with = |value: &str, no_stack: bool| {
            let mut a = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
            a.steps.no_llm = true;
            a.steps.no_stack = no_stack;
            a.steps.autostop = Some(value.to_string());
            bootstrap(&a, &HostConfig::default(), &hooks()).map(|s| s.steps.autostop)
        };
        let mut keep = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
        keep.steps.no_llm = true;
        assert_eq!(
            bootstrap(&keep, &HostConfig::default(), &hooks()).unwrap().steps.autostop,
            settings::Autostop::Keep
        );
        assert_eq!(with("30m", false).unwrap(), settings::Autostop::After(Duration::from_secs(1800)));
        assert_eq!(with("off", false).unwrap(), settings::Autostop::Off);
        assert_eq!(with("off", true).unwrap(), settings::Autostop::Off);
        for bad in ["-1h", "soon", "5s", "0s", "366d"] {
            let e = with(bad, false).err().unwrap_or_else(|| panic!("{bad} taken"));
            assert!(e.message.starts_with(&format!("--autostop {bad:?}")), "{e}");
        }
        let e = with("5s", false).err().unwrap();
        assert!(e.message.contains("at least 10s") && e.hint.as_deref().is_some_and(|h| h.contains("`off`")), "{e:?}");
        let e = with("30m", true).err().unwrap();
        assert!(e.message.contains("with --no-stack"), "{e}");
        let file = ConfigFile::default();
        let e = create_with(
            &|a| {
                a.spot = true;
                a.steps.autostop = Some("30m".into());
            },
            &file,
        )
        .err()
        .unwrap();
        assert!(e.message.contains("cannot be stopped"), "{e}");
        assert!(create_with(&|a| a.steps.autostop = Some("30m".into()), &file).is_ok());
    }
}
