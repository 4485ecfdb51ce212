//! The agent benchmark's driver (bench/agents.sh runs it): real agent
//! runtimes started by `gt spawn` against the scripted model server of the
//! tests (tests/it/model.rs, the AI model's test double, compiled in here so
//! there is one implementation), timing for each of `runs` polecats:
//! spawn → first request at the model, spawn → runtime ready (at its prompt,
//! the first turn answered), and `gt inject` → that request at the model.
//!
//! `agent_bench <claude|codex> <runs> <rig> <work-dir>` with `GT_TOWN` set
//! and `gt` and the runtime on `PATH`; prints one JSON object of samples (ms).

#[path = "../tests/it/model.rs"]
mod model;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use gastown::agent::{Preset, Screen};
use serde_json::{Value, json};

/// The longest one step may take before the run is given up.
const WAIT: Duration = Duration::from_secs(60);

fn gt(args: &[&str]) -> String {
    let out = Command::new("gt").args(args).output().expect("run gt");
    assert!(
        out.status.success(),
        "gt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Poll every 5 ms until `f` holds (bounded).
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The rig's `agent_env` pointing `preset` at `model`, with the runtime's own
/// config under `work` holding only what a user already has.
fn agent_env(preset: Preset, model: &model::Model, work: &Path) -> Value {
    match preset {
        Preset::Claude => {
            let key = "sk-ant-bench-0000-scripted-model-dummy-key";
            let dir = work.join("claude-config");
            std::fs::create_dir_all(&dir).unwrap();
            let account = json!({"hasCompletedOnboarding": true,
                "customApiKeyResponses": {"approved": [&key[key.len() - 20..]], "rejected": []}});
            std::fs::write(dir.join(".claude.json"), account.to_string()).unwrap();
            json!({"CLAUDE_CONFIG_DIR": dir, "ANTHROPIC_BASE_URL": model.url(), "ANTHROPIC_API_KEY": key})
        }
        Preset::Codex => {
            let dir = work.join("user-codex");
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(
                "model = \"gpt-bench\"\nmodel_provider = \"local\"\n\n[model_providers.local]\nname = \"scripted\"\nbase_url = \"{}/v1\"\nenv_key = \"GT_BENCH_KEY\"\nwire_api = \"responses\"\n",
                model.url()
            );
            std::fs::write(dir.join("config.toml"), config).unwrap();
            json!({"CODEX_HOME": dir, "GT_BENCH_KEY": "dummy"})
        }
        Preset::Custom => panic!("the benchmark drives the claude and codex presets"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, runs, rig, work] = &args[..] else {
        panic!("usage: agent_bench <claude|codex> <runs> <rig> <work-dir>");
    };
    let preset: Preset = serde_json::from_value(json!(preset)).expect("a preset");
    let runs: usize = runs.parse().expect("runs");
    let town = std::env::var("GT_TOWN").expect("GT_TOWN");
    let model = model::Model::start(Vec::new());
    let config = Path::new(&town).join(rig).join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["agent"] = json!(preset);
    c["agent_env"] = agent_env(preset, &model, Path::new(work));
    std::fs::write(&config, c.to_string()).unwrap();

    let (mut first, mut ready, mut nudge) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let issue: Value =
            serde_json::from_str(&gt(&["issue", "--rig", rig, "create", "bench", "--json"]))
                .unwrap();
        let issue = issue["id"].as_str().unwrap().to_string();
        let turns = model.turns().len();
        let t0 = Instant::now();
        // A new polecat each time: the whole cost, its clone included.
        let name = format!("Bench{i}");
        let spawned: Value = serde_json::from_str(&gt(&[
            "spawn", "--rig", rig, "--name", &name, "--issue", &issue, "--json",
        ]))
        .unwrap();
        let session = spawned["session"].as_str().unwrap().to_string();
        let address = spawned["address"].as_str().unwrap().to_string();
        let opened = gastown::town::Town::open(Path::new(&town)).unwrap();
        let home = opened.home(&address.parse().unwrap()).unwrap();
        let owner = gastown::session::Owner::of(&opened, &home);
        until("first request", || model.turns().len() > turns);
        first.push(ms(t0.elapsed()));
        until("ready", || {
            let lines = gastown::session::capture_styled(&owner, &session).unwrap_or_default();
            preset.first_prompt_taken(&lines)
                && matches!(preset.screen(&lines), Screen::Ready { input } if input.is_empty())
        });
        ready.push(ms(t0.elapsed()));

        let line = format!("bench nudge {i}");
        let at = SystemTime::now();
        gt(&["inject", &address, &line]);
        let req = model
            .try_wait_turn(turns + 2, WAIT)
            .expect("the nudge at the model");
        assert_eq!(req.mentions(&line), 1, "{:?}", req.texts());
        nudge.push(ms(req.at.duration_since(at).unwrap()));
        gt(&["kill", &address]);
    }
    println!(
        "{}",
        json!({"preset": preset, "first_request_ms": first, "ready_ms": ready, "nudge_ms": nudge})
    );
}
