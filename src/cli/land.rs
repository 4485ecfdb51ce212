//! `gt-land`: land a polecat's work on its rig's main (`gt land --direct`).

use clap::Parser;

use crate::error::Error;
use crate::land::{self, MergeKind, Outcome, Predicted, Report, short};
use crate::town::Town;

#[derive(Parser, Debug)]
#[command(
    name = "gt-land",
    version,
    about = "Land a polecat's branch on its rig's main: merge, test, push",
    long_about = "Land a polecat's branch on its rig's main, bypassing the merge queue.\n\n\
        Checks that the polecat's session has ended and its clone is clean, fetches its branch \
        into the Refinery's clone (<rig>/refinery/rig, the canonical main), merges it \
        (fast-forward, else a merge commit), runs the rig's test_command, pushes to origin, \
        then closes the polecat's issue, deletes its branch and mails the witness and the mayor. A conflict or a failing \
        test leaves the Refinery's clone as it was and pushes nothing. Landings on one rig \
        take turns on the lock <rig>/refinery/rig.lock.",
    after_help = "Exit status: 0 landed (or, with --dry-run, would land); 1 not landed: a safety \
        check failed, the merge conflicts, the tests failed or there is nothing to land; \
        2 error. See protocol/land.md."
)]
pub struct Cli {
    /// Land directly on main, bypassing the merge queue (`gt merge-queue add` queues instead)
    #[arg(long, required = true)]
    direct: bool,
    /// The polecat whose branch to land: <rig>/<polecat>, or a polecat's name in the current rig
    #[arg(value_name = "RIG/POLECAT")]
    polecat: String,
    /// Skip the safety checks: land even if the session runs or the clone is dirty
    #[arg(long)]
    force: bool,
    /// Do not run the rig's test_command
    #[arg(long)]
    skip_tests: bool,
    /// Print what would happen and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the result record as JSON
    #[arg(long)]
    json: bool,
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let cli: Cli = super::parse(args);
    super::run("gt-land", || {
        let town = Town::discover()?;
        let report = land::direct(
            &town,
            &cli.polecat,
            land::Options {
                force: cli.force,
                skip_tests: cli.skip_tests,
                dry_run: cli.dry_run,
            },
            &mut |p| eprintln!("{p}"),
        )?;
        if cli.json {
            super::print_json(&report)?;
        } else {
            print_human(&report);
        }
        let earlier = report.interrupted.iter().flat_map(|i| &i.notes);
        for note in earlier.chain(&report.notes) {
            eprintln!("gt-land: note: {note}");
        }
        match report.refusal() {
            Some(why) => Err(Error::negative(why)),
            None => Ok(()),
        }
    })
}

fn print_human(r: &Report) {
    if let Some(i) = &r.interrupted {
        println!("{i}");
        for d in &i.done {
            println!("  {:<8} {d}", "done");
        }
    }
    let mut lines: Vec<(&str, String)> = Vec::new();
    for c in &r.checks {
        let mark = match (c.ok, r.forced) {
            (true, _) => "ok",
            (false, true) => "FAILED, forced",
            (false, false) => "FAILED",
        };
        lines.push((c.name, format!("{mark}: {}", c.detail)));
    }
    if let Some(plan) = &r.plan {
        lines.push(("branch", format!("{} at {}", r.branch, short(&plan.tip))));
        let base = short(&plan.base);
        let merge = match &plan.merge {
            Predicted::FastForward => format!("fast-forward {} from {base}", plan.branch),
            Predicted::MergeCommit => format!("merge commit on {} at {base}", plan.branch),
            Predicted::UpToDate => format!("nothing to merge: already on {}", plan.branch),
            Predicted::Conflict { files } => {
                format!(
                    "CONFLICT with {} at {base} in {}",
                    plan.branch,
                    files.join(", ")
                )
            }
        };
        lines.push(("merge", merge));
        if let Some(now) = &plan.origin_now {
            lines.push((
                "origin",
                format!(
                    "moved to {} since the refinery clone's last fetch: predicted against {base}",
                    short(now)
                ),
            ));
        }
        lines.push((
            "tests",
            plan.tests
                .as_deref()
                .map_or_else(|| "none".to_string(), |t| format!("sh -c {t:?}")),
        ));
        lines.push(("push", format!("{} {}", land::REMOTE, plan.branch)));
        let mut then = Vec::new();
        if let Some(i) = &r.issue {
            then.push(format!("close issue {i}"));
        }
        then.push(format!("delete branch {}", r.branch));
        then.push(format!(
            "mail {}/witness and mayor",
            r.address.split('/').next().unwrap_or("")
        ));
        lines.push(("then", then.join(", ")));
    }
    match &r.outcome {
        Some(Outcome::Landed {
            branch,
            merge,
            base,
            head,
            tests,
            ..
        }) => {
            let how = match merge {
                MergeKind::FastForward => "fast-forward",
                MergeKind::MergeCommit => "merge commit",
            };
            lines.push((
                "merged",
                format!("{how} {}..{} on {branch}", short(base), short(head)),
            ));
            lines.push((
                "tests",
                tests.as_ref().map_or_else(
                    || "not run".to_string(),
                    |t| format!("passed: {}", t.command),
                ),
            ));
            lines.push(("pushed", format!("{} {branch}", land::REMOTE)));
        }
        Some(Outcome::TestsFailed { tests, .. }) => {
            lines.push(("tests", format!("FAILED: {}", tests.command)));
            for l in &tests.tail {
                lines.push(("", l.clone()));
            }
        }
        _ => {}
    }
    for d in &r.done {
        lines.push(("done", d.clone()));
    }
    let verb = match (r.dry_run, r.refusal().is_none()) {
        (true, true) => "dry run: would land",
        (true, false) => "dry run: would not land",
        (false, true) => "landed",
        (false, false) => "not landed",
    };
    println!(
        "{verb} {} (generation {}{})",
        r.address,
        r.generation,
        r.issue
            .as_deref()
            .map(|i| format!(", issue {i}"))
            .unwrap_or_default()
    );
    for (k, v) in lines {
        println!("  {k:<8} {v}");
    }
}
