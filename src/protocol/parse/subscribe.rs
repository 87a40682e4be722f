//! `SUB` and `UNSUB`: a subscription's options, the stream starting point
//! (`offset=`/`time=`, which `SEEK` takes too) and consumer tags. See
//! protocol.md, "SUB"; run by `cmd/subscribe.rs`.

use super::{bounded, choice, name, name_bytes, number, Args, Opt, Res, Spec};
use crate::protocol::command::{AckMode, Command, StreamStart, Subscribe, Unsubscribe};
use crate::protocol::encode::{opt, ACK_MODES, STREAM_OFFSETS};
use crate::protocol::error::{show, ParseError};

/// The largest `prefetch-bytes=`: 1 GiB (the byte budget of one
/// subscription; a body larger than it still goes out alone).
const MAX_PREFETCH_BYTES: u64 = 1 << 30;

/// How `SUB` is used.
pub(super) const SUB_USAGE: &str =
    "SUB <queue> [prefetch=<n>] [prefetch-bytes=<n>] [ack=manual|auto] [tag=<consumer-tag>] \
     [exclusive] [group=<name>] [offset=first|last|next|<n> | time=<unix-ms>]";

/// How `UNSUB` is used.
pub(super) const UNSUB_USAGE: &str = "UNSUB <consumer-tag>";

pub(super) fn subscribe(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        flags: &[opt::EXCLUSIVE],
        values: &[
            opt::PREFETCH,
            opt::PREFETCH_BYTES,
            opt::ACK,
            opt::TAG,
            opt::GROUP,
            opt::OFFSET,
            opt::TIME,
        ],
        ..Spec::default()
    };
    let mut s = Subscribe {
        queue,
        prefetch: None,
        prefetch_bytes: None,
        ack: AckMode::Manual,
        tag: None,
        exclusive: false,
        group: None,
        start: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Flag(_, on) => s.exclusive = on,
            Opt::Value(opt::PREFETCH, v) => {
                s.prefetch = Some(number(opt::PREFETCH, v, 1, 65535)? as u32)
            }
            Opt::Value(opt::PREFETCH_BYTES, v) => {
                s.prefetch_bytes = Some(number(opt::PREFETCH_BYTES, v, 1, MAX_PREFETCH_BYTES)?)
            }
            Opt::Value(opt::ACK, v) => s.ack = choice(opt::ACK, v, ACK_MODES)?,
            Opt::Value(opt::TAG, v) => s.tag = Some(consumer_tag(v)?),
            Opt::Value(opt::GROUP, v) => s.group = Some(name_bytes(v, opt::GROUP, false)?),
            Opt::Value(name, v) => {
                if s.start.is_some() {
                    return Err(ParseError::syntax("offset= and time= exclude each other"));
                }
                s.start = Some(stream_start(name, v)?);
            }
            Opt::Header(_) => {}
        }
    }
    Ok(Command::Subscribe(s))
}

/// `offset=first|last|next|<n>` or `time=<unix-ms>`.
pub(super) fn stream_start(name: &str, v: &[u8]) -> Res<StreamStart> {
    if name == opt::TIME {
        return Ok(StreamStart::Time(number(opt::TIME, v, 0, u64::MAX)?));
    }
    if v.first().is_some_and(u8::is_ascii_digit) {
        return Ok(StreamStart::Offset(number(opt::OFFSET, v, 0, u64::MAX)?));
    }
    choice(opt::OFFSET, v, STREAM_OFFSETS)
}

pub(super) fn unsubscribe(mut a: Args<'_>) -> Res<Command> {
    let tag = consumer_tag(&a.required("<consumer-tag>")?.text)?;
    a.end(Command::Unsubscribe(Unsubscribe { tag }))
}

fn consumer_tag(text: &[u8]) -> Res<String> {
    let reserved = match text {
        b"-" => Some("GET deliveries"),
        b"*" => Some("PEEK lines"),
        _ => None,
    };
    if let Some(marks) = reserved {
        return Err(ParseError::syntax(format!(
            "consumer tag {} is reserved for {marks}",
            show(text)
        )));
    }
    bounded(text, "consumer tag", false)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn sub_and_unsub() {
        let s = Subscribe {
            group: None,
            start: None,
            queue: "jobs".into(),
            prefetch: Some(10),
            prefetch_bytes: Some(65536),
            ack: AckMode::Auto,
            tag: Some("w1".into()),
            exclusive: true,
        };
        assert_eq!(
            ok("sub jobs PREFETCH=10 prefetch-bytes=65536 ack=AUTO tag=w1 exclusive"),
            Command::Subscribe(s)
        );
        let Command::Subscribe(s) = ok("SUB jobs") else {
            panic!()
        };
        assert_eq!(
            (s.prefetch, s.ack, s.tag, s.exclusive),
            (None, AckMode::Manual, None, false)
        );
        assert_eq!(
            ok("UNSUB w1"),
            Command::Unsubscribe(Unsubscribe { tag: "w1".into() })
        );
        let Command::Subscribe(s) = ok("SUB jobs tag=\"my tag\" prefetch=65535") else {
            panic!()
        };
        assert_eq!(
            (s.tag.as_deref(), s.prefetch),
            (Some("my tag"), Some(65535))
        );
    }

    #[test]
    fn sub_errors() {
        assert_eq!(
            syntax("SUB jobs prefetch=lots"),
            "prefetch: expected a number, got \"lots\""
        );
        assert_eq!(
            syntax("SUB jobs prefetch=0"),
            "prefetch: must be between 1 and 65535, got 0"
        );
        assert_eq!(
            syntax("SUB jobs prefetch=65536"),
            "prefetch: must be between 1 and 65535, got 65536"
        );
        assert_eq!(
            syntax("SUB jobs prefetch=-1"),
            "prefetch: expected a number, got \"-1\""
        );
        assert_eq!(
            syntax("SUB jobs prefetch=+1"),
            "prefetch: expected a number, got \"+1\""
        );
        assert_eq!(
            syntax("SUB jobs prefetch-bytes=0"),
            "prefetch-bytes: must be between 1 and 1073741824, got 0"
        );
        assert_eq!(
            syntax("SUB jobs prefetch-bytes=1073741825"),
            "prefetch-bytes: must be between 1 and 1073741824, got 1073741825"
        );
        assert_eq!(
            syntax("SUB jobs prefetch-bytes=1k"),
            "prefetch-bytes: expected a number, got \"1k\""
        );
        assert_eq!(
            syntax("SUB jobs prefetch=1 prefetch=2"),
            "duplicate option prefetch"
        );
        assert_eq!(
            syntax("SUB jobs ack=sometimes"),
            "ack: expected manual or auto, got \"sometimes\""
        );
        assert_eq!(
            syntax("SUB jobs tag=-"),
            "consumer tag \"-\" is reserved for GET deliveries"
        );
        assert_eq!(
            syntax("SUB jobs tag="),
            "consumer tag must be 1 to 255 bytes"
        );
        assert_eq!(
            syntax("SUB jobs durable"),
            "unexpected argument \"durable\""
        );
        assert!(syntax("SUB").starts_with("missing <queue>; usage: SUB"));
        assert!(syntax("UNSUB").starts_with("missing <consumer-tag>"));
        assert_eq!(syntax("UNSUB a b"), "unexpected argument \"b\"");
        assert_eq!(
            syntax(&format!("UNSUB {}", "t".repeat(256))),
            "consumer tag must be 1 to 255 bytes"
        );
    }

    #[test]
    fn reserved_consumer_tags() {
        assert_eq!(
            syntax("SUB jobs tag=-"),
            "consumer tag \"-\" is reserved for GET deliveries"
        );
        assert_eq!(
            syntax("SUB jobs tag=*"),
            "consumer tag \"*\" is reserved for PEEK lines"
        );
        assert_eq!(
            syntax("SUB jobs tag=\"*\""),
            "consumer tag \"*\" is reserved for PEEK lines"
        );
        assert_eq!(
            syntax("UNSUB *"),
            "consumer tag \"*\" is reserved for PEEK lines"
        );
        for tag in ["--", "**", "*a", "a-"] {
            let Command::Subscribe(s) = ok(&format!("SUB jobs tag={tag}")) else {
                panic!()
            };
            assert_eq!(s.tag.as_deref(), Some(tag));
        }
    }

    #[test]
    fn sub_stream_starts() {
        let sub = |line: &str| match ok(line) {
            Command::Subscribe(s) => s,
            other => panic!("{other:?}"),
        };
        let s = sub("SUB s group=billing offset=first");
        assert_eq!(s.group.as_deref(), Some("billing"));
        assert_eq!(s.start, Some(StreamStart::First));
        assert_eq!(sub("SUB s offset=LAST").start, Some(StreamStart::Last));
        assert_eq!(sub("SUB s offset=next").start, Some(StreamStart::Next));
        assert_eq!(sub("SUB s offset=42").start, Some(StreamStart::Offset(42)));
        assert_eq!(
            sub("SUB s time=1700000000000").start,
            Some(StreamStart::Time(1_700_000_000_000))
        );
        assert_eq!(
            syntax("SUB s offset=1 time=2"),
            "offset= and time= exclude each other"
        );
        assert!(syntax("SUB s offset=middle").starts_with("offset: expected first or last or next"));
    }
}
