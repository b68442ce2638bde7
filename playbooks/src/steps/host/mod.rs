//! The host step: says what host this is (distribution, how the user gets
//! root, the GPU). It changes nothing; the refusals every step shares (an
//! unsupported distribution, no root) are made before any step plans
//! ([`crate::sequence`]), so this is where a run stops for them.

use crate::host_facts::{HostFacts, Sudo};
use crate::plan::Plan;
use crate::settings::Config;

pub fn plan(host: &HostFacts, cfg: &Config) -> Plan {
    let how = match host.sudo {
        Sudo::Root => "as root".to_string(),
        _ => format!("as {} with passwordless sudo", host.user),
    };
    let gpu = match (&host.gpu, cfg.gpu) {
        (_, false) => "GPU steps off (--no-gpu)".to_string(),
        (Some(g), true) => format!("GPU: {}", gpu_name(g)),
        (None, true) => "no NVIDIA GPU found".to_string(),
    };
    let forced = if host.family(false).is_err() { " (forced)" } else { "" };
    Plan::Ok(format!("{}{forced}, {how}, {gpu}", host.pretty))
}

/// "NVIDIA Corporation GA102GL [A10G] [10de:2237]" from an lspci -nn line.
fn gpu_name(lspci: &str) -> &str {
    lspci.split_once(": ").map(|(_, rest)| rest).unwrap_or(lspci).trim()
}
