//! How a session ended, from what it left in its home: `session.exit`, whose
//! first line (written at the start) is the length `session.log` had then,
//! and whose second (appended by the session's leader when its command
//! ends) is the exit status; and the last lines of its output.

use std::path::{Path, PathBuf};

use crate::home::Home;

/// At most this many lines of output go into a report.
pub const LAST_LINES: usize = 20;

/// Where a home's session start and leader record it (see the module).
pub fn exit_path(home: &Path) -> PathBuf {
    home.join("session.exit")
}

/// `session.exit`'s lines as numbers: (log offset, exit status).
fn record(home: &Home) -> (u64, Option<i32>) {
    let text = crate::confine::read(&exit_path(&home.path)).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines();
    let from = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (from, lines.next().and_then(|l| l.trim().parse().ok()))
}

/// The recorded exit status of `home`'s last session: `None` while it runs,
/// or when its leader was killed (it writes nothing then).
pub fn status(home: &Home) -> Option<i32> {
    record(home).1
}

/// The last [`LAST_LINES`] non-blank lines `home`'s last session wrote to its
/// log, as plain text (terminal control sequences removed).
pub fn last_lines(home: &Home) -> Vec<String> {
    let Ok(log) = crate::confine::read(&super::log_path(&home.path)) else {
        return Vec::new();
    };
    let from = (record(home).0 as usize).min(log.len());
    let lines = plain(&log[from..]);
    lines[lines.len().saturating_sub(LAST_LINES)..].to_vec()
}

/// `bytes` of terminal output as its non-blank lines: escape sequences (CSI,
/// OSC, two-byte) dropped, a carriage return starting its line over, other
/// control characters dropped.
fn plain(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' => lines.push(std::mem::take(&mut line)),
            '\r' if chars.peek() != Some(&'\n') => line.clear(),
            '\t' => line.push(' '),
            c if c.is_control() => {}
            c => line.push(c),
        }
    }
    lines.push(line);
    lines
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_drops_control_sequences_and_blank_lines() {
        let raw = b"\x1b[?25l\x1b[2J\x1b[1;1Hcolour \x1b[31mred\x1b[0m\r\n\x1b]0;title\x07\n\nprogress 10%\rprogress 100%\nbye\ttab\x1b\\";
        assert_eq!(
            plain(raw),
            ["colour red", "progress 100%", "bye tab"].map(str::to_string)
        );
    }

    #[test]
    fn last_lines_are_the_last_sessions_own() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home {
            address: "r/Nux".parse().unwrap(),
            path: tmp.path().to_path_buf(),
        };
        let mut log = String::from("old output\n");
        std::fs::write(exit_path(tmp.path()), format!("{}\n", log.len())).unwrap();
        for i in 0..30 {
            log.push_str(&format!("line {i}\n"));
        }
        std::fs::write(tmp.path().join("session.log"), log).unwrap();
        let last = last_lines(&home);
        assert_eq!(last.len(), LAST_LINES);
        assert_eq!(
            (last[0].as_str(), last[19].as_str()),
            ("line 10", "line 29")
        );
        assert_eq!(status(&home), None);
        std::fs::write(exit_path(tmp.path()), "11\n3\n").unwrap();
        assert_eq!(status(&home), Some(3));
        assert_eq!(last_lines(&home).len(), LAST_LINES);
    }
}
