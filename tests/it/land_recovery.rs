//! A refinery killed (`kill -9`, with its whole process group, or alone) at
//! every ref update of a landing, in the refinery clone and in origin, while
//! git holds its lock files: a hook parks git inside the ref transaction on a
//! FIFO. The next normal run recovers and finishes the queue: every entry
//! merged exactly once, origin's main with each commit once.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::common::{TestEnv, fifo, git, read_fifo, write_fifo};
use crate::queue::{files, rig_with_work};

/// `<test dir>/hook/`, with the FIFOs [`park_hook`] talks through.
fn hook_dir(env: &TestEnv) -> PathBuf {
    let dir = env.path().join("hook");
    std::fs::create_dir(&dir).unwrap();
    fifo(&dir.join("signal"));
    fifo(&dir.join("hold"));
    dir
}

/// Install git hook `name` in `hooks`: it counts its calls in `<dir>/count`,
/// logs each as `<label> <$1> <refs>` (the third field of each stdin line:
/// the refs of a `reference-transaction`, the remote refs of a `pre-push`) to
/// `<dir>/log` and, at the call `<dir>/arm` names (its number in the count,
/// or the start of its line), says so on `<dir>/signal` and waits on
/// `<dir>/hold`: git is parked there, to be killed.
fn park_hook(hooks: &Path, name: &str, label: &str, dir: &Path) {
    crate::common::write_executable(
        &hooks.join(name),
        format!(
            "#!/bin/sh\nrefs=$(cat | cut -d' ' -f3 | tr '\\n' ' ')\n\
             [ \"$1\" = aborted ] && exit 0\n\
             d={d}\nn=$(( $(cat $d/count 2>/dev/null || echo 0) + 1 ))\necho $n > $d/count\n\
             line=\"{label} $1 $refs\"\nprintf '%s\\n' \"$line\" >> $d/log\n\
             if [ -f $d/arm ]; then a=$(cat $d/arm)\n\
             case \"$n:$line\" in \"$a:\"*|*:\"$a\"*) printf '%s\\n' \"$line\" > $d/signal; cat $d/hold >/dev/null;; esac\nfi\n",
            d = dir.display()
        ),
    );
}

/// A rig with Nux's and Toast's work queued (Toast's needs a merge commit),
/// and a [`park_hook`] `reference-transaction` in the refinery clone and in
/// origin that counts ref transactions (prepared and committed).
struct Landing {
    env: TestEnv,
    rig: PathBuf,
    dir: PathBuf,
    ids: Vec<String>,
}

impl Landing {
    fn new() -> Landing {
        Landing::with(|_, _| {})
    }

    /// [`Landing::new`] with Nux working on an issue, as `gt spawn` leaves it.
    fn with_issue() -> (Landing, String) {
        let mut issue = String::new();
        let t = Landing::with(|env, rig| {
            issue = env.issue("r", "work of Nux");
            env.edit_state(rig.join("polecats/Nux"), |s| {
                s["issue"] = issue.clone().into()
            });
        });
        (t, issue)
    }

    /// [`Landing::new`], with `setup` run before the work is queued.
    fn with(setup: impl FnOnce(&TestEnv, &Path)) -> Landing {
        let env = TestEnv::new();
        let rig = rig_with_work(&env, &["Nux", "Toast"]);
        setup(&env, &rig);
        let dir = hook_dir(&env);
        let origin = env.path().join("r-origin.git");
        park_hook(
            &rig.join("refinery/rig/.git/hooks"),
            "reference-transaction",
            "clone",
            &dir,
        );
        park_hook(
            &origin.join("hooks"),
            "reference-transaction",
            "origin",
            &dir,
        );
        env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
        env.ok("gt", &["merge-queue", "add", "r", "Toast"]);
        let ids = files(&rig, "pending");
        Landing { env, rig, dir, ids }
    }

    /// Ref transactions in one whole run, counted by the hook.
    fn count(&self) -> usize {
        std::fs::read_to_string(self.dir.join("count")).map_or(0, |s| s.trim().parse().unwrap())
    }

    fn refinery(&self) -> std::process::Command {
        let mut cmd = self.env.cmd("gt-refinery");
        cmd.args(["process", "r", "--once"]);
        cmd
    }

    /// Start a refinery in its own process group, armed to stop at ref
    /// transaction `n`; returns it and the hook's line (`clone|origin
    /// prepared|committed <refs>`) once git is parked there.
    fn park_at(&self, n: usize) -> (std::process::Child, String) {
        std::fs::write(self.dir.join("arm"), n.to_string()).unwrap();
        let child = self.spawn_group();
        let line = read_fifo(&self.dir.join("signal"));
        std::fs::remove_file(self.dir.join("arm")).unwrap();
        (child, line)
    }

    /// Start a refinery in its own process group, output discarded.
    fn spawn_group(&self) -> std::process::Child {
        self.refinery()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn git_locks(&self) -> Vec<String> {
        let git_dir = self.rig.join("refinery/rig/.git");
        let mut v: Vec<String> = walkdir::WalkDir::new(&git_dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".lock"))
            .map(|e| {
                e.path()
                    .strip_prefix(&git_dir)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    /// A normal run, as the next start of the refinery would be (11 minutes
    /// later, so the dead refinery's claim is stale), must finish the queue.
    fn finish(&self, what: &str) {
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(11)).to_string();
        let out = self.refinery().env("GT_NOW", &later).output().unwrap();
        assert!(
            out.status.success(),
            "{what}: the next run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.assert_done(what);
    }

    fn assert_done(&self, what: &str) {
        for state in ["pending", "active", "failed"] {
            assert_eq!(
                files(&self.rig, state),
                Vec::<String>::new(),
                "{what}: {state}/"
            );
        }
        assert_eq!(files(&self.rig, "merged"), self.ids, "{what}: merged/");
        let origin = self.env.path().join("r-origin.git");
        let first_parents = git(&origin, &["log", "--first-parent", "--format=%s", "main"]);
        assert_eq!(
            first_parents, "Merge polecat/Toast from r/Toast\nNux.txt: Nux\ninitial\n",
            "{what}: origin's main"
        );
        let mut all: Vec<String> = git(&origin, &["log", "--format=%s", "main"])
            .lines()
            .map(str::to_string)
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                "Merge polecat/Toast from r/Toast",
                "Nux.txt: Nux",
                "Toast.txt: Toast",
                "initial"
            ],
            "{what}: every commit once"
        );
        let clone = self.rig.join("refinery/rig");
        // On origin's main, or behind it after an up-to-date landing (which
        // leaves the clone where it found it).
        let main = git(&origin, &["rev-parse", "main"]);
        git(
            &clone,
            &["merge-base", "--is-ancestor", "HEAD", main.trim()],
        );
        assert_eq!(
            git(&clone, &["branch", "--show-current"]),
            "main\n",
            "{what}"
        );
        assert_eq!(git(&clone, &["status", "--porcelain"]), "", "{what}");
        assert_eq!(self.git_locks(), Vec::<String>::new(), "{what}");
    }
}

/// How many ref transactions a whole run makes (the kill points).
fn transactions() -> usize {
    let t = Landing::new();
    let out = t.refinery().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.assert_done("an undisturbed run");
    let n = t.count();
    assert!(n >= 10, "only {n} ref transactions in two landings?");
    n
}

/// Kill the refinery's whole process group at transaction `n` (git and its
/// hook die with it, leaving their lock files), then recover.
fn kill_group_at(n: usize) {
    let t = Landing::new();
    let (mut child, line) = t.park_at(n);
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let what = format!("killed at transaction {n} ({})", line.trim());
    if line.starts_with("clone prepared") {
        assert_ne!(
            t.git_locks(),
            Vec::<String>::new(),
            "{what}: no lock left to recover from"
        );
    }
    if line.starts_with("origin prepared") {
        // Origin's lock is not ours to remove (origin is not in the town, and
        // anyone may be pushing to it): the run names it and keeps the entry.
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(11)).to_string();
        let out = t.refinery().env("GT_NOW", &later).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let origin = t.env.path().join("r-origin.git");
        let pending = files(&t.rig, "pending");
        let last = stderr.lines().last().unwrap_or_default();
        let prefix = format!(
            "gt-refinery: {} (put back in pending/): git push: refs/heads/main rejected by origin: \
             [remote rejected] (failed to update ref): error: cannot lock ref ",
            pending[0].trim_end_matches(".json")
        );
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(last.starts_with(&prefix), "{what}: {last}");
        let named = last
            .split_once("Unable to create '")
            .and_then(|(_, rest)| rest.split_once("': File exists."))
            .map(|(p, _)| PathBuf::from(p))
            .unwrap_or_else(|| panic!("{what}: no file named in {last}"));
        assert!(
            named.starts_with(&origin) && named.exists(),
            "{what}: {last}"
        );
        assert!(files(&t.rig, "active").is_empty(), "{what}");
        // What the person told to remove them does.
        for e in walkdir::WalkDir::new(&origin) {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().ends_with(".lock") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    t.finish(&what);
}

// Every other ref transaction (in a run they come as prepared, committed
// pairs, so these are mostly "prepared": git holds its lock files), split in
// two tests to run side by side; with GT_TEST_EVERY_KILL_POINT=1, every one.
fn kill_points(half: usize) -> Vec<usize> {
    let n = transactions();
    let step = if std::env::var_os("GT_TEST_EVERY_KILL_POINT").is_some() {
        1
    } else {
        2
    };
    let all: Vec<usize> = (1..=n).step_by(step).collect();
    let (a, b) = all.split_at(all.len() / 2);
    [a, b][half].to_vec()
}

#[test]
fn killed_with_its_git_at_ref_updates_of_the_first_half() {
    kill_points(0).into_iter().for_each(kill_group_at);
}

#[test]
fn killed_with_its_git_at_ref_updates_of_the_second_half() {
    kill_points(1).into_iter().for_each(kill_group_at);
}

/// Only the refinery is killed; its git lives on, parked in the hook, holding
/// the landing lock it inherited: the next run waits for it, then recovers.
#[test]
fn killed_alone_while_its_git_is_inside_a_ref_update() {
    let n = transactions();
    for at in [3, n / 2, n - 1] {
        let t = Landing::new();
        let (mut child, line) = t.park_at(at);
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(11)).to_string();
        let mut next = t
            .refinery()
            .env("GT_NOW", &later)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(next.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        let lock = t.rig.join("refinery/rig.lock");
        assert_eq!(
            first,
            format!(
                "waiting for {} (another landing on rig r is running)\n",
                lock.display()
            ),
            "at {at} ({line})"
        );
        write_fifo(&t.dir.join("hold"), "");
        let status = next.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert!(status.success(), "at {at} ({line}): {rest}");
        t.assert_done(&format!("killed alone at {at} ({})", line.trim()));
    }
}

/// A lock file that cannot be removed is named, and the queue is not lost.
#[test]
fn an_unremovable_lock_is_named() {
    let t = Landing::new();
    let index_lock = t.rig.join("refinery/rig/.git/index.lock");
    std::fs::write(&index_lock, "").unwrap();
    let git_dir: &Path = index_lock.parent().unwrap();
    let ro = std::os::unix::fs::PermissionsExt::from_mode(0o555);
    std::fs::set_permissions(git_dir, ro).unwrap();
    let out = t.refinery().output().unwrap();
    std::fs::set_permissions(git_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    if nix::unistd::geteuid().is_root() {
        // root removes it anyway: the run just recovers.
        assert!(out.status.success());
        return t.assert_done("root");
    }
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "gt-refinery: {}: a git lock file left by an interrupted landing cannot be removed (Permission denied (os error 13)); remove it by hand\n",
            index_lock.display()
        )
    );
    assert_eq!(files(&t.rig, "pending"), t.ids);
}

/// `gt doctor` reports a dead landing's git locks, and not a live one's.
#[test]
fn doctor_reports_a_dead_landings_git_locks() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let git_dir = rig.join("refinery/rig/.git");
    let locks = [git_dir.join("HEAD.lock"), git_dir.join("index.lock")];
    for l in &locks {
        std::fs::write(l, "").unwrap();
    }
    let out = env.run("gt", &["doctor"]);
    assert_eq!(out.status.code(), Some(0), "warnings alone exit 0");
    let stdout: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("check "))
        .map(|l| format!("{l}\n"))
        .collect();
    let expected: String = locks
        .iter()
        .map(|l| {
            format!(
                "warning: {}: a git lock file while no landing runs (a killed landing's); the next landing removes it\n",
                l.display()
            )
        })
        .collect();
    assert_eq!(
        stdout,
        format!("{expected}2 problem(s): 0 error(s), 2 warning(s)\n")
    );

    // While a landing holds the lock, its git lock files are its own.
    let _landing = gastown::fsio::lock_file(&rig.join("refinery/rig.lock")).unwrap();
    assert!(env.ok("gt", &["doctor"]).ends_with("\ntown is healthy\n"));
}

/// Issue `id` of rig `r`, as `gt issue show --json` prints it.
fn issue(env: &TestEnv, id: &str) -> serde_json::Value {
    let out = env.ok("gt", &["issue", "--rig", "r", "show", id, "--json"]);
    serde_json::from_str(&out).unwrap()
}

impl Landing {
    fn issue_status(&self, id: &str) -> String {
        issue(&self.env, id)["status"].as_str().unwrap().to_string()
    }

    /// The `merged` messages about r/Nux in `home`'s inbox.
    fn merged_mail(&self, home: &str) -> Vec<serde_json::Value> {
        let mut mail = self.env.inbox(self.rig.join(home));
        mail.retain(|m| m["type"] == "merged" && m["polecat"] == "r/Nux");
        mail
    }

    /// The next run (a stale claim later), which must finish Nux's entry
    /// without landing again and then land Toast's; its stdout and stderr.
    fn next_run(&self, what: &str) -> (String, String) {
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(11)).to_string();
        let out = self.refinery().env("GT_NOW", &later).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {stderr}");
        self.assert_done(what);
        (String::from_utf8(out.stdout).unwrap(), stderr.into_owned())
    }

    /// What every kill of Nux's landing after its push leaves to the next
    /// run: one close, one mail each to the polecat and the witness.
    fn assert_nux_finished_once(&self, issue: &str, stdout: &str) {
        let nux = self.ids[0].trim_end_matches(".json");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[0],
            format!("requeued {nux} (a stale claim of this refinery)")
        );
        assert!(
            lines[1].starts_with(&format!("merged {nux} (r/Nux polecat/Nux) at ")),
            "{stdout}"
        );
        assert_eq!(lines[2], format!("  closed issue {issue}"), "{stdout}");
        assert_eq!(self.issue_status(issue), "closed");
        let polecat = self.merged_mail("polecats/Nux");
        assert_eq!(polecat.len(), 1, "{polecat:?}");
        assert_eq!(self.merged_mail("witness").len(), 1);
        assert_eq!(polecat[0]["issue"], issue);
        let merged =
            crate::common::read_json(&self.rig.join("refinery/queue/merged").join(&self.ids[0]));
        assert_eq!(merged["attempts"], 2);
        let nux_tip = git(
            &self.rig.join("polecats/Nux/rig"),
            &["rev-parse", "polecat/Nux"],
        );
        assert_eq!(merged["tip"], nux_tip.trim());
    }
}

/// The ref transaction just after origin's main took Nux's landing (the
/// clone's tracking ref following the push), counted as [`Landing::count`] does.
fn after_first_push() -> usize {
    let t = Landing::new();
    let out = t.refinery().output().unwrap();
    assert!(out.status.success());
    let log = std::fs::read_to_string(t.dir.join("log")).unwrap();
    let pushed = log
        .lines()
        .position(|l| l.starts_with("origin committed") && l.contains("refs/heads/main"))
        .unwrap_or_else(|| panic!("no push in {log}"));
    pushed + 2
}

/// Killed right after the push, before anything else: the next run finds the
/// entry's tip on origin's main and finishes it without asking again or
/// landing again: the issue closed, the polecat and the witness mailed once,
/// the entry in merged/.
#[test]
fn killed_after_the_push_is_finished_once_by_the_next_run() {
    let n = after_first_push();
    let (t, issue) = Landing::with_issue();
    let (mut child, line) = t.park_at(n);
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("clone "), "{line}");
    let origin = t.env.path().join("r-origin.git");
    assert_eq!(
        git(&origin, &["log", "--format=%s", "main"]),
        "Nux.txt: Nux\ninitial\n",
        "pushed"
    );
    assert_eq!(t.issue_status(&issue), "open");
    assert_eq!(files(&t.rig, "active"), t.ids[..1]);
    assert_eq!(
        t.merged_mail("polecats/Nux"),
        Vec::<serde_json::Value>::new()
    );

    let (stdout, stderr) = t.next_run("killed after the push");
    let clone = t.rig.join("refinery/rig");
    let initial = git(&origin, &["rev-list", "--max-parents=0", "main"]);
    assert_eq!(
        stderr,
        format!(
            "{}: removed, a git lock file left by an interrupted landing\n\
             {}: an earlier landing was interrupted; putting the clone back at {}\n",
            clone.join(".git/refs/remotes/origin/main.lock").display(),
            clone.display(),
            &initial[..7]
        )
    );
    t.assert_nux_finished_once(&issue, &stdout);
    assert_eq!(
        stdout.lines().take(5).skip(3).collect::<Vec<_>>(),
        ["  mailed r/Nux", "  mailed r/witness"]
    );
    let body = t.merged_mail("polecats/Nux")[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.contains("(pushed by an earlier run, interrupted before it finished)"),
        "{body}"
    );
}

/// Wait (up to a minute) until `mailed` says so, looking again whenever
/// `inbox`'s directory changes.
fn await_mail(inbox: &Path, mut mailed: impl FnMut() -> bool) {
    let dir = inbox.parent().unwrap();
    let mut watch = gastown::watch::Watch::new(&[dir], std::time::Duration::from_secs(1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    watch
        .run(|_| {
            assert!(
                std::time::Instant::now() < deadline,
                "{} was never mailed",
                dir.display()
            );
            Ok(if mailed() {
                gastown::watch::Flow::Stop
            } else {
                gastown::watch::Flow::Continue
            })
        })
        .unwrap();
}

/// Killed after closing the issue and mailing the polecat, while waiting for
/// the witness's inbox: the next run mails only the witness.
#[test]
fn killed_between_its_mails_is_finished_once_by_the_next_run() {
    let (t, issue) = Landing::with_issue();
    let witness = t.env.inbox_path(t.rig.join("witness"));
    let nux_mail = t.env.inbox_path(t.rig.join("polecats/Nux"));
    std::fs::create_dir_all(nux_mail.parent().unwrap()).unwrap();
    let held = gastown::fsio::lock_file(&gastown::fsio::lock_path(&witness)).unwrap();
    let mut child = t.spawn_group();
    await_mail(&nux_mail, || !t.merged_mail("polecats/Nux").is_empty());
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    drop(held);
    assert_eq!(t.issue_status(&issue), "closed");
    assert_eq!(files(&t.rig, "active"), t.ids[..1]);
    assert_eq!(t.merged_mail("witness"), Vec::<serde_json::Value>::new());

    let (stdout, stderr) = t.next_run("killed between its mails");
    assert_eq!(stderr, "");
    t.assert_nux_finished_once(&issue, &stdout);
    assert_eq!(
        stdout.lines().take(5).skip(3).collect::<Vec<_>>(),
        [
            "  r/Nux was mailed by an interrupted run",
            "  mailed r/witness"
        ]
    );
}

/// `gt land --direct` of r/Nux (working on an issue), killed with its git by
/// a [`park_hook`] in the refinery clone (`reference-transaction` as `clone`,
/// `pre-push` as `pre-push`) and in origin (as `origin`).
struct Direct {
    env: TestEnv,
    rig: PathBuf,
    origin: PathBuf,
    dir: PathBuf,
    issue: String,
    /// Nux's branch's commit.
    tip: String,
    /// Origin's main before any landing.
    initial: String,
}

impl Direct {
    fn new() -> Direct {
        let env = TestEnv::new();
        let rig = rig_with_work(&env, &["Nux", "Toast"]);
        let issue = env.issue("r", "work of Nux");
        env.edit_state(rig.join("polecats/Nux"), |s| {
            s["issue"] = issue.clone().into()
        });
        let dir = hook_dir(&env);
        let origin = env.path().join("r-origin.git");
        let hooks = rig.join("refinery/rig/.git/hooks");
        park_hook(&hooks, "reference-transaction", "clone", &dir);
        park_hook(&hooks, "pre-push", "pre-push", &dir);
        park_hook(
            &origin.join("hooks"),
            "reference-transaction",
            "origin",
            &dir,
        );
        let tip = git(&rig.join("polecats/Nux/rig"), &["rev-parse", "polecat/Nux"]);
        let initial = git(&origin, &["rev-parse", "main"]);
        Direct {
            env,
            rig,
            origin,
            dir,
            issue,
            tip: tip.trim().to_string(),
            initial: initial.trim().to_string(),
        }
    }

    fn land(&self, polecat: &str) -> std::process::Command {
        let mut cmd = self.env.cmd("gt-land");
        cmd.args(["--direct", polecat]);
        cmd
    }

    /// `gt land --direct r/Nux` killed with its git where the hook's line
    /// starts with `at`; checks the record it leaves.
    fn kill_at(&self, at: &str) {
        std::fs::write(self.dir.join("arm"), at).unwrap();
        let mut child = self.spawn_group();
        let line = read_fifo(&self.dir.join("signal"));
        std::fs::remove_file(self.dir.join("arm")).unwrap();
        killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(line.starts_with(at), "{line}");
        self.assert_intent_left();
    }

    /// The next `gt land --direct <polecat>`, which must succeed: its stdout
    /// and stderr.
    fn next_run(&self, polecat: &str) -> (String, String) {
        let out = self.land(polecat).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// What the next run prints about finishing Nux's landing.
    fn finished_nux(&self) -> String {
        let short = &self.tip[..7];
        format!(
            "finished r/Nux's landing (polecat/Nux at {short}): pushed as {short} by an interrupted run\n  \
             done     closed issue {}\n  \
             done     deleted branch polecat/Nux in {}\n  \
             done     mailed r/witness\n  \
             done     mailed mayor\n",
            self.issue,
            self.rig.join("polecats/Nux/rig").display(),
        )
    }

    /// `gt land --direct r/Nux` in its own process group, output discarded.
    fn spawn_group(&self) -> std::process::Child {
        self.land("r/Nux")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// `gt land --direct r/Nux` killed with its git after mailing the
    /// witness, while it waits for the mayor's inbox (its lock held here).
    fn kill_between_mails(&self) {
        let mayor = self.env.inbox_path(self.env.town.join("mayor"));
        let held = gastown::fsio::lock_file(&gastown::fsio::lock_path(&mayor)).unwrap();
        let mut child = self.spawn_group();
        let witness = self.env.inbox_path(self.rig.join("witness"));
        await_mail(&witness, || !self.landed_mail("witness").is_empty());
        killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        drop(held);
        assert!(self.intent().exists());
        assert_eq!(issue(&self.env, &self.issue)["status"], "closed");
        let nux = self.rig.join("polecats/Nux/rig");
        assert_eq!(git(&nux, &["branch", "--list", "polecat/*"]), "");
        assert_eq!(
            self.landed_mail_of(&self.env.town.join("mayor"), "r/Nux"),
            Vec::<serde_json::Value>::new()
        );
    }

    fn intent(&self) -> PathBuf {
        self.rig.join("refinery/landing.json")
    }

    /// The record a killed landing of r/Nux left, as `jq` shows it.
    fn assert_intent_left(&self) {
        let mut intent = crate::common::read_json(&self.intent());
        let at = intent["at"].take();
        assert!(
            at.as_str().unwrap().parse::<jiff::Timestamp>().is_ok(),
            "{at}"
        );
        assert_eq!(
            intent,
            serde_json::json!({
                "polecat": "r/Nux",
                "generation": 0,
                "issue": self.issue,
                "branch": "polecat/Nux",
                "clone": self.rig.join("polecats/Nux/rig"),
                "keep_branch": false,
                "main": "main",
                "merge": "fast_forward",
                "base": self.initial,
                "tip": self.tip,
                "head": self.tip,
                "at": null,
            })
        );
        assert_eq!(
            crate::schema::check_town(&self.env.town),
            Vec::<String>::new()
        );
        assert_eq!(issue(&self.env, &self.issue)["status"], "open");
        assert_eq!(self.landed_mail("witness"), Vec::<serde_json::Value>::new());
    }

    /// The `landed` messages about `polecat` in `home`'s inbox.
    fn landed_mail_of(&self, home: &Path, polecat: &str) -> Vec<serde_json::Value> {
        let mut mail = self.env.inbox(home);
        mail.retain(|m| m["type"] == "landed" && m["polecat"] == polecat);
        mail
    }

    fn landed_mail(&self, home: &str) -> Vec<serde_json::Value> {
        self.landed_mail_of(&self.rig.join(home), "r/Nux")
    }

    /// Nux's work landed once and finished once: its issue closed, the
    /// witness and the mayor mailed once, its branch deleted, no record left.
    fn assert_nux_landed_once(&self) {
        let shown = issue(&self.env, &self.issue);
        assert_eq!(shown["status"], "closed");
        assert_eq!(
            shown["close_reason"],
            format!("landed {} by gt land --direct", self.tip)
        );
        for home in [self.rig.join("witness"), self.env.town.join("mayor")] {
            let mail = self.landed_mail_of(&home, "r/Nux");
            assert_eq!(mail.len(), 1, "{}: {mail:?}", home.display());
            assert_eq!(mail[0]["sha"], self.tip.as_str());
            assert_eq!(mail[0]["issue"], self.issue.as_str());
        }
        let nux = self.rig.join("polecats/Nux/rig");
        assert_eq!(git(&nux, &["branch", "--list", "polecat/*"]), "");
        assert_eq!(git(&nux, &["rev-parse", "HEAD"]).trim(), self.tip);
        assert!(!self.intent().exists(), "the record is left");
        let clone = self.rig.join("refinery/rig");
        assert_eq!(git(&clone, &["for-each-ref", "refs/gastown"]), "");
        assert_eq!(git(&clone, &["status", "--porcelain"]), "");
        assert_eq!(
            crate::schema::check_town(&self.env.town),
            Vec::<String>::new()
        );
    }

    fn origin_log(&self) -> String {
        git(&self.origin, &["log", "--format=%s", "main"])
    }
}

/// Killed after origin took the push, before anything else: the next
/// `gt land --direct r/Nux` finds the record's head on origin's main and only
/// finishes it (issue, branch, mail), landing nothing again.
#[test]
fn a_direct_landing_killed_after_its_push_is_finished_once_by_the_next() {
    let t = Direct::new();
    t.kill_at("origin committed refs/heads/main");
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n", "pushed");
    // A dry run sees the record and leaves it (and, asking origin, finds
    // nothing left to merge).
    let record = std::fs::read(t.intent()).unwrap();
    let out = t.land("r/Nux").arg("--dry-run").output().unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8(out.stderr).unwrap()),
        (
            Some(1),
            format!(
                "gt-land: note: {}: an interrupted landing's record; this landing finishes or drops it first\n\
                 gt-land: nothing to land: r/Nux (polecat/Nux) at {} is already on origin's main\n",
                t.intent().display(),
                &t.tip[..7]
            )
        )
    );
    assert_eq!(std::fs::read(t.intent()).unwrap(), record);

    let (stdout, stderr) = t.next_run("r/Nux");
    let clone = t.rig.join("refinery/rig");
    assert_eq!(
        stderr,
        format!(
            "{}: an earlier landing was interrupted; putting the clone back at {}\n",
            clone.display(),
            &t.initial[..7]
        )
    );
    assert_eq!(
        stdout,
        format!(
            "{}landed r/Nux (generation 0, issue {})\n  \
             session  ok: no session\n  \
             clean    ok: clone is clean\n",
            t.finished_nux(),
            t.issue,
        )
    );
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n", "landed once");
    t.assert_nux_landed_once();
    let body = t.landed_mail("witness")[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.ends_with(" (pushed by an interrupted run, finished by the next)."),
        "{body}"
    );
    // As after any landing: nothing is left to land.
    let (code, err) = t.env.fails("gt-land", &["--direct", "r/Nux"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt-land: {}: no branch polecat/Nux to land\n",
                t.rig.join("polecats/Nux/rig").display()
            )
        )
    );
}

/// The next landing may be another polecat's: it finishes Nux's first, then
/// lands its own on top.
#[test]
fn a_direct_landing_of_another_polecat_finishes_the_killed_one_first() {
    let t = Direct::new();
    t.kill_at("origin committed refs/heads/main");
    let (stdout, _) = t.next_run("r/Toast");
    let (nux, toast) = stdout.split_at(t.finished_nux().len());
    assert_eq!(nux, t.finished_nux());
    assert!(
        toast.starts_with("landed r/Toast (generation 0)\n"),
        "{stdout}"
    );
    assert_eq!(
        git(&t.origin, &["log", "--first-parent", "--format=%s", "main"]),
        "Land polecat/Toast from r/Toast\nNux.txt: Nux\ninitial\n"
    );
    let mut all: Vec<String> = t.origin_log().lines().map(str::to_string).collect();
    all.sort();
    assert_eq!(
        all,
        [
            "Land polecat/Toast from r/Toast",
            "Nux.txt: Nux",
            "Toast.txt: Toast",
            "initial"
        ]
    );
    t.assert_nux_landed_once();
    let toast = t.landed_mail_of(&t.rig.join("witness"), "r/Toast");
    assert_eq!(toast.len(), 1, "{toast:?}");
}

/// Killed after recording its intent, before anything reached origin (in
/// the `pre-push` hook): the next run drops the record, and lands Nux's work
/// from scratch, once.
#[test]
fn a_direct_landing_killed_before_its_push_is_redone_once_by_the_next() {
    let t = Direct::new();
    t.kill_at("pre-push origin refs/heads/main");
    assert_eq!(t.origin_log(), "initial\n", "not pushed");

    let (stdout, _) = t.next_run("r/Nux");
    let short = &t.tip[..7];
    assert_eq!(
        stdout,
        format!(
            "dropped r/Nux's landing (polecat/Nux at {short}): an interrupted run that never reached origin; nothing of it landed\n\
             landed r/Nux (generation 0, issue {issue})\n  \
             session  ok: no session\n  \
             clean    ok: clone is clean\n  \
             merged   fast-forward {}..{short} on main\n  \
             tests    not run\n  \
             pushed   origin main\n  \
             done     closed issue {issue}\n  \
             done     deleted branch polecat/Nux in {}\n  \
             done     mailed r/witness\n  \
             done     mailed mayor\n",
            &t.initial[..7],
            t.rig.join("polecats/Nux/rig").display(),
            issue = t.issue,
        )
    );
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n");
    t.assert_nux_landed_once();
    let body = t.landed_mail("witness")[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!body.contains("interrupted"), "{body}");
}

/// Killed after the witness was mailed, while waiting for the mayor's inbox
/// (its lock held): `gt doctor` reports the record, and `gt doctor --fix`
/// finishes the landing as the next `gt land --direct` would, mailing only
/// the mayor.
#[test]
fn a_direct_landing_killed_between_its_mails_is_finished_once_by_doctor() {
    let t = Direct::new();
    t.kill_between_mails();

    let warning = format!(
        "warning: {}: gt land --direct of r/Nux (polecat/Nux at {}) died before finishing; --fix (or the next gt land --direct on rig r) finishes it if its push reached origin, else drops it",
        t.intent().display(),
        &t.tip[..7]
    );
    // doctor's findings, without its per-check lines.
    let doctor = |args: &[&str]| -> String {
        let out = t.env.run("gt", args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("check "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        doctor(&["doctor"]),
        format!("{warning} (--fix repairs this)\n1 problem(s): 0 error(s), 1 warning(s)\n")
    );
    assert_eq!(
        doctor(&["doctor", "--fix"]),
        format!("{warning} (fixed)\ntown is healthy\n")
    );
    t.assert_nux_landed_once();
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n");
    assert!(
        !String::from_utf8(t.env.run("gt", &["doctor"]).stdout)
            .unwrap()
            .contains("direct-landing")
    );
}

/// The Refinery's next pass finishes a dead direct landing too, so a town the
/// daemon runs needs nobody to land again by hand.
#[test]
fn a_direct_landing_killed_after_its_push_is_finished_once_by_the_refinery() {
    let t = Direct::new();
    t.kill_at("origin committed refs/heads/main");
    let out = t
        .env
        .cmd("gt-refinery")
        .args(["process", "r", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "{}: an earlier landing was interrupted; putting the clone back at {}\n",
            t.rig.join("refinery/rig").display(),
            &t.initial[..7]
        )
    );
    // As gt land prints it, without the column of "done".
    let expected = t.finished_nux().replace("  done     ", "  ");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    t.assert_nux_landed_once();
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n");
}

/// Killed after it deleted the branch: landing the same polecat again is not
/// "no branch to land" but finishes it, mailing only the mayor.
#[test]
fn a_direct_landing_killed_after_deleting_the_branch_is_finished_by_landing_it_again() {
    let t = Direct::new();
    t.kill_between_mails();
    let (stdout, _) = t.next_run("r/Nux");
    let short = &t.tip[..7];
    assert_eq!(
        stdout,
        format!(
            "finished r/Nux's landing (polecat/Nux at {short}): pushed as {short} by an interrupted run\n  \
             done     closed issue {issue}\n  \
             done     r/witness was mailed by an interrupted run\n  \
             done     mailed mayor\n\
             landed r/Nux (generation 0, issue {issue})\n  \
             session  ok: no session\n  \
             clean    ok: clone is clean\n",
            issue = t.issue
        )
    );
    t.assert_nux_landed_once();
    assert_eq!(t.origin_log(), "Nux.txt: Nux\ninitial\n");
}

/// One killed before its push is dropped by the Refinery, which says so in
/// its JSON lines; the branch is left to land again.
#[test]
fn a_direct_landing_killed_before_its_push_is_dropped_by_the_refinery() {
    let t = Direct::new();
    t.kill_at("pre-push origin refs/heads/main");
    let out = t
        .env
        .cmd("gt-refinery")
        .args(["process", "r", "--once", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["event"], "interrupted_direct_landing");
    let i = &line["interrupted"];
    assert_eq!(
        (&i["pushed"], &i["done"], &i["notes"]),
        (
            &serde_json::Value::Null,
            &serde_json::json!([]),
            &serde_json::json!([])
        )
    );
    assert_eq!(i["intent"]["polecat"], "r/Nux");
    assert_eq!(i["intent"]["head"], t.tip.as_str());
    assert!(!t.intent().exists());
    assert_eq!(t.origin_log(), "initial\n");
    assert_eq!(issue(&t.env, &t.issue)["status"], "open");
    let nux = t.rig.join("polecats/Nux/rig");
    assert_eq!(git(&nux, &["rev-parse", "polecat/Nux"]).trim(), t.tip);
    let clone = t.rig.join("refinery/rig");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), t.initial);
    assert_eq!(git(&clone, &["for-each-ref", "refs/gastown"]), "");
}
