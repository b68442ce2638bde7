//! `image-provision bootstrap --host` against test hosts (tests/support/testhost.rs):
//! a real Debian 12 root under sshd, packages really installed from
//! deb.debian.org where Debian has them, and stand-ins only for what needs
//! hardware or a kernel (the GPU and its driver, Docker's daemon, systemd, a
//! reboot). The Docker and NVIDIA repositories are a signed local copy of the
//! stand-in repository, so the signed-by path is the real one.

#[path = "support/testhost.rs"]
mod testhost;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testhost::{Distro, TestHost};

const BIN: &str = env!("CARGO_BIN_EXE_image-provision");

/// A state directory trusting the host's key (strict checking, as a person
/// who verified it would have).
fn state_for(host: &TestHost) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("known_hosts"), host.known_hosts_line() + "\n").unwrap();
    state
}

fn bootstrap(host: &TestHost, user: &str, state: &Path, extra: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("bootstrap")
        .arg("--host")
        .arg(format!("{user}@127.0.0.1:{}", host.port))
        .arg("--identity")
        .arg(&host.client_key)
        .args(extra)
        .env("IMAGE_PROVISION_STATE_DIR", state)
        .env("IMAGE_PROVISION_DOCKER_REPO", "file:/srv/standin-signed /")
        .env("IMAGE_PROVISION_DOCKER_REPO_KEY", "file:///srv/standin-signed/key.asc")
        .env("IMAGE_PROVISION_NVIDIA_REPO", "file:/srv/standin-nvidia /")
        .env("IMAGE_PROVISION_NVIDIA_REPO_KEY", "file:///srv/standin-nvidia/key.asc")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("running image-provision");
    eprintln!(
        "--- bootstrap {user} {extra:?}: {} in {:.1}s\n--- stdout\n{}--- stderr\n{}",
        out.status,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The summary table's OUTCOME column, by step.
fn outcomes(o: &Output) -> Vec<(String, String)> {
    stdout(o)
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("log:"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let step = w.next()?.to_string();
            let mut outcome = w.next()?.to_string();
            if outcome == "would" {
                outcome.push_str(" change");
            }
            Some((step, outcome))
        })
        .collect()
}

fn calls(host: &TestHost, program: &str) -> Vec<String> {
    String::from_utf8_lossy(&host.read("/var/log/standin/calls.log"))
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(program))
        .map(str::to_owned)
        .collect()
}

/// Lines of `after` not in `before` and the reverse: empty when nothing changed.
fn changes(before: &str, after: &str) -> Vec<String> {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out: Vec<String> = b.difference(&a).map(|l| format!("- {l}")).collect();
    out.extend(a.difference(&b).map(|l| format!("+ {l}")));
    out
}

/// A fingerprint of the host's files (everything a bootstrap could change),
/// to compare before and after.
fn snapshot(host: &TestHost) -> String {
    // Leaves out sudo's own marker ~/.sudo_as_admin_successful (sudo writes
    // it whenever a member of group sudo uses it, even for `sudo -l`) and
    // directories' times (which that file's creation touches).
    host.sh_ok(
        "find /etc /usr /var/lib /var/cache/apt /srv /root /home /opt -xdev \
         -name .sudo_as_admin_successful -prune -o \
         \\( -type d -printf '%p dir %m %u\\n' \\) -o \
         -printf '%p %s %m %u %T@\\n' 2>/dev/null | sort",
    )
}

fn full_run(distro: Distro) {
    let host = TestHost::start(distro);
    host.enable_bootstrap_standins();
    let user = host.default_user();
    let state = state_for(&host);

    let first = bootstrap(&host, user, state.path(), &[]);
    assert!(first.status.success(), "first run failed");
    let steps = outcomes(&first);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["facts", "ready", "apt", "docker", "nvidia", "reboot", "verify"]);
    for (step, outcome) in &steps {
        let want = match step.as_str() {
            "facts" | "ready" | "verify" => "ok",
            _ => "changed",
        };
        assert_eq!(outcome, want, "step {step}");
    }
    assert!(stdout(&first).contains("NVIDIA A10G"), "verify reports the GPU");
    // The log file is in the state directory and its path is printed.
    let log_line = stdout(&first).lines().find(|l| l.starts_with("log: ")).unwrap().to_string();
    let log_path = log_line.trim_start_matches("log: ");
    assert!(log_path.starts_with(state.path().to_str().unwrap()), "{log_path}");
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("apt-get") && log.contains("--- stdout:"), "the log holds the remote output");

    // Real packages from deb.debian.org.
    for pkg in ["git", "jq", "curl", "python3-pip"] {
        host.sh_ok(&format!("dpkg-query -W -f='${{Status}}' {pkg} | grep -q 'install ok installed'"));
    }
    let docker_pkgs: &[&str] = match distro {
        Distro::Debian12 => &["docker-ce", "docker-compose-plugin"],
        Distro::Ubuntu2204Standin => &["docker.io", "docker-compose-v2"],
    };
    for pkg in docker_pkgs.iter().chain(&["nvidia-container-toolkit"]) {
        host.sh_ok(&format!("dpkg-query -W -f='${{Status}}' {pkg} | grep -q 'install ok installed'"));
    }
    let driver = match distro {
        Distro::Debian12 => "nvidia-driver",
        Distro::Ubuntu2204Standin => "nvidia-driver-535-server",
    };
    host.sh_ok(&format!("dpkg-query -W -f='${{Status}}' {driver} | grep -q 'install ok installed'"));
    assert!(host.sh_ok("getent group docker").trim().ends_with(user), "{user} in the docker group");
    assert!(host.sh_ok("cat /etc/docker/daemon.json").contains("nvidia-container-runtime"));
    // Exactly one reboot, and nvidia-smi verified after it.
    assert_eq!(host.reboots(), 1);
    assert_eq!(calls(&host, "reboot").len(), 1, "{:?}", calls(&host, "reboot"));
    assert!(calls(&host, "nvidia-ctk").iter().any(|c| c.contains("runtime configure --runtime=docker")));
    let log = String::from_utf8_lossy(&host.read("/var/log/standin/calls.log")).into_owned();
    let reboot_at = log.find(" reboot").unwrap();
    assert!(log[reboot_at..].contains("nvidia-smi --query-gpu=name,driver_version,memory.total"));
    // The Docker daemon was restarted after the runtime was registered.
    assert!(calls(&host, "systemctl").iter().any(|c| c.ends_with("restart docker")));

    // Second run: every step ok, nothing changed, no reboot.
    let started = Instant::now();
    let second = bootstrap(&host, user, state.path(), &[]);
    let took = started.elapsed();
    assert!(second.status.success());
    for (step, outcome) in outcomes(&second) {
        assert_eq!(outcome, "ok", "step {step} on the second run");
    }
    assert_eq!(host.reboots(), 1, "no reboot on the second run");
    eprintln!("converged re-run took {:.2}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(30), "a converged run is quick: {took:?}");
}

#[test]
fn debian12_bare_host_to_verified_gpu_then_converged() {
    full_run(Distro::Debian12);
}

/// The Ubuntu 22.04 STAND-IN (Debian's root with Ubuntu's os-release): takes
/// the Ubuntu branch (docker.io + docker-compose-v2, nvidia-driver-535-server).
#[test]
fn ubuntu2204_standin_bare_host_to_verified_gpu_then_converged() {
    full_run(Distro::Ubuntu2204Standin);
}

#[test]
fn failing_step_stops_with_command_and_stderr_then_next_run_finishes() {
    let host = TestHost::start(Distro::Debian12);
    host.enable_bootstrap_standins();
    let state = state_for(&host);
    // A repository that does not exist: apt-get update fails.
    host.write(
        "/etc/apt/sources.list.d/broken.list",
        b"deb [trusted=yes] file:/srv/no-such-repo ./\n",
    );
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("step apt failed"), "{err}");
    assert!(err.contains("sudo -n env DEBIAN_FRONTEND=noninteractive"), "the command: {err}");
    assert!(err.contains("apt-get") && err.contains("update"), "{err}");
    assert!(err.contains("no-such-repo"), "stderr tail: {err}");
    let steps = outcomes(&out);
    assert_eq!(steps.last().unwrap(), &("apt".to_string(), "failed".to_string()));

    host.sh_ok("rm /etc/apt/sources.list.d/broken.list");
    let again = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert!(again.status.success());
    let steps = outcomes(&again);
    assert_eq!(steps.len(), 7);
    assert!(steps.iter().any(|(s, o)| s == "nvidia" && o == "skipped"));
    assert!(stderr(&again).contains("--no-gpu: the IMAGE GPU services will not start"));
}

#[test]
fn user_without_passwordless_sudo_is_refused_clearly() {
    let host = TestHost::start(Distro::Debian12);
    let state = state_for(&host);
    let before = snapshot(&host);
    let out = bootstrap(&host, "pwuser", state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("pwuser cannot use sudo without a password"), "{err}");
    assert!(err.contains("NOPASSWD"), "{err}");
    assert_eq!(changes(&before, &snapshot(&host)), Vec::<String>::new(), "nothing changed");
}

#[test]
fn unsupported_distro_is_refused_and_nothing_changes() {
    let host = TestHost::start(Distro::Debian12);
    host.sh_ok("rm -f /etc/os-release; printf 'ID=fedora\\nVERSION_ID=40\\nPRETTY_NAME=\"Fedora Linux 40\"\\n' >/etc/os-release");
    let state = state_for(&host);
    let before = snapshot(&host);
    let out = bootstrap(&host, "admin", state.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Fedora Linux 40 is not supported"), "{err}");
    assert!(err.contains("--force-distro"), "{err}");
    assert_eq!(changes(&before, &snapshot(&host)), Vec::<String>::new(), "nothing changed");
}

#[test]
fn dry_run_on_a_bare_host_changes_nothing() {
    let host = TestHost::start(Distro::Debian12);
    host.enable_bootstrap_standins();
    let state = state_for(&host);
    let before = snapshot(&host);
    let out = bootstrap(&host, "admin", state.path(), &["--dry-run"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("apt: would run: sudo -n env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get"), "{text}");
    assert!(text.contains("docker: would run: sudo -n systemctl enable --now docker"), "{text}");
    assert!(text.contains("nvidia: would run: sudo -n nvidia-ctk runtime configure '--runtime=docker'"), "{text}");
    assert!(text.contains("reboot: would run: reboot and wait for the new boot"), "{text}");
    assert_eq!(changes(&before, &snapshot(&host)), Vec::<String>::new(), "nothing changed");
    assert_eq!(host.reboots(), 0);
}

#[test]
fn bad_host_string_is_a_usage_error() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["bootstrap", "--host", "admin@host:notaport"])
        .env("IMAGE_PROVISION_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid SSH target"), "{}", stderr(&out));
}
