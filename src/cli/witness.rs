//! `gt-witness` (`gt witness ...`): the Witness's patrol of a rig's polecats,
//! once or as a watcher.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::event::Event;
use crate::town::Town;
use crate::witness::{self, Options};

#[derive(Parser, Debug)]
#[command(
    name = "gt-witness",
    version,
    about = "The Witness: check finished polecats, submit clean work to the merge queue, nudge, escalate, dispatch ready work",
    long_about = "The Witness's patrol of one rig.\n\n\
        For each working polecat: a done signal (mail of type `done`, or a subject starting \
        with `done`) or an ended session gets its clone checked; a clean clone with commits \
        goes to the merge queue, a dirty one is nudged by mail, and after 3 nudges the Mayor \
        gets an escalation and the polecat is marked stuck. A live polecat silent for longer \
        than the rig's `stuck_after` (default 30m) is nudged too. With --epic, ready children \
        of the epic are dispatched to new polecats within max_workers, and the Mayor is told \
        once when all of them are closed. Plugins (protocol/plugins.md): a debug-oracle's \
        diagnosis is added to an escalation; with a plan-oracle, an epic's children wait \
        for its `planned` reply (asked once, looked for on each patrol, bounded by the timeout).",
    after_help = "Exit codes: 0 ok, 2 error."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One patrol, then exit (for cron, systemd path units and agents)
    Patrol {
        /// The rig
        rig: String,
        /// Dispatch this epic's ready children and report it when done
        #[arg(long)]
        epic: Option<String>,
        /// Print the actions as JSON
        #[arg(long)]
        json: bool,
    },
    /// Patrol on every change to the witness's mail or the polecats, and at least every --every
    Run {
        /// The rig
        rig: String,
        /// Dispatch this epic's ready children and report it when done
        #[arg(long)]
        epic: Option<String>,
        /// Longest wait between patrols (e.g. 30s, 5m)
        #[arg(long, default_value = "30s")]
        every: String,
        /// Print each action as a JSON line
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let cli: Cli = super::parse(args);
    super::run("gt-witness", || match cli.cmd {
        Cmd::Patrol { rig, epic, json } => patrol(&rig, epic, json),
        Cmd::Run {
            rig,
            epic,
            every,
            json,
        } => run(&rig, epic, &every, json),
    })
}

fn patrol(rig: &str, epic: Option<String>, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    let actions = witness::patrol(&town, &rig, &Options { epic })?;
    if json {
        super::print_json(&actions)?;
    } else if actions.is_empty() {
        println!("nothing to do in rig {}", rig.name);
    } else {
        super::print_actions(&actions, false)?;
    }
    Ok(())
}

fn run(rig: &str, epic: Option<String>, every: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    let every: Duration = crate::clock::parse_duration(every).map_err(|e| e.context("--every"))?;
    witness::watch(
        &town,
        &rig,
        &Options { epic },
        every,
        &mut |event| match event {
            Event::Action(a) => super::print_actions(&[a], json),
            Event::Ready { .. } => {
                eprintln!(
                    "gt-witness: watching rig {} (witness mail and polecats); patrols at least every {every:?}",
                    rig.name
                );
                Ok(())
            }
        },
    )?;
    Ok(())
}
