//! The work checks: dead sessions, zombie sessions, orphaned claims,
//! heartbeats. Liveness is asked of the session backend, never assumed.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use super::{Ctx, Finding, Ran, wait};
use crate::address::{Address, Role};
use crate::beads::{self, ListFilter};
use crate::error::Result;
use crate::fsio;
use crate::home::Home;
use crate::mail::{self, Message};
use crate::record::{AgentState, Status};
use crate::rig::Rig;
use crate::session::{self, SessionId};

/// Whether `home`'s recorded session runs and is the agent's own: a record
/// naming another's is reported once (`session-foreign`), not counted as a
/// session that beats or needs its loops.
fn runs_as_its_own(ctx: &Ctx, home: &Home, state: &AgentState) -> bool {
    state
        .session
        .as_deref()
        .is_some_and(|id| session::Owner::of(ctx.town, home).live(id) == Ok(true))
}

/// `working` agents whose session is gone (an agent crash, `tmux kill-server`).
/// A polecat with nothing in its clone is reset to idle, its issue released
/// and its Witness told; one with work there is left to the Witness, which
/// submits or nudges it. The Witness and Refinery are the daemon's to restart.
pub(super) fn sessions(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for home in ctx.homes() {
        let Ok(state) = home.state() else { continue };
        // A record naming a live session that is not the agent's (planted,
        // or copied from another home): every tool refuses it; --fix drops
        // the record and signals nothing.
        if let Some((id, f)) = (state.session.as_deref())
            .and_then(|id| Some((id, session::Owner::of(ctx.town, &home).foreign(id)?)))
        {
            out.push(
                Finding::error("session-foreign", &home.state_path(), f.to_string()).repair(
                    ctx.fix,
                    || {
                        home.update_state(|s| {
                            // Only that record: a start may have replaced it.
                            if s.session.as_deref() == Some(id) {
                                s.session = None;
                            }
                            Ok(())
                        })
                    },
                ),
            );
            continue;
        }
        if state.status != Status::Working || state.requesting_cycle || session::state_alive(&state)
        {
            continue;
        }
        let gone = match &state.session {
            Some(id) => format!("{} is working but its session {id} is gone", home.address),
            None => format!("{} is working but has no session", home.address),
        };
        let path = home.state_path();
        let f = match home.address.role() {
            Role::Witness | Role::Refinery => Finding::warning(
                "session-dead",
                &path,
                format!("{gone}; the daemon restarts it (gt daemon tick)"),
            ),
            Role::Polecat => match clone_work(&home) {
                Some(work) => Finding::error(
                    "session-dead",
                    &path,
                    format!(
                        "{gone}; its clone has {work}: the Witness submits or nudges it (gt witness patrol {})",
                        home.address.rig().unwrap_or_default()
                    ),
                ),
                None => {
                    let mut done = String::new();
                    let f =
                        Finding::error("session-dead", &path, gone.clone()).repair(ctx.fix, || {
                            done = reset_dead(ctx, &home, &gone)?;
                            Ok(())
                        });
                    Finding {
                        message: format!("{}{done}", f.message),
                        ..f
                    }
                }
            },
            _ => Finding::error("session-dead", &path, gone.clone())
                .repair(ctx.fix, || set_idle(&home).map(drop)),
        };
        out.push(f);
    }
    Ok(Some(()))
}

/// What a polecat's clone holds that is not on origin: uncommitted files or
/// commits; `None` when nothing (or no readable clone: nothing to lose there).
fn clone_work(home: &Home) -> Option<String> {
    let clone = home.clone_dir();
    crate::git::open(&clone).ok()?;
    let dirty = crate::git::dirty_files(&clone).unwrap_or_default();
    if !dirty.is_empty() {
        return Some(format!("{} uncommitted file(s)", dirty.len()));
    }
    match crate::polecat::commits_not_on_origin(home, &home.state().ok()?).ok()? {
        0 => None,
        n => Some(format!("{n} commit(s) not on origin")),
    }
}

/// Set a dead `working` agent idle, under its state lock (bounded), checking
/// again that it is still working with a dead session; its prior state.
fn set_idle(home: &Home) -> Result<Option<AgentState>> {
    let path = home.state_path();
    let _lock = wait::lock(&path)?;
    let role = home.address.role();
    fsio::update_json_locked(
        &path,
        || Ok(AgentState::new(role)),
        |s: &mut AgentState| {
            if s.status != Status::Working || session::state_alive(s) {
                return Ok(None);
            }
            let before = s.clone();
            s.status = Status::Idle;
            s.updated_at = Some(crate::clock::now());
            Ok(Some(before))
        },
    )
}

/// Reset a dead polecat: idle, its issue released, its Witness told. Returns
/// what was done, for the report.
fn reset_dead(ctx: &Ctx, home: &Home, gone: &str) -> Result<String> {
    let Some(before) = set_idle(home)? else {
        return Ok("; changed meanwhile, left alone".to_string());
    };
    let rig_name = home.address.rig().unwrap_or_default().to_string();
    let rig = Rig::at(ctx.town, &rig_name);
    let mut done = "; reset to idle".to_string();
    if let Some(issue) = &before.issue
        && release_if_held(&rig, issue, &home.address.to_string())?
    {
        done.push_str(&format!(", {issue} released"));
    }
    let witness = Address::Witness { rig: rig_name };
    let body = format!(
        "{gone}. gt doctor --fix set it idle{}.",
        before
            .issue
            .as_deref()
            .map(|i| format!(" and released {i} (open again)"))
            .unwrap_or_default()
    );
    tell(
        ctx,
        &witness,
        &format!("doctor: {} reset after its session died", home.address),
        &body,
    )?;
    done.push_str(&format!(", {witness} told"));
    Ok(done)
}

/// Release `issue` if `worker` holds it in progress; whether it did.
fn release_if_held(rig: &Rig, issue: &str, worker: &str) -> Result<bool> {
    let tracker = beads::open(rig)?;
    let i = tracker.show(issue)?;
    if i.status != "in_progress" || i.assignee.as_deref() != Some(worker) {
        return Ok(false);
    }
    tracker.release(issue, worker)?;
    Ok(true)
}

/// Mail `to` from whoever runs doctor (the overseer, from a shell).
fn tell(ctx: &Ctx, to: &Address, subject: &str, body: &str) -> Result<()> {
    let from = mail::identity(ctx.town, None).unwrap_or(Address::Overseer);
    let mut m = Message::new(&from, &to.to_string(), subject, body);
    m.kind = "doctor".to_string();
    mail::post(
        ctx.town,
        std::slice::from_mut(&mut m),
        fsio::Durability::from_env(),
    )
}

/// tmux sessions on the town's socket and process groups started for the
/// town that no `state.json` records (left by a crashed start, a lost record,
/// a hand-made session): named, and killed by `--fix`.
pub(super) fn zombies(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    let recorded: Vec<SessionId> = ctx
        .homes()
        .iter()
        .filter_map(|h| SessionId::parse(&h.state().ok()?.session?))
        .collect();
    // Pane processes of listed sessions: the tmux side reports those.
    let panes = tmux_zombies(ctx, &recorded, out);
    for g in crate::stop::town_groups(ctx.town, None) {
        let known = recorded.iter().any(|id| id.leader() == (g.pid, g.start));
        if known || panes.contains(&g.pid) {
            continue;
        }
        let id = g.session_id();
        out.push(
            Finding::error(
                "zombie-process",
                ctx.town.root(),
                format!(
                    "process group {} ({}) was started for the town but is recorded in no state.json",
                    g.pid, g.comm
                ),
            )
            .repair(ctx.fix, || session::kill(&id, Duration::from_secs(2))),
        );
    }
    Ok(Some(()))
}

/// The tmux side of [`zombies`]: unrecorded sessions on the town's socket
/// become findings; the pane pids of every session listed are returned.
fn tmux_zombies(ctx: &Ctx, recorded: &[SessionId], out: &mut Vec<Finding>) -> BTreeSet<u32> {
    let mut panes = BTreeSet::new();
    let socket = session::tmux_socket(ctx.town.root());
    let mut cmd = Command::new("tmux");
    cmd.args([
        "-L",
        &socket,
        "list-panes",
        "-a",
        "-F",
        "#{session_name} #{pane_pid}",
    ]);
    let listed = match wait::output(cmd) {
        Err(_) => return panes, // no tmux here
        Ok(None) => {
            out.push(Finding::error(
                "tmux-hung",
                ctx.town.root(),
                format!(
                    "the tmux server on socket {socket} did not answer within {}s",
                    wait::WAIT.as_secs()
                ),
            ));
            return panes;
        }
        // No server running: no sessions.
        Ok(Some(o)) if !o.status.success() => return panes,
        Ok(Some(o)) => String::from_utf8_lossy(&o.stdout).into_owned(),
    };
    let names: BTreeSet<&str> = recorded
        .iter()
        .filter_map(|id| match id {
            SessionId::Tmux {
                socket: s, name, ..
            } if *s == socket => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    for line in listed.lines() {
        let Some((name, pid)) = line.rsplit_once(' ') else {
            continue;
        };
        let pid: u32 = pid.parse().unwrap_or(0);
        panes.insert(pid);
        if names.contains(name) || !seen.insert(name.to_string()) {
            continue;
        }
        out.push(
            Finding::error(
                "zombie-session",
                ctx.town.root(),
                format!(
                    "tmux session {name} (pid {pid}) on socket {socket} is recorded in no state.json"
                ),
            )
            .repair(ctx.fix, || {
                crate::stop::kill_tmux_session(&socket, name, pid, Duration::from_secs(2));
                Ok(())
            }),
        );
    }
    panes
}

/// Issues `in_progress` for a worker that is idle or asleep with no live
/// session, or that does not exist: nobody works on them and `gt ready` hides
/// them. `--fix` releases them (open, no assignee).
pub(super) fn claims(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for rig in ctx.rigs() {
        let Ok(tracker) = beads::open(&rig) else {
            continue; // reported by the beads check
        };
        let Ok(issues) = tracker.list(&ListFilter {
            status: Some("in_progress".into()),
            ..Default::default()
        }) else {
            continue;
        };
        for issue in issues {
            let Some(who) = issue.assignee.clone().filter(|a| !a.is_empty()) else {
                continue;
            };
            // An assignee that is no agent address (a person) is theirs.
            let Ok(addr) = who.parse::<Address>() else {
                continue;
            };
            let home = Home {
                path: ctx.town.root().join(addr.rel_path()),
                address: addr,
            };
            let why = if !crate::home::is_home(&home.path) {
                format!("{who} does not exist")
            } else {
                match home.state() {
                    Ok(s)
                        if matches!(s.status, Status::Idle | Status::Asleep)
                            && !session::state_alive(&s) =>
                    {
                        format!("{who} is {}", s.status)
                    }
                    _ => continue,
                }
            };
            let id = issue.id.clone();
            let orphaned = format!("{id} is in_progress for {who}, but {why}; nobody works on it");
            // Released, the work its clone still holds would be lost to it.
            if let Some(work) = clone_work(&home) {
                let queue_it = match &home.address {
                    Address::Polecat { rig, name } => {
                        format!("queue it (gt merge-queue add {rig} {name})")
                    }
                    _ => "land it".to_string(),
                };
                out.push(Finding::error(
                    "claim-orphaned",
                    &rig.beads_dir(),
                    format!(
                        "{orphaned}; its clone has {work}: {queue_it} or clean the clone, then release the claim"
                    ),
                ));
                continue;
            }
            out.push(
                Finding::error("claim-orphaned", &rig.beads_dir(), orphaned)
                    .repair(ctx.fix, || tracker.release(&id, &who).map(drop)),
            );
        }
    }
    Ok(Some(()))
}

/// Live agents that never beat or have been silent too long (a polecat past
/// its rig's `stuck_after`, another agent past the town's
/// `heartbeat_timeout`), and workers the Witness marked stuck: warnings for a
/// person, nothing to repair.
pub(super) fn heartbeats(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    let town_limit = ctx
        .town
        .config()
        .map(|c| c.heartbeat_timeout())
        .unwrap_or(crate::daemon::DEFAULT_HEARTBEAT_TIMEOUT);
    for home in ctx.homes() {
        let Ok(state) = home.state() else { continue };
        if state.status == Status::Stuck {
            out.push(Finding::warning(
                "worker-stuck",
                &home.state_path(),
                format!(
                    "{} is stuck (nudged {} time(s) without progress); see the Mayor's escalation",
                    home.address, state.nudges
                ),
            ));
            continue;
        }
        if state.status != Status::Working || !runs_as_its_own(ctx, &home, &state) {
            continue;
        }
        let limit = match home.address.rig() {
            Some(rig) if home.address.role() == Role::Polecat => Rig::at(ctx.town, rig)
                .config()
                .map(|c| c.stuck_after())
                .unwrap_or(crate::witness::DEFAULT_STUCK_AFTER),
            _ => town_limit,
        };
        let beat = home.heartbeat();
        if !beat.exists() {
            out.push(Finding::warning(
                "heartbeat",
                &beat,
                format!("{} has a live session but no heartbeat yet", home.address),
            ));
            continue;
        }
        let Some(last) = home.last_sign_of_life(&state) else {
            continue;
        };
        let quiet =
            Duration::try_from(crate::clock::now().duration_since(last)).unwrap_or_default();
        if quiet > limit {
            out.push(Finding::warning(
                "heartbeat",
                &beat,
                format!(
                    "{} has not beaten for {}s (limit {}s)",
                    home.address,
                    quiet.as_secs(),
                    limit.as_secs()
                ),
            ));
        }
    }
    Ok(Some(()))
}

/// Loops down while they have work: the daemon while any session runs
/// (nobody restarts a crashed agent or watches heartbeats), a rig's Witness
/// loop while one of its polecats has a live session (nobody patrols it), its
/// Refinery loop while its merge queue has pending entries (nobody merges
/// them). A town at rest needs none of them. Warnings: nothing is lost.
pub(super) fn loops(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    use crate::runner;
    let live = |homes: &[Home]| {
        homes
            .iter()
            .filter(|h| h.state().is_ok_and(|s| runs_as_its_own(ctx, h, &s)))
            .count()
    };
    let mut down = |file: std::path::PathBuf, busy: usize, why: String| {
        if busy > 0 && runner::holder(&file).is_none() {
            out.push(Finding::warning("loop-down", &file, why));
        }
    };
    let sessions = live(&ctx.homes());
    down(
        runner::daemon(ctx.town),
        sessions,
        format!(
            "the daemon is not running while {sessions} session(s) run: nothing restarts a crashed agent (start it: gt daemon run)"
        ),
    );
    for rig in ctx.rigs() {
        let name = &rig.name;
        let polecats = live(&rig.polecats().unwrap_or_default());
        down(
            runner::witness(&rig),
            polecats,
            format!(
                "the Witness loop of {name} is not running while {polecats} polecat(s) work: nobody patrols them (start it: gt witness run {name})"
            ),
        );
        let pending = crate::status::QueueCounts::of(&rig).pending;
        down(
            runner::refinery(&rig),
            pending,
            format!(
                "the Refinery loop of {name} is not running while {pending} merge(s) wait: nobody merges them (start it: gt refinery process {name})"
            ),
        );
    }
    Ok(Some(()))
}
