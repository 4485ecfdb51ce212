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
use crate::home::Home;
use crate::record::{AgentState, Status};
use crate::town::Town;

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
        use crate::record::BackendKind;
        let chosen = match std::env::var("GT_SESSION_BACKEND")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => Some(
                serde_json::from_value(v.clone().into()).map_err(|_| {
                    Error::invalid(format!(
                        "GT_SESSION_BACKEND: unknown session backend {v:?} (expected tmux or process)"
                    ))
                })?,
            ),
            None => town.config()?.session_backend,
        };
        let tmux = || Backend::Tmux {
            socket: tmux_socket(town.root()),
        };
        Ok(match chosen {
            Some(BackendKind::Tmux) => tmux(),
            Some(BackendKind::Process) => Backend::Process,
            None if tmux_installed() => tmux(),
            None => Backend::Process,
        })
    }

    /// Start `spec`.
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
    // Our child exists until reaped, even when its command already finished.
    let start = stat(pid)
        .map(|(start, _)| start)
        .ok_or_else(|| Error::new(Kind::Io, format!("process {pid} vanished at start")))?;
    tracing::debug!(pid, command = %spec.command, "process session started");
    // The agent is our child: reap it when it ends, or a long-running starter
    // (gt witness run, gt daemon run) collects zombies. A short-lived one
    // (gt spawn) exits first and leaves it to init.
    let mut child = child;
    std::thread::spawn(move || child.wait());
    Ok(Started {
        id: format!("proc:{pid}:{start}"),
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
    // 0 (never alive) if tmux already reaped a command that finished at once.
    let start = stat(pid).map_or(0, |(start, _)| start);
    tracing::debug!(pid, socket, name = %spec.name, "tmux session started");
    Ok(Started {
        id: format!("tmux:{socket}:{}:{pid}:{start}", spec.name),
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

/// Field 22 of /proc/<pid>/stat (the start time) and whether the process is a
/// zombie; `None` if there is no such process.
fn stat(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.first() == Some(&"Z")))
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

/// Whether the agent whose state this is has a live session.
pub fn state_alive(state: &AgentState) -> bool {
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
        wait_exit(pid, grace);
        // The leader is gone (or ignored SIGTERM): whatever is left of its group
        // (a child that outlived it) goes too. While the group has members its
        // id cannot be reused, so this reaches no other process.
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_exit(pid, grace);
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
/// `session` and `requesting_cycle` in its state; a `working` agent becomes `idle`. Returns whether a
/// live session was stopped.
pub fn stop_home(home: &Home) -> Result<bool> {
    let state = home.state()?;
    let was_alive = state_alive(&state);
    if let Some(id) = state.session.as_deref().filter(|_| was_alive) {
        stop(id, std::time::Duration::from_secs(5))?;
    }
    home.update_state(|s| {
        s.session = None;
        // A stopped agent has no next session: the daemon must not start one.
        s.requesting_cycle = false;
        if s.status == Status::Working {
            s.status = Status::Idle;
        }
        Ok(())
    })?;
    Ok(was_alive)
}

/// The environment every agent gets (DESIGN.md, "Sessions"): `GT_TOWN`,
/// `GT_ROLE`, `GT_ADDRESS`, and for a rig's agents `GT_RIG` and `BEADS_DIR`.
pub fn agent_env(town: &Town, home: &Home) -> Vec<(String, String)> {
    let mut env = vec![("GT_TOWN".to_string(), town.root().display().to_string())];
    if let Some(rig) = home.address.rig() {
        env.push(("GT_RIG".to_string(), rig.to_string()));
    }
    env.push(("GT_ROLE".to_string(), home.address.role().to_string()));
    env.push(("GT_ADDRESS".to_string(), home.address.to_string()));
    if let Some(rig) = home.address.rig() {
        let beads = crate::rig::Rig::at(town, rig).beads_dir();
        env.push(("BEADS_DIR".to_string(), beads.display().to_string()));
    }
    // Agents find the gt binaries that started them first.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path)))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        env.push(("PATH".to_string(), joined));
    }
    env
}

/// The session name of an agent in the town's backend: `gt-` and its address
/// with `/` as `-` (`gt-<rig>-<polecat>`, `gt-<rig>-witness`, `gt-mayor`).
pub fn name_for(address: &crate::address::Address) -> String {
    format!("gt-{}", address.to_string().replace('/', "-"))
}

/// Start generation `generation` of `home`'s agent: `command` in its clone
/// (its home when it has none), with [`agent_env`], `GT_ISSUE` and
/// `GT_GENERATION`. The caller holds the home's state lock and records the
/// result with [`record_start`].
pub fn launch(
    town: &Town,
    home: &Home,
    command: &str,
    issue: Option<&str>,
    generation: u64,
) -> Result<Started> {
    let mut env = agent_env(town, home);
    env.extend(issue.map(|i| ("GT_ISSUE".to_string(), i.to_string())));
    env.push(("GT_GENERATION".to_string(), generation.to_string()));
    let clone = home.clone_dir();
    Backend::for_town(town)?.start(&Spec {
        name: name_for(&home.address),
        command: command.to_string(),
        cwd: if clone.is_dir() {
            clone
        } else {
            home.path.clone()
        },
        env,
        log: log_path(&home.path),
    })
}

/// Record a session started by [`launch`] in an agent's state: generation,
/// `working`, the session id, and (for the daemon's restarts) the command and
/// when it started; a cycle request is thereby answered.
pub fn record_start(state: &mut AgentState, started: &Started, command: &str, generation: u64) {
    state.generation = generation;
    state.status = Status::Working;
    state.session = Some(started.id.clone());
    state.requesting_cycle = false;
    state.updated_at = Some(crate::clock::now());
    state.command = Some(command.to_string());
    state.started_at = state.updated_at;
}

/// Lock `home`'s state for starting a session there: the lock is held from this
/// liveness check until the caller has recorded the new session, so two
/// starters (two daemons, a daemon and `gt spawn`) cannot both start. Refused
/// while a session lives.
pub fn lock_for_start(
    home: &crate::home::Home,
) -> Result<(crate::fsio::Lock, crate::record::AgentState)> {
    let lock = crate::fsio::lock_for(&home.state_path())?;
    let current: crate::record::AgentState = crate::fsio::read_json(&home.state_path())?;
    if let Some(id) = current.session.as_deref().filter(|id| is_alive(id)) {
        return Err(Error::conflict(format!(
            "{} is already running (session {id})",
            home.address
        )));
    }
    Ok((lock, current))
}

/// The log file of a home's session.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("session.log")
}

// Typing into a session and reading its screen. Only tmux sessions have a
// terminal; a plain process reads /dev/null, so mail is its only channel.
//
// tmux has no event for "the pane changed", so the checks below poll the
// pane's screen with a deadline.

/// How long each step of [`inject`] waits for the pane: `GT_INJECT_WAIT`
/// (e.g. `500ms`, `10s`), default 3 s.
pub fn inject_wait() -> Result<std::time::Duration> {
    match std::env::var("GT_INJECT_WAIT") {
        Ok(v) if !v.is_empty() => {
            crate::clock::parse_duration(&v).map_err(|e| e.context("GT_INJECT_WAIT"))
        }
        _ => Ok(std::time::Duration::from_secs(3)),
    }
}

/// Whether `id` is a live session with a terminal (tmux) to type into.
pub fn has_terminal(id: &str) -> bool {
    matches!(SessionId::parse(id), Some(SessionId::Tmux { .. })) && is_alive(id)
}

/// What [`inject`] typed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Injected {
    /// The line as typed: each run of control characters (newlines, tabs,
    /// escapes) became one space.
    pub text: String,
    /// Enters pressed: 1, or 2 when the first left the text on the prompt.
    pub enters: u32,
}

/// Type `text` into session `id` as one line, press Enter, and check that the
/// line was submitted (see [`Pane::inject`]). A process session is refused.
pub fn inject(id: &str, text: &str) -> Result<Injected> {
    let pane = Pane::of(id).map_err(|e| match SessionId::parse(id) {
        Some(SessionId::Proc { .. }) => e
            .context("cannot inject")
            .with_hint("mail is the channel: gt send"),
        _ => e.context("cannot inject"),
    })?;
    let _typing = pane.typing_lock()?;
    pane.inject(text, inject_wait()?)
}

/// The lines of session `id`'s pane: the visible screen, or with `last` the
/// last `last` lines of its history and screen. Trailing blank lines are dropped.
pub fn capture(id: &str, last: Option<usize>) -> Result<Vec<String>> {
    let pane = Pane::of(id).map_err(|e| e.context("cannot capture"))?;
    let snap = pane.snapshot()?;
    let from = match last {
        Some(n) => trimmed_len(&snap.lines).saturating_sub(n),
        None => snap.history,
    };
    Ok(tail(&snap.lines, from))
}

/// Type `command` into session `id` (as [`inject`] does) and return the pane
/// lines that follow it, once the pane has been still for a moment (at most
/// `wait`). A program that keeps drawing is cut off at `wait`.
pub fn run(id: &str, command: &str, wait: std::time::Duration) -> Result<Vec<String>> {
    /// Output is complete when the pane has not changed for this long.
    const STILL: std::time::Duration = std::time::Duration::from_millis(300);
    let pane = Pane::of(id).map_err(|e| e.context("cannot run a command"))?;
    // Held until the output is read: no other line is typed in between.
    let _typing = pane.typing_lock()?;
    let start = pane.snapshot()?;
    let typed = pane.inject(command, inject_wait()?)?;
    let mut last = pane.snapshot()?;
    let mut still_since = std::time::Instant::now();
    poll(wait, || {
        let now = pane.snapshot()?;
        if now != last {
            last = now;
            still_since = std::time::Instant::now();
        }
        Ok(still_since.elapsed() >= STILL)
    })?;
    // The command was typed on the cursor's line, at the same index as long
    // as tmux has not dropped history lines since (then from the top).
    let mut from = (start.history + start.cursor.1).min(last.lines.len());
    if last.history < start.history {
        from = 0;
    }
    // Skip the echo of the command itself.
    let needle = squeeze(&typed.text);
    let mut seen = String::new();
    for (i, line) in last.lines.iter().enumerate().skip(from) {
        seen.push_str(&squeeze(line));
        if seen.contains(&needle) {
            from = i + 1;
            break;
        }
    }
    Ok(tail(&last.lines, from))
}

/// `lines[from..]` without the trailing blank lines.
fn tail(lines: &[String], from: usize) -> Vec<String> {
    lines[from.min(trimmed_len(lines))..trimmed_len(lines)].to_vec()
}

fn trimmed_len(lines: &[String]) -> usize {
    lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1)
}

/// A live tmux session's pane.
struct Pane {
    socket: String,
    name: String,
    /// `=<name>:`: exactly this session (no prefix match), its current pane.
    target: String,
}

/// One look at a pane: every line of its history and screen, and the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// Lines of history above the screen (index of the screen's first line).
    history: usize,
    /// Cursor (x, y) on the screen.
    cursor: (usize, usize),
    lines: Vec<String>,
}

impl Pane {
    fn of(id: &str) -> Result<Pane> {
        match SessionId::parse(id) {
            Some(SessionId::Tmux { socket, name, .. }) if is_alive(id) => Ok(Pane {
                target: format!("={name}:"),
                socket,
                name,
            }),
            Some(SessionId::Tmux { .. }) => {
                Err(Error::not_found(format!("session {id} is not running")))
            }
            Some(SessionId::Proc { .. }) => Err(Error::invalid(format!(
                "session {id} is a plain process with no terminal"
            ))),
            None => Err(Error::invalid(format!(
                "{id:?} is not a session id gt knows"
            ))),
        }
    }

    fn snapshot(&self) -> Result<Snapshot> {
        // One command list: the cursor and the lines are from the same moment.
        let out = tmux(
            &self.socket,
            &[
                "display-message",
                "-p",
                "-t",
                &self.target,
                "#{history_size} #{cursor_x} #{cursor_y}",
                ";",
                "capture-pane",
                "-p",
                "-t",
                &self.target,
                "-S",
                "-",
            ],
        )?;
        let mut lines = out.lines().map(str::to_string);
        let head = lines.next().unwrap_or_default();
        let nums: Vec<usize> = head.split(' ').filter_map(|n| n.parse().ok()).collect();
        let [history, x, y] = nums[..] else {
            return Err(Error::new(
                Kind::Io,
                format!("tmux display-message printed {head:?}, not a cursor"),
            ));
        };
        Ok(Snapshot {
            history,
            cursor: (x, y),
            lines: lines.collect(),
        })
    }

    /// Take the lock that serialises typing into this pane, so two lines
    /// typed at once (a Witness nudge, a person's `gt inject`) do not
    /// interleave. It is a sidecar of the tmux server's socket,
    /// `<socket path>.<session>.typing.lock`, in tmux's private directory.
    fn typing_lock(&self) -> Result<crate::fsio::Lock> {
        let socket = tmux(
            &self.socket,
            &[
                "display-message",
                "-p",
                "-t",
                &self.target,
                "#{socket_path}",
            ],
        )?;
        let path = PathBuf::from(format!("{}.{}.typing.lock", socket.trim_end(), self.name));
        crate::fsio::lock_file(&path)
    }

    fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        tmux(&self.socket, &args).map(drop)
    }

    /// Type `text` as one line and submit it:
    ///
    /// 1. `send-keys -l` types it literally (never read as key names); each run
    ///    of control characters, newlines included, becomes one space, so a
    ///    multi-line text is one line and one Enter (an agent's prompt treats
    ///    every Enter as "submit").
    /// 2. Wait until the text shows in the pane (echoed) before pressing Enter:
    ///    a TUI that reads text and Enter in one go may take the Enter as part
    ///    of a paste and leave the text on its prompt.
    /// 3. Press Enter and wait until the text appears once more than before
    ///    typing (whitespace ignored, history included, so wrapping and an
    ///    earlier identical line do not matter), no longer sits on the
    ///    cursor's line, and the pane changed since the echo.
    /// 4. If instead it is still on the prompt (or Enter changed nothing),
    ///    press Enter once more, wait again, then give up with an error.
    ///
    /// A program that never shows its input cannot be checked: that is an
    /// error too, after the keys were sent.
    fn inject(&self, text: &str, wait: std::time::Duration) -> Result<Injected> {
        let line = one_line(text);
        let needle = squeeze(&line);
        if needle.is_empty() {
            return Err(Error::invalid("nothing to type: the text is blank"));
        }
        let before = self.snapshot()?.count(&needle);
        self.keys(&["-l", "--", &tmux_literal(&line)])?;
        let mut echo = self.snapshot()?;
        poll(wait, || {
            echo = self.snapshot()?;
            Ok(echo.count(&needle) > before)
        })?;
        let mut now = echo.clone();
        for enters in 1..=2 {
            self.keys(&["Enter"])?;
            let submitted = poll(wait, || {
                now = self.snapshot()?;
                Ok(now.count(&needle) > before && !now.on_prompt(&needle) && now != echo)
            })?;
            if submitted {
                return Ok(Injected { text: line, enters });
            }
            if now.count(&needle) <= before {
                return Err(Error::new(
                    Kind::Io,
                    format!(
                        "typed {line:?} into tmux session {} but it never showed in the pane within {wait:?} (the program does not echo its input?)",
                        self.name
                    ),
                ));
            }
        }
        Err(Error::new(
            Kind::Io,
            format!(
                "typed {line:?} into tmux session {} but it is still on the prompt after two Enters: not submitted",
                self.name
            ),
        ))
    }
}

impl Snapshot {
    /// Occurrences of `needle` (squeezed) in the whole pane, whitespace ignored.
    fn count(&self, needle: &str) -> usize {
        squeeze(&self.lines.concat()).matches(needle).count()
    }

    /// Whether the cursor's line holds the end of `needle` (squeezed): the
    /// text is still on the prompt. A wrapped text's last piece counts if it
    /// is long enough not to be a prompt character that happens to match.
    fn on_prompt(&self, needle: &str) -> bool {
        let Some(line) = self.lines.get(self.history + self.cursor.1) else {
            return false;
        };
        let here = squeeze(line);
        !here.is_empty()
            && (here.ends_with(needle)
                || (needle.ends_with(&here)
                    && here.chars().count() >= needle.chars().count().min(8)))
    }
}

/// `text` with each run of control characters replaced by one space.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_control() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// `s` without whitespace: how text is compared with a pane, where wrapping
/// and padding add or move whitespace.
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// An argument tmux passes through as is: tmux takes an argument's final `;`
/// as a command separator unless it is written `\;`.
fn tmux_literal(s: &str) -> String {
    match s.strip_suffix(';') {
        Some(rest) => format!("{rest}\\;"),
        None => s.to_string(),
    }
}

/// Call `check` until it returns true or `wait` passes; whether it did. Pauses
/// grow from 5 to 50 ms.
fn poll(wait: std::time::Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if check()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_turns_control_runs_into_one_space() {
        assert_eq!(one_line("a\r\nb\tc\x1b[1md"), "a b c [1md");
        assert_eq!(
            one_line("it's \"q\"; $HOME Enter C-c"),
            "it's \"q\"; $HOME Enter C-c"
        );
    }

    #[test]
    fn tmux_literal_escapes_only_a_final_semicolon() {
        assert_eq!(tmux_literal("a;b"), "a;b");
        assert_eq!(tmux_literal("a;"), "a\\;");
        assert_eq!(tmux_literal(";"), "\\;");
        assert_eq!(tmux_literal("a\\;"), "a\\\\;");
    }

    fn snap(lines: &[&str], cursor_y: usize) -> Snapshot {
        Snapshot {
            history: 0,
            cursor: (0, cursor_y),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn text_on_the_cursor_line_is_on_the_prompt() {
        let needle = squeeze("hello big world");
        assert!(snap(&["> hello big world", ""], 0).on_prompt(&needle));
        // Wrapped: the cursor's line has the last piece.
        assert!(snap(&["> hello", "big world"], 1).on_prompt(&needle));
        assert!(!snap(&["> hello big world", ""], 1).on_prompt(&needle));
        // A prompt character that happens to end the text is not the text.
        assert!(!snap(&["hello big world", "d"], 1).on_prompt(&needle));
        assert_eq!(
            snap(&["hel", "lo big world", "got: hello big world"], 0).count(&needle),
            2
        );
    }
}
