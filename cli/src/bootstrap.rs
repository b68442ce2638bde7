//! `image-provision bootstrap --host`: connect, then hand the session to the
//! playbooks runner, showing a line per step, a summary table, and keeping
//! every command's whole output in a log file in the state directory.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image_provision_playbooks::image::{self, ImageConfig, Profile};
use image_provision_playbooks::{Config, Events, Outcome, Runner, Step, StepReport};
use image_provision_remote::{ConnectOptions, HostKeyPolicy, Identity, Output, Session, Target};

use crate::args::{BootstrapArgs, HostStepArgs, ImageProfile};
use crate::errors::{Advised, UsageError};
use crate::output::{Progress, Spinner, table};
use crate::runlog::RunLog;
use crate::{config, state};

/// The flags, resolved once.
struct Settings {
    target: Target,
    identity: Identity,
    policy: HostKeyPolicy,
    dry_run: bool,
    steps: Config,
}

fn resolve(a: &BootstrapArgs) -> Result<Settings, UsageError> {
    let target: Target = a.host.parse().map_err(|e: image_provision_remote::Error| {
        UsageError::new(format!("--host: {e}")).hint("e.g. --host ubuntu@203.0.113.7 or --host admin@example.org:2222")
    })?;
    let identity = match &a.identity {
        Some(p) => {
            if !p.is_file() {
                return Err(UsageError::new(format!("--identity {}: no such file", p.display()))
                    .hint("give the private key file (not the .pub), or leave out --identity to use the ssh-agent"));
            }
            Identity::key_file(p)
        }
        None => Identity::Agent,
    };
    Ok(Settings {
        target,
        identity,
        policy: if a.accept_new_host_key { HostKeyPolicy::AcceptNew } else { HostKeyPolicy::Strict },
        dry_run: a.dry_run,
        steps: resolve_steps(&a.steps)?,
    })
}

/// The host steps' settings from their flags, checked once.
pub(crate) fn resolve_steps(a: &HostStepArgs) -> Result<Config, UsageError> {
    let mut steps = Config { gpu: !a.no_gpu, force_distro: a.force_distro, ..Config::default() };
    let nonempty = |flag: &str, v: &Option<String>| -> Result<Option<String>, UsageError> {
        match v {
            Some(s) if s.trim().is_empty() => Err(UsageError::new(format!("{flag} is empty"))),
            Some(s) => Ok(Some(s.trim().to_string())),
            None => Ok(None),
        }
    };
    if let Some(b) = nonempty("--nvidia-driver", &a.nvidia_driver)? {
        if !b.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(UsageError::new(format!("--nvidia-driver {b:?} is not a driver branch"))
                .hint("e.g. 535-server, 550-server or 570-server (the package is nvidia-driver-BRANCH)"));
        }
        steps.nvidia_driver_branch = b;
    }
    for (flag, value, slot) in [
        ("--nvidia-repo", &a.nvidia_repo, &mut steps.nvidia_repo),
        ("--docker-repo", &a.docker_repo, &mut steps.docker_repo),
    ] {
        if let Some(v) = nonempty(flag, value)? {
            if v.split_whitespace().count() < 2 {
                return Err(UsageError::new(format!("{flag} {v:?}: expected \"URI SUITE [COMPONENT...]\""))
                    .hint("e.g. \"https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\" (a flat repository has SUITE /)"));
            }
            *slot = v;
        }
    }
    for (flag, value, slot) in [
        ("--nvidia-repo-key", &a.nvidia_repo_key, &mut steps.nvidia_repo_key),
        ("--docker-repo-key", &a.docker_repo_key, &mut steps.docker_repo_key),
    ] {
        if let Some(v) = nonempty(flag, value)? {
            if !(v.starts_with("https://") || v.starts_with("file:///") || v.starts_with("http://")) {
                return Err(UsageError::new(format!("{flag} {v:?} is not a URL")).hint("give an https:// (or file:///) URL of an ASCII-armored key"));
            }
            *slot = v;
        }
    }
    for (flag, value, slot) in [
        ("--reboot-timeout", &a.reboot_timeout, &mut steps.reboot_timeout),
        ("--cloud-init-timeout", &a.cloud_init_timeout, &mut steps.cloud_init_timeout),
        ("--apt-lock-timeout", &a.apt_lock_timeout, &mut steps.lock_timeout),
    ] {
        if let Some(t) = value {
            let d = config::parse_duration(flag, t)?;
            // The host's scripts count whole seconds.
            if d.as_secs() == 0 {
                return Err(UsageError::new(format!("{flag} {t:?} is less than a second")).hint("e.g. 30s, 10m"));
            }
            *slot = d;
        }
    }
    steps.image = if a.no_stack { None } else { Some(resolve_image(a)?) };
    Ok(steps)
}

/// Set by the tests only: a test host without Traefik's stand-in has
/// nothing serving https://DOMAIN/, so the health step checks the
/// orchestrator but not https://DOMAIN/health.
const TEST_NO_HTTPS_HEALTH: &str = "IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH";

/// Set by the tests only: the address the HTTPS health check sends DOMAIN to
/// instead of 127.0.0.1 (test hosts share the machine's network, so each
/// one's Traefik stand-in listens on a loopback address of its own).
const TEST_HTTPS_ADDR: &str = "IMAGE_PROVISION_TEST_HTTPS_ADDR";

/// Whether the HTTPS health check runs (bootstrap, verify, update): always,
/// except where [`TEST_NO_HTTPS_HEALTH`] says the host has no Traefik.
pub(crate) fn https_check() -> bool {
    std::env::var_os(TEST_NO_HTTPS_HEALTH).is_none()
}

/// Where the HTTPS health check finds the host's Traefik (bootstrap, verify,
/// update): 127.0.0.1, or [`TEST_HTTPS_ADDR`]'s address.
pub(crate) fn https_addr() -> Result<IpAddr, UsageError> {
    let Some(v) = std::env::var_os(TEST_HTTPS_ADDR) else {
        return Ok(image::DEFAULT_HTTPS_ADDR);
    };
    v.to_str().and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
        UsageError::new(format!("{TEST_HTTPS_ADDR}={v:?} is not an IP address")).hint("it is for the tests only: unset it")
    })
}

/// The IMAGE steps' settings. Every supplied env file is read and checked
/// here, before anything connects: bad input changes nothing on the host.
fn resolve_image(a: &HostStepArgs) -> Result<ImageConfig, UsageError> {
    let mut img = ImageConfig::default();
    let checked = |flag: &str, v: &Option<String>, check: fn(&str) -> Result<(), String>| -> Result<Option<String>, UsageError> {
        match v.as_deref().map(str::trim) {
            None => Ok(None),
            Some("") => Err(UsageError::new(format!("{flag} is empty"))),
            Some(s) => check(s).map(|()| Some(s.to_string())).map_err(|e| UsageError::new(format!("{flag}: {e}"))),
        }
    };
    img.domain = checked("--domain", &a.domain, image::check_domain)
        .map_err(|e| e.hint("give the server's public host name, e.g. --domain image.example.org, whose DNS record points at the server"))?
        .map(|d| d.to_ascii_lowercase());
    img.acme_email = checked("--acme-email", &a.acme_email, image::check_email)?;
    if img.domain.is_some() && img.acme_email.is_none() {
        return Err(UsageError::new("--domain needs --acme-email")
            .hint("Let's Encrypt registers the certificate's account under an e-mail address: pass --acme-email you@example.org"));
    }
    if img.domain.is_none() && img.acme_email.is_some() {
        return Err(UsageError::new("--acme-email without --domain").hint("the e-mail is for the certificate of --domain; give both"));
    }
    if let Some(t) = checked("--registry-tag", &a.registry_tag, image::check_registry_tag)? {
        img.registry_tag = t;
    }
    if let Some(p) = checked("--base-dir", &a.base_dir, image::check_base_dir)? {
        img.base_dir = p;
    }
    if let Some(u) = checked("--repo-url", &a.repo_url, image::check_repo_url)? {
        img.repo_url = u;
    }
    if let Some(b) = checked("--repo-branch", &a.repo_branch, image::check_branch)? {
        img.repo_branch = b;
    }
    img.profile = match a.image_profile {
        Some(ImageProfile::Test) => Profile::Test,
        Some(ImageProfile::Production) | None => Profile::Production,
    };
    img.pii_logging = a.pii_logging;
    img.imageup = !a.no_imageup;
    for (flag, value, slot) in [
        ("--imageup-timeout", &a.imageup_timeout, &mut img.imageup_timeout),
        ("--health-timeout", &a.health_timeout, &mut img.health_timeout),
    ] {
        if let Some(t) = value {
            let d = config::parse_duration(flag, t)?;
            if d.as_secs() == 0 {
                return Err(UsageError::new(format!("{flag} {t:?} is less than a second")).hint("e.g. 30m, 2h"));
            }
            *slot = d;
        }
    }
    for spec in &a.env_file {
        let (name, content) = read_env_file(spec)?;
        if img.env_files.iter().any(|(n, _)| *n == name) {
            return Err(UsageError::new(format!("--env-file {name} is given twice")));
        }
        img.env_files.push((name, content));
    }
    img.https_check = https_check();
    img.https_addr = https_addr()?;
    Ok(img)
}

/// `--env-file NAME=PATH`: read and check the file. Messages name the file
/// and the line, never a value (the files hold credentials).
fn read_env_file(spec: &str) -> Result<(String, Vec<u8>), UsageError> {
    let known = image::SUPPLIED_ENV_FILES.join(", ");
    let Some((name, path)) = spec.split_once('=') else {
        return Err(UsageError::new(format!("--env-file {spec:?}: expected NAME=PATH"))
            .hint(format!("e.g. --env-file llm.env=./llm.env; NAME is one of {known}")));
    };
    let name = name.trim();
    if !image::SUPPLIED_ENV_FILES.contains(&name) {
        return Err(UsageError::new(format!("--env-file {name}: not a file the IMAGE stack reads"))
            .hint(format!("NAME is one of {known}")));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        UsageError::new(format!("--env-file {name}={path}: cannot read {path}: {e}"))
            .hint("give the path of an existing file on this machine; nothing was changed on the host")
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        UsageError::new(format!("--env-file {name}={path}: not UTF-8 text")).hint("nothing was changed on the host")
    })?;
    image::check_env_file(name, &text).map_err(|e| {
        UsageError::new(format!("--env-file {name}={path}: {e}"))
            .hint("fix the file (KEY=value lines; blank lines and # comments are fine) and run again; nothing was changed on the host")
    })?;
    Ok((name.to_string(), text.into_bytes()))
}

pub async fn run(a: &BootstrapArgs) -> anyhow::Result<()> {
    let s = resolve(a)?;
    let base = state::base_dir()?;
    state::ensure_private_dir(&base)?;
    let known_hosts = base.join("known_hosts");
    run_host_steps(HostRun {
        target: s.target,
        identity: s.identity,
        policy: s.policy,
        known_hosts,
        dry_run: s.dry_run,
        steps: s.steps,
    })
    .await
}

/// Where and how to run the host steps (`bootstrap`, or `ec2 create` once
/// its instance answers).
pub(crate) struct HostRun {
    pub target: Target,
    pub identity: Identity,
    pub policy: HostKeyPolicy,
    pub known_hosts: PathBuf,
    pub dry_run: bool,
    pub steps: Config,
}

/// Connect, run every step with progress, print the summary; the log goes to
/// the state directory's logs/.
pub(crate) async fn run_host_steps(s: HostRun) -> anyhow::Result<()> {
    let known_hosts = s.known_hosts;
    let mut log = RunLog::create("bootstrap", &s.target, s.dry_run)?;
    let log_path = log.path.clone();

    let progress = Progress::new();
    progress.line(format!("log: {}", log_path.display()));
    let spinner = progress.spinner(format!("connecting to {}", s.target));
    let opts = ConnectOptions::new(s.target.clone(), &known_hosts).identity(s.identity).policy(s.policy);
    let session = Session::connect(opts).await;
    spinner.finish();
    let session = match session {
        Ok(session) => session,
        Err(e) => {
            log.line(&format!("connect failed: {e}"));
            return Err(Advised {
                message: format!("cannot reach {}: {e}", s.target),
                hint: format!("nothing was changed; the log is {}", log_path.display()),
            }
            .into());
        }
    };

    let extension_url = s.steps.image.as_ref().and_then(ImageConfig::extension_url);
    let mut runner = Runner::new(session, s.steps, s.dry_run);
    let mut events = Show { progress: &progress, spinner: None, log, dry_run: s.dry_run };
    let reports = runner.run(&mut events).await;
    let Show { mut log, .. } = events;
    let _ = runner.into_session().close().await;

    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.step.name().to_string(),
                r.outcome.label().to_string(),
                format!("{:.1}s", r.duration.as_secs_f64()),
                r.outcome.detail(),
            ]
        })
        .collect();
    print!("{}", table(&["STEP", "OUTCOME", "TIME", "DETAIL"], &rows));
    println!("log: {}", log_path.display());
    log.flush();

    let Some(failed) = reports.iter().find(|r| r.outcome.stops()) else {
        if let Some(url) = extension_url.filter(|_| !s.dry_run) {
            println!("extension URL: {url}  (enter it in the IMAGE browser extension's options page)");
        }
        return Ok(());
    };
    Err(failure_error(failed, &log_path))
}

fn failure_error(r: &StepReport, log_path: &Path) -> anyhow::Error {
    let name = r.step.name();
    match &r.outcome {
        Outcome::Failed(f) => {
            let mut message = format!("step {name} failed: {}", f.message);
            if !f.output_tail.trim().is_empty() {
                message.push_str(&format!("\n{}", indent(&f.output_tail)));
            }
            let mut hint = f.hint.clone().unwrap_or_else(|| {
                "fix the cause and run the same command again: finished steps are kept and found ok".into()
            });
            hint.push_str(&format!("; the whole output is in {}", log_path.display()));
            if f.usage {
                UsageError::new(message).hint(hint).into()
            } else {
                Advised { message, hint }.into()
            }
        }
        other => Advised {
            message: format!("step {name}: the host is unreachable: {}", other.detail()),
            hint: format!(
                "check that the host is up and answers SSH, then run the same command again; the log is {}",
                log_path.display()
            ),
        }
        .into(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Progress on stderr, the plan on stdout in a dry run, everything in the log.
struct Show<'a> {
    progress: &'a Progress,
    spinner: Option<Spinner<'a>>,
    log: RunLog,
    dry_run: bool,
}

impl Events for Show<'_> {
    fn step_started(&mut self, step: Step) {
        self.log.line(&format!("\n=== step {}", step.name()));
        // On a terminal a spinner shows the step running; elsewhere the one
        // line per step comes when it is done.
        if std::io::stderr().is_terminal() {
            self.spinner = Some(self.progress.spinner(format!("{} ...", step.name())));
        }
    }

    fn command(&mut self, step: Step, shown: &str, out: &Output, took: Duration) {
        self.log.command(step.name(), shown, out, took);
    }

    fn note(&mut self, step: Step, message: &str) {
        self.log.line(&format!("--- [{}] {message}", step.name()));
        let line = format!("{}: {message}", step.name());
        match &self.spinner {
            Some(s) => s.line(line),
            None => self.progress.line(line),
        }
    }

    fn step_done(&mut self, r: &StepReport) {
        if let Some(s) = self.spinner.take() {
            s.finish();
        }
        let line = format!(
            "{:<7} {:<12} {:>6.1}s  {}",
            r.step.name(),
            r.outcome.label(),
            r.duration.as_secs_f64(),
            r.outcome.detail()
        );
        self.log.line(&format!("=== {line}"));
        self.progress.line(&line);
        match &r.outcome {
            Outcome::WouldChange { actions, .. } if self.dry_run => {
                for a in actions {
                    println!("{}: would run: {a}", r.step.name());
                    self.log.line(&format!("would run: {a}"));
                }
            }
            Outcome::Failed(f) => {
                if let Some(c) = &f.command {
                    self.log.line(&format!("failed command: {c}"));
                }
            }
            _ => {}
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_host_is_a_usage_error() {
        let a = BootstrapArgs { host: "a@b@c:x".into(), ..Default::default() };
        let e = resolve(&a).err().expect("refused");
        assert!(e.message.starts_with("--host:"), "{}", e.message);
    }

    #[test]
    fn defaults() {
        let a = BootstrapArgs { host: "ubuntu@203.0.113.7".into(), ..Default::default() };
        let s = resolve(&a).unwrap();
        assert_eq!(s.steps.nvidia_driver_branch, image_provision_playbooks::steps::DEFAULT_NVIDIA_DRIVER_BRANCH);
        assert!(s.steps.gpu);
    }
}
