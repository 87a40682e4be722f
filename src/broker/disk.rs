//! [`Disk`]: the storage a broker writes through, with its group commit,
//! the reference counts of paged-out shared bodies, the per-queue RAM
//! budget and the disk alarm that counts every write against the free
//! space. Queues hold it to persist and to page their backlogs; the
//! broker's topology operations write through it too.

use std::sync::Arc;

use super::alarm::Alarm;
use super::message::Bodies;
use crate::store::{Committer, MessageBatch, RecoveredMessage, Storage, StoreError};

/// The storage plus its group commit: what a queue needs to persist, and to
/// page its backlog out and back in.
#[derive(Debug)]
pub(crate) struct Disk {
    pub(super) store: Storage,
    pub(super) committer: Arc<Committer>,
    /// Stored-reference counts of shared bodies whose copies are paged out.
    pub(super) bodies: Arc<Bodies>,
    /// The broker-wide RAM budget for waiting copies (`--queue-memory`);
    /// `None` when nothing is on disk (no paging).
    pub(super) ram_budget: Option<u64>,
    /// Body bytes of the waiting copies in RAM, every queue together: what
    /// the budget counts.
    pub(super) ram_used: Arc<std::sync::atomic::AtomicU64>,
    /// The disk alarm, which counts every write against the free space.
    pub(super) space: Arc<Alarm>,
}

impl Disk {
    /// Reads stored copies back (see [`MessageStore::load`](crate::store::MessageStore::load)).
    pub(crate) fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let copies = self.store.messages.load(queue_id, from, to, limit)?;
        debug_assert!(copies.iter().all(|m| m.queue_id == queue_id));
        Ok(copies)
    }

    /// Applies a message batch; returns the generation to wait for.
    pub(crate) fn apply(&self, batch: &MessageBatch<'_>) -> Result<u64, StoreError> {
        if let Err(e) = self.store.messages.apply(batch) {
            self.committer.write_failed(&e);
            return Err(e);
        }
        self.space.charge(batch.estimated_bytes());
        Ok(self.committer.written())
    }

    /// Runs a topology write; returns the generation to wait for.
    pub(super) fn write(
        &self,
        f: impl FnOnce(&Storage) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        if let Err(e) = f(&self.store) {
            self.committer.write_failed(&e);
            return Err(e);
        }
        self.space.charge(TOPOLOGY_WRITE_BYTES);
        Ok(self.committer.written())
    }

    /// The group commit.
    pub(crate) fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }
}

/// What a topology write (a declare, a binding, a user) is counted as
/// against the free disk space.
const TOPOLOGY_WRITE_BYTES: u64 = 1024;
