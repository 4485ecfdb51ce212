//! gt-mail under faults: concurrent processes, kill -9, a full disk, archiving
//! during sends, and a watcher across inotify overflow and restarts.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestEnv, jsonl};
use crate::mail::{deliver, mail_cmd, ok, run, unread};

fn subjects(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn concurrent_senders_lose_and_interleave_nothing() {
    let env = TestEnv::new();
    let (n, m) = (4, 25);
    // Bodies longer than a page, so an interleaved write would show.
    let body = "x".repeat(5000);
    std::thread::scope(|s| {
        for i in 0..n {
            let (env, body) = (&env, &body);
            s.spawn(move || {
                for j in 0..m {
                    let subject = format!("{i}-{j}");
                    ok(
                        env,
                        "overseer",
                        &["send", "mayor", "-s", &subject, "-m", body],
                    );
                }
            });
        }
    });
    let raw = std::fs::read_to_string(env.inbox_path("mayor")).unwrap();
    assert_eq!(raw.lines().count(), n * m);
    let got = env.inbox("mayor");
    assert!(
        got.iter()
            .all(|v| v["body"].as_str() == Some(body.as_str()))
    );
    let set: BTreeSet<String> = subjects(&got).into_iter().collect();
    let want: BTreeSet<String> = (0..n)
        .flat_map(|i| (0..m).map(move |j| format!("{i}-{j}")))
        .collect();
    assert_eq!(set, want);
    let ids: BTreeSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n * m);
}

#[test]
fn killed_senders_never_corrupt_other_mail() {
    let env = TestEnv::new();
    let inbox = env.inbox_path("mayor");
    // A writer killed mid-line, by hand: the next send starts a fresh line and
    // readers, check and doctor name the torn line.
    std::fs::write(&inbox, "{\"id\":\"dead\",\"from\":\"x\",\"bo").unwrap();
    let out = run(&env, "gt-mail", "mayor", &["check"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{}:1: incomplete last line (a killed writer's torn line, or a write in progress)\n",
            inbox.display()
        )
    );
    ok(
        &env,
        "overseer",
        &["send", "mayor", "-s", "after", "-m", "b"],
    );
    let raw = std::fs::read_to_string(&inbox).unwrap();
    let (torn, rest) = raw.split_once('\n').unwrap();
    assert_eq!(torn, "{\"id\":\"dead\",\"from\":\"x\",\"bo");
    assert_eq!(
        serde_json::from_str::<Value>(rest.trim_end()).unwrap()["subject"],
        "after"
    );

    // Real kills at scattered moments: 24 senders of page-crossing messages,
    // every other one killed after a growing delay.
    let body = "k".repeat(6000);
    let mut children = Vec::new();
    for i in 0..24 {
        let child = mail_cmd(&env, "gt-mail", "overseer")
            .args(["send", "mayor", "-s", &format!("k{i}"), "-m", &body])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push((i, child));
    }
    let mut exited_ok = Vec::new();
    for (i, mut child) in children {
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_micros(150 * i as u64));
            let _ = child.kill();
        }
        if child.wait().unwrap().success() {
            exited_ok.push(format!("k{i}"));
        }
    }
    ok(
        &env,
        "overseer",
        &["send", "mayor", "-s", "last", "-m", "b"],
    );
    let raw = std::fs::read(&inbox).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut bad = 0;
    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => {
                *seen
                    .entry(v["subject"].as_str().unwrap().to_string())
                    .or_default() += 1
            }
            Err(_) => bad += 1,
        }
    }
    for s in &exited_ok {
        assert_eq!(
            seen.get(s),
            Some(&1),
            "{s} exited 0 but is not there exactly once"
        );
    }
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(seen.get("last"), Some(&1));
    // Every bad line (the hand-torn one, and any from a kill) is reported.
    let out = run(&env, "gt-mail", "mayor", &["check"]);
    let report = String::from_utf8(out.stdout).unwrap();
    assert_eq!(report.lines().count(), bad, "{report}");
    assert!(
        report.starts_with(&format!("{}:1: not JSON", inbox.display())),
        "{report}"
    );
}

#[test]
fn a_full_disk_fails_the_send_and_leaves_the_inbox_readable() {
    let env = TestEnv::new();
    ok(
        &env,
        "overseer",
        &["send", "mayor", "-s", "before", "-m", "b"],
    );
    let inbox = env.inbox_path("mayor");
    let before = std::fs::read(&inbox).unwrap();
    // An injected write error: the file size limit stops the write part-way
    // (EFBIG, like ENOSPC), exactly where a full disk would.
    let limit = before.len() as u64 + 100;
    let mut cmd = mail_cmd(&env, "gt-mail", "overseer");
    cmd.args([
        "send",
        "mayor",
        "-s",
        "too big for the disk",
        "-m",
        &"z".repeat(4000),
    ]);
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-mail: {}: File too large (os error 27)\n",
            inbox.display()
        )
    );
    assert_eq!(
        std::fs::read(&inbox).unwrap(),
        before,
        "the torn write was cut back"
    );
    assert_eq!(unread(&env, "mayor").len(), 1);
    ok(
        &env,
        "overseer",
        &["send", "mayor", "-s", "after", "-m", "b"],
    );
    assert_eq!(subjects(&jsonl(&inbox)), vec!["before", "after"]);
}

#[test]
fn archiving_during_sends_loses_nothing() {
    let env = TestEnv::new();
    let (senders, batches, per) = (3, 6, 10);
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..senders {
            let (env, done) = (&env, &done);
            s.spawn(move || {
                for b in 0..batches {
                    let input: String = (0..per)
                        .map(|k| {
                            format!(
                                "{{\"to\":\"mayor\",\"subject\":\"{i}-{b}-{k}\",\"body\":\"\"}}\n"
                            )
                        })
                        .collect();
                    let out = deliver(env, "overseer", &input);
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        // Meanwhile: read everything and archive, over and over.
        while done.load(std::sync::atomic::Ordering::SeqCst) < senders {
            ok(&env, "mayor", &["ack", "--all"]);
            ok(&env, "mayor", &["archive"]);
        }
    });
    ok(&env, "mayor", &["ack", "--all"]);
    ok(&env, "mayor", &["archive"]);
    let mut all = env.inbox("mayor");
    assert!(all.is_empty());
    for f in std::fs::read_dir(env.town.join("mayor/mail/archive")).unwrap() {
        all.extend(jsonl(&f.unwrap().path()));
    }
    let mut got = subjects(&all);
    got.sort();
    let mut want: Vec<String> = (0..senders)
        .flat_map(|i| (0..batches).flat_map(move |b| (0..per).map(move |k| format!("{i}-{b}-{k}"))))
        .collect();
    want.sort();
    assert_eq!(got, want, "every message archived exactly once");
    assert_eq!(
        std::fs::read(env.town.join("mayor/mail/read.jsonl")).unwrap(),
        b""
    );
}

/// Lines from a child's stdout or stderr, as they come (read to the end, so
/// the child never blocks on a full pipe while the receiver lives).
fn line_channel(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn take(rx: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => out.push(
                serde_json::from_str::<Value>(&l).unwrap()["subject"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Err(e) => panic!(
                "waiting for line {} of {n}: {e:?}; got {out:?}",
                out.len() + 1
            ),
        }
    }
    out
}

fn batch(prefix: &str, n: usize) -> (String, Vec<String>) {
    let subjects: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let input = subjects
        .iter()
        .map(|s| format!("{{\"to\":\"mayor\",\"subject\":\"{s}\",\"body\":\"\"}}\n"))
        .collect();
    (input, subjects)
}

#[test]
fn watch_prints_each_message_once_across_overflow_and_restarts() {
    let env = TestEnv::new();
    let (input, early) = batch("early", 3);
    assert!(deliver(&env, "overseer", &input).status.success());

    let start = || {
        mail_cmd(&env, "gt-mail", "mayor")
            .arg("watch")
            .env("GT_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut w = start();
    let rx = line_channel(w.stdout.take().unwrap());
    let log = line_channel(w.stderr.take().unwrap());
    assert_eq!(take(&rx, 3), early, "pending mail is printed at start");
    let (input, live) = batch("live", 2);
    assert!(deliver(&env, "overseer", &input).status.success());
    assert_eq!(take(&rx, 2), live, "new mail is printed as it arrives");

    // Overflow the kernel queue while the watcher is stopped: thousands of
    // events in its mail directory, with mail among them.
    let pid = nix::unistd::Pid::from_raw(w.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (input, flood) = batch("flood", 20);
    assert!(deliver(&env, "overseer", &input).status.success());
    let junk = env.town.join("mayor/mail/junk");
    for i in 0..9000 {
        std::fs::write(junk.with_extension(i.to_string()), b"").unwrap();
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(take(&rx, 20), flood);
    for i in 0..9000 {
        std::fs::remove_file(junk.with_extension(i.to_string())).unwrap();
    }

    // The overflow path ran (its log line may come after the mail was printed:
    // the overflow marker is queued behind the events that came first).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the watcher logs the inotify overflow");
        if line.contains("inotify overflow; rescanning") {
            break;
        }
    }

    // Stop it (SIGTERM waits for the batch to be marked), send more, restart.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    w.wait().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).ok(),
        None,
        "no duplicates"
    );

    let (input, later) = batch("later", 4);
    assert!(deliver(&env, "overseer", &input).status.success());
    let mut w = start();
    let rx = line_channel(w.stdout.take().unwrap());
    let _log = line_channel(w.stderr.take().unwrap());
    assert_eq!(take(&rx, 4), later, "a restart resumes where it stopped");
    let pid = nix::unistd::Pid::from_raw(w.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    w.wait().unwrap();
    assert_eq!(ok(&env, "mayor", &["watch", "--once"]), "");
    // Another name is another cursor: it sees everything once.
    let all = ok(&env, "mayor", &["watch", "--once", "--name", "audit"]);
    assert_eq!(all.lines().count(), 3 + 2 + 20 + 4);
}
