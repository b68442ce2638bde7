//! The bootstrap steps. Each one reads the facts and returns a [`Plan`]:
//! already so (with why), skipped (with why), refused, or the commands that
//! close the gap. Planning never touches the host, so a dry run is "plan,
//! print, stop", and tests compare plans with exact commands.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::facts::{Facts, Sudo};
use crate::image::{self, ImageConfig};

pub const WAIT_READY_SH: &str = include_str!("../scripts/wait-ready.sh");
pub const APT_SOURCE_SH: &str = include_str!("../scripts/apt-source.sh");
pub const DEBIAN_COMPONENTS_SH: &str = include_str!("../scripts/debian-components.sh");

/// What Debian's archive entries need for the NVIDIA driver: nvidia-driver is
/// in non-free, its firmware in non-free-firmware, some helpers in contrib.
pub const DEBIAN_NVIDIA_COMPONENTS: &str = "contrib non-free non-free-firmware";

/// debian-components.sh, with the rewrite of Debian's sources lists it
/// shares with facts.sh in front.
pub fn debian_components_script() -> String {
    crate::shlib::with(&[crate::shlib::DEBIAN_SOURCES_REWRITE_SH], DEBIAN_COMPONENTS_SH)
}

/// Every script the binary sends, by name, as it is sent: with the
/// libraries (scripts/lib) put in front of it, and the facts scripts
/// composed as the facts commands compose them (image-facts.sh after
/// facts.sh, verify-facts.sh after both). Then each library alone, by its
/// path under scripts/. The tests run shellcheck over each.
pub fn scripts() -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("facts.sh", crate::facts::script(&[], &[])),
        ("wait-ready.sh", WAIT_READY_SH.to_string()),
        ("apt-source.sh", APT_SOURCE_SH.to_string()),
        ("debian-components.sh", debian_components_script()),
        ("image-facts.sh", crate::facts::script_with_image()),
        ("clone.sh", crate::image::CLONE_SH.to_string()),
        ("env-files.sh", crate::image::env_files_script()),
        ("start-pull.sh", crate::image::START_PULL_SH.to_string()),
        ("wait-pull.sh", crate::image::WAIT_PULL_SH.to_string()),
        ("stack-up.sh", crate::image::stack_up_script()),
        ("health.sh", crate::image::HEALTH_SH.to_string()),
        ("verify-facts.sh", crate::verify::facts_script()),
        ("update.sh", crate::verify::update_script()),
    ];
    all.extend(crate::shlib::LIBRARIES.iter().map(|(name, text)| (*name, text.to_string())));
    all
}

/// What the person asked for, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// False with --no-gpu: the NVIDIA steps are skipped.
    pub gpu: bool,
    /// Go on with a distribution we do not support.
    pub force_distro: bool,
    /// Ubuntu's server driver branch: `nvidia-driver-{branch}`.
    pub nvidia_driver_branch: String,
    /// NVIDIA container toolkit apt source, "URI SUITE [COMPONENT...]".
    pub nvidia_repo: String,
    pub nvidia_repo_key: String,
    /// Docker's apt source for Debian ({codename} is replaced).
    pub docker_repo: String,
    pub docker_repo_key: String,
    pub cloud_init_timeout: Duration,
    pub lock_timeout: Duration,
    pub reboot_timeout: Duration,
    /// Package lists younger than this are not fetched again.
    pub apt_lists_max_age: Duration,
    /// The IMAGE steps (layout, pull, traefik, stack, health); None with
    /// --no-stack: the run ends at part 1's GPU check.
    pub image: Option<ImageConfig>,
}

pub const DEFAULT_NVIDIA_DRIVER_BRANCH: &str = "535-server";
pub const DEFAULT_NVIDIA_REPO: &str = "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /";
pub const DEFAULT_NVIDIA_REPO_KEY: &str = "https://nvidia.github.io/libnvidia-container/gpgkey";
pub const DEFAULT_DOCKER_REPO: &str = "https://download.docker.com/linux/debian {codename} stable";
pub const DEFAULT_DOCKER_REPO_KEY: &str = "https://download.docker.com/linux/debian/gpg";

impl Default for Config {
    fn default() -> Self {
        Config {
            gpu: true,
            force_distro: false,
            nvidia_driver_branch: DEFAULT_NVIDIA_DRIVER_BRANCH.into(),
            nvidia_repo: DEFAULT_NVIDIA_REPO.into(),
            nvidia_repo_key: DEFAULT_NVIDIA_REPO_KEY.into(),
            docker_repo: DEFAULT_DOCKER_REPO.into(),
            docker_repo_key: DEFAULT_DOCKER_REPO_KEY.into(),
            cloud_init_timeout: Duration::from_secs(600),
            lock_timeout: Duration::from_secs(600),
            reboot_timeout: Duration::from_secs(600),
            apt_lists_max_age: Duration::from_secs(3600),
            image: Some(ImageConfig::default()),
        }
    }
}

/// The families the steps know how to handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ubuntu,
    Debian,
}

/// Supported: Ubuntu 22.04 and 24.04, Debian 12. With --force-distro,
/// anything whose ID (or ID_LIKE) is Debian-ish is treated as Debian.
pub fn family(facts: &Facts, force: bool) -> Result<Family, String> {
    match (facts.os_id(), facts.os_version()) {
        ("ubuntu", "22.04" | "24.04") => Ok(Family::Ubuntu),
        ("debian", "12") => Ok(Family::Debian),
        ("ubuntu", _) if force => Ok(Family::Ubuntu),
        (_, _) if force => Ok(Family::Debian),
        _ => Err(format!(
            "{} is not supported: image-provision bootstraps Ubuntu 22.04, Ubuntu 24.04 and Debian 12",
            facts.pretty()
        )),
    }
}

/// One thing a step does.
#[derive(Clone, Debug)]
pub enum Action {
    /// A command that changes the host.
    Change(Cmd),
    /// A command that only waits or checks (a step that ran nothing else is
    /// still ok).
    Check(Cmd),
    /// Open a new SSH connection (so a new group membership applies).
    Reconnect,
    /// Reboot and wait for the new boot.
    Reboot,
    /// Write a file atomically (as root, via the session's upload). `secret`:
    /// its content is credentials (only the path, size and mode are shown).
    Upload { path: String, content: Vec<u8>, mode: u32, secret: bool },
}

impl Action {
    /// How a dry run shows it.
    pub fn describe(&self, user_is_root: bool) -> String {
        match self {
            Action::Change(c) => c.redacted(user_is_root),
            Action::Check(c) => format!("{} (check)", c.redacted(user_is_root)),
            Action::Reconnect => "reconnect over SSH (new group membership)".into(),
            Action::Reboot => "reboot and wait for the new boot".into(),
            Action::Upload { path, content, mode, secret } => format!(
                "upload {path} ({} bytes, mode {mode:04o}{})",
                content.len(),
                if *secret { ", secret" } else { "" }
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Plan {
    /// Already so; why.
    Ok(String),
    /// Not for this host; why.
    Skip(String),
    /// Cannot go on: message and what to do. `usage`: the person's input is
    /// the problem (exit 2).
    Refuse { message: String, hint: String, usage: bool },
    /// Close the gap: why, then what.
    Act { why: String, actions: Vec<Action> },
    /// Needs what an earlier step makes (a dry run, where it was not made):
    /// what is missing.
    Pending(String),
}

/// The steps in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Facts,
    Ready,
    Apt,
    Docker,
    Nvidia,
    Reboot,
    Verify,
    Layout,
    Pull,
    Traefik,
    Stack,
    Health,
}

impl Step {
    /// In the order they run. The layout and the background pull come right
    /// after Docker, so the pull (the longest wait) overlaps the driver
    /// install; Traefik and the stack come after the reboot.
    pub const ALL: [Step; 12] = [
        Step::Facts,
        Step::Ready,
        Step::Apt,
        Step::Docker,
        Step::Layout,
        Step::Pull,
        Step::Nvidia,
        Step::Reboot,
        Step::Verify,
        Step::Traefik,
        Step::Stack,
        Step::Health,
    ];

    /// The IMAGE steps (not run with --no-stack).
    pub fn is_image(self) -> bool {
        matches!(self, Step::Layout | Step::Pull | Step::Traefik | Step::Stack | Step::Health)
    }

    /// The steps this configuration runs, in order.
    pub fn for_config(cfg: &Config) -> Vec<Step> {
        Step::ALL.into_iter().filter(|s| cfg.image.is_some() || !s.is_image()).collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Facts => "facts",
            Step::Ready => "ready",
            Step::Apt => "apt",
            Step::Docker => "docker",
            Step::Nvidia => "nvidia",
            Step::Reboot => "reboot",
            Step::Verify => "verify",
            Step::Layout => "layout",
            Step::Pull => "pull",
            Step::Traefik => "traefik",
            Step::Stack => "stack",
            Step::Health => "health",
        }
    }

    pub fn plan(self, facts: &Facts, cfg: &Config) -> Plan {
        // Every step after the first needs a supported distro and root; the
        // first reports why not.
        let fam = match family(facts, cfg.force_distro) {
            Ok(f) => f,
            Err(message) => {
                return Plan::Refuse {
                    message,
                    hint: "use a supported image, or pass --force-distro to try anyway (at your own risk)".into(),
                    usage: true,
                };
            }
        };
        if let Some(refusal) = sudo_refusal(facts) {
            return refusal;
        }
        let plan = match self {
            Step::Facts => plan_facts(facts, cfg),
            Step::Ready => plan_ready(facts, cfg),
            Step::Apt => plan_apt(facts, cfg),
            Step::Docker => plan_docker(facts, cfg, fam),
            Step::Nvidia => plan_nvidia(facts, cfg, fam),
            Step::Reboot => plan_reboot(facts, cfg, false),
            Step::Verify => plan_verify(facts, cfg),
            Step::Layout | Step::Pull | Step::Traefik | Step::Stack | Step::Health => {
                let Some(img) = &cfg.image else {
                    return Plan::Skip("--no-stack".into());
                };
                match self {
                    Step::Layout => image::plan_layout(facts, img),
                    Step::Pull => image::plan_pull(facts, img),
                    Step::Traefik => image::plan_traefik(facts, img),
                    Step::Stack => image::plan_stack(facts, img),
                    _ => image::plan_health(facts, img),
                }
            }
        };
        // An interrupted dpkg (a connection cut during an install kills it)
        // makes apt refuse everything: every step that runs apt finishes
        // dpkg's work first.
        if !facts.dpkg_interrupted() || !matches!(self, Step::Apt | Step::Docker | Step::Nvidia) {
            return plan;
        }
        let repair = "finish the interrupted dpkg run";
        match plan {
            Plan::Act { why, mut actions } => {
                actions.insert(0, Action::Change(dpkg_configure_pending()));
                Plan::Act { why: format!("{repair}, {why}"), actions }
            }
            Plan::Ok(_) if self == Step::Apt => Plan::Act {
                why: repair.into(),
                actions: vec![Action::Change(dpkg_configure_pending())],
            },
            plan => plan,
        }
    }
}

fn sudo_refusal(facts: &Facts) -> Option<Plan> {
    let user = facts.user();
    let (message, hint) = match facts.sudo() {
        Sudo::Root | Sudo::NoPassword => return None,
        Sudo::NeedsPassword => (
            format!("{user} cannot use sudo without a password, and bootstrap runs unattended"),
            format!(
                "allow it (a sudoers line `{user} ALL=(ALL) NOPASSWD:ALL`, e.g. in /etc/sudoers.d/90-{user}) or connect as root"
            ),
        ),
        Sudo::Missing => (
            format!("{user} is not root and sudo is not installed"),
            "connect as root, or install sudo and give the user passwordless sudo".into(),
        ),
    };
    Some(Plan::Refuse { message, hint, usage: false })
}

fn plan_facts(facts: &Facts, cfg: &Config) -> Plan {
    let how = match facts.sudo() {
        Sudo::Root => "as root".to_string(),
        _ => format!("as {} with passwordless sudo", facts.user()),
    };
    let gpu = match (facts.gpu(), cfg.gpu) {
        (_, false) => "GPU steps off (--no-gpu)".to_string(),
        (Some(g), true) => format!("GPU: {}", gpu_name(g)),
        (None, true) => "no NVIDIA GPU found".to_string(),
    };
    let forced = if family(facts, false).is_err() { " (forced)" } else { "" };
    Plan::Ok(format!("{}{forced}, {how}, {gpu}", facts.pretty()))
}

/// "NVIDIA Corporation GA102GL [A10G] [10de:2237]" from an lspci -nn line.
fn gpu_name(lspci: &str) -> &str {
    lspci.split_once(": ").map(|(_, rest)| rest).unwrap_or(lspci).trim()
}

fn plan_ready(facts: &Facts, cfg: &Config) -> Plan {
    let cloud_init = facts.cloud_init();
    let cloud_init_done = matches!(cloud_init, "absent" | "done" | "disabled");
    let locked = facts.apt_locked();
    if cloud_init_done && locked.is_none() {
        let what = if cloud_init == "absent" { "no cloud-init".to_string() } else { format!("cloud-init {cloud_init}") };
        return Plan::Ok(format!("{what}; dpkg and apt locks free"));
    }
    let why = match locked {
        Some(l) if !cloud_init_done => format!("cloud-init {cloud_init}; {l} held"),
        Some(l) => format!("{l} held"),
        None => format!("cloud-init {cloud_init}"),
    };
    let cmd = Cmd::script(WAIT_READY_SH)
        .named("wait-ready.sh")
        .sudo()
        .env("CLOUD_INIT_TIMEOUT", cfg.cloud_init_timeout.as_secs().to_string())
        .env("LOCK_TIMEOUT", cfg.lock_timeout.as_secs().to_string());
    Plan::Act { why: format!("waiting: {why}"), actions: vec![Action::Check(cmd)] }
}

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

/// The stamp a successful `apt-get update` touches (Debian's and Ubuntu's
/// periodic updates touch it too). The lists' own mtimes are the mirror's
/// publish times, not when they were fetched, so they cannot tell how fresh
/// the lists are.
pub const APT_UPDATE_STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";

/// `apt-get update`, touching [`APT_UPDATE_STAMP`] when it succeeds (apt's
/// own post-update hook list: a failed update leaves it alone).
pub fn apt_update(cfg: &Config) -> Cmd {
    apt_get(
        cfg,
        &["-o", &format!("APT::Update::Post-Invoke-Success::=mkdir -p /var/lib/apt/periodic && touch {APT_UPDATE_STAMP}"), "update"],
    )
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

/// Installs without recommends: the host needs these tools, not the
/// compilers and desktop bits their recommends pull in.
pub fn apt_install(cfg: &Config, packages: &[&str]) -> Cmd {
    let mut args = vec!["install", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt_get(cfg, &args)
}

fn lists_fresh(facts: &Facts, cfg: &Config) -> bool {
    facts.apt_lists_age().is_some_and(|age| age < cfg.apt_lists_max_age.as_secs())
}

fn plan_apt(facts: &Facts, cfg: &Config) -> Plan {
    let fresh = lists_fresh(facts, cfg);
    let upgradable = facts.apt_upgradable();
    if fresh && upgradable == Some(0) {
        let age = facts.apt_lists_age().unwrap_or(0);
        return Plan::Ok(format!("package lists {age} s old, nothing to upgrade"));
    }
    let mut actions = Vec::new();
    if !fresh {
        actions.push(Action::Change(apt_update(cfg)));
    }
    actions.push(Action::Change(apt_get(cfg, &["upgrade"])));
    let why = match (fresh, upgradable) {
        (false, _) => "package lists missing or stale".to_string(),
        (true, Some(n)) => format!("{n} packages to upgrade"),
        (true, None) => "package lists unreadable".to_string(),
    };
    Plan::Act { why, actions }
}

const TOOLS: &[&str] = &["git", "python3-pip", "jq", "curl", "ca-certificates"];

/// Docker with compose v2: Ubuntu's own docker.io + docker-compose-v2;
/// Debian 12 has no compose v2 package, so Docker's repository there.
pub fn docker_packages(fam: Family) -> &'static [&'static str] {
    match fam {
        Family::Ubuntu => &["docker.io", "docker-compose-v2"],
        Family::Debian => &["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"],
    }
}

fn apt_source(name: &str, source: &str, key_url: &str) -> Cmd {
    Cmd::script(APT_SOURCE_SH)
        .named("apt-source.sh")
        .sudo()
        .env("NAME", name)
        .env("SOURCE", source)
        .env("KEY_URL", key_url)
}

/// The `deb` line apt-source.sh writes, to compare with what is there.
fn source_line(name: &str, source: &str) -> String {
    format!("deb [signed-by=/etc/apt/keyrings/image-provision-{name}.asc] {source}")
}

fn plan_docker(facts: &Facts, cfg: &Config, fam: Family) -> Plan {
    let user = facts.user();
    let is_root = facts.sudo() == Sudo::Root;
    let mut actions = Vec::new();
    let mut why = Vec::new();

    let tools: Vec<&str> = TOOLS.iter().copied().filter(|p| !facts.installed(p)).collect();
    if !tools.is_empty() {
        why.push(format!("install {}", tools.join(" ")));
        actions.push(Action::Change(apt_install(cfg, &tools)));
    }
    if fam == Family::Debian {
        let source = cfg.docker_repo.replace("{codename}", facts.codename());
        if facts.source("docker") != Some(source_line("docker", &source).as_str()) {
            why.push("add Docker's apt repository".into());
            actions.push(Action::Change(apt_source("docker", &source, &cfg.docker_repo_key)));
            actions.push(Action::Change(apt_update(cfg)));
        }
    }
    let docker: Vec<&str> = docker_packages(fam).iter().copied().filter(|p| !facts.installed(p)).collect();
    if !docker.is_empty() {
        why.push(format!("install {}", docker.join(" ")));
        actions.push(Action::Change(apt_install(cfg, &docker)));
    }
    if !docker.is_empty() || !facts.docker_enabled() || !facts.docker_active() {
        why.push("enable and start docker".into());
        actions.push(Action::Change(Cmd::new("systemctl").args(["enable", "--now", "docker"]).sudo()));
    }
    if !is_root {
        if !facts.docker_group_has(user) {
            why.push(format!("add {user} to the docker group"));
            actions.push(Action::Change(Cmd::new("usermod").args(["-aG", "docker", user]).sudo()));
        }
        if !facts.docker_user_access() {
            // A running session keeps the groups it logged in with.
            actions.push(Action::Reconnect);
            actions.push(Action::Check(Cmd::new("docker").args(["info", "--format", "{{.ServerVersion}}"])));
        }
    }
    if actions.is_empty() {
        let compose = facts.compose().unwrap_or("compose ?");
        let version = facts.docker_version().unwrap_or("docker");
        let group = if is_root { String::new() } else { format!("; {user} in the docker group") };
        return Plan::Ok(format!("{version}; {compose}; running{group}; {} installed", TOOLS.join(" ")));
    }
    let changes = actions.iter().any(|a| matches!(a, Action::Change(_)));
    Plan::Act {
        why: if changes { why.join(", ") } else { format!("re-login so {user}'s docker group applies") },
        actions,
    }
}

/// The driver package for this family.
pub fn driver_package(fam: Family, cfg: &Config) -> String {
    match fam {
        Family::Ubuntu => format!("nvidia-driver-{}", cfg.nvidia_driver_branch),
        // Debian ships one current branch, under one name (non-free).
        Family::Debian => "nvidia-driver".to_string(),
    }
}

fn gpu_skip(facts: &Facts, cfg: &Config) -> Option<String> {
    if !cfg.gpu {
        return Some("--no-gpu: the IMAGE GPU services will not start on this host".into());
    }
    if facts.gpu().is_none() {
        return Some("no NVIDIA GPU found (lspci); pass --no-gpu to acknowledge a host without one".into());
    }
    None
}

fn plan_nvidia(facts: &Facts, cfg: &Config, fam: Family) -> Plan {
    if let Some(why) = gpu_skip(facts, cfg) {
        return Plan::Skip(why);
    }
    let driver = driver_package(fam, cfg);
    let mut actions = Vec::new();
    let mut why = Vec::new();
    // A working driver of any branch is left alone (it may be the AMI's).
    if facts.nvidia_smi().is_none() && !facts.installed(&driver) {
        let lacking = facts.debian_components_lacking();
        if fam == Family::Debian && !lacking.is_empty() {
            why.push(format!("enable {DEBIAN_NVIDIA_COMPONENTS} in {}", lacking.join(" ")));
            actions.push(Action::Change(
                Cmd::script(debian_components_script())
                    .named("debian-components.sh")
                    .sudo()
                    .env("CODENAME", facts.codename())
                    .env("COMPONENTS", DEBIAN_NVIDIA_COMPONENTS),
            ));
            actions.push(Action::Change(apt_update(cfg)));
        }
        why.push(format!("install {driver}"));
        actions.push(Action::Change(apt_install(cfg, &[&driver])));
    }
    if !facts.installed("nvidia-container-toolkit") {
        if facts.source("nvidia") != Some(source_line("nvidia", &cfg.nvidia_repo).as_str()) {
            why.push("add NVIDIA's container toolkit repository".into());
            actions.push(Action::Change(apt_source("nvidia", &cfg.nvidia_repo, &cfg.nvidia_repo_key)));
            actions.push(Action::Change(apt_update(cfg)));
        }
        why.push("install nvidia-container-toolkit".into());
        actions.push(Action::Change(apt_install(cfg, &["nvidia-container-toolkit"])));
    }
    if !facts.daemon_json_nvidia() || !facts.installed("nvidia-container-toolkit") {
        why.push("register the nvidia runtime with Docker".into());
        actions.push(Action::Change(
            Cmd::new("nvidia-ctk").args(["runtime", "configure", "--runtime=docker"]).sudo(),
        ));
    }
    if !facts.docker_has_nvidia_runtime() || !actions.is_empty() {
        why.push("restart docker".into());
        actions.push(Action::Change(Cmd::new("systemctl").args(["restart", "docker"]).sudo()));
    }
    if actions.is_empty() {
        let driver = match facts.nvidia_smi() {
            Some(_) => "driver working".to_string(),
            None => format!("{driver} installed (loads after the reboot)"),
        };
        return Plan::Ok(format!("{driver}; nvidia-container-toolkit installed; Docker has the nvidia runtime"));
    }
    Plan::Act { why: why.join(", "), actions }
}

/// `dry_run_driver`: in a dry run the driver is not installed yet, but the
/// NVIDIA step would install it, so a reboot would follow.
pub fn plan_reboot(facts: &Facts, cfg: &Config, dry_run_driver: bool) -> Plan {
    let fam = family(facts, cfg.force_distro).unwrap_or(Family::Debian);
    let driver_pending = gpu_skip(facts, cfg).is_none()
        && facts.nvidia_smi().is_none()
        && (facts.installed(&driver_package(fam, cfg)) || dry_run_driver);
    let why = match (driver_pending, facts.reboot_required()) {
        (true, _) => "the NVIDIA driver was installed and loads at boot",
        (false, true) => "/var/run/reboot-required exists",
        (false, false) => return Plan::Ok("no reboot needed".into()),
    };
    Plan::Act { why: why.into(), actions: vec![Action::Reboot] }
}

fn plan_verify(facts: &Facts, cfg: &Config) -> Plan {
    if let Some(why) = gpu_skip(facts, cfg) {
        return Plan::Skip(why);
    }
    let Some(smi) = facts.nvidia_smi() else {
        return Plan::Refuse {
            message: format!(
                "nvidia-smi does not work: {}",
                facts.nvidia_smi_error().unwrap_or("nvidia-smi is not installed")
            ),
            hint: "look at `dmesg | grep -i nvidia` and `dkms status` on the host (a Secure Boot that refuses the module, \
                   or a kernel without headers); then run bootstrap again"
                .into(),
            usage: false,
        };
    };
    if !facts.docker_has_nvidia_runtime() {
        return Plan::Refuse {
            message: format!(
                "Docker does not list the nvidia runtime (runtimes: {})",
                facts.docker_runtimes().unwrap_or("unknown: docker info failed")
            ),
            hint: "check /etc/docker/daemon.json and run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker` on the host".into(),
            usage: false,
        };
    }
    let mut parts = smi.split(',').map(str::trim);
    let (name, driver, memory) = (
        parts.next().unwrap_or("?"),
        parts.next().unwrap_or("?"),
        parts.next().unwrap_or("?"),
    );
    Plan::Ok(format!("{name}, driver {driver}, {memory}; Docker runtime nvidia"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(extra: &str) -> Facts {
        Facts::parse(&format!(
            "os.id=debian\nos.version=12\nos.codename=bookworm\nos.pretty=Debian GNU/Linux 12 (bookworm)\n\
             user=admin\nsudo=nopasswd\ngpu=00:1e.0 3D controller [0302]: NVIDIA Corporation GA102GL [A10G] [10de:2237]\n{extra}"
        ))
    }

    fn commands(plan: &Plan) -> Vec<String> {
        match plan {
            Plan::Act { actions, .. } => actions.iter().map(|a| a.describe(false)).collect(),
            other => panic!("expected actions, got {other:?}"),
        }
    }

    #[test]
    fn debian_driver_install_enables_non_free_first() {
        let f = facts("apt.debian_components_lacking=/etc/apt/sources.list\n");
        let plan = Step::Nvidia.plan(&f, &Config::default());
        let cmds = commands(&plan);
        assert!(cmds[0].contains("CODENAME=bookworm") && cmds[0].contains("<script debian-components.sh>"), "{cmds:?}");
        assert!(cmds[0].contains("COMPONENTS='contrib non-free non-free-firmware'"), "{cmds:?}");
        assert!(cmds[1].ends_with("update"), "{cmds:?}");
        assert!(cmds[2].ends_with("install --no-install-recommends nvidia-driver"), "{cmds:?}");
        // Already enabled: straight to the install.
        let cmds = commands(&Step::Nvidia.plan(&facts(""), &Config::default()));
        assert!(cmds[0].ends_with("install --no-install-recommends nvidia-driver"), "{cmds:?}");
    }

    #[test]
    fn ubuntu_never_touches_components() {
        let f = Facts::parse(
            "os.id=ubuntu\nos.version=22.04\nos.codename=jammy\nuser=ubuntu\nsudo=nopasswd\n\
             gpu=x [0302]: NVIDIA [10de:2237]\napt.debian_components_lacking=/etc/apt/sources.list\n",
        );
        let cmds = commands(&Step::Nvidia.plan(&f, &Config::default()));
        assert!(cmds[0].ends_with("install --no-install-recommends nvidia-driver-535-server"), "{cmds:?}");
    }

    #[test]
    fn interrupted_dpkg_is_finished_before_apt() {
        let f = facts("dpkg.interrupted=yes\napt.lists_age=10\napt.upgradable=0\n");
        let cmds = commands(&Step::Apt.plan(&f, &Config::default()));
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].ends_with("dpkg --force-confdef --force-confold --configure -a"), "{cmds:?}");
        let cmds = commands(&Step::Nvidia.plan(&f, &Config::default()));
        assert!(cmds[0].ends_with("--configure -a"), "{cmds:?}");
        // Ready and verify never run apt.
        assert!(matches!(Step::Ready.plan(&f, &Config::default()), Plan::Ok(_)));
    }

    #[test]
    fn apt_waits_for_the_lock_as_long_as_configured() {
        let cfg = Config { lock_timeout: Duration::from_secs(42), ..Config::default() };
        assert!(apt_get(&cfg, &["update"]).argv().contains(&"DPkg::Lock::Timeout=42"));
    }
}
