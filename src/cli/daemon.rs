//! `gt-daemon` (`gt daemon ...`): the sessions of the whole town — cycling on
//! request, heartbeats, crash restarts with backoff, reports to the Mayor.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::daemon::{self, Options};
use crate::error::{Result, exit};
use crate::session::{self, SessionId};
use crate::town::Town;
use crate::watch::{Flow, Waker, Watch};

#[derive(Parser, Debug)]
#[command(
    name = "gt-daemon",
    version,
    about = "The daemon: cycle agent sessions on request, watch heartbeats, restart crashed Witnesses and Refineries",
    long_about = "The daemon: the sessions of every agent home in the town.\n\n\
        An agent whose session ended with `requesting_cycle: true` in its state.json (set by \
        `gt mail handoff --cycle`) gets a fresh session with the same command and environment, \
        generation + 1; it finds its handoff note in its inbox. A live session whose heartbeat \
        file is older than config/town.json `heartbeat_timeout` (default 10m) is reported to the \
        Mayor (a polecat's to its Witness) once per silence. A Witness or Refinery whose session ended without a cycle request \
        while `working` is restarted, the first time at once, then after 10s, 20s, 40s...; after \
        `max_restarts` (default 5) quick crashes in a row it is marked `dead` and the Mayor is told. \
        Polecats whose sessions end are left to the Witness. Everything is recorded in state.json \
        (protocol/daemon.md).",
    after_help = "Exit codes: 0 ok, 2 error."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One pass over every agent home, then exit (for cron, systemd timers and tests)
    Tick {
        /// Print the actions as JSON
        #[arg(long)]
        json: bool,
    },
    /// A pass on every change to an agent's state or mail, when a session ends, and at least every --every
    Run {
        /// Longest wait between passes (e.g. 30s, 5m)
        #[arg(long, default_value = "30s")]
        every: String,
        /// Print each action as a JSON line
        #[arg(long)]
        json: bool,
    },
    /// Start an agent's session (a Witness, Refinery, the Mayor, ...), to be kept by the daemon
    Start {
        /// The agent's address, e.g. <rig>/witness
        address: String,
        /// Agent command line, run with sh -c (default: the one it last ran, else the rig's or town's agent_command)
        #[arg(long)]
        agent: Option<String>,
        /// Print the agent's new state as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli: Cli = super::parse(args);
    super::run("gt-daemon", || match cli.cmd {
        Cmd::Tick { json } => tick(json),
        Cmd::Run { every, json } => run(&every, json),
        Cmd::Start {
            address,
            agent,
            json,
        } => start(&address, agent, json),
    })
}

fn tick(json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let mut actions = daemon::tick(&town, &Options::for_town(&town)?)?;
    actions.extend(crate::federation::outbox::pass(&town));
    if json {
        super::print_json(&actions)?;
    } else if actions.is_empty() {
        println!("nothing to do");
    } else {
        super::print_actions(&actions, false)?;
    }
    Ok(exit::OK)
}

fn start(address: &str, agent: Option<String>, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let home = town.resolve(address, crate::town::Bare::Address)?;
    let state = daemon::start_fresh(&town, &home, agent)?;
    if json {
        super::print_json(&state)?;
    } else {
        println!(
            "started {}: generation {}, session {}",
            home.address,
            state.generation,
            state.session.unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

/// Directories whose changes can matter: every home (state.json, heartbeat),
/// where new homes appear, and the town's config (a new rig).
fn watched(town: &Town) -> Result<Vec<PathBuf>> {
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

fn run(every: &str, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let every: Duration = crate::clock::parse_duration(every).map_err(|e| e.context("--every"))?;
    let mut announced = false;
    // Sessions waited for, ended sessions already seen, restart times waited
    // for, and the watch their threads wake; all outlive a rebuilt watch.
    let mut waited: HashSet<String> = HashSet::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut timers: HashSet<jiff::Timestamp> = HashSet::new();
    let current: Arc<Mutex<Option<Waker>>> = Arc::default();
    // A new or removed home changes what to watch: the watch is rebuilt.
    loop {
        let dirs = watched(&town)?;
        let refs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
        let mut watch = Watch::new(&refs, every)?;
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.waker());
        watch.run(|_| {
            let mut actions = daemon::tick(&town, &Options::for_town(&town)?)?;
            actions.extend(crate::federation::outbox::pass(&town));
            super::print_actions(&actions, json)?;
            if !announced {
                eprintln!(
                    "gt-daemon: watching {} directories of town {}; a pass at least every {every:?}",
                    dirs.len(),
                    town.root().display()
                );
                announced = true;
            }
            waited.retain(|id| session::is_alive(id));
            let mut recorded = HashSet::new();
            let now = crate::clock::now();
            timers.retain(|t| *t > now);
            for home in town.homes()? {
                let Ok(state) = home.state() else { continue };
                // A restart backed off until a time that no file event will mark.
                if let Some(due) = state
                    .next_restart_at
                    .filter(|due| *due > now && timers.insert(*due))
                {
                    let wait = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                    let (current, path) = (Arc::clone(&current), home.path.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        wake(&current, path);
                    });
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
            Ok(if watched(&town)? == dirs {
                Flow::Continue
            } else {
                Flow::Stop
            })
        })?;
    }
}
