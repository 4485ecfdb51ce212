//! Where sessions run: tmux on the town's own socket, or a plain process.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Environ, stat};
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
    /// The session's whole environment: nothing else is inherited (a tmux
    /// pane keeps only its own `TERM`).
    pub env: Vec<(String, String)>,
    /// Where output goes (appended).
    pub log: PathBuf,
    /// Where the command's exit status is written when it ends (see [`RECORD_EXIT`]).
    pub exit: PathBuf,
}

/// The session's leader: a shell that runs the command (`$1`) as its child
/// and, when it ends, appends its exit status (a number, and a newline) to
/// `$2`. A leader killed by a signal writes nothing.
const RECORD_EXIT: &str = r#"/bin/sh -c "$1"; s=$?; echo "$s" >> "$2"; exit "$s""#;

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
            Some(v) => Some(serde_json::from_value(v.clone().into()).map_err(|_| {
                Error::invalid(format!(
                    "GT_SESSION_BACKEND: unknown session backend {v:?} (expected tmux or process)"
                ))
            })?),
            None => town.config()?.session_backend,
        };
        let tmux = || Backend::Tmux {
            socket: tmux_socket(town.root()),
        };
        Ok(match chosen {
            Some(BackendKind::Tmux) => tmux(),
            Some(BackendKind::Process) => Backend::Process,
            // Looked up on PATH, not run: `tmux -V` cost every spawn a process.
            None if crate::beads::on_path("tmux").is_some() => tmux(),
            None => Backend::Process,
        })
    }

    /// Start `spec`.
    pub fn start(&self, spec: &Spec) -> Result<Started> {
        // tmux's pipe-pane appends to the log by name, the leader writes the
        // exit status by name: checked here, as the cwd.
        for p in [&spec.cwd, &spec.log, &spec.exit] {
            crate::confine::check(p).at(p)?;
        }
        match self {
            Backend::Process => start_process(spec),
            Backend::Tmux { socket } => start_tmux(socket, spec),
        }
    }
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
    /// A tmux pane's leader (pid, start time) and the `NAME=value`s its
    /// command's exec gives it: see [`Started::wait_exec`].
    pending_exec: Option<(u32, u64, Vec<String>)>,
}

impl Started {
    /// Wait until the session's leader runs its command, at most 5 s. tmux
    /// forks the pane and execs its command a moment after `new-session`
    /// returns: until then the leader has the server's environment, and the
    /// check of whose session it is (`Owner`) would refuse it. No event marks
    /// an exec, so this polls, until the leader has the session's environment
    /// or has ended. A process session's spawn returned after its exec.
    pub fn wait_exec(&self) {
        let Some((pid, start, vars)) = &self.pending_exec else {
            return;
        };
        let _ = super::pane::poll(std::time::Duration::from_secs(5), || {
            Ok(stat(*pid).is_none_or(|(s, zombie)| s != *start || zombie)
                || Environ::of(*pid).is_some_and(|e| vars.iter().all(|v| e.has(v))))
        });
    }
}

fn start_process(spec: &Spec) -> Result<Started> {
    let log = crate::fsio::open_log(&spec.log)?;
    let log2 = log.try_clone().at(&spec.log)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", RECORD_EXIT, "gt-session"])
        .arg(&spec.command)
        .arg(&spec.exit)
        .current_dir(&spec.cwd)
        .env_clear()
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
        pending_exec: None,
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
    // `new-session -e` cannot override PATH (the pane gets the server's), and
    // `-i` drops the server's environment; the pane's TERM is tmux's own.
    let mut command = String::from("exec env -i \"TERM=$TERM\"");
    for (k, v) in &spec.env {
        command.push(' ');
        command.push_str(&shell_quote(&format!("{k}={v}")));
    }
    command.push_str(" /bin/sh -c ");
    command.push_str(&shell_quote(RECORD_EXIT));
    command.push_str(" gt-session ");
    command.push_str(&shell_quote(&spec.command));
    command.push(' ');
    command.push_str(&shell_quote(&spec.exit.display().to_string()));
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
    let vars = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(Started {
        id: format!("tmux:{socket}:{}:{pid}:{start}", spec.name),
        pending_exec: Some((pid, start, vars)),
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
