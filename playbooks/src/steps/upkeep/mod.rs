//! The upkeep step: what keeps the server right after bootstrap has ended,
//! as systemd units on the host. Each is written, enabled and (timers)
//! started, or, turned off, stopped and removed:
//! - the stack back after a reboot (stack.service, stack-at-boot.sh): every
//!   IMAGE service has restart: "no";
//! - the IMAGE team's scripts/healthcheck on a timer, its logs pruned;
//! - with --auto-update, imageup --service on a timer (auto-update.sh), as
//!   the team's image_daily_cron runs it;
//! - dangling images pruned on a timer;
//! - with an expiry (ec2 create --ttl), a power-off at that time: the
//!   instance terminates on it, so the bill stops.
//!
//! The two scripts carry the bring-up library in front, so the stack at
//! boot and the nightly update wait for a running imageup, never fight it.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::bring_up::{BRING_UP, BRING_UP_LOCK_SH};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{Config, ImageConfig};
use crate::shell::with_libraries;
use crate::template::{FileFacts, Writes, backup_dir, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const STACK_AT_BOOT_SH: &str = include_str!("stack-at-boot.sh");
pub const AUTO_UPDATE_SH: &str = include_str!("auto-update.sh");

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
    with_libraries(&[BRING_UP_LOCK_SH], STACK_AT_BOOT_SH)
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
        UpkeepFacts { units }
    }

    pub fn state(&self, unit: &str) -> Option<&UnitState> {
        self.units.get(unit)
    }
}

/// A file the step writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFile {
    pub path: String,
    pub content: String,
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
    Wanted { unit, files: vec![UnitFile { path: unit_path(unit), content: render(template, values) }], start, what }
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
        w.files.push(UnitFile { path: script.clone(), content: stack_at_boot_script() });
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
        let values = [
            ("BASE_DIR", base),
            ("TIMEOUT", &limit),
            ("IMAGEUP", imageup),
            ("SCRIPT", &script),
            ("UNIT_LIMIT", &unit_limit),
            ("WHEN", when),
        ];
        let mut w =
            unit("image-provision-update.service", include_str!("update.service"), &values, false, String::new());
        w.files.push(UnitFile { path: script.clone(), content: auto_update_script() });
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

/// Every unit `cfg` wants on the host, with its files.
pub fn wanted(cfg: &Config) -> Result<Vec<Wanted>, String> {
    let mut wanted = cfg.image.as_ref().map(image_units).unwrap_or_default();
    if let Some(at) = &cfg.expires_at {
        let calendar = expiry_calendar(at)?;
        let values = [("AT", at.as_str()), ("CALENDAR", calendar.as_str())];
        wanted.push(unit(
            "image-provision-expire.service",
            include_str!("expire.service"),
            &values,
            false,
            String::new(),
        ));
        let what = format!("powers off at {at}");
        wanted.push(unit("image-provision-expire.timer", include_str!("expire.timer"), &values, true, what));
    }
    Ok(wanted)
}

/// The files this step writes (the files facts report their hash and mode).
/// (All of them, whatever is turned on: the facts see what to remove too.)
pub fn written_files() -> Vec<String> {
    let mut files: Vec<String> = UNITS.iter().map(|u| unit_path(u)).collect();
    files.push(format!("{SCRIPT_DIR}/stack-at-boot.sh"));
    files.push(format!("{SCRIPT_DIR}/auto-update.sh"));
    files
}

fn systemctl(args: &[&str]) -> Action {
    Action::Change(Cmd::new("systemctl").args(args.iter().copied()).sudo())
}

pub fn plan(upkeep: &UpkeepFacts, files: &FileFacts, cfg: &Config) -> Plan {
    let wanted = match wanted(cfg) {
        Ok(w) => w,
        Err(message) => {
            return Plan::Refuse { message, hint: "give --ttl as a duration, e.g. 4h".into(), usage: true };
        }
    };
    // (verb, what), said grouped by verb: "install: a; b, remove: c".
    let mut why: Vec<(&'static str, String)> = Vec::new();
    // The unit files and scripts; what is at their paths and not
    // image-provision's is copied first (see template).
    let mut uploads = Writes::new(files, backup_dir());
    let mut after_reload = Vec::new();
    let mut reload = false;

    // Turned off (or never wanted): stopped, disabled and removed, timers
    // before their services.
    let unwanted: Vec<&str> = UNITS
        .iter()
        .rev()
        .copied()
        .filter(|u| !wanted.iter().any(|w| w.unit == *u) && upkeep.state(u).is_some())
        .collect();
    let mut removals = Vec::new();
    for u in &unwanted {
        if u.ends_with(".timer") || !unwanted.contains(&u.replace(".service", ".timer").as_str()) {
            why.push(("remove", u.to_string()));
        }
        removals.push(systemctl(&["disable", "--now", u]));
        removals.push(Action::Change(Cmd::new("rm").args(["-f", "--", &unit_path(u)]).sudo()));
        reload = true;
    }

    for w in &wanted {
        let mut changed = false;
        for f in &w.files {
            let mode = if f.path.ends_with(".sh") { "755" } else { "644" };
            let bits = if mode == "755" { 0o755 } else { 0o644 };
            if uploads.file(&f.path, f.content.clone(), bits, None, false) {
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
        if !enabled || !active {
            after_reload.push(systemctl(&["enable", "--now", w.unit]));
            say("install");
        } else if changed {
            // A changed schedule takes effect when the timer restarts.
            after_reload.push(systemctl(&["restart", w.unit]));
            say("re-arm");
        }
    }

    let copies = uploads.copies();
    let mut actions = removals;
    actions.extend(uploads.into_actions());
    if reload {
        actions.push(systemctl(&["daemon-reload"]));
    }
    actions.extend(after_reload);
    if actions.is_empty() && wanted.is_empty() && cfg.image.is_none() {
        return Plan::Skip("--no-stack and no expiry: nothing runs by itself".into());
    }
    let mut said: Vec<String> = copies.into_iter().collect();
    for verb in ["remove", "install", "rewrite", "re-arm"] {
        let whats: Vec<&str> = why.iter().filter(|(v, _)| *v == verb).map(|(_, w)| w.as_str()).collect();
        if !whats.is_empty() {
            said.push(format!("{verb}: {}", whats.join("; ")));
        }
    }
    Plan::from_actions(said, actions, || {
        if wanted.is_empty() {
            return "nothing runs by itself (all turned off)".into();
        }
        let said: Vec<&str> = wanted.iter().map(|w| w.what.as_str()).filter(|w| !w.is_empty()).collect();
        said.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Upkeep;

    /// The facts of a host where `wanted` is installed as planned.
    fn converged(cfg: &Config) -> (UpkeepFacts, FileFacts) {
        let mut raw = String::new();
        for w in wanted(cfg).unwrap() {
            let active = if w.start { "active" } else { "inactive" };
            let enabled = if w.start || w.unit.ends_with("stack.service") { "enabled" } else { "static" };
            raw.push_str(&format!("upkeep.{}={enabled} {active}\n", w.unit));
            for f in &w.files {
                let mode = if f.path.ends_with(".sh") { "755" } else { "644" };
                raw.push_str(&format!("file.{}={} {mode}\n", f.path, crate::template::sha256_hex(&f.content)));
            }
        }
        let raw = RawFacts::parse(&raw);
        (UpkeepFacts::parse(&raw), FileFacts::parse(&raw))
    }

    fn with_upkeep(upkeep: Upkeep, expires_at: Option<&str>) -> Config {
        Config {
            image: Some(ImageConfig { upkeep, ..ImageConfig::default() }),
            expires_at: expires_at.map(str::to_string),
            ..Config::default()
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
        let all = wanted(&with_upkeep(upkeep, Some("2026-12-02T03:04:05Z"))).unwrap();
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
        assert!(text("image-provision-prune.timer").contains("OnCalendar=daily\n"));
        assert!(text("image-provision-prune.service").contains("ExecStart=/usr/bin/docker image prune --force\n"));
        assert!(text("image-provision-expire.timer").contains("OnCalendar=2026-12-02 03:04:05 UTC\n"));
        assert!(text("image-provision-expire.service").contains("poweroff"));
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
        let before = with_upkeep(
            Upkeep { auto_update: Some("*-*-* 04:00:00 UTC".into()), ..Upkeep::default() },
            Some("2026-12-02T03:00:00Z"),
        );
        let (facts, files) = converged(&before);
        let after = with_upkeep(Upkeep::default(), Some("2026-12-02T08:00:00Z"));
        let cmds = plan(&facts, &files, &after).commands();
        let at =
            |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:?}"));
        assert!(at("disable --now image-provision-update.timer") < at("disable --now image-provision-update.service"));
        assert!(at("rm -f -- /etc/systemd/system/image-provision-update.timer") < at("daemon-reload"));
        assert!(at("upload /etc/systemd/system/image-provision-expire.timer") < at("daemon-reload"));
        assert!(at("daemon-reload") < at("systemctl restart image-provision-expire.timer"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("healthcheck")), "unchanged: {cmds:?}");
        // No stack and no expiry: nothing to keep.
        let none = Config { image: None, ..Config::default() };
        assert!(matches!(plan(&UpkeepFacts::default(), &FileFacts::default(), &none), Plan::Skip(_)));
        let bad = Config { expires_at: Some("tomorrow".into()), ..Config::default() };
        assert!(matches!(plan(&UpkeepFacts::default(), &FileFacts::default(), &bad), Plan::Refuse { .. }));
    }
}
