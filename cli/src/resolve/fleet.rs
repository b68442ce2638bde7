//! `fleet create`, `fleet scale`, `fleet destroy`: the fleet's own flags,
//! and `ec2 create`'s for every server, resolved once.

use std::time::Duration;

use image_provision_playbooks::settings::TlsEnd;
use image_provision_playbooks::validate::shown;
use image_provision_provision::AwsOptions;
use image_provision_provision::fleet::{MAX_FLEET_NAME, MAX_SERVERS, is_fleet_name};

use super::ec2::{CreateSettings, create};
use super::{TestHooks, aws_options, domain, duration_or};
use crate::args::{FleetCreateArgs, FleetDestroyArgs};
use crate::config::ConfigFile;
use crate::errors::UsageError;

/// How many servers are made and set up at once, by default: the host
/// steps mostly wait on the servers, not on this machine.
pub const DEFAULT_PARALLEL: u32 = 4;
/// The target group's deregistration delay, by default: a preprocess
/// request with the LLM takes up to a minute or so; AWS's own default is 5 minutes.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(120);
pub const DEFAULT_HEALTHY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct FleetSettings {
    pub name: String,
    pub count: u32,
    /// `fleet scale`: the fleet must exist.
    pub scale: bool,
    /// The fleet's public host name: ACM's certificate, the alias record.
    pub domain: Option<String>,
    pub parallel: u32,
    pub drain: Duration,
    pub healthy_timeout: Duration,
    /// Every server's settings, with the fleet's name; [`FleetSettings::server`]
    /// makes server N's.
    pub create: CreateSettings,
}

impl FleetSettings {
    /// Server `name`'s settings: in `subnet` (the fleet spreads its servers
    /// over the zones), tagged with the fleet, web traffic from the
    /// balancer's group only, serving `host` behind the balancer (which ends
    /// TLS: no ACME, no Elastic IP, no DNS record of its own).
    pub fn server(&self, name: &str, subnet: &str, balancer_group: &str, host: &str) -> CreateSettings {
        let mut s = self.create.clone();
        s.name = name.to_owned();
        s.subnet = Some(subnet.to_owned());
        s.elastic_ip = false;
        s.dns_domain = None;
        s.webui_dns_domain = None;
        s.fleet = Some(self.name.clone());
        s.web_from_group = Some(balancer_group.to_owned());
        s.quiet = true;
        if let Some(img) = s.steps.image.as_mut() {
            img.domain = Some(host.to_owned());
            img.tls_end = TlsEnd::Balancer;
            img.acme_email = None;
            img.dns_check = None;
            img.webui = None;
        }
        s
    }
}

fn refuse(flag: &str, why: &str) -> UsageError {
    UsageError::new(format!("{flag} does not apply to a fleet")).hint(why.to_owned())
}

pub(super) fn fleet(
    a: &FleetCreateArgs,
    file: &ConfigFile,
    hooks: &TestHooks,
    scale: bool,
) -> Result<FleetSettings, UsageError> {
    let name = &a.create.name;
    if !is_fleet_name(name) {
        return Err(UsageError::new(format!("fleet name {} is not a DNS label of at most {MAX_FLEET_NAME} characters", shown(name)))
            .hint("use lowercase letters, digits and hyphens, not starting or ending with a hyphen, e.g. image-web; its servers are NAME-1, NAME-2, ... and its balancer ipf-NAME (ELB's names hold 32 characters)"));
    }
    let least = if scale { 0 } else { 1 };
    if a.count < least || a.count > MAX_SERVERS {
        return Err(UsageError::new(format!("--count {} is not between {least} and {MAX_SERVERS}", a.count))
            .hint("give how many servers the fleet has, e.g. --count 3 (`fleet destroy` removes a fleet)"));
    }
    let parallel = a.parallel.unwrap_or(DEFAULT_PARALLEL);
    if !(1..=MAX_SERVERS).contains(&parallel) {
        return Err(UsageError::new(format!("--parallel {parallel} is not between 1 and {MAX_SERVERS}"))
            .hint("how many servers are made and set up at once, e.g. --parallel 4"));
    }
    let s = &a.create.steps;
    let balancer_tls = "the balancer ends TLS with an ACM certificate for --domain, validated through Route 53: its servers need no ACME certificate";
    if a.create.dry_run {
        return Err(refuse(
            "--dry-run",
            "`ec2 create NAME-1 --dry-run` with the same flags shows a server's calls; the fleet's front is its balancer, target group, listeners and certificate",
        ));
    }
    for (flag, given) in [
        ("--acme-email", s.acme_email.is_some()),
        ("--acme-staging", s.acme_staging),
        ("--acme-server", s.acme_server.is_some()),
    ] {
        if given {
            return Err(refuse(flag, balancer_tls));
        }
    }
    if s.llm_webui.is_some() || file.host.llm_webui.is_some() {
        return Err(refuse(
            "--llm-webui",
            "the web UI lives on one server, not behind a balancer: give it a server of its own with `ec2 create --llm-webui`",
        ));
    }
    if a.create.subnet.is_some() {
        return Err(refuse(
            "--subnet",
            "a fleet spreads its servers over the default VPC's zones, one subnet each, as its balancer spans them",
        ));
    }
    if a.create.no_elastic_ip {
        return Err(refuse(
            "--no-elastic-ip",
            "a fleet's servers never get an Elastic IP: the balancer is their address",
        ));
    }
    if s.no_stack {
        return Err(refuse(
            "--no-stack",
            "a server joins the balancer once its stack answers: without the stack it never would",
        ));
    }
    let domain = domain(s.domain.as_ref(), file.host.domain.as_ref())?;
    let drain = duration_or("--drain", a.drain.as_ref(), DEFAULT_DRAIN)?;
    let healthy_timeout = duration_or("--healthy-timeout", a.healthy_timeout.as_ref(), DEFAULT_HEALTHY_TIMEOUT)?;
    // Every server's own settings, without the fleet's domain and the
    // file's ACME and web UI settings (the balancer's business, or refused).
    let mut server_args = a.create.clone();
    server_args.steps.domain = None;
    let mut server_file = file.clone();
    server_file.host.domain = None;
    server_file.host.acme_email = None;
    server_file.host.acme_staging = None;
    server_file.host.acme_server = None;
    let create = create(&server_args, &server_file, hooks)?;
    Ok(FleetSettings { name: name.clone(), count: a.count, scale, domain, parallel, drain, healthy_timeout, create })
}

#[derive(Debug)]
pub struct FleetDestroySettings {
    pub name: String,
    pub aws: AwsOptions,
    pub yes: bool,
    pub json: bool,
}

pub(super) fn fleet_destroy(
    a: &FleetDestroyArgs,
    file: &ConfigFile,
    hooks: &TestHooks,
) -> Result<FleetDestroySettings, UsageError> {
    if !is_fleet_name(&a.name) {
        return Err(UsageError::new(format!("fleet name {} is not a fleet's name", shown(&a.name)))
            .hint("`image-provision fleet list` shows the fleets"));
    }
    Ok(FleetDestroySettings {
        name: a.name.clone(),
        aws: aws_options(&a.aws, &file.ec2, hooks)?,
        yes: a.yes,
        json: a.json,
    })
}
