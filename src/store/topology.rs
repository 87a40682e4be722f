//! What is declared, as stored: exchanges, queues, bindings and users.

use bytes::Bytes;

use crate::protocol::command::{ExchangeKind, Header, HeaderMatch, QueueArgs, Secret};

/// A durable exchange as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDef {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeKind,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Alternate exchange for unroutable messages.
    pub alternate: Option<String>,
    /// A `hash` exchange: the header it hashes instead of the routing key.
    pub hash_header: Option<String>,
    /// The exchange of a partitioned stream: how many partitions (0 for an
    /// ordinary exchange).
    pub partitions: u32,
}

/// A durable queue as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    /// Name.
    pub name: String,
    /// Internal id, the prefix of its message keys.
    pub id: u64,
    /// Deleted when its last subscription ends.
    pub auto_delete: bool,
    /// Failure-handling options.
    pub args: QueueArgs,
}

/// A durable binding as stored (both ends durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDef {
    /// Exchange name.
    pub exchange: String,
    /// Queue name.
    pub queue: String,
    /// Binding key (any bytes).
    pub key: Bytes,
    /// Header arguments.
    pub headers: Vec<Header>,
    /// Header match mode.
    pub matching: HeaderMatch,
}

/// A user as stored (see [`crate::auth`]): one record per user in the
/// `users` tree, keyed by name.
///
/// Users are global, as in RabbitMQ; the three patterns are the user's
/// permissions on the one (default) virtual host. Were vhosts added, the
/// patterns would move to a `permissions` tree keyed `<vhost>/<user>` (user
/// names cannot hold `/`) and this record would keep name, hash and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User name.
    pub name: String,
    /// The argon2id hash of the password, as a PHC string (kept out of
    /// `Debug` output).
    pub hash: Secret,
    /// Tags (`admin`).
    pub tags: Vec<String>,
    /// The `configure` pattern (a regex; empty grants nothing).
    pub configure: String,
    /// The `write` pattern.
    pub write: String,
    /// The `read` pattern.
    pub read: String,
}
