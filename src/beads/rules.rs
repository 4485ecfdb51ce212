//! Ready work and waves, exactly as protocol/beads.md writes them down (the
//! rules of `bd ready`): pure functions over the issues of a tracker.

use std::collections::{HashMap, HashSet, VecDeque};

use jiff::Timestamp;
use serde::Serialize;

use super::{Issue, ReadyFilter};
use crate::error::{Error, Result};

/// Types that are bookkeeping, never work for a polecat.
pub const INTERNAL_TYPES: &[&str] = &[
    "message",
    "agent",
    "role",
    "rig",
    "merge-request",
    "gate",
    "molecule",
];

/// Statuses in which an issue still blocks the issues that depend on it.
pub const ACTIVE: &[&str] = &["open", "in_progress", "blocked", "deferred", "hooked"];

/// A `conditional-blocks` dependent runs only when its blocker closed with a
/// reason containing one of these (case-insensitive).
const FAILURE_WORDS: &[&str] = &[
    "failed",
    "rejected",
    "wontfix",
    "won't fix",
    "cancelled",
    "canceled",
    "abandoned",
    "blocked",
    "error",
    "timeout",
    "aborted",
];

/// Why an issue is blocked: the issue in the way and how (`blocks`,
/// `conditional-blocks`, `waits-for`, or `parent` when its parent is blocked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub by: String,
    pub how: &'static str,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.how {
            "parent" => write!(f, "its parent {} is blocked", self.by),
            how => write!(f, "{} ({how})", self.by),
        }
    }
}

/// The issues indexed by id (a later line with the same id wins, as in a log)
/// and by parent.
pub struct Graph<'a> {
    order: Vec<&'a Issue>,
    by_id: HashMap<&'a str, &'a Issue>,
    children: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Graph<'a> {
    pub fn new(issues: &'a [Issue]) -> Self {
        let mut by_id: HashMap<&str, &Issue> = HashMap::with_capacity(issues.len());
        for i in issues {
            by_id.insert(&i.id, i);
        }
        let order: Vec<&Issue> = issues
            .iter()
            .filter(|i| std::ptr::eq(by_id[i.id.as_str()], *i))
            .collect();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for i in &order {
            for d in i.dependencies.iter().filter(|d| d.kind == "parent-child") {
                children.entry(&d.depends_on_id).or_default().push(&i.id);
            }
        }
        Graph {
            order,
            by_id,
            children,
        }
    }

    pub fn get(&self, id: &str) -> Option<&'a Issue> {
        self.by_id.get(id).copied()
    }

    /// Every issue, once, in file order.
    pub fn issues(&self) -> &[&'a Issue] {
        &self.order
    }

    /// All descendants of `root` through `parent-child`, any depth (a loop of
    /// parents ends the walk, it does not hang it).
    pub fn descendants(&self, root: &str) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([root]);
        while let Some(id) = queue.pop_front() {
            for &c in self.children.get(id).into_iter().flatten() {
                if c != root && seen.insert(c) {
                    queue.push_back(c);
                }
            }
        }
        seen
    }

    fn is_active(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|i| ACTIVE.contains(&i.status.as_str()))
    }

    /// The first dependency of `issue` that blocks it by itself. A dependency
    /// on an id the tracker does not hold blocks nothing.
    pub fn direct_blocker(&self, issue: &Issue) -> Option<Blocker> {
        issue.dependencies.iter().find_map(|d| {
            let on = d.depends_on_id.as_str();
            let blocked = match d.kind.as_str() {
                "blocks" => self.is_active(on),
                "conditional-blocks" => self.get(on).is_some_and(|b| {
                    ACTIVE.contains(&b.status.as_str())
                        || (b.status == "closed" && !closed_by_failure(b))
                }),
                "waits-for" => {
                    let meta = metadata(&d.extra);
                    let spawner = meta
                        .as_ref()
                        .and_then(|m| m.get("spawner_id")?.as_str().map(str::to_string))
                        .unwrap_or_else(|| on.to_string());
                    let gate = meta
                        .as_ref()
                        .and_then(|m| m.get("gate")?.as_str().map(str::to_string));
                    let done = |c: &&str| {
                        self.get(c)
                            .is_some_and(|c| c.status == "closed" || c.is_tombstone())
                    };
                    let kids = self.children.get(spawner.as_str());
                    let kids = kids.map(Vec::as_slice).unwrap_or_default();
                    if gate.as_deref() == Some("any-children") {
                        !kids.iter().any(done)
                    } else {
                        kids.iter().any(|c| self.get(c).is_some() && !done(c))
                    }
                }
                _ => false,
            };
            blocked.then(|| Blocker {
                by: on.to_string(),
                how: match d.kind.as_str() {
                    "blocks" => "blocks",
                    "conditional-blocks" => "conditional-blocks",
                    _ => "waits-for",
                },
            })
        })
    }

    /// Every blocked issue and why: blocked directly, or a descendant of a
    /// blocked issue.
    pub fn blocked(&self) -> HashMap<&'a str, Blocker> {
        let mut out = HashMap::new();
        let mut queue = VecDeque::new();
        for i in &self.order {
            if let Some(b) = self.direct_blocker(i) {
                out.insert(i.id.as_str(), b);
                queue.push_back(i.id.as_str());
            }
        }
        while let Some(id) = queue.pop_front() {
            for &c in self.children.get(id).into_iter().flatten() {
                if !out.contains_key(c) {
                    out.insert(
                        c,
                        Blocker {
                            by: id.to_string(),
                            how: "parent",
                        },
                    );
                    queue.push_back(c);
                }
            }
        }
        out
    }
}

/// A dependency's `metadata`: beads stores a JSON object, sometimes as a string.
fn metadata(extra: &crate::record::Extra) -> Option<serde_json::Map<String, serde_json::Value>> {
    match extra.get("metadata")? {
        serde_json::Value::Object(m) => Some(m.clone()),
        serde_json::Value::String(s) => serde_json::from_str(s).ok(),
        _ => None,
    }
}

fn closed_by_failure(i: &Issue) -> bool {
    let reason = i.close_reason.as_deref().unwrap_or("").to_lowercase();
    FAILURE_WORDS.iter().any(|w| reason.contains(w))
}

/// Why `issue` can never be handed out, whatever its dependencies: not open,
/// pinned, ephemeral, an internal type, or deferred to a later time.
pub fn not_workable(issue: &Issue, now: Timestamp) -> Option<String> {
    if issue.status != "open" {
        return Some(format!("status {}", issue.status));
    }
    if issue.flag("pinned") {
        return Some("pinned".into());
    }
    if issue.flag("ephemeral") {
        return Some("ephemeral".into());
    }
    if INTERNAL_TYPES.contains(&issue.issue_type.as_str()) {
        return Some(format!("internal type {}", issue.issue_type));
    }
    if let Some(until) = issue.extra_str("defer_until")
        && crate::clock::parse(until).is_none_or(|t| t > now)
    {
        return Some(format!("deferred until {until}"));
    }
    None
}

/// The ready issues, best first: priority, then oldest, then id.
pub fn ready<'a>(issues: &'a [Issue], filter: &ReadyFilter, now: Timestamp) -> Vec<&'a Issue> {
    let g = Graph::new(issues);
    let blocked = g.blocked();
    let scope = filter.parent.as_deref().map(|p| g.descendants(p));
    let mut out: Vec<&Issue> = g
        .issues()
        .iter()
        .copied()
        .filter(|i| {
            not_workable(i, now).is_none()
                && !blocked.contains_key(i.id.as_str())
                && scope.as_ref().is_none_or(|s| s.contains(i.id.as_str()))
        })
        .collect();
    sort_best_first(&mut out);
    if let Some(n) = filter.limit {
        out.truncate(n);
    }
    out
}

/// Priority (0 first), then creation time (oldest first), then id.
pub fn sort_best_first(issues: &mut [&Issue]) {
    issues.sort_by_cached_key(|i| {
        (
            i.priority,
            crate::clock::parse(&i.created_at).unwrap_or(Timestamp::MAX),
            i.id.clone(),
        )
    });
}

/// An epic member that no wave reaches, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stuck {
    pub id: String,
    pub reason: String,
}

/// The order in which an epic's open descendants become workable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waves {
    pub epic: String,
    /// Members already being worked on; assumed to close with wave 1.
    pub in_progress: Vec<String>,
    /// `waves[0]` is ready now; `waves[k]` becomes ready once waves `0..k`
    /// close. Empty when nothing will ever be ready.
    pub waves: Vec<Vec<String>>,
    /// Members no wave reaches (blocked from outside the epic, a status like
    /// `deferred`, a `conditional-blocks` whose blocker succeeded, ...).
    pub stuck: Vec<Stuck>,
}

/// Simulate the epic: hand out what is ready, assume it closes (successfully),
/// repeat. A dependency cycle among what is left is an error naming it.
pub fn waves(issues: &[Issue], epic: &str, now: Timestamp) -> Result<Waves> {
    let g = Graph::new(issues);
    if g.get(epic).is_none_or(Issue::is_tombstone) {
        return Err(Error::not_found(format!("no issue {epic}")));
    }
    let members: HashSet<String> = g
        .descendants(epic)
        .into_iter()
        .filter_map(|id| g.get(id))
        .filter(|i| i.status != "closed" && !i.is_tombstone())
        .map(|i| i.id.clone())
        .collect();
    let mut in_progress: Vec<&Issue> = members
        .iter()
        .filter_map(|id| g.get(id))
        .filter(|i| i.status == "in_progress" || i.status == "hooked")
        .collect();
    sort_best_first(&mut in_progress);
    let in_progress: Vec<String> = in_progress.iter().map(|i| i.id.clone()).collect();

    let filter = ReadyFilter {
        parent: Some(epic.to_string()),
        limit: None,
    };
    let mut sim = issues.to_vec();
    let mut waves: Vec<Vec<String>> = Vec::new();
    loop {
        let wave: Vec<String> = ready(&sim, &filter, now)
            .into_iter()
            .map(|i| i.id.clone())
            .collect();
        let first = waves.is_empty();
        if wave.is_empty() && !first {
            break;
        }
        let closing: HashSet<&str> = wave
            .iter()
            .chain(in_progress.iter().filter(|_| first))
            .map(String::as_str)
            .collect();
        for i in sim.iter_mut().filter(|i| closing.contains(i.id.as_str())) {
            i.status = "closed".into();
            i.close_reason = None;
        }
        waves.push(wave);
    }
    if waves.iter().all(Vec::is_empty) {
        waves.clear();
    }

    let placed: HashSet<&str> = waves
        .iter()
        .flatten()
        .chain(&in_progress)
        .map(String::as_str)
        .collect();
    let g = Graph::new(&sim);
    let blocked = g.blocked();
    let mut left: Vec<&Issue> = members
        .iter()
        .filter(|id| !placed.contains(id.as_str()))
        .filter_map(|id| g.get(id))
        .collect();
    sort_best_first(&mut left);
    if let Some(cycle) = find_cycle(&g, &blocked, &left) {
        return Err(Error::invalid(format!(
            "dependency cycle in epic {epic}: {}",
            cycle.join(" -> ")
        )));
    }
    let stuck = left
        .iter()
        .map(|i| Stuck {
            id: i.id.clone(),
            reason: match (blocked.get(i.id.as_str()), not_workable(i, now)) {
                (_, Some(why)) => why,
                (Some(b), None) => format!("blocked by {b}"),
                (None, None) => "not reached".into(),
            },
        })
        .collect();
    Ok(Waves {
        epic: epic.to_string(),
        in_progress,
        waves,
        stuck,
    })
}

/// What `issue` waits on right now: open blockers, open children of a
/// `waits-for` spawner, and its parent when the parent is blocked.
fn waits_on<'a>(g: &Graph<'a>, blocked: &HashMap<&str, Blocker>, issue: &'a Issue) -> Vec<&'a str> {
    let open = |id: &str| {
        g.get(id)
            .is_some_and(|i| ACTIVE.contains(&i.status.as_str()))
    };
    let mut out = Vec::new();
    for d in &issue.dependencies {
        let on = d.depends_on_id.as_str();
        match d.kind.as_str() {
            "blocks" | "conditional-blocks" if open(on) => out.push(on),
            "parent-child" if blocked.contains_key(on) => out.push(on),
            "waits-for" => {
                let spawner = metadata(&d.extra)
                    .and_then(|m| m.get("spawner_id")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| on.to_string());
                if let Some(kids) = g.children.get(spawner.as_str()) {
                    out.extend(kids.iter().copied().filter(|&c| open(c)));
                }
            }
            _ => {}
        }
    }
    out
}

/// A cycle of waiting reachable from `from`, as ids with the first repeated at
/// the end (`a -> b -> a`).
fn find_cycle(g: &Graph, blocked: &HashMap<&str, Blocker>, from: &[&Issue]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    for start in from {
        if marks.contains_key(start.id.as_str()) {
            continue;
        }
        // Iterative depth-first search: (node, its successors, next index).
        let mut path: Vec<(&str, Vec<&str>, usize)> =
            vec![(&start.id, waits_on(g, blocked, start), 0)];
        marks.insert(&start.id, Mark::OnPath);
        while let Some((node, next, idx)) = path.last_mut() {
            let Some(&succ) = next.get(*idx) else {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            };
            *idx += 1;
            match marks.get(succ) {
                Some(Mark::OnPath) => {
                    let at = path.iter().position(|(n, _, _)| *n == succ)?;
                    let mut cycle: Vec<String> =
                        path[at..].iter().map(|(n, _, _)| n.to_string()).collect();
                    cycle.push(succ.to_string());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    let issue = g.get(succ)?;
                    marks.insert(succ, Mark::OnPath);
                    path.push((succ, waits_on(g, blocked, issue), 0));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! The table of cases in protocol/beads.md, row by row.

    use super::*;
    use serde_json::json;

    fn issue(id: &str, extra: serde_json::Value) -> Issue {
        let mut v = json!({"id": id, "title": id, "status": "open", "priority": 2,
            "issue_type": "task", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn dep(kind: &str, on: &str) -> serde_json::Value {
        json!({"depends_on_id": on, "type": kind})
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    /// Whether `id` is ready among `issues`.
    fn is_ready(issues: &[Issue], id: &str) -> bool {
        ready(issues, &ReadyFilter::default(), now())
            .iter()
            .any(|i| i.id == id)
    }

    #[test]
    fn case_1_to_6_the_issue_itself() {
        let mut all = vec![issue("t", json!({}))];
        for s in [
            "in_progress",
            "hooked",
            "blocked",
            "deferred",
            "closed",
            "tombstone",
        ] {
            all.push(issue(s, json!({"status": s})));
        }
        all.push(issue("pinned", json!({"pinned": true})));
        all.push(issue("eph", json!({"ephemeral": true})));
        for t in INTERNAL_TYPES {
            all.push(issue(&format!("type-{t}"), json!({"issue_type": t})));
        }
        for t in ["epic", "bug", "feature", "chore"] {
            all.push(issue(&format!("type-{t}"), json!({"issue_type": t})));
        }
        all.push(issue(
            "later",
            json!({"defer_until": "2026-07-01T00:00:00Z"}),
        ));
        all.push(issue(
            "earlier",
            json!({"defer_until": "2026-05-01T00:00:00Z"}),
        ));
        all.push(issue("garbled", json!({"defer_until": "soon"})));
        let got: Vec<&str> = ready(&all, &ReadyFilter::default(), now())
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        // Equal priority and age: by id.
        assert_eq!(
            got,
            [
                "earlier",
                "t",
                "type-bug",
                "type-chore",
                "type-epic",
                "type-feature"
            ]
        );
    }

    #[test]
    fn case_7_and_8_blocks() {
        let mut all = vec![];
        for s in [
            "open",
            "in_progress",
            "hooked",
            "blocked",
            "deferred",
            "closed",
            "tombstone",
        ] {
            all.push(issue(&format!("target-{s}"), json!({"status": s})));
            all.push(issue(
                &format!("on-{s}"),
                json!({"dependencies": [dep("blocks", &format!("target-{s}"))]}),
            ));
        }
        all.push(issue(
            "on-missing",
            json!({"dependencies": [dep("blocks", "nowhere-1")]}),
        ));
        all.push(issue(
            "on-external",
            json!({"dependencies": [dep("blocks", "external:other:cap")]}),
        ));
        for (id, want) in [
            ("on-open", false),
            ("on-in_progress", false),
            ("on-hooked", false),
            ("on-blocked", false),
            ("on-deferred", false),
            ("on-closed", true),
            ("on-tombstone", true),
            ("on-missing", true),
            ("on-external", true),
        ] {
            assert_eq!(is_ready(&all, id), want, "{id}");
        }
    }

    #[test]
    fn case_9_and_10_parents() {
        let all = vec![
            issue("epic", json!({"issue_type": "epic"})),
            issue(
                "kid",
                json!({"dependencies": [dep("parent-child", "epic")]}),
            ),
            issue("x", json!({})),
            issue(
                "stuck",
                json!({"issue_type": "epic", "dependencies": [dep("blocks", "x")]}),
            ),
            issue(
                "kid2",
                json!({"dependencies": [dep("parent-child", "stuck")]}),
            ),
            issue(
                "grandkid",
                json!({"dependencies": [dep("parent-child", "kid2")]}),
            ),
            issue("done", json!({"status": "closed"})),
            issue(
                "kid3",
                json!({"dependencies": [dep("parent-child", "done")]}),
            ),
        ];
        assert!(is_ready(&all, "kid"));
        assert!(!is_ready(&all, "kid2"));
        assert!(!is_ready(&all, "grandkid"));
        assert!(is_ready(&all, "kid3"), "a closed parent blocks nothing");
        let g = Graph::new(&all);
        assert_eq!(
            g.blocked().get("grandkid"),
            Some(&Blocker {
                by: "kid2".into(),
                how: "parent"
            })
        );
        let under = ready(
            &all,
            &ReadyFilter {
                parent: Some("epic".into()),
                limit: None,
            },
            now(),
        );
        assert_eq!(
            under.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["kid"]
        );
    }

    #[test]
    fn case_11_conditional_blocks() {
        let all = vec![
            issue("a-open", json!({})),
            issue(
                "a-ok",
                json!({"status": "closed", "close_reason": "merged"}),
            ),
            issue(
                "a-failed",
                json!({"status": "closed", "close_reason": "Failed: tests"}),
            ),
            issue(
                "b1",
                json!({"dependencies": [dep("conditional-blocks", "a-open")]}),
            ),
            issue(
                "b2",
                json!({"dependencies": [dep("conditional-blocks", "a-ok")]}),
            ),
            issue(
                "b3",
                json!({"dependencies": [dep("conditional-blocks", "a-failed")]}),
            ),
        ];
        assert!(!is_ready(&all, "b1"));
        assert!(!is_ready(&all, "b2"));
        assert!(is_ready(&all, "b3"));
    }

    #[test]
    fn case_12_and_13_waits_for() {
        let kid = |id: &str, of: &str, status: &str| {
            issue(
                id,
                json!({"status": status, "dependencies": [dep("parent-child", of)]}),
            )
        };
        let waits = |id: &str, on: &str, meta: serde_json::Value| {
            issue(
                id,
                json!({"dependencies": [{"depends_on_id": on, "type": "waits-for", "metadata": meta.to_string()}]}),
            )
        };
        let all = vec![
            issue("s1", json!({})),
            kid("s1.1", "s1", "open"),
            kid("s1.2", "s1", "closed"),
            issue("s2", json!({})),
            kid("s2.1", "s2", "closed"),
            waits("w-all-open", "s1", json!({})),
            waits("w-all-closed", "s2", json!({})),
            waits(
                "w-any-none",
                "x",
                json!({"gate": "any-children", "spawner_id": "s3"}),
            ),
            issue("s3", json!({})),
            kid("s3.1", "s3", "open"),
            waits("w-any-one", "s1", json!({"gate": "any-children"})),
        ];
        assert!(!is_ready(&all, "w-all-open"));
        assert!(is_ready(&all, "w-all-closed"));
        assert!(!is_ready(&all, "w-any-none"));
        assert!(is_ready(&all, "w-any-one"));
    }

    #[test]
    fn case_14_and_15_edges_that_do_not_block() {
        let all = vec![
            issue("x", json!({})),
            issue(
                "rel",
                json!({"dependencies": [dep("related", "x"), dep("discovered-from", "x")]}),
            ),
            issue("a", json!({"dependencies": [dep("parent-child", "b")]})),
            issue("b", json!({"dependencies": [dep("parent-child", "a")]})),
        ];
        assert!(is_ready(&all, "rel"));
        assert!(is_ready(&all, "a") && is_ready(&all, "b"));
        assert_eq!(Graph::new(&all).descendants("a").len(), 1);
    }

    #[test]
    fn ready_is_sorted_by_priority_then_age() {
        let all = vec![
            issue(
                "late-p1",
                json!({"priority": 1, "created_at": "2026-03-01T00:00:00Z"}),
            ),
            issue("p3", json!({"priority": 3})),
            issue(
                "early-p1",
                json!({"priority": 1, "created_at": "2025-12-31T16:00:00-08:00"}),
            ),
            issue("p0", json!({"priority": 0})),
        ];
        let got: Vec<&str> = ready(&all, &ReadyFilter::default(), now())
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(got, ["p0", "early-p1", "late-p1", "p3"]);
    }

    #[test]
    fn waves_report_stuck_members_and_cycles_through_parents() {
        let kid = |id: &str, deps: serde_json::Value| {
            let mut d = vec![dep("parent-child", "e")];
            d.extend(deps.as_array().unwrap().iter().cloned());
            issue(id, json!({"dependencies": d}))
        };
        let outside = issue("out", json!({}));
        let all = vec![
            issue("e", json!({"issue_type": "epic"})),
            kid("a", json!([])),
            kid("b", json!([dep("blocks", "out")])),
            kid("c", json!([dep("blocks", "b")])),
            outside,
            kid("d", json!([])),
        ];
        let mut all = all;
        all[5].status = "deferred".into();
        let w = waves(&all, "e", now()).unwrap();
        assert_eq!(w.waves, [vec!["a".to_string()]]);
        assert_eq!(
            w.stuck,
            [
                Stuck {
                    id: "b".into(),
                    reason: "blocked by out (blocks)".into()
                },
                Stuck {
                    id: "c".into(),
                    reason: "blocked by b (blocks)".into()
                },
                Stuck {
                    id: "d".into(),
                    reason: "status deferred".into()
                },
            ]
        );

        // The epic waits on its own child: every child is blocked through it.
        let all = vec![
            issue(
                "e",
                json!({"issue_type": "epic", "dependencies": [dep("blocks", "a")]}),
            ),
            kid("a", json!([])),
        ];
        let err = waves(&all, "e", now()).unwrap_err();
        assert_eq!(err.message(), "dependency cycle in epic e: a -> e -> a");
        assert!(waves(&all, "nope", now()).is_err());
    }
}
