//! What the agent tiers (agent_claude.rs, agent_codex.rs) share: finding a
//! real runtime, spawning it, and the checks both runtimes must pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{FIFO_WAIT, NOW, TestEnv, Watcher, edit_json, git, jsonl, patrol_at};

/// `<GT_TEST_AGENT_DIR>/node_modules/.bin` (default `~/.cache/gastown-agents`,
/// where .ci/run installs the real agent runtimes with `npm install --prefix`)
/// if `program --version` runs there; else the tier skips (outside CI) or
/// fails (CI=true) saying why and how to install npm `package`.
pub fn agent_runtime(program: &str, package: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GT_TEST_AGENT_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/gastown-agents")))
        .unwrap_or_default();
    let bin = dir.join("node_modules/.bin");
    let why = match Command::new(bin.join(program))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => return Some(bin),
        Ok(o) => format!(
            "{}/{program} --version exited {:?}: {}",
            bin.display(),
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run {}/{program}: {e}", bin.display()),
    };
    let why = format!(
        "{why} (install it: npm install --prefix {} {package}, or set GT_TEST_AGENT_DIR)",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none_or(|v| v != "true"),
        "the {program} tier cannot run under CI=true: {why}"
    );
    eprintln!("{program} tier skipped: {why}");
    None
}

/// Start the town's tmux server from elsewhere, before any spawn: a session
/// `other` whose environment has only a `PATH` without the runtime, and
/// `vars` (pointing the runtime somewhere wrong). A session gt starts must
/// get the spawner's environment and `agent_env`, never the server's.
pub fn start_tmux_server_elsewhere(env: &TestEnv, vars: &[(&str, &str)]) {
    let socket = gastown::session::tmux_socket(&env.town.canonicalize().unwrap());
    let started = Command::new("tmux")
        .args([
            "-L",
            &socket,
            "new-session",
            "-d",
            "-s",
            "other",
            "sleep 600",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(vars.iter().copied())
        .status()
        .unwrap();
    assert!(started.success());
}

/// [`spawn_runtime`] with more `args`: its `--json` report, whatever it says
/// of readiness (`ready`, `reason`). The exit code is checked against it: 0
/// when `ready` or `started`, else 1.
pub fn spawn_runtime_with(env: &TestEnv, bin: &Path, issue: &str, args: &[&str]) -> Value {
    let out = env
        .cmd("gt")
        .env("PATH", runtime_path(bin))
        .args(["spawn", "--issue", issue, "--json"])
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let ok = matches!(v["ready"].as_str(), Some("ready" | "started"));
    assert_eq!(out.status.code(), Some(if ok { 0 } else { 1 }), "{v}");
    v
}

/// `PATH` with the runtime's directory `bin` first.
pub fn runtime_path(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Check the conversation of [`crate::model::to_done`] for polecat r/Nux on issue `id`
/// ("Fix the frobnicator"), with `turn(n)` the `n`th turn request: the first
/// prompt names the issue, `gt prime` printed it, `gt done` reached the
/// Witness (one `done` of generation 1). The first turn is returned.
pub fn check_to_done(
    env: &TestEnv,
    id: &str,
    turn: impl Fn(usize) -> crate::model::Request,
) -> crate::model::Request {
    let first = turn(1);
    first.assert_once(&format!(
        "You are r/Nux, a gastown worker. Your issue is {id}. Run `gt prime` first"
    ));
    first.assert_once("## How to work here");
    // gt prime ran in the session (GT_ADDRESS and GT_TOWN reached it).
    turn(2).assert_once(&format!(
        "Your issue: {id} Fix the frobnicator [in_progress]"
    ));
    turn(3).assert_once("r/Nux: done sent to r/witness");
    let done = env.inbox_of("r/witness", "done");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["from"], "r/Nux");
    assert_eq!(done[0]["generation"], 1);
    first
}

/// After [`check_to_done`]: the Witness stops the TUI (it never exits by
/// itself) and queues the clean work; the Refinery lands it on origin's
/// main and closes issue `id`.
pub fn check_done_lands(env: &TestEnv, id: &str) {
    let actions: Vec<String> = patrol_at(env, &jiff::Timestamp::now().to_string())
        .into_iter()
        .filter(|(_, subject, _)| subject == "r/Nux")
        .map(|(action, _, _)| action)
        .collect();
    assert_eq!(actions, ["stopped", "submitted"]);
    env.ok("gt", &["refinery", "process", "r", "--once"]);
    let origin = env.path().join("r-origin.git");
    let landed = git(&origin, &["log", "--format=%s", "main"]);
    assert!(
        landed.lines().any(|l| l == "frob once"),
        "origin's main: {landed}"
    );
    assert_eq!(git(&origin, &["show", "main:frob.rs"]), "fn frob() {}\n");
    let shown = env.ok("gt-issue", &["show", "--rig", "r", id, "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["status"],
        "closed"
    );
}

/// Check the cycle of [`crate::model::to_handoff`] for polecat r/Nux on
/// issue `id` ("Fix the frobnicator"), spawned on the real clock
/// ([`TestEnv::real_clock`]) in session `first` with the runtime in `bin`,
/// `turn(n)` the `n`th turn request: with `cycle_grace` 3s, `gt daemon run`
/// stops the runtime, which does not exit by itself, once the grace is over,
/// and starts generation 2, a fresh conversation whose `gt prime` shows the
/// note and marks it read.
pub fn check_handoff_cycle(
    env: &TestEnv,
    bin: &Path,
    id: &str,
    first: &str,
    turn: impl Fn(usize) -> crate::model::Request,
) {
    let grace = std::time::Duration::from_secs(3);
    edit_json(&env.town.join("config/town.json"), |c| {
        c["cycle_grace"] = "3s".into()
    });
    let mut daemon = env.cmd("gt");
    daemon
        .env("PATH", runtime_path(bin))
        .args(["daemon", "run", "--json", "--every", "1h"]);
    let mut daemon = Watcher::start(daemon, "gt-daemon: watching ");

    let prompt =
        format!("You are r/Nux, a gastown worker. Your issue is {id}. Run `gt prime` first");
    turn(1).assert_once(&prompt);
    turn(2).assert_once(&format!("Your issue: {id} Fix the frobnicator"));
    let asked = "requested a fresh session (requesting_cycle in ";
    turn(3).assert_once(asked);
    let notes = env.inbox_of("r/polecats/Nux", "handoff");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(
        (
            &note["from"],
            &note["subject"],
            &note["body"],
            &note["generation"]
        ),
        (
            &"r/Nux".into(),
            &"HANDOFF: frob half done".into(),
            &"NOTE-MARKER: frob.rs is next".into(),
            &1.into()
        )
    );
    let note_id = note["id"].as_str().unwrap();
    // Written just before `cycle_requested_at`, and kept after the cycle
    // clears that (a slow test thread may read the state too late).
    let requested: jiff::Timestamp = note["handoff"]["written_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // The runtime does not exit by itself: the daemon stops it once the
    // grace is over, and starts the next session in the same pass.
    let stopped = daemon.next_json();
    let at = jiff::Timestamp::now();
    assert_eq!(
        (&stopped["action"], &stopped["subject"], &stopped["detail"]),
        (
            &"stopped".into(),
            &"r/Nux".into(),
            &format!(
                "it asked for a cycle 3s ago and its session {first} had not exited; stopped for its next session"
            )
            .into()
        )
    );
    let waited = std::time::Duration::try_from(at.duration_since(requested)).unwrap();
    assert!(
        waited >= grace && waited < grace + FIFO_WAIT,
        "stopped {waited:?} after the request"
    );
    assert!(!gastown::session::is_alive(first));
    // Nothing of it is left running (its tool shells, helpers).
    assert_eq!(session_processes(env, "r/Nux", 1), Vec::<String>::new());
    let cycled = daemon.next_json();
    assert_eq!(
        (&cycled["action"], &cycled["subject"]),
        (&"cycled".into(), &"r/Nux".into()),
        "{cycled}"
    );
    let state = env.state("r/polecats/Nux");
    let second = state["session"].as_str().unwrap().to_string();
    assert_eq!(cycled["detail"], format!("generation 2, session {second}"));
    assert_ne!(second, first);
    assert_eq!(
        (
            &state["generation"],
            &state["status"],
            &state["requesting_cycle"]
        ),
        (&2.into(), &"working".into(), &false.into())
    );
    assert!(state.get("cycle_requested_at").is_none(), "{state}");
    assert!(gastown::session::is_alive(&second));
    // (The scan above finds a session's processes: the new one's.)
    assert_ne!(session_processes(env, "r/Nux", 2), Vec::<String>::new());

    // A fresh conversation: its first request holds the first prompt and
    // nothing of the old one.
    let fresh = turn(4);
    fresh.assert_once(&prompt);
    assert_eq!(fresh.mentions(asked), 0, "{:?}", fresh.texts());
    assert_eq!(fresh.mentions(&format!("Your issue: {id} Fix")), 0);
    // Its gt prime showed the note to the model, and marked it read.
    let primed = turn(5);
    primed.assert_once("You are r/Nux (polecat), generation 2.");
    primed.assert_once(&format!(
        "Handoff from your session of generation 1 ({note_id}, {}): HANDOFF: frob half done",
        note["timestamp"].as_str().unwrap()
    ));
    primed.assert_once("NOTE-MARKER: frob.rs is next");
    primed.assert_once(&format!("(Marked read; again: gt mail read {note_id}.)"));
    let marks = jsonl(&env.home("r/polecats/Nux").join("mail/read.jsonl"));
    assert_eq!(marks.len(), 1, "{marks:?}");
    let marked_at: jiff::Timestamp = marks[0]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        marks[0],
        serde_json::json!({"id": note_id, "state": "read", "at": marks[0]["at"]})
    );
    assert!(marked_at >= requested, "{marks:?}");
    let unread = env.ok("gt", &["mail", "inbox", "--as", "r/Nux", "--json"]);
    assert_eq!(unread, "");
}

/// `tmux send-keys keys` into the tmux session `session` (a session id), as
/// a person at its terminal would type them.
pub fn send_keys(session: &str, keys: &[&str]) {
    let Some(gastown::session::SessionId::Tmux { socket, name, .. }) =
        gastown::session::SessionId::parse(session)
    else {
        panic!("not a tmux session: {session}")
    };
    let target = format!("={name}:");
    let mut args = vec!["send-keys", "-t", &target];
    args.extend_from_slice(keys);
    gastown::session::tmux(&socket, &args).unwrap();
}

/// `gt inject Nux …` refused, nothing typed: r/Nux's input box holds `left`.
pub fn inject_is_refused_onto(env: &TestEnv, left: &str) {
    let (code, err) = env.fails("gt", &["inject", "Nux", "a nudge"]);
    assert_eq!(
        (code, err),
        (
            2,
            format!(
                "gt: r/Nux: its input box already holds {left:?}; nothing typed (the line would be glued onto it)\n"
            )
        )
    );
}

/// An hour from now, for GT_NOW: longer than any test's `stuck_after`.
pub fn an_hour_later() -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string()
}

/// A patrol of rig r at `later` (past `stuck_after`) finds r/Nux silent but
/// its screen showing a turn in progress: the action `busy`, no nudge.
pub fn patrol_sees_busy(env: &TestEnv, later: &str) {
    let actions = patrol_at(env, later);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        (actions[0].0.as_str(), actions[0].1.as_str()),
        ("busy", "r/Nux")
    );
    assert!(
        env.inbox("r/polecats/Nux")
            .iter()
            .all(|m| m["type"] != "nudge")
    );
}

/// A patrol at `later` nudges r/Nux, silent at its ready prompt: the request
/// `next` waits for carries the nudge once, as its last text.
pub fn patrol_nudges(env: &TestEnv, later: &str, next: impl FnOnce() -> crate::model::Request) {
    let actions = patrol_at(env, later);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        (actions[0].0.as_str(), actions[0].1.as_str()),
        ("nudged", "r/Nux")
    );
    let request = next();
    let nudge = "[gt] nudge 1/3 from r/witness: no heartbeat for";
    request.assert_once(nudge);
    assert!(
        request.texts().last().is_some_and(|t| t.starts_with(nudge)),
        "{:?}",
        request.texts()
    );
}

/// r/Nux's runtime died at once (exit `status`, its error holding `says`):
/// the first patrol restarts it and tells the Witness once, with the
/// runtime's own output and the log's path; the restart dies the same way
/// and the next patrol backs off instead of respawning it at once.
pub fn check_quick_death(env: &TestEnv, status: i32, says: &str) {
    let home = env.town.join("r/polecats/Nux");
    let log = home.join("session.log");
    // The fixed clock of the spawn: the death came 0s after the start.
    let first = patrol_at(env, NOW);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0].0.as_str(), first[0].1.as_str()),
        ("restarted", "r/Nux")
    );
    let exit = format!("exit status {status}");
    assert!(first[0].2.contains(&format!("({exit})")), "{}", first[0].2);
    let died: Vec<Value> = env
        .inbox("r/witness")
        .into_iter()
        .filter(|m| m["subject"] == "died: r/Nux")
        .collect();
    assert_eq!(died.len(), 1, "{died:?}");
    let body = died[0]["body"].as_str().unwrap();
    assert!(body.contains(&exit), "{body}");
    assert!(body.contains(says), "the runtime's own error: {body}");
    assert!(body.contains(&log.display().to_string()), "{body}");

    assert_eq!(env.state(&home)["generation"], 2);
    env.wait_session(&home);
    let second = patrol_at(env, NOW);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].0, "backoff", "{second:?}");
}

/// r/Nux's runtime (`preset`, in `session`) waits at a dialog whose report
/// starts with `dialog`, as `gt spawn` saw it (its `reason`): recorded, told
/// the Witness once, shown by `gt status`; a patrol an hour later sees it
/// again without a second mail or a nudge; `gt inject` refuses; nothing
/// answered it. `stuck_after` must be under an hour.
pub fn check_blocked(
    env: &TestEnv,
    preset: gastown::agent::Preset,
    session: &str,
    reason: Option<&str>,
    dialog: &str,
) {
    let reason = reason.unwrap_or_default();
    assert!(
        reason.starts_with(&format!("waits at a dialog: {dialog}")),
        "{reason}"
    );
    let told = || -> Vec<Value> {
        env.inbox("r/witness")
            .into_iter()
            .filter(|m| m["subject"] == "blocked: r/Nux")
            .collect()
    };
    let mail = told();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["by"], "gt spawn");
    assert!(
        mail[0]["body"].as_str().unwrap().contains(dialog),
        "{}",
        mail[0]
    );
    let status: Value = serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap();
    let nux = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "r/Nux")
        .unwrap();
    assert_eq!(nux["status"], "blocked");
    assert!(
        nux["blocked"]["dialog"]
            .as_str()
            .unwrap()
            .starts_with(dialog),
        "{nux}"
    );
    let actions = patrol_at(env, &an_hour_later());
    assert_eq!(actions.len(), 1, "{actions:?}");
    let (action, subject, detail) = &actions[0];
    assert_eq!((action.as_str(), subject.as_str()), ("blocked", "r/Nux"));
    assert!(
        detail.starts_with(&format!("its runtime waits at a dialog: {dialog}")),
        "{detail}"
    );
    assert!(
        env.inbox("r/polecats/Nux")
            .iter()
            .all(|m| m["type"] != "nudge")
    );
    assert_eq!(told().len(), 1, "the patrol saw it again: no second mail");
    let (code, err) = env.fails("gt", &["inject", "Nux", "hello"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "gt: r/Nux: its runtime waits at a dialog ({dialog}"
        )),
        "{err}"
    );
    // Nothing answered the dialog: it is still there.
    let screen =
        preset.screen(&gastown::session::capture_styled(&env.owner("r/Nux"), session).unwrap());
    assert!(
        matches!(screen, gastown::agent::Screen::Dialog(_)),
        "{screen:?}"
    );
}

/// Every process of this test's town with `GT_ADDRESS=address` and
/// `GT_GENERATION=generation` in its environment: `pid comm` each.
pub fn session_processes(env: &TestEnv, address: &str, generation: u64) -> Vec<String> {
    let town = env.town.canonicalize().unwrap();
    let want = [
        format!("GT_ADDRESS={address}"),
        format!("GT_GENERATION={generation}"),
        format!("GT_TOWN={}", town.display()),
    ];
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Gone meanwhile, or not ours to read: not one of the session's.
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        if want.iter().all(|w| vars.contains(&w.as_bytes())) {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            found.push(format!("{pid} {}", comm.trim_end()));
        }
    }
    found
}
