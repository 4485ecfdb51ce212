//! `gt-issue` (`gt issue ...`, and the seed spellings `gt ready <rig>` and
//! `gt waves <rig> <epic>`): the rig's tracker for agents and people without `bd`.

use clap::{Args, Parser, Subcommand};

use crate::beads::{self, Issue, ListFilter, NewIssue, ReadyFilter, Tracker, Update};
use crate::error::{Error, Kind, Result};
use crate::rig::Rig;
use crate::town::{Identity, Source, Town};

const BIN: &str = "gt-issue";

#[derive(Parser, Debug)]
#[command(
    name = "gt-issue",
    version,
    about = "The rig's issue tracker (beads): list, show, ready work, waves, create, update, claim, close",
    long_about = "The rig's issue tracker (beads) in <rig>/.beads/.\n\n\
        With `bd` or `br` on PATH (or `beads.cli` in the rig's config.json, or GT_BEADS_CLI), \
        every command calls that program with --json and BEADS_DIR=<rig>/.beads. Otherwise \
        gastown keeps .beads/issues.jsonl itself in the beads format (GT_BEADS_CLI=native forces this).",
    after_help = "The rig is --rig, else GT_RIG, else the rig of the current directory, else the only rig.\n\
        Exit codes: 0 ok, 1 claim or release refused (someone else holds the issue), 2 error."
)]
pub struct Cli {
    /// The rig whose tracker to use
    #[arg(long, global = true, value_name = "RIG")]
    rig: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone, Copy)]
struct Json {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List issues (all but closed ones, unless --all or --status)
    List {
        /// Include closed issues
        #[arg(long)]
        all: bool,
        /// Only issues with this status
        #[arg(long)]
        status: Option<String>,
        /// Only issues assigned to this worker
        #[arg(long)]
        assignee: Option<String>,
        /// Only issues of this type
        #[arg(long = "type", value_name = "TYPE")]
        issue_type: Option<String>,
        /// Only descendants of this issue
        #[arg(long)]
        parent: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Show one issue and what blocks it
    Show {
        id: String,
        #[command(flatten)]
        json: Json,
    },
    /// Ready work: open, unblocked, best first (`gt ready <rig>`)
    Ready {
        /// The rig (same as --rig)
        // Its own id: an arg with the global --rig's id would shadow it here.
        #[arg(id = "rig_positional", value_name = "RIG")]
        rig: Option<String>,
        /// Only descendants of this epic
        #[arg(long)]
        parent: Option<String>,
        /// At most N issues
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<usize>,
        #[command(flatten)]
        json: Json,
    },
    /// The waves in which an epic's children become workable (`gt waves <rig> <epic>`)
    Waves {
        /// [RIG] EPIC: the rig (same as --rig) and the epic
        #[arg(num_args = 1..=2, required = true, value_names = ["RIG", "EPIC"])]
        args: Vec<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Create an issue
    Create {
        title: String,
        /// Longer description
        #[arg(long, short = 'd')]
        description: Option<String>,
        /// 0 (highest) to 4 (lowest); default 2
        #[arg(long, short = 'p')]
        priority: Option<i64>,
        /// task, bug, feature, epic, chore, ...; default task
        #[arg(long = "type", short = 't', value_name = "TYPE")]
        issue_type: Option<String>,
        /// Make it a child <parent>.N of this issue
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        /// A label (repeat for more)
        #[arg(long = "label", short = 'l', value_name = "LABEL")]
        labels: Vec<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Change an issue's status, assignee, priority, title or description
    Update {
        id: String,
        #[arg(long)]
        status: Option<String>,
        /// New assignee ("" clears it)
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long, short = 'p')]
        priority: Option<i64>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, short = 'd')]
        description: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Close an issue (closing a closed issue changes nothing)
    Close {
        id: String,
        /// Why (e.g. "merged in abc123")
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Dependencies between issues
    #[command(subcommand)]
    Dep(DepCmd),
    /// Claim an issue for a worker: in_progress + assignee, atomically; exit 1 if someone else holds it
    Claim {
        id: String,
        /// The worker (default: who you are, from GT_ADDRESS or the current directory)
        #[arg(long)]
        assignee: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Give a claimed issue back (status open, no assignee); exit 1 if someone else holds it
    Release {
        id: String,
        /// The worker giving it back (default: who you are)
        #[arg(long)]
        assignee: Option<String>,
        #[command(flatten)]
        json: Json,
    },
}

#[derive(Subcommand, Debug)]
enum DepCmd {
    /// ID depends on ON: ON must close before ID is ready (for --type blocks)
    Add {
        id: String,
        on: String,
        /// blocks, parent-child, conditional-blocks, waits-for, related, discovered-from, ...
        #[arg(
            long = "type",
            short = 't',
            default_value = "blocks",
            value_name = "TYPE"
        )]
        kind: String,
        #[command(flatten)]
        json: Json,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let cli: Cli = super::parse(args);
    super::run(BIN, || dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<()> {
    let town = Town::discover()?;
    let mut rig_arg = cli.rig;
    let mut pick = |positional: Option<String>| -> Result<Rig> {
        if let (Some(p), Some(r)) = (&positional, &rig_arg)
            && p != r
        {
            return Err(Error::invalid(format!("two rigs given: {p} and --rig {r}")));
        }
        town.current_rig(positional.or(rig_arg.take()).as_deref())
    };
    match cli.cmd {
        Cmd::List {
            all,
            status,
            assignee,
            issue_type,
            parent,
            json,
        } => {
            let t = beads::open(&pick(None)?)?;
            let filter = ListFilter {
                all,
                status,
                assignee,
                issue_type,
                parent,
            };
            let issues = t.list(&filter);
            report_bad(&*t);
            print_issues(&issues?, json.json, "no issues")?
        }
        Cmd::Show { id, json } => {
            let t = beads::open(&pick(None)?)?;
            let issue = t.show(&id);
            report_bad(&*t);
            show(&*t, &issue?, json.json)?
        }
        Cmd::Ready {
            rig,
            parent,
            limit,
            json,
        } => {
            let rig = pick(rig)?;
            let t = beads::open(&rig)?;
            let issues = t.ready(&ReadyFilter { parent, limit });
            report_bad(&*t);
            print_issues(
                &issues?,
                json.json,
                &format!("no ready work in rig {}", rig.name),
            )?
        }
        Cmd::Waves { mut args, json } => {
            let epic = args.pop().expect("clap requires EPIC");
            let t = beads::open(&pick(args.pop())?)?;
            let all = t.all();
            report_bad(&*t);
            let all = all?;
            let waves = beads::waves(&all, &epic, crate::clock::now())?;
            print_waves(&all, &waves, json.json)?
        }
        Cmd::Create {
            title,
            description,
            priority,
            issue_type,
            parent,
            assignee,
            labels,
            json,
        } => {
            let t = beads::open(&pick(None)?)?;
            let issue = t.create(&NewIssue {
                title,
                description,
                priority,
                issue_type,
                assignee,
                labels,
                parent,
            })?;
            done(
                &issue,
                json.json,
                format!("created {}: {}", issue.id, issue.title),
            )?
        }
        Cmd::Update {
            id,
            status,
            assignee,
            priority,
            title,
            description,
            json,
        } => {
            let t = beads::open(&pick(None)?)?;
            let issue = t.update(
                &id,
                &Update {
                    status,
                    assignee,
                    priority,
                    title,
                    description,
                },
            )?;
            done(&issue, json.json, format!("updated {}", issue.id))?
        }
        Cmd::Close { id, reason, json } => {
            let t = beads::open(&pick(None)?)?;
            let issue = t.close(&id, reason.as_deref())?;
            done(&issue, json.json, format!("closed {}", issue.id))?
        }
        Cmd::Dep(DepCmd::Add { id, on, kind, json }) => {
            let t = beads::open(&pick(None)?)?;
            let issue = t.add_dep(&id, &on, &kind)?;
            done(&issue, json.json, format!("{id} depends on {on} ({kind})"))?
        }
        Cmd::Claim { id, assignee, json } => {
            let worker = worker(&town, assignee)?;
            let t = beads::open(&pick(None)?)?;
            refusal_is_no(
                t.claim(&id, &worker).and_then(|issue| {
                    done(&issue, json.json, format!("claimed {id} for {worker}"))
                }),
            )?
        }
        Cmd::Release { id, assignee, json } => {
            let worker = worker(&town, assignee)?;
            let t = beads::open(&pick(None)?)?;
            refusal_is_no(
                t.release(&id, &worker)
                    .and_then(|issue| done(&issue, json.json, format!("released {id}"))),
            )?
        }
    }
    Ok(())
}

/// A claim or release someone else's hold refused is a "no" (exit 1), not an error.
fn refusal_is_no(r: Result<()>) -> Result<()> {
    r.map_err(|e| match e.kind {
        Kind::Conflict => e.with_kind(Kind::Negative),
        _ => e,
    })
}

fn worker(town: &Town, explicit: Option<String>) -> Result<String> {
    if let Some(w) = explicit.filter(|w| !w.is_empty()) {
        return Ok(w);
    }
    match town.whoami()? {
        Identity {
            source: Source::Default,
            ..
        } => Err(Error::invalid(
            "who is the worker? give --assignee (GT_ADDRESS is unset and the current directory is not in an agent home)",
        )),
        me => Ok(me.address.to_string()),
    }
}

fn report_bad(t: &dyn Tracker) {
    for b in t.bad_lines() {
        eprintln!("{BIN}: {b}; skipped");
    }
}

fn done(issue: &Issue, json: bool, text: String) -> Result<()> {
    if json {
        super::print_json(issue)?;
    } else {
        println!("{text}");
    }
    Ok(())
}

fn print_issues(issues: &[Issue], json: bool, empty: &str) -> Result<()> {
    if json {
        super::print_json(&issues)?;
    } else if issues.is_empty() {
        println!("{empty}");
    } else {
        let rows: Vec<Vec<String>> = issues
            .iter()
            .map(|i| {
                vec![
                    i.id.clone(),
                    format!("P{}", i.priority),
                    i.issue_type.clone(),
                    i.status.clone(),
                    i.assignee.clone().unwrap_or_else(|| "-".into()),
                    i.title.clone(),
                ]
            })
            .collect();
        super::print_table(&["ID", "PRI", "TYPE", "STATUS", "ASSIGNEE", "TITLE"], &rows);
    }
    Ok(())
}

fn show(t: &dyn Tracker, issue: &Issue, json: bool) -> Result<()> {
    if json {
        super::print_json(issue)?;
        return Ok(());
    }
    println!("{}  {}", issue.id, issue.title);
    println!(
        "status: {}  priority: P{}  type: {}  assignee: {}",
        issue.status,
        issue.priority,
        issue.issue_type,
        issue.assignee.as_deref().unwrap_or("-")
    );
    println!(
        "created: {}  updated: {}",
        issue.created_at, issue.updated_at
    );
    if let Some(c) = &issue.closed_at {
        println!(
            "closed: {c}  reason: {}",
            issue.close_reason.as_deref().unwrap_or("-")
        );
    }
    if !issue.labels.is_empty() {
        println!("labels: {}", issue.labels.join(", "));
    }
    for d in &issue.dependencies {
        println!("depends on: {} ({})", d.depends_on_id, d.kind);
    }
    let all = t.all()?;
    let graph = beads::rules::Graph::new(&all);
    if let Some(b) = graph.blocked().get(issue.id.as_str()) {
        println!("blocked by: {b}");
    }
    if let Some(d) = issue.description.as_deref().filter(|d| !d.is_empty()) {
        println!();
        for line in d.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

fn print_waves(all: &[Issue], waves: &beads::Waves, json: bool) -> Result<()> {
    if json {
        super::print_json(waves)?;
        return Ok(());
    }
    let graph = beads::rules::Graph::new(all);
    let title = |id: &str| graph.get(id).map_or("", |i| i.title.as_str()).to_string();
    let mut rows: Vec<Vec<String>> = waves
        .in_progress
        .iter()
        .map(|id| vec!["now".into(), id.clone(), title(id)])
        .collect();
    for (n, wave) in waves.waves.iter().enumerate() {
        rows.extend(
            wave.iter()
                .map(|id| vec![(n + 1).to_string(), id.clone(), title(id)]),
        );
    }
    if rows.is_empty() {
        println!("nothing in epic {} will become ready", waves.epic);
    } else {
        super::print_table(&["WAVE", "ID", "TITLE"], &rows);
    }
    for s in &waves.stuck {
        println!("stuck: {}: {}", s.id, s.reason);
    }
    Ok(())
}
