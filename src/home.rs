//! Agent homes: every role has the same shape (protocol/README.md, "Agent home"),
//! so this one module serves the mayor, witnesses, refineries, polecats, crew and
//! plugins alike.

use std::path::{Path, PathBuf};

use crate::address::{Address, Role};
use crate::error::Result;
use crate::fsio;
use crate::record::AgentState;

/// An agent home on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub address: Address,
    pub path: PathBuf,
}

impl Home {
    pub fn mail_dir(&self) -> PathBuf {
        self.path.join("mail")
    }
    pub fn inbox(&self) -> PathBuf {
        self.path.join("mail").join("inbox.jsonl")
    }
    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn heartbeat(&self) -> PathBuf {
        self.path.join("heartbeat")
    }
    pub fn prompt(&self) -> PathBuf {
        self.path.join("CLAUDE.md")
    }
    /// The agent's working clone, where it has one.
    pub fn clone_dir(&self) -> PathBuf {
        self.path.join("rig")
    }

    /// Create the home's files that are missing: `mail/inbox.jsonl`,
    /// `state.json`, `CLAUDE.md`. Existing files (a person's edited prompt, an
    /// agent's state) are left alone, so this is safe to re-run.
    pub fn create(&self) -> Result<()> {
        fsio::ensure_dir(&self.mail_dir())?;
        fsio::write_if_missing(&self.inbox(), b"")?;
        if !self.state_path().exists() {
            fsio::update_json(
                &self.state_path(),
                || Ok(AgentState::new(self.address.role())),
                |_| Ok(()),
            )?;
        }
        fsio::write_if_missing(&self.prompt(), role_prompt(&self.address).as_bytes())?;
        Ok(())
    }

    /// When the agent last showed life: its `heartbeat` file's mtime or the
    /// start of its current session (`started_at`), whichever is later. A
    /// heartbeat left by an earlier session says nothing about this one.
    pub fn last_sign_of_life(&self, state: &AgentState) -> Option<jiff::Timestamp> {
        let beat = crate::confine::metadata(&self.heartbeat())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok());
        beat.max(state.started_at)
    }

    /// Read `state.json`. A plugin that is a bare directory (no `state.json`
    /// yet) is an idle plugin, not an error: a directory is a plugin.
    pub fn state(&self) -> Result<AgentState> {
        let path = self.state_path();
        if self.address.role() == Role::Plugin
            && crate::confine::metadata(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            // A bare plugin directory: idle, and never written, so no age.
            return Ok(AgentState {
                updated_at: None,
                ..AgentState::new(Role::Plugin)
            });
        }
        fsio::read_json(&path)
    }

    /// `state.json` for this home's agent asking about itself (`gt prime`,
    /// `gt mail handoff`): read under its lock, so a session that asks at once
    /// waits until its starter has recorded it (a start holds the lock from
    /// before the session starts until its new issue and generation are written).
    pub fn own_state(&self) -> Result<AgentState> {
        let _lock = fsio::lock_for(&self.state_path())?;
        self.state()
    }

    /// Change `state.json` under its lock, keeping unknown fields; stamps `updated_at`.
    pub fn update_state<R>(&self, f: impl FnOnce(&mut AgentState) -> Result<R>) -> Result<R> {
        let role = self.address.role();
        fsio::update_json(
            &self.state_path(),
            || Ok(AgentState::new(role)),
            |s| {
                let r = f(s)?;
                s.updated_at = Some(crate::clock::now());
                Ok(r)
            },
        )
    }
}

/// Whether `dir` looks like an agent home (has `state.json` or `mail/`).
pub fn is_home(dir: &Path) -> bool {
    dir.join("state.json").is_file() || dir.join("mail").is_dir()
}

/// Whether `dir` is the home of `addr`: a plugin's directory is its home as
/// soon as it exists (the seed: "if the directory exists, the plugin
/// exists"); its `mail/` is made on first delivery. Other roles need
/// [`is_home`].
pub fn is_home_of(addr: &Address, dir: &Path) -> bool {
    match addr.role() {
        Role::Plugin => dir.is_dir(),
        _ => is_home(dir),
    }
}

/// The role prompt written to a new home's `CLAUDE.md`.
pub fn role_prompt(addr: &Address) -> String {
    let rig = addr.rig().unwrap_or("");
    let duty = match addr.role() {
        Role::Mayor => "You are the Mayor, the town's global coordinator. You dispatch work to rigs, \
            decide across rigs and handle escalations from Witnesses. Escalate to the overseer \
            (`gt send overseer ...`) what you cannot decide. You never clean up workers: the Witness does."
            .to_string(),
        Role::Overseer => "This is the human operator's home. Escalations end in this inbox.".to_string(),
        Role::Witness => format!(
            "You are the Witness of rig `{rig}`: you watch its polecats, nudge them toward done, check \
             that a worker's git state is clean before its session is killed, and escalate a worker \
             stuck after 3 tries to the Mayor."
        ),
        Role::Refinery => format!(
            "You are the Refinery of rig `{rig}`: you own `rig/`, the canonical main clone, and process \
             the merge queue in `queue/`: merge, test, push, close the issue, tell the worker."
        ),
        Role::Polecat => format!(
            "You are a polecat of rig `{rig}`: a worker. Work only in `rig/` (your clone), on your issue \
             (`GT_ISSUE`; `gt prime` shows it). When done: commit, leave `git status` clean, then run `gt done`."
        ),
        Role::Crew => format!("This is an overseer's workspace in rig `{rig}`; `rig/` is the clone."),
        Role::Plugin => format!(
            "You are a plugin of rig `{rig}`: an agent invoked by mail. Read your inbox, do the work, \
             and answer by mail."
        ),
    };
    format!(
        "# {role} — {addr}\n\n{duty}\n\n## Your tools\n\n\
         - `gt inbox` / `gt mail read <id>`: your mail (`mail/inbox.jsonl` here).\n\
         - `gt send <address> -s <subject> -m <message>`: mail another agent (`mayor`, `<rig>/witness`, ...).\n\
         - `gt mail handoff --cycle`: before your context fills, mail your next session a handoff note \
           and ask for a fresh session.\n\
         - `gt whoami`: your role and address. `BEADS_DIR` points at the rig's issue tracker.\n",
        role = addr.role(),
    )
}
