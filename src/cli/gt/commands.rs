//! `gt`'s built-in commands: each calls the library and renders its answer as
//! text or (`--json`) JSON.

use std::path::PathBuf;

use serde::Serialize;

use crate::address::{Address, Role};
use crate::cli::{print_json, print_table};
use crate::error::{Error, Kind, Result};
use crate::federation::Federation;
use crate::home::Home;
use crate::polecat;
use crate::rig;
use crate::session;
use crate::status::{self, AgentRow, agent_row, rig_rows};
use crate::town::{self, Bare, Town};

pub(super) fn install(path: Option<PathBuf>, name: Option<String>, json: bool) -> Result<()> {
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let done = town::install(&path, name.as_deref())?;
    if json {
        print_json(&done)?;
    } else if done.created {
        println!("created town {} at {}", done.name, done.root.display());
    } else {
        println!(
            "town {} at {} is installed (missing files restored)",
            done.name,
            done.root.display()
        );
    }
    Ok(())
}

pub(super) fn rig_add(name: &str, url: &str, prefix: Option<String>, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rig = rig::add(&town, name, url, &rig::AddOptions { prefix })?;
    if json {
        let row = rig_rows(&town)?.into_iter().find(|r| r.name == rig.name);
        print_json(&row)?;
    } else {
        println!("added rig {} at {}", rig.name, rig.path.display());
    }
    Ok(())
}

pub(super) fn rigs(json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rows = rig_rows(&town)?;
    if json {
        print_json(&rows)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![r.name.clone(), r.polecats.to_string(), r.git_url.clone()])
            .collect();
        print_table(&["RIG", "POLECATS", "GIT_URL"], &table);
    }
    Ok(())
}

fn print_agents(rows: &[AgentRow]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.address.clone(),
                r.role.clone(),
                r.status.clone(),
                session_cell(r).0,
                r.issue.clone().unwrap_or_else(|| "-".into()),
                r.generation.to_string(),
                age(r.heartbeat_age_s),
                r.unread.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "ADDRESS",
            "ROLE",
            "STATUS",
            "SESSION",
            "ISSUE",
            "GEN",
            "HEARTBEAT",
            "UNREAD",
        ],
        &table,
    );
    for r in rows {
        if let Some(e) = &r.error {
            eprintln!("gt: {e}");
        }
    }
    for r in rows {
        if let Some(b) = &r.blocked {
            println!(
                "{} is blocked at a dialog: {}; {}",
                r.address, b.dialog, b.to_do
            );
        }
    }
}

pub(super) fn status(all_machines: bool, watch: bool, json: bool) -> Result<()> {
    if all_machines {
        return super::machines::status_all(json, print_status);
    }
    let town = Town::discover()?;
    if watch {
        return status_watch(&town, json);
    }
    let report = status::report(&town)?;
    if json {
        print_json(&report)?;
    } else {
        print_status(&report);
    }
    Ok(())
}

/// `gt status --watch`: on a terminal the tree is redrawn in place (coloured
/// unless NO_COLOR is set); elsewhere each changed frame is appended, a blank
/// line after each, or one JSON document per line with --json.
fn status_watch(town: &Town, json: bool) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    let colour = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut last = String::new();
    status::watch(town, &mut |report| {
        let frame = if json {
            serde_json::to_string(report).map_err(|e| Error::invalid(e.to_string()))? + "\n"
        } else {
            status_tree(report, colour)
        };
        // A change that changes nothing shown draws nothing.
        if frame == last {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let text = match (tty, json) {
            (true, false) => format!("\x1b[H\x1b[2J{frame}"),
            (false, false) => format!("{frame}\n"),
            (_, true) => frame.clone(),
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::io(std::path::Path::new("<stdout>"), e))?;
        last = frame;
        Ok(())
    })
}

/// The town as a tree: rigs, then their agents; the town's own agents last.
fn status_tree(report: &status::StatusReport, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let agent = |r: &AgentRow| {
        let state = match r.status.as_str() {
            "working" => paint("32", &r.status),
            "dead" | "stuck" | "blocked" => paint("31", &r.status),
            _ => r.status.clone(),
        };
        let session = match session_cell(r) {
            (text, true) => paint("31", &text),
            (text, false) => text,
        };
        let blocked = r
            .blocked
            .as_ref()
            .map(|b| format!(" (dialog: {}; {})", b.dialog, b.to_do))
            .unwrap_or_default();
        format!(
            "{} {state}{blocked} session {session} issue {} heartbeat {} unread {}",
            r.address,
            r.issue.as_deref().unwrap_or("-"),
            age(r.heartbeat_age_s),
            r.unread
        )
    };
    let mut out = format!(
        "town {} (daemon {})\n",
        report.town,
        running(report.daemon_running)
    );
    let rig_of = |r: &AgentRow| r.address.split_once('/').map(|(rig, _)| rig.to_string());
    let town_agents: Vec<&AgentRow> = report
        .agents
        .iter()
        .filter(|a| rig_of(a).is_none())
        .collect();
    for (i, rig) in report.rigs.iter().enumerate() {
        let last_rig = i + 1 == report.rigs.len() && town_agents.is_empty();
        let (branch, stem) = if last_rig {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        out.push_str(&format!(
            "{branch} rig {}: queue {} pending, {} active, {} failed; witness loop {}, refinery loop {}\n",
            rig.name,
            rig.queue.pending,
            rig.queue.active,
            rig.queue.failed,
            running(rig.witness_running),
            running(rig.refinery_running)
        ));
        let agents: Vec<&AgentRow> = report
            .agents
            .iter()
            .filter(|a| rig_of(a).as_deref() == Some(rig.name.as_str()))
            .collect();
        for (j, a) in agents.iter().enumerate() {
            let twig = if j + 1 == agents.len() {
                "└─"
            } else {
                "├─"
            };
            out.push_str(&format!("{stem}{twig} {}\n", agent(a)));
        }
    }
    for (i, a) in town_agents.iter().enumerate() {
        let twig = if i + 1 == town_agents.len() {
            "└─"
        } else {
            "├─"
        };
        out.push_str(&format!("{twig} {}\n", agent(a)));
    }
    if !report.escalations.is_empty() {
        out.push_str(&paint(
            "33",
            &format!("{} unread escalation(s)\n", report.escalations.len()),
        ));
    }
    out
}

/// The recorded session as shown: `live`; `dead <since last sign of life>`
/// for an agent that should be working (true: an alarm); `ended` for one
/// whose work is over (idle, asleep); `-` for none.
fn session_cell(r: &AgentRow) -> (String, bool) {
    match r.session_alive {
        None => ("-".to_string(), false),
        Some(true) => ("live".to_string(), false),
        Some(false) if r.status == "dead" => (format!("dead {}", age(r.heartbeat_age_s)), true),
        Some(false) => ("ended".to_string(), false),
    }
}

/// An age as people read it: `45s`, `3m`, `2h`, `4d`; `-` for none.
fn age(secs: Option<u64>) -> String {
    match secs {
        None => "-".to_string(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 2 * 3600 => format!("{}m", s / 60),
        Some(s) if s < 2 * 86400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

fn running(yes: bool) -> &'static str {
    if yes { "running" } else { "not running" }
}

fn print_status(report: &status::StatusReport) {
    println!("town {} at {}", report.town, report.root.display());
    println!("daemon {}", running(report.daemon_running));
    for r in &report.rigs {
        println!(
            "rig {}: {} polecat(s); queue {} pending, {} active, {} failed; witness loop {}, refinery loop {}",
            r.name,
            r.polecats,
            r.queue.pending,
            r.queue.active,
            r.queue.failed,
            running(r.witness_running),
            running(r.refinery_running)
        );
    }
    if !report.escalations.is_empty() {
        println!("{} unread escalation(s):", report.escalations.len());
        for e in &report.escalations {
            println!(
                "  {} from {} ({} ago): {}",
                e.to,
                e.from,
                age(e.age_s),
                e.subject
            );
        }
    }
    println!();
    print_agents(&report.agents);
    if !report.remote_workers.is_empty() {
        let rows: Vec<Vec<String>> = report
            .remote_workers
            .iter()
            .map(|w| {
                let status = serde_json::to_value(w.status).unwrap_or_default();
                vec![
                    w.address(),
                    w.issue.clone(),
                    status.as_str().unwrap_or("-").to_string(),
                    w.generation.map_or("-".into(), |g| g.to_string()),
                    w.spawned_at.clone(),
                ]
            })
            .collect();
        println!();
        crate::cli::print_table(
            &["REMOTE WORKER", "ISSUE", "STATUS", "GENERATION", "SPAWNED"],
            &rows,
        );
    }
}

pub(super) fn polecats(rig: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rows = status::polecats(&town, &town.rig(rig)?)?;
    print_rows(&rows, json, &format!("no polecats in rig {rig}"))
}

/// A list of agents as JSON, a table, or `empty` when there are none.
fn print_rows(rows: &[AgentRow], json: bool, empty: &str) -> Result<()> {
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("{empty}");
    } else {
        print_agents(rows);
    }
    Ok(())
}

#[derive(Serialize)]
struct Whoami {
    address: String,
    role: String,
    rig: Option<String>,
    /// Where the answer came from: `GT_ADDRESS`, `directory` or `default` (the overseer).
    source: town::Source,
    home: Option<PathBuf>,
    town: PathBuf,
}

pub(super) fn whoami(json: bool) -> Result<()> {
    let town = Town::discover()?;
    let me = town.whoami()?;
    let addr = me.address;
    let home = town.home(&addr);
    // Still an answer (who the caller says it is), but mail to it and
    // its state would fail: say so.
    if let Err(e) = &home {
        eprintln!("gt: warning: {e}");
    }
    let id = Whoami {
        role: addr.role().to_string(),
        rig: addr.rig().map(str::to_string),
        home: home.ok().map(|h| h.path),
        address: addr.to_string(),
        source: me.source,
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
        print_json(&id)?;
    } else {
        println!("{} {}", id.role, id.address);
    }
    Ok(())
}

pub(super) fn prime(json: bool) -> Result<()> {
    let town = Town::discover()?;
    let home = crate::worker::caller(&town)?;
    let p = crate::worker::prime(&town, &home)?;
    if json {
        print_json(&p)?;
        return p.delivered(&home);
    }
    println!(
        "You are {} ({}), generation {}.",
        p.address, p.role, p.generation
    );
    match &p.issue {
        Some(i) => {
            println!("\nYour issue: {} {} [{}]", i.id, i.title, i.status);
            if let Some(d) = i.description.as_deref().filter(|d| !d.trim().is_empty()) {
                println!("\n{}", d.trim_end());
            }
        }
        None => println!("\nYou have no issue assigned."),
    }
    for m in &p.handoff {
        let from = m
            .generation
            .map(|g| format!(" of generation {g}"))
            .unwrap_or_default();
        println!(
            "\nHandoff from your session{from} ({}, {}): {}\n{}",
            m.id,
            m.timestamp,
            m.subject,
            m.body.trim_end()
        );
        println!("(Marked read; again: gt mail read {}.)", m.id);
    }
    println!("\nHow to work here:");
    for line in &p.how {
        println!("- {line}");
    }
    p.delivered(&home)
}

pub(super) fn done(json: bool) -> Result<()> {
    let town = Town::discover()?;
    let home = crate::worker::caller(&town)?;
    let (m, how) = crate::worker::done(&town, &home)?;
    if json {
        print_json(&m)?;
    } else {
        println!("{}: done {how} ({})", home.address, m.id);
    }
    Ok(())
}

pub(super) fn heartbeat() -> Result<()> {
    let town = Town::discover()?;
    crate::worker::heartbeat(&crate::worker::caller(&town)?)?;
    Ok(())
}

pub(super) fn crew_add(rig: &str, name: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let home = crate::crew::add(&town, &town.rig(rig)?, name)?;
    if json {
        print_json(&agent_row(&town, &home))?;
    } else {
        println!(
            "added crew {} at {}; work in {}",
            home.address,
            home.path.display(),
            home.path.join("rig").display()
        );
    }
    Ok(())
}

pub(super) fn crew_list(rig: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rows: Vec<AgentRow> = (town.rig(rig)?.crew()?.iter())
        .map(|h| agent_row(&town, h))
        .collect();
    print_rows(&rows, json, &format!("no crew in rig {rig}"))
}

pub(super) fn polecat_add(rig: &str, name: Option<String>, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    let name = name.unwrap_or_else(|| polecat::free_name(&rig));
    let home = polecat::add(&town, &rig, &name)?;
    if json {
        print_json(&agent_row(&town, &home))?;
    } else {
        println!("added polecat {} at {}", home.address, home.path.display());
    }
    Ok(())
}

pub(super) fn spawn(
    rig: Option<String>,
    machine: Option<String>,
    opts: polecat::SpawnOptions,
    wait: std::time::Duration,
    json: bool,
) -> Result<()> {
    let town = Town::discover()?;
    let rig = match (rig, opts.issue.as_deref()) {
        (None, Some(issue)) => match town.rig_of_issue(issue)? {
            Some(r) => r,
            None => town.current_rig(None)?,
        },
        (rig, _) => town.current_rig(rig.as_deref())?,
    };
    let fed = Federation::load(&town)?;
    if let Some(m) = machine.filter(|m| fed.registry.machine.as_ref() != Some(m)) {
        let w = crate::federation::worker::spawn(&town, &rig, &m, &opts)?;
        if json {
            return print_json(&w);
        }
        println!(
            "spawned {} (generation {}) on {}; session {} on {m}",
            w.address(),
            w.generation.unwrap_or(0),
            w.issue,
            w.session.as_deref().unwrap_or("-"),
        );
        return Ok(());
    }
    let spawned = polecat::spawn(&town, &rig, &opts)?;
    let (ready, reason) = polecat::wait_ready(&town, &spawned, wait)?;
    if json {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            #[serde(flatten)]
            spawned: &'a polecat::Spawned,
            ready: polecat::Ready,
            reason: Option<&'a str>,
        }
        print_json(&Report {
            spawned: &spawned,
            ready,
            reason: reason.as_deref(),
        })?;
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
        match (ready, &reason) {
            (polecat::Ready::Started, _) => {}
            (polecat::Ready::Ready, _) => println!("{} is ready", spawned.address),
            (_, r) => println!(
                "{} is not ready: {}",
                spawned.address,
                r.as_deref().unwrap_or("-")
            ),
        }
    }
    match ready {
        polecat::Ready::Ready | polecat::Ready::Started => Ok(()),
        // Started, but not working: a "no", already said on stdout.
        _ => Err(Error::shown(crate::error::Kind::Negative)),
    }
}

pub(super) fn kill(spec: &str, rig: Option<&str>) -> Result<()> {
    let town = Town::discover()?;
    if let Some((machine, address)) = Federation::remote(&town, spec)? {
        let stopped = crate::federation::worker::kill(&town, machine, &address)?;
        print_stopped(&stopped, true);
        return Ok(());
    }
    let home = town.agent(spec, Role::Polecat, rig)?;
    let stopped = crate::stop::agent(&town, &home)?;
    print_stopped(&stopped, true);
    Ok(())
}

/// `<address> stopped` (`gt kill`: or `was not running`; `gt stop`:
/// `stopped <address>`), then what became of its claim.
fn print_stopped(s: &crate::stop::Stopped, kill: bool) {
    use crate::stop::Claim;
    match (s.was_running, kill) {
        (true, true) => println!("{} stopped", s.address),
        (true, false) => println!("stopped {}", s.address),
        (false, true) => println!("{} was not running", s.address),
        (false, false) => {}
    }
    match &s.claim {
        Some(Claim::Released { issue }) => println!("  released {issue} (open again)"),
        Some(Claim::Kept { issue, why }) => {
            println!("  keeps {issue}: {why} (the Witness submits or nudges it)")
        }
        None => {}
    }
}

/// Stop the loops, then the sessions of every home in the town (or one rig),
/// then whatever is left on the town's socket.
pub(super) fn stop(rig: Option<String>, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rig = rig.map(|r| town.rig(&r)).transpose()?;
    let report = crate::stop::all(&town, rig.as_ref())?;
    if json {
        print_json(&report)?;
    } else {
        for l in &report.loops {
            println!("stopped {l}");
        }
        for a in &report.agents {
            print_stopped(a, false);
        }
        for z in &report.zombies {
            println!("killed {z} (recorded nowhere)");
        }
        println!(
            "{} session(s) stopped",
            report.agents.iter().filter(|a| a.was_running).count() + report.zombies.len()
        );
    }
    for e in &report.errors {
        eprintln!("gt: {e}");
    }
    if !report.errors.is_empty() {
        return Err(Error::shown(crate::error::Kind::Invalid));
    }
    Ok(())
}

pub(super) fn plugins(rig: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let rows = status::plugins(&town, &town.rig(rig)?)?;
    print_rows(
        &rows,
        json,
        &format!("no plugins in rig {rig} (a plugin is a directory: {rig}/plugins/<name>/)"),
    )
}

pub(super) fn plugin_add(rig: &str, name: &str) -> Result<()> {
    let town = Town::discover()?;
    let rig = town.rig(rig)?;
    let address = Address::named(Role::Plugin, &rig.name, name)?;
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
    Ok(())
}

pub(super) fn plugin_status(spec: &str, rig: Option<&str>, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let row = agent_row(&town, &town.agent(spec, Role::Plugin, rig)?);
    if json {
        print_json(&row)?;
    } else {
        print_agents(std::slice::from_ref(&row));
    }
    Ok(())
}

pub(super) fn wake_sleep(spec: &str, rig: Option<&str>, awake: bool, force: bool) -> Result<()> {
    let town = Town::discover()?;
    let home = town.agent(spec, Role::Polecat, rig)?;
    if home.state().is_ok_and(|s| session::state_alive(&s)) {
        if !force {
            return Err(Error::conflict(format!(
                "{} is running; stop it first (gt kill {}) or pass --force",
                home.address, home.address
            )));
        }
        let stopped = crate::stop::agent(&town, &home)?;
        print_stopped(&stopped, false);
        if let Some(crate::stop::Claim::Kept { .. }) = stopped.claim {
            return Err(Error::negative(format!(
                "{} is left working for its Witness, not marked {}",
                home.address,
                if awake { "idle" } else { "asleep" }
            )));
        }
    }
    let status = polecat::set_awake(&home, awake)?;
    println!("{} is {status}", home.address);
    Ok(())
}

pub(super) fn demo(dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| {
        let stamp = crate::clock::now().strftime("%Y%m%d-%H%M%S");
        std::env::temp_dir().join(format!("gt-demo-{stamp}-{}", std::process::id()))
    });
    crate::demo::run(&dir, Box::new(std::io::stdout()))?;
    Ok(())
}

pub(super) fn doctor(fix: bool, json: bool) -> Result<()> {
    use crate::doctor::{Outcome, Severity};
    // A town.json that does not parse is doctor's to report.
    let town = Town::discover_unread()?;
    let report = crate::doctor::run(&town, fix)?;
    if json {
        print_json(&report)?;
    } else {
        for f in &report.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
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
        for c in &report.checks {
            let result = match c.result {
                Outcome::Ok => "ok",
                Outcome::Fixed => "fixed",
                Outcome::Warning => "warning",
                Outcome::Error => "error",
                Outcome::Skipped => "skipped",
            };
            let counts = match (c.problems, c.fixed) {
                (0, _) => String::new(),
                (n, 0) => format!(" ({n} problem(s))"),
                (n, k) => format!(" ({n} problem(s), {k} fixed)"),
            };
            println!("check {:<10} {result:<7} {}{counts}", c.name, c.about);
        }
        let left = report.left().count();
        let errors = report
            .left()
            .filter(|f| f.severity == Severity::Error)
            .count();
        if left == 0 {
            println!("town is healthy");
        } else {
            println!(
                "{left} problem(s): {errors} error(s), {} warning(s)",
                left - errors
            );
        }
    }
    if report.has_errors() {
        Err(Error::shown(Kind::Negative))
    } else {
        Ok(())
    }
}

/// The agent `spec` names (a bare name is a polecat; see [`Bare::Agent`]) and
/// its live session id; refused if that session is not the agent's
/// ([`session::Owner::check`]), `not_done` saying what was not done.
fn live_session(
    town: &Town,
    spec: &str,
    rig: Option<&str>,
    not_done: &str,
) -> Result<(Home, String)> {
    let home = town.resolve(
        spec,
        Bare::Agent {
            role: Role::Polecat,
            rig,
        },
    )?;
    match home.state()?.session {
        Some(id) if session::is_alive(&id) => {
            session::Owner::of(town, &home).check(&id, not_done)?;
            Ok((home, id))
        }
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

pub(super) fn inject(spec: &str, rig: Option<&str>, message: &str, json: bool) -> Result<()> {
    let town = Town::discover()?;
    let (home, id) = live_session(&town, spec, rig, "nothing typed")?;
    let injected =
        crate::agent::inject(&town, &home, &id, message).map_err(|e| e.context(&home.address))?;
    let report = InjectReport {
        address: home.address.to_string(),
        session: id,
        injected,
    };
    if json {
        print_json(&report)?;
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
    Ok(())
}

#[derive(Serialize, serde::Deserialize)]
struct CaptureReport {
    address: String,
    session: String,
    command: Option<String>,
    lines: Vec<String>,
}

pub(super) fn capture(
    spec: &str,
    rig: Option<&str>,
    command: Option<&str>,
    last: Option<usize>,
    wait: &str,
    json: bool,
) -> Result<()> {
    let wait = crate::clock::parse_duration(wait).map_err(|e| e.context("--wait"))?;
    let town = Town::discover()?;
    if let Some((machine, address)) = Federation::remote(&town, spec)? {
        return capture_remote(&town, machine, &address, command, last, json);
    }
    let not_done = if command.is_some() {
        "nothing typed"
    } else {
        "not captured"
    };
    let (home, id) = live_session(&town, spec, rig, not_done)?;
    let owner = session::Owner::of(&town, &home);
    let lines = match command {
        Some(cmd) => {
            let mut out =
                session::run(&owner, &id, cmd, wait).map_err(|e| e.context(&home.address))?;
            if let Some(n) = last {
                out.drain(..out.len().saturating_sub(n));
            }
            out
        }
        None => session::capture(&owner, &id, last).map_err(|e| {
            e.context(&home.address).with_hint(format!(
                "its output is in {}",
                session::log_path(&home.path).display()
            ))
        })?,
    };
    if json {
        print_json(&CaptureReport {
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
    Ok(())
}

/// `gt capture <machine>:<address>`: the pane, over ssh (nothing is typed
/// into another machine's session).
fn capture_remote(
    town: &Town,
    machine: &str,
    address: &Address,
    command: Option<&str>,
    last: Option<usize>,
    json: bool,
) -> Result<()> {
    if command.is_some() {
        return Err(Error::invalid(format!(
            "{machine}:{address}: typing into another machine's session is not served; capture shows its pane"
        )));
    }
    let out = Federation::load(town)?
        .call(machine, &["gt", "capture", &address.to_string(), "--json"])?;
    let mut report: CaptureReport = serde_json::from_slice(&out)
        .map_err(|e| Error::invalid(format!("unreadable capture from {machine}: {e}")))?;
    report.address = format!("{machine}:{}", report.address);
    if let Some(n) = last {
        report.lines.drain(..report.lines.len().saturating_sub(n));
    }
    if json {
        print_json(&report)?;
    } else {
        for l in &report.lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// `gt attach`: replace this process with one that shows the agent's live
/// session (tmux attach, or tail -f of a plain process's session.log).
pub(super) fn attach(spec: &str, rig: Option<&str>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let (home, id) = live_session(&Town::discover()?, spec, rig, "not attached")?;
    let argv = session::watch_command(&id, &home.path)
        .ok_or_else(|| Error::invalid(format!("{}: unknown session id {id:?}", home.address)))?;
    tracing::debug!(?argv, "exec");
    let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(Error::io(std::path::Path::new(&argv[0]), err))
}
