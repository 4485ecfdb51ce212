//! The agent contract from the agent's side: `gt prime`, `gt done`,
//! `gt heartbeat`, run as a spawned polecat (a stand-in agent that exits at
//! once: these commands are what a real agent would run).

use std::path::PathBuf;

use crate::common::{TestEnv, git, ok_output};

/// Rig `r` with polecat r/Nux spawned on a new issue; returns (issue, clone).
fn spawned(env: &TestEnv) -> (String, PathBuf) {
    env.add_rig("r");
    let id = env.ok(
        "gt",
        &[
            "issue",
            "--rig",
            "r",
            "create",
            "Fix the frobnicator",
            "-d",
            "It frobs twice.",
            "--json",
        ],
    );
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["id"].as_str().unwrap().to_string();
    ok_output(
        env.cmd("gt")
            .env("GT_SESSION_BACKEND", "process")
            .args(["spawn", "--issue", &id, "--agent", "true"]),
    );
    (id, env.town.join("r/polecats/Nux/rig"))
}

/// Run `gt <args>` as r/Nux in its clone.
fn as_nux(env: &TestEnv, clone: &std::path::Path, args: &[&str]) -> std::process::Output {
    env.as_agent("r/Nux", clone, args)
}

#[test]
fn prime_names_the_agent_its_issue_and_how_to_work() {
    let env = TestEnv::new();
    let (id, clone) = spawned(&env);
    let out = as_nux(&env, &clone, &["prime"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "You are r/Nux (polecat), generation 1.\n\n\
             Your issue: {id} Fix the frobnicator [in_progress]\n\n\
             It frobs twice.\n\n\
             How to work here:\n\
             - Read your mail: `gt inbox`, then `gt mail read <id>`.\n\
             - Work in your clone (the current directory): commit on your branch; leave `git status` clean.\n\
             - Report done: `gt done` (refused while the clone is dirty or has no new commit); your Witness then merges it.\n\
             - Ask for help: `gt send r/witness -s help -m \"<what blocks you>\"`.\n\
             - Before your context fills: `gt mail handoff --cycle -m \"<where you are>\"`; your next session's `gt prime` shows it.\n\
             - Show you are alive during long work: `gt heartbeat` (hooks do this for Claude Code).\n"
        )
    );
    let json = as_nux(&env, &clone, &["prime", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["issue"]["id"], id.as_str());
    assert_eq!(v["generation"], 1);
}

#[test]
fn prime_shows_an_earlier_sessions_handoff_once_and_marks_it_read() {
    let env = TestEnv::new();
    let (_, clone) = spawned(&env);
    let at_gen = |g: &str, args: &[&str]| {
        ok_output(
            env.cmd("gt")
                .env("GT_ADDRESS", "r/Nux")
                .env("GT_GENERATION", g)
                .current_dir(&clone)
                .args(args),
        )
    };
    at_gen(
        "1",
        &[
            "mail",
            "handoff",
            "-s",
            "half way",
            "-m",
            "frob.rs is next\n",
        ],
    );
    let other = env.ok(
        "gt",
        &[
            "send",
            "r/Nux",
            "-s",
            "hello",
            "-m",
            "not a handoff",
            "--json",
        ],
    );
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    let note = env
        .inbox("r/polecats/Nux")
        .into_iter()
        .find(|m| m["type"] == "handoff")
        .unwrap();
    let id = note["id"].as_str().unwrap();
    let marks = env.town.join("r/polecats/Nux/mail/read.jsonl");

    // The session that wrote it leaves it for the next one.
    assert!(!at_gen("1", &["prime"]).contains("Handoff"));
    assert!(!marks.exists());
    let next = at_gen("2", &["prime"]);
    assert!(
        next.starts_with("You are r/Nux (polecat), generation 2.\n"),
        "{next}"
    );
    assert!(
        next.contains(&format!(
            "\n\nHandoff from your session of generation 1 ({id}, {}): HANDOFF: half way\n\
             frob.rs is next\n(Marked read; again: gt mail read {id}.)\n\nHow to work here:\n",
            crate::common::NOW
        )),
        "{next}"
    );
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!(
            "{{\"id\":\"{id}\",\"state\":\"read\",\"at\":\"{}\"}}\n",
            crate::common::NOW
        )
    );
    // Shown once: the next prime has none; the other mail is still unread.
    let v: serde_json::Value = serde_json::from_str(&at_gen("2", &["prime", "--json"])).unwrap();
    assert_eq!(v["handoff"], serde_json::json!([]));
    let unread = at_gen("2", &["inbox", "--json"]);
    assert_eq!(
        crate::common::jsonl_ids(&unread),
        [other["id"].as_str().unwrap()]
    );
}

#[test]
fn done_is_refused_until_the_clone_is_clean_and_has_a_commit_then_tells_the_witness() {
    let env = TestEnv::new();
    let (id, clone) = spawned(&env);
    let witness = env.town.join("r/witness");

    let out = as_nux(&env, &clone, &["done"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt: {}: no commits on polecat/Nux beyond origin/main; commit your work, then run gt done again\n",
            clone.display()
        )
    );

    std::fs::write(clone.join("frob.rs"), "fn frob() {}\n").unwrap();
    let out = as_nux(&env, &clone, &["done"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt: {}: the clone is dirty (frob.rs); commit or remove them, then run gt done again\n",
            clone.display()
        )
    );
    assert!(env.inbox(&witness).iter().all(|m| m["type"] != "done"));

    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "frob once"]);
    let out = as_nux(&env, &clone, &["done", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = env.inbox_of(&witness, "done");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["id"], sent["id"]);
    assert_eq!(done[0]["from"], "r/Nux");
    assert_eq!(done[0]["subject"], format!("done {id}"));
    assert_eq!(done[0]["generation"], 1);

    // Not a polecat: refused.
    for (who, what) in [("r/witness", "a witness"), ("overseer", "an overseer")] {
        let out = env
            .cmd("gt")
            .env("GT_ADDRESS", who)
            .arg("done")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!("gt: gt done is for polecats; {who} is {what}\n")
        );
    }
}

#[test]
fn heartbeat_touches_the_callers_heartbeat_file() {
    let env = TestEnv::new();
    let (_, clone) = spawned(&env);
    let beat = env.town.join("r/polecats/Nux/heartbeat");
    std::fs::write(&beat, "kept").unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&beat)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = as_nux(&env, &clone, &["heartbeat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"");
    let modified = std::fs::metadata(&beat).unwrap().modified().unwrap();
    assert!(modified > old + std::time::Duration::from_secs(86_400 * 365 * 20));
    assert_eq!(std::fs::read_to_string(&beat).unwrap(), "kept");
}
