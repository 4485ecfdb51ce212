//! Confinement: a symlink planted in place of any directory or file the tools
//! write leads nowhere. The tool exits 2 with one line naming the path and the
//! link, and the outside directory is byte for byte (and mtime for mtime) what
//! it was.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::{TestEnv, git};
use crate::queue::{self, files, rig_with_work};

/// A town with rig `r` and polecat `Nux` (one commit on its branch), and an
/// outside directory holding what links will point at: a mail dir, a state
/// file, a registry, a clone of the rig's origin, an empty dir.
struct Planted {
    env: TestEnv,
    rig: PathBuf,
    outside: PathBuf,
}

impl Planted {
    fn new() -> Planted {
        let env = TestEnv::new();
        let rig = rig_with_work(&env, &["Nux"]);
        let outside = env.path().join("outside");
        std::fs::create_dir_all(outside.join("mail")).unwrap();
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        std::fs::write(outside.join("mail/inbox.jsonl"), "outside\n").unwrap();
        std::fs::write(outside.join("file.json"), "{}\n").unwrap();
        let origin = env.path().join("r-origin.git");
        git(
            env.path(),
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                outside.join("clone").to_str().unwrap(),
            ],
        );
        git(&outside.join("clone"), &["branch", "polecat/Nux"]);
        Planted { env, rig, outside }
    }

    /// Replace `town/<rel>` (whatever is there) by a symlink to `outside/<target>`.
    fn plant(&self, rel: &str, target: &str) -> (PathBuf, PathBuf) {
        let link = self.env.town.join(rel);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&link).unwrap(),
            Ok(_) => std::fs::remove_file(&link).unwrap(),
            Err(_) => std::fs::create_dir_all(link.parent().unwrap()).unwrap(),
        }
        let target = self.outside.join(target);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        (link, target)
    }

    /// Run `tool args`: it must exit 2 with exactly `<tool>: <path>: <link>
    /// is a symlink to <target>, out of the town <town>; refused`, and leave
    /// the outside directory as it was.
    fn refused(&self, tool: &str, args: &[&str], path: &Path, link: &(PathBuf, PathBuf)) {
        let before = tree_hash(&self.outside);
        let (code, stderr) = self.env.fails(tool, args);
        let expected = format!(
            "{tool}: {}: {} is a symlink to {}, out of the town {}; refused\n",
            path.display(),
            link.0.display(),
            link.1.display(),
            self.env.town.display()
        );
        assert_eq!(
            (code, stderr.as_str()),
            (2, expected.as_str()),
            "{tool} {args:?}"
        );
        assert_eq!(
            tree_hash(&self.outside),
            before,
            "{tool} {args:?} changed the outside"
        );
    }
}

impl Planted {
    /// Run `gt <args>` (a doctor): it must exit 1 naming each of `links` as
    /// leading out, and leave the outside as it was; its stdout.
    fn doctor_reports(&self, args: &[&str], links: &[(PathBuf, PathBuf)]) -> String {
        let before = tree_hash(&self.outside);
        let out = self.env.run("gt", args);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8(out.stdout).unwrap();
        for (link, target) in links {
            let line = format!(
                "error: {}: a symlink to {}, out of the town; every tool refuses paths through it\n",
                link.display(),
                target.display()
            );
            assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
        }
        assert_eq!(tree_hash(&self.outside), before, "gt {args:?}: {stdout}");
        stdout
    }
}

/// A hash of every name, type, link target, size, mtime and content under `dir`.
fn tree_hash(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    paths.sort();
    for p in paths {
        let m = std::fs::symlink_metadata(&p).unwrap();
        (
            p.strip_prefix(dir).unwrap(),
            m.mode(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
        )
            .hash(&mut h);
        if m.is_symlink() {
            std::fs::read_link(&p).unwrap().hash(&mut h);
        } else if m.is_file() {
            std::fs::read(&p).unwrap().hash(&mut h);
        }
    }
    h.finish()
}

#[test]
fn mail_dir_inbox_and_its_lock() {
    let send = ["send", "mayor", "-s", "hi", "-m", "to the mayor"];
    let t = Planted::new();
    let link = t.plant("mayor/mail", "mail");
    t.refused("gt-mail", &send, &link.0, &link);

    let t = Planted::new();
    let link = t.plant("mayor/mail/inbox.jsonl", "mail/inbox.jsonl");
    t.refused("gt-mail", &send, &link.0, &link);

    // A dangling link: following it would create the target.
    let t = Planted::new();
    let link = t.plant("mayor/mail/inbox.lock", "created.lock");
    t.refused("gt-mail", &send, &link.0, &link);
    assert!(!link.1.exists());
    // The inbox inside the town was not written either.
    assert_eq!(
        std::fs::read(t.env.town.join("mayor/mail/inbox.jsonl")).unwrap(),
        b""
    );
}

#[test]
fn state_and_its_lock() {
    let t = Planted::new();
    let link = t.plant("r/polecats/Nux/state.json", "file.json");
    t.refused("gt", &["sleep", "r/Nux"], &link.0, &link);

    let t = Planted::new();
    let link = t.plant("r/polecats/Nux/state.lock", "created.lock");
    t.refused("gt", &["sleep", "r/Nux"], &link.0, &link);
    assert!(!link.1.exists());
    assert_eq!(
        crate::common::read_json(&t.rig.join("polecats/Nux/state.json"))["status"],
        "idle"
    );
}

#[test]
fn session_log() {
    let t = Planted::new();
    let issue = t.env.issue("r", "work");
    let link = t.plant("r/polecats/Nux/session.log", "file.json");
    let before = tree_hash(&t.outside);
    let out = t
        .env
        .cmd("gt")
        .args([
            "spawn",
            "--issue",
            &issue,
            "--name",
            "Nux",
            "--agent",
            "echo leaked",
        ])
        .env("GT_SESSION_BACKEND", "process")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "gt: {}: {} is a symlink to {}, out of the town {}; refused",
            link.0.display(),
            link.0.display(),
            link.1.display(),
            t.env.town.display()
        ),
        "{stderr}"
    );
    assert_eq!(tree_hash(&t.outside), before);
}

#[test]
fn queue_dirs() {
    // add: pending/ leads out.
    let t = Planted::new();
    let link = t.plant("r/refinery/queue/pending", "dir");
    t.refused("gt-queue", &["add", "r", "Nux"], &link.0, &link);

    // The refinery: active/ leads out; the entry stays in pending/, unmoved.
    let t = Planted::new();
    t.env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    let pending = files(&t.rig, "pending");
    let link = t.plant("r/refinery/queue/active", "dir");
    t.refused("gt-refinery", &["process", "r", "--once"], &link.0, &link);
    assert_eq!(files(&t.rig, "pending"), pending);

    // The refinery: pending/ leads out (an entry placed there by the agent).
    let t = Planted::new();
    std::fs::write(
        t.outside.join("dir/20261125T092000.000000Z-Nux.json"),
        r#"{"polecat":"r/Nux","branch":"polecat/Nux"}"#,
    )
    .unwrap();
    let link = t.plant("r/refinery/queue/pending", "dir");
    t.refused("gt-refinery", &["process", "r", "--once"], &link.0, &link);
    assert!(files(&t.rig, "active").is_empty());
}

#[test]
fn a_polecats_clone() {
    let t = Planted::new();
    let link = t.plant("r/polecats/Nux/rig", "clone");
    t.refused("gt-land", &["--direct", "r/Nux"], &link.0, &link);
    t.refused("gt-queue", &["add", "r", "Nux"], &link.0, &link);

    // Queued before the link was planted: the refinery fails the entry (the
    // polecat's side is at fault) and runs no git there.
    let t = Planted::new();
    t.env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    let link = t.plant("r/polecats/Nux/rig", "clone");
    let before = tree_hash(&t.outside);
    let out = t
        .env
        .ok("gt-refinery", &["process", "r", "--once", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["reason"],
        format!(
            "{}: {} is a symlink to {}, out of the town {}; refused",
            link.0.display(),
            link.0.display(),
            link.1.display(),
            t.env.town.display()
        )
    );
    assert_eq!(tree_hash(&t.outside), before);
}

/// A clone's own git files must not take git out of the town either: a
/// `core.worktree` elsewhere (git would check out and read there) and
/// objects borrowed from an outside repository (`objects/info/alternates`:
/// they would be fetched, and pushed, as the clone's own) are refused.
#[test]
fn a_clone_whose_git_config_or_alternates_lead_out() {
    let t = Planted::new();
    let clone = t.rig.join("polecats/Nux/rig");
    let elsewhere = t.outside.join("dir");
    git(
        &clone,
        &["config", "core.worktree", elsewhere.to_str().unwrap()],
    );
    let before = tree_hash(&t.outside);
    let (code, err) = t.env.fails("gt-queue", &["add", "r", "Nux"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt-queue: {}: its git config puts its work tree at {}; refused\n",
                clone.display(),
                elsewhere.display()
            )
        )
    );
    assert_eq!(tree_hash(&t.outside), before);

    let t = Planted::new();
    let clone = t.rig.join("polecats/Nux/rig");
    let objects = t.outside.join("clone/.git/objects");
    let alternates = clone.join(".git/objects/info/alternates");
    std::fs::write(&alternates, format!("{}\n", objects.display())).unwrap();
    let before = tree_hash(&t.outside);
    let (code, err) = t.env.fails("gt-queue", &["add", "r", "Nux"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt-queue: {}: points git at {}, out of the town; refused\n",
                alternates.display(),
                objects.display()
            )
        )
    );
    assert!(files(&t.rig, "pending").is_empty());
    assert_eq!(tree_hash(&t.outside), before);
}

/// New clones come from the url `gt rig add` registered: a `git_url` edited
/// in the rig's config.json alone (to a repository outside the town) is
/// refused, and the doctor names it.
#[test]
fn a_rig_url_edited_in_one_file_is_not_cloned() {
    let t = Planted::new();
    let elsewhere = t.outside.join("clone");
    let config = t.rig.join("config.json");
    crate::common::edit_json(&config, |c| {
        c["git_url"] = elsewhere.to_str().unwrap().into()
    });
    let registered = t.env.path().join("r-origin.git").canonicalize().unwrap();
    let why = format!(
        "{}: git_url {} is not the url rig r was added with ({}, {}); refused",
        config.display(),
        elsewhere.display(),
        registered.display(),
        t.env.town.join("config/rigs.json").display()
    );
    let (code, err) = t.env.fails("gt", &["polecat", "add", "r", "Toast"]);
    assert_eq!((code, err), (2, format!("gt: {why}\n")));
    assert!(!t.rig.join("polecats/Toast").exists());
    let out = t.env.run("gt", &["doctor"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("error: {why}\n")), "{stdout}");
}

/// git follows symlinks inside `.git` (a reflog, `objects/`): a landing
/// refuses a repository with one that leads out. Planted in the polecat's
/// clone, the entry fails; in the refinery's clone, it is put back.
#[test]
fn a_link_out_inside_a_git_dir_stops_the_landing() {
    for (clone, fails) in [("r/polecats/Nux/rig", true), ("r/refinery/rig", false)] {
        let t = Planted::new();
        t.env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
        let repo = t.env.town.join(clone);
        let link = t.plant(&format!("{clone}/.git/logs/HEAD"), "file.json");
        let before = tree_hash(&t.outside);
        let why = format!(
            "{}: {} is a symlink to {}, out of the town; refused",
            repo.display(),
            link.0.display(),
            link.1.display()
        );
        let out = t
            .env
            .run("gt-refinery", &["process", "r", "--once", "--json"]);
        if fails {
            assert!(out.status.success(), "{out:?}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                (&v["state"], v["reason"].as_str()),
                (&"failed".into(), Some(why.as_str()))
            );
        } else {
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(err.ends_with(&format!("{why}\n")), "{err}");
            assert_eq!(files(&t.rig, "pending").len(), 1);
        }
        assert_eq!(tree_hash(&t.outside), before, "{clone}");
    }
}

/// A landing is done once it is on the rig's origin: a refinery clone whose
/// config now fetches from or pushes to another repository lands nothing
/// there, and the entry waits in pending/.
#[test]
fn a_refinery_clone_pointed_at_another_repository_lands_nothing() {
    for push in [false, true] {
        let t = Planted::new();
        t.env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
        let clone = t.rig.join("refinery/rig");
        let elsewhere = t.env.path().join("elsewhere.git");
        git(
            t.env.path(),
            &["init", "-q", "--bare", elsewhere.to_str().unwrap()],
        );
        let url = t.env.path().join("r-origin.git").canonicalize().unwrap();
        let mut set = vec!["remote", "set-url"];
        if push {
            set.push("--push");
        }
        set.extend(["origin", elsewhere.to_str().unwrap()]);
        git(&clone, &set);
        let (code, err) = t.env.fails("gt-refinery", &["process", "r", "--once"]);
        assert_eq!(code, 2);
        let what = if push { "pushes to" } else { "fetches from" };
        assert!(
            err.contains(&format!(
                "{}: the refinery clone {what} {}, not the rig's git_url {}",
                clone.display(),
                elsewhere.display(),
                url.display()
            )),
            "{err}"
        );
        assert_eq!(files(&t.rig, "pending").len(), 1);
        assert_eq!(git(&elsewhere, &["for-each-ref"]), "");
    }
}

/// A queue entry is a file any agent can write: one whose `clone` names a
/// repository outside the town fails, and nothing is merged from there.
#[test]
fn a_queue_entry_naming_a_clone_outside() {
    let t = Planted::new();
    let outside_clone = t.outside.join("clone");
    queue::commit(&outside_clone, "secret.txt", "from outside");
    let entry = serde_json::json!({"id": "20261125T092000.000000Z-Nux", "rig": "r",
        "polecat": "r/Nux", "branch": "polecat/Nux", "clone": outside_clone});
    std::fs::create_dir_all(t.rig.join("refinery/queue/pending")).unwrap();
    std::fs::write(
        t.rig
            .join("refinery/queue/pending/20261125T092000.000000Z-Nux.json"),
        format!("{entry}\n"),
    )
    .unwrap();
    let origin = t.env.path().join("r-origin.git");
    let main_before = git(&origin, &["rev-parse", "main"]);
    let before = tree_hash(&t.outside);
    let out = t
        .env
        .ok("gt-refinery", &["process", "r", "--once", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&v["state"], &v["reason"]),
        (
            &serde_json::Value::from("failed"),
            &serde_json::Value::from(format!(
                "clone {} is outside the town {}; refused",
                outside_clone.display(),
                t.env.town.display()
            ))
        )
    );
    assert_eq!(git(&origin, &["rev-parse", "main"]), main_before);
    assert_eq!(tree_hash(&t.outside), before);
}

/// A direct landing's record is a file any agent can write: one naming a
/// clone outside the town (or a branch that is origin's own) is refused, and
/// its follow-ups delete no branch there.
#[test]
fn a_landing_record_naming_a_clone_outside() {
    let t = Planted::new();
    let outside_clone = t.outside.join("clone");
    let main = git(&outside_clone, &["rev-parse", "main"]);
    let record = |clone: &Path, branch: &str| {
        serde_json::json!({"polecat": "r/Nux", "generation": 0, "branch": branch,
            "clone": clone, "main": "main", "merge": "fast_forward", "base": main.trim(),
            "tip": main.trim(), "head": main.trim(), "at": "2026-11-25T09:00:00Z"})
    };
    let path = t.rig.join("refinery/landing.json");
    let nux_clone = t.rig.join("polecats/Nux/rig");
    for (clone, branch, why) in [
        (
            &outside_clone,
            "polecat/Nux",
            format!(
                "its clone {} is not r/Nux's clone {}",
                outside_clone.display(),
                nux_clone.display()
            ),
        ),
        (
            &nux_clone,
            "main",
            "cannot land branch main onto origin's main".to_string(),
        ),
    ] {
        std::fs::write(&path, format!("{}\n", record(clone, branch))).unwrap();
        let before = tree_hash(&t.outside);
        let (code, err) = t.env.fails("gt-refinery", &["process", "r", "--once"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.starts_with(&format!("gt-refinery: {}", path.display())) && err.contains(&why),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(path.exists(), "the record is left for a person");
        assert_eq!(tree_hash(&t.outside), before);
        assert_eq!(git(&nux_clone, &["branch", "--list", "main"]), "  main\n");
    }
}

/// A clone whose `.git` is a file naming a repository outside the town
/// (`gitdir:`, as `git init --separate-git-dir` leaves it), or whose
/// repository names an outside common dir (`commondir`), is refused before
/// git runs there: git would write to that repository.
#[test]
fn a_clone_whose_git_file_points_out() {
    for pointer in ["gitdir", "commondir"] {
        let t = Planted::new();
        let clone = t.rig.join("polecats/Nux/rig");
        let outside_git = t.outside.join("clone/.git");
        let file = if pointer == "gitdir" {
            std::fs::remove_dir_all(clone.join(".git")).unwrap();
            let line = format!("gitdir: {}\n", outside_git.display());
            std::fs::write(clone.join(".git"), line).unwrap();
            clone.join(".git")
        } else {
            // Relative, as git writes it: `..` out of the town.
            let up = "../".repeat(clone.join(".git").components().count());
            let line = format!("{up}{}\n", outside_git.display());
            std::fs::write(clone.join(".git/commondir"), line).unwrap();
            clone.join(".git/commondir")
        };
        let before = tree_hash(&t.outside);
        let (code, err) = t.env.fails("gt-queue", &["add", "r", "Nux"]);
        let refused = format!(
            "{}: points git at {}, out of the town; refused",
            file.display(),
            outside_git.display()
        );
        assert_eq!(code, 2, "{pointer}: {err}");
        assert!(
            err.starts_with(&format!("gt-queue: {refused}")),
            "{pointer}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(files(&t.rig, "pending").is_empty());

        // The doctor names it; --fix moves the clone aside (inside the
        // town) and clones afresh, and the outside is untouched.
        let out = t.env.run("gt", &["doctor", "--fix"]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.contains(&format!(
                "{}: r/Nux's clone is refused ({refused}",
                clone.display()
            )),
            "{stdout}"
        );
        assert!(
            git(&clone, &["rev-parse", "--git-dir"]).trim() == ".git",
            "{stdout}"
        );
        assert_eq!(tree_hash(&t.outside), before, "{pointer}");
    }
}

#[test]
fn tracker_polecats_and_staging() {
    let t = Planted::new();
    let link = t.plant("r/.beads", "dir");
    let lock = link.0.join("issues.lock");
    t.refused("gt-issue", &["create", "--rig", "r", "x"], &lock, &link);

    let t = Planted::new();
    let link = t.plant("r/polecats", "dir");
    t.refused("gt", &["polecat", "add", "r", "Toast"], &link.0, &link);

    let t = Planted::new();
    let link = t.plant(".staging", "dir");
    let origin = t.env.path().join("r-origin.git");
    t.refused(
        "gt",
        &["rig", "add", "r2", origin.to_str().unwrap()],
        &link.0,
        &link,
    );
    assert!(!t.env.town.join("r2").exists());
}

#[test]
fn config_files() {
    let origin_of = |t: &Planted| t.env.path().join("r-origin.git");
    let t = Planted::new();
    let link = t.plant("config/rigs.json", "file.json");
    t.refused(
        "gt",
        &["rig", "add", "r2", origin_of(&t).to_str().unwrap()],
        &link.0,
        &link,
    );

    let t = Planted::new();
    let link = t.plant("r/config.json", "file.json");
    t.refused("gt", &["polecat", "add", "r", "Toast"], &link.0, &link);

    // Every tool reads it first, to open the town (named by GT_TOWN here).
    let t = Planted::new();
    let link = t.plant("config/town.json", "file.json");
    let (code, stderr) = t
        .env
        .fails("gt-mail", &["send", "mayor", "-s", "s", "-m", "m"]);
    assert_eq!(
        (code, stderr),
        (
            2,
            format!(
                "gt-mail: GT_TOWN: {}: {} is a symlink to {}, out of the town {}; refused\n",
                link.0.display(),
                link.0.display(),
                link.1.display(),
                t.env.town.display()
            )
        )
    );
}

#[test]
fn doctor_reports_every_link_that_leads_out() {
    let t = Planted::new();
    let planted = [
        t.plant("mayor/mail", "mail"),
        t.plant("r/polecats/Nux/heartbeat", "file.json"),
        t.plant("r/polecats/Nux/rig", "clone"),
        t.plant("r/refinery/queue/failed", "dir"),
    ];
    // A link that stays inside is fine.
    std::os::unix::fs::symlink("../witness", t.rig.join("polecats/Nux/witness-link")).unwrap();
    let stdout = t.doctor_reports(&["doctor"], &planted);
    assert!(!stdout.contains("witness-link"), "{stdout}");
}

/// `gt doctor --fix` repairs what is inside the town only: through a planted
/// `.staging` link it removes no "stray" rig build, and through a linked
/// polecat home it moves no "broken" clone aside.
#[test]
fn doctor_fix_changes_nothing_through_a_link() {
    let t = Planted::new();
    // Looks like a build left by a dead `gt rig add` (pid 4194305 is above
    // any pid_max), and like a clone that is not a repository.
    std::fs::create_dir_all(t.outside.join("dir/stale.4194305.1")).unwrap();
    std::fs::write(t.outside.join("dir/stale.4194305.1/data"), "mine\n").unwrap();
    std::fs::create_dir_all(t.outside.join("dir/rig")).unwrap();
    std::fs::write(t.outside.join("dir/rig/notes"), "mine too\n").unwrap();
    let staging = t.plant(".staging", "dir");
    let home = t.plant("r/polecats/Nux", "dir");
    let stdout = t.doctor_reports(&["doctor", "--fix"], &[staging, home]);
    assert!(!stdout.contains("(fixed)"), "{stdout}");
}

/// `gt heartbeat` (an agent's hook runs it on every tool call) does not touch
/// a file outside the town through a planted heartbeat link.
#[test]
fn a_planted_heartbeat_link_is_refused_by_gt_heartbeat() {
    let t = Planted::new();
    let link = t.plant("r/polecats/Nux/heartbeat", "file.json");
    let mut c = t.env.cmd("gt");
    c.env("GT_ADDRESS", "r/Nux").arg("heartbeat");
    let before = tree_hash(&t.outside);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "gt: {}: {} is a symlink to {}, out of the town {}; refused\n",
            link.0.display(),
            link.0.display(),
            link.1.display(),
            t.env.town.display()
        )
    );
    assert_eq!(tree_hash(&t.outside), before);
}

/// A TEST DOUBLE of a kernel without `openat2` (before 5.6, or a container
/// whose seccomp filter refuses it): a launcher that installs a filter
/// failing that one call with ENOSYS, then runs its arguments.
const NO_OPENAT2: &str = r#"#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
        return 125;
    execvp(argv[1], argv + 1);
    return 126;
}
"#;

#[test]
fn without_openat2_a_tool_says_why_and_changes_nothing() {
    if !crate::common::have_tool("cc") {
        return;
    }
    let env = TestEnv::new();
    env.add_rig("r");
    let src = env.path().join("no-openat2.c");
    std::fs::write(&src, NO_OPENAT2).unwrap();
    let launcher = env.path().join("no-openat2");
    let built = std::process::Command::new("cc")
        .arg("-o")
        .arg(&launcher)
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success());
    let before = tree_hash(&env.town);
    let out = std::process::Command::new(&launcher)
        .arg(crate::common::bin("gt"))
        .args(["send", "mayor", "-s", "hi", "-m", "hello"])
        .env("GT_TOWN", &env.town)
        .env("GT_ADDRESS", "overseer")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let town = env.town.join("config/town.json");
    assert!(
        err.starts_with(&format!("gt-mail: GT_TOWN: {}: ", town.display())),
        "{err}"
    );
    assert!(
        err.ends_with(": the kernel refuses openat2 (Linux 5.6 or later, and no seccomp filter that blocks it, is needed to keep every path inside the town)\n"),
        "{err}"
    );
    assert_eq!(tree_hash(&env.town), before, "nothing written");
}
