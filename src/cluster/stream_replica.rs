//! A replicated stream's part of its state machine ([`StreamPart`]):
//! the stream itself is kept whole by every member, in this node's
//! message log, like a stream of its own; the log of the stream's Raft
//! group decides its order.
//!
//! - **Offsets.** Each member appends the messages of each entry it
//!   applies at the next offset, counting on from the last snapshot's, so
//!   a message has the same offset on every member. A start applies the
//!   entries after the snapshot again: a message whose offset this node's
//!   copy holds already is not appended twice.
//! - **Group offsets** are entries too ([`GroupOffset`]): a commit moves a
//!   group forward only, a `SEEK` anywhere. Every member stores them, so
//!   the next leader's groups go on where the last one's committed.
//! - **Snapshots** hold no messages: the next offset and the group
//!   offsets, taken once this node's copy is durable up to them. A member
//!   too far behind the leader's log is sent the snapshot with the
//!   stream's kept messages, and replaces its copy with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::queue::Queue;
use crate::broker::{Broker, ReplicaMessage};
use crate::error::BrokerError;

/// A new stream's first offset (as on a single node).
pub(super) const FIRST_OFFSET: u64 = 1;

/// Messages read at a time from this node's copy for a snapshot sent.
const PACK_PAGE: u32 = 1024;

/// A stream group's position, as a log entry carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupOffset {
    pub(super) group: String,
    pub(super) at: u64,
    /// `SEEK` (it may move back); else a commit (forward only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) seek: bool,
}

/// What a replicated stream's state machine keeps besides the log's
/// position (see the module docs).
#[derive(Debug, Default, Clone)]
pub(super) struct StreamPart {
    /// The offset the next message appended takes (`None`: none yet).
    next: Option<u64>,
    /// Each named group's offset, as the log put it.
    offsets: BTreeMap<String, u64>,
}

impl StreamPart {
    /// From a snapshot's fields.
    pub(super) fn restored(next: Option<u64>, offsets: Vec<(String, u64)>) -> StreamPart {
        StreamPart {
            next,
            offsets: offsets.into_iter().collect(),
        }
    }

    /// Its snapshot fields.
    pub(super) fn saved(&self) -> (Option<u64>, Vec<(String, u64)>) {
        let offsets = self
            .offsets
            .iter()
            .map(|(g, at)| (g.clone(), *at))
            .collect();
        (self.next, offsets)
    }

    /// The next offset.
    pub(super) fn next(&self) -> u64 {
        self.next.unwrap_or(FIRST_OFFSET)
    }

    /// The groups and their offsets.
    pub(super) fn groups(&self) -> Vec<(String, u64)> {
        self.saved().1
    }

    /// Applies an entry's `messages` (those the stream keeps) and group
    /// `offsets` to this node's copy `q`.
    pub(super) fn apply(
        &mut self,
        broker: &Broker,
        q: &Arc<Queue>,
        messages: Vec<ReplicaMessage>,
        offsets: Vec<GroupOffset>,
    ) {
        let held = q.stream_end().unwrap_or(0);
        let mut fresh = Vec::new();
        for m in messages {
            let at = self.next();
            self.next = Some(at.saturating_add(1));
            // Applied again after a restart: here already.
            if at >= held {
                fresh.push((at, m));
            }
        }
        if let Err(e) = broker.append_to_stream(q, fresh) {
            tracing::error!(stream = %q.name, error = %e, "appending to this node's copy of a replicated stream");
        }
        for o in offsets {
            let old = self.offsets.get(&o.group).copied();
            let at = match (o.seek, old) {
                (false, Some(old)) => old.max(o.at),
                _ => o.at,
            };
            if old == Some(at) {
                continue;
            }
            self.offsets.insert(o.group.clone(), at);
            q.defer_offset(Arc::from(o.group.as_str()), at);
            q.stream_apply_offset(&o.group, at, o.seek);
        }
    }

    /// The messages of this node's copy `q` below the next offset, for a
    /// snapshot sent to a member too far behind.
    pub(super) fn pack(&self, q: &Queue) -> Vec<(u64, ReplicaMessage)> {
        let next = self.next();
        let mut out = Vec::new();
        let mut from = None;
        loop {
            let page = q.peek(PACK_PAGE, from);
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in page.iter().filter(|e| e.seq < next) {
                out.push((e.seq, ReplicaMessage::delivered(&e.msg)));
            }
            if last.saturating_add(1) >= next {
                break;
            }
            from = Some(last + 1);
        }
        out
    }

    /// Replaces this node's copy `q` with a snapshot's `messages` (this
    /// part already restored from it): the generation to wait for.
    pub(super) fn install(
        &self,
        broker: &Broker,
        q: &Arc<Queue>,
        messages: Vec<(u64, ReplicaMessage)>,
    ) -> Result<Option<u64>, BrokerError> {
        let next = self.next();
        let first = messages.first().map_or(next, |(at, _)| *at);
        let mut gen = q.stream_reset(first)?;
        gen = broker.append_to_stream(q, messages)?.max(gen);
        if q.stream_end() != Some(next) {
            return Err(BrokerError::Internal(format!(
                "a snapshot of stream {} ends at {:?}, not at its next offset {next}",
                q.name,
                q.stream_end()
            )));
        }
        for (group, at) in &self.offsets {
            gen = Some(q.defer_offset(Arc::from(group.as_str()), *at)).max(gen);
        }
        q.stream_replace_groups(&self.groups(), false);
        Ok(gen)
    }
}
