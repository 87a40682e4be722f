//! Persistence behind a small trait: topology (exchanges, queues, bindings)
//! and persistent messages, plus a durability barrier.
//!
//! - [`Store`] is the trait the broker talks to; [`SledStore`] is the real
//!   implementation and [`NullStore`] one that keeps nothing (tests,
//!   `--in-memory`).
//! - [`commit`] is the group commit: one thread turns many writes into one
//!   durability barrier, and publishes how far the store is durable.
//! - [`codec`] is the on-disk encoding of every record (versioned, CRC'd).
//!
//! Messages are keyed by queue id and sequence number (big-endian, so a scan
//! comes out in queue order); a body is stored once however many queues hold
//! the message, and removed with its last reference. One publish is one
//! atomic batch, so a fan-out is all-or-nothing across a crash.
//!
//! Recovery does not read messages into RAM: [`Store::recover`] sums up
//! each durable queue's stored copies ([`StoredQueue`]) and counts the
//! references of shared bodies; the broker then pages copies in with
//! [`Store::load`], a window at a time. The same call serves queues that
//! keep only part of their backlog in RAM, including copies written only to
//! save RAM ([`MessageMeta::volatile`]), which recovery drops.

pub mod codec;
pub mod commit;
mod message;
pub mod null;
pub mod sled;
mod topology;

pub use self::sled::SledStore;
pub use commit::{CommitState, Committer};
pub use message::{
    add_to_segments, segment_full, DedupEntry, MessageBatch, MessageMeta, RecoveredMessage,
    StoredQueue, StreamSegment, SEGMENT_BYTES, SEGMENT_MESSAGES,
};
pub use null::NullStore;
pub use topology::{BindingDef, ExchangeDef, QueueDef, UserRecord};

use std::collections::HashMap;

/// Failures of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying engine or the file system failed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A record failed its checksum or could not be decoded.
    #[error("store is corrupted: {0}")]
    Corrupt(String),
    /// Another process (or a store not yet fully closed) holds the data
    /// directory's lock.
    #[error("data directory {0} is in use by another process")]
    Locked(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// What the store holds, read back at start: the topology in full, the
/// stored message copies only summed up (see [`Store::load`]).
#[derive(Debug, Default)]
pub struct Recovered {
    /// Durable exchanges.
    pub exchanges: Vec<ExchangeDef>,
    /// Durable queues.
    pub queues: Vec<QueueDef>,
    /// Durable bindings.
    pub bindings: Vec<BindingDef>,
    /// Per durable queue holding stored copies: their span, count and bytes
    /// (the copies themselves stay on disk; the broker pages them in with
    /// [`Store::load`]). In queue id order.
    pub stored: Vec<StoredQueue>,
    /// For each body stored apart from its metadata (not inline): how many
    /// stored copies reference it.
    pub shared_refs: HashMap<u64, u32>,
    /// The largest body id found in any copy (0 if none).
    pub max_body_id: u64,
    /// Whether the previous run shut down cleanly.
    pub clean_shutdown: bool,
    /// De-duplication records still inside their window at recovery time
    /// (expired ones are dropped from the store).
    pub dedup: Vec<DedupEntry>,
    /// Stream consumer-group offsets: (queue id, group, committed offset).
    pub offsets: Vec<(u64, String, u64)>,
}

/// The storage interface. Writes land in the engine at once (they survive a
/// process crash once [`Store::sync`] has run); [`Store::sync`] is the
/// barrier that makes every earlier write durable. The group commit in
/// [`commit`] decides when to call it.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Reads the topology back at start and sums up the stored copies,
    /// dropping orphans (copies of deleted queues, volatile copies, copies
    /// whose body is missing, bodies nobody references) and marking the run
    /// as not clean. Its memory grows with the number of queues and of
    /// shared bodies, never with the number of messages.
    fn recover(&self) -> Result<Recovered, StoreError>;
    /// The stored copies of queue `queue_id` with `from <= seq < to`, in seq
    /// order, at most `limit` of them, with their bodies (a body shared by
    /// several copies in the result is read once and shared as `Bytes`). A
    /// copy whose body is missing is skipped (warned), not an error.
    fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError>;
    /// Writes or replaces a durable exchange.
    fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError>;
    /// Removes a durable exchange and its bindings.
    fn delete_exchange(&self, name: &str) -> Result<(), StoreError>;
    /// Writes or replaces a durable queue.
    fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError>;
    /// Removes a durable queue, its bindings, every message copy it holds,
    /// its de-duplication records and its consumer-group offsets.
    fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError>;
    /// Writes a durable binding.
    fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError>;
    /// Removes a durable binding.
    fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError>;
    /// Whether written messages can be read back ([`Store::load`]); a store
    /// that keeps nothing says no, and queues then never page out.
    fn keeps_messages(&self) -> bool {
        true
    }
    /// Applies one atomic message batch.
    fn apply(&self, batch: &MessageBatch<'_>) -> Result<(), StoreError>;
    /// Records whether the store was shut down cleanly.
    fn set_clean(&self, clean: bool) -> Result<(), StoreError>;
    /// Blocks until every earlier write is durable (fsync'd).
    fn sync(&self) -> Result<(), StoreError>;
    /// Every stored user (read once, at open, by [`crate::auth::Registry`]).
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Writes or replaces a user.
    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Removes a user.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;
    /// Bytes the store takes on disk (`None` when it keeps nothing there).
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}
