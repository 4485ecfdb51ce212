//! Git operations. Network operations (clone, fetch, push) run the `git` program,
//! so https, ssh, credential helpers and the user's config all work as they do in
//! a shell; git2 (built without OpenSSL) inspects local repositories.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use git2::{Oid, Repository};

use crate::error::{Error, IoContext, Kind, Result};

/// Run `git` with `args` in `dir` (or the current directory) and return stdout.
/// Failures become one line: `git <first arg>: <git's last stderr line>`.
pub fn run(dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let out = output(dir, args)?;
    if !out.status.success() {
        return Err(failure(args, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `git` and return its whole output, whatever its exit status.
fn output(dir: Option<&Path>, args: &[&str]) -> Result<Output> {
    command(dir, args)?.output().map_err(cannot_run)
}

fn cannot_run(e: std::io::Error) -> Error {
    Error::new(Kind::Io, format!("cannot run git: {e}"))
        .with_hint("install git: apt-get install -y git")
}

/// `git` with `args` in `dir`, its output piped.
fn command(dir: Option<&Path>, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new("git");
    let held = HELD.load(Ordering::SeqCst);
    if held >= 0 {
        // SAFETY: fcntl is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::fcntl::fcntl(
                    std::os::fd::BorrowedFd::borrow_raw(held),
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map(drop)
                .map_err(std::io::Error::from)
            });
        }
    }
    if let Some(d) = dir {
        check_inside(d)?;
        cmd.current_dir(d);
        // A clone's own config must not take git's writes out of the town:
        // its work tree is the directory it is in, whatever `core.worktree`
        // says. (Hooks run as configured: whoever can write them can run
        // commands anyway, and a person's pre-push hook is a feature.)
        if crate::confine::is_confined(d) && crate::confine::metadata(&d.join(".git")).is_ok() {
            cmd.arg("-c").arg(format!("core.worktree={}", d.display()));
        }
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::debug!(?dir, ?args, "git");
    Ok(cmd)
}

/// Run `cmd` (git with `--progress`), showing its progress on one line of
/// our stderr, redrawn (`label: <git's latest progress>`) and cleared at the
/// end; its whole stderr is still returned, for the error message.
fn output_showing(mut cmd: Command, label: &str) -> Result<Output> {
    use std::io::{Read, Write};
    let mut child = cmd.spawn().map_err(cannot_run)?;
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let mut term = std::io::stderr().lock();
    let (mut captured, mut line, mut buf) = (Vec::new(), Vec::new(), [0u8; 4096]);
    let mut draw = |line: &[u8]| {
        let text: String = String::from_utf8_lossy(line).chars().take(100).collect();
        let _ = write!(term, "\r\x1b[K{label}: {}", text.trim());
        let _ = term.flush();
    };
    draw(b"");
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        captured.extend_from_slice(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if !line.is_empty() {
                    draw(&line);
                    line.clear();
                }
            } else {
                line.push(b);
            }
        }
    }
    let _ = write!(term, "\r\x1b[K");
    let mut out = child.wait_with_output().map_err(cannot_run)?;
    out.stderr = captured;
    Ok(out)
}

/// git's line naming a lock file in its way: its last line ("remove the file
/// manually to continue") does not name the file.
fn lock_in_the_way(stderr: &str) -> Option<&str> {
    let line = stderr.lines().find(|l| l.contains("Unable to create '"))?;
    Some(
        line.trim()
            .trim_start_matches("remote: ")
            .trim_start_matches("fatal: "),
    )
}

fn failure(args: &[&str], out: &Output) -> Error {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = lock_in_the_way(&stderr)
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("failed")
        .trim();
    let last = last.strip_prefix("fatal: ").unwrap_or(last);
    Error::new(
        Kind::Io,
        format!("git {}: {last}", args.first().unwrap_or(&"")),
    )
}

/// The fd of the lock every git child holds too ([`hold_in_children`]); -1: none.
static HELD: AtomicI32 = AtomicI32::new(-1);

/// Until dropped, every git process started here inherits `lock` (its
/// `flock` stays held while any of them lives): a git left running by a
/// killed landing keeps the landing lock, so whoever gets the lock next
/// knows that no git works in the clone and its lock files are stale.
pub fn hold_in_children(lock: &crate::fsio::Lock) -> Holding {
    use std::os::fd::{AsFd, AsRawFd};
    HELD.store(lock.as_fd().as_raw_fd(), Ordering::SeqCst);
    Holding(())
}

/// See [`hold_in_children`].
pub struct Holding(());

impl Drop for Holding {
    fn drop(&mut self) {
        HELD.store(-1, Ordering::SeqCst);
    }
}

/// Clone `url` (any URL git accepts, or a local path) into `dest`.
pub fn clone(url: &str, dest: &Path) -> Result<()> {
    let dest_s = dest
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{}: path is not UTF-8", dest.display())))?;
    crate::confine::check(dest).at(dest)?;
    // Progress only for a person watching: nothing when stderr is not a terminal.
    let out = if std::io::stderr().is_terminal() {
        let args = ["clone", "--progress", "--", url, dest_s];
        output_showing(command(None, &args)?, &format!("cloning {url}"))?
    } else {
        output(None, &["clone", "--quiet", "--", url, dest_s])?
    };
    if !out.status.success() {
        let e = failure(&["clone"], &out);
        return Err(Error::new(
            e.kind,
            format!("cannot clone {url}: {}", e.message()),
        ));
    }
    Ok(())
}

/// Whether the work tree at `dir` has no uncommitted changes and no untracked
/// files (ignored files do not count).
pub fn is_clean(dir: &Path) -> Result<bool> {
    Ok(dirty_files(dir)?.is_empty())
}

/// Commits on any of `revs` (`HEAD`, `refs/heads/<branch>`) in `dir` that
/// no `origin` ref has: a worker's work not yet on origin (revs that do not
/// exist count nothing; 0 when the count cannot be read as a number).
pub fn commits_ahead(dir: &Path, revs: &[&str]) -> Result<u64> {
    let repo = open(dir)?;
    let mut args = vec!["rev-list", "--count"];
    for rev in revs {
        match repo.refname_to_id(rev) {
            Ok(_) => args.push(rev),
            Err(e) if e.code() == git2::ErrorCode::NotFound => {}
            Err(e) => return Err(in_repo(dir, e)),
        }
    }
    if args.len() == 2 {
        return Ok(0);
    }
    args.extend(["--not", "--remotes=origin", "--"]);
    Ok(run(Some(dir), &args)?.trim().parse().unwrap_or(0))
}

/// The paths (relative to the work tree) with uncommitted changes or untracked,
/// not ignored; empty when the work tree is clean.
pub fn dirty_files(dir: &Path) -> Result<Vec<String>> {
    let repo = open(dir)?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .include_ignored(false)
        .recurse_untracked_dirs(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(|e| in_repo(dir, e))?;
    Ok(statuses
        .iter()
        .map(|s| String::from_utf8_lossy(s.path_bytes()).into_owned())
        .collect())
}

/// Open the repository at `dir` (a work tree or a bare repository).
pub fn open(dir: &Path) -> Result<Repository> {
    check_inside(dir)?;
    let repo = Repository::open(dir).map_err(|e| {
        Error::invalid(format!(
            "{}: not a git repository ({})",
            dir.display(),
            e.message()
        ))
    })?;
    // libgit2 takes the work tree from the config (`core.worktree`): one
    // elsewhere would be read, and checked out into, as this clone's.
    if let Some(tree) = repo.workdir()
        && crate::confine::is_confined(dir)
        && std::fs::canonicalize(tree).ok() != std::fs::canonicalize(dir).ok()
    {
        return Err(Error::invalid(format!(
            "{}: its git config puts its work tree at {}; refused",
            dir.display(),
            tree.components().as_path().display()
        )));
    }
    Ok(repo)
}

/// Git works in a clone of the town only if its real path, and its `.git`'s,
/// is inside the town (protocol/README.md, "Confinement"): git follows links
/// by name, so this is a check at the moment of use. So are the repository
/// a `.git` file names (`gitdir:`) and the common dir a linked work tree's
/// repository names (`commondir`): git writes there too.
pub fn check_inside(dir: &Path) -> Result<()> {
    let dotgit = dir.join(".git");
    for p in [dir, &dotgit] {
        crate::confine::check(p).at(p)?;
    }
    if !crate::confine::is_confined(dir) {
        return Ok(());
    }
    let mut repo = dotgit.clone();
    if let Some(to) = pointer(&dotgit, "gitdir: ") {
        inside(&dotgit, &to)?;
        repo = to;
    }
    let commondir = repo.join("commondir");
    if let Some(to) = pointer(&commondir, "") {
        inside(&commondir, &to)?;
    }
    // Objects borrowed from another repository are read (and fetched on)
    // as the clone's own.
    let alternates = repo.join("objects/info/alternates");
    if let Ok(text) = crate::confine::read(&alternates) {
        for line in String::from_utf8_lossy(&text).lines() {
            let to = line.trim();
            if !to.is_empty() && !to.starts_with('#') {
                inside(&alternates, &repo.join("objects").join(to))?;
            }
        }
    }
    if crate::confine::metadata(&repo.join("objects/info/http-alternates")).is_ok() {
        return Err(Error::invalid(format!(
            "{}: borrows objects over http; refused",
            repo.join("objects/info/http-alternates").display()
        )));
    }
    Ok(())
}

/// Refuse a repository whose `.git` holds a symlink out of the town (its
/// `objects/`, a reflog): git follows them, reading and writing there. A
/// walk of the whole `.git`, so for a landing's two repositories, not for
/// every command.
pub fn check_links(dir: &Path) -> Result<()> {
    match crate::confine::first_link_out(&dir.join(".git")) {
        Some((link, target)) => Err(Error::invalid(format!(
            "{}: {} is a symlink to {}, out of the town; refused",
            dir.display(),
            link.display(),
            target.display()
        ))),
        None => Ok(()),
    }
}

/// Where git pointer file `file` sends git (its first line after `prefix`,
/// against `file`'s directory); `None` when it is not such a file.
fn pointer(file: &Path, prefix: &str) -> Option<std::path::PathBuf> {
    let text = crate::confine::read(file).ok()?;
    let line = std::str::from_utf8(&text).ok()?.lines().next()?;
    let to = line.strip_prefix(prefix)?.trim_end();
    (!to.is_empty()).then(|| file.parent().unwrap_or(file).join(to))
}

/// Refuse pointer `file` unless `to` resolves inside `file`'s town.
fn inside(file: &Path, to: &Path) -> Result<()> {
    // Named with `..` folded; the resolution beneath the root decides.
    let named = crate::confine::resolve_lexically(Path::new("/"), to);
    if !crate::confine::is_confined(&named) {
        return Err(Error::invalid(format!(
            "{}: points git at {}, out of the town; refused",
            file.display(),
            named.display()
        )));
    }
    crate::confine::check(to).at(file)
}

fn in_repo(dir: &Path, e: git2::Error) -> Error {
    Error::new(Kind::Io, format!("{}: {}", dir.display(), e.message()))
}

/// `git checkout -b <branch>` in a clone whose work tree is at HEAD, without
/// a `git` process: `branch` made at HEAD's commit (none while HEAD is
/// unborn) and HEAD pointed at it; the work tree is untouched.
pub fn start_branch(dir: &Path, branch: &str) -> Result<()> {
    let repo = open(dir)?;
    if let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) {
        repo.branch(branch, &head, false)
            .map_err(|e| in_repo(dir, e))?;
    }
    repo.set_head(&format!("refs/heads/{branch}"))
        .map_err(|e| in_repo(dir, e))
}

/// The commit `refname` (e.g. `refs/heads/main`) points at, if it exists.
pub fn resolve(dir: &Path, refname: &str) -> Result<Option<Oid>> {
    let repo = open(dir)?;
    match repo.refname_to_id(refname) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(in_repo(dir, e)),
    }
}

/// The branch HEAD is on (`main`), or `None` when HEAD is detached.
pub fn current_branch(dir: &Path) -> Result<Option<String>> {
    let repo = open(dir)?;
    let head = repo.find_reference("HEAD").map_err(|e| in_repo(dir, e))?;
    Ok(head
        .symbolic_target()
        .ok()
        .flatten()
        .and_then(|t| t.strip_prefix("refs/heads/"))
        .map(str::to_string))
}

/// Whether `ancestor` is `commit` or one of its ancestors.
pub fn is_ancestor(dir: &Path, ancestor: Oid, commit: Oid) -> Result<bool> {
    if ancestor == commit {
        return Ok(true);
    }
    open(dir)?
        .graph_descendant_of(commit, ancestor)
        .map_err(|e| in_repo(dir, e))
}

/// The branch `remote`'s HEAD names (`main`), as recorded by clone in
/// `refs/remotes/<remote>/HEAD`, else as the remote reports it now.
pub fn default_branch(dir: &Path, remote: &str) -> Result<String> {
    let repo = open(dir)?;
    let local = format!("refs/remotes/{remote}/HEAD");
    if let Ok(r) = repo.find_reference(&local)
        && let Ok(Some(t)) = r.symbolic_target()
        && let Some(b) = t.strip_prefix(&format!("refs/remotes/{remote}/"))
    {
        return Ok(b.to_string());
    }
    let out = run(Some(dir), &["ls-remote", "--symref", "--", remote, "HEAD"])?;
    out.lines()
        .find_map(|l| l.strip_prefix("ref: refs/heads/")?.split('\t').next())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::not_found(format!(
                "{}: cannot tell {remote}'s default branch (its HEAD names no branch)",
                dir.display()
            ))
        })
}

/// The branch a fresh clone of `url` at `clone` checked out: origin's HEAD,
/// which every landing and new polecat branch starts from. An origin whose
/// HEAD names a branch it does not have (`git init --bare`'s `master` with
/// only `main` pushed), or that has no branch at all, is refused here, before
/// a rig is made on an unborn checkout.
pub fn checked_out_default(clone: &Path, url: &str) -> Result<String> {
    if let Ok(branch) = default_branch(clone, "origin") {
        return Ok(branch);
    }
    let names = run(Some(clone), &["symbolic-ref", "--short", "HEAD"]).unwrap_or_default();
    let branches = run(
        Some(clone),
        &[
            "for-each-ref",
            "--format=%(refname:strip=3)",
            "refs/remotes/origin",
        ],
    )?;
    let branches: Vec<&str> = branches.lines().filter(|b| *b != "HEAD").collect();
    let Some(first) = branches.iter().find(|b| **b == "main").or(branches.first()) else {
        return Err(Error::invalid(format!(
            "{url}: has no branch yet; push a first commit to it"
        )));
    };
    // The fix is a command only where origin is a directory here.
    let fix = if Path::new(url).is_dir() {
        format!("git --git-dir={url} symbolic-ref HEAD refs/heads/{first}")
    } else {
        format!("make {first} its default branch where it is hosted")
    };
    Err(Error::invalid(format!(
        "{url}: its HEAD names branch {:?}, which it does not have (it has: {}); \
         point HEAD at one: {fix}",
        names.trim(),
        branches.join(", ")
    )))
}

/// The commit branch `branch` of `remote` points at now, asked over the network
/// without fetching (nothing is written).
pub fn remote_branch(dir: &Path, remote: &str, branch: &str) -> Result<Option<Oid>> {
    let refname = format!("refs/heads/{branch}");
    let out = run(Some(dir), &["ls-remote", "--", remote, &refname])?;
    Ok(out
        .lines()
        .find_map(|l| l.split_once('\t').filter(|(_, r)| *r == refname))
        .and_then(|(sha, _)| Oid::from_str(sha).ok()))
}

/// `git fetch` from `source` (a remote name, URL or path) into `dir`, without
/// tags and without writing FETCH_HEAD.
pub fn fetch(dir: &Path, source: &str, refspecs: &[&str]) -> Result<()> {
    let mut args = vec![
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        source,
    ];
    args.extend(refspecs);
    run(Some(dir), &args)?;
    Ok(())
}

/// `git push <remote> <refspec>`. A refused ref is named with git's reason:
/// `git push: refs/heads/main rejected by origin: [remote rejected]
/// (pre-receive hook declined)`.
pub fn push(dir: &Path, remote: &str, refspec: &str) -> Result<()> {
    let args = ["push", "--porcelain", "--", remote, refspec];
    let out = output(Some(dir), &args)?;
    if out.status.success() {
        return Ok(());
    }
    // Porcelain lines: `<flag>\t<from>:<to>\t<summary>`; `!` is a refusal.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let refused = stdout.lines().find_map(|l| {
        let mut f = l.strip_prefix("!\t")?.split('\t');
        let to = f.next()?.rsplit(':').next()?;
        let why = f.next()?;
        Some(
            match lock_in_the_way(&String::from_utf8_lossy(&out.stderr)) {
                Some(lock) => format!("{to} rejected by {remote}: {why}: {lock}"),
                None => format!("{to} rejected by {remote}: {why}"),
            },
        )
    });
    Err(match refused {
        Some(why) => Error::new(Kind::Conflict, format!("git push: {why}")),
        None => failure(&args, &out),
    })
}

/// What [`merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// HEAD now has the commit: fast-forward or a new merge commit.
    Done,
    /// The merge conflicted in these paths and was aborted: HEAD, index and
    /// work tree are as they were.
    Conflict(Vec<String>),
}

/// Merge `rev` into the branch checked out in `dir`: fast-forward when possible,
/// else a merge commit with `message`. Needs a clean work tree. A committer
/// identity is supplied when the user has configured none.
pub fn merge(dir: &Path, rev: &str, message: &str) -> Result<Merged> {
    let mut args = identity_args(dir)?;
    args.extend(["merge", "--ff", "--no-edit", "--quiet", "-m", message, rev]);
    let out = output(Some(dir), &args)?;
    if out.status.success() {
        return Ok(Merged::Done);
    }
    let repo = open(dir)?;
    if repo.state() != git2::RepositoryState::Merge {
        return Err(failure(&["merge"], &out));
    }
    let files = run(Some(dir), &["diff", "--name-only", "--diff-filter=U", "-z"])?;
    run(Some(dir), &["merge", "--abort"])?;
    Ok(Merged::Conflict(
        files
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

/// `-c user.name=.. -c user.email=..` for commits made by the tools, unless the
/// environment or git config already name someone.
fn identity_args(dir: &Path) -> Result<Vec<&'static str>> {
    let configured = open(dir)?
        .config()
        .and_then(|c| c.get_string("user.email"))
        .is_ok();
    let from_env = ["GIT_COMMITTER_EMAIL", "EMAIL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    Ok(if configured || from_env {
        Vec::new()
    } else {
        vec![
            "-c",
            "user.name=Gas Town",
            "-c",
            "user.email=gastown@localhost",
        ]
    })
}

/// Put the checked-out branch of `dir` back to `rev`: abort a merge in
/// progress, `reset --hard`, and remove untracked files (not ignored ones,
/// so build caches survive).
pub fn restore(dir: &Path, rev: Oid) -> Result<()> {
    if open(dir)?.state() == git2::RepositoryState::Merge {
        run(Some(dir), &["merge", "--abort"])?;
    }
    run(Some(dir), &["reset", "--quiet", "--hard", &rev.to_string()])?;
    run(Some(dir), &["clean", "--quiet", "-fd"])?;
    Ok(())
}

/// Point ref `refname` of `dir` at `rev`, creating it if needed.
pub fn set_ref(dir: &Path, refname: &str, rev: Oid) -> Result<()> {
    run(Some(dir), &["update-ref", refname, &rev.to_string()])?;
    Ok(())
}

/// Delete ref `refname` in `dir` if it exists.
pub fn delete_ref(dir: &Path, refname: &str) -> Result<()> {
    run(Some(dir), &["update-ref", "-d", refname])?;
    Ok(())
}

/// Delete local branch `branch` of `dir`; if it is checked out, HEAD is first
/// detached at the same commit, so no file in the work tree changes.
pub fn delete_branch(dir: &Path, branch: &str) -> Result<()> {
    if current_branch(dir)?.as_deref() == Some(branch) {
        run(Some(dir), &["checkout", "--quiet", "--detach"])?;
    }
    run(Some(dir), &["branch", "--quiet", "-D", "--", branch])?;
    Ok(())
}

/// A read-only view of the objects of several repositories (a main clone and a
/// polecat's clone), for predicting a merge: objects are read from disk, and
/// anything a merge writes stays in memory, so nothing on disk changes.
pub struct Objects {
    repo: Repository,
}

fn mem_err(e: git2::Error) -> Error {
    Error::new(Kind::Io, format!("in-memory merge: {}", e.message()))
}

impl Objects {
    pub fn open(repos: &[&Path]) -> Result<Objects> {
        let odb = git2::Odb::new().map_err(mem_err)?;
        for dir in repos {
            let objects = open(dir)?.commondir().join("objects");
            odb.add_disk_alternate(&objects.to_string_lossy())
                .map_err(|e| in_repo(dir, e))?;
        }
        // Writes go to the highest-priority backend: memory, never the disk.
        odb.add_new_mempack_backend(1000).map_err(mem_err)?;
        Ok(Objects {
            repo: Repository::from_odb(odb).map_err(mem_err)?,
        })
    }

    pub fn contains(&self, id: Oid) -> bool {
        self.repo.odb().is_ok_and(|o| o.exists(id))
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Oid, commit: Oid) -> Result<bool> {
        Ok(ancestor == commit
            || self
                .repo
                .graph_descendant_of(commit, ancestor)
                .map_err(mem_err)?)
    }

    /// The paths a merge of `theirs` into `ours` would conflict in.
    pub fn conflicts(&self, ours: Oid, theirs: Oid) -> Result<Vec<String>> {
        let (a, b) = (
            self.repo.find_commit(ours).map_err(mem_err)?,
            self.repo.find_commit(theirs).map_err(mem_err)?,
        );
        let index = self.repo.merge_commits(&a, &b, None).map_err(mem_err)?;
        let mut files = Vec::new();
        for c in index.conflicts().map_err(mem_err)? {
            let c = c.map_err(mem_err)?;
            if let Some(e) = c.our.or(c.their).or(c.ancestor) {
                files.push(String::from_utf8_lossy(&e.path).into_owned());
            }
        }
        files.dedup();
        Ok(files)
    }
}
