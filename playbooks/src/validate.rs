//! Checks of the person's input, made once when the command line resolves
//! it, before anything connects: bad input changes nothing on the host.
//! Values that pass can go into a template, a compose file or a shell
//! variable without breaking its syntax.

/// The env files a person may supply with `--env-file NAME=PATH`.
pub const SUPPLIED_ENV_FILES: &[&str] = &["llm.env", "maps.env", "azure-api.env", "apis-and-selection.env"];
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

/// A supplied env file: `KEY=value` lines (blank lines and `#` comments
/// allowed), and for llm.env the LLM settings, non-empty. Errors name the
/// line but never show it: the file holds credentials.
pub fn check_env_file(name: &str, text: &str) -> Result<(), String> {
    let mut keys = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=value", i + 1));
        };
        let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(format!(
                "line {} is not KEY=value (the name before '=' must be letters, digits and '_', with no spaces)",
                i + 1
            ));
        }
        keys.insert(key.to_string(), !value.trim().is_empty());
    }
    if name == "llm.env" {
        let lacking: Vec<&str> = LLM_KEYS.iter().copied().filter(|k| keys.get(*k) != Some(&true)).collect();
        if !lacking.is_empty() {
            return Err(format!(
                "{} not set (each must be non-empty: LLM_URL the OpenAI-compatible base URL ending in /v1, \
                 LLM_API_KEY a key or a placeholder for a server without one, LLM_MODEL a Qwen-VL model)",
                lacking.join(", ")
            ));
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
        let e = check_env_file("maps.env", "A=1\nsecret-value-here\n").unwrap_err();
        assert_eq!(e, "line 2 is not KEY=value");
        let e = check_env_file("maps.env", "A B=secret\n").unwrap_err();
        assert!(e.starts_with("line 1 ") && !e.contains("secret"), "{e}");
        let e = check_env_file("llm.env", "LLM_API_KEY=k\nLLM_MODEL=m\nLLM_URL=\n").unwrap_err();
        assert!(e.starts_with("LLM_URL not set"), "{e}");
        assert!(check_env_file("llm.env", "LLM_URL=http://x/v1\nLLM_API_KEY=k\nLLM_MODEL=m\n").is_ok());
    }
}
