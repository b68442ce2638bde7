//! What a step decides from its facts: a [`Plan`] (already so, skipped,
//! refused, or the [`Action`]s that close the gap). Planning never touches
//! the host, so a dry run is "plan, print, stop", and tests compare plans
//! with exact commands.

use image_provision_remote::Cmd;

/// One thing a step does.
#[derive(Clone, Debug)]
pub enum Action {
    /// A command that changes the host.
    Change(Cmd),
    /// A command that only waits or checks (a step that ran nothing else is
    /// still ok).
    Check(Cmd),
    /// Open a new SSH connection (so a new group membership applies).
    Reconnect,
    /// Reboot and wait for the new boot.
    Reboot,
    /// Write a file atomically (as root, via the session's upload), owned by
    /// root or `owner`. `secret`: its content is credentials (only the path,
    /// size, mode and owner are shown).
    Upload { path: String, content: Vec<u8>, mode: u32, owner: Option<String>, secret: bool },
}

impl Action {
    /// How a dry run and the log show it.
    pub fn describe(&self, user_is_root: bool) -> String {
        match self {
            Action::Change(c) => c.redacted(user_is_root),
            Action::Check(c) => format!("{} (check)", c.redacted(user_is_root)),
            Action::Reconnect => "reconnect over SSH (new group membership)".into(),
            Action::Reboot => "reboot and wait for the new boot".into(),
            Action::Upload { path, content, mode, owner, secret } => format!(
                "upload {path} ({} bytes, mode {mode:04o}{}{})",
                content.len(),
                owner.as_deref().map(|o| format!(", owner {o}")).unwrap_or_default(),
                if *secret { ", secret" } else { "" }
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Plan {
    /// Already so; why.
    Ok(String),
    /// Not for this host; why.
    Skip(String),
    /// Cannot go on: message and what to do. `usage`: the person's input is
    /// the problem (exit 2).
    Refuse { message: String, hint: String, usage: bool },
    /// Close the gap: why, then what.
    Act { why: String, actions: Vec<Action> },
    /// Needs what an earlier step makes (a dry run, where it was not made):
    /// what is missing.
    Pending(String),
}

impl Plan {
    /// The actions that close the gap, with their reasons, or `ok` when
    /// there are none.
    pub fn from_actions(why: Vec<String>, actions: Vec<Action>, ok: impl FnOnce() -> String) -> Plan {
        if actions.is_empty() { Plan::Ok(ok()) } else { Plan::Act { why: why.join(", "), actions } }
    }
}

#[cfg(test)]
impl Plan {
    /// The actions as a dry run shows them (the steps' unit tests compare
    /// plans by these).
    pub fn commands(&self) -> Vec<String> {
        match self {
            Plan::Act { actions, .. } => actions.iter().map(|a| a.describe(false)).collect(),
            other => panic!("expected actions, got {other:?}"),
        }
    }
}
