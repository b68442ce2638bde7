//! Checks of the person's input, made once when the command line resolves
//! it, before anything connects: bad input changes nothing on the host.
//! Values that pass can go into a template, a compose file or a shell
//! variable without breaking its syntax.

use std::net::{Ipv4Addr, Ipv6Addr};

/// At most this many characters of a refused value are shown back.
const SHOWN_CHARS: usize = 64;

/// A value as an error message shows it back: quoted, escaped (a newline
/// shows as `\n`), and cut short when long.
pub fn shown(v: &str) -> String {
    let n = v.chars().count();
    if n <= SHOWN_CHARS {
        format!("{v:?}")
    } else {
        let head: String = v.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({n} characters)")
    }
}

/// The env files a person may supply with `--env-file NAME=PATH`.
pub const SUPPLIED_ENV_FILES: &[&str] =
    &["llm.env", "maps.env", "azure-api.env", "apis-and-selection.env", "healthcheck.env", "hf.env", "dockerhub.env"];
/// What dockerhub.env must set (non-empty): the Docker Hub account root's
/// Docker logs in with.
pub const DOCKERHUB_KEYS: &[&str] = &["DOCKERHUB_USERNAME", "DOCKERHUB_TOKEN"];
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
        return Err(format!("{} is not a host name", shown(d)));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("{} is an IP address: Let's Encrypt certifies host names only", shown(d)));
    }
    Ok(())
}

pub fn check_email(e: &str) -> Result<(), String> {
    // RFC 5321's limit for a whole address.
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty()
                && user.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
                && check_domain(host).is_ok()
        });
    if ok { Ok(()) } else { Err(format!("{} is not an e-mail address", shown(e))) }
}

/// An absolute path compose and imageup can use (COMPOSE_FILE is
/// colon-separated, imageup.env is split on white space).
pub fn check_base_dir(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.len() <= 255
        && !p.ends_with('/')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{} is not an absolute path of letters, digits, '/', '.', '_' and '-' (at most 255)", shown(p)))
    }
}

/// A Docker image tag.
pub fn check_registry_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{} is not an image tag (letters, digits, '_', '.', '-'; at most 128)", shown(t)))
    }
}

/// The IMAGE-server repository: git over https (a fresh host has no
/// GitHub key, and a clone over plain http could be swapped on the way for
/// one that runs anything as root), or `file:///PATH`, a clone already on
/// the host. It also goes into imageup.env, which imageup splits on white
/// space and quotes.
pub fn check_repo_url(u: &str) -> Result<(), String> {
    if let Some(local) = check_local_file_url(u, false) {
        return local;
    }
    check_network_url(u, &["https"]).map_err(|e| {
        format!("{e} (git clones over HTTPS: a fresh host has no GitHub key, and plain http can be tampered with)")
    })
}

pub fn check_branch(b: &str) -> Result<(), String> {
    let ok = !b.is_empty()
        && b.len() <= 255
        && !b.starts_with(['-', '/'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && b.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{} is not a branch name", shown(b))) }
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
    if name == "dockerhub.env" {
        dockerhub_login(text)?;
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

/// dockerhub.env's account: DOCKERHUB_USERNAME a Docker ID (4 to 30
/// lowercase letters and digits, as Docker Hub makes them), DOCKERHUB_TOKEN
/// a personal access token (or the password): one line, no spaces, as
/// `docker login --password-stdin` reads it. Errors never show the token.
pub fn dockerhub_login(text: &str) -> Result<crate::settings::DockerHubLogin, String> {
    let entries = parse_env_file(text)?;
    let last = |key: &str| entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_string());
    let lacking: Vec<&str> = DOCKERHUB_KEYS.iter().copied().filter(|k| last(k).is_none_or(|v| v.is_empty())).collect();
    if !lacking.is_empty() {
        return Err(format!(
            "{} not set (DOCKERHUB_USERNAME your Docker ID, DOCKERHUB_TOKEN a personal access token from Docker Hub's \
             account settings, read-only is enough)",
            lacking.join(", ")
        ));
    }
    if let Some((key, _)) = entries.iter().find(|(k, _)| !DOCKERHUB_KEYS.contains(&k.as_str())) {
        return Err(format!("{key} is not a dockerhub.env key (it takes DOCKERHUB_USERNAME and DOCKERHUB_TOKEN)"));
    }
    let username = last("DOCKERHUB_USERNAME").unwrap_or_default();
    let id_ok =
        (4..=30).contains(&username.len()) && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !id_ok {
        return Err(format!(
            "DOCKERHUB_USERNAME {} is not a Docker ID (4 to 30 lowercase letters and digits; not an e-mail address)",
            shown(&username)
        ));
    }
    let token = last("DOCKERHUB_TOKEN").unwrap_or_default();
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) || token.len() > 512 {
        return Err("DOCKERHUB_TOKEN has a space or a control character, or is longer than 512 characters \
                    (a token is one word; its value is not shown)"
            .into());
    }
    Ok(crate::settings::DockerHubLogin { username, token })
}

/// A Docker Hub mirror for daemon.json's registry-mirrors, checked as
/// dockerd checks one (it refuses to start on a bad one): http:// or
/// https://, a host, no user name or password (Docker takes none there; a
/// mirror that needs a login is not one it can use), no query or fragment.
pub fn check_registry_mirror(u: &str) -> Result<(), String> {
    check_network_url(u, &["https", "http"])?;
    if u.contains(['?', '#']) {
        return Err(format!("{} has a query or fragment, which dockerd refuses in a mirror", shown(u)));
    }
    Ok(())
}

/// An ACME directory URL: https (the account key and certificates go
/// there), and safe in Traefik's command line in a compose file.
pub fn check_acme_server(u: &str) -> Result<(), String> {
    check_network_url(u, &["https"])
}

/// A URL a service of the stack calls (http:// or https://: a site's own
/// Overpass or Nominatim may answer on its own network), safe to write into
/// the site's compose file.
pub fn check_service_url(u: &str) -> Result<(), String> {
    check_network_url(u, &["http", "https"])
}

/// An Ubuntu NVIDIA driver branch (the package is nvidia-driver-BRANCH):
/// the branch's number, then `-server` and/or `-open` as Ubuntu names them.
pub fn check_driver_branch(b: &str) -> Result<(), String> {
    let rest = b.trim_start_matches(|c: char| c.is_ascii_digit());
    let digits = b.len() - rest.len();
    if (3..=4).contains(&digits) && ["", "-server", "-open", "-server-open"].contains(&rest) {
        Ok(())
    } else {
        Err(format!("{} is not a driver branch (a number such as 580, then -server and/or -open)", shown(b)))
    }
}

/// An apt source, "URI SUITE [COMPONENT...]", written into a sources.list
/// file: the URI https (apt checks the packages' signatures, and https keeps
/// the index from being replayed or read on the way), or a repository on the
/// host itself (`file:/PATH`); the suite and components plain words. apt's
/// `$(ARCH)` and the `{codename}` of --docker-repo may stand anywhere.
pub fn check_apt_source(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{} has a control character (a newline?): one source line only", shown(s)));
    }
    let filled = s.replace("$(ARCH)", "ARCH").replace("{codename}", "codename");
    let words: Vec<&str> = filled.split_whitespace().collect();
    let Some((uri, rest)) = words.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(format!("{}: expected \"URI SUITE [COMPONENT...]\"", shown(s)));
    };
    match check_local_file_url(uri, true) {
        Some(local) => local?,
        None => check_network_url(uri, &["https"]).map_err(|e| format!("the URI: {e}"))?,
    }
    for word in rest {
        if !word.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)) {
            return Err(format!(
                "{}: the suite and components are words of letters, digits, '.', '_', '-' and '/'",
                shown(word)
            ));
        }
    }
    Ok(())
}

/// The URL of a signing key, fetched by curl on the host: https (a key
/// fetched over plain http could be swapped on the way, and with it every
/// package the repository serves), or `file:/PATH`, a key on the host.
pub fn check_key_url(u: &str) -> Result<(), String> {
    if let Some(local) = check_local_file_url(u, true) {
        return local;
    }
    check_network_url(u, &["https"])
}

/// What a URL with a user name or password is told (never showing it).
pub const URL_CREDENTIALS: &str = "the URL carries a user name or password (USER:PASSWORD@HOST), not shown here";

/// True when `s` holds a URL with a user name or password before its host.
pub fn carries_credentials(s: &str) -> bool {
    s.split_whitespace().any(|word| {
        word.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@'))
        })
    })
}

/// A URL to a host on the network: one of `schemes`, a host name or an IP
/// address (IPv6 in brackets), an optional port, then a path, query and
/// fragment of RFC 3986's characters (`%XX` escapes included) other than
/// `$` and `'`, which the compose files and imageup.env the URLs go into
/// would read. No user name or password: credentials go in files.
fn check_network_url(u: &str, schemes: &[&str]) -> Result<(), String> {
    let names: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    let kind = names.join(" or ");
    if carries_credentials(u) {
        return Err(URL_CREDENTIALS.to_string());
    }
    let not = |why: &str| Err(format!("{} is not an {kind} URL: {why}", shown(u)));
    if u.len() > 2048 {
        return not("longer than 2048 characters");
    }
    let Some(rest) = names.iter().find_map(|n| u.strip_prefix(n.as_str())) else {
        return not(&format!("it does not start with {kind}"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => {
                if addr.parse::<Ipv6Addr>().is_err() {
                    return not("the address in [] is not an IPv6 address");
                }
                (None, after.strip_prefix(':'))
            }
            None => return not("'[' without ']'"),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        },
    };
    if let Some(host) = host
        && !is_host_name(host)
    {
        return not("no host name or IP address after the scheme");
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return not("the port is not a number from 1 to 65535");
    }
    let mut chars = tail.chars();
    while let Some(c) = chars.next() {
        let fine = c.is_ascii_alphanumeric() || "-._~!&()*+,;=:@/?#".contains(c);
        let escape = c == '%'
            && chars.next().is_some_and(|h| h.is_ascii_hexdigit())
            && chars.next().is_some_and(|h| h.is_ascii_hexdigit());
        if !fine && !escape {
            return not(&format!(
                "{c:?} cannot stand in a URL's path (escape it as %XX; spaces, quotes, '$', braces and non-ASCII letters are refused)"
            ));
        }
    }
    Ok(())
}

/// The host (and port) an https:// URL names, as git's credential lookup
/// sees it (`HOST` or `HOST:PORT`); None for another scheme.
pub fn https_host(u: &str) -> Option<&str> {
    let rest = u.strip_prefix("https://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(authority.rsplit_once('@').map_or(authority, |(_, host)| host))
}

/// A repository credential (`--repo-credentials`), checked: the host it is
/// for, and the line git's credential store reads.
pub struct GitCredential {
    /// `HOST` or `HOST:PORT`, as in the line.
    pub host: String,
    /// `https://USER:TOKEN@HOST\n`, the user name and token escaped exactly
    /// as git's store escapes them when it writes the line back (every byte
    /// but RFC 3986's unreserved characters as `%xx`, lowercase): a fetch
    /// that rewrites the file leaves it as it was.
    pub line: String,
}

/// A repository credentials file as git's credential store keeps one
/// (~/.git-credentials): one line `https://USER:TOKEN@HOST` (a port may
/// follow the host), `%XX` escapes in the user name and token; blank lines
/// and `#` comments around it. No path: the store matches the host alone,
/// as git asks it. Errors name the line, never its content.
pub fn parse_git_credential(text: &str) -> Result<GitCredential, String> {
    let mut lines =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((n, line)) = lines.next() else {
        return Err("no credential in it (one line: https://USER:TOKEN@HOST)".into());
    };
    if let Some((second, _)) = lines.next() {
        return Err(format!(
            "line {second}: a second credential (one is used, for the repository's host: give that one only)"
        ));
    }
    let format = "https://USER:TOKEN@HOST, as git's credential store writes it";
    let Some(rest) = line.strip_prefix("https://") else {
        return Err(format!("line {n}: not {format}"));
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "line {n}: a path after the host (git's store matches the host alone): write {format}, without the repository's path"
        ));
    }
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Err(format!("line {n}: no USER:TOKEN@ before the host: write {format}"));
    };
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    if !is_host_name(name) || !(port.is_empty() || port.parse::<u16>().is_ok_and(|p| p > 0)) {
        return Err(format!("line {n}: no host name (and port) after the '@': write {format}"));
    }
    let Some((user, token)) = userinfo.split_once(':') else {
        return Err(format!("line {n}: no ':' between the user name and the token: write {format}"));
    };
    let unescaped = |what: &str, v: &str| {
        percent_decode(v).ok_or_else(|| {
            format!(
                "line {n}: the {what} holds a character a URL cannot (write '@', ':', '/', spaces and the like as %XX)"
            )
        })
    };
    let (user, token) = (unescaped("user name", user)?, unescaped("token", token)?);
    if user.is_empty() || token.is_empty() {
        return Err(format!("line {n}: the user name or the token is empty: write {format}"));
    }
    if user.iter().chain(&token).any(|b| b.is_ascii_control()) {
        return Err(format!("line {n}: a control character (an escaped newline?) in the user name or token"));
    }
    Ok(GitCredential {
        host: host.to_string(),
        line: format!("https://{}:{}@{host}\n", git_escaped(&user), git_escaped(&token)),
    })
}

/// A URL's user name or token, its `%XX` escapes decoded; None when it holds
/// a character that must be escaped there (RFC 3986's userinfo: unreserved
/// characters, sub-delims, ':' and escapes).
fn percent_decode(v: &str) -> Option<Vec<u8>> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|h| h.is_ascii_hexdigit()))?);
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b)) {
            return None;
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

/// As git's credential store escapes a user name or token.
fn git_escaped(v: &[u8]) -> String {
    v.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// A host name (letters, digits and hyphens in dot-separated labels of at
/// most 63, at most 253 in all; one label is fine: a name on the site's own
/// network) or an IPv4 address.
pub fn is_host_name(h: &str) -> bool {
    if h.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let labels: Vec<&str> = h.split('.').collect();
    h.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels.last().is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

/// `file:///PATH` (or, where apt or curl reads it and `single_slash`,
/// `file:/PATH`): a file on the host itself, which carries no network trust
/// (whoever can write it there is root already); `None` when `u` is not a
/// file: URL. The path: an absolute one of letters, digits and `/._-+~`.
fn check_local_file_url(u: &str, single_slash: bool) -> Option<Result<(), String>> {
    let rest = u.strip_prefix("file:")?;
    let path = match rest.strip_prefix("//") {
        Some(after) => after,
        None if single_slash => rest,
        None => return Some(Err(format!("{}: write a file on the host as file:///PATH", shown(u)))),
    };
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.split('/').any(|c| c == "..")
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+~".contains(c));
    Some(if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a file: URL of an absolute path on the host (letters, digits, '/', '.', '_', '-', '+', '~')",
            shown(u)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs that carry trust are https (or a file on the host), every URL
    /// is refused with credentials in it (and the message does not show
    /// them), and nothing outside a URL's characters gets through.
    #[test]
    fn urls() {
        use crate::settings::Config;
        let d = Config::default();
        for ok in [d.nvidia_repo_key.as_str(), d.docker_repo_key.as_str(), "file:///srv/k.asc", "file:/srv/k.asc"] {
            assert_eq!(check_key_url(ok), Ok(()), "{ok}");
        }
        let credentials = "https://me:s3cr3t@example.org/key";
        assert_eq!(check_key_url(credentials), Err(URL_CREDENTIALS.to_string()));
        assert!(carries_credentials(credentials) && !carries_credentials("https://example.org/a@b"));
        for bad in [
            "http://example.org/key",
            "file://host/k.asc",
            "file:///a/../b",
            "https://{{x}}/k",
            "https://example.org/{{k}}",
            "https://example.org/a b",
            "https://example.org/a\nb",
            "ftp://example.org/k",
            "",
            "https://",
            "https://example.org:0/k",
            "https://example.org:99999/k",
            "https://-x.org/k",
            "https://example.org/%zz",
        ] {
            assert!(check_key_url(bad).is_err(), "{bad}");
        }
        for ok in [
            d.nvidia_repo.as_str(),
            d.docker_repo.as_str(),
            "file:/srv/standin-signed /",
            "https://d.example.org/debian bookworm stable",
        ] {
            assert_eq!(check_apt_source(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.org/ /",
            "https://example.org/ stable\ndeb [trusted=yes] http://evil.example.org/ /",
            "https://example.org/",
            "https://example.org/ st[able",
            "{{x}} y",
            "https://me:tok@example.org/ /",
        ] {
            assert!(check_apt_source(bad).is_err(), "{bad}");
        }
        assert!(!check_apt_source("https://me:tok@example.org/ /").unwrap_err().contains("tok"));
        for ok in [crate::settings::ImageConfig::default().repo_url.as_str(), "file:///srv/IMAGE-server.git"] {
            assert_eq!(check_repo_url(ok), Ok(()), "{ok}");
        }
        for bad in ["http://github.com/x/y.git", "file:/srv/x", "git@github.com:x/y.git", "https://github.com/x/y'.git"]
        {
            assert!(check_repo_url(bad).is_err(), "{bad}");
        }
        let token = check_repo_url("https://ghp_s3cr3t@github.com/x/y.git").unwrap_err();
        assert!(token.contains("USER:PASSWORD@HOST") && !token.contains("s3cr3t"), "{token}");
        for ok in ["http://overpass/api/interpreter", "https://[2001:db8::1]:8443/x?y=1&z=%20", "https://203.0.113.7/"]
        {
            assert_eq!(check_service_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://example.org/{{x}}",
            "https://example.org/$HOME",
            "https://example.org/'",
            "https://\u{e9}.org/",
            "https://[::g]/",
        ] {
            assert!(check_service_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn driver_branches() {
        for ok in ["570-server", "535", "570-server-open", "550-open", "1010"] {
            assert_eq!(check_driver_branch(ok), Ok(()), "{ok}");
        }
        for bad in ["535;rm", "99999999999999999999", "", "570-desktop", "-server", "57"] {
            assert!(check_driver_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_values_are_shown_cut_short() {
        let e = check_registry_tag(&"a".repeat(5000)).unwrap_err();
        assert!(e.contains("... (5000 characters)") && e.len() < 200, "{e}");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }

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

    /// A credentials file: one `https://USER:TOKEN@HOST` line, comments and
    /// blank lines around it, written back as git's store writes it; every
    /// refusal names the line and never shows the token.
    #[test]
    fn a_git_credential_is_one_line_written_as_gits_store_writes_it() {
        let c =
            parse_git_credential("# the lab's deploy token\n\nhttps://x-access-token:ghp_S3cr3t@github.com\n").unwrap();
        assert_eq!(
            (c.host.as_str(), c.line.as_str()),
            ("github.com", "https://x-access-token:ghp_S3cr3t@github.com\n")
        );
        // What git's store writes for the same credential (checked against git 2.47).
        let c = parse_git_credential("https://us%40er:t~o:k%2FenA@git.example.org:8443/").unwrap();
        assert_eq!(c.line, "https://us%40er:t~o%3ak%2fenA@git.example.org:8443\n");
        assert_eq!(c.host, "git.example.org:8443");
        let token = "ghp_S3cr3t";
        for (text, says) in [
            ("", "no credential in it"),
            ("# only a comment\n", "no credential in it"),
            ("https://u:ghp_S3cr3t@github.com\nhttps://u:ghp_S3cr3t@gitlab.com\n", "line 2: a second credential"),
            ("ghp_S3cr3t\n", "line 1: not https://USER:TOKEN@HOST"),
            ("http://u:ghp_S3cr3t@github.com\n", "line 1: not https://"),
            ("https://u:ghp_S3cr3t@github.com/lab/IMAGE-server.git\n", "line 1: a path after the host"),
            ("https://github.com\n", "line 1: no USER:TOKEN@"),
            ("https://ghp_S3cr3t@github.com\n", "line 1: no ':' between"),
            ("https://u:@github.com\n", "the user name or the token is empty"),
            ("https://u:ghp S3cr3t@github.com\n", "the token holds a character"),
            ("https://u:ghp_S3cr3t%zz@github.com\n", "the token holds a character"),
            ("https://u:ghp_S3cr3t%0a@github.com\n", "a control character"),
            ("https://u:ghp_S3cr3t@github_com\n", "no host name"),
            ("https://u:ghp_S3cr3t@github.com:99999\n", "no host name"),
        ] {
            let e = parse_git_credential(text).err().unwrap_or_else(|| panic!("{text:?} taken"));
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains(token) && !e.contains("S3cr3t"), "{e}");
        }
        assert_eq!(https_host("https://github.com/lab/IMAGE-server.git"), Some("github.com"));
        assert_eq!(https_host("https://git.example.org:8443"), Some("git.example.org:8443"));
        assert_eq!(https_host("file:///srv/IMAGE-server"), None);
    }

    /// dockerhub.env: the account, read as compose reads env files; what
    /// cannot work named without the token; a mirror as dockerd takes one.
    #[test]
    fn docker_hub_login_and_mirror() {
        let login =
            dockerhub_login("# ours\nDOCKERHUB_USERNAME = imagebot\nDOCKERHUB_TOKEN=\"dckr_pat_x1\"\n").unwrap();
        assert_eq!((login.username.as_str(), login.token.as_str()), ("imagebot", "dckr_pat_x1"));
        for (text, says) in [
            ("DOCKERHUB_USERNAME=imagebot\n", "DOCKERHUB_TOKEN not set"),
            ("DOCKERHUB_USERNAME=Bot@x.org\nDOCKERHUB_TOKEN=dckr_pat_x1\n", "not a Docker ID"),
            ("DOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN=dckr_pat_x1\nPASSWORD=dckr_pat_x1\n", "PASSWORD is not"),
            ("DOCKERHUB_USERNAME=imagebot\nDOCKERHUB_TOKEN='dckr_pat_x1 2'\n", "has a space"),
        ] {
            let e = dockerhub_login(text).unwrap_err();
            assert!(e.contains(says) && !e.contains("dckr_pat_x1"), "{text:?}: {e}");
            assert_eq!(check_env_file("dockerhub.env", text).unwrap_err(), e);
        }
        for ok in ["https://mirror.gcr.io", "http://10.0.0.5:5000", "https://mirror.example.org/dockerhub/"] {
            assert_eq!(check_registry_mirror(ok), Ok(()), "{ok}");
        }
        for bad in ["ftp://m.example.org", "m.example.org", "https://u:p@m.example.org", "https://m.example.org/?a=1"] {
            let e = check_registry_mirror(bad).unwrap_err();
            assert!(!e.contains("u:p"), "{e}");
        }
    }
}
