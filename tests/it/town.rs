//! `gt install`, `gt rig add`, discovery and the read-only views.

use crate::common::{TestEnv, git, read_json};

#[test]
fn install_creates_the_town_tree_and_is_idempotent() {
    let env = TestEnv::new();
    let t = &env.town;
    let town = read_json(&t.join("config/town.json"));
    assert_eq!(town["type"], "town");
    assert_eq!(town["version"], 1);
    assert_eq!(town["name"], "town");
    assert_eq!(
        read_json(&t.join("config/rigs.json")),
        serde_json::json!({"version": 1, "rigs": {}})
    );
    for home in ["mayor", "overseer"] {
        assert_eq!(std::fs::read(env.inbox_path(home)).unwrap(), b"");
        assert_eq!(env.state(home)["role"], home);
        assert!(t.join(home).join("CLAUDE.md").is_file());
    }
    // A person's edits survive a re-run; a deleted file comes back.
    std::fs::write(t.join("mayor/CLAUDE.md"), "my prompt\n").unwrap();
    std::fs::remove_file(t.join("overseer/state.json")).unwrap();
    let out = env.ok("gt", &["install", t.to_str().unwrap()]);
    assert!(
        out.contains("is installed (missing files restored)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("mayor/CLAUDE.md")).unwrap(),
        "my prompt\n"
    );
    assert_eq!(env.state("overseer")["role"], "overseer");
}

#[test]
fn install_refuses_a_non_empty_non_town_directory() {
    let env = TestEnv::empty();
    let dir = env.path().join("stuff");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let (code, err) = env.fails("gt", &["install", dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "gt: {}: directory is not empty and is not a town; refusing to install here\n",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );
}

#[test]
fn rig_add_builds_the_container_and_registers_it() {
    let env = TestEnv::new();
    let rig = env.add_rig("wyvern");
    let cfg = read_json(&rig.join("config.json"));
    assert_eq!(cfg["type"], "rig");
    assert_eq!(cfg["name"], "wyvern");
    assert_eq!(cfg["beads"]["prefix"], "wyv");
    assert_eq!(cfg["max_workers"], 8);
    assert!(
        !rig.join(".git").exists(),
        "a rig is a container, not a clone"
    );
    for d in [
        ".beads",
        "polecats",
        "crew",
        "plugins",
        "witness/mail",
        "refinery/mail",
    ] {
        assert!(rig.join(d).is_dir(), "{d}");
    }
    for clone in ["refinery/rig", "mayor/rig"] {
        assert_eq!(
            std::fs::read_to_string(rig.join(clone).join("README")).unwrap(),
            "wyvern-origin\n",
            "{clone}"
        );
    }
    let rigs = read_json(&env.town.join("config/rigs.json"));
    let origin = env.path().join("wyvern-origin.git").canonicalize().unwrap();
    assert_eq!(rigs["rigs"]["wyvern"]["git_url"], origin.to_str().unwrap());
    assert!(!env.town.join(".staging").exists());

    let json: serde_json::Value = serde_json::from_str(&env.ok("gt", &["rigs", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "wyvern");
    assert_eq!(json[0]["polecats"], 0);
}

#[test]
fn rig_add_failures_leave_nothing_behind() {
    let env = TestEnv::new();
    env.add_rig("wyv");
    let before = std::fs::read(env.town.join("config/rigs.json")).unwrap();
    let missing = env.path().join("nope.git");
    // Origins a landing could not start from: HEAD names a branch that is
    // not there (git init --bare's master, only main pushed), no branch at all.
    let dangling = env.bare_origin("dangling");
    git(&dangling, &["symbolic-ref", "HEAD", "refs/heads/master"]);
    let empty = env.path().join("empty.git");
    git(
        env.path(),
        &["init", "-q", "--bare", empty.to_str().unwrap()],
    );
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["other".into(), dangling.display().to_string()],
            format!(
                "gt: {0}: its HEAD names branch \"master\", which it does not have (it has: main); \
                 point HEAD at one: git --git-dir={0} symbolic-ref HEAD refs/heads/main",
                dangling.display()
            ),
        ),
        (
            vec!["other".into(), empty.display().to_string()],
            format!(
                "gt: {}: has no branch yet; push a first commit to it",
                empty.display()
            ),
        ),
        (
            vec!["wyv".into(), missing.display().to_string()],
            "gt: rig \"wyv\" already exists in".into(),
        ),
        (
            vec!["other".into(), missing.display().to_string()],
            format!("gt: cannot clone {}: git clone:", missing.display()),
        ),
        (
            vec!["../x".into(), "u".into()],
            "gt: invalid rig name \"../x\"".into(),
        ),
        (
            vec!["config".into(), "u".into()],
            "gt: invalid rig name \"config\": it is reserved".into(),
        ),
    ];
    for (args, want) in cases {
        let mut argv = vec!["rig", "add"];
        argv.extend(args.iter().map(String::as_str));
        let (code, err) = env.fails("gt", &argv);
        assert_eq!(code, 2);
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    }
    assert_eq!(
        std::fs::read(env.town.join("config/rigs.json")).unwrap(),
        before
    );
    let mut names: Vec<String> = std::fs::read_dir(&env.town)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["config", "mayor", "overseer", "wyv"]);
}

#[test]
fn missing_town_is_a_clear_error() {
    let env = TestEnv::empty();
    let out = env
        .cmd("gt")
        .env_remove("GT_TOWN")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "gt: no town here (looked for config/town.json from {} up to /; set GT_TOWN or run gt install)\n",
            env.path().canonicalize().unwrap().display()
        )
    );
}

#[test]
fn whoami_from_directory_and_environment() {
    let env = TestEnv::new();
    let rig = env.add_rig("r1");
    let out = env
        .cmd("gt")
        .arg("whoami")
        .current_dir(rig.join("refinery/rig"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "refinery r1/refinery\n"
    );
    let out = env
        .cmd("gt")
        .args(["whoami", "--json"])
        .env("GT_ADDRESS", "r1/witness")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["address"], "r1/witness");
    assert_eq!(v["source"], "GT_ADDRESS");
    assert_eq!(env.ok("gt", &["whoami"]), "overseer overseer\n");
}

/// A GT_ADDRESS naming no home is still who the caller says it is (exit 0),
/// with a warning: mail to it and its state would fail.
#[test]
fn whoami_warns_when_gt_address_names_no_home() {
    let env = TestEnv::new();
    env.add_rig("r1");
    let run = |addr: &str| {
        let out = env
            .cmd("gt")
            .arg("whoami")
            .env("GT_ADDRESS", addr)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            env.normalize(&String::from_utf8(out.stderr).unwrap()),
        )
    };
    assert_eq!(
        run("r1/Catt"),
        (
            Some(0),
            "polecat r1/Catt\n".to_string(),
            "gt: warning: no agent home for address r1/Catt ($TEST_ENV/town/r1/polecats/Catt does not exist)\n".to_string()
        )
    );
    assert_eq!(
        run("r1/witness"),
        (Some(0), "witness r1/witness\n".to_string(), String::new())
    );
}

#[test]
fn unknown_subcommand_exits_127_with_a_hint() {
    let env = TestEnv::new();
    let (code, err) = env.fails("gt", &["sttaus"]);
    assert_eq!(code, 127);
    assert!(err.contains("did you mean 'status'?"), "{err}");
    // Reported like every other error: one line, `gt: <message> (<hint>)`.
    assert_eq!(
        err,
        "gt: unknown command 'sttaus': no built-in and no gt-sttaus beside gt or on PATH (did you mean 'status'?)\n"
    );
    // Nothing close: no hint.
    assert_eq!(
        env.fails("gt", &["zzzzzzzz"]),
        (
            127,
            "gt: unknown command 'zzzzzzzz': no built-in and no gt-zzzzzzzz beside gt or on PATH\n"
                .to_string()
        )
    );
}

#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let env = TestEnv::new();
    // A pipe whose reader is already gone: the first write gets EPIPE.
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = env
        .cmd("gt")
        .arg("status")
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no panic message");
}

/// Started with stdout and stderr closed, a command finds them open on
/// /dev/null (as std's start-up would leave them), so no file it opens later
/// becomes its stdout: the body read from /dev/fd/1 is empty, and only the
/// record reaches the inbox.
#[test]
fn a_send_started_with_stdout_and_stderr_closed_sees_them_on_dev_null() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    let mut cmd = env.cmd("gt");
    cmd.args(["send", "mayor", "-s", "closed", "-f", "/dev/fd/1"]);
    // SAFETY: close(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "{status:?}");
    let mail = env.town.join("mayor/mail");
    let inbox = std::fs::read_to_string(mail.join("inbox.jsonl")).unwrap();
    let lines: Vec<&str> = inbox.lines().collect();
    assert_eq!(lines.len(), 1, "{inbox}");
    let record: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (&record["subject"], &record["body"]),
        (&"closed".into(), &"".into())
    );
    assert_eq!(std::fs::read(mail.join("inbox.lock")).unwrap(), b"");
}

#[test]
fn install_refuses_an_empty_town_name() {
    let env = TestEnv::empty();
    let (code, err) = env.fails(
        "gt",
        &["install", env.town.to_str().unwrap(), "--name", " "],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "gt: invalid town name \" \": it must be one non-empty line\n"
        )
    );
    assert!(!env.town.exists(), "nothing made");
}

#[test]
fn gastown_tools_run_inside_gt_and_other_subcommands_are_found_on_path() {
    let env = TestEnv::new();
    // gt alone, with no gt-* beside it and nothing on PATH but a plug-in.
    let lone = env.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    crate::common::copy_executable(&crate::common::bin("gt"), &lone.join("gt"));
    let plugins = env.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let hello = plugins.join("gt-hello");
    crate::common::write_executable(&hello, "#!/bin/sh\necho \"hello $*\"\n");
    let gt = |args: &[&str]| {
        std::process::Command::new(lone.join("gt"))
            .args(args)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", plugins.display()))
            .env("GT_TOWN", &env.town)
            .output()
            .unwrap()
    };
    let sent = gt(&["send", "mayor", "-s", "hi", "-m", "from a lone gt"]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let inbox = std::fs::read_to_string(env.inbox_path("mayor")).unwrap();
    assert!(inbox.contains("\"body\":\"from a lone gt\""), "{inbox}");
    let out = gt(&["hello", "a", "b"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello a b\n");
    let out = gt(&["mail", "--version"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("gt-mail "),
        "{out:?}"
    );
}

#[test]
fn status_heartbeat_age_is_the_later_of_heartbeat_and_session_start() {
    let env = TestEnv::new();
    env.add_rig("r");
    let home = env.town.join("r/witness");
    let state_path = home.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["started_at"] = "2026-11-25T10:00:00Z".into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let beat_at = |at: &str| {
        let t: jiff::Timestamp = at.parse().unwrap();
        std::fs::File::create(home.join("heartbeat"))
            .unwrap()
            .set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_second() as u64),
            )
            .unwrap();
    };
    let age = || {
        let out = env
            .cmd("gt")
            .args(["status", "--json"])
            .env("GT_NOW", "2026-11-25T10:05:00Z")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let agent = v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["address"] == "r/witness")
            .unwrap()
            .clone();
        agent["heartbeat_age_s"].clone()
    };
    // A heartbeat left by an earlier session says nothing about this one.
    beat_at("2026-11-25T09:00:00Z");
    assert_eq!(age(), 300);
    beat_at("2026-11-25T10:04:00Z");
    assert_eq!(age(), 60);
    // Never started and never beat: no age.
    let mayor = env.cmd("gt").args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&mayor.stdout).unwrap();
    assert_eq!(v["agents"][0]["address"], "mayor");
    assert_eq!(v["agents"][0]["heartbeat_age_s"], serde_json::Value::Null);
}

/// Clone progress goes to a person only: on a terminal (a pty from
/// util-linux `script`), `gt rig add` and `gt polecat add` redraw one stderr
/// line naming the clone and clear it; with stderr a pipe, not one byte of it.
#[test]
fn clone_progress_only_when_stderr_is_a_terminal() {
    let env = TestEnv::new();
    let origin = env.bare_origin("o");
    let url = format!("file://{}", origin.display());
    let out = env.run("gt", &["rig", "add", "r", &url]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = env.run("gt", &["polecat", "add", "r", "Nux"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    if !crate::common::have_tool("script") {
        return;
    }
    for (args, what) in [
        (format!("rig add s {url}"), "s"),
        ("polecat add r Toast".to_string(), "r/Toast"),
    ] {
        let gt = crate::common::bin("gt");
        let line = format!("{} {args}", gt.display());
        // script runs gt as env.cmd would: the same environment and directory.
        let like = env.cmd("gt");
        let mut c = std::process::Command::new("script");
        for (k, v) in like.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = like.get_current_dir() {
            c.current_dir(d);
        }
        c.args(["-qec", &line, "/dev/null"]);
        let text = crate::common::ok_output(&mut c);
        let want = format!("\r\x1b[Kcloning {url}: ");
        assert!(text.contains(&want), "{what}: {text:?}");
        assert!(text.contains("\r\x1b[K"), "{what}: {text:?}");
        // The line is cleared before the command's own output.
        let cleared = text.rfind("\r\x1b[K").unwrap();
        assert!(
            text[cleared + 4..].starts_with("added "),
            "{what}: {text:?}"
        );
    }
}
