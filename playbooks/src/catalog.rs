//! Every shell script the binary sends, as sent (libraries in front, the
//! facts command composed), named by the file under playbooks/src it is made
//! from; and every file that is sent only inside others (libraries, facts
//! scripts). The tests run shellcheck over each script as sent and check
//! that no shell file under playbooks/src goes unchecked.

use crate::steps::{docker, gpu_check, health, layout, llm, nvidia, pull, ready, stack, traefik, upkeep, webui};
use crate::{apt_get, facts, gather};

/// Libraries: files that define functions only, put in front of the
/// scripts that call them. shellcheck checks each alone too.
pub const LIBRARIES: &[(&str, &str)] = &[
    ("steps/nvidia/debian-sources-rewrite.sh", nvidia::DEBIAN_SOURCES_REWRITE_SH),
    ("steps/nvidia/driver-packages.sh", nvidia::DRIVER_PACKAGES_SH),
    ("steps/layout/compose-env-files.sh", layout::COMPOSE_ENV_FILES_SH),
    ("bring_up/bring-up-lock.sh", crate::bring_up::BRING_UP_LOCK_SH),
    ("bring_up/run-imageup.sh", crate::bring_up::RUN_IMAGEUP_SH),
    ("bring_up/stack-record.sh", crate::bring_up::STACK_RECORD_SH),
    ("steps/health/https-check.sh", health::HTTPS_CHECK_SH),
    ("containers/docker-api.sh", crate::containers::DOCKER_API_SH),
];

/// Every script the binary sends, as sent, then each library alone.
pub fn scripts() -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("facts.sh", gather::default_script()),
        ("steps/ready/wait-ready.sh", ready::WAIT_READY_SH.to_string()),
        ("apt_get/apt-source.sh", apt_get::APT_SOURCE_SH.to_string()),
        ("steps/docker/daemon-json.sh", docker::DAEMON_JSON_SH.to_string()),
        ("steps/docker/dockerhub-login.sh", docker::DOCKERHUB_LOGIN_SH.to_string()),
        ("steps/docker/restart-docker.sh", docker::RESTART_DOCKER_SH.to_string()),
        ("steps/nvidia/debian-components.sh", nvidia::debian_components_script()),
        ("steps/nvidia/hold-driver.sh", nvidia::hold_driver_script()),
        ("steps/nvidia/upgrade-driver.sh", nvidia::upgrade_driver_script()),
        ("steps/upkeep/stack-at-boot.sh", upkeep::stack_at_boot_script()),
        ("steps/upkeep/auto-update.sh", upkeep::auto_update_script()),
        ("steps/upkeep/expire.sh", upkeep::EXPIRE_SH.to_string()),
        ("steps/upkeep/autostop.sh", upkeep::AUTOSTOP_SH.to_string()),
        ("steps/layout/clone.sh", layout::CLONE_SH.to_string()),
        ("steps/traefik/dns-wait.sh", traefik::DNS_WAIT_SH.to_string()),
        ("steps/llm/llm-up.sh", llm::LLM_UP_SH.to_string()),
        ("steps/llm/llm-wait.sh", llm::LLM_WAIT_SH.to_string()),
        ("steps/webui/webui-up.sh", webui::WEBUI_UP_SH.to_string()),
        ("steps/layout/env-files.sh", layout::env_files_script()),
        ("steps/pull/start-pull.sh", pull::START_PULL_SH.to_string()),
        ("steps/pull/wait-pull.sh", pull::WAIT_PULL_SH.to_string()),
        ("steps/stack/llm-check.sh", stack::LLM_CHECK_SH.to_string()),
        ("steps/gpu_check/cuda-check.sh", gpu_check::CUDA_CHECK_SH.to_string()),
        ("steps/stack/stack-up.sh", stack::stack_up_script()),
        ("steps/stack/update.sh", stack::update_script()),
        ("steps/stack/rollback.sh", stack::rollback_script()),
        ("steps/health/health.sh", health::health_script()),
        ("steps/health/render-request.sh", health::RENDER_REQUEST_SH.to_string()),
        ("template/keep-copies.sh", crate::template::KEEP_COPIES_SH.to_string()),
        ("template/record-written.sh", crate::template::RECORD_WRITTEN_SH.to_string()),
        ("template/mark-pending.sh", crate::template::MARK_PENDING_SH.to_string()),
        ("template/keep-env-lines.sh", crate::template::KEEP_ENV_LINES_SH.to_string()),
        ("bake/bake-hold.sh", crate::bake::script()),
    ];
    all.extend(LIBRARIES.iter().map(|(name, text)| (*name, text.to_string())));
    all
}

/// The files under playbooks/src that are sent only inside other scripts:
/// the libraries, the facts prelude and every facts script.
pub fn sent_inside() -> Vec<(&'static str, &'static str)> {
    let mut files = LIBRARIES.to_vec();
    files.push(("facts/prelude.sh", facts::PRELUDE_SH));
    files.extend(gather::all_parts().iter().map(|p| (p.path, p.file)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions a library defines (`name() {` at the start of a line).
    fn defined(text: &str) -> Vec<&str> {
        text.lines().filter_map(|l| l.split_once("() {").map(|(name, _)| name)).filter(|n| !n.contains(' ')).collect()
    }

    /// A script that calls a library's function is sent with that library
    /// (shellcheck does not know an undefined function from a command), once.
    #[test]
    fn every_script_is_sent_with_the_libraries_it_calls() {
        for (lib, lib_text) in LIBRARIES {
            let functions = defined(lib_text);
            assert!(!functions.is_empty(), "{lib} defines no function");
            for (name, text) in scripts() {
                if LIBRARIES.iter().any(|(l, _)| *l == name) {
                    continue;
                }
                for f in &functions {
                    let calls = text.lines().any(|l| {
                        let code = l.split('#').next().unwrap_or("");
                        code.contains(f) && !code.contains(&format!("{f}() {{"))
                    });
                    if calls {
                        assert!(text.contains(lib_text), "{name} calls {f} but is sent without {lib}");
                        assert_eq!(
                            text.matches(&format!("\n{f}() {{")).count(),
                            1,
                            "{name} defines {f} more than once"
                        );
                    }
                }
            }
        }
    }

    /// Every library and facts script is in a script as sent.
    #[test]
    fn every_part_is_sent() {
        let sent = scripts();
        for (name, text) in sent_inside() {
            assert!(sent.iter().any(|(_, s)| s.contains(text)), "{name} is sent in no script");
        }
    }
    /// Every wait has a limit: each curl in a script we send gives up
    /// (--max-time), and each oneshot unit we install has a start limit
    /// (systemd gives a oneshot none by default).
    #[test]
    fn every_curl_and_every_oneshot_unit_is_bounded() {
        for (name, text) in scripts() {
            // A command continued over lines counts as one.
            let joined = text.replace("\\\n", " ");
            for line in joined.lines().filter(|l| !l.trim_start().starts_with('#')) {
                // Asking whether curl is there runs no curl.
                let line = line.replace("command -v curl", "");
                let calls_curl = line.split(|c: char| c.is_whitespace() || c == '(' || c == '$').any(|w| w == "curl");
                if calls_curl {
                    assert!(line.contains("--max-time"), "{name}: curl without --max-time: {line}");
                }
            }
        }
        let units = [
            ("expire.service", include_str!("steps/upkeep/expire.service")),
            ("healthcheck.service", include_str!("steps/upkeep/healthcheck.service")),
            ("prune.service", include_str!("steps/upkeep/prune.service")),
            ("stack.service", include_str!("steps/upkeep/stack.service")),
            ("update.service", include_str!("steps/upkeep/update.service")),
        ];
        for (name, text) in units {
            assert!(text.contains("Type=oneshot") && text.contains("\nTimeoutStartSec="), "{name} has no start limit");
        }
    }
}
