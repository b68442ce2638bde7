//! A real EC2 API for tests: moto's EC2 server on a free loopback port, with a
//! fixture of Canonical images (tests/fixtures/amis.json), optionally behind
//! `fault_proxy.py` (in this crate's directory); a real OpenSSH sshd on
//! loopback to stand where the instance's port 22 would be; and the built
//! binary, pointed at both.
//!
//! Behind this crate's `ec2` feature (it pulls in aws-sdk-ec2 and aws-sdk-route53).
//!
//! moto comes from the virtualenv the README's test command makes
//! (`$IMAGE_PROVISION_MOTO_VENV`, default /var/cache/image-provision-test/moto-venv).
//! A missing prerequisite panics: it is a failure, never a skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::net::{free_port, wait_for_port};
use crate::sshd::{SSHD, keygen, make_privsep_dir};

pub const REGION: &str = "us-east-1";
/// Image ids in tests/fixtures/amis.json.
pub const JAMMY_NEWEST: &str = "ami-0a1b2c3d4e5f60002";
pub const JAMMY_OLDER: &str = "ami-0a1b2c3d4e5f60001";
pub const NOBLE_NEWEST: &str = "ami-0a1b2c3d4e5f60003";
pub const EKS_DECOY: &str = "ami-0a1b2c3d4e5f60004";
pub const IMPOSTOR: &str = "ami-0a1b2c3d4e5f60005";
/// The newest Deep Learning Base AMI (Ubuntu 22.04) of AWS's account; a
/// newer one of the same name under another owner is an impostor.
pub const DLAMI_NEWEST: &str = "ami-0a1b2c3d4e5f60007";
pub const DLAMI_IMPOSTOR: &str = "ami-0a1b2c3d4e5f60008";

fn venv() -> PathBuf {
    std::env::var_os("IMAGE_PROVISION_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/image-provision-test/moto-venv"))
}

/// How long moto, the fault proxy and sshd get to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A client of SDK crate `$sdk` on moto at `$port`, with the test
/// credentials and region: each service's crate has its own config types,
/// hence a macro.
macro_rules! on_moto {
    ($sdk:ident, $port:expr) => {{
        let creds = $sdk::config::Credentials::new("testing", "testing", None, None, "tests");
        let conf = $sdk::config::Builder::new()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(format!("http://127.0.0.1:{}", $port))
            .build();
        $sdk::Client::from_conf(conf)
    }};
}

pub struct Ec2Env {
    /// The built image-provision, run by [`Ec2Env::cmd`].
    pub bin: PathBuf,
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
    /// moto, sshd, and `bin` (the built image-provision) to run against them.
    pub fn start(bin: impl AsRef<Path>) -> Ec2Env {
        Self::start_with_faults(bin, None)
    }

    /// Like [`Ec2Env::start`], with moto behind the fault proxy, with these rules.
    pub fn start_with_faults(bin: impl AsRef<Path>, rules: Option<serde_json::Value>) -> Ec2Env {
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
            .env("MOTO_AMIS_PATH", crate::repo_root().join("tests/fixtures/amis.json"))
            // ACM issues a DNS-validated certificate this long after the
            // request (moto does not look the record up; the tests do).
            .env("MOTO_ACM_VALIDATION_WAIT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        wait_for_port(moto_port, &mut moto, "moto_server", LISTEN_TIMEOUT);
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
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fault_proxy.py"))
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
                wait_for_port(port, &mut child, "fault_proxy.py", LISTEN_TIMEOUT);
                endpoint = format!("http://127.0.0.1:{port}");
                (Some(Killed(child)), Some(log))
            }
            None => (None, None),
        };

        let (sshd, ssh_addr) = start_sshd(dir.path());
        Ec2Env {
            bin: bin.as_ref().to_owned(),
            dir,
            endpoint,
            moto_port,
            ssh_addr,
            proxy_log,
            _moto: moto,
            _proxy: proxy,
            _sshd: sshd,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Server NAME's own directory in the state directory (keys, known_hosts).
    pub fn server_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("servers").join(name)
    }

    /// The binary with AWS pointed at this environment and nothing read from
    /// the real user's configuration.
    pub fn cmd(&self) -> Command {
        self.command(&self.bin)
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
        on_moto!(aws_sdk_ec2, self.moto_port)
    }

    /// A Route 53 client on moto itself, like [`Ec2Env::client`]: moto's
    /// server answers every service at the one endpoint.
    pub fn route53(&self) -> aws_sdk_route53::Client {
        on_moto!(aws_sdk_route53, self.moto_port)
    }

    /// An Elastic Load Balancing v2 client on moto itself, like [`Ec2Env::client`].
    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        on_moto!(aws_sdk_elasticloadbalancingv2, self.moto_port)
    }

    /// An ACM client on moto itself, like [`Ec2Env::client`].
    pub fn acm(&self) -> aws_sdk_acm::Client {
        on_moto!(aws_sdk_acm, self.moto_port)
    }

    /// Actions seen by the fault proxy, in order, with the injected fault if any.
    pub fn proxy_calls(&self) -> Vec<(String, Option<String>)> {
        self.proxy_log_entries()
            .iter()
            .map(|v| (v["action"].as_str().unwrap().to_owned(), v["injected"].as_str().map(str::to_owned)))
            .collect()
    }

    /// The form parameters of each `action` request the fault proxy saw, in
    /// order (UserData left out): what was asked, where moto does not keep it.
    pub fn proxy_params(&self, action: &str) -> Vec<serde_json::Value> {
        self.proxy_log_entries().into_iter().filter(|v| v["action"] == action).map(|v| v["params"].clone()).collect()
    }

    fn proxy_log_entries(&self) -> Vec<serde_json::Value> {
        let log = self.proxy_log.as_ref().expect("started without the fault proxy");
        std::fs::read_to_string(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// OpenSSH's sshd on a free loopback port with a fresh host key; the
/// instance's port 22 as far as `ec2 create`'s wait is concerned. Only a
/// banner and a host key: nobody logs in, so unlike [`crate::sshd::Sshd`]
/// no client key and no configuration file.
fn start_sshd(dir: &Path) -> (Killed, String) {
    assert!(
        Path::new(SSHD).exists(),
        "OpenSSH's sshd is missing: run the test command in README.md (installs openssh-server)"
    );
    make_privsep_dir();
    let key = dir.join("ssh_host_ed25519_key");
    keygen(&key, "ed25519", "");
    let port = free_port();
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f", "/dev/null", "-o", "ListenAddress=127.0.0.1", "-o", "PidFile=none", "-h"])
        .arg(&key)
        .args(["-p", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sshd");
    wait_for_port(port, &mut child, "sshd", LISTEN_TIMEOUT);
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
