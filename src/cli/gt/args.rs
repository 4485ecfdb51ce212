//! `gt`'s clap definitions: the built-in commands and their arguments (the
//! man pages are generated from these).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gt",
    version,
    about = "Gas Town: many AI coding agents on git projects, coordinated through files",
    long_about = "Gas Town: many AI coding agents on git projects, coordinated through files.\n\n\
        The directory tree is the API: mail is locked JSONL, agent flags are state.json files, \
        queues are directories. gastown's own tools run inside gt (`gt mail ...` is \
        `gt-mail ...`, without a second process); any other `gt <sub>` runs `gt-<sub>` from \
        beside gt or from PATH.",
    after_help = "Tools (`gt <tool> --help`): mail (send, inbox, read, watch, handoff, ...), issue \
        (the rig's beads tracker), witness, queue (also `gt merge-queue`), refinery, land, daemon.\n\
        Seed spellings: `gt send` and `gt inbox` are `gt mail send`/`gt mail inbox`; \
        `gt ready` and `gt waves` are `gt issue ready`/`gt issue waves`.\n\
        Environment: GT_TOWN (town root), GT_ADDRESS (who you are), GT_LOG (e.g. debug)."
)]
pub struct Cli {
    /// List built-in commands and the gt-* programs found beside gt and on PATH
    #[arg(long)]
    pub(super) list: bool,
    #[command(subcommand)]
    pub(super) cmd: Option<Cmd>,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Subcommand, Debug)]
pub(super) enum Cmd {
    /// Create a town at PATH (default: the current directory), or repair a town's missing files
    Install {
        /// Where the town goes; created if missing, must be empty if not a town
        path: Option<PathBuf>,
        /// Town name (default: the directory's name)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Manage rigs
    #[command(subcommand)]
    Rig(RigCmd),
    /// List the town's rigs
    Rigs(JsonFlag),
    /// Show the town: rigs and every agent's state
    Status {
        /// Also every machine of config/federation.json (one bounded ssh round trip each)
        #[arg(long, conflicts_with = "watch")]
        all_machines: bool,
        /// Redraw on every change to the tree (inotify); not a terminal: one frame (with --json one line) per change
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the other machines of config/federation.json and whether they answer
    Machines(super::machines::MachinesArgs),
    /// The forced command of another machine's key (authorized_keys): serve SSH_ORIGINAL_COMMAND
    Remote(super::machines::RemoteArgs),
    /// List a rig's polecats and their state
    Polecats {
        /// The rig
        rig: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Manage polecats (workers)
    #[command(subcommand)]
    Polecat(PolecatCmd),
    /// Overseer workspaces: <rig>/crew/<name>/ with a clone at rig/; the Witness never touches them
    #[command(subcommand)]
    Crew(CrewCmd),
    /// Start a polecat on an issue: create it if needed, record the issue, start its agent
    Spawn {
        /// The beads issue to work on (claimed for the polecat)
        #[arg(long)]
        issue: String,
        /// The rig (default: the rig whose beads prefix the issue id has, else GT_RIG, the current directory's rig, or the only rig)
        #[arg(long)]
        rig: Option<String>,
        /// Polecat name (default: the first free one of Nux, Toast, Capable, ...)
        #[arg(long)]
        name: Option<String>,
        /// Start it on this machine of config/federation.json, in its rig of the same name and git_url
        #[arg(long)]
        machine: Option<String>,
        /// Agent command line, run with sh -c in the polecat's clone (default: the rig's agent_command)
        #[arg(long)]
        agent: Option<String>,
        /// How long to wait for a preset's runtime to be ready (0s: do not wait); exit 1 when it is blocked at a dialog, not ready in time, or its session ended
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        wait: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Stop a polecat's session (its whole process group) and mark it idle
    Kill {
        /// `<rig>/<name>`, or a bare `<name>` (see --rig)
        polecat: String,
        #[command(flatten)]
        rig: RigFlag,
    },
    /// Emergency halt: stop the daemon and the rig loops, then every session in the town (or one rig), recorded or not
    #[command(group = clap::ArgGroup::new("scope").required(true))]
    Stop {
        /// Stop every agent session in the town
        #[arg(long, group = "scope")]
        all: bool,
        /// Stop every agent session in this rig
        #[arg(long, group = "scope")]
        rig: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a rig's plugins (agents under <rig>/plugins/) and their state
    Plugins {
        /// The rig
        rig: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Plugin commands
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Mark a polecat active (status idle, ready for work); refused while its session runs
    Wake {
        /// `<rig>/<name>`, or a bare `<name>` (see --rig)
        polecat: String,
        /// Stop its live session first (as gt kill does)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        rig: RigFlag,
    },
    /// Mark a polecat inactive (status asleep); refused while its session runs
    Sleep {
        /// `<rig>/<name>`, or a bare `<name>` (see --rig)
        polecat: String,
        /// Stop its live session first (as gt kill does)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        rig: RigFlag,
    },
    /// Run a throwaway town end to end: a real git rig, stand-in agents, an epic worked in waves and landed, then a conflict reworked, a plugin's hold, a handoff and a direct landing, each checked from the files
    Demo {
        /// Directory for the demo (new or empty; default: a new one under $TMPDIR)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show who you are here: role and address (from GT_ADDRESS or the current directory)
    Whoami(JsonFlag),
    /// For the calling agent: who it is, its issue, the handoff notes its earlier sessions left (then marked read), and how to work here (read mail, report done, hand off, ask for help)
    Prime(JsonFlag),
    /// For the calling polecat: report its work done to its Witness (refused while the clone is dirty or has no new commit)
    Done(JsonFlag),
    /// For the calling agent: touch its heartbeat (agent hooks run this)
    Heartbeat,
    /// Check the town's files for damage; exit 1 if problems remain
    Doctor {
        /// Repair what is safe: dead workers reset and their claims released, zombie sessions killed, orphaned claims released, missing homes, mail and clones restored, bad lines quarantined, stray temp files removed
        #[arg(long)]
        fix: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Type a line into an agent's live tmux session, press Enter, and check it was submitted
    #[command(
        long_about = "Type a line into an agent's live tmux session, press Enter, and check that the line was \
            submitted: it must show in the pane and leave the prompt line. If it is still on the prompt \
            (the agent's TUI swallowed the Enter), Enter is pressed once more. Newlines and other control \
            characters become spaces: one message, one line. Nothing is mailed; a plain-process session has \
            no terminal and is refused (mail is the channel: gt send). GT_INJECT_WAIT (default 3s) bounds \
            each wait."
    )]
    Inject {
        /// A bare `<name>` (a polecat; see --rig) or any agent address
        agent: String,
        #[command(flatten)]
        rig: RigFlag,
        /// The text to type, taken literally (`Enter` or `C-c` are just words; `-x` too)
        #[arg(allow_hyphen_values = true)]
        message: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show an agent's tmux pane, or type a command into it and show the output that follows
    Capture {
        /// A bare `<name>` (a polecat; see --rig) or any agent address
        agent: String,
        #[command(flatten)]
        rig: RigFlag,
        /// A command line to type into the session (as `gt inject` does); its output is printed
        #[arg(allow_hyphen_values = true)]
        command: Option<String>,
        /// Print at most the last N lines (without a command: of history and screen, not just the screen)
        #[arg(long, value_name = "N")]
        lines: Option<usize>,
        /// With a command: wait at most this long for the pane to settle (still for 300ms)
        #[arg(long, default_value = "5s", value_name = "DURATION")]
        wait: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Watch an agent's session: attach to its tmux session, or follow a plain process's session.log
    Attach {
        /// A bare `<name>` (a polecat; see --rig) or any agent address
        agent: String,
        #[command(flatten)]
        rig: RigFlag,
    },
    /// Print gt's shell completion script (install.sh installs them)
    #[command(
        long_about = "Print gt's completion script for SHELL on stdout: gt's commands, gastown's tools \
            (gt mail, gt issue, ...) and their arguments. install.sh installs them for bash \
            (~/.local/share/bash-completion/completions/gt), zsh \
            (~/.local/share/zsh/site-functions/_gt) and fish (~/.config/fish/completions/gt.fish). \
            By hand, e.g. for bash: source <(gt completions bash)"
    )]
    Completions {
        /// bash, zsh or fish (elvish and powershell too)
        #[arg(hide_possible_values = true)]
        shell: clap_complete::Shell,
    },
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

/// The rig a bare agent name is in.
#[derive(Args, Debug, Clone)]
pub struct RigFlag {
    /// The rig of a bare name (default: GT_RIG, the current directory's rig, or the one rig that has that name)
    #[arg(long)]
    pub(super) rig: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum RigCmd {
    /// Add a rig: clone GIT_URL for the refinery and mayor, make the agent homes, register it
    Add {
        /// Rig name: letters, digits, '_' or '-'
        name: String,
        /// Repository to clone: a URL git understands or a local path
        git_url: String,
        /// Beads id prefix (default: the name's first three letters)
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List rigs (same as `gt rigs`)
    List(JsonFlag),
}

#[derive(Subcommand, Debug)]
pub(super) enum PolecatCmd {
    /// Create a polecat: its home and a clone on branch polecat/<name>
    Add {
        /// The rig
        rig: String,
        /// Name (default: the first free one of Nux, Toast, Capable, ...)
        name: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum CrewCmd {
    /// Create a crew workspace: its home and a clone of the rig on its default branch
    Add {
        /// The rig
        rig: String,
        /// Name (the same rules as a polecat's)
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List a rig's crew and their state
    List {
        /// The rig
        rig: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum PluginCmd {
    /// Create a plugin: an agent home under <rig>/plugins/<name> (a plugin exists iff its directory does)
    Add {
        /// The rig
        rig: String,
        /// Plugin name, e.g. merge-oracle
        name: String,
    },
    /// Show one plugin's state
    Status {
        /// `<rig>/plugins/<name>`, or a bare `<name>` (see --rig)
        plugin: String,
        #[command(flatten)]
        rig: RigFlag,
        #[command(flatten)]
        json: JsonFlag,
    },
}
