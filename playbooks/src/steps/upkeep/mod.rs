//! The upkeep step: what keeps the server right after bootstrap has ended,
//! as systemd units on the host. Each is written, enabled and (timers)
//! started, or, turned off, stopped and removed:
//! - the stack back after a reboot (stack.service, stack-at-boot.sh): every
//!   IMAGE service has restart: "no";
//! - the IMAGE team's scripts/healthcheck on a timer, its logs pruned;
//! - with --auto-update, imageup --service on a timer (auto-update.sh), in
//!   place of the team's image_daily_cron (docs/host.md says why);
//! - dangling images pruned on a timer;
//! - with an expiry (ec2 create --ttl, bootstrap --ttl), a power-off at that
//!   time (expire.sh): an instance made with --ttl terminates on it, so the
//!   bill stops. Its timer also fires right after it starts (every boot,
//!   every re-arm), and the script powers off only once the expiry has
//!   passed, so an expiry already past powers off at once. `ec2 create`
//!   hands the same files to the instance's cloud-init
//!   ([`expiry_files`]), so the expiry holds from the first boot whatever
//!   happens to the host steps, and this step then finds them as wanted.
//!   Without --ttl, the host's own expiry is kept; `--ttl off` removes it.
//! - with --autostop, an idle stop (autostop.sh): a timer looks every little
//!   while whether a request has reached the orchestrator (its own log) and
//!   powers the host off once none has for the duration; an instance given
//!   `ec2 create --autostop` stops on it rather than terminates. Kept
//!   without the flag, removed by `--autostop off`, as the expiry is.
//!
//! The stack-at-boot and update scripts carry the bring-up library in front,
//! so they wait for a running imageup, never fight it. With --no-stack only
//! the expiry's and the idle stop's units are this step's: the IMAGE units
//! are left as found.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::bring_up::{BRING_UP, BRING_UP_LOCK_SH, STACK_RECORD_SH};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{Autostop, Config, Expiry, ImageConfig};
use crate::shell::with_libraries;
use crate::template::{FileFacts, PENDING, Writes, backup_dir, mark_pending, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const STACK_AT_BOOT_SH: &str = include_str!("stack-at-boot.sh");
pub const AUTO_UPDATE_SH: &str = include_str!("auto-update.sh");
pub const EXPIRE_SH: &str = include_str!("expire.sh");
pub const AUTOSTOP_SH: &str = include_str!("autostop.sh");

/// Where units and their scripts live on the host.
const UNIT_DIR: &str = "/etc/systemd/system";
const SCRIPT_DIR: &str = "/usr/local/lib/image-provision";
/// How many days of the health check's logs (one file a run) are kept.
pub const HEALTHCHECK_LOG_DAYS: u32 = 14;

/// Every unit this step may install, in the order it enables them.
pub const UNITS: [&str; 11] = [
    "image-provision-stack.service",
    "image-provision-healthcheck.service",
    "image-provision-healthcheck.timer",
    "image-provision-update.service",
    "image-provision-update.timer",
    "image-provision-prune.service",
    "image-provision-prune.timer",
    "image-provision-expire.service",
    "image-provision-expire.timer",
    "image-provision-autostop.service",
    "image-provision-autostop.timer",
];

/// The power-off at the expiry: its service, then its timer.
pub const EXPIRE_UNITS: [&str; 2] = ["image-provision-expire.service", "image-provision-expire.timer"];
/// The timer that arms the power-off (what cloud-init enables).
pub const EXPIRE_TIMER: &str = EXPIRE_UNITS[1];
/// The idle stop: its service, then its timer.
pub const AUTOSTOP_UNITS: [&str; 2] = ["image-provision-autostop.service", "image-provision-autostop.timer"];
/// The idle stop's timer: its start is when the idle clock starts.
pub const AUTOSTOP_TIMER: &str = AUTOSTOP_UNITS[1];
/// The units that may power the host off: whatever the stack, this step's.
const POWER_UNITS: [&str; 4] = [EXPIRE_UNITS[0], EXPIRE_UNITS[1], AUTOSTOP_UNITS[0], AUTOSTOP_UNITS[1]];

/// The script a service runs, removed with it.
fn script_of(unit: &str) -> Option<String> {
    let name = match unit {
        "image-provision-stack.service" => "stack-at-boot.sh",
        "image-provision-update.service" => "auto-update.sh",
        "image-provision-expire.service" => "expire.sh",
        "image-provision-autostop.service" => "autostop.sh",
        _ => return None,
    };
    Some(format!("{SCRIPT_DIR}/{name}"))
}

/// The facts script (input UPKEEP_UNITS).
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/upkeep/facts.sh", FACTS_SH)
}

/// UPKEEP_UNITS for the facts.
pub fn units_input() -> String {
    UNITS.join(" ")
}

/// stack-at-boot.sh as installed, with the bring-up in front.
pub fn stack_at_boot_script() -> String {
    with_libraries(&[BRING_UP_LOCK_SH, STACK_RECORD_SH], STACK_AT_BOOT_SH)
}

/// auto-update.sh as installed, with the bring-up in front.
pub fn auto_update_script() -> String {
    with_libraries(&BRING_UP, AUTO_UPDATE_SH)
}

/// A unit's state on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitState {
    /// systemctl is-enabled: enabled, disabled, static, ...
    pub enabled: String,
    /// systemctl is-active: active, inactive, failed, ...
    pub active: String,
}

#[derive(Clone, Debug, Default)]
pub struct UpkeepFacts {
    /// The units whose file exists, by name.
    pub units: std::collections::BTreeMap<String, UnitState>,
    /// The expiry the host's power-off holds (RFC 3339); None without one,
    /// or when it cannot be read as a time.
    pub expires_at: Option<String>,
    /// The host's clock, in seconds since the epoch.
    pub now: Option<i64>,
    /// The host's idle stop: after how many seconds without a request, and
    /// the stack's directory it watches; None without one, or unreadable.
    pub autostop: Option<IdleStop>,
}

/// An idle stop, as armed on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdleStop {
    /// Seconds without a request before the host powers off.
    pub after: u64,
    /// The stack's compose directory, whose orchestrator it watches.
    pub base_dir: String,
}

impl UpkeepFacts {
    pub fn parse(raw: &RawFacts) -> UpkeepFacts {
        let units = raw
            .with_prefix("upkeep.")
            .map(|(unit, state)| {
                let (enabled, active) = state.split_once(' ').unwrap_or((state, ""));
                (unit.to_string(), UnitState { enabled: enabled.into(), active: active.into() })
            })
            .collect();
        let expires_at = raw.string("expire.at").filter(|at| at.parse::<jiff::Timestamp>().is_ok());
        let now = raw.get("expire.now").and_then(|n| n.parse().ok());
        let after = raw.get("autostop.after").and_then(|n| n.parse::<u64>().ok()).filter(|n| *n > 0);
        let base_dir = raw.string("autostop.base_dir").filter(|d| d.starts_with('/'));
        let autostop = after.zip(base_dir).map(|(after, base_dir)| IdleStop { after, base_dir });
        UpkeepFacts { units, expires_at, now, autostop }
    }

    pub fn state(&self, unit: &str) -> Option<&UnitState> {
        self.units.get(unit)
    }
}

/// A file the step writes, with its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFile {
    pub path: String,
    pub content: String,
    /// 0o644 for units, 0o755 for scripts.
    pub mode: u32,
}

impl UnitFile {
    fn new(path: String, content: String) -> UnitFile {
        let mode = if path.ends_with(".sh") { 0o755 } else { 0o644 };
        UnitFile { path, content, mode }
    }
}

/// One unit wanted on the host: its files, and whether it is started now
/// (timers) or only enabled (the stack at boot: the stack is up already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub unit: &'static str,
    pub files: Vec<UnitFile>,
    pub start: bool,
    /// What it does, for a person (empty: a timer's service, said by the
    /// timer).
    pub what: String,
}

fn unit_path(unit: &str) -> String {
    format!("{UNIT_DIR}/{unit}")
}

fn unit(unit: &'static str, template: &str, values: &[(&str, &str)], start: bool, what: String) -> Wanted {
    Wanted { unit, files: vec![UnitFile::new(unit_path(unit), render(template, values))], start, what }
}

/// systemd's time span: whole seconds.
fn span(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The expiry (RFC 3339) as systemd's calendar event, in UTC.
pub fn expiry_calendar(expires_at: &str) -> Result<String, String> {
    let at: jiff::Timestamp =
        expires_at.parse().map_err(|e| format!("the expiry {expires_at:?} is not an RFC 3339 time: {e}"))?;
    Ok(at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The IMAGE units for `img`.
fn image_units(img: &ImageConfig) -> Vec<Wanted> {
    let base = img.base_dir.as_str();
    let limit = img.imageup_timeout.as_secs().to_string();
    // The unit's own limit leaves the script time to report.
    let unit_limit = span(img.imageup_timeout + Duration::from_secs(120));
    let mut wanted = Vec::new();
    if img.upkeep.start_at_boot {
        let script = format!("{SCRIPT_DIR}/stack-at-boot.sh");
        let mut w = unit(
            "image-provision-stack.service",
            include_str!("stack.service"),
            &[("BASE_DIR", base), ("TIMEOUT", &limit), ("SCRIPT", &script), ("UNIT_LIMIT", &unit_limit)],
            false,
            "the stack starts at boot".into(),
        );
        w.files.push(UnitFile::new(script.clone(), stack_at_boot_script()));
        wanted.push(w);
    }
    if let Some(every) = img.upkeep.healthcheck_every {
        let log_dir = img.healthcheck_log_dir();
        let days = HEALTHCHECK_LOG_DAYS.to_string();
        let values = [("BASE_DIR", base), ("LOG_DIR", log_dir.as_str()), ("KEEP_DAYS", &days), ("EVERY", &span(every))];
        let service = include_str!("healthcheck.service");
        wanted.push(unit("image-provision-healthcheck.service", service, &values, false, String::new()));
        let what = format!("health check every {}", span(every));
        wanted.push(unit("image-provision-healthcheck.timer", include_str!("healthcheck.timer"), &values, true, what));
    }
    if let Some(when) = &img.upkeep.auto_update {
        let script = format!("{SCRIPT_DIR}/auto-update.sh");
        let imageup = if img.imageup { "yes" } else { "no" };
        let health = img.health_timeout.as_secs().to_string();
        // The update, the wait for health, and should it fail the
        // rollback (compose up, then the warm-up) and a second wait.
        let update_limit = span(img.imageup_timeout * 3 + img.health_timeout * 2 + Duration::from_secs(120));
        let values = [
            ("BASE_DIR", base),
            ("TIMEOUT", &limit),
            ("HEALTH_TIMEOUT", &health),
            ("IMAGEUP", imageup),
            ("SCRIPT", &script),
            ("UNIT_LIMIT", &update_limit),
            ("WHEN", when),
        ];
        let mut w =
            unit("image-provision-update.service", include_str!("update.service"), &values, false, String::new());
        w.files.push(UnitFile::new(script.clone(), auto_update_script()));
        wanted.push(w);
        let what = format!("update at {when}");
        wanted.push(unit("image-provision-update.timer", include_str!("update.timer"), &values, true, what));
    }
    if let Some(when) = &img.upkeep.prune {
        let values = [("WHEN", when.as_str())];
        wanted.push(unit(
            "image-provision-prune.service",
            include_str!("prune.service"),
            &values,
            false,
            String::new(),
        ));
        let what = format!("dangling images pruned {when}");
        wanted.push(unit("image-provision-prune.timer", include_str!("prune.timer"), &values, true, what));
    }
    wanted
}

/// The power-off at `expires_at` (RFC 3339): its service with its script,
/// then its timer. `now`: the host's clock, when known, to say whether the
/// expiry has already passed.
fn expiry_units(expires_at: &str, now: Option<i64>) -> Result<Vec<Wanted>, String> {
    let calendar = expiry_calendar(expires_at)?;
    let script = format!("{SCRIPT_DIR}/expire.sh");
    let values = [("AT", expires_at), ("CALENDAR", calendar.as_str()), ("SCRIPT", script.as_str())];
    let mut service = unit(EXPIRE_UNITS[0], include_str!("expire.service"), &values, false, String::new());
    service.files.push(UnitFile::new(script.clone(), EXPIRE_SH.to_string()));
    let what = if has_passed(expires_at, now) {
        format!("powers off now (its expiry, {expires_at}, has passed)")
    } else {
        format!("powers off at {expires_at}")
    };
    Ok(vec![service, unit(EXPIRE_TIMER, include_str!("expire.timer"), &values, true, what)])
}

/// The files that arm the power-off at `expires_at`, exactly as this step
/// writes them (`ec2 create` hands them to cloud-init in the user data, so
/// a later run of this step finds them as wanted); enable [`EXPIRE_TIMER`]
/// after writing them.
pub fn expiry_files(expires_at: &str) -> Result<Vec<UnitFile>, String> {
    Ok(expiry_units(expires_at, None)?.into_iter().flat_map(|w| w.files).collect())
}

/// The facts of a host where cloud-init has armed the power-off at
/// `expires_at` from the user data: its files written, the timer enabled
/// and waiting (what `ec2 create --dry-run` plans this step from).
pub fn armed_facts(expires_at: &str) -> String {
    let mut lines = format!(
        "upkeep.{}=static inactive\nupkeep.{EXPIRE_TIMER}=enabled active\nexpire.at={expires_at}\n",
        EXPIRE_UNITS[0]
    );
    // cloud-init writes them with image-provision's record of them.
    for f in expiry_files(expires_at).unwrap_or_default() {
        let hash = crate::template::sha256_hex(&f.content);
        lines.push_str(&format!("file.{}={hash} {:o}\nwritten.{}={hash}\n", f.path, f.mode, f.path));
    }
    lines
}

/// Whether `expires_at` is at or before `now` (the host's clock).
fn has_passed(expires_at: &str, now: Option<i64>) -> bool {
    let at = expires_at.parse::<jiff::Timestamp>().map(|t| t.as_second());
    matches!((at, now), (Ok(at), Some(now)) if at <= now)
}

/// The expiry this run leaves on the host: the one asked for, or (without
/// --ttl) the host's own. `Err`: the host has a power-off whose expiry
/// cannot be read, left as found.
fn expiry_wanted<'a>(cfg: &'a Config, host: &'a UpkeepFacts) -> Result<Option<&'a str>, ()> {
    match &cfg.expiry {
        Expiry::At(at) => Ok(Some(at)),
        Expiry::Off => Ok(None),
        Expiry::Keep => match &host.expires_at {
            Some(at) => Ok(Some(at)),
            None if EXPIRE_UNITS.iter().any(|u| host.state(u).is_some()) => Err(()),
            None => Ok(None),
        },
    }
}

/// How often the idle stop looks, for a stop after `after` seconds: a
/// quarter of it, at least 5 s and at most a minute (the stop comes at most
/// that late).
pub fn autostop_check(after: u64) -> u64 {
    (after / 4).clamp(5, 60)
}

/// A duration for a person: `20s`, `30m`, `1h 30m`, `2d 4h`.
pub fn say_duration(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut left = secs;
    for (size, unit) in units {
        if left >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() { "0s".into() } else { parts.join(" ") }
}

/// The idle stop: its service with its script, then its timer.
fn autostop_units(idle: &IdleStop) -> Vec<Wanted> {
    let script = format!("{SCRIPT_DIR}/autostop.sh");
    let after = say_duration(idle.after);
    let seconds = idle.after.to_string();
    let check = format!("{}s", autostop_check(idle.after));
    let values = [
        ("AFTER", after.as_str()),
        ("SECONDS", seconds.as_str()),
        ("CHECK", check.as_str()),
        ("BASE_DIR", idle.base_dir.as_str()),
        ("SCRIPT", script.as_str()),
    ];
    let mut service = unit(AUTOSTOP_UNITS[0], include_str!("autostop.service"), &values, false, String::new());
    service.files.push(UnitFile::new(script.clone(), AUTOSTOP_SH.to_string()));
    let what = format!("stops after {after} without a request");
    vec![service, unit(AUTOSTOP_TIMER, include_str!("autostop.timer"), &values, true, what)]
}

/// The idle stop this run leaves on the host: the one asked for (watching
/// this run's stack), or (without --autostop) the host's own. `Err`: the
/// host has one that cannot be read, left as found.
fn autostop_wanted(cfg: &Config, host: &UpkeepFacts) -> Result<Option<IdleStop>, ()> {
    match &cfg.autostop {
        Autostop::After(d) => {
            // Without this run's stack settings (`ec2 create --no-bootstrap`
            // on a server that exists): the host's, else the default.
            let base_dir = cfg.image.as_ref().map(|i| i.base_dir.clone());
            let base_dir = base_dir
                .or_else(|| host.autostop.as_ref().map(|a| a.base_dir.clone()))
                .unwrap_or_else(|| crate::settings::DEFAULT_BASE_DIR.into());
            Ok(Some(IdleStop { after: d.as_secs().max(1), base_dir }))
        }
        Autostop::Off => Ok(None),
        Autostop::Keep => match &host.autostop {
            Some(idle) => Ok(Some(idle.clone())),
            None if AUTOSTOP_UNITS.iter().any(|u| host.state(u).is_some()) => Err(()),
            None => Ok(None),
        },
    }
}

/// Every unit wanted on the host, with its files: the IMAGE units of `cfg`,
/// the power-off at `expires_at`, and the idle stop.
pub fn wanted(
    cfg: &Config,
    expires_at: Option<&str>,
    now: Option<i64>,
    autostop: Option<&IdleStop>,
) -> Result<Vec<Wanted>, String> {
    let mut wanted = cfg.image.as_ref().map(image_units).unwrap_or_default();
    if let Some(at) = expires_at {
        wanted.extend(expiry_units(at, now)?);
    }
    if let Some(idle) = autostop {
        wanted.extend(autostop_units(idle));
    }
    Ok(wanted)
}

/// The files this step writes (the files facts report their hash and mode).
/// (All of them, whatever is turned on: the facts see what to remove too.)
pub fn written_files() -> Vec<String> {
    let mut files: Vec<String> = UNITS.iter().map(|u| unit_path(u)).collect();
    files.extend(UNITS.iter().filter_map(|u| script_of(u)));
    files
}

fn systemctl(args: &[&str]) -> Action {
    Action::Change(Cmd::new("systemctl").args(args.iter().copied()).sudo())
}

pub fn plan(upkeep: &UpkeepFacts, files: &FileFacts, cfg: &Config) -> Plan {
    // A power-off whose expiry cannot be read is left as found (without
    // --ttl): neither kept by rewriting it nor removed.
    let expiry = expiry_wanted(cfg, upkeep);
    let autostop = autostop_wanted(cfg, upkeep);
    let left_alone =
        |u: &str| (expiry.is_err() && EXPIRE_UNITS.contains(&u)) || (autostop.is_err() && AUTOSTOP_UNITS.contains(&u));
    let idle = autostop.clone().ok().flatten();
    let wanted = match wanted(cfg, expiry.unwrap_or(None), upkeep.now, idle.as_ref()) {
        Ok(w) => w,
        Err(message) => {
            return Plan::Refuse { message, hint: "give --ttl as a duration, e.g. 4h".into(), usage: true };
        }
    };
    // With --no-stack, the IMAGE units are not this run's to change.
    let ours = |u: &str| cfg.image.is_some() || POWER_UNITS.contains(&u);
    // (verb, what), said grouped by verb: "install: a; b, remove: c".
    let mut why: Vec<(&'static str, String)> = Vec::new();
    // The unit files and scripts; what is at their paths and not
    // image-provision's is copied first (see template).
    // A unit file counts as written only once systemd has it: marked
    // pending before the upload, cleared after the reload and restarts, so
    // a run cut short between them leaves the next run to apply it.
    let mut uploads = Writes::new(files, backup_dir()).applied_by_commands();
    let mut after_reload = Vec::new();
    let mut expire_last = Vec::new();
    let mut reload = false;

    // Turned off (or never wanted): stopped, disabled and removed with
    // their scripts, timers before their services.
    let unwanted: Vec<&str> = UNITS
        .iter()
        .rev()
        .copied()
        .filter(|u| ours(u) && !left_alone(u))
        .filter(|u| !wanted.iter().any(|w| w.unit == *u) && upkeep.state(u).is_some())
        .collect();
    let mut removals = Vec::new();
    let mut pending_removed = Vec::new();
    for u in &unwanted {
        if u.ends_with(".timer") || !unwanted.contains(&u.replace(".service", ".timer").as_str()) {
            why.push(("remove", u.to_string()));
        }
        removals.push(systemctl(&["disable", "--now", u]));
        let mut paths = vec![unit_path(u)];
        paths.extend(script_of(u));
        pending_removed.extend(paths.iter().filter(|p| files.pending(p)).cloned());
        removals.push(Action::Change(Cmd::new("rm").arg("-f").arg("--").args(paths).sudo()));
        reload = true;
    }

    for w in &wanted {
        let mut changed = false;
        for f in &w.files {
            if uploads.file(&f.path, f.content.clone(), f.mode, None, false) {
                changed = true;
            }
        }
        if changed {
            reload = true;
        }
        // What a person reads: the unit's purpose, once (a timer's service
        // is said by its timer).
        let mut say = |verb: &'static str| {
            if !w.what.is_empty() {
                why.push((verb, w.what.clone()));
            } else if changed && !wanted.iter().any(|t| t.unit == w.unit.replace(".service", ".timer")) {
                why.push((verb, w.unit.to_string()));
            }
        };
        let state = upkeep.state(w.unit);
        let enabled = state.is_some_and(|s| s.enabled == "enabled");
        let active = state.is_some_and(|s| s.active == "active");
        if !w.unit.ends_with(".timer") && !w.start {
            // Services run by their timers (or at boot) are only enabled
            // when they are installed for boot.
            if w.unit == "image-provision-stack.service" && !enabled {
                after_reload.push(systemctl(&["enable", w.unit]));
                say("install");
            } else if changed {
                say("rewrite");
            }
            continue;
        }
        // An expiry already past: the timer, started again, fires at once
        // (a calendar time in the past never fires by itself).
        let past = w.unit == EXPIRE_TIMER && expiry.ok().flatten().is_some_and(|at| has_passed(at, upkeep.now));
        // The power-off's timer starts last, after the pending record is
        // cleared: it may power the host off a second later, cancelling
        // whatever comes after it. A cut between the two leaves the timer
        // stopped or disabled, which the next run sees and starts.
        let after_reload =
            if w.unit == EXPIRE_TIMER || w.unit == AUTOSTOP_TIMER { &mut expire_last } else { &mut after_reload };
        if !enabled || !active {
            after_reload.push(systemctl(&["enable", "--now", w.unit]));
            say("install");
        } else if changed && (w.unit == EXPIRE_TIMER || w.unit == AUTOSTOP_TIMER) {
            // Stopped before the reload, started after it: systemd (252)
            // fires a running OnActiveSec= timer again at daemon-reload,
            // which with an expiry now past powers the host off there, and
            // a restart queued behind that power-off fails as canceled.
            // Started after the reload, it fires a second later, once this
            // step's commands have returned.
            removals.push(systemctl(&["stop", w.unit]));
            after_reload.push(systemctl(&["start", w.unit]));
            say("re-arm");
        } else if changed || past {
            // A changed schedule takes effect when the timer restarts.
            after_reload.push(systemctl(&["restart", w.unit]));
            say("re-arm");
        }
    }

    if !pending_removed.is_empty() {
        removals.push(Action::Change(mark_pending(PENDING, &[], &pending_removed)));
    }
    let copies = uploads.copies();
    let applied = uploads.applied();
    let mut actions = removals;
    actions.extend(uploads.into_actions());
    if reload {
        actions.push(systemctl(&["daemon-reload"]));
    }
    actions.extend(after_reload);
    actions.extend(applied);
    actions.extend(expire_last);
    const UNREAD: &str =
        "a power-off whose expiry cannot be read, left as found (--ttl DURATION or --ttl off replaces it)";
    const UNREAD_IDLE: &str =
        "an idle stop that cannot be read, left as found (--autostop DURATION or --autostop off replaces it)";
    if actions.is_empty() && wanted.is_empty() && cfg.image.is_none() {
        let mut unread = Vec::new();
        if expiry.is_err() {
            unread.push(UNREAD);
        }
        if autostop.is_err() {
            unread.push(UNREAD_IDLE);
        }
        return Plan::Skip(match unread.is_empty() {
            true => "--no-stack and no expiry: nothing runs by itself".into(),
            false => format!("--no-stack and {}", unread.join("; ")),
        });
    }
    let mut said: Vec<String> = copies.into_iter().collect();
    for verb in ["remove", "install", "rewrite", "re-arm"] {
        let whats: Vec<&str> = why.iter().filter(|(v, _)| *v == verb).map(|(_, w)| w.as_str()).collect();
        if !whats.is_empty() {
            said.push(format!("{verb}: {}", whats.join("; ")));
        }
    }
    Plan::from_actions(said, actions, || {
        let mut said: Vec<&str> = wanted.iter().map(|w| w.what.as_str()).filter(|w| !w.is_empty()).collect();
        if expiry.is_err() {
            said.push(UNREAD);
        }
        if autostop.is_err() {
            said.push(UNREAD_IDLE);
        }
        if said.is_empty() {
            return "nothing runs by itself (all turned off)".into();
        }
        said.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Upkeep;

    /// The host's clock in these tests: 2026-12-02T00:00:00Z.
    const NOW: i64 = 1_796_169_600;
    const LATER: &str = "2026-12-02T03:04:05Z";
    const EVEN_LATER: &str = "2026-12-02T08:00:00Z";
    const EARLIER: &str = "2026-12-01T23:00:00Z";

    /// The facts lines of a host where `files` are written with their
    /// modes, by image-provision (its record says so).
    fn file_lines(files: &[UnitFile]) -> String {
        let line = |f: &UnitFile| {
            let hash = crate::template::sha256_hex(&f.content);
            format!("file.{}={hash} {:o}\nwritten.{}={hash}\n", f.path, f.mode, f.path)
        };
        files.iter().map(line).collect()
    }

    /// The facts lines of a host where the expiry's units hold `at`: written
    /// by the upkeep step (or by cloud-init from the user data), the timer
    /// enabled and waiting.
    fn armed_lines(at: &str) -> String {
        armed_facts(at)
    }

    fn facts(lines: &str) -> (UpkeepFacts, FileFacts) {
        let raw = RawFacts::parse(&format!("{lines}expire.now={NOW}\n"));
        (UpkeepFacts::parse(&raw), FileFacts::parse(&raw))
    }

    /// The facts of a host where `cfg`'s units are installed as planned.
    fn converged(cfg: &Config) -> (UpkeepFacts, FileFacts) {
        let mut raw = String::new();
        let idle = match &cfg.autostop {
            Autostop::After(d) => Some(IdleStop { after: d.as_secs(), base_dir: "/var/docker/image".into() }),
            _ => None,
        };
        for w in wanted(cfg, cfg.expiry.at(), Some(NOW), idle.as_ref()).unwrap() {
            let active = if w.start { "active" } else { "inactive" };
            let enabled = if w.start || w.unit.ends_with("stack.service") { "enabled" } else { "static" };
            raw.push_str(&format!("upkeep.{}={enabled} {active}\n", w.unit));
            raw.push_str(&file_lines(&w.files));
        }
        if let Some(at) = cfg.expiry.at() {
            raw.push_str(&format!("expire.at={at}\n"));
        }
        if let Some(idle) = &idle {
            raw.push_str(&format!("autostop.after={}\nautostop.base_dir={}\n", idle.after, idle.base_dir));
        }
        facts(&raw)
    }

    fn with_upkeep(upkeep: Upkeep, expires_at: Option<&str>) -> Config {
        Config {
            image: Some(ImageConfig { upkeep, ..ImageConfig::default() }),
            expiry: expires_at.map_or(Expiry::Keep, |at| Expiry::At(at.into())),
            ..Config::default()
        }
    }

    fn expiring(expiry: Expiry) -> Config {
        Config { expiry, ..Config::default() }
    }

    fn act(plan: Plan) -> (String, Vec<String>) {
        let cmds = plan.commands();
        match plan {
            Plan::Act { why, .. } => (why, cmds),
            _ => unreachable!(),
        }
    }

    /// By default: the stack at boot (enabled, not started: the stack is
    /// up), the health check and prune timers started; a re-run does nothing.
    #[test]
    fn default_units_written_enabled_started_then_converged() {
        let cfg = Config::default();
        let plan = plan(&UpkeepFacts::default(), &FileFacts::default(), &cfg);
        let cmds = plan.commands();
        let at =
            |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:?}"));
        assert!(at("upload /etc/systemd/system/image-provision-stack.service") < at("daemon-reload"), "{cmds:?}");
        assert!(at("upload /usr/local/lib/image-provision/stack-at-boot.sh") < at("daemon-reload"));
        assert!(at("daemon-reload") < at("systemctl enable image-provision-stack.service"), "{cmds:?}");
        assert!(at("daemon-reload") < at("systemctl enable --now image-provision-healthcheck.timer"));
        assert!(at("systemctl enable --now image-provision-prune.timer") > at("daemon-reload"));
        assert!(!cmds.iter().any(|c| c.contains("update") || c.contains("expire")), "off by default: {cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("--now image-provision-stack")), "not started now: {cmds:?}");
        let (facts, files) = converged(&cfg);
        match super::plan(&facts, &files, &cfg) {
            Plan::Ok(why) => {
                assert_eq!(why, "the stack starts at boot; health check every 600s; dangling images pruned weekly")
            }
            other => panic!("converged: {other:?}"),
        }
    }

    /// The rendered units: the base directory, the limits, the schedules.
    #[test]
    fn units_carry_the_settings() {
        let upkeep = Upkeep {
            start_at_boot: true,
            healthcheck_every: Some(Duration::from_secs(300)),
            auto_update: Some("*-*-* 03:30:00 UTC".into()),
            prune: Some("daily".into()),
        };
        let all = wanted(&with_upkeep(upkeep, None), Some(LATER), Some(NOW), None).unwrap();
        let text = |unit: &str| {
            all.iter().find(|w| w.unit == unit).map(|w| w.files[0].content.clone()).unwrap_or_else(|| panic!("{unit}"))
        };
        let boot = text("image-provision-stack.service");
        assert!(boot.contains("Environment=BASE_DIR=/var/docker/image TIMEOUT=3600\n"), "{boot}");
        assert!(boot.contains("ExecStart=/bin/bash /usr/local/lib/image-provision/stack-at-boot.sh\n"));
        assert!(boot.contains("After=docker.service") && boot.contains("WantedBy=multi-user.target"));
        let health = text("image-provision-healthcheck.service");
        assert!(health.contains("ExecStart=/var/docker/image/bin/healthcheck\n"), "{health}");
        assert!(health.contains("-mtime +14 -delete"), "{health}");
        assert!(text("image-provision-healthcheck.timer").contains("OnUnitActiveSec=300s\n"));
        assert!(text("image-provision-update.timer").contains("OnCalendar=*-*-* 03:30:00 UTC\n"));
        let update = text("image-provision-update.service");
        assert!(
            update.contains("Environment=BASE_DIR=/var/docker/image TIMEOUT=3600 HEALTH_TIMEOUT=300 IMAGEUP=yes\n"),
            "{update}"
        );
        // Room for the update, the wait, a rollback and a second wait.
        assert!(update.contains("TimeoutStartSec=11520s\n"), "{update}");
        assert!(text("image-provision-prune.timer").contains("OnCalendar=daily\n"));
        assert!(text("image-provision-prune.service").contains("ExecStart=/usr/bin/docker image prune --force\n"));
        // The power-off: at the calendar time, and at once whenever the
        // timer starts; the script decides, from the expiry.
        let timer = text("image-provision-expire.timer");
        assert!(timer.contains("OnCalendar=2026-12-02 03:04:05 UTC\nOnActiveSec=1s\n"), "{timer}");
        assert!(timer.contains("Description=Power off at 2026-12-02T03:04:05Z (the server's expiry)\n"), "{timer}");
        let service = text("image-provision-expire.service");
        assert!(service.contains("Environment=EXPIRES_AT=2026-12-02T03:04:05Z\n"), "{service}");
        assert!(service.contains("ExecStart=/bin/bash /usr/local/lib/image-provision/expire.sh\n"), "{service}");
        assert!(service.contains("StandardOutput=journal+console\n"), "{service}");
        let expire = all.iter().find(|w| w.unit == "image-provision-expire.service").unwrap();
        assert_eq!(expire.files[1].content, EXPIRE_SH);
        assert_eq!(expire.files[1].mode, 0o755);
        for w in &all {
            for f in w.files.iter().filter(|f| !f.path.ends_with(".sh")) {
                assert!(!f.content.contains("{{"), "{} left a placeholder", f.path);
            }
        }
    }

    /// Turned off: stopped, disabled and removed; a moved expiry re-arms
    /// its timer; a bad expiry is refused.
    #[test]
    fn turned_off_removed_and_a_moved_expiry_rearmed() {
        let before =
            with_upkeep(Upkeep { auto_update: Some("*-*-* 04:00:00 UTC".into()), ..Upkeep::default() }, Some(LATER));
        let (facts, files) = converged(&before);
        let after = with_upkeep(Upkeep::default(), Some(EVEN_LATER));
        let cmds = plan(&facts, &files, &after).commands();
        let at =
            |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:?}"));
        assert!(at("disable --now image-provision-update.timer") < at("disable --now image-provision-update.service"));
        assert!(at("rm -f -- /etc/systemd/system/image-provision-update.timer") < at("daemon-reload"));
        assert!(at("upload /etc/systemd/system/image-provision-expire.timer") < at("daemon-reload"));
        assert!(at("systemctl stop image-provision-expire.timer") < at("daemon-reload"), "{cmds:?}");
        assert!(at("daemon-reload") < at("systemctl start image-provision-expire.timer"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("healthcheck")), "unchanged: {cmds:?}");
        // No stack and no expiry: nothing to keep.
        let none = Config { image: None, ..Config::default() };
        assert!(matches!(plan(&UpkeepFacts::default(), &FileFacts::default(), &none), Plan::Skip(_)));
        let bad = expiring(Expiry::At("tomorrow".into()));
        assert!(matches!(plan(&UpkeepFacts::default(), &FileFacts::default(), &bad), Plan::Refuse { .. }));
    }

    /// Without --ttl, the host's expiry is kept (before, a `bootstrap
    /// --host` removed the power-off that `ec2 create --ttl` had armed);
    /// one whose expiry cannot be read is left as found, and said so.
    #[test]
    fn without_ttl_the_hosts_expiry_is_kept() {
        let keep = Config::default();
        assert_eq!(keep.expiry, Expiry::Keep);
        let (facts, files) = converged(&with_upkeep(Upkeep::default(), Some(LATER)));
        match plan(&facts, &files, &keep) {
            Plan::Ok(why) => assert!(why.ends_with("; powers off at 2026-12-02T03:04:05Z"), "{why}"),
            other => panic!("kept as it is: {other:?}"),
        }
        // Not yet installed here: the IMAGE units are, the power-off not
        // touched.
        let unread = "upkeep.image-provision-expire.service=static inactive\n\
                      upkeep.image-provision-expire.timer=enabled active\nexpire.at=someday\n";
        let (facts, files) = self::facts(unread);
        let (why, cmds) = act(plan(&facts, &files, &keep));
        assert!(!cmds.iter().any(|c| c.contains("expire")), "{cmds:?}");
        assert!(cmds.iter().any(|c| c.contains("enable image-provision-stack.service")), "{cmds:?}");
        assert!(!why.contains("remove"), "{why}");
        let no_stack = Config { image: None, ..Config::default() };
        match plan(&facts, &files, &Config { expiry: Expiry::Off, ..no_stack.clone() }) {
            Plan::Act { why, .. } => assert_eq!(why, "remove: image-provision-expire.timer"),
            other => panic!("--ttl off removes it: {other:?}"),
        }
        match plan(&facts, &files, &no_stack) {
            Plan::Skip(why) => assert!(why.contains("a power-off whose expiry cannot be read, left as found"), "{why}"),
            other => panic!("left alone: {other:?}"),
        }
    }

    /// --ttl moves the expiry: its two units rewritten (the script is the
    /// same) and the timer started again, which arms its new time; `--ttl
    /// off` stops and removes the units and the script. With --no-stack,
    /// the IMAGE units are left as they are, whatever happens to the
    /// expiry.
    #[test]
    fn ttl_moves_the_expiry_and_off_removes_it_touching_nothing_else() {
        let image_units = converged(&Config::default()).0;
        let mut lines = armed_lines(LATER);
        for (unit, state) in &image_units.units {
            lines.push_str(&format!("upkeep.{unit}={} {}\n", state.enabled, state.active));
        }
        let (facts, files) = facts(&lines);
        let no_stack = |expiry| Config { image: None, expiry, ..Config::default() };

        let (why, cmds) = act(plan(&facts, &files, &no_stack(Expiry::At(EVEN_LATER.into()))));
        assert_eq!(why, "re-arm: powers off at 2026-12-02T08:00:00Z");
        assert_eq!(cmds.len(), 8, "{cmds:?}");
        // Stopped before the reload (which would fire it), started after;
        // the files pending from before the upload until after the reload.
        assert!(cmds[0].ends_with("systemctl stop image-provision-expire.timer"), "{cmds:?}");
        let pending = "MARK='/etc/systemd/system/image-provision-expire.service /etc/systemd/system/image-provision-expire.timer'";
        assert!(cmds[1].contains(pending) && cmds[1].contains("mark-pending.sh"), "{cmds:?}");
        assert!(cmds[2].starts_with("upload /etc/systemd/system/image-provision-expire.service ("), "{cmds:?}");
        assert!(cmds[3].starts_with("upload /etc/systemd/system/image-provision-expire.timer ("), "{cmds:?}");
        assert!(cmds[4].contains("record-written.sh"), "the record of what was written: {cmds:?}");
        assert!(cmds[5].ends_with("systemctl daemon-reload"), "{cmds:?}");
        let cleared = pending.replace("MARK", "CLEAR");
        assert!(cmds[6].contains(&cleared) && cmds[6].contains("MARK=''"), "{cmds:?}");
        assert!(cmds[7].ends_with("systemctl start image-provision-expire.timer"), "{cmds:?}");
        // Moved into the past on a running timer: the same order, nothing
        // after the start that the power-off could cancel.
        let (why, cmds) = act(plan(&facts, &files, &no_stack(Expiry::At(EARLIER.into()))));
        assert!(why.contains("powers off now"), "{why}");
        assert!(cmds[0].ends_with("systemctl stop image-provision-expire.timer"), "{cmds:?}");
        assert!(cmds.last().unwrap().ends_with("systemctl start image-provision-expire.timer"), "{cmds:?}");

        let (why, cmds) = act(plan(&facts, &files, &no_stack(Expiry::Off)));
        assert_eq!(why, "remove: image-provision-expire.timer");
        let ends = [
            "systemctl disable --now image-provision-expire.timer",
            "rm -f -- /etc/systemd/system/image-provision-expire.timer",
            "systemctl disable --now image-provision-expire.service",
            "rm -f -- /etc/systemd/system/image-provision-expire.service /usr/local/lib/image-provision/expire.sh",
            "systemctl daemon-reload",
        ];
        assert_eq!(cmds.len(), ends.len(), "{cmds:?}");
        for (cmd, end) in cmds.iter().zip(ends) {
            assert!(cmd.ends_with(end), "{cmd} is not {end}: {cmds:?}");
        }
        // Nothing to change: the expiry as it is, the IMAGE units not ours.
        match plan(&facts, &files, &no_stack(Expiry::At(LATER.into()))) {
            Plan::Ok(why) => assert_eq!(why, "powers off at 2026-12-02T03:04:05Z"),
            other => panic!("{other:?}"),
        }
    }

    /// An expiry already past powers the host off at once: the timer is
    /// started (again), which runs the power-off a second later, and the
    /// step says so. Kept as it is, it is started again too: a timer whose
    /// calendar time has passed would never fire by itself.
    #[test]
    fn an_expiry_already_past_powers_off_at_once() {
        let past = expiring(Expiry::At(EARLIER.into()));
        let (fresh, no_files) = facts("");
        let (why, cmds) = act(plan(&fresh, &no_files, &past));
        assert!(why.ends_with("; powers off now (its expiry, 2026-12-01T23:00:00Z, has passed)"), "{why}");
        assert!(cmds.last().unwrap().ends_with("systemctl enable --now image-provision-expire.timer"), "{cmds:?}");
        let (facts, files) = converged(&past);
        let (why, cmds) = act(plan(&facts, &files, &Config::default()));
        assert_eq!(why, "re-arm: powers off now (its expiry, 2026-12-01T23:00:00Z, has passed)");
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        assert!(cmds[0].ends_with("systemctl restart image-provision-expire.timer"), "{cmds:?}");
        // Not yet past: nothing to do.
        let later = expiring(Expiry::At(LATER.into()));
        let (facts, files) = converged(&later);
        assert!(matches!(plan(&facts, &files, &later), Plan::Ok(_)));
    }

    /// What `ec2 create` hands to cloud-init is what this step writes, with
    /// the same modes: the step's next run finds the power-off as wanted.
    #[test]
    fn the_user_datas_files_are_the_steps_own() {
        let files = expiry_files(LATER).unwrap();
        let paths: Vec<(&str, u32)> = files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(
            paths,
            [
                ("/etc/systemd/system/image-provision-expire.service", 0o644),
                ("/usr/local/lib/image-provision/expire.sh", 0o755),
                ("/etc/systemd/system/image-provision-expire.timer", 0o644),
            ]
        );
        let (facts, file_facts) = self::facts(&armed_lines(LATER));
        let cfg = Config { image: None, expiry: Expiry::At(LATER.into()), ..Config::default() };
        assert!(matches!(plan(&facts, &file_facts, &cfg), Plan::Ok(_)));
        assert_eq!(facts.expires_at.as_deref(), Some(LATER));
        for f in &files {
            assert!(written_files().contains(&f.path), "{} is not in the files facts", f.path);
        }
    }

    fn idling(autostop: Autostop) -> Config {
        Config { autostop, ..Config::default() }
    }

    /// --autostop: its units written (the timer started last: it may power
    /// the host off), kept as they are without the flag, re-armed when the
    /// duration changes, removed with `off`; the IMAGE units untouched.
    #[test]
    fn autostop_written_kept_rearmed_and_removed_with_off() {
        let twenty = idling(Autostop::After(Duration::from_secs(20)));
        let (fresh, no_files) = facts("");
        let (why, cmds) = act(plan(&fresh, &no_files, &twenty));
        assert!(why.ends_with("; stops after 20s without a request"), "{why}");
        for path in [
            "/etc/systemd/system/image-provision-autostop.service",
            "/etc/systemd/system/image-provision-autostop.timer",
            "/usr/local/lib/image-provision/autostop.sh",
        ] {
            assert!(cmds.iter().any(|c| c.starts_with(&format!("upload {path} ("))), "{path}: {cmds:?}");
        }
        assert!(cmds.last().unwrap().ends_with("systemctl enable --now image-provision-autostop.timer"), "{cmds:?}");
        // Rendered: the seconds and the stack's directory for the script,
        // a check every 5 s, to the second.
        let all =
            wanted(&twenty, None, Some(NOW), Some(&IdleStop { after: 20, base_dir: "/srv/image".into() })).unwrap();
        let text = |unit: &str| all.iter().find(|w| w.unit == unit).unwrap().files[0].content.clone();
        let service = text("image-provision-autostop.service");
        assert!(service.contains("\nEnvironment=IDLE_AFTER=20\nEnvironment=BASE_DIR=/srv/image\n"), "{service}");
        assert!(service.contains("\nExecStart=/bin/bash /usr/local/lib/image-provision/autostop.sh\n"), "{service}");
        let timer = text("image-provision-autostop.timer");
        assert!(timer.contains("\nOnActiveSec=5s\nOnUnitActiveSec=5s\nAccuracySec=1s\n"), "{timer}");
        assert!(!timer.contains("{{") && !service.contains("{{"), "{timer}{service}");
        assert_eq!((autostop_check(20), autostop_check(1800), autostop_check(120)), (5, 60, 30));
        assert_eq!(
            (say_duration(20), say_duration(5400), say_duration(187_200)),
            ("20s".into(), "1h 30m".into(), "2d 4h".into())
        );

        // Converged, and kept without the flag (the host's own read back).
        let (facts, files) = converged(&twenty);
        assert_eq!(facts.autostop, Some(IdleStop { after: 20, base_dir: "/var/docker/image".into() }));
        assert!(matches!(plan(&facts, &files, &twenty), Plan::Ok(_)));
        match plan(&facts, &files, &Config::default()) {
            Plan::Ok(why) => assert!(why.ends_with("; stops after 20s without a request"), "{why}"),
            other => panic!("kept: {other:?}"),
        }
        // Another duration: the timer stopped before the reload, started
        // after it (which restarts the idle clock), last.
        let (why, cmds) = act(plan(&facts, &files, &idling(Autostop::After(Duration::from_secs(1800)))));
        assert_eq!(why, "re-arm: stops after 30m without a request");
        assert!(cmds[0].ends_with("systemctl stop image-provision-autostop.timer"), "{cmds:?}");
        assert!(cmds.last().unwrap().ends_with("systemctl start image-provision-autostop.timer"), "{cmds:?}");
        // Off: stopped, disabled, removed with its script; nothing else.
        let (why, cmds) = act(plan(&facts, &files, &idling(Autostop::Off)));
        assert_eq!(why, "remove: image-provision-autostop.timer");
        let ends = [
            "systemctl disable --now image-provision-autostop.timer",
            "rm -f -- /etc/systemd/system/image-provision-autostop.timer",
            "systemctl disable --now image-provision-autostop.service",
            "rm -f -- /etc/systemd/system/image-provision-autostop.service /usr/local/lib/image-provision/autostop.sh",
            "systemctl daemon-reload",
        ];
        assert_eq!(cmds.len(), ends.len(), "{cmds:?}");
        for (cmd, end) in cmds.iter().zip(ends) {
            assert!(cmd.ends_with(end), "{cmd} is not {end}: {cmds:?}");
        }
        // --no-stack: `off` still removes it; an unreadable one is left
        // as found without the flag.
        let no_stack = Config { image: None, autostop: Autostop::Off, ..Config::default() };
        assert!(matches!(plan(&facts, &files, &no_stack), Plan::Act { .. }));
        let unread = "upkeep.image-provision-autostop.service=static inactive\n\
                      upkeep.image-provision-autostop.timer=enabled active\nautostop.after=soon\n";
        let (facts, files) = self::facts(unread);
        match plan(&facts, &files, &Config { image: None, ..Config::default() }) {
            Plan::Skip(why) => assert!(why.contains("an idle stop that cannot be read, left as found"), "{why}"),
            other => panic!("left alone: {other:?}"),
        }
    }

    /// autostop.sh's decision, run here against stand-ins for docker,
    /// systemctl and wall on PATH that answer as the real ones do and
    /// record what they were asked: the later of the arming, the
    /// orchestrator's start and its last request starts the idle clock;
    /// only requests count; Docker not answering stops nothing.
    #[test]
    fn autostop_script_powers_off_only_after_the_idle_duration() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let stand_in = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/bash\nD={d}\n{body}")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stand_in(
            "systemctl",
            r#"case "$*" in
"show -p ActiveEnterTimestamp --value image-provision-autostop.timer") cat "$D/armed" ;;
"--no-block poweroff") echo poweroff >>"$D/powered" ;;
*) echo "systemctl stand-in: unknown $*" >&2; exit 2 ;;
esac
"#,
        );
        stand_in("wall", "cat >/dev/null; echo \"$1\" >>\"$D/walled\"\n");
        stand_in(
            "docker",
            r#"echo "$*" >>"$D/docker.calls"
if [ -e "$D/down" ]; then echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1; fi
case "$1 $2" in
"ps -q")
    [ "$*" = "ps -q --filter label=com.docker.compose.project.working_dir=/var/docker/image --filter label=com.docker.compose.service=orchestrator" ] || exit 2
    cat "$D/ps" 2>/dev/null || true ;;
"inspect -f") [ "$3 $4" = "{{.State.StartedAt}} 0a1b2c3d" ] || exit 2; cat "$D/started" ;;
"logs --timestamps")
    [ "$3 $5" = "--since 0a1b2c3d" ] || exit 2
    while IFS= read -r line; do
        [ "$(date -u -d "${line%% *}" +%s)" -lt "$4" ] || printf '%s\n' "$line"
    done <"$D/logs" ;;
*) echo "docker stand-in: unknown $*" >&2; exit 2 ;;
esac
"#,
        );
        let ago = |secs: i64| {
            let t = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap();
            t.strftime("%Y-%m-%dT%H:%M:%S.123456789Z").to_string()
        };
        let put = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let run = || {
            let _ = std::fs::remove_file(dir.path().join("powered"));
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(AUTOSTOP_SH)
                .env("PATH", format!("{d}:{}", std::env::var("PATH").unwrap()))
                .env("IDLE_AFTER", "60")
                .env("BASE_DIR", "/var/docker/image")
                .output()
                .unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.success(), dir.path().join("powered").exists(), said)
        };
        // systemd's own format for the timer's start.
        let armed = |secs: i64| {
            let t = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap();
            put("armed", &format!("{}\n", t.strftime("%a %Y-%m-%d %H:%M:%S UTC")));
        };

        // Armed 100 s ago, no orchestrator running: no request can reach
        // it, so idle since the arming: powered off, and said.
        armed(100);
        let (ok, powered, said) = run();
        assert!(ok && powered, "{said}");
        assert!(said.contains("no request has reached the orchestrator for 10"), "{said}");
        assert!(said.contains("the orchestrator is not running"), "{said}");
        assert!(std::fs::read_to_string(dir.path().join("walled")).unwrap().contains("powering the server off now"));

        // Running since before the arming, its last request 30 s ago (a
        // POST /render/preprocess of IMAGE's orchestrator), then only its
        // cron's noise: idle 30 s of 60, no power-off.
        put("ps", "0a1b2c3d\n");
        put("started", &format!("{}\n", ago(500)));
        let request = format!("{} req=3f0e Running preprocessors in parallel...\n", ago(30));
        let noise = format!("{} cleaned 0 files\n", ago(5));
        put("logs", &format!("{} Started server on port 8080\n{request}{noise}", ago(499)));
        let (ok, powered, said) = run();
        assert!(ok && !powered, "{said}");
        assert!(said.contains("idle for 3") && said.contains("since the last request at"), "{said}");
        // Asked for the log since the arming only, not the container's life.
        let calls = std::fs::read_to_string(dir.path().join("docker.calls")).unwrap();
        let since: i64 = calls.lines().last().unwrap().split(' ').nth(3).unwrap().parse().unwrap();
        let armed_at = jiff::Timestamp::now().as_second() - 100;
        assert!((armed_at - 2..=armed_at + 2).contains(&since), "{calls}");

        // The last request (a POST /render) 90 s ago, the cron since: idle.
        put("logs", &format!("{} req=77 Received request\n{noise}", ago(90)));
        armed(300);
        let (ok, powered, said) = run();
        assert!(ok && powered, "{said}");
        assert!(said.contains("since the last request"), "{said}");

        // The orchestrator started 20 s ago (an update recreated it; its
        // older log is gone): the clock starts there.
        put("started", &format!("{}\n", ago(20)));
        put("logs", "");
        let (ok, powered, said) = run();
        assert!(ok && !powered && said.contains("since the orchestrator started"), "{said}");

        // Docker does not answer: it cannot tell, and stops nothing.
        put("down", "");
        let (ok, powered, said) = run();
        assert!(!ok && !powered && said.contains("Docker does not answer"), "{said}");
    }

    /// The nightly update rolls back as `update` does: the same library
    /// functions (stack-record.sh) record what runs before imageup, wait
    /// for the stack's health within HEALTH_TIMEOUT, and on failure return
    /// to the record; the unit then fails, having said so in the journal.
    #[test]
    fn the_nightly_update_rolls_back_as_update_does() {
        let script = auto_update_script();
        let stack_update = crate::steps::stack::update_script();
        let rollback = crate::steps::stack::rollback_script();
        for s in [&script, &stack_update, &rollback] {
            assert!(s.contains(crate::bring_up::STACK_RECORD_SH), "the library in front");
            assert!(s.contains(&format!("STACK_RECORD_DIR={}\n", crate::bring_up::STACK_RECORD_DIR)));
        }
        let at = |needle: &str| script.rfind(needle).unwrap_or_else(|| panic!("{needle} not in auto-update.sh"));
        assert!(at("\nstack_before_update \"$BASE_DIR\"") < at("run_imageup \"$BASE_DIR\" \"$TIMEOUT\" --service"));
        assert!(at("stack_wait_healthy \"$BASE_DIR\" \"$HEALTH_TIMEOUT\"") > at("--service"));
        assert!(at("\nstack_rollback \"$BASE_DIR\" before \"$TIMEOUT\"") > at("stack_updated \"$BASE_DIR\""));
        assert!(script.trim_end().ends_with("exit 1"), "a rolled-back update fails the unit");
        assert!(rollback.contains("before | previous) stack_rollback \"$BASE_DIR\" \"$ACTION\" \"$TIMEOUT\""));
    }
}
