//! Hook points (protocol/plugins.md): an agent mails a plugin a request and
//! waits, bounded, for its verdict. A plugin is a directory; with none, a
//! silent one or an unreadable reply, the hook point's default stands.
//!
//! One exchange for every hook: [`ask`] mails the request, then the asker
//! either waits ([`Asked::wait`], the Refinery and the Witness's stuck
//! worker) or, when it must not block its loop, looks again on each pass
//! ([`Asked::poll`], the Witness's dispatch of an epic).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::address::{Address, Role};
use crate::error::Result;
use crate::fsio::{self, Cursor, Durability, Entry, Records};
use crate::home::Home;
use crate::mail::{self, Message, reader::Reader};
use crate::record::{Extra, PluginChoice, PluginsConfig};
use crate::rig::Rig;
use crate::town::Town;
use crate::watch::{Flow, Watch};

/// Longest wait for a verdict when `plugins.timeout` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a held entry stays unasked when `plugins.hold_retry` is unset.
pub const DEFAULT_HOLD_RETRY: Duration = Duration::from_secs(60);

/// Where an agent consults a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// The Refinery, before processing a queue entry.
    BeforeMerge,
    /// The Refinery, when an entry is merged and tested, before it is pushed.
    OnReady,
    /// The Witness, before it escalates a stuck worker.
    OnStuck,
    /// The Witness, before it dispatches an epic's children.
    BeforeDispatch,
}

impl Hook {
    /// The key in `config.json`'s `plugins`, and the request's `hook` field.
    pub fn key(self) -> &'static str {
        match self {
            Hook::BeforeMerge => "before_merge",
            Hook::OnReady => "on_ready",
            Hook::OnStuck => "on_stuck",
            Hook::BeforeDispatch => "before_dispatch",
        }
    }
    /// The plugin consulted when the config names none.
    pub fn conventional(self) -> &'static str {
        match self {
            Hook::BeforeMerge => "merge-oracle",
            Hook::OnReady => "review-oracle",
            Hook::OnStuck => "debug-oracle",
            Hook::BeforeDispatch => "plan-oracle",
        }
    }
    /// The verdicts a plugin may give; the first is the default.
    pub fn verdicts(self) -> &'static [&'static str] {
        match self {
            Hook::BeforeMerge => &["proceed", "hold", "escalate"],
            Hook::OnReady => &["approve", "reject"],
            Hook::OnStuck => &["escalate"],
            Hook::BeforeDispatch => &["planned"],
        }
    }
    fn choice(self, config: &PluginsConfig) -> Option<&PluginChoice> {
        match self {
            Hook::BeforeMerge => config.before_merge.as_ref(),
            Hook::OnReady => config.on_ready.as_ref(),
            Hook::OnStuck => config.on_stuck.as_ref(),
            Hook::BeforeDispatch => config.before_dispatch.as_ref(),
        }
    }
}

/// What a consultation decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// One of the hook's verdicts.
    pub verdict: String,
    pub reason: String,
    /// The plugin's address.
    pub by: String,
    /// The request's message id.
    pub request: String,
    /// Set when the default stood: why (silent, unreadable reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaulted: Option<String>,
}

/// The plugin `hook` consults in `rig`, if it exists and is not configured off.
pub fn plugin_for(town: &Town, rig: &Rig, config: &PluginsConfig, hook: Hook) -> Option<Home> {
    let name = match hook.choice(config) {
        Some(PluginChoice::On(false)) => return None,
        Some(PluginChoice::Name(n)) => n.as_str(),
        None | Some(PluginChoice::On(true)) => hook.conventional(),
    };
    let addr = Address::named(Role::Plugin, &rig.name, name).ok()?;
    town.home(&addr).ok()
}

/// What an agent asks a plugin at a hook point.
pub struct Request {
    pub hook: Hook,
    pub subject: String,
    pub body: String,
    /// Added to the request message (the entry, the queue, ...).
    pub fields: Extra,
}

/// A request mailed and not yet answered: all a caller that does not wait
/// keeps between passes (the Witness, in its `state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    pub hook: Hook,
    /// The request's message id.
    pub request: String,
    /// The plugin's address.
    pub by: String,
    /// When the request went out (RFC 3339).
    pub at: String,
    /// The asker's inbox size then: only replies after it are read.
    pub offset: u64,
}

/// Mail `plugin` `req` from `asker`; its verdict will come to `asker`'s inbox.
pub fn ask(town: &Town, asker: &Home, plugin: &Home, req: Request) -> Result<Asked> {
    let Request {
        hook,
        subject,
        body,
        fields,
    } = req;
    fsio::ensure_dir(&asker.mail_dir())?;
    let offset = crate::confine::metadata(&asker.inbox())
        .map(|m| std::os::unix::fs::MetadataExt::size(&m))
        .unwrap_or(0);
    let mut m = Message::new(&asker.address, &plugin.address.to_string(), &subject, &body);
    m.kind = "consult".to_string();
    m.extra = fields;
    m.extra.insert("hook".into(), hook.key().into());
    m.extra.insert(
        "verdicts".into(),
        hook.verdicts()
            .iter()
            .map(|v| serde_json::Value::from(*v))
            .collect(),
    );
    let asked = Asked {
        hook,
        request: m.id.clone(),
        by: plugin.address.to_string(),
        at: m.timestamp.clone(),
        offset,
    };
    mail::post(town, &mut [m], Durability::from_env())?;
    Ok(asked)
}

/// Mail `plugin` `req` from `asker` and wait up to `timeout` for its verdict
/// in `asker`'s inbox. Silence or an unreadable reply gives the hook's
/// default verdict.
pub fn consult(
    town: &Town,
    asker: &Home,
    plugin: &Home,
    req: Request,
    timeout: Duration,
) -> Result<Verdict> {
    ask(town, asker, plugin, req)?.wait(asker, timeout)
}

impl Asked {
    /// The hook's default verdict, standing because of `why`.
    pub fn default_verdict(&self, why: String) -> Verdict {
        Verdict {
            verdict: self.hook.verdicts()[0].to_string(),
            reason: why.clone(),
            by: self.by.clone(),
            request: self.request.clone(),
            defaulted: Some(why),
        }
    }

    fn silent(&self, timeout: Duration) -> Verdict {
        self.default_verdict(format!(
            "{} gave no verdict within {}s",
            self.by,
            timeout.as_secs_f64()
        ))
    }

    /// Wait up to `timeout` for the reply in `asker`'s inbox.
    pub fn wait(&self, asker: &Home, timeout: Duration) -> Result<Verdict> {
        let deadline = Instant::now() + timeout;
        let mut cursor = Cursor {
            offset: self.offset,
            line: 0,
        };
        let mut answer = None;
        let mut watch = Watch::new(&[&asker.mail_dir()], timeout)?;
        watch.run(|_| {
            answer = self.scan(asker, &mut cursor)?;
            Ok(if answer.is_some() || Instant::now() >= deadline {
                Flow::Stop
            } else {
                Flow::Continue
            })
        })?;
        Ok(answer.unwrap_or_else(|| self.silent(timeout)))
    }

    /// Look once, without waiting: the verdict if the reply is there, the
    /// default once `timeout` has passed since the request, else `None`.
    pub fn poll(&self, asker: &Home, timeout: Duration) -> Result<Option<Verdict>> {
        let mut cursor = Cursor {
            offset: self.offset,
            line: 0,
        };
        if let Some(v) = self.scan(asker, &mut cursor)? {
            return Ok(Some(v));
        }
        let since = crate::clock::parse(&self.at)
            .map(|t| crate::clock::now().duration_since(t))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::MAX);
        Ok((since >= timeout).then(|| self.silent(timeout)))
    }

    /// Read `asker`'s inbox from `cursor` for the reply; an inbox archived
    /// and begun anew meanwhile is read from its start.
    fn scan(&self, asker: &Home, cursor: &mut Cursor) -> Result<Option<Verdict>> {
        let inbox = asker.inbox();
        let mut records = Records::<Message>::open(&inbox, *cursor)?;
        if records.truncated() {
            records = Records::open(&inbox, Cursor::default())?;
        }
        while let Some(e) = records.next_entry()? {
            if let Entry::Record { value, .. } = e
                && value.reply_to.as_deref() == Some(self.request.as_str())
                && value.from == self.by
            {
                let mut v =
                    read_reply(self.hook, &value).unwrap_or_else(|why| self.default_verdict(why));
                v.request = self.request.clone();
                // Consumed: it no longer counts as the asker's unread mail.
                if let Err(e) = Reader::owner(asker).mark(&[&value.id], "read") {
                    tracing::warn!("{}: not marked read: {e}", value.id);
                }
                return Ok(Some(v));
            }
        }
        *cursor = records.cursor();
        Ok(None)
    }
}

/// The verdict in reply `m`, or why it is unreadable.
fn read_reply(hook: Hook, m: &Message) -> std::result::Result<Verdict, String> {
    let junk = |why: &str| format!("{}: unreadable verdict from {} ({why})", m.id, m.from);
    if m.kind != "verdict" {
        return Err(junk(&format!("type is {:?}, not \"verdict\"", m.kind)));
    }
    let verdict = m
        .extra
        .get("verdict")
        .and_then(|v| v.as_str())
        .ok_or_else(|| junk("no \"verdict\" string"))?;
    if !hook.verdicts().contains(&verdict) {
        return Err(junk(&format!(
            "{verdict:?} is not one of {}",
            hook.verdicts().join(", ")
        )));
    }
    Ok(Verdict {
        verdict: verdict.to_string(),
        reason: m
            .extra
            .get("reason")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        by: m.from.clone(),
        request: String::new(),
        defaulted: None,
    })
}

/// The Witness's `on_stuck` hook: ask the rig's debug-oracle about `worker`,
/// stuck for `evidence`, and wait (bounded). Returns the text added to the
/// escalation: empty with no plugin, else its reason or why it gave none.
/// Never fails: the escalation goes out whatever the plugin does.
pub fn on_stuck(town: &Town, witness: &Home, worker: &Home, evidence: &str) -> String {
    let asked = (|| -> Result<Option<Verdict>> {
        let Some(rig) = worker.address.rig() else {
            return Ok(None);
        };
        let rig = town.rig(rig)?;
        let plugins = rig.config()?.plugins;
        let Some(oracle) = plugin_for(town, &rig, &plugins, Hook::OnStuck) else {
            return Ok(None);
        };
        let state = worker.state()?;
        let mut fields = Extra::new();
        fields.insert("worker".into(), worker.address.to_string().into());
        fields.insert("evidence".into(), evidence.into());
        fields.insert(
            "clone".into(),
            worker.clone_dir().to_string_lossy().into_owned().into(),
        );
        fields.insert(
            "worker_state".into(),
            serde_json::to_value(&state).unwrap_or_default(),
        );
        let req = Request {
            hook: Hook::OnStuck,
            subject: format!("stuck: {}", worker.address),
            body: format!(
                "{} is stuck ({}); {} escalates it to the Mayor with your diagnosis (protocol/plugins.md).",
                worker.address,
                evidence.lines().next().unwrap_or_default(),
                witness.address
            ),
            fields,
        };
        consult(town, witness, &oracle, req, plugins.timeout(Hook::OnStuck)).map(Some)
    })();
    match asked {
        Ok(None) => String::new(),
        Ok(Some(v)) => match &v.defaulted {
            Some(why) => format!("\n\nNo diagnosis: {why}"),
            None => format!("\n\n{} says: {}", v.by, v.reason),
        },
        Err(e) => format!("\n\nThe debug oracle was not asked: {e}"),
    }
}

/// The `plans` record of the Witness's `state.json`: an epic's
/// `before_dispatch` request, and its verdict once there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(flatten)]
    pub asked: Asked,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// The Witness's `before_dispatch` hook, one look per patrol (the patrol
/// never waits): whether `epic`'s children may be dispatched now, and what
/// was done. The first patrol asks the plan-oracle and records the request;
/// later ones read its reply, or the default once the timeout has passed.
pub fn before_dispatch(
    town: &Town,
    rig: &Rig,
    witness: &Home,
    epic: &str,
) -> Result<(bool, Option<crate::event::Action>)> {
    use crate::event::act;
    let plugins = rig.config()?.plugins;
    let Some(oracle) = plugin_for(town, rig, &plugins, Hook::BeforeDispatch) else {
        return Ok((true, None));
    };
    let timeout = plugins.timeout(Hook::BeforeDispatch);
    let Some(plan) = witness.state()?.plans.get(epic).cloned() else {
        let issues = crate::beads::open(rig)?.all()?;
        let children: Vec<serde_json::Value> = issues
            .iter()
            .filter(|i| i.parent() == Some(epic))
            .map(|i| serde_json::json!({"id": i.id, "title": i.title, "status": i.status}))
            .collect();
        let mut fields = Extra::new();
        fields.insert("epic".into(), epic.into());
        fields.insert("children".into(), children.into());
        let req = Request {
            hook: Hook::BeforeDispatch,
            subject: format!("before dispatch: {epic}"),
            body: format!(
                "{} dispatches the ready children of {epic} once you reply planned. File children with `gt issue --rig {r} create <title> --parent {epic}` and dependencies with `gt issue --rig {r} dep add <id> <on>` first (protocol/plugins.md).",
                witness.address,
                r = rig.name
            ),
            fields,
        };
        // Asked under the state's lock: a patrol run by hand beside the
        // Witness's loop does not ask twice.
        let asked = witness.update_state(|s| {
            if s.plans.contains_key(epic) {
                return Ok(None);
            }
            let asked = ask(town, witness, &oracle, req)?;
            let plan = Plan {
                asked: asked.clone(),
                verdict: None,
            };
            s.plans.insert(epic.to_string(), plan);
            Ok(Some(asked))
        });
        let asked = match asked {
            Ok(Some(a)) => a,
            Ok(None) => return Ok((false, None)),
            // An unreachable plugin must not stop the patrol, nor the epic.
            Err(e) => {
                let why = format!("could not ask {}: {e}; dispatching", oracle.address);
                return Ok((true, Some(act(epic, "error", why))));
            }
        };
        let detail = format!(
            "asked {} ({}); dispatch waits for its planned reply, at most {}s",
            asked.by,
            asked.request,
            timeout.as_secs_f64()
        );
        return Ok((false, Some(act(epic, "plan-asked", detail))));
    };
    if plan.verdict.is_some() {
        return Ok((true, None));
    }
    let Some(v) = plan.asked.poll(witness, timeout)? else {
        return Ok((false, None));
    };
    let detail = match &v.defaulted {
        Some(why) => format!("{why}; dispatching"),
        None => format!("{} by {}: {}", v.verdict, v.by, v.reason),
    };
    witness.update_state(|s| {
        if let Some(p) = s.plans.get_mut(epic) {
            p.verdict = Some(v);
        }
        Ok(())
    })?;
    Ok((true, Some(act(epic, "planned", detail))))
}
