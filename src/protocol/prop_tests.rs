//! Property tests of the wire layer, the stable-toolchain counterpart of the
//! cargo-fuzz targets in `fuzz/` (they run in plain `cargo test`):
//!
//! - **round trip**: a generated [`Command`] encodes to a frame that the
//!   framer and the parser turn back into the same command;
//! - **parser**: any line (and literal) parses or is refused without a
//!   panic, and what parses survives encoding;
//! - **framer**: a stream framed in any chunking gives the same events and
//!   error as framed in one piece; the read buffer stays within the limits
//!   and never grows ahead of the bytes that arrived (a `{N}` reserves
//!   nothing);
//! - **tokenizer**: never panics; a word survives [`encode_quoted`] and
//!   [`encode_word`].
//!
//! 256 cases per property by default; `PROPTEST_CASES=N` for longer runs.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::check::{decode, frame_in_chunks};
use super::command::{
    Ack, AckMode, Auth, Bind, CloseConnection, ClusterCommand, Command, DeclareExchange,
    DeclareQueue, DeleteExchange, DeleteQueue, ExchangeKind, Get, Header, HeaderMatch, Hello, Help,
    List, ListKind, Nack, Overflow, Peek, PermissionArgs, Publish, Purge, QueueArgs, QueueMode,
    Redrive, Secret, Seek, Stats, StreamStart, Subscribe, Touch, Tx, Unsubscribe, UserAdd,
    UserCommand, UserPasswd, UserPermit,
};
use super::frame::Limits;
use super::parse::{parse_line, MAX_PARTITIONS};
use super::token::{encode_quoted, encode_word, tokenize, Token};

// ---- strategies -----------------------------------------------------------

/// An exchange or queue name.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:/-]{1,255}"
}

/// A queue name, or `""` where the parser allows it.
fn name_or_empty() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), name()]
}

/// Free text as a line can carry it (no NUL, CR or LF), weighted towards the
/// bytes that need quoting and the shapes that look like syntax.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!("[ -~\t]{{0,{max_chars}}}")).unwrap(),
        2 => proptest::string::string_regex(&format!("[^\\x00\\r\\n]{{0,{max_chars}}}")).unwrap(),
        1 => prop::sample::select(vec![
            "", "{5}", "{0}", "a=b", "=", "\"", "\\", "\\\"", "h.x=1", "*", "-", "#",
            "durable", "PING", " {5}", "x{5}", "\u{e9}", "\x7f",
        ])
        .prop_map(String::from),
    ]
}

/// A routing key, binding key or header value: any token of 0..=max bytes,
/// UTF-8 or not (only NUL, CR and LF can never be in one).
fn key_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => text(max / 4).prop_map(String::into_bytes),
        1 => vec(any::<u8>().prop_filter("NUL, CR, LF", |b| !matches!(b, 0 | b'\r' | b'\n')), 0..=max),
    ]
    .prop_filter("byte length", move |k| k.len() <= max)
    .prop_map(Bytes::from)
}

/// Text of 1..=max bytes (ids and tags are 1..=255).
fn bounded(min: usize, max: usize) -> impl Strategy<Value = String> {
    text(max / 4).prop_filter("byte length", move |s| (min..=max).contains(&s.len()))
}

fn consumer_tag() -> impl Strategy<Value = String> {
    bounded(1, 255).prop_filter("reserved", |t| t != "-" && t != "*")
}

/// Distinct header names, in order, with values.
fn headers() -> impl Strategy<Value = Vec<Header>> {
    vec(("[A-Za-z0-9_.-]{1,12}", key_bytes(48)), 0..4).prop_map(|mut hs| {
        let mut seen = std::collections::HashSet::new();
        hs.retain(|(n, _)| seen.insert(n.clone()));
        hs
    })
}

fn body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        vec(any::<u8>(), 0..80),
        text(40).prop_map(String::into_bytes),
        vec(any::<u8>(), 0..4096),
    ]
    .prop_map(Bytes::from)
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, any::<u64>()]
}

/// The options of a queue that is not a stream (`check_queue_kind`: no
/// `max-age=`, and at most one of `single-active` and `groups`).
fn queue_args() -> impl Strategy<Value = QueueArgs> {
    let overflow = prop::sample::select(vec![
        Overflow::DropHead,
        Overflow::RejectPublish,
        Overflow::Block,
    ]);
    (
        (
            proptest::option::of(any_u64()),
            proptest::option::of(any_u64()),
            overflow,
            proptest::option::of(any_u64()),
            proptest::option::of(1u64..),
            proptest::option::of(name_or_empty()),
        ),
        (
            proptest::option::of(key_bytes(255)),
            proptest::option::of(1u32..),
            proptest::option::of(1u64..),
            proptest::option::of(1u8..),
            proptest::option::of(1u64..),
            vec(any_u64(), 0..=32),
            proptest::option::of(name()),
        ),
        prop::sample::select(vec![
            QueueMode::Classic,
            QueueMode::SingleActive,
            QueueMode::Groups,
        ]),
    )
        .prop_map(|(a, b, mode)| QueueArgs {
            mode,
            max_age_ms: None,
            max_length: a.0,
            max_bytes: a.1,
            overflow: a.2,
            ttl_ms: a.3,
            expires_ms: a.4,
            dead_letter: a.5,
            dead_letter_key: b.0,
            delivery_limit: b.1,
            ack_timeout_ms: b.2,
            max_priority: b.3,
            dedup_window_ms: b.4,
            retry_delays_ms: b.5,
            schema: b.6,
        })
}

/// `DECLARE QUEUE`: a queue, or a stream with only what a stream takes
/// (`type`, `durable`, `max-age`, `max-bytes`, `partitions`; a name).
fn declare_queue() -> impl Strategy<Value = DeclareQueue> {
    let queue = (
        name_or_empty(),
        any::<[bool; 3]>(),
        queue_args(),
        proptest::option::of(1u8..=7),
    )
        .prop_map(|(name, f, args, replicas)| DeclareQueue {
            partitions: None,
            replicas,
            name,
            durable: f[0],
            exclusive: f[1],
            auto_delete: f[2],
            args,
        });
    let stream = (
        name(),
        any::<bool>(),
        proptest::option::of(any_u64()),
        proptest::option::of(1u64..),
        proptest::option::of(1..=MAX_PARTITIONS as u32),
    )
        .prop_map(
            |(name, durable, max_bytes, max_age_ms, partitions)| DeclareQueue {
                name,
                durable,
                exclusive: false,
                auto_delete: false,
                args: QueueArgs {
                    mode: QueueMode::Stream,
                    max_bytes,
                    max_age_ms,
                    ..QueueArgs::default()
                },
                partitions,
                replicas: None,
            },
        );
    prop_oneof![queue, stream]
}

/// `offset=first|last|next|<n>` or `time=<unix-ms>`.
fn stream_start() -> impl Strategy<Value = StreamStart> {
    prop_oneof![
        Just(StreamStart::First),
        Just(StreamStart::Last),
        Just(StreamStart::Next),
        any_u64().prop_map(StreamStart::Offset),
        any_u64().prop_map(StreamStart::Time),
    ]
}

fn bind() -> impl Strategy<Value = Bind> {
    let matching = proptest::option::of(prop::sample::select(vec![
        HeaderMatch::All,
        HeaderMatch::Any,
    ]));
    (name(), name_or_empty(), key_bytes(255), headers(), matching).prop_map(
        |(queue, exchange, key, headers, matching)| Bind {
            queue,
            exchange,
            key,
            headers,
            matching,
        },
    )
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        (name_or_empty(), key_bytes(255), any::<Option<bool>>()),
        (
            any::<bool>(),
            proptest::option::of(bounded(1, 255)),
            proptest::option::of(
                key_bytes(255).prop_filter("a group is not empty", |g| !g.is_empty()),
            ),
        ),
        (
            headers(),
            proptest::option::of(any_u64()),
            proptest::option::of(any_u64()),
            any::<Option<u8>>(),
        ),
        body(),
    )
        .prop_map(|(a, b, c, body)| Publish {
            group: b.2,
            exchange: a.0,
            key: a.1,
            persistent: a.2,
            mandatory: b.0,
            id: b.1,
            headers: c.0,
            ttl_ms: c.1,
            delay_ms: c.2,
            priority: c.3,
            body,
        })
}

fn ack_mode() -> impl Strategy<Value = AckMode> {
    prop::sample::select(vec![AckMode::Manual, AckMode::Auto])
}

/// A user name.
fn user_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}"
}

/// A password as `USER ADD`/`PASSWD` take it: any text but empty.
fn password() -> impl Strategy<Value = Secret> {
    text(20)
        .prop_filter("not empty", |p| !p.is_empty())
        .prop_map(Secret)
}

/// Permission patterns that compile, quoting-heavy ones included.
fn permissions() -> impl Strategy<Value = PermissionArgs> {
    let pattern = || {
        proptest::option::of(
            prop::sample::select(vec![
                "",
                ".*",
                "^orders\\.",
                "^(a|b)$",
                "x y",
                "a=b",
                "\"q\"",
                "x {5}",
                "^$",
            ])
            .prop_map(String::from),
        )
    };
    (pattern(), pattern(), pattern()).prop_map(|(configure, write, read)| PermissionArgs {
        configure,
        write,
        read,
    })
}

fn user_command() -> impl Strategy<Value = UserCommand> {
    prop_oneof![
        (user_name(), password(), any::<bool>(), permissions()).prop_map(
            |(name, password, admin, perms)| UserCommand::Add(UserAdd {
                name,
                password,
                admin,
                perms,
            })
        ),
        (user_name(), password())
            .prop_map(|(name, password)| UserCommand::Passwd(UserPasswd { name, password })),
        (user_name(), permissions(), any::<Option<bool>>()).prop_map(|(name, perms, admin)| {
            UserCommand::Permit(UserPermit { name, perms, admin })
        }),
        user_name().prop_map(UserCommand::Remove),
        Just(UserCommand::List),
    ]
}

/// Every command the parser can produce, with arguments in their valid ranges.
fn command() -> impl Strategy<Value = Command> {
    let kind = prop::sample::select(vec![
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
        ExchangeKind::Hash,
    ]);
    prop_oneof![
        (
            proptest::option::of(text(20)),
            any::<Option<u64>>(),
            proptest::option::of(prop_oneof![Just(0u64), 100u64..=3_600_000]),
        )
            .prop_map(|(name, proto, heartbeat)| Command::Hello(Hello {
                name,
                proto,
                heartbeat
            })),
        (text(20), text(20)).prop_map(|(user, password)| Command::Auth(Auth {
            user,
            password: Secret(password)
        })),
        Just(Command::Ping),
        Just(Command::Quit),
        proptest::option::of(text(10)).prop_map(|verb| Command::Help(Help {
            verb: verb.map(|v| v.to_ascii_uppercase())
        })),
        (
            name(),
            kind,
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(name()),
            proptest::option::of("[A-Za-z0-9_.-]{1,255}"),
        )
            .prop_map(|(name, kind, durable, auto_delete, alternate, header)| {
                Command::DeclareExchange(DeclareExchange {
                    // `hash-header=` is for hash exchanges only.
                    hash_header: header.filter(|_| kind == ExchangeKind::Hash),
                    schema: None,
                    name,
                    kind,
                    durable,
                    auto_delete,
                    alternate,
                })
            }),
        declare_queue().prop_map(Command::DeclareQueue),
        (name(), any::<bool>()).prop_map(|(name, if_unused)| {
            Command::DeleteExchange(DeleteExchange { name, if_unused })
        }),
        (name(), any::<bool>(), any::<bool>()).prop_map(|(name, if_unused, if_empty)| {
            Command::DeleteQueue(DeleteQueue {
                name,
                if_unused,
                if_empty,
            })
        }),
        bind().prop_map(Command::Bind),
        bind().prop_map(Command::Unbind),
        name().prop_map(|queue| Command::Purge(Purge { queue })),
        (1u64..).prop_map(|id| Command::CloseConnection(CloseConnection { id })),
        publish().prop_map(Command::Publish),
        (
            name(),
            proptest::option::of(1u32..=65535),
            proptest::option::of(1u64..=(1 << 30)),
            ack_mode(),
            proptest::option::of(consumer_tag()),
            any::<bool>(),
            proptest::option::of(name()),
            proptest::option::of(stream_start()),
        )
            .prop_map(
                |(queue, prefetch, prefetch_bytes, ack, tag, exclusive, group, start)| {
                    Command::Subscribe(Subscribe {
                        group,
                        start,
                        queue,
                        prefetch,
                        prefetch_bytes,
                        ack,
                        tag,
                        exclusive,
                    })
                }
            ),
        consumer_tag().prop_map(|tag| Command::Unsubscribe(Unsubscribe { tag })),
        (name(), ack_mode(), 1u32..=10_000, 0u64..=3_600_000).prop_map(
            |(queue, ack, count, wait_ms)| Command::Get(Get {
                queue,
                ack,
                count,
                wait_ms,
            })
        ),
        (any_u64(), any::<bool>()).prop_map(|(tag, multiple)| Command::Ack(Ack { tag, multiple })),
        (
            any_u64(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(any_u64())
        )
            .prop_map(|(tag, multiple, requeue, delay_ms)| Command::Nack(Nack {
                tag,
                multiple,
                requeue: requeue || delay_ms.is_some(),
                delay_ms,
            })),
        any_u64().prop_map(|tag| Command::Touch(Touch { tag })),
        prop_oneof![Just(Tx::Begin), Just(Tx::Commit), Just(Tx::Abort)].prop_map(Command::Tx),
        (name(), 1u32..=1000, proptest::option::of(any_u64()))
            .prop_map(|(queue, count, from)| Command::Peek(Peek { queue, count, from })),
        (name(), proptest::option::of(1u64..))
            .prop_map(|(queue, count)| Command::Redrive(Redrive { queue, count })),
        (name(), name(), stream_start()).prop_map(|(stream, group, to)| Command::Seek(Seek {
            stream,
            group,
            to
        })),
        user_command().prop_map(Command::User),
        prop_oneof![
            (1u64.., any::<[u8; 4]>(), any::<u16>()).prop_map(|(id, ip, port)| {
                ClusterCommand::Add {
                    id,
                    addr: std::net::SocketAddr::from((ip, port)),
                }
            }),
            (1u64..).prop_map(ClusterCommand::Remove),
            (1u64..).prop_map(ClusterCommand::Transfer),
        ]
        .prop_map(Command::Cluster),
        proptest::option::of(name()).prop_map(|queue| Command::Stats(Stats { queue })),
        (
            prop::sample::select(vec![
                ListKind::Queues,
                ListKind::Exchanges,
                ListKind::Bindings,
                ListKind::Connections,
                ListKind::Consumers,
                ListKind::Groups,
            ]),
            proptest::option::of(text(20).prop_filter("a pattern is not empty", |p| !p.is_empty())),
        )
            .prop_map(|(kind, pattern)| Command::List(List { kind, pattern })),
    ]
}

/// A line and its literal, as a client might send them: a verb and words
/// that are mostly real arguments (so that many lines parse), sometimes
/// arbitrary bytes; or fragments of syntax glued together at random.
fn raw_line() -> impl Strategy<Value = (Vec<u8>, Option<Bytes>)> {
    let verb = prop::sample::select(vec![
        "PUB",
        "pub",
        "SUB",
        "UNSUB",
        "GET",
        "ACK",
        "NACK",
        "REJECT",
        "TOUCH",
        "PEEK",
        "REDRIVE",
        "BIND",
        "UNBIND",
        "PURGE",
        "HELLO",
        "AUTH",
        "HELP",
        "PING",
        "QUIT",
        "DECLARE EXCHANGE",
        "declare queue",
        "DELETE QUEUE",
        "DELETE EXCHANGE",
        "STATS",
        "USER ADD",
        "user permit",
        "USER PASSWD",
        "USER REMOVE",
        "USER LIST",
        "stats queue",
        "LIST QUEUES",
        "list consumers",
        "SEEK",
        "CLUSTER ADD",
        "cluster remove",
        "CLUSTER TRANSFER",
    ]);
    let word = prop_oneof![
        12 => prop::sample::select(vec![
            "q", "ex", "jobs", "\"\"", "\"a b\"", "a=b", "\"x=y\"", "7", "0", "durable",
            "exclusive", "auto-delete", "if-unused", "if-empty=false", "persistent", "transient",
            "mandatory", "multiple", "topic", "fanout", "direct", "headers", "prefetch=5",
            "ack=auto", "ack=MANUAL", "tag=w1", "tag=\"a b\"", "count=3", "wait=10",
            "requeue=false", "delay=5", "from=2", "h.x=1", "h.y=\"1 2\"", "h.x=2", "match=any",
            "id=m1", "ttl=5", "priority=9", "max-length=3", "overflow=block", "retry-delays=1,2",
            "dead-letter=", "dead-letter-key=k", "max-priority=3", "expires=9",
            "name=\"my app\"", "proto=1", "alternate=ae", "{3}", "\"{3}\"", "a.*.#",
            "\\x", "\"\\\"\"", "\u{e9}", "admin", "admin=false", "write=^a", "read=\"\"",
            "configure=(",
            "hash", "hash-header=user", "hash-header=", "type=stream", "type=queue",
            "max-age=60000", "partitions=3", "single-active", "groups", "group=g1",
            "offset=first", "offset=42", "time=5",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 1..6),
    ];
    let structured = (
        verb,
        vec(word, 0..4),
        proptest::option::weighted(0.2, vec(any::<u8>(), 0..8)),
    )
        .prop_map(|(verb, words, literal)| {
            let mut line = verb.as_bytes().to_vec();
            for w in words {
                line.push(b' ');
                line.extend_from_slice(&w);
            }
            if let Some(body) = &literal {
                line.extend_from_slice(format!(" {{{}}}", body.len()).as_bytes());
            }
            (line, literal.map(Bytes::from))
        });
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"PUB"[..],
            b"SUB",
            b"BIND",
            b"DECLARE",
            b"QUEUE",
            b" ",
            b"\t",
            b"\"",
            b"\\",
            b"=",
            b"{3}",
            b"prefetch=",
            b"h.",
            b"#",
            b"*",
        ])
        .prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 0..6),
    ];
    let glued = (
        vec(piece, 0..12).prop_map(|ps| ps.concat()),
        proptest::option::of(vec(any::<u8>(), 0..8).prop_map(Bytes::from)),
    );
    prop_oneof![4 => structured, 1 => glued]
}

// ---- helpers --------------------------------------------------------------

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (1usize..48, 0usize..24).prop_map(|(max_line, max_literal)| Limits {
            max_line,
            max_literal
        }),
        (1usize..48).prop_map(|max_line| Limits {
            max_line,
            ..Limits::default()
        }),
    ]
}

/// Streams made of frame fragments (good, oversize, lying) and random bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"PING\r\n"[..],
            b"PUB x k {3}\r\nabc\r\n",
            b"PUB x k {3}\nabc",
            b"X {12}\n",
            b"0123456789ab\n",
            b"PUB \"\" jobs {200000}\r\n",
            b"{99999999999999999999}\n",
            b" {5} \t\r\n",
            b"\r",
            b"\n",
            b"\r\n",
            b"\0",
            b" ",
            b"{2}",
            b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
            b"\"{1}\"\n",
            b"\x16\x03\x01",
        ])
        .prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 0..16),
    ];
    vec(piece, 0..24).prop_map(|ps| ps.concat())
}

// ---- properties -----------------------------------------------------------

proptest! {
    #[test]
    fn every_command_survives_encode_then_parse(cmd in command()) {
        let wire = cmd.encode();
        prop_assert_eq!(decode(&wire), Ok(cmd), "{:?}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn any_line_parses_or_is_refused_and_what_parses_round_trips(
        (line, literal) in raw_line()
    ) {
        if let Ok(cmd) = parse_line(&line, literal) {
            let wire = cmd.encode();
            prop_assert_eq!(decode(&wire), Ok(cmd), "{:?}", String::from_utf8_lossy(&wire));
        }
    }

    #[test]
    fn framing_does_not_depend_on_chunking(
        limits in limits(),
        stream in stream(),
        sizes in vec(1usize..40, 0..8),
    ) {
        let whole = frame_in_chunks(limits, &stream, &[]);
        let bytewise = frame_in_chunks(limits, &stream, &[1]);
        prop_assert_eq!(&bytewise, &whole);
        let chunked = frame_in_chunks(limits, &stream, &sizes);
        prop_assert_eq!(&chunked, &whole);
    }

    #[test]
    fn tokenizer_never_panics(line in "\\PC*", raw in vec(any::<u8>(), 0..64)) {
        let _ = tokenize(line.as_bytes());
        let _ = tokenize(&raw);
    }

    #[test]
    fn a_word_survives_quoting(word in vec(any::<u8>(), 0..64)) {
        // NUL, CR and LF cannot be in a line at all.
        let word: Vec<u8> = word.into_iter().filter(|b| !matches!(b, 0 | b'\r' | b'\n')).collect();
        let mut quoted = Vec::new();
        encode_quoted(&mut quoted, &word);
        let want = vec![Token { text: word.clone(), quoted: true }];
        prop_assert_eq!(tokenize(&quoted).unwrap(), want);
        let mut line = b"x ".to_vec();
        encode_word(&mut line, &word);
        let toks = tokenize(&line).unwrap();
        prop_assert_eq!(toks.len(), 2);
        prop_assert_eq!(&toks[1].text, &word);
    }
}
