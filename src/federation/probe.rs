//! Asking every machine at once: `gt machines` (a ping) and
//! `gt status --all-machines` (each town's status), one bounded round trip
//! per machine, all in parallel, so the slowest machine sets the wait.

use std::time::Duration;

use serde::Serialize;

use crate::error::Kind;

use super::{Federation, ssh};

/// How a machine answered, as `gt machines --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub name: String,
    /// It answered (perhaps with a refusal, then `error` says so).
    pub reachable: bool,
    /// Seconds since it last answered; absent if it never did.
    pub last_seen_age_s: Option<u64>,
    pub error: Option<String>,
}

/// Run `words` on every registered machine; each answer's stdout when the
/// remote command succeeded.
pub fn ask_all(
    fed: &Federation,
    words: &[&str],
    deadline: Duration,
) -> Vec<(Seen, Option<Vec<u8>>)> {
    std::thread::scope(|s| {
        let asks: Vec<_> = fed
            .registry
            .machines
            .iter()
            .map(|(name, m)| {
                let cmd = ssh::command(m, words);
                (
                    name,
                    s.spawn(move || {
                        ssh::round_trip(cmd, Vec::new(), deadline).and_then(|r| r.ok(name))
                    }),
                )
            })
            .collect();
        asks.into_iter()
            .map(|(name, h)| {
                let answer = h.join().unwrap_or_else(|_| {
                    Err(crate::error::Error::new(Kind::Io, "probe thread panicked"))
                });
                let reachable = answer
                    .as_ref()
                    .map_or_else(|e| e.kind != Kind::Io, |_| true);
                let mut error = answer.as_ref().err().map(|e| e.to_string());
                if reachable && let Err(e) = fed.mark_seen(name) {
                    error.get_or_insert(e.to_string());
                }
                let seen = Seen {
                    name: name.clone(),
                    reachable,
                    last_seen_age_s: fed.last_seen_age_s(name),
                    error,
                };
                (seen, answer.ok())
            })
            .collect()
    })
}

/// `gt ping` every machine; a machine that answers under another name than
/// the one it is registered as is reported.
pub fn ping_all(fed: &Federation, deadline: Duration) -> Vec<Seen> {
    ask_all(fed, &["gt", "ping"], deadline)
        .into_iter()
        .map(|(mut seen, reply)| {
            if let Some(out) = reply {
                let named = serde_json::from_slice::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|v| v["machine"].as_str().map(str::to_string));
                if named.as_deref() != Some(seen.name.as_str()) {
                    seen.error = Some(format!(
                        "answers as machine {} (its config/federation.json \"machine\")",
                        named.as_deref().unwrap_or("<none>")
                    ));
                }
            }
            seen
        })
        .collect()
}
