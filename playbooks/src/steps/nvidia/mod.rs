//! The nvidia step: the NVIDIA driver (Ubuntu's server branch; Debian's
//! non-free package, with the archive components it needs enabled first),
//! NVIDIA's container toolkit from NVIDIA's repository, and the nvidia
//! runtime registered with Docker. A working driver of any branch is left
//! alone. Also what the reboot and gpu-check steps read: the driver's
//! answer ([`Smi`]) and whether the GPU steps run at all ([`gpu_skip`]).

use image_provision_remote::Cmd;

use crate::apt_get::{SourceFacts, add_source, apt_install, apt_update};
use crate::facts::{FactsScript, RawFacts};
use crate::host_facts::{Family, HostFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;
use crate::shell::with_libraries;
use crate::steps::docker::DockerFacts;

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const DEBIAN_COMPONENTS_SH: &str = include_str!("debian-components.sh");
/// A library: the rewrite of Debian's sources lists that
/// debian-components.sh writes and the facts compare with.
pub const DEBIAN_SOURCES_REWRITE_SH: &str = include_str!("debian-sources-rewrite.sh");

/// What Debian's archive entries need for the NVIDIA driver: nvidia-driver is
/// in non-free, its firmware in non-free-firmware, some helpers in contrib.
pub const DEBIAN_NVIDIA_COMPONENTS: &str = "contrib non-free non-free-firmware";

pub const TOOLKIT: &str = "nvidia-container-toolkit";

/// The facts script (input DEBIAN_COMPONENTS), with the rewrite in front.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/nvidia/facts.sh", FACTS_SH).with_libraries(&[DEBIAN_SOURCES_REWRITE_SH])
}

/// debian-components.sh as sent, with the rewrite in front.
pub fn debian_components_script() -> String {
    with_libraries(&[DEBIAN_SOURCES_REWRITE_SH], DEBIAN_COMPONENTS_SH)
}

/// The highest CUDA each driver branch serves, lowest branch first, as
/// NVIDIA's CUDA release notes pair toolkits with drivers (CUDA 12.8 needs
/// 570, 12.9 575, 13.0 580) and nvidia-smi's header reports it. A branch
/// number, then CUDA major.minor. 580 is NVIDIA's long-term support branch
/// (supported to August 2028) and the newest Ubuntu packages as
/// nvidia-driver-BRANCH-server that this table vouches for; from 590 on
/// NVIDIA's own repository drops the branch from the package names.
pub const BRANCH_CUDA: &[(u32, &str)] =
    &[(535, "12.2"), (550, "12.4"), (560, "12.6"), (570, "12.8"), (575, "12.9"), (580, "13.0")];

/// The number of a branch as --nvidia-driver takes it (`580-server` -> 580).
pub fn branch_number(branch: &str) -> Option<u32> {
    branch.split('-').next()?.parse().ok()
}

/// Ubuntu's driver metapackage of `branch` (--nvidia-driver's form).
pub fn ubuntu_driver_package(branch: &str) -> String {
    format!("nvidia-driver-{branch}")
}

/// The driver package for this family.
pub fn driver_package(fam: Family, cfg: &Config) -> String {
    match fam {
        Family::Ubuntu => ubuntu_driver_package(&cfg.nvidia_driver_branch),
        // Debian ships one current branch, under one name (non-free).
        Family::Debian => "nvidia-driver".to_string(),
    }
}

/// Every package this step asks the host facts about.
pub fn watched_packages(cfg: &Config) -> Vec<String> {
    [TOOLKIT.to_string(), driver_package(Family::Debian, cfg), driver_package(Family::Ubuntu, cfg)].into()
}

/// What nvidia-smi reports when the driver works (`name, driver, memory`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smi {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub memory: Option<String>,
    /// The whole line.
    pub line: String,
}

impl Smi {
    fn parse(line: &str) -> Smi {
        let mut parts = line.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
        Smi { name: parts.next(), driver: parts.next(), memory: parts.next(), line: line.to_string() }
    }
}

#[derive(Clone, Debug, Default)]
pub struct NvidiaFacts {
    /// The apt sources files with entries of Debian's archive that lack one
    /// of [`DEBIAN_NVIDIA_COMPONENTS`].
    pub debian_components_lacking: Vec<String>,
    /// /etc/docker/daemon.json names the nvidia runtime.
    pub daemon_json: bool,
    pub smi: Option<Smi>,
    /// Why nvidia-smi failed, when installed.
    pub smi_error: Option<String>,
}

impl NvidiaFacts {
    pub fn parse(raw: &RawFacts) -> NvidiaFacts {
        NvidiaFacts {
            debian_components_lacking: raw.words("nvidia.debian_components_lacking"),
            daemon_json: raw.yes("nvidia.daemon_json"),
            smi: raw.get("nvidia.smi").map(Smi::parse),
            smi_error: raw.string("nvidia.smi_error"),
        }
    }
}

/// Why the GPU steps do not run on this host, if they do not.
pub fn gpu_skip(host: &HostFacts, cfg: &Config) -> Option<String> {
    if !cfg.gpu {
        return Some("--no-gpu: the IMAGE GPU services will not start on this host".into());
    }
    if host.gpu.is_none() {
        return Some("no NVIDIA GPU found (lspci); pass --no-gpu to acknowledge a host without one".into());
    }
    None
}

/// The reason a plan gives when it installs the driver (a dry run looks for
/// it: a reboot would follow).
pub fn installs_driver(why: &str) -> bool {
    why.contains("install nvidia-driver")
}

pub const HOLD_DRIVER_SH: &str = include_str!("hold-driver.sh");
/// A library: the driver's packages, which hold-driver.sh and
/// upgrade-driver.sh hold.
pub const DRIVER_PACKAGES_SH: &str = include_str!("driver-packages.sh");

/// hold-driver.sh as sent, with its library in front.
pub fn hold_driver_script() -> String {
    with_libraries(&[DRIVER_PACKAGES_SH], HOLD_DRIVER_SH)
}

/// hold-driver.sh for `driver`.
pub fn hold_driver(driver: &str) -> Cmd {
    Cmd::script(hold_driver_script()).named("hold-driver.sh").sudo().env("DRIVER", driver)
}

pub const UPGRADE_DRIVER_SH: &str = include_str!("upgrade-driver.sh");

/// upgrade-driver.sh as sent, with its library in front.
pub fn upgrade_driver_script() -> String {
    with_libraries(&[DRIVER_PACKAGES_SH], UPGRADE_DRIVER_SH)
}

/// What `update --upgrade-driver` runs (upgrade-driver.sh): on Ubuntu, a
/// driver of a lower branch than `branch` moved to it; else the held driver
/// packages upgraded; held again either way. Its output ends with
/// [`REBOOT_NEEDED`] when the driver changed.
pub fn upgrade_driver_command(lock_timeout: std::time::Duration, branch: &str) -> Cmd {
    Cmd::script(upgrade_driver_script())
        .named("upgrade-driver.sh")
        .sudo()
        .env("LOCK_TIMEOUT", lock_timeout.as_secs().to_string())
        .env("TARGET", ubuntu_driver_package(branch))
}

/// upgrade-driver.sh's last line when the driver changed.
pub const REBOOT_NEEDED: &str = "reboot needed";

/// What nvidia-smi says when the driver's libraries were upgraded (by hand
/// or by unattended-upgrades) while the old kernel module stays loaded.
pub const VERSION_MISMATCH: &str = "Driver/library version mismatch";

/// What to do about nvidia-smi's error, when it is one we know.
pub fn smi_error_advice(error: &str) -> Option<&'static str> {
    error.contains(VERSION_MISMATCH).then_some(
        "the NVIDIA driver was upgraded without the reboot it needs: its libraries no longer match the kernel module \
         that is loaded. Reboot the server (`sudo reboot`), then run again; image-provision holds the driver packages \
         (apt-mark hold) so that unattended upgrades do not do this, and `update --upgrade-driver` upgrades on purpose, \
         with the reboot",
    )
}

pub fn plan(
    host: &HostFacts,
    sources: &SourceFacts,
    docker: &DockerFacts,
    nvidia: &NvidiaFacts,
    cfg: &Config,
    fam: Family,
) -> Plan {
    if let Some(why) = gpu_skip(host, cfg) {
        return Plan::Skip(why);
    }
    let driver = driver_package(fam, cfg);
    let mut actions = Vec::new();
    let mut why = Vec::new();
    if nvidia.smi.is_none() && !host.installed(&driver) {
        let lacking = &nvidia.debian_components_lacking;
        if fam == Family::Debian && !lacking.is_empty() {
            why.push(format!("enable {DEBIAN_NVIDIA_COMPONENTS} in {}", lacking.join(" ")));
            actions.push(Action::Change(
                Cmd::script(debian_components_script())
                    .named("debian-components.sh")
                    .sudo()
                    .env("CODENAME", &host.codename)
                    .env("COMPONENTS", DEBIAN_NVIDIA_COMPONENTS),
            ));
            actions.push(Action::Change(apt_update(cfg)));
        }
        why.push(format!("install {driver}"));
        actions.push(Action::Change(apt_install(cfg, &[&driver])));
    }
    // Held once installed: a driver upgrade needs its reboot, so it comes
    // only on purpose (update --upgrade-driver).
    if host.installed(&driver) && !host.held(&driver) {
        why.push(format!("hold {driver} against unattended upgrades"));
        actions.push(Action::Change(hold_driver(&driver)));
    } else if !host.installed(&driver) && nvidia.smi.is_none() {
        why.push(format!("then hold {driver}"));
        actions.push(Action::Change(hold_driver(&driver)));
    }
    let toolkit = host.installed(TOOLKIT);
    if !toolkit {
        if !sources.has("nvidia", &cfg.nvidia_repo) {
            why.push("add NVIDIA's container toolkit repository".into());
            actions.push(Action::Change(add_source("nvidia", &cfg.nvidia_repo, &cfg.nvidia_repo_key)));
            actions.push(Action::Change(apt_update(cfg)));
        }
        why.push(format!("install {TOOLKIT}"));
        actions.push(Action::Change(apt_install(cfg, &[TOOLKIT])));
    }
    if !nvidia.daemon_json || !toolkit {
        why.push("register the nvidia runtime with Docker".into());
        actions.push(Action::Change(Cmd::new("nvidia-ctk").args(["runtime", "configure", "--runtime=docker"]).sudo()));
    }
    if !docker.has_runtime("nvidia") || !actions.is_empty() {
        why.push("restart docker".into());
        actions.push(Action::Change(crate::steps::docker::restart_docker()));
    }
    Plan::from_actions(why, actions, || {
        let driver = match &nvidia.smi {
            Some(_) => "driver working".to_string(),
            None => format!("{driver} installed (loads after the reboot)"),
        };
        format!("{driver}; {TOOLKIT} installed; Docker has the nvidia runtime")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nvidia-smi asked beside root's part, its answer read after it as
    /// before: its line, its last two lines when it fails, and the time
    /// limit's own words.
    #[test]
    fn nvidia_smi_read_after_roots_part() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let script =
            format!("{}\n{}\nrun_root_facts\nfacts_after_root_run\n", crate::facts::PRELUDE_SH, facts_script().text);
        let smi = |body: &str| {
            let path = bin.path().join("nvidia-smi");
            std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let path_var = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(&script)
                .env("PATH", path_var)
                .env("DEBIAN_COMPONENTS", "main contrib non-free non-free-firmware")
                .env("HOME", bin.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let raw = RawFacts::parse(&String::from_utf8_lossy(&out.stdout));
            (raw.string("nvidia.smi"), raw.string("nvidia.smi_error"))
        };
        assert_eq!(
            smi("echo 'NVIDIA A10G, 580.95.05, 23028 MiB'"),
            (Some("NVIDIA A10G, 580.95.05, 23028 MiB".into()), None)
        );
        assert_eq!(smi("printf 'one\\ntwo\\nthree\\n\\n'; exit 9"), (None, Some("two three".into())));
        assert_eq!(smi("echo 'only one'; exit 9"), (None, Some("only one".into())));
        assert_eq!(smi("exit 124"), (None, Some("nvidia-smi did not answer within 30 s".into())));
    }

    fn facts(extra: &str) -> (HostFacts, NvidiaFacts) {
        let raw = RawFacts::parse(&format!("{}{extra}", crate::host_facts::DEBIAN12_A10G));
        (HostFacts::parse(&raw), NvidiaFacts::parse(&raw))
    }

    fn commands(host: &HostFacts, nvidia: &NvidiaFacts) -> Vec<String> {
        let cfg = Config::default();
        let fam = host.family(false).unwrap();
        match plan(host, &SourceFacts::default(), &DockerFacts::default(), nvidia, &cfg, fam) {
            Plan::Act { actions, .. } => actions.iter().map(|a| a.describe(false)).collect(),
            other => panic!("expected actions, got {other:?}"),
        }
    }

    #[test]
    fn debian_driver_install_enables_non_free_first() {
        let (host, nvidia) = facts("nvidia.debian_components_lacking=/etc/apt/sources.list\n");
        let cmds = commands(&host, &nvidia);
        assert!(cmds[0].contains("CODENAME=bookworm") && cmds[0].contains("<script debian-components.sh>"), "{cmds:?}");
        assert!(cmds[0].contains("COMPONENTS='contrib non-free non-free-firmware'"), "{cmds:?}");
        assert!(cmds[1].ends_with("update"), "{cmds:?}");
        assert!(cmds[2].ends_with("install --no-install-recommends nvidia-driver"), "{cmds:?}");
        // Already enabled: straight to the install.
        let (host, nvidia) = facts("");
        let cmds = commands(&host, &nvidia);
        assert!(cmds[0].ends_with("install --no-install-recommends nvidia-driver"), "{cmds:?}");
    }

    #[test]
    fn ubuntu_never_touches_components() {
        let raw = RawFacts::parse(
            "os.id=ubuntu\nos.version=22.04\nos.codename=jammy\nuser=ubuntu\nsudo=nopasswd\n\
             gpu=x [0302]: NVIDIA [10de:2237]\nnvidia.debian_components_lacking=/etc/apt/sources.list\n",
        );
        let cmds = commands(&HostFacts::parse(&raw), &NvidiaFacts::parse(&raw));
        assert!(cmds[0].ends_with("install --no-install-recommends nvidia-driver-580-server"), "{cmds:?}");
    }

    #[test]
    fn parses_nvidia_smi() {
        let (_, nvidia) = facts("nvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\n");
        let smi = nvidia.smi.unwrap();
        let fields = [smi.name, smi.driver, smi.memory];
        assert_eq!(fields.map(|f| f.unwrap_or_default()), ["NVIDIA A10G", "535.230.02", "23028 MiB"]);
        let (_, partial) = facts("nvidia.smi=NVIDIA A10G\n");
        assert_eq!(partial.smi.unwrap().driver, None);
    }

    /// The dry run's reboot prediction reads the reason this plan gives.
    #[test]
    fn a_driver_install_says_so() {
        let (host, nvidia) = facts("");
        let fam = host.family(false).unwrap();
        let Plan::Act { why, .. } =
            plan(&host, &SourceFacts::default(), &DockerFacts::default(), &nvidia, &Config::default(), fam)
        else {
            panic!("expected actions")
        };
        assert!(installs_driver(&why), "{why}");
    }

    /// The driver is held once installed (in the same run as its install),
    /// and a held driver needs nothing more.
    #[test]
    fn the_driver_is_held_against_unattended_upgrades() {
        let held = |cmds: &[String]| cmds.iter().position(|c| c.contains("hold-driver.sh"));
        let (host, nvidia) = facts("");
        let cmds = commands(&host, &nvidia);
        let install = cmds.iter().position(|c| c.contains("install") && c.contains("nvidia-driver")).unwrap();
        assert!(held(&cmds).is_some_and(|h| h > install), "{cmds:?}");
        let (host, nvidia) =
            facts("pkg.nvidia-driver=535.247.01-1~deb12u1\nnvidia.smi=NVIDIA A10G, 535.247.01, 23028 MiB\n");
        assert!(held(&commands(&host, &nvidia)).is_some(), "installed, not held");
        let (host, nvidia) = facts(
            "pkg.nvidia-driver=535.247.01-1~deb12u1\nheld.nvidia-driver=yes\nnvidia.smi=NVIDIA A10G, 535.247.01, 23028 MiB\n",
        );
        assert!(host.held("nvidia-driver") && host.installed("nvidia-driver"));
        let fam = host.family(false).unwrap();
        let plan = plan(&host, &SourceFacts::default(), &DockerFacts::default(), &nvidia, &Config::default(), fam);
        let shown = format!("{plan:?}");
        assert!(!shown.contains("hold-driver"), "{shown}");
    }
}
