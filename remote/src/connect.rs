//! Reaching a host: the options, one attempt at TCP connect, key exchange
//! with the host key checked against known_hosts, and authentication with a
//! key file or the ssh-agent. Retrying attempts is `Session::connect`'s job.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tracing::{debug, info};

use crate::error::{Error, HostKeyError, Result};
use crate::identity::Identity;
use crate::known_hosts::{self, Decision, HostKeyPolicy, KnownHosts};
use crate::target::Target;

/// Everything needed to reach a host.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub target: Target,
    pub identity: Identity,
    /// The known_hosts file to check and record host keys in.
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    /// Per attempt: TCP connect, key exchange and authentication.
    pub connect_timeout: Duration,
    /// Further attempts after a transient failure (refused, timed out,
    /// reset). Auth and host-key failures are never retried.
    pub retries: usize,
    /// First pause between attempts; it doubles (with jitter) up to
    /// `retry_max_delay`.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// Ping the server after this much silence...
    pub keepalive_interval: Duration,
    /// ...and give up on it after this many unanswered pings. A dead peer is
    /// noticed within about `keepalive_interval * (keepalive_max + 1)`.
    /// There is deliberately no inactivity limit: a command may be silent
    /// for as long as it likes while the server answers pings.
    pub keepalive_max: usize,
    /// Commands running at once on this connection; more wait their turn.
    /// OpenSSH refuses more than `MaxSessions` (10 by default) channels.
    pub max_channels: usize,
    /// How long a command without a limit of its own ([`crate::Cmd::time_limit`])
    /// may run: a host that stops answering is noticed by the keepalive,
    /// but one whose command hangs only by this.
    pub command_time_limit: Duration,
}

/// [`ConnectOptions::command_time_limit`]'s default: longer than any step's
/// own waits need (each has its limit inside), short enough that a hung
/// command ends a run the same hour.
pub const DEFAULT_COMMAND_TIME_LIMIT: Duration = Duration::from_secs(30 * 60);

impl ConnectOptions {
    /// Defaults: the ssh-agent, strict host keys, 15 s connect timeout, 5
    /// retries from 0.5 s to 5 s, keepalive every 3 s (dead after 3 missed).
    pub fn new(target: Target, known_hosts: impl Into<PathBuf>) -> Self {
        ConnectOptions {
            target,
            identity: Identity::Agent,
            known_hosts: known_hosts.into(),
            policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(15),
            retries: 5,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(3),
            keepalive_max: 3,
            max_channels: 8,
            command_time_limit: DEFAULT_COMMAND_TIME_LIMIT,
        }
    }

    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    pub fn policy(mut self, policy: HostKeyPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// russh's callbacks: checks the host key against known_hosts and the
/// policy, and remembers a key to record once we are authenticated.
pub(crate) struct Client {
    name: String,
    known_hosts: KnownHosts,
    policy: HostKeyPolicy,
    to_record: Arc<Mutex<Option<(PublicKey, bool)>>>,
}

#[derive(Debug)]
pub(crate) enum ClientError {
    Ssh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Ssh(e)
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> std::result::Result<bool, Self::Error> {
        let key = key.public_key();
        match self.known_hosts.decide(&self.name, &key, &self.policy) {
            Decision::Accept => Ok(true),
            Decision::Record { replace } => {
                *self.to_record.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, replace));
                Ok(true)
            }
            Decision::Reject(e) => Err(ClientError::HostKey(e)),
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> std::result::Result<(), Self::Error> {
        debug!(target: "remote", host = %self.name, "banner: {}", banner.trim_end());
        Ok(())
    }
}

/// One attempt: TCP connect within `tcp_timeout`, then key exchange, host
/// key check and authentication within `timeout`.
pub(crate) async fn connect_once(
    opts: &ConnectOptions,
    tcp_timeout: Duration,
    timeout: Duration,
) -> Result<Handle<Client>> {
    let target = &opts.target;
    let address = target.address();
    let stream = tokio::time::timeout(tcp_timeout, tokio::net::TcpStream::connect((target.host.as_str(), target.port)))
        .await
        .map_err(|_| Error::ConnectTimeout { address: address.clone(), timeout: tcp_timeout })?
        .map_err(|source| Error::Connect { address: address.clone(), source })?;
    // Commands are small request/response exchanges: do not let Nagle
    // hold them back.
    let _ = stream.set_nodelay(true);

    // Session::connect loads key files up front; this covers other callers.
    let identity = opts.identity.clone().load()?;
    let name = target.known_hosts_name();
    let to_record = Arc::new(Mutex::new(None));
    let client = Client {
        name: name.clone(),
        known_hosts: KnownHosts::load(&opts.known_hosts)?,
        policy: opts.policy.clone(),
        to_record: to_record.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(opts.keepalive_interval),
        keepalive_max: opts.keepalive_max,
        // Never: a silent command (a big download, a driver build) is not a
        // dead connection; keepalive tells the two apart.
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    });
    let handshake = async {
        let mut handle = client::connect_stream(config, stream, client).await.map_err(|e| match e {
            ClientError::HostKey(h) => Error::HostKey(h),
            ClientError::Ssh(source) => Error::Ssh { host: target.to_string(), doing: "connecting", source },
        })?;
        authenticate(&mut handle, target, &identity).await?;
        Ok::<_, Error>(handle)
    };
    let handle = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::ConnectTimeout { address: address.clone(), timeout })??;
    let pending = to_record.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((key, replace)) = pending {
        known_hosts::record(&opts.known_hosts, &name, &key, replace)?;
        info!(target: "remote", host = %target, key = %known_hosts::describe(&key),
            "recorded host key in {}", opts.known_hosts.display());
    }
    Ok(handle)
}

/// The signature hash to use with an RSA key (the server's best; None for
/// other key types, whose algorithm fixes it).
async fn rsa_hash(
    handle: &Handle<Client>,
    algorithm: russh::keys::Algorithm,
) -> std::result::Result<Option<russh::keys::HashAlg>, russh::Error> {
    if algorithm.is_rsa() { Ok(handle.best_supported_rsa_hash().await?.flatten()) } else { Ok(None) }
}

async fn authenticate(handle: &mut Handle<Client>, target: &Target, identity: &Identity) -> Result<()> {
    let ssh = |source| Error::Ssh { host: target.to_string(), doing: "authenticating", source };
    match identity {
        Identity::Key { path, key } => {
            let hash = rsa_hash(handle, key.algorithm()).await.map_err(ssh)?;
            let r = handle
                .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(ssh)?;
            if r.success() {
                return Ok(());
            }
            Err(Error::AuthFailed {
                target: target.to_string(),
                user: target.user.clone(),
                method: format!("key {} ({})", path.display(), known_hosts::describe(key.public_key())),
            })
        }
        Identity::KeyFile(path) => Err(Error::KeyRead {
            path: path.clone(),
            source: std::io::Error::other("the key was not loaded before connecting"),
        }),
        Identity::Agent | Identity::AgentSocket(_) => {
            let socket = match identity {
                Identity::AgentSocket(p) => p.display().to_string(),
                _ => std::env::var("SSH_AUTH_SOCK").ok().filter(|s| !s.is_empty()).ok_or(Error::NoAgent)?,
            };
            let agent_err = |source| Error::Agent { socket: socket.clone(), source };
            let mut agent = AgentClient::connect_uds(&socket).await.map_err(agent_err)?;
            if let Some(binding) = handle.agent_session_binding().cloned() {
                // Lets destination-constrained keys work; older agents refuse
                // the extension, which is harmless.
                let _ = agent.bind_session(&binding, false).await;
            }
            let ids = agent.request_identities().await.map_err(agent_err)?;
            if ids.is_empty() {
                return Err(Error::AgentEmpty { socket });
            }
            let mut tried = Vec::new();
            for id in ids {
                let AgentIdentity::PublicKey { key, .. } = id else {
                    continue;
                };
                let hash = rsa_hash(handle, key.algorithm()).await.map_err(ssh)?;
                tried.push(known_hosts::describe(&key));
                match handle.authenticate_publickey_with(&target.user, key, hash, &mut agent).await {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => {}
                    Err(e) => debug!(target: "remote", host = %target, "agent could not sign: {e}"),
                }
            }
            Err(Error::AuthFailed {
                target: target.to_string(),
                user: target.user.clone(),
                method: format!("ssh-agent keys ({})", tried.join(", ")),
            })
        }
    }
}
