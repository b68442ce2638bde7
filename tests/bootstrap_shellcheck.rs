//! Every script the binary embeds (playbooks/scripts) and every stand-in the
//! tests install passes shellcheck (Debian package `shellcheck`; a missing
//! shellcheck is a failure, never a skip).

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

#[test]
fn playbook_scripts_pass_shellcheck() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/scripts");
    // The binary embeds these with include_str!("../scripts/NAME"): every
    // embedded script is a file here.
    let files = bash_files(&dir);
    for name in ["facts.sh", "wait-ready.sh", "apt-source.sh"] {
        assert!(files.contains(&name.to_string()), "{name} is not checked");
    }
    shellcheck(&dir, &files);
}

#[test]
fn standin_scripts_pass_shellcheck() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testhost/standins");
    shellcheck(&dir, &bash_files(&dir));
}
