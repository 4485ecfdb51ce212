//! `gt inject` and `gt capture`: typing into a live tmux session on the town's
//! private socket and reading its pane, with stand-in agents (shell loops that
//! read lines from their terminal) reporting what they received through FIFOs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{TestEnv, fifo, read_fifo};

/// A rig `r` with one issue; returns the issue id.
fn rig_and_issue(env: &TestEnv) -> String {
    env.add_rig("r");
    env.issue("r", "talk")
}

/// Spawn polecat r/Nux running `agent` in tmux; returns its session id.
fn spawn(env: &TestEnv, issue: &str, agent: &str) -> String {
    let out = env.ok(
        "gt",
        &["spawn", "--issue", issue, "--agent", agent, "--json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v["session"].as_str().unwrap().to_string();
    assert!(id.starts_with("tmux:"), "{id}");
    id
}

/// A FIFO in the test's directory.
fn new_fifo(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.path().join(name);
    fifo(&p);
    p
}

/// A stand-in agent that writes `got: <line>` to `out` for each line it reads
/// from its terminal.
fn echo_agent(out: &Path) -> String {
    format!(
        "while read -r l; do printf 'got: %s\\n' \"$l\" > {}; done",
        out.display()
    )
}

#[test]
fn inject_types_the_text_literally_and_it_arrives_once() {
    let env = TestEnv::new();
    let issue = rig_and_issue(&env);
    let got = new_fifo(&env, "got.fifo");
    spawn(&env, &issue, &echo_agent(&got));

    // Quotes, `;` (a tmux command separator, also at the end), `$HOME`, a
    // backslash and words tmux would take as key names all stay text.
    let text = r#"it's "quoted"; echo $HOME \n Enter C-c Escape;"#;
    assert_eq!(env.ok("gt", &["inject", "Nux", text]), "r/Nux: submitted\n");
    assert_eq!(read_fifo(&got), format!("got: {text}\n"));

    // The same text again is checked again (not mistaken for the first one),
    // and nothing extra was submitted in between: the next line is the next text.
    let out = env.ok("gt", &["inject", "r/Nux", text, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["address"], "r/Nux");
    assert_eq!(v["text"], text);
    assert_eq!(v["enters"], 1);
    assert_eq!(read_fifo(&got), format!("got: {text}\n"));

    // A text that looks like an option is still the text.
    env.ok("gt", &["inject", "Nux", "-x: not an option"]);
    assert_eq!(read_fifo(&got), "got: -x: not an option\n");

    // Several lines are one line: one message, one Enter.
    env.ok("gt", &["inject", "Nux", "first\nsecond\r\n\tthird"]);
    assert_eq!(read_fifo(&got), "got: first second third\n");

    // Long text wraps in the 200-column pane and is still found.
    let long = "word ".repeat(60) + "end";
    env.ok("gt", &["inject", "Nux", &long]);
    assert_eq!(read_fifo(&got), format!("got: {long}\n"));

    // Two at once take turns: neither text lands on the other's line.
    let both: Vec<_> = ["one at once", "two at once"]
        .map(|t| env.cmd("gt").args(["inject", "Nux", t]).spawn().unwrap())
        .into_iter()
        .collect();
    let mut lines = String::new();
    while lines.lines().count() < 2 {
        lines.push_str(&read_fifo(&got));
    }
    for mut child in both {
        assert!(child.wait().unwrap().success());
    }
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort();
    assert_eq!(lines, ["got: one at once", "got: two at once"]);
}

#[test]
fn capture_shows_the_pane_and_the_output_of_a_command() {
    let env = TestEnv::new();
    let issue = rig_and_issue(&env);
    let ready = new_fifo(&env, "ready.fifo");
    spawn(
        &env,
        &issue,
        &format!(
            "echo started; echo > {}; while read -r l; do eval \"$l\"; done",
            ready.display()
        ),
    );
    read_fifo(&ready);
    assert_eq!(env.ok("gt", &["capture", "Nux"]), "started\n");

    assert_eq!(
        env.ok("gt", &["capture", "Nux", "echo hi-$((6*7)); echo two"]),
        "hi-42\ntwo\n"
    );
    let out = env.ok("gt", &["capture", "r/Nux", "echo three", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["command"], "echo three");
    assert_eq!(v["lines"], serde_json::json!(["three"]));

    let out = env.ok("gt", &["capture", "Nux", "--lines", "2", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["command"], Value::Null);
    assert_eq!(v["lines"], serde_json::json!(["echo three", "three"]));
}

#[test]
fn an_enter_the_agent_swallows_is_pressed_once_more() {
    let env = TestEnv::new();
    let issue = rig_and_issue(&env);
    let got = new_fifo(&env, "got.fifo");
    // A raw-mode stand-in that echoes what it reads and ignores the first
    // $SWALLOW Enters, like a TUI that took an Enter for part of a paste.
    let agent = format!(
        "stty -icanon -echo min 1; n=0; l=; \
         while c=$(dd bs=1 count=1 2>/dev/null); do \
           if [ -n \"$c\" ]; then printf %s \"$c\"; l=\"$l$c\"; \
           elif [ $n -lt $(cat ../../swallow) ]; then n=$((n+1)); \
           else echo; printf 'got: %s\\n' \"$l\" > {}; l=; n=0; fi; \
         done",
        got.display()
    );
    let swallow = env.town.join("r/polecats/swallow");
    std::fs::create_dir_all(swallow.parent().unwrap()).unwrap();
    std::fs::write(&swallow, "1").unwrap();
    spawn(&env, &issue, &agent);
    let inject = |text: &str| {
        env.cmd("gt")
            .args(["inject", "Nux", text, "--json"])
            .env("GT_INJECT_WAIT", "2s")
            .output()
            .unwrap()
    };

    let out = inject("take two");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["enters"], 2);
    assert_eq!(read_fifo(&got), "got: take two\n");

    // An agent that never takes the line: a clear error, exit 2.
    std::fs::write(&swallow, "9").unwrap();
    let out = inject("never");
    assert_eq!(out.status.code(), Some(2));
    let session = env.session("r/polecats/Nux");
    let name = session.split(':').nth(2).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "gt: r/Nux: typed \"never\" into tmux session {name} but it is still on the prompt after two Enters: not submitted\n"
        )
    );
}

#[test]
fn a_plain_process_session_refuses_inject_and_capture() {
    let env = TestEnv::new();
    let issue = rig_and_issue(&env);
    let out = env
        .cmd("gt")
        .args(["spawn", "--issue", &issue, "--agent", "exec sleep 600"])
        .env("GT_SESSION_BACKEND", "process")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Stop the sleeper however the test ends.
    struct Kill<'a>(&'a TestEnv);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.run("gt", &["kill", "r/Nux"]);
        }
    }
    let _kill = Kill(&env);
    let home = env.town.join("r/polecats/Nux");
    let session = env.session(&home);
    assert!(session.starts_with("proc:"), "{session}");

    assert_eq!(
        env.fails("gt", &["inject", "Nux", "hello"]),
        (
            2,
            format!(
                "gt: r/Nux: cannot inject: session {session} is a plain process with no terminal (mail is the channel: gt send)\n"
            )
        )
    );
    assert_eq!(
        env.fails("gt", &["capture", "Nux"]),
        (
            2,
            format!(
                "gt: r/Nux: cannot capture: session {session} is a plain process with no terminal (its output is in {})\n",
                home.join("session.log").display()
            )
        )
    );
    assert!(
        gastown::session::is_alive(&session),
        "refusals leave it running"
    );
}

#[test]
fn an_agent_without_a_live_session_is_refused() {
    let env = TestEnv::new();
    let issue = rig_and_issue(&env);
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    assert_eq!(
        env.fails("gt", &["inject", "Nux", "hello"]),
        (
            2,
            "gt: r/Nux has no live session (its state.json names none)\n".to_string()
        )
    );
    assert_eq!(
        env.fails("gt", &["capture", "mayor"]),
        (
            2,
            "gt: mayor has no live session (its state.json names none)\n".to_string()
        )
    );
    let (code, err) = env.fails("gt", &["inject", "Nope", "hello"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("gt: no agent home for address r/Nope ("),
        "{err}"
    );

    let session = spawn(&env, &issue, "true");
    assert!(gastown::session::wait(&session, Duration::from_secs(10)));
    let ended = format!("gt: r/Nux has no live session (its last one, {session}, has ended)\n");
    assert_eq!(
        env.fails("gt", &["inject", "Nux", "hello"]),
        (2, ended.clone())
    );
    assert_eq!(env.fails("gt", &["capture", "Nux", "echo hi"]), (2, ended));
}

/// A dirty worker that signalled done and then reads its terminal (with
/// `stty_echo`: `echo` or `-echo`); returns the FIFO its lines arrive on and
/// the patrol's actions as JSON.
fn patrol_dirty_worker(env: &TestEnv, stty_echo: &str, wait: &str) -> (PathBuf, Value) {
    let issue = rig_and_issue(env);
    let (ready, got) = (new_fifo(env, "ready.fifo"), new_fifo(env, "got.fifo"));
    let agent = format!(
        "stty {stty_echo}; echo scratch > untracked.txt; \
         gt send \"$GT_RIG/witness\" --type done --generation \"$GT_GENERATION\" -s \"done: $GT_ISSUE\" -m ok; \
         echo > {}; {}",
        ready.display(),
        echo_agent(&got)
    );
    spawn(env, &issue, &agent);
    read_fifo(&ready);
    let out = env
        .cmd("gt")
        .args(["witness", "patrol", "r", "--json"])
        .env("GT_INJECT_WAIT", wait)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (got, serde_json::from_slice(&out.stdout).unwrap())
}

const NUDGE: &str =
    "[gt] nudge 1/3 from r/witness: you signalled done but your clone is dirty (details: gt inbox)";

#[test]
fn a_witness_nudge_is_typed_into_a_live_dirty_workers_session() {
    let env = TestEnv::new();
    let (got, actions) = patrol_dirty_worker(&env, "echo", "3s");
    assert_eq!(
        actions,
        serde_json::json!([{
            "subject": "r/Nux",
            "action": "nudged",
            "detail": "1/3: you signalled done but your clone is dirty; typed into its session"
        }])
    );
    assert_eq!(read_fifo(&got), format!("got: {NUDGE}\n"));
    // The mail is still the record.
    let last = env.inbox("r/polecats/Nux").pop().unwrap();
    assert_eq!(last["type"], "nudge");
    assert!(last["body"].as_str().unwrap().contains("?? untracked.txt"));
}

#[test]
fn a_nudge_that_cannot_be_confirmed_is_reported_and_the_patrol_goes_on() {
    let env = TestEnv::new();
    // The worker's terminal does not echo: the line arrives but never shows.
    let (got, actions) = patrol_dirty_worker(&env, "-echo", "300ms");
    let session = env.session("r/polecats/Nux");
    let name = session.split(':').nth(2).unwrap();
    assert_eq!(
        actions,
        serde_json::json!([{
            "subject": "r/Nux",
            "action": "nudged",
            "detail": format!(
                "1/3: you signalled done but your clone is dirty; typing into its session failed: \
                 typed {NUDGE:?} into tmux session {name} but it never showed in the pane within 300ms \
                 (the program does not echo its input?)"
            )
        }])
    );
    assert_eq!(read_fifo(&got), format!("got: {NUDGE}\n"));
}
