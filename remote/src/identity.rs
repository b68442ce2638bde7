//! Who we are to the host: a private key file or the ssh-agent.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::PrivateKey;

use crate::error::{Error, Result};

/// How to authenticate. The default is the ssh-agent at `SSH_AUTH_SOCK`.
#[derive(Clone, Default)]
pub enum Identity {
    /// The agent at `SSH_AUTH_SOCK`; every key it holds is offered in turn.
    #[default]
    Agent,
    /// The agent listening on this socket.
    AgentSocket(PathBuf),
    /// A private key file (OpenSSH or PEM; ed25519, RSA, ECDSA), read when
    /// connecting. Use [`Identity::load`] first when connecting to several
    /// hosts, so an encrypted key's passphrase is asked once.
    KeyFile(PathBuf),
    /// A key already read (and decrypted) from `path`.
    Key { path: PathBuf, key: Arc<PrivateKey> },
}

impl Identity {
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        Identity::KeyFile(path.into())
    }

    /// Reads a [`Identity::KeyFile`] into an [`Identity::Key`]. An encrypted
    /// key asks for its passphrase when stdin is a terminal and is a clear
    /// error otherwise. Other identities are returned unchanged.
    pub fn load(self) -> Result<Identity> {
        match self {
            Identity::KeyFile(path) => {
                // Only prompt when a person is there to answer; in CI or
                // under a pipe the prompt would hang or read garbage.
                let key = read_key(&path, std::io::stdin().is_terminal())?;
                Ok(Identity::Key { path, key: Arc::new(key) })
            }
            other => Ok(other),
        }
    }
}

/// Reads a private key file; an encrypted one asks for its passphrase when
/// `may_prompt`, and is [`Error::KeyEncrypted`] otherwise.
pub(crate) fn read_key(path: &Path, may_prompt: bool) -> Result<PrivateKey> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::KeyRead { path: path.to_path_buf(), source })?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            if !may_prompt {
                return Err(Error::KeyEncrypted { path: path.to_path_buf() });
            }
            let pass = rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                .map_err(|source| Error::KeyRead { path: path.to_path_buf(), source })?;
            russh::keys::decode_secret_key(&text, Some(&pass))
                .map_err(|_| Error::KeyPassphrase { path: path.to_path_buf() })
        }
        Err(source) => Err(Error::KeyParse { path: path.to_path_buf(), source }),
    }
}

/// Never prints key material.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent => f.write_str("Agent"),
            Identity::AgentSocket(p) => write!(f, "AgentSocket({})", p.display()),
            Identity::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            Identity::Key { path, .. } => write!(f, "Key({})", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_garbage_keys_name_the_file() {
        let e = Identity::key_file("/nonexistent/id_ed25519").load().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/id_ed25519"), "{e}");
        let p = std::env::temp_dir().join(format!("garbage-key-{}", std::process::id()));
        std::fs::write(&p, "not a key\n").unwrap();
        let e = Identity::key_file(&p).load().unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
