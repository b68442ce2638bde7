//! `--env-file` files read as compose reads them: a table of cases, each
//! given to our reader (image_provision_playbooks::validate::parse_env_file)
//! and to the real compose v2 the booted hosts install (Debian 13's
//! docker-compose 2.26 from the archive stand-in, its plugin binary run on
//! its own: `config` needs no daemon). Both must accept the same files with
//! the same values, and refuse the same ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use image_provision_playbooks::validate::parse_env_file;
use image_provision_testsupport::testhost::ensure_booted_root;

/// The compose plugin from the archive stand-in's docker-compose-v2 .deb,
/// unpacked into `dir`.
fn compose_from_the_archive(dir: &Path) -> PathBuf {
    let (_, archive) = ensure_booted_root();
    let deb = std::fs::read_dir(&archive)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("docker-compose-v2_")))
        .unwrap_or_else(|| panic!("no docker-compose-v2 .deb in {}", archive.display()));
    let out = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir).output().expect("running dpkg-deb");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("usr/libexec/docker/cli-plugins/docker-compose")
}

/// compose's reading of `text` as a service's env_file: the environment it
/// gives the service, or its error. Run with an empty environment, so a
/// name alone takes nothing from it.
fn compose_reads(compose: &Path, dir: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    std::fs::write(dir.join("case.env"), text).unwrap();
    std::fs::write(dir.join("compose.yml"), "services:\n  t:\n    image: scratch\n    env_file: [./case.env]\n")
        .unwrap();
    let out = Command::new(compose)
        .args(["-p", "envcase", "-f", "compose.yml", "config", "--format", "json"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("running compose");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("compose's JSON");
    let env = v["services"]["t"]["environment"].as_object().cloned().unwrap_or_default();
    let mut entries: Vec<(String, String)> =
        env.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect();
    entries.sort();
    Ok(entries)
}

#[test]
fn env_files_are_read_as_the_real_compose_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let compose = compose_from_the_archive(&dir.path().join("deb"));
    let cases = [
        "KEY=value\n",
        "KEY = value\n",
        "export KEY=value\n",
        "export  KEY = \"v\" # a comment\n",
        "KEY=\"quoted value\"\n",
        "KEY='single # not a comment'\n",
        "KEY=value # a comment\n",
        "KEY=value#not a comment\n",
        "# a comment\n\n  KEY=indented\n",
        "KEY: yaml style\n",
        "KEY:value\n",
        "KEY=\n",
        "KEY =\n",
        "KEY=va lue  \n",
        "KEY=\"a \\\" b\"\n",
        "KEY=\"multi\\nline\"\n",
        "KEY=\"back\\\\slash\"\n",
        "KEY='a\\nb'\n",
        "KEY=\"two\nlines\"\n",
        "KEY=\"a\" trailing\n",
        "NAME_ALONE\nKEY=1\n",
        "sk-abc123\n",
        "1KEY=x\nKEY.name=y\nKEY-dash=z\n",
        "A=1\nB=2\nA=3\n",
        "KEY=last line without a newline",
        "API KEY=x\n",
        "K$Y=1\n",
        "KEY=\"unterminated\n",
        "KEY='unterminated\n",
        "K@Y=1\n",
    ];
    let mut table = Vec::new();
    for case in cases {
        let ours = parse_env_file(case).map(|mut entries| {
            // compose keeps the last of a repeated name.
            let mut seen = std::collections::BTreeMap::new();
            for (k, v) in entries.drain(..) {
                seen.insert(k, v);
            }
            seen.into_iter().collect::<Vec<_>>()
        });
        let theirs = compose_reads(&compose, dir.path(), case);
        table.push(format!(
            "{case:?}: ours {} compose {}",
            ours.as_ref().map(|e| format!("{e:?}")).unwrap_or_else(|e| format!("refused ({e})")),
            theirs.as_ref().map(|e| format!("{e:?}")).unwrap_or_else(|e| format!("refused ({e})")),
        ));
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{case:?}: the values differ"),
            (Err(_), Err(_)) => {}
            _ => panic!("{case:?}: ours {ours:?}, compose {theirs:?}"),
        }
    }
    eprintln!("{}", table.join("\n"));
    // Refusals never show the line's content (the files hold credentials).
    for (case, secret) in [("API KEY=sk-secret\n", "sk-secret"), ("KEY=\"sk-secret\n", "sk-secret")] {
        let e = parse_env_file(case).unwrap_err();
        assert!(e.starts_with("line 1: ") && !e.contains(secret), "{e}");
    }
}
