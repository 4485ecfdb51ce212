//! Plugins (protocol/plugins.md): a directory is a plugin, and the hook
//! points consult one by mail with a bounded wait.

use crate::common::*;

#[test]
fn a_bare_directory_is_a_plugin_that_receives_mail() {
    let env = TestEnv::new();
    let rig = env.add_rig("wyvern");
    let dir = rig.join("plugins/merge-oracle");
    std::fs::create_dir(&dir).unwrap();
    // Reported truthfully before any mail: an idle plugin, no error.
    let text = env.ok("gt", &["plugins", "wyvern"]);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("wyvern/plugins/merge-oracle  plugin  idle ")),
        "{text}"
    );
    let row: serde_json::Value = serde_json::from_str(&env.ok(
        "gt",
        &["plugin", "status", "wyvern/plugins/merge-oracle", "--json"],
    ))
    .unwrap();
    assert_eq!(
        (row["status"].as_str(), &row["error"]),
        (Some("idle"), &serde_json::Value::Null)
    );
    assert!(!dir.join("mail").exists());
    let out = env.ok(
        "gt",
        &[
            "send",
            "wyvern/plugins/merge-oracle",
            "-s",
            "hello",
            "-m",
            "there",
        ],
    );
    assert!(out.starts_with("sent msg-"), "{out}");
    let inbox = env.inbox("wyvern/plugins/merge-oracle");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["subject"], "hello");
    assert_eq!(inbox[0]["to"], "wyvern/plugins/merge-oracle");
    // Delivery made mail/ and nothing else: no state.json was invented.
    assert!(!dir.join("state.json").exists());
}

#[test]
fn a_bare_plugins_mail_dir_is_confined_like_every_home() {
    let env = TestEnv::new();
    let rig = env.add_rig("wyvern");
    let outside = env.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dir = rig.join("plugins/evil");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("mail")).unwrap();
    let (code, err) = env.fails("gt", &["send", "wyvern/plugins/evil", "-s", "x", "-m", "y"]);
    assert_eq!(code, 2);
    assert_eq!(
        env.normalize(&err),
        "gt-mail: $TEST_ENV/town/wyvern/plugins/evil/mail: $TEST_ENV/town/wyvern/plugins/evil/mail \
         is a symlink to $TEST_ENV/outside, out of the town $TEST_ENV/town; refused\n"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // A plugin directory that is itself a link out of the town is no plugin.
    std::os::unix::fs::symlink(&outside, rig.join("plugins/evil2")).unwrap();
    let (_, err) = env.fails(
        "gt",
        &["send", "wyvern/plugins/evil2", "-s", "x", "-m", "y"],
    );
    assert!(err.contains("outside the town"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
