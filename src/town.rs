//! The town: finding its root, creating it, and resolving addresses to homes
//! that exist inside it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::address::{self, Address};
use crate::clock;
use crate::error::{Error, IoContext, Kind, Result};
use crate::fsio;
use crate::home::Home;
use crate::record::{RigsRegistry, TOWN_VERSION, TownConfig};
use crate::rig::Rig;

/// A town root: the directory holding `config/town.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Town {
    root: PathBuf,
}

impl Town {
    /// `GT_TOWN` if set, else the nearest directory from the current one up
    /// that holds `config/town.json`.
    pub fn discover() -> Result<Town> {
        if let Some(t) = std::env::var_os("GT_TOWN").filter(|v| !v.is_empty()) {
            return Town::open(Path::new(&t)).map_err(|e| e.context("GT_TOWN"));
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Town::discover_from(&cwd)
    }

    /// The nearest town at or above `dir`.
    pub fn discover_from(dir: &Path) -> Result<Town> {
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if is_town(d) {
                return Town::open(d);
            }
            cur = d.parent();
        }
        Err(Error::not_found(format!(
            "no town here (looked for config/town.json from {} up to /; set GT_TOWN or run gt install)",
            dir.display()
        )))
    }

    /// Open the town at `root`, which must hold a readable `config/town.json`.
    pub fn open(root: &Path) -> Result<Town> {
        let root = fs::canonicalize(root).at(root)?;
        let town = Town { root };
        if !is_town(&town.root) {
            return Err(Error::not_found(format!(
                "{}: not a town (no config/town.json)",
                town.root.display()
            )));
        }
        town.config()?;
        Ok(town)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn town_json(&self) -> PathBuf {
        self.root.join("config/town.json")
    }
    pub fn rigs_json(&self) -> PathBuf {
        self.root.join("config/rigs.json")
    }
    pub fn federation_json(&self) -> PathBuf {
        self.root.join("config/federation.json")
    }

    pub fn config(&self) -> Result<TownConfig> {
        let c: TownConfig = fsio::read_json(&self.town_json())?;
        if c.kind != "town" {
            return Err(Error::invalid(format!(
                "{}: \"type\" is {:?}, expected \"town\"",
                self.town_json().display(),
                c.kind
            )));
        }
        Ok(c)
    }

    pub fn rigs(&self) -> Result<RigsRegistry> {
        match fsio::read_json(&self.rigs_json()) {
            Err(e) if e.kind == Kind::NotFound => Ok(RigsRegistry {
                version: TOWN_VERSION,
                ..Default::default()
            }),
            r => r,
        }
    }

    /// The registered rig `name`.
    pub fn rig(&self, name: &str) -> Result<Rig> {
        address::check_rig_name(name)?;
        let rigs = self.rigs()?;
        if !rigs.rigs.contains_key(name) {
            let mut e =
                Error::not_found(format!("no rig {name:?} in {}", self.rigs_json().display()));
            if let Some(s) = address::did_you_mean(name, rigs.rigs.keys().map(String::as_str)) {
                e = e.with_hint(format!("did you mean {s}?"));
            }
            return Err(e);
        }
        Ok(Rig::at(self, name))
    }

    /// The rig a command acts on: `explicit` (a `--rig` flag), else `GT_RIG`,
    /// else the rig the current directory is in, else the town's only rig.
    pub fn current_rig(&self, explicit: Option<&str>) -> Result<Rig> {
        if let Some(name) = explicit {
            return self.rig(name);
        }
        if let Some(name) = std::env::var("GT_RIG").ok().filter(|v| !v.is_empty()) {
            return self.rig(&name).map_err(|e| e.context("GT_RIG"));
        }
        let rigs = self.rigs()?;
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| fs::canonicalize(d).ok());
        if let Some(first) = cwd
            .as_deref()
            .and_then(|d| d.strip_prefix(&self.root).ok())
            .and_then(|r| r.iter().next())
            && let Some(name) = first.to_str().filter(|n| rigs.rigs.contains_key(*n))
        {
            return Ok(Rig::at(self, name));
        }
        match rigs.rigs.keys().collect::<Vec<_>>().as_slice() {
            [only] => Ok(Rig::at(self, only)),
            [] => Err(Error::not_found(
                "the town has no rigs (add one with gt rig add <name> <git_url>)",
            )),
            many => Err(Error::invalid(format!(
                "which rig? pass --rig, set GT_RIG or run inside a rig (rigs: {})",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// An agent named by full address, or by bare `<name>` as a polecat, crew
    /// member or plugin (per `role`) of [`Town::current_rig`]; it must have `role`.
    pub fn agent(&self, spec: &str, role: crate::address::Role) -> Result<Home> {
        use crate::address::Role;
        let addr = if spec.contains('/') {
            spec.parse::<Address>()?
        } else {
            let (rig, name) = (self.current_rig(None)?.name, spec.to_string());
            match role {
                Role::Polecat => Address::Polecat { rig, name },
                Role::Crew => Address::Crew { rig, name },
                Role::Plugin => Address::Plugin { rig, name },
                _ => spec.parse::<Address>()?,
            }
        };
        if addr.role() != role {
            return Err(Error::invalid(format!("{addr} is not a {role}")));
        }
        self.home(&addr)
    }

    /// The home of `addr`, which must exist and lie inside the town (no symlink
    /// may lead out of it). Refusals carry a "did you mean" hint.
    pub fn home(&self, addr: &Address) -> Result<Home> {
        let path = self.root.join(addr.rel_path());
        let real = match fs::canonicalize(&path) {
            Ok(p) if p.is_dir() && crate::home::is_home(&p) => p,
            _ => {
                let mut e = Error::not_found(format!(
                    "no agent home for address {addr} ({} does not exist)",
                    path.display()
                ));
                let all: Vec<String> = self
                    .homes()?
                    .iter()
                    .map(|h| h.address.to_string())
                    .collect();
                if let Some(s) =
                    address::did_you_mean(&addr.to_string(), all.iter().map(String::as_str))
                {
                    e = e.with_hint(format!("did you mean {s}?"));
                }
                return Err(e);
            }
        };
        if !real.starts_with(&self.root) {
            return Err(Error::invalid(format!(
                "address {addr} resolves to {}, outside the town {} (a symlink leads out); refused",
                real.display(),
                self.root.display()
            )));
        }
        Ok(Home {
            address: addr.clone(),
            path,
        })
    }

    /// Resolve an address as typed by a user: `self` or a local address.
    pub fn resolve(&self, spec: &str) -> Result<Home> {
        let addr = if spec == "self" {
            self.whoami()?.ok_or_else(|| {
                Error::invalid("cannot resolve 'self': GT_ADDRESS is unset and the current directory is not in an agent home")
            })?
        } else {
            spec.parse()?
        };
        self.home(&addr)
    }

    /// Who is acting: `GT_ADDRESS` if set, else the agent home the current
    /// directory is in, else nobody.
    pub fn whoami(&self) -> Result<Option<Address>> {
        if let Some(a) = std::env::var_os("GT_ADDRESS").filter(|v| !v.is_empty()) {
            let s = a
                .to_str()
                .ok_or_else(|| Error::invalid("GT_ADDRESS is not UTF-8"))?;
            return s
                .parse::<Address>()
                .map(Some)
                .map_err(|e| e.context("GT_ADDRESS"));
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Ok(self.address_of_dir(&cwd))
    }

    /// The address of the agent home containing `dir`, if any.
    pub fn address_of_dir(&self, dir: &Path) -> Option<Address> {
        let dir = fs::canonicalize(dir).ok()?;
        Address::from_rel_path(dir.strip_prefix(&self.root).ok()?)
    }

    /// Every agent home that exists: mayor, overseer, and each rig's agents.
    pub fn homes(&self) -> Result<Vec<Home>> {
        let mut out = Vec::new();
        for addr in [Address::Mayor, Address::Overseer] {
            let path = self.root.join(addr.rel_path());
            if crate::home::is_home(&path) {
                out.push(Home {
                    address: addr,
                    path,
                });
            }
        }
        for name in self.rigs()?.rigs.keys() {
            out.extend(Rig::at(self, name).homes()?);
        }
        Ok(out)
    }
}

fn is_town(dir: &Path) -> bool {
    dir.join("config/town.json").is_file()
}

/// What `gt install` did.
#[derive(Debug, serde::Serialize)]
pub struct Installed {
    pub root: PathBuf,
    pub name: String,
    /// False when the town already existed and nothing but missing files was made.
    pub created: bool,
}

/// Create a town at `path` (made if missing), or complete an existing one.
/// A non-empty directory that is not a town is refused.
pub fn install(path: &Path, name: Option<&str>) -> Result<Installed> {
    if let Some(n) = name.filter(|n| n.trim().is_empty() || n.contains(['\n', '\r'])) {
        return Err(Error::invalid(format!(
            "invalid town name {n:?}: it must be one non-empty line"
        )));
    }
    let existing = is_town(path);
    if !existing && path.exists() {
        let mut entries = fs::read_dir(path).at(path)?;
        if entries.next().is_some() {
            return Err(Error::conflict(format!(
                "{}: directory is not empty and is not a town; refusing to install here",
                path.display()
            )));
        }
    }
    fsio::ensure_dir(&path.join("config"))?;
    let root = fs::canonicalize(path).at(path)?;
    let town_json = root.join("config/town.json");
    let default_name = || {
        root.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "town".to_string())
    };
    let config = fsio::update_json(
        &town_json,
        || {
            Ok(TownConfig {
                kind: "town".into(),
                version: TOWN_VERSION,
                name: name.map(str::to_string).unwrap_or_else(default_name),
                created_at: clock::now_string(),
                session_backend: None,
                agent_command: None,
                heartbeat_timeout: None,
                max_restarts: None,
                extra: Default::default(),
            })
        },
        |c: &mut TownConfig| Ok(c.clone()),
    )?;
    fsio::update_json(
        &root.join("config/rigs.json"),
        || {
            Ok(RigsRegistry {
                version: TOWN_VERSION,
                ..Default::default()
            })
        },
        |_| Ok(()),
    )?;
    for addr in [Address::Mayor, Address::Overseer] {
        Home {
            path: root.join(addr.rel_path()),
            address: addr,
        }
        .create()?;
    }
    Ok(Installed {
        root,
        name: config.name,
        created: !existing,
    })
}
