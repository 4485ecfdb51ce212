//! `gt demo` end to end: the README's main job must work as written.

use crate::common::{TestEnv, git};

#[test]
fn demo_lands_a_whole_epic_through_witness_queue_and_refinery() {
    let env = TestEnv::empty();
    let dir = env.path().join("demo");
    let out = env
        .cmd("gt")
        .env_remove("GT_TOWN")
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every step is shown as the command a person would type.
    for step in [
        "$ gt install $DEMO/town",
        "$ gt witness patrol demo --epic",
        "$ gt refinery process demo --once",
        "$ gt inbox --as mayor",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    // Three greetings, one per child issue, are on origin's main.
    let files = git(
        &dir.join("origin.git"),
        &["ls-tree", "--name-only", "main", "greetings/"],
    );
    assert_eq!(files.lines().count(), 3, "{files}");
    let town = dir.join("town");
    let issues: serde_json::Value = serde_json::from_str(
        &String::from_utf8(
            env.cmd("gt")
                .env("GT_TOWN", &town)
                .args(["issue", "--rig", "demo", "list", "--all", "--json"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap(),
    )
    .unwrap();
    let statuses: Vec<&str> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["closed"; 4]);
    let mayor = std::fs::read_to_string(town.join("mayor/mail/inbox.jsonl")).unwrap();
    assert!(mayor.contains("\"subject\":\"work complete: "), "{mayor}");
    // The demo leaves no session running.
    let socket = gastown::session::tmux_socket(&town.canonicalize().unwrap());
    let sessions = std::process::Command::new("tmux")
        .args(["-L", &socket, "list-sessions"])
        .output()
        .unwrap();
    assert!(
        !sessions.status.success() || sessions.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&sessions.stdout)
    );
}
