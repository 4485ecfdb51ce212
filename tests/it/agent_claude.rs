//! The real Claude Code CLI (npm `@anthropic-ai/claude-code`) in tmux on a
//! private socket, against the scripted model server (the AI model's test
//! double, tests/it/model.rs) on 127.0.0.1, started as the `claude` preset
//! says. The CLI is looked up in `GT_TEST_AGENT_DIR` (default
//! `~/.cache/gastown-agents`, where .ci/run installs it with
//! `npm install --prefix`): `<dir>/node_modules/.bin/claude`. Without it the
//! tier skips, except under `CI=true`, where it fails saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gastown::agent::{Preset, Screen};
use gastown::home::Home;

use crate::common::{TestEnv, edit_json, git, wait_until};
use crate::model::{Model, Turn};

/// The longest the CLI may take to start, and a turn to reach the model.
const WAIT: Duration = Duration::from_secs(60);

/// The dummy key the CLI sends to the scripted model.
const KEY: &str = "sk-ant-test-0000-scripted-model-dummy-key";

/// The CLI's directory, if it runs (see [`crate::agent_tier::agent_runtime`]).
fn claude_bin_dir() -> Option<PathBuf> {
    crate::agent_tier::agent_runtime("claude", "@anthropic-ai/claude-code")
}

/// A Claude config dir holding only the account-level state a logged-in user
/// already has (protocol/agents.md): onboarding done, the key approved.
fn claude_config(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "hasCompletedOnboarding": true,
        "customApiKeyResponses": {"approved": [&KEY[KEY.len() - 20..]], "rejected": []},
    });
    std::fs::write(dir.join(".claude.json"), cfg.to_string()).unwrap();
}

/// A tmux session on the test's own socket, killed (server and all) on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> Vec<String> {
        self.capture(&[])
    }

    fn capture(&self, flags: &[&str]) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-t", "=a:"];
        args.extend_from_slice(flags);
        self.run(&args).lines().map(str::to_string).collect()
    }

    /// Poll the screen until `want` holds of it as the preset reads it (with
    /// attributes, as gt does; bounded); the last screen.
    fn wait_screen(&self, what: &str, want: impl Fn(&Screen) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.screen();
            if want(&Preset::Claude.screen(&gastown::session::sgr::parse(&self.capture(&["-e"])))) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "Claude Code not {what} within {WAIT:?}; screen:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Tmux {
    /// The `n`th turn at the model; on timeout the failure shows the screen.
    fn turn(&self, model: &Model, n: usize) -> crate::model::Request {
        model.try_wait_turn(n, WAIT).unwrap_or_else(|| {
            panic!(
                "turn {n} did not reach the scripted model within {WAIT:?}; requests: {}; screen:\n{}",
                model.seen(),
                self.screen().join("\n")
            )
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        crate::common::kill_tmux_server(&self.socket);
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Start the `claude` preset in `home`'s clone with an explicit environment
/// (nothing from the tmux server's): the preset's command line and env, the
/// model's URL and the dummy key, a private config dir.
fn start_claude(env: &TestEnv, bin: &Path, model: &Model, home: &Home, prompt: &str) -> Tmux {
    let config = env.path().join("claude-config");
    claude_config(&config);
    let gt = crate::common::bin("gt");
    gastown::agent::prepare(
        Preset::Claude,
        home,
        "# Scripted-model test\n\nINSTRUCTIONS-MARKER: work through gt.\n",
        &gt,
    )
    .unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        bin.display(),
        gt.parent().unwrap().display()
    );
    let mut vars = vec![
        ("PATH".to_string(), path),
        ("HOME".into(), env.path().display().to_string()),
        ("TERM".into(), "tmux-256color".into()),
        ("CLAUDE_CONFIG_DIR".into(), config.display().to_string()),
        ("ANTHROPIC_BASE_URL".into(), model.url()),
        ("ANTHROPIC_API_KEY".into(), KEY.into()),
    ];
    vars.extend(Preset::Claude.env(nix::unistd::geteuid().is_root()));
    let mut command = String::from("exec env -i");
    for (k, v) in &vars {
        command.push(' ');
        command.push_str(&quote(&format!("{k}={v}")));
    }
    let line = Preset::Claude.command_line(home, prompt).unwrap();
    command.push_str(" /bin/sh -c ");
    command.push_str(&quote(&line));
    let tmux = Tmux {
        socket: format!("gt-test-claude-{}", std::process::id()),
    };
    let clone = home.clone_dir();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "a",
        "-x",
        "200",
        "-y",
        "50",
        "-c",
        clone.to_str().unwrap(),
        &command,
    ]);
    tmux
}

/// A home with a git clone in `rig/`, as a polecat has.
fn home_with_clone(env: &TestEnv) -> Home {
    let path = env.path().join("home");
    let clone = path.join("rig");
    std::fs::create_dir_all(&clone).unwrap();
    git(&clone, &["init", "-q", "-b", "main"]);
    Home {
        address: "r/Nux".parse().unwrap(),
        path,
    }
}

#[test]
fn claude_starts_unattended_gets_its_first_prompt_and_a_typed_line_once() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::empty();
    let model = Model::start(vec![
        Turn::text("Ready to work on gt-7."),
        Turn::text("Got your line."),
    ]);
    let home = home_with_clone(&env);
    let prompt = gastown::agent::first_prompt(&home.address, Some("gt-7"));
    let tmux = start_claude(&env, &bin, &model, &home, &prompt);

    // No dialog: the first prompt reaches the model as the first turn, with
    // the instructions file the preset wrote into the clone.
    let first = tmux.turn(&model, 1);
    first.assert_once("Your issue is gt-7.");
    first.assert_once("INSTRUCTIONS-MARKER");
    // The instructions file stays out of git.
    let status = git(&home.clone_dir(), &["status", "--porcelain"]);
    assert_eq!(status, "");

    // Once the turn is over it is ready, with a clean input box.
    let screen = tmux.wait_screen("ready", |s| {
        *s == Screen::Ready {
            input: String::new(),
        }
    });
    assert!(
        screen.iter().any(|l| l.contains("Ready to work on gt-7.")),
        "{}",
        screen.join("\n")
    );

    // A typed line, submitted with Enter once it shows, is the next turn: once.
    let line = "please report your status";
    tmux.run(&["send-keys", "-t", "=a:", "-l", line]);
    tmux.wait_screen("showing the typed line", |s| {
        *s == Screen::Ready {
            input: line.to_string(),
        }
    });
    tmux.run(&["send-keys", "-t", "=a:", "Enter"]);
    let second = tmux.turn(&model, 2);
    let texts = second.texts();
    assert_eq!(texts.iter().filter(|t| *t == line).count(), 1, "{texts:?}");
    second.assert_once(line);
    tmux.wait_screen("ready again", |s| {
        *s == Screen::Ready {
            input: String::new(),
        }
    });
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn spawn_primes_claude_which_works_through_gt_to_done_and_its_commit_lands_on_origin() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_done());
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &[]);
    assert_eq!(spawned.ready, "ready", "{:?}", spawned.reason);
    // The first prompt names the issue and points at gt prime; the
    // instructions gastown wrote into the clone came along; it worked
    // through gt to done.
    crate::agent_tier::check_to_done(&env, &id, |n| spawned.turn(&model, n));

    // The commit holds the work only: CLAUDE.md is excluded, the clone clean.
    let clone = rig.join("polecats/Nux/rig");
    assert_eq!(
        git(&clone, &["show", "--name-only", "--format=%s", "HEAD"]),
        "frob once\n\nfrob.rs\n"
    );
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert!(clone.join("CLAUDE.md").is_file());

    // The hooks beat the heartbeat (the Stop hook runs after the last turn).
    let beat = rig.join("polecats/Nux/heartbeat");
    assert!(
        wait_until(30, || beat.exists()),
        "no heartbeat from the hooks; screen:\n{}",
        spawned.screen()
    );

    crate::agent_tier::check_done_lands(&env, &id);
}

/// A polecat spawned by `gt spawn` with the `claude` preset.
struct Spawned {
    session: String,
    owner: gastown::session::Owner,
    /// How `gt spawn` saw it come up (`ready`, `blocked`, ...), and why not.
    ready: String,
    reason: Option<String>,
}

impl Spawned {
    fn screen(&self) -> String {
        gastown::session::capture(&self.owner, &self.session, None)
            .map(|l| l.join("\n"))
            .unwrap_or_else(|e| e.to_string())
    }

    /// The `n`th turn at the model; on timeout the failure shows the screen.
    fn turn(&self, model: &Model, n: usize) -> crate::model::Request {
        model.try_wait_turn(n, WAIT).unwrap_or_else(|| {
            panic!(
                "turn {n} did not reach the scripted model; requests: {}; screen:\n{}",
                model.seen(),
                self.screen()
            )
        })
    }

    /// The screen as the preset reads it from the pane (with attributes:
    /// a hint in the box is told from input by being dim).
    fn read(&self) -> Screen {
        Preset::Claude
            .screen(&gastown::session::capture_styled(&self.owner, &self.session).unwrap())
    }

    /// Poll the screen until the preset reads `want` (bounded).
    fn wait_screen(&self, want: &Screen) {
        let deadline = Instant::now() + WAIT;
        while self.read() != *want {
            assert!(
                Instant::now() < deadline,
                "not {want:?} within {WAIT:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Set `rig` to the `claude` preset with `agent_env` pointing it at `model`
/// and a config dir `<tmp>/claude-config` (the account-level state, unless the
/// test wrote one)
/// and a git identity, then `gt spawn` polecat r/Nux on `issue`. The town's
/// tmux server is started first by someone else, with an environment in which
/// `claude` cannot be found and the model is elsewhere: the session must get
/// the spawner's environment and agent_env, not the server's.
fn spawn_claude(
    env: &TestEnv,
    bin: &Path,
    model: &Model,
    rig: &Path,
    issue: &str,
    args: &[&str],
) -> Spawned {
    let config = env.path().join("claude-config");
    // A test may have written its own (see the dialog test).
    if !config.join(".claude.json").exists() {
        claude_config(&config);
    }
    edit_json(&rig.join("config.json"), |c| {
        c["agent"] = "claude".into();
        c["agent_env"] = serde_json::json!({
            "CLAUDE_CONFIG_DIR": config.display().to_string(),
            "ANTHROPIC_BASE_URL": model.url(),
            "ANTHROPIC_API_KEY": KEY,
            "GIT_AUTHOR_NAME": "Nux", "GIT_AUTHOR_EMAIL": "nux@example.invalid",
            "GIT_COMMITTER_NAME": "Nux", "GIT_COMMITTER_EMAIL": "nux@example.invalid",
        });
    });
    crate::agent_tier::start_tmux_server_elsewhere(
        env,
        &[("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")],
    );
    let v = crate::agent_tier::spawn_runtime_with(env, bin, issue, args);
    Spawned {
        session: v["session"].as_str().unwrap().to_string(),
        owner: env.owner("r/Nux"),
        ready: v["ready"].as_str().unwrap().to_string(),
        reason: v["reason"].as_str().map(str::to_string),
    }
}

#[test]
fn a_slow_turn_is_not_nudged_and_a_nudge_at_the_ready_prompt_reaches_the_model_once() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["stuck_after"] = "1m".into());
    let id = env.issue("r", "Think hard");
    let model = Model::start(vec![
        Turn::text("Thought it through.").held(),
        Turn::text("Back at it."),
    ]);
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &[]);
    assert_eq!(spawned.ready, "ready", "{:?}", spawned.reason);
    spawned.turn(&model, 1);
    spawned.wait_screen(&Screen::Busy {
        input: String::new(),
    });
    // An hour of silence by the clock, but the turn is still running: no nudge.
    let later = crate::agent_tier::an_hour_later();
    crate::agent_tier::patrol_sees_busy(&env, &later);
    model.release();

    // Once the turn is over it is silent at its prompt: the nudge is typed
    // and reaches the model once, as the next turn.
    spawned.wait_screen(&Screen::Ready {
        input: String::new(),
    });
    crate::agent_tier::patrol_nudges(&env, &later, || spawned.turn(&model, 2));
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn inject_at_cold_start_while_busy_and_while_idle_reaches_the_model_once_each() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Talk");
    let model = Model::start(vec![
        Turn::text("Working on it.").slow(Duration::from_secs(4)),
        Turn::text("Got the first line."),
        Turn::text("Got the second line."),
    ]);
    // Not waited for: the inject below is typed at a cold start.
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &["--wait", "0s"]);
    assert_eq!(spawned.ready, "started");
    // Right after the spawn the TUI is not up: inject waits for a screen it
    // knows. The first prompt makes it busy, so the line is queued.
    let cold = "line typed at cold start";
    assert_eq!(env.ok("gt", &["inject", "Nux", cold]), "r/Nux: submitted\n");
    let first = spawned.turn(&model, 1);
    assert_eq!(first.mentions(cold), 0, "{:?}", first.texts());
    // The slow turn was not cancelled: its answer is on the screen, and the
    // queued line is the next turn, once, not glued to anything.
    let second = spawned.turn(&model, 2);
    second.assert_once(cold);
    assert!(
        second.texts().iter().any(|t| t == cold),
        "{:?}",
        second.texts()
    );
    assert!(
        spawned.screen().contains("Working on it."),
        "{}",
        spawned.screen()
    );

    spawned.wait_screen(&Screen::Ready {
        input: String::new(),
    });
    let idle = "line typed while idle";
    assert_eq!(env.ok("gt", &["inject", "Nux", idle]), "r/Nux: submitted\n");
    let third = spawned.turn(&model, 3);
    third.assert_once(idle);
    third.assert_once(cold);
    assert_eq!(third.texts().last().map(String::as_str), Some(idle));
    assert_eq!(model.turns().len(), 3);
}

#[test]
fn a_start_blocked_by_a_dialog_is_reported_and_nothing_is_typed_into_it() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["stuck_after"] = "1m".into());
    let id = env.issue("r", "Blocked");
    // Onboarding done but the key never approved: Claude Code asks whether to
    // use it, a dialog no preset answers.
    let config = env.path().join("claude-config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join(".claude.json"),
        r#"{"hasCompletedOnboarding": true}"#,
    )
    .unwrap();
    let model = Model::start(vec![]);
    // gt spawn waited, saw the dialog, said so (exit 1), recorded it and told
    // the Witness, once.
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &[]);
    assert_eq!(spawned.ready, "blocked");
    crate::agent_tier::check_blocked(
        &env,
        Preset::Claude,
        &spawned.session,
        spawned.reason.as_deref(),
        "Detected a custom API key in your environment / ANTHROPIC_API_KEY: ",
    );
    assert_eq!(model.turns().len(), 0);
}

#[test]
fn a_claude_that_cannot_start_is_reported_with_its_output_and_backed_off() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_done());
    // A command line the real CLI refuses: it exits at once with its error.
    let spawned = spawn_claude(
        &env,
        &bin,
        &model,
        &rig,
        &id,
        &["--agent", "claude --no-such-flag"],
    );
    assert_eq!(spawned.ready, "ended", "{:?}", spawned.reason);
    crate::agent_tier::check_quick_death(&env, 1, "no-such-flag");
    assert_eq!(model.turns().len(), 0, "nothing reached the model");
}

#[test]
fn a_claude_that_hands_off_is_stopped_after_the_grace_and_its_next_session_resumes_from_the_note() {
    let Some(bin) = claude_bin_dir() else { return };
    // The real clock: the daemon's timer waits out the grace on it.
    let env = TestEnv::new().real_clock();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_handoff());
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &[]);
    assert_eq!(spawned.ready, "ready", "{:?}", spawned.reason);
    crate::agent_tier::check_handoff_cycle(&env, &bin, &id, &spawned.session, |n| {
        spawned.turn(&model, n)
    });
    assert_eq!(model.turns().len(), 5);
}

#[test]
fn inject_onto_text_typed_into_a_busy_claude_types_nothing_and_its_turn_goes_on() {
    let Some(bin) = claude_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Think");
    let model = Model::start(vec![
        Turn::text("Thought it through.").held(),
        Turn::text("Got your line."),
    ]);
    let spawned = spawn_claude(&env, &bin, &model, &rig, &id, &[]);
    assert_eq!(spawned.ready, "ready", "{:?}", spawned.reason);
    spawned.turn(&model, 1);
    let busy = |input: &str| Screen::Busy {
        input: input.to_string(),
    };
    spawned.wait_screen(&busy(""));
    // Typed while busy and not submitted: the footer's `esc to interrupt`
    // gives way to it, the spinner stays; a line typed now would be glued on.
    let left = "half a thought";
    crate::agent_tier::send_keys(&spawned.session, &["-l", left]);
    spawned.wait_screen(&busy(left));
    crate::agent_tier::inject_is_refused_onto(&env, left);
    assert_eq!(spawned.read(), busy(left));

    // Cleared, a line typed while busy is queued (the box then shows a dim
    // hint, which is no input); the turn was not cancelled.
    crate::agent_tier::send_keys(&spawned.session, &["C-u"]);
    spawned.wait_screen(&busy(""));
    let line = "line typed once the box was cleared";
    assert_eq!(env.ok("gt", &["inject", "Nux", line]), "r/Nux: submitted\n");
    model.release();
    let second = spawned.turn(&model, 2);
    second.assert_once(line);
    assert_eq!(second.mentions(left), 0, "{:?}", second.texts());
    assert!(
        spawned.screen().contains("Thought it through."),
        "{}",
        spawned.screen()
    );
    assert_eq!(model.turns().len(), 2);
}
