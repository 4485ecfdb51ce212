//! The rig's tracker: the native JSONL store, ready work on a real beads export,
//! epics and waves, claims raced by real processes, and the `bd` CLI backend
//! driven through a test double.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::TestEnv;

/// A town with rig `proj` (beads prefix `pr`) whose tracker is the native store.
struct Rig {
    env: TestEnv,
    path: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let env = TestEnv::new();
        let origin = env.bare_origin("proj-origin");
        let out = env
            .cmd("gt")
            .env("GT_BEADS_CLI", "native")
            .args([
                "rig",
                "add",
                "proj",
                origin.to_str().unwrap(),
                "--prefix",
                "pr",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = std::fs::canonicalize(env.town.join("proj")).unwrap();
        Rig { env, path }
    }

    fn jsonl(&self) -> PathBuf {
        self.path.join(".beads/issues.jsonl")
    }

    /// `gt-issue` with the native backend forced (a `bd` on the machine must not
    /// leak into these tests).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd("gt-issue");
        c.env("GT_BEADS_CLI", "native").args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gt-issue {args:?}: exit {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Add a second rig, `other`, with the native store.
    fn add_other(&self) {
        let origin = self.env.bare_origin("other-origin");
        crate::common::ok_output(self.env.cmd("gt").env("GT_BEADS_CLI", "native").args([
            "rig",
            "add",
            "other",
            origin.to_str().unwrap(),
        ]));
    }

    /// Create an issue; returns its id.
    fn create(&self, args: &[&str]) -> String {
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        self.json(&a)["id"].as_str().unwrap().to_string()
    }

    /// Fails with `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "gt-issue {args:?}: stdout {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/beads/beads-v0.44.0-issues.jsonl")
}

/// `bd ready` recomputed straight from the JSON values, independently of the
/// library: blocked = a `blocks` edge to an active issue, or (to a fixed point)
/// a `parent-child` edge to a blocked parent.
fn expected_ready(records: &[Value], parent: Option<&str>) -> BTreeSet<String> {
    let issues: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("_type").is_none_or(|t| t == "issue"))
        .collect();
    let status: HashMap<&str, &str> = issues
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    let edges = |i: &Value, kind: &str| -> Vec<String> {
        i.get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d["type"] == kind)
            .map(|d| d["depends_on_id"].as_str().unwrap().to_string())
            .collect()
    };
    let active = ["open", "in_progress", "blocked", "deferred", "hooked"];
    let mut blocked: HashSet<String> = issues
        .iter()
        .filter(|i| {
            edges(i, "blocks")
                .iter()
                .any(|b| status.get(b.as_str()).is_some_and(|s| active.contains(s)))
        })
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    loop {
        let more: Vec<String> = issues
            .iter()
            .filter(|i| !blocked.contains(i["id"].as_str().unwrap()))
            .filter(|i| edges(i, "parent-child").iter().any(|p| blocked.contains(p)))
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        if more.is_empty() {
            break;
        }
        blocked.extend(more);
    }
    let mut under: Option<HashSet<String>> = parent.map(|p| HashSet::from([p.to_string()]));
    if let Some(set) = under.as_mut() {
        loop {
            let before = set.len();
            for i in &issues {
                if edges(i, "parent-child").iter().any(|p| set.contains(p)) {
                    set.insert(i["id"].as_str().unwrap().to_string());
                }
            }
            if set.len() == before {
                break;
            }
        }
        set.remove(parent.unwrap());
    }
    let internal = [
        "message",
        "agent",
        "role",
        "rig",
        "merge-request",
        "gate",
        "molecule",
    ];
    issues
        .iter()
        .filter(|i| i["status"] == "open")
        .filter(|i| !internal.contains(&i["issue_type"].as_str().unwrap()))
        .filter(|i| i.get("pinned") != Some(&Value::Bool(true)))
        .filter(|i| i.get("ephemeral") != Some(&Value::Bool(true)))
        .filter(|i| i.get("defer_until").is_none())
        .map(|i| i["id"].as_str().unwrap().to_string())
        .filter(|id| !blocked.contains(id))
        .filter(|id| under.as_ref().is_none_or(|u| u.contains(id)))
        .collect()
}

#[test]
fn real_beads_export_loads_and_ready_follows_the_rules() {
    let rig = Rig::new();
    std::fs::copy(fixture(), rig.jsonl()).unwrap();
    let before = std::fs::read(rig.jsonl()).unwrap();
    let records: Vec<Value> = before
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(records.len(), 980);

    let out = rig.run(&["list", "--all", "--json"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no line is reported bad"
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let live = records
        .iter()
        .filter(|r| r["status"] != "tombstone")
        .count();
    assert_eq!(listed.as_array().unwrap().len(), live);
    assert!(live < 980, "the fixture has tombstones");
    // Integer comment ids load and come back out.
    let with_comments = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "bd-6df0")
        .unwrap();
    assert_eq!(with_comments["comments"][0]["id"], 1);

    let ready = rig.json(&["ready", "proj"]);
    let got: BTreeSet<String> = ids(&ready).into_iter().collect();
    let want = expected_ready(&records, None);
    assert_eq!(got, want);
    let open = records.iter().filter(|r| r["status"] == "open").count();
    assert!(
        !want.is_empty() && want.len() < open,
        "the rules exclude some open issues"
    );
    let prios: Vec<i64> = ready
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["priority"].as_i64().unwrap())
        .collect();
    assert!(prios.is_sorted(), "sorted by priority: {prios:?}");
    assert_eq!(
        ids(&rig.json(&["ready", "--limit", "3"])),
        ids(&ready)[..3].to_vec()
    );

    // An epic with a blocked child: --parent keeps to its descendants.
    let under: BTreeSet<String> = ids(&rig.json(&["ready", "--parent", "bd-pnx2"]))
        .into_iter()
        .collect();
    assert_eq!(under, expected_ready(&records, Some("bd-pnx2")));

    // Reading never rewrites the file.
    assert_eq!(std::fs::read(rig.jsonl()).unwrap(), before);

    // Our schema describes what bd writes, not only what we write.
    let schema: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/schemas/beads-issue.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    for (n, r) in records.iter().enumerate() {
        assert!(v.is_valid(r), "fixture line {} fails the schema", n + 1);
    }
}

#[test]
fn rewrites_keep_every_line_they_do_not_change() {
    let rig = Rig::new();
    let lines = [
        r#"{"id":"pr-aaaa","title":"Keep me","status":"open","priority":1,"issue_type":"bug","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","notes":"hand note","comments":[{"id":"c-1","text":"string id"},{"id":7,"text":"int id"}]}"#,
        r#"{"_type":"memory","id":"pr-mem","body":"some other record kind"}"#,
        r#"{"id":"pr-dead","title":"Gone","status":"tombstone","priority":2,"issue_type":"task","deleted_by":"x"}"#,
        r#"{"id":"pr-bbbb", this is not json"#,
        r#"{"id":"pr-eeee","title":"Text priority","priority":"high"}"#,
        r#"{"id":"pr-cccc","title":"Change me","status":"open","priority":2,"issue_type":"task","created_by":"someone","future_field":{"x":[1,2]}}"#,
        r#"{"id":"pr-dddd","title":"Unterminated last line","status":"open","priority":3,"issue_type":"task"}"#,
    ];
    let text = lines.join("\n"); // no final newline: a hand edit
    std::fs::write(rig.jsonl(), &text).unwrap();

    let out = rig.run(&["list", "--json"]);
    assert!(out.status.success());
    let bad = format!(
        "gt-issue: {p}:4: not JSON (key must be a string at column 18); skipped\n\
         gt-issue: {p}:5: not a valid record (invalid type: string \"high\", expected i64); skipped\n",
        p = rig.jsonl().display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), bad);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&listed), ["pr-aaaa", "pr-cccc", "pr-dddd"]);
    assert_eq!(listed[0]["comments"][0]["id"], "c-1");
    assert_eq!(listed[0]["comments"][1]["id"], 7);
    let err = rig.fails(2, &["show", "pr-dead"]);
    assert_eq!(
        err,
        format!(
            "{bad}gt-issue: issue pr-dead is deleted (tombstone) in {}\n",
            rig.jsonl().display()
        )
    );

    let changed = rig.json(&[
        "update",
        "pr-cccc",
        "--status",
        "in_progress",
        "--assignee",
        "proj/nux",
    ]);
    assert_eq!(changed["created_by"], "someone");
    assert_eq!(changed["future_field"], serde_json::json!({"x": [1, 2]}));

    let after = std::fs::read_to_string(rig.jsonl()).unwrap();
    let after: Vec<&str> = after.strip_suffix('\n').unwrap().split('\n').collect();
    assert_eq!(after.len(), 7);
    for n in [0, 1, 2, 3, 4, 6] {
        assert_eq!(after[n], lines[n], "line {} is kept byte for byte", n + 1);
    }
    let rewritten: Value = serde_json::from_str(after[5]).unwrap();
    assert_eq!(rewritten["status"], "in_progress");
    assert_eq!(rewritten["assignee"], "proj/nux");
    assert_eq!(rewritten["created_by"], "someone");
    assert_eq!(rewritten["future_field"], serde_json::json!({"x": [1, 2]}));
    assert!(rewritten.get("updated_at").is_some());

    // A write that is refused changes nothing at all.
    let before = std::fs::read(rig.jsonl()).unwrap();
    let err = rig.fails(2, &["update", "pr-nope", "--status", "closed"]);
    assert_eq!(
        err,
        format!("gt-issue: no issue pr-nope in {}\n", rig.jsonl().display())
    );
    let err = rig.fails(2, &["update", "pr-aaaa", "--status", "done"]);
    assert_eq!(
        err,
        "gt-issue: unknown status \"done\" (one of: open, in_progress, blocked, deferred, hooked, pinned, closed)\n"
    );
    assert_eq!(std::fs::read(rig.jsonl()).unwrap(), before);
}

#[test]
fn an_epic_is_worked_in_waves() {
    let rig = Rig::new();
    let epic = rig.create(&["Ship it", "-t", "epic", "-p", "1"]);
    assert!(
        epic.starts_with("pr-")
            && epic.len() == 7
            && epic[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{epic}"
    );
    let a = rig.create(&["A", "--parent", &epic]);
    let b = rig.create(&["B", "--parent", &epic, "-p", "1"]);
    let c = rig.create(&["C", "--parent", &epic]);
    assert_eq!(
        [&a, &b, &c],
        [
            &format!("{epic}.1"),
            &format!("{epic}.2"),
            &format!("{epic}.3")
        ]
    );
    rig.ok(&["dep", "add", &c, &a]);
    rig.ok(&["dep", "add", &c, &b]);

    assert_eq!(
        ids(&rig.json(&["ready", "--parent", &epic])),
        [b.clone(), a.clone()]
    );
    // The seed spellings through `gt`.
    let out = rig
        .env
        .cmd("gt")
        .env("GT_BEADS_CLI", "native")
        .args(["waves", "proj", &epic, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waves: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        waves,
        serde_json::json!({"epic": epic, "in_progress": [], "waves": [[b, a], [c]], "stuck": []})
    );
    let text = rig.ok(&["waves", &epic]);
    assert_eq!(
        text,
        format!(
            "WAVE  {:<w$}  TITLE\n1     {b}  B\n1     {a}  A\n2     {c}  C\n",
            "ID",
            w = a.len()
        )
    );

    // A in progress counts as closing with wave 1.
    rig.ok(&["claim", &a, "--assignee", "proj/nux"]);
    let waves = rig.json(&["waves", "proj", &epic]);
    assert_eq!(waves["in_progress"], serde_json::json!([a]));
    assert_eq!(waves["waves"], serde_json::json!([[b], [c]]));

    rig.ok(&["close", &a, "--reason", "done"]);
    rig.ok(&["close", &b]);
    assert_eq!(
        ids(&rig.json(&["ready", "--parent", &epic])),
        std::slice::from_ref(&c)
    );
    let closed = rig.json(&["show", &a]);
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["close_reason"], "done");
    assert!(closed["closed_at"].is_string());

    // A cycle is named, not looped on.
    let d = rig.create(&["D", "--parent", &epic]);
    let e = rig.create(&["E", "--parent", &epic]);
    rig.ok(&["dep", "add", &d, &e]);
    rig.ok(&["dep", "add", &e, &d]);
    let err = rig.fails(2, &["waves", &epic]);
    assert_eq!(
        err,
        format!("gt-issue: dependency cycle in epic {epic}: {d} -> {e} -> {d}\n")
    );
}

#[test]
fn racing_claims_have_exactly_one_winner() {
    let rig = Rig::new();
    let id = rig.create(&["Contended"]);
    let n = 8;
    let children: Vec<_> = (0..n)
        .map(|w| {
            rig.cmd(&["claim", &id, "--assignee", &format!("proj/w{w}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<usize> = (0..n).filter(|&w| outs[w].status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let winner = format!("proj/w{}", winners[0]);
    for (w, out) in outs.iter().enumerate().filter(|(w, _)| *w != winners[0]) {
        assert_eq!(out.status.code(), Some(1), "w{w}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("gt-issue: {id} is held by {winner} (status in_progress); not claimed\n")
        );
    }
    let stored = rig.json(&["show", &id]);
    assert_eq!(stored["status"], "in_progress");
    assert_eq!(stored["assignee"], winner.as_str());

    // Claiming again is a no-op for the holder; only the holder releases.
    rig.ok(&["claim", &id, "--assignee", &winner]);
    let err = rig.fails(1, &["release", &id, "--assignee", "proj/other"]);
    assert_eq!(
        err,
        format!("gt-issue: {id} is held by {winner}, not proj/other; not released\n")
    );
    let released = rig.json(&["release", &id, "--assignee", &winner]);
    assert_eq!(released["status"], "open");
    assert!(released.get("assignee").is_none());
    rig.ok(&["close", &id]);
    let err = rig.fails(1, &["claim", &id, "--assignee", "proj/w0"]);
    assert_eq!(
        err,
        format!("gt-issue: {id} is closed, not open; not claimed\n")
    );
}

#[test]
fn concurrent_creators_lose_nothing() {
    let rig = Rig::new();
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            rig.cmd(&["create", &format!("issue {i}"), "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // While they run, every snapshot of the file parses completely.
    let path = rig.jsonl();
    let mut snapshots = 0;
    let mut children = children;
    let mut outs = Vec::new();
    while !children.is_empty() {
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.is_empty() || bytes.ends_with(b"\n"));
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<Value>(line).expect("every line parses");
        }
        snapshots += 1;
        if let Some(pos) = children
            .iter_mut()
            .position(|c| c.try_wait().unwrap().is_some())
        {
            outs.push(children.swap_remove(pos).wait_with_output().unwrap());
        }
    }
    assert!(snapshots > 0);
    let mut created = BTreeSet::new();
    for out in outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        created.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created.len(), n, "no duplicate ids");
    let stored = crate::common::jsonl_ids(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(stored.len(), n, "no lost or doubled lines");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), created);
}

#[test]
fn the_rig_comes_from_the_flag_the_environment_or_the_directory() {
    let rig = Rig::new();
    rig.create(&["in proj"]);
    // One rig: it is the default.
    assert_eq!(ids(&rig.json(&["list"])).len(), 1);
    rig.add_other();
    assert_eq!(
        rig.fails(2, &["list"]),
        "gt-issue: which rig? pass --rig, set GT_RIG or run inside a rig (rigs: other, proj)\n"
    );
    assert_eq!(ids(&rig.json(&["list", "--rig", "other"])).len(), 0);
    let out = rig
        .cmd(&["list", "--json"])
        .env("GT_RIG", "proj")
        .output()
        .unwrap();
    assert_eq!(ids(&serde_json::from_slice(&out.stdout).unwrap()).len(), 1);
    let out = rig
        .cmd(&["list", "--json"])
        .current_dir(rig.path.join("refinery/rig"))
        .output()
        .unwrap();
    assert_eq!(ids(&serde_json::from_slice(&out.stdout).unwrap()).len(), 1);
    assert_eq!(
        rig.fails(2, &["list", "--rig", "prj"]),
        format!(
            "gt-issue: no rig \"prj\" in {}/config/rigs.json (did you mean proj?)\n",
            std::fs::canonicalize(&rig.env.town).unwrap().display()
        )
    );
}

/// `--rig` works after every subcommand, as before it: `ready`'s optional
/// positional rig does not hide it.
#[test]
fn every_subcommand_takes_rig_after_its_name() {
    let rig = Rig::new();
    rig.add_other();
    fn at<'a>(args: &[&'a str], rig: &'a str) -> Vec<&'a str> {
        [args, &["--rig", rig]].concat()
    }
    let epic = rig.json(&at(&["create", "Epic", "-t", "epic"], "proj"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = rig.json(&at(&["create", "A", "--parent", &epic], "proj"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = rig.json(&at(&["create", "B", "--parent", &epic], "proj"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ids(&rig.json(&at(&["ready", "--parent", &epic], "proj"))),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        ids(&rig.json(&at(&["ready"], "other"))),
        Vec::<String>::new()
    );
    assert_eq!(
        rig.fails(2, &at(&["ready", "other"], "proj")),
        "gt-issue: two rigs given: other and --rig proj\n"
    );
    rig.ok(&at(&["dep", "add", &b, &a], "proj"));
    rig.ok(&at(&["waves", &epic], "proj"));
    rig.ok(&at(&["show", &b], "proj"));
    rig.ok(&at(&["update", &b, "-p", "1"], "proj"));
    rig.ok(&at(&["claim", &a, "--assignee", "proj/Nux"], "proj"));
    rig.ok(&at(&["release", &a, "--assignee", "proj/Nux"], "proj"));
    rig.ok(&at(&["close", &a], "proj"));
    assert_eq!(ids(&rig.json(&at(&["list"], "proj"))), [epic, b]);

    // Every subcommand, the ones to come too, lists the flag.
    let help = rig.ok(&["--help"]);
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        // A wrapped description goes on under its command, further in.
        .filter(|l| !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap())
        .filter(|c| *c != "help")
        .collect::<Vec<_>>();
    assert_eq!(commands.len(), 10, "{help}");
    for c in commands {
        let sub = if c == "dep" { vec![c, "add"] } else { vec![c] };
        let help = rig.ok(&[&sub[..], &["--help"]].concat());
        assert!(help.contains("      --rig <RIG>"), "{sub:?}: {help}");
    }
}

/// A stand-in for beads' `bd` (test double): logs `BEADS_DIR` and its
/// arguments, answers with canned JSON.
const FAKE_BD: &str = r#"#!/bin/sh
# Test double for beads' `bd`: records how gastown calls it.
printf 'BEADS_DIR=%s cwd=%s |%s|\n' "$BEADS_DIR" "$(pwd)" "$*" >> "$FAKE_BD_LOG"
issue='{"id":"fk-1","title":"From bd","status":"open","priority":1,"issue_type":"task"}'
case "$1" in
  ready|list) echo "[$issue]" ;;
  # bd show lists dependencies as the issues depended on (IssueDetails).
  show) echo '[{"id":"fk-1","title":"From bd","status":"open","priority":1,"issue_type":"task","dependencies":[{"id":"fk-0","title":"Epic","status":"open","priority":1,"issue_type":"epic","dependency_type":"parent-child"}]}]' ;;
  export)
    [ "$2" = -o ] || exit 3
    printf '%s\n' \
      '{"id":"fk-0","title":"Epic","status":"open","priority":1,"issue_type":"epic","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}' \
      '{"id":"fk-1","title":"From bd","status":"open","priority":1,"issue_type":"task","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","dependencies":[{"issue_id":"fk-1","depends_on_id":"fk-0","type":"parent-child"}]}' \
      > "$3" ;;
  *) echo "$issue" ;;
esac
"#;

#[test]
fn with_bd_on_path_the_cli_backend_is_called_and_the_native_store_untouched() {
    let rig = Rig::new();
    let before = std::fs::read(rig.jsonl()).unwrap();
    assert_eq!(before, b"", "a new rig starts with an empty issues.jsonl");
    let bin = rig.env.path().join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    crate::common::write_executable(&bin.join("bd"), FAKE_BD);
    let log = rig.env.path().join("bd.log");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |prog: &str, args: &[&str]| -> String {
        let out = rig
            .env
            .cmd(prog)
            .env("PATH", &path)
            .env("FAKE_BD_LOG", &log)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ready: Value = serde_json::from_str(&run("gt", &["ready", "proj", "--json"])).unwrap();
    assert_eq!(ids(&ready), ["fk-1"]);
    run("gt-issue", &["ready", "--parent", "fk-0", "-n", "2"]);
    let created: Value = serde_json::from_str(&run(
        "gt",
        &["issue", "create", "New thing", "-p", "1", "--json"],
    ))
    .unwrap();
    assert_eq!(created["id"], "fk-1");
    run("gt-issue", &["claim", "fk-1", "--assignee", "proj/nux"]);
    run("gt-issue", &["close", "fk-1", "--reason", "merged"]);
    let shown: Value = serde_json::from_str(&run("gt-issue", &["show", "fk-1", "--json"])).unwrap();
    assert_eq!(
        shown["dependencies"],
        serde_json::json!([{"issue_id": "fk-1", "depends_on_id": "fk-0", "type": "parent-child"}])
    );
    let waves: Value =
        serde_json::from_str(&run("gt", &["waves", "proj", "fk-0", "--json"])).unwrap();
    assert_eq!(waves["waves"], serde_json::json!([["fk-1"]]));

    let beads = rig.path.join(".beads");
    let d = format!("BEADS_DIR={} cwd={}", beads.display(), rig.path.display());
    let logged = std::fs::read_to_string(&log).unwrap();
    let (calls, export) = logged.rsplit_once(&format!("{d} |export -o ")).unwrap();
    assert_eq!(
        calls,
        format!(
            "{d} |ready --limit 0 --json|\n\
             {d} |ready --parent fk-0 --limit 2 --json|\n\
             {d} |create New thing --priority 1 --json|\n\
             {d} |show fk-1 --json|\n\
             {d} |update fk-1 --status in_progress --assignee proj/nux --json|\n\
             {d} |show fk-1 --json|\n\
             {d} |close fk-1 --reason merged --json|\n\
             {d} |show fk-1 --json|\n"
        )
    );
    // The export goes to a temp file (never stdout), which is removed after.
    let tmp = export.strip_suffix("|\n").unwrap();
    assert!(tmp.ends_with(".jsonl") && !tmp.contains(".beads"), "{tmp}");
    assert!(!Path::new(tmp).exists());
    assert_eq!(
        std::fs::read(rig.jsonl()).unwrap(),
        before,
        "issues.jsonl untouched"
    );

    // GT_BEADS_CLI=native overrides the bd on PATH.
    let out = rig
        .env
        .cmd("gt-issue")
        .env("PATH", &path)
        .env("FAKE_BD_LOG", &log)
        .env("GT_BEADS_CLI", "native")
        .args(["ready", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 9);

    // A rig added while bd is on PATH is initialised by bd, not by us: bd runs
    // in the rig's staging directory, which is then renamed into place.
    let origin = rig.env.bare_origin("other-origin");
    run(
        "gt",
        &[
            "rig",
            "add",
            "other",
            origin.to_str().unwrap(),
            "--prefix",
            "oth",
        ],
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let init = logged.lines().last().unwrap();
    let town = std::fs::canonicalize(&rig.env.town).unwrap();
    let staging = format!("{}/.staging/other.", town.display());
    let (dirs, args) = init.split_once(" |").unwrap();
    assert_eq!(args, "init --prefix oth|");
    let (beads_dir, cwd) = dirs
        .strip_prefix("BEADS_DIR=")
        .and_then(|d| d.split_once(" cwd="))
        .unwrap();
    assert!(cwd.starts_with(&staging), "{init}");
    assert_eq!(beads_dir, format!("{cwd}/.beads"));
    assert!(!town.join("other/.beads/issues.jsonl").exists());

    // bd opens its files by name: a .beads planted as a link out of the
    // town is refused before bd runs.
    let outside = rig.env.path().join("outside-beads");
    std::fs::create_dir(&outside).unwrap();
    let planted = town.join("other/.beads");
    std::fs::remove_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(&outside, &planted).unwrap();
    let calls = std::fs::read_to_string(&log).unwrap().lines().count();
    let out = rig
        .env
        .cmd("gt-issue")
        .env("PATH", &path)
        .env("FAKE_BD_LOG", &log)
        .args(["--rig", "other", "ready"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{} is a symlink to {}",
            planted.display(),
            outside.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        calls,
        "bd ran"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
