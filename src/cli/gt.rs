//! `gt`: the front door. Town and rig management is built in; every other
//! `gt <sub>` runs `gt-<sub>` from beside this binary or from PATH, git-style.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::address::{Address, Role, did_you_mean};
use crate::error::{Error, Result, exit};
use crate::home::Home;
use crate::polecat;
use crate::rig::{self, Rig};
use crate::session;
use crate::town::{self, Town};

#[derive(Parser, Debug)]
#[command(
    name = "gt",
    version,
    about = "Gas Town: many AI coding agents on git projects, coordinated through files",
    long_about = "Gas Town: many AI coding agents on git projects, coordinated through files.\n\n\
        The directory tree is the API: mail is locked JSONL, agent flags are state.json files, \
        queues are directories. gastown's own tools run inside gt (`gt mail ...` is \
        `gt-mail ...`, without a second process); any other `gt <sub>` runs `gt-<sub>` from \
        beside gt or from PATH.",
    after_help = "Tools (`gt <tool> --help`): mail (send, inbox, read, watch, handoff, ...), issue \
        (the rig's beads tracker), witness, queue (also `gt merge-queue`), refinery, land, daemon.\n\
        Seed spellings: `gt send` and `gt inbox` are `gt mail send`/`gt mail inbox`; \
        `gt ready` and `gt waves` are `gt issue ready`/`gt issue waves`.\n\
        Environment: GT_TOWN (town root), GT_ADDRESS (who you are), GT_LOG (e.g. debug)."
)]
pub struct Cli {
    /// List built-in commands and the gt-* programs found beside gt and on PATH
    #[arg(long)]
    list: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a town at PATH (default: the current directory), or repair a town's missing files
    Install {
        /// Where the town goes; created if missing, must be empty if not a town
        path: Option<PathBuf>,
        /// Town name (default: the directory's name)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Manage rigs
    #[command(subcommand)]
    Rig(RigCmd),
    /// List the town's rigs
    Rigs(JsonFlag),
    /// Show the town: rigs and every agent's state
    Status(JsonFlag),
    /// List a rig's polecats and their state
    Polecats {
        /// The rig
        rig: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Manage polecats (workers)
    #[command(subcommand)]
    Polecat(PolecatCmd),
    /// Start a polecat on an issue: create it if needed, record the issue, start its agent
    Spawn {
        /// The beads issue to work on (claimed for the polecat)
        #[arg(long)]
        issue: String,
        /// The rig (default: GT_RIG, the current directory's rig, or the only rig)
        #[arg(long)]
        rig: Option<String>,
        /// Polecat name (default: the first free one of Nux, Toast, Capable, ...)
        #[arg(long)]
        name: Option<String>,
        /// Agent command line, run with sh -c in the polecat's clone (default: the rig's agent_command)
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Stop a polecat's session (its whole process group) and mark it idle
    Kill {
        /// `<rig>/<name>`, or `<name>` in the current rig
        polecat: String,
    },
    /// Emergency halt: stop every session in the town, or in one rig
    #[command(group = clap::ArgGroup::new("scope").required(true))]
    Stop {
        /// Stop every agent session in the town
        #[arg(long, group = "scope")]
        all: bool,
        /// Stop every agent session in this rig
        #[arg(long, group = "scope")]
        rig: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a rig's plugins (agents under <rig>/plugins/) and their state
    Plugins {
        /// The rig
        rig: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Plugin commands
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Mark a polecat active (status idle, ready for work)
    Wake {
        /// `<rig>/<name>`, or `<name>` in the current rig
        polecat: String,
    },
    /// Mark a polecat inactive (status asleep)
    Sleep {
        /// `<rig>/<name>`, or `<name>` in the current rig
        polecat: String,
    },
    /// Run a throwaway town end to end: a real git rig, stand-in agents, an epic worked in waves and landed
    Demo {
        /// Directory for the demo (new or empty; default: a new one under $TMPDIR)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show who you are here: role and address (from GT_ADDRESS or the current directory)
    Whoami(JsonFlag),
    /// Check the town's files for damage; exit 1 if problems remain
    Doctor {
        /// Repair what is safe to repair (missing homes and state, stray temp files)
        #[arg(long)]
        fix: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Type a line into an agent's live tmux session, press Enter, and check it was submitted
    #[command(
        long_about = "Type a line into an agent's live tmux session, press Enter, and check that the line was \
            submitted: it must show in the pane and leave the prompt line. If it is still on the prompt \
            (the agent's TUI swallowed the Enter), Enter is pressed once more. Newlines and other control \
            characters become spaces: one message, one line. Nothing is mailed; a plain-process session has \
            no terminal and is refused (mail is the channel: gt send). GT_INJECT_WAIT (default 3s) bounds \
            each wait."
    )]
    Inject {
        /// `<name>` (a polecat of the current rig) or any agent address
        agent: String,
        /// The text to type, taken literally (`Enter` or `C-c` are just words; `-x` too)
        #[arg(allow_hyphen_values = true)]
        message: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show an agent's tmux pane, or type a command into it and show the output that follows
    Capture {
        /// `<name>` (a polecat of the current rig) or any agent address
        agent: String,
        /// A command line to type into the session (as `gt inject` does); its output is printed
        #[arg(allow_hyphen_values = true)]
        command: Option<String>,
        /// Print at most the last N lines (without a command: of history and screen, not just the screen)
        #[arg(long, value_name = "N")]
        lines: Option<usize>,
        /// With a command: wait at most this long for the pane to settle (still for 300ms)
        #[arg(long, default_value = "5s", value_name = "DURATION")]
        wait: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Subcommand, Debug)]
enum RigCmd {
    /// Add a rig: clone GIT_URL for the refinery and mayor, make the agent homes, register it
    Add {
        /// Rig name: letters, digits, '_' or '-'
        name: String,
        /// Repository to clone: a URL git understands or a local path
        git_url: String,
        /// Beads id prefix (default: the name's first three letters)
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List rigs (same as `gt rigs`)
    List(JsonFlag),
}

#[derive(Subcommand, Debug)]
enum PolecatCmd {
    /// Create a polecat: its home and a clone on branch polecat/<name>
    Add {
        /// The rig
        rig: String,
        /// Name (default: the first free one of Nux, Toast, Capable, ...)
        name: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCmd {
    /// Create a plugin: an agent home under <rig>/plugins/<name> (a plugin exists iff its directory does)
    Add {
        /// The rig
        rig: String,
        /// Plugin name, e.g. merge-oracle
        name: String,
    },
    /// Show one plugin's state
    Status {
        /// `<rig>/plugins/<name>`, or `<name>` in the current rig
        plugin: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// Seed spellings that run another program's subcommand.
const ALIASES: &[(&str, &[&str])] = &[
    ("send", &["mail", "send"]),
    ("inbox", &["mail", "inbox"]),
    ("ready", &["issue", "ready"]),
    ("waves", &["issue", "waves"]),
    ("merge-queue", &["queue"]),
];

pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli: Cli = super::parse(args);
    super::run("gt", || dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<i32> {
    if cli.list {
        for name in list_commands() {
            println!("{name}");
        }
        return Ok(exit::OK);
    }
    let Some(cmd) = cli.cmd else {
        use clap::CommandFactory;
        Cli::command().print_help().ok();
        return Ok(exit::ERROR);
    };
    match cmd {
        Cmd::Install { path, name, json } => install(path, name, json.json),
        Cmd::Rig(RigCmd::Add {
            name,
            git_url,
            prefix,
            json,
        }) => rig_add(&name, &git_url, prefix, json.json),
        Cmd::Rig(RigCmd::List(json)) | Cmd::Rigs(json) => rigs(json.json),
        Cmd::Status(json) => status(json.json),
        Cmd::Polecats { rig, json } => polecats(&rig, json.json),
        Cmd::Whoami(json) => whoami(json.json),
        Cmd::Demo { dir } => demo(dir),
        Cmd::Polecat(PolecatCmd::Add { rig, name, json }) => polecat_add(&rig, name, json.json),
        Cmd::Spawn {
            issue,
            rig,
            name,
            agent,
            json,
        } => spawn(
            rig,
            polecat::SpawnOptions {
                issue: Some(issue),
                name,
                agent,
            },
            json.json,
        ),
        Cmd::Kill { polecat } => kill(&polecat),
        Cmd::Stop { all: _, rig, json } => stop(rig, json.json),
        Cmd::Plugins { rig, json } => plugins(&rig, json.json),
        Cmd::Plugin(PluginCmd::Add { rig, name }) => plugin_add(&rig, &name),
        Cmd::Plugin(PluginCmd::Status { plugin, json }) => plugin_status(&plugin, json.json),
        Cmd::Wake { polecat } => wake_sleep(&polecat, true),
        Cmd::Sleep { polecat } => wake_sleep(&polecat, false),
        Cmd::Doctor { fix, json } => doctor(fix, json.json),
        Cmd::Inject {
            agent,
            message,
            json,
        } => inject(&agent, &message, json.json),
        Cmd::Capture {
            agent,
            command,
            lines,
            wait,
            json,
        } => capture(&agent, command.as_deref(), lines, &wait, json.json),
        Cmd::External(args) => external(args),
    }
}

fn install(path: Option<PathBuf>, name: Option<String>, json: bool) -> Result<i32> {
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let done = town::install(&path, name.as_deref())?;
    if json {
        super::print_json(&done)?;
    } else if done.created {
        println!("created town {} at {}", done.name, done.root.display());
    } else {
        println!(
            "town {} at {} is installed (missing files restored)",
            done.name,
            done.root.display()
        );
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct RigRow {
    name: String,
    path: PathBuf,
    git_url: String,
    added_at: String,
    polecats: usize,
}

fn rig_rows(town: &Town) -> Result<Vec<RigRow>> {
    let mut rows = Vec::new();
    for (name, entry) in town.rigs()?.rigs {
        let rig = Rig::at(town, &name);
        rows.push(RigRow {
            polecats: rig.polecats()?.len(),
            path: rig.path,
            name,
            git_url: entry.git_url,
            added_at: entry.added_at,
        });
    }
    Ok(rows)
}

fn rig_add(name: &str, url: &str, prefix: Option<String>, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rig = rig::add(&town, name, url, &rig::AddOptions { prefix })?;
    if json {
        let row = rig_rows(&town)?.into_iter().find(|r| r.name == rig.name);
        super::print_json(&row)?;
    } else {
        println!("added rig {} at {}", rig.name, rig.path.display());
    }
    Ok(exit::OK)
}

fn rigs(json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rows = rig_rows(&town)?;
    if json {
        super::print_json(&rows)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![r.name.clone(), r.polecats.to_string(), r.git_url.clone()])
            .collect();
        super::print_table(&["RIG", "POLECATS", "GIT_URL"], &table);
    }
    Ok(exit::OK)
}

/// One agent as `gt status` and `gt polecats` show it.
#[derive(Serialize)]
struct AgentRow {
    address: String,
    role: String,
    status: String,
    issue: Option<String>,
    session: Option<String>,
    generation: u64,
    requesting_cycle: bool,
    /// Seconds since `heartbeat` was touched; absent if never.
    heartbeat_age_s: Option<u64>,
    /// Why the state could not be read, if it could not.
    error: Option<String>,
}

fn agent_row(home: &Home) -> AgentRow {
    let heartbeat_age_s = std::fs::metadata(home.heartbeat())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_secs());
    let (state, error) = match home.state() {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    AgentRow {
        address: home.address.to_string(),
        role: home.address.role().to_string(),
        status: state
            .as_ref()
            .map_or_else(|| "unknown".to_string(), |s| s.status.clone()),
        issue: state.as_ref().and_then(|s| s.issue.clone()),
        session: state.as_ref().and_then(|s| s.session.clone()),
        generation: state.as_ref().map_or(0, |s| s.generation),
        requesting_cycle: state.as_ref().is_some_and(|s| s.requesting_cycle),
        heartbeat_age_s,
        error,
    }
}

fn print_agents(rows: &[AgentRow]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.address.clone(),
                r.role.clone(),
                r.error
                    .as_ref()
                    .map_or_else(|| r.status.clone(), |_| "unreadable".to_string()),
                r.issue.clone().unwrap_or_else(|| "-".into()),
                r.generation.to_string(),
                r.heartbeat_age_s
                    .map_or_else(|| "-".into(), |s| format!("{s}s")),
            ]
        })
        .collect();
    super::print_table(
        &["ADDRESS", "ROLE", "STATUS", "ISSUE", "GEN", "HEARTBEAT"],
        &table,
    );
    for r in rows {
        if let Some(e) = &r.error {
            eprintln!("gt: {e}");
        }
    }
}

#[derive(Serialize)]
struct StatusReport {
    town: String,
    root: PathBuf,
    rigs: Vec<RigRow>,
    agents: Vec<AgentRow>,
}

fn status(json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let report = StatusReport {
        town: town.config()?.name,
        root: town.root().to_path_buf(),
        rigs: rig_rows(&town)?,
        agents: town.homes()?.iter().map(agent_row).collect(),
    };
    if json {
        super::print_json(&report)?;
    } else {
        println!("town {} at {}", report.town, report.root.display());
        println!(
            "{} rig(s): {}",
            report.rigs.len(),
            report
                .rigs
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!();
        print_agents(&report.agents);
    }
    Ok(exit::OK)
}

fn polecats(rig: &str, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rows: Vec<AgentRow> = town.rig(rig)?.polecats()?.iter().map(agent_row).collect();
    if json {
        super::print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no polecats in rig {rig}");
    } else {
        print_agents(&rows);
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct Identity {
    address: String,
    role: String,
    rig: Option<String>,
    /// Where the answer came from: `GT_ADDRESS`, `directory` or `default` (the overseer).
    source: &'static str,
    home: Option<PathBuf>,
    town: PathBuf,
}

fn whoami(json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let source = if std::env::var_os("GT_ADDRESS").is_some_and(|v| !v.is_empty()) {
        "GT_ADDRESS"
    } else {
        "directory"
    };
    let (addr, source) = match town.whoami()? {
        Some(a) => (a, source),
        None => (Address::Overseer, "default"),
    };
    let id = Identity {
        role: addr.role().to_string(),
        rig: addr.rig().map(str::to_string),
        home: town.home(&addr).ok().map(|h| h.path),
        address: addr.to_string(),
        source,
        town: town.root().to_path_buf(),
    };
    if let Some(role) = std::env::var("GT_ROLE")
        .ok()
        .filter(|r| !r.is_empty() && *r != id.role)
    {
        eprintln!(
            "gt: warning: GT_ROLE={role} disagrees with address {} (role {})",
            id.address, id.role
        );
    }
    if json {
        super::print_json(&id)?;
    } else {
        println!("{} {}", id.role, id.address);
    }
    Ok(exit::OK)
}

fn polecat_add(rig: &str, name: Option<String>, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    let name = name.unwrap_or_else(|| polecat::free_name(&rig));
    let home = polecat::add(&town, &rig, &name)?;
    if json {
        super::print_json(&agent_row(&home))?;
    } else {
        println!("added polecat {} at {}", home.address, home.path.display());
    }
    Ok(exit::OK)
}

fn spawn(rig: Option<String>, opts: polecat::SpawnOptions, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rig = town.current_rig(rig.as_deref())?;
    let spawned = polecat::spawn(&town, &rig, &opts)?;
    if json {
        super::print_json(&spawned)?;
    } else {
        println!(
            "spawned {} (generation {}) on {} in {}; session {}, log {}",
            spawned.address,
            spawned.generation,
            spawned.issue.as_deref().unwrap_or("-"),
            spawned.clone.display(),
            spawned.session,
            spawned.log.display()
        );
    }
    Ok(exit::OK)
}

fn kill(spec: &str) -> Result<i32> {
    let town = Town::discover()?;
    let home = town.agent(spec, Role::Polecat)?;
    let stopped = session::stop_home(&home)?;
    println!(
        "{} {}",
        home.address,
        if stopped {
            "stopped"
        } else {
            "was not running"
        }
    );
    Ok(exit::OK)
}

/// Stop the live sessions of every home in the town (or one rig).
fn stop(rig: Option<String>, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let homes = match rig {
        Some(r) => town.rig(&r)?.homes()?,
        None => town.homes()?,
    };
    let mut stopped = Vec::new();
    for home in homes {
        if home.state().is_ok_and(|s| session::state_alive(&s)) && session::stop_home(&home)? {
            stopped.push(home.address.to_string());
        }
    }
    if json {
        super::print_json(&stopped)?;
    } else {
        for a in &stopped {
            println!("stopped {a}");
        }
        println!("{} session(s) stopped", stopped.len());
    }
    Ok(exit::OK)
}

fn plugins(rig: &str, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let rows: Vec<AgentRow> = town
        .rig(rig)?
        .homes()?
        .iter()
        .filter(|h| h.address.role() == Role::Plugin)
        .map(agent_row)
        .collect();
    if json {
        super::print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no plugins in rig {rig} (a plugin is a directory: {rig}/plugins/<name>/)");
    } else {
        print_agents(&rows);
    }
    Ok(exit::OK)
}

fn plugin_add(rig: &str, name: &str) -> Result<i32> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    crate::address::check_agent_name("plugin", name)?;
    let address = Address::Plugin {
        rig: rig.name.clone(),
        name: name.to_string(),
    };
    let home = Home {
        path: town.root().join(address.rel_path()),
        address,
    };
    home.create()?;
    println!(
        "plugin {} at {}; mail it with: gt send {} -s <subject> -m <message>",
        home.address,
        home.path.display(),
        home.address
    );
    Ok(exit::OK)
}

fn plugin_status(spec: &str, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let row = agent_row(&town.agent(spec, Role::Plugin)?);
    if json {
        super::print_json(&row)?;
    } else {
        print_agents(std::slice::from_ref(&row));
    }
    Ok(exit::OK)
}

fn wake_sleep(spec: &str, awake: bool) -> Result<i32> {
    let town = Town::discover()?;
    let home = town.agent(spec, Role::Polecat)?;
    let status = polecat::set_awake(&home, awake)?;
    println!("{} is {status}", home.address);
    Ok(exit::OK)
}

fn demo(dir: Option<PathBuf>) -> Result<i32> {
    let dir = dir.unwrap_or_else(|| {
        let stamp = crate::clock::now().strftime("%Y%m%d-%H%M%S");
        std::env::temp_dir().join(format!("gt-demo-{stamp}-{}", std::process::id()))
    });
    crate::demo::run(&dir, Box::new(std::io::stdout()))?;
    Ok(exit::OK)
}

fn doctor(fix: bool, json: bool) -> Result<i32> {
    let town = Town::discover()?;
    let findings = crate::doctor::run(&town, fix)?;
    if json {
        super::print_json(&findings)?;
    } else {
        for f in &findings {
            let sev = match f.severity {
                crate::doctor::Severity::Error => "error",
                crate::doctor::Severity::Warning => "warning",
            };
            let note = if f.fixed {
                " (fixed)"
            } else if f.fixable {
                " (--fix repairs this)"
            } else {
                ""
            };
            // Messages from a failed read already start with the path.
            let path = f.path.display().to_string();
            if f.message.starts_with(&path) {
                println!("{sev}: {}{note}", f.message);
            } else {
                println!("{sev}: {path}: {}{note}", f.message);
            }
        }
        let left = findings.iter().filter(|f| !f.fixed).count();
        println!(
            "{}",
            if left == 0 {
                "town is healthy".to_string()
            } else {
                format!("{left} problem(s)")
            }
        );
    }
    Ok(if findings.iter().all(|f| f.fixed) {
        exit::OK
    } else {
        exit::NO
    })
}

/// The agent `spec` names (a bare name is a polecat of the current rig) and
/// its live session id.
fn live_session(spec: &str) -> Result<(Home, String)> {
    let town = Town::discover()?;
    let home = if spec.contains('/') || matches!(spec, "mayor" | "overseer" | "self") {
        town.resolve(spec)?
    } else {
        town.agent(spec, Role::Polecat)?
    };
    match home.state()?.session {
        Some(id) if session::is_alive(&id) => Ok((home, id)),
        Some(id) => Err(Error::not_found(format!(
            "{} has no live session (its last one, {id}, has ended)",
            home.address
        ))),
        None => Err(Error::not_found(format!(
            "{} has no live session (its state.json names none)",
            home.address
        ))),
    }
}

#[derive(Serialize)]
struct InjectReport {
    address: String,
    session: String,
    #[serde(flatten)]
    injected: session::Injected,
}

fn inject(spec: &str, message: &str, json: bool) -> Result<i32> {
    let (home, id) = live_session(spec)?;
    let injected = session::inject(&id, message).map_err(|e| e.context(&home.address))?;
    let report = InjectReport {
        address: home.address.to_string(),
        session: id,
        injected,
    };
    if json {
        super::print_json(&report)?;
    } else {
        println!(
            "{}: submitted{}",
            report.address,
            if report.injected.enters > 1 {
                " (Enter pressed twice)"
            } else {
                ""
            }
        );
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct CaptureReport {
    address: String,
    session: String,
    command: Option<String>,
    lines: Vec<String>,
}

fn capture(
    spec: &str,
    command: Option<&str>,
    last: Option<usize>,
    wait: &str,
    json: bool,
) -> Result<i32> {
    let wait = crate::clock::parse_duration(wait).map_err(|e| e.context("--wait"))?;
    let (home, id) = live_session(spec)?;
    let lines = match command {
        Some(cmd) => {
            let mut out = session::run(&id, cmd, wait).map_err(|e| e.context(&home.address))?;
            if let Some(n) = last {
                out.drain(..out.len().saturating_sub(n));
            }
            out
        }
        None => session::capture(&id, last).map_err(|e| {
            e.context(&home.address).with_hint(format!(
                "its output is in {}",
                session::log_path(&home.path).display()
            ))
        })?,
    };
    if json {
        super::print_json(&CaptureReport {
            address: home.address.to_string(),
            session: id,
            command: command.map(str::to_string),
            lines,
        })?;
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

/// Run gastown's own tool `<sub>` (or an alias's target) in this process, or
/// else `gt-<sub>` in place of this process.
fn external(args: Vec<OsString>) -> Result<i32> {
    let (sub, rest) = args.split_first().expect("clap gives the subcommand name");
    let sub_str = sub.to_string_lossy().into_owned();
    let mut argv: Vec<OsString> = Vec::new();
    let program = match ALIASES.iter().find(|(alias, _)| *alias == sub_str) {
        Some((_, target)) => {
            argv.extend(target[1..].iter().map(OsString::from));
            target[0].to_string()
        }
        None => sub_str.clone(),
    };
    argv.extend(rest.iter().cloned());
    if let Some((_, tool)) = super::TOOLS.iter().find(|(name, _)| *name == program) {
        tracing::debug!(?argv, tool = %program, "in-process");
        argv.insert(0, format!("gt-{program}").into());
        return Ok(tool(argv));
    }
    let Some(path) = find_program(&format!("gt-{program}")) else {
        let known = list_commands();
        let mut msg = format!(
            "gt: unknown command '{sub_str}' (no built-in and no gt-{program} beside gt or on PATH)"
        );
        if let Some(s) = did_you_mean(&sub_str, known.iter().map(String::as_str)) {
            msg.push_str(&format!("; did you mean '{s}'?"));
        }
        eprintln!("{msg}");
        return Ok(exit::UNKNOWN_COMMAND);
    };
    tracing::debug!(?path, ?argv, "exec");
    let err = std::process::Command::new(&path).args(&argv).exec();
    Err(Error::io(&path, err))
}

/// Directories searched for `gt-*` programs: beside the running `gt`, then PATH.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_program(name: &str) -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Built-in subcommands, aliases and `gt-*` programs found, sorted.
fn list_commands() -> BTreeSet<String> {
    use clap::CommandFactory;
    let mut names: BTreeSet<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.extend(ALIASES.iter().map(|(a, _)| a.to_string()));
    names.extend(super::TOOLS.iter().map(|(t, _)| t.to_string()));
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if let Some(sub) = name.to_str().and_then(|n| n.strip_prefix("gt-"))
                && !sub.is_empty()
                && is_executable(&e.path())
                && !sub.contains('.')
            {
                names.insert(sub.to_string());
            }
        }
    }
    names
}
