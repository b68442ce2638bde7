//! Parse once, resolve once: the parsed arguments (flags and their
//! environment variables), the config file and the built-in defaults become
//! one checked settings value per command, here and nowhere else. Flags beat
//! the file, which beats the defaults. Every check of the person's input is
//! made before anything connects, so bad input changes nothing. The
//! test-only environment hooks are read here too, in [`TestHooks`].
//!
//! One file per command group: [`ec2`] (`ec2 create`, `destroy`, `stop`,
//! `start`), [`host`] (`bootstrap` and the host steps `ec2 create` runs
//! too), [`server`] (`verify`, `update`), and [`aws`] (the AWS options
//! they share), [`ami`] (`ami bake`, `ami list`, `ami delete`), [`fleet`]
//! (`fleet create`, `scale`, `destroy`). The checks
//! every command uses stay here.

mod ami;
mod aws;
mod ec2;
mod fleet;
mod host;
mod server;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use image_provision_playbooks::settings;
use image_provision_playbooks::validate::{self, shown};
use image_provision_provision::AwsOptions;
use image_provision_remote::{HostKeyPolicy, Identity, Target};

use crate::args::{AmiCommand, Command, Ec2Command, FleetCommand, ListArgs};
use crate::config::{ConfigFile, HostConfig};
use crate::errors::UsageError;

pub use ami::{AmiDeleteSettings, BakeSettings};
use ami::{ami_delete, bake};
use aws::{aws_options, check_region_name};
pub use ec2::{CreateSettings, DestroySettings, StartSettings, StopSettings};
use ec2::{create, destroy, start, stop};
pub use fleet::{FleetDestroySettings, FleetSettings};
use fleet::{fleet, fleet_destroy};
pub use host::BootstrapSettings;
use host::{bootstrap, host_steps};
pub use server::{DriverUpgrade, Server, ServerSettings, UpdateSettings};
use server::{server, update};

pub const DEFAULT_SSH_USER: &str = "ubuntu";

/// What a bad --nvidia-driver is told.
const DRIVER_BRANCH_HINT: &str =
    "e.g. 580-server (the default), 570-server or 580-server-open (the package is nvidia-driver-BRANCH)";

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
    Bake(BakeSettings),
    AmiList { aws: AwsOptions, json: bool },
    AmiDelete(AmiDeleteSettings),
    Fleet(FleetSettings),
    FleetList { aws: AwsOptions, json: bool },
    FleetDestroy(FleetDestroySettings),
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
        Command::Ami(AmiCommand::Bake(a)) => Resolved::Bake(bake(a, file, hooks)?),
        Command::Ami(AmiCommand::List(a)) => {
            Resolved::AmiList { aws: aws_options(&a.aws, &file.ec2, hooks)?, json: a.json }
        }
        Command::Ami(AmiCommand::Delete(a)) => Resolved::AmiDelete(ami_delete(a, file, hooks)?),
        Command::Fleet(FleetCommand::Create(a)) => Resolved::Fleet(fleet(a, file, hooks, false)?),
        Command::Fleet(FleetCommand::Scale(a)) => Resolved::Fleet(fleet(a, file, hooks, true)?),
        Command::Fleet(FleetCommand::List(ListArgs { aws, json })) => {
            Resolved::FleetList { aws: aws_options(aws, &file.ec2, hooks)?, json: *json }
        }
        Command::Fleet(FleetCommand::Destroy(a)) => Resolved::FleetDestroy(fleet_destroy(a, file, hooks)?),
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
