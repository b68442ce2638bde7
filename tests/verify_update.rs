//! `verify` and `update` on a finished test host (bootstrapped with the
//! IMAGE-server stand-ins as in tests/bootstrap_image.rs): verify reports
//! healthy and changes nothing, names the failed check once the orchestrator
//! is stopped; update runs imageup once more and nothing else.

#[path = "support/testhost.rs"]
mod testhost;

use std::path::Path;
use std::process::{Command, Output};

use testhost::{Distro, TestHost};

const BIN: &str = env!("CARGO_BIN_EXE_image-provision");
const DOMAIN: &str = "image.example.org";
const BASE: &str = "/var/docker/image";

fn run(host: &TestHost, state: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--host")
        .arg(format!("{}@127.0.0.1:{}", host.default_user(), host.port))
        .arg("--identity")
        .arg(&host.client_key)
        .env("IMAGE_PROVISION_STATE_DIR", state)
        .env("IMAGE_PROVISION_DOCKER_REPO", "file:/srv/standin-signed /")
        .env("IMAGE_PROVISION_DOCKER_REPO_KEY", "file:///srv/standin-signed/key.asc")
        .env("IMAGE_PROVISION_NVIDIA_REPO", "file:/srv/standin-nvidia /")
        .env("IMAGE_PROVISION_NVIDIA_REPO_KEY", "file:///srv/standin-nvidia/key.asc")
        .env("IMAGE_PROVISION_TEST_NO_HTTPS_HEALTH", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("IMAGE_PROVISION_DOMAIN")
        .output()
        .expect("running image-provision");
    eprintln!("--- {args:?}: {}\n--- stdout\n{}--- stderr\n{}", out.status, stdout(&out), stderr(&out));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn snapshot(host: &TestHost, dirs: &str) -> String {
    host.sh_ok(&format!(
        "find {dirs} -xdev \\( -type d -printf '%p dir %m %u\\n' \\) -o -printf '%p %s %m %u %T@\\n' 2>/dev/null | sort"
    ))
}

fn diff(before: &str, after: &str) -> Vec<String> {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    b.symmetric_difference(&a).map(|l| l.to_string()).collect()
}

fn imageups(host: &TestHost) -> usize {
    host.calls().iter().filter(|c| c.split_whitespace().nth(2) == Some("imageup")).count()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(o)))
}

fn check_status<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))["status"]
        .as_str()
        .unwrap()
}

const ALL: &str = "/etc /var/docker /root /var/lib/standin /var/lib/dpkg/status";

#[test]
fn verify_reports_healthy_changes_nothing_and_names_a_failed_check_then_update_runs_imageup_only() {
    let host = TestHost::start(Distro::Debian12);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("known_hosts"), host.known_hosts_line() + "\n").unwrap();
    let boot = run(
        &host,
        state.path(),
        &["bootstrap", "--domain", DOMAIN, "--acme-email", "ops@example.org", "--imageup-timeout", "3m"],
    );
    assert!(boot.status.success(), "bootstrap failed");
    assert_eq!(imageups(&host), 1);

    // verify: healthy, from the site override's domain; nothing changed.
    let before = snapshot(&host, ALL);
    let calls_before = host.calls().len();
    let out = run(&host, state.path(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify on a finished host");
    let v = json(&out);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["domain"], DOMAIN);
    assert_eq!(v["extension_url"], format!("https://{DOMAIN}/"));
    assert_eq!(v["orchestrator"], "healthy");
    assert_eq!(v["traefik_running"], true);
    assert_eq!(v["docker_nvidia_runtime"], true);
    assert!(v["driver_version"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(v["gpu"]["name"].as_str().is_some_and(|n| n.contains("NVIDIA")), "{v}");
    assert!(v["gpu"]["memory"].as_str().is_some_and(|m| m.contains("MiB")), "{v}");
    assert!(v["docker_version"].as_str().is_some_and(|d| d.starts_with("Docker version")), "{v}");
    assert!(v["services"].as_array().unwrap().iter().any(|s| s == "orchestrator"), "{v}");
    for check in ["driver", "docker", "nvidia-runtime", "traefik", "stack", "orchestrator"] {
        assert_eq!(check_status(&v, check), "ok", "{check}");
    }
    assert_eq!(check_status(&v, "https"), "skipped", "no DNS in the test host");
    assert!(v["failed"].as_array().unwrap().is_empty());
    assert_eq!(diff(&before, &snapshot(&host, ALL)), Vec::<String>::new(), "verify changed the host");
    let acting: Vec<String> = host.calls()[calls_before..]
        .iter()
        .filter(|c| c.split_whitespace().any(|w| ["create", "up", "pull", "imageup", "reboot", "restart", "start", "stop"].contains(&w)))
        .cloned()
        .collect();
    assert!(acting.is_empty(), "verify acted: {acting:?}");

    // The table for people.
    let out = run(&host, state.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(&format!("extension URL   https://{DOMAIN}/")) && text.trim_end().ends_with("healthy"), "{text}");

    // The orchestrator stopped (the Docker stand-in's state): exit 1, named.
    host.sh_ok("sed -i 's/^state=.*/state=exited/' /var/lib/standin/docker/containers/image-orchestrator-1");
    let out = run(&host, state.path(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "an unhealthy host fails verify");
    let v = json(&out);
    assert_eq!(v["healthy"], false);
    assert_eq!(check_status(&v, "orchestrator"), "failed");
    let failed: Vec<&str> = v["failed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(failed.contains(&"orchestrator") && failed.contains(&"stack"), "{failed:?}");
    assert!(stderr(&out).contains("failed check(s) stack, orchestrator"), "{}", stderr(&out));
    let out = run(&host, state.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).lines().any(|l| l.starts_with("orchestrator") && l.contains("failed")), "{}", stdout(&out));

    // update: imageup once more (bringing the stack back), then healthy; the
    // configuration, Traefik, packages and the rest untouched.
    let kept = "/etc /var/docker/traefik /var/lib/dpkg/status /var/lib/standin/systemd";
    let kept_before = snapshot(&host, kept);
    let files = format!(
        "sha256sum {BASE}/.env {BASE}/site-docker-compose.yml {BASE}/IMAGE-server/config/*.env {BASE}/.image-provision/deployed"
    );
    let files_before = host.sh_ok(&files);
    let calls_before = host.calls().len();
    let out = run(&host, state.path(), &["update", "--json", "--imageup-timeout", "3m", "--health-timeout", "1m"]);
    assert_eq!(out.status.code(), Some(0), "update");
    let v = json(&out);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(imageups(&host), 2, "update ran imageup once more");
    assert_eq!(diff(&kept_before, &snapshot(&host, kept)), Vec::<String>::new(), "update changed more than imageup does");
    assert_eq!(host.sh_ok(&files), files_before, "update rewrote a configuration file");
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
    assert_eq!(calls.iter().filter(|c| c.split_whitespace().nth(2) == Some("imageup")).count(), 1, "{calls:#?}");

    // And bootstrap afterwards finds everything as it was (nothing drifted).
    let again = run(
        &host,
        state.path(),
        &["bootstrap", "--domain", DOMAIN, "--acme-email", "ops@example.org", "--imageup-timeout", "3m"],
    );
    assert!(again.status.success());
    assert_eq!(imageups(&host), 2, "bootstrap after update found the stack deployed");
}

#[test]
fn verify_on_a_bare_host_fails_naming_the_checks_and_bad_flags_are_usage_errors() {
    let host = TestHost::start(Distro::Debian12);
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("known_hosts"), host.known_hosts_line() + "\n").unwrap();
    let out = run(&host, state.path(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    for check in ["driver", "docker", "stack", "orchestrator"] {
        assert_eq!(check_status(&v, check), "failed", "{check}");
    }
    let out = run(&host, state.path(), &["verify", "--domain", "not_a host"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&host, state.path(), &["update", "--imageup-timeout", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    // update on a host never bootstrapped: a clear error, exit 1.
    let out = run(&host, state.path(), &["update", "--no-gpu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not bootstrapped"), "{}", stderr(&out));
}
