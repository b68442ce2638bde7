//! The IMAGE steps (after part 1's Docker and GPU): the layout and its
//! generated files, the background pull, Traefik, the stack, its health.
//! Facts about the layout come from scripts/image-facts.sh, in the same round
//! trip as the rest; generated files are templates (templates/), compared
//! with the host's copy by sha256 and uploaded only when they differ.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use image_provision_remote::Cmd;
use sha2::{Digest, Sha256};

use crate::facts::Facts;
use crate::steps::{Action, Plan};

pub const IMAGE_FACTS_SH: &str = include_str!("../scripts/image-facts.sh");
pub const CLONE_SH: &str = include_str!("../scripts/clone.sh");
pub const ENV_FILES_SH: &str = include_str!("../scripts/env-files.sh");
pub const START_PULL_SH: &str = include_str!("../scripts/start-pull.sh");
pub const WAIT_PULL_SH: &str = include_str!("../scripts/wait-pull.sh");
pub const STACK_UP_SH: &str = include_str!("../scripts/stack-up.sh");
pub const HEALTH_SH: &str = include_str!("../scripts/health.sh");

/// Where the HTTPS health check reaches Traefik: the host's own loopback
/// (Traefik publishes 443 on every address), with the domain resolved to it
/// (`curl --resolve DOMAIN:443:ADDR`), so the check proves Traefik's route
/// and certificate for the domain, not public DNS or firewalls.
pub const DEFAULT_HTTPS_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// image-facts.sh, with the list of env files it shares with env-files.sh
/// in front (the facts scripts go after facts.sh: see
/// [`crate::facts::script_with_image`]).
pub fn image_facts_script() -> String {
    crate::shlib::with(&[crate::shlib::COMPOSE_ENV_FILES_SH], IMAGE_FACTS_SH)
}

/// env-files.sh, with the list of env files it shares with image-facts.sh
/// in front.
pub fn env_files_script() -> String {
    crate::shlib::with(&[crate::shlib::COMPOSE_ENV_FILES_SH], ENV_FILES_SH)
}

/// stack-up.sh, with the imageup runner it shares with update.sh in front.
pub fn stack_up_script() -> String {
    crate::shlib::with(&[crate::shlib::RUN_IMAGEUP_SH], STACK_UP_SH)
}

pub const SITE_COMPOSE_TEMPLATE: &str = include_str!("../templates/site-compose.yml");
pub const TRAEFIK_COMPOSE_TEMPLATE: &str = include_str!("../templates/traefik-compose.yml");
pub const ENV_TEMPLATE: &str = include_str!("../templates/env");
pub const IMAGEUP_ENV_TEMPLATE: &str = include_str!("../templates/imageup.env");

pub const DEFAULT_BASE_DIR: &str = "/var/docker/image";
pub const DEFAULT_REPO_URL: &str = "https://github.com/Shared-Reality-Lab/IMAGE-server.git";
/// imageup checks out and resets to main whatever was cloned.
pub const DEFAULT_REPO_BRANCH: &str = "main";
pub const DEFAULT_REGISTRY_TAG: &str = "latest";
/// Pinned: a Traefik upgrade is a decision, not a side effect of a re-run.
pub const TRAEFIK_IMAGE: &str = "traefik:v3.6.13";
pub const TRAEFIK_DIR: &str = "/var/docker/traefik";
pub const SITE_COMPOSE: &str = "site-docker-compose.yml";

/// The env files a person may supply with `--env-file NAME=PATH`.
pub const SUPPLIED_ENV_FILES: &[&str] = &["llm.env", "maps.env", "azure-api.env", "apis-and-selection.env"];
/// What llm.env must set (non-empty): the orchestrator's LLM client.
pub const LLM_KEYS: &[&str] = &["LLM_URL", "LLM_API_KEY", "LLM_MODEL"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Production,
    Test,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Production => "production",
            Profile::Test => "test",
        }
    }
}

/// The IMAGE steps' settings, resolved and checked.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    pub base_dir: String,
    /// HTTPS (or, for tests, file://) URL of IMAGE-server.
    pub repo_url: String,
    pub repo_branch: String,
    /// The server's public host name: Traefik routes it, Let's Encrypt
    /// certifies it. None: no Traefik routes and no HTTPS check.
    pub domain: Option<String>,
    pub acme_email: Option<String>,
    pub registry_tag: String,
    pub profile: Profile,
    pub pii_logging: bool,
    /// Supplied env files: (name under config/, content), already checked.
    pub env_files: Vec<(String, Vec<u8>)>,
    /// Run scripts/imageup (else plain compose pull and up).
    pub imageup: bool,
    pub imageup_timeout: Duration,
    /// How long the health step waits for the orchestrator (and HTTPS).
    pub health_timeout: Duration,
    /// GET https://DOMAIN/health from the host, through its own Traefik
    /// (off only in tests without Traefik's stand-in).
    pub https_check: bool,
    /// The address that check sends DOMAIN to: [`DEFAULT_HTTPS_ADDR`]
    /// (another only in tests, whose Traefik stand-in listens elsewhere).
    pub https_addr: IpAddr,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            base_dir: DEFAULT_BASE_DIR.into(),
            repo_url: DEFAULT_REPO_URL.into(),
            repo_branch: DEFAULT_REPO_BRANCH.into(),
            domain: None,
            acme_email: None,
            registry_tag: DEFAULT_REGISTRY_TAG.into(),
            profile: Profile::Production,
            pii_logging: false,
            env_files: Vec::new(),
            imageup: true,
            imageup_timeout: Duration::from_secs(3600),
            health_timeout: Duration::from_secs(300),
            https_check: true,
            https_addr: DEFAULT_HTTPS_ADDR,
        }
    }
}

impl ImageConfig {
    pub fn clone_dir(&self) -> String {
        format!("{}/IMAGE-server", self.base_dir)
    }
    pub fn env_path(&self) -> String {
        format!("{}/.env", self.base_dir)
    }
    pub fn site_path(&self) -> String {
        format!("{}/{SITE_COMPOSE}", self.base_dir)
    }
    pub fn config_path(&self, name: &str) -> String {
        format!("{}/config/{name}", self.clone_dir())
    }
    pub fn traefik_path(&self) -> String {
        format!("{TRAEFIK_DIR}/docker-compose.yml")
    }
    /// The extension's custom server URL (trailing slash: it POSTs to `<url>render`).
    pub fn extension_url(&self) -> Option<String> {
        self.domain.as_ref().map(|d| format!("https://{d}/"))
    }

    /// The stack's health URL through Traefik, checked when there is a domain
    /// (at [`ImageConfig::https_addr`], not wherever DNS points).
    pub fn health_url(&self) -> Option<String> {
        self.domain.as_ref().filter(|_| self.https_check).map(|d| format!("https://{d}/health"))
    }

    /// Every file the steps write, whose hash and mode the facts report.
    pub fn watched_files(&self) -> Vec<String> {
        let mut files = vec![self.env_path(), self.site_path(), self.config_path("imageup.env"), self.traefik_path()];
        files.extend(self.env_files.iter().map(|(name, _)| self.config_path(name)));
        files
    }

    fn compose_file(&self) -> String {
        // Absolute: imageup runs compose from inside the clone too.
        let mut files = vec![format!("{}/docker-compose.yml", self.base_dir)];
        if self.domain.is_some() {
            files.push(self.site_path());
        }
        files.join(":")
    }

    pub fn env_text(&self, docker_gid: &str) -> String {
        render(
            ENV_TEMPLATE,
            &[
                ("COMPOSE_PROFILES", self.profile.name()),
                ("COMPOSE_FILE", &self.compose_file()),
                ("REGISTRY_TAG", &self.registry_tag),
                ("DOCKER_GID", docker_gid),
                ("PII_LOGGING_ENABLED", if self.pii_logging { "true" } else { "false" }),
            ],
        )
    }

    pub fn site_text(&self) -> Option<String> {
        self.domain.as_ref().map(|d| render(SITE_COMPOSE_TEMPLATE, &[("DOMAIN", d)]))
    }

    pub fn imageup_env_text(&self) -> String {
        render(
            IMAGEUP_ENV_TEMPLATE,
            &[
                ("COMPOSE_ENV_FILE", &self.env_path()),
                ("ENVIRONMENT", self.profile.name()),
                ("DOCKER_DIR", &self.base_dir),
                ("IMAGE_SERVER_DIR", &self.clone_dir()),
                ("GIT_REMOTE", &self.repo_url),
            ],
        )
    }

    pub fn traefik_text(&self) -> Option<String> {
        let email = self.acme_email.as_deref()?;
        self.domain.as_ref()?;
        Some(render(TRAEFIK_COMPOSE_TEMPLATE, &[("TRAEFIK_IMAGE", TRAEFIK_IMAGE), ("ACME_EMAIL", email)]))
    }

    /// What a deployed stack was brought up with: every generated and
    /// supplied file (by hash). A different stamp means `up` again.
    pub fn deploy_stamp(&self, docker_gid: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.env_text(docker_gid));
        h.update(self.site_text().unwrap_or_default());
        h.update(self.imageup_env_text());
        for (name, content) in &self.env_files {
            h.update(name);
            h.update(sha256_hex(content));
        }
        hex(&h.finalize())
    }
}

/// Fill `{{KEY}}` placeholders. Values are checked when the flags are
/// resolved (host names, e-mail, paths), so none can break the file's syntax.
///
/// # Panics
/// On a placeholder left unfilled: a template and its caller disagree.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!out.contains("{{"), "template placeholder left unfilled in:\n{out}");
    out
}

pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- checks

/// A host name the site can be reached at: letters, digits, hyphens in
/// labels of at most 63, at least two labels, at most 253 in all.
pub fn check_domain(d: &str) -> Result<(), String> {
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!("{d:?} is not a host name"));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("{d:?} is an IP address: Let's Encrypt certifies host names only"));
    }
    Ok(())
}

pub fn check_email(e: &str) -> Result<(), String> {
    let ok = e.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty()
            && user.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
            && check_domain(host).is_ok()
    });
    if ok { Ok(()) } else { Err(format!("{e:?} is not an e-mail address")) }
}

/// An absolute path compose and imageup can use (COMPOSE_FILE is
/// colon-separated, imageup.env is split on white space).
pub fn check_base_dir(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.ends_with('/')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{p:?} is not an absolute path of letters, digits, '/', '.', '_' and '-'")) }
}

/// A Docker image tag.
pub fn check_registry_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok { Ok(()) } else { Err(format!("{t:?} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")) }
}

pub fn check_repo_url(u: &str) -> Result<(), String> {
    let scheme_ok = u.starts_with("https://") || u.starts_with("file:///") || u.starts_with("http://");
    if !scheme_ok || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{u:?} is not an HTTPS URL (a fresh host has no GitHub key, so the clone goes over HTTPS)"
        ));
    }
    Ok(())
}

pub fn check_branch(b: &str) -> Result<(), String> {
    let ok = !b.is_empty()
        && !b.starts_with(['-', '/'])
        && !b.contains("..")
        && b.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{b:?} is not a branch name")) }
}

/// A supplied env file: `KEY=value` lines (blank lines and `#` comments
/// allowed), and for llm.env the LLM settings, non-empty. Errors name the
/// line but never show it: the file holds credentials.
pub fn check_env_file(name: &str, text: &str) -> Result<(), String> {
    let mut keys = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=value", i + 1));
        };
        let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(format!(
                "line {} is not KEY=value (the name before '=' must be letters, digits and '_', with no spaces)",
                i + 1
            ));
        }
        keys.insert(key.to_string(), !value.trim().is_empty());
    }
    if name == "llm.env" {
        let lacking: Vec<&str> = LLM_KEYS.iter().copied().filter(|k| keys.get(*k) != Some(&true)).collect();
        if !lacking.is_empty() {
            return Err(format!(
                "{} not set (each must be non-empty: LLM_URL the OpenAI-compatible base URL ending in /v1, \
                 LLM_API_KEY a key or a placeholder for a server without one, LLM_MODEL a Qwen-VL model)",
                lacking.join(", ")
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- facts

impl Facts {
    pub fn docker_gid(&self) -> Option<&str> {
        self.get("docker.gid")
    }
    /// (sha256, mode) of a watched file, None when absent.
    pub fn file(&self, path: &str) -> Option<(&str, &str)> {
        self.get(&format!("file.{path}")).filter(|v| *v != "absent").and_then(|v| v.split_once(' '))
    }
    fn words(&self, key: &str) -> Vec<&str> {
        self.get(key).map(|v| v.split_whitespace().collect()).unwrap_or_default()
    }
    pub fn docker_networks(&self) -> Vec<&str> {
        self.words("docker.networks")
    }
    /// Docker answered (the image facts could ask it).
    pub fn docker_answers(&self) -> bool {
        self.get("docker.networks").is_some()
    }
}

fn file_is(facts: &Facts, path: &str, content: &[u8], mode: &str) -> bool {
    facts.file(path) == Some((sha256_hex(content).as_str(), mode))
}

fn root_cmd(program: &str) -> Cmd {
    Cmd::new(program).sudo()
}

fn upload(path: String, content: impl Into<Vec<u8>>, mode: u32, secret: bool) -> Action {
    Action::Upload { path, content: content.into(), mode, secret }
}

// ---------------------------------------------------------------- plans

pub fn plan_layout(facts: &Facts, img: &ImageConfig) -> Plan {
    let Some(gid) = facts.docker_gid() else {
        return Plan::Pending("the docker group does not exist yet (the docker step makes it)".into());
    };
    let base = &img.base_dir;
    let clone = img.clone_dir();
    let mut actions = Vec::new();
    let mut why = Vec::new();

    let missing: Vec<String> = facts
        .get("image.dirs_missing")
        .map(|m| m.split_whitespace().map(|d| format!("{base}/{d}")).collect())
        .unwrap_or_default();
    if !missing.is_empty() {
        why.push(format!("create {}", missing.join(" ")));
        actions.push(Action::Change(root_cmd("mkdir").args(["-p", "--"]).args(missing)));
    }

    let cloned = facts.get("image.clone") == Some("yes");
    let rewrite = facts.get("image.git_rewrite").is_some_and(|v| v.split_whitespace().any(|w| w == "git@github.com:"));
    let clone_needed = !cloned
        || facts.get("image.origin") != Some(img.repo_url.as_str())
        || facts.get("image.submodule") != Some("yes")
        || !rewrite;
    if clone_needed {
        why.push(if cloned { "update the clone's remote and submodule".into() } else { format!("clone {}", img.repo_url) });
        actions.push(Action::Change(
            Cmd::script(CLONE_SH)
                .named("clone.sh")
                .sudo()
                .env("BASE_DIR", base)
                .env("REPO_URL", &img.repo_url)
                .env("BRANCH", &img.repo_branch),
        ));
    }

    let links = [
        ("bin", format!("{clone}/scripts")),
        ("config", "IMAGE-server/config".to_string()),
        ("docker-compose.yml", "IMAGE-server/docker-compose.yml".to_string()),
    ];
    for (name, target) in links {
        if facts.get(&format!("image.link.{name}")) != Some(target.as_str()) {
            why.push(format!("link {name}"));
            actions.push(Action::Change(root_cmd("ln").args(["-sfnT", "--", &target, &format!("{base}/{name}")])));
        }
    }

    let env = img.env_text(gid);
    if !file_is(facts, &img.env_path(), env.as_bytes(), "644") {
        why.push("write .env".into());
        actions.push(upload(img.env_path(), env, 0o644, false));
    }
    if let Some(site) = img.site_text()
        && !file_is(facts, &img.site_path(), site.as_bytes(), "644")
    {
        why.push(format!("write {SITE_COMPOSE}"));
        actions.push(upload(img.site_path(), site, 0o644, false));
    }
    let imageup_env = img.imageup_env_text();
    let imageup_path = img.config_path("imageup.env");
    if !file_is(facts, &imageup_path, imageup_env.as_bytes(), "600") {
        why.push("write config/imageup.env".into());
        actions.push(upload(imageup_path, imageup_env, 0o600, false));
    }
    for (name, content) in &img.env_files {
        let path = img.config_path(name);
        if !file_is(facts, &path, content, "600") {
            why.push(format!("write config/{name}"));
            actions.push(upload(path, content.clone(), 0o600, true));
        }
    }
    // After the uploads: they make some of the files this would otherwise
    // create empty.
    let env_gap = facts.get("image.env_absent").is_some() || facts.get("image.env_open").is_some();
    if clone_needed || env_gap {
        why.push("every config/*.env present and 0600".into());
        actions.push(Action::Change(Cmd::script(env_files_script()).named("env-files.sh").sudo().env("BASE_DIR", base)));
    }

    if actions.is_empty() {
        let site = img.domain.as_deref().map(|d| format!("; site {d}")).unwrap_or_default();
        return Plan::Ok(format!(
            "{clone} cloned with schemas; links, .env and config/*.env in place{site}"
        ));
    }
    Plan::Act { why: why.join(", "), actions }
}

fn env_sha(facts: &Facts, img: &ImageConfig) -> Option<String> {
    facts.docker_gid().map(|gid| sha256_hex(img.env_text(gid)))
}

fn deployed(facts: &Facts, img: &ImageConfig) -> bool {
    let Some(gid) = facts.docker_gid() else { return false };
    let services = facts.words("image.services");
    let running = facts.words("image.running");
    facts.get("image.deployed") == Some(img.deploy_stamp(gid).as_str())
        && !services.is_empty()
        && services.iter().all(|s| running.contains(s))
}

pub fn plan_pull(facts: &Facts, img: &ImageConfig) -> Plan {
    if facts.get("image.clone") != Some("yes") || !facts.docker_answers() {
        return Plan::Pending("the clone and a running Docker come first".into());
    }
    if deployed(facts, img) {
        return Plan::Ok("the stack is up with these settings (`update` pulls newer images)".into());
    }
    let want = env_sha(facts, img).unwrap_or_default();
    match facts.get("image.pull").unwrap_or("none") {
        "running" => return Plan::Ok("already pulling in the background".into()),
        state if state.strip_prefix("done 0 ") == Some(want.as_str()) => {
            return Plan::Ok("images pulled".into());
        }
        _ => {}
    }
    Plan::Act {
        why: format!(
            "start pulling the IMAGE images in the background (log {}/.image-provision/pull.log)",
            img.base_dir
        ),
        actions: vec![Action::Change(
            Cmd::script(START_PULL_SH)
                .named("start-pull.sh")
                .sudo()
                .env("BASE_DIR", &img.base_dir)
                .env("ENV_SHA", want),
        )],
    }
}

pub fn plan_traefik(facts: &Facts, img: &ImageConfig) -> Plan {
    if !facts.docker_answers() {
        return Plan::Pending("Docker must be running".into());
    }
    let mut actions = Vec::new();
    let mut why = Vec::new();
    // The IMAGE compose file's external network: `up` fails without it.
    if !facts.docker_networks().contains(&"traefik") {
        why.push("create the traefik network".into());
        actions.push(Action::Change(root_cmd("docker").args(["network", "create", "traefik"])));
    }
    let Some(compose) = img.traefik_text() else {
        if actions.is_empty() {
            return Plan::Skip("no --domain: the traefik network exists; Traefik itself has no site to route".into());
        }
        return Plan::Act { why: format!("{} (no --domain: no Traefik container)", why.join(", ")), actions };
    };
    let path = img.traefik_path();
    let changed = !file_is(facts, &path, compose.as_bytes(), "644");
    if changed {
        why.push(format!("write {path}"));
        actions.push(upload(path.clone(), compose, 0o644, false));
    }
    let running = facts.get("traefik.running").is_some_and(|r| r.split_whitespace().any(|n| n == "traefik"));
    if changed || !running {
        why.push("bring Traefik up".into());
        actions.push(Action::Change(
            root_cmd("docker").args(["compose", "--project-directory", TRAEFIK_DIR, "-f", &path, "up", "-d"]),
        ));
    }
    if actions.is_empty() {
        return Plan::Ok(format!("{TRAEFIK_IMAGE} running on 80/443, network traefik"));
    }
    Plan::Act { why: why.join(", "), actions }
}

pub fn plan_stack(facts: &Facts, img: &ImageConfig) -> Plan {
    let Some(gid) = facts.docker_gid() else {
        return Plan::Pending("the docker group does not exist yet".into());
    };
    if facts.get("image.clone") != Some("yes") || !facts.docker_answers() {
        return Plan::Pending("the clone and a running Docker come first".into());
    }
    if deployed(facts, img) {
        let n = facts.words("image.services").len();
        return Plan::Ok(format!("{n} services running, deployed with these settings"));
    }
    let mut actions = Vec::new();
    if facts.get("image.pull") == Some("running") {
        actions.push(Action::Check(
            Cmd::script(WAIT_PULL_SH)
                .named("wait-pull.sh")
                .sudo()
                .env("TIMEOUT", img.imageup_timeout.as_secs().to_string()),
        ));
    }
    actions.push(Action::Change(
        Cmd::script(stack_up_script())
            .named("stack-up.sh")
            .sudo()
            .env("BASE_DIR", &img.base_dir)
            .env("IMAGEUP", if img.imageup { "yes" } else { "no" })
            .env("TIMEOUT", img.imageup_timeout.as_secs().to_string())
            .env("STAMP", img.deploy_stamp(gid)),
    ));
    let how = if img.imageup {
        format!("bin/imageup (time limit {} s)", img.imageup_timeout.as_secs())
    } else {
        "docker compose pull and up (--no-imageup)".into()
    };
    let why = if facts.get("image.deployed").is_some() { "settings changed or services down" } else { "not deployed yet" };
    Plan::Act { why: format!("{why}: {how}"), actions }
}

pub fn plan_health(facts: &Facts, img: &ImageConfig) -> Plan {
    let url = img.health_url();
    let addr = img.https_addr;
    let tell = img
        .extension_url()
        .map(|u| format!("; extension URL {u}"))
        .unwrap_or_else(|| "; no --domain: no public URL".into());
    if facts.get("image.orchestrator") == Some("healthy") {
        match &url {
            None => return Plan::Ok(format!("orchestrator healthy{tell}")),
            // Checked by the facts script (image-facts.sh) in the same round trip.
            Some(u) if facts.get("image.https_health") == Some("ok") => {
                return Plan::Ok(format!("orchestrator healthy, GET {u} answers at {addr}{tell}"));
            }
            Some(_) => {}
        }
    }
    let mut cmd = Cmd::script(HEALTH_SH)
        .named("health.sh")
        .sudo()
        .env("BASE_DIR", &img.base_dir)
        .env("TIMEOUT", img.health_timeout.as_secs().to_string());
    let mut what = "orchestrator healthy".to_string();
    if let Some(u) = &url {
        cmd = cmd.env("URL", u).env("HTTPS_ADDR", addr.to_string());
        what.push_str(&format!(", GET {u} at {addr}"));
    }
    Plan::Act { why: format!("{what}{tell}"), actions: vec![Action::Check(cmd)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ImageConfig {
        ImageConfig {
            domain: Some("image.example.org".into()),
            acme_email: Some("ops@example.org".into()),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn env_names_compose_files_absolutely() {
        let env = cfg().env_text("998");
        assert!(env.contains(
            "\nCOMPOSE_FILE=/var/docker/image/docker-compose.yml:/var/docker/image/site-docker-compose.yml\n"
        ));
        assert!(env.contains("\nDOCKER_GID=998\n") && env.contains("\nPII_LOGGING_ENABLED=false\n"));
        assert!(env.contains("\nCOMPOSE_PROFILES=production\n") && env.contains("\nREGISTRY_TAG=latest\n"));
        let bare = ImageConfig::default().env_text("1");
        assert!(bare.contains("\nCOMPOSE_FILE=/var/docker/image/docker-compose.yml\n"), "{bare}");
    }

    #[test]
    fn imageup_env_is_plain_key_value() {
        let text = cfg().imageup_env_text();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = line.split_once('=').unwrap();
            assert!(!k.is_empty() && !v.contains(['"', '\'', ' ', '#']), "{line}");
        }
        assert!(text.contains("GIT_REMOTE=https://github.com/Shared-Reality-Lab/IMAGE-server.git\n"));
    }

    #[test]
    fn traefik_compose_never_says_image_in_a_name() {
        let text = cfg().traefik_text().unwrap();
        assert!(text.contains("container_name: traefik\n"));
        assert!(!text.lines().any(|l| l.contains("name:") && l.contains("image")), "{text}");
        assert!(text.contains("acme.email=ops@example.org"));
    }

    #[test]
    fn domains() {
        assert!(check_domain("image.example.org").is_ok());
        for bad in ["localhost", "-a.example.org", "a..org", "203.0.113.7", "a b.org", "image_x.org", "x.org/"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_file_checks_name_the_line_not_its_content() {
        assert!(check_env_file("maps.env", "# c\n\nA=1\nB=\n").is_ok());
        let e = check_env_file("maps.env", "A=1\nsecret-value-here\n").unwrap_err();
        assert_eq!(e, "line 2 is not KEY=value");
        let e = check_env_file("maps.env", "A B=secret\n").unwrap_err();
        assert!(e.starts_with("line 1 ") && !e.contains("secret"), "{e}");
        let e = check_env_file("llm.env", "LLM_API_KEY=k\nLLM_MODEL=m\nLLM_URL=\n").unwrap_err();
        assert!(e.starts_with("LLM_URL not set"), "{e}");
        assert!(check_env_file("llm.env", "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").is_ok());
    }

    #[test]
    fn converged_layout_is_ok_and_a_changed_secret_is_uploaded_secretly() {
        let mut img = cfg();
        img.env_files = vec![("llm.env".into(), b"LLM_URL=u\nLLM_API_KEY=k\nLLM_MODEL=m\n".to_vec())];
        let mut text = String::from(
            "docker.gid=998\nimage.dirs_missing=\nimage.clone=yes\nimage.submodule=yes\n\
             image.git_rewrite=git@github.com:\nimage.link.bin=/var/docker/image/IMAGE-server/scripts\n\
             image.link.config=IMAGE-server/config\nimage.link.docker-compose.yml=IMAGE-server/docker-compose.yml\n",
        );
        text.push_str(&format!("image.origin={}\n", img.repo_url));
        text.push_str(&format!("file.{}={} 644\n", img.env_path(), sha256_hex(img.env_text("998"))));
        text.push_str(&format!("file.{}={} 644\n", img.site_path(), sha256_hex(img.site_text().unwrap())));
        text.push_str(&format!("file.{}={} 600\n", img.config_path("imageup.env"), sha256_hex(img.imageup_env_text())));
        let converged = format!(
            "{text}file.{}={} 600\n",
            img.config_path("llm.env"),
            sha256_hex(&img.env_files[0].1)
        );
        assert!(matches!(plan_layout(&Facts::parse(&converged), &img), Plan::Ok(_)));
        let stale = format!("{text}file.{}=0000 600\n", img.config_path("llm.env"));
        match plan_layout(&Facts::parse(&stale), &img) {
            Plan::Act { actions, .. } => {
                assert_eq!(actions.len(), 1);
                assert!(matches!(&actions[0], Action::Upload { secret: true, mode: 0o600, .. }));
                let shown = actions[0].describe(false);
                assert!(!shown.contains("LLM_API_KEY") && shown.contains("llm.env"), "{shown}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// With a domain, the health step is ok only once the facts saw the URL
    /// answer through Traefik; otherwise it runs health.sh, which waits.
    #[test]
    fn health_needs_the_https_answer_when_there_is_a_domain() {
        let img = cfg();
        let healthy = Facts::parse("image.orchestrator=healthy\n");
        match plan_health(&healthy, &img) {
            Plan::Act { why, .. } => assert!(why.contains("GET https://image.example.org/health"), "{why}"),
            other => panic!("{other:?}"),
        }
        let answered = Facts::parse("image.orchestrator=healthy\nimage.https_health=ok\n");
        assert!(matches!(plan_health(&answered, &img), Plan::Ok(_)));
        let failed = Facts::parse("image.orchestrator=healthy\nimage.https_health=failed\n");
        assert!(matches!(plan_health(&failed, &img), Plan::Act { .. }));
        let starting = Facts::parse("image.orchestrator=starting\nimage.https_health=ok\n");
        assert!(matches!(plan_health(&starting, &img), Plan::Act { .. }));
        let no_domain = ImageConfig { domain: None, ..cfg() };
        assert!(matches!(plan_health(&healthy, &no_domain), Plan::Ok(_)));
        let facts_cmd = crate::facts::command_for(&crate::steps::Config { image: Some(img.clone()), ..Default::default() });
        let shown = facts_cmd.render(true);
        assert!(shown.contains("HEALTH_URL=https://image.example.org/health"), "{shown}");
        assert!(shown.contains("HTTPS_ADDR=127.0.0.1"), "{shown}");
        let no_check = ImageConfig { https_check: false, ..cfg() };
        let facts_cmd = crate::facts::command_for(&crate::steps::Config { image: Some(no_check), ..Default::default() });
        assert!(!facts_cmd.render(true).contains("HEALTH_URL") && !facts_cmd.render(true).contains("HTTPS_ADDR"));
    }

    /// The HTTPS check goes to the host's own Traefik: DOMAIN resolved to
    /// 127.0.0.1 unless another address is given (the tests' stand-in).
    #[test]
    fn https_health_goes_to_the_local_traefik() {
        let healthy = Facts::parse("image.orchestrator=healthy\n");
        let shown = |img: &ImageConfig| match plan_health(&healthy, img) {
            Plan::Act { why, actions } => match &actions[..] {
                [Action::Check(cmd)] => (why, cmd.render(true)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let (why, cmd) = shown(&cfg());
        assert!(why.contains("GET https://image.example.org/health at 127.0.0.1"), "{why}");
        assert!(cmd.contains("URL=https://image.example.org/health") && cmd.contains("HTTPS_ADDR=127.0.0.1"), "{cmd}");
        let elsewhere = ImageConfig { https_addr: "127.77.1.2".parse().unwrap(), ..cfg() };
        let (why, cmd) = shown(&elsewhere);
        assert!(why.contains("at 127.77.1.2"), "{why}");
        assert!(cmd.contains("HTTPS_ADDR=127.77.1.2"), "{cmd}");
        let facts_cmd = crate::facts::command_for(&crate::steps::Config { image: Some(elsewhere), ..Default::default() });
        assert!(facts_cmd.render(true).contains("HTTPS_ADDR=127.77.1.2"));
        // The scripts take the address from HTTPS_ADDR, 127.0.0.1 when empty.
        for script in [HEALTH_SH, IMAGE_FACTS_SH, crate::verify::VERIFY_FACTS_SH] {
            assert!(script.contains("--resolve") && script.contains("${HTTPS_ADDR:-127.0.0.1}"), "{script}");
        }
    }
}
