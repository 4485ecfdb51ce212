//! gastown: many AI coding agents on git projects, coordinated through files.
//!
//! The directory tree is the API (see `protocol/`). This library holds the
//! protocol: paths, records, locking, atomic writes and reading; each binary in
//! `src/bin/` is a thin `main` over [`cli`].

pub mod address;
pub mod agent;
pub mod beads;
pub mod cli;
pub mod clock;
pub mod codex;
pub mod confine;
pub mod crew;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod event;
pub mod federation;
pub mod fsio;
pub mod git;
pub mod home;
pub mod land;
pub mod mail;
pub mod plugin;
pub mod polecat;
pub mod queue;
pub mod record;
pub mod refinery;
pub mod report;
pub mod rig;
pub mod runner;
pub mod session;
pub mod status;
pub mod stop;
pub mod town;
pub mod watch;
pub mod witness;
pub mod worker;

pub use error::{Error, Result};
