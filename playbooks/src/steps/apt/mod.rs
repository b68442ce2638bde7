//! The apt step: fresh package lists and the host's packages upgraded; and,
//! for every step that runs apt, an interrupted dpkg finished first
//! ([`repair_first`]).

use crate::apt_get::{apt_get, apt_update, dpkg_configure_pending};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;

pub const FACTS_SH: &str = include_str!("facts.sh");

pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/apt/facts.sh", FACTS_SH)
}

#[derive(Clone, Debug)]
pub struct AptFacts {
    /// dpkg was interrupted: `dpkg --configure -a` must run before apt installs.
    pub dpkg_interrupted: bool,
    /// Seconds since the package lists were last fetched; None if never.
    pub lists_age: Option<u64>,
    /// How many packages an upgrade would install; None if unknown.
    pub upgradable: Option<u64>,
}

impl AptFacts {
    pub fn parse(raw: &RawFacts) -> AptFacts {
        AptFacts {
            dpkg_interrupted: raw.yes("dpkg.interrupted"),
            lists_age: raw.number("apt.lists_age"),
            upgradable: raw.number("apt.upgradable"),
        }
    }
}

pub fn plan(facts: &AptFacts, cfg: &Config) -> Plan {
    let fresh = facts.lists_age.is_some_and(|age| age < cfg.apt_lists_max_age.as_secs());
    if fresh && facts.upgradable == Some(0) {
        let age = facts.lists_age.unwrap_or(0);
        return Plan::Ok(format!("package lists {age} s old, nothing to upgrade"));
    }
    let mut actions = Vec::new();
    if !fresh {
        actions.push(Action::Change(apt_update(cfg)));
    }
    actions.push(Action::Change(apt_get(cfg, &["upgrade"])));
    let why = match (fresh, facts.upgradable) {
        (false, _) => "package lists missing or stale".to_string(),
        (true, Some(n)) => format!("{n} packages to upgrade"),
        (true, None) => "package lists unreadable".to_string(),
    };
    Plan::Act { why, actions }
}

/// An interrupted dpkg (a connection cut during an install kills it) makes
/// apt refuse everything: a step that runs apt (`runs_apt`) finishes dpkg's
/// work first; the apt step itself (`is_apt_step`) does even when it has
/// nothing else to do.
pub fn repair_first(plan: Plan, facts: &AptFacts, is_apt_step: bool) -> Plan {
    if !facts.dpkg_interrupted {
        return plan;
    }
    let repair = "finish the interrupted dpkg run";
    match plan {
        Plan::Act { why, mut actions } => {
            actions.insert(0, Action::Change(dpkg_configure_pending()));
            Plan::Act { why: format!("{repair}, {why}"), actions }
        }
        Plan::Ok(_) if is_apt_step => {
            Plan::Act { why: repair.into(), actions: vec![Action::Change(dpkg_configure_pending())] }
        }
        plan => plan,
    }
}
