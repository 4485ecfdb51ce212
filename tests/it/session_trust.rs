//! A recorded session is acted on only when it is the agent's session of this
//! town (protocol/README.md, "Sessions"): any agent can write any
//! `state.json`, so a planted `session` naming a process or a tmux server
//! outside the town must not turn `gt kill`, `gt inject`, `gt capture`,
//! `gt attach`, the Witness or the daemon onto it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::Value;

use crate::common::{TestEnv, edit_json, have_tool, patrol_at, wait_until};

/// What a test starts outside the town (a person's own processes and tmux
/// server): killed when the test ends, passed or failed.
#[derive(Default)]
struct Outside {
    children: Vec<Child>,
    /// Each tmux server's socket name and path.
    sockets: Vec<(String, PathBuf)>,
}

impl Outside {
    /// `sleep 1000` in its own process group with only `vars` (and PATH) in
    /// its environment: its pid and start time.
    fn sleeper(&mut self, vars: &[(&str, &str)]) -> (u32, u64) {
        let child = Command::new("sh")
            .args(["-c", "exec sleep 1000"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        (pid, start_of(pid))
    }

    /// Whether the `i`th sleeper still runs (it is our child: not reaped yet).
    fn runs(&mut self, i: usize) -> bool {
        self.children[i].try_wait().unwrap().is_none()
    }

    /// A tmux server of this test's own on socket `victim-<pid>-<tag>` with
    /// session `mine` running `sh`: the socket, the pane's pid and start time.
    fn tmux(&mut self, tag: &str) -> (String, u32, u64) {
        let socket = format!("victim-{}-{tag}", std::process::id());
        let out = tmux(
            &socket,
            &[
                "new-session",
                "-d",
                "-P",
                "-F",
                "#{pane_pid} #{socket_path}",
                "-s",
                "mine",
                "sh",
            ],
        );
        let (pid, path) = out.trim().split_once(' ').unwrap();
        self.sockets.push((socket.clone(), PathBuf::from(path)));
        let pid: u32 = pid.parse().unwrap();
        (socket, pid, start_of(pid))
    }

    /// The path of the `i`th tmux server's socket.
    fn socket_path(&self, i: usize) -> &Path {
        &self.sockets[i].1
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed check may have left a typing lock beside the socket.
        for (name, _) in &self.sockets {
            crate::common::kill_tmux_server(name);
        }
    }
}

/// `tmux -L <socket> <args>`, required to succeed: its stdout.
fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "tmux {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Where gt would lock typing into session `mine` of the server at `socket`.
fn typing_lock(socket: &Path) -> PathBuf {
    PathBuf::from(format!("{}.mine.typing.lock", socket.display()))
}

/// Field 22 of /proc/<pid>/stat: what a session id records as `<start>`.
fn start_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(19).unwrap().parse().unwrap()
}

/// A town with polecat r/Nux (and nothing recorded yet).
fn town_with_nux() -> TestEnv {
    let env = TestEnv::new();
    env.add_rig("r");
    env.ok("gt", &["polecat", "add", "r", "Nux"]);
    env
}

/// Why a process outside the town is not r/Nux's session.
const NO_TOWN: &str = "its process has no GT_TOWN=$TEST_ENV/town";

/// A town with polecat r/Nux, and a process outside it: its session id.
fn nux_and_a_process_outside() -> (Outside, TestEnv, String) {
    let mut outside = Outside::default();
    let (pid, start) = outside.sleeper(&[]);
    (outside, town_with_nux(), format!("proc:{pid}:{start}"))
}

/// Record r/Nux `working` in session `id`, as any agent can.
fn record(env: &TestEnv, id: &str) {
    env.edit_state("r/polecats/Nux", |s| {
        s["status"] = "working".into();
        s["session"] = id.into();
    });
}

/// Make the Witness count r/Nux stuck after a second of silence.
fn stuck_after_a_second(env: &TestEnv) {
    edit_json(&env.town.join("r/config.json"), |c| {
        c["stuck_after"] = "1s".into()
    });
}

/// `gt spawn` of polecat `name` on `issue`, its agent only sleeping.
fn spawn(env: &TestEnv, issue: &str, name: &str) -> std::process::Output {
    env.run(
        "gt",
        &[
            "spawn",
            "--issue",
            issue,
            "--name",
            name,
            "--agent",
            "exec sleep 1000",
            "--json",
        ],
    )
}

/// Session `id` recorded for r/Nux in `env`, which gt must hold not to be
/// r/Nux's because `why`.
struct Planted<'a> {
    env: &'a TestEnv,
    id: String,
    why: String,
}

impl<'a> Planted<'a> {
    /// Record `id` for r/Nux ([`record`]).
    fn record(env: &'a TestEnv, id: String, why: impl Into<String>) -> Planted<'a> {
        record(env, &id);
        Planted {
            env,
            id,
            why: why.into(),
        }
    }

    /// Why it is not r/Nux's, as gt words it (the temp dir as `$TEST_ENV`).
    fn foreign(&self) -> String {
        format!(
            "session {} recorded in $TEST_ENV/town/r/polecats/Nux/state.json is not r/Nux's ({})",
            self.id, self.why
        )
    }

    /// The refusal to act on it: what was `not_done`.
    fn refusal(&self, not_done: &str) -> String {
        format!("r/Nux: {}; {not_done}", self.foreign())
    }

    /// `gt <args>` refuses it: exit 2, the refusal the whole of stderr.
    fn refused_by(&self, args: &[&str], not_done: &str) {
        let (code, err) = self.env.fails("gt", args);
        assert_eq!(
            (code, self.env.normalize(&err)),
            (2, format!("gt: {}\n", self.refusal(not_done))),
            "gt {args:?}"
        );
    }

    /// A patrol an hour on, with r/Nux stuck after a second: it reports the
    /// session as an error and does nothing else (no nudge mailed).
    fn patrol_reports_it(&self) {
        let actions: Vec<_> = patrol_at(self.env, "2026-11-25T10:00:00Z")
            .into_iter()
            .map(|(a, s, d)| (a, s, self.env.normalize(&d)))
            .collect();
        assert_eq!(
            actions,
            vec![(
                "error".to_string(),
                "r/Nux".to_string(),
                self.refusal("left alone")
            )]
        );
        assert!(
            self.env
                .inbox("r/polecats/Nux")
                .iter()
                .all(|m| m["type"] != "nudge"),
            "the Witness nudged a session that is not r/Nux's"
        );
    }
}

#[test]
fn gt_kill_clears_a_record_naming_a_process_outside_the_town_and_signals_nothing() {
    let (mut outside, env, id) = nux_and_a_process_outside();
    let planted = Planted::record(&env, id, NO_TOWN);
    planted.refused_by(&["kill", "r/Nux"], "not stopped");
    assert!(outside.runs(0), "gt kill signalled the outside process");
    // The record is gone; the worker is left working for its Witness.
    let s = env.state("r/polecats/Nux");
    assert_eq!(
        (s["status"].as_str(), s.get("session")),
        (Some("working"), None)
    );
    assert_eq!(env.ok("gt", &["kill", "r/Nux"]), "r/Nux was not running\n");
    assert!(outside.runs(0));
}

#[test]
fn a_process_of_this_town_with_another_agents_address_is_not_this_agents() {
    let mut outside = Outside::default();
    let env = town_with_nux();
    let town = env.town.canonicalize().unwrap().display().to_string();
    let (pid, start) = outside.sleeper(&[("GT_TOWN", &town), ("GT_ADDRESS", "r/witness")]);
    let planted = Planted::record(
        &env,
        format!("proc:{pid}:{start}"),
        "its process has no GT_ADDRESS=r/Nux",
    );
    planted.refused_by(&["kill", "r/Nux"], "not stopped");
    assert!(outside.runs(0));

    // gt status: not alive (dead, as it is working), the row saying why.
    record(&env, &planted.id);
    let status: Value = serde_json::from_str(&env.ok("gt", &["status", "--json"])).unwrap();
    let nux = crate::status::agent(&status, "r/Nux");
    assert_eq!(
        (
            nux["status"].as_str(),
            nux["session_alive"].as_bool(),
            nux["error"].as_str().map(|e| env.normalize(e))
        ),
        (Some("dead"), Some(false), Some(planted.foreign()))
    );
    let out = env.run("gt", &["status"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text.lines().find(|l| l.starts_with("r/Nux ")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("dead"), "{text}");
    assert_eq!(
        env.normalize(&String::from_utf8(out.stderr).unwrap()),
        format!("gt: {}\n", planted.foreign())
    );

    // The Witness, however stuck it looks, and the daemon leave it alone.
    stuck_after_a_second(&env);
    planted.patrol_reports_it();
    let tick: Value = serde_json::from_str(&env.ok("gt", &["daemon", "tick", "--json"])).unwrap();
    let nux_actions: Vec<(String, String)> = tick
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["subject"] == "r/Nux")
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                env.normalize(a["detail"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        nux_actions,
        vec![("error".to_string(), planted.refusal("left alone"))]
    );
    assert!(outside.runs(0), "the Witness or the daemon signalled it");
    assert_eq!(
        env.session("r/polecats/Nux"),
        planted.id,
        "the record is left as it was"
    );
}

#[test]
fn a_tmux_session_on_another_server_is_never_typed_into_captured_or_stopped() {
    if !have_tool("tmux") {
        return;
    }
    let mut outside = Outside::default();
    let (socket, pid, start) = outside.tmux("inject");
    // Its shell's prompt first: pane output has no event to wait on.
    let screen = || tmux(&socket, &["capture-pane", "-p", "-t", "=mine:"]);
    assert!(wait_until(10, || !screen().trim().is_empty()), "no prompt");
    let before = screen();
    let env = town_with_nux();
    let ours = gastown::session::tmux_socket(&env.town.canonicalize().unwrap());
    let why = format!("its tmux socket {socket} is not the town's, {ours}");
    let planted = Planted::record(
        &env,
        format!("tmux:{socket}:mine:{pid}:{start}"),
        why.clone(),
    );
    stuck_after_a_second(&env);
    let touched = env.path().join("touched");
    let touch = format!("touch {}", touched.display());
    planted.refused_by(&["inject", "r/Nux", &touch], "nothing typed");
    planted.refused_by(&["capture", "r/Nux"], "not captured");
    planted.refused_by(&["capture", "r/Nux", &touch], "nothing typed");
    planted.refused_by(&["attach", "r/Nux"], "not attached");
    planted.patrol_reports_it();
    planted.refused_by(&["kill", "r/Nux"], "not stopped");

    // A dead leader reaches nothing, but a start would remove the session
    // the old record names: refused before anything is started.
    let dead = Planted::record(&env, format!("tmux:{socket}:mine:{}:1", u32::MAX / 2), why);
    let issue = env.issue("r", "work");
    let out = spawn(&env, &issue, "Nux");
    assert_eq!(
        (
            out.status.code(),
            env.normalize(&String::from_utf8(out.stderr).unwrap())
        ),
        (Some(2), format!("gt: {}\n", dead.refusal("not started")))
    );

    // The pane received nothing, its session and process are still there,
    // and no typing lock was made beside the other server's socket.
    assert_eq!(screen(), before);
    assert!(!touched.exists());
    tmux(&socket, &["has-session", "-t", "=mine"]);
    assert_eq!(start_of(pid), start);
    let lock = typing_lock(outside.socket_path(0));
    assert!(!lock.exists(), "{} was made", lock.display());
}

#[test]
fn a_session_on_the_towns_socket_under_another_agents_name_is_not_this_agents() {
    if !have_tool("tmux") {
        return;
    }
    let env = town_with_nux();
    let issue = env.issue("r", "work");
    let out = spawn(&env, &issue, "Toast");
    assert!(out.status.success(), "{out:?}");
    let toast: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = toast["session"].as_str().unwrap().to_string();
    assert!(id.starts_with("tmux:"), "{id}");
    let name = id.split(':').nth(2).unwrap();
    let planted = Planted::record(
        &env,
        id.clone(),
        format!("its tmux session {name} is not the agent's, gt-r-Nux"),
    );
    planted.refused_by(&["kill", "r/Nux"], "not stopped");
    assert!(
        gastown::session::is_alive(&id),
        "r/Toast's session was stopped"
    );
    // Its own agent's is stopped as ever.
    gt_kill_stops(&env, "Toast", &issue, &id);
}

#[test]
fn a_process_session_the_town_started_is_still_stopped_by_gt_kill() {
    let env = TestEnv::new();
    env.add_rig("r");
    let pid = env.spawn_process("r", "Nux");
    let id = env.session("r/polecats/Nux");
    let issue = env.state("r/polecats/Nux")["issue"]
        .as_str()
        .unwrap()
        .to_string();
    gt_kill_stops(&env, "Nux", &issue, &id);
    assert!(crate::common::process_gone(pid));
}

/// `gt kill r/<name>` stops its session `id` and releases its `issue`.
fn gt_kill_stops(env: &TestEnv, name: &str, issue: &str, id: &str) {
    assert_eq!(
        env.ok("gt", &["kill", &format!("r/{name}")]),
        format!("r/{name} stopped\n  released {issue} (open again)\n")
    );
    assert!(gastown::session::wait(
        id,
        std::time::Duration::from_secs(10)
    ));
}

/// The emergency halt goes on past a record it must not act on: the other
/// agents' sessions are stopped, the refusal is reported, and the exit is 2.
#[test]
fn gt_stop_all_stops_the_rest_past_a_session_not_the_agents() {
    let (mut outside, env, id) = nux_and_a_process_outside();
    let toast = env.spawn_process("r", "Toast");
    let planted = Planted::record(&env, id, NO_TOWN);
    let out = env.run("gt", &["stop", "--all"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        env.normalize(&String::from_utf8_lossy(&out.stderr)),
        format!("gt: {}\n", planted.refusal("not stopped"))
    );
    assert!(
        crate::common::process_gone(toast),
        "r/Toast was not stopped"
    );
    assert!(outside.runs(0), "the outside process was signalled");
}

/// `gt doctor` names a record of a live session that is not the agent's;
/// `--fix` drops the record and signals nothing.
#[test]
fn doctor_reports_a_session_not_the_agents_and_fix_drops_the_record() {
    let (mut outside, env, id) = nux_and_a_process_outside();
    let planted = Planted::record(&env, id, NO_TOWN);
    let line = format!(
        "error: $TEST_ENV/town/r/polecats/Nux/state.json: {}",
        planted.foreign()
    );
    let out = env.run("gt", &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = env.normalize(&String::from_utf8_lossy(&out.stdout));
    assert!(
        stdout.contains(&format!("{line} (--fix repairs this)\n")),
        "{stdout}"
    );
    // Nobody's session: no heartbeat is asked of it, no loop is needed for it.
    let findings: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("check "))
        .collect();
    assert_eq!(findings.len(), 2, "{stdout}");
    let out = env.run("gt", &["doctor", "--fix"]);
    let stdout = env.normalize(&String::from_utf8_lossy(&out.stdout));
    assert!(stdout.contains(&format!("{line} (fixed)\n")), "{stdout}");
    assert_eq!(env.state("r/polecats/Nux").get("session"), None);
    assert!(outside.runs(0), "the doctor signalled the outside process");
}
