//! Read state (protocol/mail.md, "Read state"). A reader of an inbox — its
//! owner, or a named watcher — records the ids it has processed in an
//! append-only *marks* file; a message is pending for that reader until its id
//! is marked. The truth is those two files and nothing else: a shell marks mail
//! read with one `printf`.
//!
//! To stay O(new messages), each reader keeps a *cursor* file, a cache it can
//! always rebuild: how far it has read both files, a fingerprint of each
//! (device, inode, a hash of the bytes just before the offset) and the pending
//! ids with their offsets. If either file was replaced (an editor's rename, an
//! archive), cut, or edited near the cursor, or a cached offset no longer holds
//! the id it should, the reader rebuilds from the two files: a read message
//! never turns unread and an unread one never goes missing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::check_name;
use crate::clock;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, BadLine, Cursor, Durability, Entry, Records};
use crate::home::Home;
use crate::record::Extra;

use super::Message;

/// The owner's marks: `mail/read.jsonl`.
pub const OWNER_MARKS: &str = "read.jsonl";
/// Watchers' marks and cursors live in `mail/watch/`.
pub const WATCH_DIR: &str = "watch";

/// One line of a marks file: `{"id":"msg-...","state":"read","at":"..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mark {
    pub id: String,
    /// `read` or `acked` (a watcher writes `emitted`); any value marks the
    /// message processed.
    #[serde(default = "default_state")]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The states a writer may use.
pub const STATES: &[&str] = &["read", "acked", "emitted"];

impl Mark {
    /// Where the line breaks protocol/schemas/mail-mark.schema.json. Readers
    /// still count any mark with an id.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.id.is_empty() {
            out.push("\"id\" is empty".to_string());
        }
        if !STATES.contains(&self.state.as_str()) {
            out.push(format!(
                "\"state\" is {:?}, not one of {}",
                self.state,
                STATES.join(", ")
            ));
        }
        if self
            .at
            .as_deref()
            .is_some_and(|t| clock::parse(t).is_none())
        {
            out.push("\"at\" is not an RFC 3339 time".to_string());
        }
        out
    }
}

fn default_state() -> String {
    "read".to_string()
}

/// What a reader needs of a message line, accepting exactly the lines
/// [`Message`] accepts but without building it (no allocation but the id): a
/// rebuild over a million lines stays fast.
#[derive(Deserialize)]
struct MessageShape {
    id: String,
    #[serde(rename = "from")]
    _from: Str,
    #[serde(rename = "to")]
    _to: Str,
    #[serde(rename = "subject")]
    _subject: Str,
    #[serde(rename = "body")]
    _body: Str,
    #[serde(rename = "timestamp")]
    _timestamp: Str,
    #[serde(rename = "priority", default)]
    _priority: Str,
    #[serde(rename = "type", default)]
    _kind: Str,
    #[serde(rename = "thread_id", default)]
    _thread_id: Option<Str>,
    #[serde(rename = "reply_to", default)]
    _reply_to: Option<Str>,
    #[serde(rename = "generation", default)]
    _generation: Option<u64>,
}

/// [`Mark`] the same way.
#[derive(Deserialize)]
struct MarkShape {
    id: String,
    #[serde(rename = "state", default)]
    _state: Str,
    #[serde(rename = "at", default)]
    _at: Option<Str>,
}

/// A JSON string, checked and dropped.
#[derive(Default)]
struct Str;

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Str, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> std::result::Result<Str, E> {
                Ok(Str)
            }
        }
        d.deserialize_str(V)
    }
}

/// A reader's view of one inbox.
#[derive(Debug, Clone)]
pub struct Reader {
    pub inbox: PathBuf,
    pub marks: PathBuf,
    pub cursor: PathBuf,
}

/// A pending message and where it is.
#[derive(Debug, Clone)]
pub struct Pending {
    pub line: u64,
    pub offset: u64,
    pub message: Message,
}

/// What [`Reader::pending`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Pending messages in inbox order.
    pub messages: Vec<Pending>,
    /// Bad lines among the lines read this time (each reported once per reader).
    pub bad: Vec<BadLine>,
}

const CURSOR_VERSION: u32 = 1;
/// How many bytes before an offset its fingerprint covers.
const TAIL: u64 = 256;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Pos {
    dev: u64,
    ino: u64,
    offset: u64,
    line: u64,
    tail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Slot {
    id: String,
    offset: u64,
    line: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct CursorFile {
    version: u32,
    inbox: Pos,
    marks: Pos,
    pending: Vec<Slot>,
}

impl Reader {
    /// The home's owner: marks in `mail/read.jsonl`.
    pub fn owner(home: &Home) -> Reader {
        let dir = home.mail_dir();
        Reader {
            inbox: home.inbox(),
            marks: dir.join(OWNER_MARKS),
            cursor: dir.join("read.cursor.json"),
        }
    }

    /// Watcher `name` (a strict name): marks in `mail/watch/<name>.jsonl`.
    pub fn watcher(home: &Home, name: &str) -> Result<Reader> {
        check_name("watcher", name)?;
        let dir = home.mail_dir().join(WATCH_DIR);
        Ok(Reader {
            inbox: home.inbox(),
            marks: dir.join(format!("{name}.jsonl")),
            cursor: dir.join(format!("{name}.cursor.json")),
        })
    }

    /// Messages not yet marked, reading only what was appended since last time.
    pub fn pending(&self) -> Result<Scan> {
        self.pending_then(|_| Ok(())).map(|(scan, ())| scan)
    }

    /// [`Reader::pending`] for a look only (`gt status`): the cursor is not
    /// moved, so bad lines are still reported to the reader that acts.
    pub fn peek(&self) -> Result<Scan> {
        match self.scan(false)? {
            Some((scan, _)) => Ok(scan),
            None => Ok(self
                .scan(true)?
                .expect("a rebuild never asks for another")
                .0),
        }
    }

    /// [`Reader::pending`], running `f` on the result before the cursor is
    /// saved (a watcher prints first: the cursor write is off its latency path).
    pub fn pending_then<R>(&self, f: impl FnOnce(&Scan) -> Result<R>) -> Result<(Scan, R)> {
        let (scan, save) = match self.scan(false)? {
            Some(s) => s,
            None => self.scan(true)?.expect("a rebuild never asks for another"),
        };
        let r = f(&scan)?;
        if let Some(cur) = save
            && let Err(e) = self.save_cursor(&cur)
        {
            // Only a cache: a reader without write access (another user's
            // inbox, a read-only copy) still reads, at full cost each time.
            tracing::debug!("cursor not saved: {e}");
        }
        Ok((scan, r))
    }

    /// Mark `ids` processed with `state`: one locked append.
    pub fn mark(&self, ids: &[&str], state: &str) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let at = clock::now_string();
        let lines = ids
            .iter()
            .map(|id| {
                serde_json::to_vec(&Mark {
                    id: id.to_string(),
                    state: state.to_string(),
                    at: Some(at.clone()),
                    extra: Extra::new(),
                })
                .map_err(|e| Error::invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(dir) = self.marks.parent() {
            fsio::ensure_dir(dir)?;
        }
        fsio::append_lines(&self.marks, &lines, Durability::from_env())?;
        Ok(())
    }

    /// Every mark: id -> state.
    pub fn all_marks(&self) -> Result<HashMap<String, String>> {
        load_marks(&self.marks)
    }

    /// One pass, and the cursor to save if it changed; `None` when the cache
    /// turned out stale mid-way (never when `rebuild`).
    fn scan(&self, rebuild: bool) -> Result<Option<(Scan, Option<CursorFile>)>> {
        let old = if rebuild { None } else { self.load_cursor() };
        let marks = open_opt(&self.marks)?;
        let inbox = open_opt(&self.inbox)?;
        let old = old.filter(|c| {
            c.version == CURSOR_VERSION
                && still_valid(&c.marks, marks.as_ref())
                && still_valid(&c.inbox, inbox.as_ref())
        });
        if old.is_none() {
            tracing::debug!(
                "{}: reading from the start (no valid cursor)",
                self.cursor.display()
            );
        }
        let mut cur = old.clone().unwrap_or_default();
        cur.version = CURSOR_VERSION;

        // Marks first, then the inbox: a mark is only ever written for a message
        // already in the inbox, so every mark read here names a message that is
        // either pending already or among the lines read next.
        let mut marked = HashSet::new();
        if let Some(file) = &marks {
            let mut records = Records::<MarkShape>::from_file(
                file.try_clone().at(&self.marks)?,
                &self.marks,
                at(&cur.marks),
            )?;
            while let Some(e) = records.next_entry()? {
                if let Entry::Record { value, .. } = e {
                    marked.insert(value.id);
                }
            }
            cur.marks = pos(file, &self.marks, records.cursor())?;
        }
        cur.pending.retain(|s| !marked.contains(&s.id));

        let mut bad = Vec::new();
        if let Some(file) = &inbox {
            let mut known: HashSet<String> = cur.pending.iter().map(|s| s.id.clone()).collect();
            let mut records = Records::<MessageShape>::from_file(
                file.try_clone().at(&self.inbox)?,
                &self.inbox,
                at(&cur.inbox),
            )?;
            while let Some(e) = records.next_entry()? {
                match e {
                    Entry::Record {
                        line,
                        offset,
                        value,
                    } if value.id.is_empty() => bad.push(BadLine {
                        path: self.inbox.clone(),
                        line,
                        offset,
                        reason: "not a valid record (\"id\" is empty)".to_string(),
                    }),
                    Entry::Record {
                        line,
                        offset,
                        value,
                    } => {
                        if !marked.contains(&value.id) && known.insert(value.id.clone()) {
                            cur.pending.push(Slot {
                                id: value.id,
                                offset,
                                line,
                            });
                        }
                    }
                    Entry::Bad(b) => bad.push(b),
                }
            }
            cur.inbox = pos(file, &self.inbox, records.cursor())?;
        }

        let mut messages = Vec::with_capacity(cur.pending.len());
        let mut gone = Vec::new();
        for slot in &cur.pending {
            match inbox.as_ref().and_then(|f| line_at(f, slot.offset)) {
                Some(message) if message.id == slot.id => messages.push(Pending {
                    line: slot.line,
                    offset: slot.offset,
                    message,
                }),
                // Edited in place under our cursor: start over from the files.
                _ if !rebuild => return Ok(None),
                // Changed while we read it: it is read again next time.
                _ => gone.push(slot.id.clone()),
            }
        }
        cur.pending.retain(|s| !gone.contains(&s.id));
        let save = (old.as_ref() != Some(&cur)).then_some(cur);
        Ok(Some((Scan { messages, bad }, save)))
    }

    fn load_cursor(&self) -> Option<CursorFile> {
        let bytes = crate::confine::read(&self.cursor).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save_cursor(&self, cur: &CursorFile) -> Result<()> {
        if let Some(dir) = self.cursor.parent() {
            fsio::ensure_dir(dir)?;
        }
        // A cache: no fsync, it is validated on every read and rebuilt if stale.
        fsio::write_atomic_with(
            &self.cursor,
            &fsio::to_json_bytes(cur)?,
            Durability::Buffered,
        )
    }
}

/// The marks files of `home`: the owner's and each watcher's.
pub fn mark_files(home: &Home) -> Result<Vec<PathBuf>> {
    let dir = home.mail_dir();
    let mut out = Vec::new();
    if dir.join(OWNER_MARKS).exists() {
        out.push(dir.join(OWNER_MARKS));
    }
    let watch = dir.join(WATCH_DIR);
    match crate::confine::read_dir(&watch) {
        Ok(names) => {
            let mut w: Vec<PathBuf> = names
                .into_iter()
                .map(|n| watch.join(n))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            w.sort();
            out.extend(w);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&watch, e)),
    }
    Ok(out)
}

/// Every mark in the marks file `path`: id -> state (`acked` wins over other
/// states). A missing file has none.
pub fn load_marks(path: &Path) -> Result<HashMap<String, String>> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut records = Records::<Mark>::open(path, Cursor::default())?;
    while let Some(e) = records.next_entry()? {
        if let Entry::Record { value, .. } = e {
            let slot = out.entry(value.id).or_default();
            if slot.as_str() != "acked" {
                *slot = value.state;
            }
        }
    }
    Ok(out)
}

fn open_opt(path: &Path) -> Result<Option<File>> {
    match crate::confine::open(path, nix::fcntl::OFlag::O_RDONLY, 0) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn at(p: &Pos) -> Cursor {
    Cursor {
        offset: p.offset,
        line: p.line.max(1),
    }
}

fn pos(file: &File, path: &Path, c: Cursor) -> Result<Pos> {
    let meta = file.metadata().at(path)?;
    Ok(Pos {
        dev: meta.dev(),
        ino: meta.ino(),
        offset: c.offset,
        line: c.line,
        tail: tail_hash(file, c.offset).at(path)?,
    })
}

/// Whether a cached position still describes `file`: same file, not shorter,
/// and the bytes just before the offset unchanged.
fn still_valid(p: &Pos, file: Option<&File>) -> bool {
    let Some(file) = file else {
        return p.ino == 0 && p.offset == 0;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    meta.dev() == p.dev
        && meta.ino() == p.ino
        && meta.len() >= p.offset
        && tail_hash(file, p.offset).is_ok_and(|h| h == p.tail)
}

/// FNV-1a 64 of the up to [`TAIL`] bytes before `offset`, in hex.
fn tail_hash(file: &File, offset: u64) -> io::Result<String> {
    let start = offset.saturating_sub(TAIL);
    let mut buf = vec![0u8; (offset - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in buf {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    Ok(format!("{h:016x}"))
}

/// The message on the line starting at `offset`, if it parses.
fn line_at(file: &File, offset: u64) -> Option<Message> {
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut chunk, at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..i]);
            break;
        }
        line.extend_from_slice(&chunk[..n]);
        at += n as u64;
        if line.len() > 16 * super::MAX_RECORD_BYTES {
            return None;
        }
    }
    serde_json::from_slice(&line).ok()
}
