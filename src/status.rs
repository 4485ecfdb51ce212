//! What `gt status`, `gt rigs`, `gt polecats` and `gt plugins` report: rows
//! built from the tree (and the rules that go into them, such as a heartbeat's
//! age), for the CLI to render as text or JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::Role;
use crate::error::Result;
use crate::home::Home;
use crate::rig::Rig;
use crate::town::Town;

/// One rig as `gt rigs` and `gt status` show it.
#[derive(Serialize, Deserialize)]
pub struct RigRow {
    pub name: String,
    pub path: PathBuf,
    pub git_url: String,
    pub added_at: String,
    pub polecats: usize,
}

/// Every rig of the town, by name.
pub fn rig_rows(town: &Town) -> Result<Vec<RigRow>> {
    let mut rows = Vec::new();
    for (name, entry) in town.rigs()?.rigs {
        let rig = Rig::at(town, &name);
        rows.push(RigRow {
            polecats: rig.polecats()?.len(),
            path: rig.path,
            name,
            git_url: entry.git_url,
            added_at: entry.added_at,
        });
    }
    Ok(rows)
}

/// One agent as `gt status` and `gt polecats` show it.
#[derive(Serialize, Deserialize)]
pub struct AgentRow {
    pub address: String,
    pub role: String,
    pub status: String,
    pub issue: Option<String>,
    pub session: Option<String>,
    pub generation: u64,
    pub requesting_cycle: bool,
    /// Seconds since the agent last showed life (the later of its `heartbeat`
    /// and its session's start, the rule the Witness and daemon use); absent
    /// if never.
    pub heartbeat_age_s: Option<u64>,
    /// Why the state could not be read, if it could not.
    pub error: Option<String>,
}

/// `home`'s row; an unreadable `state.json` makes a row with `error` set.
pub fn agent_row(home: &Home) -> AgentRow {
    let (state, error) = match home.state() {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let heartbeat_age_s = state
        .as_ref()
        .and_then(|s| home.last_sign_of_life(s))
        .map(age_s);
    AgentRow {
        address: home.address.to_string(),
        role: home.address.role().to_string(),
        status: state
            .as_ref()
            .map_or_else(|| "unknown".to_string(), |s| s.status.to_string()),
        issue: state.as_ref().and_then(|s| s.issue.clone()),
        session: state.as_ref().and_then(|s| s.session.clone()),
        generation: state.as_ref().map_or(0, |s| s.generation),
        requesting_cycle: state.as_ref().is_some_and(|s| s.requesting_cycle),
        heartbeat_age_s,
        error,
    }
}

/// What `gt status` shows.
#[derive(Serialize, Deserialize)]
pub struct StatusReport {
    pub town: String,
    pub root: PathBuf,
    pub rigs: Vec<RigRow>,
    pub agents: Vec<AgentRow>,
}

/// The whole town: its rigs and every agent.
pub fn report(town: &Town) -> Result<StatusReport> {
    Ok(StatusReport {
        town: town.config()?.name,
        root: town.root().to_path_buf(),
        rigs: rig_rows(town)?,
        agents: town.homes()?.iter().map(agent_row).collect(),
    })
}

/// A rig's polecats.
pub fn polecats(rig: &Rig) -> Result<Vec<AgentRow>> {
    Ok(rig.polecats()?.iter().map(agent_row).collect())
}

/// A rig's plugins (agents under `<rig>/plugins/`).
pub fn plugins(rig: &Rig) -> Result<Vec<AgentRow>> {
    Ok(rig
        .homes()?
        .iter()
        .filter(|h| h.address.role() == Role::Plugin)
        .map(agent_row)
        .collect())
}

/// Whole seconds from `t` to now ([`crate::clock::now`], so `GT_NOW` holds);
/// 0 for a time in the future.
fn age_s(t: jiff::Timestamp) -> u64 {
    crate::clock::now()
        .duration_since(t)
        .as_secs()
        .try_into()
        .unwrap_or(0)
}
