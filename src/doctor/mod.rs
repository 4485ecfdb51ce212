//! `gt doctor`: find what crashes and hands left wrong in the tree — files and
//! work alike — and fix what is safe to fix. Every check is listed with its
//! result. Checks only read; `fix` repairs idempotently, never deletes data
//! (bad lines and broken clones are moved aside), and waits a bounded time for
//! a lock or the tmux server, so doctor never hangs.
//!
//! One module per family of checks: `files` (config, homes, mail, tracker,
//! queue, strays), `work` (sessions, zombies, claims, heartbeats, loops), `clones`
//! (git state).

mod clones;
mod files;
mod wait;
mod work;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::home::Home;
use crate::record::RigsRegistry;
use crate::town::Town;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is broken or lost until acted on: doctor exits 1 while one remains.
    Error,
    /// Something is off but nothing is lost: a torn line, a stray temp file.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Short name of the problem, e.g. `rig-config`, `mail-line`.
    pub check: &'static str,
    pub severity: Severity,
    pub path: PathBuf,
    pub message: String,
    /// Whether `gt doctor --fix` would repair it.
    pub fixable: bool,
    /// Set by `--fix` when repaired.
    pub fixed: bool,
}

impl Finding {
    fn new(
        check: &'static str,
        severity: Severity,
        path: &Path,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            severity,
            path: path.to_path_buf(),
            message: message.into(),
            fixable: false,
            fixed: false,
        }
    }
    fn error(check: &'static str, path: &Path, message: impl Into<String>) -> Self {
        Finding::new(check, Severity::Error, path, message)
    }
    fn warning(check: &'static str, path: &Path, message: impl Into<String>) -> Self {
        Finding::new(check, Severity::Warning, path, message)
    }
    fn fixable(mut self) -> Self {
        self.fixable = true;
        self
    }
    /// With `fix`, run `repair`; the finding is fixed when it succeeds, and a
    /// failed repair is told in the message.
    fn repair(mut self, fix: bool, repair: impl FnOnce() -> Result<()>) -> Self {
        self.fixable = true;
        if fix {
            match repair() {
                Ok(()) => self.fixed = true,
                Err(e) => self.message = format!("{}; repair failed: {e}", self.message),
            }
        }
        self
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Every problem it found was repaired.
    Fixed,
    Warning,
    Error,
    /// Could not run here (no tmux installed).
    Skipped,
}

/// One check that ran.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// What it looks at.
    pub about: &'static str,
    pub result: Outcome,
    /// Problems found, and how many of them were repaired.
    pub problems: usize,
    pub fixed: usize,
}

/// Everything doctor did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether an error remains: doctor's exit status is 1 then.
    pub fn has_errors(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Error && !f.fixed)
    }
    /// Problems not repaired.
    pub fn left(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.fixed)
    }
}

/// What every check may use.
struct Ctx<'a> {
    town: &'a Town,
    fix: bool,
    rigs: RigsRegistry,
}

impl Ctx<'_> {
    /// Every home that exists (mayor, overseer, each registered rig's agents).
    fn homes(&self) -> Vec<Home> {
        let mut out = Vec::new();
        for addr in [
            crate::address::Address::Mayor,
            crate::address::Address::Overseer,
        ] {
            out.push(Home {
                path: self.town.root().join(addr.rel_path()),
                address: addr,
            });
        }
        for name in self.rigs.rigs.keys() {
            out.extend(
                crate::rig::Rig::at(self.town, name)
                    .homes()
                    .unwrap_or_default(),
            );
        }
        out
    }
    fn rigs(&self) -> Vec<crate::rig::Rig> {
        self.rigs
            .rigs
            .keys()
            .map(|n| crate::rig::Rig::at(self.town, n))
            .filter(|r| r.path.is_dir())
            .collect()
    }
}

/// A check's result: `None` when it could not run here.
type Ran = Result<Option<()>>;

/// A check: its name, what it looks at, and the function that runs it.
type CheckFn = fn(&Ctx, &mut Vec<Finding>) -> Ran;

/// The checks, in the order they run: files first, so that work checks see
/// repaired homes; sessions before claims, so a dead worker's claim is released once.
const CHECKS: &[(&str, &str, CheckFn)] = &[
    (
        "config",
        "config/town.json, config/rigs.json and every rig's config.json parse, values included",
        files::config,
    ),
    ("links", "no symlink leads out of the town", files::links),
    (
        "homes",
        "every agent home has its mail/, a readable state.json",
        files::homes,
    ),
    (
        "mail",
        "every line of every mail file is readable",
        files::mail,
    ),
    (
        "beads",
        "every rig's tracker reads, line by line",
        files::beads,
    ),
    (
        "queue",
        "every merge queue holds only entries",
        files::queue,
    ),
    (
        "clones",
        "every clone is there and valid; the refinery's is clean on the default branch",
        clones::check,
    ),
    (
        "sessions",
        "no agent is `working` without a live session",
        work::sessions,
    ),
    (
        "zombies",
        "every tmux session on the town's socket and every process group started for the town is recorded in a state.json",
        work::zombies,
    ),
    (
        "claims",
        "no issue stays in_progress for an idle, asleep or missing worker",
        work::claims,
    ),
    (
        "heartbeats",
        "live workers beat; none is stuck",
        work::heartbeats,
    ),
    (
        "loops",
        "the daemon runs while sessions do, each rig's Witness loop while its polecats work, its Refinery loop while merges wait",
        work::loops,
    ),
    (
        "strays",
        "no leftovers of interrupted writes",
        files::strays,
    ),
];

/// Run every check; with `fix`, repair what is safe and mark it fixed.
pub fn run(town: &Town, fix: bool) -> Result<Report> {
    let ctx = Ctx {
        town,
        fix,
        rigs: town.rigs().unwrap_or_default(),
    };
    let mut report = Report {
        checks: Vec::new(),
        findings: Vec::new(),
    };
    for (name, about, check) in CHECKS {
        let mut found = Vec::new();
        let ran = check(&ctx, &mut found)?;
        let problems = found.len();
        let fixed = found.iter().filter(|f| f.fixed).count();
        let left = |sev| found.iter().any(|f| !f.fixed && f.severity == sev);
        let result = if ran.is_none() {
            Outcome::Skipped
        } else if left(Severity::Error) {
            Outcome::Error
        } else if left(Severity::Warning) {
            Outcome::Warning
        } else if fixed > 0 {
            Outcome::Fixed
        } else {
            Outcome::Ok
        };
        report.checks.push(Check {
            name,
            about,
            result,
            problems,
            fixed,
        });
        report.findings.extend(found);
    }
    Ok(report)
}
