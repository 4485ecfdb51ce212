//! The rig's issue tracker, beads (protocol/beads.md): the records of
//! `<rig>/.beads/issues.jsonl`, the rules for ready work and waves, and one
//! [`Tracker`] interface over two backends: [`native::Native`] keeps the JSONL
//! file itself, [`cli::BeadsCli`] calls `bd` or `br`, which own their store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::BadLine;
use crate::record::Extra;
use crate::rig::Rig;

pub mod cli;
pub mod native;
pub mod rules;

pub use rules::{Blocker, Stuck, Waves, ready, waves};

/// Statuses beads knows; `update --status` accepts these (tombstone is only
/// ever written by a delete, which gastown does not do).
pub const STATUSES: &[&str] = &[
    "open",
    "in_progress",
    "blocked",
    "deferred",
    "hooked",
    "pinned",
    "closed",
];

/// One issue: a line of `issues.jsonl` whose `_type` is absent or `issue`.
/// Field names and order are beads'; every other field (`created_by`, `notes`,
/// `pinned`, `defer_until`, ...) stays in `extra` and is written back as it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Issue {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "default_status")]
    pub status: String,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default = "default_type")]
    pub issue_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub labels: Vec<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<Dependency>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub comments: Vec<Comment>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Go writes a nil slice as `null`; read it as empty.
fn null_as_empty<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn default_status() -> String {
    "open".into()
}
fn default_priority() -> i64 {
    2
}
fn default_type() -> String {
    "task".into()
}

/// An edge: `issue_id` depends on `depends_on_id`. For `parent-child`, the
/// issue is the child and `depends_on_id` its parent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dependency {
    #[serde(default)]
    pub issue_id: String,
    pub depends_on_id: String,
    #[serde(rename = "type", default = "default_dep_type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn default_dep_type() -> String {
    "blocks".into()
}

/// A comment; beads has written both integer and string ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CommentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CommentId {
    Int(i64),
    Str(String),
}

impl Issue {
    /// A boolean flag kept in `extra` (`pinned`, `ephemeral`).
    pub fn flag(&self, name: &str) -> bool {
        self.extra.get(name).and_then(|v| v.as_bool()) == Some(true)
    }
    /// A string field kept in `extra` (`defer_until`, `_type`).
    pub fn extra_str(&self, name: &str) -> Option<&str> {
        self.extra.get(name).and_then(|v| v.as_str())
    }
    pub fn is_tombstone(&self) -> bool {
        self.status == "tombstone"
    }
    /// The parent from a `parent-child` edge, if any.
    pub fn parent(&self) -> Option<&str> {
        self.dependencies
            .iter()
            .find(|d| d.kind == "parent-child")
            .map(|d| d.depends_on_id.as_str())
    }
}

/// What `list` shows. By default every issue that is not closed.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Include closed issues.
    pub all: bool,
    pub status: Option<String>,
    pub assignee: Option<String>,
    pub issue_type: Option<String>,
    /// Only descendants of this issue (through `parent-child`, any depth).
    pub parent: Option<String>,
}

impl ListFilter {
    pub fn matches(&self, i: &Issue) -> bool {
        let status_ok = match &self.status {
            Some(s) => &i.status == s,
            None => self.all || i.status != "closed",
        };
        status_ok
            && self
                .assignee
                .as_ref()
                .is_none_or(|a| i.assignee.as_ref() == Some(a))
            && self.issue_type.as_ref().is_none_or(|t| &i.issue_type == t)
    }
}

/// What `ready` considers.
#[derive(Debug, Clone, Default)]
pub struct ReadyFilter {
    /// Only descendants of this epic (through `parent-child`, any depth).
    pub parent: Option<String>,
    /// At most this many, after sorting.
    pub limit: Option<usize>,
}

/// A new issue.
#[derive(Debug, Clone, Default)]
pub struct NewIssue {
    pub title: String,
    pub description: Option<String>,
    /// 0 (highest) to 4; 2 when unset.
    pub priority: Option<i64>,
    /// `task` when unset.
    pub issue_type: Option<String>,
    pub assignee: Option<String>,
    pub labels: Vec<String>,
    /// Makes the new issue `<parent>.N` with a `parent-child` edge.
    pub parent: Option<String>,
}

/// Fields `update` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub status: Option<String>,
    /// `Some("")` clears the assignee.
    pub assignee: Option<String>,
    pub priority: Option<i64>,
    pub title: Option<String>,
    pub description: Option<String>,
}

impl NewIssue {
    pub fn check(&self) -> Result<()> {
        if self.title.trim().is_empty() {
            return Err(Error::invalid("an issue needs a non-empty title"));
        }
        if let Some(p) = self.priority {
            check_priority(p)?;
        }
        if let Some(t) = &self.issue_type {
            check_word("issue type", t)?;
        }
        Ok(())
    }
}

impl Update {
    pub fn check(&self) -> Result<()> {
        if let Some(s) = &self.status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(Error::invalid(format!(
                "unknown status {s:?} (one of: {})",
                STATUSES.join(", ")
            )));
        }
        if let Some(p) = self.priority {
            check_priority(p)?;
        }
        if self.title.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(Error::invalid("an issue needs a non-empty title"));
        }
        Ok(())
    }
}

fn check_priority(p: i64) -> Result<()> {
    if !(0..=4).contains(&p) {
        return Err(Error::invalid(format!(
            "priority {p} is out of range (0 highest .. 4 lowest)"
        )));
    }
    Ok(())
}

/// Issue types and dependency types: lowercase words joined by `-` or `_`.
pub fn check_word(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::invalid(format!(
            "bad {what} {s:?} (lowercase letters, digits, '-' or '_')"
        )));
    }
    Ok(())
}

/// One rig's tracker, whichever backend keeps it. Reads skip tombstones and
/// unknown record kinds. Writes that refuse (claim lost, unknown id) change nothing.
pub trait Tracker {
    /// `native` or the CLI program that is called.
    fn backend(&self) -> String;
    fn list(&self, filter: &ListFilter) -> Result<Vec<Issue>>;
    fn show(&self, id: &str) -> Result<Issue>;
    fn ready(&self, filter: &ReadyFilter) -> Result<Vec<Issue>>;
    /// Every issue, closed ones and tombstones included, with its edges: the
    /// input of [`waves`].
    fn all(&self) -> Result<Vec<Issue>>;
    fn create(&self, new: &NewIssue) -> Result<Issue>;
    fn update(&self, id: &str, update: &Update) -> Result<Issue>;
    /// Close with a reason. Closing a closed issue changes nothing.
    fn close(&self, id: &str, reason: Option<&str>) -> Result<Issue>;
    /// Add the edge `id` depends on `on` of type `kind` (`blocks`, `parent-child`, ...).
    fn add_dep(&self, id: &str, on: &str, kind: &str) -> Result<Issue>;
    /// Atomically set status `in_progress` and assignee `worker`. Refused with a
    /// `Conflict` if another worker holds it or it is not open; claiming an issue
    /// one already holds succeeds and changes nothing.
    fn claim(&self, id: &str, worker: &str) -> Result<Issue>;
    /// Give a claimed issue back: status `open`, no assignee. Refused with a
    /// `Conflict` if someone else holds it.
    fn release(&self, id: &str, worker: &str) -> Result<Issue>;
    /// Lines the reads so far skipped (native store only), to be reported.
    fn bad_lines(&self) -> Vec<BadLine>;
}

/// Whether `worker` may claim `issue`: it is open and nobody else holds it, or
/// `worker` already holds it.
pub fn check_claim(issue: &Issue, worker: &str) -> Result<()> {
    if worker.is_empty() {
        return Err(Error::invalid("claim needs a worker name"));
    }
    let id = &issue.id;
    if let Some(holder) = held_by_other(issue, worker) {
        return Err(Error::conflict(format!(
            "{id} is held by {holder} (status {}); not claimed",
            issue.status
        )));
    }
    let mine = issue.assignee.as_deref() == Some(worker);
    if !(issue.status == "open" || mine && issue.status == "in_progress") {
        return Err(Error::conflict(format!(
            "{id} is {}, not open; not claimed",
            issue.status
        )));
    }
    Ok(())
}

/// Whether `worker` may give `issue` back.
pub fn check_release(issue: &Issue, worker: &str) -> Result<()> {
    let id = &issue.id;
    if let Some(holder) = held_by_other(issue, worker) {
        return Err(Error::conflict(format!(
            "{id} is held by {holder}, not {worker}; not released"
        )));
    }
    if issue.status == "closed" {
        return Err(Error::conflict(format!("{id} is closed; not released")));
    }
    Ok(())
}

fn held_by_other<'a>(issue: &'a Issue, worker: &str) -> Option<&'a str> {
    issue
        .assignee
        .as_deref()
        .filter(|a| !a.is_empty() && *a != worker)
}

/// Where a rig's tracker lives and how it is kept.
#[derive(Debug, Clone)]
pub struct Location {
    /// `<rig>/.beads`, given to a CLI as `BEADS_DIR`.
    pub beads_dir: PathBuf,
    /// The id prefix for new issues (`<prefix>-<base36>`).
    pub prefix: String,
}

impl Location {
    pub fn of(rig: &Rig) -> Result<Location> {
        let config = rig.config()?;
        let prefix = if config.beads.prefix.is_empty() {
            crate::rig::default_prefix(&rig.name)
        } else {
            config.beads.prefix
        };
        Ok(Location {
            beads_dir: rig.beads_dir(),
            prefix,
        })
    }
    pub fn issues_jsonl(&self) -> PathBuf {
        self.beads_dir.join("issues.jsonl")
    }
}

/// Which tracker program to use: `GT_BEADS_CLI`, else the rig config's
/// `beads.cli`, else `bd` or `br` if on PATH; `native` (or nothing found)
/// means gastown keeps the JSONL store itself.
pub fn choose_cli(configured: Option<&str>) -> Option<PathBuf> {
    let pick = std::env::var("GT_BEADS_CLI")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| configured.filter(|v| !v.is_empty()).map(str::to_string));
    match pick.as_deref() {
        Some("native") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => ["bd", "br"].iter().find_map(|name| on_path(name)),
    }
}

/// The executable `name` on PATH, if there is one.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The tracker of `rig`, with the backend [`choose_cli`] picks.
pub fn open(rig: &Rig) -> Result<Box<dyn Tracker>> {
    let config = rig.config()?;
    let loc = Location::of(rig)?;
    Ok(match choose_cli(config.beads.cli.as_deref()) {
        Some(program) => Box::new(cli::BeadsCli::new(program, loc, rig.path.clone())),
        None => Box::new(native::Native::new(loc)),
    })
}

/// Set up a new rig's `.beads/` (called while the rig is built): `<cli> init
/// --prefix <prefix>` when a tracker CLI is chosen, else an empty `issues.jsonl`
/// for the native store.
pub fn init(rig_dir: &Path, prefix: &str) -> Result<()> {
    let loc = Location {
        beads_dir: rig_dir.join(".beads"),
        prefix: prefix.to_string(),
    };
    crate::fsio::ensure_dir(&loc.beads_dir)?;
    match choose_cli(None) {
        Some(program) => cli::BeadsCli::new(program, loc, rig_dir.to_path_buf()).init(),
        None => crate::fsio::write_if_missing(&loc.issues_jsonl(), b"").map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_load_with_defaults_nulls_and_either_comment_id() {
        let i: Issue = serde_json::from_str(
            r#"{"id":"x-1","labels":null,"dependencies":null,"comments":[{"id":3},{"id":"c"}],"owner":"o"}"#,
        )
        .unwrap();
        assert_eq!(
            (i.status.as_str(), i.priority, i.issue_type.as_str()),
            ("open", 2, "task")
        );
        assert!(i.labels.is_empty() && i.dependencies.is_empty());
        assert_eq!(i.comments[0].id, Some(CommentId::Int(3)));
        assert_eq!(i.comments[1].id, Some(CommentId::Str("c".into())));
        let out = serde_json::to_value(&i).unwrap();
        assert_eq!(out["owner"], "o");
        assert_eq!(out["comments"][0]["id"], 3);
        assert!(out.get("labels").is_none());
    }
}
