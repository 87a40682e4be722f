//! `DECLARE EXCHANGE` and `DECLARE QUEUE`: exchange types and flags, the
//! queue options, which of them a stream takes, and their limits. See
//! protocol.md, "DECLARE"; run by `cmd/declare.rs`.

use super::{
    choice, key_bytes, name, name_bytes, number, plain_word, sub_verb, Args, Opt, Res, Spec,
};
use crate::protocol::command::{
    Command, DeclareExchange, DeclareQueue, ExchangeKind, QueueArgs, QueueMode,
};
use crate::protocol::encode::{opt, EXCHANGE_KINDS, OVERFLOWS, QUEUE_TYPES};
use crate::protocol::error::{show, ParseError};

/// How `DECLARE` is used.
pub(super) const USAGE: &str = "DECLARE EXCHANGE|QUEUE <name> ...";

const QUEUE_USAGE: &str = "DECLARE QUEUE <name> [durable] [exclusive] [auto-delete] \
                           [max-length=N] [max-bytes=N] [overflow=drop-head|reject-publish|block] \
                           [ttl=<ms>] [expires=<ms>] [dead-letter=<ex>] [dead-letter-key=<key>] \
                           [delivery-limit=N] [ack-timeout=<ms>] [max-priority=N] \
                           [dedup-window=<ms>] [retry-delays=<ms>,<ms>,...] \
                           [single-active] [groups] [replicas=N] [schema=<subject>] \
                           | DECLARE QUEUE <name> type=stream [durable] [max-age=<ms>] \
                           [max-bytes=N] [dead-letter=<ex>] [dead-letter-key=<key>] \
                           [delivery-limit=N] [ack-timeout=<ms>] [partitions=N] [replicas=N] \
                           [schema=<subject>]";

const QUEUE_OPTIONS: &[&str] = &[
    opt::TYPE,
    opt::MAX_AGE,
    opt::PARTITIONS,
    opt::MAX_LENGTH,
    opt::MAX_BYTES,
    opt::OVERFLOW,
    opt::TTL,
    opt::EXPIRES,
    opt::DEAD_LETTER,
    opt::DEAD_LETTER_KEY,
    opt::DELIVERY_LIMIT,
    opt::ACK_TIMEOUT,
    opt::MAX_PRIORITY,
    opt::DEDUP_WINDOW,
    opt::RETRY_DELAYS,
    opt::REPLICAS,
    opt::SCHEMA,
];

/// At most this many replicas of a queue.
pub(crate) const MAX_REPLICAS: u64 = 7;

/// At most this many partitions in a partitioned stream.
pub(crate) const MAX_PARTITIONS: u64 = 256;

/// At most this many `retry-delays` values.
const MAX_RETRY_DELAYS: usize = 32;

pub(super) fn declare(mut a: Args<'_>) -> Res<Command> {
    if sub_verb(&mut a, "DECLARE")? {
        a.usage = "DECLARE EXCHANGE <name> direct|fanout|topic|headers|hash [durable] [auto-delete] [alternate=<ex>] [hash-header=<name>] [schema=<subject>]";
        let name = name(a.required("<name>")?, "exchange", false)?;
        let kind = choice("type", &a.required("<type>")?.text, EXCHANGE_KINDS)?;
        let spec = Spec {
            flags: &[opt::DURABLE, opt::AUTO_DELETE],
            values: &[opt::ALTERNATE, opt::HASH_HEADER, opt::SCHEMA],
            ..Spec::default()
        };
        let mut d = DeclareExchange {
            name,
            kind,
            durable: false,
            auto_delete: false,
            alternate: None,
            hash_header: None,
            schema: None,
        };
        for o in a.options(&spec)? {
            match o {
                Opt::Flag(opt::DURABLE, on) => d.durable = on,
                Opt::Flag(_, on) => d.auto_delete = on,
                Opt::Value(opt::ALTERNATE, v) => {
                    d.alternate = Some(name_bytes(v, "alternate exchange", false)?)
                }
                Opt::Value(opt::SCHEMA, v) => d.schema = Some(name_bytes(v, "subject", false)?),
                Opt::Value(_, v) => {
                    if kind != ExchangeKind::Hash {
                        return Err(ParseError::syntax(
                            "hash-header= is for exchanges of type hash",
                        ));
                    }
                    d.hash_header = Some(plain_word(v, "header name", 255)?);
                }
                Opt::Header(_) => {}
            }
        }
        return Ok(Command::DeclareExchange(d));
    }
    a.usage = QUEUE_USAGE;
    let name = name(a.required("<name>")?, "queue", true)?;
    let spec = Spec {
        flags: &[
            opt::DURABLE,
            opt::EXCLUSIVE,
            opt::AUTO_DELETE,
            opt::SINGLE_ACTIVE,
            opt::GROUPS,
        ],
        values: QUEUE_OPTIONS,
        ..Spec::default()
    };
    let mut d = DeclareQueue {
        name,
        durable: false,
        exclusive: false,
        auto_delete: false,
        args: Default::default(),
        partitions: None,
        replicas: None,
    };
    let mut given: Vec<&'static str> = Vec::new();
    let mut kind = KindOptions::default();
    for o in a.options(&spec)? {
        if let Opt::Flag(name, true) | Opt::Value(name, _) = o {
            given.push(name);
        }
        match o {
            Opt::Flag(opt::DURABLE, on) => d.durable = on,
            Opt::Flag(opt::EXCLUSIVE, on) => d.exclusive = on,
            Opt::Flag(opt::SINGLE_ACTIVE, on) => kind.single_active = on,
            Opt::Flag(opt::GROUPS, on) => kind.groups = on,
            Opt::Flag(_, on) => d.auto_delete = on,
            Opt::Value(opt::PARTITIONS, v) => {
                d.partitions = Some(number(opt::PARTITIONS, v, 1, MAX_PARTITIONS)? as u32)
            }
            Opt::Value(opt::TYPE, v) => kind.stream = choice(opt::TYPE, v, QUEUE_TYPES)?,
            Opt::Value(opt::REPLICAS, v) => {
                d.replicas = Some(number(opt::REPLICAS, v, 1, MAX_REPLICAS)? as u8)
            }
            Opt::Value(name, v) => queue_arg(&mut d.args, name, v)?,
            Opt::Header(_) => {}
        }
    }
    d.args.mode = check_queue_kind(&d, &given, kind)?;
    Ok(Command::DeclareQueue(d))
}

/// The options that choose a queue's kind, as given (the last of a
/// repeated one counts); [`check_queue_kind`] makes them a [`QueueMode`].
#[derive(Debug, Default, Clone, Copy)]
struct KindOptions {
    single_active: bool,
    groups: bool,
    stream: bool,
}

/// A stream takes only its own options and those that act per consumer
/// group (dead letters, delivery limit, ack timeout); a queue none of the
/// stream's own; and
/// `single-active` and `groups` exclude each other. Returns the kind.
fn check_queue_kind(d: &DeclareQueue, given: &[&'static str], kind: KindOptions) -> Res<QueueMode> {
    const STREAM_ONLY: &[&str] = &[opt::MAX_AGE, opt::PARTITIONS];
    const STREAM_TAKES: &[&str] = &[
        opt::TYPE,
        opt::DURABLE,
        opt::MAX_AGE,
        opt::MAX_BYTES,
        opt::PARTITIONS,
        opt::REPLICAS,
        // Per consumer group: see `Stream::settle`.
        opt::DEAD_LETTER,
        opt::DEAD_LETTER_KEY,
        opt::DELIVERY_LIMIT,
        opt::ACK_TIMEOUT,
        opt::SCHEMA,
    ];
    let refused =
        |what: &str, opt: &str| Err(ParseError::syntax(format!("{what} does not take {opt}")));
    if kind.stream {
        if let Some(opt) = given.iter().find(|o| !STREAM_TAKES.contains(o)) {
            return refused("a stream (type=stream)", opt);
        }
        if d.name.is_empty() {
            return Err(ParseError::syntax("a stream needs a name"));
        }
        if d.partitions.is_some() && d.args.schema.is_some() {
            // Its messages come through its `hash` exchange, which a
            // queue's `schema=` (a check of the default exchange) misses.
            return Err(ParseError::syntax(
                "a partitioned stream does not take schema= (publishes go through its exchange)",
            ));
        }
    } else if let Some(opt) = given.iter().find(|o| STREAM_ONLY.contains(o)) {
        return Err(ParseError::syntax(format!(
            "{opt} is a stream option (add type=stream)"
        )));
    }
    Ok(match kind {
        KindOptions { stream: true, .. } => QueueMode::Stream,
        KindOptions {
            single_active: true,
            groups: true,
            ..
        } => {
            return Err(ParseError::syntax(
                "single-active and groups exclude each other",
            ))
        }
        KindOptions {
            single_active: true,
            ..
        } => QueueMode::SingleActive,
        KindOptions { groups: true, .. } => QueueMode::Groups,
        _ => QueueMode::Classic,
    })
}

/// One `DECLARE QUEUE` option of [`QUEUE_OPTIONS`] into `args`.
fn queue_arg(args: &mut QueueArgs, name: &str, v: &[u8]) -> Res<()> {
    match name {
        opt::MAX_LENGTH => args.max_length = Some(number(name, v, 0, u64::MAX)?),
        opt::MAX_BYTES => args.max_bytes = Some(number(name, v, 0, u64::MAX)?),
        opt::OVERFLOW => args.overflow = choice(name, v, OVERFLOWS)?,
        opt::TTL => args.ttl_ms = Some(number(name, v, 0, u64::MAX)?),
        opt::EXPIRES => args.expires_ms = Some(number(name, v, 1, u64::MAX)?),
        opt::DEAD_LETTER => args.dead_letter = Some(name_bytes(v, "dead-letter exchange", true)?),
        opt::DEAD_LETTER_KEY => args.dead_letter_key = Some(key_bytes(v, name)?),
        opt::DELIVERY_LIMIT => {
            args.delivery_limit = Some(number(name, v, 1, u64::from(u32::MAX))? as u32);
        }
        opt::ACK_TIMEOUT => args.ack_timeout_ms = Some(number(name, v, 1, u64::MAX)?),
        opt::MAX_PRIORITY => args.max_priority = Some(number(name, v, 1, 255)? as u8),
        opt::DEDUP_WINDOW => args.dedup_window_ms = Some(number(name, v, 1, u64::MAX)?),
        opt::MAX_AGE => args.max_age_ms = Some(number(name, v, 1, u64::MAX)?),
        opt::SCHEMA => args.schema = Some(name_bytes(v, "subject", false)?),
        _ => args.retry_delays_ms = retry_delays(v)?,
    }
    Ok(())
}

/// `<ms>,<ms>,...`: 1 to [`MAX_RETRY_DELAYS`] numbers, no empty item.
fn retry_delays(v: &[u8]) -> Res<Vec<u64>> {
    const WHAT: &str = opt::RETRY_DELAYS;
    let items: Vec<&[u8]> = v.split(|&b| b == b',').collect();
    if items.len() > MAX_RETRY_DELAYS {
        return Err(ParseError::syntax(format!(
            "{WHAT}: at most {MAX_RETRY_DELAYS} values, got {}",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|item| {
            if item.is_empty() {
                return Err(ParseError::syntax(format!(
                    "{WHAT}: empty item in {}",
                    show(v)
                )));
            }
            number(WHAT, item, 0, u64::MAX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::super::testing::{ok, syntax};
    use super::*;
    use crate::protocol::command::Overflow;
    use crate::protocol::parse::parse_line;

    #[test]
    fn declare_exchange() {
        let d = DeclareExchange {
            hash_header: None,
            schema: None,
            name: "logs".into(),
            kind: ExchangeKind::Fanout,
            durable: true,
            auto_delete: false,
            alternate: None,
        };
        assert_eq!(
            ok("DECLARE EXCHANGE logs fanout durable"),
            Command::DeclareExchange(d.clone())
        );
        assert_eq!(
            ok("declare exchange logs FANOUT Durable=TRUE"),
            Command::DeclareExchange(d)
        );
        let d = DeclareExchange {
            hash_header: None,
            schema: None,
            name: "a.b:c/d-e_f".into(),
            kind: ExchangeKind::Headers,
            durable: false,
            auto_delete: true,
            alternate: Some("alt".into()),
        };
        assert_eq!(
            ok("DECLARE Exchange a.b:c/d-e_f headers auto-delete durable=false alternate=alt"),
            Command::DeclareExchange(d)
        );
        for (t, k) in [
            ("direct", ExchangeKind::Direct),
            ("TOPIC", ExchangeKind::Topic),
        ] {
            let c = ok(&format!("DECLARE EXCHANGE x {t}"));
            assert!(matches!(c, Command::DeclareExchange(d) if d.kind == k));
        }
    }

    #[test]
    fn declare_exchange_errors() {
        assert_eq!(
            syntax("DECLARE EXCHANGE \"\" direct"),
            "exchange name must not be empty"
        );
        assert_eq!(syntax("DECLARE EXCHANGE x"), format!("missing <type>; usage: DECLARE EXCHANGE <name> direct|fanout|topic|headers|hash [durable] [auto-delete] [alternate=<ex>] [hash-header=<name>] [schema=<subject>]"));
        assert_eq!(
            syntax("DECLARE EXCHANGE x fan"),
            "type: expected direct or fanout or topic or headers or hash, got \"fan\""
        );
        assert_eq!(
            syntax("DECLARE EXCHANGE x direct durable=maybe"),
            "durable: expected true or false, got \"maybe\""
        );
        assert_eq!(
            syntax("DECLARE EXCHANGE x direct durable durable=true"),
            "duplicate option durable"
        );
        assert_eq!(
            syntax("DECLARE EXCHANGE x direct alternate=\"\""),
            "alternate exchange name must not be empty"
        );
        assert_eq!(
            syntax("DECLARE EXCHANGE x direct exclusive"),
            "unexpected argument \"exclusive\""
        );
        assert!(syntax("DECLARE EXCHANGE \"a b\" direct")
            .starts_with("bad exchange name \"a b\": use 1-255 bytes"));
        let long = "n".repeat(256);
        assert!(syntax(&format!("DECLARE EXCHANGE {long} direct")).starts_with("bad exchange name"));
        assert!(ok(&format!("DECLARE EXCHANGE {} direct", "n".repeat(255))) != Command::Ping);
    }

    #[test]
    fn declare_queue() {
        let q = |name: &str, durable, exclusive, auto_delete| {
            Command::DeclareQueue(DeclareQueue {
                partitions: None,
                replicas: None,
                name: name.into(),
                durable,
                exclusive,
                auto_delete,
                args: Default::default(),
            })
        };
        assert_eq!(ok("DECLARE QUEUE jobs"), q("jobs", false, false, false));
        assert_eq!(
            ok("declare queue \"\" exclusive AUTO-DELETE"),
            q("", false, true, true)
        );
        assert_eq!(
            ok("DECLARE QUEUE Jobs durable exclusive=false"),
            q("Jobs", true, false, false)
        );
    }

    #[test]
    fn declare_queue_errors() {
        assert_eq!(
            syntax("DECLARE QUEUE q durable ttl"),
            "ttl needs a value (ttl=...)"
        );
        assert_eq!(
            syntax("DECLARE QUEUE q mandatory"),
            "unexpected argument \"mandatory\""
        );
        assert_eq!(
            syntax("DECLARE QUEUE q color=red"),
            "unknown option \"color=red\""
        );
        assert_eq!(
            syntax("DECLARE QUEUE q \"durable\""),
            "unexpected argument \"durable\""
        );
        assert_eq!(
            syntax("DECLARE QUEUE q exclusive exclusive"),
            "duplicate option exclusive"
        );
        assert!(syntax("DECLARE QUEUE").starts_with("missing <name>"));
        assert!(syntax("DECLARE QUEUE jobs!").starts_with("bad queue name \"jobs!\""));
        assert!(syntax("DECLARE").starts_with("missing EXCHANGE or QUEUE"));
        assert_eq!(
            syntax("DECLARE TABLE x"),
            "DECLARE: expected EXCHANGE or QUEUE, got \"TABLE\""
        );
        assert_eq!(
            syntax("DECLARE QUEUE caf\u{e9}"),
            "bad queue name \"caf\u{e9}\": use 1-255 bytes of A-Z a-z 0-9 _ . : / -"
        );
    }

    #[test]
    fn queue_schema_on_a_stream_but_not_a_partitioned_one() {
        let a = queue_args("DECLARE QUEUE s type=stream schema=events");
        assert_eq!(a.schema.as_deref(), Some("events"));
        assert_eq!(
            syntax("DECLARE QUEUE s type=stream partitions=3 schema=events"),
            "a partitioned stream does not take schema= (publishes go through its exchange)"
        );
        assert!(syntax("DECLARE QUEUE q schema=\"\"").starts_with("subject name must not be empty"));
    }

    fn queue_args(line: &str) -> QueueArgs {
        match ok(line) {
            Command::DeclareQueue(d) => d.args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn declare_queue_options() {
        let line =
            "DECLARE QUEUE jobs durable max-length=10 max-bytes=1000 overflow=reject-publish \
                    ttl=60000 expires=3600000 dead-letter=dlx dead-letter-key=jobs.dead \
                    delivery-limit=5 ack-timeout=30000 max-priority=10 dedup-window=5000 \
                    retry-delays=1000,5000,30000 schema=orders";
        let Command::DeclareQueue(d) = ok(line) else {
            panic!()
        };
        assert_eq!((d.name.as_str(), d.durable), ("jobs", true));
        let want = QueueArgs {
            mode: QueueMode::Classic,
            max_age_ms: None,
            max_length: Some(10),
            max_bytes: Some(1000),
            overflow: Overflow::RejectPublish,
            ttl_ms: Some(60_000),
            expires_ms: Some(3_600_000),
            dead_letter: Some("dlx".into()),
            dead_letter_key: Some("jobs.dead".into()),
            delivery_limit: Some(5),
            ack_timeout_ms: Some(30_000),
            max_priority: Some(10),
            dedup_window_ms: Some(5000),
            retry_delays_ms: vec![1000, 5000, 30_000],
            schema: Some("orders".into()),
        };
        assert_eq!(d.args, want);
        assert_eq!(queue_args("DECLARE QUEUE q"), QueueArgs::default());
        assert_eq!(queue_args("DECLARE QUEUE q").overflow, Overflow::DropHead);
    }

    #[test]
    fn declare_queue_options_case_and_limits() {
        for (v, o) in [
            ("drop-head", Overflow::DropHead),
            ("DROP-HEAD", Overflow::DropHead),
            ("Reject-Publish", Overflow::RejectPublish),
            ("block", Overflow::Block),
            ("BLOCK", Overflow::Block),
        ] {
            assert_eq!(
                queue_args(&format!("DECLARE QUEUE q overflow={v}")).overflow,
                o
            );
        }
        let a = queue_args(
            "declare queue q MAX-LENGTH=0 Max-Bytes=0 TTL=0 Expires=1 Dead-Letter=\"\" \
             DEAD-LETTER-KEY=\"\" Delivery-Limit=1 ACK-TIMEOUT=1 max-PRIORITY=1 \
             Dedup-Window=1 RETRY-DELAYS=0",
        );
        let want = QueueArgs {
            mode: QueueMode::Classic,
            max_age_ms: None,
            max_length: Some(0),
            max_bytes: Some(0),
            overflow: Overflow::DropHead,
            ttl_ms: Some(0),
            expires_ms: Some(1),
            dead_letter: Some(String::new()),
            dead_letter_key: Some(Bytes::new()),
            delivery_limit: Some(1),
            ack_timeout_ms: Some(1),
            max_priority: Some(1),
            dedup_window_ms: Some(1),
            retry_delays_ms: vec![0],
            schema: None,
        };
        assert_eq!(a, want);
        let max = u64::MAX;
        let a = queue_args(&format!(
            "DECLARE QUEUE q max-length={max} max-bytes={max} ttl={max} expires={max} \
             delivery-limit=4294967295 ack-timeout={max} max-priority=255 dedup-window={max}"
        ));
        assert_eq!(
            (a.max_length, a.max_bytes, a.ttl_ms, a.expires_ms),
            (Some(max), Some(max), Some(max), Some(max))
        );
        assert_eq!(
            (a.delivery_limit, a.ack_timeout_ms, a.max_priority),
            (Some(u32::MAX), Some(max), Some(255))
        );
        assert_eq!(a.dedup_window_ms, Some(max));
        let delays: Vec<String> = (1..=32).map(|n| n.to_string()).collect();
        let a = queue_args(&format!(
            "DECLARE QUEUE q retry-delays={}",
            delays.join(",")
        ));
        assert_eq!(a.retry_delays_ms, (1..=32).collect::<Vec<u64>>());
        let a = queue_args("DECLARE QUEUE q dead-letter=a.b:c/d-e_f dead-letter-key=\"a b=c\"");
        assert_eq!(a.dead_letter.as_deref(), Some("a.b:c/d-e_f"));
        assert_eq!(a.dead_letter_key.as_deref(), Some(&b"a b=c"[..]));
        let key = "k".repeat(255);
        let a = queue_args(&format!("DECLARE QUEUE q dead-letter-key={key}"));
        assert_eq!(a.dead_letter_key, Some(Bytes::from(key)));
        // A byte-level fixture: options may come in any order, flags between them.
        let Command::DeclareQueue(d) = parse_line(
            b"DECLARE QUEUE \"\"\tretry-delays=5\texclusive  overflow=block auto-delete",
            None,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.name.as_str(), d.exclusive, d.auto_delete),
            ("", true, true)
        );
        assert_eq!(
            (d.args.retry_delays_ms, d.args.overflow),
            (vec![5], Overflow::Block)
        );
    }

    #[test]
    fn declare_queue_option_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "max-length=ten",
                "max-length: expected a number, got \"ten\"",
            ),
            ("max-length=-1", "max-length: expected a number, got \"-1\""),
            (
                "max-length=18446744073709551616",
                "max-length: expected a number, got \"18446744073709551616\"",
            ),
            ("max-bytes=1k", "max-bytes: expected a number, got \"1k\""),
            ("max-bytes=", "max-bytes: expected a number, got \"\""),
            (
                "overflow=drop",
                "overflow: expected drop-head or reject-publish or block, got \"drop\"",
            ),
            (
                "overflow=drop_head",
                "overflow: expected drop-head or reject-publish or block, got \"drop_head\"",
            ),
            ("ttl=1.5", "ttl: expected a number, got \"1.5\""),
            (
                "expires=0",
                "expires: must be between 1 and 18446744073709551615, got 0",
            ),
            ("expires=soon", "expires: expected a number, got \"soon\""),
            (
                "dead-letter=dl!x",
                "bad dead-letter exchange name \"dl!x\": use 1-255 bytes of A-Z a-z 0-9 _ . : / -",
            ),
            (
                "delivery-limit=0",
                "delivery-limit: must be between 1 and 4294967295, got 0",
            ),
            (
                "delivery-limit=4294967296",
                "delivery-limit: must be between 1 and 4294967295, got 4294967296",
            ),
            (
                "ack-timeout=0",
                "ack-timeout: must be between 1 and 18446744073709551615, got 0",
            ),
            (
                "ack-timeout=1s",
                "ack-timeout: expected a number, got \"1s\"",
            ),
            (
                "max-priority=0",
                "max-priority: must be between 1 and 255, got 0",
            ),
            (
                "max-priority=256",
                "max-priority: must be between 1 and 255, got 256",
            ),
            (
                "dedup-window=0",
                "dedup-window: must be between 1 and 18446744073709551615, got 0",
            ),
            ("retry-delays=", "retry-delays: empty item in \"\""),
            ("retry-delays=1,,2", "retry-delays: empty item in \"1,,2\""),
            ("retry-delays=1,2,", "retry-delays: empty item in \"1,2,\""),
            ("retry-delays=,1", "retry-delays: empty item in \",1\""),
            (
                "retry-delays=1,x",
                "retry-delays: expected a number, got \"x\"",
            ),
            (
                "retry-delays=\"1, 2\"",
                "retry-delays: expected a number, got \" 2\"",
            ),
            (
                "retry-delays=1;2",
                "retry-delays: expected a number, got \"1;2\"",
            ),
            ("max-length", "max-length needs a value (max-length=...)"),
            ("overflow", "overflow needs a value (overflow=...)"),
            (
                "retry-delays",
                "retry-delays needs a value (retry-delays=...)",
            ),
            ("ttl=1 TTL=2", "duplicate option ttl"),
            ("max-length=1 max-length=1", "duplicate option max-length"),
            (
                "retry-delays=1 retry-delays=2",
                "duplicate option retry-delays",
            ),
            ("overflow=block overflow=BLOCK", "duplicate option overflow"),
            (
                "dead-letter=a Dead-Letter=b",
                "duplicate option dead-letter",
            ),
            ("delay=5", "unknown option \"delay=5\""),
            ("priority=1", "unknown option \"priority=1\""),
        ];
        for (opt, want) in cases {
            assert_eq!(syntax(&format!("DECLARE QUEUE q {opt}")), *want, "{opt}");
        }
        let delays: Vec<String> = (1..=33).map(|n| n.to_string()).collect();
        assert_eq!(
            syntax(&format!(
                "DECLARE QUEUE q retry-delays={}",
                delays.join(",")
            )),
            "retry-delays: at most 32 values, got 33"
        );
        assert_eq!(
            syntax(&format!(
                "DECLARE QUEUE q dead-letter-key={}",
                "k".repeat(256)
            )),
            "dead-letter-key is longer than 255 bytes"
        );
        assert_eq!(
            syntax(&format!("DECLARE QUEUE q dead-letter={}", "x".repeat(256))),
            format!(
                "bad dead-letter exchange name \"{}...\": use 1-255 bytes of A-Z a-z 0-9 _ . : / -",
                "x".repeat(64)
            )
        );
        assert!(syntax("DECLARE QUEUE").starts_with(
            "missing <name>; usage: DECLARE QUEUE <name> [durable] [exclusive] [auto-delete] \
             [max-length=N]"
        ));
        assert!(syntax("DECLARE QUEUE").ends_with("[partitions=N] [replicas=N] [schema=<subject>]"));
    }

    #[test]
    fn streams_groups_and_hash_exchanges() {
        let Command::DeclareExchange(d) = ok("DECLARE EXCHANGE h HASH hash-header=user") else {
            panic!()
        };
        assert_eq!(
            (d.kind, d.hash_header.as_deref()),
            (ExchangeKind::Hash, Some("user"))
        );
        assert_eq!(
            syntax("DECLARE EXCHANGE h direct hash-header=user"),
            "hash-header= is for exchanges of type hash"
        );
        let Command::DeclareQueue(d) =
            ok("DECLARE QUEUE s type=STREAM durable max-age=60000 max-bytes=1000 partitions=3")
        else {
            panic!()
        };
        assert_eq!(d.args.mode, QueueMode::Stream);
        assert_eq!(
            (d.args.max_age_ms, d.args.max_bytes, d.partitions),
            (Some(60000), Some(1000), Some(3))
        );
        // A replicated stream (on a cluster node).
        let Command::DeclareQueue(d) = ok("DECLARE QUEUE s type=stream replicas=3") else {
            panic!()
        };
        assert_eq!((d.args.mode, d.replicas), (QueueMode::Stream, Some(3)));
        // Dead letters and delivery limits for its consumer groups.
        let Command::DeclareQueue(d) = ok(
            "DECLARE QUEUE s type=stream dead-letter=dlx dead-letter-key=k delivery-limit=3 ack-timeout=500",
        ) else {
            panic!()
        };
        assert_eq!(
            (
                d.args.dead_letter.as_deref(),
                d.args.delivery_limit,
                d.args.ack_timeout_ms
            ),
            (Some("dlx"), Some(3), Some(500))
        );
        let Command::DeclareQueue(d) = ok("DECLARE QUEUE q single-active") else {
            panic!()
        };
        assert_eq!(d.args.mode, QueueMode::SingleActive);
        assert!(
            matches!(ok("DECLARE QUEUE q groups"), Command::DeclareQueue(d) if d.args.mode == QueueMode::Groups)
        );
        for (line, want) in [
            (
                "DECLARE QUEUE s type=stream ttl=5",
                "a stream (type=stream) does not take ttl",
            ),
            (
                "DECLARE QUEUE s type=stream exclusive",
                "a stream (type=stream) does not take exclusive",
            ),
            (
                "DECLARE QUEUE s max-age=5",
                "max-age is a stream option (add type=stream)",
            ),
            (
                "DECLARE QUEUE s partitions=2",
                "partitions is a stream option (add type=stream)",
            ),
            (
                "DECLARE QUEUE s type=stream partitions=0",
                "partitions: must be between 1 and 256, got 0",
            ),
            (
                "DECLARE QUEUE q single-active groups",
                "single-active and groups exclude each other",
            ),
            ("DECLARE QUEUE \"\" type=stream", "a stream needs a name"),
        ] {
            assert_eq!(syntax(line), want, "{line}");
        }
        assert!(syntax("DECLARE QUEUE s type=log").starts_with("type: expected queue or stream"));
    }
}
