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
//! so no orphaned children survive.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Kind, Result};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Session name, unique in the town (e.g. `gt-<rig>-<polecat>`).
    pub name: String,
    /// Shell command line, run with `sh -c`.
    pub command: String,
    /// Working directory (the agent's clone, or its home).
    pub cwd: PathBuf,
    /// Extra environment (GT_TOWN, GT_ADDRESS, BEADS_DIR, ...).
    pub env: Vec<(String, String)>,
    /// Where output goes (appended).
    pub log: PathBuf,
}

/// Where sessions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Tmux { socket: String },
    Process,
}

impl Backend {
    /// `GT_SESSION_BACKEND` (`tmux` or `process`), else `session_backend` in
    /// config/town.json, else tmux when it is installed, else plain processes.
    pub fn for_town(town: &crate::town::Town) -> Result<Backend> {
        let chosen = match std::env::var("GT_SESSION_BACKEND")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => Some(v),
            None => town
                .config()?
                .extra
                .get("session_backend")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        };
        match chosen.as_deref() {
            Some("tmux") => Ok(Backend::Tmux {
                socket: tmux_socket(town.root()),
            }),
            Some("process") => Ok(Backend::Process),
            Some(other) => Err(Error::invalid(format!(
                "unknown session backend {other:?} (expected tmux or process)"
            ))),
            None if tmux_installed() => Ok(Backend::Tmux {
                socket: tmux_socket(town.root()),
            }),
            None => Ok(Backend::Process),
        }
    }

    /// Start `spec`. For the process backend the child handle is returned too,
    /// for a caller that wants to reap it; a caller that exits leaves it to init.
    pub fn start(&self, spec: &Spec) -> Result<Started> {
        match self {
            Backend::Process => start_process(spec),
            Backend::Tmux { socket } => start_tmux(socket, spec),
        }
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The town's tmux socket name: `gt-` and a hash of its root path (FNV-1a, so
/// the name is the same for every build of gt).
pub fn tmux_socket(root: &Path) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in root.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("gt-{:012x}", h & 0xffff_ffff_ffff)
}

/// A started session.
pub struct Started {
    pub id: String,
    pub child: Option<std::process::Child>,
}

fn start_process(spec: &Spec) -> Result<Started> {
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
    let start = start_time(pid)
        .ok_or_else(|| Error::new(Kind::Io, format!("process {pid} vanished at start")))?;
    tracing::debug!(pid, command = %spec.command, "process session started");
    Ok(Started {
        id: format!("proc:{pid}:{start}"),
        child: Some(child),
    })
}

/// Run `tmux -L <socket> <args>`; stdout on success, a one-line error otherwise.
pub fn tmux(socket: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(Kind::Io, format!("cannot run tmux: {e}"))
                .with_hint("install tmux: apt-get install -y tmux")
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::new(
            Kind::Io,
            format!("tmux {}: {}", args.first().unwrap_or(&""), err.trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_tmux(socket: &str, spec: &Spec) -> Result<Started> {
    let cwd = spec
        .cwd
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{}: path is not UTF-8", spec.cwd.display())))?;
    // The environment goes through env(1) in the command itself: tmux's
    // `new-session -e` cannot override PATH (the pane gets the server's).
    let mut command = String::from("exec env");
    for (k, v) in &spec.env {
        command.push(' ');
        command.push_str(&shell_quote(&format!("{k}={v}")));
    }
    command.push_str(" /bin/sh -c ");
    command.push_str(&shell_quote(&spec.command));
    let target = format!("={}:", spec.name);
    let pipe = format!(
        "exec cat >> {}",
        shell_quote(&spec.log.display().to_string())
    );
    // One command queue: the server handles pane output only after pipe-pane
    // is in place, so the log misses nothing.
    let args = [
        "new-session",
        "-d",
        "-P",
        "-F",
        "#{pane_pid}",
        "-s",
        &spec.name,
        "-x",
        "200",
        "-y",
        "50",
        "-c",
        cwd,
        &command,
        ";",
        "pipe-pane",
        "-o",
        "-t",
        &target,
        &pipe,
    ];
    let out = tmux(socket, &args)?;
    let pid: u32 = out.trim().parse().map_err(|_| {
        Error::new(
            Kind::Io,
            format!("tmux new-session printed {out:?}, not a pid"),
        )
    })?;
    let start = start_time(pid).unwrap_or(0);
    tracing::debug!(pid, socket, name = %spec.name, "tmux session started");
    Ok(Started {
        id: format!("tmux:{socket}:{}:{pid}:{start}", spec.name),
        child: None,
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

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
    fn leader(&self) -> (u32, u64) {
        match self {
            SessionId::Proc { pid, start } | SessionId::Tmux { pid, start, .. } => (*pid, *start),
        }
    }
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

/// Whether the agent whose state this is has a live session.
pub fn state_alive(state: &crate::record::AgentState) -> bool {
    state.session.as_deref().is_some_and(is_alive)
}

/// Stop session `id`: SIGTERM to its leader's process group, SIGKILL after
/// `grace`; a tmux session is then removed. Stopping a dead session is not an error.
pub fn stop(id: &str, grace: std::time::Duration) -> Result<()> {
    let Some(sid) = SessionId::parse(id) else {
        return Err(Error::invalid(format!(
            "cannot stop session {id:?}: not a session id gt knows"
        )));
    };
    if is_alive(id) {
        let (pid, _) = sid.leader();
        let pgid = Pid::from_raw(pid as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        if !wait_exit(pid, grace) {
            let _ = killpg(pgid, Signal::SIGKILL);
            wait_exit(pid, grace);
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
