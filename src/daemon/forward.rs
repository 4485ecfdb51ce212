//! Escalations that reach a person (protocol/daemon.md, "Forwarding"): one
//! unread in the Mayor's inbox for `escalation_forward_after` is forwarded to
//! the overseer, once. The forward is its own record: its id is `fwd-` and the
//! escalation's, and a pass forwards only what the overseer's mail (inbox or
//! archive) does not hold yet.

use std::time::Duration;

use super::Options;
use crate::address::Address;
use crate::error::Result;
use crate::event::{Action, act};
use crate::fsio::{self, Durability};
use crate::mail::{self, Message};
use crate::town::Town;

/// The Mayor's unread escalations with their age in seconds (`None`: a
/// timestamp that does not parse, never forwarded).
fn waiting(town: &Town) -> Vec<(Message, Option<u64>)> {
    let Ok(mayor) = town.home(&Address::Mayor) else {
        return Vec::new();
    };
    crate::status::unread(&mayor)
        .into_iter()
        .filter(|m| m.kind == "escalation")
        .map(|m| {
            let age = crate::clock::parse(&m.timestamp).map(crate::status::age_s);
            (m, age)
        })
        .collect()
}

/// Forward every escalation unread for `escalation_forward_after` that the
/// overseer has not been sent yet; action `forwarded` for each.
pub(super) fn pass(town: &Town, opts: &Options, out: &mut Vec<Action>) -> Result<()> {
    let Some(after) = opts.escalation_forward_after else {
        return Ok(());
    };
    let due: Vec<(Message, u64)> = waiting(town)
        .into_iter()
        .filter_map(|(m, age)| age.filter(|a| *a >= after.as_secs()).map(|a| (m, a)))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let mayor = town.home(&Address::Mayor)?;
    let overseer = town.home(&Address::Overseer)?;
    // One pass at a time decides what is sent (a `gt daemon tick` by hand
    // beside `gt daemon run`): under the Mayor's state lock.
    let _lock = fsio::lock_file(&fsio::lock_path(&mayor.state_path()))?;
    for (m, age) in due {
        let id = mail::forward_id(&m.id);
        if mail::find(&overseer, &id)?.is_some() {
            continue;
        }
        let mut fwd = m.forwarded(
            &Address::Mayor,
            "overseer",
            "gt-daemon",
            &format!(
                "Unread in the Mayor's inbox for {age}s (escalation_forward_after {}s); forwarded by the daemon.",
                after.as_secs()
            ),
            Some("Read it there with: gt inbox --as mayor"),
        );
        mail::post(town, std::slice::from_mut(&mut fwd), Durability::from_env())?;
        out.push(act(
            &Address::Mayor,
            "forwarded",
            format!(
                "escalation {} from {} ({:?}), unread for {age}s, to the overseer",
                m.id, m.from, m.subject
            ),
        ));
    }
    Ok(())
}

/// When the next escalation waiting in the Mayor's inbox comes due: how long
/// from now, for `gt daemon run`, which no file event wakes then.
pub(super) fn next_due(town: &Town, opts: &Options) -> Option<Duration> {
    let after = opts.escalation_forward_after?.as_secs();
    waiting(town)
        .into_iter()
        .filter_map(|(_, age)| age)
        .filter(|age| *age < after)
        .map(|age| Duration::from_secs(after - age))
        .min()
}
