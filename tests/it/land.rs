//! `gt land --direct`: real bare origins, real clones, real merges and pushes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::{TestEnv, edit_json, git};

/// A town with rig `r` (origin `r-origin.git`) and polecat `r/Toast`.
struct Rig {
    env: TestEnv,
    rig: PathBuf,
    origin: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let env = TestEnv::new();
        let rig = env.add_rig("r");
        let origin = env.path().join("r-origin.git");
        let r = Rig { env, rig, origin };
        r.polecat("Toast");
        r
    }

    /// Add polecat `name`; returns its clone.
    fn polecat(&self, name: &str) -> PathBuf {
        self.env.ok("gt", &["polecat", "add", "r", name]);
        self.clone_of(name)
    }

    fn clone_of(&self, name: &str) -> PathBuf {
        self.rig.join("polecats").join(name).join("rig")
    }

    fn refinery(&self) -> PathBuf {
        self.rig.join("refinery/rig")
    }

    /// Main on origin as `sha subject` lines, newest first.
    fn origin_log(&self) -> String {
        git(&self.origin, &["log", "--format=%h %s", "main"])
    }

    /// Commit to origin's main from a clone of its own: main moves on.
    fn push_elsewhere(&self, file: &str, text: &str) -> String {
        let other = self.env.path().join("other");
        if !other.exists() {
            git(
                self.env.path(),
                &["clone", "-q", self.origin.to_str().unwrap(), "other"],
            );
        }
        git(&other, &["pull", "-q"]);
        let sha = commit(&other, file, text, "elsewhere");
        git(&other, &["push", "-q", "origin", "main"]);
        sha
    }

    fn set_test_command(&self, cmd: &str) {
        edit_json(&self.rig.join("config.json"), |c| {
            c["test_command"] = cmd.into()
        });
    }
}

/// Write `file` in `dir`, commit it; returns the full sha.
fn commit(dir: &Path, file: &str, text: &str, msg: &str) -> String {
    std::fs::write(dir.join(file), text).unwrap();
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", msg]);
    rev(dir, "HEAD")
}

fn rev(dir: &Path, r: &str) -> String {
    git(dir, &["rev-parse", r]).trim().to_string()
}

/// Every file, symlink and directory under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let bytes = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else if e.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                b"<dir>".to_vec()
            };
            (e.path().to_path_buf(), bytes)
        })
        .collect()
}

/// A work tree's files (no `.git`) and its HEAD.
fn worktree(dir: &Path) -> (BTreeMap<PathBuf, Vec<u8>>, String, String) {
    let files = snapshot(dir)
        .into_iter()
        .filter(|(p, _)| !p.strip_prefix(dir).unwrap().starts_with(".git"))
        .collect();
    (
        files,
        rev(dir, "HEAD"),
        git(dir, &["status", "--porcelain"]),
    )
}

#[test]
fn fast_forward_lands_tests_pushes_and_cleans_up() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let sha = commit(&clone, "a.txt", "work\n", "add a");
    let issue = r.issue("add a");
    // The test runs in the merged tree, in the refinery clone.
    r.set_test_command("test -f a.txt && echo tested");
    let out = r.ok(&["land", "--direct", "r/Toast"]);
    let short = &sha[..7];
    let base = rev(&r.refinery(), "HEAD~1");
    assert_eq!(
        out,
        format!(
            "landed r/Toast (generation 0, issue {issue})\n  \
             session  ok: no session\n  \
             clean    ok: clone is clean\n  \
             merged   fast-forward {}..{short} on main\n  \
             tests    passed: test -f a.txt && echo tested\n  \
             pushed   origin main\n  \
             done     closed issue {issue}\n  \
             done     deleted branch polecat/Toast in {}\n  \
             done     mailed r/witness\n  \
             done     mailed mayor\n",
            &base[..7],
            clone.display()
        )
    );
    assert_eq!(rev(&r.origin, "main"), sha);
    assert_eq!(
        r.origin_log(),
        format!("{short} add a\n{} initial\n", &base[..7])
    );
    // The canonical main is the pushed commit, clean, with no landing ref left.
    assert_eq!(rev(&r.refinery(), "HEAD"), sha);
    assert_eq!(git(&r.refinery(), &["status", "--porcelain"]), "");
    assert_eq!(git(&r.refinery(), &["for-each-ref", "refs/gastown"]), "");
    // The polecat's branch is gone; its clone sits on the landed commit.
    assert_eq!(git(&clone, &["branch", "--list", "polecat/*"]), "");
    assert_eq!(rev(&clone, "HEAD"), sha);
    for home in [r.rig.join("witness"), r.env.town.join("mayor")] {
        let mail = r.env.inbox(&home);
        assert_eq!(mail.len(), 1, "{}", home.display());
        let m = &mail[0];
        assert_eq!(m["type"], "landed");
        assert_eq!(m["from"], "overseer");
        assert_eq!(m["polecat"], "r/Toast");
        assert_eq!(m["sha"], sha.as_str());
        assert_eq!(m["generation"], 0);
        assert_eq!(m["issue"], issue.as_str());
        assert_eq!(m["subject"], format!("landed r/Toast ({short}) on main"));
    }
    let shown: serde_json::Value =
        serde_json::from_str(&r.ok(&["issue", "show", &issue, "--json"])).unwrap();
    assert_eq!(shown["status"], "closed");
    assert_eq!(
        shown["close_reason"],
        format!("landed {sha} by gt land --direct")
    );
    // Landing again: the branch is gone.
    let (code, err) = r.env.fails("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt-land: {}: no branch polecat/Toast to land\n",
                clone.display()
            )
        )
    );
}

#[test]
fn merge_commit_when_main_moved() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let work = commit(&clone, "a.txt", "work\n", "add a");
    let other = r.push_elsewhere("b.txt", "other\n");
    let json = r.env.ok("gt-land", &["--direct", "--json", "r/Toast"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let outcome = &report["outcome"];
    assert_eq!(outcome["result"], "landed");
    assert_eq!(outcome["merge"], "merge_commit");
    assert_eq!(outcome["base"], other.as_str());
    assert_eq!(outcome["tip"], work.as_str());
    assert_eq!(outcome["tests"], serde_json::Value::Null);
    let head = rev(&r.origin, "main");
    assert_eq!(outcome["head"], head.as_str());
    assert_eq!(
        git(
            &r.origin,
            &["log", "-1", "--format=%P%n%an <%ae>%n%B", "main"]
        ),
        format!(
            "{other} {work}\nGas Town <gastown@localhost>\n\
             Land polecat/Toast from r/Toast\n\nLanded directly by gt land --direct (generation 0).\n\n"
        )
    );
    assert_eq!(
        git(&r.origin, &["ls-tree", "--name-only", "main"]),
        "README\na.txt\nb.txt\n"
    );
}

#[test]
fn conflict_changes_nothing_and_names_the_files() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    commit(&clone, "README", "mine\n", "edit readme");
    commit(&clone, "c.txt", "mine\n", "add c");
    r.push_elsewhere("README", "theirs\n");
    r.push_elsewhere("c.txt", "theirs\n");
    let origin_before = r.origin_log();
    let refinery_before = worktree(&r.refinery());
    let polecat_before = snapshot(&r.rig.join("polecats"));
    let (code, err) = r.env.fails("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "gt-land: cannot land r/Toast (polecat/Toast): merge conflict with origin's main in README, c.txt; \
         nothing changed (rebase it on origin's main and retry)\n"
    );
    assert_eq!(r.origin_log(), origin_before);
    assert_eq!(worktree(&r.refinery()), refinery_before);
    assert!(!r.refinery().join(".git/MERGE_HEAD").exists());
    assert_eq!(git(&r.refinery(), &["for-each-ref", "refs/gastown"]), "");
    assert_eq!(snapshot(&r.rig.join("polecats")), polecat_before);
    assert_eq!(
        r.env.inbox(r.rig.join("witness")),
        Vec::<serde_json::Value>::new()
    );
}

#[test]
fn dirty_clone_is_refused_unless_forced() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let sha = commit(&clone, "a.txt", "work\n", "add a");
    std::fs::write(clone.join("notes.txt"), "wip\n").unwrap();
    let origin_before = r.origin_log();
    let (code, err) = r.env.fails("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "gt-land: refusing to land r/Toast: uncommitted changes in notes.txt in {} (--force skips these checks)\n",
            clone.display()
        )
    );
    assert_eq!(r.origin_log(), origin_before);

    let out = r.run_ok_stderr(&["--direct", "--force", "r/Toast"]);
    assert_eq!(rev(&r.origin, "main"), sha);
    // The polecat may still be working: its branch and files stay.
    assert_eq!(
        out,
        format!(
            "gt-land: note: branch polecat/Toast kept: {} was landed with --force while its polecat may still be working\n",
            clone.display()
        )
    );
    assert_eq!(
        git(&clone, &["branch", "--show-current"]),
        "polecat/Toast\n"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("notes.txt")).unwrap(),
        "wip\n"
    );
}

impl Rig {
    /// `gt args...` with the native tracker (a `bd` on PATH must not leak in).
    fn ok(&self, args: &[&str]) -> String {
        let out = self
            .env
            .cmd("gt")
            .env("GT_BEADS_CLI", "native")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gt {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Create an issue and make it Toast's; returns its id.
    fn issue(&self, title: &str) -> String {
        let created: serde_json::Value =
            serde_json::from_str(&self.ok(&["issue", "create", "--rig", "r", title, "--json"]))
                .unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        self.env.edit_state(self.rig.join("polecats/Toast"), |s| {
            s["issue"] = id.as_str().into()
        });
        id
    }

    /// Run gt-land, require exit 0, return stderr.
    fn run_ok_stderr(&self, args: &[&str]) -> String {
        let out = self.env.run("gt-land", args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn failing_tests_undo_the_merge_and_push_nothing() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let sha = commit(&clone, "a.txt", "work\n", "add a");
    r.set_test_command("touch junk; echo checking; echo broken >&2; exit 3");
    let origin_before = r.origin_log();
    let refinery_before = worktree(&r.refinery());
    let out = r.env.run("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-land: cannot land r/Toast (polecat/Toast): tests failed (exit 3): \
         touch junk; echo checking; echo broken >&2; exit 3; merge undone, nothing pushed\n"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.ends_with(
            "  tests    FAILED: touch junk; echo checking; echo broken >&2; exit 3\n           checking\n           broken\n"
        ),
        "{stdout}"
    );
    assert_eq!(r.origin_log(), origin_before);
    // Back as before: the merge and the test's junk file are gone.
    assert_eq!(worktree(&r.refinery()), refinery_before);
    assert_eq!(
        git(&clone, &["branch", "--show-current"]),
        "polecat/Toast\n"
    );

    let json = r.env.run("gt-land", &["--direct", "--json", "r/Toast"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["outcome"]["result"], "tests_failed");
    assert_eq!(report["outcome"]["tests"]["exit_code"], 3);
    assert_eq!(
        report["outcome"]["tests"]["tail"],
        serde_json::json!(["checking", "broken"])
    );

    r.env
        .ok("gt-land", &["--direct", "--skip-tests", "r/Toast"]);
    assert_eq!(rev(&r.origin, "main"), sha);
}

#[test]
fn dry_run_changes_nothing() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let lines = "1\n2\n3\n4\n5\n6\n7\n8\n";
    r.push_elsewhere("lines.txt", lines);
    git(&clone, &["pull", "-q", "--ff-only", "origin", "main"]);
    let tip = commit(&clone, "lines.txt", &lines.replace("1\n", "one\n"), "top");
    let moved = r.push_elsewhere("lines.txt", &lines.replace("8\n", "eight\n"));
    let dry_run = || {
        let before = snapshot(r.env.path());
        let out = r.env.run("gt-land", &["--direct", "--dry-run", "r/Toast"]);
        assert_eq!(snapshot(r.env.path()), before, "the dry run changed files");
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Origin moved where neither clone has seen: predicted against the last fetch.
    let fetched = rev(&r.refinery(), "origin/main");
    assert_eq!(
        dry_run(),
        (
            0,
            format!(
                "dry run: would land r/Toast (generation 0)\n  \
                 session  ok: no session\n  \
                 clean    ok: clone is clean\n  \
                 branch   polecat/Toast at {}\n  \
                 merge    merge commit on main at {}\n  \
                 origin   moved to {} since the refinery clone's last fetch: predicted against {}\n  \
                 tests    none\n  \
                 push     origin main\n  \
                 then     delete branch polecat/Toast, mail r/witness and mayor\n",
                &tip[..7],
                &fetched[..7],
                &moved[..7],
                &fetched[..7],
            ),
            String::new()
        )
    );
    // A bare name is a polecat of the current (here: the only) rig.
    let bare = r.env.run("gt-land", &["--direct", "--dry-run", "Toast"]);
    assert_eq!(bare.stdout, dry_run().1.into_bytes(), "{bare:?}");
    // Once fetched, the merge is tried in memory: lines.txt merges cleanly,
    // and the merged file is written nowhere.
    git(&r.refinery(), &["fetch", "-q"]);
    let (code, out, _) = dry_run();
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "  merge    merge commit on main at {}\n",
            &moved[..7]
        )),
        "{out}"
    );
    // A conflicting edit is predicted, naming the file.
    commit(
        &clone,
        "lines.txt",
        &lines.replace("8\n", "ate\n"),
        "bottom",
    );
    let (code, out, err) = dry_run();
    assert!(out.starts_with("dry run: would not land r/Toast"), "{out}");
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "gt-land: cannot land r/Toast (polecat/Toast): merge conflict with origin's main in lines.txt\n"
        )
    );
}

#[test]
fn bad_addresses_get_one_line_errors() {
    let r = Rig::new();
    for (arg, want) in [
        (
            "../Toast",
            "gt-land: invalid address \"../Toast\": invalid rig name \"..\": use 1-64 letters, digits, '_' or '-', starting with a letter or digit\n".to_string(),
        ),
        (
            "r/Tost",
            format!(
                "gt-land: no agent home for address r/Tost ({} does not exist) (did you mean r/Toast?)\n",
                r.rig.join("polecats/Tost").display()
            ),
        ),
        (
            "s/Toast",
            format!(
                "gt-land: no rig \"s\" in {} (did you mean r?)\n",
                r.env.town.join("config/rigs.json").display()
            ),
        ),
        (
            "r/witness",
            "gt-land: r/witness is the witness, not a polecat: gt land --direct takes <rig>/<polecat>\n".to_string(),
        ),
    ] {
        assert_eq!(r.env.fails("gt-land", &["--direct", arg]), (2, want), "{arg}");
    }
    // A polecat with no new commits has nothing to land.
    let nux = r.polecat("Nux");
    let want = format!(
        "gt-land: nothing to land: r/Nux (polecat/Nux) at {} is already on origin's main\n",
        &rev(&nux, "HEAD")[..7]
    );
    for dry in [true, false] {
        let args = ["--direct", "r/Nux", "--dry-run"];
        let args = if dry { &args[..] } else { &args[..2] };
        assert_eq!(r.env.fails("gt-land", args), (1, want.clone()));
    }
}

#[test]
fn a_running_session_is_refused_until_killed() {
    let r = Rig::new();
    let issue = r.issue("work");
    let out = r
        .env
        .cmd("gt")
        .env("GT_BEADS_CLI", "native")
        .env("GT_SESSION_BACKEND", "process")
        .args([
            "spawn",
            "--issue",
            &issue,
            "--name",
            "Toast",
            "--agent",
            "exec sleep 600",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sha = commit(&r.clone_of("Toast"), "a.txt", "work\n", "add a");
    let state = r.rig.join("polecats/Toast/state.json");
    let session = r.env.session(r.rig.join("polecats/Toast"));
    let (code, err) = r.env.fails("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(
        (code, err),
        (
            1,
            format!(
                "gt-land: refusing to land r/Toast: session {session} is running in {} (--force skips these checks)\n",
                state.display()
            )
        )
    );
    assert_ne!(rev(&r.origin, "main"), sha);
    r.env.ok("gt", &["kill", "r/Toast"]);
    r.ok(&["land", "--direct", "r/Toast"]);
    assert_eq!(rev(&r.origin, "main"), sha);
}

#[test]
fn concurrent_landings_take_turns() {
    let r = Rig::new();
    let toast = commit(&r.clone_of("Toast"), "a.txt", "a\n", "add a");
    let nux = commit(&r.polecat("Nux"), "b.txt", "b\n", "add b");
    let lock_path = r.rig.join("refinery/rig.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let mut children: Vec<_> = ["r/Toast", "r/Nux"]
        .iter()
        .map(|p| {
            let mut child = r
                .env
                .cmd("gt-land")
                .args(["--direct", p])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut first = String::new();
            let mut err = BufReader::new(child.stderr.take().unwrap());
            err.read_line(&mut first).unwrap();
            assert_eq!(
                first,
                format!(
                    "waiting for {} (another landing on rig r is running)\n",
                    lock_path.display()
                )
            );
            (child, err)
        })
        .collect();
    // Both wait on the lock: nothing has landed.
    assert_eq!(rev(&r.origin, "main"), rev(&r.refinery(), "HEAD"));
    drop(lock);
    for (child, _) in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let head = rev(&r.origin, "main");
    for sha in [&toast, &nux] {
        git(&r.origin, &["merge-base", "--is-ancestor", sha, &head]);
    }
    assert_eq!(rev(&r.refinery(), "HEAD"), head);
    assert_eq!(git(&r.refinery(), &["status", "--porcelain"]), "");
}

/// The Refinery's use: a branch pushed to origin, landed through the library.
#[test]
fn integrate_lands_a_branch_pushed_to_origin() {
    use gastown::land::{self, Outcome, Source};
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let sha = commit(&clone, "a.txt", "work\n", "add a");
    git(&clone, &["push", "-q", "origin", "polecat/Toast"]);
    r.set_test_command("test -f a.txt");
    let town = gastown::town::Town::open(&r.env.town).unwrap();
    let rig = town.rig("r").unwrap();
    let source = Source {
        from: "origin".into(),
        branch: "polecat/Toast".into(),
    };
    let err = land::preview(&rig, &source, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no refs/remotes/origin/polecat/Toast (a dry run does not fetch: git fetch origin first)",
            r.refinery().display()
        )
    );
    git(&r.refinery(), &["fetch", "-q"]);
    let plan = land::preview(&rig, &source, true).unwrap();
    assert_eq!(plan.merge, land::Predicted::FastForward);
    assert_eq!(plan.tip, sha);
    let mut progress = Vec::new();
    let outcome = land::integrate(&rig, &source, "unused for a fast-forward", true, &mut |p| {
        progress.push(p)
    })
    .unwrap();
    // No other landing held the lock and none was left half-done.
    assert_eq!(progress, []);
    let Outcome::Landed { head, tests, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(head, sha);
    assert_eq!(tests.unwrap().exit_code, Some(0));
    assert_eq!(rev(&r.origin, "main"), sha);
}

#[test]
fn a_landing_killed_midway_is_undone_by_the_next() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    let sha = commit(&clone, "a.txt", "work\n", "add a");
    r.push_elsewhere("b.txt", "other\n");
    let before = rev(&r.refinery(), "HEAD");
    // The test command kills gt-land (its parent) after the merge commit,
    // before the push: the refinery clone is left holding an unpushed merge.
    r.set_test_command("touch junk; kill -9 $PPID");
    let out = r.env.run("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert_ne!(rev(&r.refinery(), "HEAD"), before);
    assert!(r.refinery().join("junk").exists());
    r.set_test_command("test -f a.txt");
    let out = r.env.run("gt-land", &["--direct", "r/Toast"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "{}: an earlier landing was interrupted; putting the clone back at {}\n",
            r.refinery().display(),
            &before[..7]
        )
    );
    let head = rev(&r.origin, "main");
    git(&r.origin, &["merge-base", "--is-ancestor", &sha, &head]);
    assert_eq!(rev(&r.refinery(), "HEAD"), head);
    assert_eq!(git(&r.refinery(), &["status", "--porcelain"]), "");
    assert_eq!(git(&r.refinery(), &["for-each-ref", "refs/gastown"]), "");
}

/// Hand edits in the canonical clone are never thrown away: refused, whatever --force says.
#[test]
fn the_refinery_clone_must_be_clean_on_main_and_pushed() {
    let r = Rig::new();
    commit(&r.clone_of("Toast"), "a.txt", "work\n", "add a");
    let refinery = r.refinery();
    let land = || r.env.fails("gt-land", &["--direct", "--force", "r/Toast"]);
    std::fs::write(refinery.join("README"), "edited by hand\n").unwrap();
    assert_eq!(
        land(),
        (
            2,
            format!(
                "gt-land: {}: the refinery clone has uncommitted changes (README); it must be clean to land on\n",
                refinery.display()
            )
        )
    );
    commit(&refinery, "README", "edited by hand\n", "hand edit");
    assert_eq!(
        land(),
        (
            2,
            format!(
                "gt-land: {}: main has commits that are not on origin/main (an unfinished landing?); push or reset them first\n",
                refinery.display()
            )
        )
    );
    assert_eq!(
        std::fs::read_to_string(refinery.join("README")).unwrap(),
        "edited by hand\n"
    );
    git(&refinery, &["checkout", "-q", "-b", "mine"]);
    assert_eq!(
        land(),
        (
            2,
            format!(
                "gt-land: {}: the refinery clone is on branch mine, not main; check out main there first\n",
                refinery.display()
            )
        )
    );
}

#[test]
fn a_refused_push_undoes_the_merge() {
    let r = Rig::new();
    commit(&r.clone_of("Toast"), "a.txt", "work\n", "add a");
    let hook = r.origin.join("hooks/pre-receive");
    crate::common::write_executable(&hook, "#!/bin/sh\necho closed for the night >&2\nexit 1\n");
    let origin_before = r.origin_log();
    let refinery_before = worktree(&r.refinery());
    let (code, err) = r.env.fails("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "gt-land: git push: refs/heads/main rejected by origin: [remote rejected] (pre-receive hook declined); \
         merge undone, nothing landed (if origin moved meanwhile, run again)\n"
    );
    assert_eq!(r.origin_log(), origin_before);
    assert_eq!(worktree(&r.refinery()), refinery_before);
    assert_eq!(
        git(&r.clone_of("Toast"), &["branch", "--show-current"]),
        "polecat/Toast\n"
    );
}

#[test]
fn a_hung_test_is_killed_at_test_timeout_and_lands_nothing() {
    let r = Rig::new();
    let clone = r.clone_of("Toast");
    commit(&clone, "a.txt", "work\n", "add a");
    // The test and a child of it hang; both must go at the deadline.
    r.set_test_command("echo started; sleep 600 & sleep 600");
    edit_json(&r.rig.join("config.json"), |c| {
        c["test_timeout"] = "300ms".into()
    });
    let origin_before = r.origin_log();
    let refinery_before = worktree(&r.refinery());
    let out = r.env.run("gt-land", &["--direct", "r/Toast"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-land: cannot land r/Toast (polecat/Toast): tests failed (timed out after 300ms (test_timeout) and killed): \
         echo started; sleep 600 & sleep 600; merge undone, nothing pushed\n"
    );
    assert_eq!(r.origin_log(), origin_before);
    assert_eq!(worktree(&r.refinery()), refinery_before);
    // The landing lock is free again: the next landing goes through.
    r.set_test_command("true");
    r.env.ok("gt-land", &["--direct", "r/Toast"]);
}
