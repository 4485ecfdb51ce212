//! A generic directory watcher: inotify events are hints that something in a
//! watched directory changed, never a count of what. The caller rescans on
//! start, after every batch of events, on overflow and every so often (a missed
//! event, a directory replaced under the watch), so nothing is missed and
//! nothing busy-polls. The mail watcher uses it, and the Witness, the daemon,
//! the refinery and `gt status --watch`.
//!
//! The watch asks the kernel only for changes (created, written, renamed,
//! removed, attributes), never for opens, reads or read-only closes: another
//! process reading the tree wakes no watcher (issue 13; the `notify` crate
//! always asks for opens).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::{Error, Kind, Result};

/// Why the callback runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// First call, before any event: scan everything.
    Start,
    /// Something changed under these paths (deduplicated; one batch of events).
    Changed(Vec<PathBuf>),
    /// The kernel queue overflowed: scan everything.
    Overflow,
    /// The periodic rescan came due with no event.
    Timer,
}

/// What the callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Watches directories (not recursively) and runs a callback on each wake.
pub struct Watch {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    woken: mpsc::Receiver<PathBuf>,
    waker: Waker,
    every: Duration,
}

/// Wakes a [`Watch`] from another thread, for changes inotify cannot see (a
/// process that ended): the callback gets [`Wake::Changed`] with the path.
#[derive(Clone)]
pub struct Waker {
    tx: mpsc::Sender<PathBuf>,
    /// An eventfd the watch polls beside its inotify descriptor.
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// False once the watch is gone.
    pub fn wake(&self, path: PathBuf) -> bool {
        if self.tx.send(path).is_err() {
            return false;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a live buffer to our own eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        true
    }

    /// Wake the watch about `path` at `due` (by the clock, which `GT_NOW`
    /// fixes: a due time already past wakes it at once), from a thread.
    pub fn wake_at(&self, due: jiff::Timestamp, path: PathBuf) {
        let wait = Duration::try_from(due.duration_since(crate::clock::now())).unwrap_or_default();
        let waker = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            waker.wake(path);
        });
    }
}

/// The changes a watch asks for: no IN_OPEN, IN_ACCESS or IN_CLOSE_NOWRITE.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

fn io_error(what: impl std::fmt::Display, e: Errno) -> Error {
    Error::new(Kind::Io, format!("{what}: {}", std::io::Error::from(e)))
}

impl Watch {
    /// Watch `dirs`, which must exist; rescan at least every `every`.
    pub fn new(dirs: &[&Path], every: Duration) -> Result<Watch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| io_error("inotify", e))?;
        let mut watched = HashMap::new();
        for dir in dirs {
            let wd = inotify
                .add_watch(*dir, mask())
                .map_err(|e| io_error(format_args!("{}: cannot watch", dir.display()), e))?;
            watched.insert(wd, dir.to_path_buf());
        }
        // SAFETY: eventfd returns a new descriptor we own, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io_error("eventfd", Errno::last()));
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, woken) = mpsc::channel();
        Ok(Watch {
            inotify,
            dirs: watched,
            woken,
            waker: Waker { tx, fd },
            every,
        })
    }

    /// A handle that wakes this watch from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Call `f` with [`Wake::Start`], then once per batch of events, overflow
    /// or timer, until it returns [`Flow::Stop`] or fails.
    pub fn run(&mut self, mut f: impl FnMut(Wake) -> Result<Flow>) -> Result<()> {
        if f(Wake::Start)? == Flow::Stop {
            return Ok(());
        }
        let mut due = Instant::now() + self.every;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let wake = if self.poll(wait)? {
                match self.batch()? {
                    Some(wake) => wake,
                    None => continue,
                }
            } else {
                Wake::Timer
            };
            due = Instant::now() + self.every;
            if f(wake)? == Flow::Stop {
                return Ok(());
            }
        }
    }

    /// Wait up to `wait` for an event or a wake; false on timeout.
    fn poll(&self, wait: Duration) -> Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.inotify.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Rounded up: a timer never fires a millisecond early, then spins.
        let ms = i32::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        // SAFETY: poll on two pollfds in a live array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        match n {
            0 => Ok(false),
            n if n > 0 => Ok(true),
            _ if Errno::last() == Errno::EINTR => Ok(true),
            _ => Err(io_error("poll", Errno::last())),
        }
    }

    /// Everything queued now as one wake; `None` if nothing was (a signal, or
    /// a wake already taken with an earlier batch).
    fn batch(&self) -> Result<Option<Wake>> {
        let mut paths: Vec<PathBuf> = Vec::new();
        // A flood of events (thousands of files) must not cost its square.
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut overflow = false;
        let mut buf = [0u8; 8];
        // SAFETY: reads the eventfd counter into a live 8-byte buffer (EAGAIN when zero).
        unsafe { libc::read(self.waker.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        let mut add = |p: PathBuf| {
            if seen.insert(p.clone()) {
                paths.push(p);
            }
        };
        for p in self.woken.try_iter() {
            add(p);
        }
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io_error("inotify", e)),
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                let Some(dir) = self.dirs.get(&ev.wd) else {
                    continue;
                };
                add(match ev.name {
                    Some(name) => dir.join(name),
                    None => dir.clone(),
                });
            }
        }
        if overflow {
            tracing::debug!("inotify overflow; rescanning");
            Ok(Some(Wake::Overflow))
        } else if paths.is_empty() {
            Ok(None)
        } else {
            tracing::trace!("woken by {} paths", paths.len());
            Ok(Some(Wake::Changed(paths)))
        }
    }
}
