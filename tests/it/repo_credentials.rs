//! A private IMAGE-server repository (`--repo-credentials`) on a booted test
//! host: the git-remote-https stand-in serves it, as GitHub serves a private
//! repository, only to a git that gives the right credential, so nothing
//! here passes without the feature. The token goes from a 0600 file of the
//! person's to a root-only file on the host, which every git in the clone
//! reads through git's credential helper (bootstrap's clone, imageup's
//! fetch and pull under `bash -x`, the nightly update); it is never in a
//! URL, a command line, the clone's git config, a log of ours, the journal
//! or imageup's trace.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use image_provision_playbooks::settings::REPO_CREDENTIALS;
use image_provision_playbooks::template::sha256_hex;
use image_provision_testsupport::cli::{self, outcomes, state_for, stderr, stdout, step_line};
use image_provision_testsupport::testhost::{Distro, TestHost};

use crate::BIN;

const PRIVATE: &str = "https://github.com/lab-private/IMAGE-server.git";
const CLONE: &str = "/var/docker/image/IMAGE-server";
const HELPER: &str = "store --file=/etc/image-provision/git-credentials";

fn run(host: &TestHost, state: &Path, args: &[&str]) -> Output {
    let mut cmd = cli::on_host(BIN, host, host.default_user(), state, args);
    // The most the run log says: a token anywhere in the run would show.
    cmd.env("IMAGE_PROVISION_LOG", "trace");
    cli::run(&mut cmd, &format!("{args:?}"))
}

/// The stand-in's answers to the private repository's credential requests,
/// in order ("accepted", "refused", "none given").
fn credential_answers(host: &TestHost) -> Vec<String> {
    let prefix = format!("git-remote-https credential for {PRIVATE}: ");
    host.calls().iter().filter_map(|c| c.split_once(&prefix).map(|(_, a)| a.to_string())).collect()
}

#[test]
fn a_private_repository_is_cloned_and_updated_with_credentials_that_never_show() {
    let host = TestHost::boot(Distro::Ubuntu2204Standin);
    host.enable_pinned_bootstrap_standins();
    host.enable_image_server_standins();
    host.enable_registry();
    let state = state_for(&host);
    // Made up per run, so that it cannot be anywhere by chance.
    let token = format!(
        "ghp_{:016x}{:016x}",
        std::process::id() as u64 * 0x9e37_79b9,
        jiff::Timestamp::now().as_nanosecond() as u64
    );
    let user = "x-access-token";
    // The stand-in IMAGE-server, private: served only for this credential.
    host.sh_ok(&format!(
        "mkdir -p /srv/github/lab-private && cp -a /srv/github/Shared-Reality-Lab/IMAGE-server.git \
         /srv/github/lab-private/ && echo {} >/srv/github/lab-private/IMAGE-server.git/standin-private",
        sha256_hex(format!("{user}:{token}"))
    ));
    let local = tempfile::tempdir().unwrap();
    let write = |name: &str, mode: u32| {
        let p = local.path().join(name);
        std::fs::write(&p, format!("# the lab's deploy token\nhttps://{user}:{token}@github.com\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let creds = write("creds", 0o600);
    let open = write("open", 0o644);
    let common = [
        "bootstrap",
        "--no-llm",
        "--image-profile",
        "test",
        "--auto-update",
        "03:30",
        "--imageup-timeout",
        "3m",
        "--repo-url",
        PRIVATE,
    ];
    fn with<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [common, extra].concat()
    }
    let mut outputs = Vec::new();

    // Without credentials the private repository is not served: the layout
    // step fails, saying what to give.
    let without = run(&host, state.path(), &common);
    assert_eq!(without.status.code(), Some(1), "a private repository cloned without credentials");
    assert!(stderr(&without).contains("step layout failed"), "{}", stderr(&without));
    assert!(stderr(&without).contains("--repo-credentials PATH"), "{}", stderr(&without));
    assert_eq!(credential_answers(&host), ["none given"]);
    outputs.push(without);

    // A file others can read is refused before anything connects.
    let calls = host.calls();
    let refused = run(&host, state.path(), &with(&common, &["--repo-credentials", &open]));
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains(&format!("--repo-credentials {open}: mode 0644")), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(&format!("chmod 600 {open}")), "{}", stderr(&refused));
    assert_eq!(host.calls(), calls, "nothing ran on the host");
    outputs.push(refused);

    // The dry run shows the upload, not what is uploaded.
    let dry = run(&host, state.path(), &with(&common, &["--repo-credentials", &creds, "--dry-run"]));
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains(&format!("upload {REPO_CREDENTIALS} (")), "{}", stdout(&dry));
    assert!(stdout(&dry).contains("mode 0600, owner root, secret)"), "{}", stdout(&dry));
    assert!(!host.exists(REPO_CREDENTIALS), "the dry run wrote the credentials");
    outputs.push(dry);

    // With them: cloned, the stack brought up by imageup, whose fetch and
    // pull are asked for the credential too.
    let first = run(&host, state.path(), &with(&common, &["--repo-credentials", &creds]));
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(step_line(&first, "layout").split_whitespace().nth(1), Some("changed"));
    assert!(host.exists(&format!("{CLONE}/docker-compose.yml")), "not cloned");
    assert_eq!(host.sh_ok(&format!("git -C {CLONE} config --get remote.origin.url")).trim(), PRIVATE);
    assert_eq!(host.sh_ok(&format!("git -C {CLONE} config --get-all credential.helper")), format!("\n{HELPER}\n"));
    assert_eq!(
        host.sh_ok(&format!("git -C {CLONE}/schemas config --get-all credential.helper")),
        format!("\n{HELPER}\n")
    );
    assert_eq!(host.sh_ok(&format!("stat -c '%a %U' {REPO_CREDENTIALS}")).trim(), "600 root");
    assert_eq!(cli::imageups(&host), 1);
    let answers = credential_answers(&host);
    assert!(answers.len() >= 3 && answers[1..].iter().all(|a| a == "accepted"), "clone, then imageup's: {answers:?}");
    outputs.push(first);

    // The same file again: nothing to do (git's store wrote the file back
    // as it was); without the flag the server's are kept.
    for args in [with(&common, &["--repo-credentials", &creds]), common.to_vec()] {
        let again = run(&host, state.path(), &args);
        assert!(again.status.success(), "{}", stderr(&again));
        let changed: Vec<_> = outcomes(&again).into_iter().filter(|(_, o)| o != "ok" && o != "skipped").collect();
        assert!(changed.is_empty(), "a converged run changed {changed:?}");
        assert!(
            step_line(&again, "layout").contains(&format!("git reads the credentials in {REPO_CREDENTIALS}")),
            "{}",
            step_line(&again, "layout")
        );
        outputs.push(again);
    }

    // The nightly update (imageup --service), as its timer starts it.
    let asked = credential_answers(&host).len();
    host.sh_ok("systemctl start image-provision-update.service");
    let journal = host.sh_ok("journalctl -u image-provision-update --no-pager");
    assert!(journal.contains("imageup --service done"), "{journal}");
    let answers = credential_answers(&host);
    assert!(answers.len() > asked && answers[asked..].iter().all(|a| a == "accepted"), "{answers:?}");

    // Nowhere but in its own file: not in what the runs printed, the run
    // logs (trace level), the clone's git configs, the journal, the logs on
    // the host (imageup's trace in the run logs and the journal, the
    // stand-ins' calls), the working directory, root's home.
    for o in &outputs {
        assert!(!stdout(o).contains(&token) && !stderr(o).contains(&token), "a run printed the token");
    }
    let logs: Vec<_> = std::fs::read_dir(state.path().join("logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(logs.len() >= 4, "{logs:?}");
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains(&token), "the token is in {}", log.display());
    }
    let imageup_trace =
        logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).any(|t| t.contains("+ git fetch origin"));
    assert!(imageup_trace, "imageup's bash -x trace is not in the run logs");
    assert!(journal.contains("+ git fetch origin"), "imageup's trace is not in the journal:\n{journal}");
    let found = host.sh_ok(&format!(
        "{{ journalctl --no-pager -o verbose; cat {CLONE}/.git/config {CLONE}/.git/modules/schemas/config; }} \
         | grep -cF -- '{token}' || true; \
         grep -rlF -- '{token}' /etc /var/log /var/docker /var/lib/image-provision /var/backups /root /home /srv/github /tmp || true"
    ));
    assert_eq!(found, format!("0\n{REPO_CREDENTIALS}\n"), "the token outside {REPO_CREDENTIALS}");

    // `none` removes them: the file and the clone's helper.
    let removed = run(&host, state.path(), &with(&common, &["--repo-credentials", "none"]));
    assert!(removed.status.success(), "{}", stderr(&removed));
    let layout = step_line(&removed, "layout");
    assert_eq!(layout.split_whitespace().nth(1), Some("changed"), "{layout}");
    assert!(!host.exists(REPO_CREDENTIALS));
    for dir in [CLONE.to_string(), format!("{CLONE}/schemas")] {
        let helpers = host.sh(&format!("git -C {dir} config --get-all credential.helper"));
        assert!(helpers.stdout.is_empty(), "{dir} still names a helper");
    }
}
