//! What a command left behind: how it ended and what it printed. Plain data
//! with no knowledge of connections or errors, so every other module can use
//! it (errors carry an `ExitStatus`) without depending on the SSH side.

use std::borrow::Cow;
use std::fmt;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by this signal (`TERM`, `KILL`, ...).
    Signal(String),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn code(&self) -> Option<u32> {
        match self.status {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }

    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Sizes only: output may hold secrets.
impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout_len", &self.stdout.len())
            .field("stderr_len", &self.stderr.len())
            .finish()
    }
}

/// The end of a command's output for a message: its last `lines` lines,
/// taken from its last `max_bytes` bytes, joined by `\n` without a trailing
/// one. Lines alone would not bound it (one line can be megabytes), so the
/// bytes are cut first; the first line kept may then start mid-line. Invalid
/// UTF-8 (a character cut in two included) becomes U+FFFD.
///
/// Errors quote `tail(stderr, 20, 4096)` for a failed command.
pub fn tail(bytes: &[u8], lines: usize, max_bytes: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max_bytes)..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(tail(b"a\nb\nc\n", 2, 100), "b\nc");
        assert_eq!(tail(b"", 2, 100), "");
        // Bytes are cut before lines are counted: the first line kept is
        // the end of a longer one.
        assert_eq!(tail(b"aaaa\nbb\ncc", 5, 4), "b\ncc");
    }
}
