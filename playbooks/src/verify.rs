//! `verify` and `update`: facts and checks only. One round trip reads
//! facts.sh, image-facts.sh and verify-facts.sh together; [`evaluate`] turns
//! them into a report of named checks. `update` runs scripts/update.sh
//! (imageup again, under its time limit), then health.sh, then the report.

use std::net::IpAddr;
use std::time::Duration;

use image_provision_remote::Cmd;
use serde::Serialize;

use crate::facts::{Facts, WATCHED_PACKAGES};
use crate::image::HEALTH_SH;

pub const VERIFY_FACTS_SH: &str = include_str!("../scripts/verify-facts.sh");
pub const UPDATE_SH: &str = include_str!("../scripts/update.sh");

/// What to check, and where.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub base_dir: String,
    /// The site's host name if given; else the host's site override tells.
    pub domain: Option<String>,
    /// Check the NVIDIA driver and Docker's nvidia runtime.
    pub gpu: bool,
    /// GET https://DOMAIN/health from the host, through its own Traefik
    /// (off only in tests without Traefik's stand-in).
    pub https_check: bool,
    /// The address that check sends DOMAIN to (`curl --resolve`):
    /// [`crate::image::DEFAULT_HTTPS_ADDR`], another only in tests.
    pub https_addr: IpAddr,
    /// Check the IMAGE stack, Traefik and HTTPS (off for a server
    /// bootstrapped with --no-stack).
    pub stack: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            base_dir: crate::image::DEFAULT_BASE_DIR.into(),
            domain: None,
            gpu: true,
            https_check: true,
            https_addr: crate::image::DEFAULT_HTTPS_ADDR,
            stack: true,
        }
    }
}

/// facts.sh, image-facts.sh and verify-facts.sh, as one script.
pub fn facts_script() -> String {
    crate::facts::script(&[&crate::image::image_facts_script(), VERIFY_FACTS_SH], &["image_facts"])
}

/// update.sh, with the imageup runner it shares with stack-up.sh in front.
pub fn update_script() -> String {
    crate::shlib::with(&[crate::shlib::RUN_IMAGEUP_SH], UPDATE_SH)
}

/// The facts verify needs, in one round trip; reads only.
pub fn facts_command(o: &VerifyOptions) -> Cmd {
    Cmd::script(facts_script())
        .named("verify-facts.sh")
        .env("PACKAGES", WATCHED_PACKAGES.join(" "))
        .env("DEBIAN_COMPONENTS", crate::steps::DEBIAN_NVIDIA_COMPONENTS)
        .env("BASE_DIR", &o.base_dir)
        .env("FILES", "")
        .env("DOMAIN", o.domain.clone().unwrap_or_default())
        .env("HTTPS_CHECK", if o.https_check { "yes" } else { "no" })
        .env("HTTPS_ADDR", o.https_addr.to_string())
}

/// imageup again (with `imageup` false, compose pull and up) under
/// `timeout`; nothing else.
pub fn update_command(base_dir: &str, imageup: bool, timeout: Duration) -> Cmd {
    Cmd::script(update_script())
        .named("update.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("IMAGEUP", if imageup { "yes" } else { "no" })
        .env("TIMEOUT", timeout.as_secs().to_string())
}

/// Wait (up to `timeout`) for the orchestrator to be healthy, as the health
/// step does, without the HTTPS check (the report makes that one).
pub fn health_command(base_dir: &str, timeout: Duration) -> Cmd {
    Cmd::script(HEALTH_SH)
        .named("health.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("TIMEOUT", timeout.as_secs().to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Gpu {
    pub name: Option<String>,
    pub memory: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub os: String,
    pub driver_version: Option<String>,
    pub gpu: Gpu,
    pub docker_version: Option<String>,
    pub docker_nvidia_runtime: bool,
    pub traefik_running: bool,
    pub services: Vec<String>,
    pub running: Vec<String>,
    pub orchestrator: Option<String>,
    pub domain: Option<String>,
    pub extension_url: Option<String>,
    pub checks: Vec<Check>,
    /// Names of the failed checks.
    pub failed: Vec<&'static str>,
}

fn words(f: &Facts, key: &str) -> Vec<String> {
    f.get(key).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

/// The checks, from the facts of [`facts_command`].
pub fn evaluate(f: &Facts, o: &VerifyOptions) -> Report {
    let mut checks = Vec::new();
    let mut check = |name, ok: bool, detail: String| {
        checks.push(Check { name, status: if ok { Status::Ok } else { Status::Failed }, detail })
    };
    let skip = |name, detail: &str| Check { name, status: Status::Skipped, detail: detail.into() };

    // nvidia-smi: "name, driver, memory".
    let smi: Vec<String> = f.nvidia_smi().map(|s| s.split(',').map(|p| p.trim().to_string()).collect()).unwrap_or_default();
    let gpu = Gpu { name: smi.first().cloned(), memory: smi.get(2).cloned() };
    let driver_version = smi.get(1).cloned();
    let mut extra = Vec::new();
    if o.gpu {
        match f.nvidia_smi() {
            Some(s) => check("driver", true, format!("nvidia-smi: {s}")),
            None => check(
                "driver",
                false,
                f.nvidia_smi_error()
                    .map(|e| format!("nvidia-smi fails: {e}"))
                    .unwrap_or_else(|| "nvidia-smi not found (no NVIDIA driver)".into()),
            ),
        }
    } else {
        extra.push(skip("driver", "--no-gpu"));
    }

    let docker_answers = f.docker_answers();
    check(
        "docker",
        f.docker_version().is_some() && docker_answers,
        match (f.docker_version(), docker_answers) {
            (Some(v), true) => v.to_string(),
            (Some(v), false) => format!("{v}, but the daemon does not answer"),
            (None, _) => "docker not installed".into(),
        },
    );
    let nvidia_runtime = f.docker_has_nvidia_runtime();
    if o.gpu {
        check(
            "nvidia-runtime",
            nvidia_runtime,
            if nvidia_runtime { "Docker lists the nvidia runtime".into() } else { "Docker does not list the nvidia runtime".into() },
        );
    }

    let domain = o.domain.clone().or_else(|| f.get("site.domain").map(str::to_string));
    let traefik_running = f.get("traefik.running").is_some_and(|r| r.split_whitespace().any(|n| n == "traefik"));
    let traefik_check = if domain.is_some() {
        Some((traefik_running, if traefik_running { "container traefik running".to_string() } else { "Traefik is not running".into() }))
    } else {
        None
    };
    let services = words(f, "image.services");
    let running = words(f, "image.running");
    let orchestrator = f.get("image.orchestrator").map(str::to_string);
    if !o.stack {
        for name in ["traefik", "stack", "orchestrator", "https"] {
            extra.push(skip(name, "--no-stack: no IMAGE stack on this server"));
        }
    } else {
        if let Some((ok, detail)) = traefik_check {
            check("traefik", ok, detail);
        }

        let down: Vec<&String> = services.iter().filter(|s| !running.contains(s)).collect();
        check(
            "stack",
            !services.is_empty() && down.is_empty(),
            if services.is_empty() {
                format!("no IMAGE stack in {}", o.base_dir)
            } else if down.is_empty() {
                format!("{} services running", services.len())
            } else {
                format!("not running: {}", down.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            },
        );
        check(
            "orchestrator",
            orchestrator.as_deref() == Some("healthy"),
            format!("orchestrator {}", orchestrator.as_deref().unwrap_or("absent")),
        );
        if let Some(d) = &domain {
            match f.get("https.health") {
                Some("ok") => check("https", true, format!("GET https://{d}/health at {} answered", o.https_addr)),
                Some(e) => check("https", false, format!("GET https://{d}/health at {} {e}", o.https_addr)),
                None => extra.push(skip("https", "not checked from here")),
            }
        }
        if domain.is_none() {
            extra.push(skip("traefik", "no domain: no site to route"));
        }
    }
    checks.extend(extra);
    let failed: Vec<&'static str> = checks.iter().filter(|c| c.status == Status::Failed).map(|c| c.name).collect();
    Report {
        healthy: failed.is_empty(),
        os: f.pretty(),
        driver_version,
        gpu,
        docker_version: f.docker_version().map(str::to_string),
        docker_nvidia_runtime: nvidia_runtime,
        traefik_running,
        services,
        running,
        orchestrator,
        extension_url: domain.as_ref().filter(|_| o.stack).map(|d| format!("https://{d}/")),
        domain,
        checks,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A --no-stack server is healthy with Docker and the GPU alone.
    #[test]
    fn no_stack_checks_only_docker_and_the_gpu() {
        let text = "docker.version=Docker version 27.1\ndocker.networks=bridge\ndocker.runtimes={\"nvidia\":{}}\n\
                    nvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\n";
        let r = evaluate(&Facts::parse(text), &VerifyOptions { stack: false, ..Default::default() });
        assert!(r.healthy, "{:?}", r.failed);
        let skipped: Vec<&str> = r.checks.iter().filter(|c| c.status == Status::Skipped).map(|c| c.name).collect();
        assert_eq!(skipped, ["traefik", "stack", "orchestrator", "https"]);
        assert!(!evaluate(&Facts::parse(text), &VerifyOptions::default()).healthy, "with the stack checked");
    }

    /// verify's HTTPS check goes to the host's own Traefik: the domain
    /// resolved to 127.0.0.1, or to the address given (the tests' stand-in).
    #[test]
    fn https_check_goes_to_the_local_traefik() {
        let shown = facts_command(&VerifyOptions::default()).render(true);
        assert!(shown.contains("HTTPS_CHECK=yes HTTPS_ADDR=127.0.0.1"), "{shown}");
        let o = VerifyOptions { https_addr: "127.77.1.2".parse().unwrap(), ..Default::default() };
        assert!(facts_command(&o).render(true).contains("HTTPS_ADDR=127.77.1.2"));
        assert!(VERIFY_FACTS_SH.contains(r#"--resolve "$site_domain:443:${HTTPS_ADDR:-127.0.0.1}""#));
        let text = "site.domain=image.example.org\nhttps.health=ok\n";
        let r = evaluate(&Facts::parse(text), &o);
        let https = r.checks.iter().find(|c| c.name == "https").unwrap();
        assert_eq!(https.detail, "GET https://image.example.org/health at 127.77.1.2 answered");
    }

    #[test]
    fn healthy_and_not() {
        let text = "docker.version=Docker version 27.1\ndocker.networks=bridge image traefik\n\
                    docker.runtimes={\"nvidia\":{}}\nnvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\n\
                    traefik.running=traefik\nimage.services=orchestrator tat\nimage.running=orchestrator tat\n\
                    image.orchestrator=healthy\nsite.domain=image.example.org\n";
        let r = evaluate(&Facts::parse(text), &VerifyOptions { https_check: false, ..Default::default() });
        assert!(r.healthy, "{r:?}");
        assert_eq!(r.driver_version.as_deref(), Some("535.230.02"));
        assert_eq!(r.gpu.memory.as_deref(), Some("23028 MiB"));
        assert_eq!(r.extension_url.as_deref(), Some("https://image.example.org/"));
        let down = text.replace("image.running=orchestrator tat", "image.running=tat").replace("=healthy", "=exited");
        let r = evaluate(&Facts::parse(&down), &VerifyOptions::default());
        assert_eq!(r.failed, ["stack", "orchestrator"]);
    }
}
