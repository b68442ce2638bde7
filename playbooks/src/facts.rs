//! Facts: what the host is and has, read by one script in one round trip
//! (scripts/facts.sh prints `key=value` lines) and parsed here.

use std::collections::BTreeMap;

use image_provision_remote::Cmd;

pub const FACTS_SH: &str = include_str!("../scripts/facts.sh");

/// Every package any step asks about (the facts script reports which are
/// installed).
pub const WATCHED_PACKAGES: &[&str] = &[
    "git",
    "python3-pip",
    "jq",
    "curl",
    "ca-certificates",
    "docker.io",
    "docker-compose-v2",
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-compose-plugin",
    "nvidia-container-toolkit",
    "nvidia-driver",
];

/// facts.sh (with the rewrite of Debian's sources lists it shares with
/// debian-components.sh in front), then `more` (further facts scripts), then
/// the call that runs the root parts (`root`: functions the scripts define)
/// in one sudo.
pub fn script(more: &[&str], root: &[&str]) -> String {
    let mut text = crate::shlib::with(&[crate::shlib::DEBIAN_SOURCES_REWRITE_SH], FACTS_SH);
    for part in more {
        text.push('\n');
        text.push_str(part);
    }
    text.push_str("\nrun_root_facts docker_root_facts");
    for f in root {
        text.push(' ');
        text.push_str(f);
    }
    text.push('\n');
    text
}

/// facts.sh with image-facts.sh after it, whose image_facts runs as root.
pub fn script_with_image() -> String {
    script(&[&crate::image::image_facts_script()], &["image_facts"])
}

/// The facts command. `extra` are further package names (the configured
/// driver package).
pub fn command(extra: &[String]) -> Cmd {
    let mut names: Vec<String> = WATCHED_PACKAGES.iter().map(|s| s.to_string()).collect();
    names.extend(extra.iter().cloned());
    Cmd::script(script(&[], &[]))
        .named("facts.sh")
        .env("PACKAGES", names.join(" "))
        .env("DEBIAN_COMPONENTS", crate::steps::DEBIAN_NVIDIA_COMPONENTS)
}

/// The facts command for a configuration: facts.sh, and with the IMAGE steps
/// image-facts.sh after it, in the same round trip.
pub fn command_for(cfg: &crate::steps::Config) -> Cmd {
    let extra = vec![format!("nvidia-driver-{}", cfg.nvidia_driver_branch)];
    let Some(img) = &cfg.image else {
        return command(&extra);
    };
    let mut names: Vec<String> = WATCHED_PACKAGES.iter().map(|s| s.to_string()).collect();
    names.extend(extra);
    let cmd = Cmd::script(script_with_image())
        .named("facts.sh")
        .env("PACKAGES", names.join(" "))
        .env("DEBIAN_COMPONENTS", crate::steps::DEBIAN_NVIDIA_COMPONENTS)
        .env("BASE_DIR", &img.base_dir)
        .env("FILES", img.watched_files().join(" "));
    // The HTTPS check goes to the host's own Traefik, at HTTPS_ADDR.
    match img.health_url() {
        Some(url) => cmd.env("HEALTH_URL", url).env("HTTPS_ADDR", img.https_addr.to_string()),
        None => cmd,
    }
}

/// How the SSH user gets root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sudo {
    Root,
    NoPassword,
    NeedsPassword,
    Missing,
}

#[derive(Clone, Debug, Default)]
pub struct Facts {
    raw: BTreeMap<String, String>,
}

impl Facts {
    pub fn parse(text: &str) -> Facts {
        let raw = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Facts { raw }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn yes(&self, key: &str) -> bool {
        self.get(key) == Some("yes")
    }

    pub fn os_id(&self) -> &str {
        self.get("os.id").unwrap_or("")
    }
    pub fn os_version(&self) -> &str {
        self.get("os.version").unwrap_or("")
    }
    pub fn codename(&self) -> &str {
        self.get("os.codename").unwrap_or("")
    }
    pub fn pretty(&self) -> String {
        self.get("os.pretty")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} {}", self.os_id(), self.os_version()))
    }
    pub fn user(&self) -> &str {
        self.get("user").unwrap_or("")
    }
    pub fn boot_id(&self) -> &str {
        self.get("boot_id").unwrap_or("")
    }
    pub fn sudo(&self) -> Sudo {
        match self.get("sudo") {
            Some("root") => Sudo::Root,
            Some("nopasswd") => Sudo::NoPassword,
            Some("password") => Sudo::NeedsPassword,
            _ => Sudo::Missing,
        }
    }
    /// The lspci line of the first NVIDIA display or 3D controller.
    pub fn gpu(&self) -> Option<&str> {
        self.get("gpu")
    }
    /// The installed version of `name`, if installed.
    pub fn package(&self, name: &str) -> Option<&str> {
        self.get(&format!("pkg.{name}"))
    }
    pub fn installed(&self, name: &str) -> bool {
        self.package(name).is_some()
    }
    pub fn cloud_init(&self) -> &str {
        self.get("cloud_init").unwrap_or("absent")
    }
    pub fn apt_locked(&self) -> Option<&str> {
        self.get("apt.locked")
    }
    /// The apt sources files with entries of Debian's archive that lack one
    /// of [`crate::steps::DEBIAN_NVIDIA_COMPONENTS`].
    pub fn debian_components_lacking(&self) -> Vec<&str> {
        self.get("apt.debian_components_lacking").map(|v| v.split(' ').collect()).unwrap_or_default()
    }
    /// dpkg was interrupted: `dpkg --configure -a` must run before apt installs.
    pub fn dpkg_interrupted(&self) -> bool {
        self.yes("dpkg.interrupted")
    }
    /// Seconds since the package lists were last fetched; None if never.
    pub fn apt_lists_age(&self) -> Option<u64> {
        self.get("apt.lists_age").and_then(|v| v.parse().ok())
    }
    pub fn apt_upgradable(&self) -> Option<u64> {
        self.get("apt.upgradable").and_then(|v| v.parse().ok())
    }
    /// The `deb ...` line of /etc/apt/sources.list.d/image-provision-NAME.list.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.get(&format!("source.{name}"))
    }
    pub fn docker_version(&self) -> Option<&str> {
        self.get("docker.version")
    }
    /// `docker compose version` output, if the v2 plugin answers.
    pub fn compose(&self) -> Option<&str> {
        self.get("docker.compose").filter(|v| v.contains("v2") || v.contains(" 2."))
    }
    pub fn docker_enabled(&self) -> bool {
        self.get("docker.enabled") == Some("enabled")
    }
    pub fn docker_active(&self) -> bool {
        self.get("docker.active") == Some("active")
    }
    /// The SSH user can reach the Docker daemon in this session, without sudo.
    pub fn docker_user_access(&self) -> bool {
        self.yes("docker.user_access")
    }
    /// Members of the docker group in /etc/group.
    pub fn docker_group_has(&self, user: &str) -> bool {
        self.get("docker.group")
            .is_some_and(|m| m.split(',').any(|u| u == user))
    }
    pub fn session_groups(&self) -> Vec<&str> {
        self.get("groups.session").map(|g| g.split(' ').collect()).unwrap_or_default()
    }
    pub fn docker_runtimes(&self) -> Option<&str> {
        self.get("docker.runtimes").filter(|r| *r != "null")
    }
    /// The running daemon lists the nvidia runtime.
    pub fn docker_has_nvidia_runtime(&self) -> bool {
        self.docker_runtimes().is_some_and(|r| r.contains("\"nvidia\""))
    }
    pub fn daemon_json_nvidia(&self) -> bool {
        self.yes("docker.daemon_json_nvidia")
    }
    /// What nvidia-smi reports (`name, driver, memory`) when the driver works.
    pub fn nvidia_smi(&self) -> Option<&str> {
        self.get("nvidia.smi")
    }
    pub fn nvidia_smi_error(&self) -> Option<&str> {
        self.get("nvidia.smi_error")
    }
    pub fn reboot_required(&self) -> bool {
        self.yes("reboot_required")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_values() {
        let f = Facts::parse(
            "os.id=ubuntu\nos.version=22.04\nsudo=nopasswd\npkg.git=1:2.34\ndocker.group=ubuntu,bob\n\
             docker.runtimes={\"nvidia\":{},\"runc\":{}}\nnvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\ngpu=\n",
        );
        assert_eq!(f.os_id(), "ubuntu");
        assert_eq!(f.sudo(), Sudo::NoPassword);
        assert_eq!(f.package("git"), Some("1:2.34"));
        assert!(!f.installed("jq"));
        assert!(f.docker_group_has("bob") && !f.docker_group_has("bo"));
        assert!(f.docker_has_nvidia_runtime());
        assert_eq!(f.gpu(), None);
        assert_eq!(f.nvidia_smi(), Some("NVIDIA A10G, 535.230.02, 23028 MiB"));
    }
}
