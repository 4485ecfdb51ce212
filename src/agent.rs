//! Agent presets: what gastown knows about one coding runtime (Claude Code,
//! Codex, or a custom command) to start it unattended, tell it its work, and
//! read its screen. The contract and the facts behind each preset are in
//! protocol/agents.md.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::session::sgr::Line;
use crate::town::Town;

/// A runtime gastown knows how to drive (`"agent"` in town.json or a rig's config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Claude Code (`claude`, npm `@anthropic-ai/claude-code`).
    Claude,
    /// Codex CLI (`codex`, npm `@openai/codex`).
    Codex,
    /// `agent_command` as given; gastown knows nothing of its screen.
    Custom,
}

/// What a runtime's screen says, read from its pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// At its prompt, waiting for input. `input` is what sits in the input box
    /// (empty when clean; a dim hint is not input).
    Ready { input: String },
    /// Working on a turn: a typed line would be queued. `input` as for
    /// `Ready`: text typed into the box meanwhile (it would be glued on).
    Busy { input: String },
    /// A dialog waits for a human: the dialog's first lines.
    Dialog(String),
    /// Not (yet) a screen the preset knows: starting, or a custom runtime.
    Unknown,
}

impl Preset {
    /// The preset's name, as written in `"agent"`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Claude => "claude",
            Preset::Codex => "codex",
            Preset::Custom => "custom",
        }
    }

    /// The program the preset runs; `None` for custom.
    pub fn program(self) -> Option<&'static str> {
        match self {
            Preset::Claude => Some("claude"),
            Preset::Codex => Some("codex"),
            Preset::Custom => None,
        }
    }

    /// The names its processes have (`/proc/<pid>/comm`), to tell a live
    /// runtime from the shell that started it.
    pub fn process_names(self) -> &'static [&'static str] {
        match self {
            Preset::Claude => &["claude"],
            Preset::Codex => &["codex"],
            Preset::Custom => &[],
        }
    }

    /// The file in its working directory the runtime reads its instructions from.
    pub fn instructions_file(self) -> Option<&'static str> {
        match self {
            Preset::Claude => Some("CLAUDE.md"),
            Preset::Codex => Some("AGENTS.md"),
            Preset::Custom => None,
        }
    }

    /// The tmux key that submits a typed line, busy or not: Codex sends a line
    /// submitted with Enter while busy into the model call in flight, whose
    /// answer is dropped, but queues one submitted with Tab for after the turn
    /// (at its ready prompt Tab submits as Enter does; protocol/agents.md).
    pub fn submit_key(self) -> &'static str {
        match self {
            Preset::Codex => "Tab",
            Preset::Claude | Preset::Custom => "Enter",
        }
    }

    /// Whether the runtime reports its own activity through hooks (else the
    /// Witness reads activity from the screen).
    pub fn has_hooks(self) -> bool {
        self == Preset::Claude
    }

    /// The unattended command line for an agent living in `home`, with
    /// `first_prompt` as its first turn.
    pub fn command_line(self, home: &Home, first_prompt: &str) -> Option<String> {
        let prompt = shell_quote(first_prompt);
        match self {
            Preset::Claude => Some(format!(
                "claude --dangerously-skip-permissions --settings {} {prompt}",
                shell_quote(&settings_path(home).display().to_string())
            )),
            Preset::Codex => Some(format!(
                "codex --dangerously-bypass-approvals-and-sandbox {prompt}"
            )),
            Preset::Custom => None,
        }
    }

    /// Environment the runtime needs to start unattended (protocol/agents.md):
    /// Claude Code refuses `--dangerously-skip-permissions` as root without
    /// `IS_SANDBOX=1`, asks to trust the folder without `CLAUDE_CODE_SANDBOXED=1`
    /// (or an entry in the user's own config), and would update itself under a
    /// running town without `DISABLE_AUTOUPDATER=1`.
    pub fn env(self, root: bool) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if self == Preset::Claude {
            env.push(("DISABLE_AUTOUPDATER".into(), "1".into()));
            env.push(("CLAUDE_CODE_SANDBOXED".into(), "1".into()));
            if root {
                env.push(("IS_SANDBOX".into(), "1".into()));
            }
        }
        env
    }

    /// Whether the first prompt given on the command line has been submitted,
    /// read from the screen's `lines` (as [`Preset::screen`] takes them).
    /// Until then Claude Code drops whatever is typed when it submits that
    /// prompt, and Codex shows an input box before it takes it
    /// (protocol/agents.md). Taken once it shows above the input box; for
    /// Codex also once its session header has scrolled away.
    pub fn first_prompt_taken(self, lines: &[Line]) -> bool {
        let prompts = |mark: char| {
            lines
                .iter()
                .filter(|l| l.text.trim_start().starts_with(mark))
                .count()
        };
        match self {
            Preset::Claude => prompts('❯') >= 2,
            Preset::Codex => {
                prompts('›') >= 2 || !lines.iter().any(|l| l.text.contains(">_ OpenAI Codex"))
            }
            Preset::Custom => true,
        }
    }

    /// Read the pane's `lines`: the visible screen as
    /// [`crate::session::capture_styled`] gives it.
    pub fn screen(self, lines: &[Line]) -> Screen {
        match self {
            Preset::Claude => claude_screen(lines),
            Preset::Codex => codex_screen(lines),
            Preset::Custom => Screen::Unknown,
        }
    }
}

/// Claude Code's screen (protocol/agents.md, "Ready screen", "Busy screen").
fn claude_screen(lines: &[Line]) -> Screen {
    let plain: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    if let Some(d) = dialog(&plain, "Enter to confirm · Esc to cancel") {
        return d;
    }
    let input = claude_input(lines);
    // The footer's `esc to interrupt` gives way to text typed while busy;
    // the spinner line above the box stays.
    let spinning = input
        .as_ref()
        .is_some_and(|(at, _)| claude_spinner(&plain[..at - 1]));
    if spinning || plain.iter().any(|l| l.contains("esc to interrupt")) {
        return Screen::Busy {
            input: input.map(|(_, i)| i).unwrap_or_default(),
        };
    }
    match input {
        Some((_, input)) => Screen::Ready { input },
        None => Screen::Unknown,
    }
}

/// Claude Code's input box, `❯ <text>` right below a rule with a rule below
/// it: its line and its text; `None` without one. A hint in the box (`Press
/// up to edit queued messages`) is drawn dim but for its first character,
/// which holds the cursor: it is not input.
fn claude_input(lines: &[Line]) -> Option<(usize, String)> {
    let rule = |l: &Line| l.text.trim_start().starts_with("──");
    let boxed = |t: &str| {
        t.trim_start()
            .strip_prefix('❯')
            .map(|t| t.trim().to_string())
    };
    (1..lines.len()).find_map(|i| {
        let text = boxed(&lines[i].text)?;
        if !(rule(&lines[i - 1]) && lines.get(i + 1).is_some_and(rule)) {
            return None;
        }
        let undimmed = boxed(&lines[i].undimmed).unwrap_or_default();
        let hint = undimmed.chars().count() <= 1 && text.chars().count() > 1;
        Some((i, if hint { String::new() } else { text }))
    })
}

/// Whether the last line `above` the input box's rule, past blank lines and
/// queued messages (`❯ <text>`), is Claude Code's spinner: a glyph and one
/// word ending in `…`, alone or before a `(…)` of timings (`✶ Harmonizing…`;
/// after the turn `✻ Worked for 8s`).
fn claude_spinner(above: &[String]) -> bool {
    let Some(line) = above
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('❯'))
    else {
        return false;
    };
    let mut words = line.splitn(3, ' ');
    let glyph = words.next().unwrap_or_default();
    let verb = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    ["·", "✢", "✳", "✶", "✻", "✽"].contains(&glyph)
        && verb
            .strip_suffix('…')
            .is_some_and(|w| !w.is_empty() && w.chars().all(char::is_alphabetic))
        && (rest.is_empty() || rest.starts_with('('))
}

/// Codex's screen (protocol/agents.md, "Codex's screen"): its input box is
/// the last line starting with a `›` that is not dim (a submitted prompt's
/// is), and holds a hint drawn dim when empty: the input is its text that is
/// not dim. Footer `? for shortcuts` shows only while the box is empty.
fn codex_screen(lines: &[Line]) -> Screen {
    let plain: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    // The trust dialog, and the review of new hooks (protocol/agents.md).
    if let Some(d) = dialog(&plain, "enter continue · esc back")
        .or_else(|| dialog(&plain, "enter confirm · esc skip"))
    {
        return d;
    }
    let input = lines
        .iter()
        .rev()
        .find_map(|l| l.undimmed.trim_start().strip_prefix('›'))
        .map(|i| i.trim().to_string());
    if plain.iter().any(|l| l.contains("esc to interrupt")) {
        return Screen::Busy {
            input: input.unwrap_or_default(),
        };
    }
    let Some(input) = input else {
        return Screen::Unknown;
    };
    let footer = plain.iter().any(|l| l.contains("? for shortcuts"));
    // Text in the box replaces the footer; a `›` with neither is not Codex's.
    if footer || !input.is_empty() {
        Screen::Ready { input }
    } else {
        Screen::Unknown
    }
}

/// `lines` (captured with escape sequences) as plain text.
/// A dialog whose key line is `keys`: its first non-blank lines, for the report.
fn dialog(lines: &[String], keys: &str) -> Option<Screen> {
    let at = lines.iter().position(|l| l.contains(keys))?;
    // The dialog starts below the last rule above its key line.
    let start = lines[..at]
        .iter()
        .rposition(|l| l.trim_start().starts_with("──"))
        .map_or(0, |i| i + 1);
    let text: Vec<&str> = lines[start..at]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    Some(Screen::Dialog(text.join(" / ")))
}

/// How an agent is started, resolved from the town's and its rig's config.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub preset: Preset,
    /// `agent_command` (rig, else town): overrides the preset's command line.
    pub command: Option<String>,
    /// `agent_env`: town's, then rig's (the rig's value wins per key).
    pub env: Vec<(String, String)>,
}

impl AgentConfig {
    /// The config for an agent of `rig` (`None`: a town-level agent):
    /// `agent` and `agent_command` from the rig's `config.json` over the
    /// town's, `agent_env` merged per key (the rig's wins). With no `agent`
    /// anywhere the preset is `custom`.
    pub fn resolve(town: &Town, rig: Option<&str>) -> Result<AgentConfig> {
        let t = town.config()?;
        let r = rig
            .map(|name| crate::rig::Rig::at(town, name).config())
            .transpose()?;
        let mut env = t.agent_env;
        if let Some(r) = &r {
            env.extend(r.agent_env.clone());
        }
        let (agent, command) = match r {
            Some(r) => (r.agent.or(t.agent), r.agent_command.or(t.agent_command)),
            None => (t.agent, t.agent_command),
        };
        Ok(AgentConfig {
            preset: agent.unwrap_or(Preset::Custom),
            command,
            env: env.into_iter().collect(),
        })
    }

    /// The command line for `home`'s agent: `agent_command` when set, else
    /// the preset's with the first prompt for `issue`; `None` for a custom
    /// preset without `agent_command`.
    pub fn command_line(&self, home: &Home, issue: Option<&str>) -> Option<String> {
        self.command.clone().or_else(|| {
            self.preset
                .command_line(home, &first_prompt(&home.address, issue))
        })
    }

    /// Write what the runtime reads before `home`'s agent starts (see
    /// [`prepare`]), with the gt binary beside the running one in its hooks.
    pub fn prepare(&self, home: &Home) -> Result<()> {
        let gt = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.join("gt")))
            .unwrap_or_else(|| PathBuf::from("gt"));
        prepare(self.preset, home, &instructions(&home.address), &gt)?;
        if self.preset == Preset::Codex {
            crate::codex::prepare(home, crate::codex::user_home(&self.env).as_deref())?;
        }
        Ok(())
    }

    /// The variables this config adds to `home`'s session: the preset's, then
    /// `agent_env`; for Codex then `CODEX_HOME`, the agent's own (a
    /// `CODEX_HOME` in `agent_env` names the user's Codex home it is seeded
    /// from, see [`crate::codex`]).
    pub fn session_env(&self, home: &Home) -> Vec<(String, String)> {
        let mut env = self.preset.env(nix::unistd::geteuid().is_root());
        env.extend(self.env.iter().cloned());
        if self.preset == Preset::Codex {
            let dir = crate::codex::home_dir(home).display().to_string();
            env.push(("CODEX_HOME".into(), dir));
        }
        env
    }
}

/// What `home`'s runtime shows in its live session `session` now; `None`
/// when the session has no terminal or the preset cannot read screens.
pub fn screen_of(town: &Town, home: &Home, session: &str) -> Option<Screen> {
    let preset = AgentConfig::resolve(town, home.address.rig()).ok()?.preset;
    if preset == Preset::Custom || !crate::session::has_terminal(session) {
        return None;
    }
    let owner = crate::session::Owner::of(town, home);
    let lines = crate::session::capture_styled(&owner, session).ok()?;
    Some(preset.screen(&lines))
}

/// Longest [`inject`] and `gt spawn` wait for a starting runtime to show a
/// screen it knows, unless told otherwise (`gt spawn --wait`).
pub const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How a runtime's start looks once [`wait_ready`] has seen enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// It took its first prompt and is at its prompt or busy on a turn (a
    /// typed line is queued): ready for input.
    Ready,
    /// At its prompt, or busy, with text left in the input box (a typed line
    /// would be glued onto it).
    Input(String),
    /// A dialog waits for a human: its first lines.
    Blocked(String),
    /// Not ready within the wait.
    TimedOut,
    /// The session ended.
    Ended,
    /// The preset cannot read screens (custom), or the session has no
    /// terminal (a plain process): not waited for.
    Unknown,
}

/// Wait (at most `wait`) until `home`'s runtime in its live session
/// `session` is ready for input, or shows why it is not: see [`Start`].
pub fn wait_ready(
    town: &Town,
    home: &Home,
    session: &str,
    wait: std::time::Duration,
) -> Result<Start> {
    let agent = AgentConfig::resolve(town, home.address.rig())?;
    let preset = agent.preset;
    // A custom command (or a plain process) is not read: ending at once may
    // be its whole job.
    let readable = matches!(
        crate::session::SessionId::parse(session),
        Some(crate::session::SessionId::Tmux { .. })
    );
    if preset == Preset::Custom || !readable {
        return Ok(Start::Unknown);
    }
    let deadline = std::time::Instant::now() + wait;
    // The preset's own command line passes a first prompt.
    let prompted = agent.command.is_none();
    let owner = crate::session::Owner::of(town, home);
    loop {
        if !crate::session::is_alive(session) {
            return Ok(Start::Ended);
        }
        let lines = match crate::session::capture_styled(&owner, session) {
            Ok(l) => l,
            // It ended between the check and the capture: tmux may drop the
            // session as soon as its pane's terminal closes, a moment before
            // the leader is a zombie, so give the leader that moment.
            Err(_) if crate::session::wait(session, std::time::Duration::from_secs(1)) => {
                return Ok(Start::Ended);
            }
            Err(e) => return Err(e),
        };
        let started = !prompted || preset.first_prompt_taken(&lines);
        match preset.screen(&lines) {
            Screen::Ready { input } | Screen::Busy { input } if !input.is_empty() => {
                return Ok(Start::Input(input));
            }
            Screen::Dialog(d) => return Ok(Start::Blocked(d)),
            Screen::Busy { .. } | Screen::Ready { .. } if started => return Ok(Start::Ready),
            Screen::Busy { .. } | Screen::Ready { .. } | Screen::Unknown => {}
        }
        if std::time::Instant::now() >= deadline {
            return Ok(Start::TimedOut);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Type `text` into `home`'s live session `session` as [`crate::session::inject`]
/// does, but only where the preset's runtime takes it: at its ready prompt
/// with an empty input box, or busy (the runtime queues the line; nothing
/// cancels the turn). A starting runtime is waited for (at most
/// [`READY_WAIT`]); at a dialog, or with text left in the input box (the line
/// would be glued onto it), nothing is typed and that is the error. A custom
/// runtime is typed into as is.
pub fn inject(
    town: &Town,
    home: &Home,
    session: &str,
    text: &str,
) -> Result<crate::session::Injected> {
    let preset = AgentConfig::resolve(town, home.address.rig())?.preset;
    // The caller names the agent (the error's context, the patrol's subject).
    let not_typed = |what: String| {
        Error::conflict(format!("its {what}; nothing typed"))
            .with_hint(format!("see it with: gt capture {}", home.address))
    };
    match wait_ready(town, home, session, READY_WAIT)? {
        Start::Ready | Start::Unknown | Start::Ended => {}
        Start::Input(i) => {
            return Err(Error::conflict(format!(
                "its input box already holds {i:?}; nothing typed (the line would be glued onto it)"
            )));
        }
        Start::Blocked(d) => return Err(not_typed(format!("runtime waits at a dialog ({d})"))),
        Start::TimedOut => {
            return Err(not_typed(format!(
                "runtime ({}) is not ready for input within {READY_WAIT:?}",
                preset.name()
            )));
        }
    }
    let owner = crate::session::Owner::of(town, home);
    crate::session::inject_with(&owner, session, text, preset.submit_key())
}

/// What to do about an agent whose runtime waits at a dialog.
pub fn blocked_hint(addr: &impl std::fmt::Display) -> String {
    format!(
        "answer it in its terminal (gt attach {addr}), or stop it (gt kill {addr}); a preset that should have skipped it is missing a fact (protocol/agents.md)"
    )
}

/// Record in `home`'s state that its runtime waits at `dialog`, and tell
/// whoever answers for it ([`crate::report::about`], `by` is who saw it),
/// once: until the dialog is gone ([`unblocked`]) or the next start, whoever
/// sees it again records and sends nothing. Whether this was the first sight.
pub fn blocked(town: &Town, home: &Home, dialog: &str, by: &str) -> Result<bool> {
    let first = home.update_state(|s| {
        let first = s.blocked.is_none();
        if first {
            s.blocked = Some(dialog.to_string());
        }
        Ok(first)
    })?;
    if first {
        crate::report::about(
            town,
            home,
            &format!("blocked: {}", home.address),
            &format!(
                "Its runtime waits at a dialog no preset answers:\n{dialog}\n\nNothing is typed into it. To do: {}.",
                blocked_hint(&home.address)
            ),
            by,
        )?;
    }
    Ok(first)
}

/// Clear a recorded dialog: `home`'s screen shows none any more.
pub fn unblocked(home: &Home) -> Result<()> {
    if home.state()?.blocked.is_some() {
        home.update_state(|s| {
            s.blocked = None;
            Ok(())
        })?;
    }
    Ok(())
}

/// The first prompt of `addr`'s agent: it names its issue, if any, and
/// points at `gt prime`.
pub fn first_prompt(addr: &crate::address::Address, issue: Option<&str>) -> String {
    match issue {
        Some(issue) => format!(
            "You are {addr}, a gastown worker. Your issue is {issue}. Run `gt prime` first: it prints who you are, the issue, and how to report done."
        ),
        None => format!(
            "You are {addr} in a gastown town. Run `gt prime` first: it prints who you are and how to work here."
        ),
    }
}

/// The instructions written where the runtime reads them: the role prompt,
/// then how to work here (the same rules `gt prime` prints).
pub fn instructions(addr: &crate::address::Address) -> String {
    let mut text = crate::home::role_prompt(addr);
    text.push_str(
        "\n## How to work here\n\nStart with `gt prime`: it prints your issue and these rules.\n\n",
    );
    for line in crate::worker::how(addr) {
        text.push_str("- ");
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Where the `claude` preset's settings file lives: in the agent's home, never
/// in the user's own config.
pub fn settings_path(home: &Home) -> PathBuf {
    home.path.join("claude-settings.json")
}

/// The `claude` preset's settings: no bypass-permissions warning, and hooks
/// that beat the agent's heartbeat when a prompt is submitted, a tool starts
/// or ends, and a turn stops. `gt` is the binary the hooks run.
pub fn claude_settings(gt: &Path) -> Value {
    let beat = json!([{"hooks": [{
        "type": "command",
        // `|| true`: a hook that exits 2 blocks the prompt or tool it hooks
        // (protocol/agents.md); a heartbeat must never stop the work.
        "command": format!("{} heartbeat || true", shell_quote(&gt.display().to_string())),
    }]}]);
    let tool = json!([{"matcher": "*", "hooks": beat[0]["hooks"].clone()}]);
    json!({
        "skipDangerousModePermissionPrompt": true,
        "hooks": {
            "SessionStart": beat,
            "UserPromptSubmit": beat,
            "PreToolUse": tool,
            "PostToolUse": tool,
            "Stop": beat,
        },
    })
}

/// Write what `preset` reads before the agent of `home` starts: the
/// instructions file in its clone (kept out of `git status` and `git add -A`
/// through the clone's `.git/info/exclude`) and, for Claude, its settings file
/// in the home. `gt` is the binary the hooks call.
pub fn prepare(preset: Preset, home: &Home, instructions: &str, gt: &Path) -> Result<()> {
    let clone = home.clone_dir();
    if let Some(file) = preset.instructions_file().filter(|_| clone.is_dir()) {
        crate::fsio::write_atomic(&clone.join(file), instructions.as_bytes())?;
        exclude(&clone, file)?;
    }
    if preset == Preset::Claude {
        crate::fsio::write_json(&settings_path(home), &claude_settings(gt))?;
    }
    Ok(())
}

/// Add `/<file>` to `clone`'s `.git/info/exclude` unless it is there.
fn exclude(clone: &Path, file: &str) -> Result<()> {
    let info = clone.join(".git").join("info");
    crate::fsio::ensure_dir(&info)?;
    let path = info.join("exclude");
    let current = match crate::confine::read(&path) {
        Ok(s) => String::from_utf8_lossy(&s).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let line = format!("/{file}");
    if current.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut next = current;
    if !next.is_empty() && !next.ends_with('\n') {
        next.push('\n');
    }
    next.push_str(&line);
    next.push('\n');
    crate::fsio::write_atomic(&path, next.as_bytes())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<Line> {
        crate::session::sgr::parse(&s.lines().collect::<Vec<_>>())
    }

    const RULE: &str = "────────────────────────────────────────";

    #[test]
    fn claude_ready_busy_and_dialog_screens_are_told_apart() {
        // As captured from Claude Code 2.1.197 (protocol/agents.md).
        let ready = lines(&format!(
            "╰──────╯\n{RULE}\n❯\u{a0}\n{RULE}\n  ⏵⏵ bypass permissions on (shift+tab to cycle) · ← for agents"
        ));
        assert_eq!(
            Preset::Claude.screen(&ready),
            Screen::Ready {
                input: String::new()
            }
        );
        let left = lines(&format!(
            "❯ a slow one\n  ⎿  Interrupted · What should Claude do instead?\n{RULE}\n❯ more text\n{RULE}\n  ⏵⏵ bypass permissions on (shift+tab to cycle)"
        ));
        assert_eq!(
            Preset::Claude.screen(&left),
            Screen::Ready {
                input: "more text".into()
            }
        );
        let busy = lines(&format!(
            "❯ a slow one\n✶ Harmonizing…\n{RULE}\n❯ \n{RULE}\n  ⏵⏵ bypass permissions on (shift+tab to cycle) · esc to interrupt · ← for agents"
        ));
        assert_eq!(
            Preset::Claude.screen(&busy),
            Screen::Busy {
                input: String::new()
            }
        );
        let trust = lines(&format!(
            "{RULE}\n Accessing workspace:\n\n /tmp/h3exp/proj\n\n Quick safety check: Is this a project you created or one you trust?\n ❯ 1. Yes, I trust this folder\n   2. No, exit\n\n Enter to confirm · Esc to cancel"
        ));
        assert_eq!(
            Preset::Claude.screen(&trust),
            Screen::Dialog(
                "Accessing workspace: / /tmp/h3exp/proj / Quick safety check: Is this a project you created or one you trust?".into()
            )
        );
        // The banner alone (still starting) is nothing yet.
        assert_eq!(
            Preset::Claude.screen(&lines("╭─── Claude Code v2.1.197 ───╮")),
            Screen::Unknown
        );
        assert_eq!(Preset::Custom.screen(&ready), Screen::Unknown);
        // The first prompt is taken once it shows above the input box.
        assert!(!Preset::Claude.first_prompt_taken(&ready));
        assert!(Preset::Claude.first_prompt_taken(&busy));
    }

    #[test]
    fn claude_busy_screens_show_what_was_typed_meanwhile() {
        // As `capture-pane -e` printed Claude Code 2.1.197 busy on a turn
        // (rules shortened): text typed into the box replaces the footer's
        // `esc to interrupt`, the spinner stays; a queued line shows above
        // the box, which then holds a hint dim but for its cursor cell.
        let spinner = "\x1b[38;5;174m\x1b[49m✽\x1b[39m \x1b[38;5;174mChannelling… \x1b[39m\n";
        let rule = format!("\x1b[38;5;244m{RULE}\n");
        let footer = "\x1b[39m  \x1b[38;5;211m⏵⏵\x1b[39m \x1b[38;5;211mbypass\x1b[39m \x1b[38;5;211mpermissions\x1b[39m \x1b[38;5;211mon\x1b[38;5;246m (shift+tab\x1b[39m \x1b[38;5;246mto\x1b[39m \x1b[38;5;246mcycle)\x1b[39m";
        let typed = lines(&format!(
            "{spinner}{rule}\x1b[38;5;246m❯\u{a0}\x1b[39mtyped not sent\x1b[7m\n\x1b[0m{rule}{footer}"
        ));
        assert_eq!(
            Preset::Claude.screen(&typed),
            Screen::Busy {
                input: "typed not sent".into()
            }
        );
        let queued = lines(&format!(
            "{spinner}  \x1b[38;5;239m\x1b[48;5;237m❯ \x1b[38;5;231mtyped not sent\x1b[39m\n{rule}\x1b[38;5;246m❯\u{a0}\x1b[7m\x1b[39mP\x1b[0;2m\x1b[39m\x1b[49mress up to edit queued messages\x1b[0m\x1b[39m\x1b[49m\n{rule}{footer} · esc to interrupt"
        ));
        assert_eq!(
            Preset::Claude.screen(&queued),
            Screen::Busy {
                input: String::new()
            }
        );
        // The hint with the queued line gone and the turn over is no input either.
        let over = lines(&format!(
            "\x1b[38;5;174m✻\x1b[39m Worked for 8s\n{rule}\x1b[38;5;246m❯\u{a0}\x1b[7m\x1b[39mP\x1b[0;2mress up to edit queued messages\x1b[0m\n{rule}{footer}"
        ));
        assert_eq!(
            Preset::Claude.screen(&over),
            Screen::Ready {
                input: String::new()
            }
        );
        // A word with an ellipsis in the answer is no spinner.
        let answer = lines(&format!("· Loading… the config\n{rule}❯ \n{rule}{footer}"));
        assert_eq!(
            Preset::Claude.screen(&answer),
            Screen::Ready {
                input: String::new()
            }
        );
    }

    #[test]
    fn codex_screens() {
        // As `capture-pane -e` printed Codex 0.171.0's screens (blank lines
        // dropped; protocol/agents.md): its header, the first prompt taken
        // (its `›` dim), the answer, the input box with its dim hint.
        let header = "  \x1b[38;5;75m>_ \x1b[1m\x1b[39mOpenAI Codex\x1b[0;2m\x1b[39m\x1b[49m (v0.171.0)\n\x1b[0m\x1b[39m\x1b[49m     \x1b[2m~/town/r/polecats/Nux/rig\n  permissions: \x1b[0;1m\x1b[38;5;5m\x1b[49mYOLO mode\n\x1b[0m\x1b[39m\x1b[49m\n";
        let taken = "\x1b[38;5;255m\x1b[48;5;238m\n\x1b[1;2m\x1b[39m› \x1b[0m\x1b[38;5;255m\x1b[48;5;238mYou are r/Nux, a gastown worker. Run \x1b[38;2;166;227;161mgt prime\x1b[38;5;255m first.\n\x1b[39m\x1b[49m\n\x1b[2m• \x1b[0m\x1b[39m\x1b[49mWaiting for word.\n\x1b[2m  Worked for 4s • 15:40\n\x1b[0m\x1b[39m\x1b[49m\n";
        let hint = "\x1b[1m›\x1b[0m\x1b[39m\x1b[49m \x1b[2mAsk Codex to do anything\n\x1b[0m\x1b[39m\x1b[49m\n";
        let model = "  \x1b[38;5;223mgpt-test default\x1b[39m · \x1b[38;5;151m~/town/r/polecats/Nux/rig\x1b[39m · \x1b[38;5;217mscripted\x1b[39m\n";
        let footer = "  \x1b[1m←\x1b[0m\x1b[39m\x1b[49m for agents · \x1b[1m?\x1b[0m\x1b[39m\x1b[49m for shortcuts";
        let ready = lines(&format!("{header}{taken}{hint}{model}{footer}"));
        assert_eq!(
            Preset::Codex.screen(&ready),
            Screen::Ready {
                input: String::new()
            }
        );
        assert!(Preset::Codex.first_prompt_taken(&ready));
        // Typed text is not dim, and the footer's shortcuts give way to it.
        let typed = lines(&format!(
            "{header}{taken}\x1b[1m›\x1b[0m\x1b[39m\x1b[49m typed text here\n\n{model}"
        ));
        assert_eq!(
            Preset::Codex.screen(&typed),
            Screen::Ready {
                input: "typed text here".into()
            }
        );
        // Before the first prompt is taken the input box shows already.
        let starting = lines(&format!("{header}{hint}{model}{footer}"));
        assert_eq!(
            Preset::Codex.screen(&starting),
            Screen::Ready {
                input: String::new()
            }
        );
        assert!(!Preset::Codex.first_prompt_taken(&starting));
        // Without colours the hint reads as text; a `›` with no footer is not Codex's.
        assert_eq!(
            Preset::Codex.screen(&lines("› Ask Codex\n  ? for shortcuts")),
            Screen::Ready {
                input: "Ask Codex".into()
            }
        );
        assert_eq!(Preset::Codex.screen(&lines("$ echo ›")), Screen::Unknown);
        assert_eq!(Preset::Codex.screen(&lines("›")), Screen::Unknown);
        // Busy (Codex 0.171.0): text typed meanwhile is not dim; a line
        // queued with Tab shows above the box, which holds its hint again.
        let working = "\x1b[2m◦\x1b[0m\x1b[39m\x1b[49m \x1b[2mWorking\x1b[0m\x1b[39m\x1b[49m \x1b[2m(0s • \x1b[0;1m\x1b[39m\x1b[49mesc\x1b[0;2m\x1b[39m\x1b[49m to interrupt)\n\x1b[0m\x1b[39m\x1b[49m\n";
        let busy_typed = lines(&format!(
            "{header}{taken}{working}\x1b[1m›\x1b[0m\x1b[39m\x1b[49m typed not sent\n{model}  \x1b[1mtab\x1b[0m\x1b[39m\x1b[49m to queue message"
        ));
        assert_eq!(
            Preset::Codex.screen(&busy_typed),
            Screen::Busy {
                input: "typed not sent".into()
            }
        );
        let busy_queued = lines(&format!(
            "{header}{taken}{working}\x1b[2m• \x1b[0m\x1b[39m\x1b[49mQueued follow-up inputs\n\x1b[2m  ↳ \x1b[3mtyped not sent\n\x1b[0m\x1b[39m\x1b[49m    \x1b[1mshift+←\x1b[0;2m\x1b[39m\x1b[49m edit last queued message\n{hint}{model}{footer}"
        ));
        assert_eq!(
            Preset::Codex.screen(&busy_queued),
            Screen::Busy {
                input: String::new()
            }
        );
        let trust = lines(
            "  Trust this folder? Codex can read, edit, and run files here\n› 1. Trust and continue\n  2. Back\n  enter continue · esc back",
        );
        assert_eq!(
            Preset::Codex.screen(&trust),
            Screen::Dialog(
                "Trust this folder? Codex can read, edit, and run files here / › 1. Trust and continue / 2. Back".into()
            )
        );
        let hooks = lines(
            "  Hooks need review\n  5 hooks are new or changed.\n  Hooks can run outside the sandbox after you trust them.\n› 1. Review hooks\n  2. Trust all and continue\n  3. Continue without trusting (hooks won't run)\n  enter confirm · esc skip",
        );
        assert_eq!(
            Preset::Codex.screen(&hooks),
            Screen::Dialog(
                "Hooks need review / 5 hooks are new or changed. / Hooks can run outside the sandbox after you trust them.".into()
            )
        );
        assert_eq!(
            Preset::Codex.screen(&lines("◦ Working (0s • esc to interrupt)")),
            Screen::Busy {
                input: String::new()
            }
        );
    }

    #[test]
    fn presets_are_named_in_json_and_know_their_files() {
        for p in [Preset::Claude, Preset::Codex, Preset::Custom] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        let e = serde_json::from_str::<Preset>("\"gemini\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variant `gemini`, expected one of `claude`, `codex`, `custom` at line 1 column 8"
        );
        assert_eq!(Preset::Claude.instructions_file(), Some("CLAUDE.md"));
        assert_eq!(Preset::Codex.instructions_file(), Some("AGENTS.md"));
        assert_eq!(Preset::Custom.instructions_file(), None);
        assert_eq!(Preset::Claude.process_names(), &["claude"]);
        assert!(Preset::Claude.has_hooks() && !Preset::Codex.has_hooks());
        assert_eq!(Preset::Codex.submit_key(), "Tab");
        assert_eq!(Preset::Claude.submit_key(), "Enter");
    }

    #[test]
    fn claude_command_line_quotes_the_prompt_and_names_the_settings() {
        let home = Home {
            address: "r/Nux".parse().unwrap(),
            path: PathBuf::from("/t/r/polecats/Nux"),
        };
        assert_eq!(
            Preset::Claude.command_line(&home, "it's gt-1").unwrap(),
            "claude --dangerously-skip-permissions --settings '/t/r/polecats/Nux/claude-settings.json' 'it'\\''s gt-1'"
        );
        assert_eq!(
            Preset::Codex.command_line(&home, "go").unwrap(),
            "codex --dangerously-bypass-approvals-and-sandbox 'go'"
        );
        assert_eq!(Preset::Custom.command_line(&home, "go"), None);
        assert_eq!(
            Preset::Claude.env(true),
            vec![
                ("DISABLE_AUTOUPDATER".to_string(), "1".to_string()),
                ("CLAUDE_CODE_SANDBOXED".to_string(), "1".to_string()),
                ("IS_SANDBOX".to_string(), "1".to_string()),
            ]
        );
        assert_eq!(Preset::Claude.env(false).len(), 2);
        assert!(Preset::Codex.env(true).is_empty());
    }

    #[test]
    fn claude_settings_beat_the_heartbeat_on_every_hook() {
        let s = claude_settings(Path::new("/usr/bin/gt"));
        assert_eq!(s["skipDangerousModePermissionPrompt"], true);
        for hook in [
            "SessionStart",
            "UserPromptSubmit",
            "PreToolUse",
            "PostToolUse",
            "Stop",
        ] {
            assert_eq!(
                s["hooks"][hook][0]["hooks"][0]["command"], "'/usr/bin/gt' heartbeat || true",
                "{hook}"
            );
        }
        assert_eq!(s["hooks"]["PreToolUse"][0]["matcher"], "*");
        assert!(s["hooks"]["Stop"][0].get("matcher").is_none());
    }

    #[test]
    fn resolve_takes_the_rig_over_the_town_and_merges_agent_env() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t");
        crate::town::install(&root, None).unwrap();
        let town = Town::open(&root).unwrap();
        let town_json = root.join("config/town.json");
        let mut t: Value = crate::fsio::read_json(&town_json).unwrap();
        t["agent"] = "codex".into();
        t["agent_env"] = json!({"A": "town", "B": "town"});
        crate::fsio::write_json(&town_json, &t).unwrap();
        std::fs::create_dir(root.join("r")).unwrap();
        let rig = json!({"type": "rig", "version": 1, "name": "r", "git_url": "x",
            "agent": "claude", "agent_env": {"B": "rig", "C": "rig"}});
        crate::fsio::write_json(&root.join("r/config.json"), &rig).unwrap();

        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            AgentConfig::resolve(&town, Some("r")).unwrap(),
            AgentConfig {
                preset: Preset::Claude,
                command: None,
                env: vec![pair("A", "town"), pair("B", "rig"), pair("C", "rig")],
            }
        );
        let mayor = AgentConfig::resolve(&town, None).unwrap();
        assert_eq!(mayor.preset, Preset::Codex);
        assert_eq!(mayor.env, vec![pair("A", "town"), pair("B", "town")]);

        // agent_command overrides the preset's command line; without either
        // there is nothing to run.
        let home = Home {
            address: "r/Nux".parse().unwrap(),
            path: root.join("r/polecats/Nux"),
        };
        let custom = AgentConfig {
            preset: Preset::Claude,
            command: Some("my-agent".into()),
            env: vec![],
        };
        assert_eq!(
            custom.command_line(&home, Some("gt-1")).unwrap(),
            "my-agent"
        );
        let none = AgentConfig {
            preset: Preset::Custom,
            command: None,
            env: vec![],
        };
        assert_eq!(none.command_line(&home, None), None);
        let claude = AgentConfig {
            preset: Preset::Claude,
            command: None,
            env: vec![pair("K", "V")],
        };
        assert_eq!(
            claude.command_line(&home, Some("gt-1")).unwrap(),
            format!(
                "claude --dangerously-skip-permissions --settings '{}/r/polecats/Nux/claude-settings.json' 'You are r/Nux, a gastown worker. Your issue is gt-1. Run `gt prime` first: it prints who you are, the issue, and how to report done.'",
                root.display()
            )
        );
        assert_eq!(claude.session_env(&home).last(), Some(&pair("K", "V")));
        let codex = AgentConfig {
            preset: Preset::Codex,
            command: None,
            env: vec![pair("CODEX_HOME", "/u/.codex")],
        };
        assert_eq!(
            codex.session_env(&home),
            vec![
                pair("CODEX_HOME", "/u/.codex"),
                pair(
                    "CODEX_HOME",
                    &format!("{}/r/polecats/Nux/codex", root.display())
                ),
            ]
        );
    }

    #[test]
    fn exclude_adds_the_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let info = tmp.path().join(".git/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(info.join("exclude"), "# git ls-files --others\n*.o").unwrap();
        exclude(tmp.path(), "CLAUDE.md").unwrap();
        exclude(tmp.path(), "CLAUDE.md").unwrap();
        assert_eq!(
            std::fs::read_to_string(info.join("exclude")).unwrap(),
            "# git ls-files --others\n*.o\n/CLAUDE.md\n"
        );
    }
}
