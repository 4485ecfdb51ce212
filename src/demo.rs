//! `gt demo`: a throwaway town, a real git rig, and stand-in agents working an
//! epic wave by wave: spawn -> mail -> done -> witness check -> land.
//!
//! Every step runs the real `gt` commands as child processes and prints them
//! with their output, so the demo doubles as a transcript of how a person or an
//! agent drives the town by hand. The agents are a shell script standing in for
//! an AI coding agent (a test double, named as such).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Kind, Result};
use crate::{fsio, git, session};

/// The stand-in agent: what a real agent does in a session, with only `gt`,
/// git and plain files.
const STAND_IN_AGENT: &str = r#"#!/bin/sh
# stand-in-agent.sh: a TEST DOUBLE standing in for an AI coding agent.
# A real agent (claude, codex, ...) gets the same environment: GT_TOWN, GT_RIG,
# GT_ROLE, GT_ADDRESS, GT_ISSUE, GT_GENERATION, BEADS_DIR, and runs in its clone
# on its branch.
set -eu
gt inbox                                   # read my mail (the seed's `gt inbox`)
gt issue show "$GT_ISSUE"                  # read my issue
mkdir -p greetings
printf 'Hello from %s, who did %s\n' "$GT_ADDRESS" "$GT_ISSUE" > "greetings/$GT_ISSUE.txt"
git add greetings
git -c user.name="$GT_ADDRESS" -c user.email=agent@gastown.invalid commit -q -m "$GT_ISSUE: add a greeting"
# Leave the clone clean, then tell the Witness: the seed's "done signal".
gt send "$GT_RIG/witness" --type done --generation "$GT_GENERATION" -s "done: $GT_ISSUE" \
    -m "committed $(git rev-parse --short HEAD) on $(git branch --show-current)"
"#;

/// The project's test, run by `gt land` before pushing.
const PROJECT_TEST: &str = "#!/bin/sh\n# Every greeting must say something.\n[ -d greetings ] || exit 0\nfor f in greetings/*.txt; do [ -s \"$f\" ] || { echo \"empty: $f\"; exit 1; }; done\necho \"ok: $(ls greetings | wc -l) greeting(s)\"\n";

pub struct Demo {
    dir: PathBuf,
    town: PathBuf,
    gt: PathBuf,
    out: Box<dyn Write>,
}

/// Run the demo in `dir` (created; must be empty or missing), printing to `out`.
/// Returns the town's path.
pub fn run(dir: &Path, out: Box<dyn Write>) -> Result<PathBuf> {
    let gt = std::env::current_exe().map_err(|e| Error::io(Path::new("gt"), e))?;
    fsio::ensure_dir(dir)?;
    if std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .next()
        .is_some()
    {
        return Err(Error::conflict(format!(
            "{}: not empty; gt demo needs a new directory",
            dir.display()
        )));
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let mut demo = Demo {
        town: dir.join("town"),
        dir,
        gt,
        out,
    };
    demo.all()?;
    Ok(demo.town)
}

impl Demo {
    fn say(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}").map_err(|e| Error::io(Path::new("<stdout>"), e))
    }

    /// Run `gt <args>` as a user would, print it and its output; fail on a non-zero exit.
    fn gt(&mut self, args: &[&str]) -> Result<String> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| shell_word(&a.replace(&self.dir.display().to_string(), "$DEMO")))
            .collect();
        self.say(&format!("$ gt {}", shown.join(" ")))?;
        let output = self
            .command(args)
            .output()
            .map_err(|e| Error::io(&self.gt, e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        for line in text.lines() {
            self.say(&format!("    {line}"))?;
        }
        if !output.status.success() {
            return Err(Error::new(
                Kind::Io,
                format!(
                    "demo step `gt {}` failed ({})",
                    args.join(" "),
                    output.status
                ),
            ));
        }
        Ok(stdout)
    }

    /// Run `gt <args> --json` without printing; parse its output.
    fn gt_json(&mut self, args: &[&str]) -> Result<Value> {
        let output = self
            .command(args)
            .arg("--json")
            .output()
            .map_err(|e| Error::io(&self.gt, e))?;
        if !output.status.success() {
            return Err(Error::new(
                Kind::Io,
                format!(
                    "`gt {} --json`: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| Error::invalid(format!("`gt {} --json`: {e}", args.join(" "))))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.gt);
        cmd.args(args)
            .env("GT_TOWN", &self.town)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd.env_remove("GT_ADDRESS").env_remove("GT_RIG");
        cmd
    }

    fn all(&mut self) -> Result<()> {
        self.say(&format!("gastown demo in {} ($DEMO)\n", self.dir.display()))?;
        self.say("== 1. A town, and a rig from a real git repository with a test")?;
        let origin = self.make_origin()?;
        let town = self.town.display().to_string();
        self.gt(&["install", &town])?;
        self.gt(&["rig", "add", "demo", &origin.display().to_string()])?;
        let agent = self.dir.join("stand-in-agent.sh");
        std::fs::write(&agent, STAND_IN_AGENT).map_err(|e| Error::io(&agent, e))?;
        let config = self.town.join("demo/config.json");
        fsio::update_json(
            &config,
            || Err(Error::not_found("demo/config.json")),
            |c: &mut Value| {
                c["test_command"] = "sh test.sh".into();
                c["agent_command"] = format!("sh {}", agent.display()).into();
                c["max_workers"] = 2.into();
                c["worker_spawn_delay"] = "1s".into();
                Ok(())
            },
        )?;
        self.say("    (set test_command, agent_command = $DEMO/stand-in-agent.sh and max_workers = 2, worker_spawn_delay = 1s in demo/config.json)\n")?;

        self.say("== 2. The Mayor files an epic: A and B can start now, C needs both")?;
        let epic = self.create(&["Greet the world", "--type", "epic"])?;
        let a = self.create(&["Greet in English", "--parent", &epic])?;
        let b = self.create(&["Greet in Spanish", "--parent", &epic])?;
        let c = self.create(&["Greet in both at once", "--parent", &epic])?;
        self.gt(&["issue", "--rig", "demo", "dep", "add", &c, &a])?;
        self.gt(&["issue", "--rig", "demo", "dep", "add", &c, &b])?;
        self.gt(&["waves", "demo", &epic])?;

        for wave in 1.. {
            let ready = self.gt_json(&["issue", "--rig", "demo", "ready", "--parent", &epic])?;
            if ready.as_array().is_none_or(|r| r.is_empty()) {
                break;
            }
            self.say(&format!(
                "\n== {}. Wave {wave}: the Witness dispatches the ready work",
                wave + 2
            ))?;
            self.gt(&["ready", "demo", "--parent", &epic])?;
            self.gt(&["witness", "patrol", "demo", "--epic", &epic])?;
            self.say("\n-- the stand-in agents work in their clones, commit, and mail the Witness `done`")?;
            self.wait_for_workers()?;
            self.gt(&["inbox", "--as", "demo/witness"])?;
            self.say("\n-- the Witness checks each finished clone and submits clean work to the merge queue")?;
            self.gt(&["witness", "patrol", "demo", "--epic", &epic])?;
            self.gt(&["merge-queue", "list", "demo"])?;
            self.say("\n-- the Refinery merges each entry into main, runs the tests, pushes, closes the issue")?;
            self.gt(&["refinery", "process", "demo", "--once"])?;
        }
        self.say("\n== The Witness sees the epic done and tells the Mayor")?;
        self.gt(&["witness", "patrol", "demo", "--epic", &epic])?;
        self.say("\n== The epic's work is all on main")?;
        self.gt(&[
            "issue",
            "--rig",
            "demo",
            "close",
            &epic,
            "--reason",
            "all children landed",
        ])?;
        self.gt(&["issue", "--rig", "demo", "list", "--all"])?;
        let log = git::run(Some(&origin), &["log", "--oneline", "--graph", "main"])?;
        self.say("$ git -C $DEMO/origin.git log --oneline --graph main")?;
        for line in log.lines() {
            self.say(&format!("    {line}"))?;
        }
        self.gt(&["inbox", "--as", "mayor"])?;
        self.gt(&["status"])?;
        self.say(&format!(
            "\nThe town is yours to inspect: cd {}; ls; cat demo/polecats/*/state.json; cat mayor/mail/inbox.jsonl",
            self.town.display()
        ))
    }

    /// Wait for every working polecat's session to end (pidfd, no polling).
    fn wait_for_workers(&mut self) -> Result<()> {
        let polecats = self.gt_json(&["polecats", "demo"])?;
        for p in polecats.as_array().into_iter().flatten() {
            let (Some(addr), Some(id)) = (p["address"].as_str(), p["session"].as_str()) else {
                continue;
            };
            if !session::wait(id, Duration::from_secs(120)) {
                return Err(Error::new(
                    Kind::Io,
                    format!("{addr} did not finish in 120 s; see its session.log"),
                ));
            }
        }
        Ok(())
    }

    /// `gt issue create` in the demo rig; returns the new id.
    fn create(&mut self, args: &[&str]) -> Result<String> {
        let mut full = vec!["issue", "--rig", "demo", "create"];
        full.extend_from_slice(args);
        let issue = self.gt_json(&full)?;
        let id = issue["id"]
            .as_str()
            .ok_or_else(|| Error::invalid("gt issue create --json printed no id"))?
            .to_string();
        let shown: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
        self.say(&format!(
            "$ gt issue --rig demo create {}\n    created {id}",
            shown.join(" ")
        ))?;
        Ok(id)
    }

    /// A bare `origin.git` whose main has a README and the project's test.
    fn make_origin(&mut self) -> Result<PathBuf> {
        let origin = self.dir.join("origin.git");
        let seed = self.dir.join("seed");
        let (o, s) = (origin.display().to_string(), seed.display().to_string());
        git::run(Some(&self.dir), &["init", "-q", "--bare", "-b", "main", &o])?;
        git::run(Some(&self.dir), &["init", "-q", "-b", "main", &s])?;
        for (name, body) in [
            ("README", "A project worked on by gastown polecats.\n"),
            ("test.sh", PROJECT_TEST),
        ] {
            std::fs::write(seed.join(name), body).map_err(|e| Error::io(&seed.join(name), e))?;
        }
        git::run(Some(&seed), &["add", "README", "test.sh"])?;
        git::run(
            Some(&seed),
            &[
                "-c",
                "user.name=overseer",
                "-c",
                "user.email=overseer@gastown.invalid",
                "commit",
                "-q",
                "-m",
                "initial",
            ],
        )?;
        git::run(Some(&seed), &["push", "-q", &o, "main"])?;
        std::fs::remove_dir_all(&seed).map_err(|e| Error::io(&seed, e))?;
        self.say("    (made $DEMO/origin.git: README and test.sh on main)")?;
        Ok(origin)
    }
}

/// Quote a word for display the way a shell would need it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:$@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
