//! The daemon (seed decision 12, "Agent Session Lifecycle"): one pass over
//! every agent home of the town that
//!
//! * cycles sessions: an agent that set `requesting_cycle` and whose session
//!   ended gets a fresh session with the same command (generation + 1); the new
//!   session finds its handoff mail in its inbox (seed: "Session Cycling");
//! * watches heartbeats: a live session whose `heartbeat` is older than the
//!   town's `heartbeat_timeout` is reported once per silence (to the Mayor; a
//!   polecat to its Witness);
//! * restarts crashed long-running agents (Witness, Refinery) with exponential
//!   backoff, and after [`MAX_RESTARTS`] quick crashes in a row marks the agent
//!   `dead` and tells the Mayor. Ended polecats are the Witness's business;
//! * forwards escalations the Mayor leaves unread to the overseer (a person),
//!   once each (`forward`).
//!
//! Everything it knows and decides is in `state.json` (protocol/daemon.md), so
//! a pass can run any time: by hand (`gt daemon tick`), from cron, or on every
//! change (`gt daemon run`).

use std::time::Duration;

use jiff::SignedDuration;

use crate::address::{Address, Role};
use crate::error::{Error, Kind, Result};
use crate::event::{Action, act};
use crate::home::Home;
use crate::record::{AgentState, Status};
use crate::session;
use crate::town::Town;

mod forward;
mod run;
pub use run::run;
pub(crate) use run::watched;

/// Silence after which a live session is reported, unless config/town.json
/// sets `heartbeat_timeout` (e.g. "10m").
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Quick crashes in a row after which a crashed agent is given up, unless
/// config/town.json sets `max_restarts`.
pub const MAX_RESTARTS: u64 = 5;

/// The wait before the second restart of a crashing agent; it doubles with
/// each further one (the first restart is immediate).
pub const BACKOFF: Duration = Duration::from_secs(10);

/// A session that ends sooner than this after its start died quickly: its
/// end counts towards `max_restarts`. One that ran longer was not
/// crash-looping: its end starts a fresh count.
pub const QUICK_DEATH: Duration = Duration::from_secs(10 * 60);

/// What to do about an agent whose session died: the one backoff policy of
/// the daemon (a Witness or Refinery) and the Witness (a polecat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// When the death was first seen (`crashed_at`, else now).
    pub crashed_at: jiff::Timestamp,
    /// How long the session ran, from `started_at` to `crashed_at`.
    pub ran: Duration,
    /// Quick-death restarts in a row before this one (`restarts`, or 0 when
    /// the session ran for [`QUICK_DEATH`] or more).
    pub restarts: u64,
    pub next: Retry,
}

/// The next step for a [`Crash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Restart now (the first restart is immediate; a backoff is over).
    Now,
    /// Restart at `due`, `delay` after the death: 10 s × 2^(n−1) for the
    /// n-th restart in a row (n ≥ 2).
    At {
        due: jiff::Timestamp,
        delay: Duration,
    },
    /// `max_restarts` quick deaths in a row: give up.
    GiveUp,
}

/// The backoff for `state`'s dead session at `now`, given `max_restarts`.
pub fn backoff(state: &AgentState, max_restarts: u64, now: jiff::Timestamp) -> Crash {
    let crashed_at = state.crashed_at.unwrap_or(now);
    let ran = ran_until(state, crashed_at);
    let restarts = if ran >= QUICK_DEATH {
        0
    } else {
        state.restarts
    };
    let delay = match restarts {
        0 => Duration::ZERO,
        n => BACKOFF.saturating_mul(1 << (n - 1).min(20)),
    };
    let due = crashed_at.checked_add(signed(delay)).unwrap_or(crashed_at);
    let next = if restarts >= max_restarts {
        Retry::GiveUp
    } else if now < due {
        Retry::At { due, delay }
    } else {
        Retry::Now
    };
    Crash {
        crashed_at,
        ran,
        restarts,
        next,
    }
}

/// How long `state`'s session ran (from `started_at`) until `end`.
pub fn ran_until(state: &AgentState, end: jiff::Timestamp) -> Duration {
    state.started_at.map_or(Duration::ZERO, |t| {
        Duration::try_from(end.duration_since(t)).unwrap_or_default()
    })
}

/// What a dead session left (protocol/daemon.md, "Reports"): how long it
/// ran, its exit status and its last lines of output, for a report's body.
pub fn ending(home: &Home, state: &AgentState, ran: Duration) -> String {
    let status = match session::exit::status(home) {
        Some(n) => format!("exit status {n}"),
        None => "no exit status (killed by a signal?)".to_string(),
    };
    let mut body = format!(
        "Its session {} ended {}s after its start, {status}.\nLog: {}\n",
        state.session.as_deref().unwrap_or("-"),
        ran.as_secs(),
        session::log_path(&home.path).display()
    );
    let last = session::exit::last_lines(home);
    if last.is_empty() {
        body.push_str("It wrote no output.\n");
    } else {
        body.push_str(&format!("Its last {} line(s) of output:\n", last.len()));
        for l in last {
            body.push_str("  ");
            body.push_str(&l);
            body.push('\n');
        }
    }
    body
}

/// How long a session may run after its agent asked for a cycle before the
/// daemon stops it, unless config/town.json sets `cycle_grace`.
pub const DEFAULT_CYCLE_GRACE: Duration = Duration::from_secs(30);

/// How long an escalation may wait unread in the Mayor's inbox before a pass
/// forwards it to the overseer, unless config/town.json sets
/// `escalation_forward_after` (a duration, or `"off"`).
pub const ESCALATION_FORWARD_AFTER: Duration = Duration::from_secs(15 * 60);

/// What a pass uses from config/town.json.
#[derive(Debug, Clone)]
pub struct Options {
    pub heartbeat_timeout: Duration,
    pub max_restarts: u64,
    /// `None`: escalations are never forwarded.
    pub escalation_forward_after: Option<Duration>,
    pub cycle_grace: Duration,
}

impl Options {
    /// `heartbeat_timeout`, `max_restarts` and `escalation_forward_after` of
    /// config/town.json, or the defaults.
    pub fn for_town(town: &Town) -> Result<Options> {
        let config = town.config()?;
        Ok(Options {
            heartbeat_timeout: config.heartbeat_timeout(),
            max_restarts: config.max_restarts(),
            escalation_forward_after: config.escalation_forward_after(),
            cycle_grace: config.cycle_grace(),
        })
    }
}

/// One pass over every agent home. A home that cannot be handled is reported
/// as an `error` action; the others are still handled.
pub fn tick(town: &Town, opts: &Options) -> Result<Vec<Action>> {
    let mut actions = Vec::new();
    for home in town.homes()? {
        // The overseer is a person, not a session.
        if home.address == Address::Overseer {
            continue;
        }
        if let Err(e) = tick_home(town, &home, opts, &mut actions) {
            actions.push(act(&home.address, "error", e.to_string()));
        }
    }
    if let Err(e) = forward::pass(town, opts, &mut actions) {
        actions.push(act(&Address::Mayor, "error", e.to_string()));
    }
    // Mail waiting for other machines (federation.md) goes out on every pass.
    actions.extend(crate::federation::outbox::pass(town));
    Ok(actions)
}

fn tick_home(town: &Town, home: &Home, opts: &Options, out: &mut Vec<Action>) -> Result<()> {
    let mut state = home.state()?;
    let owner = session::Owner::of(town, home);
    // A session that is not the agent's says nothing about it, and is not
    // the daemon's to stop or replace.
    if let Some(id) = &state.session {
        owner.check(id, "left alone")?;
    }
    if session::state_alive(&state) {
        heartbeat(town, home, &state, opts, out)?;
        // A cycle request waits for the agent to exit, at most `cycle_grace`.
        if !state.requesting_cycle || !cycle_overdue(&owner, home, &state, opts, out)? {
            return Ok(());
        }
        state = home.state()?;
    }
    if state.requesting_cycle {
        let Some(new) = restart(town, home, |_| {})? else {
            return Ok(());
        };
        out.push(act(
            &home.address,
            "cycled",
            format!(
                "generation {}, session {}",
                new.generation,
                new.session.unwrap_or_default()
            ),
        ));
        return Ok(());
    }
    let long_running = matches!(home.address.role(), Role::Witness | Role::Refinery);
    if long_running && state.status == Status::Working && state.session.is_some() {
        crashed(town, home, &state, opts, out)?;
    }
    Ok(())
}

/// When the live session of an agent that asked for a cycle is stopped: at
/// its request (`cycle_requested_at`, recorded now when missing) plus
/// `cycle_grace`.
pub(crate) fn cycle_due(state: &AgentState, opts: &Options) -> Option<jiff::Timestamp> {
    let asked = state
        .cycle_requested_at
        .filter(|_| state.requesting_cycle)?;
    asked.checked_add(signed(opts.cycle_grace)).ok()
}

/// A live session whose agent asked for a cycle: stop it once `cycle_grace`
/// has passed since the request (a TUI never exits by itself), leaving the
/// request for the cycle. Whether it was stopped.
fn cycle_overdue(
    owner: &session::Owner,
    home: &Home,
    state: &AgentState,
    opts: &Options,
    out: &mut Vec<Action>,
) -> Result<bool> {
    let Some(due) = cycle_due(state, opts) else {
        // Asked by hand (no time recorded): the grace starts now.
        home.update_state(|s| {
            s.cycle_requested_at = Some(crate::clock::now());
            Ok(())
        })?;
        return Ok(false);
    };
    if crate::clock::now() < due {
        return Ok(false);
    }
    let Some(id) = state.session.as_deref() else {
        return Ok(false);
    };
    session::stop(owner, id, Duration::from_secs(5))?;
    out.push(act(
        &home.address,
        "stopped",
        format!(
            "it asked for a cycle {}s ago and its session {id} had not exited; stopped for its next session",
            opts.cycle_grace.as_secs()
        ),
    ));
    Ok(true)
}

/// Start a fresh session of `home`'s agent: `command`, else the one recorded in
/// its `state.json`, else the rig's (or for the Mayor the town's)
/// `agent_command`. `edit` changes the state in the same write that records
/// the session. Refused (conflict) while its session is alive.
pub fn start(
    town: &Town,
    home: &Home,
    command: Option<String>,
    edit: impl FnOnce(&mut AgentState),
) -> Result<AgentState> {
    let guard = session::StartGuard::lock(town, home)?;
    let command = match command.or_else(|| guard.current.command.clone()) {
        Some(c) => c,
        None => configured_command(town, home, guard.current.issue.as_deref())?,
    };
    guard.start(town, &command, edit)
}

/// [`start`] with the recorded command, for the daemon: `None` when someone
/// else started the agent meanwhile. A failure is recorded in `start_error`
/// and reported once per distinct error (the next pass tries again), then
/// returned.
fn restart(
    town: &Town,
    home: &Home,
    edit: impl FnOnce(&mut AgentState),
) -> Result<Option<AgentState>> {
    let e = match start(town, home, None, |s| {
        s.start_error = None;
        edit(s);
    }) {
        Ok(s) => return Ok(Some(s)),
        Err(e) if e.kind == Kind::Conflict => return Ok(None),
        Err(e) => e,
    };
    let msg = e.to_string();
    let first = home.update_state(|s| {
        let first = s.start_error.as_deref() != Some(msg.as_str());
        s.start_error = Some(msg.clone());
        Ok(first)
    })?;
    if first {
        report(
            town,
            home,
            &format!("cannot start: {}", home.address),
            &format!("{msg}\nThe daemon tries again on every pass."),
        )?;
    }
    Err(e)
}

/// `gt daemon start <address>`: start an agent by hand, with a clean crash record.
pub fn start_fresh(town: &Town, home: &Home, command: Option<String>) -> Result<AgentState> {
    start(town, home, command, |s| {
        // The crash record (protocol/daemon.md).
        s.restarts = 0;
        s.crashed_at = None;
        s.next_restart_at = None;
        s.start_error = None;
    })
}

/// The command from the rig's (or for town agents the town's) `"agent"`
/// preset or `agent_command`, the first prompt naming `issue`.
fn configured_command(town: &Town, home: &Home, issue: Option<&str>) -> Result<String> {
    let agent = crate::agent::AgentConfig::resolve(town, home.address.rig())?;
    agent.command_line(home, issue).ok_or_else(|| {
        let file = match home.address.rig() {
            Some(rig) => crate::rig::Rig::at(town, rig).config_path(),
            None => town.town_json(),
        };
        Error::invalid(format!(
            "no agent command for {}: none recorded in {}, none in {} (\"agent\" or \"agent_command\"); pass --agent",
            home.address,
            home.state_path().display(),
            file.display()
        ))
    })
}

/// A duration for time arithmetic (ours are far below its ~292-year limit).
fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A crashed Witness or Refinery: restart now, or when its backoff is over, or
/// give up after `max_restarts` quick crashes in a row.
fn crashed(
    town: &Town,
    home: &Home,
    state: &AgentState,
    opts: &Options,
    out: &mut Vec<Action>,
) -> Result<()> {
    let crash = backoff(state, opts.max_restarts, crate::clock::now());
    let crashed_at = crash.crashed_at;
    let restarts = crash.restarts;
    match crash.next {
        Retry::GiveUp => {
            home.update_state(|s| {
                s.status = Status::Dead;
                s.next_restart_at = None;
                s.crashed_at = Some(crashed_at);
                Ok(())
            })?;
            let detail = format!(
                "its session ended {} times in a row without a cycle request; not restarted again",
                restarts + 1
            );
            report(
                town,
                home,
                &format!("dead: {}", home.address),
                &format!(
                    "{detail}.\n{}Start it again with: gt daemon start {}",
                    ending(home, state, crash.ran),
                    home.address
                ),
            )?;
            out.push(act(&home.address, "gave-up", detail));
        }
        Retry::At { due, delay } => {
            if state.next_restart_at.is_none() {
                home.update_state(|s| {
                    s.crashed_at = Some(crashed_at);
                    s.next_restart_at = Some(due);
                    Ok(())
                })?;
                out.push(act(
                    &home.address,
                    "backoff",
                    format!(
                        "session ended without a cycle request; restart {}/{} at {due} (in {}s)",
                        restarts + 1,
                        opts.max_restarts,
                        delay.as_secs()
                    ),
                ));
            }
        }
        Retry::Now => {
            let Some(new) = restart(town, home, |s| {
                s.restarts = restarts + 1;
            })?
            else {
                return Ok(());
            };
            out.push(act(
                &home.address,
                "restarted",
                format!(
                    "session ended without a cycle request; restart {}/{}: generation {}, session {}",
                    restarts + 1,
                    opts.max_restarts,
                    new.generation,
                    new.session.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// A live session: report a stale heartbeat once per silence (the silence is
/// named by the heartbeat time it started from, `heartbeat_reported`).
fn heartbeat(
    town: &Town,
    home: &Home,
    state: &AgentState,
    opts: &Options,
    out: &mut Vec<Action>,
) -> Result<()> {
    let Some(last) = home.last_sign_of_life(state) else {
        return Ok(());
    };
    let quiet = crate::clock::now().duration_since(last);
    let stale = quiet >= signed(opts.heartbeat_timeout);
    if !stale {
        if state.heartbeat_reported.is_some() {
            home.update_state(|s| {
                s.heartbeat_reported = None;
                Ok(())
            })?;
        }
        return Ok(());
    }
    if state.heartbeat_reported == Some(last) {
        return Ok(());
    }
    let last_s = crate::clock::format(last);
    let detail = format!(
        "no heartbeat for {}s (last {last_s}, timeout {}s)",
        quiet.as_secs(),
        opts.heartbeat_timeout.as_secs()
    );
    report(
        town,
        home,
        &format!("no heartbeat: {}", home.address),
        &format!(
            "{detail}; its session {} is still running.\nLog: {}",
            state.session.as_deref().unwrap_or("-"),
            session::log_path(&home.path).display()
        ),
    )?;
    home.update_state(|s| {
        s.heartbeat_reported = Some(last);
        Ok(())
    })?;
    out.push(act(&home.address, "heartbeat-stale", detail));
    Ok(())
}

/// Mail whoever answers for `home`'s agent, as the daemon.
fn report(town: &Town, home: &Home, subject: &str, body: &str) -> Result<()> {
    crate::report::about(town, home, subject, body, "gt-daemon")
}
