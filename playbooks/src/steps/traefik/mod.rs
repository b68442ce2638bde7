//! The traefik step: the `traefik` network the stack's compose file names as
//! external, and with a domain Traefik itself in its own compose project
//! (traefik-compose.yml): the only thing publishing host ports, 80 and 443,
//! with Let's Encrypt's HTTP challenge. Its name never contains "image" and
//! it never joins the `image` network: imageup removes such containers.

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, TRAEFIK_DIR};
use crate::template::{FileFacts, render, upload};

pub const COMPOSE_TEMPLATE: &str = include_str!("traefik-compose.yml");

/// Pinned: a Traefik upgrade is a decision, not a side effect of a re-run.
/// v3.6.1 is the first release that talks to Docker 29's API.
pub const TRAEFIK_IMAGE: &str = "traefik:v3.6.13";

/// Traefik's compose file, with a domain and an ACME e-mail.
pub fn compose_text(img: &ImageConfig) -> Option<String> {
    let email = img.acme_email.as_deref()?;
    img.domain.as_ref()?;
    Some(render(COMPOSE_TEMPLATE, &[("TRAEFIK_IMAGE", TRAEFIK_IMAGE), ("ACME_EMAIL", email)]))
}

/// The files this step writes.
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    vec![img.traefik_path()]
}

/// Traefik's container runs (its project, its name).
pub fn running(containers: &Containers) -> bool {
    containers.all.iter().any(|c| c.project == "traefik" && c.name == "traefik" && c.running())
}

pub fn plan(containers: &Containers, files: &FileFacts, img: &ImageConfig) -> Plan {
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
    let changed = !files.is(&path, compose.as_bytes(), "644");
    if changed {
        why.push(format!("write {path}"));
        actions.push(upload(path.clone(), compose, 0o644, false));
    }
    if changed || !running(containers) {
        why.push("bring Traefik up".into());
        actions.push(Action::Change(
            Cmd::new("docker").args(["compose", "--project-directory", TRAEFIK_DIR, "-f", &path, "up", "-d"]).sudo(),
        ));
    }
    Plan::from_actions(why, actions, || format!("{TRAEFIK_IMAGE} running on 80/443, network traefik"))
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
    }
}
