//! Everything the CLI prints on stdout: [`Out`] (a buffered stdout whose
//! failures are [`CliError`]s, so a closed pipe ends the command quietly),
//! deliveries in their three forms ([`DeliveryFormat`]), reply words, and
//! the JSON conventions (bytes that are not UTF-8 go in a `<field>_base64`
//! field instead of `<field>`; numbers are numbers).

use std::io::{BufWriter, Stdout, Write};

use base64::Engine;
use serde_json::{Map, Value};

use crate::client::Delivery;
use crate::protocol::token::encode_word;

use super::exit::CliError;

/// How a delivery is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryFormat {
    /// The body, then a newline (a body holding newlines is printed as it
    /// is, so it spans several lines).
    Body,
    /// A line of routing information, then the body and a newline.
    Full,
    /// One JSON object per line.
    Json,
}

impl DeliveryFormat {
    /// The format that `--json` and `-v/--verbose` ask for.
    pub(crate) fn pick(json: bool, verbose: bool) -> DeliveryFormat {
        match (json, verbose) {
            (true, _) => DeliveryFormat::Json,
            (false, true) => DeliveryFormat::Full,
            (false, false) => DeliveryFormat::Body,
        }
    }
}

/// Buffered stdout. Nothing reaches the terminal or pipe before
/// [`Out::flush`], which the consumers call before acknowledging what they
/// printed.
#[derive(Debug)]
pub(super) struct Out {
    w: BufWriter<Stdout>,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            w: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        }
    }
}

impl Out {
    /// Writes raw bytes.
    pub(super) fn bytes(&mut self, b: &[u8]) -> Result<(), CliError> {
        self.w.write_all(b).map_err(CliError::stdout)
    }

    /// Writes a line of text.
    pub(super) fn line(&mut self, s: &str) -> Result<(), CliError> {
        self.bytes(s.as_bytes())?;
        self.bytes(b"\n")
    }

    /// Writes one JSON value on one line.
    pub(super) fn json(&mut self, v: &Value) -> Result<(), CliError> {
        self.line(&v.to_string())
    }

    /// Writes everything buffered.
    pub(super) fn flush(&mut self) -> Result<(), CliError> {
        self.w.flush().map_err(CliError::stdout)
    }

    /// Prints one delivery from `queue`.
    pub(super) fn delivery(
        &mut self,
        format: DeliveryFormat,
        queue: &str,
        d: &Delivery,
    ) -> Result<(), CliError> {
        match format {
            DeliveryFormat::Body => {
                self.bytes(&d.body)?;
                self.bytes(b"\n")
            }
            DeliveryFormat::Full => {
                let head = delivery_header(queue, d);
                self.bytes(&head)?;
                self.bytes(&d.body)?;
                self.bytes(b"\n")
            }
            DeliveryFormat::Json => self.json(&delivery_json(queue, d)),
        }
    }

    /// Prints one message a `PEEK` showed: as [`Out::delivery`], but its
    /// position in the queue in place of a delivery tag (`position=` with
    /// -v; JSON `"position"`, and no `consumer_tag` or `delivery_tag`).
    pub(super) fn peeked(
        &mut self,
        format: DeliveryFormat,
        queue: &str,
        d: &Delivery,
    ) -> Result<(), CliError> {
        match format {
            DeliveryFormat::Body => self.delivery(format, queue, d),
            DeliveryFormat::Full => {
                let head = header(queue, d, "position");
                self.bytes(&head)?;
                self.bytes(&d.body)?;
                self.bytes(b"\n")
            }
            DeliveryFormat::Json => {
                let mut v = delivery_json(queue, d);
                if let Value::Object(m) = &mut v {
                    m.remove("consumer_tag");
                    m.remove("delivery_tag");
                    m.insert("position".into(), d.delivery_tag.into());
                }
                self.json(&v)
            }
        }
    }

    /// Prints a reply's words (`jobs messages=0 consumers=0`), or as JSON
    /// an object: `first` names the leading positional word, `key=value`
    /// words become fields, bare words `true`. A bare `OK` prints nothing.
    pub(super) fn reply_words(
        &mut self,
        json: bool,
        first: &str,
        words: &[String],
    ) -> Result<(), CliError> {
        if words.is_empty() {
            return Ok(());
        }
        if !json {
            return self.line(&words.join(" "));
        }
        let mut m = Map::new();
        for (i, w) in words.iter().enumerate() {
            match w.split_once('=') {
                Some((k, v)) => m.insert(k.to_string(), scalar(v)),
                None if i == 0 => m.insert(first.to_string(), Value::String(w.clone())),
                None => m.insert(w.clone(), Value::Bool(true)),
            };
        }
        self.json(&Value::Object(m))
    }
}

/// Completes when stdout is a pipe (or socket) whose reader has gone
/// away: a `sub` waiting for messages would otherwise only find out at its
/// next write, which may never come (`sluice sub q | head -1`). Never
/// completes for a terminal or a file.
pub(super) async fn stdout_closed() {
    #[cfg(unix)]
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A thread, not a task: poll(2) blocks, and the thread must not
        // hold up the runtime's shutdown (it dies with the process).
        let spawned = std::thread::Builder::new()
            .name("stdout-watch".into())
            .spawn(move || {
                let mut fd = libc::pollfd {
                    fd: libc::STDOUT_FILENO,
                    // No events asked: POLLERR and POLLHUP are always
                    // reported, and a pipe's write end gets POLLERR when
                    // its read end is closed.
                    events: 0,
                    revents: 0,
                };
                loop {
                    // SAFETY: one valid pollfd, its count, no timeout.
                    let rc = unsafe { libc::poll(&mut fd, 1, -1) };
                    if rc > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                        let _ = tx.send(());
                        return;
                    }
                    let interrupted = rc < 0
                        && std::io::Error::last_os_error().kind()
                            == std::io::ErrorKind::Interrupted;
                    if rc < 0 && !interrupted {
                        // Cannot watch: keep `tx` alive so the future stays pending.
                        std::thread::park();
                    }
                }
            });
        if spawned.is_ok() && rx.await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// A value of the broker's text (a `STATS` value, a `LIST` cell) as
/// JSON: `true` and `false` as booleans, `-` and `none` (the broker's
/// words for "no value") as `null`, numbers as numbers, anything else as
/// a string. So `jq 'select(.durable)'` selects what is durable. Names
/// are not typed (a queue may be called `true` or `-`): the callers pass
/// those through [`text`] instead.
pub(super) fn typed(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "-" | "none" => Value::Null,
        _ => scalar(s),
    }
}

/// A name or other free text (a queue, a client's name): a string, or
/// `null` when `optional` and the broker wrote `-` for "none".
pub(super) fn text(s: &str, optional: bool) -> Value {
    match s {
        "-" if optional => Value::Null,
        _ => Value::String(s.to_string()),
    }
}

/// A text value as JSON: a number when it reads as one, else a string.
pub(super) fn scalar(s: &str) -> Value {
    if let Ok(n) = s.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Value::from(n);
    }
    match s.parse::<f64>() {
        // "inf" and "NaN" parse as floats but are no JSON numbers.
        Ok(f) if f.is_finite() && s.bytes().any(|b| b.is_ascii_digit()) => Value::from(f),
        _ => Value::String(s.to_string()),
    }
}

/// Puts `bytes` in `m` as `name` (UTF-8 text) or `name_base64`.
fn put_bytes(m: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => m.insert(name.to_string(), Value::String(s.to_string())),
        Err(_) => m.insert(
            format!("{name}_base64"),
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

/// A delivery as the JSON object `sub --json` and `get --json` print;
/// `group` (or `group_base64`), `offset` and `partition` only when the
/// delivery carries them.
pub(crate) fn delivery_json(queue: &str, d: &Delivery) -> Value {
    let mut m = Map::new();
    m.insert("queue".into(), queue.into());
    m.insert("consumer_tag".into(), d.consumer_tag.clone().into());
    m.insert("delivery_tag".into(), d.delivery_tag.into());
    m.insert("exchange".into(), d.exchange.clone().into());
    put_bytes(&mut m, "routing_key", &d.raw_routing_key);
    m.insert("redelivered".into(), d.redelivered.into());
    m.insert("deliveries".into(), d.deliveries.into());
    m.insert("id".into(), d.id.clone().into());
    if let Some(group) = &d.group {
        put_bytes(&mut m, "group", group);
    }
    if let Some(offset) = d.offset {
        m.insert("offset".into(), offset.into());
    }
    if let Some(partition) = d.partition {
        m.insert("partition".into(), partition.into());
    }
    let mut text = Map::new();
    let mut binary = Map::new();
    for (name, value) in &d.headers {
        match std::str::from_utf8(value) {
            Ok(v) => text.insert(name.clone(), v.into()),
            Err(_) => binary.insert(
                name.clone(),
                base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .into(),
            ),
        };
    }
    m.insert("headers".into(), Value::Object(text));
    if !binary.is_empty() {
        m.insert("headers_base64".into(), Value::Object(binary));
    }
    put_bytes(&mut m, "body", &d.body);
    Value::Object(m)
}

/// The routing line `--verbose` prints before a body, its words quoted as
/// on the wire: `queue=jobs tag=1 exchange="" key=jobs id=... deliveries=1
/// [redelivered] [group=<key>] [offset=<n>] [partition=<i>]
/// [h.<name>=<value>...] bytes=<n>`.
fn delivery_header(queue: &str, d: &Delivery) -> Vec<u8> {
    header(queue, d, "tag")
}

/// [`delivery_header`], the delivery tag's field called `tag_name`.
fn header(queue: &str, d: &Delivery, tag_name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let field = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        encode_word(out, value);
    };
    field(&mut out, "queue", queue.as_bytes());
    field(&mut out, tag_name, d.delivery_tag.to_string().as_bytes());
    field(&mut out, "exchange", d.exchange.as_bytes());
    field(&mut out, "key", &d.raw_routing_key);
    field(&mut out, "id", d.id.as_bytes());
    field(&mut out, "deliveries", d.deliveries.to_string().as_bytes());
    if d.redelivered {
        out.extend_from_slice(b" redelivered");
    }
    if let Some(group) = &d.group {
        field(&mut out, "group", group);
    }
    if let Some(offset) = d.offset {
        field(&mut out, "offset", offset.to_string().as_bytes());
    }
    if let Some(partition) = d.partition {
        field(&mut out, "partition", partition.to_string().as_bytes());
    }
    for (name, value) in &d.headers {
        field(&mut out, &format!("h.{name}"), value);
    }
    field(&mut out, "bytes", d.body.len().to_string().as_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn delivery(key: &[u8], body: &[u8]) -> Delivery {
        Delivery {
            group: None,
            offset: None,
            partition: None,
            consumer_tag: "ctag-1".into(),
            delivery_tag: 7,
            exchange: "".into(),
            routing_key: String::from_utf8_lossy(key).into_owned(),
            raw_routing_key: Bytes::copy_from_slice(key),
            redelivered: true,
            deliveries: 2,
            id: "m-1".into(),
            headers: vec![
                ("a".into(), Bytes::from_static(b"1 2")),
                ("b".into(), Bytes::from_static(b"\xff")),
            ],
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn json_deliveries_use_base64_only_for_bytes_that_are_not_utf8() {
        let v = delivery_json("jobs", &delivery(b"k\xfe", b"h\xc3\xa9"));
        assert_eq!(
            v,
            json!({
                "queue": "jobs", "consumer_tag": "ctag-1", "delivery_tag": 7,
                "exchange": "", "routing_key_base64": "a/4=", "redelivered": true,
                "deliveries": 2, "id": "m-1", "headers": {"a": "1 2"},
                "headers_base64": {"b": "/w=="}, "body": "hé"
            })
        );
        let v = delivery_json("jobs", &delivery(b"k", b"\x00\xff"));
        assert_eq!(v["routing_key"], "k");
        assert_eq!(v["body_base64"], "AP8=");
        assert!(v.get("body").is_none());
    }

    #[test]
    fn the_verbose_header_quotes_like_the_wire() {
        let h = delivery_header("jobs", &delivery(b"a b", b"xyz"));
        assert_eq!(
            h,
            b"queue=jobs tag=7 exchange=\"\" key=\"a b\" id=m-1 deliveries=2 \
              redelivered h.a=\"1 2\" h.b=\xff bytes=3\n"
        );
    }

    #[test]
    fn stream_and_group_fields_are_shown_only_when_present() {
        let mut d = delivery(b"k", b"x");
        d.group = Some(Bytes::from_static(b"cust a"));
        d.offset = Some(42);
        d.partition = Some(1);
        let v = delivery_json("s", &d);
        assert_eq!(v["group"], "cust a");
        assert_eq!(v["offset"], 42);
        assert_eq!(v["partition"], 1);
        let h = String::from_utf8_lossy(&delivery_header("s", &d)).into_owned();
        assert!(
            h.contains(" redelivered group=\"cust a\" offset=42 partition=1 h.a="),
            "{h}"
        );
        d.group = Some(Bytes::from_static(b"\xff"));
        assert_eq!(delivery_json("s", &d)["group_base64"], "/w==");
        let plain = delivery_json("s", &delivery(b"k", b"x"));
        for field in ["group", "offset", "partition"] {
            assert!(plain.get(field).is_none(), "{field}: {plain}");
        }
    }

    #[test]
    fn scalars_are_numbers_when_they_read_as_numbers() {
        assert_eq!(scalar("12"), json!(12));
        assert_eq!(scalar("-3"), json!(-3));
        assert_eq!(scalar("1.5"), json!(1.5));
        assert_eq!(scalar("inf"), json!("inf"));
        assert_eq!(scalar("NaN"), json!("NaN"));
        assert_eq!(scalar("jobs"), json!("jobs"));
        assert_eq!(scalar(""), json!(""));
    }

    #[test]
    fn typed_values_are_booleans_nulls_and_numbers() {
        assert_eq!(typed("true"), json!(true));
        assert_eq!(typed("false"), json!(false));
        assert_eq!(typed("-"), json!(null));
        assert_eq!(typed("none"), json!(null));
        assert_eq!(typed("0.0"), json!(0.0));
        assert_eq!(typed("12"), json!(12));
        assert_eq!(typed("True"), json!("True"), "the broker writes lower case");
        assert_eq!(typed("1,2,3"), json!("1,2,3"));
        assert_eq!(text("-", true), json!(null));
        assert_eq!(text("-", false), json!("-"));
        assert_eq!(text("true", false), json!("true"));
        assert_eq!(text("12", true), json!("12"));
    }
}
