//! install.sh and .ci/run: shellcheck-clean, loud about missing tools, and an
//! idempotent install (of prebuilt binaries: a release build is too slow here).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{bin, have_tool, ok_output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn scripts_are_shellcheck_clean() {
    if !have_tool("shellcheck") {
        return;
    }
    let out = Command::new("shellcheck")
        .current_dir(repo())
        .args(["install.sh", ".ci/run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_names_every_missing_tool_and_how_to_get_it() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new("/bin/bash")
        .arg(repo().join("install.sh"))
        .env_clear()
        .env("HOME", empty.path())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(
            "install.sh: missing cargo: not found; install Rust >= 1.89 with rustup: curl"
        ),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "install.sh: missing git: not found; install it: sudo apt-get install -y git"
        ),
        "{err}"
    );
    assert!(
        lines[2].starts_with(
            "install.sh: missing tmux: not found; install it: sudo apt-get install -y tmux"
        ),
        "{err}"
    );
}

/// A copy of the parts of the source tree install.sh installs from.
fn source_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    for sub in ["src/bin", "man", "systemd"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(repo().join("install.sh"), src.join("install.sh")).unwrap();
    src
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn install_puts_binaries_man_pages_and_units_in_place_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let prefix = tmp.path().join("pfx");
    let home = tmp.path().join("home");
    let built = bin("gt").parent().unwrap().to_path_buf();
    let run = || {
        let out = Command::new("/bin/bash")
            .arg(src.join("install.sh"))
            .args(["--systemd", "--from"])
            .arg(&built)
            .arg("--prefix")
            .arg(&prefix)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "install.sh failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let stdout = run();
    let first = (listing(&prefix), listing(&home));
    let stdout2 = run();
    assert_eq!(
        (listing(&prefix), listing(&home)),
        first,
        "a re-run changes nothing"
    );
    assert_eq!(stdout, stdout2);
    assert!(
        stdout.contains(&format!(
            "{} is not on your PATH",
            prefix.join("bin").display()
        )),
        "{stdout}"
    );

    for e in std::fs::read_dir(repo().join("src/bin")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let name = name.trim_end_matches(".rs");
        let installed = prefix.join("bin").join(name);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(built.join(name)).unwrap(),
            "{name}"
        );
        let out = Command::new(&installed).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version");
    }
    for e in std::fs::read_dir(repo().join("man")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::fs::read(prefix.join("share/man/man1").join(e.file_name())).unwrap(),
            std::fs::read(e.path()).unwrap()
        );
    }
    let unitdir = home.join(".config/systemd/user");
    let bindir = prefix.join("bin").display().to_string();
    for e in std::fs::read_dir(repo().join("systemd")).unwrap() {
        let e = e.unwrap();
        let installed = unitdir.join(e.file_name());
        let text = std::fs::read_to_string(&installed).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(e.path())
                .unwrap()
                .replace("@BINDIR@", &bindir)
        );
        // An instance of the template must pass systemd's own offline check.
        if have_tool("systemd-analyze") {
            let instance = tmp
                .path()
                .join(e.file_name().into_string().unwrap().replace("@.", "@rig1."));
            std::fs::write(&instance, &text).unwrap();
            let out = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&instance)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                instance.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Completion scripts where each shell looks, as gt prints them.
    for (shell, path) in [
        ("bash", ".local/share/bash-completion/completions/gt"),
        ("zsh", ".local/share/zsh/site-functions/_gt"),
        ("fish", ".config/fish/completions/gt.fish"),
    ] {
        assert_eq!(
            std::fs::read_to_string(home.join(path)).unwrap(),
            completion(shell),
            "{path}"
        );
    }
    let leftovers: Vec<String> = first
        .0
        .iter()
        .chain(&first.1)
        .filter(|p| p.contains(".tmp."))
        .cloned()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `gt completions SHELL`.
fn completion(shell: &str) -> String {
    ok_output(Command::new(bin("gt")).args(["completions", shell]))
}

/// Each completion script names every command `gt --list` knows of (built-in,
/// tools, seed spellings); bash's completes through `complete -F`, down into
/// a tool's subcommands and a command's flags. An unknown shell is refused.
#[test]
fn completions_name_every_command_and_bash_completes_them() {
    let list = Command::new(bin("gt")).arg("--list").output().unwrap();
    let names = String::from_utf8(list.stdout).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert!(
        names.contains(&"status") && names.contains(&"mail"),
        "{names:?}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = completion(shell);
        for name in &names {
            assert!(script.contains(name), "{shell}: no {name}");
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("gt.bash");
    std::fs::write(&script, completion("bash")).unwrap();
    // What bash-completion does on TAB: the words so far, then `_gt gt CUR PREV`.
    let complete = |words: &[&str]| {
        let cur = words.len() - 1;
        let line = format!(
            "source {}; complete -p gt; COMP_WORDS=({}); COMP_CWORD={cur}; _gt gt {} {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.join(" "),
            words[cur],
            words[cur - 1]
        );
        ok_output(Command::new("/bin/bash").args(["-c", &line]))
    };
    assert_eq!(
        complete(&["gt", "sta"]),
        "complete -o bashdefault -o default -o nosort -F _gt gt\nstatus\n"
    );
    assert!(complete(&["gt", "mail", "se"]).ends_with(" gt\nsend\n"));
    assert!(complete(&["gt", "doctor", "--f"]).ends_with(" gt\n--fix\n"));

    let out = Command::new(bin("gt"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("gt: invalid value 'tcsh' for '<SHELL>'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// .ci/run installs every tool a test runs or checks for, so that under
/// `CI=true` (where a missing tool fails its check) a fresh machine passes.
#[test]
fn ci_installs_every_tool_the_tests_use() {
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let mut tools = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(repo().join("tests/it")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for call in ["have_tool(\"", "Command::new(\""] {
            for rest in text.split(call).skip(1) {
                tools.insert(rest.split('"').next().unwrap().to_string());
            }
        }
    }
    // The shell and bash come with the system; jq is run from a script.
    tools.retain(|t| !["sh", "/bin/bash", "{tool}"].contains(&t.as_str()));
    tools.insert("jq".into());
    let missing: Vec<&String> = tools
        .iter()
        .filter(|t| !ci.contains(&format!("\nwant {t} ")))
        .collect();
    assert!(missing.is_empty(), ".ci/run does not install {missing:?}");
}

/// The README's first code block is the whole set-up of a newcomer, and .ci/run
/// runs exactly its test command.
#[test]
fn readme_starts_with_the_setup_and_ci_runs_its_test_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split("```")
        .nth(1)
        .expect("README.md has a code block");
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(
        commands,
        [
            "./install.sh && ~/.local/bin/gt demo",
            "cargo test --locked"
        ]
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run does not run `{}`",
        commands[1]
    );
}

/// Every relative link in README.md and protocol/*.md names a file that exists.
#[test]
fn doc_links_point_at_files_that_exist() {
    let mut docs = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("protocol")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            if path.contains("://") || path.starts_with("mailto:") {
                continue;
            }
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let found = file.exists()
                && (anchor.is_empty()
                    || std::fs::read_to_string(&file)
                        .is_ok_and(|t| anchors(&t).contains(&anchor.to_string())));
            if !found {
                broken.push(format!(
                    "{}: {target}",
                    doc.strip_prefix(repo()).unwrap().display()
                ));
            }
        }
    }
    // Comments in the code point at protocol pages by path.
    for file in rust_files(&repo().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for rest in text.split("protocol/").skip(1) {
            let page: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                .collect();
            let page = page.trim_end_matches('.');
            if page.ends_with(".md") && !repo().join("protocol").join(page).exists() {
                broken.push(format!(
                    "{}: protocol/{page}",
                    file.strip_prefix(repo()).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The anchors GitHub makes for a page's headings: lowercase, spaces to `-`,
/// other punctuation dropped.
fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(|h| {
            h.chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => {
                        Some(c.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}
