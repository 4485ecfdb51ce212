//! Starting an agent's session: its environment, the launch, and recording it
//! in `state.json` under the home's lock; and stopping it.

use std::path::{Path, PathBuf};

use super::{Backend, Spec, Started, is_alive, state_alive, stop};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::record::{AgentState, Status};
use crate::town::Town;

/// Stop the session of any agent home (its whole process group) and clear
/// `session` and `requesting_cycle` in its state; a `working` agent becomes `idle`. Returns whether a
/// live session was stopped.
pub fn stop_home(home: &Home) -> Result<bool> {
    let state = home.state()?;
    let was_alive = state_alive(&state);
    if let Some(id) = state.session.as_deref().filter(|_| was_alive) {
        stop(id, std::time::Duration::from_secs(5))?;
    }
    home.update_state(|s| {
        s.session = None;
        // A stopped agent has no next session: the daemon must not start one.
        s.requesting_cycle = false;
        if s.status == Status::Working {
            s.status = Status::Idle;
        }
        Ok(())
    })?;
    Ok(was_alive)
}

/// The environment every agent gets (DESIGN.md, "Sessions"): `GT_TOWN`,
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

/// The session name of an agent in the town's backend: `gt-` and its address
/// with `/` as `-` (`gt-<rig>-<polecat>`, `gt-<rig>-witness`, `gt-mayor`).
pub fn name_for(address: &crate::address::Address) -> String {
    format!("gt-{}", address.to_string().replace('/', "-"))
}

/// Start generation `generation` of `home`'s agent: `command` in its clone
/// (its home when it has none), with [`agent_env`], `GT_ISSUE` and
/// `GT_GENERATION`. The caller holds the home's state lock and records the
/// result with [`record_start`].
pub fn launch(
    town: &Town,
    home: &Home,
    command: &str,
    issue: Option<&str>,
    generation: u64,
) -> Result<Started> {
    let mut env = agent_env(town, home);
    env.extend(issue.map(|i| ("GT_ISSUE".to_string(), i.to_string())));
    env.push(("GT_GENERATION".to_string(), generation.to_string()));
    let clone = home.clone_dir();
    Backend::for_town(town)?.start(&Spec {
        name: name_for(&home.address),
        command: command.to_string(),
        cwd: if clone.is_dir() {
            clone
        } else {
            home.path.clone()
        },
        env,
        log: log_path(&home.path),
    })
}

/// Record a session started by [`launch`] in an agent's state: generation,
/// `working`, the session id, and (for the daemon's restarts) the command and
/// when it started; a cycle request is thereby answered.
pub fn record_start(state: &mut AgentState, started: &Started, command: &str, generation: u64) {
    state.generation = generation;
    state.status = Status::Working;
    state.session = Some(started.id.clone());
    state.requesting_cycle = false;
    state.updated_at = Some(crate::clock::now());
    state.command = Some(command.to_string());
    state.started_at = state.updated_at;
}

/// Lock `home`'s state for starting a session there: the lock is held from this
/// liveness check until the caller has recorded the new session, so two
/// starters (two daemons, a daemon and `gt spawn`) cannot both start. Refused
/// while a session lives.
pub fn lock_for_start(
    home: &crate::home::Home,
) -> Result<(crate::fsio::Lock, crate::record::AgentState)> {
    let lock = crate::fsio::lock_for(&home.state_path())?;
    let current: crate::record::AgentState = crate::fsio::read_json(&home.state_path())?;
    if let Some(id) = current.session.as_deref().filter(|id| is_alive(id)) {
        return Err(Error::conflict(format!(
            "{} is already running (session {id})",
            home.address
        )));
    }
    Ok((lock, current))
}

/// The log file of a home's session.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("session.log")
}
