//! `verify` and `update` on a finished test host (bootstrapped with the
//! IMAGE-server stand-ins as in bootstrap_image.rs): verify reports
//! healthy and changes nothing, names the failed check once the orchestrator
//! is stopped; update runs imageup once more and nothing else; a release
//! that never gets healthy is rolled back (updates_roll_back). The hosts
//! with a stack are booted ones: real systemd, Docker, compose v2 and
//! Traefik, with certificates from pebble.

use std::path::Path;
use std::process::Output;

use image_provision_testsupport::cli::{self, diff, imageups, snapshot, state_for, stderr, stdout};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

const DOMAIN: &str = "image.example.org";
const BASE: &str = "/var/docker/image";

fn run(host: &TestHost, state: &Path, args: &[&str]) -> Output {
    // on_host drops the machine's IMAGE_PROVISION_DOMAIN: verify's default
    // domain is the host's own (its site override).
    cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, args), &format!("{args:?}"))
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
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    // Its own registry: newer releases are published to it below.
    host.enable_own_registry();
    let acme = host.enable_acme();
    let state = state_for(&host);
    // Without an LLM: the services that need one exit at start (the
    // stand-in images do as the real ones), and are left out of "deployed"
    // and "healthy", by name.
    let bootstrap =
        ["bootstrap", "--no-llm", "--domain", DOMAIN, "--acme-email", "ops@example.org", "--acme-server", &acme];
    // The DNS check: Traefik does not ask for a certificate while the
    // domain points elsewhere; the run fails within --dns-timeout naming
    // the record to create, and goes on once the record is right.
    let with_dns_check = |extra: &[&str]| {
        let args = [&bootstrap[..], &["--imageup-timeout", "3m"], extra].concat();
        let mut cmd = cli::on_host(BIN, &host, host.default_user(), state.path(), &args);
        cmd.env_remove("IMAGE_PROVISION_NO_DNS_CHECK");
        cli::run(&mut cmd, &format!("{args:?}"))
    };
    host.point_name(DOMAIN, "203.0.113.9");
    let early = with_dns_check(&["--dns-timeout", "6s"]);
    assert_eq!(early.status.code(), Some(1), "the domain points elsewhere");
    let err = stderr(&early);
    assert!(err.contains("step traefik failed"), "{err}");
    assert!(err.contains(&format!("{DOMAIN} still resolves to 203.0.113.9")), "{err}");
    assert!(err.contains(&format!("{DOMAIN}. A {}", host.ip)), "the record to create: {err}");
    assert!(!host.sh_ok("docker ps -a --format '{{.Names}}'").contains("traefik"), "Traefik was started");
    assert_eq!(imageups(&host), 0);
    let boot = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(4));
            host.point_name(DOMAIN, &host.ip.to_string());
        });
        with_dns_check(&["--dns-timeout", "60s"])
    });
    assert!(boot.status.success(), "bootstrap failed");
    let traefik_line = cli::step_line(&boot, "traefik");
    assert!(traefik_line.contains(&format!("wait for {DOMAIN} to resolve to {}", host.ip)), "{traefik_line}");
    assert_eq!(imageups(&host), 1);
    let stack_line = cli::step_line(&boot, "stack");
    assert!(stack_line.contains("will not run (no photo descriptions"), "{stack_line}");
    let all = host.sh_ok("docker ps -a --format '{{.Names}}'");
    assert!(!all.contains("graphic-caption") && !all.contains("text-followup"), "{all}");

    // verify: healthy, from the site override's domain; nothing changed.
    let before = snapshot(&host, ALL);
    let calls_before = host.calls().len();
    let containers =
        "docker ps -aq | xargs docker inspect -f '{{.Id}} {{.Name}} {{.State.Status}} {{.State.StartedAt}}' | sort";
    let containers_before = host.sh_ok(containers);
    let out = run(&host, state.path(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify on a finished host");
    let v = json(&out);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["domain"], DOMAIN);
    assert_eq!(v["extension_url"], format!("https://{DOMAIN}/"));
    // The certificate Traefik serves: pebble's, with its end and days left.
    assert_eq!(check_status(&v, "certificate"), "ok", "{v}");
    let cert = &v["certificate"];
    assert!(cert["issuer"].as_str().is_some_and(|i| i.contains("Pebble")), "{cert}");
    assert!(cert["days_left"].as_i64().is_some_and(|d| d > 14), "{cert}");
    assert_eq!((cert["staging"].clone(), cert["traefik_default"].clone()), (false.into(), false.into()), "{cert}");
    assert_eq!(v["orchestrator"], "healthy");
    assert_eq!(v["traefik_running"], true);
    assert_eq!(v["docker_nvidia_runtime"], true);
    assert!(v["driver_version"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(v["gpu"]["name"].as_str().is_some_and(|n| n.contains("NVIDIA")), "{v}");
    assert!(v["gpu"]["memory"].as_str().is_some_and(|m| m.contains("MiB")), "{v}");
    assert!(v["docker_version"].as_str().is_some_and(|d| d.starts_with("Docker version")), "{v}");
    assert!(v["services"].as_array().unwrap().iter().any(|s| s == "orchestrator"), "{v}");
    assert_eq!(v["without_llm"], serde_json::json!(["content-categoriser", "graphic-caption", "text-followup"]), "{v}");
    let stack_detail = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "stack").unwrap()["detail"].clone();
    assert!(
        stack_detail
            .as_str()
            .unwrap()
            .contains("without an LLM, not running: content-categoriser, graphic-caption, text-followup"),
        "{stack_detail}"
    );
    for check in ["driver", "docker", "nvidia-runtime", "traefik", "stack", "orchestrator"] {
        assert_eq!(check_status(&v, check), "ok", "{check}");
    }
    assert_eq!(check_status(&v, "https"), "ok", "real Traefik, pebble's certificate");
    assert!(v["failed"].as_array().unwrap().is_empty());
    assert_eq!(diff(&before, &snapshot(&host, ALL)), Vec::<String>::new(), "verify changed the host");
    let acting: Vec<String> = host.calls()[calls_before..]
        .iter()
        .filter(|c| {
            c.split_whitespace()
                .any(|w| ["create", "up", "pull", "imageup", "reboot", "restart", "start", "stop"].contains(&w))
        })
        .cloned()
        .collect();
    assert!(acting.is_empty(), "verify acted: {acting:?}");
    assert_eq!(host.sh_ok(containers), containers_before, "verify touched a container");

    // The table for people.
    let out = run(&host, state.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("extension URL   https://{DOMAIN}/")) && text.trim_end().ends_with("healthy"),
        "{text}"
    );

    // The orchestrator stopped: exit 1, named.
    host.sh_ok("docker stop image-orchestrator-1 >/dev/null");
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
    cli::update_runs_imageup_only(&host, BASE, || {
        run(&host, state.path(), &["update", "--json", "--imageup-timeout", "3m", "--health-timeout", "1m"])
    });
    assert_eq!(imageups(&host), 2);

    updates_roll_back(&host, state.path());

    // And bootstrap afterwards finds everything as it was (nothing drifted):
    // the stack rolled back by hand stays pinned, as the README says.
    let again = run(&host, state.path(), &[&bootstrap[..], &["--imageup-timeout", "3m"]].concat());
    assert!(again.status.success());
    assert_eq!(imageups(&host), 3, "bootstrap after update found the stack deployed");
    assert!(host.exists(PIN), "bootstrap lifted the pin without bringing the stack up");
    // One that brings the stack up (a service is down) runs imageup, which
    // follows the branch and `latest`: it lifts the pin, and says so.
    host.sh_ok("docker stop image-tat-1 >/dev/null");
    let again = run(&host, state.path(), &[&bootstrap[..], &["--imageup-timeout", "3m"]].concat());
    assert!(again.status.success());
    assert_eq!(imageups(&host), 4);
    let stack_line = cli::step_line(&again, "stack");
    assert!(stack_line.contains("the rollback to commit") && stack_line.contains("is undone"), "{stack_line}");
    assert!(!host.exists(PIN), "the pin stayed after imageup");
    let history = String::from_utf8_lossy(&host.read(&format!("{RECORD}/history"))).into_owned();
    assert!(history.lines().last().is_some_and(|l| l.contains("unpinned by bootstrap")), "{history}");
}

const RECORD: &str = "/var/lib/image-provision/stack";
const PIN: &str = "/var/lib/image-provision/stack/pin.yml";

/// The image a service's container runs (its id).
fn image_of(host: &TestHost, service: &str) -> String {
    host.sh_ok(&format!("docker inspect -f '{{{{.Image}}}}' image-{service}-1")).trim().to_string()
}

fn request_ok(v: &serde_json::Value) {
    assert_eq!(check_status(v, "request"), "ok", "the request answered: {v}");
}

/// Updates that roll back, on a deployed host whose registry is its own:
/// a release whose nominatim never gets healthy is rolled back to the
/// recorded commit and digests (compose pinned to them), the request
/// answered afterwards, update exiting 1 naming the service and the
/// rollback; a good release then updates by the nightly update's script
/// (lifting the pin), the prune keeps the images a rollback needs, and
/// `update --rollback` returns to them by hand.
fn updates_roll_back(host: &TestHost, state: &Path) {
    let service = "nominatim-preprocessor";
    let good = image_of(host, service);
    let commit = host.sh_ok(&format!("git -C {BASE}/IMAGE-server rev-parse HEAD")).trim().to_string();
    // The release: a commit on IMAGE-server's main, and a new image.
    host.sh_ok(
        "set -e; d=$(mktemp -d); g='git -c safe.directory=* -c user.name=t -c user.email=t@example.org'; \
         $g clone -q /srv/github/Shared-Reality-Lab/IMAGE-server.git \"$d\"; cd \"$d\"; echo 2 >RELEASE; \
         $g add RELEASE; $g commit -qm 'release 2'; $g push -q origin HEAD:main; cd /; rm -rf \"$d\"",
    );
    let broken = host.publish_image("image-preprocessor-nominatim", &["STANDIN_HEALTH=never"]);
    let started = std::time::Instant::now();
    let out = run(host, state, &["update", "--json", "--imageup-timeout", "3m", "--health-timeout", "40s"]);
    eprintln!("the broken update and its rollback took {:.1}s", started.elapsed().as_secs_f64());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "a broken release fails update: {err}");
    assert!(err.contains("the update failed: the stack was not healthy within 40 s after imageup"), "{err}");
    assert!(err.contains(&format!("{service} (")), "the service named: {err}");
    assert!(err.contains(&format!(") to commit {} (", &commit[..12])), "{err}");
    assert!(!err.contains(&format!("rolled back from commit {}", &commit[..12])), "the release's commit: {err}");
    assert!(err.contains("the stack is healthy again and answered the request"), "{err}");
    let v = json(&out);
    assert_eq!(v["healthy"], true, "{v}");
    request_ok(&v);
    let lines = v["rolled_back"]["lines"].as_array().unwrap_or_else(|| panic!("no rollback in {v}"));
    assert!(lines.iter().any(|l| l.as_str().unwrap().trim_start().starts_with(&format!("{service} "))), "{v}");
    assert_eq!(image_of(host, service), good, "back on the recorded image");
    assert_eq!(host.sh_ok(&format!("git -C {BASE}/IMAGE-server rev-parse HEAD")).trim(), commit);
    let pin = String::from_utf8_lossy(&host.read(PIN)).into_owned();
    assert!(pin.contains("image: ghcr.io/shared-reality-lab/image-preprocessor-nominatim@sha256:"), "{pin}");
    assert!(!pin.contains(&broken), "pinned to the broken release: {pin}");
    assert_eq!(host.sh_ok(&format!("stat -c %a {RECORD}")).trim(), "700", "the record is root's");
    let history = String::from_utf8_lossy(&host.read(&format!("{RECORD}/history"))).into_owned();
    assert!(history.contains("rolled back from commit"), "{history}");
    let out = run(host, state, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify after the rollback: {}", stdout(&out));
    request_ok(&json(&out));

    let nightly = |health: u32| {
        host.write("/root/auto-update.sh", image_provision_playbooks::steps::upkeep::auto_update_script().as_bytes());
        host.sh(&format!("BASE_DIR={BASE} TIMEOUT=180 HEALTH_TIMEOUT={health} IMAGEUP=no bash /root/auto-update.sh"))
    };

    // A good release, by the nightly update's script as its unit runs it
    // (IMAGEUP=no: imageup --service skips a production server, as this
    // one is): what runs recorded, compose's pull and up, the stack
    // healthy within HEALTH_TIMEOUT, the update recorded, the pin lifted.
    host.publish_image("image-preprocessor-nominatim", &["STANDIN_HEALTH=yes", "STANDIN_RELEASE=3"]);
    let out = nightly(60);
    assert!(out.status.success(), "the nightly update of a good release: {}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("compose pull and up done; the stack is healthy") && text.contains("updated from commit"),
        "{text}"
    );
    assert!(text.contains(&format!("  {service} ")), "the image that changed: {text}");
    let out = run(host, state, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify after the nightly update: {}", stdout(&out));
    request_ok(&json(&out));
    let newer = image_of(host, service);
    assert_ne!(newer, good);
    assert!(!host.exists(PIN), "the update lifted the pin");
    // The prune timer's command keeps the images a rollback needs (tagged
    // image-provision/rollback:SERVICE), though `latest` moved on.
    host.sh_ok("docker image prune --force");
    host.sh_ok(&format!("docker image inspect {good} >/dev/null"));
    assert!(
        host.sh_ok("docker images --format '{{.Repository}}:{{.Tag}}'")
            .contains(&format!("image-provision/rollback:{service}"))
    );

    // By hand: back to what ran before the good update.
    let out =
        run(host, state, &["update", "--rollback", "--json", "--imageup-timeout", "3m", "--health-timeout", "1m"]);
    assert_eq!(out.status.code(), Some(0), "update --rollback: {}", stderr(&out));
    let v = json(&out);
    request_ok(&v);
    assert!(v["rolled_back"]["summary"].as_str().is_some_and(|s| s.starts_with("rolled back from commit")), "{v}");
    assert!(v["rolled_back"]["update_failed"].is_null(), "{v}");
    assert_eq!(image_of(host, service), good, "back on the image before the good update");
    assert!(host.exists(PIN));
}

#[test]
fn verify_on_a_bare_host_fails_naming_the_checks_and_bad_flags_are_usage_errors() {
    let host = TestHost::start(Distro::Debian12);
    let state = state_for(&host);
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

/// The log files in the state directory, by name.
fn logs(state: &Path) -> Vec<String> {
    match std::fs::read_dir(state.join("logs")) {
        Ok(dir) => {
            let mut names: Vec<String> = dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

/// One config file sets the server up and is all verify and update need:
/// its [host] table's base directory (not the default) is honoured by both,
/// as no_gpu is by verify, a flag still beats it, and update's timeouts come
/// from it. update keeps a 0600 log, without the value of a secret the
/// bootstrap uploaded; verify keeps none. A malformed config file is
/// refused with exit 2, naming the file and line, before anything connects.
/// Once the LLM dies, the next verify fails and names the LLM services
/// (the orchestrator's cache cannot answer its probe).
#[test]
fn verify_and_update_take_the_config_files_host_table_and_update_keeps_a_log_without_secrets() {
    // Booted: real Docker and compose. The server has its GPU (no_gpu is
    // checked by verify below): real dockerd refuses the stack's GPU
    // services on a host without NVIDIA's toolkit (a known defect of
    // --no-gpu, see the README).
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let local = tempfile::tempdir().unwrap();
    let secret = format!("sk-test-{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let llm_url = host.enable_llm(&secret, &["Qwen/Qwen2.5-VL-7B-Instruct"]);
    let llm = local.path().join("llm.env");
    let llm_env = |model: &str| format!("LLM_URL={llm_url}\nLLM_API_KEY={secret}\nLLM_MODEL={model}\n");
    // First a model the LLM does not serve.
    std::fs::write(&llm, llm_env("Qwen/Qwen3-VL-4B-Instruct")).unwrap();
    let base = "/srv/image";
    let config = local.path().join("image-provision.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nbase_dir = \"{base}\"\nimageup_timeout = \"3m\"\nhealth_timeout = \"1m\"\n\n\
             [host.env_files]\n\"llm.env\" = \"{}\"\n",
            llm.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // The LLM check stops the run before the stack starts, naming the URL
    // and the model, never the key; with the model fixed, the next run goes on.
    let boot = run(&host, state.path(), &["--config", config, "bootstrap"]);
    assert_eq!(boot.status.code(), Some(1), "a model the LLM does not serve");
    let err = stderr(&boot);
    assert!(err.contains("step stack failed"), "{err}");
    assert!(
        err.contains(&format!("the LLM at {llm_url} does not serve LLM_MODEL Qwen/Qwen3-VL-4B-Instruct"))
            && err.contains("it lists: Qwen/Qwen2.5-VL-7B-Instruct"),
        "{err}"
    );
    assert!(!err.contains(&secret) && !stdout(&boot).contains(&secret), "the key was shown");
    assert_eq!(imageups(&host), 0, "the stack was not started");
    assert_eq!(host.llm_requests(), ["GET /v1/models auth=ok"]);
    std::fs::write(&llm, llm_env("Qwen/Qwen2.5-VL-7B-Instruct")).unwrap();
    let boot = run(&host, state.path(), &["--config", config, "bootstrap"]);
    assert!(boot.status.success(), "bootstrap from the config file");
    assert!(host.exists(&format!("{base}/.env")), "the stack is in {base}");
    assert_eq!(host.sh_ok(&format!("readlink {BASE}")).trim(), base, "{BASE} leads there");
    let uploaded = String::from_utf8_lossy(&host.read(&format!("{base}/IMAGE-server/config/llm.env"))).into_owned();
    assert!(uploaded.contains(&secret), "the secret reached the host (so a leak into update's log would be caught)");
    assert_eq!(imageups(&host), 1);

    // Without the file: the default base directory (no stack there):
    // unhealthy. With it: healthy.
    let out = run(&host, state.path(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the defaults do not describe this host");
    let v = json(&out);
    assert_eq!(check_status(&v, "stack"), "failed");
    assert_eq!(check_status(&v, "driver"), "ok");
    let logs_before = logs(state.path());
    let calls_before = host.calls().len();
    let out = run(&host, state.path(), &["--config", config, "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify with the config file");
    let v = json(&out);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(check_status(&v, "stack"), "ok");
    assert_eq!(check_status(&v, "driver"), "ok");
    assert!(v.get("log").is_none(), "verify keeps no log: {v}");
    // no_gpu in a file: verify leaves the driver out (here a driver that
    // fails: nvidia-smi gone).
    let no_gpu = local.path().join("no-gpu.toml");
    std::fs::write(&no_gpu, format!("[host]\nbase_dir = \"{base}\"\nno_gpu = true\n")).unwrap();
    host.sh_ok("mv /usr/bin/nvidia-smi /usr/bin/nvidia-smi.away");
    let out = run(&host, state.path(), &["--config", no_gpu.to_str().unwrap(), "verify", "--json"]);
    assert_eq!(check_status(&json(&out), "driver"), "skipped", "no_gpu from the file: {}", stdout(&out));
    let out = run(&host, state.path(), &["--config", config, "verify", "--json"]);
    assert_eq!(check_status(&json(&out), "driver"), "failed", "{}", stdout(&out));
    host.sh_ok("mv /usr/bin/nvidia-smi.away /usr/bin/nvidia-smi");
    assert_eq!(logs(state.path()), logs_before, "verify wrote a log");
    assert_eq!(imageups(&host), 1);
    assert!(host.calls().len() > calls_before, "verify did read the host");

    // A flag beats the file: --base-dir to where no stack is.
    let out = run(&host, state.path(), &["--config", config, "verify", "--json", "--base-dir", "/srv/elsewhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(check_status(&json(&out), "stack"), "failed", "--base-dir beat the file");

    // `update --rollback` before any update succeeded: nothing to return
    // to, said so, exit 1, nothing run.
    let out = run(&host, state.path(), &["--config", config, "update", "--rollback"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no earlier state recorded"), "{}", stderr(&out));
    assert_eq!(imageups(&host), 1);

    // update: imageup once more in the file's base directory (nothing
    // else), its timeouts from the file, and a log like bootstrap's.
    let (out, v) = cli::update_runs_imageup_only(&host, base, || {
        run(&host, state.path(), &["--config", config, "update", "--json"])
    });
    let err = stderr(&out);
    assert!(err.contains("imageup (time limit 180 s)"), "imageup_timeout from the file: {err}");
    let log_path = v["log"].as_str().unwrap_or_else(|| panic!("no log in {v}")).to_string();
    assert!(err.contains(&format!("log: {log_path}")), "the log's path is printed: {err}");
    assert!(log_path.starts_with(&format!("{}/logs/update-", state.path().display())), "{log_path}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log holds every command's output");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("update.sh") && log.contains("imageup done") && log.contains("--- stdout:"),
        "the log holds imageup's output"
    );
    assert!(!log.contains(&secret), "update's log holds the LLM_API_KEY value");
    assert!(!stdout(&out).contains(&secret) && !err.contains(&secret), "update printed the LLM_API_KEY value");
    // The table for people names the log too.
    let out = run(&host, state.path(), &["--config", config, "update"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).lines().last().is_some_and(|l| l.starts_with("log: ")), "{}", stdout(&out));

    // A malformed config file (a TOML error, a misspelt key): exit 2, the
    // file and line named, nothing run on the host, no log started.
    let bad_syntax = local.path().join("syntax.toml");
    std::fs::write(&bad_syntax, format!("[host]\nno_gpu = true\nbase_dir = {base}\n")).unwrap();
    let bad_key = local.path().join("key.toml");
    std::fs::write(&bad_key, format!("[host]\nbase_dri = \"{base}\"\n")).unwrap();
    let before = snapshot(&host, &format!("{ALL} {base}"));
    let calls_before = host.calls();
    let logs_before = logs(state.path());
    for (file, line, what) in [(&bad_syntax, 3, ""), (&bad_key, 2, "unknown field `base_dri`")] {
        for command in [&["verify", "--json"][..], &["update", "--json"]] {
            let mut args = vec!["--config", file.to_str().unwrap()];
            args.extend(command);
            let out = run(&host, state.path(), &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = stderr(&out);
            assert!(err.contains(&format!("config file {}: line {line}", file.display())), "{args:?}: {err}");
            assert!(err.contains(what), "{args:?}: {err}");
            assert!(stdout(&out).is_empty(), "{args:?} reported: {}", stdout(&out));
        }
    }
    assert_eq!(host.calls(), calls_before, "nothing ran on the host");
    assert_eq!(diff(&before, &snapshot(&host, &format!("{ALL} {base}"))), Vec::<String>::new(), "the host changed");
    assert_eq!(logs(state.path()), logs_before, "no log was started");

    // The LLM dies. The orchestrator keeps the LLM preprocessors' answers
    // for an hour, keyed by the graphic (the stand-in as IMAGE's does), so
    // a probe sent before would be answered from that cache: each verify's
    // probe is a graphic of its own, and the next one fails, naming the
    // services that need the LLM.
    let out = run(&host, state.path(), &["--config", config, "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "verify with the LLM up: {}", stdout(&out));
    let asked = host.llm_requests().len();
    host.stop_llm();
    let started = std::time::Instant::now();
    let out = run(&host, state.path(), &["--config", config, "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "verify with the LLM down: {}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["failed"], serde_json::json!(["request"]), "{v}");
    let request = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "request").unwrap();
    let detail = request["detail"].as_str().unwrap();
    assert!(
        detail.contains("the LLM services (content-categoriser graphic-caption text-followup) did not answer"),
        "{detail}"
    );
    assert!(!detail.contains(&secret) && !stderr(&out).contains(&secret), "the key was shown");
    assert_eq!(host.llm_requests().len(), asked, "the dead LLM answered nothing");
    eprintln!("verify with the LLM down failed in {:.1}s", started.elapsed().as_secs_f64());
}
