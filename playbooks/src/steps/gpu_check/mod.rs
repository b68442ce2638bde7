//! The gpu-check step: after the reboot, nvidia-smi answers and Docker lists
//! the nvidia runtime; otherwise the run stops here with what to look at.
//! Then the CUDA each GPU image needs against the driver's (cuda-check.sh;
//! the stack step runs it again once the pull is done). It reads the nvidia
//! and docker steps' facts and has none of its own.

use image_provision_remote::Cmd;

use crate::host_facts::{Family, HostFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;
use crate::steps::docker::DockerFacts;
use crate::steps::llm::LLM_DIR;
use crate::steps::nvidia::{self, NvidiaFacts};

pub const CUDA_CHECK_SH: &str = include_str!("cuda-check.sh");

/// Images not pulled yet: left to the stack step (the gpu-check step, while
/// the background pull runs), or reported as unknown (the stack step, after
/// it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpulled {
    Defer,
    Unknown,
}

/// cuda-check.sh over the IMAGE stack's compose project and the local
/// LLM's, with what to tell the person when the driver is too old: the
/// lowest branch from the default on whose CUDA meets the need, and how to
/// move this server to it.
pub fn cuda_check(base_dir: &str, fam: Family, unpulled: Unpulled) -> Cmd {
    let default = nvidia::branch_number(crate::settings::DEFAULT_NVIDIA_DRIVER_BRANCH).unwrap_or(0);
    let branches: Vec<String> = nvidia::BRANCH_CUDA
        .iter()
        .filter(|(number, _)| *number >= default)
        .map(|(number, cuda)| format!("{number}-server:{cuda}"))
        .collect();
    let pick = match fam {
        Family::Ubuntu => {
            "pick the driver branch BRANCH (CUDA NEED or later): `image-provision update --upgrade-driver \
             --nvidia-driver BRANCH` moves this server to it, with the reboot it needs (bootstrap leaves a \
             working driver alone); a new server gets it with --nvidia-driver BRANCH"
        }
        Family::Debian => {
            "Debian's nvidia-driver is the only branch Debian packages: use Ubuntu 22.04 or 24.04 with \
             --nvidia-driver BRANCH (CUDA NEED or later)"
        }
    };
    Cmd::script(CUDA_CHECK_SH)
        .named("cuda-check.sh")
        .sudo()
        .env("PROJECT_DIRS", format!("{base_dir} {LLM_DIR}"))
        .env("DEFER_UNPULLED", if unpulled == Unpulled::Defer { "yes" } else { "no" })
        .env("BRANCHES", branches.join(" "))
        .env("PICK", pick)
        .env(
            "PICK_NONE",
            format!(
                "no driver branch image-provision knows serves CUDA NEED (the newest it knows: {}): pick one that \
             does (nvidia-smi's header says a driver's CUDA) and pass it with --nvidia-driver",
                branches.last().map(String::as_str).unwrap_or(crate::settings::DEFAULT_NVIDIA_DRIVER_BRANCH)
            ),
        )
        .time_limit(crate::settings::outer_limit(std::time::Duration::from_secs(60)))
}

pub fn plan(host: &HostFacts, docker: &DockerFacts, nv: &NvidiaFacts, cfg: &Config, fam: Family) -> Plan {
    if let Some(why) = nvidia::gpu_skip(host, cfg) {
        return Plan::Skip(why);
    }
    let Some(smi) = &nv.smi else {
        if let Some(advice) = nv.smi_error.as_deref().and_then(nvidia::smi_error_advice) {
            return Plan::Refuse {
                message: format!("nvidia-smi does not work: {}", nv.smi_error.as_deref().unwrap_or_default()),
                hint: advice.into(),
                usage: false,
            };
        }
        return Plan::Refuse {
            message: format!(
                "nvidia-smi does not work: {}",
                nv.smi_error.as_deref().unwrap_or("nvidia-smi is not installed")
            ),
            hint: "look at `dmesg | grep -i nvidia` and `dkms status` on the host (a Secure Boot that refuses the module, \
                   or a kernel without headers); then run bootstrap again"
                .into(),
            usage: false,
        };
    };
    if !docker.has_runtime("nvidia") {
        return Plan::Refuse {
            message: format!(
                "Docker does not list the nvidia runtime (runtimes: {})",
                docker.runtimes.as_deref().unwrap_or("unknown: docker info failed")
            ),
            hint: "check /etc/docker/daemon.json and run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker` on the host".into(),
            usage: false,
        };
    }
    let field = |f: &Option<String>| f.clone().unwrap_or_else(|| "?".into());
    let works =
        format!("{}, driver {}, {}; Docker runtime nvidia", field(&smi.name), field(&smi.driver), field(&smi.memory));
    match &cfg.image {
        // The images the driver serves: the IMAGE stack's and the local LLM's.
        Some(img) => Plan::Act {
            why: format!("{works}; the CUDA the GPU images need"),
            actions: vec![Action::Check(cuda_check(&img.base_dir, fam, Unpulled::Defer))],
        },
        None => Plan::Ok(works),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::RawFacts;

    /// Libraries upgraded under the loaded module: nvidia-smi's own words
    /// get what to do.
    #[test]
    fn a_version_mismatch_says_reboot() {
        let raw = RawFacts::parse(&format!(
            "{}nvidia.smi_error=Failed to initialize NVML: Driver/library version mismatch NVML library version: 570.211\n",
            crate::host_facts::DEBIAN12_A10G
        ));
        let (host, nv) = (HostFacts::parse(&raw), NvidiaFacts::parse(&raw));
        match plan(&host, &DockerFacts::default(), &nv, &Config::default(), Family::Debian) {
            Plan::Refuse { message, hint, .. } => {
                assert!(message.contains("Driver/library version mismatch"), "{message}");
                assert!(hint.contains("upgraded without the reboot") && hint.contains("sudo reboot"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            nvidia::smi_error_advice("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver")
                .is_none()
        );
    }
}
