//! The real Codex CLI (npm `@openai/codex`) started by `gt spawn` with the
//! `codex` preset in tmux on the town's private socket, against the scripted
//! model server (the AI model's test double, tests/it/model.rs) speaking the
//! Responses API on 127.0.0.1. The CLI is looked up in `GT_TEST_AGENT_DIR`
//! (see [`crate::agent_tier::agent_runtime`]); without it the tier skips, except
//! under `CI=true`, where it fails saying why.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gastown::agent::{Preset, Screen};

use crate::common::{TestEnv, edit_json, git};
use crate::model::{Model, Request, Turn};

/// The longest the CLI may take to start, and a turn to reach the model.
const WAIT: Duration = Duration::from_secs(60);

/// The CLI's directory, if it runs (see [`crate::agent_tier::agent_runtime`]).
fn codex_bin_dir() -> Option<PathBuf> {
    crate::agent_tier::agent_runtime("codex", "@openai/codex")
}

/// A polecat `r/Nux` started by `gt spawn` with the `codex` preset.
struct Codex {
    session: String,
    owner: gastown::session::Owner,
    /// Why `gt spawn` did not see it ready, if it did not.
    reason: Option<String>,
    home: PathBuf,
    /// The user's own Codex home the agent's is seeded from.
    user: PathBuf,
}

impl Codex {
    /// Set `rig` to the `codex` preset, its `agent_env` naming a user Codex
    /// home whose config points at `model` (as a user's would, with a model
    /// provider of their own), then `gt spawn` r/Nux on `issue` (the town's
    /// tmux server started elsewhere first, with a wrong `CODEX_HOME`).
    fn spawn(env: &TestEnv, bin: &Path, model: &Model, rig: &Path, issue: &str) -> Codex {
        Codex::spawn_with(env, bin, model, rig, issue, &[], "ready")
    }

    /// [`Codex::spawn`] with more `gt spawn` arguments, reporting `ready`.
    fn spawn_with(
        env: &TestEnv,
        bin: &Path,
        model: &Model,
        rig: &Path,
        issue: &str,
        args: &[&str],
        ready: &str,
    ) -> Codex {
        let user = env.path().join("user-codex");
        std::fs::create_dir_all(&user).unwrap();
        let config = format!(
            "# the user's own Codex config\nmodel = \"gpt-test\"\nmodel_provider = \"local\"\n\n[model_providers.local]\nname = \"scripted model\"\nbase_url = \"{}/v1\"\nenv_key = \"GT_TEST_CODEX_KEY\"\nwire_api = \"responses\"\n",
            model.url()
        );
        std::fs::write(user.join("config.toml"), config).unwrap();
        edit_json(&rig.join("config.json"), |c| {
            c["agent"] = "codex".into();
            c["agent_env"] = serde_json::json!({
                "CODEX_HOME": user.display().to_string(),
                "GT_TEST_CODEX_KEY": "dummy-key-for-the-scripted-model",
                "GIT_AUTHOR_NAME": "Nux", "GIT_AUTHOR_EMAIL": "nux@example.invalid",
                "GIT_COMMITTER_NAME": "Nux", "GIT_COMMITTER_EMAIL": "nux@example.invalid",
            });
        });
        crate::agent_tier::start_tmux_server_elsewhere(
            env,
            &[
                ("CODEX_HOME", "/nonexistent"),
                ("GT_TEST_CODEX_KEY", "wrong"),
            ],
        );
        let spawned = crate::agent_tier::spawn_runtime_with(env, bin, issue, args);
        assert_eq!(
            spawned["ready"],
            ready,
            "{spawned}; its session's log:\n{}",
            std::fs::read_to_string(rig.join("polecats/Nux/session.log")).unwrap_or_default()
        );
        Codex {
            session: spawned["session"].as_str().unwrap().to_string(),
            owner: env.owner("r/Nux"),
            reason: spawned["reason"].as_str().map(str::to_string),
            home: rig.join("polecats/Nux"),
            user,
        }
    }

    /// r/Nux spawned on an issue of a new rig `r`, its model answering
    /// "Waiting for word." then "Got your line.", once it is idle at its
    /// ready prompt after the first turn.
    fn idle(env: &TestEnv, bin: &Path) -> (Codex, Model) {
        let rig = env.add_rig("r");
        let id = env.issue("r", "Talk");
        let model = Model::start(vec![
            Turn::text("Waiting for word."),
            Turn::text("Got your line."),
        ]);
        let codex = Codex::spawn(env, bin, &model, &rig, &id);
        codex.turn(&model, 1);
        codex.shows(&model, "Waiting for word.");
        codex.ready(&model);
        (codex, model)
    }

    /// r/Nux spawned on an issue of a new rig `r`, its model answering
    /// "Thought it through." once the test releases it ([`Model::release`]),
    /// then "Got your line."; once its screen shows it busy on that first turn.
    fn busy(env: &TestEnv, bin: &Path) -> (Codex, Model) {
        let rig = env.add_rig("r");
        let id = env.issue("r", "Think");
        let model = Model::start(vec![
            Turn::text("Thought it through.").held(),
            Turn::text("Got your line."),
        ]);
        let codex = Codex::spawn(env, bin, &model, &rig, &id);
        codex.turn(&model, 1);
        codex.wait(&model, "busy", || {
            (codex.screen()
                == Screen::Busy {
                    input: String::new(),
                })
            .then_some(())
        });
        (codex, model)
    }

    fn lines(&self) -> Vec<String> {
        gastown::session::capture(&self.owner, &self.session, None).unwrap_or_default()
    }

    /// The screen read from the pane as drawn (Codex's input hint is told
    /// from typed text by its dim attribute only).
    fn screen(&self) -> Screen {
        Preset::Codex.screen(
            &gastown::session::capture_styled(&self.owner, &self.session).unwrap_or_default(),
        )
    }

    /// Poll (bounded) until `f` gives something; the failure names `what`
    /// and shows the screen and the requests so far.
    fn wait<T>(&self, model: &Model, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "Codex: {what} not within {WAIT:?}; requests: {}; screen:\n{}",
                model.seen(),
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn turn(&self, model: &Model, n: usize) -> Request {
        self.wait(model, &format!("turn {n} at the model"), || {
            model.try_wait_turn(n, Duration::from_millis(200))
        })
    }

    /// Wait until a line of the screen holds `text`.
    fn shows(&self, model: &Model, text: &str) {
        self.wait(model, &format!("{text:?} on the screen"), || {
            self.lines().iter().any(|l| l.contains(text)).then_some(())
        });
    }

    /// Wait for the ready prompt with an empty input box.
    fn ready(&self, model: &Model) {
        self.wait(model, "ready", || {
            let screen = self.screen();
            assert!(
                !matches!(screen, Screen::Dialog(_)),
                "Codex shows a dialog: {screen:?}; screen:\n{}",
                self.lines().join("\n")
            );
            (screen
                == Screen::Ready {
                    input: String::new(),
                })
            .then_some(())
        });
    }
}

/// Every file under `dir` with its content (a directory's listing).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn spawn_starts_codex_unattended_in_its_clone_and_its_work_through_gt_done_lands_on_origin() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_done());
    let codex = Codex::spawn(&env, &bin, &model, &rig, &id);
    let before = snapshot(&codex.user);

    // No trust dialog in the clone: the first prompt is the first turn, and
    // names the issue; the instructions gastown wrote (AGENTS.md) came
    // along; it worked through gt to done.
    let first = crate::agent_tier::check_to_done(&env, &id, |n| codex.turn(&model, n));
    first.assert_once("# AGENTS.md instructions for ");
    codex.shows(&model, "Done: reported to my Witness.");
    codex.ready(&model);

    // The commit holds the work only: AGENTS.md is excluded, the clone clean.
    let clone = codex.home.join("rig");
    assert_eq!(
        git(&clone, &["show", "--name-only", "--format=%s", "HEAD"]),
        "frob once\n\nfrob.rs\n"
    );
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");

    // The agent's own Codex home trusts exactly its clone, keeps the user's
    // config, and started no daemon (which would have installed its
    // packages there); the user's Codex home is as it was.
    let own = std::fs::read_to_string(codex.home.join("codex/config.toml")).unwrap();
    assert!(own.starts_with("# the user's own Codex config\n"), "{own}");
    let trust = format!(
        "[projects.\"{}\"]\ntrust_level = \"trusted\"\n",
        clone.canonicalize().unwrap().display()
    );
    assert!(own.contains(&trust), "{own}");
    assert!(!codex.home.join("codex/packages").exists());
    assert_eq!(snapshot(&codex.user), before);
    crate::agent_tier::check_done_lands(&env, &id);
}

#[test]
fn codex_that_hands_off_is_stopped_after_the_grace_and_its_next_session_resumes_from_the_note() {
    let Some(bin) = codex_bin_dir() else { return };
    // The real clock: the daemon's timer waits out the grace on it.
    let env = TestEnv::new().real_clock();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_handoff());
    let codex = Codex::spawn(&env, &bin, &model, &rig, &id);
    crate::agent_tier::check_handoff_cycle(&env, &bin, &id, &codex.session, |n| {
        codex.turn(&model, n)
    });
    assert_eq!(model.turns().len(), 5);
}

#[test]
fn inject_into_idle_codex_reaches_the_model_once() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let (codex, model) = Codex::idle(&env, &bin);

    let line = "line typed while idle";
    assert_eq!(env.ok("gt", &["inject", "Nux", line]), "r/Nux: submitted\n");
    let second = codex.turn(&model, 2);
    second.assert_once(line);
    assert_eq!(second.texts().last().map(String::as_str), Some(line));
    codex.shows(&model, "Got your line.");
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn inject_into_busy_codex_is_not_lost_and_does_not_cancel_its_turn() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let (codex, model) = Codex::busy(&env, &bin);
    let line = "line typed while busy";
    assert_eq!(env.ok("gt", &["inject", "Nux", line]), "r/Nux: submitted\n");
    model.release();
    // The slow turn's answer still comes (the turn was not cancelled), and
    // the line reaches the model once, in the next request.
    codex.shows(&model, "Thought it through.");
    let second = codex.turn(&model, 2);
    second.assert_once(line);
    second.assert_once("Thought it through.");
    codex.shows(&model, "Got your line.");
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn inject_at_cold_start_is_submitted_once_unglued_after_the_first_prompt() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Talk");
    let model = Model::start(vec![
        Turn::text("Working on it.").slow(Duration::from_secs(4)),
        Turn::text("Got your line."),
    ]);
    // Not waited for: the inject below is typed while the TUI comes up (it
    // shows an input box before it takes its first prompt).
    let codex = Codex::spawn_with(&env, &bin, &model, &rig, &id, &["--wait", "0s"], "started");
    let cold = "line typed at cold start";
    assert_eq!(env.ok("gt", &["inject", "Nux", cold]), "r/Nux: submitted\n");
    // The first turn is the first prompt alone; the line is the next turn,
    // once, a message of its own (nothing glued to it); the slow turn was
    // not cancelled.
    let first = codex.turn(&model, 1);
    let prompt = gastown::agent::first_prompt(&"r/Nux".parse().unwrap(), Some(&id));
    assert_eq!(first.texts().last(), Some(&prompt), "{:?}", first.texts());
    assert_eq!(first.mentions(cold), 0, "{:?}", first.texts());
    let second = codex.turn(&model, 2);
    second.assert_once(cold);
    second.assert_once("Working on it.");
    assert_eq!(second.texts().last().map(String::as_str), Some(cold));
    codex.shows(&model, "Got your line.");
    codex.ready(&model);
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn inject_onto_text_left_in_codex_input_box_types_nothing() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let (codex, model) = Codex::idle(&env, &bin);

    // A person typed into the box and went away: the text is not dim, as
    // the hint is, so it is read as input (and the hint never is, above).
    let keys = |k: &[&str]| crate::agent_tier::send_keys(&codex.session, k);
    let left = "half a thought";
    keys(&["-l", left]);
    let typed = Screen::Ready {
        input: left.to_string(),
    };
    codex.wait(&model, "the typed text in the box", || {
        (codex.screen() == typed).then_some(())
    });
    crate::agent_tier::inject_is_refused_onto(&env, left);
    assert_eq!(codex.screen(), typed);

    // Cleared, the box takes the line, which reaches the model alone.
    keys(&["C-u"]);
    codex.ready(&model);
    let line = "line typed after the box was cleared";
    assert_eq!(env.ok("gt", &["inject", "Nux", line]), "r/Nux: submitted\n");
    let second = codex.turn(&model, 2);
    assert_eq!(second.texts().last().map(String::as_str), Some(line));
    assert_eq!(second.mentions(left), 0, "{:?}", second.texts());
    assert_eq!(second.mentions("a nudge"), 0, "{:?}", second.texts());
    codex.shows(&model, "Got your line.");
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn inject_onto_text_typed_into_a_busy_codex_types_nothing_and_its_turn_goes_on() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let (codex, model) = Codex::busy(&env, &bin);
    let busy = |input: &str| Screen::Busy {
        input: input.to_string(),
    };
    // Typed while busy and not queued: still in the box, so a line typed
    // now would be glued onto it.
    let left = "half a thought";
    crate::agent_tier::send_keys(&codex.session, &["-l", left]);
    codex.wait(&model, "busy with the typed text", || {
        (codex.screen() == busy(left)).then_some(())
    });
    crate::agent_tier::inject_is_refused_onto(&env, left);
    assert_eq!(codex.screen(), busy(left));

    // Cleared, a line typed while busy is queued; the turn was not cancelled.
    crate::agent_tier::send_keys(&codex.session, &["C-u"]);
    codex.wait(&model, "busy with an empty box", || {
        (codex.screen() == busy("")).then_some(())
    });
    let line = "line typed once the box was cleared";
    assert_eq!(env.ok("gt", &["inject", "Nux", line]), "r/Nux: submitted\n");
    model.release();
    codex.shows(&model, "Thought it through.");
    let second = codex.turn(&model, 2);
    second.assert_once(line);
    assert_eq!(second.mentions(left), 0, "{:?}", second.texts());
    codex.shows(&model, "Got your line.");
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn a_slow_codex_turn_is_not_nudged_and_a_nudge_at_its_ready_prompt_reaches_the_model_once() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let (codex, model) = Codex::busy(&env, &bin);
    edit_json(&env.town.join("r/config.json"), |c| {
        c["stuck_after"] = "1m".into()
    });
    // Codex runs no hooks, so its heartbeat is silent for an hour by the
    // clock; its screen shows the turn in progress: not nudged.
    let later = crate::agent_tier::an_hour_later();
    crate::agent_tier::patrol_sees_busy(&env, &later);
    model.release();

    // Silent at its prompt once the turn is over: the nudge is typed and
    // reaches the model once, as the next turn.
    codex.shows(&model, "Thought it through.");
    codex.ready(&model);
    crate::agent_tier::patrol_nudges(&env, &later, || codex.turn(&model, 2));
    assert_eq!(model.turns().len(), 2);
}

#[test]
fn a_codex_that_cannot_start_is_reported_with_its_output_and_backed_off() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    let id = env.issue("r", "Fix the frobnicator");
    let model = Model::start(crate::model::to_done());
    // A command line the real CLI refuses: it exits at once with its error.
    Codex::spawn_with(
        &env,
        &bin,
        &model,
        &rig,
        &id,
        &["--agent", "codex --no-such-flag"],
        "ended",
    );
    crate::agent_tier::check_quick_death(&env, 2, "--no-such-flag");
    assert_eq!(model.turns().len(), 0, "nothing reached the model");
}

#[test]
fn a_codex_start_blocked_by_its_trust_dialog_is_reported_and_nothing_is_typed_into_it() {
    let Some(bin) = codex_bin_dir() else { return };
    let env = TestEnv::new();
    let rig = env.add_rig("r");
    edit_json(&rig.join("config.json"), |c| c["stuck_after"] = "1m".into());
    let id = env.issue("r", "Blocked");
    let model = Model::start(vec![]);
    // A command line of the user's own that runs Codex on their Codex home,
    // where the clone is not trusted: it asks, a dialog nothing answers.
    // (Without its app-server daemon, which would outlive the test.)
    let user = env.path().join("user-codex");
    let agent = format!(
        "env CODEX_HOME={} codex -c features.daemon_auto_start=false --dangerously-bypass-approvals-and-sandbox hello",
        user.display()
    );
    let codex = Codex::spawn_with(
        &env,
        &bin,
        &model,
        &rig,
        &id,
        &["--agent", &agent],
        "blocked",
    );
    crate::agent_tier::check_blocked(
        &env,
        Preset::Codex,
        &codex.session,
        codex.reason.as_deref(),
        &format!(
            "Folder access / {} / Trust this folder? Codex can read, edit, and run files here",
            rig.join("polecats/Nux/rig").display()
        ),
    );
    assert_eq!(model.turns().len(), 0);
    assert!(!user.join("packages").exists(), "no daemon installed");
}
