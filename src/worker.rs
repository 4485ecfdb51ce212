//! What an agent does for itself (protocol/agents.md, "The agent contract"):
//! `gt prime` tells it who it is and how to work, `gt heartbeat` shows it is
//! alive, `gt done` reports its work finished to its Witness.

use crate::address::Address;
use crate::error::{Error, IoContext, Result};
use crate::home::Home;
use crate::mail::{self, Message};
use crate::town::Town;

/// The calling agent: its address and home (`GT_ADDRESS`, else the directory).
pub fn caller(town: &Town) -> Result<Home> {
    let who = town.whoami()?;
    town.home(&who.address)
}

/// Touch the caller's `heartbeat` (its mtime is the heartbeat).
pub fn heartbeat(home: &Home) -> Result<()> {
    let path = home.heartbeat();
    // Confined: a heartbeat planted as a link out of the town is refused.
    let file = crate::confine::open(
        &path,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT,
        0o666,
    )
    .at(&path)?;
    file.set_modified(std::time::SystemTime::now()).at(&path)
}

/// What `gt prime` tells an agent.
#[derive(Debug, serde::Serialize)]
pub struct Prime {
    pub address: String,
    pub role: String,
    pub generation: u64,
    /// The issue it works on, as the rig's tracker has it.
    pub issue: Option<crate::beads::Issue>,
    /// The unread handoff notes its earlier sessions mailed it (`gt mail
    /// handoff`), oldest first: a cycled session resumes from them.
    pub handoff: Vec<Message>,
    /// How to work here, one line each.
    pub how: Vec<String>,
}

impl Prime {
    /// Mark the handoff notes read once they were shown: the next `gt prime`
    /// or `gt inbox` does not offer them again.
    pub fn delivered(&self, home: &Home) -> Result<()> {
        let ids: Vec<&str> = self.handoff.iter().map(|m| m.id.as_str()).collect();
        mail::reader::Reader::owner(home).mark(&ids, "read")
    }
}

/// The generation of the calling session: `GT_GENERATION`, which its starter
/// set, else `state`'s. A session that acts at once can run before its
/// starter has recorded the new generation in state.json.
pub fn own_generation(state: &crate::record::AgentState) -> u64 {
    std::env::var("GT_GENERATION")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(state.generation)
}

/// Gather what `home`'s agent must know to work.
pub fn prime(town: &Town, home: &Home) -> Result<Prime> {
    let state = home.own_state()?;
    let generation = own_generation(&state);
    let remote = crate::federation::worker::works_for(home);
    let issue = match (state.issue.as_deref(), home.address.rig(), remote) {
        // Another machine's issue: as it was when the worker was spawned.
        (Some(_), _, Some(w)) => Some(w.issue),
        (Some(id), Some(rig), None) => Some(crate::beads::open(&town.rig(rig)?)?.show(id)?),
        _ => None,
    };
    // A look only: bad lines stay for `gt inbox` to report.
    let me = home.address.to_string();
    let handoff = mail::reader::Reader::owner(home)
        .peek()?
        .messages
        .into_iter()
        .map(|p| p.message)
        .filter(|m| m.kind == "handoff" && m.from == me)
        // Not this session's own note: that one is for the next.
        .filter(|m| m.generation.is_none_or(|g| g < generation))
        .collect();
    Ok(Prime {
        address: me,
        role: home.address.role().to_string(),
        generation,
        issue,
        handoff,
        how: how(&home.address),
    })
}

/// The working rules for `addr`, as commands.
pub fn how(addr: &Address) -> Vec<String> {
    let mut how = vec!["Read your mail: `gt inbox`, then `gt mail read <id>`.".to_string()];
    if let (Address::Polecat { .. }, Some(rig)) = (addr, addr.rig()) {
        how.push(
            "Work in your clone (the current directory): commit on your branch; leave `git status` clean.".into(),
        );
        how.push("Report done: `gt done` (refused while the clone is dirty or has no new commit); your Witness then merges it.".into());
        how.push(format!(
            "Ask for help: `gt send {rig}/witness -s help -m \"<what blocks you>\"`."
        ));
    }
    how.push("Before your context fills: `gt mail handoff --cycle -m \"<where you are>\"`; your next session's `gt prime` shows it.".into());
    how.push(
        "Show you are alive during long work: `gt heartbeat` (hooks do this for Claude Code)."
            .into(),
    );
    how
}

/// Report `home`'s polecat done to its Witness (kind `done`, its generation).
/// Refused while the clone is dirty or has no commit beyond origin's default
/// branch: there would be nothing to merge. Returns the message sent and how
/// it left (`sent to <to>`, or for a worker of another machine, after the
/// push to origin, `sent to <machine>:<to>` or `queued for <machine>: ...`).
pub fn done(town: &Town, home: &Home) -> Result<(Message, String)> {
    let Some(rig) = home
        .address
        .rig()
        .filter(|_| matches!(home.address, Address::Polecat { .. }))
    else {
        let role = home.address.role().to_string();
        let a = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return Err(Error::invalid(format!(
            "gt done is for polecats; {} is {a} {role}",
            home.address
        )));
    };
    let clone = home.clone_dir();
    let dirty = crate::git::dirty_files(&clone)?;
    if !dirty.is_empty() {
        return Err(Error::conflict(format!(
            "{}: the clone is dirty ({}); commit or remove them, then run gt done again",
            clone.display(),
            dirty.join(", ")
        )));
    }
    let state = home.state()?;
    // The work is what its branch holds, the branch the Refinery merges.
    let work = crate::polecat::work(home, &state)?.branch;
    if crate::git::commits_ahead(&clone, &[&format!("refs/heads/{work}")])? == 0 {
        if let Some(why) = crate::polecat::stray_work(&clone, &work)? {
            return Err(Error::conflict(format!("{}: {why}", clone.display())));
        }
        let main = crate::git::default_branch(&clone, "origin")?;
        return Err(Error::conflict(format!(
            "{}: no commits on {work} beyond origin/{main}; commit your work, then run gt done again",
            clone.display()
        )));
    }
    let issue = state.issue.clone().unwrap_or_default();
    let mut m = Message::new(
        &home.address,
        &format!("{rig}/witness"),
        format!("done {issue}").trim_end(),
        &format!(
            "{} finished {issue} at generation {}",
            home.address, state.generation
        ),
    );
    m.kind = "done".into();
    m.generation = Some(state.generation);
    if let Some(w) = crate::federation::worker::works_for(home) {
        return crate::federation::worker::done(town, home, &w, m);
    }
    mail::post(
        town,
        std::slice::from_mut(&mut m),
        crate::fsio::Durability::from_env(),
    )?;
    let how = format!("sent to {}", m.to);
    Ok((m, how))
}
