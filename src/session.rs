//! Agent sessions: where an agent's command runs. The id stored in `state.json`
//! (`session`) names the backend, so any tool can ask whether it is alive.
//!
//! Backend `proc`: a detached process in its own session and process group
//! (`setsid`), output to `<home>/session.log`; id `proc:<pid>:<start-time>`, the
//! start time (clock ticks since boot, from /proc) guarding against pid reuse.
//! Stopping kills the whole process group, so no orphaned children survive.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Shell command line, run with `sh -c`.
    pub command: String,
    /// Working directory (the agent's clone, or its home).
    pub cwd: PathBuf,
    /// Extra environment (GT_TOWN, GT_ADDRESS, BEADS_DIR, ...).
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (appended).
    pub log: PathBuf,
}

/// A started session: its id for `state.json`, and the child handle for a caller
/// that wants to wait (a caller that exits instead leaves the child to init).
pub struct Started {
    pub id: String,
    pub child: std::process::Child,
}

/// Start `spec` as a detached process group.
pub fn start(spec: &Spec) -> Result<Started> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .at(&spec.log)?;
    let log2 = log.try_clone().at(&spec.log)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(&spec.cwd, e).context(format!("cannot start {:?}", spec.command)))?;
    let pid = child.id();
    let start = start_time(pid).ok_or_else(|| {
        Error::new(
            crate::error::Kind::Io,
            format!("process {pid} vanished at start"),
        )
    })?;
    tracing::debug!(pid, command = %spec.command, "session started");
    Ok(Started {
        id: format!("proc:{pid}:{start}"),
        child,
    })
}

/// Field 22 of /proc/<pid>/stat (start time), if the process exists and is not a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn parse_proc(id: &str) -> Option<(u32, u64)> {
    let rest = id.strip_prefix("proc:")?;
    let (pid, start) = rest.split_once(':')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Whether the session `id` still runs. Unknown backends count as alive: a
/// tool must not kill or land work whose session it cannot see.
pub fn is_alive(id: &str) -> bool {
    match parse_proc(id) {
        Some((pid, start)) => start_time(pid) == Some(start),
        None => !id.starts_with("proc:"),
    }
}

/// Whether the agent whose state this is has a live session.
pub fn state_alive(state: &crate::record::AgentState) -> bool {
    state.session.as_deref().is_some_and(is_alive)
}

/// Stop session `id`: SIGTERM to its process group, SIGKILL after `grace`.
/// Stopping a dead session is not an error.
pub fn stop(id: &str, grace: std::time::Duration) -> Result<()> {
    let Some((pid, _)) = parse_proc(id) else {
        return Err(Error::invalid(format!(
            "cannot stop session {id:?}: unknown backend"
        )));
    };
    if !is_alive(id) {
        return Ok(());
    }
    let pgid = Pid::from_raw(pid as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    if !wait_exit(pid, grace) {
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_exit(pid, grace);
    }
    Ok(())
}

/// Wait up to `timeout` for process `pid` (not necessarily our child) to exit,
/// without polling: a pidfd becomes readable when the process ends.
fn wait_exit(pid: u32, timeout: std::time::Duration) -> bool {
    // SAFETY: plain syscalls on integers we own; the fd is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as libc::c_int;
        if fd < 0 {
            return true; // no such process
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        let n = libc::poll(&mut pfd, 1, ms);
        libc::close(fd);
        n > 0
    }
}

/// Stop the session of any agent home (its whole process group) and clear
/// `session` in its state; a `working` agent becomes `idle`. Returns whether a
/// live session was stopped.
pub fn stop_home(home: &crate::home::Home) -> Result<bool> {
    let state = home.state()?;
    let was_alive = state_alive(&state);
    if let Some(id) = state.session.as_deref().filter(|_| was_alive) {
        stop(id, std::time::Duration::from_secs(5))?;
    }
    home.update_state(|s| {
        s.session = None;
        if s.status == "working" {
            s.status = "idle".into();
        }
        Ok(())
    })?;
    Ok(was_alive)
}

/// The log file of a home's session.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("session.log")
}
