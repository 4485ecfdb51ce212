//! Pane lines captured with their attributes (`tmux capture-pane -e`), read
//! only as far as telling dim text (SGR 2, "faint") from the rest: a TUI's
//! hint in an empty input box is drawn dim, text typed into it is not, and
//! the two read the same without attributes (Codex, protocol/agents.md).

/// A captured line: its text, and its text without the dim characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    pub text: String,
    pub undimmed: String,
}

/// `lines` as `capture-pane -e -p` prints them, read in order: tmux writes
/// an attribute change where it happens, so one set at the end of a line
/// holds at the start of the next. Escape sequences other than SGR (CSI,
/// OSC up to BEL or ESC \) are dropped; a line without any is plain text.
pub fn parse<S: AsRef<str>>(lines: &[S]) -> Vec<Line> {
    let mut dim = false;
    lines
        .iter()
        .map(|l| {
            let mut line = Line::default();
            let mut chars = l.as_ref().chars().peekable();
            while let Some(c) = chars.next() {
                if c != '\x1b' {
                    line.text.push(c);
                    if !dim {
                        line.undimmed.push(c);
                    }
                    continue;
                }
                match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                if c == 'm' {
                                    dim = sgr_dim(&params, dim);
                                }
                                break;
                            }
                            params.push(c);
                        }
                    }
                    Some(']') => {
                        while let Some(c) = chars.next() {
                            if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            line
        })
        .collect()
}

/// Whether text is dim after SGR `params` (e.g. `0;2`, `38;5;255`), given
/// whether it was: 0 (or none) resets, 2 sets dim, 22 (normal intensity)
/// clears it; the arguments of an extended colour (38, 48, 58 with `5;n` or
/// `2;r;g;b`) are colours, not attributes.
fn sgr_dim(params: &str, mut dim: bool) -> bool {
    let mut p = params.split(';');
    while let Some(n) = p.next() {
        match n {
            "" | "0" => dim = false,
            "2" => dim = true,
            "22" => dim = false,
            "38" | "48" | "58" => match p.next() {
                Some("5") => {
                    p.next();
                }
                Some("2") => {
                    p.nth(2);
                }
                _ => {}
            },
            _ => {}
        }
    }
    dim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_text_is_told_from_typed_text_across_lines_and_colours() {
        // Codex 0.171.0's empty input box, then one with typed text, as
        // `capture-pane -e` printed them (protocol/agents.md).
        let lines = parse(&[
            "\x1b[1m›\x1b[0m\x1b[39m\x1b[49m \x1b[2mAsk Codex to do anything",
            "\x1b[0m\x1b[39m\x1b[49m",
            "\x1b[1m›\x1b[0m\x1b[39m\x1b[49m typed text here",
        ]);
        assert_eq!(lines[0].text, "› Ask Codex to do anything");
        assert_eq!(lines[0].undimmed, "› ");
        assert_eq!(lines[2].undimmed, "› typed text here");
        // Dim set on one line holds on the next until reset.
        let carried = parse(&["\x1b[2m  Worked for 4s", "still dim\x1b[22m then not"]);
        assert_eq!(carried[1].undimmed, " then not");
        // The 2 of a truecolour or 256-colour argument is not dim.
        let colours =
            parse(&["a \x1b[38;2;166;227;161mgt prime\x1b[38;5;2m b \x1b[48;5;238;2mdim"]);
        assert_eq!(colours[0].undimmed, "a gt prime b ");
        assert_eq!(colours[0].text, "a gt prime b dim");
        let plain = parse(&["no escapes", "\x1b]0;title\x07x\x1b[K"]);
        assert_eq!(
            (plain[0].undimmed.as_str(), plain[1].text.as_str()),
            ("no escapes", "x")
        );
    }
}
