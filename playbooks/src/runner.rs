//! Runs the steps over one SSH session: before each step, fresh facts (one
//! round trip) and a fresh plan; then the plan's commands; then exactly one
//! outcome. Stops at the first failed or unreachable step.

use std::time::{Duration, Instant};

use image_provision_remote::{Cmd, Error as RemoteError, ExitStatus, Output, RebootOptions, Session, tail};

use crate::gather::{self, Facts, FactsInputs};
use crate::plan::{Action, Plan};
use crate::sequence::{Earlier, Step};
use crate::settings::Config;
use crate::steps::nvidia;

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Already as wanted: why.
    Ok(String),
    /// Ran at least one command that changes the host: what.
    Changed(String),
    /// Not for this host: why.
    Skipped(String),
    Failed(Failure),
    /// The host could not be reached (or reached again): why, and what to
    /// do when the SSH error says.
    Unreachable {
        message: String,
        hint: Option<String>,
    },
    /// Dry run: what would be done, and the commands.
    WouldChange {
        why: String,
        actions: Vec<String>,
    },
}

impl Outcome {
    /// One word, for the progress line and the table.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Changed(_) => "changed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
            Outcome::Unreachable { .. } => "unreachable",
            Outcome::WouldChange { .. } => "would change",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Outcome::Ok(s) | Outcome::Changed(s) | Outcome::Skipped(s) | Outcome::Unreachable { message: s, .. } => {
                s.clone()
            }
            Outcome::Failed(f) => f.message.clone(),
            Outcome::WouldChange { why, .. } => why.clone(),
        }
    }

    pub fn stops(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Unreachable { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The command that failed, secrets redacted.
    pub command: Option<String>,
    /// The last lines of its stderr (or stdout when stderr was empty).
    pub output_tail: String,
    pub hint: Option<String>,
    /// The person's input or choice of host is the problem, and nothing was
    /// changed (exit 2).
    pub usage: bool,
}

#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: Step,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// What the runner tells its caller as it goes (progress, the log file).
pub trait Events {
    fn step_started(&mut self, step: Step);
    /// A command finished (its whole output, for the log; empty for quiet ones).
    fn command(&mut self, step: Step, shown: &str, output: &Output, took: Duration);
    /// Something worth a line: a reconnect, a reboot, a retry.
    fn note(&mut self, step: Step, message: &str);
    fn step_done(&mut self, report: &StepReport);
}

pub struct Runner {
    session: Session,
    cfg: Config,
    /// The facts command for `cfg` (the same before every step).
    facts_cmd: Cmd,
    dry_run: bool,
    user_is_root: bool,
    /// The facts the last step planned from, while nothing has run since:
    /// a step that found everything so ran no command, so the next step
    /// can plan from the same facts (a converged run reads them once).
    unchanged_facts: Option<Facts>,
}

/// Why running an action stopped.
enum Stop {
    Failed(Failure),
    /// The connection went away: reconnect and re-plan.
    Lost(String),
}

/// What to do when the host does not come back from a reboot.
const REBOOT_HINT: &str = "look at the host's console (EC2: Get system log); run bootstrap again once it answers";

/// A command's own time limit from which the run says it as it starts.
const LIMIT_WORTH_SAYING: Duration = Duration::from_secs(60);

/// How much of a failed command's output a failure shows (the log has all).
pub const TAIL_LINES: usize = 20;
pub const TAIL_BYTES: usize = 4096;

fn remote_failure(e: &RemoteError, command: Option<String>) -> Stop {
    match e {
        RemoteError::ConnectionLost { .. } | RemoteError::NoExitStatus { .. } => Stop::Lost(e.to_string()),
        e if e.is_transient() => Stop::Lost(e.to_string()),
        e => Stop::Failed(Failure {
            message: e.to_string(),
            command,
            output_tail: String::new(),
            hint: e.hint(),
            usage: false,
        }),
    }
}

impl Runner {
    pub fn new(session: Session, cfg: Config, dry_run: bool) -> Runner {
        let user_is_root = session.target().is_root();
        let facts_cmd = gather::command(&FactsInputs::for_config(&cfg));
        // A dry run writes nothing on the host, the facts' caches included.
        let facts_cmd = if dry_run { facts_cmd.env("FACTS_CACHE_WRITE", "no") } else { facts_cmd };
        Runner { session, cfg, facts_cmd, dry_run, user_is_root, unchanged_facts: None }
    }

    pub fn into_session(self) -> Session {
        self.session
    }

    /// Facts, in one round trip.
    pub async fn facts(&self) -> Result<Facts, RemoteError> {
        let out = self.session.exec(&self.facts_cmd).await?;
        Ok(Facts::parse(&out.stdout_str()))
    }

    /// Every step in order; stops after the first that fails or cannot
    /// reach the host.
    pub async fn run(&mut self, events: &mut dyn Events) -> Vec<StepReport> {
        self.run_steps(&Step::for_config(&self.cfg), events).await
    }

    /// These steps, in this order (e.g. [`Step::EXPIRY_ONLY`]); stops after
    /// the first that fails or cannot reach the host.
    pub async fn run_steps(&mut self, steps: &[Step], events: &mut dyn Events) -> Vec<StepReport> {
        let mut reports = Vec::new();
        let mut earlier = Earlier::default();
        for &step in steps {
            events.step_started(step);
            let start = Instant::now();
            let outcome = if self.dry_run {
                self.dry_run_step(step, &mut earlier).await
            } else {
                self.run_step(step, earlier, events).await
            };
            if step == Step::Stack && matches!(outcome, Outcome::Changed(_) | Outcome::WouldChange { .. }) {
                earlier.stack_changed = true;
            }
            let report = StepReport { step, outcome, duration: start.elapsed() };
            events.step_done(&report);
            let stop = report.outcome.stops();
            reports.push(report);
            if stop {
                break;
            }
        }
        reports
    }

    /// `earlier`: in a dry run, the NVIDIA step would install the driver, so
    /// the reboot step would reboot.
    async fn dry_run_step(&mut self, step: Step, earlier: &mut Earlier) -> Outcome {
        let facts = match self.facts().await {
            Ok(f) => f,
            Err(e) => return Outcome::Unreachable { message: e.to_string(), hint: e.hint() },
        };
        let plan = step.plan(&facts, &self.cfg, *earlier);
        match plan {
            Plan::Ok(why) => Outcome::Ok(why),
            Plan::Skip(why) => Outcome::Skipped(why),
            Plan::Pending(why) => {
                Outcome::WouldChange { why: format!("after the steps above: {why}"), actions: Vec::new() }
            }
            // What the GPU check checks is what the steps above would make so.
            Plan::Refuse { .. } if step == Step::GpuCheck && earlier.driver_would_install => Outcome::WouldChange {
                why: "check nvidia-smi and Docker's nvidia runtime once the steps above have run".into(),
                actions: Vec::new(),
            },
            Plan::Refuse { message, hint, usage } => {
                Outcome::Failed(Failure { message, command: None, output_tail: String::new(), hint: Some(hint), usage })
            }
            Plan::Act { why, actions } => {
                if step == Step::Nvidia && nvidia::installs_driver(&why) {
                    earlier.driver_would_install = true;
                }
                Outcome::WouldChange { why, actions: actions.iter().map(|a| a.describe(self.user_is_root)).collect() }
            }
        }
    }

    async fn run_step(&mut self, step: Step, earlier: Earlier, events: &mut dyn Events) -> Outcome {
        // One retry after a lost connection: every step re-plans from fresh
        // facts, so running it again does only what is still missing.
        let mut lost_once = false;
        loop {
            let result = self.try_step(step, earlier, events).await;
            match result {
                Ok(outcome) => return outcome,
                Err(Stop::Failed(f)) => return Outcome::Failed(f),
                Err(Stop::Lost(why)) if !lost_once => {
                    lost_once = true;
                    events.note(step, &format!("connection lost ({why}); reconnecting"));
                    if let Err(e) = self.session.reconnect().await {
                        return Outcome::Unreachable {
                            message: format!("{why}; reconnecting failed: {e}"),
                            hint: e.hint(),
                        };
                    }
                }
                Err(Stop::Lost(why)) => {
                    return Outcome::Unreachable { message: format!("{why} (again, after reconnecting)"), hint: None };
                }
            }
        }
    }

    async fn try_step(&mut self, step: Step, earlier: Earlier, events: &mut dyn Events) -> Result<Outcome, Stop> {
        let facts = match self.unchanged_facts.take() {
            Some(f) => f,
            None => self.facts().await.map_err(|e| remote_failure(&e, Some("facts.sh".into())))?,
        };
        let plan = step.plan(&facts, &self.cfg, earlier);
        if matches!(plan, Plan::Ok(_) | Plan::Skip(_)) {
            self.unchanged_facts = Some(facts);
        }
        let (why, actions) = match plan {
            Plan::Ok(why) => return Ok(Outcome::Ok(why)),
            Plan::Skip(why) => return Ok(Outcome::Skipped(why)),
            Plan::Refuse { message, hint, usage } => {
                return Err(Stop::Failed(Failure {
                    message,
                    command: None,
                    output_tail: String::new(),
                    hint: Some(hint),
                    usage,
                }));
            }
            Plan::Pending(why) => {
                return Err(Stop::Failed(Failure {
                    message: format!("cannot run yet: {why}"),
                    command: None,
                    output_tail: String::new(),
                    hint: Some("a step before this one did not do its part; run bootstrap again".into()),
                    usage: false,
                }));
            }
            Plan::Act { why, actions } => (why, actions),
        };
        let mut changed = false;
        let mut results = Vec::new();
        for action in actions {
            match action {
                Action::Change(cmd) => {
                    results.extend(self.exec(step, &cmd, events).await?);
                    changed = true;
                }
                Action::Check(cmd) => results.extend(self.exec(step, &cmd, events).await?),
                Action::Upload { path, content, mode, owner, secret } => {
                    let shown =
                        Action::Upload { path: path.clone(), content: Vec::new(), mode, owner: owner.clone(), secret }
                            .describe(self.user_is_root);
                    let start = Instant::now();
                    self.session
                        .upload(&path, &content, mode, owner.as_deref(), secret)
                        .await
                        .map_err(|e| remote_failure(&e, Some(shown.clone())))?;
                    let done = Output { status: ExitStatus::Code(0), stdout: Vec::new(), stderr: Vec::new() };
                    events.command(
                        step,
                        &format!("upload {path} ({} bytes, mode {mode:04o})", content.len()),
                        &done,
                        start.elapsed(),
                    );
                    changed = true;
                }
                Action::Reconnect => {
                    events.note(step, "reconnecting so the new group membership applies");
                    self.session.reconnect().await.map_err(|e| {
                        Stop::Failed(Failure {
                            message: format!("reconnecting failed: {e}"),
                            command: None,
                            output_tail: String::new(),
                            hint: e.hint(),
                            usage: false,
                        })
                    })?;
                }
                Action::Reboot => {
                    events.note(step, "rebooting");
                    let opts = RebootOptions { timeout: self.cfg.reboot_timeout, ..RebootOptions::default() };
                    let report = self.session.reboot(opts).await.map_err(|e| match e {
                        RemoteError::RebootTimeout { .. } => Stop::Failed(Failure {
                            message: e.to_string(),
                            command: Some("reboot".into()),
                            output_tail: String::new(),
                            hint: Some(match e.hint() {
                                Some(h) => format!("{h}; {REBOOT_HINT}"),
                                None => REBOOT_HINT.into(),
                            }),
                            usage: false,
                        }),
                        e => remote_failure(&e, Some("reboot".into())),
                    })?;
                    events.note(
                        step,
                        &format!("back on a new boot after {:.1} s", report.reconnected_after.as_secs_f64()),
                    );
                    changed = true;
                }
            }
        }
        let with_results = |text: String| {
            if results.is_empty() { text } else { format!("{text}; {}", results.join("; ")) }
        };
        Ok(if changed {
            Outcome::Changed(with_results(why))
        } else {
            Outcome::Ok(with_results(format!("{why}: done")))
        })
    }

    /// Run `cmd`; its stdout's "result: ..." lines (a check's findings, for
    /// the summary), when it succeeds.
    async fn exec(&self, step: Step, cmd: &Cmd, events: &mut dyn Events) -> Result<Vec<String>, Stop> {
        let shown = cmd.redacted(self.user_is_root);
        if let Some(limit) = cmd.own_time_limit().filter(|l| *l >= LIMIT_WORTH_SAYING) {
            // A wait that may be long says what it waits for and how long
            // it may take, before it starts (the default limit goes unsaid).
            events.note(step, &format!("{} (time limit {} s)", cmd.label(), limit.as_secs()));
        }
        let start = Instant::now();
        let out = self.session.exec_unchecked(cmd).await.map_err(|e| remote_failure(&e, Some(shown.clone())))?;
        events.command(step, &shown, &out, start.elapsed());
        if let ExitStatus::Signal(signal) = &out.status {
            // sshd going away kills the session's processes, and may report
            // that (exit-signal KILL or HUP) just before the connection drops:
            // a killed command on a connection that no longer answers is a
            // lost connection, to reconnect and re-plan, not a failure.
            if let Err(e) = self.session.exec(&Cmd::new("true")).await
                && let Stop::Lost(why) = remote_failure(&e, None)
            {
                return Err(Stop::Lost(format!(
                    "`{shown}` was killed by signal {signal} and then the connection dropped ({why})"
                )));
            }
        }
        match out.code() {
            Some(code) if cmd.accepts(code) => Ok(out
                .stdout_str()
                .lines()
                .filter_map(|l| l.strip_prefix("result: "))
                .map(|l| l.trim().to_string())
                .collect()),
            _ => {
                let output_tail = if cmd.is_quiet() {
                    String::new()
                } else if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                    tail(&out.stderr, TAIL_LINES, TAIL_BYTES)
                } else {
                    tail(&out.stdout, TAIL_LINES, TAIL_BYTES)
                };
                // A pull Docker Hub refused for its rate limit, wherever it
                // came (the stack's, Traefik's, the LLM's): the two ways out.
                let hint = crate::steps::docker::pull_limit_hint(&format!("{}{}", out.stdout_str(), out.stderr_str()));
                Err(Stop::Failed(Failure {
                    message: format!("`{shown}` failed ({})", out.status),
                    command: Some(shown),
                    output_tail,
                    hint,
                    usage: false,
                }))
            }
        }
    }
}
