//! `gt-refinery` (`gt refinery process <rig>`): consume a rig's merge queue
//! (protocol/queue.md, "The Refinery").

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::land;
use crate::refinery::{Event, Refinery};
use crate::town::Town;

#[derive(Parser, Debug)]
#[command(
    name = "gt-refinery",
    version,
    about = "The Refinery: merge a rig's queued polecat branches into main, test, push, report",
    after_help = "The queue is <rig>/refinery/queue/ (see gt-queue(1)); the canonical main clone is \
        <rig>/refinery/rig/. Landing is the same as gt land's (protocol/land.md). Plugins \
        (protocol/plugins.md): a merge-oracle is asked before each entry (proceed, hold, \
        escalate), a review-oracle after its tests passed and before the push (approve, reject)."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Process the queue: for each entry in order, merge, test, push, close the issue,
    /// mail the polecat and the witness; a conflict or failing tests send it to failed/
    Process {
        /// The rig
        rig: String,
        /// Process until nothing is pending, then exit (for systemd path units and cron);
        /// without it, keep watching pending/ and process entries as they arrive
        #[arg(long)]
        once: bool,
        /// A claim of this refinery's whose file has not changed for this long is from a
        /// killed refinery: put it back in pending/ (a working refinery renews its claim every 30s)
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        stale_after: String,
        /// Print one JSON line per event: processed entries (with the landing), junk, requeues
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let cli: Cli = super::parse(args);
    super::run("gt-refinery", || dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<()> {
    let town = Town::discover()?;
    let Cmd::Process {
        rig,
        once,
        stale_after,
        json,
    } = cli.cmd;
    let rig = town.rig(&rig)?;
    let mut refinery = Refinery::new(&town, &rig, crate::clock::parse_duration(&stale_after)?);
    let mut on = |event: Event| print(&event, json);
    if once {
        refinery.drain(&mut on)?;
    } else {
        refinery.watch(&mut on)?;
    }
    Ok(())
}

fn print(event: &Event, json: bool) {
    let out = match (event, json) {
        (Event::Junk(j), _) => {
            eprintln!("gt-refinery: {j}");
            return;
        }
        (Event::Landing(p), _) => {
            eprintln!("{p}");
            return;
        }
        (Event::Processed(p), true) => super::print_json_line(p),
        (Event::Held(h), true) => super::print_json_line(h),
        (Event::Held(h), false) => {
            println!(
                "{} {} by {}: {}",
                if h.verdict.verdict == "escalate" {
                    "escalated"
                } else {
                    "held"
                },
                h.entry.entry.id,
                h.verdict.by,
                h.verdict.reason
            );
            for d in &h.done {
                println!("  {d}");
            }
            for n in &h.notes {
                println!("  note: {n}");
            }
            Ok(())
        }
        (Event::Interrupted(i), true) => super::print_json_line(&serde_json::json!({
            "event": "interrupted_direct_landing", "interrupted": i
        })),
        (Event::Interrupted(i), false) => {
            println!("{i}");
            for d in &i.done {
                println!("  {d}");
            }
            for n in &i.notes {
                println!("  note: {n}");
            }
            Ok(())
        }
        (Event::Requeued(l), true) => super::print_json_line(&serde_json::json!({
            "event": "requeued", "id": l.entry.id, "path": l.path
        })),
        (Event::Archived(l), true) => super::print_json_line(&serde_json::json!({
            "event": "archived", "id": l.entry.id, "state": l.state, "path": l.path
        })),
        (Event::Archived(l), false) => {
            super::queue::print_archived(l);
            Ok(())
        }
        (Event::Processed(p), false) => {
            let e = &p.entry.entry;
            match (&e.merged_sha, &e.reason) {
                (Some(sha), _) => println!(
                    "merged {} ({} {}) at {}",
                    e.id,
                    e.polecat,
                    e.branch,
                    land::short(sha)
                ),
                (_, Some(reason)) => println!("failed {}: {reason}", e.id),
                _ => println!("{} {}", p.entry.state, e.id),
            }
            for d in &p.done {
                println!("  {d}");
            }
            for n in &p.notes {
                println!("  note: {n}");
            }
            Ok(())
        }
        (Event::Requeued(l), false) => {
            println!("requeued {} (a stale claim of this refinery)", l.entry.id);
            Ok(())
        }
    };
    if let Err(e) = out {
        super::report("gt-refinery", &e);
    }
}
