//! [`Command`]s back to wire bytes: the inverse of [`parse`](super::parse).
//!
//! [`Command::encode`] writes one frame that the [`Framer`](super::frame::Framer)
//! and [`parse_command`](super::parse::parse_command) turn back into the same
//! command. Clients use it to write commands from values; the round-trip tests
//! (here, in `prop_tests` and the `parse_line` fuzz target) pin it to the parser.
//!
//! Every word goes through [`encode_word`], so data that looks like a keyword,
//! an option or a lit-mark is quoted. Defaults are left out (`ack=manual`,
//! `count=1`, a `false` flag, an empty `BIND` key): the parser reads an absent
//! word and its default spelt out as the same value, so the command survives.
//!
//! This module is also the one spelling of every option keyword: the option
//! and flag names (`opt::TTL`, ...) and the enumerated values (`direct`,
//! `drop-head`, `manual`, ...: the tables below, read with `keyword`). The
//! parser's grammars match against them and [`describe_args`] writes them
//! for people, so the reader, the writer and the broker's messages cannot
//! spell an option differently. (Verbs are matched in
//! [`parse`](super::parse); usage lines and error texts, which are prose,
//! spell options inside their text.)

use std::io::Write;

use super::command::{
    Ack, AckMode, Bind, ClusterCommand, Command, Compat, DeclareExchange, DeclareQueue,
    DeleteExchange, DeleteQueue, ExchangeKind, Get, Header, HeaderMatch, Hello, List, ListKind,
    Nack, Overflow, Peek, PermissionArgs, Publish, QueueArgs, QueueMode, Redrive, SchemaAdd,
    SchemaCommand, Seek, Stats, StreamStart, Subscribe, Tx, UserCommand,
};
use super::reply::quote_for_message;
use super::token::{encode_quoted, encode_word, needs_quotes};

/// The names of options (`name=value`) and flags (a bare `name`, or
/// `name=true|false`), in the canonical lower case the parser reports them
/// in: each is spelt here once, for every verb that takes it.
pub(super) mod opt {
    pub(crate) const ACK: &str = "ack";
    pub(crate) const ACK_TIMEOUT: &str = "ack-timeout";
    pub(crate) const ADMIN: &str = "admin";
    pub(crate) const ALTERNATE: &str = "alternate";
    pub(crate) const AUTO_DELETE: &str = "auto-delete";
    pub(crate) const CONFIGURE: &str = "configure";
    pub(crate) const COMPAT: &str = "compat";
    pub(crate) const COUNT: &str = "count";
    pub(crate) const DEAD_LETTER: &str = "dead-letter";
    pub(crate) const DEAD_LETTER_KEY: &str = "dead-letter-key";
    pub(crate) const DEDUP_WINDOW: &str = "dedup-window";
    pub(crate) const DELAY: &str = "delay";
    pub(crate) const DELIVERY_LIMIT: &str = "delivery-limit";
    pub(crate) const DURABLE: &str = "durable";
    pub(crate) const EXCLUSIVE: &str = "exclusive";
    pub(crate) const EXPIRES: &str = "expires";
    pub(crate) const FROM: &str = "from";
    pub(crate) const GROUP: &str = "group";
    pub(crate) const GROUPS: &str = "groups";
    pub(crate) const HASH_HEADER: &str = "hash-header";
    pub(crate) const HEARTBEAT: &str = "heartbeat";
    pub(crate) const ID: &str = "id";
    pub(crate) const IF_EMPTY: &str = "if-empty";
    pub(crate) const IF_UNUSED: &str = "if-unused";
    pub(crate) const MANDATORY: &str = "mandatory";
    pub(crate) const MATCH: &str = "match";
    pub(crate) const MAX_AGE: &str = "max-age";
    pub(crate) const REPLICAS: &str = "replicas";
    pub(crate) const MAX_BYTES: &str = "max-bytes";
    pub(crate) const MAX_LENGTH: &str = "max-length";
    pub(crate) const MAX_PRIORITY: &str = "max-priority";
    pub(crate) const MULTIPLE: &str = "multiple";
    pub(crate) const NAME: &str = "name";
    pub(crate) const OFFSET: &str = "offset";
    pub(crate) const OVERFLOW: &str = "overflow";
    pub(crate) const PARTITIONS: &str = "partitions";
    pub(crate) const PERSISTENT: &str = "persistent";
    pub(crate) const PREFETCH: &str = "prefetch";
    pub(crate) const PREFETCH_BYTES: &str = "prefetch-bytes";
    pub(crate) const PRIORITY: &str = "priority";
    pub(crate) const PROTO: &str = "proto";
    pub(crate) const READ: &str = "read";
    pub(crate) const REQUEUE: &str = "requeue";
    pub(crate) const RETRY_DELAYS: &str = "retry-delays";
    pub(crate) const SCHEMA: &str = "schema";
    pub(crate) const SINGLE_ACTIVE: &str = "single-active";
    pub(crate) const TAG: &str = "tag";
    pub(crate) const TIME: &str = "time";
    pub(crate) const TRANSIENT: &str = "transient";
    pub(crate) const TRANSITIVE: &str = "transitive";
    pub(crate) const TTL: &str = "ttl";
    pub(crate) const TYPE: &str = "type";
    pub(crate) const VERSION: &str = "version";
    pub(crate) const WAIT: &str = "wait";
    pub(crate) const WRITE: &str = "write";
    /// What starts a header option: `h.<name>=<value>` (in any case).
    pub(crate) const HEADER_PREFIX: &str = "h.";
}

/// The types of `DECLARE EXCHANGE`.
pub(super) const EXCHANGE_KINDS: &[(&str, ExchangeKind)] = &[
    ("direct", ExchangeKind::Direct),
    ("fanout", ExchangeKind::Fanout),
    ("topic", ExchangeKind::Topic),
    ("headers", ExchangeKind::Headers),
    ("hash", ExchangeKind::Hash),
];
/// `DECLARE QUEUE type=`: whether the queue is a stream.
pub(super) const QUEUE_TYPES: &[(&str, bool)] = &[("queue", false), ("stream", true)];
/// `DECLARE QUEUE overflow=`.
pub(super) const OVERFLOWS: &[(&str, Overflow)] = &[
    ("drop-head", Overflow::DropHead),
    ("reject-publish", Overflow::RejectPublish),
    ("block", Overflow::Block),
];
/// The named starting points of a stream reader (`offset=`).
pub(super) const STREAM_OFFSETS: &[(&str, StreamStart)] = &[
    ("first", StreamStart::First),
    ("last", StreamStart::Last),
    ("next", StreamStart::Next),
];
/// `SUB`/`GET` `ack=`.
pub(super) const ACK_MODES: &[(&str, AckMode)] =
    &[("manual", AckMode::Manual), ("auto", AckMode::Auto)];
/// A headers binding's `match=`.
pub(super) const HEADER_MATCHES: &[(&str, HeaderMatch)] =
    &[("all", HeaderMatch::All), ("any", HeaderMatch::Any)];
/// The tables of `LIST`.
pub(super) const LIST_KINDS: &[(&str, ListKind)] = &[
    ("QUEUES", ListKind::Queues),
    ("EXCHANGES", ListKind::Exchanges),
    ("BINDINGS", ListKind::Bindings),
    ("CONNECTIONS", ListKind::Connections),
    ("CONSUMERS", ListKind::Consumers),
    ("NODES", ListKind::Nodes),
    ("GROUPS", ListKind::Groups),
    ("SCHEMAS", ListKind::Schemas),
];
/// A schema subject's `compat=`.
pub(super) const COMPATS: &[(&str, Compat)] = &[
    ("none", Compat::None),
    ("backward", Compat::Backward),
    ("forward", Compat::Forward),
    ("full", Compat::Full),
];
/// `SCHEMA GET version=latest`.
pub(super) const LATEST: &str = "latest";
/// The value of a flag given as `name=true|false`, and of `requeue=`.
pub(super) const BOOLS: &[(&str, bool)] = &[("true", true), ("false", false)];

/// The keyword of `value` in one of the tables above (each table lists
/// every value, which the tests check).
pub(super) fn keyword<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(k, _)| k)
}

impl ExchangeKind {
    /// The type's wire name (`direct`, `fanout`, `topic`, `headers`).
    pub(crate) fn keyword(self) -> &'static str {
        keyword(EXCHANGE_KINDS, self)
    }
}

impl Compat {
    /// The wire name of a schema subject's rule (`none`, `backward`, ...).
    pub(crate) fn keyword(self) -> &'static str {
        keyword(COMPATS, self)
    }
}

impl HeaderMatch {
    /// The wire name of a headers binding's `match=` (`all`, `any`).
    pub(crate) fn keyword(self) -> &'static str {
        keyword(HEADER_MATCHES, self)
    }
}

/// Largest `PUB` body written inline as the last word; longer bodies (and any
/// body holding NUL, CR or LF, which no word can hold) go in a literal.
pub(crate) const MAX_INLINE_BODY_BYTES: usize = 64;

impl Command {
    /// The command as one frame: a line ending in CRLF, then for a `PUB` whose
    /// body is not written inline, the `{N}` literal's bytes and their CRLF.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Command::encode`], appending to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Words(out);
        let mut literal = None;
        match self {
            Command::Hello(h) => hello(&mut w, h),
            Command::Auth(a) => {
                w.verb("AUTH");
                w.word(a.user.as_bytes());
                w.word(a.password.0.as_bytes());
            }
            Command::Ping => w.verb("PING"),
            Command::Help(h) => {
                w.verb("HELP");
                if let Some(verb) = &h.verb {
                    w.optional_word(verb.as_bytes());
                }
            }
            Command::Quit => w.verb("QUIT"),
            Command::DeclareExchange(d) => declare_exchange(&mut w, d),
            Command::DeclareQueue(d) => declare_queue(&mut w, d),
            Command::DeleteExchange(DeleteExchange { name, if_unused }) => {
                w.verb("DELETE EXCHANGE");
                w.word(name.as_bytes());
                w.flag(opt::IF_UNUSED, *if_unused);
            }
            Command::DeleteQueue(DeleteQueue {
                name,
                if_unused,
                if_empty,
            }) => {
                w.verb("DELETE QUEUE");
                w.word(name.as_bytes());
                w.flag(opt::IF_UNUSED, *if_unused);
                w.flag(opt::IF_EMPTY, *if_empty);
            }
            Command::Bind(b) => bind(&mut w, "BIND", b),
            Command::Unbind(b) => bind(&mut w, "UNBIND", b),
            Command::Purge(p) => {
                w.verb("PURGE");
                w.word(p.queue.as_bytes());
            }
            Command::Publish(p) => literal = publish(&mut w, p),
            Command::Subscribe(s) => subscribe(&mut w, s),
            Command::Unsubscribe(u) => {
                w.verb("UNSUB");
                w.word(u.tag.as_bytes());
            }
            Command::Get(g) => get(&mut w, g),
            Command::Ack(Ack { tag, multiple }) => {
                w.verb("ACK");
                w.number(*tag);
                w.flag(opt::MULTIPLE, *multiple);
            }
            Command::Nack(n) => nack(&mut w, n),
            Command::Touch(t) => {
                w.verb("TOUCH");
                w.number(t.tag);
            }
            Command::Tx(step) => w.verb(match step {
                Tx::Begin => "TX BEGIN",
                Tx::Commit => "TX COMMIT",
                Tx::Abort => "TX ABORT",
            }),
            Command::Peek(p) => peek(&mut w, p),
            Command::Seek(Seek { stream, group, to }) => {
                w.verb("SEEK");
                w.word(stream.as_bytes());
                w.word(group.as_bytes());
                stream_start(&mut w, *to);
            }
            Command::Redrive(Redrive { queue, count }) => {
                w.verb("REDRIVE");
                w.word(queue.as_bytes());
                w.opt_number(opt::COUNT, *count);
            }
            Command::User(u) => user(&mut w, u),
            Command::Schema(c) => literal = schema(&mut w, c),
            Command::CloseConnection(c) => {
                w.verb("CLOSE CONNECTION");
                w.number(c.id);
            }
            Command::Cluster(c) => {
                w.verb("CLUSTER");
                match c {
                    ClusterCommand::Add { id, addr } => {
                        w.word(b"ADD");
                        w.number(*id);
                        w.word(addr.to_string().as_bytes());
                    }
                    ClusterCommand::Remove(id) => {
                        w.word(b"REMOVE");
                        w.number(*id);
                    }
                    ClusterCommand::Transfer(id) => {
                        w.word(b"TRANSFER");
                        w.number(*id);
                    }
                }
            }
            Command::Stats(Stats { queue }) => match queue {
                Some(q) => {
                    w.verb("STATS QUEUE");
                    w.word(q.as_bytes());
                }
                None => w.verb("STATS"),
            },
            Command::List(List { kind, pattern }) => {
                w.verb("LIST");
                w.word(keyword(LIST_KINDS, *kind).as_bytes());
                if let Some(p) = pattern {
                    w.optional_word(p.as_bytes());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = literal {
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A line being written: each method appends one word and its leading blank
/// (but [`Words::verb`], the first).
struct Words<'a>(&'a mut Vec<u8>);

impl Words<'_> {
    fn verb(&mut self, verb: &str) {
        self.0.extend_from_slice(verb.as_bytes());
    }

    /// A positional word (taken by position, whatever it looks like).
    fn word(&mut self, word: &[u8]) {
        self.0.push(b' ');
        encode_word(self.0, word);
    }

    /// An optional positional (`BIND` key, `HELP` verb): one that could be
    /// read as an option is quoted, since a quoted word never is.
    fn optional_word(&mut self, word: &[u8]) {
        self.0.push(b' ');
        if needs_quotes(word) || word.contains(&b'=') {
            encode_quoted(self.0, word);
        } else {
            self.0.extend_from_slice(word);
        }
    }

    fn number(&mut self, n: u64) {
        let _ = write!(self.0, " {n}");
    }

    fn flag(&mut self, name: &str, on: bool) {
        if on {
            self.0.push(b' ');
            self.0.extend_from_slice(name.as_bytes());
        }
    }

    /// `name=value`, the value quoted when it must be (`name="a b"`).
    fn opt(&mut self, name: &str, value: &[u8]) {
        let _ = write!(self.0, " {name}=");
        encode_word(self.0, value);
    }

    fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.opt(name, v.as_bytes());
        }
    }

    fn opt_number(&mut self, name: &str, value: Option<u64>) {
        if let Some(n) = value {
            let _ = write!(self.0, " {name}={n}");
        }
    }

    fn headers(&mut self, headers: &[Header]) {
        for (name, value) in headers {
            self.opt(&format!("{}{name}", opt::HEADER_PREFIX), value);
        }
    }
}

fn hello(w: &mut Words<'_>, h: &Hello) {
    w.verb("HELLO");
    w.opt_str(opt::NAME, h.name.as_deref());
    w.opt_number(opt::PROTO, h.proto);
    w.opt_number(opt::HEARTBEAT, h.heartbeat);
}

fn user(w: &mut Words<'_>, u: &UserCommand) {
    let perms = |w: &mut Words<'_>, p: &PermissionArgs| {
        w.opt_str(opt::CONFIGURE, p.configure.as_deref());
        w.opt_str(opt::WRITE, p.write.as_deref());
        w.opt_str(opt::READ, p.read.as_deref());
    };
    match u {
        UserCommand::Add(a) => {
            w.verb("USER ADD");
            w.word(a.name.as_bytes());
            w.word(a.password.0.as_bytes());
            w.flag(opt::ADMIN, a.admin);
            perms(w, &a.perms);
        }
        UserCommand::Passwd(p) => {
            w.verb("USER PASSWD");
            w.word(p.name.as_bytes());
            w.word(p.password.0.as_bytes());
        }
        UserCommand::Permit(p) => {
            w.verb("USER PERMIT");
            w.word(p.name.as_bytes());
            perms(w, &p.perms);
            match p.admin {
                Some(true) => w.flag(opt::ADMIN, true),
                Some(false) => w.opt(opt::ADMIN, keyword(BOOLS, false).as_bytes()),
                None => {}
            }
        }
        UserCommand::Remove(name) => {
            w.verb("USER REMOVE");
            w.word(name.as_bytes());
        }
        UserCommand::List => w.verb("USER LIST"),
    }
}

fn declare_exchange(w: &mut Words<'_>, d: &DeclareExchange) {
    w.verb("DECLARE EXCHANGE");
    w.word(d.name.as_bytes());
    w.word(keyword(EXCHANGE_KINDS, d.kind).as_bytes());
    w.flag(opt::DURABLE, d.durable);
    w.flag(opt::AUTO_DELETE, d.auto_delete);
    w.opt_str(opt::ALTERNATE, d.alternate.as_deref());
    w.opt_str(opt::HASH_HEADER, d.hash_header.as_deref());
    w.opt_str(opt::SCHEMA, d.schema.as_deref());
}

/// The words of `SCHEMA ADD`'s `OK` (`<subject> version=<n>`) and, with
/// the subject's `rule`, of `SCHEMA GET`'s (`... compat=<rule>
/// [transitive]`).
pub(crate) fn schema_reply_words(
    subject: &str,
    version: u32,
    rule: Option<(Compat, bool)>,
) -> Vec<String> {
    let mut words = vec![subject.to_string(), format!("{}={version}", opt::VERSION)];
    if let Some((compat, transitive)) = rule {
        words.push(format!("{}={}", opt::COMPAT, compat.keyword()));
        if transitive {
            words.push(opt::TRANSITIVE.to_string());
        }
    }
    words
}

/// The `SCHEMA` line: `ADD`'s schema is always a literal (returned, to
/// follow the line).
fn schema<'c>(w: &mut Words<'_>, c: &'c SchemaCommand) -> Option<&'c [u8]> {
    match c {
        SchemaCommand::Add(SchemaAdd {
            subject,
            rule,
            schema,
        }) => {
            w.verb("SCHEMA ADD");
            w.word(subject.as_bytes());
            if let Some((compat, transitive)) = rule {
                w.opt(opt::COMPAT, keyword(COMPATS, *compat).as_bytes());
                w.flag(opt::TRANSITIVE, *transitive);
            }
            let _ = write!(w.0, " {{{}}}", schema.len());
            return Some(schema.as_bytes());
        }
        SchemaCommand::Get { subject, version } => {
            w.verb("SCHEMA GET");
            w.word(subject.as_bytes());
            w.opt_number(opt::VERSION, version.map(u64::from));
        }
        SchemaCommand::Delete { subject, version } => {
            w.verb("SCHEMA DELETE");
            w.word(subject.as_bytes());
            w.opt_number(opt::VERSION, version.map(u64::from));
        }
    }
    None
}

fn declare_queue(w: &mut Words<'_>, d: &DeclareQueue) {
    w.verb("DECLARE QUEUE");
    w.word(d.name.as_bytes());
    w.flag(opt::DURABLE, d.durable);
    w.flag(opt::EXCLUSIVE, d.exclusive);
    w.flag(opt::AUTO_DELETE, d.auto_delete);
    let QueueArgs {
        max_length,
        max_bytes,
        overflow,
        ttl_ms,
        expires_ms,
        dead_letter,
        dead_letter_key,
        delivery_limit,
        ack_timeout_ms,
        max_priority,
        dedup_window_ms,
        retry_delays_ms,
        mode,
        max_age_ms,
        schema,
    } = &d.args;
    if mode.is_stream() {
        w.opt(opt::TYPE, keyword(QUEUE_TYPES, true).as_bytes());
    }
    w.opt_number(opt::MAX_AGE, *max_age_ms);
    w.opt_number(opt::PARTITIONS, d.partitions.map(u64::from));
    w.opt_number(opt::REPLICAS, d.replicas.map(u64::from));
    w.flag(opt::SINGLE_ACTIVE, *mode == QueueMode::SingleActive);
    w.flag(opt::GROUPS, *mode == QueueMode::Groups);
    w.opt_number(opt::MAX_LENGTH, *max_length);
    w.opt_number(opt::MAX_BYTES, *max_bytes);
    if *overflow != Default::default() {
        w.opt(opt::OVERFLOW, keyword(OVERFLOWS, *overflow).as_bytes());
    }
    w.opt_number(opt::TTL, *ttl_ms);
    w.opt_number(opt::EXPIRES, *expires_ms);
    w.opt_str(opt::DEAD_LETTER, dead_letter.as_deref());
    if let Some(key) = dead_letter_key {
        w.opt(opt::DEAD_LETTER_KEY, key);
    }
    w.opt_number(opt::DELIVERY_LIMIT, delivery_limit.map(u64::from));
    w.opt_number(opt::ACK_TIMEOUT, *ack_timeout_ms);
    w.opt_number(opt::MAX_PRIORITY, max_priority.map(u64::from));
    w.opt_number(opt::DEDUP_WINDOW, *dedup_window_ms);
    if !retry_delays_ms.is_empty() {
        let list: Vec<String> = retry_delays_ms.iter().map(u64::to_string).collect();
        w.opt(opt::RETRY_DELAYS, list.join(",").as_bytes());
    }
    w.opt_str(opt::SCHEMA, schema.as_deref());
}

fn bind(w: &mut Words<'_>, verb: &str, b: &Bind) {
    w.verb(verb);
    w.word(b.queue.as_bytes());
    w.word(b.exchange.as_bytes());
    if !b.key.is_empty() {
        w.optional_word(&b.key);
    }
    w.headers(&b.headers);
    if let Some(m) = b.matching {
        w.opt(opt::MATCH, keyword(HEADER_MATCHES, m).as_bytes());
    }
}

/// The `PUB` line: the body is its last word when it is short and can be a
/// word; else the line ends in `{N}` and the body is returned, to follow it.
fn publish<'p>(w: &mut Words<'_>, p: &'p Publish) -> Option<&'p [u8]> {
    w.verb("PUB");
    w.word(p.exchange.as_bytes());
    w.word(&p.key);
    match p.persistent {
        Some(true) => w.flag(opt::PERSISTENT, true),
        Some(false) => w.flag(opt::TRANSIENT, true),
        None => {}
    }
    w.flag(opt::MANDATORY, p.mandatory);
    w.opt_str(opt::ID, p.id.as_deref());
    w.opt_number(opt::TTL, p.ttl_ms);
    w.opt_number(opt::DELAY, p.delay_ms);
    w.opt_number(opt::PRIORITY, p.priority.map(u64::from));
    if let Some(g) = &p.group {
        w.opt(opt::GROUP, g);
    }
    w.headers(&p.headers);
    let inline = p.body.len() <= MAX_INLINE_BODY_BYTES
        && !p.body.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'));
    if inline {
        w.word(&p.body);
        None
    } else {
        let _ = write!(w.0, " {{{}}}", p.body.len());
        Some(&p.body)
    }
}

fn subscribe(w: &mut Words<'_>, s: &Subscribe) {
    w.verb("SUB");
    w.word(s.queue.as_bytes());
    w.opt_number(opt::PREFETCH, s.prefetch.map(u64::from));
    w.opt_number(opt::PREFETCH_BYTES, s.prefetch_bytes);
    if s.ack != Default::default() {
        w.opt(opt::ACK, keyword(ACK_MODES, s.ack).as_bytes());
    }
    w.opt_str(opt::TAG, s.tag.as_deref());
    w.flag(opt::EXCLUSIVE, s.exclusive);
    w.opt_str(opt::GROUP, s.group.as_deref());
    if let Some(start) = s.start {
        stream_start(w, start);
    }
}

/// `offset=first|last|next|<n>` or `time=<unix-ms>`.
fn stream_start(w: &mut Words<'_>, start: StreamStart) {
    match start {
        StreamStart::Offset(n) => w.opt_number(opt::OFFSET, Some(n)),
        StreamStart::Time(t) => w.opt_number(opt::TIME, Some(t)),
        named => w.opt(opt::OFFSET, keyword(STREAM_OFFSETS, named).as_bytes()),
    }
}

fn get(w: &mut Words<'_>, g: &Get) {
    w.verb("GET");
    w.word(g.queue.as_bytes());
    if g.ack != Default::default() {
        w.opt(opt::ACK, keyword(ACK_MODES, g.ack).as_bytes());
    }
    w.opt_number(opt::COUNT, (g.count != 1).then_some(u64::from(g.count)));
    w.opt_number(opt::WAIT, (g.wait_ms != 0).then_some(g.wait_ms));
}

/// `NACK`; a `REJECT` parses to a `Nack` and comes back as `NACK requeue=false`.
fn nack(w: &mut Words<'_>, n: &Nack) {
    w.verb("NACK");
    w.number(n.tag);
    w.flag(opt::MULTIPLE, n.multiple);
    if !n.requeue {
        w.opt(opt::REQUEUE, keyword(BOOLS, false).as_bytes());
    }
    w.opt_number(opt::DELAY, n.delay_ms);
}

fn peek(w: &mut Words<'_>, p: &Peek) {
    w.verb("PEEK");
    w.word(p.queue.as_bytes());
    w.opt_number(opt::COUNT, (p.count != 1).then_some(u64::from(p.count)));
    w.opt_number(opt::FROM, p.from);
}

/// The failure-handling options as `DECLARE QUEUE` takes them (`none`
/// when there are none): how a refused redeclare names the queue's options
/// (`ERR PRECONDITION queue q exists with other options (...)`). For people,
/// not for the parser: names are quoted as in error texts, in this order.
pub(crate) fn describe_args(a: &QueueArgs) -> String {
    let mut w: Vec<String> = Vec::new();
    let mut num = |name: &str, v: Option<u64>| {
        if let Some(v) = v {
            w.push(format!("{name}={v}"));
        }
    };
    num(opt::MAX_LENGTH, a.max_length);
    num(opt::MAX_BYTES, a.max_bytes);
    num(opt::TTL, a.ttl_ms);
    num(opt::EXPIRES, a.expires_ms);
    num(opt::DELIVERY_LIMIT, a.delivery_limit.map(u64::from));
    num(opt::ACK_TIMEOUT, a.ack_timeout_ms);
    num(opt::MAX_PRIORITY, a.max_priority.map(u64::from));
    num(opt::DEDUP_WINDOW, a.dedup_window_ms);
    num(opt::MAX_AGE, a.max_age_ms);
    if a.overflow != Overflow::DropHead {
        w.push(format!("{}={}", opt::OVERFLOW, overflow_name(a.overflow)));
    }
    if let Some(x) = &a.dead_letter {
        w.push(format!("{}={}", opt::DEAD_LETTER, quote_for_message(x)));
    }
    if let Some(k) = &a.dead_letter_key {
        // For people: a key that is not UTF-8 shows its bad bytes as U+FFFD.
        let k = String::from_utf8_lossy(k);
        w.push(format!(
            "{}={}",
            opt::DEAD_LETTER_KEY,
            quote_for_message(&k)
        ));
    }
    if !a.retry_delays_ms.is_empty() {
        let d: Vec<String> = a.retry_delays_ms.iter().map(u64::to_string).collect();
        w.push(format!("{}={}", opt::RETRY_DELAYS, d.join(",")));
    }
    if let Some(x) = &a.schema {
        w.push(format!("{}={}", opt::SCHEMA, quote_for_message(x)));
    }
    match a.mode {
        QueueMode::Classic => {}
        QueueMode::Stream => w.push(format!("{}={}", opt::TYPE, keyword(QUEUE_TYPES, true))),
        QueueMode::SingleActive => w.push(opt::SINGLE_ACTIVE.into()),
        QueueMode::Groups => w.push(opt::GROUPS.into()),
    }
    if w.is_empty() {
        "none".into()
    } else {
        w.join(" ")
    }
}

/// The wire name of an overflow policy.
pub(crate) fn overflow_name(o: Overflow) -> &'static str {
    keyword(OVERFLOWS, o)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::*;
    use crate::protocol::parse::{decode_one, parse_line};

    fn decode(wire: &[u8]) -> Command {
        decode_one(wire).unwrap()
    }

    fn parsed(line: &str) -> Command {
        parse_line(line.as_bytes(), None).unwrap()
    }

    /// `line` parses; its encoding is `want` and reads back as the same command.
    fn check(line: &str, want: &str) {
        let cmd = parsed(line);
        let wire = cmd.encode();
        assert_eq!(String::from_utf8_lossy(&wire), want, "{line}");
        assert_eq!(decode(&wire), cmd, "{line}");
    }

    #[test]
    fn session_verbs_encode_as_they_read() {
        check("ping", "PING\r\n");
        check("QUIT", "QUIT\r\n");
        check("hello", "HELLO\r\n");
        check(
            "HELLO name=\"my app\" proto=1",
            "HELLO name=\"my app\" proto=1\r\n",
        );
        check("AUTH bob \"p=w d\"", "AUTH bob \"p=w d\"\r\n");
        check("AUTH \"\" x=y", "AUTH \"\" x=y\r\n");
        check("help pub", "HELP PUB\r\n");
        check("help \"x=y\"", "HELP \"X=Y\"\r\n");
    }

    #[test]
    fn topology_verbs_encode_as_they_read() {
        check(
            "declare exchange logs topic durable=true auto-delete=false alternate=other",
            "DECLARE EXCHANGE logs topic durable alternate=other\r\n",
        );
        check(
            "DECLARE QUEUE \"\" exclusive overflow=block max-length=5 retry-delays=10,20 \
             dead-letter= dead-letter-key=\"a b\" max-priority=9 delivery-limit=3",
            "DECLARE QUEUE \"\" exclusive max-length=5 overflow=block dead-letter=\"\" \
             dead-letter-key=\"a b\" delivery-limit=3 max-priority=9 retry-delays=10,20\r\n",
        );
        check("DECLARE QUEUE q overflow=drop-head", "DECLARE QUEUE q\r\n");
        check(
            "DELETE QUEUE q if-empty if-unused",
            "DELETE QUEUE q if-unused if-empty\r\n",
        );
        check(
            "declare exchange users HASH hash-header=user-id durable",
            "DECLARE EXCHANGE users hash durable hash-header=user-id\r\n",
        );
        check("DELETE EXCHANGE e", "DELETE EXCHANGE e\r\n");
        check("PURGE q", "PURGE q\r\n");
        check(
            "BIND q e \"a=b\" h.x=\"1 2\" match=any",
            "BIND q e \"a=b\" h.x=\"1 2\" match=any\r\n",
        );
        check("UNBIND q \"\" h.x=1", "UNBIND q \"\" h.x=1\r\n");
        check("BIND q e \"\" match=all", "BIND q e match=all\r\n");
    }

    #[test]
    fn delivery_verbs_encode_as_they_read() {
        check(
            "sub q ack=AUTO prefetch=7 tag=w1 exclusive",
            "SUB q prefetch=7 ack=auto tag=w1 exclusive\r\n",
        );
        check("SUB q ack=manual", "SUB q\r\n");
        check("UNSUB \"a b\"", "UNSUB \"a b\"\r\n");
        check("GET q count=1 wait=0", "GET q\r\n");
        check(
            "GET q wait=5 count=3 ack=auto",
            "GET q ack=auto count=3 wait=5\r\n",
        );
        check("ACK 7 multiple", "ACK 7 multiple\r\n");
        check("REJECT 3", "NACK 3 requeue=false\r\n");
        check("NACK 3 delay=10 requeue=true", "NACK 3 delay=10\r\n");
        check(
            "TOUCH 18446744073709551615",
            "TOUCH 18446744073709551615\r\n",
        );
        check("PEEK q from=4 count=2", "PEEK q count=2 from=4\r\n");
        check("REDRIVE q count=9", "REDRIVE q count=9\r\n");
    }

    #[test]
    fn pub_bodies_inline_quoted_or_literal() {
        check("PUB \"\" jobs hello", "PUB \"\" jobs hello\r\n");
        check("PUB \"\" jobs \"{5}\"", "PUB \"\" jobs \"{5}\"\r\n");
        check("PUB \"\" jobs \"\"", "PUB \"\" jobs \"\"\r\n");
        check("PUB x \"a b\" a=b", "PUB x \"a b\" a=b\r\n");
        check(
            "PUB x k mandatory h.a=1 transient id=\"m 1\" ttl=5 delay=6 priority=7 b",
            "PUB x k transient mandatory id=\"m 1\" ttl=5 delay=6 priority=7 h.a=1 b\r\n",
        );
        let body = Bytes::from_static(b"a\r\nb\0");
        let cmd = parse_line(b"PUB x k {5}", Some(body)).unwrap();
        let wire = cmd.encode();
        assert_eq!(&wire[..], b"PUB x k {5}\r\na\r\nb\0\r\n");
        assert_eq!(decode(&wire), cmd);
        let long = Bytes::from(vec![b'z'; MAX_INLINE_BODY_BYTES + 1]);
        let cmd = parse_line(b"PUB x k {65}", Some(long)).unwrap();
        let wire = cmd.encode();
        assert!(wire.starts_with(b"PUB x k {65}\r\nzzz"));
        assert_eq!(decode(&wire), cmd);
    }

    #[test]
    fn every_enumeration_has_a_keyword() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
            ExchangeKind::Hash,
        ] {
            assert!(!keyword(EXCHANGE_KINDS, kind).is_empty());
        }
        for stream in [false, true] {
            assert!(!keyword(QUEUE_TYPES, stream).is_empty());
        }
        for start in [StreamStart::First, StreamStart::Last, StreamStart::Next] {
            assert!(!keyword(STREAM_OFFSETS, start).is_empty());
        }
        for o in [Overflow::DropHead, Overflow::RejectPublish, Overflow::Block] {
            assert!(!keyword(OVERFLOWS, o).is_empty());
        }
        for m in [AckMode::Manual, AckMode::Auto] {
            assert!(!keyword(ACK_MODES, m).is_empty());
        }
        for m in [HeaderMatch::All, HeaderMatch::Any] {
            assert!(!keyword(HEADER_MATCHES, m).is_empty());
        }
        for k in [
            ListKind::Queues,
            ListKind::Exchanges,
            ListKind::Bindings,
            ListKind::Connections,
            ListKind::Consumers,
            ListKind::Nodes,
        ] {
            assert!(!keyword(LIST_KINDS, k).is_empty());
        }
    }

    #[test]
    fn describe_args_names_every_option_for_people() {
        assert_eq!(describe_args(&QueueArgs::default()), "none");
        let all = QueueArgs {
            max_length: Some(1),
            max_bytes: Some(2),
            overflow: Overflow::RejectPublish,
            ttl_ms: Some(3),
            expires_ms: Some(4),
            dead_letter: Some("dl\"x".into()),
            dead_letter_key: Some(Bytes::from_static(b"k \xff")),
            delivery_limit: Some(5),
            ack_timeout_ms: Some(6),
            max_priority: Some(7),
            dedup_window_ms: Some(8),
            retry_delays_ms: vec![10, 20],
            mode: QueueMode::Stream,
            max_age_ms: Some(9),
            schema: Some("orders".into()),
        };
        assert_eq!(
            describe_args(&all),
            "max-length=1 max-bytes=2 ttl=3 expires=4 delivery-limit=5 ack-timeout=6 \
             max-priority=7 dedup-window=8 max-age=9 overflow=reject-publish \
             dead-letter=\"dl\\\"x\" dead-letter-key=\"k \u{fffd}\" retry-delays=10,20 \
             schema=\"orders\" type=stream"
        );
        // The kind comes last, whichever it is.
        for (mode, word) in [
            (QueueMode::SingleActive, "single-active"),
            (QueueMode::Groups, "groups"),
        ] {
            let a = QueueArgs {
                max_length: Some(1),
                mode,
                ..QueueArgs::default()
            };
            assert_eq!(describe_args(&a), format!("max-length=1 {word}"));
        }
        let block = QueueArgs {
            overflow: Overflow::Block,
            ..QueueArgs::default()
        };
        assert_eq!(describe_args(&block), "overflow=block");
        assert_eq!(overflow_name(Overflow::DropHead), "drop-head");
        assert_eq!(overflow_name(Overflow::RejectPublish), "reject-publish");
        assert_eq!(overflow_name(Overflow::Block), "block");
    }
}
