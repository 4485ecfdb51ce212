//! `gt daemon`: session cycling on request (the new session reads its handoff
//! mail), polecats left to the Witness, crash restarts with growing backoff and
//! a final report, stale heartbeats reported once per silence, and `run`
//! reacting to a state.json change. Agents are stand-in shell commands in real
//! tmux sessions on the test town's own socket; time-based decisions use GT_NOW.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::{TestEnv, Watcher, edit_json, read_fifo, wait_until, write_fifo};

fn fifo(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.path().join(name);
    crate::common::fifo(&p);
    p
}

/// `gt daemon tick --json` at time `now` (None: the real clock): (action, subject, detail).
fn tick(env: &TestEnv, now: Option<&str>) -> Vec<(String, String, String)> {
    let mut c = env.cmd("gt");
    c.args(["daemon", "tick", "--json"]);
    match now {
        Some(t) => c.env("GT_NOW", t),
        None => c.env_remove("GT_NOW"),
    };
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["subject"].as_str().unwrap().to_string(),
                a["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn actions(list: &[(String, String, String)]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|(a, s, _)| (a.as_str(), s.as_str()))
        .collect()
}

fn set_town(env: &TestEnv, field: &str, value: Value) {
    edit_json(&env.town.join("config/town.json"), |c| c[field] = value);
}

#[test]
fn a_cycle_request_gets_a_fresh_session_that_reads_its_handoff() {
    let env = TestEnv::new();
    env.add_rig("r");
    let out = fifo(&env, "out.fifo");
    // Generation 1 hands off and exits; generation 2 reads its inbox.
    let agent = format!(
        "if [ \"$GT_GENERATION\" = 1 ]; then gt mail handoff --cycle -s 'patrol state' -m 'three polecats out'; \
         else {{ echo \"generation $GT_GENERATION\"; gt inbox --json; }} > {}; fi",
        out.display()
    );
    let started = env.ok("gt", &["daemon", "start", "r/witness", "--agent", &agent]);
    assert!(
        started.starts_with("started r/witness: generation 1, session tmux:gt-"),
        "{started}"
    );
    let first = env.state("r/witness");
    assert_eq!(first["command"], agent.as_str());
    env.wait_session("r/witness");
    assert_eq!(env.state("r/witness")["requesting_cycle"], true);

    let done = tick(&env, None);
    assert_eq!(actions(&done), [("cycled", "r/witness")]);
    let got = read_fifo(&out);
    let mut lines = got.lines();
    assert_eq!(lines.next(), Some("generation 2"));
    let note: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(note["subject"], "HANDOFF: patrol state");
    assert_eq!(note["body"], "three polecats out");
    assert_eq!(note["from"], "r/witness");
    assert_eq!(note["generation"], 1);
    assert_eq!(lines.next(), None);

    let second = env.state("r/witness");
    assert_eq!(second["generation"], 2);
    assert_eq!(second["requesting_cycle"], false);
    assert_eq!(second["status"], "working");
    assert_eq!(second["command"], agent.as_str());
    assert_ne!(second["session"], first["session"]);
    assert!(done[0].2.starts_with("generation 2, session tmux:"));
}

#[test]
fn an_ended_polecat_without_a_cycle_request_is_left_to_the_witness() {
    let env = TestEnv::new();
    env.add_rig("r");
    let id = env.issue("r", "work");
    env.ok("gt", &["spawn", "--issue", &id, "--agent", "true"]);
    env.wait_session("r/polecats/Nux");
    let before = std::fs::read(env.home("r/polecats/Nux").join("state.json")).unwrap();
    assert_eq!(tick(&env, None), []);
    assert_eq!(env.ok("gt", &["daemon", "tick"]), "nothing to do\n");
    assert_eq!(
        std::fs::read(env.home("r/polecats/Nux").join("state.json")).unwrap(),
        before
    );
    let s = env.state("r/polecats/Nux");
    assert_eq!(
        (s["generation"].as_u64(), s["command"].as_str()),
        (Some(1), Some("true"))
    );
}

#[test]
fn a_crashing_witness_is_restarted_with_growing_backoff_then_given_up() {
    let env = TestEnv::new();
    env.add_rig("r");
    set_town(&env, "max_restarts", 3.into());
    let t0 = "2026-11-25T10:00:00Z";
    let mut c = env.cmd("gt");
    c.args(["daemon", "start", "r/witness", "--agent", "exit 3"])
        .env("GT_NOW", t0);
    assert!(c.output().unwrap().status.success());
    let w = "r/witness";

    env.wait_session(w);
    let done = tick(&env, Some(t0));
    assert_eq!(actions(&done), [("restarted", w)]);
    assert!(
        done[0].2.contains("restart 1/3: generation 2"),
        "{}",
        done[0].2
    );
    assert_eq!(env.state(w)["restarts"], 1);

    env.wait_session(w);
    assert_eq!(actions(&tick(&env, Some(t0))), [("backoff", w)]);
    let s = env.state(w);
    assert_eq!(s["crashed_at"], t0);
    assert_eq!(s["next_restart_at"], "2026-11-25T10:00:10Z");
    // Told once; nothing happens before the time.
    assert_eq!(tick(&env, Some("2026-11-25T10:00:09Z")), []);
    let done = tick(&env, Some("2026-11-25T10:00:10Z"));
    assert_eq!(actions(&done), [("restarted", w)]);
    let s = env.state(w);
    assert_eq!(
        (s["restarts"].as_u64(), s["generation"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(s.get("next_restart_at").is_none() && s.get("crashed_at").is_none());

    // The wait doubles.
    env.wait_session(w);
    assert_eq!(
        actions(&tick(&env, Some("2026-11-25T10:00:10Z"))),
        [("backoff", w)]
    );
    assert_eq!(env.state(w)["next_restart_at"], "2026-11-25T10:00:30Z");
    assert_eq!(
        actions(&tick(&env, Some("2026-11-25T10:00:30Z"))),
        [("restarted", w)]
    );

    // The fourth quick crash: given up, the Mayor told once.
    env.wait_session(w);
    let done = tick(&env, Some("2026-11-25T10:00:30Z"));
    assert_eq!(actions(&done), [("gave-up", w)]);
    assert_eq!(env.state(w)["status"], "dead");
    // An hour on, nothing is restarted; the report, unread, reaches the overseer.
    assert_eq!(
        actions(&tick(&env, Some("2026-11-25T11:00:00Z"))),
        [("forwarded", "mayor")]
    );
    let to_mayor = env.inbox("mayor");
    assert_eq!(to_mayor.len(), 1, "{to_mayor:?}");
    assert_eq!(to_mayor[0]["subject"], "dead: r/witness");
    assert_eq!(to_mayor[0]["from"], "r/witness");
    assert_eq!(to_mayor[0]["type"], "escalation");
    assert_eq!(to_mayor[0]["by"], "gt-daemon");
    assert_eq!(to_mayor[0]["generation"], 4);
    let body = to_mayor[0]["body"].as_str().unwrap();
    assert!(
        body.contains("ended 0s after its start, exit status 3.\n")
            && body.contains("It wrote no output.\n"),
        "{body}"
    );

    // Started again by hand: a clean slate.
    env.ok("gt", &["daemon", "start", w]);
    let s = env.state(w);
    assert_eq!(
        (s["status"].as_str(), s["generation"].as_u64()),
        (Some("working"), Some(5))
    );
    assert!(s.get("restarts").is_none());
}

#[test]
fn a_stale_heartbeat_is_reported_once_per_silence() {
    let env = TestEnv::new();
    env.add_rig("r");
    let go = fifo(&env, "go.fifo");
    let agent = format!("read _ < {}", go.display());
    let at = |t: &str, args: &[&str]| {
        let out = env.cmd("gt").args(args).env("GT_NOW", t).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    at(
        "2026-11-25T09:00:00Z",
        &["daemon", "start", "r/refinery", "--agent", &agent],
    );
    let id = env.issue("r", "work");
    // Started after its heartbeat file was last touched (by an earlier session).
    at(
        "2026-11-25T10:05:00Z",
        &["spawn", "--issue", &id, "--agent", "sleep 600"],
    );
    let touch_at = |home: &str, at: &str| {
        let t: jiff::Timestamp = at.parse().unwrap();
        std::fs::File::create(env.town.join(home).join("heartbeat"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(t.as_second() as u64))
            .unwrap();
    };
    let touch = |at: &str| touch_at("r/refinery", at);
    touch("2026-11-25T10:00:00Z");
    touch_at("r/polecats/Nux", "2026-11-25T10:00:00Z");
    // The reports are what this test reads; forwarding them has its own.
    set_town(&env, "escalation_forward_after", "off".into());
    assert_eq!(tick(&env, Some("2026-11-25T10:09:59Z")), []);
    let done = tick(&env, Some("2026-11-25T10:10:00Z"));
    assert_eq!(actions(&done), [("heartbeat-stale", "r/refinery")]);
    assert_eq!(
        done[0].2,
        "no heartbeat for 600s (last 2026-11-25T10:00:00Z, timeout 600s)"
    );
    assert_eq!(
        actions(&tick(&env, Some("2026-11-25T10:15:00Z"))),
        [("heartbeat-stale", "r/Nux")]
    );
    // A polecat is its Witness's to deal with (seed: the Mayor is never involved).
    let to_witness = env.inbox("r/witness");
    assert_eq!(to_witness.len(), 1);
    assert_eq!(to_witness[0]["subject"], "no heartbeat: r/Nux");
    touch_at("r/polecats/Nux", "2026-11-25T12:00:00Z");
    assert_eq!(tick(&env, Some("2026-11-25T10:30:00Z")), []);
    let to_mayor = env.inbox("mayor");
    assert_eq!(to_mayor.len(), 1);
    assert_eq!(to_mayor[0]["subject"], "no heartbeat: r/refinery");

    // It beats again, then falls silent again: a new report.
    touch("2026-11-25T11:00:00Z");
    assert_eq!(tick(&env, Some("2026-11-25T11:01:00Z")), []);
    assert!(env.state("r/refinery").get("heartbeat_reported").is_none());
    set_town(&env, "heartbeat_timeout", "2m".into());
    assert_eq!(
        actions(&tick(&env, Some("2026-11-25T11:02:00Z"))),
        [("heartbeat-stale", "r/refinery")]
    );
    assert_eq!(env.inbox("mayor").len(), 2);
    write_fifo(&go, "done\n");
}

#[test]
fn run_cycles_an_agent_when_its_state_asks_for_it() {
    let env = TestEnv::new();
    env.add_rig("r");
    let out = fifo(&env, "out.fifo");
    let agent = format!(
        "[ \"$GT_GENERATION\" = 1 ] || {{ echo \"$GT_GENERATION $GT_ISSUE\"; gt inbox --json; }} > {}",
        out.display()
    );
    let id = env.issue("r", "work");
    env.ok("gt", &["spawn", "--issue", &id, "--agent", &agent]);
    env.wait_session("r/polecats/Nux");
    // A long timer: only inotify can make it act in time.
    let mut cmd = env.cmd("gt");
    cmd.args(["daemon", "run", "--json", "--every", "1h"]);
    let mut daemon = Watcher::start(cmd, "gt-daemon: watching ");
    // The polecat's (ended) session asks for its next one, as an agent would.
    let mut c = env.cmd("gt");
    c.args(["mail", "handoff", "--cycle", "-m", "pick up at step 3"])
        .env("GT_ADDRESS", "r/Nux");
    assert!(c.output().unwrap().status.success());

    let got = read_fifo(&out);
    let mut lines = got.lines();
    assert_eq!(lines.next(), Some(format!("2 {id}").as_str()));
    let note: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(note["body"], "pick up at step 3");
    let v = daemon.next_json();
    assert_eq!(
        (v["action"].as_str(), v["subject"].as_str()),
        (Some("cycled"), Some("r/Nux"))
    );
    drop(daemon);
    assert_eq!(env.state("r/polecats/Nux")["generation"], 2);
}

#[test]
fn start_takes_the_town_agent_command_for_the_mayor_and_refuses_a_live_agent() {
    let env = TestEnv::new();
    let (code, err) = env.fails("gt", &["daemon", "start", "mayor"]);
    let root = env.town.canonicalize().unwrap();
    assert_eq!(code, 2);
    assert_eq!(
        env.normalize(&err),
        "gt-daemon: no agent command for mayor: none recorded in $TEST_ENV/town/mayor/state.json, \
         none in $TEST_ENV/town/config/town.json (\"agent\" or \"agent_command\"); pass --agent\n"
    );
    let out = fifo(&env, "out.fifo");
    let go = fifo(&env, "go.fifo");
    set_town(
        &env,
        "agent_command",
        format!(
            "echo \"$GT_ROLE $GT_ADDRESS ${{GT_RIG-none}} $GT_GENERATION $PWD\" > {}; read _ < {}",
            out.display(),
            go.display()
        )
        .into(),
    );
    env.ok("gt", &["daemon", "start", "mayor"]);
    assert_eq!(
        read_fifo(&out),
        format!("mayor mayor none 1 {}\n", root.join("mayor").display())
    );
    let (code, err) = env.fails("gt", &["daemon", "start", "mayor"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("gt-daemon: mayor is already running (session tmux:"),
        "{err}"
    );
    write_fifo(&go, "go\n");
}

#[test]
fn the_witness_leaves_a_cycling_polecat_to_the_daemon() {
    let env = TestEnv::new();
    env.add_rig("r");
    let id = env.issue("r", "work");
    let agent = "[ \"$GT_GENERATION\" = 1 ] && gt mail handoff --cycle -m 'half way'";
    env.ok("gt", &["spawn", "--issue", &id, "--agent", agent]);
    env.wait_session("r/polecats/Nux");
    // Ended with no commits: without the request the Witness would release the issue.
    assert_eq!(
        env.ok("gt", &["witness", "patrol", "r"]),
        "nothing to do in rig r\n"
    );
    assert_eq!(actions(&tick(&env, None)), [("cycled", "r/Nux")]);
    let s = env.state("r/polecats/Nux");
    assert_eq!(
        (s["generation"].as_u64(), s["issue"].as_str()),
        (Some(2), Some(id.as_str()))
    );
}

#[test]
fn a_cycle_that_cannot_start_is_reported_once_and_retried() {
    let env = TestEnv::new();
    env.add_rig("r");
    // The Witness asks for a cycle but nothing says what to run.
    let mut c = env.cmd("gt");
    c.args(["mail", "handoff", "--cycle", "-m", "bye"])
        .env("GT_ADDRESS", "r/witness");
    assert!(c.output().unwrap().status.success());
    let done = tick(&env, None);
    assert_eq!(actions(&done), [("error", "r/witness")]);
    assert!(
        done[0].2.starts_with("no agent command for r/witness"),
        "{}",
        done[0].2
    );
    assert_eq!(actions(&tick(&env, None)), [("error", "r/witness")]);
    let to_mayor = env.inbox("mayor");
    assert_eq!(to_mayor.len(), 1);
    assert_eq!(to_mayor[0]["subject"], "cannot start: r/witness");
    assert_eq!(env.state("r/witness")["requesting_cycle"], true);

    // Once the rig says what to run, the next pass cycles it.
    edit_json(&env.town.join("r/config.json"), |c| {
        c["agent_command"] = "true".into()
    });
    assert_eq!(actions(&tick(&env, None)), [("cycled", "r/witness")]);
    let s = env.state("r/witness");
    assert!(s.get("start_error").is_none());
    assert_eq!(s["requesting_cycle"], false);
}

#[test]
fn run_cycles_an_agent_when_its_session_ends() {
    let env = TestEnv::new();
    env.add_rig("r");
    let (go, hold, out) = (
        fifo(&env, "go.fifo"),
        fifo(&env, "hold.fifo"),
        fifo(&env, "out.fifo"),
    );
    // Generation 1 leaves a child holding session.log open, so its own exit
    // closes no log file; the daemon learns of it from its wait on the
    // session or from the exit status its leader writes (session.exit).
    let agent = format!(
        "if [ \"$GT_GENERATION\" = 1 ]; then {{ read _ < {}; }} & read _ < {}; else echo \"$GT_GENERATION\" > {}; fi",
        hold.display(),
        go.display(),
        out.display()
    );
    let gt = |args: &[&str]| {
        let mut c = env.cmd("gt");
        c.args(args).env("GT_SESSION_BACKEND", "process");
        c
    };
    assert!(
        gt(&["daemon", "start", "r/refinery", "--agent", &agent])
            .output()
            .unwrap()
            .status
            .success()
    );
    let handoff = gt(&["mail", "handoff", "--cycle", "-m", "next one"])
        .env("GT_ADDRESS", "r/refinery")
        .output()
        .unwrap();
    assert!(handoff.status.success());
    let mut daemon = Watcher::start(
        gt(&["daemon", "run", "--json", "--every", "1h"]),
        "gt-daemon: watching ",
    );
    // The first pass saw it alive; now only the daemon's wait on the session
    // can start the next one.
    write_fifo(&go, "go\n");
    assert_eq!(read_fifo(&out), "2\n");
    let v = daemon.next_json();
    assert_eq!(
        (v["action"].as_str(), v["subject"].as_str()),
        (Some("cycled"), Some("r/refinery"))
    );
    drop(daemon);
    write_fifo(&hold, "done\n");
}

#[test]
fn escalations_unread_too_long_are_forwarded_to_the_overseer_once() {
    let env = TestEnv::new();
    env.add_rig("r");
    // NOW is 09:00: one unread for 20 minutes, one for 5, one read long ago.
    let old = env.escalate("2026-11-25T08:40:00Z", "stuck: r/Nux");
    let new = env.escalate("2026-11-25T08:55:00Z", "stuck: r/Toast");
    let read = env.escalate("2026-11-25T08:00:00Z", "stuck: r/Ace");
    env.ok("gt", &["mail", "ack", &read, "--as", "mayor"]);

    let forwarded = |list: &[(String, String, String)]| -> Vec<String> {
        list.iter()
            .filter(|(a, _, _)| a == "forwarded")
            .map(|(_, s, d)| format!("{s}: {d}"))
            .collect()
    };
    assert_eq!(
        forwarded(&tick(&env, Some(crate::common::NOW))),
        [format!(
            "mayor: escalation {old} from r/witness (\"stuck: r/Nux\"), unread for 1200s, to the overseer"
        )]
    );
    let inbox = env.inbox("overseer");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let fwd = &inbox[0];
    assert_eq!(fwd["id"], format!("fwd-{old}"));
    assert_eq!(
        (
            &fwd["from"],
            &fwd["type"],
            &fwd["subject"],
            &fwd["forwarded"]
        ),
        (
            &Value::from("mayor"),
            &Value::from("escalation"),
            &Value::from("fwd: stuck: r/Nux"),
            &Value::from(old.as_str())
        )
    );
    assert_eq!(
        fwd["body"],
        "Unread in the Mayor's inbox for 1200s (escalation_forward_after 900s); forwarded by the daemon.\nFrom: r/witness\nSent: 2026-11-25T08:40:00Z\nRead it there with: gt inbox --as mayor\n\nhelp"
    );

    // The overseer's note counts only what it has not been sent: the one
    // forwarded is in its own inbox, the newer one is not.
    let note =
        |env: &TestEnv| String::from_utf8_lossy(&env.run("gt", &["inbox"]).stderr).into_owned();
    assert_eq!(
        note(&env),
        "gt: the Mayor has 1 unread escalation(s) and no live session; read them with: gt inbox --as mayor\n"
    );

    // Once: not again, even after the overseer read it (and archived it).
    assert_eq!(
        forwarded(&tick(&env, Some(crate::common::NOW))),
        Vec::<String>::new()
    );
    env.ok("gt", &["mail", "ack", &format!("fwd-{old}")]);
    env.ok("gt", &["mail", "archive"]);
    // Ten minutes on, the second comes due; the first is not sent again.
    assert_eq!(
        forwarded(&tick(&env, Some("2026-11-25T09:10:00Z"))),
        [format!(
            "mayor: escalation {new} from r/witness (\"stuck: r/Toast\"), unread for 900s, to the overseer"
        )]
    );
    let ids: Vec<Value> = env
        .inbox("overseer")
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [Value::from(format!("fwd-{new}"))]);
    // Both are forwarded, one read and archived: nothing is unheard.
    assert_eq!(note(&env), "");

    // "off": never; a bad value names the field.
    let third = env.escalate("2026-11-25T08:00:00Z", "stuck: r/Max");
    set_town(&env, "escalation_forward_after", "off".into());
    assert_eq!(
        forwarded(&tick(&env, Some(crate::common::NOW))),
        Vec::<String>::new()
    );
    set_town(&env, "escalation_forward_after", "1h".into());
    assert_eq!(
        forwarded(&tick(&env, Some(crate::common::NOW))),
        [format!(
            "mayor: escalation {third} from r/witness (\"stuck: r/Max\"), unread for 3600s, to the overseer"
        )]
    );
    set_town(&env, "escalation_forward_after", "soon".into());
    let (code, err) = env.fails("gt", &["daemon", "tick"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("config/town.json:") && err.contains("invalid duration \"soon\""),
        "{err}"
    );
    let doctor = env.run("gt", &["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("config/town.json: \"escalation_forward_after\": "),
        "{text}"
    );
}

#[test]
fn a_session_that_does_not_exit_after_its_cycle_request_is_stopped_after_the_grace() {
    let env = TestEnv::new();
    env.add_rig("r");
    set_town(&env, "cycle_grace", "30s".into());
    let out = fifo(&env, "out.fifo");
    // A stand-in for a TUI: generation 1 hands off, then never exits.
    let agent = format!(
        "if [ \"$GT_GENERATION\" = 1 ]; then gt mail handoff --cycle -m 'half way'; exec sleep 1000; \
         else echo \"$GT_GENERATION\" > {}; exec sleep 1000; fi",
        out.display()
    );
    let mut c = env.cmd("gt");
    c.args(["daemon", "start", "r/refinery", "--agent", &agent]);
    assert!(c.output().unwrap().status.success());
    let w = "r/refinery";
    assert!(
        wait_until(30, || env.state(w)["requesting_cycle"] == true),
        "{}",
        env.state(w)
    );
    let first = env.session(w);
    assert_eq!(env.state(w)["cycle_requested_at"], crate::common::NOW);
    // Within the grace it is waited for.
    assert_eq!(tick(&env, Some("2026-11-25T09:00:29Z")), []);
    assert!(gastown::session::is_alive(&first));
    let done = tick(&env, Some("2026-11-25T09:00:30Z"));
    assert_eq!(actions(&done), [("stopped", w), ("cycled", w)], "{done:?}");
    assert_eq!(
        done[0].2,
        format!(
            "it asked for a cycle 30s ago and its session {first} had not exited; stopped for its next session"
        )
    );
    assert!(!gastown::session::is_alive(&first));
    assert_eq!(read_fifo(&out), "2\n");
    let s = env.state(w);
    assert_eq!(
        (s["generation"].as_u64(), s["requesting_cycle"].as_bool()),
        (Some(2), Some(false))
    );
    assert!(s.get("cycle_requested_at").is_none(), "{s}");
}
