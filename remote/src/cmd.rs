//! Commands are data: a [`Cmd`] knows its argv, whether it needs root, its
//! environment, which exit codes mean success and which arguments are
//! secret. It renders itself into the one string SSH's `exec` takes, and
//! displays itself with secrets redacted. Nothing here knows about SSH, so
//! tests compare rendered commands with exact strings.

use std::fmt;
use std::time::Duration;

/// What [`fmt::Display`] prints in place of a secret argument or value.
pub const REDACTED: &str = "<redacted>";

/// The remote command line of a command that holds a secret: read the real
/// command from stdin up to a NUL byte and run it. bash reads a pipe one
/// byte at a time for `read`, so the command's own stdin is left intact.
pub const SECRET_READER: &str = r#"IFS= read -r -d "" c && eval "$c""#;

/// One word of the command line, remembering whether it may be shown.
#[derive(Clone, PartialEq, Eq)]
struct Word {
    text: String,
    secret: bool,
}

/// A command to run on a host. Build it with [`Cmd::new`] or [`Cmd::script`]
/// and the builder methods; run it with `Session::exec`.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    argv: Vec<Word>,
    sudo: bool,
    env: Vec<(String, Word)>,
    ok_codes: Vec<u32>,
    stdin: Option<Vec<u8>>,
    /// Set for [`Cmd::script`]: the name shown instead of the script text.
    script: Option<String>,
    /// Do not stream the output into tracing (it may contain secrets).
    quiet: bool,
    /// Shown instead of the command line (for long internal scripts).
    shown_as: Option<String>,
    /// How long the session waits for it (else the session's default).
    time_limit: Option<Duration>,
}

impl Cmd {
    /// A program to run; add arguments with [`Cmd::arg`].
    ///
    /// # Panics
    /// If `program` contains a NUL byte (no argv can carry one).
    pub fn new(program: impl Into<String>) -> Self {
        let program = program.into();
        assert_no_nul(&program);
        Cmd {
            argv: vec![Word { text: program, secret: false }],
            sudo: false,
            env: Vec::new(),
            ok_codes: vec![0],
            stdin: None,
            script: None,
            quiet: false,
            shown_as: None,
            time_limit: None,
        }
    }

    /// A bash script, run as `bash --norc -euo pipefail -s --` with the
    /// script on stdin. Inputs go in through [`Cmd::env`] (or [`Cmd::arg`],
    /// which become `$1`...), never spliced into the script text.
    ///
    /// `--norc`: a bash that sshd starts (SSH_CLIENT set, the first shell
    /// level) reads ~/.bashrc and /etc/bash.bashrc even when not
    /// interactive (Debian's and Ubuntu's build); under `-u` their
    /// `[ -z "$PS1" ]` fails, and each command printed "PS1: unbound
    /// variable" to stderr, which a failure's report shows. The scripts
    /// need nothing from them.
    ///
    /// The script is wrapped in `{ ... }` so that bash parses all of it
    /// before running any of it: bash reads a script from a pipe as it goes,
    /// so a command in the script that reads stdin (apt-get, cat, read)
    /// would otherwise swallow the rest of the script. Inside the braces
    /// stdin is at EOF.
    pub fn script(text: impl AsRef<str>) -> Self {
        let text = text.as_ref();
        let mut body = Vec::with_capacity(text.len() + 8);
        body.extend_from_slice(b"{\n");
        body.extend_from_slice(text.as_bytes());
        body.extend_from_slice(b"\n}\n");
        let mut cmd = Cmd::new("bash").arg("--norc").arg("-euo").arg("pipefail").arg("-s").arg("--");
        cmd.stdin = Some(body);
        cmd.script = Some("script".to_string());
        cmd
    }

    /// [`Cmd::script`] for a long script on a hot path (the facts command,
    /// some 70 kB): the command line reads exactly the script's bytes from
    /// stdin with `read -N`, in blocks, then runs them. bash reads a script
    /// from a pipe one byte at a time, a system call each: tens of
    /// milliseconds for 70 kB. `LC_ALL=C` makes `read` count bytes; the
    /// script runs in the user's locale, wrapped in `{ ... }` as
    /// [`Cmd::script`] wraps it, with stdin at EOF.
    pub fn script_in_blocks(text: impl AsRef<str>) -> Self {
        let text = text.as_ref();
        let body = format!("{{\n{text}\n}}\n");
        let reader = format!(
            "LC_ALL=C IFS= read -r -N {} image_provision_script && eval \"$image_provision_script\"",
            body.len()
        );
        let mut cmd = Cmd::new("bash").arg("--norc").arg("-euo").arg("pipefail").arg("-c").arg(reader);
        cmd.stdin = Some(body.into_bytes());
        cmd.script = Some("script".to_string());
        cmd
    }

    /// Name a script for messages (`<script install-docker.sh>`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.script = Some(name.into());
        self
    }

    /// Append an argument.
    ///
    /// # Panics
    /// If `arg` contains a NUL byte.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        let text = arg.into();
        assert_no_nul(&text);
        self.argv.push(Word { text, secret: false });
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Append an argument that must never be shown: [`fmt::Display`], logs
    /// and errors print `<redacted>` instead, and it never travels on the
    /// remote command line (where sudo's log would keep it): a command with
    /// a secret is sent on stdin (see [`Cmd::render`]). The program itself
    /// still gets it in its argv, which the host's process list shows while
    /// it runs: prefer [`Cmd::secret_env`] for real secrets.
    pub fn secret_arg(mut self, arg: impl Into<String>) -> Self {
        let text = arg.into();
        assert_no_nul(&text);
        self.argv.push(Word { text, secret: true });
        self
    }

    /// Run as root: `sudo -n` when the SSH user is not root.
    pub fn sudo(mut self) -> Self {
        self.sudo = true;
        self
    }

    /// Set or clear the sudo flag.
    pub fn with_sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// Set an environment variable for the command (rendered as
    /// `env K=V ...` after `sudo`, so sudo's env_reset does not drop it).
    ///
    /// # Panics
    /// If `key` is not a shell identifier (`[A-Za-z_][A-Za-z0-9_]*`), or
    /// either contains a NUL byte: both are bugs in the caller.
    pub fn env(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push_env(key.into(), value.into(), false)
    }

    /// Like [`Cmd::env`], but the value is shown as `<redacted>`.
    pub fn secret_env(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push_env(key.into(), value.into(), true)
    }

    fn push_env(mut self, key: String, value: String, secret: bool) -> Self {
        assert!(is_identifier(&key), "environment variable name {key:?} is not an identifier");
        assert_no_nul(&value);
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, Word { text: value, secret }));
        self
    }

    /// Exit codes that count as success (default `[0]`). Useful for
    /// yes/no questions: `Cmd::new("test").args(["-e", path]).ok_codes(&[0, 1])`.
    pub fn ok_codes(mut self, codes: &[u32]) -> Self {
        self.ok_codes = codes.to_vec();
        self
    }

    /// Bytes fed to the command's stdin (never logged, never on the command
    /// line). EOF follows them.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Keep the output out of the logs (it is still returned). For commands
    /// whose output may hold secrets.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// What messages show instead of the command line, for commands whose
    /// text says less than a description would. Must not hold secrets.
    pub(crate) fn shown_as(mut self, text: impl Into<String>) -> Self {
        self.shown_as = Some(text.into());
        self
    }

    pub fn is_sudo(&self) -> bool {
        self.sudo
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Wait at most `limit` for it to end: past it the session asks the
    /// host to stop it and reports [`crate::Error::TimedOut`]. Without one,
    /// the session's [`crate::ConnectOptions::command_time_limit`] holds.
    /// A command with a limit of its own inside (a script's TIMEOUT) gets a
    /// longer one here, so its own message comes first.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// What it is, in a word or two: a script's name, else the program and
    /// its first argument (a secret one never).
    pub fn label(&self) -> String {
        if let Some(name) = &self.script {
            return name.clone();
        }
        let words: Vec<&str> = self.argv.iter().take(2).map(|w| if w.secret { REDACTED } else { &w.text }).collect();
        words.join(" ")
    }

    /// Its own time limit, if it has one.
    pub fn own_time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    pub fn accepted_codes(&self) -> &[u32] {
        &self.ok_codes
    }

    pub fn stdin_bytes(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    /// The program and its arguments, secrets included.
    pub fn argv(&self) -> Vec<&str> {
        self.argv.iter().map(|w| w.text.as_str()).collect()
    }

    /// True when the exit code counts as success.
    pub fn accepts(&self, code: u32) -> bool {
        self.ok_codes.contains(&code)
    }

    /// The string handed to the remote shell. `sudo -n` comes first (only
    /// if the user is not root), then `env K=V` so the variables survive
    /// sudo, then the quoted argv.
    ///
    /// A command holding a secret (argument or environment value) never has
    /// it on this line: the line is then a fixed reader,
    /// [`SECRET_READER`], and the command itself (`export`s and an `exec`)
    /// goes first on stdin, ended by a NUL byte, before the command's own
    /// stdin; see [`Cmd::stdin_to_send`].
    pub fn render(&self, user_is_root: bool) -> String {
        if !self.has_secret() {
            return self.render_with(user_is_root, false);
        }
        let mut out = Vec::new();
        if self.sudo && !user_is_root {
            out.push("sudo -n".to_string());
        }
        out.push(format!("bash -c {}", quote(SECRET_READER)));
        out.join(" ")
    }

    /// Whether any argument or environment value is secret.
    pub fn has_secret(&self) -> bool {
        self.argv.iter().any(|w| w.secret) || self.env.iter().any(|(_, v)| v.secret)
    }

    /// What to write to the command's stdin: its own stdin, preceded, for a
    /// command holding a secret, by the command itself (see [`Cmd::render`]).
    pub fn stdin_to_send(&self) -> Option<Vec<u8>> {
        if !self.has_secret() {
            return self.stdin.clone();
        }
        let mut text = String::new();
        for (k, v) in &self.env {
            text.push_str(&format!("export {k}={}\n", quote(&v.text)));
        }
        let argv: Vec<String> = self.argv.iter().map(|w| quote(&w.text)).collect();
        text.push_str(&format!("exec {}\n", argv.join(" ")));
        let mut bytes = text.into_bytes();
        bytes.push(0);
        if let Some(own) = &self.stdin {
            bytes.extend_from_slice(own);
        }
        Some(bytes)
    }

    /// The command line with secrets replaced by `<redacted>`, for logs and
    /// errors. Scripts show as `<script NAME>` after their argv.
    pub fn redacted(&self, user_is_root: bool) -> String {
        if let Some(shown) = &self.shown_as {
            return shown.clone();
        }
        let mut s = self.render_with(user_is_root, true);
        if let Some(name) = &self.script {
            s.push_str(" <script ");
            s.push_str(name);
            s.push('>');
        }
        s
    }

    fn render_with(&self, user_is_root: bool, redact: bool) -> String {
        let mut out: Vec<String> = Vec::new();
        if self.sudo && !user_is_root {
            // -n: never prompt. A prompt would hang with no terminal; failing
            // lets us say "configure NOPASSWD" instead.
            out.push("sudo".into());
            out.push("-n".into());
        }
        if !self.env.is_empty() {
            out.push("env".into());
            for (k, v) in &self.env {
                if redact && v.secret {
                    out.push(format!("{k}={REDACTED}"));
                } else {
                    out.push(format!("{k}={}", quote(&v.text)));
                }
            }
        }
        for w in &self.argv {
            if redact && w.secret {
                out.push(REDACTED.into());
            } else {
                out.push(quote(&w.text));
            }
        }
        out.join(" ")
    }
}

/// Shows the command as run by a non-root user (with `sudo -n` if it
/// asks for root) and with secrets redacted. Safe for logs and errors.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted(false))
    }
}

/// Debug is redacted too, so `{:?}` in a log line cannot leak a secret.
impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("command", &self.redacted(false))
            .field("ok_codes", &self.ok_codes)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .finish()
    }
}

fn quote(s: &str) -> String {
    // NUL is rejected by the builders, so quoting cannot fail.
    shlex::try_quote(s).expect("NUL bytes are rejected when the command is built").into_owned()
}

fn assert_no_nul(s: &str) {
    assert!(!s.contains('\0'), "a command argument cannot contain a NUL byte");
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_command() {
        let c = Cmd::new("apt-get").arg("update");
        assert_eq!(c.render(true), "apt-get update");
        assert_eq!(c.render(false), "apt-get update");
        assert_eq!(c.to_string(), "apt-get update");
    }

    #[test]
    fn sudo_only_for_non_root() {
        let c = Cmd::new("apt-get").arg("update").sudo().env("DEBIAN_FRONTEND", "noninteractive");
        assert_eq!(c.render(true), "env DEBIAN_FRONTEND=noninteractive apt-get update");
        assert_eq!(c.render(false), "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update");
    }

    #[test]
    fn quoting_spaces_quotes_dollars_newlines() {
        let c = Cmd::new("echo")
            .arg("a b")
            .arg("it's")
            .arg("$HOME")
            .arg("line1\nline2")
            .arg("")
            .arg("semi;colon")
            .arg("`x`")
            .arg("\"dq\"");
        let r = c.render(true);
        assert_eq!(r, "echo 'a b' \"it's\" '$HOME' 'line1\nline2' '' 'semi;colon' '`x`' '\"dq\"'");
        // Round trip through a POSIX-style splitter gives the argv back.
        let back = shlex::split(&r).unwrap();
        assert_eq!(back, ["echo", "a b", "it's", "$HOME", "line1\nline2", "", "semi;colon", "`x`", "\"dq\""]);
    }

    #[test]
    fn env_values_are_quoted() {
        let c = Cmd::new("true").env("A", "x y").env("B", "$(rm -rf /)");
        assert_eq!(c.render(true), "env A='x y' B='$(rm -rf /)' true");
        // Setting a key again replaces it.
        let c = c.env("A", "z");
        assert_eq!(c.render(true), "env B='$(rm -rf /)' A=z true");
    }

    #[test]
    fn secrets_are_redacted_in_display_and_debug() {
        let c =
            Cmd::new("docker").arg("login").arg("--password").secret_arg("hunter2 x").secret_env("TOKEN", "abc").sudo();
        // Secrets never reach the command line; the command goes on stdin.
        assert_eq!(c.render(false), format!("sudo -n bash -c {}", quote(SECRET_READER)));
        assert!(!c.render(false).contains("hunter2") && !c.render(true).contains("abc"));
        assert_eq!(
            c.stdin_to_send().unwrap(),
            b"export TOKEN=abc\nexec docker login --password 'hunter2 x'\n\0".to_vec()
        );
        let with_input = c.clone().stdin(b"data".to_vec()).stdin_to_send().unwrap();
        assert!(with_input.ends_with(b"\0data"));
        assert_eq!(c.to_string(), "sudo -n env TOKEN=<redacted> docker login --password <redacted>");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("abc"), "{dbg}");
    }

    #[test]
    fn script_goes_on_stdin() {
        let c = Cmd::script("echo \"$GREETING\"\n").named("hello.sh").env("GREETING", "hi there").sudo();
        assert_eq!(c.render(false), "sudo -n env GREETING='hi there' bash --norc -euo pipefail -s --");
        assert_eq!(c.stdin_bytes().unwrap(), b"{\necho \"$GREETING\"\n\n}\n".as_slice());
        assert_eq!(c.to_string(), "sudo -n env GREETING='hi there' bash --norc -euo pipefail -s -- <script hello.sh>");
    }

    /// A long script read in blocks: its exact bytes (multi-byte ones
    /// counted as bytes) and no more; it runs as bash -s would.
    #[test]
    fn script_in_blocks_reads_its_exact_bytes() {
        let c = Cmd::script_in_blocks("echo \"$GREETING → $(cat)\"\n").env("GREETING", "hi").named("facts.sh");
        let body = b"{\necho \"$GREETING \xe2\x86\x92 $(cat)\"\n\n}\n";
        assert_eq!(c.stdin_bytes().unwrap(), body.as_slice());
        let line = c.render(true);
        assert!(
            line.ends_with(&format!(
                "read -r -N {} image_provision_script && eval \"$image_provision_script\"'",
                body.len()
            )),
            "{line}"
        );
        assert!(c.to_string().ends_with("<script facts.sh>"), "{c}");
        let mut input = body.to_vec();
        input.extend_from_slice(b"the rest");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi → the rest\n");
    }

    #[test]
    fn ok_codes() {
        let c = Cmd::new("apt-get").ok_codes(&[0, 100]);
        assert!(c.accepts(100) && c.accepts(0) && !c.accepts(1));
        assert!(Cmd::new("x").accepts(0));
    }

    #[test]
    #[should_panic(expected = "not an identifier")]
    fn bad_env_key_panics() {
        let _ = Cmd::new("x").env("A B", "1");
    }
}
