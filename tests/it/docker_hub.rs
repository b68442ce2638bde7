//! Docker Hub's pull limit on a booted test host, with the test registry
//! behind a stand-in for Docker Hub's own answers (token authentication,
//! one account, HTTP 429 TOOMANYREQUESTS for anonymous pulls past the
//! limit; tests/testhost/registry/dockerhub-standin.py) and a real registry
//! serving as the mirror. The Docker Hub image here is vLLM's (`--llm
//! local`): a run refused for the limit says so with both ways out; the dry
//! run shows the mirror and the login; the mirror alone gets past the
//! limit; the login is made once, its token on no output, log or command
//! line.

use std::path::Path;
use std::process::Output;

use image_provision_playbooks::steps::llm::VLLM;
use image_provision_testsupport::cli::{self, outcomes, state_for, stderr, stdout, step_line};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

const MIRROR_PORT: u16 = 5443;

fn bootstrap(host: &TestHost, state: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = ["bootstrap"].into_iter().chain(extra.iter().copied()).collect();
    cli::run(&mut cli::on_host(BIN, host, host.default_user(), state, &args), &format!("bootstrap {extra:?}"))
}

fn said(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn docker_hubs_pull_limit_is_named_and_a_mirror_or_a_login_gets_past_it() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let token = format!("dckr_pat_standin{nanos}");
    // No anonymous pull left: this address has used its share.
    host.enable_registry_behind_docker_hub(&format!("imagebot:{token}"), 0);
    let state = state_for(&host);
    let local = tempfile::tempdir().unwrap();
    let hf = local.path().join("hf.env");
    std::fs::write(&hf, format!("HF_TOKEN=hf_standin{nanos}\n")).unwrap();
    let hf_arg = format!("hf.env={}", hf.display());
    let hub = local.path().join("dockerhub.env");
    std::fs::write(&hub, format!("# the team's pull account\nDOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN={token}\n"))
        .unwrap();
    let hub_arg = format!("dockerhub.env={}", hub.display());
    let common = ["--llm", "local", "--llm-timeout", "2m", "--imageup-timeout", "3m", "--env-file", &hf_arg];
    let mut outputs = Vec::new();

    // Anonymous: vLLM's pull is refused, and the run says why and what to do.
    let refused = bootstrap(&host, state.path(), &common);
    assert_eq!(refused.status.code(), Some(1), "the pull limit stops the run");
    let err = stderr(&refused);
    assert!(err.contains("step llm failed"), "{err}");
    assert!(err.contains("toomanyrequests"), "Docker's own words: {err}");
    assert!(err.contains("Docker Hub refused a pull: its limit on anonymous pulls"), "{err}");
    assert!(err.contains("--registry-mirror URL") && err.contains("--env-file dockerhub.env=PATH"), "{err}");
    let asked = host.docker_hub_requests();
    assert!(
        asked.iter().any(|l| l.contains("/v2/vllm/vllm-openai/manifests/") && l.ends_with("auth=anonymous -> 429")),
        "{asked:#?}"
    );
    outputs.push(refused);

    // The dry run shows the mirror and the login, and changes neither.
    let mirror = host.enable_registry_mirror(MIRROR_PORT);
    let daemon_before = host.sh_ok("cat /etc/docker/daemon.json");
    let with_both = [&common[..], &["--registry-mirror", &mirror, "--env-file", &hub_arg]].concat();
    let dry = bootstrap(&host, state.path(), &[&with_both[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", stderr(&dry));
    let docker = step_line(&dry, "docker");
    assert!(docker.contains(&format!("set registry-mirrors {mirror} in /etc/docker/daemon.json")), "{docker}");
    assert!(docker.contains("log in to Docker Hub as imagebot"), "{docker}");
    let shown = stdout(&dry);
    assert!(shown.contains(&format!("MIRROR={mirror}")) && shown.contains("DOCKERHUB_TOKEN=<redacted>"), "{shown}");
    assert_eq!(host.sh_ok("cat /etc/docker/daemon.json"), daemon_before, "the dry run changed daemon.json");
    assert!(!host.exists("/root/.docker/config.json"), "the dry run logged in");
    outputs.push(dry);

    // The mirror alone: Docker asks it first, and it has vLLM's image.
    let via_mirror = bootstrap(&host, state.path(), &[&common[..], &["--registry-mirror", &mirror]].concat());
    assert!(via_mirror.status.success(), "through the mirror: {}", stderr(&via_mirror));
    let daemon: serde_json::Value = serde_json::from_str(&host.sh_ok("cat /etc/docker/daemon.json")).unwrap();
    assert_eq!(daemon["registry-mirrors"], serde_json::json!([mirror]), "{daemon}");
    assert_eq!(daemon["max-concurrent-downloads"], 10, "the other settings stay: {daemon}");
    let served = host.registry_log(MIRROR_PORT);
    assert!(served.contains("/v2/vllm/vllm-openai/manifests/"), "the mirror served vLLM's image:\n{served}");
    outputs.push(via_mirror);

    // A token Docker Hub refuses: the docker step fails saying so, and
    // shows neither token.
    let wrong = local.path().join("wrong.env");
    let wrong_token = format!("dckr_pat_wrong{nanos}");
    std::fs::write(&wrong, format!("DOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN={wrong_token}\n")).unwrap();
    let wrong_arg = format!("dockerhub.env={}", wrong.display());
    let refused_login = bootstrap(&host, state.path(), &[&common[..], &["--env-file", &wrong_arg]].concat());
    assert_eq!(refused_login.status.code(), Some(1));
    let err = stderr(&refused_login);
    assert!(
        err.contains("step docker failed") && err.contains("docker login to Docker Hub as imagebot failed"),
        "{err}"
    );
    assert!(!said(&refused_login).contains(&wrong_token), "{err}");
    assert!(host.docker_hub_requests().iter().any(|l| l.contains("/token auth=wrong -> 401")));
    outputs.push(refused_login);

    // The login (the mirror kept: not given, daemon.json's stays), once.
    let login = bootstrap(&host, state.path(), &[&common[..], &["--env-file", &hub_arg]].concat());
    assert!(login.status.success(), "{}", stderr(&login));
    let docker = step_line(&login, "docker");
    assert!(docker.contains("changed") && docker.contains("log in to Docker Hub as imagebot"), "{docker}");
    assert!(host.docker_hub_requests().iter().any(|l| l.contains("/token auth=account -> 200")));
    assert_eq!(host.sh_ok("stat -c %a /root/.docker/config.json").trim(), "600");
    let again = bootstrap(&host, state.path(), &[&common[..], &["--env-file", &hub_arg]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    let steps = outcomes(&again);
    assert_eq!(steps.iter().find(|(s, _)| s == "docker").map(|(_, o)| o.as_str()), Some("ok"), "{steps:?}");
    assert!(step_line(&again, "docker").contains("logged in to Docker Hub as imagebot"));
    outputs.extend([login, again]);

    // With the account, Docker Hub itself serves past the anonymous limit:
    // the mirror taken out of daemon.json, vLLM's image pulled again (a
    // pull of a tag Docker has still asks for its manifest).
    host.sh_ok(
        "jq 'del(.\"registry-mirrors\")' /etc/docker/daemon.json >/tmp/d.json && mv /tmp/d.json /etc/docker/daemon.json \
         && systemctl restart docker",
    );
    host.sh_ok(&format!("docker pull -q {}", VLLM.image));
    let asked = host.docker_hub_requests();
    assert!(
        asked.iter().any(|l| l.contains("/v2/vllm/vllm-openai/manifests/") && l.ends_with("auth=account -> 200")),
        "{asked:#?}"
    );

    // The token: on no output, in no run log, on no command line the host
    // recorded (sudo's in the journal, the stand-ins' call log).
    for o in &outputs {
        assert!(!said(o).contains(&token), "shown: {}", said(o));
    }
    let logs = std::fs::read_dir(state.path().join("logs")).unwrap();
    for log in logs {
        let path = log.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains(&token), "in the log {}", path.display());
    }
    let grep = host.sh(&format!(
        "journalctl --no-pager -o cat | grep -c -F '{token}'; grep -r -c -F '{token}' /var/log /etc /var/docker 2>/dev/null | grep -v ':0$'"
    ));
    let found = String::from_utf8_lossy(&grep.stdout);
    assert_eq!(found.trim(), "0", "the token on the host: {found}");
}
