//! `ec2 create | list | stop | start | destroy`.

use std::io::{BufRead, IsTerminal, Write};

use std::time::{Duration, Instant};

use anyhow::Context;
use image_provision_playbooks::preview::{FreshImage, preview};
use image_provision_playbooks::settings::{self, Expiry};
use image_provision_playbooks::steps::upkeep;
use image_provision_playbooks::{Step, StepReport};
use image_provision_provision::dns::DnsOutcome;
use image_provision_provision::{
    self as provision, AwsOptions, CreateSpec, DryRunApi, Ec2Api, Instance, KeySource, PriceListApi, Route53Api,
    UbuntuRelease,
};
use image_provision_remote::{HostKeyPolicy, Identity, Target};

use crate::args::Ubuntu;
use crate::bootstrap::{HostRun, run_host_steps};
use crate::errors::{Failed, UsageError, ec2_error};
use crate::output::{Progress, table};
use crate::resolve::{CreateSettings, DestroySettings, StartSettings, StopSettings};
use crate::state;

pub(crate) async fn connect(opts: &AwsOptions) -> anyhow::Result<(provision::SdkApi, String)> {
    Ok(provision::connect(opts).await?)
}

pub async fn create(mut settings: CreateSettings) -> anyhow::Result<()> {
    let ssh_addr = settings.ssh_addr;
    // A user key is checked before anything else happens.
    let user_key = settings.ssh_key.as_deref().map(state::user_key).transpose()?;
    let state_dir = state::server_dir(&settings.name)?;
    let webui_password = state::fill_webui_password(
        &mut settings.steps,
        |_| Ok(state_dir.join(state::WEBUI_PASSWORD)),
        settings.dry_run,
    )?;
    let progress = Progress::labelled(settings.quiet.then_some(settings.name.as_str()));
    if let Some(line) = local_llm_note(&settings) {
        progress.line(line);
    }

    if settings.dry_run {
        let from_env =
            ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()));
        let region = settings.aws.region.clone().or(from_env).or(settings.aws.fallback_region.clone());
        println!(
            "dry run: the AWS calls `ec2 create {}` would make in region {}, in order; none is made",
            settings.name,
            region.as_deref().unwrap_or("<from the AWS configuration>")
        );
        let public = match &user_key {
            Some(k) => k.public_openssh.clone(),
            None => format!("<public half of a new ed25519 key, {}>", state_dir.join(state::GENERATED_KEY).display()),
        };
        let api = DryRunApi::new(|line| println!("{line}"));
        let mut spec = spec(&settings, public, settings.ttl.map(expiry).transpose()?);
        spec.user_data = Some("<cloud-config carrying the server's SSH host key>".into());
        let created = provision::create(&api, &spec, |_| {}).await.map_err(|e| ec2_error(e, None))?;
        println!(
            "secured: the root volume encrypted with {}; instance metadata IMDSv2 only, hop limit 1 (not reachable \
             from containers)",
            settings.kms_key.as_deref().unwrap_or("the account's default EBS key")
        );
        if let Some(at) = created.expires_at.as_ref().filter(|_| !created.reused) {
            println!("then: at its first boot, its cloud-init arms its power-off at {at} (from the user data)");
        }
        settings.steps.expiry = created.expires_at.map_or(Expiry::Keep, Expiry::At);
        match &created.elastic_ip {
            Some(address) => {
                println!("then: wait for the instance to run, and associate its Elastic IP");
                provision::associate_elastic_ip(&api, address, &created.instance.id, |_| {})
                    .await
                    .map_err(|e| ec2_error(e, None))?;
                println!("then: wait until it answers SSH on port 22");
            }
            None => println!("then: wait for the instance to run and answer SSH on port 22"),
        }
        if let Some(domain) = &settings.dns_domain {
            let address = created.elastic_ip.as_ref().map_or("<the instance's public IP>", |a| &a.public_ip);
            println!("then: its DNS records, in the public Route 53 zone that holds {domain}");
            provision::dns::publish(&api, &settings.name, domain, address, None, |_| {})
                .await
                .map_err(|e| ec2_error(e, None))?;
        }
        if let Some(host) = &settings.webui_dns_domain {
            let address = created.elastic_ip.as_ref().map_or("<the instance's public IP>", |a| &a.public_ip);
            println!("then: the web UI's DNS records, in the public Route 53 zone that holds {host}");
            provision::dns::publish(&api, &settings.name, host, address, None, |_| {})
                .await
                .map_err(|e| ec2_error(e, None))?;
        }
        let cost = estimate(&api, region.as_deref().unwrap_or("<region>"), &settings, settings.spot).await;
        println!("cost: {}", cost.line());
        if !settings.no_bootstrap {
            let (version, codename) = match settings.ubuntu {
                Ubuntu::Jammy => ("22.04", "jammy"),
                Ubuntu::Noble => ("24.04", "noble"),
            };
            let gpu_ready = settings.base_image == provision::BaseImage::Dlami;
            let gpu = provision::gpu_of(&settings.instance_type).map(|(name, gib)| (name, (gib * 1024.0) as u32));
            let image = FreshImage { version, codename, user: &settings.ssh_user, gpu_ready, gpu };
            println!(
                "then: the host steps over SSH as {}, as planned for a fresh Ubuntu {version} image:",
                settings.ssh_user
            );
            if let Some(ami) = &settings.ami {
                println!(
                    "  (each step reads its facts first: if {ami} is an image `ami bake` made, the nvidia, reboot \
                     and pull steps find the driver installed, no reboot waiting and the images pulled, and say ok)"
                );
            }
            for (step, what) in preview(&settings.steps, &image) {
                println!("  {:<9}: {what}", step.name());
            }
        }
        return Ok(());
    }

    let (api, region) = connect(&settings.aws).await?;
    let key = match user_key {
        Some(k) => k,
        None => state::ensure_generated_key(&state_dir)?,
    };
    if key.generated {
        progress.line(format!("generated SSH key {}", key.private_path.display()));
    }
    let host_key = state::ensure_key(&state_dir, state::HOST_KEY)?;
    let mut spec = spec(&settings, key.public_openssh.clone(), settings.ttl.map(expiry).transpose()?);
    spec.user_data = Some(cloud_config(
        &state::private_key_text(&host_key.private_path)?,
        &host_key.public_openssh,
        spec.expires_at.as_deref(),
    )?);
    let itype = settings.instance_type.clone();
    progress.line(format!("creating {} ({itype}) in {region}", settings.name));
    let started = Instant::now();
    let created = provision::create(&api, &spec, |l| progress.line(l)).await.map_err(|e| ec2_error(e, Some(&itype)))?;
    let launch = started.elapsed();
    if created.baked.is_some() && !created.reused {
        progress.line(
            "a baked image: the host steps read each step's facts and find the driver, the toolkit, Docker, the \
             clone and the pulled images in place (no driver install, no reboot; only what moved on since the \
             bake is pulled)",
        );
    }
    // The host steps arrange the server's own end at its expiry: a --ttl
    // given now, or the one its tags hold; without either, the host's own.
    settings.steps.expiry = created.expires_at.clone().map_or(Expiry::Keep, Expiry::At);
    let spinner = progress.spinner(format!("waiting for {} to run and answer SSH", created.instance.id));
    let ready = provision::wait_for_ssh(
        &api,
        &created.instance.id,
        created.elastic_ip.as_ref(),
        ssh_addr,
        settings.ready_timeout,
        |l| spinner.line(l),
    )
    .await
    .map_err(|e| ec2_error(e, Some(&itype)))?;
    spinner.finish();
    let instance = ready.instance;
    let phases = Phases { launch, to_running: ready.to_running, to_ssh: ready.to_ssh };

    // With an Elastic IP, the public IP is the Elastic IP by now.
    let ip = instance.public_ip.clone().unwrap_or_default();
    let dns = publish(&api, &settings.name, settings.dns_domain.as_deref(), &instance, &progress).await?;
    let webui_dns = publish(&api, &settings.name, settings.webui_dns_domain.as_deref(), &instance, &progress).await?;
    // The host key is known only if this run's key is the one the instance
    // was launched with: not so for an instance found running after the
    // state directory was lost.
    let known_hosts = if created.reused && host_key.generated {
        let _ = std::fs::remove_file(&host_key.private_path);
        let _ = std::fs::remove_file(state_dir.join(format!("{}.pub", state::HOST_KEY)));
        progress.line(
            "the server's host key is not known here (its state directory was lost): verify it on first connection",
        );
        None
    } else {
        Some(state::write_known_hosts(&state_dir, &ip, &host_key.public_openssh)?)
    };
    let verify = match &known_hosts {
        Some(path) => format!(" -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes", path.display()),
        None => String::new(),
    };
    let user = &settings.ssh_user;
    let ssh = match ssh_addr {
        Some(a) => format!("ssh -i {}{verify} -p {} {user}@{}", key.private_path.display(), a.port(), a.ip()),
        None => format!("ssh -i {}{verify} {user}@{ip}", key.private_path.display()),
    };
    let cost = estimate(&api, &region, &settings, created.spot).await;
    // The idle stop its tags give it after this run.
    let autostop = match spec.autostop.as_deref() {
        Some(provision::tags::AUTOSTOP_OFF) => None,
        Some(a) => Some(a.to_string()),
        None => instance.autostop.clone().filter(|_| instance.stops_when_idle()),
    };
    let mut summary = serde_json::json!({
        "cost": cost,
        "name": settings.name,
        "instance_id": instance.id,
        "reused": created.reused,
        "public_ip": ip,
        "zones_tried": created.zones_tried,
        "expires_at": created.expires_at,
        "autostop": autostop,
        "ssh": ssh,
        "state_dir": state_dir.display().to_string(),
        "elastic_ip": created.elastic_ip.as_ref().map(|a| &a.public_ip),
        "dns": dns,
    });
    if let (Some(w), Some(file)) = (settings.steps.image.as_ref().and_then(|i| i.webui.as_ref()), &webui_password) {
        summary["webui"] = serde_json::json!({
            "url": format!("https://{}/", w.host),
            "admin": w.admin_email(),
            "password_file": file.display().to_string(),
            "dns": webui_dns,
        });
    }
    if !settings.json && !settings.quiet {
        println!("name       {}", settings.name);
        println!("instance   {}{}", instance.id, if created.reused { " (existing)" } else { "" });
        println!("public IP  {ip}{}", if created.elastic_ip.is_some() { " (Elastic IP)" } else { "" });
        if let Some(dns) = &dns {
            println!("DNS        {}", dns_line(dns));
        }
        if let (Some(w), Some(file)) = (settings.steps.image.as_ref().and_then(|i| i.webui.as_ref()), &webui_password) {
            println!("web UI     https://{}/ (admin {}, password in {})", w.host, w.admin_email(), file.display());
        }
        if let Some(dns) = &webui_dns {
            println!("web UI DNS {}", dns_line(dns));
        }
        println!("zones      {}", created.zones_tried.join(", "));
        println!("cost       {}", cost.line());
        if let Some(at) = &created.expires_at {
            println!("expires    {at} (remove with: image-provision ec2 destroy --expired)");
        }
        if let Some(after) = &autostop {
            // A new server's idle stop is installed by the host steps.
            let armed = if settings.no_bootstrap && !created.reused { ", once the host steps install it" } else { "" };
            println!(
                "autostop   stops after {after} without a request{armed} (stopped, not terminated: its disk stays)"
            );
        }
        println!("ssh        {ssh}");
        println!("state      {}", state_dir.display());
        println!("time       {}", phases.line());
    }
    // With --no-bootstrap, only a --ttl or an --autostop for a server that
    // exists goes to the host: its power-off moves with its tags (a new
    // server's user data arms its own expiry; its idle stop waits for the
    // host steps, which need the stack).
    let expiry_only = settings.no_bootstrap
        && created.reused
        && (settings.ttl.is_some() || settings.steps.autostop != settings::Autostop::Keep);
    // What the tags now say that the host does not yet: "expire at T", "give
    // it an idle stop after 30m".
    let autostop_asked = autostop_tag(&settings.steps.autostop);
    let ttl_asked = settings.ttl.is_some();
    let moved = || {
        let mut said = Vec::new();
        if ttl_asked {
            said.push(format!("expire at {}", created.expires_at.clone().unwrap_or_default()));
        }
        match autostop_asked.as_deref() {
            Some(provision::tags::AUTOSTOP_OFF) => said.push("give it no idle stop".to_string()),
            Some(after) => said.push(format!("give it an idle stop after {after}")),
            None => {}
        }
        said.join(" and ")
    };
    // The host's power-off, and its idle stop when that was asked for.
    let on_host = if autostop_asked.is_none() {
        "its power-off"
    } else if ttl_asked {
        "its power-off and idle stop"
    } else {
        "its idle stop"
    };
    if settings.no_bootstrap && !expiry_only {
        if settings.json && !settings.quiet {
            summary["time"] = phases.json(&[]);
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(());
    }
    // The host steps, trusting only the host key handed over in user data.
    let Some(known_hosts) = known_hosts else {
        let check = format!(
            "compare the key fingerprints in the instance's console output (EC2 console, \
             Actions > Monitor > Get system log) with what `ssh-keyscan {ip}` shows, then run \
             `image-provision bootstrap --host {user}@{ip} --identity {} --accept-new-host-key",
            key.private_path.display()
        );
        return Err(if expiry_only {
            Failed {
                message: format!(
                    "{}'s tags now {}, but its host key is not known here, so {on_host} on the host was not moved",
                    settings.name,
                    moved()
                ),
                hint: format!(
                    "{check} --ttl DURATION` (or `--autostop DURATION`) with the flags the server was set up with"
                ),
            }
        } else {
            Failed {
                message: format!(
                    "{} is up, but its host key is not known here, so the host steps did not run",
                    settings.name
                ),
                hint: format!("{check}`"),
            }
        }
        .into());
    };
    let (host, port) = match ssh_addr {
        Some(a) => (a.ip().to_string(), a.port()),
        None => (ip.clone(), image_provision_remote::DEFAULT_PORT),
    };
    // The domain must point at the server's public address (the Elastic IP
    // when there is one) before Traefik asks for its certificate.
    if let Some(img) = settings.steps.image.as_mut() {
        img.check_dns_for(instance.public_ip.clone().filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok()));
    }
    let (steps, only) = match expiry_only {
        // Without the stack the upkeep step changes only the power-off.
        true => (image_provision_playbooks::Config { image: None, ..settings.steps }, Some(&Step::EXPIRY_ONLY[..])),
        false => (settings.steps, None),
    };
    let end = run_host_steps(HostRun {
        target: Target::new(user.clone(), host, port),
        identity: Identity::key_file(&key.private_path),
        policy: HostKeyPolicy::expect_openssh(&host_key.public_openssh).context("reading the server's host key")?,
        known_hosts,
        dry_run: false,
        steps,
        only,
        summary: !settings.json && !settings.quiet,
        webui_password,
        label: settings.quiet.then(|| settings.name.clone()),
    })
    .await;
    if expiry_only && end.result.is_err() {
        progress.line(format!(
            "{}'s tags now {}, but {on_host} on the host was not moved (why: below): until it \
             is, the host keeps what it had (its old expiry, its old idle stop, if any); run the same command \
             again once the host answers over SSH",
            settings.name,
            moved()
        ));
    }
    if settings.quiet {
        // The fleet's summary says how each server went.
    } else if settings.json {
        summary["time"] = phases.json(&end.reports);
        summary["steps"] = end
            .reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.step.name(),
                    "outcome": r.outcome.label(),
                    "seconds": secs(r.duration),
                    "detail": r.outcome.detail(),
                })
            })
            .collect();
        summary["log"] = serde_json::json!(end.log.map(|l| l.display().to_string()));
        summary["ok"] = serde_json::json!(end.result.is_ok());
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !end.reports.is_empty() {
        println!("total      {}", phases.total_line(&end.reports));
    }
    end.result
}

/// Point `host` (when there is one) at the instance's public addresses, as
/// records made for server `name`.
async fn publish(
    api: &provision::SdkApi,
    name: &str,
    host: Option<&str>,
    instance: &Instance,
    progress: &Progress,
) -> anyhow::Result<Option<DnsOutcome>> {
    let Some(host) = host else { return Ok(None) };
    let ip = instance.public_ip.as_deref().unwrap_or_default();
    let outcome = provision::dns::publish(api, name, host, ip, instance.ipv6_address.as_deref(), |l| progress.line(l))
        .await
        .map_err(|e| ec2_error(e, None))?;
    Ok(Some(outcome))
}

/// The summary's DNS line: what Route 53 holds now, or what to do by hand.
fn dns_line(outcome: &DnsOutcome) -> String {
    let records =
        |records: &[provision::RecordSet]| records.iter().map(provision::dns::describe).collect::<Vec<_>>().join(", ");
    match outcome {
        DnsOutcome::Published { zone, records: r, .. } => format!("{} (Route 53 zone {zone})", records(r)),
        DnsOutcome::NoZone { records: r } => {
            format!("no Route 53 zone of this account holds it: create {} where its DNS is served", records(r))
        }
        DnsOutcome::LeftAlone { zone, existing, wanted } => format!(
            "left alone: zone {zone} has {}, not made for this server; change it to {} by hand",
            records(existing),
            records(wanted)
        ),
    }
}

/// Where a create's minutes went, before the host steps.
struct Phases {
    /// The AWS calls up to the instance launched (or found).
    launch: Duration,
    to_running: Duration,
    to_ssh: Duration,
}

/// Seconds, to a tenth.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

impl Phases {
    fn before_steps(&self) -> Duration {
        self.launch + self.to_running + self.to_ssh
    }

    fn line(&self) -> String {
        format!(
            "launch {:.1}s, to running {:.1}s, to SSH {:.1}s",
            self.launch.as_secs_f64(),
            self.to_running.as_secs_f64(),
            self.to_ssh.as_secs_f64()
        )
    }

    fn total_line(&self, steps: &[StepReport]) -> String {
        let host: Duration = steps.iter().map(|r| r.duration).sum();
        format!(
            "{:.1}s: up and answering SSH {:.1}s, host steps {:.1}s",
            (self.before_steps() + host).as_secs_f64(),
            self.before_steps().as_secs_f64(),
            host.as_secs_f64()
        )
    }

    fn json(&self, steps: &[StepReport]) -> serde_json::Value {
        let host: Duration = steps.iter().map(|r| r.duration).sum();
        serde_json::json!({
            "launch_seconds": secs(self.launch),
            "to_running_seconds": secs(self.to_running),
            "to_ssh_seconds": secs(self.to_ssh),
            "host_steps_seconds": secs(host),
            "total_seconds": secs(self.before_steps() + host),
        })
    }
}

/// cloud-init user data: the host key we made, and only it, so the first
/// SSH connection can verify the server; with an expiry, the power-off armed
/// from the first boot (the upkeep step's own files, the same bytes and
/// modes, then its timer enabled), so it holds whatever becomes of the host
/// steps, or with none (--no-bootstrap). JSON is YAML, so no YAML writer is
/// needed; the text travels in the RunInstances request only.
fn cloud_config(host_private: &str, host_public: &str, expires_at: Option<&str>) -> anyhow::Result<String> {
    let mut config = serde_json::json!({
        "ssh_deletekeys": true,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public},
    });
    if let Some(at) = expires_at {
        use image_provision_playbooks::template;
        let files = upkeep::expiry_files(at).map_err(anyhow::Error::msg)?;
        let mut write_files: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path,
                    "content": f.content,
                    "permissions": format!("{:04o}", f.mode),
                    "owner": "root:root",
                })
            })
            .collect();
        // Our record of what we wrote (template::RECORD), so that the
        // upkeep step moving the expiry later knows these files are ours
        // and keeps no copy of them.
        let record: String =
            files.iter().map(|f| format!("{} {}\n", template::sha256_hex(&f.content), f.path)).collect();
        write_files.push(serde_json::json!({
            "path": template::RECORD,
            "content": record,
            "permissions": "0600",
            "owner": "root:root",
        }));
        config["write_files"] = serde_json::Value::Array(write_files);
        config["runcmd"] =
            serde_json::json!([["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", upkeep::EXPIRE_TIMER]]);
    }
    Ok(format!("#cloud-config\n{config}\n"))
}

/// The autostop tag's value for `--autostop`: its duration (`30m`), or
/// `off`; None without the flag.
fn autostop_tag(autostop: &settings::Autostop) -> Option<String> {
    match autostop {
        settings::Autostop::Keep => None,
        settings::Autostop::After(d) => Some(upkeep::say_duration(d.as_secs())),
        settings::Autostop::Off => Some(provision::tags::AUTOSTOP_OFF.into()),
    }
}

fn expiry(ttl: std::time::Duration) -> anyhow::Result<String> {
    Ok(settings::expires_after(ttl).map_err(UsageError::new)?)
}

fn spec(s: &CreateSettings, public_key: String, expires_at: Option<String>) -> CreateSpec {
    CreateSpec {
        name: s.name.clone(),
        ami: s.ami.clone(),
        ubuntu: match s.ubuntu {
            Ubuntu::Jammy => UbuntuRelease::Jammy2204,
            Ubuntu::Noble => UbuntuRelease::Noble2404,
        },
        base_image: s.base_image,
        instance_type: s.instance_type.clone(),
        volume_size_gib: s.volume_size,
        volume_type: s.volume_type.clone(),
        volume_throughput_mibps: s.volume_throughput,
        volume_iops: s.volume_iops,
        kms_key_id: s.kms_key.clone(),
        subnet: s.subnet.clone(),
        ssh_cidrs: s.ssh_cidrs.clone(),
        ssh_cidrs_asked: s.ssh_cidrs_asked,
        key: KeySource::Public(public_key),
        spot: s.spot,
        spot_only: s.spot_only,
        expires_at,
        user_data: None,
        autostop: autostop_tag(&s.steps.autostop),
        elastic_ip: s.elastic_ip,
        dns_domain: s.dns_domain.clone(),
        webui_dns_domain: s.webui_dns_domain.clone(),
        ready_timeout: s.ready_timeout,
        fleet: s.fleet.clone(),
        web_from_group: s.web_from_group.clone(),
    }
}

/// What the server costs (spot: EC2's current price, when it answers; the
/// rest from AWS's price list for `region`, or the shipped table).
async fn estimate<A: Ec2Api + PriceListApi>(
    api: &A,
    region: &str,
    s: &CreateSettings,
    spot: bool,
) -> provision::cost::Estimate {
    let asked = provision::cost::Asked {
        instance_type: &s.instance_type,
        spot,
        volume_type: &s.volume_type,
        size_gib: s.volume_size,
        throughput: s.volume_throughput,
        iops: s.volume_iops,
    };
    provision::cost::estimate(api, region, &asked).await
}

/// With a local LLM (--llm local or ollama) on a GPU under 40 GiB: the LLM shares it with IMAGE's
/// own GPU services, so only a small model fits; where more room is.
fn local_llm_note(s: &CreateSettings) -> Option<String> {
    use image_provision_playbooks::settings::Llm;
    let img = s.steps.image.as_ref().filter(|i| i.llm == Llm::Local)?;
    let (gpu, gib) = provision::gpu_of(&s.instance_type)?;
    let spec = image_provision_playbooks::steps::llm::spec(img.local_llm.runtime);
    let sizing = image_provision_playbooks::steps::llm::size(spec, gib, img.local_llm.model.as_deref()).ok()?;
    (gib < 40.0).then(|| {
        format!(
            "the local LLM shares the {}'s {gpu} with IMAGE's GPU services: {}. For a larger model: g6e.xlarge \
             (an L40S, 48 GB); g5.2xlarge has the same GPU as g5.xlarge, g5.12xlarge four A10Gs (--instance-type)",
            s.instance_type,
            sizing.describe()
        )
    })
}

pub async fn list(aws: &AwsOptions, json: bool) -> anyhow::Result<()> {
    let (api, region) = connect(aws).await?;
    let servers = provision::list(&api).await.map_err(|e| ec2_error(e, None))?;
    let prices = instance_prices(&api, &region, &servers).await;
    // A stopped server still pays for its volumes and its Elastic IPs.
    let (mut listed, mut unreadable) = (Default::default(), prices.unlisted.is_some());
    let mut stopped = std::collections::BTreeMap::new();
    for i in servers.iter().filter(|i| matches!(i.state.as_str(), "stopped" | "stopping")) {
        let addresses = api.addresses(&i.id).await.map_err(|e| ec2_error(e, None))?.len();
        let cost = while_stopped(&api, &region, &i.volume_ids, addresses, &mut listed, &mut unreadable).await;
        stopped.insert(i.id.clone(), cost);
    }
    let now = jiff::Timestamp::now();
    if json {
        let servers: Vec<_> = servers
            .iter()
            .map(|i| {
                let mut v = server_json(i, now, &prices);
                v["cost_while_stopped"] = serde_json::json!(stopped.get(&i.id));
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&servers)?);
        return Ok(());
    }
    if servers.is_empty() {
        println!("no managed servers in this region");
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = servers
        .iter()
        .map(|i| {
            // Tags are anyone's with the account's rights: what they hold
            // reaches the terminal with its control characters escaped.
            vec![
                for_terminal(&i.name),
                i.id.clone(),
                i.state.clone(),
                i.instance_type.clone(),
                i.public_ip.clone().unwrap_or_else(|| "-".into()),
                i.launch_time.clone().unwrap_or_else(|| "-".into()),
                i.expires_at.as_deref().map_or_else(|| "-".into(), for_terminal),
                time_left(i.seconds_left(now)),
                i.autostop.as_deref().filter(|_| i.stops_when_idle()).map_or_else(|| "-".into(), for_terminal),
                prices.column(&i.instance_type),
            ]
        })
        .collect();
    let mut header = vec![
        "NAME",
        "INSTANCE",
        "STATE",
        "TYPE",
        "PUBLIC IP",
        "LAUNCHED",
        "EXPIRES",
        "LEFT",
        "AUTOSTOP",
        "INSTANCE $/H",
    ];
    // What the stopped ones still cost: a column only when one is stopped.
    if !stopped.is_empty() {
        header.push("WHILE STOPPED");
        for (row, i) in rows.iter_mut().zip(&servers) {
            row.push(stopped.get(&i.id).map_or("-".into(), stopped_column));
        }
    }
    print!("{}", table(&header, &rows));
    println!("({})", prices.basis(&region));
    if !stopped.is_empty() {
        println!(
            "(while stopped: no instance hours, but its volumes by the GB-month and its Elastic IPs at \
             ${:.3}/h each; ~ from the table shipped with the tool; a TTL keeps counting)",
            provision::cost::PUBLIC_IPV4_HOURLY
        );
    }
    Ok(())
}

/// On-demand prices of the listed servers' types: from AWS's price list,
/// asked once per type, or from the shipped table.
struct InstancePrices {
    listed: std::collections::BTreeMap<String, f64>,
    /// Why the price list gave none for some type, when it did not.
    unlisted: Option<String>,
}

async fn instance_prices<A: PriceListApi>(api: &A, region: &str, servers: &[Instance]) -> InstancePrices {
    let mut prices = InstancePrices { listed: Default::default(), unlisted: None };
    let types: std::collections::BTreeSet<&str> = servers.iter().map(|i| i.instance_type.as_str()).collect();
    for t in types {
        match provision::cost::listed_hourly(api, region, t).await {
            Ok(Some(p)) => {
                prices.listed.insert(t.to_owned(), p);
            }
            Ok(None) => {
                prices.unlisted.get_or_insert(format!("no price for {t} in {region}"));
            }
            Err(why) => {
                // Not asked again for the other types: each try may wait
                // for its time limit.
                prices.unlisted = Some(why);
                break;
            }
        }
    }
    prices
}

impl InstancePrices {
    fn hourly(&self, instance_type: &str) -> Option<(f64, provision::cost::Source)> {
        use provision::cost::Source;
        match self.listed.get(instance_type) {
            Some(p) => Some((*p, Source::PriceList)),
            None => provision::cost::on_demand_hourly(instance_type).map(|p| (p, Source::Table)),
        }
    }

    /// `$1.006` from the price list, `~$1.006` from the table, `-` unknown.
    fn column(&self, instance_type: &str) -> String {
        match self.hourly(instance_type) {
            Some((p, provision::cost::Source::PriceList)) => format!("${p:.3}"),
            Some((p, provision::cost::Source::Table)) => format!("~${p:.3}"),
            None => "-".into(),
        }
    }

    fn basis(&self, region: &str) -> String {
        match &self.unlisted {
            None => format!("instance prices: on-demand, from AWS's price list for {region} now; an estimate"),
            Some(why) => format!(
                "instance prices: on-demand; ~ from AWS list prices of {} shipped with the tool (AWS's price \
                 list: {why}); an estimate",
                provision::cost::PRICES_OF
            ),
        }
    }
}

/// The time until expiry, for a person: its two largest units (`2d 4h`,
/// `3h 12m`, `45m`), `expired` once past, `-` without an expiry.
fn time_left(seconds_left: Option<i64>) -> String {
    let Some(secs) = seconds_left else { return "-".into() };
    if secs <= 0 {
        return "expired".into();
    }
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours) {
        (0, 0) if minutes == 0 => "<1m".into(),
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// `text` with each control character (an escape sequence's ESC, a
/// newline, a carriage return) written as Rust escapes it (`\u{1b}`,
/// `\n`), so a value from a tag cannot move the cursor, recolour or
/// rewrite the terminal's lines.
pub(crate) fn for_terminal(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn server_json(i: &Instance, now: jiff::Timestamp, prices: &InstancePrices) -> serde_json::Value {
    let price = prices.hourly(&i.instance_type);
    serde_json::json!({
        "name": i.name,
        "instance_id": i.id,
        "state": i.state,
        "instance_type": i.instance_type,
        "public_ip": i.public_ip,
        "launch_time": i.launch_time,
        "expires_at": i.expires_at,
        "seconds_left": i.seconds_left(now),
        "autostop": i.autostop.clone().filter(|_| i.stops_when_idle()),
        "instance_hourly_usd": price.map(|(p, _)| p),
        "instance_price_source": price.map(|(_, source)| source),
    })
}

/// What a stopped server's volumes and Elastic IPs cost: each volume type's
/// GB-month from AWS's price list (asked once per type, not again once it
/// could not be read), else the shipped table.
async fn while_stopped<A: Ec2Api + PriceListApi>(
    api: &A,
    region: &str,
    volume_ids: &[String],
    public_ipv4: usize,
    listed: &mut std::collections::BTreeMap<String, f64>,
    unreadable: &mut bool,
) -> provision::cost::WhileStopped {
    let volumes = api.volumes(volume_ids).await.unwrap_or_default();
    for v in &volumes {
        if *unreadable || listed.contains_key(&v.volume_type) {
            continue;
        }
        match provision::cost::listed_gb_month(api, region, &v.volume_type).await {
            Ok(Some(p)) => {
                listed.insert(v.volume_type.clone(), p);
            }
            Ok(None) => {}
            Err(_) => *unreadable = true,
        }
    }
    provision::cost::while_stopped(&volumes, listed, public_ipv4)
}

/// `$0.115/h` from the price list, `~$0.115/h` from the table, `?` unknown.
fn stopped_column(c: &provision::cost::WhileStopped) -> String {
    match (c.hourly, c.volume_source) {
        (Some(h), provision::cost::Source::PriceList) => format!("${h:.3}/h"),
        (Some(h), provision::cost::Source::Table) => format!("~${h:.3}/h"),
        (None, _) => "?".into(),
    }
}

/// One line for a person: what a stopped server still costs, and why.
fn stopped_line(c: &provision::cost::WhileStopped) -> String {
    let volumes = c.volume_monthly.map_or("volumes ?".into(), |m| format!("volumes ${m:.2}/month"));
    let addresses = match c.public_ipv4 {
        0 => "no public IPv4 address kept".to_string(),
        n => format!("{n} Elastic IP{} ${:.3}/h", if n == 1 { "" } else { "s" }, c.public_ipv4_hourly),
    };
    let total = c.hourly.map_or("not known".into(), |h| format!("about ${h:.3}/h, ${:.0}/month", h * 730.0));
    format!("while stopped {total} ({volumes}; {addresses}; no instance hours); an estimate")
}

pub async fn stop(s: &StopSettings) -> anyhow::Result<()> {
    let (api, region) = connect(&s.aws).await?;
    let progress = Progress::new();
    let report =
        provision::stop(&api, &s.name, s.timeout, |l| progress.line(l)).await.map_err(|e| ec2_error(e, None))?;
    let (mut listed, mut unreadable) = (Default::default(), false);
    let cost =
        while_stopped(&api, &region, &report.volume_ids, report.elastic_ips.len(), &mut listed, &mut unreadable).await;
    if s.json {
        let mut v = serde_json::to_value(&report)?;
        v["cost_while_stopped"] = serde_json::to_value(&cost)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if report.already_stopped {
        println!("{} ({}) is stopped already: nothing to do", s.name, report.instance_id);
    } else {
        println!("stopped {} ({}) in {:.1}s", s.name, report.instance_id, report.waited.as_secs_f64());
    }
    let mut kept = vec![format!("volume {}", report.volume_ids.join(", "))];
    if !report.elastic_ips.is_empty() {
        kept.push(format!("Elastic IP {}", report.elastic_ips.join(", ")));
    }
    if let Some(domain) = &report.domain {
        kept.push(format!("DNS records of {domain}"));
    }
    println!("kept       {}", kept.join("; "));
    println!("cost       {}", stopped_line(&cost));
    if let Some(at) = &report.expires_at {
        println!(
            "expires    {at}: the TTL keeps counting while it is stopped; `ec2 destroy --expired` ends it then, \
             stopped or not"
        );
    }
    println!("start      image-provision ec2 start {}", s.name);
    Ok(())
}

pub async fn start(s: StartSettings) -> anyhow::Result<()> {
    let dir = state::server_dir(&s.name)?;
    let json = s.server.json;
    let (api, _) = connect(&s.aws).await?;
    // A name no server has is said as such (exit 1) before anything else.
    if api.find_instances(Some(&s.name)).await.map_err(|e| ec2_error(e, None))?.is_empty() {
        return Err(ec2_error(provision::Error::NoServer(s.name.clone()), None));
    }
    // Checked before anything is started: verify needs the pinned host key.
    if s.verify && !dir.join(state::KNOWN_HOSTS).is_file() {
        return Err(UsageError::new(format!(
            "{}: no known host key ({} is missing), so the started server could not be verified",
            s.name,
            dir.join(state::KNOWN_HOSTS).display()
        ))
        .hint(format!(
            "pass --no-verify to start it without verifying, then check the key and verify with \
             `image-provision verify --host USER@ADDRESS --accept-new-host-key`; or recreate the state with \
             `image-provision ec2 create {}`",
            s.name
        ))
        .into());
    }
    let progress = Progress::new();
    let spinner = progress.spinner(format!(
        "starting {}: waiting for it to run and answer SSH (time limit {} s, --ready-timeout)",
        s.name,
        s.ready_timeout.as_secs()
    ));
    let started = provision::start(&api, &s.name, s.ssh_addr, s.ready_timeout, |l| spinner.line(l)).await;
    spinner.finish();
    let started = started.map_err(|e| ec2_error(e, None))?;
    let instance = &started.instance;
    let ip = instance.public_ip.clone().unwrap_or_default();
    // Without an Elastic IP the address is new: the DNS records made for
    // NAME and the known_hosts line follow it (the host key stays pinned).
    let dns = publish(&api, &s.name, instance.domain.as_deref(), instance, &progress).await?;
    // The web UI's name follows the address too.
    publish(&api, &s.name, instance.webui_domain.as_deref(), instance, &progress).await?;
    let moved_from = state::move_known_host(&dir, &ip)?;
    if let Some(old) = &moved_from {
        progress.line(format!("known_hosts: the host key pinned for {old} is now pinned for {ip}"));
    }
    let mut summary = serde_json::json!({
        "name": s.name,
        "instance_id": instance.id,
        "already_running": started.already_running,
        "public_ip": ip,
        "elastic_ip": started.elastic_ip.as_ref().map(|a| &a.public_ip),
        "previous_public_ip": moved_from,
        "dns": dns,
        "time": {"to_running_seconds": secs(started.to_running), "to_ssh_seconds": secs(started.to_ssh)},
    });
    if !json {
        match started.already_running {
            true => println!("{} ({}) is running already", s.name, instance.id),
            false => println!(
                "started {} ({}): to running {:.1}s, to SSH {:.1}s",
                s.name,
                instance.id,
                started.to_running.as_secs_f64(),
                started.to_ssh.as_secs_f64()
            ),
        }
        let how = match (&started.elastic_ip, &moved_from) {
            (Some(_), _) => " (Elastic IP)".to_string(),
            (None, Some(old)) => format!(" (new: it was {old})"),
            (None, None) => String::new(),
        };
        println!("public IP  {ip}{how}");
        if let Some(dns) = &dns {
            println!("DNS        {}", dns_line(dns));
        }
    }
    if !s.verify {
        if json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(());
    }
    let (host, report) =
        crate::verify_update::wait_until_healthy(&s.name, s.server, s.health_timeout, &progress).await?;
    if json {
        summary["verify"] = serde_json::to_value(&report)?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return crate::verify_update::verdict(&host, &report, None);
    }
    println!();
    crate::verify_update::show(&host, &report, false, None, None)
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub async fn destroy(args: &DestroySettings) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !args.dry_run && !interactive {
        return Err(UsageError::new("destroy asks for confirmation, and there is no terminal to ask on")
            .hint("pass --yes to destroy without asking")
            .into());
    }
    if args.dry_run {
        println!("dry run: the AWS calls `ec2 destroy` would make, in order; none is made");
        let api = DryRunApi::new(|line| println!("{line}"));
        return run_destroy(&api, args, false).await;
    }
    let (api, _) = connect(&args.aws).await?;
    run_destroy(&api, args, !args.yes).await
}

async fn run_destroy<A: Ec2Api + Route53Api>(api: &A, args: &DestroySettings, ask: bool) -> anyhow::Result<()> {
    let progress = Progress::new();
    let mut reports = Vec::new();
    let mut badly_named = Vec::new();
    if args.expired {
        let now = jiff::Timestamp::now();
        if ask {
            let (names, bad) = provision::expired(provision::list(api).await.map_err(|e| ec2_error(e, None))?, now);
            for b in &bad {
                progress.line(b.advice());
            }
            if names.is_empty() {
                println!("no managed server has expired");
                return Ok(());
            }
            if !confirm(&format!("Destroy expired servers {}?", names.join(", ")))? {
                println!("nothing destroyed");
                return Ok(());
            }
        }
        let sweep = provision::destroy_expired(api, now, |l| progress.line(l)).await.map_err(|e| ec2_error(e, None))?;
        reports = sweep.destroyed;
        badly_named = sweep.left_alone;
        if reports.is_empty() && !args.json {
            println!("no managed server has expired");
        }
    } else {
        let name = args.name.as_deref().expect("clap requires NAME without --expired");
        if ask {
            let found = api.find_instances(Some(name)).await.map_err(|e| ec2_error(e, None))?;
            let what = if found.is_empty() {
                "(no instance found; any security group or key pair left of it)".to_string()
            } else {
                found.iter().map(|i| format!("{} {}", i.id, i.state)).collect::<Vec<_>>().join(", ")
            };
            if !confirm(&format!("Destroy server {name} {what} and everything made for it?"))? {
                println!("nothing destroyed");
                return Ok(());
            }
        }
        reports.push(provision::destroy(api, name, |l| progress.line(l)).await.map_err(|e| ec2_error(e, None))?);
    }
    let mut summary = Vec::new();
    for report in &reports {
        let local = if api.is_dry_run() { None } else { remove_state_dir(&report.name)? };
        if args.json {
            let mut v = serde_json::to_value(report)?;
            v["state_dir_removed"] = serde_json::json!(local);
            summary.push(v);
            continue;
        }
        if !report.found_anything() && local.is_none() {
            println!("no server named {} exists (nothing to remove)", report.name);
            continue;
        }
        println!("destroyed {}:", report.name);
        let list = |label: &str, items: &[String]| {
            if !items.is_empty() {
                println!("  {label:<16}{}", items.join(", "));
            }
        };
        list("instances", &report.instances);
        list("security groups", &report.security_groups);
        list("key pairs", &report.key_pairs);
        list("Elastic IPs", &report.addresses);
        if !report.addresses_left_alone.is_empty() {
            println!(
                "  {:<16}{} (not allocated for {}: still allocated)",
                "kept addresses",
                report.addresses_left_alone.join(", "),
                report.name
            );
        }
        list("DNS records", &report.dns_records);
        if !report.dns_left_alone.is_empty() {
            println!("  {:<16}{} (not made for {})", "kept DNS", report.dns_left_alone.join(", "), report.name);
        }
        if let Some(dir) = local {
            println!("  {:<16}{dir}", "local state");
        }
    }
    if args.json {
        if args.expired {
            let sweep = serde_json::json!({"destroyed": summary, "left_alone": badly_named});
            println!("{}", serde_json::to_string_pretty(&sweep)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
    } else {
        for b in &badly_named {
            println!("left alone: {}", b.advice());
        }
    }
    Ok(())
}

/// Remove server NAME's state directory (its keys, known hosts, logs);
/// returns it when there was one.
pub(crate) fn remove_state_dir(name: &str) -> anyhow::Result<Option<String>> {
    let dir = state::server_dir(name)?;
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(Some(dir.display().to_string()))
}

#[cfg(test)]
mod tests {

    /// A tag's value cannot drive the terminal: control characters come
    /// out escaped, everything else (non-ASCII too) as it is.
    #[test]
    fn tag_values_reach_the_terminal_escaped() {
        assert_eq!(for_terminal("demo"), "demo");
        assert_eq!(for_terminal("d\u{e9}mo-\u{4e2d}"), "d\u{e9}mo-\u{4e2d}");
        assert_eq!(for_terminal("\u{1b}[2J\u{1b}[31mowned\r\nx"), "\\u{1b}[2J\\u{1b}[31mowned\\r\\nx");
        assert_eq!(for_terminal("a\tb\u{7f}"), "a\\tb\\u{7f}");
    }
    use super::*;

    /// The user data of a server with an expiry arms its power-off with the
    /// upkeep step's own files and modes (its next run finds them as it
    /// wants them), then enables the timer; without one, only the host key.
    #[test]
    fn cloud_config_arms_the_power_off_with_the_upkeep_steps_files() {
        use image_provision_playbooks::template::{RECORD, sha256_hex};
        let at = "2026-12-02T03:04:05Z";
        let text = cloud_config("PRIVATE", "ssh-ed25519 AAAA host", Some(at)).unwrap();
        let config: serde_json::Value = serde_json::from_str(text.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        let (record, units) = config["write_files"].as_array().unwrap().split_last().unwrap();
        assert_eq!((record["path"].as_str(), record["permissions"].as_str()), (Some(RECORD), Some("0600")));
        let files: Vec<(String, String, String)> = units
            .iter()
            .map(|f| {
                assert_eq!(f["owner"], "root:root");
                let text = |k: &str| f[k].as_str().unwrap().to_string();
                (text("path"), text("content"), text("permissions"))
            })
            .collect();
        let want: Vec<(String, String, String)> = upkeep::expiry_files(at)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.content, format!("{:04o}", f.mode)))
            .collect();
        assert_eq!(files, want);
        let recorded: Vec<String> =
            want.iter().map(|(path, content, _)| format!("{} {path}", sha256_hex(content))).collect();
        assert_eq!(record["content"].as_str().unwrap().lines().collect::<Vec<_>>(), recorded);
        assert!(files.iter().any(|(_, _, mode)| mode == "0755") && files.iter().any(|(_, _, mode)| mode == "0644"));
        assert_eq!(
            config["runcmd"],
            serde_json::json!([
                ["systemctl", "daemon-reload"],
                ["systemctl", "enable", "--now", "image-provision-expire.timer"]
            ])
        );
        assert_eq!(config["ssh_keys"]["ed25519_private"], "PRIVATE");
        let plain = cloud_config("PRIVATE", "ssh-ed25519 AAAA host", None).unwrap();
        assert!(!plain.contains("write_files") && !plain.contains("runcmd"), "{plain}");
    }

    #[test]
    fn time_left_shows_the_two_largest_units() {
        assert_eq!(time_left(None), "-");
        assert_eq!(time_left(Some(0)), "expired");
        assert_eq!(time_left(Some(-3600)), "expired");
        assert_eq!(time_left(Some(59)), "<1m");
        assert_eq!(time_left(Some(45 * 60 + 30)), "45m");
        assert_eq!(time_left(Some(3600)), "1h 0m");
        assert_eq!(time_left(Some(3 * 3600 + 12 * 60 + 59)), "3h 12m");
        assert_eq!(time_left(Some(2 * 86_400 + 4 * 3600 + 59 * 60)), "2d 4h");
        assert_eq!(time_left(Some(86_400)), "1d 0h");
    }
}
