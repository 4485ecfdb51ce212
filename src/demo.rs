//! `gt demo`: a throwaway town, a real git rig, and stand-in agents working an
//! epic wave by wave: spawn -> mail -> done -> witness check -> land; then the
//! seed's other flows, one each: a conflict sent back and reworked by the same
//! polecat, a merge-oracle plugin's `hold` then `proceed`, a handoff to a fresh
//! session, a `gt land --direct`.
//!
//! Every step runs the real `gt` commands as child processes and prints them
//! with their output, so the demo doubles as a transcript of how a person or an
//! agent drives the town by hand. The agents are shell scripts standing in for
//! an AI coding agent (test doubles, named as such). Each flow is then checked
//! from the files it left (mail, read marks, `state.json`, the queue, origin's
//! main): a step that did not happen fails the demo, naming the step.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::address::Address;
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

/// The stand-in agent whose context "fills up" halfway: its first session
/// mails its next one a handoff note and asks for a fresh session; the next
/// finds the note, reads it and finishes.
const STAND_IN_HANDOFF_AGENT: &str = r#"#!/bin/sh
# stand-in-handoff-agent.sh: a TEST DOUBLE standing in for an AI coding agent
# that hands its work over to its next session half way through.
set -eu
note=$(gt inbox --json | grep '"type":"handoff"' | head -n 1 || true)
if [ -z "$note" ]; then
    # First session: half the work, a note to the next session, and a cycle
    # request (requesting_cycle in state.json); the daemon starts the next one.
    mkdir -p greetings
    printf 'Bonjour from %s,\n' "$GT_ADDRESS" > "greetings/$GT_ISSUE.txt"
    gt mail handoff --cycle -s "greeting half written" \
        -m "greetings/$GT_ISSUE.txt has its first line; add the second, commit, report done"
    exit 0
fi
# Next session: read the note (gt mail read marks it read), then finish.
id=${note#'{"id":"'}; id=${id%%'"'*}
gt mail read "$id"
printf 'who did %s in two sessions\n' "$GT_ISSUE" >> "greetings/$GT_ISSUE.txt"
git add greetings
git -c user.name="$GT_ADDRESS" -c user.email=agent@gastown.invalid commit -q -m "$GT_ISSUE: add a greeting, over a handoff"
gt send "$GT_RIG/witness" --type done --generation "$GT_GENERATION" -s "done: $GT_ISSUE" \
    -m "committed $(git rev-parse --short HEAD) on $(git branch --show-current)"
"#;

/// The stand-in agent of two polecats told to write the same line: the
/// Refinery lands one, and the other's next session, sent back by the
/// Witness, rebases onto main and keeps both lines.
const STAND_IN_MOTTO_AGENT: &str = r#"#!/bin/sh
# stand-in-motto-agent.sh: a TEST DOUBLE standing in for an AI coding agent
# whose issue is "write the project's motto" (the first line of MOTTO).
set -eu
gt inbox
me="$GT_ADDRESS"; line="Many hands, one main (the motto as $me wrote it for $GT_ISSUE)"
failed=$(gt inbox --json | grep '"type":"merge_failed"' | head -n 1 || true)
if [ -z "$failed" ]; then
    printf '%s\n' "$line" > MOTTO
    git add MOTTO
    git -c user.name="$me" -c user.email=agent@gastown.invalid commit -q -m "$GT_ISSUE: write the motto"
else
    # Sent back: the Refinery could not merge my branch (the mail says why).
    # Rework: rebase onto origin's main and resolve by keeping both lines.
    id=${failed#'{"id":"'}; id=${id%%'"'*}
    gt mail ack "$id"
    git fetch -q origin
    if ! git -c user.name="$me" -c user.email=agent@gastown.invalid rebase -q origin/main >/dev/null 2>&1; then
        { git show origin/main:MOTTO; printf '%s\n' "$line"; } > MOTTO
        git add MOTTO
        GIT_EDITOR=true git -c user.name="$me" -c user.email=agent@gastown.invalid rebase --continue >/dev/null
    fi
fi
gt send "$GT_RIG/witness" --type done --generation "$GT_GENERATION" -s "done: $GT_ISSUE" \
    -m "committed $(git rev-parse --short HEAD) on $(git branch --show-current)"
"#;

/// The stand-in merge-oracle: the Refinery mails it a `consult` before it
/// merges an entry; it holds the first entry it is asked about and lets it
/// through when asked again.
const STAND_IN_MERGE_ORACLE: &str = r#"#!/bin/sh
# stand-in-merge-oracle.sh: a TEST DOUBLE standing in for the AI agent of a
# merge-oracle plugin (protocol/plugins.md). It answers two requests, then exits.
set -eu
mkfifo requests
gt mail watch > requests &                 # each new message, one JSON line
n=0
while [ "$n" -lt 2 ] && IFS= read -r req; do
    case $req in *'"type":"consult"'*) ;; *) continue ;; esac
    id=${req#'{"id":"'}; id=${id%%'"'*}
    from=${req#*'"from":"'}; from=${from%%'"'*}
    entry=${req#*'"entry":"'}; entry=${entry%%'"'*}
    n=$((n + 1))
    if [ "$n" = 1 ]; then
        verdict=hold reason="the overseer wants a look first"
    else
        verdict=proceed reason="looked at; go ahead"
    fi
    gt send "$from" --verdict "$verdict" --reply-to "$id" --reason "$reason" > /dev/null
    gt mail ack "$id" > /dev/null          # the request is dealt with
    echo "$verdict $entry ($id): $reason"
done < requests
kill $!
rm requests
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
        let agent = self.script("stand-in-agent.sh", STAND_IN_AGENT)?;
        self.configure(|c| {
            c["test_command"] = "sh test.sh".into();
            c["agent_command"] = format!("sh {}", agent.display()).into();
            c["max_workers"] = 2.into();
            c["worker_spawn_delay"] = "1s".into();
        })?;
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
        self.gt(&[
            "issue",
            "--rig",
            "demo",
            "close",
            &epic,
            "--reason",
            "all children landed",
        ])?;

        self.step("conflict sent back and reworked", |d| d.rework(&agent))?;
        self.step("plugin verdict", |d| d.plugin_verdict())?;
        // Last, so the town keeps this polecat's state.json as the cycle left it.
        let worker = self.step("handoff", |d| d.handoff())?;
        self.step("land --direct", |d| d.land_direct(&worker))?;

        self.say("\n== All the work is on main")?;
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

    /// Run the demo's step `name`; its failure says which step it was.
    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        f(self).map_err(|e| e.context(format!("demo step \"{name}\" did not happen")))
    }

    /// Print that `what` is so, as the files show, or fail saying what was found.
    fn check(&mut self, what: &str, ok: bool, found: impl std::fmt::Debug) -> Result<()> {
        if !ok {
            return Err(Error::new(
                Kind::Io,
                format!("{what}: not so; found {found:?}"),
            ));
        }
        self.say(&format!("    checked: {what}"))
    }

    /// Write stand-in script `name` into $DEMO.
    fn script(&mut self, name: &str, body: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// The polecat working on `issue`: its address and session.
    fn worker(&mut self, issue: &str) -> Result<(String, String)> {
        let polecats = self.gt_json(&["polecats", "demo"])?;
        polecats
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["issue"] == issue)
            .and_then(|p| Some((p["address"].as_str()?.into(), p["session"].as_str()?.into())))
            .ok_or_else(|| Error::not_found(format!("no polecat of rig demo is on {issue}")))
    }

    /// The home directory of agent `address`.
    fn home(&self, address: &str) -> Result<PathBuf> {
        Ok(self.town.join(address.parse::<Address>()?.rel_path()))
    }

    /// Wait for session `id` of `who` to end (pidfd, no polling).
    fn wait_session(&mut self, who: &str, id: &str) -> Result<()> {
        if session::wait(id, Duration::from_secs(120)) {
            return Ok(());
        }
        Err(Error::new(
            Kind::Io,
            format!("{who} did not finish in 120 s; see its session.log"),
        ))
    }

    /// A polecat's session hands over to the next: it mails itself a note,
    /// sets `requesting_cycle` and exits; the daemon starts the next session,
    /// which reads the note. Returns the polecat's address.
    fn handoff(&mut self) -> Result<String> {
        self.say("\n== A handoff: a polecat's first session leaves a note to its next one")?;
        let agent = self.script("stand-in-handoff-agent.sh", STAND_IN_HANDOFF_AGENT)?;
        let issue = self.create(&["Greet in French"])?;
        let agent = format!("sh {}", agent.display());
        self.gt(&["spawn", "--issue", &issue, "--agent", &agent])?;
        let (worker, first) = self.worker(&issue)?;
        self.say("\n-- its first session writes half a greeting, runs `gt mail handoff --cycle` and exits")?;
        self.wait_session(&worker, &first)?;
        let home = self.home(&worker)?;
        let state = read_json(&home.join("state.json"))?;
        self.check(
            &format!("{worker}'s state.json has requesting_cycle: true"),
            state["requesting_cycle"] == true,
            &state["requesting_cycle"],
        )?;
        let generation = state["generation"].as_u64().unwrap_or_default();
        self.say("\n-- the daemon's pass sees the ended session that asked for a cycle and starts the next")?;
        self.gt(&["daemon", "tick"])?;
        let (_, next) = self.worker(&issue)?;
        self.say(
            "\n-- the next session finds the note in its inbox, reads it, finishes and commits",
        )?;
        self.wait_session(&worker, &next)?;
        self.gt(&["inbox", "--as", &worker, "--all"])?;

        let inbox = read_jsonl(&home.join("mail/inbox.jsonl"))?;
        let note = inbox
            .iter()
            .find(|m| m["type"] == "handoff" && m["from"] == worker.as_str())
            .cloned()
            .unwrap_or_default();
        let id = note["id"].as_str().unwrap_or_default().to_string();
        self.check(
            &format!("{worker}'s inbox.jsonl has its handoff note to itself, from generation {generation}"),
            note["to"] == worker.as_str()
                && note["subject"] == "HANDOFF: greeting half written"
                && note["generation"] == generation,
            &note,
        )?;
        let marks = crate::mail::reader::load_marks(&home.join("mail/read.jsonl"))?;
        self.check(
            &format!("{id} is marked read in {worker}'s mail/read.jsonl"),
            marks.get(&id).map(String::as_str) == Some("read"),
            marks.get(&id),
        )?;
        let state = read_json(&home.join("state.json"))?;
        self.check(
            &format!(
                "{worker}'s state.json: generation {}, requesting_cycle false, the same command",
                generation + 1
            ),
            state["generation"] == generation + 1
                && state["requesting_cycle"] == false
                && state["command"] == agent.as_str(),
            &state,
        )?;
        Ok(worker)
    }

    /// The overseer lands `worker`'s branch on main, bypassing the queue.
    fn land_direct(&mut self, worker: &str) -> Result<()> {
        self.say(&format!(
            "\n== The overseer lands {worker}'s work directly: merge, test, push, close, bypassing the queue"
        ))?;
        let issue = read_json(&self.home(worker)?.join("state.json"))?["issue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.gt(&["land", "--direct", worker])?;
        self.gt(&["witness", "patrol", "demo"])?;
        let origin = self.dir.join("origin.git");
        let subjects = git::run(Some(&origin), &["log", "--format=%s", "main"])?;
        let subject = format!("{issue}: add a greeting, over a handoff");
        self.check(
            &format!("origin's main has the commit \"{subject}\""),
            subjects.lines().any(|l| l == subject),
            subjects.lines().take(3).collect::<Vec<_>>(),
        )?;
        let file = format!("main:greetings/{issue}.txt");
        let greeting = git::run(Some(&origin), &["show", &file])?;
        let want = format!("Bonjour from {worker},\nwho did {issue} in two sessions\n");
        self.check(
            &format!("origin's {file} has both sessions' lines"),
            greeting == want,
            &greeting,
        )?;
        let witness = read_jsonl(&self.town.join("demo/witness/mail/inbox.jsonl"))?;
        let landed = witness
            .iter()
            .any(|m| m["type"] == "landed" && m["polecat"] == worker);
        self.check(
            "demo/witness got the landing's `landed` mail",
            landed,
            witness.last(),
        )?;
        let state = read_json(&self.home(worker)?.join("state.json"))?;
        self.check(
            &format!("the Witness freed {worker} (state.json status idle)"),
            state["status"] == "idle",
            &state["status"],
        )
    }

    /// Edit the demo rig's config.json.
    fn configure(&mut self, edit: impl FnOnce(&mut Value)) -> Result<()> {
        fsio::update_json(
            &self.town.join("demo/config.json"),
            || Err(Error::not_found("demo/config.json")),
            |c: &mut Value| {
                edit(c);
                Ok(())
            },
        )
    }

    /// The entries in `demo/refinery/queue/<state>/`, in queue order.
    fn queue(&self, state: &str) -> Result<Vec<Value>> {
        let dir = self.town.join("demo/refinery/queue").join(state);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| read_json(p)).collect()
    }

    /// Two polecats write the same line; the Refinery merges one and fails
    /// the other, the Witness sends it back, and its next session rebases,
    /// keeps both lines, and lands. `agent` is the rig's usual agent command,
    /// put back at the end.
    fn rework(&mut self, agent: &Path) -> Result<()> {
        self.say("\n== A conflict: two polecats write the same line of MOTTO at once")?;
        let motto = self.script("stand-in-motto-agent.sh", STAND_IN_MOTTO_AGENT)?;
        self.configure(|c| c["agent_command"] = format!("sh {}", motto.display()).into())?;
        self.say("    (set agent_command = $DEMO/stand-in-motto-agent.sh in demo/config.json: the Witness restarts a sent-back polecat with it)")?;
        let issues = [
            self.create(&["Write the motto"])?,
            self.create(&["Write the motto, too"])?,
        ];
        for issue in &issues {
            self.gt(&["spawn", "--issue", issue])?;
        }
        self.wait_for_workers()?;
        self.gt(&["witness", "patrol", "demo"])?;
        self.say("\n-- the Refinery merges the first; the second conflicts, goes to failed/, and its polecat is told")?;
        self.gt(&["refinery", "process", "demo", "--once"])?;
        self.say("\n-- the Witness frees the first polecat and sends the second back to work on the same issue")?;
        self.gt(&["witness", "patrol", "demo"])?;
        self.say("\n-- its next session reads why, rebases onto main keeping both lines, and reports done again")?;
        self.wait_for_workers()?;
        self.gt(&["witness", "patrol", "demo"])?;
        self.gt(&["refinery", "process", "demo", "--once"])?;
        self.gt(&["witness", "patrol", "demo"])?;
        self.configure(|c| c["agent_command"] = format!("sh {}", agent.display()).into())?;
        self.say("    (set agent_command back to $DEMO/stand-in-agent.sh)")?;

        let failed = self.queue("failed")?;
        self.check(
            "one entry in demo/refinery/queue/failed/, conflicting in MOTTO",
            failed.len() == 1 && failed[0]["conflicts"] == serde_json::json!(["MOTTO"]),
            &failed,
        )?;
        let (back, generation) = (
            failed[0]["polecat"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            failed[0]["generation"].as_u64().unwrap_or_default(),
        );
        let other = issues.iter().find(|i| failed[0]["issue"] != i.as_str());
        let merged = self.queue("merged")?;
        let landed = merged
            .iter()
            .find(|m| other.is_some_and(|i| m["issue"] == i.as_str()));
        let reworked = merged
            .iter()
            .find(|m| m["polecat"] == back.as_str() && m["generation"] == generation + 1);
        self.check(
            &format!(
                "{back}'s reworked entry (generation {}) is in merged/, and so is the other polecat's",
                generation + 1
            ),
            landed.is_some() && reworked.is_some_and(|r| r["issue"] == failed[0]["issue"]),
            &merged,
        )?;
        let (landed, reworked) = (
            landed.cloned().unwrap_or_default(),
            reworked.cloned().unwrap_or_default(),
        );
        let line = |m: &Value| {
            format!(
                "Many hands, one main (the motto as {} wrote it for {})\n",
                m["polecat"].as_str().unwrap_or_default(),
                m["issue"].as_str().unwrap_or_default()
            )
        };
        let want = format!("{}{}", line(&landed), line(&reworked));
        let origin = self.dir.join("origin.git");
        let found = git::run(Some(&origin), &["show", "main:MOTTO"])?;
        self.check(
            "origin's main:MOTTO has both lines, the reworked one second",
            found == want,
            &found,
        )
    }

    /// A merge-oracle plugin holds an entry, which stays in `pending/` with
    /// its hold shown, then lets it through on the Refinery's next pass.
    fn plugin_verdict(&mut self) -> Result<()> {
        self.say(
            "\n== A plugin: the Refinery consults demo/plugins/merge-oracle before each merge",
        )?;
        let script = self.script("stand-in-merge-oracle.sh", STAND_IN_MERGE_ORACLE)?;
        self.gt(&["plugin", "add", "demo", "merge-oracle"])?;
        self.configure(|c| c["plugins"] = serde_json::json!({"timeout": "20s"}))?;
        self.say("    (set plugins.timeout = 20s in demo/config.json: the longest the Refinery waits for a verdict)")?;
        let oracle = "demo/plugins/merge-oracle";
        let log = self.dir.join("merge-oracle.log");
        self.say(&format!(
            "$ (cd $DEMO/town/{oracle} && GT_ADDRESS={oracle} sh $DEMO/stand-in-merge-oracle.sh > $DEMO/merge-oracle.log) &"
        ))?;
        let running = Beside::start(&self.town, oracle, &script, &log)?;
        let issue = self.create(&["Greet in German"])?;
        self.gt(&["spawn", "--issue", &issue])?;
        self.wait_for_workers()?;
        self.gt(&["witness", "patrol", "demo"])?;
        self.say(
            "\n-- the oracle says hold: the entry stays in pending/ with the hold recorded in it",
        )?;
        self.gt(&["refinery", "process", "demo", "--once"])?;
        self.gt(&["merge-queue", "list", "demo"])?;
        let pending = self.queue("pending")?;
        let entry = pending.first().cloned().unwrap_or_default();
        let id = entry["id"].as_str().unwrap_or_default().to_string();
        let hold = &entry["hold"];
        self.check(
            &format!(
                "pending/{id}.json holds it: {oracle} says \"the overseer wants a look first\""
            ),
            pending.len() == 1
                && entry["issue"] == issue.as_str()
                && hold["verdict"] == "hold"
                && hold["by"] == oracle
                && hold["reason"] == "the overseer wants a look first",
            &pending,
        )?;
        self.say(
            "\n-- asked again on the Refinery's next pass, it says proceed, and the entry lands",
        )?;
        self.gt(&["refinery", "process", "demo", "--once"])?;
        if !running.wait(Duration::from_secs(30)) {
            return Err(Error::new(
                Kind::Io,
                format!("the stand-in {oracle} did not exit in 30 s; see $DEMO/merge-oracle.log"),
            ));
        }
        self.say("$ cat $DEMO/merge-oracle.log")?;
        let said = std::fs::read_to_string(&log).map_err(|e| Error::io(&log, e))?;
        for line in said.lines() {
            self.say(&format!("    {line}"))?;
        }
        self.gt(&["witness", "patrol", "demo"])?;
        let home = self.home(oracle)?;

        let merged = self.queue("merged")?;
        let done = merged.iter().find(|m| m["id"] == id.as_str());
        self.check(
            &format!("merged/{id}.json is there, its hold cleared"),
            done.is_some_and(|m| m["merged_sha"].is_string() && m["hold"].is_null()),
            done,
        )?;
        let asked: Vec<Value> = read_jsonl(&home.join("mail/inbox.jsonl"))?
            .into_iter()
            .filter(|m| m["type"] == "consult" && m["entry"] == id.as_str())
            .collect();
        let refinery = self.home("demo/refinery")?;
        let replies: Vec<Value> = read_jsonl(&refinery.join("mail/inbox.jsonl"))?
            .into_iter()
            .filter(|m| m["type"] == "verdict" && m["from"] == oracle)
            .collect();
        let found: Vec<(Value, Value)> = replies
            .iter()
            .map(|m| (m["reply_to"].clone(), m["verdict"].clone()))
            .collect();
        let want: Vec<(Value, Value)> = asked
            .iter()
            .zip(["hold", "proceed"])
            .map(|(m, v)| (m["id"].clone(), v.into()))
            .collect();
        self.check(
            &format!("{oracle} was asked twice about {id} and replied hold, then proceed"),
            asked.len() == 2 && found == want,
            &found,
        )?;
        let marks = crate::mail::reader::load_marks(&refinery.join("mail/read.jsonl"))?;
        let unread: Vec<&Value> = replies
            .iter()
            .map(|m| &m["id"])
            .filter(|id| !id.as_str().is_some_and(|id| marks.contains_key(id)))
            .collect();
        self.check(
            "the Refinery marked both verdicts read in its mail/read.jsonl",
            unread.is_empty(),
            &unread,
        )?;
        // Its stand-in has exited: a merge in the town the demo leaves would
        // wait out the timeout for a verdict that never comes.
        self.configure(|c| c["plugins"]["before_merge"] = false.into())?;
        self.say("    (set plugins.before_merge = false in demo/config.json: the stand-in oracle has exited, so later merges do not wait for it)")
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

/// A stand-in run beside the demo as a plain process (the merge-oracle):
/// its process group is ended if the demo stops before it does.
struct Beside(std::process::Child);

impl Beside {
    /// Run `sh script` as agent `address` in its home, output to `log`.
    fn start(town: &Path, address: &str, script: &Path, log: &Path) -> Result<Beside> {
        use std::os::unix::process::CommandExt;
        let town = crate::town::Town::open(town)?;
        let home = town.home(&address.parse()?)?;
        let out = std::fs::File::create(log).map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        Command::new("sh")
            .arg(script)
            .envs(session::agent_env(&town, &home))
            .current_dir(&home.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map(Beside)
            .map_err(|e| Error::io(Path::new("sh"), e))
    }

    /// Whether it exited within `timeout` (pidfd, no polling).
    fn wait(&self, timeout: Duration) -> bool {
        session::wait_exit(self.0.id(), timeout)
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_whose_check_fails_is_named_in_the_error() {
        let mut demo = Demo {
            dir: PathBuf::from("/nonexistent"),
            town: PathBuf::from("/nonexistent/town"),
            gt: PathBuf::from("gt"),
            out: Box::new(std::io::sink()),
        };
        let err = demo
            .step("handoff", |d| {
                d.check("the note is read", false, Some("unread"))
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "demo step \"handoff\" did not happen: the note is read: not so; found Some(\"unread\")"
        );
        assert_ne!(crate::cli::exit_code(&err), 0);
    }
}
