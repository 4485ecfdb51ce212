//! Names across rigs: a bare polecat name resolves in the caller's rig, else in
//! the one rig that has it; ambiguity and typos are one-line refusals.

use serde_json::Value;

use crate::common::TestEnv;

/// Rigs `alpha` and `bravo`, both with a polecat Nux, and Toast in bravo only.
fn two_rigs() -> TestEnv {
    let env = TestEnv::new();
    for rig in ["alpha", "bravo"] {
        let _ = env.add_rig(rig);
        env.ok("gt", &["polecat", "add", rig, "Nux"]);
    }
    env.ok("gt", &["polecat", "add", "bravo", "Toast"]);
    env
}

/// `gt spawn --issue <issue> --name <name> --agent <agent> --json` with one
/// extra environment variable; returns its JSON answer.
fn spawn(env: &TestEnv, issue: &str, name: &str, agent: &str, var: (&str, &str)) -> Value {
    let out = env
        .cmd("gt")
        .args([
            "spawn", "--issue", issue, "--name", name, "--agent", agent, "--json",
        ])
        .env(var.0, var.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_bare_name_resolves_in_the_callers_rig_or_the_one_rig_that_has_it() {
    let env = two_rigs();
    assert_eq!(env.ok("gt", &["sleep", "Toast"]), "bravo/Toast is asleep\n");
    assert_eq!(env.state("bravo/polecats/Toast")["status"], "asleep");
    let out = env
        .cmd("gt")
        .args(["sleep", "Nux"])
        .env("GT_RIG", "alpha")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alpha/Nux is asleep\n"
    );
    let out = env
        .cmd("gt")
        .args(["sleep", "Nux"])
        .current_dir(env.town.join("bravo/refinery/rig"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bravo/Nux is asleep\n"
    );
}

#[test]
fn ambiguous_missing_and_malformed_bare_names_are_refused() {
    let env = two_rigs();
    for (args, want) in [
        (
            &["sleep", "Nux"][..],
            "gt: Nux is ambiguous: alpha/Nux, bravo/Nux; pass --rig or the full address\n",
        ),
        (
            &["wake", "Nope"][..],
            "gt: no polecat \"Nope\" in any rig (alpha, bravo)\n",
        ),
        (
            &["kill", "Toas"][..],
            "gt: no polecat \"Toas\" in any rig (alpha, bravo) (did you mean Toast?)\n",
        ),
        (
            &["sleep", ".x"][..],
            "gt: invalid polecat name \".x\": use 1-64 letters, digits, '_' or '-', starting with a letter or digit\n",
        ),
        (
            &["sleep", "witness"][..],
            "gt: invalid polecat name \"witness\": it is reserved\n",
        ),
        (
            &["plugin", "status", "Nux"][..],
            "gt: no plugin \"Nux\" in any rig (alpha, bravo)\n",
        ),
    ] {
        assert_eq!(env.fails("gt", args), (2, want.to_string()), "{args:?}");
    }
    // Nothing was changed by a refusal.
    for home in [
        "alpha/polecats/Nux",
        "bravo/polecats/Nux",
        "bravo/polecats/Toast",
    ] {
        assert_eq!(env.state(home)["status"], "idle", "{home}");
    }
}

#[test]
fn every_command_that_takes_a_polecat_takes_rig() {
    let env = two_rigs();
    env.ok("gt", &["plugin", "add", "bravo", "oracle"]);
    for (args, want) in [
        (
            &["sleep", "Nux", "--rig", "alpha"][..],
            "alpha/Nux is asleep\n",
        ),
        (
            &["wake", "Nux", "--rig", "alpha"][..],
            "alpha/Nux is idle\n",
        ),
        (
            &["sleep", "--rig", "bravo", "Nux"][..],
            "bravo/Nux is asleep\n",
        ),
        (
            &["kill", "Nux", "--rig", "bravo"][..],
            "bravo/Nux was not running\n",
        ),
    ] {
        assert_eq!(env.ok("gt", args), want, "{args:?}");
    }
    assert_eq!(env.state("alpha/polecats/Nux")["status"], "idle");
    let plugin = env.ok(
        "gt",
        &["plugin", "status", "oracle", "--rig", "bravo", "--json"],
    );
    let plugin: Value = serde_json::from_str(&plugin).unwrap();
    assert_eq!(plugin["address"], "bravo/plugins/oracle");
    for (args, want) in [
        (
            &["inject", "Nux", "--rig", "alpha", "hello"][..],
            "gt: alpha/Nux has no live session (its state.json names none)\n".to_string(),
        ),
        (
            &["capture", "Nux", "--rig", "bravo"][..],
            "gt: bravo/Nux has no live session (its state.json names none)\n".to_string(),
        ),
        (
            &["attach", "Nux", "--rig", "bravo"][..],
            "gt: bravo/Nux has no live session (its state.json names none)\n".to_string(),
        ),
        (
            &["sleep", "alpha/Nux", "--rig", "bravo"][..],
            "gt: two rigs given: alpha/Nux is in rig alpha, not --rig bravo\n".to_string(),
        ),
        (
            &["sleep", "Toast", "--rig", "alpha"][..],
            format!(
                "gt: no agent home for address alpha/Toast ({}/alpha/polecats/Toast does not exist) (did you mean bravo/Toast?)\n",
                env.town.canonicalize().unwrap().display()
            ),
        ),
        (
            &["wake", "Nux", "--rig", "charlie"][..],
            format!(
                "gt: no rig \"charlie\" in {}/config/rigs.json\n",
                env.town.canonicalize().unwrap().display()
            ),
        ),
    ] {
        assert_eq!(env.fails("gt", args), (2, want), "{args:?}");
    }
}

#[test]
fn spawn_takes_the_rig_from_the_issues_prefix() {
    let env = two_rigs();
    let issue = env.issue("bravo", "Work in bravo");
    assert!(issue.starts_with("bra-"), "{issue}");
    // GT_RIG says alpha, but the issue is bravo's: its tracker is the one to claim in.
    let spawned = spawn(&env, &issue, "Toast", "true", ("GT_RIG", "alpha"));
    assert_eq!(spawned["address"], "bravo/Toast");
    assert_eq!(env.state("bravo/polecats/Toast")["issue"], issue.as_str());
    assert_eq!(env.state("alpha/polecats/Nux")["status"], "idle");
    // An id no rig's prefix matches falls back to the usual rule (here: ambiguous).
    let (code, err) = env.fails("gt", &["spawn", "--issue", "zzz-1", "--agent", "true"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("gt: which rig? pass --rig"), "{err}");
}

#[test]
fn attach_follows_a_plain_process_sessions_log() {
    use std::io::BufRead;
    let env = two_rigs();
    let issue = env.issue("bravo", "Talk");
    let agent = "echo hello-from-the-agent; exec sleep 600";
    spawn(
        &env,
        &issue,
        "Toast",
        agent,
        ("GT_SESSION_BACKEND", "process"),
    );
    struct Kill<'a>(&'a TestEnv);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.run("gt", &["kill", "bravo/Toast"]);
        }
    }
    let _kill = Kill(&env);
    let mut child = env
        .cmd("gt")
        .args(["attach", "Toast"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(10));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        line.as_deref(),
        Ok("hello-from-the-agent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn attach_attaches_a_terminal_to_the_tmux_session() {
    if !crate::common::have_tool("tmux") {
        return;
    }
    let env = two_rigs();
    let issue = env.issue("alpha", "Sit");
    spawn(
        &env,
        &issue,
        "Nux",
        "exec sleep 600",
        ("GT_SESSION_BACKEND", "tmux"),
    );
    let session = env.session("alpha/polecats/Nux");
    let parts: Vec<&str> = session.split(':').collect();
    let (socket, name) = (parts[1], parts[2]);
    // A person's terminal: a pane of a second tmux server, running gt attach.
    let outer = format!("gt-test-attach-{}", std::process::id());
    let gt = crate::common::bin("gt");
    let line = format!(
        "exec env -u TMUX GT_TOWN='{}' PATH='{}' '{}' attach alpha/Nux",
        env.town.display(),
        std::env::var("PATH").unwrap(),
        gt.display()
    );
    let tmux = |socket: &str, args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    };
    struct Server(String);
    impl Drop for Server {
        fn drop(&mut self) {
            crate::common::kill_tmux_server(&self.0);
        }
    }
    let _outer = Server(outer.clone());
    let started = tmux(
        &outer,
        &["new-session", "-d", "-x", "80", "-y", "24", &line],
    );
    assert!(started.status.success(), "{started:?}");
    // tmux has no event for a client attaching; poll its client list.
    let attached = crate::common::wait_until(10, || {
        let clients = tmux(socket, &["list-clients", "-F", "#{session_name}"]);
        String::from_utf8_lossy(&clients.stdout)
            .lines()
            .any(|l| l == name)
    });
    assert!(attached, "no client attached to {name} on {socket}");
}
