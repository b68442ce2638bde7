//! `image-provision bootstrap --host` against test hosts (testsupport/src/testhost.rs):
//! a real Debian 12 root under sshd, packages really installed from
//! deb.debian.org where Debian has them, and stand-ins only for what needs
//! hardware or a kernel (the GPU and its driver, Docker's daemon, systemd, a
//! reboot). The Docker and NVIDIA repositories are a signed local copy of the
//! stand-in repository, so the signed-by path is the real one.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use image_provision_testsupport::cli::{self, outcomes, state_for, stderr, stdout};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

/// The bootstrap stand-ins, preferred over Debian's own packages of the same
/// names: with non-free enabled (the NVIDIA step does it on Debian), the real
/// nvidia-driver is in reach too, and needs a kernel and a GPU.
fn enable_standins(host: &TestHost) {
    host.enable_pinned_bootstrap_standins();
}

fn bootstrap(host: &TestHost, user: &str, state: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = ["bootstrap"].into_iter().chain(extra.iter().copied()).collect();
    let mut cmd = cli::on_host(BIN, host, user, state, &args);
    // Part 1's steps only; the IMAGE steps are tested in bootstrap_image.rs.
    cmd.env("IMAGE_PROVISION_NO_STACK", "1");
    cli::run(&mut cmd, &format!("bootstrap {user} {extra:?}"))
}

fn calls(host: &TestHost, program: &str) -> Vec<String> {
    String::from_utf8_lossy(&host.read("/var/log/standin/calls.log"))
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(program))
        .map(str::to_owned)
        .collect()
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

/// [`snapshot`] without the facts' caches (~/.cache/image-provision): a run
/// that reads the host's facts keeps its slow answers there, also one that
/// then stops at the host step (docs/reference.md, "Files"); a dry run does
/// not, and its test compares the whole [`snapshot`].
fn snapshot_but_caches(host: &TestHost) -> String {
    let cache =
        |l: &str| l.contains("/.cache/image-provision") || l.split(' ').next().is_some_and(|p| p.ends_with("/.cache"));
    snapshot(host).lines().filter(|l| !cache(l)).map(|l| format!("{l}\n")).collect()
}

fn full_run(distro: Distro) {
    let host = TestHost::start(distro);
    enable_standins(&host);
    let user = host.default_user();
    let state = state_for(&host);

    let first = bootstrap(&host, user, state.path(), &[]);
    assert!(first.status.success(), "first run failed");
    let steps = outcomes(&first);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["host", "ready", "apt", "docker", "nvidia", "reboot", "gpu-check"]);
    for (step, outcome) in &steps {
        let want = match step.as_str() {
            "host" | "ready" | "gpu-check" => "ok",
            _ => "changed",
        };
        assert_eq!(outcome, want, "step {step}");
    }
    assert!(stdout(&first).contains("NVIDIA A10G"), "the GPU check reports the GPU");
    // The log file is in the state directory and its path is printed.
    let log_line = stdout(&first).lines().find(|l| l.starts_with("log: ")).unwrap().to_string();
    let log_path = log_line.trim_start_matches("log: ");
    assert!(log_path.starts_with(state.path().to_str().unwrap()), "{log_path}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log holds every command's output");
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
        Distro::Ubuntu2204Standin => "nvidia-driver-580-server",
    };
    // Installed and held against unattended upgrades (apt-mark hold).
    host.sh_ok(&format!("dpkg-query -W -f='${{Status}}' {driver} | grep -q 'hold ok installed'"));
    assert!(host.sh_ok("apt-mark showhold").lines().any(|l| l == driver), "{driver} held");
    assert!(host.sh_ok("getent group docker").trim().ends_with(user), "{user} in the docker group");
    assert!(host.sh_ok("cat /etc/docker/daemon.json").contains("nvidia-container-runtime"));
    if distro == Distro::Debian12 {
        // nvidia-driver is in non-free: every entry of Debian's archive now
        // carries contrib, non-free and non-free-firmware.
        let sources = String::from_utf8_lossy(&host.read("/etc/apt/sources.list")).into_owned();
        let debian: Vec<&str> = sources.lines().filter(|l| l.starts_with("deb http://deb.debian.org/")).collect();
        assert_eq!(debian.len(), 3, "{sources}");
        for line in debian {
            assert!(line.ends_with(" main contrib non-free non-free-firmware"), "{line}");
        }
        assert!(stdout(&first).contains("enable contrib non-free non-free-firmware in /etc/apt/sources.list"));
    }
    let sources_before = host.sh_ok("stat -c '%n %s %Y %a' /etc/apt/sources.list /etc/apt/sources.list.d/*");
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
    assert_eq!(
        host.sh_ok("stat -c '%n %s %Y %a' /etc/apt/sources.list /etc/apt/sources.list.d/*"),
        sources_before,
        "the second run leaves the apt sources alone"
    );
    eprintln!("converged re-run took {:.2}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(30), "a converged run is quick: {took:?}");

    // verify on this --no-stack server: healthy on Docker and the GPU alone;
    // update has nothing to do and says so before connecting.
    let verify = cli::run(
        &mut cli::on_host(BIN, &host, user, state.path(), &["verify", "--no-stack", "--json"]),
        "verify --no-stack",
    );
    assert_eq!(verify.status.code(), Some(0), "verify --no-stack: healthy");
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let branch = if distro == Distro::Debian12 { "535." } else { "580." };
    assert_eq!(v["driver_version"].as_str().map(|d| d.starts_with(branch)), Some(true), "{v}");
    assert_eq!(v["docker_nvidia_runtime"], true);
    let calls_before = host.calls().len();
    let update =
        cli::run(&mut cli::on_host(BIN, &host, user, state.path(), &["update", "--no-stack"]), "update --no-stack");
    assert_eq!(update.status.code(), Some(2));
    assert!(stderr(&update).contains("this server has none (--no-stack)"), "{}", stderr(&update));
    assert_eq!(host.calls().len(), calls_before, "update --no-stack ran nothing");

    // An upgrade appears: dpkg's status now says jq is older than the
    // archive's (same length, so only the status file's inode and mtime
    // move). The facts keep apt's upgradable count keyed by
    // dpkg's and apt's state, so the next run sees it and upgrades.
    let jq = host.sh_ok("dpkg-query -W -f='${Version}' jq");
    // The last character replaced by "~", which dpkg sorts before anything.
    let older = format!("{}~", &jq[..jq.len() - 1]);
    host.sh_ok(&format!(
        "awk -v old='{older}' '/^Package: /{{p=$2}} p==\"jq\" && /^Version: /{{$0=\"Version: \" old}} {{print}}' \
         /var/lib/dpkg/status >/var/lib/dpkg/status.new && mv /var/lib/dpkg/status.new /var/lib/dpkg/status"
    ));
    assert_eq!(host.sh_ok("dpkg-query -W -f='${Version}' jq"), older);
    let third = bootstrap(&host, user, state.path(), &[]);
    assert!(third.status.success());
    let apt = outcomes(&third).into_iter().find(|(s, _)| s == "apt").unwrap();
    assert_eq!(apt.1, "changed", "the upgrade was seen:\n{}", stdout(&third));
    assert_eq!(host.sh_ok("dpkg-query -W -f='${Version}' jq"), jq, "jq upgraded back");
}

#[test]
fn debian12_bare_host_to_verified_gpu_then_converged() {
    full_run(Distro::Debian12);
}

/// The Ubuntu 22.04 STAND-IN (Debian's root with Ubuntu's os-release): takes
/// the Ubuntu branch (docker.io + docker-compose-v2, nvidia-driver-580-server).
#[test]
fn ubuntu2204_standin_bare_host_to_verified_gpu_then_converged() {
    full_run(Distro::Ubuntu2204Standin);
}

#[test]
fn failing_step_stops_with_command_and_stderr_then_next_run_finishes() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    // A repository that does not exist: apt-get update fails.
    host.write("/etc/apt/sources.list.d/broken.list", b"deb [trusted=yes] file:/srv/no-such-repo ./\n");
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
    let before = snapshot_but_caches(&host);
    let out = bootstrap(&host, "pwuser", state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("pwuser cannot use sudo without a password"), "{err}");
    assert!(err.contains("NOPASSWD"), "{err}");
    assert_eq!(cli::diff(&before, &snapshot_but_caches(&host)), Vec::<String>::new(), "nothing changed");
}

#[test]
fn unsupported_distro_is_refused_and_nothing_changes() {
    let host = TestHost::start(Distro::Debian12);
    host.sh_ok("rm -f /etc/os-release; printf 'ID=fedora\\nVERSION_ID=40\\nPRETTY_NAME=\"Fedora Linux 40\"\\n' >/etc/os-release");
    let state = state_for(&host);
    let before = snapshot_but_caches(&host);
    let out = bootstrap(&host, "admin", state.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Fedora Linux 40 is not supported"), "{err}");
    assert!(err.contains("--force-distro"), "{err}");
    assert_eq!(cli::diff(&before, &snapshot_but_caches(&host)), Vec::<String>::new(), "nothing changed");
}

/// A command that hangs on the host (here dpkg-query, which the facts
/// ask): the run stops at --command-timeout, naming the command, its limit
/// and what to try, instead of waiting for ever.
#[test]
fn a_hung_command_stops_the_run_at_its_time_limit_naming_it() {
    let host = TestHost::start(Distro::Debian12);
    host.sh_ok("mv /usr/bin/dpkg-query /usr/bin/dpkg-query.real && printf '#!/bin/sh\\nexec sleep 600\\n' >/usr/bin/dpkg-query && chmod 0755 /usr/bin/dpkg-query");
    let state = state_for(&host);
    let started = Instant::now();
    let out = bootstrap(&host, "admin", state.path(), &["--command-timeout", "3s"]);
    let took = started.elapsed();
    host.sh_ok("mv -f /usr/bin/dpkg-query.real /usr/bin/dpkg-query");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("facts.sh") && err.contains("did not finish within its time limit of 3 s"), "{err}");
    assert!(err.contains("--command-timeout"), "{err}");
    assert!(took < Duration::from_secs(30), "stopped in bounded time: {took:?}");
    // The flag is checked like every duration.
    let bad = bootstrap(&host, "admin", state.path(), &["--command-timeout", "0s"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--command-timeout"), "{}", stderr(&bad));
}

#[test]
fn dry_run_on_a_bare_host_changes_nothing() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    let before = snapshot(&host);
    let out = bootstrap(&host, "admin", state.path(), &["--dry-run"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("apt: would run: sudo -n env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get"),
        "{text}"
    );
    assert!(text.contains("docker: would run: sudo -n systemctl enable --now docker"), "{text}");
    assert!(text.contains("nvidia: would run: sudo -n nvidia-ctk runtime configure '--runtime=docker'"), "{text}");
    assert!(text.contains("reboot: would run: reboot and wait for the new boot"), "{text}");
    assert_eq!(cli::diff(&before, &snapshot(&host)), Vec::<String>::new(), "nothing changed");
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

/// Waits (up to `timeout`) until `path` exists inside the host.
fn wait_for_file(host: &TestHost, path: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !host.exists(path) {
        assert!(Instant::now() < deadline, "{path} did not appear within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Installed, whether held (apt-mark hold, as the driver is) or not.
fn dpkg_installed(host: &TestHost, pkg: &str) -> bool {
    host.sh(&format!("dpkg-query -W -f='${{Status}}' {pkg} | grep -Eq '^(install|hold) ok installed'")).status.success()
}

/// sshd (and with it the session and dpkg under it) killed while the driver
/// package configures, then back a moment later: the run reconnects,
/// re-plans the nvidia step from fresh facts (the driver half-configured),
/// repairs dpkg and finishes, through exactly one reboot.
#[test]
fn connection_cut_during_driver_install_reconnects_and_finishes() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.write("/var/lib/standin/hooks/slow-postinst", b"30\n");

    let out = std::thread::scope(|s| {
        let run = s.spawn(|| bootstrap(&host, "admin", state.path(), &[]));
        wait_for_file(&host, "/run/standin/hooks/postinst-started", Duration::from_secs(240));
        host.kill_sshd();
        std::thread::sleep(Duration::from_secs(2));
        host.restart_sshd();
        run.join().unwrap()
    });
    assert!(out.status.success(), "the run rode through the cut");
    let err = stderr(&out);
    assert!(err.contains("nvidia: connection lost"), "{err}");
    assert!(err.contains("reconnecting"), "{err}");
    let steps = outcomes(&out);
    assert_eq!(
        steps.iter().map(|(s, o)| format!("{s} {o}")).collect::<Vec<_>>(),
        ["host ok", "ready ok", "apt changed", "docker changed", "nvidia changed", "reboot changed", "gpu-check ok"]
    );
    let log_path = stdout(&out).lines().find_map(|l| l.strip_prefix("log: ").map(str::to_owned)).unwrap();
    assert!(
        stdout(&out).contains("finish the interrupted dpkg run"),
        "dpkg --configure -a before apt again; the log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert!(dpkg_installed(&host, "nvidia-driver"));
    assert_eq!(host.sh_ok("dpkg --audit"), "", "dpkg left consistent");
    assert_eq!(host.reboots(), 1);
    assert!(stdout(&out).contains("NVIDIA A10G"));
}

/// sshd killed during the driver's configure and left down: the run stops
/// with a clear error naming the step (never hangs), and once sshd is back
/// the next run picks up the half-configured package and finishes.
#[test]
fn connection_cut_and_host_gone_stops_naming_the_step_then_next_run_finishes() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.write("/var/lib/standin/hooks/slow-postinst", b"30\n");

    let (out, after_cut) = std::thread::scope(|s| {
        let run = s.spawn(|| bootstrap(&host, "admin", state.path(), &[]));
        wait_for_file(&host, "/run/standin/hooks/postinst-started", Duration::from_secs(240));
        host.kill_sshd();
        let cut = Instant::now();
        let out = run.join().unwrap();
        (out, cut.elapsed())
    });
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("step nvidia: the host is unreachable"), "{err}");
    assert!(err.contains("connection"), "{err}");
    assert!(err.contains("run the same command again"), "{err}");
    assert_eq!(outcomes(&out).last().unwrap(), &("nvidia".to_string(), "unreachable".to_string()));
    assert!(after_cut < Duration::from_secs(90), "gave up in bounded time: {after_cut:?}");

    host.restart_sshd();
    let again = bootstrap(&host, "admin", state.path(), &[]);
    assert!(again.status.success());
    assert!(dpkg_installed(&host, "nvidia-driver"));
    assert_eq!(host.sh_ok("dpkg --audit"), "", "dpkg left consistent");
    assert_eq!(host.reboots(), 1);
    let steps = outcomes(&again);
    assert!(steps.iter().any(|(s, o)| s == "nvidia" && o == "changed"), "{steps:?}");
    assert!(stdout(&again).contains("finish the interrupted dpkg run"), "dpkg --configure -a before apt again");
    assert!(steps.iter().any(|(s, o)| s == "gpu-check" && o == "ok"), "{steps:?}");
}

/// The summary table's TIME of `step`, in seconds.
fn step_secs(o: &Output, step: &str) -> f64 {
    let out = stdout(o);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(step))
        .unwrap_or_else(|| panic!("no {step} row in\n{out}"));
    line.split_whitespace().nth(2).unwrap().trim_end_matches('s').parse().unwrap()
}

/// The DETAIL column of `step`'s row.
fn detail_of(o: &Output, step: &str) -> String {
    cli::step_line(o, step).split_whitespace().skip(3).collect::<Vec<_>>().join(" ")
}

/// Step 2 with the dpkg lock held (an fcntl lock, as unattended-upgrades'
/// apt takes it): the run waits for it, then apt goes on.
#[test]
fn ready_waits_for_a_held_dpkg_lock_then_proceeds() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.hold_lock("/var/lib/dpkg/lock-frontend", Duration::from_secs(6));
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert!(out.status.success());
    let ready = detail_of(&out, "ready");
    assert!(ready.contains("waiting: /var/lib/dpkg/lock-frontend held"), "{ready}");
    assert!(step_secs(&out, "ready") >= 3.0, "ready waited for the lock: {}", step_secs(&out, "ready"));
    assert!(outcomes(&out).contains(&("apt".into(), "changed".into())));
    assert!(!host.exists("/run/standin-lock-held"), "the holder was done before apt");
}

/// The lock held past --apt-lock-timeout: step 2 fails naming the lock and
/// its holder, and nothing after it runs.
#[test]
fn ready_fails_clearly_when_the_dpkg_lock_outlasts_its_time_limit() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.hold_lock("/var/lib/dpkg/lock-frontend", Duration::from_secs(60));
    let started = Instant::now();
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu", "--apt-lock-timeout", "3s"]);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("step ready failed"), "{err}");
    assert!(err.contains("wait-ready.sh"), "the command: {err}");
    assert!(
        err.contains("/var/lib/dpkg/lock-frontend (held by perl, pid ") && err.contains("is still locked after 3 s"),
        "{err}"
    );
    assert!(err.contains("unattended-upgrades"), "{err}");
    assert_eq!(outcomes(&out).last().unwrap(), &("ready".to_string(), "failed".to_string()));
}

/// Step 2 on a host where cloud-init is still running (the cloud-init
/// stand-in, done 4 s from now): the run calls `cloud-init status --wait`
/// and goes on once it is done.
#[test]
fn ready_waits_for_cloud_init_then_proceeds() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.install_cloud_init_standin(Duration::from_secs(4), "done");
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert!(out.status.success());
    let ready = detail_of(&out, "ready");
    assert!(ready.contains("waiting: cloud-init running"), "{ready}");
    assert!(step_secs(&out, "ready") >= 2.0, "ready waited for cloud-init");
    let calls = calls(&host, "cloud-init");
    assert!(calls.iter().any(|c| c.ends_with("cloud-init status --wait")), "{calls:?}");
    assert!(outcomes(&out).contains(&("apt".into(), "changed".into())));
    // Done now: a second run sees it in the facts and does not wait.
    let again = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert!(again.status.success());
    assert_eq!(detail_of(&again, "ready"), "cloud-init done; dpkg and apt locks free");
}

/// cloud-init still running past --cloud-init-timeout, and cloud-init
/// finished in error: step 2 fails with a clear error, nothing after runs.
#[test]
fn ready_fails_clearly_on_cloud_init_timeout_and_error() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    let state = state_for(&host);
    host.install_cloud_init_standin(Duration::from_secs(120), "done");
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu", "--cloud-init-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("step ready failed"), "{err}");
    assert!(err.contains("cloud-init did not finish within 2 s (still running"), "{err}");
    assert_eq!(outcomes(&out).last().unwrap(), &("ready".to_string(), "failed".to_string()));

    host.install_cloud_init_standin(Duration::from_secs(0), "error");
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cloud-init failed (exit 1, status error)"), "{err}");
    assert!(err.contains("/var/log/cloud-init.log"), "{err}");

    // Done with recoverable errors (exit 2, "status: done") still counts as done.
    host.install_cloud_init_standin(Duration::from_secs(3), "degraded");
    let out = bootstrap(&host, "admin", state.path(), &["--no-gpu"]);
    assert!(out.status.success(), "degraded done is usable");
}

#[test]
fn timeouts_below_a_second_are_usage_errors() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        // --no-stack: no LLM to choose, so the timeout is the one error.
        .args(["bootstrap", "--host", "admin@127.0.0.1:1", "--no-stack", "--apt-lock-timeout", "200ms"])
        .env("IMAGE_PROVISION_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--apt-lock-timeout"), "{}", stderr(&out));
}

/// A Debian 12 cloud image's deb822 sources (/etc/apt/sources.list.d/debian.sources,
/// no sources.list): the NVIDIA step adds the components to its Debian
/// stanzas only, once; a second run changes nothing.
#[test]
fn debian12_deb822_sources_get_non_free_once() {
    let host = TestHost::start(Distro::Debian12);
    enable_standins(&host);
    host.sh_ok("rm /etc/apt/sources.list");
    let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                  Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main non-free-firmware\n\
                  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
    host.write("/etc/apt/sources.list.d/debian.sources", deb822.as_bytes());
    let state = state_for(&host);
    let first = bootstrap(&host, "admin", state.path(), &[]);
    assert!(first.status.success());
    assert!(
        stdout(&first).contains("enable contrib non-free non-free-firmware in /etc/apt/sources.list.d/debian.sources"),
        "{}",
        stdout(&first)
    );
    let want = deb822
        .replace("Components: main\n", "Components: main contrib non-free non-free-firmware\n")
        .replace("Components: main non-free-firmware\n", "Components: main non-free-firmware contrib non-free\n");
    assert_eq!(String::from_utf8_lossy(&host.read("/etc/apt/sources.list.d/debian.sources")), want);
    // apt really reads non-free from Debian's archive now.
    assert!(host.sh_ok("apt-cache policy").contains("bookworm/non-free "), "non-free indexed");
    assert!(dpkg_installed(&host, "nvidia-driver"));

    let stat = || host.sh_ok("stat -c '%s %Y %a' /etc/apt/sources.list.d/debian.sources");
    let before = stat();
    let second = bootstrap(&host, "admin", state.path(), &[]);
    assert!(second.status.success());
    for (step, outcome) in outcomes(&second) {
        assert_eq!(outcome, "ok", "step {step} on the second run");
    }
    assert_eq!(stat(), before, "a second run changes nothing");
}

/// A GPU-ready image (AWS's Deep Learning Base AMI, `ec2 create
/// --base-image dlami`: the driver installed and loaded before the first
/// run, here of the previous default branch, 570): the nvidia step sees it
/// working and installs no driver (not the default 580 either), no reboot
/// follows, and the GPU check passes.
#[test]
fn a_working_driver_gets_no_driver_install_and_no_reboot() {
    let host = TestHost::start(Distro::Ubuntu2204Standin);
    enable_standins(&host);
    host.sh_ok(
        "apt-get update -q >/dev/null && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q nvidia-driver-570-server >/dev/null",
    );
    let _ = host.ssh_command("root").arg("reboot").output();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while host.reboots() < 1 {
        assert!(std::time::Instant::now() < deadline, "no reboot:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    host.wait_for_sshd(Duration::from_secs(60));
    assert!(host.sh("nvidia-smi").status.success(), "the image's driver works before the first run");

    let state = state_for(&host);
    let out = bootstrap(&host, host.default_user(), state.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let nvidia = detail_of(&out, "nvidia");
    assert!(!nvidia.contains("install nvidia-driver"), "{nvidia}");
    assert!(nvidia.contains("install nvidia-container-toolkit"), "{nvidia}");
    assert!(dpkg_installed(&host, "nvidia-driver-570-server") && !dpkg_installed(&host, "nvidia-driver-580-server"));
    let steps = outcomes(&out);
    let outcome = |name: &str| steps.iter().find(|(s, _)| s == name).map(|(_, o)| o.as_str());
    assert_eq!(outcome("reboot"), Some("ok"));
    assert_eq!(outcome("gpu-check"), Some("ok"));
    assert_eq!(host.reboots(), 1, "no reboot for the driver the image had");
}

/// The facts keep answers that are slow to get but depend only on files
/// (docker's and compose's versions; lspci's and dpkg's answers), keyed by
/// those files: unchanged, the next facts command asks no program again;
/// a change of what they depend on (a new plugin, an upgraded binary, a
/// package held) shows at once.
#[test]
fn facts_caches_see_a_change_of_what_they_depend_on() {
    use image_provision_playbooks::Config;
    use image_provision_playbooks::facts::RawFacts;
    use image_provision_playbooks::gather::{FactsInputs, command};

    let host = TestHost::start(Distro::Ubuntu2204Standin);
    let user = host.default_user();
    let standin = |name: &str| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost/standins").join(name)).unwrap()
    };
    host.write("/usr/bin/docker", &standin("docker"));
    host.sh_ok("chmod 0755 /usr/bin/docker");
    let cmd = command(&FactsInputs::for_config(&Config::default()));
    let facts = || {
        let out = host.ssh_with_stdin(user, &cmd.render(false), &cmd.stdin_to_send().unwrap());
        assert!(out.status.success(), "facts: {}{}", stdout(&out), stderr(&out));
        RawFacts::parse(&stdout(&out))
    };
    // The stand-ins' calls, and the version questions among those after
    // the first `from`.
    let all_calls = || String::from_utf8_lossy(&host.read("/var/log/standin/calls.log")).lines().count();
    let versions_asked = |from: usize| -> Vec<String> {
        String::from_utf8_lossy(&host.read("/var/log/standin/calls.log"))
            .lines()
            .skip(from)
            .filter(|c| c.ends_with(" --version") || c.ends_with("compose version"))
            .map(str::to_owned)
            .collect()
    };

    host.install_cloud_init_standin(Duration::ZERO, "done");
    let first = facts();
    assert_eq!(first.get("cloud_init"), Some("done"));
    assert_eq!(first.get("docker.version"), Some("Docker version 24.0.7, build afdd53b"));
    assert_eq!(first.get("docker.compose"), None, "no compose plugin yet");
    let installed: Vec<String> = first.with_prefix("pkg.").map(|(p, _)| p.to_string()).collect();
    let package = installed.first().expect("a watched package installed on the test host").clone();
    assert!(!first.yes(&format!("held.{package}")));
    let gpu = first.get("gpu").map(str::to_string);

    // Unchanged: the answers come from the cache, no version asked.
    let before = all_calls();
    let second = facts();
    assert_eq!(versions_asked(before), Vec::<String>::new());
    for key in ["docker.version", "docker.compose", "gpu", &format!("pkg.{package}"), "cloud_init"] {
        assert_eq!(second.get(key), first.get(key), "{key}");
    }
    let cloud_init_asked = |from: usize| {
        String::from_utf8_lossy(&host.read("/var/log/standin/calls.log"))
            .lines()
            .skip(from)
            .filter(|c| c.contains(" cloud-init status"))
            .count()
    };
    assert_eq!(cloud_init_asked(before), 0, "cloud-init's final answer kept");

    // compose's plugin arrives: seen.
    host.write("/usr/libexec/docker/cli-plugins/docker-compose", &standin("docker-compose"));
    host.sh_ok("chmod 0755 /usr/libexec/docker/cli-plugins/docker-compose");
    let third = facts();
    assert_eq!(third.get("docker.compose"), Some("Docker Compose version v2.24.6"));

    // The CLI is upgraded (a new file, as dpkg puts it): seen.
    host.sh_ok("sed -i 's/^version=24.0.7$/version=24.0.8/' /usr/bin/docker");
    let fourth = facts();
    assert_eq!(fourth.get("docker.version"), Some("Docker version 24.0.8, build afdd53b"));

    // cloud-init replaced and running again (its binary is in the key; a
    // running cloud-init writes its status files, which are too): asked.
    let before = all_calls();
    host.install_cloud_init_standin(Duration::from_secs(600), "done");
    assert_eq!(facts().get("cloud_init"), Some("running"));
    assert_eq!(facts().get("cloud_init"), Some("running"));
    assert_eq!(cloud_init_asked(before), 2, "a running cloud-init is asked each time");

    // dpkg's status changes (a package held): seen.
    host.sh_ok(&format!("apt-mark hold {package} >/dev/null"));
    let fifth = facts();
    assert!(fifth.yes(&format!("held.{package}")), "held.{package} after apt-mark hold");
    assert_eq!(fifth.get("gpu").map(str::to_string), gpu);
    let before = all_calls();
    assert!(facts().yes(&format!("held.{package}")));
    assert_eq!(versions_asked(before), Vec::<String>::new(), "cached again");
}
