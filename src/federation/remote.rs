//! The receiving side: `gt remote --town <town> --from <machine>`, the one
//! program another machine's key may run here (OpenSSH's forced command).
//!
//! The command the other side asked for arrives in `SSH_ORIGINAL_COMMAND`. It
//! is split on whitespace, never given to a shell, and must be one of the
//! wire forms of [`Call::parse`]; its verb must be granted to that machine in
//! this town's `config/federation.json`. Anything else is refused: exit 2, a
//! line on stderr, and a JSON line in `federation/refusals.jsonl`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::{self, Address};
use crate::clock;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::home::Home;
use crate::mail::{self, MAX_RECORD_BYTES, Message};
use crate::record::Extra;
use crate::town::Town;

use super::{Federation, Target};

/// The most a `deliver` reads from stdin: a full batch of the largest records.
pub const MAX_DELIVER_BYTES: usize = super::outbox::MAX_BATCH * (MAX_RECORD_BYTES + 1);

/// A wire command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `gt ping`: who answers. Needs no grant; says nothing but names.
    Ping,
    /// `gt-mail deliver`: JSONL messages on stdin, one [`Receipt`] line each back.
    Deliver,
    /// `gt status --json`: the town's `gt status --json`.
    Status,
    /// `gt kill <rig>/<polecat>`: stop a polecat's session.
    Kill(Address),
    /// `gt capture <address> --json`: show an agent's pane (no typing).
    Capture(Address),
    /// `gt spawn <rig>/<polecat> <issue>`: start a worker for the caller's
    /// issue (the request on stdin); its [`crate::polecat::Spawned`] back.
    Spawn(Address, String),
    /// `gt worker <rig>/<polecat>`: a polecat's clone state, as JSON.
    Worker(Address),
}

impl Call {
    /// The call `command` spells, or why it spells none.
    pub fn parse(command: &str) -> std::result::Result<Call, String> {
        let words: Vec<&str> = command.split_ascii_whitespace().collect();
        let local = |a: &str| a.parse::<Address>().map_err(|e| e.message().to_string());
        Ok(match words.as_slice() {
            ["gt", "ping"] => Call::Ping,
            ["gt-mail", "deliver"] => Call::Deliver,
            ["gt", "status", "--json"] => Call::Status,
            ["gt", "kill", a] => Call::Kill(local(a)?),
            ["gt", "capture", a, "--json"] => Call::Capture(local(a)?),
            ["gt", "spawn", a, issue] => Call::Spawn(local(a)?, issue.to_string()),
            ["gt", "worker", a] => Call::Worker(local(a)?),
            [] => return Err("no command (an interactive login)".to_string()),
            _ => return Err("not a gastown wire command (protocol/federation.md)".to_string()),
        })
    }

    /// The grant this call needs, if any.
    pub fn verb(&self) -> Option<&'static str> {
        match self {
            Call::Ping => None,
            Call::Deliver => Some("deliver"),
            Call::Status => Some("status"),
            Call::Kill(_) => Some("kill"),
            Call::Capture(_) => Some("capture"),
            Call::Spawn(..) => Some("spawn"),
            Call::Worker(_) => Some("status"),
        }
    }
}

/// A line of `federation/refusals.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    pub time: String,
    /// The machine the key belongs to (`--from`).
    pub from: String,
    /// `SSH_ORIGINAL_COMMAND` as received; absent for a login without one.
    pub command: Option<String>,
    pub reason: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What the receiver did with one delivered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Appended to its inbox.
    Delivered,
    /// Its id was already there (an earlier try got through): dropped.
    Duplicate,
    /// Refused for good (no such address here, a bad record).
    Refused,
}

/// One line of `deliver`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What serving a call leaves to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// The answer is on stdout.
    Answered,
    /// Run this command of our own `gt` on the town (status, kill, capture).
    Gt(Vec<String>),
}

/// Serve one forced-command call: `command` is `SSH_ORIGINAL_COMMAND`. A
/// refusal is logged in the town and returned as an error.
pub fn serve(town: &Town, from: &str, command: Option<&str>) -> Result<Served> {
    let fed = Federation::load(town)?;
    let refuse = |reason: String| -> Result<Served> {
        let r = Refusal {
            time: clock::now_string(),
            from: from.to_string(),
            command: command.map(str::to_string),
            reason: reason.clone(),
            extra: Extra::new(),
        };
        let log = fed.refusals();
        fsio::ensure_dir(log.parent().expect("federation/ has a parent"))?;
        fsio::append_json(&log, &r, Durability::Buffered)?;
        Err(Error::invalid(format!("refused: {reason}")))
    };
    let machine = match fed.machine(from) {
        Ok(m) => m,
        Err(e) => return refuse(e.to_string()),
    };
    let call = match Call::parse(command.unwrap_or("")) {
        Ok(c) => c,
        Err(why) => return refuse(why),
    };
    if let Some(verb) = call.verb()
        && !machine.granted(verb)
    {
        return refuse(format!(
            "{verb} is not granted to machine {from} (\"grants\" in {})",
            town.federation_json().display()
        ));
    }
    match call {
        Call::Ping => {
            let me = serde_json::json!({
                "machine": fed.registry.machine,
                "town": town.config()?.name,
                "root": town.root(),
                "version": env!("CARGO_PKG_VERSION"),
            });
            crate::cli::print_json_line(&me)?;
            Ok(Served::Answered)
        }
        Call::Deliver => {
            let input = stdin(MAX_DELIVER_BYTES)?;
            let receipts = deliver(&fed, from, &input)?;
            let mut buf = Vec::new();
            for r in &receipts {
                serde_json::to_writer(&mut buf, r).map_err(|e| Error::invalid(e.to_string()))?;
                buf.push(b'\n');
            }
            std::io::stdout()
                .lock()
                .write_all(&buf)
                .at(std::path::Path::new("<stdout>"))?;
            Ok(Served::Answered)
        }
        Call::Spawn(a, issue) => {
            let input = stdin(MAX_RECORD_BYTES)?;
            let spawned = super::worker::serve_spawn(town, from, &a, &issue, &input)?;
            crate::cli::print_json_line(&spawned)?;
            Ok(Served::Answered)
        }
        Call::Worker(a) => {
            crate::cli::print_json_line(&super::worker::clone_state(town, &a)?)?;
            Ok(Served::Answered)
        }
        Call::Status => Ok(gt(&["status", "--json"])),
        Call::Kill(a) => Ok(gt(&["kill", &a.to_string()])),
        Call::Capture(a) => Ok(gt(&["capture", &a.to_string(), "--json"])),
    }
}

/// All of stdin, refused over `max` bytes.
fn stdin(max: usize) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin().lock(), max as u64 + 1),
        &mut input,
    )
    .at(std::path::Path::new("<stdin>"))?;
    if input.len() > max {
        return Err(Error::invalid(format!(
            "<stdin>: over {max} bytes; send smaller batches"
        )));
    }
    Ok(input)
}

fn gt(args: &[&str]) -> Served {
    Served::Gt(
        std::iter::once("gt")
            .chain(args.iter().copied())
            .map(str::to_string)
            .collect(),
    )
}

/// Deliver JSONL `input` from machine `from`: each record's `from` must be
/// `<from>:<address>` and its `to` an address of this town. Records whose id
/// the inbox (or its archive) already holds are dropped, so a retry after a
/// lost confirmation delivers nothing twice. One write per inbox, fsynced
/// before the receipts go back.
pub fn deliver(fed: &Federation, from: &str, input: &[u8]) -> Result<Vec<Receipt>> {
    let mut receipts: Vec<Receipt> = Vec::new();
    // Accepted records: their receipt's index, home and prepared line.
    let mut accepted: Vec<(usize, Home, mail::Outgoing)> = Vec::new();
    let mut homes: HashMap<String, Home> = HashMap::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut m: Message = serde_json::from_slice(line).map_err(|e| {
            Error::invalid(format!(
                "<stdin>:{}: not a message ({e}); nothing delivered",
                i + 1
            ))
        })?;
        let id = m.id.clone();
        match accept(fed, from, &mut m, &mut homes) {
            Ok((home, out)) => {
                accepted.push((receipts.len(), home, out));
                receipts.push(Receipt {
                    id,
                    result: Outcome::Delivered,
                    error: None,
                });
            }
            Err(e) => receipts.push(Receipt {
                id,
                result: Outcome::Refused,
                error: Some(e.to_string()),
            }),
        }
    }
    // Deliveries one at a time, so two tries of one id cannot both miss it.
    fsio::ensure_dir(&fed.dir())?;
    let _one_delivery = fsio::lock_file(&fed.dir().join("deliver.lock"))?;
    let mut held: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut fresh = Vec::new();
    for (i, home, out) in accepted {
        let ids = match held.entry(out.inbox.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(held_ids(&home)?),
        };
        if ids.insert(receipts[i].id.clone()) {
            fresh.push(out);
        } else {
            receipts[i].result = Outcome::Duplicate;
        }
    }
    mail::post_prepared(fresh, Durability::Sync)?;
    Ok(receipts)
}

/// Check one incoming record and prepare its append.
fn accept(
    fed: &Federation,
    from: &str,
    m: &mut Message,
    homes: &mut HashMap<String, Home>,
) -> Result<(Home, mail::Outgoing)> {
    check_incoming(fed, from, m)?;
    let home = match homes.get(&m.to) {
        Some(h) => h.clone(),
        None => {
            let h = fed.town.resolve(&m.to, crate::town::Bare::Address)?;
            homes.insert(m.to.clone(), h.clone());
            h
        }
    };
    let out = mail::prepare(&fed.town, m)?;
    Ok((home, out))
}

fn check_incoming(fed: &Federation, from: &str, m: &mut Message) -> Result<()> {
    match address::parse_qualified(&m.from) {
        Ok((Some(f), _)) if f == from => {}
        _ => {
            return Err(Error::invalid(format!(
                "\"from\" is {:?}: mail from machine {from} must be from {from}:<address>",
                m.from
            )));
        }
    }
    match fed.target(&m.to)? {
        Target::Local(a) if a != "self" => {
            m.to = a.to_string();
            Ok(())
        }
        Target::Local(_) => Err(Error::invalid("\"to\" is self: name the address")),
        Target::Remote { machine, .. } => Err(Error::invalid(format!(
            "\"to\" is {:?}, on machine {machine}: mail is not relayed",
            m.to
        ))),
    }
}

/// Ids held in `home`'s inbox and archive: the inbox first, so mail moved to
/// the archive meanwhile is still seen.
fn held_ids(home: &Home) -> Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut files: Vec<PathBuf> = vec![home.inbox()];
    files.extend(mail::archive::files(home)?);
    let mut out = HashSet::new();
    for path in files {
        let mut records = fsio::Records::<IdOnly>::open(&path, fsio::Cursor::default())?;
        while let Some(e) = records.next_entry()? {
            if let fsio::Entry::Record { value, .. } = e {
                out.insert(value.id);
            }
        }
    }
    Ok(out)
}

/// The `authorized_keys` line that lets `machine`'s key (`pubkey`, one
/// OpenSSH public key line) run `gt remote` for `town` and nothing else:
/// `restrict` turns off ptys, forwarding and `~/.ssh/rc`.
pub fn authorized_keys_line(
    town: &Town,
    machine: &str,
    gt: &std::path::Path,
    pubkey: &str,
) -> Result<String> {
    address::check_name("machine", machine)?;
    let key = pubkey.trim();
    let mut words = key.split_ascii_whitespace();
    let kind = words.next().unwrap_or("");
    let known = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p));
    if !known || words.next().is_none() || key.contains('\n') {
        return Err(Error::invalid(
            "not one OpenSSH public key line (<type> <base64> [comment], e.g. ssh-ed25519 AAAA... user@host)",
        ));
    }
    // sshd hands the command to the user's shell: only plain path characters.
    let plain = |p: &std::path::Path| {
        let s = p.to_string_lossy().into_owned();
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
            .then_some(s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: the forced command needs a path of letters, digits and /._-+@ only",
                    p.display()
                ))
            })
    };
    Ok(format!(
        "command=\"{} remote --town {} --from {machine}\",restrict {key}",
        plain(gt)?,
        plain(town.root())?
    ))
}
