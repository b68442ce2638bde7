//! `fleet create | scale | list | destroy`: servers NAME-1..NAME-N made by
//! `ec2 create`'s own path (in parallel, bounded), behind the balancer the
//! provision crate's fleet module makes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_provision_provision::fleet::{self, FleetSpec, FleetView, Front};
use image_provision_provision::{self as provision, AwsOptions, Ec2Api, Instance, SdkApi};
use serde::Serialize;

use crate::ec2::{confirm, connect, create, remove_state_dir};
use crate::errors::{Failed, UsageError, ec2_error, hint};
use crate::output::{Progress, table};
use crate::resolve::{FleetDestroySettings, FleetSettings};

/// How one server of the run went.
#[derive(Debug, Serialize)]
struct ServerOutcome {
    name: String,
    instance_id: Option<String>,
    zone: Option<String>,
    /// `healthy` (registered, the balancer finds it healthy), `made` (with
    /// --no-bootstrap: not registered), `failed`.
    state: &'static str,
    /// Why it failed, and what to do.
    why: Option<String>,
    seconds: f64,
}

/// `fleet create` and `fleet scale`: converge fleet NAME to `count` servers
/// behind its balancer.
pub async fn converge(s: FleetSettings) -> anyhow::Result<()> {
    // A user key is checked before anything else happens, as `ec2 create` does.
    if let Some(key) = s.create.ssh_key.as_deref() {
        crate::state::user_key(key)?;
    }
    let progress = Progress::new();
    let started = Instant::now();
    let (api, region) = connect(&s.create.aws).await?;
    let view = fleet::find(&api, &s.name).await.map_err(|e| ec2_error(e, None))?;
    check_existing(&s, &view)?;
    progress.line(format!("fleet {} in {region}: {} servers behind one load balancer", s.name, s.count));
    let spec = FleetSpec { name: s.name.clone(), domain: s.domain.clone(), deregistration_delay: s.drain };
    let front = fleet::ensure_front(&api, &spec, |l| progress.line(format!("{}: {l}", s.name)))
        .await
        .map_err(|e| ec2_error(e, None))?;
    let api = Arc::new(api);

    // The highest-numbered first: drained at the balancer, then destroyed.
    let mut extra: Vec<Instance> = view
        .servers
        .iter()
        .filter(|i| fleet::member_index(&s.name, &i.name).is_some_and(|n| n > s.count))
        .cloned()
        .collect();
    extra.sort_by_key(|i| std::cmp::Reverse(fleet::member_index(&s.name, &i.name)));
    let mut removed = Vec::new();
    for server in &extra {
        let drained =
            fleet::drain(&*api, &front.target_group.arn, &server.id, s.drain).await.map_err(|e| ec2_error(e, None))?;
        progress.line(format!("{}: deregistered and drained in {:.0} s", server.name, drained.as_secs_f64()));
        provision::destroy(&*api, &server.name, |l| progress.line(format!("{}: {l}", server.name)))
            .await
            .map_err(|e| ec2_error(e, None))?;
        remove_state_dir(&server.name)?;
        progress.line(format!("{}: destroyed", server.name));
        removed.push(server.name.clone());
    }

    // The host steps' progress is not Send: the servers run side by side on
    // this thread (they mostly wait on AWS and SSH).
    let outcomes = tokio::task::LocalSet::new().run_until(make_servers(&s, &api, &front)).await;
    print_summary(&s, &front, &outcomes, &removed, started.elapsed())?;
    let failed: Vec<&ServerOutcome> = outcomes.iter().filter(|o| o.state == "failed").collect();
    if failed.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = failed.iter().map(|o| o.name.as_str()).collect();
    Err(Failed {
        message: format!("{} of {} servers of fleet {} failed: {}", failed.len(), s.count, s.name, names.join(", ")),
        hint: format!(
            "the others serve; see why above, then run the same command again: it keeps what is done and retries {}",
            if failed.len() == 1 { "it" } else { "them" }
        ),
    }
    .into())
}

/// A re-run keeps the fleet's domain: the certificate, the alias and every
/// server's routes name it.
fn check_existing(s: &FleetSettings, view: &FleetView) -> anyhow::Result<()> {
    if s.scale && !view.found_anything() {
        return Err(UsageError::new(format!("no fleet named {} exists in this region", s.name))
            .hint(format!("make it with `image-provision fleet create {} --count {}`", s.name, s.count.max(1)))
            .into());
    }
    if let Some(balancer) = &view.balancer {
        let had = view.domain();
        if had != s.domain {
            let was = had
                .as_deref()
                .map_or_else(|| format!("its balancer's own name ({})", balancer.dns_name), str::to_owned);
            return Err(UsageError::new(format!("fleet {} serves {was}; a re-run does not change its domain", s.name))
                .hint(format!(
                    "give the same --domain{} (or none), or `fleet destroy {}` and create it again with the new one",
                    had.as_deref().map(|d| format!(" {d}")).unwrap_or_default(),
                    s.name
                ))
                .into());
        }
    }
    Ok(())
}

/// Make (or converge) NAME-1..NAME-count, `parallel` at a time; each
/// registered at the balancer once its host steps have proven its stack.
async fn make_servers(s: &FleetSettings, api: &Arc<SdkApi>, front: &Front) -> Vec<ServerOutcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(s.parallel as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 1..=s.count {
        let name = fleet::server_name(&s.name, index);
        let subnet = &front.subnets[(index as usize - 1) % front.subnets.len()];
        let settings = s.server(&name, &subnet.id, &front.security_group_id, &front.host);
        let (api, permits) = (api.clone(), permits.clone());
        let (target_group, healthy_timeout, register) =
            (front.target_group.arn.clone(), s.healthy_timeout, !s.create.no_bootstrap);
        tasks.spawn_local(async move {
            let _permit = permits.acquire_owned().await;
            let started = Instant::now();
            let mut outcome = ServerOutcome {
                name: name.clone(),
                instance_id: None,
                zone: None,
                state: "failed",
                why: None,
                seconds: 0.0,
            };
            let made = create(settings).await;
            let instance =
                api.find_instances(Some(&name)).await.ok().and_then(|f| f.into_iter().find(Instance::is_live));
            outcome.instance_id = instance.as_ref().map(|i| i.id.clone());
            outcome.zone = instance.as_ref().and_then(|i| i.availability_zone.clone());
            match (made, instance) {
                (Err(e), _) => outcome.why = Some(explain(&e)),
                (Ok(()), None) => outcome.why = Some("its instance is gone".into()),
                (Ok(()), Some(_)) if !register => outcome.state = "made",
                (Ok(()), Some(i)) => match fleet::register(&*api, &target_group, &i.id, healthy_timeout).await {
                    Ok(_) => outcome.state = "healthy",
                    Err(e) => outcome.why = Some(explain(&ec2_error(e, None))),
                },
            }
            outcome.seconds = started.elapsed().as_secs_f64();
            outcome
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => outcomes.push(o),
            Err(e) => outcomes.push(ServerOutcome {
                name: "?".into(),
                instance_id: None,
                zone: None,
                state: "failed",
                why: Some(format!("its task ended: {e}")),
                seconds: 0.0,
            }),
        }
    }
    outcomes.sort_by_key(|o| fleet::member_index(&s.name, &o.name));
    outcomes
}

/// An error and its hint, on one line.
fn explain(e: &anyhow::Error) -> String {
    let message = match e.downcast_ref::<UsageError>() {
        Some(u) => u.message.clone(),
        None => format!("{e:#}"),
    };
    match hint(e) {
        Some(h) => format!("{message} (hint: {h})"),
        None => message,
    }
}

fn print_summary(
    s: &FleetSettings,
    front: &Front,
    outcomes: &[ServerOutcome],
    removed: &[String],
    took: Duration,
) -> anyhow::Result<()> {
    if s.create.json {
        let v = serde_json::json!({
            "name": s.name,
            "url": front.url(),
            "balancer": front.balancer,
            "target_group": front.target_group.name,
            "certificate": front.certificate,
            "dns": front.dns,
            "servers": outcomes,
            "removed": removed,
            "seconds": took.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.instance_id.clone().unwrap_or_else(|| "-".into()),
                o.zone.clone().unwrap_or_else(|| "-".into()),
                o.state.to_string(),
                format!("{:.0}s", o.seconds),
                o.why.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&["SERVER", "INSTANCE", "ZONE", "STATE", "TIME", "WHY"], &rows));
    println!("fleet      {}", s.name);
    println!("url        {}", front.url());
    println!("balancer   {} ({})", front.balancer.name, front.balancer.dns_name);
    if let Some(c) = &front.certificate {
        println!("cert       ACM {} for {} ({})", c.status, c.domain, c.arn);
    }
    if !removed.is_empty() {
        println!("removed    {}", removed.join(", "));
    }
    if s.create.no_bootstrap {
        println!(
            "note       --no-bootstrap: the servers were made, not set up, and are not registered at the balancer"
        );
    }
    println!("time       {:.0}s", took.as_secs_f64());
    Ok(())
}

/// `fleet list`.
pub async fn list(aws: &AwsOptions, json: bool) -> anyhow::Result<()> {
    let (api, _) = connect(aws).await?;
    let mut views = Vec::new();
    for name in fleet::names(&api).await.map_err(|e| ec2_error(e, None))? {
        views.push(fleet::find(&api, &name).await.map_err(|e| ec2_error(e, None))?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no fleets");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let address = match (&v.domain(), &v.balancer) {
                (Some(d), _) => format!("https://{d}/"),
                (None, Some(b)) => format!("http://{}/", b.dns_name),
                (None, None) => "- (no balancer)".into(),
            };
            let servers: Vec<String> = v
                .servers
                .iter()
                .map(|i| {
                    let at_balancer =
                        v.health.iter().find(|h| h.instance_id == i.id).map_or("not registered", |h| h.state.as_str());
                    format!("{} {} {at_balancer}", i.name, i.state)
                })
                .collect();
            let healthy = v.health.iter().filter(|h| h.state == "healthy").count();
            vec![
                v.name.clone(),
                address,
                format!("{healthy}/{}", v.servers.len()),
                crate::ec2::for_terminal(&servers.join(", ")),
            ]
        })
        .collect();
    print!("{}", table(&["FLEET", "ADDRESS", "HEALTHY", "SERVERS"], &rows));
    Ok(())
}

/// `fleet destroy`: its servers (drained first), then its front.
pub async fn destroy(s: &FleetDestroySettings) -> anyhow::Result<()> {
    if !s.yes && !std::io::stdin().is_terminal() {
        return Err(UsageError::new("fleet destroy asks for confirmation, and there is no terminal to ask on")
            .hint("pass --yes to destroy without asking")
            .into());
    }
    let progress = Progress::new();
    let (api, _) = connect(&s.aws).await?;
    let view = fleet::find(&api, &s.name).await.map_err(|e| ec2_error(e, None))?;
    if !view.found_anything() {
        println!("no fleet named {} exists (nothing to remove)", s.name);
        return Ok(());
    }
    if !s.yes {
        let servers: Vec<&str> = view.servers.iter().map(|i| i.name.as_str()).collect();
        let question = format!(
            "Destroy fleet {} (servers: {}; its balancer, certificate and records)?",
            s.name,
            if servers.is_empty() { "none".into() } else { servers.join(", ") }
        );
        if !confirm(&question)? {
            println!("nothing destroyed");
            return Ok(());
        }
    }
    let mut servers = Vec::new();
    for server in &view.servers {
        if let Some(g) = &view.target_group {
            // Drained only while the balancer still sends it requests.
            fleet::drain(&api, &g.arn, &server.id, Duration::from_secs(300)).await.map_err(|e| ec2_error(e, None))?;
        }
        provision::destroy(&api, &server.name, |l| progress.line(format!("{}: {l}", server.name)))
            .await
            .map_err(|e| ec2_error(e, None))?;
        remove_state_dir(&server.name)?;
        servers.push(server.name.clone());
    }
    let front = fleet::destroy_front(&api, &view, |l| progress.line(format!("{}: {l}", s.name)))
        .await
        .map_err(|e| ec2_error(e, None))?;
    if s.json {
        let v = serde_json::json!({"name": s.name, "servers": servers, "front": front});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("destroyed fleet {}:", s.name);
    let list = |label: &str, items: &[String]| {
        if !items.is_empty() {
            println!("  {label:<16}{}", items.join(", "));
        }
    };
    list("servers", &servers);
    list("load balancer", front.balancer.as_slice());
    list("target group", front.target_group.as_slice());
    list("certificates", &front.certificates);
    list("security groups", &front.security_groups);
    list("DNS records", &front.dns_records);
    if !front.dns_left_alone.is_empty() {
        println!("  {:<16}{} (not made for fleet {})", "kept DNS", front.dns_left_alone.join(", "), s.name);
    }
    Ok(())
}
