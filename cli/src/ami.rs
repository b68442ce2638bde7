//! `ami bake | list | delete`: baked images of IMAGE servers.
//!
//! A bake, in order: the server found by its tags and reached as verify
//! reaches it; its health read (a bake of a broken server would hand the
//! breakage on); what the image will hold read (commit, driver, digests);
//! what must not be shared moved off the disk into /run (bake-hold.sh);
//! CreateImage without a reboot; the wait until EC2 names the image's
//! snapshots (from then on the volume's content at CreateImage is fixed in
//! them); everything put back; the snapshots tagged; the wait until the
//! image is available. Any failure between the hold and the put-back puts
//! back before it is reported; a cut (the tool killed) leaves the record the
//! next `ami bake` acts on first (or `ami bake SERVER --restore`).

use std::io::IsTerminal;
use std::time::Instant;

use image_provision_playbooks::bake::{self, BakeFacts, Restored};
use image_provision_provision::ami::{self, Holds};
use image_provision_provision::{self as provision, DryRunApi, Ec2Api, Image, Instance};
use image_provision_remote::{Cmd, Session, tail};

use crate::ec2::{confirm, connect, for_terminal};
use crate::errors::{Failed, UsageError, ec2_error};
use crate::output::{Progress, table};
use crate::resolve::{AmiDeleteSettings, BakeSettings};
use crate::verify_update::{connection, open, read_report};

/// How long, at most, EC2 may take to name a new image's snapshots: the
/// server's secrets are held off its disk meanwhile, so this wait is short
/// whatever --bake-timeout says (EC2 names them within seconds).
const SNAPSHOTS_NAMED_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// When the host puts back what it holds by itself (the tool cut off): past
/// the wait for the snapshots, with time to spare for the put-back.
const HOST_WATCHDOG: std::time::Duration = std::time::Duration::from_secs(900);

/// What the clean-up holds aside, for the dry run and the docs.
const HELD: &str = "the SSH host keys, root's and the login user's authorized_keys, the stack's env files \
                    (config/*.env), the local LLM's key, the repository credentials, the logs (/var/log, the \
                    journal, the pull log, the containers' logs), cloud-init's per-instance state (/var/lib/cloud); /etc/machine-id \
                    emptied";

pub async fn bake(s: BakeSettings) -> anyhow::Result<()> {
    if s.dry_run {
        return bake_dry_run(&s).await;
    }
    let progress = Progress::new();
    let (api, region) = connect(&s.aws).await?;
    let instance = provision::the_instance(&api, &s.server_name).await.map_err(|e| ec2_error(e, None))?;
    let c = connection(s.server.server).await?;
    let session = open(c, &progress).await?;
    let user = session.target().user.clone();
    let base_dir = s.server.report.base_dir.clone();

    // A hold a cut bake left is put back first, whatever else this run does.
    let facts = BakeFacts::parse(&run(&session, &bake::facts_command(&base_dir, &user)).await?);
    if facts.held || s.restore_only {
        let restored = restore(&session, &base_dir, &user).await?;
        progress.line(restored_line(&s.server_name, &restored));
        if s.restore_only {
            return restored_result(&s.server_name, &restored);
        }
    }
    if instance.state != "running" {
        return Err(ec2_error(
            provision::Error::NotRunning {
                name: s.server_name.clone(),
                instance_id: instance.id.clone(),
                state: instance.state.clone(),
            },
            None,
        ));
    }

    let started = Instant::now();
    let image = match ami::check_name_free(&api, &s.image_name).await.map_err(|e| ec2_error(e, None))? {
        Some(existing) => {
            progress.line(format!(
                "{} exists already ({}, {}): not made again",
                existing.name, existing.id, existing.state
            ));
            existing
        }
        None => {
            let report = read_report(&session, &s.server.report, None).await?;
            if !report.healthy {
                return Err(Failed {
                    message: format!(
                        "{} is not healthy (failed check(s): {}): an image of it would hand that on",
                        s.server_name,
                        report.failed.join(", ")
                    ),
                    hint: format!(
                        "see `image-provision verify {}`, fix it, then bake again; nothing was changed",
                        s.server_name
                    ),
                }
                .into());
            }
            let holds = Holds {
                repo_commit: facts.repo_commit.clone(),
                driver_branch: facts.driver_branch.clone(),
                digests: facts.digests.clone(),
            };
            take_image(&api, &session, &instance, &s.image_name, &holds, &base_dir, &user, &progress).await?
        }
    };
    let _ = session.close().await;
    ami::tag_snapshots(&api, &image, |l| progress.line(l)).await.map_err(|e| ec2_error(e, None))?;
    let spinner =
        progress.spinner(format!("waiting for {} to be available (limit {} s)", image.id, s.timeout.as_secs()));
    let image = ami::wait_image(&api, &image.id, false, s.timeout, |l| spinner.line(l)).await;
    spinner.finish();
    let image = image.map_err(|e| ec2_error(e, None))?;
    let holds = Holds::from_tags(&image);
    if s.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": image.name,
                "image_id": image.id,
                "region": region,
                "state": image.state,
                "source_server": s.server_name,
                "snapshots": image.snapshot_ids,
                "holds": holds,
                "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            }))?
        );
    } else {
        println!("image      {} ({}) in {region}, {}", image.name, image.id, image.state);
        println!("from       {} ({})", s.server_name, instance.id);
        println!("holds      {}", holds_line(&holds));
        println!("snapshots  {}", image.snapshot_ids.join(", "));
        println!("time       {:.1}s", started.elapsed().as_secs_f64());
        println!("use        image-provision ec2 create NAME --ami {}", image.name);
    }
    Ok(())
}

/// Hold, CreateImage, wait for the snapshots, put back: the put-back runs
/// whatever happened after the hold.
#[allow(clippy::too_many_arguments)]
async fn take_image<A: Ec2Api>(
    api: &A,
    session: &Session,
    instance: &Instance,
    name: &str,
    holds: &Holds,
    base_dir: &str,
    user: &str,
    progress: &Progress,
) -> anyhow::Result<Image> {
    let held = run(session, &bake::hold_command(base_dir, user, HOST_WATCHDOG)).await?;
    progress.line(format!(
        "held aside in {} (off the disk): {} files, {} KiB",
        bake::HOLD_DIR,
        value(&held, "held.count"),
        value(&held, "held.kib")
    ));
    let taken = async {
        let id = ami::create_image(api, instance, name, holds, |l| progress.line(l)).await?;
        let spinner = progress.spinner(format!("waiting for EC2 to name {id}'s snapshots"));
        let image = ami::wait_image(api, &id, true, SNAPSHOTS_NAMED_LIMIT, |l| spinner.line(l)).await;
        spinner.finish();
        image
    }
    .await;
    let restored = restore(session, base_dir, user).await;
    match (&taken, &restored) {
        (_, Ok(r)) => progress.line(restored_line(&instance.name, r)),
        (_, Err(e)) => progress.line(format!(
            "putting back what was held failed: {e:#}; run `image-provision ami bake {} --restore`",
            instance.name
        )),
    }
    let image = taken.map_err(|e| ec2_error(e, None))?;
    let restored = restored?;
    restored_result(&instance.name, &restored)?;
    Ok(image)
}

async fn restore(session: &Session, base_dir: &str, user: &str) -> anyhow::Result<Restored> {
    Ok(Restored::parse(&run(session, &bake::restore_command(base_dir, user)).await?))
}

fn restored_line(server: &str, r: &Restored) -> String {
    match r.state.as_str() {
        "restored" if r.lost.is_empty() => format!("put back on {server}: {} held files", r.back),
        "restored" => format!("put back on {server}: {} held files; lost: {}", r.back, r.lost.join(", ")),
        "foreign-record-removed" => {
            format!("{server} held a record of another host's bake (from the image it was made from): removed")
        }
        _ => format!("{server}: nothing was held aside"),
    }
}

/// Lost files are a failure to say: the operator has to give them again.
fn restored_result(server: &str, r: &Restored) -> anyhow::Result<()> {
    if r.lost.is_empty() {
        return Ok(());
    }
    Err(Failed {
        message: format!(
            "{server} lost what a bake held aside ({}): it rebooted before they were put back",
            r.lost.join(", ")
        ),
        hint: format!(
            "host keys and authorized keys came back from cloud-init's first-boot run; give the env files again \
             with `image-provision ec2 create {server} --env-file NAME=PATH` (the logs are gone)"
        ),
    }
    .into())
}

/// Run a bake-hold.sh action; its stdout, or why it failed.
async fn run(session: &Session, cmd: &Cmd) -> anyhow::Result<String> {
    let out = session
        .exec_unchecked(cmd)
        .await
        .map_err(|e| Failed::remote(format!("{} failed: {e}", cmd.label()), &e, "run `ami bake` again"))?;
    if out.code() != Some(0) {
        return Err(Failed {
            message: format!("{} failed ({}): {}", cmd.label(), out.status, tail(&out.stderr, 10, 2000).trim()),
            hint: "nothing was held aside unless it says so above; run `ami bake` again once fixed".into(),
        }
        .into());
    }
    Ok(out.stdout_str().to_string())
}

fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).unwrap_or("?")
}

fn holds_line(h: &Holds) -> String {
    format!(
        "commit {}, driver {}, {} image digests",
        h.repo_commit.get(..12).unwrap_or(&h.repo_commit),
        h.driver_branch.as_deref().unwrap_or("none"),
        h.digests.len()
    )
}

async fn bake_dry_run(s: &BakeSettings) -> anyhow::Result<()> {
    println!(
        "dry run: what `ami bake {} --name {}` would do, in order; no AWS call is made and the host is not touched",
        s.server_name, s.image_name
    );
    let api = DryRunApi::new(|line| println!("{line}"));
    let instance = Instance {
        id: format!("<instance of {}>", s.server_name),
        name: s.server_name.clone(),
        state: "running".into(),
        ..Default::default()
    };
    api.find_instances(Some(&s.server_name)).await.map_err(|e| ec2_error(e, None))?;
    ami::check_name_free(&api, &s.image_name).await.map_err(|e| ec2_error(e, None))?;
    println!("then: over SSH, verify's health checks (a server that fails one is not baked)");
    println!("then: over SSH, bake-hold.sh facts: the clone's commit, the driver branch, each service's image digest");
    println!(
        "then: over SSH, bake-hold.sh hold: moved off the disk into {} (RAM): {HELD}; a watchdog on the host puts \
         them back by itself after {} s should this run be cut off",
        bake::HOLD_DIR,
        HOST_WATCHDOG.as_secs()
    );
    let holds = Holds {
        repo_commit: "<the clone's commit>".into(),
        driver_branch: Some("<the driver branch>".into()),
        digests: vec![("<SERVICE>".into(), "<its image's digest>".into())],
    };
    let id = ami::create_image(&api, &instance, &s.image_name, &holds, |_| {}).await.map_err(|e| ec2_error(e, None))?;
    println!("then: wait (at most {} s) until EC2 names the image's snapshots:", SNAPSHOTS_NAMED_LIMIT.as_secs());
    api.image(&id).await.map_err(|e| ec2_error(e, None))?;
    println!("then: over SSH, bake-hold.sh restore: everything held put back, the record removed");
    let image = Image {
        id: id.clone(),
        name: s.image_name.clone(),
        creation_date: String::new(),
        root_device_name: String::new(),
        state: "pending".into(),
        owner_id: String::new(),
        tags: vec![],
        snapshot_ids: vec!["<its snapshots' ids>".into()],
    };
    ami::tag_snapshots(&api, &image, |_| {}).await.map_err(|e| ec2_error(e, None))?;
    if image.snapshot_ids.len() == 1 {
        api.create_tags(&image.snapshot_ids, &ami::snapshot_tags(&image.name, &id))
            .await
            .map_err(|e| ec2_error(e, None))?;
    }
    println!("then: wait (at most {} s, --bake-timeout) until the image is available", s.timeout.as_secs());
    Ok(())
}

pub async fn list(aws: &provision::AwsOptions, json: bool) -> anyhow::Result<()> {
    let (api, region) = connect(aws).await?;
    let images = ami::list(&api).await.map_err(|e| ec2_error(e, None))?;
    if json {
        let rows: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "image_id": i.id,
                    "state": i.state,
                    "created": i.creation_date,
                    "source_server": i.tag(provision::tags::SOURCE_SERVER),
                    "holds": Holds::from_tags(i),
                    "snapshots": i.snapshot_ids,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if images.is_empty() {
        println!("no baked images in {region} (make one with `image-provision ami bake SERVER`)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            let h = Holds::from_tags(i);
            vec![
                for_terminal(&i.name),
                i.id.clone(),
                i.state.clone(),
                i.creation_date.clone(),
                for_terminal(i.tag(provision::tags::SOURCE_SERVER).unwrap_or("-")),
                for_terminal(h.repo_commit.get(..12).unwrap_or(&h.repo_commit)),
                for_terminal(h.driver_branch.as_deref().unwrap_or("none")),
                h.digests.len().to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["NAME", "IMAGE", "STATE", "CREATED", "FROM", "COMMIT", "DRIVER", "IMAGES"], &rows));
    Ok(())
}

pub async fn delete(s: &AmiDeleteSettings) -> anyhow::Result<()> {
    if s.dry_run {
        println!("dry run: the AWS calls `ami delete {}` would make, in order; none is made", s.name);
        let api = DryRunApi::new(|line| println!("{line}"));
        ami::delete(&api, &s.name, |_| {}).await.map_err(|e| ec2_error(e, None))?;
        return Ok(());
    }
    if !s.yes && !std::io::stdin().is_terminal() {
        return Err(UsageError::new("ami delete asks for confirmation, and there is no terminal to ask on")
            .hint("pass --yes to delete without asking")
            .into());
    }
    let (api, _) = connect(&s.aws).await?;
    if !s.yes {
        let found = ami::find(&api, &s.name).await.map_err(|e| ec2_error(e, None))?;
        let what = match &found {
            Some(i) => format!("{} ({}) and its snapshots {}", i.name, i.id, i.snapshot_ids.join(", ")),
            None => format!("what is left of {}", s.name),
        };
        if !confirm(&format!("delete {what}?"))? {
            println!("nothing deleted");
            return Ok(());
        }
    }
    let progress = Progress::new();
    let report = ami::delete(&api, &s.name, |l| progress.line(l)).await.map_err(|e| ec2_error(e, None))?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "deleted {}{}: {} snapshot(s) deleted{}",
            s.name,
            report.image_id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default(),
            report.snapshots_deleted.len(),
            if report.snapshots_left.is_empty() {
                String::new()
            } else {
                format!(", {} left (not tagged as its own)", report.snapshots_left.len())
            }
        );
    }
    Ok(())
}
