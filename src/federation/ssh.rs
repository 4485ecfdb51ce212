//! One round trip to another machine: the `ssh` on PATH runs a wire command
//! (protocol/federation.md) there, with a record on stdin and the answer on
//! stdout, and never longer than a deadline.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Kind, Result};

use super::Machine;

/// The longest a round trip may take unless `GT_REMOTE_TIMEOUT` says otherwise
/// (connecting is bounded by ssh's ConnectTimeout, 10s unless ssh_options set it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `GT_REMOTE_TIMEOUT` (e.g. "5s"), or [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Result<Duration> {
    crate::clock::env_duration("GT_REMOTE_TIMEOUT", DEFAULT_TIMEOUT)
}

/// The `ssh` command that runs `words` on `m`. BatchMode comes first, so no
/// option can bring back a password prompt (ssh keeps an option's first value).
pub fn command(m: &Machine, words: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-o", "BatchMode=yes"]);
    c.args(&m.ssh_options);
    c.args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"]);
    c.args(["-o", "ServerAliveCountMax=2", "-T"]);
    if let Some(p) = m.port {
        c.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &m.user {
        c.arg("-l").arg(u);
    }
    if let Some(i) = &m.identity {
        c.arg("-i").arg(i);
    }
    c.arg("--").arg(&m.host).args(words);
    c
}

/// What came back from a round trip that ran to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Reply {
    /// The remote command's own exit code (255 is ssh's: it could not connect).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Why the answer is not a success, in one line: the last line of stderr.
    pub fn why(&self) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        match (self.status.code(), last) {
            (_, l) if !l.is_empty() => l.to_string(),
            (Some(c), _) => format!("ssh exited {c}"),
            (None, _) => format!("ssh ended by {}", self.status),
        }
    }

    /// The reply's stdout when the remote command exited 0; else an error:
    /// [`Kind::Io`] for the transport (try again later), [`Kind::Invalid`]
    /// for the remote command's refusal or error (its exit 2).
    pub fn ok(self, machine: &str) -> Result<Vec<u8>> {
        match self.code() {
            Some(0) => Ok(self.stdout),
            Some(255) | None => Err(Error::new(Kind::Io, self.why())),
            Some(_) => Err(Error::invalid(format!("{machine}: {}", self.why()))),
        }
    }
}

/// Run `cmd`, feed it `input`, and collect its output, killing it at
/// `deadline`. Errors are the transport's: ssh could not be started or did
/// not finish in time.
pub fn round_trip(mut cmd: Command, input: Vec<u8>, deadline: Duration) -> Result<Reply> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(Kind::Io, format!("cannot run ssh: {e}")))?;
    let pid = child.id() as libc::pid_t;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // A remote that stops reading is seen as the deadline, not a hang. An ssh
    // that exits first (no connection) must not kill us with SIGPIPE (gt
    // keeps its default action): blocked in this thread, the write just
    // fails, and the pending signal goes with the thread.
    std::thread::spawn(move || {
        let mut pipe = nix::sys::signal::SigSet::empty();
        pipe.add(nix::sys::signal::Signal::SIGPIPE);
        let _ = pipe.thread_block();
        let _ = stdin.write_all(&input);
    });
    let read = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out = read(Box::new(stdout));
    let err = read(Box::new(stderr));
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done.recv_timeout(deadline) {
        Ok(s) => s,
        Err(_) => {
            // SAFETY: the child has not been reaped (no answer on `done`), so
            // the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = done.recv();
            return Err(Error::new(
                Kind::Io,
                format!("no answer within {deadline:?}; ssh killed"),
            ));
        }
    }
    .map_err(|e| Error::new(Kind::Io, format!("waiting for ssh: {e}")))?;
    // A ControlPersist master forked by this ssh may keep a pipe open: the
    // output is complete when ssh exits, so do not wait long for the EOF.
    let grace = Duration::from_secs(2);
    Ok(Reply {
        status,
        stdout: out.recv_timeout(grace).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err.recv_timeout(grace).unwrap_or_default()).into_owned(),
    })
}
