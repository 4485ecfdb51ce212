//! `gt daemon run`: the daemon's loop, a [`tick`] on every change that can matter.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Options, tick};
use crate::error::Result;
use crate::event::Event;
use crate::session::{self, SessionId};
use crate::town::Town;
use crate::watch::{Flow, Waker, Watch};

/// Directories whose changes can matter: every home (state.json, heartbeat),
/// where new homes appear, and the town's config (a new rig).
pub(crate) fn watched(town: &Town) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = town.homes()?.into_iter().map(|h| h.path).collect();
    dirs.push(town.config_dir());
    for rig in town.rigs()?.rigs.keys() {
        for sub in ["polecats", "crew", "plugins"] {
            let d = town.root().join(rig).join(sub);
            if d.is_dir() {
                dirs.push(d);
            }
        }
    }
    Ok(dirs)
}

/// Wake the current watch, if any, about `path`.
fn wake(current: &Mutex<Option<Waker>>, path: PathBuf) {
    if let Some(w) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        w.wake(path);
    }
}

/// A pass ([`tick`]) now, on every change to an agent's state or mail, when a
/// recorded session ends (a waiter thread per session, on its pidfd), when a
/// backed-off restart comes due, and at least every `every`. Each action goes
/// to `on`, and [`Event::Ready`] once after the first pass. Runs until an
/// error (`on`'s too).
pub fn run(town: &Town, every: Duration, on: &mut dyn FnMut(Event) -> Result<()>) -> Result<()> {
    let _running = crate::runner::hold(&crate::runner::daemon(town), "the daemon")?;
    let mut announced = false;
    // Sessions waited for, ended sessions already seen, restart times waited
    // for, and the watch their threads wake; all outlive a rebuilt watch.
    let mut waited: HashSet<String> = HashSet::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut timers: HashSet<jiff::Timestamp> = HashSet::new();
    let current: Arc<Mutex<Option<Waker>>> = Arc::default();
    // A new or removed home changes what to watch: the watch is rebuilt.
    loop {
        let dirs = watched(town)?;
        let refs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
        let mut watch = Watch::new(&refs, every)?;
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.waker());
        watch.run(|_| {
            let opts = Options::for_town(town)?;
            for a in tick(town, &opts)? {
                on(Event::Action(a))?;
            }
            if !announced {
                on(Event::Ready {
                    watching: dirs.len(),
                })?;
                announced = true;
            }
            waited.retain(|id| session::is_alive(id));
            let mut recorded = HashSet::new();
            let now = crate::clock::now();
            timers.retain(|t| *t > now);
            // A pass at a time that no file event will mark: a thread sleeps
            // until then and wakes the watch, once per time.
            let mut wake_at = |due: jiff::Timestamp, path: PathBuf| {
                if due > now && timers.insert(due) {
                    let wait = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                    let current = Arc::clone(&current);
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        wake(&current, path);
                    });
                }
            };
            // An escalation coming due for forwarding.
            if let Some(wait) = super::forward::next_due(town, &opts)
                && let Ok(due) = now.checked_add(super::signed(wait))
            {
                wake_at(due, town.config_dir());
            }
            for home in town.homes()? {
                let Ok(state) = home.state() else { continue };
                // A restart backed off, or a session to stop for its cycle.
                for due in [state.next_restart_at, super::cycle_due(&state, &opts)]
                    .into_iter()
                    .flatten()
                {
                    wake_at(due, home.path.clone());
                }
                // A session that ends changes no file: wait for it. One found
                // ended (perhaps after this pass looked) gets one more pass.
                let Some(id) = state.session else { continue };
                if SessionId::parse(&id).is_none() {
                    continue;
                }
                recorded.insert(id.clone());
                if !session::is_alive(&id) {
                    if ended.insert(id) {
                        wake(&current, home.path);
                    }
                    continue;
                }
                if !waited.insert(id.clone()) {
                    continue;
                }
                let current = Arc::clone(&current);
                std::thread::spawn(move || {
                    while !session::wait(&id, Duration::from_secs(24 * 3600)) {}
                    wake(&current, home.path);
                });
            }
            ended.retain(|id| recorded.contains(id));
            Ok(if watched(town)? == dirs {
                Flow::Continue
            } else {
                Flow::Stop
            })
        })?;
    }
}
