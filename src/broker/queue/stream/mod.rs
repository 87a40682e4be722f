//! [`Stream`]: the kind of queue declared `type=stream`, an append-only log
//! read by offset (the Kafka / RabbitMQ-streams model), behind the same
//! [`Queue`] as a classic queue so that routing, publishing,
//! subscriptions, acks and the session need nothing of their own. This
//! file holds the operations; the log itself is in `log.rs`, the readers
//! and their groups in `group.rs`.
//!
//! **The log.** A message's offset is its queue position (`seq`): it is
//! stored like any durable copy (`m` ‖ queue id ‖ offset), always, and
//! acking never removes it. Offsets are taken before the store write, so
//! publishes may arrive out of order: an offset is readable once every
//! lower one has arrived or been abandoned (its publish failed), which
//! keeps reading gap-free. RAM holds only the last 4 MiB of messages (the
//! head readers usually want); older data is read from the store a page
//! at a time, so reading old data never loads the stream.
//!
//! **Retention.** The log is cut into
//! [`StreamSegment`](crate::store::StreamSegment)s (a few thousand
//! messages or a few MiB; see `segment_full` in `store/message.rs`). `max-bytes`
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
//! **Locking.** The stream's state has its own mutex (a stream has no
//! classic queue state at all); store reads for old data happen under it,
//! store writes (commits, cuts) after it is released.

mod group;
mod log;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use super::consumer::ReaderLag;
use super::{
    Consumer, ConsumerInfo, Dead, DeathReason, Queue, QueueStats, Settle, Settled, StreamGroup,
    Tail,
};
use crate::broker::message::{now_ms, Entry};
use crate::error::BrokerError;
use crate::protocol::command::StreamStart;
use crate::protocol::reply::quote_for_message;
use crate::store::{MessageBatch, StoredQueue};
use group::{private_key, Group, GroupKey, Reader, Readers};
use log::{Cut, Log};

/// The offset record that keeps where a stream's log starts (a group name
/// cannot hold a NUL).
const START_KEY: &str = "\0start";

/// A stream's offsets and named groups, as the dashboard shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StreamView {
    /// The first offset kept.
    pub(crate) first: u64,
    /// The offset the next message takes.
    pub(crate) end: u64,
    /// Its named consumer groups, by name (private readers are not
    /// listed: they keep no position).
    pub(crate) groups: Vec<GroupView>,
}

/// One consumer group of a stream.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct GroupView {
    /// Its name.
    pub(crate) name: String,
    /// Its committed offset: the lowest offset not yet done (where a
    /// member that comes back resumes).
    pub(crate) committed: u64,
    /// Messages from the committed offset to the end of the log.
    pub(crate) lag: u64,
    /// Delivered, not yet acked.
    pub(crate) in_flight: u64,
    /// Its members' consumer tags, oldest subscription first.
    pub(crate) members: Vec<String>,
    /// The active member's tag, if any.
    pub(crate) active: Option<String>,
    /// The stream's newest offset (`None` before its first message).
    pub(crate) last: Option<u64>,
    /// Lag in time: the age in ms of the message at the committed offset
    /// (the oldest one the group has not finished), 0 when caught up.
    pub(crate) lag_ms: u64,
    /// On a partition of a partitioned stream: its index.
    pub(crate) partition: Option<u32>,
}

/// One stream (see the module docs).
#[derive(Debug)]
pub(super) struct Stream {
    state: Mutex<StreamState>,
}

#[derive(Debug)]
struct StreamState {
    log: Log,
    readers: Readers,
    deleted: bool,
    /// The retention deadline registered with the timers.
    timer_at: Option<u64>,
    /// A replicated stream's failed-delivery counts (offset, count) for
    /// named groups its log has no offset for yet: a `SUB` that makes
    /// the group takes them (see [`Stream::restore_failed`]).
    counted: HashMap<GroupKey, Vec<(u64, u32)>>,
}

impl StreamState {
    /// Cuts what retention drops off the log, and moves the groups past it.
    fn retention(&mut self, q: &Queue, now: u64) -> Cut {
        let cut = self.log.retention(&q.args, now);
        if !cut.is_empty() {
            self.readers.cut_before(self.log.first);
        }
        cut
    }

    /// Registers the retention deadline (`max-age`) with the timers if it
    /// is earlier than the one registered.
    fn reschedule(&mut self, q: &Arc<Queue>) {
        let (Some(age), Some(front)) = (q.args.max_age_ms, self.log.segments.front()) else {
            return;
        };
        let at = front.last_ts.saturating_add(age).saturating_add(1);
        if self.timer_at.is_none_or(|t| at < t) {
            self.timer_at = Some(at);
            q.timers.schedule(at, q);
        }
    }

    /// Picks group `key`'s active member, then delivers to every group.
    fn rebalance_and_dispatch(&mut self, q: &Arc<Queue>, key: &GroupKey) {
        self.readers.rebalance(key, q.partition);
        self.readers.dispatch(q, &self.log);
    }
}

impl Stream {
    /// An empty stream whose next offset is `next`.
    pub(super) fn new(next: u64) -> Stream {
        Stream {
            state: Mutex::new(StreamState {
                log: Log::new(next),
                readers: Readers::default(),
                deleted: false,
                timer_at: None,
                counted: HashMap::new(),
            }),
        }
    }

    pub(super) fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Offset `seq` arrived: with its copy (appended once the offsets below
    /// it have arrived), or given up (`None`: its publish failed).
    pub(super) fn arrive(
        &self,
        q: &Arc<Queue>,
        seq: u64,
        entry: Option<Entry>,
    ) -> Result<Option<u64>, BrokerError> {
        let mut st = self.state.lock();
        if st.deleted {
            drop(st);
            return match entry {
                Some(e) => q.release(vec![e]),
                None => Ok(None),
            };
        }
        if entry.is_some() {
            q.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        if !st.log.arrive(seq, entry, &q.args, &q.disk.bodies) {
            return Ok(None);
        }
        let cut = st.retention(q, now_ms());
        let StreamState { log, readers, .. } = &mut *st;
        readers.dispatch(q, log);
        st.reschedule(q);
        drop(st);
        cut_off(q, cut)?;
        Ok(None)
    }

    /// See [`Queue::restore`]: takes over the stored log (nothing is read).
    pub(super) fn restore(&self, q: &Arc<Queue>, stored: &StoredQueue) {
        let mut st = self.state.lock();
        st.log.restore(stored);
        let cut = st.retention(q, now_ms());
        st.reschedule(q);
        drop(st);
        if let Err(e) = cut_off(q, cut) {
            tracing::warn!(stream = %q.name, error = %e, "could not trim the stream");
        }
    }

    /// The retention timer fired.
    pub(super) fn on_timer(&self, q: &Arc<Queue>, now: u64) {
        let mut st = self.state.lock();
        st.timer_at = None;
        if st.deleted {
            return;
        }
        let cut = st.retention(q, now);
        let StreamState { log, readers, .. } = &mut *st;
        readers.dispatch(q, log);
        st.reschedule(q);
        drop(st);
        if let Err(e) = cut_off(q, cut) {
            tracing::warn!(stream = %q.name, error = %e, "could not trim the stream");
        }
    }

    /// `SUB` on a stream: joins `group` (or a private one) starting at
    /// `start` (default `next`; a named group that exists resumes at its
    /// committed offset).
    pub(super) fn subscribe(
        &self,
        q: &Arc<Queue>,
        consumer: Consumer,
        group: Option<&str>,
        start: Option<StreamStart>,
    ) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        if st.deleted {
            return Err(BrokerError::NotFound(format!(
                "queue {} was deleted",
                q.name
            )));
        }
        let key: GroupKey = match group {
            Some(g) => Arc::from(g),
            None => private_key(consumer.id),
        };
        if !st.readers.groups.contains_key(&key) {
            let at = st.log.resolve(q, start.unwrap_or(StreamStart::Next));
            let mut g = Group::new(group.is_some(), at);
            for (offset, count) in st.counted.remove(&key).unwrap_or_default() {
                g.count_failed(offset, count);
            }
            st.readers.groups.insert(key.clone(), g);
        }
        let id = consumer.id;
        if let Some(g) = st.readers.groups.get_mut(&key) {
            tracing::debug!(stream = %q.name, group = ?group, committed = g.committed, cursor = g.cursor, in_flight = g.in_flight.len(), consumer = id, "a subscription joins");
            g.members.push(id);
            g.members.sort_unstable();
        }
        st.readers.list.push(Reader {
            c: consumer,
            group: key.clone(),
        });
        st.readers.list.sort_by_key(|r| r.c.id);
        st.rebalance_and_dispatch(q, &key);
        Ok(())
    }

    /// Ends a stream subscription (its deliveries stay outstanding).
    pub(super) fn unsubscribe(&self, q: &Arc<Queue>, consumer_id: u64) {
        let mut st = self.state.lock();
        let Some(i) = st.readers.list.iter().position(|r| r.c.id == consumer_id) else {
            return;
        };
        let r = st.readers.list.remove(i);
        let key = r.group;
        let private = match st.readers.groups.get_mut(&key) {
            Some(g) => {
                g.members.retain(|m| *m != consumer_id);
                !g.named
            }
            None => false,
        };
        if private {
            st.readers.groups.remove(&key);
        } else {
            st.rebalance_and_dispatch(q, &key);
        }
    }

    /// Settles a stream delivery: credit back, and for its group commit
    /// (`ACK`, `REJECT`) or deliver again (`NACK`, timeout, connection lost).
    /// Returns (see [`Queue::settle`]) the named group's new committed
    /// offset when it moved, for the caller to store; the dead letter, if
    /// the group gave the offset up (see [`give_up`]); and whether the
    /// delivery was an orphan: its consumer is no reader here any more and
    /// no group holds it in flight (a replicated stream's lead moved, and
    /// its groups were replaced: nothing was settled).
    pub(super) fn settle(
        &self,
        q: &Arc<Queue>,
        consumer_id: Option<u64>,
        entry: &Entry,
        how: Settle,
    ) -> Settled {
        let mut st = self.state.lock();
        let Some(id) = consumer_id else {
            return Settled::default();
        };
        if matches!(how, Settle::Ack) {
            q.counters.acked.fetch_add(1, Ordering::Relaxed);
            q.totals.acked.fetch_add(1, Ordering::Relaxed);
        }
        let readers = &mut st.readers;
        let group = readers.list.iter_mut().find(|r| r.c.id == id).map(|r| {
            r.c.gave_back(entry.msg.body.len() as u64);
            r.group.clone()
        });
        let subscribed = group.is_some();
        // The delivery's group: the reader's, or (it unsubscribed) the
        // group that has this offset in flight for it.
        let key = group.or_else(|| readers.holding(entry.seq, id).cloned());
        let mut commit = None;
        let mut failed = None;
        let mut dead = Dead::default();
        let mut held = false;
        if let Some(key) = key {
            if let Some(g) = readers.groups.get_mut(&key) {
                if g.in_flight.get(&entry.seq) == Some(&id) {
                    held = true;
                    g.in_flight.remove(&entry.seq);
                    let (gave_up, count) = give_up(q, g, entry.seq, how);
                    if let Some(n) = count.filter(|_| g.named) {
                        failed = Some((key.clone(), entry.seq, n));
                    }
                    match gave_up {
                        Some(reason) => {
                            g.done(entry.seq);
                            q.counters.died(reason);
                            dead = Dead(
                                vec![(
                                    Entry {
                                        stored: false,
                                        ..entry.clone()
                                    },
                                    reason,
                                )],
                                Some(StreamGroup {
                                    name: g.named.then(|| key.clone()),
                                }),
                            );
                        }
                        None => match how {
                            Settle::Ack | Settle::Reject => g.done(entry.seq),
                            Settle::Return { redelivered } => {
                                g.again.insert(entry.seq, redelivered);
                            }
                            Settle::Requeue { .. } | Settle::Timeout => {
                                q.counters.requeued.fetch_add(1, Ordering::Relaxed);
                                g.again.insert(entry.seq, true);
                            }
                        },
                    }
                    if g.recommit() && g.named && g.committed > g.stored {
                        g.stored = g.committed;
                        commit = Some((key.clone(), g.committed));
                    }
                }
            }
            readers.rebalance(&key, q.partition);
            // Only this group's room or position changed.
            let StreamState { log, readers, .. } = &mut *st;
            readers.dispatch_group(q, log, &key);
        }
        Settled {
            commit,
            failed,
            dead,
            orphan: !held && !subscribed,
            ..Settled::default()
        }
    }

    /// The commits acking `acked` (subscription, offset) would make, as
    /// (group, committed offset), without acking: see
    /// `Queue::stream_commits_if_acked`. `PRECONDITION` when a delivery
    /// is in flight for no group here (the lead moved since it was made).
    pub(super) fn commits_if_acked(
        &self,
        name: &str,
        acked: &[(Option<u64>, u64)],
    ) -> Result<Vec<(String, u64)>, BrokerError> {
        let st = self.state.lock();
        let mut by_group: BTreeMap<GroupKey, Vec<u64>> = BTreeMap::new();
        for &(consumer, seq) in acked {
            let Some(key) = consumer.and_then(|id| st.readers.holding(seq, id)) else {
                return Err(BrokerError::Precondition(format!(
                    "stream {}'s delivery of offset {seq} is no longer in flight here (its lead \
                     moved since it was made)",
                    quote_for_message(name)
                )));
            };
            by_group.entry(key.clone()).or_default().push(seq);
        }
        let mut out = Vec::new();
        for (key, offsets) in by_group {
            let Some(g) = st.readers.groups.get(&key).filter(|g| g.named) else {
                continue;
            };
            let at = g.committed_without(&offsets);
            if at > g.stored {
                out.push((key.to_string(), at));
            }
        }
        Ok(out)
    }

    /// `SEEK`: moves `group` to `to` (creating it if it is new). Returns
    /// the offset it will read next and, when `store`, the store
    /// generation to wait for (a replicated stream's log records it
    /// instead).
    pub(super) fn seek(
        &self,
        q: &Arc<Queue>,
        group: &str,
        to: StreamStart,
        store: bool,
    ) -> Result<(u64, Option<u64>), BrokerError> {
        let mut st = self.state.lock();
        let at = st.log.resolve(q, to);
        let key: GroupKey = Arc::from(group);
        let g = st
            .readers
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(true, at));
        g.reset(at);
        g.stored = at;
        st.rebalance_and_dispatch(q, &key);
        drop(st);
        match store {
            true => Ok((at, Some(store_offset(q, group, at)?))),
            false => Ok((at, None)),
        }
    }

    /// Restores a named group's committed offset found in the store (or
    /// where the log starts, which [`cut_off`] writes).
    pub(super) fn restore_offset(&self, q: &Queue, group: &str, at: u64) {
        let mut st = self.state.lock();
        if group == START_KEY {
            if st.log.count == 0 && at > st.log.end {
                st.log.first = at;
                st.log.end = at;
                q.next_seq.fetch_max(at, Ordering::Relaxed);
            }
            return;
        }
        let at = at.max(st.log.first);
        st.readers
            .groups
            .insert(Arc::from(group), Group::new(true, at));
    }

    /// The offset the next message takes (every lower one has arrived).
    pub(super) fn end(&self) -> u64 {
        self.state.lock().log.end
    }

    /// A replicated stream's log moved named `group` to `at`: a commit
    /// (`seek` false), or a `SEEK`, applied on every member. A commit only
    /// moves a group forward: on the leader its own commits are applied
    /// after its group went past them (a late one must not take a group
    /// without members back), and one made by a node that led a moment
    /// before (an ack it took before it knew) says those offsets are done.
    /// A `SEEK` puts a group without members here at `at` (with members,
    /// this node made it).
    pub(super) fn apply_offset(&self, group: &str, at: u64, seek: bool) {
        let mut st = self.state.lock();
        let at = at.max(st.log.first);
        match st.readers.groups.get_mut(group) {
            Some(g) if !seek => g.advance(at),
            Some(g) if !g.members.is_empty() || !g.in_flight.is_empty() => {}
            Some(g) => {
                g.reset(at);
                g.stored = at;
            }
            None => {
                st.readers
                    .groups
                    .insert(Arc::from(group), Group::new(true, at));
            }
        }
    }

    /// A replicated stream's lead came here or went: every reader is
    /// cancelled (`leader-moved`), and the groups are those of `offsets`,
    /// each at its offset (what the stream's log committed). `redeliver`
    /// (it leads now): what the stream holds may have been delivered by
    /// the last leader, and goes out flagged `redelivered`.
    pub(super) fn replace_groups(&self, offsets: &[(String, u64)], redeliver: bool) {
        let mut st = self.state.lock();
        for r in st.readers.list.drain(..) {
            let _ = r.c.tx.send(super::Push::Cancelled {
                tag: r.c.tag,
                reason: "leader-moved",
            });
        }
        let first = st.log.first;
        let seen_below = if redeliver { st.log.end } else { 0 };
        st.readers.groups = offsets
            .iter()
            .map(|(name, at)| {
                let mut g = Group::new(true, (*at).max(first));
                g.seen_below = seen_below;
                (Arc::from(name.as_str()), g)
            })
            .collect();
    }

    /// A replicated stream's lead came here: its named groups count on
    /// from the failed deliveries its log recorded, (group, offset, count)
    /// (see [`Stream::replace_groups`], which comes first).
    pub(super) fn restore_failed(&self, failed: &[(&str, u64, u32)]) {
        let mut st = self.state.lock();
        let StreamState {
            readers, counted, ..
        } = &mut *st;
        counted.clear();
        for (group, at, count) in failed {
            match readers.groups.get_mut(*group) {
                Some(g) => g.count_failed(*at, *count),
                // A group that never committed: its next `SUB` makes it.
                None => counted
                    .entry(Arc::from(*group))
                    .or_default()
                    .push((*at, *count)),
            }
        }
    }

    /// Empties a replicated stream's copy here (a snapshot replaces it, or
    /// this node no longer keeps it): its next offset is `next`. Returns
    /// the store generation to wait for.
    pub(super) fn reset(&self, q: &Arc<Queue>, next: u64) -> Result<Option<u64>, BrokerError> {
        let mut st = self.state.lock();
        let cut = st.log.take_all();
        st.log = Log::new(next);
        st.readers.cut_before(next);
        drop(st);
        q.next_seq.fetch_max(next, Ordering::Relaxed);
        cut_off(q, cut)?;
        Ok(Some(store_offset(q, START_KEY, next)?))
    }

    /// Counters: `messages` is what the stream keeps, `unacked` what its
    /// groups have in flight.
    pub(super) fn stats(&self) -> QueueStats {
        let st = self.state.lock();
        QueueStats {
            messages: st.log.count,
            delayed: 0,
            unacked: st.readers.in_flight(),
            consumers: st.readers.list.len() as u64,
            oldest_at: st.log.segments.front().map(|s| s.first_ts),
        }
    }

    /// Where the log starts and ends, and its named groups (by name) with
    /// their lag, for `LIST GROUPS`, `STATS QUEUE`, `/metrics` and the
    /// dashboard. Costs at most one read of one message per group behind
    /// the recent window (its lag in time).
    pub(super) fn view(&self, q: &Queue) -> StreamView {
        let st = self.state.lock();
        let now = now_ms();
        let tag = |id: u64| {
            st.readers
                .list
                .iter()
                .find(|r| r.c.id == id)
                .map(|r| r.c.tag.to_string())
        };
        let last = st.log.end.checked_sub(1).filter(|l| *l >= 1);
        let mut groups: Vec<GroupView> = st
            .readers
            .groups
            .iter()
            .filter(|(_, g)| g.named)
            .map(|(name, g)| GroupView {
                name: name.to_string(),
                committed: g.committed,
                lag: st.log.end.saturating_sub(g.committed),
                in_flight: g.in_flight.len() as u64,
                members: g.members.iter().filter_map(|&id| tag(id)).collect(),
                active: g.active().and_then(tag),
                last,
                lag_ms: st.log.age_at(q, g.committed, now),
                partition: q.partition,
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        StreamView {
            first: st.log.first,
            end: st.log.end,
            groups,
        }
    }

    /// Its subscriptions with their group's lag (one read of one message
    /// per group behind the recent window, for the lag in time).
    pub(super) fn consumer_list(&self, q: &Queue) -> Vec<ConsumerInfo> {
        let st = self.state.lock();
        let now = now_ms();
        st.readers
            .list
            .iter()
            .map(|r| {
                let mut info = r.c.info(false);
                if let Some(g) = st.readers.groups.get(&r.group) {
                    info.group = Some(ReaderLag {
                        name: g.named.then(|| r.group.to_string()),
                        lag: st.log.end.saturating_sub(g.committed),
                        lag_ms: st.log.age_at(q, g.committed, now),
                        active: g.active() == Some(r.c.id),
                    });
                }
                info
            })
            .collect()
    }

    /// `PEEK` on a stream: up to `count` messages from offset `from` (the
    /// first kept by default), read without changing anything.
    pub(super) fn peek(&self, q: &Queue, count: u32, from: Option<u64>) -> Vec<Entry> {
        let st = self.state.lock();
        st.log.read(q, from.unwrap_or(st.log.first), count as usize)
    }

    /// The stream is being deleted: cancels its readers.
    pub(super) fn mark_deleted(&self) {
        let mut st = self.state.lock();
        st.deleted = true;
        for r in st.readers.list.drain(..) {
            let _ = r.c.tx.send(super::Push::Cancelled {
                tag: r.c.tag,
                reason: "queue-deleted",
            });
        }
        st.log.clear_recent();
    }
}

/// Whether group `g` gives up offset `seq` as `how` settles its delivery,
/// and why: `REJECT` (`NACK requeue=false`) when the stream has
/// `dead-letter=` (without, a rejected offset is simply done), and the
/// failed delivery (`NACK`, ack timeout, connection lost) that reaches
/// `delivery-limit=`. A given-up offset is done for the group, and its
/// dead letter a copy: the stream keeps the message for other groups.
/// With it, the count of failed deliveries of `seq` when this was one.
fn give_up(q: &Queue, g: &mut Group, seq: u64, how: Settle) -> (Option<DeathReason>, Option<u32>) {
    match how {
        Settle::Reject => (
            q.args
                .dead_letter
                .is_some()
                .then_some(DeathReason::Rejected),
            None,
        ),
        Settle::Requeue { .. } | Settle::Timeout => {
            let failed = g.failed(seq);
            let limit = q.args.delivery_limit.is_some_and(|limit| failed >= limit);
            (limit.then_some(DeathReason::DeliveryLimit), Some(failed))
        }
        Settle::Ack | Settle::Return { .. } => (None, None),
    }
}

/// Removes cut segments from the store, a page at a time, and records
/// where the log now starts, so that a stream emptied by its retention
/// goes on with the same offsets after a restart.
fn cut_off(q: &Queue, cut: Cut) -> Result<(), BrokerError> {
    let Some(start) = cut.last().map(|(seg, _)| seg.end) else {
        return Ok(());
    };
    let mut tail = Tail::default();
    let mut in_ram = Vec::new();
    for (seg, mut held) in cut {
        let upto = held.first().map_or(seg.end, |e: &Entry| e.seq);
        if seg.first < upto {
            tail.ranges.insert(seg.first, upto);
            tail.count += 1;
        }
        in_ram.append(&mut held);
    }
    q.drop_tail(tail)?;
    q.release(in_ram)?;
    store_offset(q, START_KEY, start)?;
    Ok(())
}

/// Writes a named group's committed offset (or [`START_KEY`]).
fn store_offset(q: &Queue, group: &str, at: u64) -> Result<u64, BrokerError> {
    let batch = MessageBatch {
        put_offsets: vec![(q.id, group, at)],
        ..MessageBatch::default()
    };
    Ok(q.disk.apply(&batch)?)
}
