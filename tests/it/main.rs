//! One integration test binary (jj-style): each module drives the real binaries
//! against real temp towns, real git repositories and real files.

mod agent_claude;
mod agent_codex;
mod agent_tier;
mod beads;
mod common;
mod confine;
mod crew;
mod daemon;
mod demo;
mod doctor;
mod federation;
mod fsio;
mod inject;
mod land;
mod land_recovery;
mod mail;
mod mail_faults;
mod man;
mod model;
mod names;
mod plugins;
mod polecat;
mod queue;
mod races;
mod refinery;
mod schema;
mod scripts;
mod session_trust;
mod status;
mod stop;
mod town;
mod typed;
mod witness;
mod worker;
