//! Polecats: creating a worker (home + clone on its own branch), starting its
//! session on an issue, stopping it, and the wake/sleep flags.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::{self, Address};
use crate::agent::Preset;
use crate::error::{Error, Result};
use crate::fsio;
use crate::home::Home;
use crate::record::{AgentState, Status};
use crate::rig::Rig;
use crate::session;
use crate::town::Town;

/// Names given to new polecats, in order (the seed's, then Mad Max's).
pub const NAMES: &[&str] = &[
    "Nux", "Toast", "Capable", "Furiosa", "Slit", "Ace", "Cheedo", "Dag", "Keeper", "Rictus",
    "Morsov", "Valkyrie",
];

/// The branch a polecat works on.
pub fn branch(name: &str) -> String {
    format!("polecat/{name}")
}

/// A polecat's work to land: its clone and the branch it works on
/// (`state.json` `branch`, else `polecat/<name>`).
#[derive(Debug, Clone)]
pub struct Work {
    pub clone: PathBuf,
    pub branch: String,
}

/// The [`Work`] of a polecat whose state is `state`; its clone must exist.
pub fn work(home: &Home, state: &AgentState) -> Result<Work> {
    let name = home
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let branch = state.branch.clone().unwrap_or_else(|| branch(name));
    let clone = home.clone_dir();
    if !clone.join(".git").exists() {
        return Err(Error::not_found(format!(
            "{}: polecat {} has no clone",
            clone.display(),
            home.address
        )));
    }
    Ok(Work { clone, branch })
}

/// Commits in `home`'s clone that origin does not have, on its HEAD or on
/// its work branch: what stopping or releasing the polecat must not lose.
pub fn commits_not_on_origin(home: &Home, state: &AgentState) -> Result<u64> {
    let w = work(home, state)?;
    crate::git::commits_ahead(&w.clone, &["HEAD", &format!("refs/heads/{}", w.branch)])
}

/// For a `branch` that holds no commit beyond origin (the caller counted):
/// why the worker's work is not where the Refinery merges it, if the clone's
/// HEAD holds commits (it committed on `main`, or on a detached HEAD).
pub fn stray_work(clone: &Path, branch: &str) -> Result<Option<String>> {
    let stray = crate::git::commits_ahead(clone, &["HEAD"])?;
    if stray == 0 {
        return Ok(None);
    }
    let (on, from) = match crate::git::current_branch(clone)? {
        Some(b) => (format!("branch {b}"), b),
        None => {
            let head = crate::git::resolve(clone, "HEAD")?
                .map(|o| o.to_string())
                .unwrap_or_default();
            ("a detached HEAD".to_string(), head)
        }
    };
    Ok(Some(format!(
        "your {stray} commit(s) are on {on}, not on {branch}, the branch the Refinery merges; \
         move them there (git checkout {branch} && git merge {from}), then run gt done"
    )))
}

/// The first name from [`NAMES`] (then `polecat-N`) not in use in `rig`.
pub fn free_name(rig: &Rig) -> String {
    free_name_except(rig, |_| false)
}

/// [`free_name`], skipping the names `elsewhere` holds too (workers on
/// other machines).
pub fn free_name_except(rig: &Rig, elsewhere: impl Fn(&str) -> bool) -> String {
    let taken =
        |n: &str| fs::symlink_metadata(rig.path.join("polecats").join(n)).is_ok() || elsewhere(n);
    NAMES
        .iter()
        .map(|n| n.to_string())
        .chain((1..).map(|i| format!("polecat-{i}")))
        .find(|n| !taken(n))
        .expect("an unbounded supply of names")
}

/// Create polecat `name`: its home and a full clone of the rig's git_url at
/// `rig/`, on branch `polecat/<name>`. Built in `.staging/` like a rig.
pub fn add(town: &Town, rig: &Rig, name: &str) -> Result<Home> {
    address::check_agent_name("polecat", name)?;
    let address = Address::Polecat {
        rig: rig.name.clone(),
        name: name.to_string(),
    };
    crate::rig::add_home_with_clone(town, rig, address, |clone| {
        crate::git::start_branch(clone, &branch(name))?;
        Ok(())
    })
}

/// What `spawn` needs besides the rig.
#[derive(Debug, Default, Clone)]
pub struct SpawnOptions {
    /// The beads issue to work on; recorded in `state.json` and handed to the agent.
    pub issue: Option<String>,
    /// Polecat name; a free one is chosen when unset.
    pub name: Option<String>,
    /// Agent command line; the rig's `agent_command` when unset.
    pub agent: Option<String>,
    /// Another machine's issue (a remote spawn, protocol/federation.md):
    /// not claimed here, recorded in the polecat's `works-for.json`.
    pub works_for: Option<crate::federation::worker::WorksFor>,
    /// Quick-death restarts in a row this start is (`restarts` in state.json;
    /// 0 for every start but the Witness's restart of a polecat that died).
    pub restarts: u64,
}

/// A started polecat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spawned {
    pub address: String,
    pub home: PathBuf,
    pub clone: PathBuf,
    pub branch: String,
    pub issue: Option<String>,
    pub generation: u64,
    pub session: String,
    pub log: PathBuf,
}

/// Polecats of `rig` free for new work: `idle`, with no live session.
pub fn idle(rig: &Rig) -> Result<Vec<Home>> {
    Ok(rig
        .polecats()?
        .into_iter()
        .filter(|h| {
            h.state()
                .is_ok_and(|s| s.status == Status::Idle && !session::state_alive(&s))
        })
        .collect())
}

/// Put an existing polecat's clone on a fresh `polecat/<name>` branch at
/// origin's main before it takes a different issue. Refused when that would
/// lose work: a dirty clone, or work still waiting in the merge queue.
fn start_new_work(home: &Home, state: &AgentState) -> Result<()> {
    let clone = home.clone_dir();
    if state.status == Status::Done {
        return Err(Error::conflict(format!(
            "polecat {} has work waiting to land ({}); pick another polecat",
            home.address,
            state.issue.as_deref().unwrap_or("its last issue")
        )));
    }
    let dirty = crate::git::dirty_files(&clone)?;
    if !dirty.is_empty() {
        return Err(Error::conflict(format!(
            "polecat {} has uncommitted changes in {} ({}); clean them or pick another polecat",
            home.address,
            clone.display(),
            dirty.join(", ")
        )));
    }
    let Address::Polecat { name, .. } = &home.address else {
        return Ok(());
    };
    let main = crate::git::default_branch(&clone, "origin")?;
    crate::git::run(Some(&clone), &["fetch", "-q", "origin"])?;
    crate::git::run(
        Some(&clone),
        &[
            "checkout",
            "-q",
            "-B",
            &branch(name),
            &format!("origin/{main}"),
        ],
    )?;
    Ok(())
}

/// Polecats of `rig` whose session is alive.
pub fn active(rig: &Rig) -> Result<Vec<Home>> {
    Ok(rig
        .polecats()?
        .into_iter()
        .filter(|h| h.state().is_ok_and(|s| session::state_alive(&s)))
        .collect())
}

/// Start a polecat on an issue: create it if needed, claim the issue in the
/// rig's tracker, bump the polecat's generation, record issue/branch/session in
/// `state.json`, and start the agent command in its clone. Refused (a "no")
/// when the rig already runs `max_workers` polecats or the issue is held by
/// someone else; refused (conflict) while the polecat's session is alive. A
/// failed start gives the claim back.
///
/// The rig's spawn lock (`<rig>/spawn.lock`) is held from the capacity check
/// to the recorded session, so concurrent spawns get distinct names and never
/// exceed `max_workers`.
pub fn spawn(town: &Town, rig: &Rig, opts: &SpawnOptions) -> Result<Spawned> {
    let _rig_lock = fsio::lock_file(&rig.path.join("spawn.lock"))?;
    let config = rig.config()?;
    let running = active(rig)?.len();
    if running >= config.max_workers as usize {
        return Err(Error::negative(format!(
            "rig {} is at capacity: {running} polecat(s) running, max_workers is {} ({})",
            rig.name,
            config.max_workers,
            rig.config_path().display()
        )));
    }
    let agent = crate::agent::AgentConfig::resolve(town, Some(&rig.name))?;
    if opts.agent.is_none() && agent.command.is_none() && agent.preset == Preset::Custom {
        return Err(Error::invalid(format!(
            "no agent command: pass --agent or set \"agent\" (claude, codex) or \"agent_command\" in {}",
            rig.config_path().display()
        )));
    }
    // An idle polecat is reused before a new one is made: the pool stays small.
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => idle(rig)?
            .into_iter()
            .next()
            .and_then(|h| h.path.file_name()?.to_str().map(str::to_string))
            .unwrap_or_else(|| free_name(rig)),
    };
    let address = Address::Polecat {
        rig: rig.name.clone(),
        name: name.clone(),
    };
    // The issue is claimed before anything is made for it, so a spawn for a
    // taken issue leaves nothing behind; every later failure gives it back.
    let tracker = match opts.issue.as_ref().filter(|_| opts.works_for.is_none()) {
        Some(id) => {
            let t = crate::beads::open(rig)?;
            let held = t.show(id)?.assignee.as_deref() == Some(&address.to_string());
            // Someone else holding the issue is a "no", not a failure.
            t.claim(id, &address.to_string()).map_err(|e| {
                if e.kind == crate::error::Kind::Conflict {
                    e.with_kind(crate::error::Kind::Negative)
                } else {
                    e
                }
            })?;
            // A claim this polecat already held is not ours to give back.
            (!held).then_some((t, id))
        }
        None => None,
    };
    let branch = branch(&name);
    let state = (|| {
        let (home, fresh) = match town.home(&address) {
            Ok(h) => (h, false),
            Err(e) if e.kind == crate::error::Kind::NotFound => (add(town, rig, &name)?, true),
            Err(e) => return Err(e),
        };
        let guard = session::StartGuard::lock(town, &home)?;
        let new_work = opts.issue.is_some() && opts.issue != guard.current.issue;
        // A clone made just now is already on its new branch at origin's
        // default branch: no fetch and no checkout again.
        if new_work && !fresh {
            start_new_work(&home, &guard.current)?;
        }
        crate::federation::worker::set_works_for(&home, opts.works_for.as_ref())?;
        let command = opts
            .agent
            .clone()
            .or_else(|| agent.command_line(&home, opts.issue.as_deref()))
            .expect("checked above");
        guard
            .start(town, &command, |s| {
                s.issue = opts.issue.clone();
                s.branch = Some(branch.clone());
                s.restarts = opts.restarts;
                // Nudges count a worker's trouble with one issue.
                if new_work {
                    s.nudges = 0;
                }
            })
            .map(|state| (home, state))
    })();
    let (home, state) = state.inspect_err(|_| {
        if let Some((t, id)) = &tracker {
            let _ = t.release(id, &address.to_string());
        }
    })?;
    Ok(Spawned {
        address: address.to_string(),
        clone: home.clone_dir(),
        log: session::log_path(&home.path),
        home: home.path,
        branch,
        issue: state.issue,
        generation: state.generation,
        session: state.session.unwrap_or_default(),
    })
}

/// How a spawned polecat's runtime came up (`gt spawn`'s wait).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    /// It took its first prompt: at its prompt, or busy on the prompt.
    Ready,
    /// Started; not waited for, or its preset cannot read its screen
    /// (`custom`, or a plain process session).
    Started,
    /// Waits at a dialog: recorded in `blocked`, its Witness told.
    Blocked,
    /// Not ready within the wait.
    Timeout,
    /// Its session ended during the wait.
    Ended,
}

/// Wait (at most `wait`) until `spawned`'s runtime is ready for input
/// ([`crate::agent::wait_ready`]): how it came up and, unless ready, why. A
/// dialog is recorded and reported to the Witness ([`crate::agent::blocked`]).
pub fn wait_ready(
    town: &Town,
    spawned: &Spawned,
    wait: std::time::Duration,
) -> Result<(Ready, Option<String>)> {
    use crate::agent::Start;
    if wait.is_zero() {
        return Ok((Ready::Started, None));
    }
    let home = town.home(&spawned.address.parse()?)?;
    Ok(
        match crate::agent::wait_ready(town, &home, &spawned.session, wait)? {
            Start::Ready | Start::Input(_) => (Ready::Ready, None),
            Start::Unknown => (Ready::Started, None),
            Start::Blocked(dialog) => {
                crate::agent::blocked(town, &home, &dialog, "gt spawn")?;
                let hint = crate::agent::blocked_hint(&home.address);
                (
                    Ready::Blocked,
                    Some(format!("waits at a dialog: {dialog}; {hint}")),
                )
            }
            Start::TimedOut => (
                Ready::Timeout,
                Some(format!(
                    "not ready for input within {wait:?}; see it with: gt capture {}",
                    home.address
                )),
            ),
            Start::Ended => (
                Ready::Ended,
                Some(format!(
                    "its session ended; see {}",
                    session::log_path(&home.path).display()
                )),
            ),
        },
    )
}

/// `gt wake` / `gt sleep`: the seed's active/inactive flag, in `status`.
pub fn set_awake(home: &Home, awake: bool) -> Result<Status> {
    home.update_state(|s| {
        s.status = if awake { Status::Idle } else { Status::Asleep };
        Ok(s.status)
    })
}
