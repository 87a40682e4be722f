//! `enum Command` and one plain struct per verb: the arguments a client sent,
//! already validated for shape (names, numbers, enumerations), with no behaviour.
//!
//! The parser (`parse.rs`) is the only producer; `cmd/` is the only consumer.

use bytes::Bytes;

/// One header, `h.<name>=<value>` on the wire. Names and values are
/// case-sensitive. The name is 1 to 255 bytes of `A-Z a-z 0-9 - _ .`; the
/// value is any token (any bytes the tokenizer accepts, not only UTF-8: it
/// may hold a routing key, as `x-death-key` does).
pub(crate) type Header = (String, Bytes);

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
    /// `DECLARE QUEUE <name> [durable] [exclusive] [auto-delete] [<option>=<value>...]`
    /// (the failure-handling options of [`QueueArgs`])
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
    /// `PUB <exchange> <key> [persistent|transient] [mandatory] [id=] [ttl=]
    /// [delay=] [priority=] [h.*] <body>`
    Publish(Publish),
    /// `SUB <queue> [prefetch=<n>] [prefetch-bytes=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]`
    Subscribe(Subscribe),
    /// `UNSUB <ctag>`
    Unsubscribe(Unsubscribe),
    /// `GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]`
    Get(Get),
    /// `ACK <dtag> [multiple]`
    Ack(Ack),
    /// `NACK <dtag> [multiple] [requeue=true|false] [delay=<ms>]`; `REJECT <dtag>`
    /// parses to `Nack { multiple: false, requeue: false, delay_ms: None }`.
    Nack(Nack),
    /// `TOUCH <dtag>`
    Touch(Touch),
    /// `PEEK <queue> [count=<n>] [from=<position>]`
    Peek(Peek),
    /// `REDRIVE <queue> [count=<n>]`
    Redrive(Redrive),
    /// `USER ADD|PASSWD|PERMIT|REMOVE|LIST ...`
    User(UserCommand),
    /// `STATS` or `STATS QUEUE <name>`
    Stats(Stats),
    /// `LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS|GROUPS|NODES [<pattern>]`
    List(List),
    /// `SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>`
    Seek(Seek),
    /// `CLUSTER ADD <id> <ip:port> | REMOVE <id> | TRANSFER <id>`
    Cluster(ClusterCommand),
    /// `CLOSE CONNECTION <id>`
    CloseConnection(CloseConnection),
    /// `TX BEGIN|COMMIT|ABORT`
    Tx(Tx),
    /// `SCHEMA ADD|GET|DELETE ...` (`SCHEMA LIST` parses to `LIST SCHEMAS`)
    Schema(SchemaCommand),
}

/// `TX BEGIN|COMMIT|ABORT`: a connection's transaction of `ACK`s and
/// `PUB`s, applied as one atomic store write at `COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// `TX BEGIN`: from now on `ACK` and `PUB` are buffered.
    Begin,
    /// `TX COMMIT`: apply what was buffered, all or nothing.
    Commit,
    /// `TX ABORT`: drop what was buffered.
    Abort,
}

/// A subject's compatibility rule for new schema versions (Confluent's
/// meanings for JSON Schema; see [`crate::schema::compat`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Compat {
    /// Any new version is accepted.
    None,
    /// The new version can read what the previous one (every previous one,
    /// transitive) accepted: consumers upgrade first. The default.
    #[default]
    Backward,
    /// The previous version (every previous one, transitive) can read what
    /// the new one accepts: producers upgrade first.
    Forward,
    /// Both.
    Full,
}

/// The `SCHEMA` commands: the schema registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaCommand {
    /// `SCHEMA ADD <subject> [compat=none|backward|forward|full] [transitive] {N}<schema>`
    Add(SchemaAdd),
    /// `SCHEMA GET <subject> [version=<n>|latest]`
    Get {
        /// The subject.
        subject: String,
        /// The version; `None` for the latest.
        version: Option<u32>,
    },
    /// `SCHEMA DELETE <subject> [version=<n>]`
    Delete {
        /// The subject.
        subject: String,
        /// One version; `None` for the whole subject.
        version: Option<u32>,
    },
}

/// `SCHEMA ADD <subject> [compat=...] [transitive] {N}<schema>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaAdd {
    /// The subject (a name, like an exchange's).
    pub(crate) subject: String,
    /// `compat=` and `transitive`, which become the subject's rule;
    /// `None` keeps the subject's (`backward` for a new one).
    pub(crate) rule: Option<(Compat, bool)>,
    /// The JSON Schema text (checked by the registry, not the parser).
    pub(crate) schema: String,
}

/// `CLOSE CONNECTION <id>`: an admin closes a client connection (a `LIST
/// CONNECTIONS` id) of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseConnection {
    /// The connection's id.
    pub id: u64,
}

/// `CLUSTER ...`: changes to a cluster's membership (an admin's, on a
/// cluster node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `CLUSTER ADD <id> <ip:port>`: the node `id`, listening for the
    /// other nodes on that address, joins: as a learner until it has
    /// caught up, then as a voting member.
    Add {
        /// Its node id.
        id: u64,
        /// Its cluster address.
        addr: std::net::SocketAddr,
    },
    /// `CLUSTER REMOVE <id>`: the node leaves the voting members.
    Remove(u64),
    /// `CLUSTER TRANSFER <id>`: the node becomes the leader.
    Transfer(u64),
}

/// `HELLO [name=<client>] [proto=<n>] [heartbeat=<ms>]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The client's self-chosen name, for logs.
    pub(crate) name: Option<String>,
    /// The protocol version the client asks for (only 1 exists).
    pub(crate) proto: Option<u64>,
    /// The heartbeat interval asked for, in ms (`0` turns it off).
    pub(crate) heartbeat: Option<u64>,
}

/// A password (or a hash of one): text whose `Debug` never shows it, so
/// that it stays out of logs however the struct holding it is printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// For command-line flags (`--password`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// `AUTH <user> <password>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// User name.
    pub user: String,
    /// Password, in clear (TLS arrives with a later issue).
    pub password: Secret,
}

/// The `USER` admin commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// `USER ADD <name> <password> [admin] [configure=<re>] [write=<re>] [read=<re>]`
    Add(UserAdd),
    /// `USER PASSWD <name> <password>`
    Passwd(UserPasswd),
    /// `USER PERMIT <name> [configure=<re>] [write=<re>] [read=<re>] [admin=true|false]`
    Permit(UserPermit),
    /// `USER REMOVE <name>`
    Remove(String),
    /// `USER LIST`
    List,
}

/// A user's three permission patterns as given (each a regex, already
/// checked to compile); `None` where the command leaves it out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PermissionArgs {
    /// `configure=`
    pub(crate) configure: Option<String>,
    /// `write=`
    pub(crate) write: Option<String>,
    /// `read=`
    pub(crate) read: Option<String>,
}

/// `USER ADD <name> <password> [admin] [configure=<re>] [write=<re>] [read=<re>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAdd {
    /// User name: 1 to 64 bytes of `A-Z a-z 0-9 _ . -`.
    pub(crate) name: String,
    /// Password.
    pub(crate) password: Secret,
    /// Tagged `admin`.
    pub(crate) admin: bool,
    /// Permissions (absent ones are `.*`).
    pub(crate) perms: PermissionArgs,
}

/// `USER PASSWD <name> <password>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPasswd {
    /// User name.
    pub(crate) name: String,
    /// The new password.
    pub(crate) password: Secret,
}

/// `USER PERMIT <name> [configure=<re>] [write=<re>] [read=<re>] [admin=true|false]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPermit {
    /// User name.
    pub(crate) name: String,
    /// The patterns to change.
    pub(crate) perms: PermissionArgs,
    /// Grant (`true`) or take away (`false`) the admin tag.
    pub(crate) admin: Option<bool>,
}

/// `HELP [<verb>]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Help {
    /// The verb asked about, upper-cased; `None` for the overview.
    pub(crate) verb: Option<String>,
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
    /// Consistent hashing of the routing key (or a header) onto the bound
    /// queues, weighted by their binding keys.
    Hash,
}

/// `DECLARE EXCHANGE`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareExchange {
    /// Exchange name (never empty: the default exchange cannot be declared).
    pub(crate) name: String,
    /// Its type.
    pub(crate) kind: ExchangeKind,
    /// Survives a restart.
    pub(crate) durable: bool,
    /// Deleted when its last binding is removed.
    pub(crate) auto_delete: bool,
    /// Where unroutable messages go.
    pub(crate) alternate: Option<String>,
    /// `hash-header=<name>`: a `hash` exchange hashes this header's value
    /// instead of the routing key.
    pub(crate) hash_header: Option<String>,
    /// `schema=<subject>`: every `PUB` body is checked against the
    /// subject's latest schema version.
    pub(crate) schema: Option<String>,
}

/// `DECLARE QUEUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareQueue {
    /// Queue name; empty asks the server to generate one.
    pub(crate) name: String,
    /// Survives a restart, and its messages are persistent by default.
    pub(crate) durable: bool,
    /// Owned by the declaring connection; deleted when it closes.
    pub(crate) exclusive: bool,
    /// Deleted when its last subscription ends.
    pub(crate) auto_delete: bool,
    /// The failure-handling options.
    pub(crate) args: QueueArgs,
    /// `partitions=N` (with `type=stream`): a partitioned stream, N
    /// streams `<name>-0` .. `<name>-<N-1>` behind a `hash` exchange `<name>`.
    pub(crate) partitions: Option<u32>,
    /// `replicas=N` (a cluster node): a replicated queue, its own Raft
    /// group on N nodes; `None` or 1: a queue of the node's own.
    pub(crate) replicas: Option<u8>,
}

/// What a full queue (`max-length`/`max-bytes` reached) does with one more
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Overflow {
    /// Dead-letter (or drop) the oldest ready message to make room.
    #[default]
    DropHead,
    /// Refuse the publish: `ERR QUEUE_FULL` (or `rejected=<n>` in the reply).
    RejectPublish,
    /// Hold the publish (its reply, and so the publisher's pipeline) until
    /// there is room.
    Block,
}

/// A queue's failure-handling options, as given to `DECLARE QUEUE`. Two
/// declarations of one queue must agree on every field (`PRECONDITION`
/// otherwise); the defaults are what an absent option means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct QueueArgs {
    /// `max-length=N`: at most N messages waiting (ready or delayed).
    pub(crate) max_length: Option<u64>,
    /// `max-bytes=N`: at most N body bytes waiting.
    pub(crate) max_bytes: Option<u64>,
    /// `overflow=drop-head|reject-publish|block` (default drop-head).
    pub(crate) overflow: Overflow,
    /// `ttl=<ms>`: a message waiting longer than this expires.
    pub(crate) ttl_ms: Option<u64>,
    /// `expires=<ms>`: the queue is deleted after this long unused.
    pub(crate) expires_ms: Option<u64>,
    /// `dead-letter=<exchange>`.
    pub(crate) dead_letter: Option<String>,
    /// `dead-letter-key=<key>`: routing key for dead letters (default: the
    /// message's own). Any token of 0 to 255 bytes, like a routing key.
    pub(crate) dead_letter_key: Option<Bytes>,
    /// `delivery-limit=N` (N ≥ 1): at most N deliveries.
    pub(crate) delivery_limit: Option<u32>,
    /// `ack-timeout=<ms>`: an unacked delivery goes back after this long.
    pub(crate) ack_timeout_ms: Option<u64>,
    /// `max-priority=N` (1..=255): a priority queue.
    pub(crate) max_priority: Option<u8>,
    /// `dedup-window=<ms>`: a repeated `id=` within the window is not stored again.
    pub(crate) dedup_window_ms: Option<u64>,
    /// `retry-delays=<ms>,<ms>,...`: requeues wait by delivery count (the
    /// last value repeats). Empty: requeue at once.
    pub(crate) retry_delays_ms: Vec<u64>,
    /// What kind of queue: `single-active`, `groups` or `type=stream`
    /// (they exclude each other), or none of them.
    pub(crate) mode: QueueMode,
    /// `max-age=<ms>` (streams): older messages are trimmed.
    pub(crate) max_age_ms: Option<u64>,
    /// `schema=<subject>`: a `PUB` to the default exchange naming this
    /// queue has its body checked against the subject's latest version
    /// (messages from other exchanges are their exchange's business). Kept
    /// among the schema registry's records, not in the queue's own record
    /// (see `broker/schema.rs`).
    pub(crate) schema: Option<String>,
}

/// What kind of queue `DECLARE QUEUE` makes. The options that choose it
/// (`single-active`, `groups`, `type=stream`) exclude each other: one value
/// rather than three flags, so that no other combination can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum QueueMode {
    /// A queue whose subscriptions compete, round-robin.
    #[default]
    Classic,
    /// `single-active`: of all subscriptions only one receives; the others
    /// take over in subscription order.
    SingleActive,
    /// `groups`: messages with one `group=` key are delivered in order and
    /// to one consumer at a time.
    Groups,
    /// `type=stream`: an append-only log read by offset (acks do not remove).
    Stream,
}

impl QueueMode {
    /// Whether it is a stream (`type=stream`).
    pub(crate) fn is_stream(self) -> bool {
        self == QueueMode::Stream
    }
}

/// `DELETE EXCHANGE <name> [if-unused]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteExchange {
    /// Exchange name.
    pub(crate) name: String,
    /// Refuse if it has bindings.
    pub(crate) if_unused: bool,
}

/// `DELETE QUEUE <name> [if-unused] [if-empty]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteQueue {
    /// Queue name.
    pub(crate) name: String,
    /// Refuse if it has subscriptions.
    pub(crate) if_unused: bool,
    /// Refuse if it has ready messages.
    pub(crate) if_empty: bool,
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
    pub(crate) queue: String,
    /// Exchange name (the default exchange `""` is refused by the broker, not the parser).
    pub(crate) exchange: String,
    /// Binding key: any token of 0 to 255 bytes (not only UTF-8); empty
    /// when omitted.
    pub(crate) key: Bytes,
    /// `h.<name>=<value>` arguments, in the order given.
    pub(crate) headers: Vec<Header>,
    /// `match=all|any`; `None` when not given (means all).
    pub(crate) matching: Option<HeaderMatch>,
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
    pub(crate) exchange: String,
    /// Routing key: any token of 0 to 255 bytes (not only UTF-8; may be
    /// empty).
    pub(crate) key: Bytes,
    /// `Some(true)` for `persistent`, `Some(false)` for `transient`, `None` for the queue's default.
    pub(crate) persistent: Option<bool>,
    /// `ERR NO_ROUTE` instead of a silent drop when no queue takes it.
    pub(crate) mandatory: bool,
    /// Client-chosen message id.
    pub(crate) id: Option<String>,
    /// `h.<name>=<value>` headers, in the order given.
    pub(crate) headers: Vec<Header>,
    /// `ttl=<ms>`: expires after this long (the queue's `ttl` may be shorter).
    pub(crate) ttl_ms: Option<u64>,
    /// `delay=<ms>`: stored at once, delivered no earlier than this.
    pub(crate) delay_ms: Option<u64>,
    /// `priority=<n>` (0..=255), for queues with `max-priority`.
    pub(crate) priority: Option<u8>,
    /// `group=<key>`: its message group (any token of 1 to 255 bytes), for
    /// queues with `groups`.
    pub(crate) group: Option<Bytes>,
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
    /// `prefetch-bytes=<n>`: body bytes allowed in flight as well (a body
    /// larger than this still goes out alone); `None`: no byte bound.
    pub prefetch_bytes: Option<u64>,
    /// Ack mode.
    pub ack: AckMode,
    /// Client-chosen consumer tag; the server generates one when `None`.
    pub tag: Option<String>,
    /// Be the queue's only consumer.
    pub exclusive: bool,
    /// `group=<name>` (streams): read as a member of this consumer group,
    /// whose committed offset is stored.
    pub group: Option<String>,
    /// `offset=...` or `time=...` (streams): where to start reading.
    pub start: Option<StreamStart>,
}

/// Where a stream reader starts (`SUB offset=|time=`) or a group is moved
/// to (`SEEK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// `offset=first`: the oldest message kept.
    First,
    /// `offset=last`: the newest message (and what follows).
    Last,
    /// `offset=next`: only messages appended from now on.
    Next,
    /// `offset=<n>`: this offset (or the first kept, if it was trimmed).
    Offset(u64),
    /// `time=<unix-ms>`: the first message published at or after this.
    Time(u64),
}

/// `SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>`:
/// moves a consumer group's position (replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seek {
    /// The stream (or partitioned stream).
    pub(crate) stream: String,
    /// The consumer group.
    pub(crate) group: String,
    /// Where to.
    pub(crate) to: StreamStart,
}

/// `UNSUB <ctag>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Consumer tag.
    pub(crate) tag: String,
}

/// `GET`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// Queue name.
    pub(crate) queue: String,
    /// Ack mode.
    pub(crate) ack: AckMode,
    /// At most this many messages (default 1, at least 1).
    pub(crate) count: u32,
    /// Long-poll: wait up to this many milliseconds for a first message (default 0).
    pub(crate) wait_ms: u64,
}

/// `ACK <dtag> [multiple]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Delivery tag.
    pub(crate) tag: u64,
    /// Also every outstanding tag below it.
    pub(crate) multiple: bool,
}

/// `NACK <dtag> [multiple] [requeue=true|false] [delay=<ms>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// Delivery tag.
    pub(crate) tag: u64,
    /// Also every outstanding tag below it.
    pub(crate) multiple: bool,
    /// Put back in the queue (default) or dead-letter/drop.
    pub(crate) requeue: bool,
    /// `delay=<ms>`: requeue, but hold back this long (implies requeue).
    pub(crate) delay_ms: Option<u64>,
}

/// `TOUCH <dtag>`: restarts the delivery's ack timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// Delivery tag.
    pub(crate) tag: u64,
}

/// `PEEK <queue> [count=<n>] [from=<position>]`: shows waiting messages
/// without taking them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// Queue name.
    pub(crate) queue: String,
    /// At most this many (default 1, 1..=1000).
    pub(crate) count: u32,
    /// Start at this position (a queue sequence number, as `PEEK` shows it).
    pub(crate) from: Option<u64>,
}

/// `REDRIVE <queue> [count=<n>]`: re-publishes dead letters to the exchange
/// and routing key they were first published to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Queue name (the dead-letter queue).
    pub(crate) queue: String,
    /// At most this many (default: all).
    pub(crate) count: Option<u64>,
}

/// `STATS` (broker totals) or `STATS QUEUE <name>` (one queue).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// The queue asked about; `None` for the broker's totals.
    pub(crate) queue: Option<String>,
}

/// What `LIST` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// `LIST QUEUES`
    Queues,
    /// `LIST EXCHANGES`
    Exchanges,
    /// `LIST BINDINGS`
    Bindings,
    /// `LIST CONNECTIONS`
    Connections,
    /// `LIST CONSUMERS`
    Consumers,
    /// `LIST NODES` (a cluster node)
    Nodes,
    /// `LIST GROUPS` (streams' consumer groups)
    Groups,
    /// `LIST SCHEMAS` (the schema registry's subjects)
    Schemas,
}

/// `LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS|GROUPS|NODES [<pattern>]`: one
/// aligned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// The table.
    pub(crate) kind: ListKind,
    /// A glob (`*` any run, `?` one character) a row's name must match
    /// (see protocol.md, "LIST", for which names); `None` lists every row.
    pub(crate) pattern: Option<String>,
}
