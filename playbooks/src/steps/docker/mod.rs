//! The docker step: the tools the IMAGE scripts need, Docker with compose
//! v2 (Ubuntu's own packages; on Debian, Docker's repository), more layer
//! downloads at once than Docker's default, a Docker Hub mirror
//! (--registry-mirror) and login (dockerhub.env), the service enabled and
//! running, and the SSH user in the docker group (with a new connection, so
//! the group applies). Also what a pull refused by Docker Hub's rate limit
//! looks like ([`pull_limit_hint`]).

use image_provision_remote::Cmd;

use crate::apt_get::{SourceFacts, add_source, apt_install, apt_update};
use crate::facts::{FactsScript, RawFacts};
use crate::host_facts::{Family, HostFacts};
use crate::plan::{Action, Plan};
use crate::settings::{Config, DockerHubLogin};

/// restart-docker.sh: Docker restarted and answering, a failed restart
/// waited out while systemd starts it again (at most two minutes).
pub fn restart_docker() -> Cmd {
    Cmd::script(RESTART_DOCKER_SH)
        .named("restart-docker.sh")
        .sudo()
        .env("TIMEOUT", "120")
        .time_limit(crate::settings::outer_limit(std::time::Duration::from_secs(120)))
}

pub const RESTART_DOCKER_SH: &str = include_str!("restart-docker.sh");
pub const FACTS_SH: &str = include_str!("facts.sh");

pub fn facts_script() -> FactsScript {
    // docker_root_facts asks dockerd through docker-api.sh, which comes
    // earlier in the facts command (containers::dockerd_early_script).
    FactsScript::new("steps/docker/facts.sh", FACTS_SH).root(&["docker_root_facts"])
}

pub const DAEMON_JSON_SH: &str = include_str!("daemon-json.sh");
pub const DOCKERHUB_LOGIN_SH: &str = include_str!("dockerhub-login.sh");

/// Docker's daemon.json: this step's max-concurrent-downloads and
/// registry-mirrors, and the nvidia step's runtimes (nvidia-ctk merges into
/// it as this step does).
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Layers one pull downloads at once. Docker's default is 3, which leaves
/// the link and the disk idle while a few large layers trickle in: IMAGE's
/// stack pulls tens of GB in some 20 images of several layers each. 10 keeps
/// gp3's baseline 125 MiB/s busy (the layers are written out as they
/// arrive) and a registry's per-connection throttling spread over more
/// connections, while staying well under what registries tolerate from one
/// client (Docker Hub and GHCR rate-limit manifests, not blob connections).
/// More buys nothing once the volume's throughput is the limit.
pub const MAX_CONCURRENT_DOWNLOADS: u32 = 10;

/// daemon-json.sh: [`MAX_CONCURRENT_DOWNLOADS`] and, when given, the
/// registry mirror merged into [`DAEMON_JSON`].
pub fn set_daemon_json(mirror: Option<&str>) -> Cmd {
    Cmd::script(DAEMON_JSON_SH)
        .named("daemon-json.sh")
        .sudo()
        .env("DOWNLOADS", MAX_CONCURRENT_DOWNLOADS.to_string())
        .env("MIRROR", mirror.unwrap_or_default())
}

/// dockerhub-login.sh as `login`: the token only on the command's stdin.
/// Its output is docker login's, which never repeats the token, so a
/// failure shows it (why the login was refused).
pub fn dockerhub_login(login: &DockerHubLogin) -> Cmd {
    Cmd::script(DOCKERHUB_LOGIN_SH)
        .named("dockerhub-login.sh")
        .sudo()
        .env("DOCKERHUB_USERNAME", &login.username)
        .secret_env("DOCKERHUB_TOKEN", &login.token)
        .time_limit(crate::settings::outer_limit(std::time::Duration::from_secs(120)))
}

/// The fingerprint the facts give root's Docker Hub login (facts.sh's
/// docker.hub_fingerprint): what `login` would record, hashed the same way.
pub fn dockerhub_fingerprint(login: &DockerHubLogin) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", login.username, login.token));
    crate::template::sha256_hex(format!("image-provision dockerhub:{auth}").as_bytes())
}

/// What Docker Hub answers a pull over its anonymous limit (HTTP 429,
/// error code TOOMANYREQUESTS); Docker passes it on in its error.
pub const PULL_LIMIT_ERRORS: [&str; 2] = ["toomanyrequests", "You have reached your pull rate limit"];

/// What to do when `output` says Docker Hub refused a pull for its rate
/// limit.
pub fn pull_limit_hint(output: &str) -> Option<String> {
    let lower = output.to_ascii_lowercase();
    PULL_LIMIT_ERRORS.iter().any(|e| lower.contains(&e.to_ascii_lowercase())).then(|| {
        "Docker Hub refused a pull: its limit on anonymous pulls from this server's address is reached (it \
         resets within hours). Either pass --registry-mirror URL (a Docker Hub mirror, e.g. your own \
         pull-through registry) or Docker Hub credentials with --env-file dockerhub.env=PATH \
         (DOCKERHUB_USERNAME and DOCKERHUB_TOKEN, a personal access token)"
            .to_string()
    })
}

/// What the IMAGE scripts and the other steps run on the host.
pub const TOOLS: &[&str] = &["git", "python3-pip", "jq", "curl", "ca-certificates"];

/// Docker with compose v2: Ubuntu's own docker.io + docker-compose-v2;
/// Debian 12 has no compose v2 package, so Docker's repository there.
pub fn docker_packages(fam: Family) -> &'static [&'static str] {
    match fam {
        Family::Ubuntu => &["docker.io", "docker-compose-v2"],
        Family::Debian => &["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"],
    }
}

/// Every package this step asks the host facts about.
pub fn watched_packages() -> Vec<String> {
    let all = [TOOLS, docker_packages(Family::Ubuntu), docker_packages(Family::Debian)];
    all.into_iter().flatten().map(|p| p.to_string()).collect()
}

#[derive(Clone, Debug, Default)]
pub struct DockerFacts {
    /// `docker --version`.
    pub version: Option<String>,
    /// `docker compose version`, when the v2 plugin answers.
    pub compose: Option<String>,
    pub enabled: bool,
    pub active: bool,
    /// The SSH user reaches the daemon in this session, without sudo.
    pub user_access: bool,
    /// Members of the docker group in /etc/group.
    pub group_members: Vec<String>,
    /// The docker group's id, once the group exists.
    pub gid: Option<String>,
    /// The daemon's runtimes (`docker info`'s JSON), when it answers root.
    pub runtimes: Option<String>,
    /// daemon.json's max-concurrent-downloads, when set.
    pub max_concurrent_downloads: Option<String>,
    /// daemon.json's registry-mirrors.
    pub registry_mirrors: Vec<String>,
    /// Root's Docker Hub login: the user, and the fingerprint of its
    /// credential ([`dockerhub_fingerprint`]).
    pub hub_user: Option<String>,
    pub hub_fingerprint: Option<String>,
}

impl DockerFacts {
    pub fn parse(raw: &RawFacts) -> DockerFacts {
        DockerFacts {
            version: raw.string("docker.version"),
            compose: raw.string("docker.compose").filter(|v| v.contains("v2") || v.contains(" 2.")),
            enabled: raw.get("docker.enabled") == Some("enabled"),
            active: raw.get("docker.active") == Some("active"),
            user_access: raw.yes("docker.user_access"),
            group_members: raw
                .get("docker.group")
                .map(|m| m.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            gid: raw.string("docker.gid"),
            runtimes: raw.string("docker.runtimes").filter(|r| r != "null"),
            max_concurrent_downloads: raw.string("docker.max_concurrent_downloads"),
            registry_mirrors: raw.words("docker.registry_mirrors"),
            hub_user: raw.string("docker.hub_user"),
            hub_fingerprint: raw.string("docker.hub_fingerprint"),
        }
    }

    /// The running daemon lists the runtime `name`.
    pub fn has_runtime(&self, name: &str) -> bool {
        self.runtimes.as_deref().is_some_and(|r| r.contains(&format!("\"{name}\"")))
    }
}

pub fn plan(host: &HostFacts, sources: &SourceFacts, docker: &DockerFacts, cfg: &Config, fam: Family) -> Plan {
    let user = host.user.as_str();
    // A Docker that answers with compose v2 is left alone, whatever packages
    // it came from: Docker's own docker-ce on Ubuntu (a cloud image's, or
    // one a person installed) conflicts with Ubuntu's docker.io.
    let working = docker.version.is_some() && docker.compose.is_some();
    let mut actions = Vec::new();
    let mut why = Vec::new();

    let tools: Vec<&str> = TOOLS.iter().copied().filter(|p| !host.installed(p)).collect();
    if !tools.is_empty() {
        why.push(format!("install {}", tools.join(" ")));
        actions.push(Action::Change(apt_install(cfg, &tools)));
    }
    // Before Docker's packages: a Docker installed now starts with it.
    let downloads = MAX_CONCURRENT_DOWNLOADS.to_string();
    let set_downloads = docker.max_concurrent_downloads.as_deref() != Some(downloads.as_str());
    let mirror = cfg.registry_mirror.as_deref();
    let set_mirror = mirror.is_some_and(|m| docker.registry_mirrors != [m]);
    if set_downloads || set_mirror {
        let mut what = Vec::new();
        if set_downloads {
            what.push(format!("max-concurrent-downloads {downloads}"));
        }
        if let (true, Some(m)) = (set_mirror, mirror) {
            what.push(format!("registry-mirrors {m}"));
        }
        why.push(format!("set {} in {DAEMON_JSON}", what.join(" and ")));
        actions.push(Action::Change(set_daemon_json(mirror)));
    }
    let set_downloads = set_downloads || set_mirror;
    if fam == Family::Debian && !working {
        let source = cfg.docker_repo.replace("{codename}", &host.codename);
        if !sources.has("docker", &source) {
            why.push("add Docker's apt repository".into());
            actions.push(Action::Change(add_source("docker", &source, &cfg.docker_repo_key)));
            actions.push(Action::Change(apt_update(cfg)));
        }
    }
    let packages: Vec<&str> = if working {
        Vec::new()
    } else {
        docker_packages(fam).iter().copied().filter(|p| !host.installed(p)).collect()
    };
    if !packages.is_empty() {
        why.push(format!("install {}", packages.join(" ")));
        actions.push(Action::Change(apt_install(cfg, &packages)));
    }
    if !packages.is_empty() || !docker.enabled || !docker.active {
        why.push("enable and start docker".into());
        actions.push(Action::Change(Cmd::new("systemctl").args(["enable", "--now", "docker"]).sudo()));
    }
    // The daemon reads daemon.json when it starts: one already running
    // restarts (refusing to start on a key it does not take). A Docker
    // installed or started just now has read it. On a fresh GPU host that is
    // the one start before the nvidia step's restart; a running Docker
    // without nvidia's runtime yet restarts twice, once per step.
    if set_downloads && docker.active && packages.is_empty() {
        why.push("restart docker".into());
        actions.push(Action::Change(restart_docker()));
    }
    // Once Docker runs: the login goes through the daemon.
    if let Some(login) = &cfg.dockerhub
        && docker.hub_fingerprint.as_deref() != Some(dockerhub_fingerprint(login).as_str())
    {
        why.push(format!("log in to Docker Hub as {}", login.username));
        actions.push(Action::Change(dockerhub_login(login)));
    }
    if !host.is_root() {
        if !docker.group_members.iter().any(|m| m == user) {
            why.push(format!("add {user} to the docker group"));
            actions.push(Action::Change(Cmd::new("usermod").args(["-aG", "docker", user]).sudo()));
        }
        if !docker.user_access {
            // A running session keeps the groups it logged in with.
            actions.push(Action::Reconnect);
            actions.push(Action::Check(Cmd::new("docker").args(["info", "--format", "{{.ServerVersion}}"])));
        }
    }
    if actions.is_empty() {
        let compose = docker.compose.as_deref().unwrap_or("compose ?");
        let version = docker.version.as_deref().unwrap_or("docker");
        let group = if host.is_root() { String::new() } else { format!("; {user} in the docker group") };
        let mirror = mirror.map(|m| format!(", registry mirror {m}")).unwrap_or_default();
        let hub = match (&cfg.dockerhub, &docker.hub_user) {
            (Some(_), Some(u)) => format!("; logged in to Docker Hub as {u}"),
            _ => String::new(),
        };
        return Plan::Ok(format!(
            "{version}; {compose}; running, max-concurrent-downloads {downloads}{mirror}{group}{hub}; {} installed",
            TOOLS.join(" ")
        ));
    }
    let changes = actions.iter().any(|a| matches!(a, Action::Change(_)));
    Plan::Act {
        why: if changes { why.join(", ") } else { format!("re-login so {user}'s docker group applies") },
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker CE with its compose plugin (Docker's repository, as on AWS's
    /// GPU images) is a working Docker: Ubuntu's docker.io, which conflicts
    /// with it, is not installed over it.
    #[test]
    fn a_working_docker_from_other_packages_is_left_alone() {
        let raw = RawFacts::parse(
            "os.id=ubuntu\nos.version=22.04\nos.codename=jammy\nuser=ubuntu\nsudo=nopasswd\n\
             pkg.docker-ce=5:27.1\npkg.docker-compose-plugin=2.29\npkg.git=1\npkg.python3-pip=1\npkg.jq=1\n\
             pkg.curl=1\npkg.ca-certificates=1\ndocker.version=Docker version 27.1.1\n\
             docker.compose=Docker Compose version v2.29.1\ndocker.enabled=enabled\ndocker.active=active\n\
             docker.group=ubuntu\ndocker.user_access=yes\ndocker.max_concurrent_downloads=10\n",
        );
        let (host, docker) = (HostFacts::parse(&raw), DockerFacts::parse(&raw));
        let left_alone = plan(&host, &SourceFacts::default(), &docker, &Config::default(), Family::Ubuntu);
        assert!(matches!(left_alone, Plan::Ok(_)), "{left_alone:?}");
        // Without compose v2 it is not enough: the packages are installed.
        let raw = RawFacts::parse(&format!(
            "{}docker.compose=\n",
            "os.id=ubuntu\nos.version=22.04\nuser=ubuntu\nsudo=nopasswd\ndocker.version=Docker version 27.1.1\n"
        ));
        let installed = plan(
            &HostFacts::parse(&raw),
            &SourceFacts::default(),
            &DockerFacts::parse(&raw),
            &Config::default(),
            Family::Ubuntu,
        );
        let Plan::Act { why, .. } = installed else { panic!("expected actions") };
        assert!(why.contains("install docker.io docker-compose-v2"), "{why}");
    }

    /// A running Ubuntu Docker, as the facts report it, with `extra`.
    fn running_docker(extra: &str) -> (HostFacts, DockerFacts) {
        let raw = RawFacts::parse(&format!(
            "os.id=ubuntu\nos.version=22.04\nos.codename=jammy\nuser=root\nsudo=root\n\
             pkg.docker.io=24.0\npkg.docker-compose-v2=2.24\npkg.git=1\npkg.python3-pip=1\npkg.jq=1\npkg.curl=1\n\
             pkg.ca-certificates=1\ndocker.version=Docker version 24.0.7\n\
             docker.compose=Docker Compose version v2.24.6\ndocker.enabled=enabled\ndocker.active=active\n{extra}"
        ));
        (HostFacts::parse(&raw), DockerFacts::parse(&raw))
    }

    fn commands(host: &HostFacts, docker: &DockerFacts) -> Vec<String> {
        match plan(host, &SourceFacts::default(), docker, &Config::default(), Family::Ubuntu) {
            Plan::Act { actions, .. } => actions.iter().map(|a| a.describe(false)).collect(),
            other => panic!("expected actions, got {other:?}"),
        }
    }

    /// max-concurrent-downloads: merged into daemon.json when it is not
    /// ours (unset, or another value), then the running daemon restarted to
    /// read it; converged, nothing.
    #[test]
    fn a_running_docker_gets_more_concurrent_downloads_and_one_restart() {
        for extra in ["", "docker.max_concurrent_downloads=3\n"] {
            let (host, docker) = running_docker(extra);
            let cmds = commands(&host, &docker);
            assert_eq!(cmds.len(), 2, "{extra:?}: {cmds:?}");
            assert!(cmds[0].contains("DOWNLOADS=10") && cmds[0].contains("<script daemon-json.sh>"), "{cmds:?}");
            assert!(cmds[1].contains("restart-docker.sh"), "{cmds:?}");
        }
        let (host, docker) = running_docker("docker.max_concurrent_downloads=10\n");
        let ok = plan(&host, &SourceFacts::default(), &docker, &Config::default(), Family::Ubuntu);
        assert!(matches!(&ok, Plan::Ok(m) if m.contains("max-concurrent-downloads 10")), "{ok:?}");
    }

    /// On a host without Docker, daemon.json is written before the packages
    /// (after jq): the daemon's first start reads it, and no restart.
    #[test]
    fn a_new_docker_starts_with_the_setting_without_a_restart() {
        let raw = RawFacts::parse("os.id=ubuntu\nos.version=22.04\nos.codename=jammy\nuser=root\nsudo=root\n");
        let cmds = commands(&HostFacts::parse(&raw), &DockerFacts::parse(&raw));
        let at = |what: &str| cmds.iter().position(|c| c.contains(what)).unwrap_or_else(|| panic!("{what}: {cmds:?}"));
        assert!(at("install --no-install-recommends git") < at("daemon-json.sh"), "jq first: {cmds:?}");
        assert!(at("daemon-json.sh") < at("docker.io"), "{cmds:?}");
        assert!(at("docker.io") < at("enable --now docker"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("restart")), "{cmds:?}");
        // Installed but stopped: started, which reads it; no restart either.
        let (host, docker) = running_docker("docker.active=inactive\n");
        let cmds = commands(&host, &docker);
        assert!(cmds.last().unwrap().ends_with("enable --now docker"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("restart")), "{cmds:?}");
    }

    /// --registry-mirror: daemon.json's registry-mirrors set (with the
    /// downloads, in one write) and the daemon restarted to read it; as
    /// wanted, nothing; not given, whatever the host has is left alone.
    #[test]
    fn a_registry_mirror_is_written_once_and_otherwise_left_alone() {
        let mirror = "https://mirror.example.org";
        let cfg = Config { registry_mirror: Some(mirror.into()), ..Config::default() };
        let (host, docker) = running_docker("docker.max_concurrent_downloads=10\n");
        let cmds = match plan(&host, &SourceFacts::default(), &docker, &cfg, Family::Ubuntu) {
            Plan::Act { why, actions } => {
                assert!(why.contains(&format!("set registry-mirrors {mirror} in /etc/docker/daemon.json")), "{why}");
                actions.iter().map(|a| a.describe(true)).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert!(cmds[0].contains(&format!("MIRROR={mirror}")) && cmds[0].contains("daemon-json.sh"), "{cmds:?}");
        assert!(cmds[1].contains("restart-docker.sh"), "{cmds:?}");
        let (host, docker) =
            running_docker(&format!("docker.max_concurrent_downloads=10\ndocker.registry_mirrors={mirror}\n"));
        let ok = plan(&host, &SourceFacts::default(), &docker, &cfg, Family::Ubuntu);
        assert!(matches!(&ok, Plan::Ok(m) if m.contains(&format!("registry mirror {mirror}"))), "{ok:?}");
        // Someone else's mirror, no --registry-mirror: kept.
        let (host, docker) =
            running_docker("docker.max_concurrent_downloads=10\ndocker.registry_mirrors=https://theirs.example\n");
        let kept = plan(&host, &SourceFacts::default(), &docker, &Config::default(), Family::Ubuntu);
        assert!(matches!(kept, Plan::Ok(_)), "{kept:?}");
    }

    /// dockerhub.env: logged in when root's login is not this credential
    /// (none, another user, another token), never again once it is; the
    /// token is on no command line the run shows.
    #[test]
    fn docker_hub_login_when_the_credential_differs_and_the_token_never_shows() {
        let login = DockerHubLogin { username: "imagebot".into(), token: "dckr_pat_s3cr3t".into() };
        let cfg = Config { dockerhub: Some(login.clone()), ..Config::default() };
        let fingerprint = dockerhub_fingerprint(&login);
        let other = dockerhub_fingerprint(&DockerHubLogin { token: "dckr_pat_old".into(), ..login.clone() });
        for extra in ["".to_string(), format!("docker.hub_user=imagebot\ndocker.hub_fingerprint={other}\n")] {
            let (host, docker) = running_docker(&format!("docker.max_concurrent_downloads=10\n{extra}"));
            let Plan::Act { why, actions } = plan(&host, &SourceFacts::default(), &docker, &cfg, Family::Ubuntu) else {
                panic!("expected a login")
            };
            assert!(why.contains("log in to Docker Hub as imagebot"), "{why}");
            let Action::Change(cmd) = &actions[0] else { panic!("{actions:?}") };
            for shown in [cmd.redacted(false), cmd.render(false), format!("{cmd:?}"), why.clone()] {
                assert!(!shown.contains("dckr_pat_s3cr3t"), "{shown}");
            }
            let sent = String::from_utf8(cmd.stdin_to_send().unwrap()).unwrap();
            assert!(sent.contains("DOCKERHUB_TOKEN=dckr_pat_s3cr3t"), "the token goes on stdin");
            assert!(!format!("{cfg:?}").contains("dckr_pat_s3cr3t"));
        }
        let (host, docker) = running_docker(&format!(
            "docker.max_concurrent_downloads=10\ndocker.hub_user=imagebot\ndocker.hub_fingerprint={fingerprint}\n"
        ));
        let ok = plan(&host, &SourceFacts::default(), &docker, &cfg, Family::Ubuntu);
        assert!(matches!(&ok, Plan::Ok(m) if m.contains("logged in to Docker Hub as imagebot")), "{ok:?}");
    }

    /// Docker's words for Docker Hub's limit get both ways out; other pull
    /// failures get none.
    #[test]
    fn a_pull_refused_for_docker_hubs_limit_says_so() {
        let refused = "Error response from daemon: toomanyrequests: You have reached your pull rate limit. \
                       You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit";
        let hint = pull_limit_hint(refused).unwrap();
        assert!(hint.contains("--registry-mirror URL") && hint.contains("--env-file dockerhub.env=PATH"), "{hint}");
        assert!(pull_limit_hint("manifest unknown: manifest unknown").is_none());
    }

    #[test]
    fn parses_docker() {
        let d = DockerFacts::parse(&RawFacts::parse(
            "docker.group=ubuntu,bob\ndocker.runtimes={\"nvidia\":{},\"runc\":{}}\ndocker.compose=Docker Compose version v2.24.6\n",
        ));
        assert!(d.group_members.iter().any(|m| m == "bob") && !d.group_members.iter().any(|m| m == "bo"));
        assert!(d.has_runtime("nvidia") && !d.has_runtime("nvidi"));
        assert!(d.compose.is_some());
        let old = DockerFacts::parse(&RawFacts::parse(
            "docker.compose=docker-compose version 1.29.2\ndocker.runtimes=null\n",
        ));
        assert!(old.compose.is_none() && old.runtimes.is_none());
    }
}
