//! Addresses name agent homes (protocol/README.md, "Names and addresses"). Parsing is pure; turning
//! an address into a path that exists is [`crate::town::Town::home`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest name: 64 characters.
pub const NAME_MAX: usize = 64;

/// Names of rigs, polecats, crew and plugins: `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`.
/// No dots, so never `.` or `..`; no slashes, so never a path.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {what} name {name:?}: use 1-{NAME_MAX} letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Names a rig may not take: they are town-level directories.
pub const RESERVED_RIG_NAMES: &[&str] = &["config", "federation", "mayor", "overseer", "self"];
/// Names a polecat may not take: they are the rig's own directories and roles.
pub const RESERVED_AGENT_NAMES: &[&str] = &[
    "witness", "refinery", "mayor", "polecats", "crew", "plugins", "self",
];

pub fn check_rig_name(name: &str) -> Result<()> {
    check_name("rig", name)?;
    if RESERVED_RIG_NAMES.contains(&name) || name.starts_with('-') {
        return Err(Error::invalid(format!(
            "invalid rig name {name:?}: it is reserved"
        )));
    }
    Ok(())
}

pub fn check_agent_name(what: &str, name: &str) -> Result<()> {
    check_name(what, name)?;
    if RESERVED_AGENT_NAMES.contains(&name) {
        return Err(Error::invalid(format!(
            "invalid {what} name {name:?}: it is reserved"
        )));
    }
    Ok(())
}

/// The role an agent home serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Mayor,
    Overseer,
    Witness,
    Refinery,
    Polecat,
    Crew,
    Plugin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mayor => "mayor",
            Role::Overseer => "overseer",
            Role::Witness => "witness",
            Role::Refinery => "refinery",
            Role::Polecat => "polecat",
            Role::Crew => "crew",
            Role::Plugin => "plugin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A local address: which agent home, not yet checked to exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Mayor,
    Overseer,
    Witness { rig: String },
    Refinery { rig: String },
    Polecat { rig: String, name: String },
    Crew { rig: String, name: String },
    Plugin { rig: String, name: String },
}

impl Address {
    pub fn role(&self) -> Role {
        match self {
            Address::Mayor => Role::Mayor,
            Address::Overseer => Role::Overseer,
            Address::Witness { .. } => Role::Witness,
            Address::Refinery { .. } => Role::Refinery,
            Address::Polecat { .. } => Role::Polecat,
            Address::Crew { .. } => Role::Crew,
            Address::Plugin { .. } => Role::Plugin,
        }
    }

    /// The agent `name` of `role` in `rig`, for the roles that have names
    /// (polecat, crew, plugin); the name is checked as [`FromStr`] would.
    pub fn named(role: Role, rig: &str, name: &str) -> Result<Address> {
        check_agent_name(role.as_str(), name)?;
        let (rig, name) = (rig.to_string(), name.to_string());
        Ok(match role {
            Role::Polecat => Address::Polecat { rig, name },
            Role::Crew => Address::Crew { rig, name },
            Role::Plugin => Address::Plugin { rig, name },
            _ => {
                return Err(Error::invalid(format!(
                    "a {role} has no name: use <rig>/{role}"
                )));
            }
        })
    }

    pub fn rig(&self) -> Option<&str> {
        match self {
            Address::Mayor | Address::Overseer => None,
            Address::Witness { rig }
            | Address::Refinery { rig }
            | Address::Polecat { rig, .. }
            | Address::Crew { rig, .. }
            | Address::Plugin { rig, .. } => Some(rig),
        }
    }

    /// The home directory relative to the town root. Built only from checked
    /// names, so it never contains `..`.
    pub fn rel_path(&self) -> PathBuf {
        match self {
            Address::Mayor => PathBuf::from("mayor"),
            Address::Overseer => PathBuf::from("overseer"),
            Address::Witness { rig } => Path::new(rig).join("witness"),
            Address::Refinery { rig } => Path::new(rig).join("refinery"),
            Address::Polecat { rig, name } => Path::new(rig).join("polecats").join(name),
            Address::Crew { rig, name } => Path::new(rig).join("crew").join(name),
            Address::Plugin { rig, name } => Path::new(rig).join("plugins").join(name),
        }
    }

    /// The address of the agent home that contains `rel` (a path relative to
    /// the town root), if any: how `gt whoami` and `self` work from a directory.
    pub fn from_rel_path(rel: &Path) -> Option<Address> {
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        let addr = match parts.as_slice() {
            ["mayor", ..] => Address::Mayor,
            ["overseer", ..] => Address::Overseer,
            [_, "mayor", ..] => Address::Mayor,
            [rig, "witness", ..] => Address::Witness {
                rig: rig.to_string(),
            },
            [rig, "refinery", ..] => Address::Refinery {
                rig: rig.to_string(),
            },
            [rig, "polecats", name, ..] => Address::Polecat {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [rig, "crew", name, ..] => Address::Crew {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [rig, "plugins", name, ..] => Address::Plugin {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            _ => return None,
        };
        // Only names that could have been created count.
        addr.to_string().parse().ok()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Mayor => f.write_str("mayor"),
            Address::Overseer => f.write_str("overseer"),
            Address::Witness { rig } => write!(f, "{rig}/witness"),
            Address::Refinery { rig } => write!(f, "{rig}/refinery"),
            Address::Polecat { rig, name } => write!(f, "{rig}/{name}"),
            Address::Crew { rig, name } => write!(f, "{rig}/crew/{name}"),
            Address::Plugin { rig, name } => write!(f, "{rig}/plugins/{name}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// Parse the canonical spellings plus `<rig>/polecats/<name>`. `self` and
    /// `machine:` prefixes are resolved by the caller, which knows the context.
    fn from_str(s: &str) -> Result<Address> {
        let bad = |why: &str| Error::invalid(format!("invalid address {s:?}: {why}"));
        if s.contains(':') {
            return Err(bad(
                "<machine>:<address> names another machine's agent (config/federation.json)",
            ));
        }
        let parts: Vec<&str> = s.split('/').collect();
        let addr = match parts.as_slice() {
            ["mayor"] => Address::Mayor,
            ["overseer"] => Address::Overseer,
            ["self"] => {
                return Err(bad(
                    "'self' needs GT_ADDRESS or a directory inside an agent home",
                ));
            }
            [rig, "witness"] => Address::Witness {
                rig: rig.to_string(),
            },
            [rig, "refinery"] => Address::Refinery {
                rig: rig.to_string(),
            },
            [rig, "polecats", name] => Address::Polecat {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [rig, "crew", name] => Address::Crew {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [rig, "plugins", name] => Address::Plugin {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [rig, name] => Address::Polecat {
                rig: rig.to_string(),
                name: name.to_string(),
            },
            [_] => return Err(bad("expected mayor, overseer, self or <rig>/<agent>")),
            _ => {
                return Err(bad(
                    "expected <rig>/<polecat>, <rig>/witness, <rig>/refinery, <rig>/crew/<name> or <rig>/plugins/<name>",
                ));
            }
        };
        if let Some(rig) = addr.rig() {
            check_rig_name(rig).map_err(|e| bad(e.message()))?;
        }
        match &addr {
            Address::Polecat { name, .. } => check_agent_name("polecat", name),
            Address::Crew { name, .. } => check_agent_name("crew", name),
            Address::Plugin { name, .. } => check_agent_name("plugin", name),
            _ => Ok(()),
        }
        .map_err(|e| bad(e.message()))?;
        Ok(addr)
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Split `<machine>:<address>` into the machine's name (checked) and the
/// address as written; `None` when `s` names no machine.
pub fn split_machine(s: &str) -> Result<Option<(&str, &str)>> {
    let Some((machine, rest)) = s.split_once(':') else {
        return Ok(None);
    };
    let bad = |why: &str| Error::invalid(format!("invalid address {s:?}: {why}"));
    check_name("machine", machine).map_err(|e| bad(e.message()))?;
    if rest.contains(':') {
        return Err(bad("more than one machine"));
    }
    Ok(Some((machine, rest)))
}

/// An address with an optional machine: `wyv/witness` or `a:wyv/witness`, the
/// shapes a message's `from` and `to` may take.
pub fn parse_qualified(s: &str) -> Result<(Option<&str>, Address)> {
    match split_machine(s)? {
        Some((m, rest)) => Ok((Some(m), rest.parse()?)),
        None => Ok((None, s.parse()?)),
    }
}

/// The candidate closest to `word` by edit distance, if close enough to be a
/// plausible typo: for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_forms() {
        for s in [
            "mayor",
            "overseer",
            "wyv/witness",
            "wyv/refinery",
            "wyv/Nux",
            "wyv/crew/dave",
            "wyv/plugins/merge-oracle",
        ] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
        assert_eq!(
            "wyv/polecats/Nux".parse::<Address>().unwrap().to_string(),
            "wyv/Nux"
        );
    }

    #[test]
    fn rejects_traversal_and_junk() {
        for s in [
            "",
            "..",
            "wyv/..",
            "../etc",
            "wyv/../mayor",
            "wyv/.hidden",
            "/abs",
            "wyv/",
            "a/b/c/d",
            "wyv/Nux/x",
            "config/witness",
            "wyv/polecats/witness",
            "host:mayor",
            "wyv/na me",
            "mayor/x/y",
        ] {
            assert!(s.parse::<Address>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn machine_prefixes_split() {
        assert_eq!(
            parse_qualified("b:wyv/witness").unwrap(),
            (Some("b"), Address::Witness { rig: "wyv".into() })
        );
        assert_eq!(parse_qualified("mayor").unwrap(), (None, Address::Mayor));
        for s in ["b c:mayor", ":mayor", "b:", "b:x:mayor", "b:../etc"] {
            assert!(parse_qualified(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn rel_paths_round_trip() {
        for s in [
            "mayor",
            "overseer",
            "r/witness",
            "r/refinery",
            "r/p",
            "r/crew/c",
            "r/plugins/x",
        ] {
            let a: Address = s.parse().unwrap();
            assert_eq!(
                Address::from_rel_path(&a.rel_path().join("rig/src")),
                Some(a)
            );
        }
        assert_eq!(
            Address::from_rel_path(Path::new("r/mayor/rig")),
            Some(Address::Mayor)
        );
        assert_eq!(Address::from_rel_path(Path::new("r")), None);
        assert_eq!(Address::from_rel_path(Path::new("config")), None);
    }

    #[test]
    fn suggests_near_names() {
        assert_eq!(
            did_you_mean("wyv/witnes", ["wyv/witness", "wyv/refinery"]),
            Some("wyv/witness")
        );
        assert_eq!(did_you_mean("zzzzzz", ["mayor"]), None);
    }
}
