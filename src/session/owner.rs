//! Whose a recorded session is. Any agent can write any `state.json`, so a
//! session id proves nothing by itself: before gt signals, types into or reads
//! the session an agent's state records, it checks that the session is that
//! agent's, of this town (protocol/README.md, "Sessions").

use std::fmt;
use std::path::PathBuf;

use super::{Environ, SessionId, is_alive, name_for, start_time, tmux_socket};
use crate::error::Error;
use crate::home::Home;
use crate::town::Town;

/// The agent a recorded session must belong to: `home`'s, of `town`.
#[derive(Debug, Clone)]
pub struct Owner {
    town: Town,
    home: Home,
}

/// A recorded session that is not its agent's, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    address: String,
    id: String,
    state: PathBuf,
    why: String,
}

impl Owner {
    pub fn of(town: &Town, home: &Home) -> Owner {
        Owner {
            town: town.clone(),
            home: home.clone(),
        }
    }

    /// Why session `id` is not this agent's, or `None` when it is. A tmux id
    /// must name the town's socket and the agent's session name (nothing else
    /// is ever killed or typed into there); a running leader must have the
    /// `GT_TOWN` and `GT_ADDRESS` every start gives it ([`super::agent_env`]).
    /// A leader that has exited reaches nothing, so it is nobody's, and an id
    /// gt cannot parse is refused by whatever would act on it.
    pub fn foreign(&self, id: &str) -> Option<Foreign> {
        let why = self.why(&SessionId::parse(id)?)?;
        Some(Foreign {
            address: self.home.address.to_string(),
            id: id.to_string(),
            state: self.home.state_path(),
            why,
        })
    }

    fn why(&self, sid: &SessionId) -> Option<String> {
        if let SessionId::Tmux { socket, name, .. } = sid {
            let ours = tmux_socket(self.town.root());
            if *socket != ours {
                return Some(format!(
                    "its tmux socket {socket} is not the town's, {ours}"
                ));
            }
            let want = name_for(&self.home.address);
            if *name != want {
                return Some(format!(
                    "its tmux session {name} is not the agent's, {want}"
                ));
            }
        }
        let (pid, start) = sid.leader();
        if start_time(pid) != Some(start) {
            return None;
        }
        let Some(env) = Environ::of(pid) else {
            return Some("its process's environment cannot be read".to_string());
        };
        [
            format!("GT_TOWN={}", self.town.root().display()),
            format!("GT_ADDRESS={}", self.home.address),
        ]
        .into_iter()
        .find(|var| !env.has(var))
        .map(|var| format!("its process has no {var}"))
    }

    /// Whether session `id` runs as this agent's: `Err` when it is not the
    /// agent's ([`Owner::foreign`]), else whether it is alive
    /// ([`super::is_alive`]).
    pub fn live(&self, id: &str) -> Result<bool, Foreign> {
        match self.foreign(id) {
            Some(f) => Err(f),
            None => Ok(is_alive(id)),
        }
    }

    /// Refused unless session `id` is this agent's ([`Owner::foreign`]);
    /// `not_done` ends the error, saying what was not done ("not stopped").
    pub fn check(&self, id: &str, not_done: &str) -> crate::error::Result<()> {
        self.foreign(id)
            .map_or(Ok(()), |f| Err(f.refusal(not_done)))
    }
}

impl Foreign {
    /// The one-line error of refusing to act on it: `<address>: <self>; <not_done>`.
    pub fn refusal(&self, not_done: &str) -> Error {
        Error::invalid(format!("{}: {self}; {not_done}", self.address))
    }
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session {} recorded in {} is not {}'s ({})",
            self.id,
            self.state.display(),
            self.address,
            self.why
        )
    }
}
