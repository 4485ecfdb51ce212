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
        (row["status"].as_str(), &row["error"], &row["state_age_s"]),
        (
            Some("idle"),
            &serde_json::Value::Null,
            // No state.json was ever written: it has no age.
            &serde_json::Value::Null
        )
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

/// What every hook's tests share: a queued rig, the test as a plugin, and a
/// stand-in plugin process.
mod exchange {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::{Child, Stdio};

    use serde_json::{Value, json};

    use crate::common::*;
    use crate::queue::rig_with_work;

    pub fn jsonl_values(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A rig with Nux's work queued and a bare `plugin` directory.
    pub fn queued(env: &TestEnv, plugin: &str, plugins: Value) -> PathBuf {
        let rig = rig_with_work(env, &["Nux"]);
        std::fs::create_dir(rig.join("plugins").join(plugin)).unwrap();
        edit_json(&rig.join("config.json"), |c| c["plugins"] = plugins);
        env.ok("gt", &["merge-queue", "add", "r", "Nux"]);
        rig
    }

    pub fn refinery(env: &TestEnv) -> Child {
        env.cmd("gt")
            .args(["refinery", "process", "r", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn finish(child: Child) -> String {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The test as the plugin: wait for request number `n` in `plugin`'s
    /// inbox, then append `reply` (with `reply_to` set to the request's id)
    /// to `asker`'s inbox, as hand-written JSON would be.
    pub fn answer(
        env: &TestEnv,
        plugin: &str,
        asker: &str,
        n: usize,
        reply: Option<Value>,
    ) -> Value {
        let inbox = env.inbox_path(plugin);
        assert!(
            wait_until(20, || inbox.exists() && jsonl(&inbox).len() >= n),
            "no request reached {plugin}"
        );
        let request = jsonl(&inbox)[n - 1].clone();
        if let Some(mut reply) = reply {
            let base = json!({
                "id": format!("msg-reply{n}"), "from": plugin,
                "to": asker, "subject": "verdict", "body": "",
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
                .open(env.inbox_path(asker))
                .unwrap();
            f.write_all(format!("{reply}\n").as_bytes()).unwrap();
        }
        request
    }

    /// A stand-in plugin process (the test double for the AI agent a
    /// plugin runs): it watches its inbox with `gt mail watch`, runs
    /// `$BEFORE` for each request, then answers with `gt send --verdict`.
    /// Killed (its process group) when dropped.
    pub struct StandIn(Child);

    const SCRIPT: &str = r#"gt mail watch | while IFS= read -r req; do
  id=${req#'{"id":"'}; id=${id%%'"'*}
  from=${req#*'"from":"'}; from=${from%%'"'*}
  if [ -n "$BEFORE" ]; then sh -c "$BEFORE" || exit 1; fi
  gt send "$from" --verdict "$VERDICT" --reply-to "$id" --reason "$REASON" >/dev/null || exit 1
done"#;

    impl StandIn {
        pub fn start(
            env: &TestEnv,
            plugin: &str,
            verdict: &str,
            reason: &str,
            before: &str,
        ) -> StandIn {
            let bins = bin("gt").parent().unwrap().to_path_buf();
            let path = std::env::join_paths(std::iter::once(bins).chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )))
            .unwrap();
            let child = std::process::Command::new("sh")
                .env_clear()
                .env("HOME", env.path())
                .env("TMPDIR", env.path().join("tmp"))
                .env("GT_TOWN", &env.town)
                .env("GT_NOW", NOW)
                .env("LC_ALL", "C")
                .current_dir(&env.town)
                .stdin(Stdio::null())
                .arg("-c")
                .arg(SCRIPT)
                .env("PATH", path)
                .env("GT_ADDRESS", plugin)
                .env("VERDICT", verdict)
                .env("REASON", reason)
                .env("BEFORE", before)
                .process_group(0)
                .spawn()
                .unwrap();
            StandIn(child)
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

mod merge_oracle {
    use std::io::Write;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::common::*;
    use crate::queue::files;

    use super::exchange::{self, finish, jsonl_values, refinery};

    /// A rig with Nux's work queued and a bare `merge-oracle` directory.
    fn setup(env: &TestEnv, plugins: Value) -> PathBuf {
        exchange::queued(env, "merge-oracle", plugins)
    }

    fn answer(env: &TestEnv, n: usize, reply: Option<Value>) -> Value {
        exchange::answer(env, "r/plugins/merge-oracle", "r/refinery", n, reply)
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
        let mayor = env.inbox_of("mayor", "escalation");
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
        answer(&env, 1, Some(json!({"verdict": "maybe later"})));
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

mod review_oracle {
    use std::io::Write;
    use std::path::Path;

    use serde_json::json;

    use super::exchange::{StandIn, finish, queued, refinery};
    use crate::common::*;
    use crate::queue::files;

    fn origin_main(rig: &Path) -> String {
        let url = read_json(&rig.join("config.json"))["git_url"]
            .as_str()
            .unwrap()
            .to_string();
        git(rig, &["ls-remote", &url, "refs/heads/main"])
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    fn entry_id(rig: &Path) -> String {
        files(rig, "pending")[0]
            .trim_end_matches(".json")
            .to_string()
    }

    #[test]
    fn reject_undoes_the_tested_merge_and_sends_the_work_back_with_the_reviewers_text() {
        let env = TestEnv::new();
        let rig = queued(&env, "review-oracle", json!({"timeout": "20s"}));
        edit_json(&rig.join("config.json"), |c| {
            c["test_command"] = json!("true")
        });
        let (id, before) = (entry_id(&rig), origin_main(&rig));
        let _plugin = StandIn::start(
            &env,
            "r/plugins/review-oracle",
            "reject",
            "Nux.txt needs a test",
            "",
        );
        let out = finish(refinery(&env));
        let reason = "cannot land r/Nux (polecat/Nux): rejected by r/plugins/review-oracle: \
                      Nux.txt needs a test; merge undone, nothing pushed";
        assert_eq!(
            out.lines().next().unwrap(),
            format!("failed {id}: {reason}"),
            "{out}"
        );
        assert_eq!(origin_main(&rig), before, "nothing pushed");
        let clone = rig.join("refinery/rig");
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), before);
        assert_eq!(git(&clone, &["status", "--porcelain"]), "");
        assert_eq!(files(&rig, "failed"), [format!("{id}.json")]);
        let failed = read_json(&rig.join(format!("refinery/queue/failed/{id}.json")));
        assert_eq!(failed["reason"], reason);

        // The request: the entry and the merge as it stood, not pushed.
        let request = &env.inbox("r/plugins/review-oracle")[0];
        assert_eq!(
            (
                &request["type"],
                &request["hook"],
                &request["verdicts"],
                &request["entry"],
                &request["ready"]["base"],
                &request["ready"]["tests"]["command"],
                &request["ready"]["tests"]["exit_code"],
            ),
            (
                &json!("consult"),
                &json!("on_ready"),
                &json!(["approve", "reject"]),
                &json!(id),
                &json!(before),
                &json!("true"),
                &json!(0),
            )
        );
        let head = request["ready"]["head"].as_str().unwrap();
        assert_eq!(
            git(&clone, &["cat-file", "-t", head]).trim(),
            "commit",
            "the reviewed merge is in the clone"
        );
        // The reply gt send --verdict wrote.
        let reply = env
            .inbox("r/refinery")
            .into_iter()
            .find(|m| m["type"] == "verdict")
            .unwrap();
        assert_eq!(
            (
                &reply["from"],
                &reply["reply_to"],
                &reply["verdict"],
                &reply["reason"],
                &reply["subject"],
                &reply["body"]
            ),
            (
                &json!("r/plugins/review-oracle"),
                &request["id"],
                &json!("reject"),
                &json!("Nux.txt needs a test"),
                &json!("verdict"),
                &json!("")
            )
        );
        // The Refinery consumed the reply: it is not left as unread mail.
        let unread = env.ok("gt", &["mail", "inbox", "--as", "r/refinery", "--json"]);
        assert!(!unread.contains(reply["id"].as_str().unwrap()), "{unread}");
        // Sent back like a failed merge: the polecat and the witness are told.
        for to in ["r/polecats/Nux", "r/witness"] {
            let mail = env.inbox_of(to, "merge_failed");
            assert_eq!(mail.len(), 1, "{to}: {mail:?}");
            assert_eq!(mail[0]["subject"], "merge rejected: r/Nux (polecat/Nux)");
            assert!(
                mail[0]["body"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{reason}\n\n")),
                "{}",
                mail[0]["body"]
            );
        }
    }

    #[test]
    fn approve_lands_the_entry_and_reports_the_review() {
        let env = TestEnv::new();
        let rig = queued(
            &env,
            "review-oracle",
            json!({"timeouts": {"on_ready": "20s"}}),
        );
        let id = entry_id(&rig);
        let _plugin = StandIn::start(&env, "r/plugins/review-oracle", "approve", "LGTM", "");
        let out = finish(refinery(&env));
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        assert!(
            out.lines()
                .any(|l| l == "  approve by r/plugins/review-oracle: LGTM"),
            "{out}"
        );
        let merged = read_json(&rig.join(format!("refinery/queue/merged/{id}.json")));
        assert_eq!(origin_main(&rig), merged["merged_sha"].as_str().unwrap());
    }

    #[test]
    fn a_silent_reviewer_times_out_and_the_entry_lands() {
        let env = TestEnv::new();
        let rig = queued(
            &env,
            "review-oracle",
            json!({"timeouts": {"on_ready": "300ms"}, "timeout": "60s"}),
        );
        let id = entry_id(&rig);
        let start = std::time::Instant::now();
        let out = finish(refinery(&env));
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        assert!(
            out.lines()
                .any(|l| l
                    == "  note: r/plugins/review-oracle gave no verdict within 0.3s; approved"),
            "{out}"
        );
        let took = start.elapsed();
        assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
        assert!(
            took < std::time::Duration::from_secs(30),
            "{took:?}: the 60s timeout was used"
        );
        assert_eq!(env.inbox("r/plugins/review-oracle").len(), 1);
    }

    #[test]
    fn a_junk_review_is_no_verdict_and_the_entry_lands() {
        let env = TestEnv::new();
        let rig = queued(&env, "review-oracle", json!({"timeout": "60s"}));
        let id = entry_id(&rig);
        let child = refinery(&env);
        let request =
            super::exchange::answer(&env, "r/plugins/review-oracle", "r/refinery", 1, None);
        // Another type, then a word the hook does not know: the first counts.
        let junk = json!({"id": "msg-junk", "from": "r/plugins/review-oracle", "to": "r/refinery",
            "subject": "verdict", "body": "", "timestamp": NOW, "type": "reply",
            "reply_to": request["id"], "verdict": "reject", "reason": "not a verdict"});
        std::fs::OpenOptions::new()
            .append(true)
            .open(env.inbox_path("r/refinery"))
            .unwrap()
            .write_all(format!("{junk}\n").as_bytes())
            .unwrap();
        let out = finish(child);
        assert!(out.starts_with(&format!("merged {id} ")), "{out}");
        assert!(
            out.lines().any(|l| l
                == "  note: msg-junk: unreadable verdict from r/plugins/review-oracle \
                (type is \"reply\", not \"verdict\"); approved"),
            "{out}"
        );
    }
}

#[test]
fn gt_send_verdict_writes_the_reply_line_and_refuses_a_word_the_request_does_not_accept() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    std::fs::create_dir(rig.join("plugins/merge-oracle")).unwrap();
    let request = serde_json::json!({"id": "msg-req", "from": "r/refinery",
        "to": "r/plugins/merge-oracle", "subject": "before merge", "body": "",
        "timestamp": NOW, "type": "consult", "hook": "before_merge",
        "verdicts": ["proceed", "hold", "escalate"]});
    let mut deliver = env
        .cmd("gt")
        .args(["mail", "deliver"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(deliver.stdin.take().unwrap(), "{request}").unwrap();
    assert!(deliver.wait().unwrap().success());
    let as_plugin = ["--as", "r/plugins/merge-oracle"];
    let (code, err) = env.fails(
        "gt",
        &[
            &[
                "send",
                "r/refinery",
                "--verdict",
                "wait",
                "--reply-to",
                "msg-req",
            ][..],
            &as_plugin,
        ]
        .concat(),
    );
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "gt-mail: --verdict \"wait\": request msg-req accepts proceed, hold, escalate\n"
        )
    );
    assert!(!env.inbox_path("r/refinery").exists() || env.inbox("r/refinery").is_empty());
    env.ok(
        "gt",
        &[
            &[
                "send",
                "r/refinery",
                "--verdict",
                "hold",
                "--reply-to",
                "msg-req",
                "--reason",
                "freeze",
            ][..],
            &as_plugin,
        ]
        .concat(),
    );
    let reply = &env.inbox("r/refinery")[0];
    let mut reply = reply.as_object().unwrap().clone();
    assert!(
        reply
            .remove("id")
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("msg-")
    );
    assert_eq!(
        serde_json::Value::Object(reply),
        serde_json::json!({"from": "r/plugins/merge-oracle", "to": "r/refinery",
            "subject": "verdict", "body": "", "timestamp": NOW, "priority": "normal",
            "type": "verdict", "thread_id": "msg-req", "reply_to": "msg-req",
            "verdict": "hold", "reason": "freeze"})
    );
}

/// The Witness's hooks: a patrol's actions, in full.
fn patrol(env: &TestEnv, now: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = ok_output(
        env.cmd("gt")
            .args([&["witness", "patrol", "r", "--json"][..], args].concat())
            .env("GT_NOW", now),
    );
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
}

mod debug_oracle {
    use serde_json::{Value, json};

    use super::exchange::{StandIn, answer};
    use crate::common::*;

    /// A worker whose session left a dirty clone and was nudged three times:
    /// the next patrol escalates it. Returns its issue.
    fn stuck(env: &TestEnv, plugins: Value) -> String {
        let rig = env.add_rig("r");
        edit_json(&rig.join("config.json"), |c| {
            c["agent_command"] = "echo scratch > untracked.txt".into();
            c["plugins"] = plugins;
        });
        std::fs::create_dir(rig.join("plugins/debug-oracle")).unwrap();
        let id = env.issue("r", "messy");
        env.ok("gt", &["spawn", "--issue", &id]);
        let home = rig.join("polecats/Nux");
        env.wait_session(&home);
        env.edit_state(&home, |s| s["nudges"] = 3.into());
        id
    }

    fn escalate(env: &TestEnv) -> String {
        let actions = super::patrol(env, NOW, &[]);
        assert_eq!(
            (&actions[0]["action"], &actions[0]["subject"], actions.len()),
            (&json!("escalated"), &json!("r/Nux"), 1),
            "{actions:?}"
        );
        let mayor = env.inbox("mayor");
        assert_eq!(mayor.len(), 1, "{mayor:?}");
        assert_eq!(
            (&mayor[0]["subject"], &mayor[0]["type"]),
            (&json!("stuck: r/Nux"), &json!("escalation"))
        );
        mayor[0]["body"].as_str().unwrap().to_string()
    }

    const TODAY: &str = "Nudged 3 times without progress; marked stuck.";

    #[test]
    fn the_oracles_diagnosis_is_added_to_the_escalation() {
        let env = TestEnv::new();
        let issue = stuck(&env, json!({"timeout": "20s"}));
        let _plugin = StandIn::start(
            &env,
            "r/plugins/debug-oracle",
            "escalate",
            "it writes scratch files and never commits; give it a .gitignore",
            "",
        );
        let body = escalate(&env);
        assert!(
            body.starts_with("your session ended with a dirty clone:\n?? untracked.txt\n"),
            "{body}"
        );
        assert!(
            body.ends_with(&format!(
                "{TODAY}\n\nr/plugins/debug-oracle says: it writes scratch files and never commits; give it a .gitignore"
            )),
            "{body}"
        );
        let request = &env.inbox("r/plugins/debug-oracle")[0];
        assert_eq!(
            (
                &request["type"],
                &request["hook"],
                &request["verdicts"],
                &request["from"],
                &request["worker"],
                &request["worker_state"]["issue"],
                &request["worker_state"]["status"],
            ),
            (
                &json!("consult"),
                &json!("on_stuck"),
                &json!(["escalate"]),
                &json!("r/witness"),
                &json!("r/Nux"),
                &json!(issue),
                &json!("stuck"),
            )
        );
        assert!(
            request["evidence"]
                .as_str()
                .unwrap()
                .contains("?? untracked.txt"),
            "{request}"
        );
        assert!(
            request["clone"]
                .as_str()
                .unwrap()
                .ends_with("/r/polecats/Nux/rig")
        );
    }

    #[test]
    fn a_silent_oracle_leaves_the_escalation_as_it_was_saying_so() {
        let env = TestEnv::new();
        stuck(&env, json!({"timeouts": {"on_stuck": "300ms"}}));
        let body = escalate(&env);
        assert!(
            body.ends_with(&format!(
                "{TODAY}\n\nNo diagnosis: r/plugins/debug-oracle gave no verdict within 0.3s"
            )),
            "{body}"
        );
    }

    #[test]
    fn a_junk_reply_is_no_diagnosis() {
        let env = TestEnv::new();
        stuck(&env, json!({"timeout": "60s"}));
        let started = std::time::Instant::now();
        let plugin = std::thread::scope(|s| {
            let t = s.spawn(|| escalate(&env));
            answer(
                &env,
                "r/plugins/debug-oracle",
                "r/witness",
                1,
                Some(json!({"verdict": "restart", "reason": "try again"})),
            );
            t.join().unwrap()
        });
        assert!(
            plugin.ends_with(&format!(
                "{TODAY}\n\nNo diagnosis: msg-reply1: unreadable verdict from r/plugins/debug-oracle \
                 (\"restart\" is not one of escalate)"
            )),
            "{plugin}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn configured_off_it_is_not_asked() {
        let env = TestEnv::new();
        stuck(&env, json!({"on_stuck": false}));
        assert!(escalate(&env).ends_with(TODAY));
        assert!(!env.town.join("r/plugins/debug-oracle/mail").exists());
    }
}

mod plan_oracle {
    use serde_json::{Value, json};

    use super::exchange::{StandIn, answer};
    use crate::common::*;

    /// A rig with an epic and a bare `plan-oracle`; its workers exit at once.
    fn epic(env: &TestEnv, plugins: Value) -> String {
        let rig = env.add_rig("r");
        edit_json(&rig.join("config.json"), |c| {
            c["agent_command"] = "true".into();
            c["worker_spawn_delay"] = "0s".into();
            c["plugins"] = plugins;
        });
        std::fs::create_dir(rig.join("plugins/plan-oracle")).unwrap();
        create(env, &["Epic", "--type", "epic"])
    }

    fn create(env: &TestEnv, args: &[&str]) -> String {
        let out = env.ok(
            "gt",
            &[&["issue", "--rig", "r", "create"][..], args, &["--json"]].concat(),
        );
        serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn summary(actions: &[Value]) -> Vec<(String, String)> {
        actions
            .iter()
            .map(|a| {
                (
                    a["action"].as_str().unwrap().to_string(),
                    a["subject"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn pair(action: &str, subject: &str) -> (String, String) {
        (action.to_string(), subject.to_string())
    }

    fn plan(env: &TestEnv, epic: &str) -> Value {
        env.state("r/witness")["plans"][epic].clone()
    }

    #[test]
    fn dispatch_waits_for_planned_and_then_dispatches_the_children_the_plugin_filed() {
        let env = TestEnv::new();
        let epic = epic(&env, json!({"timeout": "20s"}));
        // The stand-in files two children, the second blocked by the first.
        let files = format!(
            "gt issue --rig r create A --parent {epic} >/dev/null && \
             gt issue --rig r create B --parent {epic} >/dev/null && \
             gt issue --rig r dep add {epic}.2 {epic}.1 >/dev/null"
        );
        let _plugin = StandIn::start(
            &env,
            "r/plugins/plan-oracle",
            "planned",
            "two steps",
            &files,
        );
        let first = super::patrol(&env, NOW, &["--epic", &epic]);
        assert_eq!(summary(&first), [pair("plan-asked", &epic)]);
        assert!(
            first[0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("asked r/plugins/plan-oracle (msg-"),
            "{first:?}"
        );
        let asked = plan(&env, &epic);
        assert_eq!(
            (
                &asked["hook"],
                &asked["by"],
                &asked["at"],
                &asked["verdict"]
            ),
            (
                &json!("before_dispatch"),
                &json!("r/plugins/plan-oracle"),
                &json!(NOW),
                &Value::Null
            )
        );
        let request = &env.inbox("r/plugins/plan-oracle")[0];
        assert_eq!(
            (
                &request["id"],
                &request["hook"],
                &request["verdicts"],
                &request["epic"],
                &request["children"]
            ),
            (
                &asked["request"],
                &json!("before_dispatch"),
                &json!(["planned"]),
                &json!(epic),
                &json!([])
            )
        );
        // The patrol did not wait: the reply comes when the plugin is done.
        assert!(wait_until(20, || {
            env.inbox("r/witness")
                .iter()
                .any(|m| m["type"] == "verdict")
        }));
        let second = super::patrol(&env, NOW, &["--epic", &epic]);
        assert_eq!(
            summary(&second),
            [pair("planned", &epic), pair("spawned", "r/Nux")],
            "only A is ready: B waits for it"
        );
        assert_eq!(
            second[0]["detail"],
            "planned by r/plugins/plan-oracle: two steps"
        );
        let a = format!("{epic}.1");
        assert!(
            second[1]["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("on {a} ")),
            "{second:?}"
        );
        assert_eq!(plan(&env, &epic)["verdict"]["verdict"], "planned");
        assert_eq!(plan(&env, &epic)["verdict"]["reason"], "two steps");
        // Planned once: never asked again.
        let third = super::patrol(&env, NOW, &["--epic", &epic]);
        assert!(
            summary(&third).iter().all(|(a, _)| !a.starts_with("plan")),
            "{third:?}"
        );
        assert_eq!(env.inbox("r/plugins/plan-oracle").len(), 1);
    }

    #[test]
    fn a_silent_plan_oracle_holds_dispatch_until_its_timeout_has_passed_on_a_later_patrol() {
        let env = TestEnv::new();
        let epic = epic(&env, json!({"timeouts": {"before_dispatch": "30s"}}));
        create(&env, &["A", "--parent", &epic]);
        assert_eq!(
            summary(&super::patrol(&env, NOW, &["--epic", &epic])),
            [pair("plan-asked", &epic)]
        );
        // Within the timeout: nothing, and a ready child is not dispatched.
        assert_eq!(
            super::patrol(&env, "2026-11-25T09:00:29Z", &["--epic", &epic]),
            Vec::<Value>::new()
        );
        assert!(!env.town.join("r/polecats/Nux").exists());
        let later = super::patrol(&env, "2026-11-25T09:00:30Z", &["--epic", &epic]);
        assert_eq!(
            summary(&later),
            [pair("planned", &epic), pair("spawned", "r/Nux")]
        );
        assert_eq!(
            later[0]["detail"],
            "r/plugins/plan-oracle gave no verdict within 30s; dispatching"
        );
        assert_eq!(
            plan(&env, &epic)["verdict"]["defaulted"],
            "r/plugins/plan-oracle gave no verdict within 30s"
        );
        let request = &env.inbox("r/plugins/plan-oracle")[0];
        assert_eq!(
            request["children"],
            json!([{"id": format!("{epic}.1"), "title": "A", "status": "open"}])
        );
    }

    #[test]
    fn a_junk_reply_is_no_plan_and_dispatch_goes_on() {
        let env = TestEnv::new();
        let epic = epic(&env, json!({}));
        create(&env, &["A", "--parent", &epic]);
        super::patrol(&env, NOW, &["--epic", &epic]);
        answer(
            &env,
            "r/plugins/plan-oracle",
            "r/witness",
            1,
            Some(json!({"verdict": "hold", "reason": "not yet"})),
        );
        let next = super::patrol(&env, NOW, &["--epic", &epic]);
        assert_eq!(
            summary(&next),
            [pair("planned", &epic), pair("spawned", "r/Nux")]
        );
        assert_eq!(
            next[0]["detail"],
            "msg-reply1: unreadable verdict from r/plugins/plan-oracle (\"hold\" is not one of planned); dispatching"
        );
    }

    #[test]
    fn a_plugin_that_cannot_be_mailed_does_not_stop_the_patrol_or_the_epic() {
        let env = TestEnv::new();
        let epic = epic(&env, json!({}));
        create(&env, &["A", "--parent", &epic]);
        let outside = env.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, env.town.join("r/plugins/plan-oracle/mail")).unwrap();
        let actions = super::patrol(&env, NOW, &["--epic", &epic]);
        assert_eq!(
            summary(&actions),
            [pair("error", &epic), pair("spawned", "r/Nux")]
        );
        let detail = env.normalize(actions[0]["detail"].as_str().unwrap());
        assert!(
            detail.starts_with("could not ask r/plugins/plan-oracle: ")
                && detail.contains("is a symlink to $TEST_ENV/outside, out of the town")
                && detail.ends_with("; dispatching"),
            "{detail}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(env.state("r/witness")["plans"], Value::Null);
    }

    #[test]
    fn configured_off_dispatch_does_not_wait() {
        let env = TestEnv::new();
        let epic = epic(&env, json!({"before_dispatch": false}));
        create(&env, &["A", "--parent", &epic]);
        assert_eq!(
            summary(&super::patrol(&env, NOW, &["--epic", &epic])),
            [pair("spawned", "r/Nux")]
        );
        assert!(!env.town.join("r/plugins/plan-oracle/mail").exists());
        assert_eq!(env.state("r/witness")["plans"], Value::Null);
    }
}
