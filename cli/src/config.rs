//! The configuration file and the layering of settings: flags (and their
//! environment variables) beat the file, which beats built-in defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::args::{CreateArgs, Ubuntu};
use crate::errors::UsageError;

pub const DEFAULT_CONFIG: &str = "image-provision.toml";
pub const DEFAULT_INSTANCE_TYPE: &str = "g5.xlarge";
pub const DEFAULT_VOLUME_SIZE: i32 = 1000;
pub const DEFAULT_VOLUME_TYPE: &str = "gp3";
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// The whole file. Unknown keys are errors: a misspelt option silently
/// ignored is worse than a refusal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub ec2: Ec2Config,
    /// The host steps' options, for `bootstrap` and `ec2 create` alike.
    #[serde(default)]
    pub host: HostConfig,
}

/// `[host]`: every option of the host steps, named as the flags are.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub no_gpu: Option<bool>,
    pub force_distro: Option<bool>,
    pub nvidia_driver: Option<String>,
    pub nvidia_repo: Option<String>,
    pub nvidia_repo_key: Option<String>,
    pub docker_repo: Option<String>,
    pub docker_repo_key: Option<String>,
    pub reboot_timeout: Option<String>,
    pub cloud_init_timeout: Option<String>,
    pub apt_lock_timeout: Option<String>,
    pub no_stack: Option<bool>,
    pub domain: Option<String>,
    pub acme_email: Option<String>,
    pub registry_tag: Option<String>,
    pub image_profile: Option<String>,
    /// NAME = PATH, e.g. `"llm.env" = "/home/me/image/llm.env"`.
    pub env_files: Option<std::collections::BTreeMap<String, PathBuf>>,
    pub pii_logging: Option<bool>,
    pub base_dir: Option<String>,
    pub repo_url: Option<String>,
    pub repo_branch: Option<String>,
    pub no_imageup: Option<bool>,
    pub imageup_timeout: Option<String>,
    pub health_timeout: Option<String>,
}

/// A value no flag (nor its environment variable) set comes from the file.
fn fill(slot: &mut Option<String>, from: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(from);
    }
}

/// A switch is on if the flag or the file turns it on.
fn flag(slot: &mut bool, from: Option<bool>) {
    *slot = *slot || from.unwrap_or(false);
}

/// Fill what no flag (nor its environment variable) set from the file's
/// `[host]` table; the steps' own defaults apply after that.
pub fn apply_host_file(a: &mut crate::args::HostStepArgs, f: &HostConfig) -> Result<(), UsageError> {
    flag(&mut a.no_gpu, f.no_gpu);
    flag(&mut a.force_distro, f.force_distro);
    flag(&mut a.no_stack, f.no_stack);
    flag(&mut a.pii_logging, f.pii_logging);
    flag(&mut a.no_imageup, f.no_imageup);
    for (slot, from) in [
        (&mut a.nvidia_driver, &f.nvidia_driver),
        (&mut a.nvidia_repo, &f.nvidia_repo),
        (&mut a.nvidia_repo_key, &f.nvidia_repo_key),
        (&mut a.docker_repo, &f.docker_repo),
        (&mut a.docker_repo_key, &f.docker_repo_key),
        (&mut a.reboot_timeout, &f.reboot_timeout),
        (&mut a.cloud_init_timeout, &f.cloud_init_timeout),
        (&mut a.apt_lock_timeout, &f.apt_lock_timeout),
        (&mut a.domain, &f.domain),
        (&mut a.acme_email, &f.acme_email),
        (&mut a.registry_tag, &f.registry_tag),
        (&mut a.base_dir, &f.base_dir),
        (&mut a.repo_url, &f.repo_url),
        (&mut a.repo_branch, &f.repo_branch),
        (&mut a.imageup_timeout, &f.imageup_timeout),
        (&mut a.health_timeout, &f.health_timeout),
    ] {
        fill(slot, from);
    }
    if a.image_profile.is_none()
        && let Some(p) = &f.image_profile
    {
        use clap::ValueEnum;
        a.image_profile = Some(crate::args::ImageProfile::from_str(p, false).map_err(|_| {
            UsageError::new(format!("config file: [host] image_profile = {p:?} is not a profile"))
                .hint("use \"production\" or \"test\"")
        })?);
    }
    if a.env_file.is_empty()
        && let Some(files) = &f.env_files
    {
        a.env_file = files.iter().map(|(name, path)| format!("{name}={}", path.display())).collect();
    }
    Ok(())
}

/// `verify` and `update` read the same `[host]` table as `bootstrap` and
/// `ec2 create`: the file that set a server up describes where its stack is
/// (base_dir), its site (domain), whether it has a GPU (no_gpu) or a stack
/// at all (no_stack), and
/// `update` takes its time limits from it too. Flags and their environment
/// variables beat the file, as for the host steps. The other `[host]` keys
/// (repositories, registry tag, profile, env files, ...) are what bootstrap
/// writes to the host; verify and update neither need nor change them.
pub fn apply_server_file(a: &mut crate::args::ServerArgs, f: &HostConfig) {
    flag(&mut a.no_gpu, f.no_gpu);
    flag(&mut a.no_stack, f.no_stack);
    fill(&mut a.domain, &f.domain);
    fill(&mut a.base_dir, &f.base_dir);
}

/// [`apply_server_file`], and `update`'s time limits.
pub fn apply_update_file(a: &mut crate::args::UpdateArgs, f: &HostConfig) {
    apply_server_file(&mut a.server, f);
    flag(&mut a.no_imageup, f.no_imageup);
    fill(&mut a.imageup_timeout, &f.imageup_timeout);
    fill(&mut a.health_timeout, &f.health_timeout);
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub ami: Option<String>,
    pub ubuntu: Option<String>,
    pub instance_type: Option<String>,
    pub volume_size: Option<i32>,
    pub volume_type: Option<String>,
    pub subnet: Option<String>,
    pub ssh_cidr: Option<Vec<String>>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub spot: Option<bool>,
    pub spot_only: Option<bool>,
    pub ttl: Option<String>,
    pub ready_timeout: Option<String>,
}

/// Read the file named by `--config`, or ./image-provision.toml if present.
pub fn load(explicit: Option<&Path>) -> Result<(ConfigFile, Option<PathBuf>), UsageError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG);
            if !p.exists() {
                return Ok((ConfigFile::default(), None));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError::new(format!("cannot read config file {}: {e}", path.display()))
            .hint("pass an existing file with --config, or create one from examples/image-provision.toml")
    })?;
    let file = parse(&text).map_err(|msg| {
        UsageError::new(format!("config file {}: {msg}", path.display()))
            .hint("see examples/image-provision.toml for every option and its type")
    })?;
    Ok((file, Some(path)))
}

/// Parse the file's text; the error names the line and what is wrong.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        let what = e.message().to_owned();
        match line {
            Some(line) => format!("line {line}: {what}"),
            None => what,
        }
    })
}

/// A server name must be usable as a DNS label: it names resources and may
/// become part of a host name.
pub fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!("server name {name:?} is not a DNS label"))
            .hint("use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen, e.g. image-test-1"))
    }
}

pub fn parse_duration(what: &str, value: &str) -> Result<Duration, UsageError> {
    let d = humantime::parse_duration(value).map_err(|e| {
        UsageError::new(format!("{what} {value:?} is not a duration: {e}")).hint("write it like 30m, 4h or 2d")
    })?;
    if d.is_zero() {
        return Err(UsageError::new(format!("{what} must be longer than zero")));
    }
    Ok(d)
}

fn check_cidr(cidr: &str) -> Result<(), UsageError> {
    let bad = || {
        UsageError::new(format!("--ssh-cidr {cidr:?} is not a CIDR block"))
            .hint("write it like 203.0.113.7/32 or 2001:db8::/48")
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(())
}

/// `ec2 create` settings after layering and validation.
#[derive(Debug, Clone)]
pub struct CreateSettings {
    pub name: String,
    pub region: Option<String>,
    pub fallback_region: Option<String>,
    pub ami: Option<String>,
    pub ubuntu: Ubuntu,
    pub instance_type: String,
    pub volume_size: i32,
    pub volume_type: String,
    pub subnet: Option<String>,
    pub ssh_cidrs: Vec<String>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_user: String,
    pub spot: bool,
    pub spot_only: bool,
    pub ttl: Option<Duration>,
    pub ready_timeout: Duration,
    pub no_bootstrap: bool,
    pub dry_run: bool,
}

pub fn resolve_create(args: &CreateArgs, file: &Ec2Config) -> Result<CreateSettings, UsageError> {
    check_name(&args.name)?;
    let ubuntu = match (&args.ubuntu, &file.ubuntu) {
        (Some(u), _) => *u,
        (None, Some(s)) => match s.as_str() {
            "22.04" => Ubuntu::Jammy,
            "24.04" => Ubuntu::Noble,
            other => {
                return Err(UsageError::new(format!("config file: ubuntu = {other:?} is not supported"))
                    .hint("use \"22.04\" or \"24.04\""));
            }
        },
        (None, None) => Ubuntu::Jammy,
    };
    let ami = args.ami.clone().or_else(|| file.ami.clone());
    if let Some(ami) = &ami
        && !(ami.starts_with("ami-") && ami.len() > 4 && ami[4..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(UsageError::new(format!("{ami:?} is not an AMI id")).hint("AMI ids look like ami-0123456789abcdef0"));
    }
    let volume_size = args.volume_size.or(file.volume_size).unwrap_or(DEFAULT_VOLUME_SIZE);
    if !(8..=65536).contains(&volume_size) {
        return Err(UsageError::new(format!("volume size {volume_size} GiB is out of range"))
            .hint("give 8 to 65536 GiB; IMAGE's images want the default 1000"));
    }
    let volume_type = args.volume_type.clone().or_else(|| file.volume_type.clone()).unwrap_or(DEFAULT_VOLUME_TYPE.into());
    const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];
    if !VOLUME_TYPES.contains(&volume_type.as_str()) {
        return Err(UsageError::new(format!("volume type {volume_type:?} is not an EBS volume type"))
            .hint(format!("use one of {}", VOLUME_TYPES.join(", "))));
    }
    let ssh_cidrs = if !args.ssh_cidr.is_empty() {
        args.ssh_cidr.clone()
    } else {
        file.ssh_cidr.clone().unwrap_or_else(|| vec!["0.0.0.0/0".into(), "::/0".into()])
    };
    for c in &ssh_cidrs {
        check_cidr(c)?;
    }
    let spot = args.spot || file.spot.unwrap_or(false);
    let spot_only = args.spot_only || file.spot_only.unwrap_or(false);
    if spot_only && !spot {
        return Err(UsageError::new("--spot-only needs --spot"));
    }
    let ttl = args.ttl.clone().or_else(|| file.ttl.clone()).map(|t| parse_duration("--ttl", &t)).transpose()?;
    let ready_timeout = args
        .ready_timeout
        .clone()
        .or_else(|| file.ready_timeout.clone())
        .map(|t| parse_duration("--ready-timeout", &t))
        .transpose()?
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    let ssh_user = args.ssh_user.clone().or_else(|| file.ssh_user.clone()).unwrap_or_else(|| "ubuntu".into());
    if ssh_user.is_empty() || !ssh_user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(UsageError::new(format!("--ssh-user {ssh_user:?} is not a user name")).hint("the AMI's login user, e.g. ubuntu"));
    }
    let region = args.aws.region.clone();
    for r in region.iter().chain(file.region.iter()) {
        image_provision_provision::check_region(r).map_err(|_| unknown_region(r))?;
    }
    Ok(CreateSettings {
        name: args.name.clone(),
        region,
        fallback_region: file.region.clone(),
        ami,
        ubuntu,
        instance_type: args.instance_type.clone().or_else(|| file.instance_type.clone()).unwrap_or(DEFAULT_INSTANCE_TYPE.into()),
        volume_size,
        volume_type,
        subnet: args.subnet.clone().or_else(|| file.subnet.clone()),
        ssh_cidrs,
        ssh_key: args.ssh_key.clone().or_else(|| file.ssh_key.clone()),
        ssh_user,
        spot,
        spot_only,
        ttl,
        ready_timeout,
        no_bootstrap: args.no_bootstrap,
        dry_run: args.dry_run,
    })
}

pub fn unknown_region(region: &str) -> UsageError {
    UsageError::new(format!("unknown AWS region {region:?}")).hint(format!(
        "use one of: {}",
        image_provision_provision::KNOWN_REGIONS.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn config_errors_name_the_line() {
        let err = parse("[ec2]\ninstance_type = \"g5.xlarge\"\nvolume_size = \"big\"\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = parse("[ec2]\ninstance_typ = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("instance_typ"), "{err}");
        let err = parse("[ec2\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let file = parse(include_str!("../../examples/image-provision.toml")).expect("examples/image-provision.toml");
        let args = CreateArgs { name: "x".into(), ..Default::default() };
        let s = resolve_create(&args, &file.ec2).unwrap();
        assert_eq!((s.instance_type.as_str(), s.volume_size, s.volume_type.as_str()), ("g5.xlarge", 1000, "gp3"));
        let mut host = crate::args::HostStepArgs::default();
        apply_host_file(&mut host, &file.host).unwrap();
        assert_eq!(host.registry_tag.as_deref(), Some("latest"));
        assert_eq!(host.image_profile, Some(crate::args::ImageProfile::Production));
    }

    #[test]
    fn host_options_come_from_the_file_unless_a_flag_set_them() {
        let file = parse(
            "[host]\ndomain = \"image.example.org\"\nregistry_tag = \"unstable\"\nno_gpu = true\n\
             image_profile = \"test\"\nenv_files = { \"llm.env\" = \"/secrets/llm.env\" }\n",
        )
        .unwrap();
        let mut args = crate::args::HostStepArgs { registry_tag: Some("v1".into()), ..Default::default() };
        apply_host_file(&mut args, &file.host).unwrap();
        assert_eq!(args.domain.as_deref(), Some("image.example.org"));
        assert_eq!(args.registry_tag.as_deref(), Some("v1"), "the flag wins");
        assert!(args.no_gpu);
        assert_eq!(args.image_profile, Some(crate::args::ImageProfile::Test));
        assert_eq!(args.env_file, ["llm.env=/secrets/llm.env"]);
        let bad = parse("[host]\nimage_profile = \"staging\"\n").unwrap();
        assert!(apply_host_file(&mut Default::default(), &bad.host).is_err());
        assert!(parse("[host]\ndomian = \"x\"\n").unwrap_err().contains("unknown field `domian`"));
    }

    #[test]
    fn verify_and_update_read_the_host_table_under_their_flags() {
        let file = parse(
            "[host]\nbase_dir = \"/srv/image\"\ndomain = \"image.example.org\"\nno_gpu = true\n\
             imageup_timeout = \"2h\"\nhealth_timeout = \"9m\"\nregistry_tag = \"unstable\"\nno_imageup = true\n",
        )
        .unwrap();
        let mut a = crate::args::UpdateArgs { health_timeout: Some("1m".into()), ..Default::default() };
        a.server.domain = Some("other.example.org".into());
        apply_update_file(&mut a, &file.host);
        assert_eq!(a.server.base_dir.as_deref(), Some("/srv/image"));
        assert_eq!(a.server.domain.as_deref(), Some("other.example.org"), "the flag wins");
        assert!(a.server.no_gpu);
        assert!(a.no_imageup, "a --no-imageup server is updated without imageup");
        assert_eq!(a.imageup_timeout.as_deref(), Some("2h"));
        assert_eq!(a.health_timeout.as_deref(), Some("1m"), "the flag wins");
        let mut v = crate::args::ServerArgs::default();
        apply_server_file(&mut v, &HostConfig::default());
        assert!(v.base_dir.is_none() && v.domain.is_none() && !v.no_gpu, "no file, no change");
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file = Ec2Config { instance_type: Some("g5.2xlarge".into()), volume_size: Some(500), ..Default::default() };
        let args = CreateArgs { name: "x".into(), volume_size: Some(200), ..Default::default() };
        let s = resolve_create(&args, &file).unwrap();
        assert_eq!(s.instance_type, "g5.2xlarge");
        assert_eq!(s.volume_size, 200);
        assert_eq!(s.volume_type, "gp3");
        assert_eq!(s.ssh_cidrs, ["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let file = Ec2Config::default();
        let with = |f: &dyn Fn(&mut CreateArgs)| {
            let mut a = CreateArgs { name: "x".into(), ..Default::default() };
            f(&mut a);
            resolve_create(&a, &file)
        };
        assert!(with(&|a| a.ttl = Some("soon".into())).is_err());
        assert!(with(&|a| a.ssh_cidr = vec!["10.0.0.0/33".into()]).is_err());
        assert!(with(&|a| a.ami = Some("ubuntu".into())).is_err());
        assert!(with(&|a| a.aws.region = Some("us-est-1".into())).is_err());
        assert!(with(&|a| a.spot_only = true).is_err());
        assert!(with(&|a| a.volume_type = Some("ssd".into())).is_err());
        assert!(with(&|a| a.ttl = Some("4h".into())).is_ok());
    }
}
