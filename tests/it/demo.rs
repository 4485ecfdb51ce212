//! `gt demo` end to end: the README's main job must work as written, and each
//! flow it shows is checked here from the files it leaves.

use serde_json::Value;

use crate::common::{TestEnv, git, jsonl, mail, read_json};

#[test]
fn demo_works_an_epic_and_each_other_flow_and_leaves_the_files_to_show_it() {
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
        "$ gt daemon tick\n    cycled demo/",
        "$ gt land --direct demo/",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    // A greeting per child issue of the epic, one held by the merge-oracle and
    // one over a handoff are on origin's main.
    let origin = dir.join("origin.git");
    let files = git(&origin, &["ls-tree", "--name-only", "main", "greetings/"]);
    assert_eq!(files.lines().count(), 5, "{files}");
    let town = dir.join("town");
    let issues: Value = serde_json::from_str(
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
    let issues = issues.as_array().unwrap();
    let statuses: Vec<&str> = issues
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["closed"; 8]);
    let by_title = |title: &str| {
        issues
            .iter()
            .find(|i| i["title"] == title)
            .unwrap_or_else(|| panic!("no issue {title:?}"))
    };

    // The handoff: the first session mailed itself a note and asked for a
    // cycle; the daemon started the next, which read it and finished.
    let french = by_title("Greet in French");
    let (issue, worker) = (
        french["id"].as_str().unwrap(),
        french["assignee"].as_str().unwrap(),
    );
    let home = town
        .join("demo/polecats")
        .join(worker.strip_prefix("demo/").unwrap());
    let notes = mail(&home.join("mail/inbox.jsonl"), "handoff");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    let state = read_json(&home.join("state.json"));
    let first = state["generation"].as_u64().unwrap() - 1;
    assert_eq!(
        (
            &note["from"],
            &note["to"],
            &note["subject"],
            &note["body"],
            &note["generation"],
            &note["handoff"]["issue"],
        ),
        (
            &Value::from(worker),
            &Value::from(worker),
            &Value::from("HANDOFF: greeting half written"),
            &Value::from(format!(
                "greetings/{issue}.txt has its first line; add the second, commit, report done"
            )),
            &Value::from(first),
            &Value::from(issue),
        )
    );
    let marks = jsonl(&home.join("mail/read.jsonl"));
    assert!(
        marks
            .iter()
            .any(|m| m["id"] == note["id"] && m["state"] == "read"),
        "{marks:?}"
    );
    assert_eq!(state["requesting_cycle"], false);
    assert_eq!(
        state["command"],
        format!("sh {}", dir.join("stand-in-handoff-agent.sh").display())
    );
    // ... and `gt land --direct` put its work on main, both sessions' lines.
    assert_eq!(
        git(&origin, &["show", &format!("main:greetings/{issue}.txt")]),
        format!("Bonjour from {worker},\nwho did {issue} in two sessions\n")
    );
    let log = git(&origin, &["log", "--format=%s", "main"]);
    assert!(
        log.contains(&format!("{issue}: add a greeting, over a handoff\n")),
        "{log}"
    );
    let landed = mail(&town.join("demo/witness/mail/inbox.jsonl"), "landed");
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert_eq!(
        (&landed[0]["polecat"], &landed[0]["issue"]),
        (&Value::from(worker), &Value::from(issue))
    );
    assert_eq!(state["status"], "idle");

    // The conflict: two polecats wrote MOTTO's one line; the second's merge
    // failed, the Witness sent it back, and its next generation rebased and
    // landed, keeping both lines.
    let queue = town.join("demo/refinery/queue");
    let entries = |state: &str| -> Vec<Value> {
        let mut paths: Vec<_> = std::fs::read_dir(queue.join(state))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths.iter().map(|p| read_json(p)).collect()
    };
    let failed = entries("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (back, generation) = (&failed[0]["polecat"], &failed[0]["generation"]);
    let first = by_title("Write the motto")["id"].as_str().unwrap();
    let second = by_title("Write the motto, too")["id"].as_str().unwrap();
    assert_eq!(failed[0]["conflicts"], serde_json::json!(["MOTTO"]));
    let merged = entries("merged");
    let reworked = merged
        .iter()
        .find(|m| m["polecat"] == *back && m["issue"] == failed[0]["issue"])
        .expect("the reworked entry in merged/");
    assert_eq!(reworked["generation"], generation.as_u64().unwrap() + 1);
    let other = if failed[0]["issue"] == first {
        second
    } else {
        first
    };
    let landed_first = merged.iter().find(|m| m["issue"] == other).unwrap();
    assert_ne!(landed_first["polecat"], *back);
    let line = |m: &Value| {
        format!(
            "Many hands, one main (the motto as {} wrote it for {})\n",
            m["polecat"].as_str().unwrap(),
            m["issue"].as_str().unwrap()
        )
    };
    assert_eq!(
        git(&origin, &["show", "main:MOTTO"]),
        format!("{}{}", line(landed_first), line(reworked))
    );
    let back_home = town
        .join("demo/polecats")
        .join(back.as_str().unwrap().strip_prefix("demo/").unwrap());
    let told = mail(&back_home.join("mail/inbox.jsonl"), "merge_failed");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["entry"], failed[0]["id"]);

    // The plugin verdict: the merge-oracle held "Greet in German" once (the
    // hold shown while pending), then let it through.
    let german = by_title("Greet in German")["id"].as_str().unwrap();
    // Its stand-in has exited, and the town is left with the hook off.
    assert_eq!(
        read_json(&town.join("demo/config.json"))["plugins"],
        serde_json::json!({"timeout": "20s", "before_merge": false})
    );
    let entry = merged.iter().find(|m| m["issue"] == german).unwrap();
    assert_eq!(entry["hold"], Value::Null);
    assert!(
        stdout.contains("hold by demo/plugins/merge-oracle: the overseer wants a look first"),
        "{stdout}"
    );
    let asked = mail(
        &town.join("demo/plugins/merge-oracle/mail/inbox.jsonl"),
        "consult",
    );
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|m| m["entry"] == entry["id"] && m["hook"] == "before_merge")
    );
    let replies: Vec<(Value, Value, Value)> =
        mail(&town.join("demo/refinery/mail/inbox.jsonl"), "verdict")
            .into_iter()
            .map(|m| {
                (
                    m["reply_to"].clone(),
                    m["verdict"].clone(),
                    m["reason"].clone(),
                )
            })
            .collect();
    assert_eq!(
        replies,
        [
            (
                asked[0]["id"].clone(),
                "hold".into(),
                "the overseer wants a look first".into()
            ),
            (
                asked[1]["id"].clone(),
                "proceed".into(),
                "looked at; go ahead".into()
            ),
        ]
    );

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
