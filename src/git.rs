//! Git operations. Network operations (clone, fetch, push) run the `git` program,
//! so https, ssh, credential helpers and the user's config all work as they do in
//! a shell; git2 (built without OpenSSL) inspects local repositories.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Run `git` with `args` in `dir` (or the current directory) and return stdout.
/// Failures become one line: `git <first arg>: <git's last stderr line>`.
pub fn run(dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::debug!(?dir, ?args, "git");
    let out = cmd.output().map_err(|e| {
        Error::new(crate::error::Kind::Io, format!("cannot run git: {e}"))
            .with_hint("install git: apt-get install -y git")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim();
        let last = last.strip_prefix("fatal: ").unwrap_or(last);
        return Err(Error::new(
            crate::error::Kind::Io,
            format!("git {}: {last}", args.first().unwrap_or(&"")),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Clone `url` (any URL git accepts, or a local path) into `dest`.
pub fn clone(url: &str, dest: &Path) -> Result<()> {
    let dest_s = dest
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{}: path is not UTF-8", dest.display())))?;
    run(None, &["clone", "--quiet", "--", url, dest_s])
        .map_err(|e| Error::new(e.kind, format!("cannot clone {url}: {}", e.message())))?;
    Ok(())
}

/// Whether the work tree at `dir` has no uncommitted changes and no untracked
/// files (ignored files do not count).
pub fn is_clean(dir: &Path) -> Result<bool> {
    let repo = git2::Repository::open(dir).map_err(|e| {
        Error::invalid(format!(
            "{}: not a git repository ({})",
            dir.display(),
            e.message()
        ))
    })?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .include_ignored(false)
        .recurse_untracked_dirs(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(|e| Error::invalid(format!("{}: {}", dir.display(), e.message())))?;
    Ok(statuses.is_empty())
}
