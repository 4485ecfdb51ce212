//! The CLI backend: `bd` (beads) or `br` (beads_rust) own the store; gastown
//! calls them with `--json` and `BEADS_DIR=<rig>/.beads`, from the rig's
//! directory, and never writes their files. `waves` reads the whole tracker
//! with `<cli> export -o <temp file>`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    Issue, ListFilter, Location, NewIssue, ReadyFilter, Tracker, Update, check_claim,
    check_release, check_word,
};
use crate::error::{Error, IoContext, Kind, Result};
use crate::fsio::{self, BadLine};

pub struct BeadsCli {
    program: PathBuf,
    loc: Location,
    rig_dir: PathBuf,
}

impl BeadsCli {
    pub fn new(program: PathBuf, loc: Location, rig_dir: PathBuf) -> BeadsCli {
        BeadsCli {
            program,
            loc,
            rig_dir,
        }
    }

    fn name(&self) -> String {
        self.program.display().to_string()
    }

    /// Run the program; stdout on success, else one line naming the command and
    /// the program's last stderr line.
    fn run(&self, args: &[String]) -> Result<Vec<u8>> {
        tracing::debug!(program = %self.name(), ?args, "beads cli");
        // It opens its files by name: their real paths must be in the town.
        for dir in [&self.rig_dir, &self.loc.beads_dir] {
            crate::confine::check(dir).at(dir)?;
        }
        let out = Command::new(&self.program)
            .args(args)
            .env("BEADS_DIR", &self.loc.beads_dir)
            .current_dir(&self.rig_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                Error::new(Kind::Io, format!("cannot run {}: {e}", self.name())).with_hint(
                    "set beads.cli in the rig's config.json, or GT_BEADS_CLI=native to keep the tracker without bd",
                )
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(Error::new(
                Kind::Io,
                format!(
                    "{} {}: exit {}: {}",
                    self.name(),
                    args.first().map_or("", String::as_str),
                    out.status
                        .code()
                        .map_or("by signal".into(), |c| c.to_string()),
                    last.unwrap_or("(no message)").trim()
                ),
            ));
        }
        Ok(out.stdout)
    }

    /// Run with `--json` and parse what it prints.
    fn json<T: DeserializeOwned>(&self, mut args: Vec<String>) -> Result<T> {
        args.push("--json".into());
        let out = self.run(&args)?;
        serde_json::from_slice(&out).map_err(|e| self.unexpected(&args, e))
    }

    fn unexpected(&self, args: &[String], e: serde_json::Error) -> Error {
        Error::invalid(format!(
            "{} {}: unexpected output ({e})",
            self.name(),
            args.join(" ")
        ))
    }

    /// A list of issues.
    fn many(&self, args: Vec<String>) -> Result<Vec<Issue>> {
        let v: Vec<Value> = self.json(args.clone())?;
        v.into_iter()
            .map(|i| serde_json::from_value(edges(i)).map_err(|e| self.unexpected(&args, e)))
            .collect()
    }

    /// One issue: `bd` prints an object or a one-element array.
    fn one(&self, args: Vec<String>) -> Result<Issue> {
        let v = match self.json(args.clone())? {
            Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
            v => v,
        };
        serde_json::from_value(edges(v)).map_err(|e| self.unexpected(&args, e))
    }

    /// `<cli> init --prefix <prefix>` for a new rig.
    pub fn init(&self) -> Result<()> {
        self.run(&strings(&["init", "--prefix", &self.loc.prefix]))
            .map(|_| ())
    }
}

/// `bd show --json` lists an issue's dependencies as the issues it depends on,
/// each with a `dependency_type`; turn those into beads' edge records
/// `{issue_id, depends_on_id, type}`.
fn edges(mut issue: Value) -> Value {
    let id = issue.get("id").cloned().unwrap_or(Value::Null);
    if let Some(Value::Array(deps)) = issue.get_mut("dependencies") {
        for d in deps.iter_mut() {
            if d.get("depends_on_id").is_none()
                && let Some(on) = d.get("id").cloned()
            {
                let kind = d
                    .get("dependency_type")
                    .cloned()
                    .unwrap_or_else(|| "blocks".into());
                *d = serde_json::json!({"issue_id": id, "depends_on_id": on, "type": kind});
            }
        }
    }
    issue
}

static EXPORT_SEQ: AtomicU64 = AtomicU64::new(0);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Append `--flag value` when the value is set.
fn opt(args: &mut Vec<String>, flag: &str, value: Option<impl ToString>) {
    if let Some(v) = value {
        args.push(flag.into());
        args.push(v.to_string());
    }
}

impl Tracker for BeadsCli {
    fn backend(&self) -> String {
        self.name()
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<Issue>> {
        let mut args = strings(&["list"]);
        if filter.all {
            args.push("--all".into());
        }
        opt(&mut args, "--status", filter.status.as_ref());
        opt(&mut args, "--assignee", filter.assignee.as_ref());
        opt(&mut args, "--type", filter.issue_type.as_ref());
        opt(&mut args, "--parent", filter.parent.as_ref());
        let issues = self.many(args)?;
        Ok(issues.into_iter().filter(|i| filter.matches(i)).collect())
    }

    fn show(&self, id: &str) -> Result<Issue> {
        self.one(strings(&["show", id]))
    }

    fn ready(&self, filter: &ReadyFilter) -> Result<Vec<Issue>> {
        let mut args = strings(&["ready"]);
        opt(&mut args, "--parent", filter.parent.as_ref());
        // bd's default limit is 10; 0 asks for all.
        opt(&mut args, "--limit", Some(filter.limit.unwrap_or(0)));
        self.many(args)
    }

    /// `export -o <temp file>`: bd treats an export to stdout as a flush of its
    /// own JSONL and marks its changes clean, so never export to stdout.
    fn all(&self) -> Result<Vec<Issue>> {
        let tmp = std::env::temp_dir().join(format!(
            "gt-beads-export.{}.{}.jsonl",
            std::process::id(),
            EXPORT_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp_arg = tmp.display().to_string();
        let ran = self.run(&strings(&["export", "-o", &tmp_arg]));
        let out = ran.and_then(|_| std::fs::read(&tmp).at(&tmp));
        let _ = std::fs::remove_file(&tmp);
        fsio::split_lines(&out?)
            .iter()
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .enumerate()
            .map(|(n, l)| {
                serde_json::from_slice(l).map_err(|e| {
                    Error::invalid(format!("{} export: record {}: {e}", self.name(), n + 1))
                })
            })
            .collect()
    }

    fn create(&self, new: &NewIssue) -> Result<Issue> {
        new.check()?;
        let mut args = strings(&["create", &new.title]);
        opt(&mut args, "--description", new.description.as_ref());
        opt(&mut args, "--priority", new.priority);
        opt(&mut args, "--type", new.issue_type.as_ref());
        opt(&mut args, "--assignee", new.assignee.as_ref());
        opt(
            &mut args,
            "--labels",
            Some(new.labels.join(",")).filter(|l| !l.is_empty()),
        );
        opt(&mut args, "--parent", new.parent.as_ref());
        self.one(args)
    }

    fn update(&self, id: &str, update: &Update) -> Result<Issue> {
        update.check()?;
        let mut args = strings(&["update", id]);
        opt(&mut args, "--status", update.status.as_ref());
        opt(&mut args, "--assignee", update.assignee.as_ref());
        opt(&mut args, "--priority", update.priority);
        opt(&mut args, "--title", update.title.as_ref());
        opt(&mut args, "--description", update.description.as_ref());
        self.one(args)
    }

    fn close(&self, id: &str, reason: Option<&str>) -> Result<Issue> {
        let current = self.show(id)?;
        if current.status == "closed" {
            return Ok(current);
        }
        let mut args = strings(&["close", id]);
        opt(&mut args, "--reason", reason);
        self.one(args)
    }

    fn add_dep(&self, id: &str, on: &str, kind: &str) -> Result<Issue> {
        check_word("dependency type", kind)?;
        let _: Value = self.json(strings(&["dep", "add", id, on, "--type", kind]))?;
        self.show(id)
    }

    /// Check and set under gastown's lock `.beads/issues.lock`, so claims made
    /// through gastown are atomic among themselves.
    fn claim(&self, id: &str, worker: &str) -> Result<Issue> {
        let _lock = fsio::lock_for(&self.loc.issues_jsonl())?;
        let issue = self.show(id)?;
        check_claim(&issue, worker)?;
        if issue.status == "in_progress" {
            return Ok(issue);
        }
        self.one(strings(&[
            "update",
            id,
            "--status",
            "in_progress",
            "--assignee",
            worker,
        ]))
    }

    fn release(&self, id: &str, worker: &str) -> Result<Issue> {
        let _lock = fsio::lock_for(&self.loc.issues_jsonl())?;
        let issue = self.show(id)?;
        check_release(&issue, worker)?;
        let mut args = strings(&["update", id, "--assignee", ""]);
        if issue.status == "in_progress" || issue.status == "hooked" {
            args.extend(strings(&["--status", "open"]));
        }
        self.one(args)
    }

    fn bad_lines(&self) -> Vec<BadLine> {
        Vec::new()
    }
}
