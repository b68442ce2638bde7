//! The IMAGE steps of `image-provision bootstrap --host` (layout, pull,
//! traefik, stack, health) on test hosts (testsupport/src/testhost.rs). The
//! stack runs on booted hosts (real systemd; real Docker and compose v2
//! from the archive stand-in; images from the test registry under ghcr.io's
//! names; real Traefik with certificates from pebble), the stand-in
//! IMAGE-server repository served as https://github.com/... by the
//! git-remote-https stand-in. What never starts a container (bad input, a
//! dry run) runs on the quicker chroot hosts.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use image_provision_testsupport::cli::{self, IMAGE_STEPS, outcomes, state_for, stderr, stdout, step_line};
use image_provision_testsupport::testhost::{Distro, TestHost};
use yaml_rust2::{Yaml, YamlLoader};

use crate::BIN;

const DOMAIN: &str = "image.example.org";
const BASE: &str = "/var/docker/image";
/// An address where nothing answers (TEST-NET-1, RFC 5737).
const NOWHERE: &str = "192.0.2.1";

pub(crate) fn bootstrap(host: &TestHost, state: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = ["bootstrap"].into_iter().chain(extra.iter().copied()).collect();
    cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, &args), &format!("bootstrap {extra:?}"))
}

fn log_file(o: &Output) -> String {
    let path = stdout(o).lines().find_map(|l| l.strip_prefix("log: ").map(str::to_owned)).expect("log line");
    std::fs::read_to_string(path).unwrap()
}

pub(crate) fn text(host: &TestHost, path: &str) -> String {
    String::from_utf8_lossy(&host.read(path)).into_owned()
}

/// When `container`'s log (docker logs -t) first has a line with `needle`.
fn first_logged(host: &TestHost, container: &str, needle: &str) -> jiff::Timestamp {
    let log = host.sh_ok(&format!("docker logs -t {container} 2>&1"));
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {needle:?} in\n{log}"))
        .parse()
        .unwrap()
}

/// When the stack's orchestrator container was created.
fn orchestrator_created(host: &TestHost) -> jiff::Timestamp {
    host.sh_ok("docker inspect -f '{{.Created}}' $(docker ps -aqf name=orchestrator)").trim().parse().unwrap()
}

/// A re-run that found everything so: every step ok (Traefik skipped
/// without a domain).
fn assert_converged(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}");
    for (step, outcome) in outcomes(out) {
        // No --domain here, and no --llm-webui.
        let want = if step == "traefik" || step == "webui" { "skipped" } else { "ok" };
        assert_eq!(outcome, want, "step {step} on {what}:\n{}", stdout(out));
    }
}

/// verify --json's `llm` check, and verify's whole stdout.
fn verify_llm_check(host: &TestHost, state: &Path) -> (serde_json::Value, String) {
    let out =
        cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, &["verify", "--json"]), "verify --json");
    assert_eq!(out.status.code(), Some(0), "verify");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let llm = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "llm").cloned().unwrap();
    (llm, stdout(&out))
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

/// The directories of copies bootstrap kept on the host (one a run that
/// replaced something it did not write), oldest first.
fn backup_dirs(host: &TestHost) -> Vec<String> {
    let dirs = host.sh_ok("ls /var/backups/image-provision 2>/dev/null || true");
    dirs.lines().map(|d| format!("/var/backups/image-provision/{d}")).collect()
}

/// The steps that were not ok, as STEP=OUTCOME; the llm step's skip (the
/// LLM is elsewhere) is its ok here.
fn not_ok(o: &Output) -> Vec<String> {
    outcomes(o)
        .into_iter()
        .filter(|(s, o)| o != "ok" && !((s == "llm" || s == "webui") && o == "skipped"))
        .map(|(s, o)| format!("{s}={o}"))
        .collect()
}

fn position(calls: &[String], what: &str) -> usize {
    calls
        .iter()
        .position(|c| c.contains(what))
        .unwrap_or_else(|| panic!("no call with {what:?} in\n{}", calls.join("\n")))
}

/// When the registry first served one of the stack's manifests, from its
/// log (logrus' `time="RFC 3339"` field).
fn first_manifest_request(host: &TestHost) -> jiff::Timestamp {
    let log = std::fs::read_to_string(host.dir().join("ctl/registry/registry.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("/v2/shared-reality-lab/") && l.contains("/manifests/") && l.contains("time=\""))
        .unwrap_or_else(|| panic!("no manifest request in the registry's log:\n{log}"));
    let time = line.split("time=\"").nth(1).and_then(|t| t.split('"').next()).unwrap();
    time.parse().unwrap_or_else(|e| panic!("{time:?} in {line}: {e}"))
}

/// When the stand-in driver package's postinst recorded `what`
/// (configure-start, configure-done) in the calls log.
fn driver_postinst(calls: &[String], what: &str) -> jiff::Timestamp {
    let line = calls[position(calls, &format!("postinst {what}"))].clone();
    line.split_whitespace().next().unwrap().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The issuer of the certificate the host's port 443 presents for DOMAIN,
/// after a 200 from https://DOMAIN/health with the host's own trust store.
fn issuer(host: &TestHost) -> String {
    host.sh_ok(&format!(
        "curl -sS -o /dev/null -w '%{{http_code}} ' --resolve {DOMAIN}:443:127.0.0.1 https://{DOMAIN}/health && \
         echo | openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} 2>/dev/null | openssl x509 -noout -issuer"
    ))
}

/// The bare booted host (real systemd, the archive stand-in's real Docker
/// and compose v2) to the stack behind real Traefik: images pulled by
/// dockerd from the registry under ghcr.io's names, the certificate issued
/// by pebble through the HTTP-01 challenge; then converged, repaired, moved
/// to another ACME server, and updated past a held bring-up lock.
#[test]
fn bare_host_to_the_running_stack_behind_traefik_then_converged() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let acme = host.enable_acme();
    // The host's own resolver sends DOMAIN elsewhere (a stale record:
    // nothing answers at TEST-NET-1's 192.0.2.1), so the HTTPS check passes
    // only if it sends the domain to 127.0.0.1 itself, as it must on a real
    // server. (Not another loopback address: Traefik's published ports
    // answer on every one.)
    host.sh_ok(&format!("echo '{NOWHERE} {DOMAIN}' >>/etc/hosts"));
    // sudo logs every command line it runs (as sudo's logfile option does on
    // servers that keep one): no secret and no script may be on them.
    host.write("/etc/sudoers.d/00-logfile", b"Defaults logfile=/var/log/sudo.log\n");
    host.sh_ok("chmod 0440 /etc/sudoers.d/00-logfile");
    // The driver's configure takes 4 s: a pull started right after Docker
    // has asked the registry for the stack's images before it ends.
    host.write("/var/lib/standin/hooks/slow-postinst", b"4\n");
    let state = state_for(&host);
    // The host has its own Traefik, set up by hand as the IMAGE guide has
    // it: its compose file and certificates in /var/docker/traefik, a .env
    // of its own in the working directory, a link to its own compose file,
    // and a config link that leads where image-provision's would.
    let own_traefik = "# Our own Traefik, set up by hand.\nservices:\n  traefik:\n    image: traefik:v2.11\n";
    let own_certificates = "{\"myresolver\": {\"Certificates\": \"our own\"}}\n";
    let own_env = "COMPOSE_PROFILES=production\nOUR_OWN_SETTING=kept\n";
    host.write("/var/docker/traefik/docker-compose.yml", own_traefik.as_bytes());
    host.write("/var/docker/traefik/letsencrypt/acme.json", own_certificates.as_bytes());
    host.write(&format!("{BASE}/.env"), own_env.as_bytes());
    host.sh_ok(&format!(
        "chmod 0640 /var/docker/traefik/docker-compose.yml && chmod 0600 /var/docker/traefik/letsencrypt/acme.json {BASE}/.env && \
         ln -s /srv/own/docker-compose.yml {BASE}/docker-compose.yml && ln -s {BASE}/IMAGE-server/config {BASE}/config"
    ));

    let secret = format!("sk-test-{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let llm_url = host.enable_llm(&secret, &["Qwen/Qwen2.5-VL-7B-Instruct"]);
    let local = tempfile::tempdir().unwrap();
    let llm =
        format!("# the LLM endpoint\nLLM_URL={llm_url}\nLLM_API_KEY={secret}\nLLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct\n");
    let maps = "GOOGLE_PLACES_API_KEY=maps-placeholder\n";
    std::fs::write(local.path().join("llm.env"), &llm).unwrap();
    std::fs::write(local.path().join("maps.env"), maps).unwrap();
    let llm_arg = format!("llm.env={}", local.path().join("llm.env").display());
    let maps_arg = format!("maps.env={}", local.path().join("maps.env").display());
    let common = [
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
    let args: Vec<&str> = common.iter().copied().chain(["--acme-server", &acme]).collect();

    let first = bootstrap(&host, state.path(), &args);
    assert!(first.status.success(), "first run failed:\n{}", host.logs());
    let steps = outcomes(&first);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, IMAGE_STEPS);
    for (step, outcome) in &steps {
        let want = match step.as_str() {
            "host" | "ready" | "gpu-check" | "health" => "ok",
            "llm" | "webui" => "skipped", // an LLM elsewhere (llm.env), no --llm-webui
            _ => "changed",
        };
        assert_eq!(outcome, want, "step {step}");
    }
    assert!(stdout(&first).contains(&format!("extension URL: https://{DOMAIN}/")), "{}", stdout(&first));
    // The LLM was asked for its models, with the key, before the stack
    // started; then the health step's request made the categoriser and the
    // caption ask it about the graphic (JSON for the categoriser), and both
    // answered under their ids. One priority group: asked at once, in
    // either order (as IMAGE's orchestrator runs a group).
    let model = "model=Qwen/Qwen2.5-VL-7B-Instruct";
    let mut asked = host.llm_requests();
    asked[1..].sort();
    assert_eq!(
        asked,
        [
            "GET /v1/models auth=ok".to_string(),
            format!("POST /v1/chat/completions auth=ok {model} image=yes json=no"),
            format!("POST /v1/chat/completions auth=ok {model} image=yes json=yes"),
        ]
    );
    // The driver (580-server, CUDA 13.0) meets each GPU image's need, as
    // its NVIDIA_REQUIRE_CUDA says it; the gpu-check step ran while the
    // pull did, and left what was not pulled yet to the stack step.
    let needs = "meets ghcr.io/shared-reality-lab/image-multilang-support:latest cuda>=11.8, \
                 ghcr.io/shared-reality-lab/image-object-detection:latest cuda>=12.4";
    let stack = step_line(&first, "stack");
    assert!(stack.contains(&format!("driver 580.95.05 (CUDA 13.0) {needs}")), "{stack}");
    assert!(!stack.contains("unknown"), "{stack}");
    let gpu_check = step_line(&first, "gpu-check");
    assert!(gpu_check.contains("driver 580.95.05 (CUDA 13.0)"), "{gpu_check}");
    let health = step_line(&first, "health");
    assert!(
        health.contains("POST /render/preprocess answered in ")
            && health.contains(image_provision_playbooks::steps::health::CATEGORISER_ID)
            && health.contains(image_provision_playbooks::steps::health::CAPTION_ID),
        "{health}"
    );
    let health = step_line(&first, "health");
    assert!(health.contains(&format!("GET https://{DOMAIN}/health")), "{health}");
    assert!(health.contains(" at 127.0.0.1"), "sent to the host's own address: {health}");

    // Adopted: what the host had and image-provision did not write was
    // copied, as it was, into one directory named by the run's UTC time
    // before it was replaced, each copy named in the plan and the summary.
    let copies = backup_dirs(&host);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let dir = &copies[0];
    let kept = |path: &str| format!("{dir}{path}");
    for (path, content, stat) in [
        ("/var/docker/traefik/docker-compose.yml", own_traefik, "640 root"),
        ("/var/docker/traefik/letsencrypt/acme.json", own_certificates, "600 root"),
        (&format!("{BASE}/.env"), own_env, "600 root"),
    ] {
        assert_eq!(text(&host, &kept(path)), content, "the copy of {path}");
        assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {}", kept(path))).trim(), stat, "{path}");
    }
    let link_copy = kept(&format!("{BASE}/docker-compose.yml"));
    assert_eq!(host.sh_ok(&format!("readlink {link_copy}")).trim(), "/srv/own/docker-compose.yml");
    assert_eq!(host.sh_ok(&format!("stat -c %a {dir} /var/backups/image-provision")), "700\n700\n");
    assert!(!host.exists(&kept(&format!("{BASE}/config"))), "a link leading where ours would is left alone");
    let traefik_line = step_line(&first, "traefik");
    for path in ["/var/docker/traefik/docker-compose.yml", "/var/docker/traefik/letsencrypt/acme.json"] {
        assert!(traefik_line.contains(&format!("{path} as {}", kept(path))), "{traefik_line}");
    }
    let layout_line = step_line(&first, "layout");
    for path in [format!("{BASE}/.env"), format!("{BASE}/docker-compose.yml")] {
        assert!(layout_line.contains(&format!("{path} as {}", kept(&path))), "{layout_line}");
    }
    // Each copy made before its file was replaced (the log's commands).
    let first_log = log_file(&first);
    let logged = |what: &str| first_log.find(what).unwrap_or_else(|| panic!("{what} not in the log"));
    assert!(logged("keep-copies.sh") < logged(&format!("upload {BASE}/.env")));
    assert!(first_log.rfind("keep-copies.sh").unwrap() < logged("upload /var/docker/traefik/docker-compose.yml"));
    assert!(
        logged("upload /var/docker/traefik/docker-compose.yml") < logged("rm -f -- /var/docker/traefik/letsencrypt")
    );

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
    assert_eq!(host.sh_ok(&format!("readlink {BASE}/config")).trim(), format!("{BASE}/IMAGE-server/config"));
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
        &format!("--certificatesresolvers.myresolver.acme.caserver={acme}"),
    ] {
        assert!(command.iter().any(|c| c == want), "{want} not in {command:?}");
    }

    // config/*.env: every one present, 0600 and the login user's, with the
    // content given.
    let modes = host.sh_ok(&format!("cd {BASE}/IMAGE-server/config && stat -c '%n %a %U' *.env"));
    let names: Vec<&str> = modes.lines().map(|l| l.split(' ').next().unwrap()).collect();
    for want in ["apis-and-selection.env", "azure-api.env", "express-common.env", "imageup.env", "llm.env", "maps.env"]
    {
        assert!(names.contains(&want), "{want} missing: {modes}");
    }
    // Closed, but for the operator scripts' files that name directories.
    let user = host.default_user();
    for line in modes.lines() {
        let open = line.starts_with("imagelogs.env ") || line.starts_with("image_daily_cron.env ");
        let want = if open { " 644 root".to_string() } else { format!(" 600 {user}") };
        assert!(line.ends_with(&want), "{modes}");
    }
    // The IMAGE guide's workflow: the login user (in the docker group) runs
    // compose in the working directory as themselves, which reads every
    // env file.
    let compose = host
        .ssh_command(user)
        .arg(format!("cd {BASE} && docker compose config --quiet && docker compose ps --format '{{{{.Name}}}}'"))
        .output()
        .unwrap();
    assert!(compose.status.success(), "compose as {user}: {}", String::from_utf8_lossy(&compose.stderr));
    assert!(
        String::from_utf8_lossy(&compose.stdout).contains("orchestrator"),
        "{}",
        String::from_utf8_lossy(&compose.stdout)
    );
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

    // Pulled by real dockerd from the registry under ghcr.io's name (HTTPS,
    // the certificate checked), and the pull began while the driver was
    // still configuring: the registry's first manifest request is before
    // the driver's postinst ended.
    let images = host.sh_ok("docker images --format '{{.Repository}}:{{.Tag}}' | sort");
    assert!(images.contains("ghcr.io/shared-reality-lab/image-orchestrator:latest"), "{images}");
    assert!(images.contains("traefik:v3."), "{images}");
    let pulled = first_manifest_request(&host);
    let (driver_start, driver_done) =
        (driver_postinst(&calls, "configure-start"), driver_postinst(&calls, "configure-done"));
    assert!(
        pulled < driver_done,
        "the pull started at {pulled}, after the driver's configure ({driver_start} to {driver_done})"
    );
    // imageup once; Traefik and its network made before the stack's
    // containers, and left alone by imageup; warmup ran.
    assert_eq!(cli::imageups(&host), 1);
    let created = |name: &str| host.sh_ok(&format!("docker inspect -f '{{{{.Created}}}}' {name}")).trim().to_string();
    let (traefik_created, orchestrator_created) = (created("traefik"), created("image-orchestrator-1"));
    assert!(traefik_created < orchestrator_created, "Traefik {traefik_created}, the stack {orchestrator_created}");
    assert_eq!(host.sh_ok("docker network inspect -f '{{.Name}}' traefik").trim(), "traefik");
    let running = host.sh_ok("docker ps --format '{{.Names}} {{.Status}}' | sort");
    let orchestrator = running.lines().find(|l| l.starts_with("image-orchestrator-1 ")).unwrap_or_default();
    assert!(orchestrator.contains("(healthy)"), "healthy by its own health check:\n{running}");
    assert!(running.lines().any(|l| l.starts_with("traefik ")), "imageup left Traefik alone:\n{running}");
    assert!(!running.contains("unstable-preprocessor"), "a test-profile service started: {running}");
    let warmup = host.sh_ok(&format!("cat {BASE}/testing/warmup/warmup_*.log"));
    assert!(warmup.contains("image-graphic-caption-1 warmed successfully"), "warmup ran:\n{warmup}");
    // The GPU services asked dockerd for the GPU, through the hook.
    assert!(calls.iter().any(|c| c.contains("nvidia-container-runtime-hook")), "{calls:?}");
    // Real Traefik got the domain's certificate from pebble through the
    // HTTP-01 challenge on port 80 and routes the domain to the orchestrator.
    let acme_json = host.sh_ok("cat /var/docker/traefik/letsencrypt/acme.json");
    assert!(acme_json.contains(&format!("\"main\": \"{DOMAIN}\"")), "{acme_json}");
    let first_issuer = issuer(&host);
    assert!(first_issuer.starts_with("200 ") && first_issuer.contains("Pebble"), "{first_issuer}");

    // The secret went nowhere but the file.
    let log = log_file(&first);
    let sudo_log = String::from_utf8_lossy(&host.read("/var/log/sudo.log")).into_owned();
    for (place, content) in [
        ("stdout", stdout(&first)),
        ("stderr", stderr(&first)),
        ("the log file", log),
        ("the host's recorded calls", calls.join("\n")),
        ("sudo's log on the host", sudo_log.clone()),
        ("the host's journal", host.sh_ok("journalctl --no-pager -o cat 2>/dev/null || true")),
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

    // Second run: everything ok, nothing changed, no container recreated,
    // imageup not run again.
    let before = snapshot(&host);
    let ids = host.sh_ok("docker ps -q --no-trunc | sort");
    let started = Instant::now();
    let second = bootstrap(&host, state.path(), &args);
    let took = started.elapsed();
    assert!(second.status.success());
    for (step, outcome) in outcomes(&second) {
        let want = if step == "llm" || step == "webui" { "skipped" } else { "ok" }; // an LLM elsewhere
        assert_eq!(outcome, want, "step {step} on the second run");
    }
    let after = snapshot(&host);
    let diff = cli::diff(&before, &after);
    assert!(diff.is_empty(), "the second run changed {diff:#?}");
    assert_eq!(host.sh_ok("docker ps -q --no-trunc | sort"), ids, "the second run recreated containers");
    assert_eq!(cli::imageups(&host), 1, "imageup ran once in all");
    assert_eq!(host.llm_requests().len(), 3, "a converged run does not ask the LLM again");
    assert_eq!(backup_dirs(&host), copies, "the re-run copied nothing");
    // The health step was ok from the facts' own HTTPS check (one round trip).
    let health = step_line(&second, "health");
    assert!(health.contains(&format!("GET https://{DOMAIN}/health answers at 127.0.0.1")), "{health}");
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
    // And .env changed by hand since image-provision wrote it: the dry run
    // names the copy it would keep and changes nothing; the run keeps it,
    // in a directory of its own, before writing .env again.
    host.sh_ok(&format!("echo '# a line of our own' >>{BASE}/.env"));
    let edited = text(&host, &format!("{BASE}/.env"));
    let dry_args: Vec<&str> = args.iter().copied().chain(["--dry-run"]).collect();
    let dry = bootstrap(&host, state.path(), &dry_args);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let dry_layout = step_line(&dry, "layout");
    assert!(
        outcomes(&dry).contains(&("layout".into(), "would change".into()))
            && dry_layout.contains(&format!("keep a copy of {BASE}/.env as /var/backups/image-provision/")),
        "{dry_layout}"
    );
    assert!(
        stdout(&dry).lines().any(|l| l.starts_with("layout: would run: ")
            && l.contains("env BACKUP_DIR=/var/backups/image-provision/")
            && l.contains(&format!("COPIES={BASE}/.env"))),
        "{}",
        stdout(&dry)
    );
    assert_eq!(backup_dirs(&host), copies, "the dry run copied nothing");
    let third = bootstrap(&host, state.path(), &args);
    assert!(third.status.success());
    let changed: Vec<String> = not_ok(&third);
    assert_eq!(changed, ["layout=changed", "traefik=changed"]);
    let copies = backup_dirs(&host);
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(text(&host, &format!("{}{BASE}/.env", copies[1])), edited);
    assert!(step_line(&third, "layout").contains(&format!("keep a copy of {BASE}/.env as {}{BASE}/.env", copies[1])));
    assert!(step_line(&third, "health").contains(&format!("GET https://{DOMAIN}/health")));
    assert_eq!(cli::imageups(&host), 1, "bringing Traefik back needs no imageup");

    // Applied means applied: Traefik's compose file changed (another ACME
    // e-mail) and the connection cut after its upload, before `up`. The run
    // reconnects, finds the file as wanted and Traefik running the old
    // one, and still brings Traefik up with it: it was pending until then.
    host.cut_ssh_before(
        "docker",
        "compose --project-directory /var/docker/traefik -f /var/docker/traefik/docker-compose.yml up -d",
    );
    let email_args: Vec<&str> =
        args.iter().map(|a| if *a == "ops@example.org" { "team@example.org" } else { *a }).collect();
    let cut = bootstrap(&host, state.path(), &email_args);
    assert!(cut.status.success(), "a run cut before Traefik's up: {}", stderr(&cut));
    assert!(stderr(&cut).contains("traefik: connection lost"), "{}", stderr(&cut));
    assert_eq!(host.cuts().len(), 1, "{:?}", host.cuts());
    let command = host.sh_ok("docker inspect -f '{{json .Config.Cmd}}' traefik");
    assert!(command.contains("acme.email=team@example.org"), "Traefik runs the new file: {command}");
    assert_eq!(not_ok(&bootstrap(&host, state.path(), &email_args)), Vec::<String>::new(), "applied once");

    // Moved to another ACME server (another pebble: another CA): Traefik is
    // stopped, the certificates the first one issued are cleared, and it
    // comes back with a certificate from the second; verify says which
    // server. Nothing else changes.
    let other_acme = host.enable_acme();
    let traefik_started = || host.sh_ok("docker inspect -f '{{.State.StartedAt}}' traefik").trim().to_string();
    let started_before = traefik_started();
    let moved_args: Vec<&str> = common.iter().copied().chain(["--acme-server", &other_acme]).collect();
    let fourth = bootstrap(&host, state.path(), &moved_args);
    assert!(fourth.status.success(), "{}", stderr(&fourth));
    let changed: Vec<String> = not_ok(&fourth);
    assert_eq!(changed, ["traefik=changed"]);
    let traefik_line = step_line(&fourth, "traefik");
    assert!(traefik_line.contains("clear the certificates of "), "{traefik_line}");
    assert!(traefik_started() > started_before, "Traefik was restarted");
    let traefik_compose = "/var/docker/traefik/docker-compose.yml";
    assert!(text(&host, traefik_compose).contains(&format!("acme.caserver={other_acme}")));
    let second_issuer = issuer(&host);
    assert!(second_issuer.starts_with("200 ") && second_issuer.contains("Pebble"), "{second_issuer}");
    assert_ne!(second_issuer, first_issuer, "the certificate is from the second CA");
    assert!(step_line(&fourth, "health").contains(&format!("GET https://{DOMAIN}/health")));
    let verify =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["verify", "--json"]), "verify");
    assert_eq!(verify.status.code(), Some(0), "verify on the other server: {}", stderr(&verify));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["acme_server"], other_acme.as_str(), "{v}");
    // The same server again: converged, nothing cleared.
    let fifth = bootstrap(&host, state.path(), &moved_args);
    assert!(not_ok(&fifth).is_empty(), "{:?}", outcomes(&fifth));
    assert_eq!(issuer(&host), second_issuer);
    // The certificates cleared on the move were issued under image-provision's
    // own configuration: no copy of them, nor of anything else.
    assert_eq!(backup_dirs(&host), copies, "only the hand-made changes were copied");

    // health.sh itself (the health step runs it when the facts did not see
    // the stack answer yet): at 127.0.0.1 it answers; at an address where
    // nothing listens it fails, naming it.
    host.write("/tmp/health.sh", image_provision_playbooks::steps::health::health_script().as_bytes());
    let health_sh = |addr: &str, timeout: u32| {
        host.sh(&format!(
            "BASE_DIR={BASE} SERVICES=orchestrator TIMEOUT={timeout} URL=https://{DOMAIN}/health HTTPS_ADDR={addr} bash /tmp/health.sh"
        ))
    };
    let ok = health_sh("127.0.0.1", 10);
    let ok_out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && ok_out.contains(&format!("GET https://{DOMAIN}/health")), "{ok_out}");
    let refused = health_sh(NOWHERE, 1);
    let refused_err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && refused_err.contains(NOWHERE), "{refused_err}");

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
    let not_kv = write("not-kv.env", "LLM_URL=https://x/v1\nsk$hidden-2\nLLM_API_KEY=k\nLLM_MODEL=m\n");
    let spaced = write("spaced.env", "API KEY=sk-hidden-3\n");
    let good_llm = write("good-llm.env", "LLM_URL=https://llm.example.org/v1\nLLM_API_KEY=sk-hidden-4\nLLM_MODEL=m\n");
    let before = snapshot(&host);
    let calls_before = host.calls();
    // Every case but the first two chooses the LLM (--no-llm, unless it
    // gives llm.env), so that the error is the case's own.
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![],
            vec![
                "no LLM chosen".into(),
                "--env-file llm.env=PATH".into(),
                "--no-llm".into(),
                "no photo descriptions".into(),
            ],
        ),
        (
            vec!["--env-file".into(), format!("llm.env={good_llm}"), "--no-llm".into()],
            vec!["more than one choice for the LLM (--env-file llm.env, --no-llm, --llm local|ollama)".into()],
        ),
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
            vec![format!("--env-file llm.env={not_kv}: line 2: a variable name has a character compose refuses")],
        ),
        (
            vec!["--env-file".into(), format!("maps.env={spaced}")],
            vec![format!("--env-file maps.env={spaced}: line 1: a variable name contains a space")],
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
    for (mut args, wants) in cases {
        if !args.is_empty() && !args.iter().any(|a| a.starts_with("llm.env=")) {
            args.push("--no-llm".into());
        }
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

/// The manifest requests (a pull's first: HEAD when dockerd has the image,
/// GET otherwise) the registry has answered so far, from its log.
fn manifest_requests(host: &TestHost) -> usize {
    let log = std::fs::read_to_string(host.dir().join("ctl/registry/registry.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains("msg=\"response completed\"") && l.contains("/manifests/")).count()
}

/// The Ubuntu 22.04 stand-in, booted (real Docker and compose v2), with the
/// other stack options: plain compose (and IMAGE's warmup) instead of
/// imageup, the test profile (with object detection, which IMAGE's compose
/// file leaves out of it),
/// another tag, another base directory (reached through /var/docker/image,
/// which IMAGE's compose file names), PII logging, no LLM, no domain (so
/// only the map servers in the site override and no Traefik container).
#[test]
fn ubuntu2204_standin_compose_without_imageup_other_profile_tag_and_base_dir() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let base = "/srv/image";
    let args_bootstrap = [
        "--no-llm",
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
    let args = args_bootstrap;
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
    let site = text(&host, &format!("{base}/site-docker-compose.yml"));
    assert!(!site.contains("traefik"), "no domain, no routes:\n{site}");
    assert_eq!(host.sh_ok("readlink /var/docker/image").trim(), base, "/var/docker/image leads to {base}");
    for link in ["bin", "config", "docker-compose.yml"] {
        assert!(host.sh(&format!("test -L {base}/{link}")).status.success(), "{link} is a link");
    }
    assert_eq!(cli::imageups(&host), 0, "--no-imageup ran imageup");
    // Without imageup, its warm-up still ran before the health step's probe:
    // a cold model's first answer can outlast the orchestrator's
    // PREPROCESSOR_TIMEOUT.
    let warmup = host.sh_ok(&format!("cat {base}/testing/warmup/warmup_*.log 2>/dev/null || true"));
    assert!(warmup.contains("[Warmup] Completed at"), "no warm-up ran:\n{warmup}");
    // Real compose started the test profile's services from the tag's images.
    let running = host.sh_ok("docker ps --format '{{.Names}} {{.Image}}' | sort");
    assert!(running.lines().any(|l| l.contains("unstable-preprocessor")), "the test profile's own service:\n{running}");
    let orchestrator = running.lines().find(|l| l.starts_with("image-orchestrator-1 ")).unwrap_or_default();
    assert!(orchestrator.ends_with("image-orchestrator:unstable"), "{running}");
    assert!(!running.lines().any(|l| l.starts_with("traefik ")), "no domain, no Traefik:\n{running}");
    assert!(running.lines().any(|l| l.starts_with("image-object-detection-1 ")), "object detection:\n{running}");
    // Without an LLM the services that need one (those reading
    // config/llm.env) are not started at all, by the site override: started,
    // they would exit, and warmup would wait for one forever.
    let all = host.sh_ok("docker ps -a --format '{{.Names}}' | sort");
    for llm in ["content-categoriser", "graphic-caption", "text-followup"] {
        assert!(!all.contains(llm), "{llm} has a container:\n{all}");
    }
    let stack_line = step_line(&out, "stack");
    assert!(
        stack_line.contains("--no-llm: content-categoriser, graphic-caption, text-followup not started"),
        "{stack_line}"
    );
    let site = text(&host, &format!("{base}/site-docker-compose.yml"));
    assert!(site.contains("  graphic-caption:\n    deploy:\n      replicas: 0\n"), "{site}");
    // The test profile's OCR preprocessor exits at start-up without
    // AZURE_API_KEY and FREEOCR_API_KEY, which the empty
    // config/apis-and-selection.env does not set: left off the same way,
    // the step saying why and what to give, so the stack converges.
    assert!(!all.contains("ocr-clouds-preprocessor"), "the OCR service has a container:\n{all}");
    assert!(site.contains("  ocr-clouds-preprocessor:\n    deploy:\n      replicas: 0\n"), "{site}");
    assert!(
        stack_line.contains(
            "without their keys, not running: ocr-clouds-preprocessor (no AZURE_API_KEY, FREEOCR_API_KEY in \
             config/apis-and-selection.env: no text read from graphics; give --env-file apis-and-selection.env=PATH)"
        ),
        "{stack_line}"
    );
    // The map servers as compose merged the site override into the
    // containers (IMAGE's compose file names McGill's).
    let env_of = |c: &str| host.sh_ok(&format!("docker inspect -f '{{{{join .Config.Env \"\\n\"}}}}' {c}"));
    assert!(env_of("image-openstreetmap-1").lines().any(|l| l == "SERVERS=https://overpass-api.de/api/interpreter"));
    assert!(
        env_of("image-nominatim-preprocessor-1")
            .lines()
            .any(|l| l == "NOMINATIM_FALLBACK_SERVER=https://nominatim.openstreetmap.org")
    );
    // The orchestrator's cache, bind-mounted from /var/docker/image/cache,
    // is the base directory's.
    host.sh_ok("docker exec image-orchestrator-1 sh -c 'echo probe >/var/cache/image/probe'");
    assert_eq!(text(&host, &format!("{base}/cache/probe")), "probe\n");

    let again = bootstrap(&host, state.path(), &args);
    assert!(again.status.success());
    // ok, or skipped with its reason (no domain: nothing for Traefik to route).
    let changed: Vec<_> = outcomes(&again).into_iter().filter(|(_, o)| o != "ok" && o != "skipped").collect();
    assert!(changed.is_empty(), "a converged run changed {changed:?}");

    // `update` on this --no-imageup server: compose's pull (the registry
    // asked again) and up, never imageup; healthy after.
    let pulls_before = manifest_requests(&host);
    let args = ["update", "--no-imageup", "--base-dir", base, "--imageup-timeout", "2m", "--json"];
    let update =
        cli::run(&mut cli::on_host(BIN, &host, host.default_user(), state.path(), &args), "update --no-imageup");
    assert_eq!(update.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&update.stdout).unwrap();
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(cli::imageups(&host), 0, "update --no-imageup ran imageup");
    assert!(manifest_requests(&host) > pulls_before, "update pulled nothing");
    let log = std::fs::read_to_string(v["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("compose pull and up done"), "compose's pull and up ran:\n{log}");
    assert_eq!(v["without_keys"][0]["service"], "ocr-clouds-preprocessor", "{v}");
    assert_eq!(v["without_keys"][0]["missing"], serde_json::json!(["AZURE_API_KEY", "FREEOCR_API_KEY"]), "{v}");

    // The keys given (one empty: the cloud service not used needs none):
    // the OCR service started, healthy and counted; the key never shown.
    let local = tempfile::tempdir().unwrap();
    let key = format!("azure-{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let apis = local.path().join("apis-and-selection.env");
    std::fs::write(&apis, format!("AZURE_API_KEY={key}\nFREEOCR_API_KEY=\nCLOUD_SERVICE=AZURE_READ\n")).unwrap();
    let apis_arg = format!("apis-and-selection.env={}", apis.display());
    let keyed_args: Vec<&str> = args_bootstrap.iter().copied().chain(["--env-file", &apis_arg]).collect();
    let keyed = bootstrap(&host, state.path(), &keyed_args);
    assert!(keyed.status.success(), "{}", stderr(&keyed));
    assert!(!format!("{}{}", stdout(&keyed), stderr(&keyed)).contains(&key), "the key was shown");
    let stack_line = step_line(&keyed, "stack");
    assert!(outcomes(&keyed).contains(&("stack".into(), "changed".into())), "{stack_line}");
    assert!(!stack_line.contains("without their keys"), "{stack_line}");
    let site = text(&host, &format!("{base}/site-docker-compose.yml"));
    assert!(!site.contains("ocr-clouds-preprocessor"), "{site}");
    let ocr = host.sh_ok("docker ps --filter name=ocr-clouds-preprocessor --format '{{.Status}}'");
    assert!(ocr.contains("(healthy)"), "the OCR service: {ocr:?}");

    // A service that runs but never gets healthy (the stand-in's fault,
    // set in the env file it reads): the health step waits out its time
    // limit, then names it with its state and its log's last lines; verify
    // lists it too.
    let local = tempfile::tempdir().unwrap();
    let maps = local.path().join("maps.env");
    std::fs::write(&maps, "STANDIN_HEALTH=never\n").unwrap();
    let maps_arg = format!("maps.env={}", maps.display());
    let sick_args: Vec<&str> =
        args_bootstrap.iter().copied().chain(["--env-file", &maps_arg, "--health-timeout", "20s"]).collect();
    let sick = bootstrap(&host, state.path(), &sick_args);
    assert_eq!(sick.status.code(), Some(1), "a service never healthy");
    let err = stderr(&sick);
    assert!(err.contains("step health failed"), "{err}");
    assert!(err.contains("not running or not healthy after 20 s: openstreetmap"), "{err}");
    assert!(err.contains("loading the model failed (STANDIN_HEALTH=never)"), "its log: {err}");
    let verify = cli::run(
        &mut cli::on_host(BIN, &host, host.default_user(), state.path(), &["verify", "--json", "--base-dir", base]),
        "verify",
    );
    assert_eq!(verify.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["not_ok"][0]["service"], "openstreetmap", "{v}");
    assert_eq!(v["not_ok"][0]["state"], "unhealthy", "{v}");
    assert!(v["not_ok"][0]["log"].as_str().unwrap().contains("loading the model failed"), "{v}");
    assert_eq!(v["not_ok"].as_array().unwrap().len(), 1, "the LLM services are not counted: {v}");
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
    let out = bootstrap(
        &host,
        state.path(),
        &["--dry-run", "--no-llm", "--domain", DOMAIN, "--acme-email", "admin@example.org"],
    );
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

/// A driver branch too old for the CUDA a GPU image was built for (535:
/// CUDA 12.2; the stand-in object-detection image says cuda>=12.4, as its
/// NVIDIA_REQUIRE_CUDA): the run stops before the bring-up, naming the
/// image and the branch to pick (the default, 580-server) and how to move
/// this server to it, instead of NVIDIA's toolkit refusing the container
/// deep inside compose.
#[test]
fn a_driver_too_old_for_the_gpu_images_stops_before_the_stack_naming_the_image() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let out = bootstrap(&host, state.path(), &["--no-llm", "--nvidia-driver", "535-server", "--no-imageup"]);
    assert_eq!(out.status.code(), Some(1), "a driver too old");
    let err = stderr(&out);
    // The gpu-check step when the pull had brought the image by then, else
    // the stack step once it has.
    assert!(err.contains("step gpu-check failed") || err.contains("step stack failed"), "{err}");
    assert!(
        err.contains("the NVIDIA driver 535.230.02 serves CUDA 12.2, but ghcr.io/shared-reality-lab/image-object-detection:latest needs cuda>=12.4"),
        "{err}"
    );
    assert!(err.contains("pick the driver branch 580-server (CUDA 12.4 or later)"), "{err}");
    assert!(err.contains("`image-provision update --upgrade-driver --nvidia-driver 580-server`"), "{err}");
    assert_eq!(host.sh_ok("docker ps -aq --filter name=image-").trim(), "", "the stack was not started");
}

/// `--llm local` on a booted host: vLLM's compose project (the test
/// registry's stand-in for vLLM's image, which answers as vLLM does and
/// checks the key) sized to the GPU nvidia-smi reports, its key made on the
/// host and config/llm.env written from it, the stack started only once
/// the LLM served its model, the LLM services' answers in the end-to-end
/// request, and a converged re-run.
#[test]
fn local_llm_sized_to_the_gpu_wired_into_the_stack_then_converged() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    // A Hugging Face token for vLLM (a gated model's), never shown.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let token = format!("hf_standin{nanos}");
    let hf = state.path().join("hf.env");
    std::fs::write(&hf, format!("HF_TOKEN={token}\n")).unwrap();
    let hf_arg = format!("hf.env={}", hf.display());
    let args = ["--llm", "local", "--imageup-timeout", "3m", "--llm-timeout", "2m", "--env-file", &hf_arg];
    let first = bootstrap(&host, state.path(), &args);
    assert!(first.status.success(), "bootstrap --llm local failed");
    let llm_line = step_line(&first, "llm");
    assert!(llm_line.contains("changed") && llm_line.contains("Qwen/Qwen2.5-VL-7B-Instruct-AWQ"), "{llm_line}");
    assert!(llm_line.contains("generate its API key"), "{llm_line}");

    // The compose file, as YAML: the pinned image, the command line from
    // the GPU's 23028 MiB, the GPU reserved, its own network.
    let compose = yaml(&host, "/var/docker/llm/docker-compose.yml");
    let vllm = &compose["services"]["vllm"];
    assert_eq!(vllm["image"].as_str(), Some("vllm/vllm-openai:v0.10.2"));
    assert_eq!(vllm["container_name"].as_str(), Some("vllm"));
    let gpu = &vllm["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(gpu["driver"].as_str(), Some("nvidia"));
    assert_eq!(strings(&vllm["networks"]), ["llm"]);
    // What the container was started with: the command line from the
    // settings in config/vllm.env (compose reads them through .env).
    let args_run: Vec<String> = serde_json::from_str(&host.sh_ok("docker inspect -f '{{json .Args}}' vllm")).unwrap();
    let after = |flag: &str| args_run[args_run.iter().position(|c| c == flag).unwrap() + 1].clone();
    assert_eq!(after("--model"), "Qwen/Qwen2.5-VL-7B-Instruct-AWQ");
    assert_eq!(after("--gpu-memory-utilization"), "0.64");
    assert_eq!(after("--max-model-len"), "32768");
    assert_eq!(after("--limit-mm-per-prompt"), "{\"image\": 2}");

    // The key: made on the host, the same in llm.env, both 0600 (key.env
    // root's, llm.env the login user's like every config/*.env), never in
    // the output or the run's log.
    let key_env = text(&host, "/var/docker/llm/key.env");
    let key = key_env.strip_prefix("VLLM_API_KEY=").unwrap().trim().to_string();
    assert!(key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()), "32 random bytes in hex: {key:?}");
    let llm_env = text(&host, &format!("{BASE}/config/llm.env"));
    let entries: Vec<&str> = llm_env.lines().collect();
    assert_eq!(
        entries,
        [
            "LLM_URL=http://vllm:8000/v1".to_string(),
            format!("LLM_API_KEY={key}"),
            "LLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct-AWQ".into()
        ]
    );
    let llm_env_path = format!("{BASE}/IMAGE-server/config/llm.env");
    for (path, owner) in [("/var/docker/llm/key.env", "root"), (llm_env_path.as_str(), host.default_user())] {
        assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {path}")).trim(), format!("600 {owner}"), "{path}");
    }
    let shown = format!("{}{}{}", stdout(&first), stderr(&first), log_file(&first));
    assert!(!shown.contains(&token), "the Hugging Face token was shown");
    // Its settings and the token in config/vllm.env, the login user's
    // 0600 like every config/*.env, read by the compose project (the
    // command line above came from it).
    let vllm_env_path = format!("{BASE}/IMAGE-server/config/vllm.env");
    assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {vllm_env_path}")).trim(), format!("600 {}", host.default_user()));
    let vllm_settings = text(&host, &vllm_env_path);
    assert!(vllm_settings.contains("\nGPU_MEMORY_UTILIZATION=0.64\n"), "{vllm_settings}");
    assert!(vllm_settings.ends_with(&format!("\nHF_TOKEN={token}\n")), "{vllm_settings}");
    assert_eq!(host.sh_ok("readlink /var/docker/llm/.env").trim(), vllm_env_path);
    let vllm_env = host.sh_ok("docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' vllm");
    assert!(vllm_env.lines().any(|l| l == format!("HF_TOKEN={token}")), "vLLM does not have the token");
    assert!(!host.exists(&format!("{BASE}/IMAGE-server/config/hf.env")), "hf.env is vLLM's, not the stack's");
    assert!(!shown.contains(&key), "the key was shown");

    // The stack started only after the LLM served its model: the LLM's
    // first answered model list comes before the orchestrator was created.
    let first_models = first_logged(&host, "vllm", "GET /v1/models auth=ok");
    let created = orchestrator_created(&host);
    assert!(first_models < created, "models answered at {first_models}, orchestrator created at {created}");
    let vllm_log = host.sh_ok("docker logs vllm 2>&1");
    // The LLM services called it with its key, and their outputs are in
    // the end-to-end request.
    assert!(vllm_log.contains("POST /v1/chat/completions auth=ok model=Qwen/Qwen2.5-VL-7B-Instruct-AWQ"), "{vllm_log}");
    assert!(!vllm_log.contains("auth=wrong") && !vllm_log.contains("auth=missing"), "{vllm_log}");
    let health = step_line(&first, "health");
    assert!(health.contains("answered by the categoriser and the caption"), "{health}");

    // Converged: every step ok, the key kept.
    assert_converged(&bootstrap(&host, state.path(), &args), "the re-run");
    assert_eq!(text(&host, "/var/docker/llm/key.env"), key_env);
    // A re-run that gives no hf.env keeps the server's token: every step
    // ok, neither vLLM nor the stack restarted.
    let imageups = cli::imageups(&host);
    let vllm_started = host.sh_ok("docker inspect -f '{{.State.StartedAt}}' vllm");
    assert_converged(&bootstrap(&host, state.path(), &args[..6]), "the re-run without hf.env");
    assert_eq!(text(&host, &vllm_env_path), vllm_settings, "the token kept");
    assert_eq!(host.sh_ok("docker inspect -f '{{.State.StartedAt}}' vllm"), vllm_started, "vLLM restarted");
    assert_eq!(cli::imageups(&host), imageups, "a re-run without hf.env ran imageup");

    // verify: the LLM's container, its model, and a tiny chat's latency.
    let (llm, shown) = verify_llm_check(&host, state.path());
    assert_eq!(llm["status"], "ok", "{llm}");
    let detail = llm["detail"].as_str().unwrap();
    assert!(detail.contains("vLLM serves Qwen/Qwen2.5-VL-7B-Instruct-AWQ; a 4-token chat answered in "), "{detail}");
    assert!(!shown.contains(&key), "the key was shown");

    // Other GPUs, as nvidia-smi reports them: an L40S's 46068 MiB gets the
    // 32B model at a 0.82 share (a dry run); a T4's 15360 MiB is refused with
    // the numbers, and nothing changes.
    host.write("/var/lib/standin/nvidia/gpu", b"46068 NVIDIA L40S\n");
    let dry = bootstrap(&host, state.path(), &[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "dry run on an L40S");
    let line = step_line(&dry, "llm");
    assert!(line.contains("Qwen/Qwen2.5-VL-32B-Instruct-AWQ on a 45.0 GiB GPU: vLLM takes 0.82"), "{line}");
    host.write("/var/lib/standin/nvidia/gpu", b"15360 Tesla T4\n");
    let before = snapshot(&host);
    let small = bootstrap(&host, state.path(), &args);
    assert_eq!(small.status.code(), Some(1), "a T4 cannot hold a model beside IMAGE");
    let err = stderr(&small);
    assert!(err.contains("no vision model fits") && err.contains("this GPU has 15.0 GiB"), "{err}");
    assert!(cli::diff(&before, &snapshot(&host)).is_empty(), "the refused run changed something");
}

/// `--llm ollama` on a booted host: Ollama's compose project in
/// /var/docker/ollama (the test registry's stand-in for Ollama's image,
/// which serves Ollama's pull API and its OpenAI-compatible one), its
/// settings in config/ollama.env, the model sized to the GPU pulled through
/// the API with its progress in the log and loaded before the stack starts,
/// llm.env pointing at its /v1 with the placeholder key, the same
/// end-to-end request answered by the LLM services, only the host and the
/// llm network reaching it, and a converged re-run that pulls nothing.
#[test]
fn ollama_sized_pulled_and_wired_into_the_stack_then_converged() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    let args = ["--llm", "ollama", "--imageup-timeout", "3m", "--llm-timeout", "2m"];
    let first = bootstrap(&host, state.path(), &args);
    assert!(first.status.success(), "bootstrap --llm ollama failed");
    let llm_line = step_line(&first, "llm");
    assert!(llm_line.contains("changed") && llm_line.contains("qwen2.5vl:7b"), "{llm_line}");

    let compose = yaml(&host, "/var/docker/ollama/docker-compose.yml");
    let ollama = &compose["services"]["ollama"];
    assert_eq!(ollama["image"].as_str(), Some("ollama/ollama:0.32.15"));
    assert_eq!(ollama["container_name"].as_str(), Some("ollama"));
    assert_eq!(ollama["deploy"]["resources"]["reservations"]["devices"][0]["driver"].as_str(), Some("nvidia"));
    assert_eq!(strings(&ollama["networks"]), ["llm"]);
    assert_eq!(strings(&ollama["volumes"]), ["models:/root/.ollama"]);
    // Published on the host's loopback only.
    assert_eq!(host.sh_ok("docker port ollama").trim(), "11434/tcp -> 127.0.0.1:11434");
    // Its settings: the login user's 0600 file, in the container's
    // environment through the project's .env link.
    let settings_path = format!("{BASE}/IMAGE-server/config/ollama.env");
    assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {settings_path}")).trim(), format!("600 {}", host.default_user()));
    assert_eq!(host.sh_ok("readlink /var/docker/ollama/.env").trim(), settings_path);
    let env = host.sh_ok("docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' ollama");
    for want in ["OLLAMA_CONTEXT_LENGTH=32768", "OLLAMA_KEEP_ALIVE=-1", "MODEL=qwen2.5vl:7b"] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    let llm_env = text(&host, &format!("{BASE}/config/llm.env"));
    assert_eq!(
        llm_env.lines().collect::<Vec<_>>(),
        ["LLM_URL=http://ollama:11434/v1", "LLM_API_KEY=ollama", "LLM_MODEL=qwen2.5vl:7b"]
    );
    assert!(!host.exists("/var/docker/ollama/key.env") && !host.exists("/var/docker/llm"), "no vLLM here");

    // Pulled through the API (its progress in the run's log), loaded, and
    // only then the stack: the load comes before the orchestrator was made.
    let log = log_file(&first);
    assert!(
        log.contains("pulling qwen2.5vl:7b") && log.contains("pulling manifest") && log.contains("100% of"),
        "{log}"
    );
    let ollama_log = host.sh_ok("docker logs ollama 2>&1");
    assert!(ollama_log.contains("serve OLLAMA_CONTEXT_LENGTH=32768"), "{ollama_log}");
    let loaded = first_logged(&host, "ollama", "POST /api/generate model=qwen2.5vl:7b prompt=no");
    let created = orchestrator_created(&host);
    assert!(loaded < created, "loaded at {loaded}, orchestrator created at {created}");
    // The LLM services' requests: the categoriser's JSON schema, the
    // graphic as a data URL (Ollama takes no other), both answered.
    assert!(
        ollama_log.contains("POST /v1/chat/completions auth=unchecked model=qwen2.5vl:7b image=yes json=yes"),
        "{ollama_log}"
    );
    assert!(!ollama_log.contains(" unknown"), "{ollama_log}");
    let health = step_line(&first, "health");
    assert!(health.contains("answered by the categoriser and the caption"), "{health}");

    // Converged: every step ok, nothing pulled again.
    assert_converged(&bootstrap(&host, state.path(), &args), "the re-run");
    assert_eq!(host.sh_ok("docker logs ollama 2>&1").matches("POST /api/pull").count(), 1);
    let (llm, _) = verify_llm_check(&host, state.path());
    assert_eq!(llm["status"], "ok", "{llm}");
    assert!(
        llm["detail"].as_str().unwrap().contains("Ollama serves qwen2.5vl:7b; a 4-token chat answered in "),
        "{llm}"
    );

    // An L40S: the 32B (a dry run).
    host.write("/var/lib/standin/nvidia/gpu", b"46068 NVIDIA L40S\n");
    let dry = bootstrap(&host, state.path(), &[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "dry run on an L40S");
    let line = step_line(&dry, "llm");
    assert!(line.contains("qwen2.5vl:32b on a 45.0 GiB GPU: Ollama takes about 29.1 GiB"), "{line}");
}
