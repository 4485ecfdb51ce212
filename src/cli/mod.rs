//! Command-line definitions and their thin runners. The clap definitions live
//! here, in the library, so man pages (`man/`), tests and the binaries share
//! them; each `src/bin/*.rs` is one call into this module.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::error::{Error, Kind, Result};

pub mod completions;
pub mod daemon;
pub mod gt;
pub mod issue;
pub mod land;
pub mod mail;
pub mod man;
pub mod queue;
pub mod refinery;
pub mod witness;

/// Every binary's clap command (named as the binary), for man pages.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        daemon::Cli::command(),
        gt::Cli::command(),
        issue::Cli::command(),
        land::Cli::command(),
        mail::Cli::command(),
        queue::Cli::command(),
        refinery::Cli::command(),
        witness::Cli::command(),
    ]
}

/// Exit codes shared by every binary (protocol/README.md, "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A negative answer: "no unread mail" with `--exit-code`, "not clean", "lost the race".
    pub const NO: u8 = 1;
    /// Usage or runtime error (clap uses 2 for usage errors too).
    pub const ERROR: u8 = 2;
    /// `gt <sub>` found no built-in and no `gt-<sub>` program.
    pub const UNKNOWN_COMMAND: u8 = 127;
}

/// The exit code for an error: the one place an error kind becomes a number.
pub fn exit_code(e: &Error) -> u8 {
    match e.kind {
        Kind::Negative => exit::NO,
        Kind::UnknownCommand => exit::UNKNOWN_COMMAND,
        Kind::Invalid | Kind::NotFound | Kind::Conflict | Kind::Io => exit::ERROR,
    }
}

/// Set up logging (`GT_LOG=debug`, to stderr), run `f`, print an error as one
/// line `<bin>: <message>` on stderr, and return the exit code (ripgrep's
/// `main -> ExitCode`, jj's `try_handle_command_result`).
pub fn run(bin: &str, f: impl FnOnce() -> Result<()>) -> ExitCode {
    // Rust ignores SIGPIPE, so `gt ... | head` would panic on a closed pipe;
    // a command-line tool should just stop, as cat does.
    // SAFETY: setting a signal disposition at start-up, before any threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    init_tracing();
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(bin, &e);
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Print an error the one way every binary does (nothing for an error the
/// output has already shown).
pub fn report(bin: &str, e: &Error) {
    if !e.is_shown() {
        let _ = writeln!(std::io::stderr().lock(), "{bin}: {e}");
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    match std::env::var_os("GT_LOG") {
        None => {
            let _ = tracing::subscriber::set_global_default(WarnLazily::default());
        }
        Some(_) => {
            let _ = fmt_logger()
                .with_env_filter(
                    EnvFilter::try_from_env("GT_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
                )
                .try_init();
        }
    }
}

/// Log lines as every binary writes them, to stderr.
fn fmt_logger() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing::level_filters::LevelFilter,
    fn() -> std::io::Stderr,
> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_target(false)
}

/// Without GT_LOG: warnings and errors only, through the fmt subscriber built
/// at the first one. Most runs log nothing, and building it (its span
/// registry) is a good part of a `gt send`'s own time.
#[derive(Default)]
struct WarnLazily(std::sync::OnceLock<Box<dyn tracing::Subscriber + Send + Sync>>);

impl WarnLazily {
    fn get(&self) -> &(dyn tracing::Subscriber + Send + Sync) {
        self.0
            .get_or_init(|| Box::new(fmt_logger().with_max_level(tracing::Level::WARN).finish()))
            .as_ref()
    }
}

impl tracing::Subscriber for WarnLazily {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.get().new_span(span)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.get().record(span, values)
    }
    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.get().record_follows_from(span, follows)
    }
    fn event_enabled(&self, event: &tracing::Event<'_>) -> bool {
        self.get().event_enabled(event)
    }
    fn event(&self, event: &tracing::Event<'_>) {
        self.get().event(event)
    }
    fn enter(&self, span: &tracing::span::Id) {
        self.get().enter(span)
    }
    fn exit(&self, span: &tracing::span::Id) {
        self.get().exit(span)
    }
    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.get().clone_span(id)
    }
    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.get().try_close(id)
    }
}

/// Parse arguments; on failure print `--help`/`--version` as clap does (exit
/// 0), or a usage error as one line like every other error (exit 2).
pub fn parse<P: clap::Parser>(args: Vec<std::ffi::OsString>) -> P {
    P::try_parse_from(args).unwrap_or_else(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            std::process::exit(exit::OK.into());
        }
        let bin = P::command().get_name().to_string();
        let _ = writeln!(
            std::io::stderr().lock(),
            "{bin}: {}",
            usage_error(&e.render().to_string())
        );
        std::process::exit(exit::ERROR.into());
    })
}

/// Clap's usage error (`error: ...`, its tips, `Usage: ...`, each a
/// paragraph) as one line: `<error> (tip: ...; usage: ...)`.
fn usage_error(text: &str) -> String {
    let (mut error, mut more) = (String::new(), Vec::new());
    for paragraph in text.split("\n\n") {
        let joined = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(e) = joined.strip_prefix("error: ") {
            error = e.to_string();
        } else if let Some(u) = joined.strip_prefix("Usage: ") {
            more.push(format!("usage: {u}"));
        } else if joined.starts_with("tip: ") {
            more.push(joined);
        }
    }
    if more.is_empty() {
        return error;
    }
    format!("{error} ({}; more with --help)", more.join("; "))
}

/// A binary's `main`: its arguments (the program name first) to an exit code.
pub type Main = fn(Vec<std::ffi::OsString>) -> ExitCode;

/// A binary's C `main`, running `$main` through [`start`]. A bin is
/// `#![cfg_attr(not(test), no_main)]` and `gastown::main!(gastown::cli::x::main);`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[cfg(not(test))]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::cli::start($main)
        }
    };
}

/// A whole run of `main` (with the process's arguments) for a binary's C
/// `main` ([`main!`]), instead of std's start-up: that reads /proc/self/maps
/// for the main thread's stack and installs a stack-overflow handler, a tenth
/// of a `gt send`. What of it matters is kept: descriptors 0-2 are open (else
/// a file opened later could become stdout), a panic exits 101, and stdout is
/// flushed at the end.
pub fn start(main: Main) -> std::ffi::c_int {
    for fd in 0..=2 {
        // SAFETY: fcntl and open on plain descriptors, before any threads.
        unsafe {
            let closed = libc::fcntl(fd, libc::F_GETFD) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
            // open returns the lowest free descriptor: this one.
            if closed && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != fd {
                libc::abort();
            }
        }
    }
    let code = std::panic::catch_unwind(|| main(std::env::args_os().collect()));
    let _ = std::io::stdout().flush();
    match code {
        // ExitCode shows its number only by comparison.
        Ok(code) => (0..=u8::MAX)
            .find(|&n| ExitCode::from(n) == code)
            .map_or(1, std::ffi::c_int::from),
        Err(_) => 101,
    }
}

/// gastown's own tools: `gt <name> ...` runs them inside `gt` instead of
/// exec'ing `gt-<name>` (one process start instead of two: `gt send` costs what
/// `gt-mail send` does). Other `gt-*` programs are found beside gt or on PATH.
pub const TOOLS: &[(&str, Main)] = &[
    ("daemon", daemon::main),
    ("issue", issue::main),
    ("land", land::main),
    ("mail", mail::main),
    ("queue", queue::main),
    ("refinery", refinery::main),
    ("witness", witness::main),
];

/// Print `value` as pretty JSON on stdout (for `--json`).
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| Error::invalid(e.to_string()))?;
    writeln!(out).map_err(|e| Error::io(std::path::Path::new("<stdout>"), e))
}

/// Print `value` as one compact JSON line on stdout (for JSONL streams).
pub fn print_json_line<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| Error::invalid(e.to_string()))?;
    writeln!(out).map_err(|e| Error::io(std::path::Path::new("<stdout>"), e))
}

/// Print what a patrol or a daemon pass did: `<action> <subject>: <detail>`
/// lines, or one JSON line each.
pub fn print_actions(actions: &[crate::event::Action], json: bool) -> Result<()> {
    for a in actions {
        if json {
            print_json_line(a)?;
        } else {
            println!("{} {}: {}", a.action, a.subject, a.detail);
        }
    }
    Ok(())
}

/// Print rows as left-aligned columns with a header, like `ps` does. A row
/// is one line: control characters in a cell (a newline typed into a
/// subject or a reason) are shown escaped (`\n`), never as line breaks.
pub fn print_table<R: AsRef<[S]>, S: AsRef<str>>(header: &[&str], rows: &[R]) {
    let rows: Vec<Vec<std::borrow::Cow<str>>> = rows
        .iter()
        .map(|r| r.as_ref().iter().map(|c| one_line(c.as_ref())).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let width: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity(width * (rows.len() + 1));
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, c) in cells.enumerate() {
            out.push_str(c);
            if i + 1 < widths.len() {
                let pad = widths[i] + 2 - c.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    print!("{out}");
}

/// `cell` with its control characters escaped (`\n`, `\t`, `\u{1b}`).
fn one_line(cell: &str) -> std::borrow::Cow<'_, str> {
    if !cell.chars().any(char::is_control) {
        return cell.into();
    }
    cell.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::WarnLazily;

    #[test]
    fn a_usage_error_is_one_line() {
        let clap = "error: unexpected argument '--rig' found\n\n  tip: to pass '--rig' as a value, use '-- --rig'\n\nUsage: gt-issue ready [OPTIONS] [RIG]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::usage_error(clap),
            "unexpected argument '--rig' found (tip: to pass '--rig' as a value, use '-- --rig'; \
             usage: gt-issue ready [OPTIONS] [RIG]; more with --help)"
        );
        let missing = "error: the following required arguments were not provided:\n  --issue <ISSUE>\n\nUsage: gt spawn --issue <ISSUE>\n";
        assert_eq!(
            super::usage_error(missing),
            "the following required arguments were not provided: --issue <ISSUE> \
             (usage: gt spawn --issue <ISSUE>; more with --help)"
        );
    }

    #[test]
    fn a_table_cell_is_one_line() {
        assert_eq!(super::one_line("done wyv-1"), "done wyv-1");
        assert_eq!(super::one_line("a\nb\tc\u{1b}[1m"), "a\\nb\\tc\\u{1b}[1m");
    }

    /// Without GT_LOG, debug and info cost nothing and build nothing; the
    /// first warning builds the logger that prints it.
    #[test]
    fn logging_without_gt_log_is_built_at_the_first_warning() {
        let d = tracing::Dispatch::new(WarnLazily::default());
        let built = || d.downcast_ref::<WarnLazily>().unwrap().0.get().is_some();
        tracing::dispatcher::with_default(&d, || {
            tracing::debug!("not shown");
            tracing::info!("not shown");
            assert!(!built());
            tracing::warn!("shown (by the test of the lazy logger)");
            assert!(built());
        });
    }
}
