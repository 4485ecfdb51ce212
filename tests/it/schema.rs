//! `protocol/schemas/` is the contract of every JSON file in a town. These tests
//! check the schemas against the examples in `protocol/examples/`, and check a
//! real town built by the real binaries against the schemas: every JSON and
//! JSONL file in it must be claimed by a schema in [`TABLE`], so a new file
//! cannot appear without being specified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use serde_json::Value;

use crate::common::{TestEnv, git};

/// Which schema each file of a town follows. A pattern is a path relative to
/// the town root whose `*` components match any one name. `.jsonl` files are
/// validated line by line. Add a row (and its schema and examples) for every new
/// kind of file a tool writes.
const TABLE: &[(&str, &str)] = &[
    ("config/town.json", "town"),
    ("config/rigs.json", "rigs"),
    ("config/federation.json", "federation"),
    ("federation/outbox/*.jsonl", "mail-message"),
    ("federation/refusals.jsonl", "federation-refusal"),
    ("federation/backoff/*.json", "federation-backoff"),
    ("federation/workers/*/*.json", "federation-worker"),
    ("*/polecats/*/works-for.json", "federation-works-for"),
    ("*/config.json", "rig-config"),
    ("*/refinery/queue/*/*", "queue-entry"),
    ("*/refinery/landing.json", "direct-landing"),
    ("*/.beads/issues.jsonl", "beads-issue"),
];

/// Every agent home, as a pattern; each has `state.json` and `mail/`.
const HOMES: &[&str] = &[
    "mayor",
    "overseer",
    "*/witness",
    "*/refinery",
    "*/polecats/*",
    "*/crew/*",
    "*/plugins/*",
];

fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol")
}

fn schemas() -> BTreeMap<String, Validator> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(protocol_dir().join("schemas")).unwrap() {
        let path = e.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let name = file
            .strip_suffix(".schema.json")
            .unwrap_or_else(|| panic!("protocol/schemas/{file}: expected <name>.schema.json"));
        let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("protocol/schemas/{file}: {e}"));
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "protocol/schemas/{file}: must declare draft 2020-12"
        );
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("protocol/schemas/{file}: not a valid schema: {e}"));
        out.insert(name.to_string(), v);
    }
    out
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

/// The instances in a `.json` (one) or `.jsonl` (one per non-blank line) file,
/// labelled `path` or `path:line`. Lines that are not JSON are returned as Err.
fn instances(path: &Path, label: &str) -> Vec<(String, Result<Value, String>)> {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "jsonl") {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{label}: last line has no newline (a torn or in-flight line)"
        );
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    format!("{label}:{}", i + 1),
                    serde_json::from_str(l).map_err(|e| e.to_string()),
                )
            })
            .collect()
    } else {
        vec![(
            label.to_string(),
            serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        )]
    }
}

fn example_dirs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> =
        std::fs::read_dir(protocol_dir().join("examples").join(kind))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), e.path())
            })
            .collect();
    out.sort();
    out
}

#[test]
fn examples_match_their_schemas() {
    let schemas = schemas();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for kind in ["valid", "invalid"] {
        for (name, dir) in example_dirs(kind) {
            let Some(v) = schemas.get(&name) else {
                problems.push(format!(
                    "protocol/examples/{kind}/{name}/: no protocol/schemas/{name}.schema.json"
                ));
                continue;
            };
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let label = format!(
                    "protocol/examples/{kind}/{name}/{}",
                    path.file_name().unwrap().to_string_lossy()
                );
                for (at, inst) in instances(&path, &label) {
                    *seen.entry((kind, name.clone())).or_default() += 1;
                    match (kind, inst) {
                        ("valid", Err(e)) => problems.push(format!("{at}: not JSON: {e}")),
                        ("valid", Ok(inst)) => {
                            for e in errors(v, &inst) {
                                problems.push(format!("{at}: should be valid but {e}"));
                            }
                        }
                        (_, Ok(inst)) if v.is_valid(&inst) => {
                            problems.push(format!("{at}: should be invalid but validates"))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    for name in schemas.keys() {
        for kind in ["valid", "invalid"] {
            if !seen.contains_key(&(kind, name.clone())) {
                problems.push(format!(
                    "schema {name} has no examples in protocol/examples/{kind}/{name}/"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether `rel` (components) matches `pattern` (`*` = any one component,
/// `*.ext` = any one component ending in `.ext`).
fn matches(pattern: &str, rel: &[&str]) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    pat.len() == rel.len()
        && pat.iter().zip(rel).all(|(p, r)| {
            *p == "*" || p == r || p.strip_prefix('*').is_some_and(|ext| r.ends_with(ext))
        })
}

fn schema_for(rel: &[&str]) -> Option<&'static str> {
    let homes = HOMES.iter().flat_map(|h| {
        [
            (format!("{h}/state.json"), "agent-state"),
            (format!("{h}/mail/inbox.jsonl"), "mail-message"),
            (format!("{h}/mail/archive/*.jsonl"), "mail-message"),
            (format!("{h}/mail/read.jsonl"), "mail-mark"),
            (format!("{h}/mail/read.cursor.json"), "mail-cursor"),
            (format!("{h}/mail/watch/*.jsonl"), "mail-mark"),
            (format!("{h}/mail/watch/*.cursor.json"), "mail-cursor"),
        ]
    });
    TABLE
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .chain(homes)
        .find(|(p, _)| matches(p, rel))
        .map(|(_, s)| s)
}

/// Every problem with the JSON files of the town at `root`: files no schema
/// claims, files or lines that do not validate, leftover temp files. Git work
/// trees (the agents' clones) hold the project's files, not ours, and are skipped.
pub fn check_town(root: &Path) -> Vec<String> {
    let schemas = schemas();
    let mut problems = Vec::new();
    let mut checked = 0;
    let walk = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.file_type().is_dir() && e.path().join(".git").exists()));
    for e in walk {
        let e = e.unwrap();
        let rel_path = e.path().strip_prefix(root).unwrap();
        let rel_s = rel_path.to_string_lossy().into_owned();
        let name = e.file_name().to_string_lossy();
        if name.contains(".tmp.") {
            problems.push(format!("{rel_s}: temp file left behind"));
        }
        if !e.file_type().is_file() || !(name.ends_with(".json") || name.ends_with(".jsonl")) {
            continue;
        }
        let rel: Vec<&str> = rel_s.split('/').collect();
        let Some(schema) = schema_for(&rel) else {
            problems.push(format!(
                "{rel_s}: no schema claims this file (add it to protocol/ and to TABLE in tests/it/schema.rs)"
            ));
            continue;
        };
        let Some(v) = schemas.get(schema) else {
            problems.push(format!(
                "{rel_s}: its schema protocol/schemas/{schema}.schema.json does not exist"
            ));
            continue;
        };
        for (at, inst) in instances(e.path(), &rel_s) {
            checked += 1;
            match inst {
                Err(err) => problems.push(format!("{at}: not JSON: {err}")),
                Ok(inst) => problems.extend(
                    errors(v, &inst)
                        .into_iter()
                        .map(|err| format!("{at}: not a valid {schema}: {err}")),
                ),
            }
        }
    }
    assert!(checked > 0, "no JSON found under {}", root.display());
    problems
}

#[test]
fn every_json_file_in_a_real_town_matches_its_schema() {
    let env = TestEnv::new();
    env.add_rig("wyvern");
    env.add_rig("gastown");
    // Every gt command that writes files, so each file kind appears at least once.
    env.ok("gt", &["install", env.town.to_str().unwrap()]);
    env.ok("gt", &["polecat", "add", "wyvern", "Nux"]);
    let work = env.issue("wyvern", "Work");
    env.ok(
        "gt",
        &[
            "spawn", "--rig", "wyvern", "--name", "Toast", "--issue", &work, "--agent", "sleep 60",
        ],
    );
    env.ok("gt", &["sleep", "wyvern/Nux"]);
    env.ok("gt", &["merge-queue", "add", "wyvern", "Nux"]);
    env.ok("gt", &["refinery", "process", "wyvern", "--once"]); // merged/, mail
    env.ok("gt", &["merge-queue", "add", "wyvern", "Nux"]);
    env.ok("gt", &["queue", "claim", "wyvern"]); // active/
    env.ok("gt", &["kill", "wyvern/Toast"]);
    env.ok("gt", &["plugin", "add", "gastown", "merge-oracle"]);
    // The daemon's records: a command, a crash restart, a backoff.
    env.ok(
        "gt",
        &["daemon", "start", "gastown/witness", "--agent", "exit 3"],
    );
    let id = env.session("gastown/witness");
    assert!(gastown::session::wait(
        &id,
        std::time::Duration::from_secs(30)
    ));
    env.ok("gt", &["daemon", "tick"]); // restarted
    let id = env.session("gastown/witness");
    assert!(gastown::session::wait(
        &id,
        std::time::Duration::from_secs(30)
    ));
    assert!(
        env.ok("gt", &["daemon", "tick"])
            .starts_with("backoff gastown/witness")
    );
    env.ok("gt", &["stop", "--all"]);
    // Repairs what the kill left (Toast's claim), writing as it does.
    env.ok("gt", &["doctor", "--fix"]);
    let epic = env.ok(
        "gt-issue",
        &["create", "--rig", "wyvern", "Epic", "-t", "epic", "--json"],
    );
    let epic = serde_json::from_str::<Value>(&epic).unwrap()["id"].to_string();
    let child = [
        "create",
        "--rig",
        "wyvern",
        "Child",
        "--parent",
        epic.trim_matches('"'),
    ];
    env.ok("gt-issue", &child);
    // A landing mails the witness and the mayor.
    let clone = env.town.join("wyvern/polecats/Nux/rig");
    std::fs::write(clone.join("feature.txt"), "work\n").unwrap();
    git(&clone, &["add", "feature.txt"]);
    git(&clone, &["commit", "-q", "-m", "feature"]);
    env.ok("gt", &["land", "--direct", "wyvern/Nux"]);
    let witness_mail =
        std::fs::read_to_string(env.town.join("wyvern/witness/mail/inbox.jsonl")).unwrap();
    // (The first is the refinery's "merged" above.)
    assert_eq!(witness_mail.lines().count(), 2, "{witness_mail}");
    // Mail: inbox, marks, cursors, a watcher, the archive, a handoff.
    env.ok("gt", &["send", "mayor", "-s", "hi", "-m", "there"]);
    env.ok("gt", &["send", "mayor", "-s", "later", "-m", "unread"]);
    env.ok("gt-mail", &["--as", "mayor", "watch", "--once"]);
    let first = env.ok("gt-mail", &["--as", "mayor", "inbox", "--json"]);
    let first = serde_json::from_str::<Value>(first.lines().next().unwrap()).unwrap();
    env.ok(
        "gt-mail",
        &["--as", "mayor", "read", first["id"].as_str().unwrap()],
    );
    env.ok("gt-mail", &["--as", "mayor", "archive"]);
    env.ok("gt-mail", &["--as", "mayor", "inbox"]);
    env.ok("gt-mail", &["--as", "overseer", "handoff", "-m", "note"]);
    for f in [
        "mayor/mail/read.cursor.json",
        "mayor/mail/watch/watch.jsonl",
        "mayor/mail/watch/watch.cursor.json",
    ] {
        assert!(env.town.join(f).is_file(), "{f}");
    }
    let archived = std::fs::read_dir(env.town.join("mayor/mail/archive"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jsonl")
        })
        .count();
    assert_eq!(archived, 1);
    // When you add a binary that writes into the town (gt-mail, gt-issue, gt-queue...),
    // drive it here too.
    let problems = check_town(&env.town);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check itself must bite: an unclaimed file and a bad record are both caught.
    std::fs::write(env.town.join("mayor/notes.json"), "{}").unwrap();
    let state = env.town.join("wyvern/witness/state.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    v["status"] = "napping".into();
    std::fs::write(&state, v.to_string()).unwrap();
    let problems = check_town(&env.town);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("mayor/notes.json: no schema claims this file"));
    assert!(
        problems[1]
            .starts_with("wyvern/witness/state.json: not a valid agent-state: at \"/status\"")
    );
}
