//! `gt status` tells the truth: a session killed behind gastown's back shows
//! as dead, the loops that run are seen running, queue lengths, unread mail
//! and escalations are counted.

use serde_json::Value;

use crate::common::{TestEnv, Watcher};

fn status(env: &TestEnv) -> Value {
    serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap()
}

/// The Witness of rig r escalates a stuck r/Nux to the Mayor.
fn escalate(env: &TestEnv) {
    env.escalate(crate::common::NOW, "stuck: r/Nux");
}

pub fn agent<'a>(report: &'a Value, address: &str) -> &'a Value {
    report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == address)
        .unwrap_or_else(|| panic!("no {address} in {report}"))
}

#[test]
fn a_session_killed_behind_gastowns_back_shows_as_dead() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let issue = env.spawn_sleeper("r", "work");
    let live = status(&env);
    let nux = agent(&live, "r/Nux");
    assert_eq!(
        (nux["status"].as_str(), nux["session_alive"].as_bool()),
        (Some("working"), Some(true))
    );
    assert_eq!(agent(&live, "r/witness")["session_alive"], Value::Null);

    // The agent's process group dies without gastown knowing.
    let session = env.session(rig.join("polecats/Nux"));
    let pid: i32 = session.split(':').nth(3).unwrap().parse().unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_session(rig.join("polecats/Nux"));

    let dead = status(&env);
    let nux = agent(&dead, "r/Nux");
    assert_eq!(
        (nux["status"].as_str(), nux["session_alive"].as_bool()),
        (Some("dead"), Some(false)),
        "{nux}"
    );
    // GT_NOW is fixed, and so are the ages from it.
    assert!(
        nux["session_age_s"].is_u64() && nux["state_age_s"].is_u64(),
        "{nux}"
    );
    let text = env.ok("gt", &["status"]);
    let row = text.lines().find(|l| l.starts_with("r/Nux")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["r/Nux", "polecat", "dead", "dead"], "{text}");
    // And gt polecats says the same.
    let rows: Value = serde_json::from_str(&env.ok("gt", &["polecats", "r", "--json"])).unwrap();
    assert_eq!(rows[0]["status"], "dead");

    // Once its death is handled and it is idle, the recorded session is
    // over, not an alarm.
    env.edit_state(rig.join("polecats/Nux"), |s| s["status"] = "idle".into());
    let text = env.ok("gt", &["status"]);
    let row = text.lines().find(|l| l.starts_with("r/Nux")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    // The dead row named its issue; the idle one names none, though
    // state.json keeps it.
    assert_eq!(cells[4], "-", "{text}");
    assert_eq!(agent(&dead, "r/Nux")["issue"], issue.as_str());
    let idle = status(&env);
    let nux = agent(&idle, "r/Nux");
    assert_eq!(
        (&nux["session_alive"], &nux["issue"]),
        (&Value::Bool(false), &Value::Null)
    );
    assert_eq!(env.state(rig.join("polecats/Nux"))["issue"], issue.as_str());
}

#[test]
fn status_shows_running_loops_queue_lengths_unread_mail_and_escalations() {
    let env = TestEnv::new();
    env.add_rig("r");
    let before = status(&env);
    assert_eq!(before["daemon_running"], false);
    assert_eq!(before["rigs"][0]["witness_running"], false);
    assert_eq!(
        before["rigs"][0]["queue"],
        serde_json::json!({"pending": 0, "active": 0, "failed": 0})
    );

    let mut c = env.cmd("gt");
    c.args(["witness", "run", "r", "--json", "--every", "1h"]);
    let witness = Watcher::start(c, "gt-witness: watching");
    let mut c = env.cmd("gt");
    c.args(["daemon", "run", "--json", "--every", "1h"]);
    let daemon = Watcher::start(c, "gt-daemon: watching");
    // A second Witness loop for the same rig is refused, naming the holder.
    let (code, err) = env.fails("gt", &["witness", "run", "r"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("gt-witness: the Witness loop of rig r is already running (pid "),
        "{err}"
    );

    escalate(&env);
    env.ok("gt", &["send", "mayor", "-s", "hello", "-m", "plain"]);
    let now = status(&env);
    assert_eq!(now["daemon_running"], true);
    assert_eq!(now["rigs"][0]["witness_running"], true);
    assert_eq!(now["rigs"][0]["refinery_running"], false);
    assert_eq!(agent(&now, "mayor")["unread"], 2);
    let esc = now["escalations"].as_array().unwrap();
    assert_eq!(esc.len(), 1, "{now}");
    assert_eq!(
        (
            esc[0]["to"].as_str(),
            esc[0]["from"].as_str(),
            esc[0]["subject"].as_str()
        ),
        (Some("mayor"), Some("r/witness"), Some("stuck: r/Nux"))
    );
    let text = env.ok("gt", &["status"]);
    assert!(text.contains("daemon running\n"), "{text}");
    assert!(
        text.contains("rig r: 0 polecat(s); queue 0 pending, 0 active, 0 failed; witness loop running, refinery loop not running\n"),
        "{text}"
    );
    assert!(
        text.contains("1 unread escalation(s):\n  mayor from r/witness ("),
        "{text}"
    );
    // Looking is not reading: the Mayor's mail is still unread.
    assert_eq!(agent(&status(&env), "mayor")["unread"], 2);

    drop(witness);
    drop(daemon);
    let after = status(&env);
    assert_eq!(
        (
            after["daemon_running"].as_bool(),
            after["rigs"][0]["witness_running"].as_bool()
        ),
        (Some(false), Some(false))
    );
}

/// An unreadable state.json is `unreadable` (protocol/README.md) in every
/// form of the report, with why in `error`.
#[test]
fn an_unreadable_state_is_unreadable_in_text_and_json() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    std::fs::write(rig.join("polecats/Nux/state.json"), "{\"role\": \"pole").unwrap();
    let nux = agent(&status(&env), "r/Nux").clone();
    assert_eq!(nux["status"], "unreadable", "{nux}");
    assert!(
        nux["error"].as_str().is_some_and(
            |e| e.ends_with("/r/polecats/Nux/state.json:1:14: EOF while parsing a string")
        ),
        "{nux}"
    );
    let rows: Value = serde_json::from_str(&env.ok("gt", &["polecats", "r", "--json"])).unwrap();
    assert_eq!(rows[0]["status"], "unreadable");
    let text = env.ok("gt", &["status"]);
    let row = text.lines().find(|l| l.starts_with("r/Nux")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["r/Nux", "polecat", "unreadable"], "{text}");
}

/// The queue lengths are the entries `gt queue list` lists: a junk file in a
/// queue directory, even one named like an entry, is not a queued merge.
#[test]
fn queue_lengths_count_entries_not_junk() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let q = rig.join("refinery/queue");
    for (state, name, text) in [
        (
            "pending",
            "20261125T092000.123456Z-Nux.json",
            r#"{"polecat":"Nux","branch":"polecat/Nux"}"#,
        ),
        ("pending", "zzz-junk.json", "not json\n"),
        ("pending", "notes.txt", "a note\n"),
        (
            "active",
            "20261125T091000.123456Z-Ace.json",
            r#"{"polecat":"wyv/Ace","branch":"polecat/Ace"}"#,
        ),
        (
            "failed",
            "20261125T090000.123456Z-Bee.json",
            r#"{"polecat":"Bee","branch":"polecat/Bee"}"#,
        ),
        (
            "failed",
            "20261125T090500.123456Z-Cat.json",
            r#"{"polecat":"Cat","branch":""}"#,
        ),
    ] {
        std::fs::create_dir_all(q.join(state)).unwrap();
        std::fs::write(q.join(state).join(name), text).unwrap();
    }
    let listed = env.ok("gt", &["queue", "list", "r", "--all", "--json"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(
        status(&env)["rigs"][0]["queue"],
        serde_json::json!({"pending": 1, "active": 0, "failed": 1})
    );
    let text = env.ok("gt", &["status"]);
    assert!(
        text.contains("rig r: 0 polecat(s); queue 1 pending, 0 active, 1 failed;"),
        "{text}"
    );
}

/// Escalations reach a person: the overseer's `gt inbox` says when the Mayor
/// has unread escalations and no live session to read them.
#[test]
fn the_overseer_hears_of_escalations_no_mayor_reads() {
    let env = TestEnv::new();
    env.add_rig("r");
    let quiet = env.run("gt", &["inbox"]);
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
    escalate(&env);
    let out = env.run("gt", &["inbox"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no unread mail for overseer\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gt: the Mayor has 1 unread escalation(s) and no live session; read them with: gt inbox --as mayor\n"
    );
    // The way it names works, and once read, the note is gone.
    let mayor = env.ok("gt", &["inbox", "--as", "mayor", "--json"]);
    let id = crate::common::jsonl_ids(&mayor).remove(0);
    env.ok("gt", &["mail", "read", "--as", "mayor", &id]);
    assert_eq!(
        String::from_utf8_lossy(&env.run("gt", &["inbox"]).stderr),
        ""
    );
}

/// `gt status --watch` off a terminal appends one whole frame per change
/// (with --json one document per line): the first at once, the next when mail
/// arrives, none for a change that changes nothing shown.
#[test]
fn status_watch_appends_a_frame_per_change() {
    use std::io::BufRead;
    let env = TestEnv::new();
    env.add_rig("r");
    for json in [false, true] {
        let mut c = env.cmd("gt");
        c.args(["status", "--watch"]);
        if json {
            c.arg("--json");
        }
        let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // A frame ends with a blank line, or is one JSON line.
        let frame = || {
            let mut lines = Vec::new();
            loop {
                let line = rx
                    .recv_timeout(std::time::Duration::from_secs(30))
                    .expect("a frame");
                if json {
                    return line;
                }
                if line.is_empty() {
                    return lines.join("\n");
                }
                lines.push(line);
            }
        };
        let first = frame();
        let mayor_unread = |f: &str| -> u64 {
            if json {
                let v: Value = serde_json::from_str(f).unwrap();
                agent(&v, "mayor")["unread"].as_u64().unwrap()
            } else {
                let line = f.lines().find(|l| l.contains(" mayor ")).unwrap();
                line.rsplit(' ').next().unwrap().parse().unwrap()
            }
        };
        let before = mayor_unread(&first);
        if !json {
            assert_eq!(
                first.lines().next().unwrap(),
                "town town (daemon not running)",
                "{first}"
            );
            assert!(first.contains("├─ rig r: queue 0 pending"), "{first}");
        }
        env.ok("gt", &["send", "mayor", "-s", "hi", "-m", "there"]);
        let next = frame();
        assert_eq!(mayor_unread(&next), before + 1, "{next}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A redraw re-reads only the homes that changed, yet every row's liveness is
/// as of the redraw: a session that ended without touching any file shows
/// `dead` on the next frame, whatever changed.
#[test]
fn status_watch_shows_liveness_as_of_each_frame() {
    use std::io::BufRead;
    let env = TestEnv::new();
    env.add_rig("r");
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    // A session no file of the town will hear end (r/Nux's, by its
    // environment, as a start gives it).
    let mut sleeper = std::process::Command::new("sh")
        .args(["-c", "exec sleep 1000"])
        .env("GT_TOWN", env.town.canonicalize().unwrap())
        .env("GT_ADDRESS", "r/Nux")
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    env.edit_state("r/polecats/Nux", |s| {
        s["status"] = "working".into();
        s["session"] = format!("proc:{pid}:{start}").into();
    });
    let mut c = env.cmd("gt");
    c.args(["status", "--watch", "--json"]);
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut frame = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let first = frame();
    assert_eq!(
        (
            agent(&first, "r/Nux")["status"].as_str(),
            agent(&first, "r/Nux")["session_alive"].as_bool()
        ),
        (Some("working"), Some(true))
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    env.ok("gt", &["send", "mayor", "-s", "hi", "-m", "there"]);
    // The send may take more than one event (its lock file, its append).
    let next = loop {
        let f = frame();
        if agent(&f, "mayor")["unread"] == 1 {
            break f;
        }
    };
    assert_eq!(
        (
            agent(&next, "r/Nux")["status"].as_str(),
            agent(&next, "r/Nux")["session_alive"].as_bool()
        ),
        (Some("dead"), Some(false))
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
