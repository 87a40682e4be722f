//! Where a stream's groups are kept (this node's store, or a replicated
//! stream's log: `SEEK` and the commits acks make), and what a replicated
//! queue's or stream's log (`crate::cluster`) does to this node's copy of
//! it, applied entry by entry: a classic queue's leader withdraws copies
//! another node settled; a stream's members each keep the whole stream,
//! told where its next offset is, where each group's log put it, and who
//! leads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Kind, Queue};
use crate::error::BrokerError;
use crate::protocol::command::StreamStart;

impl Queue {
    /// Stores stream group `group`'s committed offset `at` with the next
    /// round of the group commit: the generation to wait for.
    pub(crate) fn defer_offset(&self, group: Arc<str>, at: u64) -> u64 {
        self.disk.committer.defer_offset(self.id, group, at)
    }

    /// `SEEK`: moves stream group `group` to `to` (creating it if it is
    /// new). Returns the offset it will read next and, when `store`, the
    /// store generation to wait for. `PRECONDITION` on a classic queue.
    pub(crate) fn stream_seek(
        self: &Arc<Self>,
        group: &str,
        to: StreamStart,
        store: bool,
    ) -> Result<(u64, Option<u64>), BrokerError> {
        match &self.kind {
            Kind::Stream(s) => s.seek(self, group, to, store),
            Kind::Classic(_) => Err(BrokerError::Precondition(format!(
                "queue {} is not a stream",
                self.name
            ))),
        }
    }

    /// Takes the waiting copies `copies` (position, priority, due time) out
    /// of the queue, undelivered: a replicated queue's copies settled in
    /// its log by another node (an ack through a subscriber's node after
    /// the lead moved). One delivered meanwhile stays with its consumer.
    pub(crate) fn withdraw(&self, copies: &[(u64, u8, Option<u64>)]) {
        if let Kind::Classic(c) = &self.kind {
            c.withdraw(self, copies);
        }
    }

    /// A stream's offsets and named groups (`None`: a classic queue).
    pub(crate) fn stream_view(&self) -> Option<super::stream::StreamView> {
        match &self.kind {
            Kind::Stream(s) => Some(s.view(self)),
            Kind::Classic(_) => None,
        }
    }

    /// A stream's next offset: every lower one is here (`None`: a classic
    /// queue).
    pub(crate) fn stream_end(&self) -> Option<u64> {
        match &self.kind {
            Kind::Stream(s) => Some(s.end()),
            Kind::Classic(_) => None,
        }
    }

    /// No position below `next` is handed out from now on (a replicated
    /// stream's offsets come from its log).
    pub(crate) fn raise_next_seq(&self, next: u64) {
        self.next_seq.fetch_max(next, Ordering::Relaxed);
    }

    /// A replicated stream's log moved group `group` to `at`: see
    /// `Stream::apply_offset`.
    pub(crate) fn stream_apply_offset(&self, group: &str, at: u64, seek: bool) {
        if let Kind::Stream(s) = &self.kind {
            s.apply_offset(group, at, seek);
        }
    }

    /// The group commits that acking `acked` (each delivery's subscription
    /// and offset) would make now, without acking them: each named group
    /// whose committed offset would move, and where to. For a transaction
    /// on a replicated stream (`cluster/transaction.rs`), whose log commits
    /// them with its other parts. See `Stream::commits_if_acked`.
    pub(crate) fn stream_commits_if_acked(
        &self,
        acked: &[(Option<u64>, u64)],
    ) -> Result<Vec<(String, u64)>, BrokerError> {
        match &self.kind {
            Kind::Stream(s) => s.commits_if_acked(&self.name, acked),
            Kind::Classic(_) => Ok(Vec::new()),
        }
    }

    /// A replicated stream's lead came here (`redeliver`) or went: its
    /// readers are cancelled and its groups are `offsets`. See
    /// `Stream::replace_groups`.
    pub(crate) fn stream_replace_groups(&self, offsets: &[(String, u64)], redeliver: bool) {
        if let Kind::Stream(s) = &self.kind {
            s.replace_groups(offsets, redeliver);
        }
    }

    /// A replicated stream's lead came here: its groups' failed
    /// deliveries, as its log counted them (group, offset, count). See
    /// `Stream::restore_failed`.
    pub(crate) fn stream_restore_failed(&self, failed: &[(&str, u64, u32)]) {
        if let Kind::Stream(s) = &self.kind {
            s.restore_failed(failed);
        }
    }

    /// Empties a replicated stream's copy here, its next offset `next`:
    /// the store generation to wait for.
    pub(crate) fn stream_reset(self: &Arc<Self>, next: u64) -> Result<Option<u64>, BrokerError> {
        match &self.kind {
            Kind::Stream(s) => s.reset(self, next),
            Kind::Classic(_) => Ok(None),
        }
    }
}
