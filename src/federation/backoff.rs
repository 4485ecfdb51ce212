//! Not hammering a machine that does not answer: after a flush that could
//! not reach it, the unattended flushers (`gt daemon tick`/`run`, `gt mail
//! flush` of every machine) wait [`BASE`], then twice that after each further
//! failure, up to [`CAP`], before they try it again. The state is
//! `federation/backoff/<machine>.json` (protocol/federation.md, "Backoff");
//! an answer removes it. A flush of one machine by hand, and `gt send`, try
//! at once (and count as a try).

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::Result;
use crate::fsio;
use crate::record::Extra;

use super::Federation;

/// The wait after the first failure.
pub const BASE: Duration = Duration::from_secs(10);
/// The longest wait between two tries.
pub const CAP: Duration = Duration::from_secs(600);

/// `federation/backoff/<machine>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backoff {
    /// Flushes in a row that did not reach the machine.
    pub failures: u32,
    /// The wait after the last one, in seconds: `min(BASE * 2^(failures-1), CAP)`.
    pub delay_s: u64,
    /// The cap this wait was computed with.
    pub cap_s: u64,
    /// When the first failure of the run was.
    pub since: String,
    /// The last failed try, and the next one the unattended flushers make.
    pub last_try: String,
    pub next_try: String,
    /// Why the last try failed (ssh's last stderr line).
    pub error: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Backoff {
    /// Whether an unattended flush may try the machine at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        clock::parse(&self.next_try).is_none_or(|t| now >= t)
    }
}

/// The wait after `failures` failures in a row.
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    BASE.saturating_mul(1u32 << doublings).min(CAP)
}

/// `machine`'s backoff, if it failed last time; an unreadable file is no
/// backoff (the next try rewrites it).
pub fn read(fed: &Federation, machine: &str) -> Option<Backoff> {
    fsio::read_json(&fed.backoff(machine)).ok()
}

/// Record a failed try of `machine`.
pub fn failed(fed: &Federation, machine: &str, why: &str) -> Result<Backoff> {
    let now = clock::now();
    let before = read(fed, machine);
    let failures = before.as_ref().map_or(0, |b| b.failures).saturating_add(1);
    let wait = delay(failures);
    let next = now
        .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now);
    let b = Backoff {
        failures,
        delay_s: wait.as_secs(),
        cap_s: CAP.as_secs(),
        since: before
            .as_ref()
            .map_or_else(|| clock::format(now), |b| b.since.clone()),
        last_try: clock::format(now),
        next_try: clock::format(next),
        error: why.to_string(),
        extra: before.map(|b| b.extra).unwrap_or_default(),
    };
    let path = fed.backoff(machine);
    fsio::ensure_dir(path.parent().expect("backoff/ has a parent"))?;
    fsio::write_json(&path, &b)?;
    Ok(b)
}

/// `machine` answered: no more waiting.
pub fn reset(fed: &Federation, machine: &str) -> Result<()> {
    let path = fed.backoff(machine);
    match crate::confine::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crate::error::Error::io(&path, e))
        }
        _ => Ok(()),
    }
}
