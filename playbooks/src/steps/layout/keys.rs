//! Services that read keys of their own from a config/*.env file when they
//! start and exit without them: with the empty file the layout creates, "every
//! service running" never holds, so the site override leaves them off
//! (`deploy.replicas: 0`, as `--no-llm` does for the LLM's callers) and the
//! stack's checks do not wait for them, each named with what is missing.
//!
//! Which services read such a file is the clone's compose files' to say (the
//! stack's facts find them there, with the names each file sets on the
//! server, never a value); which keys a service cannot start without is in
//! its code, not in its compose file, so that is [`KEYED_ENV_FILES`]'s.

use std::collections::{BTreeMap, BTreeSet};

use crate::validate::parse_env_file;

/// A config/*.env file whose readers exit at start-up without these keys.
pub struct KeyedEnvFile {
    pub name: &'static str,
    /// Each must be set; an empty value counts as set.
    pub keys: &'static [&'static str],
    /// What a server goes without while they are missing.
    pub loss: &'static str,
}

/// Read from IMAGE-server (main, May 2026).
pub const KEYED_ENV_FILES: [KeyedEnvFile; 1] = [KeyedEnvFile {
    name: "apis-and-selection.env",
    // The OCR preprocessor (preprocessors/ocr, ocr-clouds-preprocessor in
    // the test and default profiles) reads both from its environment as it
    // loads, whichever cloud service its CLOUD_SERVICE picks: either one
    // absent and its worker fails to boot, so the container exits. An
    // empty one starts (the service not picked needs no real key).
    keys: &["AZURE_API_KEY", "FREEOCR_API_KEY"],
    loss: "no text read from graphics",
}];

/// A service left off for want of keys its env file does not set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeylessService {
    pub service: String,
    /// The config/*.env file it reads them from.
    pub env_file: String,
    /// The keys that file does not set.
    pub missing: Vec<String>,
}

impl KeylessService {
    /// "SERVICE (no KEY, KEY in config/FILE: LOSS; give --env-file FILE=PATH)".
    pub fn describe(&self) -> String {
        let loss = KEYED_ENV_FILES.iter().find(|k| k.name == self.env_file).map(|k| k.loss).unwrap_or("");
        format!(
            "{} (no {} in config/{}: {loss}; give --env-file {}=PATH)",
            self.service,
            self.missing.join(", "),
            self.env_file,
            self.env_file
        )
    }
}

/// The names an env file sets, read as compose reads it (a name alone sets
/// nothing); none when compose would refuse it.
pub fn names_set(content: &[u8]) -> BTreeSet<String> {
    parse_env_file(&String::from_utf8_lossy(content))
        .map(|entries| entries.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default()
}

/// The services that cannot start for want of keys. `readers`: the
/// services that read each config/*.env file, by file name (the stack's
/// facts); `set`: the names a file sets, by file name (the server's, or
/// one given on this run).
pub fn keyless(readers: &BTreeMap<String, Vec<String>>, set: &dyn Fn(&str) -> BTreeSet<String>) -> Vec<KeylessService> {
    let mut off = Vec::new();
    for keyed in &KEYED_ENV_FILES {
        let Some(services) = readers.get(keyed.name).filter(|s| !s.is_empty()) else { continue };
        let names = set(keyed.name);
        let missing: Vec<String> = keyed.keys.iter().filter(|k| !names.contains(**k)).map(|k| k.to_string()).collect();
        if missing.is_empty() {
            continue;
        }
        for service in services {
            if !off.iter().any(|o: &KeylessService| o.service == *service) {
                off.push(KeylessService {
                    service: service.clone(),
                    env_file: keyed.name.to_string(),
                    missing: missing.clone(),
                });
            }
        }
    }
    off.sort_by(|a, b| a.service.cmp(&b.service));
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            ("apis-and-selection.env".to_string(), vec!["ocr-clouds-preprocessor".to_string()]),
            ("maps.env".to_string(), vec!["openstreetmap".to_string()]),
        ])
    }

    /// Both keys must be set for the OCR service to start, an empty value
    /// being set (it starts, as IMAGE's does); a name alone sets nothing.
    #[test]
    fn the_ocr_service_is_off_until_both_keys_are_set() {
        let with = |text: &'static str| keyless(&readers(), &|_| names_set(text.as_bytes()));
        let off = with("");
        assert_eq!(
            off,
            [KeylessService {
                service: "ocr-clouds-preprocessor".into(),
                env_file: "apis-and-selection.env".into(),
                missing: vec!["AZURE_API_KEY".into(), "FREEOCR_API_KEY".into()],
            }]
        );
        assert_eq!(
            off[0].describe(),
            "ocr-clouds-preprocessor (no AZURE_API_KEY, FREEOCR_API_KEY in config/apis-and-selection.env: \
             no text read from graphics; give --env-file apis-and-selection.env=PATH)"
        );
        assert_eq!(with("AZURE_API_KEY = k\nFREEOCR_API_KEY\n")[0].missing, ["FREEOCR_API_KEY"]);
        assert!(with("export AZURE_API_KEY=k\nFREEOCR_API_KEY=\nCLOUD_SERVICE=AZURE_READ\n").is_empty());
        // Not read by any service of the profile (production): nothing off.
        let none = BTreeMap::from([("apis-and-selection.env".to_string(), Vec::new())]);
        assert!(keyless(&none, &|_| BTreeSet::new()).is_empty());
    }
}
