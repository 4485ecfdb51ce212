//! Reports about an agent's session (protocol/daemon.md, "Reports"): mail to
//! whoever answers for the agent, from the agent it is about, naming who saw
//! it (`by`).

use crate::address::Address;
use crate::error::Result;
use crate::fsio::Durability;
use crate::home::Home;
use crate::mail::{self, Message};
use crate::town::Town;

/// Who answers for `addr`: a polecat's Witness (seed: the Witness owns its
/// workers, the Mayor is never involved), the overseer for the Mayor, the
/// Mayor for everyone else.
pub fn answers_for(addr: &Address) -> String {
    match addr {
        Address::Mayor => "overseer".to_string(),
        Address::Polecat { rig, .. } => Address::Witness { rig: rig.clone() }.to_string(),
        _ => "mayor".to_string(),
    }
}

/// Mail [`answers_for`] `home`'s agent: type `escalation`, from the agent
/// (the reporter may have no home of its own), its `generation`, and
/// `"by": by`.
pub fn about(town: &Town, home: &Home, subject: &str, body: &str, by: &str) -> Result<()> {
    let mut m = Message::new(&home.address, &answers_for(&home.address), subject, body);
    m.kind = "escalation".into();
    m.generation = Some(home.state()?.generation);
    m.extra.insert("by".into(), by.into());
    mail::post(town, std::slice::from_mut(&mut m), Durability::from_env())
}
