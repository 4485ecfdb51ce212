//! Bounded waits: doctor never hangs on a file another tool holds locked, or
//! on a tmux server that does not answer.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Kind, Result};
use crate::fsio::{self, Lock};

/// How long doctor waits for a lock or a tmux answer.
pub(super) const WAIT: Duration = Duration::from_secs(3);

/// The sidecar lock of data file `data`, waited for up to [`WAIT`]. The
/// waiting thread is left behind on a timeout; if it gets the lock later, it
/// drops it at once (nobody receives it).
pub(super) fn lock(data: &Path) -> Result<Lock> {
    let path = fsio::lock_path(data);
    if let Some(l) = fsio::try_lock_file(&path)? {
        return Ok(l);
    }
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(fsio::lock_file(&p));
    });
    rx.recv_timeout(WAIT).unwrap_or_else(|_| {
        Err(Error::new(
            Kind::Io,
            format!(
                "{}: held by another process for over {}s; left alone",
                path.display(),
                WAIT.as_secs()
            ),
        ))
    })
}

/// Run `cmd` for at most [`WAIT`]; `None` (and the command killed) if it
/// takes longer.
pub(super) fn output(mut cmd: Command) -> Result<Option<Output>> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(Kind::Io, format!("cannot run {:?}: {e}", cmd.get_program())))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out
            .map(Some)
            .map_err(|e| Error::new(Kind::Io, e.to_string())),
        Err(_) => {
            // Still our unreaped child, so the pid is still its.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Ok(None)
        }
    }
}
