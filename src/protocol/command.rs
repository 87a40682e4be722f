//! `enum Command` and one plain struct per verb: the arguments a client sent,
//! already validated for shape (names, numbers, enumerations), with no behaviour.
//!
//! The parser (`parse.rs`) is the only producer; `cmd/` is the only consumer.

use bytes::Bytes;

/// One header, `h.<name>=<value>` on the wire. Names and values are case-sensitive.
pub type Header = (String, String);

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELLO [name=<client>] [proto=<n>]`
    Hello(Hello),
    /// `AUTH <user> <password>`
    Auth(Auth),
    /// `PING`
    Ping,
    /// `HELP [<verb>]`
    Help(Help),
    /// `QUIT`
    Quit,
    /// `DECLARE EXCHANGE <name> <type> [durable] [auto-delete] [alternate=<ex>]`
    DeclareExchange(DeclareExchange),
    /// `DECLARE QUEUE <name> [durable] [exclusive] [auto-delete]`
    DeclareQueue(DeclareQueue),
    /// `DELETE EXCHANGE <name> [if-unused]`
    DeleteExchange(DeleteExchange),
    /// `DELETE QUEUE <name> [if-unused] [if-empty]`
    DeleteQueue(DeleteQueue),
    /// `BIND <queue> <exchange> [<key>] [h.<n>=<v>...] [match=all|any]`
    Bind(Bind),
    /// `UNBIND <queue> <exchange> [<key>] [h.<n>=<v>...] [match=all|any]`
    Unbind(Bind),
    /// `PURGE <queue>`
    Purge(Purge),
    /// `PUB <exchange> <key> [persistent|transient] [mandatory] [id=] [h.*] <body>`
    Publish(Publish),
    /// `SUB <queue> [prefetch=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]`
    Subscribe(Subscribe),
    /// `UNSUB <ctag>`
    Unsubscribe(Unsubscribe),
    /// `GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]`
    Get(Get),
    /// `ACK <dtag> [multiple]`
    Ack(Ack),
    /// `NACK <dtag> [multiple] [requeue=true|false]`; `REJECT <dtag>` parses to
    /// `Nack { multiple: false, requeue: false }`.
    Nack(Nack),
}

/// `HELLO [name=<client>] [proto=<n>]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The client's self-chosen name, for logs.
    pub name: Option<String>,
    /// The protocol version the client asks for (only 1 exists).
    pub proto: Option<u64>,
}

/// `AUTH <user> <password>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// User name.
    pub user: String,
    /// Password, in clear (TLS arrives with a later issue).
    pub password: String,
}

/// `HELP [<verb>]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Help {
    /// The verb asked about, upper-cased; `None` for the overview.
    pub verb: Option<String>,
}

/// Exchange types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Exact routing-key match.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Dotted words with `*` (one word) and `#` (zero or more words).
    Topic,
    /// Header match, `match=all|any`.
    Headers,
}

/// `DECLARE EXCHANGE`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareExchange {
    /// Exchange name (never empty: the default exchange cannot be declared).
    pub name: String,
    /// Its type.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding is removed.
    pub auto_delete: bool,
    /// Where unroutable messages go.
    pub alternate: Option<String>,
}

/// `DECLARE QUEUE`. The failure-handling options of the contract
/// (`max-length`, `ttl`, ...) are refused by the parser until they are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareQueue {
    /// Queue name; empty asks the server to generate one.
    pub name: String,
    /// Survives a restart, and its messages are persistent by default.
    pub durable: bool,
    /// Owned by the declaring connection; deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last subscription ends.
    pub auto_delete: bool,
}

/// `DELETE EXCHANGE <name> [if-unused]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteExchange {
    /// Exchange name.
    pub name: String,
    /// Refuse if it has bindings.
    pub if_unused: bool,
}

/// `DELETE QUEUE <name> [if-unused] [if-empty]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteQueue {
    /// Queue name.
    pub name: String,
    /// Refuse if it has subscriptions.
    pub if_unused: bool,
    /// Refuse if it has ready messages.
    pub if_empty: bool,
}

/// How a headers binding matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeaderMatch {
    /// Every binding header must be present with the same value.
    #[default]
    All,
    /// At least one must.
    Any,
}

/// `BIND` / `UNBIND`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Queue name.
    pub queue: String,
    /// Exchange name (the default exchange `""` is refused by the broker, not the parser).
    pub exchange: String,
    /// Binding key; empty when omitted.
    pub key: String,
    /// `h.<name>=<value>` arguments, in the order given.
    pub headers: Vec<Header>,
    /// `match=all|any`; `None` when not given (means all).
    pub matching: Option<HeaderMatch>,
}

/// `PURGE <queue>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// Queue name.
    pub queue: String,
}

/// `PUB`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Exchange name; `""` is the default exchange.
    pub exchange: String,
    /// Routing key (may be empty).
    pub key: String,
    /// `Some(true)` for `persistent`, `Some(false)` for `transient`, `None` for the queue's default.
    pub persistent: Option<bool>,
    /// `ERR NO_ROUTE` instead of a silent drop when no queue takes it.
    pub mandatory: bool,
    /// Client-chosen message id.
    pub id: Option<String>,
    /// `h.<name>=<value>` headers, in the order given.
    pub headers: Vec<Header>,
    /// The body: a literal's bytes or the last token's text.
    pub body: Bytes,
}

/// Acknowledgement mode of a subscription or a `GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// The client must `ACK`/`NACK` each delivery.
    #[default]
    Manual,
    /// A delivery counts as acknowledged once written to the connection.
    Auto,
}

/// `SUB`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Queue name.
    pub queue: String,
    /// Unacked deliveries allowed in flight; `None` means the default (100).
    pub prefetch: Option<u32>,
    /// Ack mode.
    pub ack: AckMode,
    /// Client-chosen consumer tag; the server generates one when `None`.
    pub tag: Option<String>,
    /// Be the queue's only consumer.
    pub exclusive: bool,
}

/// `UNSUB <ctag>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Consumer tag.
    pub tag: String,
}

/// `GET`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// Queue name.
    pub queue: String,
    /// Ack mode.
    pub ack: AckMode,
    /// At most this many messages (default 1, at least 1).
    pub count: u32,
    /// Long-poll: wait up to this many milliseconds for a first message (default 0).
    pub wait_ms: u64,
}

/// `ACK <dtag> [multiple]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Delivery tag.
    pub tag: u64,
    /// Also every outstanding tag below it.
    pub multiple: bool,
}

/// `NACK <dtag> [multiple] [requeue=true|false]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// Delivery tag.
    pub tag: u64,
    /// Also every outstanding tag below it.
    pub multiple: bool,
    /// Put back in the queue (default) or drop.
    pub requeue: bool,
}
