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

mod merge_oracle {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::common::*;
    use crate::queue::{files, rig_with_work};

    fn jsonl_values(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A rig with Nux's work queued and a bare `merge-oracle` directory.
    fn setup(env: &TestEnv, plugins: Value) -> PathBuf {
        let rig = rig_with_work(env, &["Nux"]);
        std::fs::create_dir(rig.join("plugins/merge-oracle")).unwrap();
        edit_json(&rig.join("config.json"), |c| c["plugins"] = plugins);
        env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
        rig
    }

    fn refinery(env: &TestEnv) -> Child {
        env.cmd("gt")
            .args(["refinery", "process", "r", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn finish(child: Child) -> String {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The stand-in plugin (the test itself): wait for request number `n` in
    /// the plugin's inbox, then append `reply` (with `reply_to` set to the
    /// request's id) to the Refinery's inbox, as a plugin's `gt send` would.
    fn answer(env: &TestEnv, rig: &Path, n: usize, reply: Option<Value>) -> Value {
        let inbox = rig.join("plugins/merge-oracle/mail/inbox.jsonl");
        assert!(
            wait_until(20, || inbox.exists() && jsonl(&inbox).len() >= n),
            "no request reached the plugin"
        );
        let request = jsonl(&inbox)[n - 1].clone();
        if let Some(mut reply) = reply {
            let base = json!({
                "id": format!("msg-reply{n}"), "from": "r/plugins/merge-oracle",
                "to": "r/refinery", "subject": "verdict", "body": "",
                "timestamp": NOW, "type": "verdict", "reply_to": request["id"],
            });
            for (k, v) in base.as_object().unwrap() {
                reply
                    .as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(v.clone());
            }
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(env.inbox_path("r/refinery"))
                .unwrap();
            f.write_all(format!("{reply}\n").as_bytes()).unwrap();
        }
        request
    }

    #[test]
    fn hold_keeps_the_entry_pending_with_its_reason_then_proceed_merges_it() {
        let env = TestEnv::new();
        let rig = setup(&env, json!({"timeout": "20s"}));
        let id = files(&rig, "pending")[0]
            .trim_end_matches(".json")
            .to_string();

        let child = refinery(&env);
        let request = answer(
            &env,
            &rig,
            1,
            Some(json!({"verdict": "hold", "reason": "release freeze until Friday"})),
        );
        assert_eq!(
            (
                &request["type"],
                &request["hook"],
                &request["from"],
                &request["entry"],
                &request["queue_entry"]["polecat"],
                &request["queue"],
            ),
            (
                &json!("consult"),
                &json!("before_merge"),
                &json!("r/refinery"),
                &json!(id),
                &json!("r/Nux"),
                &json!([]),
            )
        );
        assert_eq!(
            finish(child),
            format!("held {id} by r/plugins/merge-oracle: release freeze until Friday\n")
        );
        assert_eq!(files(&rig, "pending"), [format!("{id}.json")]);
        let entry = read_json(&rig.join(format!("refinery/queue/pending/{id}.json")));
        assert_eq!(
            entry["hold"],
            json!({"verdict": "hold", "reason": "release freeze until Friday",
                   "by": "r/plugins/merge-oracle", "at": NOW})
        );
        assert_eq!(entry["claimed_by"], Value::Null);
        let list = env.ok("gt", &["merge-queue", "list", "r"]);
        assert!(
            list.lines().nth(1).is_some_and(|l| l.starts_with(&id)
                && l.ends_with("hold by r/plugins/merge-oracle: release freeze until Friday")),
            "{list}"
        );
        assert!(list.lines().next().unwrap().ends_with("HOLD"), "{list}");
        let listed = jsonl_values(&env.ok("gt", &["merge-queue", "list", "r", "--json"]));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["hold"], entry["hold"]);

        // The next pass asks again; this time the plugin says proceed.
        let child = refinery(&env);
        let again = answer(
            &env,
            &rig,
            2,
            Some(json!({"verdict": "proceed", "reason": "freeze over"})),
        );
        assert_eq!(
            again["queue_entry"]["hold"]["reason"],
            "release freeze until Friday"
        );
        let out = finish(child);
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        let merged = read_json(&rig.join(format!("refinery/queue/merged/{id}.json")));
        assert_eq!(merged["hold"], Value::Null);
    }

    #[test]
    fn escalate_holds_the_entry_and_mails_the_mayor_once() {
        let env = TestEnv::new();
        let rig = setup(&env, json!({"timeout": "20s"}));
        let id = files(&rig, "pending")[0]
            .trim_end_matches(".json")
            .to_string();
        for n in 1..=2 {
            let child = refinery(&env);
            answer(
                &env,
                &rig,
                n,
                Some(json!({"verdict": "escalate", "reason": "touches the schema"})),
            );
            let out = finish(child);
            assert!(
                out.starts_with(&format!(
                    "escalated {id} by r/plugins/merge-oracle: touches the schema\n"
                )),
                "{out}"
            );
        }
        let mayor: Vec<Value> = env
            .inbox("mayor")
            .into_iter()
            .filter(|m| m["type"] == "escalation")
            .collect();
        assert_eq!(mayor.len(), 1, "{mayor:?}");
        assert_eq!(
            mayor[0]["subject"],
            format!("escalation: r/plugins/merge-oracle on {id} (r/Nux)")
        );
        assert_eq!(files(&rig, "pending"), [format!("{id}.json")]);
    }

    #[test]
    fn a_silent_plugin_times_out_and_the_entry_proceeds() {
        let env = TestEnv::new();
        let rig = setup(&env, json!({"timeout": "300ms"}));
        let id = files(&rig, "pending")[0]
            .trim_end_matches(".json")
            .to_string();
        let start = Instant::now();
        let out = finish(refinery(&env));
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        assert!(start.elapsed() >= Duration::from_millis(300));
        let inbox = jsonl(&rig.join("plugins/merge-oracle/mail/inbox.jsonl"));
        assert_eq!(inbox.len(), 1, "the silent plugin was asked once");
    }

    #[test]
    fn a_junk_reply_is_no_verdict_and_the_entry_proceeds_without_waiting_out_the_timeout() {
        let env = TestEnv::new();
        let rig = setup(&env, json!({"timeout": "60s"}));
        let id = files(&rig, "pending")[0]
            .trim_end_matches(".json")
            .to_string();
        let start = Instant::now();
        let child = refinery(&env);
        std::fs::OpenOptions::new()
            .append(true)
            .open(env.inbox_path("r/refinery"))
            .unwrap()
            .write_all(b"this is not json\n")
            .unwrap();
        answer(&env, &rig, 1, Some(json!({"verdict": "maybe later"})));
        let out = finish(child);
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_plugin_configured_off_is_not_consulted() {
        let env = TestEnv::new();
        let rig = setup(&env, json!({"before_merge": false}));
        let out = finish(refinery(&env));
        assert!(out.starts_with("merged "), "{out}");
        assert!(!rig.join("plugins/merge-oracle/mail").exists());
    }
}
