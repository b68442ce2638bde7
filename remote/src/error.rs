//! Errors carry what the person needs to act: the host, the command (with
//! secrets redacted), its stderr, and what to do next.

use std::path::PathBuf;
use std::time::Duration;

use crate::output::ExitStatus;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "invalid SSH target {input:?}: {reason}; expected [user@]host[:port], e.g. admin@203.0.113.7, 203.0.113.7:2222 or [2001:db8::1]:22"
    )]
    BadTarget { input: String, reason: String },

    #[error("cannot read private key {path}: {source}")]
    KeyRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "private key {path} is encrypted and there is no terminal to ask for its passphrase; add it to ssh-agent (`ssh-add {path}`) and leave out the key file, or use an unencrypted key"
    )]
    KeyEncrypted { path: PathBuf },

    #[error("cannot decrypt private key {path}: wrong passphrase?")]
    KeyPassphrase { path: PathBuf },

    #[error(
        "cannot use private key {path}: {source} (expected an OpenSSH or PEM ed25519, RSA or ECDSA private key)"
    )]
    KeyParse {
        path: PathBuf,
        #[source]
        source: russh::keys::Error,
    },

    #[error(
        "no SSH agent: SSH_AUTH_SOCK is not set; start ssh-agent and `ssh-add` your key, or give a private key file"
    )]
    NoAgent,

    #[error("cannot use the ssh-agent at {socket}: {source}")]
    Agent {
        socket: String,
        #[source]
        source: russh::keys::Error,
    },

    #[error(
        "the ssh-agent at {socket} holds no keys; `ssh-add` your key, or give a private key file"
    )]
    AgentEmpty { socket: String },

    #[error("{target} refused our {method}; check that its public key is in ~{user}/.ssh/authorized_keys on the host (EC2: the key pair the instance was launched with) and that the user name is right", user = target.user)]
    AuthFailed {
        target: crate::Target,
        /// e.g. `key /home/me/.ssh/id_ed25519 (ssh-ed25519 SHA256:...)`
        method: String,
    },

    #[error(transparent)]
    HostKey(#[from] HostKeyError),

    #[error("invalid public key {text:?}: expected OpenSSH form like `ssh-ed25519 AAAA...`")]
    BadPublicKey { text: String },

    #[error("cannot update known_hosts file {path}: {source}")]
    KnownHostsIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "connecting to {address} timed out after {timeout:?} (is the host up, and port open in its firewall or security group?)"
    )]
    ConnectTimeout { address: String, timeout: Duration },

    #[error("could not reach {address} after {attempts} attempts: {last}")]
    Unreachable {
        address: String,
        attempts: usize,
        #[source]
        last: Box<Error>,
    },

    #[error("SSH protocol error with {host} while {doing}: {source}")]
    Ssh {
        host: String,
        doing: &'static str,
        #[source]
        source: russh::Error,
    },

    #[error(
        "lost the connection to {host} while running `{command}`; the command may or may not have finished"
    )]
    ConnectionLost { host: String, command: String },

    #[error("`{command}` on {host} ended without an exit status")]
    NoExitStatus { host: String, command: String },

    #[error("`{command}` on {host} failed ({status}){}", tail_suffix(stderr_tail))]
    CommandFailed {
        host: String,
        command: String,
        status: ExitStatus,
        /// The last lines of stderr (secrets are the command's own business:
        /// it is told to be quiet with `Cmd::quiet`, which drops this).
        stderr_tail: String,
    },

    #[error(
        "sudo on {host} wants a password for {user}; configure passwordless sudo for {user} (a sudoers line `{user} ALL=(ALL) NOPASSWD:ALL`) or connect as root"
    )]
    SudoNeedsPassword { user: String, host: String },

    #[error(
        "{user} may not use sudo on {host}; add {user} to the sudo group with NOPASSWD, or connect as root"
    )]
    SudoNotPermitted { user: String, host: String },

    #[error("upload to {path} on {host}: {reason}")]
    BadUpload {
        host: String,
        path: String,
        reason: String,
    },

    #[error("{host} did not come back from reboot within {timeout:?} ({phase}){}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    RebootTimeout {
        host: String,
        timeout: Duration,
        /// Where it got stuck: "waiting for a new boot id", "test command".
        phase: &'static str,
        last_error: Option<String>,
    },

    #[error(
        "cannot read the boot id of {host}: got {output:?}, expected a UUID from /proc/sys/kernel/random/boot_id"
    )]
    BootId { host: String, output: String },
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", tail.trim_end())
    }
}

impl Error {
    /// Worth another try: the network or sshd not being up yet. Never auth,
    /// host key or local problems: retrying those only delays the message.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } => true,
            Error::Ssh { source, .. } => matches!(
                source,
                russh::Error::IO(_)
                    | russh::Error::Disconnect
                    | russh::Error::HUP
                    | russh::Error::ConnectionTimeout
                    | russh::Error::KeepaliveTimeout
                    | russh::Error::SendError
                    | russh::Error::RecvError
            ),
            _ => false,
        }
    }
}

/// A host key we will not accept, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    #[error(
        "the host key of {host} is not known yet: {offered}. If that is the host's key (compare with its console output or `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on it), connect again with --accept-new-host-key to record it in {path}"
    )]
    Unknown {
        host: String,
        /// Algorithm and SHA256 fingerprint of the offered key.
        offered: String,
        /// The offered key: a caller that asked the user can reconnect
        /// with `HostKeyPolicy::Expect(vec![key])`, which accepts exactly
        /// this key and nothing else.
        key: Box<russh::keys::PublicKey>,
        path: PathBuf,
    },

    #[error(
        "THE HOST KEY OF {host} HAS CHANGED: {path}:{line} has {known}, but the host offered {offered}. Someone may be intercepting the connection, or the host was reinstalled; if you know it was, remove line {line} from {path} and connect again"
    )]
    Changed {
        host: String,
        known: String,
        offered: String,
        path: PathBuf,
        line: usize,
    },

    #[error("{host} offered host key {offered}, but the expected key is {}; refusing to connect", expected.join(" or "))]
    NotExpected {
        host: String,
        expected: Vec<String>,
        offered: String,
    },

    #[error(
        "{host} offered host key {offered}, which {path}:{line} marks @revoked; refusing to connect"
    )]
    Revoked {
        host: String,
        offered: String,
        path: PathBuf,
        line: usize,
    },
}
