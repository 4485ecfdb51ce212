//! Agent sessions: where an agent's command runs. The id stored in `state.json`
//! (`session`) names the backend and the session's leader process, so any tool
//! can ask whether it is alive and stop it:
//!
//! * `tmux:<socket>:<name>:<pid>:<start>` — a tmux session on the town's own
//!   socket (`tmux -L <socket>`), so towns and tests never collide; a person
//!   attaches with `tmux -L <socket> attach -t <name>`. Output is also appended
//!   to `<home>/session.log` (pipe-pane).
//! * `proc:<pid>:<start>` — a detached process in its own session and process
//!   group (`setsid`), output to `<home>/session.log`; for machines without tmux.
//!
//! `<start>` is the leader's start time (clock ticks since boot, from /proc),
//! guarding against pid reuse. Stopping kills the leader's whole process group,
//! so no orphaned children survive. A recorded id is acted on only once it is
//! known to be its agent's session of this town ([`Owner`]).

mod backend;
pub mod exit;
mod owner;
mod pane;
pub mod sgr;
mod start;

pub use backend::{Backend, Spec, Started, tmux, tmux_socket};
pub use owner::{Foreign, Owner};
pub use pane::{
    Injected, capture, capture_styled, has_terminal, inject, inject_wait, inject_with, run,
};
pub use start::{StartGuard, agent_env, log_path, name_for, stop_home};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::record::AgentState;

/// A parsed session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionId {
    Proc {
        pid: u32,
        start: u64,
    },
    Tmux {
        socket: String,
        name: String,
        pid: u32,
        start: u64,
    },
}

impl SessionId {
    pub fn parse(id: &str) -> Option<SessionId> {
        let parts: Vec<&str> = id.split(':').collect();
        match parts.as_slice() {
            ["proc", pid, start] => Some(SessionId::Proc {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            }),
            ["tmux", socket, name, pid, start] => Some(SessionId::Tmux {
                socket: socket.to_string(),
                name: name.to_string(),
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The leader process: its pid and start time.
    pub(crate) fn leader(&self) -> (u32, u64) {
        match self {
            SessionId::Proc { pid, start } | SessionId::Tmux { pid, start, .. } => (*pid, *start),
        }
    }
}

/// The fields of /proc/<pid>/stat after the command name (so the state is
/// `[0]`, the process group `[2]`, the session `[3]`, the start time `[19]`);
/// `None` if there is no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field 22 of /proc/<pid>/stat (the start time) and whether the process is a
/// zombie; `None` if there is no such process.
pub(crate) fn stat(pid: u32) -> Option<(u64, bool)> {
    let fields = stat_fields(pid)?;
    Some((fields.get(19)?.parse().ok()?, fields[0] == "Z"))
}

/// The name of the program a session leader `pid` runs (`/proc/<pid>/comm`);
/// for gastown's own leader (the shell that records the exit status, argv
/// `sh -c ... gt-session <command> <exit file>`), its child's: the agent.
pub(crate) fn program(pid: u32) -> String {
    let comm = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default()
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).nth(3) == Some(b"gt-session".as_slice()));
    let child = ours
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok())
        .flatten()
        .and_then(|c| c.split_whitespace().next()?.parse().ok());
    match child {
        Some(child) => comm(child),
        None => comm(pid),
    }
}

/// The environment process `pid` was started with (`/proc/<pid>/environ`, as
/// of its last exec): what gt itself gave the sessions it started.
pub(crate) struct Environ(Vec<u8>);

impl Environ {
    /// `None` when there is no such process or it is not ours to read.
    pub(crate) fn of(pid: u32) -> Option<Environ> {
        std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .map(Environ)
    }

    fn vars(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == 0)
    }

    /// Whether it holds `var` (`NAME=value`) exactly.
    pub(crate) fn has(&self, var: &str) -> bool {
        self.vars().any(|v| v == var.as_bytes())
    }

    /// Whether it sets variable `name`, to anything.
    pub(crate) fn sets(&self, name: &str) -> bool {
        self.vars().any(|v| {
            v.strip_prefix(name.as_bytes())
                .is_some_and(|r| r.first() == Some(&b'='))
        })
    }
}

/// Whether `pid` leads its own session (field 6 of /proc/<pid>/stat).
pub(crate) fn is_session_leader(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.get(3) == Some(&pid.to_string()))
}

/// The live (not zombie) members of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pgid = pgid.to_string();
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid)
                .is_some_and(|f| f.first().is_some_and(|s| s != "Z") && f.get(2) == Some(&pgid))
        })
        .collect()
}

/// The start time of a running (not zombie) process.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid)
        .filter(|(_, zombie)| !zombie)
        .map(|(start, _)| start)
}

/// Whether the session `id` still runs. Ids gt cannot parse count as alive: a
/// tool must not kill or land work whose session it cannot see.
pub fn is_alive(id: &str) -> bool {
    match SessionId::parse(id) {
        Some(sid) => {
            let (pid, start) = sid.leader();
            start_time(pid) == Some(start)
        }
        None => true,
    }
}

/// The command line that shows session `id` to a person (for `gt attach`):
/// `tmux -L <socket> attach -t =<name>` (exact name), or for a plain process,
/// which has no terminal, `tail -f` of its `session.log` in `home`.
pub fn watch_command(id: &str, home: &std::path::Path) -> Option<Vec<String>> {
    Some(match SessionId::parse(id)? {
        SessionId::Tmux { socket, name, .. } => {
            ["tmux", "-L", &socket, "attach", "-t", &format!("={name}")]
                .map(str::to_string)
                .to_vec()
        }
        SessionId::Proc { .. } => vec![
            "tail".to_string(),
            "-f".to_string(),
            log_path(home).to_string_lossy().into_owned(),
        ],
    })
}

/// Whether the agent whose state this is has a live session.
pub fn state_alive(state: &AgentState) -> bool {
    state.session.as_deref().is_some_and(is_alive)
}

/// Stop session `id`, recorded for `owner`'s agent: refused unless it is that
/// agent's session ([`Owner::check`]), then as [`kill`].
pub fn stop(owner: &Owner, id: &str, grace: std::time::Duration) -> Result<()> {
    owner.check(id, "not stopped")?;
    kill(id, grace)
}

/// Stop session `id`, which the town found itself (on its own tmux socket,
/// or by its own environment), not one read from a record: SIGTERM to its
/// leader's process group, SIGKILL after `grace` (to what is left of the
/// group), and return once the group's processes have exited (at most `grace`
/// more); a tmux session is then removed. Stopping a dead session is not an
/// error.
pub(crate) fn kill(id: &str, grace: std::time::Duration) -> Result<()> {
    let Some(sid) = SessionId::parse(id) else {
        return Err(Error::invalid(format!(
            "cannot stop session {id:?}: not a session id gt knows"
        )));
    };
    if is_alive(id) {
        let (pid, _) = sid.leader();
        let pgid = Pid::from_raw(pid as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        wait_exit(pid, grace);
        // The leader is gone (or ignored SIGTERM): whatever is left of its group
        // (a child that outlived it) goes too. While the group has members its
        // id cannot be reused, so this reaches no other process.
        let _ = killpg(pgid, Signal::SIGKILL);
        // SIGKILL is delivered, not yet acted on: wait until every member
        // has exited, so that the next session never meets the last one's
        // processes in the clone.
        let deadline = std::time::Instant::now() + grace;
        for member in group_members(pid) {
            wait_exit(
                member,
                deadline.saturating_duration_since(std::time::Instant::now()),
            );
        }
    }
    if let SessionId::Tmux { socket, name, .. } = &sid {
        // Gone already when its command ended; that is fine.
        let _ = tmux(socket, &["kill-session", "-t", &format!("={name}")]);
    }
    Ok(())
}

/// Wait up to `timeout` for session `id` to end; true if it has.
pub fn wait(id: &str, timeout: std::time::Duration) -> bool {
    match SessionId::parse(id) {
        Some(sid) => !is_alive(id) || wait_exit(sid.leader().0, timeout),
        None => false,
    }
}

/// Wait up to `timeout` for process `pid` (not necessarily our child) to exit,
/// without polling; true if it has (or never was).
pub(crate) fn wait_exit(pid: u32, timeout: std::time::Duration) -> bool {
    Pidfd::open(pid).is_none_or(|p| p.wait(timeout))
}

/// A process held by its pidfd: signals and waits reach that process even
/// if it ends and its pid is given to another one meanwhile.
pub(crate) struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    /// `None` when no process `pid` runs.
    pub(crate) fn open(pid: u32) -> Option<Pidfd> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain syscall; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: as above.
        (fd >= 0).then(|| Pidfd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) }))
    }

    /// Wait up to `timeout` for it to end (its pidfd becomes readable); true if it has.
    pub(crate) fn wait(&self, timeout: std::time::Duration) -> bool {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd for the length given.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Send it `signal` (ignored once it has ended).
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an fd we own; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}
