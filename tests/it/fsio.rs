//! Tests that try to break the file primitives of `src/fsio.rs` with real
//! processes: this test binary re-executed as a worker (`worker` below), `sh` and
//! `flock(1)` as foreign writers, `kill -9` at random moments, a full disk
//! (RLIMIT_FSIZE, and a tiny tmpfs where mounting is permitted), rotation and
//! editor saves in the middle of appends.
//!
//! Randomness is seeded from the clock and printed; `GT_SEED=<n>` replays a run.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use gastown::fsio::{self, BadLine, Cursor, Durability, Entry, Records};
use gastown::record::AgentState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// The worker process.

/// Not a test: the body of the worker processes the tests below start as
/// `<this binary> --ignored --exact fsio::worker` with `GT_FSIO_*` set. Run by
/// hand without them it fails rather than passing vacuously.
#[test]
#[ignore = "worker process of the fsio tests (needs GT_FSIO_WORKER)"]
fn worker() {
    let mode = std::env::var("GT_FSIO_WORKER")
        .expect("fsio::worker is started by the fsio tests with GT_FSIO_WORKER set");
    let path = PathBuf::from(var("GT_FSIO_PATH"));
    let tag = std::env::var("GT_FSIO_TAG").unwrap_or_default();
    let num = |name: &str| -> usize { var(name).parse().expect(name) };
    let mut rng = Rng(var("GT_FSIO_SEED").parse::<u64>().unwrap() | 1);
    let mut out = io::stdout().lock();
    match mode.as_str() {
        // Append batches of lines; after each append returns, print one
        // `ack <id>` per line (in one write, so the next append starts at once).
        // Stops after GT_FSIO_COUNT appends, or once GT_FSIO_UNTIL exists.
        "append" => {
            let (lo, hi, batch) = (num("GT_FSIO_MIN"), num("GT_FSIO_MAX"), num("GT_FSIO_BATCH"));
            // Formatted, not serialized: unoptimized serde would spend far more
            // time than the write, and the kill should land in the write.
            let pad = "x".repeat(hi);
            let until = std::env::var_os("GT_FSIO_UNTIL").map(PathBuf::from);
            for i in 0..num("GT_FSIO_COUNT") {
                if until.as_ref().is_some_and(|p| p.exists()) {
                    break;
                }
                let ids: Vec<String> = (0..rng.range(1, batch))
                    .map(|j| format!("{tag}-{i}-{j}"))
                    .collect();
                let lines: Vec<String> = ids
                    .iter()
                    .map(|id| format!(r#"{{"id":"{id}","pad":"{}"}}"#, &pad[..rng.range(lo, hi)]))
                    .collect();
                fsio::append_lines(&path, &lines, Durability::Buffered).unwrap();
                let acks: String = ids.iter().map(|id| format!("ack {id}\n")).collect();
                out.write_all(acks.as_bytes()).unwrap();
                out.flush().unwrap();
            }
        }
        // One append of one line; prints `ok <offset>` or `err <message>`.
        "append-once" => {
            let r = fsio::append_lines(
                &path,
                &[line(&tag, num("GT_FSIO_LEN"))],
                Durability::Buffered,
            );
            match r {
                Ok(off) => writeln!(out, "ok {off}").unwrap(),
                Err(e) => writeln!(out, "err {e}").unwrap(),
            }
        }
        // Increment `generation` of a state.json through the typed record.
        "update" => {
            for _ in 0..num("GT_FSIO_COUNT") {
                fsio::update_json(
                    &path,
                    || Err(gastown::Error::not_found("state.json vanished")),
                    |s: &mut AgentState| {
                        s.generation += 1;
                        Ok(())
                    },
                )
                .unwrap();
                writeln!(out, "ack").unwrap();
            }
        }
        // Replace a JSON file over and over with a big value; ack each write.
        "write-json" => {
            let pad = "y".repeat(num("GT_FSIO_LEN"));
            for n in 0..num("GT_FSIO_COUNT") {
                fsio::write_json(&path, &json!({"tag": tag, "n": n, "pad": pad})).unwrap();
                writeln!(out, "ack {n}").unwrap();
            }
        }
        // One write_json; prints `ok` or `err <message>`.
        "write-json-once" => {
            let v = json!({"tag": tag, "pad": "z".repeat(num("GT_FSIO_LEN"))});
            match fsio::write_json(&path, &v) {
                Ok(()) => writeln!(out, "ok").unwrap(),
                Err(e) => writeln!(out, "err {e}").unwrap(),
            }
        }
        // A killed process with this pid left its temp file behind.
        "stray-tmp" => {
            let name = path.file_name().unwrap().to_str().unwrap();
            let stray = path.with_file_name(format!(".{name}.tmp.{}.0", std::process::id()));
            fs::write(&stray, b"{\"half\":").unwrap();
            match fsio::write_json(&path, &json!({"tag": tag})) {
                Ok(()) => writeln!(out, "ok").unwrap(),
                Err(e) => writeln!(out, "err {e}").unwrap(),
            }
        }
        // write_if_missing with GT_FSIO_LEN bytes of the tag's first letter.
        "create" => {
            let content = vec![tag.as_bytes()[0]; num("GT_FSIO_LEN")];
            match fsio::write_if_missing(&path, &content) {
                Ok(true) => writeln!(out, "won").unwrap(),
                Ok(false) => writeln!(out, "lost").unwrap(),
                Err(e) => writeln!(out, "err {e}").unwrap(),
            }
        }
        other => panic!("unknown GT_FSIO_WORKER mode {other}"),
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// A worker command; `mode` and `path` as in [`worker`].
fn worker_cmd(mode: &str, path: &Path, rng: &mut Rng) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test exe"));
    c.args([
        "--ignored",
        "--exact",
        "fsio::worker",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("GT_FSIO_WORKER", mode)
    .env("GT_FSIO_PATH", path)
    .env("GT_FSIO_SEED", rng.next().to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// A running child that is killed if the test panics first.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a worker to completion; require success; return its stdout lines minus
/// the test harness's own chatter.
fn run_worker(mut cmd: Command) -> Vec<String> {
    let out = cmd.output().expect("spawn worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    worker_lines(&stdout)
}

fn worker_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| ["ack", "ok", "err", "won", "lost"].contains(&l.split(' ').next().unwrap()))
        .map(str::to_string)
        .collect()
}

/// Run a worker and `kill -9` it `delay` after its first ack, a moment that
/// falls anywhere in its loop; return every id it acknowledged (read to EOF:
/// the acks printed before the kill count).
fn run_and_kill(mut cmd: Command, delay: Duration) -> Vec<String> {
    cmd.stderr(Stdio::null());
    let mut child = Reaped(cmd.spawn().expect("spawn worker"));
    let pid = child.0.id() as libc::pid_t;
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut killer = None;
    for l in stdout.split(b'\n') {
        if let Some(id) = l.unwrap().strip_prefix(b"ack ") {
            acks.push(String::from_utf8(id.to_vec()).unwrap());
            killer.get_or_insert_with(|| {
                thread::spawn(move || {
                    thread::sleep(delay);
                    // Not yet reaped (waited for below), so the pid is still ours.
                    // SAFETY: kill(2) on a pid we own.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                })
            });
        }
    }
    killer.expect("no ack before EOF").join().unwrap();
    child.0.wait().unwrap();
    acks
}

// ---------------------------------------------------------------------------
// Helpers.

/// xorshift64*: enough randomness for interleavings, no extra crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("GT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fsio: GT_SEED={seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// The record the append tests write: a unique id and padding of a chosen size.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Line {
    id: String,
    pad: String,
}

fn line(id: &str, pad: usize) -> Vec<u8> {
    serde_json::to_vec(&Line {
        id: id.to_string(),
        pad: "x".repeat(pad),
    })
    .unwrap()
}

fn tmpdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("gt-fsio-")
        .tempdir()
        .unwrap()
}

/// Everything a reader gets from `path` starting at `from`.
struct Read<T> {
    records: Vec<(u64, T)>,
    bad: Vec<BadLine>,
    cursor: Cursor,
    in_flight: bool,
}

fn read_from<T: serde::de::DeserializeOwned>(path: &Path, from: Cursor) -> Read<T> {
    let mut r = Records::<T>::open(path, from).unwrap();
    let mut read = Read {
        records: Vec::new(),
        bad: Vec::new(),
        cursor: from,
        in_flight: false,
    };
    while let Some(e) = r.next_entry().unwrap() {
        match e {
            Entry::Record { line, value, .. } => read.records.push((line, value)),
            Entry::Bad(b) => read.bad.push(b),
        }
    }
    read.cursor = r.cursor();
    read.in_flight = r.in_flight();
    read
}

fn read_all<T: serde::de::DeserializeOwned>(path: &Path) -> Read<T> {
    read_from(path, Cursor::default())
}

/// Each id appears exactly once among `records`, and every acked id is there.
fn assert_each_once(ids: impl IntoIterator<Item = String>, acked: &[String]) -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in ids {
        *seen.entry(id).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated lines: {dups:?}");
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged lines lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    seen.len()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).stdin(Stdio::null());
    c
}

fn ok(mut cmd: Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In the child: cap the size of any file it writes, and turn SIGXFSZ (which
/// would kill it) into EFBIG, as on a full disk.
fn limit_file_size(cmd: &mut Command, limit: u64) {
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// Locked append.

/// A foreign writer: `n` times, a line `{"id":"sh-sidecar-<i>","pad":"sh"}`
/// under `flock inbox.lock` (the documented idiom), then one tagged
/// `sh-datafile` under `flock inbox.jsonl` (the likely mistake, which
/// append_lines honours too). Each line goes out as two `printf >>`, so a writer
/// that ignored the lock would land between the halves. The two kinds take
/// turns: they exclude only the library's writers, not each other.
fn shell_writer(inbox: &Path, n: usize) -> Command {
    let mut c = sh(r#"i=0
        while [ "$i" -lt "$N" ]; do
          for L in "$F.lock" "$F.jsonl"; do
            case $L in *.lock) T=sh-sidecar ;; *) T=sh-datafile ;; esac
            I=$i T=$T flock "$L" -c 'printf "{\"id\":\"%s-%s\"," "$T" "$I" >> "$F.jsonl"; printf "\"pad\":\"sh\"}\n" >> "$F.jsonl"' || exit 1
          done
          i=$((i+1))
        done"#);
    c.env("F", inbox.with_extension("")).env("N", n.to_string());
    c
}

#[test]
fn concurrent_appends_from_processes_and_flock_shells_lose_and_tear_nothing() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let mut rng = Rng::seeded();
    // The shell is slow (a flock process per line): start it first and the
    // library writers once it writes, so they run while it does.
    let mut shell = Reaped(shell_writer(&inbox, 15).spawn().expect("sh"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !inbox.exists() {
        assert!(std::time::Instant::now() < deadline, "shell never wrote");
        thread::yield_now();
    }
    // A reader that takes no lock tails the file with one Records throughout,
    // meeting in-flight lines (the shell's first halves, writes in progress).
    let written = Arc::new(AtomicBool::new(false));
    let tail = {
        let (written, inbox) = (written.clone(), inbox.clone());
        thread::spawn(move || {
            let mut r = Records::<Line>::open(&inbox, Cursor::default()).unwrap();
            let mut ids = Vec::new();
            loop {
                match r.next_entry().unwrap() {
                    Some(Entry::Record { value, .. }) => ids.push(value.id),
                    Some(Entry::Bad(b)) => panic!("tailing reader got garbage: {b}"),
                    None if written.load(Ordering::Relaxed)
                        && r.cursor().offset == fs::metadata(&inbox).unwrap().len() =>
                    {
                        return ids;
                    }
                    None => thread::yield_now(),
                }
            }
        })
    };
    let stop = tmp.path().join("stop");
    let libs: Vec<_> = (0..4)
        .map(|w| {
            let mut c = worker_cmd("append", &inbox, &mut rng);
            c.env("GT_FSIO_TAG", format!("lib{w}"))
                .env("GT_FSIO_COUNT", "2000")
                .env("GT_FSIO_UNTIL", &stop)
                .env("GT_FSIO_MIN", "50")
                .env("GT_FSIO_MAX", "300")
                .env("GT_FSIO_BATCH", "3");
            thread::spawn(move || run_worker(c))
        })
        .collect();
    assert!(shell.0.wait().unwrap().success(), "shell writer failed");
    fs::write(&stop, b"").unwrap();
    let mut acked: Vec<String> = libs
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .map(|l| l.strip_prefix("ack ").unwrap().to_string())
        .collect();
    for tag in ["sh-sidecar", "sh-datafile"] {
        acked.extend((0..15).map(|i| format!("{tag}-{i}")));
    }
    written.store(true, Ordering::Relaxed);
    let tailed = tail.join().unwrap();

    let read = read_all::<Line>(&inbox);
    assert!(
        tailed.iter().eq(read.records.iter().map(|(_, l)| &l.id)),
        "the tailing reader saw other lines than a reader afterwards"
    );
    assert!(
        read.bad.is_empty(),
        "torn or interleaved lines: {:?}",
        read.bad
    );
    assert!(!read.in_flight);
    assert_eq!(read.cursor.offset, fs::metadata(&inbox).unwrap().len());
    let n = read.records.len();
    assert_eq!(
        assert_each_once(read.records.into_iter().map(|(_, l)| l.id), &acked),
        n
    );
    assert_eq!(n, acked.len(), "lines nobody acknowledged");
    eprintln!("fsio concurrent: {n} lines");
}

#[test]
fn kill_9_mid_append_keeps_acked_lines_once_and_never_glues_a_torn_tail() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let mut rng = Rng::seeded();
    let mut acked = Vec::new();
    // (line number, fragment) of every torn tail seen between rounds.
    let mut torn = Vec::new();
    // One reader that goes on from where it stopped, as a mail reader does.
    let (mut records, mut bad, mut cursor) = (Vec::new(), Vec::new(), Cursor::default());
    for round in 0..5 {
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let mut c = worker_cmd("append", &inbox, &mut rng);
                c.env("GT_FSIO_TAG", format!("r{round}w{w}"))
                    .env("GT_FSIO_COUNT", "40")
                    .env("GT_FSIO_MIN", "5000")
                    .env("GT_FSIO_MAX", "10000")
                    .env("GT_FSIO_BATCH", "8");
                let delay = Duration::from_micros(rng.range(0, 1500) as u64);
                thread::spawn(move || run_and_kill(c, delay))
            })
            .collect();
        for w in workers {
            acked.extend(w.join().unwrap());
        }
        // Every writer is dead: a torn tail is in flight, the cursor stops before
        // it; the previous round's torn tail, closed now, came out as a bad line.
        let bytes = fs::read(&inbox).unwrap();
        let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines_before = bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64;
        let read = read_from::<Line>(&inbox, cursor);
        assert_eq!(read.in_flight, start < bytes.len());
        cursor = read.cursor;
        assert_eq!(
            cursor,
            Cursor {
                offset: start as u64,
                line: lines_before + 1
            }
        );
        records.extend(read.records);
        bad.extend(read.bad);
        if start < bytes.len() {
            torn.push((lines_before + 1, bytes[start..].to_vec()));
        }
    }
    // The next locked append closes a torn tail before writing.
    fsio::append_lines(&inbox, &[line("last", 10)], Durability::Buffered).unwrap();
    acked.push("last".to_string());
    let read = read_from::<Line>(&inbox, cursor);
    assert!(!read.in_flight);
    records.extend(read.records);
    bad.extend(read.bad);

    let bytes = fs::read(&inbox).unwrap();
    assert!(bytes.ends_with(b"\n"));
    let raw: Vec<&[u8]> = bytes[..bytes.len() - 1].split(|&b| b == b'\n').collect();
    assert_eq!(read.cursor.line, raw.len() as u64 + 1);
    // No line holds more than one record's start: nothing glued. Then a line is
    // whole iff it ends like a record (pads are x's, ids have no braces).
    let mut whole = 0;
    let mut torn_lines = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let opens = l.iter().filter(|&&b| b == b'{').count();
        assert!(
            l[0] == b'{' && opens == 1,
            "line {} is glued: {:?}",
            i + 1,
            String::from_utf8_lossy(&l[..l.len().min(80)])
        );
        if l.ends_with(b"\"}") {
            whole += 1;
        } else {
            torn_lines.push(i as u64 + 1);
        }
    }
    // Exactly the torn lines are reported, with their numbers.
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), torn_lines);
    assert_eq!(records.len(), whole);
    for b in &bad {
        assert_eq!(b.path, inbox);
        assert!(b.reason.starts_with("not JSON ("), "{b}");
    }
    // Every torn tail seen became its own line, in place.
    for (n, fragment) in &torn {
        assert_eq!(raw[*n as usize - 1], &fragment[..], "line {n}");
    }
    for (n, l) in &records {
        assert!(l.pad.bytes().all(|b| b == b'x'), "line {n} corrupt");
    }
    assert_each_once(records.into_iter().map(|(_, l)| l.id), &acked);
    eprintln!(
        "fsio kill -9: {} acked lines, {} torn lines, {} seen in flight",
        acked.len(),
        bad.len(),
        torn.len()
    );
}

#[test]
fn torn_tail_is_in_flight_then_one_bad_line_once_closed() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    fs::write(&inbox, b"{\"id\":\"a\",\"pad\":\"\"}\n{\"id\":\"b\",\"pa").unwrap();
    let read = read_all::<Line>(&inbox);
    assert_eq!(read.records.len(), 1);
    assert!(read.in_flight);
    assert_eq!(
        read.cursor,
        Cursor {
            offset: 20,
            line: 2
        }
    );

    let off = fsio::append_lines(&inbox, &[line("c", 1)], Durability::Sync).unwrap();
    assert_eq!(
        off,
        20 + 13 + 1,
        "offset of our line, after the closing newline"
    );
    assert_eq!(
        fs::read_to_string(&inbox).unwrap(),
        "{\"id\":\"a\",\"pad\":\"\"}\n{\"id\":\"b\",\"pa\n{\"id\":\"c\",\"pad\":\"x\"}\n"
    );
    let read = read_from::<Line>(&inbox, read.cursor);
    assert_eq!(read.bad.len(), 1);
    assert_eq!(
        read.bad[0].to_string(),
        format!(
            "{}:2: not JSON (EOF while parsing a string at column 13)",
            inbox.display()
        )
    );
    assert_eq!(read.bad[0].offset, 20);
    assert_eq!(read.records[0].0, 3);
    assert_eq!(read.records[0].1.id, "c");
    assert!(!read.in_flight);
}

#[test]
fn a_reader_that_waits_on_an_in_flight_line_gets_the_whole_line_later() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    fs::write(&inbox, b"{\"id\":\"a\",\"pad\":\"\"}\n{\"id\":\"b\",\"pa").unwrap();
    let mut r = Records::<Line>::open(&inbox, Cursor::default()).unwrap();
    assert!(matches!(
        r.next_entry().unwrap(),
        Some(Entry::Record { line: 1, .. })
    ));
    assert!(r.next_entry().unwrap().is_none());
    assert!(r.in_flight());
    // The writer finishes its line and appends another; the same reader goes on.
    let mut f = fs::OpenOptions::new().append(true).open(&inbox).unwrap();
    f.write_all(b"d\":\"\"}\n{\"id\":\"c\",\"pad\":\"\"}\n")
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        match e {
            Entry::Record {
                line,
                offset,
                value,
            } => got.push((line, offset, value.id)),
            Entry::Bad(b) => panic!("garbage from a completed line: {b}"),
        }
    }
    assert_eq!(got, [(2, 20, "b".to_string()), (3, 40, "c".to_string())]);
    assert!(!r.in_flight());
    assert_eq!(
        r.cursor(),
        Cursor {
            offset: 60,
            line: 4
        }
    );
}

#[test]
fn rotation_and_editor_saves_mid_append_lose_no_acked_line() {
    let tmp = tmpdir();
    let dir = tmp.path();
    let inbox = dir.join("inbox.jsonl");
    let mut rng = Rng::seeded();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = worker_cmd("append", &inbox, &mut rng);
            c.env("GT_FSIO_TAG", format!("w{w}"))
                .env("GT_FSIO_COUNT", "1000")
                .env("GT_FSIO_MIN", "50")
                .env("GT_FSIO_MAX", "400")
                .env("GT_FSIO_BATCH", "2");
            thread::spawn(move || run_worker(c))
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let rotator = {
        let (done, inbox, dir) = (done.clone(), inbox.clone(), dir.to_path_buf());
        thread::spawn(move || {
            let mut n = 0;
            let mut moved_nonempty = 0;
            // Start once the writers have (the workers take a while to exec).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !inbox.exists() && !done.load(Ordering::Relaxed) {
                assert!(std::time::Instant::now() < deadline, "no writer started");
                thread::yield_now();
            }
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let rotated = dir.join(format!("inbox.jsonl.{n}"));
                // Mostly in-process, so that many happen while the writers run.
                match n % 16 {
                    // gt-mail archive: rename away under the sidecar lock.
                    0..6 => {
                        let _l = fsio::lock_for(&inbox).unwrap();
                        if fs::metadata(&inbox).is_ok_and(|m| m.len() > 0) {
                            fs::rename(&inbox, &rotated).unwrap();
                            moved_nonempty += 1;
                        }
                    }
                    // A person archiving by hand.
                    6 => {
                        let mut c = sh(r#"flock "$L" sh -c '[ ! -e "$F" ] || mv "$F" "$R"'"#);
                        c.env("L", fsio::lock_path(&inbox))
                            .env("F", &inbox)
                            .env("R", &rotated);
                        ok(c);
                    }
                    // An editor's save: write a new file, rename it over.
                    7..15 => {
                        let _l = fsio::lock_for(&inbox).unwrap();
                        if let Ok(text) = fs::read(&inbox) {
                            let new = dir.join(".inbox.jsonl.swp");
                            fs::write(&new, text).unwrap();
                            fs::rename(&new, &inbox).unwrap();
                        }
                    }
                    // The same by hand: `flock inbox.lock vim inbox.jsonl`.
                    _ => {
                        let mut c = sh(
                            r#"flock "$L" sh -c '[ ! -e "$F" ] || { cat "$F" > "$F.new" && mv "$F.new" "$F"; }'"#,
                        );
                        c.env("L", fsio::lock_path(&inbox)).env("F", &inbox);
                        ok(c);
                    }
                }
            }
            (n, moved_nonempty)
        })
    };
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .map(|l| l.strip_prefix("ack ").unwrap().to_string())
        .collect();
    done.store(true, Ordering::Relaxed);
    let (rotations, moved) = rotator.join().unwrap();

    let mut ids = Vec::new();
    let mut files = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap();
        if !name.starts_with("inbox.jsonl") {
            continue;
        }
        assert!(!name.ends_with(".new"), "editor temp left: {name}");
        files += 1;
        let read = read_all::<Line>(&p);
        assert!(
            read.bad.is_empty() && !read.in_flight,
            "{name}: {:?}",
            read.bad
        );
        ids.extend(read.records.into_iter().map(|(_, l)| l.id));
    }
    assert_eq!(ids.len(), acked.len());
    assert_each_once(ids, &acked);
    eprintln!(
        "fsio rotation: {rotations} rotations/edits, {moved} non-empty renames, {files} files"
    );
}

#[test]
fn append_and_update_work_with_a_lock_file_they_may_not_write() {
    // flock(2) needs no write access, and flock(1) opens read-only: a lock file
    // left by another user (a person's `flock inbox.lock vim ...`, umask 022)
    // must not lock agents out of a mailbox they may write.
    use std::os::unix::fs::PermissionsExt;
    let tmp = tmpdir();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    let inbox = dir.join("inbox.jsonl");
    fs::write(&inbox, b"").unwrap();
    fs::set_permissions(&inbox, fs::Permissions::from_mode(0o666)).unwrap();
    let lock = fsio::lock_path(&inbox);
    fs::write(&lock, b"").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
    let mut rng = Rng::seeded();
    let mut c = worker_cmd("append-once", &inbox, &mut rng);
    c.env("GT_FSIO_TAG", "other-user").env("GT_FSIO_LEN", "1");
    as_another_user(&mut c);
    assert_eq!(run_worker(c), ["ok 0"]);
    let read = read_all::<Line>(&inbox);
    assert_eq!(read.records[0].1.id, "other-user");

    let state = dir.join("state.json");
    state_with_unknown_fields(&state);
    let lock = fsio::lock_path(&state);
    fs::write(&lock, b"").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
    let mut c = worker_cmd("update", &state, &mut rng);
    c.env("GT_FSIO_COUNT", "1");
    as_another_user(&mut c);
    assert_eq!(run_worker(c), ["ack"]);
    assert_eq!(fsio::read_json::<AgentState>(&state).unwrap().generation, 1);
}

/// Root ignores file modes: as root, run the child as `nobody`, so that a
/// read-only file is read-only for it. (Not root: modes apply already.)
fn as_another_user(cmd: &mut Command) {
    // SAFETY: geteuid, setgroups, setgid and setuid are async-signal-safe.
    unsafe {
        if libc::geteuid() != 0 {
            return;
        }
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// Full disk.

/// `<tmp>/inbox.jsonl` with two complete lines and a torn tail of someone else's.
const BEFORE: &[u8] =
    b"{\"id\":\"a\",\"pad\":\"\"}\n{\"id\":\"b\",\"pad\":\"\"}\n{\"id\":\"torn\",\"pa";

fn assert_intact_after_failed_append(inbox: &Path, before: &[u8], err: &str, cause: &str) {
    assert_eq!(err, format!("err {}: {cause}", inbox.display()));
    assert!(
        fs::read(inbox).unwrap() == before,
        "{} changed by a failed append",
        inbox.display()
    );
    let read = read_all::<Line>(inbox);
    let ids: Vec<_> = read.records.iter().map(|(_, l)| l.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(read.bad.is_empty());
    assert_eq!(read.in_flight, !before.ends_with(b"\n"));
}

#[test]
fn append_on_a_full_disk_fails_naming_the_file_and_leaves_it_as_before() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let mut rng = Rng::seeded();
    let complete = &BEFORE[..40];
    // (initial content, file size limit, length of the line to append)
    let cases: [(&[u8], u64, usize); 4] = [
        // Our line is cut short after its first page.
        (complete, 40 + 4096, 20_000),
        // Only the newline that closes the torn tail fits.
        (BEFORE, BEFORE.len() as u64 + 1, 100),
        // Not even that.
        (BEFORE, BEFORE.len() as u64, 100),
        // The torn tail's newline and part of ours.
        (BEFORE, BEFORE.len() as u64 + 10_000, 50_000),
    ];
    for (before, limit, len) in cases {
        fs::write(&inbox, before).unwrap();
        let mut c = worker_cmd("append-once", &inbox, &mut rng);
        c.env("GT_FSIO_TAG", "mine")
            .env("GT_FSIO_LEN", len.to_string());
        limit_file_size(&mut c, limit);
        let out = run_worker(c);
        assert_intact_after_failed_append(&inbox, before, &out[0], "File too large (os error 27)");
    }
    // With room again, the next append closes the torn tail and lands whole.
    fsio::append_lines(&inbox, &[line("c", 3)], Durability::Buffered).unwrap();
    let read = read_all::<Line>(&inbox);
    assert_eq!(
        read.records.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(read.bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3]);
}

#[test]
fn append_on_a_full_tmpfs_fails_naming_the_file_and_leaves_it_as_before() {
    let tmp = tmpdir();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let inbox = mnt.join("inbox.jsonl");
    let before_copy = tmp.path().join("before");
    let after_copy = tmp.path().join("after");
    fs::write(&before_copy, BEFORE).unwrap();
    let mut rng = Rng::seeded();
    // A private mount namespace, so the mount needs no cleanup and cannot leak:
    // fill a 64 KiB tmpfs to two free pages, append 20 KB, copy the file out.
    let script = r#"mount -t tmpfs -o size=64k tmpfs "$M" || exit 1
        cp "$B" "$M/inbox.jsonl" || exit 1
        dd if=/dev/zero of="$M/fill" bs=4096 2>/dev/null
        truncate -s -8192 "$M/fill" || exit 1
        "$@"; rc=$?
        cp "$M/inbox.jsonl" "$A" || exit 1
        exit $rc"#;
    let probe = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs \"$0\"",
            mnt.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!(
            "fsio: cannot mount a tmpfs here (needs CAP_SYS_ADMIN); \
             filling the disk with RLIMIT_FSIZE instead"
        );
        fs::write(&inbox, BEFORE).unwrap();
        let mut c = worker_cmd("append-once", &inbox, &mut rng);
        c.env("GT_FSIO_TAG", "mine").env("GT_FSIO_LEN", "20000");
        limit_file_size(&mut c, BEFORE.len() as u64 + 8192);
        let out = run_worker(c);
        assert_intact_after_failed_append(&inbox, BEFORE, &out[0], "File too large (os error 27)");
        return;
    }
    let w = worker_cmd("append-once", &inbox, &mut rng);
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", script, "sh"])
        .arg(w.get_program())
        .args(w.get_args())
        .envs(w.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("GT_FSIO_TAG", "mine")
        .env("GT_FSIO_LEN", "20000")
        .env("M", &mnt)
        .env("B", &before_copy)
        .env("A", &after_copy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_worker(c);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0],
        format!(
            "err {}: No space left on device (os error 28)",
            inbox.display()
        )
    );
    assert!(
        fs::read(&after_copy).unwrap() == BEFORE,
        "changed by a failed append"
    );
}

// ---------------------------------------------------------------------------
// Atomic replace.

fn state_with_unknown_fields(path: &Path) {
    fs::write(
        path,
        serde_json::to_vec_pretty(&json!({
            "role": "polecat",
            "status": "working",
            "generation": 0,
            "custom": {"keep": [1, 2, 3], "nested": {"deep": true}},
            "zz_from_a_newer_tool": "kept"
        }))
        .unwrap(),
    )
    .unwrap();
}

#[test]
fn update_json_from_many_processes_counts_every_increment_and_keeps_unknown_fields() {
    let tmp = tmpdir();
    let state = tmp.path().join("state.json");
    state_with_unknown_fields(&state);
    let mut rng = Rng::seeded();
    let (procs, each) = (4, 15);
    let writers: Vec<_> = (0..procs)
        .map(|_| {
            let mut c = worker_cmd("update", &state, &mut rng);
            c.env("GT_FSIO_COUNT", each.to_string());
            thread::spawn(move || run_worker(c).len())
        })
        .collect();
    // A reader that takes no lock sees a whole file every time, never going back.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, state) = (done.clone(), state.clone());
        thread::spawn(move || {
            let (mut reads, mut last) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                let bytes = fs::read(&state).unwrap();
                let s: AgentState = fsio::parse_json(&state, &bytes)
                    .unwrap_or_else(|e| panic!("reader saw a partial file: {e}"));
                assert!(
                    s.generation >= last,
                    "went back from {last} to {}",
                    s.generation
                );
                last = s.generation;
                reads += 1;
            }
            reads
        })
    };
    let acks: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert_eq!(acks, procs * each);
    let v = gastown::fsio::read_json::<serde_json::Value>(&state).unwrap();
    assert_eq!(v["generation"], procs * each);
    assert_eq!(
        v["custom"],
        json!({"keep": [1, 2, 3], "nested": {"deep": true}})
    );
    assert_eq!(v["zz_from_a_newer_tool"], "kept");
    assert_eq!(v["status"], "working");
    assert!(reads > 0);
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "state.json" && n != "state.lock")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn kill_9_mid_write_json_leaves_the_old_or_the_new_file() {
    let tmp = tmpdir();
    let state = tmp.path().join("state.json");
    let mut rng = Rng::seeded();
    let pad = 300_000;
    for round in 0..3 {
        let mut c = worker_cmd("write-json", &state, &mut rng);
        c.env("GT_FSIO_TAG", format!("r{round}"))
            .env("GT_FSIO_COUNT", "200")
            .env("GT_FSIO_LEN", pad.to_string());
        let acks = run_and_kill(c, Duration::from_micros(rng.range(0, 10_000) as u64));
        let last: u64 = acks
            .last()
            .expect("an ack before the kill")
            .parse()
            .unwrap();
        let v: serde_json::Value = fsio::read_json(&state)
            .unwrap_or_else(|e| panic!("round {round}: not a whole file: {e}"));
        assert_eq!(v["tag"], format!("r{round}"));
        let n = v["n"].as_u64().unwrap();
        assert!(n == last || n == last + 1, "acked {last}, file has {n}");
        assert_eq!(v["pad"].as_str().unwrap().len(), pad);
    }
    for e in fs::read_dir(tmp.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "state.json" || name == "state.lock" || name.starts_with(".state.json.tmp."),
            "unexpected file {name}"
        );
    }
}

#[test]
fn write_json_on_a_full_disk_fails_naming_the_file_and_keeps_the_old_one() {
    let tmp = tmpdir();
    let state = tmp.path().join("state.json");
    fs::write(&state, b"{\"old\": true}\n").unwrap();
    let mut rng = Rng::seeded();
    let mut c = worker_cmd("write-json-once", &state, &mut rng);
    c.env("GT_FSIO_TAG", "new").env("GT_FSIO_LEN", "10000");
    limit_file_size(&mut c, 4096);
    let out = run_worker(c);
    assert_eq!(
        out,
        [format!(
            "err {}: File too large (os error 27)",
            state.display()
        )]
    );
    assert_eq!(fs::read(&state).unwrap(), b"{\"old\": true}\n");
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["state.json"], "temp file left behind");
}

#[test]
fn a_stray_temp_file_of_a_dead_process_with_our_pid_does_not_block_writes() {
    // PIDs are reused (in a container, a restarted service gets the same one):
    // a temp file left by a kill -9 must not make every later write fail.
    let tmp = tmpdir();
    let state = tmp.path().join("state.json");
    let mut rng = Rng::seeded();
    let mut c = worker_cmd("stray-tmp", &state, &mut rng);
    c.env("GT_FSIO_TAG", "after-stray");
    assert_eq!(run_worker(c), ["ok"]);
    assert_eq!(
        fsio::read_json::<serde_json::Value>(&state).unwrap(),
        json!({"tag": "after-stray"})
    );
}

// ---------------------------------------------------------------------------
// The tolerant reader.

#[test]
fn reader_skips_and_reports_every_kind_of_bad_line_without_failing_the_file() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let huge_pad = "h".repeat(3 << 20);
    let huge_string_line = format!("\"{huge_pad}\"");
    let mut text: Vec<u8> = Vec::new();
    let mut add = |l: &[u8]| {
        text.extend_from_slice(l);
        text.push(b'\n');
    };
    add(br#"{"id":"1","pad":""}"#); // 1
    add(b"this is not json"); // 2
    add(b""); // 3 blank
    add(b"   \t "); // 4 blank
    add(b"{\"id\":\"\xff\xfe\",\"pad\":\"\"}"); // 5 invalid UTF-8 in a string
    add(b"\xc3\x28 junk"); // 6 invalid UTF-8
    add(br#"{"id":5,"pad":""}"#); // 7 wrong type
    add(br#"[1,2,3]"#); // 8 wrong shape (serde reads a struct from an array too)
    add(br#"{"id":"a","pad":""} {"id":"b","pad":""}"#); // 9 two glued records
    add(b"{\"id\":\"crlf\",\"pad\":\"\"}\r"); // 10 CRLF: tolerated
    add(b"\r"); // 11 a blank CRLF line
    add(format!(r#"{{"id":"huge","pad":"{huge_pad}"}}"#).as_bytes()); // 12 huge, fine
    add(huge_string_line.as_bytes()); // 13 huge, wrong shape
    add(b"\0\0\0\0"); // 14 zeros, as a crash can leave
    add(br#"{"id":"last","pad":""}"#); // 15
    text.extend_from_slice(b"{\"id\":\"in-fl"); // 16, in flight
    fs::write(&inbox, &text).unwrap();

    let read = read_all::<Line>(&inbox);
    let ids: Vec<(u64, &str)> = read
        .records
        .iter()
        .map(|(n, l)| (*n, l.id.as_str()))
        .collect();
    assert_eq!(ids, [(1, "1"), (10, "crlf"), (12, "huge"), (15, "last")]);
    assert_eq!(read.records[2].1.pad.len(), 3 << 20);
    let p = inbox.display();
    let bad: Vec<String> = read.bad.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        bad,
        [
            format!("{p}:2: not JSON (expected ident at column 2)"),
            format!("{p}:5: not UTF-8"),
            format!("{p}:6: not UTF-8"),
            format!("{p}:7: not a valid record (invalid type: integer `5`, expected a string)"),
            format!("{p}:8: not a valid record (invalid type: integer `1`, expected a string)"),
            format!("{p}:9: not JSON (trailing characters at column 21)"),
            // Not 3 MB of it.
            format!(
                "{p}:13: not a valid record (invalid type: string \"{}…{}\", expected struct Line)",
                "h".repeat(78),
                "h".repeat(17)
            ),
            format!("{p}:14: not JSON (expected value at column 1)"),
        ]
    );
    assert!(read.in_flight);
    let last_line_start = text.len() as u64 - b"{\"id\":\"in-fl".len() as u64;
    assert_eq!(
        read.cursor,
        Cursor {
            offset: last_line_start,
            line: 16
        }
    );
    // The offsets point at the lines.
    for b in &read.bad {
        assert!(b.offset == 0 || text[b.offset as usize - 1] == b'\n');
    }
}

#[test]
fn reader_of_a_missing_or_empty_file_reads_nothing() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let read = read_all::<Line>(&inbox);
    assert!(read.records.is_empty() && read.bad.is_empty() && !read.in_flight);
    assert_eq!(read.cursor, Cursor::default());
    fs::write(&inbox, b"").unwrap();
    let read = read_all::<Line>(&inbox);
    assert!(read.records.is_empty() && read.bad.is_empty() && !read.in_flight);
}

#[test]
fn reader_with_a_cursor_into_a_replaced_file_says_so_and_reads_no_garbage() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let lines: Vec<Vec<u8>> = (0..3).map(|i| line(&format!("old{i}"), 30)).collect();
    fsio::append_lines(&inbox, &lines, Durability::Buffered).unwrap();
    let cursor = read_all::<Line>(&inbox).cursor;
    assert_eq!(cursor.line, 4);
    let r = Records::<Line>::open(&inbox, cursor).unwrap();
    assert!(!r.truncated());

    // Archived, and a new shorter inbox began: the cursor is beyond its end.
    fs::write(&inbox, [line("new0", 1), b"\n".to_vec()].concat()).unwrap();
    let mut r = Records::<Line>::open(&inbox, cursor).unwrap();
    assert!(r.truncated());
    assert!(r.next_entry().unwrap().is_none());
    assert_eq!(r.cursor(), cursor);

    // An editor rewrote it longer: the cursor lands inside a line.
    let longer: Vec<Vec<u8>> = (0..3).map(|i| line(&format!("new{i}"), 45)).collect();
    fsio::write_atomic(&inbox, &[longer.join(&b'\n'), b"\n".to_vec()].concat()).unwrap();
    let mut r = Records::<Line>::open(&inbox, cursor).unwrap();
    assert!(r.truncated());
    assert!(r.next_entry().unwrap().is_none(), "garbage from mid-line");

    // Archived and not begun anew.
    fs::remove_file(&inbox).unwrap();
    let mut r = Records::<Line>::open(&inbox, cursor).unwrap();
    assert!(r.truncated());
    assert!(r.next_entry().unwrap().is_none());
    fsio::write_atomic(&inbox, &[longer.join(&b'\n'), b"\n".to_vec()].concat()).unwrap();

    // Starting over from the beginning reads the new file.
    let read = read_all::<Line>(&inbox);
    assert_eq!(read.records.len(), 3);
    assert!(read.bad.is_empty());
}

// ---------------------------------------------------------------------------
// write_if_missing.

#[test]
fn write_if_missing_racing_creators_one_wins_and_no_partial_file_is_visible() {
    let tmp = tmpdir();
    let mut rng = Rng::seeded();
    let len = 2 << 20;
    for round in 0..2 {
        let prompt = tmp.path().join(format!("CLAUDE{round}.md"));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (done, prompt) = (done.clone(), prompt.clone());
            thread::spawn(move || {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) {
                    if let Ok(b) = fs::read(&prompt) {
                        assert_eq!(b.len(), len, "partial file visible");
                        assert!(b.iter().all(|&c| c == b[0]), "mixed file visible");
                        seen += 1;
                    }
                }
                seen
            })
        };
        let creators: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|tag| {
                let mut c = worker_cmd("create", &prompt, &mut rng);
                c.env("GT_FSIO_TAG", tag)
                    .env("GT_FSIO_LEN", len.to_string());
                thread::spawn(move || (tag.as_bytes()[0], run_worker(c)))
            })
            .collect();
        let results: Vec<_> = creators.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, out)| out == &["won"])
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .all(|(_, out)| out == &["won"] || out == &["lost"])
        );
        let content = fs::read(&prompt).unwrap();
        assert_eq!(content.len(), len);
        assert!(content.iter().all(|&c| c == winners[0]));
    }
    let names: HashSet<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["CLAUDE0.md".into(), "CLAUDE1.md".into()])
    );
}

#[test]
fn write_if_missing_that_fails_halfway_leaves_no_file() {
    let tmp = tmpdir();
    let prompt = tmp.path().join("CLAUDE.md");
    let mut rng = Rng::seeded();
    let mut c = worker_cmd("create", &prompt, &mut rng);
    c.env("GT_FSIO_TAG", "p").env("GT_FSIO_LEN", "10000");
    limit_file_size(&mut c, 4096);
    assert_eq!(
        run_worker(c),
        [format!(
            "err {}: File too large (os error 27)",
            prompt.display()
        )]
    );
    // Nothing at all: a re-run must not find a half prompt and keep it forever.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(fsio::write_if_missing(&prompt, b"whole\n").unwrap());
    assert!(!fsio::write_if_missing(&prompt, b"other\n").unwrap());
    assert_eq!(fs::read(&prompt).unwrap(), b"whole\n");
}

#[test]
fn append_refuses_a_record_with_a_newline_and_writes_nothing() {
    let tmp = tmpdir();
    let inbox = tmp.path().join("inbox.jsonl");
    let err = fsio::append_lines(&inbox, &[&b"{}"[..], b"{\n}"], Durability::Buffered).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: refusing to append a record that contains a newline",
            inbox.display()
        )
    );
    assert!(!inbox.exists());
}

/// A hand edit made under the wrong lock (`flock inbox.jsonl`, not the
/// sidecar) renames a new file over the inbox while a library appender waits
/// for that lock: the appender must write to the new file, not the orphaned one.
#[test]
fn an_append_waiting_on_a_hand_edit_under_the_data_lock_lands_in_the_new_file() {
    let dir = tmpdir();
    let inbox = dir.path().join("inbox.jsonl");
    fs::write(&inbox, "{\"id\":\"old\"}\n").unwrap();
    let (ready, go) = (dir.path().join("ready"), dir.path().join("go"));
    for f in [&ready, &go] {
        crate::common::fifo(f);
    }
    // The editor: holds `flock inbox.jsonl`, waits for `go`, then saves the
    // way editors do (write a new file, rename it over).
    let script = format!(
        "cd {d} && exec 9<inbox.jsonl && flock 9 && echo locked > ready && read _ < go && \
         cp inbox.jsonl new && echo '{{\"id\":\"edited\"}}' >> new && mv new inbox.jsonl",
        d = dir.path().display()
    );
    let mut editor = sh(&script).spawn().unwrap();
    assert_eq!(crate::common::read_fifo(&ready), "locked\n");
    let path = inbox.clone();
    let appender = thread::spawn(move || {
        fsio::append_lines(&path, &[br#"{"id":"sent"}"#], Durability::Buffered)
    });
    // Wait until the appender is blocked on the editor's lock (a waiter shows
    // in /proc/locks as "->"), then let the editor save.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string("/proc/locks").unwrap().contains("->") {
        assert!(
            std::time::Instant::now() < deadline,
            "the appender never waited on the lock"
        );
        thread::sleep(Duration::from_millis(5));
    }
    crate::common::write_fifo(&go, "go\n");
    assert!(editor.wait().unwrap().success());
    appender.join().unwrap().unwrap();
    assert_eq!(
        fs::read_to_string(&inbox).unwrap(),
        "{\"id\":\"old\"}\n{\"id\":\"edited\"}\n{\"id\":\"sent\"}\n"
    );
}
