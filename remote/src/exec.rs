//! Running commands: a channel per command, stdin fed while stdout and
//! stderr are drained (and streamed into `tracing` line by line), and the
//! exit status judged against what the command accepts.

use std::time::Duration;

use russh::ChannelMsg;
use tracing::debug;

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::output::{ExitStatus, Output, tail};
use crate::session::Session;

impl Session {
    /// Runs `cmd`; an exit code it does not accept is
    /// [`Error::CommandFailed`] (or [`Error::SudoNeedsPassword`] when that is
    /// why).
    pub async fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run(cmd).await?;
        self.check(cmd, out)
    }

    /// Runs `cmd` and returns how it ended, whatever the exit code. Still an
    /// error if sudo wanted a password or the connection was lost.
    pub async fn exec_unchecked(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run(cmd).await?;
        if let Some(e) = self.sudo_error(cmd, &out) {
            return Err(e);
        }
        Ok(out)
    }

    /// Judges how a command ended: sudo refusing comes first (its exit code
    /// 1 says nothing about the command), then the exit code against what
    /// `cmd` accepts. A failure quotes the end of stderr unless `cmd` is
    /// quiet.
    pub(crate) fn check(&self, cmd: &Cmd, out: Output) -> Result<Output> {
        if let Some(e) = self.sudo_error(cmd, &out) {
            return Err(e);
        }
        match out.status {
            ExitStatus::Code(c) if cmd.accepts(c) => Ok(out),
            _ => Err(Error::CommandFailed {
                host: self.host(),
                command: cmd.redacted(self.user_is_root()),
                status: out.status.clone(),
                stderr_tail: if cmd.is_quiet() { String::new() } else { tail(&out.stderr, 20, 4096) },
            }),
        }
    }

    /// `sudo -n` says "sudo: a password is required" and exits 1 when it
    /// would have to prompt.
    pub(crate) fn sudo_error(&self, cmd: &Cmd, out: &Output) -> Option<Error> {
        if !cmd.is_sudo() || self.user_is_root() || out.status != ExitStatus::Code(1) {
            return None;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let sudo_says = |s: &str| stderr.lines().any(|l| l.starts_with("sudo:") && l.contains(s));
        let user = self.opts.target.user.clone();
        let host = self.opts.target.host.clone();
        if sudo_says("password is required") || sudo_says("a terminal is required") {
            Some(Error::SudoNeedsPassword { user, host })
        } else if sudo_says("not in the sudoers file")
            || sudo_says("is not allowed to")
            || sudo_says("may not run sudo")
        {
            Some(Error::SudoNotPermitted { user, host })
        } else {
            None
        }
    }

    /// Opens a channel, runs the command and drains the channel until it
    /// closes. OpenSSH sends EOF before the exit status and output may follow
    /// the status, so neither ends the loop; only CLOSE (or the connection
    /// going away) does.
    pub(crate) async fn run(&self, cmd: &Cmd) -> Result<Output> {
        let _permit = self.channels.acquire().await.expect("the semaphore is never closed");
        let shown = cmd.redacted(self.user_is_root());
        let host = self.host();
        let lost = || Error::ConnectionLost { host: host.clone(), command: shown.clone() };
        debug!(target: "remote", host = %host, command = %shown, "exec");

        // sshd refuses a session beyond MaxSessions, and it frees a slot only
        // some time after the channel closed on our side: a refusal while we
        // are at our own limit is "wait a moment", not a failure.
        let mut refusals = 0u32;
        let channel = loop {
            match self.handle.channel_open_session().await {
                Ok(c) => break c,
                Err(russh::Error::Disconnect | russh::Error::SendError) => return Err(lost()),
                Err(_) if self.handle.is_closed() => return Err(lost()),
                Err(russh::Error::ChannelOpenFailure(reason)) if refusals < 10 => {
                    refusals += 1;
                    let pause = Duration::from_millis(20 << refusals.min(6));
                    debug!(target: "remote", host = %host, "sshd refused a channel ({reason:?}); retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(source) => {
                    return Err(Error::Ssh { host, doing: "opening a channel", source });
                }
            }
        };
        if let Err(source) = channel.exec(true, cmd.render(self.user_is_root())).await {
            return Err(if self.handle.is_closed() {
                lost()
            } else {
                Error::Ssh { host, doing: "starting a command", source }
            });
        }
        let (mut rx, tx) = channel.split();

        // Feed stdin while reading: a command that prints a lot before
        // reading all its input would otherwise deadlock on the window. The
        // writer is dropped when the channel closes, since a command that
        // exits without reading leaves it waiting for window space forever.
        let stdin = cmd.stdin_to_send();
        let tx = &tx;
        let writer = async move {
            if let Some(bytes) = stdin {
                tx.data_bytes(bytes).await?;
            }
            // EOF even with no stdin, so a command that reads it (a prompt)
            // gets end-of-file instead of waiting forever.
            tx.eof().await?;
            Ok::<_, russh::Error>(())
        };
        tokio::pin!(writer);
        let mut writer_done = false;
        let limit = cmd.own_time_limit().unwrap_or(self.opts.command_time_limit);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);

        let quiet = cmd.is_quiet();
        let mut stdout = Stream::new("stdout", quiet);
        let mut stderr = Stream::new("stderr", quiet);
        let mut status = None;
        let mut closed = false;
        loop {
            tokio::select! {
                r = &mut writer, if !writer_done => {
                    writer_done = true;
                    if let Err(e) = r {
                        // The reader sees why (close or lost connection).
                        debug!(target: "remote", host = %host, "stdin not fully sent: {e}");
                    }
                }
                () = &mut deadline => {
                    // sshd passes the signal to the session's process (sudo
                    // relays it to the command) for a non-root login (root's
                    // has no privilege separation, which it needs); closing
                    // the channel ends the rest once it next writes.
                    let _ = tx.signal(russh::Sig::TERM).await;
                    let _ = tx.close().await;
                    return Err(Error::TimedOut { host, command: shown, limit });
                }
                msg = rx.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => stdout.feed(&data, &host),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.feed(&data, &host),
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(ExitStatus::Code(exit_status));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        status = Some(ExitStatus::Signal(signal_name_of(&signal_name)));
                    }
                    Some(ChannelMsg::Failure) => {
                        return Err(Error::Ssh {
                            host,
                            doing: "starting a command (the server refused the exec request)",
                            source: russh::Error::RequestDenied,
                        });
                    }
                    Some(ChannelMsg::Close) => {
                        closed = true;
                        break;
                    }
                    Some(_) => {}
                    // The session dropped the channel without a CLOSE: the
                    // connection is gone.
                    None => break,
                }
            }
        }
        stdout.finish(&host);
        stderr.finish(&host);
        let status = match status {
            Some(s) => s,
            None if !closed || self.handle.is_closed() => return Err(lost()),
            None => {
                return Err(Error::NoExitStatus { host, command: shown });
            }
        };
        debug!(target: "remote", host = %host, command = %shown, %status, "done");
        Ok(Output { status, stdout: stdout.buf, stderr: stderr.buf })
    }
}

/// The signal as OpenSSH names it (`TERM`, `KILL`): russh's own variants
/// print as those names, and any other arrives as sent.
fn signal_name_of(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// One output stream: keeps every byte and logs complete lines as they
/// arrive. Only new bytes are scanned, so large outputs cost linear time.
struct Stream {
    name: &'static str,
    buf: Vec<u8>,
    line_start: usize,
    quiet: bool,
}

/// Longest line logged as is; longer ones are cut (the bytes are all kept).
const MAX_LOGGED_LINE: usize = 4096;

impl Stream {
    fn new(name: &'static str, quiet: bool) -> Self {
        Stream { name, buf: Vec::new(), line_start: 0, quiet }
    }

    fn feed(&mut self, data: &[u8], host: &str) {
        let scan_from = self.buf.len();
        self.buf.extend_from_slice(data);
        if self.quiet || !tracing::enabled!(target: "remote", tracing::Level::DEBUG) {
            self.line_start = self.buf.len();
            return;
        }
        let mut i = scan_from;
        while let Some(off) = self.buf[i..].iter().position(|&b| b == b'\n') {
            let end = i + off;
            self.emit(self.line_start, end, host);
            self.line_start = end + 1;
            i = end + 1;
        }
        // A very long line without a newline is logged in pieces.
        if self.buf.len() - self.line_start > MAX_LOGGED_LINE * 16 {
            self.emit(self.line_start, self.buf.len(), host);
            self.line_start = self.buf.len();
        }
    }

    fn finish(&mut self, host: &str) {
        if self.line_start < self.buf.len() && !self.quiet {
            self.emit(self.line_start, self.buf.len(), host);
        }
        self.line_start = self.buf.len();
    }

    fn emit(&self, start: usize, end: usize, host: &str) {
        let mut line = &self.buf[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let cut = line.len() > MAX_LOGGED_LINE;
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LOGGED_LINE)]);
        debug!(target: "remote", host, stream = self.name, "{}{}", text, if cut { " [...]" } else { "" });
    }
}
