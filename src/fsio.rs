//! The three file primitives every part of the tree is built on
//! (protocol/README.md, "File rules"):
//!
//! * [`append_lines`]: locked append of whole JSON lines;
//! * [`write_atomic`] / [`update_json`]: atomic replace, read-modify-write under a lock;
//! * [`Records`]: a tolerant JSONL reader that never fails a file for one bad line.
//!
//! Locks are `flock(2)` (std `File::lock`), the same lock `flock(1)` takes, always on
//! a sidecar `X.lock` beside `X.json`/`X.jsonl` that is never renamed: a lock on a
//! file that gets renamed over would stay on the old inode.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use nix::fcntl::OFlag;

use crate::confine;
use crate::error::{Error, IoContext, Result};

/// The sidecar lock of a data file: `dir/inbox.jsonl` -> `dir/inbox.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    path.with_extension("lock")
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl std::os::fd::AsFd for Lock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self._file.as_fd()
    }
}

/// Take the exclusive lock on `path` itself (normally a sidecar from [`lock_path`]),
/// creating it if needed. Blocks until the lock is free.
pub fn lock_file(path: &Path) -> Result<Lock> {
    let file = open_lock(path)?;
    file.lock().at(path)?;
    Ok(Lock { _file: file })
}

/// Like [`lock_file`], but returns `None` at once when someone else holds it.
pub fn try_lock_file(path: &Path) -> Result<Option<Lock>> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Lock { _file: file })),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// Opened read-only, as `flock(1)` does: `flock(2)` needs no write access, and a
/// lock file another user created (mode 0644) must not lock us out.
fn open_lock(path: &Path) -> Result<File> {
    confine::open(path, OFlag::O_RDONLY | OFlag::O_CREAT, 0o666).at(path)
}

/// Take the sidecar lock of a data file.
pub fn lock_for(data: &Path) -> Result<Lock> {
    lock_file(&lock_path(data))
}

/// How hard a write tries to reach the disk before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the page cache: survives `kill -9` of any process, not power loss.
    #[default]
    Buffered,
    /// `fdatasync` before returning: survives power loss, ~100x slower.
    Sync,
}

impl Durability {
    /// `GT_DURABLE=1` selects [`Durability::Sync`].
    pub fn from_env() -> Self {
        match std::env::var_os("GT_DURABLE") {
            Some(v) if v == "1" || v == "true" => Durability::Sync,
            _ => Durability::Buffered,
        }
    }
}

/// Append complete lines to `path` under its sidecar lock. Each element of `lines`
/// is one record without its trailing newline; it must not contain `\n`.
///
/// All lines go out in one `write`. A torn last line left by a killed writer or a
/// hand edit is closed with `\n` first, so it stays one bad line and never glues
/// onto ours. If the write fails (disk full), the file is cut back to its old
/// length: no torn tail of ours is left behind. Returns the offset of the first
/// appended line.
pub fn append_lines<L: AsRef<[u8]>>(
    path: &Path,
    lines: &[L],
    durability: Durability,
) -> Result<u64> {
    let buf = encode_lines(path, lines)?;
    let _lock = lock_for(path)?;
    // Opened after the lock is held: a rotation that renamed the file away while we
    // waited is not written to.
    let mut file = open_append(path)?;
    append_locked(path, &mut file, buf, durability, None).map(|(start, _)| start)
}

/// A writer that appends to one file many times (a daemon, a benchmark): it keeps
/// the sidecar lock file and the data file open between appends, and under the
/// lock checks that the path still names the open file, reopening after a
/// rotation or an editor's rename. Same guarantees as [`append_lines`].
#[derive(Debug)]
pub struct Appender {
    path: PathBuf,
    lock_path: PathBuf,
    lock: File,
    /// The open file and where our last append ended.
    file: Option<(File, u64)>,
    durability: Durability,
}

impl Appender {
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        let lock_path = lock_path(path);
        Ok(Appender {
            path: path.to_path_buf(),
            lock: open_lock(&lock_path)?,
            lock_path,
            file: None,
            durability,
        })
    }

    /// [`append_lines`] through the kept descriptors.
    pub fn append<L: AsRef<[u8]>>(&mut self, lines: &[L]) -> Result<u64> {
        let buf = encode_lines(&self.path, lines)?;
        self.lock.lock().at(&self.lock_path)?;
        let result = self.append_held(buf);
        self.lock.unlock().at(&self.lock_path)?;
        result
    }

    fn append_held(&mut self, buf: Vec<u8>) -> Result<u64> {
        if self.file.is_none() {
            self.file = Some((open_append(&self.path)?, u64::MAX));
        }
        let (file, end) = self.file.as_mut().expect("just opened");
        let r = append_locked(&self.path, file, buf, self.durability, Some(*end));
        file.unlock().at(&self.path)?;
        let (start, new_end) = r?;
        *end = new_end;
        Ok(start)
    }
}

fn encode_lines<L: AsRef<[u8]>>(path: &Path, lines: &[L]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum::<usize>() + 1);
    for line in lines {
        let line = line.as_ref();
        if line.contains(&b'\n') {
            return Err(Error::invalid(format!(
                "{}: refusing to append a record that contains a newline",
                path.display()
            )));
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    Ok(buf)
}

fn open_append(path: &Path) -> Result<File> {
    confine::open(
        path,
        OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CREAT,
        0o666,
    )
    .at(path)
}

/// Open `path` for appending, creating it (a session's log), confined to the town.
pub fn open_log(path: &Path) -> Result<File> {
    confine::open(
        path,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        0o666,
    )
    .at(path)
}

/// Take the courtesy lock on `file` and make sure `path` still names it,
/// reopening until it does: a rotation renames the file away under the sidecar
/// lock, and a hand edit done under `flock <file>` (the wrong lock) may rename
/// a new file over it while we wait. Returns the file's length and whether it
/// was reopened.
fn lock_current(path: &Path, file: &mut File) -> Result<(u64, bool)> {
    use std::os::unix::fs::MetadataExt;
    let mut reopened = false;
    loop {
        file.lock().at(path)?;
        let open = file.metadata().at(path)?;
        match confine::metadata(path) {
            Ok(m) if m.ino() == open.ino() && m.dev() == open.dev() => {
                return Ok((open.len(), reopened));
            }
            _ => {
                file.unlock().at(path)?;
                *file = open_append(path)?;
                reopened = true;
            }
        }
    }
}

/// The append itself; the caller holds the sidecar lock. `known_end` is where
/// this caller's last append to the same open file ended: if the file still
/// ends there, it ends in `\n` and needs no look. Leaves `file` locked (the
/// courtesy lock); returns where the new lines start and end.
fn append_locked(
    path: &Path,
    file: &mut File,
    mut buf: Vec<u8>,
    durability: Durability,
    known_end: Option<u64>,
) -> Result<(u64, u64)> {
    // Also honour `flock inbox.jsonl ...`, the lock a shell user is likely to take
    // by mistake. Order is always sidecar, then file.
    let (len, reopened) = lock_current(path, file)?;
    let known_end = if reopened { None } else { known_end };
    let mut start = len;
    if len > 0 && known_end != Some(len) {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1).at(path)?;
        if last[0] != b'\n' {
            buf.insert(0, b'\n');
            start += 1;
        }
    }
    let written = (&*file).write_all(&buf).and_then(|()| match durability {
        Durability::Sync => file.sync_data(),
        Durability::Buffered => Ok(()),
    });
    if let Err(e) = written {
        // Best effort: the disk may refuse even this, and then readers still see
        // only a torn last line, which they treat as in flight.
        let _ = file.set_len(len);
        return Err(Error::io(path, e));
    }
    Ok((start, len + buf.len() as u64))
}

/// Append one record serialized as compact JSON.
pub fn append_json<T: Serialize>(path: &Path, record: &T, durability: Durability) -> Result<u64> {
    let line = serde_json::to_vec(record)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    append_lines(path, &[line], durability)
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Create a fresh temp file `.<name>.tmp.<pid>.<seq>` beside `path`. A name that
/// exists is skipped, not an error: a process killed mid-write leaves its temp
/// file, and a later process can get the same pid (containers restart at low pids).
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..1000 {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = parent(path).join(format!(".{name}.tmp.{pid}.{seq}"));
        match confine::open(
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o666,
        ) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Err(Error::io(path, last.expect("looped")))
}

/// Write `bytes` to a new temp file beside `path` and fsync it, then hand it to
/// `publish` (rename or link into place). The temp file is gone afterwards, and
/// errors name `path`, the file the caller asked for.
fn via_temp<R>(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    publish: impl FnOnce(&Path) -> io::Result<R>,
) -> Result<R> {
    let sync = durability == Durability::Sync;
    let (tmp, mut f) = create_temp(path)?;
    let result = f
        .write_all(bytes)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) })
        .and_then(|()| publish(&tmp));
    // After a rename there is nothing left to remove; after a link or an error
    // there is.
    let _ = confine::remove_file(&tmp);
    let out = result.at(path)?;
    if sync {
        sync_dir(parent(path))?;
    }
    Ok(out)
}

/// Replace `path` atomically with `bytes`: temp file in the same directory, fsync,
/// rename over, fsync the directory. A reader sees the old or the new file, never
/// a mix; a crash leaves at most a `.<name>.tmp.*` file beside it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, Durability::Sync)
}

/// [`write_atomic`]; with [`Durability::Buffered`] nothing is fsynced, which suits
/// caches a reader can rebuild: after a power loss the file may be old, empty or
/// missing, so readers of such a file must validate it.
pub fn write_atomic_with(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    via_temp(path, bytes, durability, |tmp| {
        confine::rename(tmp, path, nix::fcntl::RenameFlags::empty())
    })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    confine::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
        .and_then(|d| d.sync_all())
        .at(dir)
}

/// Pretty JSON with a trailing newline: what every `*.json` file in the tree holds.
pub fn to_json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    v.push(b'\n');
    Ok(v)
}

/// Serialize and [`write_atomic`].
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &to_json_bytes(value)?)
}

/// Read and parse a JSON file; errors name the file, line and column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read(path)?;
    parse_json(path, &bytes)
}

/// Parse JSON read from `path` (named in the error).
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line(),
            e.column(),
            strip_position(&e)
        ))
    })
}

/// serde_json appends " at line L column C"; we print the position ripgrep-style instead.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Read, modify and atomically replace a JSON file under its sidecar lock.
/// `init` supplies the value when the file does not exist yet. If `f` fails,
/// nothing is written.
pub fn update_json<T, R>(
    path: &Path,
    init: impl FnOnce() -> Result<T>,
    f: impl FnOnce(&mut T) -> Result<R>,
) -> Result<R>
where
    T: Serialize + DeserializeOwned,
{
    let _lock = lock_for(path)?;
    update_json_locked(path, init, f)
}

/// [`update_json`] for a caller that already holds the sidecar lock (a second
/// `flock` on it from the same process would wait forever).
pub fn update_json_locked<T, R>(
    path: &Path,
    init: impl FnOnce() -> Result<T>,
    f: impl FnOnce(&mut T) -> Result<R>,
) -> Result<R>
where
    T: Serialize + DeserializeOwned,
{
    let mut value = match confine::read(path) {
        Ok(bytes) => parse_json(path, &bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => init()?,
        Err(e) => return Err(Error::io(path, e)),
    };
    let out = f(&mut value)?;
    write_json(path, &value)?;
    Ok(out)
}

/// Read, modify and atomically replace a line-oriented file (JSONL kept whole,
/// like `.beads/issues.jsonl`) under its sidecar lock. `f` gets every line as raw
/// bytes without its `\n`, including a last line that lacks one (under the lock
/// no cooperating writer is mid-line) and lines that are not UTF-8, so a caller
/// can pass lines it does not understand through verbatim. A missing file reads
/// as no lines. If `f` fails, nothing is written.
pub fn update_lines<R>(path: &Path, f: impl FnOnce(&mut Vec<Vec<u8>>) -> Result<R>) -> Result<R> {
    let _lock = lock_for(path)?;
    let bytes = match confine::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut lines = split_lines(&bytes);
    let out = f(&mut lines)?;
    let mut buf = Vec::with_capacity(bytes.len() + 512);
    for line in &lines {
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    write_atomic(path, &buf)?;
    Ok(out)
}

/// Split file contents into lines without their `\n`; a final unterminated line
/// is kept.
pub fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() && bytes.len() <= 1 {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// A position in a JSONL file: byte offset and the 1-based number of the next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Cursor {
    pub offset: u64,
    pub line: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { offset: 0, line: 1 }
    }
}

/// A line a reader skipped, and why. Displays as `path:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    pub path: PathBuf,
    pub line: u64,
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// One complete line read from a JSONL file.
#[derive(Debug)]
pub enum Entry<T> {
    /// A line that parsed: its 1-based line number, byte offset and value.
    Record { line: u64, offset: u64, value: T },
    /// A complete line that did not parse; readers skip it and report it.
    Bad(BadLine),
}

/// What [`Records::collect_all`] read.
#[derive(Debug)]
pub struct Collected<T> {
    /// Values with their 1-based line numbers.
    pub records: Vec<(u64, T)>,
    pub bad: Vec<BadLine>,
    /// Where a later read picks up.
    pub cursor: Cursor,
}

/// Streaming, tolerant reader of a JSONL file from a [`Cursor`].
///
/// Blank lines are skipped silently; lines that are not valid JSON of type `T`
/// (including invalid UTF-8) come out as [`Entry::Bad`]. A last line without its
/// `\n` is in flight: it is not returned and the cursor stops before it, so the
/// next read (by this reader or a new one) picks it up once its writer finishes.
///
/// CRLF line endings (a file saved by a Windows editor) are tolerated: the `\r`
/// before `\n` is JSON whitespace, so such a line parses as if it had none, and a
/// line holding only `\r` is blank.
pub struct Records<T> {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    cursor: Cursor,
    in_flight: bool,
    truncated: bool,
    buf: Vec<u8>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Records<T> {
    /// Open `path` at `from`. A missing file reads as empty.
    ///
    /// A cursor that no longer points at the start of a line of this file (beyond
    /// its end, or just after a byte other than `\n`) means the file was replaced
    /// since the cursor was taken: archived and begun anew, or rewritten by an
    /// editor. Then [`Records::truncated`] is true and nothing is read, rather than
    /// garbage from the middle of a line; the caller starts over from
    /// `Cursor::default()` (skipping ids it has seen). A replacement that happens
    /// to leave the cursor at a line start cannot be told apart here.
    pub fn open(path: &Path, from: Cursor) -> Result<Self> {
        match confine::open(path, OFlag::O_RDONLY, 0) {
            Ok(f) => Self::from_file(f, path, from),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Self::over(None, path, from, from.offset > 0))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// [`Records::open`] on an already open `file` (named `path` in messages):
    /// for a caller that must know exactly which file (inode) it read.
    pub fn from_file(mut file: File, path: &Path, from: Cursor) -> Result<Self> {
        let mut truncated = false;
        if from.offset > 0 {
            truncated = !starts_line(&file, from.offset).at(path)?;
            file.seek(SeekFrom::Start(from.offset)).at(path)?;
        }
        let reader = (!truncated).then(|| BufReader::with_capacity(64 * 1024, file));
        Ok(Self::over(reader, path, from, truncated))
    }

    fn over(reader: Option<BufReader<File>>, path: &Path, from: Cursor, truncated: bool) -> Self {
        Records {
            path: path.to_path_buf(),
            reader,
            cursor: from,
            in_flight: false,
            truncated,
            buf: Vec::new(),
            _t: std::marker::PhantomData,
        }
    }

    /// Whether the cursor given to [`Records::open`] did not point at a line start
    /// of the file (see there); nothing is read then.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Where the next read starts: after the last complete line seen.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Whether the file ended in an incomplete line (a write in progress, or a
    /// torn line not yet closed by the next locked append).
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Read everything left, splitting values from bad lines.
    pub fn collect_all(mut self) -> Result<Collected<T>> {
        let mut out = Collected {
            records: Vec::new(),
            bad: Vec::new(),
            cursor: self.cursor,
        };
        while let Some(e) = self.next_entry()? {
            match e {
                Entry::Record { line, value, .. } => out.records.push((line, value)),
                Entry::Bad(b) => out.bad.push(b),
            }
        }
        out.cursor = self.cursor;
        Ok(out)
    }

    /// The next complete line, or `None` at the end (or at an in-flight tail).
    pub fn next_entry(&mut self) -> Result<Option<Entry<T>>> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        loop {
            self.buf.clear();
            self.in_flight = false;
            let n = reader.read_until(b'\n', &mut self.buf).at(&self.path)?;
            if n == 0 {
                return Ok(None);
            }
            if self.buf.last() != Some(&b'\n') {
                self.in_flight = true;
                // Step back to the line start, so a later call reads the whole
                // line once it is finished, not just its rest.
                reader
                    .seek(SeekFrom::Start(self.cursor.offset))
                    .at(&self.path)?;
                return Ok(None);
            }
            let line = self.cursor.line;
            let offset = self.cursor.offset;
            self.cursor.line += 1;
            self.cursor.offset += n as u64;
            let text = &self.buf[..n - 1];
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(match parse_line::<T>(text) {
                Ok(value) => Entry::Record {
                    line,
                    offset,
                    value,
                },
                Err(e) => Entry::Bad(BadLine {
                    path: self.path.clone(),
                    line,
                    offset,
                    reason: describe_bad_line(text, &e),
                }),
            }));
        }
    }
}

/// One JSONL line as a `T`. A line of valid UTF-8 (nearly every one) is
/// checked once, not string by string as `from_slice` does (a tenth of a
/// listing's time); other bytes get `from_slice`'s own error.
pub fn parse_line<T: serde::de::DeserializeOwned>(text: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(text) {
        Ok(s) => serde_json::from_str(s),
        Err(_) => serde_json::from_slice(text),
    }
}

/// Whether `offset` is 0, or the byte before it in `file` is `\n`.
fn starts_line(file: &File, offset: u64) -> io::Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    if offset > file.metadata()?.len() {
        return Ok(false);
    }
    let mut b = [0u8; 1];
    match file.read_exact_at(&mut b, offset - 1) {
        Ok(()) => Ok(b[0] == b'\n'),
        // Shrunk since the length was read.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a JSONL line did not parse: `not UTF-8`, `not JSON (...)` or `not a valid record (...)`.
pub fn describe_bad_line(text: &[u8], e: &serde_json::Error) -> String {
    if std::str::from_utf8(text).is_err() {
        return "not UTF-8".to_string();
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not JSON ({} at column {})", strip_position(e), e.column())
        }
        _ => format!("not a valid record ({})", shorten(&strip_position(e))),
    }
}

/// serde quotes a string of the wrong type whole: a 3 MB line must not make a
/// 3 MB diagnostic. Keeps the head and the tail ("..., expected struct X").
fn shorten(msg: &str) -> String {
    const HEAD: usize = 100;
    const TAIL: usize = 40;
    let count = msg.chars().count();
    if count <= HEAD + TAIL + 20 {
        return msg.to_string();
    }
    let head: String = msg.chars().take(HEAD).collect();
    let tail: String = msg.chars().skip(count - TAIL).collect();
    format!("{head}…{tail}")
}

/// Whether the file at `path` ends with `\n` (or is empty or missing).
pub fn ends_with_newline(path: &Path) -> Result<bool> {
    let mut f = match confine::open(path, OFlag::O_RDONLY, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(path, e)),
    };
    let len = f.metadata().at(path)?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1)).at(path)?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).at(path)?;
    Ok(b[0] == b'\n')
}

/// `mkdir -p`, naming the path on error.
pub fn ensure_dir(path: &Path) -> Result<()> {
    confine::create_dir_all(path).at(path)
}

/// Read a whole file, confined to the town (see [`confine`]).
pub fn read(path: &Path) -> Result<Vec<u8>> {
    confine::read(path).at(path)
}

/// Create a file only if it does not exist (used for role prompts a person may
/// have edited: re-running an installer must not clobber them). Returns whether
/// it was created. The content is written to a temp file and hard-linked into
/// place (`link` fails if the name exists), so nobody ever sees a half-written
/// file, and a crash or a full disk leaves no file rather than a partial one that
/// a re-run would then keep forever.
pub fn write_if_missing(path: &Path, bytes: &[u8]) -> Result<bool> {
    // The common case (re-running an installer) costs no temp file and no fsync.
    if fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    via_temp(
        path,
        bytes,
        Durability::Sync,
        |tmp| match confine::hard_link(tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
    )
}
