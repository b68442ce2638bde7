//! `bootstrap --host`, and the host steps' settings `ec2 create` resolves
//! as well: the flags over the `[host]` table over the defaults, every
//! supplied env file and credential file read and checked before anything
//! connects.

use std::time::Duration;

use clap::ValueEnum;
use image_provision_playbooks::settings::{self, Config, ImageConfig, Llm, Profile, RepoCredentials, Upkeep};
use image_provision_playbooks::validate::{self, shown};
use image_provision_remote::{HostKeyPolicy, Identity, Target};

use super::*;
use crate::args::{BootstrapArgs, HostStepArgs, ImageProfile};
use crate::config::HostConfig;
use crate::errors::UsageError;

/// `bootstrap --host`, resolved.
pub struct BootstrapSettings {
    pub target: Target,
    pub identity: Identity,
    pub policy: HostKeyPolicy,
    pub dry_run: bool,
    pub steps: Config,
}

pub(super) fn bootstrap(
    a: &BootstrapArgs,
    file: &HostConfig,
    hooks: &TestHooks,
) -> Result<BootstrapSettings, UsageError> {
    let target = target(&a.host)?;
    let identity = identity(a.identity.as_ref(), "the ssh-agent")?.unwrap_or(Identity::Agent);
    let mut steps = host_steps(&a.steps, file, hooks, true)?;
    steps.expiry = bootstrap_expiry(a.ttl.as_deref())?;
    Ok(BootstrapSettings { target, identity, policy: policy(a.accept_new_host_key), dry_run: a.dry_run, steps })
}

/// `bootstrap --ttl DURATION|off`: the power-off this long from now (read
/// as `ec2 create --ttl` is), or none; without it, the host's is kept.
pub(super) fn bootstrap_expiry(ttl: Option<&str>) -> Result<settings::Expiry, UsageError> {
    Ok(match ttl.map(str::trim) {
        None => settings::Expiry::Keep,
        Some("off") => settings::Expiry::Off,
        Some(t) => {
            let d = duration("--ttl", t).map_err(|e| e.hint("write it like 30m, 4h or 2d, or `off` for no expiry"))?;
            settings::Expiry::At(settings::expires_after(d).map_err(UsageError::new)?)
        }
    })
}

/// The host steps' settings (`bootstrap`, `ec2 create`): the flags over the
/// file's `[host]` table over the defaults. Every supplied env file is read
/// and checked here, before anything connects.
/// The host steps' settings. `running`: they run now (not only recorded
/// with `ec2 create --no-bootstrap`), so the stack needs its LLM chosen.
pub(super) fn host_steps(
    a: &HostStepArgs,
    f: &HostConfig,
    hooks: &TestHooks,
    running: bool,
) -> Result<Config, UsageError> {
    let defaults = Config::default();
    let timeout = |flag: &str, value: &Option<String>, file: &Option<String>, default| {
        duration_or(flag, value.as_ref().or(file.as_ref()), default)
    };
    let registry_mirror = checked(
        "--registry-mirror",
        a.registry_mirror.as_ref(),
        f.registry_mirror.as_ref(),
        validate::check_registry_mirror,
    )
    .map_err(|e| {
        url_hint(
            e,
            "a Docker Hub mirror's URL, e.g. https://mirror.gcr.io or your own pull-through registry's \
             https://HOST[:PORT]; a mirror that needs a login cannot be one",
        )
    })?;
    let mut image = if on(a.no_stack, f.no_stack) { None } else { Some(image_steps(a, f, hooks, running)?) };
    // dockerhub.env is the docker step's (root's login), not a file of the
    // stack's: taken out of those the layout writes.
    let dockerhub = match image.as_mut().and_then(|img| {
        let at = img.env_files.iter().position(|(n, _)| n == "dockerhub.env")?;
        Some(img.env_files.remove(at).1)
    }) {
        None => None,
        Some(content) if content.is_empty() => {
            return Err(UsageError::new("--env-file dockerhub.env= (no path): there is nothing to empty").hint(
                "give dockerhub.env=PATH to log in, or leave it out (to log out: `sudo docker logout` on the host)",
            ));
        }
        Some(content) => Some(
            validate::dockerhub_login(&String::from_utf8_lossy(&content))
                .map_err(|e| UsageError::new(format!("--env-file dockerhub.env: {e}")))?,
        ),
    };
    Ok(Config {
        gpu: !on(a.no_gpu, f.no_gpu),
        force_distro: on(a.force_distro, f.force_distro),
        nvidia_driver_branch: checked(
            "--nvidia-driver",
            a.nvidia_driver.as_ref(),
            f.nvidia_driver.as_ref(),
            validate::check_driver_branch,
        )
        .map_err(|e| e.hint(DRIVER_BRANCH_HINT))?
        .unwrap_or(defaults.nvidia_driver_branch),
        nvidia_repo: checked(
            "--nvidia-repo",
            a.nvidia_repo.as_ref(),
            f.nvidia_repo.as_ref(),
            validate::check_apt_source,
        )
        .map_err(apt_source_hint)?
        .unwrap_or(defaults.nvidia_repo),
        nvidia_repo_key: checked(
            "--nvidia-repo-key",
            a.nvidia_repo_key.as_ref(),
            f.nvidia_repo_key.as_ref(),
            validate::check_key_url,
        )
        .map_err(key_url_hint)?
        .unwrap_or(defaults.nvidia_repo_key),
        docker_repo: checked(
            "--docker-repo",
            a.docker_repo.as_ref(),
            f.docker_repo.as_ref(),
            validate::check_apt_source,
        )
        .map_err(apt_source_hint)?
        .unwrap_or(defaults.docker_repo),
        docker_repo_key: checked(
            "--docker-repo-key",
            a.docker_repo_key.as_ref(),
            f.docker_repo_key.as_ref(),
            validate::check_key_url,
        )
        .map_err(key_url_hint)?
        .unwrap_or(defaults.docker_repo_key),
        reboot_timeout: timeout("--reboot-timeout", &a.reboot_timeout, &f.reboot_timeout, defaults.reboot_timeout)?,
        cloud_init_timeout: timeout(
            "--cloud-init-timeout",
            &a.cloud_init_timeout,
            &f.cloud_init_timeout,
            defaults.cloud_init_timeout,
        )?,
        lock_timeout: timeout("--apt-lock-timeout", &a.apt_lock_timeout, &f.apt_lock_timeout, defaults.lock_timeout)?,
        command_time_limit: timeout(
            "--command-timeout",
            &a.command_timeout,
            &f.command_timeout,
            defaults.command_time_limit,
        )?,
        apt_lists_max_age: defaults.apt_lists_max_age,
        registry_mirror,
        dockerhub,
        image,
        // `bootstrap --ttl`; `ec2 create` sets it from the instance's tag.
        expiry: settings::Expiry::Keep,
        autostop: autostop(a.autostop.as_deref(), on(a.no_stack, f.no_stack))?,
    })
}

/// The shortest `--autostop`: its check runs every 5 s at the least.
pub(super) const MIN_AUTOSTOP: Duration = Duration::from_secs(10);

/// `--autostop DURATION|off` (bootstrap and ec2 create): a stop after this
/// long without a request, or none; without it, the host's is kept. Idle
/// is counted from the orchestrator's requests, so a --no-stack server
/// takes only `off`.
pub(super) fn autostop(value: Option<&str>, no_stack: bool) -> Result<settings::Autostop, UsageError> {
    Ok(match value.map(str::trim) {
        None => settings::Autostop::Keep,
        Some("off") => settings::Autostop::Off,
        Some(t) => {
            let d = duration_at_least("--autostop", t, MIN_AUTOSTOP)
                .map_err(|e| e.hint("write it like 30m, 2h or 1d, or `off` for no idle stop"))?;
            if no_stack {
                return Err(UsageError::new(format!(
                    "--autostop {} with --no-stack: idle is counted from the requests that reach the IMAGE \
                     orchestrator, and a server without the stack has none",
                    shown(t)
                ))
                .hint("drop --no-stack, or use --ttl DURATION for a server that ends at a time"));
            }
            settings::Autostop::After(d)
        }
    })
}

/// Where credentials go instead of a URL.
pub(super) const CREDENTIALS_HINT: &str = "credentials go in files, never on command lines or in URLs (ps, shell history and \
    logs keep those): give the URL without USER:PASSWORD@";

/// The hint for a refused URL: [`CREDENTIALS_HINT`] when it carried
/// credentials, else `otherwise`.
pub(super) fn url_hint(e: UsageError, otherwise: &str) -> UsageError {
    if e.message.contains(validate::URL_CREDENTIALS) { e.hint(CREDENTIALS_HINT) } else { e.hint(otherwise) }
}

/// Where a private repository's credentials go instead of --repo-url.
pub(super) const REPO_CREDENTIALS_HINT: &str = "credentials go in files, never on command lines or in URLs (ps, shell \
    history and logs keep those): give the URL without USER:TOKEN@, and the credential as one line \
    https://USER:TOKEN@HOST in a file of mode 0600 with --repo-credentials PATH";

pub(super) fn apt_source_hint(e: UsageError) -> UsageError {
    url_hint(
        e,
        "an https:// repository, e.g. \"https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\" (a flat \
         repository has SUITE /), or file:/PATH for one on the host",
    )
}

pub(super) fn key_url_hint(e: UsageError) -> UsageError {
    url_hint(e, "give an https:// URL of an ASCII-armored key, or file:///PATH for a key on the host")
}

/// The IMAGE steps' settings.
pub(super) fn image_steps(
    a: &HostStepArgs,
    f: &HostConfig,
    hooks: &TestHooks,
    running: bool,
) -> Result<ImageConfig, UsageError> {
    let defaults = ImageConfig::default();
    let domain = domain(a.domain.as_ref(), f.domain.as_ref())?;
    let domain_for_dns = domain.clone();
    // Checked whether or not it is used: bad input is refused either way.
    let dns_timeout =
        duration_or("--dns-timeout", a.dns_timeout.as_ref().or(f.dns_timeout.as_ref()), settings::DEFAULT_DNS_TIMEOUT)?;
    let acme_email = checked("--acme-email", a.acme_email.as_ref(), f.acme_email.as_ref(), validate::check_email)?;
    if domain.is_some() && acme_email.is_none() {
        return Err(UsageError::new("--domain needs --acme-email").hint(
            "Let's Encrypt registers the certificate's account under an e-mail address: pass --acme-email you@example.org",
        ));
    }
    let staging = on(a.acme_staging, f.acme_staging);
    let acme_server =
        checked("--acme-server", a.acme_server.as_ref(), f.acme_server.as_ref(), validate::check_acme_server).map_err(
            |e| {
                url_hint(e, "an ACME directory over https, e.g. https://acme-staging-v02.api.letsencrypt.org/directory")
            },
        )?;
    if staging && acme_server.is_some() {
        return Err(UsageError::new("--acme-staging and --acme-server name two ACME servers")
            .hint("give one: --acme-staging for Let's Encrypt's staging server, or --acme-server URL for another"));
    }
    if domain.is_none() && (staging || acme_server.is_some()) {
        return Err(UsageError::new("--acme-staging or --acme-server without --domain")
            .hint("they choose where the certificate of --domain comes from; give --domain too"));
    }
    let acme_server = match (staging, acme_server) {
        (true, _) => settings::LETS_ENCRYPT_STAGING.to_string(),
        (false, Some(url)) => url,
        (false, None) => settings::LETS_ENCRYPT.to_string(),
    };
    if domain.is_none() && acme_email.is_some() {
        return Err(UsageError::new("--acme-email without --domain")
            .hint("the e-mail is for the certificate of --domain; give both"));
    }
    let profile = match (a.image_profile, &f.image_profile) {
        (Some(p), _) => p,
        (None, Some(p)) => ImageProfile::from_str(p, false).map_err(|_| {
            UsageError::new(format!("config file: [host] image_profile = {} is not a profile", shown(p)))
                .hint("use \"production\" or \"test\"")
        })?,
        (None, None) => ImageProfile::Production,
    };
    let env_specs: Vec<String> = match (&a.env_file, &f.env_files) {
        (flags, Some(files)) if flags.is_empty() => {
            files.iter().map(|(name, path)| format!("{name}={}", path.display())).collect()
        }
        (flags, _) => flags.clone(),
    };
    let mut env_files: Vec<(String, Vec<u8>)> = Vec::new();
    for spec in &env_specs {
        let (name, content) = read_env_file(spec)?;
        if env_files.iter().any(|(n, _)| *n == name) {
            return Err(UsageError::new(format!("--env-file {name} is given twice")));
        }
        env_files.push((name, content));
    }
    // The LLM, decided before anything connects: several IMAGE services
    // exit at start-up without one, so a stack brought up without a choice
    // never gets healthy.
    let has_llm = env_files.iter().any(|(n, _)| n == "llm.env");
    let runtime = match a.llm.as_ref().or(f.llm.as_ref()).map(String::as_str) {
        None => None,
        Some("local") => Some(settings::Runtime::Vllm),
        Some("ollama") => Some(settings::Runtime::Ollama),
        Some(other) => {
            return Err(UsageError::new(format!("--llm {} is not a choice", shown(other))).hint(
                "--llm local runs the LLM on this server with vLLM, --llm ollama with Ollama; an LLM elsewhere is --env-file llm.env=PATH",
            ));
        }
    };
    let local = runtime.is_some();
    let choices = [has_llm, on(a.no_llm, f.no_llm), local];
    if choices.iter().filter(|c| **c).count() > 1 {
        return Err(UsageError::new("more than one choice for the LLM (--env-file llm.env, --no-llm, --llm local|ollama)")
            .hint("give one: --env-file llm.env=PATH to use that LLM, --llm local or --llm ollama to run one here, or --no-llm to run without one"));
    }
    if !local && (a.llm_model.is_some() || f.llm_model.is_some()) {
        return Err(UsageError::new("--llm-model is for --llm local or --llm ollama")
            .hint("add --llm local (vLLM) or --llm ollama, or leave --llm-model out"));
    }
    if runtime != Some(settings::Runtime::Vllm) && env_files.iter().any(|(n, _)| n == "hf.env") {
        return Err(UsageError::new("--env-file hf.env is for --llm local (vLLM's Hugging Face token)")
            .hint("add --llm local, or leave hf.env out (Ollama pulls from its own library, with no token)"));
    }
    let local_llm = settings::LocalLlm {
        runtime: runtime.unwrap_or_default(),
        model: a.llm_model.clone().or(f.llm_model.clone()),
        timeout: duration_or(
            "--llm-timeout",
            a.llm_timeout.as_ref().or(f.llm_timeout.as_ref()),
            settings::DEFAULT_LLM_TIMEOUT,
        )?,
    };
    if let Some(model) = &local_llm.model {
        let spec = image_provision_playbooks::steps::llm::spec(local_llm.runtime);
        if model.len() > 128 || !model.chars().all(|c| c.is_ascii_alphanumeric() || "/._:-".contains(c)) {
            return Err(UsageError::new(format!("--llm-model {} is not a model id", shown(model)))
                .hint(format!("{} (docs/host.md, \"Local LLM\", lists them)", spec.model_example)));
        }
        // Known here, so a typo stops before anything is installed.
        image_provision_playbooks::steps::llm::size(spec, f64::MAX, Some(model))
            .map_err(|e| UsageError::new(e).hint(image_provision_playbooks::steps::llm::TOO_SMALL_HINT))?;
    }
    let llm = match (has_llm, on(a.no_llm, f.no_llm)) {
        _ if local => Llm::Local,
        (true, _) => Llm::EnvFile,
        (false, true) => Llm::Without,
        (false, false) if !running => Llm::Without,
        (false, false) => {
            return Err(UsageError::new("no LLM chosen: the IMAGE services that describe photos, answer follow-up questions and segment diagrams need one")
                .hint(format!(
                    "give --env-file llm.env=PATH (LLM_URL, LLM_API_KEY and LLM_MODEL of an OpenAI-compatible server, e.g. vLLM), --llm local (vLLM) or --llm ollama to run one on this server's GPU, or --no-llm to run without them ({}); in a config file: [host.env_files] \"llm.env\" = \"PATH\", or [host] no_llm = true",
                    image_provision_playbooks::steps::stack::NO_LLM_LOSS
                )));
        }
    };
    let webui = webui(a.llm_webui.as_ref(), f.llm_webui.as_ref(), local, domain.as_deref())?;
    let (imageup_timeout, health_timeout) = stack_timeouts(a.imageup_timeout.as_ref(), a.health_timeout.as_ref(), f)?;
    let text = |v: Option<String>, default: String| v.unwrap_or(default);
    let repo_url = text(
        checked("--repo-url", a.repo_url.as_ref(), f.repo_url.as_ref(), validate::check_repo_url).map_err(|e| {
            if e.message.contains(validate::URL_CREDENTIALS) {
                e.hint(REPO_CREDENTIALS_HINT)
            } else {
                e.hint("e.g. https://github.com/Shared-Reality-Lab/IMAGE-server.git")
            }
        })?,
        defaults.repo_url,
    );
    Ok(ImageConfig {
        base_dir: text(
            checked("--base-dir", a.base_dir.as_ref(), f.base_dir.as_ref(), validate::check_base_dir)?,
            defaults.base_dir,
        ),
        repo_credentials: repo_credentials(a.repo_credentials.as_ref(), f.repo_credentials.as_ref(), &repo_url)?,
        repo_url,
        repo_branch: text(
            checked("--repo-branch", a.repo_branch.as_ref(), f.repo_branch.as_ref(), validate::check_branch)?,
            defaults.repo_branch,
        ),
        domain,
        acme_email,
        acme_server,
        registry_tag: text(
            checked("--registry-tag", a.registry_tag.as_ref(), f.registry_tag.as_ref(), validate::check_registry_tag)?,
            defaults.registry_tag,
        ),
        profile: match profile {
            ImageProfile::Production => Profile::Production,
            ImageProfile::Test => Profile::Test,
        },
        pii_logging: on(a.pii_logging, f.pii_logging),
        env_files,
        llm,
        local_llm,
        webui,
        // A single server ends its own TLS; a fleet behind a load balancer
        // sets TlsEnd::Balancer.
        tls_end: settings::TlsEnd::Traefik,
        overpass_url: text(
            checked("--overpass-url", a.overpass_url.as_ref(), f.overpass_url.as_ref(), validate::check_service_url)
                .map_err(|e| url_hint(e, "e.g. https://overpass-api.de/api/interpreter"))?,
            defaults.overpass_url,
        ),
        nominatim_fallback: text(
            checked(
                "--nominatim-fallback",
                a.nominatim_fallback.as_ref(),
                f.nominatim_fallback.as_ref(),
                validate::check_service_url,
            )
            .map_err(|e| url_hint(e, "e.g. https://nominatim.openstreetmap.org"))?,
            defaults.nominatim_fallback,
        ),
        imageup: !on(a.no_imageup, f.no_imageup),
        imageup_timeout,
        health_timeout,
        https_check: hooks.https_check,
        upkeep: upkeep(a, f, profile)?,
        // The address is filled in by the command that reaches the server.
        dns_check: match (&domain_for_dns, on(a.no_dns_check, f.no_dns_check)) {
            (Some(_), false) => Some(settings::DnsCheck { address: String::new(), timeout: dns_timeout }),
            _ => None,
        },
    })
}

/// `--llm-webui HOST` over the file's `llm_webui`: a host name of its own
/// for the local LLM's web UI. It needs a local LLM (its only backend) and
/// --domain: Traefik and its certificates run only with a site, and a login
/// page over plain HTTP would send the password in the clear. The admin's
/// password is filled in by the command, from its local state.
pub(super) fn webui(
    flag: Option<&String>,
    file: Option<&String>,
    local_llm: bool,
    domain: Option<&str>,
) -> Result<Option<settings::WebUi>, UsageError> {
    let Some(host) = checked("--llm-webui", flag, file, validate::check_domain)
        .map_err(|e| e.hint("give the web UI's own public host name, e.g. --llm-webui chat.example.org"))?
        .map(|h| h.to_ascii_lowercase())
    else {
        return Ok(None);
    };
    if !local_llm {
        return Err(UsageError::new("--llm-webui needs a local LLM: the web UI talks to the LLM on this server")
            .hint("add --llm local (vLLM) or --llm ollama, or leave --llm-webui out"));
    }
    let Some(domain) = domain else {
        return Err(UsageError::new("--llm-webui needs --domain (and --acme-email)").hint(
            "the web UI is served only over HTTPS, through the Traefik and the certificates that --domain sets up; \
             give --domain HOST --acme-email EMAIL too",
        ));
    };
    if host == domain {
        return Err(UsageError::new(format!("--llm-webui {host} is --domain too"))
            .hint("the web UI needs a host name of its own, e.g. chat.example.org beside image.example.org"));
    }
    Ok(Some(settings::WebUi { host, admin_password: String::new() }))
}

/// What runs on the server by itself: the flags over the file.
pub(super) fn upkeep(a: &HostStepArgs, f: &HostConfig, profile: ImageProfile) -> Result<Upkeep, UsageError> {
    let defaults = Upkeep::default();
    let healthcheck_every = match a.healthcheck_every.as_ref().or(f.healthcheck_every.as_ref()).map(String::as_str) {
        None => defaults.healthcheck_every,
        Some("off") => None,
        Some(v) => {
            // The check lists every container and asks nvidia-smi: not
            // more often than once a minute.
            Some(
                duration_at_least("--healthcheck-every", v, Duration::from_secs(60))
                    .map_err(|e| e.hint("e.g. 5m, 10m, 1h, or off"))?,
            )
        }
    };
    let auto_update = match a.auto_update.as_ref().or(f.auto_update.as_ref()).map(String::as_str) {
        None | Some("off") => None,
        Some(when) => {
            let calendar = auto_update_calendar(when).ok_or_else(|| {
                UsageError::new(format!("--auto-update {} is not a time", shown(when)))
                    .hint("give daily (04:00 UTC), a time of day as HH:MM in UTC (e.g. 03:30), or off")
            })?;
            if profile == ImageProfile::Production {
                return Err(UsageError::new("--auto-update on a production server: the IMAGE team's imageup skips runs started by a timer when ENVIRONMENT is production")
                    .hint("update a production server on purpose with `image-provision update`; --auto-update is for --image-profile test"));
            }
            Some(calendar)
        }
    };
    let prune = match a.prune.as_ref().or(f.prune.as_ref()).map(String::as_str) {
        None => defaults.prune,
        Some("off") => None,
        Some(when @ ("daily" | "weekly" | "monthly")) => Some(when.to_string()),
        Some(other) => {
            return Err(UsageError::new(format!("--prune {} is not a schedule", shown(other)))
                .hint("give daily, weekly, monthly or off"));
        }
    };
    Ok(Upkeep { start_at_boot: !on(a.no_start_at_boot, f.no_start_at_boot), healthcheck_every, auto_update, prune })
}

/// `daily` or HH:MM (UTC) as a systemd calendar event.
pub(super) fn auto_update_calendar(when: &str) -> Option<String> {
    let (h, m) = if when == "daily" { ("04", "00") } else { when.split_once(':')? };
    let valid = |v: &str, max: u32| v.len() == 2 && v.parse::<u32>().is_ok_and(|n| n <= max);
    (valid(h, 23) && valid(m, 59)).then(|| format!("*-*-* {h}:{m}:00 UTC"))
}

/// `--env-file NAME=PATH`: read and check the file. Messages name the file
/// and the line, never a value (the files hold credentials).
pub(super) fn read_env_file(spec: &str) -> Result<(String, Vec<u8>), UsageError> {
    let known = validate::SUPPLIED_ENV_FILES.join(", ");
    let Some((name, path)) = spec.split_once('=') else {
        return Err(UsageError::new(format!("--env-file {}: expected NAME=PATH", shown(spec)))
            .hint(format!("e.g. --env-file llm.env=./llm.env; NAME is one of {known}")));
    };
    let name = name.trim();
    if !validate::SUPPLIED_ENV_FILES.contains(&name) {
        return Err(UsageError::new(format!("--env-file {name}: not a file the IMAGE stack reads"))
            .hint(format!("NAME is one of {known}")));
    }
    // `NAME=`, no path: empty it on the server (a file not given is kept).
    if path.is_empty() {
        if name == "llm.env" {
            return Err(UsageError::new("--env-file llm.env= (no path): llm.env cannot be emptied")
                .hint("the LLM is chosen with --env-file llm.env=PATH, --llm local or --no-llm"));
        }
        return Ok((name.to_string(), Vec::new()));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        let path = plain(path);
        UsageError::new(format!("--env-file {name}={path}: cannot read {path}: {e}"))
            .hint("give the path of an existing file on this machine; nothing was changed on the host")
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        UsageError::new(format!("--env-file {name}={}: not UTF-8 text", plain(path)))
            .hint("nothing was changed on the host")
    })?;
    validate::check_env_file(name, &text).map_err(|e| {
        UsageError::new(format!("--env-file {name}={}: {e}", plain(path))).hint(
            "fix the file (KEY=value lines as compose reads them: `KEY = value`, quotes, `export `, # comments are fine) and run again; nothing was changed on the host",
        )
    })?;
    Ok((name.to_string(), text.into_bytes()))
}

/// `--repo-credentials PATH|none` over the file's `repo_credentials`:
/// without either the server's are kept. The local file must be a regular
/// file only its owner can read or write (it holds a token), with one
/// credential for `repo_url`'s host. Messages name the file and the line,
/// never a value.
pub(super) fn repo_credentials(
    flag: Option<&String>,
    file: Option<&String>,
    repo_url: &str,
) -> Result<RepoCredentials, UsageError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Some(spec) = flag.or(file) else {
        return Ok(RepoCredentials::Keep);
    };
    let usage = "give a file of yours, mode 0600, with one line https://USER:TOKEN@HOST (git's credential \
                 store format), or none to remove the server's; nothing was changed on the host";
    match spec.as_str() {
        "none" => return Ok(RepoCredentials::Remove),
        "" => return Err(UsageError::new("--repo-credentials is empty").hint(usage)),
        _ => {}
    }
    let shown_path = plain(spec);
    let refused = |why: String| UsageError::new(format!("--repo-credentials {shown_path}: {why}"));
    let Some(host) = validate::https_host(repo_url) else {
        return Err(refused(format!(
            "the repository {} is not fetched over https://, where credentials are asked",
            plain(repo_url)
        ))
        .hint("credentials are for an https:// --repo-url; leave --repo-credentials out for a file:// one"));
    };
    // Its kind first: opening a FIFO would wait for a writer.
    let kind = std::fs::metadata(spec).map_err(|e| refused(format!("cannot read it: {e}")).hint(usage))?;
    if !kind.is_file() {
        return Err(refused("not a regular file".into()).hint(usage));
    }
    let mut f = std::fs::File::open(spec).map_err(|e| refused(format!("cannot read it: {e}")).hint(usage))?;
    // The mode of the file read, not of whatever the path named before.
    let mode = f.metadata().map_err(|e| refused(format!("cannot read it: {e}")))?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refused(format!("mode {mode:04o} lets others than its owner read or change the token in it"))
            .hint(format!("chmod 600 {shown_path}, then run again; nothing was changed on the host")));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| refused(format!("cannot read it as text: {e}")).hint(usage))?;
    let credential = validate::parse_git_credential(&text).map_err(|e| refused(e).hint(usage))?;
    if credential.host != host {
        return Err(refused(format!(
            "the credential is for {}, and the repository {} is on {host}",
            plain(&credential.host),
            plain(repo_url)
        ))
        .hint("give the credential for the --repo-url's host (the same host and port)"));
    }
    Ok(RepoCredentials::Set(credential.line.into_bytes()))
}
