//! Mail: one locked JSONL inbox per agent home (protocol/mail.md).
//!
//! * [`Message`]: the record, with the Go Gas Town's field names;
//! * [`post`]: resolve recipients, then one locked append per inbox;
//! * [`reader::Reader`]: read state (unread, watch cursors) in O(new messages);
//! * [`archive()`]: move mail every reader is done with out of the hot file;
//! * [`check`]: what `gt doctor` reports about a home's mail files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::clock;
use crate::error::{Error, Result};
use crate::fsio::{self, BadLine, Durability};
use crate::home::Home;
use crate::record::Extra;
use crate::town::{Bare, Town};

pub mod archive;
pub mod reader;

pub use archive::archive;

/// Longest record we write: one JSON line of at most 64 KiB (newline excluded).
/// A line this size still goes out in one `write`; longer text belongs in a
/// file the message names.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The priorities a writer may use.
pub const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];

/// Default `priority` of a record that has none.
pub const DEFAULT_PRIORITY: &str = "normal";
/// Default `type` of a record that has none.
pub const DEFAULT_TYPE: &str = "notification";

/// One message: a line of `mail/inbox.jsonl`. Only `id, from, to, subject,
/// body, timestamp` are required; fields we do not know are kept in `extra`.
/// Deserialize is written out below (serde's `flatten` buffers every field of
/// every line before it builds the record: twice the work of a read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Unique, non-empty; ours are `msg-<time><random>` and sort by time.
    pub id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// RFC 3339.
    pub timestamp: String,
    /// `low`, `normal`, `high` or `urgent` (others are kept as written).
    pub priority: String,
    /// `notification`, `task`, `reply`, `handoff`, lifecycle types, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// For lifecycle mail: the spawn generation of the agent it is about, so a
    /// stale message never acts on a newer worker of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn default_priority() -> String {
    DEFAULT_PRIORITY.to_string()
}
fn default_type() -> String {
    DEFAULT_TYPE.to_string()
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Message, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

/// The keys [`Message`] names; anything else goes to `extra`.
const FIELDS: &[&str] = &[
    "id",
    "from",
    "to",
    "subject",
    "body",
    "timestamp",
    "priority",
    "type",
    "thread_id",
    "reply_to",
    "generation",
];

/// A key: its index in [`FIELDS`], or an unknown key as written.
enum Key {
    Known(usize),
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> std::result::Result<Key, E> {
                Ok(match FIELDS.iter().position(|f| *f == k) {
                    Some(i) => Key::Known(i),
                    None => Key::Other(k.to_string()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

struct MessageVisitor;

impl<'de> serde::de::Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mail message (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Message, A::Error> {
        use serde::de::Error as _;
        // id, from, to, subject, body, timestamp, priority, type.
        let mut text: [Option<String>; 8] = Default::default();
        let mut thread_id = None;
        let mut reply_to = None;
        let mut generation = None;
        let mut seen = [false; FIELDS.len()];
        let mut extra = Extra::new();
        while let Some(key) = map.next_key::<Key>()? {
            let i = match key {
                Key::Known(i) => i,
                Key::Other(k) => {
                    let v = map.next_value()?;
                    extra.insert(k, v);
                    continue;
                }
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(A::Error::duplicate_field(FIELDS[i]));
            }
            match i {
                8 => thread_id = map.next_value()?,
                9 => reply_to = map.next_value()?,
                10 => generation = map.next_value()?,
                _ => text[i] = Some(map.next_value()?),
            }
        }
        let [id, from, to, subject, body, timestamp, priority, kind] = text;
        let need =
            |v: Option<String>, i: usize| v.ok_or_else(|| A::Error::missing_field(FIELDS[i]));
        Ok(Message {
            id: need(id, 0)?,
            from: need(from, 1)?,
            to: need(to, 2)?,
            subject: need(subject, 3)?,
            body: need(body, 4)?,
            timestamp: need(timestamp, 5)?,
            priority: priority.unwrap_or_else(default_priority),
            kind: kind.unwrap_or_else(default_type),
            thread_id,
            reply_to,
            generation,
            extra,
        })
    }
}

/// The id of the forward of message `id` ([`Message::forwarded`]).
pub fn forward_id(id: &str) -> String {
    format!("fwd-{id}")
}

impl Message {
    /// A new message from `from` to `to` (as typed; [`post`] resolves it) with a
    /// fresh id and the current time.
    pub fn new(from: &Address, to: &str, subject: &str, body: &str) -> Message {
        Message {
            id: clock::new_id("msg"),
            from: from.to_string(),
            to: to.to_string(),
            subject: subject.to_string(),
            body: body.to_string(),
            timestamp: clock::now_string(),
            priority: default_priority(),
            kind: default_type(),
            thread_id: None,
            reply_to: None,
            generation: None,
            extra: Extra::new(),
        }
    }

    /// `self` forwarded by `from` to `to`, as an escalation a person or the
    /// Mayor reads (`by` the tool that forwards). Its id is `fwd-` and the
    /// original's, so a forward is its own record of having been sent.
    /// `why` opens the body; `see` (where the original is) follows its
    /// sender and time.
    pub fn forwarded(
        &self,
        from: &Address,
        to: &str,
        by: &str,
        why: &str,
        see: Option<&str>,
    ) -> Message {
        let see = see.map(|s| format!("\n{s}")).unwrap_or_default();
        let mut fwd = Message::new(
            from,
            to,
            &format!("fwd: {}", self.subject),
            &format!(
                "{why}\nFrom: {}\nSent: {}{see}\n\n{}",
                self.from, self.timestamp, self.body
            ),
        );
        fwd.id = forward_id(&self.id);
        fwd.kind = "escalation".into();
        fwd.priority = self.priority.clone();
        fwd.reply_to = Some(self.id.clone());
        fwd.extra.insert("by".into(), by.into());
        fwd.extra.insert("forwarded".into(), self.id.clone().into());
        fwd
    }

    /// The address to resolve: `to`, where `self` means the sender (whoever
    /// GT_ADDRESS says is running).
    pub fn recipient(&self) -> &str {
        if self.to == "self" {
            &self.from
        } else {
            &self.to
        }
    }

    /// What a reader needs beyond serde: a non-empty id. A line failing this is
    /// a bad line; anything else a reader shows.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.id.is_empty() {
            return Err("\"id\" is empty".to_string());
        }
        Ok(())
    }

    /// Where the record breaks the writers' contract,
    /// protocol/schemas/mail-message.schema.json. Readers still show such a
    /// message (mail is never made invisible); writers refuse it and
    /// [`check`] reports it.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.validate().err().into_iter().collect();
        let is_address = |v: &str| crate::address::parse_qualified(v).is_ok();
        for (field, v) in [("from", &self.from), ("to", &self.to)] {
            if !is_address(v) {
                out.push(format!("\"{field}\" is not an address: {v:?}"));
            }
        }
        if clock::parse(&self.timestamp).is_none() {
            out.push(format!(
                "\"timestamp\" is not an RFC 3339 time: {:?}",
                self.timestamp
            ));
        }
        if !PRIORITIES.contains(&self.priority.as_str()) {
            out.push(format!(
                "\"priority\" is {:?}, not one of {}",
                self.priority,
                PRIORITIES.join(", ")
            ));
        }
        let mut k = self.kind.bytes();
        if !(k.next().is_some_and(|b| b.is_ascii_lowercase())
            && k.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'))
        {
            out.push(format!(
                "\"type\" is {:?}: use lowercase letters, digits, '_' or '-'",
                self.kind
            ));
        }
        for flag in ["read", "pinned", "wisp"] {
            if self.extra.get(flag).is_some_and(|v| !v.is_boolean()) {
                out.push(format!("\"{flag}\" is not true or false"));
            }
        }
        if let Some(d) = self.extra.get("delivery")
            && !matches!(d.as_str(), Some("queue" | "interrupt"))
        {
            out.push("\"delivery\" is not \"queue\" or \"interrupt\"".to_string());
        }
        if let Some(cc) = self.extra.get("cc")
            && !cc
                .as_array()
                .is_some_and(|a| a.iter().all(|v| v.as_str().is_some_and(is_address)))
        {
            out.push("\"cc\" is not a list of addresses".to_string());
        }
        if self.extra.get("handoff").is_some_and(|v| !v.is_object()) {
            out.push("\"handoff\" is not an object".to_string());
        }
        // Lifecycle fields (merged, merge_failed, landed, escalation): the
        // Witness acts on `polecat`, so a bad one is caught here, not there.
        type Check = fn(&serde_json::Value) -> bool;
        let address: Check = |v| v.as_str().is_some_and(|a| a.parse::<Address>().is_ok());
        let sha: Check = |v| {
            v.as_str().is_some_and(|s| {
                (7..=64).contains(&s.len())
                    && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
        };
        let string: Check = serde_json::Value::is_string;
        let optional: Check = |v| v.is_string() || v.is_null();
        let sha_text = "a commit id (7 to 64 hex digits)";
        for (key, valid, what) in [
            ("polecat", address, "an address"),
            ("sha", sha, sha_text),
            ("tip", sha, sha_text),
            ("issue", optional, "a string or null"),
            ("branch", string, "a string"),
            ("entry", string, "a string"),
            ("by", string, "a string"),
        ] {
            if self.extra.get(key).is_some_and(|v| !valid(v)) {
                out.push(format!("\"{key}\" is not {what}"));
            }
        }
        out
    }

    /// The compact JSON line, refused when over [`MAX_RECORD_BYTES`].
    pub fn to_line(&self) -> Result<Vec<u8>> {
        let line = serde_json::to_vec(self).map_err(|e| Error::invalid(e.to_string()))?;
        if line.len() > MAX_RECORD_BYTES {
            return Err(Error::invalid(format!(
                "message to {} is {} bytes as JSON; the limit is {MAX_RECORD_BYTES} (put long text in a file and mail its path)",
                self.to,
                line.len()
            )));
        }
        Ok(line)
    }
}

/// Who is acting: `--as`, else `GT_ADDRESS`, else the agent home the current
/// directory is in, else `overseer` (the human operator).
pub fn identity(town: &Town, as_: Option<&str>) -> Result<Address> {
    match as_ {
        Some("self") => town.resolve("self", Bare::Address).map(|h| h.address),
        Some(a) if a.contains(':') => {
            let fed = crate::federation::Federation::load(town)?;
            identity(
                town,
                Some(fed.local_part(a).map_err(|e| e.context("--as"))?),
            )
        }
        Some(a) => a.parse().map_err(|e: Error| e.context("--as")),
        None => Ok(town.whoami()?.address),
    }
}

/// A message ready to append: its inbox and its JSON line.
#[derive(Debug)]
pub struct Outgoing {
    pub inbox: PathBuf,
    pub line: Vec<u8>,
}

/// Check a message for sending: resolve `to` (`self`, aliases, did-you-mean)
/// and rewrite it to the canonical address, then refuse it if it breaks the
/// record contract ([`Message::problems`]) or the size limit.
pub fn prepare(town: &Town, m: &mut Message) -> Result<Outgoing> {
    let home = town.resolve(m.recipient(), Bare::Address)?;
    m.to = home.address.to_string();
    if let Some(p) = m.problems().into_iter().next() {
        return Err(Error::invalid(format!("message {}: {p}", m.id)));
    }
    Ok(Outgoing {
        inbox: home.inbox(),
        line: m.to_line()?,
    })
}

/// Append prepared messages: one locked append (one `write`) per inbox, in the
/// order given.
pub fn post_prepared(out: Vec<Outgoing>, durability: Durability) -> Result<()> {
    let mut by_inbox: BTreeMap<PathBuf, Vec<Vec<u8>>> = BTreeMap::new();
    for o in out {
        by_inbox.entry(o.inbox).or_default().push(o.line);
    }
    for (inbox, lines) in by_inbox {
        if let Some(dir) = inbox.parent() {
            fsio::ensure_dir(dir)?;
        }
        fsio::append_lines(&inbox, &lines, durability)?;
    }
    Ok(())
}

/// [`prepare`] every message, then [`post_prepared`]: a refused message means
/// nothing was written at all.
pub fn post(town: &Town, messages: &mut [Message], durability: Durability) -> Result<()> {
    let out = messages
        .iter_mut()
        .map(|m| prepare(town, m))
        .collect::<Result<Vec<_>>>()?;
    post_prepared(out, durability)
}

/// Find message `id` in `home`'s inbox, then in its archive.
pub fn find(home: &Home, id: &str) -> Result<Option<Message>> {
    let mut files = vec![home.inbox()];
    files.extend(archive::files(home)?);
    for path in files {
        let mut records = fsio::Records::<Message>::open(&path, fsio::Cursor::default())?;
        while let Some(e) = records.next_entry()? {
            if let fsio::Entry::Record { value, .. } = e
                && value.id == id
            {
                return Ok(Some(value));
            }
        }
    }
    Ok(None)
}

/// Whether message `id` is in the mailbox (inbox or archive) of address `to`:
/// a follow-up retried after a kill skips the mail its first run delivered.
pub fn delivered(town: &Town, to: &str, id: &str) -> bool {
    town.resolve(to, Bare::Address)
        .and_then(|home| find(&home, id))
        .is_ok_and(|m| m.is_some())
}

/// Problems in `home`'s mail files, each as `path:line: reason`: lines that are
/// not JSON or not a valid record, over-long lines, and a torn last line (a
/// killed writer, or a write in progress). For `gt doctor` and `gt mail check`.
pub fn check(home: &Home) -> Result<Vec<BadLine>> {
    let mut out = Vec::new();
    check_messages(&home.inbox(), &mut out)?;
    for path in archive::files(home)? {
        check_messages(&path, &mut out)?;
    }
    for path in reader::mark_files(home)? {
        check_file::<reader::Mark>(&path, &mut out, |m| {
            let p = m.problems();
            (!p.is_empty()).then(|| format!("breaks the mail-mark schema ({})", p.join("; ")))
        })?;
    }
    Ok(out)
}

fn check_messages(path: &Path, out: &mut Vec<BadLine>) -> Result<()> {
    check_file::<Message>(path, out, |m| match m.validate() {
        Err(e) => Some(format!("not a valid record ({e})")),
        Ok(()) => {
            let p = m.problems();
            (!p.is_empty()).then(|| format!("breaks the mail-message schema ({})", p.join("; ")))
        }
    })
}

fn check_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    out: &mut Vec<BadLine>,
    invalid: impl Fn(&T) -> Option<String>,
) -> Result<()> {
    let mut records = fsio::Records::<T>::open(path, fsio::Cursor::default())?;
    let bad = |line, offset, reason| BadLine {
        path: path.to_path_buf(),
        line,
        offset,
        reason,
    };
    while let Some(e) = records.next_entry()? {
        match e {
            fsio::Entry::Record {
                line,
                offset,
                value,
            } => {
                // Blank lines are skipped before an entry, so the cursor is now
                // exactly at the end of this line.
                let len = records.cursor().offset - offset - 1;
                if len > MAX_RECORD_BYTES as u64 {
                    out.push(bad(
                        line,
                        offset,
                        format!("line is {len} bytes, over the {MAX_RECORD_BYTES}-byte limit"),
                    ));
                }
                if let Some(reason) = invalid(&value) {
                    out.push(bad(line, offset, reason));
                }
            }
            fsio::Entry::Bad(b) => out.push(b),
        }
    }
    if records.in_flight() {
        let c = records.cursor();
        out.push(bad(
            c.line,
            c.offset,
            "incomplete last line (a killed writer's torn line, or a write in progress)"
                .to_string(),
        ));
    }
    Ok(())
}
