//! `gt`: the front door. Town and rig management is built in; every other
//! `gt <sub>` runs `gt-<sub>` from beside this binary or from PATH, git-style.
//!
//! [`args`] holds the clap definitions, [`commands`] the built-in commands,
//! [`external`] the dispatcher for the rest; the rows they show come from
//! [`crate::status`].

mod args;
mod commands;
mod external;
mod machines;

pub use args::Cli;
use args::{Cmd, CrewCmd, PluginCmd, PolecatCmd, RigCmd};
pub(crate) use external::ALIASES;

use crate::error::{Error, Kind, Result};
use crate::polecat;

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    // `gt send`, `gt mail ...`: straight to the tool, without building gt's
    // own command tree first (most of a send's user time).
    if args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(external::is_tool)
    {
        return external::run(args[1..].to_vec());
    }
    let cli: Cli = crate::cli::parse(args);
    match cli.cmd {
        Some(Cmd::External(args)) => external::run(args),
        Some(Cmd::Remote(args)) => machines::remote(args),
        cmd => crate::cli::run("gt", || dispatch(cli.list, cmd)),
    }
}

fn dispatch(list: bool, cmd: Option<Cmd>) -> Result<()> {
    if list {
        for name in external::list_commands() {
            println!("{name}");
        }
        return Ok(());
    }
    let Some(cmd) = cmd else {
        use clap::CommandFactory;
        Cli::command().print_help().ok();
        return Err(Error::shown(Kind::Invalid));
    };
    match cmd {
        Cmd::Install { path, name, json } => commands::install(path, name, json.json),
        Cmd::Rig(RigCmd::Add {
            name,
            git_url,
            prefix,
            json,
        }) => commands::rig_add(&name, &git_url, prefix, json.json),
        Cmd::Rig(RigCmd::List(json)) | Cmd::Rigs(json) => commands::rigs(json.json),
        Cmd::Status {
            all_machines,
            watch,
            json,
        } => commands::status(all_machines, watch, json.json),
        Cmd::Machines(args) => machines::machines(args),
        Cmd::Remote(_) => unreachable!("main serves gt remote"),
        Cmd::Polecats { rig, json } => commands::polecats(&rig, json.json),
        Cmd::Whoami(json) => commands::whoami(json.json),
        Cmd::Prime(json) => commands::prime(json.json),
        Cmd::Done(json) => commands::done(json.json),
        Cmd::Heartbeat => commands::heartbeat(),
        Cmd::Demo { dir } => commands::demo(dir),
        Cmd::Polecat(PolecatCmd::Add { rig, name, json }) => {
            commands::polecat_add(&rig, name, json.json)
        }
        Cmd::Crew(CrewCmd::Add { rig, name, json }) => commands::crew_add(&rig, &name, json.json),
        Cmd::Crew(CrewCmd::List { rig, json }) => commands::crew_list(&rig, json.json),
        Cmd::Spawn {
            issue,
            rig,
            name,
            machine,
            agent,
            wait,
            json,
        } => commands::spawn(
            rig,
            machine,
            polecat::SpawnOptions {
                issue: Some(issue),
                name,
                agent,
                ..Default::default()
            },
            crate::clock::parse_duration(&wait).map_err(|e| e.context("--wait"))?,
            json.json,
        ),
        Cmd::Kill { polecat, rig } => commands::kill(&polecat, rig.rig.as_deref()),
        Cmd::Stop { all: _, rig, json } => commands::stop(rig, json.json),
        Cmd::Plugins { rig, json } => commands::plugins(&rig, json.json),
        Cmd::Plugin(PluginCmd::Add { rig, name }) => commands::plugin_add(&rig, &name),
        Cmd::Plugin(PluginCmd::Status { plugin, rig, json }) => {
            commands::plugin_status(&plugin, rig.rig.as_deref(), json.json)
        }
        Cmd::Wake {
            polecat,
            rig,
            force,
        } => commands::wake_sleep(&polecat, rig.rig.as_deref(), true, force),
        Cmd::Sleep {
            polecat,
            rig,
            force,
        } => commands::wake_sleep(&polecat, rig.rig.as_deref(), false, force),
        Cmd::Doctor { fix, json } => commands::doctor(fix, json.json),
        Cmd::Inject {
            agent,
            rig,
            message,
            json,
        } => commands::inject(&agent, rig.rig.as_deref(), &message, json.json),
        Cmd::Capture {
            agent,
            rig,
            command,
            lines,
            wait,
            json,
        } => commands::capture(
            &agent,
            rig.rig.as_deref(),
            command.as_deref(),
            lines,
            &wait,
            json.json,
        ),
        Cmd::Attach { agent, rig } => commands::attach(&agent, rig.rig.as_deref()),
        Cmd::Completions { shell } => {
            crate::cli::completions::write(shell, &mut std::io::stdout());
            Ok(())
        }
        Cmd::External(_) => unreachable!("main runs external commands"),
    }
}
