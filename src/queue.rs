//! The merge queue of a rig (protocol/queue.md):
//! `<rig>/refinery/queue/{pending,active,merged,failed}/<id>.json`, one file per
//! entry, `<id>` = `<UTC time to the microsecond>-<polecat>` so `ls` order is
//! FIFO order.
//!
//! Every change is a rename (maildir's lesson): an entry appears in `pending/`
//! whole (written under a temp name, then renamed in), a claim is the rename
//! `pending/X -> active/X` (of N racing claimers exactly one rename succeeds),
//! and a finished entry is rewritten with its result and renamed to `merged/`
//! or `failed/`. Renames never replace: a name that already exists on the other
//! side is refused, so a hand-copied duplicate cannot clobber a live entry.
//! Rewrites of an entry in place use `RENAME_EXCHANGE`, which fails when the
//! entry has been moved away meanwhile, so a rewrite never resurrects an entry
//! another process just moved (a requeue, a claim, a person's `mv`).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags};
use serde::{Deserialize, Serialize};

use crate::address::{self, Address};
use crate::clock;
use crate::confine;
use crate::error::{Error, IoContext, Kind, Result};
use crate::fsio;
use crate::home::Home;
use crate::record::Extra;
use crate::rig::Rig;
use crate::town::Town;

/// How long a finished entry stays in `merged/` or `failed/` unless the
/// rig's `queue_archive_after` says otherwise: a week.
pub const DEFAULT_ARCHIVE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The four directories of a queue, in the order an entry moves through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Active,
    Merged,
    Failed,
}

impl State {
    pub const ALL: [State; 4] = [State::Pending, State::Active, State::Merged, State::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Merged => "merged",
            State::Failed => "failed",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry file (protocol/schemas/queue-entry.schema.json). Only `polecat`
/// and `branch` are required, so a person can write an entry by hand; `id` and
/// `rig` are taken from the file's name and directory when read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The file name without `.json`.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub rig: String,
    /// Address of the polecat whose work this is: `<rig>/<polecat>`.
    pub polecat: String,
    /// The branch to merge, in the polecat's clone.
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The polecat's spawn generation when it submitted. An entry whose
    /// generation is not the polecat's current one is stale and is refused.
    /// Absent in a hand-written entry: it then means "whatever is there now".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The polecat's clone (absolute); its home's `rig/` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<PathBuf>,
    /// The machine a remote worker runs on (protocol/federation.md): its
    /// branch is merged from origin, where its `gt done` pushed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    /// How many times the entry has been claimed.
    #[serde(default)]
    pub attempts: u32,
    /// Set while in `active/` (and kept in `merged/`, `failed/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// The branch's commit when the Refinery began landing it (`active/`,
    /// kept after): if origin's main contains it, a run that pushed and died
    /// before finishing did land it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tip: Option<String>,
    /// Set in `merged/` and `failed/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The commit origin's main is at after the merge (`merged/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_sha: Option<String>,
    /// Why it failed, one line (`failed/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The files a failed merge conflicted in (`failed/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Why a plugin holds the entry in `pending/` (protocol/plugins.md);
    /// cleared when it is processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A plugin's hold on an entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Hold {
    /// `hold` or `escalate`.
    pub verdict: String,
    pub reason: String,
    /// The plugin's address.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

impl Entry {
    /// The polecat's address; checked when the entry is read.
    pub fn address(&self) -> Result<Address> {
        self.polecat.parse()
    }

    /// The clone to merge from: recorded, else the polecat home's `rig/`.
    /// A recorded clone outside the town is refused: an entry is a file any
    /// agent can write, and the Refinery would merge (and push) from there.
    pub fn clone_dir(&self, town: &Town) -> Result<PathBuf> {
        match &self.clone {
            Some(c) if !crate::confine::is_confined(c) => Err(Error::invalid(format!(
                "clone {} is outside the town {}; refused",
                c.display(),
                town.root().display()
            ))),
            Some(c) => Ok(c.clone()),
            None => Ok(town.root().join(self.address()?.rel_path()).join("rig")),
        }
    }
}

/// An entry and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    pub state: State,
    pub path: PathBuf,
    /// The month (`YYYY-MM`) of the archive it is in, for an archived entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    #[serde(flatten)]
    pub entry: Entry,
}

/// A file in a queue directory that is not a readable entry: reported, skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Junk {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Junk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; skipped", self.path.display(), self.reason)
    }
}

/// What a scan of one or more queue directories found.
#[derive(Debug, Default)]
pub struct Listing {
    /// In queue order (by file name) within each state, states in [`State::ALL`] order.
    pub entries: Vec<Located>,
    pub junk: Vec<Junk>,
}

/// How an active entry ends.
#[derive(Debug, Clone)]
pub enum Outcome {
    Merged {
        sha: Option<String>,
    },
    Failed {
        reason: String,
        conflicts: Vec<String>,
    },
}

/// A rig's merge queue.
#[derive(Debug, Clone)]
pub struct Queue {
    pub rig: String,
    pub dir: PathBuf,
}

impl Queue {
    pub fn of(rig: &Rig) -> Queue {
        Queue {
            rig: rig.name.clone(),
            dir: rig.queue_dir(),
        }
    }

    pub fn state_dir(&self, state: State) -> PathBuf {
        self.dir.join(state.as_str())
    }

    fn path(&self, state: State, id: &str) -> PathBuf {
        self.state_dir(state).join(format!("{id}.json"))
    }

    /// Create the four directories (idempotent).
    pub fn ensure(&self) -> Result<()> {
        State::ALL
            .iter()
            .try_for_each(|s| fsio::ensure_dir(&self.state_dir(*s)))
    }

    /// Read the entries in `states`. Dotfiles (writes in flight) are ignored;
    /// anything else that is not a valid `*.json` entry is reported as junk.
    pub fn list(&self, states: &[State]) -> Result<Listing> {
        let mut out = Listing::default();
        for &state in states {
            self.scan(state, &self.state_dir(state), &mut out)?;
        }
        Ok(out)
    }

    /// Add the entries of `dir`, which holds entries in `state`, to `out`.
    fn scan(&self, state: State, dir: &Path, out: &mut Listing) -> Result<()> {
        for name in file_names(dir)? {
            let path = dir.join(&name);
            match self.load(state, &path) {
                Ok(l) => out.entries.push(l),
                // Moved away between readdir and read: not junk, just gone.
                Err(e) if e.kind == Kind::NotFound => {}
                Err(e) => out.junk.push(Junk {
                    path,
                    reason: e.message().to_string(),
                }),
            }
        }
        Ok(())
    }

    /// `<queue>/archive/`: one directory per month, `YYYY-MM/merged/` and
    /// `YYYY-MM/failed/` under it.
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// The archived entries, month by month (oldest first), merged before
    /// failed within a month, in name order.
    pub fn list_archive(&self) -> Result<Listing> {
        let mut out = Listing::default();
        let root = self.archive_dir();
        for month in file_names(&root)? {
            let dir = root.join(&month);
            if !confine::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                out.junk.push(Junk {
                    path: dir,
                    reason: "not a month of the archive (archive/YYYY-MM/)".into(),
                });
                continue;
            }
            let first = out.entries.len();
            for state in [State::Merged, State::Failed] {
                self.scan(state, &dir.join(state.as_str()), &mut out)?;
            }
            for l in &mut out.entries[first..] {
                l.archived = Some(month.clone());
            }
        }
        Ok(out)
    }

    /// Move the `merged/` and `failed/` entries that finished at least
    /// `older_than` ago (by `finished_at`, else their file's last change) to
    /// `archive/<YYYY-MM they finished>/<state>/`, each by one rename that
    /// never replaces: killed at any point, an entry is in one place, whole.
    /// A name already in the archive is left where it is and reported.
    pub fn archive(&self, older_than: Duration) -> Result<(Vec<Located>, Vec<Junk>)> {
        let listing = self.list(&[State::Merged, State::Failed])?;
        let mut junk = listing.junk;
        let now = clock::now();
        let mut moved = Vec::new();
        for mut l in listing.entries {
            let Some(finished) = finished_at(&l) else {
                continue;
            };
            let age = now.duration_since(finished);
            if age.is_negative() || age.unsigned_abs() < older_than {
                continue;
            }
            let month = finished.strftime("%Y-%m").to_string();
            let dir = self.archive_dir().join(&month).join(l.state.as_str());
            fsio::ensure_dir(&dir)?;
            let dest = dir.join(format!("{}.json", l.entry.id));
            match rename_noreplace(&l.path, &dest) {
                Ok(()) => {}
                Err(e) if e.kind == Kind::NotFound => continue, // moved meanwhile
                Err(e) if e.kind == Kind::Conflict => {
                    junk.push(Junk {
                        path: l.path,
                        reason: format!(
                            "an entry of this name is already archived ({}); left here",
                            dest.display()
                        ),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            }
            fsio::sync_dir(&dir)?;
            fsio::sync_dir(&self.state_dir(l.state))?;
            l.path = dest;
            l.archived = Some(month);
            moved.push(l);
        }
        Ok((moved, junk))
    }

    /// Read one entry file; the reasons it may be junk are the error.
    fn load(&self, state: State, path: &Path) -> Result<Located> {
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            return Err(Error::invalid("not an entry (entries are named <id>.json)"));
        };
        let bytes = match confine::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                return Err(Error::invalid("a directory, not an entry"));
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(match e.classify() {
                serde_json::error::Category::Data => format!("not a queue entry ({e})"),
                _ => format!("not JSON ({e})"),
            })
        })?;
        entry.id = id.to_string();
        entry.rig = self.rig.clone();
        // A hand-written entry may name the polecat alone.
        if !entry.polecat.contains('/') {
            entry.polecat = format!("{}/{}", self.rig, entry.polecat);
        }
        match entry.address() {
            Ok(Address::Polecat { rig, .. }) if rig == self.rig => {}
            Ok(a) => {
                return Err(Error::invalid(format!(
                    "\"polecat\" is {a}, not a polecat of rig {}",
                    self.rig
                )));
            }
            Err(e) => return Err(Error::invalid(format!("\"polecat\": {}", e.message()))),
        }
        if entry.branch.is_empty() {
            return Err(Error::invalid("\"branch\" is empty"));
        }
        Ok(Located {
            state,
            path: path.to_path_buf(),
            archived: None,
            entry,
        })
    }

    /// Find entry `spec` (an id, `<id>.json`, or a path to the file) in any state.
    pub fn find(&self, spec: &str) -> Result<Located> {
        let name = Path::new(spec)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(spec);
        let id = name.strip_suffix(".json").unwrap_or(name);
        for state in State::ALL {
            let path = self.path(state, id);
            match self.load(state, &path) {
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.context(path.display())),
                ok => return ok,
            }
        }
        let all = self.list(&State::ALL)?;
        Err(Error::not_found(format!(
            "no entry {id:?} in {} (pending, active, merged or failed)",
            self.dir.display()
        ))
        .suggest(id, all.entries.iter().map(|l| l.entry.id.as_str())))
    }

    /// Put `entry` at the end of `pending/`. Refused when a pending entry for
    /// the same polecat and generation exists. Its id is made here: later than
    /// every entry's id in the queue, so FIFO holds even under a fixed or
    /// stepped-back clock.
    pub fn add(&self, mut entry: Entry) -> Result<Located> {
        self.ensure()?;
        // Serializes adds, so the duplicate check and the new name hold.
        let _lock = fsio::lock_file(&self.dir.join("add.lock"))?;
        let pending = self.list(&[State::Pending])?;
        if let Some(dup) = pending
            .entries
            .iter()
            .find(|l| l.entry.polecat == entry.polecat && l.entry.generation == entry.generation)
        {
            return Err(Error::conflict(format!(
                "{} (generation {}) is already queued: {}",
                entry.polecat,
                entry.generation.map_or("-".into(), |g| g.to_string()),
                dup.path.display()
            )));
        }
        let name = entry
            .address()?
            .to_string()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        entry.id = self.next_id(&name)?;
        entry.rig = self.rig.clone();
        let path = self.path(State::Pending, &entry.id);
        let tmp = write_temp(&self.dir, &entry.id, &fsio::to_json_bytes(&entry)?)?;
        let moved = rename_noreplace(&tmp, &path);
        if moved.is_err() {
            let _ = confine::remove_file(&tmp);
        }
        moved?;
        fsio::sync_dir(&self.state_dir(State::Pending))?;
        Ok(Located {
            state: State::Pending,
            path,
            archived: None,
            entry,
        })
    }

    /// `<time>-<name>` with a time later than any id in the queue.
    fn next_id(&self, name: &str) -> Result<String> {
        let mut latest: Option<jiff::Timestamp> = None;
        for state in State::ALL {
            for file in file_names(&self.state_dir(state))? {
                if let Some(t) = file.split('-').next().and_then(parse_id_time) {
                    latest = latest.max(Some(t));
                }
            }
        }
        let mut t = clock::now();
        if let Some(l) = latest.filter(|l| *l >= t) {
            t = l + jiff::SignedDuration::from_micros(1);
        }
        Ok(format!("{}-{name}", format_id_time(t)))
    }

    /// Claim the first pending entry: rename it into `active/`, then record
    /// who claimed it and when. `None` when nothing is pending. Junk and
    /// entries lost to another claimer are skipped (junk is returned).
    pub fn claim(&self, by: &str) -> Result<(Option<Located>, Vec<Junk>)> {
        self.claim_except(by, &|_| false)
    }

    /// [`Queue::claim`], passing over the entries whose id `skip` names.
    pub fn claim_except(
        &self,
        by: &str,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<(Option<Located>, Vec<Junk>)> {
        let listing = self.list(&[State::Pending])?;
        let mut junk = listing.junk;
        fsio::ensure_dir(&self.state_dir(State::Active))?;
        for l in listing.entries {
            if skip(&l.entry.id) {
                continue;
            }
            let dest = self.path(State::Active, &l.entry.id);
            match rename_noreplace(&l.path, &dest) {
                Ok(()) => {}
                Err(e) if e.kind == Kind::NotFound => continue, // another claimer won
                Err(e) if e.kind == Kind::Conflict => {
                    junk.push(Junk {
                        path: l.path,
                        reason: format!(
                            "an entry of this name is already active ({}); left here",
                            dest.display()
                        ),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            }
            let claimed = self.rewrite(State::Active, &l.entry.id, |e| {
                e.attempts += 1;
                e.claimed_at = Some(clock::now_string());
                e.claimed_by = Some(by.to_string());
                Ok(())
            });
            match claimed {
                Ok(c) => return Ok((Some(c), junk)),
                // Taken from us between the rename and the rewrite (a requeue
                // with a zero timeout, a person's mv): it is not ours.
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((None, junk))
    }

    /// Record how active entry `id` ended and move it to `merged/` or `failed/`.
    pub fn finish(&self, id: &str, outcome: Outcome) -> Result<Located> {
        let located = self.find(id)?;
        if located.state != State::Active {
            return Err(Error::conflict(format!(
                "{}: the entry is {}, not active (only a claimed entry can be finished)",
                located.path.display(),
                located.state
            )));
        }
        let id = located.entry.id.as_str();
        let state = match &outcome {
            Outcome::Merged { .. } => State::Merged,
            Outcome::Failed { .. } => State::Failed,
        };
        self.rewrite(State::Active, id, |e| {
            e.finished_at = Some(clock::now_string());
            e.hold = None;
            match &outcome {
                // A retried entry drops the result of its earlier try.
                Outcome::Merged { sha } => {
                    e.merged_sha = sha.clone();
                    e.reason = None;
                    e.conflicts.clear();
                }
                Outcome::Failed { reason, conflicts } => {
                    e.merged_sha = None;
                    e.reason = Some(reason.clone());
                    e.conflicts = conflicts.clone();
                }
            }
            Ok(())
        })?;
        self.transfer(State::Active, state, id)
    }

    /// Move active entries whose claim is older than `older_than` back to
    /// `pending/` (a refinery was killed mid-entry); with `by`, only entries
    /// claimed by `by`. A claim's age is the time since the active file last
    /// changed (mtime or ctime, whichever is later): the claim's rename or
    /// rewrite sets it, a holder's `touch` renews it.
    pub fn requeue(
        &self,
        older_than: Duration,
        by: Option<&str>,
    ) -> Result<(Vec<Located>, Vec<Junk>)> {
        let listing = self.list(&[State::Active])?;
        let now = SystemTime::UNIX_EPOCH
            + Duration::from_millis(clock::now().as_millisecond().max(0) as u64);
        let mut moved = Vec::new();
        for l in listing.entries {
            if by.is_some_and(|b| l.entry.claimed_by.as_deref() != Some(b)) {
                continue;
            }
            let Ok(meta) = confine::metadata(&l.path) else {
                continue;
            };
            let changed = meta.mtime().max(meta.ctime()).max(0) as u64;
            let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(changed);
            if now.duration_since(changed).unwrap_or_default() < older_than {
                continue;
            }
            match self.release(&l.entry.id) {
                Ok(Some(r)) => moved.push(r),
                Ok(None) => {}
                Err(e) if e.kind == Kind::NotFound => continue, // finished meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok((moved, listing.junk))
    }

    /// Give up a claim: move active entry `id` back to `pending/` and clear
    /// `claimed_*`. `None` when it was claimed again before the fields were
    /// cleared (the new claim's fields stand).
    pub fn release(&self, id: &str) -> Result<Option<Located>> {
        self.release_with(id, None)
    }

    /// [`Queue::release`] recording `hold` in the entry.
    pub fn hold(&self, id: &str, hold: Hold) -> Result<Option<Located>> {
        self.release_with(id, Some(hold))
    }

    fn release_with(&self, id: &str, hold: Option<Hold>) -> Result<Option<Located>> {
        self.transfer(State::Active, State::Pending, id)?;
        let released = self.rewrite(State::Pending, id, |e| {
            e.claimed_at = None;
            e.claimed_by = None;
            if hold.is_some() {
                e.hold = hold;
            }
            Ok(())
        });
        match released {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Record in active entry `id` the commit its landing starts from.
    pub fn set_tip(&self, id: &str, tip: &str) -> Result<Located> {
        self.rewrite(State::Active, id, |e| {
            e.tip = Some(tip.to_string());
            Ok(())
        })
    }

    /// Bind active entry `id` to polecat generation `generation` (a hand-made
    /// entry, bound to none, as the Refinery checks it).
    pub fn set_generation(&self, id: &str, generation: u64) -> Result<Located> {
        self.rewrite(State::Active, id, |e| {
            e.generation = Some(generation);
            Ok(())
        })
    }

    /// Renew the claim on an active entry (what `touch` does by hand).
    pub fn touch(&self, id: &str) -> Result<()> {
        let path = self.path(State::Active, id);
        let f = confine::open(&path, OFlag::O_WRONLY, 0).at(&path)?;
        f.set_modified(SystemTime::now()).at(&path)
    }

    /// Rename `from/id.json` to `to/id.json` without replacing anything.
    fn transfer(&self, from: State, to: State, id: &str) -> Result<Located> {
        let (src, dest) = (self.path(from, id), self.path(to, id));
        fsio::ensure_dir(&self.state_dir(to))?;
        rename_noreplace(&src, &dest)?;
        fsio::sync_dir(&self.state_dir(to))?;
        self.load(to, &dest)
    }

    /// Change entry `id` in `state/` in place; fails with NotFound if it was
    /// moved away meanwhile (never recreates it).
    fn rewrite(
        &self,
        state: State,
        id: &str,
        f: impl FnOnce(&mut Entry) -> Result<()>,
    ) -> Result<Located> {
        let path = self.path(state, id);
        let mut located = self.load(state, &path)?;
        f(&mut located.entry)?;
        let dir = self.state_dir(state);
        let tmp = write_temp(&dir, id, &fsio::to_json_bytes(&located.entry)?)?;
        let swapped = exchange(&tmp, &path);
        // After a successful exchange `tmp` holds the old version.
        let _ = confine::remove_file(&tmp);
        swapped?;
        fsio::sync_dir(&dir)?;
        Ok(located)
    }
}

/// When a finished entry finished: its `finished_at`, else its file's last
/// change (a hand-moved entry). `None` when neither can be read.
fn finished_at(l: &Located) -> Option<jiff::Timestamp> {
    if let Some(t) = l.entry.finished_at.as_deref().and_then(clock::parse) {
        return Some(t);
    }
    let meta = confine::metadata(&l.path).ok()?;
    jiff::Timestamp::from_second(meta.mtime().max(meta.ctime())).ok()
}

/// The names of the files in `dir` (missing dir: none), sorted, without
/// dotfiles (temp files of writes in flight).
fn file_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match confine::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for name in rd {
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// `20261125T092000.123456Z`: fixed width, so names sort by time.
const ID_TIME: &str = "%Y%m%dT%H%M%S%.6fZ";

fn format_id_time(t: jiff::Timestamp) -> String {
    t.strftime(ID_TIME).to_string()
}

fn parse_id_time(s: &str) -> Option<jiff::Timestamp> {
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.fZ", s).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to a new synced temp file `dir/.<id>.json.tmp.<pid>.<n>`
/// (the temp-name convention of `fsio`, which `gt doctor` knows). fsio's
/// atomic replace cannot serve here: queue writes need rename-without-replace
/// and replace-only-if-still-there.
fn write_temp(dir: &Path, id: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(format!(
        ".{id}.json.tmp.{}.{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = confine::open(
        &tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        0o666,
    )
    .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = confine::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    Ok(tmp)
}

fn rename2(from: &Path, to: &Path, flags: RenameFlags) -> std::io::Result<()> {
    confine::rename(from, to, flags)
}

/// `rename` that fails with Conflict instead of replacing an existing `to`,
/// and with NotFound when `from` is gone (lost a race).
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    match rename2(from, to, RenameFlags::RENAME_NOREPLACE).map_err(errno) {
        Ok(()) => Ok(()),
        Err(Ok(Errno::EEXIST)) => Err(Error::conflict(format!(
            "{}: already exists; not replacing it with {}",
            to.display(),
            from.display()
        ))),
        Err(Ok(Errno::ENOENT)) => Err(Error::not_found(format!(
            "{}: gone (moved by someone else)",
            from.display()
        ))),
        // Filesystems without renameat2 flags: check, then rename (racy, rare).
        Err(Ok(Errno::EINVAL)) if !to.exists() => {
            confine::rename(from, to, RenameFlags::empty()).at(to)
        }
        Err(Ok(e)) => Err(Error::io(to, e.into())),
        Err(Err(e)) => Err(Error::io(to, e)),
    }
}

/// The errno of a system call's error, or the error itself when it has none
/// (a refusal by [`confine`]).
fn errno(e: std::io::Error) -> std::result::Result<Errno, std::io::Error> {
    match e.raw_os_error() {
        Some(n) => Ok(Errno::from_raw(n)),
        None => Err(e),
    }
}

/// Swap `tmp` and `path` atomically; NotFound when `path` no longer exists.
fn exchange(tmp: &Path, path: &Path) -> Result<()> {
    match rename2(tmp, path, RenameFlags::RENAME_EXCHANGE).map_err(errno) {
        Ok(()) => Ok(()),
        Err(Ok(Errno::ENOENT)) => Err(Error::not_found(format!(
            "{}: gone (moved by someone else meanwhile); not rewritten",
            path.display()
        ))),
        Err(Ok(Errno::EINVAL)) if path.exists() => {
            confine::rename(tmp, path, RenameFlags::empty()).at(path)
        }
        Err(Ok(e)) => Err(Error::io(path, e.into())),
        Err(Err(e)) => Err(Error::io(path, e)),
    }
}

/// `gt queue add <rig> <polecat>`: queue a polecat's branch. Refused for an
/// unknown polecat, a clone that is missing, dirty or lacks the branch, and a
/// duplicate of a pending entry.
pub fn submit(town: &Town, rig: &Rig, polecat: &str) -> Result<Located> {
    let addr = if polecat.contains('/') {
        polecat.parse()?
    } else {
        address::check_agent_name("polecat", polecat)?;
        Address::Polecat {
            rig: rig.name.clone(),
            name: polecat.to_string(),
        }
    };
    let Address::Polecat { rig: of, .. } = &addr else {
        return Err(Error::invalid(format!(
            "{addr} is the {}, not a polecat",
            addr.role()
        )));
    };
    if *of != rig.name {
        return Err(Error::invalid(format!(
            "{addr} is a polecat of rig {of}, not of {}",
            rig.name
        )));
    }
    let home: Home = town.home(&addr)?;
    let state = home.state()?;
    let crate::polecat::Work { clone, branch } = crate::polecat::work(&home, &state)?;
    if crate::git::resolve(&clone, &format!("refs/heads/{branch}"))?.is_none() {
        return Err(Error::not_found(format!(
            "{}: no branch {branch} to queue",
            clone.display()
        )));
    }
    let dirty = crate::git::dirty_files(&clone)?;
    if !dirty.is_empty() {
        return Err(Error::conflict(format!(
            "refusing to queue {addr}: {} has uncommitted changes in {} (commit them first)",
            clone.display(),
            dirty.join(", ")
        )));
    }
    Queue::of(rig).add(Entry {
        rig: rig.name.clone(),
        polecat: addr.to_string(),
        branch,
        issue: state.issue,
        generation: Some(state.generation),
        clone: Some(clone),
        submitted_at: Some(clock::now_string()),
        ..Entry::default()
    })
}
