//! Records of the long-running loops (protocol/README.md, "Run files"): while
//! `gt daemon run`, `gt witness run <rig>` or `gt refinery process <rig>` runs, it
//! holds an exclusive `flock` on its run file, which holds its pid. A reader
//! knows whether the loop runs without asking it (`flock -n <file> true`
//! fails while it does), a second copy of the loop is refused, and `gt stop`
//! can stop it. A loop that dies, even by `kill -9`, releases the lock.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::confine;
use crate::error::{Error, IoContext, Result};
use crate::rig::Rig;
use crate::town::Town;

/// The run file of the town's daemon.
pub fn daemon(town: &Town) -> PathBuf {
    town.config_dir().join("daemon.run")
}

/// The run file of a rig's Witness loop.
pub fn witness(rig: &Rig) -> PathBuf {
    rig.path.join("witness/run.lock")
}

/// The run file of a rig's Refinery loop.
pub fn refinery(rig: &Rig) -> PathBuf {
    rig.path.join("refinery/run.lock")
}

/// A held run file: released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Running {
    _file: std::fs::File,
}

/// Take `path` for this process, which runs `what`; refused (conflict) while
/// another process holds it.
pub fn hold(path: &Path, what: &str) -> Result<Running> {
    let mut file = confine::open(path, OFlag::O_RDWR | OFlag::O_CREAT, 0o666).at(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = holder(path).map_or_else(|| "?".to_string(), |p| p.to_string());
            return Err(Error::conflict(format!(
                "{what} is already running (pid {pid}, holds {})",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
    }
    file.set_len(0).at(path)?;
    writeln!(file, "{}", std::process::id()).at(path)?;
    Ok(Running { _file: file })
}

/// The pid of the process holding `path`, if one does (0 when its pid cannot
/// be read). Never creates the file.
pub fn holder(path: &Path) -> Option<u32> {
    let mut file = confine::open(path, OFlag::O_RDONLY, 0).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut pid);
            Some(pid.trim().parse().unwrap_or(0))
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Stop the loop holding `path`: SIGTERM, then SIGKILL after `grace`; its pid,
/// or `None` if nothing held it.
pub fn stop(path: &Path, grace: std::time::Duration) -> Option<u32> {
    use nix::sys::signal::Signal;
    let pid = holder(path).filter(|p| *p > 0 && *p != std::process::id())?;
    let target = crate::session::Pidfd::open(pid)?;
    // The pid was read from the file: if that loop ended and the pid went to
    // another process before the open, the lock is no longer held by it.
    if holder(path) != Some(pid) {
        return None;
    }
    target.signal(Signal::SIGTERM);
    if !target.wait(grace) {
        target.signal(Signal::SIGKILL);
        target.wait(grace);
    }
    Some(pid)
}
