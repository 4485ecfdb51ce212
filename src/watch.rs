//! A generic directory watcher: inotify events (via `notify`) are hints that
//! something in a watched directory changed, never a count of what. The caller
//! rescans on start, after every batch of events, on overflow and every so often
//! (a missed event, a directory replaced under the watch), so nothing is missed
//! and nothing busy-polls. The mail watcher uses it; the Witness, the daemon and
//! the queue can too.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};

use crate::error::{Error, Result};

/// Why the callback runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// First call, before any event: scan everything.
    Start,
    /// Something changed under these paths (deduplicated; one batch of events).
    Changed(Vec<PathBuf>),
    /// The kernel queue overflowed or the backend lost track: scan everything.
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
    _watcher: notify::RecommendedWatcher,
    tx: mpsc::Sender<notify::Result<notify::Event>>,
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    every: Duration,
}

/// Wakes a [`Watch`] from another thread, for changes inotify cannot see (a
/// process that ended): the callback gets [`Wake::Changed`] with the path.
#[derive(Clone)]
pub struct Waker(mpsc::Sender<notify::Result<notify::Event>>);

impl Waker {
    /// False once the watch is gone.
    pub fn wake(&self, path: PathBuf) -> bool {
        let ev = notify::Event::new(EventKind::Other).add_path(path);
        self.0.send(Ok(ev)).is_ok()
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

impl Watch {
    /// Watch `dirs`, which must exist; rescan at least every `every`.
    pub fn new(dirs: &[&Path], every: Duration) -> Result<Watch> {
        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |ev| {
            let _ = events.send(ev);
        })
        .map_err(|e| Error::new(crate::error::Kind::Io, format!("inotify: {e}")))?;
        for dir in dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| {
                    Error::new(
                        crate::error::Kind::Io,
                        format!("{}: cannot watch: {e}", dir.display()),
                    )
                })?;
        }
        Ok(Watch {
            _watcher: watcher,
            tx,
            rx,
            every,
        })
    }

    /// A handle that wakes this watch from another thread.
    pub fn waker(&self) -> Waker {
        Waker(self.tx.clone())
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
            let wake = match self.rx.recv_timeout(wait) {
                Ok(first) => match self.batch(first) {
                    Some(wake) => wake,
                    None => continue,
                },
                Err(RecvTimeoutError::Timeout) => Wake::Timer,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(
                        crate::error::Kind::Io,
                        "inotify watcher stopped unexpectedly",
                    ));
                }
            };
            due = Instant::now() + self.every;
            if f(wake)? == Flow::Stop {
                return Ok(());
            }
        }
    }

    /// Drain what is queued behind `first` into one wake; `None` if it was all
    /// noise (our own reads: opens and read-only closes).
    fn batch(&self, first: notify::Result<notify::Event>) -> Option<Wake> {
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut overflow = false;
        for ev in std::iter::once(first).chain(self.rx.try_iter()) {
            match ev {
                Ok(ev) if ev.need_rescan() => overflow = true,
                Ok(ev) if is_noise(&ev.kind) => {}
                Ok(ev) => {
                    for p in ev.paths {
                        if !paths.contains(&p) {
                            paths.push(p);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("watch error, rescanning: {e}");
                    overflow = true;
                }
            }
        }
        if overflow {
            tracing::debug!("inotify overflow; rescanning");
            Some(Wake::Overflow)
        } else if paths.is_empty() {
            None
        } else {
            Some(Wake::Changed(paths))
        }
    }
}

fn is_noise(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}
