//! `cargo bench --bench mail`: how fast mail is, against the plain ways to do
//! the same on this machine. Prints Markdown table rows; `bench/mail.sh` runs it
//! (after `cargo build --release`) and writes BENCHMARKS.md.
//!
//! Rows that start processes need the release binaries (`target/release/gt`,
//! `gt-mail`); without them those rows are skipped. `GT_BENCH_QUICK=1` uses
//! smaller counts (a smoke run, not for the record).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gastown::fsio::{self, Appender, Durability};

fn main() {
    let quick = std::env::var_os("GT_BENCH_QUICK").is_some();
    let scale = |n: usize| if quick { n / 20 } else { n };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target")).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("bench-mail-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let dir = tmp.path();
    let line = sample_line(300);

    println!("| measurement | result | ratio / note |");
    println!("|---|---|---|");

    // In-process appends of 300-byte lines.
    let n = scale(200_000);
    let base = rate(n, || {
        plain_flock_loop(&dir.join("plain.jsonl"), &line, n, false)
    });
    row(
        "plain flock+write loop, fd kept open (the physical limit)",
        per_s(base),
        "1.00",
    );
    let reopen = rate(n, || plain_reopen_loop(&dir.join("reopen.jsonl"), &line, n));
    row(
        "plain flock+write, reopening sidecar and file per line",
        per_s(reopen),
        ratio(reopen, base),
    );
    let mut app = Appender::open(&dir.join("appender.jsonl"), Durability::Buffered).unwrap();
    let appender = rate(n, || {
        for _ in 0..n {
            app.append(&[&line]).unwrap();
        }
    });
    row(
        "fsio::Appender, one message per call (mail's locked append)",
        per_s(appender),
        format!("{} of the plain loop (target ≥ 50%)", pct(appender, base)),
    );
    let oneshot_path = dir.join("oneshot.jsonl");
    let oneshot = rate(n, || {
        for _ in 0..n {
            fsio::append_lines(&oneshot_path, &[&line], Durability::Buffered).unwrap();
        }
    });
    row(
        "fsio::append_lines, one message per call (what one `gt send` does)",
        per_s(oneshot),
        format!("{} of the plain loop", pct(oneshot, base)),
    );
    let batch: Vec<&[u8]> = vec![line.as_bytes(); 100];
    let mut app = Appender::open(&dir.join("batch.jsonl"), Durability::Buffered).unwrap();
    let batched = rate(n, || {
        for _ in 0..n / 100 {
            app.append(&batch).unwrap();
        }
    });
    row(
        "fsio::Appender, 100 messages per call (`deliver`)",
        per_s(batched),
        format!("{} of the plain loop", pct(batched, base)),
    );

    // Durable: fdatasync per message.
    let nd = scale(2_000).max(50);
    let base_sync = rate(nd, || {
        plain_flock_loop(&dir.join("plain-sync.jsonl"), &line, nd, true)
    });
    row(
        "plain flock+write+fdatasync loop",
        per_s(base_sync),
        "1.00 (durable baseline)",
    );
    let mut app = Appender::open(&dir.join("durable.jsonl"), Durability::Sync).unwrap();
    let durable = rate(nd, || {
        for _ in 0..nd {
            app.append(&[&line]).unwrap();
        }
    });
    row(
        "fsio::Appender durable (GT_DURABLE=1 / --durable)",
        per_s(durable),
        format!(
            "{} of the durable baseline; {:.0}x slower than the default",
            pct(durable, base_sync),
            appender / durable
        ),
    );

    let bin = root.join("target/release");
    if !bin.join("gt-mail").exists() {
        println!("\n(no target/release/gt-mail: run `cargo build --release` for the process rows)");
        return;
    }
    let town = dir.join("town");
    run(Command::new(bin.join("gt")).arg("install").arg(&town));
    let gt_mail = |who: &str| {
        let mut c = Command::new(bin.join("gt-mail"));
        c.env("GT_TOWN", &town)
            .env("GT_ADDRESS", who)
            .env_remove("GT_DURABLE");
        c
    };

    // The batch path: many messages through one `gt-mail deliver`.
    let nb = scale(10_000);
    let batch_file = dir.join("batch.jsonl");
    let mut w = BufWriter::new(File::create(&batch_file).unwrap());
    for i in 0..nb {
        writeln!(
            w,
            "{{\"to\":\"overseer\",\"subject\":\"batch {i}\",\"body\":\"{}\"}}",
            "z".repeat(200)
        )
        .unwrap();
    }
    w.flush().unwrap();
    let times = repeat(5, || {
        run(gt_mail("mayor")
            .arg("deliver")
            .stdin(File::open(&batch_file).unwrap()));
    });
    let med = pctl(&times, 50);
    row(
        &format!("`gt-mail deliver` of {nb} messages (whole process)"),
        format!(
            "median {}: {:.0} messages/s",
            ms(med),
            nb as f64 / med.as_secs_f64()
        ),
        "one lock and one write per inbox",
    );

    // gt inbox with a huge inbox and a few unread.
    let big = scale(1_000_000);
    let unread = 10;
    let t = Instant::now();
    fill_inbox(&town.join("mayor/mail"), big, unread);
    let filled = t.elapsed();
    let t = Instant::now();
    let out = run(gt_mail("mayor").args(["inbox", "--json"]));
    let first = t.elapsed();
    assert_eq!(out.lines().count(), unread, "{out}");
    let inbox_bytes = std::fs::metadata(town.join("mayor/mail/inbox.jsonl"))
        .unwrap()
        .len();
    row(
        &format!(
            "`gt inbox`, first run: builds the cursor from {big} messages ({} MB) + {} marks",
            inbox_bytes >> 20,
            big - unread
        ),
        ms(first),
        format!("once per inbox rewrite (generated in {})", ms(filled)),
    );
    let times = repeat(scale(200).max(20), || {
        run(gt_mail("mayor").args(["inbox"]));
    });
    row(
        &format!("`gt inbox` (whole process), {big} messages, {unread} unread"),
        format!(
            "median {}, p99 {}",
            ms(pctl(&times, 50)),
            ms(pctl(&times, 99))
        ),
        "target < 20 ms",
    );
    // Reset the inbox for the rest.
    for f in ["inbox.jsonl", "read.jsonl", "read.cursor.json"] {
        let _ = std::fs::remove_file(town.join("mayor/mail").join(f));
    }

    // Watch latency: append -> the line on the watcher's stdout.
    let mut watcher = gt_mail("mayor")
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let inbox = town.join("mayor/mail/inbox.jsonl");
    let mut app = Appender::open(&inbox, Durability::Buffered).unwrap();
    // Wait until the watcher is up (it prints what is pending at start).
    app.append(&[message_line(0)]).unwrap();
    lines.next().unwrap().unwrap();
    let nw = scale(2_000).max(100);
    let mut lat = Vec::with_capacity(nw);
    for i in 1..=nw {
        let msg = message_line(i);
        // An idle machine between messages, as the target says.
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        app.append(&[&msg]).unwrap();
        let got = lines.next().unwrap().unwrap();
        lat.push(t.elapsed());
        debug_assert!(got.contains(&format!("\"subject\":\"m{i}\"")));
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    lat.sort();
    row(
        &format!("`gt mail watch` latency, append -> line on stdout ({nw} messages)"),
        format!("p50 {}, p99 {}", us(pctl(&lat, 50)), us(pctl(&lat, 99))),
        "target p99 < 5 ms",
    );
}

fn sample_line(len: usize) -> String {
    let head = "{\"id\":\"msg-01m88zy56pae3zkttn\",\"from\":\"wyvern/witness\",\"to\":\"mayor\",\"subject\":\"bench\",\"timestamp\":\"2026-11-25T09:00:00Z\",\"body\":\"";
    let tail = "\"}";
    format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
}

fn message_line(i: usize) -> String {
    format!(
        "{{\"id\":\"bench-{i}\",\"from\":\"overseer\",\"to\":\"mayor\",\"subject\":\"m{i}\",\"body\":\"{}\",\"timestamp\":\"2026-11-25T09:00:00Z\"}}",
        "y".repeat(200)
    )
}

/// `n` messages of ~250 bytes, all but the last `unread` marked read.
fn fill_inbox(mail: &Path, n: usize, unread: usize) {
    let mut inbox =
        BufWriter::with_capacity(1 << 20, File::create(mail.join("inbox.jsonl")).unwrap());
    let mut marks =
        BufWriter::with_capacity(1 << 20, File::create(mail.join("read.jsonl")).unwrap());
    for i in 0..n {
        writeln!(inbox, "{}", message_line(i)).unwrap();
        if i < n - unread {
            writeln!(
                marks,
                "{{\"id\":\"bench-{i}\",\"state\":\"read\",\"at\":\"2026-11-25T09:00:00Z\"}}"
            )
            .unwrap();
        }
    }
    inbox.flush().unwrap();
    marks.flush().unwrap();
}

/// The baseline: one open file, `flock`, one `write`, unlock, per line.
fn plain_flock_loop(path: &Path, line: &str, n: usize, sync: bool) {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    for _ in 0..n {
        f.lock().unwrap();
        (&f).write_all(&buf).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
        f.unlock().unwrap();
    }
}

/// Open the sidecar and the file per line, as a rotation-safe writer must.
fn plain_reopen_loop(path: &Path, line: &str, n: usize) {
    let lock = path.with_extension("lock");
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    for _ in 0..n {
        let l = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CREAT)
            .open(&lock)
            .unwrap();
        l.lock().unwrap();
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        (&f).write_all(&buf).unwrap();
    }
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    n as f64 / t.elapsed().as_secs_f64()
}

fn repeat(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm-up
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

fn pctl(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn row(what: &str, result: impl std::fmt::Display, note: impl std::fmt::Display) {
    println!("| {what} | {result} | {note} |");
}

fn per_s(r: f64) -> String {
    format!("{:.0}/s", r)
}
fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}
fn pct(a: f64, b: f64) -> String {
    format!("{:.0}%", 100.0 * a / b)
}
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
