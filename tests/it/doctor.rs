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
fn reports_torn_and_junk_lines_with_line_numbers() {
    let env = TestEnv::new();
    let inbox = env.town.join("mayor/mail/inbox.jsonl");
    std::fs::write(
        &inbox,
        "{\"id\":\"a\"}\nnot json\n\n{\"id\":\"b\"}\n{\"id\":\"to",
    )
    .unwrap();
    let out = env.run("gt", &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let p = inbox.display();
    assert_eq!(
        stdout,
        format!(
            "warning: {p}: line 2: not JSON (expected ident at column 2); readers skip it\n\
             warning: {p}: line 5: last line has no newline (a write in progress or torn by a crash); the next append closes it\n\
             2 problem(s)\n"
        )
    );
    // Doctor only reads: the file is untouched.
    assert_eq!(
        std::fs::read_to_string(&inbox).unwrap(),
        "{\"id\":\"a\"}\nnot json\n\n{\"id\":\"b\"}\n{\"id\":\"to"
    );
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
