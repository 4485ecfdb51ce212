//! `gt-daemon` (`gt daemon ...`): the sessions of the whole town — cycling on
//! request, heartbeats, crash restarts with backoff, reports to the Mayor.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::daemon::{self, Options};
use crate::error::Result;
use crate::event::Event;
use crate::town::Town;

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

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
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

fn tick(json: bool) -> Result<()> {
    let town = Town::discover()?;
    let actions = daemon::tick(&town, &Options::for_town(&town)?)?;
    if json {
        super::print_json(&actions)?;
    } else if actions.is_empty() {
        println!("nothing to do");
    } else {
        super::print_actions(&actions, false)?;
    }
    Ok(())
}

fn start(address: &str, agent: Option<String>, json: bool) -> Result<()> {
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
    Ok(())
}

fn run(every: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let every: Duration = crate::clock::parse_duration(every).map_err(|e| e.context("--every"))?;
    daemon::run(&town, every, &mut |event| match event {
        Event::Action(a) => super::print_actions(&[a], json),
        Event::Ready { watching } => {
            eprintln!(
                "gt-daemon: watching {watching} directories of town {}; a pass at least every {every:?}",
                town.root().display()
            );
            Ok(())
        }
    })?;
    Ok(())
}
