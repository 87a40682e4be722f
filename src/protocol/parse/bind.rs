//! `BIND` and `UNBIND`: queue, exchange, an optional key, header
//! arguments and `match=`. See protocol.md, "BIND"; run by `cmd/bind.rs`.

use bytes::Bytes;

use super::{choice, name, routing_key, Args, Opt, Res, Spec};
use crate::protocol::command::Bind;
use crate::protocol::encode::{opt, HEADER_MATCHES};

/// How `BIND` and `UNBIND` are used.
pub(super) const USAGE: &str =
    "BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]";

pub(super) fn bind(mut a: Args<'_>) -> Res<Bind> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let exchange = name(a.required("<exchange>")?, "exchange", true)?;
    let key = match a.optional(&[]) {
        Some(tok) => routing_key(tok)?,
        None => Bytes::new(),
    };
    let spec = Spec {
        values: &[opt::MATCH],
        headers: true,
        ..Spec::default()
    };
    let mut b = Bind {
        queue,
        exchange,
        key,
        headers: Vec::new(),
        matching: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Header(h) => b.headers.push(h),
            Opt::Value(_, v) => b.matching = Some(choice(opt::MATCH, v, HEADER_MATCHES)?),
            Opt::Flag(..) => {}
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{h, ok, syntax};
    use super::*;
    use crate::protocol::command::{Command, HeaderMatch};

    #[test]
    fn bind_and_unbind() {
        let b = Bind {
            queue: "q".into(),
            exchange: "ex".into(),
            key: "a.*.#".into(),
            headers: vec![],
            matching: None,
        };
        assert_eq!(ok("BIND q ex a.*.#"), Command::Bind(b.clone()));
        assert_eq!(ok("unbind q ex a.*.#"), Command::Unbind(b));
        let c = ok("BIND q hx h.format=pdf h.Type=\"x y\" h.e= MATCH=Any");
        let Command::Bind(b) = c else { panic!() };
        assert_eq!(b.key, "");
        assert_eq!(
            b.headers,
            vec![h("format", "pdf"), h("Type", "x y"), h("e", "")]
        );
        assert_eq!(b.matching, Some(HeaderMatch::Any));
        let Command::Bind(b) = ok("BIND q ex \"a=b\" match=all") else {
            panic!()
        };
        assert_eq!(
            (&b.key[..], b.matching),
            (&b"a=b"[..], Some(HeaderMatch::All))
        );
        let Command::Bind(b) = ok("BIND q \"\" \"\"") else {
            panic!()
        };
        assert_eq!((b.exchange.as_str(), &b.key[..]), ("", &b""[..]));
        let Command::Unbind(b) = ok("UNBIND q ex h.x=1 match=any") else {
            panic!()
        };
        assert_eq!((b.headers.len(), b.matching), (1, Some(HeaderMatch::Any)));
    }

    #[test]
    fn bind_errors() {
        assert!(syntax("BIND q").starts_with("missing <exchange>"));
        assert_eq!(syntax("BIND q ex k extra"), "unexpected argument \"extra\"");
        assert_eq!(syntax("BIND q ex a=b"), "unknown option \"a=b\"");
        assert_eq!(
            syntax("BIND q ex k match=some"),
            "match: expected all or any, got \"some\""
        );
        assert_eq!(syntax("BIND q ex k h.x=1 h.x=2"), "duplicate header h.x");
        assert!(ok("BIND q ex k h.x=1 h.X=2") != Command::Ping);
        assert!(syntax("BIND q ex k h.=1").starts_with("bad header name \"\""));
        assert_eq!(
            syntax("BIND q ex k h.a/b=1"),
            "unexpected argument \"h.a/b=1\""
        );
        let long = format!("BIND q ex k h.{}=1", "n".repeat(256));
        assert!(syntax(&long).starts_with("bad header name \"nnn"));
        assert_eq!(
            syntax("BIND q ex k match=all match=any"),
            "duplicate option match"
        );
        assert_eq!(syntax("BIND \"\" ex"), "queue name must not be empty");
        let long = "k".repeat(256);
        assert_eq!(
            syntax(&format!("BIND q ex {long}")),
            "routing key is longer than 255 bytes"
        );
        assert_eq!(
            syntax(&format!("BIND q ex \"{}\"", "\u{e9}".repeat(128))),
            "routing key is longer than 255 bytes"
        );
    }
}
