//! `verify` and `update`: which server they talk to (an EC2 server by
//! name, or any host), and what they check and change.

use std::net::SocketAddr;
use std::time::Duration;

use image_provision_playbooks::report::ReportOptions;
use image_provision_playbooks::settings::{self, Config};
use image_provision_playbooks::validate::{self};
use image_provision_provision::AwsOptions;
use image_provision_remote::{HostKeyPolicy, Identity, Target};

use super::*;
use crate::args::{ServerArgs, UpdateArgs};
use crate::config::ConfigFile;
use crate::errors::UsageError;

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

pub(super) fn server(a: &ServerArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<ServerSettings, UsageError> {
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
    /// Upgrade the held NVIDIA driver first, or move it to the branch
    /// (and reboot when it changed).
    pub upgrade_driver: Option<DriverUpgrade>,
    /// `--rollback`: no update, back to what ran before the last good one.
    pub rollback: bool,
}

/// `update --upgrade-driver`: the branch to be on and the reboot's time
/// limit.
pub struct DriverUpgrade {
    /// Ubuntu's branch (--nvidia-driver's form): a lower one moves to it.
    pub branch: String,
    pub reboot_timeout: Duration,
}

pub(super) fn update(a: &UpdateArgs, file: &ConfigFile, hooks: &TestHooks) -> Result<UpdateSettings, UsageError> {
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
    // Checked even without --upgrade-driver (it may come from the
    // environment, for bootstrap): bad input is refused either way.
    let branch =
        checked("--nvidia-driver", a.nvidia_driver.as_ref(), f.nvidia_driver.as_ref(), validate::check_driver_branch)
            .map_err(|e| e.hint(DRIVER_BRANCH_HINT))?
            .unwrap_or_else(|| settings::DEFAULT_NVIDIA_DRIVER_BRANCH.to_string());
    let upgrade_driver = a
        .upgrade_driver
        .then(|| {
            duration_or(
                "--reboot-timeout",
                a.reboot_timeout.as_ref().or(f.reboot_timeout.as_ref()),
                Config::default().reboot_timeout,
            )
            .map(|reboot_timeout| DriverUpgrade { branch: branch.clone(), reboot_timeout })
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
