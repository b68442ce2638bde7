//! Docker's containers and networks, listed once in the facts round trip
//! (one `docker ps -a`) and read by the traefik, stack and health steps and
//! by verify.

use crate::facts::{FactsScript, RawFacts};

pub const FACTS_SH: &str = include_str!("facts.sh");

/// dockerd asked through its socket, once per facts command, its JSON read
/// in bash: a library put in front of [`dockerd_early_script`] (which starts
/// the request), whose answers the docker step's facts and [`FACTS_SH`]
/// read.
pub const DOCKER_API_SH: &str = include_str!("docker-api.sh");

/// dockerd's request started by root's shell before any root function
/// (dockerd-early.sh, with [`DOCKER_API_SH`] in front): early in the facts
/// command, so that root's functions that do not need dockerd run while it
/// answers.
pub fn dockerd_early_script() -> FactsScript {
    FactsScript::new("containers/dockerd-early.sh", include_str!("dockerd-early.sh")).with_libraries(&[DOCKER_API_SH])
}

/// The containers facts script (root: Docker's socket is root's). It goes
/// before any facts script whose root functions read `containers_listed`.
pub fn facts_script() -> FactsScript {
    FactsScript::new("containers/facts.sh", FACTS_SH).root(&["containers_facts"])
}

/// One container, with the labels compose gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub project: String,
    /// compose's record of the project directory.
    pub working_dir: String,
    pub service: String,
    /// running, exited, created, ...
    pub state: String,
    pub name: String,
    /// e.g. "Up 2 minutes (healthy)".
    pub status: String,
}

impl Container {
    fn parse(line: &str) -> Option<Container> {
        let mut f = line.split('\t').map(str::to_string);
        Some(Container {
            project: f.next()?,
            working_dir: f.next()?,
            service: f.next()?,
            state: f.next()?,
            name: f.next()?,
            status: f.next().unwrap_or_default(),
        })
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// Its health check's verdict while it runs (healthy, unhealthy,
    /// starting), else its state ("running" for one without a health check).
    pub fn health(&self) -> &str {
        if !self.running() {
            return &self.state;
        }
        if self.status.contains("(healthy)") {
            "healthy"
        } else if self.status.contains("(unhealthy)") {
            "unhealthy"
        } else if self.status.contains("(health: starting)") {
            "starting"
        } else {
            &self.state
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Containers {
    /// Docker answered the listing.
    pub listed: bool,
    pub networks: Vec<String>,
    pub all: Vec<Container>,
}

impl Containers {
    pub fn parse(raw: &RawFacts) -> Containers {
        Containers {
            listed: raw.yes("containers.listed"),
            networks: raw.words("docker.networks"),
            all: raw.all("container").filter_map(Container::parse).collect(),
        }
    }

    pub fn has_network(&self, name: &str) -> bool {
        self.networks.iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_and_their_health() {
        let raw = RawFacts::parse(
            "containers.listed=yes\ndocker.networks=bridge image traefik\n\
             container=image\t/var/docker/image\torchestrator\trunning\timage-orchestrator-1\tUp 2 minutes (healthy)\n\
             container=image\t/var/docker/image\ttat\texited\timage-tat-1\tExited (1) 3 minutes ago\n\
             container=\t\t\trunning\tloose\tUp 1 second (health: starting)\n",
        );
        let c = Containers::parse(&raw);
        assert!(c.listed && c.has_network("traefik") && !c.has_network("trae"));
        let health: Vec<&str> = c.all.iter().map(Container::health).collect();
        assert_eq!(health, ["healthy", "exited", "starting"]);
        assert_eq!(c.all[2].name, "loose");
        assert!(!Containers::parse(&RawFacts::parse("")).listed);
    }
}
