//! Command-line arguments, parsed once. Every option is an `Option` with no
//! clap default so that `resolve` can tell a flag (or its environment
//! variable) from an absent one and fall back to the config file, then to the
//! built-in default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "image-provision",
    version,
    about = "Create, bootstrap and tear down IMAGE servers on AWS EC2 or on a host you already have",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file [default: ./image-provision.toml when it exists]
    #[arg(long, global = true, env = "IMAGE_PROVISION_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More detail on stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Servers on AWS EC2
    #[command(subcommand)]
    Ec2(Ec2Command),
    /// Baked images: an AMI of a healthy server, for `ec2 create --ami` to start from
    #[command(subcommand)]
    Ami(AmiCommand),
    /// Several servers behind one AWS Application Load Balancer
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Take a host you can SSH to from bare Ubuntu/Debian to Docker and a verified NVIDIA GPU
    Bootstrap(BootstrapArgs),
    /// Report a server's driver, GPU, Docker, Traefik and stack health; change nothing
    Verify(VerifyArgs),
    /// Keep a server current: run imageup again, then the health checks
    Update(UpdateArgs),
}

/// Which server `verify` and `update` talk to: an EC2 server by NAME, or --host.
/// --domain, --base-dir and --no-gpu fall back to the config file's `[host]`
/// table (in `resolve`), as the host steps' flags do.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerArgs {
    /// The EC2 server (its key and known_hosts from the state directory)
    #[arg(required_unless_present = "host", conflicts_with = "host", value_name = "NAME")]
    pub name: Option<String>,

    /// Any host: [user@]address[:port] (user defaults to root, port to 22)
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub host: Option<String>,

    /// With --host: private key to log in with [default: the ssh-agent]
    #[arg(long, env = "IMAGE_PROVISION_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// With --host: record the host's key if it is not yet known
    #[arg(long)]
    pub accept_new_host_key: bool,

    /// With NAME: the image's login user [default: ubuntu]
    #[arg(long, env = "IMAGE_PROVISION_SSH_USER", value_name = "USER")]
    pub ssh_user: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// The site's host name [default: the config file's, else the one in the host's site override]
    #[arg(long, env = "IMAGE_PROVISION_DOMAIN", value_name = "HOST")]
    pub domain: Option<String>,

    /// The IMAGE working directory on the host [default: the config file's, else /var/docker/image]
    #[arg(long, env = "IMAGE_PROVISION_BASE_DIR", value_name = "PATH")]
    pub base_dir: Option<String>,

    /// A host without a GPU: do not check the driver or Docker's nvidia runtime
    /// (also on with the config file's `no_gpu = true`)
    #[arg(long)]
    pub no_gpu: bool,

    /// A server bootstrapped with --no-stack (Docker and the GPU only): verify
    /// checks no stack, Traefik or HTTPS; update has nothing to do (also on
    /// with the config file's `no_stack = true`)
    #[arg(long)]
    pub no_stack: bool,

    /// Do not send the request that proves the stack (POST
    /// /render/preprocess with a small graphic) after the other checks
    #[arg(long)]
    pub no_request: bool,

    /// JSON for scripts instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// A server bootstrapped with --no-imageup: compose pull and up instead
    /// of the IMAGE team's scripts/imageup [default: the config file's]
    #[arg(long)]
    pub no_imageup: bool,

    /// Time limit for imageup (or the compose pull with --no-imageup)
    /// [default: the config file's, else 60m]
    #[arg(long, env = "IMAGE_PROVISION_IMAGEUP_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub imageup_timeout: Option<String>,

    /// How long to wait for the orchestrator to be healthy afterwards
    /// [default: the config file's, else 5m]
    #[arg(long, env = "IMAGE_PROVISION_HEALTH_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,

    /// First upgrade the NVIDIA driver, which bootstrap holds against
    /// unattended upgrades: lift the hold, upgrade, hold again, and reboot
    /// when it changed (the stack comes back at boot), then update the stack
    #[arg(long)]
    pub upgrade_driver: bool,

    /// With --upgrade-driver: the Ubuntu driver branch to be on; a driver
    /// of a lower branch moves to it [default: the config file's
    /// nvidia_driver, else 580-server]
    #[arg(long, env = "IMAGE_PROVISION_NVIDIA_DRIVER", value_name = "BRANCH")]
    pub nvidia_driver: Option<String>,

    /// With --upgrade-driver: how long the reboot may take [default: the
    /// config file's reboot_timeout, else 10m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub reboot_timeout: Option<String>,

    /// No update: return to what ran before the last good update (the
    /// recorded repository commit and image digests, compose pinned to them
    /// until the next update), then report as verify does
    #[arg(long, conflicts_with = "upgrade_driver")]
    pub rollback: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct BootstrapArgs {
    /// The host: [user@]address[:port] (user defaults to root, port to 22)
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub host: String,

    /// Private key to log in with [default: the ssh-agent]
    #[arg(long, env = "IMAGE_PROVISION_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// Record the host's key if this host is not yet in the known_hosts file
    /// (a key that changed is still refused)
    #[arg(long)]
    pub accept_new_host_key: bool,

    /// Print each step and what it would run; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Power the host off this long from now (e.g. 4h, 2d), or `off`: never.
    /// On an instance made with `ec2 create --ttl`, powering off terminates
    /// it [default: the expiry the host has, if any, is kept]
    #[arg(long, value_name = "DURATION|off", allow_hyphen_values = true)]
    pub ttl: Option<String>,

    #[command(flatten)]
    pub steps: HostStepArgs,
}

/// How the host steps run: shared by `bootstrap` and `ec2 create`.
#[derive(Debug, Args, Clone, Default)]
pub struct HostStepArgs {
    /// Skip the NVIDIA driver, container toolkit and GPU check (the IMAGE GPU
    /// services will not start on this host)
    #[arg(long)]
    pub no_gpu: bool,

    /// Go on with a distribution other than Ubuntu 22.04/24.04 or Debian 12
    #[arg(long)]
    pub force_distro: bool,

    /// Ubuntu NVIDIA server driver branch: installs nvidia-driver-BRANCH
    /// [default: 580-server, NVIDIA's long-term support branch: CUDA 13.0]
    #[arg(long, env = "IMAGE_PROVISION_NVIDIA_DRIVER", value_name = "BRANCH")]
    pub nvidia_driver: Option<String>,

    /// NVIDIA container toolkit apt source, "URI SUITE [COMPONENT...]"
    /// [default: https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /]
    #[arg(long, env = "IMAGE_PROVISION_NVIDIA_REPO", value_name = "SOURCE")]
    pub nvidia_repo: Option<String>,

    /// URL of the ASCII-armored key that signs --nvidia-repo (https://, or file:///PATH on the host)
    /// [default: https://nvidia.github.io/libnvidia-container/gpgkey]
    #[arg(long, env = "IMAGE_PROVISION_NVIDIA_REPO_KEY", value_name = "URL")]
    pub nvidia_repo_key: Option<String>,

    /// Docker's apt source on Debian, "URI SUITE [COMPONENT...]" ({codename} is replaced)
    /// [default: https://download.docker.com/linux/debian {codename} stable]
    #[arg(long, env = "IMAGE_PROVISION_DOCKER_REPO", value_name = "SOURCE")]
    pub docker_repo: Option<String>,

    /// URL of the ASCII-armored key that signs --docker-repo
    /// [default: https://download.docker.com/linux/debian/gpg]
    #[arg(long, env = "IMAGE_PROVISION_DOCKER_REPO_KEY", value_name = "URL")]
    pub docker_repo_key: Option<String>,

    /// A Docker Hub mirror (http:// or https://, no credentials) Docker asks
    /// before Docker Hub, set as daemon.json's registry-mirrors: pulls of
    /// Docker Hub's images then do not count against the limit Docker Hub
    /// sets on anonymous pulls per address [default: daemon.json's kept]
    #[arg(long, env = "IMAGE_PROVISION_REGISTRY_MIRROR", value_name = "URL")]
    pub registry_mirror: Option<String>,

    /// How long to wait for the host to come back from a reboot [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_REBOOT_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub reboot_timeout: Option<String>,

    /// How long to wait for cloud-init to finish (`cloud-init status --wait`) [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_CLOUD_INIT_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub cloud_init_timeout: Option<String>,

    /// How long to wait for another process (unattended-upgrades) to release
    /// the dpkg/apt locks [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_APT_LOCK_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub apt_lock_timeout: Option<String>,

    /// How long any one command on the host may run when it has no time
    /// limit of its own (imageup, the pulls and the waits have theirs):
    /// past it the run stops, naming the command [default: 30m]
    #[arg(long, env = "IMAGE_PROVISION_COMMAND_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub command_timeout: Option<String>,

    /// Power the server off once no request has reached the IMAGE
    /// orchestrator for this long (e.g. 30m, 2h), or `off`: never. Counted
    /// from the orchestrator's log, from boot (or arming) on; an EC2
    /// instance given `ec2 create --autostop` stops, not terminates [default:
    /// the idle stop the host has, if any, is kept]
    #[arg(long, value_name = "DURATION|off", allow_hyphen_values = true)]
    pub autostop: Option<String>,

    /// Stop after the GPU check: no IMAGE layout, Traefik or stack
    #[arg(long, env = "IMAGE_PROVISION_NO_STACK", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_stack: bool,

    /// The server's public host name: Traefik routes it to the IMAGE
    /// orchestrator with a Let's Encrypt certificate, and the browser
    /// extension's server URL is https://DOMAIN/ (needs --acme-email)
    #[arg(long, env = "IMAGE_PROVISION_DOMAIN", value_name = "HOST")]
    pub domain: Option<String>,

    /// E-mail address for the Let's Encrypt account (with --domain)
    #[arg(long, env = "IMAGE_PROVISION_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,

    /// Certificates from Let's Encrypt's staging server (with --domain):
    /// far higher rate limits, for test and ephemeral servers; browsers do
    /// not trust them. Switching a server to or from staging clears the
    /// certificates the other server issued
    #[arg(long, env = "IMAGE_PROVISION_ACME_STAGING", value_parser = clap::builder::BoolishValueParser::new(), conflicts_with = "acme_server")]
    pub acme_staging: bool,

    /// Another ACME directory for the certificates (with --domain), e.g. a
    /// test server [default: Let's Encrypt's production directory]
    #[arg(long, env = "IMAGE_PROVISION_ACME_SERVER", value_name = "URL")]
    pub acme_server: Option<String>,

    /// Tag of the IMAGE images to run (REGISTRY_TAG) [default: latest]
    #[arg(long, env = "IMAGE_PROVISION_REGISTRY_TAG", value_name = "TAG")]
    pub registry_tag: Option<String>,

    /// The IMAGE compose profile (COMPOSE_PROFILES) [default: production].
    /// Not `--profile`: `ec2` commands take `--profile` for the AWS profile
    #[arg(long = "image-profile", env = "IMAGE_PROVISION_IMAGE_PROFILE", value_name = "PROFILE")]
    pub image_profile: Option<ImageProfile>,

    /// A credentials file for the stack, copied to config/NAME with mode
    /// 0600 (repeatable). NAME: llm.env (needs LLM_URL, LLM_API_KEY,
    /// LLM_MODEL), maps.env, azure-api.env, apis-and-selection.env
    /// (AZURE_API_KEY and FREEOCR_API_KEY, for the test profile's OCR:
    /// without them it is not started), healthcheck.env
    /// (SLACK_WEBHOOK_URL); hf.env (HF_TOKEN) goes to
    /// vLLM's config/vllm.env with --llm local; dockerhub.env
    /// (DOCKERHUB_USERNAME, DOCKERHUB_TOKEN) logs root's Docker in to Docker
    /// Hub, so pulls count against the account, not the address's anonymous
    /// limit. One not given keeps what the server has (or
    /// is created empty); NAME= (no path) empties it on the server
    #[arg(long = "env-file", value_name = "NAME=PATH")]
    pub env_file: Vec<String>,

    /// Run the stack without an LLM: the services that need one
    /// (content-categoriser, graphic-caption, text-followup,
    /// multistage-diagram-segmentation, object-detection-llm) exit at start,
    /// so there are no photo descriptions, follow-up questions, diagram
    /// segmentation or photo audio. The alternative: --env-file llm.env=PATH
    #[arg(long, env = "IMAGE_PROVISION_NO_LLM", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_llm: bool,

    /// `local`: run the vision LLM on this server's GPU with vLLM;
    /// `ollama`: with Ollama; either sized to the GPU's memory, instead of
    /// --env-file llm.env or --no-llm
    #[arg(long, value_name = "local|ollama")]
    pub llm: Option<String>,

    /// With --llm local or ollama: the model (a Hugging Face id for vLLM, an
    /// Ollama name for Ollama) [default: the largest that fits beside
    /// IMAGE's own GPU services]
    #[arg(long, value_name = "MODEL")]
    pub llm_model: Option<String>,

    /// With --llm local or ollama: how long its first start may take (the
    /// weights' download, Ollama's pull) [default: 60m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub llm_timeout: Option<String>,

    /// With --llm local and --domain: a web UI for the LLM (Open WebUI) at
    /// https://HOST/, its own certificate; login required, sign-up off; its
    /// admin's password generated and kept in the local state directory
    /// (ec2 create: STATE/servers/NAME/webui-admin-password; bootstrap:
    /// STATE/webui/HOST/admin-password), never printed. HOST's DNS must
    /// point at the server (ec2 create --domain makes its Route 53 record)
    #[arg(long, env = "IMAGE_PROVISION_LLM_WEBUI", value_name = "HOST")]
    pub llm_webui: Option<String>,

    /// The Overpass API the openstreetmap preprocessor asks (its SERVERS;
    /// IMAGE's compose file names McGill's own server)
    /// [default: https://overpass-api.de/api/interpreter]
    #[arg(long, env = "IMAGE_PROVISION_OVERPASS_URL", value_name = "URL")]
    pub overpass_url: Option<String>,

    /// The Nominatim server nominatim-preprocessor falls back to when
    /// McGill's does not answer [default: https://nominatim.openstreetmap.org]
    #[arg(long, env = "IMAGE_PROVISION_NOMINATIM_FALLBACK", value_name = "URL")]
    pub nominatim_fallback: Option<String>,

    /// Let the IMAGE services log personal information (PII_LOGGING_ENABLED=true)
    #[arg(long)]
    pub pii_logging: bool,

    /// The IMAGE working directory on the host [default: /var/docker/image]
    #[arg(long, env = "IMAGE_PROVISION_BASE_DIR", value_name = "PATH")]
    pub base_dir: Option<String>,

    /// The IMAGE-server repository, over HTTPS
    /// [default: https://github.com/Shared-Reality-Lab/IMAGE-server.git]
    #[arg(long, env = "IMAGE_PROVISION_REPO_URL", value_name = "URL")]
    pub repo_url: Option<String>,

    /// Credentials for a private IMAGE-server repository: a file of yours,
    /// mode 0600, holding one line `https://USER:TOKEN@HOST` (git's
    /// credential store format, as in ~/.git-credentials). It goes to the
    /// server as root's /etc/image-provision/git-credentials (0600), which
    /// every git in the clone reads through git's credential helper: never
    /// in a URL, a command line or a log. A run without it keeps the
    /// server's; `none` removes them
    #[arg(long, value_name = "PATH")]
    pub repo_credentials: Option<String>,

    /// The branch to clone [default: main] (imageup resets the clone to
    /// origin/main whenever it runs; use --no-imageup to stay on another)
    #[arg(long, env = "IMAGE_PROVISION_REPO_BRANCH", value_name = "BRANCH")]
    pub repo_branch: Option<String>,

    /// Bring the stack up with plain `docker compose pull` and `up -d`
    /// instead of the IMAGE team's scripts/imageup
    #[arg(long)]
    pub no_imageup: bool,

    /// Time limit for imageup (or the compose pull with --no-imageup): its
    /// warm-up waits for the services with no limit of its own [default: 60m]
    #[arg(long, env = "IMAGE_PROVISION_IMAGEUP_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub imageup_timeout: Option<String>,

    /// How long the health step waits for the orchestrator to be healthy
    /// and, with --domain, for https://DOMAIN/health to answer [default: 5m]
    #[arg(long, env = "IMAGE_PROVISION_HEALTH_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,

    /// Do not wait for --domain to resolve to the server before Traefik asks
    /// Let's Encrypt for its certificate (e.g. a server behind NAT)
    #[arg(long, env = "IMAGE_PROVISION_NO_DNS_CHECK", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dns_check: bool,

    /// How long to wait for --domain's DNS record to point at the server
    /// [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_DNS_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub dns_timeout: Option<String>,

    /// Do not start the stack's containers at boot (every IMAGE service has
    /// restart: "no"; by default a systemd unit starts them and warms up)
    #[arg(long)]
    pub no_start_at_boot: bool,

    /// Run the IMAGE team's scripts/healthcheck this often (a systemd
    /// timer), or `off` [default: 10m]
    #[arg(long, value_name = "DURATION|off", allow_hyphen_values = true)]
    pub healthcheck_every: Option<String>,

    /// Update the stack by itself (imageup --service, in place of the IMAGE
    /// team's image_daily_cron): `daily` (04:00 UTC), HH:MM (UTC) or `off`.
    /// Test servers only: imageup skips such runs on production
    /// [default: off]
    #[arg(long, value_name = "daily|HH:MM|off")]
    pub auto_update: Option<String>,

    /// Remove dangling Docker images (what newer pulls leave): daily,
    /// weekly, monthly or off [default: weekly]
    #[arg(long, value_name = "daily|weekly|monthly|off")]
    pub prune: Option<String>,
}

/// The IMAGE compose profiles a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageProfile {
    Production,
    Test,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Ec2Command {
    /// Create (or find) the GPU server NAME and wait until SSH answers
    Create(CreateArgs),
    /// List the servers image-provision manages
    List(ListArgs),
    /// Stop a server: its instance, volume, Elastic IP and DNS records stay
    Stop(StopArgs),
    /// Start a stopped server, wait for SSH and its stack, and verify it
    Start(StartArgs),
    /// Remove a server and everything made for it
    Destroy(DestroyArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct AwsArgs {
    /// AWS region [default: AWS_REGION, then the config file, then the profile's region]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config [default: AWS_PROFILE, then the config file]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ubuntu {
    #[value(name = "22.04")]
    Jammy,
    #[value(name = "24.04")]
    Noble,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CreateArgs {
    /// Server name: a DNS label (lowercase letters, digits, hyphens; at most 63)
    pub name: String,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// AMI id, or the name of an image `ami bake` made, to launch instead of
    /// the newest Canonical Ubuntu image. A baked image (known by its tags)
    /// already holds the driver, Docker, the toolkit, the clone and the
    /// pulled images: the host steps still read each step's facts, and find
    /// no driver to install, no reboot and the images pulled (only what
    /// moved on since the bake is fetched); the server gets its own host key, machine id
    /// and cloud-init first boot, IMDSv2 and an encrypted volume as always
    #[arg(long, env = "IMAGE_PROVISION_AMI", value_name = "IMAGE_NAME|ID")]
    pub ami: Option<String>,

    /// Ubuntu release whose newest Canonical image to use [default: 22.04]
    #[arg(long, env = "IMAGE_PROVISION_UBUNTU", value_name = "VERSION")]
    pub ubuntu: Option<Ubuntu>,

    /// `dlami`: AWS's Deep Learning Base OSS Nvidia Driver GPU AMI for that
    /// Ubuntu release (driver, Docker and container toolkit preinstalled: no
    /// driver install, no reboot); `ubuntu`: Canonical's [default: ubuntu]
    #[arg(long, env = "IMAGE_PROVISION_BASE_IMAGE", value_name = "ubuntu|dlami")]
    pub base_image: Option<String>,

    /// EC2 instance type [default: g5.xlarge]
    #[arg(long, env = "IMAGE_PROVISION_INSTANCE_TYPE", value_name = "TYPE")]
    pub instance_type: Option<String>,

    /// Root volume size in GiB, 8 to 65536 [default: 1000]
    #[arg(long, env = "IMAGE_PROVISION_VOLUME_SIZE", value_name = "GIB", allow_hyphen_values = true)]
    pub volume_size: Option<String>,

    /// gp3 root volume throughput in MiB/s, 125 to 1000 and at most
    /// --volume-iops / 4 [default: gp3's baseline, 125]
    #[arg(long, env = "IMAGE_PROVISION_VOLUME_THROUGHPUT", value_name = "MIBPS", allow_hyphen_values = true)]
    pub volume_throughput: Option<String>,

    /// gp3 root volume IOPS, 3000 to 16000 and at most 500 per GiB
    /// [default: gp3's baseline, 3000]
    #[arg(long, env = "IMAGE_PROVISION_VOLUME_IOPS", value_name = "IOPS", allow_hyphen_values = true)]
    pub volume_iops: Option<String>,

    /// Root volume type [default: gp3]
    #[arg(long, env = "IMAGE_PROVISION_VOLUME_TYPE", value_name = "TYPE")]
    pub volume_type: Option<String>,

    /// Launch into this subnet (and its VPC) instead of the default VPC
    #[arg(long, env = "IMAGE_PROVISION_SUBNET", value_name = "ID")]
    pub subnet: Option<String>,

    /// Encrypt the root volume with this KMS key (id, ARN, alias/NAME or
    /// its ARN) [default: the account's default EBS key; always encrypted]
    #[arg(long, env = "IMAGE_PROVISION_KMS_KEY", value_name = "KEY")]
    pub kms_key: Option<String>,

    /// Allow SSH only from this CIDR (repeatable) [default: 0.0.0.0/0 and ::/0]
    #[arg(long = "ssh-cidr", value_name = "CIDR")]
    pub ssh_cidr: Vec<String>,

    /// Use this private key (its .pub is imported) instead of generating one
    #[arg(long, env = "IMAGE_PROVISION_SSH_KEY", value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,

    /// The image's login user, for the host steps and the printed ssh command [default: ubuntu]
    #[arg(long, env = "IMAGE_PROVISION_SSH_USER", value_name = "USER")]
    pub ssh_user: Option<String>,

    /// Ask for a spot instance, falling back to on-demand
    #[arg(long)]
    pub spot: bool,

    /// With --spot: never fall back to on-demand
    #[arg(long)]
    pub spot_only: bool,

    /// Ephemeral server: power it off this long from now (e.g. 4h, 2d),
    /// armed from its first boot, and make that shutdown terminate it; tag
    /// the expiry for `destroy --expired`. On a server that exists: move its
    /// expiry, on its tags and on the host
    #[arg(long, env = "IMAGE_PROVISION_TTL", value_name = "DURATION", allow_hyphen_values = true)]
    pub ttl: Option<String>,

    /// How long to wait for the instance to run and answer SSH [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_READY_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub ready_timeout: Option<String>,

    /// Stop once the instance answers on SSH (do not run the host steps)
    #[arg(long)]
    pub no_bootstrap: bool,

    /// With --domain: no Elastic IP; the name points at the instance's own
    /// public IP, which changes when it stops and starts
    #[arg(long)]
    pub no_elastic_ip: bool,

    /// With --domain: make no Route 53 record for it (point its DNS at the
    /// server yourself)
    #[arg(long)]
    pub no_dns: bool,

    #[command(flatten)]
    pub steps: HostStepArgs,

    /// Print every AWS call with its parameters and make none
    #[arg(long)]
    pub dry_run: bool,

    /// One JSON object on stdout at the end (the server, where the time
    /// went, each host step) instead of the text summary
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ListArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// JSON for scripts instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StopArgs {
    /// The server to stop
    pub name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// How long to wait for the instance to stop [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_STOP_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub stop_timeout: Option<String>,
    /// JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StartArgs {
    /// The server to start
    pub name: String,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// How long to wait for the instance to run and answer SSH [default: 10m]
    #[arg(long, env = "IMAGE_PROVISION_READY_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub ready_timeout: Option<String>,

    /// How long to wait, once SSH answers, for the stack (brought up at boot)
    /// to pass verify [default: the config file's, else 5m]
    #[arg(long, env = "IMAGE_PROVISION_HEALTH_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,

    /// Do not wait for the stack or verify it: done once SSH answers
    #[arg(long)]
    pub no_verify: bool,

    /// Private key to log in with [default: the key image-provision made for the server]
    #[arg(long, env = "IMAGE_PROVISION_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// The image's login user [default: ubuntu]
    #[arg(long, env = "IMAGE_PROVISION_SSH_USER", value_name = "USER")]
    pub ssh_user: Option<String>,

    /// The site's host name, for verify [default: the config file's, else the one in the host's site override]
    #[arg(long, env = "IMAGE_PROVISION_DOMAIN", value_name = "HOST")]
    pub domain: Option<String>,

    /// The IMAGE working directory on the host [default: the config file's, else /var/docker/image]
    #[arg(long, env = "IMAGE_PROVISION_BASE_DIR", value_name = "PATH")]
    pub base_dir: Option<String>,

    /// A server without a GPU: verify checks no driver or nvidia runtime
    #[arg(long)]
    pub no_gpu: bool,

    /// A server bootstrapped with --no-stack: verify checks no stack
    #[arg(long)]
    pub no_stack: bool,

    /// Do not send the request that proves the stack after the other checks
    #[arg(long)]
    pub no_request: bool,

    /// JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DestroyArgs {
    /// The server to remove
    #[arg(required_unless_present = "expired", conflicts_with = "expired")]
    pub name: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Remove every managed server whose --ttl has passed
    #[arg(long)]
    pub expired: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Print every AWS call with its parameters and make none
    #[arg(long)]
    pub dry_run: bool,
    /// JSON report for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AmiCommand {
    /// Make an AMI of the healthy server NAME (driver, toolkit, Docker, the
    /// pulled images, the clone), its secrets held off the disk meanwhile
    Bake(BakeArgs),
    /// List the images `ami bake` made
    List(AmiListArgs),
    /// Deregister an image `ami bake` made and delete its snapshots
    Delete(AmiDeleteArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct BakeArgs {
    /// The server to bake: one `ec2 create` made, running and healthy
    pub server: String,

    /// The image's name: 3 to 128 lowercase letters, digits, dots, hyphens
    /// and underscores [default: SERVER-YYYYMMDD-HHMM, UTC]
    #[arg(long, value_name = "IMAGE_NAME", allow_hyphen_values = true)]
    pub name: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// How long to wait for the image to be available (EC2 copies the
    /// volume's written blocks to S3: minutes to an hour) [default: 60m]
    #[arg(long, env = "IMAGE_PROVISION_BAKE_TIMEOUT", value_name = "DURATION", allow_hyphen_values = true)]
    pub bake_timeout: Option<String>,

    /// Only put back what a bake cut short held aside; make no image
    #[arg(long)]
    pub restore: bool,

    /// Private key to log in with [default: the key image-provision made for the server]
    #[arg(long, env = "IMAGE_PROVISION_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// The image's login user [default: ubuntu]
    #[arg(long, env = "IMAGE_PROVISION_SSH_USER", value_name = "USER")]
    pub ssh_user: Option<String>,

    /// The IMAGE working directory on the host [default: the config file's, else /var/docker/image]
    #[arg(long, env = "IMAGE_PROVISION_BASE_DIR", value_name = "PATH")]
    pub base_dir: Option<String>,

    /// Print the AWS calls and the host's clean-up, in order; make none
    #[arg(long)]
    pub dry_run: bool,

    /// JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct AmiListArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// JSON for scripts instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct AmiDeleteArgs {
    /// The image to delete (a name `ami list` shows)
    pub name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// Print every AWS call with its parameters and make none
    #[arg(long)]
    pub dry_run: bool,
    /// JSON for scripts instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Servers NAME-1 to NAME-N, made and set up in parallel over the
    /// region's zones, behind an internet-facing Application Load Balancer
    /// (HTTPS with an ACM certificate for --domain, validated through Route
    /// 53; HTTP redirected to it), each registered once its stack answers.
    /// Takes `ec2 create`'s flags for every server; --domain is the fleet's.
    /// Run again, it converges: the missing servers made, the extra removed
    Create(FleetCreateArgs),
    /// Change fleet NAME's number of servers: new ones made, set up and
    /// registered once healthy; the highest-numbered removed (deregistered,
    /// drained, then destroyed). Takes `fleet create`'s flags
    Scale(FleetCreateArgs),
    /// Every fleet: its address, servers and their health at the balancer
    List(ListArgs),
    /// Remove fleet NAME: its servers, balancer, listeners, target group,
    /// certificate, DNS records and security groups, found by tags
    Destroy(FleetDestroyArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct FleetCreateArgs {
    /// With `ec2 create`'s flags; NAME is the fleet's (at most 28 characters)
    #[command(flatten)]
    pub create: CreateArgs,

    /// How many servers: NAME-1 to NAME-N (at most 20)
    #[arg(long, value_name = "N")]
    pub count: u32,

    /// How many servers are made and set up at once [default: 4]
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,

    /// How long a server being removed may finish the requests it has
    /// (the target group's deregistration delay) [default: 2m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub drain: Option<String>,

    /// How long the balancer may take to find a set-up server healthy [default: 5m]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub healthy_timeout: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct FleetDestroyArgs {
    /// The fleet to remove
    pub name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
    /// JSON report for scripts
    #[arg(long)]
    pub json: bool,
}
