//! Polecats: creation, spawn with a stand-in agent (a shell script standing in
//! for the AI agent), capacity, kill of the whole process group, wake/sleep.

use std::path::Path;
use std::process::Command;

use crate::common::{TestEnv, edit_json, fifo, git, read_fifo, wait_until};

#[test]
fn polecat_add_makes_home_and_clone_on_its_branch() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    assert_eq!(
        env.ok("gt", &["polecat", "add", "r"]),
        format!(
            "added polecat r/Nux at {}\n",
            rig.join("polecats/Nux").display()
        )
    );
    let clone = rig.join("polecats/Nux/rig");
    assert_eq!(git(&clone, &["branch", "--show-current"]), "polecat/Nux\n");
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "r-origin\n"
    );
    assert_eq!(env.state(rig.join("polecats/Nux"))["role"], "polecat");
    env.ok("gt", &["polecat", "add", "r"]);
    assert!(
        rig.join("polecats/Toast/rig/.git").is_dir(),
        "second polecat gets the next name"
    );

    let (code, err) = env.fails("gt", &["polecat", "add", "r", "Nux"]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            format!(
                "gt: polecat r/Nux already exists at {}\n",
                rig.join("polecats/Nux").display()
            )
            .as_str()
        )
    );
    let (code, err) = env.fails("gt", &["polecat", "add", "r", "witness"]);
    assert_eq!(
        (code, err.as_str()),
        (2, "gt: invalid polecat name \"witness\": it is reserved\n")
    );
    assert!(!env.town.join(".staging").exists());
}

/// Spawn a stand-in agent on `backend` and check what it sees.
fn spawn_and_check_environment(backend: &str) {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Say hello");
    let out = env.path().join("out.fifo");
    fifo(&out);
    let agent = format!(
        "echo \"$GT_ADDRESS $GT_ROLE $GT_RIG $GT_ISSUE $GT_GENERATION $BEADS_DIR $(git branch --show-current) $(basename $(dirname $PWD)) $(gt whoami)\" > {}; echo logged",
        out.display()
    );
    let spawned = env
        .cmd("gt")
        .args(["spawn", "--issue", &id, "--agent", &agent, "--json"])
        .env("GT_SESSION_BACKEND", backend)
        .output()
        .unwrap();
    assert!(
        spawned.status.success(),
        "{}",
        String::from_utf8_lossy(&spawned.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&spawned.stdout).unwrap();
    assert_eq!(json["address"], "r/Nux");
    assert_eq!(json["generation"], 1);
    let session = json["session"].as_str().unwrap();
    assert!(
        session.starts_with(&format!(
            "{}:",
            if backend == "tmux" { "tmux" } else { "proc" }
        )),
        "{session}"
    );
    assert_eq!(
        read_fifo(&out),
        format!(
            "r/Nux polecat r {id} 1 {} polecat/Nux Nux polecat r/Nux\n",
            rig.join(".beads").display()
        )
    );
    let state = env.state(rig.join("polecats/Nux"));
    assert_eq!(state["status"], "working");
    assert_eq!(state["issue"], id.as_str());
    let issue: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["issue", "show", &id, "--json"])).unwrap();
    assert_eq!(
        (issue["status"].as_str(), issue["assignee"].as_str()),
        (Some("in_progress"), Some("r/Nux"))
    );
    assert_eq!(state["branch"], "polecat/Nux");
    assert_eq!(state["session"], json["session"]);
    assert!(gastown::session::wait(
        session,
        std::time::Duration::from_secs(10)
    ));
    assert!(!gastown::session::is_alive(session));
    let log = rig.join("polecats/Nux/session.log");
    let logged = wait_until(10, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("logged"))
    });
    assert!(logged, "session.log: {:?}", std::fs::read_to_string(&log));
}

#[test]
fn spawn_in_tmux_runs_the_agent_in_its_clone_with_the_town_environment() {
    spawn_and_check_environment("tmux");
}

#[test]
fn spawn_as_plain_process_runs_the_agent_the_same_way() {
    spawn_and_check_environment("process");
}

#[test]
fn spawn_respects_max_workers_and_kill_stops_the_process_group() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["max_workers"] = 1.into());

    let pids = env.path().join("pids.fifo");
    fifo(&pids);
    // The agent starts a grandchild that ignores SIGTERM and reports both
    // pids, then waits.
    let agent = format!(
        "(trap '' TERM; exec sleep 1000) & echo \"$$ $!\" > {}; wait",
        pids.display()
    );
    let (one, two) = (env.issue("r", "one"), env.issue("r", "two"));
    env.ok("gt", &["spawn", "--issue", &one, "--agent", &agent]);
    let reported = read_fifo(&pids);
    let ids: Vec<i32> = reported
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();

    let out = env.run("gt", &["spawn", "--issue", &two, "--agent", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        env.normalize(&String::from_utf8_lossy(&out.stderr)),
        "gt: rig r is at capacity: 1 polecat(s) running, max_workers is 1 ($TEST_ENV/town/r/config.json)\n"
    );
    assert!(
        !rig.join("polecats/Toast").exists(),
        "nothing made for a refused spawn"
    );

    // The claim follows the worker: nothing was committed, so it is released.
    assert_eq!(
        env.ok("gt", &["kill", "r/Nux"]),
        format!("r/Nux stopped\n  released {one} (open again)\n")
    );
    // gt kill returned once the whole group had exited (the grandchild
    // only at SIGKILL).
    for pid in ids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "process {pid} survived kill: {stat}"
        );
    }
    let state = env.state(rig.join("polecats/Nux"));
    assert_eq!(state["status"], "idle");
    assert!(state.get("session").is_none());
    assert_eq!(env.ok("gt", &["kill", "Nux"]), "r/Nux was not running\n");
    assert_eq!(env.ok("gt", &["sleep", "Nux"]), "r/Nux is asleep\n");
    assert_eq!(env.ok("gt", &["wake", "r/Nux"]), "r/Nux is idle\n");
}

#[test]
fn stop_halts_every_session_of_a_rig() {
    let env = TestEnv::new();
    env.add_rig("r");
    let (code, err) = env.fails("gt", &["stop"]);
    assert_eq!(code, 2);
    assert!(err.contains("--all"), "{err}");
    let mut ids = Vec::new();
    for name in ["Nux", "Toast"] {
        let id = env.issue("r", name);
        ids.push(id.clone());
        env.ok(
            "gt",
            &[
                "spawn",
                "--issue",
                &id,
                "--name",
                name,
                "--agent",
                "exec sleep 1000",
            ],
        );
    }
    assert_eq!(
        env.ok("gt", &["stop", "--rig", "r"]),
        format!(
            "stopped r/Nux\n  released {} (open again)\nstopped r/Toast\n  released {} (open again)\n2 session(s) stopped\n",
            ids[0], ids[1]
        )
    );
    assert_eq!(
        env.ok("gt", &["stop", "--all", "--json"]),
        "{\n  \"loops\": [],\n  \"agents\": [],\n  \"zombies\": []\n}\n",
        "a second stop finds nothing"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["polecats", "r", "--json"])).unwrap();
    assert_eq!(
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["idle", "idle"]
    );
}

#[test]
fn plugins_are_directories() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    assert_eq!(
        env.ok("gt", &["plugins", "r"]),
        "no plugins in rig r (a plugin is a directory: r/plugins/<name>/)\n"
    );
    env.ok("gt", &["plugin", "add", "r", "merge-oracle"]);
    assert!(rig.join("plugins/merge-oracle/mail/inbox.jsonl").is_file());
    // Made by hand, a plugin exists too.
    std::fs::create_dir_all(rig.join("plugins/plan-oracle/mail")).unwrap();
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["plugins", "r", "--json"])).unwrap();
    let addrs: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["r/plugins/merge-oracle", "r/plugins/plan-oracle"]);
    let row: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["plugin", "status", "merge-oracle", "--json"]))
            .unwrap();
    assert_eq!(
        (row["role"].as_str(), row["status"].as_str()),
        (Some("plugin"), Some("idle"))
    );
    let (_, err) = env.fails("gt", &["plugin", "status", "r/witness"]);
    assert_eq!(err, "gt: r/witness is not a plugin\n");
}

#[test]
fn spawn_on_an_issue_someone_else_holds_starts_nothing() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "contested");
    env.ok("gt", &["issue", "claim", &id, "--assignee", "r/crew/dave"]);
    let out = env.run(
        "gt",
        &[
            "spawn",
            "--issue",
            &id,
            "--name",
            "Nux",
            "--agent",
            "touch started",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("gt: {id} is held by r/crew/dave (status in_progress); not claimed\n")
    );
    // The claim comes first: nothing is made for an issue that is taken.
    assert!(!rig.join("polecats/Nux").exists());
    let (code, err) = env.fails("gt", &["spawn", "--issue", "r-nope", "--agent", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("r-nope"), "{err}");
}

#[test]
fn a_polecat_takes_new_work_only_when_nothing_would_be_lost() {
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let (one, two) = (env.issue("r", "one"), env.issue("r", "two"));
    env.ok(
        "gt",
        &["spawn", "--issue", &one, "--agent", "echo x > scratch.txt"],
    );
    let nux = rig.join("polecats/Nux");
    let id = env.session(&nux);
    assert!(gastown::session::wait(
        &id,
        std::time::Duration::from_secs(10)
    ));
    let (code, err) = env.fails(
        "gt",
        &["spawn", "--issue", &two, "--name", "Nux", "--agent", "true"],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "gt: polecat r/Nux has uncommitted changes in {} (scratch.txt); clean them or pick another polecat\n",
            nux.join("rig").display()
        )
    );
    std::fs::remove_file(nux.join("rig/scratch.txt")).unwrap();
    env.edit_state(&nux, |s| s["status"] = "done".into());
    let (_, err) = env.fails(
        "gt",
        &["spawn", "--issue", &two, "--name", "Nux", "--agent", "true"],
    );
    assert_eq!(
        err,
        format!("gt: polecat r/Nux has work waiting to land ({one}); pick another polecat\n")
    );
    // Nothing was claimed for the refused spawns.
    let issue: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["issue", "show", &two, "--json"])).unwrap();
    assert_eq!(issue["status"], "open");
}

#[test]
fn an_agent_that_exits_at_once_still_gets_a_session_record() {
    // Its process may already be a zombie when gt reads its start time.
    let env = TestEnv::new();
    env.add_rig("r");
    for name in ["Nux", "Toast", "Capable"] {
        let id = env.issue("r", name);
        let out = env
            .cmd("gt")
            .args(["spawn", "--issue", &id, "--name", name, "--agent", "true"])
            .env("GT_SESSION_BACKEND", "process")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// protocol/README.md shows how a shell participant starts an agent itself and
/// records a `proc:` session id. That block, run as written (with `sleep` as
/// the agent): gt sees the session alive and `gt kill` stops it.
#[test]
fn a_session_started_by_the_readme_shell_recipe_is_seen_and_stopped_by_gt() {
    let env = TestEnv::new();
    env.add_rig("wyvern");
    env.ok("gt", &["polecat", "add", "wyvern", "Nux"]);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/README.md"))
            .unwrap();
    let recipe = readme
        .split("```sh\n")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("setsid sh -c 'exec my-agent'"))
        .expect("the recipe in protocol/README.md, Sessions");
    let out = Command::new("sh")
        .args(["-c", &recipe.replace("my-agent", "sleep 600")])
        .current_dir(&env.town)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = env.session("wyvern/polecats/Nux");
    assert!(id.starts_with("proc:"), "{id}");
    assert!(gastown::session::is_alive(&id), "{id} not alive");
    assert_eq!(env.state("wyvern/polecats/Nux")["status"], "working");
    assert_eq!(
        env.ok("gt", &["kill", "wyvern/Nux"]),
        "wyvern/Nux stopped\n"
    );
    assert!(gastown::session::wait(
        &id,
        std::time::Duration::from_secs(10)
    ));
}

/// A stand-in for Claude Code (the agent's test double in the fast tier): a
/// shell script named `claude` in `<tmp>/standin`, which the `claude` preset
/// runs. It draws the screen named by `STANDIN_SCREEN` (`ready`: the first
/// prompt above an empty input box; `dialog`: a dialog no preset answers;
/// `blank`: nothing; `die`: a line of output, then exit 3), then appends each
/// line typed into it to `<tmp>/typed`. Returns the PATH that finds it.
pub fn claude_standin(env: &TestEnv, rig: &Path, screen: &str) -> String {
    let dir = env.path().join("standin");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("claude");
    let rule = "─".repeat(40);
    crate::common::write_executable(
        &script,
        format!(
            "#!/bin/sh\n\
             for a; do prompt=$a; done\n\
             case \"$STANDIN_SCREEN\" in\n\
             ready) printf '❯ %s\\n{rule}\\n❯ \\n{rule}\\n  ⏵⏵ bypass permissions on\\n' \"$prompt\" ;;\n\
             dialog) printf '{rule}\\n Detected a custom API key in your environment\\n ❯ 1. No\\n   2. Yes\\n\\n Enter to confirm · Esc to cancel\\n' ;;\n\
             die) echo 'stand-in: cannot reach the model'; exit 3 ;;\n\
             esac\n\
             while IFS= read -r line; do printf '%s\\n' \"$line\" >> {typed}; done\n",
            typed = env.path().join("typed").display()
        ),
    );
    edit_json(&rig.join("config.json"), |c| {
        c["agent"] = "claude".into();
        c["agent_env"] = serde_json::json!({"STANDIN_SCREEN": screen});
    });
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `gt spawn --json` with `path`: (exit code, the JSON report).
fn spawn_json(env: &TestEnv, path: &str, id: &str, wait: &str) -> (i32, serde_json::Value) {
    let out = env
        .cmd("gt")
        .env("PATH", path)
        .args(["spawn", "--issue", id, "--wait", wait, "--json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

#[test]
fn spawn_waits_for_the_runtime_and_says_ready() {
    if !crate::common::have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let path = claude_standin(&env, &rig, "ready");
    let id = env.issue("r", "ready");
    let out = env
        .cmd("gt")
        .env("PATH", &path)
        .args(["spawn", "--issue", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.ends_with("\nr/Nux is ready\n"), "{stdout}");
    assert!(
        stdout.starts_with("spawned r/Nux (generation 1) on "),
        "{stdout}"
    );
}

#[test]
fn spawn_reports_a_dialog_a_timeout_and_a_session_that_ended() {
    if !crate::common::have_tool("tmux") {
        return;
    }
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["max_workers"] = 8.into());

    // Blocked: exit 1, the dialog named, recorded, the Witness told once.
    let path = claude_standin(&env, &rig, "dialog");
    let id = env.issue("r", "blocked");
    let (code, v) = spawn_json(&env, &path, &id, "60s");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["ready"], "blocked");
    let hint = "answer it in its terminal (gt attach r/Nux), or stop it (gt kill r/Nux); a preset that should have skipped it is missing a fact (protocol/agents.md)";
    assert_eq!(
        v["reason"],
        format!(
            "waits at a dialog: Detected a custom API key in your environment / ❯ 1. No / 2. Yes; {hint}"
        )
    );
    let home = rig.join("polecats/Nux");
    assert_eq!(
        env.state(&home)["blocked"],
        "Detected a custom API key in your environment / ❯ 1. No / 2. Yes"
    );
    let mail = env.inbox("r/witness");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["subject"], "blocked: r/Nux");
    assert_eq!(
        (mail[0]["from"].as_str(), mail[0]["by"].as_str()),
        (Some("r/Nux"), Some("gt spawn"))
    );
    assert_eq!(mail[0]["type"], "escalation");

    // Not ready in time: exit 1, and it says how long it waited.
    edit_json(&rig.join("config.json"), |c| {
        c["agent_env"]["STANDIN_SCREEN"] = "blank".into()
    });
    let id = env.issue("r", "slow");
    let (code, v) = spawn_json(&env, &path, &id, "300ms");
    assert_eq!((code, v["ready"].as_str()), (1, Some("timeout")), "{v}");
    assert_eq!(
        v["reason"],
        "not ready for input within 300ms; see it with: gt capture r/Toast"
    );

    // Ended during the wait.
    edit_json(&rig.join("config.json"), |c| {
        c["agent_env"]["STANDIN_SCREEN"] = "die".into()
    });
    let id = env.issue("r", "dies");
    let (code, v) = spawn_json(&env, &path, &id, "60s");
    assert_eq!((code, v["ready"].as_str()), (1, Some("ended")), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("its session ended"),
        "{v}"
    );

    // gt status shows the blocked one with its dialog and what to do.
    let status: serde_json::Value =
        serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap();
    let nux = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "r/Nux")
        .unwrap()
        .clone();
    assert_eq!(nux["status"], "blocked");
    assert_eq!(
        nux["blocked"],
        serde_json::json!({"dialog": "Detected a custom API key in your environment / ❯ 1. No / 2. Yes", "to_do": hint})
    );
    let text = env.ok("gt", &["status"]);
    assert!(
        text.contains(&format!("r/Nux is blocked at a dialog: Detected a custom API key in your environment / ❯ 1. No / 2. Yes; {hint}\n")),
        "{text}"
    );
    // A patrol sees the same dialog: no second mail, nothing typed into it.
    let patrol = env.ok("gt", &["witness", "patrol", "r", "--json"]);
    assert!(!patrol.contains("\"nudged\""), "{patrol}");
    let blocked: Vec<serde_json::Value> = env
        .inbox("r/witness")
        .into_iter()
        .filter(|m| m["subject"] == "blocked: r/Nux")
        .collect();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert!(!env.path().join("typed").exists());
}
