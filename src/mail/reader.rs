//! Read state (protocol/mail.md, "Read state"). A reader of an inbox — its
//! owner, or a named watcher — records the ids it has processed in an
//! append-only *marks* file; a message is pending for that reader until its id
//! is marked. The truth is those two files and nothing else: a shell marks mail
//! read with one `printf`.
//!
//! To stay O(new messages), each reader keeps a *cursor* file, a cache it can
//! always rebuild: how far it has read both files, a fingerprint of each
//! (device, inode, a hash of the bytes just before the offset) and where the
//! pending messages are, as runs of adjacent lines with a hash of their bytes.
//! A read costs one `pread` per run (runs close together share one, and a long
//! one is read 256 KiB at a time), however many messages they hold. If either
//! file was replaced (an editor's rename, an archive), cut, or edited near the
//! cursor, or a run's bytes changed, the reader rebuilds from the two files: a
//! read message never turns unread and an unread one never goes missing.

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

/// A message line's head: the fields a listing shows, as `K`, the rest checked
/// and dropped. It accepts exactly the lines [`Message`] accepts without
/// building one: a rebuild over a million lines allocates only the ids, and
/// a listing of thousands skips their bodies.
#[derive(Deserialize)]
pub struct Head<K> {
    pub id: String,
    pub from: K,
    #[serde(rename = "to")]
    _to: Str,
    pub subject: K,
    #[serde(rename = "body")]
    _body: Str,
    pub timestamp: K,
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

/// What `gt inbox` lists of a message.
pub type Summary = Head<String>;

/// A line checked to be a message, only its id kept.
type MessageShape = Head<Str>;

/// What a reader builds of each pending line.
pub trait Parse: Sized {
    /// `None` when `text` is not a message.
    fn parse(text: &[u8]) -> Option<Self>;
    fn id(&self) -> &str;
}

impl Parse for Message {
    fn parse(text: &[u8]) -> Option<Self> {
        crate::fsio::parse_line(text).ok()
    }
    fn id(&self) -> &str {
        &self.id
    }
}

impl<K: serde::de::DeserializeOwned> Parse for Head<K> {
    fn parse(text: &[u8]) -> Option<Self> {
        crate::fsio::parse_line(text).ok()
    }
    fn id(&self) -> &str {
        &self.id
    }
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
pub struct Pending<T = Message> {
    pub line: u64,
    pub offset: u64,
    pub message: T,
}

/// What [`Reader::pending`] found.
#[derive(Debug)]
pub struct Scan<T = Message> {
    /// Pending messages in inbox order.
    pub messages: Vec<Pending<T>>,
    /// Bad lines among the lines read this time (each reported once per reader).
    pub bad: Vec<BadLine>,
}

const CURSOR_VERSION: u32 = 2;
/// How many bytes before an offset its fingerprint covers.
const TAIL: u64 = 256;
/// Runs less than this far apart are read with one `pread` (the bytes between
/// cost less than another system call).
const GAP: u64 = 64 * 1024;
/// A read's buffer: many pending messages stream through it instead of all
/// being held at once (fewer pages to fault in).
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Pos {
    dev: u64,
    ino: u64,
    offset: u64,
    line: u64,
    tail: String,
}

/// Adjacent inbox lines, each a pending message: `count` lines from line
/// `line` at byte `offset`, `len` bytes through the last `\n`, whose ids
/// (each followed by `\n`) hash (FNV-1a 64) to `hash`. An unread message
/// edited in place is shown as it now is; one whose id or length changed
/// breaks its run, and the reader rebuilds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    offset: u64,
    line: u64,
    len: u64,
    count: u64,
    hash: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct CursorFile {
    version: u32,
    inbox: Pos,
    marks: Pos,
    pending: Vec<Run>,
}

/// Where a pending line is, while a scan runs.
#[derive(Clone, Copy)]
struct Slot {
    offset: u64,
    line: u64,
    len: u64,
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
        self.pending_as()
    }

    /// [`Reader::pending`], building `T` of each message (a [`Summary`] for a
    /// listing).
    pub fn pending_as<T: Parse>(&self) -> Result<Scan<T>> {
        let (scan, save) = self.read()?;
        self.save(save);
        Ok(scan)
    }

    /// [`Reader::pending`] for a look only (`gt status`): the cursor is not
    /// moved, so bad lines are still reported to the reader that acts.
    pub fn peek(&self) -> Result<Scan> {
        self.read().map(|(scan, _)| scan)
    }

    /// [`Reader::pending`], running `f` on the result before the cursor is
    /// saved (a watcher prints first: the cursor write is off its latency path).
    pub fn pending_then<R>(&self, f: impl FnOnce(&Scan) -> Result<R>) -> Result<(Scan, R)> {
        let (scan, save) = self.read()?;
        let r = f(&scan)?;
        self.save(save);
        Ok((scan, r))
    }

    /// One read, from the cursor or, when that turns out stale, from the start.
    fn read<T: Parse>(&self) -> Result<(Scan<T>, Option<CursorFile>)> {
        match self.scan(false)? {
            Some(s) => Ok(s),
            None => Ok(self.scan(true)?.expect("a rebuild never asks for another")),
        }
    }

    fn save(&self, cursor: Option<CursorFile>) {
        if let Some(cur) = cursor
            && let Err(e) = self.save_cursor(&cur)
        {
            // Only a cache: a reader without write access (another user's
            // inbox, a read-only copy) still reads, at full cost each time.
            tracing::debug!("cursor not saved: {e}");
        }
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
    fn scan<T: Parse>(&self, rebuild: bool) -> Result<Option<(Scan<T>, Option<CursorFile>)>> {
        let old = if rebuild { None } else { self.load_cursor() };
        let marks = open_opt(&self.marks)?;
        let inbox = open_opt(&self.inbox)?;
        let old = old.filter(|c| {
            c.version == CURSOR_VERSION
                && in_order(&c.pending, c.inbox.offset)
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
        let mut marked = Ids::default();
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

        // The pending messages known so far, read in as few `pread`s as their
        // runs allow. A run whose bytes changed was edited in place: start over.
        // A run's ids are distinct (it was built from a scan that dropped
        // repeats, and a changed id breaks its hash): only new marks remove one.
        let known_count: u64 = cur.pending.iter().map(|r| r.count).sum();
        let mut slots: Vec<(Slot, T)> = Vec::with_capacity(known_count as usize);
        if !cur.pending.is_empty() {
            let Some(file) = &inbox else {
                return Ok(None);
            };
            let runs: Vec<(u64, u64)> = cur.pending.iter().map(|r| (r.offset, r.len)).collect();
            // What each run turned out to hold: bytes, lines, hash of ids.
            let mut found = vec![(0u64, 0u64, FNV_START); runs.len()];
            let read = each_line(file, &runs, |i, text| {
                let (bytes, lines, ids) = &mut found[i];
                let Some(message) = T::parse(text) else {
                    return false;
                };
                *ids = fnv_on(fnv_on(*ids, message.id().as_bytes()), b"\n");
                let len = text.len() as u64;
                if !marked.contains(message.id()) {
                    let slot = Slot {
                        offset: runs[i].0 + *bytes,
                        line: cur.pending[i].line + *lines,
                        len,
                    };
                    slots.push((slot, message));
                }
                *bytes += len;
                *lines += 1;
                true
            })
            .at(&self.inbox)?;
            let same = |(run, (bytes, lines, ids)): (&Run, &(u64, u64, u64))| {
                *bytes == run.len && *lines == run.count && hex(*ids) == run.hash
            };
            if !read || !cur.pending.iter().zip(&found).all(same) {
                return Ok(None);
            }
        }

        // The known messages still pending; any after these are new.
        let kept = slots.len();
        let mut bad = Vec::new();
        if let Some(file) = &inbox {
            let mut records = Records::<MessageShape>::from_file(
                file.try_clone().at(&self.inbox)?,
                &self.inbox,
                at(&cur.inbox),
            )?;
            // The ids already pending, gathered at the first new line (most
            // reads have none), and the new ones.
            let mut pending: Option<Ids<&str>> = None;
            let mut seen = Ids::default();
            let mut fresh: Vec<(Slot, String)> = Vec::new();
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
                        let pending = pending
                            .get_or_insert_with(|| slots.iter().map(|(_, m)| m.id()).collect());
                        if !marked.contains(&value.id)
                            && !pending.contains(value.id.as_str())
                            && seen.insert(value.id.clone())
                        {
                            let len = records.cursor().offset - offset;
                            fresh.push((Slot { offset, line, len }, value.id));
                        }
                    }
                    Entry::Bad(b) => bad.push(b),
                }
            }
            cur.inbox = pos(file, &self.inbox, records.cursor())?;
            // The new pending lines' bytes, run by run (they were just read
            // line by line; this is from the page cache).
            let runs = runs_of(fresh.iter().map(|(s, id)| (s, id.as_str())));
            let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.offset, r.len)).collect();
            slots.reserve(fresh.len());
            // Run i's lines are fresh[first[i]..first[i] + count], in order.
            let first: Vec<usize> = runs
                .iter()
                .scan(0, |n, r| Some(std::mem::replace(n, *n + r.count as usize)))
                .collect();
            let mut next = first.clone();
            let read = each_line(file, &spans, |i, text| {
                let k = next[i];
                next[i] += 1;
                let expected = (k < first[i] + runs[i].count as usize).then(|| &fresh[k]);
                match (expected, T::parse(text)) {
                    (Some((slot, id)), Some(message))
                        if message.id() == id && text.len() as u64 == slot.len =>
                    {
                        slots.push((*slot, message));
                        true
                    }
                    // Edited between the two reads: start over, or, if this
                    // is the start-over, it is read again next time.
                    _ => rebuild,
                }
            })
            .at(&self.inbox)?;
            let whole = runs
                .iter()
                .zip(first.iter().zip(&next))
                .all(|(r, (f, n))| n - f == r.count as usize);
            if !(rebuild || (read && whole)) {
                return Ok(None);
            }
        }

        // Unchanged runs are kept, not hashed again.
        if kept as u64 != known_count || slots.len() > kept {
            cur.pending = runs_of(slots.iter().map(|(s, m)| (s, m.id())));
        }
        let messages = slots
            .into_iter()
            .map(|(slot, message)| Pending {
                line: slot.line,
                offset: slot.offset,
                message,
            })
            .collect();
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
    Ok(hex(fnv_on(FNV_START, &buf)))
}

const FNV_START: u64 = 0xcbf29ce484222325;

/// A set of message ids, hashed with FNV-1a: a read hashes every pending id
/// twice, and SipHash's resistance to chosen keys buys nothing for ids in
/// one's own inbox.
type Ids<K = String> = HashSet<K, std::hash::BuildHasherDefault<Fnv>>;

#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv_on(if self.0 == 0 { FNV_START } else { self.0 }, bytes);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of `bytes` continued from `h`.
fn fnv_on(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// The runs that `slots` (in inbox order, with their ids) make: adjacent lines
/// join one run.
fn runs_of<'a>(slots: impl Iterator<Item = (&'a Slot, &'a str)>) -> Vec<Run> {
    let mut runs: Vec<(Run, u64)> = Vec::new();
    for (s, id) in slots {
        match runs.last_mut() {
            Some((r, h)) if r.offset + r.len == s.offset => {
                r.len += s.len;
                r.count += 1;
                *h = fnv_on(fnv_on(*h, id.as_bytes()), b"\n");
            }
            _ => runs.push((
                Run {
                    offset: s.offset,
                    line: s.line,
                    len: s.len,
                    count: 1,
                    hash: String::new(),
                },
                fnv_on(fnv_on(FNV_START, id.as_bytes()), b"\n"),
            )),
        }
    }
    runs.into_iter()
        .map(|(mut r, h)| {
            r.hash = hex(h);
            r
        })
        .collect()
}

/// Whether `runs` are in file order, apart, and before `end`, as a reader
/// writes them (a hand-made cursor that repeats a run would list it twice).
fn in_order(runs: &[Run], end: u64) -> bool {
    let mut from = 0;
    runs.iter().all(|r| {
        let ok = r.offset >= from && r.len > 0 && r.offset + r.len <= end;
        from = r.offset + r.len;
        ok
    })
}

/// Calls `f(i, line)` for each line (with its `\n`) of each `(offset, len)`
/// span `i` (in file order), reading through one buffer of about [`CHUNK`]
/// bytes: spans less than [`GAP`] apart share a `pread`, and a long span is
/// read a chunk at a time instead of all at once. A span cut short by the end
/// of the file yields what is there. Stops, returning false, when `f` does.
fn each_line(
    file: &File,
    spans: &[(u64, u64)],
    mut f: impl FnMut(usize, &[u8]) -> bool,
) -> io::Result<bool> {
    // Where the spans from each one on, less than GAP apart, end: a read
    // never goes past it.
    let mut reach: Vec<u64> = spans.iter().map(|&(o, l)| o + l).collect();
    for i in (0..spans.len().saturating_sub(1)).rev() {
        if spans[i + 1].0 <= reach[i] + GAP {
            reach[i] = reach[i + 1];
        }
    }
    // `mem[..len]` holds the file's bytes from `base`. The memory past `len`
    // is kept: a later read reuses it without zeroing it again.
    let (mut mem, mut len): (Vec<u8>, usize) = (Vec::new(), 0);
    let mut base = 0u64; // the file offset of mem[0]
    for (i, &(offset, span)) in spans.iter().enumerate() {
        let (mut at, end) = (offset, offset + span);
        let mut eof = false;
        while at < end {
            let have = base + len as u64;
            if at < base || at > have {
                // Not in the buffer, nor right after it.
                len = 0;
                base = at;
            }
            let from = (at - base) as usize;
            let upto = (end.min(base + len as u64) - base) as usize;
            let bytes = &mem[from..upto];
            if let Some(n) = memchr::memchr(b'\n', bytes) {
                if !f(i, &bytes[..=n]) {
                    return Ok(false);
                }
                at += n as u64 + 1;
                continue;
            }
            if base + len as u64 >= end || eof {
                // The span ends without a `\n`: cut by its length or the file's.
                if !bytes.is_empty() && !f(i, bytes) {
                    return Ok(false);
                }
                break;
            }
            // Keep the partial line, read on.
            mem.copy_within(from..len, 0);
            len -= from;
            base = at;
            let want = (reach[i] - base).min(CHUNK.max(2 * len) as u64) as usize;
            let want = want.max(len + 1);
            if mem.len() < want {
                mem.resize(want, 0);
            }
            let mut filled = len;
            while filled < want {
                match file.read_at(&mut mem[filled..want], base + filled as u64) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            len = filled;
        }
    }
    Ok(true)
}
