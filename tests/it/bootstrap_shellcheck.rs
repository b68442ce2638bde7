//! Every script the binary sends (from playbooks/src, as sent: with the
//! libraries it calls put in front of it, the facts command composed), every
//! library alone, and every stand-in the tests install passes shellcheck (Debian
//! package `shellcheck`; a missing shellcheck is a failure, never a skip).

use std::path::Path;
use std::process::Command;

fn shellcheck(dir: &Path, files: &[String]) {
    assert!(!files.is_empty(), "no scripts found in {}", dir.display());
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style"])
        .args(files)
        .current_dir(dir)
        .output()
        .expect("running shellcheck (apt-get install shellcheck)");
    assert!(
        out.status.success(),
        "shellcheck found problems in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn bash_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("#!/bin/bash")))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

/// The `.sh` files under `dir`, by their path below it.
fn sh_files(dir: &Path, under: &str) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.join(under)).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{under}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            files.extend(sh_files(dir, &format!("{name}/")));
        } else if name.ends_with(".sh") {
            files.push(name);
        }
    }
    files
}

#[test]
fn playbook_scripts_pass_shellcheck() {
    // The scripts as the host steps send them, written out under their names.
    let sent = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for (name, text) in image_provision_playbooks::scripts() {
        let path = sent.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        names.push(name.to_string());
    }
    // Every shell file under playbooks/src is sent, or sent inside another
    // script: none goes unchecked.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/src");
    let parts: Vec<&str> =
        image_provision_playbooks::catalog::sent_inside().into_iter().map(|(name, _)| name).collect();
    for file in sh_files(&dir, "") {
        assert!(
            names.contains(&file) || parts.contains(&file.as_str()),
            "{file} is not in image_provision_playbooks::scripts() nor catalog::sent_inside()"
        );
    }
    shellcheck(sent.path(), &names);
}

#[test]
fn standin_scripts_pass_shellcheck() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost/standins");
    shellcheck(&dir, &bash_files(&dir));
}

#[test]
fn test_host_scripts_pass_shellcheck() {
    // The harness's own: start.sh, boot.sh, build-root.sh, build-archive.sh...
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost");
    let files = bash_files(&dir);
    assert!(files.iter().any(|f| f == "boot.sh"), "{files:?}");
    shellcheck(&dir, &files);
    for sub in ["registry", "vm"] {
        let sub = dir.join(sub);
        shellcheck(&sub, &bash_files(&sub));
    }
}
