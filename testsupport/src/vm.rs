//! A real virtual machine for the end-to-end test: qemu (software
//! emulation: this machine's /dev/kvm cannot run a stock kernel at a usable
//! speed) booting the image of tests/testhost/vm/build-image.sh, the tests'
//! stand-in for Ubuntu 22.04's EC2 image, with Debian's kernel, real
//! systemd, real cloud-init reading a NoCloud seed, and a real reboot (the
//! same qemu process, a new boot).
//!
//! What EC2 would give the instance, the test gives it: the user data that
//! `ec2 create` sent to RunInstances (read back from moto) and, as its
//! metadata, the instance id and the imported key pair's public key, served
//! as the NoCloud seed over HTTP. The machine serves the guest, on fixed
//! loopback ports that the guest reaches at 10.0.2.2 (qemu's user network),
//! so one VM runs at a time (a lock):
//!   18080  the archive stand-in (/archive) and the seed (/seed)
//!   443    the test registry, as ghcr.io and Docker Hub
//!   14000  pebble (its management API 15000, its DNS 8053)
//! SSH reaches the guest at 127.0.0.1:[`Vm::ssh_port`], its port 80 at
//! another forwarded port (pebble's HTTP-01 challenge goes there).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::net::{free_port, ssh_banner_at};
use crate::testhost::{
    built_path, ensure_booted_root, registry_storage, spawn_watched, start_acme, start_registry, wait_for_listener,
};
use crate::{find_tool, kill_pid};

/// The ACME directory as the guest sees it.
pub const ACME_URL: &str = "https://10.0.2.2:14000/dir";

/// The image and the machine's side: HTTP, the registry and pebble, ready for
/// one guest. Dropping it stops them and the guest.
pub struct Vm {
    image: PathBuf,
    dir: tempfile::TempDir,
    services: Vec<Child>,
    qemu: Option<Child>,
    /// 127.0.0.1:ssh_port reaches the guest's sshd.
    pub ssh_port: u16,
    http_port: u16,
    /// pebble's root (PEM), for the guest to trust once it is up.
    pebble_root: Vec<u8>,
    _lock: fs::File,
}

impl Vm {
    /// Build (or find) the image and start the machine's side.
    pub fn prepare() -> Vm {
        for (tool, package) in
            [("qemu-system-x86_64", "qemu-system-x86 (bookworm-backports)"), ("qemu-img", "qemu-utils")]
        {
            assert!(find_tool(tool).is_some(), "VM test prerequisite missing: `{tool}` (apt-get install {package})");
        }
        let (_, archive) = ensure_booted_root();
        let (_, ca) = registry_storage();
        let image = built_path("vm/build-image.sh", &[&archive.display().to_string(), &ca.display().to_string()]);
        let lock = lock_vm();
        let dir = tempfile::Builder::new().prefix("image-provision-vm-").tempdir().expect("a temporary directory");
        let serve = dir.path().join("serve");
        fs::create_dir_all(serve.join("seed")).expect("creating serve/seed");
        std::os::unix::fs::symlink(&archive, serve.join("archive")).expect("linking the archive");
        let mut services = vec![spawn_watched(
            dir.path(),
            "http",
            &[
                "python3",
                "-m",
                "http.server",
                "18080",
                "--bind",
                "127.0.0.1",
                "--directory",
                &serve.display().to_string(),
            ],
            &[],
        )];
        wait_for_listener(SocketAddr::from(([127, 0, 0, 1], 18080)), &dir.path().join("http.log"));

        services.push(start_registry(&dir.path().join("registry"), Ipv4Addr::LOCALHOST));

        // pebble validates http://DOMAIN:80/ on the guest: every name is
        // 127.0.0.1 to it, and the guest's port 80 a forwarded port here.
        let http_port = free_port();
        let acme = start_acme(
            &dir.path().join("acme"),
            Ipv4Addr::LOCALHOST,
            "IP:10.0.2.2,IP:127.0.0.1",
            Ipv4Addr::LOCALHOST,
            http_port,
            0,
        );
        services.extend(acme.services);
        Vm { image, dir, services, qemu: None, ssh_port: free_port(), http_port, pebble_root: acme.root, _lock: lock }
    }

    /// "127.0.0.1:PORT", for IMAGE_PROVISION_TEST_SSH_ADDR.
    pub fn ssh_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ssh_port)
    }

    /// The directory with the guest's console log and the services' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Boot the guest with this NoCloud seed: `user_data` exactly as given,
    /// and meta-data naming the instance and the public keys of its key pair.
    pub fn boot(&mut self, instance_id: &str, user_data: &[u8], public_keys: &[String]) {
        let seed = self.dir.path().join("serve/seed");
        fs::write(seed.join("user-data"), user_data).expect("user-data");
        let mut meta = format!("instance-id: {instance_id}\nlocal-hostname: image-vm\npublic-keys:\n");
        for key in public_keys {
            meta += &format!("  - {}\n", key.trim());
        }
        fs::write(seed.join("meta-data"), meta).expect("meta-data");
        fs::write(seed.join("vendor-data"), "").expect("vendor-data");
        let disk = self.dir.path().join("disk.qcow2");
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(self.image.join("root.img"))
            .arg(&disk)
            .output()
            .expect("qemu-img");
        assert!(out.status.success(), "qemu-img: {}", String::from_utf8_lossy(&out.stderr));
        let console = self.dir.path().join("console.log");
        let image = |name: &str| self.image.join(name).display().to_string();
        let argv: Vec<String> = [
            "qemu-system-x86_64",
            "-machine",
            "q35,accel=tcg",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "3072",
            "-display",
            "none",
            "-monitor",
            "none",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([
            "-serial".into(),
            format!("file:{}", console.display()),
            "-kernel".into(),
            image("vmlinuz"),
            "-initrd".into(),
            image("initrd.img"),
            "-append".into(),
            "root=/dev/vda rw console=ttyS0 ds=nocloud-net;s=http://10.0.2.2:18080/seed/".into(),
            "-drive".into(),
            format!("file={},if=virtio,format=qcow2", disk.display()),
            "-netdev".into(),
            format!(
                "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22,hostfwd=tcp:127.0.0.1:{}-:80",
                self.ssh_port, self.http_port
            ),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ])
        .collect();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        // Watched like the services: a test killed by its runner (a
        // timeout) must not leave qemu running.
        self.qemu = Some(spawn_watched(self.dir.path(), "qemu", &argv, &[]));
    }

    /// Whether the qemu process that booted the guest still runs (a reboot
    /// inside keeps it; qemu's watcher ends with it).
    pub fn qemu_running(&mut self) -> bool {
        self.qemu.as_mut().is_some_and(|q| q.try_wait().ok().flatten().is_none())
    }

    /// Wait until the guest's sshd answers; panics after `timeout`.
    pub fn wait_for_ssh(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !ssh_banner_at(SocketAddr::from(([127, 0, 0, 1], self.ssh_port))) {
            assert!(self.qemu_running(), "qemu exited:\n{}", self.logs());
            assert!(Instant::now() < deadline, "no SSH from the guest within {timeout:?}:\n{}", self.logs());
            sleep(Duration::from_millis(500));
        }
    }

    /// A command as root in the guest, over SSH with the harness's own key
    /// (the image's; not the tool's way in). Its output whatever the status.
    pub fn root_sh(&self, script: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(self.image.join("harness_ed25519_key"))
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-F", "/dev/null"])
            .args(["-p", &self.ssh_port.to_string(), "root@127.0.0.1"])
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("running ssh")
    }

    /// Like [`Vm::root_sh`], panicking unless it succeeds; its stdout.
    pub fn root_sh_ok(&self, script: &str) -> String {
        let out = self.root_sh(script);
        assert!(
            out.status.success(),
            "in the guest: {script}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Have the guest trust pebble's root (what its HTTPS check needs to
    /// accept the certificate Traefik gets), as the booted hosts do.
    pub fn trust_pebble(&self) {
        let pem = String::from_utf8_lossy(&self.pebble_root).into_owned();
        self.root_sh_ok(&format!(
            "cat >/usr/local/share/ca-certificates/pebble-root.crt <<'PEM'\n{pem}PEM\nupdate-ca-certificates >/dev/null 2>&1"
        ));
    }

    /// The console's last lines and qemu's errors, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let console = read("console.log");
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        format!(
            "--- qemu.log\n{}--- console.log (last lines)\n{}\n",
            read("qemu.log"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            kill_pid(&format!("-{}", qemu.id()));
            let _ = qemu.wait();
        }
        for mut service in self.services.drain(..) {
            kill_pid(&format!("-{}", service.id()));
            let _ = service.wait();
        }
    }
}

/// One VM at a time: its services take fixed loopback ports.
fn lock_vm() -> fs::File {
    let cache = std::env::var_os("IMAGE_PROVISION_TESTHOST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/image-provision-testhost"));
    fs::create_dir_all(&cache).expect("the cache directory");
    let file = fs::File::create(cache.join("vm.lock")).expect("vm.lock");
    // Held until the Vm drops; a second VM test waits here.
    file.lock().expect("locking vm.lock");
    file
}
