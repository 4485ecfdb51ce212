//! Federation (protocol/federation.md): other machines' towns, reached with
//! the `ssh` on PATH and nothing else.
//!
//! * [`Registry`]: `config/federation.json`, this machine's name and the others;
//! * [`ssh`]: one bounded round trip to a machine's forced command;
//! * [`outbox`]: mail for another machine waits in a locked JSONL spool until
//!   the receiver confirms it;
//! * [`remote`]: the receiving side, `gt remote` (OpenSSH's forced command).
//!
//! Files of this town: `federation/outbox/<machine>.jsonl` (the spool),
//! `federation/outbox/<machine>.refused.jsonl` (mail the receiver refused),
//! `federation/seen/<machine>` (its mtime: the last answer from that machine),
//! `federation/backoff/<machine>.json` (a machine that did not answer: when
//! to try it again),
//! `federation/refusals.jsonl` (commands `gt remote` refused here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::{self, Address};
use crate::error::{Error, Kind, Result};
use crate::fsio;
use crate::record::Extra;
use crate::town::Town;

pub mod backoff;
pub mod outbox;
pub mod probe;
pub mod remote;
pub mod ssh;
pub mod worker;

/// What a machine may be granted (the verbs of protocol/federation.md).
pub const GRANTS: &[&str] = &["deliver", "status", "spawn", "kill", "capture"];

/// `config/federation.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Registry {
    pub version: u32,
    /// This machine's name: what `<machine>:` means here, and the prefix of
    /// the `from` of mail sent from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default)]
    pub machines: BTreeMap<String, Machine>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One other machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// Only `ssh`.
    #[serde(default = "default_transport")]
    pub transport: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The private key ssh offers (`-i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// The remote town's root, absolute.
    pub town: String,
    /// Extra ssh arguments, e.g. `["-o", "ControlMaster=auto"]`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// What that machine may do here (see [`GRANTS`]).
    #[serde(default)]
    pub grants: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn default_transport() -> String {
    "ssh".to_string()
}

impl Machine {
    pub fn granted(&self, verb: &str) -> bool {
        self.grants.iter().any(|g| g == verb)
    }
}

/// The town's federation: its registry and where its files go.
#[derive(Debug, Clone)]
pub struct Federation {
    pub town: Town,
    pub registry: Registry,
}

/// Where an address typed by a user leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// This town; the machine prefix (if any) removed.
    Local(&'a str),
    /// Another machine's town.
    Remote { machine: &'a str, address: Address },
}

impl Federation {
    /// The registry of `town` (none configured: no machines), checked.
    pub fn load(town: &Town) -> Result<Federation> {
        let path = town.federation_json();
        let registry = match fsio::read_json::<Registry>(&path) {
            Err(e) if e.kind == Kind::NotFound => Registry {
                version: 1,
                ..Default::default()
            },
            r => r?,
        };
        check(&path, &registry)?;
        Ok(Federation {
            town: town.clone(),
            registry,
        })
    }

    /// This machine's name, required to send or serve anything.
    pub fn local_name(&self) -> Result<&str> {
        self.registry.machine.as_deref().ok_or_else(|| {
            Error::invalid(format!(
                "{}: no \"machine\" (this machine's name); federation needs it",
                self.town.federation_json().display()
            ))
        })
    }

    /// The registered machine `name`, with a "did you mean" when there is none.
    pub fn machine(&self, name: &str) -> Result<&Machine> {
        self.registry.machines.get(name).ok_or_else(|| {
            let mut e = Error::not_found(format!(
                "no machine {name:?} in {}",
                self.town.federation_json().display()
            ));
            if let Some(s) =
                address::did_you_mean(name, self.registry.machines.keys().map(String::as_str))
            {
                e = e.with_hint(format!("did you mean {s}?"));
            }
            e
        })
    }

    /// Where `spec` leads: a plain address or `<this machine>:<address>` is
    /// local; `<other>:<address>` is that registered machine's (the address
    /// is only parsed here: whether it exists is the other town's answer).
    pub fn target<'a>(&self, spec: &'a str) -> Result<Target<'a>> {
        let Some((machine, rest)) = address::split_machine(spec)? else {
            return Ok(Target::Local(spec));
        };
        if self.registry.machine.as_deref() == Some(machine) {
            return Ok(Target::Local(rest));
        }
        self.machine(machine)?;
        let address = rest.parse().map_err(|e: Error| e.context(machine))?;
        Ok(Target::Remote { machine, address })
    }

    /// `spec` as an address of this town: without `<this machine>:`;
    /// another machine's agent is refused (only mail reaches it).
    pub fn local_part<'a>(&self, spec: &'a str) -> Result<&'a str> {
        match self.target(spec)? {
            Target::Local(rest) => Ok(rest),
            Target::Remote { machine, .. } => Err(Error::invalid(format!(
                "{spec} is an agent of machine {machine}: only mail reaches it from here (gt send {spec})"
            ))),
        }
    }

    /// Run one wire command on `machine` and return its stdout; an answer,
    /// even a refusal, counts as the machine seen.
    pub fn call(&self, machine: &str, words: &[&str]) -> Result<Vec<u8>> {
        self.call_with(machine, words, Vec::new())
    }

    /// [`Federation::call`] with `input` on the remote command's stdin.
    pub fn call_with(&self, machine: &str, words: &[&str], input: Vec<u8>) -> Result<Vec<u8>> {
        let m = self.machine(machine)?;
        let reply = ssh::round_trip(ssh::command(m, words), input, ssh::timeout()?)?;
        if reply.code().is_some_and(|c| c != 255) {
            self.mark_seen(machine)?;
        }
        reply.ok(machine)
    }

    /// `spec` as another machine's agent, if it is one.
    pub fn remote<'a>(town: &Town, spec: &'a str) -> Result<Option<(&'a str, Address)>> {
        if !spec.contains(':') {
            return Ok(None);
        }
        Ok(match Federation::load(town)?.target(spec)? {
            Target::Remote { machine, address } => Some((machine, address)),
            Target::Local(_) => None,
        })
    }

    pub fn dir(&self) -> PathBuf {
        self.town.root().join("federation")
    }
    /// The spool of mail waiting for `machine`.
    pub fn outbox(&self, machine: &str) -> PathBuf {
        self.dir().join("outbox").join(format!("{machine}.jsonl"))
    }
    /// Mail `machine` refused for good (no such address there, a bad record).
    pub fn refused(&self, machine: &str) -> PathBuf {
        self.dir()
            .join("outbox")
            .join(format!("{machine}.refused.jsonl"))
    }
    /// Touched whenever `machine` answers; its mtime is the last-seen time.
    pub fn seen(&self, machine: &str) -> PathBuf {
        self.dir().join("seen").join(machine)
    }
    /// How long the unattended flushers leave `machine` alone (it did not answer).
    pub fn backoff(&self, machine: &str) -> PathBuf {
        self.dir().join("backoff").join(format!("{machine}.json"))
    }
    /// One JSON line per command `gt remote` refused in this town.
    pub fn refusals(&self) -> PathBuf {
        self.dir().join("refusals.jsonl")
    }

    /// Record that `machine` just answered.
    pub fn mark_seen(&self, machine: &str) -> Result<()> {
        let path = self.seen(machine);
        fsio::ensure_dir(path.parent().expect("seen/ has a parent"))?;
        let f = crate::confine::open(
            &path,
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT,
            0o644,
        )
        .map_err(|e| Error::io(&path, e))?;
        f.set_modified(std::time::SystemTime::now())
            .map_err(|e| Error::io(&path, e))
    }

    /// Seconds since `machine` last answered, if it ever did.
    pub fn last_seen_age_s(&self, machine: &str) -> Option<u64> {
        crate::confine::metadata(&self.seen(machine))
            .and_then(|m| m.modified())
            .ok()
            .map(|t| t.elapsed().map_or(0, |d| d.as_secs()))
    }
}

/// What serde cannot say about a registry: names, paths, known verbs, and no
/// value ssh would read as an option.
fn check(path: &Path, r: &Registry) -> Result<()> {
    let bad = |what: String| Error::invalid(format!("{}: {what}", path.display()));
    if r.version != 1 {
        return Err(bad(format!("\"version\" is {}, expected 1", r.version)));
    }
    if let Some(m) = &r.machine {
        address::check_name("machine", m).map_err(|e| bad(format!("\"machine\": {e}")))?;
    }
    for (name, m) in &r.machines {
        let at = |what: &str| bad(format!("machine {name:?}: {what}"));
        address::check_name("machine", name).map_err(|e| at(e.message()))?;
        if m.transport != "ssh" {
            return Err(at(&format!(
                "\"transport\" is {:?}; only \"ssh\" is supported",
                m.transport
            )));
        }
        for (field, v) in [("host", Some(m.host.as_str())), ("user", m.user.as_deref())] {
            if let Some(v) = v
                && (v.is_empty() || v.starts_with('-') || v.contains(char::is_whitespace))
            {
                return Err(at(&format!(
                    "\"{field}\" is {v:?}: it must be non-empty, without spaces, and not start with '-'"
                )));
            }
        }
        if !m.town.starts_with('/') {
            return Err(at(&format!(
                "\"town\" is {:?}: not an absolute path",
                m.town
            )));
        }
        if let Some(g) = m.grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
            return Err(at(&format!(
                "grant {g:?} is not one of {}",
                GRANTS.join(", ")
            )));
        }
    }
    Ok(())
}
