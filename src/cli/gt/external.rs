//! The git-style dispatcher: `gt <sub>` runs gastown's own tool `<sub>` in this
//! process, a seed alias's target, or `gt-<sub>` from beside gt or from PATH.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use std::process::ExitCode;

use crate::error::{Error, Kind, Result};

use super::Cli;

/// Seed spellings that run another program's subcommand.
pub(crate) const ALIASES: &[(&str, &[&str])] = &[
    ("send", &["mail", "send"]),
    ("inbox", &["mail", "inbox"]),
    ("ready", &["issue", "ready"]),
    ("waves", &["issue", "waves"]),
    ("merge-queue", &["queue"]),
];

/// Whether `gt <sub>` runs one of gastown's own tools (a tool's name or a seed
/// alias; no built-in of gt has these names).
pub(super) fn is_tool(sub: &str) -> bool {
    let program = ALIASES
        .iter()
        .find(|(alias, _)| *alias == sub)
        .map_or(sub, |(_, target)| target[0]);
    crate::cli::TOOLS.iter().any(|(name, _)| *name == program)
}

/// Run gastown's own tool `<sub>` (or an alias's target) in this process
/// (it reports its own errors, as `gt-<sub>` would), or else `gt-<sub>` in
/// place of this process.
pub(super) fn run(args: Vec<OsString>) -> ExitCode {
    let (sub, rest) = args.split_first().expect("clap gives the subcommand name");
    let sub = sub.to_string_lossy().into_owned();
    let mut argv: Vec<OsString> = Vec::new();
    let program = match ALIASES.iter().find(|(alias, _)| *alias == sub) {
        Some((_, target)) => {
            argv.extend(target[1..].iter().map(OsString::from));
            target[0].to_string()
        }
        None => sub.clone(),
    };
    argv.extend(rest.iter().cloned());
    if let Some((_, tool)) = crate::cli::TOOLS.iter().find(|(name, _)| *name == program) {
        argv.insert(0, format!("gt-{program}").into());
        return tool(argv);
    }
    crate::cli::run("gt", || exec(&sub, &program, &argv))
}

/// Replace this process with `gt-<program>`; returns only on failure.
fn exec(sub: &str, program: &str, argv: &[OsString]) -> Result<()> {
    let Some(path) = find_program(&format!("gt-{program}")) else {
        // Quoted candidates, so the hint reads like the message: 'status'.
        let known: Vec<String> = list_commands().iter().map(|c| format!("'{c}'")).collect();
        return Err(Error::new(
            Kind::UnknownCommand,
            format!(
                "unknown command '{sub}': no built-in and no gt-{program} beside gt or on PATH"
            ),
        )
        .suggest(&format!("'{sub}'"), known.iter().map(String::as_str)));
    };
    tracing::debug!(?path, ?argv, "exec");
    let err = std::process::Command::new(&path).args(argv).exec();
    Err(Error::io(&path, err))
}

/// Directories searched for `gt-*` programs: beside the running `gt`, then PATH.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_program(name: &str) -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Built-in subcommands, aliases and `gt-*` programs found, sorted.
pub(super) fn list_commands() -> BTreeSet<String> {
    use clap::CommandFactory;
    let mut names: BTreeSet<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.extend(ALIASES.iter().map(|(a, _)| a.to_string()));
    names.extend(crate::cli::TOOLS.iter().map(|(t, _)| t.to_string()));
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if let Some(sub) = name.to_str().and_then(|n| n.strip_prefix("gt-"))
                && !sub.is_empty()
                && is_executable(&e.path())
                && !sub.contains('.')
            {
                names.insert(sub.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `gt::main` sends a tool's name straight to the tool: no built-in of
    /// gt may have one of those names.
    #[test]
    fn no_builtin_is_named_like_a_tool() {
        let gt = super::Cli::command();
        let names = super::ALIASES
            .iter()
            .map(|(alias, _)| *alias)
            .chain(crate::cli::TOOLS.iter().map(|(name, _)| *name));
        for name in names {
            assert!(super::is_tool(name), "{name}");
            assert!(
                gt.find_subcommand(name).is_none(),
                "gt has a built-in {name}"
            );
        }
        assert!(!super::is_tool("status"));
    }
}
