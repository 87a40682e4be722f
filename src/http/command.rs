//! `POST /api/command`: one protocol command, run as the caller. Every
//! action of the dashboard goes through here, so that it meets exactly the
//! checks the protocol makes (the same parser, the same handlers, the same
//! `NOAUTH`, `FORBIDDEN` and limits: [`oneshot`]) and needs no grammar of
//! its own.
//!
//! The body is `{"command": "<one line>"}`, with `"body"` (text) or
//! `"body_base64"` for a literal: the server appends the line's `{N}`
//! itself, so `{"command": "PUB \"\" jobs", "body": "hello"}` publishes
//! `hello`. The answer is `200` with `{"ok": true, "reply": "OK ...",
//! "data": <the literal of OK {N}, or null>, "messages": [...]}`, the
//! messages being a `GET`'s deliveries or a `PEEK`'s lines; an `ERR` is
//! the status that stands for its code ([`status_of`]) with `{"ok":
//! false, "code": "FORBIDDEN", "error": "...", "reply": "ERR ..."}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::read_json;
use super::login::Caller;
use super::response::{error, json, json_status, status_of, Reply};
use super::{Http, COMMAND_PATIENCE};
use crate::protocol::parse::parse_line;
use crate::protocol::reply::Reply as WireReply;
use crate::protocol::ErrorCode;
use crate::session::oneshot::{self, NotRun};
use crate::session_state::Shown;

/// The request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    /// One command line, without its end of line or `{N}`.
    command: String,
    /// A literal, as text.
    #[serde(default)]
    body: Option<String>,
    /// A literal, base64 (any bytes).
    #[serde(default)]
    body_base64: Option<String>,
}

/// The answer of a command that ran (`OK` or `ERR`).
#[derive(Debug, Serialize)]
struct CommandResult {
    ok: bool,
    /// The reply line, as the protocol writes it (the `{N}` included).
    reply: String,
    /// `ERR`'s code.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// `ERR`'s message.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The literal of an `OK ... {N}` (`LIST`, `STATS`, `USER LIST`), as
    /// text.
    data: Option<String>,
    /// What a `GET` or a `PEEK` showed.
    messages: Vec<MessageView>,
}

/// One `MSG` line as JSON.
#[derive(Debug, Serialize)]
struct MessageView {
    /// `-` (`GET`) or `*` (`PEEK`).
    tag: String,
    /// The delivery tag, or for `PEEK` the position.
    dtag: u64,
    exchange: String,
    routing_key: String,
    id: String,
    redelivered: bool,
    deliveries: u32,
    persistent: bool,
    headers: BTreeMap<String, String>,
    group: Option<String>,
    offset: Option<u64>,
    partition: Option<u32>,
    /// Body bytes.
    size: usize,
    /// The body as text when it is UTF-8, else null (see `body_base64`).
    body: Option<String>,
    /// The body in base64 when it is not UTF-8.
    body_base64: Option<String>,
}

impl MessageView {
    fn of(s: &Shown) -> MessageView {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let m = &s.msg;
        let utf8 = std::str::from_utf8(&m.body).ok();
        MessageView {
            tag: s.tag.to_string(),
            dtag: s.dtag,
            exchange: m.exchange.to_string(),
            routing_key: text(&m.routing_key),
            id: m.id.clone(),
            redelivered: s.redelivered,
            deliveries: s.deliveries,
            persistent: m.persistent,
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            group: m.group.as_deref().map(text),
            offset: s.offset,
            partition: s.partition,
            size: m.body.len(),
            body: utf8.map(str::to_string),
            body_base64: utf8
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&m.body)),
        }
    }
}

/// `POST /api/command`.
pub(crate) async fn command(
    req: Request<Incoming>,
    http: &Http,
    caller: Caller,
    peer: SocketAddr,
) -> Reply {
    if let Err(r) = caller.may_read() {
        return r;
    }
    let c: CommandRequest = match read_json(req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = http.broker.config();
    if c.command.contains(['\r', '\n']) {
        return error(
            StatusCode::BAD_REQUEST,
            Some(ErrorCode::Syntax),
            "one command line: no CR or LF in it",
        );
    }
    let literal = match (c.body, c.body_base64) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(ErrorCode::Syntax),
                "body or body_base64, not both",
            )
        }
        (Some(t), None) => Some(Bytes::from(t)),
        (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some(ErrorCode::Syntax),
                    format!("body_base64: {e}"),
                )
            }
        },
        (None, None) => None,
    };
    let mut line = c.command.into_bytes();
    if let Some(l) = &literal {
        if l.len() > config.limits.max_literal {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(ErrorCode::TooLarge),
                format!(
                    "literal of {} bytes exceeds {}",
                    l.len(),
                    config.limits.max_literal
                ),
            );
        }
        line.extend_from_slice(format!(" {{{}}}", l.len()).as_bytes());
    }
    if line.len() > config.limits.max_line {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(ErrorCode::LineTooLong),
            format!("line exceeds {} bytes", config.limits.max_line),
        );
    }
    let parsed = match parse_line(&line, literal) {
        Ok(p) => p,
        Err(e) => return ran(WireReply::Err(e.code, e.message), Vec::new()),
    };
    match oneshot::run(&http.broker, caller.login(), peer, parsed, COMMAND_PATIENCE).await {
        Ok(r) => ran(r.reply, r.shown),
        Err(e @ NotRun::NeedsConnection(_)) => error(StatusCode::BAD_REQUEST, None, e.to_string()),
        Err(e @ NotRun::TimedOut(_)) => error(StatusCode::GATEWAY_TIMEOUT, None, e.to_string()),
    }
}

/// The answer for a command's reply and what it showed.
fn ran(reply: WireReply, shown: Vec<Shown>) -> Reply {
    let mut wire = Vec::new();
    reply.encode(&mut wire);
    let first_line = wire
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    let messages = shown.iter().map(MessageView::of).collect();
    match reply {
        WireReply::Err(code, message) => json_status(
            status_of(code),
            &CommandResult {
                ok: false,
                reply: first_line,
                code: Some(code.as_str()),
                error: Some(message),
                data: None,
                messages,
            },
        ),
        WireReply::Data(_, data) => json(&CommandResult {
            ok: true,
            reply: first_line,
            code: None,
            error: None,
            data: Some(String::from_utf8_lossy(&data).into_owned()),
            messages,
        }),
        WireReply::Ok(_) => json(&CommandResult {
            ok: true,
            reply: first_line,
            code: None,
            error: None,
            data: None,
            messages,
        }),
    }
}
