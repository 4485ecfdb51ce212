//! Stopping follows the work: a stopped polecat's issue is released, or kept
//! for the Witness when its clone has commits not yet queued; `gt stop`
//! stops the loops first and leaves nothing running on the town's socket or
//! in the town's process groups, recorded or not.

use serde_json::Value;

use crate::common::{TestEnv, Watcher, process_gone, wait_until};

fn issue(env: &TestEnv, id: &str) -> Value {
    serde_json::from_str(&env.ok("gt", &["issue", "show", id, "--json"])).unwrap()
}

#[test]
fn kill_keeps_the_claim_of_a_worker_with_commits_and_the_witness_submits_them() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "work");
    let ready = env.path().join("committed");
    let agent = format!(
        "echo x > x.txt && git add x.txt && git -c user.name=a -c user.email=a@b commit -qm x && touch {} && exec sleep 1000",
        ready.display()
    );
    env.ok("gt", &["spawn", "--issue", &id, "--agent", &agent]);
    assert!(
        wait_until(30, || ready.exists()),
        "the agent never committed"
    );
    assert_eq!(
        env.ok("gt", &["kill", "Nux"]),
        format!(
            "r/Nux stopped\n  keeps {id}: 1 commit(s) not yet queued (the Witness submits or nudges it)\n"
        )
    );
    let s = env.state(rig.join("polecats/Nux"));
    assert_eq!(
        (s["status"].as_str(), s.get("session")),
        (Some("working"), None)
    );
    let i = issue(&env, &id);
    assert_eq!(
        (i["status"].as_str(), i["assignee"].as_str()),
        (Some("in_progress"), Some("r/Nux"))
    );
    let out = env.ok("gt", &["witness", "patrol", "r", "--json"]);
    let actions: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(actions[0]["action"], "submitted", "{out}");
}

#[test]
fn sleep_and_wake_refuse_a_live_session_unless_forced_and_forcing_releases_the_claim() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.spawn_sleeper("r", "work");
    for verb in ["sleep", "wake"] {
        let (code, err) = env.fails("gt", &[verb, "Nux"]);
        assert_eq!(code, 2);
        assert_eq!(
            err,
            "gt: r/Nux is running; stop it first (gt kill r/Nux) or pass --force\n"
        );
    }
    assert_eq!(env.state(rig.join("polecats/Nux"))["status"], "working");
    assert_eq!(
        env.ok("gt", &["sleep", "--force", "Nux"]),
        format!("stopped r/Nux\n  released {id} (open again)\nr/Nux is asleep\n")
    );
    let i = issue(&env, &id);
    assert_eq!(
        (i["status"].as_str(), i.get("assignee")),
        (Some("open"), None)
    );
}

#[test]
fn a_new_issue_starts_with_no_nudges() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let (one, two) = (env.issue("r", "one"), env.issue("r", "two"));
    env.ok("gt", &["spawn", "--issue", &one, "--agent", "true"]);
    env.wait_session(rig.join("polecats/Nux"));
    env.edit_state(rig.join("polecats/Nux"), |s| {
        s["nudges"] = 2.into();
        s["status"] = "idle".into();
    });
    // The same issue again (sent back) keeps its count; a new one starts afresh.
    env.ok(
        "gt",
        &["spawn", "--issue", &one, "--name", "Nux", "--agent", "true"],
    );
    env.wait_session(rig.join("polecats/Nux"));
    assert_eq!(env.state(rig.join("polecats/Nux"))["nudges"], 2);
    env.edit_state(rig.join("polecats/Nux"), |s| s["status"] = "idle".into());
    env.ok("gt", &["issue", "release", &one, "--assignee", "r/Nux"]);
    env.ok(
        "gt",
        &["spawn", "--issue", &two, "--name", "Nux", "--agent", "true"],
    );
    assert!(env.state(rig.join("polecats/Nux")).get("nudges").is_none());
}

#[test]
fn stop_all_stops_the_loops_first_then_recorded_and_unrecorded_sessions() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let mut c = env.cmd("gt");
    c.args(["daemon", "run", "--json", "--every", "1h"]);
    let _daemon = Watcher::start(c, "gt-daemon: watching");
    let mut c = env.cmd("gt");
    c.args(["witness", "run", "r", "--json", "--every", "1h"]);
    let _witness = Watcher::start(c, "gt-witness: watching");

    env.spawn_sleeper("r", "work");
    let socket = env
        .session(rig.join("polecats/Nux"))
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    // A zombie: a session on the town's socket that no state.json names.
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        tmux(&["new-session", "-d", "-s", "gt-r-Wiz", "sleep 1000"])
            .status
            .success()
    );
    // A process-backend agent whose record was lost.
    let lost_pid = env.spawn_process("r", "Lost");
    env.edit_state(rig.join("polecats/Lost"), |s| {
        s.as_object_mut().unwrap().remove("session");
        s["status"] = "idle".into();
    });

    let report: Value = serde_json::from_str(&env.ok("gt", &["stop", "--all", "--json"])).unwrap();
    let loops: Vec<&str> = report["loops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(loops.len(), 2, "{report}");
    assert!(
        loops[0].starts_with("daemon (pid ") && loops[1].starts_with("r/witness loop (pid "),
        "{report}"
    );
    assert_eq!(report["agents"][0]["address"], "r/Nux");
    assert_eq!(report["agents"][0]["claim"], "released");
    let zombies: Vec<&str> = report["zombies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_str().unwrap())
        .collect();
    assert_eq!(zombies[0], "tmux session gt-r-Wiz", "{report}");
    assert_eq!(zombies.len(), 2, "{report}");
    assert!(
        zombies[1].starts_with(&format!("process group {lost_pid} (")),
        "{report}"
    );

    // Nothing runs: no loop, no tmux session, not the lost process.
    let status: Value = serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap();
    assert_eq!(status["daemon_running"], false);
    assert_eq!(status["rigs"][0]["witness_running"], false);
    assert!(!tmux(&["has-session", "-t", "=gt-r-Wiz"]).status.success());
    assert!(
        wait_until(10, || process_gone(lost_pid)),
        "the lost process survived"
    );
    // The zombie's name is free again.
    let wiz = env.issue("r", "wiz");
    env.ok(
        "gt",
        &[
            "spawn",
            "--issue",
            &wiz,
            "--name",
            "Wiz",
            "--agent",
            "exec sleep 1000",
        ],
    );
    // And a second stop finds only that.
    assert_eq!(
        env.ok("gt", &["stop", "--all"]),
        format!("stopped r/Wiz\n  released {wiz} (open again)\n1 session(s) stopped\n")
    );
}
