//! What the Witness's patrols and the daemon's passes report: each thing they
//! did as an [`Action`] (one JSON line each in `--json` streams), and, for
//! their long-running loops, that the loop is up.

use serde::Serialize;

/// One thing a patrol or a daemon pass did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Action {
    /// The address acted on (a polecat, an issue's new worker, the mayor).
    pub subject: String,
    /// The Witness's `submitted`, `released`, `nudged`, `escalated`,
    /// `stopped`, `spawned`, `freed`, `sent-back`, `stale-signal`, `forwarded`,
    /// `epic-complete`, `plan-asked`, `planned`, `unreadable`; the daemon's `cycled`, `restarted`,
    /// `backoff`, `gave-up`, `heartbeat-stale`; `error` from either.
    pub action: String,
    pub detail: String,
}

/// An [`Action`].
pub fn act(subject: impl ToString, action: &str, detail: impl Into<String>) -> Action {
    Action {
        subject: subject.to_string(),
        action: action.to_string(),
        detail: detail.into(),
    }
}

/// What a long-running loop (`witness::watch`, `daemon::run`) tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first pass is done and the watches are up: from now on every
    /// change is seen. `watching` is how many directories are watched.
    Ready {
        watching: usize,
    },
    Action(Action),
}
