//! `gt witness patrol`: done signals, clean checks, merge-queue submission,
//! nudges and escalation, release of empty work, dispatch within max_workers,
//! and the epic report. Agents are stand-in shell commands (test doubles).

use serde_json::Value;

use crate::common::{TestEnv, edit_json, git, patrol_at};

/// A rig whose agents run `agent` (a stand-in for an AI agent), at most `max` at once.
fn rig_with_agent(env: &TestEnv, agent: &str, max: u64) -> std::path::PathBuf {
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |cfg| {
        cfg["agent_command"] = agent.into();
        cfg["max_workers"] = max.into();
        cfg["worker_spawn_delay"] = "0s".into();
    });
    rig
}

fn patrol(env: &TestEnv, args: &[&str]) -> Vec<(String, String)> {
    let mut argv = vec!["witness", "patrol", "r", "--json"];
    argv.extend_from_slice(args);
    crate::common::action_pairs(&env.ok("gt", &argv))
}

/// The stand-in commits a file and signals done, as the seed's polecat does.
const DILIGENT: &str = "echo work > work.txt && git add work.txt && git -c user.name=a -c user.email=a@b commit -qm work && gt send \"$GT_RIG/witness\" --type done --generation \"$GT_GENERATION\" -s \"done: $GT_ISSUE\" -m ok";

#[test]
fn clean_finished_work_goes_to_the_merge_queue_and_the_signal_is_read() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, DILIGENT, 8);
    let id = env.issue("r", "work");
    env.ok("gt", &["spawn", "--issue", &id]);
    env.wait_session(rig.join("polecats/Nux"));

    assert_eq!(
        patrol(&env, &[]),
        [("submitted".to_string(), "r/Nux".to_string())]
    );
    let pending: Vec<_> = std::fs::read_dir(rig.join("refinery/queue/pending"))
        .unwrap()
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(env.state(rig.join("polecats/Nux"))["status"], "done");
    // The done signal was consumed: the witness has no unread mail, and a
    // second patrol does nothing.
    assert_eq!(
        env.ok("gt", &["mail", "inbox", "--as", "r/witness", "--json"])
            .trim(),
        ""
    );
    assert_eq!(patrol(&env, &[]), []);
}

#[test]
fn a_dirty_clone_is_nudged_three_times_then_escalated() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, "echo scratch > untracked.txt", 8);
    let id = env.issue("r", "messy");
    env.ok("gt", &["spawn", "--issue", &id]);
    let home = rig.join("polecats/Nux");
    env.wait_session(&home);
    for n in 1..=3 {
        assert_eq!(
            patrol(&env, &[]),
            [("nudged".to_string(), "r/Nux".to_string())],
            "nudge {n}"
        );
        let last = env.inbox(&home).pop().unwrap();
        assert_eq!(last["type"], "nudge");
        assert_eq!(last["subject"], format!("nudge {n}/3"));
        assert!(
            last["body"].as_str().unwrap().contains("?? untracked.txt"),
            "{last}"
        );
        assert_eq!(last["generation"], 1);
    }
    assert_eq!(
        patrol(&env, &[]),
        [("escalated".to_string(), "r/Nux".to_string())]
    );
    assert_eq!(env.state(&home)["status"], "stuck");
    let mayor = env.inbox("mayor");
    assert_eq!(mayor.len(), 1);
    assert_eq!(mayor[0]["subject"], "stuck: r/Nux");
    assert_eq!(mayor[0]["from"], "r/witness");
    // Stuck workers are left to the Mayor: no more nudges.
    assert_eq!(patrol(&env, &[]), []);
}

#[test]
fn a_worker_that_ends_without_commits_gives_its_issue_back() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, "true", 8);
    let id = env.issue("r", "abandoned");
    env.ok("gt", &["spawn", "--issue", &id]);
    env.wait_session(rig.join("polecats/Nux"));
    // Seen an hour after its start: it ran (or was not looked at) longer than
    // a quick death, so it gave up rather than could not start.
    let done = patrol_at(&env, "2026-11-25T10:00:00Z");
    assert_eq!(
        done.iter()
            .map(|(a, s, _)| (a.clone(), s.clone()))
            .collect::<Vec<_>>(),
        [("released".to_string(), "r/Nux".to_string())]
    );
    let issue: Value =
        serde_json::from_str(&env.ok("gt", &["issue", "show", &id, "--json"])).unwrap();
    assert_eq!(
        (
            issue["status"].as_str(),
            issue.get("assignee").and_then(Value::as_str)
        ),
        (Some("open"), None)
    );
    assert_eq!(env.state(rig.join("polecats/Nux"))["status"], "idle");
    assert_eq!(
        env.inbox("mayor")[0]["subject"],
        format!("r/Nux ended without commits on {id}")
    );
}

#[test]
fn a_stale_done_signal_does_not_act_on_a_newer_generation() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, "exec sleep 1000", 8);
    let id = env.issue("r", "long");
    env.ok("gt", &["spawn", "--issue", &id]);
    let home = rig.join("polecats/Nux");
    env.edit_state(&home, |s| s["generation"] = 2.into());
    let stale = r#"{"id":"msg-old","from":"r/Nux","to":"r/witness","subject":"done: old","body":"","timestamp":"2026-01-01T00:00:00Z","type":"done","generation":1}"#;
    let out = env
        .cmd("gt")
        .args(["mail", "deliver"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{stale}\n").as_bytes())?;
            c.wait()
        });
    assert!(out.unwrap().success());
    assert_eq!(
        patrol(&env, &[]),
        [("stale-signal".to_string(), "r/Nux".to_string())]
    );
    assert!(
        gastown::session::is_alive(&env.session(&home)),
        "the live worker was not stopped"
    );
    env.ok("gt", &["kill", "r/Nux"]);
}

#[test]
fn dispatch_fills_max_workers_with_ready_children_and_reports_the_epic_once() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, DILIGENT, 1);
    let epic = {
        let v: Value = serde_json::from_str(&env.ok(
            "gt",
            &[
                "issue", "--rig", "r", "create", "Epic", "--type", "epic", "--json",
            ],
        ))
        .unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let child = |title: &str| {
        let v: Value = serde_json::from_str(&env.ok(
            "gt",
            &[
                "issue", "--rig", "r", "create", title, "--parent", &epic, "--json",
            ],
        ))
        .unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let (a, b) = (child("A"), child("B"));
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [("spawned".to_string(), "r/Nux".to_string())],
        "max_workers is 1"
    );
    env.wait_session(rig.join("polecats/Nux"));
    // Nux's work is submitted; the slot frees and B goes to the next polecat.
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [
            ("submitted".to_string(), "r/Nux".to_string()),
            ("spawned".to_string(), "r/Toast".to_string())
        ]
    );
    env.wait_session(rig.join("polecats/Toast"));
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [("submitted".to_string(), "r/Toast".to_string())]
    );
    for id in [&a, &b] {
        env.ok("gt", &["issue", "close", id, "--reason", "landed"]);
    }
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [("epic-complete".to_string(), "mayor".to_string())]
    );
    assert_eq!(patrol(&env, &["--epic", &epic]), []);
    let report = env.inbox("mayor").pop().unwrap();
    assert_eq!(report["subject"], format!("work complete: {epic}"));
    assert!(git(&rig.join("polecats/Toast/rig"), &["log", "--oneline"]).contains("work"));
}

#[test]
fn run_patrols_when_a_done_signal_arrives() {
    let env = TestEnv::new();
    // The stand-in waits for the watcher to be up (a FIFO it reads), then works.
    let go = env.path().join("go.fifo");
    crate::common::fifo(&go);
    let agent = format!("read _ < {} && {DILIGENT}", go.display());
    rig_with_agent(&env, &agent, 8);
    let id = env.issue("r", "work");
    env.ok("gt", &["spawn", "--issue", &id]);
    // A long timer: only the inotify wake can make it patrol in time.
    let mut cmd = env.cmd("gt");
    cmd.args(["witness", "run", "r", "--json", "--every", "1h"]);
    let mut witness = crate::common::Watcher::start(cmd, "gt-witness: watching rig r");
    crate::common::write_fifo(&go, "go\n");
    // The signal may come while the agent is still up: then the witness stops
    // it first (seed: "kill session" once clean), and submits in the same patrol.
    let mut seen = Vec::new();
    while !seen.iter().any(|(a, _)| a == "submitted") {
        let v = witness.next_json();
        seen.push((
            v["action"].as_str().unwrap().to_string(),
            v["subject"].as_str().unwrap().to_string(),
        ));
    }
    assert!(
        seen.iter()
            .all(|(a, s)| (a == "stopped" || a == "submitted") && s == "r/Nux"),
        "{seen:?}"
    );
}

#[test]
fn a_landed_worker_is_freed_and_reused_on_a_fresh_branch() {
    let env = TestEnv::new();
    let rig = rig_with_agent(
        &env,
        "echo \"$GT_ISSUE\" > \"$GT_ISSUE.txt\" && git add . && git -c user.name=a -c user.email=a@b commit -qm \"$GT_ISSUE\" && gt send \"$GT_RIG/witness\" --type done --generation \"$GT_GENERATION\" -s done -m ok",
        1,
    );
    let epic: Value = serde_json::from_str(&env.ok(
        "gt",
        &[
            "issue", "--rig", "r", "create", "E", "--type", "epic", "--json",
        ],
    ))
    .unwrap();
    let epic = epic["id"].as_str().unwrap().to_string();
    env.ok(
        "gt",
        &["issue", "--rig", "r", "create", "A", "--parent", &epic],
    );
    let nux = rig.join("polecats/Nux");
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [("spawned".to_string(), "r/Nux".to_string())]
    );
    env.wait_session(&nux);
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [("submitted".to_string(), "r/Nux".to_string())]
    );
    env.ok(
        "gt",
        &["issue", "--rig", "r", "create", "B", "--parent", &epic],
    );
    env.ok("gt", &["refinery", "process", "r", "--once"]);
    assert_eq!(
        patrol(&env, &["--epic", &epic]),
        [
            ("freed".to_string(), "r/Nux".to_string()),
            ("spawned".to_string(), "r/Nux".to_string())
        ],
        "the idle polecat takes the next issue"
    );
    let state = env.state(&nux);
    assert_eq!(state["generation"], 2);
    env.wait_session(&nux);
    // B was done on a fresh branch that starts at origin's main, which has A.
    let log = git(&nux.join("rig"), &["log", "--format=%s", "polecat/Nux"]);
    let first_issue = format!("{epic}.1");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            format!("{epic}.2").as_str(),
            first_issue.as_str(),
            "initial"
        ]
    );
    assert!(!rig.join("polecats/Toast").exists());
}

#[test]
fn a_failed_merge_sends_the_worker_back_to_its_issue() {
    let env = TestEnv::new();
    let rig = rig_with_agent(
        &env,
        &format!(
            "echo mine > README && git -c user.name=a -c user.email=a@b commit -qam mine && {}",
            "gt send \"$GT_RIG/witness\" --type done --generation \"$GT_GENERATION\" -s done -m ok"
        ),
        8,
    );
    let id = env.issue("r", "edit the README");
    env.ok("gt", &["spawn", "--issue", &id]);
    let nux = rig.join("polecats/Nux");
    env.wait_session(&nux);
    assert_eq!(
        patrol(&env, &[]),
        [("submitted".to_string(), "r/Nux".to_string())]
    );
    // Meanwhile someone else changes the README on origin: the merge conflicts.
    let other = env.path().join("other");
    git(
        env.path(),
        &[
            "clone",
            "-q",
            env.path().join("r-origin.git").to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("README"), "theirs\n").unwrap();
    git(&other, &["commit", "-qam", "theirs"]);
    git(&other, &["push", "-q", "origin", "main"]);
    env.ok_or_no("gt", &["refinery", "process", "r", "--once"]);
    assert_eq!(
        patrol(&env, &[]),
        [("sent-back".to_string(), "r/Nux".to_string())]
    );
    let state = env.state(&nux);
    assert_eq!(
        (
            state["generation"].as_u64(),
            state["issue"].as_str(),
            state["nudges"].as_u64()
        ),
        (Some(2), Some(id.as_str()), Some(1))
    );
    let subjects: Vec<String> = env
        .inbox(&nux)
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    assert!(
        subjects.iter().any(|s| s.starts_with("merge failed")),
        "{subjects:?}"
    );
    assert_eq!(subjects.last().unwrap(), "nudge 1/3");
    env.wait_session(&nux);
}

#[test]
fn a_live_but_silent_worker_is_nudged_after_stuck_after() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, "exec sleep 1000", 8);
    edit_json(&rig.join("config.json"), |c| {
        c["stuck_after"] = "30m".into()
    });
    let id = env.issue("r", "long");
    env.ok("gt", &["spawn", "--issue", &id]);
    // Just started: not silent.
    assert_eq!(patrol(&env, &[]), []);
    // An hour later (GT_NOW) with no heartbeat since the start: nudged.
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    let out = env
        .cmd("gt")
        .args(["witness", "patrol", "r"])
        .env("GT_NOW", &later)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("nudged r/Nux: 1/3: no heartbeat for "),
        "{stdout}"
    );
    env.ok("gt", &["kill", "r/Nux"]);
}

/// The Witness's `died: r/Nux` reports.
fn died_mail(env: &TestEnv) -> Vec<Value> {
    env.inbox("r/witness")
        .into_iter()
        .filter(|m| m["subject"] == "died: r/Nux")
        .collect()
}

/// `done` is one action about r/Nux, `action`, its detail starting `detail`.
fn only_nux(done: &[(String, String, String)], action: &str, detail: &str) {
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!((done[0].0.as_str(), done[0].1.as_str()), (action, "r/Nux"));
    assert!(done[0].2.starts_with(detail), "{}", done[0].2);
}

#[test]
fn a_worker_that_exits_0_at_once_without_work_is_backed_off_not_dispatched_again() {
    let env = TestEnv::new();
    // The stand-in exits 0 at once with nothing done, as a runtime that cannot
    // work here may: released, its issue would be dispatched again for ever.
    let rig = rig_with_agent(&env, "echo 'stand-in: nothing to do'; exit 0", 8);
    edit_json(&env.town.join("config/town.json"), |c| {
        c["max_restarts"] = 2.into();
    });
    let epic: Value = serde_json::from_str(&env.ok(
        "gt",
        &[
            "issue", "--rig", "r", "create", "E", "--type", "epic", "--json",
        ],
    ))
    .unwrap();
    let epic = epic["id"].as_str().unwrap().to_string();
    let id: Value = serde_json::from_str(&env.ok(
        "gt",
        &[
            "issue", "--rig", "r", "create", "idle", "--parent", &epic, "--json",
        ],
    ))
    .unwrap();
    let id = id["id"].as_str().unwrap().to_string();
    let home = rig.join("polecats/Nux");
    let log = home.join("session.log");
    let patrol = |now: &str| crate::common::patrol_args_at(&env, now, &["--epic", &epic]);
    // The session has ended and tmux has copied its `n`-th line to the log.
    let ended = |n: usize| {
        env.wait_session(&home);
        assert!(crate::common::wait_until(10, || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("stand-in: nothing to do")
                .count()
                == n
        }));
    };
    let died = || died_mail(&env);
    let t0 = crate::common::NOW;

    let done = patrol(t0);
    assert_eq!(
        (done[0].0.as_str(), done[0].1.as_str(), done.len()),
        ("spawned", "r/Nux", 1)
    );
    ended(1);
    let first = env.session(&home);
    // The first exit: reported once, as a quick death, restarted at once.
    only_nux(
        &patrol(t0),
        "restarted",
        "session exited 0 without work 0s after its start; restart 1/2: generation 2",
    );
    let mail = died();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(
        mail[0]["body"].as_str().unwrap(),
        format!(
            "It exited 0 without work: no commits beyond origin's main, no gt done, no cycle request.\nIts session {first} ended 0s after its start, exit status 0.\nLog: {}\nIts last 1 line(s) of output:\n  stand-in: nothing to do\nRestarted now (restart 1/2).",
            log.display()
        )
    );
    let issue: Value =
        serde_json::from_str(&env.ok("gt", &["issue", "show", &id, "--json"])).unwrap();
    assert_eq!(issue["assignee"], "r/Nux");

    // The second: backed off 10 s; the issue stays Nux's, nobody else is spawned.
    ended(2);
    assert_eq!(
        patrol(t0),
        [(
            "backoff".to_string(),
            "r/Nux".to_string(),
            "session exited 0 without work 0s after its start; restart 2/2 at 2026-11-25T09:00:10Z (in 10s)".to_string()
        )]
    );
    assert_eq!(patrol("2026-11-25T09:00:09Z"), []);
    assert_eq!(died().len(), 2);
    let done = patrol("2026-11-25T09:00:10Z");
    assert_eq!(
        (done[0].0.as_str(), done.len()),
        ("restarted", 1),
        "{done:?}"
    );

    // The third, past max_restarts: marked dead, the Mayor told, left alone.
    ended(3);
    let done = patrol("2026-11-25T09:00:10Z");
    assert_eq!((done[0].0.as_str(), done.len()), ("gave-up", 1), "{done:?}");
    assert_eq!(env.state(&home)["status"], "dead");
    assert_eq!(died().len(), 3);
    let mayor = env.inbox("mayor");
    assert_eq!(
        mayor
            .iter()
            .map(|m| m["subject"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["dead: r/Nux"]
    );
    assert_eq!(patrol("2026-11-25T10:00:00Z"), []);
    assert!(!rig.join("polecats/Toast").exists());
}

#[test]
fn a_worker_that_dies_at_once_is_reported_restarted_with_backoff_then_given_up() {
    let env = TestEnv::new();
    // The stand-in agent fails at once, as a runtime that cannot start does.
    let rig = rig_with_agent(&env, "echo 'stand-in: cannot reach the model'; exit 3", 8);
    edit_json(&env.town.join("config/town.json"), |c| {
        c["max_restarts"] = 2.into();
        c["session_backend"] = "process".into();
    });
    let id = env.issue("r", "doomed");
    env.ok("gt", &["spawn", "--issue", &id]);
    let home = rig.join("polecats/Nux");
    let t0 = crate::common::NOW;
    let died = died_mail;

    // The first death: reported with its exit status and output, restarted at once.
    env.wait_session(&home);
    let first = env.session(&home);
    only_nux(
        &patrol_at(&env, t0),
        "restarted",
        "session failed 0s after its start (exit status 3); restart 1/2: generation 2",
    );
    let mail = died(&env);
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(
        (mail[0]["type"].as_str(), mail[0]["by"].as_str()),
        (Some("escalation"), Some("r/witness"))
    );
    assert_eq!(mail[0]["generation"], 1);
    let body = mail[0]["body"].as_str().unwrap();
    let log = home.join("session.log");
    assert_eq!(
        body,
        format!(
            "Its session {first} ended 0s after its start, exit status 3.\nLog: {}\nIts last 1 line(s) of output:\n  stand-in: cannot reach the model\nRestarted now (restart 1/2).",
            log.display()
        )
    );
    let s = env.state(&home);
    assert_eq!(
        (s["restarts"].as_u64(), s["generation"].as_u64()),
        (Some(1), Some(2))
    );
    // The issue stays with the worker: nothing else takes it meanwhile.
    let issue: Value =
        serde_json::from_str(&env.ok("gt", &["issue", "show", &id, "--json"])).unwrap();
    assert_eq!(issue["assignee"], "r/Nux");

    // The second: reported, backed off 10 s, once.
    env.wait_session(&home);
    let done = patrol_at(&env, t0);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        (done[0].0.as_str(), done[0].2.as_str()),
        (
            "backoff",
            "session failed 0s after its start (exit status 3); restart 2/2 at 2026-11-25T09:00:10Z (in 10s)"
        )
    );
    assert_eq!(env.state(&home)["next_restart_at"], "2026-11-25T09:00:10Z");
    assert_eq!(patrol_at(&env, "2026-11-25T09:00:09Z"), []);
    assert_eq!(died(&env).len(), 2);
    let done = patrol_at(&env, "2026-11-25T09:00:10Z");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].0, "restarted");
    assert_eq!(died(&env).len(), 2);

    // The third, past max_restarts: given up, the Mayor told, left alone.
    env.wait_session(&home);
    let done = patrol_at(&env, "2026-11-25T09:00:10Z");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].0, "gave-up");
    let s = env.state(&home);
    assert_eq!(
        (s["status"].as_str(), s["generation"].as_u64()),
        (Some("dead"), Some(3))
    );
    assert_eq!(died(&env).len(), 3);
    let mayor = env.inbox("mayor");
    assert_eq!(mayor.len(), 1, "{mayor:?}");
    assert_eq!(mayor[0]["subject"], "dead: r/Nux");
    assert!(
        mayor[0]["body"].as_str().unwrap().ends_with(&format!(
            "3 quick deaths in a row: not restarted again; marked dead, the Mayor told.\nIts issue stays assigned to it. Try again with: gt spawn --issue {id} --name Nux"
        )),
        "{}",
        mayor[0]["body"]
    );
    assert_eq!(patrol_at(&env, "2026-11-25T10:00:00Z"), []);
    assert_eq!(died(&env).len(), 3);
}

/// Rig `r` with polecat Nux spawned on an issue, its session a sleeper:
/// the rig, Nux's home and its clone.
fn nux_at_work(env: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let rig = rig_with_agent(env, "exec sleep 1000", 8);
    let id = env.issue("r", "work");
    env.ok("gt", &["spawn", "--issue", &id]);
    let home = rig.join("polecats/Nux");
    let clone = home.join("rig");
    (rig, home, clone)
}

/// A worker that asks for a cycle and then says done has finished: its
/// live session is stopped and its work queued, and the daemon is not left
/// a cycle to start (the cycle request used to win, and the work was lost).
#[test]
fn a_done_after_a_cycle_request_queues_the_work() {
    let env = TestEnv::new();
    let (rig, home, clone) = nux_at_work(&env);
    crate::queue::commit(&clone, "x.txt", "x");
    let as_nux = |args: &[&str]| {
        let out = env.as_agent("r/Nux", &clone, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    as_nux(&["mail", "handoff", "--cycle", "-m", "about to finish"]);
    as_nux(&["done"]);
    assert_eq!(
        patrol(&env, &[]),
        [
            ("stopped".to_string(), "r/Nux".to_string()),
            ("submitted".to_string(), "r/Nux".to_string())
        ]
    );
    let state = env.state(&home);
    assert_eq!(
        (
            &state["status"],
            &state["requesting_cycle"],
            &state["session"]
        ),
        (&Value::from("done"), &Value::from(false), &Value::Null)
    );
    assert_eq!(crate::queue::files(&rig, "pending").len(), 1);
}

/// Commits made on `main` instead of the work branch are not queued as if
/// they were the work: `gt done` refuses, naming where they are, and the
/// Witness nudges a worker whose session ended with them.
#[test]
fn commits_on_main_are_not_taken_for_the_work() {
    let env = TestEnv::new();
    let (rig, home, clone) = nux_at_work(&env);
    git(&clone, &["checkout", "-q", "main"]);
    crate::queue::commit(&clone, "x.txt", "x");
    let why = "your 1 commit(s) are on branch main, not on polecat/Nux, the branch the \
               Refinery merges; move them there (git checkout polecat/Nux && git merge main), \
               then run gt done";
    let out = env.as_agent("r/Nux", &clone, &["done"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("gt: {}: {why}\n", clone.display())
    );
    env.ok("gt", &["kill", "r/Nux"]);
    // gt kill left it idle, claim kept for its unqueued commit; as working
    // with its session over, the Witness looks at the clone.
    env.edit_state(&home, |s| s["status"] = "working".into());
    assert_eq!(
        patrol(&env, &[]),
        [("nudged".to_string(), "r/Nux".to_string())]
    );
    let nudge = env.inbox_of(&home, "nudge");
    assert!(
        nudge[0]["body"].as_str().is_some_and(|b| b.contains(why)),
        "{nudge:?}"
    );
    assert!(crate::queue::files(&rig, "pending").is_empty());
}

/// A hand-made entry (no generation) that lands after the polecat was given
/// new work does not free its live session, and the done it sends for the new
/// work is acted on.
#[test]
fn a_hand_made_entry_landing_late_does_not_free_the_next_session() {
    let env = TestEnv::new();
    let rig = rig_with_agent(&env, "exec sleep 1000", 8);
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    let home = rig.join("polecats/Nux");
    let clone = home.join("rig");
    crate::queue::commit(&clone, "x.txt", "x");
    std::fs::create_dir_all(rig.join("refinery/queue/pending")).unwrap();
    std::fs::write(
        rig.join("refinery/queue/pending/20261125T085000.000000Z-Nux.json"),
        "{\"polecat\":\"r/Nux\",\"branch\":\"polecat/Nux\"}\n",
    )
    .unwrap();
    env.ok("gt-refinery", &["process", "r", "--once"]);
    let merged = env.inbox_of(rig.join("witness"), "merged");
    assert_eq!(
        merged[0]["generation"], 0,
        "bound to the generation checked"
    );
    let id = env.issue("r", "next");
    env.ok("gt", &["spawn", "--issue", &id, "--name", "Nux"]);
    crate::queue::commit(&clone, "y.txt", "y");
    let out = env.as_agent("r/Nux", &clone, &["done"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        patrol(&env, &[]),
        [
            ("stale-signal".to_string(), "r/Nux".to_string()),
            ("stopped".to_string(), "r/Nux".to_string()),
            ("submitted".to_string(), "r/Nux".to_string())
        ]
    );
    assert_eq!(env.state(&home)["status"], "done");
}

/// An agent that asks its Witness for help (as gt prime tells it) is heard:
/// the patrol answers no such mail, so it forwards it to the Mayor, once,
/// and marks it read; other mail is left alone.
#[test]
fn a_call_for_help_is_forwarded_to_the_mayor_once() {
    let env = TestEnv::new();
    let (_, _, clone) = nux_at_work(&env);
    let out = env.as_agent(
        "r/Nux",
        &clone,
        &[
            "send",
            "r/witness",
            "-s",
            "help",
            "-m",
            "the tests need a database",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    env.ok(
        "gt",
        &["send", "r/witness", "-s", "from a person", "-m", "x"],
    );
    assert_eq!(
        patrol(&env, &[]),
        [("forwarded".to_string(), "r/Nux".to_string())]
    );
    let fwd = env.inbox("mayor");
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(
        (
            &fwd[0]["subject"],
            &fwd[0]["type"],
            &fwd[0]["from"],
            &fwd[0]["by"]
        ),
        (
            &Value::from("fwd: help"),
            &Value::from("escalation"),
            &Value::from("r/witness"),
            &Value::from("gt-witness")
        )
    );
    let body = fwd[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with("r/Nux wrote to r/witness, whose patrol acts only on lifecycle mail")
            && body.ends_with("\n\nthe tests need a database"),
        "{body}"
    );
    // Read: not forwarded again; the person's mail is still unread.
    assert_eq!(patrol(&env, &[]), []);
    assert_eq!(env.inbox("mayor").len(), 1);
    let unread = env.ok("gt", &["inbox", "--as", "r/witness", "--json"]);
    assert_eq!(unread.lines().count(), 1, "{unread}");
    assert!(unread.contains("from a person"), "{unread}");
    env.ok("gt", &["kill", "r/Nux"]);
}
