//! Persistence, one seam per concern. The broker talks to two small traits
//! and never to an engine:
//!
//! - [`TopologyStore`]: what is declared (exchanges, queues, bindings,
//!   users). Small, rarely written, read whole at start.
//! - [`MessageStore`]: what is published (message copies and their bodies,
//!   publisher de-duplication records, stream consumer-group offsets).
//!   Written on every persistent publish and ack, summed up at start and
//!   paged back in a window at a time.
//! - [`Durable`], which both extend: the barrier that makes earlier writes
//!   durable, and the room they take.
//! - [`Storage`] holds the pair for the broker: it reads a start's state
//!   back (topology, then the messages against it), deletes a queue from
//!   both, and syncs each engine behind them once.
//!
//! De-duplication records and group offsets are on the message side, not
//! with the topology: a de-duplication record must land in the same atomic
//! batch as the message it guards, and a stream's offsets belong with its
//! log (RabbitMQ and Kafka keep them in the log; LavinMQ beside a stream's
//! segments), so a store that replaces or replicates the messages carries
//! them along.
//!
//! Implementations: [`LogStore`] (what the broker opens) keeps the messages
//! in a log of sluice's own ([`log`] is its format, `logstore/` the store)
//! and the topology in sled, one engine to the broker; [`SledStore`] keeps
//! both concerns in one sled database (the layout of older releases, whose
//! messages [`LogStore`] migrates, and the topology half of [`LogStore`]);
//! `MemStore` (built for tests only) keeps them in RAM for as long as
//! its handle lives, following sled's rules, so that a test restarts a
//! broker on it as on a data directory; [`NullStore`] keeps nothing
//! (`--in-memory`). `contract_tests.rs` holds what every store that keeps
//! its data owes the broker, run against each.
//! [`commit`] is the group commit: one thread turns many writes into one
//! durability barrier, and publishes how far the storage is durable.
//! [`codec`] is the on-disk encoding of every record (versioned, CRC'd).
//!
//! Messages are keyed by queue id and sequence number. In sled a body is
//! stored once however many queues hold the message, and removed with its
//! last reference; in the log each queue keeps its own copy. One publish is
//! one atomic batch, so a fan-out is all-or-nothing across a crash.
//!
//! Recovery does not read messages into RAM: [`MessageStore::recover`] sums
//! up each durable queue's stored copies ([`StoredQueue`]) and counts the
//! references of shared bodies; the broker then pages copies in with
//! [`MessageStore::load`], a window at a time. The same call serves queues
//! that keep only part of their backlog in RAM, including copies written
//! only to save RAM ([`MessageMeta::volatile`]), which recovery drops.

pub(crate) mod codec;
pub(crate) mod commit;
#[cfg(test)]
pub(crate) mod contract_tests;
pub(crate) mod log;
mod logstore;
#[cfg(test)]
pub(crate) mod mem;
mod message;
pub(crate) mod null;
pub mod sled;
mod storage;
mod topology;

pub use self::sled::SledStore;
pub(crate) use commit::CommitState;
pub use commit::Committer;
pub(crate) use logstore::GroupEntry;
pub use logstore::LogStore;
#[cfg(test)]
pub(crate) use mem::MemStore;
pub(crate) use message::{add_to_segments, DedupEntry, StoredMessages, StreamSegment};
pub use message::{MessageBatch, MessageMeta, MessageStore, RecoveredMessage, StoredQueue};
pub use null::NullStore;
pub(crate) use storage::Recovered;
pub use storage::Storage;
pub(crate) use topology::{BindingDef, ExchangeDef, UserRecord};
pub use topology::{QueueDef, SchemaRecord, Topology, TopologyStore};

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
    /// An operation that does not fit a log as it stands: a consensus
    /// group's append that is not the next entry, a truncation or a read
    /// before its first entry, a purge past its last.
    #[error("out of order: {0}")]
    OutOfOrder(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// What every store is, whatever it keeps. Writes land in the engine at
/// once (they survive a process crash once [`Durable::sync`] has run);
/// `sync` is the barrier that makes every earlier write durable. One engine
/// may serve both concerns ([`SledStore`] does): [`Storage`] then syncs it
/// once.
pub trait Durable: Send + Sync + std::fmt::Debug + 'static {
    /// Blocks until every earlier write is durable (fsync'd). The group
    /// commit in [`commit`] decides when to call it.
    fn sync(&self) -> Result<(), StoreError>;
    /// Bytes the store takes on disk (`None` when it keeps nothing there).
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}

/// Bytes available to an unprivileged user on the file system of `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("data directory path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
