//! Workers on other machines (protocol/federation.md, "Remote workers").
//!
//! The home town (where the rig's issue and merge queue are) claims the
//! issue for `<machine>:<rig>/<name>`, records the worker in
//! `federation/workers/<rig>/<name>.json` ([`RemoteWorker`]) and asks the
//! other machine to `spawn` it. There the polecat is an ordinary one of a rig
//! of the same name and git_url, marked `works-for.json` ([`WorksFor`]): its
//! own Witness leaves it alone, and its `gt done` pushes `polecat/<name>` to
//! origin and mails the home Witness. The home Witness asks the other machine
//! for the clone's state (`worker`), checks origin holds the reported head,
//! and queues the branch; the Refinery merges it from origin.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::beads::{self, Issue};
use crate::error::{Error, Kind, Result};
use crate::event::{Action, act};
use crate::fsio::{self, Durability};
use crate::home::Home;
use crate::mail::Message;
use crate::polecat::{self, SpawnOptions, Spawned};
use crate::record::Extra;
use crate::rig::Rig;
use crate::stop::{Claim, Stopped};
use crate::town::Town;
use crate::{clock, git, queue, session};

use super::{Federation, outbox};

/// Where a [`RemoteWorker`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Recorded, the other machine not yet asked (or its answer lost).
    Starting,
    /// Its session runs there.
    Working,
    /// Its branch is in the merge queue.
    Queued,
    /// Its merge failed; the entry is in failed/.
    Failed,
}

/// `federation/workers/<rig>/<name>.json`: which polecat of this town's rig
/// runs on which machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteWorker {
    pub machine: String,
    pub rig: String,
    pub name: String,
    pub issue: String,
    pub branch: String,
    pub status: Phase,
    /// Its generation there (the `done` signal and the queue entry carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The merge queue entry, once queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    pub spawned_at: String,
    pub updated_at: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RemoteWorker {
    /// `<machine>:<rig>/<name>`, as the home town names it (the issue's assignee).
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.machine, self.rig, self.name)
    }
    /// Its address in the other machine's town.
    fn there(&self) -> String {
        format!("{}/{}", self.rig, self.name)
    }
}

/// `<rig>/polecats/<name>/works-for.json` on the machine a worker runs on:
/// the machine whose issue it works on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorksFor {
    pub machine: String,
    /// The issue as the home's tracker had it (`gt prime` shows it).
    pub issue: Issue,
    pub since: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a `spawn` call sends on stdin.
#[derive(Debug, Serialize, Deserialize)]
struct SpawnRequest {
    git_url: String,
    issue: Issue,
}

/// The `worker` verb's answer: a polecat's clone as its machine sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CloneState {
    pub address: String,
    pub generation: u64,
    pub alive: bool,
    pub branch: String,
    /// The commit its branch is at.
    pub head: Option<String>,
    /// Uncommitted files.
    pub dirty: Vec<String>,
}

fn workers_dir(town: &Town, rig: &str) -> PathBuf {
    town.root().join("federation").join("workers").join(rig)
}

fn record_path(town: &Town, rig: &str, name: &str) -> PathBuf {
    workers_dir(town, rig).join(format!("{name}.json"))
}

/// This town's remote workers (of one rig, or all), by rig and name.
pub fn list(town: &Town, rig: Option<&str>) -> Result<Vec<RemoteWorker>> {
    let base = town.root().join("federation").join("workers");
    let rigs: Vec<String> = match rig {
        Some(r) => vec![r.to_string()],
        None => names_in(&base, None)?,
    };
    let mut out = Vec::new();
    for r in rigs {
        for n in names_in(&base.join(&r), Some(".json"))? {
            out.push(fsio::read_json(&record_path(town, &r, &n))?);
        }
    }
    Ok(out)
}

/// Sorted entry names of `dir` (with `suffix` removed, only those with it).
fn names_in(dir: &std::path::Path, suffix: Option<&str>) -> Result<Vec<String>> {
    let entries = match crate::confine::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(|e| Error::io(dir, e))?,
    };
    let mut out: Vec<String> = entries
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| match suffix {
            Some(s) => n.strip_suffix(s).map(str::to_string),
            None => Some(n),
        })
        .collect();
    out.sort();
    Ok(out)
}

fn save(town: &Town, w: &mut RemoteWorker) -> Result<()> {
    w.updated_at = clock::now_string();
    let path = record_path(town, &w.rig, &w.name);
    fsio::ensure_dir(path.parent().expect("workers/<rig> has a parent"))?;
    fsio::write_json(&path, w)
}

fn forget(town: &Town, w: &RemoteWorker) -> Result<()> {
    let path = record_path(town, &w.rig, &w.name);
    crate::confine::remove_file(&path).map_err(|e| Error::io(&path, e))
}

/// `gt spawn --machine <machine>`: claim the issue for
/// `<machine>:<rig>/<name>`, record it, and have the other machine start the
/// polecat in its rig of the same name and git_url. A refusal there (or no
/// answer) releases the claim and removes the record.
pub fn spawn(town: &Town, rig: &Rig, machine: &str, opts: &SpawnOptions) -> Result<RemoteWorker> {
    if opts.agent.is_some() {
        return Err(Error::invalid(format!(
            "--agent: a worker on {machine} runs the agent its rig {} there is configured with",
            rig.name
        )));
    }
    let fed = Federation::load(town)?;
    fed.local_name()?;
    fed.machine(machine)?;
    let issue_id = opts
        .issue
        .as_deref()
        .ok_or_else(|| Error::invalid("a remote worker needs --issue"))?;
    let _rig_lock = fsio::lock_file(&rig.path.join("spawn.lock"))?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => polecat::free_name_except(rig, |n| record_path(town, &rig.name, n).exists()),
    };
    crate::address::check_agent_name("polecat", &name)?;
    let path = record_path(town, &rig.name, &name);
    // A worker whose merge failed may be spawned again, on its issue.
    let again = if path.exists() {
        Some(fsio::read_json::<RemoteWorker>(&path)?)
            .filter(|w| w.status == Phase::Failed && w.machine == machine && w.issue == issue_id)
    } else {
        None
    };
    if path.exists() && again.is_none() {
        return Err(Error::conflict(format!(
            "{}/{name} already works on another machine ({})",
            rig.name,
            path.display()
        )));
    }
    let tracker = beads::open(rig)?;
    let issue = tracker.show(issue_id)?;
    let now = clock::now_string();
    let mut w = RemoteWorker {
        machine: machine.to_string(),
        rig: rig.name.clone(),
        name: name.clone(),
        issue: issue.id.clone(),
        branch: polecat::branch(&name),
        status: Phase::Starting,
        generation: None,
        session: None,
        entry: None,
        spawned_at: now.clone(),
        updated_at: now,
        extra: Extra::new(),
    };
    if again.is_none() {
        tracker
            .claim(issue_id, &w.address())
            .map_err(|e| match e.kind {
                Kind::Conflict => e.with_kind(Kind::Negative),
                _ => e,
            })?;
    }
    let started = (|| {
        save(town, &mut w)?;
        let request = SpawnRequest {
            git_url: rig.git_url(town)?,
            issue,
        };
        let out = fed.call_with(
            machine,
            &["gt", "spawn", &w.there(), issue_id],
            fsio::to_json_bytes(&request)?,
        )?;
        serde_json::from_slice::<Spawned>(&out)
            .map_err(|e| Error::invalid(format!("unreadable spawn answer from {machine}: {e}")))
    })();
    let spawned = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = tracker.release(issue_id, &w.address());
            let _ = forget(town, &w);
            return Err(e.with_hint(format!("{issue_id} is released (open again)")));
        }
    };
    w.status = Phase::Working;
    w.generation = Some(spawned.generation);
    w.session = Some(spawned.session);
    save(town, &mut w)?;
    Ok(w)
}

/// The other side of `spawn`: start polecat `addr` of this town for machine
/// `from`'s issue, in the rig of the same name, which must clone the same
/// git_url. Not claimed in this town's tracker: the issue is the home's.
pub fn serve_spawn(
    town: &Town,
    from: &str,
    addr: &Address,
    issue_id: &str,
    input: &[u8],
) -> Result<Spawned> {
    let Address::Polecat { rig, name } = addr else {
        return Err(Error::invalid(format!("{addr} is not a polecat address")));
    };
    let req: SpawnRequest = fsio::parse_json(std::path::Path::new("<stdin>"), input)?;
    if req.issue.id != issue_id {
        return Err(Error::invalid(format!(
            "<stdin>: the issue is {}, the command names {issue_id}",
            req.issue.id
        )));
    }
    let here = town
        .rig(rig)
        .map_err(|e| e.context(format!("no rig {rig} here for a worker of machine {from}")))?;
    let url = here.git_url(town)?;
    if url != req.git_url {
        return Err(Error::invalid(format!(
            "rig {rig} here clones {url}, machine {from}'s clones {}: a remote worker needs a rig of the same name and git_url",
            req.git_url
        )));
    }
    polecat::spawn(
        town,
        &here,
        &SpawnOptions {
            issue: Some(issue_id.to_string()),
            name: Some(name.clone()),
            works_for: Some(WorksFor {
                machine: from.to_string(),
                issue: req.issue,
                since: clock::now_string(),
                extra: Extra::new(),
            }),
            ..Default::default()
        },
    )
}

fn works_for_path(home: &Home) -> PathBuf {
    home.path.join("works-for.json")
}

/// The machine `home`'s polecat works for, if it works for another one.
pub fn works_for(home: &Home) -> Option<WorksFor> {
    fsio::read_json(&works_for_path(home)).ok()
}

/// Record (or, for this town's own work, remove) whom `home` works for.
pub fn set_works_for(home: &Home, w: Option<&WorksFor>) -> Result<()> {
    let path = works_for_path(home);
    match w {
        Some(w) => fsio::write_json(&path, w),
        None => match crate::confine::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        },
    }
}

/// The `worker` verb: `addr`'s clone, generation and session, as JSON.
pub fn clone_state(town: &Town, addr: &Address) -> Result<CloneState> {
    let home = town.home(addr)?;
    let state = home.state()?;
    let work = polecat::work(&home, &state)?;
    Ok(CloneState {
        address: addr.to_string(),
        generation: state.generation,
        alive: session::state_alive(&state),
        head: git::resolve(&work.clone, &format!("refs/heads/{}", work.branch))?
            .map(|o| o.to_string()),
        branch: work.branch,
        dirty: git::dirty_files(&work.clone)?,
    })
}

/// `gt done` of a polecat that works for another machine: push its branch
/// to origin and mail `done` to the home Witness (spooled if the home is
/// unreachable). Returns the message and how it left.
pub fn done(town: &Town, home: &Home, w: &WorksFor, mut m: Message) -> Result<(Message, String)> {
    let state = home.state()?;
    let work = polecat::work(home, &state)?;
    git::run(
        Some(&work.clone),
        &[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("HEAD:refs/heads/{}", work.branch),
        ],
    )?;
    let fed = Federation::load(town)?;
    m.from = format!("{}:{}", fed.local_name()?, m.from);
    let how = match outbox::send(&fed, &w.machine, &m, Durability::from_env())? {
        outbox::Sent::Delivered => format!("sent to {}:{}", w.machine, m.to),
        outbox::Sent::Queued(why) => format!("queued for {}: {why}", w.machine),
    };
    Ok((m, how))
}

/// A lifecycle message of the home Witness about a remote worker: its `done`
/// (from `<machine>:<rig>/<name>`), or the Refinery's result (which carries
/// `machine`). `None` when the message is not about one.
pub fn lifecycle(town: &Town, rig: &Rig, m: &Message) -> Option<Vec<Action>> {
    let is_done = m.kind == "done" || m.subject.starts_with("done");
    let (machine, there) = if is_done {
        let (machine, there) = m.from.split_once(':')?;
        (machine.to_string(), there.to_string())
    } else {
        let machine = m.extra.get("machine")?.as_str()?;
        let there = m.extra.get("polecat")?.as_str()?;
        (machine.to_string(), there.to_string())
    };
    let who = format!("{machine}:{there}");
    let r = (|| -> Result<Vec<Action>> {
        let Ok(Address::Polecat { rig: of, name }) = there.parse::<Address>() else {
            return Ok(vec![act(
                &who,
                "ignored",
                format!("{}: not a polecat", m.id),
            )]);
        };
        let path = record_path(town, &rig.name, &name);
        let w: Option<RemoteWorker> = (of == rig.name && path.exists())
            .then(|| fsio::read_json(&path))
            .transpose()?;
        let Some(mut w) = w.filter(|w| w.machine == machine) else {
            return Ok(vec![act(
                &who,
                "ignored",
                format!("{}: no such remote worker of rig {}", m.id, rig.name),
            )]);
        };
        if m.generation.is_some() && m.generation != w.generation {
            return Ok(vec![act(
                &who,
                "stale-signal",
                format!(
                    "{} is about generation {}, the worker is at {}",
                    m.id,
                    m.generation.unwrap_or(0),
                    w.generation.unwrap_or(0)
                ),
            )]);
        }
        match m.kind.as_str() {
            "merged" | "landed" => {
                forget(town, &w)?;
                Ok(vec![act(
                    &who,
                    "freed",
                    format!("{}; record removed", m.subject),
                )])
            }
            "merge_failed" => {
                w.status = Phase::Failed;
                save(town, &mut w)?;
                Ok(vec![act(
                    &who,
                    "merge-failed",
                    format!(
                        "{}; spawn it again (gt spawn --machine {machine} --issue {} --name {name})",
                        m.subject, w.issue
                    ),
                )])
            }
            _ => check_and_queue(town, rig, &mut w),
        }
    })();
    Some(r.unwrap_or_else(|e| vec![act(&who, "error", e.to_string())]))
}

/// A remote worker said done: ask its machine for the clone's state, check
/// origin holds the branch at that commit, stop the session, queue the work.
fn check_and_queue(town: &Town, rig: &Rig, w: &mut RemoteWorker) -> Result<Vec<Action>> {
    let who = w.address();
    if w.status == Phase::Queued {
        return Ok(vec![act(&who, "ignored", "already queued")]);
    }
    let fed = Federation::load(town)?;
    let out = fed.call(&w.machine, &["gt", "worker", &w.there()])?;
    let s: CloneState = serde_json::from_slice(&out)
        .map_err(|e| Error::invalid(format!("unreadable worker state from {}: {e}", w.machine)))?;
    let url = rig.git_url(town)?;
    let on_origin = git::run(
        None,
        &["ls-remote", "--", &url, &format!("refs/heads/{}", s.branch)],
    )?;
    let origin_head = on_origin.split_whitespace().next().map(str::to_string);
    let problem = if s.generation != w.generation.unwrap_or(s.generation) {
        Some(format!(
            "it is at generation {} there, recorded {}",
            s.generation,
            w.generation.unwrap_or(0)
        ))
    } else if !s.dirty.is_empty() {
        Some(format!("its clone is dirty ({})", s.dirty.join(", ")))
    } else if s.head.is_none() || s.head != origin_head {
        Some(format!(
            "origin's {} is at {}, the clone's at {}",
            s.branch,
            origin_head.as_deref().unwrap_or("nothing"),
            s.head.as_deref().unwrap_or("nothing")
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        return Ok(vec![act(
            &who,
            "not-queued",
            format!("done signal, but {p}; the worker must push and signal again"),
        )]);
    }
    let mut actions = Vec::new();
    if s.alive {
        let said = fed.call(&w.machine, &["gt", "kill", &w.there()]);
        actions.push(match said {
            Ok(_) => act(&who, "stopped", "done signal and a clean, pushed clone"),
            Err(e) => act(&who, "error", format!("could not stop its session: {e}")),
        });
    }
    let entry = queue::Queue::of(rig).add(queue::Entry {
        rig: rig.name.clone(),
        polecat: w.there(),
        machine: Some(w.machine.clone()),
        branch: s.branch.clone(),
        issue: Some(w.issue.clone()),
        generation: Some(s.generation),
        // Checked on origin just now; what a Refinery that dies mid-landing
        // finds on main (the Refinery records a clone's tip itself).
        tip: s.head.clone(),
        submitted_at: Some(clock::now_string()),
        ..queue::Entry::default()
    })?;
    w.status = Phase::Queued;
    w.entry = Some(entry.entry.id.clone());
    save(town, w)?;
    actions.push(act(
        &who,
        "submitted",
        format!(
            "{} at {} on origin; merge queue entry {}",
            s.branch,
            crate::land::short(origin_head.as_deref().unwrap_or_default()),
            entry.path.display()
        ),
    ));
    Ok(actions)
}

/// Why the Refinery must not merge remote entry `e`, if it must not: the
/// worker is no longer recorded at that generation, or origin lacks the branch.
pub fn refusal(town: &Town, rig: &Rig, e: &queue::Entry) -> Option<String> {
    let machine = e.machine.as_deref()?;
    let name = e.polecat.rsplit('/').next().unwrap_or_default();
    let w: RemoteWorker = match fsio::read_json(&record_path(town, &rig.name, name)) {
        Ok(w) => w,
        Err(err) => return Some(format!("no remote worker {machine}:{}: {err}", e.polecat)),
    };
    if w.machine != machine || (e.generation.is_some() && e.generation != w.generation) {
        return Some(format!(
            "stale entry: {} now works as {} generation {}; nothing merged",
            e.polecat,
            w.address(),
            w.generation.unwrap_or(0)
        ));
    }
    None
}

/// `gt kill <machine>:<rig>/<name>` and `gt stop`'s share: stop the session
/// there (the `kill` verb), then settle this town's claim: released, unless
/// the work is in the merge queue. The record goes with a released claim.
pub fn kill(town: &Town, machine: &str, there: &Address) -> Result<Stopped> {
    let fed = Federation::load(town)?;
    let out = fed.call(machine, &["gt", "kill", &there.to_string()])?;
    let said = String::from_utf8_lossy(&out);
    let was_running = said.lines().next().is_some_and(|l| l.ends_with(" stopped"));
    let address = format!("{machine}:{there}");
    let claim = match there {
        Address::Polecat { rig, name } => {
            let path = record_path(town, rig, name);
            match fsio::read_json::<RemoteWorker>(&path) {
                Ok(w) if w.machine == machine => Some(settle(town, &w)?),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(Stopped {
        address,
        was_running,
        claim,
    })
}

fn settle(town: &Town, w: &RemoteWorker) -> Result<Claim> {
    if w.status == Phase::Queued {
        return Ok(Claim::Kept {
            issue: w.issue.clone(),
            why: format!(
                "its branch is in the merge queue ({})",
                w.entry.as_deref().unwrap_or("-")
            ),
        });
    }
    let tracker = beads::open(&town.rig(&w.rig)?)?;
    if tracker.show(&w.issue)?.assignee.as_deref() == Some(w.address().as_str()) {
        tracker.release(&w.issue, &w.address())?;
    }
    forget(town, w)?;
    Ok(Claim::Released {
        issue: w.issue.clone(),
    })
}

/// `gt stop`'s share: every remote worker of the town (or one rig) killed
/// on its machine; one that cannot be reached keeps its claim, saying why.
pub fn stop_all(town: &Town, rig: Option<&str>) -> Result<Vec<Stopped>> {
    let mut out = Vec::new();
    for w in list(town, rig)? {
        let there = Address::Polecat {
            rig: w.rig.clone(),
            name: w.name.clone(),
        };
        out.push(kill(town, &w.machine, &there).unwrap_or_else(|e| Stopped {
            address: w.address(),
            was_running: false,
            claim: Some(Claim::Kept {
                issue: w.issue.clone(),
                why: format!("{} not reached: {e}", w.machine),
            }),
        }));
    }
    Ok(out)
}
