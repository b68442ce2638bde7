//! The health step: the orchestrator container is healthy (its own health
//! check) and, with a domain, https://DOMAIN/health answers through the
//! host's own Traefik (the one HTTPS check, https-check.sh, shared by the
//! facts and health.sh; behind a load balancer that ends TLS,
//! http://DOMAIN/health on port 80). verify and update read the same facts.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{DEFAULT_HTTPS_ADDR, ImageConfig, PREPROCESS_PATH, Site, TlsEnd};
use crate::shell::with_libraries;
use crate::steps::stack::StackFacts;

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const HEALTH_SH: &str = include_str!("health.sh");
/// A library: the HTTPS check, for the facts and health.sh alike.
pub const HTTPS_CHECK_SH: &str = include_str!("https-check.sh");

/// The facts script (inputs BASE_DIR, DOMAIN, TLS_END, HTTPS_CHECK,
/// HTTPS_ADDR, CERTIFICATE), with the HTTPS check in front.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/health/facts.sh", FACTS_SH).with_libraries(&[HTTPS_CHECK_SH])
}

/// health.sh as sent, with the HTTPS check in front.
pub fn health_script() -> String {
    with_libraries(&[HTTPS_CHECK_SH], HEALTH_SH)
}

/// The request that proves the stack (render-request.sh).
pub const RENDER_REQUEST_SH: &str = include_str!("render-request.sh");
/// The graphic it sends: a small PNG of two coloured blocks, ours.
const PROBE_PNG: &[u8] = include_bytes!("probe.png");
const PROBE_DIMENSIONS: [u32; 2] = [64, 48];
/// The ids under which IMAGE's LLM preprocessors answer: content-categoriser
/// and graphic-caption (their `name`, the keys of `preprocessors`).
pub const CATEGORISER_ID: &str = "ca.mcgill.a11y.image.preprocessor.contentCategoriser";
pub const CAPTION_ID: &str = "ca.mcgill.a11y.image.preprocessor.graphic-caption";

/// A graphic request for the probe PNG, valid against IMAGE's
/// request.schema.json: a fresh UUID v4, the time, and a graphic of its
/// own. IMAGE's orchestrator keeps each preprocessor's answer in memcached
/// for an hour (a service's `ca.mcgill.a11y.image.cacheTimeout` label),
/// keyed by the graphic's data URL and the preprocessor, and a request has
/// no way to skip that cache: the same picture every time would be answered
/// from it for an hour after a preprocessor or the LLM died. So the PNG
/// carries the request's UUID in a text chunk ([`probe_png`]): other bytes,
/// another key, the same pixels for the preprocessors.
pub fn probe_request() -> String {
    use base64::Engine;
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let uuid = uuid::Uuid::new_v4().to_string();
    let png = probe_png(&uuid);
    serde_json::json!({
        "request_uuid": uuid,
        "timestamp": timestamp,
        "graphic": format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)),
        "dimensions": PROBE_DIMENSIONS,
        "context": "",
        "language": "en",
        "capabilities": [],
        "renderers": ["ca.mcgill.a11y.image.renderer.Text"],
    })
    .to_string()
}

/// The probe PNG with a `tEXt` chunk "Comment" = "image-provision probe
/// NONCE" right after IHDR (where PNG readers take it and ignore it).
pub fn probe_png(nonce: &str) -> Vec<u8> {
    // The signature (8 bytes), then IHDR: length, type, 13 bytes, CRC.
    let after_ihdr = 8 + 4 + 4 + 13 + 4;
    let mut data = b"Comment\0image-provision probe ".to_vec();
    data.extend_from_slice(nonce.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let typed = [&b"tEXt"[..], &data[..]].concat();
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32(&typed).to_be_bytes());
    [&PROBE_PNG[..after_ihdr], &chunk[..], &PROBE_PNG[after_ihdr..]].concat()
}

/// PNG's CRC-32 (ISO 3309, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `url` through the host's own Traefik: its name resolved to
/// [`DEFAULT_HTTPS_ADDR`], whatever DNS says.
fn through_traefik(cmd: Cmd, url: Option<String>) -> Cmd {
    match url {
        Some(url) => cmd.env("URL", url).env("HTTPS_ADDR", DEFAULT_HTTPS_ADDR.to_string()),
        None => cmd,
    }
}

/// POST the probe request to /render/preprocess: through the host's Traefik
/// when the server has a `site` (its domain; over HTTP behind a load
/// balancer), else to the orchestrator on the image network; with `llm`
/// (the services that need the LLM, from the compose file), the
/// categoriser and the caption must answer, and a failure names those
/// services.
pub fn request_command(base_dir: &str, site: Option<&Site>, llm: Option<&[String]>, timeout: Duration) -> Cmd {
    let require = if llm.is_some() { format!("{CATEGORISER_ID} {CAPTION_ID}") } else { String::new() };
    let cmd = Cmd::script(RENDER_REQUEST_SH)
        .named("render-request.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("REQUEST", probe_request())
        .env("REQUIRE", require)
        .env("LLM_SERVICES", llm.unwrap_or_default().join(" "))
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout));
    through_traefik(cmd, site.map(Site::preprocess_url))
}

/// Wait (up to `timeout`) for every one of `services` to run, healthy
/// where its image checks, and, with a `site`, for its health URL to answer
/// through the host's Traefik.
pub fn wait_command(base_dir: &str, services: &[String], timeout: Duration, site: Option<&Site>) -> Cmd {
    let cmd = Cmd::script(health_script())
        .named("health.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("SERVICES", services.join(" "))
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout));
    through_traefik(cmd, site.map(Site::health_url))
}

#[derive(Clone, Debug, Default)]
pub struct HealthFacts {
    /// The site's domain: the one asked about, else the site override's.
    pub domain: Option<String>,
    /// Where the site's TLS ends: as asked, else as the site override
    /// routes it.
    pub tls_end: TlsEnd,
    /// SCHEME://DOMAIN/health through the host's Traefik: Ok, or curl's
    /// error; None when not checked.
    pub https: Option<Result<(), String>>,
    /// The certificate Traefik serves for the domain (verify and update
    /// ask): its issuer, and when it ends.
    pub certificate: Option<Certificate>,
}

/// A served certificate, as openssl read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub issuer: String,
    pub not_after: Option<jiff::Timestamp>,
}

/// Where a certificate that expires this soon is a warning.
pub const CERTIFICATE_WARN_DAYS: i64 = 14;

impl Certificate {
    /// Traefik's own certificate, served while no ACME certificate exists
    /// for the name (the challenge failed, or has not run yet).
    pub fn is_traefik_default(&self) -> bool {
        self.issuer.contains("TRAEFIK DEFAULT CERT")
    }
    /// Let's Encrypt's staging intermediates are named "(STAGING) ...".
    pub fn is_staging(&self) -> bool {
        self.issuer.contains("(STAGING)")
    }
    /// Whole days from `now` to its end (negative once it has ended).
    pub fn days_left(&self, now: jiff::Timestamp) -> Option<i64> {
        self.not_after.map(|end| end.as_second().saturating_sub(now.as_second()).div_euclid(86_400))
    }
}

impl HealthFacts {
    pub fn parse(raw: &RawFacts) -> HealthFacts {
        HealthFacts {
            domain: raw.string("health.domain"),
            tls_end: raw.get("health.tls_end").and_then(TlsEnd::parse).unwrap_or_default(),
            https: raw.get("health.https").map(|v| match v {
                "ok" => Ok(()),
                failed => Err(failed.strip_prefix("failed:").unwrap_or(failed).trim().to_string()),
            }),
            certificate: raw.string("health.cert_issuer").map(|issuer| Certificate {
                issuer,
                // openssl's ISO 8601: "2027-03-01 12:00:00Z".
                not_after: raw.string("health.cert_not_after").and_then(|t| t.replacen(' ', "T", 1).parse().ok()),
            }),
        }
    }
}

/// `stack_changed`: the stack step brought the stack up in this run, so the
/// request is sent even when every service already looks well (a re-run
/// that changed nothing needs no request: the stack answered one before).
pub fn plan(stack: &StackFacts, health: &HealthFacts, img: &ImageConfig, stack_changed: bool) -> Plan {
    let url = img.health_url();
    let addr = DEFAULT_HTTPS_ADDR;
    let tell = img
        .extension_url()
        .map(|u| format!("; extension URL {u}"))
        .unwrap_or_else(|| "; no --domain: no public URL".into());
    let expected = stack.expected();
    let well = !expected.is_empty() && stack.not_ok().is_empty();
    if well && !stack_changed && stack.service_health("orchestrator") == Some("healthy") {
        let all = format!("orchestrator healthy, {} services well", expected.len());
        match &url {
            None => return Plan::Ok(format!("{all}{tell}")),
            Some(u) if health.https == Some(Ok(())) => {
                return Plan::Ok(format!("{all}, GET {u} answers at {addr}{tell}"));
            }
            Some(_) => {}
        }
    }
    let mut what = "every service running, healthy where its image checks".to_string();
    if let Some(u) = &url {
        what.push_str(&format!(", GET {u} at {addr}"));
    }
    let site = img.checked_site();
    let wait = wait_command(&img.base_dir, &expected, img.health_timeout, site.as_ref());
    let llm = img.llm.present().then_some(&stack.llm_services[..]);
    let request = request_command(&img.base_dir, site.as_ref(), llm, img.health_timeout);
    what.push_str(&format!(", POST {PREPROCESS_PATH} answered"));
    if img.llm.present() {
        what.push_str(" by the categoriser and the caption");
    }
    // The extension URL is in the Ok texts and on its own summary line.
    Plan::Act { why: what, actions: vec![Action::Check(wait), Action::Check(request)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::Containers;

    fn facts(orchestrator: &str, https: &str) -> (StackFacts, HealthFacts) {
        let raw = RawFacts::parse(&format!(
            "containers.listed=yes\ndocker.networks=bridge\nstack.project_dirs=/var/docker/image\nstack.services=orchestrator\n\
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
        match plan(&stack, &health, &img, false) {
            Plan::Act { why, .. } => assert!(why.contains("GET https://image.example.org/health"), "{why}"),
            other => panic!("{other:?}"),
        }
        let (stack, health) = facts("healthy", "health.https=ok\n");
        assert!(matches!(plan(&stack, &health, &img, false), Plan::Ok(_)));
        match plan(&stack, &health, &ImageConfig::behind_balancer(), false) {
            Plan::Ok(said) => assert!(said.contains("GET http://image.example.org/health answers"), "{said}"),
            other => panic!("{other:?}"),
        }
        let (stack, health) = facts("healthy", "health.https=failed: curl: (7) refused\n");
        assert_eq!(health.https, Some(Err("curl: (7) refused".into())));
        assert!(matches!(plan(&stack, &health, &img, false), Plan::Act { .. }));
        let (stack, health) = facts("health: starting", "health.https=ok\n");
        assert!(matches!(plan(&stack, &health, &img, false), Plan::Act { .. }));
        let (stack, health) = facts("healthy", "");
        let no_domain = ImageConfig { domain: None, ..ImageConfig::with_site() };
        assert!(matches!(plan(&stack, &health, &no_domain, false), Plan::Ok(_)));
        // Just brought up: the request proves it, however well it looks.
        match plan(&stack, &health, &no_domain, true) {
            Plan::Act { why, actions } => {
                assert!(why.contains("POST /render/preprocess answered"), "{why}");
                assert_eq!(actions.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Another service unhealthy, or gone: the health step waits for it
    /// (health.sh names it, with its log, if it stays so), whatever the
    /// orchestrator and HTTPS say.
    #[test]
    fn every_service_must_be_well_not_only_the_orchestrator() {
        let raw = RawFacts::parse(
            "containers.listed=yes\ndocker.networks=bridge\nstack.project_dirs=/var/docker/image\n\
             stack.services=caption orchestrator\nstack.llm_key=yes\nhealth.https=ok\n\
             container=image\t/var/docker/image\torchestrator\trunning\to\tUp 1 minute (healthy)\n\
             container=image\t/var/docker/image\tcaption\trunning\tc\tUp 1 minute (unhealthy)\n",
        );
        let (stack, health) = (StackFacts::parse(&raw, &Containers::parse(&raw)), HealthFacts::parse(&raw));
        match plan(&stack, &health, &ImageConfig::with_site(), false) {
            Plan::Act { actions, .. } => match &actions[..] {
                [Action::Check(cmd), Action::Check(_)] => {
                    assert!(cmd.render(true).contains("SERVICES='caption orchestrator'"))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    /// After the wait, the request: through the site's Traefik with a
    /// domain, to the orchestrator on the image network without one; with
    /// an LLM the categoriser and the caption must answer. The request is
    /// valid against IMAGE's request.schema.json.
    #[test]
    fn the_request_goes_through_the_site_and_needs_the_llm_preprocessors_with_an_llm() {
        let (stack, health) = facts("starting", "");
        let request = |img: &ImageConfig| match plan(&stack, &health, img, false) {
            Plan::Act { why, actions } => match &actions[..] {
                [Action::Check(_), Action::Check(cmd)] => (why, cmd.render(true)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let with_llm = ImageConfig { llm: crate::settings::Llm::EnvFile, ..ImageConfig::with_site() };
        let (why, cmd) = request(&with_llm);
        assert!(why.contains("POST /render/preprocess answered by the categoriser and the caption"), "{why}");
        assert!(cmd.contains("URL=https://image.example.org/render/preprocess"), "{cmd}");
        assert!(cmd.contains(CATEGORISER_ID) && cmd.contains(CAPTION_ID), "{cmd}");
        let (_, cmd) = request(&ImageConfig::default());
        assert!(!cmd.contains("URL=") && cmd.contains("REQUIRE=''"), "{cmd}");
        let (_, cmd) = request(&ImageConfig::behind_balancer());
        assert!(cmd.contains("URL=http://image.example.org/render/preprocess"), "{cmd}");

        let req: serde_json::Value = serde_json::from_str(&probe_request()).unwrap();
        let uuid = req["request_uuid"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        assert!(req["timestamp"].as_u64().unwrap() > 1_700_000_000);
        let graphic = req["graphic"].as_str().unwrap();
        assert!(graphic.starts_with("data:image/png;base64,iVBORw0KGgo"), "{graphic}");
        assert!(graphic[22..].chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
        assert_eq!(req["dimensions"], serde_json::json!([64, 48]));
        assert_eq!((req["language"].as_str(), req["context"].as_str()), (Some("en"), Some("")));
        assert!(req["capabilities"].as_array().unwrap().is_empty());
        assert_ne!(probe_request(), probe_request(), "a fresh request each time");
        // With the UUID inside (with llm: Some, the LLM services named).
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(&graphic[22..]).unwrap();
        assert_eq!(png, probe_png(uuid));
        let services = ["content-categoriser".to_string(), "graphic-caption".into()];
        let cmd = request_command("/b", None, Some(&services[..]), Duration::from_secs(5)).render(true);
        assert!(cmd.contains("LLM_SERVICES='content-categoriser graphic-caption'"), "{cmd}");
    }

    /// The orchestrator's cache is keyed by the graphic: every probe's
    /// differs (a nonce in a tEXt chunk after IHDR, every CRC right), and
    /// the picture in it is the same.
    #[test]
    fn every_probe_graphic_differs_and_is_the_same_picture() {
        use base64::Engine;
        let graphic = |req: &str| {
            let req: serde_json::Value = serde_json::from_str(req).unwrap();
            req["graphic"].as_str().unwrap().to_string()
        };
        assert_ne!(graphic(&probe_request()), graphic(&probe_request()), "the cache would answer the second");
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
        let png = probe_png("0f6c1f4e-5c1a-4a57-9d0e-2a51c3f0b6a1");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(graphic(&probe_request()).strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        assert_eq!(decoded.len(), png.len(), "the same nonce length: a UUID");
        let chunks = |png: &[u8]| {
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let mut out = Vec::new();
            let mut i = 8;
            while i < png.len() {
                let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
                let typed = &png[i + 4..i + 8 + len];
                let crc = u32::from_be_bytes(png[i + 8 + len..i + 12 + len].try_into().unwrap());
                assert_eq!(crc32(typed), crc, "the CRC of {:?}", String::from_utf8_lossy(&typed[..4]));
                out.push((String::from_utf8_lossy(&typed[..4]).into_owned(), typed[4..].to_vec()));
                i += 12 + len;
            }
            assert_eq!(i, png.len());
            out
        };
        let ours = chunks(&png[..]);
        let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["IHDR", "tEXt", "IDAT", "IEND"]);
        assert_eq!(ours[1].1, b"Comment\0image-provision probe 0f6c1f4e-5c1a-4a57-9d0e-2a51c3f0b6a1");
        let plain: Vec<_> = ours.iter().filter(|(n, _)| n != "tEXt").cloned().collect();
        assert_eq!(plain, chunks(PROBE_PNG), "the picture is the same");
    }

    /// The facts tell where TLS ends: as asked (TLS_END, bootstrap), else
    /// from the site override the layout step wrote (the orchestrator
    /// routed on `web`: a load balancer in front), the domain read from the
    /// same file; the check's port follows the URL's scheme.
    #[test]
    fn the_facts_read_where_tls_ends_from_the_site_override() {
        use crate::steps::layout::{SiteServices, site_text};
        let dir = tempfile::tempdir().unwrap();
        let script = format!("{}\n{}\nfacts_after_root_run\n", crate::facts::PRELUDE_SH, facts_script().text);
        let bash = |script: &str, envs: &[(&str, &str)]| {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(script)
                .env("BASE_DIR", dir.path())
                .envs(envs.iter().copied())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let facts = |img: &ImageConfig, domain: &str, tls_end: &str| {
            std::fs::write(dir.path().join("site-docker-compose.yml"), site_text(img, &SiteServices::default()))
                .unwrap();
            let envs = [("DOMAIN", domain), ("TLS_END", tls_end), ("HTTPS_CHECK", "no"), ("CERTIFICATE", "no")];
            HealthFacts::parse(&RawFacts::parse(&bash(&script, &envs)))
        };
        let read = |f: HealthFacts| (f.domain, f.tls_end);
        let domain = Some("image.example.org".to_string());
        assert_eq!(read(facts(&ImageConfig::behind_balancer(), "", "")), (domain.clone(), TlsEnd::Balancer));
        assert_eq!(read(facts(&ImageConfig::with_site(), "", "")), (domain, TlsEnd::Traefik));
        let asked = Some("other.example.org".to_string());
        assert_eq!(read(facts(&ImageConfig::with_site(), "other.example.org", "balancer")), (asked, TlsEnd::Balancer));
        assert_eq!(read(facts(&ImageConfig::default(), "", "")), (None, TlsEnd::Traefik));
        // curl as the check would call it (here it only says its arguments).
        let check = format!("{HTTPS_CHECK_SH}\ncurl() {{ echo \"$*\"; }}\nhttps_check \"$URL\" 127.0.0.1 10\n");
        let args = bash(&check, &[("URL", "http://image.example.org/health")]);
        assert!(args.contains("--resolve image.example.org:80:127.0.0.1 http://image.example.org/health"), "{args}");
        let args = bash(&check, &[("URL", "https://image.example.org/health")]);
        assert!(args.contains("--resolve image.example.org:443:127.0.0.1 https://"), "{args}");
        // The trusted certificates from their hashed directory (this
        // machine's, made by update-ca-certificates), not the bundle; the
        // bundle, curl's default, without one.
        let hashed = std::fs::read_dir("/etc/ssl/certs")
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".0")))
            .unwrap_or(false);
        assert_eq!(args.contains("--capath /etc/ssl/certs --resolve"), hashed, "{args}");
        let args = bash(&check, &[("URL", "http://image.example.org/health")]);
        assert!(!args.contains("--capath") && !args.contains("--cacert"), "{args}");
    }

    /// The HTTPS check goes to the host's own Traefik: DOMAIN resolved to
    /// 127.0.0.1, whatever DNS says.
    #[test]
    fn https_health_goes_to_the_local_traefik() {
        let (stack, health) = facts("healthy", "");
        let shown = |img: &ImageConfig| match plan(&stack, &health, img, false) {
            Plan::Act { why, actions } => match &actions[..] {
                [Action::Check(cmd), Action::Check(_)] => (why, cmd.render(true)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let (why, cmd) = shown(&ImageConfig::with_site());
        assert!(why.contains("GET https://image.example.org/health at 127.0.0.1"), "{why}");
        assert!(cmd.contains("URL=https://image.example.org/health") && cmd.contains("HTTPS_ADDR=127.0.0.1"), "{cmd}");
        // Behind a load balancer: plain HTTP to Traefik's port 80.
        let (why, cmd) = shown(&ImageConfig::behind_balancer());
        assert!(why.contains("GET http://image.example.org/health at 127.0.0.1"), "{why}");
        assert!(cmd.contains("URL=http://image.example.org/health") && cmd.contains("HTTPS_ADDR=127.0.0.1"), "{cmd}");
        assert!(HTTPS_CHECK_SH.contains("[[ $1 != http://* ]] || port=80"), "{HTTPS_CHECK_SH}");
        assert!(RENDER_REQUEST_SH.contains("[[ $URL != http://* ]] || port=80"), "{RENDER_REQUEST_SH}");
        // Both scripts make the one check, at HTTPS_ADDR (127.0.0.1 when empty).
        assert!(HTTPS_CHECK_SH.contains("--resolve"));
        for script in [HEALTH_SH, FACTS_SH] {
            assert!(script.contains("https_check ") && script.contains("${HTTPS_ADDR:-127.0.0.1}"), "{script}");
            let code = script.lines().filter(|l| !l.trim_start().starts_with('#'));
            assert!(!code.into_iter().any(|l| l.contains("curl")), "a second HTTPS check in:\n{script}");
        }
    }
}
