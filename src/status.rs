//! What `gt status`, `gt rigs`, `gt polecats` and `gt plugins` report: rows
//! built from the tree (and the rules that go into them, such as a heartbeat's
//! age), for the CLI to render as text or JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Role};
use crate::error::Result;
use crate::home::Home;
use crate::record::Status;
use crate::rig::Rig;
use crate::town::Town;

/// One rig as `gt rigs` and `gt status` show it.
#[derive(Serialize, Deserialize)]
pub struct RigRow {
    pub name: String,
    pub path: PathBuf,
    pub git_url: String,
    pub added_at: String,
    pub polecats: usize,
    /// Merge queue entries by state.
    pub queue: QueueCounts,
    /// Whether `gt witness run` / the Refinery loop of the rig runs (its run
    /// file is held; protocol/README.md, "Run files").
    pub witness_running: bool,
    pub refinery_running: bool,
}

/// How many merge queue entries are in each state.
#[derive(Serialize, Deserialize, Default)]
pub struct QueueCounts {
    pub pending: usize,
    pub active: usize,
    pub failed: usize,
}

impl QueueCounts {
    /// The entries of `rig`'s merge queue as `gt queue list` reads them (an
    /// unreadable state directory counts none). Names alone cannot tell a
    /// junk `*.json` from an entry, so each file is read: the three states
    /// counted hold few entries (merged ones, the many, are not counted).
    pub fn of(rig: &Rig) -> QueueCounts {
        let queue = crate::queue::Queue::of(rig);
        let count = |state| queue.list(&[state]).map_or(0, |l| l.entries.len());
        QueueCounts {
            pending: count(crate::queue::State::Pending),
            active: count(crate::queue::State::Active),
            failed: count(crate::queue::State::Failed),
        }
    }
}

/// Every rig of the town, by name.
pub fn rig_rows(town: &Town) -> Result<Vec<RigRow>> {
    let mut rows = Vec::new();
    for (name, entry) in town.rigs()?.rigs {
        let rig = Rig::at(town, &name);
        rows.push(RigRow {
            polecats: rig.polecats()?.len(),
            queue: QueueCounts::of(&rig),
            witness_running: crate::runner::holder(&crate::runner::witness(&rig)).is_some(),
            refinery_running: crate::runner::holder(&crate::runner::refinery(&rig)).is_some(),
            path: rig.path,
            name,
            git_url: entry.git_url,
            added_at: entry.added_at,
        });
    }
    Ok(rows)
}

/// One agent as `gt status` and `gt polecats` show it. Every age is whole
/// seconds to now (`GT_NOW` holds), in a key ending in `_age_s`.
#[derive(Serialize, Deserialize)]
pub struct AgentRow {
    pub address: String,
    pub role: String,
    /// The recorded status, except that a `working` agent whose recorded
    /// session is gone is `dead`, and one whose live runtime waits at a
    /// dialog is `blocked`: liveness is read, never assumed. `unreadable`
    /// when `state.json` is (why: `error`).
    pub status: String,
    /// The dialog a live session's runtime waits at (`blocked` in its state)
    /// and what to do about it.
    pub blocked: Option<Blocked>,
    /// The issue it works on: none while idle or asleep (`state.json` keeps
    /// the last one, which is not its work any more).
    pub issue: Option<String>,
    pub session: Option<String>,
    /// Whether the recorded session runs; null when none is recorded.
    pub session_alive: Option<bool>,
    pub generation: u64,
    pub requesting_cycle: bool,
    /// Since the agent last showed life (the later of its `heartbeat` and its
    /// session's start, the rule the Witness and daemon use); null if never.
    pub heartbeat_age_s: Option<u64>,
    /// Since `state.json` last changed (`updated_at`).
    pub state_age_s: Option<u64>,
    /// Since its recorded session started.
    pub session_age_s: Option<u64>,
    /// Since mail last reached its inbox.
    pub last_mail_age_s: Option<u64>,
    /// Messages in its inbox not yet marked read.
    pub unread: usize,
    /// Why the state could not be read, if it could not; or why its recorded
    /// session is not the agent's (which then counts as not alive: see
    /// [`crate::session::Owner`]).
    pub error: Option<String>,
}

/// A blocked agent's dialog (its first lines) and what to do.
#[derive(Serialize, Deserialize)]
pub struct Blocked {
    pub dialog: String,
    pub to_do: String,
}

/// `home`'s row; an unreadable `state.json` makes a row with `error` set.
pub fn agent_row(town: &Town, home: &Home) -> AgentRow {
    Facts::read(town, home).row()
}

/// What a row is made from, read from `home`'s files: times, not ages, and
/// the session, not whether it runs, so `gt status --watch` can keep the
/// facts of a home that did not change and still show every age and
/// liveness as of the redraw.
struct Facts {
    /// Why the recorded session, live when read, is not the agent's: a
    /// process's environment is fixed, so this holds for as long as it runs.
    foreign: Option<String>,
    address: String,
    role: String,
    state: Option<crate::record::AgentState>,
    error: Option<String>,
    sign_of_life: Option<jiff::Timestamp>,
    last_mail: Option<jiff::Timestamp>,
    unread: usize,
}

impl Facts {
    fn read(town: &Town, home: &Home) -> Facts {
        let (state, error) = match home.state() {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let foreign = (state.as_ref().and_then(|s| s.session.as_deref()))
            .and_then(|id| crate::session::Owner::of(town, home).foreign(id))
            .map(|f| f.to_string());
        Facts {
            foreign,
            address: home.address.to_string(),
            role: home.address.role().to_string(),
            sign_of_life: state.as_ref().and_then(|s| home.last_sign_of_life(s)),
            last_mail: crate::confine::metadata(&home.inbox())
                .ok()
                .filter(|m| m.len() > 0)
                .and_then(|m| m.modified().ok())
                .and_then(|t| jiff::Timestamp::try_from(t).ok()),
            unread: unread(home).len(),
            state,
            error,
        }
    }

    /// The row as of now: whether the recorded session runs as the agent's.
    fn row(&self) -> AgentRow {
        let state = self.state.as_ref();
        let session = state.and_then(|s| s.session.clone());
        let running = session.as_deref().map(crate::session::is_alive);
        let foreign = self.foreign.clone().filter(|_| running == Some(true));
        let session_alive = running.map(|r| r && foreign.is_none());
        let status = match state {
            None => "unreadable".to_string(),
            Some(s) if s.status == Status::Working && session_alive == Some(false) => {
                "dead".to_string()
            }
            Some(s) if s.blocked.is_some() && session_alive == Some(true) => "blocked".to_string(),
            Some(s) => s.status.to_string(),
        };
        let blocked = state
            .and_then(|s| s.blocked.clone())
            .filter(|_| session_alive == Some(true))
            .map(|dialog| Blocked {
                dialog,
                to_do: crate::agent::blocked_hint(&self.address),
            });
        AgentRow {
            address: self.address.clone(),
            role: self.role.clone(),
            status,
            blocked,
            issue: state
                .filter(|s| !matches!(s.status, Status::Idle | Status::Asleep))
                .and_then(|s| s.issue.clone()),
            session_age_s: state
                .filter(|s| s.session.is_some())
                .and_then(|s| s.started_at)
                .map(age_s),
            session,
            session_alive,
            generation: state.map_or(0, |s| s.generation),
            requesting_cycle: state.is_some_and(|s| s.requesting_cycle),
            heartbeat_age_s: self.sign_of_life.map(age_s),
            state_age_s: state.and_then(|s| s.updated_at).map(age_s),
            last_mail_age_s: self.last_mail.map(age_s),
            unread: self.unread,
            error: self.error.clone().or(foreign),
        }
    }
}

/// The messages of `home`'s inbox not yet read, without moving its cursor.
pub(crate) fn unread(home: &Home) -> Vec<crate::mail::Message> {
    crate::mail::reader::Reader::owner(home)
        .peek()
        .map(|scan| scan.messages.into_iter().map(|p| p.message).collect())
        .unwrap_or_default()
}

/// What `gt status` shows.
#[derive(Serialize, Deserialize)]
pub struct StatusReport {
    pub town: String,
    pub root: PathBuf,
    /// Whether `gt daemon run` runs for this town.
    pub daemon_running: bool,
    /// Unread escalations in the Mayor's and the overseer's inboxes.
    pub escalations: Vec<Escalation>,
    pub rigs: Vec<RigRow>,
    pub agents: Vec<AgentRow>,
    /// This town's polecats running on other machines (federation/workers/).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_workers: Vec<crate::federation::worker::RemoteWorker>,
}

/// An unread escalation.
#[derive(Serialize, Deserialize)]
pub struct Escalation {
    /// Whose inbox holds it (`mayor` or `overseer`).
    pub to: String,
    pub id: String,
    pub from: String,
    pub subject: String,
    pub age_s: Option<u64>,
}

/// Unread escalations in the inboxes of the Mayor and the overseer.
pub fn escalations(town: &Town) -> Vec<Escalation> {
    [Address::Mayor, Address::Overseer]
        .iter()
        .filter_map(|a| town.home(a).ok())
        .flat_map(|home| {
            unread(&home)
                .into_iter()
                .filter(|m| m.kind == "escalation")
                .map(move |m| Escalation {
                    to: home.address.to_string(),
                    age_s: crate::clock::parse(&m.timestamp).map(age_s),
                    id: m.id,
                    from: m.from,
                    subject: m.subject,
                })
        })
        .collect()
}

/// A note for the overseer when escalations wait in the Mayor's inbox and no
/// Mayor session runs to read them: nobody else will hear of them. One the
/// daemon forwarded to the overseer is heard already (its own mail).
pub fn unheard_escalations(town: &Town) -> Option<String> {
    let overseer = town.home(&Address::Overseer).ok()?;
    let forwarded = |id: &str| {
        crate::mail::find(&overseer, &crate::mail::forward_id(id)).is_ok_and(|m| m.is_some())
    };
    let waiting = escalations(town)
        .into_iter()
        .filter(|e| e.to == "mayor" && !forwarded(&e.id))
        .count();
    let mayor = town.home(&Address::Mayor).ok()?;
    let owner = crate::session::Owner::of(town, &mayor);
    let live =
        (mayor.state().ok().and_then(|s| s.session)).is_some_and(|id| owner.live(&id) == Ok(true));
    (waiting > 0 && !live).then(|| {
        format!(
            "the Mayor has {waiting} unread escalation(s) and no live session; read them with: gt inbox --as mayor"
        )
    })
}

/// The whole town: its rigs and every agent.
pub fn report(town: &Town) -> Result<StatusReport> {
    report_of(town, &read_all(town, &town.homes()?))
}

/// The facts of every home, read on a few threads: each home is a handful
/// of small files and /proc reads, and a town may have hundreds.
fn read_all(town: &Town, homes: &[Home]) -> Vec<Facts> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = homes.len().div_ceil(threads).max(16);
    std::thread::scope(|s| {
        let parts: Vec<_> = homes
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|h| Facts::read(town, h))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("reading a home does not panic"))
            .collect()
    })
}

/// The report with these agents.
fn report_of(town: &Town, agents: &[Facts]) -> Result<StatusReport> {
    Ok(StatusReport {
        town: town.config()?.name,
        root: town.root().to_path_buf(),
        daemon_running: crate::runner::holder(&crate::runner::daemon(town)).is_some(),
        escalations: escalations(town),
        rigs: rig_rows(town)?,
        agents: agents.iter().map(Facts::row).collect(),
        remote_workers: crate::federation::worker::list(town, None)?,
    })
}

/// [`report`] now and on every change to the tree it is made from (agents'
/// homes and mail, the merge queues, the town's config): inotify, no timer.
/// `on` gets each report; runs until an error (`on`'s too).
///
/// A redraw re-reads only the homes an event names (the others' facts are
/// kept; their ages and liveness are still as of the redraw), and looks for new homes or rigs only when an
/// event could mean one (a directory, or a change beside the homes).
pub fn watch(town: &Town, on: &mut dyn FnMut(&StatusReport) -> Result<()>) -> Result<()> {
    loop {
        let dirs = watched(town)?;
        let refs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
        let homes = town.homes()?;
        let mut facts = read_all(town, &homes);
        let mut first = true;
        // Events only: the "rescan" of a watch with nothing to catch up on
        // would redraw the same frame, so it is a day away.
        let mut w = crate::watch::Watch::new(&refs, std::time::Duration::from_secs(86_400))?;
        w.run(|wake| {
            let changed = match wake {
                crate::watch::Wake::Changed(paths) => Some(paths),
                _ => None,
            };
            // Leaves: files right inside a home, its mail/ or a queue state
            // directory. Anything else may be a new home, rig or queue.
            let is_leaf = |p: &PathBuf| {
                !p.is_dir()
                    && p.parent().is_some_and(|d| {
                        homes.iter().any(|h| d == h.path || d == h.mail_dir())
                            || d.parent().is_some_and(|q| q.ends_with("refinery/queue"))
                    })
            };
            if let Some(paths) = &changed
                && !paths.iter().all(is_leaf)
                && watched(town)? != dirs
            {
                return Ok(crate::watch::Flow::Stop);
            }
            match &changed {
                Some(paths) if !first => {
                    for (home, f) in homes.iter().zip(facts.iter_mut()) {
                        if paths.iter().any(|p| p.starts_with(&home.path)) {
                            *f = Facts::read(town, home);
                        }
                    }
                }
                _ if !first => {
                    facts = read_all(town, &homes);
                }
                _ => {}
            }
            first = false;
            on(&report_of(town, &facts)?)?;
            Ok(crate::watch::Flow::Continue)
        })?;
    }
}

/// What a status report is made from: what the daemon watches, and every
/// home's mail and every rig's queue.
fn watched(town: &Town) -> Result<Vec<PathBuf>> {
    let mut dirs = crate::daemon::watched(town)?;
    dirs.extend(
        town.homes()?
            .iter()
            .map(Home::mail_dir)
            .filter(|d| d.is_dir()),
    );
    for name in town.rigs()?.rigs.keys() {
        let queue = crate::queue::Queue::of(&Rig::at(town, name));
        dirs.extend(
            crate::queue::State::ALL
                .iter()
                .map(|s| queue.state_dir(*s))
                .filter(|d| d.is_dir()),
        );
    }
    Ok(dirs)
}

/// A rig's polecats.
pub fn polecats(town: &Town, rig: &Rig) -> Result<Vec<AgentRow>> {
    Ok(rig.polecats()?.iter().map(|h| agent_row(town, h)).collect())
}

/// A rig's plugins (agents under `<rig>/plugins/`).
pub fn plugins(town: &Town, rig: &Rig) -> Result<Vec<AgentRow>> {
    Ok(rig
        .homes()?
        .iter()
        .filter(|h| h.address.role() == Role::Plugin)
        .map(|h| agent_row(town, h))
        .collect())
}

/// Whole seconds from `t` to now ([`crate::clock::now`], so `GT_NOW` holds);
/// 0 for a time in the future.
pub(crate) fn age_s(t: jiff::Timestamp) -> u64 {
    crate::clock::now()
        .duration_since(t)
        .as_secs()
        .try_into()
        .unwrap_or(0)
}
