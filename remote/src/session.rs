//! One SSH connection to one host, as a value: connecting with retries,
//! reconnecting and closing. What runs on it lives beside it: commands in
//! `exec`, uploads in `upload`, reboots in `reboot`; one attempt at
//! connecting in `connect`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use backon::{ExponentialBuilder, Retryable};
use russh::Disconnect;
use russh::client::Handle;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::connect::{Client, ConnectOptions, connect_once};
use crate::error::{Error, Result};
use crate::target::Target;

/// An authenticated connection to one host. Share it (`Arc<Session>`) to run
/// commands concurrently; it is `Send + Sync`.
pub struct Session {
    pub(crate) handle: Handle<Client>,
    /// With a key file already read, so reconnecting and reboots neither
    /// read it again nor ask for its passphrase again.
    pub(crate) opts: ConnectOptions,
    /// One permit per channel open at once (`ConnectOptions::max_channels`).
    pub(crate) channels: Arc<Semaphore>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("target", &self.opts.target).finish_non_exhaustive()
    }
}

impl Session {
    /// Connects and authenticates, retrying transient failures with
    /// exponential backoff and jitter.
    pub async fn connect(mut opts: ConnectOptions) -> Result<Session> {
        // Read (and maybe decrypt) the key once, not once per attempt.
        opts.identity = opts.identity.load()?;
        let attempts = AtomicUsize::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(opts.retry_min_delay)
            .with_max_delay(opts.retry_max_delay)
            .with_jitter()
            .with_max_times(opts.retries);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            connect_once(&opts, opts.connect_timeout, opts.connect_timeout)
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(Error::is_transient)
        .notify(
            |e, pause| warn!(target: "remote", host = %opts.target, "connect failed ({e}); retrying in {pause:.1?}"),
        )
        .await;
        let handle = match result {
            Ok(h) => h,
            Err(e) if e.is_transient() && attempts.load(Ordering::Relaxed) > 1 => {
                return Err(Error::Unreachable {
                    address: opts.target.address(),
                    attempts: attempts.load(Ordering::Relaxed),
                    last: Box::new(e),
                });
            }
            Err(e) => return Err(e),
        };
        info!(target: "remote", host = %opts.target, "connected");
        Ok(Session::from_handle(handle, opts))
    }

    fn from_handle(handle: Handle<Client>, opts: ConnectOptions) -> Session {
        Session { handle, channels: Arc::new(Semaphore::new(opts.max_channels.max(1))), opts }
    }

    pub fn target(&self) -> &Target {
        &self.opts.target
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// True once the connection is gone (closed, lost, or dead peer).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Commands need no sudo then.
    pub(crate) fn user_is_root(&self) -> bool {
        self.opts.target.is_root()
    }

    /// The target as messages and logs name it (`user@host[:port]`).
    pub(crate) fn host(&self) -> String {
        self.opts.target.to_string()
    }

    /// Says goodbye to the server; commands still running fail with
    /// `ConnectionLost`. Takes `&self` so a shared (`Arc`) session can be closed.
    pub async fn close(&self) -> Result<()> {
        self.disconnect_quietly().await;
        Ok(())
    }

    /// Replaces the connection with a fresh one to the same target with the
    /// same options (after `ConnectionLost`, say), retrying as
    /// [`Session::connect`] does, then closes the old one, ignoring errors
    /// (it is usually dead already). When connecting fails, the session
    /// keeps the old connection and the error is returned.
    pub async fn reconnect(&mut self) -> Result<()> {
        let fresh = Session::connect(self.opts.clone()).await?;
        let old = std::mem::replace(self, fresh);
        old.disconnect_quietly().await;
        Ok(())
    }

    /// Swaps in a new connection (after a reboot).
    pub(crate) fn replace_handle(&mut self, handle: Handle<Client>) {
        let old = std::mem::replace(&mut self.handle, handle);
        drop(old);
    }

    /// Says goodbye, ignoring a connection that is already gone.
    pub(crate) async fn disconnect_quietly(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_send_sync() {
        assert_send_sync::<Session>();
        assert_send_sync::<Error>();
    }
}
