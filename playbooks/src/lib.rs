//! The host side of image-provision: facts, the steps that close the gap
//! between the facts and what an IMAGE server needs, and the runner that
//! takes a host through them over SSH.
//!
//! Layout (a folder per step; shared pieces below the steps import nothing
//! from them; the gathering, the runner and the report sit above):
//!
//! ```text
//! src/
//!   lib.rs              this map
//!   plan.rs             Action and Plan: what a step decides
//!   settings.rs         Config, ImageConfig, defaults, paths on the host; TlsEnd (Traefik's or a
//!                       load balancer's) and Site (the scheme of the host's own checks)
//!   validate.rs         checks of the person's input (domain, env files, ...)
//!   shell.rs            scripts sent with their libraries in front
//!   facts/              RawFacts (key=value), FactsScript, the timed command's marks (the bench);
//!                       prelude.sh (kv, root's shell opened first, each part's root functions
//!                       sent to it as the part ends and run_root_facts, the answer caches,
//!                       facts_units: one `systemctl show`, facts_after_root, facts_os_release)
//!   host/               HostFacts: distribution, user, sudo, GPU, packages; facts.sh
//!   apt/                apt-get as the steps run it; apt-source.sh, sources-facts.sh
//!   containers/         Docker's containers and networks, listed once; facts.sh; dockerd asked
//!                       through its socket once per facts command, its JSON read in bash
//!                       (docker-api.sh), the request started first (dockerd-early.sh)
//!   template/           render, sha256; keep-env-lines.sh (an env file's secret lines kept on the
//!                       host beside ours); Writes: a step's uploads and links, with a copy first of
//!                       what image-provision did not write (keep-copies.sh), its record of what
//!                       it wrote (record-written.sh) and of writes not yet applied
//!                       (mark-pending.sh); files-facts.sh (hash, mode, link, records)
//!   bring_up/           the stack's bring-up, one at a time, warm-up included: bring-up-lock.sh,
//!                       run-imageup.sh; what runs recorded (commit, image digests), kept from the
//!                       prune, restored pinned by digest, health waited for: stack-record.sh
//!   bake/               `ami bake`'s host side: what the image holds (commit, driver, digests),
//!                       what must not be shared held in /run while the image is taken, put back
//!                       after (a cut recovered from the record on disk): bake-hold.sh
//!   steps/
//!     host/             says what host this is
//!     ready/            cloud-init done, dpkg locks free; wait-ready.sh
//!     apt/              lists fresh, upgraded, dpkg repaired first
//!     docker/           Docker, compose v2, the docker group, pull concurrency and a Docker Hub
//!                       mirror (daemon-json.sh), the Docker Hub login (dockerhub-login.sh), what
//!                       Docker Hub's pull limit looks like; restart-docker.sh (a restart waited
//!                       for, the nvidia step's too)
//!     nvidia/           driver (held against unattended upgrades), container toolkit, runtime;
//!                       debian-components.sh, hold-driver.sh
//!     reboot/           reboot when the driver waits for one
//!     gpu_check/        nvidia-smi answers, Docker has the nvidia runtime, the driver serves the
//!                       CUDA the GPU images need (cuda-check.sh, the stack step's too)
//!     layout/           the IMAGE working directory: clone (a private repository's credentials in a
//!                       root-only file its git config names), links, .env, config/*.env (the operator
//!                       scripts' too; one not given kept as the server has it, keep-env-lines.sh),
//!                       the site override (map servers, test profile, --no-llm, the domain's
//!                       routes, services off for want of their keys: keys.rs); templates
//!     pull/             the background image pull; start-pull.sh, wait-pull.sh
//!     traefik/          the traefik network, the domain's DNS before Traefik starts (dns-wait.sh),
//!                       Traefik, its ACME server (behind a load balancer: port 80 alone, no ACME);
//!                       traefik-compose.yml
//!     llm/              --llm local (vLLM) or --llm ollama: the runtime sized to the GPU, its settings
//!                       (config/vllm.env, config/ollama.env), its key and config/llm.env, Ollama's
//!                       pull; vllm-compose.yml, ollama-compose.yml, llm-up.sh, llm-wait.sh
//!     webui/            --llm-webui: Open WebUI on its own host name behind Traefik, connected to the
//!                       local LLM, its first admin ours, routed only once that admin signs in;
//!                       webui-compose.yml, webui-up.sh
//!     stack/            the LLM check, the CUDA check again once pulled, imageup (or compose up),
//!                       the deploy stamp, services not well;
//!                       llm-check.sh, stack-up.sh, update.sh, rollback.sh (an update recorded or
//!                       rolled back, `update --rollback`)
//!     health/           every service well, the one HTTPS check (HTTP on port 80 behind a load
//!                       balancer), the request that proves the stack
//!                       (a graphic of its own each time: the orchestrator caches by graphic);
//!                       health.sh, render-request.sh, probe.png
//!     upkeep/           systemd units: the stack at boot, IMAGE's healthcheck, the nightly
//!                       update (rolled back as `update` is), image pruning, the power-off at the
//!                       expiry (expire.sh; its files also go into ec2 create's user data), the
//!                       idle stop once no request reached the orchestrator (autostop.sh); their
//!                       scripts
//!   gather.rs           the ONE facts command (every part) and Facts, parsed once
//!   sequence.rs         Step: the order, which facts each step plans from; Earlier: what the
//!                       steps before did in this run, where a plan depends on it
//!   runner.rs           runs the steps over one SSH session: outcomes, reconnects, reboots
//!   preview.rs          what the steps would do on a fresh image (ec2 create --dry-run)
//!   report.rs           verify's checks from the same facts
//!   catalog.rs          every script as sent, for shellcheck
//! ```
//!
//! Each step's folder holds its typed facts (parsed from the keys its own
//! facts script prints), its plan, the shell it sends and the templates it
//! renders. Shell with branches lives in `.sh` files (bash, checked by
//! shellcheck in the tests), embedded here and fed to the host on stdin with
//! its inputs as environment variables.

pub mod apt_get;
pub mod bake;
pub mod bring_up;
pub mod catalog;
pub mod containers;
pub mod facts;
pub mod gather;
pub mod host_facts;
pub mod plan;
pub mod preview;
pub mod report;
pub mod runner;
pub mod sequence;
pub mod settings;
pub mod shell;
pub mod steps;
pub mod template;
pub mod validate;

pub use catalog::scripts;
pub use gather::Facts;
pub use plan::{Action, Plan};
pub use runner::{Events, Failure, Outcome, Runner, StepReport};
pub use sequence::Step;
pub use settings::{Config, ImageConfig, Profile};
