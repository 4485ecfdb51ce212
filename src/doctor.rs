//! `gt doctor`: find what crashes and hands left wrong in the tree, and fix what
//! is safe to fix. Checks only read; `fix` changes nothing that another agent
//! may still be writing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::fsio;
use crate::home::Home;
use crate::record::{RigConfig, RigsRegistry};
use crate::rig::Rig;
use crate::town::Town;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is broken: a file no tool can read, a rig that is half there.
    Error,
    /// Something is off but nothing is lost: a torn line, a stray temp file.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Short name of the check, e.g. `rig-config`, `jsonl-line`.
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
    fn fixable(mut self) -> Self {
        self.fixable = true;
        self
    }
}

/// Run every check; with `fix`, repair what is safe and mark it fixed.
pub fn run(town: &Town, fix: bool) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    check_links(town, &mut out);
    check_config(town, &mut out);
    let rigs = town.rigs().unwrap_or_default();
    check_rigs(town, &rigs, fix, &mut out)?;
    for home in [
        crate::address::Address::Mayor,
        crate::address::Address::Overseer,
    ] {
        let h = Home {
            path: town.root().join(home.rel_path()),
            address: home,
        };
        check_home(&h, fix, &mut out)?;
    }
    check_strays(town.root(), fix, &mut out)?;
    Ok(out)
}

/// Symlinks that lead out of the town: every tool refuses the paths through
/// them (protocol/README.md, "Confinement"); a person decides what to do.
fn check_links(town: &Town, out: &mut Vec<Finding>) {
    for (link, target) in crate::confine::outward_links(town.root()) {
        out.push(Finding::new(
            "symlink-out",
            Severity::Error,
            &link,
            format!(
                "a symlink to {}, out of the town; every tool refuses paths through it",
                target.display()
            ),
        ));
    }
}

fn check_config(town: &Town, out: &mut Vec<Finding>) {
    if let Err(e) = town.config() {
        out.push(Finding::new(
            "town-config",
            Severity::Error,
            &town.town_json(),
            e.to_string(),
        ));
    }
    if let Err(e) = town.rigs() {
        out.push(Finding::new(
            "rigs-registry",
            Severity::Error,
            &town.rigs_json(),
            e.to_string(),
        ));
    }
}

fn check_rigs(town: &Town, rigs: &RigsRegistry, fix: bool, out: &mut Vec<Finding>) -> Result<()> {
    for name in rigs.rigs.keys() {
        let rig = Rig::at(town, name);
        if !rig.path.is_dir() {
            out.push(Finding::new(
                "rig-missing",
                Severity::Error,
                &rig.path,
                format!(
                    "rig {name} is registered in config/rigs.json but its directory is missing"
                ),
            ));
            continue;
        }
        match fsio::read_json::<RigConfig>(&rig.config_path()) {
            Ok(c) if c.name != *name => out.push(Finding::new(
                "rig-config",
                Severity::Error,
                &rig.config_path(),
                format!(
                    "\"name\" is {:?} but the rig is registered as {name:?}",
                    c.name
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Finding::new(
                "rig-config",
                Severity::Error,
                &rig.config_path(),
                e.to_string(),
            )),
        }
        let main = rig.main_clone();
        if git2::Repository::open(&main).is_err() {
            out.push(Finding::new(
                "rig-clone",
                Severity::Error,
                &main,
                "the refinery's main clone is missing or not a git repository",
            ));
        }
        match crate::land::stale_locks(&rig) {
            Ok(files) => out.extend(files.iter().map(|f| {
                Finding::new(
                    "git-lock",
                    Severity::Warning,
                    f,
                    "a git lock file while no landing runs (a killed landing's); the next landing removes it",
                )
            })),
            Err(e) => out.push(Finding::new("git-lock", Severity::Error, &main, e.to_string())),
        }
        match rig.homes() {
            Ok(homes) => {
                for home in homes {
                    check_home(&home, fix, out)?;
                }
            }
            Err(e) => out.push(Finding::new(
                "rig-homes",
                Severity::Error,
                &rig.path,
                e.to_string(),
            )),
        }
        check_tracker(&rig, out);
        let queue = match crate::queue::Queue::of(&rig).list(&crate::queue::State::ALL) {
            Ok(q) => q,
            Err(e) => {
                out.push(Finding::new(
                    "queue",
                    Severity::Error,
                    &rig.queue_dir(),
                    e.to_string(),
                ));
                Default::default()
            }
        };
        for junk in queue.junk {
            out.push(Finding::new(
                "queue-junk",
                Severity::Warning,
                &junk.path,
                format!("{}; the queue skips it", junk.reason),
            ));
        }
        for role in ["witness", "refinery"] {
            let p = rig.path.join(role);
            if !crate::home::is_home(&p) {
                let addr = format!("{name}/{role}").parse()?;
                let mut f = Finding::new(
                    "home-missing",
                    Severity::Error,
                    &p,
                    format!("rig {name} has no {role} home"),
                )
                .fixable();
                if fix {
                    f.fixed = Home {
                        address: addr,
                        path: p,
                    }
                    .create()
                    .is_ok();
                }
                out.push(f);
            }
        }
    }
    // Directories that look like rigs but are not registered (a crashed add, a hand copy).
    for entry in fs::read_dir(town.root())
        .map_err(|e| crate::Error::io(town.root(), e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("config.json").is_file() && !rigs.rigs.contains_key(&name) {
            out.push(Finding::new(
                "rig-unregistered",
                Severity::Warning,
                &entry.path(),
                format!("{name} has a config.json but is not in config/rigs.json"),
            ));
        }
    }
    Ok(())
}

fn check_home(home: &Home, fix: bool, out: &mut Vec<Finding>) -> Result<()> {
    if !home.path.is_dir() {
        let mut f = Finding::new(
            "home-missing",
            Severity::Error,
            &home.path,
            format!("no home for {}", home.address),
        )
        .fixable();
        if fix {
            f.fixed = home.create().is_ok();
        }
        out.push(f);
        return Ok(());
    }
    let state = home.state_path();
    if state.exists() {
        if let Err(e) = home.state() {
            out.push(Finding::new(
                "agent-state",
                Severity::Error,
                &state,
                e.to_string(),
            ));
        }
    } else {
        let mut f = Finding::new("agent-state", Severity::Warning, &state, "missing").fixable();
        if fix {
            f.fixed = home.create().is_ok();
        }
        out.push(f);
    }
    let bad_mail = crate::mail::check(home).unwrap_or_else(|e| {
        out.push(Finding::new(
            "mail",
            Severity::Error,
            &home.mail_dir(),
            e.to_string(),
        ));
        Vec::new()
    });
    for bad in bad_mail {
        out.push(Finding::new(
            "mail-line",
            Severity::Warning,
            &bad.path,
            format!("line {}: {}; readers skip it", bad.line, bad.reason),
        ));
    }
    Ok(())
}

/// Lines of the rig's tracker that no reader can use.
fn check_tracker(rig: &Rig, out: &mut Vec<Finding>) {
    let tracker = match crate::beads::open(rig) {
        Ok(t) => t,
        Err(e) => {
            return out.push(Finding::new(
                "beads",
                Severity::Error,
                &rig.beads_dir(),
                e.to_string(),
            ));
        }
    };
    if let Err(e) = tracker.all() {
        return out.push(Finding::new(
            "beads",
            Severity::Error,
            &rig.beads_dir(),
            e.to_string(),
        ));
    }
    for bad in tracker.bad_lines() {
        out.push(Finding::new(
            "beads-line",
            Severity::Warning,
            &bad.path,
            format!(
                "line {}: {}; readers skip it, rewrites keep it",
                bad.line, bad.reason
            ),
        ));
    }
}

/// Leftovers of interrupted writes: `.staging/` rig builds and `.<name>.tmp.<pid>.<n>`
/// files from atomic replaces, whose writer process is gone.
fn check_strays(root: &Path, fix: bool, out: &mut Vec<Finding>) -> Result<()> {
    let staging = root.join(".staging");
    if let Ok(entries) = fs::read_dir(&staging) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if writer_alive(&name) {
                continue;
            }
            let mut f = Finding::new(
                "stray-staging",
                Severity::Warning,
                &e.path(),
                "left by an interrupted `gt rig add`",
            )
            .fixable();
            if fix {
                f.fixed = fs::remove_dir_all(e.path()).is_ok();
            }
            out.push(f);
        }
    }
    let walker = walkdir::WalkDir::new(root).into_iter().filter_entry(|e| {
        // Never descend into clones or the staging area.
        let n = e.file_name();
        n != ".git" && n != "rig" && n != ".staging"
    });
    for e in walker.flatten() {
        let name = e.file_name().to_string_lossy();
        if !(e.file_type().is_file() && name.starts_with('.') && name.contains(".tmp."))
            || writer_alive(&name)
        {
            continue;
        }
        let mut f = Finding::new(
            "stray-temp",
            Severity::Warning,
            e.path(),
            "temp file of an interrupted atomic write",
        )
        .fixable();
        if fix {
            f.fixed = fs::remove_file(e.path()).is_ok();
        }
        out.push(f);
    }
    Ok(())
}

/// Whether the process whose pid is the second-to-last dot-field of `name`
/// (`x.<pid>.<n>`) still runs: its temp files may still be in use.
fn writer_alive(name: &str) -> bool {
    let mut fields = name.rsplit('.');
    fields.next();
    match fields.next().and_then(|p| p.parse::<i32>().ok()) {
        Some(pid) if pid > 0 => Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}
