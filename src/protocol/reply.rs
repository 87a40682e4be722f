//! Replies (`OK`, `ERR`) and pushes (`MSG`, `NOTICE`) as values, and their
//! encoding: the only place that writes server lines.
//!
//! Every word a reply carries goes through [`encode_word`], so a client's
//! tokenizer reads back exactly what the server meant (a routing key with a
//! space comes out quoted, an empty exchange name as `""`). Lines end in
//! `\r\n` so that telnet and `nc` users see clean lines.

use bytes::Bytes;
use std::fmt::Write as _;

use super::code::ErrorCode;
use super::command::Header;
use super::token::encode_word;

/// A reply to one command: exactly one per command, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `OK` followed by already-encoded words (possibly none).
    Ok(String),
    /// `OK <words> {N}` followed by N bytes of data.
    Data(String, Bytes),
    /// `ERR <CODE> <message>`.
    Err(ErrorCode, String),
}

impl Reply {
    /// A bare `OK`.
    pub(crate) fn ok() -> Reply {
        Reply::Ok(String::new())
    }

    /// `OK` followed by these words, each encoded (quoted where needed).
    pub(crate) fn words<I, S>(words: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Reply::Ok(join_words(words))
    }

    /// Whether this reply is an `ERR`.
    pub(crate) fn is_err(&self) -> bool {
        matches!(self, Reply::Err(..))
    }

    /// Appends the wire form to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok(words) => {
                out.extend_from_slice(b"OK");
                if !words.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(words.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            Reply::Data(words, data) => {
                out.extend_from_slice(b"OK ");
                if !words.is_empty() {
                    out.extend_from_slice(words.as_bytes());
                    out.push(b' ');
                }
                let _ = write!(Lit(out), "{{{}}}\r\n", data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Err(code, message) => {
                out.extend_from_slice(b"ERR ");
                out.extend_from_slice(code.as_str().as_bytes());
                if !message.is_empty() {
                    out.push(b' ');
                    // An ERR line never carries a literal: make sure the text cannot
                    // end in something that looks like `{N}`, and has no line breaks.
                    for b in message.bytes() {
                        out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
                    }
                    if message.ends_with('}') {
                        out.push(b'.');
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Encodes words for a reply line, separated by single spaces.
pub(crate) fn join_words<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for (i, w) in words.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        encode_word(&mut out, w.as_ref().as_bytes());
    }
    // encode_word only ever adds ASCII quotes and backslashes to UTF-8 input.
    String::from_utf8(out).unwrap_or_default()
}

/// Quotes a client-supplied word for an error message, shortened to 64 bytes,
/// so that echoed input can never break the line or fake a literal.
pub(crate) fn quote_for_message(word: &str) -> String {
    let mut end = word.len().min(64);
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::new();
    out.push(b'"');
    for b in word[..end].bytes() {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            b if b < 0x20 || b == 0x7f => out.push(b'?'),
            b => out.push(b),
        }
    }
    if end < word.len() {
        out.extend_from_slice(b"...");
    }
    out.push(b'"');
    String::from_utf8(out).unwrap_or_default()
}

/// What a `MSG` push says about one delivery (the body travels separately).
#[derive(Debug)]
pub(crate) struct MsgHead<'a> {
    /// Consumer tag, or `-` for a `GET`.
    pub(crate) consumer_tag: &'a str,
    /// Delivery tag on this connection.
    pub(crate) delivery_tag: u64,
    /// Exchange it was published to (`""` for the default exchange).
    pub(crate) exchange: &'a str,
    /// Routing key it was published with: any bytes, written as one word
    /// (quoted when needed) that tokenizes back to exactly these bytes.
    pub(crate) routing_key: &'a [u8],
    /// Delivered before (or may have been, after a crash).
    pub(crate) redelivered: bool,
    /// How many times it has been delivered, this one included.
    pub(crate) deliveries: u32,
    /// Message id.
    pub(crate) id: &'a str,
    /// Headers (values are any bytes, written like the routing key).
    pub(crate) headers: &'a [Header],
    /// Its message group (`PUB group=`), if it has one.
    pub(crate) group: Option<&'a [u8]>,
    /// A stream delivery: its offset in the stream.
    pub(crate) offset: Option<u64>,
    /// A delivery of a partitioned stream: the partition's index.
    pub(crate) partition: Option<u32>,
}

/// Appends `MSG <ctag> <dtag> <exchange> <key> [redelivered] deliveries=<n>
/// id=<id> [group=<key>] [offset=<n>] [partition=<n>] [h.<name>=<value>...]
/// {N}\r\n<body>\r\n` to `out`.
pub(crate) fn encode_msg(out: &mut Vec<u8>, head: &MsgHead<'_>, body: &[u8]) {
    out.extend_from_slice(b"MSG ");
    encode_word(out, head.consumer_tag.as_bytes());
    let _ = write!(Lit(out), " {} ", head.delivery_tag);
    encode_word(out, head.exchange.as_bytes());
    out.push(b' ');
    encode_word(out, head.routing_key);
    if head.redelivered {
        out.extend_from_slice(b" redelivered");
    }
    let _ = write!(Lit(out), " deliveries={} id=", head.deliveries);
    encode_word(out, head.id.as_bytes());
    if let Some(group) = head.group {
        out.extend_from_slice(b" group=");
        encode_word(out, group);
    }
    if let Some(offset) = head.offset {
        let _ = write!(Lit(out), " offset={offset}");
    }
    if let Some(partition) = head.partition {
        let _ = write!(Lit(out), " partition={partition}");
    }
    for (name, value) in head.headers {
        out.extend_from_slice(b" h.");
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        encode_word(out, value);
    }
    let _ = write!(Lit(out), " {{{}}}\r\n", body.len());
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

/// A notice the server sends unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `NOTICE cancelled <ctag> reason=<reason>`: the server ended a subscription.
    Cancelled {
        /// The subscription's consumer tag.
        tag: String,
        /// Why: `queue-deleted`, `leader-moved` or `shutdown`.
        reason: &'static str,
    },
    /// `NOTICE closing reason=<reason>`: sent just before the server closes.
    Closing {
        /// Why: `shutdown`, or `store-failed`.
        reason: &'static str,
    },
    /// `NOTICE ack-timeout <ctag> <dtag>`: a delivery's ack timeout passed;
    /// it went back to its queue and its tag is no longer outstanding.
    AckTimeout {
        /// Consumer tag (`-` for `GET`).
        tag: String,
        /// Delivery tag.
        dtag: u64,
    },
    /// `NOTICE blocked queue=<name>`: a full `overflow=block` queue is
    /// holding this connection's `PUB` reply (and the commands behind it);
    /// `NOTICE blocked disk`: the disk is under `--disk-free-limit`;
    /// `NOTICE blocked memory`: the broker is over `--memory-high-watermark`.
    Blocked {
        /// What holds it.
        on: Blocker,
    },
    /// `NOTICE heartbeat`: nothing else was sent for a heartbeat interval.
    Heartbeat,
    /// `NOTICE active <ctag> [partition=<n>]`: the subscription became its
    /// queue's (or stream partition's) active consumer and now receives.
    Active {
        /// The subscription's consumer tag.
        tag: String,
        /// The partition, for a partitioned stream.
        partition: Option<u32>,
    },
    /// `NOTICE inactive <ctag> [partition=<n>]`: it stopped being the
    /// active consumer (another member of its group took the partition).
    Inactive {
        /// The subscription's consumer tag.
        tag: String,
        /// The partition, for a partitioned stream.
        partition: Option<u32>,
    },
    /// `NOTICE unblocked queue=<name>` (or `disk`, `memory`): the held
    /// `PUB` went through.
    Unblocked {
        /// What had held it.
        on: Blocker,
    },
}

/// What holds a `PUB`, as `NOTICE blocked` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// `queue=<name>`: a full `overflow=block` queue.
    Queue(String),
    /// `disk` or `memory`: a resource alarm.
    Alarm(Resource),
}

/// A resource whose alarm holds publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Free space on the data directory's file system (`--disk-free-limit`).
    Disk,
    /// The broker's resident memory (`--memory-high-watermark`).
    Memory,
}

impl Resource {
    /// Its name on the wire (and in logs).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Resource::Disk => "disk",
            Resource::Memory => "memory",
        }
    }
}

impl Notice {
    /// Appends the wire form to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Notice::Cancelled { tag, reason } => {
                out.extend_from_slice(b"NOTICE cancelled ");
                encode_word(out, tag.as_bytes());
                let _ = write!(Lit(out), " reason={reason}\r\n");
            }
            Notice::Closing { reason } => {
                let _ = write!(Lit(out), "NOTICE closing reason={reason}\r\n");
            }
            Notice::AckTimeout { tag, dtag } => {
                out.extend_from_slice(b"NOTICE ack-timeout ");
                encode_word(out, tag.as_bytes());
                let _ = write!(Lit(out), " {dtag}\r\n");
            }
            Notice::Blocked { on } => {
                out.extend_from_slice(b"NOTICE blocked ");
                encode_hold(out, on);
            }
            Notice::Heartbeat => out.extend_from_slice(b"NOTICE heartbeat\r\n"),
            Notice::Active { tag, partition } | Notice::Inactive { tag, partition } => {
                out.extend_from_slice(match self {
                    Notice::Active { .. } => b"NOTICE active ",
                    _ => b"NOTICE inactive ",
                });
                encode_word(out, tag.as_bytes());
                if let Some(p) = partition {
                    let _ = write!(Lit(out), " partition={p}");
                }
                out.extend_from_slice(b"\r\n");
            }
            Notice::Unblocked { on } => {
                out.extend_from_slice(b"NOTICE unblocked ");
                encode_hold(out, on);
            }
        }
    }
}

/// `queue=<name>`, `disk` or `memory`, and the end of line.
fn encode_hold(out: &mut Vec<u8>, on: &Blocker) {
    match on {
        Blocker::Queue(q) => {
            out.extend_from_slice(b"queue=");
            encode_word(out, q.as_bytes());
        }
        Blocker::Alarm(r) => out.extend_from_slice(r.as_str().as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

/// `fmt::Write` over a byte vector, to format numbers without a temporary String.
struct Lit<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Lit<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply) -> String {
        let mut v = Vec::new();
        r.encode(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn ok_and_err_lines() {
        assert_eq!(enc(&Reply::ok()), "OK\r\n");
        assert_eq!(enc(&Reply::words(["pong"])), "OK pong\r\n");
        assert_eq!(enc(&Reply::words(["a b", ""])), "OK \"a b\" \"\"\r\n");
        assert_eq!(
            enc(&Reply::Err(ErrorCode::NotFound, "queue \"x\"".into())),
            "ERR NOT_FOUND queue \"x\"\r\n"
        );
    }

    #[test]
    fn blocked_notices_name_the_queue_or_the_resource() {
        let enc = |n: Notice| {
            let mut v = Vec::new();
            n.encode(&mut v);
            String::from_utf8(v).unwrap()
        };
        let on = Blocker::Queue("a b".into());
        assert_eq!(
            enc(Notice::Blocked { on }),
            "NOTICE blocked queue=\"a b\"\r\n"
        );
        let on = Blocker::Alarm(Resource::Disk);
        assert_eq!(enc(Notice::Blocked { on }), "NOTICE blocked disk\r\n");
        let on = Blocker::Alarm(Resource::Memory);
        assert_eq!(enc(Notice::Unblocked { on }), "NOTICE unblocked memory\r\n");
    }

    #[test]
    fn err_text_never_ends_in_a_literal_mark_or_breaks_the_line() {
        assert_eq!(
            enc(&Reply::Err(ErrorCode::Syntax, "bad {5}".into())),
            "ERR SYNTAX bad {5}.\r\n"
        );
        assert_eq!(
            enc(&Reply::Err(ErrorCode::Syntax, "a\r\nb".into())),
            "ERR SYNTAX a  b\r\n"
        );
    }

    #[test]
    fn data_reply_carries_a_literal() {
        let r = Reply::Data(String::new(), Bytes::from_static(b"hi\n"));
        assert_eq!(enc(&r), "OK {3}\r\nhi\n\r\n");
    }

    #[test]
    fn msg_push_quotes_what_needs_quoting() {
        let headers = vec![("k".to_string(), Bytes::from_static(b"a b"))];
        let head = MsgHead {
            group: None,
            offset: None,
            partition: None,
            consumer_tag: "w1",
            delivery_tag: 7,
            exchange: "",
            routing_key: b"jobs",
            redelivered: true,
            deliveries: 2,
            id: "m1",
            headers: &headers,
        };
        let mut v = Vec::new();
        encode_msg(&mut v, &head, b"hello");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "MSG w1 7 \"\" jobs redelivered deliveries=2 id=m1 h.k=\"a b\" {5}\r\nhello\r\n"
        );
    }

    #[test]
    fn msg_push_keys_and_header_values_read_back_byte_exact() {
        use super::super::frame::lit_mark;
        use super::super::token::tokenize;
        let keys: [&[u8]; 6] = [
            b"\xc3\x28",
            b"\xff.\xfe",
            b"a b\xff",
            b"\"q\"\\",
            b"\x01\t\x7f",
            b"{5}",
        ];
        for key in keys {
            let headers = vec![("x-death-key".to_string(), Bytes::copy_from_slice(key))];
            let head = MsgHead {
                group: None,
                offset: None,
                partition: None,
                consumer_tag: "-",
                delivery_tag: 1,
                exchange: "ex",
                routing_key: key,
                redelivered: false,
                deliveries: 1,
                id: "m",
                headers: &headers,
            };
            let mut v = Vec::new();
            encode_msg(&mut v, &head, b"x");
            let line = &v[..v.iter().position(|&b| b == b'\r').unwrap()];
            assert_eq!(lit_mark(line, true), Some(Ok(1)), "{key:?}");
            let words: Vec<Vec<u8>> = tokenize(line)
                .unwrap()
                .into_iter()
                .map(|t| t.text)
                .collect();
            assert_eq!(words[4], key);
            let mut want = b"h.x-death-key=".to_vec();
            want.extend_from_slice(key);
            assert_eq!(words[7], want, "{key:?}");
        }
    }

    #[test]
    fn quoted_echo_is_short_and_safe() {
        assert_eq!(quote_for_message("fro\"b"), "\"fro\\\"b\"");
        let long = "x".repeat(100);
        assert!(quote_for_message(&long).ends_with("...\""));
        assert_eq!(quote_for_message("a\nb"), "\"a?b\"");
    }
}
