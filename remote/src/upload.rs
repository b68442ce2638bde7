//! Uploading a file: atomically, with its owner and mode set before the
//! content lands, and the content kept out of command lines and logs.

use tracing::{info, warn};

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::output::{ExitStatus, tail};
use crate::session::Session;

impl Session {
    /// Writes `bytes` to `path` (absolute) with `mode` and, if given,
    /// `owner` (`user` or `user:group`), atomically: the content goes to a
    /// temporary file beside `path` that already has its owner and mode, and
    /// is then renamed over `path`. Runs as root (`sudo -n` for other
    /// users); missing parent directories are created (0755).
    ///
    /// The content travels on the command's stdin, never on a command line,
    /// and is never logged; for a `secret` only the path, size and mode are.
    pub async fn upload(&self, path: &str, bytes: &[u8], mode: u32, owner: Option<&str>, secret: bool) -> Result<()> {
        let bad = |reason: String| Error::BadUpload { host: self.host(), path: path.to_string(), reason };
        if !path.starts_with('/') || path.ends_with('/') {
            return Err(bad("the path must be absolute and name a file".into()));
        }
        if mode > 0o7777 {
            return Err(bad(format!("mode {mode:o} is not a file mode")));
        }
        if secret && mode & 0o077 != 0 {
            warn!(target: "remote", host = %self.opts.target, path, "secret uploaded with mode {mode:04o}, readable by others");
        }
        info!(target: "remote", host = %self.opts.target, path, size = bytes.len(), mode = %format!("{mode:04o}"), secret, "upload");
        // Fixed text; the inputs are positional parameters, so nothing the
        // caller passes is parsed as shell.
        const SCRIPT: &str = r#"set -eu
path=$1 mode=$2 owner=$3
dir=$(dirname -- "$path")
mkdir -p -- "$dir"
umask 077
tmp=$(mktemp -- "$dir/.${path##*/}.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
chmod -- "$mode" "$tmp"
cat > "$tmp"
mv -f -- "$tmp" "$path"
trap - EXIT
"#;
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("upload")
            .arg(path)
            .arg(format!("{mode:o}"))
            .arg(owner.unwrap_or(""))
            .sudo()
            .stdin(bytes.to_vec())
            .quiet()
            .shown_as(format!("upload to {path} ({} bytes, mode {mode:04o})", bytes.len()));
        let out = self.run(&cmd).await?;
        if let Some(e) = self.sudo_error(&cmd, &out) {
            return Err(e);
        }
        if out.status != ExitStatus::Code(0) {
            return Err(bad(format!("{}: {}", out.status, tail(&out.stderr, 5, 1024).trim_end())));
        }
        Ok(())
    }
}
