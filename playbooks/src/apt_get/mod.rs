//! apt for the steps that install packages (apt, docker, nvidia): apt-get
//! as the steps run it, the repositories they add (apt-source.sh) and the
//! facts about those repositories.

use std::collections::BTreeMap;

use image_provision_remote::Cmd;

use crate::facts::{FactsScript, RawFacts};
use crate::settings::Config;

pub const APT_SOURCE_SH: &str = include_str!("apt-source.sh");
pub const SOURCES_FACTS_SH: &str = include_str!("sources-facts.sh");

/// The stamp a successful `apt-get update` touches (Debian's and Ubuntu's
/// periodic updates touch it too). The lists' own mtimes are the mirror's
/// publish times, not when they were fetched, so they cannot tell how fresh
/// the lists are.
pub const APT_UPDATE_STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";

/// apt-get, non-interactive, keeping configuration files the host changed
/// (confold) and taking the package maintainer's where it did not
/// (confdef), waiting for the lock rather than failing on it.
pub fn apt_get(cfg: &Config, args: &[&str]) -> Cmd {
    Cmd::new("apt-get")
        .args(["-y", "-q", "-o"])
        .arg(format!("DPkg::Lock::Timeout={}", cfg.lock_timeout.as_secs()))
        .args(["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"])
        .args(args.iter().copied())
        .sudo()
        .env("DEBIAN_FRONTEND", "noninteractive")
        // Ubuntu's needrestart would otherwise ask which services to restart.
        .env("NEEDRESTART_MODE", "a")
}

/// `apt-get update`, touching [`APT_UPDATE_STAMP`] when it succeeds (apt's
/// own post-update hook list: a failed update leaves it alone).
pub fn apt_update(cfg: &Config) -> Cmd {
    apt_get(
        cfg,
        &[
            "-o",
            &format!("APT::Update::Post-Invoke-Success::=mkdir -p /var/lib/apt/periodic && touch {APT_UPDATE_STAMP}"),
            "update",
        ],
    )
}

/// Installs without recommends: the host needs these tools, not the
/// compilers and desktop bits their recommends pull in.
pub fn apt_install(cfg: &Config, packages: &[&str]) -> Cmd {
    let mut args = vec!["install", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt_get(cfg, &args)
}

/// `dpkg --configure -a`, non-interactive and keeping configuration files
/// like [`apt_get`]: what apt asks for after dpkg was interrupted.
pub fn dpkg_configure_pending() -> Cmd {
    Cmd::new("dpkg")
        .args(["--force-confdef", "--force-confold", "--configure", "-a"])
        .sudo()
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "a")
}

/// Add the repository `name` ("URI SUITE [COMPONENT...]") signed by the key at `key_url`.
pub fn add_source(name: &str, source: &str, key_url: &str) -> Cmd {
    Cmd::script(APT_SOURCE_SH)
        .named("apt-source.sh")
        .sudo()
        .env("NAME", name)
        .env("SOURCE", source)
        .env("KEY_URL", key_url)
}

/// The sources facts script.
pub fn facts_script() -> FactsScript {
    FactsScript::new("apt_get/sources-facts.sh", SOURCES_FACTS_SH)
}

/// The repositories [`add_source`] wrote: name, and the `deb` line in its file.
#[derive(Clone, Debug, Default)]
pub struct SourceFacts {
    lines: BTreeMap<String, String>,
}

impl SourceFacts {
    pub fn parse(raw: &RawFacts) -> SourceFacts {
        SourceFacts {
            lines: raw.with_prefix("source.").map(|(name, line)| (name.to_string(), line.to_string())).collect(),
        }
    }

    /// The repository `name` is there with exactly `source`.
    pub fn has(&self, name: &str, source: &str) -> bool {
        self.lines
            .get(name)
            .is_some_and(|l| *l == format!("deb [signed-by=/etc/apt/keyrings/image-provision-{name}.asc] {source}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn apt_waits_for_the_lock_as_long_as_configured() {
        let cfg = Config { lock_timeout: Duration::from_secs(42), ..Config::default() };
        assert!(apt_get(&cfg, &["update"]).argv().contains(&"DPkg::Lock::Timeout=42"));
    }

    /// The line apt-source.sh writes is the line the facts compare with.
    #[test]
    fn a_source_is_there_as_apt_source_writes_it() {
        assert!(
            APT_SOURCE_SH.contains("line=\"deb [signed-by=$keyring] $SOURCE\""),
            "apt-source.sh's deb line changed"
        );
        let raw = RawFacts::parse(
            "source.docker=deb [signed-by=/etc/apt/keyrings/image-provision-docker.asc] https://d bookworm stable\n",
        );
        let sources = SourceFacts::parse(&raw);
        assert!(sources.has("docker", "https://d bookworm stable"));
        assert!(
            !sources.has("docker", "https://d trixie stable") && !sources.has("nvidia", "https://d bookworm stable")
        );
    }
}
