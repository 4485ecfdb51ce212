//! The Refinery: consumes a rig's merge queue (protocol/queue.md, "The
//! Refinery"). Each claimed entry is checked (the polecat still exists at the
//! entry's generation), landed with [`land::integrate_reviewed`] (merge into
//! `<rig>/refinery/rig`, test, review, push; the one merge implementation), then
//! finished: issue closed and entry moved to `merged/`, or moved to `failed/`
//! with the reason; the polecat and the witness are told either way. The
//! rig's `before_merge` and `on_ready` plugins are consulted on the way
//! (protocol/plugins.md).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::address::Address;
use crate::error::Result;
use crate::home::Home;
use crate::land::{self, MergeKind};
use crate::mail::{self, Message};
use crate::plugin::{self, Hook, Request, Verdict};
use crate::queue::{Hold, Junk, Located, Outcome, Queue, State};
use crate::record::{Extra, PluginsConfig};
use crate::rig::Rig;
use crate::town::Town;
use crate::watch::{Flow, Watch};

/// How often a working refinery renews its claim (`touch`es the active file).
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How often watch mode rescans with no event, and requeues its own stale claims.
const RESCAN: Duration = Duration::from_secs(60);

/// What happened to one entry.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    /// The entry as it ended, in `merged/` or `failed/`.
    #[serde(flatten)]
    pub entry: Located,
    /// What the landing did; absent when the entry was refused before it.
    pub landing: Option<land::Outcome>,
    /// Follow-ups done: "closed issue r-1", "mailed r/witness".
    pub done: Vec<String>,
    /// Follow-ups that failed; the entry's result stands.
    pub notes: Vec<String>,
}

/// An entry a plugin held (protocol/plugins.md): back in `pending/` with its
/// hold recorded, not asked again before `plugins.hold_retry`.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    #[serde(flatten)]
    pub entry: Located,
    pub verdict: Verdict,
    /// "mailed mayor" for an escalation.
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

/// What the refinery reports as it goes.
#[derive(Debug)]
pub enum Event {
    Processed(Box<Processed>),
    Held(Box<Held>),
    /// A file in the queue that is not an entry (reported once per file).
    Junk(Junk),
    /// A stale claim of ours put back in `pending/` at start or on a rescan.
    Requeued(Box<Located>),
    /// A finished entry moved to the queue's archive (`queue_archive_after`).
    Archived(Box<Located>),
    /// What a landing says while it runs (waiting for the landing lock, ...).
    Landing(land::Progress),
    /// A `gt land --direct` that died after recording its intent, finished
    /// (or dropped) as the next direct landing would.
    Interrupted(Box<land::Interrupted>),
}

/// One rig's refinery.
pub struct Refinery<'a> {
    town: &'a Town,
    rig: &'a Rig,
    queue: Queue,
    me: Address,
    /// Claims of ours whose file is older than this are from a dead refinery.
    stale_after: Duration,
    reported: HashSet<PathBuf>,
    /// Held entries and when they may be asked again.
    held: HashMap<String, Instant>,
    /// When `merged/` and `failed/` may next be swept into the archive.
    archive_due: Instant,
}

impl<'a> Refinery<'a> {
    pub fn new(town: &'a Town, rig: &'a Rig, stale_after: Duration) -> Refinery<'a> {
        Refinery {
            town,
            rig,
            queue: Queue::of(rig),
            me: Address::Refinery {
                rig: rig.name.clone(),
            },
            stale_after,
            reported: HashSet::new(),
            held: HashMap::new(),
            archive_due: Instant::now(),
        }
    }

    /// Requeue our own stale claims, then claim and process entries in order
    /// until none is pending. Returns how many were processed.
    pub fn drain(&mut self, on: &mut dyn FnMut(Event)) -> Result<usize> {
        let (requeued, junk) = self
            .queue
            .requeue(self.stale_after, Some(&self.me.to_string()))?;
        requeued
            .into_iter()
            .for_each(|l| on(Event::Requeued(Box::new(l))));
        self.report(junk, on);
        self.finish_direct(on)?;
        let config = self.rig.config()?;
        if Instant::now() >= self.archive_due {
            let (archived, junk) = self.queue.archive(config.queue_archive_after())?;
            archived
                .into_iter()
                .for_each(|l| on(Event::Archived(Box::new(l))));
            self.report(junk, on);
            self.archive_due = Instant::now() + RESCAN;
        }
        let plugins = config.plugins;
        let oracle = plugin::plugin_for(self.town, self.rig, &plugins, Hook::BeforeMerge);
        let mut n = 0;
        loop {
            let now = Instant::now();
            let held = &self.held;
            let (claimed, junk) = self.queue.claim_except(&self.me.to_string(), &|id| {
                held.get(id).is_some_and(|t| *t > now)
            })?;
            self.report(junk, on);
            let Some(claimed) = claimed else {
                return Ok(n);
            };
            if let Some(finished) = self.finish_pushed(&claimed, on)? {
                on(Event::Processed(Box::new(finished)));
                n += 1;
                continue;
            }
            if let Some(oracle) = &oracle
                && let Some(held) = self.before_merge(oracle, &plugins, &claimed)?
            {
                on(Event::Held(Box::new(held)));
                continue;
            }
            let processed = self.process(claimed, on)?;
            on(Event::Processed(Box::new(processed)));
            n += 1;
        }
    }

    /// [`Refinery::drain`] now and whenever `pending/` changes (inotify, with a
    /// rescan every minute); runs until an error.
    pub fn watch(&mut self, on: &mut dyn FnMut(Event)) -> Result<()> {
        let _running = crate::runner::hold(
            &crate::runner::refinery(self.rig),
            &format!("the Refinery loop of rig {}", self.rig.name),
        )?;
        self.queue.ensure()?;
        let mut watch = Watch::new(&[&self.queue.state_dir(State::Pending)], RESCAN)?;
        watch.run(|_wake| {
            self.drain(on)?;
            Ok(Flow::Continue)
        })
    }

    /// Consult the `before_merge` plugin about claimed entry `l`: `None` to
    /// proceed; on `hold` or `escalate` the entry goes back to `pending/` with
    /// its hold, and an escalation (new since the last hold) mails the Mayor.
    fn before_merge(
        &mut self,
        oracle: &Home,
        plugins: &PluginsConfig,
        l: &Located,
    ) -> Result<Option<Held>> {
        let e = &l.entry;
        let queue: Vec<serde_json::Value> = self
            .queue
            .list(&[State::Pending])?
            .entries
            .into_iter()
            .map(|p| p.entry.id.into())
            .collect();
        let mut fields = Extra::new();
        fields.insert("entry".into(), e.id.clone().into());
        fields.insert(
            "queue_entry".into(),
            serde_json::to_value(e).unwrap_or_default(),
        );
        fields.insert("queue".into(), queue.into());
        let subject = format!("before merge: {} ({} {})", e.id, e.polecat, e.branch);
        let body = format!(
            "May {} merge {} of {}? Reply with a verdict (protocol/plugins.md).",
            self.me, e.branch, e.polecat
        );
        let asked = self.town.home(&self.me).and_then(|me| {
            self.keepalive(&e.id, || {
                let req = Request {
                    hook: Hook::BeforeMerge,
                    subject,
                    body,
                    fields,
                };
                plugin::consult(
                    self.town,
                    &me,
                    oracle,
                    req,
                    plugins.timeout(Hook::BeforeMerge),
                )
            })
        });
        let verdict = match asked {
            Ok(v) => v,
            Err(err) => {
                let _ = self.queue.release(&e.id);
                return Err(err.context(format!("{} (put back in pending/)", e.id)));
            }
        };
        if let Some(why) = &verdict.defaulted {
            tracing::warn!("{}: {why}; proceeding", e.id);
        }
        if verdict.verdict == "proceed" {
            return Ok(None);
        }
        let escalated_before = e.hold.as_ref().is_some_and(|h| h.verdict == "escalate");
        let hold = Hold {
            verdict: verdict.verdict.clone(),
            reason: verdict.reason.clone(),
            by: verdict.by.clone(),
            at: crate::clock::now_string(),
        };
        let entry = self.queue.hold(&e.id, hold)?.unwrap_or_else(|| l.clone());
        self.held
            .insert(e.id.clone(), Instant::now() + plugins.hold_retry());
        let (mut done, mut notes) = (Vec::new(), Vec::new());
        if verdict.verdict == "escalate" && !escalated_before {
            let mut m = Message::new(
                &self.me,
                "mayor",
                &format!("escalation: {} on {} ({})", verdict.by, e.id, e.polecat),
                &format!(
                    "{} escalated queue entry {} ({} {}): {}\n\nThe entry is held in pending/; it is asked again on the Refinery's next pass.",
                    verdict.by, e.id, e.polecat, e.branch, verdict.reason
                ),
            );
            m.kind = "escalation".to_string();
            m.extra.insert("entry".into(), e.id.clone().into());
            match mail::post(self.town, &mut [m], crate::fsio::Durability::from_env()) {
                Ok(()) => done.push("mailed mayor".to_string()),
                Err(err) => notes.push(format!("could not mail mayor: {err}")),
            }
        }
        Ok(Some(Held {
            entry,
            verdict,
            done,
            notes,
        }))
    }

    fn report(&mut self, junk: Vec<Junk>, on: &mut dyn FnMut(Event)) {
        for j in junk {
            if self.reported.insert(j.path.clone()) {
                on(Event::Junk(j));
            }
        }
    }

    /// Finish a dead `gt land --direct`'s landing, if it left its record (a
    /// live one holds the landing lock until its record is gone).
    fn finish_direct(&self, on: &mut dyn FnMut(Event)) -> Result<()> {
        if !land::intent_path(self.rig).exists() {
            return Ok(());
        }
        let held = land::hold(self.rig, &mut |p| on(Event::Landing(p)))?;
        if let Some(i) = land::finish_interrupted(self.town, &held)? {
            on(Event::Interrupted(Box::new(i)));
        }
        Ok(())
    }

    /// A claimed entry whose recorded tip is on origin's main was pushed by a
    /// run that died before finishing it: finish it now (close, mail, move),
    /// without consulting a plugin or landing again. `None` for any other entry.
    fn finish_pushed(
        &self,
        claimed: &Located,
        on: &mut dyn FnMut(Event),
    ) -> Result<Option<Processed>> {
        let Some(tip) = &claimed.entry.tip else {
            return Ok(None);
        };
        match land::on_origin(self.rig, tip, &mut |p| on(Event::Landing(p))) {
            Ok(None) => Ok(None),
            Ok(Some(main)) => {
                let merged = Outcome::Merged { sha: Some(main) };
                Ok(Some(self.finish(claimed, None, merged)))
            }
            Err(err) => Err(self.put_back(&claimed.entry.id, err)),
        }
    }

    /// Release claimed entry `id` after `err`, which is returned saying so.
    fn put_back(&self, id: &str, err: crate::error::Error) -> crate::error::Error {
        let back = self.queue.release(id);
        err.context(match back {
            Ok(_) => format!("{id} (put back in pending/)"),
            Err(b) => format!("{id} (could not put it back in pending/: {b})"),
        })
    }

    /// Land one claimed entry and finish it. An error (the refinery clone is
    /// unusable, origin unreachable) puts the entry back in `pending/` and is
    /// returned: it is not the entry's fault.
    pub fn process(&self, claimed: Located, on: &mut dyn FnMut(Event)) -> Result<Processed> {
        let claimed = self.bound(claimed);
        let e = &claimed.entry;
        let id = e.id.clone();
        let what = format!("{} ({})", e.polecat, e.branch);
        let mut review = None;
        let landing = match self.refusal(&claimed) {
            Some(reason) => {
                let failed = Outcome::Failed {
                    reason,
                    conflicts: Vec::new(),
                };
                return Ok(self.finish(&claimed, None, failed));
            }
            None => self.keepalive(&id, || {
                self.land(&claimed, &mut review, &mut |p| on(Event::Landing(p)))
            }),
        };
        let landing = match landing {
            Ok(o) => o,
            Err(err) => return Err(self.put_back(&id, err)),
        };
        let outcome = match &landing {
            land::Outcome::Landed { head, .. } => Outcome::Merged {
                sha: Some(head.clone()),
            },
            land::Outcome::UpToDate { base, .. } => Outcome::Merged {
                sha: Some(base.clone()),
            },
            land::Outcome::Conflict { files, .. } => Outcome::Failed {
                reason: landing.refusal(&what).unwrap_or_default(),
                conflicts: files.clone(),
            },
            land::Outcome::TestsFailed { .. } | land::Outcome::Rejected { .. } => Outcome::Failed {
                reason: landing.refusal(&what).unwrap_or_default(),
                conflicts: Vec::new(),
            },
        };
        let mut processed = self.finish(&claimed, Some(landing), outcome);
        if let Some(v) = review {
            match &v.defaulted {
                Some(why) => processed.notes.push(format!("{why}; approved")),
                None => processed
                    .done
                    .push(format!("{} by {}: {}", v.verdict, v.by, v.reason)),
            }
        }
        Ok(processed)
    }

    /// A hand-made entry names no generation ("the polecat as it is now"):
    /// it is bound to the polecat's generation now, so that its mail never
    /// acts on a later session of the polecat.
    fn bound(&self, claimed: Located) -> Located {
        let e = &claimed.entry;
        if e.generation.is_some() || e.machine.is_some() {
            return claimed;
        }
        let now = e.address().and_then(|a| self.town.home(&a)?.state());
        match now.and_then(|s| self.queue.set_generation(&e.id, s.generation)) {
            Ok(bound) => bound,
            // Unreadable: the checks say why.
            Err(_) => claimed,
        }
    }

    /// Why the entry must not be landed at all, if it must not. Whatever is
    /// wrong with the polecat's side is the entry's failure, not ours.
    fn refusal(&self, l: &Located) -> Option<String> {
        let e = &l.entry;
        // Unknown main: the refinery's own problem, which landing reports.
        if let Ok(main) = crate::git::default_branch(&self.rig.main_clone(), land::REMOTE)
            && let Err(err) = land::refuse_branch(&e.branch, &main)
        {
            return Some(err.to_string());
        }
        if e.machine.is_some() {
            return crate::federation::worker::refusal(self.town, self.rig, e);
        }
        let addr = match e.address() {
            Ok(a) => a,
            Err(err) => return Some(err.to_string()),
        };
        let state = match self.town.home(&addr).and_then(|h| h.state()) {
            Ok(s) => s,
            Err(err) => return Some(format!("polecat {addr}: {err}")),
        };
        if let Some(g) = e.generation.filter(|g| *g != state.generation) {
            return Some(format!(
                "stale entry: it is about generation {g} of {addr}, which is now at generation {}; nothing merged",
                state.generation
            ));
        }
        let clone = match e
            .clone_dir(self.town)
            .and_then(|c| crate::git::check_links(&c).map(|_| c))
        {
            Ok(c) if c.join(".git").exists() => c,
            Ok(c) => return Some(format!("{}: no clone to merge from", c.display())),
            Err(err) => return Some(err.to_string()),
        };
        match crate::git::resolve(&clone, &format!("refs/heads/{}", e.branch)) {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!(
                "{}: no branch {} to merge",
                clone.display(),
                e.branch
            )),
            Err(err) => Some(err.to_string()),
        }
    }

    /// Land `l`, asking the `on_ready` plugin, if any, once the merge passed
    /// its tests; its verdict goes to `review`.
    fn land(
        &self,
        l: &Located,
        review: &mut Option<Verdict>,
        on: &mut dyn FnMut(land::Progress),
    ) -> Result<land::Outcome> {
        let e = &l.entry;
        // A remote worker's branch is on origin, where its gt done pushed it.
        let from = match e.machine {
            Some(_) => land::REMOTE.to_string(),
            None => {
                let clone = e.clone_dir(self.town)?;
                if let Some(tip) = crate::git::resolve(&clone, &format!("refs/heads/{}", e.branch))?
                {
                    self.queue.set_tip(&e.id, &tip.to_string())?;
                }
                clone.to_string_lossy().into_owned()
            }
        };
        let source = land::Source {
            from,
            branch: e.branch.clone(),
        };
        let message = format!(
            "Merge {} from {}{}\n\nMerged by {} from queue entry {}{}.",
            e.branch,
            e.polecat,
            e.issue
                .as_deref()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default(),
            self.me,
            e.id,
            e.generation
                .map(|g| format!(" (generation {g})"))
                .unwrap_or_default(),
        );
        let plugins = self.rig.config()?.plugins;
        let Some(reviewer) = plugin::plugin_for(self.town, self.rig, &plugins, Hook::OnReady)
        else {
            return land::integrate(self.rig, &source, &message, true, on);
        };
        let me = self.town.home(&self.me)?;
        let mut ask = |ready: &land::Ready| -> Result<Option<land::Rejection>> {
            let mut fields = Extra::new();
            fields.insert("entry".into(), e.id.clone().into());
            fields.insert(
                "queue_entry".into(),
                serde_json::to_value(e).unwrap_or_default(),
            );
            fields.insert(
                "ready".into(),
                serde_json::to_value(ready).unwrap_or_default(),
            );
            let diff = format!(
                "git -C {} diff {} {}",
                ready.clone.display(),
                ready.base,
                ready.head
            );
            let req = Request {
                hook: Hook::OnReady,
                subject: format!("ready: {} ({} {})", e.id, e.polecat, e.branch),
                body: format!(
                    "{} of {} is merged and tested, not pushed: {diff}. Approve or reject it (protocol/plugins.md).",
                    e.branch, e.polecat
                ),
                fields,
            };
            let v = plugin::consult(
                self.town,
                &me,
                &reviewer,
                req,
                plugins.timeout(Hook::OnReady),
            )?;
            if let Some(why) = &v.defaulted {
                tracing::warn!("{}: {why}; approving", e.id);
            }
            let rejected = (v.verdict == "reject").then(|| land::Rejection {
                by: v.by.clone(),
                reason: v.reason.clone(),
            });
            *review = Some(v);
            Ok(rejected)
        };
        land::integrate_reviewed(self.rig, &source, &message, true, &mut ask, on)
    }

    /// Run `f` while renewing the claim on active entry `id`, so a requeue
    /// of stale claims never takes an entry that is being worked on.
    fn keepalive<R>(&self, id: &str, f: impl FnOnce() -> R) -> R {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let queue = &self.queue;
            s.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(KEEPALIVE) {
                    if let Err(e) = queue.touch(id) {
                        tracing::warn!("cannot renew the claim on {id}: {e}");
                    }
                }
            });
            let r = f();
            drop(stop);
            r
        })
    }

    /// Close the issue (merged), move the entry, tell the polecat and the
    /// witness. Failures of the follow-ups become notes.
    fn finish(
        &self,
        claimed: &Located,
        landing: Option<land::Outcome>,
        outcome: Outcome,
    ) -> Processed {
        let e = &claimed.entry;
        let mut done = Vec::new();
        let mut notes = Vec::new();
        if let (Outcome::Merged { sha: Some(sha) }, Some(issue)) = (&outcome, &e.issue) {
            let reason = format!("merged {sha} by {} (queue entry {})", self.me, e.id);
            match crate::beads::open(self.rig).and_then(|t| t.close(issue, Some(&reason))) {
                Ok(_) => done.push(format!("closed issue {issue}")),
                Err(err) => notes.push(format!("issue {issue} left open: {err}")),
            }
        }
        let record = |notes: &mut Vec<String>| match self.queue.finish(&e.id, outcome.clone()) {
            Ok(l) => l,
            Err(err) => {
                notes.push(format!("could not record the result: {err}"));
                claimed.clone()
            }
        };
        // A merge is told before it is recorded, so a run killed in between
        // is finished by the next, which skips the mail already delivered; a
        // failure's mail says where the entry went.
        let merged = matches!(outcome, Outcome::Merged { .. });
        let mut entry = if merged {
            claimed.clone()
        } else {
            record(&mut notes)
        };
        for (to, m) in self.mail(&entry, landing.as_ref(), &outcome) {
            if e.attempts > 1 && mail::delivered(self.town, &to, &m.id) {
                done.push(format!("{to} was mailed by an interrupted run"));
                continue;
            }
            let mut batch = [m];
            match mail::post(self.town, &mut batch, crate::fsio::Durability::from_env()) {
                Ok(()) => done.push(format!("mailed {to}")),
                Err(err) => notes.push(format!("could not mail {to}: {err}")),
            }
        }
        if merged {
            entry = record(&mut notes);
        }
        Processed {
            entry,
            landing,
            done,
            notes,
        }
    }

    /// The messages to the polecat and the witness. A merge's have ids made
    /// from the entry's, so a retry can tell whether they were delivered.
    fn mail(
        &self,
        l: &Located,
        landing: Option<&land::Outcome>,
        outcome: &Outcome,
    ) -> Vec<(String, Message)> {
        let e = &l.entry;
        let (kind, subject, body) = match outcome {
            Outcome::Merged { sha } => {
                let sha = sha.as_deref().unwrap_or("?");
                let how = match landing {
                    Some(land::Outcome::Landed {
                        merge: MergeKind::FastForward,
                        ..
                    }) => "as a fast-forward",
                    Some(land::Outcome::Landed { .. }) => "with a merge commit",
                    Some(_) => "(it was already there: nothing to merge)",
                    None => "(pushed by an earlier run, interrupted before it finished)",
                };
                (
                    "merged",
                    format!("merged {} ({}) on main", e.polecat, land::short(sha)),
                    format!(
                        "{} of {} is on origin's main at {} {how}. Queue entry {}{}.",
                        e.branch,
                        e.polecat,
                        land::short(sha),
                        e.id,
                        e.issue
                            .as_deref()
                            .map(|i| format!("; issue {i}"))
                            .unwrap_or_default()
                    ),
                )
            }
            Outcome::Failed { reason, .. } => {
                let mut body = format!(
                    "{reason}\n\nQueue entry {} is in failed/ ({}). Fix the branch, then queue it again: gt merge-queue add {} {}.",
                    e.id,
                    l.path.display(),
                    e.rig,
                    e.polecat
                );
                if let Some(land::Outcome::TestsFailed { tests, .. }) = landing {
                    body.push_str("\n\nLast lines of the test output:\n");
                    body.push_str(&tests.tail.join("\n"));
                }
                (
                    "merge_failed",
                    format!(
                        "merge {}: {} ({})",
                        if matches!(landing, Some(land::Outcome::Rejected { .. })) {
                            "rejected"
                        } else {
                            "failed"
                        },
                        e.polecat,
                        e.branch
                    ),
                    body,
                )
            }
        };
        let witness = Address::Witness { rig: e.rig.clone() };
        // A remote worker's session has ended: only its home Witness hears.
        let polecat = e.machine.is_none().then(|| e.polecat.clone());
        polecat
            .into_iter()
            .chain([witness.to_string()])
            .map(|to| {
                let mut m = Message::new(&self.me, &to, &subject, &body);
                if let Outcome::Merged { .. } = outcome {
                    m.id = format!("msg-{}-merged-{}", e.id, to.replace('/', "-"));
                }
                m.kind = kind.to_string();
                m.generation = e.generation;
                m.extra.insert("entry".into(), e.id.clone().into());
                m.extra.insert("polecat".into(), e.polecat.clone().into());
                m.extra.insert("branch".into(), e.branch.clone().into());
                if let Some(machine) = &e.machine {
                    m.extra.insert("machine".into(), machine.clone().into());
                }
                if let Some(i) = &e.issue {
                    m.extra.insert("issue".into(), i.clone().into());
                }
                if let Outcome::Merged { sha: Some(sha) } = outcome {
                    m.extra.insert("sha".into(), sha.clone().into());
                }
                (to, m)
            })
            .collect()
    }
}
