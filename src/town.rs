//! The town: finding its root, creating it, and resolving addresses to homes
//! that exist inside it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::address::{Address, Role};
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
        Town::discover_with(Town::open)
    }

    /// [`Town::discover`] without reading `config/town.json`: for `gt doctor`,
    /// which reports a town.json that does not parse.
    pub fn discover_unread() -> Result<Town> {
        Town::discover_with(Town::open_unread)
    }

    fn discover_with(open: fn(&Path) -> Result<Town>) -> Result<Town> {
        if let Some(t) = std::env::var_os("GT_TOWN").filter(|v| !v.is_empty()) {
            return open(Path::new(&t)).map_err(|e| e.context("GT_TOWN"));
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Town::find_from(&cwd, open)
    }

    /// The nearest town at or above `dir`.
    pub fn discover_from(dir: &Path) -> Result<Town> {
        Town::find_from(dir, Town::open)
    }

    fn find_from(dir: &Path, open: fn(&Path) -> Result<Town>) -> Result<Town> {
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if is_town(d) {
                return open(d);
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
        let town = Town::open_unread(root)?;
        town.config()?;
        Ok(town)
    }

    /// [`Town::open`] without reading `config/town.json` (it must exist).
    fn open_unread(root: &Path) -> Result<Town> {
        let root = fs::canonicalize(root).at(root)?;
        crate::confine::enter(&root);
        let town = Town { root };
        if !is_town(&town.root) {
            return Err(Error::not_found(format!(
                "{}: not a town (no config/town.json)",
                town.root.display()
            )));
        }
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
        crate::address::check_rig_name(name)?;
        let rigs = self.rigs()?;
        if !rigs.rigs.contains_key(name) {
            return Err(Error::not_found(format!(
                "no rig {name:?} in {}",
                self.rigs_json().display()
            ))
            .suggest(name, rigs.rigs.keys().map(String::as_str)));
        }
        Ok(Rig::at(self, name))
    }

    /// The rig a command acts on: `explicit` (a `--rig` flag), else
    /// [`Town::context_rig`], else the town's only rig.
    pub fn current_rig(&self, explicit: Option<&str>) -> Result<Rig> {
        if let Some(name) = explicit {
            return self.rig(name);
        }
        if let Some(rig) = self.context_rig()? {
            return Ok(rig);
        }
        let rigs = self.rigs()?;
        match rigs.rigs.keys().collect::<Vec<_>>().as_slice() {
            [only] => Ok(Rig::at(self, only)),
            [] => Err(no_rigs()),
            many => Err(Error::invalid(format!(
                "which rig? pass --rig, set GT_RIG or run inside a rig (rigs: {})",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The rig whose beads prefix (`beads.prefix` in its config.json) the
    /// issue id `<prefix>-...` carries, if any.
    pub fn rig_of_issue(&self, issue: &str) -> Result<Option<Rig>> {
        for name in self.rigs()?.rigs.keys() {
            let rig = Rig::at(self, name);
            let prefix = rig.config()?.beads.prefix;
            if !prefix.is_empty()
                && issue
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            {
                return Ok(Some(rig));
            }
        }
        Ok(None)
    }

    /// The rig the caller is in: `GT_RIG`, else the rig holding the current
    /// directory, else none.
    pub fn context_rig(&self) -> Result<Option<Rig>> {
        if let Some(name) = std::env::var("GT_RIG").ok().filter(|v| !v.is_empty()) {
            return self.rig(&name).map(Some).map_err(|e| e.context("GT_RIG"));
        }
        let rigs = self.rigs()?;
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| fs::canonicalize(d).ok());
        Ok(cwd
            .as_deref()
            .and_then(|d| d.strip_prefix(&self.root).ok())
            .and_then(|r| r.iter().next())
            .and_then(|first| first.to_str())
            .filter(|n| rigs.rigs.contains_key(*n))
            .map(|name| Rig::at(self, name)))
    }

    /// The agent `spec` names ([`Town::resolve`] with bare names as agents of
    /// `role`, in `rig` if given), which must have `role`.
    pub fn agent(&self, spec: &str, role: Role, rig: Option<&str>) -> Result<Home> {
        let home = self.resolve(spec, Bare::Agent { role, rig })?;
        if home.address.role() != role {
            return Err(Error::invalid(format!("{} is not a {role}", home.address)));
        }
        Ok(home)
    }

    /// The home of `addr`, which must exist in a registered rig and lie inside
    /// the town (no symlink may lead out of it). Refusals carry a "did you
    /// mean" hint.
    pub fn home(&self, addr: &Address) -> Result<Home> {
        if let Some(rig) = addr.rig() {
            self.rig(rig)?;
        }
        let path = self.root.join(addr.rel_path());
        let real = match fs::canonicalize(&path) {
            Ok(p) if p.is_dir() && crate::home::is_home_of(addr, &p) => p,
            _ => {
                let e = Error::not_found(format!(
                    "no agent home for address {addr} ({} does not exist)",
                    path.display()
                ));
                return Err(self.suggest_address(e, &addr.to_string()));
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

    /// The home an address as typed by a user names: `self` (who is acting),
    /// `mayor`, `overseer`, `<rig>/...`, or a bare name read as `bare` says.
    /// Every refusal of a name that is not there carries a "did you mean".
    pub fn resolve(&self, spec: &str, bare: Bare) -> Result<Home> {
        // `<this machine>:<address>` is local; another machine's agent has no
        // home here.
        if spec.contains(':') {
            let fed = crate::federation::Federation::load(self)?;
            return self.resolve(fed.local_part(spec)?, bare);
        }
        let addr = match (spec, bare) {
            ("self", _) => match self.whoami()? {
                Identity {
                    source: Source::Default,
                    ..
                } => {
                    return Err(Error::invalid(
                        "cannot resolve 'self': GT_ADDRESS is unset and the current directory is not in an agent home",
                    ));
                }
                me => me.address,
            },
            (name, Bare::Agent { role, rig })
                if !name.contains('/') && !matches!(name, "mayor" | "overseer") =>
            {
                return self.bare_agent(name, role, rig);
            }
            // A bare word that is no address is likely a typo (`mayr`); a
            // malformed path (`../x`) is not, and gets no suggestion.
            _ if !spec.contains('/') => spec
                .parse::<Address>()
                .map_err(|e| self.suggest_address(e, spec))?,
            _ => spec.parse::<Address>()?,
        };
        if let (Bare::Agent { rig: Some(r), .. }, Some(a)) = (bare, addr.rig())
            && r != a
        {
            return Err(Error::invalid(format!(
                "two rigs given: {addr} is in rig {a}, not --rig {r}"
            )));
        }
        self.home(&addr)
    }

    /// A bare `name` of `role`: in `rig` if given, else in the caller's rig
    /// ([`Town::context_rig`]), else in the one rig that has it.
    fn bare_agent(&self, name: &str, role: Role, rig: Option<&str>) -> Result<Home> {
        if let Some(r) = rig {
            return self.home(&Address::named(role, &self.rig(r)?.name, name)?);
        }
        if let Some(r) = self.context_rig()? {
            return self.home(&Address::named(role, &r.name, name)?);
        }
        let rigs: Vec<String> = self.rigs()?.rigs.into_keys().collect();
        let mut found = Vec::new();
        for r in &rigs {
            let addr = Address::named(role, r, name)?;
            if crate::home::is_home_of(&addr, &self.root.join(addr.rel_path())) {
                found.push(addr);
            }
        }
        match (found.as_slice(), rigs.as_slice()) {
            ([one], _) => self.home(one),
            // With one rig, its name is the one to report as missing.
            ([], [only]) => self.home(&Address::named(role, only, name)?),
            ([], []) => Err(no_rigs()),
            ([], _) => {
                let e = Error::not_found(format!(
                    "no {role} {name:?} in any rig ({})",
                    rigs.join(", ")
                ));
                let names: Vec<String> = self
                    .homes()?
                    .iter()
                    .filter(|h| h.address.role() == role)
                    .filter_map(|h| h.path.file_name()?.to_str().map(str::to_string))
                    .collect();
                Err(e.suggest(name, names.iter().map(String::as_str)))
            }
            (many, _) => Err(Error::invalid(format!(
                "{name} is ambiguous: {}; pass --rig or the full address",
                many.iter()
                    .map(Address::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// `e` with a "did you mean" among the town's addresses: the agents of
    /// the same name (`witness`: `wyv/witness`; `wyv/Bob`: `wyv/crew/Bob`),
    /// only those in the rig `spec` names (for a bare name, the caller's rig)
    /// if there are any; else the nearest spelling.
    fn suggest_address(&self, e: Error, spec: &str) -> Error {
        let all: Vec<String> = self
            .homes()
            .unwrap_or_default()
            .iter()
            .map(|h| h.address.to_string())
            .collect();
        let name = |a: &str| a.rsplit('/').next().map(str::to_string);
        let rig = |a: &str| a.split_once('/').map(|(r, _)| r.to_string());
        let same: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|a| *a != spec && name(a) == name(spec))
            .collect();
        let near = match spec.split_once('/') {
            Some((r, _)) => Some(r.to_string()),
            None => self.context_rig().ok().flatten().map(|r| r.name),
        };
        let in_rig: Vec<&str> = same
            .iter()
            .copied()
            .filter(|a| near.is_some() && rig(a) == near)
            .collect();
        let these = if in_rig.is_empty() { same } else { in_rig };
        e.suggest_these(&these)
            .suggest(spec, all.iter().map(String::as_str))
    }

    /// Who is acting: `GT_ADDRESS` if set, else the agent home the current
    /// directory is in, else the overseer (a person at a shell).
    pub fn whoami(&self) -> Result<Identity> {
        if let Some(a) = std::env::var_os("GT_ADDRESS").filter(|v| !v.is_empty()) {
            let s = a
                .to_str()
                .ok_or_else(|| Error::invalid("GT_ADDRESS is not UTF-8"))?;
            let address = s.parse::<Address>().map_err(|e| e.context("GT_ADDRESS"))?;
            return Ok(Identity {
                address,
                source: Source::Env,
            });
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Ok(match self.address_of_dir(&cwd) {
            Some(address) => Identity {
                address,
                source: Source::Directory,
            },
            None => Identity {
                address: Address::Overseer,
                source: Source::Default,
            },
        })
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

/// How [`Town::resolve`] reads a name without a `/` (other than `mayor`,
/// `overseer` and `self`).
#[derive(Debug, Clone, Copy)]
pub enum Bare<'a> {
    /// As an address, which it is not: refused (mail recipients, `--as`).
    Address,
    /// As an agent of `role` (polecat, crew or plugin): in `rig` (a `--rig`
    /// flag) if given, else in the caller's rig (GT_RIG, the directory), else
    /// in the one rig that has an agent of that name.
    Agent { role: Role, rig: Option<&'a str> },
}

/// Who is acting, and how that was decided ([`Town::whoami`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub address: Address,
    pub source: Source,
}

/// Where an [`Identity`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    #[serde(rename = "GT_ADDRESS")]
    Env,
    /// The agent home the current directory is in.
    #[serde(rename = "directory")]
    Directory,
    /// Nothing said: the overseer.
    #[serde(rename = "default")]
    Default,
}

fn no_rigs() -> Error {
    Error::not_found("the town has no rigs (add one with gt rig add <name> <git_url>)")
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
    crate::confine::enter(&root);
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
                agent: None,
                agent_env: Default::default(),
                heartbeat_timeout: None,
                max_restarts: None,
                escalation_forward_after: None,
                cycle_grace: None,
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
