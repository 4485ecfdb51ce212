//! The Rust records and the JSON Schemas describe the same fields: every typed
//! field is a schema property and every schema property is typed. Each record
//! below is built with every field set and no `..` filler, so a new field fails
//! to compile here until it is added to this test (and so to its schema).

use std::collections::BTreeSet;
use std::path::Path;

use gastown::address::Role;
use gastown::record::{
    AgentState, BackendKind, BeadsConfig, Extra, PluginChoice, PluginsConfig, RigConfig, Status,
    TownConfig,
};
use serde_json::Value;

fn schema(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("protocol/schemas")
        .join(format!("{name}.schema.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The record's keys equal the schema's properties, and the record is valid.
fn same_fields(schema_name: &str, record: Value) {
    let schema = schema(schema_name);
    assert_eq!(
        keys(&record),
        keys(&schema["properties"]),
        "fields of the Rust record (left) vs properties of {schema_name}.schema.json (right)"
    );
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&record).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{schema_name}: {errors:?}");
}

fn time(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

#[test]
fn agent_state_fields_are_the_schema_properties() {
    let state = AgentState {
        role: Role::Polecat,
        status: Status::Working,
        issue: Some("wyv-1".into()),
        session: Some("proc:41:9".into()),
        generation: 3,
        requesting_cycle: true,
        updated_at: Some(time("2026-11-25T09:00:00Z")),
        command: Some("claude".into()),
        started_at: Some(time("2026-11-25T09:00:00Z")),
        branch: Some("polecat/Nux".into()),
        nudges: 1,
        reported_epics: vec!["wyv-0".into()],
        plans: [(
            "wyv-0".to_string(),
            serde_json::from_value(serde_json::json!({"hook": "before_dispatch",
                "request": "msg-1", "by": "wyv/plugins/plan-oracle",
                "at": "2026-11-25T09:00:00Z", "offset": 0}))
            .unwrap(),
        )]
        .into(),
        restarts: 2,
        crashed_at: Some(time("2026-11-25T09:01:00Z")),
        next_restart_at: Some(time("2026-11-25T09:02:00Z")),
        start_error: Some("no agent command".into()),
        heartbeat_reported: Some(time("2026-11-25T08:00:00Z")),
        blocked: Some("Detected a custom API key".into()),
        cycle_requested_at: Some(time("2026-11-25T08:30:00Z")),
        extra: Extra::new(),
    };
    same_fields("agent-state", serde_json::to_value(&state).unwrap());
}

#[test]
fn town_config_fields_are_the_schema_properties() {
    let config = TownConfig {
        kind: "town".into(),
        version: 1,
        name: "t".into(),
        created_at: "2026-11-25T09:00:00Z".into(),
        session_backend: Some(BackendKind::Process),
        agent_command: Some("claude".into()),
        agent: Some(gastown::agent::Preset::Codex),
        agent_env: [("K".to_string(), "V".to_string())].into(),
        heartbeat_timeout: Some("10m".parse().unwrap()),
        max_restarts: Some(5),
        escalation_forward_after: Some("15m".parse().unwrap()),
        cycle_grace: Some("30s".parse().unwrap()),
        extra: Extra::new(),
    };
    same_fields("town", serde_json::to_value(&config).unwrap());
}

#[test]
fn rig_config_fields_are_the_schema_properties() {
    let config = RigConfig {
        kind: "rig".into(),
        version: 1,
        name: "wyvern".into(),
        git_url: "/srv/wyvern.git".into(),
        beads: BeadsConfig {
            prefix: "wyv".into(),
            sync_remote: Some("origin".into()),
            cli: Some("bd".into()),
            extra: Extra::new(),
        },
        max_workers: 3,
        worker_spawn_delay: "5s".parse().unwrap(),
        test_command: Some("make test".into()),
        test_timeout: Some("30m".parse().unwrap()),
        queue_archive_after: Some("168h".parse().unwrap()),
        stuck_after: Some("30m".parse().unwrap()),
        agent_command: Some("claude".into()),
        agent: Some(gastown::agent::Preset::Claude),
        agent_env: [("K".to_string(), "V".to_string())].into(),
        plugins: PluginsConfig {
            before_merge: Some(PluginChoice::Name("merge-oracle".into())),
            on_ready: Some(PluginChoice::On(true)),
            on_stuck: Some(PluginChoice::On(false)),
            before_dispatch: Some(PluginChoice::Name("planner".into())),
            timeout: Some("30s".parse().unwrap()),
            timeouts: [("on_ready".to_string(), "10m".parse().unwrap())].into(),
            hold_retry: Some("60s".parse().unwrap()),
            extra: Extra::new(),
        },
        extra: Extra::new(),
    };
    let value = serde_json::to_value(&config).unwrap();
    assert_eq!(
        keys(&value["plugins"]),
        keys(&schema("rig-config")["properties"]["plugins"]["properties"]),
        "fields of PluginsConfig vs the schema's plugins properties"
    );
    assert_eq!(
        keys(&value["beads"]),
        keys(&schema("rig-config")["properties"]["beads"]["properties"]),
        "fields of BeadsConfig vs the schema's beads properties"
    );
    same_fields("rig-config", value);
}

/// A rewrite keeps what it does not know exactly as it was, in place (as a
/// JSON value: serde_json writes a number such as 2.50 as 2.5).
#[test]
fn unknown_fields_survive_a_rewrite_byte_for_byte() {
    let text = r#"{"role":"polecat","mine":{"b":[1,2.5,"x",{"deep":true}],"a":null},"status":"idle","zz":"last"}"#;
    let mut state: AgentState = serde_json::from_str(text).unwrap();
    state.status = Status::Working;
    let out = serde_json::to_string(&state).unwrap();
    assert!(
        out.contains(r#""mine":{"b":[1,2.5,"x",{"deep":true}],"a":null}"#)
            && out.ends_with(r#""zz":"last"}"#),
        "{out}"
    );
}

/// A setting that does not parse is refused where the file is read, naming
/// the file, line and column, instead of failing later where it is used.
#[test]
fn a_bad_duration_is_refused_when_the_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        "{\"type\":\"rig\",\"version\":1,\"name\":\"r\",\"git_url\":\"u\",\n\"stuck_after\":\"banana\"}",
    )
    .unwrap();
    let err = gastown::fsio::read_json::<RigConfig>(&path)
        .unwrap_err()
        .to_string();
    // The middle is jiff's own explanation.
    let head = format!("{}:2:23: invalid duration \"banana\" (", path.display());
    assert!(
        err.starts_with(&head) && err.ends_with("); use e.g. 30s, 10m, 1h"),
        "{err}"
    );
}

#[test]
fn direct_landing_fields_are_the_schema_properties() {
    let sha = |c: char| c.to_string().repeat(40);
    let intent = gastown::land::Intent {
        polecat: "wyvern/Nux".into(),
        generation: 3,
        issue: Some("wyv-42".into()),
        branch: "polecat/Nux".into(),
        clone: "/town/wyvern/polecats/Nux/rig".into(),
        keep_branch: false,
        main: "main".into(),
        merge: gastown::land::MergeKind::MergeCommit,
        base: sha('a'),
        tip: sha('b'),
        head: sha('c'),
        at: "2026-11-25T09:20:01.5Z".into(),
        extra: Extra::new(),
    };
    same_fields("direct-landing", serde_json::to_value(&intent).unwrap());
    // Unknown fields are kept.
    let mut v = serde_json::to_value(&intent).unwrap();
    v["by_hand"] = "kept".into();
    let back: gastown::land::Intent = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), v);
}
