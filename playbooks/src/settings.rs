//! What the person asked for, resolved and checked once (by the command
//! line): the host steps' [`Config`], the IMAGE steps' [`ImageConfig`], the
//! built-in defaults, and the paths on the host that follow from them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// NVIDIA's long-term support branch (maintained to August 2028; 570 was a
/// production branch, ended February 2026): it serves CUDA 13.0, so every
/// CUDA 12 image and the CUDA 13.0 ones. `update --upgrade-driver` moves a
/// server of a lower branch to it.
pub const DEFAULT_NVIDIA_DRIVER_BRANCH: &str = "580-server";
pub const DEFAULT_NVIDIA_REPO: &str = "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /";
pub const DEFAULT_NVIDIA_REPO_KEY: &str = "https://nvidia.github.io/libnvidia-container/gpgkey";
pub const DEFAULT_DOCKER_REPO: &str = "https://download.docker.com/linux/debian {codename} stable";
pub const DEFAULT_DOCKER_REPO_KEY: &str = "https://download.docker.com/linux/debian/gpg";

pub const DEFAULT_BASE_DIR: &str = "/var/docker/image";
pub const DEFAULT_REPO_URL: &str = "https://github.com/Shared-Reality-Lab/IMAGE-server.git";
/// imageup checks out and resets to main whatever was cloned.
pub const DEFAULT_REPO_BRANCH: &str = "main";
pub const DEFAULT_REGISTRY_TAG: &str = "latest";
pub const DEFAULT_IMAGEUP_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(300);

/// The SSH side's limit for a command with a time limit of its own inside
/// (a script's TIMEOUT): longer, so the script's own message, naming what
/// it waited for, comes first. Commands without one have the session's
/// (--command-timeout).
pub fn outer_limit(inner: Duration) -> Duration {
    inner + Duration::from_secs(5 * 60)
}

/// The SSH side's limit for a bring-up of the stack under `timeout`: the
/// wait for another bring-up's lock, then imageup (warm-up included), or
/// compose's pull, `up` and the warm-up, each within `timeout`.
pub fn bring_up_limit(timeout: Duration) -> Duration {
    outer_limit(timeout * 3)
}

/// How long Traefik's `compose up` may take: its image's pull (about 50 MB)
/// and its start.
pub const TRAEFIK_UP_LIMIT: Duration = Duration::from_secs(10 * 60);

/// Let's Encrypt's ACME directories: production (Traefik's default), and
/// staging, whose certificates browsers do not trust but whose rate limits
/// are far higher (for test and ephemeral servers).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where the IMAGE-server repository's credentials live on the host
/// (`--repo-credentials`): root's, 0600, outside the clone, in git's
/// credential store format. The clone's git config names this file (its
/// credential helper is `store --file=` it), never the token.
pub const REPO_CREDENTIALS: &str = "/etc/image-provision/git-credentials";

/// Traefik's own compose project, beside the stack's.
pub const TRAEFIK_DIR: &str = "/var/docker/traefik";
/// The site's compose override, in the IMAGE working directory.
pub const SITE_COMPOSE: &str = "site-docker-compose.yml";

/// Where the health check reaches Traefik: the host's own loopback
/// (Traefik publishes its ports on every address), with the domain resolved
/// to it (`curl --resolve DOMAIN:443:ADDR`, or `:80:` behind a load
/// balancer), so the check proves Traefik's route (and with TLS in Traefik
/// the certificate) for the domain, not public DNS or firewalls.
pub const DEFAULT_HTTPS_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The host steps' settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// False with --no-gpu: the NVIDIA steps are skipped.
    pub gpu: bool,
    /// Go on with a distribution we do not support.
    pub force_distro: bool,
    /// Ubuntu's server driver branch: `nvidia-driver-{branch}`.
    pub nvidia_driver_branch: String,
    /// NVIDIA container toolkit apt source, "URI SUITE [COMPONENT...]".
    pub nvidia_repo: String,
    pub nvidia_repo_key: String,
    /// Docker's apt source for Debian ({codename} is replaced).
    pub docker_repo: String,
    pub docker_repo_key: String,
    /// --registry-mirror: daemon.json's registry-mirrors, which Docker asks
    /// before Docker Hub (and for nothing else); None leaves daemon.json's
    /// as it is.
    pub registry_mirror: Option<String>,
    /// --env-file dockerhub.env: the Docker Hub account root's Docker logs
    /// in with, so pulls count against it and not the address's anonymous
    /// limit.
    pub dockerhub: Option<DockerHubLogin>,
    pub cloud_init_timeout: Duration,
    pub lock_timeout: Duration,
    pub reboot_timeout: Duration,
    /// How long one command may run without a time limit of its own
    /// (--command-timeout; see [`image_provision_remote::Cmd::time_limit`]).
    pub command_time_limit: Duration,
    /// Package lists younger than this are not fetched again.
    pub apt_lists_max_age: Duration,
    /// The IMAGE steps (layout, pull, traefik, stack, health); None with
    /// --no-stack: the run ends at the GPU check.
    pub image: Option<ImageConfig>,
    /// When the server powers itself off (the upkeep step's timer).
    pub expiry: Expiry,
    /// Whether the server stops itself once no request has reached the
    /// orchestrator for a while (the upkeep step's autostop timer).
    pub autostop: Autostop,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            gpu: true,
            force_distro: false,
            nvidia_driver_branch: DEFAULT_NVIDIA_DRIVER_BRANCH.into(),
            nvidia_repo: DEFAULT_NVIDIA_REPO.into(),
            nvidia_repo_key: DEFAULT_NVIDIA_REPO_KEY.into(),
            docker_repo: DEFAULT_DOCKER_REPO.into(),
            docker_repo_key: DEFAULT_DOCKER_REPO_KEY.into(),
            registry_mirror: None,
            dockerhub: None,
            cloud_init_timeout: Duration::from_secs(600),
            lock_timeout: Duration::from_secs(600),
            reboot_timeout: Duration::from_secs(600),
            command_time_limit: image_provision_remote::DEFAULT_COMMAND_TIME_LIMIT,
            apt_lists_max_age: Duration::from_secs(3600),
            image: Some(ImageConfig::default()),
            expiry: Expiry::Keep,
            autostop: Autostop::Keep,
        }
    }
}

/// A Docker Hub account (dockerhub.env's DOCKERHUB_USERNAME and
/// DOCKERHUB_TOKEN, a personal access token or the password). Debug never
/// shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct DockerHubLogin {
    pub username: String,
    pub token: String,
}

impl std::fmt::Debug for DockerHubLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerHubLogin").field("username", &self.username).field("token", &"<redacted>").finish()
    }
}

/// When the server powers itself off: an EC2 instance made with `ec2 create
/// --ttl` terminates then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Whatever the host has (none on a fresh host): `bootstrap` without
    /// --ttl, `ec2 create` on a server without an expires-at tag.
    #[default]
    Keep,
    /// At this time, RFC 3339 in UTC: --ttl, or the instance's expires-at tag.
    At(String),
    /// Never: `bootstrap --ttl off` removes the host's.
    Off,
}

impl Expiry {
    /// The time asked for, if one is.
    pub fn at(&self) -> Option<&str> {
        match self {
            Expiry::At(at) => Some(at),
            Expiry::Keep | Expiry::Off => None,
        }
    }
}

/// The idle stop (`--autostop`): the server powers itself off once no
/// request has reached the IMAGE orchestrator for a while. An instance made
/// or given `ec2 create --autostop` stops (not terminates) when it powers
/// itself off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Autostop {
    /// Whatever the host has (none on a fresh host): no --autostop.
    #[default]
    Keep,
    /// After this long without a request (whole seconds).
    After(Duration),
    /// Never: `--autostop off` removes the host's.
    Off,
}

/// `ttl` from now, as the expiry's RFC 3339 time in UTC, to the second.
pub fn expires_after(ttl: Duration) -> Result<String, String> {
    let too_long = || format!("--ttl of {} s is too long", ttl.as_secs());
    let span = jiff::SignedDuration::try_from(ttl).map_err(|_| too_long())?;
    let at = jiff::Timestamp::now().checked_add(span).map_err(|_| too_long())?;
    Ok(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The IMAGE compose profile a server runs (COMPOSE_PROFILES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Production,
    Test,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Production => "production",
            Profile::Test => "test",
        }
    }
}

/// The IMAGE steps' settings.
/// The public Overpass API, as IMAGE-server's ec2-docker-compose.yml
/// points openstreetmap at it.
pub const DEFAULT_OVERPASS_URL: &str = "https://overpass-api.de/api/interpreter";
/// The public Nominatim, as IMAGE-server's prod-docker-compose.yml gives
/// nominatim-preprocessor its fallback.
pub const DEFAULT_NOMINATIM_FALLBACK: &str = "https://nominatim.openstreetmap.org";

/// The LLM several IMAGE services call (they exit at start-up without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Llm {
    /// An OpenAI-compatible server named by the supplied config/llm.env.
    EnvFile,
    /// None (--no-llm): config/llm.env stays empty and the services that
    /// need it are left out of what must run.
    Without,
    /// A runtime on this server's GPU (--llm local: vLLM; --llm ollama), in
    /// its own compose project; config/llm.env written to point at it.
    Local,
}

impl Llm {
    /// The stack has an LLM to call.
    pub fn present(self) -> bool {
        self != Llm::Without
    }
}

/// What serves the local LLM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// vLLM's OpenAI-compatible server (`--llm local`), as the IMAGE team runs it.
    #[default]
    Vllm,
    /// Ollama (`--llm ollama`), the guide's alternative.
    Ollama,
}

/// The local LLM's settings (with [`Llm::Local`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLlm {
    pub runtime: Runtime,
    /// The model asked for; None: the largest that fits the GPU.
    pub model: Option<String>,
    /// How long the first start may take (the weights' download).
    pub timeout: Duration,
}

pub const DEFAULT_LLM_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for LocalLlm {
    fn default() -> Self {
        LocalLlm { runtime: Runtime::Vllm, model: None, timeout: DEFAULT_LLM_TIMEOUT }
    }
}

/// The local LLM's web UI (`--llm-webui HOST`): Open WebUI behind Traefik
/// on its own host name, its first admin made by image-provision.
#[derive(Clone, PartialEq, Eq)]
pub struct WebUi {
    /// Its host name (its own router and certificate).
    pub host: String,
    /// The admin's password, generated and kept by the command line (its
    /// local state); it reaches the host only in an upload (SSH stdin).
    pub admin_password: String,
}

impl WebUi {
    /// The first admin's login: an address on the UI's own host name, so
    /// no person's e-mail is needed.
    pub fn admin_email(&self) -> String {
        format!("admin@{}", self.host)
    }
}

/// Never the password, whoever prints the settings.
impl std::fmt::Debug for WebUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebUi {{ host: {:?}, admin_password: <not shown> }}", self.host)
    }
}

/// What runs on the server by itself once bootstrap is done (the upkeep
/// step's units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upkeep {
    /// The stack's containers started, and warmed up, at every boot.
    pub start_at_boot: bool,
    /// IMAGE's scripts/healthcheck this often; None: not run.
    pub healthcheck_every: Option<Duration>,
    /// imageup --service at these times (a systemd calendar event); None:
    /// never (production's default: imageup skips such runs there).
    pub auto_update: Option<String>,
    /// Dangling images removed at these times (a calendar event); None: never.
    pub prune: Option<String>,
}

pub const DEFAULT_HEALTHCHECK_EVERY: Duration = Duration::from_secs(600);
pub const DEFAULT_PRUNE: &str = "weekly";

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            start_at_boot: true,
            healthcheck_every: Some(DEFAULT_HEALTHCHECK_EVERY),
            auto_update: None,
            prune: Some(DEFAULT_PRUNE.into()),
        }
    }
}

/// Before Traefik asks for a certificate: the domain must resolve to the
/// server's public address, within a time limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsCheck {
    /// The server's public IPv4 address ([`ImageConfig::check_dns_for`]
    /// fills it in once the command knows it).
    pub address: String,
    pub timeout: Duration,
}

pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(600);

/// The repository's credentials on the host ([`REPO_CREDENTIALS`]), for a
/// private IMAGE-server.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RepoCredentials {
    /// Whatever the host has (none on a fresh host): a run without
    /// `--repo-credentials`.
    #[default]
    Keep,
    /// This content, one line of git's credential store
    /// (`https://USER:TOKEN@HOST`), already checked and written as git's
    /// store writes it back, so git's own rewrite leaves it the same.
    Set(Vec<u8>),
    /// None: `--repo-credentials none` removes the host's.
    Remove,
}

/// Never the token, whoever prints the settings.
impl std::fmt::Debug for RepoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoCredentials::Keep => f.write_str("Keep"),
            RepoCredentials::Set(line) => write!(f, "Set(<{} bytes, not shown>)", line.len()),
            RepoCredentials::Remove => f.write_str("Remove"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ImageConfig {
    pub base_dir: String,
    /// HTTPS (or, for tests, file://) URL of IMAGE-server.
    pub repo_url: String,
    pub repo_branch: String,
    /// Credentials for a private repository, kept on the host.
    pub repo_credentials: RepoCredentials,
    /// The server's public host name: Traefik routes it, Let's Encrypt
    /// certifies it (behind a load balancer, the balancer's certificate
    /// does). None: no Traefik routes and no HTTPS check.
    pub domain: Option<String>,
    pub acme_email: Option<String>,
    /// The ACME directory Traefik's certresolver asks for certificates:
    /// [`LETS_ENCRYPT`], [`LETS_ENCRYPT_STAGING`], or another (a test
    /// server).
    pub acme_server: String,
    pub registry_tag: String,
    pub profile: Profile,
    pub pii_logging: bool,
    /// Supplied env files: (name under config/, content), already checked.
    pub env_files: Vec<(String, Vec<u8>)>,
    /// Where the LLM the stack calls comes from.
    pub llm: Llm,
    /// With [`Llm::Local`]: its model and time limit.
    pub local_llm: LocalLlm,
    /// With a local LLM and a domain: its web UI.
    pub webui: Option<WebUi>,
    /// Where the site's TLS ends: in this host's Traefik (its own
    /// certificate), or in a load balancer in front of it.
    pub tls_end: TlsEnd,
    /// The Overpass API openstreetmap asks (its SERVERS): the compose
    /// file's default is McGill's own server.
    pub overpass_url: String,
    /// The Nominatim server nominatim-preprocessor falls back to when its
    /// own (McGill's) does not answer.
    pub nominatim_fallback: String,
    /// Run scripts/imageup (else plain compose pull and up).
    pub imageup: bool,
    pub imageup_timeout: Duration,
    /// How long the health step waits for the orchestrator (and HTTPS).
    pub health_timeout: Duration,
    /// GET https://DOMAIN/health (http:// behind a load balancer) from the
    /// host, through its own Traefik at [`DEFAULT_HTTPS_ADDR`] (off only in
    /// tests without real Traefik).
    pub https_check: bool,
    pub upkeep: Upkeep,
    /// With a domain: wait for its DNS before Traefik starts; None with
    /// --no-dns-check, or while the address is not known.
    pub dns_check: Option<DnsCheck>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            base_dir: DEFAULT_BASE_DIR.into(),
            repo_url: DEFAULT_REPO_URL.into(),
            repo_branch: DEFAULT_REPO_BRANCH.into(),
            repo_credentials: RepoCredentials::Keep,
            domain: None,
            acme_email: None,
            acme_server: LETS_ENCRYPT.into(),
            registry_tag: DEFAULT_REGISTRY_TAG.into(),
            profile: Profile::Production,
            pii_logging: false,
            env_files: Vec::new(),
            llm: Llm::Without,
            local_llm: LocalLlm::default(),
            webui: None,
            tls_end: TlsEnd::Traefik,
            overpass_url: DEFAULT_OVERPASS_URL.into(),
            nominatim_fallback: DEFAULT_NOMINATIM_FALLBACK.into(),
            imageup: true,
            imageup_timeout: DEFAULT_IMAGEUP_TIMEOUT,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            https_check: true,
            upkeep: Upkeep::default(),
            dns_check: None,
        }
    }
}

impl ImageConfig {
    pub fn clone_dir(&self) -> String {
        format!("{}/IMAGE-server", self.base_dir)
    }
    pub fn env_path(&self) -> String {
        format!("{}/.env", self.base_dir)
    }
    pub fn site_path(&self) -> String {
        format!("{}/{SITE_COMPOSE}", self.base_dir)
    }
    pub fn config_path(&self, name: &str) -> String {
        format!("{}/config/{name}", self.clone_dir())
    }
    /// Where IMAGE's scripts/healthcheck logs (its config/healthcheck.env's
    /// LOG_DIR).
    pub fn healthcheck_log_dir(&self) -> String {
        format!("{}/logs/healthcheck", self.base_dir)
    }
    /// The DNS check waits for `address`, the server's public IPv4 address
    /// as the command that reaches it knows it; with none known, no check.
    pub fn check_dns_for(&mut self, address: Option<String>) {
        match (address, &mut self.dns_check) {
            (Some(a), Some(check)) => check.address = a,
            _ => self.dns_check = None,
        }
    }
    /// The log directory of the IMAGE team's image_daily_cron.
    pub fn daily_log_dir(&self) -> String {
        format!("{}/logs/daily", self.base_dir)
    }
    pub fn traefik_path(&self) -> String {
        format!("{TRAEFIK_DIR}/docker-compose.yml")
    }
    /// The extension's custom server URL, with a domain.
    pub fn extension_url(&self) -> Option<String> {
        self.domain.as_deref().map(extension_url)
    }
    /// The domain the HTTPS health check asks for, when it runs.
    pub fn checked_domain(&self) -> Option<&str> {
        self.domain.as_deref().filter(|_| self.https_check)
    }
    /// The site the health check asks through this host's Traefik, when it
    /// runs: the domain and where its TLS ends.
    pub fn checked_site(&self) -> Option<Site> {
        self.checked_domain().map(|domain| Site { domain: domain.to_string(), tls_end: self.tls_end })
    }
    /// The stack's health URL through Traefik, checked when there is a domain
    /// (at [`DEFAULT_HTTPS_ADDR`], not wherever DNS points).
    pub fn health_url(&self) -> Option<String> {
        self.checked_site().map(|s| s.health_url())
    }
}

/// Where the site's TLS ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsEnd {
    /// In this host's Traefik: it publishes 80 and 443, redirects 80 to
    /// 443, and gets the domain's certificate from the ACME server.
    #[default]
    Traefik,
    /// In a load balancer in front of the host (an AWS Application Load
    /// Balancer with its own certificate): it forwards plain HTTP to port
    /// 80, where Traefik routes the site with no certificate of its own.
    Balancer,
}

impl TlsEnd {
    /// As the health facts take and report it (TLS_END, health.tls_end).
    pub fn name(self) -> &'static str {
        match self {
            TlsEnd::Traefik => "traefik",
            TlsEnd::Balancer => "balancer",
        }
    }
    pub fn parse(name: &str) -> Option<TlsEnd> {
        match name {
            "traefik" => Some(TlsEnd::Traefik),
            "balancer" => Some(TlsEnd::Balancer),
            _ => None,
        }
    }
    /// The scheme this host's Traefik serves the site on: behind the
    /// balancer, plain HTTP (the balancer's HTTPS ends before it).
    pub fn scheme(self) -> &'static str {
        match self {
            TlsEnd::Traefik => "https",
            TlsEnd::Balancer => "http",
        }
    }
}

/// The site as this host's Traefik serves it: the host name it routes and
/// where its TLS ends, which decides the scheme the host's own checks use
/// (clients always reach the site over HTTPS: [`extension_url`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub domain: String,
    pub tls_end: TlsEnd,
}

impl Site {
    /// `SCHEME://DOMAIN/health`: what the health check asks for.
    pub fn health_url(&self) -> String {
        format!("{}://{}/health", self.tls_end.scheme(), self.domain)
    }
    /// `SCHEME://DOMAIN/render/preprocess`: where the request that proves
    /// the stack goes through the host's Traefik.
    pub fn preprocess_url(&self) -> String {
        format!("{}://{}{PREPROCESS_PATH}", self.tls_end.scheme(), self.domain)
    }
}

#[cfg(test)]
impl ImageConfig {
    /// The defaults with a site (the steps' unit tests).
    pub fn with_site() -> ImageConfig {
        ImageConfig {
            domain: Some("image.example.org".into()),
            acme_email: Some("ops@example.org".into()),
            ..ImageConfig::default()
        }
    }
    /// The defaults with a site behind a load balancer (no ACME e-mail: no
    /// certificate of its own).
    pub fn behind_balancer() -> ImageConfig {
        ImageConfig { domain: Some("image.example.org".into()), tls_end: TlsEnd::Balancer, ..ImageConfig::default() }
    }
}

/// What a person calls an ACME directory.
pub fn acme_server_name(url: &str) -> &str {
    match url {
        LETS_ENCRYPT => "Let's Encrypt",
        LETS_ENCRYPT_STAGING => "Let's Encrypt staging (certificates browsers do not trust)",
        other => other,
    }
}

/// `https://DOMAIN/`: the browser extension's custom server URL (with the
/// trailing slash: it POSTs to `<url>render`).
pub fn extension_url(domain: &str) -> String {
    format!("https://{domain}/")
}

/// The orchestrator's route that runs the preprocessors and answers with
/// their outputs (POST /render goes on to the handlers).
pub const PREPROCESS_PATH: &str = "/render/preprocess";
