//! Files the steps write on the host (compose files, .env files, links):
//! rendered from templates beside each step, compared with what is on the
//! host by sha256 and mode (the files facts, in the facts round trip), and
//! written only when they differ.
//!
//! Only what is ours is replaced without a copy. image-provision keeps a
//! record on the host of what it wrote ([`RECORD`]: each path with the
//! sha256 of the content it uploaded, or the target of the link it made),
//! which the files facts read back. Before a step replaces what is at one of
//! its paths, [`Writes`] keeps a copy of it, under this run's directory in
//! [`BACKUP_ROOT`] at its own path, unless the record shows that
//! image-provision wrote exactly that: a host's own file (its own Traefik's
//! compose file, a hand-made .env), a file of ours changed by hand since, a
//! link of its own. An empty file needs no copy (nothing is lost), nor does
//! one that already has the content wanted (it is not replaced). A file an
//! earlier version wrote (before the record) is copied once, the first
//! time a run changes it: it cannot be told from a hand-made one.
//!
//! A write that takes effect only through a command after it (Traefik's
//! `compose up`, systemd's daemon-reload and a timer's restart) counts as
//! done only once that command succeeded: [`Writes::applied_by_commands`]
//! marks its paths pending ([`PENDING`]) before the upload and
//! [`Writes::applied`] clears them after the step's apply, so a run cut
//! short between the two leaves them marked and the next run, finding the
//! files as wanted, still applies them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use image_provision_remote::Cmd;
use sha2::{Digest, Sha256};

use crate::facts::{FactsScript, RawFacts};
use crate::plan::Action;

pub const FILES_FACTS_SH: &str = include_str!("files-facts.sh");
pub const KEEP_COPIES_SH: &str = include_str!("keep-copies.sh");
pub const RECORD_WRITTEN_SH: &str = include_str!("record-written.sh");
/// An env file of the host's merged on the host with image-provision's lines.
pub const KEEP_ENV_LINES_SH: &str = include_str!("keep-env-lines.sh");
pub const MARK_PENDING_SH: &str = include_str!("mark-pending.sh");

/// image-provision's record of what it wrote on the host (record-written.sh).
pub const RECORD: &str = "/var/lib/image-provision/written";
/// image-provision's record of writes not yet applied (mark-pending.sh).
pub const PENDING: &str = "/var/lib/image-provision/pending";
/// root's cache of the watched files' hashes, keyed by their stat
/// (files-facts.sh): deleting it only costs the next run the hashing.
pub const FILES_CACHE: &str = "/var/cache/image-provision/files";
/// Where the copies of what it replaced go: a directory per run, named by
/// the run's UTC time, each copy at its own path beneath.
pub const BACKUP_ROOT: &str = "/var/backups/image-provision";

/// The sha256 of an empty file.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Fill `{{KEY}}` placeholders, in one pass over the template: a value is
/// never read again, so whatever it holds (`{{` included) goes in as it is.
/// Values are checked when the input is resolved ([`crate::validate`]), so
/// none can break the file's syntax.
///
/// # Panics
/// On a placeholder of the template that `values` does not fill: a template
/// and its caller disagree (never on a value).
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let key = after.find("}}").map(|close| &after[..close]);
        let value = key.and_then(|k| values.iter().find(|(name, _)| *name == k)).map(|(_, v)| *v);
        let (Some(key), Some(value)) = (key, value) else {
            panic!("template placeholder left unfilled in:\n{template}");
        };
        out.push_str(value);
        rest = &after[key.len() + 2..];
    }
    out.push_str(rest);
    out
}

pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files facts script (inputs FILES: the paths the steps write;
/// WRITTEN_RECORD: [`RECORD`]).
pub fn facts_script() -> FactsScript {
    FactsScript::new("template/files-facts.sh", FILES_FACTS_SH).root(&["files_facts"])
}

/// This run's directory for copies: [`BACKUP_ROOT`]/<UTC time of the first
/// plan that asked>, the same for every step of the run.
pub fn backup_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| format!("{BACKUP_ROOT}/{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")))
}

/// What is at a watched path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    Absent,
    File {
        sha256: String,
        mode: String,
        owner: String,
    },
    /// A symbolic link, with its target.
    Link(String),
    /// A directory, a device, ...
    Other,
}

impl Found {
    /// As the record says what was written: the content's sha256, or
    /// `link:TARGET`.
    fn fingerprint(&self) -> Option<String> {
        match self {
            Found::File { sha256, .. } => Some(sha256.clone()),
            Found::Link(target) => Some(format!("link:{target}")),
            Found::Absent | Found::Other => None,
        }
    }
}

/// What is at each watched path, and what image-provision's record says it
/// wrote there.
#[derive(Clone, Debug, Default)]
pub struct FileFacts {
    files: BTreeMap<String, Found>,
    written: BTreeMap<String, String>,
    /// Written by a run whose apply did not succeed (see [`PENDING`]).
    pending: std::collections::BTreeSet<String>,
}

impl FileFacts {
    pub fn parse(raw: &RawFacts) -> FileFacts {
        let files = raw
            .with_prefix("file.")
            .filter_map(|(path, v)| {
                let found = match v {
                    "absent" => Found::Absent,
                    "other" => Found::Other,
                    v => match v.strip_prefix("link ") {
                        Some(target) => Found::Link(target.to_owned()),
                        None => {
                            let mut words = v.split(' ');
                            let (sha256, mode) = (words.next()?.to_owned(), words.next()?.to_owned());
                            let owner = words.next().unwrap_or_default().to_owned();
                            Found::File { sha256, mode, owner }
                        }
                    },
                };
                Some((path.to_string(), found))
            })
            .collect();
        let written = raw.with_prefix("written.").map(|(path, v)| (path.to_string(), v.to_string())).collect();
        let pending = raw.with_prefix("pending.").filter(|(_, v)| *v == "yes").map(|(p, _)| p.to_string()).collect();
        FileFacts { files, written, pending }
    }

    /// `path` was written by a run whose apply did not succeed: applying
    /// it is still to do, whatever the file holds.
    pub fn pending(&self, path: &str) -> bool {
        self.pending.contains(path)
    }

    /// `path` on the host is a file (not a link) with exactly `content`,
    /// with `mode` ("644").
    pub fn is(&self, path: &str, content: &[u8], mode: &str) -> bool {
        matches!(self.files.get(path), Some(Found::File { sha256, mode: m, .. }) if *sha256 == sha256_hex(content) && m == mode)
    }

    /// Like [`FileFacts::is`], and owned by `owner`.
    pub fn is_owned(&self, path: &str, content: &[u8], mode: &str, owner: &str) -> bool {
        self.is(path, content, mode) && matches!(self.files.get(path), Some(Found::File { owner: o, .. }) if o == owner)
    }

    /// The sha256 of the regular file at `path`; None when it is absent,
    /// a link or not watched.
    pub fn sha256(&self, path: &str) -> Option<&str> {
        match self.files.get(path) {
            Some(Found::File { sha256, .. }) => Some(sha256),
            _ => None,
        }
    }

    /// `path` is a regular file with something in it.
    pub fn has_content(&self, path: &str) -> bool {
        self.sha256(path).is_some_and(|s| s != EMPTY_SHA256)
    }

    /// `path` is a regular file with `mode` ("600"), owned by `owner`.
    pub fn has_mode(&self, path: &str, mode: &str, owner: &str) -> bool {
        matches!(self.files.get(path), Some(Found::File { mode: m, owner: o, .. }) if m == mode && o == owner)
    }

    /// Something (a file, a link, a directory) is at `path`.
    pub fn exists(&self, path: &str) -> bool {
        matches!(self.files.get(path), Some(Found::File { .. } | Found::Link(_) | Found::Other))
    }

    /// `path` is a link that leads where `target` would, read from the
    /// link's directory (`config` -> `IMAGE-server/config` and `config` ->
    /// `/var/docker/image/IMAGE-server/config` are the same link).
    pub fn links_to(&self, path: &str, target: &str) -> bool {
        matches!(self.files.get(path), Some(Found::Link(t)) if resolve(path, t) == resolve(path, target))
    }

    /// What is at `path` is what image-provision's record says it wrote
    /// there last.
    pub fn ours(&self, path: &str) -> bool {
        let now = self.files.get(path).and_then(Found::fingerprint);
        now.is_some() && now.as_ref() == self.written.get(path)
    }

    /// Replacing what is at `path` would lose something image-provision
    /// did not write. `wanted`: the fingerprint of what replaces it, for a
    /// write; None for a command's own replacement, which counts what the
    /// facts do not watch as there. A write's path is always watched (see
    /// gather.rs' test); one that is not is as on a fresh host: absent.
    fn replacing_loses(&self, path: &str, wanted: Option<&str>) -> bool {
        match self.files.get(path) {
            None => wanted.is_none(),
            Some(Found::Absent | Found::Other) => false,
            Some(Found::File { sha256, .. }) => {
                sha256 != EMPTY_SHA256 && Some(sha256.as_str()) != wanted && !self.ours(path)
            }
            Some(Found::Link(_)) => !self.ours(path),
        }
    }
}

/// `target` of a link at `path`, as an absolute path, `.` and `..` taken
/// out (by name: nothing on the host is asked).
fn resolve(path: &str, target: &str) -> String {
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
    let joined = if target.starts_with('/') { target.to_string() } else { format!("{dir}/{target}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// One step's writes (uploads and links), with what replacing needs: a copy
/// first of whatever they replace that image-provision did not write, and
/// after them the record of what it wrote. Build it with [`Writes::file`]
/// and [`Writes::link`]; say [`Writes::copies`] in the plan's reasons; put
/// [`Writes::into_actions`] where the writes go.
pub struct Writes<'a> {
    files: &'a FileFacts,
    backup_dir: &'a str,
    /// [`RECORD`] (elsewhere in tests).
    record_path: &'a str,
    /// [`PENDING`] (elsewhere in tests).
    pending_path: &'a str,
    copies: Vec<String>,
    writes: Vec<Action>,
    record: Vec<(String, String)>,
    /// With [`Writes::applied_by_commands`]: the paths this step's apply
    /// makes take effect (written now, or pending from a run cut short).
    applying: Option<Vec<String>>,
}

impl<'a> Writes<'a> {
    /// `backup_dir`: this run's directory for copies ([`backup_dir`]).
    pub fn new(files: &'a FileFacts, backup_dir: &'a str) -> Writes<'a> {
        Writes {
            files,
            backup_dir,
            record_path: RECORD,
            pending_path: PENDING,
            copies: Vec::new(),
            writes: Vec::new(),
            record: Vec::new(),
            applying: None,
        }
    }

    /// The writes take effect only through the step's own commands after
    /// them: each is marked pending before it is written, and a path still
    /// pending from a run cut short counts as a write to apply even when
    /// the file is as wanted. Put [`Writes::applied`] after the apply.
    pub fn applied_by_commands(mut self) -> Self {
        self.applying = Some(Vec::new());
        self
    }

    /// `content` at `path` with `mode`, root's or `owner`'s, unless it is so
    /// already. True when it will be written. `secret`: the content is
    /// credentials (see [`Action::Upload`]).
    pub fn file(
        &mut self,
        path: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
        owner: Option<&str>,
        secret: bool,
    ) -> bool {
        let content = content.into();
        let octal = format!("{mode:o}");
        let so = match owner {
            Some(o) => self.files.is_owned(path, &content, &octal, o),
            None => self.files.is(path, &content, &octal),
        };
        if so {
            // Written by a run that was cut short before its apply.
            if let Some(applying) = self.applying.as_mut().filter(|_| self.files.pending(path)) {
                applying.push(path.to_owned());
                return true;
            }
            return false;
        }
        if let Some(applying) = self.applying.as_mut() {
            applying.push(path.to_owned());
        }
        let sha = sha256_hex(&content);
        self.keep(path, Some(&sha));
        self.record.push((path.to_owned(), sha));
        self.writes.push(Action::Upload {
            path: path.to_owned(),
            content,
            mode,
            owner: owner.map(str::to_owned),
            secret,
        });
        true
    }

    /// A symbolic link at `path` to `target`, unless one leads there
    /// already. True when it will be made.
    pub fn link(&mut self, path: &str, target: &str) -> bool {
        if self.files.links_to(path, target) {
            return false;
        }
        let fingerprint = format!("link:{target}");
        self.keep(path, Some(&fingerprint));
        self.record.push((path.to_owned(), fingerprint));
        self.writes.push(Action::Change(Cmd::new("ln").args(["-sfnT", "--", target, path]).sudo()));
        true
    }

    /// A file one of the step's own commands will replace or remove (not a
    /// write of this builder): copied first unless `ours` (the step's own
    /// proof that image-provision made it), or empty or absent by the facts
    /// (a path they do not watch counts as there).
    pub fn replaced_by_command(&mut self, path: &str, ours: bool) {
        if !ours {
            self.keep(path, None);
        }
    }

    fn keep(&mut self, path: &str, wanted: Option<&str>) {
        if self.files.replacing_loses(path, wanted) && !self.copies.iter().any(|c| c == path) {
            self.copies.push(path.to_owned());
        }
    }

    /// The plan's reason for the copies, when there are any: each path and
    /// where its copy goes.
    pub fn copies(&self) -> Option<String> {
        let (first, rest) = self.copies.split_first()?;
        let each = |p: &String| format!("{p} as {}{p}", self.backup_dir);
        if rest.is_empty() {
            return Some(format!("keep a copy of {} (not written by image-provision)", each(first)));
        }
        let all: Vec<String> = self.copies.iter().map(each).collect();
        Some(format!("keep copies of what image-provision did not write: {}", all.join(" and ")))
    }

    /// With [`Writes::applied_by_commands`], the command that clears what
    /// this step applies from the pending record: the step's last, after
    /// the commands that apply the writes. None when nothing is applied.
    pub fn applied(&self) -> Option<Action> {
        let applying = self.applying.as_ref().filter(|a| !a.is_empty())?;
        Some(Action::Change(mark_pending(self.pending_path, &[], applying)))
    }

    /// The copy of what is not ours (when anything is), the writes (with
    /// [`Writes::applied_by_commands`], marked pending first), then the
    /// record of them (when any).
    pub fn into_actions(self) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.copies.is_empty() {
            actions.push(Action::Change(keep_copies(self.backup_dir, &self.copies)));
        }
        if self.applying.is_some() && !self.record.is_empty() {
            let written: Vec<String> = self.record.iter().map(|(path, _)| path.clone()).collect();
            actions.push(Action::Change(mark_pending(self.pending_path, &written, &[])));
        }
        actions.extend(self.writes);
        if !self.record.is_empty() {
            actions.push(Action::Change(record_written(self.record_path, &self.record)));
        }
        actions
    }
}

/// keep-env-lines.sh: `env_file` made `ours` lines and, of `from`'s, those
/// of the keys in `keep` ("all": every line but those of a key `ours`
/// sets), 0600 and `owner`'s. The kept lines (secrets) stay on the host.
pub fn keep_env_lines(env_file: &str, from: &str, ours: &str, keep: &str, owner: &str) -> Cmd {
    Cmd::script(KEEP_ENV_LINES_SH)
        .named("keep-env-lines.sh")
        .sudo()
        .env("ENV_FILE", env_file)
        .env("FROM", from)
        .env("OURS", ours)
        .env("KEEP", keep)
        .env("ENV_OWNER", owner)
        .env("RECORD", RECORD)
}

/// keep-copies.sh: a copy of each of `paths` under `backup_dir`.
pub fn keep_copies(backup_dir: &str, paths: &[String]) -> Cmd {
    Cmd::script(KEEP_COPIES_SH)
        .named("keep-copies.sh")
        .sudo()
        .env("BACKUP_DIR", backup_dir)
        .env("COPIES", paths.join(" "))
}

/// mark-pending.sh: `mark` into the record of writes not yet applied
/// (`pending`, [`PENDING`]), `clear` out of it.
pub fn mark_pending(pending: &str, mark: &[String], clear: &[String]) -> Cmd {
    Cmd::script(MARK_PENDING_SH)
        .named("mark-pending.sh")
        .sudo()
        .env("PENDING", pending)
        .env("MARK", mark.join(" "))
        .env("CLEAR", clear.join(" "))
}

/// record-written.sh: `written` (path, fingerprint) into `record` ([`RECORD`]).
pub fn record_written(record: &str, written: &[(String, String)]) -> Cmd {
    let words: Vec<String> = written.iter().map(|(path, fp)| format!("{path}={fp}")).collect();
    Cmd::script(RECORD_WRITTEN_SH)
        .named("record-written.sh")
        .sudo()
        .env("RECORD", record)
        .env("WRITTEN", words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value goes in as it is, placeholders and braces included: never
    /// expanded again, never a panic.
    #[test]
    fn values_are_never_expanded_again() {
        let template = "a={{A}} b={{B}} {{A}}";
        let out = render(template, &[("A", "{{B}}"), ("B", "{{x}} {{ }}")]);
        assert_eq!(out, "a={{B}} b={{x}} {{ }} {{B}}");
        assert_eq!(render("{{A}}", &[("A", "{{")]), "{{");
        assert_eq!(render("no placeholder", &[]), "no placeholder");
    }

    #[test]
    #[should_panic(expected = "placeholder left unfilled")]
    fn a_placeholder_without_a_value_is_the_templates_bug() {
        render("{{A}} {{B}}", &[("A", "a")]);
    }

    #[test]
    fn a_file_is_as_wanted_only_with_its_content_and_mode() {
        let raw = RawFacts::parse(&format!("file./a={} 644 ubuntu\nfile./b=absent\n", sha256_hex("x")));
        let files = FileFacts::parse(&raw);
        assert!(files.is("/a", b"x", "644") && files.is_owned("/a", b"x", "644", "ubuntu"));
        assert!(!files.is("/a", b"x", "600") && !files.is("/a", b"y", "644") && !files.is("/b", b"", "644"));
        assert!(!files.is_owned("/a", b"x", "644", "root") && !files.is_owned("/b", b"", "644", "ubuntu"));
    }

    const DIR: &str = "/var/backups/image-provision/20260314T101500Z";

    fn facts(text: &str) -> FileFacts {
        FileFacts::parse(&RawFacts::parse(text))
    }

    fn shown(actions: &[Action]) -> Vec<String> {
        actions.iter().map(|a| a.describe(false)).collect()
    }

    /// A host's own file, and ours changed by hand since: a copy first,
    /// named with where it goes, then the upload, then the record. Ours as
    /// written: replaced with no copy.
    #[test]
    fn what_is_not_ours_is_copied_before_it_is_replaced() {
        let theirs = sha256_hex("their own traefik\n");
        let ours = sha256_hex("ours, as written\n");
        let text = format!(
            "file./t/compose.yml={theirs} 640 root\nfile./e/.env={ours} 644 root\nwritten./e/.env={ours}\n\
             file./e/edited={theirs} 644 root\nwritten./e/edited={ours}\n"
        );
        let files = facts(&text);
        assert!(files.ours("/e/.env") && !files.ours("/e/edited") && !files.ours("/t/compose.yml"));
        let mut w = Writes::new(&files, DIR);
        assert!(w.file("/t/compose.yml", "new\n", 0o644, None, false));
        assert!(w.file("/e/.env", "new\n", 0o644, None, false));
        assert!(w.file("/e/edited", "new\n", 0o600, Some("ubuntu"), true));
        assert_eq!(
            w.copies().unwrap(),
            format!(
                "keep copies of what image-provision did not write: /t/compose.yml as {DIR}/t/compose.yml and \
                 /e/edited as {DIR}/e/edited"
            )
        );
        let cmds = shown(&w.into_actions());
        assert_eq!(cmds.len(), 5, "{cmds:#?}");
        assert_eq!(
            cmds[0],
            format!(
                "sudo -n env BACKUP_DIR={DIR} COPIES='/t/compose.yml /e/edited' bash --norc -euo pipefail -s -- <script keep-copies.sh>"
            )
        );
        assert!(cmds[1].starts_with("upload /t/compose.yml ") && cmds[3].starts_with("upload /e/edited "), "{cmds:#?}");
        let new = sha256_hex("new\n");
        assert_eq!(
            cmds[4],
            format!(
                "sudo -n env RECORD={RECORD} WRITTEN='/t/compose.yml={new} /e/.env={new} /e/edited={new}' \
                 bash --norc -euo pipefail -s -- <script record-written.sh>"
            )
        );
        // One file: named with its copy's path.
        let mut w = Writes::new(&files, DIR);
        w.file("/t/compose.yml", "new\n", 0o644, None, false);
        assert_eq!(
            w.copies().unwrap(),
            format!("keep a copy of /t/compose.yml as {DIR}/t/compose.yml (not written by image-provision)")
        );
    }

    /// Nothing lost, nothing copied: absent, empty, the same content with
    /// another mode, a directory (not replaced by a write). Nothing to
    /// write: no action at all, no record.
    #[test]
    fn nothing_is_copied_when_nothing_would_be_lost() {
        let files = facts(&format!(
            "file./a=absent\nfile./empty={EMPTY_SHA256} 644 root\nfile./same={} 600 root\nfile./dir=other\n\
             file./done={} 644 root\n",
            sha256_hex("x"),
            sha256_hex("done")
        ));
        let mut w = Writes::new(&files, DIR);
        for path in ["/a", "/empty", "/same", "/dir"] {
            assert!(w.file(path, "x", 0o644, None, false), "{path}");
        }
        assert_eq!(w.copies(), None);
        let cmds = shown(&w.into_actions());
        assert!(!cmds.iter().any(|c| c.contains("keep-copies")) && cmds.last().unwrap().contains("record-written"));
        let mut w = Writes::new(&files, DIR);
        assert!(!w.file("/done", "done", 0o644, None, false));
        assert!(w.into_actions().is_empty());
    }

    /// Links: one leading where ours would (by another spelling) is left as
    /// it is; a link of the host's own, or a file where a link goes, is
    /// copied first; a link of ours to an old target is replaced with no
    /// copy. A link where a file goes is copied too (the upload replaces
    /// the link, not the file it leads to).
    #[test]
    fn links_are_ours_only_by_the_record() {
        let files = facts(
            "file./b/config=link /b/IMAGE-server/config\nfile./b/bin=link /opt/their/bin\n\
             file./b/docker-compose.yml=link old/docker-compose.yml\nwritten./b/docker-compose.yml=link:old/docker-compose.yml\n\
             file./b/cache=1234 644 root\nfile./b/.env=link /srv/env\n",
        );
        let mut w = Writes::new(&files, DIR);
        assert!(!w.link("/b/config", "IMAGE-server/config"), "the same place");
        assert!(!w.link("/b/config", "./IMAGE-server/../IMAGE-server/config"));
        assert!(w.link("/b/bin", "/b/IMAGE-server/scripts"));
        assert!(w.link("/b/docker-compose.yml", "IMAGE-server/docker-compose.yml"));
        assert!(w.link("/b/cache", "IMAGE-server/cache"));
        assert!(w.file("/b/.env", "x", 0o644, None, false));
        assert_eq!(
            w.copies().unwrap(),
            format!(
                "keep copies of what image-provision did not write: /b/bin as {DIR}/b/bin and /b/cache as {DIR}/b/cache \
                 and /b/.env as {DIR}/b/.env"
            )
        );
        let cmds = shown(&w.into_actions());
        assert!(cmds[1].ends_with("ln -sfnT -- /b/IMAGE-server/scripts /b/bin"), "{cmds:#?}");
        assert!(
            cmds.last().unwrap().contains("/b/docker-compose.yml=link:IMAGE-server/docker-compose.yml"),
            "{cmds:#?}"
        );
    }

    /// A file a command replaces: copied unless the step proves it ours;
    /// one the facts do not watch may hold anything.
    #[test]
    fn a_file_a_command_replaces_is_copied_unless_ours() {
        let files = facts("file./e/llm.env=abc 600 ubuntu\nfile./e/gone=absent\n");
        let mut w = Writes::new(&files, DIR);
        w.replaced_by_command("/e/llm.env", true);
        w.replaced_by_command("/e/gone", false);
        assert_eq!(w.copies(), None);
        w.replaced_by_command("/e/llm.env", false);
        w.replaced_by_command("/t/acme.json", false);
        assert_eq!(
            shown(&w.into_actions()),
            [format!(
                "sudo -n env BACKUP_DIR={DIR} COPIES='/e/llm.env /t/acme.json' bash --norc -euo pipefail -s -- <script keep-copies.sh>"
            )]
        );
    }

    #[test]
    fn the_run_has_one_dated_directory() {
        let dir = backup_dir();
        let stamp = dir.strip_prefix("/var/backups/image-provision/").unwrap();
        assert!(stamp.len() == 16 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T', "{dir}");
        assert_eq!(backup_dir(), dir);
    }

    /// Runs `cmd` here as the host would (its env, its script on stdin):
    /// whether it succeeded, and what it said.
    fn try_here(cmd: &Cmd) -> (bool, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(cmd.render(true))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&cmd.stdin_to_send().unwrap_or_default()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn run_here(cmd: &Cmd) -> String {
        let (ok, text) = try_here(cmd);
        assert!(ok, "{}: {text}", cmd.redacted(true));
        text
    }

    /// The files facts as the facts command runs them (without the root
    /// hop), for `paths` and `record`.
    fn facts_here(paths: &[&str], record: &str) -> FileFacts {
        facts_cached_here(paths, record, &format!("{record}.cache"))
    }

    /// [`facts_here`] with the hashes' cache at `cache`.
    fn facts_cached_here(paths: &[&str], record: &str, cache: &str) -> FileFacts {
        let script = format!("{}\n{FILES_FACTS_SH}\nfiles_facts\n", crate::facts::PRELUDE_SH);
        let pending = format!("{record}.pending");
        let cmd = Cmd::script(script)
            .env("FILES", paths.join(" "))
            .env("WRITTEN_RECORD", record)
            .env("PENDING_RECORD", pending)
            .env("FILES_CACHE", cache);
        FileFacts::parse(&RawFacts::parse(&run_here(&cmd)))
    }

    /// A file's hash is kept beside its stat and read back while the stat
    /// is the same; a write (even of the same size) hashes it again; a file
    /// written in the last second or two is hashed and not kept; entries of
    /// files another command watches stay; root's only.
    #[test]
    fn hashes_are_kept_by_the_files_stat() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        let (a, b, link) = (format!("{root}/a.env"), format!("{root}/b.yml"), format!("{root}/bin"));
        let (record, cache) = (format!("{root}/lib/written"), format!("{root}/cache/files"));
        std::fs::write(&a, "A=1\n").unwrap();
        std::fs::write(&b, "b: 1\n").unwrap();
        symlink("IMAGE-server/bin", &link).unwrap();
        let paths = [a.as_str(), b.as_str(), link.as_str()];
        let now = facts_cached_here(&paths, &record, &cache);
        assert!(now.is(&a, b"A=1\n", "644") && now.links_to(&link, "IMAGE-server/bin"), "{now:?}");
        assert!(!std::path::Path::new(&cache).exists(), "just written: not kept");

        std::thread::sleep(std::time::Duration::from_millis(2100));
        facts_cached_here(&paths, &record, &cache);
        let kept = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);
        let line = kept.lines().find(|l| l.starts_with(&format!("{a}\t"))).unwrap().to_string();
        assert!(line.ends_with(&sha256_hex("A=1\n")), "{kept}");
        assert!(!kept.contains(&link), "a link has no hash: {kept}");
        // Read back while the stat is the same (a hash it could not have made).
        let forged = format!("{}{}", &line[..line.len() - 64], "f".repeat(64));
        std::fs::write(&cache, kept.replace(&line, &forged)).unwrap();
        let read = facts_cached_here(&paths, &record, &cache);
        assert_eq!(read.sha256(&a), Some("f".repeat(64).as_str()));
        // Watching b alone keeps a's entry.
        facts_cached_here(&[b.as_str()], &record, &cache);
        assert!(std::fs::read_to_string(&cache).unwrap().contains(&forged));
        // A write of the same size: hashed again.
        std::fs::write(&a, "A=2\n").unwrap();
        let changed = facts_cached_here(&paths, &record, &cache);
        assert!(changed.is(&a, b"A=2\n", "644"), "{changed:?}");
    }

    /// A write applied by the step's commands: marked pending before the
    /// upload, cleared only by the command after the apply. Cut short in
    /// between, the next run finds the file as wanted yet still applies
    /// it; once cleared, nothing is left to do.
    #[test]
    fn a_write_counts_as_applied_only_after_its_apply() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        let (unit, other) = (format!("{root}/u.timer"), format!("{root}/other.timer"));
        let record = format!("{root}/lib/written");
        let pending = format!("{record}.pending");
        let paths = [unit.as_str(), other.as_str()];
        let files = facts_here(&paths, &record);
        let mut w = Writes::new(&files, DIR).applied_by_commands();
        w.record_path = &record;
        w.pending_path = &pending;
        assert!(w.file(&unit, "[Timer]\n", 0o644, None, false));
        let applied = w.applied().expect("the write is to apply").describe(false);
        assert!(applied.contains(&format!("CLEAR={unit}")) && applied.contains("mark-pending.sh"), "{applied}");
        let actions = w.into_actions();
        let cmds = shown(&actions);
        assert!(
            cmds[0].contains("mark-pending.sh") && cmds[1].starts_with("upload ") && cmds[2].contains("record-written")
        );
        // The run: marked, written, recorded, then cut before the apply.
        let Action::Change(mark) = &actions[0] else { panic!() };
        run_here(mark);
        std::fs::write(&unit, "[Timer]\n").unwrap();
        std::fs::write(&other, "[Timer]\n").unwrap();
        let Action::Change(rec) = &actions[2] else { panic!() };
        run_here(rec);
        assert_eq!(
            std::fs::metadata(&pending)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                .unwrap(),
            0o600
        );

        // The next run: the file is as wanted, and still to apply; a file
        // as wanted that was never pending is not.
        let files = facts_here(&paths, &record);
        assert!(files.pending(&unit) && !files.pending(&other));
        let mut w = Writes::new(&files, DIR).applied_by_commands();
        w.pending_path = &pending;
        assert!(w.file(&unit, "[Timer]\n", 0o644, None, false), "pending: to apply");
        assert!(!w.file(&other, "[Timer]\n", 0o644, None, false));
        let Some(Action::Change(clear)) = w.applied() else { panic!() };
        assert!(w.into_actions().is_empty(), "nothing written again");
        run_here(&clear);
        let files = facts_here(&paths, &record);
        assert!(!files.pending(&unit));
        assert!(!std::path::Path::new(&pending).exists(), "an empty record is removed");
        let mut w = Writes::new(&files, DIR).applied_by_commands();
        assert!(!w.file(&unit, "[Timer]\n", 0o644, None, false));
        assert!(w.applied().is_none());
        // Without applied_by_commands, pending means nothing.
        let files = facts(&format!("file.{unit}={} 644 root\npending.{unit}=yes\n", sha256_hex("[Timer]\n")));
        assert!(!Writes::new(&files, DIR).file(&unit, "[Timer]\n", 0o644, None, false));
    }

    /// The scripts on real files: the facts see a file, a link and an empty
    /// file of the host's own; the copy keeps the file's bytes and mode
    /// and the link as a link; after the writes and the record the facts
    /// find them ours, so the next change copies nothing. A copy is never
    /// overwritten by a different one.
    #[test]
    fn the_scripts_copy_record_and_read_back() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        let (own, link, empty) = (format!("{root}/t/compose.yml"), format!("{root}/e/link"), format!("{root}/e/empty"));
        let (record, backups) = (format!("{root}/lib/written"), format!("{root}/backups/run"));
        std::fs::create_dir_all(format!("{root}/t")).unwrap();
        std::fs::create_dir_all(format!("{root}/e")).unwrap();
        std::fs::write(&own, "their own\n").unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink("/srv/their.yml", &link).unwrap();
        std::fs::write(&empty, "").unwrap();
        let paths = [own.as_str(), link.as_str(), empty.as_str()];

        let files = facts_here(&paths, &record);
        let mut w = Writes::new(&files, &backups);
        w.record_path = &record;
        for p in paths {
            assert!(w.file(p, format!("ours at {p}\n"), 0o644, None, false), "{p}");
        }
        assert_eq!(w.copies, [own.clone(), link.clone()]);
        let actions = w.into_actions();
        let (Action::Change(keep), Action::Change(rec)) = (&actions[0], &actions[4]) else { panic!("{actions:?}") };
        let said = run_here(keep);
        assert!(said.contains(&format!("kept {own} as {backups}{own}")), "{said}");
        let copy = format!("{backups}{own}");
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "their own\n");
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_link(format!("{backups}{link}")).unwrap().to_str(), Some("/srv/their.yml"));
        assert!(!std::path::Path::new(&format!("{backups}{empty}")).exists());
        let dir_mode = std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // Again (a retried step): the same copies are kept, nothing fails.
        assert!(run_here(keep).contains("already kept"));

        // The writes (as the upload would), then the record.
        for p in paths {
            std::fs::remove_file(p).unwrap();
            std::fs::write(p, format!("ours at {p}\n")).unwrap();
        }
        run_here(rec);
        assert_eq!(std::fs::metadata(&record).unwrap().permissions().mode() & 0o777, 0o600);
        let files = facts_here(&paths, &record);
        assert!(paths.iter().all(|p| files.ours(p)), "{files:?}");
        let mut w = Writes::new(&files, &backups);
        for p in paths {
            assert!(w.file(p, "changed settings\n", 0o644, None, false));
        }
        assert_eq!(w.copies(), None, "ours: replaced with no copy");

        // A record kept for other paths; a copy that differs is not replaced.
        std::fs::write(&own, "edited by hand\n").unwrap();
        let files = facts_here(&paths, &record);
        assert!(!files.ours(&own) && files.ours(&empty));
        let (ok, said) = try_here(keep);
        assert!(!ok && said.contains("exists and differs"), "a different copy already there stops the step: {said}");
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "their own\n");
    }
}
