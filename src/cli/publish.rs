//! `sluice pub`: publishes a body from the argument or stdin, or one
//! message per line (`--lines`), pipelined with a window of unconfirmed
//! publishes; each confirm is checked, and printed with `-v` / `--json`.

use std::collections::VecDeque;
use std::ffi::OsString;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::client::{ReplyHandle, Response};
use crate::protocol::command::{Header, Publish};
use crate::protocol::Command;

use super::args::{os_bytes, parse_header};
use super::connect::{parse_millis, CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::{scalar, Out};

/// Unconfirmed publishes in flight at most, by default.
pub(crate) const DEFAULT_WINDOW: u32 = 1000;

/// Publish messages.
///
/// The body is BODY, or stdin when BODY is absent or `-`: all of stdin is
/// one message, or with --lines each line is one (its `\n` or `\r\n`
/// removed; an empty line is an empty message). Bodies are sent as
/// literals, so any bytes go through. Each publish waits for its confirm
/// (the broker stored it, on disk if persistent); up to --window are in
/// flight at once. Prints nothing unless -v (`<msg-id> routed=<n>` per
/// message) or --json (`{"id":...,"routed":n}` per message). A message
/// that no queue took (`routed=0`: dropped) is worth a warning on stderr,
/// unless --quiet (--mandatory makes it an error instead). The first
/// error stops it (the messages before it are published) and exits 1.
///
/// Examples:
///   sluice pub "" jobs "resize photo 42"
///   seq 1 1000 | sluice pub "" jobs --lines
///   sluice pub logs app.error -H host=web1 --persistent < error.txt
///   sluice pub "" orders --group cust-42 "order paid"
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct PubArgs {
    /// Exchange ("" is the default exchange: the routing key names the queue).
    pub(crate) exchange: String,
    /// Routing key (any bytes).
    pub(crate) routing_key: OsString,
    /// The body; absent or `-`: read stdin.
    pub(crate) body: Option<OsString>,
    /// One message per line of the input.
    #[arg(long)]
    pub(crate) lines: bool,
    /// Store on disk even on a non-durable route (default: the queue decides).
    #[arg(long, conflicts_with = "transient")]
    pub(crate) persistent: bool,
    /// Keep in memory only, even in a durable queue.
    #[arg(long)]
    pub(crate) transient: bool,
    /// Fail (ERR NO_ROUTE, exit 1) when no queue takes the message.
    #[arg(long)]
    pub(crate) mandatory: bool,
    /// Message id (the broker generates one otherwise).
    #[arg(long, conflicts_with = "lines")]
    pub(crate) id: Option<String>,
    /// Expire after this long in a queue (`30s`, or milliseconds).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) ttl: Option<u64>,
    /// Deliver no earlier than this (`5s`, or milliseconds).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) delay: Option<u64>,
    /// Priority, 0 to 255 (for queues declared with --max-priority).
    #[arg(long)]
    pub(crate) priority: Option<u8>,
    /// Message group key (for queues declared with --groups: one key's
    /// messages go out in order, to one consumer at a time).
    #[arg(long, value_name = "KEY")]
    pub(crate) group: Option<OsString>,
    /// A header, `name=value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<Header>,
    /// Print `<msg-id> routed=<n>` for each message.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// No warning on stderr for messages that no queue took (routed=0).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Unconfirmed publishes in flight at most.
    #[arg(long, default_value_t = DEFAULT_WINDOW, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) window: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Runs `sluice pub`.
pub(super) async fn run(args: PubArgs) -> Result<Exit, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(&args.common)).await?;
    let mut out = Out::default();
    let template = Publish {
        exchange: args.exchange.clone(),
        key: os_bytes(args.routing_key.clone()),
        persistent: match (args.persistent, args.transient) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        mandatory: args.mandatory,
        id: args.id.clone(),
        headers: args.headers.clone(),
        ttl_ms: args.ttl,
        delay_ms: args.delay,
        priority: args.priority,
        group: args.group.clone().map(os_bytes),
        body: Bytes::new(),
    };
    let mut p = Pipeline {
        conn: &mut conn,
        out: &mut out,
        template,
        window: args.window as usize,
        report: Report::pick(args.common.json, args.verbose),
        in_flight: VecDeque::new(),
        sent: 0,
        unrouted: 0,
        failed: None,
    };
    let from_stdin = args.body.as_ref().is_none_or(|b| b == "-");
    let result = match (&args.body, from_stdin) {
        (Some(body), false) => {
            let body = body.clone().into_encoded_bytes();
            if args.lines {
                let mut sent = Ok(());
                for line in split_lines(&body) {
                    sent = p.publish(Bytes::copy_from_slice(line)).await;
                    if sent.is_err() {
                        break;
                    }
                }
                sent
            } else {
                p.publish(Bytes::from(body)).await
            }
        }
        _ if args.lines => p.publish_stdin_lines().await,
        _ => {
            let mut body = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut body)
                .await
                .map_err(CliError::stdin)?;
            p.publish(Bytes::from(body)).await
        }
    };
    let finished = p.finish().await;
    let (sent, unrouted) = (p.sent, p.unrouted);
    out.flush()?;
    if unrouted > 0 && !args.quiet {
        let key = String::from_utf8_lossy(args.routing_key.as_encoded_bytes());
        eprintln!(
            "sluice: warning: {}",
            unrouted_warning(&args.exchange, &key, unrouted, sent)
        );
    }
    result.and(finished).map(|()| Exit::Success)
}

/// What is printed per confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Nothing,
    Text,
    Json,
}

impl Report {
    fn pick(json: bool, verbose: bool) -> Report {
        match (json, verbose) {
            (true, _) => Report::Json,
            (false, true) => Report::Text,
            (false, false) => Report::Nothing,
        }
    }
}

/// Publishes in a window: sends, and waits for the oldest confirm only when
/// `window` are outstanding (or at the end).
struct Pipeline<'a> {
    conn: &'a mut Conn,
    out: &'a mut Out,
    template: Publish,
    window: usize,
    report: Report,
    /// `(message number, its reply)`, oldest first.
    in_flight: VecDeque<(u64, ReplyHandle)>,
    sent: u64,
    /// Confirms that said `routed=0` (dropped: no queue took the message).
    unrouted: u64,
    /// The first error (the rest is still drained, then it is returned).
    failed: Option<CliError>,
}

impl Pipeline<'_> {
    /// Queues one publish; waits for the oldest confirm when the window is
    /// full. Fails once a confirm failed.
    async fn publish(&mut self, body: Bytes) -> Result<(), CliError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let cmd = Command::Publish(Publish {
            body,
            ..self.template.clone()
        });
        self.sent += 1;
        let h = self.conn.client.send_command(&cmd);
        self.in_flight.push_back((self.sent, h));
        while self.in_flight.len() >= self.window {
            self.conn.flush().await?;
            self.settle_oldest().await?;
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `--lines` from stdin, streamed: a line is sent as soon as it is read,
    /// and what is queued is written whenever stdin has nothing more ready
    /// (so an interactive or slow producer sees its messages go at once).
    async fn publish_stdin_lines(&mut self) -> Result<(), CliError> {
        let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
        let mut line = Vec::new();
        loop {
            if input.buffer().is_empty() {
                self.conn.flush().await?;
                self.settle_arrived()?;
            }
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .await
                .map_err(CliError::stdin)?;
            if n == 0 {
                return Ok(());
            }
            let body = trim_line_end(&line);
            self.publish(Bytes::copy_from_slice(body)).await?;
        }
    }

    /// Reports the confirms that have already arrived, without waiting.
    fn settle_arrived(&mut self) -> Result<(), CliError> {
        while let Some((n, h)) = self.in_flight.front_mut() {
            let n = *n;
            let Some(r) = h.try_take() else { break };
            self.in_flight.pop_front();
            self.confirmed(n, r.map_err(CliError::from))?;
        }
        Ok(())
    }

    async fn settle_oldest(&mut self) -> Result<(), CliError> {
        if let Some((n, h)) = self.in_flight.pop_front() {
            let r = self.conn.wait(h).await;
            self.confirmed(n, r)?;
        }
        Ok(())
    }

    /// One confirm: printed, or kept as the first failure. Only a stdout
    /// failure (or a closed pipe) stops at once.
    fn confirmed(&mut self, n: u64, r: Result<Response, CliError>) -> Result<(), CliError> {
        match r {
            Ok(resp) => {
                if dropped(&resp.words) {
                    self.unrouted += 1;
                }
                self.print(&resp.words)
            }
            Err(e) => {
                if self.failed.is_none() {
                    let e = if self.sent > 1 {
                        e.context(format_args!("message {n}"))
                    } else {
                        e
                    };
                    self.failed = Some(e);
                }
                Ok(())
            }
        }
    }

    fn print(&mut self, words: &[String]) -> Result<(), CliError> {
        match self.report {
            Report::Nothing => Ok(()),
            Report::Text => self.out.line(&words.join(" ")),
            Report::Json => self.out.json(&confirm_json(words)),
        }
    }

    /// Sends what is queued and waits for every confirm; the first failure.
    async fn finish(&mut self) -> Result<(), CliError> {
        let flushed = self.conn.flush().await;
        if flushed.is_ok() {
            while !self.in_flight.is_empty() {
                self.settle_oldest().await?;
            }
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => flushed,
        }
    }
}

/// Whether a confirm (`<id> routed=<n> [rejected=<k>] [duplicate]`) says
/// no queue took the message: `routed=0`, and not because it was a
/// duplicate or refused by full queues (those are said otherwise).
fn dropped(words: &[String]) -> bool {
    words.iter().any(|w| w == "routed=0")
        && !words
            .iter()
            .any(|w| w == "duplicate" || w.starts_with("rejected="))
}

/// The warning for `unrouted` of `sent` messages that no queue took.
fn unrouted_warning(exchange: &str, key: &str, unrouted: u64, sent: u64) -> String {
    let how_many = match sent {
        1 => "routed=0".to_string(),
        _ => format!("routed=0 for {unrouted} of {sent} messages"),
    };
    let route = match exchange {
        "" => format!(
            "no queue is bound for {key:?} on the default exchange \"\" \
             (it routes to the queue the key names, and there is none)"
        ),
        ex => format!("no queue is bound for {key:?} on exchange {ex:?}"),
    };
    format!(
        "{how_many}: {route}; dropped (--mandatory makes this an error, --quiet hides this warning)"
    )
}

/// `OK <id> routed=<n> [rejected=<k>] [duplicate]` as `{"id":..,"routed":n,...}`.
fn confirm_json(words: &[String]) -> Value {
    let mut m = Map::new();
    for (i, w) in words.iter().enumerate() {
        match w.split_once('=') {
            _ if i == 0 => m.insert("id".into(), Value::String(w.clone())),
            Some((k, v)) => m.insert(k.to_string(), scalar(v)),
            None => m.insert(w.clone(), Value::Bool(true)),
        };
    }
    Value::Object(m)
}

/// A line without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The lines of `text` (a last line without `\n` counts; a trailing `\n`
/// does not start an empty one).
fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let lines = (!text.is_empty()).then(|| body.split(|&b| b == b'\n').map(trim_line_end));
    lines.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn confirms_become_json_objects() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            confirm_json(&words("m-1 routed=2")),
            json!({"id": "m-1", "routed": 2})
        );
        assert_eq!(
            confirm_json(&words("m-2 routed=1 rejected=1 duplicate")),
            json!({"id": "m-2", "routed": 1, "rejected": 1, "duplicate": true})
        );
        // An id that looks like an option is still the id.
        assert_eq!(
            confirm_json(&words("a=b routed=0")),
            json!({"id": "a=b", "routed": 0})
        );
    }

    #[test]
    fn lines_lose_their_ends_and_keep_empty_ones() {
        let lines = |t: &[u8]| split_lines(t).map(|l| l.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            lines(b"a\nb\r\n\nc"),
            vec![b"a".to_vec(), b"b".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(lines(b"a\n"), vec![b"a".to_vec()]);
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\n"), vec![Vec::<u8>::new()]);
        assert_eq!(trim_line_end(b"x\r\n"), b"x");
        assert_eq!(trim_line_end(b"x"), b"x");
    }

    #[test]
    fn only_a_plain_routed_zero_is_dropped() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(dropped(&w("m-1 routed=0")));
        assert!(!dropped(&w("m-1 routed=1")));
        assert!(!dropped(&w("m-1 routed=10")));
        assert!(!dropped(&w("m-1 routed=0 duplicate")));
        assert!(!dropped(&w("m-1 routed=0 rejected=1")));
    }

    #[test]
    fn the_unrouted_warning_names_the_route() {
        assert_eq!(
            unrouted_warning("logs", "db.info", 1, 1),
            "routed=0: no queue is bound for \"db.info\" on exchange \"logs\"; dropped \
             (--mandatory makes this an error, --quiet hides this warning)"
        );
        let w = unrouted_warning("", "jobz", 3, 5);
        assert!(
            w.starts_with(
                "routed=0 for 3 of 5 messages: no queue is bound for \"jobz\" on the default exchange"
            ),
            "{w}"
        );
    }
}
