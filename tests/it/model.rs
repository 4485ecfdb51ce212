//! The scripted model server: the AI model's test double. A real agent
//! runtime (Claude Code) is pointed at it with `ANTHROPIC_BASE_URL`; it answers
//! the Messages API from a script of turns and records every request so a
//! test can assert what the agent sent. std::net only, bound to 127.0.0.1,
//! every read and wait bounded.
//!
//! What it answers (protocol/agents.md, "HTTP requests Claude Code makes"):
//! `HEAD`/`GET` anything: 200 `{}`; `POST /v1/messages/count_tokens`: a count;
//! `POST /v1/messages` without `tools` (a side request, e.g. the session
//! title): `{"title":"scripted"}`; `POST /v1/messages` with `tools` (a turn):
//! the script's next turn, streamed as SSE when `stream` is true, else one
//! JSON message. When the script is used up a turn gets the text `(no more
//! scripted turns)`.
//!
//! It answers the OpenAI Responses API too, for Codex (protocol/agents.md,
//! "HTTP requests Codex makes"): `POST /v1/responses` with `tools` is a turn,
//! without (the title) a side request; both streamed as Responses SSE. A
//! `Bash` tool block is Codex's `exec_command` function call.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a connection may sit idle before the server drops it, and the
/// longest a test waits for a request.
const IO_WAIT: Duration = Duration::from_secs(60);

/// One block of a scripted answer.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    /// A `tool_use` block: the runtime runs tool `name` with `input`. The
    /// server gives it its `id`, unique in the conversation (given an id seen
    /// earlier in the conversation, Claude Code sent the same request again).
    Tool {
        id: String,
        name: String,
        input: Value,
    },
}

/// One scripted answer to a turn request.
#[derive(Debug, Clone)]
pub struct Turn {
    pub blocks: Vec<Block>,
    /// Held this long after `message_start` before the rest is sent: a slow turn.
    pub delay: Duration,
}

impl Turn {
    pub fn text(text: &str) -> Turn {
        Turn {
            blocks: vec![Block::Text(text.to_string())],
            delay: Duration::ZERO,
        }
    }

    /// A Bash tool call running `command`.
    pub fn bash(command: &str) -> Turn {
        Turn {
            blocks: vec![Block::Tool {
                id: String::new(),
                name: "Bash".into(),
                input: json!({"command": command, "description": "scripted"}),
            }],
            delay: Duration::ZERO,
        }
    }

    /// The same turn, answered only after `delay`.
    pub fn slow(mut self, delay: Duration) -> Turn {
        self.delay = delay;
        self
    }

    /// The same turn, held open until the test calls [`Model::release`]
    /// (at most two minutes): a turn that lasts exactly as long as the test
    /// needs it to, however slow the machine.
    pub fn held(self) -> Turn {
        self.slow(HELD)
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
    /// When it arrived (its head was read).
    pub at: std::time::SystemTime,
}

impl Request {
    /// A model call that is a turn of the agent (it offers tools), not a side request.
    pub fn is_turn(&self) -> bool {
        self.method == "POST"
            && (self.path.starts_with("/v1/messages") || self.is_responses())
            && !self.path.contains("count_tokens")
            && self.body["tools"].as_array().is_some_and(|t| !t.is_empty())
    }

    /// A Responses-API call (Codex).
    pub fn is_responses(&self) -> bool {
        self.method == "POST" && self.path.starts_with("/v1/responses")
    }

    /// Every text of the request's messages, in order: text blocks, string
    /// contents (Claude sends a line typed during a tool call as a `system`
    /// message) and tool results.
    pub fn texts(&self) -> Vec<String> {
        if self.is_responses() {
            return responses_texts(&self.body);
        }
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            match &m["content"] {
                Value::String(s) => out.push(s.clone()),
                Value::Array(blocks) => {
                    for b in blocks {
                        match b["type"].as_str() {
                            Some("text") => out.extend(b["text"].as_str().map(str::to_string)),
                            Some("tool_result") => out.push(b["content"].to_string()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// How many of the request's message texts contain `needle`.
    pub fn mentions(&self, needle: &str) -> usize {
        self.texts().iter().filter(|t| t.contains(needle)).count()
    }

    /// `needle` is in exactly one of the texts (else a panic showing the
    /// last texts: the first are the runtime's own long instructions).
    pub fn assert_once(&self, needle: &str) {
        let texts = self.texts();
        let last = &texts[texts.len().saturating_sub(3)..];
        assert_eq!(self.mentions(needle), 1, "{needle:?} in ...{last:?}");
    }
}

/// The script of a polecat that works through gt: `gt prime`, then commit
/// `frob.rs` and `gt done`, then a last word.
pub fn to_done() -> Vec<Turn> {
    vec![
        Turn::bash("gt prime"),
        Turn::bash(
            "echo 'fn frob() {}' > frob.rs && git add -A && git commit -qm 'frob once' && gt done",
        ),
        Turn::text("Done: reported to my Witness."),
    ]
}

/// The script of a polecat that cycles: generation 1 runs `gt prime`, hands
/// off with `--cycle` and sits at its prompt (a TUI does not exit);
/// generation 2 runs `gt prime`, then a last word.
pub fn to_handoff() -> Vec<Turn> {
    vec![
        Turn::bash("gt prime"),
        Turn::bash("gt mail handoff --cycle -s 'frob half done' -m 'NOTE-MARKER: frob.rs is next'"),
        Turn::text("Handed off; my next session takes over."),
        Turn::bash("gt prime"),
        Turn::text("Resuming from the handoff."),
    ]
}

#[derive(Default)]
struct State {
    script: VecDeque<Turn>,
    requests: Vec<Request>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    /// Set by [`Model::release`]: a held turn's answer goes out.
    released: AtomicBool,
}

/// How long a [`Turn::held`] turn waits for its release, at most.
const HELD: Duration = Duration::from_secs(120);

/// A running scripted model server; stopped when dropped.
pub struct Model {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl Model {
    /// Start a server on an ephemeral port of 127.0.0.1 with `script`.
    pub fn start(script: Vec<Turn>) -> Model {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script: script.into(),
                requests: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            released: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Model { addr, shared }
    }

    /// `http://127.0.0.1:<port>`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Let a held turn ([`Turn::held`]) answer now.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// Add turns to the end of the script.
    pub fn push(&self, turn: Turn) {
        self.shared.state.lock().unwrap().script.push_back(turn);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// The turn requests so far.
    pub fn turns(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_turn)
            .collect()
    }

    /// Wait (at most `timeout`) for the `n`th turn request (1-based).
    pub fn try_wait_turn(&self, n: usize, timeout: Duration) -> Option<Request> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some(r) = st.requests.iter().filter(|r| r.is_turn()).nth(n - 1) {
                return Some(r.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// [`Model::try_wait_turn`], panicking with the requests seen when it does not come.
    pub fn wait_turn(&self, n: usize, timeout: Duration) -> Request {
        self.try_wait_turn(n, timeout).unwrap_or_else(|| {
            panic!(
                "scripted model: turn request {n} did not arrive within {timeout:?}; requests: {}",
                self.seen()
            )
        })
    }

    /// `METHOD path` of every request so far, for a failure message.
    pub fn seen(&self) -> String {
        let seen: Vec<String> = self
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        seen.join(", ")
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Serve one connection: requests in turn (keep-alive) until it closes.
fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_WAIT))?;
    conn.set_write_timeout(Some(IO_WAIT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        let turn = {
            let mut st = shared.state.lock().unwrap();
            st.requests.push(req.clone());
            shared.changed.notify_all();
            if req.is_turn() {
                let n = st.requests.iter().filter(|r| r.is_turn()).count();
                let mut turn = st
                    .script
                    .pop_front()
                    .unwrap_or_else(|| Turn::text("(no more scripted turns)"));
                for (i, b) in turn.blocks.iter_mut().enumerate() {
                    if let Block::Tool { id, .. } = b {
                        *id = format!("toolu_scripted_{n}_{i}");
                    }
                }
                Some(turn)
            } else {
                None
            }
        };
        if req.is_responses() {
            let turn = turn.unwrap_or_else(|| Turn::text(r#"{"title":"scripted"}"#));
            send_responses_sse(&mut out, &turn, shared)?;
            return Ok(());
        }
        let stream = req.body["stream"].as_bool() == Some(true);
        match turn {
            Some(turn) if stream => {
                send_sse(&mut out, &req, &turn, shared)?;
                return Ok(()); // SSE answers end the connection
            }
            Some(turn) => {
                std::thread::sleep(turn.delay);
                let msg = message(&req, &turn.blocks, true);
                send_json(&mut out, &msg)?;
            }
            None => send_json(&mut out, &side_answer(&req))?,
        }
    }
}

/// The answer to anything that is not a turn.
fn side_answer(req: &Request) -> Value {
    if req.method != "POST" {
        json!({})
    } else if req.path.contains("count_tokens") {
        json!({"input_tokens": 100})
    } else if req.path.starts_with("/v1/messages") {
        // A side request (title generation asks for {"title": string}).
        message(req, &[Block::Text(r#"{"title":"scripted"}"#.into())], true)
    } else {
        json!({})
    }
}

/// Read one request; `None` at a clean end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let at = std::time::SystemTime::now();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2]; // the chunk and its CRLF
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at,
    }))
}

fn send_json(out: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let body = v.to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// A Messages-API message holding `blocks`; `done` gives it its stop reason.
fn message(req: &Request, blocks: &[Block], done: bool) -> Value {
    let content: Vec<Value> = if done {
        blocks.iter().map(|b| block_json(b, true)).collect()
    } else {
        Vec::new()
    };
    json!({
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": req.body["model"].as_str().unwrap_or("scripted"),
        "content": content,
        "stop_reason": if done { Value::from(stop_reason(blocks)) } else { Value::Null },
        "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    })
}

fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::Tool { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// A block as JSON: complete, or (streaming) the empty block that deltas fill.
fn block_json(b: &Block, complete: bool) -> Value {
    match b {
        Block::Text(t) => json!({"type": "text", "text": if complete { t.as_str() } else { "" }}),
        Block::Tool { id, name, input } => json!({
            "type": "tool_use",
            "id": id,
            "name": name,
            "input": if complete { input.clone() } else { json!({}) },
        }),
    }
}

/// Stream `turn` as Messages-API server-sent events.
fn send_sse(
    out: &mut TcpStream,
    req: &Request,
    turn: &Turn,
    shared: &Shared,
) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    )?;
    let mut event = |name: &str, data: Value| -> std::io::Result<()> {
        write!(out, "event: {name}\ndata: {data}\n\n")?;
        out.flush()
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": message(req, &turn.blocks, false)}),
    )?;
    // A slow turn: the stream is open, nothing comes but pings.
    hold(turn, shared, || event("ping", json!({"type": "ping"})))?;
    for (i, b) in turn.blocks.iter().enumerate() {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": block_json(b, false)}),
        )?;
        let delta = match b {
            Block::Text(t) => json!({"type": "text_delta", "text": t}),
            Block::Tool { input, .. } => {
                json!({"type": "input_json_delta", "partial_json": input.to_string()})
            }
        };
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        )?;
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        )?;
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(&turn.blocks), "stop_sequence": null}, "usage": {"output_tokens": 1}}),
    )?;
    event("message_stop", json!({"type": "message_stop"}))
}

/// Hold a slow `turn`'s open stream for its delay (less once the server
/// stops, or, for a held turn, once it is released), calling `tick` about
/// once a second.
fn hold(
    turn: &Turn,
    shared: &Shared,
    mut tick: impl FnMut() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let until = Instant::now() + turn.delay;
    let over = || {
        shared.stop.load(Ordering::SeqCst)
            || (turn.delay == HELD && shared.released.load(Ordering::SeqCst))
    };
    let mut ticked = Instant::now();
    while Instant::now() < until && !over() {
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
        if ticked.elapsed() >= Duration::from_secs(1) {
            tick()?;
            ticked = Instant::now();
        }
    }
    Ok(())
}

/// Every text of a Responses-API request's `input`, in order: message texts
/// (`input_text`, `output_text`) and function-call outputs.
fn responses_texts(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in body["input"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                for c in item["content"].as_array().into_iter().flatten() {
                    out.extend(c["text"].as_str().map(str::to_string));
                }
            }
            Some("function_call_output") => {
                out.extend(item["output"].as_str().map(str::to_string));
            }
            _ => {}
        }
    }
    out
}

/// A block as a Responses-API output item: a message, or (for `Bash`, the
/// shell tool of the Messages API) Codex's `exec_command` function call.
fn response_item(b: &Block, i: usize, complete: bool) -> Value {
    match b {
        Block::Text(t) => json!({
            "type": "message", "id": format!("msg_scripted_{i}"), "role": "assistant",
            "content": if complete { json!([{"type": "output_text", "text": t}]) } else { json!([]) },
        }),
        Block::Tool { id, name, input } => {
            let (name, args) = if name == "Bash" {
                ("exec_command", json!({"cmd": input["command"]}))
            } else {
                (name.as_str(), input.clone())
            };
            json!({
                "type": "function_call", "id": format!("fc_scripted_{i}"), "call_id": id,
                "name": name, "arguments": if complete { args.to_string() } else { String::new() },
            })
        }
    }
}

/// Stream `turn` as Responses-API server-sent events, the ones Codex 0.171.0
/// needs: `response.created`, per item `response.output_item.added`, (text)
/// `response.output_text.delta`, `response.output_item.done`, then
/// `response.completed`.
fn send_responses_sse(out: &mut TcpStream, turn: &Turn, shared: &Shared) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    )?;
    let mut event = |name: &str, mut data: Value| -> std::io::Result<()> {
        data["type"] = name.into();
        write!(out, "event: {name}\ndata: {data}\n\n")?;
        out.flush()
    };
    event(
        "response.created",
        json!({"response": {"id": "resp_scripted"}}),
    )?;
    // A slow turn: the stream is open, nothing comes yet.
    hold(turn, shared, || Ok(()))?;
    for (i, b) in turn.blocks.iter().enumerate() {
        event(
            "response.output_item.added",
            json!({"output_index": i, "item": response_item(b, i, false)}),
        )?;
        if let Block::Text(t) = b {
            event(
                "response.output_text.delta",
                json!({"item_id": format!("msg_scripted_{i}"), "output_index": i, "content_index": 0, "delta": t}),
            )?;
        }
        event(
            "response.output_item.done",
            json!({"output_index": i, "item": response_item(b, i, true)}),
        )?;
    }
    event(
        "response.completed",
        json!({"response": {"id": "resp_scripted", "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw HTTP exchange with the server: the response text.
    fn exchange(model: &Model, method: &str, path: &str, body: &Value) -> String {
        let mut c = TcpStream::connect(model.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.to_string();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // A JSON answer has a content-length; read exactly that much.
        let mut r = BufReader::new(c);
        let mut head = String::new();
        let mut length = None;
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>().unwrap());
            }
            head.push_str(&l);
            if l == "\r\n" {
                break;
            }
        }
        let mut rest = String::new();
        match length {
            Some(n) => {
                let mut b = vec![0; n];
                r.read_exact(&mut b).unwrap();
                rest = String::from_utf8(b).unwrap();
            }
            None => {
                r.read_to_string(&mut rest).unwrap();
            }
        }
        head + &rest
    }

    #[test]
    fn scripted_model_streams_turns_in_order_and_records_requests() {
        let model = Model::start(vec![Turn::bash("gt done"), Turn::text("all done")]);
        let turn = json!({"model": "m", "stream": true, "tools": [{"name": "Bash"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "work on gt-1"}]}]});
        let first = exchange(&model, "POST", "/v1/messages?beta=true", &turn);
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("content-type: text/event-stream"), "{first}");
        assert!(first.contains(r#""content_block":{"type":"tool_use","id":"toolu_scripted_1_0","name":"Bash","input":{}}"#), "{first}");
        assert!(
            first.contains(
                r#""partial_json":"{\"command\":\"gt done\",\"description\":\"scripted\"}""#
            ),
            "{first}"
        );
        assert!(first.contains(r#""stop_reason":"tool_use""#), "{first}");
        assert!(
            first.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            "{first}"
        );

        // A side request does not use up the script.
        let side = json!({"model": "m", "stream": false, "messages": [{"role": "user", "content": "title?"}]});
        let title = exchange(&model, "POST", "/v1/messages?beta=true", &side);
        assert!(title.contains(r#"{\"title\":\"scripted\"}"#), "{title}");

        let second = exchange(
            &model,
            "POST",
            "/v1/messages?beta=true",
            &json!({"stream": false, "tools": [{"name": "Bash"}], "messages": []}),
        );
        assert!(
            second.contains(r#""content":[{"type":"text","text":"all done"}]"#),
            "{second}"
        );
        assert!(second.contains(r#""stop_reason":"end_turn""#), "{second}");

        assert_eq!(
            exchange(&model, "HEAD", "/", &Value::Null).lines().next(),
            Some("HTTP/1.1 200 OK")
        );
        let reqs = model.requests();
        assert_eq!(reqs.len(), 4);
        assert!(reqs.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(model.turns().len(), 2);
        assert_eq!(
            model.wait_turn(1, Duration::from_secs(1)).mentions("gt-1"),
            1
        );
    }

    #[test]
    fn scripted_model_answers_the_responses_api_with_a_shell_call_then_text() {
        let model = Model::start(vec![Turn::bash("gt prime"), Turn::text("primed")]);
        let turn = json!({"model": "m", "stream": true, "tools": [{"type": "function", "name": "exec_command"}],
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "work on gt-1"}]}]});
        let first = exchange(&model, "POST", "/v1/responses", &turn);
        assert!(first.contains("content-type: text/event-stream"), "{first}");
        let events: Vec<&str> = first
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "response.created",
                "response.output_item.added",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(
            first.contains(r#"data: {"output_index":0,"item":{"type":"function_call","id":"fc_scripted_0","call_id":"toolu_scripted_1_0","name":"exec_command","arguments":"{\"cmd\":\"gt prime\"}"},"type":"response.output_item.done"}"#),
            "{first}"
        );

        // The title request (no tools) is a side request, streamed too.
        let title = exchange(
            &model,
            "POST",
            "/v1/responses",
            &json!({"stream": true, "tools": [], "text": {"format": {}}, "input": []}),
        );
        assert!(
            title.contains(r#""delta":"{\"title\":\"scripted\"}""#),
            "{title}"
        );

        let second = json!({"stream": true, "tools": [{"name": "exec_command"}], "input": [
            {"type": "function_call", "call_id": "toolu_scripted_1_0", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_scripted_1_0", "output": "Your issue: gt-1"}]});
        let answer = exchange(&model, "POST", "/v1/responses", &second);
        assert!(
            answer.contains(r#"{"output_index":0,"item":{"type":"message","id":"msg_scripted_0","role":"assistant","content":[{"type":"output_text","text":"primed"}]},"type":"response.output_item.done"}"#),
            "{answer}"
        );
        assert!(answer.contains(r#""delta":"primed""#), "{answer}");
        assert_eq!(model.turns().len(), 2);
        let t1 = model.wait_turn(1, Duration::from_secs(1));
        assert_eq!(t1.texts(), ["work on gt-1"]);
        assert_eq!(
            model.wait_turn(2, Duration::from_secs(1)).texts(),
            ["Your issue: gt-1"]
        );
    }
}
