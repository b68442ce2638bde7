//! The host's facts every step reads: the distribution (and the [`Family`]
//! the steps handle it as), the SSH user and how it gets root, the GPU, and
//! which of the steps' packages are installed.

use std::collections::BTreeMap;

use crate::facts::{FactsScript, RawFacts};

pub const FACTS_SH: &str = include_str!("facts.sh");

/// The host facts of a Debian 12 server with an A10G, its user admin with
/// passwordless sudo: the start of the steps' test facts.
#[cfg(test)]
pub(crate) const DEBIAN12_A10G: &str = "os.id=debian\nos.version=12\nos.codename=bookworm\n\
    os.pretty=Debian GNU/Linux 12 (bookworm)\nuser=admin\nsudo=nopasswd\n\
    gpu=00:1e.0 3D controller [0302]: NVIDIA Corporation GA102GL [A10G] [10de:2237]\n";

/// The host facts script (input PACKAGES: the names the steps watch).
pub fn facts_script() -> FactsScript {
    FactsScript::new("host_facts/facts.sh", FACTS_SH)
}

/// How the SSH user gets root (reported by the prelude's run_root_facts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sudo {
    Root,
    NoPassword,
    NeedsPassword,
    Missing,
}

/// The families the steps know how to handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ubuntu,
    Debian,
}

#[derive(Clone, Debug)]
pub struct HostFacts {
    pub os_id: String,
    pub os_version: String,
    pub codename: String,
    /// PRETTY_NAME, or ID and VERSION_ID.
    pub pretty: String,
    pub user: String,
    pub sudo: Sudo,
    /// The lspci line of the first NVIDIA display or 3D controller.
    pub gpu: Option<String>,
    /// Installed versions of the watched packages that are installed.
    pub packages: BTreeMap<String, String>,
    /// The watched packages held (apt-mark hold): upgrades leave them.
    pub held: Vec<String>,
}

impl HostFacts {
    pub fn parse(raw: &RawFacts) -> HostFacts {
        let os_id = raw.get("os.id").unwrap_or_default().to_string();
        let os_version = raw.get("os.version").unwrap_or_default().to_string();
        HostFacts {
            pretty: raw.string("os.pretty").unwrap_or_else(|| format!("{os_id} {os_version}")),
            codename: raw.get("os.codename").unwrap_or_default().to_string(),
            os_id,
            os_version,
            user: raw.get("user").unwrap_or_default().to_string(),
            sudo: match raw.get("sudo") {
                Some("root") => Sudo::Root,
                Some("nopasswd") => Sudo::NoPassword,
                Some("password") => Sudo::NeedsPassword,
                _ => Sudo::Missing,
            },
            gpu: raw.string("gpu"),
            packages: raw
                .with_prefix("pkg.")
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, version)| (name.to_string(), version.to_string()))
                .collect(),
            held: raw.with_prefix("held.").filter(|(_, v)| *v == "yes").map(|(name, _)| name.to_string()).collect(),
        }
    }

    pub fn installed(&self, package: &str) -> bool {
        self.packages.contains_key(package)
    }

    pub fn held(&self, package: &str) -> bool {
        self.held.iter().any(|p| p == package)
    }

    pub fn is_root(&self) -> bool {
        self.sudo == Sudo::Root
    }

    /// Supported: Ubuntu 22.04 and 24.04, Debian 12. With `force`, anything
    /// else is treated as Debian (Ubuntu's other releases as Ubuntu).
    pub fn family(&self, force: bool) -> Result<Family, String> {
        match (self.os_id.as_str(), self.os_version.as_str()) {
            ("ubuntu", "22.04" | "24.04") => Ok(Family::Ubuntu),
            ("debian", "12") => Ok(Family::Debian),
            ("ubuntu", _) if force => Ok(Family::Ubuntu),
            (_, _) if force => Ok(Family::Debian),
            _ => Err(format!(
                "{} is not supported: image-provision bootstraps Ubuntu 22.04, Ubuntu 24.04 and Debian 12",
                self.pretty
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_host() {
        let h = HostFacts::parse(&RawFacts::parse(
            "os.id=ubuntu\nos.version=22.04\nsudo=nopasswd\npkg.git=1:2.34\ngpu=\nuser=ubuntu\n",
        ));
        assert_eq!(h.family(false), Ok(Family::Ubuntu));
        assert_eq!(h.sudo, Sudo::NoPassword);
        assert_eq!(h.packages.get("git").map(String::as_str), Some("1:2.34"));
        assert!(h.installed("git") && !h.installed("jq"));
        assert_eq!(h.gpu, None);
        assert_eq!(h.pretty, "ubuntu 22.04");
        let centos = HostFacts::parse(&RawFacts::parse("os.id=centos\nos.version=9\n"));
        assert!(centos.family(false).is_err());
        assert_eq!(centos.family(true), Ok(Family::Debian));
    }
}
