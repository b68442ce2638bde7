//! The stack step: the IMAGE stack up with these settings, by the IMAGE
//! team's own scripts/imageup under a time limit (or, with --no-imageup,
//! compose pull and up), one bring-up at a time (run-imageup.sh's lock),
//! after the background pull. What was deployed is stamped on the host, so a
//! re-run with the same settings and every service running does nothing.
//! `update` brings the stack up the same way (update.sh).

use std::collections::BTreeMap;
use std::time::Duration;

use image_provision_remote::Cmd;
use sha2::{Digest, Sha256};

use crate::bring_up::BRING_UP;
use crate::containers::{Container, Containers};
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, Llm, SITE_COMPOSE};
use crate::shell::with_libraries;
use crate::steps::layout::keys::{self, KeylessService};
use crate::steps::layout::{self, LayoutFacts, SiteServices};
use crate::steps::pull::{self, PullFacts};
use crate::template::{FileFacts, Writes, backup_dir, hex, sha256_hex};

pub const FACTS_SH: &str = include_str!("facts.sh");

/// What a server without an LLM (--no-llm) goes without.
pub const NO_LLM_LOSS: &str = "no photo descriptions, follow-up questions, diagram segmentation or photo audio";
pub const STACK_UP_SH: &str = include_str!("stack-up.sh");
pub const UPDATE_SH: &str = include_str!("update.sh");
/// `update`'s record after the update: a good one recorded, a bad one
/// rolled back, `update --rollback`.
pub const ROLLBACK_SH: &str = include_str!("rollback.sh");
/// Before the stack starts: the LLM of config/llm.env answers and serves
/// its model.
pub const LLM_CHECK_SH: &str = include_str!("llm-check.sh");
/// How long the LLM check waits for the model list.
const LLM_CHECK_TIMEOUT_SECS: u64 = 20;

/// The facts script (input BASE_DIR). It reads what the containers facts
/// left, so it goes after them.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/stack/facts.sh", FACTS_SH).root(&["stack_facts"])
}

/// stack-up.sh as sent, with the bring-up in front.
pub fn stack_up_script() -> String {
    with_libraries(&BRING_UP, STACK_UP_SH)
}

/// update.sh as sent, with the bring-up in front.
pub fn update_script() -> String {
    with_libraries(&BRING_UP, UPDATE_SH)
}

/// rollback.sh as sent, with the bring-up in front.
pub fn rollback_script() -> String {
    with_libraries(&BRING_UP, ROLLBACK_SH)
}

/// What `update` records or restores once the update has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The stack was healthy and answered: what ran before becomes the
    /// previous state, what runs the current one.
    Updated,
    /// It was not: back to what ran when the update started.
    RollBack,
    /// `update --rollback`: back to what ran before the last good update.
    RollBackByHand,
}

/// The exit status of rollback.sh when nothing is recorded to return to.
pub const NOTHING_RECORDED: i32 = 4;

/// rollback.sh for `record` in `base_dir`; a rollback within `timeout`
/// (compose up at the recorded images, then the warm-up, each).
pub fn record_command(base_dir: &str, record: Record, timeout: Duration) -> Cmd {
    let action = match record {
        Record::Updated => "updated",
        Record::RollBack => "before",
        Record::RollBackByHand => "previous",
    };
    Cmd::script(rollback_script())
        .named("rollback.sh")
        .sudo()
        .env("BASE_DIR", base_dir)
        .env("ACTION", action)
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::bring_up_limit(timeout))
}

/// The LLM check (llm-check.sh) against the config/llm.env in `img`'s clone.
pub fn llm_check_command(img: &ImageConfig) -> Cmd {
    Cmd::script(LLM_CHECK_SH)
        .named("llm-check.sh")
        .sudo()
        .env("LLM_ENV", img.config_path("llm.env"))
        .env("TIMEOUT", LLM_CHECK_TIMEOUT_SECS.to_string())
        .time_limit(crate::settings::outer_limit(Duration::from_secs(LLM_CHECK_TIMEOUT_SECS)))
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
        .time_limit(crate::settings::bring_up_limit(timeout))
}

/// A service that must run and is not well, as `verify` and the health
/// step report it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceTrouble {
    pub service: String,
    /// What Docker says: its status ("Exited (1) 2 minutes ago"),
    /// "unhealthy", "health: starting" or "no container".
    pub state: String,
    /// The last lines of its log.
    pub log: String,
}

impl ServiceTrouble {
    /// "SERVICE (STATE; last log: LINE)", the log's last line only.
    pub fn describe(&self) -> String {
        match self.log.lines().rfind(|l| !l.trim().is_empty()) {
            Some(line) => format!("{} ({}; last log: {})", self.service, self.state, line.trim()),
            None => format!("{} ({})", self.service, self.state),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct StackFacts {
    /// The stamp of the settings the stack was last brought up with.
    pub deployed_stamp: Option<String>,
    /// The services compose would run.
    pub services: Vec<String>,
    /// Those of them that read config/llm.env: without a key there they
    /// exit at start-up (IMAGE's LLM client needs one).
    pub llm_services: Vec<String>,
    /// config/llm.env gives LLM_API_KEY a value.
    pub llm_key: bool,
    /// The services that read each config/*.env file, by file name.
    pub env_readers: BTreeMap<String, Vec<String>>,
    /// The names each of those files sets on the server (never a value).
    pub env_keys: BTreeMap<String, Vec<String>>,
    /// The last lines of the log of each service whose container is not
    /// running or not healthy, by service.
    pub logs: BTreeMap<String, String>,
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
            llm_services: raw.words("stack.llm_services"),
            llm_key: raw.get("stack.llm_key") == Some("yes"),
            env_readers: raw.with_prefix("stack.env_readers.").map(|(f, s)| (f.to_string(), words(s))).collect(),
            env_keys: raw.with_prefix("stack.env_keys.").map(|(f, k)| (f.to_string(), words(k))).collect(),
            logs: raw
                .with_prefix("stack.log.")
                .map(|(service, lines)| (service.to_string(), lines.replace('\u{1e}', "\n")))
                .collect(),
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

    /// The services that cannot run: those needing the LLM, when
    /// config/llm.env has no key (a server set up with --no-llm).
    pub fn without_llm(&self) -> Vec<String> {
        if self.llm_key { Vec::new() } else { self.llm_services.clone() }
    }

    /// The services that cannot run for want of keys their config/*.env
    /// file does not set on the server (see [`keys`]).
    pub fn without_keys(&self) -> Vec<KeylessService> {
        self.without_keys_given(&[])
    }

    /// The same once this run has written the env files `img` gives (the
    /// layout step writes them and the site override together).
    pub fn without_keys_for(&self, img: &ImageConfig) -> Vec<KeylessService> {
        self.without_keys_given(&img.env_files)
    }

    /// `given`: env files by name, which replace the server's.
    fn without_keys_given(&self, given: &[(String, Vec<u8>)]) -> Vec<KeylessService> {
        keys::keyless(&self.env_readers, &|file| match given.iter().find(|(name, _)| name == file) {
            Some((_, content)) => keys::names_set(content),
            None => self.env_keys.get(file).into_iter().flatten().cloned().collect(),
        })
    }

    /// What the site override must know of the services for `img`.
    pub fn site_services(&self, img: &ImageConfig) -> SiteServices {
        SiteServices { llm: self.llm_services.clone(), keyless: self.without_keys_for(img) }
    }

    /// The services that must run: compose's, but those
    /// [`Self::without_llm`] and [`Self::without_keys`].
    pub fn expected(&self) -> Vec<String> {
        let left_out = self.without_llm();
        let keyless = self.without_keys();
        self.services
            .iter()
            .filter(|s| !left_out.contains(s) && !keyless.iter().any(|k| k.service == **s))
            .cloned()
            .collect()
    }

    /// The services that must run and have no running container.
    pub fn down(&self) -> Vec<String> {
        let running = self.running();
        self.expected().into_iter().filter(|s| !running.contains(s)).collect()
    }

    /// The services that must run and are not well: no container, not
    /// running, or running but not healthy by its image's health check
    /// (unhealthy, or still starting), each with the last lines of its log.
    pub fn not_ok(&self) -> Vec<ServiceTrouble> {
        self.expected()
            .into_iter()
            .filter_map(|service| {
                let state = match self.containers.iter().find(|c| c.service == service) {
                    None => "no container".to_string(),
                    Some(c) if !c.running() => c.status.clone(),
                    Some(c) => match c.health() {
                        "unhealthy" => "unhealthy".into(),
                        "starting" => "health: starting".into(),
                        _ => return None,
                    },
                };
                let log = self.logs.get(&service).cloned().unwrap_or_default();
                Some(ServiceTrouble { service, state, log })
            })
            .collect()
    }

    /// "N services running", and with services left out for want of an LLM
    /// or of their keys, which, why and what that costs.
    pub fn running_summary(&self) -> String {
        let mut text = format!("{} services running", self.expected().len());
        let left_out = self.without_llm();
        if !left_out.is_empty() {
            text.push_str(&format!("; without an LLM, not running: {} ({NO_LLM_LOSS})", left_out.join(", ")));
        }
        let keyless = self.without_keys();
        if !keyless.is_empty() {
            text.push_str(&format!("; {}", keyless_summary(&keyless)));
        }
        text
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

/// "without their keys, not running: SERVICE (why; what to give), ...".
pub fn keyless_summary(keyless: &[KeylessService]) -> String {
    let named: Vec<String> = keyless.iter().map(KeylessService::describe).collect();
    format!("without their keys, not running: {}", named.join(", "))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// What a deployed stack was brought up with: the generated files and the
/// env files its compose reads that a person may give
/// ([`layout::STACK_ENV_FILES`]), by hash: the one given on this run, or
/// what the server has (`files`), which the layout keeps when none is
/// given. So a re-run that gives fewer files, or none, finds the stamp of
/// the run that gave them. A different stamp means `up` again.
/// healthcheck.env (IMAGE's scripts/healthcheck) and hf.env (vLLM) are not
/// the stack's: changing them restarts nothing of it.
pub fn deploy_stamp(img: &ImageConfig, docker_gid: &str, services: &SiteServices, files: &FileFacts) -> String {
    let mut h = Sha256::new();
    h.update(layout::env_text(img, docker_gid));
    h.update(layout::site_text(img, services));
    h.update(layout::imageup_env_text(img));
    for name in layout::STACK_ENV_FILES {
        let content = match img.env_files.iter().find(|(n, _)| n == name) {
            Some((_, given)) => sha256_hex(given),
            None => files.sha256(&img.config_path(name)).unwrap_or("absent").to_owned(),
        };
        h.update(format!("{name} {content}\n"));
    }
    hex(&h.finalize())
}

/// The stack is up with these settings, every service running.
pub fn deployed(docker_gid: Option<&str>, stack: &StackFacts, files: &FileFacts, img: &ImageConfig) -> bool {
    docker_gid.is_some_and(|gid| stack.deployed_as(&deploy_stamp(img, gid, &stack.site_services(img), files)))
}

/// The facts the stack step plans from.
pub struct StackInputs<'a> {
    pub docker_gid: Option<&'a str>,
    pub layout: &'a LayoutFacts,
    pub containers: &'a Containers,
    pub pull: &'a PullFacts,
    pub stack: &'a StackFacts,
    pub files: &'a FileFacts,
}

/// `cuda_check`: with a GPU (not --no-gpu), once the images are pulled, the
/// driver serves the CUDA the GPU images need (the gpu-check step's
/// cuda-check.sh, for the images that were not pulled then).
pub fn plan(facts: StackInputs, cuda_check: Option<Cmd>, img: &ImageConfig) -> Plan {
    let StackInputs { docker_gid, layout, containers, pull, stack, files } = facts;
    let Some(gid) = docker_gid else {
        return Plan::Pending("the docker group does not exist yet".into());
    };
    if !layout.cloned || !containers.listed {
        return Plan::Pending("the clone and a running Docker come first".into());
    }
    let services = stack.site_services(img);
    let stamp = deploy_stamp(img, gid, &services, files);
    if stack.deployed_as(&stamp) {
        return Plan::Ok(format!("{}, deployed with these settings", stack.running_summary()));
    }
    let mut actions = Vec::new();
    // On a fresh host the layout step wrote the site override before the
    // clone said which services need the LLM or keys: with --no-llm, or
    // keys missing, it is written again now that they are known, before the
    // bring-up.
    let mut writes = Writes::new(files, backup_dir());
    let rewrite_site = writes.file(&img.site_path(), layout::site_text(img, &services), 0o644, None, false);
    let copies = writes.copies();
    actions.extend(writes.into_actions());
    if img.llm == Llm::EnvFile {
        actions.push(Action::Check(llm_check_command(img)));
    }
    if *pull == PullFacts::Running {
        actions.push(Action::Check(pull::wait_command(img.imageup_timeout)));
    }
    if let Some(check) = cuda_check {
        actions.push(Action::Check(check));
    }
    actions.push(Action::Change(
        Cmd::script(stack_up_script())
            .named("stack-up.sh")
            .sudo()
            .env("BASE_DIR", &img.base_dir)
            .env("IMAGEUP", if img.imageup { "yes" } else { "no" })
            .env("TIMEOUT", img.imageup_timeout.as_secs().to_string())
            .env("STAMP", stamp)
            .time_limit(crate::settings::bring_up_limit(img.imageup_timeout)),
    ));
    let how = if img.imageup {
        format!("bin/imageup (time limit {} s)", img.imageup_timeout.as_secs())
    } else {
        "docker compose pull and up (--no-imageup)".into()
    };
    let why = if stack.deployed_stamp.is_some() { "settings changed or services down" } else { "not deployed yet" };
    let why = match copies {
        Some(copies) => format!("{copies}, {why}"),
        None => why.to_string(),
    };
    let llm = match img.llm {
        Llm::Without if rewrite_site => {
            format!("; --no-llm: {} not started ({NO_LLM_LOSS}), in {SITE_COMPOSE}", stack.llm_services.join(", "))
        }
        Llm::Without => format!("; --no-llm: the services that need an LLM will not run ({NO_LLM_LOSS})"),
        // A local LLM: the llm step has seen it serve its model.
        Llm::EnvFile | Llm::Local => String::new(),
    };
    let keyless =
        if services.keyless.is_empty() { String::new() } else { format!("; {}", keyless_summary(&services.keyless)) };
    Plan::Act { why: format!("{why}: {how}{llm}{keyless}"), actions }
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

    /// Without a key in config/llm.env the LLM services are left out of what
    /// must run (they exit at start-up), and the summary says so; with one
    /// they count like any other.
    #[test]
    fn the_llm_services_are_expected_only_with_a_key() {
        let base = "stack.project_dirs=/var/docker/image\nstack.services=graphic-caption orchestrator text-followup\n\
                    stack.llm_services=graphic-caption text-followup\ncontainers.listed=yes\ndocker.networks=bridge\n\
                    container=image\t/var/docker/image\torchestrator\trunning\to\tUp (healthy)\n\
                    container=image\t/var/docker/image\tgraphic-caption\texited\tg\tExited (1)\n\
                    stack.deployed=abc\n";
        let without = facts(&format!("{base}stack.llm_key=no\n"));
        assert_eq!(without.expected(), ["orchestrator"]);
        assert!(without.down().is_empty() && without.deployed_as("abc"));
        let summary = without.running_summary();
        assert!(
            summary.starts_with("1 services running; without an LLM, not running: graphic-caption, text-followup (")
        );
        assert!(summary.contains("photo audio"), "{summary}");
        let with = facts(&format!("{base}stack.llm_key=yes\n"));
        assert_eq!(with.down(), ["graphic-caption", "text-followup"]);
        assert!(!with.deployed_as("abc"));
        assert_eq!(with.running_summary(), "3 services running");
    }

    /// IMAGE's OCR preprocessor (the test and default profiles) reads
    /// config/apis-and-selection.env and exits at start-up without
    /// AZURE_API_KEY and FREEOCR_API_KEY. With the empty file the layout
    /// creates, the site override leaves it off and the step says why and
    /// what to give; what must run does not wait for it, so the stack
    /// converges. Given the keys (`--env-file apis-and-selection.env=PATH`),
    /// or once the server's file sets them, it is started and counted.
    #[test]
    fn the_ocr_service_runs_only_with_its_keys() {
        use crate::settings::Profile;
        let img = ImageConfig { profile: Profile::Test, llm: Llm::Without, ..ImageConfig::default() };
        let base = "stack.project_dirs=/var/docker/image\nstack.services=ocr-clouds-preprocessor orchestrator\n\
                    stack.env_readers.apis-and-selection.env=ocr-clouds-preprocessor\n\
                    stack.env_readers.express-common.env=orchestrator\nstack.env_keys.express-common.env=\n\
                    containers.listed=yes\ndocker.networks=bridge\n\
                    container=image\t/var/docker/image\torchestrator\trunning\to\tUp (healthy)\n";
        let raw = RawFacts::parse(&format!("{base}stack.env_keys.apis-and-selection.env=\n"));
        let containers = Containers::parse(&raw);
        let layout = LayoutFacts { cloned: true, ..LayoutFacts::default() };
        let plan_of = |stack: &StackFacts, img: &ImageConfig| {
            let inputs = StackInputs {
                docker_gid: Some("998"),
                layout: &layout,
                containers: &containers,
                pull: &PullFacts::NotStarted,
                stack,
                files: &FileFacts::default(),
            };
            match plan(inputs, None, img) {
                Plan::Act { why, actions } => {
                    let site = actions.iter().find_map(|a| match a {
                        Action::Upload { path, content, .. } if *path == img.site_path() => {
                            Some(String::from_utf8(content.clone()).unwrap())
                        }
                        _ => None,
                    });
                    (why, site.expect("the site override written"))
                }
                other => panic!("{other:?}"),
            }
        };
        let without = StackFacts::parse(&raw, &containers);
        let (why, site) = plan_of(&without, &img);
        let reason = "ocr-clouds-preprocessor (no AZURE_API_KEY, FREEOCR_API_KEY in config/apis-and-selection.env: \
                      no text read from graphics; give --env-file apis-and-selection.env=PATH)";
        assert!(why.ends_with(&format!("; without their keys, not running: {reason}")), "{why}");
        assert!(site.contains("  ocr-clouds-preprocessor:\n    deploy:\n      replicas: 0\n"), "{site}");
        assert_eq!(without.expected(), ["orchestrator"]);
        assert!(without.down().is_empty() && without.not_ok().is_empty());
        assert_eq!(without.running_summary(), format!("1 services running; without their keys, not running: {reason}"));

        // Given on this run: the layout writes it with the override, so
        // the override starts the service already.
        let given = ImageConfig {
            env_files: vec![(
                "apis-and-selection.env".into(),
                b"AZURE_API_KEY=k\nFREEOCR_API_KEY=\nCLOUD_SERVICE=AZURE_READ\n".to_vec(),
            )],
            ..img.clone()
        };
        let (why, site) = plan_of(&without, &given);
        assert!(!why.contains("without their keys") && !site.contains("replicas"), "{why}\n{site}");
        // On the server: counted, and down until it runs.
        let raw =
            RawFacts::parse(&format!("{base}stack.env_keys.apis-and-selection.env=AZURE_API_KEY FREEOCR_API_KEY\n"));
        let with = StackFacts::parse(&raw, &containers);
        assert!(with.without_keys().is_empty());
        assert_eq!(with.down(), ["ocr-clouds-preprocessor"]);
        // Only one of them set: still off (the service needs both).
        let raw =
            RawFacts::parse(&format!("{base}stack.env_keys.apis-and-selection.env=CLOUD_SERVICE FREEOCR_API_KEY\n"));
        let one = StackFacts::parse(&raw, &containers);
        assert_eq!(one.without_keys()[0].missing, ["AZURE_API_KEY"]);
        assert!(one.down().is_empty());
    }

    /// The deploy stamp counts the stack's env files as the server will
    /// have them: a re-run that gives none, or fewer, finds the stamp of the
    /// run that gave them (the layout keeps them), so it restarts nothing;
    /// one given anew, emptied (`NAME=`) or changed on the server changes
    /// it. healthcheck.env and hf.env are not the stack's.
    #[test]
    fn the_stamp_counts_the_env_files_the_server_keeps() {
        let llm = b"LLM_URL=u\nLLM_API_KEY=k\nLLM_MODEL=m\n".to_vec();
        let maps = b"MAPS_KEY=secret\n".to_vec();
        let given = ImageConfig {
            llm: Llm::EnvFile,
            env_files: vec![
                ("llm.env".into(), llm.clone()),
                ("maps.env".into(), maps.clone()),
                ("healthcheck.env".into(), b"SLACK_WEBHOOK_URL=https://hooks.slack.test/x\n".to_vec()),
            ],
            ..ImageConfig::default()
        };
        let host = |maps_sha: &str| {
            let mut text = format!(
                "file.{}={} 600 ubuntu\nfile.{}={maps_sha} 600 ubuntu\n",
                given.config_path("llm.env"),
                sha256_hex(&llm),
                given.config_path("maps.env")
            );
            for name in ["azure-api.env", "apis-and-selection.env"] {
                text.push_str(&format!("file.{}={} 600 ubuntu\n", given.config_path(name), sha256_hex("")));
            }
            FileFacts::parse(&RawFacts::parse(&text))
        };
        let kept = host(&sha256_hex(&maps));
        let stamp = |img: &ImageConfig, files: &FileFacts| deploy_stamp(img, "998", &SiteServices::default(), files);
        let deployed = stamp(&given, &kept);
        // Only llm.env given again (the LLM must be chosen on every run).
        let fewer = ImageConfig { env_files: vec![("llm.env".into(), llm.clone())], ..given.clone() };
        assert_eq!(stamp(&fewer, &kept), deployed, "a re-run without maps.env and healthcheck.env");
        let other_hook = ImageConfig {
            env_files: vec![("llm.env".into(), llm.clone()), ("healthcheck.env".into(), Vec::new())],
            ..given.clone()
        };
        assert_eq!(stamp(&other_hook, &kept), deployed, "healthcheck.env is not the stack's");
        assert_ne!(stamp(&fewer, &host("0000")), deployed, "maps.env changed on the server");
        let emptied = ImageConfig {
            env_files: vec![("llm.env".into(), llm.clone()), ("maps.env".into(), Vec::new())],
            ..given.clone()
        };
        assert_ne!(stamp(&emptied, &kept), deployed, "maps.env emptied");
        let new_maps = ImageConfig {
            env_files: vec![("llm.env".into(), llm), ("maps.env".into(), b"MAPS_KEY=new\n".to_vec())],
            ..given.clone()
        };
        assert_ne!(stamp(&new_maps, &kept), deployed, "maps.env given anew");
    }

    /// Not well: not running (its status), or running but unhealthy or
    /// still starting by its image's health check; with its log's last line.
    #[test]
    fn services_not_running_or_not_healthy_are_named_with_their_log() {
        let s = facts(
            "stack.project_dirs=/var/docker/image\nstack.services=a b c d e\nstack.llm_key=yes\n\
             containers.listed=yes\ndocker.networks=bridge\n\
             container=image\t/var/docker/image\ta\trunning\ta1\tUp 2 minutes (healthy)\n\
             container=image\t/var/docker/image\tb\trunning\tb1\tUp 2 minutes\n\
             container=image\t/var/docker/image\tc\trunning\tc1\tUp 2 minutes (unhealthy)\n\
             container=image\t/var/docker/image\td\texited\td1\tExited (1) 1 minute ago\n\
             stack.log.c=loading model\u{1e}CUDA error: out of memory\n\
             stack.log.d=Traceback\u{1e}KeyError: LLM_API_KEY\n",
        );
        let names: Vec<String> = s.not_ok().iter().map(ServiceTrouble::describe).collect();
        assert_eq!(
            names,
            [
                "c (unhealthy; last log: CUDA error: out of memory)",
                "d (Exited (1) 1 minute ago; last log: KeyError: LLM_API_KEY)",
                "e (no container)"
            ]
        );
        assert_eq!(s.not_ok()[0].log, "loading model\nCUDA error: out of memory");
    }
}
