//! The reboot step: reboots when the NVIDIA driver was installed but is not
//! loaded yet, or when a package asked for it, and waits for the new boot.

use crate::facts::{FactsScript, RawFacts};
use crate::host_facts::{Family, HostFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;
use crate::steps::nvidia::{self, NvidiaFacts};

pub const FACTS_SH: &str = include_str!("facts.sh");

pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/reboot/facts.sh", FACTS_SH)
}

#[derive(Clone, Debug)]
pub struct RebootFacts {
    /// /var/run/reboot-required exists.
    pub required: bool,
}

impl RebootFacts {
    pub fn parse(raw: &RawFacts) -> RebootFacts {
        RebootFacts { required: raw.yes("reboot_required") }
    }
}

/// `dry_run_driver`: in a dry run the driver is not installed yet, but the
/// nvidia step would install it, so a reboot would follow.
pub fn plan(host: &HostFacts, nv: &NvidiaFacts, facts: &RebootFacts, cfg: &Config, dry_run_driver: bool) -> Plan {
    let fam = host.family(cfg.force_distro).unwrap_or(Family::Debian);
    let driver_pending = nvidia::gpu_skip(host, cfg).is_none()
        && nv.smi.is_none()
        && (host.installed(&nvidia::driver_package(fam, cfg)) || dry_run_driver);
    let why = match (driver_pending, facts.required) {
        (true, _) => "the NVIDIA driver was installed and loads at boot",
        (false, true) => "/var/run/reboot-required exists",
        (false, false) => return Plan::Ok("no reboot needed".into()),
    };
    Plan::Act { why: why.into(), actions: vec![Action::Reboot] }
}
