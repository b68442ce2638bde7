//! The llm step (--llm local: vLLM; --llm ollama: Ollama): the site's own
//! vision LLM, in its own compose project beside the stack (the runtime's
//! compose file in its directory, [`VLLM`] or [`OLLAMA`]), sized to the
//! GPU; its settings in the stack's config/vllm.env or config/ollama.env
//! (the guide's names; 0600, read by the compose project through its .env
//! link); the stack's config/llm.env written to point at it (llm-up.sh);
//! then a wait until it serves its model (llm-wait.sh: Ollama's pulled
//! through its API there), before the stack starts: warmup and the LLM
//! services call it at once.
//!
//! The sizing: IMAGE's own GPU services take about 8 GiB (the deployment
//! guide); the LLM gets the rest, and the model chosen is the largest whose
//! weights, a 32768-token context (text-followup sends up to that) and the
//! runtime's own overhead fit in it. vLLM is told its share of the whole GPU
//! (`--gpu-memory-utilization`); Ollama takes what the model needs as it
//! loads it, and has no share to give.

use std::time::Duration;

use image_provision_remote::Cmd;

use crate::containers::Containers;
use crate::facts::{FactsScript, RawFacts};
use crate::plan::{Action, Plan};
use crate::settings::{ImageConfig, Llm, Runtime};
use crate::steps::nvidia::Smi;
use crate::template::{FileFacts, Writes, backup_dir, keep_env_lines, render, sha256_hex};

pub const FACTS_SH: &str = include_str!("facts.sh");
pub const VLLM_COMPOSE: &str = include_str!("vllm-compose.yml");
pub const OLLAMA_COMPOSE: &str = include_str!("ollama-compose.yml");
pub const LLM_UP_SH: &str = include_str!("llm-up.sh");
pub const LLM_WAIT_SH: &str = include_str!("llm-wait.sh");

/// What IMAGE's own GPU services take (the deployment guide: about 8 GB).
pub const IMAGE_GPU_GIB: f64 = 8.0;
/// text-followup's MAX_TOKEN_LIMIT.
pub const MAX_MODEL_LEN: u32 = 32768;
/// The graphic and a focus crop (text-followup).
pub const IMAGES_PER_PROMPT: u32 = 2;
/// The key the stack is given for Ollama, which checks none: IMAGE's LLM
/// client needs one (Ollama's own documentation uses this word).
pub const OLLAMA_PLACEHOLDER_KEY: &str = "ollama";

/// A vision model a runtime serves, with what it needs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Model {
    pub id: &'static str,
    /// Its weights as loaded.
    pub weights_gib: f64,
    /// The KV cache of one 32768-token sequence: 2 (K and V) x layers x
    /// KV heads x head size x 2 bytes x tokens.
    pub context_gib: f64,
}

/// A local LLM runtime: where it lives, what it runs, the models it knows.
#[derive(Debug, PartialEq)]
pub struct RuntimeSpec {
    pub runtime: Runtime,
    /// As said to people: "vLLM", "Ollama".
    pub name: &'static str,
    /// Its compose project's directory and name.
    pub dir: &'static str,
    pub project: &'static str,
    pub container: &'static str,
    /// Pinned: an upgrade is a decision.
    pub image: &'static str,
    pub port: u16,
    /// Its name on the llm network, as the stack's services reach it.
    pub url: &'static str,
    /// Its settings, in the stack's config/ (the guide's names).
    pub settings_env: &'static str,
    compose: &'static str,
    /// Known to fit, largest first (Qwen's vision models, which the IMAGE
    /// team runs).
    pub models: &'static [Model],
    /// The runtime's own: CUDA graphs, activations, the vision encoder.
    pub overhead_gib: f64,
    /// None: a key generated on the host (vLLM's VLLM_API_KEY in key.env);
    /// else the placeholder the stack gets for a runtime that checks none.
    pub placeholder_key: Option<&'static str>,
    /// How its models are named, for --llm-model's errors.
    pub model_example: &'static str,
}

/// vLLM's OpenAI-compatible server (--llm local). Its images are built on
/// CUDA 12.8 (the 570 driver branch serves it).
pub const VLLM: RuntimeSpec = RuntimeSpec {
    runtime: Runtime::Vllm,
    name: "vLLM",
    dir: "/var/docker/llm",
    project: "llm",
    container: "vllm",
    image: "vllm/vllm-openai:v0.10.2",
    port: 8000,
    url: "http://vllm:8000/v1",
    settings_env: "vllm.env",
    compose: VLLM_COMPOSE,
    models: &[
        // 64 layers, 8 KV heads of 128: 256 KiB a token.
        Model { id: "Qwen/Qwen2.5-VL-32B-Instruct-AWQ", weights_gib: 20.0, context_gib: 8.0 },
        // 28 layers, 4 KV heads of 128: 56 KiB a token.
        Model { id: "Qwen/Qwen2.5-VL-7B-Instruct", weights_gib: 15.5, context_gib: 1.75 },
        Model { id: "Qwen/Qwen2.5-VL-7B-Instruct-AWQ", weights_gib: 6.5, context_gib: 1.75 },
        // 36 layers, 2 KV heads of 128: 36 KiB a token.
        Model { id: "Qwen/Qwen2.5-VL-3B-Instruct", weights_gib: 7.0, context_gib: 1.1 },
    ],
    overhead_gib: 2.0,
    placeholder_key: None,
    model_example: "a Hugging Face model id such as Qwen/Qwen2.5-VL-3B-Instruct",
};

/// Ollama (--llm ollama), the deployment guide's alternative. The image's
/// tag is the release without its "v" (Ollama's release workflow).
pub const OLLAMA: RuntimeSpec = RuntimeSpec {
    runtime: Runtime::Ollama,
    name: "Ollama",
    dir: "/var/docker/ollama",
    project: "ollama",
    container: "ollama",
    image: "ollama/ollama:0.32.15",
    port: 11434,
    url: "http://ollama:11434/v1",
    settings_env: "ollama.env",
    compose: OLLAMA_COMPOSE,
    // Ollama's library: Q4_K_M weights with the vision encoder, as its
    // pages give their sizes (GB); the same KV cache per token as above
    // (Ollama keeps it in f16 by default).
    models: &[
        // 80 layers, 8 KV heads of 128: 320 KiB a token.
        Model { id: "qwen2.5vl:72b", weights_gib: 45.6, context_gib: 10.0 },
        Model { id: "qwen2.5vl:32b", weights_gib: 19.6, context_gib: 8.0 },
        Model { id: "qwen2.5vl:7b", weights_gib: 5.6, context_gib: 1.75 },
        Model { id: "qwen2.5vl:3b", weights_gib: 3.0, context_gib: 1.1 },
    ],
    // Its compute graph and the vision encoder's; no CUDA graphs.
    overhead_gib: 1.5,
    placeholder_key: Some(OLLAMA_PLACEHOLDER_KEY),
    model_example: "an Ollama model name such as qwen2.5vl:3b",
};

pub fn spec(runtime: Runtime) -> &'static RuntimeSpec {
    match runtime {
        Runtime::Vllm => &VLLM,
        Runtime::Ollama => &OLLAMA,
    }
}

impl RuntimeSpec {
    pub fn needs_gib(&self, m: &Model) -> f64 {
        m.weights_gib + m.context_gib + self.overhead_gib
    }

    pub fn compose_path(&self) -> String {
        format!("{}/docker-compose.yml", self.dir)
    }

    /// The API key llm-up.sh made once on the host, for a runtime that
    /// checks one (vLLM's VLLM_API_KEY); None for one that checks none.
    pub fn key_path(&self) -> Option<String> {
        self.placeholder_key.is_none().then(|| format!("{}/key.env", self.dir))
    }

    /// The project's .env, a link to the settings in config/ (compose
    /// reads it for the compose file's variables).
    pub fn dot_env_path(&self) -> String {
        format!("{}/.env", self.dir)
    }

    /// The other runtime (the one a switch stops).
    pub fn other(&self) -> &'static RuntimeSpec {
        match self.runtime {
            Runtime::Vllm => &OLLAMA,
            Runtime::Ollama => &VLLM,
        }
    }

    /// Its compose file (the same on every GPU: the sizing is in its
    /// settings).
    pub fn compose_text(&self) -> String {
        render(self.compose, &[("IMAGE", self.image)])
    }
}

/// The model, and the runtime's room on the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizing {
    pub spec: &'static RuntimeSpec,
    pub model: Model,
    /// vLLM's --gpu-memory-utilization: the fraction of the whole GPU it
    /// may take.
    pub gpu_share: f64,
    pub gpu_gib: f64,
}

impl Sizing {
    pub fn needs_gib(&self) -> f64 {
        self.spec.needs_gib(&self.model)
    }

    pub fn describe(&self) -> String {
        match self.spec.runtime {
            Runtime::Vllm => format!(
                "{} on a {:.1} GiB GPU: vLLM takes {:.2} ({:.1} GiB; the model needs {:.1}), IMAGE's services keep {IMAGE_GPU_GIB:.0} GiB",
                self.model.id,
                self.gpu_gib,
                self.gpu_share,
                self.gpu_share * self.gpu_gib,
                self.needs_gib()
            ),
            Runtime::Ollama => format!(
                "{} on a {:.1} GiB GPU: Ollama takes about {:.1} GiB as it loads it (a {MAX_MODEL_LEN}-token context), IMAGE's services keep {IMAGE_GPU_GIB:.0} GiB",
                self.model.id,
                self.gpu_gib,
                self.needs_gib()
            ),
        }
    }

    /// config/vllm.env or config/ollama.env: the runtime's settings, read
    /// by its compose project (vLLM's command line; Ollama's environment),
    /// without HF_TOKEN (see [`settings_env_text`]).
    pub fn settings_text(&self) -> String {
        let head = format!(
            "# Generated by image-provision: {}'s settings, read by its compose project ({}, whose .env\n\
             # links here). Sized to this GPU: {}.\n",
            self.spec.name,
            self.spec.dir,
            self.describe()
        );
        match self.spec.runtime {
            Runtime::Vllm => format!(
                "{head}# HF_TOKEN, for a gated model: --env-file hf.env=PATH (kept here when a run gives none).\n\
                 MODEL={}\nGPU_MEMORY_UTILIZATION={:.2}\nMAX_MODEL_LEN={MAX_MODEL_LEN}\nIMAGES_PER_PROMPT={IMAGES_PER_PROMPT}\n",
                self.model.id, self.gpu_share
            ),
            // Ollama's own variables; MODEL is ours (the one pulled).
            // Without OLLAMA_CONTEXT_LENGTH Ollama picks one by the GPU's
            // size (256k tokens from 48 GiB: more than the room left);
            // OLLAMA_KEEP_ALIVE=-1 keeps the model loaded (its default
            // unloads it after 5 idle minutes, and IMAGE's services could
            // take the memory meanwhile).
            Runtime::Ollama => format!(
                "{head}MODEL={}\nOLLAMA_CONTEXT_LENGTH={MAX_MODEL_LEN}\nOLLAMA_KEEP_ALIVE=-1\n\
                 OLLAMA_NUM_PARALLEL=1\nOLLAMA_MAX_LOADED_MODELS=1\n",
                self.model.id
            ),
        }
    }
}

/// The settings with a given hf.env's HF_TOKEN lines (its other lines are
/// not vLLM's).
pub fn settings_env_text(sizing: &Sizing, hf_env: &[u8]) -> String {
    let mut text = sizing.settings_text();
    for line in String::from_utf8_lossy(hf_env).lines().filter(|l| l.trim_start().starts_with("HF_TOKEN=")) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What the facts hash of a settings file: its lines but comments, blank
/// ones and HF_TOKEN's, sorted by byte (facts.sh: `LC_ALL=C sort | sha256sum`).
pub fn settings_fingerprint(text: &str) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with("HF_TOKEN=")
        })
        .collect();
    lines.sort_unstable();
    let mut joined = lines.join("\n");
    joined.push('\n');
    sha256_hex(joined)
}

/// The model for a GPU of `gpu_gib` on `spec`: the one asked for (known
/// and fitting), else the largest that fits; an error with the numbers
/// otherwise.
pub fn size(spec: &'static RuntimeSpec, gpu_gib: f64, asked: Option<&str>) -> Result<Sizing, String> {
    let room = gpu_gib - IMAGE_GPU_GIB;
    // Two decimals, rounded down: vLLM refuses to start past its share.
    let gpu_share = ((room / gpu_gib) * 100.0).floor() / 100.0;
    let model = match asked {
        Some(id) => {
            let m = spec.models.iter().find(|m| m.id == id).ok_or_else(|| {
                let known: Vec<&str> = spec.models.iter().map(|m| m.id).collect();
                format!(
                    "--llm-model {id} is not one whose size is known here for {} (known: {})",
                    spec.name,
                    known.join(", ")
                )
            })?;
            if spec.needs_gib(m) > room {
                return Err(format!(
                    "{id} needs {:.1} GiB on the GPU (weights {:.1}, a {MAX_MODEL_LEN}-token context {:.1}, {} {:.1}); \
                     this GPU has {gpu_gib:.1} GiB, of which IMAGE's own services take {IMAGE_GPU_GIB:.0}: {room:.1} GiB left",
                    spec.needs_gib(m),
                    m.weights_gib,
                    m.context_gib,
                    spec.name,
                    spec.overhead_gib
                ));
            }
            *m
        }
        None => *spec.models.iter().find(|m| spec.needs_gib(m) <= room).ok_or_else(|| {
            let smallest = spec.models.iter().map(|m| spec.needs_gib(m)).fold(f64::MAX, f64::min);
            format!(
                "no vision model fits {}: the smallest needs {smallest:.1} GiB on the GPU; this GPU has {gpu_gib:.1} GiB, \
                 of which IMAGE's own services take {IMAGE_GPU_GIB:.0}: {room:.1} GiB left",
                spec.name
            )
        })?,
    };
    Ok(Sizing { spec, model, gpu_share, gpu_gib })
}

/// The GPU's memory from nvidia-smi's "23028 MiB".
pub fn gpu_gib(smi: &Smi) -> Option<f64> {
    let mib: f64 = smi.memory.as_deref()?.split_whitespace().next()?.parse().ok()?;
    Some(mib / 1024.0)
}

/// The hint for a model that does not fit.
pub const TOO_SMALL_HINT: &str = "use a GPU with more memory (on EC2: g6e.xlarge, an L40S with 48 GB; g5.12xlarge has \
    four 24 GB A10Gs), another model (--llm-model), or an LLM elsewhere (--env-file llm.env=PATH)";

/// Where an earlier image-provision kept vLLM's Hugging Face token: its
/// lines move into config/vllm.env when a run gives no hf.env, and it goes.
pub fn legacy_hf_env_path() -> String {
    format!("{}/hf.env", VLLM.dir)
}

/// The files this step writes or, through llm-up.sh, replaces (the files
/// facts report what is there).
pub fn written_files(img: &ImageConfig) -> Vec<String> {
    if img.llm != Llm::Local {
        return Vec::new();
    }
    let spec = spec(img.local_llm.runtime);
    let mut files = vec![spec.compose_path(), spec.dot_env_path(), img.config_path(spec.settings_env)];
    if spec.runtime == Runtime::Vllm {
        files.push(legacy_hf_env_path());
    }
    files.push(img.config_path("llm.env"));
    files
}

/// The facts script (inputs VLLM_DIR, OLLAMA_DIR, OLLAMA_KEY, BASE_DIR,
/// LLM_CHAT).
pub fn facts_script() -> FactsScript {
    FactsScript::new("steps/llm/facts.sh", FACTS_SH).root(&["llm_facts"])
}

/// One runtime's facts.
#[derive(Clone, Debug, Default)]
pub struct RuntimeFacts {
    /// image-provision set it up here (vLLM: its key; Ollama: its compose
    /// file).
    pub set_up: bool,
    /// config/llm.env's key is its own.
    pub env_key: bool,
    /// What GET /v1/models lists; None when it does not answer.
    pub serves: Option<Vec<String>>,
    /// [`settings_fingerprint`] of its config/RUNTIME.env, when there is one.
    pub settings: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct LlmFacts {
    /// config/llm.env's LLM_MODEL and LLM_URL.
    pub env_model: Option<String>,
    pub env_url: Option<String>,
    pub vllm: RuntimeFacts,
    pub ollama: RuntimeFacts,
    /// verify's tiny chat completion: its time in ms, or curl's error.
    pub chat: Option<Result<u64, String>>,
}

impl LlmFacts {
    pub fn parse(raw: &RawFacts) -> LlmFacts {
        let runtime = |name: &str| RuntimeFacts {
            set_up: raw.yes(&format!("llm.{name}.set_up")),
            env_key: raw.yes(&format!("llm.{name}.env_key")),
            serves: raw.get(&format!("llm.{name}.serves")).map(|_| raw.words(&format!("llm.{name}.serves"))),
            settings: raw.string(&format!("llm.{name}.settings")),
        };
        LlmFacts {
            env_model: raw.string("llm.env_model"),
            env_url: raw.string("llm.env_url"),
            vllm: runtime("vllm"),
            ollama: runtime("ollama"),
            chat: match (raw.get("llm.chat_ms").and_then(|v| v.parse().ok()), raw.string("llm.chat_error")) {
                (Some(ms), _) => Some(Ok(ms)),
                (None, Some(e)) => Some(Err(e)),
                (None, None) => None,
            },
        }
    }

    pub fn of(&self, runtime: Runtime) -> &RuntimeFacts {
        match runtime {
            Runtime::Vllm => &self.vllm,
            Runtime::Ollama => &self.ollama,
        }
    }

    /// The local runtime the stack's config/llm.env points at, when
    /// image-provision set one up here.
    pub fn local(&self) -> Option<&'static RuntimeSpec> {
        [&VLLM, &OLLAMA].into_iter().find(|s| self.env_url.as_deref() == Some(s.url) && self.of(s.runtime).set_up)
    }
}

/// The runtime's key, as llm-up.sh and llm-wait.sh take it.
fn with_key(cmd: Cmd, spec: &RuntimeSpec) -> Cmd {
    match spec.placeholder_key {
        None => cmd.env("KEY_VAR", "VLLM_API_KEY"),
        Some(key) => cmd.env("PLACEHOLDER_KEY", key),
    }
}

fn llm_up(img: &ImageConfig, spec: &RuntimeSpec, model: &str, env_owner: &str) -> Cmd {
    let cmd = Cmd::script(LLM_UP_SH)
        .named("llm-up.sh")
        .sudo()
        .env("LLM_DIR", spec.dir)
        .env("NAME", spec.name)
        .env("LLM_ENV", img.config_path("llm.env"))
        .env("LLM_URL", spec.url)
        .env("ENV_OWNER", env_owner)
        .env("MODEL", model)
        .env("OTHER_DIR", spec.other().dir)
        .env("TIMEOUT", img.local_llm.timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(img.local_llm.timeout));
    with_key(cmd, spec)
}

fn llm_wait(spec: &RuntimeSpec, model: &str, timeout: Duration) -> Cmd {
    let cmd = Cmd::script(LLM_WAIT_SH)
        .named("llm-wait.sh")
        .sudo()
        .env("LLM_DIR", spec.dir)
        .env("CONTAINER", spec.container)
        .env("PORT", spec.port.to_string())
        .env("MODEL", model)
        .env("PULL", if spec.runtime == Runtime::Ollama { "yes" } else { "no" })
        .env("TIMEOUT", timeout.as_secs().to_string())
        .time_limit(crate::settings::outer_limit(timeout));
    with_key(cmd, spec)
}

/// The runtime's container runs, in its compose project (another of the
/// same name is not ours).
pub fn running(spec: &RuntimeSpec, containers: &Containers) -> bool {
    containers.all.iter().any(|c| c.project == spec.project && c.name == spec.container && c.running())
}

/// config/vllm.env or config/ollama.env, as the plan wants it: uploaded
/// whole (with a given hf.env's token, or where there is no token to
/// keep), or, when a run gives no hf.env and the server's file (or the
/// older hf.env) holds one, merged on the host: the token stays there.
fn settings_writes(
    img: &ImageConfig,
    sizing: &Sizing,
    facts: &RuntimeFacts,
    files: &FileFacts,
    writes: &mut Writes,
    env_owner: &str,
) -> (Vec<String>, Vec<Cmd>) {
    let spec = sizing.spec;
    let path = img.config_path(spec.settings_env);
    let given = img.env_files.iter().find(|(name, _)| name == "hf.env").map(|(_, c)| c.as_slice());
    let keep_from = match given {
        Some(_) => None,
        None if spec.runtime != Runtime::Vllm => None,
        None if files.has_content(&path) => Some(path.clone()),
        None if !files.exists(&path) && files.has_content(&legacy_hf_env_path()) => Some(legacy_hf_env_path()),
        None => None,
    };
    let settings = sizing.settings_text();
    if let Some(from) = keep_from {
        let right = from == path
            && facts.settings.as_deref() == Some(settings_fingerprint(&settings).as_str())
            && files.has_mode(&path, "600", env_owner);
        if right {
            return (Vec::new(), Vec::new());
        }
        let why = format!(
            "write config/{} ({}; HF_TOKEN kept from {})",
            spec.settings_env,
            sizing.describe(),
            from.rsplit('/').next().unwrap_or_default()
        );
        return (vec![why], vec![keep_env_lines(&path, &from, &settings, "HF_TOKEN", env_owner)]);
    }
    let text = settings_env_text(sizing, given.unwrap_or_default());
    let secret = text != settings;
    if writes.file(&path, text, 0o600, Some(env_owner), secret) {
        let token = if secret { ", HF_TOKEN" } else { "" };
        return (vec![format!("write config/{} ({}{token})", spec.settings_env, sizing.describe())], Vec::new());
    }
    (Vec::new(), Vec::new())
}

/// `env_owner`: the login user, who gets config/llm.env and the runtime's
/// settings like the other config/*.env files (the layout step's
/// env-files.sh).
pub fn plan(
    smi: Option<&Smi>,
    env_owner: &str,
    containers: &Containers,
    files: &FileFacts,
    facts: &LlmFacts,
    img: &ImageConfig,
) -> Plan {
    if img.llm != Llm::Local {
        return Plan::Skip("the LLM is not local (--llm local or --llm ollama runs one here)".into());
    }
    let spec = spec(img.local_llm.runtime);
    let Some(gib) = smi.and_then(gpu_gib) else {
        return Plan::Pending("the GPU's memory (nvidia-smi, once the driver works)".into());
    };
    let sizing = match size(spec, gib, img.local_llm.model.as_deref()) {
        Ok(s) => s,
        Err(message) => return Plan::Refuse { message, hint: TOO_SMALL_HINT.into(), usage: false },
    };
    if !containers.listed {
        return Plan::Pending("Docker must be running".into());
    }
    let model = sizing.model.id;
    let own = facts.of(spec.runtime);
    let mut why = Vec::new();
    let mut actions = Vec::new();
    // Its compose file, its .env link and its settings take effect only
    // through llm-up.sh: a run cut short between the upload and it leaves
    // them pending (template).
    let mut writes = Writes::new(files, backup_dir()).applied_by_commands();
    let mut written = Vec::new();
    if writes.file(&spec.compose_path(), spec.compose_text(), 0o644, None, false) {
        written.push(format!("write {}", spec.compose_path()));
    }
    if writes.link(&spec.dot_env_path(), &img.config_path(spec.settings_env)) {
        written.push(format!("link {} to config/{}", spec.dot_env_path(), spec.settings_env));
    }
    let (settings_why, merge) = settings_writes(img, &sizing, own, files, &mut writes, env_owner);
    written.extend(settings_why);
    let changed = !written.is_empty();
    let env_right = own.set_up
        && own.env_key
        && facts.env_model.as_deref() == Some(model)
        && facts.env_url.as_deref() == Some(spec.url);
    let other_runs = running(spec.other(), containers);
    let up = changed || !env_right || !running(spec, containers) || other_runs;
    if up {
        // llm-up.sh writes config/llm.env: one with the LLM's own key is
        // image-provision's; another (an LLM elsewhere) is the host's.
        writes.replaced_by_command(&img.config_path("llm.env"), own.env_key);
    }
    why.extend(writes.copies());
    why.extend(written);
    if changed {
        actions.push(Action::Change(Cmd::new("mkdir").args(["-p", "--", spec.dir]).sudo()));
    }
    let applied = writes.applied();
    actions.extend(writes.into_actions());
    actions.extend(merge.into_iter().map(Action::Change));
    // After the merge that keeps its token: config/vllm.env holds it now
    // (an older image-provision's file, by its record).
    if spec.runtime == Runtime::Vllm && files.exists(&legacy_hf_env_path()) && files.ours(&legacy_hf_env_path()) {
        why.push(format!("remove {} (its HF_TOKEN is in config/vllm.env)", legacy_hf_env_path()));
        actions.push(Action::Change(Cmd::new("rm").args(["-f", "--", &legacy_hf_env_path()]).sudo()));
    }
    if up {
        if !own.set_up && spec.placeholder_key.is_none() {
            why.push("generate its API key".into());
        }
        if other_runs {
            why.push(format!("remove {}'s container (its GPU memory)", spec.other().name));
        }
        why.push(format!("write config/llm.env for {model}, start {}", spec.name));
        actions.push(Action::Change(llm_up(img, spec, model, env_owner)));
    }
    actions.extend(applied);
    let serving = own.serves.as_ref().is_some_and(|s| s.iter().any(|m| m == model));
    if !actions.is_empty() || !serving {
        let first = match spec.runtime {
            Runtime::Vllm => "the first start downloads the weights",
            Runtime::Ollama => "pull it first, with its progress in the log",
        };
        why.push(format!("wait for it to serve {model} (time limit {} s: {first})", img.local_llm.timeout.as_secs()));
        actions.push(Action::Check(llm_wait(spec, model, img.local_llm.timeout)));
    }
    Plan::from_actions(why, actions, || format!("{} serves {}", spec.name, sizing.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config/llm.env's LLM_MODEL and LLM_URL read in bash as `sed -n
    /// 's/^NAME=//p' | head -n 1` read them: the first of each, a last
    /// line without its line break included, none from a missing file.
    #[test]
    fn llm_env_values_read_as_sed_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llm.env");
        std::fs::write(
            &file,
            "X=1\nLLM_URL=http://a/v1\n\n # LLM_MODEL=no\nLLM_MODEL=m1\nLLM_MODEL=m2\nLLM_URL=http://b",
        )
        .unwrap();
        let script = format!(
            "{}\n{}\nfor f in \"$1\" \"$1.none\"; do llm_env_values \"$f\"; echo \"[$llm_env_model] [$llm_env_url]\"; done\n\
             printf '%s\\n' \"[$(sed -n 's/^LLM_MODEL=//p' \"$1\" | head -n 1)] [$(sed -n 's/^LLM_URL=//p' \"$1\" | head -n 1)]\"\n",
            crate::facts::PRELUDE_SH,
            facts_script().text
        );
        let out = std::process::Command::new("bash").arg("-c").arg(&script).arg("bash").arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[m1] [http://a/v1]\n[] []\n[m1] [http://a/v1]\n");
    }

    const A10G: &str = "23028 MiB";

    fn smi(memory: &str) -> Smi {
        Smi { name: None, driver: None, memory: Some(memory.into()), line: String::new() }
    }

    fn plan_of(img: &ImageConfig, facts: &str) -> Plan {
        let raw = RawFacts::parse(facts);
        let containers = Containers::parse(&raw);
        plan(Some(&smi(A10G)), "ubuntu", &containers, &FileFacts::parse(&raw), &LlmFacts::parse(&raw), img)
    }

    fn local(runtime: Runtime) -> ImageConfig {
        let mut img = ImageConfig { llm: Llm::Local, ..ImageConfig::default() };
        img.local_llm.runtime = runtime;
        img
    }

    /// Three GPUs: an A10G (g5), an L40S (g6e), a T4 (g4dn), for each
    /// runtime: vLLM's 16-bit or AWQ weights, Ollama's 4-bit ones.
    #[test]
    fn the_model_is_sized_to_the_gpu() {
        let a10g = size(&VLLM, 23028.0 / 1024.0, None).unwrap();
        assert_eq!(a10g.model.id, "Qwen/Qwen2.5-VL-7B-Instruct-AWQ");
        assert_eq!(a10g.gpu_share, 0.64);
        let l40s = size(&VLLM, 46068.0 / 1024.0, None).unwrap();
        assert_eq!(l40s.model.id, "Qwen/Qwen2.5-VL-32B-Instruct-AWQ");
        assert_eq!(l40s.gpu_share, 0.82);
        let t4 = size(&VLLM, 15360.0 / 1024.0, None).unwrap_err();
        assert!(t4.contains("no vision model fits vLLM") && t4.contains("this GPU has 15.0 GiB"), "{t4}");
        assert!(t4.contains("7.0 GiB left"), "{t4}");
        // Asked for: known and fitting, too big (with the numbers), unknown.
        assert_eq!(size(&VLLM, 22.5, Some("Qwen/Qwen2.5-VL-3B-Instruct")).unwrap().model.weights_gib, 7.0);
        let big = size(&VLLM, 22.5, Some("Qwen/Qwen2.5-VL-7B-Instruct")).unwrap_err();
        assert!(big.contains("needs 19.2 GiB") && big.contains("14.5 GiB left"), "{big}");
        assert!(size(&VLLM, 80.0, Some("meta/llama")).unwrap_err().contains("not one whose size is known"));
        // Ollama: the 4-bit 7B on an A10G, the 32B on an L40S, the 3B even
        // on a T4; its 32B on an A10G refused with the numbers.
        let ids = |gib: f64| size(&OLLAMA, gib, None).map(|s| s.model.id);
        assert_eq!(ids(23028.0 / 1024.0), Ok("qwen2.5vl:7b"));
        assert_eq!(ids(46068.0 / 1024.0), Ok("qwen2.5vl:32b"));
        assert_eq!(ids(15360.0 / 1024.0), Ok("qwen2.5vl:3b"));
        let big = size(&OLLAMA, 22.5, Some("qwen2.5vl:32b")).unwrap_err();
        assert!(big.contains("needs 29.1 GiB") && big.contains("Ollama 1.5") && big.contains("14.5 GiB left"), "{big}");
        assert!(size(&OLLAMA, 80.0, Some("Qwen/Qwen2.5-VL-3B-Instruct")).unwrap_err().contains("for Ollama"));
    }

    /// The compose files: the pinned image, the GPU reserved, the models on
    /// the host, no name with "image", not on the image network, published
    /// on 127.0.0.1 only; vLLM's command line from its settings' variables.
    #[test]
    fn the_compose_files_read_their_settings() {
        let vllm = VLLM.compose_text();
        let ollama = OLLAMA.compose_text();
        for (text, wants) in [
            (
                &vllm,
                &[
                    "name: llm\n",
                    "    image: vllm/vllm-openai:v0.10.2\n",
                    "    container_name: vllm\n",
                    "      - \"--gpu-memory-utilization\"\n      - \"${GPU_MEMORY_UTILIZATION:?",
                    "      - \"--max-model-len\"\n      - \"${MAX_MODEL_LEN:?",
                    "      - \"{\\\"image\\\": ${IMAGES_PER_PROMPT:?",
                    "      HF_TOKEN: \"${HF_TOKEN:-}\"\n",
                    "      - \"./huggingface:/root/.cache/huggingface\"\n",
                    "      - \"127.0.0.1:8000:8000\"\n",
                ][..],
            ),
            (
                &ollama,
                &[
                    "name: ollama\n",
                    "    image: ollama/ollama:0.32.15\n",
                    "    container_name: ollama\n",
                    "    env_file:\n      - ./.env\n",
                    "      - \"models:/root/.ollama\"\n",
                    "      - \"127.0.0.1:11434:11434\"\n",
                    "      test: [\"CMD\", \"ollama\", \"list\"]\n",
                ][..],
            ),
        ] {
            for want in wants.iter().chain(&["    restart: unless-stopped\n", "              capabilities: [gpu]\n"]) {
                assert!(text.contains(want), "{want} not in\n{text}");
            }
            assert!(!text.lines().any(|l| l.contains("name:") && l.contains("image")), "{text}");
            assert!(!text.contains("- image\n") && text.contains("    networks:\n      - llm\n"), "{text}");
        }
    }

    /// config/vllm.env and config/ollama.env carry the sizing: vLLM's share
    /// and context; Ollama's context (its default grows with the GPU) and
    /// the model kept loaded.
    #[test]
    fn the_settings_carry_the_sizing() {
        let vllm = size(&VLLM, 23028.0 / 1024.0, None).unwrap().settings_text();
        for want in
            ["\nMODEL=Qwen/Qwen2.5-VL-7B-Instruct-AWQ\n", "\nGPU_MEMORY_UTILIZATION=0.64\n", "\nMAX_MODEL_LEN=32768\n"]
        {
            assert!(vllm.contains(want), "{want} not in\n{vllm}");
        }
        let ollama = size(&OLLAMA, 46068.0 / 1024.0, None).unwrap().settings_text();
        for want in ["\nMODEL=qwen2.5vl:32b\n", "\nOLLAMA_CONTEXT_LENGTH=32768\n", "\nOLLAMA_KEEP_ALIVE=-1\n"] {
            assert!(ollama.contains(want), "{want} not in\n{ollama}");
        }
        assert!(!ollama.contains("HF_TOKEN=") && !ollama.contains("GPU_MEMORY"), "{ollama}");
        // The facts' fingerprint leaves out comments and the token.
        let with_token = format!("{vllm}HF_TOKEN=hf_secret\n# more\n");
        assert_eq!(settings_fingerprint(&with_token), settings_fingerprint(&vllm));
        assert_ne!(settings_fingerprint(&vllm.replace("0.64", "0.63")), settings_fingerprint(&vllm));
    }

    /// A converged vLLM on the A10G, its config/vllm.env as `settings`.
    fn converged_vllm(img: &ImageConfig, settings: &str) -> String {
        let sizing = size(&VLLM, 23028.0 / 1024.0, None).unwrap();
        let model = sizing.model.id;
        let path = img.config_path("vllm.env");
        format!(
            "containers.listed=yes\ndocker.networks=bridge llm\n\
             container=llm\t{}\tvllm\trunning\tvllm\tUp 2 hours (healthy)\n\
             llm.vllm.set_up=yes\nllm.vllm.env_key=yes\nllm.env_model={model}\nllm.env_url={}\nllm.vllm.serves={model}\n\
             llm.vllm.settings={}\nfile.{}={} 644 root\nfile.{}=link {path}\n\
             file.{path}={} 600 ubuntu\nwritten.{path}={}\nfile.{}=absent\n",
            VLLM.dir,
            VLLM.url,
            settings_fingerprint(settings),
            VLLM.compose_path(),
            sha256_hex(VLLM.compose_text()),
            VLLM.dot_env_path(),
            sha256_hex(settings),
            sha256_hex(settings),
            legacy_hf_env_path(),
        )
    }

    /// vLLM's HF_TOKEN lives in config/vllm.env: a run that gives no hf.env
    /// keeps the server's, so a running vLLM is left alone, and settings
    /// that changed are merged on the host with it (the token never in the
    /// command); one given replaces it, `hf.env=` (given empty) drops it; an
    /// older server's /var/docker/llm/hf.env is where it is kept from.
    #[test]
    fn the_hf_token_is_kept_unless_one_is_given() {
        let mut img = local(Runtime::Vllm);
        let sizing = size(&VLLM, 23028.0 / 1024.0, None).unwrap();
        let path = img.config_path("vllm.env");
        let token = "HF_TOKEN=hf_secret\n";
        let with_token = settings_env_text(&sizing, token.as_bytes());
        assert!(with_token.ends_with("\nHF_TOKEN=hf_secret\n"), "{with_token}");
        let converged = converged_vllm(&img, &with_token);
        assert!(matches!(plan_of(&img, &converged), Plan::Ok(_)), "{:?}", plan_of(&img, &converged));
        // Other settings on the server (another GPU's share): merged there.
        let stale = converged_vllm(&img, &with_token.replace("=0.64", "=0.50"));
        let Plan::Act { why, actions } = plan_of(&img, &stale) else { panic!() };
        assert!(
            why.starts_with(
                "write config/vllm.env (Qwen/Qwen2.5-VL-7B-Instruct-AWQ on a 22.5 GiB GPU: vLLM takes 0.64"
            )
        );
        assert!(why.contains("; HF_TOKEN kept from vllm.env)"), "{why}");
        let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let merge = shown.iter().find(|c| c.contains("keep-env-lines.sh")).expect("the merge");
        assert!(merge.contains("KEEP=HF_TOKEN") && merge.contains(&format!("ENV_FILE={path}")), "{merge}");
        assert!(merge.contains("GPU_MEMORY_UTILIZATION=0.64") && !merge.contains("hf_secret"), "{merge}");
        assert!(shown.iter().any(|c| c.contains("llm-up.sh")), "compose reads the new settings: {shown:#?}");
        // Given: the same is ok, another replaces it (a secret upload);
        // given empty: the settings alone.
        img.env_files = vec![("hf.env".into(), token.as_bytes().to_vec())];
        assert!(matches!(plan_of(&img, &converged), Plan::Ok(_)));
        img.env_files = vec![("hf.env".into(), b"HF_TOKEN=hf_other\n".to_vec())];
        let Plan::Act { why, actions } = plan_of(&img, &converged) else { panic!() };
        assert!(
            why.starts_with("write config/vllm.env (Qwen/Qwen2.5-VL-7B-Instruct-AWQ on a ")
                && why.contains("GiB, HF_TOKEN)"),
            "{why}"
        );
        assert!(actions.iter().any(
            |a| matches!(a, Action::Upload { path: p, secret: true, content, .. } if *p == path && content.ends_with(b"HF_TOKEN=hf_other\n"))
        ));
        img.env_files = vec![("hf.env".into(), Vec::new())];
        let Plan::Act { actions, .. } = plan_of(&img, &converged) else { panic!() };
        assert!(actions.iter().any(
            |a| matches!(a, Action::Upload { path: p, content, secret: false, .. } if *p == path && *content == sizing.settings_text().into_bytes())
        ));
        // An older server: no vllm.env yet, the token in hf.env.
        img.env_files = Vec::new();
        let older = converged_vllm(&img, &with_token).replace(&format!("file.{path}="), "was.")
            + &format!("file.{path}=absent\nfile.{0}=abcd 600 root\nwritten.{0}=abcd\n", legacy_hf_env_path());
        let Plan::Act { why, actions } = plan_of(&img, &older) else { panic!() };
        assert!(why.contains("; HF_TOKEN kept from hf.env)"), "{why}");
        let merge = actions.iter().map(|a| a.describe(false)).find(|c| c.contains("keep-env-lines.sh")).unwrap();
        assert!(merge.contains(&format!("FROM={}", legacy_hf_env_path())), "{merge}");
        let rm = format!("rm -f -- {}", legacy_hf_env_path());
        assert!(actions.iter().any(|a| a.describe(false).contains(&rm)), "the older file goes: {actions:#?}");
    }

    /// llm-up.sh writes config/llm.env: the host's own (an LLM elsewhere)
    /// is copied first, named in the plan; one with the LLM's own key is
    /// image-provision's and is rewritten with no copy.
    #[test]
    fn a_hosts_own_llm_env_is_copied_before_llm_up_replaces_it() {
        let img = local(Runtime::Vllm);
        let llm_env = img.config_path("llm.env");
        let base = "containers.listed=yes\ndocker.networks=bridge\n";
        let theirs = format!("{base}file.{llm_env}=abcd 600 ubuntu\n");
        let Plan::Act { why, actions } = plan_of(&img, &theirs) else { panic!() };
        let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let at = |needle: &str| {
            shown.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {shown:#?}"))
        };
        assert!(at(&format!("COPIES={llm_env}")) < at("llm-up.sh"), "{shown:#?}");
        assert!(why.contains(&format!("keep a copy of {llm_env} as {}{llm_env}", backup_dir())), "{why}");
        // With the LLM's own key: ours.
        let ours = format!("{theirs}llm.vllm.set_up=yes\nllm.vllm.env_key=yes\nllm.env_model=other/model\n");
        let Plan::Act { why, actions } = plan_of(&img, &ours) else { panic!() };
        assert!(
            !why.contains("keep a copy") && actions.iter().all(|a| !a.describe(false).contains("keep-copies")),
            "{why}"
        );
    }

    /// --llm ollama on a fresh host: its compose project in
    /// /var/docker/ollama, its settings in config/ollama.env (linked as the
    /// project's .env), llm.env with the placeholder key (no key made), the
    /// wait pulling the model; on a host where vLLM runs, vLLM's container
    /// goes (the GPU is one).
    #[test]
    fn ollama_is_set_up_in_its_own_project_and_replaces_a_running_vllm() {
        let img = local(Runtime::Ollama);
        let fresh = "containers.listed=yes\ndocker.networks=bridge\n";
        let Plan::Act { why, actions } = plan_of(&img, fresh) else { panic!() };
        let shown: Vec<String> = actions.iter().map(|a| a.describe(false)).collect();
        let has = |needle: &str| shown.iter().any(|c| c.contains(needle));
        assert!(has("/var/docker/ollama/docker-compose.yml") && has("ln -sfnT"), "{shown:#?}");
        assert!(actions.iter().any(|a| matches!(a, Action::Upload { path, mode: 0o600, owner: Some(o), .. }
            if *path == img.config_path("ollama.env") && o == "ubuntu")));
        let up = shown.iter().find(|c| c.contains("llm-up.sh")).unwrap();
        assert!(up.contains("PLACEHOLDER_KEY=ollama") && up.contains("LLM_URL=http://ollama:11434/v1"), "{up}");
        assert!(up.contains("MODEL=qwen2.5vl:7b") && !up.contains("KEY_VAR"), "{up}");
        let wait = shown.iter().find(|c| c.contains("llm-wait.sh")).unwrap();
        assert!(wait.contains("PULL=yes") && wait.contains("PORT=11434"), "{wait}");
        assert!(!why.contains("generate its API key") && why.contains("start Ollama"), "{why}");
        assert!(why.contains("pull it first"), "{why}");
        // vLLM of ours runs: removed by llm-up.sh, said in the plan.
        let vllm = format!("{fresh}container=llm\t{}\tvllm\trunning\tvllm\tUp 2 hours (healthy)\n", VLLM.dir);
        let Plan::Act { why, .. } = plan_of(&img, &vllm) else { panic!() };
        assert!(why.contains("remove vLLM's container (its GPU memory)"), "{why}");
        // A container named vllm of another project is not ours.
        let other = format!("{fresh}container=mine\t/srv/mine\tvllm\trunning\tvllm\tUp 2 hours\n");
        let Plan::Act { why, .. } = plan_of(&img, &other) else { panic!() };
        assert!(!why.contains("remove vLLM"), "{why}");
    }
}
