//! The health step: the orchestrator container is healthy (its own health
//! check) and, with a domain, https://DOMAIN/health answers through the
//! host's own Traefik (the one HTTPS check, https-check.sh, shared by the
//! facts and health.sh). verify and update read the same facts.

use std::net::IpAddr;
use std::time::Duration;

use image_provision_remote::Cmd;

use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::ImageConfig;
use crate::shell::with_libraries;
use crate::steps::stack::StackFacts;

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const HEALTH_SH: &str = include_str!("health.sh");
/// A library: the HTTPS check, for the facts and health.sh alike.
pub const HTTPS_CHECK_SH: &str = include_str!("https-check.sh");

/// The facts script (inputs BASE_DIR, DOMAIN, HTTPS_CHECK, HTTPS_ADDR),
/// with the HTTPS check in front.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/health/facts.sh", FACTS_SH).with_libraries(&[HTTPS_CHECK_SH])
}

/// health.sh as sent, with the HTTPS check in front.
pub fn health_script() -> String {
    with_libraries(&[HTTPS_CHECK_SH], HEALTH_SH)
}

/// Wait (up to `timeout`) for the orchestrator to be healthy and, with
/// `url`, for `url` to answer at `https_addr`.
pub fn wait_command(base_dir: &str, timeout: Duration, url: Option<(&str, IpAddr)>) -> Cmd {
    let cmd = Cmd::script(health_script())
        .named("health.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("TIMEOUT", timeout.as_secs().to_string());
    match url {
        Some((url, addr)) => cmd.env("URL", url).env("HTTPS_ADDR", addr.to_string()),
        None => cmd,
    }
}

#[derive(Clone, Debug, Default)]
pub struct HealthFacts {
    /// The site's domain: the one asked about, else the site override's.
    pub domain: Option<String>,
    /// https://DOMAIN/health through the host's Traefik: Ok, or curl's
    /// error; None when not checked.
    pub https: Option<Result<(), String>>,
}

impl HealthFacts {
    pub fn parse(raw: &RawFacts) -> HealthFacts {
        HealthFacts {
            domain: raw.string("health.domain"),
            https: raw.get("health.https").map(|v| match v {
                "ok" => Ok(()),
                failed => Err(failed.strip_prefix("failed:").unwrap_or(failed).trim().to_string()),
            }),
        }
    }
}

pub fn plan(stack: &StackFacts, health: &HealthFacts, img: &ImageConfig) -> Plan {
    let url = img.health_url();
    let addr = img.https_addr;
    let tell = img
        .extension_url()
        .map(|u| format!("; extension URL {u}"))
        .unwrap_or_else(|| "; no --domain: no public URL".into());
    if stack.service_health("orchestrator") == Some("healthy") {
        match &url {
            None => return Plan::Ok(format!("orchestrator healthy{tell}")),
            Some(u) if health.https == Some(Ok(())) => {
                return Plan::Ok(format!("orchestrator healthy, GET {u} answers at {addr}{tell}"));
            }
            Some(_) => {}
        }
    }
    let mut what = "orchestrator healthy".to_string();
    if let Some(u) = &url {
        what.push_str(&format!(", GET {u} at {addr}"));
    }
    let cmd = wait_command(&img.base_dir, img.health_timeout, url.as_deref().map(|u| (u, addr)));
    Plan::Act { why: format!("{what}{tell}"), actions: vec![Action::Check(cmd)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::Containers;

    fn facts(orchestrator: &str, https: &str) -> (StackFacts, HealthFacts) {
        let raw = RawFacts::parse(&format!(
            "containers.listed=yes\ndocker.networks=bridge\nstack.project_dirs=/var/docker/image\n\
             container=image\t/var/docker/image\torchestrator\trunning\to\tUp 1 minute ({orchestrator})\n{https}"
        ));
        (StackFacts::parse(&raw, &Containers::parse(&raw)), HealthFacts::parse(&raw))
    }

    /// With a domain, the health step is ok only once the facts saw the URL
    /// answer through Traefik; otherwise it runs health.sh, which waits.
    #[test]
    fn health_needs_the_https_answer_when_there_is_a_domain() {
        let img = ImageConfig::with_site();
        let (stack, health) = facts("healthy", "");
        match plan(&stack, &health, &img) {
            Plan::Act { why, .. } => assert!(why.contains("GET https://image.example.org/health"), "{why}"),
            other => panic!("{other:?}"),
        }
        let (stack, health) = facts("healthy", "health.https=ok\n");
        assert!(matches!(plan(&stack, &health, &img), Plan::Ok(_)));
        let (stack, health) = facts("healthy", "health.https=failed: curl: (7) refused\n");
        assert_eq!(health.https, Some(Err("curl: (7) refused".into())));
        assert!(matches!(plan(&stack, &health, &img), Plan::Act { .. }));
        let (stack, health) = facts("health: starting", "health.https=ok\n");
        assert!(matches!(plan(&stack, &health, &img), Plan::Act { .. }));
        let (stack, health) = facts("healthy", "");
        assert!(matches!(
            plan(&stack, &health, &ImageConfig { domain: None, ..ImageConfig::with_site() }),
            Plan::Ok(_)
        ));
    }

    /// The HTTPS check goes to the host's own Traefik: DOMAIN resolved to
    /// 127.0.0.1 unless another address is given (the tests' stand-in).
    #[test]
    fn https_health_goes_to_the_local_traefik() {
        let (stack, health) = facts("healthy", "");
        let shown = |img: &ImageConfig| match plan(&stack, &health, img) {
            Plan::Act { why, actions } => match &actions[..] {
                [Action::Check(cmd)] => (why, cmd.render(true)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let (why, cmd) = shown(&ImageConfig::with_site());
        assert!(why.contains("GET https://image.example.org/health at 127.0.0.1"), "{why}");
        assert!(cmd.contains("URL=https://image.example.org/health") && cmd.contains("HTTPS_ADDR=127.0.0.1"), "{cmd}");
        let elsewhere = ImageConfig { https_addr: "127.77.1.2".parse().unwrap(), ..ImageConfig::with_site() };
        let (why, cmd) = shown(&elsewhere);
        assert!(why.contains("at 127.77.1.2"), "{why}");
        assert!(cmd.contains("HTTPS_ADDR=127.77.1.2"), "{cmd}");
        // Both scripts make the one check, at HTTPS_ADDR (127.0.0.1 when empty).
        assert!(HTTPS_CHECK_SH.contains("--resolve"));
        for script in [HEALTH_SH, FACTS_SH] {
            assert!(script.contains("https_check ") && script.contains("${HTTPS_ADDR:-127.0.0.1}"), "{script}");
            let code = script.lines().filter(|l| !l.trim_start().starts_with('#'));
            assert!(!code.into_iter().any(|l| l.contains("curl")), "a second HTTPS check in:\n{script}");
        }
    }
}
