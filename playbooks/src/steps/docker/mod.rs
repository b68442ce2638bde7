//! The docker step: the tools the IMAGE scripts need, Docker with compose
//! v2 (Ubuntu's own packages; on Debian, Docker's repository), more layer
//! downloads at once than Docker's default, the service enabled and
//! running, and the SSH user in the docker group (with a new connection, so
//! the group applies).

use image_provision_remote::Cmd;

use crate::apt_get::{SourceFacts, add_source, apt_install, apt_update};
use crate::facts::{FactsScript, RawFacts};
use crate::host_facts::{Family, HostFacts};
use crate::plan::{Action, Plan};
use crate::settings::Config;

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
    FactsScript::new("steps/docker/facts.sh", FACTS_SH)
        .with_libraries(&[crate::containers::DOCKER_API_SH])
        .root(&["docker_root_facts"])
}

pub const DAEMON_DOWNLOADS_SH: &str = include_str!("daemon-downloads.sh");

/// Docker's daemon.json: this step's max-concurrent-downloads, and the
/// nvidia step's runtimes (nvidia-ctk merges into it as this step does).
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

/// daemon-downloads.sh: [`MAX_CONCURRENT_DOWNLOADS`] merged into [`DAEMON_JSON`].
pub fn set_concurrent_downloads() -> Cmd {
    Cmd::script(DAEMON_DOWNLOADS_SH)
        .named("daemon-downloads.sh")
        .sudo()
        .env("DOWNLOADS", MAX_CONCURRENT_DOWNLOADS.to_string())
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
    if set_downloads {
        why.push(format!("set max-concurrent-downloads {downloads} in {DAEMON_JSON}"));
        actions.push(Action::Change(set_concurrent_downloads()));
    }
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
        return Plan::Ok(format!(
            "{version}; {compose}; running, max-concurrent-downloads {downloads}{group}; {} installed",
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
            assert!(cmds[0].contains("DOWNLOADS=10") && cmds[0].contains("<script daemon-downloads.sh>"), "{cmds:?}");
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
        assert!(at("install --no-install-recommends git") < at("daemon-downloads.sh"), "jq first: {cmds:?}");
        assert!(at("daemon-downloads.sh") < at("docker.io"), "{cmds:?}");
        assert!(at("docker.io") < at("enable --now docker"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("restart")), "{cmds:?}");
        // Installed but stopped: started, which reads it; no restart either.
        let (host, docker) = running_docker("docker.active=inactive\n");
        let cmds = commands(&host, &docker);
        assert!(cmds.last().unwrap().ends_with("enable --now docker"), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("restart")), "{cmds:?}");
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
