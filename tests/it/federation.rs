//! Federation against a real OpenSSH server: each test starts its own `sshd`
//! on 127.0.0.1 (a random port, its own host key and config) whose
//! authorized_keys holds the forced commands `gt machines authorize` prints,
//! and two towns on this machine, `a` and `b`, that reach each other through
//! it. Loopback only; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    NOW, TestEnv, edit_json, git, have_tool, jsonl, jsonl_ids, ok_output, read_json, wait_until,
};

const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd, killed when dropped.
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Keys and config in `dir`; not started.
    fn new(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        keygen(&dir.join("host_key"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let host = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host}"),
        )
        .unwrap();
        // sshd run as root wants its privilege-separation directory.
        if nix::unistd::getuid().is_root() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        Sshd {
            dir: dir.to_path_buf(),
            port,
            child: None,
        }
    }

    /// Start it and return once it listens.
    fn start(&mut self) {
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        let log = self.dir.join("sshd.log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{line}");
                if line.contains("Server listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("sshd did not start; see {}", self.dir.display()));
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gt-test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two towns, `a` and `b`, each registered in the other's federation.json,
/// with one sshd standing in for both machines.
struct Pair {
    a: TestEnv,
    b: TestEnv,
    sshd: Sshd,
}

/// `None` (the test skips) without sshd, except under CI=true.
fn pair(a_grants: &[&str], b_grants: &[&str]) -> Option<Pair> {
    if !(have_tool("ssh") && have_tool("ssh-keygen") && have_tool(SSHD)) {
        return None;
    }
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let mut sshd = Sshd::new(&a.path().join("sshd"));
    let keys = a.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    for (env, me, other, other_env, grants) in
        [(&a, "a", "b", &b, b_grants), (&b, "b", "a", &a, a_grants)]
    {
        let key = keys.join(format!("key_{me}"));
        keygen(&key);
        std::fs::write(
            env.town.join("config/federation.json"),
            serde_json::to_vec_pretty(&json!({
                "version": 1,
                "machine": me,
                "machines": { other: {
                    "transport": "ssh",
                    "host": "127.0.0.1",
                    "port": sshd.port,
                    "identity": key,
                    "town": other_env.town.canonicalize().unwrap(),
                    "ssh_options": ssh_options(&sshd),
                    "grants": grants,
                }},
            }))
            .unwrap(),
        )
        .unwrap();
    }
    // Each town authorizes the other's key, with the line gt prints.
    let mut lines = String::new();
    for (env, other) in [(&a, "b"), (&b, "a")] {
        let key = keys.join(format!("key_{other}.pub"));
        lines.push_str(&env.ok(
            "gt",
            &["machines", "authorize", other, key.to_str().unwrap()],
        ));
    }
    std::fs::write(sshd.dir.join("authorized_keys"), &lines).unwrap();
    sshd.start();
    Some(Pair { a, b, sshd })
}

fn ssh_options(sshd: &Sshd) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        &format!(
            "UserKnownHostsFile={}",
            sshd.dir.join("known_hosts").display()
        ),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
    ]
    .map(str::to_string)
    .to_vec()
}

impl Pair {
    /// Run `ssh` with machine `a`'s key (as `a` would reach `b`) and `words`.
    fn ssh_as_a(&self, words: &[&str]) -> std::process::Output {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes"])
            .args(ssh_options(&self.sshd))
            .arg("-p")
            .arg(self.sshd.port.to_string())
            .arg("-i")
            .arg(self.a.path().join("keys/key_a"))
            .arg("127.0.0.1")
            .args(words)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn mail_goes_both_ways_with_machine_qualified_senders() {
    let Some(p) = pair(&["deliver"], &["deliver"]) else {
        return;
    };
    p.b.add_rig("wyvern");
    let out = p.a.ok(
        "gt",
        &["send", "b:wyvern/witness", "-s", "hello", "-m", "from a"],
    );
    let got = p.b.inbox("wyvern/witness");
    assert_eq!(got.len(), 1, "{got:?}");
    let id = got[0]["id"].as_str().unwrap();
    assert_eq!(out, format!("sent {id} to b:wyvern/witness\n"));
    assert_eq!(got[0]["from"], "a:overseer");
    assert_eq!(got[0]["to"], "wyvern/witness");
    assert_eq!(got[0]["body"], "from a");
    assert_eq!(
        std::fs::read(p.a.town.join("federation/outbox/b.jsonl")).unwrap(),
        b""
    );

    // The answer goes back the same way, from b's witness to a's overseer.
    let reply = p.b.ok(
        "gt",
        &[
            "send",
            "--as",
            "wyvern/witness",
            "a:overseer",
            "-s",
            "re: hello",
            "-m",
            "ok",
            "--reply-to",
            id,
        ],
    );
    let back = p.a.inbox("overseer");
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["from"], "b:wyvern/witness");
    assert_eq!(back[0]["reply_to"], id);
    assert!(reply.starts_with("sent msg-"), "{reply}");

    // The local machine's own name is local.
    p.a.ok("gt", &["send", "a:mayor", "-s", "local", "-m", "x"]);
    assert_eq!(p.a.inbox("mayor")[0]["from"], "overseer");
    let listed =
        p.a.ok("gt", &["mail", "inbox", "--as", "a:mayor", "--json"]);
    assert_eq!(
        jsonl_ids(&listed),
        [p.a.inbox("mayor")[0]["id"].as_str().unwrap()]
    );
    let (_, err) = p.a.fails("gt", &["mail", "inbox", "--as", "b:mayor"]);
    assert!(
        err.contains("b:mayor is an agent of machine b: only mail reaches it from here"),
        "{err}"
    );

    // A wrong address is refused by the other town, with its did-you-mean.
    let (code, err) =
        p.a.fails("gt", &["send", "b:wyvern/witnes", "-s", "s", "-m", "m"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean wyvern/witness?"), "{err}");
    let refused = jsonl(&p.a.town.join("federation/outbox/b.refused.jsonl"));
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["to"], "wyvern/witnes");
    assert_eq!(p.b.inbox("wyvern/witness").len(), 1);

    // An unknown machine is refused here, with a did-you-mean too.
    let (code, err) = p.a.fails("gt", &["send", "bb:mayor", "-s", "s", "-m", "m"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no machine \"bb\"") && err.contains("did you mean b?"),
        "{err}"
    );

    // gt machines: one round trip each.
    let seen: Value = serde_json::from_str(&p.a.ok("gt", &["machines", "--json"])).unwrap();
    assert_eq!(
        seen,
        json!([{"name": "b", "reachable": true, "last_seen_age_s": 0, "error": null}])
    );
    // The spool, the refused mail and the federated inbox lines match their schemas.
    for env in [&p.a, &p.b] {
        let problems = crate::schema::check_town(&env.town);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn the_forced_command_refuses_everything_but_granted_verbs() {
    let Some(p) = pair(&["deliver"], &["deliver"]) else {
        return;
    };
    let log = p.b.town.join("federation/refusals.jsonl");
    for words in [
        &["id"][..],
        &["gt", "rig", "add", "x", "/tmp"],
        &["gt", "status", "--json"],
    ] {
        let o = p.ssh_as_a(words);
        assert_eq!(o.status.code(), Some(2), "{words:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("gt remote: refused: "),
            "{}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), "");
    }
    let lines = jsonl(&log);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["from"], "a");
    assert_eq!(lines[0]["command"], "id");
    assert_eq!(lines[1]["command"], "gt rig add x /tmp");
    assert_eq!(
        lines[2]["reason"],
        format!(
            "status is not granted to machine a (\"grants\" in {}/config/federation.json)",
            p.b.town.canonicalize().unwrap().display()
        )
    );
    // Nothing ran: no rig was added.
    assert!(!p.b.town.join("x").exists());
    let problems = crate::schema::check_town(&p.b.town);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A shell's metacharacters are words, not a shell.
    let o = p.ssh_as_a(&["gt", "ping;", "touch", "/tmp/gt-federation-pwned"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!Path::new("/tmp/gt-federation-pwned").exists());
    // ping needs no grant.
    let o = p.ssh_as_a(&["gt", "ping"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["machine"], "b");

    // A not granted status shows as such in gt status --all-machines.
    let out = p.a.ok("gt", &["status", "--all-machines", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["machines"][0]["name"], "b");
    assert_eq!(v["machines"][0]["reachable"], true);
    assert!(v["machines"][0]["status"].is_null());
    assert!(
        v["machines"][0]["error"]
            .as_str()
            .unwrap()
            .contains("status is not granted"),
        "{v}"
    );
}

#[test]
fn status_shows_every_machine_and_an_unreachable_one_with_its_age() {
    let Some(mut p) = pair(&["deliver", "status"], &["deliver", "status"]) else {
        return;
    };
    p.b.add_rig("wyvern");
    let v: Value =
        serde_json::from_str(&p.a.ok("gt", &["status", "--all-machines", "--json"])).unwrap();
    assert_eq!(v["machine"], "a");
    assert_eq!(v["local"]["root"], json!(p.a.town.canonicalize().unwrap()));
    let b = &v["machines"][0];
    assert_eq!(b["name"], "b");
    assert_eq!(b["reachable"], true);
    assert_eq!(b["status"]["rigs"][0]["name"], "wyvern");
    let text = p.a.ok("gt", &["status", "--all-machines"]);
    assert!(text.starts_with("machine a (here)\ntown "), "{text}");
    assert!(text.contains("\nmachine b\ntown "), "{text}");
    assert!(text.contains("wyvern/witness"), "{text}");

    p.sshd.stop();
    let text = p.a.ok("gt", &["status", "--all-machines"]);
    assert!(
        text.contains(
            "machine b: unreachable (last seen 0s ago): ssh: connect to host 127.0.0.1 port"
        ),
        "{text}"
    );
    let seen: Value = serde_json::from_str(&p.a.ok("gt", &["machines", "--json"])).unwrap();
    assert_eq!(seen[0]["reachable"], false);
    assert_eq!(seen[0]["last_seen_age_s"], 0);
    assert!(
        seen[0]["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{seen}"
    );
}

#[test]
fn mail_waits_in_the_spool_while_the_machine_is_down_then_arrives_once() {
    let Some(mut p) = pair(&["deliver"], &["deliver"]) else {
        return;
    };
    p.sshd.stop();
    let spool = p.a.town.join("federation/outbox/b.jsonl");
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = p.a.ok(
            "gt",
            &["send", "b:mayor", "-s", &format!("m{i}"), "-m", "x"],
        );
        assert!(
            out.starts_with(&format!(
                "queued for b: ssh: connect to host 127.0.0.1 port {}: Connection refused",
                p.sshd.port
            )),
            "{out}"
        );
        ids.push(jsonl(&spool)[i]["id"].as_str().unwrap().to_string());
    }
    let (code, _) = p.a.fails("gt", &["mail", "flush", "b"]);
    assert_eq!(code, 1, "mail still waits");
    assert_eq!(jsonl(&spool).len(), 3);
    assert!(p.b.inbox("mayor").is_empty());

    p.sshd.start();
    // Four failed tries: the daemon leaves b alone for 80s (see the backoff test).
    let v: Value = serde_json::from_str(&ok_output(
        p.a.cmd("gt")
            .args(["daemon", "tick", "--json"])
            .env("GT_NOW", "2026-11-25T09:10:00Z"),
    ))
    .unwrap();
    assert!(
        v.as_array().unwrap().contains(&json!({
            "subject": "b", "action": "mail-delivered", "detail": "3 delivered, 0 already there"
        })),
        "{v}"
    );
    let got: Vec<String> =
        p.b.inbox("mayor")
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(got, ids, "in the order sent, once each");
    assert_eq!(std::fs::read(&spool).unwrap(), b"");
    assert_eq!(
        p.a.ok("gt", &["mail", "flush"]),
        "",
        "nothing waits: nothing to say"
    );

    // A spool put back by hand (a crash before the spool was trimmed) is
    // sent again, and the receiver drops what it holds.
    let again = std::fs::read_to_string(p.b.inbox_path("mayor")).unwrap();
    std::fs::write(&spool, again).unwrap();
    assert_eq!(
        p.a.ok("gt", &["mail", "flush", "b"]),
        "b: 0 delivered, 3 already there, 0 refused, 0 waiting\n"
    );
    assert_eq!(p.b.inbox("mayor").len(), 3);
}

/// The ssh client killed while the receiver is inside the delivery: the
/// message stays spooled, the next flush finds it delivered, and the inbox
/// holds it once.
#[test]
fn a_killed_ssh_mid_delivery_still_delivers_exactly_once() {
    let Some(p) = pair(&["deliver"], &["deliver"]) else {
        return;
    };
    p.b.add_rig("wyvern");
    let inbox_lock = p.b.town.join("wyvern/witness/mail/inbox.lock");
    let held = gastown::fsio::lock_file(&inbox_lock).unwrap();
    let send =
        p.a.cmd("gt")
            .args(["send", "b:wyvern/witness", "-s", "once", "-m", "only once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    // The receiver holds its delivery lock while it waits for the inbox's.
    let deliver_lock = p.b.town.join("federation/deliver.lock");
    assert!(
        wait_until(30, || deliver_lock.exists()
            && gastown::fsio::try_lock_file(&deliver_lock)
                .unwrap()
                .is_none()),
        "the receiver never started delivering"
    );
    let ssh = children(send.id())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "ssh\n")
        })
        .expect("gt send runs ssh");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ssh),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = send.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("queued for b: "),
        "{}",
        stdout(&out)
    );
    let spooled = jsonl(&p.a.town.join("federation/outbox/b.jsonl"));
    assert_eq!(spooled.len(), 1);

    // The receiver finishes its append once the inbox is free.
    drop(held);
    assert!(
        wait_until(30, || p.b.inbox("wyvern/witness").len() == 1),
        "the receiver's append never came"
    );
    assert_eq!(
        p.a.ok("gt", &["mail", "flush", "b"]),
        "b: 0 delivered, 1 already there, 0 refused, 0 waiting\n"
    );
    let got = p.b.inbox("wyvern/witness");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], spooled[0]["id"]);
}

/// Child pids of `pid` (all its threads).
fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

#[test]
fn a_bad_registry_is_refused_naming_the_file_and_field() {
    let env = TestEnv::new();
    let path = env.town.join("config/federation.json");
    std::fs::write(
        &path,
        r#"{"version":1,"machine":"a","machines":{"b":{"host":"-oProxyCommand=x","town":"/t"}}}"#,
    )
    .unwrap();
    let (code, err) = env.fails("gt", &["machines"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "gt: {}: machine \"b\": \"host\" is \"-oProxyCommand=x\": it must be non-empty, without spaces, and not start with '-'\n",
            path.canonicalize().unwrap().display()
        )
    );
    edit_json(&path, |v| v["machines"]["b"]["host"] = json!("h"));
    edit_json(&path, |v| v["machines"]["b"]["grants"] = json!(["shell"]));
    let (_, err) = env.fails("gt", &["send", "b:mayor", "-s", "s", "-m", "m"]);
    assert!(
        err.contains("grant \"shell\" is not one of deliver, status, spawn, kill, capture"),
        "{err}"
    );
    assert!(!env.town.join("federation").exists(), "nothing written");
}

#[test]
fn kill_and_capture_reach_another_machines_agents_when_granted() {
    let Some(p) = pair(&["kill", "capture"], &["deliver"]) else {
        return;
    };
    p.b.add_rig("wyvern");
    p.b.ok("gt", &["polecat", "add", "wyvern", "Nux"]);
    assert_eq!(
        p.a.ok("gt", &["kill", "b:wyvern/Nux"]),
        "b:wyvern/Nux was not running\n"
    );
    let (code, err) = p.a.fails("gt", &["capture", "b:wyvern/Nux"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "gt: b: gt: wyvern/Nux has no live session (its state.json names none)\n"
    );
    let (_, err) = p.a.fails("gt", &["capture", "b:wyvern/Nux", "ls"]);
    assert!(
        err.contains("typing into another machine's session is not served"),
        "{err}"
    );
    // b did not grant kill to a: refused there, and logged.
    let (code, err) = p.b.fails("gt", &["kill", "a:mayor"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("a: gt remote: refused: kill is not granted to machine b"),
        "{err}"
    );
    assert_eq!(jsonl(&p.a.town.join("federation/refusals.jsonl")).len(), 1);
}

/// An unreachable machine is tried again after 10s, 20s, 40s, ... up to 600s
/// by the daemon and `gt mail flush`; `gt mail flush b` tries at once; an
/// answer ends the backoff. The clock is GT_NOW.
#[test]
fn the_flushers_back_off_from_an_unreachable_machine() {
    let Some(mut p) = pair(&["deliver"], &["deliver"]) else {
        return;
    };
    p.sshd.stop();
    let at = |secs: u64| {
        let t: jiff::Timestamp = NOW.parse().unwrap();
        t.checked_add(jiff::SignedDuration::from_secs(secs as i64))
            .unwrap()
            .to_string()
    };
    let tick = |secs: u64| -> Value {
        serde_json::from_str(&ok_output(
            p.a.cmd("gt")
                .args(["daemon", "tick", "--json"])
                .env("GT_NOW", at(secs)),
        ))
        .unwrap()
    };
    let file = p.a.town.join("federation/backoff/b.json");
    let refused = format!(
        "ssh: connect to host 127.0.0.1 port {}: Connection refused",
        p.sshd.port
    );
    let out = p.a.ok("gt", &["send", "b:mayor", "-s", "s", "-m", "m"]);
    assert_eq!(out, format!("queued for b: {refused}\n"));
    assert_eq!(
        read_json(&file),
        json!({"failures": 1, "delay_s": 10, "cap_s": 600, "since": NOW,
               "last_try": NOW, "next_try": at(10), "error": refused})
    );
    // Before next_try no ssh runs: the file is as it was.
    let v = tick(9);
    assert_eq!(
        v,
        json!([{"subject": "b", "action": "mail-queued", "detail": format!(
            "1 waiting: not tried: backing off until {} after 1 failure(s) in a row (last: {refused})",
            at(10)
        )}])
    );
    assert_eq!(read_json(&file)["last_try"], NOW);
    // At next_try it tries, fails, and waits twice as long.
    tick(10);
    let b = read_json(&file);
    assert_eq!(
        (
            &b["failures"],
            &b["delay_s"],
            &b["last_try"],
            &b["next_try"]
        ),
        (&json!(2), &json!(20), &json!(at(10)), &json!(at(30)))
    );
    let (code, _) = p.a.fails("gt", &["mail", "flush"]);
    assert_eq!(code, 1);
    assert_eq!(
        read_json(&file)["failures"],
        2,
        "gt mail flush backs off too"
    );
    // By hand, one machine: at once.
    let (code, _) = p.a.fails("gt", &["mail", "flush", "b"]);
    assert_eq!(code, 1);
    assert_eq!(read_json(&file)["failures"], 3);
    assert_eq!(read_json(&file)["delay_s"], 40);
    assert_eq!(read_json(&file)["since"], NOW);
    // The wait is capped at 600s.
    edit_json(&file, |v| v["failures"] = json!(12));
    tick(3600);
    let b = read_json(&file);
    assert_eq!((&b["failures"], &b["delay_s"]), (&json!(13), &json!(600)));
    assert_eq!(b["next_try"], at(4200));
    let problems = crate::schema::check_town(&p.a.town);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // An answer ends it.
    p.sshd.start();
    assert!(tick(4199).to_string().contains("not tried: backing off"));
    assert_eq!(
        p.a.ok("gt", &["mail", "flush", "b"]),
        "b: 1 delivered, 0 already there, 0 refused, 0 waiting\n"
    );
    assert!(!file.exists());
    assert_eq!(p.b.inbox("mayor").len(), 1);
}

/// A pair whose towns both have rig `wyvern` cloned from one origin; b's
/// agents run `agent` (a stand-in for an AI agent). a may spawn, ask the
/// status of and kill workers on b; b may deliver mail to a.
fn worker_pair(agent: &str) -> Option<(Pair, PathBuf)> {
    let p = pair(&["spawn", "status", "kill"], &["deliver"])?;
    let origin = p.a.bare_origin("wyvern-origin");
    for env in [&p.a, &p.b] {
        env.ok("gt", &["rig", "add", "wyvern", origin.to_str().unwrap()]);
    }
    edit_json(&p.b.town.join("wyvern/config.json"), |cfg| {
        cfg["agent_command"] = agent.into();
    });
    Some((p, origin))
}

fn actions(env: &TestEnv, args: &[&str]) -> Vec<(String, String)> {
    crate::common::action_pairs(&env.ok("gt", args))
}

/// The stand-in commits a file and runs `gt done`, which pushes the branch
/// to origin and mails the home Witness on a.
const DILIGENT: &str = "echo \"$GT_HOME_MACHINE\" > work.txt && git add work.txt && git -c user.name=b -c user.email=b@b commit -qm 'remote work' && gt done";

#[test]
fn a_remote_worker_goes_from_spawn_to_a_merged_commit_on_origins_main() {
    let Some((p, origin)) = worker_pair(DILIGENT) else {
        return;
    };
    let id = p.a.issue("wyvern", "work elsewhere");
    let out = p.a.ok("gt", &["spawn", "--machine", "b", "--issue", &id]);
    assert!(
        out.starts_with(&format!(
            "spawned b:wyvern/Nux (generation 1) on {id}; session "
        )) && out.ends_with(" on b\n"),
        "{out}"
    );
    let issue: Value =
        serde_json::from_str(&p.a.ok("gt", &["issue", "--rig", "wyvern", "show", &id, "--json"]))
            .unwrap();
    assert_eq!(issue["assignee"], "b:wyvern/Nux");
    let record = p.a.town.join("federation/workers/wyvern/Nux.json");
    let w = read_json(&record);
    assert_eq!(
        (&w["machine"], &w["issue"], &w["status"], &w["generation"]),
        (&json!("b"), &json!(id), &json!("working"), &json!(1))
    );
    // b's polecat works for a: its issue is a's, not claimed in b's tracker.
    let works_for = read_json(&p.b.town.join("wyvern/polecats/Nux/works-for.json"));
    assert_eq!(works_for["machine"], "a");
    assert_eq!(works_for["issue"]["title"], "work elsewhere");

    // Its gt done pushed polecat/Nux to origin and mailed a's Witness.
    assert!(
        wait_until(60, || p.a.inbox("wyvern/witness").len() == 1),
        "no done signal reached a; b's session log: {}",
        std::fs::read_to_string(p.b.town.join("wyvern/polecats/Nux/session.log"))
            .unwrap_or_default()
    );
    let done = &p.a.inbox("wyvern/witness")[0];
    assert_eq!(
        (&done["from"], &done["type"], &done["generation"]),
        (&json!("b:wyvern/Nux"), &json!("done"), &json!(1))
    );
    let pushed = git(&origin, &["rev-parse", "refs/heads/polecat/Nux"]);
    // The session's environment named its home.
    assert_eq!(git(&origin, &["show", "polecat/Nux:work.txt"]), "a\n");
    // b's own Witness leaves a's worker alone.
    assert_eq!(
        actions(&p.b, &["witness", "patrol", "wyvern", "--json"]),
        Vec::<(String, String)>::new()
    );

    // a's Witness asks b for the clone's state, checks origin, and queues.
    let acts = actions(&p.a, &["witness", "patrol", "wyvern", "--json"]);
    assert_eq!(
        acts.last().unwrap(),
        &("submitted".to_string(), "b:wyvern/Nux".to_string()),
        "{acts:?}"
    );
    assert_eq!(read_json(&record)["status"], "queued");
    let pending: Vec<PathBuf> = std::fs::read_dir(p.a.town.join("wyvern/refinery/queue/pending"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pending.len(), 1);
    let entry = read_json(&pending[0]);
    assert_eq!(
        (&entry["polecat"], &entry["machine"], &entry["branch"]),
        (&json!("wyvern/Nux"), &json!("b"), &json!("polecat/Nux"))
    );

    // The Refinery merges it from origin.
    p.a.ok("gt", &["refinery", "process", "wyvern", "--once"]);
    let main_log = git(&origin, &["log", "--format=%s", "main"]);
    assert!(main_log.contains("remote work"), "{main_log}");
    let merged = git(&origin, &["rev-parse", "main"]);
    let merged_has_it = Command::new("git")
        .current_dir(&origin)
        .args(["merge-base", "--is-ancestor", pushed.trim(), merged.trim()])
        .status()
        .unwrap();
    assert!(merged_has_it.success());
    let issue: Value =
        serde_json::from_str(&p.a.ok("gt", &["issue", "--rig", "wyvern", "show", &id, "--json"]))
            .unwrap();
    assert_eq!(issue["status"], "closed");
    // The merge result frees the record.
    assert_eq!(
        actions(&p.a, &["witness", "patrol", "wyvern", "--json"]),
        [("freed".to_string(), "b:wyvern/Nux".to_string())]
    );
    assert!(!record.exists());
    for env in [&p.a, &p.b] {
        let problems = crate::schema::check_town(&env.town);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn a_remote_spawn_is_refused_when_the_rig_differs_and_the_claim_released() {
    let Some(p) = pair(&["spawn", "status", "kill"], &["deliver"]) else {
        return;
    };
    p.a.add_rig("wyvern");
    let id = p.a.issue("wyvern", "work elsewhere");
    let (code, err) =
        p.a.fails("gt", &["spawn", "--machine", "b", "--issue", &id]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no rig wyvern here for a worker of machine a"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{id} is released (open again)")),
        "{err}"
    );
    // A rig of that name, cloned from elsewhere.
    p.b.add_rig("wyvern");
    let (code, err) =
        p.a.fails("gt", &["spawn", "--machine", "b", "--issue", &id]);
    assert_eq!(code, 2);
    let a_url = read_json(&p.a.town.join("wyvern/config.json"))["git_url"].clone();
    let b_url = read_json(&p.b.town.join("wyvern/config.json"))["git_url"].clone();
    assert!(
        err.contains(&format!(
            "rig wyvern here clones {}, machine a's clones {}: a remote worker needs a rig of the same name and git_url",
            b_url.as_str().unwrap(),
            a_url.as_str().unwrap()
        )),
        "{err}"
    );
    let issue: Value =
        serde_json::from_str(&p.a.ok("gt", &["issue", "--rig", "wyvern", "show", &id, "--json"]))
            .unwrap();
    assert_eq!(issue["status"], "open");
    assert!(issue["assignee"].is_null(), "{issue}");
    assert_eq!(
        std::fs::read_dir(p.a.town.join("federation/workers/wyvern"))
            .unwrap()
            .count(),
        0
    );
    assert!(!p.b.town.join("wyvern/polecats/Nux").exists());
}

#[test]
fn stop_all_reaches_a_remote_worker_and_releases_its_issue() {
    let Some((p, _)) = worker_pair("exec sleep 1000") else {
        return;
    };
    let id = p.a.issue("wyvern", "sleep elsewhere");
    p.a.ok("gt", &["spawn", "--machine", "b", "--issue", &id]);
    let nux = p.b.town.join("wyvern/polecats/Nux");
    let session = p.b.state(&nux)["session"].as_str().unwrap().to_string();
    assert_eq!(
        read_json(&p.a.town.join("federation/workers/wyvern/Nux.json"))["session"],
        session
    );
    // gt prime there shows the home's issue.
    let prime: Value = serde_json::from_str(&ok_output(
        p.b.cmd("gt")
            .args(["prime", "--json"])
            .env("GT_ADDRESS", "wyvern/Nux"),
    ))
    .unwrap();
    assert_eq!(prime["issue"]["title"], "sleep elsewhere");
    let status = p.a.ok("gt", &["status"]);
    let rows: Vec<Vec<&str>> = status
        .lines()
        .skip_while(|l| !l.starts_with("REMOTE WORKER"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec![
                "REMOTE",
                "WORKER",
                "ISSUE",
                "STATUS",
                "GENERATION",
                "SPAWNED"
            ],
            vec!["b:wyvern/Nux", &id, "working", "1", NOW]
        ],
        "{status}"
    );
    let v: Value = serde_json::from_str(&p.a.ok("gt", &["status", "--json"])).unwrap();
    assert_eq!(v["remote_workers"][0]["machine"], "b");
    let out = p.a.ok("gt", &["stop", "--all"]);
    assert!(
        out.contains(&format!(
            "stopped b:wyvern/Nux\n  released {id} (open again)\n"
        )),
        "{out}"
    );
    assert!(
        !gastown::session::is_alive(&session),
        "{session} still runs"
    );
    assert!(p.b.state(&nux)["session"].is_null());
    assert_eq!(p.b.state(&nux)["status"], "idle");
    let issue: Value =
        serde_json::from_str(&p.a.ok("gt", &["issue", "--rig", "wyvern", "show", &id, "--json"]))
            .unwrap();
    assert!(issue["assignee"].is_null(), "{issue}");
    assert!(!p.a.town.join("federation/workers/wyvern/Nux.json").exists());
}
