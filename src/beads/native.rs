//! The native store: gastown keeps `<rig>/.beads/issues.jsonl` itself, in the
//! beads JSONL format, so a real `bd`/`br` can import it later.
//!
//! Reads take no lock: writes replace the file atomically, so a reader sees a
//! whole old or whole new file. Every write is read-modify-write under the
//! sidecar lock `.beads/issues.lock` ([`fsio::update_lines`]). Lines the store
//! does not touch are written back byte for byte: unknown fields, unknown record
//! kinds, tombstones, and lines that are not valid records (those are reported
//! by reads, never dropped).

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Dependency, Issue, ListFilter, Location, NewIssue, ReadyFilter, Tracker, Update, check_word,
    rules,
};
use crate::clock;
use crate::error::{Error, Result};
use crate::fsio::{self, BadLine};

pub struct Native {
    loc: Location,
    bad: RefCell<Vec<BadLine>>,
}

/// One line of the file: an issue we understood, or anything else, kept raw.
enum Line {
    /// `raw` holds the line's exact bytes while the issue is unchanged.
    Issue {
        issue: Box<Issue>,
        raw: Option<Vec<u8>>,
    },
    /// Blank, an unknown record kind, or a bad line.
    Other(Vec<u8>),
}

/// The parsed file.
struct Store {
    path: PathBuf,
    lines: Vec<Line>,
}

impl Store {
    fn parse(path: PathBuf, raw: Vec<Vec<u8>>, bad: &mut Vec<BadLine>) -> Store {
        let mut lines = Vec::with_capacity(raw.len());
        let mut offset = 0u64;
        for (n, raw) in raw.into_iter().enumerate() {
            let len = raw.len() as u64 + 1;
            let line = match parse_line(&raw) {
                Parsed::Issue(issue) => Line::Issue {
                    issue,
                    raw: Some(raw),
                },
                Parsed::Skip => Line::Other(raw),
                Parsed::Bad(reason) => {
                    bad.push(BadLine {
                        path: path.clone(),
                        line: n as u64 + 1,
                        offset,
                        reason,
                    });
                    Line::Other(raw)
                }
            };
            offset += len;
            lines.push(line);
        }
        Store { path, lines }
    }

    fn issues(&self) -> impl Iterator<Item = &Issue> {
        self.lines.iter().filter_map(|l| match l {
            Line::Issue { issue, .. } => Some(&**issue),
            Line::Other(_) => None,
        })
    }

    /// Every issue but tombstones, once per id (the last line wins).
    fn live(&self) -> Vec<Issue> {
        let all: Vec<Issue> = self.issues().cloned().collect();
        let g = rules::Graph::new(&all);
        g.issues()
            .iter()
            .filter(|i| !i.is_tombstone())
            .map(|i| (*i).clone())
            .collect()
    }

    /// The index and value of the last line holding `id`, which must not be a
    /// tombstone.
    fn find(&self, id: &str) -> Result<(usize, &Issue)> {
        let path = self.path.display();
        let found = self
            .lines
            .iter()
            .enumerate()
            .rev()
            .find_map(|(n, l)| match l {
                Line::Issue { issue, .. } if issue.id == id => Some((n, &**issue)),
                _ => None,
            });
        match found {
            None => Err(Error::not_found(format!("no issue {id} in {path}"))),
            Some((_, i)) if i.is_tombstone() => Err(Error::not_found(format!(
                "issue {id} is deleted (tombstone) in {path}"
            ))),
            Some(f) => Ok(f),
        }
    }

    /// Replace line `n` with a changed issue.
    fn set(&mut self, n: usize, issue: Issue) {
        self.lines[n] = Line::Issue {
            issue: Box::new(issue),
            raw: None,
        };
    }

    /// Every id in the file, tombstones and unknown kinds included, so a new
    /// id never reuses one.
    fn taken(&self) -> std::collections::HashSet<String> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Issue { issue, .. } => Some(issue.id.clone()),
                Line::Other(raw) => serde_json::from_slice::<serde_json::Value>(raw)
                    .ok()?
                    .get("id")?
                    .as_str()
                    .map(str::to_string),
            })
            .collect()
    }

    fn into_lines(self) -> Result<Vec<Vec<u8>>> {
        self.lines
            .into_iter()
            .map(|l| match l {
                Line::Issue { raw: Some(raw), .. } | Line::Other(raw) => Ok(raw),
                Line::Issue { issue, raw: None } => {
                    serde_json::to_vec(&issue).map_err(|e| Error::invalid(e.to_string()))
                }
            })
            .collect()
    }
}

enum Parsed {
    Issue(Box<Issue>),
    /// Blank, or a record kind other than `issue`: not ours to read.
    Skip,
    Bad(String),
}

fn parse_line(raw: &[u8]) -> Parsed {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Skip;
    }
    let other_kind =
        |v: Option<&serde_json::Value>| v.and_then(|t| t.as_str()).is_some_and(|k| k != "issue");
    match serde_json::from_slice::<Issue>(raw) {
        Ok(issue) if other_kind(issue.extra.get("_type")) => Parsed::Skip,
        Ok(issue) => Parsed::Issue(Box::new(issue)),
        // A record of another kind need not look like an issue at all.
        Err(e) => match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(v) if other_kind(v.get("_type")) => Parsed::Skip,
            _ => Parsed::Bad(fsio::describe_bad_line(raw, &e)),
        },
    }
}

static ID_SEQ: AtomicU64 = AtomicU64::new(0);

/// `<prefix>-<base36>`: 4 characters, more if those are taken (beads' ids grow
/// the same way). Called under the lock, so "not taken" stays true.
fn new_id(prefix: &str, title: &str, taken: &std::collections::HashSet<String>) -> String {
    const B36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    for attempt in 0u32.. {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(title.as_bytes());
        h.write_u32(std::process::id());
        h.write_u64(ID_SEQ.fetch_add(1, Ordering::Relaxed));
        h.write_i128(clock::now().as_nanosecond());
        let mut v = h.finish();
        let len = 4 + (attempt / 8) as usize;
        let mut id = format!("{prefix}-");
        for _ in 0..len.min(12) {
            id.push(B36[(v % 36) as usize] as char);
            v /= 36;
        }
        if !taken.contains(&id) {
            return id;
        }
    }
    unreachable!("the id space grows until an id is free")
}

impl Native {
    pub fn new(loc: Location) -> Native {
        Native {
            loc,
            bad: RefCell::new(Vec::new()),
        }
    }

    fn path(&self) -> PathBuf {
        self.loc.issues_jsonl()
    }

    /// A snapshot of the file, lock-free.
    fn read(&self) -> Result<Store> {
        let path = self.path();
        let bytes = match crate::confine::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut bad = Vec::new();
        let store = Store::parse(path, fsio::split_lines(&bytes), &mut bad);
        *self.bad.borrow_mut() = bad;
        Ok(store)
    }

    /// Change the file under its lock; bad lines are passed through, not reported
    /// again. Nothing is written if `f` fails.
    fn write<R>(&self, f: impl FnOnce(&mut Store) -> Result<R>) -> Result<R> {
        let path = self.path();
        if !self.loc.beads_dir.is_dir() {
            return Err(Error::not_found(format!(
                "{}: no tracker directory (not a rig, or .beads/ was removed)",
                self.loc.beads_dir.display()
            )));
        }
        fsio::update_lines(&path, |lines| {
            let mut store = Store::parse(path.clone(), std::mem::take(lines), &mut Vec::new());
            let out = f(&mut store)?;
            *lines = store.into_lines()?;
            Ok(out)
        })
    }

    /// Change one issue, stamping `updated_at` if `f` changed anything.
    fn change(&self, id: &str, f: impl FnOnce(&mut Issue) -> Result<()>) -> Result<Issue> {
        self.write(|store| {
            let (n, before) = store.find(id)?;
            let mut issue = before.clone();
            f(&mut issue)?;
            if issue != *before {
                issue.updated_at = clock::now_string();
                store.set(n, issue.clone());
            }
            Ok(issue)
        })
    }
}

/// Apply a status change with beads' side effects on `closed_at`/`close_reason`.
fn set_status(issue: &mut Issue, status: &str) {
    if status == issue.status {
        return;
    }
    if status == "closed" {
        issue.closed_at = Some(clock::now_string());
    } else if issue.status == "closed" {
        issue.closed_at = None;
        issue.close_reason = None;
    }
    issue.status = status.to_string();
}

impl Tracker for Native {
    fn backend(&self) -> String {
        "native".into()
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<Issue>> {
        let live = self.read()?.live();
        let scope = filter.parent.as_deref().map(|p| {
            rules::Graph::new(&live)
                .descendants(p)
                .into_iter()
                .map(str::to_string)
                .collect::<std::collections::HashSet<_>>()
        });
        Ok(live
            .iter()
            .filter(|i| filter.matches(i) && scope.as_ref().is_none_or(|s| s.contains(&i.id)))
            .cloned()
            .collect())
    }

    fn show(&self, id: &str) -> Result<Issue> {
        self.read()?.find(id).map(|(_, i)| i.clone())
    }

    fn ready(&self, filter: &ReadyFilter) -> Result<Vec<Issue>> {
        let store = self.read()?;
        if let Some(p) = &filter.parent {
            store.find(p)?;
        }
        let all: Vec<Issue> = store.issues().cloned().collect();
        Ok(rules::ready(&all, filter, clock::now())
            .into_iter()
            .cloned()
            .collect())
    }

    fn all(&self) -> Result<Vec<Issue>> {
        Ok(self.read()?.issues().cloned().collect())
    }

    fn create(&self, new: &NewIssue) -> Result<Issue> {
        new.check()?;
        let now = clock::now_string();
        self.write(|store| {
            let taken = store.taken();
            let id = match &new.parent {
                Some(p) => {
                    store.find(p)?;
                    let n = taken
                        .iter()
                        .filter_map(|t| {
                            t.strip_prefix(p.as_str())?
                                .strip_prefix('.')?
                                .parse::<u64>()
                                .ok()
                        })
                        .max()
                        .unwrap_or(0);
                    format!("{p}.{}", n + 1)
                }
                None => new_id(&self.loc.prefix, &new.title, &taken),
            };
            let dependencies = new
                .parent
                .iter()
                .map(|p| Dependency {
                    issue_id: id.clone(),
                    depends_on_id: p.clone(),
                    kind: "parent-child".into(),
                    created_at: Some(now.clone()),
                    extra: Default::default(),
                })
                .collect();
            let issue = Issue {
                id,
                title: new.title.clone(),
                description: new.description.clone().filter(|d| !d.is_empty()),
                status: "open".into(),
                priority: new.priority.unwrap_or(2),
                issue_type: new.issue_type.clone().unwrap_or_else(|| "task".into()),
                assignee: new.assignee.clone().filter(|a| !a.is_empty()),
                labels: new.labels.clone(),
                created_at: now.clone(),
                updated_at: now.clone(),
                closed_at: None,
                close_reason: None,
                dependencies,
                comments: Vec::new(),
                extra: Default::default(),
            };
            store.lines.push(Line::Issue {
                issue: Box::new(issue.clone()),
                raw: None,
            });
            Ok(issue)
        })
    }

    fn update(&self, id: &str, update: &Update) -> Result<Issue> {
        update.check()?;
        self.change(id, |i| {
            if let Some(s) = &update.status {
                set_status(i, s);
            }
            if let Some(a) = &update.assignee {
                i.assignee = Some(a.clone()).filter(|a| !a.is_empty());
            }
            if let Some(p) = update.priority {
                i.priority = p;
            }
            if let Some(t) = &update.title {
                i.title = t.clone();
            }
            if let Some(d) = &update.description {
                i.description = Some(d.clone()).filter(|d| !d.is_empty());
            }
            Ok(())
        })
    }

    fn close(&self, id: &str, reason: Option<&str>) -> Result<Issue> {
        self.change(id, |i| {
            if i.status != "closed" {
                set_status(i, "closed");
                i.close_reason = reason.map(str::to_string);
            }
            Ok(())
        })
    }

    fn add_dep(&self, id: &str, on: &str, kind: &str) -> Result<Issue> {
        check_word("dependency type", kind)?;
        if id == on {
            return Err(Error::invalid(format!("{id} cannot depend on itself")));
        }
        self.write(|store| {
            if !on.starts_with("external:") {
                store.find(on)?;
            }
            let (n, issue) = store.find(id)?;
            let mut issue = issue.clone();
            if !issue
                .dependencies
                .iter()
                .any(|d| d.depends_on_id == on && d.kind == kind)
            {
                let now = clock::now_string();
                issue.dependencies.push(Dependency {
                    issue_id: id.to_string(),
                    depends_on_id: on.to_string(),
                    kind: kind.to_string(),
                    created_at: Some(now.clone()),
                    extra: Default::default(),
                });
                issue.updated_at = now;
                store.set(n, issue.clone());
            }
            Ok(issue)
        })
    }

    fn claim(&self, id: &str, worker: &str) -> Result<Issue> {
        self.change(id, |i| {
            super::check_claim(i, worker)?;
            i.status = "in_progress".into();
            i.assignee = Some(worker.to_string());
            Ok(())
        })
    }

    fn release(&self, id: &str, worker: &str) -> Result<Issue> {
        self.change(id, |i| {
            super::check_release(i, worker)?;
            if i.status == "in_progress" || i.status == "hooked" {
                i.status = "open".into();
            }
            i.assignee = None;
            Ok(())
        })
    }

    fn bad_lines(&self) -> Vec<BadLine> {
        self.bad.borrow().clone()
    }
}
