//! The verify report (`verify`, and `update` after it acted): the same
//! facts as the host steps, in one round trip that changes nothing, turned
//! into named checks ([`evaluate`]).

use image_provision_remote::Cmd;
use serde::Serialize;

use crate::gather::{self, Facts, FactsInputs};
use crate::settings::{DEFAULT_BASE_DIR, DEFAULT_HTTPS_ADDR, Site, TlsEnd, acme_server_name, extension_url};
use crate::steps::health::{self, CERTIFICATE_WARN_DAYS, Certificate};
use crate::steps::layout::keys::KeylessService;
use crate::steps::stack::ServiceTrouble;
use crate::steps::traefik;
use crate::steps::upkeep::UpkeepFacts;

/// What to check, and where.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub base_dir: String,
    /// The site's host name if given; else the host's site override tells.
    pub domain: Option<String>,
    /// Check the NVIDIA driver and Docker's nvidia runtime.
    pub gpu: bool,
    /// GET https://DOMAIN/health (http:// behind a load balancer) from the
    /// host, through its own Traefik at [`DEFAULT_HTTPS_ADDR`] (`curl
    /// --resolve`; off only in tests without real Traefik).
    pub https_check: bool,
    /// Check the IMAGE stack, Traefik and HTTPS (off for a server
    /// bootstrapped with --no-stack).
    pub stack: bool,
    /// Send the request that proves the stack (POST /render/preprocess)
    /// once everything else is well (off with --no-request).
    pub request: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            base_dir: DEFAULT_BASE_DIR.into(),
            domain: None,
            gpu: true,
            https_check: true,
            stack: true,
            request: true,
        }
    }
}

/// The facts the report needs, in one round trip; reads only.
pub fn facts_command(o: &ReportOptions) -> Cmd {
    gather::command(&FactsInputs::for_report(&o.base_dir, o.domain.as_deref(), o.https_check))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Well now, not for long (a certificate about to end): not a failure.
    Warning,
    Failed,
    Skipped,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
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
    /// The certificate Traefik serves for the domain, when read.
    pub certificate: Option<CertificateReport>,
    pub os: String,
    pub driver_version: Option<String>,
    pub gpu: Gpu,
    pub docker_version: Option<String>,
    pub docker_nvidia_runtime: bool,
    pub traefik_running: bool,
    /// The ACME directory Traefik asks for certificates, when it is set up.
    pub acme_server: Option<String>,
    pub services: Vec<String>,
    pub running: Vec<String>,
    /// The services that need the LLM.
    pub llm_services: Vec<String>,
    /// Services left out for want of an LLM (no key in config/llm.env: a
    /// server set up with --no-llm).
    pub without_llm: Vec<String>,
    /// Services left off for want of keys their config/*.env file does not
    /// set (the OCR preprocessor without AZURE_API_KEY and FREEOCR_API_KEY),
    /// each with the file and the keys.
    pub without_keys: Vec<KeylessService>,
    /// The services that must run and are not running or not healthy, with
    /// their state and the last lines of their log.
    pub not_ok: Vec<ServiceTrouble>,
    pub orchestrator: Option<String>,
    pub domain: Option<String>,
    /// Where the site's TLS ends, as the host's site override routes it.
    pub tls_end: TlsEnd,
    pub extension_url: Option<String>,
    /// image-provision's units on the host: "ENABLED ACTIVE" by name.
    pub upkeep: std::collections::BTreeMap<String, String>,
    pub checks: Vec<Check>,
    /// Names of the failed checks.
    pub failed: Vec<&'static str>,
}

/// The request that proves the stack, once every other check passed (and
/// not with --no-request): POST /render/preprocess through the site's
/// Traefik when the server has one, else to the orchestrator; with the LLM
/// configured, the categoriser and the caption must answer.
pub fn request_command(r: &Report, o: &ReportOptions, timeout: std::time::Duration) -> Option<Cmd> {
    if !o.stack || !o.request || !r.healthy || r.services.is_empty() {
        return None;
    }
    let llm = (!r.llm_services.is_empty() && r.without_llm.is_empty()).then_some(&r.llm_services[..]);
    Some(health::request_command(&o.base_dir, r.checked_site(o).as_ref(), llm, timeout))
}

impl Report {
    /// The site the host's own checks reach through its Traefik, when
    /// they run: the domain, over HTTPS or, behind a load balancer, HTTP.
    pub fn checked_site(&self, o: &ReportOptions) -> Option<Site> {
        let domain = self.domain.clone().filter(|_| o.https_check)?;
        Some(Site { domain, tls_end: self.tls_end })
    }

    /// `service` is left out of what must run: for want of an LLM or of
    /// its keys.
    pub fn left_out(&self, service: &str) -> bool {
        self.without_llm.iter().any(|s| s == service) || self.without_keys.iter().any(|k| k.service == service)
    }

    /// Add the request's verdict (`Ok(what answered)` or `Err(why)`) as the
    /// check "request".
    pub fn add_request(&mut self, result: Result<String, String>) {
        let (status, detail) = match result {
            Ok(detail) => (Status::Ok, detail),
            Err(why) => (Status::Failed, why),
        };
        if status == Status::Failed {
            self.failed.push("request");
            self.healthy = false;
        }
        self.checks.push(Check { name: "request", status, detail });
    }
}

/// The checks, from the facts of [`facts_command`].
pub fn evaluate(f: &Facts, o: &ReportOptions) -> Report {
    let mut checks = Vec::new();
    let mut check = |name, ok: bool, detail: String| {
        checks.push(Check { name, status: if ok { Status::Ok } else { Status::Failed }, detail })
    };
    let skip = |name, detail: &str| Check { name, status: Status::Skipped, detail: detail.into() };

    let smi = f.nvidia.smi.as_ref();
    let gpu = Gpu { name: smi.and_then(|s| s.name.clone()), memory: smi.and_then(|s| s.memory.clone()) };
    let mut extra = Vec::new();
    if o.gpu {
        match smi {
            Some(s) => check("driver", true, format!("nvidia-smi: {}", s.line)),
            None => check(
                "driver",
                false,
                f.nvidia
                    .smi_error
                    .as_ref()
                    .map(|e| match crate::steps::nvidia::smi_error_advice(e) {
                        Some(advice) => format!("nvidia-smi fails: {e}: {advice}"),
                        None => format!("nvidia-smi fails: {e}"),
                    })
                    .unwrap_or_else(|| "nvidia-smi not found (no NVIDIA driver)".into()),
            ),
        }
    } else {
        extra.push(skip("driver", "--no-gpu"));
    }

    let docker_answers = f.containers.listed;
    let docker_version = f.docker.version.clone();
    check(
        "docker",
        docker_version.is_some() && docker_answers,
        match (&docker_version, docker_answers) {
            (Some(v), true) => v.to_string(),
            (Some(v), false) => format!("{v}, but the daemon does not answer"),
            (None, _) => "docker not installed".into(),
        },
    );
    let nvidia_runtime = f.docker.has_runtime("nvidia");
    if o.gpu {
        check(
            "nvidia-runtime",
            nvidia_runtime,
            if nvidia_runtime {
                "Docker lists the nvidia runtime".into()
            } else {
                "Docker does not list the nvidia runtime".into()
            },
        );
    }

    let domain = o.domain.clone().or_else(|| f.health.domain.clone());
    let tls_end = f.health.tls_end;
    let traefik_running = traefik::running(&f.containers);
    let services = f.stack.services.clone();
    let running = f.stack.running();
    let orchestrator = f.stack.service_health("orchestrator").map(str::to_string);
    if !o.stack {
        for name in ["traefik", "stack", "orchestrator", "https"] {
            extra.push(skip(name, "--no-stack: no IMAGE stack on this server"));
        }
    } else {
        if domain.is_some() {
            check(
                "traefik",
                traefik_running,
                match (traefik_running, &f.traefik.acme_server) {
                    (true, _) if tls_end == TlsEnd::Balancer => {
                        "container traefik running on port 80; TLS ends in the load balancer in front".to_string()
                    }
                    (true, Some(s)) => format!("container traefik running; certificates from {}", acme_server_name(s)),
                    (true, None) => "container traefik running".to_string(),
                    (false, _) => "Traefik is not running".into(),
                },
            );
        }
        let not_ok = f.stack.not_ok();
        check(
            "stack",
            !services.is_empty() && not_ok.is_empty(),
            if services.is_empty() {
                format!("no IMAGE stack in {}", o.base_dir)
            } else if not_ok.is_empty() {
                format!("{}, healthy where their images check", f.stack.running_summary())
            } else {
                format!(
                    "not running or not healthy: {}",
                    not_ok.iter().map(ServiceTrouble::describe).collect::<Vec<_>>().join(", ")
                )
            },
        );
        check(
            "orchestrator",
            orchestrator.as_deref() == Some("healthy"),
            format!("orchestrator {}", orchestrator.as_deref().unwrap_or("absent")),
        );
        if let Some(d) = &domain {
            // Named by its scheme: "http" behind a load balancer, where this
            // host serves no TLS.
            let site = Site { domain: d.clone(), tls_end };
            let (name, url) = (tls_end.scheme(), site.health_url());
            match &f.health.https {
                Some(Ok(())) => check(name, true, format!("GET {url} at {DEFAULT_HTTPS_ADDR} answered")),
                Some(Err(e)) => check(name, false, format!("GET {url} at {DEFAULT_HTTPS_ADDR} failed: {e}")),
                None => extra.push(skip(name, "not checked from here")),
            }
            if let Some(c) = &f.health.certificate {
                let (status, detail) = certificate_check(c, d, jiff::Timestamp::now());
                extra.push(Check { name: "certificate", status, detail });
            }
        } else {
            extra.push(skip("traefik", "no domain: no site to route"));
        }
    }
    // A local LLM (its key on the host): running, serving the model the
    // stack's llm.env names, and answering a tiny chat.
    if let Some(spec) = f.llm.local().filter(|_| o.stack) {
        let (ok, detail) = llm_check(f, spec);
        check("llm", ok, detail);
    }
    if o.stack || !f.upkeep.units.is_empty() {
        let (ok, detail) = upkeep_check(&f.upkeep);
        check("upkeep", ok, detail);
    }
    checks.extend(extra);
    let failed: Vec<&'static str> = checks.iter().filter(|c| c.status == Status::Failed).map(|c| c.name).collect();
    Report {
        healthy: failed.is_empty(),
        certificate: f.health.certificate.as_ref().map(|c| CertificateReport::of(c, jiff::Timestamp::now())),
        os: f.host.pretty.clone(),
        driver_version: smi.and_then(|s| s.driver.clone()),
        gpu,
        docker_version,
        docker_nvidia_runtime: nvidia_runtime,
        traefik_running,
        acme_server: f.traefik.acme_server.clone(),
        services,
        running,
        llm_services: f.stack.llm_services.clone(),
        without_llm: f.stack.without_llm(),
        without_keys: f.stack.without_keys(),
        not_ok: if o.stack { f.stack.not_ok() } else { Vec::new() },
        orchestrator,
        extension_url: domain.as_ref().filter(|_| o.stack).map(|d| extension_url(d)),
        domain,
        tls_end,
        upkeep: f.upkeep.units.iter().map(|(u, s)| (u.clone(), format!("{} {}", s.enabled, s.active))).collect(),
        checks,
        failed,
    }
}

/// The local LLM, as verify sees it.
fn llm_check(f: &Facts, spec: &crate::steps::llm::RuntimeSpec) -> (bool, String) {
    let model = f.llm.env_model.clone().unwrap_or_default();
    let (name, container) = (spec.name, spec.container);
    if !crate::steps::llm::running(spec, &f.containers) {
        return (false, format!("the {container} container is not running (docker logs {container})"));
    }
    let Some(serves) = &f.llm.of(spec.runtime).serves else {
        return (false, format!("{name} does not answer GET /v1/models (still loading? docker logs {container})"));
    };
    if !serves.contains(&model) {
        return (false, format!("{name} serves {}, not llm.env's {model}", serves.join(", ")));
    }
    match &f.llm.chat {
        Some(Ok(ms)) => (true, format!("{name} serves {model}; a 4-token chat answered in {ms} ms")),
        Some(Err(e)) => (false, format!("{name} serves {model}, but a chat completion failed: {e}")),
        None => (true, format!("{name} serves {model}")),
    }
}

/// The served certificate in the report's JSON.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateReport {
    pub issuer: String,
    /// RFC 3339.
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub staging: bool,
    pub traefik_default: bool,
}

impl CertificateReport {
    fn of(c: &Certificate, now: jiff::Timestamp) -> CertificateReport {
        CertificateReport {
            issuer: c.issuer.clone(),
            not_after: c.not_after.map(|t| t.to_string()),
            days_left: c.days_left(now),
            staging: c.is_staging(),
            traefik_default: c.is_traefik_default(),
        }
    }
}

/// The certificate Traefik serves for `domain`: Traefik's own default
/// (Let's Encrypt issued none: the usual cause is DNS) and an ended one
/// fail; one ending within [`CERTIFICATE_WARN_DAYS`] days is a warning.
fn certificate_check(c: &Certificate, domain: &str, now: jiff::Timestamp) -> (Status, String) {
    if c.is_traefik_default() {
        return (
            Status::Failed,
            format!(
                "Traefik serves its own default certificate for {domain}: no ACME certificate was issued. \
                 The HTTP challenge needs {domain}'s DNS A record to point at this server and port 80 to reach it; \
                 Traefik tries again by itself once they do"
            ),
        );
    }
    let staging = if c.is_staging() { "; Let's Encrypt staging: browsers do not trust it" } else { "" };
    let Some(days) = c.days_left(now) else {
        return (Status::Ok, format!("issued by {}{staging}", c.issuer));
    };
    let end = c.not_after.map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
    let detail = format!("issued by {}, ends {end} ({days} days left){staging}", c.issuer);
    let status = match days {
        d if d < 0 => Status::Failed,
        d if d < CERTIFICATE_WARN_DAYS => Status::Warning,
        _ => Status::Ok,
    };
    (status, detail)
}

/// What runs on the server by itself: well when each timer installed is
/// enabled and waiting and no unit failed its last run. A stack that does
/// not start at boot is said, not failed (--no-start-at-boot chose it).
fn upkeep_check(u: &UpkeepFacts) -> (bool, String) {
    let mut trouble = Vec::new();
    let mut said = Vec::new();
    match u.state("image-provision-stack.service") {
        Some(s) if s.enabled == "enabled" => said.push("the stack starts at boot".to_string()),
        _ => said.push("the stack does not start at boot (run bootstrap again to install the unit)".to_string()),
    }
    for (unit, s) in &u.units {
        if unit.ends_with(".timer") {
            if s.enabled == "enabled" && s.active == "active" {
                said.push(format!("{unit} waiting"));
            } else {
                trouble.push(format!("{unit} {} {}", s.enabled, s.active));
            }
        } else if s.active == "failed" {
            trouble.push(format!("{unit} failed its last run (journalctl -u {unit})"));
        }
    }
    if trouble.is_empty() {
        (true, said.join("; "))
    } else {
        (false, format!("{}; {}", trouble.join("; "), said.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A --no-stack server is healthy with Docker and the GPU alone.
    #[test]
    fn no_stack_checks_only_docker_and_the_gpu() {
        let text = "docker.version=Docker version 27.1\ncontainers.listed=yes\ndocker.networks=bridge\ndocker.runtimes={\"nvidia\":{}}\n\
                    nvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\n";
        let r = evaluate(&Facts::parse(text), &ReportOptions { stack: false, ..Default::default() });
        assert!(r.healthy, "{:?}", r.failed);
        let skipped: Vec<&str> = r.checks.iter().filter(|c| c.status == Status::Skipped).map(|c| c.name).collect();
        assert_eq!(skipped, ["traefik", "stack", "orchestrator", "https"]);
        assert!(!evaluate(&Facts::parse(text), &ReportOptions::default()).healthy, "with the stack checked");
    }

    /// verify's HTTPS check goes to the host's own Traefik: the domain
    /// resolved to 127.0.0.1.
    #[test]
    fn https_check_goes_to_the_local_traefik() {
        let shown = facts_command(&ReportOptions::default()).render(true);
        assert!(shown.contains("HTTPS_CHECK=yes HTTPS_ADDR=127.0.0.1"), "{shown}");
        let o = ReportOptions::default();
        let text = "health.domain=image.example.org\nhealth.https=ok\n";
        let r = evaluate(&Facts::parse(text), &o);
        let https = r.checks.iter().find(|c| c.name == "https").unwrap();
        assert_eq!(https.detail, "GET https://image.example.org/health at 127.0.0.1 answered");
        assert_eq!(r.tls_end, TlsEnd::Traefik);
    }

    /// Behind a load balancer (health.tls_end, as the facts read it from
    /// the site override): the check is named "http" and asks port 80's
    /// http://DOMAIN/health; the extension still gets the HTTPS URL; the
    /// request and verify's wait go over HTTP too.
    #[test]
    fn behind_a_balancer_the_check_is_http() {
        let text = "health.domain=image.example.org\nhealth.tls_end=balancer\nhealth.https=ok\n";
        let o = ReportOptions::default();
        let r = evaluate(&Facts::parse(text), &o);
        assert_eq!(r.tls_end, TlsEnd::Balancer);
        assert!(!r.checks.iter().any(|c| c.name == "https"), "{:?}", r.checks);
        let http = r.checks.iter().find(|c| c.name == "http").unwrap();
        assert_eq!(
            (http.status, http.detail.as_str()),
            (Status::Ok, "GET http://image.example.org/health at 127.0.0.1 answered")
        );
        assert_eq!(r.extension_url.as_deref(), Some("https://image.example.org/"));
        let failed = text.replace("health.https=ok", "health.https=failed: curl: (7) refused");
        assert_eq!(
            evaluate(&Facts::parse(&failed), &o).checks.iter().find(|c| c.name == "http").unwrap().status,
            Status::Failed
        );
        let site = r.checked_site(&o).unwrap();
        assert_eq!(site.preprocess_url(), "http://image.example.org/render/preprocess");
        assert_eq!(r.checked_site(&ReportOptions { https_check: false, ..o }), None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["tls_end"], "balancer");
        // Unknown or absent: TLS in Traefik, as every server before.
        assert_eq!(Facts::parse("health.tls_end=\n").health.tls_end, TlsEnd::Traefik);
    }

    /// The served certificate: issuer and days left; Traefik's default and
    /// an ended one fail, one ending within two weeks warns, staging is said.
    #[test]
    fn certificate_states() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let raw = |issuer: &str, end: &str| {
            let f = Facts::parse(&format!("health.cert_issuer={issuer}\nhealth.cert_not_after={end}\n"));
            f.health.certificate.unwrap()
        };
        let pebble = raw("CN = Pebble Intermediate CA 6a1d5e", "2027-03-01 12:00:00Z");
        let (status, detail) = certificate_check(&pebble, "image.example.org", now);
        assert_eq!(status, Status::Ok);
        assert_eq!(detail, "issued by CN = Pebble Intermediate CA 6a1d5e, ends 2027-03-01 (90 days left)");
        let soon = raw("C = US, O = Let's Encrypt, CN = R11", "2026-12-10 00:00:00Z");
        assert_eq!(certificate_check(&soon, "d.example", now).0, Status::Warning);
        let ended = raw("C = US, O = Let's Encrypt, CN = R11", "2026-11-30 00:00:00Z");
        assert_eq!(certificate_check(&ended, "d.example", now).0, Status::Failed);
        let staging =
            raw("C = US, O = (STAGING) Let's Encrypt, CN = (STAGING) Counterfeit Cashew R10", "2027-02-01 00:00:00Z");
        assert!(certificate_check(&staging, "d.example", now).1.contains("staging: browsers do not trust it"));
        assert!(CertificateReport::of(&staging, now).staging);
        let default = raw("CN = TRAEFIK DEFAULT CERT", "2027-12-01 00:00:00Z");
        let (status, detail) = certificate_check(&default, "d.example", now);
        assert_eq!(status, Status::Failed);
        assert!(detail.contains("DNS A record") && detail.contains("port 80"), "{detail}");
    }

    #[test]
    fn healthy_and_not() {
        let text = "docker.version=Docker version 27.1\ncontainers.listed=yes\ndocker.networks=bridge image traefik\n\
                    docker.runtimes={\"nvidia\":{}}\nnvidia.smi=NVIDIA A10G, 535.230.02, 23028 MiB\n\
                    container=traefik\t/var/docker/traefik\ttraefik\trunning\ttraefik\tUp 1 hour\n\
                    stack.project_dirs=/var/docker/image\nstack.services=orchestrator tat\n\
                    container=image\t/var/docker/image\torchestrator\trunning\timage-orchestrator-1\tUp 1 hour (healthy)\n\
                    container=image\t/var/docker/image\ttat\trunning\timage-tat-1\tUp 1 hour\n\
                    health.domain=image.example.org\n";
        let r = evaluate(&Facts::parse(text), &ReportOptions { https_check: false, ..Default::default() });
        assert!(r.healthy, "{r:?}");
        assert_eq!(r.driver_version.as_deref(), Some("535.230.02"));
        assert_eq!(r.gpu.memory.as_deref(), Some("23028 MiB"));
        assert_eq!(r.extension_url.as_deref(), Some("https://image.example.org/"));
        let staging =
            format!("{text}traefik.configured=yes\ntraefik.acme_server={}\n", crate::settings::LETS_ENCRYPT_STAGING);
        let r = evaluate(&Facts::parse(&staging), &ReportOptions { https_check: false, ..Default::default() });
        let traefik = r.checks.iter().find(|c| c.name == "traefik").unwrap();
        assert!(traefik.detail.contains("Let's Encrypt staging"), "{}", traefik.detail);
        assert_eq!(r.acme_server.as_deref(), Some(crate::settings::LETS_ENCRYPT_STAGING));
        let down = text.replace("orchestrator\trunning", "orchestrator\texited");
        let r = evaluate(&Facts::parse(&down), &ReportOptions::default());
        assert_eq!(r.failed, ["stack", "orchestrator"]);
    }
}
