//! `bootstrap --llm local --llm-webui HOST` on a booted host: Open WebUI
//! (the test registry's stand-in for its image, tests/testhost/
//! webui-standin.py, which makes its admin from the environment, refuses
//! sign-up when it is off, requires a login on its API and asks the LLM it
//! is configured with) behind the real Traefik with its own certificate
//! from pebble, connected to the vLLM stand-in; then a converged re-run.

use image_provision_testsupport::cli::{outcomes, state_for, stderr, stdout, step_line};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;
use crate::bootstrap_image::{bootstrap, text};

const DOMAIN: &str = "image.example.org";
const WEBUI: &str = "chat.example.org";
const MODEL: &str = "Qwen/Qwen2.5-VL-7B-Instruct-AWQ";

/// `curl` on the host to https://WEBUI/PATH through its own Traefik, with
/// the host's trust store (pebble's root): "CODE BODY".
fn webui(host: &TestHost, extra: &str, path: &str) -> String {
    host.sh_ok(&format!(
        "curl -sS --max-time 30 -w ' %{{http_code}}' --resolve {WEBUI}:443:127.0.0.1 {extra} https://{WEBUI}{path}"
    ))
}

#[test]
fn llm_webui_behind_traefik_requires_the_generated_login_and_reaches_the_llm() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let acme = host.enable_acme();
    // sudo logs every command line it runs: no secret may be on them.
    host.write("/etc/sudoers.d/00-logfile", b"Defaults logfile=/var/log/sudo.log\n");
    host.sh_ok("chmod 0440 /etc/sudoers.d/00-logfile");
    let state = state_for(&host);
    let args = [
        "--llm",
        "local",
        "--llm-webui",
        WEBUI,
        "--domain",
        DOMAIN,
        "--acme-email",
        "ops@example.org",
        "--acme-server",
        &acme,
        "--imageup-timeout",
        "3m",
        "--llm-timeout",
        "2m",
    ];
    let first = bootstrap(&host, state.path(), &args);
    assert!(first.status.success(), "bootstrap --llm-webui failed:\n{}", host.logs());
    let line = step_line(&first, "webui");
    assert!(line.contains("changed") && line.contains("generate its session key"), "{line}");

    // The admin's password: made here, 0600, named in the summary, never
    // shown, in the run's log or on the host's command lines.
    let file = state.path().join("webui").join(WEBUI).join("admin-password");
    let password = std::fs::read_to_string(&file).expect("the password file").trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(password.len(), 32);
    let out = stdout(&first);
    assert!(
        out.contains(&format!("web UI: https://{WEBUI}/  (admin admin@{WEBUI}, password in {})", file.display())),
        "{out}"
    );
    let log_path = out.lines().find_map(|l| l.strip_prefix("log: ")).expect("log line");
    let shown = format!("{out}{}{}", stderr(&first), std::fs::read_to_string(log_path).unwrap());
    assert!(!shown.contains(&password), "the password was shown");
    let sudo_log = text(&host, "/var/log/sudo.log");
    assert!(sudo_log.contains("webui") && !sudo_log.contains(&password), "the password on a command line");

    // On the host: the files 0600 root, the route on once the admin signed in.
    for path in ["/var/docker/webui/admin.env", "/var/docker/webui/secret.env", "/var/docker/webui/llm-key.env"] {
        assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {path}")).trim(), "600 root", "{path}");
    }
    assert_eq!(text(&host, "/var/docker/webui/.env"), "WEBUI_ROUTED=true\n");
    let secret = text(&host, "/var/docker/webui/secret.env");
    let standin_log = || host.sh_ok("docker logs webui 2>&1");
    // One user, the admin made from the environment (the container that
    // made it was recreated when the route came on: its data holds it).
    let users: serde_json::Value = serde_json::from_str(&text(&host, "/var/docker/webui/data/users.json")).unwrap();
    let users: Vec<(&str, &str)> =
        users.as_array().unwrap().iter().map(|u| (u["email"].as_str().unwrap(), u["role"].as_str().unwrap())).collect();
    assert_eq!(users, [(format!("admin@{WEBUI}").as_str(), "admin")]);
    let log = standin_log();
    assert!(
        log.contains(
            "settings ENABLE_OLLAMA_API ENABLE_OPENAI_API ENABLE_PERSISTENT_CONFIG ENABLE_SIGNUP OPENAI_API_BASE_URL \
             OPENAI_API_KEY"
        ),
        "{log}"
    );

    // Its own certificate, from pebble, for its own name.
    let issuer = host.sh_ok(&format!(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername {WEBUI} 2>/dev/null | openssl x509 -noout -issuer -ext subjectAltName"
    ));
    assert!(issuer.contains("Pebble") && issuer.contains(&format!("DNS:{WEBUI}")), "{issuer}");

    // Without a login: refused; sign-up: refused.
    assert!(webui(&host, "", "/api/models").ends_with(" 401"), "a request without a login");
    let signup = webui(
        &host,
        "-H 'Content-Type: application/json' -d '{\"name\":\"x\",\"email\":\"x@example.org\",\"password\":\"x\"}'",
        "/api/v1/auths/signup",
    );
    assert!(signup.ends_with(" 403"), "sign-up: {signup}");
    // The generated login works and reaches the LLM stand-in, with its key.
    host.write("/root/signin.json", format!("{{\"email\":\"admin@{WEBUI}\",\"password\":\"{password}\"}}").as_bytes());
    let signin = webui(&host, "-H 'Content-Type: application/json' -d @/root/signin.json", "/api/v1/auths/signin");
    assert!(signin.ends_with(" 200"), "sign-in: {signin}");
    let token = signin.split("\"token\": \"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_string();
    let auth = format!("-H 'Authorization: Bearer {token}'");
    let models = webui(&host, &auth, "/api/models");
    assert!(models.ends_with(" 200") && models.contains(MODEL), "{models}");
    let chat = webui(
        &host,
        &format!(
            "{auth} -H 'Content-Type: application/json' -d '{{\"model\":\"{MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        ),
        "/api/chat/completions",
    );
    assert!(chat.ends_with(" 200") && chat.contains("A small square"), "{chat}");
    let vllm = host.sh_ok("docker logs vllm 2>&1");
    assert!(vllm.contains(&format!("POST /v1/chat/completions auth=ok model={MODEL}")), "{vllm}");
    let log = standin_log();
    assert!(log.contains("GET /api/models refused: not signed in"), "{log}");
    assert!(log.contains(&format!("POST /api/chat/completions user=admin@{WEBUI} model={MODEL} llm=200")), "{log}");

    // Converged: the web UI ok, its session key and the password kept.
    let again = bootstrap(&host, state.path(), &args);
    assert!(again.status.success());
    let webui_outcome = outcomes(&again).into_iter().find(|(s, _)| s == "webui").expect("the webui step");
    assert_eq!(webui_outcome.1, "ok", "{}", stdout(&again));
    assert_eq!(text(&host, "/var/docker/webui/secret.env"), secret);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);

    // A new LLM key (its file lost on the host): the web UI follows it,
    // not the key Open WebUI stored at its first start.
    host.sh_ok("rm /var/docker/llm/key.env");
    let rekeyed = bootstrap(&host, state.path(), &args);
    assert!(rekeyed.status.success(), "{}", stdout(&rekeyed));
    assert!(step_line(&rekeyed, "webui").contains("changed"), "{}", stdout(&rekeyed));
    let chat = webui(
        &host,
        &format!(
            "{auth} -H 'Content-Type: application/json' -d '{{\"model\":\"{MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        ),
        "/api/chat/completions",
    );
    assert!(chat.ends_with(" 200"), "with the new key: {chat}");

    // The route stays off while the admin cannot sign in: the local state
    // lost (a new password, which the server's admin does not have) and the
    // route's record gone, the run fails at the webui step, saying why, and
    // Traefik has no route to it.
    let lost = state_for(&host);
    host.sh_ok("rm /var/docker/webui/.env");
    let out = bootstrap(&host, lost.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("step webui failed"), "{err}");
    assert!(
        err.contains(&format!(
            "the web UI's admin admin@{WEBUI} cannot sign in with the password image-provision keeps"
        )),
        "{err}"
    );
    assert_eq!(text(&host, "/var/docker/webui/.env"), "WEBUI_ROUTED=false\n");
    // (-k: with no router, which certificate Traefik presents is its own
    // choice; the answer is the point.)
    let unrouted = webui(&host, "-k", "/health");
    assert!(unrouted.ends_with(" 404"), "Traefik routes a web UI whose admin cannot sign in: {unrouted}");
    assert_eq!(text(&host, "/var/docker/webui/data/users.json").matches("\"email\"").count(), 1, "the admin kept");
}

/// Refused before anything connects or is written (exit 2, the state
/// directory not even made): a name that is not a host name, no local LLM,
/// no --domain, the web UI on --domain itself; for bootstrap and ec2 create.
#[test]
fn bad_llm_webui_values_exit_2_and_change_nothing() {
    let site = ["--domain", DOMAIN, "--acme-email", "ops@example.org"];
    let cases: [(&[&str], &str); 5] = [
        (&["--llm", "local", "--llm-webui", "chat_ui"], "--llm-webui: \"chat_ui\" is not a host name"),
        (&["--llm", "local", "--llm-webui", "198.51.100.7"], "is an IP address"),
        (&["--no-llm", "--llm-webui", WEBUI], "--llm-webui needs a local LLM"),
        (&["--llm", "local", "--llm-webui", WEBUI, "--no-domain-given"], "--llm-webui needs --domain"),
        (&["--llm", "local", "--llm-webui", DOMAIN], "is --domain too"),
    ];
    for (command, base) in [
        (&["bootstrap", "--host", "root@127.0.0.1:1"][..], &["--dry-run"][..]),
        (&["ec2", "create", "webui-test"][..], &["--no-bootstrap"][..]),
    ] {
        for (flags, want) in cases {
            let scratch = tempfile::tempdir().unwrap();
            let state = scratch.path().join("state");
            let mut args: Vec<&str> = [command, base].concat();
            match flags.last() {
                Some(&"--no-domain-given") => args.extend(&flags[..flags.len() - 1]),
                _ => {
                    args.extend(flags);
                    args.extend(site);
                }
            }
            let out = std::process::Command::new(BIN)
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", scratch.path())
                .env("IMAGE_PROVISION_STATE_DIR", &state)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!state.exists(), "{args:?} made the state directory");
        }
    }
}
