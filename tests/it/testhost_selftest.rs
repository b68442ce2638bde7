//! Proves the test host harness (testsupport/src/testhost.rs) does what host-side
//! tests rely on, using OpenSSH's own client (package openssh-client).

use image_provision_testsupport::testhost::{Distro, TestHost};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn ssh(host: &TestHost, user: &str, command: &str) -> Output {
    assert!(Path::new("/usr/bin/ssh").exists(), "the self-test needs OpenSSH's client: apt-get install openssh-client");
    host.ssh_command(user).arg(command).output().expect("running ssh")
}

fn ssh_ok(host: &TestHost, user: &str, command: &str) -> String {
    let out = ssh(host, user, command);
    assert!(
        out.status.success(),
        "ssh {user}@{} {command:?}: {}\nstderr: {}\n{}",
        host.addr(),
        out.status,
        text(&out.stderr),
        host.logs()
    );
    text(&out.stdout)
}

fn start_timed(distro: Distro) -> TestHost {
    let t = Instant::now();
    let host = TestHost::start(distro);
    eprintln!("TestHost::start({distro:?}) took {:?}", t.elapsed());
    host
}

#[test]
fn root_admin_and_pwuser_log_in_and_sudo_behaves() {
    let host = start_timed(Distro::Debian12);
    assert_eq!(host.addr(), format!("127.0.0.1:{}", host.port));
    assert!(host.host_key_pub.starts_with("ssh-ed25519 AAAA"), "{}", host.host_key_pub);
    assert!(host.known_hosts_line().starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", host.port)));

    let t = Instant::now();
    ssh_ok(&host, "root", "true");
    eprintln!("ssh root@host true took {:?}", t.elapsed());
    assert_eq!(ssh_ok(&host, "root", "id -un"), "root");
    assert_eq!(ssh_ok(&host, "admin", "id -un"), "admin");
    assert_eq!(ssh_ok(&host, "admin", "sudo -n id -un"), "root");

    let out = ssh(&host, "pwuser", "sudo -n true");
    assert!(!out.status.success(), "sudo -n must fail for pwuser");
    assert!(text(&out.stderr).contains("password is required"), "{}", text(&out.stderr));
    let with_password = format!("echo '{}' | sudo -S -p '' id -un", host.pwuser_password);
    assert_eq!(ssh_ok(&host, "pwuser", &with_password), "root");

    // Public keys only: a password login is refused.
    let out = host
        .ssh_command("pwuser")
        .args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"])
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // It is Debian 12 with its own hostname, and nothing else runs in it.
    let os = text(&host.read("/etc/os-release"));
    assert!(os.contains("VERSION_CODENAME=bookworm"), "{os}");
    assert_eq!(host.sh_ok("hostname").trim(), "image-testhost");
    assert_eq!(host.sh_ok("cat /proc/sys/kernel/random/boot_id").trim(), host.boot_id());
    assert_eq!(host.reboots(), 0);
}

#[test]
fn hosts_are_isolated_from_each_other_and_from_the_machine() {
    let a = start_timed(Distro::Debian12);
    let b = start_timed(Distro::Debian12);
    assert_ne!(a.port, b.port);
    assert_ne!(a.host_key_pub, b.host_key_pub);
    assert_ne!(a.boot_id(), b.boot_id());
    let machine_boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_ne!(a.boot_id(), machine_boot_id.trim());

    let marker = format!("/var/docker/image/selftest-{}", a.port);
    ssh_ok(&a, "admin", &format!("sudo -n mkdir -p /var/docker/image && echo a | sudo -n tee {marker} >/dev/null"));
    assert_eq!(a.read(&marker), b"a\n");
    assert!(a.exists(&marker));
    assert!(!b.exists(&marker), "a file written on host a is visible on host b");
    assert!(!Path::new(&marker).exists(), "a file written on a test host is on the machine");

    a.write("/etc/apt/sources.list.d/x.list", b"# from the test\n");
    assert_eq!(text(&a.read("/etc/apt/sources.list.d/x.list")), "# from the test");
    assert!(!b.exists("/etc/apt/sources.list.d/x.list"));
    assert!(!Path::new("/etc/apt/sources.list.d/x.list").exists());

    // Each host sees only its own processes.
    let procs = a.sh_ok("ps -e -o comm= | sort -u");
    assert!(procs.contains("sshd"), "{procs}");
    assert!(!procs.contains("cargo"), "{procs}");

    // Dropping a host removes everything it had.
    let dir = a.dir().to_owned();
    drop(a);
    assert!(!dir.exists(), "{} left behind", dir.display());
    ssh_ok(&b, "root", "true");
}

#[test]
fn reboot_drops_the_connection_and_changes_the_boot_id() {
    let host = TestHost::start_with(Distro::Debian12, Duration::from_millis(500));
    let before = host.boot_id();
    assert_eq!(ssh_ok(&host, "root", "cat /proc/sys/kernel/random/boot_id"), before);

    let t = Instant::now();
    let out = ssh(&host, "root", "echo going; reboot; echo 'still here'");
    assert_eq!(out.status.code(), Some(255), "the connection must drop: {out:?}");
    assert_eq!(text(&out.stdout), "going");

    // Probe until it answers with a new boot id, like the remote layer will.
    let after = loop {
        assert!(t.elapsed() < Duration::from_secs(30), "no reconnect:\n{}", host.logs());
        let out = ssh(&host, "root", "cat /proc/sys/kernel/random/boot_id");
        if out.status.success() {
            break text(&out.stdout);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("reboot to reconnected took {:?}", t.elapsed());
    assert_ne!(after, before);
    assert_eq!(after, host.boot_id());
    assert_eq!(host.reboots(), 1);
    assert_eq!(text(&host.read("/var/lib/standin/reboots")), "1");
    let calls = text(&host.read("/var/log/standin/calls.log"));
    assert!(calls.ends_with("uid=0 reboot"), "{calls}");

    // shutdown -r now through sudo is a reboot too; a non-root reboot is refused.
    let out = ssh(&host, "admin", "/sbin/reboot");
    assert!(!out.status.success() && text(&out.stderr).contains("must be superuser"), "{out:?}");
    let out = ssh(&host, "admin", "sudo -n shutdown -h now");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let _ = ssh(&host, "admin", "sudo -n shutdown -r now");
    host.wait_for_sshd(Duration::from_secs(10));
    assert_eq!(host.reboots(), 2);
    assert_ne!(host.boot_id(), after);
    ssh_ok(&host, "admin", "true");
}

#[test]
fn kill_sshd_drops_sessions_until_restarted() {
    let host = TestHost::start(Distro::Debian12);
    let mut session = host.ssh_command("root").arg("echo started; sleep 60").stdout(Stdio::piped()).spawn().unwrap();
    // Wait until the command runs on the host.
    let t = Instant::now();
    while !host.sh("pgrep -x sleep").status.success() {
        assert!(t.elapsed() < Duration::from_secs(10), "the session never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let t = Instant::now();
    host.kill_sshd();
    let status = session.wait().unwrap();
    eprintln!("session ended {:?} after kill_sshd", t.elapsed());
    assert_eq!(status.code(), Some(255));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!host.sh("pgrep -x sleep").status.success(), "the session's command survived");
    assert_eq!(ssh(&host, "root", "true").status.code(), Some(255), "sshd must stay down");

    host.restart_sshd();
    ssh_ok(&host, "root", "true");
    // A restart with sshd up keeps open sessions, like systemctl restart ssh.
    host.restart_sshd();
    ssh_ok(&host, "admin", "true");
    assert_eq!(host.reboots(), 0);
}

#[test]
fn ubuntu_2204_standin_is_a_debian_root_saying_ubuntu_jammy() {
    // Stand-in: a Debian 12 root with Ubuntu 22.04's os-release; apt is Debian's.
    let host = start_timed(Distro::Ubuntu2204Standin);
    assert_eq!(host.default_user(), "ubuntu");
    let os = ssh_ok(&host, "ubuntu", ". /etc/os-release && echo $ID $VERSION_ID $VERSION_CODENAME");
    assert_eq!(os, "ubuntu 22.04 jammy");
    assert_eq!(ssh_ok(&host, "ubuntu", "sudo -n id -un"), "root");
    assert!(text(&host.read("/usr/lib/os-release")).contains("UBUNTU_CODENAME=jammy"));
}

#[test]
fn apt_installs_real_debian_packages() {
    // Debian's archive is reachable: what Debian has really installs.
    let host = TestHost::start(Distro::Debian12);
    assert!(!host.exists("/usr/bin/jq"));
    let t = Instant::now();
    ssh_ok(
        &host,
        "admin",
        "sudo -n env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get -q update && apt-get -qy install jq' >/dev/null",
    );
    eprintln!("apt-get update && install jq took {:?}", t.elapsed());
    assert_eq!(ssh_ok(&host, "admin", "echo '{\"a\":1}' | jq .a"), "1");
}

/// Reboot through the stand-in and wait until sshd is back.
fn reboot(host: &TestHost) {
    let before = host.reboots();
    let out = ssh(host, "root", "reboot");
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    host.wait_for_sshd(Duration::from_secs(30));
    assert_eq!(host.reboots(), before + 1);
}

#[test]
fn ubuntu_2204_standin_nvidia_packages_from_the_standin_repo_work_after_a_reboot() {
    // Stand-in host and stand-in packages: Ubuntu's package names served from
    // the harness's local apt repository, on a Debian root saying Ubuntu 22.04.
    let host = TestHost::start_with(Distro::Ubuntu2204Standin, Duration::from_millis(200));
    host.enable_standin_repo();
    ssh_ok(
        &host,
        "ubuntu",
        "sudo -n env DEBIAN_FRONTEND=noninteractive sh -c \
         'apt-get -q update && apt-get -qy install nvidia-driver-535-server nvidia-container-toolkit' >/dev/null",
    );

    // Installed, not loaded: the driver needs a reboot.
    let out = ssh(&host, "ubuntu", "nvidia-smi");
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert!(text(&out.stdout).contains("couldn't communicate with the NVIDIA driver"));

    reboot(&host);
    let table = ssh_ok(&host, "ubuntu", "nvidia-smi");
    assert!(table.contains("NVIDIA A10G"), "{table}");
    assert!(table.contains("Driver Version: 535.230.02"), "{table}");
    assert!(table.lines().skip(1).all(|l| l.is_empty() || l.chars().count() == 89), "{table}");
    assert_eq!(
        ssh_ok(&host, "ubuntu", "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader"),
        "NVIDIA A10G, 23028 MiB"
    );
    assert_eq!(
        ssh_ok(&host, "ubuntu", "nvidia-smi -L"),
        "GPU 0: NVIDIA A10G (UUID: GPU-5e6f7a8b-1c2d-3e4f-a5b6-c7d8e9f0a1b2)"
    );
    assert_eq!(ssh(&host, "ubuntu", "nvidia-smi --bogus").status.code(), Some(2));

    let out = ssh_ok(&host, "ubuntu", "sudo -n nvidia-ctk runtime configure --runtime=docker");
    assert!(out.contains("Wrote updated config to /etc/docker/daemon.json"), "{out}");
    let daemon = text(&host.read("/etc/docker/daemon.json"));
    assert!(daemon.contains("\"path\": \"nvidia-container-runtime\""), "{daemon}");

    let calls = text(&host.read("/var/log/standin/calls.log"));
    assert!(calls.contains("uid=1001 nvidia-smi --bogus"), "{calls}");
    assert!(calls.contains("uid=0 nvidia-ctk runtime configure --runtime=docker"), "{calls}");
}

#[test]
fn debian_12_nvidia_driver_standin_package_needs_a_reboot() {
    let host = TestHost::start_with(Distro::Debian12, Duration::from_millis(200));
    host.enable_standin_repo();
    host.sh_ok(
        "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -qy install nvidia-driver >/dev/null",
    );
    assert_eq!(ssh(&host, "admin", "nvidia-smi").status.code(), Some(9));
    reboot(&host);
    let version = ssh_ok(&host, "admin", "nvidia-smi --query-gpu=driver_version --format=csv,noheader");
    assert_eq!(version, "535.247.01");
}
