//! [`TopologyStore`]: what is declared, as stored (exchanges, queues,
//! bindings, users and the schema registry's records), and the records it
//! keeps.

use bytes::Bytes;

use super::{Durable, StoreError};
use crate::protocol::command::{ExchangeKind, Header, HeaderMatch, QueueArgs, Secret};

/// Keeps what is declared: durable exchanges, queues and bindings, and the
/// users. A write lands at once; [`Durable::sync`] makes it durable.
///
/// A queue's messages are not here: deleting a queue from the topology
/// leaves them to [`MessageStore::remove_queue`](super::MessageStore::remove_queue)
/// ([`Storage::delete_queue`](super::Storage::delete_queue) does both).
pub trait TopologyStore: Durable {
    /// Reads the durable exchanges, queues and bindings back (at start).
    fn topology(&self) -> Result<Topology, StoreError>;
    /// Writes or replaces a durable exchange.
    fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError>;
    /// Removes a durable exchange and its bindings.
    fn delete_exchange(&self, name: &str) -> Result<(), StoreError>;
    /// Writes or replaces a durable queue.
    fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError>;
    /// Removes a durable queue and its bindings.
    fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError>;
    /// Writes a durable binding.
    fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError>;
    /// Removes a durable binding.
    fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError>;
    /// Every stored user (read once, at open, by [`crate::auth::Registry`]).
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Writes or replaces a user.
    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Removes a user.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;
    /// The schema registry's records, key → value (their keys and
    /// encoding are [`crate::schema`]'s; the store keeps them opaque).
    fn schema_records(&self) -> Result<Vec<SchemaRecord>, StoreError>;
    /// Writes or replaces a schema record.
    fn put_schema_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes a schema record.
    fn delete_schema_record(&self, key: &[u8]) -> Result<(), StoreError>;
    /// How far a cluster node's metadata group has applied its log to
    /// this topology (opaque bytes the cluster writes), `None` before the
    /// first entry (and on a single node).
    fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces [`cluster_state`](TopologyStore::cluster_state), after the
    /// topology writes of the entries it covers, so that a crash keeps at
    /// most the last of them un-recorded.
    fn put_cluster_state(&self, state: &[u8]) -> Result<(), StoreError>;
}

/// One of the schema registry's records: key and value, opaque to the
/// store (see [`TopologyStore::schema_records`]).
pub type SchemaRecord = (Vec<u8>, Vec<u8>);

/// The durable topology, read back at start (users apart: see
/// [`TopologyStore::users`]).
#[derive(Debug, Default)]
pub struct Topology {
    /// Durable exchanges.
    pub(crate) exchanges: Vec<ExchangeDef>,
    /// Durable queues.
    pub(crate) queues: Vec<QueueDef>,
    /// Durable bindings.
    pub(crate) bindings: Vec<BindingDef>,
}

/// A durable exchange as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDef {
    /// Name.
    pub(crate) name: String,
    /// Type.
    pub(crate) kind: ExchangeKind,
    /// Deleted when its last binding goes.
    pub(crate) auto_delete: bool,
    /// Alternate exchange for unroutable messages.
    pub(crate) alternate: Option<String>,
    /// A `hash` exchange: the header it hashes instead of the routing key.
    pub(crate) hash_header: Option<String>,
    /// The exchange of a partitioned stream: how many partitions (0 for an
    /// ordinary exchange).
    pub(crate) partitions: u32,
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
    pub(crate) exchange: String,
    /// Queue name.
    pub(crate) queue: String,
    /// Binding key (any bytes).
    pub(crate) key: Bytes,
    /// Header arguments.
    pub(crate) headers: Vec<Header>,
    /// Header match mode.
    pub(crate) matching: HeaderMatch,
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
    pub(crate) name: String,
    /// The argon2id hash of the password, as a PHC string (kept out of
    /// `Debug` output).
    pub(crate) hash: Secret,
    /// Tags (`admin`).
    pub(crate) tags: Vec<String>,
    /// The `configure` pattern (a regex; empty grants nothing).
    pub(crate) configure: String,
    /// The `write` pattern.
    pub(crate) write: String,
    /// The `read` pattern.
    pub(crate) read: String,
}
