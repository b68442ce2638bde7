//! The IMAGE steps of `image-provision bootstrap --host` (layout, pull,
//! traefik, stack, health) on test hosts (testsupport/src/testhost.rs): a
//! Debian 12 root under sshd with part 1's stand-ins, the stand-in
//! IMAGE-server repository served as https://github.com/... by the
//! git-remote-https stand-in, and the Docker and compose stand-ins keeping
//! containers, networks and images in files.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use image_provision_testsupport::cli::{self, IMAGE_STEPS, outcomes, state_for, stderr, stdout, step_line};
use image_provision_testsupport::testhost::{Distro, TestHost};
use yaml_rust2::{Yaml, YamlLoader};

use crate::BIN;

const DOMAIN: &str = "image.example.org";
const BASE: &str = "/var/docker/image";

fn bootstrap(host: &TestHost, state: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = ["bootstrap"].into_iter().chain(extra.iter().copied()).collect();
    cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, &args), &format!("bootstrap {extra:?}"))
}

fn log_file(o: &Output) -> String {
    let path = stdout(o).lines().find_map(|l| l.strip_prefix("log: ").map(str::to_owned)).expect("log line");
    std::fs::read_to_string(path).unwrap()
}

fn text(host: &TestHost, path: &str) -> String {
    String::from_utf8_lossy(&host.read(path)).into_owned()
}

fn yaml(host: &TestHost, path: &str) -> Yaml {
    YamlLoader::load_from_str(&text(host, path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}")).remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}")).to_string())
        .collect()
}

/// A fingerprint of what a bootstrap could change: files with size, mode,
/// owner and time, and the Docker stand-in's containers and networks.
/// What the IMAGE steps could change, as [`cli::snapshot`] reads it.
fn snapshot(host: &TestHost) -> String {
    cli::snapshot(host, "/etc /var/docker /root /var/lib/standin /var/lib/dpkg/status")
}

fn position(calls: &[String], what: &str) -> usize {
    calls
        .iter()
        .position(|c| c.contains(what))
        .unwrap_or_else(|| panic!("no call with {what:?} in\n{}", calls.join("\n")))
}

#[test]
fn bare_host_to_the_running_stack_behind_traefik_then_converged() {
    let host = TestHost::start(Distro::Debian12);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    // https://DOMAIN/ reaches Traefik's stand-in: the health step's HTTPS
    // check runs for real, against the host's own Traefik (the stand-in's
    // address in place of 127.0.0.1). The host's own resolver sends DOMAIN
    // elsewhere (a stale record: nothing listens on 127.0.0.2), so the
    // check passes only if it does not ask DNS.
    host.enable_traefik_standin(DOMAIN);
    let https_addr = host.https_addr().expect("the Traefik stand-in's address");
    host.sh_ok(&format!("echo '127.0.0.2 {DOMAIN}' >>/etc/hosts"));
    // sudo logs every command line it runs (as sudo's logfile option does on
    // servers that keep one): no secret and no script may be on them.
    host.write("/etc/sudoers.d/00-logfile", b"Defaults logfile=/var/log/sudo.log\n");
    host.sh_ok("chmod 0440 /etc/sudoers.d/00-logfile");
    // The driver's configure takes 4 s and the pull 6 s: a pull started
    // right after Docker is still running when the driver is done.
    host.write("/var/lib/standin/hooks/slow-postinst", b"4\n");
    host.write("/var/lib/standin/hooks/pull-seconds-image", b"6\n");
    let state = state_for(&host);

    let secret = format!("sk-test-{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let local = tempfile::tempdir().unwrap();
    let llm = format!(
        "# the LLM endpoint\nLLM_URL=https://llm.example.org/v1\nLLM_API_KEY={secret}\nLLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct\n"
    );
    let maps = "GOOGLE_PLACES_API_KEY=maps-placeholder\n";
    std::fs::write(local.path().join("llm.env"), &llm).unwrap();
    std::fs::write(local.path().join("maps.env"), maps).unwrap();
    let llm_arg = format!("llm.env={}", local.path().join("llm.env").display());
    let maps_arg = format!("maps.env={}", local.path().join("maps.env").display());
    let args = [
        "--domain",
        DOMAIN,
        "--acme-email",
        "ops@example.org",
        "--env-file",
        &llm_arg,
        "--env-file",
        &maps_arg,
        "--imageup-timeout",
        "3m",
    ];

    let first = bootstrap(&host, state.path(), &args);
    assert!(first.status.success(), "first run failed");
    let steps = outcomes(&first);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, IMAGE_STEPS);
    for (step, outcome) in &steps {
        let want = if matches!(step.as_str(), "host" | "ready" | "gpu-check" | "health") { "ok" } else { "changed" };
        assert_eq!(outcome, want, "step {step}");
    }
    assert!(stdout(&first).contains(&format!("extension URL: https://{DOMAIN}/")), "{}", stdout(&first));
    let health = step_line(&first, "health");
    assert!(health.contains(&format!("GET https://{DOMAIN}/health")), "{health}");
    assert!(health.contains(&format!(" at {https_addr}")), "sent to the stand-in's address: {health}");

    // .env: compose's settings, DOCKER_GID the host's docker group.
    let gid = host.sh_ok("getent group docker | cut -d: -f3").trim().to_string();
    let env = text(&host, &format!("{BASE}/.env"));
    let value = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing:\n{env}"))
            .to_string()
    };
    assert_eq!(value("DOCKER_GID"), gid);
    assert_eq!(value("COMPOSE_PROFILES"), "production");
    assert_eq!(value("REGISTRY_TAG"), "latest");
    assert_eq!(value("PII_LOGGING_ENABLED"), "false");
    assert_eq!(value("COMPOSE_FILE"), format!("{BASE}/docker-compose.yml:{BASE}/site-docker-compose.yml"));

    // The layout: directories, links, the clone with its submodule.
    host.sh_ok(&format!("test -d {BASE}/cache && test -d {BASE}/testing/warmup"));
    assert_eq!(host.sh_ok(&format!("readlink {BASE}/bin")).trim(), format!("{BASE}/IMAGE-server/scripts"));
    assert_eq!(host.sh_ok(&format!("readlink {BASE}/config")).trim(), "IMAGE-server/config");
    assert_eq!(host.sh_ok(&format!("readlink {BASE}/docker-compose.yml")).trim(), "IMAGE-server/docker-compose.yml");
    assert!(
        host.exists(&format!("{BASE}/IMAGE-server/schemas/request.schema.json")),
        "the schemas submodule is checked out"
    );
    // The submodule's SSH URL went over HTTPS through root's git config.
    assert!(
        host.sh_ok("git config --file /root/.gitconfig --get-all url.https://github.com/.insteadof")
            .contains("git@github.com:")
    );
    let calls = host.calls();
    let https: Vec<&String> = calls.iter().filter(|c| c.contains("git-remote-https")).collect();
    assert!(https.len() >= 2, "the clone and the submodule over HTTPS: {https:?}");
    assert!(https.iter().all(|c| c.contains("https://github.com/Shared-Reality-Lab/IMAGE-server.git")), "{https:?}");

    // The site override, as compose would read it.
    let site = yaml(&host, &format!("{BASE}/site-docker-compose.yml"));
    let orch = &site["services"]["orchestrator"];
    let labels = strings(&orch["labels"]);
    for want in [
        "traefik.enable=true".to_string(),
        format!("traefik.http.routers.orchestrator.rule=Host(`{DOMAIN}`)"),
        "traefik.http.routers.orchestrator.tls.certresolver=myresolver".into(),
        "traefik.docker.network=traefik".into(),
    ] {
        assert!(labels.contains(&want), "{want} not in {labels:?}");
    }
    assert_eq!(strings(&orch["networks"]), ["default", "traefik"]);
    for (service, router, prefix) in [("monarch-link-app", "monarch", "/monarch"), ("tat", "tat", "/tat")] {
        let labels = strings(&site["services"][service]["labels"]);
        assert!(
            labels.contains(&format!("traefik.http.routers.{router}.rule=Host(`{DOMAIN}`) && PathPrefix(`{prefix}`)")),
            "{labels:?}"
        );
        assert!(
            labels.contains(&format!("traefik.http.middlewares.{router}-stripprefix.stripprefix.prefixes={prefix}"))
        );
        assert!(labels.contains(&format!("traefik.http.routers.{router}.middlewares={router}-stripprefix@docker")));
    }
    assert_eq!(strings(&site["services"]["tat"]["environment"]), [format!("SERVER_URL=https://{DOMAIN}/")]);
    assert_eq!(site["networks"]["traefik"]["external"].as_bool(), Some(true));

    // Traefik's compose file.
    let traefik = yaml(&host, "/var/docker/traefik/docker-compose.yml");
    let t = &traefik["services"]["traefik"];
    let image = t["image"].as_str().unwrap();
    assert!(image.starts_with("traefik:v3.") && image.matches('.').count() == 2, "pinned: {image}");
    assert!(!t["container_name"].as_str().unwrap().contains("image"));
    assert_eq!(strings(&t["networks"]), ["traefik"], "never on the image network");
    assert_eq!(strings(&t["ports"]), ["80:80", "443:443"]);
    let command = strings(&t["command"]);
    for want in [
        "--entrypoints.web.address=:80",
        "--entrypoints.websecure.address=:443",
        "--entrypoints.web.http.redirections.entrypoint.to=websecure",
        "--entrypoints.web.http.redirections.entrypoint.scheme=https",
        "--certificatesresolvers.myresolver.acme.httpchallenge=true",
        "--certificatesresolvers.myresolver.acme.httpchallenge.entrypoint=web",
        "--certificatesresolvers.myresolver.acme.email=ops@example.org",
    ] {
        assert!(command.iter().any(|c| c == want), "{want} not in {command:?}");
    }

    // config/*.env: every one present, 0600, with the content given.
    let modes = host.sh_ok(&format!("cd {BASE}/IMAGE-server/config && stat -c '%n %a' *.env"));
    let names: Vec<&str> = modes.lines().map(|l| l.split(' ').next().unwrap()).collect();
    for want in ["apis-and-selection.env", "azure-api.env", "express-common.env", "imageup.env", "llm.env", "maps.env"]
    {
        assert!(names.contains(&want), "{want} missing: {modes}");
    }
    assert!(modes.lines().all(|l| l.ends_with(" 600")), "{modes}");
    assert_eq!(text(&host, &format!("{BASE}/config/llm.env")), llm);
    assert_eq!(text(&host, &format!("{BASE}/config/maps.env")), maps);
    assert_eq!(text(&host, &format!("{BASE}/config/azure-api.env")), "");
    assert_eq!(text(&host, &format!("{BASE}/config/apis-and-selection.env")), "");
    let imageup_env = text(&host, &format!("{BASE}/config/imageup.env"));
    for want in [
        format!("COMPOSE_ENV_FILE={BASE}/.env"),
        "ENVIRONMENT=production".into(),
        format!("DOCKER_DIR={BASE}"),
        format!("IMAGE_SERVER_DIR={BASE}/IMAGE-server"),
        "GIT_REMOTE=https://github.com/Shared-Reality-Lab/IMAGE-server.git".into(),
    ] {
        assert!(imageup_env.lines().any(|l| l == want), "{want} not in\n{imageup_env}");
    }

    // What the stand-ins were asked: the network, Traefik up, the pull
    // started before the driver was installed, imageup once.
    assert!(calls.iter().any(|c| c.ends_with("docker network create traefik")), "traefik network created");
    let traefik_up = position(&calls, "docker-compose compose --project-directory /var/docker/traefik");
    assert!(calls[traefik_up].ends_with("up -d"), "{}", calls[traefik_up]);
    let pull = position(&calls, "pull --quiet");
    let driver_done = position(&calls, "nvidia-driver.postinst configure-done");
    assert!(pull < driver_done, "the pull started before the driver step ended:\n{}", calls.join("\n"));
    assert!(pull < position(&calls, "nvidia-driver.postinst configure-start"));
    let imageup: Vec<&String> = calls.iter().filter(|c| c.split_whitespace().nth(2) == Some("imageup")).collect();
    assert_eq!(imageup.len(), 1, "{imageup:?}");
    assert!(traefik_up < position(&calls, " imageup"), "Traefik and its network before the stack");
    // The stack runs, on the image network, the orchestrator healthy.
    assert!(host.sh_ok("docker ps --format '{{.Names}}'").lines().any(|n| n == "image-orchestrator-1"));
    assert!(
        host.sh_ok("docker ps --format '{{.Names}}'").lines().any(|n| n == "traefik"),
        "imageup left Traefik alone"
    );
    assert!(host.exists(&format!("{BASE}/testing/warmup/warmup.log")), "warmup ran");

    // The secret went nowhere but the file.
    let log = log_file(&first);
    let sudo_log = String::from_utf8_lossy(&host.read("/var/log/sudo.log")).into_owned();
    for (place, content) in [
        ("stdout", stdout(&first)),
        ("stderr", stderr(&first)),
        ("the log file", log),
        ("the host's recorded calls", calls.join("\n")),
        ("sudo's log on the host", sudo_log.clone()),
    ] {
        assert!(!content.contains(&secret), "the secret is in {place}");
    }
    assert!(sudo_log.contains("COMMAND="), "sudo logged the run's commands:\n{sudo_log}");
    // Scripts go on stdin: no function body or script text on a command line.
    let root_functions = image_provision_playbooks::gather::all_parts()
        .iter()
        .flat_map(|p| p.root_functions)
        .map(|f| format!("{f} ()"))
        .collect::<Vec<_>>();
    assert!(root_functions.len() >= 5, "{root_functions:?}");
    for script_text in
        ["declare", "kv ()", "set -euo pipefail"].into_iter().chain(root_functions.iter().map(String::as_str))
    {
        assert!(!sudo_log.contains(script_text), "{script_text:?} on a command line sudo logged:\n{sudo_log}");
    }

    // Second run: everything ok, nothing changed, imageup not run again.
    let before = snapshot(&host);
    let started = Instant::now();
    let second = bootstrap(&host, state.path(), &args);
    let took = started.elapsed();
    assert!(second.status.success());
    for (step, outcome) in outcomes(&second) {
        assert_eq!(outcome, "ok", "step {step} on the second run");
    }
    let after = snapshot(&host);
    let diff = cli::diff(&before, &after);
    assert!(diff.is_empty(), "the second run changed {diff:#?}");
    assert_eq!(cli::imageups(&host), 1, "imageup ran once in all");
    // The health step was ok from the facts' own HTTPS check (one round trip).
    let health = step_line(&second, "health");
    assert!(health.contains(&format!("GET https://{DOMAIN}/health answers at {https_addr}")), "{health}");
    eprintln!("converged re-run with the IMAGE steps took {:.2}s", took.as_secs_f64());

    // Traefik stopped behind our back: verify says so (the container and
    // the HTTPS check), and a re-run brings it back and checks HTTPS again.
    host.sh_ok("docker stop traefik");
    let verify =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["verify", "--json"]), "verify");
    assert_eq!(verify.status.code(), Some(1), "verify with Traefik down");
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let failed: Vec<&str> = v["failed"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert_eq!(failed, ["traefik", "https"], "{v}");
    let third = bootstrap(&host, state.path(), &args);
    assert!(third.status.success());
    let changed: Vec<String> =
        outcomes(&third).into_iter().filter(|(_, o)| o != "ok").map(|(s, o)| format!("{s}={o}")).collect();
    assert_eq!(changed, ["traefik=changed"]);
    assert!(step_line(&third, "health").contains(&format!("GET https://{DOMAIN}/health")));
    assert_eq!(cli::imageups(&host), 1, "bringing Traefik back needs no imageup");

    // Switched to Let's Encrypt's staging server: Traefik is stopped, the
    // production certificates it stored are cleared, and it comes back
    // asking staging; verify says so. Nothing else changes.
    let traefik_compose = "/var/docker/traefik/docker-compose.yml";
    assert!(text(&host, traefik_compose).contains("acme.caserver=https://acme-v02.api.letsencrypt.org/directory"));
    host.sh_ok("mkdir -p /var/docker/traefik/letsencrypt && echo '{\"myresolver\":{}}' > /var/docker/traefik/letsencrypt/acme.json");
    let staging_args: Vec<&str> = args.iter().copied().chain(["--acme-staging"]).collect();
    let fourth = bootstrap(&host, state.path(), &staging_args);
    assert!(fourth.status.success(), "{}", stderr(&fourth));
    let changed: Vec<String> =
        outcomes(&fourth).into_iter().filter(|(_, o)| o != "ok").map(|(s, o)| format!("{s}={o}")).collect();
    assert_eq!(changed, ["traefik=changed"]);
    let traefik_line = step_line(&fourth, "traefik");
    assert!(
        traefik_line.contains("clear the certificates of Let's Encrypt for Let's Encrypt staging"),
        "{traefik_line}"
    );
    assert!(!host.exists("/var/docker/traefik/letsencrypt/acme.json"), "the production certificates were kept");
    assert!(
        text(&host, traefik_compose).contains("acme.caserver=https://acme-staging-v02.api.letsencrypt.org/directory")
    );
    let calls = host.calls();
    let last = |verb: &str| {
        calls.iter().rposition(|c| c.contains("--project-directory /var/docker/traefik") && c.ends_with(verb))
    };
    let (stop, up) = (last(" stop"), last("up -d"));
    assert!(stop.is_some() && stop < up, "Traefik stopped, then up:\n{}", calls.join("\n"));
    assert!(host.sh_ok("docker ps --format '{{.Names}}'").lines().any(|n| n == "traefik"), "Traefik is back");
    assert!(step_line(&fourth, "health").contains(&format!("GET https://{DOMAIN}/health")));
    let verify =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["verify", "--json"]), "verify");
    assert_eq!(verify.status.code(), Some(0), "verify on staging: {}", stderr(&verify));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["acme_server"], "https://acme-staging-v02.api.letsencrypt.org/directory", "{v}");
    let traefik_check = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "traefik").unwrap();
    assert!(traefik_check["detail"].as_str().unwrap().contains("Let's Encrypt staging"), "{traefik_check}");
    // Staging again: converged, nothing cleared.
    let fifth = bootstrap(&host, state.path(), &staging_args);
    assert!(outcomes(&fifth).iter().all(|(_, o)| o == "ok"), "{:?}", outcomes(&fifth));

    // health.sh itself (the health step runs it when the facts did not see
    // the stack answer yet): through the stand-in's address it answers;
    // through an address where nothing listens it fails, naming it.
    host.write("/tmp/health.sh", image_provision_playbooks::steps::health::health_script().as_bytes());
    let health_sh = |addr: &str, timeout: u32| {
        host.sh(&format!(
            "BASE_DIR={BASE} TIMEOUT={timeout} URL=https://{DOMAIN}/health HTTPS_ADDR={addr} bash /tmp/health.sh"
        ))
    };
    let ok = health_sh(&https_addr.to_string(), 10);
    let ok_out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && ok_out.contains(&format!("GET https://{DOMAIN}/health")), "{ok_out}");
    let refused = health_sh("127.0.0.2", 1);
    let refused_err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && refused_err.contains("127.0.0.2"), "{refused_err}");

    // An imageup left running by an earlier run (here: its lock held for
    // 4 s): update waits for it, says so, then brings the stack up itself.
    host.sh_ok(&format!("setsid flock {BASE}/.image-provision/bring-up.lock sleep 4 >/dev/null 2>&1 </dev/null &"));
    let started = Instant::now();
    let update =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["update", "--json"]), "update");
    assert_eq!(update.status.code(), Some(0));
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "update did not wait for the lock");
    let v: serde_json::Value = serde_json::from_slice(&update.stdout).unwrap();
    let update_log = std::fs::read_to_string(v["log"].as_str().unwrap()).unwrap();
    assert!(update_log.contains("another bring-up of the stack"), "{update_log}");
    assert_eq!(cli::imageups(&host), 2, "update ran imageup once, after the lock was free");
}

/// Bad input is refused before anything connects: exit 2, the file and line
/// named, never a value, and the host untouched.
#[test]
fn bad_input_is_a_usage_error_and_changes_nothing() {
    let host = TestHost::start(Distro::Debian12);
    let state = state_for(&host);
    let local = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let p = local.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    };
    let no_url = write("no-url.env", "LLM_API_KEY=sk-hidden-1\nLLM_MODEL=qwen\n");
    let not_kv = write("not-kv.env", "LLM_URL=https://x/v1\nsk-hidden-2\nLLM_API_KEY=k\nLLM_MODEL=m\n");
    let spaced = write("spaced.env", "API KEY=sk-hidden-3\n");
    let before = snapshot(&host);
    let calls_before = host.calls();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--env-file".into(), "llm.env=/no/such/llm.env".into()],
            vec!["--env-file llm.env=/no/such/llm.env: cannot read /no/such/llm.env".into()],
        ),
        (
            vec!["--env-file".into(), format!("llm.env={no_url}")],
            vec![format!("--env-file llm.env={no_url}: LLM_URL not set")],
        ),
        (
            vec!["--env-file".into(), format!("llm.env={not_kv}")],
            vec![format!("--env-file llm.env={not_kv}: line 2 is not KEY=value")],
        ),
        (
            vec!["--env-file".into(), format!("maps.env={spaced}")],
            vec![format!("--env-file maps.env={spaced}: line 1 is not KEY=value")],
        ),
        (
            vec!["--env-file".into(), format!("secrets.env={spaced}")],
            vec!["--env-file secrets.env: not a file the IMAGE stack reads".into()],
        ),
        (
            vec!["--domain".into(), "not_a host".into(), "--acme-email".into(), "ops@example.org".into()],
            vec!["--domain: \"not_a host\" is not a host name".into()],
        ),
        (vec!["--domain".into(), DOMAIN.into()], vec!["--domain needs --acme-email".into()]),
        (vec!["--acme-staging".into()], vec!["--acme-staging or --acme-server without --domain".into()]),
        (
            ["--domain", DOMAIN, "--acme-email", "ops@example.org", "--acme-server", "http://acme.test/dir"]
                .map(String::from)
                .to_vec(),
            vec!["--acme-server: \"http://acme.test/dir\" is not an https:// URL".into()],
        ),
        (
            [
                "--domain",
                DOMAIN,
                "--acme-email",
                "ops@example.org",
                "--acme-staging",
                "--acme-server",
                "https://a.test/d",
            ]
            .map(String::from)
            .to_vec(),
            vec!["cannot be used with".into()],
        ),
        (
            vec!["--base-dir".into(), "relative/dir".into()],
            vec!["--base-dir: \"relative/dir\" is not an absolute path".into()],
        ),
        (
            vec!["--registry-tag".into(), "latest tag".into()],
            vec!["--registry-tag: \"latest tag\" is not an image tag".into()],
        ),
    ];
    for (args, wants) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bootstrap(&host, state.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        for want in wants {
            assert!(err.contains(&want), "{want:?} not in {err}");
        }
        assert!(!err.contains("sk-hidden") && !stdout(&out).contains("sk-hidden"), "a value was shown: {err}");
        assert!(!state.path().join("logs").exists(), "nothing connected: no log was started");
    }
    assert_eq!(host.calls(), calls_before, "nothing ran on the host");
    assert_eq!(snapshot(&host), before, "nothing changed on the host");
}

/// The stand-in IMAGE-server scripts pass shellcheck like every other script.
#[test]
fn image_server_standin_scripts_pass_shellcheck() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost/standins/image-server/scripts");
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style", "imageup", "warmup"])
        .current_dir(&dir)
        .output()
        .expect("running shellcheck");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The Ubuntu 22.04 stand-in (a Debian root with Ubuntu's os-release and
/// package names) with the other stack options: plain compose instead of
/// imageup, the test profile, another tag and base directory, PII logging,
/// no domain (so no site override and no Traefik container).
#[test]
fn ubuntu2204_standin_compose_without_imageup_other_profile_tag_and_base_dir() {
    let host = TestHost::start(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    let state = state_for(&host);
    let base = "/srv/image";
    let args = [
        "--no-imageup",
        "--image-profile",
        "test",
        "--registry-tag",
        "unstable",
        "--pii-logging",
        "--base-dir",
        base,
        "--imageup-timeout",
        "2m",
    ];
    let out = bootstrap(&host, state.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let steps = outcomes(&out);
    assert!(steps.iter().all(|(_, o)| o != "failed"), "{steps:?}");

    let env = text(&host, &format!("{base}/.env"));
    for want in ["COMPOSE_PROFILES=test", "REGISTRY_TAG=unstable", "PII_LOGGING_ENABLED=true"] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    let gid = host.sh_ok("getent group docker | cut -d: -f3");
    assert!(env.lines().any(|l| l == format!("DOCKER_GID={}", gid.trim())), "{env}");
    assert!(!host.exists(&format!("{base}/site-docker-compose.yml")), "no domain, no site override");
    assert!(!host.exists("/var/docker/image"), "nothing in the default base directory");
    for link in ["bin", "config", "docker-compose.yml"] {
        assert!(host.sh(&format!("test -L {base}/{link}")).status.success(), "{link} is a link");
    }
    let calls = host.calls();
    assert_eq!(cli::imageups(&host), 0, "--no-imageup ran imageup:\n{}", calls.join("\n"));
    let up = calls.iter().filter(|c| c.contains("docker-compose") && c.ends_with("up -d")).count();
    assert!(up >= 1, "compose up ran:\n{}", calls.join("\n"));
    assert!(!host.sh_ok("docker ps --format '{{.Names}}'").lines().any(|n| n == "traefik"), "no domain, no Traefik");

    let again = bootstrap(&host, state.path(), &args);
    assert!(again.status.success());
    // ok, or skipped with its reason (no domain: nothing for Traefik to route).
    let changed: Vec<_> = outcomes(&again).into_iter().filter(|(_, o)| o != "ok" && o != "skipped").collect();
    assert!(changed.is_empty(), "a converged run changed {changed:?}");

    // `update` on this --no-imageup server: compose's pull and up again,
    // never imageup; healthy after.
    let calls_before = host.calls().len();
    let args = ["update", "--no-imageup", "--base-dir", base, "--imageup-timeout", "2m", "--json"];
    let update =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &args), "update --no-imageup");
    assert_eq!(update.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&update.stdout).unwrap();
    assert_eq!(v["healthy"], true, "{v}");
    let calls = host.calls()[calls_before..].to_vec();
    assert!(!calls.iter().any(|c| c.split_whitespace().nth(2) == Some("imageup")), "{calls:#?}");
    assert!(calls.iter().any(|c| c.contains("docker-compose") && c.ends_with(" pull")), "{calls:#?}");
    assert!(calls.iter().any(|c| c.contains("docker-compose") && c.ends_with("up -d")), "{calls:#?}");
}

/// `--dry-run` on a bare host shows the IMAGE steps too, and changes nothing.
#[test]
fn dry_run_shows_the_image_steps_and_changes_nothing() {
    let host = TestHost::start(Distro::Debian12);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    let state = state_for(&host);
    let before = snapshot(&host);
    let calls_before = host.calls().len();
    let out = bootstrap(&host, state.path(), &["--dry-run", "--domain", DOMAIN, "--acme-email", "admin@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = outcomes(&out).into_iter().map(|(s, _)| s).collect();
    for step in ["layout", "pull", "traefik", "stack", "health"] {
        assert!(names.iter().any(|n| n == step), "{step} missing from {names:?}");
    }
    assert_eq!(snapshot(&host), before, "the dry run changed the host");
    // Facts read the stand-ins (lspci, systemctl is-active, ...); nothing acts.
    let acting: Vec<String> = host.calls()[calls_before..]
        .iter()
        .filter(|c| {
            c.split_whitespace().any(|w| {
                ["create", "up", "pull", "imageup", "reboot", "restart", "start", "enable"].contains(&w)
                    || w.contains("postinst")
            })
        })
        .cloned()
        .collect();
    assert!(acting.is_empty(), "the dry run acted: {acting:?}");
    assert_eq!(host.reboots(), 0);
}
