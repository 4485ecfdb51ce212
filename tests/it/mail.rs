//! gt-mail: the seed spellings, addresses, read state, hand edits, the shell
//! protocol, handoff and bad input. Fault tests are in mail_faults.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{NOW, TestEnv, jsonl, jsonl_ids};

/// `gt-mail` (or `gt`) acting as `who`.
pub fn mail_cmd(env: &TestEnv, bin: &str, who: &str) -> Command {
    let mut c = env.cmd(bin);
    c.env("GT_ADDRESS", who);
    c
}

pub fn run(env: &TestEnv, bin: &str, who: &str, args: &[&str]) -> Output {
    mail_cmd(env, bin, who).args(args).output().expect("spawn")
}

pub fn ok(env: &TestEnv, who: &str, args: &[&str]) -> String {
    let out = run(env, "gt-mail", who, args);
    assert!(
        out.status.success(),
        "gt-mail {args:?} as {who}: {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Feed `input` to `gt-mail deliver` as `who`.
pub fn deliver(env: &TestEnv, who: &str, input: &str) -> Output {
    use std::io::Write;
    let mut child = mail_cmd(env, "gt-mail", who)
        .arg("deliver")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A process that refuses early (bad identity) may close stdin unread.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// `inbox --json` as `who`: the ids listed.
pub fn unread(env: &TestEnv, who: &str) -> Vec<String> {
    jsonl_ids(&ok(env, who, &["inbox", "--json"]))
}

#[test]
fn seed_spelling_sends_and_inbox_reads() {
    let env = TestEnv::new();
    let out = run(
        &env,
        "gt",
        "overseer",
        &["send", "mayor", "-s", "Subject", "-m", "Message"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = env.inbox("mayor");
    assert_eq!(stored.len(), 1);
    let id = stored[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("msg-"), "{id}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("sent {id} to mayor\n")
    );
    assert_eq!(
        stored[0],
        json!({"id": id, "from": "overseer", "to": "mayor", "subject": "Subject",
               "body": "Message", "timestamp": NOW, "priority": "normal", "type": "notification"})
    );

    let listing = String::from_utf8(run(&env, "gt", "mayor", &["inbox"]).stdout).unwrap();
    assert_eq!(
        listing,
        format!(
            "ID{}  FROM      TIME                  SUBJECT\n{id}  overseer  {NOW}  Subject\n",
            " ".repeat(id.len() - 2)
        )
    );
    let mut want = stored[0].clone();
    want["read"] = json!(false);
    assert_eq!(ok(&env, "mayor", &["inbox", "--json"]), format!("{want}\n"));

    assert_eq!(
        ok(&env, "mayor", &["read", &id]),
        format!(
            "id:       {id}\nfrom:     overseer\nto:       mayor\ndate:     {NOW}\nsubject:  Subject\n\nMessage\n"
        )
    );
    assert_eq!(ok(&env, "mayor", &["inbox"]), "no unread mail for mayor\n");
    let out = run(&env, "gt-mail", "mayor", &["inbox", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    // Still listed with --all, now read.
    let all: Value =
        serde_json::from_str(&ok(&env, "mayor", &["inbox", "--all", "--json"])).unwrap();
    assert_eq!(all["read"], json!(true));
    // The mark is one plain line.
    let marks = jsonl(&env.town.join("mayor/mail/read.jsonl"));
    assert_eq!(marks, vec![json!({"id": id, "state": "read", "at": NOW})]);
}

#[test]
fn identity_comes_from_as_env_cwd_then_overseer() {
    let env = TestEnv::new();
    env.add_rig("wyv");
    // cwd inside a home, no GT_ADDRESS.
    let mut c = env.cmd("gt-mail");
    c.current_dir(env.town.join("wyv/witness"))
        .args(["send", "mayor", "-s", "from cwd", "-m", "x"]);
    assert!(c.status().unwrap().success());
    // No GT_ADDRESS, cwd is the town root: overseer.
    env.ok("gt-mail", &["send", "mayor", "-s", "from root", "-m", "x"]);
    // --as beats GT_ADDRESS; `self` is an address.
    ok(
        &env,
        "wyv/witness",
        &[
            "--as",
            "wyv/refinery",
            "send",
            "self",
            "-s",
            "to self",
            "-m",
            "x",
        ],
    );
    let from: Vec<(String, String)> = env
        .inbox("mayor")
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().into(),
                m["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        from,
        vec![
            ("wyv/witness".to_string(), "from cwd".to_string()),
            ("overseer".to_string(), "from root".to_string())
        ]
    );
    let m = &env.inbox("wyv/refinery")[0];
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("wyv/refinery"), Some("wyv/refinery"))
    );
}

/// A listing of every file under the town with its size: to show nothing was written.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.path().components().any(|c| c.as_os_str() == ".git"))
        .map(|e| (e.path().to_path_buf(), e.metadata().unwrap().len()))
        .collect();
    v.sort();
    v
}

#[test]
fn refused_addresses_and_missing_town_write_nothing() {
    let env = TestEnv::new();
    env.add_rig("wyv");
    let before = tree(&env.town);
    let cases: &[(&str, &str)] = &[
        (
            "mayr",
            "gt-mail: invalid address \"mayr\": expected mayor, overseer, self or <rig>/<agent> (did you mean mayor?)\n",
        ),
        (
            "wyv/witnes",
            "", // checked below: names the missing home and suggests wyv/witness
        ),
        (
            "../etc",
            "gt-mail: invalid address \"../etc\": invalid rig name \"..\": use 1-64 letters, digits, '_' or '-', starting with a letter or digit\n",
        ),
    ];
    for (addr, want) in cases {
        let out = run(
            &env,
            "gt-mail",
            "overseer",
            &["send", addr, "-s", "x", "-m", "y"],
        );
        assert_eq!(out.status.code(), Some(2), "{addr}");
        let err = String::from_utf8(out.stderr).unwrap();
        if want.is_empty() {
            assert!(
                err.starts_with("gt-mail: no agent home for address wyv/witnes (")
                    && err.ends_with("(did you mean wyv/witness?)\n"),
                "{err}"
            );
        } else {
            assert_eq!(&err, want);
        }
    }
    // A symlinked home leading out of the town is refused too.
    let outside = env.path().join("outside");
    std::fs::create_dir_all(outside.join("mail")).unwrap();
    std::os::unix::fs::symlink(&outside, env.town.join("wyv/polecats/evil")).unwrap();
    let before = {
        let mut b = before;
        b.push((env.town.join("wyv/polecats/evil"), 0));
        b.sort();
        b
    };
    let out = run(
        &env,
        "gt-mail",
        "overseer",
        &["send", "wyv/evil", "-s", "x", "-m", "y"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the town"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!outside.join("mail/inbox.jsonl").exists());
    let after: Vec<(PathBuf, u64)> = tree(&env.town)
        .into_iter()
        .map(|(p, s)| {
            if p.ends_with("wyv/polecats/evil") {
                (p, 0)
            } else {
                (p, s)
            }
        })
        .collect();
    assert_eq!(before, after);

    let empty = TestEnv::empty();
    let mut c = empty.cmd("gt-mail");
    c.env_remove("GT_TOWN")
        .args(["send", "mayor", "-s", "x", "-m", "y"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let canon = std::fs::canonicalize(empty.path()).unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-mail: no town here (looked for config/town.json from {} up to /; set GT_TOWN or run gt install)\n",
            canon.display()
        )
    );
}

/// A name with no home is met with the agents of that name: in the rig the
/// address names (or, for a bare name, the caller's rig), else in any rig.
#[test]
fn a_missing_address_suggests_the_agent_of_that_name() {
    let env = TestEnv::new();
    let wyv = env.add_rig("wyv");
    env.add_rig("other");
    env.ok("gt", &["crew", "add", "wyv", "Bob"]);
    env.ok("gt", &["polecat", "add", "wyv", "Bee"]);
    env.ok("gt", &["polecat", "add", "other", "Nux"]);
    let refused = |addr: &str, dir: &Path| {
        let out = mail_cmd(&env, "gt-mail", "overseer")
            .args(["send", addr, "-s", "x", "-m", "y"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{addr}");
        env.normalize(&String::from_utf8(out.stderr).unwrap())
    };
    let invalid = |addr: &str, hint: &str| {
        format!(
            "gt-mail: invalid address \"{addr}\": expected mayor, overseer, self or <rig>/<agent> (did you mean {hint}?)\n"
        )
    };
    assert_eq!(refused("witness", &wyv), invalid("witness", "wyv/witness"));
    assert_eq!(
        refused("witness", &env.town),
        invalid("witness", "other/witness or wyv/witness")
    );
    assert_eq!(refused("Nux", &wyv), invalid("Nux", "other/Nux"));
    assert_eq!(
        refused("wyv/Bob", &env.town),
        "gt-mail: no agent home for address wyv/Bob ($TEST_ENV/town/wyv/polecats/Bob does not exist) (did you mean wyv/crew/Bob?)\n"
    );
    // No agent of that name: the nearest spelling, as before.
    assert_eq!(
        refused("wyv/Bea", &env.town),
        "gt-mail: no agent home for address wyv/Bea ($TEST_ENV/town/wyv/polecats/Bea does not exist) (did you mean wyv/Bee?)\n"
    );
    assert_eq!(env.inbox("wyv/witness"), Vec::<Value>::new());
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let env = TestEnv::new();
    let big = env.path().join("big.txt");
    std::fs::write(&big, "x".repeat(65 * 1024)).unwrap();
    let out = run(
        &env,
        "gt-mail",
        "overseer",
        &["send", "mayor", "-s", "big", "-f", big.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-mail: {}: message body is over the 65536-byte limit\n",
            big.display()
        )
    );
    // Under the body limit but over the record limit once escaped as JSON.
    let quotes = env.path().join("quotes.txt");
    std::fs::write(&quotes, "\"".repeat(40 * 1024)).unwrap();
    let out = run(
        &env,
        "gt-mail",
        "overseer",
        &["send", "mayor", "-s", "q", "-f", quotes.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-mail: message to mayor is 82083 bytes as JSON; the limit is 65536 (put long text in a file and mail its path)\n"
    );
    let latin1 = env.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").unwrap();
    let out = run(
        &env,
        "gt-mail",
        "overseer",
        &["send", "mayor", "-s", "x", "-f", latin1.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-mail: {}: message body is not UTF-8 (invalid byte at offset 3)\n",
            latin1.display()
        )
    );
    // deliver: a bad record anywhere means nothing is delivered.
    let out = deliver(
        &env,
        "overseer",
        "{\"to\":\"mayor\",\"subject\":\"a\",\"body\":\"b\"}\n{\"to\":\"mayor\",\"subject\":\"a\"}\n",
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-mail: <stdin>:2: not a valid message (missing field `body`); nothing delivered\n"
    );
    let out = deliver(
        &env,
        "overseer",
        "{\"to\":\"mayor\",\"subject\":\"a\",\"body\":\"b\"}\nnot json\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-mail: <stdin>:2: not a JSON object (expected ident at line 1 column 2); nothing delivered\n"
    );
    let out = deliver(
        &env,
        "overseer",
        "{\"to\":\"nobody\",\"subject\":\"a\",\"body\":\"b\"}\n",
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "gt-mail: <stdin>:1: invalid address \"nobody\": expected mayor, overseer, self or <rig>/<agent>\n"
    );
    assert_eq!(std::fs::read(env.inbox_path("mayor")).unwrap(), b"");

    // Unknown fields are kept, byte for byte in meaning; given ids and times too.
    let rec = json!({"id": "hand-1", "from": "mayor", "to": "overseer", "subject": "s", "body": "b",
                     "timestamp": "2025-01-01T00:00:00Z", "cc": ["mayor"], "custom": {"n": 1}});
    let out = deliver(&env, "mayor", &format!("{rec}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = rec.clone();
    want["priority"] = json!("normal");
    want["type"] = json!("notification");
    let stored = &env.inbox("overseer")[0];
    assert_eq!(stored, &want);
    assert_eq!(
        serde_json::to_string(stored).unwrap(),
        "{\"id\":\"hand-1\",\"from\":\"mayor\",\"to\":\"overseer\",\"subject\":\"s\",\"body\":\"b\",\"timestamp\":\"2025-01-01T00:00:00Z\",\"priority\":\"normal\",\"type\":\"notification\",\"cc\":[\"mayor\"],\"custom\":{\"n\":1}}"
    );
}

#[test]
fn deliver_batches_one_write_per_inbox_and_fills_defaults() {
    let env = TestEnv::new();
    let input = "{\"to\":\"mayor\",\"subject\":\"1\",\"body\":\"\"}\n\n{\"to\":\"overseer\",\"subject\":\"2\",\"body\":\"\"}\n{\"to\":\"mayor\",\"subject\":\"3\",\"body\":\"\",\"generation\":7,\"type\":\"shutdown\"}\n";
    let out = deliver(&env, "wyv", input);
    // "wyv" is not a valid address: identity errors name GT_ADDRESS.
    assert_eq!(out.status.code(), Some(2));
    let out = deliver(&env, "mayor", input);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "delivered 3\n");
    let m = env.inbox("mayor");
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0]["subject"].as_str(), m[1]["subject"].as_str()),
        (Some("1"), Some("3"))
    );
    assert_eq!(m[1]["generation"], json!(7));
    assert_eq!(m[1]["type"], json!("shutdown"));
    assert_eq!(m[0]["from"], json!("mayor"));
    assert_eq!(m[0]["timestamp"], json!(NOW));
    assert_eq!(env.inbox("overseer").len(), 1);
}

#[test]
fn read_state_survives_restarts_and_hand_edits() {
    let env = TestEnv::new();
    for s in ["a", "b", "c"] {
        ok(&env, "overseer", &["send", "mayor", "-s", s, "-m", s]);
    }
    let inbox = env.inbox_path("mayor");
    let all = ids(&jsonl(&inbox));
    ok(&env, "mayor", &["read", &all[0]]);
    assert_eq!(unread(&env, "mayor"), all[1..]);

    // Only new bytes are read: corrupt the first (read) line in place, same
    // inode and length. A reader that re-read the file would report it.
    let bytes = std::fs::read(&inbox).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"#", 0).unwrap();
    let out = run(&env, "gt-mail", "mayor", &["inbox", "--json"]);
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    std::os::unix::fs::FileExt::write_at(&f, &bytes[..1], 0).unwrap();

    // A junk line, then an editor's save: new file renamed over, with one more
    // message typed in and message b deleted.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&inbox)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"junk\n"))
        .unwrap();
    let mut text = std::fs::read_to_string(&inbox).unwrap();
    let b_line = text.lines().nth(1).unwrap().to_string();
    text = text.replace(&format!("{b_line}\n"), "");
    text.push_str("{\"id\":\"typed-1\",\"from\":\"overseer\",\"to\":\"mayor\",\"subject\":\"typed\",\"body\":\"\",\"timestamp\":\"2026-11-25T09:01:00Z\"}\n");
    let tmp = inbox.with_extension("swp");
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, &inbox).unwrap();

    // A shell append with flock(1) + printf.
    let status = Command::new("flock")
        .arg(env.town.join("mayor/mail/inbox.lock"))
        .args(["-c", "printf '%s\\n' '{\"id\":\"sh-1\",\"from\":\"overseer\",\"to\":\"mayor\",\"subject\":\"shell\",\"body\":\"hi\",\"timestamp\":\"2026-11-25T09:02:00Z\"}' >> mail/inbox.jsonl"])
        .current_dir(env.town.join("mayor"))
        .status()
        .unwrap();
    assert!(status.success());

    let out = run(&env, "gt-mail", "mayor", &["inbox", "--json"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "gt-mail: {}:3: not JSON (expected value at column 1); skipped\n",
            inbox.display()
        )
    );
    let listed = jsonl_ids(&String::from_utf8(out.stdout).unwrap());
    // a stays read, b is gone, c, typed and shell mail are unread.
    assert_eq!(
        listed,
        vec![all[2].clone(), "typed-1".into(), "sh-1".into()]
    );
    // And again, from the cursor (a new process): same answer, no re-report.
    let out = run(&env, "gt-mail", "mayor", &["inbox", "--json"]);
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
    assert_eq!(unread(&env, "mayor"), listed);
    // Deleting the cursor cache changes nothing but the cost.
    std::fs::remove_file(env.town.join("mayor/mail/read.cursor.json")).unwrap();
    assert_eq!(unread(&env, "mayor"), listed);

    // ack: unknown ids are refused and nothing is marked.
    let (code, err) = {
        let out = run(&env, "gt-mail", "mayor", &["ack", "sh-1", "nope"]);
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        format!(
            "gt-mail: no message nope in {} or its archive; nothing acked\n",
            inbox.display()
        )
    );
    assert_eq!(unread(&env, "mayor"), listed);
    ok(&env, "mayor", &["ack", "--all"]);
    assert!(unread(&env, "mayor").is_empty());
}

#[test]
fn archive_moves_read_mail_and_keeps_it_readable() {
    let env = TestEnv::new();
    for s in ["a", "b", "c"] {
        ok(&env, "overseer", &["send", "mayor", "-s", s, "-m", s]);
    }
    let inbox = env.inbox_path("mayor");
    let all = ids(&jsonl(&inbox));
    ok(&env, "mayor", &["ack", &all[0], &all[2]]);
    // A watcher that has printed only the first message holds back the others.
    let w = ok(&env, "mayor", &["watch", "--once", "--name", "w1"]);
    assert_eq!(w.lines().count(), 3);
    assert_eq!(
        ok(&env, "mayor", &["archive"]),
        format!(
            "archived 2 to {}; 1 kept\n",
            env.town.join("mayor/mail/archive/2026-11.jsonl").display()
        )
    );
    assert_eq!(ids(&jsonl(&inbox)), vec![all[1].clone()]);
    let archived = jsonl(&env.town.join("mayor/mail/archive/2026-11.jsonl"));
    assert_eq!(ids(&archived), vec![all[0].clone(), all[2].clone()]);
    // Marks shrink to the inbox's messages; state is unchanged.
    assert_eq!(jsonl(&env.town.join("mayor/mail/read.jsonl")).len(), 0);
    assert_eq!(unread(&env, "mayor"), vec![all[1].clone()]);
    assert_eq!(ok(&env, "mayor", &["watch", "--once", "--name", "w1"]), "");
    // Archived mail is still readable by id.
    assert!(ok(&env, "mayor", &["read", &all[0]]).contains("subject:  a\n"));
}

#[test]
fn handoff_mails_self_and_requests_a_cycle() {
    let env = TestEnv::new();
    let out = ok(
        &env,
        "mayor",
        &["handoff", "-m", "next: land the queue", "--cycle", "--json"],
    );
    let m: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["from"], json!("mayor"));
    assert_eq!(m["to"], json!("mayor"));
    assert_eq!(m["subject"], json!("HANDOFF: session handoff"));
    assert_eq!(m["type"], json!("handoff"));
    assert_eq!(m["generation"], json!(0));
    assert_eq!(m["handoff"], json!({"status": "idle", "written_at": NOW}));
    assert_eq!(env.inbox("mayor"), vec![m]);
    let state = env.state("mayor");
    assert_eq!(state["requesting_cycle"], json!(true));
    assert_eq!(state["role"], json!("mayor"));
}

/// A handoff whose state.json cannot be read fails before it sends anything:
/// no note without its generation, no cycle half-asked.
#[test]
fn handoff_with_an_unreadable_state_sends_nothing() {
    let env = TestEnv::new();
    let path = env.home("mayor").join("state.json");
    let whole = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &whole[..40]).unwrap();
    for cycle in [true, false] {
        let args: &[&str] = if cycle {
            &["handoff", "-m", "x", "--cycle"]
        } else {
            &["handoff", "-m", "x"]
        };
        let out = run(&env, "gt-mail", "mayor", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
        let err = env.normalize(&String::from_utf8(out.stderr).unwrap());
        assert!(
            err.starts_with("gt-mail: $TEST_ENV/town/mayor/state.json:")
                && err.ends_with("; nothing sent\n")
                && err.lines().count() == 1,
            "{err}"
        );
        assert_eq!(env.inbox("mayor"), Vec::<Value>::new());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole[..40]);
    }
}

/// The cursor remembers where unread mail is, not what it says: an unread
/// message edited in place (same inode, same length) is shown as it now is,
/// and one whose id was changed is a different message.
#[test]
fn an_unread_message_edited_in_place_is_read_as_it_now_is() {
    let env = TestEnv::new();
    for s in ["aaaa", "bbbb", "cccc"] {
        ok(&env, "overseer", &["send", "mayor", "-s", s, "-m", s]);
    }
    let all = jsonl_ids(&ok(&env, "mayor", &["inbox", "--json"]));
    let inbox = env.inbox_path("mayor");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap();
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&inbox).unwrap();
        let at = text.find(from).unwrap() as u64;
        std::os::unix::fs::FileExt::write_at(&f, to.as_bytes(), at).unwrap();
    };
    edit("\"subject\":\"bbbb\"", "\"subject\":\"BBBB\"");
    let subjects = |env: &TestEnv| -> Vec<String> {
        let out = ok(env, "mayor", &["inbox", "--json"]);
        out.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["subject"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(subjects(&env), ["aaaa", "BBBB", "cccc"]);
    // The last id's final character, changed: c is gone, its twin is new.
    let c = &all[2];
    let twin = format!(
        "{}{}",
        &c[..c.len() - 1],
        if c.ends_with('z') { 'y' } else { 'z' }
    );
    edit(c, &twin);
    assert_eq!(
        unread(&env, "mayor"),
        [all[0].clone(), all[1].clone(), twin.clone()]
    );
    ok(&env, "mayor", &["read", &all[1]]);
    assert_eq!(unread(&env, "mayor"), [all[0].clone(), twin]);
    assert_eq!(subjects(&env), ["aaaa", "cccc"]);
}

/// protocol/mail.md says a shell script can send, list unread and mark read with
/// flock(1), printf and jq alone. This is that script, checked against gt-mail.
#[test]
fn a_shell_script_speaks_the_protocol() {
    let env = TestEnv::new();
    let script = r#"
set -eu
box=mayor/mail
case "$1" in
send) # send ID SUBJECT: the torn-tail rule, then one printf, under the lock
  flock "$box/inbox.lock" sh -c '
    f=$0/inbox.jsonl
    if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then printf "\n" >> "$f"; fi
    printf "%s\n" "{\"id\":\"$1\",\"from\":\"overseer\",\"to\":\"mayor\",\"subject\":\"$2\",\"body\":\"\",\"timestamp\":\"$(date -u +%FT%TZ)\"}" >> "$f"
  ' "$box" "$2" "$3" ;;
unread) # complete lines only; skip bad lines; drop ids marked in read.jsonl
  touch "$box/read.jsonl"
  done_ids=$(while IFS= read -r l; do printf '%s\n' "$l"; done < "$box/read.jsonl" | jq -R -r 'fromjson? | .id // empty')
  while IFS= read -r l; do printf '%s\n' "$l"; done < "$box/inbox.jsonl" |
    jq -R -r --arg done "$done_ids" '($done | split("\n")) as $d | fromjson? | objects | select(.id != null) | select(.id | IN($d[]) | not) | .id' ;;
mark) # mark ID: one line in read.jsonl under its lock
  flock "$box/read.lock" sh -c 'printf "%s\n" "{\"id\":\"$1\",\"state\":\"read\"}" >> "$0/read.jsonl"' "$box" "$2" ;;
esac
"#;
    let sh = |args: &[&str]| -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .current_dir(&env.town)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // A torn line left by a killed writer: the script must not glue onto it.
    std::fs::write(env.inbox_path("mayor"), "{\"id\":\"torn").unwrap();
    sh(&["send", "sh-1", "from the shell"]);
    let sent = ok(
        &env,
        "overseer",
        &["send", "mayor", "-s", "from gt", "-m", "x", "--json"],
    );
    let gt_id = serde_json::from_str::<Value>(&sent).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sh(&["unread"]), format!("sh-1\n{gt_id}\n"));
    assert_eq!(
        unread(&env, "mayor"),
        vec!["sh-1".to_string(), gt_id.clone()]
    );
    sh(&["mark", "sh-1"]);
    assert_eq!(unread(&env, "mayor"), vec![gt_id.clone()]);
    ok(&env, "mayor", &["read", &gt_id]);
    assert_eq!(sh(&["unread"]), "");
    // gt-mail's own inbox reader agrees the torn line is one bad line.
    let out = run(&env, "gt-mail", "mayor", &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{}:1: not JSON (EOF while parsing a string at column 11)\n",
            env.inbox_path("mayor").display()
        )
    );
}

#[test]
fn records_and_check_agree_with_the_schema() {
    let env = TestEnv::new();
    ok(
        &env,
        "overseer",
        &[
            "send",
            "mayor",
            "-s",
            "s",
            "-m",
            "b",
            "--reply-to",
            "msg-x",
            "--generation",
            "3",
        ],
    );
    let protocol = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(protocol.join("schemas/mail-message.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let m = &env.inbox("mayor")[0];
    assert_eq!(m["thread_id"], json!("msg-x"));
    assert_eq!(m["type"], json!("reply"));
    assert!(validator.is_valid(m), "{m}");
    // gt-mail check flags exactly the lines the schema rejects, and readers
    // still show every line that is a message at all.
    for (kind, want_bad) in [("valid", false), ("invalid", true)] {
        let dir = protocol.join("examples").join(kind).join("mail-message");
        for f in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            std::fs::write(env.inbox_path("overseer"), &text).unwrap();
            let report =
                String::from_utf8(run(&env, "gt-mail", "overseer", &["check"]).stdout).unwrap();
            for (i, line) in text.lines().enumerate() {
                let v: Value = serde_json::from_str(line).unwrap();
                let flagged = report.contains(&format!("inbox.jsonl:{}: ", i + 1));
                assert_eq!(
                    validator.is_valid(&v),
                    !flagged,
                    "line {}: {line}\n{report}",
                    i + 1
                );
                assert_eq!(flagged, want_bad, "{line}");
            }
        }
    }
    // A writer refuses what the schema rejects.
    let out = deliver(
        &env,
        "overseer",
        "{\"to\":\"mayor\",\"subject\":\"s\",\"body\":\"\",\"priority\":\"p0\"}\n",
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("gt-mail: <stdin>:1: message msg-")
            && err.ends_with(": \"priority\" is \"p0\", not one of low, normal, high, urgent\n"),
        "{err}"
    );
}

/// Thousands of unread messages stream through the reader's buffer a chunk at
/// a time (lines straddle its edges), and scattered runs share reads: every
/// unread message is listed once, in order, from the files alone, then again
/// from the cursor; a hand-made cursor that repeats a run is rebuilt, not
/// believed.
#[test]
fn many_unread_messages_are_listed_once_in_order_through_the_cursor() {
    let env = TestEnv::new();
    let body = "b".repeat(300);
    let input: String = (0..3000)
        .map(|i| format!("{{\"to\":\"mayor\",\"subject\":\"s{i}\",\"body\":\"{body}\"}}\n"))
        .collect();
    let out = deliver(&env, "overseer", &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = ids(&env.inbox("mayor"));
    assert_eq!(all.len(), 3000);
    // Read: one in seven, and a block in the middle (a gap wider than a read
    // spans), so the unread mail is many runs, near and far apart.
    let read: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 3 || (1000..1400).contains(i))
        .map(|(_, id)| id.as_str())
        .collect();
    let marks: String = read
        .iter()
        .map(|id| format!("{{\"id\":\"{id}\",\"state\":\"read\"}}\n"))
        .collect();
    std::fs::write(env.town.join("mayor/mail/read.jsonl"), marks).unwrap();
    let expected: Vec<String> = all
        .iter()
        .filter(|id| !read.contains(&id.as_str()))
        .cloned()
        .collect();
    let table_ids = |env: &TestEnv| -> Vec<String> {
        let text = ok(env, "mayor", &["inbox"]);
        let mut rows = text.lines();
        assert_eq!(
            rows.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["ID", "FROM", "TIME", "SUBJECT"]
        );
        rows.map(|r| r.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    // From the files (no cursor yet), then from the cursor it left.
    assert_eq!(unread(&env, "mayor"), expected);
    let cursor = env.town.join("mayor/mail/read.cursor.json");
    let saved: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    let runs = saved["pending"].as_array().unwrap().len();
    assert!(runs > 300, "{runs} runs");
    assert_eq!(table_ids(&env), expected);
    assert_eq!(unread(&env, "mayor"), expected);

    // A cursor whose first run is listed twice.
    let mut forged = saved.clone();
    let runs = forged["pending"].as_array_mut().unwrap();
    let first = runs[0].clone();
    runs.insert(0, first);
    std::fs::write(&cursor, forged.to_string()).unwrap();
    assert_eq!(unread(&env, "mayor"), expected);
    let rebuilt: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    assert_eq!(rebuilt, saved);
}

/// The `jq` recipes for reading an inbox by hand (README.md and
/// protocol/README.md, run as written there) read past a line that is not
/// JSON, as every reader must.
#[test]
fn the_documented_jq_recipes_read_past_a_junk_line() {
    if !crate::common::have_tool("jq") {
        return;
    }
    let env = TestEnv::new();
    env.ok(
        "gt",
        &["send", "mayor", "-s", "hello", "-m", "from a shell"],
    );
    let inbox = env.town.join("mayor/mail/inbox.jsonl");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&inbox)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"half a line\n"))
        .unwrap();
    env.ok("gt", &["send", "mayor", "-s", "again", "-m", "x"]);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = |doc: &str, start: &str| -> String {
        let text = std::fs::read_to_string(repo.join(doc)).unwrap();
        let line = text.lines().find(|l| l.starts_with(start)).unwrap();
        line.trim_start_matches("$ ").to_string()
    };
    let run = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&env.town)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(&recipe("README.md", "$ jq -R -r 'fromjson?")),
        "overseer: hello\noverseer: again\n"
    );
    let by_sender = recipe("protocol/README.md", "jq -R -c 'fromjson? | select(.from");
    assert_eq!(
        run(&by_sender.replace("wyvern/witness", "overseer"))
            .lines()
            .count(),
        2
    );
}

/// Without -m or -f, a stdin that stays open with nothing on it (as an
/// agent's shell may give every command) fails the send after GT_STDIN_WAIT
/// instead of hanging; a piped body is read, and `-f -` waits for it.
#[test]
fn an_open_empty_stdin_does_not_hang_a_send() {
    use std::io::Write;
    use std::process::Stdio;
    let env = TestEnv::new();
    let send = |subject: &str, extra: &[&str]| {
        let mut c = env.cmd("gt");
        c.env("GT_STDIN_WAIT", "200ms")
            .args(["send", "mayor", "-s", subject])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // Held open, never written: refused, nothing sent.
    let mut held = send("held", &[]);
    let stdin = held.stdin.take();
    let out = held.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gt-mail: no message body: stdin is open but nothing came on it in 200ms; \
         give -m TEXT, -f FILE, or -f - to wait for stdin\n"
    );
    assert!(env.inbox("mayor").is_empty());
    // Written and closed: read. With -f -, a body later than the wait is read.
    for (subject, extra) in [("piped", &[][..]), ("explicit", &["-f", "-"][..])] {
        let mut child = send(subject, extra);
        let mut stdin = child.stdin.take().unwrap();
        if extra.is_empty() {
            stdin.write_all(b"the body\n").unwrap();
        } else {
            std::thread::sleep(std::time::Duration::from_millis(400));
            stdin.write_all(b"the body\n").unwrap();
        }
        drop(stdin);
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let bodies: Vec<_> = env
        .inbox("mayor")
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, ["the body\n", "the body\n"]);
}
