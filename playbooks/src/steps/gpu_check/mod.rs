//! The gpu-check step: after the reboot, nvidia-smi answers and Docker lists
//! the nvidia runtime; otherwise the run stops here with what to look at.
//! It reads the nvidia and docker steps' facts and has none of its own.

use crate::host_facts::HostFacts;
use crate::plan::Plan;
use crate::settings::Config;
use crate::steps::docker::DockerFacts;
use crate::steps::nvidia::{self, NvidiaFacts};

pub fn plan(host: &HostFacts, docker: &DockerFacts, nv: &NvidiaFacts, cfg: &Config) -> Plan {
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
    Plan::Ok(format!(
        "{}, driver {}, {}; Docker runtime nvidia",
        field(&smi.name),
        field(&smi.driver),
        field(&smi.memory)
    ))
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
        match plan(&host, &DockerFacts::default(), &nv, &Config::default()) {
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
