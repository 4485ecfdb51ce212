//! Many things at once, and damage: concurrent spawns under `max_workers`,
//! `gt stop --all` while the daemon watches, a lifecycle message from another
//! generation, junk in the Witness's inbox and in a polecat's state.

use std::process::Output;

use serde_json::Value;

use crate::common::{TestEnv, Watcher, edit_json};

/// Run `gt spawn` with each of `args` at the same moment; outputs in order.
fn spawn_all(env: &TestEnv, args: &[Vec<String>]) -> Vec<Output> {
    let children: Vec<_> = args
        .iter()
        .map(|a| {
            env.cmd("gt")
                .arg("spawn")
                .args(a)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eight_concurrent_spawns_give_max_workers_polecats_with_distinct_names() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["max_workers"] = 3.into());
    let args: Vec<Vec<String>> = (0..8)
        .map(|i| {
            let id = env.issue("r", &format!("task {i}"));
            ["--issue", &id, "--agent", "exec sleep 1000", "--json"]
                .map(String::from)
                .to_vec()
        })
        .collect();
    let outs = spawn_all(&env, &args);
    let started: Vec<Value> = outs
        .iter()
        .filter(|o| o.status.success())
        .map(|o| serde_json::from_slice(&o.stdout).unwrap())
        .collect();
    let mut names: Vec<&str> = started
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["r/Capable", "r/Nux", "r/Toast"]);
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
        assert_eq!(
            env.normalize(&stderr(o)),
            "gt: rig r is at capacity: 3 polecat(s) running, max_workers is 3 ($TEST_ENV/town/r/config.json)\n"
        );
    }
    // Nothing was made for the refused ones, and their issues are still open.
    let mut dirs: Vec<String> = std::fs::read_dir(rig.join("polecats"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["Capable", "Nux", "Toast"]);
    let open: Value =
        serde_json::from_str(&env.ok("gt", &["issue", "list", "--status", "open", "--json"]))
            .unwrap();
    assert_eq!(open.as_array().unwrap().len(), 5);
    env.ok("gt", &["stop", "--all"]);
}

#[test]
fn concurrent_spawns_on_one_issue_start_one_worker_and_make_nothing_else() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "contested");
    let args: Vec<Vec<String>> = (0..4)
        .map(|_| {
            ["--issue", &id, "--agent", "exec sleep 1000"]
                .map(String::from)
                .to_vec()
        })
        .collect();
    let outs = spawn_all(&env, &args);
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{:?}", outs.iter().map(stderr).collect::<Vec<_>>());
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(o),
            format!("gt: {id} is held by r/Nux (status in_progress); not claimed\n")
        );
    }
    assert_eq!(
        std::fs::read_dir(rig.join("polecats")).unwrap().count(),
        1,
        "one polecat made"
    );
    env.ok("gt", &["stop", "--all"]);
}

/// A stopped Witness is not a crashed one: the daemon watching its session
/// end does not restart it. (`gt stop --all` stops the daemon itself first;
/// `--rig` leaves it running, which is the race this is about.)
#[test]
fn a_stop_is_not_undone_by_a_running_daemon() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.ok(
        "gt",
        &["daemon", "start", "r/witness", "--agent", "exec sleep 1000"],
    );
    let mut cmd = env.cmd("gt");
    cmd.args(["daemon", "run", "--json", "--every", "1h"]);
    let mut daemon = Watcher::start(cmd, "gt-daemon: watching");
    assert_eq!(
        env.ok("gt", &["stop", "--rig", "r"]),
        "stopped r/witness\n1 session(s) stopped\n"
    );
    // A sentinel the daemon acts on: a refinery asking for a cycle. Passes
    // run one at a time, so by its line every pass that could have taken
    // the stop for a crash has run.
    // Replaced by rename, as the protocol asks: the daemon never reads half a file.
    let state = rig.join("refinery/state.json");
    let mut s = env.state(rig.join("refinery"));
    s["requesting_cycle"] = true.into();
    s["command"] = "exec sleep 1000".into();
    let tmp = rig.join("refinery/.state.json.tmp");
    std::fs::write(&tmp, s.to_string()).unwrap();
    std::fs::rename(&tmp, &state).unwrap();
    let line = daemon.next_json();
    assert_eq!(
        (line["action"].as_str(), line["subject"].as_str()),
        (Some("cycled"), Some("r/refinery")),
        "{line}"
    );
    let w = env.state(rig.join("witness"));
    assert_eq!(
        (w["status"].as_str(), w.get("session")),
        (Some("idle"), None)
    );
    drop(daemon);
    env.ok("gt", &["stop", "--all"]);
}

/// Done mail from generation 5 when the worker is at generation 1 (an
/// earlier worker of the same name, re-made) is stale, like an older one.
#[test]
fn a_done_from_a_newer_generation_does_not_act_on_the_current_worker() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.spawn_sleeper("r", "work");
    env.ok(
        "gt",
        &[
            "send",
            "r/witness",
            "--as",
            "r/Nux",
            "--type",
            "done",
            "--generation",
            "5",
            "-s",
            "done",
            "-m",
            "finished",
        ],
    );
    let out = env.ok("gt", &["witness", "patrol", "r", "--json"]);
    let actions: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(actions.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(actions[0]["action"], "stale-signal");
    assert!(
        actions[0]["detail"]
            .as_str()
            .unwrap()
            .ends_with("is about generation 5, the worker is at 1"),
        "{out}"
    );
    let s = env.state(rig.join("polecats/Nux"));
    assert_eq!(s["status"], "working");
    assert!(s["session"].is_string(), "{s}");
    env.ok("gt", &["stop", "--all"]);
}

/// The Witness names every file it could not read and patrols the rest.
#[test]
fn the_witness_reports_junk_in_its_inbox_and_an_unreadable_polecat_state() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    for name in ["Nux", "Toast"] {
        env.ok("gt", &["polecat", "add", "r", name]);
    }
    let inbox = env.inbox_path(rig.join("witness"));
    std::fs::write(&inbox, "this is not json\n").unwrap();
    std::fs::write(
        rig.join("polecats/Toast/state.json"),
        "{\"role\": \"polecat\",",
    )
    .unwrap();
    let out = env.ok("gt", &["witness", "patrol", "r", "--json"]);
    let actions: Value = serde_json::from_str(&out).unwrap();
    let rows: Vec<(String, String, String)> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["subject"].as_str().unwrap().to_string(),
                env.normalize(a["detail"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "unreadable".to_string(),
                "r/witness".to_string(),
                "$TEST_ENV/town/r/witness/mail/inbox.jsonl:1: not JSON (expected ident at column 2)"
                    .to_string()
            ),
            (
                "unreadable".to_string(),
                "r/Toast".to_string(),
                "$TEST_ENV/town/r/polecats/Toast/state.json:1:19: EOF while parsing a value"
                    .to_string()
            ),
        ]
    );
    // The text output says the same, one line each.
    let text = env.ok("gt", &["witness", "patrol", "r"]);
    assert_eq!(
        env.normalize(&text),
        "unreadable r/Toast: $TEST_ENV/town/r/polecats/Toast/state.json:1:19: EOF while parsing a value\n"
    );
}
