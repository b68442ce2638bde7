//! The ready step: waits until the host is ready for apt (cloud-init done,
//! the dpkg and apt locks free), under time limits (wait-ready.sh).

use image_provision_remote::Cmd;

use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const WAIT_READY_SH: &str = include_str!("wait-ready.sh");

pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/ready/facts.sh", FACTS_SH)
}

#[derive(Clone, Debug)]
pub struct ReadyFacts {
    /// cloud-init's status ("done", "running", ...), "absent" without it.
    pub cloud_init: String,
    /// The dpkg/apt lock files someone holds.
    pub apt_locked: Option<String>,
}

impl ReadyFacts {
    pub fn parse(raw: &RawFacts) -> ReadyFacts {
        ReadyFacts {
            cloud_init: raw.get("cloud_init").unwrap_or("absent").to_string(),
            apt_locked: raw.string("apt.locked"),
        }
    }
}

pub fn plan(facts: &ReadyFacts, cfg: &Config) -> Plan {
    let cloud_init = facts.cloud_init.as_str();
    let cloud_init_done = matches!(cloud_init, "absent" | "done" | "disabled");
    if cloud_init_done && facts.apt_locked.is_none() {
        let what =
            if cloud_init == "absent" { "no cloud-init".to_string() } else { format!("cloud-init {cloud_init}") };
        return Plan::Ok(format!("{what}; dpkg and apt locks free"));
    }
    let why = match &facts.apt_locked {
        Some(l) if !cloud_init_done => format!("cloud-init {cloud_init}; {l} held"),
        Some(l) => format!("{l} held"),
        None => format!("cloud-init {cloud_init}"),
    };
    let cmd = Cmd::script(WAIT_READY_SH)
        .named("wait-ready.sh")
        .sudo()
        .env("CLOUD_INIT_TIMEOUT", cfg.cloud_init_timeout.as_secs().to_string())
        .env("LOCK_TIMEOUT", cfg.lock_timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(cfg.cloud_init_timeout + cfg.lock_timeout));
    Plan::Act { why: format!("waiting: {why}"), actions: vec![Action::Check(cmd)] }
}
