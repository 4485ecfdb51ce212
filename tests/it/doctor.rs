//! `gt doctor`: damage is found, named by file and line, and `--fix` repairs
//! only what is safe.

use crate::common::TestEnv;

#[test]
fn healthy_town_exits_zero() {
    let env = TestEnv::new();
    env.add_rig("r");
    assert_eq!(env.ok("gt", &["doctor"]), "town is healthy\n");
    assert_eq!(env.ok("gt", &["doctor", "--json"]), "[]\n");
}

#[test]
fn reports_bad_mail_tracker_and_queue_files_by_file_and_line() {
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

    let out = env.run("gt", &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        env.normalize(&stdout),
        "warning: $TEST_ENV/town/r/.beads/issues.jsonl: line 1: not JSON (expected value at column 1); readers skip it, rewrites keep it\n\
         warning: $TEST_ENV/town/r/refinery/queue/pending/notes.txt: not an entry (entries are named <id>.json); the queue skips it\n\
         warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 2: not JSON (expected ident at column 2); readers skip it\n\
         warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 4: not a valid record (missing field `from`); readers skip it\n\
         warning: $TEST_ENV/town/mayor/mail/inbox.jsonl: line 5: incomplete last line (a killed writer's torn line, or a write in progress); readers skip it\n\
         5 problem(s)\n"
    );
    // Doctor only reads: the files are untouched.
    assert_eq!(std::fs::read_to_string(&inbox).unwrap(), text);
    assert_eq!(std::fs::read_to_string(&issues).unwrap(), "garbage\n");
    assert!(junk.exists());
}

#[test]
fn fix_restores_missing_homes_and_removes_dead_writers_temp_files() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    std::fs::remove_dir_all(rig.join("witness")).unwrap();
    std::fs::write(env.town.join("overseer/state.json"), "{broken").unwrap();
    // pid 999999999 cannot exist (above pid_max), so its temp file is stray.
    let stray = env.town.join("mayor/.state.json.tmp.999999999.0");
    std::fs::write(&stray, "{").unwrap();
    let live = env
        .town
        .join(format!("mayor/.state.json.tmp.{}.0", std::process::id()));
    std::fs::write(&live, "{").unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&env.ok_or_no("gt", &["doctor", "--json"])).unwrap();
    let checks: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["home-missing", "agent-state", "stray-temp"],
        "{json:#}"
    );

    let out = env.run("gt", &["doctor", "--fix"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the broken state.json is not auto-fixable"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("rig r has no witness home (fixed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "error: {}:1:2: key must be a string\n",
            env.town.join("overseer/state.json").display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 problem(s)\n"), "{stdout}");
    assert!(rig.join("witness/state.json").is_file());
    assert!(!stray.exists());
    assert!(live.exists(), "a live writer's temp file is left alone");
}
