//! Crew (seed: "crew/<name>/ — overseer's workspace"): a home at
//! `<rig>/crew/<name>/`, address `<rig>/crew/<name>`, with a clone of the
//! rig's origin at `rig/` on its default branch. A person works there: mail
//! reaches it like any home, `gt status` lists it, and nothing automatic acts
//! on it (the Witness patrols polecats only, nothing is dispatched to it, the
//! daemon never starts or restarts a session there).

use crate::address::{Address, Role};
use crate::error::Result;
use crate::home::Home;
use crate::rig::Rig;
use crate::town::Town;

/// `gt crew add <rig> <name>`: make the workspace. Refused for a name a
/// polecat could not have and for one that exists.
pub fn add(town: &Town, rig: &Rig, name: &str) -> Result<Home> {
    let address = Address::named(Role::Crew, &rig.name, name)?;
    crate::rig::add_home_with_clone(town, rig, address, |_| Ok(()))
}
