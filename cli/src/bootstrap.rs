//! `image-provision bootstrap --host`: connect, then hand the session to the
//! playbooks runner, showing a line per step, a summary table, and keeping
//! every command's whole output in a log file in the state directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image_provision_playbooks::{Config, Events, Outcome, Runner, Step, StepReport};
use image_provision_remote::{ConnectOptions, HostKeyPolicy, Identity, Output, Session, Target};

use crate::errors::{Failed, UsageError};
use crate::output::{Progress, Spinner, table};
use crate::resolve::BootstrapSettings;
use crate::runlog::RunLog;
use crate::state;

pub async fn run(mut s: BootstrapSettings) -> anyhow::Result<()> {
    let base = state::base_dir()?;
    state::ensure_private_dir(&base)?;
    // The domain must point at the address the host is reached at: it, or
    // what its name resolves to here.
    if let Some(img) = s.steps.image.as_mut() {
        img.check_dns_for(public_ipv4(&s.target.host, s.target.port));
    }
    let webui_password = state::fill_webui_password(&mut s.steps, state::bootstrap_webui_password, s.dry_run)?;
    let run = HostRun {
        target: s.target,
        identity: s.identity,
        policy: s.policy,
        known_hosts: base.join(state::KNOWN_HOSTS),
        dry_run: s.dry_run,
        steps: s.steps,
        only: None,
        summary: true,
        webui_password,
        label: None,
    };
    run_host_steps(run).await.result
}

/// The IPv4 address `host` is: itself, or its name's first IPv4 address
/// as this machine resolves it; None for IPv6 or a name that does not
/// resolve (no DNS check then).
fn public_ipv4(host: &str, port: u16) -> Option<String> {
    use std::net::{IpAddr, ToSocketAddrs};
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_ipv4().then(|| ip.to_string());
    }
    (host, port).to_socket_addrs().ok()?.find(|a| a.is_ipv4()).map(|a| a.ip().to_string())
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
    /// Only these steps (e.g. [`Step::EXPIRY_ONLY`]); None: every step
    /// `steps` runs.
    pub only: Option<&'static [Step]>,
    /// Print the summary table (and the log and extension URL lines) on
    /// stdout; off when the caller prints its own (`ec2 create --json`).
    pub summary: bool,
    /// The file that holds the web UI admin's password (named in the
    /// summary, never its content).
    pub webui_password: Option<PathBuf>,
    /// Progress lines named after the server (a fleet's, several at once).
    pub label: Option<String>,
}

/// How the host steps went.
pub(crate) struct HostRunEnd {
    /// Each step that ran, with its outcome and time.
    pub reports: Vec<StepReport>,
    pub log: Option<PathBuf>,
    pub result: anyhow::Result<()>,
}

/// Connect, run every step with progress, print the summary; the log goes to
/// the state directory's logs/.
pub(crate) async fn run_host_steps(s: HostRun) -> HostRunEnd {
    match host_steps(s).await {
        Ok(end) => end,
        Err(e) => HostRunEnd { reports: Vec::new(), log: None, result: Err(e) },
    }
}

async fn host_steps(s: HostRun) -> anyhow::Result<HostRunEnd> {
    let known_hosts = s.known_hosts;
    let mut log = RunLog::create("bootstrap", &s.target, s.dry_run)?;
    let log_path = log.path.clone();

    let progress = Progress::labelled(s.label.as_deref());
    progress.line(format!("log: {}", log_path.display()));
    let spinner = progress.spinner(format!("connecting to {}", s.target));
    let mut opts = ConnectOptions::new(s.target.clone(), &known_hosts).identity(s.identity).policy(s.policy);
    opts.command_time_limit = s.steps.command_time_limit;
    let session = Session::connect(opts).await;
    spinner.finish();
    let session = match session {
        Ok(session) => session,
        Err(e) => {
            log.line(&format!("connect failed: {e}"));
            let then = format!("nothing was changed; the log is {}", log_path.display());
            let result = Err(Failed::remote(format!("cannot reach {}: {e}", s.target), &e, &then).into());
            return Ok(HostRunEnd { reports: Vec::new(), log: Some(log_path), result });
        }
    };

    let extension_url = s.steps.image.as_ref().and_then(|i| i.extension_url());
    let webui_line =
        s.steps.image.as_ref().and_then(|i| i.webui.as_ref()).zip(s.webui_password.as_ref()).map(|(w, file)| {
            format!("web UI: https://{}/  (admin {}, password in {})", w.host, w.admin_email(), file.display())
        });
    let mut runner = Runner::new(session, s.steps, s.dry_run);
    let mut events = StepProgress { progress: &progress, spinner: None, log, dry_run: s.dry_run };
    let reports = match s.only {
        Some(steps) => runner.run_steps(steps, &mut events).await,
        None => runner.run(&mut events).await,
    };
    let StepProgress { mut log, .. } = events;
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
    log.flush();
    if s.summary {
        print!("{}", table(&["STEP", "OUTCOME", "TIME", "DETAIL"], &rows));
        println!("log: {}", log_path.display());
    }
    let result = match reports.iter().find(|r| r.outcome.stops()) {
        Some(failed) => Err(failure_error(failed, &log_path)),
        None => {
            if let Some(url) = extension_url.filter(|_| !s.dry_run && s.summary) {
                println!("extension URL: {url}  (enter it in the IMAGE browser extension's options page)");
            }
            if let Some(line) = webui_line.filter(|_| !s.dry_run && s.summary) {
                println!("{line}");
            }
            Ok(())
        }
    };
    Ok(HostRunEnd { reports, log: Some(log_path), result })
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
            if f.usage { UsageError::new(message).hint(hint).into() } else { Failed { message, hint }.into() }
        }
        other => {
            let then = format!(
                "check that the host is up and answers SSH, then run the same command again; the log is {}",
                log_path.display()
            );
            let hint = match other {
                Outcome::Unreachable { hint: Some(h), .. } => format!("{h}; {then}"),
                _ => then,
            };
            Failed { message: format!("step {name}: the host is unreachable: {}", other.detail()), hint }.into()
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Progress on stderr, the plan on stdout in a dry run, everything in the log.
struct StepProgress<'a> {
    progress: &'a Progress,
    spinner: Option<Spinner<'a>>,
    log: RunLog,
    dry_run: bool,
}

impl Events for StepProgress<'_> {
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
            "{:<9} {:<12} {:>6.1}s  {}",
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
