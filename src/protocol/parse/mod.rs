//! Client command lines to [`Command`]s: the only place that reads the wire's
//! verbs, sub-verbs, flag words, option names and enumerated values. Its
//! inverse, [`encode`](super::encode), writes them back; the option names
//! and enumerated values that both use are spelt there, once.
//!
//! Keywords match in any case; data (names, keys, headers, ids, tags, bodies)
//! is kept exactly. Arguments are classified left to right: required
//! positionals by position whatever they look like; an optional positional
//! (`BIND`/`UNBIND` key, `HELP` verb) only when it is quoted or is neither an
//! option nor a flag of the verb; then options and flags. For `PUB` the last
//! word is always the body. Every refusal is a [`ParseError`] whose message
//! echoes input quoted, so an `ERR` line never ends in a lit-mark.

use bytes::Bytes;

use super::code::ErrorCode;
use super::command::{
    Ack, AckMode, Auth, Bind, Command, DeclareExchange, DeclareQueue, DeleteExchange, DeleteQueue,
    ExchangeKind, Get, Header, Hello, Help, List, Nack, Peek, PermissionArgs, Publish, Purge,
    QueueArgs, Redrive, Secret, Seek, Stats, StreamStart, Subscribe, Touch, Unsubscribe, UserAdd,
    UserCommand, UserPasswd, UserPermit,
};
use super::encode::{
    opt, ACK_MODES, BOOLS, EXCHANGE_KINDS, HEADER_MATCHES, LIST_KINDS, OVERFLOWS, QUEUE_TYPES,
    STREAM_OFFSETS,
};
pub use super::error::{show, ParseError};
use super::frame::{lit_mark, Frame};
use super::pattern::Pattern;
use super::token::{tokenize, Token};

type Res<T> = Result<T, ParseError>;

/// Parses one frame from the [`Framer`](super::frame::Framer).
pub fn parse_command(frame: &Frame) -> Res<Command> {
    parse_line(&frame.line, frame.literal.clone())
}

/// Parses one line (without its EOL) and the literal it announced, if any.
pub fn parse_line(line: &[u8], literal: Option<Bytes>) -> Res<Command> {
    if line.first() == Some(&0x16) {
        return Err(bad_frame("this is a plain-text port, not TLS"));
    }
    if is_http(line) {
        return Err(bad_frame("this is not an HTTP server"));
    }
    let toks = tokenize(line)?;
    let Some((verb, rest)) = toks.split_first() else {
        return Err(ParseError::syntax("empty command"));
    };
    let Some(&(name, takes_literal, usage, handler)) = VERBS
        .iter()
        .find(|v| v.0.as_bytes().eq_ignore_ascii_case(&verb.text))
    else {
        return Err(ParseError {
            code: ErrorCode::UnknownCommand,
            message: format!("{} (try HELP)", show(&verb.text)),
        });
    };
    if literal.is_some() && !takes_literal {
        return Err(ParseError::syntax(format!(
            "{name} does not take a literal"
        )));
    }
    handler(Args {
        usage,
        toks: rest,
        literal,
    })
}

type Handler = fn(Args<'_>) -> Res<Command>;

/// Verb, takes a literal, usage, parser.
const VERBS: &[(&str, bool, &str, Handler)] = &[
    ("HELLO", false, "HELLO [name=<client>] [proto=<n>]", hello),
    ("AUTH", false, "AUTH <user> <password>", auth),
    ("PING", false, "PING", |a| a.end(Command::Ping)),
    ("QUIT", false, "QUIT", |a| a.end(Command::Quit)),
    ("HELP", false, "HELP [<verb>]", help),
    (
        "DECLARE",
        false,
        "DECLARE EXCHANGE|QUEUE <name> ...",
        declare,
    ),
    ("DELETE", false, "DELETE EXCHANGE|QUEUE <name> ...", delete),
    ("BIND", false, BIND_USAGE, |a| bind(a).map(Command::Bind)),
    ("UNBIND", false, BIND_USAGE, |a| {
        bind(a).map(Command::Unbind)
    }),
    ("PURGE", false, "PURGE <queue>", purge),
    ("PUB", true, PUB_USAGE, publish),
    ("SUB", false, SUB_USAGE, subscribe),
    ("UNSUB", false, "UNSUB <consumer-tag>", unsubscribe),
    ("GET", false, GET_USAGE, get),
    ("ACK", false, "ACK <delivery-tag> [multiple]", ack),
    ("NACK", false, NACK_USAGE, nack),
    ("REJECT", false, "REJECT <delivery-tag>", reject),
    ("TOUCH", false, "TOUCH <delivery-tag>", touch),
    (
        "PEEK",
        false,
        "PEEK <queue> [count=<n>] [from=<position>]",
        peek,
    ),
    ("REDRIVE", false, "REDRIVE <queue> [count=<n>]", redrive),
    (
        "USER",
        false,
        "USER ADD|PASSWD|PERMIT|REMOVE|LIST ...",
        user,
    ),
    ("STATS", false, "STATS [QUEUE <name>]", stats),
    ("LIST", false, LIST_USAGE, list),
    ("SEEK", false, SEEK_USAGE, seek),
];

const SEEK_USAGE: &str = "SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>";

const LIST_USAGE: &str = "LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS [<pattern>]";
const BIND_USAGE: &str = "BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]";
const PUB_USAGE: &str = "PUB <exchange> <routing-key> [persistent|transient] [mandatory] \
                         [id=<msg-id>] [ttl=<ms>] [delay=<ms>] [priority=<n>] \
                         [group=<key>] [h.<name>=<value>...] <body>";
const SUB_USAGE: &str = "SUB <queue> [prefetch=<n>] [ack=manual|auto] [tag=<consumer-tag>] \
                         [exclusive] [group=<name>] [offset=first|last|next|<n> | time=<unix-ms>]";
const GET_USAGE: &str = "GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]";
const NACK_USAGE: &str = "NACK <delivery-tag> [multiple] [requeue=true|false] [delay=<ms>]";
const QUEUE_USAGE: &str = "DECLARE QUEUE <name> [durable] [exclusive] [auto-delete] \
                           [max-length=N] [max-bytes=N] [overflow=drop-head|reject-publish|block] \
                           [ttl=<ms>] [expires=<ms>] [dead-letter=<ex>] [dead-letter-key=<key>] \
                           [delivery-limit=N] [ack-timeout=<ms>] [max-priority=N] \
                           [dedup-window=<ms>] [retry-delays=<ms>,<ms>,...] \
                           [single-active] [groups] \
                           | DECLARE QUEUE <name> type=stream [durable] [max-age=<ms>] \
                           [max-bytes=N] [partitions=N]";
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
];
/// At most this many partitions in a partitioned stream.
pub const MAX_PARTITIONS: u64 = 256;
/// At most this many `retry-delays` values.
const MAX_RETRY_DELAYS: usize = 32;
/// The shortest heartbeat interval (`HELLO heartbeat=`), in ms; 0 is off.
pub const MIN_HEARTBEAT_MS: u64 = 100;
/// The longest heartbeat interval, in ms (one hour).
pub const MAX_HEARTBEAT_MS: u64 = 3_600_000;
/// What the options of a verb may be.
#[derive(Default)]
struct Spec {
    flags: &'static [&'static str],
    values: &'static [&'static str],
    headers: bool,
}

/// One option or flag, its name in canonical (lower) case.
enum Opt<'a> {
    Flag(&'static str, bool),
    Value(&'static str, &'a [u8]),
    Header(Header),
}

/// The words after the verb, taken from the front.
struct Args<'a> {
    usage: &'static str,
    toks: &'a [Token],
    literal: Option<Bytes>,
}

impl<'a> Args<'a> {
    fn required(&mut self, what: &str) -> Res<&'a Token> {
        let Some((first, rest)) = self.toks.split_first() else {
            let usage = self.usage;
            return Err(ParseError::syntax(format!(
                "missing {what}; usage: {usage}"
            )));
        };
        self.toks = rest;
        Ok(first)
    }

    fn optional(&mut self, flags: &[&str]) -> Option<&'a Token> {
        let first = self.toks.first()?;
        let is_flag = flags
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(&first.text));
        if first.quoted || !(option_name(first).is_some() || is_flag) {
            self.toks = &self.toks[1..];
            return Some(first);
        }
        None
    }

    /// The rest as options and flags; duplicates and unknown words refused.
    fn options(&mut self, spec: &Spec) -> Res<Vec<Opt<'a>>> {
        let mut out: Vec<Opt<'a>> = Vec::new();
        for tok in std::mem::take(&mut self.toks) {
            let opt = classify(tok, spec)?;
            let dup = out.iter().any(|o| match (o, &opt) {
                (Opt::Header((a, _)), Opt::Header((b, _))) => a == b,
                (Opt::Flag(a, _) | Opt::Value(a, _), Opt::Flag(b, _) | Opt::Value(b, _)) => a == b,
                _ => false,
            });
            if dup {
                return Err(ParseError::syntax(match &opt {
                    Opt::Header((name, _)) => format!("duplicate header h.{name}"),
                    Opt::Flag(name, _) | Opt::Value(name, _) => format!("duplicate option {name}"),
                }));
            }
            out.push(opt);
        }
        Ok(out)
    }

    /// Refuses any word left.
    fn end(self, cmd: Command) -> Res<Command> {
        match self.toks.first() {
            Some(tok) => Err(unexpected(tok)),
            None => Ok(cmd),
        }
    }
}

fn classify<'a>(tok: &'a Token, spec: &Spec) -> Res<Opt<'a>> {
    let known = |list: &[&'static str], name: &[u8]| {
        list.iter()
            .copied()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(name))
    };
    if tok.quoted {
        return Err(unexpected(tok));
    }
    let (name, value) = match option_name(tok) {
        Some(name) => (name, Some(&tok.text[name.len() + 1..])),
        None => (&tok.text[..], None),
    };
    if let Some(flag) = known(spec.flags, name) {
        return match value {
            None => Ok(Opt::Flag(flag, true)),
            Some(v) => Ok(Opt::Flag(flag, choice(flag, v, BOOLS)?)),
        };
    }
    if let Some(opt) = known(spec.values, name) {
        return match value {
            Some(v) => Ok(Opt::Value(opt, v)),
            None => Err(ParseError::syntax(format!(
                "{opt} needs a value ({opt}=...)"
            ))),
        };
    }
    let prefix = opt::HEADER_PREFIX.as_bytes();
    match (value, name.get(..prefix.len())) {
        (Some(v), Some(h)) if spec.headers && h.eq_ignore_ascii_case(prefix) => {
            let hname = plain_word(&name[prefix.len()..], "header name", 255)?;
            // Any token, like a routing key (`x-death-key` holds one).
            Ok(Opt::Header((hname, Bytes::copy_from_slice(v))))
        }
        (Some(_), _) => Err(ParseError::syntax(format!(
            "unknown option {}",
            show(&tok.text)
        ))),
        (None, _) => Err(unexpected(tok)),
    }
}

/// The name of an unquoted `name=value` word, when `name` is an opt-name.
fn option_name(tok: &Token) -> Option<&[u8]> {
    if tok.quoted {
        return None;
    }
    let eq = tok.text.iter().position(|&b| b == b'=')?;
    let name = &tok.text[..eq];
    let mut bytes = name.iter();
    let ok = bytes.next().is_some_and(u8::is_ascii_alphabetic)
        && bytes.all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(name)
}

fn hello(mut a: Args<'_>) -> Res<Command> {
    let spec = Spec {
        values: &[opt::NAME, opt::PROTO, opt::HEARTBEAT],
        ..Spec::default()
    };
    let mut h = Hello::default();
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::NAME, v) => h.name = Some(utf8(v, opt::NAME)?),
            Opt::Value(opt::HEARTBEAT, v) => {
                // Milliseconds, like every duration here; `30s` (AMQP and
                // STOMP users think in seconds) is 30,000.
                let ms = match v.strip_suffix(b"s").filter(|n| !n.ends_with(b"m")) {
                    Some(secs) => number(opt::HEARTBEAT, secs, 0, MAX_HEARTBEAT_MS / 1000)? * 1000,
                    None => number(
                        opt::HEARTBEAT,
                        v.strip_suffix(b"ms").unwrap_or(v),
                        0,
                        MAX_HEARTBEAT_MS,
                    )?,
                };
                if ms != 0 && ms < MIN_HEARTBEAT_MS {
                    return Err(ParseError::syntax(format!(
                        "heartbeat: must be 0 (off) or between {MIN_HEARTBEAT_MS} and {MAX_HEARTBEAT_MS}, got {ms}"
                    )));
                }
                h.heartbeat = Some(ms);
            }
            Opt::Value(_, v) => h.proto = Some(number(opt::PROTO, v, 0, u64::MAX)?),
            _ => {}
        }
    }
    Ok(Command::Hello(h))
}

fn auth(mut a: Args<'_>) -> Res<Command> {
    let user = utf8(&a.required("<user>")?.text, "user")?;
    let password = Secret(utf8(&a.required("<password>")?.text, "password")?);
    a.end(Command::Auth(Auth { user, password }))
}

fn help(mut a: Args<'_>) -> Res<Command> {
    let verb = match a.optional(&[]) {
        Some(tok) => Some(utf8(&tok.text, "verb")?.to_ascii_uppercase()),
        None => None,
    };
    a.options(&Spec::default())?;
    Ok(Command::Help(Help { verb }))
}

/// `EXCHANGE` or `QUEUE` after `DECLARE`/`DELETE`: true for `EXCHANGE`.
fn sub_verb(a: &mut Args<'_>, verb: &str) -> Res<bool> {
    let tok = a.required("EXCHANGE or QUEUE")?;
    match choice(verb, &tok.text, &[("EXCHANGE", true), ("QUEUE", false)]) {
        Ok(is_exchange) => Ok(is_exchange),
        Err(_) => Err(ParseError::syntax(format!(
            "{verb}: expected EXCHANGE or QUEUE, got {}",
            show(&tok.text)
        ))),
    }
}

fn declare(mut a: Args<'_>) -> Res<Command> {
    if sub_verb(&mut a, "DECLARE")? {
        a.usage = "DECLARE EXCHANGE <name> direct|fanout|topic|headers|hash [durable] [auto-delete] [alternate=<ex>] [hash-header=<name>]";
        let name = name(a.required("<name>")?, "exchange", false)?;
        let kind = choice("type", &a.required("<type>")?.text, EXCHANGE_KINDS)?;
        let spec = Spec {
            flags: &[opt::DURABLE, opt::AUTO_DELETE],
            values: &[opt::ALTERNATE, opt::HASH_HEADER],
            ..Spec::default()
        };
        let mut d = DeclareExchange {
            name,
            kind,
            durable: false,
            auto_delete: false,
            alternate: None,
            hash_header: None,
        };
        for o in a.options(&spec)? {
            match o {
                Opt::Flag(opt::DURABLE, on) => d.durable = on,
                Opt::Flag(_, on) => d.auto_delete = on,
                Opt::Value(opt::ALTERNATE, v) => {
                    d.alternate = Some(name_bytes(v, "alternate exchange", false)?)
                }
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
    };
    let mut given: Vec<&'static str> = Vec::new();
    for o in a.options(&spec)? {
        if let Opt::Flag(name, true) | Opt::Value(name, _) = o {
            given.push(name);
        }
        match o {
            Opt::Flag(opt::DURABLE, on) => d.durable = on,
            Opt::Flag(opt::EXCLUSIVE, on) => d.exclusive = on,
            Opt::Flag(opt::SINGLE_ACTIVE, on) => d.args.single_active = on,
            Opt::Flag(opt::GROUPS, on) => d.args.groups = on,
            Opt::Flag(_, on) => d.auto_delete = on,
            Opt::Value(opt::PARTITIONS, v) => {
                d.partitions = Some(number(opt::PARTITIONS, v, 1, MAX_PARTITIONS)? as u32)
            }
            Opt::Value(name, v) => queue_arg(&mut d.args, name, v)?,
            Opt::Header(_) => {}
        }
    }
    check_queue_kind(&d, &given)?;
    Ok(Command::DeclareQueue(d))
}

/// A stream takes only its own options; a queue none of them; and
/// `single-active` and `groups` exclude each other.
fn check_queue_kind(d: &DeclareQueue, given: &[&'static str]) -> Res<()> {
    const STREAM_ONLY: &[&str] = &[opt::MAX_AGE, opt::PARTITIONS];
    const STREAM_TAKES: &[&str] = &[
        opt::TYPE,
        opt::DURABLE,
        opt::MAX_AGE,
        opt::MAX_BYTES,
        opt::PARTITIONS,
    ];
    let refused =
        |what: &str, opt: &str| Err(ParseError::syntax(format!("{what} does not take {opt}")));
    if d.args.stream {
        if let Some(opt) = given.iter().find(|o| !STREAM_TAKES.contains(o)) {
            return refused("a stream (type=stream)", opt);
        }
        if d.name.is_empty() {
            return Err(ParseError::syntax("a stream needs a name"));
        }
    } else if let Some(opt) = given.iter().find(|o| STREAM_ONLY.contains(o)) {
        return Err(ParseError::syntax(format!(
            "{opt} is a stream option (add type=stream)"
        )));
    }
    if d.args.single_active && d.args.groups {
        return Err(ParseError::syntax(
            "single-active and groups exclude each other",
        ));
    }
    Ok(())
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
        opt::TYPE => args.stream = choice(name, v, QUEUE_TYPES)?,
        opt::MAX_AGE => args.max_age_ms = Some(number(name, v, 1, u64::MAX)?),
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

fn delete(mut a: Args<'_>) -> Res<Command> {
    if sub_verb(&mut a, "DELETE")? {
        a.usage = "DELETE EXCHANGE <name> [if-unused]";
        let name = name(a.required("<name>")?, "exchange", false)?;
        let spec = Spec {
            flags: &[opt::IF_UNUSED],
            ..Spec::default()
        };
        let mut d = DeleteExchange {
            name,
            if_unused: false,
        };
        for o in a.options(&spec)? {
            if let Opt::Flag(_, on) = o {
                d.if_unused = on;
            }
        }
        return Ok(Command::DeleteExchange(d));
    }
    a.usage = "DELETE QUEUE <name> [if-unused] [if-empty]";
    let name = name(a.required("<name>")?, "queue", false)?;
    let spec = Spec {
        flags: &[opt::IF_UNUSED, opt::IF_EMPTY],
        ..Spec::default()
    };
    let mut d = DeleteQueue {
        name,
        if_unused: false,
        if_empty: false,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Flag(opt::IF_UNUSED, on) => d.if_unused = on,
            Opt::Flag(_, on) => d.if_empty = on,
            _ => {}
        }
    }
    Ok(Command::DeleteQueue(d))
}

fn bind(mut a: Args<'_>) -> Res<Bind> {
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

fn purge(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    a.end(Command::Purge(Purge { queue }))
}

fn publish(mut a: Args<'_>) -> Res<Command> {
    let exchange = name(a.required("<exchange>")?, "exchange", true)?;
    let key = routing_key(a.required("<routing-key>")?)?;
    let Some((last, middle)) = a.toks.split_last() else {
        return Err(ParseError::syntax(format!(
            "missing <body>; usage: {PUB_USAGE}"
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
    for o in a.options(&spec)? {
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

fn subscribe(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        flags: &[opt::EXCLUSIVE],
        values: &[
            opt::PREFETCH,
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
fn stream_start(name: &str, v: &[u8]) -> Res<StreamStart> {
    if name == opt::TIME {
        return Ok(StreamStart::Time(number(opt::TIME, v, 0, u64::MAX)?));
    }
    if v.first().is_some_and(u8::is_ascii_digit) {
        return Ok(StreamStart::Offset(number(opt::OFFSET, v, 0, u64::MAX)?));
    }
    choice(opt::OFFSET, v, STREAM_OFFSETS)
}

fn seek(mut a: Args<'_>) -> Res<Command> {
    let stream = name(a.required("<stream>")?, "stream", false)?;
    let group = name(a.required("<group>")?, "group", false)?;
    let spec = Spec {
        values: &[opt::OFFSET, opt::TIME],
        ..Spec::default()
    };
    let mut to = None;
    for o in a.options(&spec)? {
        if let Opt::Value(name, v) = o {
            if to.is_some() {
                return Err(ParseError::syntax("offset= and time= exclude each other"));
            }
            to = Some(stream_start(name, v)?);
        }
    }
    let Some(to) = to else {
        return Err(ParseError::syntax(format!(
            "missing offset= or time=; usage: {SEEK_USAGE}"
        )));
    };
    Ok(Command::Seek(Seek { stream, group, to }))
}

fn unsubscribe(mut a: Args<'_>) -> Res<Command> {
    let tag = consumer_tag(&a.required("<consumer-tag>")?.text)?;
    a.end(Command::Unsubscribe(Unsubscribe { tag }))
}

fn get(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::ACK, opt::COUNT, opt::WAIT],
        ..Spec::default()
    };
    let mut g = Get {
        queue,
        ack: AckMode::Manual,
        count: 1,
        wait_ms: 0,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::ACK, v) => g.ack = choice(opt::ACK, v, ACK_MODES)?,
            Opt::Value(opt::COUNT, v) => g.count = number(opt::COUNT, v, 1, 10_000)? as u32,
            Opt::Value(_, v) => g.wait_ms = number(opt::WAIT, v, 0, 3_600_000)?,
            _ => {}
        }
    }
    Ok(Command::Get(g))
}

fn delivery_tag(a: &mut Args<'_>) -> Res<u64> {
    number(
        "delivery tag",
        &a.required("<delivery-tag>")?.text,
        0,
        u64::MAX,
    )
}

fn ack(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    let spec = Spec {
        flags: &[opt::MULTIPLE],
        ..Spec::default()
    };
    let multiple = a
        .options(&spec)?
        .iter()
        .any(|o| matches!(o, Opt::Flag(_, true)));
    Ok(Command::Ack(Ack { tag, multiple }))
}

fn nack(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    let spec = Spec {
        flags: &[opt::MULTIPLE],
        values: &[opt::REQUEUE, opt::DELAY],
        ..Spec::default()
    };
    let mut n = Nack {
        tag,
        multiple: false,
        requeue: true,
        delay_ms: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Flag(_, on) => n.multiple = on,
            Opt::Value(opt::REQUEUE, v) => n.requeue = choice(opt::REQUEUE, v, BOOLS)?,
            Opt::Value(_, v) => n.delay_ms = Some(number(opt::DELAY, v, 0, u64::MAX)?),
            Opt::Header(_) => {}
        }
    }
    if n.delay_ms.is_some() && !n.requeue {
        return Err(ParseError::syntax("delay needs requeue"));
    }
    Ok(Command::Nack(n))
}

fn reject(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    a.end(Command::Nack(Nack {
        tag,
        multiple: false,
        requeue: false,
        delay_ms: None,
    }))
}

fn touch(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    a.end(Command::Touch(Touch { tag }))
}

fn peek(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::COUNT, opt::FROM],
        ..Spec::default()
    };
    let mut p = Peek {
        queue,
        count: 1,
        from: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::COUNT, v) => p.count = number(opt::COUNT, v, 1, 1000)? as u32,
            Opt::Value(_, v) => p.from = Some(number(opt::FROM, v, 0, u64::MAX)?),
            _ => {}
        }
    }
    Ok(Command::Peek(p))
}

fn redrive(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::COUNT],
        ..Spec::default()
    };
    let mut r = Redrive { queue, count: None };
    for o in a.options(&spec)? {
        if let Opt::Value(_, v) = o {
            r.count = Some(number(opt::COUNT, v, 1, u64::MAX)?);
        }
    }
    Ok(Command::Redrive(r))
}

/// The longest user name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 64;

/// A user name: 1 to [`MAX_USER_NAME_BYTES`] bytes of `A-Z a-z 0-9 _ . -`
/// (no `/` or `:`, so that a `<vhost>/<user>` key stays unambiguous).
/// `sluice user` checks its argument with this too.
pub fn user_name(text: &[u8]) -> Res<String> {
    plain_word(text, "user name", MAX_USER_NAME_BYTES)
}

/// 1 to `max` bytes of `A-Z a-z 0-9 - _ .` (header and user names).
fn plain_word(text: &[u8], what: &str, max: usize) -> Res<String> {
    let ok = (1..=max).contains(&text.len())
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ParseError::syntax(format!(
            "bad {what} {}: use 1-{max} bytes of A-Z a-z 0-9 - _ .",
            show(text)
        )));
    }
    utf8(text, what)
}

/// A new password: any non-empty text.
fn new_password(tok: &Token) -> Res<Secret> {
    if tok.text.is_empty() {
        return Err(ParseError::syntax("password must not be empty"));
    }
    utf8(&tok.text, "password").map(Secret)
}

/// A permission pattern: a regex that compiles (`""` grants nothing).
fn pattern(what: &str, v: &[u8]) -> Res<String> {
    let text = utf8(v, what)?;
    Pattern::new(&text).map_err(|e| ParseError::syntax(format!("{what}: {e}")))?;
    Ok(text)
}

fn user(mut a: Args<'_>) -> Res<Command> {
    const SUB_VERBS: &[(&str, u8)] = &[
        ("ADD", 0),
        ("PASSWD", 1),
        ("PERMIT", 2),
        ("REMOVE", 3),
        ("LIST", 4),
    ];
    let tok = a.required("ADD, PASSWD, PERMIT, REMOVE or LIST")?;
    let sub = choice("USER", &tok.text, SUB_VERBS).map_err(|_| {
        ParseError::syntax(format!(
            "USER: expected ADD, PASSWD, PERMIT, REMOVE or LIST, got {}",
            show(&tok.text)
        ))
    })?;
    let spec = Spec {
        flags: &[opt::ADMIN],
        values: &[opt::CONFIGURE, opt::WRITE, opt::READ],
        ..Spec::default()
    };
    let cmd = match sub {
        0 | 2 => {
            a.usage = if sub == 0 {
                "USER ADD <name> <password> [admin] [configure=<re>] [write=<re>] [read=<re>]"
            } else {
                "USER PERMIT <name> [configure=<re>] [write=<re>] [read=<re>] [admin=true|false]"
            };
            let name = user_name(&a.required("<name>")?.text)?;
            let password = if sub == 0 {
                Some(new_password(a.required("<password>")?)?)
            } else {
                None
            };
            let mut perms = PermissionArgs::default();
            let mut admin = None;
            for o in a.options(&spec)? {
                match o {
                    Opt::Flag(_, on) => admin = Some(on),
                    Opt::Value(opt::CONFIGURE, v) => {
                        perms.configure = Some(pattern(opt::CONFIGURE, v)?)
                    }
                    Opt::Value(opt::WRITE, v) => perms.write = Some(pattern(opt::WRITE, v)?),
                    Opt::Value(_, v) => perms.read = Some(pattern(opt::READ, v)?),
                    Opt::Header(_) => {}
                }
            }
            match password {
                Some(password) => UserCommand::Add(UserAdd {
                    name,
                    password,
                    admin: admin.unwrap_or(false),
                    perms,
                }),
                None => UserCommand::Permit(UserPermit { name, perms, admin }),
            }
        }
        1 => {
            a.usage = "USER PASSWD <name> <password>";
            let name = user_name(&a.required("<name>")?.text)?;
            let password = new_password(a.required("<password>")?)?;
            UserCommand::Passwd(UserPasswd { name, password })
        }
        3 => {
            a.usage = "USER REMOVE <name>";
            UserCommand::Remove(user_name(&a.required("<name>")?.text)?)
        }
        _ => UserCommand::List,
    };
    a.end(Command::User(cmd))
}

fn stats(mut a: Args<'_>) -> Res<Command> {
    let Some(tok) = a.toks.first() else {
        return Ok(Command::Stats(Stats { queue: None }));
    };
    if tok.quoted || !tok.text.eq_ignore_ascii_case(b"QUEUE") {
        return Err(ParseError::syntax(format!(
            "STATS: expected QUEUE <name> or nothing, got {}",
            show(&tok.text)
        )));
    }
    a.toks = &a.toks[1..];
    a.usage = "STATS QUEUE <name>";
    let queue = name(a.required("<name>")?, "queue", false)?;
    a.end(Command::Stats(Stats { queue: Some(queue) }))
}

fn list(mut a: Args<'_>) -> Res<Command> {
    let tok = a.required("what to list")?;
    let kind = choice("LIST", &tok.text, LIST_KINDS)?;
    let pattern = match a.optional(&[]) {
        Some(tok) => Some(bounded(&tok.text, "pattern", false)?),
        None => None,
    };
    a.options(&Spec::default())?;
    Ok(Command::List(List { kind, pattern }))
}

fn bad_frame(message: &str) -> ParseError {
    ParseError {
        code: ErrorCode::BadFrame,
        message: message.into(),
    }
}

fn unexpected(tok: &Token) -> ParseError {
    ParseError::syntax(format!("unexpected argument {}", show(&tok.text)))
}

/// An exchange or queue name; `""` only when `empty_ok`.
fn name(tok: &Token, what: &str, empty_ok: bool) -> Res<String> {
    name_bytes(&tok.text, what, empty_ok)
}

fn name_bytes(text: &[u8], what: &str, empty_ok: bool) -> Res<String> {
    if text.is_empty() && empty_ok {
        return Ok(String::new());
    }
    if text.is_empty() {
        return Err(ParseError::syntax(format!("{what} name must not be empty")));
    }
    let ok = text.len() <= 255
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-'));
    if !ok {
        return Err(ParseError::syntax(format!(
            "bad {what} name {}: use 1-255 bytes of A-Z a-z 0-9 _ . : / -",
            show(text)
        )));
    }
    utf8(text, what)
}

fn routing_key(tok: &Token) -> Res<Bytes> {
    key_bytes(&tok.text, "routing key")
}

/// A routing key: any token of at most 255 bytes, possibly empty. Not only
/// UTF-8: the bytes are kept as they came (the tokenizer has already
/// refused NUL, CR and LF).
fn key_bytes(text: &[u8], what: &str) -> Res<Bytes> {
    if text.len() > 255 {
        return Err(ParseError::syntax(format!(
            "{what} is longer than 255 bytes"
        )));
    }
    Ok(Bytes::copy_from_slice(text))
}

/// 1..=255 bytes of UTF-8 (or 0 when `empty_ok`).
fn bounded(text: &[u8], what: &str, empty_ok: bool) -> Res<String> {
    if text.len() > 255 || (text.is_empty() && !empty_ok) {
        return Err(ParseError::syntax(format!("{what} must be 1 to 255 bytes")));
    }
    utf8(text, what)
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

fn utf8(text: &[u8], what: &str) -> Res<String> {
    String::from_utf8(text.to_vec())
        .map_err(|_| ParseError::syntax(format!("{what} is not valid UTF-8")))
}

/// A decimal u64 (1 to 20 digits, no sign) within `min..=max`.
fn number(what: &str, text: &[u8], min: u64, max: u64) -> Res<u64> {
    let n = std::str::from_utf8(text)
        .ok()
        .filter(|s| (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    let Some(n) = n else {
        return Err(ParseError::syntax(format!(
            "{what}: expected a number, got {}",
            show(text)
        )));
    };
    if !(min..=max).contains(&n) {
        return Err(ParseError::syntax(format!(
            "{what}: must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n)
}

/// An enumerated keyword, in any case.
fn choice<T: Copy>(what: &str, text: &[u8], options: &[(&str, T)]) -> Res<T> {
    if let Some(&(_, v)) = options
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(text))
    {
        return Ok(v);
    }
    let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    Err(ParseError::syntax(format!(
        "{what}: expected {}, got {}",
        names.join(" or "),
        show(text)
    )))
}

/// A line that can only be an HTTP request: `<METHOD> <target> HTTP/<d>.<d>`,
/// or a first word `POST`, `HEAD` or `Host:` (none is a sluice verb).
fn is_http(line: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
        b"PRI",
    ];
    let words: Vec<&[u8]> = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    let version = |v: &[u8]| {
        matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
    };
    match words.as_slice() {
        [first, ..]
            if first.eq_ignore_ascii_case(b"host:") || *first == b"POST" || *first == b"HEAD" =>
        {
            true
        }
        [method, target, v] => {
            METHODS.contains(method)
                && version(v)
                && (target.starts_with(b"/")
                    || *target == b"*"
                    || target.windows(3).any(|w| w == b"://")
                    || *method == b"CONNECT")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::command::{HeaderMatch, ListKind, Overflow};

    fn ok(line: &str) -> Command {
        parse_line(line.as_bytes(), None).unwrap()
    }

    fn err(line: &str) -> ParseError {
        parse_line(line.as_bytes(), None).unwrap_err()
    }

    fn syntax(line: &str) -> String {
        let e = err(line);
        assert_eq!(e.code, ErrorCode::Syntax, "{line}: {e}");
        e.message
    }

    fn publish(line: &str) -> Publish {
        match ok(line) {
            Command::Publish(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn h(n: &str, v: &str) -> Header {
        (n.to_string(), Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn session_verbs() {
        assert_eq!(ok("PING"), Command::Ping);
        assert_eq!(ok("  ping  "), Command::Ping);
        assert_eq!(ok("QuIt"), Command::Quit);
        assert_eq!(ok("HELLO"), Command::Hello(Hello::default()));
        let hello = Hello {
            name: Some("my app".into()),
            proto: Some(1),
            heartbeat: None,
        };
        assert_eq!(ok("hello NAME=\"my app\" proto=1"), Command::Hello(hello));
        let auth = Auth {
            user: "Bob".into(),
            password: Secret("p=w d".into()),
        };
        assert_eq!(ok("AUTH Bob \"p=w d\""), Command::Auth(auth));
        assert_eq!(ok("HELP"), Command::Help(Help { verb: None }));
        assert_eq!(
            ok("help pub"),
            Command::Help(Help {
                verb: Some("PUB".into())
            })
        );
        assert_eq!(
            ok("HELP \"x=y\""),
            Command::Help(Help {
                verb: Some("X=Y".into())
            })
        );
    }

    #[test]
    fn session_errors() {
        assert_eq!(syntax("PING now"), "unexpected argument \"now\"");
        assert_eq!(syntax("QUIT x=1"), "unexpected argument \"x=1\"");
        assert!(syntax("AUTH bob").starts_with("missing <password>; usage: AUTH"));
        assert_eq!(syntax("AUTH a b c"), "unexpected argument \"c\"");
        assert_eq!(
            syntax("HELLO proto=one"),
            "proto: expected a number, got \"one\""
        );
        assert_eq!(
            ok("HELLO heartbeat=5000"),
            Command::Hello(Hello {
                heartbeat: Some(5000),
                ..Hello::default()
            })
        );
        for (text, ms) in [("30s", 30_000), ("250ms", 250), ("3600s", 3_600_000)] {
            assert_eq!(
                ok(&format!("HELLO heartbeat={text}")),
                Command::Hello(Hello {
                    heartbeat: Some(ms),
                    ..Hello::default()
                }),
                "{text}"
            );
        }
        assert!(syntax("HELLO heartbeat=3601s").contains("heartbeat"));
        assert!(syntax("HELLO heartbeat=10m").contains("heartbeat"));
        assert_eq!(
            ok("hello HEARTBEAT=0"),
            Command::Hello(Hello {
                heartbeat: Some(0),
                ..Hello::default()
            })
        );
        assert_eq!(
            syntax("HELLO heartbeat=99"),
            "heartbeat: must be 0 (off) or between 100 and 3600000, got 99"
        );
        assert_eq!(
            syntax("HELLO heartbeat=3600001"),
            "heartbeat: must be between 0 and 3600000, got 3600001"
        );
        assert_eq!(syntax("HELLO name=a name=b"), "duplicate option name");
        assert_eq!(syntax("HELLO color=red"), "unknown option \"color=red\"");
        assert_eq!(syntax("HELLO name"), "name needs a value (name=...)");
        assert_eq!(syntax("HELP x=y"), "unknown option \"x=y\"");
        assert_eq!(syntax("HELP pub sub"), "unexpected argument \"sub\"");
    }

    #[test]
    fn unknown_command() {
        let e = err("frobnicate now");
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert_eq!(e.to_string(), "UNKNOWN_COMMAND \"frobnicate\" (try HELP)");
        let e = err("{5}");
        assert_eq!(e.message, "\"{5}\" (try HELP)");
        let long = "x".repeat(100);
        let e = err(&long);
        assert_eq!(e.message, format!("\"{}...\" (try HELP)", "x".repeat(64)));
        assert_eq!(err("a\u{1b}b").message, "\"a\\x1bb\" (try HELP)");
        assert_eq!(err("\"PI NG\"").code, ErrorCode::UnknownCommand);
    }

    #[test]
    fn http_and_tls_are_bad_frames() {
        for line in [
            "GET / HTTP/1.1",
            "POST /x HTTP/1.0",
            "GET http://a/ HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "POST",
            "HEAD /",
            "Host: localhost:5680",
            "PRI * HTTP/2.0",
            "DELETE /q HTTP/1.1",
        ] {
            let e = err(line);
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::BadFrame, "this is not an HTTP server"),
                "{line}"
            );
        }
        let e = parse_line(b"\x16\x03\x01\x00", None).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::BadFrame, "this is a plain-text port, not TLS")
        );
    }

    #[test]
    fn http_lookalikes_are_commands() {
        assert_eq!(err("GET jobs HTTP/1.1").code, ErrorCode::Syntax);
        let p = publish("PUB \"\" jobs HTTP/1.1");
        assert_eq!(&p.body[..], b"HTTP/1.1");
        let d = ok("DELETE QUEUE HTTP/1.1");
        assert!(matches!(d, Command::DeleteQueue(q) if q.name == "HTTP/1.1"));
        assert_eq!(err("get / http/1.1").code, ErrorCode::Syntax);
        assert_eq!(err("post x").code, ErrorCode::UnknownCommand);
    }

    #[test]
    fn tokenizer_errors_surface() {
        assert_eq!(syntax("PUB \"\" k \"abc"), "unbalanced quote");
        assert!(syntax("PUB \"\" k \"a\\nb\"").starts_with("unknown escape"));
        assert_eq!(err("").message, "empty command");
    }

    #[test]
    fn declare_exchange() {
        let d = DeclareExchange {
            hash_header: None,
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
        assert_eq!(syntax("DECLARE EXCHANGE x"), format!("missing <type>; usage: DECLARE EXCHANGE <name> direct|fanout|topic|headers|hash [durable] [auto-delete] [alternate=<ex>] [hash-header=<name>]"));
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
    fn delete_and_purge() {
        let e = DeleteExchange {
            name: "logs".into(),
            if_unused: true,
        };
        assert_eq!(
            ok("delete EXCHANGE logs IF-UNUSED"),
            Command::DeleteExchange(e)
        );
        let q = DeleteQueue {
            name: "jobs".into(),
            if_unused: false,
            if_empty: true,
        };
        assert_eq!(ok("DELETE QUEUE jobs if-empty"), Command::DeleteQueue(q));
        assert_eq!(
            ok("purge jobs"),
            Command::Purge(Purge {
                queue: "jobs".into()
            })
        );
        assert_eq!(
            syntax("DELETE EXCHANGE logs if-empty"),
            "unexpected argument \"if-empty\""
        );
        assert_eq!(syntax("DELETE QUEUE \"\""), "queue name must not be empty");
        assert_eq!(
            syntax("DELETE EXCHANGE \"\""),
            "exchange name must not be empty"
        );
        assert_eq!(
            syntax("DELETE QUEUE q if-unused if-unused"),
            "duplicate option if-unused"
        );
        assert!(syntax("DELETE").starts_with("missing EXCHANGE or QUEUE"));
        assert!(syntax("PURGE").starts_with("missing <queue>; usage: PURGE <queue>"));
        assert_eq!(syntax("PURGE a b"), "unexpected argument \"b\"");
    }

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

    #[test]
    fn keys_and_header_values_are_any_token() {
        // Not only UTF-8: the bytes are kept as they came, quoted or not.
        let Command::Bind(b) = parse_line(b"BIND q ex k\xff h.a=\xfe\x80", None).unwrap() else {
            panic!()
        };
        assert_eq!(
            (&b.key[..], &b.headers[0].1[..]),
            (&b"k\xff"[..], &b"\xfe\x80"[..])
        );
        let p = parse_line(b"PUB x \"\xc3\x28 \\\"\x01\" h.k=\"a \xff\" b", None).unwrap();
        let Command::Publish(p) = p else { panic!() };
        assert_eq!(&p.key[..], b"\xc3\x28 \"\x01");
        assert_eq!(
            p.headers,
            vec![("k".to_string(), Bytes::from_static(b"a \xff"))]
        );
        let Command::DeclareQueue(d) =
            parse_line(b"DECLARE QUEUE q dead-letter-key=\xff.\xfe", None).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.args.dead_letter_key.as_deref(), Some(&b"\xff.\xfe"[..]));
        // 255 bytes is the limit, whatever they are.
        let mut line = b"PUB x ".to_vec();
        line.extend_from_slice(&[0xff; 255]);
        line.extend_from_slice(b" b");
        let Command::Publish(p) = parse_line(&line, None).unwrap() else {
            panic!()
        };
        assert_eq!(p.key.len(), 255);
        line.insert(6, 0xff);
        let e = parse_line(&line, None).unwrap_err();
        assert_eq!(e.message, "routing key is longer than 255 bytes");
        // What the tokenizer forbids in any word stays forbidden.
        for bad in [&b"PUB x a\0b c"[..], b"PUB x a\rb c", b"BIND q ex \"a\rb\""] {
            assert_eq!(parse_line(bad, None).unwrap_err().code, ErrorCode::Syntax);
        }
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
        assert_eq!(syntax("PUB x k extra b"), "unexpected argument \"extra\"");
        assert_eq!(
            syntax("PUB x k \"quoted\" b"),
            "unexpected argument \"quoted\""
        );
        assert_eq!(syntax("PUB x k foo=1 b"), "unknown option \"foo=1\"");
        assert!(syntax("PUB bad! k b").starts_with("bad exchange name \"bad!\""));
        assert_eq!(syntax("PUB x k h.a=1 h.a=2 b"), "duplicate header h.a");
    }

    #[test]
    fn sub_and_unsub() {
        let s = Subscribe {
            group: None,
            start: None,
            queue: "jobs".into(),
            prefetch: Some(10),
            ack: AckMode::Auto,
            tag: Some("w1".into()),
            exclusive: true,
        };
        assert_eq!(
            ok("sub jobs PREFETCH=10 ack=AUTO tag=w1 exclusive"),
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
    fn get() {
        let g = Get {
            queue: "jobs".into(),
            ack: AckMode::Manual,
            count: 1,
            wait_ms: 0,
        };
        assert_eq!(ok("GET jobs"), Command::Get(g));
        let g = Get {
            queue: "jobs".into(),
            ack: AckMode::Auto,
            count: 10000,
            wait_ms: 3_600_000,
        };
        assert_eq!(
            ok("get jobs ack=auto count=10000 wait=3600000"),
            Command::Get(g)
        );
        assert_eq!(
            syntax("GET jobs count=0"),
            "count: must be between 1 and 10000, got 0"
        );
        assert_eq!(
            syntax("GET jobs count=10001"),
            "count: must be between 1 and 10000, got 10001"
        );
        assert_eq!(
            syntax("GET jobs wait=3600001"),
            "wait: must be between 0 and 3600000, got 3600001"
        );
        assert_eq!(
            syntax("GET jobs wait=99999999999999999999999"),
            "wait: expected a number, got \"99999999999999999999999\""
        );
        assert_eq!(
            syntax("GET jobs prefetch=1"),
            "unknown option \"prefetch=1\""
        );
        assert_eq!(syntax("GET jobs count"), "count needs a value (count=...)");
    }

    #[test]
    fn ack_nack_reject() {
        assert_eq!(
            ok("ACK 7"),
            Command::Ack(Ack {
                tag: 7,
                multiple: false
            })
        );
        assert_eq!(
            ok("ack 18446744073709551615 MULTIPLE"),
            Command::Ack(Ack {
                tag: u64::MAX,
                multiple: true
            })
        );
        let n = |tag, multiple, requeue| {
            Command::Nack(Nack {
                tag,
                multiple,
                requeue,
                delay_ms: None,
            })
        };
        assert_eq!(ok("NACK 3"), n(3, false, true));
        assert_eq!(ok("nack 3 multiple requeue=FALSE"), n(3, true, false));
        assert_eq!(ok("NACK 3 multiple=false requeue=true"), n(3, false, true));
        assert_eq!(ok("REJECT 4"), n(4, false, false));
        assert_eq!(
            syntax("ACK x"),
            "delivery tag: expected a number, got \"x\""
        );
        assert_eq!(
            syntax("ACK 18446744073709551616"),
            "delivery tag: expected a number, got \"18446744073709551616\""
        );
        assert!(syntax("ACK").starts_with("missing <delivery-tag>; usage: ACK"));
        assert_eq!(
            syntax("ACK 1 requeue=false"),
            "unknown option \"requeue=false\""
        );
        assert_eq!(
            syntax("NACK 1 requeue=maybe"),
            "requeue: expected true or false, got \"maybe\""
        );
        assert_eq!(
            syntax("NACK 1 requeue"),
            "requeue needs a value (requeue=...)"
        );
        assert_eq!(
            syntax("REJECT 1 multiple"),
            "unexpected argument \"multiple\""
        );
        assert_eq!(
            syntax("ACK 1 multiple multiple"),
            "duplicate option multiple"
        );
    }

    #[test]
    fn stats_and_list() {
        assert_eq!(ok("STATS"), Command::Stats(Stats { queue: None }));
        assert_eq!(
            ok("stats queue jobs"),
            Command::Stats(Stats {
                queue: Some("jobs".into())
            })
        );
        assert_eq!(
            syntax("STATS jobs"),
            "STATS: expected QUEUE <name> or nothing, got \"jobs\""
        );
        assert!(syntax("STATS QUEUE").starts_with("missing <name>; usage: STATS QUEUE"));
        assert_eq!(syntax("STATS QUEUE a b"), "unexpected argument \"b\"");
        let l = |kind, pattern: Option<&str>| {
            Command::List(List {
                kind,
                pattern: pattern.map(String::from),
            })
        };
        assert_eq!(ok("LIST QUEUES"), l(ListKind::Queues, None));
        assert_eq!(ok("list exchanges"), l(ListKind::Exchanges, None));
        assert_eq!(
            ok("LIST Bindings jobs.*"),
            l(ListKind::Bindings, Some("jobs.*"))
        );
        assert_eq!(
            ok("LIST CONNECTIONS \"my app?\""),
            l(ListKind::Connections, Some("my app?"))
        );
        assert_eq!(ok("LIST CONSUMERS *"), l(ListKind::Consumers, Some("*")));
        assert!(syntax("LIST").starts_with("missing what to list; usage: LIST"));
        assert!(syntax("LIST THINGS").starts_with("LIST: expected QUEUES or EXCHANGES"));
        assert_eq!(syntax("LIST QUEUES a b"), "unexpected argument \"b\"");
        assert_eq!(syntax("LIST QUEUES a=b"), "unknown option \"a=b\"");
        assert_eq!(syntax("LIST QUEUES \"\""), "pattern must be 1 to 255 bytes");
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
                    retry-delays=1000,5000,30000";
        let Command::DeclareQueue(d) = ok(line) else {
            panic!()
        };
        assert_eq!((d.name.as_str(), d.durable), ("jobs", true));
        let want = QueueArgs {
            single_active: false,
            groups: false,
            stream: false,
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
            single_active: false,
            groups: false,
            stream: false,
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
        assert!(syntax("DECLARE QUEUE").ends_with("[max-bytes=N] [partitions=N]"));
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
        assert!(d.args.stream);
        assert_eq!(
            (d.args.max_age_ms, d.args.max_bytes, d.partitions),
            (Some(60000), Some(1000), Some(3))
        );
        let Command::DeclareQueue(d) = ok("DECLARE QUEUE q single-active") else {
            panic!()
        };
        assert!(d.args.single_active && !d.args.groups && !d.args.stream);
        assert!(matches!(ok("DECLARE QUEUE q groups"), Command::DeclareQueue(d) if d.args.groups));
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
        assert_eq!(
            publish("PUB \"\" q group=order-1 x").group.as_deref(),
            Some(&b"order-1"[..])
        );
        assert_eq!(syntax("PUB \"\" q group= x"), "group: must not be empty");
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
        assert_eq!(
            ok("SEEK orders billing time=5"),
            Command::Seek(Seek {
                stream: "orders".into(),
                group: "billing".into(),
                to: StreamStart::Time(5)
            })
        );
        assert!(syntax("SEEK orders billing").starts_with("missing offset= or time="));
        assert!(syntax("SEEK orders").starts_with("missing <group>"));
    }

    #[test]
    fn nack_delay() {
        let n = |tag, multiple, requeue, delay_ms| {
            Command::Nack(Nack {
                tag,
                multiple,
                requeue,
                delay_ms,
            })
        };
        assert_eq!(ok("NACK 3 delay=500"), n(3, false, true, Some(500)));
        assert_eq!(ok("nack 3 MULTIPLE Delay=0"), n(3, true, true, Some(0)));
        assert_eq!(
            ok("NACK 3 requeue=TRUE delay=7 multiple"),
            n(3, true, true, Some(7))
        );
        assert_eq!(
            ok("NACK 3 delay=7 requeue=true"),
            n(3, false, true, Some(7))
        );
        assert_eq!(ok("NACK 3 requeue=false"), n(3, false, false, None));
        assert_eq!(ok("REJECT 3"), n(3, false, false, None));
        assert_eq!(
            syntax("NACK 1 requeue=false delay=5"),
            "delay needs requeue"
        );
        assert_eq!(
            syntax("NACK 1 delay=5 requeue=FALSE"),
            "delay needs requeue"
        );
        assert_eq!(
            syntax("NACK 1 delay=soon"),
            "delay: expected a number, got \"soon\""
        );
        assert_eq!(syntax("NACK 1 delay"), "delay needs a value (delay=...)");
        assert_eq!(syntax("NACK 1 delay=1 delay=2"), "duplicate option delay");
        assert_eq!(
            syntax("REJECT 1 delay=5"),
            "unexpected argument \"delay=5\""
        );
        assert_eq!(syntax("ACK 1 delay=5"), "unknown option \"delay=5\"");
        assert!(syntax("NACK")
            .ends_with("NACK <delivery-tag> [multiple] [requeue=true|false] [delay=<ms>]"));
    }

    #[test]
    fn touch() {
        assert_eq!(ok("TOUCH 7"), Command::Touch(Touch { tag: 7 }));
        assert_eq!(
            ok("touch 18446744073709551615"),
            Command::Touch(Touch { tag: u64::MAX })
        );
        assert_eq!(
            syntax("TOUCH"),
            "missing <delivery-tag>; usage: TOUCH <delivery-tag>"
        );
        assert_eq!(syntax("TOUCH 1 2"), "unexpected argument \"2\"");
        assert_eq!(
            syntax("TOUCH 1 multiple"),
            "unexpected argument \"multiple\""
        );
        assert_eq!(
            syntax("TOUCH x"),
            "delivery tag: expected a number, got \"x\""
        );
        let e = parse_line(b"TOUCH 1 {3}", Some(Bytes::from_static(b"abc"))).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Syntax, "TOUCH does not take a literal")
        );
    }

    #[test]
    fn peek() {
        let p = |queue: &str, count, from| {
            Command::Peek(Peek {
                queue: queue.into(),
                count,
                from,
            })
        };
        assert_eq!(ok("PEEK jobs"), p("jobs", 1, None));
        assert_eq!(ok("peek jobs COUNT=1000 From=0"), p("jobs", 1000, Some(0)));
        assert_eq!(
            ok(&format!("PEEK q.dead from={} count=5", u64::MAX)),
            p("q.dead", 5, Some(u64::MAX))
        );
        assert!(syntax("PEEK")
            .starts_with("missing <queue>; usage: PEEK <queue> [count=<n>] [from=<position>]"));
        assert_eq!(syntax("PEEK jobs extra"), "unexpected argument \"extra\"");
        assert_eq!(syntax("PEEK \"\""), "queue name must not be empty");
        assert_eq!(
            syntax("PEEK jobs count=0"),
            "count: must be between 1 and 1000, got 0"
        );
        assert_eq!(
            syntax("PEEK jobs count=1001"),
            "count: must be between 1 and 1000, got 1001"
        );
        assert_eq!(
            syntax("PEEK jobs from=first"),
            "from: expected a number, got \"first\""
        );
        assert_eq!(
            syntax("PEEK jobs count=1 count=2"),
            "duplicate option count"
        );
        assert_eq!(syntax("PEEK jobs ack=auto"), "unknown option \"ack=auto\"");
        assert_eq!(syntax("PEEK jobs count"), "count needs a value (count=...)");
    }

    #[test]
    fn user_commands() {
        let add = ok("user add alice \"pa ss\" ADMIN write=^orders\\. read=\"\"");
        assert_eq!(
            add,
            Command::User(UserCommand::Add(UserAdd {
                name: "alice".into(),
                password: Secret("pa ss".into()),
                admin: true,
                perms: PermissionArgs {
                    configure: None,
                    write: Some("^orders\\.".into()),
                    read: Some(String::new()),
                },
            }))
        );
        assert!(
            !format!("{add:?}").contains("pa ss"),
            "no password in Debug"
        );
        assert_eq!(
            ok("USER PERMIT bob admin=false configure=x"),
            Command::User(UserCommand::Permit(UserPermit {
                name: "bob".into(),
                perms: PermissionArgs {
                    configure: Some("x".into()),
                    ..PermissionArgs::default()
                },
                admin: Some(false),
            }))
        );
        assert_eq!(
            ok("USER PASSWD bob a=b"),
            Command::User(UserCommand::Passwd(UserPasswd {
                name: "bob".into(),
                password: Secret("a=b".into()),
            }))
        );
        assert_eq!(
            ok("USER REMOVE bob"),
            Command::User(UserCommand::Remove("bob".into()))
        );
        assert_eq!(ok("USER LIST"), Command::User(UserCommand::List));
        for bad in [
            "USER",
            "USER FOO",
            "USER ADD",
            "USER ADD bob",
            "USER ADD bob \"\"",
            "USER ADD a/b pw",
            "USER ADD bob pw write=(",
            "USER ADD bob pw admin admin",
            "USER ADD bob pw other=1",
            "USER PERMIT bob read=*",
            "USER REMOVE",
            "USER REMOVE bob extra",
            "USER LIST extra",
        ] {
            assert_eq!(err(bad).code, ErrorCode::Syntax, "{bad}");
        }
        assert!(err("USER ADD bob pw write=(").message.contains("write"));
        let long = "u".repeat(MAX_USER_NAME_BYTES + 1);
        assert_eq!(err(&format!("USER REMOVE {long}")).code, ErrorCode::Syntax);
    }

    #[test]
    fn redrive() {
        let r = |queue: &str, count| {
            Command::Redrive(Redrive {
                queue: queue.into(),
                count,
            })
        };
        assert_eq!(ok("REDRIVE jobs.dead"), r("jobs.dead", None));
        assert_eq!(ok("redrive dlq COUNT=10"), r("dlq", Some(10)));
        assert_eq!(
            ok(&format!("REDRIVE dlq count={}", u64::MAX)),
            r("dlq", Some(u64::MAX))
        );
        assert_eq!(
            syntax("REDRIVE"),
            "missing <queue>; usage: REDRIVE <queue> [count=<n>]"
        );
        assert_eq!(syntax("REDRIVE dlq jobs"), "unexpected argument \"jobs\"");
        assert_eq!(
            syntax("REDRIVE dlq count=0"),
            "count: must be between 1 and 18446744073709551615, got 0"
        );
        assert_eq!(
            syntax("REDRIVE dlq count=all"),
            "count: expected a number, got \"all\""
        );
        assert_eq!(syntax("REDRIVE dlq from=1"), "unknown option \"from=1\"");
        assert_eq!(
            syntax("REDRIVE dlq count=1 count=1"),
            "duplicate option count"
        );
        assert!(syntax("REDRIVE bad!").starts_with("bad queue name \"bad!\""));
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
    fn literal_on_a_verb_without_body() {
        let lit = Some(Bytes::from_static(b"abc"));
        let e = parse_line(b"PING {3}", lit.clone()).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Syntax, "PING does not take a literal")
        );
        let e = parse_line(b"sub q {3}", lit.clone()).unwrap_err();
        assert_eq!(e.message, "SUB does not take a literal");
        assert_eq!(
            parse_line(b"nope {3}", lit).unwrap_err().code,
            ErrorCode::UnknownCommand
        );
    }

    #[test]
    fn names_and_non_utf8() {
        let e = parse_line(b"AUTH \xff pw", None).unwrap_err();
        assert_eq!(e.message, "user is not valid UTF-8");
        let e = parse_line(b"PUB x k id=\xfe b", None).unwrap_err();
        assert_eq!(e.message, "id is not valid UTF-8");
        let p = parse_line(b"PUB x k \xff\xfe", None).unwrap();
        assert!(matches!(p, Command::Publish(p) if &p.body[..] == b"\xff\xfe"));
        assert!(ok("SUB a-Z_0.9:/x") != Command::Ping);
    }

    #[test]
    fn errors_never_end_in_a_lit_mark() {
        for line in [
            "frob {5}",
            "SUB q {5}",
            "BIND q ex k {5}",
            "ACK {5}",
            "SUB q prefetch={5}",
            "DECLARE {5}",
            "DECLARE QUEUE q retry-delays={5}",
            "DECLARE QUEUE q overflow={5}",
            "PEEK q count={5}",
            "TOUCH {5}",
        ] {
            let e = err(line);
            assert!(
                lit_mark(e.to_string().as_bytes(), true).is_none(),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn framer_to_parser_pipeline() {
        use super::super::frame::{FrameEvent, Framer, Limits};
        let mut framer = Framer::new(Limits::default());
        let mut buf = bytes::BytesMut::from(&b"pub \"\" q {5}\r\nhello\r\nPING\n"[..]);
        let mut cmds = Vec::new();
        while let Some(FrameEvent::Frame(f)) = framer.next_event(&mut buf).unwrap() {
            cmds.push(parse_command(&f).unwrap());
        }
        assert_eq!(cmds.len(), 2);
        assert!(matches!(&cmds[0], Command::Publish(p) if &p.body[..] == b"hello" && p.key == "q"));
        assert_eq!(cmds[1], Command::Ping);
    }
}
