//! Streams (`DECLARE QUEUE <name> type=stream`): an append-only log read
//! by offset, the Kafka / RabbitMQ-streams model, inside a [`Queue`] so that
//! routing, publishing, subscriptions, acks and the session need nothing of
//! their own.
//!
//! **The log.** A message's offset is its queue position (`seq`): it is
//! stored like any durable copy (`m` ‖ queue id ‖ offset), always, and
//! acking never removes it. Offsets are taken before the store write, so
//! publishes may arrive out of order: an offset is readable once every
//! lower one has arrived or been abandoned (its publish failed), which
//! keeps reading gap-free. RAM holds only the last [`RECENT_BYTES`] of
//! messages (the head readers usually want); older data is read from the
//! store a page at a time, so reading old data never loads the stream.
//!
//! **Retention.** The log is cut into [`StreamSegment`]s (a few thousand
//! messages or a few MiB; see [`crate::store::segment_full`]). `max-bytes`
//! drops whole segments from the front while the stream is over it
//! (keeping the newest one); `max-age` drops segments whose newest message
//! is older than it. A cut is one pass over the segment's keys, outside the
//! stream's lock.
//!
//! **Readers and groups.** Every subscription reads as a member of a
//! group: `SUB <stream> group=<name>` of a named one, whose committed
//! offset is stored (in the `o` key space) and survives restarts; a plain
//! `SUB <stream>` of a private one, forgotten when it ends. A group has a
//! cursor (the next offset to read), the offsets in flight (delivered,
//! unacked) and the offsets to deliver again (nacked or returned). Its
//! committed offset is the lowest offset not yet done: acks commit in
//! order however they arrive. One member of a group is active at a time
//! (on a partition of a partitioned stream, member `index % members` by
//! consumer id, so that members share partitions evenly); when that
//! changes, the new member takes over only once the old one's in-flight
//! deliveries are settled, so that no message goes to two members at once
//! and per-key order holds.
//!
//! **Locking.** The stream state has its own mutex (the queue state's is
//! never taken for a stream); store reads for old data happen under it,
//! store writes (commits, cuts) after it is released.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::{Consumer, ConsumerInfo, Delivery, Push, Queue, QueueStats, Settle, Tail};
use crate::broker::message::{now_ms, Entry, Message};
use crate::error::BrokerError;
use crate::protocol::command::StreamStart;
use crate::protocol::reply::Notice;
use crate::store::{add_to_segments, MessageBatch, RecoveredMessage, StoredQueue, StreamSegment};

/// RAM a stream keeps of its newest messages for readers at the head.
pub(super) const RECENT_BYTES: u64 = 4 * 1024 * 1024;
/// Messages read from the store at a time for a reader of old data.
const READ_PAGE: usize = 256;
/// Body bytes a group reads ahead from the store at most (a page of
/// smaller messages, or fewer larger ones; at least one).
const READ_AHEAD_BYTES: u64 = 256 * 1024;

/// The offset record that keeps where a stream's log starts (a group name
/// cannot hold a NUL).
const START_KEY: &str = "\0start";

/// A group's key: its name, or `\0<consumer id>` for a private reader's
/// (names cannot hold a NUL).
type GroupKey = Arc<str>;

/// One stream's state.
#[derive(Debug)]
pub(super) struct StreamState {
    /// The first offset kept.
    first: u64,
    /// Every offset below this has arrived (or was abandoned).
    end: u64,
    /// Offsets at or past `end` that arrived early (`None`: abandoned).
    early: BTreeMap<u64, Option<Entry>>,
    /// The retained log, oldest first.
    segments: VecDeque<StreamSegment>,
    /// Messages and body bytes kept.
    count: u64,
    bytes: u64,
    /// The newest messages, in offset order, and their body bytes.
    recent: VecDeque<Entry>,
    recent_bytes: u64,
    /// Subscriptions, by consumer id order.
    readers: Vec<Reader>,
    groups: HashMap<GroupKey, Group>,
    pub(super) deleted: bool,
    /// The retention deadline registered with the timers.
    timer_at: Option<u64>,
}

#[derive(Debug)]
struct Reader {
    c: Consumer,
    group: GroupKey,
}

#[derive(Debug)]
struct Group {
    /// Named groups store their committed offset.
    named: bool,
    /// The lowest offset not yet done.
    committed: u64,
    /// What the store holds (named groups).
    stored: u64,
    /// The next offset to read.
    cursor: u64,
    /// Read ahead from the store for the cursor (old data), in offset
    /// order: at most a page, and at most [`READ_AHEAD_BYTES`].
    ahead: VecDeque<Entry>,
    /// Delivered, unsettled: offset → consumer id.
    in_flight: BTreeMap<u64, u64>,
    /// To deliver again: offset → whether it was written before.
    again: BTreeMap<u64, bool>,
    /// Member consumer ids, ascending.
    members: Vec<u64>,
    /// The member that receives.
    active: Option<u64>,
    /// The member told `NOTICE inactive` while its deliveries settle.
    leaving: Option<u64>,
}

impl Group {
    fn new(named: bool, at: u64) -> Group {
        Group {
            named,
            committed: at,
            stored: at,
            cursor: at,
            ahead: VecDeque::new(),
            in_flight: BTreeMap::new(),
            again: BTreeMap::new(),
            members: Vec::new(),
            active: None,
            leaving: None,
        }
    }

    /// Recomputes the committed offset; true when it moved.
    fn recommit(&mut self) -> bool {
        let low = [
            self.in_flight.keys().next().copied(),
            self.again.keys().next().copied(),
            Some(self.cursor),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.cursor);
        let moved = low != self.committed;
        self.committed = low;
        moved
    }

    /// Moves the group to `at`, forgetting what it had in flight (those
    /// deliveries' acks only give their credit back).
    fn reset(&mut self, at: u64) {
        self.ahead.clear();
        self.in_flight.clear();
        self.again.clear();
        self.cursor = at;
        self.committed = at;
    }
}

impl StreamState {
    /// An empty stream whose next offset is `next`.
    pub(super) fn new(next: u64) -> StreamState {
        StreamState {
            first: next,
            end: next,
            early: BTreeMap::new(),
            segments: VecDeque::new(),
            count: 0,
            bytes: 0,
            recent: VecDeque::new(),
            recent_bytes: 0,
            readers: Vec::new(),
            groups: HashMap::new(),
            deleted: false,
            timer_at: None,
        }
    }

    /// Where `start` points now (a `time=` is resolved by the caller).
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

    fn in_flight(&self) -> u64 {
        self.groups.values().map(|g| g.in_flight.len() as u64).sum()
    }
}

/// Up to `n` of the recent window's messages from offset `from` on.
fn recent_from(recent: &VecDeque<Entry>, from: u64, n: usize) -> Vec<Entry> {
    let i = recent.partition_point(|e| e.seq < from);
    recent.range(i..).take(n).cloned().collect()
}

/// Stored messages as copies to deliver: read-only, they hold no stored
/// reference (the stream keeps its own until retention cuts it).
fn readable(found: &[RecoveredMessage]) -> impl Iterator<Item = Entry> + '_ {
    found
        .iter()
        .map(|m| Entry::from_stored(m, Arc::new(Message::read_only(m)), false))
}

/// A group key for consumer `id`'s private reader.
fn private_key(id: u64) -> GroupKey {
    Arc::from(format!("\0{id}"))
}

impl Queue {
    pub(super) fn stream_state(&self) -> Option<parking_lot::MutexGuard<'_, StreamState>> {
        self.stream.as_ref().map(|s| s.lock())
    }

    /// Appends a stored copy at its offset (see the module docs: it becomes
    /// readable once the offsets below it have arrived).
    pub(super) fn stream_append(
        self: &Arc<Self>,
        entry: Entry,
    ) -> Result<Option<u64>, BrokerError> {
        self.stream_arrive(entry.seq, Some(entry))
    }

    /// Gives up offset `seq`, taken by a publish that failed before its
    /// copy was appended, so that later offsets become readable.
    pub fn stream_abandon(self: &Arc<Self>, seq: u64) {
        if let Err(e) = self.stream_arrive(seq, None) {
            tracing::warn!(stream = %self.name, error = %e, "could not trim the stream");
        }
    }

    fn stream_arrive(
        self: &Arc<Self>,
        seq: u64,
        entry: Option<Entry>,
    ) -> Result<Option<u64>, BrokerError> {
        let Some(mut st) = self.stream_state() else {
            return Ok(None);
        };
        if st.deleted {
            drop(st);
            return match entry {
                Some(e) => self.release(vec![e]),
                None => Ok(None),
            };
        }
        if entry.is_some() {
            self.counters
                .published
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if seq < st.end {
            // Cannot happen (an offset arrives once); keep the log as it is.
            return Ok(None);
        }
        let mut appended = false;
        if seq == st.end && st.early.is_empty() {
            // In order (the usual case): no reordering to do.
            st.end += 1;
            if let Some(e) = entry {
                self.stream_push(&mut st, e);
                appended = true;
            }
        } else {
            st.early.insert(seq, entry);
        }
        loop {
            let end = st.end;
            let Some(arrived) = st.early.remove(&end) else {
                break;
            };
            st.end += 1;
            if let Some(e) = arrived {
                self.stream_push(&mut st, e);
                appended = true;
            }
        }
        if !appended {
            return Ok(None);
        }
        let cut = self.retention(&mut st, now_ms());
        self.stream_dispatch(&mut st);
        self.stream_reschedule(&mut st);
        drop(st);
        self.cut(cut)?;
        Ok(None)
    }

    /// Adds an arrived copy to the segments and the recent window.
    fn stream_push(&self, st: &mut StreamState, e: Entry) {
        let len = e.msg.body.len() as u64;
        add_to_segments(&mut st.segments, &self.args, e.seq, len, e.msg.published_at);
        st.count += 1;
        st.bytes += len;
        st.recent_bytes += len;
        st.recent.push_back(e);
        while st.recent_bytes > RECENT_BYTES && st.recent.len() > 1 {
            if let Some(old) = st.recent.pop_front() {
                st.recent_bytes -= old.msg.body.len() as u64;
                // Its body may be shared with other queues' copies: keep
                // the count of stored references once it leaves RAM.
                self.disk.bodies.register(&old.msg);
            }
        }
    }

    /// Takes off the front the segments retention drops (their copies are
    /// removed from the store by [`Queue::cut`]).
    fn retention(&self, st: &mut StreamState, now: u64) -> Vec<(StreamSegment, Vec<Entry>)> {
        let mut out = Vec::new();
        while let Some(front) = st.segments.front() {
            let too_big =
                st.segments.len() > 1 && self.args.max_bytes.is_some_and(|m| st.bytes > m);
            let too_old = self
                .args
                .max_age_ms
                .is_some_and(|age| front.last_ts.saturating_add(age) < now);
            if !(too_big || too_old) {
                break;
            }
            let Some(seg) = st.segments.pop_front() else {
                break;
            };
            st.first = st.segments.front().map_or(st.end, |s| s.first);
            st.count -= seg.count;
            st.bytes -= seg.bytes;
            // Copies still in RAM are released from RAM (their message
            // holds the live count of a shared body's references).
            let mut in_ram = Vec::new();
            while st.recent.front().is_some_and(|e| e.seq < seg.end) {
                if let Some(e) = st.recent.pop_front() {
                    st.recent_bytes -= e.msg.body.len() as u64;
                    in_ram.push(e);
                }
            }
            out.push((seg, in_ram));
        }
        if out.is_empty() {
            return out;
        }
        let first = st.first;
        for g in st.groups.values_mut() {
            if g.cursor < first {
                g.cursor = first;
            }
            g.again.retain(|off, _| *off >= first);
            while g.ahead.front().is_some_and(|e| e.seq < first) {
                g.ahead.pop_front();
            }
            g.recommit();
        }
        out
    }

    /// Removes cut segments from the store, a page at a time, and records
    /// where the log now starts, so that a stream emptied by its retention
    /// goes on with the same offsets after a restart.
    fn cut(&self, cut: Vec<(StreamSegment, Vec<Entry>)>) -> Result<(), BrokerError> {
        let Some(start) = cut.last().map(|(seg, _)| seg.end) else {
            return Ok(());
        };
        for (seg, in_ram) in cut {
            let upto = in_ram.first().map_or(seg.end, |e| e.seq);
            let mut tail = Tail::default();
            if seg.first < upto {
                tail.ranges.insert(seg.first, upto);
                tail.count = 1;
            }
            self.drop_tail(tail)?;
            self.release(in_ram)?;
        }
        self.store_offset(START_KEY, start)?;
        Ok(())
    }

    /// Reads up to `n` messages from offset `from` on (below `end`).
    fn stream_read(&self, st: &StreamState, from: u64, n: usize) -> Vec<Entry> {
        let from = from.max(st.first);
        if from >= st.end || n == 0 {
            return Vec::new();
        }
        if st.recent.front().is_some_and(|head| from >= head.seq) {
            return recent_from(&st.recent, from, n);
        }
        self.load_log(from, st.end, n)
            .map(|found| readable(&found).collect())
            .unwrap_or_default()
    }

    /// Up to `n` stored messages with `from <= offset < to`; `None` (logged)
    /// when the store fails.
    fn load_log(&self, from: u64, to: u64, n: usize) -> Option<Vec<RecoveredMessage>> {
        match self.disk.load(self.id, from, to, n) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::error!(stream = %self.name, error = %e, "could not read the stream");
                None
            }
        }
    }

    /// Up to `n` messages from group `key`'s cursor on: from the recent
    /// window, or from what the group read ahead from the store, reading
    /// the next stretch when that is used up (one store read per stretch,
    /// not per message).
    fn read_cursor(&self, st: &mut StreamState, key: &GroupKey, n: usize) -> Vec<Entry> {
        let StreamState {
            groups,
            recent,
            first,
            end,
            count,
            bytes,
            ..
        } = st;
        let Some(g) = groups.get_mut(key) else {
            return Vec::new();
        };
        let from = g.cursor.max(*first);
        while g.ahead.front().is_some_and(|e| e.seq < from) {
            g.ahead.pop_front();
        }
        if g.ahead.is_empty() {
            if recent.front().is_some_and(|head| from >= head.seq) {
                return recent_from(recent, from, n);
            }
            // Old data: a stretch up to the recent window.
            let avg = (*bytes / (*count).max(1)).max(1);
            let page = (READ_AHEAD_BYTES / avg).clamp(1, READ_PAGE as u64) as usize;
            let to = recent.front().map_or(*end, |head| head.seq);
            let Some(found) = self.load_log(from, to, page) else {
                return Vec::new();
            };
            g.ahead.extend(readable(&found));
            if g.ahead.is_empty() && to < *end {
                // Only holes before the recent window: go on from there.
                g.cursor = to;
                return recent_from(recent, to, n);
            }
        }
        let k = n.min(g.ahead.len());
        g.ahead.drain(..k).collect()
    }

    /// The first offset published at or after `t` (Unix ms).
    fn offset_at(&self, st: &StreamState, t: u64) -> u64 {
        let Some(seg) = st.segments.iter().find(|s| s.last_ts >= t) else {
            return st.end;
        };
        let mut from = seg.first;
        loop {
            let Some(page) = self.load_log(from, st.end, READ_PAGE) else {
                return st.end;
            };
            let Some(last) = page.last() else {
                return st.end;
            };
            if let Some(m) = page.iter().find(|m| m.meta.published_at >= t) {
                return m.seq;
            }
            from = last.seq + 1;
        }
    }

    /// Resolves a start point, `time=` included.
    fn resolve(&self, st: &StreamState, start: StreamStart) -> u64 {
        match start {
            StreamStart::Time(t) => self.offset_at(st, t),
            other => st.position(other),
        }
    }

    /// `SUB` on a stream: joins `group` (or a private one) starting at
    /// `start` (default `next`; a named group that exists resumes at its
    /// committed offset).
    pub fn stream_subscribe(
        self: &Arc<Self>,
        consumer: Consumer,
        group: Option<&str>,
        start: Option<StreamStart>,
    ) -> Result<(), BrokerError> {
        let Some(mut st) = self.stream_state() else {
            return Err(BrokerError::Precondition(format!(
                "queue {} is not a stream: group=, offset= and time= are for streams",
                self.name
            )));
        };
        if st.deleted {
            return Err(BrokerError::NotFound(format!(
                "queue {} was deleted",
                self.name
            )));
        }
        let key: GroupKey = match group {
            Some(g) => Arc::from(g),
            None => private_key(consumer.id),
        };
        if !st.groups.contains_key(&key) {
            let at = self.resolve(&st, start.unwrap_or(StreamStart::Next));
            st.groups
                .insert(key.clone(), Group::new(group.is_some(), at));
        }
        let id = consumer.id;
        if let Some(g) = st.groups.get_mut(&key) {
            g.members.push(id);
            g.members.sort_unstable();
        }
        st.readers.push(Reader {
            c: consumer,
            group: key.clone(),
        });
        st.readers.sort_by_key(|r| r.c.id);
        self.rebalance(&mut st, &key);
        self.stream_dispatch(&mut st);
        Ok(())
    }

    /// Ends a stream subscription (its deliveries stay outstanding).
    pub(super) fn stream_unsubscribe(self: &Arc<Self>, consumer_id: u64) {
        let Some(mut st) = self.stream_state() else {
            return;
        };
        let Some(i) = st.readers.iter().position(|r| r.c.id == consumer_id) else {
            return;
        };
        let r = st.readers.remove(i);
        let key = r.group;
        let private = match st.groups.get_mut(&key) {
            Some(g) => {
                g.members.retain(|m| *m != consumer_id);
                !g.named
            }
            None => false,
        };
        if private {
            st.groups.remove(&key);
        } else {
            self.rebalance(&mut st, &key);
            self.stream_dispatch(&mut st);
        }
    }

    /// Settles a stream delivery: credit back, and for its group commit
    /// (`ACK`, `REJECT`) or deliver again (`NACK`, timeout, connection lost).
    pub(super) fn stream_settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        entry: &Entry,
        how: Settle,
    ) -> Result<Option<u64>, BrokerError> {
        let Some(mut st) = self.stream_state() else {
            return Ok(None);
        };
        let Some(id) = consumer_id else {
            return Ok(None);
        };
        if matches!(how, Settle::Ack) {
            self.counters
                .acked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.totals
                .acked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let group = st.readers.iter_mut().find(|r| r.c.id == id).map(|r| {
            r.c.credit += 1;
            r.group.clone()
        });
        // The delivery's group: the reader's, or (it unsubscribed) the
        // group that has this offset in flight for it.
        let key = group.or_else(|| {
            st.groups
                .iter()
                .find(|(_, g)| g.in_flight.get(&entry.seq) == Some(&id))
                .map(|(k, _)| k.clone())
        });
        let mut commit = None;
        if let Some(key) = key {
            if let Some(g) = st.groups.get_mut(&key) {
                if g.in_flight.get(&entry.seq) == Some(&id) {
                    g.in_flight.remove(&entry.seq);
                    match how {
                        Settle::Ack | Settle::Reject => {}
                        Settle::Return { redelivered } => {
                            g.again.insert(entry.seq, redelivered);
                        }
                        Settle::Requeue { .. } | Settle::Timeout => {
                            self.counters
                                .requeued
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            g.again.insert(entry.seq, true);
                        }
                    }
                    if g.recommit() && g.named && g.committed > g.stored {
                        g.stored = g.committed;
                        commit = Some((key.clone(), g.committed));
                    }
                }
            }
            self.rebalance(&mut st, &key);
            // Only this group's room or position changed.
            self.dispatch_group(&mut st, &key);
        }
        drop(st);
        match commit {
            Some((key, at)) => Ok(Some(self.disk.committer.defer_offset(self.id, key, at))),
            None => Ok(None),
        }
    }

    /// Writes a named group's committed offset.
    fn store_offset(&self, group: &str, at: u64) -> Result<u64, BrokerError> {
        let batch = MessageBatch {
            put_offsets: vec![(self.id, group, at)],
            ..MessageBatch::default()
        };
        Ok(self.disk.apply(&batch)?)
    }

    /// `SEEK`: moves `group` to `to` (creating it if it is new). Returns
    /// the offset it will read next and the store generation to wait for.
    pub fn stream_seek(
        self: &Arc<Self>,
        group: &str,
        to: StreamStart,
    ) -> Result<(u64, u64), BrokerError> {
        let Some(mut st) = self.stream_state() else {
            return Err(BrokerError::Precondition(format!(
                "queue {} is not a stream",
                self.name
            )));
        };
        let at = self.resolve(&st, to);
        let key: GroupKey = Arc::from(group);
        let g = st
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(true, at));
        g.reset(at);
        g.stored = at;
        self.rebalance(&mut st, &key);
        self.stream_dispatch(&mut st);
        drop(st);
        Ok((at, self.store_offset(group, at)?))
    }

    /// Restores a named group's committed offset found in the store (or
    /// where the log starts, which `cut` writes).
    pub fn restore_offset(&self, group: &str, at: u64) {
        if let Some(mut st) = self.stream_state() {
            if group == START_KEY {
                if st.count == 0 && at > st.end {
                    st.first = at;
                    st.end = at;
                    self.next_seq
                        .fetch_max(at, std::sync::atomic::Ordering::Relaxed);
                }
                return;
            }
            let at = at.max(st.first);
            st.groups.insert(Arc::from(group), Group::new(true, at));
        }
    }

    /// Takes over the stream's stored log at start (nothing is read).
    pub(super) fn stream_restore(self: &Arc<Self>, stored: &StoredQueue) {
        let Some(mut st) = self.stream_state() else {
            return;
        };
        st.first = stored.first_seq;
        st.end = stored.last_seq.saturating_add(1);
        st.segments = stored.segments.iter().copied().collect();
        st.count = stored.count;
        st.bytes = stored.bytes;
        let cut = self.retention(&mut st, now_ms());
        self.stream_reschedule(&mut st);
        drop(st);
        if let Err(e) = self.cut(cut) {
            tracing::warn!(stream = %self.name, error = %e, "could not trim the stream");
        }
    }

    /// The retention timer fired.
    pub(super) fn stream_timer(self: &Arc<Self>, now: u64) {
        let Some(mut st) = self.stream_state() else {
            return;
        };
        st.timer_at = None;
        if st.deleted {
            return;
        }
        let cut = self.retention(&mut st, now);
        self.stream_dispatch(&mut st);
        self.stream_reschedule(&mut st);
        drop(st);
        if let Err(e) = self.cut(cut) {
            tracing::warn!(stream = %self.name, error = %e, "could not trim the stream");
        }
    }

    fn stream_reschedule(self: &Arc<Self>, st: &mut StreamState) {
        let (Some(age), Some(front)) = (self.args.max_age_ms, st.segments.front()) else {
            return;
        };
        let at = front.last_ts.saturating_add(age).saturating_add(1);
        if st.timer_at.is_none_or(|t| at < t) {
            st.timer_at = Some(at);
            self.timers.schedule(at, self);
        }
    }

    /// Counters: `messages` is what the stream keeps, `unacked` what its
    /// groups have in flight.
    pub(super) fn stream_stats(&self, st: &StreamState) -> QueueStats {
        QueueStats {
            messages: st.count,
            delayed: 0,
            unacked: st.in_flight(),
            consumers: st.readers.len() as u64,
            oldest_at: st.segments.front().map(|s| s.first_ts),
        }
    }

    pub(super) fn stream_consumers(&self, st: &StreamState) -> Vec<ConsumerInfo> {
        st.readers
            .iter()
            .map(|r| ConsumerInfo {
                tag: r.c.tag.clone(),
                conn: r.c.conn,
                prefetch: r.c.prefetch,
                in_flight: r.c.prefetch.saturating_sub(r.c.credit),
                exclusive: false,
                auto_ack: r.c.auto_ack,
            })
            .collect()
    }

    /// `PEEK` on a stream: up to `count` messages from offset `from` (the
    /// first kept by default), read without changing anything.
    pub(super) fn stream_peek(
        &self,
        st: &StreamState,
        count: u32,
        from: Option<u64>,
    ) -> Vec<Entry> {
        self.stream_read(st, from.unwrap_or(st.first), count as usize)
    }

    /// The stream is being deleted: cancels its readers.
    pub(super) fn stream_mark_deleted(&self, st: &mut StreamState) {
        st.deleted = true;
        for r in st.readers.drain(..) {
            let _ = r.c.tx.send(Push::Cancelled { tag: r.c.tag });
        }
        st.recent.clear();
        st.recent_bytes = 0;
    }

    /// Picks the group's active member; a change waits for the old active
    /// member's in-flight deliveries to settle.
    fn rebalance(&self, st: &mut StreamState, key: &GroupKey) {
        let index = self.partition.unwrap_or(0) as usize;
        let StreamState {
            groups, readers, ..
        } = st;
        let Some(g) = groups.get_mut(key) else {
            return;
        };
        let wanted = match g.members.len() {
            0 => None,
            n => Some(g.members[index % n]),
        };
        if g.active == wanted {
            return;
        }
        let notify = |id: u64, active: bool| {
            if let Some(r) = readers.iter().find(|r| r.c.id == id) {
                let tag = r.c.tag.to_string();
                let partition = self.partition;
                let n = if active {
                    Notice::Active { tag, partition }
                } else {
                    Notice::Inactive { tag, partition }
                };
                let _ = r.c.tx.send(Push::Notice(n));
            }
        };
        if let Some(old) = g.active {
            // A member still there is told it stops receiving; one that
            // left is not.
            let told = g.leaving == Some(old);
            if !told && g.named && g.members.contains(&old) {
                notify(old, false);
            }
            if g.in_flight.values().any(|c| *c == old) {
                // It receives nothing more; the next takes over once its
                // deliveries are settled.
                g.leaving = Some(old);
                return;
            }
        }
        g.active = wanted;
        g.leaving = None;
        if let (Some(new), true) = (wanted, g.named) {
            notify(new, true);
        }
    }

    /// Delivers to every group's active member while it has credit.
    fn stream_dispatch(self: &Arc<Self>, st: &mut StreamState) {
        let keys: Vec<GroupKey> = st
            .groups
            .iter()
            .filter(|(_, g)| g.active.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.dispatch_group(st, &key);
        }
    }

    fn dispatch_group(self: &Arc<Self>, st: &mut StreamState, key: &GroupKey) {
        loop {
            let Some(g) = st.groups.get(key) else {
                return;
            };
            let Some(active) = g.active else {
                return;
            };
            if g.leaving.is_some() {
                return;
            }
            let Some(ri) = st.readers.iter().position(|r| r.c.id == active) else {
                return;
            };
            let credit = st.readers[ri].c.credit as usize;
            if credit == 0 {
                return;
            }
            // Offsets to deliver again come first, then the cursor's.
            let (batch, again) = match g.again.first_key_value() {
                Some((&off, &redelivered)) => {
                    let found = self.stream_read(st, off, 1);
                    match found.into_iter().next() {
                        Some(e) if e.seq == off => (vec![e], Some(redelivered)),
                        _ => {
                            if let Some(g) = st.groups.get_mut(key) {
                                g.again.remove(&off);
                            }
                            continue;
                        }
                    }
                }
                None if g.cursor < st.end => {
                    let page = self.read_cursor(st, key, credit.min(READ_PAGE));
                    if page.is_empty() {
                        // Only holes (abandoned offsets) up to the end.
                        let end = st.end;
                        if let Some(g) = st.groups.get_mut(key) {
                            g.cursor = end;
                            g.recommit();
                        }
                        return;
                    }
                    (page, None)
                }
                None => return,
            };
            for mut e in batch {
                let r = &mut st.readers[ri];
                let seq = e.seq;
                e.redelivered = again.unwrap_or(false);
                e.deliveries = 1 + u32::from(again.is_some());
                let d = Delivery {
                    queue: self.clone(),
                    consumer_id: r.c.id,
                    tag: r.c.tag.clone(),
                    auto_ack: r.c.auto_ack,
                    entry: e,
                };
                if r.c.tx.send(Push::Deliver(d)).is_err() {
                    // The connection is gone: drop its reader; what was
                    // not sent stays where it was.
                    let gone = st.readers.remove(ri);
                    if let Some(g) = st.groups.get_mut(&gone.group) {
                        g.members.retain(|m| *m != gone.c.id);
                    }
                    self.rebalance(st, key);
                    break;
                }
                r.c.credit -= 1;
                self.delivered(1);
                if let Some(g) = st.groups.get_mut(key) {
                    g.in_flight.insert(seq, active);
                    if again.is_some() {
                        g.again.remove(&seq);
                    } else {
                        g.cursor = seq + 1;
                    }
                }
            }
        }
    }
}
