//! Files the steps write on the host (compose files, .env files): rendered
//! from templates beside each step, compared with the host's copy by sha256
//! and mode (the files facts, in the facts round trip), and uploaded only
//! when they differ.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::facts::{FactsScript, RawFacts};
use crate::plan::Action;

pub const FILES_FACTS_SH: &str = include_str!("files-facts.sh");

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

/// Write `content` to `path` with `mode`, atomically, as root.
pub fn upload(path: String, content: impl Into<Vec<u8>>, mode: u32, secret: bool) -> Action {
    Action::Upload { path, content: content.into(), mode, owner: None, secret }
}

/// Like [`upload`], owned by `owner` (a user name).
pub fn upload_owned(path: String, content: impl Into<Vec<u8>>, mode: u32, owner: &str, secret: bool) -> Action {
    Action::Upload { path, content: content.into(), mode, owner: Some(owner.to_owned()), secret }
}

/// The files facts script (input FILES: the paths the steps write).
pub fn facts_script() -> FactsScript {
    FactsScript::new("template/files-facts.sh", FILES_FACTS_SH).root(&["files_facts"])
}

/// The sha256, octal mode and owner of each watched file that exists.
#[derive(Clone, Debug, Default)]
pub struct FileFacts {
    files: BTreeMap<String, WatchedFile>,
}

#[derive(Clone, Debug, Default)]
struct WatchedFile {
    sha256: String,
    mode: String,
    owner: String,
}

impl FileFacts {
    pub fn parse(raw: &RawFacts) -> FileFacts {
        let files = raw
            .with_prefix("file.")
            .filter(|(_, v)| *v != "absent")
            .filter_map(|(path, v)| {
                let mut words = v.split(' ');
                let (sha256, mode) = (words.next()?.to_owned(), words.next()?.to_owned());
                let owner = words.next().unwrap_or_default().to_owned();
                Some((path.to_string(), WatchedFile { sha256, mode, owner }))
            })
            .collect();
        FileFacts { files }
    }

    /// `path` on the host has exactly `content`, with `mode` ("644").
    pub fn is(&self, path: &str, content: &[u8], mode: &str) -> bool {
        self.files.get(path).is_some_and(|f| f.sha256 == sha256_hex(content) && f.mode == mode)
    }

    /// Like [`FileFacts::is`], and owned by `owner`.
    pub fn is_owned(&self, path: &str, content: &[u8], mode: &str, owner: &str) -> bool {
        self.is(path, content, mode) && self.files.get(path).is_some_and(|f| f.owner == owner)
    }
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
}
