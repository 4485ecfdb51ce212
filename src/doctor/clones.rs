//! Git state of every clone: the Refinery's (clean, on the default branch),
//! the rig's Mayor clone, every polecat's and crew member's. A missing clone
//! is re-cloned; a broken one is moved aside first, so nothing is lost.

use std::path::Path;

use super::{Ctx, Finding, Ran};
use crate::error::Result;
use crate::git;
use crate::rig::Rig;

pub(super) fn check(ctx: &Ctx, out: &mut Vec<Finding>) -> Ran {
    for rig in ctx.rigs() {
        if rig.config().is_err() {
            continue; // reported by the config check
        }
        let url = match rig.git_url(ctx.town) {
            Ok(url) => url,
            Err(e) => {
                // Nothing is cloned from a url only one file names.
                out.push(Finding::error("rig-url", &rig.config_path(), e.to_string()));
                continue;
            }
        };
        let main = rig.main_clone();
        if present(ctx, out, &main, &url, None, "the refinery's main clone") {
            refinery_state(ctx, out, &main);
            git_locks(&rig, out);
            interrupted(ctx, &rig, out);
        }
        present(
            ctx,
            out,
            &rig.path.join("mayor/rig"),
            &url,
            None,
            "the rig's mayor clone",
        );
        for home in workers(&rig) {
            // A live session works in its clone: never moved under it.
            let live = home.state().is_ok_and(|s| crate::session::state_alive(&s));
            let branch = match &home.address {
                crate::address::Address::Polecat { name, .. } => Some(crate::polecat::branch(name)),
                _ => None,
            };
            let what = format!("{}'s clone", home.address);
            if live {
                if git::open(&home.clone_dir()).is_err() {
                    out.push(Finding::error(
                        "clone",
                        &home.clone_dir(),
                        format!("{what} is missing or not a git repository (its session is live: not re-cloned)"),
                    ));
                }
                continue;
            }
            present(ctx, out, &home.clone_dir(), &url, branch.as_deref(), &what);
        }
    }
    Ok(Some(()))
}

fn workers(rig: &Rig) -> Vec<crate::home::Home> {
    rig.homes()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| {
            matches!(
                h.address.role(),
                crate::address::Role::Polecat | crate::address::Role::Crew
            )
        })
        .collect()
}

/// Whether `dir` is a valid clone; if not, a finding whose repair clones
/// `url` there (on a new `branch` if given), moving a broken one aside.
fn present(
    ctx: &Ctx,
    out: &mut Vec<Finding>,
    dir: &Path,
    url: &str,
    branch: Option<&str>,
    what: &str,
) -> bool {
    if git::open(dir).is_ok() {
        return true;
    }
    // A clone git would leave the town through (a `.git` file naming a
    // repository outside) is as unusable as a broken one.
    let refused = git::check_inside(dir).err();
    let exists = std::fs::symlink_metadata(dir).is_ok();
    let aside = dir.with_file_name(format!(
        "rig.broken.{}",
        crate::clock::now().strftime("%Y%m%dT%H%M%S")
    ));
    let msg = if let Some(e) = refused.filter(|_| exists) {
        format!(
            "{what} is refused ({e}); --fix moves it to {} and clones {url} afresh",
            aside.display()
        )
    } else if exists {
        format!(
            "{what} is not a git repository; --fix moves it to {} and clones {url} afresh",
            aside.display()
        )
    } else {
        format!("{what} is missing; --fix clones {url}")
    };
    out.push(Finding::error("clone", dir, msg).repair(ctx.fix, || {
        if exists {
            crate::confine::rename(dir, &aside, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
                .map_err(|e| crate::Error::io(dir, e))?;
        }
        git::clone(url, dir)?;
        if let Some(b) = branch {
            git::run(Some(dir), &["checkout", "-q", "-b", b])?;
        }
        Ok(())
    }));
    false
}

/// The Refinery merges on the default branch of a clean clone. A clean clone
/// on another branch is switched back (the branch stays); a dirty one is a
/// person's to commit or discard.
fn refinery_state(ctx: &Ctx, out: &mut Vec<Finding>, main: &Path) {
    let dirty = git::dirty_files(main).unwrap_or_default();
    if !dirty.is_empty() {
        out.push(Finding::error(
            "refinery-dirty",
            main,
            format!(
                "the refinery's clone has {} uncommitted file(s) ({}); commit or discard them by hand",
                dirty.len(),
                dirty.join(", ")
            ),
        ));
    }
    let Ok(default) = git::default_branch(main, "origin") else {
        return;
    };
    let current = git::current_branch(main).ok().flatten();
    if current.as_deref() == Some(default.as_str()) {
        return;
    }
    let on = current.map_or("a detached HEAD".to_string(), |b| format!("branch {b}"));
    let f = Finding::error(
        "refinery-branch",
        main,
        format!("the refinery's clone is on {on}, not {default}"),
    );
    out.push(if dirty.is_empty() {
        f.repair(ctx.fix, || checkout(main, &default))
    } else {
        f
    });
}

/// Git lock files in the refinery's clone while no landing runs: a killed
/// landing's, which the next landing removes.
fn git_locks(rig: &Rig, out: &mut Vec<Finding>) {
    match crate::land::stale_locks(rig) {
        Ok(files) => out.extend(files.iter().map(|f| {
            Finding::warning(
                "git-lock",
                f,
                "a git lock file while no landing runs (a killed landing's); the next landing removes it",
            )
        })),
        Err(e) => out.push(Finding::error("git-lock", &rig.main_clone(), e.to_string())),
    }
}

/// A `gt land --direct` that died between its push and its follow-ups left
/// its record: `--fix` does what the next landing would, finish or drop it.
fn interrupted(ctx: &Ctx, rig: &Rig, out: &mut Vec<Finding>) {
    let path = crate::land::intent_path(rig);
    let intent = match crate::land::interrupted(rig) {
        Ok(Some(i)) => i,
        Ok(None) => return,
        Err(e) => return out.push(Finding::error("direct-landing", &path, e.to_string())),
    };
    let f = Finding::warning(
        "direct-landing",
        &path,
        format!(
            "gt land --direct of {} ({} at {}) died before finishing; --fix (or the next gt land --direct on rig {}) finishes it if its push reached origin, else drops it",
            intent.polecat,
            intent.branch,
            crate::land::short(&intent.tip),
            rig.name
        ),
    );
    out.push(f.repair(ctx.fix, || {
        let held = crate::land::try_hold(rig, &mut |_| {})?.ok_or_else(|| {
            crate::Error::conflict("a landing took the lock meanwhile: it finishes the record")
        })?;
        match crate::land::finish_interrupted(ctx.town, &held)? {
            Some(i) if !i.notes.is_empty() => Err(crate::Error::conflict(i.notes.join("; "))),
            _ => Ok(()),
        }
    }));
}

fn checkout(dir: &Path, branch: &str) -> Result<()> {
    git::run(Some(dir), &["checkout", "-q", branch]).map(drop)
}
