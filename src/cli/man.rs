//! Man pages, generated from the same clap definitions the binaries parse with
//! ([`super::commands`]), so a page cannot drift from its program:
//! `tests/it/man.rs` compares them with the checked-in `man/`, and
//! `GT_BLESS=1 cargo test man` rewrites that directory.

use std::collections::BTreeMap;

/// The date in every page's header. Fixed, so regenerating is reproducible;
/// move it when a release changes the pages.
pub const DATE: &str = "2026-11-25";

/// Every page, by file name: one per binary (`gt.1`, `gt-mail.1`) and one per
/// subcommand, git-style (`gt-rig-add.1` documents `gt rig add`).
///
/// Panics if two commands would write the same file (a built-in `gt foo` and a
/// `gt-foo` binary): that is a naming bug the man test must catch.
pub fn pages() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for cmd in super::commands() {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        collect(&cmd, &mut out);
    }
    out
}

fn collect(cmd: &clap::Command, out: &mut BTreeMap<String, Vec<u8>>) {
    let man = clap_mangen::Man::new(cmd.clone())
        .date(DATE)
        .source(concat!("gastown ", env!("CARGO_PKG_VERSION")))
        .manual("Gas Town Manual");
    let mut roff = Vec::new();
    man.render(&mut roff)
        .expect("rendering into a Vec cannot fail");
    let name = man.get_filename();
    assert!(
        out.insert(name.clone(), roff).is_none(),
        "two commands both document {name}"
    );
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}
