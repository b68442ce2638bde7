//! Riding through a reboot, as Ansible's reboot action does: read the boot
//! id, ask for the reboot, take the dropped connection as success, reconnect
//! until the boot id is a different UUID, then run a test command.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tracing::{debug, info};

use crate::cmd::Cmd;
use crate::connect::connect_once;
use crate::error::{Error, Result};
use crate::output::ExitStatus;
use crate::session::Session;

pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Clone, Debug)]
pub struct RebootOptions {
    /// From asking for the reboot to the test command passing.
    pub timeout: Duration,
    /// How to ask for it. Default `reboot` (as root).
    pub command: Cmd,
    /// Must succeed on the new boot before the reboot counts as done; it is
    /// retried (services may still be starting) until `timeout`.
    pub test_command: Cmd,
    /// Pauses between reconnect attempts start here and double, with
    /// jitter, up to `probe_max_delay` (plus up to as much jitter). Small, so
    /// we are back within about a second of sshd.
    pub probe_min_delay: Duration,
    pub probe_max_delay: Duration,
    /// TCP connect limit per probe. Short: while the host is down packets
    /// may just vanish, and a long wait would delay noticing it is back.
    pub probe_connect_timeout: Duration,
}

impl Default for RebootOptions {
    fn default() -> Self {
        RebootOptions {
            timeout: Duration::from_secs(600),
            command: Cmd::new("reboot").sudo(),
            test_command: Cmd::new("whoami"),
            probe_min_delay: Duration::from_millis(150),
            probe_max_delay: Duration::from_millis(300),
            probe_connect_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootReport {
    pub old_boot_id: String,
    pub new_boot_id: String,
    /// From reading the old boot id to the test command passing.
    pub elapsed: Duration,
    /// From asking for the reboot to being connected to the new boot.
    pub reconnected_after: Duration,
}

/// `8-4-4-4-12` hex digits, as the kernel prints a boot id.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn boot_id_cmd() -> Cmd {
    Cmd::new("cat").arg(BOOT_ID_PATH)
}

impl Session {
    /// The host's current boot id (a UUID).
    pub async fn boot_id(&self) -> Result<String> {
        let out = self.exec(&boot_id_cmd()).await?;
        let id = out.stdout_str().trim().to_ascii_lowercase();
        if !is_uuid(&id) {
            return Err(Error::BootId { host: self.target().to_string(), output: id.chars().take(100).collect() });
        }
        Ok(id)
    }

    /// Reboots the host and waits until it is back on a new boot and the
    /// test command passes. The session is connected to the new boot
    /// afterwards. Concurrent users of the session will see their commands
    /// fail with `ConnectionLost`; `&mut self` keeps them out meanwhile.
    pub async fn reboot(&mut self, opts: RebootOptions) -> Result<RebootReport> {
        let start = Instant::now();
        let host = self.target().to_string();
        let old = self.boot_id().await?;
        info!(target: "remote", host = %host, boot_id = %old, "rebooting");
        let asked = Instant::now();
        let deadline = asked + opts.timeout;
        // `last` is what stood in the way last: a message and, when it was
        // an error, that error's hint.
        let timeout_err = |phase, last: Option<(String, Option<String>)>| {
            let (last_error, last_hint) = last.unzip();
            Error::RebootTimeout {
                host: host.clone(),
                timeout: opts.timeout,
                phase,
                last_error,
                last_hint: last_hint.flatten(),
            }
        };
        let said = |e: &Error| Some((e.to_string(), e.hint()));

        self.request_reboot(&opts.command).await?;
        // The old connection can only ever read the old boot id; let it go.
        self.disconnect_quietly().await;

        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(opts.probe_min_delay)
            .with_max_delay(opts.probe_max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut last = None;
        let new = loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(timeout_err("waiting for the host to come back on a new boot", last));
            }
            let left = deadline - now;
            let attempt = connect_once(
                self.options(),
                opts.probe_connect_timeout.min(left),
                self.options().connect_timeout.min(left),
            )
            .await;
            match attempt {
                Ok(handle) => {
                    self.replace_handle(handle);
                    match self.read_boot_id_probe().await {
                        Some(id) if id != old => break id,
                        Some(_) => last = Some(("the boot id has not changed yet".into(), None)),
                        None => last = Some(("the boot id could not be read yet".into(), None)),
                    }
                    self.disconnect_quietly().await;
                }
                // A different host key after a reboot is not "not yet".
                Err(e @ Error::HostKey(_)) => return Err(e),
                // Refused, reset, timed out, or "System is booting up"
                // refusing logins: all mean not yet.
                Err(e) => {
                    debug!(target: "remote", host = %host, "not back yet: {e}");
                    last = said(&e);
                }
            }
            let pause = backoff.next().unwrap_or(opts.probe_max_delay);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        };
        let reconnected_after = asked.elapsed();
        info!(target: "remote", host = %host, boot_id = %new, "back after {reconnected_after:.1?}");

        loop {
            match self.exec(&opts.test_command).await {
                Ok(_) => break,
                Err(e @ (Error::SudoNeedsPassword { .. } | Error::SudoNotPermitted { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    debug!(target: "remote", host = %host, "test command not passing yet: {e}");
                    if Instant::now() + Duration::from_secs(1) >= deadline {
                        return Err(timeout_err("running the test command", said(&e)));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if self.is_closed() {
                        match connect_once(self.options(), opts.probe_connect_timeout, self.options().connect_timeout)
                            .await
                        {
                            Ok(h) => self.replace_handle(h),
                            Err(e @ Error::HostKey(_)) => return Err(e),
                            Err(_) => {}
                        }
                    }
                }
            }
        }
        Ok(RebootReport { old_boot_id: old, new_boot_id: new, elapsed: start.elapsed(), reconnected_after })
    }

    /// Runs the reboot command. The connection dropping under it, or the
    /// command being killed, is the reboot happening, not a failure.
    async fn request_reboot(&self, cmd: &Cmd) -> Result<()> {
        match self.exec_unchecked(cmd).await {
            Ok(out) => match out.status {
                ExitStatus::Code(0) | ExitStatus::Signal(_) => Ok(()),
                ExitStatus::Code(_) => {
                    // sshd being stopped can make the command exit non-zero
                    // just before the connection drops: wait a moment.
                    for _ in 0..20 {
                        if self.is_closed() {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    self.check(cmd, out).map(|_| ())
                }
            },
            Err(Error::ConnectionLost { .. } | Error::NoExitStatus { .. }) => Ok(()),
            Err(e) if e.is_transient() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The boot id, or None for "not yet" (an error, a non-zero exit, or
    /// output that is not a UUID, such as a message printed while the host
    /// goes down).
    async fn read_boot_id_probe(&self) -> Option<String> {
        let out = self.exec_unchecked(&boot_id_cmd()).await.ok()?;
        if out.status != ExitStatus::Code(0) {
            return None;
        }
        let id = out.stdout_str().trim().to_ascii_lowercase();
        is_uuid(&id).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(!is_uuid(""));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
        assert!(!is_uuid("0f8fad5bxd9cb-469f-a165-70867728950e"));
        assert!(!is_uuid("Connection to host closed by remote."));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e\nx"));
        assert!(!is_uuid("zf8fad5b-d9cb-469f-a165-70867728950e"));
    }
}
