//! Stopping agents: `gt kill`, `gt sleep --force`, `gt stop --all|--rig`. A
//! stopped polecat's claim follows it: the issue is released, or kept for the
//! Witness when the clone holds work not yet queued. `gt stop` stops the loops
//! that would start sessions again (the daemon, the rigs' Witness and
//! Refinery loops) before the sessions, and then whatever else runs on the
//! town's tmux socket or was started for the town, recorded or not.

use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::error::Result;
use crate::home::Home;
use crate::record::Status;
use crate::rig::Rig;
use crate::town::Town;
use crate::{beads, git, runner, session};

/// How long a stopped process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// What became of a stopped polecat's issue.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "claim", rename_all = "lowercase")]
pub enum Claim {
    /// Open again, with no assignee.
    Released { issue: String },
    /// Still the polecat's: its clone has work the Witness must see to.
    Kept { issue: String, why: String },
}

/// One stopped agent.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub address: String,
    /// Whether a live session was stopped.
    pub was_running: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

/// Stop `home`'s session (recorded stopped first, see
/// [`session::stop_home`]); for a polecat that was working, settle its claim.
pub fn agent(town: &Town, home: &Home) -> Result<Stopped> {
    let before = home.state()?;
    let was_running = session::stop_home(town, home)?;
    // The claim of a worker for another machine is that machine's to settle.
    let own = crate::federation::worker::works_for(home).is_none();
    let claim = match (&home.address, &before.issue) {
        (Address::Polecat { rig, .. }, Some(issue)) if own && before.status == Status::Working => {
            Some(settle(&Rig::at(town, rig), home, issue)?)
        }
        _ => None,
    };
    Ok(Stopped {
        address: home.address.to_string(),
        was_running,
        claim,
    })
}

/// Release `issue` of a stopped polecat, or keep it when the clone has work
/// that is not in the merge queue yet: then the polecat stays `working` with
/// no session, which the Witness's patrol treats as an ended session (it
/// submits clean commits, nudges a dirty clone).
fn settle(rig: &Rig, home: &Home, issue: &str) -> Result<Claim> {
    if let Some(why) = unqueued_work(home)? {
        home.update_state(|s| {
            s.status = Status::Working;
            Ok(())
        })?;
        return Ok(Claim::Kept {
            issue: issue.to_string(),
            why,
        });
    }
    let tracker = beads::open(rig)?;
    let held = tracker.show(issue)?.assignee.as_deref() == Some(&home.address.to_string());
    if held {
        tracker.release(issue, &home.address.to_string())?;
    }
    home.update_state(|s| {
        s.issue = None;
        Ok(())
    })?;
    Ok(Claim::Released {
        issue: issue.to_string(),
    })
}

/// Why a polecat's clone holds work not yet queued: uncommitted changes, or
/// commits origin does not have; `None` when it holds nothing.
pub fn unqueued_work(home: &Home) -> Result<Option<String>> {
    let clone = home.clone_dir();
    if !clone.join(".git").exists() {
        return Ok(None);
    }
    let dirty = git::dirty_files(&clone)?;
    if !dirty.is_empty() {
        return Ok(Some(format!("uncommitted changes in {}", dirty.join(", "))));
    }
    let ahead = crate::polecat::commits_not_on_origin(home, &home.state()?)?;
    Ok((ahead > 0).then(|| format!("{ahead} commit(s) not yet queued")))
}

/// What `gt stop` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Loops stopped first: `daemon`, `<rig>/witness loop`, ... with their pid.
    pub loops: Vec<String>,
    /// Agents whose session was stopped (or whose claim was settled).
    pub agents: Vec<Stopped>,
    /// Sessions on the town's tmux socket that no state.json recorded.
    pub zombies: Vec<String>,
    /// Agents that could not be stopped, each error one line: the halt goes
    /// on past them (a record naming a session not the agent's, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

// Workers on other machines are in `agents` too, as `<machine>:<rig>/<name>`.

/// Stop the town (or one rig): loops, then every agent's session, then zombies.
pub fn all(town: &Town, only: Option<&Rig>) -> Result<Report> {
    let mut report = Report::default();
    let rigs: Vec<Rig> = match only {
        Some(r) => vec![Rig::at(town, &r.name)],
        None => town
            .rigs()?
            .rigs
            .keys()
            .map(|name| Rig::at(town, name))
            .collect(),
    };
    // Whatever would start sessions again goes first.
    if only.is_none()
        && let Some(pid) = runner::stop(&runner::daemon(town), GRACE)
    {
        report.loops.push(format!("daemon (pid {pid})"));
    }
    for rig in &rigs {
        for (what, file) in [
            ("witness", runner::witness(rig)),
            ("refinery", runner::refinery(rig)),
        ] {
            if let Some(pid) = runner::stop(&file, GRACE) {
                report
                    .loops
                    .push(format!("{}/{what} loop (pid {pid})", rig.name));
            }
        }
    }
    let homes = match only {
        Some(r) => r.homes()?,
        None => town.homes()?,
    };
    for home in homes {
        let Ok(state) = home.state() else { continue };
        let claim_open = state.status == Status::Working && state.issue.is_some();
        if session::state_alive(&state) || claim_open {
            match agent(town, &home) {
                Ok(stopped) => report.agents.push(stopped),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report.agents.extend(crate::federation::worker::stop_all(
        town,
        only.map(|r| r.name.as_str()),
    )?);
    // What is left was recorded nowhere (or its record was lost).
    report.zombies = tmux_zombies(town, only);
    report.zombies.extend(process_zombies(town, only));
    Ok(report)
}
/// Kill every session left on the town's tmux socket (of one rig: named
/// `gt-<rig>-...`), its pane's process group first; their names.
fn tmux_zombies(town: &Town, only: Option<&Rig>) -> Vec<String> {
    let socket = session::tmux_socket(town.root());
    let Ok(list) = session::tmux(
        &socket,
        &["list-sessions", "-F", "#{session_name} #{pane_pid}"],
    ) else {
        // No server on the socket: nothing runs there.
        return Vec::new();
    };
    let prefix = only.map(|r| format!("gt-{}-", r.name));
    let mut killed = Vec::new();
    for line in list.lines() {
        let Some((name, pid)) = line.rsplit_once(' ') else {
            continue;
        };
        if prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        kill_tmux_session(&socket, name, pid.parse().unwrap_or(0), GRACE);
        killed.push(format!("tmux session {name}"));
    }
    killed
}

/// Kill the process groups started for the town (see [`town_groups`]) that
/// are still running once the recorded sessions are stopped.
fn process_zombies(town: &Town, only: Option<&Rig>) -> Vec<String> {
    let mut killed = Vec::new();
    for g in town_groups(town, only) {
        let _ = session::kill(&g.session_id(), GRACE);
        killed.push(format!("process group {} ({})", g.pid, g.comm));
    }
    killed
}

/// A process group started for the town, as found in /proc.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub pid: u32,
    /// Its start time (field 22 of /proc/<pid>/stat), so that a later kill
    /// cannot reach a process that reused the pid.
    pub start: u64,
    pub comm: String,
}

impl Group {
    /// The group as a process-backend session id, for [`session::kill`].
    pub fn session_id(&self) -> String {
        format!("proc:{}:{}", self.pid, self.start)
    }
}

/// The process groups started for the town, recorded or not: a session
/// leader (our process backend's `setsid`, a tmux pane) whose environment has
/// this town's `GT_TOWN` and a `GT_GENERATION` (set only by a start; for one
/// rig, its `GT_RIG` too). tmux's own server and this process are left out.
pub(crate) fn town_groups(town: &Town, only: Option<&Rig>) -> Vec<Group> {
    let me = std::process::id();
    let want_town = format!("GT_TOWN={}", town.root().display());
    let want_rig = only.map(|r| format!("GT_RIG={}", r.name));
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !session::is_session_leader(pid) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm == "tmux" || comm.starts_with("tmux:") {
            continue;
        }
        let Some(env) = session::Environ::of(pid) else {
            continue;
        };
        if !(env.has(&want_town)
            && env.sets("GT_GENERATION")
            && want_rig.as_deref().is_none_or(|r| env.has(r)))
        {
            continue;
        }
        let Some((start, false)) = session::stat(pid) else {
            continue; // exited meanwhile
        };
        found.push(Group {
            pid,
            start,
            comm: session::program(pid),
        });
    }
    found
}

/// Stop a tmux session no record names: its pane's process group (led by
/// `pid`), then the session itself.
pub(crate) fn kill_tmux_session(socket: &str, name: &str, pid: u32, grace: Duration) {
    if let Some((start, _)) = session::stat(pid) {
        let _ = session::kill(&format!("tmux:{socket}:{name}:{pid}:{start}"), grace);
    }
    // Gone already when its pane's command ended.
    let _ = session::tmux(socket, &["kill-session", "-t", &format!("={name}")]);
}
