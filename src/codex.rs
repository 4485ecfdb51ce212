//! The Codex home gastown keeps for each agent of the `codex` preset:
//! `<home>/codex`, the session's `CODEX_HOME`. Codex asks whether to trust a
//! git checkout unless its `config.toml` has `[projects."<exact git root>"]
//! trust_level = "trusted"` (no ancestor entry, flag or `-c` skips it), and it
//! keeps its sessions, sqlite state and its own config edits in `CODEX_HOME`.
//! So gastown never writes into the user's Codex home: at every start it seeds
//! the agent's from it (protocol/agents.md, "What gastown writes for Codex").

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, value};

use crate::error::{Error, Result};
use crate::home::Home;

/// The agent's own Codex home.
pub fn home_dir(home: &Home) -> PathBuf {
    home.path.join("codex")
}

/// The user's Codex home: `CODEX_HOME` in `env` (the agent's `agent_env`),
/// else the starter's `CODEX_HOME`, else `~/.codex`.
pub fn user_home(env: &[(String, String)]) -> Option<PathBuf> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(k).ok())
            .filter(|v| !v.is_empty())
    };
    get("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| Path::new(&h).join(".codex")))
}

/// The agent's `config.toml`: the user's `text` (read from `origin`, kept as
/// written) with four keys set: `clone` trusted; `features.daemon_auto_start
/// = false`, since the app-server daemon Codex starts by default leaves the
/// session's process group and outlives the session (and copies ~400 MB of
/// binaries into its home); `allow_login_shell = false`, since a login
/// shell's profile (Debian's `/etc/profile`) resets `PATH` and the agent's
/// commands would not find the `gt` binaries gastown puts first;
/// `check_for_update_on_startup = false`, since a runtime must not offer to
/// replace itself under a running town.
pub fn config(text: &str, origin: &Path, clone: &Path) -> Result<String> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        let line = e
            .span()
            .map_or(1, |s| text[..s.start].matches('\n').count() + 1);
        Error::invalid(format!(
            "{}:{line}: {}",
            origin.display(),
            e.message().trim()
        ))
    })?;
    let clone = clone
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{}: not a UTF-8 path", clone.display())))?;
    let root = doc.as_item_mut();
    set(
        root,
        &["projects", clone],
        "trust_level",
        value("trusted"),
        origin,
    )?;
    set(
        root,
        &["features"],
        "daemon_auto_start",
        value(false),
        origin,
    )?;
    set(root, &[], "allow_login_shell", value(false), origin)?;
    set(
        root,
        &[],
        "check_for_update_on_startup",
        value(false),
        origin,
    )?;
    Ok(doc.to_string())
}

/// Set `key` to `v` in the table at `path` below `item`, making the tables
/// that are missing (header-less where they would be empty, inline inside an
/// inline table); a key on the way that is not a table is the error.
fn set(item: &mut Item, path: &[&str], key: &str, v: Item, origin: &Path) -> Result<()> {
    let not_table = |at: &[&str]| {
        Error::invalid(format!(
            "{}: `{}` is not a table",
            origin.display(),
            at.join(".")
        ))
    };
    let mut item = item;
    for (i, name) in path.iter().enumerate() {
        let fresh = if item.is_inline_table() {
            Item::Value(InlineTable::new().into())
        } else {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        };
        item = item
            .as_table_like_mut()
            .ok_or_else(|| not_table(&path[..i]))?
            .entry(name)
            .or_insert(fresh);
    }
    let v = match v {
        Item::Value(v) => v,
        _ => unreachable!("set takes values"),
    };
    item.as_table_like_mut()
        .ok_or_else(|| not_table(path))?
        .insert(key, Item::Value(v));
    Ok(())
}

/// Seed `home`'s Codex home from the user's (`user`, see [`user_home`]):
/// its `config.toml` through [`config`] with the home's clone (as its real
/// path: Codex matches the exact git root) trusted, and a copy of its
/// `auth.json` (a `codex login`) when the agent has none or an older one. The
/// directory is private (0700): it holds credentials.
pub fn prepare(home: &Home, user: Option<&Path>) -> Result<()> {
    let dir = home_dir(home);
    crate::fsio::ensure_dir(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        let d = crate::confine::open(&dir, nix::fcntl::OFlag::O_RDONLY, 0)
            .map_err(|e| Error::io(&dir, e))?;
        d.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&dir, e))?;
    }
    let read = |p: &Path| match crate::confine::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(p, e)),
    };
    let origin = user.map(|u| u.join("config.toml"));
    let text = match &origin {
        Some(p) => read(p)?.map(|b| String::from_utf8_lossy(&b).into_owned()),
        None => None,
    };
    let clone = home.clone_dir();
    let clone = clone.canonicalize().unwrap_or(clone);
    let origin = origin.unwrap_or_else(|| PathBuf::from("config.toml"));
    let cfg = config(text.as_deref().unwrap_or(""), &origin, &clone)?;
    crate::fsio::write_atomic(&dir.join("config.toml"), cfg.as_bytes())?;

    let Some(user) = user else { return Ok(()) };
    let from = user.join("auth.json");
    let to = dir.join("auth.json");
    let mtime = |p: &Path| crate::confine::metadata(p).and_then(|m| m.modified()).ok();
    if let Some(theirs) = mtime(&from)
        && mtime(&to).is_none_or(|ours| ours < theirs)
        && let Some(bytes) = read(&from)?
    {
        crate::fsio::write_atomic(&to, &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<String> {
        config(
            text,
            Path::new("/u/.codex/config.toml"),
            Path::new("/t/r/polecats/Nux/rig"),
        )
    }

    #[test]
    fn the_users_config_is_kept_as_written_and_the_clone_trusted() {
        let user = "# mine\nmodel = \"o4\"   # fast\n\n[model_providers.local]\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[projects.\"/src/other\"]\ntrust_level = \"trusted\"\n";
        assert_eq!(
            cfg(user).unwrap(),
            format!(
                "# mine\nmodel = \"o4\"   # fast\nallow_login_shell = false\ncheck_for_update_on_startup = false\n\n[model_providers.local]\nbase_url = \"http://127.0.0.1:1/v1\"\n\n[projects.\"/src/other\"]\ntrust_level = \"trusted\"\n\n[projects.\"/t/r/polecats/Nux/rig\"]\ntrust_level = \"trusted\"\n\n[features]\ndaemon_auto_start = false\n"
            )
        );
        // No user config: only what gastown needs, no empty `[projects]`.
        assert_eq!(
            cfg("").unwrap(),
            "allow_login_shell = false\ncheck_for_update_on_startup = false\n\n[projects.\"/t/r/polecats/Nux/rig\"]\ntrust_level = \"trusted\"\n\n[features]\ndaemon_auto_start = false\n"
        );
        // The user's own choices for these keys are overridden, in place.
        let out = cfg("[features]\ndaemon_auto_start = true\nhooks = true\n").unwrap();
        assert!(
            out.starts_with("allow_login_shell = false\ncheck_for_update_on_startup = false\n[features]\ndaemon_auto_start = false\nhooks = true\n"),
            "{out}"
        );
        // Inline tables stay inline.
        let out = cfg("projects = { \"/a\" = { trust_level = \"untrusted\" } }\n").unwrap();
        assert!(
            out.contains(r#"projects = { "/a" = { trust_level = "untrusted" } , "/t/r/polecats/Nux/rig" = { trust_level = "trusted" } }"#),
            "{out}"
        );
        let parsed: DocumentMut = out.parse().unwrap();
        assert_eq!(
            parsed["projects"]["/t/r/polecats/Nux/rig"]["trust_level"].as_str(),
            Some("trusted")
        );
    }

    #[test]
    fn a_bad_user_config_is_named_with_its_line() {
        let e = cfg("model = \"o4\"\nthis is not toml\n").unwrap_err();
        assert!(
            e.to_string().starts_with("/u/.codex/config.toml:2: "),
            "{e}"
        );
        let e = cfg("projects = 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u/.codex/config.toml: `projects` is not a table"
        );
        let e = cfg("features = \"all\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u/.codex/config.toml: `features` is not a table"
        );
    }

    #[test]
    fn user_home_takes_agent_env_then_the_starters_env() {
        let env = vec![("CODEX_HOME".to_string(), "/mine".to_string())];
        assert_eq!(user_home(&env), Some(PathBuf::from("/mine")));
        let env = vec![("HOME".to_string(), "/h".to_string())];
        let want = std::env::var("CODEX_HOME")
            .ok()
            .filter(|v| !v.is_empty())
            .map_or(PathBuf::from("/h/.codex"), PathBuf::from);
        assert_eq!(user_home(&env), Some(want));
    }

    #[test]
    fn prepare_seeds_config_and_auth_and_writes_nothing_in_the_users_home() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("user-codex");
        std::fs::create_dir(&user).unwrap();
        std::fs::write(user.join("config.toml"), "model = \"o4\"\n").unwrap();
        std::fs::write(user.join("auth.json"), "{\"tokens\":1}").unwrap();
        let home = Home {
            address: "r/Nux".parse().unwrap(),
            path: tmp.path().join("home"),
        };
        std::fs::create_dir_all(home.clone_dir()).unwrap();
        let before = std::fs::read_dir(&user).unwrap().count();
        prepare(&home, Some(&user)).unwrap();
        let dir = home_dir(&home);
        let clone = home.clone_dir().canonicalize().unwrap();
        let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(cfg.starts_with("model = \"o4\"\n"), "{cfg}");
        assert!(
            cfg.contains(&format!(
                "[projects.\"{}\"]\ntrust_level = \"trusted\"\n",
                clone.display()
            )),
            "{cfg}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("auth.json")).unwrap(),
            "{\"tokens\":1}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // The agent's refreshed login is not overwritten by the user's older one.
        std::fs::write(dir.join("auth.json"), "{\"tokens\":2}").unwrap();
        prepare(&home, Some(&user)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("auth.json")).unwrap(),
            "{\"tokens\":2}"
        );
        assert_eq!(std::fs::read_dir(&user).unwrap().count(), before);
        assert_eq!(
            std::fs::read_to_string(user.join("config.toml")).unwrap(),
            "model = \"o4\"\n"
        );
        // Without a user home there is still a config that trusts the clone.
        std::fs::remove_dir_all(&dir).unwrap();
        prepare(&home, None).unwrap();
        assert!(!dir.join("auth.json").exists());
        assert!(
            std::fs::read_to_string(dir.join("config.toml"))
                .unwrap()
                .contains("trust_level = \"trusted\"")
        );
    }
}
