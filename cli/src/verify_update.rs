//! `image-provision verify` and `update`, for an EC2 server by NAME or any
//! host by --host. verify reads facts in one round trip and changes nothing;
//! update records what runs (the clone's commit, each service's image
//! digest), runs imageup again (under its time limit), waits for the
//! services, sends the request, and reports as verify does; when the stack
//! is not healthy within its limits it rolls back to the record (pinned by
//! digest) and exits 1 saying so. `update --rollback` returns by hand to
//! what ran before the last good update.
//!
//! update keeps a run log as bootstrap does (it acts: imageup recreates the
//! stack, and a failure needs imageup's whole output, not the tail shown).
//! verify keeps none: it runs one read-only command whose every fact is in
//! the report it prints, and it is meant to be run often (by scripts, with
//! --json), where a log file per run would only pile up in the state
//! directory with nothing the report did not already say.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image_provision_playbooks::Facts;
use image_provision_playbooks::report::{self, Report, ReportOptions, Status};
use image_provision_playbooks::runner::{TAIL_BYTES, TAIL_LINES};
use image_provision_playbooks::settings;
use image_provision_playbooks::steps::{health, nvidia, stack};
use image_provision_provision::Ec2Api;
use image_provision_remote::{
    Cmd, ConnectOptions, HostKeyPolicy, Identity, Output, RebootOptions, Session, Target, tail,
};

use crate::errors::{Failed, UsageError, ec2_error};
use crate::output::{Progress, table};
use crate::resolve::{DriverUpgrade, Server, ServerSettings, UpdateSettings};
use crate::runlog::RunLog;
use crate::state;

/// Where to connect, and how.
pub(crate) struct Connection {
    target: Target,
    identity: Identity,
    policy: HostKeyPolicy,
    known_hosts: PathBuf,
}

/// --host as bootstrap reaches it; NAME as `ec2 create` does (the instance
/// by its tag, its public IP, the state directory's key and known_hosts, the
/// host key checked strictly).
pub(crate) async fn connection(server: Server) -> anyhow::Result<Connection> {
    let (name, aws, identity, user, ssh_addr) = match server {
        Server::Host { target, identity, policy } => {
            let base = state::base_dir()?;
            state::ensure_private_dir(&base)?;
            return Ok(Connection { target, identity, policy, known_hosts: base.join(state::KNOWN_HOSTS) });
        }
        Server::Ec2 { name, aws, identity, ssh_user, ssh_addr } => (name, aws, identity, ssh_user, ssh_addr),
    };
    let dir = state::server_dir(&name)?;
    let known_hosts = dir.join(state::KNOWN_HOSTS);
    if !known_hosts.is_file() {
        return Err(UsageError::new(format!("{name}: no known host key ({} is missing)", known_hosts.display()))
            .hint(format!("use `--host USER@ADDRESS --accept-new-host-key` after checking the key, or recreate the state with `image-provision ec2 create {name}`"))
            .into());
    }
    let (api, _) = image_provision_provision::connect(&aws).await?;
    let found = api.find_instances(Some(&name)).await.map_err(|e| ec2_error(e, None))?;
    let Some(instance) = found.iter().find(|i| i.state == "running" && i.public_ip.is_some()) else {
        return Err(Failed {
            message: format!("no running instance named {name} with a public IP"),
            hint: "see `image-provision ec2 list`".into(),
        }
        .into());
    };
    let (host, port) = match ssh_addr {
        Some(s) => (s.ip().to_string(), s.port()),
        None => (instance.public_ip.clone().unwrap_or_default(), image_provision_remote::DEFAULT_PORT),
    };
    let identity = match identity {
        Some(i) => i,
        None => {
            let key = dir.join(state::GENERATED_KEY);
            if !key.is_file() {
                return Err(UsageError::new(format!("{name}: no generated key {}", key.display()))
                    .hint("the server was created with --ssh-key: pass the same private key with --identity")
                    .into());
            }
            Identity::key_file(key)
        }
    };
    Ok(Connection { target: Target::new(user, host, port), identity, policy: HostKeyPolicy::Strict, known_hosts })
}

pub(crate) async fn open(s: Connection, progress: &Progress) -> anyhow::Result<Session> {
    let spinner = progress.spinner(format!("connecting to {}", s.target));
    let opts = ConnectOptions::new(s.target.clone(), &s.known_hosts).identity(s.identity).policy(s.policy);
    let session = Session::connect(opts).await;
    spinner.finish();
    session.map_err(|e| Failed::remote(format!("cannot reach {}: {e}", s.target), &e, "nothing was changed").into())
}

/// Run `cmd` whatever its exit status, into the log when there is one.
async fn exec(
    session: &Session,
    cmd: &Cmd,
    label: &str,
    log: &mut Option<&mut RunLog>,
) -> image_provision_remote::Result<Output> {
    let started = Instant::now();
    let out = session.exec_unchecked(cmd).await;
    if let Some(log) = log {
        let shown = cmd.redacted(session.target().is_root());
        match &out {
            Ok(out) => log.command(label, &shown, out, started.elapsed()),
            Err(e) => log.line(&format!("--- [{label}] $ {shown}\n--- {e}")),
        }
    }
    out
}

pub(crate) async fn read_report(
    session: &Session,
    o: &ReportOptions,
    mut log: Option<&mut RunLog>,
) -> anyhow::Result<Report> {
    let cmd = report::facts_command(o);
    // For verify nothing was changed; update has acted by now, and says where its log is.
    let then = match &log {
        Some(log) => format!("run update again; the log is {}", log.path.display()),
        None => "nothing was changed".into(),
    };
    let out = exec(session, &cmd, "verify", &mut log)
        .await
        .map_err(|e| Failed::remote(format!("reading the facts failed: {e}"), &e, &then))?;
    if !out.code().is_some_and(|c| cmd.accepts(c)) {
        let why = format!("{}\n{}", out.status, tail(&out.stderr, TAIL_LINES, TAIL_BYTES));
        return Err(Failed { message: format!("reading the facts failed: {why}"), hint: then }.into());
    }
    Ok(report::evaluate(&Facts::parse(&out.stdout_str()), o))
}

/// Print the report (with the run's log, if it kept one); an error (exit 1)
/// naming the failed checks unless healthy.
/// A rollback's summary line, its lines and the update's failure, for
/// the report.
type RollBack<'a> = (&'a str, &'a [String], Option<&'a str>);

pub fn show(
    host: &str,
    r: &Report,
    json: bool,
    log: Option<&Path>,
    rolled_back: Option<RollBack>,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["host"] = serde_json::json!(host);
        if let Some(log) = log {
            v["log"] = serde_json::json!(log.display().to_string());
        }
        if let Some((summary, lines, failed)) = rolled_back {
            v["rolled_back"] = serde_json::json!({"summary": summary, "lines": lines, "update_failed": failed});
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!("host            {host}");
        println!("os              {}", r.os);
        println!("driver          {}", dash(&r.driver_version));
        println!("gpu             {} ({})", dash(&r.gpu.name), dash(&r.gpu.memory));
        println!("docker          {}", dash(&r.docker_version));
        println!("nvidia runtime  {}", if r.docker_nvidia_runtime { "yes" } else { "no" });
        println!("traefik         {}", if r.traefik_running { "running" } else { "not running" });
        if let Some(s) = &r.acme_server {
            println!("certificates    {}", image_provision_playbooks::settings::acme_server_name(s));
        }
        println!("orchestrator    {}", dash(&r.orchestrator));
        println!("extension URL   {}", dash(&r.extension_url));
        println!();
        let rows: Vec<Vec<String>> =
            r.checks.iter().map(|c| vec![c.name.to_string(), c.status.label().to_string(), c.detail.clone()]).collect();
        print!("{}", table(&["CHECK", "STATUS", "DETAIL"], &rows));
        if let Some((_, lines, failed)) = rolled_back {
            if let Some(failed) = failed {
                println!("update failed: {failed}");
            }
            for line in lines {
                println!("{line}");
            }
        }
        println!("{}", if r.healthy { "healthy" } else { "UNHEALTHY" });
        if let Some(log) = log {
            println!("log: {}", log.display());
        }
    }
    verdict(host, r, log)
}

/// Ok when healthy, else an error (exit 1) naming the failed checks.
pub fn verdict(host: &str, r: &Report, log: Option<&Path>) -> anyhow::Result<()> {
    if r.healthy {
        return Ok(());
    }
    let details: Vec<String> =
        r.checks.iter().filter(|c| c.status == Status::Failed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let mut hint =
        format!("{}; fix the cause (or run `image-provision update`), then verify again", details.join("; "));
    if let Some(log) = log {
        hint.push_str(&format!("; the log is {}", log.display()));
    }
    Err(Failed { message: format!("{host} is not healthy: failed check(s) {}", r.failed.join(", ")), hint }.into())
}

/// The request that proves the stack, when the report allows it (every
/// other check passed, and not --no-request), added to the report.
async fn with_request(
    session: &Session,
    o: &ReportOptions,
    mut r: Report,
    timeout: std::time::Duration,
    progress: &Progress,
    log: &mut Option<&mut RunLog>,
) -> Report {
    let Some(cmd) = report::request_command(&r, o, timeout) else { return r };
    let spinner = progress.spinner(format!("POST {} (time limit {} s)", settings::PREPROCESS_PATH, timeout.as_secs()));
    let out = exec(session, &cmd, "request", log).await;
    spinner.finish();
    r.add_request(match out {
        Ok(out) if out.code() == Some(0) => Ok(out
            .stdout_str()
            .lines()
            .find_map(|l| l.strip_prefix("result: ").map(str::to_string))
            .unwrap_or_else(|| "answered".into())),
        Ok(out) => Err(tail(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }, TAIL_LINES, TAIL_BYTES)
            .trim()
            .to_string()),
        Err(e) => Err(format!("sending it failed: {e}")),
    });
    r
}

pub async fn verify(s: ServerSettings) -> anyhow::Result<()> {
    let c = connection(s.server).await?;
    let host = c.target.to_string();
    let progress = Progress::new();
    let session = open(c, &progress).await?;
    let r = match read_report(&session, &s.report, None).await {
        Ok(r) => Ok(with_request(&session, &s.report, r, settings::DEFAULT_HEALTH_TIMEOUT, &progress, &mut None).await),
        Err(e) => Err(e),
    };
    let _ = session.close().await;
    show(&host, &r?, s.json, None, None)
}

/// `update --upgrade-driver`: the held driver upgraded and held again
/// (upgrade-driver.sh), then, when it changed, a reboot: the new libraries
/// need the kernel module that loads at boot. The stack's unit starts the
/// stack at boot, and the imageup that follows waits for it (the bring-up
/// lock).
async fn upgrade_driver(
    session: &mut Session,
    upgrade: &DriverUpgrade,
    progress: &Progress,
    log: &mut RunLog,
) -> anyhow::Result<()> {
    let then = format!("fix the cause and run update again; the log is {}", log.path.display());
    let spinner = progress.spinner("upgrading the NVIDIA driver");
    let cmd =
        nvidia::upgrade_driver_command(image_provision_playbooks::Config::default().lock_timeout, &upgrade.branch);
    let out = exec(session, &cmd, "upgrade-driver", &mut Some(&mut *log)).await;
    spinner.finish();
    let out = out.map_err(|e| Failed::remote(format!("upgrading the driver: {e}"), &e, &then))?;
    if out.code() != Some(0) {
        let tail = tail(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }, TAIL_LINES, TAIL_BYTES);
        return Err(Failed {
            message: format!("upgrading the NVIDIA driver failed ({}):\n{tail}", out.status),
            hint: then,
        }
        .into());
    }
    let text = out.stdout_str();
    for line in text.lines().filter(|l| *l != nvidia::REBOOT_NEEDED) {
        progress.line(line);
    }
    if !text.lines().any(|l| l == nvidia::REBOOT_NEEDED) {
        return Ok(());
    }
    let spinner = progress.spinner("rebooting: the new driver's kernel module loads at boot");
    let opts = RebootOptions { timeout: upgrade.reboot_timeout, ..RebootOptions::default() };
    let report = session.reboot(opts).await;
    spinner.finish();
    let report = report.map_err(|e| Failed::remote(format!("the reboot after the driver upgrade: {e}"), &e, &then))?;
    log.line(&format!("rebooted: boot id {} -> {}", report.old_boot_id, report.new_boot_id));
    progress.line(format!("rebooted in {:.0}s", report.elapsed.as_secs_f64()));
    Ok(())
}

/// The checks whose failure after an update rolls it back: the stack's own
/// (a driver or a certificate is not what an update changes).
const STACK_CHECKS: [&str; 3] = ["stack", "orchestrator", "request"];

/// The report once the services are well or `timeout` has passed, the
/// request included: at once when every check passes, else after a wait
/// for what must run (services still starting; and with a domain HTTPS:
/// Traefik routes a container only once it is healthy).
async fn settle(
    session: &Session,
    o: &ReportOptions,
    timeout: std::time::Duration,
    progress: &Progress,
    log: &mut RunLog,
) -> anyhow::Result<Report> {
    let report = read_report(session, o, Some(&mut *log)).await?;
    if report.healthy {
        return Ok(with_request(session, o, report, timeout, progress, &mut Some(log)).await);
    }
    let spinner = progress.spinner("waiting for the services to be healthy");
    let expected: Vec<String> = report.services.iter().filter(|s| !report.left_out(s)).cloned().collect();
    let wait = health::wait_command(&o.base_dir, &expected, timeout, report.checked_site(o).as_ref());
    let _ = exec(session, &wait, "health", &mut Some(&mut *log)).await;
    spinner.finish();
    let report = read_report(session, o, Some(&mut *log)).await?;
    Ok(with_request(session, o, report, timeout, progress, &mut Some(log)).await)
}

/// What the report says failed, for a message: the services not well by
/// name and state, else the failed checks with their details.
fn what_failed(r: &Report) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !r.not_ok.is_empty() {
        let names: Vec<String> = r.not_ok.iter().map(|t| t.describe()).collect();
        parts.push(format!("not healthy: {}", names.join(", ")));
    }
    for c in r.checks.iter().filter(|c| c.status == Status::Failed && c.name != "stack") {
        parts.push(format!("{}: {}", c.name, c.detail));
    }
    parts.join("; ")
}

/// rollback.sh for `record`: its output's lines, or an error naming why.
async fn record(
    session: &Session,
    base_dir: &str,
    record: stack::Record,
    timeout: std::time::Duration,
    progress: &Progress,
    log: &mut RunLog,
) -> Result<Vec<String>, String> {
    let label = match record {
        stack::Record::Updated => "recording the update",
        stack::Record::RollBack => "rolling back",
        stack::Record::RollBackByHand => "rolling back (--rollback)",
    };
    let spinner = progress.spinner(format!("{label} (time limit {} s)", timeout.as_secs()));
    let out = exec(session, &stack::record_command(base_dir, record, timeout), label, &mut Some(log)).await;
    spinner.finish();
    match out {
        Ok(out) if out.code() == Some(0) => Ok(out.stdout_str().lines().map(str::to_string).collect()),
        Ok(out) => Err(tail(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }, TAIL_LINES, TAIL_BYTES)
            .trim()
            .to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// How an update ended: the report of the stack as it is now, and when it
/// was rolled back, why and to what.
struct Updated {
    report: Report,
    /// The update's failure (None for `--rollback` by hand).
    failed: Option<String>,
    /// rollback.sh's lines: "rolled back from X to Y", the images changed.
    rolled_back: Option<Vec<String>>,
}

pub async fn update(u: UpdateSettings) -> anyhow::Result<()> {
    let o = u.server.report;
    let c = connection(u.server.server).await?;
    let host = c.target.to_string();
    // Started only once the input is checked: bad input leaves no trace.
    let mut log = RunLog::create("update", &c.target, false)?;
    let log_path = log.path.clone();
    let progress = Progress::new();
    progress.line(format!("log: {}", log_path.display()));
    let mut session = match open(c, &progress).await {
        Ok(session) => session,
        Err(e) => {
            log.line(&format!("connect failed: {e}"));
            return Err(e);
        }
    };
    let again = format!("run update again; the log is {}", log_path.display());
    let result = async {
        if u.rollback {
            let lines =
                record(&session, &o.base_dir, stack::Record::RollBackByHand, u.imageup_timeout, &progress, &mut log)
                    .await
                    .map_err(|why| Failed {
                        message: format!("update --rollback failed: {why}"),
                        hint: format!("the whole output is in {}", log_path.display()),
                    })?;
            for line in &lines {
                progress.line(line);
            }
            let report = settle(&session, &o, u.health_timeout, &progress, &mut log).await?;
            return anyhow::Ok(Updated { report, failed: None, rolled_back: Some(lines) });
        }
        if let Some(upgrade) = &u.upgrade_driver {
            upgrade_driver(&mut session, upgrade, &progress, &mut log).await?;
        }
        let what = if u.imageup { "imageup" } else { "compose pull and up" };
        let spinner = progress.spinner(format!("{what} (time limit {} s)", u.imageup_timeout.as_secs()));
        let started = Instant::now();
        let cmd = stack::update_command(&o.base_dir, u.imageup, u.imageup_timeout);
        let out = exec(&session, &cmd, what, &mut Some(&mut log)).await;
        spinner.finish();
        let out = out.map_err(|e| Failed::remote(format!("{what}: {e}"), &e, &again))?;
        let failed = match out.code() {
            Some(0) => {
                progress.line(format!("{what} done in {:.1}s", started.elapsed().as_secs_f64()));
                let report = settle(&session, &o, u.health_timeout, &progress, &mut log).await?;
                if report.healthy || !report.failed.iter().any(|f| STACK_CHECKS.contains(f)) {
                    if report.healthy {
                        match record(
                            &session,
                            &o.base_dir,
                            stack::Record::Updated,
                            u.imageup_timeout,
                            &progress,
                            &mut log,
                        )
                        .await
                        {
                            Ok(lines) => lines.iter().for_each(|l| progress.line(l)),
                            Err(why) => progress.line(format!("warning: recording the update failed: {why}")),
                        }
                    }
                    return Ok(Updated { report, failed: None, rolled_back: None });
                }
                format!(
                    "the stack was not healthy within {} s after {what}: {}",
                    u.health_timeout.as_secs(),
                    what_failed(&report)
                )
            }
            // update.sh: not bootstrapped.
            Some(3) => {
                let tail = tail(&out.stderr, TAIL_LINES, TAIL_BYTES);
                return Err(Failed { message: tail.trim().to_string(), hint: "nothing was changed".into() }.into());
            }
            _ => {
                let tail = tail(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }, TAIL_LINES, TAIL_BYTES);
                format!("{what} failed ({}):\n{}", out.status, tail.trim())
            }
        };
        progress.line(format!("the update failed, rolling back: {failed}"));
        let lines = record(&session, &o.base_dir, stack::Record::RollBack, u.imageup_timeout, &progress, &mut log)
            .await
            .map_err(|why| Failed {
                message: format!("the update failed: {failed}\nand rolling back failed: {why}"),
                hint: format!("the whole output is in {}", log_path.display()),
            })?;
        for line in &lines {
            progress.line(line);
        }
        let report = settle(&session, &o, u.health_timeout, &progress, &mut log).await?;
        Ok(Updated { report, failed: Some(failed), rolled_back: Some(lines) })
    }
    .await;
    let _ = session.close().await;
    if let Err(e) = &result {
        log.line(&format!("update failed: {e}"));
    }
    log.flush();
    let Updated { report, failed, rolled_back } = result?;
    let Some(lines) = rolled_back else {
        return show(&host, &report, u.server.json, Some(&log_path), None);
    };
    let summary = lines.iter().find(|l| l.starts_with("rolled back")).cloned().unwrap_or_default();
    let shown = show(&host, &report, u.server.json, Some(&log_path), Some((&summary, &lines, failed.as_deref())));
    let Some(failed) = failed else { return shown };
    let after = match &shown {
        Ok(()) => "the stack is healthy again and answered the request".to_string(),
        Err(e) => format!("and after the rollback: {e}"),
    };
    // A pull Docker Hub refused for its rate limit: its own two ways out.
    let cause = image_provision_playbooks::steps::docker::pull_limit_hint(&failed)
        .unwrap_or_else(|| "fix the cause (or wait for a fixed release)".into());
    Err(Failed {
        message: format!("{host}: the update failed: {failed}\n{summary}; {after}"),
        hint: format!(
            "the stack stays pinned to the recorded images until the next update; {cause}; then run update again; the log is {}",
            log_path.display()
        ),
    }
    .into())
}

/// Whether a failed connection may succeed if tried again: the host is not
/// up yet, or its SSH server not yet ready. A host key or a login that is
/// refused is an answer, not a delay.
fn not_up_yet(e: &image_provision_remote::Error) -> bool {
    use image_provision_remote::Error as E;
    matches!(e, E::Connect { .. } | E::ConnectTimeout { .. } | E::Unreachable { .. } | E::Ssh { .. })
}

/// `ec2 start`'s last wait: the stack comes up by itself at boot (the unit
/// image-provision-stack.service), so verify's facts are read again every
/// few seconds until the server is healthy or `timeout` has passed; then
/// the request that proves it, and verify's report (for [`show`]). The host key is checked
/// strictly against the state directory's known_hosts, as verify does.
pub async fn wait_until_healthy(
    name: &str,
    s: ServerSettings,
    timeout: std::time::Duration,
    progress: &Progress,
) -> anyhow::Result<(String, Report)> {
    let c = connection(s.server).await?;
    let host = c.target.to_string();
    let started = Instant::now();
    let spinner = progress.spinner(format!(
        "waiting for the stack, which image-provision-stack.service brings up at boot, to pass verify \
         (time limit {} s, --health-timeout)",
        timeout.as_secs()
    ));
    let then = format!(
        "the server is running; look at `systemctl status image-provision-stack` and `docker compose ps` on it, \
         then run `image-provision verify {name}` (or `image-provision update {name}` to bring the stack up again)"
    );
    let pause = std::time::Duration::from_secs(5);
    let (session, report) = loop {
        let opts =
            ConnectOptions::new(c.target.clone(), &c.known_hosts).identity(c.identity.clone()).policy(c.policy.clone());
        let late = started.elapsed() >= timeout;
        let session = match Session::connect(opts).await {
            Ok(session) => session,
            Err(e) if not_up_yet(&e) && !late => {
                spinner.line(format!("SSH not ready yet: {e}"));
                tokio::time::sleep(pause).await;
                continue;
            }
            // A restarted instance offers the key it had: another key is
            // another machine, or the key was never pinned here.
            Err(e @ image_provision_remote::Error::HostKey(_)) => {
                spinner.finish();
                return Err(Failed {
                    message: format!("cannot reach {host}: {e}"),
                    hint: format!(
                        "a started server offers the host key pinned in {} (the key is on its volume); \
                         compare the fingerprints with its console output (EC2 console, Actions > Monitor > \
                         Get system log) before trusting it; nothing was sent to it",
                        c.known_hosts.display()
                    ),
                }
                .into());
            }
            Err(e) => {
                spinner.finish();
                return Err(Failed::remote(format!("cannot reach {host}: {e}"), &e, &then).into());
            }
        };
        match read_report(&session, &s.report, None).await {
            Ok(r) if r.healthy || late => break (session, r),
            Ok(r) => spinner.line(format!("not healthy yet: {}", r.failed.join(", "))),
            Err(e) if late => {
                spinner.finish();
                let _ = session.close().await;
                return Err(e.context(format!("the stack did not pass verify within {} s", timeout.as_secs())));
            }
            Err(e) => spinner.line(format!("reading the facts: {e}")),
        }
        let _ = session.close().await;
        tokio::time::sleep(pause).await;
    };
    spinner.finish();
    let waited = started.elapsed();
    let report = with_request(&session, &s.report, report, settings::DEFAULT_HEALTH_TIMEOUT, progress, &mut None).await;
    let _ = session.close().await;
    if report.healthy {
        progress.line(format!("the stack passed verify after {:.1}s", waited.as_secs_f64()));
    } else {
        progress
            .line(format!("the stack did not pass verify within {} s (--health-timeout): {then}", timeout.as_secs()));
    }
    Ok((host, report))
}
