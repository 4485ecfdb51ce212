//! Typing into a session's terminal and reading its screen.

use std::path::PathBuf;

use super::{Owner, SessionId, is_alive, tmux};
use crate::error::{Error, Kind, Result};

// Typing into a session and reading its screen. Only tmux sessions have a
// terminal; a plain process reads /dev/null, so mail is its only channel.
//
// tmux has no event for "the pane changed", so the checks below poll the
// pane's screen with a deadline.

/// How long each step of [`inject`] waits for the pane: `GT_INJECT_WAIT`
/// (e.g. `500ms`, `10s`), default 3 s.
pub fn inject_wait() -> Result<std::time::Duration> {
    crate::clock::env_duration("GT_INJECT_WAIT", std::time::Duration::from_secs(3))
}

/// Whether `id` is a live session with a terminal (tmux) to type into.
pub fn has_terminal(id: &str) -> bool {
    matches!(SessionId::parse(id), Some(SessionId::Tmux { .. })) && is_alive(id)
}

/// What [`inject`] typed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Injected {
    /// The line as typed: each run of control characters (newlines, tabs,
    /// escapes) became one space.
    pub text: String,
    /// Enters pressed: 1, or 2 when the first left the text on the prompt.
    pub enters: u32,
}

/// Type `text` into session `id`, recorded for `owner`'s agent, as one line,
/// press Enter, and check that the line was submitted (see [`Pane::inject`]).
/// A process session is refused, and so is a session not the agent's
/// ([`Owner::check`]), as by [`capture`] and [`run`] too.
pub fn inject(owner: &Owner, id: &str, text: &str) -> Result<Injected> {
    inject_with(owner, id, text, "Enter")
}

/// [`inject`], submitting with the tmux key `submit` instead of Enter (a
/// runtime that queues a line typed while busy only on another key: Codex's
/// Tab, see protocol/agents.md).
pub fn inject_with(owner: &Owner, id: &str, text: &str, submit: &str) -> Result<Injected> {
    owner.check(id, "nothing typed")?;
    let pane = Pane::of(id).map_err(|e| match SessionId::parse(id) {
        Some(SessionId::Proc { .. }) => e
            .context("cannot inject")
            .with_hint("mail is the channel: gt send"),
        _ => e.context("cannot inject"),
    })?;
    let _typing = pane.typing_lock()?;
    pane.inject(text, inject_wait()?, submit)
}

/// The lines of session `id`'s pane: the visible screen, or with `last` the
/// last `last` lines of its history and screen. Trailing blank lines are dropped.
pub fn capture(owner: &Owner, id: &str, last: Option<usize>) -> Result<Vec<String>> {
    owner.check(id, "not captured")?;
    let pane = Pane::of(id).map_err(|e| e.context("cannot capture"))?;
    let snap = pane.snapshot()?;
    let from = match last {
        Some(n) => trimmed_len(&snap.lines).saturating_sub(n),
        None => snap.history,
    };
    Ok(tail(&snap.lines, from))
}

/// The visible screen of session `id`'s pane as drawn, read once with
/// [`super::sgr`] from `capture-pane -e`, for what only attributes tell (a
/// dim hint from typed text).
pub fn capture_styled(owner: &Owner, id: &str) -> Result<Vec<super::sgr::Line>> {
    owner.check(id, "not captured")?;
    let pane = Pane::of(id).map_err(|e| e.context("cannot capture"))?;
    let snap = pane.snapshot_with(true)?;
    Ok(super::sgr::parse(
        &snap.lines[snap.history.min(snap.lines.len())..],
    ))
}

/// Type `command` into session `id` (as [`inject`] does) and return the pane
/// lines that follow it, once the pane has been still for a moment (at most
/// `wait`). A program that keeps drawing is cut off at `wait`.
pub fn run(
    owner: &Owner,
    id: &str,
    command: &str,
    wait: std::time::Duration,
) -> Result<Vec<String>> {
    /// Output is complete when the pane has not changed for this long.
    const STILL: std::time::Duration = std::time::Duration::from_millis(300);
    owner.check(id, "nothing typed")?;
    let pane = Pane::of(id).map_err(|e| e.context("cannot run a command"))?;
    // Held until the output is read: no other line is typed in between.
    let _typing = pane.typing_lock()?;
    let start = pane.snapshot()?;
    let typed = pane.inject(command, inject_wait()?, "Enter")?;
    let mut last = pane.snapshot()?;
    let mut still_since = std::time::Instant::now();
    poll(wait, || {
        let now = pane.snapshot()?;
        if now != last {
            last = now;
            still_since = std::time::Instant::now();
        }
        Ok(still_since.elapsed() >= STILL)
    })?;
    // The command was typed on the cursor's line, at the same index as long
    // as tmux has not dropped history lines since (then from the top).
    let mut from = (start.history + start.cursor.1).min(last.lines.len());
    if last.history < start.history {
        from = 0;
    }
    // Skip the echo of the command itself.
    let needle = squeeze(&typed.text);
    let mut seen = String::new();
    for (i, line) in last.lines.iter().enumerate().skip(from) {
        seen.push_str(&squeeze(line));
        if seen.contains(&needle) {
            from = i + 1;
            break;
        }
    }
    Ok(tail(&last.lines, from))
}

/// `lines[from..]` without the trailing blank lines.
fn tail(lines: &[String], from: usize) -> Vec<String> {
    lines[from.min(trimmed_len(lines))..trimmed_len(lines)].to_vec()
}

fn trimmed_len(lines: &[String]) -> usize {
    lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1)
}

/// A live tmux session's pane.
struct Pane {
    socket: String,
    name: String,
    /// `=<name>:`: exactly this session (no prefix match), its current pane.
    target: String,
}

/// One look at a pane: every line of its history and screen, and the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// Lines of history above the screen (index of the screen's first line).
    history: usize,
    /// Cursor (x, y) on the screen.
    cursor: (usize, usize),
    lines: Vec<String>,
}

impl Pane {
    fn of(id: &str) -> Result<Pane> {
        match SessionId::parse(id) {
            Some(SessionId::Tmux { socket, name, .. }) if is_alive(id) => Ok(Pane {
                target: format!("={name}:"),
                socket,
                name,
            }),
            Some(SessionId::Tmux { .. }) => {
                Err(Error::not_found(format!("session {id} is not running")))
            }
            Some(SessionId::Proc { .. }) => Err(Error::invalid(format!(
                "session {id} is a plain process with no terminal"
            ))),
            None => Err(Error::invalid(format!(
                "{id:?} is not a session id gt knows"
            ))),
        }
    }

    fn snapshot(&self) -> Result<Snapshot> {
        self.snapshot_with(false)
    }

    /// A [`Snapshot`]; `styled`: its lines keep their escape sequences.
    fn snapshot_with(&self, styled: bool) -> Result<Snapshot> {
        // One command list: the cursor and the lines are from the same moment.
        let mut args = vec![
            "display-message",
            "-p",
            "-t",
            &self.target,
            "#{history_size} #{cursor_x} #{cursor_y}",
            ";",
            "capture-pane",
            "-p",
            "-t",
            &self.target,
            "-S",
            "-",
        ];
        if styled {
            args.push("-e");
        }
        let out = tmux(&self.socket, &args)?;
        let mut lines = out.lines().map(str::to_string);
        let head = lines.next().unwrap_or_default();
        let nums: Vec<usize> = head.split(' ').filter_map(|n| n.parse().ok()).collect();
        let [history, x, y] = nums[..] else {
            return Err(Error::new(
                Kind::Io,
                format!("tmux display-message printed {head:?}, not a cursor"),
            ));
        };
        Ok(Snapshot {
            history,
            cursor: (x, y),
            lines: lines.collect(),
        })
    }

    /// Take the lock that serialises typing into this pane, so two lines
    /// typed at once (a Witness nudge, a person's `gt inject`) do not
    /// interleave. It is a sidecar of the tmux server's socket,
    /// `<socket path>.<session>.typing.lock`, in tmux's private directory.
    fn typing_lock(&self) -> Result<crate::fsio::Lock> {
        let socket = tmux(
            &self.socket,
            &[
                "display-message",
                "-p",
                "-t",
                &self.target,
                "#{socket_path}",
            ],
        )?;
        let path = PathBuf::from(format!("{}.{}.typing.lock", socket.trim_end(), self.name));
        crate::fsio::lock_file(&path)
    }

    fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        tmux(&self.socket, &args).map(drop)
    }

    /// Type `text` as one line and submit it:
    ///
    /// 1. `send-keys -l` types it literally (never read as key names); each run
    ///    of control characters, newlines included, becomes one space, so a
    ///    multi-line text is one line and one Enter (an agent's prompt treats
    ///    every Enter as "submit").
    /// 2. Wait until the text shows in the pane (echoed) before pressing Enter:
    ///    a TUI that reads text and Enter in one go may take the Enter as part
    ///    of a paste and leave the text on its prompt.
    /// 3. Press Enter and wait until the text appears once more than before
    ///    typing (whitespace ignored, history included, so wrapping and an
    ///    earlier identical line do not matter), no longer sits on the
    ///    cursor's line, and the pane changed since the echo.
    /// 4. If instead it is still on the prompt (or Enter changed nothing),
    ///    press Enter once more, wait again, then give up with an error.
    ///
    /// A program that never shows its input cannot be checked: that is an
    /// error too, after the keys were sent.
    fn inject(&self, text: &str, wait: std::time::Duration, submit: &str) -> Result<Injected> {
        let line = one_line(text);
        let needle = squeeze(&line);
        if needle.is_empty() {
            return Err(Error::invalid("nothing to type: the text is blank"));
        }
        let before = self.snapshot()?.count(&needle);
        self.keys(&["-l", "--", &tmux_literal(&line)])?;
        let mut echo = self.snapshot()?;
        poll(wait, || {
            echo = self.snapshot()?;
            Ok(echo.count(&needle) > before)
        })?;
        let mut now = echo.clone();
        for enters in 1..=2 {
            self.keys(&[submit])?;
            let submitted = poll(wait, || {
                now = self.snapshot()?;
                Ok(now.count(&needle) > before && !now.on_prompt(&needle) && now != echo)
            })?;
            if submitted {
                return Ok(Injected { text: line, enters });
            }
            if now.count(&needle) <= before {
                return Err(Error::new(
                    Kind::Io,
                    format!(
                        "typed {line:?} into tmux session {} but it never showed in the pane within {wait:?} (the program does not echo its input?)",
                        self.name
                    ),
                ));
            }
        }
        Err(Error::new(
            Kind::Io,
            format!(
                "typed {line:?} into tmux session {} but it is still on the prompt after two {}s: not submitted",
                self.name, submit
            ),
        ))
    }
}

impl Snapshot {
    /// Occurrences of `needle` (squeezed) in the whole pane, whitespace ignored.
    fn count(&self, needle: &str) -> usize {
        squeeze(&self.lines.concat()).matches(needle).count()
    }

    /// Whether the cursor's line holds the end of `needle` (squeezed): the
    /// text is still on the prompt. A wrapped text's last piece counts if it
    /// is long enough not to be a prompt character that happens to match.
    fn on_prompt(&self, needle: &str) -> bool {
        let Some(line) = self.lines.get(self.history + self.cursor.1) else {
            return false;
        };
        let here = squeeze(line);
        !here.is_empty()
            && (here.ends_with(needle)
                || (needle.ends_with(&here)
                    && here.chars().count() >= needle.chars().count().min(8)))
    }
}

/// `text` with each run of control characters replaced by one space.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_control() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// `s` without whitespace: how text is compared with a pane, where wrapping
/// and padding add or move whitespace.
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// An argument tmux passes through as is: tmux takes an argument's final `;`
/// as a command separator unless it is written `\;`.
fn tmux_literal(s: &str) -> String {
    match s.strip_suffix(';') {
        Some(rest) => format!("{rest}\\;"),
        None => s.to_string(),
    }
}

/// Call `check` until it returns true or `wait` passes; whether it did. Pauses
/// grow from 5 to 50 ms.
pub(super) fn poll(
    wait: std::time::Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if check()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_turns_control_runs_into_one_space() {
        assert_eq!(one_line("a\r\nb\tc\x1b[1md"), "a b c [1md");
        assert_eq!(
            one_line("it's \"q\"; $HOME Enter C-c"),
            "it's \"q\"; $HOME Enter C-c"
        );
    }

    #[test]
    fn tmux_literal_escapes_only_a_final_semicolon() {
        assert_eq!(tmux_literal("a;b"), "a;b");
        assert_eq!(tmux_literal("a;"), "a\\;");
        assert_eq!(tmux_literal(";"), "\\;");
        assert_eq!(tmux_literal("a\\;"), "a\\\\;");
    }

    fn snap(lines: &[&str], cursor_y: usize) -> Snapshot {
        Snapshot {
            history: 0,
            cursor: (0, cursor_y),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn text_on_the_cursor_line_is_on_the_prompt() {
        let needle = squeeze("hello big world");
        assert!(snap(&["> hello big world", ""], 0).on_prompt(&needle));
        // Wrapped: the cursor's line has the last piece.
        assert!(snap(&["> hello", "big world"], 1).on_prompt(&needle));
        assert!(!snap(&["> hello big world", ""], 1).on_prompt(&needle));
        // A prompt character that happens to end the text is not the text.
        assert!(!snap(&["hello big world", "d"], 1).on_prompt(&needle));
        assert_eq!(
            snap(&["hel", "lo big world", "got: hello big world"], 0).count(&needle),
            2
        );
    }
}
