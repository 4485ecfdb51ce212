//! `gt doctor`: damage is found, named by file and line, every check is
//! listed, and `--fix` repairs only what is safe, idempotently. One test per
//! row of the seed's failure table makes the failure by hand.

use std::process::Output;

use serde_json::Value;

use crate::common::{TestEnv, Watcher, git, have_tool, jsonl, process_gone};

/// Every check doctor runs, in order.
const CHECKS: &[&str] = &[
    "config",
    "links",
    "homes",
    "mail",
    "beads",
    "queue",
    "clones",
    "sessions",
    "zombies",
    "claims",
    "heartbeats",
    "loops",
    "strays",
];

fn doctor(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let out: Output = env.run("gt", &[&["doctor"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        env.normalize(&String::from_utf8(out.stdout).unwrap()),
    )
}

/// `gt doctor --json` (with `--fix` if `fix`): exit code and the report.
fn report(env: &TestEnv, fix: bool) -> (i32, Value) {
    let args: &[&str] = if fix {
        &["--json", "--fix"]
    } else {
        &["--json"]
    };
    let (code, out) = doctor(env, args);
    (code, serde_json::from_str(&out).unwrap())
}

/// The `check` names of a report's findings, with `(fixed)` marks.
fn found(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let c = f["check"].as_str().unwrap();
            if f["fixed"] == true {
                format!("{c} (fixed)")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn result_of<'a>(report: &'a Value, check: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap_or_else(|| panic!("no check {check} in {report:#}"))["result"]
        .as_str()
        .unwrap()
}

/// The command a finding's message ends with, in parentheses (after
/// `start it: `), is a real gt command given every argument its usage
/// requires: its `--help` succeeds and names no more `<ARG>`s than it has.
fn assert_hint_runs(env: &TestEnv, message: &str) {
    let hint = message
        .rsplit_once('(')
        .and_then(|(_, h)| h.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no hint in {message}"));
    let hint = hint.strip_prefix("start it: ").unwrap_or(hint);
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "gt", "{message}");
    let out = env.run("gt", &[&words[1..], &["--help"]].concat());
    assert!(
        out.status.success(),
        "{hint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8(out.stdout).unwrap();
    let usage = help
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or_else(|| panic!("no usage in {help}"));
    // `gt-witness patrol [OPTIONS] <RIG>`: the command, then its arguments.
    let (path, args): (Vec<&str>, Vec<&str>) = usage
        .split_whitespace()
        .partition(|w| !w.starts_with(['[', '<']));
    let path = path.join(" ").replacen("gt-", "gt ", 1);
    let given = hint
        .strip_prefix(path.as_str())
        .unwrap_or_else(|| panic!("{hint} is not {path}"))
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .count();
    let required = args.iter().filter(|w| w.starts_with('<')).count();
    assert!(given >= required, "{hint}: usage {usage}");
}

fn issue(env: &TestEnv, id: &str) -> Value {
    serde_json::from_str(&env.ok("gt", &["issue", "show", id, "--json"])).unwrap()
}

/// A polecat spawned on a new issue of rig `r`, running `agent` in tmux.
fn spawn_tmux(env: &TestEnv, agent: &str) -> (String, String) {
    let id = env.issue("r", "Work");
    let out = crate::common::ok_output(
        env.cmd("gt")
            .args(["spawn", "--issue", &id, "--agent", agent, "--json"])
            .env("GT_SESSION_BACKEND", "tmux"),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    (id, v["session"].as_str().unwrap().to_string())
}

fn socket(env: &TestEnv) -> String {
    gastown::session::tmux_socket(&env.town.canonicalize().unwrap())
}

fn tmux(env: &TestEnv, args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args([&["-L", &socket(env)], args].concat())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn healthy_town_lists_every_check_and_exits_zero() {
    let env = TestEnv::new();
    env.add_rig("r");
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{text}");
    for (line, name) in lines.iter().zip(CHECKS) {
        let want = format!("check {name:<10} ");
        assert!(line.starts_with(&want), "{line:?} should start {want:?}");
        let result = line[want.len()..].split_whitespace().next();
        assert!(matches!(result, Some("ok" | "skipped")), "{line}");
    }
    assert_eq!(lines.last(), Some(&"town is healthy"));
    let (code, json) = report(&env, false);
    assert_eq!(code, 0);
    assert_eq!(json["findings"], serde_json::json!([]));
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, CHECKS);
}

#[test]
fn bad_lines_are_reported_by_file_and_line_then_quarantined_by_fix() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let good = r#"{"id":"m1","from":"overseer","to":"mayor","subject":"s","body":"b","timestamp":"2026-11-25T09:00:00Z"}"#;
    let inbox = env.inbox_path("mayor");
    let text = format!("{good}\nnot json\n\n{{\"id\":\"m2\"}}\n{{\"id\":\"to");
    std::fs::write(&inbox, &text).unwrap();
    let issues = rig.join(".beads/issues.jsonl");
    std::fs::write(&issues, "garbage\n").unwrap();
    let junk = rig.join("refinery/queue/pending/notes.txt");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, "hello").unwrap();

    let (code, stdout) = doctor(&env, &[]);
    assert_eq!(code, 0, "warnings alone exit 0: {stdout}");
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("check "))
        .collect();
    assert_eq!(
        problems,
        [
            "warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 2: not JSON (expected ident at column 2); readers skip it (--fix repairs this)",
            "warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 4: not a valid record (missing field `from`); readers skip it (--fix repairs this)",
            "warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 5: incomplete last line (a killed writer's torn line, or a write in progress); readers skip it (--fix repairs this)",
            "warning: $TEST_ENV/town/r/.beads/issues.jsonl: line 1: not JSON (expected value at column 1); readers skip it, rewrites keep it (--fix repairs this)",
            "warning: $TEST_ENV/town/r/refinery/queue/pending/notes.txt: not an entry (entries are named <id>.json); the queue skips it",
            "5 problem(s): 0 error(s), 5 warning(s)",
        ]
    );
    assert!(stdout.contains("check mail       warning "), "{stdout}");
    // Doctor without --fix only reads: the files are untouched.
    assert_eq!(std::fs::read_to_string(&inbox).unwrap(), text);
    assert_eq!(std::fs::read_to_string(&issues).unwrap(), "garbage\n");

    let (code, json) = report(&env, true);
    assert_eq!(code, 0);
    assert_eq!(
        found(&json),
        [
            "mail-line (fixed)",
            "mail-line (fixed)",
            "mail-line (fixed)",
            "beads-line (fixed)",
            "queue-junk"
        ]
    );
    assert_eq!(result_of(&json, "mail"), "fixed");
    assert_eq!(
        std::fs::read_to_string(&inbox).unwrap(),
        format!("{good}\n\n")
    );
    assert_eq!(
        std::fs::read_to_string(inbox.with_file_name("inbox.jsonl.quarantine")).unwrap(),
        "not json\n{\"id\":\"m2\"}\n{\"id\":\"to\n"
    );
    assert_eq!(std::fs::read_to_string(&issues).unwrap(), "");
    assert_eq!(
        std::fs::read_to_string(rig.join(".beads/issues.jsonl.quarantine")).unwrap(),
        "garbage\n"
    );
    assert!(junk.exists(), "queue junk is a person's to remove");
    // Idempotent: the next doctor finds only the queue junk, and a second fix changes nothing.
    let (_, json) = report(&env, true);
    assert_eq!(found(&json), ["queue-junk"]);
    assert_eq!(
        std::fs::read_to_string(&inbox).unwrap(),
        format!("{good}\n\n")
    );
}

/// A mail line that is a record but breaks the schema is reported as what
/// it is: readers still show it, and --fix leaves it where it is.
#[test]
fn a_mail_line_that_breaks_the_schema_stays_and_readers_still_use_it() {
    let env = TestEnv::new();
    let line = r#"{"id":"m1","from":"overseer","to":"mayor","subject":"s","body":"b","timestamp":"yesterday"}"#;
    let inbox = env.inbox_path("mayor");
    std::fs::write(&inbox, format!("{line}\n")).unwrap();
    let want = "line 1: breaks the mail-message schema (\"timestamp\" is not an RFC 3339 time: \"yesterday\"); readers still use it";
    for fix in [false, true] {
        let (code, json) = report(&env, fix);
        assert_eq!((code, found(&json)), (0, vec!["mail-line".to_string()]));
        let f = &json["findings"][0];
        assert_eq!(
            (f["message"].as_str(), &f["fixable"]),
            (Some(want), &Value::Bool(false)),
            "{f}"
        );
        assert_eq!(
            std::fs::read_to_string(&inbox).unwrap(),
            format!("{line}\n")
        );
        assert!(!inbox.with_file_name("inbox.jsonl.quarantine").exists());
    }
    let listed = env.ok("gt", &["inbox", "--as", "mayor", "--json"]);
    assert_eq!(crate::common::jsonl_ids(&listed), ["m1"]);
}

#[test]
fn fix_restores_missing_homes_and_mail_and_removes_dead_writers_temp_files() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    std::fs::remove_dir_all(rig.join("witness")).unwrap();
    std::fs::remove_dir_all(env.town.join("mayor/mail")).unwrap();
    std::fs::write(env.town.join("overseer/state.json"), "{broken").unwrap();
    // pid 999999999 cannot exist (above pid_max), so its temp file is stray.
    let stray = env.town.join("mayor/.state.json.tmp.999999999.0");
    std::fs::write(&stray, "{").unwrap();
    let live = env
        .town
        .join(format!("mayor/.state.json.tmp.{}.0", std::process::id()));
    std::fs::write(&live, "{").unwrap();

    let (code, json) = report(&env, false);
    assert_eq!(code, 1);
    assert_eq!(
        found(&json),
        ["home-missing", "mail-missing", "agent-state", "stray-temp"],
        "{json:#}"
    );

    let (code, stdout) = doctor(&env, &["--fix"]);
    assert_eq!(code, 1, "the broken state.json is not auto-fixable");
    assert!(
        stdout.contains("rig r has no witness home (fixed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mayor has no mail directory; mail to it fails (fixed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: $TEST_ENV/town/overseer/state.json:1:2: key must be a string\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 problem(s): 1 error(s), 0 warning(s)\n"),
        "{stdout}"
    );
    assert!(rig.join("witness/state.json").is_file());
    assert!(env.inbox_path("mayor").is_file());
    env.ok("gt", &["send", "mayor", "-s", "hello", "-m", "back"]);
    assert!(!stray.exists());
    assert!(live.exists(), "a live writer's temp file is left alone");
}

#[test]
fn a_config_value_that_does_not_parse_is_an_error_naming_file_and_field() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    crate::common::edit_json(&rig.join("config.json"), |c| {
        c["stuck_after"] = "banana".into();
    });
    let (code, out) = doctor(&env, &["--fix"]);
    assert_eq!(code, 1, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("error: $TEST_ENV/town/r/config.json: \"stuck_after\": "),
        "{first}"
    );
    assert!(first.contains("banana"), "{first}");
    assert!(out.contains("check config     error "), "{out}");
}

/// Failure table, "Agent crash: session gone, state shows 'working' — gt
/// doctor detects, reset state to idle".
#[test]
fn agent_crash_is_found_and_fix_resets_the_worker_releases_its_issue_and_tells_the_witness() {
    if !have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    env.add_rig("r");
    let (id, session) = spawn_tmux(&env, "sleep 600");
    // The crash: the agent's whole process group dies behind gastown's back.
    let pid: i32 = session.split(':').nth(3).unwrap().parse().unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(gastown::session::wait(
        &session,
        std::time::Duration::from_secs(10)
    ));

    let (code, out) = doctor(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "error: $TEST_ENV/town/r/polecats/Nux/state.json: r/Nux is working but its session {session} is gone (--fix repairs this)\n"
        )),
        "{out}"
    );
    assert_eq!(
        env.state("r/polecats/Nux")["status"],
        "working",
        "doctor alone only reads"
    );

    let (code, out) = doctor(&env, &["--fix"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "gone; reset to idle, {id} released, r/witness told (fixed)"
        )),
        "{out}"
    );
    assert_eq!(env.state("r/polecats/Nux")["status"], "idle");
    let i = issue(&env, &id);
    assert_eq!(
        (i["status"].as_str(), i.get("assignee")),
        (Some("open"), None),
        "{i}"
    );
    let mail = env.inbox("r/witness");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(
        mail[0]["subject"],
        "doctor: r/Nux reset after its session died"
    );
    assert_eq!(mail[0]["type"], "doctor");
    // Idempotent: clean now, and a second fix tells nobody again.
    let (code, json) = report(&env, true);
    assert_eq!((code, found(&json)), (0, Vec::<String>::new()));
    assert_eq!(env.inbox("r/witness").len(), 1);
}

/// Failure table, "Tmux crash: all sessions inaccessible — gt doctor --fix
/// cleans up"; and a zombie session nobody records is named and killed.
#[test]
fn tmux_crash_and_zombie_sessions_are_cleaned_up_by_fix() {
    if !have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    env.add_rig("r");
    let (_, session) = spawn_tmux(&env, "sleep 600");
    tmux(
        &env,
        &["new-session", "-d", "-s", "gt-r-Ghost", "sleep 600"],
    );
    let (code, json) = report(&env, false);
    assert_eq!(code, 1);
    // No daemon, no Witness loop while a polecat works: warnings.
    assert_eq!(
        found(&json),
        ["zombie-session", "heartbeat", "loop-down", "loop-down"],
        "{json:#}"
    );
    let zombie = json["findings"][0]["message"].as_str().unwrap();
    assert!(
        zombie.starts_with("tmux session gt-r-Ghost (pid "),
        "{zombie}"
    );

    let (code, json) = report(&env, true);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(
        found(&json),
        [
            "zombie-session (fixed)",
            "heartbeat",
            "loop-down",
            "loop-down"
        ]
    );
    let sessions = tmux(&env, &["list-sessions", "-F", "#{session_name}"]);
    assert_eq!(
        sessions, "gt-r-Nux\n",
        "the zombie is gone, the recorded session stays"
    );

    // The crash: the whole server goes.
    tmux(&env, &["kill-server"]);
    assert!(gastown::session::wait(
        &session,
        std::time::Duration::from_secs(10)
    ));
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (1, vec!["session-dead".to_string()]));
    let (code, json) = report(&env, true);
    assert_eq!(
        (code, found(&json)),
        (0, vec!["session-dead (fixed)".to_string()])
    );
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (0, Vec::<String>::new()));
    assert_eq!(env.state("r/polecats/Nux")["status"], "idle");
}

/// Failure table, "Git dirty state: Witness pre-kill check fails — nudge
/// worker, or manual commit/discard": a dead worker with work in its clone is
/// left to the Witness; a dirty refinery clone is a person's; a clean one on a
/// stray branch is switched back.
#[test]
fn git_dirty_state_is_reported_and_nothing_in_a_clone_is_lost() {
    if !have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let (id, session) = spawn_tmux(&env, "echo wip > notes.txt");
    assert!(gastown::session::wait(
        &session,
        std::time::Duration::from_secs(10)
    ));
    let main = rig.join("refinery/rig");
    git(&main, &["checkout", "-q", "-b", "stray"]);

    let (code, json) = report(&env, true);
    assert_eq!(code, 1);
    assert_eq!(
        found(&json),
        ["refinery-branch (fixed)", "session-dead"],
        "{json:#}"
    );
    let dead = json["findings"][1]["message"].as_str().unwrap();
    assert!(
        dead.ends_with("its clone has 1 uncommitted file(s): the Witness submits or nudges it (gt witness patrol r)"),
        "{dead}"
    );
    assert_hint_runs(&env, dead);
    assert_eq!(git(&main, &["branch", "--show-current"]), "main\n");
    assert_eq!(env.state("r/polecats/Nux")["status"], "working");
    assert_eq!(
        issue(&env, &id)["assignee"],
        "r/Nux",
        "the claim stays with the work"
    );
    assert_eq!(
        std::fs::read_to_string(rig.join("polecats/Nux/rig/notes.txt")).unwrap(),
        "wip\n"
    );

    std::fs::write(main.join("README"), "edited\n").unwrap();
    let (code, out) = doctor(&env, &["--fix"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("the refinery's clone has 1 uncommitted file(s) (README); commit or discard them by hand\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(main.join("README")).unwrap(),
        "edited\n"
    );
}

/// Failure table, "Beads sync conflict: bd sync fails": conflict markers left
/// in the tracker file are lines no reader can use; --fix moves them aside.
#[test]
fn beads_sync_conflict_markers_are_quarantined() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Kept");
    let issues = rig.join(".beads/issues.jsonl");
    let kept = std::fs::read_to_string(&issues).unwrap();
    std::fs::write(
        &issues,
        format!("<<<<<<< HEAD\n{kept}=======\n>>>>>>> origin/main\n"),
    )
    .unwrap();
    let (code, json) = report(&env, true);
    assert_eq!(code, 0);
    assert_eq!(found(&json), ["beads-line (fixed)"; 3], "{json:#}");
    assert_eq!(std::fs::read_to_string(&issues).unwrap(), kept);
    assert_eq!(
        std::fs::read_to_string(rig.join(".beads/issues.jsonl.quarantine")).unwrap(),
        "<<<<<<< HEAD\n=======\n>>>>>>> origin/main\n"
    );
    assert_eq!(issue(&env, &id)["title"], "Kept");
}

/// Failure table, "Stuck work: no progress for 30+ minutes — Witness
/// escalates, Overseer intervenes": doctor warns, exits 0, changes nothing.
#[test]
fn stuck_work_is_a_warning() {
    if !have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    env.add_rig("r");
    let (_, _) = spawn_tmux(&env, "sleep 600");
    let beat = env.home("r/polecats/Nux/heartbeat");
    std::fs::write(&beat, "").unwrap();
    // An hour before the tests' clock (GT_NOW), and a session started before that.
    let old = std::fs::File::options().write(true).open(&beat).unwrap();
    old.set_modified(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_593_600),
    )
    .unwrap();
    env.edit_state("r/polecats/Nux", |s| {
        s["started_at"] = "2026-11-25T07:00:00Z".into()
    });
    let (code, json) = report(&env, true);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(found(&json), ["heartbeat", "loop-down", "loop-down"]);
    assert_eq!(
        json["findings"][0]["message"],
        "r/Nux has not beaten for 3600s (limit 1800s)"
    );
    env.edit_state("r/polecats/Nux", |s| {
        s["status"] = "stuck".into();
        s["nudges"] = 4.into();
    });
    let (code, json) = report(&env, true);
    assert_eq!(code, 0);
    assert_eq!(found(&json), ["worker-stuck", "loop-down", "loop-down"]);
    assert_eq!(env.state("r/polecats/Nux")["status"], "stuck");
}

/// Failure table, "Disk full: write operations fail": a write cut short
/// leaves a torn line, and a cleanup by hand may take a directory too much.
#[test]
fn disk_full_leftovers_a_torn_line_and_a_lost_mail_dir_are_repaired() {
    let env = TestEnv::new();
    env.add_rig("r");
    env.ok("gt", &["send", "r/witness", "-s", "one", "-m", "kept"]);
    let inbox = env.inbox_path("r/witness");
    let mut text = std::fs::read_to_string(&inbox).unwrap();
    text.push_str("{\"id\":\"msg-torn\",\"fro");
    std::fs::write(&inbox, &text).unwrap();
    std::fs::remove_dir_all(env.town.join("r/refinery/mail")).unwrap();
    let (code, json) = report(&env, true);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(found(&json), ["mail-missing (fixed)", "mail-line (fixed)"]);
    assert_eq!(env.inbox("r/witness").len(), 1);
    assert_eq!(jsonl(&inbox)[0]["subject"], "one");
    env.ok(
        "gt",
        &["send", "r/refinery", "-s", "two", "-m", "delivered"],
    );
    assert_eq!(env.inbox("r/refinery").len(), 1);
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (0, Vec::<String>::new()));
}

#[test]
fn orphaned_claims_are_released() {
    let env = TestEnv::new();
    env.add_rig("r");
    env.ok("gt", &["polecat", "add", "r"]);
    let idle = env.issue("r", "Held by an idle polecat");
    let gone = env.issue("r", "Held by nobody");
    let person = env.issue("r", "Held by a person");
    for (id, who) in [(&idle, "r/Nux"), (&gone, "r/Ghost"), (&person, "alice")] {
        env.ok(
            "gt",
            &[
                "issue",
                "update",
                id,
                "--status",
                "in_progress",
                "--assignee",
                who,
            ],
        );
    }
    let (code, json) = report(&env, false);
    assert_eq!(code, 1);
    assert_eq!(
        found(&json),
        ["claim-orphaned", "claim-orphaned"],
        "{json:#}"
    );
    let msgs: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.contains(
            &format!("{idle} is in_progress for r/Nux, but r/Nux is idle; nobody works on it")
                .as_str()
        ),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(
            &format!(
                "{gone} is in_progress for r/Ghost, but r/Ghost does not exist; nobody works on it"
            )
            .as_str()
        ),
        "{msgs:?}"
    );
    let (code, _) = report(&env, true);
    assert_eq!(code, 0);
    for id in [&idle, &gone] {
        let i = issue(&env, id);
        assert_eq!(
            (i["status"].as_str(), i.get("assignee")),
            (Some("open"), None),
            "{i}"
        );
    }
    assert_eq!(issue(&env, &person)["assignee"], "alice");

    // An idle polecat whose clone holds a commit not on origin keeps its
    // claim: released, the work would be lost to it.
    let rig = env.town.join("r");
    crate::queue::commit(&rig.join("polecats/Nux/rig"), "x.txt", "x");
    env.ok(
        "gt",
        &[
            "issue",
            "update",
            &idle,
            "--status",
            "in_progress",
            "--assignee",
            "r/Nux",
        ],
    );
    let (code, json) = report(&env, true);
    assert_eq!(code, 1);
    assert_eq!(
        json["findings"][0]["message"],
        format!(
            "{idle} is in_progress for r/Nux, but r/Nux is idle; nobody works on it; its clone has \
             1 commit(s) not on origin: queue it (gt merge-queue add r Nux) or clean the clone, then \
             release the claim"
        ),
        "{json:#}"
    );
    assert_eq!(issue(&env, &idle)["assignee"], "r/Nux");
}

#[test]
fn missing_and_broken_clones_are_recloned_and_the_broken_one_kept_aside() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.ok("gt", &["polecat", "add", "r"]);
    std::fs::remove_dir_all(rig.join("mayor/rig")).unwrap();
    let clone = rig.join("polecats/Nux/rig");
    std::fs::remove_dir_all(clone.join(".git")).unwrap();
    std::fs::write(clone.join("mine.txt"), "keep me\n").unwrap();
    let (code, json) = report(&env, true);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(found(&json), ["clone (fixed)", "clone (fixed)"]);
    assert_eq!(
        git(&rig.join("mayor/rig"), &["branch", "--show-current"]),
        "main\n"
    );
    assert_eq!(git(&clone, &["branch", "--show-current"]), "polecat/Nux\n");
    let aside: Vec<_> = std::fs::read_dir(rig.join("polecats/Nux"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rig.broken."))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read_to_string(aside[0].path().join("mine.txt")).unwrap(),
        "keep me\n"
    );
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (0, Vec::<String>::new()));
}

#[test]
fn a_locked_file_is_waited_for_a_bounded_time_and_left_alone() {
    let env = TestEnv::new();
    env.add_rig("r");
    let inbox = env.inbox_path("mayor");
    std::fs::write(&inbox, "junk\n").unwrap();
    let lock = inbox.with_file_name("inbox.lock");
    // Held by this process, as a writer stuck mid-append would hold it.
    let held = gastown::fsio::lock_file(&lock).unwrap();
    let started = std::time::Instant::now();
    let (code, json) = report(&env, true);
    drop(held);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(code, 0);
    let msg = json["findings"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("held by another process for over 3s; left alone"),
        "{msg}"
    );
    assert_eq!(json["findings"][0]["fixed"], false);
    assert_eq!(std::fs::read_to_string(&inbox).unwrap(), "junk\n");
}

/// Failure table, "Tmux crash" for the process backend: a process group the
/// town started whose record was lost is named and killed by `--fix`.
#[test]
fn a_process_group_no_state_records_is_a_zombie_killed_by_fix() {
    let env = TestEnv::new();
    env.add_rig("r");
    let pid = env.spawn_process("r", "Lost");
    env.edit_state("r/polecats/Lost", |s| {
        s.as_object_mut().unwrap().remove("session");
        s["status"] = "idle".into();
    });
    let (code, json) = report(&env, false);
    assert_eq!(code, 1);
    assert_eq!(
        found(&json),
        ["zombie-process", "claim-orphaned"],
        "{json:#}"
    );
    assert_eq!(
        json["findings"][0]["message"],
        format!(
            "process group {pid} (sleep) was started for the town but is recorded in no state.json"
        )
    );
    assert_eq!(result_of(&json, "zombies"), "error");
    let (code, json) = report(&env, true);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(
        found(&json),
        ["zombie-process (fixed)", "claim-orphaned (fixed)"]
    );
    assert!(
        crate::common::wait_until(10, || process_gone(pid)),
        "the lost process survived"
    );
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (0, Vec::<String>::new()));
}

/// A Witness left `working` with no session is the daemon's to restart: a
/// warning naming the command that does it.
#[test]
fn a_dead_witness_session_names_the_daemon_pass_that_restarts_it() {
    let env = TestEnv::new();
    env.add_rig("r");
    env.edit_state("r/witness", |s| s["status"] = "working".into());
    let (code, json) = report(&env, false);
    assert_eq!((code, found(&json)), (0, vec!["session-dead".to_string()]));
    let message = json["findings"][0]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "r/witness is working but has no session; the daemon restarts it (gt daemon tick)"
    );
    assert_hint_runs(&env, message);
}

/// The daemon, a Witness loop and a Refinery loop that have work and do not
/// run are warnings (exit 0), each naming how to start it; gone once they run.
#[test]
fn loops_down_while_they_have_work_are_warnings() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    env.spawn_process("r", "Nux");
    let pending = rig.join("refinery/queue/pending");
    std::fs::create_dir_all(&pending).unwrap();
    // A hand-written entry of this rig; junk beside it waits for nobody.
    std::fs::write(
        pending.join("20261125T092000.123456Z-Nux.json"),
        r#"{"polecat": "Nux", "branch": "polecat/Nux"}"#,
    )
    .unwrap();
    std::fs::write(pending.join("zzz-junk.json"), "not json\n").unwrap();
    let (code, json) = report(&env, false);
    assert_eq!(code, 0, "{json:#}");
    let loops: Vec<(&str, &str)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "loop-down")
        .map(|f| (f["path"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        loops,
        [
            (
                "$TEST_ENV/town/config/daemon.run",
                "the daemon is not running while 1 session(s) run: nothing restarts a crashed agent (start it: gt daemon run)"
            ),
            (
                "$TEST_ENV/town/r/witness/run.lock",
                "the Witness loop of r is not running while 1 polecat(s) work: nobody patrols them (start it: gt witness run r)"
            ),
            (
                "$TEST_ENV/town/r/refinery/run.lock",
                "the Refinery loop of r is not running while 1 merge(s) wait: nobody merges them (start it: gt refinery process r)"
            ),
        ]
    );
    for (_, message) in &loops {
        assert_hint_runs(&env, message);
    }
    assert_eq!(result_of(&json, "loops"), "warning");

    let mut c = env.cmd("gt");
    c.args(["daemon", "run", "--json", "--every", "1h"]);
    let _daemon = Watcher::start(c, "gt-daemon: watching");
    let mut c = env.cmd("gt");
    c.args(["witness", "run", "r", "--json", "--every", "1h"]);
    let _witness = Watcher::start(c, "gt-witness: watching");
    let (code, json) = report(&env, false);
    assert_eq!(code, 0, "{json:#}");
    let paths: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "loop-down")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["$TEST_ENV/town/r/refinery/run.lock"]);
}
