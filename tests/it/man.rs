//! `man/` is generated from the clap definitions; these tests keep the
//! checked-in pages identical to what the code generates, and check that they
//! render.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::have_tool;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

fn checked_in() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(man_dir())
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".1"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn man_pages_match_the_clap_definitions() {
    let pages = gastown::cli::man::pages();
    let dir = man_dir();
    if std::env::var_os("GT_BLESS").is_some_and(|v| !v.is_empty()) {
        std::fs::create_dir_all(&dir).unwrap();
        for name in checked_in() {
            if !pages.contains_key(&name) {
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
        for (name, roff) in &pages {
            std::fs::write(dir.join(name), roff).unwrap();
        }
        return;
    }
    let mut problems = Vec::new();
    for (name, roff) in &pages {
        match std::fs::read(dir.join(name)) {
            Ok(disk) if disk == *roff => {}
            Ok(_) => problems.push(format!("man/{name} is stale")),
            Err(_) => problems.push(format!("man/{name} is missing")),
        }
    }
    for name in checked_in() {
        if !pages.contains_key(&name) {
            problems.push(format!("man/{name} documents no command"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nrun `GT_BLESS=1 cargo test man` to regenerate man/ from the clap definitions",
        problems.join("\n")
    );
}

#[test]
fn every_binary_has_a_page() {
    let pages = gastown::cli::man::pages();
    let bins = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin")).unwrap();
    for e in bins {
        let name = e.unwrap().file_name().into_string().unwrap();
        let bin = name.trim_end_matches(".rs");
        assert!(
            pages.contains_key(&format!("{bin}.1")),
            "src/bin/{name} has no man page: add its clap Command to gastown::cli::commands()"
        );
    }
}

#[test]
fn pages_render_with_man_and_lint_clean_with_mandoc() {
    let pages = checked_in();
    assert!(!pages.is_empty(), "no pages in man/");
    if have_tool("man") {
        for name in &pages {
            let out = Command::new("man")
                .arg("-l")
                .arg(man_dir().join(name))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("NAME") && text.contains("SYNOPSIS"),
                "man -l man/{name}: {:?}\n{text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    if have_tool("mandoc") {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .args(pages.iter().map(|n| man_dir().join(n)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mandoc -T lint:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `--json` flag says what it prints, in `--help` and so in man/.
#[test]
fn every_json_flag_has_a_help_line() {
    fn walk(cmd: &clap::Command, path: &str, seen: &mut usize, bare: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| a.get_long() == Some("json")) {
            *seen += 1;
            if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                bare.push(path.to_string());
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, &format!("{path} {}", s.get_name()), seen, bare);
        }
    }
    let (mut seen, mut bare) = (0, Vec::new());
    for mut cmd in gastown::cli::commands() {
        cmd.build();
        let name = cmd.get_name().to_string();
        walk(&cmd, &name, &mut seen, &mut bare);
    }
    assert!(seen > 40, "only {seen} --json flags found");
    assert!(bare.is_empty(), "--json without help: {}", bare.join(", "));
}
