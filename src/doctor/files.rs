//! The file checks: config, homes, mail, tracker, queue, leftovers.

use std::fs;
use std::path::Path;

use super::{Ctx, Finding, Ran, wait};
use crate::confine;
use crate::error::Result;
use crate::fsio::{self, BadLine};
use crate::home::Home;
use crate::record::RigConfig;
use crate::rig::Rig;

/// Symlinks that lead out of the town: every tool refuses the paths through
/// them (protocol/README.md, "Confinement"); a person decides what to do.
pub(super) fn links(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for (link, target) in crate::confine::outward_links(ctx.town.root()) {
        out.push(Finding::error(
            "symlink-out",
            &link,
            format!(
                "a symlink to {}, out of the town; every tool refuses paths through it",
                target.display()
            ),
        ));
    }
    Ok(Some(()))
}

/// Duration fields, by file kind: a bad value is named by its field.
const TOWN_INTERVALS: &[&str] = &["heartbeat_timeout", "escalation_forward_after"];
/// Duration fields that may be `"off"` instead.
const MAY_BE_OFF: &[&str] = &["escalation_forward_after"];
const RIG_INTERVALS: &[&str] = &["worker_spawn_delay", "test_timeout", "stuck_after"];

pub(super) fn config(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    let town = ctx.town;
    if let Err(e) = town.config() {
        out.push(Finding::error(
            "town-config",
            &town.town_json(),
            field_error(&town.town_json(), TOWN_INTERVALS).unwrap_or(e.to_string()),
        ));
    }
    if let Err(e) = town.rigs() {
        out.push(Finding::error(
            "rigs-registry",
            &town.rigs_json(),
            e.to_string(),
        ));
    }
    for name in ctx.rigs.rigs.keys() {
        let rig = Rig::at(town, name);
        if !rig.path.is_dir() {
            out.push(Finding::error(
                "rig-missing",
                &rig.path,
                format!(
                    "rig {name} is registered in config/rigs.json but its directory is missing"
                ),
            ));
            continue;
        }
        let path = rig.config_path();
        match fsio::read_json::<RigConfig>(&path) {
            Ok(c) if c.name != *name => out.push(Finding::error(
                "rig-config",
                &path,
                format!(
                    "\"name\" is {:?} but the rig is registered as {name:?}",
                    c.name
                ),
            )),
            Ok(_) => {}
            Err(e) => out.push(Finding::error(
                "rig-config",
                &path,
                field_error(&path, RIG_INTERVALS).unwrap_or(e.to_string()),
            )),
        }
    }
    // Directories that look like rigs but are not registered (a crashed add, a hand copy).
    let root = town.root();
    for entry in fs::read_dir(root)
        .map_err(|e| crate::Error::io(root, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("config.json").is_file() && !ctx.rigs.rigs.contains_key(&name) {
            out.push(Finding::warning(
                "rig-unregistered",
                &entry.path(),
                format!("{name} has a config.json but is not in config/rigs.json"),
            ));
        }
    }
    Ok(Some(()))
}

/// `<path>: "<field>": <why>` for the first duration field of a JSON file
/// that does not parse; `None` if the file is not JSON or every one parses.
fn field_error(path: &Path, fields: &[&str]) -> Option<String> {
    let value: serde_json::Value = fsio::read_json(path).ok()?;
    fields.iter().find_map(|field| {
        let text = value.get(*field)?;
        let why = match text.as_str() {
            Some("off") if MAY_BE_OFF.contains(field) => return None,
            Some(s) => crate::clock::parse_duration(s).err()?.message().to_string(),
            None if text.is_null() => return None,
            None => format!("{text} is not a string"),
        };
        Some(format!("{}: \"{field}\": {why}", path.display()))
    })
}

pub(super) fn homes(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for rig in ctx.rigs() {
        for role in ["witness", "refinery"] {
            let path = rig.path.join(role);
            if !crate::home::is_home(&path) {
                let home = Home {
                    address: format!("{}/{role}", rig.name).parse()?,
                    path,
                };
                out.push(
                    Finding::error(
                        "home-missing",
                        &home.path,
                        format!("rig {} has no {role} home", rig.name),
                    )
                    .repair(ctx.fix, || home.create()),
                );
            }
        }
        if let Err(e) = rig.homes() {
            out.push(Finding::error("rig-homes", &rig.path, e.to_string()));
        }
    }
    for home in ctx.homes() {
        check_home(&home, ctx.fix, out);
    }
    Ok(Some(()))
}

fn check_home(home: &Home, fix: bool, out: &mut Vec<Finding>) {
    if !home.path.is_dir() {
        out.push(
            Finding::error(
                "home-missing",
                &home.path,
                format!("no home for {}", home.address),
            )
            .repair(fix, || home.create()),
        );
        return;
    }
    if !home.mail_dir().is_dir() {
        out.push(
            Finding::error(
                "mail-missing",
                &home.mail_dir(),
                format!("{} has no mail directory; mail to it fails", home.address),
            )
            .repair(fix, || home.create()),
        );
    }
    let state = home.state_path();
    if state.exists() {
        if let Err(e) = home.state() {
            out.push(Finding::error("agent-state", &state, e.to_string()));
        }
    } else {
        out.push(Finding::warning("agent-state", &state, "missing").repair(fix, || home.create()));
    }
}

/// Bad lines in every home's mail files. `--fix` moves the lines readers
/// skip to `<file>.quarantine`; lines that are records but break the schema
/// stay (readers still use them).
pub(super) fn mail(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for home in ctx.homes().into_iter().filter(|h| h.mail_dir().is_dir()) {
        let bad = match crate::mail::check(&home) {
            Ok(b) => b,
            Err(e) => {
                out.push(Finding::error("mail", &home.mail_dir(), e.to_string()));
                continue;
            }
        };
        let skipped = |b: &BadLine| !b.reason.starts_with("breaks the");
        let note = |b: &BadLine| {
            if skipped(b) {
                "readers skip it"
            } else {
                "readers still use it"
            }
        };
        let recheck = || crate::mail::check(&home);
        report_lines(out, &bad, "mail-line", note, skipped, ctx.fix, recheck);
    }
    Ok(Some(()))
}

/// Lines of each rig's tracker that no reader can use; `--fix` quarantines
/// them (native store only: a tracker CLI keeps its own file).
pub(super) fn beads(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for rig in ctx.rigs() {
        let tracker = match crate::beads::open(&rig) {
            Ok(t) => t,
            Err(e) => {
                out.push(Finding::error("beads", &rig.beads_dir(), e.to_string()));
                continue;
            }
        };
        if let Err(e) = tracker.all() {
            out.push(Finding::error("beads", &rig.beads_dir(), e.to_string()));
            continue;
        }
        let native = tracker.backend() == "native";
        let bad = tracker.bad_lines();
        let recheck = || -> Result<Vec<BadLine>> {
            let t = crate::beads::open(&rig)?;
            t.all()?;
            Ok(t.bad_lines())
        };
        report_lines(
            out,
            &bad,
            "beads-line",
            |_| "readers skip it, rewrites keep it",
            |_| native,
            ctx.fix,
            recheck,
        );
    }
    Ok(Some(()))
}

/// One warning per bad line, with what `note` says readers do with it; with
/// `fix`, the lines `movable` picks are moved,
/// file by file, to the quarantine under the file's lock (found again under
/// the lock by `recheck`, so a line finished meanwhile stays).
fn report_lines(
    out: &mut Vec<Finding>,
    bad: &[BadLine],
    check: &'static str,
    note: impl Fn(&BadLine) -> &'static str,
    movable: impl Fn(&BadLine) -> bool,
    fix: bool,
    recheck: impl Fn() -> Result<Vec<BadLine>>,
) {
    let mut files: Vec<&Path> = bad
        .iter()
        .filter(|b| movable(b))
        .map(|b| b.path.as_path())
        .collect();
    files.dedup();
    let mut moved = std::collections::HashMap::new();
    if fix {
        for path in files {
            let r = wait::lock(path).and_then(|_lock| {
                let now: Vec<u64> = recheck()?
                    .iter()
                    .filter(|b| b.path == path && movable(b))
                    .map(|b| b.offset)
                    .collect();
                quarantine(path, &now)?;
                Ok(now)
            });
            moved.insert(path.to_path_buf(), r.map_err(|e| e.to_string()));
        }
    }
    for b in bad {
        let f = Finding::warning(
            check,
            &b.path,
            format!("line {}: {}; {}", b.line, b.reason, note(b)),
        );
        out.push(match moved.get(&b.path) {
            None if movable(b) => f.fixable(),
            None => f,
            Some(Ok(offsets)) if offsets.contains(&b.offset) => Finding {
                message: format!(
                    "line {}: {}; moved to {}",
                    b.line,
                    b.reason,
                    quarantine_path(&b.path).display()
                ),
                fixable: true,
                fixed: true,
                ..f
            },
            Some(Ok(_)) => f,
            Some(Err(e)) => Finding {
                message: format!("{}; not moved: {e}", f.message),
                fixable: true,
                ..f
            },
        });
    }
}

/// `<file>.quarantine`, beside it.
fn quarantine_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".quarantine");
    path.with_file_name(name)
}

/// Move the lines starting at `offsets` from `path` to its quarantine file
/// (appended first, so a crash between the two writes loses nothing; a line
/// may then be in both). The caller holds `path`'s lock.
fn quarantine(path: &Path, offsets: &[u64]) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let bytes = fsio::read(path)?;
    let (mut keep, mut moved) = (Vec::with_capacity(bytes.len()), Vec::new());
    let mut at = 0usize;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if offsets.contains(&(at as u64)) {
            moved.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                moved.push(b'\n');
            }
        } else {
            keep.extend_from_slice(line);
        }
        at += line.len();
    }
    let q = quarantine_path(path);
    let mut file = crate::confine::open(
        &q,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_APPEND | nix::fcntl::OFlag::O_CREAT,
        0o644,
    )
    .map_err(|e| crate::Error::io(&q, e))?;
    std::io::Write::write_all(&mut file, &moved).map_err(|e| crate::Error::io(&q, e))?;
    fsio::write_atomic(path, &keep)
}

pub(super) fn queue(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for rig in ctx.rigs() {
        match crate::queue::Queue::of(&rig).list(&crate::queue::State::ALL) {
            Ok(q) => {
                for junk in q.junk {
                    out.push(Finding::warning(
                        "queue-junk",
                        &junk.path,
                        format!("{}; the queue skips it", junk.reason),
                    ));
                }
            }
            Err(e) => out.push(Finding::error("queue", &rig.queue_dir(), e.to_string())),
        }
    }
    Ok(Some(()))
}

/// Leftovers of interrupted writes: `.staging/` rig builds and `.<name>.tmp.<pid>.<n>`
/// files from atomic replaces, whose writer process is gone.
pub(super) fn strays(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    let root = ctx.town.root();
    let staging = root.join(".staging");
    // Confined: a `.staging` that is a link out of the town lists nothing
    // (links_out reports it), so --fix never removes what it points at.
    for name in confine::read_dir(&staging).unwrap_or_default() {
        let path = staging.join(&name);
        if writer_alive(&name.to_string_lossy()) {
            continue;
        }
        out.push(
            Finding::warning(
                "stray-staging",
                &path,
                "left by an interrupted `gt rig add`",
            )
            .repair(ctx.fix, || {
                confine::remove_dir_all(&path).map_err(|err| crate::Error::io(&path, err))
            }),
        );
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
        out.push(
            Finding::warning(
                "stray-temp",
                e.path(),
                "temp file of an interrupted atomic write",
            )
            .repair(ctx.fix, || {
                confine::remove_file(e.path()).map_err(|err| crate::Error::io(e.path(), err))
            }),
        );
    }
    Ok(Some(()))
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
