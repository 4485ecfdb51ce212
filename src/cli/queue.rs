//! `gt-queue` (`gt queue`, `gt merge-queue`): a rig's merge queue,
//! `<rig>/refinery/queue/` (protocol/queue.md).

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::queue::{self, Junk, Located, Outcome, Queue, State};
use crate::town::Town;

#[derive(Parser, Debug)]
#[command(
    name = "gt-queue",
    version,
    about = "The merge queue of a rig: <rig>/refinery/queue/{pending,active,merged,failed}/",
    long_about = "The merge queue of a rig: one JSON file per entry in \
        <rig>/refinery/queue/{pending,active,merged,failed}/, named <time>-<polecat>.json so that \
        `ls` shows queue order. Adding creates a file in pending/; claiming renames it to active/ \
        (of racing claimers exactly one wins); done and fail record the result and rename it to \
        merged/ or failed/. Everything can be done by hand with ls, cat and mv (protocol/queue.md).",
    after_help = "Also spelled `gt queue ...` and, as in the seed, `gt merge-queue ...`."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Queue a polecat's branch for the Refinery (its clone must be clean)
    Add {
        /// The rig
        rig: String,
        /// The polecat: <name> or <rig>/<name>
        polecat: String,
        /// Print the new entry as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the queue: pending entries in order (files that are not entries are reported on stderr)
    List {
        /// The rig
        rig: String,
        /// Show every state: pending, active, merged and failed, and the archive
        #[arg(long)]
        all: bool,
        /// Print JSON lines, one entry per line, with its "state" and "path"
        #[arg(long)]
        json: bool,
    },
    /// Claim the first pending entry (rename it to active/) and print it; exit 1 if none
    Claim {
        /// The rig
        rig: String,
        /// Who claims, recorded in claimed_by (default: GT_ADDRESS, else the home you are in, else overseer)
        #[arg(long)]
        by: Option<String>,
        /// Print the claimed entry as JSON
        #[arg(long)]
        json: bool,
    },
    /// Mark an active entry merged (move it to merged/)
    Done {
        /// The entry: its id, <id>.json or the path of its file
        entry: String,
        /// The rig (default: GT_RIG, the rig you are in, or the only rig)
        #[arg(long)]
        rig: Option<String>,
        /// The commit the merge made on main
        #[arg(long)]
        sha: Option<String>,
        /// Print the entry as JSON
        #[arg(long)]
        json: bool,
    },
    /// Mark an active entry failed (move it to failed/) with the reason
    Fail {
        /// The entry: its id, <id>.json or the path of its file
        entry: String,
        /// Why it failed, one line
        #[arg(long)]
        reason: String,
        /// The rig (default: GT_RIG, the rig you are in, or the only rig)
        #[arg(long)]
        rig: Option<String>,
        /// Print the entry as JSON
        #[arg(long)]
        json: bool,
    },
    /// Move active entries whose claim is older than a timeout back to pending (a killed refinery)
    Requeue {
        /// The rig
        rig: String,
        /// Claims at least this old are stale: 30s, 10m, 1h (a claim's age is its file's last change)
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        older_than: String,
        /// Print the requeued entries as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Move merged and failed entries older than the rig's queue_archive_after (default
    /// 168h) to <queue>/archive/<YYYY-MM>/{merged,failed}/ (the Refinery does so on its passes)
    Archive {
        /// The rig
        rig: String,
        /// Archive entries that finished at least this long ago instead: 1h, 720h
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Print the archived entries as JSON lines
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let cli: Cli = super::parse(args);
    super::run("gt-queue", || dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<()> {
    let town = Town::discover()?;
    match cli.cmd {
        Cmd::Add { rig, polecat, json } => {
            let rig = town.rig(&rig)?;
            let added = queue::submit(&town, &rig, &polecat)?;
            if json {
                super::print_json(&added)?;
            } else {
                println!(
                    "queued {} ({}): {}",
                    added.entry.polecat, added.entry.branch, added.entry.id
                );
            }
            Ok(())
        }
        Cmd::List { rig, all, json } => {
            let q = Queue::of(&town.rig(&rig)?);
            let states: &[State] = if all { &State::ALL } else { &[State::Pending] };
            let mut listing = q.list(states)?;
            if all {
                let archive = q.list_archive()?;
                listing.entries.extend(archive.entries);
                listing.junk.extend(archive.junk);
            }
            report_junk(&listing.junk);
            if json {
                listing
                    .entries
                    .iter()
                    .try_for_each(super::print_json_line)?;
            } else {
                print_entries(&listing.entries, all);
            }
            Ok(())
        }
        Cmd::Claim { rig, by, json } => {
            let q = Queue::of(&town.rig(&rig)?);
            let by = match by {
                Some(b) => b,
                None => claimer(&town)?,
            };
            let (claimed, junk) = q.claim(&by)?;
            report_junk(&junk);
            let Some(claimed) = claimed else {
                return Err(Error::negative(format!(
                    "nothing pending in {}",
                    q.state_dir(State::Pending).display()
                )));
            };
            show(&claimed, json)?;
            Ok(())
        }
        Cmd::Done {
            entry,
            rig,
            sha,
            json,
        } => {
            let q = Queue::of(&town.current_rig(rig.as_deref())?);
            show(&q.finish(&entry, Outcome::Merged { sha })?, json)?;
            Ok(())
        }
        Cmd::Fail {
            entry,
            reason,
            rig,
            json,
        } => {
            let q = Queue::of(&town.current_rig(rig.as_deref())?);
            let outcome = Outcome::Failed {
                reason,
                conflicts: Vec::new(),
            };
            show(&q.finish(&entry, outcome)?, json)?;
            Ok(())
        }
        Cmd::Requeue {
            rig,
            older_than,
            json,
        } => {
            let q = Queue::of(&town.rig(&rig)?);
            let (moved, junk) = q.requeue(crate::clock::parse_duration(&older_than)?, None)?;
            report_junk(&junk);
            if json {
                moved.iter().try_for_each(super::print_json_line)?;
            } else {
                for l in &moved {
                    println!("requeued {}", l.entry.id);
                }
            }
            Ok(())
        }
        Cmd::Archive {
            rig,
            older_than,
            json,
        } => {
            let rig = town.rig(&rig)?;
            let older_than = match older_than {
                Some(d) => crate::clock::parse_duration(&d)?,
                None => rig.config()?.queue_archive_after(),
            };
            let (moved, junk) = Queue::of(&rig).archive(older_than)?;
            report_junk(&junk);
            if json {
                moved.iter().try_for_each(super::print_json_line)?;
            } else {
                moved.iter().for_each(print_archived);
            }
            Ok(())
        }
    }
}

/// One archived entry, as `gt queue archive` and the Refinery say it.
pub(super) fn print_archived(l: &Located) {
    println!(
        "archived {} ({}): {}",
        l.entry.id,
        l.state,
        l.path.display()
    );
}

/// Who is claiming: the acting agent's address, else the overseer (a person
/// at a shell, protocol/README.md "Who am I").
fn claimer(town: &Town) -> Result<String> {
    Ok(town.whoami()?.address.to_string())
}

fn report_junk(junk: &[Junk]) {
    for j in junk {
        eprintln!("gt-queue: {j}");
    }
}

/// One entry, field per line (or its JSON).
fn show(l: &Located, json: bool) -> Result<()> {
    if json {
        return super::print_json(l);
    }
    let e = &l.entry;
    let mut rows = vec![
        ("id", e.id.clone()),
        ("state", l.state.to_string()),
        ("polecat", e.polecat.clone()),
        ("branch", e.branch.clone()),
    ];
    let opt = |v: &Option<String>| v.clone();
    for (k, v) in [
        ("issue", opt(&e.issue)),
        ("generation", e.generation.map(|g| g.to_string())),
        ("claimed_by", opt(&e.claimed_by)),
        ("claimed_at", opt(&e.claimed_at)),
        ("merged_sha", opt(&e.merged_sha)),
        ("reason", opt(&e.reason)),
        (
            "hold",
            e.hold
                .as_ref()
                .map(|h| format!("{} by {} at {}: {}", h.verdict, h.by, h.at, h.reason)),
        ),
    ] {
        rows.extend(v.map(|v| (k, v)));
    }
    rows.push(("path", l.path.display().to_string()));
    for (k, v) in rows {
        println!("{k:<11} {v}");
    }
    Ok(())
}

fn print_entries(entries: &[Located], with_state: bool) {
    let mut header = vec!["ID"];
    if with_state {
        header.push("STATE");
    }
    header.extend(["POLECAT", "GEN", "BRANCH", "ISSUE"]);
    if with_state {
        header.push("RESULT");
    }
    // Pending entries a plugin holds say so, and why.
    let holds = !with_state && entries.iter().any(|l| l.entry.hold.is_some());
    if holds {
        header.push("HOLD");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|l| {
            let e = &l.entry;
            let mut row = vec![e.id.clone()];
            if with_state {
                row.push(match &l.archived {
                    Some(month) => format!("{} (archive {month})", l.state),
                    None => l.state.to_string(),
                });
            }
            row.extend([
                e.polecat.clone(),
                e.generation.map_or("-".into(), |g| g.to_string()),
                e.branch.clone(),
                e.issue.clone().unwrap_or_else(|| "-".into()),
            ]);
            if with_state {
                row.push(match l.state {
                    State::Pending => e.hold.as_ref().map_or_else(String::new, hold_text),
                    State::Active => {
                        format!("claimed by {}", e.claimed_by.as_deref().unwrap_or("?"))
                    }
                    State::Merged => e
                        .merged_sha
                        .as_deref()
                        .map(short)
                        .unwrap_or_default()
                        .to_string(),
                    State::Failed => e.reason.clone().unwrap_or_default(),
                });
            }
            if holds {
                row.push(e.hold.as_ref().map_or_else(String::new, hold_text));
            }
            row
        })
        .collect();
    super::print_table(&header, &rows);
}

fn hold_text(h: &crate::queue::Hold) -> String {
    format!("{} by {}: {}", h.verdict, h.by, h.reason)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
