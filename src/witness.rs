//! The Witness's patrol (seed: "Worker Cleanup (Witness-Owned)", "Witness Work
//! Loop"): one pass over a rig's polecats that reads done signals, checks each
//! finished worker's clone, submits clean work to the merge queue, nudges a
//! dirty or silent worker, escalates one stuck after three nudges to the Mayor,
//! and dispatches ready work of an epic within `max_workers`.
//!
//! Everything it knows is in the tree: polecats' `state.json`, their clones,
//! the witness's inbox, the tracker. A patrol can run any time, by hand, from a
//! loop (`gt witness run`) or from a systemd path unit, and changes nothing
//! twice: what it did is recorded in the polecats' and its own `state.json`.

use std::time::Duration;

use crate::address::Address;
use crate::agent::Screen;
use crate::error::{Error, Kind, Result};
use crate::event::{Action, Event, act};
use crate::fsio::Durability;
use crate::home::Home;
use crate::mail::{self, Message, reader::Reader};
use crate::polecat::{self, SpawnOptions};
use crate::record::Status;
use crate::rig::Rig;
use crate::town::Town;
use crate::watch::{Flow, Wake, Watch};
use crate::{beads, git, queue, session};

/// Nudges before the Witness escalates to the Mayor (seed: "Stuck after 3 tries").
pub const MAX_NUDGES: u64 = 3;

/// How long a working polecat may go without touching its heartbeat before it
/// is nudged, unless the rig's config.json sets `stuck_after` (e.g. "30m").
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(30 * 60);

/// What a patrol does besides checking workers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Dispatch this epic's ready children, and report the epic done.
    pub epic: Option<String>,
}

/// One patrol of `rig`.
pub fn patrol(town: &Town, rig: &Rig, opts: &Options) -> Result<Vec<Action>> {
    let witness = town.home(&Address::Witness {
        rig: rig.name.clone(),
    })?;
    let mut actions = Vec::new();
    let signals = lifecycle_mail(town, &witness, rig, &mut actions)?;
    let stuck_after = rig.config()?.stuck_after();
    for home in rig.polecats()? {
        let state = match home.state() {
            Ok(s) => s,
            Err(e) => {
                // A worker whose state cannot be read is not ignored silently.
                actions.push(act(&home.address, "unreadable", e.to_string()));
                continue;
            }
        };
        if state.status != Status::Working || signals.settled.contains(&home.address.to_string()) {
            continue;
        }
        // Working for another machine: its home Witness sees to it.
        if crate::federation::worker::works_for(&home).is_some() {
            continue;
        }
        // A session that is not the worker's says nothing about its work,
        // and is not the Witness's to read, type into or stop.
        if let Some(id) = &state.session
            && let Err(e) = session::Owner::of(town, &home).check(id, "left alone")
        {
            actions.push(act(&home.address, "error", e.to_string()));
            continue;
        }
        let mut alive = session::state_alive(&state);
        let signaled = signals.done.contains(&home.address.to_string());
        let clone = home.clone_dir();
        if alive && signaled {
            // Seed: done signal -> capture git state -> kill session if clean.
            if git::is_clean(&clone)? {
                session::stop_home(town, &home)?;
                actions.push(act(
                    &home.address,
                    "stopped",
                    "done signal and a clean clone",
                ));
                alive = false;
            } else {
                actions.extend(nudge(
                    town,
                    &witness,
                    &home,
                    &format!(
                        "you signalled done but your clone is dirty:\n{}",
                        dirty_summary(&clone)
                    ),
                ));
                continue;
            }
        }
        if !alive && state.requesting_cycle && !signaled {
            // It asked for a fresh session: the daemon's to start, not
            // finished work. A done signal after the request says it is.
            continue;
        }
        if alive {
            actions.extend(live(town, &witness, &home, &state, stuck_after)?);
            continue;
        }
        actions.extend(finished(town, rig, &witness, &home, signaled)?);
    }
    if let Some(epic) = &opts.epic {
        // The plan-oracle may still be filing children: dispatch waits for it.
        let (planned, said) = crate::plugin::before_dispatch(town, rig, &witness, epic)?;
        actions.extend(said);
        if planned {
            actions.extend(dispatch(town, rig, epic)?);
            actions.extend(report_epic(town, rig, &witness, epic)?);
        }
    }
    Ok(actions)
}

/// A worker whose session runs: read its screen (a preset's tmux session).
/// At a dialog it is blocked: recorded and reported once, never nudged (a
/// typed nudge's Enter would answer the dialog). Silent for `stuck_after`, it
/// is nudged, unless its screen shows a turn in progress (a long model call
/// runs no hook).
fn live(
    town: &Town,
    witness: &Home,
    home: &Home,
    state: &crate::record::AgentState,
    stuck_after: Duration,
) -> Result<Vec<Action>> {
    let quiet = silence(home, state)?;
    let stuck = quiet > stuck_after;
    let session = state.session.as_deref().unwrap_or_default();
    let silent = format!("no heartbeat for {}s", quiet.as_secs());
    Ok(match crate::agent::screen_of(town, home, session) {
        Some(Screen::Dialog(dialog)) => {
            let first =
                match crate::agent::blocked(town, home, &dialog, &witness.address.to_string()) {
                    Ok(first) => first,
                    Err(e) => return Ok(vec![act(&home.address, "error", e.to_string())]),
                };
            if !first && !stuck {
                return Ok(Vec::new());
            }
            vec![act(
                &home.address,
                "blocked",
                format!(
                    "its runtime waits at a dialog: {dialog}; {}",
                    crate::agent::blocked_hint(&home.address)
                ),
            )]
        }
        screen => {
            if matches!(screen, Some(Screen::Busy { .. } | Screen::Ready { .. })) {
                crate::agent::unblocked(home)?;
            }
            match screen {
                _ if !stuck => Vec::new(),
                Some(Screen::Busy { .. }) => vec![act(
                    &home.address,
                    "busy",
                    format!("{silent}, but its screen shows a turn in progress; not nudged"),
                )],
                _ => nudge(town, witness, home, &silent),
            }
        }
    })
}

/// Patrol `rig` now, whenever the witness's mail or the polecats change
/// (inotify), and at least every `every`; each action goes to `on`, and
/// [`Event::Ready`] once after the first patrol. Runs until an error (`on`'s
/// too: a reader that went away stops the loop).
pub fn watch(
    town: &Town,
    rig: &Rig,
    opts: &Options,
    every: Duration,
    on: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<()> {
    let witness = town.home(&Address::Witness {
        rig: rig.name.clone(),
    })?;
    let _running = crate::runner::hold(
        &crate::runner::witness(rig),
        &format!("the Witness loop of rig {}", rig.name),
    )?;
    let dirs = [witness.mail_dir(), rig.path.join("polecats")];
    let mut watch = Watch::new(&[&dirs[0], &dirs[1]], every)?;
    let waker = watch.waker();
    // Backed-off restarts waited for: no file event marks their time.
    let mut timers = std::collections::HashSet::new();
    watch.run(|wake| {
        for a in patrol(town, rig, opts)? {
            on(Event::Action(a))?;
        }
        let now = crate::clock::now();
        timers.retain(|t| *t > now);
        for home in rig.polecats()? {
            if let Some(due) = home
                .state()
                .ok()
                .and_then(|s| s.next_restart_at)
                .filter(|due| *due > now && timers.insert(*due))
            {
                waker.wake_at(due, home.path);
            }
        }
        if wake == Wake::Start {
            on(Event::Ready {
                watching: dirs.len(),
            })?;
        }
        Ok(Flow::Continue)
    })
}

/// Read the lifecycle mail since the last patrol and mark it read: returns the
/// polecats that signalled `done`. Merge results are acted on here: `merged` or
/// `landed` frees the worker (status idle, ready for new work); `merge_failed`
/// sends it back to work on the same issue (seed: "conflict -> back to
/// polecat"), counted as a nudge. Mail about another generation than the
/// worker's current one is stale and ignored.
fn lifecycle_mail(
    town: &Town,
    witness: &Home,
    rig: &Rig,
    actions: &mut Vec<Action>,
) -> Result<Signals> {
    let reader = Reader::owner(witness);
    let scan = reader.pending()?;
    for bad in &scan.bad {
        actions.push(act(&witness.address, "unreadable", bad.to_string()));
    }
    let mut signals = Signals::default();
    let mut handled = Vec::new();
    for p in &scan.messages {
        let m = &p.message;
        if let Some(a) = crate::federation::worker::lifecycle(town, rig, m) {
            actions.extend(a);
            handled.push(m.id.as_str());
            continue;
        }
        let is_done = m.kind == "done" || m.subject.starts_with("done");
        if !is_done && !matches!(m.kind.as_str(), "merged" | "landed" | "merge_failed") {
            if let Some(a) = forward_to_mayor(town, witness, rig, m)? {
                actions.push(a);
                handled.push(m.id.as_str());
            }
            continue;
        }
        // Done signals come from the worker; merge results name it.
        let about = if is_done {
            Some(m.from.as_str())
        } else {
            m.extra.get("polecat").and_then(|v| v.as_str())
        };
        let Some(Ok(addr @ Address::Polecat { .. })) = about.map(str::parse::<Address>) else {
            continue;
        };
        if addr.rig() != Some(rig.name.as_str()) {
            continue;
        }
        handled.push(m.id.as_str());
        let Ok(home) = town.home(&addr) else { continue };
        let generation = match home.state() {
            Ok(s) => s.generation,
            Err(e) => {
                actions.push(act(&addr, "unreadable", format!("{}: {e}", m.id)));
                continue;
            }
        };
        // Only the current generation's mail acts: an older one is stale, a
        // newer one is about an earlier worker of the same name, re-made.
        if m.generation.is_some_and(|g| g != generation) {
            let detail = format!(
                "{} is about generation {}, the worker is at {generation}",
                m.id,
                m.generation.unwrap_or(0)
            );
            actions.push(act(&addr, "stale-signal", detail));
            continue;
        }
        match m.kind.as_str() {
            // About work before the session that runs now (a hand-made
            // entry bound to no generation): that session is not freed.
            "merged" | "landed" if home.state().is_ok_and(|s| session::state_alive(&s)) => {
                let detail = format!("{} is about work before its live session", m.id);
                actions.push(act(&addr, "stale-signal", detail));
            }
            "merged" | "landed" => {
                home.update_state(|s| {
                    s.status = Status::Idle;
                    s.nudges = 0;
                    Ok(())
                })?;
                actions.push(act(
                    &addr,
                    "freed",
                    format!("{}; ready for new work", m.subject),
                ));
                signals.settled.insert(addr.to_string());
            }
            "merge_failed" => {
                actions.extend(send_back(town, rig, witness, &home, &m.subject));
                signals.settled.insert(addr.to_string());
            }
            _ => {
                signals.done.insert(addr.to_string());
            }
        }
    }
    if !handled.is_empty() {
        reader.mark(&handled, "read")?;
    }
    Ok(signals)
}

/// Mail from a polecat of `rig` that is no lifecycle mail (a call for help,
/// a question) goes to the Mayor: the patrol answers none, and unread here
/// nobody would. Once: the forward is its own record.
fn forward_to_mayor(town: &Town, witness: &Home, rig: &Rig, m: &Message) -> Result<Option<Action>> {
    let from = match m.from.parse::<Address>() {
        // A report a tool wrote about the polecat (`by`: its death, a
        // dialog) is the Witness's own to read, not the agent's words.
        Ok(a @ Address::Polecat { .. })
            if a.rig() == Some(rig.name.as_str()) && !m.extra.contains_key("by") =>
        {
            a
        }
        _ => return Ok(None),
    };
    let mayor = town.home(&Address::Mayor)?;
    if mail::find(&mayor, &mail::forward_id(&m.id))?.is_none() {
        let why = format!(
            "{from} wrote to {}, whose patrol acts only on lifecycle mail (done, merged, landed, merge_failed); forwarded by the Witness. Answer with: gt send {from} -s <subject> -m <answer>",
            witness.address
        );
        let mut fwd = m.forwarded(&witness.address, "mayor", "gt-witness", &why, None);
        mail::post(town, std::slice::from_mut(&mut fwd), Durability::from_env())?;
    }
    Ok(Some(act(
        &from,
        "forwarded",
        format!("{} ({:?}) to the Mayor", m.id, m.subject),
    )))
}

/// What the lifecycle mail said, by polecat address.
#[derive(Default)]
struct Signals {
    /// Sent a done signal.
    done: std::collections::BTreeSet<String>,
    /// Already dealt with in this patrol (freed or sent back): left alone until the next.
    settled: std::collections::BTreeSet<String>,
}

/// Restart a worker on its issue after its merge failed (the Refinery mailed
/// it why), or escalate once it has been sent back [`MAX_NUDGES`] times.
fn send_back(town: &Town, rig: &Rig, witness: &Home, home: &Home, why: &str) -> Vec<Action> {
    let nudged = nudge(
        town,
        witness,
        home,
        &format!("{why}; see the Refinery's mail and fix it"),
    );
    if nudged.iter().any(|a| a.action != "nudged") {
        return nudged;
    }
    let Address::Polecat { name, .. } = &home.address else {
        return nudged;
    };
    let issue = home.state().ok().and_then(|s| s.issue);
    match polecat::spawn(
        town,
        rig,
        &SpawnOptions {
            issue,
            name: Some(name.clone()),
            ..Default::default()
        },
    ) {
        Ok(s) => vec![act(
            &home.address,
            "sent-back",
            format!("{why}; restarted (generation {})", s.generation),
        )],
        Err(e) => vec![act(
            &home.address,
            "error",
            format!("{why}; could not restart: {e}"),
        )],
    }
}

/// Its work is over: a cycle it asked for before its done signal is not
/// the daemon's to start any more.
fn finish_cycle(s: &mut crate::record::AgentState) {
    s.requesting_cycle = false;
    s.cycle_requested_at = None;
}

/// A polecat whose session ended: submit clean work, nudge a dirty clone,
/// release an issue with nothing to show. `signaled`: it sent `done`.
fn finished(
    town: &Town,
    rig: &Rig,
    witness: &Home,
    home: &Home,
    signaled: bool,
) -> Result<Vec<Action>> {
    let clone = home.clone_dir();
    let state = home.state()?;
    if state.crashed_at.is_some() {
        // A death already reported, backing off.
        return died(town, rig, witness, home, &state);
    }
    if !git::is_clean(&clone)? {
        return Ok(nudge(
            town,
            witness,
            home,
            &format!(
                "your session ended with a dirty clone:\n{}",
                dirty_summary(&clone)
            ),
        ));
    }
    // Commits on the worker's branch that origin does not have: the branch
    // the Refinery merges, wherever HEAD is.
    let branch = polecat::work(home, &state)?.branch;
    let ahead = git::commits_ahead(&clone, &[&format!("refs/heads/{branch}")])?;
    if ahead == 0
        && let Some(elsewhere) = polecat::stray_work(&clone, &branch)?
    {
        return Ok(nudge(town, witness, home, &elsewhere));
    }
    let name = match &home.address {
        Address::Polecat { name, .. } => name.clone(),
        _ => unreachable!("rig.polecats() gives polecats"),
    };
    let quick = crate::daemon::ran_until(&state, crate::clock::now()) < crate::daemon::QUICK_DEATH;
    // Exit 0 at once with nothing done and nothing said is a runtime that
    // cannot work here, not a worker giving up: released, it would be
    // dispatched again at once, for ever.
    let failed = match session::exit::status(home) {
        Some(0) => !signaled,
        Some(_) => true,
        // Killed (gt kill, gt stop): someone meant it to end.
        None => false,
    };
    if ahead == 0 && quick && failed {
        return died(town, rig, witness, home, &state);
    }
    if ahead == 0 {
        if let Some(issue) = &state.issue {
            beads::open(rig)?.release(issue, &home.address.to_string())?;
        }
        home.update_state(|s| {
            s.status = Status::Idle;
            finish_cycle(s);
            Ok(())
        })?;
        let what = state.issue.as_deref().unwrap_or("its work");
        send(
            town,
            witness,
            "mayor",
            &format!("{} ended without commits on {what}", home.address),
            "The issue is open again for another worker.",
            "escalation",
            None,
        )?;
        return Ok(vec![act(
            &home.address,
            "released",
            format!("session ended with no commits; {what} is open again"),
        )]);
    }
    let entry = queue::submit(town, rig, &name)?;
    home.update_state(|s| {
        s.status = Status::Done;
        s.nudges = 0;
        finish_cycle(s);
        Ok(())
    })?;
    Ok(vec![act(
        &home.address,
        "submitted",
        format!(
            "{ahead} commit(s), clean clone; merge queue entry {}",
            entry.path.display()
        ),
    )])
}

/// A polecat that died quickly (its session failed, or exited 0 without
/// `gt done`, within [`crate::daemon::QUICK_DEATH`] of its start, with
/// nothing committed and no cycle request): the
/// daemon's backoff policy ([`crate::daemon::backoff`]) on its issue, which it
/// keeps. Each death is reported once to the Witness with what the session
/// left (exit status, last output); the polecat is restarted with the same
/// command, at once the first time, then after 10 s, 20 s, ...; after
/// `max_restarts` quick deaths in a row it is marked `dead`, the Mayor is
/// told, and it is left alone.
fn died(
    town: &Town,
    rig: &Rig,
    witness: &Home,
    home: &Home,
    state: &crate::record::AgentState,
) -> Result<Vec<Action>> {
    use crate::daemon::Retry;
    let max = town.config()?.max_restarts();
    let crash = crate::daemon::backoff(state, max, crate::clock::now());
    let first = state.crashed_at.is_none();
    let n = crash.restarts + 1;
    let status = session::exit::status(home);
    let mut what = crate::daemon::ending(home, state, crash.ran);
    if status == Some(0) {
        what.insert_str(
            0,
            "It exited 0 without work: no commits beyond origin's main, no gt done, no cycle request.\n",
        );
    }
    let next = match &crash.next {
        Retry::Now => format!("Restarted now (restart {n}/{max})."),
        Retry::At { due, .. } => format!("Restart {n}/{max} at {due}."),
        Retry::GiveUp => {
            format!("{n} quick deaths in a row: not restarted again; marked dead, the Mayor told.")
        }
    };
    if first {
        // Recorded before anything else, so the death is reported once even
        // when the restart below fails and is retried by the next patrol.
        home.update_state(|s| {
            s.crashed_at = Some(crash.crashed_at);
            Ok(())
        })?;
        crate::report::about(
            town,
            home,
            &format!("died: {}", home.address),
            &format!("{what}{next}"),
            &witness.address.to_string(),
        )?;
    }
    let summary = match status {
        Some(0) => format!(
            "session exited 0 without work {}s after its start",
            crash.ran.as_secs()
        ),
        other => format!(
            "session failed {}s after its start ({})",
            crash.ran.as_secs(),
            other.map_or("no exit status".to_string(), |s| format!("exit status {s}"))
        ),
    };
    match crash.next {
        Retry::GiveUp => {
            home.update_state(|s| {
                s.status = Status::Dead;
                s.next_restart_at = None;
                Ok(())
            })?;
            send(
                town,
                witness,
                "mayor",
                &format!("dead: {}", home.address),
                &format!(
                    "{what}{next}\nIts issue stays assigned to it. Try again with: gt spawn --issue {} --name {}",
                    state.issue.as_deref().unwrap_or("<issue>"),
                    home.path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                ),
                "escalation",
                Some(state.generation),
            )?;
            Ok(vec![act(
                &home.address,
                "gave-up",
                format!("{summary}; {n} quick deaths in a row, not restarted again"),
            )])
        }
        Retry::At { due, delay } => {
            if state.next_restart_at.is_some() {
                return Ok(Vec::new());
            }
            home.update_state(|s| {
                s.next_restart_at = Some(due);
                Ok(())
            })?;
            Ok(vec![act(
                &home.address,
                "backoff",
                format!(
                    "{summary}; restart {n}/{max} at {due} (in {}s)",
                    delay.as_secs()
                ),
            )])
        }
        Retry::Now => {
            let Address::Polecat { name, .. } = &home.address else {
                unreachable!("rig.polecats() gives polecats")
            };
            let restarted = polecat::spawn(
                town,
                rig,
                &SpawnOptions {
                    issue: state.issue.clone(),
                    name: Some(name.clone()),
                    agent: state.command.clone(),
                    restarts: n,
                    ..Default::default()
                },
            );
            Ok(vec![match restarted {
                Ok(s) => act(
                    &home.address,
                    "restarted",
                    format!(
                        "{summary}; restart {n}/{max}: generation {}, session {}",
                        s.generation, s.session
                    ),
                ),
                Err(e) => act(
                    &home.address,
                    "error",
                    format!("{summary}; could not restart: {e}"),
                ),
            }])
        }
    }
}

/// Mail a worker a nudge, or after [`MAX_NUDGES`] escalate to the Mayor and
/// mark the worker stuck. Errors are reported as actions: one unreachable
/// worker must not stop the patrol.
fn nudge(town: &Town, witness: &Home, home: &Home, reason: &str) -> Vec<Action> {
    let result = (|| -> Result<Action> {
        let count = home.update_state(|s| {
            s.nudges += 1;
            if s.nudges > MAX_NUDGES {
                s.status = Status::Stuck;
            }
            Ok(s.nudges)
        })?;
        let generation = home.state()?.generation;
        if count > MAX_NUDGES {
            send(
                town,
                witness,
                "mayor",
                &format!("stuck: {}", home.address),
                &format!(
                    "{reason}\n\nNudged {MAX_NUDGES} times without progress; marked stuck.{}",
                    crate::plugin::on_stuck(town, witness, home, reason)
                ),
                "escalation",
                Some(generation),
            )?;
            return Ok(act(
                &home.address,
                "escalated",
                format!("after {MAX_NUDGES} nudges: {}", first_line(reason)),
            ));
        }
        send(
            town,
            witness,
            &home.address.to_string(),
            &format!("nudge {count}/{MAX_NUDGES}"),
            reason,
            "nudge",
            Some(generation),
        )?;
        let summary = first_line(reason).trim_end_matches(':');
        let typed = type_nudge(
            town,
            home,
            &format!(
                "[gt] nudge {count}/{MAX_NUDGES} from {}: {summary} (details: gt inbox)",
                witness.address
            ),
        );
        Ok(act(
            &home.address,
            "nudged",
            format!("{count}/{MAX_NUDGES}: {summary}{typed}"),
        ))
    })();
    vec![result.unwrap_or_else(|e| act(&home.address, "error", e.to_string()))]
}

/// Type a nudge's one-line summary into the worker's live tmux session, so an
/// agent busy in its prompt sees it; the mail stays the record. Returns what
/// happened, for the action's detail: a failure never fails the patrol.
fn type_nudge(town: &Town, home: &Home, line: &str) -> String {
    let Some(id) = home.state().ok().and_then(|s| s.session) else {
        return String::new();
    };
    if !session::has_terminal(&id) {
        return String::new();
    }
    match crate::agent::inject(town, home, &id, line) {
        Ok(_) => "; typed into its session".to_string(),
        Err(e) => format!("; typing into its session failed: {e}"),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn send(
    town: &Town,
    witness: &Home,
    to: &str,
    subject: &str,
    body: &str,
    kind: &str,
    generation: Option<u64>,
) -> Result<()> {
    let mut m = Message::new(&witness.address, to, subject, body);
    m.kind = kind.to_string();
    m.generation = generation;
    mail::post(town, std::slice::from_mut(&mut m), Durability::from_env())
}

/// `git status --short` of a clone, for a nudge.
fn dirty_summary(clone: &std::path::Path) -> String {
    git::run(Some(clone), &["status", "--short"]).unwrap_or_else(|e| e.to_string())
}

/// Time since the worker last showed life: its heartbeat file, else its state.
/// Time since the worker last showed life (its heartbeat or its session's
/// start; for a session recorded without a start time, its state's mtime).
fn silence(home: &Home, state: &crate::record::AgentState) -> Result<Duration> {
    let last = match home.last_sign_of_life(state) {
        Some(t) => t,
        None => crate::confine::metadata(&home.state_path())
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(&home.state_path(), e))
            .and_then(|t| {
                jiff::Timestamp::try_from(t).map_err(|e| Error::invalid(e.to_string()))
            })?,
    };
    Ok(Duration::try_from(crate::clock::now().duration_since(last)).unwrap_or_default())
}

/// Spawn a polecat for each ready child of `epic` not yet taken, until the
/// rig is at `max_workers` (seed: "Witness Work Loop").
fn dispatch(town: &Town, rig: &Rig, epic: &str) -> Result<Vec<Action>> {
    let tracker = beads::open(rig)?;
    let ready = tracker.ready(&beads::ReadyFilter {
        parent: Some(epic.to_string()),
        ..Default::default()
    })?;
    let config = rig.config()?;
    let delay = config.worker_spawn_delay.get();
    let room = (config.max_workers as usize).saturating_sub(polecat::active(rig)?.len());
    let mut out = Vec::new();
    for issue in ready.into_iter().take(room) {
        // Seed decision 13: a pause between spawns, so sessions start one by one.
        if !out.is_empty() {
            std::thread::sleep(delay);
        }
        match polecat::spawn(
            town,
            rig,
            &SpawnOptions {
                issue: Some(issue.id.clone()),
                ..Default::default()
            },
        ) {
            Ok(s) => out.push(act(
                &s.address,
                "spawned",
                format!(
                    "on {} (generation {}, session {})",
                    issue.id, s.generation, s.session
                ),
            )),
            // Someone took the issue, or another spawner filled the rig
            // meanwhile: the next patrol sees.
            Err(e) if e.kind == Kind::Negative => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Tell the Mayor once when every child of `epic` is closed and no worker is on it.
fn report_epic(town: &Town, rig: &Rig, witness: &Home, epic: &str) -> Result<Vec<Action>> {
    let tracker = beads::open(rig)?;
    let children: Vec<_> = tracker
        .all()?
        .into_iter()
        .filter(|i| i.parent() == Some(epic))
        .collect();
    if children.is_empty() || children.iter().any(|i| i.status != "closed") {
        return Ok(Vec::new());
    }
    let first = witness.update_state(|s| {
        if s.reported_epics.iter().any(|e| e == epic) {
            return Ok(false);
        }
        s.reported_epics.push(epic.to_string());
        Ok(true)
    })?;
    if !first {
        return Ok(Vec::new());
    }
    let body: Vec<String> = children
        .iter()
        .map(|i| {
            format!(
                "{} {} ({})",
                i.id,
                i.title,
                i.assignee.as_deref().unwrap_or("-")
            )
        })
        .collect();
    send(
        town,
        witness,
        "mayor",
        &format!("work complete: {epic}"),
        &body.join("\n"),
        "report",
        None,
    )?;
    Ok(vec![act(
        "mayor",
        "epic-complete",
        format!("{epic}: {} children closed", children.len()),
    )])
}
