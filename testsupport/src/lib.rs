//! The test harness of image-provision, shared by the root package's tests
//! (tests/it) and benches (benches/*.rs) and by the crates' unit tests
//! (remote's sshd tests). Dev-only: it depends on none of the project's
//! crates, so any of them can dev-depend on it.
//!
//! - [`testhost`]: a real Debian 12 root under OpenSSH's sshd, one fresh host
//!   per [`testhost::TestHost::start`] (scripts in tests/testhost).
//! - [`sshd`]: a throwaway OpenSSH sshd on 127.0.0.1 logging in as this
//!   (root) user, and the key and process helpers around it.
//! - [`cli`]: the built image-provision run against a test host the way the
//!   host tests run it.
//! - [`ec2env`] (feature `ec2`): moto's EC2 server, optionally behind
//!   fault_proxy.py, and a banner-only sshd where an instance's port 22 would be.
//! - [`net`]: free loopback ports and waiting for a listener.
//! - [`report`]: the benches' header, baseline and table of medians.
//! - [`vm`]: a real virtual machine (qemu) booting the tests' stand-in for
//!   Ubuntu's EC2 image with cloud-init, for the end-to-end test.
//!
//! The image-provision binary is the root package's: only its tests and
//! benches can name it (Cargo's `CARGO_BIN_EXE_image-provision`), so the
//! helpers that run it take its path as an argument.
//!
//! A missing prerequisite (root, OpenSSH, util-linux, debootstrap, moto's
//! virtualenv) panics with what to install: a failure, never a skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod cli;
#[cfg(feature = "ec2")]
pub mod ec2env;
pub mod net;
pub mod report;
pub mod sshd;
pub mod testhost;
pub mod vm;

/// The workspace root (the root package's directory): tests/testhost,
/// tests/fixtures and this crate live under it.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testsupport/ has a parent directory")
}

/// Whether this process runs as root (effective uid 0, from /proc/self/status).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    uid == "0"
}

/// SIGKILL a process, or a process group given as "-PGID" (bash's builtin
/// kill: std has no kill(2) for other pids).
pub fn kill_pid(pid: &str) {
    let _ = Command::new("bash").args(["-c", "kill -KILL \"$1\"", "bash", pid]).stderr(Stdio::null()).status();
}

/// `tool` on PATH or in the usual system directories (sbin included, which a
/// non-login PATH may lack).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}
