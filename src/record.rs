//! Serde types for the town's JSON files (schemas in protocol/schemas/). Every
//! record keeps the fields it does not know in `extra`, so a rewrite by an older
//! or newer tool, or after a hand edit, loses nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::Interval;

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
    /// Where agent sessions run; `GT_SESSION_BACKEND` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_backend: Option<BackendKind>,
    /// Command that starts the Mayor (and any agent whose rig sets none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<String>,
    /// The agent runtime preset (protocol/agents.md); a rig's wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::agent::Preset>,
    /// Added to every agent session's environment; a rig's value wins per key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_env: BTreeMap<String, String>,
    /// Silence after which the daemon reports a live session (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<Interval>,
    /// Quick crashes in a row after which the daemon gives an agent up (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u64>,
    /// How long an escalation may wait unread in the Mayor's inbox before the
    /// daemon forwards it to the overseer (default 15m; `"off"`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_forward_after: Option<Forward>,
    /// How long the daemon lets a session run after its agent asked for a
    /// cycle before it stops it (default 30s): a TUI never exits by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_grace: Option<Interval>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `escalation_forward_after` in config/town.json: a duration, or `"off"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    Off,
    After(Interval),
}

impl std::str::FromStr for Forward {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Forward> {
        match s {
            "off" => Ok(Forward::Off),
            _ => s.parse().map(Forward::After),
        }
    }
}

impl Serialize for Forward {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Forward::Off => s.serialize_str("off"),
            Forward::After(i) => i.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Forward {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: crate::error::Error| serde::de::Error::custom(e.message()))
    }
}

/// `session_backend` in config/town.json.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Tmux,
    Process,
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
    pub worker_spawn_delay: Interval,
    /// Shell command the Refinery and `gt land` run in the clone before pushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
    /// Longest a `test_command` run may take before its process group is
    /// killed and the landing counts as failed, e.g. "30m" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_timeout: Option<Interval>,
    /// How long a finished queue entry stays in `merged/` or `failed/`
    /// before it moves to the queue's archive (default 168h, a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_archive_after: Option<Interval>,
    /// How long a working polecat may be silent before its Witness nudges it
    /// (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_after: Option<Interval>,
    /// Command that starts an agent in its session (`claude ...`); the town's if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<String>,
    /// The agent runtime preset; the town's if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::agent::Preset>,
    /// Added to the environment of the rig's agents, over the town's `agent_env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_env: BTreeMap<String, String>,
    /// Which plugins the rig's agents consult at their hook points
    /// (protocol/plugins.md).
    #[serde(default, skip_serializing_if = "PluginsConfig::is_empty")]
    pub plugins: PluginsConfig,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `plugins` object of a rig config (protocol/plugins.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PluginsConfig {
    /// The plugin the Refinery consults before merging an entry. Absent or
    /// `true`: `merge-oracle`, if that directory exists; `false`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_merge: Option<PluginChoice>,
    /// The plugin the Refinery consults when an entry is merged and tested,
    /// before it is pushed (`review-oracle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_ready: Option<PluginChoice>,
    /// The plugin the Witness consults before escalating a stuck worker
    /// (`debug-oracle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stuck: Option<PluginChoice>,
    /// The plugin the Witness consults before dispatching an epic's children
    /// (`plan-oracle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_dispatch: Option<PluginChoice>,
    /// Longest wait for a verdict, e.g. "30s" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Interval>,
    /// Per hook point (its key), over `timeout`: `{"on_ready": "10m"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts: BTreeMap<String, Interval>,
    /// How long a held entry stays unasked, e.g. "60s" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_retry: Option<Interval>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl PluginsConfig {
    fn is_empty(&self) -> bool {
        *self == PluginsConfig::default()
    }
    /// `timeouts[hook]`, else `timeout`, else [`crate::plugin::DEFAULT_TIMEOUT`].
    pub fn timeout(&self, hook: crate::plugin::Hook) -> std::time::Duration {
        self.timeouts
            .get(hook.key())
            .or(self.timeout.as_ref())
            .map_or(crate::plugin::DEFAULT_TIMEOUT, Interval::get)
    }
    /// `hold_retry`, or [`crate::plugin::DEFAULT_HOLD_RETRY`].
    pub fn hold_retry(&self) -> std::time::Duration {
        self.hold_retry
            .as_ref()
            .map_or(crate::plugin::DEFAULT_HOLD_RETRY, Interval::get)
    }
}

/// A hook point's setting: a plugin's name, or `true` (the conventional
/// name) / `false` (off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PluginChoice {
    On(bool),
    Name(String),
}

impl RigConfig {
    /// `test_timeout`, or [`crate::land::DEFAULT_TEST_TIMEOUT`].
    pub fn test_timeout(&self) -> std::time::Duration {
        self.test_timeout
            .as_ref()
            .map_or(crate::land::DEFAULT_TEST_TIMEOUT, Interval::get)
    }
    /// `queue_archive_after`, or [`crate::queue::DEFAULT_ARCHIVE_AFTER`].
    pub fn queue_archive_after(&self) -> std::time::Duration {
        self.queue_archive_after
            .as_ref()
            .map_or(crate::queue::DEFAULT_ARCHIVE_AFTER, Interval::get)
    }
    /// `stuck_after`, or [`crate::witness::DEFAULT_STUCK_AFTER`].
    pub fn stuck_after(&self) -> std::time::Duration {
        self.stuck_after
            .as_ref()
            .map_or(crate::witness::DEFAULT_STUCK_AFTER, Interval::get)
    }
}

impl TownConfig {
    /// `heartbeat_timeout`, or [`crate::daemon::DEFAULT_HEARTBEAT_TIMEOUT`].
    pub fn heartbeat_timeout(&self) -> std::time::Duration {
        self.heartbeat_timeout
            .as_ref()
            .map_or(crate::daemon::DEFAULT_HEARTBEAT_TIMEOUT, Interval::get)
    }
    /// `escalation_forward_after`, or
    /// [`crate::daemon::ESCALATION_FORWARD_AFTER`]; `None` when `"off"`.
    pub fn escalation_forward_after(&self) -> Option<std::time::Duration> {
        match &self.escalation_forward_after {
            None => Some(crate::daemon::ESCALATION_FORWARD_AFTER),
            Some(Forward::Off) => None,
            Some(Forward::After(i)) => Some(i.get()),
        }
    }
    /// `cycle_grace`, or [`crate::daemon::DEFAULT_CYCLE_GRACE`].
    pub fn cycle_grace(&self) -> std::time::Duration {
        self.cycle_grace
            .as_ref()
            .map_or(crate::daemon::DEFAULT_CYCLE_GRACE, Interval::get)
    }

    /// `max_restarts`, or [`crate::daemon::MAX_RESTARTS`].
    pub fn max_restarts(&self) -> u64 {
        self.max_restarts.unwrap_or(crate::daemon::MAX_RESTARTS)
    }
}

fn default_max_workers() -> u32 {
    8
}
fn default_spawn_delay() -> Interval {
    "5s".parse().expect("a valid duration")
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

/// `<home>/state.json`: an agent's flags. Fields a tool reads or writes are
/// typed here (schema agent-state); the rest stay in `extra`, untouched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentState {
    pub role: crate::address::Role,
    #[serde(default)]
    pub status: Status,
    /// The issue the agent works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The session id in the session backend (`crate::session::SessionId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Incremented at every spawn; lifecycle mail names the generation it is about.
    #[serde(default)]
    pub generation: u64,
    /// Set by an agent that wants the daemon to start a fresh session.
    #[serde(default)]
    pub requesting_cycle: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// The command line its session runs, recorded at every start so the
    /// daemon can start the next session the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// When its current (or last) session started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// A polecat's branch (default `polecat/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Witness: nudges since the worker last made progress.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nudges: u64,
    /// Witness: epics whose completion it has reported to the Mayor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported_epics: Vec<String>,
    /// Witness: its `before_dispatch` requests by epic (protocol/plugins.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, crate::plugin::Plan>,
    /// Daemon: quick crash restarts in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
    /// Daemon: when the crash being backed off (or given up) was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashed_at: Option<Timestamp>,
    /// Daemon: not restarted before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at: Option<Timestamp>,
    /// Daemon: why its last attempt to start a session failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
    /// Daemon: the heartbeat time whose silence it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_reported: Option<Timestamp>,
    /// The dialog (its first lines) its runtime waits at: set, and reported to
    /// whoever answers for it, by the first to see it (`gt spawn`, a Witness
    /// patrol); removed once the screen shows no dialog and at every start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// When `requesting_cycle` was set: a session still running
    /// `cycle_grace` later is stopped by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_requested_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An agent's `status` (protocol/README.md, "Agent homes").
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Free for work (a polecat), or not started.
    #[default]
    Idle,
    /// Its session runs on its issue.
    Working,
    /// Its work is in the merge queue.
    Done,
    /// Put to sleep by `gt sleep`: not given work.
    Asleep,
    /// Nudged too often without progress; escalated.
    Stuck,
    /// Given up by the daemon after repeated crashes.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Working => "working",
            Status::Done => "done",
            Status::Asleep => "asleep",
            Status::Stuck => "stuck",
            Status::Dead => "dead",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AgentState {
    pub fn new(role: crate::address::Role) -> Self {
        AgentState {
            role,
            status: Status::Idle,
            issue: None,
            session: None,
            generation: 0,
            requesting_cycle: false,
            updated_at: Some(crate::clock::now()),
            command: None,
            started_at: None,
            branch: None,
            nudges: 0,
            reported_epics: Vec::new(),
            plans: BTreeMap::new(),
            restarts: 0,
            crashed_at: None,
            next_restart_at: None,
            start_error: None,
            heartbeat_reported: None,
            blocked: None,
            cycle_requested_at: None,
            extra: Extra::new(),
        }
    }
}
