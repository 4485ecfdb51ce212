//! Hook points (protocol/plugins.md): an agent mails a plugin a request and
//! waits, bounded, for its verdict. A plugin is a directory; with none, a
//! silent one or an unreadable reply, the hook point's default stands.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::address::{Address, Role};
use crate::error::Result;
use crate::fsio::{self, Cursor, Durability, Entry, Records};
use crate::home::Home;
use crate::mail::{self, Message};
use crate::record::{Extra, PluginChoice, PluginsConfig};
use crate::rig::Rig;
use crate::town::Town;
use crate::watch::{Flow, Watch};

/// Longest wait for a verdict when `plugins.timeout` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a held entry stays unasked when `plugins.hold_retry` is unset.
pub const DEFAULT_HOLD_RETRY: Duration = Duration::from_secs(60);

/// Where an agent consults a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// The Refinery, before processing a queue entry.
    BeforeMerge,
}

impl Hook {
    /// The key in `config.json`'s `plugins`, and the request's `hook` field.
    pub fn key(self) -> &'static str {
        match self {
            Hook::BeforeMerge => "before_merge",
        }
    }
    /// The plugin consulted when the config names none.
    pub fn conventional(self) -> &'static str {
        match self {
            Hook::BeforeMerge => "merge-oracle",
        }
    }
    /// The verdicts a plugin may give; the first is the default.
    pub fn verdicts(self) -> &'static [&'static str] {
        match self {
            Hook::BeforeMerge => &["proceed", "hold", "escalate"],
        }
    }
    fn choice(self, config: &PluginsConfig) -> Option<&PluginChoice> {
        match self {
            Hook::BeforeMerge => config.before_merge.as_ref(),
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
    let Request {
        hook,
        subject,
        body,
        fields,
    } = req;
    let inbox = asker.inbox();
    fsio::ensure_dir(&asker.mail_dir())?;
    // Only replies after the request count: start reading at today's end.
    let start = match crate::confine::metadata(&inbox) {
        Ok(m) => Cursor {
            offset: std::os::unix::fs::MetadataExt::size(&m),
            line: 0,
        },
        Err(_) => Cursor::default(),
    };
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
    let request = m.id.clone();
    mail::post(town, &mut [m], Durability::from_env())?;
    let by = plugin.address.to_string();
    let default = |why: String| Verdict {
        verdict: hook.verdicts()[0].to_string(),
        reason: why.clone(),
        by: by.clone(),
        request: request.clone(),
        defaulted: Some(why),
    };
    let deadline = Instant::now() + timeout;
    let mut cursor = start;
    let mut answer = None;
    let mut watch = Watch::new(&[&asker.mail_dir()], timeout)?;
    watch.run(|_| {
        let mut records = Records::<Message>::open(&inbox, cursor)?;
        while let Some(e) = records.next_entry()? {
            if let Entry::Record { value, .. } = e
                && value.reply_to.as_deref() == Some(request.as_str())
                && value.from == by
            {
                answer = Some(read_reply(hook, &value).unwrap_or_else(&default));
                let v = answer.as_mut().expect("just set");
                v.request = request.clone();
                return Ok(Flow::Stop);
            }
        }
        cursor = records.cursor();
        Ok(if Instant::now() >= deadline {
            Flow::Stop
        } else {
            Flow::Continue
        })
    })?;
    Ok(answer.unwrap_or_else(|| {
        default(format!(
            "{by} gave no verdict within {}s",
            timeout.as_secs_f64()
        ))
    }))
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
