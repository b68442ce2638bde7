//! The stack step: the IMAGE stack up with these settings, by the IMAGE
//! team's own scripts/imageup under a time limit (or, with --no-imageup,
//! compose pull and up), one bring-up at a time (run-imageup.sh's lock),
//! after the background pull. What was deployed is stamped on the host, so a
//! re-run with the same settings and every service running does nothing.
//! `update` brings the stack up the same way (update.sh).

use std::time::Duration;

use image_provision_remote::Cmd;
use sha2::{Digest, Sha256};

use crate::containers::{Container, Containers};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::ImageConfig;
use crate::shell::with_libraries;
use crate::steps::layout::{self, LayoutFacts};
use crate::steps::pull::{self, PullFacts};
use crate::template::{hex, sha256_hex};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const STACK_UP_SH: &str = include_str!("stack-up.sh");
pub const UPDATE_SH: &str = include_str!("update.sh");
/// A library: the bring-up (imageup or compose) under its lock and time
/// limit, for stack-up.sh and update.sh alike.
pub const RUN_IMAGEUP_SH: &str = include_str!("run-imageup.sh");

/// The facts script (input BASE_DIR). It reads what the containers facts
/// left, so it goes after them.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/stack/facts.sh", FACTS_SH).root(&["stack_facts"])
}

/// stack-up.sh as sent, with the bring-up in front.
pub fn stack_up_script() -> String {
    with_libraries(&[RUN_IMAGEUP_SH], STACK_UP_SH)
}

/// update.sh as sent, with the bring-up in front.
pub fn update_script() -> String {
    with_libraries(&[RUN_IMAGEUP_SH], UPDATE_SH)
}

/// `update`: imageup again (with `imageup` false, compose pull and up) under
/// `timeout`; nothing else.
pub fn update_command(base_dir: &str, imageup: bool, timeout: Duration) -> Cmd {
    Cmd::script(update_script())
        .named("update.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("IMAGEUP", if imageup { "yes" } else { "no" })
        .env("TIMEOUT", timeout.as_secs().to_string())
}

#[derive(Clone, Debug, Default)]
pub struct StackFacts {
    /// The stamp of the settings the stack was last brought up with.
    pub deployed_stamp: Option<String>,
    /// The services compose would run.
    pub services: Vec<String>,
    /// The stack's containers: those compose recorded in its project
    /// directory (the base directory, or the clone should compose resolve
    /// docker-compose.yml's symlink).
    pub containers: Vec<Container>,
}

impl StackFacts {
    pub fn parse(raw: &RawFacts, containers: &Containers) -> StackFacts {
        let dirs = raw.words("stack.project_dirs");
        StackFacts {
            deployed_stamp: raw.string("stack.deployed"),
            services: raw.words("stack.services"),
            containers: containers.all.iter().filter(|c| dirs.contains(&c.working_dir)).cloned().collect(),
        }
    }

    /// The services with a running container, sorted, once each.
    pub fn running(&self) -> Vec<String> {
        let mut running: Vec<String> =
            self.containers.iter().filter(|c| c.running()).map(|c| c.service.clone()).collect();
        running.sort();
        running.dedup();
        running
    }

    /// The services compose would run that have no running container.
    pub fn down(&self) -> Vec<String> {
        let running = self.running();
        self.services.iter().filter(|s| !running.contains(s)).cloned().collect()
    }

    /// A service's health check verdict (or state), from its first container.
    pub fn service_health(&self, service: &str) -> Option<&str> {
        self.containers.iter().find(|c| c.service == service).map(Container::health)
    }

    /// Up with the settings `stamp` stands for, every service running.
    pub fn deployed_as(&self, stamp: &str) -> bool {
        self.deployed_stamp.as_deref() == Some(stamp) && !self.services.is_empty() && self.down().is_empty()
    }
}

/// What a deployed stack was brought up with: every generated and supplied
/// file (by hash). A different stamp means `up` again.
pub fn deploy_stamp(img: &ImageConfig, docker_gid: &str) -> String {
    let mut h = Sha256::new();
    h.update(layout::env_text(img, docker_gid));
    h.update(layout::site_text(img).unwrap_or_default());
    h.update(layout::imageup_env_text(img));
    for (name, content) in &img.env_files {
        h.update(name);
        h.update(sha256_hex(content));
    }
    hex(&h.finalize())
}

/// The stack is up with these settings, every service running.
pub fn deployed(docker_gid: Option<&str>, stack: &StackFacts, img: &ImageConfig) -> bool {
    docker_gid.is_some_and(|gid| stack.deployed_as(&deploy_stamp(img, gid)))
}

pub fn plan(
    docker_gid: Option<&str>,
    layout: &LayoutFacts,
    containers: &Containers,
    pull: &PullFacts,
    stack: &StackFacts,
    img: &ImageConfig,
) -> Plan {
    let Some(gid) = docker_gid else {
        return Plan::Pending("the docker group does not exist yet".into());
    };
    if !layout.cloned || !containers.listed {
        return Plan::Pending("the clone and a running Docker come first".into());
    }
    let stamp = deploy_stamp(img, gid);
    if stack.deployed_as(&stamp) {
        return Plan::Ok(format!("{} services running, deployed with these settings", stack.services.len()));
    }
    let mut actions = Vec::new();
    if *pull == PullFacts::Running {
        actions.push(Action::Check(pull::wait_command(img.imageup_timeout)));
    }
    actions.push(Action::Change(
        Cmd::script(stack_up_script())
            .named("stack-up.sh")
            .sudo()
            .env("BASE_DIR", &img.base_dir)
            .env("IMAGEUP", if img.imageup { "yes" } else { "no" })
            .env("TIMEOUT", img.imageup_timeout.as_secs().to_string())
            .env("STAMP", stamp),
    ));
    let how = if img.imageup {
        format!("bin/imageup (time limit {} s)", img.imageup_timeout.as_secs())
    } else {
        "docker compose pull and up (--no-imageup)".into()
    };
    let why = if stack.deployed_stamp.is_some() { "settings changed or services down" } else { "not deployed yet" };
    Plan::Act { why: format!("{why}: {how}"), actions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> StackFacts {
        let raw = RawFacts::parse(text);
        StackFacts::parse(&raw, &Containers::parse(&raw))
    }

    #[test]
    fn the_stack_is_its_project_directorys_containers() {
        let base = "stack.project_dirs=/var/docker/image /var/docker/image/IMAGE-server\n\
                    stack.services=orchestrator tat\ncontainers.listed=yes\ndocker.networks=bridge\n\
                    container=image\t/var/docker/image\torchestrator\trunning\to\tUp (healthy)\n\
                    container=other\t/srv/other\ttat\trunning\tt\tUp\n";
        let s = facts(base);
        assert_eq!(s.running(), ["orchestrator"]);
        assert_eq!(s.down(), ["tat"]);
        assert_eq!(s.service_health("orchestrator"), Some("healthy"));
        let clone = format!("{base}container=image\t/var/docker/image/IMAGE-server\ttat\trunning\tt2\tUp\n");
        let s = facts(&format!("{clone}stack.deployed=abc\n"));
        assert!(s.down().is_empty() && s.deployed_as("abc") && !s.deployed_as("abd"));
    }
}
