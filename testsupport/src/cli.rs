//! The built image-provision run against a test host ([`crate::testhost`])
//! the way every host test runs it: the host's stand-in Docker and NVIDIA
//! repositories instead of the real ones, the HTTPS health check only where
//! real Traefik can answer it, logged in with the host's client key only,
//! and a state directory of the test's own.
//!
//! The binary is the caller's `env!("CARGO_BIN_EXE_image-provision")`
//! (only the root package's tests and benches have it).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::testhost::TestHost;

/// A state directory whose known_hosts trusts the host's key, so the
/// commands check it strictly, as for a person who verified it.
pub fn state_for(host: &TestHost) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("known_hosts"), host.known_hosts_line() + "\n").unwrap();
    state
}

/// The host steps' Docker and NVIDIA repositories: the signed local copies
/// of the stand-in repository that [`TestHost::enable_bootstrap_standins`]
/// makes (so the signed-by path is the real one). The HTTPS health check:
/// with real Traefik and an ACME server on a booted host
/// ([`TestHost::enable_acme`]), it goes to the host's own 127.0.0.1 as on a
/// real server; else none (nothing would answer: the health step and verify
/// then check the orchestrator, not https://DOMAIN/health). For a command
/// that reaches the host some other way (`ec2 create`).
pub fn with_standins<'a>(cmd: &'a mut Command, host: &TestHost) -> &'a mut Command {
    cmd.env("IMAGE_PROVISION_DOCKER_REPO", "file:/srv/standin-signed /")
        .env("IMAGE_PROVISION_DOCKER_REPO_KEY", "file:///srv/standin-signed/key.asc")
        .env("IMAGE_PROVISION_NVIDIA_REPO", "file:/srv/standin-nvidia /")
        .env("IMAGE_PROVISION_NVIDIA_REPO_KEY", "file:///srv/standin-nvidia/key.asc");
    if !host.has_acme() {
        cmd.env("IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH", "1");
    }
    // The test domains resolve nowhere (pebble resolves every name to the
    // host by itself): the DNS check is the DNS test's alone, which removes
    // this and gives the host the answer it wants (TestHost::point_name).
    cmd.env("IMAGE_PROVISION_NO_DNS_CHECK", "1")
}

/// `image-provision ARGS --host USER@ADDR --identity CLIENT_KEY`
/// (`bin`, the built image-provision), state in `state`, [`with_standins`],
/// and no ssh-agent: the client key is the only way in, whatever agent the
/// machine running the tests has.
/// Hermetic: none of the machine's IMAGE_PROVISION_* settings, and run in
/// `state`, so no ./image-provision.toml of the checkout is read.
pub fn on_host(bin: impl AsRef<Path>, host: &TestHost, user: &str, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IMAGE_PROVISION_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(state);
    cmd.args(args)
        .arg("--host")
        .arg(format!("{user}@{}", host.addr()))
        .arg("--identity")
        .arg(&host.client_key)
        .env("IMAGE_PROVISION_STATE_DIR", state)
        .env_remove("SSH_AUTH_SOCK");
    with_standins(&mut cmd, host);
    cmd
}

/// Run `cmd` to the end; its exit status, time and both outputs go to the
/// test's stderr under `what`, for reading a failure.
pub fn run(cmd: &mut Command, what: &str) -> Output {
    let started = Instant::now();
    let out = cmd.output().expect("running image-provision");
    eprintln!(
        "--- {what}: {} in {:.1}s\n--- stdout\n{}--- stderr\n{}",
        out.status,
        started.elapsed().as_secs_f64(),
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The files under `dirs` on the host with size, mode, owner and time (and
/// directories with mode and owner), one a line: two of them compared say
/// what a command changed.
pub fn snapshot(host: &TestHost, dirs: &str) -> String {
    host.sh_ok(&format!(
        "find {dirs} -xdev \\( -type d -printf '%p dir %m %u\\n' \\) -o -printf '%p %s %m %u %T@\\n' 2>/dev/null | sort"
    ))
}

/// Lines of `before` gone from `after` ("- LINE") and lines new in `after`
/// ("+ LINE"): empty when nothing changed.
pub fn diff(before: &str, after: &str) -> Vec<String> {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out: Vec<String> = b.difference(&a).map(|l| format!("- {l}")).collect();
    out.extend(a.difference(&b).map(|l| format!("+ {l}")));
    out
}

/// The summary table's rows (between its header and the `log:` line), each
/// split into words: STEP OUTCOME TIME DETAIL...
pub fn summary_rows(o: &Output) -> Vec<Vec<String>> {
    stdout(o)
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("log:"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|words| words.len() >= 2)
        .collect()
}

/// Every host step with the IMAGE steps, in the order they run.
pub const IMAGE_STEPS: [&str; 15] = [
    "host",
    "ready",
    "apt",
    "docker",
    "layout",
    "pull",
    "nvidia",
    "reboot",
    "gpu-check",
    "traefik",
    "llm",
    "webui",
    "stack",
    "health",
    "upkeep",
];

/// The summary table's (STEP, OUTCOME) rows; a dry run's "would change" is
/// one outcome.
pub fn outcomes(o: &Output) -> Vec<(String, String)> {
    summary_rows(o)
        .into_iter()
        .map(|w| {
            let outcome = if w[1] == "would" { "would change".to_string() } else { w[1].clone() };
            (w[0].clone(), outcome)
        })
        .collect()
}

/// The summary table's line for `step` (empty if there is none).
pub fn step_line(o: &Output, step: &str) -> String {
    stdout(o).lines().find(|l| l.split_whitespace().next() == Some(step)).unwrap_or_default().to_string()
}

/// How many times the stand-in imageup has run on the host.
pub fn imageups(host: &TestHost) -> usize {
    host.calls().iter().filter(|c| c.split_whitespace().nth(2) == Some("imageup")).count()
}

/// Run `update --json` (however the test reaches the host) on a host
/// bootstrapped with its stack in `base`, and check that it succeeded,
/// reporting the host healthy, and that it ran imageup once more and nothing
/// else: the configuration, Traefik, the packages and the services
/// untouched, no other step's commands. Returns update's output and report.
pub fn update_runs_imageup_only(
    host: &TestHost,
    base: &str,
    update: impl FnOnce() -> Output,
) -> (Output, serde_json::Value) {
    let kept = "/etc /var/docker/traefik /var/lib/dpkg/status /var/lib/standin/systemd";
    let kept_before = snapshot(host, kept);
    // The site override exists only for a host with a domain.
    let files = format!(
        "cd {base} && sha256sum .env IMAGE-server/config/*.env .image-provision/deployed $(ls site-docker-compose.yml 2>/dev/null)"
    );
    let files_before = host.sh_ok(&files);
    let calls_before = host.calls().len();
    let imageups_before = imageups(host);
    // On a booted host, real dockerd: Traefik's container (when there is
    // one) must be the same one, still running since before.
    let traefik = "docker inspect -f '{{.Id}} {{.State.StartedAt}}' traefik 2>/dev/null || true";
    let traefik_before = if host.is_booted() { host.sh_ok(traefik) } else { String::new() };
    let out = update();
    assert_eq!(out.status.code(), Some(0), "update");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(&out)));
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(imageups(host), imageups_before + 1, "update ran imageup once more");
    assert_eq!(
        diff(&kept_before, &snapshot(host, kept)),
        Vec::<String>::new(),
        "update changed more than imageup does"
    );
    assert_eq!(host.sh_ok(&files), files_before, "update rewrote a configuration file");
    if host.is_booted() {
        assert_eq!(host.sh_ok(traefik), traefik_before, "update restarted Traefik");
    }
    let calls = host.calls()[calls_before..].to_vec();
    let other: Vec<&String> = calls
        .iter()
        .filter(|c| {
            c.contains("network create")
                || c.contains("/var/docker/traefik")
                || c.contains("postinst")
                || c.contains("apt")
                || c.contains("reboot")
        })
        .collect();
    assert!(other.is_empty(), "update ran another step: {other:?}");
    (out, report)
}
