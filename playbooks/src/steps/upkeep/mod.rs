//! The upkeep step: what keeps the server right after bootstrap has ended,
//! as systemd units on the host. Each is written, enabled and (timers)
//! started, or, turned off, stopped and removed:
//! - the stack back after a reboot (stack.service, stack-at-boot.sh): every
//!   IMAGE service has restart: "no";
//! - the IMAGE team's scripts/healthcheck on a timer, its logs pruned;
//! - with --auto-update, imageup --service on a timer (auto-update.sh), in
//!   place of the team's image_daily_cron (README.md says why);
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
//!
//! The stack-at-boot and update scripts carry the bring-up library in front,
//! so they wait for a running imageup, never fight it. With --no-stack only
//! the expiry's units are this step's: the IMAGE units are left as found.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::bring_up::{BRING_UP, BRING_UP_LOCK_SH, STACK_RECORD_SH};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{Config, Expiry, ImageConfig};
use crate::shell::with_libraries;
use crate::template::{FileFacts, PENDING, Writes, backup_dir, mark_pending, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const STACK_AT_BOOT_SH: &str = include_str!("stack-at-boot.sh");
pub const AUTO_UPDATE_SH: &str = include_str!("auto-update.sh");
pub const EXPIRE_SH: &str = include_str!("expire.sh");

/// Where units and their scripts live on the host.
const UNIT_DIR: &str = "/etc/systemd/system";
const SCRIPT_DIR: &str = "/usr/local/lib/image-provision";
/// How many days of the health check's logs (one file a run) are kept.
pub const HEALTHCHECK_LOG_DAYS: u32 = 14;

/// Every unit this step may install, in the order it enables them.
pub const UNITS: [&str; 9] = [
    "image-provision-stack.service",
    "image-provision-healthcheck.service",
    "image-provision-healthcheck.timer",
    "image-provision-update.service",
    "image-provision-update.timer",
    "image-provision-prune.service",
    "image-provision-prune.timer",
    "image-provision-expire.service",
    "image-provision-expire.timer",
];

/// The power-off at the expiry: its service, then its timer.
pub const EXPIRE_UNITS: [&str; 2] = ["image-provision-expire.service", "image-provision-expire.timer"];
/// The timer that arms the power-off (what cloud-init enables).
pub const EXPIRE_TIMER: &str = EXPIRE_UNITS[1];

/// The script a service runs, removed with it.
fn script_of(unit: &str) -> Option<String> {
    let name = match unit {
        "image-provision-stack.service" => "stack-at-boot.sh",
        "image-provision-update.service" => "auto-update.sh",
        "image-provision-expire.service" => "expire.sh",
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
        UpkeepFacts { units, expires_at, now }
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

/// Every unit wanted on the host, with its files: the IMAGE units of `cfg`,
/// and the power-off at `expires_at`.
pub fn wanted(cfg: &Config, expires_at: Option<&str>, now: Option<i64>) -> Result<Vec<Wanted>, String> {
    let mut wanted = cfg.image.as_ref().map(image_units).unwrap_or_default();
    if let Some(at) = expires_at {
        wanted.extend(expiry_units(at, now)?);
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
    let left_alone = |u: &str| expiry.is_err() && EXPIRE_UNITS.contains(&u);
    let wanted = match wanted(cfg, expiry.unwrap_or(None), upkeep.now) {
        Ok(w) => w,
        Err(message) => {
            return Plan::Refuse { message, hint: "give --ttl as a duration, e.g. 4h".into(), usage: true };
        }
    };
    // With --no-stack, the IMAGE units are not this run's to change.
    let ours = |u: &str| cfg.image.is_some() || EXPIRE_UNITS.contains(&u);
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
        let after_reload = if w.unit == EXPIRE_TIMER { &mut expire_last } else { &mut after_reload };
        if !enabled || !active {
            after_reload.push(systemctl(&["enable", "--now", w.unit]));
            say("install");
        } else if changed && w.unit == EXPIRE_TIMER {
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
    if actions.is_empty() && wanted.is_empty() && cfg.image.is_none() {
        return Plan::Skip(match expiry {
            Ok(_) => "--no-stack and no expiry: nothing runs by itself".into(),
            Err(()) => format!("--no-stack and {UNREAD}"),
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
        for w in wanted(cfg, cfg.expiry.at(), Some(NOW)).unwrap() {
            let active = if w.start { "active" } else { "inactive" };
            let enabled = if w.start || w.unit.ends_with("stack.service") { "enabled" } else { "static" };
            raw.push_str(&format!("upkeep.{}={enabled} {active}\n", w.unit));
            raw.push_str(&file_lines(&w.files));
        }
        if let Some(at) = cfg.expiry.at() {
            raw.push_str(&format!("expire.at={at}\n"));
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
        let all = wanted(&with_upkeep(upkeep, None), Some(LATER), Some(NOW)).unwrap();
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
