//! Every value-taking argument of every subcommand, found through clap
//! itself (a flag added later is covered without touching this file), run
//! with hostile values: each run ends within a time limit, with exit 2 and
//! a message, never a panic (101) or a hang, and creates nothing. Exit 1
//! (a failure found in the world) is accepted only for a value that can be
//! right: a string of digits is a valid server name, image tag or branch.
//!
//! The world is out of reach: no AWS credentials (AWS_ENDPOINT_URL at a
//! closed loopback port too, the instance metadata service off), so a
//! command whose input passed every check stops at the credential lookup
//! before it makes anything (with fake credentials, `ec2 create` would make
//! its SSH key before the first call failed); and `--host` names a real
//! sshd whose host key is not known, which the strict host key check
//! refuses at once (a closed port would be retried for seconds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use image_provision_cli::Cli;
use image_provision_testsupport::net::free_port;
use image_provision_testsupport::sshd::Sshd;

use crate::BIN;

/// One run's limit: input is refused in milliseconds, and a run that gets
/// as far as the world fails at once.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Runs at once: most are refused within milliseconds, so the process
/// starts dominate.
const WORKERS: usize = 4;

/// The hostile values, each with what it is, and whether it can be right
/// for some argument (a run then may go on to the world: exit 1).
fn hostile_values() -> Vec<(&'static str, String, bool)> {
    vec![
        ("empty", String::new(), false),
        ("a template placeholder", "{{x}}".into(), false),
        ("a parent directory", "../".into(), false),
        ("negative", "-1".into(), false),
        ("huge", "99999999999999999999".into(), true),
        ("5000 characters", "a".repeat(5000), false),
        ("a newline", "a\nb".into(), false),
        ("non-ASCII", "\u{e9}t\u{e9}-\u{540d}\u{524d}".into(), false),
    ]
}

/// For an argument whose value is a URL or an apt source: the hostile
/// values inside one that looks right, so that they reach the checks past
/// the scheme (`https://example.org/{{x}}` once made the tool panic).
fn embedded(arg: &clap::Arg, value: &str) -> Option<String> {
    let name = arg.get_value_names()?.first()?.to_string();
    match name.as_str() {
        "URL" => Some(format!("https://example.org/{value}")),
        "SOURCE" => Some(format!("https://example.org/{value} stable")),
        _ => None,
    }
}

/// What each subcommand needs besides the argument under test to get as
/// far as the world: (argument id, its words). A base argument that the
/// tested one replaces or conflicts with is left out of that run.
fn base_args(path: &[String], host: &str) -> Vec<(&'static str, Vec<String>)> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ec2", "create"] => vec![("name", words(&["flags-test"])), ("no_bootstrap", words(&["--no-bootstrap"]))],
        ["ec2", "list"] => vec![],
        ["ec2", "destroy"] => vec![("name", words(&["flags-test"])), ("yes", words(&["--yes"]))],
        ["ec2", "stop"] => vec![("name", words(&["flags-test"]))],
        ["ec2", "start"] => vec![("name", words(&["flags-test"])), ("no_verify", words(&["--no-verify"]))],
        ["bootstrap"] => vec![("host", words(&["--host", host])), ("no_llm", words(&["--no-llm"]))],
        ["verify"] | ["update"] => vec![("host", words(&["--host", host]))],
        ["ami", "bake"] => vec![("server", words(&["flags-test"]))],
        ["ami", "list"] => vec![],
        ["ami", "delete"] => vec![("name", words(&["flags-test"])), ("yes", words(&["--yes"]))],
        ["fleet", "create"] | ["fleet", "scale"] => vec![
            ("name", words(&["flags-test"])),
            ("count", words(&["--count", "2"])),
            ("no_bootstrap", words(&["--no-bootstrap"])),
        ],
        ["fleet", "list"] => vec![],
        ["fleet", "destroy"] => vec![("name", words(&["flags-test"])), ("yes", words(&["--yes"]))],
        other => panic!("no base arguments for `{}`: add them to base_args", other.join(" ")),
    }
}

/// Every subcommand (as its words) with the arguments that take a value,
/// globals included.
fn value_args() -> Vec<(Vec<String>, clap::Arg)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Arg)>) {
        if cmd.has_subcommands() {
            for sub in cmd.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                walk(sub, p, out);
            }
            return;
        }
        for arg in cmd.get_arguments() {
            if arg.get_action().takes_values() {
                out.push((path.clone(), arg.clone()));
            }
        }
    }
    let mut cli = Cli::command();
    cli.build();
    let mut out = Vec::new();
    walk(&cli, Vec::new(), &mut out);
    out
}

/// The subcommand `path` of the built command line.
fn subcommand<'a>(cli: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter().fold(cli, |c, name| c.find_subcommand(name).expect("a subcommand clap listed"))
}

/// One run: its words and the exit codes it may end with.
struct Case {
    what: String,
    args: Vec<String>,
    allowed: &'static [i32],
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Run `case` in a scratch directory of its own (home, state, working
/// directory); the problems found, if any.
fn run(case: &Case, aws_endpoint: &str) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    for d in ["home", "cwd"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let before = tree(&root);
    let (stdout, stderr) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(&case.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root.join("home"))
        .env("IMAGE_PROVISION_STATE_DIR", root.join("state"))
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .current_dir(root.join("cwd"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("running image-provision");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("{}: {p}\n  stderr: {}", case.what, err.trim_end()));
    let Some(status) = status else {
        problem(format!("still running after {RUN_LIMIT:?}: killed"));
        return problems;
    };
    let code = status.code();
    if !code.is_some_and(|c| case.allowed.contains(&c)) {
        problem(format!("exit {code:?}, expected one of {:?}", case.allowed));
    }
    if err.contains("panicked") {
        problem("panicked".into());
    }
    if !err.contains("error:") {
        problem("no error message on stderr".into());
    }
    // Exit 2 changes nothing; exit 1 may leave the log of its attempt.
    let new: Vec<PathBuf> = tree(&root)
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| !(code == Some(1) && (p == Path::new("state") || p.starts_with("state/logs"))))
        .collect();
    if !new.is_empty() {
        problem(format!("created {new:?}"));
    }
    problems
}

#[test]
fn every_flag_refuses_hostile_values_with_a_message_and_creates_nothing() {
    let sshd = Sshd::start("flags");
    let host = format!("root@127.0.0.1:{}", sshd.port);
    let aws_endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut cli = Cli::command();
    cli.build();
    let mut cases = Vec::new();
    // The base arguments alone get as far as the world: the refusals below
    // are the values', not the base's.
    let mut paths: Vec<Vec<String>> = value_args().into_iter().map(|(p, _)| p).collect();
    paths.dedup();
    for path in &paths {
        let args: Vec<String> =
            path.iter().cloned().chain(base_args(path, &host).into_iter().flat_map(|(_, w)| w)).collect();
        cases.push(Case { what: format!("`{}` alone", args.join(" ")), args, allowed: &[1] });
    }
    let controls = cases.len();
    let args = value_args();
    for (path, arg) in &args {
        let cmd = subcommand(&cli, path);
        let conflicts: Vec<String> = cmd.get_arg_conflicts_with(arg).iter().map(|a| a.get_id().to_string()).collect();
        let base: Vec<String> = base_args(path, &host)
            .into_iter()
            .filter(|(id, _)| *id != arg.get_id().as_str() && !conflicts.iter().any(|c| c == id))
            .flat_map(|(_, words)| words)
            .collect();
        let mut values = hostile_values();
        for (what, value, _) in hostile_values() {
            // A URL's path may well hold "../", "-1" or digits.
            let right = matches!(what, "a parent directory" | "negative" | "huge");
            if let Some(inside) = embedded(arg, &value).filter(|_| !value.is_empty()) {
                values.push((what, inside, right));
            }
        }
        for (what, value, can_be_right) in values {
            let mut words: Vec<String> = path.clone();
            words.extend(base.iter().cloned());
            let shown = match arg.get_long() {
                Some(long) => {
                    words.push(format!("--{long}"));
                    words.push(value.clone());
                    format!("--{long}")
                }
                None => {
                    words.push(value.clone());
                    arg.get_id().to_string().to_uppercase()
                }
            };
            let what = if value.starts_with("https://") { format!("{what} in a URL") } else { what.to_string() };
            cases.push(Case {
                what: format!("`{}` {shown} {what}", path.join(" ")),
                args: words,
                allowed: if can_be_right { &[1, 2] } else { &[2] },
            });
        }
    }
    eprintln!("{} arguments, {} runs ({controls} of the base arguments alone)", args.len(), cases.len());
    let started = Instant::now();
    let queue = Mutex::new(cases.iter().collect::<Vec<_>>());
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                while let Some(case) = queue.lock().unwrap().pop() {
                    let found = run(case, &aws_endpoint);
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    eprintln!("all runs in {:.1}s", started.elapsed().as_secs_f64());
    let problems = problems.into_inner().unwrap();
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    drop(sshd);
}

/// Docker Hub's inputs that cannot work, each refused with exit 2 before
/// anything connects or is created, the credential in them never shown: a
/// mirror URL with a user and password, of another scheme, without one,
/// with a query; a dockerhub.env without its token, with an e-mail for the
/// Docker ID, with a key it does not take, with a token of two words, or
/// given empty.
#[test]
fn docker_hub_inputs_that_cannot_work_are_refused_and_their_secrets_never_shown() {
    let sshd = Sshd::start("flags-dockerhub");
    let host = format!("root@127.0.0.1:{}", sshd.port);
    let aws_endpoint = format!("http://127.0.0.1:{}", free_port());
    let files = tempfile::tempdir().unwrap();
    let secret = "dckr_pat_never_shown_7f3a";
    let env_file = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("dockerhub.env={}", path.display())
    };
    let bad_files = [
        env_file("no-token.env", "DOCKERHUB_USERNAME=imagebot\n"),
        env_file("email.env", &format!("DOCKERHUB_USERNAME=bot@example.org\nDOCKERHUB_TOKEN={secret}\n")),
        env_file("extra.env", &format!("DOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN={secret}\nOTHER=1\n")),
        env_file("two-words.env", &format!("DOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN=\"{secret} x\"\n")),
        "dockerhub.env=".to_string(),
    ];
    let mirrors = [
        format!("https://imagebot:{secret}@mirror.example.org"),
        "ftp://mirror.example.org".to_string(),
        "mirror.example.org".to_string(),
        "https://mirror.example.org/?region=eu".to_string(),
    ];
    let base = ["bootstrap", "--host", &host, "--no-llm"].map(str::to_string);
    let mut cases = Vec::new();
    for mirror in &mirrors {
        let args = [&base[..], &["--registry-mirror".to_string(), mirror.clone()]].concat();
        cases.push(Case { what: format!("--registry-mirror {mirror:?}"), args, allowed: &[2] });
    }
    for spec in &bad_files {
        let args = [&base[..], &["--env-file".to_string(), spec.clone()]].concat();
        cases.push(Case { what: format!("--env-file {spec}"), args, allowed: &[2] });
    }
    let mut problems = Vec::new();
    for case in &cases {
        problems.extend(run(case, &aws_endpoint));
        // run() checked the exit and that nothing was created; the secret
        // must not be in what it said either.
        let out = Command::new(BIN)
            .args(&case.args)
            .env("HOME", files.path())
            .env("IMAGE_PROVISION_STATE_DIR", files.path().join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if said.contains(secret) {
            problems.push(format!("{}: showed the secret: {said}", case.what));
        }
        if !said.contains("dockerhub.env") && !said.contains("--registry-mirror") {
            problems.push(format!("{}: the message does not name the input: {said}", case.what));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    assert!(!files.path().join("state").exists(), "a refused run made its state directory");
    drop(sshd);
}
