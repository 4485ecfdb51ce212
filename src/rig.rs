//! Rigs: containers (not clones) holding a project's agents and tracker.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::address::{self, Address};
use crate::clock;
use crate::confine;
use crate::error::{Error, Result};
use crate::fsio;
use crate::home::{self, Home};
use crate::record::{BeadsConfig, RigConfig, RigEntry, RigsRegistry, TOWN_VERSION};
use crate::town::Town;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rig {
    pub name: String,
    pub path: PathBuf,
}

impl Rig {
    /// The rig `name` of `town`, without checking that it is registered.
    pub fn at(town: &Town, name: &str) -> Rig {
        Rig {
            name: name.to_string(),
            path: town.root().join(name),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn config(&self) -> Result<RigConfig> {
        fsio::read_json(&self.config_path())
    }
    /// The url new clones are made from: `config.json`'s `git_url`, which
    /// must be the one `gt rig add` registered in `config/rigs.json`; an
    /// edit of one file alone is refused, not followed to wherever it points.
    pub fn git_url(&self, town: &Town) -> Result<String> {
        let url = self.config()?.git_url;
        match town.rigs()?.rigs.get(&self.name) {
            Some(entry) if entry.git_url == url => Ok(url),
            Some(entry) => Err(Error::invalid(format!(
                "{}: git_url {url} is not the url rig {} was added with ({}, {}); refused",
                self.config_path().display(),
                self.name,
                entry.git_url,
                town.rigs_json().display()
            ))),
            None => Err(Error::not_found(format!(
                "rig {} is not registered in {}",
                self.name,
                town.rigs_json().display()
            ))),
        }
    }
    pub fn beads_dir(&self) -> PathBuf {
        self.path.join(".beads")
    }
    /// The Refinery's clone: the canonical main.
    pub fn main_clone(&self) -> PathBuf {
        self.path.join("refinery/rig")
    }
    pub fn queue_dir(&self) -> PathBuf {
        self.path.join("refinery/queue")
    }

    /// The rig's crew: the overseer workspaces under `crew/`, by name.
    pub fn crew(&self) -> Result<Vec<Home>> {
        self.named_homes("crew", |name| Address::Crew {
            rig: self.name.clone(),
            name,
        })
    }

    fn named_homes(&self, dir: &str, make: impl Fn(String) -> Address) -> Result<Vec<Home>> {
        let base = self.path.join(dir);
        let entries = match confine::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&base, e)),
        };
        let mut out = Vec::new();
        for name in entries {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            let path = base.join(&name);
            if address::check_agent_name("agent", &name).is_err() || !path.is_dir() {
                continue;
            }
            out.push(Home {
                path,
                address: make(name),
            });
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }

    /// Polecat homes under `polecats/`, by name.
    pub fn polecats(&self) -> Result<Vec<Home>> {
        let rig = self.name.clone();
        self.named_homes("polecats", |name| Address::Polecat {
            rig: rig.clone(),
            name,
        })
    }

    /// Every agent home in the rig that exists.
    pub fn homes(&self) -> Result<Vec<Home>> {
        let mut out = Vec::new();
        for addr in [
            Address::Witness {
                rig: self.name.clone(),
            },
            Address::Refinery {
                rig: self.name.clone(),
            },
        ] {
            let path = self
                .path
                .join(addr.rel_path().file_name().unwrap_or_default());
            if home::is_home(&path) {
                out.push(Home {
                    address: addr,
                    path,
                });
            }
        }
        out.extend(self.polecats()?);
        out.extend(self.crew()?);
        let rig = &self.name;
        out.extend(self.named_homes("plugins", |name| Address::Plugin {
            rig: rig.clone(),
            name,
        })?);
        Ok(out)
    }
}

/// Options of `gt rig add`.
#[derive(Debug, Default, Clone)]
pub struct AddOptions {
    /// Beads id prefix; derived from the name when unset.
    pub prefix: Option<String>,
}

/// The default beads prefix: the name's first three letters or digits, lowercased.
pub fn default_prefix(name: &str) -> String {
    let p: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect();
    p.to_ascii_lowercase()
}

/// Make the home of `address` (a polecat or crew member of `rig`) with a
/// clone of the rig's origin at `rig/`, built whole in staging (`setup` runs
/// on the clone there) and then renamed into place. Refused if it exists.
pub(crate) fn add_home_with_clone(
    town: &Town,
    rig: &Rig,
    address: Address,
    setup: impl FnOnce(&Path) -> Result<()>,
) -> Result<Home> {
    let dest = town.root().join(address.rel_path());
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Err(Error::conflict(format!(
            "{} {address} already exists at {}",
            address.role(),
            dest.display()
        )));
    }
    let git_url = rig.git_url(town)?;
    let label = dest
        .strip_prefix(town.root())
        .unwrap_or(&dest)
        .to_string_lossy()
        .replace('/', "-");
    let staged = Staged::build(town, &label, |dir| {
        Home {
            address: address.clone(),
            path: dir.to_path_buf(),
        }
        .create()?;
        let clone = dir.join("rig");
        crate::git::clone(&git_url, &clone)?;
        setup(&clone)
    })?;
    if let Some(parent) = dest.parent() {
        fsio::ensure_dir(parent)?;
    }
    staged.commit(&dest)?;
    Ok(Home {
        address,
        path: dest,
    })
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory built whole in `<town>/.staging/` and then renamed into place,
/// so a failure at any step leaves nothing half-made where readers look.
/// Dropped without [`Staged::commit`], it is removed.
pub(crate) struct Staged {
    dir: Option<PathBuf>,
    staging_root: PathBuf,
}

impl Staged {
    pub(crate) fn build(
        town: &Town,
        label: &str,
        build: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Staged> {
        let staging_root = town.root().join(".staging");
        fsio::ensure_dir(&staging_root)?;
        let dir = staging_root.join(format!(
            "{label}.{}.{}",
            std::process::id(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let staged = Staged {
            dir: Some(dir.clone()),
            staging_root,
        };
        fsio::ensure_dir(&dir)?;
        build(&dir)?;
        Ok(staged)
    }

    /// Rename into `dest`, which must not exist (or be an empty directory).
    pub(crate) fn commit(mut self, dest: &Path) -> Result<()> {
        let dir = self.dir.take().expect("not yet committed");
        if let Err(e) = confine::rename(&dir, dest, nix::fcntl::RenameFlags::empty()) {
            self.dir = Some(dir);
            return Err(Error::io(dest, e));
        }
        fsio::sync_dir(dest.parent().unwrap_or(dest))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.dir.take() {
            let _ = confine::remove_dir_all(&p);
        }
        // Leave no empty `.staging/`; another build may still be using it.
        let _ = confine::remove_dir(&self.staging_root);
    }
}

/// Create rig `name` from `git_url`: the container is built in `.staging/`,
/// then renamed into place and registered in `rigs.json` under its lock, so a
/// failure at any step leaves nothing behind.
pub fn add(town: &Town, name: &str, git_url: &str, opts: &AddOptions) -> Result<Rig> {
    address::check_rig_name(name)?;
    let prefix = opts.prefix.clone().unwrap_or_else(|| default_prefix(name));
    address::check_name("beads prefix", &prefix)?;
    let git_url = &normalize_url(git_url);
    let rig = Rig::at(town, name);
    let rigs_json = town.rigs_json();
    let check_free = |reg: &RigsRegistry| -> Result<()> {
        if reg.rigs.contains_key(name) {
            return Err(Error::conflict(format!(
                "rig {name:?} already exists in {}",
                rigs_json.display()
            )));
        }
        if fs::symlink_metadata(&rig.path).is_ok() {
            return Err(Error::conflict(format!(
                "{}: already exists; choose another rig name",
                rig.path.display()
            )));
        }
        Ok(())
    };
    {
        let _lock = fsio::lock_for(&rigs_json)?;
        check_free(&town.rigs()?)?;
    }
    let staged = Staged::build(town, name, |dir| build(dir, name, git_url, &prefix))?;

    let _lock = fsio::lock_for(&rigs_json)?;
    check_free(&town.rigs()?)?;
    staged.commit(&rig.path)?;
    let registered = fsio::update_json_locked(
        &rigs_json,
        || {
            Ok(RigsRegistry {
                version: TOWN_VERSION,
                ..Default::default()
            })
        },
        |reg: &mut RigsRegistry| {
            reg.rigs.insert(
                name.to_string(),
                RigEntry {
                    git_url: git_url.to_string(),
                    added_at: clock::now_string(),
                    extra: Default::default(),
                },
            );
            Ok(())
        },
    );
    if let Err(e) = registered {
        let _ = confine::remove_dir_all(&rig.path);
        return Err(e);
    }
    Ok(rig)
}

/// A local path becomes absolute, so the recorded url works from any directory.
fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    fs::canonicalize(url).map_or_else(
        |_| url.to_string(),
        |abs| abs.to_string_lossy().into_owned(),
    )
}

/// Lay out a complete rig container at `dir`.
fn build(dir: &Path, name: &str, git_url: &str, prefix: &str) -> Result<()> {
    fsio::ensure_dir(dir)?;
    for sub in [".beads", "polecats", "crew", "plugins", "mayor"] {
        fsio::ensure_dir(&dir.join(sub))?;
    }
    let config = RigConfig {
        kind: "rig".into(),
        version: TOWN_VERSION,
        name: name.into(),
        git_url: git_url.into(),
        beads: BeadsConfig {
            prefix: prefix.into(),
            ..Default::default()
        },
        max_workers: 8,
        worker_spawn_delay: "5s".parse()?,
        test_command: None,
        test_timeout: None,
        queue_archive_after: None,
        stuck_after: None,
        agent_command: None,
        agent: None,
        agent_env: Default::default(),
        plugins: Default::default(),
        extra: Default::default(),
    };
    fsio::write_json(&dir.join("config.json"), &config)?;
    crate::beads::init(dir, prefix)?;
    for addr in [
        Address::Witness { rig: name.into() },
        Address::Refinery { rig: name.into() },
    ] {
        let sub = addr
            .rel_path()
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        Home {
            address: addr,
            path: dir.join(sub),
        }
        .create()?;
    }
    crate::git::clone(git_url, &dir.join("refinery/rig"))?;
    crate::git::checked_out_default(&dir.join("refinery/rig"), git_url)?;
    crate::git::clone(git_url, &dir.join("mayor/rig"))?;
    Ok(())
}
