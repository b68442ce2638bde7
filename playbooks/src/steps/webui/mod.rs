//! The webui step (--llm-webui HOST): Open WebUI, a chat page for the
//! site's own LLM, in its own compose project (webui-compose.yml in
//! [`WEBUI_DIR`]) behind Traefik on its own host name with its own
//! certificate. Login is always required and sign-up is off; its first
//! admin is image-provision's (admin.env, from the password the command
//! line generated and keeps in its local state). Traefik routes the host
//! name to it only once that admin has signed in on the host's loopback
//! port (webui-up.sh): Open WebUI makes the admin from the environment as
//! it starts, and without one the first sign-up would become admin.
//!
//! Its connection to the LLM is a function of the local runtime
//! ([`connection`]): the endpoint on the `llm` network and, where the
//! runtime has one, the key it was given on the host.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, Llm, WebUi};
use crate::steps::llm;
use crate::template::{FileFacts, Writes, backup_dir, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const COMPOSE_TEMPLATE: &str = include_str!("webui-compose.yml");
pub const WEBUI_UP_SH: &str = include_str!("webui-up.sh");

/// The web UI's compose project.
pub const WEBUI_DIR: &str = "/var/docker/webui";
/// Pinned: an upgrade is a decision. It makes its first admin from
/// WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD as it starts.
pub const WEBUI_IMAGE: &str = "ghcr.io/open-webui/open-webui:v0.9.5";
/// Where the host itself reaches it (loopback only): the sign-in check.
pub const LOCAL_PORT: u16 = 3000;
/// Its image's pull (a few GB) and its first start (its database made).
pub const WEBUI_UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How Open WebUI reaches the local LLM runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Open WebUI's settings for it (not secret), in its environment.
    pub settings: Vec<(&'static str, String)>,
    /// The runtime's key on the host, when it has one: (its file, the
    /// variable in it, the variable Open WebUI reads).
    pub key: Option<(String, &'static str, &'static str)>,
}

/// The connection for the chosen local runtime; None without a local LLM.
/// Both runtimes through their OpenAI-compatible API, by name on the llm
/// network (Open WebUI's own Ollama client off): vLLM with the key
/// llm-up.sh made, Ollama, which checks none, with its placeholder.
pub fn connection(img: &ImageConfig) -> Option<Connection> {
    match img.llm {
        Llm::Local => {
            let spec = llm::spec(img.local_llm.runtime);
            let mut settings = vec![
                ("ENABLE_OPENAI_API", "True".to_string()),
                ("OPENAI_API_BASE_URL", spec.url.to_string()),
                ("ENABLE_OLLAMA_API", "False".to_string()),
            ];
            if let Some(placeholder) = spec.placeholder_key {
                settings.push(("OPENAI_API_KEY", placeholder.to_string()));
            }
            let key = spec.key_path().map(|file| (file, "VLLM_API_KEY", "OPENAI_API_KEY"));
            Some(Connection { settings, key })
        }
        Llm::EnvFile | Llm::Without => None,
    }
}

pub fn compose_path() -> String {
    format!("{WEBUI_DIR}/docker-compose.yml")
}

/// The first admin's login (0600, root's): read by Open WebUI at its first
/// start and by webui-up.sh's sign-in check.
pub fn admin_env_path() -> String {
    format!("{WEBUI_DIR}/admin.env")
}

/// The compose file for `webui` connected by `connection`.
pub fn compose_text(webui: &WebUi, connection: &Connection) -> String {
    let settings: Vec<String> = connection.settings.iter().map(|(k, v)| format!("      {k}: \"{v}\"")).collect();
    render(
        COMPOSE_TEMPLATE,
        &[
            ("WEBUI_IMAGE", WEBUI_IMAGE),
            ("HOST", &webui.host),
            ("CONNECTION", &settings.join("\n")),
            ("LOCAL_PORT", &LOCAL_PORT.to_string()),
        ],
    )
}

/// admin.env's content.
pub fn admin_env(webui: &WebUi) -> String {
    format!("WEBUI_ADMIN_EMAIL={}\nWEBUI_ADMIN_PASSWORD={}\n", webui.admin_email(), webui.admin_password)
}

/// The files this step writes.
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    if img.webui.is_some() { vec![compose_path(), admin_env_path()] } else { Vec::new() }
}

/// The facts script (inputs WEBUI_DIR, WEBUI_KEY_FILE, WEBUI_KEY_VAR).
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/webui/facts.sh", FACTS_SH).root(&["webui_facts"])
}

/// The facts script's inputs for `img`: (WEBUI_KEY_FILE, WEBUI_KEY_VAR).
pub fn facts_key_inputs(img: &ImageConfig) -> (String, String) {
    match connection(img).and_then(|c| c.key) {
        Some((file, var, _)) => (file, var.to_string()),
        None => (String::new(), String::new()),
    }
}

#[derive(Clone, Debug, Default)]
pub struct WebUiFacts {
    /// secret.env (WEBUI_SECRET_KEY) exists.
    pub secret: bool,
    /// Traefik's route is on: the admin signed in.
    pub routed: bool,
    /// llm-key.env holds the runtime's key (or nothing, for one without).
    pub llm_key: bool,
}

impl WebUiFacts {
    pub fn parse(raw: &RawFacts) -> WebUiFacts {
        WebUiFacts {
            secret: raw.yes("webui.secret"),
            routed: raw.yes("webui.routed"),
            llm_key: raw.yes("webui.llm_key"),
        }
    }
}

/// Open WebUI's container runs.
pub fn running(containers: &Containers) -> bool {
    containers.all.iter().any(|c| c.project == "webui" && c.name == "webui" && c.running())
}

fn webui_up(connection: &Connection) -> Cmd {
    let (file, var, as_) = connection.key.clone().unwrap_or_default();
    Cmd::script(WEBUI_UP_SH)
        .named("webui-up.sh")
        .sudo()
        .env("WEBUI_DIR", WEBUI_DIR)
        .env("LOCAL_PORT", LOCAL_PORT.to_string())
        .env("LLM_KEY_FILE", file)
        .env("LLM_KEY_VAR", var)
        .env("LLM_KEY_AS", as_)
        .env("TIMEOUT", WEBUI_UP_TIMEOUT.as_secs().to_string())
        // Its two `compose up`s and the wait for /health, each within TIMEOUT.
        .time_limit(crate::settings::outer_limit(WEBUI_UP_TIMEOUT * 3))
}

pub fn plan(containers: &Containers, files: &FileFacts, facts: &WebUiFacts, img: &ImageConfig) -> Plan {
    let Some(webui) = &img.webui else {
        return Plan::Skip("no --llm-webui".into());
    };
    let Some(connection) = connection(img) else {
        // The command line refuses this before anything connects.
        return Plan::Refuse {
            message: "--llm-webui needs a local LLM".into(),
            hint: "add --llm local".into(),
            usage: true,
        };
    };
    if !containers.listed {
        return Plan::Pending("Docker must be running".into());
    }
    let mut why = Vec::new();
    let mut actions = Vec::new();
    // Its files take effect only through webui-up.sh.
    let mut writes = Writes::new(files, backup_dir()).applied_by_commands();
    let mut written = Vec::new();
    if writes.file(&compose_path(), compose_text(webui, &connection), 0o644, None, false) {
        written.push(format!("write {} (Open WebUI for {})", compose_path(), webui.host));
    }
    if writes.file(&admin_env_path(), admin_env(webui), 0o600, None, true) {
        written.push(format!("write {} (the first admin's login, {})", admin_env_path(), webui.admin_email()));
    }
    let changed = !written.is_empty();
    why.extend(writes.copies());
    why.extend(written);
    if changed {
        actions.push(Action::Change(Cmd::new("mkdir").args(["-p", "--", WEBUI_DIR]).sudo()));
    }
    let applied = writes.applied();
    actions.extend(writes.into_actions());
    if changed || !running(containers) || !facts.routed || !facts.secret || !facts.llm_key {
        if !facts.secret {
            why.push("generate its session key".into());
        }
        // Traefik asks for its certificate once the route is on: not while
        // its name points elsewhere (as the traefik step waits for --domain).
        if let Some(dns) = img.dns_check.as_ref().filter(|_| !facts.routed) {
            why.push(format!("wait for {} to resolve to {}", webui.host, dns.address));
            actions.push(Action::Check(crate::steps::traefik::dns_wait(&webui.host, &dns.address, dns.timeout)));
        }
        why.push(if facts.routed {
            "bring Open WebUI up with its settings, check the admin's sign-in on the host".to_string()
        } else {
            format!(
                "start Open WebUI, check the admin's sign-in on the host, then route {} through Traefik",
                webui.host
            )
        });
        actions.push(Action::Change(webui_up(&connection)));
    }
    actions.extend(applied);
    Plan::from_actions(why, actions, || {
        format!("Open WebUI ({WEBUI_IMAGE}) at https://{}/, admin {}", webui.host, webui.admin_email())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Runtime;

    fn img() -> ImageConfig {
        ImageConfig {
            llm: Llm::Local,
            webui: Some(WebUi { host: "chat.example.org".into(), admin_password: "pw-0123456789".into() }),
            ..ImageConfig::with_site()
        }
    }

    fn plan_of(img: &ImageConfig, facts: &str) -> Plan {
        let raw = RawFacts::parse(facts);
        plan(&Containers::parse(&raw), &FileFacts::parse(&raw), &WebUiFacts::parse(&raw), img)
    }

    /// The compose file: pinned, login on and sign-up off, its own router
    /// and certificate on its host name, off until the admin signed in, the
    /// runtime's endpoint, no secret in it, nothing named "image".
    #[test]
    fn the_compose_file_routes_its_host_only_once_the_admin_signed_in() {
        let img = img();
        let text = compose_text(img.webui.as_ref().unwrap(), &connection(&img).unwrap());
        for want in [
            "    image: ghcr.io/open-webui/open-webui:v0.9.5\n",
            "      WEBUI_AUTH: \"True\"\n",
            "      ENABLE_SIGNUP: \"False\"\n",
            "      ENABLE_PERSISTENT_CONFIG: \"False\"\n",
            "      OPENAI_API_BASE_URL: \"http://vllm:8000/v1\"\n",
            "      ENABLE_OLLAMA_API: \"False\"\n",
            "      - \"traefik.enable=${WEBUI_ROUTED:-false}\"\n",
            "      - \"traefik.http.routers.webui.rule=Host(`chat.example.org`)\"\n",
            "      - \"traefik.http.routers.webui.tls.certresolver=myresolver\"\n",
            "      - \"127.0.0.1:3000:8080\"\n",
            "      - \"./data:/app/backend/data\"\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(!text.contains("pw-0123456789") && !text.contains("{{"), "{text}");
        assert!(!text.lines().any(|l| l.contains("name:") && l.contains("image")), "{text}");
        assert!(!text.contains("- image\n"), "{text}");
    }

    /// Ollama, which checks no key, through its OpenAI-compatible API with
    /// its placeholder key and no key file; vLLM with its own key file.
    #[test]
    fn each_local_runtime_is_reached_through_its_openai_compatible_api() {
        let mut ollama = img();
        ollama.local_llm.runtime = Runtime::Ollama;
        let c = connection(&ollama).unwrap();
        for want in [
            ("OPENAI_API_BASE_URL", "http://ollama:11434/v1"),
            ("OPENAI_API_KEY", llm::OLLAMA_PLACEHOLDER_KEY),
            ("ENABLE_OLLAMA_API", "False"),
        ] {
            assert!(c.settings.iter().any(|(k, v)| (*k, v.as_str()) == want), "{want:?} in {:?}", c.settings);
        }
        assert_eq!(c.key, None, "Ollama has no key file");
        let (file, var) = facts_key_inputs(&ollama);
        assert!(file.is_empty() && var.is_empty(), "{file} {var}");
        let vllm = connection(&img()).unwrap();
        assert_eq!(vllm.key, Some(("/var/docker/llm/key.env".to_string(), "VLLM_API_KEY", "OPENAI_API_KEY")));
        assert!(!vllm.settings.iter().any(|(k, _)| *k == "OPENAI_API_KEY"), "vLLM's key is a secret, in llm-key.env");
    }

    /// A fresh host: its directory, both files (admin.env secret, 0600),
    /// then webui-up.sh with the runtime's key file named (not the key).
    #[test]
    fn a_fresh_host_gets_the_files_then_the_gated_start() {
        let Plan::Act { why, actions } = plan_of(&img(), "containers.listed=yes\ndocker.networks=bridge\n") else {
            panic!()
        };
        assert!(why.contains("generate its session key"), "{why}");
        assert!(why.contains("admin@chat.example.org") && !why.contains("pw-0123456789"), "{why}");
        let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        assert!(shown[0].ends_with(&format!("mkdir -p -- {WEBUI_DIR}")), "{shown:#?}");
        assert!(
            shown.iter().any(|c| c == "upload /var/docker/webui/admin.env (76 bytes, mode 0600, secret)"),
            "{shown:#?}"
        );
        let up = shown.iter().position(|c| c.contains("webui-up.sh")).expect("webui-up.sh");
        assert!(shown[up].contains("LLM_KEY_FILE=/var/docker/llm/key.env LLM_KEY_VAR=VLLM_API_KEY"), "{shown:#?}");
        assert!(shown.iter().all(|c| !c.contains("pw-0123456789")), "{shown:#?}");
    }

    /// Converged: nothing to do. Route off (the admin never signed in), the
    /// LLM's key changed, or the container down: webui-up.sh again, and no
    /// file written.
    #[test]
    fn a_converged_web_ui_is_left_alone_and_a_gap_runs_only_webui_up() {
        let img = img();
        let webui = img.webui.as_ref().unwrap();
        let sha = |t: String| crate::template::sha256_hex(t);
        let converged = format!(
            "containers.listed=yes\ndocker.networks=bridge llm traefik\n\
             container=webui\t{WEBUI_DIR}\twebui\trunning\twebui\tUp 2 hours (healthy)\n\
             webui.secret=yes\nwebui.routed=yes\nwebui.llm_key=yes\n\
             file.{}={} 644 root\nfile.{}={} 600 root\n",
            compose_path(),
            sha(compose_text(webui, &connection(&img).unwrap())),
            admin_env_path(),
            sha(admin_env(webui)),
        );
        assert!(matches!(plan_of(&img, &converged), Plan::Ok(_)), "{:?}", plan_of(&img, &converged));
        for gap in ["webui.routed=yes\n", "webui.llm_key=yes\n", "webui\trunning"] {
            let facts = converged.replace(gap, if gap.contains("running") { "webui\texited" } else { "" });
            let cmds = plan_of(&img, &facts).commands();
            assert_eq!(cmds.len(), 1, "{gap}: {cmds:#?}");
            assert!(cmds[0].contains("webui-up.sh"), "{gap}: {cmds:#?}");
        }
        // Another password: admin.env written again (the sign-in check then
        // says whether the server's admin has it).
        let other =
            ImageConfig { webui: Some(WebUi { admin_password: "pw-other".into(), ..webui.clone() }), ..img.clone() };
        let cmds = plan_of(&other, &converged).commands();
        assert!(cmds.iter().any(|c| c.starts_with("upload /var/docker/webui/admin.env")), "{cmds:#?}");
    }

    /// With the DNS check, the route comes on only once the web UI's own
    /// name resolves to the server; a routed one needs no check.
    #[test]
    fn its_name_must_resolve_before_the_route_comes_on() {
        let mut img = img();
        img.dns_check =
            Some(crate::settings::DnsCheck { address: "198.51.100.7".into(), timeout: Duration::from_secs(90) });
        let cmds = plan_of(&img, "containers.listed=yes\n").commands();
        let at = |needle: &str| cmds.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{cmds:#?}"));
        assert!(at("DOMAIN=chat.example.org ADDRESS=198.51.100.7") < at("webui-up.sh"), "{cmds:#?}");
        let routed = plan_of(&img, "containers.listed=yes\nwebui.routed=yes\n").commands();
        assert!(!routed.iter().any(|c| c.contains("dns-wait")), "{routed:#?}");
    }

    /// Without --llm-webui: skipped; without a local LLM: refused as usage.
    #[test]
    fn it_is_skipped_without_the_flag_and_refused_without_a_local_llm() {
        let none = ImageConfig { webui: None, ..img() };
        assert!(matches!(plan_of(&none, "containers.listed=yes\n"), Plan::Skip(_)));
        let elsewhere = ImageConfig { llm: Llm::EnvFile, ..img() };
        assert!(matches!(plan_of(&elsewhere, "containers.listed=yes\n"), Plan::Refuse { usage: true, .. }));
        assert_eq!(connection(&elsewhere), None);
    }
}
