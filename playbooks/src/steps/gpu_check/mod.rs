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
use crate::steps::llm::{OLLAMA, VLLM};
use crate::steps::nvidia::{self, NvidiaFacts};

pub const CUDA_CHECK_SH: &str = include_str!("cuda-check.sh");

/// Images not pulled yet: left to the stack step (the gpu-check step, while
/// the background pull runs), or pulled now (the stack step, just before
/// its bring-up would pull them: the background pull may have been cut
/// short by the reboot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpulled {
    Defer,
    Pull,
}

/// cuda-check.sh over the IMAGE stack's compose project and the local
/// LLM's (vLLM's or Ollama's), with the branches to pick from when the driver is too old: the
/// default and the newer ones [`nvidia::BRANCH_CUDA`] knows (the script
/// names the lowest that serves the need, and how to move this server to
/// it).
pub fn cuda_check(base_dir: &str, fam: Family, unpulled: Unpulled) -> Cmd {
    let default = nvidia::branch_number(crate::settings::DEFAULT_NVIDIA_DRIVER_BRANCH).unwrap_or(0);
    let branches: Vec<String> = nvidia::BRANCH_CUDA
        .iter()
        .filter(|(number, _)| *number >= default)
        .map(|(number, cuda)| format!("{number}-server:{cuda}"))
        .collect();
    Cmd::script(CUDA_CHECK_SH)
        .named("cuda-check.sh")
        .sudo()
        .env("PROJECT_DIRS", format!("{base_dir} {} {}", VLLM.dir, OLLAMA.dir))
        .env(
            "DEFER_UNPULLED",
            match unpulled {
                Unpulled::Defer => "yes",
                Unpulled::Pull => "pull",
            },
        )
        .env("BRANCHES", branches.join(" "))
        .env(
            "FAMILY",
            match fam {
                Family::Ubuntu => "ubuntu",
                Family::Debian => "debian",
            },
        )
        // A pull of the missing GPU images may take as long as imageup's.
        .time_limit(match unpulled {
            Unpulled::Defer => crate::settings::outer_limit(std::time::Duration::from_secs(60)),
            Unpulled::Pull => crate::settings::outer_limit(crate::settings::DEFAULT_IMAGEUP_TIMEOUT),
        })
}

/// `stack_deployed`: the stack runs as deployed with these settings, so its
/// images passed the stack step's CUDA check when they came up, with this
/// driver or an older one (image-provision never moves a driver down): no
/// check again, and a converged re-run stays one round trip.
pub fn plan(
    host: &HostFacts,
    docker: &DockerFacts,
    nv: &NvidiaFacts,
    cfg: &Config,
    fam: Family,
    stack_deployed: bool,
) -> Plan {
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
        Some(_) if stack_deployed => Plan::Ok(format!("{works}; the stack's GPU images checked when deployed")),
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
        match plan(&host, &DockerFacts::default(), &nv, &Config::default(), Family::Debian, false) {
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

    /// A working driver and runtime: with the stack, the CUDA check over
    /// the stack's and the local LLM's projects, images not pulled yet left
    /// to the stack step, the branches from the default on to pick from;
    /// without it, nothing more to check.
    #[test]
    fn the_cuda_check_follows_a_working_driver() {
        let raw = RawFacts::parse(&format!(
            "{}nvidia.smi=NVIDIA A10G, 580.95.05, 23028 MiB\ndocker.runtimes={{\"nvidia\":{{}}}}\n",
            crate::host_facts::DEBIAN12_A10G
        ));
        let (host, nv, docker) = (HostFacts::parse(&raw), NvidiaFacts::parse(&raw), DockerFacts::parse(&raw));
        let cmds = plan(&host, &docker, &nv, &Config::default(), Family::Ubuntu, false).commands();
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        for part in [
            "PROJECT_DIRS='/var/docker/image /var/docker/llm /var/docker/ollama'",
            "DEFER_UNPULLED=yes",
            "BRANCHES=580-server:13.0",
            "FAMILY=ubuntu",
            "<script cuda-check.sh> (check)",
        ] {
            assert!(cmds[0].contains(part), "{part}: {cmds:?}");
        }
        let stack_step = cuda_check("/var/docker/image", Family::Debian, Unpulled::Pull).redacted(true);
        assert!(stack_step.contains("DEFER_UNPULLED=pull") && stack_step.contains("FAMILY=debian"), "{stack_step}");
        let no_stack = Config { image: None, ..Config::default() };
        let ok = plan(&host, &docker, &nv, &no_stack, Family::Ubuntu, false);
        assert!(matches!(&ok, Plan::Ok(m) if m.contains("driver 580.95.05")), "{ok:?}");
        // The stack deployed with these settings: checked then, not again.
        let deployed = plan(&host, &docker, &nv, &Config::default(), Family::Ubuntu, true);
        assert!(matches!(&deployed, Plan::Ok(m) if m.contains("checked when deployed")), "{deployed:?}");
    }
}
