//! [`MessageStore`]: what is published, as stored. A message copy's
//! metadata and body, publisher de-duplication records and stream
//! consumer-group offsets; [`MessageBatch`], one atomic change to them;
//! and what a start sums up per queue ([`StoredMessages`], with a stream's
//! segments).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{Durable, QueueDef, StoreError};
use crate::protocol::command::{Header, QueueArgs};

/// Everything about a stored message copy except its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The body's key: one body, however many queues hold the message.
    pub body_id: u64,
    /// Message id.
    pub id: String,
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key (any bytes).
    pub routing_key: Bytes,
    /// Headers.
    pub headers: Vec<Header>,
    /// Deliveries so far (written when the copy is requeued, and on clean
    /// shutdown).
    pub deliveries: u32,
    /// When it expires (Unix ms), if it has a TTL.
    pub expires_at: Option<u64>,
    /// Not to be delivered before this (Unix ms): `delay=`, `NACK delay=`,
    /// `retry-delays`.
    pub not_before: Option<u64>,
    /// Priority (0 when none).
    pub priority: u8,
    /// A spilled copy of a transient message (or of a copy in a non-durable
    /// queue), written only to save RAM: it must not survive a restart, so
    /// recovery drops it.
    pub volatile: bool,
    /// When it was published (Unix ms; 0 for a copy stored before this was
    /// recorded). A stream seeks by it (`time=`).
    pub published_at: u64,
    /// Its message group (`PUB group=`), if any.
    pub group: Option<Bytes>,
}

/// A publisher de-duplication record: `id` was published to queue
/// `queue_id`; a repeat is a duplicate until `expires_at` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    /// Queue id.
    pub(crate) queue_id: u64,
    /// Message id.
    pub(crate) id: String,
    /// End of the window (Unix ms).
    pub(crate) expires_at: u64,
}

/// One message copy found at recovery.
#[derive(Debug, Clone)]
pub struct RecoveredMessage {
    /// Queue id.
    pub(crate) queue_id: u64,
    /// Sequence number within the queue.
    pub(crate) seq: u64,
    /// Metadata.
    pub(crate) meta: MessageMeta,
    /// Body (shared between copies of one body id).
    pub(crate) body: Bytes,
    /// The body was stored inside the meta record, so it is this copy's
    /// alone; false: a separately stored body that may be shared by several
    /// copies (see [`StoredMessages::shared_refs`]).
    pub(crate) inline: bool,
}

/// The stored copies of one durable queue, summed up at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQueue {
    /// Queue id.
    pub(crate) queue_id: u64,
    /// The smallest sequence number stored.
    pub(crate) first_seq: u64,
    /// The largest sequence number stored.
    pub(crate) last_seq: u64,
    /// How many copies are stored.
    pub(crate) count: u64,
    /// Their body bytes, counted per copy (a shared body counts once for
    /// every copy that holds it).
    pub(crate) bytes: u64,
    /// A stream's segments, oldest first (empty for other queues): what its
    /// retention trims, summed up by the scan recovery makes anyway.
    pub(crate) segments: Vec<StreamSegment>,
}

/// A run of consecutive offsets of a stream, the unit its retention
/// (`max-bytes`, `max-age`) removes. Segments are bookkeeping in RAM only:
/// recovery rebuilds them from the stored copies with [`segment_full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamSegment {
    /// Its first offset.
    pub(crate) first: u64,
    /// One past its last offset.
    pub(crate) end: u64,
    /// Messages in it.
    pub(crate) count: u64,
    /// Their body bytes.
    pub(crate) bytes: u64,
    /// Publish time of its first message (Unix ms).
    pub(crate) first_ts: u64,
    /// Publish time of its newest message (Unix ms).
    pub(crate) last_ts: u64,
}

/// A segment takes at most this many messages...
pub(crate) const SEGMENT_MESSAGES: u64 = 4096;

/// ... and at most this many body bytes (less for a small `max-bytes`).
pub(crate) const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Whether a stream's newest segment `seg` is full, so that a message
/// published at `ts` starts a new one: past [`SEGMENT_MESSAGES`], past
/// [`SEGMENT_BYTES`] or an eighth of `max-bytes`, or spanning more than an
/// eighth of `max-age` (so that retention trims in steps of about an
/// eighth of its limit).
pub(crate) fn segment_full(seg: &StreamSegment, args: &QueueArgs, ts: u64) -> bool {
    let byte_cap = args
        .max_bytes
        .map_or(SEGMENT_BYTES, |m| (m / 8).clamp(1, SEGMENT_BYTES));
    seg.count >= SEGMENT_MESSAGES
        || seg.bytes >= byte_cap
        || args
            .max_age_ms
            .is_some_and(|age| ts.saturating_sub(seg.first_ts) > (age / 8).max(1))
}

/// Adds the message at offset `seq` (`len` body bytes, published at `ts`)
/// to a stream's segment list.
pub(crate) fn add_to_segments(
    segments: &mut std::collections::VecDeque<StreamSegment>,
    args: &QueueArgs,
    seq: u64,
    len: u64,
    ts: u64,
) {
    match segments.back_mut() {
        Some(seg) if !segment_full(seg, args, ts) => {
            seg.end = seq + 1;
            seg.count += 1;
            seg.bytes += len;
            seg.last_ts = seg.last_ts.max(ts);
        }
        _ => segments.push_back(StreamSegment {
            first: seq,
            end: seq + 1,
            count: 1,
            bytes: len,
            first_ts: ts,
            last_ts: ts,
        }),
    }
}

/// One atomic change to the message space.
#[derive(Debug, Default)]
pub struct MessageBatch<'a> {
    /// Bodies to write: (body id, bytes).
    pub put_bodies: Vec<(u64, &'a [u8])>,
    /// Message copies to write: (queue id, seq, meta).
    pub put_metas: Vec<(u64, u64, &'a MessageMeta)>,
    /// Message copies to remove: (queue id, seq).
    pub del_metas: Vec<(u64, u64)>,
    /// Bodies to remove: (body id, body length).
    pub del_bodies: Vec<(u64, usize)>,
    /// De-duplication records to write.
    pub put_dedup: Vec<&'a DedupEntry>,
    /// De-duplication records to remove: (queue id, message id).
    pub del_dedup: Vec<(u64, &'a str)>,
    /// Stream consumer-group offsets to write: (queue id, group, offset).
    pub put_offsets: Vec<(u64, &'a str, u64)>,
    /// Ranges of copies to remove: (queue id, from, to), every copy with
    /// `from <= seq < to`, without reading them (a paged-out backlog
    /// purged, a stream's retention; for a replicated log, purge before an
    /// index and truncate after one). Bodies stored apart keep their other
    /// references, so a store that shares bodies
    /// ([`MessageStore::shares_bodies`]) leaves a body only these copies
    /// referenced for the next recovery: the broker removes such copies
    /// one by one instead, counting references.
    pub del_ranges: Vec<(u64, u64, u64)>,
    /// The writes need not be all-or-nothing, only ordered: bodies land
    /// before the copies that reference them, so a crash can leave some
    /// copies of a message whose publish was never confirmed, but never a
    /// copy without its body (orphan bodies are collected at recovery).
    /// For a publish fanned out to several queues; a batch with
    /// de-duplication records is always atomic.
    pub ordered_only: bool,
}

impl<'a> MessageBatch<'a> {
    /// The batch's one copy and its body, when it writes exactly that: one
    /// body, one copy of it, and removes nothing. A store may keep such a
    /// body inline with its copy (see [`RecoveredMessage::inline`]).
    pub(crate) fn sole_copy(&self) -> Option<(u64, u64, &'a MessageMeta, &'a [u8])> {
        match (
            &self.put_bodies[..],
            &self.put_metas[..],
            &self.del_metas[..],
            &self.del_bodies[..],
        ) {
            ([(body_id, body)], [(queue_id, seq, meta)], [], [])
                if *body_id == meta.body_id && self.del_ranges.is_empty() =>
            {
                Some((*queue_id, *seq, *meta, *body))
            }
            _ => None,
        }
    }

    /// About how many bytes the batch writes (keys, values and record
    /// headers; a removal writes a small record too): what the disk alarm
    /// counts against the free space.
    pub(crate) fn estimated_bytes(&self) -> u64 {
        const RECORD: u64 = 64;
        let bodies: u64 = self
            .put_bodies
            .iter()
            .map(|(_, b)| b.len() as u64 + RECORD)
            .sum();
        let metas: u64 = self
            .put_metas
            .iter()
            .map(|(_, _, m)| {
                let headers: usize = m.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
                (m.id.len() + m.exchange.len() + m.routing_key.len() + headers) as u64 + 2 * RECORD
            })
            .sum();
        // Removing a body rewrites the nodes that held it: about half its
        // size again, measured draining 200 KiB bodies.
        let removed: u64 = self.del_bodies.iter().map(|(_, len)| *len as u64 / 2).sum();
        let small = self.del_metas.len()
            + self.del_ranges.len()
            + self.del_bodies.len()
            + self.put_dedup.len()
            + self.del_dedup.len()
            + self.put_offsets.len();
        bodies + metas + removed + small as u64 * RECORD
    }

    /// Whether the batch changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.put_bodies.is_empty()
            && self.put_metas.is_empty()
            && self.del_metas.is_empty()
            && self.del_ranges.is_empty()
            && self.del_bodies.is_empty()
            && self.put_dedup.is_empty()
            && self.del_dedup.is_empty()
            && self.put_offsets.is_empty()
    }
}

/// Keeps what is published: message copies (keyed by queue id and
/// sequence number) and their bodies, de-duplication records and stream
/// consumer-group offsets. A write lands at once; [`Durable::sync`] makes
/// it durable.
///
/// A body is stored once however many copies hold it: inline with its copy
/// when a batch writes one small body for its only copy
/// ([`RecoveredMessage::inline`]), apart otherwise, counted per copy at
/// recovery ([`StoredMessages::shared_refs`]); the broker removes it with
/// its last reference.
pub trait MessageStore: Durable {
    /// Sums up the stored copies at start, against `queues` (the durable
    /// queues of the topology), and marks the run as not clean (durably).
    /// Drops orphans: copies of queues not in `queues`, volatile copies,
    /// copies whose body is missing, bodies nobody references,
    /// de-duplication records past their window and the records and
    /// offsets of queues not in `queues`. Its memory grows with the number
    /// of queues and of shared bodies, never with the number of messages.
    fn recover(&self, queues: &[QueueDef]) -> Result<StoredMessages, StoreError>;
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
    /// Applies one atomic message batch.
    fn apply(&self, batch: &MessageBatch<'_>) -> Result<(), StoreError>;
    /// Removes every message copy queue `queue_id` holds, its
    /// de-duplication records and its consumer-group offsets (bodies only
    /// its copies referenced go at the next recovery).
    fn remove_queue(&self, queue_id: u64) -> Result<(), StoreError>;
    /// Records whether the store was shut down cleanly (every copy's
    /// delivery count written): the next [`MessageStore::recover`] reads it.
    fn set_clean(&self, clean: bool) -> Result<(), StoreError>;
    /// Whether written messages can be read back ([`MessageStore::load`]);
    /// a store that keeps nothing says no, and queues then never page out.
    fn keeps_messages(&self) -> bool {
        true
    }
    /// Whether a body fanned out to several queues is stored once and
    /// counted ([`StoredMessages::shared_refs`]), so that the broker must
    /// count its references to know when it goes; a store that keeps a
    /// copy per queue says no, and has every body inline.
    fn shares_bodies(&self) -> bool {
        true
    }
}

/// What the message store holds at start, summed up (see
/// [`MessageStore::recover`]): the copies themselves stay in the store.
#[derive(Debug, Default)]
pub struct StoredMessages {
    /// Per durable queue holding stored copies: their span, count and bytes
    /// (the broker pages the copies in with [`MessageStore::load`]). In
    /// queue id order.
    pub stored: Vec<StoredQueue>,
    /// For each body stored apart from its metadata (not inline): how many
    /// stored copies reference it.
    pub(crate) shared_refs: HashMap<u64, u32>,
    /// The largest body id found in any copy (0 if none).
    pub(crate) max_body_id: u64,
    /// Whether the previous run shut down cleanly.
    pub(crate) clean_shutdown: bool,
    /// Whether no broker had run on this store before (a new data
    /// directory): then there was no previous run to be clean or not.
    pub(crate) first_start: bool,
    /// De-duplication records still inside their window at recovery time
    /// (expired ones are dropped from the store).
    pub(crate) dedup: Vec<DedupEntry>,
    /// Stream consumer-group offsets: (queue id, group, committed offset).
    pub(crate) offsets: Vec<(u64, String, u64)>,
}

/// What a recovery scan keeps, summed up as it goes: the stores'
/// [`MessageStore::recover`] decide what to drop, this counts what stays.
/// The scan meets copies in (queue id, seq) order.
#[derive(Debug)]
pub(super) struct Tally<'a> {
    /// The durable queues: copies and records of any other are orphans.
    live: HashSet<u64>,
    /// The streams among them, whose copies make up segments.
    streams: HashMap<u64, &'a QueueArgs>,
    /// The segments of the stream being scanned, in offset order.
    segments: VecDeque<StreamSegment>,
    out: StoredMessages,
}

impl<'a> Tally<'a> {
    /// A scan against the durable queues `queues`.
    pub(super) fn new(queues: &'a [QueueDef]) -> Tally<'a> {
        Tally {
            live: queues.iter().map(|q| q.id).collect(),
            streams: queues
                .iter()
                .filter(|q| q.args.mode.is_stream())
                .map(|q| (q.id, &q.args))
                .collect(),
            segments: VecDeque::new(),
            out: StoredMessages::default(),
        }
    }

    /// Whether queue `queue_id` exists (else what it holds is an orphan).
    pub(super) fn is_live(&self, queue_id: u64) -> bool {
        self.live.contains(&queue_id)
    }

    /// Notes the body id of a copy of a live queue, kept or not (new body
    /// ids start above every one found).
    pub(super) fn saw_body(&mut self, body_id: u64) {
        self.out.max_body_id = self.out.max_body_id.max(body_id);
    }

    /// Counts a copy that stays: `len` body bytes, its body stored apart
    /// (`shared`, counted as one more reference) or inline (`None`).
    pub(super) fn copy(
        &mut self,
        queue_id: u64,
        seq: u64,
        len: u64,
        shared: Option<u64>,
        published_at: u64,
    ) {
        if let Some(body_id) = shared {
            let refs = self.out.shared_refs.entry(body_id).or_insert(0);
            *refs = refs.saturating_add(1);
        }
        let stored = &mut self.out.stored;
        match stored.last_mut() {
            Some(q) if q.queue_id == queue_id => {
                // Keys come in (queue id, seq) order.
                q.last_seq = seq;
                q.count += 1;
                q.bytes = q.bytes.saturating_add(len);
            }
            _ => {
                if let Some(prev) = stored.last_mut() {
                    prev.segments = std::mem::take(&mut self.segments).into();
                }
                stored.push(StoredQueue {
                    queue_id,
                    first_seq: seq,
                    last_seq: seq,
                    count: 1,
                    bytes: len,
                    segments: Vec::new(),
                })
            }
        }
        if let Some(args) = self.streams.get(&queue_id) {
            add_to_segments(&mut self.segments, args, seq, len, published_at);
        }
    }

    /// Whether a copy that stays references the body `body_id` stored
    /// apart (else the body is an orphan).
    pub(super) fn is_shared(&self, body_id: u64) -> bool {
        self.out.shared_refs.contains_key(&body_id)
    }

    /// Keeps a de-duplication record (its queue live, its window open).
    pub(super) fn dedup(&mut self, entry: DedupEntry) {
        self.out.dedup.push(entry);
    }

    /// Keeps a group offset (its queue live).
    pub(super) fn offset(&mut self, queue_id: u64, group: String, offset: u64) {
        self.out.offsets.push((queue_id, group, offset));
    }

    /// The summary, the last queue's segments included; `clean_shutdown`
    /// says how the previous run ended.
    pub(super) fn finish(mut self, clean_shutdown: bool) -> StoredMessages {
        if let Some(last) = self.out.stored.last_mut() {
            last.segments = self.segments.into();
        }
        self.out.clean_shutdown = clean_shutdown;
        self.out
    }
}

/// Now, in Unix milliseconds (the clock of de-duplication windows).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn segments(args: &QueueArgs, msgs: &[(u64, u64, u64)]) -> Vec<StreamSegment> {
        let mut out = VecDeque::new();
        for &(seq, len, ts) in msgs {
            add_to_segments(&mut out, args, seq, len, ts);
        }
        out.into()
    }

    #[test]
    fn segments_roll_by_count_by_an_eighth_of_max_bytes_and_of_max_age() {
        let plain = QueueArgs::default();
        let many: Vec<_> = (1..=SEGMENT_MESSAGES + 1).map(|s| (s, 1, 0)).collect();
        let segs = segments(&plain, &many);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].first, segs[0].end), (1, SEGMENT_MESSAGES + 1));
        assert_eq!(segs[0].count, SEGMENT_MESSAGES);
        assert_eq!((segs[1].first, segs[1].count), (SEGMENT_MESSAGES + 1, 1));
        // max-bytes=800: a segment takes 100 bytes.
        let sized = QueueArgs {
            max_bytes: Some(800),
            ..QueueArgs::default()
        };
        let segs = segments(&sized, &[(1, 60, 0), (2, 60, 0), (3, 60, 0), (5, 10, 0)]);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].count, segs[0].bytes, segs[0].end), (2, 120, 3));
        // A hole (offset 4) stays inside the segment's span.
        assert_eq!((segs[1].first, segs[1].end, segs[1].count), (3, 6, 2));
        // max-age=800: a segment spans at most 100 ms.
        let aged = QueueArgs {
            max_age_ms: Some(800),
            ..QueueArgs::default()
        };
        let segs = segments(&aged, &[(1, 1, 1000), (2, 1, 1100), (3, 1, 1101)]);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].first_ts, segs[0].last_ts), (1000, 1100));
        assert_eq!((segs[1].first_ts, segs[1].last_ts), (1101, 1101));
    }
}
