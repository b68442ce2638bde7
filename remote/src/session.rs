//! One SSH connection to one host: connect (with retries), run commands
//! (many at once), upload files.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::cmd::Cmd;
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
}

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

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by this signal (`TERM`, `KILL`, ...).
    Signal(String),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn code(&self) -> Option<u32> {
        match self.status {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }

    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Sizes only: output may hold secrets.
impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout_len", &self.stdout.len())
            .field("stderr_len", &self.stderr.len())
            .finish()
    }
}

/// An authenticated connection to one host. Share it (`Arc<Session>`) to run
/// commands concurrently; it is `Send + Sync`.
pub struct Session {
    handle: Handle<Client>,
    opts: ConnectOptions,
    channels: Arc<Semaphore>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.opts.target)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects and authenticates, retrying transient failures with
    /// exponential backoff and jitter.
    pub async fn connect(mut opts: ConnectOptions) -> Result<Session> {
        // Read (and maybe decrypt) the key once, not once per attempt.
        opts.identity = opts.identity.load()?;
        let attempts = AtomicUsize::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(opts.retry_min_delay)
            .with_max_delay(opts.retry_max_delay)
            .with_jitter()
            .with_max_times(opts.retries);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            connect_once(&opts, opts.connect_timeout, opts.connect_timeout)
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(Error::is_transient)
        .notify(|e, pause| {
            warn!(target: "remote", host = %opts.target, "connect failed ({e}); retrying in {pause:.1?}")
        })
        .await;
        let handle = match result {
            Ok(h) => h,
            Err(e) if e.is_transient() && attempts.load(Ordering::Relaxed) > 1 => {
                return Err(Error::Unreachable {
                    address: opts.target.address(),
                    attempts: attempts.load(Ordering::Relaxed),
                    last: Box::new(e),
                });
            }
            Err(e) => return Err(e),
        };
        info!(target: "remote", host = %opts.target, "connected");
        Ok(Session::from_handle(handle, opts))
    }

    fn from_handle(handle: Handle<Client>, opts: ConnectOptions) -> Session {
        Session {
            handle,
            channels: Arc::new(Semaphore::new(opts.max_channels.max(1))),
            opts,
        }
    }

    pub fn target(&self) -> &Target {
        &self.opts.target
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// True once the connection is gone (closed, lost, or dead peer).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn user_is_root(&self) -> bool {
        self.opts.target.is_root()
    }

    fn host(&self) -> String {
        self.opts.target.to_string()
    }

    /// Runs `cmd`; an exit code it does not accept is
    /// [`Error::CommandFailed`] (or [`Error::SudoNeedsPassword`] when that is
    /// why).
    pub async fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run(cmd).await?;
        self.check(cmd, out)
    }

    /// Runs `cmd` and returns how it ended, whatever the exit code. Still an
    /// error if sudo wanted a password or the connection was lost.
    pub async fn exec_unchecked(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run(cmd).await?;
        if let Some(e) = self.sudo_error(cmd, &out) {
            return Err(e);
        }
        Ok(out)
    }

    pub(crate) fn check(&self, cmd: &Cmd, out: Output) -> Result<Output> {
        if let Some(e) = self.sudo_error(cmd, &out) {
            return Err(e);
        }
        match out.status {
            ExitStatus::Code(c) if cmd.accepts(c) => Ok(out),
            _ => Err(Error::CommandFailed {
                host: self.host(),
                command: cmd.redacted(self.user_is_root()),
                status: out.status.clone(),
                stderr_tail: if cmd.is_quiet() {
                    String::new()
                } else {
                    tail(&out.stderr, 20, 4096)
                },
            }),
        }
    }

    /// `sudo -n` says "sudo: a password is required" and exits 1 when it
    /// would have to prompt.
    fn sudo_error(&self, cmd: &Cmd, out: &Output) -> Option<Error> {
        if !cmd.is_sudo() || self.user_is_root() || out.status != ExitStatus::Code(1) {
            return None;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let sudo_says = |s: &str| {
            stderr
                .lines()
                .any(|l| l.starts_with("sudo:") && l.contains(s))
        };
        let user = self.opts.target.user.clone();
        let host = self.opts.target.host.clone();
        if sudo_says("password is required") || sudo_says("a terminal is required") {
            Some(Error::SudoNeedsPassword { user, host })
        } else if sudo_says("not in the sudoers file")
            || sudo_says("is not allowed to")
            || sudo_says("may not run sudo")
        {
            Some(Error::SudoNotPermitted { user, host })
        } else {
            None
        }
    }

    /// Opens a channel, runs the command and drains the channel until it
    /// closes. OpenSSH sends EOF before the exit status and output may follow
    /// the status, so neither ends the loop; only CLOSE (or the connection
    /// going away) does.
    pub(crate) async fn run(&self, cmd: &Cmd) -> Result<Output> {
        let _permit = self
            .channels
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let shown = cmd.redacted(self.user_is_root());
        let host = self.host();
        let lost = || Error::ConnectionLost {
            host: host.clone(),
            command: shown.clone(),
        };
        debug!(target: "remote", host = %host, command = %shown, "exec");

        // sshd refuses a session beyond MaxSessions, and it frees a slot only
        // some time after the channel closed on our side: a refusal while we
        // are at our own limit is "wait a moment", not a failure.
        let mut refusals = 0u32;
        let channel = loop {
            match self.handle.channel_open_session().await {
                Ok(c) => break c,
                Err(russh::Error::Disconnect | russh::Error::SendError) => return Err(lost()),
                Err(_) if self.handle.is_closed() => return Err(lost()),
                Err(russh::Error::ChannelOpenFailure(reason)) if refusals < 10 => {
                    refusals += 1;
                    let pause = Duration::from_millis(20 << refusals.min(6));
                    debug!(target: "remote", host = %host, "sshd refused a channel ({reason:?}); retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(source) => {
                    return Err(Error::Ssh {
                        host,
                        doing: "opening a channel",
                        source,
                    });
                }
            }
        };
        if let Err(source) = channel.exec(true, cmd.render(self.user_is_root())).await {
            return Err(if self.handle.is_closed() {
                lost()
            } else {
                Error::Ssh {
                    host,
                    doing: "starting a command",
                    source,
                }
            });
        }
        let (mut rx, tx) = channel.split();

        // Feed stdin while reading: a command that prints a lot before
        // reading all its input would otherwise deadlock on the window. The
        // writer is dropped when the channel closes, since a command that
        // exits without reading leaves it waiting for window space forever.
        let stdin = cmd.stdin_to_send();
        let writer = async move {
            if let Some(bytes) = stdin {
                tx.data_bytes(bytes).await?;
            }
            // EOF even with no stdin, so a command that reads it (a prompt)
            // gets end-of-file instead of waiting forever.
            tx.eof().await?;
            Ok::<_, russh::Error>(tx)
        };
        tokio::pin!(writer);
        let mut writer_done = false;
        let mut _tx_keepalive = None;

        let quiet = cmd.is_quiet();
        let mut stdout = Stream::new("stdout", quiet);
        let mut stderr = Stream::new("stderr", quiet);
        let mut status = None;
        let mut closed = false;
        loop {
            tokio::select! {
                r = &mut writer, if !writer_done => {
                    writer_done = true;
                    match r {
                        Ok(tx) => _tx_keepalive = Some(tx),
                        // The reader sees why (close or lost connection).
                        Err(e) => debug!(target: "remote", host = %host, "stdin not fully sent: {e}"),
                    }
                }
                msg = rx.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => stdout.feed(&data, &host),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.feed(&data, &host),
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(ExitStatus::Code(exit_status));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        status = Some(ExitStatus::Signal(signal_name_of(&signal_name)));
                    }
                    Some(ChannelMsg::Failure) => {
                        return Err(Error::Ssh {
                            host,
                            doing: "starting a command (the server refused the exec request)",
                            source: russh::Error::RequestDenied,
                        });
                    }
                    Some(ChannelMsg::Close) => {
                        closed = true;
                        break;
                    }
                    Some(_) => {}
                    // The session dropped the channel without a CLOSE: the
                    // connection is gone.
                    None => break,
                }
            }
        }
        stdout.finish(&host);
        stderr.finish(&host);
        let status = match status {
            Some(s) => s,
            None if !closed || self.handle.is_closed() => return Err(lost()),
            None => {
                return Err(Error::NoExitStatus {
                    host,
                    command: shown,
                });
            }
        };
        debug!(target: "remote", host = %host, command = %shown, %status, "done");
        Ok(Output {
            status,
            stdout: stdout.buf,
            stderr: stderr.buf,
        })
    }

    /// Writes `bytes` to `path` (absolute) with `mode` and, if given,
    /// `owner` (`user` or `user:group`), atomically: the content goes to a
    /// temporary file beside `path` that already has its owner and mode, and
    /// is then renamed over `path`. Runs as root (`sudo -n` for other
    /// users); missing parent directories are created (0755).
    ///
    /// The content travels on the command's stdin, never on a command line,
    /// and is never logged; for a `secret` only the path, size and mode are.
    pub async fn upload(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
        secret: bool,
    ) -> Result<()> {
        let bad = |reason: String| Error::BadUpload {
            host: self.host(),
            path: path.to_string(),
            reason,
        };
        if !path.starts_with('/') || path.ends_with('/') {
            return Err(bad("the path must be absolute and name a file".into()));
        }
        if mode > 0o7777 {
            return Err(bad(format!("mode {mode:o} is not a file mode")));
        }
        if secret && mode & 0o077 != 0 {
            warn!(target: "remote", host = %self.opts.target, path, "secret uploaded with mode {mode:04o}, readable by others");
        }
        info!(target: "remote", host = %self.opts.target, path, size = bytes.len(), mode = %format!("{mode:04o}"), secret, "upload");
        // Fixed text; the inputs are positional parameters, so nothing the
        // caller passes is parsed as shell.
        const SCRIPT: &str = r#"set -eu
path=$1 mode=$2 owner=$3
dir=$(dirname -- "$path")
mkdir -p -- "$dir"
umask 077
tmp=$(mktemp -- "$dir/.${path##*/}.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
chmod -- "$mode" "$tmp"
cat > "$tmp"
mv -f -- "$tmp" "$path"
trap - EXIT
"#;
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("upload")
            .arg(path)
            .arg(format!("{mode:o}"))
            .arg(owner.unwrap_or(""))
            .sudo()
            .stdin(bytes.to_vec())
            .quiet()
            .shown_as(format!(
                "upload to {path} ({} bytes, mode {mode:04o})",
                bytes.len()
            ));
        let out = self.run(&cmd).await?;
        if let Some(e) = self.sudo_error(&cmd, &out) {
            return Err(e);
        }
        if out.status != ExitStatus::Code(0) {
            return Err(bad(format!(
                "{}: {}",
                out.status,
                tail(&out.stderr, 5, 1024).trim_end()
            )));
        }
        Ok(())
    }

    /// Says goodbye to the server; commands still running fail with
    /// `ConnectionLost`. Takes `&self` so a shared (`Arc`) session can be closed.
    pub async fn close(&self) -> Result<()> {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        Ok(())
    }

    /// Connects again with the same options (after `ConnectionLost`, say),
    /// retrying as [`Session::connect`] does.
    pub async fn reconnect(&mut self) -> Result<()> {
        let fresh = Session::connect(self.opts.clone()).await?;
        self.replace_handle(fresh.handle);
        Ok(())
    }

    /// Swaps in a new connection (after a reboot).
    pub(crate) fn replace_handle(&mut self, handle: Handle<Client>) {
        let old = std::mem::replace(&mut self.handle, handle);
        drop(old);
    }

    pub(crate) async fn disconnect_quietly(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn signal_name_of(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The last `lines` lines of `bytes`, at most `max` bytes.
fn tail(bytes: &[u8], lines: usize, max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max)..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One output stream: keeps every byte and logs complete lines as they
/// arrive. Only new bytes are scanned, so large outputs cost linear time.
struct Stream {
    name: &'static str,
    buf: Vec<u8>,
    line_start: usize,
    quiet: bool,
}

/// Longest line logged as is; longer ones are cut (the bytes are all kept).
const MAX_LOGGED_LINE: usize = 4096;

impl Stream {
    fn new(name: &'static str, quiet: bool) -> Self {
        Stream {
            name,
            buf: Vec::new(),
            line_start: 0,
            quiet,
        }
    }

    fn feed(&mut self, data: &[u8], host: &str) {
        let scan_from = self.buf.len();
        self.buf.extend_from_slice(data);
        if self.quiet || !tracing::enabled!(target: "remote", tracing::Level::DEBUG) {
            self.line_start = self.buf.len();
            return;
        }
        let mut i = scan_from;
        while let Some(off) = self.buf[i..].iter().position(|&b| b == b'\n') {
            let end = i + off;
            self.emit(self.line_start, end, host);
            self.line_start = end + 1;
            i = end + 1;
        }
        // A very long line without a newline is logged in pieces.
        if self.buf.len() - self.line_start > MAX_LOGGED_LINE * 16 {
            self.emit(self.line_start, self.buf.len(), host);
            self.line_start = self.buf.len();
        }
    }

    fn finish(&mut self, host: &str) {
        if self.line_start < self.buf.len() && !self.quiet {
            self.emit(self.line_start, self.buf.len(), host);
        }
        self.line_start = self.buf.len();
    }

    fn emit(&self, start: usize, end: usize, host: &str) {
        let mut line = &self.buf[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let cut = line.len() > MAX_LOGGED_LINE;
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LOGGED_LINE)]);
        debug!(target: "remote", host, stream = self.name, "{}{}", text, if cut { " [...]" } else { "" });
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

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
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
    let stream = tokio::time::timeout(
        tcp_timeout,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| Error::ConnectTimeout {
        address: address.clone(),
        timeout: tcp_timeout,
    })?
    .map_err(|source| Error::Connect {
        address: address.clone(),
        source,
    })?;
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
        let mut handle = client::connect_stream(config, stream, client)
            .await
            .map_err(|e| match e {
                ClientError::HostKey(h) => Error::HostKey(h),
                ClientError::Ssh(source) => Error::Ssh {
                    host: target.to_string(),
                    doing: "connecting",
                    source,
                },
            })?;
        authenticate(&mut handle, target, &identity).await?;
        Ok::<_, Error>(handle)
    };
    let handle = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Error::ConnectTimeout {
            address: address.clone(),
            timeout,
        })??;
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
    if algorithm.is_rsa() {
        Ok(handle.best_supported_rsa_hash().await?.flatten())
    } else {
        Ok(None)
    }
}

async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    identity: &Identity,
) -> Result<()> {
    let ssh = |source| Error::Ssh {
        host: target.to_string(),
        doing: "authenticating",
        source,
    };
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
                target: target.clone(),
                method: format!(
                    "key {} ({})",
                    path.display(),
                    known_hosts::describe(key.public_key())
                ),
            })
        }
        Identity::KeyFile(path) => Err(Error::KeyRead {
            path: path.clone(),
            source: std::io::Error::other("the key was not loaded before connecting"),
        }),
        Identity::Agent | Identity::AgentSocket(_) => {
            let socket = match identity {
                Identity::AgentSocket(p) => p.display().to_string(),
                _ => std::env::var("SSH_AUTH_SOCK")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or(Error::NoAgent)?,
            };
            let agent_err = |source| Error::Agent {
                socket: socket.clone(),
                source,
            };
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
                match handle
                    .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                    .await
                {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => {}
                    Err(e) => debug!(target: "remote", host = %target, "agent could not sign: {e}"),
                }
            }
            Err(Error::AuthFailed {
                target: target.clone(),
                method: format!("ssh-agent keys ({})", tried.join(", ")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_send_sync() {
        assert_send_sync::<Session>();
        assert_send_sync::<Error>();
    }

    #[test]
    fn tails() {
        assert_eq!(tail(b"a\nb\nc\n", 2, 100), "b\nc");
        assert_eq!(tail(b"", 2, 100), "");
    }
}
