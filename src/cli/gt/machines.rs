//! `gt machines`, `gt remote` and `gt status --all-machines`: the federation
//! (protocol/federation.md) from the command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::{print_json, print_table};
use crate::error::{Error, IoContext, Result};
use crate::federation::probe::{self, Seen};
use crate::federation::{Federation, remote, ssh};
use crate::status::{self, StatusReport};
use crate::town::Town;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MachinesArgs {
    #[command(subcommand)]
    cmd: Option<MachinesCmd>,
    /// Print a JSON array of {name, reachable, last_seen_age_s, error}
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum MachinesCmd {
    /// Print the authorized_keys line that lets MACHINE's key run only `gt remote` for this town
    Authorize {
        /// A machine of config/federation.json
        machine: String,
        /// Its public key file (e.g. id_ed25519.pub)
        pubkey: PathBuf,
        /// Append the line to ~/.ssh/authorized_keys (unless it is there already)
        #[arg(long)]
        install: bool,
    },
}

#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// The town this key may act on
    #[arg(long, value_name = "DIR")]
    town: PathBuf,
    /// The machine (of that town's config/federation.json) the key belongs to
    #[arg(long, value_name = "MACHINE")]
    from: String,
}

/// `gt machines [--json]` and `gt machines authorize`.
pub(super) fn machines(args: MachinesArgs) -> Result<()> {
    let town = Town::discover()?;
    let fed = Federation::load(&town)?;
    if let Some(MachinesCmd::Authorize {
        machine,
        pubkey,
        install,
    }) = args.cmd
    {
        return authorize(&fed, &machine, &pubkey, install);
    }
    let seen = probe::ping_all(&fed, ssh::timeout()?);
    if args.json {
        print_json(&seen)?;
    } else if seen.is_empty() {
        println!(
            "no other machines (add them to {})",
            town.federation_json().display()
        );
    } else {
        let rows: Vec<Vec<String>> = seen
            .iter()
            .map(|s| {
                let m = &fed.registry.machines[&s.name];
                vec![
                    s.name.clone(),
                    m.host.clone(),
                    if s.reachable { "yes" } else { "no" }.to_string(),
                    age(s.last_seen_age_s),
                    s.error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print_table(
            &["MACHINE", "HOST", "REACHABLE", "LAST_SEEN", "ERROR"],
            &rows,
        );
    }
    Ok(())
}

fn age(s: Option<u64>) -> String {
    s.map_or_else(|| "never".into(), |s| format!("{s}s ago"))
}

fn authorize(
    fed: &Federation,
    machine: &str,
    pubkey: &std::path::Path,
    install: bool,
) -> Result<()> {
    fed.machine(machine)?;
    let key = std::fs::read_to_string(pubkey).at(pubkey)?;
    let gt = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .at(std::path::Path::new("<current exe>"))?;
    let line = remote::authorized_keys_line(&fed.town, machine, &gt, &key)
        .map_err(|e| e.context(pubkey.display()))?;
    if !install {
        println!("{line}");
        return Ok(());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::invalid("HOME is unset: cannot find ~/.ssh/authorized_keys"))?;
    let dir = PathBuf::from(home).join(".ssh");
    let path = dir.join("authorized_keys");
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .at(&dir)?;
    }
    let existing = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    if existing.lines().any(|l| l == line) {
        println!("{}: already authorizes {machine}", path.display());
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .at(&path)?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(f, "{sep}{line}").at(&path)?;
    println!(
        "{}: authorized {machine} for gt remote only",
        path.display()
    );
    Ok(())
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// `gt remote`: the forced command. Its request is in SSH_ORIGINAL_COMMAND.
/// Status, kill and capture run our own `gt` in this process, which reports
/// its own errors and exit code.
pub(super) fn remote(args: RemoteArgs) -> ExitCode {
    // What this call starts (a spawned worker's session) knows its home.
    // SAFETY: nothing else runs yet; no thread reads the environment.
    unsafe { std::env::set_var("GT_HOME_MACHINE", &args.from) };
    let mut then = None;
    let code = crate::cli::run("gt remote", || {
        let town = Town::open(&args.town).map_err(|e| e.context("--town"))?;
        let command = std::env::var("SSH_ORIGINAL_COMMAND").ok();
        if let remote::Served::Gt(argv) = remote::serve(&town, &args.from, command.as_deref())? {
            then = Some((town, argv));
        }
        Ok(())
    });
    let Some((town, argv)) = then else {
        return code;
    };
    // SAFETY: `gt remote` is single-threaded until here; nothing reads the
    // environment concurrently.
    unsafe {
        std::env::set_var("GT_TOWN", town.root());
        std::env::remove_var("GT_ADDRESS");
    }
    super::main(argv.into_iter().map(Into::into).collect())
}

/// One machine in `gt status --all-machines --json`.
#[derive(Serialize)]
struct MachineStatus {
    #[serde(flatten)]
    seen: Seen,
    status: Option<StatusReport>,
}

#[derive(Serialize)]
struct AllMachines {
    machine: Option<String>,
    local: StatusReport,
    machines: Vec<MachineStatus>,
}

/// `gt status --all-machines`: this town, then every other machine's.
pub(super) fn status_all(json: bool, print: impl Fn(&StatusReport)) -> Result<()> {
    let town = Town::discover()?;
    let fed = Federation::load(&town)?;
    let local = status::report(&town)?;
    let machines: Vec<MachineStatus> =
        probe::ask_all(&fed, &["gt", "status", "--json"], ssh::timeout()?)
            .into_iter()
            .map(|(mut seen, out)| {
                let status = out.and_then(|o| match serde_json::from_slice(&o) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        seen.error = Some(format!("unreadable status from {}: {e}", seen.name));
                        None
                    }
                });
                MachineStatus { seen, status }
            })
            .collect();
    if json {
        print_json(&AllMachines {
            machine: fed.registry.machine.clone(),
            local,
            machines,
        })?;
        return Ok(());
    }
    println!(
        "machine {} (here)",
        fed.registry.machine.as_deref().unwrap_or("-")
    );
    print(&local);
    for m in &machines {
        println!();
        match (&m.status, &m.seen.error) {
            (Some(r), _) => {
                println!("machine {}", m.seen.name);
                print(r);
            }
            (None, e) => println!(
                "machine {}: {} (last seen {}): {}",
                m.seen.name,
                if m.seen.reachable {
                    "answered"
                } else {
                    "unreachable"
                },
                age(m.seen.last_seen_age_s),
                e.as_deref().unwrap_or("no status")
            ),
        }
    }
    Ok(())
}
