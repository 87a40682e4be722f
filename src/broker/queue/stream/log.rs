//! [`Log`]: a stream's messages by offset — which offsets are readable
//! (arrivals put back in order), the retained segments, the recent window
//! kept in RAM — with retention (which segments go) and reads (from RAM,
//! or from the store a page at a time).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::broker::message::{Bodies, Entry, Message};
use crate::broker::queue::Queue;
use crate::protocol::command::{QueueArgs, StreamStart};
use crate::store::{add_to_segments, RecoveredMessage, StoredQueue, StreamSegment};

/// RAM a stream keeps of its newest messages for readers at the head.
pub(super) const RECENT_BYTES: u64 = 4 * 1024 * 1024;
/// Messages read from the store at a time for a reader of old data.
pub(super) const READ_PAGE: usize = 256;

/// Segments retention took off the front, each with its copies that were
/// still in RAM (see [`Log::retention`]).
pub(super) type Cut = Vec<(StreamSegment, Vec<Entry>)>;

/// One stream's log (see the module docs).
#[derive(Debug)]
pub(super) struct Log {
    /// The first offset kept.
    pub(super) first: u64,
    /// Every offset below this has arrived (or was abandoned).
    pub(super) end: u64,
    /// Offsets at or past `end` that arrived early (`None`: abandoned).
    early: BTreeMap<u64, Option<Entry>>,
    /// The retained log, oldest first.
    pub(super) segments: VecDeque<StreamSegment>,
    /// Messages and body bytes kept.
    pub(super) count: u64,
    pub(super) bytes: u64,
    /// The newest messages, in offset order, and their body bytes.
    pub(super) recent: VecDeque<Entry>,
    recent_bytes: u64,
}

impl Log {
    /// An empty log whose next offset is `next`.
    pub(super) fn new(next: u64) -> Log {
        Log {
            first: next,
            end: next,
            early: BTreeMap::new(),
            segments: VecDeque::new(),
            count: 0,
            bytes: 0,
            recent: VecDeque::new(),
            recent_bytes: 0,
        }
    }

    /// Takes over the log the store holds (nothing is read).
    pub(super) fn restore(&mut self, stored: &StoredQueue) {
        self.first = stored.first_seq;
        self.end = stored.last_seq.saturating_add(1);
        self.segments = stored.segments.iter().copied().collect();
        self.count = stored.count;
        self.bytes = stored.bytes;
    }

    /// Offset `seq` arrived, with its copy or abandoned (`None`): it and
    /// the early arrivals right after it join the log once every lower
    /// offset has arrived. True when a copy joined.
    pub(super) fn arrive(
        &mut self,
        seq: u64,
        entry: Option<Entry>,
        args: &QueueArgs,
        bodies: &Arc<Bodies>,
    ) -> bool {
        if seq < self.end {
            // Cannot happen (an offset arrives once); keep the log as it is.
            return false;
        }
        let mut appended = false;
        if seq == self.end && self.early.is_empty() {
            // In order (the usual case): no reordering to do.
            self.end += 1;
            if let Some(e) = entry {
                self.push(e, args, bodies);
                appended = true;
            }
        } else {
            self.early.insert(seq, entry);
        }
        loop {
            let end = self.end;
            let Some(arrived) = self.early.remove(&end) else {
                break;
            };
            self.end += 1;
            if let Some(e) = arrived {
                self.push(e, args, bodies);
                appended = true;
            }
        }
        appended
    }

    /// Adds an arrived copy to the segments and the recent window.
    fn push(&mut self, e: Entry, args: &QueueArgs, bodies: &Arc<Bodies>) {
        let len = e.msg.body.len() as u64;
        add_to_segments(&mut self.segments, args, e.seq, len, e.msg.published_at);
        self.count += 1;
        self.bytes += len;
        self.recent_bytes += len;
        self.recent.push_back(e);
        while self.recent_bytes > RECENT_BYTES && self.recent.len() > 1 {
            if let Some(old) = self.recent.pop_front() {
                self.recent_bytes -= old.msg.body.len() as u64;
                // Its body may be shared with other queues' copies: keep
                // the count of stored references once it leaves RAM.
                bodies.register(&old.msg);
            }
        }
    }

    /// Takes off the front the segments retention drops: while the stream
    /// is over `max-bytes` (keeping the newest segment), or their newest
    /// message is older than `max-age`. Their copies are removed from the
    /// store by the caller, after the lock.
    pub(super) fn retention(&mut self, args: &QueueArgs, now: u64) -> Cut {
        let mut out = Vec::new();
        while let Some(front) = self.segments.front() {
            let too_big = self.segments.len() > 1 && args.max_bytes.is_some_and(|m| self.bytes > m);
            let too_old = args
                .max_age_ms
                .is_some_and(|age| front.last_ts.saturating_add(age) < now);
            if !(too_big || too_old) {
                break;
            }
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            self.first = self.segments.front().map_or(self.end, |s| s.first);
            self.count -= seg.count;
            self.bytes -= seg.bytes;
            // Copies still in RAM are released from RAM (their message
            // holds the live count of a shared body's references).
            let mut in_ram = Vec::new();
            while self.recent.front().is_some_and(|e| e.seq < seg.end) {
                if let Some(e) = self.recent.pop_front() {
                    self.recent_bytes -= e.msg.body.len() as u64;
                    in_ram.push(e);
                }
            }
            out.push((seg, in_ram));
        }
        out
    }

    /// Takes off every segment, as [`Log::retention`] would (the copy is
    /// emptied).
    pub(super) fn take_all(&mut self) -> Cut {
        let mut out = Vec::new();
        while let Some(seg) = self.segments.pop_front() {
            let mut in_ram = Vec::new();
            while self.recent.front().is_some_and(|e| e.seq < seg.end) {
                if let Some(e) = self.recent.pop_front() {
                    in_ram.push(e);
                }
            }
            out.push((seg, in_ram));
        }
        self.first = self.end;
        self.count = 0;
        self.bytes = 0;
        self.recent_bytes = 0;
        out
    }

    /// The stream is deleted: lets go of what it holds in RAM.
    pub(super) fn clear_recent(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    /// Where `start` points now (a `time=` is resolved by [`Log::resolve`]).
    fn position(&self, start: StreamStart) -> u64 {
        match start {
            StreamStart::First => self.first,
            StreamStart::Last => self.last_offset().unwrap_or(self.end),
            StreamStart::Next => self.end,
            StreamStart::Offset(n) => n.clamp(self.first, self.end),
            StreamStart::Time(_) => self.end,
        }
    }

    /// The newest offset kept.
    fn last_offset(&self) -> Option<u64> {
        self.recent
            .back()
            .map(|e| e.seq)
            .or_else(|| self.segments.back().map(|s| s.end - 1))
    }

    /// Resolves a start point, `time=` included (read from `q`'s store).
    pub(super) fn resolve(&self, q: &Queue, start: StreamStart) -> u64 {
        match start {
            StreamStart::Time(t) => self.offset_at(q, t),
            other => self.position(other),
        }
    }

    /// The first offset published at or after `t` (Unix ms).
    fn offset_at(&self, q: &Queue, t: u64) -> u64 {
        let Some(seg) = self.segments.iter().find(|s| s.last_ts >= t) else {
            return self.end;
        };
        let mut from = seg.first;
        loop {
            let Some(page) = load(q, from, self.end, READ_PAGE) else {
                return self.end;
            };
            let Some(last) = page.last() else {
                return self.end;
            };
            if let Some(m) = page.iter().find(|m| m.meta.published_at >= t) {
                return m.seq;
            }
            from = last.seq + 1;
        }
    }

    /// Reads up to `n` messages from offset `from` on (below `end`), from
    /// RAM or from `q`'s store.
    pub(super) fn read(&self, q: &Queue, from: u64, n: usize) -> Vec<Entry> {
        let from = from.max(self.first);
        if from >= self.end || n == 0 {
            return Vec::new();
        }
        if self.recent.front().is_some_and(|head| from >= head.seq) {
            return self.recent_from(from, n);
        }
        load(q, from, self.end, n)
            .map(|found| readable(&found).collect())
            .unwrap_or_default()
    }

    /// How long ago (ms before `now`) the first message at or after offset
    /// `at` was published: a group's lag in time when `at` is its
    /// committed offset; 0 when nothing is there (caught up). One message
    /// read, from RAM or (behind the recent window) from the store.
    pub(super) fn age_at(&self, q: &Queue, at: u64, now: u64) -> u64 {
        self.read(q, at, 1)
            .first()
            .map_or(0, |e| now.saturating_sub(e.msg.published_at))
    }

    /// Up to `n` of the recent window's messages from offset `from` on.
    pub(super) fn recent_from(&self, from: u64, n: usize) -> Vec<Entry> {
        let i = self.recent.partition_point(|e| e.seq < from);
        self.recent.range(i..).take(n).cloned().collect()
    }
}

/// Up to `n` stored messages of `q` with `from <= offset < to`; `None`
/// (logged) when the store fails.
pub(super) fn load(q: &Queue, from: u64, to: u64, n: usize) -> Option<Vec<RecoveredMessage>> {
    match q.disk.load(q.id, from, to, n) {
        Ok(found) => Some(found),
        Err(e) => {
            q.counters
                .read_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(stream = %q.name, error = %e, "could not read the stream");
            None
        }
    }
}

/// Stored messages as copies to deliver: read-only, they hold no stored
/// reference (the stream keeps its own until retention cuts it).
pub(super) fn readable(found: &[RecoveredMessage]) -> impl Iterator<Item = Entry> + '_ {
    found
        .iter()
        .map(|m| Entry::from_stored(m, Arc::new(Message::read_only(m)), false))
}
