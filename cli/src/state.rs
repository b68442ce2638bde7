//! The local state directory and the SSH keys kept in it.
//!
//! The cloud's tags are the source of truth; local state holds only what the
//! cloud cannot: private keys, known_hosts, logs. Losing it loses access to a
//! server, never track of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ssh_key::{LineEnding, PrivateKey};

use crate::errors::UsageError;

/// `$IMAGE_PROVISION_STATE_DIR`, else `$XDG_STATE_HOME/image-provision`, else
/// `~/.local/state/image-provision`.
pub fn base_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("IMAGE_PROVISION_STATE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("image-provision"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("cannot find a state directory: set HOME, XDG_STATE_HOME or IMAGE_PROVISION_STATE_DIR")?;
    Ok(PathBuf::from(home).join(".local/state/image-provision"))
}

/// Where the servers' own directories are, one each, apart from the
/// state directory's other contents (logs/, known_hosts), so that no server
/// name can reach them.
pub const SERVERS: &str = "servers";

/// The state files image-provision keeps for a server: a directory that
/// holds one of them was made by it.
const SERVER_FILES: [&str; 3] = [GENERATED_KEY, HOST_KEY, KNOWN_HOSTS];

/// `STATE/servers/NAME`: server NAME's keys and known_hosts. NAME must be a
/// server name (a DNS label) wherever it came from, a flag or a tag: no
/// other string reaches the file system. A directory left by a version that
/// kept it at `STATE/NAME` is moved here once, when it holds our files.
pub fn server_dir(name: &str) -> anyhow::Result<PathBuf> {
    if !image_provision_provision::tags::is_server_name(name) {
        anyhow::bail!("{name:?} is not a server name: no state directory is kept for it");
    }
    let base = base_dir()?;
    let dir = base.join(SERVERS).join(name);
    let legacy = base.join(name);
    let ours = |d: &Path| {
        fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()) && SERVER_FILES.iter().any(|f| d.join(f).is_file())
    };
    if !dir.exists() && ours(&legacy) {
        ensure_private_dir(&base.join(SERVERS))?;
        fs::rename(&legacy, &dir).with_context(|| format!("moving {} to {}", legacy.display(), dir.display()))?;
    }
    Ok(dir)
}

/// Create a directory only its owner can enter.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    Ok(())
}

/// The key a server is reached with.
#[derive(Debug, Clone)]
pub struct ServerKey {
    pub private_path: PathBuf,
    pub public_openssh: String,
    pub generated: bool,
}

pub const GENERATED_KEY: &str = "id_ed25519";
/// The SSH host key image-provision makes for an EC2 server and hands to it
/// in user data, so that the first connection verifies the server instead of
/// trusting whatever answers.
pub const HOST_KEY: &str = "ssh_host_ed25519_key";
pub const KNOWN_HOSTS: &str = "known_hosts";

/// Find or make the server's generated login key in `dir`.
pub fn ensure_generated_key(dir: &Path) -> anyhow::Result<ServerKey> {
    ensure_key(dir, GENERATED_KEY)
}

/// Find or make an ed25519 key pair `dir/file_name` (+ `.pub`).
pub fn ensure_key(dir: &Path, file_name: &str) -> anyhow::Result<ServerKey> {
    let private_path = dir.join(file_name);
    if private_path.exists() {
        let key = read_private_key(&private_path).map_err(anyhow::Error::from)?;
        return Ok(ServerKey {
            public_openssh: public_of(&private_path, key.as_ref())?,
            private_path,
            generated: false,
        });
    }
    ensure_private_dir(dir)?;
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed));
    key.set_comment(format!("image-provision {}", dir.file_name().unwrap_or_default().to_string_lossy()));
    let pem = key.to_openssh(LineEnding::LF).context("encoding the new key")?;
    // Write under a temporary name then rename, 0600 from the first byte, so
    // a kill mid-write never leaves a half key under the real name.
    let tmp = write_private_tmp(dir, file_name, pem.as_bytes())?;
    let public = key.public_key().to_openssh().context("encoding the public key")?;
    fs::write(dir.join(format!("{file_name}.pub")), format!("{public}\n"))?;
    fs::rename(&tmp, &private_path)?;
    Ok(ServerKey { private_path, public_openssh: public, generated: true })
}

/// `bytes` in `dir/.NAME.tmp`, 0600 from the first byte and synced: the
/// caller renames it to NAME once whatever goes with it is written.
fn write_private_tmp(dir: &Path, file_name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(tmp)
}

/// The web UI admin's password file in an EC2 server's directory.
pub const WEBUI_PASSWORD: &str = "webui-admin-password";

/// Where `bootstrap --llm-webui HOST` keeps the web UI admin's password:
/// `STATE/webui/HOST/admin-password` (a bootstrapped host has no server
/// name; HOST is a checked host name, so it names no other path).
pub fn bootstrap_webui_password(host: &str) -> anyhow::Result<PathBuf> {
    image_provision_playbooks::validate::check_domain(host).map_err(anyhow::Error::msg)?;
    Ok(base_dir()?.join("webui").join(host).join("admin-password"))
}

/// The password in `path` (0600 in a private directory): the one there, or
/// with `make`, a new one (32 letters and digits, written before it is
/// used, so a run cut short keeps it); without `make`, None when there is
/// none. An existing file is never replaced: the server's admin has it.
pub fn webui_password(path: &Path, make: bool) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let password = text.trim().to_string();
            if password.is_empty() {
                anyhow::bail!(
                    "{} is empty: it should hold the web UI admin's password (restore it, or remove it to make a new one; \
                     the server's admin keeps the old one)",
                    path.display()
                );
            }
            return Ok(Some(password));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if !make {
        return Ok(None);
    }
    let dir = path.parent().context("the password file's directory")?;
    let name = path.file_name().context("the password file's name")?.to_string_lossy();
    ensure_private_dir(dir)?;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let password: String = (0..32).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect();
    let tmp = write_private_tmp(dir, &name, format!("{password}\n").as_bytes())?;
    fs::rename(&tmp, path)?;
    Ok(Some(password))
}

/// Fill in the web UI admin's password of `steps`, when it has a web UI,
/// from `path` (made unless `dry_run`; a dry run without one shows a
/// placeholder). Returns the file named in the summary.
pub fn fill_webui_password(
    steps: &mut image_provision_playbooks::Config,
    path: impl FnOnce(&str) -> anyhow::Result<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(webui) = steps.image.as_mut().and_then(|i| i.webui.as_mut()) else {
        return Ok(None);
    };
    let path = path(&webui.host)?;
    webui.admin_password =
        webui_password(&path, !dry_run)?.unwrap_or_else(|| "<generated by a run that is not dry>".into());
    Ok(Some(path))
}

/// Check a user-supplied `--ssh-key` and return its public half.
pub fn user_key(path: &Path) -> Result<ServerKey, UsageError> {
    let key = read_private_key(path)?;
    let public_openssh = public_of(path, key.as_ref()).map_err(|e| {
        UsageError::new(format!("--ssh-key {}: {e:#}", path.display()))
            .hint(format!("put the public key beside it as {}.pub", path.display()))
    })?;
    Ok(ServerKey { private_path: path.to_path_buf(), public_openssh, generated: false })
}

/// Read a private key file. `Ok(None)` for a valid key in a format we do not
/// parse ourselves (PEM RSA/EC): its `.pub` is then required.
fn read_private_key(path: &Path) -> Result<Option<PrivateKey>, UsageError> {
    let shown = path.display();
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UsageError::new(format!("--ssh-key {shown}: no such file")).hint(
                "give the path of a private key, e.g. ~/.ssh/id_ed25519, or leave --ssh-key out to generate one",
            ));
        }
        Err(e) => {
            return Err(UsageError::new(format!("--ssh-key {shown}: cannot read it: {e}"))
                .hint("check the file's permissions; it must be readable by you"));
        }
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return PrivateKey::from_openssh(&text)
            .map(Some)
            .map_err(|e| UsageError::new(format!("--ssh-key {shown}: not a readable OpenSSH private key: {e}")));
    }
    if ["-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----"]
        .iter()
        .any(|h| trimmed.starts_with(h))
    {
        return Ok(None);
    }
    let what = if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
        "this is a public key"
    } else {
        "this is not a private key"
    };
    Err(UsageError::new(format!("--ssh-key {shown}: {what}"))
        .hint("give the private half (the file without .pub); its .pub beside it is what gets imported"))
}

/// The public half: from `PATH.pub` when present, else derived from the key.
fn public_of(path: &Path, key: Option<&PrivateKey>) -> anyhow::Result<String> {
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    match fs::read_to_string(&pub_path) {
        Ok(text) => {
            let line = text.trim();
            ssh_key::PublicKey::from_openssh(line)
                .with_context(|| format!("{} is not an OpenSSH public key", pub_path.display()))?;
            Ok(line.to_owned())
        }
        Err(_) => match key {
            Some(k) => Ok(k.public_key().to_openssh()?),
            None => anyhow::bail!("{} is missing", pub_path.display()),
        },
    }
}

/// The private key's OpenSSH text, for handing a host key to cloud-init.
pub fn private_key_text(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Record `host`'s key in the server's known_hosts file (OpenSSH format),
/// replacing what was there: one server, one address, one key.
pub fn write_known_hosts(dir: &Path, host: &str, public_openssh: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(KNOWN_HOSTS);
    let mut fields = public_openssh.split_whitespace();
    let (kind, key) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
    fs::write(&path, format!("{host} {kind} {key}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The server's public address is now `ip` (a start without an Elastic IP
/// gives it a new one): its known_hosts line moves to `ip`, keeping the key
/// it pins, so the host key is still checked strictly. The first line keyed
/// by an address is the server's (create writes it); lines for other hosts
/// stay. Returns the address it moved from, when
/// it moved one; nothing happens without a known_hosts file or a line keyed
/// by an address.
pub fn move_known_host(dir: &Path, ip: &str) -> anyhow::Result<Option<String>> {
    let path = dir.join(KNOWN_HOSTS);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let by_address = |line: &str| {
        let host = line.split_whitespace().next().unwrap_or_default();
        host.parse::<std::net::IpAddr>().is_ok().then(|| host.to_owned())
    };
    let Some(old) = text.lines().find_map(by_address) else { return Ok(None) };
    if old == ip {
        return Ok(None);
    }
    let moved: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match by_address(l).filter(|host| *host == old) {
            Some(host) => format!("{ip}{}\n", &l[host.len()..]),
            None => format!("{l}\n"),
        })
        .collect();
    // Two lines for one address with one key: keep one.
    let mut seen = std::collections::HashSet::new();
    let moved: String = moved.lines().filter(|l| seen.insert(l.to_string())).map(|l| format!("{l}\n")).collect();
    fs::write(&path, moved).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The web UI admin's password: none in a dry run, made once (0600, a
    /// private directory, 32 characters) and then kept; an empty file is
    /// an error, not replaced.
    #[test]
    fn the_webui_password_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webui/chat.example.org/admin-password");
        assert_eq!(webui_password(&path, false).unwrap(), None);
        assert!(!path.exists(), "a dry run makes nothing");
        let made = webui_password(&path, true).unwrap().unwrap();
        assert_eq!(made.len(), 32);
        assert!(made.chars().all(|c| c.is_ascii_alphanumeric()), "{made}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(webui_password(&path, true).unwrap().unwrap(), made, "kept");
        assert_ne!(webui_password(&dir.path().join("other"), true).unwrap().unwrap(), made);
        fs::write(&path, "\n").unwrap();
        assert!(webui_password(&path, true).unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn known_hosts_follow_the_address_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(move_known_host(dir.path(), "198.51.100.2").unwrap(), None, "no file: nothing to move");
        write_known_hosts(dir.path(), "198.51.100.1", "ssh-ed25519 AAAAkey host").unwrap();
        let path = dir.path().join(KNOWN_HOSTS);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("[127.0.0.1]:2222 ssh-ed25519 AAAAkey\n10.0.0.1 ssh-ed25519 AAAAkey\n");
        fs::write(&path, text).unwrap();
        assert_eq!(move_known_host(dir.path(), "198.51.100.1").unwrap(), None, "same address");
        assert_eq!(move_known_host(dir.path(), "198.51.100.2").unwrap().as_deref(), Some("198.51.100.1"));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "198.51.100.2 ssh-ed25519 AAAAkey\n[127.0.0.1]:2222 ssh-ed25519 AAAAkey\n10.0.0.1 ssh-ed25519 AAAAkey\n"
        );
    }

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("srv");
        let first = ensure_generated_key(&sub).unwrap();
        assert!(first.generated);
        assert!(first.public_openssh.starts_with("ssh-ed25519 "));
        let mode = fs::metadata(&first.private_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let again = ensure_generated_key(&sub).unwrap();
        assert!(!again.generated);
        assert_eq!(again.public_openssh, first.public_openssh);
    }

    /// Names from anywhere reach only their own directory under servers/;
    /// an old-layout directory of ours moves there, anything else stays.
    #[test]
    fn server_dirs_are_under_servers_and_only_for_server_names() {
        let state = tempfile::tempdir().unwrap();
        // SAFETY (test): this test alone sets the variable in this process.
        unsafe { std::env::set_var("IMAGE_PROVISION_STATE_DIR", state.path()) };
        for bad in ["", "..", "/etc", "logs/x", "a/../..", "UPPER", "-x"] {
            assert!(server_dir(bad).is_err(), "{bad:?}");
        }
        assert_eq!(server_dir("logs").unwrap(), state.path().join("servers/logs"));
        fs::create_dir_all(state.path().join("logs")).unwrap();
        fs::write(state.path().join("logs/run.log"), "x").unwrap();
        assert_eq!(server_dir("logs").unwrap(), state.path().join("servers/logs"));
        assert!(state.path().join("logs/run.log").is_file(), "the logs are not a server's directory");
        let old = state.path().join("web");
        fs::create_dir_all(&old).unwrap();
        fs::write(old.join(GENERATED_KEY), "key").unwrap();
        let dir = server_dir("web").unwrap();
        assert_eq!(dir, state.path().join("servers/web"));
        assert_eq!(fs::read_to_string(dir.join(GENERATED_KEY)).unwrap(), "key");
        assert!(!old.exists());
    }

    #[test]
    fn user_key_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = user_key(&dir.path().join("nope")).unwrap_err();
        assert!(missing.message.contains("no such file"), "{}", missing.message);
        let public = dir.path().join("k.pub");
        fs::write(&public, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5l\n").unwrap();
        assert!(user_key(&public).unwrap_err().message.contains("public key"));
        let junk = dir.path().join("junk");
        fs::write(&junk, "hello").unwrap();
        assert!(user_key(&junk).unwrap_err().message.contains("not a private key"));
        let generated = ensure_generated_key(&dir.path().join("g")).unwrap();
        let k = user_key(&generated.private_path).unwrap();
        assert_eq!(k.public_openssh, generated.public_openssh);
    }
}
