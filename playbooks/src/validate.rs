//! Checks of the person's input, made once when the command line resolves
//! it, before anything connects: bad input changes nothing on the host.
//! Values that pass can go into a template, a compose file or a shell
//! variable without breaking its syntax.

/// The env files a person may supply with `--env-file NAME=PATH`.
pub const SUPPLIED_ENV_FILES: &[&str] =
    &["llm.env", "maps.env", "azure-api.env", "apis-and-selection.env", "healthcheck.env", "hf.env"];
/// What llm.env must set (non-empty): the orchestrator's LLM client.
pub const LLM_KEYS: &[&str] = &["LLM_URL", "LLM_API_KEY", "LLM_MODEL"];

/// A host name the site can be reached at: letters, digits, hyphens in
/// labels of at most 63, at least two labels, at most 253 in all.
pub fn check_domain(d: &str) -> Result<(), String> {
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!("{d:?} is not a host name"));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("{d:?} is an IP address: Let's Encrypt certifies host names only"));
    }
    Ok(())
}

pub fn check_email(e: &str) -> Result<(), String> {
    let ok = e.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty()
            && user.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
            && check_domain(host).is_ok()
    });
    if ok { Ok(()) } else { Err(format!("{e:?} is not an e-mail address")) }
}

/// An absolute path compose and imageup can use (COMPOSE_FILE is
/// colon-separated, imageup.env is split on white space).
pub fn check_base_dir(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.ends_with('/')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{p:?} is not an absolute path of letters, digits, '/', '.', '_' and '-'")) }
}

/// A Docker image tag.
pub fn check_registry_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok { Ok(()) } else { Err(format!("{t:?} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")) }
}

pub fn check_repo_url(u: &str) -> Result<(), String> {
    let scheme_ok = u.starts_with("https://") || u.starts_with("file:///") || u.starts_with("http://");
    if !scheme_ok || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{u:?} is not an HTTPS URL (a fresh host has no GitHub key, so the clone goes over HTTPS)"
        ));
    }
    Ok(())
}

pub fn check_branch(b: &str) -> Result<(), String> {
    let ok = !b.is_empty()
        && !b.starts_with(['-', '/'])
        && !b.contains("..")
        && b.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{b:?} is not a branch name")) }
}

/// An env file as compose's env_file reader takes it, the entries it
/// yields in order: `KEY=value` lines, also `KEY = value` (the repository's
/// config README writes it so), `export KEY=value`, `KEY: value`, a value in
/// single quotes (literal) or double quotes (`\"` inside, several lines
/// allowed), an unquoted value ending at ` #` (a comment) and trimmed,
/// blank lines and `#` comments; a line with a name alone takes the
/// variable from compose's environment (none here: no entry). Names are
/// letters, digits and `_ . - [ ]`. What compose refuses is refused: another
/// character in a name, a space inside it, an unterminated quote. Errors
/// name the line, never its content (the files hold credentials).
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut entries = Vec::new();
    let (mut i, mut line) = (0, 1);
    loop {
        // The next statement: past white space and comments.
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '#') {
            if chars[i] == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            if chars[i] == '\n' {
                line += 1;
            }
            i += 1;
        }
        if i >= chars.len() {
            return Ok(entries);
        }
        // `export ` before the name.
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        if rest.starts_with("export") && rest.chars().nth(6).is_some_and(|c| c == ' ' || c == '\t') {
            i += 6;
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
        }
        // The name, up to '=', ':' or the end of the line (a name alone).
        let start = i;
        let mut alone = true;
        while i < chars.len() {
            let c = chars[i];
            if c == '=' || c == ':' {
                alone = false;
                break;
            }
            if c == '\n' {
                break;
            }
            if !(c.is_whitespace() || c.is_alphanumeric() || "_.-[]".contains(c)) {
                return Err(format!(
                    "line {line}: a variable name has a character compose refuses (letters, digits, _ . - [ ] only)"
                ));
            }
            i += 1;
        }
        let key: String = chars[start..i].iter().collect::<String>().trim_end().to_string();
        if key.contains(char::is_whitespace) {
            return Err(format!(
                "line {line}: a variable name contains a space (KEY = value is fine, KEY NAME = value is not)"
            ));
        }
        if alone {
            // Taken from compose's environment, where there is none of it.
            continue;
        }
        i += 1;
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        let value = match chars.get(i) {
            Some(&quote) if quote == '"' || quote == '\'' => {
                let first = line;
                let mut value = String::new();
                let mut escaped = false;
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(format!("line {first}: a quoted value is not terminated"));
                    };
                    i += 1;
                    if c == '\n' {
                        line += 1;
                    }
                    if escaped {
                        escaped = false;
                        if c != quote {
                            value.push('\\');
                        }
                        value.push(c);
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == quote {
                        break;
                    } else {
                        value.push(c);
                    }
                }
                // What follows the closing quote on its line: a comment, or
                // (as compose reads it) names alone, which add nothing.
                if quote == '"' { expand_escapes(&value) } else { value }
            }
            _ => {
                let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p);
                let raw: String = chars[i..end].iter().collect();
                i = end;
                let value = raw.split(" #").next().unwrap_or_default();
                value.trim_end().to_string()
            }
        };
        entries.push((key, value));
    }
}

/// A double-quoted value's escapes, as compose expands them: `\n` and `\r`
/// become the characters, then a backslash before anything but `$` goes.
fn expand_escapes(value: &str) -> String {
    let pass = |text: &str, each: &dyn Fn(char) -> String| {
        let mut out = String::new();
        let mut it = text.chars();
        while let Some(c) = it.next() {
            match (c, it.clone().next()) {
                ('\\', Some(next)) => {
                    it.next();
                    out.push_str(&each(next));
                }
                _ => out.push(c),
            }
        }
        out
    };
    let first = pass(value, &|c| match c {
        'n' => "\n".into(),
        'r' => "\r".into(),
        other => format!("\\{other}"),
    });
    pass(&first, &|c| if c == '$' { "\\$".into() } else { c.to_string() })
}

/// A supplied env file, read as compose reads it ([`parse_env_file`]), and
/// for llm.env the LLM settings, non-empty. Errors name the line but never
/// show it: the file holds credentials.
pub fn check_env_file(name: &str, text: &str) -> Result<(), String> {
    let entries = parse_env_file(text)?;
    // A key's value as compose takes it: the last one set.
    let last = |key: &str| entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    if name == "llm.env" {
        let set = |k: &str| last(k).is_some_and(|v| !v.is_empty());
        let lacking: Vec<&str> = LLM_KEYS.iter().copied().filter(|k| !set(k)).collect();
        if !lacking.is_empty() {
            return Err(format!(
                "{} not set (each must be non-empty: LLM_URL the OpenAI-compatible base URL ending in /v1, \
                 LLM_API_KEY a key or a placeholder for a server without one, LLM_MODEL a Qwen-VL model)",
                lacking.join(", ")
            ));
        }
    }
    if name == "hf.env" && last("HF_TOKEN").is_none_or(str::is_empty) {
        return Err("HF_TOKEN not set (a Hugging Face access token that may read the gated model)".into());
    }
    if name == "healthcheck.env" {
        // IMAGE's scripts/healthcheck exports its lines through xargs, not
        // as compose reads them: plain KEY=value only.
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let plain = line.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !v.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | '#'))
            });
            if !plain {
                return Err(format!(
                    "line {}: IMAGE's scripts/healthcheck reads plain KEY=value lines only (no spaces, quotes, `export ` or trailing comments), e.g. SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...",
                    n + 1
                ));
            }
        }
    }
    Ok(())
}

/// An ACME directory URL (https, no white space or quotes: it goes into
/// Traefik's command line in a compose file).
pub fn check_acme_server(u: &str) -> Result<(), String> {
    let ok = u.strip_prefix("https://").is_some_and(|rest| !rest.is_empty())
        && !u.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'');
    if ok { Ok(()) } else { Err(format!("{u:?} is not an https:// URL")) }
}

/// A URL a service of the stack calls (http:// or https://), safe to write
/// into the site's compose file: no spaces, quotes or backslashes, and no
/// `$` (compose would read it as a variable).
pub fn check_service_url(u: &str) -> Result<(), String> {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !u.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '$'));
    if ok { Ok(()) } else { Err(format!("{u:?} is not an http:// or https:// URL compose can take")) }
}

/// An Ubuntu NVIDIA server driver branch (the package is nvidia-driver-BRANCH).
pub fn check_driver_branch(b: &str) -> Result<(), String> {
    if b.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        Ok(())
    } else {
        Err(format!("{b:?} is not a driver branch"))
    }
}

/// An apt source, "URI SUITE [COMPONENT...]".
pub fn check_apt_source(s: &str) -> Result<(), String> {
    if s.split_whitespace().count() < 2 {
        return Err(format!("{s:?}: expected \"URI SUITE [COMPONENT...]\""));
    }
    Ok(())
}

/// The URL of a signing key, fetched by curl on the host.
pub fn check_key_url(u: &str) -> Result<(), String> {
    if u.starts_with("https://") || u.starts_with("file:///") || u.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{u:?} is not a URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_servers() {
        assert!(check_acme_server("https://acme-staging-v02.api.letsencrypt.org/directory").is_ok());
        for bad in ["http://x/dir", "https://", "https://x/ dir", "https://x/\"dir", "acme.example.org"] {
            assert!(check_acme_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert!(check_domain("image.example.org").is_ok());
        for bad in ["localhost", "-a.example.org", "a..org", "203.0.113.7", "a b.org", "image_x.org", "x.org/"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_file_checks_name_the_line_not_its_content() {
        assert!(check_env_file("maps.env", "# c\n\nA=1\nB=\n").is_ok());
        let e = check_env_file("maps.env", "A=1\nsecret$value\n").unwrap_err();
        assert!(e.starts_with("line 2: ") && !e.contains("secret"), "{e}");
        let e = check_env_file("maps.env", "A B=secret\n").unwrap_err();
        assert!(e.starts_with("line 1: ") && !e.contains("secret"), "{e}");
        let e = check_env_file("maps.env", "A=1\n\nB=\"secret\n").unwrap_err();
        assert!(e.starts_with("line 3: a quoted value is not terminated") && !e.contains("secret"), "{e}");
        let e = check_env_file("llm.env", "LLM_API_KEY=k\nLLM_MODEL=m\nLLM_URL=\n").unwrap_err();
        assert!(e.starts_with("LLM_URL not set"), "{e}");
        assert!(check_env_file("llm.env", "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").is_ok());
        assert!(check_env_file("hf.env", "HF_TOKEN=hf_secret\n").is_ok());
        let e = check_env_file("hf.env", "HF_TOKEN=\nOTHER=hf_secret\n").unwrap_err();
        assert!(e.starts_with("HF_TOKEN not set") && !e.contains("hf_secret"), "{e}");
        // As the repository's config README writes it.
        assert!(check_env_file("llm.env", "LLM_URL = http://x/v1\nLLM_API_KEY = k\nLLM_MODEL = m\n").is_ok());
    }

    /// compose's reader, case by case (the same table runs against the real
    /// compose in tests/it/env_files.rs).
    #[test]
    fn env_files_parse_as_compose_reads_them() {
        let parsed = |t: &str| parse_env_file(t).unwrap();
        let one = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(parsed("export  KEY = \"v\" # c\n"), one("KEY", "v"));
        assert_eq!(parsed("KEY: yaml\n"), one("KEY", "yaml"));
        assert_eq!(parsed("KEY=value#not a comment\n"), one("KEY", "value#not a comment"));
        assert_eq!(parsed("KEY='a\\nb'\n"), one("KEY", "a\\nb"));
        assert_eq!(parsed("KEY=\"a \\\" b\"\n"), one("KEY", "a \" b"));
        assert_eq!(parsed("KEY=\"multi\\nline\"\n"), one("KEY", "multi\nline"));
        assert_eq!(parsed("KEY=\"multi\\\\nline\"\n"), one("KEY", "multi\\nline"));
        assert_eq!(parsed("sk-abc123\n"), vec![], "a name alone: from compose's environment");
    }
}
