//! The merge queue: `gt-queue` against real rigs, real polecat clones and real
//! racing processes, plus what a person does to the directory by hand.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{TestEnv, git, read_json};

/// A rig `r` with polecats, each with one commit on its branch.
pub fn rig_with_work(env: &TestEnv, polecats: &[&str]) -> PathBuf {
    let rig = env.add_rig("r");
    for p in polecats {
        env.ok("gt", &["polecat", "add", "r", p]);
        commit(
            &rig.join("polecats").join(p).join("rig"),
            &format!("{p}.txt"),
            p,
        );
    }
    rig
}

pub fn commit(clone: &Path, file: &str, content: &str) {
    std::fs::write(clone.join(file), format!("{content}\n")).unwrap();
    git(clone, &["add", file]);
    git(
        clone,
        &["commit", "-q", "-m", &format!("{file}: {content}")],
    );
}

/// The entry files in `<rig>/refinery/queue/<state>/`, sorted (dotfiles too,
/// so a leftover temp file shows up).
pub fn files(rig: &Path, state: &str) -> Vec<String> {
    let dir = rig.join("refinery/queue").join(state);
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn id_of(file: &str) -> &str {
    file.strip_suffix(".json").unwrap()
}

#[test]
fn add_list_claim_done_fail() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast"]);
    let nux_clone = rig.join("polecats/Nux/rig");

    let out = env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    let nux = files(&rig, "pending")[0].clone();
    assert_eq!(
        out,
        format!("queued r/Nux (polecat/Nux): {}\n", id_of(&nux))
    );
    assert!(nux.ends_with("Z-Nux.json") && nux.len() == "20261125T092000.123456Z-Nux.json".len());
    let entry = read_json(&rig.join("refinery/queue/pending").join(&nux));
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "rig",
            "polecat",
            "branch",
            "generation",
            "clone",
            "submitted_at",
            "attempts"
        ]
    );
    assert_eq!(entry["id"], id_of(&nux));
    assert_eq!(entry["polecat"], "r/Nux");
    assert_eq!(entry["branch"], "polecat/Nux");
    assert_eq!(entry["generation"], 0);
    assert_eq!(entry["clone"], nux_clone.to_str().unwrap());
    env.ok("gt", &["queue", "add", "r", "r/Toast"]);
    let pending = files(&rig, "pending");
    assert_eq!(pending.len(), 2);
    assert!(pending[1].ends_with("-Toast.json"), "FIFO: {pending:?}");

    // Refusals: duplicate, unknown polecat, dirty clone, not a polecat.
    let (code, err) = env.fails("gt-queue", &["add", "r", "Nux"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "gt-queue: r/Nux (generation 0) is already queued: {}\n",
            rig.join("refinery/queue/pending").join(&nux).display()
        )
    );
    let (code, err) = env.fails("gt-queue", &["add", "r", "Nix"]);
    assert_eq!(code, 2);
    assert!(
        err.ends_with("polecats/Nix does not exist) (did you mean r/Nux?)\n"),
        "{err}"
    );
    env.ok("gt", &["polecat", "add", "r", "Slit"]);
    std::fs::write(rig.join("polecats/Slit/rig/wip.txt"), "half done\n").unwrap();
    let (code, err) = env.fails("gt-queue", &["add", "r", "Slit"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt-queue: refusing to queue r/Slit: {} has uncommitted changes in wip.txt (commit them first)\n",
                rig.join("polecats/Slit/rig").display()
            )
        )
    );
    let (_, err) = env.fails("gt-queue", &["add", "r", "r/witness"]);
    assert_eq!(err, "gt-queue: r/witness is the witness, not a polecat\n");
    assert_eq!(files(&rig, "pending").len(), 2, "refusals queue nothing");

    let listed = env.ok("gt-queue", &["list", "r"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with("POLECAT  GEN  BRANCH         ISSUE")
    );
    assert!(
        lines[1].starts_with(id_of(&nux)) && lines[1].ends_with("r/Nux    0    polecat/Nux    -")
    );

    // Claim takes the oldest; the entry records who and when.
    let claimed = env
        .cmd("gt-queue")
        .args(["claim", "r", "--json"])
        .env("GT_ADDRESS", "r/refinery")
        .output()
        .unwrap();
    assert!(claimed.status.success());
    let claimed: Value = serde_json::from_slice(&claimed.stdout).unwrap();
    assert_eq!(claimed["state"], "active");
    assert_eq!(claimed["id"], id_of(&nux));
    assert_eq!(files(&rig, "active"), std::slice::from_ref(&nux));
    let active = read_json(&rig.join("refinery/queue/active").join(&nux));
    assert_eq!(active["claimed_by"], "r/refinery");
    assert_eq!(active["attempts"], 1);
    assert!(active["claimed_at"].is_string());

    // done: by id; fail: by path. Results recorded, files moved.
    let out = env.ok(
        "gt-queue",
        &[
            "done",
            id_of(&nux),
            "--rig",
            "r",
            "--sha",
            "0123456789abcdef",
        ],
    );
    assert!(
        out.contains("state       merged\n") && out.contains("merged_sha  0123456789abcdef\n"),
        "{out}"
    );
    assert_eq!(files(&rig, "merged"), std::slice::from_ref(&nux));
    assert_eq!(
        read_json(&rig.join("refinery/queue/merged").join(&nux))["merged_sha"],
        "0123456789abcdef"
    );
    let (code, err) = env.fails(
        "gt-queue",
        &["fail", id_of(&nux), "--rig", "r", "--reason", "x"],
    );
    assert_eq!(code, 2);
    assert!(
        err.ends_with("the entry is merged, not active (only a claimed entry can be finished)\n"),
        "{err}"
    );

    let toast = env.ok("gt-queue", &["claim", "r", "--json"]);
    let toast: Value = serde_json::from_str(&toast).unwrap();
    let path = toast["path"].as_str().unwrap();
    env.ok(
        "gt-queue",
        &["fail", path, "--reason", "tests failed: exit 1"],
    );
    let failed = files(&rig, "failed");
    let f = read_json(&rig.join("refinery/queue/failed").join(&failed[0]));
    assert_eq!(f["reason"], "tests failed: exit 1");
    assert!(f["finished_at"].is_string());

    let (code, err) = env.fails("gt-queue", &["claim", "r"]);
    assert_eq!(
        (code, err),
        (
            1,
            format!(
                "gt-queue: nothing pending in {}\n",
                rig.join("refinery/queue/pending").display()
            )
        )
    );
    let all = json_lines(&env.ok("gt-queue", &["list", "r", "--all", "--json"]));
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|v| (v["state"].as_str().unwrap(), v["polecat"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("merged", "r/Nux"), ("failed", "r/Toast")]);
    assert_eq!(
        env.ok("gt-queue", &["list", "r"]).lines().count(),
        1,
        "only the header"
    );
}

#[test]
fn exactly_one_of_racing_claimers_wins_each_entry() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast", "Capable"]);
    for p in ["Nux", "Toast", "Capable"] {
        env.ok("gt-queue", &["add", "r", p]);
    }
    let children: Vec<_> = (0..8)
        .map(|i| {
            env.cmd("gt-queue")
                .args(["claim", "r", "--json", "--by", &format!("claimer-{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<Value> = outs
        .iter()
        .filter(|o| o.status.success())
        .map(|o| serde_json::from_slice(&o.stdout).unwrap())
        .collect();
    assert_eq!(winners.len(), 3, "one winner per entry");
    assert!(
        outs.iter()
            .filter(|o| !o.status.success())
            .all(|o| o.status.code() == Some(1))
    );
    let mut ids: Vec<&str> = winners.iter().map(|w| w["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "no entry claimed twice");
    assert!(files(&rig, "pending").is_empty());
    let active = files(&rig, "active");
    assert_eq!(active.len(), 3, "{active:?}");
    for f in active {
        let e = read_json(&rig.join("refinery/queue/active").join(&f));
        assert_eq!(e["attempts"], 1);
        let by = e["claimed_by"].as_str().unwrap();
        let w = winners.iter().find(|w| w["id"] == id_of(&f)).unwrap();
        assert_eq!(
            w["claimed_by"], by,
            "the file names the process that won it"
        );
    }
}

#[test]
fn requeue_moves_back_only_stale_claims() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux"]);
    env.ok("gt-queue", &["add", "r", "Nux"]);
    env.ok("gt-queue", &["claim", "r"]);
    assert_eq!(
        env.ok("gt-queue", &["requeue", "r"]),
        "",
        "a fresh claim stays"
    );
    assert_eq!(files(&rig, "active").len(), 1);

    // An hour later (GT_NOW), the 10-minute default finds it stale.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let out = env
        .cmd("gt-queue")
        .args(["requeue", "r"])
        .env("GT_NOW", later.to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = id_of(&files(&rig, "pending")[0]).to_string();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("requeued {id}\n")
    );
    assert!(files(&rig, "active").is_empty());
    let e = read_json(&rig.join(format!("refinery/queue/pending/{id}.json")));
    assert!(
        e.get("claimed_at").is_none() && e.get("claimed_by").is_none(),
        "{e}"
    );
    assert_eq!(e["attempts"], 1);
    let again: Value =
        serde_json::from_str(&env.ok("gt-queue", &["claim", "r", "--json"])).unwrap();
    assert_eq!(again["attempts"], 2);

    let (code, err) = env.fails("gt-queue", &["requeue", "r", "--older-than", "soon"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("gt-queue: invalid duration \"soon\""),
        "{err}"
    );
}

#[test]
fn hand_made_entries_work_and_junk_is_reported_not_fatal() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast"]);
    env.ok("gt-queue", &["add", "r", "Toast"]);
    let q = rig.join("refinery/queue");
    // A person writes an entry with just the two required fields; its name
    // sorts before the tool's entry, so it is first.
    std::fs::write(
        q.join("pending/20200101T000000.000000Z-Nux.json"),
        r#"{"polecat": "Nux", "branch": "polecat/Nux", "note": "by hand"}"#,
    )
    .unwrap();
    std::fs::write(q.join("pending/README.txt"), "not an entry\n").unwrap();
    std::fs::write(q.join("pending/broken.json"), "{\"polecat\": \"Nux\"").unwrap();
    std::fs::write(
        q.join("pending/other.json"),
        r#"{"polecat": "x/Nux", "branch": "b"}"#,
    )
    .unwrap();
    std::fs::create_dir(q.join("pending/sub.json")).unwrap();
    std::fs::write(q.join("pending/.half-written.json.tmp.1.0"), "{").unwrap();

    let out = env.run("gt-queue", &["list", "r", "--json"]);
    assert!(out.status.success());
    let listed = json_lines(&String::from_utf8(out.stdout).unwrap());
    let ids: Vec<&str> = listed.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], "20200101T000000.000000Z-Nux");
    assert_eq!(
        listed[0]["polecat"], "r/Nux",
        "a bare name means this rig's polecat"
    );
    let p = q.join("pending");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-queue: {}: not an entry (entries are named <id>.json); skipped\n\
             gt-queue: {}: not JSON (EOF while parsing an object at line 1 column 17); skipped\n\
             gt-queue: {}: \"polecat\" is x/Nux, not a polecat of rig r; skipped\n\
             gt-queue: {}: a directory, not an entry; skipped\n",
            p.join("README.txt").display(),
            p.join("broken.json").display(),
            p.join("other.json").display(),
            p.join("sub.json").display(),
        )
    );

    // Claiming skips the junk and takes the hand-made entry, keeping its
    // unknown field.
    let claimed: Value =
        serde_json::from_str(&env.ok("gt-queue", &["claim", "r", "--json"])).unwrap();
    assert_eq!(claimed["id"], "20200101T000000.000000Z-Nux");
    let active = q.join("active/20200101T000000.000000Z-Nux.json");
    assert_eq!(read_json(&active)["note"], "by hand");

    // A person puts it back with mv; it is claimable again. A copy with the
    // same name in active/ is never clobbered by a claim.
    std::fs::rename(&active, q.join("pending/20200101T000000.000000Z-Nux.json")).unwrap();
    std::fs::copy(q.join("pending/20200101T000000.000000Z-Nux.json"), &active).unwrap();
    let out = env.run("gt-queue", &["claim", "r", "--json"]);
    let claimed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        claimed["id"].as_str().unwrap().ends_with("-Toast"),
        "skipped the clash"
    );
    assert!(
        String::from_utf8(out.stderr).unwrap().contains(&format!(
            "20200101T000000.000000Z-Nux.json: an entry of this name is already active ({}); left here; skipped\n",
            active.display()
        )),
    );
    assert!(q.join("pending/20200101T000000.000000Z-Nux.json").exists());
    assert_eq!(files(&rig, "active").len(), 2);
    assert!(
        !files(&rig, "active").iter().any(|f| f.starts_with('.')),
        "no temp files left"
    );
}

/// `gt-queue` (or another tool) run at time `now`.
fn at(env: &TestEnv, now: &str, tool: &str, args: &[&str]) -> std::process::Output {
    env.cmd(tool)
        .env("GT_NOW", now)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Finished entries older than the rig's `queue_archive_after` (a week by
/// default) move to `archive/<YYYY-MM>/<state>/`, by `gt queue archive` and by
/// the Refinery's pass, byte for byte; `list --all` still shows them.
#[test]
fn old_finished_entries_move_to_a_dated_archive() {
    let env = TestEnv::new();
    let rig = rig_with_work(&env, &["Nux", "Toast", "Slit"]);
    let q = rig.join("refinery/queue");
    env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
    env.ok("gt", &["merge-queue", "add", "r", "Toast"]);
    let (nux, toast) = {
        let p = files(&rig, "pending");
        (p[0].clone(), p[1].clone())
    };
    env.ok("gt-queue", &["claim", "r"]);
    env.ok("gt-queue", &["claim", "r"]);
    env.ok(
        "gt-queue",
        &["done", "--rig", "r", id_of(&nux), "--sha", "abc1234"],
    );
    env.ok(
        "gt-queue",
        &[
            "fail",
            "--rig",
            "r",
            id_of(&toast),
            "--reason",
            "conflict in a.txt",
        ],
    );
    let nux_bytes = std::fs::read(q.join("merged").join(&nux)).unwrap();

    // Finished at NOW (2026-11-25T09:00Z): six days later nothing is old enough.
    let out = at(&env, "2026-12-01T09:00:00Z", "gt-queue", &["archive", "r"]);
    assert_eq!(stdout_of(&out), "");
    assert_eq!(files(&rig, "merged"), [nux.as_str()]);

    // A week later both move, to the month they finished in.
    let out = at(&env, "2026-12-02T09:00:00Z", "gt-queue", &["archive", "r"]);
    let (nux_dest, toast_dest) = (
        q.join("archive/2026-11/merged").join(&nux),
        q.join("archive/2026-11/failed").join(&toast),
    );
    assert_eq!(
        stdout_of(&out),
        format!(
            "archived {} (merged): {}\narchived {} (failed): {}\n",
            id_of(&nux),
            nux_dest.display(),
            id_of(&toast),
            toast_dest.display()
        )
    );
    assert!(files(&rig, "merged").is_empty() && files(&rig, "failed").is_empty());
    assert_eq!(
        std::fs::read(&nux_dest).unwrap(),
        nux_bytes,
        "moved, not rewritten"
    );
    assert_eq!(files(&rig, "archive"), ["2026-11"]);

    let listed = env.ok("gt-queue", &["list", "r", "--all"]);
    assert_eq!(
        listed,
        format!(
            "ID                             STATE                     POLECAT  GEN  BRANCH         ISSUE  RESULT\n\
             {}    merged (archive 2026-11)  r/Nux    0    polecat/Nux    -      abc1234\n\
             {}  failed (archive 2026-11)  r/Toast  0    polecat/Toast  -      conflict in a.txt\n",
            id_of(&nux),
            id_of(&toast)
        )
    );
    let json = json_lines(&env.ok("gt-queue", &["list", "r", "--all", "--json"]));
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["state"], "merged");
    assert_eq!(json[0]["archived"], "2026-11");
    assert_eq!(json[0]["path"], nux_dest.to_str().unwrap());
    assert_eq!(json[1]["state"], "failed");
    assert_eq!(json[1]["reason"], "conflict in a.txt");
    assert_eq!(
        env.ok("gt-queue", &["list", "r"]),
        "ID  POLECAT  GEN  BRANCH  ISSUE\n",
        "pending only: none"
    );

    // A hand copy of an archived entry is left where it is and reported.
    std::fs::copy(&nux_dest, q.join("merged").join(&nux)).unwrap();
    let out = at(&env, "2026-12-02T09:00:00Z", "gt-queue", &["archive", "r"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "gt-queue: {}: an entry of this name is already archived ({}); left here; skipped\n",
            q.join("merged").join(&nux).display(),
            nux_dest.display()
        )
    );
    assert_eq!(stdout_of(&out), "");
    assert!(q.join("merged").join(&nux).exists() && nux_dest.exists());
    std::fs::remove_file(q.join("merged").join(&nux)).unwrap();

    // The rig's setting; the Refinery archives on its pass.
    crate::common::edit_json(&rig.join("config.json"), |c| {
        c["queue_archive_after"] = "1h".into()
    });
    env.ok("gt", &["merge-queue", "add", "r", "Slit"]);
    let slit = files(&rig, "pending")[0].clone();
    env.ok("gt-refinery", &["process", "r", "--once"]);
    assert_eq!(files(&rig, "merged"), [slit.as_str()]);
    let out = at(
        &env,
        "2026-11-25T09:59:00Z",
        "gt-refinery",
        &["process", "r", "--once"],
    );
    assert_eq!(stdout_of(&out), "", "59 minutes is not an hour");
    let out = at(
        &env,
        "2026-11-25T10:00:00Z",
        "gt-refinery",
        &["process", "r", "--once", "--json"],
    );
    let events = json_lines(&stdout_of(&out));
    let slit_dest = q.join("archive/2026-11/merged").join(&slit);
    assert_eq!(
        events,
        [serde_json::json!({
            "event": "archived", "id": id_of(&slit), "state": "merged",
            "path": slit_dest.to_str().unwrap()
        })]
    );
    assert!(files(&rig, "merged").is_empty());

    // A bad setting is refused, naming the file; nothing moves.
    crate::common::edit_json(&rig.join("config.json"), |c| {
        c["queue_archive_after"] = "a week".into()
    });
    let (code, err) = env.fails("gt-queue", &["archive", "r"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!("gt-queue: {}", rig.join("config.json").display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
