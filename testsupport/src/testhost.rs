//! A real test host for SSH and host-side tests: OpenSSH's sshd serving a real
//! Debian 12 root filesystem, one fresh host per [`TestHost::start`].
//!
//! # Using it from a test
//!
//! From the root package's tests (tests/it), its benches, or any crate that
//! dev-depends on image-provision-testsupport:
//!
//! ```ignore
//! use image_provision_testsupport::testhost::{Distro, TestHost};
//!
//! #[test]
//! fn something_on_a_host() {
//!     let host = TestHost::start(Distro::Debian12);
//!     // connect to host.addr() as "root", "admin" or "pwuser" with host.client_key,
//!     // trusting host.known_hosts_line() (or host.host_key_pub)
//!     assert!(host.sh("test -d /var/docker/image").status.success());
//! }
//! ```
//!
//! It uses std and `tempfile` only. It needs root, util-linux (unshare,
//! nsenter, mount, flock), debootstrap and, the first time, Debian's archive;
//! a missing prerequisite panics (it is a failure, never a skip).
//!
//! # What a test host is
//!
//! - The root filesystem: `tests/testhost/build-root.sh` runs
//!   `debootstrap --variant=minbase` plus `tests/testhost/packages` and caches
//!   the result in `${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}`,
//!   keyed by a hash of the script and the package list (about 30 s to build,
//!   then reused; concurrent builds wait on a lock).
//! - Each host (`tests/testhost/start.sh`) runs in its own mount, PID and UTS
//!   namespaces over a fresh overlay of that root (writable layer in a temporary
//!   directory), chrooted, so host steps write their real paths (/var/docker,
//!   /etc/apt, ...) without touching this machine, and every host starts bare.
//!   It shares this machine's network namespace: apt reaches deb.debian.org,
//!   and sshd listens on 127.0.0.1:`port` only.
//! - Users: `root`; `admin` (passwordless sudo, Debian's cloud image user);
//!   `ubuntu` (the same, for the Ubuntu stand-in); `pwuser` (sudo asks for
//!   `pwuser_password`). All accept `client_key`; sshd accepts public keys only.
//! - Keys: an ed25519 host key and an ed25519 client key, made per host.
//! - Reboot stand-in: `/sbin/reboot` and `shutdown -r now` record the call in
//!   `/var/log/standin/calls.log` and ask the supervisor (PID 1 of the host) to
//!   reboot: it kills every process of the host (dropping every SSH
//!   connection), bind-mounts a new UUID over
//!   `/proc/sys/kernel/random/boot_id`, empties /run and /tmp, waits the reboot
//!   delay (default 1 s; `IMAGE_PROVISION_TESTHOST_REBOOT_DELAY` or
//!   [`TestHost::start_with`]) and starts sshd again. The count is in
//!   `/var/lib/standin/reboots` inside the host and in [`TestHost::reboots`].
//!   No systemd runs inside: `systemctl` does not work there.
//! - Stand-in packages (no GPU here): [`TestHost::enable_standin_repo`] adds a
//!   local apt repository built from tests/testhost/standins (NVIDIA driver
//!   under Debian's and Ubuntu's names, nvidia-smi, nvidia-container-toolkit).
//!   No Docker stand-in yet. Services are not started by apt (no init system:
//!   invoke-rc.d refuses), and /proc/sys is read-only (the kernel is the machine's).
//! - If the test process dies without dropping its hosts, each host notices
//!   within 50 ms, kills its processes and removes its directory.
//!
//! # Booted hosts: real systemd, real Docker
//!
//! [`TestHost::boot`] (tests/testhost/boot.sh) runs the same kind of root
//! (`build-root.sh booted`: plus systemd, networkd and a unit that makes the
//! cgroup controllers writable for dockerd) under `systemd-nspawn --boot`:
//! - systemd is PID 1; `systemctl`, journald and `reboot` are the real ones.
//!   A reboot shuts systemd down, nspawn exits 133 and boot.sh boots the host
//!   again with a new boot id ([`TestHost::reboots`] counts them).
//! - A network of its own: a veth pair, the machine's end 10.96.x.y+1/30, the
//!   host's `host0` +2 ([`TestHost::ip`]); sshd on port 22 there. Nothing
//!   routes beyond the machine, so the host's only apt source is the archive
//!   stand-in (build-archive.sh): REAL Debian packages under the names the
//!   tool installs on Ubuntu (docker.io; compose v2 as docker-compose-v2),
//!   read-only at /srv/archive-standin. dockerd runs there for real, its
//!   data in a directory of the host's own bound at /var/lib/docker.
//! - Stand-ins remain for the GPU only (the NVIDIA packages of
//!   [`TestHost::enable_standin_repo`], nvidia-smi, nvidia-ctk, the runtime
//!   hook dockerd runs for a GPU request) and lspci.
//! - [`TestHost::sh`], [`TestHost::read`] and [`TestHost::write`] enter the
//!   namespaces of this boot's PID 1; [`TestHost::restart_sshd`] is
//!   `systemctl restart ssh`; [`TestHost::kill_sshd`] is chroot hosts' only.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::net::ssh_banner_at;
use crate::{find_tool, kill_pid, running_as_root};

/// Which system the host says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distro {
    /// Debian 12 (bookworm), as debootstrap made it.
    Debian12,
    /// A STAND-IN for Ubuntu 22.04: the same Debian 12 root with Ubuntu 22.04's
    /// /etc/os-release (ID=ubuntu, VERSION_ID="22.04", VERSION_CODENAME=jammy),
    /// /etc/lsb-release and /etc/debian_version. Its packages and apt sources
    /// are still Debian's (the Ubuntu archive is not reachable from the tests).
    /// Tests using it should say so in their name and comments.
    Ubuntu2204Standin,
}

impl Distro {
    fn arg(self) -> &'static str {
        match self {
            Distro::Debian12 => "debian12",
            Distro::Ubuntu2204Standin => "ubuntu2204-standin",
        }
    }
}

/// One running test host. Dropping it kills every process of the host and
/// removes its overlay and temporary directory.
pub struct TestHost {
    /// sshd's address: 127.0.0.1 on a chroot host, the host's own on a
    /// booted one ([`TestHost::boot`]).
    pub ip: Ipv4Addr,
    /// sshd's port: a random one on a chroot host, 22 on a booted one.
    pub port: u16,
    /// The host's public key, "ssh-ed25519 AAAA... testhost-host".
    pub host_key_pub: String,
    /// ed25519 private key (mode 0600, no passphrase) authorized for root,
    /// admin, ubuntu and pwuser.
    pub client_key: PathBuf,
    /// pwuser's password (sudo asks for it; SSH never accepts passwords).
    pub pwuser_password: String,
    pub distro: Distro,
    /// Booted under real systemd ([`TestHost::boot`]) rather than chrooted.
    booted: bool,
    supervisor_pid: u32,
    merged: PathBuf,
    ctl: PathBuf,
    child: Child,
    /// Services run on the machine for this host (the registry, pebble),
    /// each in a process group of its own.
    services: std::sync::Mutex<Vec<Child>>,
    /// How many pebbles [`TestHost::enable_acme`] started.
    acme: std::sync::Mutex<u16>,
    // Declared last: removed after Drop::drop has stopped the host.
    dir: tempfile::TempDir,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A booted host's first boot; under load systemd and sshd take a few seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The scripts' directory, tests/testhost of the root package.
pub(crate) fn scripts_dir() -> PathBuf {
    let dir = crate::repo_root().join("tests/testhost");
    assert!(dir.join("start.sh").exists(), "test host scripts not found in {}", dir.display());
    dir
}

fn check_prerequisites() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        assert!(running_as_root(), "the test host needs root (namespaces, overlayfs, chroot); run the tests as root");
        for (tool, package) in [
            ("bash", "bash"),
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("mount", "mount"),
            ("flock", "util-linux"),
            ("chroot", "coreutils"),
            ("debootstrap", "debootstrap"),
        ] {
            if find_tool(tool).is_none() {
                panic!(
                    "test host prerequisite missing: `{tool}` is not installed \
                     (apt-get install {package})"
                );
            }
        }
    });
}

/// The cached Debian 12 root filesystem, built first if missing or stale
/// (tests/testhost/build-root.sh). Once per process.
pub fn ensure_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        check_prerequisites();
        built_path("build-root.sh", &[])
    })
    .clone()
}

/// The booted hosts' root (`build-root.sh booted`) and their archive
/// stand-in (build-archive.sh), built first if missing or stale. Once per process.
pub fn ensure_booted_root() -> (PathBuf, PathBuf) {
    static ROOT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ROOT.get_or_init(|| {
        check_prerequisites();
        for (tool, package) in [("systemd-nspawn", "systemd-container"), ("ip", "iproute2")] {
            assert!(
                find_tool(tool).is_some(),
                "booted test host prerequisite missing: `{tool}` (apt-get install {package})"
            );
        }
        let root = built_path("build-root.sh", &["booted"]);
        let archive = built_path("build-archive.sh", &[&root.display().to_string()]);
        (root, archive)
    })
    .clone()
}

/// Run one of tests/testhost's build scripts; the path it prints last.
pub(crate) fn built_path(script: &str, args: &[&str]) -> PathBuf {
    let script = scripts_dir().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    if !out.status.success() || path.is_empty() {
        panic!("{} {args:?} failed ({}); its stderr is above. stdout: {stdout}", script.display(), out.status);
    }
    PathBuf::from(path)
}

pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

/// A port below Linux's ephemeral range (32768-60999), so it never collides with
/// outgoing connections; random so parallel test processes rarely pick the
/// same one (a collision is detected by start() and retried). Hence not
/// [`crate::net::free_port`], whose ports are ephemeral ones.
fn pick_port() -> u16 {
    loop {
        let port = 20000 + (random_u64() % 12000) as u16;
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
            return port;
        }
    }
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).trim().to_owned()
}

enum Started {
    Ready(Box<TestHost>),
    PortTaken,
}

/// boot.sh's exit code when the network it was given is in use.
const NETWORK_TAKEN: i32 = 3;

impl TestHost {
    /// Start a bare host; returns once sshd answers with an SSH banner.
    /// The reboot delay is `IMAGE_PROVISION_TESTHOST_REBOOT_DELAY` seconds (default 1).
    pub fn start(distro: Distro) -> TestHost {
        Self::start_inner(distro, None)
    }

    /// Like [`TestHost::start`], with the time sshd stays away during a reboot.
    pub fn start_with(distro: Distro, reboot_delay: Duration) -> TestHost {
        Self::start_inner(distro, Some(reboot_delay))
    }

    /// Boot a bare host under real systemd (tests/testhost/boot.sh): its
    /// own network (sshd on port 22 of [`TestHost::ip`]), journald, real
    /// `systemctl` and `reboot`, and the archive stand-in of real Debian
    /// packages as its only apt source, so the tool installs real Docker and
    /// compose v2 there. Returns once sshd answers. [`TestHost::kill_sshd`]
    /// is for chroot hosts only.
    pub fn boot(distro: Distro) -> TestHost {
        let (root, archive) = ensure_booted_root();
        for _ in 0..5 {
            let index = (random_u64() % 16384) as u16;
            match Self::try_boot(distro, &root, &archive, index) {
                Started::Ready(host) => return *host,
                Started::PortTaken => continue,
            }
        }
        panic!("booted test host: could not find a free network in 5 tries");
    }

    fn try_boot(distro: Distro, root: &Path, archive: &Path, index: u16) -> Started {
        let dir = tempfile::Builder::new()
            .prefix("image-provision-booted-")
            .tempdir()
            .expect("creating the test host's temporary directory");
        let ctl = dir.path().join("ctl");
        fs::create_dir(&ctl).expect("creating ctl/");
        let log = fs::File::create(ctl.join("supervisor.log")).expect("creating supervisor.log");
        let mut cmd = Command::new("bash");
        cmd.arg(scripts_dir().join("boot.sh"))
            .arg(dir.path())
            .arg(root)
            .arg(archive)
            .arg(index.to_string())
            .arg(distro.arg())
            .env("TESTHOST_OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // A process group of its own: a test runner that kills this test's
        // group (a timeout) leaves boot.sh alive to notice its owner is gone
        // and stop the host, which nspawn would otherwise outlive.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("spawning tests/testhost/boot.sh");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let ip = loop {
            let address = fs::read_to_string(ctl.join("address")).ok().and_then(|a| a.trim().parse().ok());
            // sshd answers early in the boot, but until systemd-user-sessions
            // has run, /run/nologin makes PAM refuse every user but root
            // (which a client sees as its key refused): ready once it is gone.
            if let Some(ip) = address
                && ctl.join("leader").exists()
                && ssh_banner_at(SocketAddr::from((ip, 22)))
                && logins_allowed(&ctl)
            {
                break ip;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.and_then(|s| s.code()) == Some(NETWORK_TAKEN) {
                return Started::PortTaken;
            }
            if exited.is_some() || Instant::now() > deadline {
                let logs = logs_of(&ctl);
                stop_booted(&ctl);
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "booted test host did not start ({}):\n{logs}",
                    match exited {
                        Some(status) => format!("boot.sh exited: {status}"),
                        None => format!("no SSH banner after {BOOT_TIMEOUT:?}"),
                    }
                );
            }
            sleep(Duration::from_millis(20));
        };
        Self::ready(dir, child, distro, ip, 22, true)
    }

    /// The started host, from what its script left in ctl/, with a
    /// known_hosts file trusting its key.
    fn ready(dir: tempfile::TempDir, child: Child, distro: Distro, ip: Ipv4Addr, port: u16, booted: bool) -> Started {
        let ctl = dir.path().join("ctl");
        let host = TestHost {
            ip,
            port,
            host_key_pub: read_trimmed(&ctl.join("host_ed25519_key.pub")),
            client_key: ctl.join("client_ed25519_key"),
            pwuser_password: read_trimmed(&ctl.join("pwuser_password")),
            distro,
            booted,
            supervisor_pid: read_trimmed(&ctl.join("supervisor.pid")).parse().expect("supervisor.pid"),
            merged: dir.path().join("merged"),
            ctl,
            child,
            services: std::sync::Mutex::new(Vec::new()),
            acme: std::sync::Mutex::new(0),
            dir,
        };
        fs::write(host.ctl.join("known_hosts"), host.known_hosts_line() + "\n").expect("writing known_hosts");
        Started::Ready(Box::new(host))
    }

    fn start_inner(distro: Distro, reboot_delay: Option<Duration>) -> TestHost {
        let root = ensure_root();
        for _ in 0..5 {
            match Self::try_start(distro, reboot_delay, &root) {
                Started::Ready(host) => return *host,
                Started::PortTaken => continue,
            }
        }
        panic!("test host: could not find a free port for sshd in 5 tries");
    }

    fn try_start(distro: Distro, reboot_delay: Option<Duration>, root: &Path) -> Started {
        let dir = tempfile::Builder::new()
            .prefix("image-provision-testhost-")
            .tempdir()
            .expect("creating the test host's temporary directory");
        let ctl = dir.path().join("ctl");
        fs::create_dir(&ctl).expect("creating ctl/");
        let log = fs::File::create(ctl.join("supervisor.log")).expect("creating supervisor.log");
        let port = pick_port();
        let mut cmd = Command::new("bash");
        cmd.arg(scripts_dir().join("start.sh"))
            .arg(dir.path())
            .arg(root)
            .arg(port.to_string())
            .arg(distro.arg())
            .env("TESTHOST_OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if let Some(delay) = reboot_delay {
            cmd.env("IMAGE_PROVISION_TESTHOST_REBOOT_DELAY", format!("{:.3}", delay.as_secs_f64()));
        }
        let mut child = cmd.spawn().expect("spawning tests/testhost/start.sh");

        let listening = format!("Server listening on 127.0.0.1 port {port}.");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let sshd_log = fs::read_to_string(ctl.join("sshd.log")).unwrap_or_default();
            let pid_file = ctl.join("supervisor.pid");
            if sshd_log.contains(&listening)
                && pid_file.exists()
                && ssh_banner_at(SocketAddr::from(([127, 0, 0, 1], port)))
            {
                break;
            }
            let port_taken = sshd_log.contains("Address already in use");
            let exited = child.try_wait().ok().flatten();
            if port_taken || exited.is_some() || Instant::now() > deadline {
                let logs = logs_of(&ctl);
                if let Ok(pid) = fs::read_to_string(&pid_file) {
                    kill_pid(pid.trim());
                }
                let _ = child.kill();
                let _ = child.wait();
                if port_taken {
                    return Started::PortTaken;
                }
                panic!(
                    "test host did not start ({}):\n{logs}",
                    match exited {
                        Some(status) => format!("start.sh exited: {status}"),
                        None => format!("no SSH banner on 127.0.0.1:{port} after {START_TIMEOUT:?}"),
                    }
                );
            }
            sleep(Duration::from_millis(10));
        }

        Self::ready(dir, child, distro, Ipv4Addr::LOCALHOST, port, false)
    }

    /// "IP:PORT": "127.0.0.1:PORT" on a chroot host, "10.x.y.z:22" on a booted one.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn sock_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }

    /// Whether this host runs real systemd ([`TestHost::boot`]).
    pub fn is_booted(&self) -> bool {
        self.booted
    }

    /// The user a cloud image of this distro would give: "admin" on Debian,
    /// "ubuntu" on the Ubuntu stand-in (both have passwordless sudo).
    pub fn default_user(&self) -> &'static str {
        match self.distro {
            Distro::Debian12 => "admin",
            Distro::Ubuntu2204Standin => "ubuntu",
        }
    }

    /// "[127.0.0.1]:PORT ssh-ed25519 AAAA...", or "IP ssh-ed25519 AAAA..."
    /// for port 22 (OpenSSH's known_hosts format).
    pub fn known_hosts_line(&self) -> String {
        if self.port == 22 {
            format!("{} {}", self.ip, self.host_key_pub)
        } else {
            format!("[{}]:{} {}", self.ip, self.port, self.host_key_pub)
        }
    }

    /// A known_hosts file holding [`TestHost::known_hosts_line`].
    pub fn known_hosts_file(&self) -> PathBuf {
        self.ctl.join("known_hosts")
    }

    /// OpenSSH's client, ready to run a command on the host as `user`
    /// (append the remote command with `.arg(...)`). Needs openssh-client.
    pub fn ssh_command(&self, user: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts_file().display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5"])
            .args(["-o", "LogLevel=ERROR", "-F", "/dev/null"])
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@{}", self.ip))
            .stdin(Stdio::null());
        cmd
    }

    /// `command_line` over SSH as `user` with OpenSSH's client, `stdin`
    /// fed to it: a command as the tool sends one (`Cmd::render`, with
    /// `Cmd::stdin_to_send` as `stdin`). Its output, whatever its status.
    pub fn ssh_with_stdin(&self, user: &str, command_line: &str, stdin: &[u8]) -> Output {
        let mut child = self
            .ssh_command(user)
            .arg(command_line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ssh (install openssh-client)");
        child.stdin.take().unwrap().write_all(stdin).expect("feeding ssh");
        child.wait_with_output().expect("waiting for ssh")
    }

    /// This host's directory on the machine (ctl/ holds its logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The supervisor's and sshd's logs, for failure messages.
    pub fn logs(&self) -> String {
        logs_of(&self.ctl)
    }

    /// Where the host's file `path` is seen from the machine (through the
    /// root of a process inside the host; a booted host's changes at each
    /// reboot), for reading a file as it grows without a command per read.
    pub fn path_from_machine(&self, path: &str) -> PathBuf {
        if self.booted {
            return PathBuf::from(format!("/proc/{}/root{path}", read_trimmed(&self.ctl.join("leader"))));
        }
        PathBuf::from(format!("/proc/{}/root{}{path}", self.supervisor_pid, self.merged.display()))
    }

    /// A command run as root inside the host (its namespaces and chroot), not over SSH.
    fn inside(&self) -> Command {
        if self.booted {
            // The namespaces of this boot's PID 1: its root is the host's.
            let leader = read_trimmed(&self.ctl.join("leader"));
            let mut cmd = Command::new("nsenter");
            cmd.args(["-t", &leader, "-a", "--", "env", "-i"])
                .arg(format!("PATH={CHROOT_PATH}"))
                .args(["HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"])
                .stdin(Stdio::null());
            return cmd;
        }
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.supervisor_pid.to_string())
            .args(["-m", "-p", "-u", "--", "env", "-i"])
            .arg(format!("PATH={CHROOT_PATH}"))
            .args(["HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8", "chroot"])
            .arg(&self.merged)
            .stdin(Stdio::null());
        cmd
    }

    /// Run a bash script as root inside the host (not over SSH), for setting up
    /// and checking host state. Returns its output whatever the exit status.
    pub fn sh(&self, script: &str) -> Output {
        self.inside().args(["/bin/bash", "-c", script]).output().expect("running nsenter")
    }

    /// Like [`TestHost::sh`], but panics unless the script succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        if !out.status.success() {
            panic!(
                "script failed on the test host ({}):\n{script}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The content of a file inside the host (panics if it cannot be read).
    pub fn read(&self, path: &str) -> Vec<u8> {
        let out = self.inside().args(["/bin/cat", "--", path]).output().expect("running nsenter");
        if !out.status.success() {
            panic!("reading {path} on the test host: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        out.stdout
    }

    /// Whether a path exists inside the host.
    pub fn exists(&self, path: &str) -> bool {
        let out = self.inside().args(["/usr/bin/test", "-e", path]).output().expect("nsenter");
        out.status.success()
    }

    /// Write a file inside the host as root (parent directories created).
    pub fn write(&self, path: &str, contents: &[u8]) {
        let mut child = self
            .inside()
            .args(["/bin/bash", "-c", r#"mkdir -p -- "$(dirname -- "$1")" && cat >"$1""#])
            .args(["bash", path])
            .stdin(Stdio::piped())
            .spawn()
            .expect("running nsenter");
        child.stdin.take().unwrap().write_all(contents).expect("writing to the test host");
        let status = child.wait().expect("waiting for nsenter");
        assert!(status.success(), "writing {path} on the test host failed: {status}");
    }

    /// Add the local apt repository of stand-in packages
    /// (tests/testhost/standins/build-repo.sh: nvidia-driver-580-server,
    /// -570-server and -535-server, their nvidia-utils, nvidia-driver, nvidia-smi,
    /// nvidia-container-toolkit)
    /// to the host: the .debs in /srv/standin-apt and
    /// `deb [trusted=yes] file:/srv/standin-apt ./` in
    /// /etc/apt/sources.list.d/standin.list. Packages install after `apt-get update`.
    pub fn enable_standin_repo(&self) {
        let inside = format!("/proc/{}/root{}/srv/standin-apt", self.supervisor_pid, self.merged.display());
        let script = scripts_dir().join("standins/build-repo.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&inside)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "building the stand-in apt repository failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.write(
            "/etc/apt/sources.list.d/standin.list",
            b"# image-provision test host: stand-in packages (tests/testhost/standins)\n\
              deb [trusted=yes] file:/srv/standin-apt ./\n",
        );
    }

    /// Everything `image-provision bootstrap` needs that a test host lacks
    /// (tests/testhost/standins): the stand-in Docker packages
    /// (build-docker-debs.sh) added to the repository of
    /// [`TestHost::enable_standin_repo`], which this also enables; a signed
    /// copy of that repository in /srv/standin-signed with its key at
    /// /srv/standin-signed/key.asc (sign-repo.sh), for the Docker repository
    /// option, and the same again as /srv/standin-nvidia for the NVIDIA one; and `systemctl` (no systemd here) and `lspci` (one
    /// NVIDIA A10G) in /usr/bin.
    /// [`TestHost::enable_bootstrap_standins`], with apt pinned to prefer the
    /// stand-ins over Debian's own packages of the same names (Debian's
    /// non-free nvidia-driver becomes installable once bootstrap enables
    /// non-free).
    pub fn enable_pinned_bootstrap_standins(&self) {
        self.enable_bootstrap_standins();
        self.write(
            "/etc/apt/preferences.d/standin.pref",
            b"# image-provision tests: the stand-ins (local file: repositories) win\n\
              Package: nvidia-driver nvidia-smi nvidia-driver-580-server nvidia-utils-580-server nvidia-driver-570-server nvidia-utils-570-server nvidia-driver-535-server nvidia-utils-535-server nvidia-container-toolkit\n\
              Pin: origin \"\"\n\
              Pin-Priority: 1001\n",
        );
    }

    pub fn enable_bootstrap_standins(&self) {
        let inside = |p: &str| format!("/proc/{}/root{}{p}", self.supervisor_pid, self.merged.display());
        let run = |script: &str, args: &[String]| {
            let path = scripts_dir().join("standins").join(script);
            let out = Command::new("bash")
                .arg(&path)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
            assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        // A booted host installs real Docker from its archive stand-in and
        // has real systemd: no Docker or systemctl stand-ins there.
        if !self.booted {
            run("build-docker-debs.sh", &[inside("/srv/standin-apt")]);
        }
        self.enable_standin_repo();
        run("sign-repo.sh", &[inside("/srv/standin-apt"), inside("/srv/standin-signed")]);
        // The same signed repository under a second URI, for the NVIDIA
        // option: apt refuses one URI with two different signed-by keys.
        self.sh_ok("ln -sfn standin-signed /srv/standin-nvidia");
        let tools: &[&str] = if self.booted { &["lspci"] } else { &["systemctl", "lspci"] };
        for tool in tools {
            let text = fs::read(scripts_dir().join("standins").join(tool))
                .unwrap_or_else(|e| panic!("reading the {tool} stand-in: {e}"));
            self.write(&format!("/usr/bin/{tool}"), &text);
            self.sh_ok(&format!("chmod 0755 /usr/bin/{tool}"));
        }
    }

    /// The IMAGE-server stand-ins (tests/testhost/standins): the stand-in
    /// repository (build-image-server.sh) as
    /// /srv/github/Shared-Reality-Lab/IMAGE-server.git, and git's HTTPS
    /// transport replaced by the git-remote-https stand-in, which serves
    /// https://github.com/OWNER/REPO from /srv/github. The git package's own
    /// helper is diverted aside first (dpkg-divert), so installing git
    /// later keeps the stand-in. A URL rewrite in git's config could not do
    /// this: git applies one `insteadOf` rewrite, never a second, so the
    /// submodule's SSH URL, rewritten to HTTPS by bootstrap, would not be
    /// rewritten again to a local path. A copy of the repository made
    /// private (the sha256 of `USER:TOKEN` in its `standin-private` file)
    /// is served only to a git that gives that credential, as GitHub serves
    /// a private repository (see the stand-in's header).
    pub fn enable_image_server_standins(&self) {
        let inside = format!("/proc/{}/root{}/srv", self.supervisor_pid, self.merged.display());
        let script = scripts_dir().join("standins/build-image-server.sh");
        // Built here and copied in: git resolves /proc/PID/root to the
        // path as the host sees it, which does not exist out here.
        let built = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"bash "$1" "$2/github" >/dev/null && mkdir -p "$3" && cp -a "$2/github" "$3/""#)
            .args(["bash", &script.display().to_string(), &built.path().display().to_string(), &inside])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "building the stand-in IMAGE-server repository failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let helper = fs::read(scripts_dir().join("standins/git-remote-https"))
            .unwrap_or_else(|e| panic!("reading the git-remote-https stand-in: {e}"));
        self.sh_ok(
            "dpkg-divert --quiet --local --rename --divert /usr/lib/git-core/git-remote-https.distrib \
             --add /usr/lib/git-core/git-remote-https",
        );
        self.write("/usr/lib/git-core/git-remote-https", &helper);
        self.sh_ok("chmod 0755 /usr/lib/git-core/git-remote-https");
    }

    /// Serve ghcr.io to a booted host from a real registry (Debian's
    /// docker-registry) holding the stand-in IMAGE service images under
    /// their real names (tests/testhost/registry/build-registry.sh), the
    /// way dockerd meets the real one: HTTPS on port 443 with a certificate
    /// for ghcr.io from a test CA the host trusts for that registry
    /// (/etc/docker/certs.d/ghcr.io/ca.crt), at the machine's end of the
    /// host's network, which the host's /etc/hosts gives as ghcr.io. Not a
    /// loopback address: dockerd skips certificate checks for 127.0.0.0/8.
    /// The registry runs on the machine until the host is dropped.
    pub fn enable_registry(&self) {
        self.registry_up(false)
    }

    /// [`TestHost::enable_registry`] from a copy of the registry's storage
    /// of this host's own, which [`TestHost::publish_image`] changes: for
    /// the tests that need a newer `latest` (update and its rollback).
    pub fn enable_own_registry(&self) {
        self.registry_up(true)
    }

    fn registry_up(&self, own: bool) {
        assert!(self.booted, "enable_registry is for booted hosts (TestHost::boot)");
        let (storage, ca) = registry_storage();
        let outer = self.outer_ip();
        let registry = if own {
            let copy = self.ctl.join("registry-storage");
            let out = Command::new("cp").arg("-a").arg(&storage).arg(&copy).output().expect("running cp");
            assert!(out.status.success(), "copying the registry's storage: {}", String::from_utf8_lossy(&out.stderr));
            serve_registry(&self.ctl.join("registry"), &copy, SocketAddr::from((outer, 443)))
        } else {
            start_registry(&self.ctl.join("registry"), outer)
        };
        self.services.lock().unwrap().push(registry);
        self.point_registries_here(&ca);
    }

    /// The host's side of the test registry: the tests' CA trusted for
    /// ghcr.io and Docker Hub, both names at the machine's end.
    fn point_registries_here(&self, ca: &Path) {
        let outer = self.outer_ip();
        // Docker Hub's endpoint checks the system's roots; ghcr.io's also
        // the registry's own directory, where a server's admin puts a CA.
        let ca_pem = fs::read(ca.join("ca.crt")).expect("the tests' ca.crt");
        self.write("/etc/docker/certs.d/ghcr.io/ca.crt", &ca_pem);
        self.trust_ca("image-provision-tests-ca", &ca_pem);
        self.sh_ok(&format!("echo '{outer} ghcr.io registry-1.docker.io' >>/etc/hosts"));
    }

    /// [`TestHost::enable_registry`] with Docker Hub's own answers in front
    /// (tests/testhost/registry/dockerhub-standin.py at the machine's end,
    /// port 443, the real registry behind it on port 4443): token
    /// authentication, the one account `account` ("USER:TOKEN", kept in a
    /// file of mode 0600), and Docker Hub's pull limit once
    /// `anonymous_pulls` anonymous manifest requests have been answered.
    /// ghcr.io's requests pass through. Its request log:
    /// [`TestHost::docker_hub_requests`].
    pub fn enable_registry_behind_docker_hub(&self, account: &str, anonymous_pulls: u32) {
        assert!(self.booted, "enable_registry_behind_docker_hub is for booted hosts (TestHost::boot)");
        let (storage, ca) = registry_storage();
        let outer = self.outer_ip();
        let backend = SocketAddr::from((outer, 4443));
        let registry = serve_registry(&self.ctl.join("registry"), &storage, backend);
        self.services.lock().unwrap().push(registry);
        let dir = self.ctl.join("dockerhub");
        issue_test_cert(&ca, &dir, "DNS:ghcr.io,DNS:registry-1.docker.io");
        let account_file = dir.join("account");
        fs::write(&account_file, account).expect("writing the account file");
        fs::set_permissions(&account_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let arg = |p: &Path| p.display().to_string();
        let script = arg(&scripts_dir().join("registry/dockerhub-standin.py"));
        let hub = spawn_watched(
            &dir,
            "dockerhub",
            &[
                "python3",
                &script,
                &outer.to_string(),
                "443",
                &arg(&dir.join("server.crt")),
                &arg(&dir.join("server.key")),
                &arg(&ca.join("ca.crt")),
                &format!("https://{backend}"),
                &arg(&account_file),
                &anonymous_pulls.to_string(),
            ],
            &[],
        );
        wait_for_listener(SocketAddr::from((outer, 443)), &dir.join("dockerhub.log"));
        self.services.lock().unwrap().push(hub);
        self.point_registries_here(&ca);
    }

    /// The requests the Docker Hub stand-in answered, one line each
    /// ("registry-1.docker.io GET /v2/library/traefik/manifests/v3.1 auth=anonymous -> 429").
    pub fn docker_hub_requests(&self) -> Vec<String> {
        let log = fs::read_to_string(self.ctl.join("dockerhub/dockerhub.log")).unwrap_or_default();
        log.lines().filter(|l| !l.starts_with("listening")).map(str::to_owned).collect()
    }

    /// A Docker Hub mirror for a booted host, at https://ghcr.io:PORT (the
    /// name Docker resolves to the machine's end): a real registry
    /// (Debian's docker-registry) serving the test registry's storage
    /// read-only, as a pull-through mirror serves what it holds. Returns
    /// its URL; its log: [`TestHost::registry_log`] with `port`.
    pub fn enable_registry_mirror(&self, port: u16) -> String {
        let (storage, _) = registry_storage();
        format!("https://{}", self.enable_extra_registry(&storage, port))
    }

    /// The log of the registry [`TestHost::enable_extra_registry`] (or
    /// [`TestHost::enable_registry_mirror`]) started at `port`.
    pub fn registry_log(&self, port: u16) -> String {
        fs::read_to_string(self.ctl.join(format!("registry-{port}/registry.log"))).unwrap_or_default()
    }

    /// After [`TestHost::enable_own_registry`]: a new version of `image`
    /// (e.g. "image-preprocessor-nominatim", below ghcr.io/shared-reality-lab)
    /// published as its `latest`, as a push to ghcr.io would: the same
    /// layers, its environment with `env` (NAME=VALUE) added
    /// (tests/testhost/registry/republish.py; STANDIN_HEALTH=never makes a
    /// release that never gets healthy). Returns its manifest digest.
    pub fn publish_image(&self, image: &str, env: &[&str]) -> String {
        let storage = self.ctl.join("registry-storage");
        assert!(storage.is_dir(), "publish_image needs enable_own_registry");
        let out = Command::new("python3")
            .arg(scripts_dir().join("registry/republish.py"))
            .arg(&storage)
            .arg(format!("shared-reality-lab/{image}"))
            .arg("latest")
            .args(env)
            .output()
            .expect("running republish.py");
        assert!(out.status.success(), "republish.py: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What the host's resolver answers for `name`: `address` (its
    /// /etc/hosts, which getent reads before DNS), replacing an earlier
    /// answer: the test's stand-in for the public DNS record of a domain.
    pub fn point_name(&self, name: &str, address: &str) {
        self.sh_ok(&format!("sed -i '/ {name}$/d' /etc/hosts && echo '{address} {name}' >>/etc/hosts"));
    }

    /// After [`TestHost::enable_registry`]: another registry storage (e.g.
    /// tests/testhost/registry/random-images.py's) served read-only beside
    /// it, at ghcr.io:PORT, trusted as the first; returns "ghcr.io:PORT",
    /// the images' registry part.
    pub fn enable_extra_registry(&self, storage: &Path, port: u16) -> String {
        let (_, ca) = registry_storage();
        let registry = serve_registry(
            &self.ctl.join(format!("registry-{port}")),
            storage,
            SocketAddr::from((self.outer_ip(), port)),
        );
        self.services.lock().unwrap().push(registry);
        let name = format!("ghcr.io:{port}");
        self.write(&format!("/etc/docker/certs.d/{name}/ca.crt"), &fs::read(ca.join("ca.crt")).expect("ca.crt"));
        name
    }

    /// Let's Encrypt's test server, pebble, for a booted host: its ACME
    /// directory (returned, for `--acme-server`) at the machine's end of the
    /// host's network, with a certificate from the tests' CA that the
    /// stand-in Traefik image trusts; its validation authority resolves
    /// every name to the host (pebble-challtestsrv as its DNS), so the
    /// HTTP-01 challenge for any domain really reaches the host's port 80.
    /// The host trusts pebble's root, so a certificate pebble issued
    /// passes the HTTPS health check there; the check then goes to the
    /// host's own 127.0.0.1, as on a real server. Until the host is dropped.
    /// Called again, another pebble (another CA, its own ports) beside the
    /// first: a change of ACME server.
    pub fn enable_acme(&self) -> String {
        assert!(self.booted, "enable_acme is for booted hosts (TestHost::boot)");
        let outer = self.outer_ip();
        let mut count = self.acme.lock().unwrap();
        let n = *count;
        let acme = start_acme(&self.ctl.join(format!("acme{n}")), outer, &format!("IP:{outer}"), self.ip, 80, n);
        self.services.lock().unwrap().extend(acme.services);
        self.trust_ca(&format!("pebble-root-{n}"), &acme.root);
        *count += 1;
        format!("https://{outer}:{}/dir", ACME_PORT + n)
    }

    /// The LLM the stack calls (tests/testhost/llm-standin.py: an
    /// OpenAI-compatible model list, as vLLM serves it, for `key` only) on
    /// the machine's end of a booted host's network, port 8000 as vLLM's;
    /// returns its LLM_URL. Its request log: [`TestHost::llm_requests`].
    pub fn enable_llm(&self, key: &str, models: &[&str]) -> String {
        use std::os::unix::fs::PermissionsExt;
        assert!(self.booted, "enable_llm is for booted hosts (TestHost::boot)");
        let outer = self.outer_ip();
        let dir = self.ctl.join("llm");
        fs::create_dir_all(&dir).expect("creating ctl/llm");
        let key_file = dir.join("key");
        fs::write(&key_file, key).expect("writing the LLM's key");
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod the LLM's key");
        let script = scripts_dir().join("llm-standin.py");
        let mut argv = vec![
            "python3".to_string(),
            script.display().to_string(),
            outer.to_string(),
            "8000".into(),
            key_file.display().to_string(),
        ];
        argv.extend(models.iter().map(|m| m.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let llm = spawn_watched(&dir, "llm", &argv, &[]);
        fs::write(dir.join("pid"), llm.id().to_string()).expect("writing the LLM's pid");
        self.services.lock().unwrap().push(llm);
        wait_for_listener(SocketAddr::from((outer, 8000)), &dir.join("llm.log"));
        format!("http://{outer}:8000/v1")
    }

    /// Stop the LLM [`TestHost::enable_llm`] started (an LLM that died):
    /// returns once nothing listens on its port (10 s at most).
    pub fn stop_llm(&self) {
        let pid = fs::read_to_string(self.ctl.join("llm/pid")).expect("enable_llm first");
        // spawn_watched made it the leader of its own process group.
        crate::kill_pid(&format!("-{}", pid.trim()));
        let addr = SocketAddr::from((self.outer_ip(), 8000));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            assert!(Instant::now() < deadline, "the LLM stand-in still listens on {addr} 10 s after it was killed");
            sleep(Duration::from_millis(50));
        }
    }

    /// The requests the LLM stand-in answered, one line each
    /// ("GET /v1/models auth=ok").
    pub fn llm_requests(&self) -> Vec<String> {
        fs::read_to_string(self.ctl.join("llm/llm.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Whether [`TestHost::enable_acme`] ran: Traefik on the host can get
    /// real certificates, and the HTTPS check goes to the host itself.
    pub fn has_acme(&self) -> bool {
        self.acme.lock().map(|g| *g > 0).unwrap_or(false)
    }

    /// The machine's end of a booted host's network.
    fn outer_ip(&self) -> Ipv4Addr {
        let o = self.ip.octets();
        Ipv4Addr::new(o[0], o[1], o[2], o[3] - 1)
    }

    /// Add a CA to the host's system roots (update-ca-certificates).
    fn trust_ca(&self, name: &str, pem: &[u8]) {
        self.write(&format!("/usr/local/share/ca-certificates/{name}.crt"), pem);
        self.sh_ok("update-ca-certificates >/dev/null 2>&1");
    }

    /// The lines of the stand-ins' call log (/var/log/standin/calls.log).
    pub fn calls(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.read("/var/log/standin/calls.log")).lines().map(str::to_owned).collect()
    }

    /// Cut the SSH connection that runs `program args` (exactly those words),
    /// once, before the call runs: tests/testhost/standins/cut-before,
    /// installed as /usr/local/sbin/PROGRAM in front of the real one (sudo's
    /// secure_path finds it first). Booted hosts only (a real sshd per
    /// connection to kill). [`TestHost::cuts`] says which cuts happened.
    pub fn cut_ssh_before(&self, program: &str, args: &str) {
        assert!(self.booted, "cut_ssh_before is for booted hosts (TestHost::boot)");
        let text = fs::read(scripts_dir().join("standins/cut-before"))
            .unwrap_or_else(|e| panic!("reading the cut-before interposer: {e}"));
        let path = format!("/usr/local/sbin/{program}");
        self.write(&path, &text);
        self.sh_ok(&format!("chmod 0755 {path}"));
        self.write(&format!("/var/lib/standin/hooks/cut-before-{program}"), args.as_bytes());
    }

    /// The cuts [`TestHost::cut_ssh_before`] made, a line each.
    pub fn cuts(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.read("/var/log/standin/cuts.log")).lines().map(str::to_owned).collect()
    }

    /// Install the `cloud-init` stand-in (tests/testhost/standins/cloud-init)
    /// at /usr/bin/cloud-init, running until `done_after` from now (this boot
    /// only) and then finishing with `result`: "done", "degraded" (done with
    /// recoverable errors, exit 2) or "error".
    pub fn install_cloud_init_standin(&self, done_after: Duration, result: &str) {
        let text = fs::read(scripts_dir().join("standins/cloud-init"))
            .unwrap_or_else(|e| panic!("reading the cloud-init stand-in: {e}"));
        self.write("/usr/bin/cloud-init", &text);
        self.sh_ok(&format!(
            "chmod 0755 /usr/bin/cloud-init && mkdir -p /run/standin/cloud-init && \
             echo $(( $(date +%s) + {} )) >/run/standin/cloud-init/done-at && \
             echo '{result}' >/run/standin/cloud-init/result",
            done_after.as_secs()
        ));
    }

    /// Hold a dpkg/apt lock file (e.g. /var/lib/dpkg/lock-frontend) from a
    /// process inside the host for `hold`, the way apt and unattended-upgrades
    /// do (an fcntl write lock, which apt itself waits for), and return once
    /// it is held. Released when the holder exits (or the host reboots).
    pub fn hold_lock(&self, path: &str, hold: Duration) {
        // perl-base is in every Debian root; struct flock on x86_64/arm64:
        // short type, short whence, (pad), off_t start, off_t len, pid_t pid, (pad).
        let script = format!(
            "nohup perl -e 'use Fcntl qw(:DEFAULT SEEK_SET); \
               open(my $fh, \">>\", $ARGV[0]) or die \"$ARGV[0]: $!\"; \
               my $lk = pack(\"s s x4 q q i x4\", F_WRLCK, SEEK_SET, 0, 0, 0); \
               fcntl($fh, F_SETLKW, $lk) or die \"lock: $!\"; \
               open(my $m, \">\", \"/run/standin-lock-held\"); close $m; \
               select(undef, undef, undef, $ARGV[1]); unlink \"/run/standin-lock-held\";' \
               {path} {secs} >/dev/null 2>&1 </dev/null &",
            secs = hold.as_secs_f64()
        );
        self.sh_ok(&script);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.exists("/run/standin-lock-held") {
            assert!(Instant::now() < deadline, "the lock holder did not take {path}");
            sleep(Duration::from_millis(20));
        }
    }

    /// Ask the supervisor to do something and wait until it has.
    fn request(&self, name: &str) {
        let file = self.ctl.join(format!("req-{name}"));
        fs::write(&file, b"").expect("writing a request");
        let deadline = Instant::now() + Duration::from_secs(15);
        while file.exists() {
            if Instant::now() > deadline {
                panic!("test host supervisor did not do {name}:\n{}", self.logs());
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Kill sshd and all its children (every SSH session and the commands they
    /// run) with SIGKILL, and leave sshd down until [`TestHost::restart_sshd`].
    pub fn kill_sshd(&self) {
        assert!(!self.booted, "kill_sshd is for chroot hosts (a booted host has systemctl)");
        self.request("kill-sshd");
    }

    /// Start sshd again (after [`TestHost::kill_sshd`]), or restart its listener
    /// like `systemctl restart ssh` (open sessions survive). Returns once it answers.
    pub fn restart_sshd(&self) {
        if self.booted {
            // Real systemd: its own restart (open sessions survive, as
            // Debian's ssh.service kills the listener only).
            self.sh_ok("systemctl restart ssh");
            return self.wait_for_sshd(Duration::from_secs(15));
        }
        let count = || self.sshd_log().matches("Server listening on").count();
        let before = count();
        self.request("restart-sshd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while count() <= before || !ssh_banner_at(self.sock_addr()) {
            if Instant::now() > deadline {
                panic!("sshd did not come back:\n{}", self.logs());
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Wait until sshd answers with a banner (e.g. after a reboot); panics after `timeout`.
    /// On a booted host, also until users may log in (no /run/nologin).
    pub fn wait_for_sshd(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !ssh_banner_at(self.sock_addr()) || (self.booted && !logins_allowed(&self.ctl)) {
            if Instant::now() > deadline {
                panic!("sshd did not answer within {timeout:?}:\n{}", self.logs());
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// The host's current boot id (what /proc/sys/kernel/random/boot_id says inside).
    pub fn boot_id(&self) -> String {
        if self.booted {
            return self.sh_ok("cat /proc/sys/kernel/random/boot_id").trim().to_owned();
        }
        read_trimmed(&self.ctl.join("boot_id"))
    }

    /// A booted host that powered itself off (not a reboot): systemd
    /// stopped, nspawn exited, boot.sh said so and ended.
    pub fn powered_off(&self) -> bool {
        self.booted && fs::read_to_string(self.ctl.join("supervisor.log")).is_ok_and(|l| l.contains("the host stopped"))
    }

    /// A booted host's whole console: systemd's boot and shutdown
    /// messages, and what units print there.
    pub fn console(&self) -> String {
        fs::read_to_string(self.ctl.join("console.log")).unwrap_or_default()
    }

    /// How many times the host has rebooted (also /var/lib/standin/reboots inside).
    pub fn reboots(&self) -> u32 {
        read_trimmed(&self.ctl.join("reboots")).parse().expect("ctl/reboots")
    }

    fn sshd_log(&self) -> String {
        fs::read_to_string(self.ctl.join("sshd.log")).unwrap_or_default()
    }
}

/// Run `argv` on the machine, logging to DIR/NAME.log, in a process group
/// of its own (end it with [`kill_pid`] of "-PID") beside a watcher that
/// ends it when this process goes.
pub(crate) fn spawn_watched(dir: &Path, name: &str, argv: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(
            r#"owner=$1; shift; "$@" & pid=$!
            while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
            kill "$pid" 2>/dev/null"#,
        )
        .arg("bash")
        .arg(std::process::id().to_string())
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join(format!("{name}.log"))).expect("a service's log"));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", argv[0]))
}

/// The test registry on the machine: Debian's docker-registry serving
/// [`registry_storage`] read-only at LISTEN:443, with a certificate from the
/// tests' CA for ghcr.io and registry-1.docker.io; config and log in DIR.
/// Returns once it listens (end it with [`kill_pid`] "-PID").
pub(crate) fn start_registry(dir: &Path, listen: Ipv4Addr) -> Child {
    let (storage, _) = registry_storage();
    serve_registry(dir, &storage, SocketAddr::from((listen, 443)))
}

/// Debian's docker-registry serving `storage` read-only at `addr` over
/// HTTPS, with a certificate from the tests' CA for ghcr.io and Docker
/// Hub's registry name; its files in `dir`.
pub(crate) fn serve_registry(dir: &Path, storage: &Path, addr: SocketAddr) -> Child {
    let (_, ca) = registry_storage();
    issue_test_cert(&ca, dir, "DNS:ghcr.io,DNS:registry-1.docker.io");
    let config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: true\n\
         http:\n  addr: {addr}\n  tls:\n    certificate: {dir}/server.crt\n    key: {dir}/server.key\n",
        storage.display(),
        dir = dir.display()
    );
    fs::write(dir.join("config.yml"), config).expect("writing the registry's config");
    let child = spawn_watched(
        dir,
        "registry",
        &["docker-registry", "serve", &dir.join("config.yml").display().to_string()],
        &[],
    );
    wait_for_listener(addr, &dir.join("registry.log"));
    child
}

/// pebble and its DNS, running on the machine ([`start_acme`]).
pub(crate) struct Acme {
    /// pebble-challtestsrv and pebble (end them with [`kill_pid`] "-PID").
    pub services: Vec<Child>,
    /// pebble's root, PEM: what a host trusts to accept what it issues.
    pub root: Vec<u8>,
}

/// pebble's ACME port; its management API's; its DNS's (pebble-challtestsrv),
/// whose own management API is 2 above. Another pebble on the same address
/// adds its `offset` to the first two, 10 times it to the third.
const ACME_PORT: u16 = 14000;
const ACME_MANAGEMENT_PORT: u16 = 15000;
const ACME_DNS_PORT: u16 = 8053;

/// Let's Encrypt's test server on the machine: pebble's ACME directory at
/// https://LISTEN:14000/dir with a certificate from the tests' CA for
/// `sans` (what the ACME client connects to), its management API on
/// LISTEN:15000; its validation authority asks pebble-challtestsrv
/// (LISTEN:8053), which answers every name with `answer`, and sends the
/// HTTP-01 challenge to port `http_port` there. Logs in DIR. `offset`
/// moves the ports (see [`ACME_PORT`]), for a second pebble, a second CA.
pub(crate) fn start_acme(
    dir: &Path,
    listen: Ipv4Addr,
    sans: &str,
    answer: Ipv4Addr,
    http_port: u16,
    offset: u16,
) -> Acme {
    let (_, ca) = registry_storage();
    issue_test_cert(&ca, dir, sans);
    let dns_port = ACME_DNS_PORT + 10 * offset;
    let dns = format!("{listen}:{dns_port}");
    let challtestsrv = spawn_watched(
        dir,
        "challtestsrv",
        &[
            "pebble-challtestsrv",
            "-defaultIPv4",
            &answer.to_string(),
            "-defaultIPv6",
            "",
            "-dns01",
            &dns,
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("{listen}:{}", dns_port + 2),
        ],
        &[],
    );
    fs::write(dir.join("pebble.json"), pebble_config(&listen, dir, http_port, offset))
        .expect("writing pebble's config");
    let pebble = spawn_watched(
        dir,
        "pebble",
        &["pebble", "-config", &dir.join("pebble.json").display().to_string(), "-dnsserver", &dns],
        // No random waits before validating, no nonces refused on purpose.
        &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
    );
    let management = ACME_MANAGEMENT_PORT + offset;
    wait_for_listener(SocketAddr::from((listen, management)), &dir.join("pebble.log"));
    let root = Command::new("curl")
        .args(["-fsS", "--cacert"])
        .arg(ca.join("ca.crt"))
        .arg(format!("https://{listen}:{management}/roots/0"))
        .output()
        .expect("running curl (apt-get install curl)");
    assert!(root.status.success(), "pebble's root: {}", String::from_utf8_lossy(&root.stderr));
    Acme { services: vec![challtestsrv, pebble], root: root.stdout }
}

/// The test registry's storage and the directory holding the tests' CA
/// (ca.crt, ca.key), built first if missing or stale
/// (tests/testhost/registry/build-registry.sh). Once per process.
pub(crate) fn registry_storage() -> (PathBuf, PathBuf) {
    static STORAGE: OnceLock<PathBuf> = OnceLock::new();
    let storage = STORAGE.get_or_init(|| built_path("registry/build-registry.sh", &[])).clone();
    let ca = storage.parent().expect("the storage's directory").to_path_buf();
    (storage, ca)
}

/// DIR/server.crt and server.key: a certificate for `sans` (openssl's
/// subjectAltName syntax, "DNS:a,IP:b") signed by the tests' CA in `ca`.
pub(crate) fn issue_test_cert(ca: &Path, dir: &Path, sans: &str) {
    fs::create_dir_all(dir).expect("creating a certificate's directory");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -e; cd "$1"
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -subj "/CN=image-provision test server" -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$2" >server.ext
            openssl x509 -req -in server.csr -CA "$3/ca.crt" -CAkey "$3/ca.key" -CAcreateserial \
                -CAserial server.srl -days 2 -extfile server.ext -out server.crt 2>/dev/null"#,
        )
        .args(["bash", &dir.display().to_string(), sans, &ca.display().to_string()])
        .output()
        .expect("running openssl (apt-get install openssl)");
    assert!(out.status.success(), "issuing a test certificate: {}", String::from_utf8_lossy(&out.stderr));
}

/// pebble's configuration: ACME on LISTEN:14000, its management API (roots)
/// on LISTEN:15000, its certificate DIR/server.crt, the HTTP-01 challenge
/// sent to port `http_port` of the name's address.
pub(crate) fn pebble_config(listen: &Ipv4Addr, dir: &Path, http_port: u16, offset: u16) -> String {
    format!(
        r#"{{"pebble": {{"listenAddress": "{listen}:{acme}", "managementListenAddress": "{listen}:{management}",
  "certificate": "{d}/server.crt", "privateKey": "{d}/server.key", "httpPort": {http_port}, "tlsPort": 443,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
        d = dir.display(),
        acme = ACME_PORT + offset,
        management = ACME_MANAGEMENT_PORT + offset,
    )
}

/// Wait until something accepts connections at `addr`; panics with `log`.
pub(crate) fn wait_for_listener(addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr}: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        sleep(Duration::from_millis(20));
    }
}

/// Whether a booted host lets users other than root log in: no
/// /run/nologin (systemd removes it when the boot reaches user sessions).
fn logins_allowed(ctl: &Path) -> bool {
    let Ok(leader) = fs::read_to_string(ctl.join("leader")) else { return false };
    Command::new("nsenter")
        .args(["-t", leader.trim(), "-m", "--", "test", "!", "-e", "/run/nologin"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Stop a booted host at once: SIGKILL to its PID 1 ends its PID namespace,
/// nspawn returns, and boot.sh, finding no reboot, exits.
fn stop_booted(ctl: &Path) {
    if let Ok(leader) = fs::read_to_string(ctl.join("leader")) {
        kill_pid(leader.trim());
    }
}

fn logs_of(ctl: &Path) -> String {
    let read = |name: &str| fs::read_to_string(ctl.join(name)).unwrap_or_default();
    let mut logs = format!("--- supervisor.log\n{}--- sshd.log\n{}", read("supervisor.log"), read("sshd.log"));
    // A booted host's console: systemd's boot and shutdown messages.
    let console = read("console.log");
    if !console.is_empty() {
        let tail: Vec<&str> = console.lines().rev().take(60).collect();
        logs += &format!("--- console.log (last lines)\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    logs
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // PID 1 of the host's PID namespace: when it dies, the kernel kills every
        // other process of the host, and the mount namespace (overlay, /proc,
        // boot_id) goes with the last of them. unshare waits for it. A booted
        // host's PID 1 is systemd under nspawn, ended first.
        if self.booted {
            stop_booted(&self.ctl);
        }
        kill_pid(&self.supervisor_pid.to_string());
        for mut service in self.services.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default() {
            kill_pid(&format!("-{}", service.id()));
            let _ = service.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` (the overlay's layers and ctl/) is removed when the fields drop.
    }
}
