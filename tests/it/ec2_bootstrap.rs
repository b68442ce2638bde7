//! `ec2 create` end to end: the instance from moto's EC2 API, and its host
//! steps on a test host standing where the instance would be
//! (IMAGE_PROVISION_TEST_SSH_ADDR), which serves the host key that create
//! hands over in user data, as cloud-init would install it. The end-to-end
//! test's host is a booted one: real systemd, Docker, compose v2, Traefik,
//! and pebble as the ACME server.

use std::path::Path;
use std::process::{Command, Output};

use image_provision_testsupport::cli;
use image_provision_testsupport::ec2env::*;
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

fn create(env: &Ec2Env, host: &TestHost, name: &str) -> Output {
    create_with(env, host, name, false, &[])
}

/// `ec2 create`; with `stack` all steps to the IMAGE stack behind Traefik
/// (the stand-in IMAGE-server repository, the site for a test domain),
/// else part 1's steps only.
pub(crate) fn create_with(env: &Ec2Env, host: &TestHost, name: &str, stack: bool, extra: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(["ec2", "create", name, "--ssh-key"]).arg(&host.client_key).args(extra);
    if stack {
        cmd.args(["--no-llm", "--domain", "image.example.org", "--acme-email", "ops@example.org"])
            .args(["--imageup-timeout", "3m"])
            .args(["--repo-url", "https://github.com/Shared-Reality-Lab/IMAGE-server.git"]);
    } else {
        cmd.env("IMAGE_PROVISION_NO_STACK", "1");
    }
    cli::with_standins(&mut cmd, host).env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
    cli::run(&mut cmd, &format!("ec2 create {name}"))
}

/// Make the host key create will hand over, and install it on the host as
/// cloud-init would from the user data.
pub(crate) fn host_key_installed(env: &Ec2Env, host: &TestHost, name: &str) -> String {
    let dir = env.server_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ssh_host_ed25519_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "handed-over", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    host.write("/etc/ssh/ssh_host_ed25519_key", &std::fs::read(&key).unwrap());
    host.write("/etc/ssh/ssh_host_ed25519_key.pub", &std::fs::read(pub_of(&key)).unwrap());
    host.sh_ok("chmod 600 /etc/ssh/ssh_host_ed25519_key");
    host.restart_sshd();
    std::fs::read_to_string(pub_of(&key)).unwrap()
}

/// `verify NAME` or `update NAME` (ARGS split on spaces): the instance by its
/// tag, reached at the test host, logged in with the key create imported.
fn by_name(env: &Ec2Env, host: &TestHost, args: &str) -> Output {
    let mut cmd = env.cmd();
    cmd.args(args.split(' ')).arg("--identity").arg(&host.client_key);
    cli::with_standins(&mut cmd, host).env("IMAGE_PROVISION_TEST_SSH_ADDR", host.addr());
    cli::run(&mut cmd, args)
}

/// The expiry timer's calendar on the host.
fn tag_calendar(host: &TestHost) -> String {
    host.sh_ok("systemctl show -p TimersCalendar --value image-provision-expire.timer")
}

/// systemd's rendering of the calendar event for an RFC 3339 expiry.
fn calendar(expires_at: &str) -> String {
    let at: jiff::Timestamp = expires_at.parse().unwrap_or_else(|e| panic!("{expires_at:?}: {e}"));
    format!("OnCalendar={} ;", at.strftime("%Y-%m-%d %H:%M:%S UTC"))
}

fn pub_of(key: &Path) -> std::path::PathBuf {
    key.with_extension("pub")
}

#[test]
fn ec2_create_runs_the_host_steps_verifying_the_handed_over_host_key() {
    let env = Ec2Env::start(BIN);
    // The Ubuntu 22.04 stand-in (a Debian root with Ubuntu's os-release): the AMI's distribution.
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    // https://image.example.org/ answers through real Traefik with a
    // certificate from pebble: the health step and verify check it for real.
    let acme = host.enable_acme();
    let public = host_key_installed(&env, &host, "e2e");

    let out = create_with(&env, &host, "e2e", true, &["--acme-server", &acme, "--ttl", "2h"]);
    assert_eq!(out.status.code(), Some(0));
    let summary = stdout(&out);
    // The server ends itself at its expiry: a timer on the host, armed at
    // the tag's time.
    let expires = summary.lines().find_map(|l| l.strip_prefix("expires    ")).unwrap_or_default();
    let expires = expires.split_whitespace().next().unwrap_or_default().to_string();
    assert!(tag_calendar(&host).contains(&calendar(&expires)), "{}: {summary}", tag_calendar(&host));
    assert!(summary.contains("extension URL: https://image.example.org/"), "{summary}");
    let time = summary.lines().find(|l| l.starts_with("time       ")).unwrap_or_default();
    assert!(time.contains("to running ") && time.contains("to SSH "), "{summary}");
    let total = summary.lines().find(|l| l.starts_with("total      ")).unwrap_or_default();
    assert!(total.contains("up and answering SSH ") && total.contains("host steps "), "{summary}");
    let health = summary.lines().find(|l| l.starts_with("health")).unwrap_or_default();
    assert!(health.contains("GET https://image.example.org/health") && health.contains(" at 127.0.0.1"), "{health}");
    assert!(health.contains("POST /render/preprocess answered in "), "the request went through Traefik: {health}");
    for step in ["host", "docker", "nvidia", "reboot", "gpu-check", "layout", "traefik", "stack", "health"] {
        assert!(summary.lines().any(|l| l.starts_with(step)), "{step} missing from\n{summary}");
    }
    assert_eq!(host.reboots(), 1);
    assert!(host.sh("nvidia-smi").status.success(), "GPU verified on the host");
    assert!(host.sh_ok("getent group docker").contains("ubuntu"));
    // The key the host served is the one recorded for it, from user data.
    let known = std::fs::read_to_string(env.server_dir("e2e").join("known_hosts")).unwrap();
    let key_fields: Vec<&str> = public.split_whitespace().take(2).collect();
    assert!(known.contains(&format!("{} {}", host.ip, key_fields.join(" "))), "{known}");

    // A healthy stack, as `verify NAME` finds it (instance by tag, the
    // state directory's known_hosts, strictly; the key create imported).
    let verify = || {
        let out = by_name(&env, &host, "verify e2e --json");
        assert_eq!(out.status.code(), Some(0), "verify NAME: healthy");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["healthy"], true);
        assert_eq!(v["orchestrator"], "healthy");
        assert_eq!(v["extension_url"], "https://image.example.org/");
        let https = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "https").cloned();
        assert_eq!(https.as_ref().map(|c| c["status"].clone()), Some("ok".into()), "{https:?}");
    };
    verify();

    // `ec2 stop` and `ec2 start`, a real reboot standing in for what a stop
    // and a start do to the host: stopped on moto, the host rebooted, then
    // start waits for SSH and for the stack its boot unit brings back, with
    // the pinned host key, and verifies it.
    let out = env.run(&["ec2", "stop", "e2e"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reboots = host.reboots();
    // (From inside: the host now serves the handed-over key, which the test
    // host's own known_hosts does not hold.)
    let _ = host.sh("systemctl reboot");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while host.reboots() <= reboots {
        assert!(std::time::Instant::now() < deadline, "no reboot within 120 s:\n{}", host.logs());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = by_name(&env, &host, "ec2 start e2e --json --ready-timeout 3m --health-timeout 5m");
    assert_eq!(out.status.code(), Some(0), "start: running, the stack back and verified");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["already_running"].clone(), v["verify"]["healthy"].clone()), (false.into(), true.into()), "{v}");
    assert!(stderr(&out).contains("the stack passed verify after "), "{}", stderr(&out));
    assert!(host.sh_ok("journalctl -b -u image-provision-stack --no-pager").contains("the stack is up"));
    assert_eq!(host.reboots(), 2);

    // `update NAME`, found the same way: imageup once more and nothing
    // else; healthy after it, as verify NAME finds it.
    let (_, v) = cli::update_runs_imageup_only(&host, "/var/docker/image", || {
        by_name(&env, &host, "update e2e --json --imageup-timeout 3m --health-timeout 1m")
    });
    assert_eq!(v["host"], format!("ubuntu@{}", host.ip), "the instance's login user, at the test address");
    let log = v["log"].as_str().unwrap_or_else(|| panic!("no log in {v}"));
    assert!(log.starts_with(&format!("{}/logs/update-", env.state_dir().display())), "{log}");
    verify();

    // Converged: a second create (as JSON) reuses the instance and changes
    // nothing but the expiry it moves (tag and timer); each host step is
    // there with its time.
    let again = create_with(&env, &host, "e2e", true, &["--json", "--acme-server", &acme, "--ttl", "5h"]);
    assert_eq!(again.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).expect("one JSON object on stdout");
    assert_eq!((v["reused"].clone(), v["ok"].clone()), (true.into(), true.into()), "{v}");
    let steps = v["steps"].as_array().unwrap_or_else(|| panic!("no steps in {v}"));
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names.first(), Some(&"host"), "{names:?}");
    assert_eq!(names.last(), Some(&"upkeep"), "{names:?}");
    let changed: Vec<&str> = steps
        .iter()
        .filter(|s| s["outcome"] != "ok" && s["outcome"] != "skipped")
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(changed, ["upkeep"], "a converged run did more than move the expiry: {steps:?}");
    let moved = v["expires_at"].as_str().unwrap().to_string();
    assert!(moved > expires, "{moved} after {expires}");
    assert!(tag_calendar(&host).contains(&calendar(&moved)), "re-armed at {moved}: {}", tag_calendar(&host));
    let step_secs: f64 = steps.iter().filter_map(|s| s["seconds"].as_f64()).sum();
    let host_secs = v["time"]["host_steps_seconds"].as_f64().unwrap();
    assert!((host_secs - step_secs).abs() < 0.1 * steps.len() as f64, "{host_secs} vs {step_secs}");
    assert_eq!(host.reboots(), 2, "the driver's reboot and the stop and start's");

    let out = env.run(&["ec2", "destroy", "e2e", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&env.run(&["ec2", "list", "--json"])).trim(), "[]");
}

#[test]
fn ec2_create_refuses_a_host_serving_another_key() {
    let env = Ec2Env::start(BIN);
    let host = TestHost::start(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    let calls_before = host.read("/var/log/standin/calls.log");
    // No key installed: the host serves its own, not the one handed over.
    let out = create(&env, &host, "impostor");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("SHA256:"), "the fingerprints are shown: {err}");
    assert_eq!(host.read("/var/log/standin/calls.log"), calls_before, "nothing ran on the host");
    assert!(!host.exists("/usr/bin/docker"), "nothing was installed");
}
