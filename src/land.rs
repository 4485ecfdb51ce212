//! Landing work on a rig's canonical main (protocol/land.md).
//!
//! [`integrate`] is the one step every landing shares: under the rig's landing
//! lock, merge a branch into the Refinery's clone (`<rig>/refinery/rig/`), run
//! the rig's `test_command`, push to origin. Anything short of a push leaves the
//! clone's branch and work tree as they were. The Refinery calls it for each
//! queue entry; [`direct`] is `gt land --direct <rig>/<polecat>`: safety checks
//! on the polecat first, then [`integrate`], then the follow-ups (close the
//! issue, delete the branch, mail the witness and mayor). [`preview`] predicts
//! an integration without writing anything, for `--dry-run`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::error::{Error, IoContext, Kind, Result};
use crate::fsio;
use crate::git::{self, Merged};
use crate::home::Home;
use crate::mail::Message;
use crate::record::Extra;
use crate::rig::Rig;
use crate::town::{Bare, Town};

/// The remote every clone of a rig pushes to.
pub const REMOTE: &str = "origin";
/// Where the branch being landed is fetched to in the main clone; deleted
/// after every landing. One at a time: the landing lock is held.
const LANDING_REF: &str = "refs/gastown/landing";
/// The main clone's head before the landing in progress. Found by the next
/// landing, it means that one died midway (kill -9, power loss): the clone is
/// put back there first.
const LANDING_BASE_REF: &str = "refs/gastown/landing-base";
/// Lines of test output kept for the report.
const TAIL_LINES: usize = 20;
/// Longest test output line kept, in bytes.
const TAIL_WIDTH: usize = 400;
/// Longest piece of test output read as one line.
const LINE_MAX: u64 = 64 * 1024;

/// A branch to land and where to fetch it from.
#[derive(Debug, Clone)]
pub struct Source {
    /// A local repository (a polecat's clone: no push needed) or a remote of
    /// the main clone (`origin`, for a branch pushed there).
    pub from: String,
    pub branch: String,
}

impl Source {
    /// The local repository holding the branch, if `from` is one.
    fn local_repo(&self) -> Option<&Path> {
        Some(Path::new(&self.from)).filter(|p| p.is_absolute() && p.is_dir())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    FastForward,
    MergeCommit,
}

/// One run of the rig's `test_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestRun {
    pub command: String,
    /// `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The last lines of its stdout and stderr, interleaved as written.
    pub tail: Vec<String>,
    /// Set when it ran past the rig's `test_timeout` and was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<String>,
}

impl TestRun {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }
    fn status(&self) -> String {
        if let Some(after) = &self.timed_out {
            return format!("timed out after {after} (test_timeout) and killed");
        }
        self.exit_code
            .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}"))
    }
}

/// What [`integrate`] did. `base` is origin's branch before the landing,
/// `tip` the landed branch's commit; shas are full hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Merged, tested (unless `tests` is `None`) and pushed: origin's `branch` is `head`.
    Landed {
        branch: String,
        merge: MergeKind,
        base: String,
        tip: String,
        head: String,
        tests: Option<TestRun>,
    },
    /// Nothing to land: `tip` is already in `base`.
    UpToDate { base: String, tip: String },
    /// The merge conflicts in `files`; nothing changed.
    Conflict {
        base: String,
        tip: String,
        files: Vec<String>,
    },
    /// The merge was made but the tests failed; it was undone, nothing pushed.
    TestsFailed {
        base: String,
        tip: String,
        tests: TestRun,
    },
    /// Merged and tested, but the review refused it; undone, nothing pushed.
    Rejected {
        base: String,
        tip: String,
        head: String,
        by: String,
        reason: String,
    },
}

/// A merge that passed its tests and is not pushed yet, as a review sees it
/// ([`integrate_reviewed`]): `head` is checked out in `clone`.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub clone: PathBuf,
    /// Origin's branch it is pushed to (origin's default branch).
    pub branch: String,
    pub base: String,
    pub tip: String,
    pub head: String,
    pub merge: MergeKind,
    pub tests: Option<TestRun>,
}

/// Why a review refused a [`Ready`] merge.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Who refused it (a plugin's address).
    pub by: String,
    pub reason: String,
}

/// A review of a merge about to be pushed: `Some` refuses it.
pub type Review<'a> = dyn FnMut(&Ready) -> Result<Option<Rejection>> + 'a;

impl Outcome {
    /// Why the work did not land, in one line; `None` when it landed.
    pub fn refusal(&self, what: &str) -> Option<String> {
        match self {
            Outcome::Landed { .. } => None,
            Outcome::UpToDate { tip, .. } => Some(nothing_to_land(what, tip)),
            Outcome::Conflict { files, .. } => Some(format!(
                "cannot land {what}: merge conflict with origin's main in {}; nothing changed (rebase it on origin's main and retry)",
                files.join(", ")
            )),
            Outcome::TestsFailed { tests, .. } => Some(format!(
                "cannot land {what}: tests failed ({}): {}; merge undone, nothing pushed",
                tests.status(),
                tests.command
            )),
            Outcome::Rejected { by, reason, .. } => Some(format!(
                "cannot land {what}: rejected by {by}: {reason}; merge undone, nothing pushed"
            )),
        }
    }
}

fn nothing_to_land(what: &str, tip: &str) -> String {
    format!(
        "nothing to land: {what} at {} is already on origin's main",
        short(tip)
    )
}

/// The first 7 hex digits of a sha, for people.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// The Refinery's clone, checked ready to land on: a git clone, clean, on
/// origin's default branch, with no merge in progress.
struct Target {
    clone: PathBuf,
    branch: String,
    head: Oid,
}

/// Refuse `branch` as work to land on `target` (origin's default branch): a
/// name git would not take as a branch (a refspec in disguise), or `target`
/// itself, which the follow-ups would then delete as landed.
pub fn refuse_branch(branch: &str, target: &str) -> Result<()> {
    if !git2::Branch::name_is_valid(branch).unwrap_or(false) {
        return Err(Error::invalid(format!(
            "branch {branch:?} is not a valid branch name"
        )));
    }
    if branch == target {
        return Err(Error::invalid(format!(
            "cannot land branch {branch} onto {REMOTE}'s {branch}: it is the rig's own branch, not a polecat's work branch"
        )));
    }
    Ok(())
}

impl Target {
    /// Whether `source` may land here: a polecat's branch, from a
    /// repository git would not follow out of the town.
    fn accepts(&self, source: &Source) -> Result<()> {
        refuse_branch(&source.branch, &self.branch)?;
        source.local_repo().map_or(Ok(()), git::check_links)
    }

    fn check(rig: &Rig) -> Result<Target> {
        let clone = rig.main_clone();
        if !clone.join(".git").exists() {
            return Err(Error::not_found(format!(
                "{}: the refinery clone (canonical main) is missing",
                clone.display()
            )));
        }
        git::check_links(&clone)?;
        // A landing is done once it is on the rig's origin: fetched from and
        // pushed to there, not wherever the clone's config points now.
        let url = rig.config()?.git_url;
        for (what, push) in [("fetches from", ""), ("pushes to", " --push")] {
            let args = format!("remote get-url{push} {REMOTE}");
            let now = git::run(Some(&clone), &args.split(' ').collect::<Vec<_>>())?;
            if let Some(other) = now.lines().find(|u| *u != url) {
                return Err(Error::conflict(format!(
                    "{}: the refinery clone {what} {other}, not the rig's git_url {url}; set it back: git -C {} remote set-url{push} {REMOTE} {url}",
                    clone.display(),
                    clone.display(),
                )));
            }
        }
        let branch = git::default_branch(&clone, REMOTE)?;
        let on = git::current_branch(&clone)?;
        if on.as_deref() != Some(branch.as_str()) {
            return Err(Error::conflict(format!(
                "{}: the refinery clone is on {}, not {branch}; check out {branch} there first",
                clone.display(),
                on.map_or_else(|| "a detached HEAD".to_string(), |b| format!("branch {b}"))
            )));
        }
        let dirty = git::dirty_files(&clone)?;
        if !dirty.is_empty() {
            return Err(Error::conflict(format!(
                "{}: the refinery clone has uncommitted changes ({}); it must be clean to land on",
                clone.display(),
                list(&dirty)
            )));
        }
        let head = git::resolve(&clone, &format!("refs/heads/{branch}"))?.ok_or_else(|| {
            Error::not_found(format!(
                "{}: branch {branch} has no commit",
                clone.display()
            ))
        })?;
        Ok(Target {
            clone,
            branch,
            head,
        })
    }

    fn tracking(&self) -> String {
        format!("refs/remotes/{REMOTE}/{}", self.branch)
    }

    /// Origin's branch as last fetched.
    fn base(&self) -> Result<Oid> {
        git::resolve(&self.clone, &self.tracking())?.ok_or_else(|| {
            Error::not_found(format!(
                "{}: no {} (fetch from {REMOTE} failed?)",
                self.clone.display(),
                self.tracking()
            ))
        })
    }
}

/// A few paths for a one-line message.
fn list(paths: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = paths
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        s.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    s
}

/// The landing lock of a rig: `<rig>/refinery/rig.lock`, a sidecar of the
/// clone (`flock refinery/rig.lock git -C refinery/rig ...` takes it by hand).
pub fn lock_path(rig: &Rig) -> PathBuf {
    fsio::lock_path(&rig.main_clone())
}

/// What a landing says while it runs, before it has a result: for the caller
/// to show (the library never prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Another landing holds the rig's landing lock; this one waits its turn.
    Waiting { lock: PathBuf, rig: String },
    /// A landing that died midway left the clone behind; it is put back at `base`.
    Recovering { clone: PathBuf, base: String },
    /// A git lock file a dead landing left in the clone was removed.
    StaleLock { file: PathBuf },
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Waiting { lock, rig } => write!(
                f,
                "waiting for {} (another landing on rig {rig} is running)",
                lock.display()
            ),
            Progress::Recovering { clone, base } => write!(
                f,
                "{}: an earlier landing was interrupted; putting the clone back at {}",
                clone.display(),
                short(base)
            ),
            Progress::StaleLock { file } => write!(
                f,
                "{}: removed, a git lock file left by an interrupted landing",
                file.display()
            ),
        }
    }
}

/// Take the rig's landing lock, telling `on` when it has to wait.
pub fn lock(rig: &Rig, on: &mut dyn FnMut(Progress)) -> Result<fsio::Lock> {
    let path = lock_path(rig);
    if let Some(l) = fsio::try_lock_file(&path)? {
        return Ok(l);
    }
    on(Progress::Waiting {
        lock: path.clone(),
        rig: rig.name.clone(),
    });
    fsio::lock_file(&path)
}

/// Puts the main clone back as it was unless disarmed, and always removes
/// the landing ref, so no early return leaves a half-landing behind.
struct Undo<'a> {
    clone: &'a Path,
    restore_to: Option<Oid>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = undo(self.clone, self.restore_to) {
            tracing::error!("{e}");
        }
    }
}

/// Reset the main clone to `restore_to` (if any) and remove the landing refs.
fn undo(clone: &Path, restore_to: Option<Oid>) -> Result<()> {
    if let Some(rev) = restore_to {
        git::restore(clone, rev).map_err(|e| {
            e.context(format!(
                "{}: could not undo the landing (reset to {rev} by hand)",
                clone.display()
            ))
        })?;
    }
    for r in [LANDING_REF, LANDING_BASE_REF] {
        git::delete_ref(clone, r)?;
    }
    Ok(())
}

/// Put the main clone back where a landing that died midway found it (the
/// caller holds the landing lock, so that landing is gone): whatever it merged
/// was not pushed, or is on origin and comes back with the next fetch.
fn recover(rig: &Rig, on: &mut dyn FnMut(Progress)) -> Result<()> {
    let clone = rig.main_clone();
    if !clone.join(".git").exists() {
        return Ok(()); // Target::check says what is wrong
    }
    remove_stale_locks(&clone, on)?;
    let Some(base) = git::resolve(&clone, LANDING_BASE_REF)? else {
        return Ok(());
    };
    on(Progress::Recovering {
        clone: clone.clone(),
        base: base.to_string(),
    });
    undo(&clone, Some(base))
}

/// Remove git's lock files (`*.lock` under `.git/`: `index.lock`,
/// `HEAD.lock`, `packed-refs.lock`, `refs/.../x.lock`, ...) that a killed
/// landing left. The caller holds the landing lock, and every git a landing
/// runs holds it too ([`git::hold_in_children`]), so no git is at work in the
/// clone: each of them is stale.
fn remove_stale_locks(clone: &Path, on: &mut dyn FnMut(Progress)) -> Result<()> {
    for file in git_lock_files(clone)? {
        crate::confine::remove_file(&file).map_err(|err| {
            Error::new(
                Kind::Io,
                format!(
                    "{}: a git lock file left by an interrupted landing cannot be removed ({err}); remove it by hand",
                    file.display()
                ),
            )
        })?;
        on(Progress::StaleLock { file });
    }
    Ok(())
}

/// Every `*.lock` file under the clone's `.git/`.
fn git_lock_files(clone: &Path) -> Result<Vec<PathBuf>> {
    let git_dir = clone.join(".git");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&git_dir).follow_links(false) {
        let e = e.map_err(|err| {
            let at = err.path().unwrap_or(&git_dir).to_path_buf();
            Error::new(Kind::Io, format!("{}: {err}", at.display()))
        })?;
        if !e.file_type().is_dir() && e.file_name().to_string_lossy().ends_with(".lock") {
            out.push(e.into_path());
        }
    }
    Ok(out)
}

/// The git lock files in the rig's refinery clone while no landing runs
/// (for `gt doctor`): a killed landing's, which the next landing removes.
/// Nothing is created: with no landing lock file, no landing holds it.
pub fn stale_locks(rig: &Rig) -> Result<Vec<PathBuf>> {
    let lock = lock_path(rig);
    if lock.exists() && fsio::try_lock_file(&lock)?.is_none() {
        return Ok(Vec::new()); // a landing is at work: its locks are live
    }
    git_lock_files(&rig.main_clone())
}

/// Merge `source` into the rig's canonical main, run the rig's tests (when
/// `run_tests` and a `test_command` is configured), and push to origin.
/// `message` is the merge commit's message when a fast-forward is impossible.
///
/// Holds the rig's landing lock throughout. Fetches origin first and
/// fast-forwards the clone to it. Unless the outcome is [`Outcome::Landed`]
/// (or an error after the push), the clone's branch, index and work tree are
/// left exactly as they were; only remote-tracking refs may have moved.
/// Waiting for the lock and undoing a dead landing are told to `on`.
pub fn integrate(
    rig: &Rig,
    source: &Source,
    message: &str,
    run_tests: bool,
    on: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    integrate_reviewed(rig, source, message, run_tests, &mut |_| Ok(None), on)
}

/// [`integrate`], with `review` asked after the tests passed and before the
/// push (the landing lock held): a rejection undoes the merge.
pub fn integrate_reviewed(
    rig: &Rig,
    source: &Source,
    message: &str,
    run_tests: bool,
    review: &mut Review,
    on: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    integrate_held(&hold(rig, on)?, source, message, run_tests, review)
}

/// The rig's landing lock, held: every git started meanwhile inherits it
/// ([`git::hold_in_children`]). Taking it ([`hold`]) recovers from a landing
/// that died midway, so its holder finds the clone as a landing left it.
pub struct Held<'r> {
    rig: &'r Rig,
    // Dropped first: no git started after the lock is released holds it.
    _holding: git::Holding,
    _lock: fsio::Lock,
}

/// Take the rig's landing lock (telling `on` when it has to wait) and undo
/// whatever a landing killed midway left in the clone.
pub fn hold<'r>(rig: &'r Rig, on: &mut dyn FnMut(Progress)) -> Result<Held<'r>> {
    let lock = lock(rig, on)?;
    held(rig, lock, on)
}

/// [`hold`] without waiting: `None` while another landing holds the lock.
pub fn try_hold<'r>(rig: &'r Rig, on: &mut dyn FnMut(Progress)) -> Result<Option<Held<'r>>> {
    match fsio::try_lock_file(&lock_path(rig))? {
        Some(lock) => held(rig, lock, on).map(Some),
        None => Ok(None),
    }
}

fn held<'r>(rig: &'r Rig, lock: fsio::Lock, on: &mut dyn FnMut(Progress)) -> Result<Held<'r>> {
    let holding = git::hold_in_children(&lock);
    recover(rig, on)?;
    Ok(Held {
        rig,
        _holding: holding,
        _lock: lock,
    })
}

/// [`integrate_reviewed`] under a landing lock already held.
pub fn integrate_held(
    held: &Held,
    source: &Source,
    message: &str,
    run_tests: bool,
    review: &mut Review,
) -> Result<Outcome> {
    let rig = held.rig;
    let target = Target::check(rig)?;
    target.accepts(source)?;
    let clone = target.clone.as_path();
    let config = rig.config()?;
    let test_timeout = config.test_timeout();
    let test_command = if run_tests { config.test_command } else { None };
    git::fetch(clone, REMOTE, &[])?;
    let base = target.base()?;
    if !git::is_ancestor(clone, target.head, base)? {
        return Err(Error::conflict(format!(
            "{}: {} has commits that are not on {REMOTE}/{} (an unfinished landing?); push or reset them first",
            clone.display(),
            target.branch,
            target.branch
        )));
    }
    git::set_ref(clone, LANDING_BASE_REF, target.head)?;
    let mut undo = Undo {
        clone,
        restore_to: Some(target.head),
    };
    if target.head != base {
        git::restore(clone, base)?; // a fast-forward: the tree is clean
    }
    git::fetch(
        clone,
        &source.from,
        &[&format!("+refs/heads/{}:{LANDING_REF}", source.branch)],
    )?;
    let tip = git::resolve(clone, LANDING_REF)?
        .ok_or_else(|| Error::not_found(format!("{LANDING_REF} missing after fetch")))?;
    let (base_s, tip_s) = (base.to_string(), tip.to_string());
    if git::is_ancestor(clone, tip, base)? {
        return Ok(Outcome::UpToDate {
            base: base_s,
            tip: tip_s,
        });
    }
    let merge = if git::is_ancestor(clone, base, tip)? {
        MergeKind::FastForward
    } else {
        MergeKind::MergeCommit
    };
    if let Merged::Conflict(files) = git::merge(clone, LANDING_REF, message)? {
        return Ok(Outcome::Conflict {
            base: base_s,
            tip: tip_s,
            files,
        });
    }
    let head = git::resolve(clone, "HEAD")?
        .ok_or_else(|| Error::not_found(format!("{}: no HEAD after merge", clone.display())))?;
    let tests = match &test_command {
        Some(cmd) => {
            let run = run_test_command(clone, cmd, test_timeout)?;
            if !run.passed() {
                return Ok(Outcome::TestsFailed {
                    base: base_s,
                    tip: tip_s,
                    tests: run,
                });
            }
            Some(run)
        }
        None => None,
    };
    let ready = Ready {
        clone: clone.to_path_buf(),
        branch: target.branch.clone(),
        base: base_s.clone(),
        tip: tip_s.clone(),
        head: head.to_string(),
        merge,
        tests,
    };
    if let Some(Rejection { by, reason }) = review(&ready)? {
        return Ok(Outcome::Rejected {
            base: base_s,
            tip: tip_s,
            head: ready.head,
            by,
            reason,
        });
    }
    let tests = ready.tests;
    git::push(
        clone,
        REMOTE,
        &format!("{head}:refs/heads/{}", target.branch),
    )
    .map_err(|e| {
        Error::new(
            e.kind,
            format!(
                "{}; merge undone, nothing landed (if {REMOTE} moved meanwhile, run again)",
                e.message()
            ),
        )
    })?;
    // Pushed: keep the merge, drop only what the tests left (untracked files).
    undo.restore_to = Some(head);
    Ok(Outcome::Landed {
        branch: target.branch.clone(),
        merge,
        base: base_s,
        tip: tip_s,
        head: head.to_string(),
        tests,
    })
}

/// Origin's main (fetched now, under the landing lock) if it contains commit
/// `tip`: a landing of `tip` was pushed, though whoever pushed it may have died
/// before its follow-ups. `None` when it does not (or the commit is unknown).
pub fn on_origin(rig: &Rig, tip: &str, on: &mut dyn FnMut(Progress)) -> Result<Option<String>> {
    on_origin_held(&hold(rig, on)?, tip)
}

/// [`on_origin`] under a landing lock already held.
pub fn on_origin_held(held: &Held, tip: &str) -> Result<Option<String>> {
    let tip = Oid::from_str(tip).map_err(|e| Error::invalid(format!("tip {tip:?}: {e}")))?;
    let target = Target::check(held.rig)?;
    git::fetch(&target.clone, REMOTE, &[])?;
    let base = target.base()?;
    let objects = git::Objects::open(&[target.clone.as_path()])?;
    Ok((objects.contains(tip) && objects.is_ancestor(tip, base)?).then(|| base.to_string()))
}

/// How long a test run may take unless the rig's `test_timeout` says otherwise.
pub const DEFAULT_TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Run `command` with `sh -c` in `dir`, stdout and stderr into one pipe, in a
/// process group of its own that is killed after `timeout`: a hung test must
/// not hold the rig's landing lock for ever.
fn run_test_command(dir: &Path, command: &str, timeout: std::time::Duration) -> Result<TestRun> {
    let pipe_err = |e| Error::io(Path::new("<pipe>"), e);
    let (reader, writer) = std::io::pipe().map_err(pipe_err)?;
    let mut child = {
        // The Command owns our copies of the write end: dropped at the end of
        // this block, so the read below ends when the test's processes exit.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(pipe_err)?)
            .stderr(writer);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn()
            .map_err(|e| Error::new(Kind::Io, format!("cannot run sh -c {command:?}: {e}")))?
    };
    // The watchdog kills the whole group at the deadline, which also ends the
    // read below (every writer of the pipe is in the group).
    let (finished, watch) = std::sync::mpsc::channel::<()>();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = std::thread::spawn(move || {
        let expired = matches!(
            watch.recv_timeout(timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        if expired {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
        expired
    });
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded, so a test that prints megabytes without a newline costs
        // no memory: such a line is kept as pieces.
        let read = (&mut reader)
            .take(LINE_MAX)
            .read_until(b'\n', &mut line)
            .map_err(pipe_err)?;
        if read == 0 {
            break;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        let text = String::from_utf8_lossy(&line[..line.len().min(TAIL_WIDTH)]);
        tail.push_back(text.trim_end().to_string());
    }
    let status = child.wait().at(dir)?;
    let _ = finished.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    Ok(TestRun {
        command: command.to_string(),
        exit_code: status.code(),
        tail: tail.into(),
        timed_out: timed_out.then(|| format!("{timeout:?}")),
    })
}

/// What a merge would do, predicted without writing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "merge", rename_all = "snake_case")]
pub enum Predicted {
    FastForward,
    MergeCommit,
    UpToDate,
    Conflict { files: Vec<String> },
}

/// A landing as [`integrate`] would do it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The main clone's branch (origin's default branch).
    pub branch: String,
    /// Origin's branch the prediction is made against.
    pub base: String,
    /// Origin's branch now, when it has moved past `base` since the main
    /// clone's last fetch (the landing fetches first, so it may differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_now: Option<String>,
    pub tip: String,
    #[serde(flatten)]
    pub merge: Predicted,
    /// The test command that would run, if any.
    pub tests: Option<String>,
}

/// Predict [`integrate`] without changing anything on disk: the main clone is
/// checked, origin is asked (`ls-remote`), and the merge is tried in memory.
/// A source that is a remote is taken as the main clone last fetched it.
pub fn preview(rig: &Rig, source: &Source, run_tests: bool) -> Result<Plan> {
    let target = Target::check(rig)?;
    target.accepts(source)?;
    let clone = target.clone.as_path();
    let (tip, objects) = match source.local_repo() {
        Some(repo) => (
            git::resolve(repo, &format!("refs/heads/{}", source.branch))?
                .ok_or_else(|| no_branch(source))?,
            git::Objects::open(&[clone, repo])?,
        ),
        None => {
            let tracking = format!("refs/remotes/{}/{}", source.from, source.branch);
            let tip = git::resolve(clone, &tracking)?.ok_or_else(|| {
                Error::not_found(format!(
                    "{}: no {tracking} (a dry run does not fetch: git fetch {} first)",
                    clone.display(),
                    source.from
                ))
            })?;
            (tip, git::Objects::open(&[clone])?)
        }
    };
    let mut base = target.base()?;
    let mut origin_now = None;
    if let Some(now) = git::remote_branch(clone, REMOTE, &target.branch)?.filter(|n| *n != base) {
        if objects.contains(now) {
            base = now;
        } else {
            origin_now = Some(now.to_string());
        }
    }
    // A tip cannot contain a commit neither clone has seen: when origin moved
    // out of sight, only a merge commit is possible.
    let merge = if objects.is_ancestor(tip, base)? {
        Predicted::UpToDate
    } else if origin_now.is_none() && objects.is_ancestor(base, tip)? {
        Predicted::FastForward
    } else {
        match objects.conflicts(base, tip)? {
            files if files.is_empty() => Predicted::MergeCommit,
            files => Predicted::Conflict { files },
        }
    };
    Ok(Plan {
        branch: target.branch,
        base: base.to_string(),
        origin_now,
        tip: tip.to_string(),
        merge,
        tests: if run_tests {
            rig.config()?.test_command
        } else {
            None
        },
    })
}

fn no_branch(source: &Source) -> Error {
    Error::not_found(format!(
        "{}: no branch {} to land",
        source.from, source.branch
    ))
}

/// Options of `gt land --direct`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Skip the safety checks (session terminated, clone clean).
    pub force: bool,
    pub skip_tests: bool,
    /// Predict and report; change nothing.
    pub dry_run: bool,
}

/// A safety check on the polecat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `session` or `clean`.
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// The file or clone it looked at.
    pub at: PathBuf,
}

/// What `gt land --direct` did or, with `--dry-run`, would do.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub address: String,
    pub generation: u64,
    pub issue: Option<String>,
    pub branch: String,
    pub clone: PathBuf,
    pub main_clone: PathBuf,
    pub dry_run: bool,
    pub forced: bool,
    pub checks: Vec<Check>,
    /// Why the landing was (or would be) refused before touching anything.
    pub refused: Option<String>,
    /// With `--dry-run`: the prediction.
    pub plan: Option<Plan>,
    /// Without `--dry-run`: what the integration did.
    pub outcome: Option<Outcome>,
    /// Follow-ups done after landing, e.g. "closed issue r-12".
    pub done: Vec<String>,
    /// Follow-ups skipped or failed after landing; the landing itself stands.
    pub notes: Vec<String>,
    /// An earlier direct landing on the rig that died after recording its
    /// intent, finished (or dropped) before this one.
    pub interrupted: Option<Interrupted>,
}

impl Report {
    /// Why the work did not (or would not) land, in one line; `None` if it did.
    pub fn refusal(&self) -> Option<String> {
        if let Some(r) = &self.refused {
            return Some(r.clone());
        }
        if let Some(o) = &self.outcome {
            return o.refusal(&format!("{} ({})", self.address, self.branch));
        }
        let what = format!("{} ({})", self.address, self.branch);
        let plan = self.plan.as_ref()?;
        match &plan.merge {
            Predicted::UpToDate => Some(nothing_to_land(&what, &plan.tip)),
            Predicted::Conflict { files } => Some(format!(
                "cannot land {what}: merge conflict with origin's main in {}",
                files.join(", ")
            )),
            _ => None,
        }
    }
}

/// The polecat named by `spec` (`<rig>/<polecat>`): its rig and home.
fn polecat(town: &Town, spec: &str) -> Result<(Rig, Home)> {
    // A bare name is a polecat of the caller's rig, as for gt kill.
    let home = town.resolve(
        spec,
        Bare::Agent {
            role: crate::address::Role::Polecat,
            rig: None,
        },
    )?;
    let Address::Polecat { rig, .. } = &home.address else {
        return Err(Error::invalid(format!(
            "{spec} is the {}, not a polecat: gt land --direct takes <rig>/<polecat>",
            home.address.role()
        )));
    };
    Ok((town.rig(rig)?, home))
}

/// `gt land --direct <rig>/<polecat>`: land the polecat's branch on the rig's
/// main through the Refinery's clone, bypassing the merge queue.
pub fn direct(
    town: &Town,
    spec: &str,
    opts: Options,
    on: &mut dyn FnMut(Progress),
) -> Result<Report> {
    let (rig, home) = polecat(town, spec)?;
    let state = home.state()?;
    let crate::polecat::Work {
        clone: repo,
        branch,
    } = crate::polecat::work(&home, &state)?;
    let source = Source {
        from: repo.to_string_lossy().into_owned(),
        branch,
    };
    let has_branch = git::resolve(&repo, &format!("refs/heads/{}", source.branch))?.is_some();
    // Gone because a landing of it died after deleting it: finished below.
    let resumed = || {
        fsio::read_json::<Intent>(&intent_path(&rig))
            .is_ok_and(|i| (&i.polecat, &i.branch) == (&home.address.to_string(), &source.branch))
    };
    if !has_branch && !resumed() {
        return Err(no_branch(&source));
    }

    let alive = crate::session::state_alive(&state);
    let dirty = git::dirty_files(&repo)?;
    let checks = vec![
        Check {
            name: "session",
            ok: !alive,
            detail: match (&state.session, alive) {
                (Some(id), true) => format!("session {id} is running"),
                (Some(id), false) => format!("session {id} has ended"),
                (None, _) => "no session".into(),
            },
            at: home.state_path(),
        },
        Check {
            name: "clean",
            ok: dirty.is_empty(),
            detail: if dirty.is_empty() {
                "clone is clean".into()
            } else {
                format!("uncommitted changes in {}", list(&dirty))
            },
            at: repo.clone(),
        },
    ];
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let refused = (!opts.force && !failed.is_empty()).then(|| {
        format!(
            "refusing to land {}: {} (--force skips these checks)",
            home.address,
            failed
                .iter()
                .map(|c| format!("{} in {}", c.detail, c.at.display()))
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    let mut report = Report {
        address: home.address.to_string(),
        generation: state.generation,
        issue: state.issue.clone(),
        branch: source.branch.clone(),
        clone: repo.clone(),
        main_clone: rig.main_clone(),
        dry_run: opts.dry_run,
        forced: opts.force,
        checks,
        refused,
        plan: None,
        outcome: None,
        done: Vec::new(),
        notes: Vec::new(),
        interrupted: None,
    };
    if opts.dry_run {
        if intent_path(&rig).exists() {
            report.notes.push(format!(
                "{}: an interrupted landing's record; this landing finishes or drops it first",
                intent_path(&rig).display()
            ));
        }
        report.plan = Some(preview(&rig, &source, !opts.skip_tests)?);
        return Ok(report);
    }
    if report.refused.is_some() {
        return Ok(report);
    }
    let message = format!(
        "Land {} from {}{}\n\nLanded directly by gt land --direct (generation {}).",
        source.branch,
        home.address,
        state
            .issue
            .as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default(),
        state.generation
    );
    let held = hold(&rig, on)?;
    report.interrupted = finish_interrupted(town, &held)?;
    if let Some(i) = &report.interrupted
        && i.pushed.is_some()
        && (&i.intent.polecat, &i.intent.branch, i.intent.generation)
            == (&report.address, &report.branch, report.generation)
    {
        return Ok(report); // that landing was this one: done now
    }
    if !has_branch {
        return Err(no_branch(&source));
    }
    let path = intent_path(&rig);
    let mut intent = None;
    let mut record = |ready: &Ready| -> Result<Option<Rejection>> {
        let i = Intent {
            polecat: report.address.clone(),
            generation: report.generation,
            issue: report.issue.clone(),
            branch: source.branch.clone(),
            clone: repo.clone(),
            keep_branch: report.checks.iter().any(|c| !c.ok),
            main: ready.branch.clone(),
            merge: ready.merge,
            base: ready.base.clone(),
            tip: ready.tip.clone(),
            head: ready.head.clone(),
            at: crate::clock::now_string(),
            extra: Extra::new(),
        };
        fsio::write_json(&path, &i)?;
        intent = Some(i);
        Ok(None)
    };
    let landed = integrate_held(&held, &source, &message, !opts.skip_tests, &mut record);
    let outcome = match landed {
        Ok(o) => o,
        Err(e) => {
            // The push failed after the intent was recorded: origin says
            // whether it landed after all. If origin cannot be asked, the
            // record stays for the next landing.
            if intent.is_some()
                && let Err(again) = finish_interrupted(town, &held)
            {
                tracing::warn!("{}: kept: {again}", path.display());
            }
            return Err(e);
        }
    };
    if let Some(i) = &intent {
        follow_up(town, &rig, i, false, &mut report.done, &mut report.notes);
        if let Err(e) = remove_intent(&path) {
            report.notes.push(e.to_string());
        }
    }
    report.outcome = Some(outcome);
    Ok(report)
}

/// `<rig>/refinery/landing.json`: a direct landing's record of intent,
/// written under the landing lock just before its push and removed after its
/// follow-ups (protocol/land.md, "A direct landing killed after its push").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The polecat's address, `<rig>/<name>`.
    pub polecat: String,
    pub generation: u64,
    #[serde(default)]
    pub issue: Option<String>,
    /// The polecat's branch, and the clone it is fetched from.
    pub branch: String,
    pub clone: PathBuf,
    /// A safety check failed and `--force` overrode it: keep the branch.
    #[serde(default)]
    pub keep_branch: bool,
    /// Origin's branch pushed to.
    pub main: String,
    pub merge: MergeKind,
    pub base: String,
    pub tip: String,
    /// The commit pushed: origin's `main` once the push is done.
    pub head: String,
    /// When it was recorded.
    pub at: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where a direct landing records its [`Intent`].
pub fn intent_path(rig: &Rig) -> PathBuf {
    rig.path.join("refinery/landing.json")
}

/// The [`Intent`] a direct landing left when it died, while no landing holds
/// the lock (for `gt doctor`; a live landing's record is its own). Nothing is
/// created: with no landing lock file, no landing holds it.
pub fn interrupted(rig: &Rig) -> Result<Option<Intent>> {
    let path = intent_path(rig);
    let lock = lock_path(rig);
    if !path.exists() || lock.exists() && fsio::try_lock_file(&lock)?.is_none() {
        return Ok(None);
    }
    fsio::read_json(&path).map(Some)
}

/// Remove a finished landing's record. Left behind, it costs the next
/// landing a check of origin and a repeat of follow-ups that change nothing.
fn remove_intent(path: &Path) -> Result<()> {
    crate::confine::remove_file(path).map_err(|e| {
        Error::new(
            Kind::Io,
            format!(
                "{}: cannot remove the record of a finished landing ({e})",
                path.display()
            ),
        )
    })?;
    fsio::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// A direct landing that died after recording its [`Intent`], as the next
/// landing found it.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    pub intent: Intent,
    /// Origin's main when the push had reached it: its follow-ups were done
    /// now. `None`: it had not, nothing landed; the record was dropped.
    pub pushed: Option<String>,
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.intent;
        let what = format!(
            "{}'s landing ({} at {})",
            i.polecat,
            i.branch,
            short(&i.tip)
        );
        match &self.pushed {
            Some(_) => write!(
                f,
                "finished {what}: pushed as {} by an interrupted run",
                short(&i.head)
            ),
            None => write!(
                f,
                "dropped {what}: an interrupted run that never reached origin; nothing of it landed"
            ),
        }
    }
}

/// Finish the direct landing whose [`Intent`] is left (its writer is gone:
/// the caller holds the landing lock): if its head is on origin's main, do
/// its follow-ups, skipping mail already delivered; then drop the record.
/// `None` when there is none.
pub fn finish_interrupted(town: &Town, held: &Held) -> Result<Option<Interrupted>> {
    let path = intent_path(held.rig);
    if !path.exists() {
        return Ok(None);
    }
    let intent: Intent = fsio::read_json(&path)?;
    check_intent(town, &path, &intent)?;
    let pushed = on_origin_held(held, &intent.head)?;
    let (mut done, mut notes) = (Vec::new(), Vec::new());
    if pushed.is_some() {
        follow_up(town, held.rig, &intent, true, &mut done, &mut notes);
    }
    remove_intent(&path)?;
    Ok(Some(Interrupted {
        intent,
        pushed,
        done,
        notes,
    }))
}

/// A record is a file any agent can write: its follow-ups act only on the
/// clone of the polecat it names and on a branch that is not origin's own.
fn check_intent(town: &Town, path: &Path, intent: &Intent) -> Result<()> {
    let home = town.home(&intent.polecat.parse()?)?;
    if intent.clone != home.clone_dir() {
        return Err(Error::invalid(format!(
            "{}: its clone {} is not {}'s clone {}; refused (remove the record once you know where it came from)",
            path.display(),
            intent.clone.display(),
            intent.polecat,
            home.clone_dir().display()
        )));
    }
    refuse_branch(&intent.branch, &intent.main).map_err(|e| e.context(path.display()))
}

/// After a push: close the issue, delete the branch, mail the witness and the
/// mayor. Failures become notes: the work has landed whatever happens here.
/// `resumed`: finishing a landing that died after its push, which may have
/// mailed already (the mail's ids are made from the pushed commit).
fn follow_up(
    town: &Town,
    rig: &Rig,
    landed: &Intent,
    resumed: bool,
    done: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let Intent {
        polecat,
        issue,
        branch,
        tip,
        head,
        main,
        merge,
        ..
    } = landed;
    if let Some(issue) = issue {
        let reason = format!("landed {head} by gt land --direct");
        match crate::beads::open(rig).and_then(|t| t.close(issue, Some(&reason))) {
            Ok(_) => done.push(format!("closed issue {issue}")),
            Err(e) => notes.push(format!("issue {issue} left open: {e}")),
        }
    }
    let source = Source {
        from: landed.clone.to_string_lossy().into_owned(),
        branch: branch.clone(),
    };
    match delete_branch(rig, &source, tip, head, landed.keep_branch) {
        Ok(d) => done.extend(d),
        Err(e) => notes.push(format!("branch {branch} kept: {e}")),
    }
    let from = crate::mail::identity(town, None).unwrap_or(Address::Overseer);
    let subject = format!("landed {polecat} ({}) on {main}", short(head));
    let body = format!(
        "{branch} of {polecat} landed directly on {main} as {} ({}) by gt land --direct{}{}.",
        short(head),
        match merge {
            MergeKind::FastForward => "fast-forward",
            MergeKind::MergeCommit => "merge commit",
        },
        issue
            .as_deref()
            .map(|i| format!("; issue {i}"))
            .unwrap_or_default(),
        if resumed {
            " (pushed by an interrupted run, finished by the next)"
        } else {
            ""
        }
    );
    for to in [
        Address::Witness {
            rig: rig.name.clone(),
        },
        Address::Mayor,
    ] {
        let to = to.to_string();
        let mut m = Message::new(&from, &to, &subject, &body);
        m.id = format!("msg-landed-{head}-{}", to.replace('/', "-"));
        if resumed && crate::mail::delivered(town, &to, &m.id) {
            done.push(format!("{to} was mailed by an interrupted run"));
            continue;
        }
        m.kind = "landed".into();
        m.generation = Some(landed.generation);
        for (k, v) in [
            ("polecat", polecat.clone().into()),
            ("issue", issue.clone().into()),
            ("branch", branch.clone().into()),
            ("tip", tip.clone().into()),
            ("sha", head.clone().into()),
        ] {
            m.extra.insert(k.into(), v);
        }
        // One post per recipient: a missing home must not cost the other its mail.
        match crate::mail::post(town, &mut [m], fsio::Durability::from_env()) {
            Ok(()) => done.push(format!("mailed {to}")),
            Err(e) => notes.push(format!("could not mail {to}: {e}")),
        }
    }
}

/// Delete the landed branch where it is no longer needed: in the polecat's
/// clone (HEAD is detached at the same commit, so no file changes) unless the
/// polecat may still be working (`busy`) or the branch moved since it was
/// fetched; and on origin if it was pushed there and is now fully landed.
fn delete_branch(
    rig: &Rig,
    source: &Source,
    tip: &str,
    head: &str,
    busy: bool,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let repo = source
        .local_repo()
        .ok_or_else(|| Error::invalid(format!("{} is not a local clone", source.from)))?;
    if busy {
        return Err(Error::conflict(format!(
            "{} was landed with --force while its polecat may still be working",
            repo.display()
        )));
    }
    let refname = format!("refs/heads/{}", source.branch);
    match git::resolve(repo, &refname)?.map(|o| o.to_string()) {
        // Gone already: deleted by the landing that died after its push.
        None => {}
        Some(now) if now != tip => {
            return Err(Error::conflict(format!(
                "it moved in {} since it was fetched",
                repo.display()
            )));
        }
        Some(_) => {
            git::delete_branch(repo, &source.branch)?;
            done.push(format!(
                "deleted branch {} in {}",
                source.branch,
                repo.display()
            ));
        }
    }
    let clone = rig.main_clone();
    let tracking = format!("refs/remotes/{REMOTE}/{}", source.branch);
    if let Some(pushed) = git::resolve(&clone, &tracking)? {
        let head = Oid::from_str(head).map_err(|e| Error::invalid(e.message().to_string()))?;
        if git::is_ancestor(&clone, pushed, head)? {
            git::push(&clone, REMOTE, &format!(":refs/heads/{}", source.branch))?;
            done.push(format!("deleted branch {} on {REMOTE}", source.branch));
        }
    }
    Ok(done)
}
