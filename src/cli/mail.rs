//! `gt-mail` (`gt mail ...`, and the seed's `gt send` / `gt inbox`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::address::Address;
use crate::clock;
use crate::error::{Error, IoContext, Kind, Result};
use crate::federation::outbox::{self, Sent};
use crate::federation::{Federation, Target};
use crate::fsio::Durability;
use crate::home::Home;
use crate::mail::reader::{Parse, Reader, Summary};
use crate::mail::{self, MAX_RECORD_BYTES, Message};
use crate::record::Extra;
use crate::town::{Bare, Town};
use crate::watch::{Flow, Watch};

const ABOUT: &str = "Mail between agents: locked JSONL inboxes at <home>/mail/inbox.jsonl";
const AFTER_HELP: &str = "Identity (sender, reader): --as, else GT_ADDRESS, else the agent home of the \
    current directory, else overseer. GT_DURABLE=1 fsyncs every append. \
    Files and formats: protocol/mail.md.";

#[derive(Parser, Debug)]
#[command(name = "gt-mail", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `gt-mail` with only its `send` subcommand: the same definitions as [`Cli`]
/// for the one command most calls are, without building the rest of the tree
/// (most of a send's user time).
#[derive(Parser, Debug)]
#[command(name = "gt-mail", version, about = ABOUT, after_help = AFTER_HELP)]
struct SendCli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: SendCmd,
}

#[derive(Args, Debug)]
struct Global {
    /// Act as this address (default: GT_ADDRESS, the home of the current directory, or overseer)
    #[arg(long = "as", global = true, value_name = "ADDRESS")]
    as_: Option<String>,
}

impl Global {
    /// The town and who acts in it.
    fn open(&self) -> Result<(Town, Address)> {
        let town = Town::discover()?;
        let me = mail::identity(&town, self.as_.as_deref())?;
        Ok((town, me))
    }
}

#[derive(Args, Debug)]
struct Body {
    /// Message body
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    message: Option<String>,
    /// Read the body from FILE ('-' for stdin); without -m or -f, a stdin that is not a terminal is read if data comes within GT_STDIN_WAIT (10s)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "message"
    )]
    file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Copy)]
struct Durable {
    /// fsync each append before returning (also GT_DURABLE=1)
    #[arg(long)]
    durable: bool,
}

impl Durable {
    fn get(self) -> Durability {
        if self.durable {
            Durability::Sync
        } else {
            Durability::from_env()
        }
    }
}

#[derive(Subcommand, Debug)]
enum SendCmd {
    /// Send a message: gt send <address> -s "Subject" -m "Message"
    Send(SendArgs),
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Recipient: mayor, overseer, <rig>/witness, <rig>/<polecat>, ..., or self
    to: String,
    /// Subject line (with --verdict, default "verdict")
    #[arg(short = 's', long, required_unless_present = "verdict")]
    subject: Option<String>,
    #[command(flatten)]
    body: Body,
    /// Message type (default: notification)
    #[arg(long = "type", value_name = "TYPE", conflicts_with = "verdict")]
    kind: Option<String>,
    /// low, normal (default), high or urgent
    #[arg(long, value_parser = ["low", "normal", "high", "urgent"], hide_possible_values = true)]
    priority: Option<String>,
    /// Id of the message this answers; the reply joins its thread
    #[arg(long, value_name = "ID")]
    reply_to: Option<String>,
    /// Thread id (default: the replied-to message's thread, or its id)
    #[arg(long, value_name = "ID")]
    thread: Option<String>,
    /// Spawn generation this (lifecycle) message is about
    #[arg(long)]
    generation: Option<u64>,
    /// Answer a plugin request (--reply-to its id) with this verdict: type "verdict" (protocol/plugins.md)
    #[arg(long, value_name = "WORD", requires = "reply_to")]
    verdict: Option<String>,
    /// The verdict's reason
    #[arg(long, value_name = "TEXT", requires = "verdict")]
    reason: Option<String>,
    #[command(flatten)]
    durable: Durable,
    /// Print the stored record as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Send(SendCmd),
    /// List unread mail (or all with --all)
    Inbox {
        /// Read and unread mail still in the inbox
        #[arg(long)]
        all: bool,
        /// One JSON record per line, with "read": true/false
        #[arg(long)]
        json: bool,
        /// Exit 1 when there is nothing to list
        #[arg(long)]
        exit_code: bool,
    },
    /// Show a message (inbox or archive) and mark it read
    Read {
        id: String,
        /// Print the message as one JSON line
        #[arg(long)]
        json: bool,
    },
    /// Mark messages done without showing them
    Ack {
        /// Message ids
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every unread message
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Move read mail out of the inbox into mail/archive/<YYYY-MM>.jsonl
    Archive {
        /// Print {moved, kept, file} as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print each new message as one JSON line as it arrives (exactly once per watcher name)
    Watch {
        /// Whose inbox (default: your own)
        address: Option<String>,
        /// Print what is pending and exit
        #[arg(long)]
        once: bool,
        /// Watcher name: its cursor is mail/watch/<NAME>.jsonl
        #[arg(long, default_value = "watch")]
        name: String,
    },
    /// Mail your next session a handoff note (mail-to-self); --cycle also asks for a fresh session
    Handoff {
        /// Subject after "HANDOFF: " (default: "session handoff")
        #[arg(short = 's', long)]
        subject: Option<String>,
        #[command(flatten)]
        body: Body,
        /// Also set requesting_cycle in your state.json
        #[arg(long)]
        cycle: bool,
        /// Print the stored note as JSON
        #[arg(long)]
        json: bool,
    },
    /// Deliver JSON records from stdin (JSONL; one lock and one write per inbox)
    Deliver {
        #[command(flatten)]
        durable: Durable,
        /// Print the stored records as JSONL
        #[arg(long)]
        json: bool,
    },
    /// Deliver mail waiting for other machines (federation/outbox/); exit 1 if some still waits
    Flush {
        /// Only this machine (default: every machine with mail waiting)
        machine: Option<String>,
        /// One JSON line per machine: delivered, duplicates, refused, waiting, error
        #[arg(long)]
        json: bool,
    },
    /// Report bad lines and torn tails in a home's mail files (exit 1 if any)
    Check {
        /// Whose mail (default: your own)
        address: Option<String>,
        /// One JSON line per bad line: path, line, offset, reason
        #[arg(long)]
        json: bool,
    },
}

pub fn main(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    // `gt send` and `gt-mail send` parse with [`SendCli`]; `--as` before
    // `send` (or anything else) takes the whole tree.
    if args.get(1).is_some_and(|a| a == "send") {
        let SendCli {
            global,
            cmd: SendCmd::Send(args),
        } = super::parse(args);
        return super::run("gt-mail", || {
            let (town, me) = global.open()?;
            send(&town, &me, args)
        });
    }
    let cli: Cli = super::parse(args);
    super::run("gt-mail", || dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<()> {
    let (town, me) = cli.global.open()?;
    match cli.cmd {
        Cmd::Send(SendCmd::Send(args)) => send(&town, &me, args),
        Cmd::Inbox {
            all,
            json,
            exit_code,
        } => inbox(&town, &my_home(&town, &me)?, all, json, exit_code),
        Cmd::Read { id, json } => read(&my_home(&town, &me)?, &id, json),
        Cmd::Ack { ids, all } => ack(&my_home(&town, &me)?, ids, all),
        Cmd::Archive { json } => {
            let done = mail::archive(&my_home(&town, &me)?)?;
            if json {
                super::print_json(&done)?;
            } else if let Some(f) = &done.file {
                println!(
                    "archived {} to {}; {} kept",
                    done.moved,
                    f.display(),
                    done.kept
                );
            } else {
                println!("nothing to archive; {} kept", done.kept);
            }
            Ok(())
        }
        Cmd::Watch {
            address,
            once,
            name,
        } => {
            let home = match address {
                Some(a) if a == "self" => my_home(&town, &me)?,
                Some(a) => town.resolve(&a, Bare::Address)?,
                None => my_home(&town, &me)?,
            };
            watch(&home, &name, once)
        }
        Cmd::Handoff {
            subject,
            body,
            cycle,
            json,
        } => handoff(&town, &me, subject, &body, cycle, json),
        Cmd::Deliver { durable, json } => deliver(&town, &me, durable.get(), json),
        Cmd::Flush { machine, json } => flush(&town, machine.as_deref(), json),
        Cmd::Check { address, json } => {
            let home = match address {
                Some(a) if a == "self" => my_home(&town, &me)?,
                Some(a) => town.resolve(&a, Bare::Address)?,
                None => my_home(&town, &me)?,
            };
            let bad = mail::check(&home)?;
            for b in &bad {
                if json {
                    super::print_json_line(b)?;
                } else {
                    println!("{b}");
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(Error::shown(Kind::Negative))
            }
        }
    }
}

fn send(town: &Town, me: &Address, args: SendArgs) -> Result<()> {
    let SendArgs {
        to,
        subject,
        body,
        kind,
        priority,
        reply_to,
        thread,
        generation,
        verdict,
        reason,
        durable,
        json,
    } = args;
    // A verdict needs no body: stdin is not read for one.
    let text = match (&verdict, &body) {
        (
            Some(_),
            Body {
                message: None,
                file: None,
            },
        ) => String::new(),
        _ => read_body(&body)?,
    };
    let subject = subject.unwrap_or_else(|| "verdict".into());
    let mut m = Message::new(me, &to, &subject, &text);
    if let Some(k) = kind {
        m.kind = k;
    }
    if let Some(p) = priority {
        m.priority = p;
    }
    if let Some(r) = &reply_to {
        let original = town
            .home(me)
            .ok()
            .and_then(|h| mail::find(&h, r).ok().flatten());
        if let Some(word) = &verdict {
            check_verdict(original.as_ref(), r, word)?;
            m.kind = "verdict".into();
            m.extra.insert("verdict".into(), word.clone().into());
            m.extra
                .insert("reason".into(), reason.unwrap_or_default().into());
        }
        m.thread_id = original.and_then(|o| o.thread_id).or(Some(r.clone()));
        if m.kind == mail::DEFAULT_TYPE {
            m.kind = "reply".into();
        }
    }
    m.reply_to = reply_to;
    if thread.is_some() {
        m.thread_id = thread;
    }
    m.generation = generation;
    send_one(town, m, durable.get(), json)
}

fn my_home(town: &Town, me: &Address) -> Result<Home> {
    town.home(me)
}

/// Refuse a verdict the request `id` (in the sender's inbox, if found) does
/// not accept: a plugin's typo must not silently become the hook's default.
fn check_verdict(request: Option<&Message>, id: &str, word: &str) -> Result<()> {
    let Some(words) = request
        .and_then(|m| m.extra.get("verdicts"))
        .and_then(|v| v.as_array())
    else {
        return Ok(());
    };
    if words.iter().any(|w| w.as_str() == Some(word)) {
        return Ok(());
    }
    let words: Vec<&str> = words.iter().filter_map(|w| w.as_str()).collect();
    Err(Error::invalid(format!(
        "--verdict {word:?}: request {id} accepts {}",
        words.join(", ")
    )))
}

/// Whether stdin has data or its end within `wait` (a pipe whose writer
/// closed, a file: at once).
fn stdin_ready(wait: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the length given.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// How long a body not asked for with `-f -` may take to start arriving on
/// stdin (`GT_STDIN_WAIT` sets it): an agent's shell may hand every command
/// an open pipe nobody writes to (Claude Code's Bash tool can), which must
/// not hang a send.
const IMPLICIT_STDIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The body from -m, -f FILE/-, or a piped stdin; UTF-8 and at most the limit.
fn read_body(b: &Body) -> Result<String> {
    if let Some(m) = &b.message {
        return Ok(m.clone());
    }
    let (bytes, source) = match b.file.as_deref() {
        Some(p) if p != Path::new("-") => {
            let f = std::fs::File::open(p).at(p)?;
            (read_limited(f, p)?, p.display().to_string())
        }
        Some(_) => (
            read_limited(std::io::stdin(), Path::new("<stdin>"))?,
            "<stdin>".into(),
        ),
        None if !std::io::stdin().is_terminal() => {
            let wait = crate::clock::env_duration("GT_STDIN_WAIT", IMPLICIT_STDIN_WAIT)?;
            if !stdin_ready(wait) {
                return Err(Error::invalid(format!(
                    "no message body: stdin is open but nothing came on it in {wait:?}; give -m TEXT, -f FILE, or -f - to wait for stdin"
                )));
            }
            (
                read_limited(std::io::stdin(), Path::new("<stdin>"))?,
                "<stdin>".into(),
            )
        }
        None => {
            return Err(Error::invalid(
                "no message body: give -m TEXT, -f FILE, or pipe it on stdin",
            ));
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "{source}: message body is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn read_limited(r: impl Read, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .at(path)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Error::invalid(format!(
            "{}: message body is over the {MAX_RECORD_BYTES}-byte limit",
            path.display()
        )));
    }
    Ok(bytes)
}

fn send_one(town: &Town, mut m: Message, durability: Durability, json: bool) -> Result<()> {
    if m.to.contains(':') {
        let fed = Federation::load(town)?;
        let to = m.to.clone();
        match fed.target(&to)? {
            Target::Local(a) => m.to = a.to_string(),
            Target::Remote { machine, address } => {
                m.from = format!("{}:{}", fed.local_name()?, m.from);
                m.to = address.to_string();
                return send_remote(&fed, machine, m, durability, json);
            }
        }
    }
    let mut batch = [m];
    mail::post(town, &mut batch, durability)?;
    let [m] = batch;
    if json {
        super::print_json_line(&m)?;
    } else {
        println!("sent {} to {}", m.id, m.to);
    }
    Ok(())
}

/// Mail for another machine: spooled, then sent with everything waiting for it.
fn send_remote(
    fed: &Federation,
    machine: &str,
    mut m: Message,
    durability: Durability,
    json: bool,
) -> Result<()> {
    if let Some(p) = m.problems().into_iter().next() {
        return Err(Error::invalid(format!("message {}: {p}", m.id)));
    }
    let sent = outbox::send(fed, machine, &m, durability)?;
    if json {
        if let Sent::Queued(why) = &sent {
            m.extra.insert("queued".into(), why.clone().into());
        }
        super::print_json_line(&m)?;
    } else {
        match sent {
            Sent::Delivered => println!("sent {} to {machine}:{}", m.id, m.to),
            Sent::Queued(why) => println!("queued for {machine}: {why}"),
        }
    }
    Ok(())
}

/// `gt mail flush [<machine>]`: deliver what waits for other machines.
fn flush(town: &Town, machine: Option<&str>, json: bool) -> Result<()> {
    let fed = Federation::load(town)?;
    let deadline = crate::federation::ssh::timeout()?;
    let results = match machine {
        Some(m) => vec![(m.to_string(), outbox::flush(&fed, m, deadline))],
        None => outbox::flush_all(&fed, deadline),
    };
    let mut waiting = false;
    for (machine, r) in results {
        let f = r.map_err(|e| e.context(&machine))?;
        waiting |= f.waiting > 0;
        if json {
            super::print_json_line(&f)?;
            continue;
        }
        let mut line = format!(
            "{machine}: {} delivered, {} already there, {} refused, {} waiting",
            f.delivered.len(),
            f.duplicates.len(),
            f.refused.len(),
            f.waiting
        );
        if let Some(e) = &f.error {
            line.push_str(&format!(" ({e})"));
        }
        println!("{line}");
        for r in &f.refused {
            eprintln!(
                "gt-mail: {machine} refused {}: {} (kept in {})",
                r.id,
                r.error,
                fed.refused(&machine).display()
            );
        }
    }
    if waiting {
        return Err(Error::shown(Kind::Negative));
    }
    Ok(())
}

fn report_bad(bad: &[crate::fsio::BadLine]) {
    for b in bad {
        eprintln!("gt-mail: {b}; skipped");
    }
}

/// The messages `gt inbox` lists: the unread ones, or with `all` every valid
/// one with its read state. `T` is what is kept of each ([`Summary`] for the
/// table: thousands of bodies are never built).
struct Listing<T> {
    messages: Vec<T>,
    /// With `all`, each message's mark (`None`: unread); else empty.
    states: Vec<Option<String>>,
}

impl<T: Parse + serde::de::DeserializeOwned> Listing<T> {
    fn read(home: &Home, all: bool) -> Result<Listing<T>> {
        let reader = Reader::owner(home);
        if !all {
            let scan = reader.pending_as::<T>()?;
            report_bad(&scan.bad);
            let messages = scan.messages.into_iter().map(|p| p.message).collect();
            return Ok(Listing {
                messages,
                states: Vec::new(),
            });
        }
        let marks = reader.all_marks()?;
        let read =
            crate::fsio::Records::<T>::open(&home.inbox(), Default::default())?.collect_all()?;
        report_bad(&read.bad);
        let messages: Vec<T> = read
            .records
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| !m.id().is_empty())
            .collect();
        let states = messages
            .iter()
            .map(|m| marks.get(m.id()).cloned())
            .collect();
        Ok(Listing { messages, states })
    }

    /// Each message with its state (`None` for unread mail).
    fn rows(&self) -> impl Iterator<Item = (&T, Option<&str>)> {
        let states = self.states.iter().map(Option::as_deref);
        self.messages
            .iter()
            .zip(states.chain(std::iter::repeat(None)))
    }

    /// Whether it is empty, leaking it: the process ends soon, and freeing
    /// thousands of messages one by one costs more than listing them.
    fn forget(self) -> bool {
        let empty = self.messages.is_empty();
        std::mem::forget(self);
        empty
    }
}

fn inbox(town: &Town, home: &Home, all: bool, json: bool, exit_code: bool) -> Result<()> {
    let empty = if json {
        let mut list = Listing::<Message>::read(home, all)?;
        // One write for many lines, not one per line (stdout is line-buffered).
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let states = list.states.iter().map(Option::is_some);
        for (m, read) in list
            .messages
            .iter_mut()
            .zip(states.chain(std::iter::repeat(false)))
        {
            // The stored fields plus "read".
            m.extra.insert("read".into(), read.into());
            serde_json::to_writer(&mut out, m).map_err(|e| Error::invalid(e.to_string()))?;
            writeln!(out).at(Path::new("<stdout>"))?;
        }
        out.flush().at(Path::new("<stdout>"))?;
        list.forget()
    } else {
        let list = Listing::<Summary>::read(home, all)?;
        if list.messages.is_empty() {
            println!(
                "no {}mail for {}",
                if all { "" } else { "unread " },
                home.address
            );
        } else if all {
            let table: Vec<[&str; 5]> = list
                .rows()
                .map(|(m, state)| {
                    let state = state.unwrap_or("unread");
                    [&m.id, state, &m.from, &m.timestamp, &m.subject]
                })
                .collect();
            super::print_table(&["ID", "STATE", "FROM", "TIME", "SUBJECT"], &table);
        } else {
            let table: Vec<[&str; 4]> = list
                .rows()
                .map(|(m, _)| [m.id.as_str(), &m.from, &m.timestamp, &m.subject])
                .collect();
            super::print_table(&["ID", "FROM", "TIME", "SUBJECT"], &table);
        }
        list.forget()
    };
    if home.address == crate::address::Address::Overseer
        && let Some(note) = crate::status::unheard_escalations(town)
    {
        // On stderr: the listing (and --json) stays the overseer's own mail.
        eprintln!("gt: {note}");
    }
    if exit_code && empty {
        return Err(Error::shown(Kind::Negative));
    }
    Ok(())
}

fn read(home: &Home, id: &str, json: bool) -> Result<()> {
    let reader = Reader::owner(home);
    let scan = reader.pending()?;
    let message = match scan.messages.into_iter().find(|p| p.message.id == id) {
        Some(p) => {
            reader.mark(&[id], "read")?;
            p.message
        }
        None => mail::find(home, id)?.ok_or_else(|| {
            Error::not_found(format!(
                "no message {id} in {} or its archive",
                home.inbox().display()
            ))
        })?,
    };
    if json {
        super::print_json_line(&message)?;
    } else {
        print!("{}", render(&message));
    }
    Ok(())
}

/// A message as a person reads it: headers, blank line, body.
pub fn render(m: &Message) -> String {
    let mut s = format!(
        "id:       {}\nfrom:     {}\nto:       {}\ndate:     {}\nsubject:  {}\n",
        m.id, m.from, m.to, m.timestamp, m.subject
    );
    if m.kind != mail::DEFAULT_TYPE || m.priority != mail::DEFAULT_PRIORITY {
        s.push_str(&format!("type:     {} ({} priority)\n", m.kind, m.priority));
    }
    if let Some(t) = &m.thread_id {
        s.push_str(&format!("thread:   {t}\n"));
    }
    if let Some(g) = m.generation {
        s.push_str(&format!("generation: {g}\n"));
    }
    s.push('\n');
    s.push_str(&m.body);
    if !m.body.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn ack(home: &Home, ids: Vec<String>, all: bool) -> Result<()> {
    let reader = Reader::owner(home);
    let pending: Vec<String> = reader
        .pending()?
        .messages
        .into_iter()
        .map(|p| p.message.id)
        .collect();
    let chosen: Vec<&str> = if all {
        pending.iter().map(String::as_str).collect()
    } else {
        // Every id must exist; ones already read are acked again, harmlessly.
        for id in &ids {
            if !pending.contains(id) && mail::find(home, id)?.is_none() {
                return Err(Error::not_found(format!(
                    "no message {id} in {} or its archive; nothing acked",
                    home.inbox().display()
                )));
            }
        }
        ids.iter().map(String::as_str).collect()
    };
    reader.mark(&chosen, "acked")?;
    println!("acked {}", chosen.len());
    Ok(())
}

/// How often `watch` rescans with no event (a missed event costs at most this).
const RESCAN_EVERY: Duration = Duration::from_secs(10);

fn watch(home: &Home, name: &str, once: bool) -> Result<()> {
    let reader = Reader::watcher(home, name)?;
    // SIGTERM/SIGINT/SIGHUP wait until a batch is printed *and* marked, so a
    // stopped watcher restarts exactly where it stopped. (SIGKILL between the
    // print and the mark repeats that batch: consumers dedupe by id.)
    let batch_lock = Arc::new(Mutex::new(()));
    stop_between_batches(batch_lock.clone())?;
    let emit = || -> Result<()> {
        // Print and mark first; the cursor is saved after, off the latency path.
        reader.pending_then(|scan| {
            report_bad(&scan.bad);
            if scan.messages.is_empty() {
                return Ok(());
            }
            let _held = batch_lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut buf = Vec::new();
            for p in &scan.messages {
                serde_json::to_writer(&mut buf, &p.message)
                    .map_err(|e| Error::invalid(e.to_string()))?;
                buf.push(b'\n');
            }
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .at(Path::new("<stdout>"))?;
            let ids: Vec<&str> = scan
                .messages
                .iter()
                .map(|p| p.message.id.as_str())
                .collect();
            reader.mark(&ids, "emitted")
        })?;
        Ok(())
    };
    if once {
        emit()?;
        return Ok(());
    }
    crate::fsio::ensure_dir(&home.mail_dir())?;
    Watch::new(&[&home.mail_dir()], RESCAN_EVERY)?.run(|_| emit().map(|()| Flow::Continue))?;
    Ok(())
}

/// Block the stop signals in every thread and handle them on one thread that
/// exits only while no batch is in progress.
fn stop_between_batches(lock: Arc<Mutex<()>>) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| Error::new(crate::error::Kind::Io, format!("blocking signals: {e}")))?;
    std::thread::spawn(move || {
        let sig = set.wait().map(|s| s as i32).unwrap_or(libc::SIGTERM);
        let _held = lock.lock();
        std::process::exit(128 + sig);
    });
    Ok(())
}

fn handoff(
    town: &Town,
    me: &Address,
    subject: Option<String>,
    body: &Body,
    cycle: bool,
    json: bool,
) -> Result<()> {
    let home = town.home(me)?;
    let note = read_body(body)?;
    // A state.json that is there but unreadable fails the handoff before
    // anything is sent: the note would lack its generation and `--cycle`
    // could not be recorded. A home without one yet has no state to copy.
    let state = match home.own_state() {
        Ok(s) => Some(s),
        Err(e) if e.kind == Kind::NotFound => None,
        Err(e) => return Err(Error::new(e.kind, format!("{}; nothing sent", e.message()))),
    };
    let subject = format!(
        "HANDOFF: {}",
        subject.as_deref().unwrap_or("session handoff")
    );
    let mut m = Message::new(me, &me.to_string(), &subject, &note);
    m.kind = "handoff".into();
    m.priority = "high".into();
    if let Some(s) = &state {
        m.generation = Some(crate::worker::own_generation(s));
        let mut h = Extra::new();
        h.insert("status".into(), s.status.as_str().into());
        if let Some(i) = &s.issue {
            h.insert("issue".into(), i.clone().into());
        }
        if let Some(sess) = &s.session {
            h.insert("session".into(), sess.clone().into());
        }
        h.insert("written_at".into(), clock::now_string().into());
        m.extra.insert("handoff".into(), h.into());
    }
    // The note first: the next session must find it when the cycle happens.
    send_one(town, m, Durability::Sync, json)?;
    if cycle {
        home.update_state(|s| {
            s.requesting_cycle = true;
            s.cycle_requested_at = Some(clock::now());
            Ok(())
        })?;
        if !json {
            println!(
                "requested a fresh session (requesting_cycle in {})",
                home.state_path().display()
            );
        }
    }
    Ok(())
}

fn deliver(town: &Town, me: &Address, durability: Durability, json: bool) -> Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .at(Path::new("<stdin>"))?;
    let mut messages = Vec::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let at =
            |msg: String| Error::invalid(format!("<stdin>:{}: {msg}; nothing delivered", i + 1));
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_RECORD_BYTES {
            return Err(at(format!(
                "record is {} bytes, over the {MAX_RECORD_BYTES}-byte limit",
                line.len()
            )));
        }
        let text = std::str::from_utf8(line).map_err(|_| at("not UTF-8".into()))?;
        let mut obj: Extra =
            serde_json::from_str(text).map_err(|e| at(format!("not a JSON object ({e})")))?;
        // Filled in when absent, so a pipeline need only say to/subject/body.
        obj.entry("id")
            .or_insert_with(|| clock::new_id("msg").into());
        obj.entry("timestamp")
            .or_insert_with(|| clock::now_string().into());
        obj.entry("from").or_insert_with(|| me.to_string().into());
        let mut m: Message = serde_json::from_value(obj.into())
            .map_err(|e| at(format!("not a valid message ({e})")))?;
        let out =
            mail::prepare(town, &mut m).map_err(|e| e.context(format!("<stdin>:{}", i + 1)))?;
        messages.push((m, out));
    }
    let (messages, out): (Vec<Message>, Vec<_>) = messages.into_iter().unzip();
    mail::post_prepared(out, durability)?;
    if json {
        for m in &messages {
            super::print_json_line(m)?;
        }
    } else {
        println!("delivered {}", messages.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Cmd, SendCli, SendCmd};

    /// The send fast path is the whole tree's `send`: the same typed
    /// arguments, help, and errors (each rendered as clap prints it).
    #[test]
    fn send_parses_as_the_whole_tree_does() {
        let cases: &[&[&str]] = &[
            &["send", "mayor", "-s", "hi", "-m", "body"],
            &[
                "send", "--as", "r/Nux", "mayor", "-s", "hi", "-f", "-", "--json",
            ],
            &[
                "send",
                "r/witness",
                "--reply-to",
                "msg-1",
                "--verdict",
                "approve",
                "--reason",
                "ok",
            ],
            &[
                "send",
                "mayor",
                "-s",
                "x",
                "--priority",
                "urgent",
                "--type",
                "t",
                "--thread",
                "th",
            ],
            &["send", "mayor", "-s", "x", "--generation", "3", "--durable"],
            &["send", "--help"],
            &["send", "-h"],
            &["send"],
            &["send", "mayor"],
            &["send", "mayor", "-s", "x", "-m", "a", "-f", "b"],
            &["send", "mayor", "-s", "x", "--priority", "bogus"],
            &["send", "mayor", "-s", "x", "--generation", "many"],
            &["send", "mayor", "--verdict", "approve"],
            &[
                "send",
                "mayor",
                "-s",
                "x",
                "--type",
                "t",
                "--verdict",
                "v",
                "--reply-to",
                "m",
            ],
            &["send", "mayor", "-s", "x", "--jsn"],
            &["send", "mayor", "extra", "-s", "x"],
            &["send", "--version"],
        ];
        for case in cases {
            let argv = std::iter::once("gt-mail").chain(case.iter().copied());
            let whole = Cli::try_parse_from(argv.clone());
            let fast = SendCli::try_parse_from(argv);
            match (whole, fast) {
                (Ok(w), Ok(f)) => {
                    let Cmd::Send(SendCmd::Send(w_args)) = w.cmd else {
                        panic!("{case:?}: not a send")
                    };
                    let SendCmd::Send(f_args) = f.cmd;
                    assert_eq!(
                        format!("{:?} {w_args:?}", w.global),
                        format!("{:?} {f_args:?}", f.global),
                        "{case:?}"
                    );
                }
                (Err(w), Err(f)) => {
                    assert_eq!(w.kind(), f.kind(), "{case:?}");
                    assert_eq!(w.exit_code(), f.exit_code(), "{case:?}");
                    assert_eq!(w.render().to_string(), f.render().to_string(), "{case:?}");
                }
                (w, f) => panic!("{case:?}: whole tree {w:?}, send alone {f:?}"),
            }
        }
    }
}
