//! Host key verification against an OpenSSH-format known_hosts file that
//! the caller keeps (the CLI keeps it in its state directory).
//!
//! Supported: `host`, `[host]:port`, comma-separated pattern lists, `*`/`?`
//! wildcards, `!negation`, `@revoked`. Hashed entries (`|1|...`) and
//! `@cert-authority` lines are skipped: we never write them, and skipping
//! can only make us refuse, never accept.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::{HashAlg, PublicKey};

use crate::error::{Error, HostKeyError};

/// What to do with a host key that known_hosts does not vouch for.
#[derive(Clone, Debug)]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts.
    Strict,
    /// Record the key of a host seen for the first time
    /// (`--accept-new-host-key`). A changed key is still refused.
    AcceptNew,
    /// The key is known another way (EC2 console output, a prompt the user
    /// answered): accept the host only if it offers one of these, and record
    /// it. Any other key is refused.
    Expect(Vec<PublicKey>),
}

impl HostKeyPolicy {
    /// `Expect` from OpenSSH text: one key per line, as in `*.pub` files,
    /// known_hosts lines or EC2's console output (`ssh-ed25519 AAAA... comment`,
    /// optionally led by a host pattern). Blank and `#` lines are skipped.
    pub fn expect_openssh(text: &str) -> Result<Self, Error> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(
                parse_key_words(line).ok_or_else(|| Error::BadPublicKey { text: line.chars().take(80).collect() })?,
            );
        }
        if keys.is_empty() {
            return Err(Error::BadPublicKey { text: text.chars().take(80).collect() });
        }
        Ok(HostKeyPolicy::Expect(keys))
    }
}

/// Finds `KEYTYPE BASE64` in a line that may start with host patterns and
/// end with a comment.
fn parse_key_words(line: &str) -> Option<PublicKey> {
    let words: Vec<&str> = line.split_whitespace().collect();
    (0..words.len().saturating_sub(1))
        .find_map(|i| PublicKey::from_openssh(&format!("{} {}", words[i], words[i + 1])).ok())
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `ssh-ed25519 SHA256:...`
pub(crate) fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), fingerprint(key))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Clone, Debug)]
struct Entry {
    /// 1-based line number, for messages that say which line to remove.
    line: usize,
    marker: Marker,
    patterns: Vec<String>,
    key: PublicKey,
}

/// A parsed known_hosts file.
#[derive(Clone, Debug)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// What known_hosts says about a host and the key it offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key is recorded for this host (at this line).
    Match { line: usize },
    /// The host is recorded with another key.
    Changed { line: usize, known: PublicKey },
    /// The key is marked `@revoked`.
    Revoked { line: usize },
    /// The host is not in the file.
    Unknown,
}

/// What to do after checking a key against the file and the policy.
#[derive(Debug)]
pub(crate) enum Decision {
    Accept,
    /// Accept, and write the key to known_hosts once authenticated;
    /// `replace` drops the host's older entries first.
    Record {
        replace: bool,
    },
    Reject(HostKeyError),
}

impl KnownHosts {
    /// Reads the file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(path, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::parse(path, "")),
            Err(source) => Err(Error::KnownHostsIo { path: path.to_path_buf(), source }),
        }
    }

    /// Parses known_hosts text; lines we cannot use are skipped.
    pub fn parse(path: &Path, text: &str) -> Self {
        let entries = text.lines().enumerate().filter_map(|(i, l)| parse_line(i + 1, l)).collect();
        KnownHosts { path: path.to_path_buf(), entries }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` for `name` (`host` or `[host]:port`, see
    /// [`crate::Target::known_hosts_name`]).
    pub fn lookup(&self, name: &str, key: &PublicKey) -> Lookup {
        let name = name.to_ascii_lowercase();
        let mine: Vec<&Entry> = self.entries.iter().filter(|e| host_matches(&e.patterns, &name)).collect();
        let same = |e: &&Entry| e.key.key_data() == key.key_data();
        // A revoked key is refused wherever it is listed, as OpenSSH does.
        if let Some(e) = self.entries.iter().find(|e| e.marker == Marker::Revoked && same(e)) {
            return Lookup::Revoked { line: e.line };
        }
        let plain: Vec<&Entry> = mine.into_iter().filter(|e| e.marker == Marker::None).collect();
        if let Some(e) = plain.iter().find(|e| same(e)) {
            return Lookup::Match { line: e.line };
        }
        // Prefer reporting the entry of the same key type: that is the one
        // that "changed". A host recorded only with other key types is still
        // refused, since we cannot tell a new key type from an impostor.
        let alg = key.algorithm();
        match plain.iter().find(|e| e.key.algorithm() == alg).or_else(|| plain.first()) {
            Some(e) => Lookup::Changed { line: e.line, known: e.key.clone() },
            None => Lookup::Unknown,
        }
    }

    pub(crate) fn decide(&self, name: &str, offered: &PublicKey, policy: &HostKeyPolicy) -> Decision {
        let lookup = self.lookup(name, offered);
        if let Lookup::Revoked { line } = lookup {
            return Decision::Reject(HostKeyError::Revoked {
                host: name.to_string(),
                offered: describe(offered),
                path: self.path.clone(),
                line,
            });
        }
        if let HostKeyPolicy::Expect(expected) = policy {
            if !expected.iter().any(|k| k.key_data() == offered.key_data()) {
                return Decision::Reject(HostKeyError::NotExpected {
                    host: name.to_string(),
                    expected: expected.iter().map(describe).collect(),
                    offered: describe(offered),
                });
            }
            // The expected key came from a source we trust more than an old
            // line (an EC2 address reused by a new instance): record it and
            // drop the stale lines.
            return match lookup {
                Lookup::Match { .. } => Decision::Accept,
                Lookup::Changed { .. } => Decision::Record { replace: true },
                _ => Decision::Record { replace: false },
            };
        }
        match lookup {
            Lookup::Match { .. } => Decision::Accept,
            Lookup::Changed { line, known } => Decision::Reject(HostKeyError::Changed {
                host: name.to_string(),
                known: describe(&known),
                offered: describe(offered),
                path: self.path.clone(),
                line,
            }),
            Lookup::Unknown | Lookup::Revoked { .. } => match policy {
                HostKeyPolicy::AcceptNew => Decision::Record { replace: false },
                _ => Decision::Reject(HostKeyError::Unknown {
                    host: name.to_string(),
                    offered: describe(offered),
                    key: Box::new(offered.clone()),
                    path: self.path.clone(),
                }),
            },
        }
    }
}

fn parse_line(line_no: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let mut first = words.next()?;
    let marker = match first {
        "@revoked" => {
            first = words.next()?;
            Marker::Revoked
        }
        // CA lines vouch for certificates, which we do not use.
        "@cert-authority" => return None,
        w if w.starts_with('@') => return None,
        _ => Marker::None,
    };
    // Hashed names need HMAC-SHA1 to match; we never write them.
    if first.starts_with('|') {
        return None;
    }
    let keytype = words.next()?;
    let b64 = words.next()?;
    let key = PublicKey::from_openssh(&format!("{keytype} {b64}")).ok()?;
    Some(Entry { line: line_no, marker, patterns: first.split(',').map(|p| p.to_ascii_lowercase()).collect(), key })
}

/// OpenSSH's rule: some positive pattern matches and no negated one does.
fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), name.as_bytes()) {
            hit = true;
        }
    }
    hit
}

/// `*` and `?` wildcards, as in ssh's match_pattern.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Serializes writers in this process (several hosts connecting at once).
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Adds `name key` to the file (creating it and its directory); with
/// `replace`, first removes `name` from the lines that list it literally.
pub(crate) fn record(path: &Path, name: &str, key: &PublicKey, replace: bool) -> Result<(), Error> {
    let io = |source| Error::KnownHostsIo { path: path.to_path_buf(), source };
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let bare = PublicKey::new(key.key_data().clone(), "");
    let key_text =
        bare.to_openssh().map_err(|e| io(std::io::Error::other(format!("cannot encode the host key: {e}"))))?;
    let new_line = format!("{name} {key_text}\n");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut text = if replace { without_host(&old, name) } else { old };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&new_line);
    // Write a temporary file and rename it, so a crash never leaves a
    // half-written known_hosts behind.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The file without `name` in any pattern list that names it literally
/// (lines left with no host are dropped). Wildcard lines are kept: they
/// may cover other hosts.
fn without_host(text: &str, name: &str) -> String {
    let name = name.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let keep = if t.is_empty() || t.starts_with('#') || t.starts_with('@') || t.starts_with('|') {
            Some(line.to_string())
        } else {
            match t.split_once(char::is_whitespace) {
                Some((pats, rest)) if pats.split(',').any(|p| p.eq_ignore_ascii_case(&name)) => {
                    let left: Vec<&str> = pats.split(',').filter(|p| !p.eq_ignore_ascii_case(&name)).collect();
                    if left.is_empty() { None } else { Some(format!("{} {}", left.join(","), rest)) }
                }
                _ => Some(line.to_string()),
            }
        };
        if let Some(l) = keep {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Match { line } => write!(f, "known (line {line})"),
            Lookup::Changed { line, .. } => write!(f, "changed (line {line})"),
            Lookup::Revoked { line } => write!(f, "revoked (line {line})"),
            Lookup::Unknown => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real ed25519 public keys (generated with ssh-keygen for these tests).
    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPM9EyhnnQHQjZRdNxujpan5EXsHRf7tnDN8gGIsDrY";
    const K2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7x4SXtw3/twA5sg1EHpFrGpcNkIkDtBXa2J5EgnUjs";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("/state/known_hosts"), text)
    }

    #[test]
    fn matches_plain_and_bracketed_names() {
        let f =
            kh(&format!("# comment\n\n[127.0.0.1]:2222 {K1}\nhost.example,10.0.0.5 {K2} root@x\n|1|abc=|def= {K2}\n"));
        assert_eq!(f.lookup("[127.0.0.1]:2222", &key(K1)), Lookup::Match { line: 3 });
        assert_eq!(f.lookup("10.0.0.5", &key(K2)), Lookup::Match { line: 4 });
        assert_eq!(f.lookup("HOST.example", &key(K2)), Lookup::Match { line: 4 });
        // Port matters: the plain name is port 22.
        assert_eq!(f.lookup("127.0.0.1", &key(K1)), Lookup::Unknown);
        assert_eq!(f.lookup("[127.0.0.1]:2223", &key(K1)), Lookup::Unknown);
        assert_eq!(f.lookup("[127.0.0.1]:2222", &key(K2)), Lookup::Changed { line: 3, known: key(K1) });
    }

    #[test]
    fn wildcards_and_negation() {
        let f = kh(&format!("*.example,!bad.example {K1}\n10.0.0.? {K2}\n"));
        assert_eq!(f.lookup("a.example", &key(K1)), Lookup::Match { line: 1 });
        assert_eq!(f.lookup("bad.example", &key(K1)), Lookup::Unknown);
        assert_eq!(f.lookup("10.0.0.7", &key(K2)), Lookup::Match { line: 2 });
        assert_eq!(f.lookup("10.0.0.17", &key(K2)), Lookup::Unknown);
    }

    #[test]
    fn revoked() {
        let f = kh(&format!("@revoked * {K1}\nh {K1}\n"));
        assert_eq!(f.lookup("h", &key(K1)), Lookup::Revoked { line: 1 });
    }

    #[test]
    fn policies() {
        let f = kh(&format!("h {K1}\n"));
        assert!(matches!(f.decide("h", &key(K1), &HostKeyPolicy::Strict), Decision::Accept));
        let Decision::Reject(e) = f.decide("h", &key(K2), &HostKeyPolicy::AcceptNew) else { panic!() };
        let msg = e.to_string();
        assert!(msg.contains(&fingerprint(&key(K1))) && msg.contains(&fingerprint(&key(K2))), "{msg}");
        assert!(msg.contains("/state/known_hosts:1"), "{msg}");
        let hint = e.hint().unwrap_or_default();
        assert!(hint.contains("remove line 1 from /state/known_hosts"), "{hint}");

        let Decision::Reject(e) = f.decide("new", &key(K2), &HostKeyPolicy::Strict) else { panic!() };
        let msg = e.to_string();
        assert!(msg.contains(&fingerprint(&key(K2))), "{msg}");
        let hint = e.hint().unwrap_or_default();
        assert!(hint.contains("--accept-new-host-key"), "{hint}");
        assert!(matches!(f.decide("new", &key(K2), &HostKeyPolicy::AcceptNew), Decision::Record { replace: false }));

        let expect = HostKeyPolicy::expect_openssh(&format!("{K2} root@ip-10-0-0-1\n")).unwrap();
        assert!(matches!(f.decide("h", &key(K2), &expect), Decision::Record { replace: true }));
        assert!(matches!(f.decide("new", &key(K2), &expect), Decision::Record { replace: false }));
        assert!(matches!(f.decide("new", &key(K1), &expect), Decision::Reject(HostKeyError::NotExpected { .. })));
    }

    #[test]
    fn record_and_replace() {
        let dir = std::env::temp_dir().join(format!("kh-test-{}", std::process::id()));
        let path = dir.join("sub/known_hosts");
        record(&path, "[127.0.0.1]:2222", &key(K1), false).unwrap();
        record(&path, "other", &key(K1), false).unwrap();
        let f = KnownHosts::load(&path).unwrap();
        assert_eq!(f.lookup("[127.0.0.1]:2222", &key(K1)), Lookup::Match { line: 1 });
        record(&path, "[127.0.0.1]:2222", &key(K2), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("other {K1}\n[127.0.0.1]:2222 {K2}\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_host_edits_lists() {
        let t = format!("a,b {K1}\nb {K2}\n# b\nc {K1}\n");
        assert_eq!(without_host(&t, "b"), format!("a {K1}\n# b\nc {K1}\n"));
    }
}
