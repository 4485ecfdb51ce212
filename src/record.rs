//! Serde types for the town's JSON files (schemas in protocol/schemas/). Every
//! record keeps the fields it does not know in `extra`, so a rewrite by an older
//! or newer tool, or after a hand edit, loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Extra = serde_json::Map<String, serde_json::Value>;

pub const TOWN_VERSION: u32 = 1;

/// `config/town.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TownConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub name: String,
    pub created_at: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `config/rigs.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RigsRegistry {
    pub version: u32,
    #[serde(default)]
    pub rigs: BTreeMap<String, RigEntry>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One rig in `config/rigs.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RigEntry {
    pub git_url: String,
    pub added_at: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `<rig>/config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RigConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub name: String,
    pub git_url: String,
    #[serde(default)]
    pub beads: BeadsConfig,
    /// Most polecats running at once (seed decision 13).
    #[serde(default = "default_max_workers")]
    pub max_workers: u32,
    /// Pause between spawns, e.g. "5s".
    #[serde(default = "default_spawn_delay")]
    pub worker_spawn_delay: String,
    /// Shell command the Refinery and `gt land` run in the clone before pushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
    /// Longest a `test_command` run may take before its process group is
    /// killed and the landing counts as failed, e.g. "30m" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_timeout: Option<String>,
    /// Command that starts an agent in its session (`claude ...`); the town's if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn default_max_workers() -> u32 {
    8
}
fn default_spawn_delay() -> String {
    "5s".to_string()
}

/// The `beads` object of a rig config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BeadsConfig {
    #[serde(default)]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_remote: Option<String>,
    /// Tracker CLI to call (`bd`, `br` or a path); absent means: use `bd`/`br`
    /// if on PATH, else the native JSONL store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `<home>/state.json`: an agent's flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentState {
    pub role: crate::address::Role,
    /// `idle`, `working`, `done`, `asleep`, `stuck` or `dead` (protocol/state.md).
    #[serde(default = "default_status")]
    pub status: String,
    /// The issue the agent works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The session name in the session backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Incremented at every spawn; lifecycle mail names the generation it is about.
    #[serde(default)]
    pub generation: u64,
    /// Set by an agent that wants the daemon to start a fresh session.
    #[serde(default)]
    pub requesting_cycle: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn default_status() -> String {
    "idle".to_string()
}

impl AgentState {
    pub fn new(role: crate::address::Role) -> Self {
        AgentState {
            role,
            status: default_status(),
            issue: None,
            session: None,
            generation: 0,
            requesting_cycle: false,
            updated_at: Some(crate::clock::now_string()),
            extra: Extra::new(),
        }
    }
}
