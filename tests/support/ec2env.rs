//! A real EC2 API for tests: moto's EC2 server on a free loopback port, with a
//! fixture of Canonical images, optionally behind `fault_proxy.py`; a real
//! OpenSSH sshd on loopback to stand where the instance's port 22 would be;
//! and the built binary, pointed at both.
//!
//! Include with `#[path = "support/ec2env.rs"] mod ec2env;`.
//!
//! moto comes from the virtualenv the README's test command makes
//! (`$IMAGE_PROVISION_MOTO_VENV`, default /var/cache/image-provision-test/moto-venv).
//! A missing prerequisite panics: it is a failure, never a skip.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
/// Image ids in tests/fixtures/amis.json.
pub const JAMMY_NEWEST: &str = "ami-0a1b2c3d4e5f60002";
pub const JAMMY_OLDER: &str = "ami-0a1b2c3d4e5f60001";
pub const NOBLE_NEWEST: &str = "ami-0a1b2c3d4e5f60003";
pub const EKS_DECOY: &str = "ami-0a1b2c3d4e5f60004";
pub const IMPOSTOR: &str = "ami-0a1b2c3d4e5f60005";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("IMAGE_PROVISION_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/image-provision-test/moto-venv"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 30 s");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fault rule for `fault_proxy.py` (see its header).
pub fn fault(action: &str, code: &str, times: Option<u32>) -> serde_json::Value {
    let mut rule = serde_json::json!({"action": action, "code": code, "message": format!("injected {code}")});
    if let Some(t) = times {
        rule["times"] = t.into();
    }
    rule
}

pub struct Ec2Env {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub moto_port: u16,
    pub ssh_addr: String,
    proxy_log: Option<PathBuf>,
    _moto: Killed,
    _proxy: Option<Killed>,
    _sshd: Killed,
}

impl Ec2Env {
    pub fn start() -> Ec2Env {
        Self::start_with_faults(None)
    }

    /// moto behind the fault proxy, with these rules.
    pub fn start_with_faults(rules: Option<serde_json::Value>) -> Ec2Env {
        let dir = tempfile::tempdir().unwrap();
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "moto's virtualenv is missing at {}: run the test command in README.md, which installs it",
            venv().display()
        );
        let moto_port = free_port();
        let mut moto = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .env("MOTO_AMIS_PATH", repo().join("tests/fixtures/amis.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        wait_for_port(moto_port, &mut moto, "moto_server");
        let moto = Killed(moto);
        let mut endpoint = format!("http://127.0.0.1:{moto_port}");

        let (proxy, proxy_log) = match rules {
            Some(rules) => {
                let rules_path = dir.path().join("rules.json");
                std::fs::write(&rules_path, rules.to_string()).unwrap();
                let log = dir.path().join("proxy.log");
                std::fs::write(&log, "").unwrap();
                let port = free_port();
                let mut child = Command::new(&python)
                    .arg(repo().join("tests/support/fault_proxy.py"))
                    .arg(port.to_string())
                    .arg(&endpoint)
                    .arg(&rules_path)
                    .arg(&log)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("starting fault_proxy.py");
                let mut line = String::new();
                BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "ready", "fault proxy did not start");
                wait_for_port(port, &mut child, "fault_proxy.py");
                endpoint = format!("http://127.0.0.1:{port}");
                (Some(Killed(child)), Some(log))
            }
            None => (None, None),
        };

        let (sshd, ssh_addr) = start_sshd(dir.path());
        Ec2Env { dir, endpoint, moto_port, ssh_addr, proxy_log, _moto: moto, _proxy: proxy, _sshd: sshd }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The binary with AWS pointed at this environment and nothing read from
    /// the real user's configuration.
    pub fn cmd(&self) -> Command {
        self.command(env!("CARGO_BIN_EXE_image-provision"))
    }

    /// Any program, in the same environment as [`Ec2Env::cmd`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Empty AWS files: nothing from this machine's real configuration.
        std::fs::write(home.join("aws-config"), "").unwrap();
        std::fs::write(home.join("aws-credentials"), "").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", home.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
            .env("IMAGE_PROVISION_STATE_DIR", self.state_dir())
            .env("IMAGE_PROVISION_TEST_SSH_ADDR", &self.ssh_addr)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        eprintln!(
            "$ image-provision {}\n-- exit {:?}\n-- stdout\n{}-- stderr\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// An SDK client on moto itself (never through the proxy): reads back
    /// what the binary did, independently of our own code.
    pub fn client(&self) -> aws_sdk_ec2::Client {
        let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "tests");
        let conf = aws_sdk_ec2::config::Builder::new()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(format!("http://127.0.0.1:{}", self.moto_port))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    /// Actions seen by the fault proxy, in order, with the injected fault if any.
    pub fn proxy_calls(&self) -> Vec<(String, Option<String>)> {
        let log = self.proxy_log.as_ref().expect("started without the fault proxy");
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["action"].as_str().unwrap().to_owned(), v["injected"].as_str().map(str::to_owned))
            })
            .collect()
    }
}

/// OpenSSH's sshd on a free loopback port with a fresh host key; the
/// instance's port 22 as far as `ec2 create`'s wait is concerned.
fn start_sshd(dir: &Path) -> (Killed, String) {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(sshd.exists(), "OpenSSH's sshd is missing: run the test command in README.md (installs openssh-server)");
    std::fs::create_dir_all("/run/sshd").unwrap();
    let key = dir.join("ssh_host_ed25519_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("running ssh-keygen");
    assert!(status.success());
    let port = free_port();
    let mut child = Command::new(sshd)
        .args(["-D", "-e", "-f", "/dev/null", "-o", "ListenAddress=127.0.0.1", "-o", "PidFile=none", "-h"])
        .arg(&key)
        .args(["-p", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sshd");
    wait_for_port(port, &mut child, "sshd");
    (Killed(child), format!("127.0.0.1:{port}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
