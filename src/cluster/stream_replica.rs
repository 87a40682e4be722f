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
//! - **Failed deliveries** are entries too ([`GroupFailure`]): the
//!   leader records each delivery of a named group's offset that ended
//!   without an ack (`NACK` with requeue, an ack timeout, a lost
//!   connection or link) with the count it came to. Every member keeps the
//!   counts of the offsets its groups have not passed yet (forgotten once
//!   a commit passes them, or a `SEEK` moves the group), and the next
//!   leader's groups start with them, so that `delivery-limit=` counts the
//!   deliveries of every leader. A count applied twice (an entry retried)
//!   changes nothing: a member keeps the highest.
//! - **Snapshots** hold no messages: the next offset, the group offsets
//!   and the failed deliveries' counts, taken once this node's copy is durable up to them. A member
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

/// A failed delivery of a named group's offset, as a log entry carries
/// it: the offset has failed `count` times in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupFailure {
    pub(super) group: String,
    pub(super) at: u64,
    pub(super) count: u32,
}

/// What a replicated stream's state machine keeps besides the log's
/// position (see the module docs).
#[derive(Debug, Default, Clone)]
pub(super) struct StreamPart {
    /// The offset the next message appended takes (`None`: none yet).
    next: Option<u64>,
    /// Each named group's offset, as the log put it.
    offsets: BTreeMap<String, u64>,
    /// Each named group's failed deliveries: offset → how many, for the
    /// offsets at or past its offset only.
    failed: BTreeMap<String, BTreeMap<u64, u32>>,
}

impl StreamPart {
    /// From a snapshot's fields.
    pub(super) fn restored(next: Option<u64>, offsets: Vec<(String, u64)>) -> StreamPart {
        StreamPart {
            next,
            offsets: offsets.into_iter().collect(),
            failed: BTreeMap::new(),
        }
    }

    /// With a snapshot's failed deliveries.
    pub(super) fn with_failed(mut self, failed: Vec<GroupFailure>) -> StreamPart {
        self.count(failed);
        self
    }

    /// The failed deliveries' counts, for a snapshot or the next leader's
    /// groups.
    pub(super) fn failures(&self) -> Vec<GroupFailure> {
        let each = self.failed.iter().flat_map(|(group, counts)| {
            counts.iter().map(|(at, count)| GroupFailure {
                group: group.clone(),
                at: *at,
                count: *count,
            })
        });
        each.collect()
    }

    /// Keeps the counts of `failed` (the highest of each), but none for an
    /// offset its group has passed.
    fn count(&mut self, failed: Vec<GroupFailure>) {
        for f in failed {
            if self.offsets.get(&f.group).is_some_and(|at| f.at < *at) {
                continue;
            }
            let n = self
                .failed
                .entry(f.group)
                .or_default()
                .entry(f.at)
                .or_insert(0);
            *n = (*n).max(f.count);
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

    /// Group `group` moved to `at` (`seek`: by `SEEK`, which forgets
    /// every count, as on one node): the counts of the offsets it passed
    /// go.
    fn forget_failed(&mut self, group: &str, at: u64, seek: bool) {
        if let Some(counts) = self.failed.get_mut(group) {
            match seek {
                true => counts.clear(),
                false => *counts = counts.split_off(&at),
            }
            if counts.is_empty() {
                self.failed.remove(group);
            }
        }
    }

    /// Applies an entry's `messages` (those the stream keeps), failed
    /// deliveries and group `offsets` to this node's copy `q`.
    pub(super) fn apply(
        &mut self,
        broker: &Broker,
        q: &Arc<Queue>,
        messages: Vec<ReplicaMessage>,
        failed: Vec<GroupFailure>,
        offsets: Vec<GroupOffset>,
    ) {
        // A delivery fails before its offset is committed: the counts go
        // first, and the entry's commits prune them.
        self.count(failed);
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
            self.forget_failed(&o.group, at, o.seek);
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

#[cfg(test)]
mod tests {
    use super::{GroupFailure, StreamPart};

    fn f(group: &str, at: u64, count: u32) -> GroupFailure {
        GroupFailure {
            group: group.into(),
            at,
            count,
        }
    }

    #[test]
    fn counts_keep_the_highest_and_go_once_their_group_passes_them() {
        let mut part = StreamPart::restored(Some(10), vec![("g".into(), 3)]);
        // Applied twice (an entry retried), or out of date: the highest.
        part.count(vec![f("g", 4, 1), f("g", 4, 2), f("g", 4, 1), f("g", 6, 1)]);
        // Below the group's offset: done already, not kept.
        part.count(vec![f("g", 2, 5), f("h", 1, 1)]);
        assert_eq!(
            part.failures(),
            vec![f("g", 4, 2), f("g", 6, 1), f("h", 1, 1)]
        );
        // A snapshot keeps them.
        let (next, offsets) = part.saved();
        let back = StreamPart::restored(next, offsets).with_failed(part.failures());
        assert_eq!(back.failures(), part.failures());
        // A commit to 5 forgets offset 4's; a SEEK forgets the group's.
        part.forget_failed("g", 5, false);
        assert_eq!(part.failures(), vec![f("g", 6, 1), f("h", 1, 1)]);
        part.forget_failed("h", 0, true);
        assert_eq!(part.failures(), vec![f("g", 6, 1)]);
    }
}
