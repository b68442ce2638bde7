//! IMAGE_PROVISION_LOG=trace shows how a run went, never its secrets: an
//! `ec2 create` against moto at trace level, its stderr and every log file
//! in the state directory searched for the server's SSH host private key
//! (RunInstances' user data carries it), the user data itself, the login
//! key, and the AWS credentials: the secret access key and a session token
//! (the AWS SDK logs every request's headers at trace, the token among
//! them, and with LOG_SIGNABLE_BODY=true, which its own trace output
//! suggests, every request's body as bytes).

use std::path::{Path, PathBuf};

use image_provision_testsupport::ec2env::*;

use crate::BIN;

/// Not moto's defaults: secrets no other text would contain.
const SECRET_ACCESS_KEY: &str = "tRaCeTeStSeCrEt0123456789abcdefGHIJKLmnop";
const SESSION_TOKEN: &str = "tRaCeTeStSeSsIoNtOkEn9876543210zyxwvuTSRQ";

/// Every file under `dir` whose name is `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if e.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// Every file under `dir` ending in `.log`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(log_files(&path));
        } else if path.extension().is_some_and(|x| x == "log") {
            found.push(path);
        }
    }
    found
}

/// The runs of at least 16 letters and digits in `secret`: what of it
/// would show through any quoting or URL encoding; each also as the SDK
/// shows a body's bytes (`[98, 51, 66, ...]`).
fn fragments(secret: &str) -> Vec<String> {
    let runs = secret.split(|c: char| !c.is_ascii_alphanumeric()).filter(|f| f.len() >= 16);
    runs.flat_map(|f| {
        let bytes: Vec<String> = f.bytes().map(|b| b.to_string()).collect();
        [f.to_string(), bytes.join(", ")]
    })
    .collect()
}

/// The user data of the instance named `name`, base64 as EC2 holds it.
fn user_data(env: &Ec2Env, name: &str) -> String {
    let client = env.client();
    let rt = rt();
    let described = rt
        .block_on(
            client
                .describe_instances()
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build())
                .send(),
        )
        .unwrap();
    let id = described.reservations()[0].instances()[0].instance_id().unwrap().to_string();
    let attr = rt
        .block_on(
            client
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                .send(),
        )
        .unwrap();
    attr.user_data().and_then(|v| v.value()).expect("user data").to_string()
}

#[test]
fn a_create_at_trace_level_logs_no_secret() {
    let env = Ec2Env::start(BIN);
    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .args(["ec2", "create", "traced", "--no-bootstrap"])
        .env("IMAGE_PROVISION_LOG", "trace")
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("LOG_SIGNABLE_BODY", "true")
        .output()
        .unwrap();
    let err = stderr(&out);
    eprintln!(
        "create at trace: {:?} in {:.1}s, {} lines on stderr",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        err.lines().count()
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The level took: the run's own debug lines are there.
    assert!(err.contains("DEBUG"), "nothing logged at trace level:\n{err}");

    let state = env.state_dir();
    let mut secrets: Vec<(String, String)> = vec![
        ("the AWS secret access key".into(), SECRET_ACCESS_KEY.into()),
        ("the AWS session token".into(), SESSION_TOKEN.into()),
    ];
    for key in ["ssh_host_ed25519_key", "id_ed25519"] {
        let files = files_named(&state, key);
        assert_eq!(files.len(), 1, "{key} in the state directory: {files:?}");
        secrets.push((key.into(), std::fs::read_to_string(&files[0]).unwrap()));
    }
    secrets.push(("the user data".into(), user_data(&env, "traced")));

    let mut texts = vec![("stderr".to_string(), err.clone())];
    for log in log_files(&state) {
        texts.push((log.display().to_string(), std::fs::read_to_string(&log).unwrap()));
    }
    let mut leaks = Vec::new();
    for (where_, text) in &texts {
        if text.contains("PRIVATE KEY") {
            leaks.push(format!("a private key in {where_}"));
        }
        for (what, secret) in &secrets {
            let parts = fragments(secret);
            assert!(!parts.is_empty(), "{what} has no fragment to look for");
            if let Some(part) = parts.iter().find(|p| text.contains(p.as_str())) {
                leaks.push(format!("{what} in {where_} ({}...)", &part[..8]));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets logged at trace level:\n{}", leaks.join("\n"));
}
