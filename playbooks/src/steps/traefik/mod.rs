//! The traefik step: the `traefik` network the stack's compose file names as
//! external, and with a domain Traefik itself in its own compose project
//! (traefik-compose.yml): the only thing publishing host ports, 80 and 443,
//! with Let's Encrypt's HTTP challenge; behind a load balancer (TLS ending
//! there), 80 alone, plain HTTP, no certificate of its own. Its name never
//! contains "image" and it never joins the `image` network: imageup removes
//! such containers.

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, LETS_ENCRYPT, TRAEFIK_DIR, TRAEFIK_UP_LIMIT, TlsEnd, acme_server_name};
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
    /// The ACME directory Traefik's compose file asks, when there is one
    /// (none behind a load balancer: no certresolver).
    pub acme_server: Option<String>,
    /// Traefik has stored certificates.
    pub certificates: bool,
}

impl TraefikFacts {
    pub fn parse(raw: &RawFacts) -> TraefikFacts {
        // A file with a certresolver but no caserver asks Traefik's default,
        // production; one without a certresolver (behind a load balancer)
        // asks no ACME server at all.
        let acme = raw.yes("traefik.configured") && raw.get("traefik.acme") != Some("no");
        TraefikFacts {
            acme_server: acme.then(|| raw.string("traefik.acme_server").unwrap_or_else(|| LETS_ENCRYPT.into())),
            certificates: raw.yes("traefik.certificates"),
        }
    }
}

/// Pinned: a Traefik upgrade is a decision, not a side effect of a re-run.
/// v3.6.1 is the first release that talks to Docker 29's API.
pub const TRAEFIK_IMAGE: &str = "traefik:v3.6.13";

/// The addresses an AWS load balancer in a VPC forwards from (RFC 1918's
/// private ranges): Traefik believes their X-Forwarded-* headers, so the
/// stack sees the client's scheme (https) and address, not the balancer's.
pub const BALANCER_TRUSTED_IPS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16";

/// Traefik's compose file, with a domain and, when TLS ends in Traefik, an
/// ACME e-mail.
pub fn compose_text(img: &ImageConfig) -> Option<String> {
    img.domain.as_ref()?;
    // The command lines after the web entrypoint's address, the published
    // ports, and what the header says of them.
    let (site_entry, ports, published) = match img.tls_end {
        TlsEnd::Traefik => {
            let email = img.acme_email.as_deref()?;
            let lines = [
                "--entrypoints.web.http.redirections.entrypoint.to=websecure".to_string(),
                "--entrypoints.web.http.redirections.entrypoint.scheme=https".into(),
                "--entrypoints.websecure.address=:443".into(),
                "--certificatesresolvers.myresolver.acme.httpchallenge=true".into(),
                "--certificatesresolvers.myresolver.acme.httpchallenge.entrypoint=web".into(),
                format!("--certificatesresolvers.myresolver.acme.email={email}"),
                format!("--certificatesresolvers.myresolver.acme.caserver={}", img.acme_server),
                "--certificatesresolvers.myresolver.acme.storage=/letsencrypt/acme.json".into(),
            ];
            (list_lines(&lines), list_lines(&["80:80", "443:443"]), "80 and 443")
        }
        // Plain HTTP from the balancer on 80: no redirection to HTTPS (the
        // balancer's health check and its forwarded requests would loop),
        // no certresolver (the balancer holds the certificate).
        TlsEnd::Balancer => (
            list_lines(&[format!("--entrypoints.web.forwardedHeaders.trustedIPs={BALANCER_TRUSTED_IPS}")]),
            list_lines(&["80:80"]),
            "80 alone; TLS ends in the load balancer",
        ),
    };
    Some(render(
        COMPOSE_TEMPLATE,
        &[("PUBLISHED", published), ("TRAEFIK_IMAGE", TRAEFIK_IMAGE), ("SITE_ENTRY", &site_entry), ("PORTS", &ports)],
    ))
}

/// Items of a YAML list under a service's key, quoted, one a line.
fn list_lines<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|i| format!("      - \"{}\"\n", i.as_ref())).collect()
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
    // Behind a load balancer no ACME server is asked: whatever certificates
    // are stored stay, unused (a switch back to TLS in Traefik finds them).
    let clear = img.tls_end == TlsEnd::Traefik
        && traefik.certificates
        && traefik.acme_server.as_ref().is_some_and(|s| *s != img.acme_server);
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
        // points elsewhere. Behind a load balancer the name points at the
        // balancer, and Traefik asks for nothing.
        if let (Some(domain), Some(dns), TlsEnd::Traefik) = (&img.domain, &img.dns_check, img.tls_end) {
            why.push(format!("wait for {domain} to resolve to {}", dns.address));
            actions.push(Action::Check(dns_wait(domain, &dns.address, dns.timeout)));
        }
        why.push("bring Traefik up".into());
        actions.push(Action::Change(compose_cmd("up").arg("-d").time_limit(TRAEFIK_UP_LIMIT)));
    }
    actions.extend(applied);
    Plan::from_actions(why, actions, || match img.tls_end {
        TlsEnd::Traefik => format!(
            "{TRAEFIK_IMAGE} running on 80/443, network traefik; certificates from {}",
            acme_server_name(&img.acme_server)
        ),
        TlsEnd::Balancer => {
            format!(
                "{TRAEFIK_IMAGE} running on 80 (plain HTTP from the load balancer, TLS ends there), network traefik"
            )
        }
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

    /// TLS in Traefik: the compose file is byte for byte what the template
    /// wrote before the load balancer's mode (a copy of that rendering for
    /// the sample site), so a re-run changes nothing on existing servers.
    #[test]
    fn with_tls_in_traefik_the_compose_file_is_as_before() {
        let before = format!(
            r#"# Generated by image-provision: Traefik in front of the IMAGE stack, in its
# own compose project (/var/docker/traefik). It is the only thing that
# publishes host ports (80 and 443). Its container name must not contain
# "image" and it must not join the "image" network: IMAGE's imageup removes
# every such container.
name: traefik
services:
  traefik:
    image: {TRAEFIK_IMAGE}
    container_name: traefik
    restart: unless-stopped
    command:
      - "--providers.docker=true"
      - "--providers.docker.exposedbydefault=false"
      - "--providers.docker.network=traefik"
      - "--entrypoints.web.address=:80"
      - "--entrypoints.web.http.redirections.entrypoint.to=websecure"
      - "--entrypoints.web.http.redirections.entrypoint.scheme=https"
      - "--entrypoints.websecure.address=:443"
      - "--certificatesresolvers.myresolver.acme.httpchallenge=true"
      - "--certificatesresolvers.myresolver.acme.httpchallenge.entrypoint=web"
      - "--certificatesresolvers.myresolver.acme.email=ops@example.org"
      - "--certificatesresolvers.myresolver.acme.caserver=https://acme-v02.api.letsencrypt.org/directory"
      - "--certificatesresolvers.myresolver.acme.storage=/letsencrypt/acme.json"
    ports:
      - "80:80"
      - "443:443"
    volumes:
      - "/var/run/docker.sock:/var/run/docker.sock:ro"
      - "./letsencrypt:/letsencrypt"
    networks:
      - traefik

networks:
  traefik:
    external: true
"#
        );
        assert_eq!(compose_text(&ImageConfig::with_site()).unwrap(), before);
    }

    /// Behind a load balancer: 80 alone, no redirection to HTTPS, no ACME,
    /// the balancer's forwarded headers believed; no e-mail needed.
    #[test]
    fn behind_a_balancer_traefik_publishes_80_alone_without_acme() {
        let img = ImageConfig::behind_balancer();
        let text = compose_text(&img).unwrap();
        assert!(text.contains("    ports:\n      - \"80:80\"\n    volumes:\n"), "{text}");
        assert!(!text.contains("443"), "{text}");
        assert!(!text.contains("redirections") && !text.contains("acme") && !text.contains("websecure"), "{text}");
        assert!(!text.contains("{{") && !text.contains("}}"), "{text}");
        assert!(
            text.contains(
                "      - \"--entrypoints.web.address=:80\"\n      \
                 - \"--entrypoints.web.forwardedHeaders.trustedIPs=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16\"\n"
            ),
            "{text}"
        );
        // Its own file read back: no ACME server, so nothing to clear.
        let facts = TraefikFacts::parse(&RawFacts::parse(
            "traefik.configured=yes\ntraefik.acme=no\ntraefik.certificates=yes\n",
        ));
        assert_eq!(facts.acme_server, None);
        let containers = Containers::parse(&RawFacts::parse("containers.listed=yes\ndocker.networks=bridge traefik\n"));
        let mut img = img;
        img.dns_check = Some(crate::settings::DnsCheck {
            address: "198.51.100.7".into(),
            timeout: std::time::Duration::from_secs(90),
        });
        let was = TraefikFacts { acme_server: Some(LETS_ENCRYPT.into()), certificates: true };
        let cmds = plan(&containers, &FileFacts::default(), &was, &img).commands();
        assert!(cmds.iter().any(|c| c.ends_with("up -d")), "{cmds:?}");
        // No certificate asked for: no DNS wait, none cleared.
        assert!(!cmds.iter().any(|c| c.contains("dns-wait") || c.contains("acme.json")), "{cmds:?}");
        // The facts script on the files as written: ours behind a balancer
        // asks no ACME server; with TLS in Traefik, the one it names.
        let dir = tempfile::tempdir().unwrap();
        let script = format!("{}\n{}\ntraefik_facts\n", crate::facts::PRELUDE_SH, facts_script().text);
        let read_back = |img: &ImageConfig| {
            std::fs::write(dir.path().join("docker-compose.yml"), compose_text(img).unwrap()).unwrap();
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(&script)
                .env("TRAEFIK_DIR", dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            TraefikFacts::parse(&RawFacts::parse(&String::from_utf8_lossy(&out.stdout))).acme_server
        };
        assert_eq!(read_back(&img), None);
        assert_eq!(read_back(&ImageConfig::with_site()).as_deref(), Some(LETS_ENCRYPT));
        // Without a domain, still no Traefik.
        assert_eq!(compose_text(&ImageConfig { domain: None, ..ImageConfig::behind_balancer() }), None);
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
