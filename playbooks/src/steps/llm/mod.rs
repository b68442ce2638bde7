//! The llm step (--llm local): the site's own vision LLM, vLLM's
//! OpenAI-compatible server, in its own compose project beside the stack
//! (llm-compose.yml in [`LLM_DIR`]), sized to the GPU; its API key made
//! once on the host and the stack's config/llm.env written from it
//! (llm-up.sh); then a wait until it serves its model (llm-wait.sh), before
//! the stack starts: warmup and the LLM services call it at once.
//!
//! The sizing: IMAGE's own GPU services take about 8 GiB (the deployment
//! guide); vLLM gets the rest, as its `--gpu-memory-utilization` share of
//! the whole GPU, and the model chosen is the largest whose weights, a
//! 32768-token context (text-followup sends up to that) and vLLM's own
//! overhead fit in it.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, Llm};
use crate::steps::nvidia::Smi;
use crate::template::{FileFacts, Writes, backup_dir, render};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const COMPOSE_TEMPLATE: &str = include_str!("llm-compose.yml");
pub const LLM_UP_SH: &str = include_str!("llm-up.sh");
pub const LLM_WAIT_SH: &str = include_str!("llm-wait.sh");

/// The local LLM's compose project.
pub const LLM_DIR: &str = "/var/docker/llm";
/// Pinned: a vLLM upgrade is a decision. Its images are built on CUDA 12.8
/// (the 570 driver branch and later serve it).
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.10.2";
/// What IMAGE's own GPU services take (the deployment guide: about 8 GB).
pub const IMAGE_GPU_GIB: f64 = 8.0;
/// text-followup's MAX_TOKEN_LIMIT.
pub const MAX_MODEL_LEN: u32 = 32768;
/// The graphic and a focus crop (text-followup).
pub const IMAGES_PER_PROMPT: u32 = 2;
/// vLLM's own: CUDA graphs, activations, the vision encoder's profiling.
const VLLM_OVERHEAD_GIB: f64 = 2.0;

/// A vision model vLLM serves, with what it needs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Model {
    pub id: &'static str,
    /// Its weights as loaded.
    pub weights_gib: f64,
    /// The KV cache of one 32768-token sequence: 2 (K and V) x layers x
    /// KV heads x head size x 2 bytes x tokens.
    pub context_gib: f64,
}

impl Model {
    pub fn needs_gib(&self) -> f64 {
        self.weights_gib + self.context_gib + VLLM_OVERHEAD_GIB
    }
}

/// The models known to fit, largest first (Qwen's vision models, which
/// the IMAGE team runs).
pub const MODELS: [Model; 4] = [
    // 64 layers, 8 KV heads of 128: 256 KiB a token.
    Model { id: "Qwen/Qwen2.5-VL-32B-Instruct-AWQ", weights_gib: 20.0, context_gib: 8.0 },
    // 28 layers, 4 KV heads of 128: 56 KiB a token.
    Model { id: "Qwen/Qwen2.5-VL-7B-Instruct", weights_gib: 15.5, context_gib: 1.75 },
    Model { id: "Qwen/Qwen2.5-VL-7B-Instruct-AWQ", weights_gib: 6.5, context_gib: 1.75 },
    // 36 layers, 2 KV heads of 128: 36 KiB a token.
    Model { id: "Qwen/Qwen2.5-VL-3B-Instruct", weights_gib: 7.0, context_gib: 1.1 },
];

/// The model, and vLLM's share of the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizing {
    pub model: Model,
    /// --gpu-memory-utilization: the fraction of the whole GPU vLLM may take.
    pub gpu_share: f64,
    pub gpu_gib: f64,
}

impl Sizing {
    pub fn describe(&self) -> String {
        format!(
            "{} on a {:.1} GiB GPU: vLLM takes {:.2} ({:.1} GiB; the model needs {:.1}), IMAGE's services keep {IMAGE_GPU_GIB:.0} GiB",
            self.model.id,
            self.gpu_gib,
            self.gpu_share,
            self.gpu_share * self.gpu_gib,
            self.model.needs_gib()
        )
    }
}

/// The model for a GPU of `gpu_gib`: the one asked for (known and fitting),
/// else the largest that fits; an error with the numbers otherwise.
pub fn size(gpu_gib: f64, asked: Option<&str>) -> Result<Sizing, String> {
    let room = gpu_gib - IMAGE_GPU_GIB;
    // Two decimals, rounded down: vLLM refuses to start past its share.
    let gpu_share = ((room / gpu_gib) * 100.0).floor() / 100.0;
    let model = match asked {
        Some(id) => {
            let m = MODELS.iter().find(|m| m.id == id).ok_or_else(|| {
                let known: Vec<&str> = MODELS.iter().map(|m| m.id).collect();
                format!("--llm-model {id} is not one whose size is known here (known: {})", known.join(", "))
            })?;
            if m.needs_gib() > room {
                return Err(format!(
                    "{id} needs {:.1} GiB on the GPU (weights {:.1}, a {MAX_MODEL_LEN}-token context {:.1}, vLLM {VLLM_OVERHEAD_GIB:.0}); \
                     this GPU has {gpu_gib:.1} GiB, of which IMAGE's own services take {IMAGE_GPU_GIB:.0}: {room:.1} GiB left",
                    m.needs_gib(),
                    m.weights_gib,
                    m.context_gib
                ));
            }
            *m
        }
        None => *MODELS.iter().find(|m| m.needs_gib() <= room).ok_or_else(|| {
            let smallest = MODELS.iter().map(|m| m.needs_gib()).fold(f64::MAX, f64::min);
            format!(
                "no vision model fits: the smallest needs {smallest:.1} GiB on the GPU; this GPU has {gpu_gib:.1} GiB, \
                 of which IMAGE's own services take {IMAGE_GPU_GIB:.0}: {room:.1} GiB left"
            )
        })?,
    };
    Ok(Sizing { model, gpu_share, gpu_gib })
}

/// The GPU's memory from nvidia-smi's "23028 MiB".
pub fn gpu_gib(smi: &Smi) -> Option<f64> {
    let mib: f64 = smi.memory.as_deref()?.split_whitespace().next()?.parse().ok()?;
    Some(mib / 1024.0)
}

/// The hint for a model that does not fit.
pub const TOO_SMALL_HINT: &str = "use a GPU with more memory (on EC2: g6e.xlarge, an L40S with 48 GB; g5.12xlarge has \
    four 24 GB A10Gs), another model (--llm-model), or an LLM elsewhere (--env-file llm.env=PATH)";

/// The compose file for `sizing`.
pub fn compose_text(sizing: &Sizing) -> String {
    render(
        COMPOSE_TEMPLATE,
        &[
            ("SIZING", &sizing.describe()),
            ("VLLM_IMAGE", VLLM_IMAGE),
            ("MODEL", sizing.model.id),
            ("GPU_SHARE", &format!("{:.2}", sizing.gpu_share)),
            ("MAX_MODEL_LEN", &MAX_MODEL_LEN.to_string()),
            ("IMAGES", &IMAGES_PER_PROMPT.to_string()),
        ],
    )
}

pub fn compose_path() -> String {
    format!("{LLM_DIR}/docker-compose.yml")
}

/// vLLM's Hugging Face token (`--env-file hf.env=PATH`), empty without one:
/// compose needs the file either way. A run that gives none keeps the
/// server's.
pub fn hf_env_path() -> String {
    format!("{LLM_DIR}/hf.env")
}

/// The files this step writes or, through llm-up.sh, replaces (the files
/// facts report what is there).
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    let mut files = vec![compose_path(), hf_env_path()];
    if img.llm == Llm::Local {
        files.push(img.config_path("llm.env"));
    }
    files
}

/// The facts script (inputs LLM_DIR, BASE_DIR).
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/llm/facts.sh", FACTS_SH).root(&["llm_facts"])
}

#[derive(Clone, Debug, Default)]
pub struct LlmFacts {
    /// LLM_DIR/key.env exists.
    pub key: bool,
    /// config/llm.env's LLM_MODEL and LLM_URL, and whether its key is the
    /// LLM's (compared on the host).
    pub env_model: Option<String>,
    pub env_url: Option<String>,
    pub env_key: bool,
    /// What GET /v1/models lists; None when it does not answer.
    pub serves: Option<Vec<String>>,
    /// verify's tiny chat completion: its time in ms, or curl's error.
    pub chat: Option<Result<u64, String>>,
}

impl LlmFacts {
    pub fn parse(raw: &RawFacts) -> LlmFacts {
        LlmFacts {
            key: raw.yes("llm.key"),
            env_model: raw.string("llm.env_model"),
            env_url: raw.string("llm.env_url"),
            env_key: raw.yes("llm.env_key"),
            serves: raw.get("llm.serves").map(|_| raw.words("llm.serves")),
            chat: match (raw.get("llm.chat_ms").and_then(|v| v.parse().ok()), raw.string("llm.chat_error")) {
                (Some(ms), _) => Some(Ok(ms)),
                (None, Some(e)) => Some(Err(e)),
                (None, None) => None,
            },
        }
    }
}

/// vLLM's name on the llm network, as the stack's services reach it.
pub const LLM_URL: &str = "http://vllm:8000/v1";

fn llm_up(img: &ImageConfig, model: &str, env_owner: &str) -> Cmd {
    Cmd::script(LLM_UP_SH)
        .named("llm-up.sh")
        .sudo()
        .env("LLM_DIR", LLM_DIR)
        .env("LLM_ENV", img.config_path("llm.env"))
        .env("ENV_OWNER", env_owner)
        .env("MODEL", model)
        .env("TIMEOUT", img.local_llm.timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(img.local_llm.timeout))
}

fn llm_wait(model: &str, timeout: Duration) -> Cmd {
    Cmd::script(LLM_WAIT_SH)
        .named("llm-wait.sh")
        .sudo()
        .env("LLM_DIR", LLM_DIR)
        .env("MODEL", model)
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout))
}

/// vLLM's container runs.
pub fn running(containers: &Containers) -> bool {
    containers.all.iter().any(|c| c.project == "llm" && c.name == "vllm" && c.running())
}

/// `env_owner`: the login user, who gets config/llm.env like the other
/// config/*.env files (the layout step's env-files.sh).
pub fn plan(
    smi: Option<&Smi>,
    env_owner: &str,
    containers: &Containers,
    files: &FileFacts,
    facts: &LlmFacts,
    img: &ImageConfig,
) -> Plan {
    if img.llm != Llm::Local {
        return Plan::Skip("the LLM is not local (--llm local runs one here)".into());
    }
    let Some(gib) = smi.and_then(gpu_gib) else {
        return Plan::Pending("the GPU's memory (nvidia-smi, once the driver works)".into());
    };
    let sizing = match size(gib, img.local_llm.model.as_deref()) {
        Ok(s) => s,
        Err(message) => return Plan::Refuse { message, hint: TOO_SMALL_HINT.into(), usage: false },
    };
    if !containers.listed {
        return Plan::Pending("Docker must be running".into());
    }
    let model = sizing.model.id;
    let mut why = Vec::new();
    let mut actions = Vec::new();
    let compose = compose_text(&sizing);
    // Its compose file and hf.env take effect only through llm-up.sh: a run
    // cut short between the upload and it leaves them pending (template).
    let mut writes = Writes::new(files, backup_dir()).applied_by_commands();
    let mut written = Vec::new();
    let compose_changed = writes.file(&compose_path(), compose, 0o644, None, false);
    if compose_changed {
        written.push(format!("write {} ({})", compose_path(), sizing.describe()));
    }
    // hf.env as given (`hf.env=` empties it); without one, the server's
    // stays, and only an absent one is made, empty (compose needs it).
    let given = img.env_files.iter().find(|(name, _)| name == "hf.env").map(|(_, c)| c.clone());
    if given.is_some() || !files.exists(&hf_env_path()) {
        let hf_env = given.unwrap_or_default();
        let hf_empty = hf_env.is_empty();
        if writes.file(&hf_env_path(), hf_env, 0o600, None, true) {
            written.push(if hf_empty { "write an empty hf.env".into() } else { "write hf.env (HF_TOKEN)".into() });
        }
    }
    let changed = !written.is_empty();
    let env_right = facts.key
        && facts.env_key
        && facts.env_model.as_deref() == Some(model)
        && facts.env_url.as_deref() == Some(LLM_URL);
    let up = changed || !env_right || !running(containers);
    if up {
        // llm-up.sh writes config/llm.env: one with the LLM's own key is
        // image-provision's; another (an LLM elsewhere) is the host's.
        writes.replaced_by_command(&img.config_path("llm.env"), facts.env_key);
    }
    why.extend(writes.copies());
    why.extend(written);
    if changed {
        actions.push(Action::Change(Cmd::new("mkdir").args(["-p", "--", LLM_DIR]).sudo()));
    }
    let applied = writes.applied();
    actions.extend(writes.into_actions());
    if up {
        if !facts.key {
            why.push("generate its API key".into());
        }
        why.push(format!("write config/llm.env for {model}, start vLLM"));
        actions.push(Action::Change(llm_up(img, model, env_owner)));
    }
    actions.extend(applied);
    let serving = facts.serves.as_ref().is_some_and(|s| s.iter().any(|m| m == model));
    if !actions.is_empty() || !serving {
        why.push(format!(
            "wait for it to serve {model} (time limit {} s: the first start downloads the weights)",
            img.local_llm.timeout.as_secs()
        ));
        actions.push(Action::Check(llm_wait(model, img.local_llm.timeout)));
    }
    Plan::from_actions(why, actions, || format!("vLLM serves {}", sizing.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three GPUs: an A10G (g5), an L40S (g6e), a T4 (g4dn, too small).
    #[test]
    fn the_model_is_sized_to_the_gpu() {
        let a10g = size(23028.0 / 1024.0, None).unwrap();
        assert_eq!(a10g.model.id, "Qwen/Qwen2.5-VL-7B-Instruct-AWQ");
        assert_eq!(a10g.gpu_share, 0.64);
        let l40s = size(46068.0 / 1024.0, None).unwrap();
        assert_eq!(l40s.model.id, "Qwen/Qwen2.5-VL-32B-Instruct-AWQ");
        assert_eq!(l40s.gpu_share, 0.82);
        let t4 = size(15360.0 / 1024.0, None).unwrap_err();
        assert!(t4.contains("this GPU has 15.0 GiB") && t4.contains("7.0 GiB left"), "{t4}");
        // Asked for: known and fitting, too big (with the numbers), unknown.
        assert_eq!(size(22.5, Some("Qwen/Qwen2.5-VL-3B-Instruct")).unwrap().model.weights_gib, 7.0);
        let big = size(22.5, Some("Qwen/Qwen2.5-VL-7B-Instruct")).unwrap_err();
        assert!(big.contains("needs 19.2 GiB") && big.contains("14.5 GiB left"), "{big}");
        assert!(size(80.0, Some("meta/llama")).unwrap_err().contains("not one whose size is known"));
    }

    /// The compose file: the pinned image, the computed command line, the
    /// GPU reserved, the cache on the host, no name with "image", not on
    /// the image network.
    #[test]
    fn the_compose_file_carries_the_sizing() {
        let text = compose_text(&size(23028.0 / 1024.0, None).unwrap());
        for want in [
            "    image: vllm/vllm-openai:v0.10.2\n",
            "    container_name: vllm\n",
            "    restart: unless-stopped\n",
            "      - \"--gpu-memory-utilization\"\n      - \"0.64\"\n",
            "      - \"--max-model-len\"\n      - \"32768\"\n",
            "      - \"--limit-mm-per-prompt\"\n      - \"{\\\"image\\\": 2}\"\n",
            "      - \"./huggingface:/root/.cache/huggingface\"\n",
            "              capabilities: [gpu]\n",
            "      - \"127.0.0.1:8000:8000\"\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(!text.lines().any(|l| l.contains("name:") && l.contains("image")), "{text}");
        assert!(!text.contains("- image\n"), "{text}");
    }

    /// hf.env: a run that gives none keeps the server's (its token), so a
    /// running vLLM is left alone; an absent one is made empty (compose
    /// needs it); one given replaces it, `hf.env=` (given empty) empties it.
    #[test]
    fn hf_env_is_kept_unless_one_is_given() {
        let mut img = ImageConfig { llm: Llm::Local, ..ImageConfig::default() };
        let smi = Smi { name: None, driver: None, memory: Some("23028 MiB".into()), line: String::new() };
        let sizing = size(23028.0 / 1024.0, None).unwrap();
        let model = sizing.model.id;
        let converged = format!(
            "containers.listed=yes\ndocker.networks=bridge llm\n\
             container=llm\t{LLM_DIR}\tvllm\trunning\tvllm\tUp 2 hours (healthy)\n\
             llm.key=yes\nllm.env_key=yes\nllm.env_model={model}\nllm.env_url={LLM_URL}\nllm.serves={model}\n\
             file.{}={} 644 root\n",
            compose_path(),
            crate::template::sha256_hex(compose_text(&sizing))
        );
        let token = "HF_TOKEN=hf_secret\n";
        let plan_of = |img: &ImageConfig, facts: &str| {
            let raw = RawFacts::parse(facts);
            let containers = Containers::parse(&raw);
            plan(Some(&smi), "ubuntu", &containers, &FileFacts::parse(&raw), &LlmFacts::parse(&raw), img)
        };
        let hf = hf_env_path();
        // Written by image-provision (its record says so): replaced with no copy.
        let sha = crate::template::sha256_hex(token);
        let with_token = format!("{converged}file.{hf}={sha} 600 root\nwritten.{hf}={sha}\n");
        let ok = plan_of(&img, &with_token);
        assert!(matches!(ok, Plan::Ok(_)), "{ok:?}");
        let absent = plan_of(&img, &format!("{converged}file.{hf}=absent\n"));
        let Plan::Act { why, .. } = absent else { panic!("{absent:?}") };
        assert!(why.starts_with("write an empty hf.env"), "{why}");
        // Given: the same is ok, another replaces it; given empty: emptied.
        img.env_files = vec![("hf.env".into(), token.as_bytes().to_vec())];
        assert!(matches!(plan_of(&img, &with_token), Plan::Ok(_)));
        img.env_files = vec![("hf.env".into(), b"HF_TOKEN=hf_other\n".to_vec())];
        let Plan::Act { why, .. } = plan_of(&img, &with_token) else { panic!() };
        assert!(why.starts_with("write hf.env (HF_TOKEN)"), "{why}");
        img.env_files = vec![("hf.env".into(), Vec::new())];
        let Plan::Act { why, actions } = plan_of(&img, &with_token) else { panic!() };
        assert!(why.starts_with("write an empty hf.env"), "{why}");
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Upload { path, content, .. } if *path == hf && content.is_empty()))
        );
    }

    /// llm-up.sh writes config/llm.env: the host's own (an LLM elsewhere)
    /// is copied first, named in the plan; one with the LLM's own key is
    /// image-provision's and is rewritten with no copy.
    #[test]
    fn a_hosts_own_llm_env_is_copied_before_llm_up_replaces_it() {
        let img = ImageConfig { llm: Llm::Local, ..ImageConfig::default() };
        let llm_env = img.config_path("llm.env");
        let smi = Smi { name: None, driver: None, memory: Some("23028 MiB".into()), line: String::new() };
        let containers = Containers::parse(&RawFacts::parse("containers.listed=yes\ndocker.networks=bridge\n"));
        let plan_of = |facts: &str| {
            let raw = RawFacts::parse(facts);
            plan(Some(&smi), "ubuntu", &containers, &FileFacts::parse(&raw), &LlmFacts::parse(&raw), &img)
        };
        let theirs = format!("file.{llm_env}=abcd 600 ubuntu\n");
        let Plan::Act { why, actions } = plan_of(&theirs) else { panic!() };
        let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let at = |needle: &str| {
            shown.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {shown:#?}"))
        };
        assert!(at(&format!("COPIES={llm_env}")) < at("llm-up.sh"), "{shown:#?}");
        assert!(why.contains(&format!("keep a copy of {llm_env} as {}{llm_env}", backup_dir())), "{why}");
        // With the LLM's own key: ours.
        let ours = format!("{theirs}llm.key=yes\nllm.env_key=yes\nllm.env_model=other/model\n");
        let Plan::Act { why, actions } = plan_of(&ours) else { panic!() };
        assert!(
            !why.contains("keep a copy") && actions.iter().all(|a| !a.describe(false).contains("keep-copies")),
            "{why}"
        );
    }
}
