//! The facts gathering: ONE command that runs the prelude, the host's facts
//! and each step's facts script (so a converged re-run is one round trip),
//! and [`Facts`], its output parsed once into each step's typed facts.

use image_provision_remote::Cmd;

use crate::apt_get::{self, SourceFacts};
use crate::containers::{self, Containers};
use crate::facts::{self, FactsScript, RawFacts};
use crate::host_facts::{self, HostFacts};
use crate::settings::{Config, DEFAULT_BASE_DIR, DEFAULT_HTTPS_ADDR, TRAEFIK_DIR, TlsEnd};
use crate::steps::apt::AptFacts;
use crate::steps::docker::{self, DockerFacts};
use crate::steps::health::{self, HealthFacts};
use crate::steps::layout::{self, LayoutFacts};
use crate::steps::llm::{self, LlmFacts};
use crate::steps::nvidia::{self, DEBIAN_NVIDIA_COMPONENTS, NvidiaFacts};
use crate::steps::pull::{self, PullFacts};
use crate::steps::ready::{self, ReadyFacts};
use crate::steps::reboot::{self, RebootFacts};
use crate::steps::stack::{self, StackFacts};
use crate::steps::traefik::{self, TraefikFacts};
use crate::steps::upkeep::{self, UpkeepFacts};
use crate::steps::webui::{self, WebUiFacts};
use crate::template::{self, FileFacts};

/// Everything the steps and the verify report know about the host, parsed
/// once from one facts command's output.
#[derive(Clone, Debug)]
pub struct Facts {
    pub host: HostFacts,
    pub sources: SourceFacts,
    pub ready: ReadyFacts,
    pub apt: AptFacts,
    pub docker: DockerFacts,
    pub nvidia: NvidiaFacts,
    pub reboot: RebootFacts,
    pub layout: LayoutFacts,
    pub files: FileFacts,
    pub pull: PullFacts,
    pub containers: Containers,
    pub traefik: TraefikFacts,
    pub llm: LlmFacts,
    pub webui: WebUiFacts,
    pub stack: StackFacts,
    pub health: HealthFacts,
    pub upkeep: UpkeepFacts,
}

impl Facts {
    pub fn parse(text: &str) -> Facts {
        let raw = RawFacts::parse(text);
        let containers = Containers::parse(&raw);
        Facts {
            host: HostFacts::parse(&raw),
            sources: SourceFacts::parse(&raw),
            ready: ReadyFacts::parse(&raw),
            apt: AptFacts::parse(&raw),
            docker: DockerFacts::parse(&raw),
            nvidia: NvidiaFacts::parse(&raw),
            reboot: RebootFacts::parse(&raw),
            layout: LayoutFacts::parse(&raw),
            files: FileFacts::parse(&raw),
            pull: PullFacts::parse(&raw),
            traefik: TraefikFacts::parse(&raw),
            llm: LlmFacts::parse(&raw),
            webui: WebUiFacts::parse(&raw),
            stack: StackFacts::parse(&raw, &containers),
            health: HealthFacts::parse(&raw),
            upkeep: UpkeepFacts::parse(&raw),
            containers,
        }
    }
}

/// What the facts command asks about.
#[derive(Clone, Debug)]
pub struct FactsInputs {
    /// The packages whose installed version to report.
    pub packages: Vec<String>,
    /// The IMAGE working directory; None: no IMAGE facts (--no-stack).
    pub base_dir: Option<String>,
    /// The files the steps write, whose hash and mode to report.
    pub files: Vec<String>,
    /// The site's domain; None: the host's site override tells.
    pub domain: Option<String>,
    /// Where the site's TLS ends (the health check's scheme); None: the
    /// host's site override tells.
    pub tls_end: Option<TlsEnd>,
    /// Check the site's health URL through the host's Traefik (https, or
    /// http behind a load balancer).
    pub https_check: bool,
    /// Read the certificate Traefik serves (verify and update: a TLS
    /// handshake a converged bootstrap does not need).
    pub certificate: bool,
    /// Time a tiny chat with a local LLM (verify and update).
    pub llm_chat: bool,
    /// The web UI's LLM key inputs (the runtime's key file and the
    /// variable in it), empty without one.
    pub webui_key: (String, String),
}

impl FactsInputs {
    /// For the host steps of `cfg`: every step's packages, and with the
    /// IMAGE steps the files they write and the domain they serve.
    pub fn for_config(cfg: &Config) -> FactsInputs {
        let mut packages = docker::watched_packages();
        packages.extend(nvidia::watched_packages(cfg));
        let img = cfg.image.as_ref();
        let mut files: Vec<String> = Vec::new();
        let steps_files = img
            .map(|i| {
                [layout::written_files(i), traefik::written_files(i), llm::written_files(i), webui::written_files(i)]
                    .concat()
            })
            .unwrap_or_default();
        // Once each (config/llm.env is the layout's and, local, the llm step's).
        for f in [steps_files, upkeep::written_files()].concat() {
            if !files.contains(&f) {
                files.push(f);
            }
        }
        FactsInputs {
            packages,
            base_dir: img.map(|i| i.base_dir.clone()),
            files,
            domain: img.and_then(|i| i.checked_domain()).map(str::to_string),
            tls_end: img.map(|i| i.tls_end),
            https_check: img.is_some_and(|i| i.checked_domain().is_some()),
            certificate: false,
            llm_chat: false,
            webui_key: img.map(webui::facts_key_inputs).unwrap_or_default(),
        }
    }

    /// For verify and update: what is on the host, in `base_dir`.
    pub fn for_report(base_dir: &str, domain: Option<&str>, https_check: bool) -> FactsInputs {
        FactsInputs {
            base_dir: Some(base_dir.to_string()),
            domain: domain.map(str::to_string),
            tls_end: None,
            https_check,
            certificate: https_check,
            llm_chat: true,
            ..FactsInputs::for_config(&Config { image: None, ..Config::default() })
        }
    }
}

/// The facts scripts for `inputs`, in order: the IMAGE parts only with a
/// base directory; the containers before the stack (whose root function
/// reads what theirs left). Root's shell runs each part's root functions
/// once the part has run, one after another: dockerd's request first, then
/// those that do not need it (the files', the layout's) while it answers,
/// then those that read it.
fn parts(inputs: &FactsInputs) -> Vec<FactsScript> {
    let mut parts = vec![
        host_facts::facts_script(),
        containers::dockerd_early_script(),
        apt_get::facts_script(),
        ready::facts_script(),
        crate::steps::apt::facts_script(),
        template::facts_script(),
        upkeep::facts_script(),
    ];
    if inputs.base_dir.is_some() {
        parts.push(layout::facts_script());
    }
    parts.extend([docker::facts_script(), nvidia::facts_script(), reboot::facts_script()]);
    if inputs.base_dir.is_some() {
        parts.extend([
            pull::facts_script(),
            containers::facts_script(),
            traefik::facts_script(),
            llm::facts_script(),
            webui::facts_script(),
            stack::facts_script(),
            health::facts_script(),
        ]);
    }
    parts
}

/// The whole facts command: one round trip, reads only.
pub fn command(inputs: &FactsInputs) -> Cmd {
    with_inputs(Cmd::script_in_blocks(facts::compose(&parts(inputs))), inputs)
}

/// [`command`] with each source's time marked ([`facts::compose_timed`]):
/// the bench's breakdown of the facts on the host.
pub fn timed_command(inputs: &FactsInputs) -> Cmd {
    with_inputs(Cmd::script_in_blocks(facts::compose_timed(&parts(inputs))), inputs)
}

fn with_inputs(cmd: Cmd, inputs: &FactsInputs) -> Cmd {
    let cmd = cmd
        .named("facts.sh")
        .env("PACKAGES", inputs.packages.join(" "))
        .env("DEBIAN_COMPONENTS", DEBIAN_NVIDIA_COMPONENTS)
        .env("FILES", inputs.files.join(" "))
        .env("WRITTEN_RECORD", template::RECORD)
        .env("PENDING_RECORD", template::PENDING)
        .env("FILES_CACHE", template::FILES_CACHE)
        .env("UPKEEP_UNITS", upkeep::units_input());
    let Some(base) = &inputs.base_dir else { return cmd };
    cmd.env("BASE_DIR", base)
        .env("TRAEFIK_DIR", TRAEFIK_DIR)
        .env("VLLM_DIR", llm::VLLM.dir)
        .env("OLLAMA_DIR", llm::OLLAMA.dir)
        .env("OLLAMA_KEY", llm::OLLAMA_PLACEHOLDER_KEY)
        .env("DOMAIN", inputs.domain.clone().unwrap_or_default())
        .env("TLS_END", inputs.tls_end.map(TlsEnd::name).unwrap_or_default())
        .env("HTTPS_CHECK", if inputs.https_check { "yes" } else { "no" })
        .env("HTTPS_ADDR", DEFAULT_HTTPS_ADDR.to_string())
        .env("CERTIFICATE", if inputs.certificate { "yes" } else { "no" })
        .env("LLM_CHAT", if inputs.llm_chat { "yes" } else { "no" })
        .env("WEBUI_DIR", webui::WEBUI_DIR)
        .env("WEBUI_KEY_FILE", &inputs.webui_key.0)
        .env("WEBUI_KEY_VAR", &inputs.webui_key.1)
}

/// Every facts script, the IMAGE steps' included.
pub fn all_parts() -> Vec<FactsScript> {
    parts(&FactsInputs::for_report(DEFAULT_BASE_DIR, None, true))
}

/// The facts command as sent with every part (the shellcheck test checks it).
pub fn default_script() -> String {
    facts::compose(&all_parts())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ImageConfig;

    /// Every package a step installs is watched: derived from the steps'
    /// own lists, never kept by hand.
    #[test]
    fn the_watched_packages_are_the_steps_own() {
        let packages = FactsInputs::for_config(&Config::default()).packages;
        for p in docker::TOOLS.iter().chain(
            ["docker.io", "docker-ce", "nvidia-container-toolkit", "nvidia-driver", "nvidia-driver-580-server"].iter(),
        ) {
            assert!(packages.iter().any(|w| w == p), "{p} is not watched: {packages:?}");
        }
    }

    /// The HTTPS check runs with a domain, at the host's own 127.0.0.1.
    #[test]
    fn https_check_inputs() {
        let img = ImageConfig { domain: Some("image.example.org".into()), ..ImageConfig::default() };
        let shown =
            command(&FactsInputs::for_config(&Config { image: Some(img.clone()), ..Config::default() })).render(true);
        assert!(shown.contains("DOMAIN=image.example.org") && shown.contains("HTTPS_CHECK=yes"), "{shown}");
        assert!(shown.contains("HTTPS_ADDR=127.0.0.1"), "{shown}");
        let off = ImageConfig { https_check: false, ..img };
        let shown = command(&FactsInputs::for_config(&Config { image: Some(off), ..Config::default() })).render(true);
        assert!(shown.contains("HTTPS_CHECK=no") && !shown.contains("DOMAIN=image"), "{shown}");
        let shown = command(&FactsInputs::for_report("/srv/image", None, true)).render(true);
        assert!(
            shown.contains("BASE_DIR=/srv/image") && shown.contains("HTTPS_CHECK=yes HTTPS_ADDR=127.0.0.1"),
            "{shown}"
        );
        // verify reads where TLS ends from the host; bootstrap says it.
        assert!(shown.contains("TLS_END=''"), "{shown}");
        let behind = Config { image: Some(ImageConfig::behind_balancer()), ..Config::default() };
        let shown = command(&FactsInputs::for_config(&behind)).render(true);
        assert!(shown.contains("DOMAIN=image.example.org TLS_END=balancer HTTPS_CHECK=yes"), "{shown}");
    }

    /// Without the IMAGE steps, no IMAGE facts are gathered.
    #[test]
    fn no_stack_no_image_facts() {
        let shown = command(&FactsInputs::for_config(&Config { image: None, ..Config::default() })).render(true);
        assert!(!shown.contains("BASE_DIR") && !shown.contains("HTTPS_CHECK"), "{shown}");
    }
}
