//! Errors carry what the person needs to act: the host, the command (with
//! secrets redacted) and its stderr in the message, which says only what
//! happened, and what to do next in [`Error::hint`], so a caller can show
//! advice on a line of its own (and leave it out where it does not fit).

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

    #[error("private key {path} is encrypted and there is no terminal to ask for its passphrase")]
    KeyEncrypted { path: PathBuf },

    #[error("cannot decrypt private key {path}: wrong passphrase?")]
    KeyPassphrase { path: PathBuf },

    #[error("cannot use private key {path}: {source} (expected an OpenSSH or PEM ed25519, RSA or ECDSA private key)")]
    KeyParse {
        path: PathBuf,
        #[source]
        source: russh::keys::Error,
    },

    #[error("no SSH agent: SSH_AUTH_SOCK is not set")]
    NoAgent,

    #[error("cannot use the ssh-agent at {socket}: {source}")]
    Agent {
        socket: String,
        #[source]
        source: russh::keys::Error,
    },

    #[error("the ssh-agent at {socket} holds no keys")]
    AgentEmpty { socket: String },

    #[error("{target} refused our {method}")]
    AuthFailed {
        /// `user@host:port`.
        target: String,
        /// The user logged in as.
        user: String,
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

    #[error("connecting to {address} timed out after {timeout:?}")]
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

    #[error("lost the connection to {host} while running `{command}`; the command may or may not have finished")]
    ConnectionLost { host: String, command: String },

    #[error("`{command}` on {host} ended without an exit status")]
    NoExitStatus { host: String, command: String },

    #[error(
        "`{command}` on {host} did not finish within its time limit of {} s; the run stopped waiting and asked it to stop",
        limit.as_secs()
    )]
    TimedOut { host: String, command: String, limit: std::time::Duration },

    #[error("`{command}` on {host} failed ({status}){}", tail_suffix(stderr_tail))]
    CommandFailed {
        host: String,
        command: String,
        status: ExitStatus,
        /// The last lines of stderr (secrets are the command's own business:
        /// it is told to be quiet with `Cmd::quiet`, which drops this).
        stderr_tail: String,
    },

    #[error("sudo on {host} wants a password for {user}")]
    SudoNeedsPassword { user: String, host: String },

    #[error("{user} may not use sudo on {host}")]
    SudoNotPermitted { user: String, host: String },

    #[error("upload to {path} on {host}: {reason}")]
    BadUpload { host: String, path: String, reason: String },

    #[error("{host} did not come back from reboot within {timeout:?} ({phase}){}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    RebootTimeout {
        host: String,
        timeout: Duration,
        /// Where it got stuck: "waiting for a new boot id", "test command".
        phase: &'static str,
        last_error: Option<String>,
        /// What to do about the last error (its [`Error::hint`]):
        /// `last_error` is only its message.
        last_hint: Option<String>,
    },

    #[error("cannot read the boot id of {host}: got {output:?}, expected a UUID from /proc/sys/kernel/random/boot_id")]
    BootId { host: String, output: String },
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!(":\n{}", tail.trim_end()) }
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

    /// What the person can do about it, when there is something to say
    /// beyond the message: for a CLI to print on a line of its own. Errors
    /// that wrap another (`Unreachable`, `HostKey`, a reboot's last error)
    /// pass on that one's hint.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::KeyEncrypted { path } => Some(format!(
                "add it to ssh-agent (`ssh-add {}`) and leave out the key file, or use an unencrypted key",
                path.display()
            )),
            Error::NoAgent => Some("start ssh-agent and `ssh-add` your key, or give a private key file".into()),
            Error::AgentEmpty { .. } => Some("`ssh-add` your key, or give a private key file".into()),
            Error::AuthFailed { user, .. } => Some(format!(
                "check that the public key is in ~{user}/.ssh/authorized_keys on the host (EC2: the key pair the instance was launched with) and that the user name is right"
            )),
            Error::HostKey(e) => e.hint(),
            Error::ConnectTimeout { .. } => {
                Some("is the host up, and port open in its firewall or security group?".into())
            }
            Error::Unreachable { last, .. } => last.hint(),
            Error::SudoNeedsPassword { user, .. } => Some(format!(
                "configure passwordless sudo for {user} (a sudoers line `{user} ALL=(ALL) NOPASSWD:ALL`) or connect as root"
            )),
            Error::SudoNotPermitted { user, .. } => {
                Some(format!("add {user} to the sudo group with NOPASSWD, or connect as root"))
            }
            Error::RebootTimeout { last_hint, .. } => last_hint.clone(),
            Error::TimedOut { .. } => Some(
                "see what it waits for on the host (its output above, `ps -ef`, `journalctl -f`), then run the same command again; \
                 a slow but healthy host needs a longer limit (--command-timeout)"
                    .into(),
            ),
            // The message says it all (a new variant decides here too).
            Error::BadTarget { .. }
            | Error::KeyRead { .. }
            | Error::KeyPassphrase { .. }
            | Error::KeyParse { .. }
            | Error::Agent { .. }
            | Error::BadPublicKey { .. }
            | Error::KnownHostsIo { .. }
            | Error::Connect { .. }
            | Error::Ssh { .. }
            | Error::ConnectionLost { .. }
            | Error::NoExitStatus { .. }
            | Error::CommandFailed { .. }
            | Error::BadUpload { .. }
            | Error::BootId { .. } => None,
        }
    }
}

/// A host key we will not accept; [`HostKeyError::hint`] says how to fix it
/// when we can tell.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    #[error("the host key of {host} is not known yet: {offered}")]
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
        "THE HOST KEY OF {host} HAS CHANGED: {path}:{line} has {known}, but the host offered {offered}. Someone may be intercepting the connection, or the host was reinstalled"
    )]
    Changed { host: String, known: String, offered: String, path: PathBuf, line: usize },

    #[error("{host} offered host key {offered}, but the expected key is {}; refusing to connect", expected.join(" or "))]
    NotExpected { host: String, expected: Vec<String>, offered: String },

    #[error("{host} offered host key {offered}, which {path}:{line} marks @revoked; refusing to connect")]
    Revoked { host: String, offered: String, path: PathBuf, line: usize },
}

impl HostKeyError {
    /// How to get past it, for the cases where we can say: an unknown key
    /// (check it, then accept it) and a changed one (when the host is known
    /// to have been reinstalled). None for a key refused on purpose
    /// (`Expect`, `@revoked`).
    pub fn hint(&self) -> Option<String> {
        match self {
            HostKeyError::Unknown { path, .. } => Some(format!(
                "if that is the host's key (compare with its console output or `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on it), connect again with --accept-new-host-key to record it in {}",
                path.display()
            )),
            HostKeyError::Changed { path, line, .. } => Some(format!(
                "if you know it was reinstalled, remove line {line} from {} and connect again",
                path.display()
            )),
            HostKeyError::NotExpected { .. } | HostKeyError::Revoked { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message says what happened; the advice moved to the hint, and
    /// an error wrapping another passes the inner one's hint on.
    #[test]
    fn advice_is_in_the_hint_not_the_message() {
        let timeout = Error::ConnectTimeout { address: "203.0.113.7:22".into(), timeout: Duration::from_secs(15) };
        assert!(!timeout.to_string().contains("firewall"), "{timeout}");
        let hint = timeout.hint().unwrap_or_default();
        assert!(hint.contains("firewall or security group"), "{hint}");

        let unreachable = Error::Unreachable { address: "203.0.113.7:22".into(), attempts: 6, last: Box::new(timeout) };
        assert!(unreachable.to_string().contains("timed out after 15s"), "{unreachable}");
        assert!(!unreachable.to_string().contains("firewall"), "{unreachable}");
        assert_eq!(unreachable.hint(), Some(hint));

        let sudo = Error::SudoNeedsPassword { user: "pwuser".into(), host: "203.0.113.7".into() };
        assert!(sudo.to_string().contains("pwuser"), "{sudo}");
        assert!(!sudo.to_string().contains("NOPASSWD"), "{sudo}");
        let hint = sudo.hint().unwrap_or_default();
        assert!(hint.contains("pwuser ALL=(ALL) NOPASSWD:ALL"), "{hint}");

        let reboot = Error::RebootTimeout {
            host: "root@203.0.113.7".into(),
            timeout: Duration::from_secs(600),
            phase: "waiting for the host to come back on a new boot",
            last_error: Some("connecting to 203.0.113.7:22 timed out after 2s".into()),
            last_hint: Some("is the host up?".into()),
        };
        assert_eq!(reboot.hint().as_deref(), Some("is the host up?"));

        let failed = Error::CommandFailed {
            host: "root@203.0.113.7".into(),
            command: "false".into(),
            status: ExitStatus::Code(1),
            stderr_tail: String::new(),
        };
        assert_eq!(failed.hint(), None);
    }
}
