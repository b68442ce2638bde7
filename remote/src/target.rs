//! Where to connect: `[user@]host[:port]`, as ssh spells it.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_PORT: u16 = 22;

/// A user, host and port. Parse it from `[user@]host[:port]`
/// (`admin@203.0.113.7`, `host:2222`, `[::1]:2222`, `::1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub user: String,
    /// A name or an IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn new(user: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Target { user: user.into(), host: host.into(), port }
    }

    pub fn is_root(&self) -> bool {
        self.user == "root"
    }

    /// The host as known_hosts writes it: `host` on port 22, else
    /// `[host]:port`.
    pub fn known_hosts_name(&self) -> String {
        if self.port == DEFAULT_PORT { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) }
    }

    /// `host:port` (`[v6]:port`), for messages about the address alone.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadTarget { input: input.to_string(), reason: reason.to_string() };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace"));
        }
        // A host never contains '@', so the last one separates the user.
        let (user, rest) = match input.rsplit_once('@') {
            Some((u, r)) => {
                if u.is_empty() {
                    return Err(bad("the user before '@' is empty"));
                }
                (u.to_string(), r)
            }
            None => (DEFAULT_USER.to_string(), input),
        };
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (host, tail) = after.split_once(']').ok_or_else(|| bad("'[' without a closing ']'"))?;
            let port = match tail {
                "" => DEFAULT_PORT,
                t => parse_port(t.strip_prefix(':').ok_or_else(|| bad("only ':port' may follow ']'"))?)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            };
            (host, port)
        } else if rest.matches(':').count() > 1 {
            // More than one colon and no brackets: a bare IPv6 address.
            if rest.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("it has several ':' but is not an IPv6 address (write [v6]:port for a port)"));
            }
            (rest, DEFAULT_PORT)
        } else if let Some((h, p)) = rest.split_once(':') {
            let port = parse_port(p).ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
            (h, port)
        } else {
            (rest, DEFAULT_PORT)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.contains(['[', ']', '@', '/']) {
            return Err(bad("the host contains '[', ']', '@' or '/'"));
        }
        Ok(Target { user, host: host.to_string(), port })
    }
}

fn parse_port(s: &str) -> Option<u16> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(p) => Some(p),
    }
}

/// Renders `user@host`, `user@host:port` or `user@[v6]:port`; it parses back
/// to the same target.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else if self.port == DEFAULT_PORT {
            write!(f, "{}@{}", self.user, self.host)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms() {
        assert_eq!(t("host"), Target::new("root", "host", 22));
        assert_eq!(t("admin@10.0.0.1"), Target::new("admin", "10.0.0.1", 22));
        assert_eq!(t("admin@10.0.0.1:2222"), Target::new("admin", "10.0.0.1", 2222));
        assert_eq!(t("[::1]:2222"), Target::new("root", "::1", 2222));
        assert_eq!(t("u@[::1]"), Target::new("u", "::1", 22));
        assert_eq!(t("::1"), Target::new("root", "::1", 22));
        assert_eq!(t("me@fe80::1"), Target::new("me", "fe80::1", 22));
        assert_eq!(t("ec2-user@ip-10-0-0-1.ec2.internal"), Target::new("ec2-user", "ip-10-0-0-1.ec2.internal", 22));
    }

    #[test]
    fn display_round_trips() {
        for s in ["root@host", "admin@10.0.0.1:2222", "u@[::1]:2222", "root@[::1]:22"] {
            assert_eq!(t(s).to_string(), s);
            assert_eq!(t(&t(s).to_string()), t(s));
        }
        assert_eq!(t("host").to_string(), "root@host");
        assert_eq!(t("::1").to_string(), "root@[::1]:22");
    }

    #[test]
    fn known_hosts_names() {
        assert_eq!(t("h").known_hosts_name(), "h");
        assert_eq!(t("127.0.0.1:2222").known_hosts_name(), "[127.0.0.1]:2222");
        assert_eq!(t("[::1]:2222").known_hosts_name(), "[::1]:2222");
    }

    #[test]
    fn errors_say_the_expected_form() {
        for s in
            ["", "@host", "host:", "host:0", "host:99999", "host:x", "[::1", "[::1]x", "a:b:c", "u@", "h h", "[]:22"]
        {
            let e = s.parse::<Target>().unwrap_err().to_string();
            assert!(e.contains("[user@]host[:port]"), "{s}: {e}");
        }
    }
}
