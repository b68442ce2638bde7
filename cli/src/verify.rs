//! `image-provision verify` and `update`, for an EC2 server by NAME or any
//! host by --host. verify reads facts in one round trip and changes nothing;
//! update runs imageup again (under its time limit), waits for the
//! orchestrator, then reports as verify does.
//!
//! update keeps a run log as bootstrap does (it acts: imageup recreates the
//! stack, and a failure needs imageup's whole output, not the tail shown).
//! verify keeps none: it runs one read-only command whose every fact is in
//! the report it prints, and it is meant to be run often (by scripts, with
//! --json), where a log file per run would only pile up in the state
//! directory with nothing the report did not already say.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_provision_playbooks::Facts;
use image_provision_playbooks::image;
use image_provision_playbooks::verify::{self as checks, Report, VerifyOptions};
use image_provision_provision::Ec2Api;
use image_provision_remote::{Cmd, ConnectOptions, HostKeyPolicy, Identity, Output, Session, Target};

use crate::args::{ServerArgs, UpdateArgs, VerifyArgs};
use crate::config::{self, ConfigFile};
use crate::errors::{Advised, UsageError};
use crate::output::{Progress, table};
use crate::runlog::RunLog;
use crate::{ec2, state};

struct Server {
    target: Target,
    identity: Identity,
    policy: HostKeyPolicy,
    known_hosts: PathBuf,
}

fn options(a: &ServerArgs) -> Result<VerifyOptions, UsageError> {
    let mut o = VerifyOptions {
        gpu: !a.no_gpu,
        stack: !a.no_stack,
        https_check: crate::bootstrap::https_check(),
        https_addr: crate::bootstrap::https_addr()?,
        ..Default::default()
    };
    if let Some(d) = &a.domain {
        let d = d.trim();
        image::check_domain(d).map_err(|e| UsageError::new(format!("--domain: {e}")))?;
        o.domain = Some(d.to_ascii_lowercase());
    }
    if let Some(b) = &a.base_dir {
        image::check_base_dir(b.trim()).map_err(|e| UsageError::new(format!("--base-dir: {e}")))?;
        o.base_dir = b.trim().to_string();
    }
    Ok(o)
}

fn identity(p: &Option<PathBuf>) -> Result<Option<Identity>, UsageError> {
    match p {
        Some(p) if !p.is_file() => Err(UsageError::new(format!("--identity {}: no such file", p.display()))
            .hint("give the private key file (not the .pub)")),
        Some(p) => Ok(Some(Identity::key_file(p))),
        None => Ok(None),
    }
}

/// Where to connect: --host as bootstrap does; NAME as `ec2 create` does
/// (the instance by its tag, its public IP, the state directory's key and
/// known_hosts, the host key checked strictly).
async fn server(a: &ServerArgs, file: &ConfigFile) -> anyhow::Result<Server> {
    let id = identity(&a.identity)?;
    if let Some(host) = &a.host {
        let target: Target = host.parse().map_err(|e: image_provision_remote::Error| {
            UsageError::new(format!("--host: {e}")).hint("e.g. --host ubuntu@203.0.113.7 or --host admin@example.org:2222")
        })?;
        let base = state::base_dir()?;
        state::ensure_private_dir(&base)?;
        return Ok(Server {
            target,
            identity: id.unwrap_or(Identity::Agent),
            policy: if a.accept_new_host_key { HostKeyPolicy::AcceptNew } else { HostKeyPolicy::Strict },
            known_hosts: base.join(state::KNOWN_HOSTS),
        });
    }
    let name = a.name.as_deref().expect("clap requires NAME or --host");
    config::check_name(name)?;
    let ssh_addr = ec2::test_ssh_addr()?;
    let dir = state::server_dir(name)?;
    let known_hosts = dir.join(state::KNOWN_HOSTS);
    if !known_hosts.is_file() {
        return Err(UsageError::new(format!("{name}: no known host key ({} is missing)", known_hosts.display()))
            .hint(format!("use `--host USER@ADDRESS --accept-new-host-key` after checking the key, or recreate the state with `image-provision ec2 create {name}`"))
            .into());
    }
    let (api, _) = ec2::connect(&ec2::aws_options(&a.aws, &file.ec2)?).await?;
    let found = api.find_instances(Some(name)).await.map_err(|e| ec2::advise(e, None))?;
    let Some(instance) = found.iter().find(|i| i.state == "running" && i.public_ip.is_some()) else {
        return Err(Advised {
            message: format!("no running instance named {name} with a public IP"),
            hint: "see `image-provision ec2 list`".into(),
        }
        .into());
    };
    let user = a.ssh_user.clone().or_else(|| file.ec2.ssh_user.clone()).unwrap_or_else(|| "ubuntu".into());
    let (host, port) = match ssh_addr {
        Some(s) => (s.ip().to_string(), s.port()),
        None => (instance.public_ip.clone().unwrap_or_default(), image_provision_remote::DEFAULT_PORT),
    };
    let identity = match id {
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
    Ok(Server { target: Target::new(user, host, port), identity, policy: HostKeyPolicy::Strict, known_hosts })
}

async fn open(s: Server, progress: &Progress) -> anyhow::Result<Session> {
    let spinner = progress.spinner(format!("connecting to {}", s.target));
    let opts = ConnectOptions::new(s.target.clone(), &s.known_hosts).identity(s.identity).policy(s.policy);
    let session = Session::connect(opts).await;
    spinner.finish();
    session.map_err(|e| {
        Advised { message: format!("cannot reach {}: {e}", s.target), hint: "nothing was changed".into() }.into()
    })
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

async fn report(session: &Session, o: &VerifyOptions, mut log: Option<&mut RunLog>) -> anyhow::Result<Report> {
    let cmd = checks::facts_command(o);
    // For verify nothing was changed; update has acted by now, and says where its log is.
    let hint = match &log {
        Some(log) => format!("run update again; the log is {}", log.path.display()),
        None => "nothing was changed".into(),
    };
    let failed = |why: String| Advised { message: format!("reading the facts failed: {why}"), hint: hint.clone() };
    let out = exec(session, &cmd, "verify", &mut log).await.map_err(|e| failed(e.to_string()))?;
    if !out.code().is_some_and(|c| cmd.accepts(c)) {
        let tail = image_provision_playbooks::runner::tail(&out.stderr);
        return Err(failed(format!("{}\n{tail}", out.status)).into());
    }
    Ok(checks::evaluate(&Facts::parse(&out.stdout_str()), o))
}

/// Print the report (with the run's log, if it kept one); an error (exit 1)
/// naming the failed checks unless healthy.
fn show(host: &str, r: &Report, json: bool, log: Option<&Path>) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["host"] = serde_json::json!(host);
        if let Some(log) = log {
            v["log"] = serde_json::json!(log.display().to_string());
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
        println!("orchestrator    {}", dash(&r.orchestrator));
        println!("extension URL   {}", dash(&r.extension_url));
        println!();
        let rows: Vec<Vec<String>> =
            r.checks.iter().map(|c| vec![c.name.to_string(), c.status.label().to_string(), c.detail.clone()]).collect();
        print!("{}", table(&["CHECK", "STATUS", "DETAIL"], &rows));
        println!("{}", if r.healthy { "healthy" } else { "UNHEALTHY" });
        if let Some(log) = log {
            println!("log: {}", log.display());
        }
    }
    if r.healthy {
        return Ok(());
    }
    let details: Vec<String> =
        r.checks.iter().filter(|c| c.status == checks::Status::Failed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let mut hint = format!("{}; fix the cause (or run `image-provision update`), then verify again", details.join("; "));
    if let Some(log) = log {
        hint.push_str(&format!("; the log is {}", log.display()));
    }
    Err(Advised { message: format!("{host} is not healthy: failed check(s) {}", r.failed.join(", ")), hint }.into())
}

pub async fn verify(a: &VerifyArgs, file: &ConfigFile) -> anyhow::Result<()> {
    let o = options(&a.server)?;
    let s = server(&a.server, file).await?;
    let host = s.target.to_string();
    let progress = Progress::new();
    let session = open(s, &progress).await?;
    let r = report(&session, &o, None).await;
    let _ = session.close().await;
    show(&host, &r?, a.server.json, None)
}

fn duration(flag: &str, v: &Option<String>, default: Duration) -> Result<Duration, UsageError> {
    let Some(t) = v else { return Ok(default) };
    let d = config::parse_duration(flag, t)?;
    if d.as_secs() == 0 {
        return Err(UsageError::new(format!("{flag} {t:?} is less than a second")).hint("e.g. 30m, 2h"));
    }
    Ok(d)
}

pub async fn update(a: &UpdateArgs, file: &ConfigFile) -> anyhow::Result<()> {
    let o = options(&a.server)?;
    if a.server.no_stack {
        return Err(UsageError::new("update keeps the IMAGE stack current, and this server has none (--no-stack)")
            .hint("run `image-provision bootstrap` without --no-stack to add the stack")
            .into());
    }
    let defaults = image::ImageConfig::default();
    let imageup_timeout = duration("--imageup-timeout", &a.imageup_timeout, defaults.imageup_timeout)?;
    let health_timeout = duration("--health-timeout", &a.health_timeout, defaults.health_timeout)?;
    let s = server(&a.server, file).await?;
    let host = s.target.to_string();
    // Started only once the input is checked: bad input leaves no trace.
    let mut log = RunLog::create("update", &s.target, false)?;
    let log_path = log.path.clone();
    let progress = Progress::new();
    progress.line(format!("log: {}", log_path.display()));
    let session = match open(s, &progress).await {
        Ok(session) => session,
        Err(e) => {
            log.line(&format!("connect failed: {e}"));
            return Err(e);
        }
    };
    let result = async {
        let what = if a.no_imageup { "compose pull and up" } else { "imageup" };
        let spinner = progress.spinner(format!("{what} (time limit {} s)", imageup_timeout.as_secs()));
        let started = Instant::now();
        let cmd = checks::update_command(&o.base_dir, !a.no_imageup, imageup_timeout);
        let out = exec(&session, &cmd, what, &mut Some(&mut log)).await;
        spinner.finish();
        let out = out.map_err(|e| Advised {
            message: format!("{what}: {e}"),
            hint: format!("run update again; the log is {}", log_path.display()),
        })?;
        if out.code() != Some(0) {
            let tail = image_provision_playbooks::runner::tail(if out.stderr.is_empty() { &out.stdout } else { &out.stderr });
            return Err(Advised {
                message: format!("{what} failed ({}):\n{tail}", out.status),
                hint: format!("fix the cause and run update again; the whole output is in {}", log_path.display()),
            }
            .into());
        }
        progress.line(format!("{what} done in {:.1}s", started.elapsed().as_secs_f64()));
        // Wait for the orchestrator; the report then says how it ended.
        let spinner = progress.spinner("waiting for the orchestrator to be healthy");
        let _ = exec(&session, &checks::health_command(&o.base_dir, health_timeout), "health", &mut Some(&mut log)).await;
        spinner.finish();
        report(&session, &o, Some(&mut log)).await
    }
    .await;
    let _ = session.close().await;
    if let Err(e) = &result {
        log.line(&format!("update failed: {e}"));
    }
    log.flush();
    show(&host, &result?, a.server.json, Some(&log_path))
}
