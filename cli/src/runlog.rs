//! The log file of a run that acts on a host (`bootstrap`, `ec2 create`'s
//! host steps, `update`): every command's whole output, kept in the state
//! directory's logs/ so that a failure can be read in full after the summary
//! showed only its tail.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use image_provision_remote::{Output, Target};

use crate::state;

pub(crate) struct RunLog {
    pub path: PathBuf,
    file: File,
}

impl RunLog {
    /// `logs/COMMAND-USER@HOST_PORT-TIME.log`, opened 0600 from the first
    /// byte: it holds every command's whole output, which can name the
    /// host's files and settings. Secrets never reach it: commands are logged
    /// redacted, and env files go over stdin, which is not logged.
    pub(crate) fn create(command: &str, target: &Target, dry_run: bool) -> anyhow::Result<RunLog> {
        let logs = state::base_dir()?.join("logs");
        state::ensure_private_dir(&logs)?;
        let path = logs.join(format!(
            "{command}-{}-{}.log",
            sanitize(&target.to_string()),
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)
        }
        .with_context(|| format!("creating {}", path.display()))?;
        let mut log = RunLog { path, file };
        log.line(&format!("image-provision {command} of {target}{}", if dry_run { " (dry run)" } else { "" }));
        Ok(log)
    }

    /// A line of its own. Writing the log never stops a run: a full disk
    /// loses the record, not the host's state.
    pub(crate) fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }

    /// A finished command (`shown` redacted) with its whole output.
    pub(crate) fn command(&mut self, label: &str, shown: &str, out: &Output, took: Duration) {
        let _ = writeln!(self.file, "--- [{label}] $ {shown}\n--- {} after {:.1}s", out.status, took.as_secs_f64());
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if !bytes.is_empty() {
                let _ = writeln!(self.file, "--- {name}:");
                let _ = self.file.write_all(bytes);
                if !bytes.ends_with(b"\n") {
                    let _ = writeln!(self.file);
                }
            }
        }
    }

    pub(crate) fn flush(&mut self) {
        let _ = self.file.flush();
    }
}

/// A file-name-safe form of `user@host:port`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' }).collect()
}
