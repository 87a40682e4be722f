//! `PUB`: exchange, routing key, options and headers, then the body: the
//! last word, or the `{N}` literal it announces. See protocol.md, "PUB";
//! run by `cmd/publish.rs`.

use bytes::Bytes;

use super::{
    bounded, key_bytes, name, number, option_name, routing_key, unexpected, Args, Opt, Res, Spec,
};
use crate::protocol::command::{Command, Publish};
use crate::protocol::encode::opt;
use crate::protocol::error::{show, ParseError};
use crate::protocol::frame::lit_mark;
use crate::protocol::token::Token;

/// How `PUB` is used.
pub(super) const USAGE: &str = "PUB <exchange> <routing-key> [persistent|transient] [mandatory] \
                               [id=<msg-id>] [ttl=<ms>] [delay=<ms>] [priority=<n>] \
                               [group=<key>] [h.<name>=<value>...] <body>";

pub(super) fn publish(mut a: Args<'_>) -> Res<Command> {
    let exchange = name(a.required("<exchange>")?, "exchange", true)?;
    let key = routing_key(a.required("<routing-key>")?)?;
    let Some((last, middle)) = a.toks.split_last() else {
        return Err(ParseError::syntax(format!(
            "missing <body>; usage: {USAGE}"
        )));
    };
    a.toks = middle;
    let mark = if last.quoted {
        None
    } else {
        lit_mark(&last.text, true)
    };
    let body = match (a.literal.take(), mark) {
        (Some(lit), Some(Ok(n))) if n == lit.len() as u64 => lit,
        (Some(_), _) => {
            return Err(ParseError::syntax(
                "a literal must be announced by a last word {N}",
            ));
        }
        (None, Some(_)) => {
            let mark = show(&last.text);
            return Err(ParseError::syntax(format!(
                "missing the literal announced by {mark}"
            )));
        }
        (None, None) => Bytes::copy_from_slice(&last.text),
    };
    let spec = Spec {
        flags: &[opt::PERSISTENT, opt::TRANSIENT, opt::MANDATORY],
        values: &[opt::ID, opt::TTL, opt::DELAY, opt::PRIORITY, opt::GROUP],
        headers: true,
    };
    let mut p = Publish {
        exchange,
        key,
        persistent: None,
        mandatory: false,
        id: None,
        headers: Vec::new(),
        ttl_ms: None,
        delay_ms: None,
        priority: None,
        group: None,
        body,
    };
    let words = a.toks;
    let opts = a
        .options(&spec)
        .map_err(|e| body_hint(e, words, last, &spec))?;
    for o in opts {
        match o {
            Opt::Flag(opt::MANDATORY, on) => p.mandatory = on,
            Opt::Flag(flag, true) => {
                if p.persistent.is_some() {
                    return Err(ParseError::syntax(
                        "persistent and transient exclude each other",
                    ));
                }
                p.persistent = Some(flag == opt::PERSISTENT);
            }
            Opt::Flag(..) => {}
            Opt::Value(opt::ID, v) => p.id = Some(bounded(v, opt::ID, false)?),
            Opt::Value(opt::TTL, v) => p.ttl_ms = Some(number(opt::TTL, v, 0, u64::MAX)?),
            Opt::Value(opt::DELAY, v) => p.delay_ms = Some(number(opt::DELAY, v, 0, u64::MAX)?),
            Opt::Value(opt::GROUP, v) => {
                if v.is_empty() {
                    return Err(ParseError::syntax("group: must not be empty"));
                }
                p.group = Some(key_bytes(v, opt::GROUP)?);
            }
            Opt::Value(_, v) => p.priority = Some(number(opt::PRIORITY, v, 0, 255)? as u8),
            Opt::Header(h) => p.headers.push(h),
        }
    }
    Ok(Command::Publish(p))
}

/// A refused word between the routing key and the body that is no option
/// at all (`pub "" jobs hello world`: `hello`) was most likely the start
/// of the body: say how to send one with spaces.
fn body_hint(mut e: ParseError, words: &[Token], last: &Token, spec: &Spec) -> ParseError {
    let first = words.iter().position(|t| {
        t.quoted
            || (option_name(t).is_none()
                && !spec
                    .flags
                    .iter()
                    .any(|f| f.as_bytes().eq_ignore_ascii_case(&t.text)))
    });
    let Some(first) = first else { return e };
    // Only when that word is what was refused, and not as a near miss of
    // an option (`mandatroy`).
    if e.message != unexpected(&words[first]).message {
        return e;
    }
    let mut body = Vec::new();
    for t in words[first..].iter().chain([last]) {
        if !body.is_empty() {
            body.push(b' ');
        }
        body.extend_from_slice(&t.text);
    }
    e.message.push_str(&format!(
        ": a body with spaces needs quotes ({}) or a {{N}} literal",
        show(&body)
    ));
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::super::testing::{h, publish, syntax};
    use crate::protocol::code::ErrorCode;
    use crate::protocol::command::Command;
    use crate::protocol::frame::Frame;
    use crate::protocol::parse::{parse_command, parse_line};

    #[test]
    fn a_body_in_words_is_told_to_be_quoted() {
        assert_eq!(
            syntax("pub \"\" jobs hello world"),
            "unexpected argument \"hello\": a body with spaces needs quotes \
             (\"hello world\") or a {N} literal"
        );
        assert_eq!(
            syntax("PUB \"\" jobs persistent resize photo 42"),
            "unexpected argument \"resize\": a body with spaces needs quotes \
             (\"resize photo 42\") or a {N} literal"
        );
        assert_eq!(
            syntax("PUB \"\" jobs say \"hi\" now"),
            "unexpected argument \"say\": a body with spaces needs quotes \
             (\"say hi now\") or a {N} literal"
        );
        // Another refusal is left as it is.
        assert_eq!(
            syntax("PUB x k mandatory mandatory hello world"),
            "duplicate option mandatory"
        );
        // A misspelled option is told as such, not as a body.
        assert_eq!(
            syntax("PUB \"\" jobs mandatroy x"),
            "unexpected argument \"mandatroy\" (did you mean mandatory?)"
        );
        assert_eq!(
            syntax("PUB \"\" jobs tll=5 x"),
            "unknown option \"tll=5\" (did you mean ttl=...?)"
        );
    }

    #[test]
    fn pub_inline_bodies() {
        let p = publish("PUB \"\" jobs hello");
        assert_eq!(
            (p.exchange.as_str(), &p.key[..], &p.body[..]),
            ("", &b"jobs"[..], &b"hello"[..])
        );
        assert_eq!(&publish("PUB \"\" jobs a=b").body[..], b"a=b");
        assert_eq!(&publish("PUB \"\" jobs \"{5}\"").body[..], b"{5}");
        assert_eq!(
            &publish("PUB \"\" jobs \"hello world\"").body[..],
            b"hello world"
        );
        assert_eq!(&publish("PUB \"\" jobs \"\"").body[..], b"");
        assert_eq!(&publish("PUB \"\" jobs persistent").body[..], b"persistent");
        let p = publish("PUB x \"\" body");
        assert_eq!(
            (&p.key[..], p.persistent, p.mandatory),
            (&b""[..], None, false)
        );
        assert_eq!(&publish("pub Ex Key Body").body[..], b"Body");
    }

    #[test]
    fn pub_options() {
        let p = publish("PUB orders invoice.created PERSISTENT mandatory id=m-1 h.enc=raw h.who=\"a b\" \"the body\"");
        assert_eq!(p.exchange, "orders");
        assert_eq!(p.key, "invoice.created");
        assert_eq!((p.persistent, p.mandatory), (Some(true), true));
        assert_eq!(p.id.as_deref(), Some("m-1"));
        assert_eq!(p.headers, vec![h("enc", "raw"), h("who", "a b")]);
        assert_eq!(&p.body[..], b"the body");
        assert_eq!(publish("PUB x k transient b").persistent, Some(false));
        assert_eq!(publish("PUB x k persistent=false b").persistent, None);
        assert_eq!(
            publish("PUB x k persistent transient=false b").persistent,
            Some(true)
        );
        assert!(publish("PUB x k mandatory=true b").mandatory);
    }

    #[test]
    fn pub_with_literal() {
        let body = Bytes::from_static(b"\x00\xff\r\n");
        let frame = Frame {
            line: Bytes::from_static(b"PUB orders k h.enc=raw {4}"),
            literal: Some(body.clone()),
        };
        let Command::Publish(p) = parse_command(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(p.body, body);
        assert_eq!(p.headers, vec![h("enc", "raw")]);
        let lit = Some(Bytes::from_static(b"abc"));
        let e = parse_line(b"PUB x k \"{3}\"", lit.clone()).unwrap_err();
        assert_eq!(e.message, "a literal must be announced by a last word {N}");
        assert_eq!(
            parse_line(b"PUB x k {4}", lit).unwrap_err().code,
            ErrorCode::Syntax
        );
        assert_eq!(
            syntax("PUB x k {3}"),
            "missing the literal announced by \"{3}\""
        );
    }

    #[test]
    fn pub_errors() {
        assert!(syntax("PUB").starts_with("missing <exchange>"));
        assert!(syntax("PUB x").starts_with("missing <routing-key>"));
        assert!(syntax("PUB \"\" jobs").starts_with("missing <body>; usage: PUB"));
        assert_eq!(
            syntax("PUB x k persistent transient b"),
            "persistent and transient exclude each other"
        );
        assert_eq!(syntax("PUB x k id=a id=b b"), "duplicate option id");
        assert_eq!(syntax("PUB x k id= b"), "id must be 1 to 255 bytes");
        assert_eq!(
            syntax("PUB x k mandatory mandatory b"),
            "duplicate option mandatory"
        );
        assert_eq!(
            syntax("PUB x k extra b"),
            "unexpected argument \"extra\": a body with spaces needs quotes (\"extra b\") \
             or a {N} literal"
        );
        assert_eq!(
            syntax("PUB x k \"quoted\" b"),
            "unexpected argument \"quoted\": a body with spaces needs quotes \
             (\"quoted b\") or a {N} literal"
        );
        assert_eq!(syntax("PUB x k foo=1 b"), "unknown option \"foo=1\"");
        assert!(syntax("PUB bad! k b").starts_with("bad exchange name \"bad!\""));
        assert_eq!(syntax("PUB x k h.a=1 h.a=2 b"), "duplicate header h.a");
    }

    #[test]
    fn pub_failure_options() {
        let p = publish("PUB \"\" jobs ttl=60000 delay=250 priority=9 body");
        assert_eq!(
            (p.ttl_ms, p.delay_ms, p.priority, &p.body[..]),
            (Some(60_000), Some(250), Some(9), &b"body"[..])
        );
        let p = publish("pub x k TTL=0 Delay=0 PRIORITY=0 b");
        assert_eq!(
            (p.ttl_ms, p.delay_ms, p.priority),
            (Some(0), Some(0), Some(0))
        );
        let p = publish(&format!(
            "PUB x k ttl={0} delay={0} priority=255 b",
            u64::MAX
        ));
        assert_eq!(
            (p.ttl_ms, p.delay_ms, p.priority),
            (Some(u64::MAX), Some(u64::MAX), Some(255))
        );
        let p = publish("PUB x k b");
        assert_eq!((p.ttl_ms, p.delay_ms, p.priority), (None, None, None));
        // The last word is always the body, even when it looks like an option.
        let p = publish("PUB x k ttl=5");
        assert_eq!((p.ttl_ms, &p.body[..]), (None, &b"ttl=5"[..]));
        let p = publish("PUB x k priority=1 delay=2");
        assert_eq!(
            (p.priority, p.delay_ms, &p.body[..]),
            (Some(1), None, &b"delay=2"[..])
        );
        let frame = Frame {
            line: Bytes::from_static(b"PUB x k persistent id=a ttl=5 h.x=1 priority=3 {2}"),
            literal: Some(Bytes::from_static(b"\r\n")),
        };
        let Command::Publish(p) = parse_command(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.ttl_ms, p.priority, p.persistent),
            (Some(5), Some(3), Some(true))
        );
        assert_eq!((p.headers, &p.body[..]), (vec![h("x", "1")], &b"\r\n"[..]));
    }

    #[test]
    fn pub_failure_option_errors() {
        let cases: &[(&str, &str)] = &[
            ("ttl=soon", "ttl: expected a number, got \"soon\""),
            ("ttl=-5", "ttl: expected a number, got \"-5\""),
            ("TTL=", "ttl: expected a number, got \"\""),
            ("delay=1e3", "delay: expected a number, got \"1e3\""),
            (
                "delay=18446744073709551616",
                "delay: expected a number, got \"18446744073709551616\"",
            ),
            (
                "priority=256",
                "priority: must be between 0 and 255, got 256",
            ),
            ("priority=high", "priority: expected a number, got \"high\""),
            ("ttl", "ttl needs a value (ttl=...)"),
            ("ttl=1 ttl=2", "duplicate option ttl"),
            ("delay=1 DELAY=2", "duplicate option delay"),
            ("priority=1 priority=1", "duplicate option priority"),
            ("expires=5", "unknown option \"expires=5\""),
        ];
        for (opt, want) in cases {
            assert_eq!(syntax(&format!("PUB x k {opt} body")), *want, "{opt}");
        }
        assert!(syntax("PUB \"\" jobs").ends_with(
            "[id=<msg-id>] [ttl=<ms>] [delay=<ms>] [priority=<n>] [group=<key>] [h.<name>=<value>...] <body>"
        ));
    }

    #[test]
    fn pub_group() {
        assert_eq!(
            publish("PUB \"\" q group=order-1 x").group.as_deref(),
            Some(&b"order-1"[..])
        );
        assert_eq!(syntax("PUB \"\" q group= x"), "group: must not be empty");
    }
}
