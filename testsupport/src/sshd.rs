//! A throwaway OpenSSH sshd on 127.0.0.1 with its own host key and
//! authorized_keys, logging in as this (root) user: the harness of the
//! remote crate's unit tests (remote/src/sshd_tests.rs, which builds the
//! remote crate's ConnectOptions from [`Sshd`]'s fields), and the pieces
//! every sshd of the tests uses ([`SSHD`], [`keygen`], the privilege
//! separation directory).
//!
//! Needs root (sshd must run as root to log us in) and OpenSSH
//! (openssh-server for sshd, openssh-client for ssh-keygen, ssh-agent and
//! ssh-add); without them [`Sshd::start`] fails with a message naming what to
//! install (`bash tests/run` installs it all). Never a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kill_pid;
use crate::net::{free_port, wait_for_port};

/// OpenSSH's server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// One running sshd. Dropping it kills it (and every session it forked) and
/// removes its directory.
pub struct Sshd {
    /// Its files: sshd_config, host_ed25519(.pub), client_ed25519(.pub),
    /// authorized_keys, sshd.log; a test may put its own there too.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The listener while it runs (see [`Sshd::kill_all`], [`Sshd::spawn`]).
    pub child: Option<Child>,
    /// ed25519 private key (no passphrase) in authorized_keys.
    pub client_key: PathBuf,
    /// The host's public key, as ssh-keygen wrote it ("ssh-ed25519 AAAA... test\n").
    pub host_pub: String,
}

/// Root (sshd must run as root to log us in) and OpenSSH's server and
/// client tools. Missing ones are a failure naming the package, not a skip.
pub fn check_prerequisites() {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        assert!(
            crate::running_as_root(),
            "these tests run a real sshd, which must run as root to log us in: run them as root \
             (`bash tests/run` does, and installs what they need)"
        );
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} not found: install openssh-server (`apt-get install openssh-server`, \
             or run `bash tests/run`, which installs it)"
        );
        for tool in ["ssh-keygen", "ssh-agent", "ssh-add"] {
            if let Err(e) = Command::new(tool).arg("-?").output() {
                panic!(
                    "`{tool}` cannot be run ({e}): install openssh-client \
                     (`apt-get install openssh-client`, or run `bash tests/run`, which installs it)"
                );
            }
        }
    });
}

/// A new key pair at `path` and `path`.pub (ssh-keygen: type `kind`,
/// passphrase `pass`, comment "test"; 2048 bits for rsa).
pub fn keygen(path: &Path, kind: &str, pass: &str) {
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", pass, "-C", "test", "-f"]).arg(path);
    if kind == "rsa" {
        c.args(["-b", "2048"]);
    }
    let st = c.status().expect("ssh-keygen");
    assert!(st.success());
}

/// The privilege separation directory sshd insists on.
pub fn make_privsep_dir() {
    std::fs::create_dir_all("/run/sshd").unwrap();
}

impl Sshd {
    /// Starts sshd in a fresh directory named after `name` (unique within a
    /// test process); panics (never skips) when we are not root or OpenSSH
    /// is missing.
    pub fn start(name: &str) -> Sshd {
        check_prerequisites();
        let dir = std::env::temp_dir().join(format!("remote-sshd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        keygen(&dir.join("host_ed25519"), "ed25519", "");
        keygen(&dir.join("client_ed25519"), "ed25519", "");
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        make_privsep_dir();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxStartups 100\nLogLevel ERROR\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let mut s = Sshd { client_key: dir.join("client_ed25519"), dir, port, child: None, host_pub };
        s.spawn();
        s
    }

    /// Starts the listener (again, after [`Sshd::kill_all`]); returns once it
    /// accepts connections.
    pub fn spawn(&mut self) {
        // This sshd logs in as this machine's root, whose shell reads root's
        // dotfiles: here they run `pyenv rehash`, which waits 60 s on a lock
        // that a killed session leaves behind. sshd runs in a mount
        // namespace of its own with those files hidden, so the tests see a
        // plain shell whatever the machine's root has set up.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"for f in /root/.bashrc /root/.profile /root/.bash_profile /root/.bash_login; do
                     if [ -f "$f" ]; then mount --bind /dev/null "$f"; fi
                   done
                   exec "$0" "$@""#,
            )
            .arg(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd");
        // Kept before waiting: a panic below still kills it (Drop).
        let child = self.child.insert(child);
        wait_for_port(self.port, child, "sshd", Duration::from_secs(10));
    }

    /// Kills the listener and every sshd it forked (the per-connection
    /// ones too), by pid.
    pub fn kill_all(&mut self) {
        if let Some(mut c) = self.child.take() {
            let mut pids = vec![c.id()];
            descendants(c.id(), &mut pids);
            for p in pids {
                kill_pid(&p.to_string());
            }
            let _ = c.wait();
        }
    }

    /// "[127.0.0.1]:PORT ssh-ed25519 AAAA... test" (OpenSSH known_hosts format).
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_pub.trim())
    }
}

/// Every descendant of `pid` (children, their children, ...), appended to
/// `out`, from /proc.
pub fn descendants(pid: u32, out: &mut Vec<u32>) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the ")" that ends the command name: state, ppid, ...
        let ppid =
            stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
            descendants(child, out);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
