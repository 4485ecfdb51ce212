//! Starting an agent's session: its environment, the launch, and recording it
//! in `state.json` under the home's lock; and stopping it.

use std::path::{Path, PathBuf};

use super::{Backend, Owner, Spec, is_alive, kill, stop};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::record::{AgentState, Status};
use crate::town::Town;

/// Stop the session of any agent home (its whole process group) and clear
/// `session` and `requesting_cycle` in its state; a `working` agent becomes
/// `idle`. Returns whether a live session was stopped. A recorded session
/// that is not the agent's ([`Owner::foreign`]) is refused once its record
/// is cleared: nothing is signalled, and the agent stays `working`, so its
/// Witness sees to its claim as for a session that ended.
pub fn stop_home(town: &Town, home: &Home) -> Result<bool> {
    let owner = Owner::of(town, home);
    // The state says "stopped" before the session dies: whoever sees it end
    // (the daemon's waiter) then finds no session recorded, not a crash.
    let (old, foreign) = home.update_state(|s| {
        let old = s.session.take();
        let foreign = old.as_deref().and_then(|id| owner.foreign(id));
        // A stopped agent has no next session: the daemon must not start one.
        s.requesting_cycle = false;
        s.cycle_requested_at = None;
        s.blocked = None;
        if s.status == Status::Working && foreign.is_none() {
            s.status = Status::Idle;
        }
        Ok((old, foreign))
    })?;
    if let Some(f) = foreign {
        return Err(f.refusal("not stopped"));
    }
    let Some(id) = old.filter(|id| is_alive(id)) else {
        return Ok(false);
    };
    kill(&id, std::time::Duration::from_secs(5))?;
    Ok(true)
}

/// The environment every agent gets (protocol/README.md, "Sessions"): `GT_TOWN`,
/// `GT_ROLE`, `GT_ADDRESS`, and for a rig's agents `GT_RIG` and `BEADS_DIR`.
pub fn agent_env(town: &Town, home: &Home) -> Vec<(String, String)> {
    let mut env = vec![("GT_TOWN".to_string(), town.root().display().to_string())];
    if let Some(rig) = home.address.rig() {
        env.push(("GT_RIG".to_string(), rig.to_string()));
    }
    env.push(("GT_ROLE".to_string(), home.address.role().to_string()));
    env.push(("GT_ADDRESS".to_string(), home.address.to_string()));
    if let Some(rig) = home.address.rig() {
        let beads = crate::rig::Rig::at(town, rig).beads_dir();
        env.push(("BEADS_DIR".to_string(), beads.display().to_string()));
    }
    // Agents find the gt binaries that started them first.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path)))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        env.push(("PATH".to_string(), joined));
    }
    env
}

/// The whole environment of the session starting `state`'s generation, built
/// here and never inherited from whoever started the tmux server: the
/// spawner's own environment (less `TERM`, `TMUX` and `TMUX_PANE`, which
/// describe the spawner's terminal), then [`agent_env`], `GT_ISSUE`,
/// `GT_GENERATION`, the preset's variables and `agent_env` from the town's and
/// rig's config; a later value wins.
fn session_env(
    town: &Town,
    home: &Home,
    state: &AgentState,
    agent: &crate::agent::AgentConfig,
) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| !matches!(k.as_str(), "TERM" | "TMUX" | "TMUX_PANE"))
        .collect();
    env.extend(agent_env(town, home));
    env.extend(
        state
            .issue
            .iter()
            .map(|i| ("GT_ISSUE".to_string(), i.clone())),
    );
    env.insert("GT_GENERATION".to_string(), state.generation.to_string());
    env.extend(agent.session_env(home));
    env.into_iter().collect()
}

/// The session name of an agent in the town's backend: `gt-` and its address
/// with `/` as `-` (`gt-<rig>-<polecat>`, `gt-<rig>-witness`, `gt-mayor`).
pub fn name_for(address: &crate::address::Address) -> String {
    format!("gt-{}", address.to_string().replace('/', "-"))
}

/// A home locked for starting its next session: the state lock is held from
/// the liveness check until the new session is recorded, so two starters (two
/// daemons, a daemon and `gt spawn`) cannot both start one. Dropping the guard
/// without [`StartGuard::start`] starts nothing and releases the lock.
pub struct StartGuard<'a> {
    home: &'a Home,
    _lock: crate::fsio::Lock,
    /// The state as it was when the lock was taken.
    pub current: AgentState,
}

impl<'a> StartGuard<'a> {
    /// Lock `home` of `town` for a start; refused (conflict) while its
    /// session lives, and while it records a session not its own
    /// ([`Owner::check`]: the start would stop what it names).
    pub fn lock(town: &Town, home: &'a Home) -> Result<StartGuard<'a>> {
        let lock = crate::fsio::lock_for(&home.state_path())?;
        let current: AgentState = crate::fsio::read_json(&home.state_path())?;
        if let Some(id) = current.session.as_deref() {
            Owner::of(town, home).check(id, "not started")?;
            if is_alive(id) {
                return Err(Error::conflict(format!(
                    "{} is already running (session {id})",
                    home.address
                )));
            }
        }
        Ok(StartGuard {
            home,
            _lock: lock,
            current,
        })
    }

    /// Start the agent's next generation: `command` in its clone (its home
    /// when it has none) with [`agent_env`], `GT_ISSUE` and `GT_GENERATION`;
    /// then record generation, `working`, the session id, the command and its
    /// start time (answering a cycle request), with `edit`'s changes, in one
    /// write. Nothing is recorded when the start fails.
    pub fn start(
        self,
        town: &Town,
        command: &str,
        edit: impl FnOnce(&mut AgentState),
    ) -> Result<AgentState> {
        let home = self.home;
        let mut next = self.current.clone();
        edit(&mut next);
        if let Some(old) = &self.current.session {
            // A dead session's leftovers (a tmux session kept after its
            // command ended) would take the name the new one needs.
            let _ = stop(&Owner::of(town, home), old, std::time::Duration::ZERO);
        }
        next.generation = self.current.generation + 1;
        let agent = crate::agent::AgentConfig::resolve(town, home.address.rig())?;
        agent.prepare(home)?;
        let env = session_env(town, home, &next, &agent);
        let clone = home.clone_dir();
        // The exit record starts over with where this session's output
        // begins in the log; its leader appends the exit status.
        let log = log_path(&home.path);
        let exit = super::exit::exit_path(&home.path);
        let from = crate::confine::metadata(&log).map_or(0, |m| m.len());
        crate::fsio::write_atomic(&exit, format!("{from}\n").as_bytes())?;
        let started = Backend::for_town(town)?.start(&Spec {
            name: name_for(&home.address),
            command: command.to_string(),
            cwd: if clone.is_dir() {
                clone
            } else {
                home.path.clone()
            },
            env,
            log,
            exit,
        })?;
        next.status = Status::Working;
        next.session = Some(started.id.clone());
        next.requesting_cycle = false;
        next.cycle_requested_at = None;
        next.blocked = None;
        // A started session is not backing off any more; `restarts` is the
        // starter's to count.
        next.crashed_at = None;
        next.next_restart_at = None;
        next.updated_at = Some(crate::clock::now());
        next.command = Some(command.to_string());
        next.started_at = next.updated_at;
        // The guard holds the state lock since `current` was read: replace.
        crate::fsio::write_json(&home.state_path(), &next)?;
        // Recorded first: an agent that acts at once reads its new state.
        drop(self);
        started.wait_exec();
        Ok(next)
    }
}

/// The log file of a home's session.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("session.log")
}
