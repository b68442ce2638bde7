//! `ami bake`'s host side: what the image will hold (the clone's commit,
//! the driver branch, each service's image digest), and what must not be
//! shared held off the disk while the image is taken, then put back
//! (bake-hold.sh, which says why each thing and how a cut is recovered).

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::bring_up::STACK_RECORD_SH;
use crate::facts::RawFacts;
use crate::shell::with_libraries;
use crate::steps::llm::VLLM;

pub const BAKE_HOLD_SH: &str = include_str!("bake-hold.sh");

/// Where the hold lives: tmpfs, never on the volume a snapshot copies.
pub const HOLD_DIR: &str = "/run/image-provision/bake-hold";
/// The record of a hold, on the disk: names only, no contents.
pub const RECORD: &str = "/var/lib/image-provision/bake/held";

/// bake-hold.sh as sent: stack-record.sh (its `stack_record`) in front.
pub fn script() -> String {
    with_libraries(&[STACK_RECORD_SH], BAKE_HOLD_SH)
}

/// One of bake-hold.sh's actions, as root. Each is quick (moves on one
/// disk, into RAM): a minute is far more than any takes.
fn command(action: &str, base_dir: &str, login_user: &str) -> Cmd {
    Cmd::script(script())
        .named(format!("bake-hold.sh {action}"))
        .sudo()
        .env("ACTION", action)
        .env("BASE_DIR", base_dir)
        .env("LOGIN_USER", login_user)
        .env("LLM_DIR", VLLM.dir)
        .time_limit(Duration::from_secs(120))
}

pub fn facts_command(base_dir: &str, login_user: &str) -> Cmd {
    command("facts", base_dir, login_user)
}

/// `watchdog`: after this long the host puts everything back by itself
/// (the tool cut off, and no new SSH connection possible without the host
/// keys).
pub fn hold_command(base_dir: &str, login_user: &str, watchdog: Duration) -> Cmd {
    command("hold", base_dir, login_user).env("HOLD_LIMIT", watchdog.as_secs().to_string())
}

pub fn restore_command(base_dir: &str, login_user: &str) -> Cmd {
    command("restore", base_dir, login_user)
}

/// What the facts action reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BakeFacts {
    pub repo_commit: String,
    /// None: no NVIDIA driver installed.
    pub driver_branch: Option<String>,
    /// (service, `sha256:...`), sorted by service.
    pub digests: Vec<(String, String)>,
    /// A hold not yet put back is recorded on the host.
    pub held: bool,
}

impl BakeFacts {
    pub fn parse(text: &str) -> BakeFacts {
        let raw = RawFacts::parse(text);
        let mut digests: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("digest "))
            .filter_map(|rest| rest.split_once(' '))
            .filter(|(_, d)| d.starts_with("sha256:"))
            .map(|(s, d)| (s.to_owned(), d.to_owned()))
            .collect();
        digests.sort();
        BakeFacts {
            repo_commit: raw.get("repo.commit").unwrap_or("unknown").to_owned(),
            driver_branch: raw.get("driver.branch").filter(|b| *b != "none" && !b.is_empty()).map(str::to_owned),
            digests,
            held: raw.yes("held.record"),
        }
    }
}

/// What the restore action reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// `restored`, `nothing-held` or `foreign-record-removed`.
    pub state: String,
    pub back: u64,
    /// Paths the hold no longer had (a reboot emptied /run).
    pub lost: Vec<String>,
}

impl Restored {
    pub fn parse(text: &str) -> Restored {
        let raw = RawFacts::parse(text);
        Restored {
            state: raw.get("restore.state").unwrap_or_default().to_owned(),
            back: raw.number("restore.back").unwrap_or(0),
            lost: raw.all("restore.lost").map(str::to_owned).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_parse_digests_and_the_driver() {
        let f = BakeFacts::parse(
            "repo.commit=abc\ndriver.branch=570-server\ndigest orchestrator sha256:12ab\ndigest b bad\nheld.record=no\n",
        );
        assert_eq!(f.repo_commit, "abc");
        assert_eq!(f.driver_branch.as_deref(), Some("570-server"));
        assert_eq!(f.digests, vec![("orchestrator".to_owned(), "sha256:12ab".to_owned())]);
        assert!(!f.held);
        assert_eq!(BakeFacts::parse("driver.branch=none\n").driver_branch, None);
    }

    #[test]
    fn restored_names_what_was_lost() {
        let r = Restored::parse("restore.lost=/a\nrestore.lost=/b\nrestore.back=3\nrestore.state=restored\n");
        assert_eq!(r.lost, ["/a", "/b"]);
        assert_eq!(r.back, 3);
        assert_eq!(r.state, "restored");
    }
}
