//! The traefik step: the `traefik` network the stack's compose file names as
//! external, and with a domain Traefik itself in its own compose project
//! (traefik-compose.yml): the only thing publishing host ports, 80 and 443,
//! with Let's Encrypt's HTTP challenge. Its name never contains "image" and
//! it never joins the `image` network: imageup removes such containers.

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, LETS_ENCRYPT, TRAEFIK_DIR, TRAEFIK_UP_LIMIT, acme_server_name};
use crate::template::{FileFacts, Writes, backup_dir, render};

pub const COMPOSE_TEMPLATE: &str = include_str!("traefik-compose.yml");
pub const FACTS_SH: &str = include_str!("facts.sh");
pub const DNS_WAIT_SH: &str = include_str!("dns-wait.sh");

/// dns-wait.sh: DOMAIN resolves to `address` within `timeout`.
pub fn dns_wait(domain: &str, address: &str, timeout: std::time::Duration) -> Cmd {
    Cmd::script(DNS_WAIT_SH)
        .named("dns-wait.sh")
        .sudo()
        .env("DOMAIN", domain)
        .env("ADDRESS", address)
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout))
}

/// The facts script (input TRAEFIK_DIR).
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/traefik/facts.sh", FACTS_SH).root(&["traefik_facts"])
}

/// Where Traefik keeps the certificates it was issued (the compose file
/// mounts ./letsencrypt).
pub fn certificate_store() -> String {
    format!("{TRAEFIK_DIR}/letsencrypt/acme.json")
}

#[derive(Clone, Debug, Default)]
pub struct TraefikFacts {
    /// The ACME directory Traefik's compose file asks, when there is one.
    pub acme_server: Option<String>,
    /// Traefik has stored certificates.
    pub certificates: bool,
}

impl TraefikFacts {
    pub fn parse(raw: &RawFacts) -> TraefikFacts {
        let configured = raw.yes("traefik.configured");
        TraefikFacts {
            // A file without the setting asks Traefik's default, production.
            acme_server: configured.then(|| raw.string("traefik.acme_server").unwrap_or_else(|| LETS_ENCRYPT.into())),
            certificates: raw.yes("traefik.certificates"),
        }
    }
}

/// Pinned: a Traefik upgrade is a decision, not a side effect of a re-run.
/// v3.6.1 is the first release that talks to Docker 29's API.
pub const TRAEFIK_IMAGE: &str = "traefik:v3.6.13";

/// Traefik's compose file, with a domain and an ACME e-mail.
pub fn compose_text(img: &ImageConfig) -> Option<String> {
    let email = img.acme_email.as_deref()?;
    img.domain.as_ref()?;
    Some(render(
        COMPOSE_TEMPLATE,
        &[("TRAEFIK_IMAGE", TRAEFIK_IMAGE), ("ACME_EMAIL", email), ("ACME_SERVER", &img.acme_server)],
    ))
}

/// The files this step writes.
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    vec![img.traefik_path()]
}

/// Traefik's container runs (its project, its name).
pub fn running(containers: &Containers) -> bool {
    containers.all.iter().any(|c| c.project == "traefik" && c.name == "traefik" && c.running())
}

pub fn plan(containers: &Containers, files: &FileFacts, traefik: &TraefikFacts, img: &ImageConfig) -> Plan {
    if !containers.listed {
        return Plan::Pending("Docker must be running".into());
    }
    let mut actions = Vec::new();
    let mut why = Vec::new();
    // The IMAGE compose file's external network: `up` fails without it.
    if !containers.has_network("traefik") {
        why.push("create the traefik network".into());
        actions.push(Action::Change(Cmd::new("docker").args(["network", "create", "traefik"]).sudo()));
    }
    let Some(compose) = compose_text(img) else {
        if actions.is_empty() {
            return Plan::Skip("no --domain: the traefik network exists; Traefik itself has no site to route".into());
        }
        return Plan::Act { why: format!("{} (no --domain: no Traefik container)", why.join(", ")), actions };
    };
    let path = img.traefik_path();
    let clear = traefik.certificates && traefik.acme_server.as_ref().is_some_and(|s| *s != img.acme_server);
    // Written means nothing until `up` has run with it: a run cut short
    // between the two leaves it pending, and the next run brings it up.
    let mut writes = Writes::new(files, backup_dir()).applied_by_commands();
    let compose_bytes = compose.clone();
    let changed = writes.file(&path, compose, 0o644, None, false);
    if clear {
        // Certificates Traefik got under a configuration image-provision
        // did not write (a host's own Traefik) are the host's too.
        writes.replaced_by_command(&certificate_store(), files.ours(&path));
    }
    why.extend(writes.copies());
    if changed && files.pending(&path) && files.is(&path, compose_bytes.as_bytes(), "644") {
        why.push(format!("apply {path} (written by a run cut short before Traefik came up with it)"));
    } else if changed {
        why.push(format!("write {path}"));
    }
    let applied = writes.applied();
    actions.extend(writes.into_actions());
    // Certificates another ACME server issued (staging's, or production's
    // on a server switched to staging) would be served on: stop Traefik and
    // clear them, so the new server issues the right ones.
    let compose_cmd =
        |verb: &str| Cmd::new("docker").args(["compose", "--project-directory", TRAEFIK_DIR, "-f", &path, verb]).sudo();
    if clear {
        why.push(format!(
            "clear the certificates of {} for {}",
            acme_server_name(traefik.acme_server.as_deref().unwrap_or_default()),
            acme_server_name(&img.acme_server)
        ));
        actions.push(Action::Change(compose_cmd("stop")));
        actions.push(Action::Change(Cmd::new("rm").args(["-f", "--", &certificate_store()]).sudo()));
    }
    if changed || !running(containers) {
        // Traefik asks for the certificate as it starts: not while the name
        // points elsewhere.
        if let (Some(domain), Some(dns)) = (&img.domain, &img.dns_check) {
            why.push(format!("wait for {domain} to resolve to {}", dns.address));
            actions.push(Action::Check(dns_wait(domain, &dns.address, dns.timeout)));
        }
        why.push("bring Traefik up".into());
        actions.push(Action::Change(compose_cmd("up").arg("-d").time_limit(TRAEFIK_UP_LIMIT)));
    }
    actions.extend(applied);
    Plan::from_actions(why, actions, || {
        format!(
            "{TRAEFIK_IMAGE} running on 80/443, network traefik; certificates from {}",
            acme_server_name(&img.acme_server)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traefik_compose_never_says_image_in_a_name() {
        let img = ImageConfig::with_site();
        let text = compose_text(&img).unwrap();
        assert!(text.contains("container_name: traefik\n"));
        assert!(!text.lines().any(|l| l.contains("name:") && l.contains("image")), "{text}");
        assert!(text.contains("acme.email=ops@example.org"));
        assert!(text.contains(&format!("acme.caserver={}\"", crate::settings::LETS_ENCRYPT)), "{text}");
    }

    /// Switching ACME servers clears the certificates the other one issued,
    /// with Traefik stopped, before Traefik comes up with the new server.
    #[test]
    fn switching_acme_servers_clears_the_stored_certificates() {
        use crate::settings::{LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
        let raw = RawFacts::parse(
            "containers.listed=yes\ndocker.networks=bridge traefik\n\
             container=traefik\t/var/docker/traefik\ttraefik\trunning\ttraefik\tUp 1 hour\n",
        );
        let containers = Containers::parse(&raw);
        let staging = ImageConfig { acme_server: LETS_ENCRYPT_STAGING.into(), ..ImageConfig::with_site() };
        let was = |server: &str, certificates: bool| TraefikFacts { acme_server: Some(server.into()), certificates };
        let cmds = plan(&containers, &FileFacts::default(), &was(LETS_ENCRYPT, true), &staging).commands();
        let at = |needle: &str| {
            cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle} in {cmds:?}"))
        };
        assert!(at("upload") < at(" stop") && at(" stop") < at("rm -f -- /var/docker/traefik/letsencrypt/acme.json"));
        assert!(at("acme.json") < at("up -d"), "{cmds:?}");
        // Back to production: the staging certificates go too.
        let cmds =
            plan(&containers, &FileFacts::default(), &was(LETS_ENCRYPT_STAGING, true), &ImageConfig::with_site())
                .commands();
        assert!(cmds.iter().any(|c| c.contains("acme.json")), "{cmds:?}");
        // Same server, or nothing stored: nothing cleared.
        for facts in [was(LETS_ENCRYPT_STAGING, true), was(LETS_ENCRYPT, false)] {
            let cmds = plan(&containers, &FileFacts::default(), &facts, &staging).commands();
            assert!(!cmds.iter().any(|c| c.contains("acme.json")), "{facts:?}: {cmds:?}");
        }
        // A compose file from before the setting asks production.
        let old = TraefikFacts::parse(&RawFacts::parse("traefik.configured=yes\ntraefik.certificates=yes\n"));
        assert_eq!(old.acme_server.as_deref(), Some(LETS_ENCRYPT));
        assert_eq!(TraefikFacts::parse(&RawFacts::parse("")).acme_server, None);
    }

    /// A compose file written by a run cut short before `up`: as wanted on
    /// the host, Traefik running the old one, and still brought up with it;
    /// the pending mark cleared only after `up`.
    #[test]
    fn a_compose_file_written_but_not_brought_up_is_applied_next_run() {
        let img = ImageConfig::with_site();
        let path = img.traefik_path();
        let sha = crate::template::sha256_hex(compose_text(&img).unwrap());
        let running = "containers.listed=yes\ndocker.networks=bridge traefik\n\
                       container=traefik\t/var/docker/traefik\ttraefik\trunning\ttraefik\tUp 1 hour\n";
        let on_host = format!("{running}file.{path}={sha} 644 root\nwritten.{path}={sha}\ntraefik.configured=yes\n");
        let plan_of = |text: &str| {
            let raw = RawFacts::parse(text);
            plan(&Containers::parse(&raw), &FileFacts::parse(&raw), &TraefikFacts::parse(&raw), &img)
        };
        assert!(matches!(plan_of(&on_host), Plan::Ok(_)), "applied: nothing to do");
        let Plan::Act { why, actions } = plan_of(&format!("{on_host}pending.{path}=yes\n")) else { panic!() };
        assert!(why.starts_with(&format!("apply {path} (written by a run cut short")), "{why}");
        let cmds: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        assert_eq!(cmds.len(), 2, "not written again: {cmds:#?}");
        assert!(cmds[0].ends_with("up -d"), "{cmds:#?}");
        assert!(cmds[1].contains(&format!("CLEAR={path}")) && cmds[1].contains("mark-pending.sh"), "{cmds:#?}");
    }

    /// With a DNS check, Traefik comes up only after the domain resolves to
    /// the server; a running Traefik needs no check.
    #[test]
    fn the_dns_check_comes_before_traefik_starts() {
        let mut img = ImageConfig::with_site();
        img.dns_check =
            Some(crate::settings::DnsCheck { address: String::new(), timeout: std::time::Duration::from_secs(90) });
        img.check_dns_for(Some("198.51.100.7".into()));
        let bare = Containers::parse(&RawFacts::parse("containers.listed=yes\ndocker.networks=bridge traefik\n"));
        let cmds = plan(&bare, &FileFacts::default(), &TraefikFacts::default(), &img).commands();
        let at =
            |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:?}"));
        assert!(at("dns-wait.sh") < at("up -d"), "{cmds:?}");
        assert!(cmds[at("dns-wait.sh")].ends_with("(check)"), "{cmds:?}");
        let shown = dns_wait("image.example.org", "198.51.100.7", std::time::Duration::from_secs(90)).render(true);
        assert!(shown.contains("DOMAIN=image.example.org ADDRESS=198.51.100.7 TIMEOUT=90"), "{shown}");
        // No address known: no check.
        img.check_dns_for(None);
        let cmds = plan(&bare, &FileFacts::default(), &TraefikFacts::default(), &img).commands();
        assert!(!cmds.iter().any(|c| c.contains("dns-wait")), "{cmds:?}");
    }

    /// A host with its own Traefik: its compose file, and the certificates
    /// that configuration got, are copied before ours replaces the one and
    /// the switch of ACME server clears the others; the plan names both
    /// copies first. Once the compose file is ours (by the record), a
    /// switch clears the certificates with no copy.
    #[test]
    fn adopting_a_hosts_own_traefik_copies_its_compose_file_and_certificates() {
        use crate::settings::LETS_ENCRYPT_STAGING;
        let containers = Containers::parse(&RawFacts::parse("containers.listed=yes\ndocker.networks=bridge traefik\n"));
        let img = ImageConfig { acme_server: LETS_ENCRYPT_STAGING.into(), ..ImageConfig::with_site() };
        let path = img.traefik_path();
        let store = certificate_store();
        // Its own compose file names no ACME server: production's.
        let own = format!("file.{path}=1234 640 root\ntraefik.configured=yes\ntraefik.certificates=yes\n");
        let plan_of = |text: &str| {
            let raw = RawFacts::parse(text);
            plan(&containers, &FileFacts::parse(&raw), &TraefikFacts::parse(&raw), &img)
        };
        let Plan::Act { why, actions } = plan_of(&own) else { panic!() };
        let dir = backup_dir();
        assert!(
            why.starts_with(&format!(
                "keep copies of what image-provision did not write: {path} as {dir}{path} and {store} as {dir}{store}, write {path}"
            )),
            "{why}"
        );
        let cmds: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let at = |needle: &str| {
            cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:#?}"))
        };
        assert!(at("keep-copies.sh") < at("upload ") && at("upload ") < at("record-written.sh"), "{cmds:#?}");
        assert!(at("record-written.sh") < at(" stop") && at(" stop") < at(&format!("rm -f -- {store}")), "{cmds:#?}");
        // Ours, from a run on production: switched with no copy.
        let compose = compose_text(&ImageConfig::with_site()).unwrap();
        let sha = crate::template::sha256_hex(&compose);
        let ours = format!(
            "file.{path}={sha} 644 root\nwritten.{path}={sha}\ntraefik.configured=yes\ntraefik.certificates=yes\n\
             traefik.acme_server={}\n",
            crate::settings::LETS_ENCRYPT
        );
        let Plan::Act { why, actions } = plan_of(&ours) else { panic!() };
        assert!(why.starts_with(&format!("write {path}, clear the certificates of ")), "{why}");
        assert!(!actions.iter().any(|a| a.describe(false).contains("keep-copies")));
    }
}
