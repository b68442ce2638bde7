//! The host steps on BOOTED test hosts (TestHost::boot, tests/testhost/boot.sh):
//! systemd as PID 1 under systemd-nspawn, a network of the host's own, and
//! the archive stand-in of real Debian packages. Here Docker, compose v2,
//! systemctl and the reboot are the real ones; only the GPU (the NVIDIA
//! packages, nvidia-smi, nvidia-ctk and the runtime hook) is a stand-in.

use std::process::Output;
use std::time::{Duration, Instant};

use image_provision_testsupport::cli::{self, outcomes, state_for, stdout};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

fn boot_timed(distro: Distro) -> TestHost {
    let t = Instant::now();
    let host = TestHost::boot(distro);
    eprintln!("TestHost::boot({distro:?}) took {:.1}s at {}", t.elapsed().as_secs_f64(), host.addr());
    host
}

fn ssh_ok(host: &TestHost, user: &str, command: &str) -> String {
    let out = host.ssh_command(user).arg(command).output().expect("running ssh");
    assert!(
        out.status.success(),
        "ssh {user}@{} {command:?}: {}\nstderr: {}\n{}",
        host.addr(),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        host.logs()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Wait until the host has rebooted `n` times in all and sshd answers again.
fn wait_for_reboots(host: &TestHost, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while host.reboots() < n {
        assert!(Instant::now() < deadline, "no reboot within 90 s:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    host.wait_for_sshd(Duration::from_secs(60));
}

#[test]
fn a_booted_host_runs_systemd_on_its_own_network_and_reboots_for_real() {
    let host = boot_timed(Distro::Ubuntu2204Standin);
    assert!(host.is_booted());
    assert_eq!(host.port, 22);
    assert!(!host.ip.is_loopback(), "a booted host has an address of its own: {}", host.ip);
    assert_eq!(host.known_hosts_line(), format!("{} {}", host.ip, host.host_key_pub));
    assert_eq!(ssh_ok(&host, "ubuntu", "sudo -n id -un"), "root");
    assert_eq!(ssh_ok(&host, "ubuntu", "ps -o comm= -p 1"), "systemd");
    // The whole boot finished: no unit failed.
    let state = ssh_ok(&host, "ubuntu", "systemctl is-system-running --wait || true");
    // On failure, each failed unit's journal of this boot says why.
    let failed = "systemctl --failed --no-pager; for u in $(systemctl --failed --plain --no-legend | cut -d' ' -f1); \
                  do sudo -n journalctl -b -u \"$u\" --no-pager | tail -n 20; done";
    assert_eq!(state, "running", "{}", ssh_ok(&host, "ubuntu", failed));
    // The archive stand-in is the only apt source.
    let sources = ssh_ok(&host, "ubuntu", "grep -rh '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/ || true");
    assert_eq!(sources, "deb [trusted=yes] file:/srv/archive-standin ./");

    // A real reboot: systemd shuts down, the host comes back with a new
    // boot id, and the SSH connection that asked for it is dropped.
    let boot_id = host.boot_id();
    let t = Instant::now();
    let _ = host.ssh_command("ubuntu").arg("sudo systemctl reboot").output();
    wait_for_reboots(&host, 1);
    eprintln!("reboot round trip: {:.1}s", t.elapsed().as_secs_f64());
    assert_ne!(host.boot_id(), boot_id, "a new boot id after the reboot");
    assert_eq!(ssh_ok(&host, "ubuntu", "cat /proc/sys/kernel/random/boot_id"), host.boot_id());
}

/// Made by a line put first in /etc/bash.bashrc when a bash with `-u` on
/// (as the tool's scripts run) reads it.
const RC_READ_UNDER_U: &str = "/var/tmp/bashrc-read-under-u";

#[test]
fn host_steps_install_real_docker_and_compose_and_reboot_through_systemd() {
    let host = boot_timed(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    let state = state_for(&host);
    let user = host.default_user();
    let run =
        |what: &str| cli::run(&mut cli::on_host(BIN, &host, user, state.path(), &["bootstrap", "--no-stack"]), what);

    host.sh_ok(&format!("sed -i '1i [[ $- != *u* ]] || : >{RC_READ_UNDER_U}' /etc/bash.bashrc"));
    let t = Instant::now();
    let first = run("bootstrap --no-stack");
    eprintln!("first bootstrap --no-stack: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(first.status.code(), Some(0), "{}", host.logs());
    let steps = outcomes(&first);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["host", "ready", "apt", "docker", "nvidia", "reboot", "gpu-check"]);
    assert_eq!(steps[3].1, "changed", "docker installed");
    assert_eq!(host.reboots(), 1, "one real reboot, for the driver");
    // The bash startup files run in the login shell sshd starts, never in
    // the bash that runs a script of the tool (`-u` on: there,
    // /etc/bash.bashrc's `[ -z "$PS1" ]` said "PS1: unbound variable").
    assert!(!host.exists(RC_READ_UNDER_U), "a script's bash read /etc/bash.bashrc");

    // Real Docker (Debian's dockerd), started and enabled by real systemd,
    // with real compose v2; the SSH user reaches it without sudo.
    assert_eq!(ssh_ok(&host, user, "systemctl is-enabled docker; systemctl is-active docker"), "enabled\nactive");
    assert!(ssh_ok(&host, user, "docker info --format '{{.ServerVersion}}'").starts_with("20.10."));
    assert!(ssh_ok(&host, user, "docker compose version").contains("2.26"));
    // The daemon restarted with the nvidia runtime nvidia-ctk registered.
    assert!(ssh_ok(&host, user, "docker info --format '{{json .Runtimes}}'").contains("\"nvidia\""));
    // daemon.json holds both steps' keys, and the daemon that runs on it took
    // them: dockerd refuses to start on a key or value it does not take
    // (`docker info` does not show this one).
    let daemon_json = ssh_ok(
        &host,
        user,
        "jq -c '{d: .\"max-concurrent-downloads\", n: (.runtimes.nvidia != null)}' /etc/docker/daemon.json",
    );
    assert_eq!(daemon_json, "{\"d\":10,\"n\":true}");
    // A container asking for the GPU, as compose's `driver: nvidia` does,
    // starts through the runtime hook's stand-in: dockerd found it at boot.
    let image = ssh_ok(
        &host,
        "root",
        "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/lib $d/lib64; \
         cp /usr/bin/true $d/bin/; cp /lib/x86_64-linux-gnu/libc.so.6 $d/lib/; \
         cp /lib64/ld-linux-x86-64.so.2 $d/lib64/; \
         tar -C $d -c . | docker import - local/true:1 >/dev/null; echo local/true:1",
    );
    ssh_ok(&host, user, &format!("docker run --rm --gpus all {image} /bin/true"));
    assert!(
        host.calls().iter().any(|c| c.contains("nvidia-container-runtime-hook") && c.contains("prestart")),
        "{:?}",
        host.calls()
    );

    facts_read_dockerd_as_the_cli_lists(&host, &image);

    // Converged: every step ok, no reboot.
    let second = run("bootstrap --no-stack, again");
    assert_eq!(second.status.code(), Some(0));
    for (step, outcome) in outcomes(&second) {
        assert_eq!(outcome, "ok", "step {step} on the second run:\n{}", stdout(&second));
    }
    assert_eq!(host.reboots(), 1);
}

/// The facts ask dockerd through its socket and read its JSON in bash
/// (playbooks/src/containers/docker-api.sh): what they make of it is what
/// the docker CLI prints, for containers whose labels hold JSON's hard
/// cases (a label named Id, quotes, backslashes, braces, text that looks
/// like the fields read; `&` and `<`, which dockerd leaves unescaped). A
/// value read that JSON escapes (a quote in a path) is left to the CLI, and
/// the listing is still the CLI's.
fn facts_read_dockerd_as_the_cli_lists(host: &TestHost, image: &str) {
    use image_provision_playbooks::containers::{DOCKER_API_SH, FACTS_SH};
    use image_provision_playbooks::facts::PRELUDE_SH;
    const TEMPLATE: &str = r#"{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Names}}\t{{.Status}}"#;
    let check = format!(
        r#"
docker_api_ask
echo "answered=$docker_api_answered"
if docker_api_listing && docker_api_network_names && docker_api_runtimes; then echo read=yes; else echo read=no; fi
echo "== api"; printf '%s\n' "$docker_api_listed"
echo "== cli"; docker ps -a --format '{TEMPLATE}'
echo "== api networks"; echo "${{docker_api_networks_listed:-}}"
echo "== cli networks"; docker network ls --format '{{{{.Name}}}}' | sort | tr '\n' ' '; echo
echo "== api runtimes"; echo "${{docker_api_runtimes_json:-}}"
echo "== cli runtimes"; docker info --format '{{{{json .Runtimes}}}}'
echo "== facts"; containers_facts
echo "== end"
"#
    );
    let script = format!("{PRELUDE_SH}\n{DOCKER_API_SH}\n{FACTS_SH}\n{check}");
    let run = || {
        let out = host.ssh_with_stdin("root", "bash -s", script.as_bytes());
        assert!(out.status.success(), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    // The text between `== NAME` and the next `==` line.
    fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let start = format!("== {name}");
        text.lines().skip_while(|l| *l != start).skip(1).take_while(|l| !l.starts_with("== ")).collect()
    }
    let words = |lines: Vec<&str>| {
        let mut w: Vec<String> = lines.join(" ").split_whitespace().map(str::to_string).collect();
        w.sort();
        w
    };

    ssh_ok(
        host,
        "root",
        &format!(
            r#"docker create --name facts-plain --label com.docker.compose.project=proj \
               --label com.docker.compose.project.working_dir=/srv/proj --label com.docker.compose.service=web {image} /bin/true &&
               docker create --name facts-hard --label 'Id=x' --label 'a=}},{{"Id":"ff' \
               --label 'b=a quote " and a back \ slash' --label 'c={{"State":"running","Status":"Up"}}' \
               --label com.docker.compose.project=p2 --label com.docker.compose.service=svc {image} /bin/true &&
               docker create --name facts-amp --label 'com.docker.compose.project.working_dir=/srv/a&b<c>' \
               {image} /bin/true"#
        ),
    );
    let out = run();
    assert!(out.contains("answered=yes\nread=yes\n"), "{out}");
    let cli = section(&out, "cli");
    assert_eq!(section(&out, "api"), cli, "{out}");
    assert!(cli.contains(&"proj\t/srv/proj\tweb\tcreated\tfacts-plain\tCreated"), "{out}");
    assert!(cli.contains(&"p2\t\tsvc\tcreated\tfacts-hard\tCreated"), "{out}");
    assert!(cli.contains(&"\t/srv/a&b<c>\t\tcreated\tfacts-amp\tCreated"), "{out}");
    assert_eq!(words(section(&out, "api networks")), words(section(&out, "cli networks")), "{out}");
    assert_eq!(section(&out, "api runtimes"), section(&out, "cli runtimes"), "{out}");
    let facts: Vec<String> = cli.iter().map(|l| format!("container={l}")).collect();
    let listed: Vec<&str> = section(&out, "facts").into_iter().filter(|l| l.starts_with("container=")).collect();
    assert_eq!(listed, facts, "{out}");

    // A quote in a value read: JSON escapes it, so it is not read here but
    // by the CLI, and the listing is still the CLI's.
    ssh_ok(
        host,
        "root",
        &format!(
            r#"docker create --name facts-quote --label 'com.docker.compose.project.working_dir=/srv/q"b' {image} /bin/true"#
        ),
    );
    let out = run();
    assert!(out.contains("answered=yes\nread=no\n"), "{out}");
    let cli = section(&out, "cli");
    assert!(cli.contains(&"\t/srv/q\"b\t\tcreated\tfacts-quote\tCreated"), "{out}");
    let facts: Vec<String> = cli.iter().map(|l| format!("container={l}")).collect();
    let listed: Vec<&str> = section(&out, "facts").into_iter().filter(|l| l.starts_with("container=")).collect();
    assert_eq!(listed, facts, "{out}");
    ssh_ok(host, "root", "docker rm facts-plain facts-hard facts-amp facts-quote >/dev/null");
}

/// cuda-check.sh (the gpu-check and stack steps' CUDA check) with real
/// Docker, compose and jq and the driver the stand-in packages installed
/// (580-server: nvidia-smi says CUDA 13.0), over a compose project of
/// images made on the host, each saying its CUDA another way: what each GPU
/// image needs comes from NVIDIA_REQUIRE_CUDA, else CUDA_VERSION, else it
/// is unknown (never met); an image not pulled is left to the stack step
/// or unknown; a service without a GPU is not checked; an image needing
/// more than the driver serves fails the check, naming the branch to pick,
/// or saying that no branch known serves it.
#[test]
fn the_cuda_check_reads_each_gpu_images_need_and_names_the_branch_to_pick() {
    let host = boot_timed(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    let state = state_for(&host);
    let out = cli::run(
        &mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["bootstrap", "--no-stack"]),
        "bootstrap --no-stack",
    );
    assert_eq!(out.status.code(), Some(0), "{}", host.logs());
    let gpu = cli::step_line(&out, "gpu-check");
    assert!(gpu.contains("driver 580.95.05") && !gpu.contains("CUDA"), "no stack, no images to check: {gpu}");

    host.sh_ok(
        r#"set -e
        image() { # NAME [ENV]: an image of one empty layer, with ENV
            if [ -n "${2:-}" ]; then tar -cf - -T /dev/null | docker import --change "ENV $2" - "$1" >/dev/null
            else tar -cf - -T /dev/null | docker import - "$1" >/dev/null; fi
        }
        image local/required:1 'NVIDIA_REQUIRE_CUDA=cuda>=12.8 brand=tesla,driver>=535,driver<536'
        image local/version-only:1 'CUDA_VERSION=12.9.1'
        image local/silent:1
        image local/cpu:1 'NVIDIA_REQUIRE_CUDA=cuda>=99.0'
        image local/newer:1 'CUDA_VERSION=13.1.0'
        mkdir -p /srv/cuda/a /srv/cuda/b /srv/cuda/none
        gpu='deploy: {resources: {reservations: {devices: [{driver: nvidia, capabilities: [gpu]}]}}}'
        cat >/srv/cuda/a/docker-compose.yml <<YAML
services:
  required: {image: "local/required:\${TAG}", $gpu}
  version-only: {image: local/version-only:1, $gpu}
  silent: {image: local/silent:1, $gpu}
  not-pulled: {image: local/not-pulled:1, $gpu}
  cpu: {image: local/cpu:1}
YAML
        echo TAG=1 >/srv/cuda/a/.env
        cat >/srv/cuda/b/docker-compose.yml <<YAML
services:
  newer: {image: local/newer:1, $gpu}
YAML
"#,
    );
    host.write("/srv/cuda/cuda-check.sh", image_provision_playbooks::steps::gpu_check::CUDA_CHECK_SH.as_bytes());
    let check = |dirs: &str, defer: &str, branches: &str| {
        host.sh(&format!(
            "PROJECT_DIRS='{dirs}' DEFER_UNPULLED={defer} BRANCHES='{branches}' FAMILY=ubuntu bash /srv/cuda/cuda-check.sh"
        ))
    };
    let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));

    // A project without a compose file is skipped; .env's values apply.
    let ok = check("/srv/cuda/a /srv/cuda/none", "no", "580-server:13.0");
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "result: driver 580.95.05 (CUDA 13.0) meets local/required:1 cuda>=12.8, local/version-only:1 cuda>=12.9; \
         CUDA needed unknown: local/not-pulled:1 (not pulled), local/silent:1 (neither NVIDIA_REQUIRE_CUDA nor CUDA_VERSION)"
    );
    let deferred = check("/srv/cuda/a", "yes", "580-server:13.0");
    assert!(
        String::from_utf8_lossy(&deferred.stdout)
            .contains("; not pulled yet, checked by the stack step: local/not-pulled:1"),
        "{}",
        text(&deferred)
    );
    // Only images that say nothing: not a word of "meets".
    host.sh_ok("sed -i '/required\\|version-only/d' /srv/cuda/a/docker-compose.yml");
    let silent = check("/srv/cuda/a", "no", "580-server:13.0");
    let said = text(&silent);
    assert!(silent.status.success() && !said.contains("meets") && said.contains("CUDA needed unknown"), "{said}");

    // More than the driver serves: the branch to pick, else none known.
    let over = check("/srv/cuda/a /srv/cuda/b", "no", "580-server:13.0 590-server:13.1");
    assert_eq!(over.status.code(), Some(1), "{}", text(&over));
    let said = text(&over);
    assert!(
        said.contains("the NVIDIA driver 580.95.05 serves CUDA 13.0, but local/newer:1 needs cuda>=13.1"),
        "{said}"
    );
    assert!(said.contains("pick the driver branch 590-server (CUDA 13.1 or later)"), "{said}");
    assert!(said.contains("`image-provision update --upgrade-driver --nvidia-driver 590-server`"), "{said}");
    let none = check("/srv/cuda/b", "no", "580-server:13.0");
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none)
            .contains("no driver branch image-provision knows serves CUDA 13.1 (the newest it knows: 580-server)"),
        "{}",
        text(&none)
    );
}
