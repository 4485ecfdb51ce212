//! Mail for another machine: spooled first, delivered in batches, removed
//! only when the receiver confirmed it (protocol/federation.md, "Mail").
//!
//! A message goes into `federation/outbox/<machine>.jsonl` (a locked JSONL
//! append, as an inbox is) before any ssh runs, so a crash, a killed ssh or
//! a dropped connection loses nothing: the next flush sends it again, and the
//! receiver drops an id it already holds. One flush at a time per machine
//! (`<machine>.flush.lock`), in spool order, so mail arrives in the order sent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{self, Durability};
use crate::mail::Message;

use super::backoff::{self, Backoff};
use super::remote::{Outcome, Receipt};
use super::{Federation, ssh};

/// Records per round trip: one ssh per batch, not per message.
pub const MAX_BATCH: usize = 2000;

/// Append `messages` (their `to` an address of `machine`'s town, their
/// `from` qualified with this machine's name) to `machine`'s spool.
pub fn spool(
    fed: &Federation,
    machine: &str,
    messages: &[Message],
    durability: Durability,
) -> Result<()> {
    let path = fed.outbox(machine);
    fsio::ensure_dir(path.parent().expect("outbox/ has a parent"))?;
    let lines = messages
        .iter()
        .map(Message::to_line)
        .collect::<Result<Vec<_>>>()?;
    fsio::append_lines(&path, &lines, durability).map(|_| ())
}

/// A record the receiver refused for good, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Refused {
    pub id: String,
    pub error: String,
}

/// What one flush of a machine's spool did.
#[derive(Debug, Default, Serialize)]
pub struct Flushed {
    pub machine: String,
    /// Ids the receiver appended.
    pub delivered: Vec<String>,
    /// Ids the receiver already held (an earlier try got through).
    pub duplicates: Vec<String>,
    /// Moved to `<machine>.refused.jsonl`.
    pub refused: Vec<Refused>,
    /// Records still in the spool.
    pub waiting: usize,
    pub round_trips: usize,
    /// Why the flush stopped with mail waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stop was the other side's refusal of the command, not the network.
    pub refused_by_remote: bool,
    /// The machine's backoff after this flush (it was not reached), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

fn id_of(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<IdOnly>(line).ok().map(|r| r.id)
}

/// Whether `machine` has mail waiting (a cheap look, no lock).
pub fn has_mail(fed: &Federation, machine: &str) -> bool {
    crate::confine::metadata(&fed.outbox(machine)).is_ok_and(|m| m.len() > 0)
}

/// Send `machine`'s spool, a batch per round trip, until it is empty or a
/// round trip fails; each round trip is bounded by `deadline`.
pub fn flush(fed: &Federation, machine: &str, deadline: Duration) -> Result<Flushed> {
    let m = fed.machine(machine)?;
    let path = fed.outbox(machine);
    let mut out = Flushed {
        machine: machine.to_string(),
        ..Default::default()
    };
    if !has_mail(fed, machine) {
        return Ok(out);
    }
    let _one_flusher = fsio::lock_file(&path.with_extension("flush.lock"))?;
    loop {
        let batch = read_records(&path, MAX_BATCH)?;
        if batch.is_empty() {
            break;
        }
        let mut input = Vec::new();
        for (_, line) in &batch {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let reply = ssh::round_trip(ssh::command(m, &["gt-mail", "deliver"]), input, deadline)
            .and_then(|r| r.ok(machine));
        let stdout = match reply {
            Ok(s) => s,
            Err(e) => {
                out.refused_by_remote = e.kind != crate::error::Kind::Io;
                out.error = Some(e.to_string());
                if out.refused_by_remote {
                    backoff::reset(fed, machine)?;
                } else {
                    out.backoff = Some(backoff::failed(fed, machine, &e.to_string())?);
                }
                break;
            }
        };
        out.round_trips += 1;
        fed.mark_seen(machine)?;
        backoff::reset(fed, machine)?;
        let receipts: HashMap<String, Receipt> = stdout
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Receipt>(l).ok())
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut done = HashSet::new();
        let mut dead = Vec::new();
        for (id, line) in &batch {
            let Some(r) = receipts.get(id) else { continue };
            done.insert(id.clone());
            match r.result {
                Outcome::Delivered => out.delivered.push(id.clone()),
                Outcome::Duplicate => out.duplicates.push(id.clone()),
                Outcome::Refused => {
                    let error = r.error.clone().unwrap_or_default();
                    dead.push(with_refusal(line, &error)?);
                    out.refused.push(Refused {
                        id: id.clone(),
                        error,
                    });
                }
            }
        }
        if !dead.is_empty() {
            fsio::append_lines(&fed.refused(machine), &dead, Durability::Sync)?;
        }
        if done.is_empty() {
            out.error = Some(format!(
                "{machine} confirmed none of {} records",
                batch.len()
            ));
            break;
        }
        fsio::update_lines(&path, |lines| {
            lines.retain(|l| id_of(l).is_none_or(|id| !done.contains(&id)));
            Ok(())
        })?;
    }
    out.waiting = read_records(&path, usize::MAX)?.len();
    Ok(out)
}

/// Flush every registered machine that has mail waiting, except one whose
/// backoff says not yet (then its entry says so, and no ssh runs); one
/// machine's failure is its own entry.
pub fn flush_all(fed: &Federation, deadline: Duration) -> Vec<(String, Result<Flushed>)> {
    let now = crate::clock::now();
    fed.registry
        .machines
        .keys()
        .filter(|m| has_mail(fed, m))
        .map(|m| {
            let r = match backoff::read(fed, m).filter(|b| !b.due(now)) {
                Some(b) => waiting_out(fed, m, b),
                None => flush(fed, m, deadline),
            };
            (m.clone(), r)
        })
        .collect()
}

/// The entry of a machine left alone while it backs off.
fn waiting_out(fed: &Federation, machine: &str, b: Backoff) -> Result<Flushed> {
    Ok(Flushed {
        machine: machine.to_string(),
        waiting: read_records(&fed.outbox(machine), usize::MAX)?.len(),
        error: Some(format!(
            "not tried: backing off until {} after {} failure(s) in a row (last: {})",
            b.next_try, b.failures, b.error
        )),
        backoff: Some(b),
        ..Default::default()
    })
}

/// The first `limit` records of the spool, as ids and lines.
fn read_records(path: &Path, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
    let mut records = fsio::Records::<Message>::open(path, fsio::Cursor::default())?;
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(e) = records.next_entry()?
    {
        if let fsio::Entry::Record { value, .. } = e {
            let line = value.to_line()?;
            out.push((value.id, line));
        }
    }
    Ok(out)
}

/// The spooled line with `"refused": <why>` added.
fn with_refusal(line: &[u8], why: &str) -> Result<Vec<u8>> {
    let mut obj: crate::record::Extra =
        serde_json::from_slice(line).map_err(|e| Error::invalid(e.to_string()))?;
    obj.insert("refused".into(), why.into());
    serde_json::to_vec(&obj).map_err(|e| Error::invalid(e.to_string()))
}

/// How [`send`] left a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The receiver confirmed it.
    Delivered,
    /// It waits in the spool, for this reason.
    Queued(String),
}

/// Spool `m` for `machine`, then flush that machine's spool (older mail
/// first). A refusal of `m` itself (no such address there) is an error, and
/// so is the other side's refusal of the command; a network failure is not:
/// the message waits.
pub fn send(fed: &Federation, machine: &str, m: &Message, durability: Durability) -> Result<Sent> {
    spool(fed, machine, std::slice::from_ref(m), durability)?;
    let f = flush(fed, machine, ssh::timeout()?)?;
    if f.delivered.contains(&m.id) || f.duplicates.contains(&m.id) {
        return Ok(Sent::Delivered);
    }
    if let Some(r) = f.refused.iter().find(|r| r.id == m.id) {
        return Err(
            Error::invalid(format!("{machine} refused {}: {}", m.id, r.error))
                .with_hint(format!("kept in {}", fed.refused(machine).display())),
        );
    }
    let why = f.error.unwrap_or_else(|| "not confirmed".to_string());
    if f.refused_by_remote {
        return Err(Error::invalid(why).with_hint(format!(
            "the message waits in {}",
            fed.outbox(machine).display()
        )));
    }
    Ok(Sent::Queued(why))
}

/// A daemon pass's share: flush every machine with mail waiting, as actions.
pub fn pass(town: &crate::town::Town) -> Vec<crate::event::Action> {
    use crate::event::act;
    let fed = match Federation::load(town).and_then(|f| ssh::timeout().map(|t| (f, t))) {
        Ok(f) => f,
        Err(e) => return vec![act("federation", "error", e.to_string())],
    };
    let mut out = Vec::new();
    for (machine, r) in flush_all(&fed.0, fed.1) {
        let f = match r {
            Ok(f) => f,
            Err(e) => {
                out.push(act(&machine, "error", e.to_string()));
                continue;
            }
        };
        if !f.delivered.is_empty() || !f.duplicates.is_empty() {
            out.push(act(
                &machine,
                "mail-delivered",
                format!(
                    "{} delivered, {} already there",
                    f.delivered.len(),
                    f.duplicates.len()
                ),
            ));
        }
        for r in &f.refused {
            out.push(act(
                &machine,
                "mail-refused",
                format!("{}: {}", r.id, r.error),
            ));
        }
        if f.waiting > 0 {
            out.push(act(
                &machine,
                "mail-queued",
                format!(
                    "{} waiting: {}",
                    f.waiting,
                    f.error.as_deref().unwrap_or("not confirmed")
                ),
            ));
        }
    }
    out
}
