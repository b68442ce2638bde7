//! The SSH side of image-provision: one connection per host, commands as
//! data with their output streamed into `tracing` and kept, atomic uploads,
//! and reboots ridden through. No AWS here.
//!
//! ```no_run
//! # async fn demo() -> image_provision_remote::Result<()> {
//! use image_provision_remote::{Cmd, ConnectOptions, HostKeyPolicy, Identity, Session};
//! let target = "admin@203.0.113.7".parse()?;
//! let opts = ConnectOptions::new(target, "/var/lib/image-provision/known_hosts")
//!     .identity(Identity::key_file("/home/me/.ssh/id_ed25519"))
//!     .policy(HostKeyPolicy::AcceptNew);
//! let session = Session::connect(opts).await?;
//! let out = session
//!     .exec(&Cmd::new("apt-get").arg("update").sudo().env("DEBIAN_FRONTEND", "noninteractive"))
//!     .await?;
//! # let _ = out; Ok(()) }
//! ```

mod cmd;
mod connect;
mod error;
mod exec;
mod identity;
mod known_hosts;
mod output;
mod reboot;
mod session;
mod target;
mod upload;

#[cfg(test)]
mod sshd_tests;

pub use cmd::{Cmd, REDACTED};
pub use connect::{ConnectOptions, DEFAULT_COMMAND_TIME_LIMIT};
pub use error::{Error, HostKeyError, Result};
pub use identity::Identity;
pub use known_hosts::{HostKeyPolicy, KnownHosts, Lookup, fingerprint};
pub use output::{ExitStatus, Output, tail};
pub use reboot::{BOOT_ID_PATH, RebootOptions, RebootReport, is_uuid};
pub use session::Session;
pub use target::{DEFAULT_PORT, DEFAULT_USER, Target};

/// The key types callers need (`PublicKey` for `HostKeyPolicy::Expect`).
pub use russh::keys::{PrivateKey, PublicKey};
