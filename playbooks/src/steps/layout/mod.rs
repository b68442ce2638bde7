//! The layout step: the IMAGE working directory as the IMAGE team's scripts
//! expect it: cache/ and testing/warmup/, the IMAGE-server clone over HTTPS
//! with its schemas submodule (clone.sh), the links bin, config and
//! docker-compose.yml, compose's .env, the site override (the map servers;
//! with a domain, Traefik's routes),
//! config/imageup.env, the supplied env files, and every config/*.env compose
//! reads present, 0600 and the login user's (env-files.sh).
//!
//! A secret on the server stays until the person replaces it: an env file
//! not given on this run is left as the server has it (env-files.sh only
//! creates the absent ones empty; healthcheck.env keeps its lines with our
//! LOG_DIR, merged on the host by keep-env-lines.sh). `--env-file NAME=`
//! (no path) empties one on purpose.
//!
//! A private repository's credentials (`--repo-credentials`) live in
//! [`REPO_CREDENTIALS`], root's and 0600, outside the clone; the clone's git
//! config (and its submodule's) names git's `store` helper with that path,
//! never the token (clone.sh). Kept like the env files: a run without the
//! flag leaves the server's, `none` removes them.

use std::collections::BTreeMap;

use image_provision_remote::Cmd;

pub mod keys;
use keys::KeylessService;

use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{
    DEFAULT_BASE_DIR, ImageConfig, Llm, Profile, REPO_CREDENTIALS, RepoCredentials, SITE_COMPOSE, TlsEnd,
};

/// Where [`DEFAULT_BASE_DIR`] lives.
const DEFAULT_BASE_PARENT: &str = "/var/docker";
use crate::shell::with_libraries;
use crate::template::{FileFacts, Writes, backup_dir, keep_env_lines, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const CLONE_SH: &str = include_str!("clone.sh");
pub const ENV_FILES_SH: &str = include_str!("env-files.sh");
/// A library: the config/*.env files compose will read, for the facts and
/// for env-files.sh alike.
pub const COMPOSE_ENV_FILES_SH: &str = include_str!("compose-env-files.sh");

pub const ENV_TEMPLATE: &str = include_str!("env.template");
pub const IMAGEUP_ENV_TEMPLATE: &str = include_str!("imageup.env.template");
pub const SITE_COMPOSE_TEMPLATE: &str = include_str!("site-compose.yml");
/// The site override's services and network for a domain (Traefik's routes).
pub const SITE_DOMAIN_TEMPLATE: &str = include_str!("site-domain.yml");
/// The site override's part for the test profile on a one-GPU server.
pub const SITE_TEST_PROFILE: &str = include_str!("site-test-profile.yml");

/// The facts script (input BASE_DIR), with the env files' list in front.
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/layout/facts.sh", FACTS_SH).with_libraries(&[COMPOSE_ENV_FILES_SH]).root(&["layout_facts"])
}

/// env-files.sh as sent, with the env files' list in front.
pub fn env_files_script() -> String {
    with_libraries(&[COMPOSE_ENV_FILES_SH], ENV_FILES_SH)
}

/// The links this step makes in the working directory, with their targets.
pub fn links(img: &ImageConfig) -> [(String, String); 3] {
    let base = &img.base_dir;
    [
        (format!("{base}/bin"), format!("{}/scripts", img.clone_dir())),
        (format!("{base}/config"), "IMAGE-server/config".to_string()),
        (format!("{base}/docker-compose.yml"), "IMAGE-server/docker-compose.yml".to_string()),
    ]
}

/// The files and links this step writes (the files facts report what is
/// there: hash and mode, or a link's target).
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    let mut files = vec![img.env_path(), img.site_path(), img.config_path("imageup.env"), REPO_CREDENTIALS.to_string()];
    files.extend(links(img).into_iter().map(|(path, _)| path));
    // Every env file the stack's compose reads that a person may give,
    // given this time or not: the stack's deploy stamp counts what the
    // server has of those not given.
    files.extend(STACK_ENV_FILES.iter().map(|name| img.config_path(name)));
    for f in operator_env_files(img) {
        if !files.contains(&f.path) {
            files.push(f.path);
        }
    }
    files
}

/// The env files a person may give (`--env-file`) that the stack's
/// compose reads (not healthcheck.env, which IMAGE's scripts/healthcheck
/// reads, nor hf.env, vLLM's).
pub const STACK_ENV_FILES: [&str; 4] = ["llm.env", "maps.env", "azure-api.env", "apis-and-selection.env"];

/// An env file one of the IMAGE team's operator scripts reads.
pub struct OperatorEnvFile {
    pub path: String,
    pub content: String,
    /// It holds what the person supplied (healthcheck.env's Slack webhook).
    pub secret: bool,
}

/// The env files the IMAGE team's operator scripts read from config/, so
/// they work on a fresh server: bin/imagelogs (DOCKER_DIR),
/// image_daily_cron (LOG_DIR), and healthcheck (LOG_DIR, which the upkeep
/// step's timer prunes; the supplied healthcheck.env's lines, such as
/// SLACK_WEBHOOK_URL, before it: without one given, the plan keeps the
/// server's lines instead, see keep-env-lines.sh). Plain KEY=value lines:
/// the scripts export them through xargs.
pub fn operator_env_files(img: &ImageConfig) -> Vec<OperatorEnvFile> {
    let header = "# Written by image-provision for the IMAGE team's operator scripts.\n";
    let supplied = img.env_files.iter().find(|(name, _)| name == "healthcheck.env").map(|(_, c)| c);
    let mut healthcheck = header.to_string();
    if let Some(content) = supplied {
        let text = String::from_utf8_lossy(content);
        // Ours last: the scripts' export takes the last of a key.
        for line in text.lines().filter(|l| !l.trim_start().starts_with("LOG_DIR=")) {
            healthcheck.push_str(line);
            healthcheck.push('\n');
        }
    }
    healthcheck.push_str(&format!("LOG_DIR={}\n", img.healthcheck_log_dir()));
    vec![
        OperatorEnvFile {
            path: img.config_path("imagelogs.env"),
            content: format!("{header}DOCKER_DIR={}\n", img.base_dir),
            secret: false,
        },
        OperatorEnvFile {
            path: img.config_path("image_daily_cron.env"),
            content: format!("{header}LOG_DIR={}\n", img.daily_log_dir()),
            secret: false,
        },
        OperatorEnvFile {
            path: img.config_path("healthcheck.env"),
            content: healthcheck,
            secret: supplied.is_some_and(|c| !c.is_empty()),
        },
    ]
}

/// COMPOSE_FILE: absolute paths, as imageup runs compose from inside the clone too.
fn compose_file(img: &ImageConfig) -> String {
    [format!("{}/docker-compose.yml", img.base_dir), img.site_path()].join(":")
}

/// compose's .env for the stack.
pub fn env_text(img: &ImageConfig, docker_gid: &str) -> String {
    render(
        ENV_TEMPLATE,
        &[
            ("COMPOSE_PROFILES", img.profile.name()),
            ("COMPOSE_FILE", &compose_file(img)),
            ("REGISTRY_TAG", &img.registry_tag),
            ("DOCKER_GID", docker_gid),
            ("PII_LOGGING_ENABLED", if img.pii_logging { "true" } else { "false" }),
        ],
    )
}

/// What the site override must know of the clone's services, as the
/// stack's facts found them in its compose files (nothing before the
/// clone): those that call the LLM (they read config/llm.env), and those
/// to leave off for want of their keys ([`keys`]).
#[derive(Clone, Debug, Default)]
pub struct SiteServices {
    pub llm: Vec<String>,
    pub keyless: Vec<KeylessService>,
}

/// The site's compose override: the map servers, object detection in the
/// test profile, with --no-llm none of the LLM's callers started, none of
/// the services whose keys are missing started, with a local LLM its
/// callers on its network, and with a domain Traefik's routes.
pub fn site_text(img: &ImageConfig, services: &SiteServices) -> String {
    let domain = img.domain.as_deref().map(|d| site_domain_text(d, img.tls_end)).unwrap_or_default();
    let mut without_llm = String::new();
    let llm_off = img.llm == Llm::Without;
    if llm_off && !services.llm.is_empty() {
        // Not started at all: they would exit at once without a key, and
        // warmup, finding one still up, would wait for its health forever.
        // (A profile cannot do it: compose merges an override's profiles.)
        without_llm.push_str("\n  # --no-llm: the services that need an LLM are not started.\n");
        for service in &services.llm {
            without_llm.push_str(&format!("  {service}:\n    deploy:\n      replicas: 0\n"));
        }
    }
    // Off for the same reason as the LLM's callers; a service already off
    // above is not named twice (compose refuses a key given twice).
    let mut keyless = String::new();
    for off in services.keyless.iter().filter(|k| !(llm_off && services.llm.contains(&k.service))) {
        keyless.push_str(&format!(
            "\n  # config/{} sets no {}: not started.\n  {}:\n    deploy:\n      replicas: 0\n",
            off.env_file,
            off.missing.join(", "),
            off.service
        ));
    }
    // With a local LLM its callers join its network, keeping the stack's
    // own (an override's networks list replaces the service's default).
    let mut local_llm = String::new();
    let on = |s: &&String| !services.keyless.iter().any(|k| k.service == **s);
    if img.llm == Llm::Local && services.llm.iter().any(|s| on(&s)) {
        local_llm.push_str("\n  # --llm local: the services that call the LLM reach vLLM on its network.\n");
        for service in services.llm.iter().filter(on) {
            local_llm.push_str(&format!("  {service}:\n    networks:\n      - default\n      - llm\n"));
        }
    }
    let mut networks = Vec::new();
    if img.domain.is_some() {
        networks.push("  traefik:\n    external: true\n");
    }
    if img.llm == Llm::Local {
        networks.push("  llm:\n    external: true\n");
    }
    let networks = if networks.is_empty() { String::new() } else { format!("\nnetworks:\n{}", networks.concat()) };
    render(
        SITE_COMPOSE_TEMPLATE,
        &[
            ("OVERPASS_URL", &img.overpass_url),
            ("NOMINATIM_FALLBACK", &img.nominatim_fallback),
            ("PROFILE_SERVICES", if img.profile == Profile::Test { SITE_TEST_PROFILE } else { "" }),
            ("NO_LLM_SERVICES", &without_llm),
            ("KEYLESS_SERVICES", &keyless),
            ("LOCAL_LLM_SERVICES", &local_llm),
            ("DOMAIN_SERVICES", &domain),
            ("NETWORKS", &networks),
        ],
    )
}

/// The site override's routes for `domain`: with TLS in Traefik, on its
/// HTTPS entrypoint with the certresolver's certificate; behind a load
/// balancer, on the plain HTTP one, and the orchestrator's /health on any
/// Host too (the balancer's health check sends the target's address as
/// Host). /monarch and /tat still win over that rule: Traefik ranks rules
/// by length, and theirs are longer.
pub fn site_domain_text(domain: &str, tls_end: TlsEnd) -> String {
    let host = format!("Host(`{domain}`)");
    let router = |name: &str, rule: &str| {
        let mut lines = vec![format!("traefik.http.routers.{name}.rule={rule}")];
        match tls_end {
            TlsEnd::Traefik => {
                lines.push(format!("traefik.http.routers.{name}.entrypoints=websecure"));
                lines.push(format!("traefik.http.routers.{name}.tls.certresolver=myresolver"));
            }
            TlsEnd::Balancer => lines.push(format!("traefik.http.routers.{name}.entrypoints=web")),
        }
        lines.iter().map(|l| format!("      - \"{l}\"\n")).collect::<String>()
    };
    let (orchestrator_rule, note) = match tls_end {
        TlsEnd::Traefik => {
            (host.clone(), "certificates come from the\n  # ACME server through Traefik's certresolver \"myresolver\".")
        }
        TlsEnd::Balancer => (
            format!("{host} || Path(`/health`)"),
            "TLS ends in the load\n  # balancer in front, which forwards plain HTTP to Traefik's port 80; its\n  \
             # health check asks /health with the target's address as Host.",
        ),
    };
    render(
        SITE_DOMAIN_TEMPLATE,
        &[
            ("DOMAIN", domain),
            ("TLS_NOTE", note),
            ("ORCHESTRATOR_ROUTER", &router("orchestrator", &orchestrator_rule)),
            ("MONARCH_ROUTER", &router("monarch", &format!("{host} && PathPrefix(`/monarch`)"))),
            ("TAT_ROUTER", &router("tat", &format!("{host} && PathPrefix(`/tat`)"))),
        ],
    )
}

/// config/imageup.env, for the IMAGE team's imageup.
pub fn imageup_env_text(img: &ImageConfig) -> String {
    render(
        IMAGEUP_ENV_TEMPLATE,
        &[
            ("COMPOSE_ENV_FILE", &img.env_path()),
            ("ENVIRONMENT", img.profile.name()),
            ("DOCKER_DIR", &img.base_dir),
            ("IMAGE_SERVER_DIR", &img.clone_dir()),
            ("GIT_REMOTE", &img.repo_url),
        ],
    )
}

/// The credential helper list clone.sh gives the clone's config and its
/// submodule's, as the facts report it (each value after a '|'): an empty
/// value (no helper from root's or the system's config), then git's store
/// with [`REPO_CREDENTIALS`].
pub fn credential_helper_fact() -> String {
    format!("||store --file={REPO_CREDENTIALS}")
}

#[derive(Clone, Debug, Default)]
pub struct LayoutFacts {
    /// cache, testing/warmup: those missing under the base directory.
    pub dirs_missing: Vec<String>,
    /// With another base directory: /var/docker/image is "absent", a
    /// "link TARGET", or "exists" (a directory or file).
    pub default_dir: Option<String>,
    /// root's git rewrites of https://github.com/ (insteadOf values).
    pub git_rewrite: Vec<String>,
    pub cloned: bool,
    pub origin: Option<String>,
    pub submodule: bool,
    /// The credential helpers of the clone's own git config and of its
    /// submodule's, as [`credential_helper_fact`] writes them; None: none.
    pub credential_helper: Option<String>,
    pub schemas_credential_helper: Option<String>,
    /// config/*.env files compose reads that are absent; the others' mode
    /// and owner ("600", "ubuntu"), by name.
    pub env_absent: Vec<String>,
    pub env_stat: BTreeMap<String, (String, String)>,
    /// config/healthcheck.env's LOG_DIR (its last), when it sets one.
    pub healthcheck_log_dir: Option<String>,
}

impl LayoutFacts {
    pub fn parse(raw: &RawFacts) -> LayoutFacts {
        LayoutFacts {
            dirs_missing: raw.words("layout.dirs_missing"),
            default_dir: raw.string("layout.default_dir"),
            git_rewrite: raw.words("layout.git_rewrite"),
            cloned: raw.yes("layout.clone"),
            origin: raw.string("layout.origin"),
            submodule: raw.yes("layout.submodule"),
            credential_helper: raw.string("layout.credential_helper"),
            schemas_credential_helper: raw.string("layout.schemas_credential_helper"),
            env_absent: raw.words("layout.env_absent"),
            healthcheck_log_dir: raw.string("layout.healthcheck_log_dir"),
            env_stat: raw
                .words("layout.env_stat")
                .iter()
                .filter_map(|w| {
                    let (name, stat) = w.split_once('=')?;
                    let (mode, owner) = stat.split_once(':')?;
                    Some((name.to_owned(), (mode.to_owned(), owner.to_owned())))
                })
                .collect(),
        }
    }

    /// The present config/*.env files that are not 0600 and `owner`'s.
    pub fn env_not_closed(&self, owner: &str) -> Vec<&str> {
        self.env_stat.iter().filter(|(_, (m, o))| m != "600" || o != owner).map(|(n, _)| n.as_str()).collect()
    }
}

/// `services`: what the site override must know of the clone's services,
/// once known (see [`site_text`]). `env_owner`: the login user, who gets the config/*.env
/// files compose reads (see env-files.sh).
pub fn plan(
    docker_gid: Option<&str>,
    env_owner: &str,
    facts: &LayoutFacts,
    files: &FileFacts,
    services: &SiteServices,
    img: &ImageConfig,
) -> Plan {
    let Some(gid) = docker_gid else {
        return Plan::Pending("the docker group does not exist yet (the docker step makes it)".into());
    };
    let base = &img.base_dir;
    let clone = img.clone_dir();
    let mut actions = Vec::new();
    let mut why = Vec::new();

    // IMAGE's compose file bind-mounts /var/docker/image/cache and warmup
    // logs under /var/docker/image/testing whatever the working directory:
    // another base directory works through a link from there, and only then.
    if base != DEFAULT_BASE_DIR {
        match facts.default_dir.as_deref() {
            Some(d) if d == format!("link {base}") => {}
            None | Some("absent") => {
                why.push(format!("link {DEFAULT_BASE_DIR} to {base} (IMAGE's compose file uses that path)"));
                actions.push(Action::Change(Cmd::new("mkdir").args(["-p", "--", DEFAULT_BASE_PARENT]).sudo()));
                actions.push(Action::Change(Cmd::new("ln").args(["-sfnT", "--", base, DEFAULT_BASE_DIR]).sudo()));
            }
            Some(other) => {
                let what =
                    other.strip_prefix("link ").map(|t| format!("a link to {t}")).unwrap_or("a directory".into());
                return Plan::Refuse {
                    message: format!(
                        "{DEFAULT_BASE_DIR} is {what}: IMAGE's compose file and warmup use that path whatever the working directory, so a stack in {base} needs it to be a link to {base}"
                    ),
                    hint: format!(
                        "move {DEFAULT_BASE_DIR} aside on the host (or use --base-dir {DEFAULT_BASE_DIR}), then run again"
                    ),
                    usage: false,
                };
            }
        }
    }
    let missing: Vec<String> = facts.dirs_missing.iter().map(|d| format!("{base}/{d}")).collect();
    if !missing.is_empty() {
        why.push(format!("create {}", missing.join(" ")));
        actions.push(Action::Change(Cmd::new("mkdir").args(["-p", "--"]).args(missing).sudo()));
    }

    // The repository's credentials: in their file before the clone asks
    // for them, uploaded over stdin (never a command line), removed on
    // purpose only. Not among the writes: the file is image-provision's own,
    // and a copy of an old token kept beside the backups would outlive it.
    let use_credentials = match &img.repo_credentials {
        RepoCredentials::Set(line) => {
            if !files.is_owned(REPO_CREDENTIALS, line, "600", "root") {
                why.push(format!("put the repository's credentials in {REPO_CREDENTIALS} (root's, 0600)"));
                actions.push(Action::Upload {
                    path: REPO_CREDENTIALS.into(),
                    content: line.clone(),
                    mode: 0o600,
                    owner: Some("root".into()),
                    secret: true,
                });
            }
            true
        }
        RepoCredentials::Keep => files.has_content(REPO_CREDENTIALS),
        RepoCredentials::Remove => false,
    };
    let ours = credential_helper_fact();
    let helper_right = |now: &Option<String>| (now.as_deref() == Some(ours.as_str())) == use_credentials;
    let helpers_right = helper_right(&facts.credential_helper) && helper_right(&facts.schemas_credential_helper);
    let rewrite = facts.git_rewrite.iter().any(|w| w == "git@github.com:");
    let remote_right = facts.origin.as_deref() == Some(img.repo_url.as_str()) && facts.submodule && rewrite;
    let clone_needed = !facts.cloned || !remote_right;
    if clone_needed || !helpers_right {
        why.push(match (facts.cloned, remote_right) {
            (false, _) => format!("clone {}", img.repo_url),
            (true, false) => "update the clone's remote and submodule".into(),
            (true, true) if use_credentials => {
                format!("make git in the clone read the credentials in {REPO_CREDENTIALS}")
            }
            (true, true) => format!("stop git in the clone reading {REPO_CREDENTIALS}"),
        });
        actions.push(Action::Change(
            Cmd::script(CLONE_SH)
                .named("clone.sh")
                .sudo()
                .env("BASE_DIR", base)
                .env("REPO_URL", &img.repo_url)
                .env("BRANCH", &img.repo_branch)
                .env("CREDENTIALS_FILE", REPO_CREDENTIALS)
                .env("USE_CREDENTIALS", if use_credentials { "yes" } else { "no" }),
        ));
    }
    if img.repo_credentials == RepoCredentials::Remove && files.exists(REPO_CREDENTIALS) {
        why.push(format!("remove the repository's credentials, {REPO_CREDENTIALS} (--repo-credentials none)"));
        actions.push(Action::Change(Cmd::new("rm").args(["-f", "--", REPO_CREDENTIALS]).sudo()));
    }

    // The links, compose's files and config/*.env: what is there and not
    // image-provision's is copied first (see template).
    let mut writes = Writes::new(files, backup_dir());
    let mut written = Vec::new();
    for (path, target) in links(img) {
        if writes.link(&path, &target) {
            written.push(format!("link {}", path.rsplit('/').next().unwrap_or_default()));
        }
    }
    if writes.file(&img.env_path(), env_text(img, gid), 0o644, None, false) {
        written.push("write .env".into());
    }
    if writes.file(&img.site_path(), site_text(img, services), 0o644, None, false) {
        written.push(format!("write {SITE_COMPOSE}"));
    }
    if writes.file(&img.config_path("imageup.env"), imageup_env_text(img), 0o600, Some(env_owner), false) {
        written.push("write config/imageup.env".into());
    }
    // healthcheck.env is merged below; hf.env is vLLM's (the llm step).
    for (name, content) in img.env_files.iter().filter(|(name, _)| name != "healthcheck.env" && name != "hf.env") {
        if writes.file(&img.config_path(name), content.clone(), 0o600, Some(env_owner), true) {
            written.push(format!("write config/{name}"));
        }
    }
    let mut keep_healthcheck = None;
    for f in operator_env_files(img) {
        let name = f.path.rsplit('/').next().unwrap_or_default().to_owned();
        if name == "healthcheck.env" && !img.env_files.iter().any(|(n, _)| *n == name) && files.has_content(&f.path) {
            // None given: the server's lines stay (its webhook), merged on
            // the host with our LOG_DIR when that or its mode is not right.
            let log_dir = img.healthcheck_log_dir();
            let right = facts.healthcheck_log_dir.as_deref() == Some(log_dir.as_str())
                && files.has_mode(&f.path, "600", env_owner);
            if !right {
                written.push(format!("keep config/{name}'s lines with LOG_DIR={log_dir}, 0600 and {env_owner}'s"));
                keep_healthcheck =
                    Some(keep_env_lines(&f.path, &f.path, &format!("LOG_DIR={log_dir}"), "all", env_owner));
            }
            continue;
        }
        // healthcheck.env may hold a Slack webhook: closed like the supplied
        // files; the others name directories, root's and readable.
        let (mode, owner) = if name == "healthcheck.env" { (0o600, Some(env_owner)) } else { (0o644, None) };
        if writes.file(&f.path, f.content, mode, owner, f.secret) {
            written.push(format!("write config/{name}"));
        }
    }
    why.extend(writes.copies());
    why.extend(written);
    actions.extend(writes.into_actions());
    actions.extend(keep_healthcheck.map(Action::Change));
    // After the uploads: they make some of the files this would otherwise
    // create empty.
    let env_gap = !facts.env_absent.is_empty() || !facts.env_not_closed(env_owner).is_empty();
    if clone_needed || env_gap {
        why.push(format!("every config/*.env present, 0600 and {env_owner}'s"));
        actions.push(Action::Change(
            Cmd::script(env_files_script())
                .named("env-files.sh")
                .sudo()
                .env("BASE_DIR", base)
                .env("ENV_OWNER", env_owner),
        ));
    }

    Plan::from_actions(why, actions, || {
        let site = img.domain.as_deref().map(|d| format!("; site {d}")).unwrap_or_default();
        let credentials =
            if use_credentials { format!("; git reads the credentials in {REPO_CREDENTIALS}") } else { String::new() };
        format!("{clone} cloned with schemas; links, .env and config/*.env in place{site}{credentials}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::sha256_hex;

    #[test]
    fn env_names_compose_files_absolutely() {
        let env = env_text(&ImageConfig::with_site(), "998");
        assert!(env.contains(
            "\nCOMPOSE_FILE=/var/docker/image/docker-compose.yml:/var/docker/image/site-docker-compose.yml\n"
        ));
        assert!(env.contains("\nDOCKER_GID=998\n") && env.contains("\nPII_LOGGING_ENABLED=false\n"));
        assert!(env.contains("\nCOMPOSE_PROFILES=production\n") && env.contains("\nREGISTRY_TAG=latest\n"));
        let bare = env_text(&ImageConfig::default(), "1");
        assert!(
            bare.contains(
                "\nCOMPOSE_FILE=/var/docker/image/docker-compose.yml:/var/docker/image/site-docker-compose.yml\n"
            ),
            "without a domain too (the map servers): {bare}"
        );
    }

    /// The site override points the map services at public servers (or the
    /// ones given), with or without a domain; Traefik's routes only with one.
    #[test]
    fn the_site_override_has_the_map_servers_and_with_a_domain_the_routes() {
        let bare = site_text(&ImageConfig::default(), &SiteServices::default());
        assert!(bare.contains("- \"SERVERS=https://overpass-api.de/api/interpreter\""), "{bare}");
        assert!(bare.contains("- \"NOMINATIM_FALLBACK_SERVER=https://nominatim.openstreetmap.org\""), "{bare}");
        assert!(!bare.contains("traefik") && !bare.contains("networks:"), "{bare}");
        assert!(!bare.contains("object-detection"), "production has it already: {bare}");
        let llm = SiteServices { llm: vec!["graphic-caption".into(), "text-followup".into()], keyless: Vec::new() };
        let without = site_text(&ImageConfig { llm: Llm::Without, ..ImageConfig::default() }, &llm);
        assert!(
            without.contains(
                "  graphic-caption:\n    deploy:\n      replicas: 0\n  text-followup:\n    deploy:\n      replicas: 0\n"
            ),
            "--no-llm: not started: {without}"
        );
        let with = site_text(&ImageConfig { llm: Llm::EnvFile, ..ImageConfig::default() }, &llm);
        assert!(!with.contains("replicas"), "{with}");
        // A service whose keys are missing is not started either, with why;
        // one already off for want of the LLM is not named twice.
        let ocr = KeylessService {
            service: "ocr-clouds-preprocessor".into(),
            env_file: "apis-and-selection.env".into(),
            missing: vec!["AZURE_API_KEY".into(), "FREEOCR_API_KEY".into()],
        };
        let caption = KeylessService { service: "graphic-caption".into(), ..ocr.clone() };
        let keyless = SiteServices { keyless: vec![caption, ocr], ..llm.clone() };
        let site = site_text(&ImageConfig { llm: Llm::Without, ..ImageConfig::default() }, &keyless);
        assert!(
            site.contains(
                "\n  # config/apis-and-selection.env sets no AZURE_API_KEY, FREEOCR_API_KEY: not started.\n  \
                 ocr-clouds-preprocessor:\n    deploy:\n      replicas: 0\n"
            ),
            "{site}"
        );
        assert_eq!(site.matches("  graphic-caption:\n").count(), 1, "{site}");
        let local = site_text(&ImageConfig { llm: Llm::Local, ..ImageConfig::default() }, &keyless);
        assert_eq!(local.matches("  graphic-caption:\n").count(), 1, "off, so not on the LLM's network: {local}");
        assert!(local.contains("  text-followup:\n    networks:\n"), "{local}");
        let test =
            site_text(&ImageConfig { profile: Profile::Test, ..ImageConfig::default() }, &SiteServices::default());
        assert!(test.contains("  object-detection:\n    profiles: [production, test, default]\n"), "{test}");
        let own =
            ImageConfig { overpass_url: "http://overpass.lan/api/interpreter".into(), ..ImageConfig::with_site() };
        let site = site_text(&own, &SiteServices::default());
        assert!(site.contains("- \"SERVERS=http://overpass.lan/api/interpreter\""), "{site}");
        assert!(site.contains("traefik.http.routers.orchestrator.rule=Host(`image.example.org`)"), "{site}");
        assert!(site.trim_end().ends_with("networks:\n  traefik:\n    external: true"), "{site}");
    }

    /// TLS in Traefik: the site's routes are byte for byte what the
    /// template wrote before the load balancer's mode (a copy of that
    /// rendering for the sample domain), so a re-run changes nothing.
    #[test]
    fn with_tls_in_traefik_the_site_routes_are_as_before() {
        let before = r#"
  # The site image.example.org: Traefik routes the host name to the orchestrator,
  # and /monarch and /tat to their services; certificates come from the
  # ACME server through Traefik's certresolver "myresolver".
  orchestrator:
    labels:
      - "traefik.enable=true"
      - "traefik.http.routers.orchestrator.rule=Host(`image.example.org`)"
      - "traefik.http.routers.orchestrator.entrypoints=websecure"
      - "traefik.http.routers.orchestrator.tls.certresolver=myresolver"
      - "traefik.docker.network=traefik"
    networks:
      - default
      - traefik

  monarch-link-app:
    labels:
      - "traefik.enable=true"
      - "traefik.http.routers.monarch.rule=Host(`image.example.org`) && PathPrefix(`/monarch`)"
      - "traefik.http.routers.monarch.entrypoints=websecure"
      - "traefik.http.routers.monarch.tls.certresolver=myresolver"
      - "traefik.http.middlewares.monarch-stripprefix.stripprefix.prefixes=/monarch"
      - "traefik.http.routers.monarch.middlewares=monarch-stripprefix@docker"
      - "traefik.docker.network=traefik"
    networks:
      - default
      - traefik

  tat:
    labels:
      - "traefik.enable=true"
      - "traefik.http.routers.tat.rule=Host(`image.example.org`) && PathPrefix(`/tat`)"
      - "traefik.http.routers.tat.entrypoints=websecure"
      - "traefik.http.routers.tat.tls.certresolver=myresolver"
      - "traefik.http.middlewares.tat-stripprefix.stripprefix.prefixes=/tat"
      - "traefik.http.routers.tat.middlewares=tat-stripprefix@docker"
      - "traefik.docker.network=traefik"
    environment:
      - SERVER_URL=https://image.example.org/
    networks:
      - default
      - traefik
"#;
        assert_eq!(site_domain_text("image.example.org", TlsEnd::Traefik), before);
        let site = site_text(&ImageConfig::with_site(), &SiteServices::default());
        assert!(site.contains(before), "{site}");
    }

    /// Behind a load balancer: every route on the plain HTTP entrypoint
    /// without a certresolver; the orchestrator's answers /health on any
    /// Host; tat still tells its clients the HTTPS URL.
    #[test]
    fn behind_a_balancer_the_site_routes_on_web_with_the_health_rule() {
        let site = site_text(&ImageConfig::behind_balancer(), &SiteServices::default());
        assert!(!site.contains("certresolver") && !site.contains("websecure"), "{site}");
        assert!(!site.contains("{{") && !site.contains("}}"), "{site}");
        assert!(
            site.contains(
                "      - \"traefik.http.routers.orchestrator.rule=Host(`image.example.org`) || Path(`/health`)\"\n      \
                 - \"traefik.http.routers.orchestrator.entrypoints=web\"\n      - \"traefik.docker.network=traefik\"\n"
            ),
            "{site}"
        );
        for (name, path) in [("monarch", "/monarch"), ("tat", "/tat")] {
            assert!(
                site.contains(&format!(
                    "      - \"traefik.http.routers.{name}.rule=Host(`image.example.org`) && PathPrefix(`{path}`)\"\n      \
                     - \"traefik.http.routers.{name}.entrypoints=web\"\n      - \"traefik.http.middlewares.{name}-stripprefix"
                )),
                "{site}"
            );
        }
        assert!(site.contains("      - SERVER_URL=https://image.example.org/\n"), "{site}");
        assert!(site.contains("TLS ends in the load\n  # balancer"), "{site}");
        assert!(site.trim_end().ends_with("networks:\n  traefik:\n    external: true"), "{site}");
    }

    #[test]
    fn imageup_env_is_plain_key_value() {
        let text = imageup_env_text(&ImageConfig::with_site());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = line.split_once('=').unwrap();
            assert!(!k.is_empty() && !v.contains(['"', '\'', ' ', '#']), "{line}");
        }
        assert!(text.contains("GIT_REMOTE=https://github.com/Shared-Reality-Lab/IMAGE-server.git\n"));
    }

    /// The operator scripts' env files: plain lines, the directories under
    /// the base directory, a supplied healthcheck.env's webhook kept and
    /// its LOG_DIR replaced (the timer prunes that directory).
    #[test]
    fn operator_env_files_name_the_directories_and_keep_the_webhook() {
        let mut img = ImageConfig::default();
        let by_name = |img: &ImageConfig, name: &str| {
            operator_env_files(img).into_iter().find(|f| f.path.ends_with(&format!("/{name}"))).unwrap()
        };
        assert!(by_name(&img, "imagelogs.env").content.ends_with("\nDOCKER_DIR=/var/docker/image\n"));
        assert!(by_name(&img, "image_daily_cron.env").content.ends_with("\nLOG_DIR=/var/docker/image/logs/daily\n"));
        let plain = by_name(&img, "healthcheck.env");
        assert!(plain.content.ends_with("\nLOG_DIR=/var/docker/image/logs/healthcheck\n") && !plain.secret);
        img.env_files = vec![(
            "healthcheck.env".into(),
            b"SLACK_WEBHOOK_URL=https://hooks.slack.test/T/B/x\nLOG_DIR=/tmp\n".to_vec(),
        )];
        let supplied = by_name(&img, "healthcheck.env");
        assert!(supplied.secret);
        assert!(
            supplied.content.contains("\nSLACK_WEBHOOK_URL=https://hooks.slack.test/T/B/x\n"),
            "{}",
            supplied.content
        );
        assert!(!supplied.content.contains("LOG_DIR=/tmp"), "{}", supplied.content);
        // Written once, by the operator files, not also as a supplied file.
        let paths = written_files(&img);
        assert_eq!(paths.iter().filter(|p| p.ends_with("/healthcheck.env")).count(), 1, "{paths:?}");
    }

    #[test]
    fn converged_layout_is_ok_and_a_changed_secret_is_uploaded_secretly() {
        let mut img = ImageConfig::with_site();
        img.env_files = vec![("llm.env".into(), b"LLM_URL=u\nLLM_API_KEY=k\nLLM_MODEL=m\n".to_vec())];
        let mut text = String::from(
            "layout.dirs_missing=\nlayout.clone=yes\nlayout.submodule=yes\n\
             layout.git_rewrite=git@github.com:\nfile./var/docker/image/bin=link /var/docker/image/IMAGE-server/scripts\n\
             file./var/docker/image/config=link IMAGE-server/config\n\
             file./var/docker/image/docker-compose.yml=link IMAGE-server/docker-compose.yml\n",
        );
        text.push_str(&format!("layout.origin={}\n", img.repo_url));
        text.push_str(&format!("file.{}={} 644\n", img.env_path(), sha256_hex(env_text(&img, "998"))));
        text.push_str(&format!(
            "file.{}={} 644\n",
            img.site_path(),
            sha256_hex(site_text(&img, &SiteServices::default()))
        ));
        text.push_str(&format!(
            "file.{}={} 600 ubuntu\n",
            img.config_path("imageup.env"),
            sha256_hex(imageup_env_text(&img))
        ));
        for f in operator_env_files(&img) {
            let stat = if f.path.ends_with("/healthcheck.env") { "600 ubuntu" } else { "644 root" };
            text.push_str(&format!("file.{}={} {stat}\n", f.path, sha256_hex(&f.content)));
        }
        text.push_str("layout.env_stat=imageup.env=600:ubuntu llm.env=600:ubuntu maps.env=600:ubuntu\n");
        text.push_str(&format!("layout.healthcheck_log_dir={}\n", img.healthcheck_log_dir()));
        let llm = img.config_path("llm.env");
        let converged = format!("{text}file.{llm}={} 600 ubuntu\n", sha256_hex(&img.env_files[0].1));
        let plan_of = |text: &str| plan_from(&img, text);
        assert!(matches!(plan_of(&converged), Plan::Ok(_)));
        let stale = format!("{text}file.{llm}=0000 600 ubuntu\n");
        match plan_of(&stale) {
            Plan::Act { actions, .. } => {
                // A copy of what is there first (no record says
                // image-provision wrote it), the upload, the record.
                assert_eq!(actions.len(), 3, "{actions:?}");
                assert!(
                    matches!(&actions[1], Action::Upload { secret: true, mode: 0o600, owner: Some(o), .. } if o == "ubuntu")
                );
                let shown = actions[1].describe(false);
                assert!(!shown.contains("LLM_API_KEY") && shown.contains("llm.env"), "{shown}");
                let copy = actions[0].describe(false);
                assert!(copy.contains("keep-copies.sh") && copy.contains(&format!("COPIES={llm}")), "{copy}");
            }
            other => panic!("{other:?}"),
        }
        // root's (as an earlier version left them): given to the login user,
        // the supplied file uploaded again, the others by env-files.sh.
        let roots = format!("{converged}layout.env_stat=imageup.env=600:ubuntu llm.env=600:ubuntu maps.env=600:root\n");
        match plan_of(&roots) {
            Plan::Act { why, actions } => {
                assert_eq!(why, "every config/*.env present, 0600 and ubuntu's");
                assert_eq!(actions.len(), 1);
                let shown = actions[0].describe(false);
                assert!(shown.contains("env-files.sh") && shown.contains("ENV_OWNER=ubuntu"), "{shown}");
            }
            other => panic!("{other:?}"),
        }
        let root_llm = format!("{text}file.{llm}={} 600 root\n", sha256_hex(&img.env_files[0].1));
        assert!(matches!(plan_of(&root_llm), Plan::Act { .. }), "a supplied file of root's is uploaded again");
        assert!(matches!(
            plan(None, "ubuntu", &LayoutFacts::default(), &FileFacts::default(), &SiteServices::default(), &img),
            Plan::Pending(_)
        ));
    }

    /// A converged layout's facts for `img`, but config/healthcheck.env's.
    /// The plan for `img` on a host with the facts `text` (the docker
    /// group 998, the login user ubuntu, no services known).
    fn plan_from(img: &ImageConfig, text: &str) -> Plan {
        let raw = RawFacts::parse(text);
        plan(Some("998"), "ubuntu", &LayoutFacts::parse(&raw), &FileFacts::parse(&raw), &SiteServices::default(), img)
    }

    fn converged_but_healthcheck(img: &ImageConfig) -> String {
        let base = &img.base_dir;
        let mut text = format!(
            "layout.dirs_missing=\nlayout.clone=yes\nlayout.submodule=yes\nlayout.git_rewrite=git@github.com:\n\
             layout.origin={}\nfile.{base}/bin=link {base}/IMAGE-server/scripts\nfile.{base}/config=link IMAGE-server/config\n\
             file.{base}/docker-compose.yml=link IMAGE-server/docker-compose.yml\n\
             layout.env_stat=imageup.env=600:ubuntu llm.env=600:ubuntu maps.env=600:ubuntu\n",
            img.repo_url
        );
        text.push_str(&format!("file.{}={} 644\n", img.env_path(), sha256_hex(env_text(img, "998"))));
        text.push_str(&format!(
            "file.{}={} 644\n",
            img.site_path(),
            sha256_hex(site_text(img, &SiteServices::default()))
        ));
        let imageup = sha256_hex(imageup_env_text(img));
        text.push_str(&format!("file.{}={imageup} 600 ubuntu\n", img.config_path("imageup.env")));
        for f in operator_env_files(img).iter().filter(|f| !f.path.ends_with("/healthcheck.env")) {
            text.push_str(&format!("file.{}={} 644 root\n", f.path, sha256_hex(&f.content)));
        }
        text
    }

    /// A run that gives no healthcheck.env keeps the server's, its Slack
    /// webhook with it: nothing uploaded; a LOG_DIR or a mode not ours is
    /// put right on the host by keep-env-lines.sh, whose command carries
    /// no content. An absent or empty one gets ours. One given replaces it,
    /// and one given empty (`healthcheck.env=`) is ours, with no webhook.
    #[test]
    fn healthcheck_env_is_kept_unless_one_is_given() {
        let mut img = ImageConfig::default();
        let path = img.config_path("healthcheck.env");
        let log_dir = img.healthcheck_log_dir();
        let webhook = "SLACK_WEBHOOK_URL=https://hooks.slack.test/T/B/secret";
        let on_host = format!("# ours\n{webhook}\nLOG_DIR={log_dir}\n");
        let facts = |sha: &str, mode: &str, log: &str| {
            format!(
                "{}file.{path}={sha} {mode} ubuntu\nlayout.healthcheck_log_dir={log}\n",
                converged_but_healthcheck(&img)
            )
        };
        let plan_of = plan_from;
        let kept = facts(&sha256_hex(&on_host), "600", &log_dir);
        assert!(matches!(plan_of(&img, &kept), Plan::Ok(_)), "{:?}", plan_of(&img, &kept));
        for (what, text) in [
            ("another LOG_DIR", facts(&sha256_hex(&on_host), "600", "/tmp/logs")),
            ("readable by all", facts(&sha256_hex(&on_host), "644", &log_dir)),
        ] {
            let Plan::Act { why, actions } = plan_of(&img, &text) else { panic!("{what}") };
            assert_eq!(why, format!("keep config/healthcheck.env's lines with LOG_DIR={log_dir}, 0600 and ubuntu's"));
            assert_eq!(actions.len(), 1, "{what}: {actions:?}");
            let shown = actions[0].describe(false);
            assert!(shown.contains("keep-env-lines.sh") && shown.contains(&format!("ENV_FILE={path}")), "{shown}");
            assert!(shown.contains(&format!("LOG_DIR={log_dir}")) && !shown.contains("SLACK"), "{shown}");
        }
        let ours = operator_env_files(&img).into_iter().find(|f| f.path == path).unwrap().content;
        assert!(!ours.contains("SLACK") && ours.ends_with(&format!("\nLOG_DIR={log_dir}\n")), "{ours}");
        let uploaded = |plan: Plan| match plan {
            Plan::Act { actions, .. } => actions
                .into_iter()
                .find_map(|a| match a {
                    Action::Upload { path: p, content, secret, .. } if p == path => Some((content, secret)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no upload of {path}")),
            other => panic!("{other:?}"),
        };
        let absent = format!("{}file.{path}=absent\n", converged_but_healthcheck(&img));
        assert_eq!(uploaded(plan_of(&img, &absent)), (ours.clone().into_bytes(), false));
        let empty = facts(crate::template::EMPTY_SHA256, "600", "");
        assert_eq!(uploaded(plan_of(&img, &empty)), (ours.clone().into_bytes(), false));
        // Given: replaced, as a secret; given empty: ours, no webhook.
        img.env_files = vec![("healthcheck.env".into(), format!("{webhook}2\n").into_bytes())];
        let (content, secret) = uploaded(plan_of(&img, &kept));
        assert!(secret && String::from_utf8(content).unwrap().contains(&format!("\n{webhook}2\n")));
        img.env_files = vec![("healthcheck.env".into(), Vec::new())];
        assert_eq!(uploaded(plan_of(&img, &kept)), (ours.into_bytes(), false));
    }

    /// A private repository's credentials: uploaded as a secret, root's and
    /// 0600, before clone.sh, which makes the clone's git (and its
    /// submodule's) use them; no command shows the token. Converged, nothing
    /// runs; a run without the flag keeps the server's (and its helper);
    /// `none` removes both.
    #[test]
    fn repo_credentials_are_a_root_file_the_clones_git_reads() {
        let token = "ghp_S3cr3t";
        let line = format!("https://x-access-token:{token}@github.com\n").into_bytes();
        let mut img = ImageConfig::default();
        let healthcheck = operator_env_files(&img).into_iter().find(|f| f.path.ends_with("/healthcheck.env")).unwrap();
        let converged = format!(
            "{}file.{}={} 600 ubuntu\nlayout.healthcheck_log_dir={}\n",
            converged_but_healthcheck(&img),
            healthcheck.path,
            sha256_hex(&healthcheck.content),
            img.healthcheck_log_dir()
        );
        let helper = credential_helper_fact();
        let with_file = format!("{converged}file.{REPO_CREDENTIALS}={} 600 root\n", sha256_hex(&line));
        let with_helpers =
            format!("{with_file}layout.credential_helper={helper}\nlayout.schemas_credential_helper={helper}\n");
        let plan_of = plan_from;
        let shown = |plan: Plan| match plan {
            Plan::Act { why, actions } => (why, actions.iter().map(|a| a.describe(false)).collect::<Vec<_>>()),
            other => panic!("{other:?}"),
        };
        assert!(matches!(plan_of(&img, &converged), Plan::Ok(_)), "no credentials anywhere: nothing to do");

        img.repo_credentials = RepoCredentials::Set(line.clone());
        let (why, cmds) = shown(plan_of(&img, &converged));
        assert_eq!(
            why,
            format!(
                "put the repository's credentials in {REPO_CREDENTIALS} (root's, 0600), \
                 make git in the clone read the credentials in {REPO_CREDENTIALS}"
            )
        );
        assert_eq!(cmds[0], format!("upload {REPO_CREDENTIALS} ({} bytes, mode 0600, owner root, secret)", line.len()));
        assert!(cmds[1].contains("clone.sh") && cmds[1].contains("USE_CREDENTIALS=yes"), "{cmds:?}");
        assert!(cmds[1].contains(&format!("CREDENTIALS_FILE={REPO_CREDENTIALS}")), "{cmds:?}");
        assert!(cmds.iter().all(|c| !c.contains(token)), "{cmds:?}");
        let Plan::Act { actions, .. } = plan_of(&img, &converged) else { panic!() };
        assert!(matches!(&actions[0], Action::Upload { content, secret: true, .. } if *content == line));
        match plan_of(&img, &with_helpers) {
            Plan::Ok(done) => {
                assert!(done.ends_with(&format!("; git reads the credentials in {REPO_CREDENTIALS}")), "{done}")
            }
            other => panic!("a re-run with the same file: {other:?}"),
        }
        let other_token = format!("{converged}file.{REPO_CREDENTIALS}={} 600 root\n", sha256_hex("old\n"));
        let (why, _) = shown(plan_of(
            &img,
            &format!("{other_token}layout.credential_helper={helper}\nlayout.schemas_credential_helper={helper}\n"),
        ));
        assert_eq!(why, format!("put the repository's credentials in {REPO_CREDENTIALS} (root's, 0600)"));

        img.repo_credentials = RepoCredentials::Keep;
        assert!(matches!(plan_of(&img, &with_helpers), Plan::Ok(_)), "kept, with its helper");
        let (why, cmds) = shown(plan_of(&img, &with_file));
        assert_eq!(why, format!("make git in the clone read the credentials in {REPO_CREDENTIALS}"));
        assert!(cmds.len() == 1 && cmds[0].contains("USE_CREDENTIALS=yes"), "{cmds:?}");

        img.repo_credentials = RepoCredentials::Remove;
        let (why, cmds) = shown(plan_of(&img, &with_helpers));
        assert_eq!(
            why,
            format!(
                "stop git in the clone reading {REPO_CREDENTIALS}, \
                 remove the repository's credentials, {REPO_CREDENTIALS} (--repo-credentials none)"
            )
        );
        assert!(cmds[0].contains("USE_CREDENTIALS=no"), "{cmds:?}");
        assert_eq!(cmds[1], format!("sudo -n rm -f -- {REPO_CREDENTIALS}"));
        let gone = format!("{converged}file.{REPO_CREDENTIALS}=absent\n");
        assert!(matches!(plan_of(&img, &gone), Plan::Ok(_)), "nothing to remove");
        let by_hand = format!("{gone}layout.credential_helper=|cache\n");
        assert!(matches!(plan_of(&img, &by_hand), Plan::Ok(_)), "a helper of the host's own is left alone");
    }

    /// Another base directory: /var/docker/image made a link to it (IMAGE's
    /// compose file and warmup use that path), kept when it is one, and
    /// never replaced when it is something else.
    #[test]
    fn another_base_dir_is_reached_through_the_default_path() {
        let img = ImageConfig { base_dir: "/srv/image".into(), ..ImageConfig::default() };
        let plan_for = |default_dir: &str| {
            let raw = RawFacts::parse(&format!("layout.default_dir={default_dir}\n"));
            plan(Some("998"), "root", &LayoutFacts::parse(&raw), &FileFacts::default(), &SiteServices::default(), &img)
        };
        match plan_for("absent") {
            Plan::Act { why, actions } => {
                assert!(why.starts_with("link /var/docker/image to /srv/image"), "{why}");
                let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
                assert!(shown.iter().any(|c| c.contains("ln -sfnT -- /srv/image /var/docker/image")), "{shown:?}");
            }
            other => panic!("{other:?}"),
        }
        match plan_for("link /srv/image") {
            Plan::Act { why, .. } => assert!(!why.contains("link /var/docker/image"), "{why}"),
            other => panic!("{other:?}"),
        }
        for (facts, what) in [("exists", "a directory"), ("link /data/old", "a link to /data/old")] {
            match plan_for(facts) {
                Plan::Refuse { message, hint, usage } => {
                    assert!(message.starts_with(&format!("/var/docker/image is {what}:")), "{message}");
                    assert!(hint.contains("--base-dir /var/docker/image") && !usage, "{hint}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Adopting a working directory made by hand (the IMAGE guide's): its
    /// own .env and a link to its own compose file are copied before they
    /// are replaced, the plan saying where; a link leading where ours would
    /// is left alone. Once the record has what was written, nothing is
    /// copied again.
    #[test]
    fn adopting_a_working_directory_copies_what_is_not_ours_first() {
        let img = ImageConfig::with_site();
        let base = &img.base_dir;
        let own = format!(
            "layout.dirs_missing=\nlayout.clone=yes\nlayout.submodule=yes\nlayout.git_rewrite=git@github.com:\n\
             layout.origin={}\nfile.{base}/.env=1111 644 root\nfile.{base}/docker-compose.yml=link /srv/compose.yml\n\
             file.{base}/config=link {base}/IMAGE-server/config\nfile.{base}/bin=link {base}/IMAGE-server/scripts\n",
            img.repo_url
        );
        let plan_of = |text: &str| plan_from(&img, text);
        let dir = backup_dir();
        let Plan::Act { why, actions } = plan_of(&own) else { panic!() };
        assert!(
            why.starts_with(&format!(
                "keep copies of what image-provision did not write: {base}/docker-compose.yml as \
                 {dir}{base}/docker-compose.yml and {base}/.env as {dir}{base}/.env, link docker-compose.yml, write .env"
            )),
            "{why}"
        );
        let cmds: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let at = |needle: &str| {
            cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {cmds:#?}"))
        };
        assert!(at("keep-copies.sh") < at("ln -sfnT") && at("ln -sfnT") < at("upload /var/docker/image/.env"));
        assert!(at("upload /var/docker/image/.env") < at("record-written.sh"), "{cmds:#?}");
        assert!(
            !cmds.iter().any(|c| c.contains("/config") && c.contains("ln ")),
            "an equivalent link is kept: {cmds:#?}"
        );
        // Written and recorded: a change of settings replaces them with no copy.
        let env = sha256_hex("an older .env of ours\n");
        let ours = format!(
            "{own}file.{base}/.env={env} 644 root\nwritten.{base}/.env={env}\n\
             file.{base}/docker-compose.yml=link old/compose.yml\nwritten.{base}/docker-compose.yml=link:old/compose.yml\n"
        );
        let Plan::Act { why, actions } = plan_of(&ours) else { panic!() };
        assert!(why.starts_with("link docker-compose.yml, write .env"), "{why}");
        assert!(!actions.iter().any(|a| a.describe(false).contains("keep-copies")));
    }
}
