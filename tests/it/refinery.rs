//! The Refinery against real bare origins, real polecat clones, the real
//! tracker and real inotify: FIFO landing, conflicts and failing tests sent
//! back, stale generations refused, a killed refinery's claim recovered.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestEnv, edit_json, git, read_json};
use crate::queue::{commit, files, rig_with_work};

fn origin(env: &TestEnv) -> std::path::PathBuf {
    env.path().join("r-origin.git")
}

/// Subjects of origin's main, newest first, first parents only.
fn origin_log(env: &TestEnv) -> Vec<String> {
    git(
        &origin(env),
        &["log", "--first-parent", "--format=%s", "main"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn set_config(rig: &Path, key: &str, value: &str) {
    edit_json(&rig.join("config.json"), |c| c[key] = value.into());
}

/// Give polecat `name` an issue in its state.json, as `gt spawn` would.
fn give_issue(env: &TestEnv, rig: &Path, name: &str) -> String {
    let out = env.ok(
        "gt-issue",
        &["create", "--rig", "r", &format!("work of {name}"), "--json"],
    );
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.edit_state(rig.join("polecats").join(name), |s| {
        s["issue"] = id.clone().into()
    });
    id
}

/// The refinery clone is exactly origin's main: same commit, nothing else.
fn assert_clone_is_origin_main(env: &TestEnv, rig: &Path) {
    let clone = rig.join("refinery/rig");
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"]),
        git(&origin(env), &["rev-parse", "main"])
    );
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(git(&clone, &["branch", "--show-current"]), "main\n");
}

#[test]
fn processes_entries_fifo_and_reports() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast"]);
    set_config(&rig, "test_command", "test -f README && echo tests ok");
    let issue = give_issue(&env, &rig, "Nux");
    env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    env.ok("gt", &["merge-queue", "add", "r", "Toast"]);
    let ids: Vec<String> = files(&rig, "pending");
    let junk = rig.join("refinery/queue/pending/notes.txt");
    std::fs::write(&junk, "remember to merge Nux first\n").unwrap();

    let run = env.run("gt", &["refinery", "process", "r", "--once"]);
    assert!(run.status.success());
    assert_eq!(
        String::from_utf8(run.stderr).unwrap(),
        format!(
            "gt-refinery: {}: not an entry (entries are named <id>.json); skipped\n",
            junk.display()
        ),
        "junk is reported once and left alone"
    );
    assert!(junk.exists());
    let out = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "merged {} (r/Nux polecat/Nux) at ",
            ids[0].trim_end_matches(".json")
        )),
        "{out}"
    );
    assert_eq!(
        &lines[1..4],
        [
            format!("  closed issue {issue}").as_str(),
            "  mailed r/Nux",
            "  mailed r/witness"
        ]
    );
    assert!(
        lines[4].starts_with(&format!(
            "merged {} (r/Toast",
            ids[1].trim_end_matches(".json")
        )),
        "{out}"
    );
    assert_eq!(lines.len(), 7, "{out}");

    assert_eq!(files(&rig, "merged"), ids);
    assert_eq!(files(&rig, "pending"), ["notes.txt"]);
    assert!(files(&rig, "active").is_empty());
    // Nux fast-forwarded, then Toast merged on top: both on origin, in order.
    assert_eq!(
        origin_log(&env),
        [
            "Merge polecat/Toast from r/Toast",
            "Nux.txt: Nux",
            "initial"
        ]
    );
    let head = git(&origin(&env), &["rev-parse", "main"]);
    let toast = read_json(&rig.join("refinery/queue/merged").join(&ids[1]));
    assert_eq!(toast["merged_sha"], head.trim());
    assert_eq!(toast["claimed_by"], "r/refinery");
    assert_eq!(toast["attempts"], 1);
    assert_clone_is_origin_main(&env, &rig);

    let shown = env.ok("gt-issue", &["show", "--rig", "r", &issue, "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["status"],
        "closed"
    );
    let mail = env.inbox(rig.join("polecats/Nux"));
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["type"], "merged");
    assert_eq!(mail[0]["from"], "r/refinery");
    assert_eq!(mail[0]["generation"], 0);
    assert_eq!(mail[0]["issue"], issue.as_str());
    let witness: Vec<String> = env
        .inbox(rig.join("witness"))
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(witness.len(), 2);
    assert!(witness[0].starts_with("merged r/Nux (") && witness[1].starts_with("merged r/Toast ("));

    // Nothing left: --once exits at once.
    assert_eq!(env.ok("gt-refinery", &["process", "r", "--once"]), "");
}

#[test]
fn conflicts_and_failing_tests_go_back_to_the_polecat() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast", "Capable"]);
    // Nux and Toast both rewrite README; Capable breaks the tests.
    commit(&rig.join("polecats/Nux/rig"), "README", "Nux's readme");
    commit(&rig.join("polecats/Toast/rig"), "README", "Toast's readme");
    commit(&rig.join("polecats/Capable/rig"), "broken", "x");
    set_config(&rig, "test_command", "echo checking; test ! -e broken");
    for p in ["Nux", "Toast", "Capable"] {
        env.ok("gt-queue", &["add", "r", p]);
    }
    let ids = files(&rig, "pending");
    let out = env.ok("gt-refinery", &["process", "r", "--once", "--json"]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["merged", "failed", "failed"]);
    assert_eq!(files(&rig, "merged"), [ids[0].clone()]);
    assert_eq!(files(&rig, "failed"), [ids[1].clone(), ids[2].clone()]);

    let toast = read_json(&rig.join("refinery/queue/failed").join(&ids[1]));
    assert_eq!(
        toast["reason"],
        "cannot land r/Toast (polecat/Toast): merge conflict with origin's main in README; nothing changed (rebase it on origin's main and retry)"
    );
    assert_eq!(toast["conflicts"], serde_json::json!(["README"]));
    assert_eq!(events[1]["landing"]["result"], "conflict");
    let capable = read_json(&rig.join("refinery/queue/failed").join(&ids[2]));
    assert_eq!(
        capable["reason"],
        "cannot land r/Capable (polecat/Capable): tests failed (exit 1): echo checking; test ! -e broken; merge undone, nothing pushed"
    );
    assert_eq!(
        origin_log(&env),
        ["README: Nux's readme", "Nux.txt: Nux", "initial"]
    );
    assert_clone_is_origin_main(&env, &rig);

    let mail = env.inbox(rig.join("polecats/Toast"));
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["type"], "merge_failed");
    assert_eq!(mail[0]["subject"], "merge failed: r/Toast (polecat/Toast)");
    let body = mail[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with(toast["reason"].as_str().unwrap()),
        "{body}"
    );
    assert!(body.contains("gt merge-queue add r r/Toast"), "{body}");
    let body = env.inbox(rig.join("polecats/Capable"))[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.ends_with("Last lines of the test output:\nchecking"),
        "{body}"
    );
    assert_eq!(env.inbox(rig.join("witness")).len(), 3);

    // Toast rebases on main and queues again: the retry merges and drops the
    // failure's fields.
    let toast_clone = rig.join("polecats/Toast/rig");
    git(&toast_clone, &["fetch", "-q", "origin"]);
    git(&toast_clone, &["reset", "-q", "--hard", "origin/main"]);
    commit(&toast_clone, "Toast.txt", "Toast again");
    env.ok("gt-queue", &["add", "r", "Toast"]);
    env.ok("gt-refinery", &["process", "r", "--once"]);
    assert_eq!(origin_log(&env)[0], "Toast.txt: Toast again");
}

#[test]
fn stale_generation_is_refused_and_a_dead_refinerys_claim_is_recovered() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast"]);
    env.ok("gt-queue", &["add", "r", "Nux"]);
    env.ok("gt-queue", &["add", "r", "Toast"]);
    // Nux is respawned on other work after submitting: generation 0 -> 1.
    env.edit_state(rig.join("polecats/Nux"), |s| s["generation"] = 1.into());
    // A refinery claimed Toast's entry and was killed (made by hand here).
    let pending = rig.join("refinery/queue/pending");
    let active = rig.join("refinery/queue/active");
    let [nux, toast] = [0, 1].map(|i| files(&rig, "pending")[i].clone());
    let mut v = read_json(&pending.join(&toast));
    v["claimed_by"] = "r/refinery".into();
    std::fs::write(active.join(&toast), v.to_string()).unwrap();
    std::fs::remove_file(pending.join(&toast)).unwrap();

    // A fresh claim is left alone...
    let out = env.ok("gt-refinery", &["process", "r", "--once"]);
    assert!(out.starts_with(&format!("failed {}: stale entry: it is about generation 0 of r/Nux, which is now at generation 1; nothing merged\n", nux.trim_end_matches(".json"))), "{out}");
    assert_eq!(files(&rig, "active"), std::slice::from_ref(&toast));
    assert_eq!(origin_log(&env), ["initial"], "nothing merged");
    assert_eq!(env.inbox(rig.join("polecats/Nux"))[0]["generation"], 0);

    // ...and one whose file has not changed for longer than --stale-after is
    // put back and landed.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(11)).to_string();
    let out = env
        .cmd("gt-refinery")
        .args(["process", "r", "--once"])
        .env("GT_NOW", &later)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "requeued {} (a stale claim of this refinery)\nmerged {}",
            toast.trim_end_matches(".json"),
            toast.trim_end_matches(".json")
        )),
        "{stdout}"
    );
    assert_eq!(origin_log(&env), ["Toast.txt: Toast", "initial"]);
    assert_eq!(
        read_json(&rig.join("refinery/queue/merged").join(&toast))["attempts"],
        1,
        "a hand claim does not count"
    );
}

#[test]
fn watch_mode_lands_entries_as_they_arrive() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux"]);
    std::fs::create_dir_all(rig.join("refinery/queue/pending")).unwrap();
    let mut child = env
        .cmd("gt-refinery")
        .args(["process", "r"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while files(&rig, "merged").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the watching refinery never merged the entry"
        );
        assert!(child.try_wait().unwrap().is_none(), "the refinery exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(origin_log(&env), ["Nux.txt: Nux", "initial"]);
}

#[test]
fn two_refineries_share_a_queue_without_double_work() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast", "Capable"]);
    for p in ["Nux", "Toast", "Capable"] {
        env.ok("gt-queue", &["add", "r", p]);
    }
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.cmd("gt-refinery")
                .args(["process", "r", "--once", "--json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut processed: Vec<String> = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["state"], "merged", "{v}");
            processed.push(v["id"].as_str().unwrap().to_string());
        }
    }
    processed.sort();
    let merged: Vec<String> = files(&rig, "merged")
        .iter()
        .map(|f| f.trim_end_matches(".json").to_string())
        .collect();
    assert_eq!(processed, merged, "each entry processed exactly once");
    assert_eq!(merged.len(), 3);
    assert_eq!(
        git(&origin(&env), &["ls-tree", "--name-only", "main"]),
        "Capable.txt\nNux.txt\nREADME\nToast.txt\n",
        "all three landed on origin"
    );
    assert_clone_is_origin_main(&env, &rig);
}

#[test]
fn an_entry_made_with_the_shell_recipe_of_protocol_queue_md_lands() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux"]);
    std::fs::create_dir_all(rig.join("refinery/queue/pending")).unwrap();
    // The recipe from protocol/queue.md, "Add", verbatim but for $Q.
    let status = std::process::Command::new("sh")
        .arg("-ec")
        .arg(
            r#"id=$(date -u +%Y%m%dT%H%M%S.%6NZ)-Nux
printf '{"polecat":"r/Nux","branch":"polecat/Nux"}\n' > $Q/.$id.json.tmp.$$.0
mv -n $Q/.$id.json.tmp.$$.0 $Q/pending/$id.json"#,
        )
        .env("Q", rig.join("refinery/queue"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.ok("gt-refinery", &["process", "r", "--once"]);
    assert!(out.starts_with("merged "), "{out}");
    assert_eq!(origin_log(&env), ["Nux.txt: Nux", "initial"]);
    let merged = files(&rig, "merged");
    let e = read_json(&rig.join("refinery/queue/merged").join(&merged[0]));
    // A hand-made entry is bound to the generation it was checked against.
    assert_eq!(
        e["generation"],
        env.state(rig.join("polecats/Nux"))["generation"]
    );
}

/// An entry naming the rig's own branch (a polecat that committed on its
/// `main`, or a hand-written entry) is refused: nothing is merged, and
/// origin's `main` is never deleted as a landed polecat branch would be.
#[test]
fn an_entry_naming_the_default_branch_is_refused() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux"]);
    let clone = rig.join("polecats/Nux/rig");
    git(&clone, &["checkout", "-q", "main"]);
    commit(&clone, "on-main.txt", "x");
    git(&clone, &["checkout", "-q", "polecat/Nux"]);
    std::fs::create_dir_all(rig.join("refinery/queue/pending")).unwrap();
    std::fs::write(
        rig.join("refinery/queue/pending/20261125T092000.000000Z-Nux.json"),
        "{\"polecat\":\"r/Nux\",\"branch\":\"main\"}\n",
    )
    .unwrap();
    let before = origin_log(&env);
    let refused = "cannot land branch main onto origin's main: it is the rig's own branch, \
                   not a polecat's work branch";
    let out = env.ok("gt-refinery", &["process", "r", "--once", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "failed", "{out}");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains(refused)),
        "{out}"
    );
    // gt land --direct of a polecat whose state names main: the same.
    env.edit_state(rig.join("polecats/Nux"), |s| s["branch"] = "main".into());
    let (code, err) = env.fails("gt-land", &["--direct", "r/Nux"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    assert!(err.contains(refused), "{err}");
    assert_eq!(origin_log(&env), before);
    assert_eq!(
        git(&origin(&env), &["branch", "--list", "main"]),
        "* main\n"
    );
    assert_clone_is_origin_main(&env, &rig);
}
