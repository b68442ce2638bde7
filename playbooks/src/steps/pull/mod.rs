//! The pull step: starts pulling the stack's images in the background as
//! soon as the layout exists (start-pull.sh), so the longest wait of a
//! bootstrap overlaps the driver install and the reboot. The stack step
//! waits for it (wait-pull.sh).

use image_provision_remote::Cmd;
use std::time::Duration;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::ImageConfig;
use crate::steps::layout::{self, LayoutFacts};
use crate::template::sha256_hex;

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const START_PULL_SH: &str = include_str!("start-pull.sh");
pub const WAIT_PULL_SH: &str = include_str!("wait-pull.sh");

pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/pull/facts.sh", FACTS_SH).root(&["pull_facts"])
}

/// The background pull.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PullFacts {
    #[default]
    NotStarted,
    Running,
    /// Ended with this exit code, for the .env of this sha256.
    Done {
        code: String,
        env_sha: String,
    },
}

impl PullFacts {
    pub fn parse(raw: &RawFacts) -> PullFacts {
        match raw.get("pull.state") {
            Some("running") => PullFacts::Running,
            Some(done) => match done.strip_prefix("done ").and_then(|r| r.split_once(' ')) {
                Some((code, sha)) => PullFacts::Done { code: code.into(), env_sha: sha.into() },
                None => PullFacts::NotStarted,
            },
            None => PullFacts::NotStarted,
        }
    }
}

/// Wait for the background pull to end, at most `timeout`.
pub fn wait_command(timeout: Duration) -> Cmd {
    Cmd::script(WAIT_PULL_SH)
        .named("wait-pull.sh")
        .sudo()
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout))
}

/// `deployed`: the stack is up with these settings (the stack step's facts).
pub fn plan(
    docker_gid: Option<&str>,
    layout: &LayoutFacts,
    containers: &Containers,
    deployed: bool,
    pull: &PullFacts,
    img: &ImageConfig,
) -> Plan {
    if !layout.cloned || !containers.listed {
        return Plan::Pending("the clone and a running Docker come first".into());
    }
    if deployed {
        return Plan::Ok("the stack is up with these settings (`update` pulls newer images)".into());
    }
    // The pull is for this .env: a pull done for other settings is done again.
    let want = docker_gid.map(|gid| sha256_hex(layout::env_text(img, gid))).unwrap_or_default();
    match pull {
        PullFacts::Running => return Plan::Ok("already pulling in the background".into()),
        PullFacts::Done { code, env_sha } if code == "0" && *env_sha == want => {
            return Plan::Ok("images pulled".into());
        }
        _ => {}
    }
    Plan::Act {
        why: format!(
            "start pulling the IMAGE images in the background (log {}/.image-provision/pull.log)",
            img.base_dir
        ),
        actions: vec![Action::Change(
            Cmd::script(START_PULL_SH)
                .named("start-pull.sh")
                .sudo()
                .env("BASE_DIR", &img.base_dir)
                .env("ENV_SHA", want),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_states() {
        let state = |s: &str| PullFacts::parse(&RawFacts::parse(&format!("pull.state={s}\n")));
        assert_eq!(state("running"), PullFacts::Running);
        assert_eq!(state("none"), PullFacts::NotStarted);
        assert_eq!(state("done 0 abc"), PullFacts::Done { code: "0".into(), env_sha: "abc".into() });
        assert_eq!(state("done 1"), PullFacts::NotStarted);
    }
}
