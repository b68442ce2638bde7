//! Shell functions more than one script needs (scripts/lib/*.sh). Each
//! lives in one file and is put in front of every script that calls it when
//! that script's command is built: the host runs a script from stdin, so it
//! cannot source a file of ours, and every script sent is whole.

pub const DEBIAN_SOURCES_REWRITE_SH: &str = include_str!("../scripts/lib/debian-sources-rewrite.sh");
pub const COMPOSE_ENV_FILES_SH: &str = include_str!("../scripts/lib/compose-env-files.sh");
pub const RUN_IMAGEUP_SH: &str = include_str!("../scripts/lib/run-imageup.sh");

/// Every library, by its path under scripts/ (the tests run shellcheck over
/// each alone, and over each script as sent, libraries included).
pub const LIBRARIES: &[(&str, &str)] = &[
    ("lib/debian-sources-rewrite.sh", DEBIAN_SOURCES_REWRITE_SH),
    ("lib/compose-env-files.sh", COMPOSE_ENV_FILES_SH),
    ("lib/run-imageup.sh", RUN_IMAGEUP_SH),
];

/// `libs`, then `script`: one script, as sent.
pub fn with(libs: &[&str], script: &str) -> String {
    let mut text = String::new();
    for lib in libs {
        text.push_str(lib);
        text.push('\n');
    }
    text.push_str(script);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions a library defines (`name() {` at the start of a line).
    fn defined(text: &str) -> Vec<&str> {
        text.lines().filter_map(|l| l.split_once("() {").map(|(name, _)| name)).filter(|n| !n.contains(' ')).collect()
    }

    /// A script that calls a library's function is sent with that library
    /// (shellcheck does not know an undefined function from a command).
    #[test]
    fn every_script_is_sent_with_the_libraries_it_calls() {
        for (lib, lib_text) in LIBRARIES {
            let functions = defined(lib_text);
            assert!(!functions.is_empty(), "{lib} defines no function");
            for (name, text) in crate::scripts() {
                if name.starts_with("lib/") {
                    continue;
                }
                for f in &functions {
                    let calls = text.lines().any(|l| {
                        let code = l.split('#').next().unwrap_or("");
                        code.contains(f) && !code.contains(&format!("{f}() {{"))
                    });
                    if calls {
                        assert!(text.contains(lib_text), "{name} calls {f} but is sent without {lib}");
                        assert_eq!(text.matches(&format!("\n{f}() {{")).count(), 1, "{name} defines {f} more than once");
                    }
                }
            }
        }
    }
}
