//! [`Queue`]: one queue — its name, options and counters, and its *kind*,
//! which holds its state and decides what each operation does:
//!
//! - `Classic` (`classic/`): competing consumers, each copy delivered to
//!   one and removed once settled; `single-active` and `groups` are modes
//!   of it. Ready and delayed copies, the expiry index, subscriptions with
//!   their prefetch credit, the de-duplication window, paging to the store.
//! - `Stream` (`stream/`): an append-only log read by offset, by groups
//!   of readers; acks commit offsets and remove nothing.
//!
//! `Queue` is what the rest of the broker and the sessions hold
//! (`Arc<Queue>`): each of its operations matches on the kind once and
//! hands over. Beside it: what a queue pushes to a session and the
//! subscription as the queue sees it (`consumer.rs`), what dies in it and
//! where that goes (`dead.rs`), the paged-out part of a queue (`tail.rs`),
//! the event counters (`counters.rs`).
//!
//! **Locking.** Each queue's state sits behind one `parking_lot::Mutex`
//! (its kind's) with short critical sections (insert, pop, credit), never
//! held across an `.await` or a store write. A per-queue task (the rumqttd
//! router model) was the alternative: a lock is cheaper here because
//! publishes and acks touch a queue for microseconds and mostly from one or
//! two connections, and it lets a publisher enqueue and learn the result
//! without a channel round trip. Lock order: the broker's topology lock,
//! then an exchange's bindings, then a queue's state, then the timer heap;
//! never two queues at once. Dead letters are collected under the lock and
//! returned once it is released, by every operation that may cause them,
//! for the broker to route (`dead.rs`): a queue never calls up into the
//! broker. The group index of a `groups` queue and the active subscription
//! of a `single-active` one are part of that state, under the same lock.

mod classic;
mod consumer;
mod counters;
mod dead;
mod replica;
mod stream;
mod tail;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::message::{Entry, Now};
use super::timer::Timers;
use super::{stores, Disk};
use crate::error::BrokerError;
use crate::protocol::command::{Overflow, QueueArgs, StreamStart};
use crate::store::{DedupEntry, MessageBatch, StoredQueue};
use classic::Classic;
pub(crate) use classic::Purged;
pub(crate) use consumer::{Consumer, ConsumerInfo, Delivery, Push, PushTx};
pub(crate) use counters::{QueueCounters, Totals};
pub(crate) use dead::{Dead, DeathReason, StreamGroup};
use stream::Stream;
pub(crate) use stream::{GroupView, StreamView};
pub(crate) use tail::Tail;

/// Copies read back from the store at a time, from a tail being read back
/// into RAM or dropped.
const PAGE: usize = 512;

/// How a delivered copy is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Done with: remove it.
    Ack,
    /// Put it back at its position, flagged redelivered (`NACK`, or its
    /// connection closed), after `delay_ms` or the queue's `retry-delays`.
    Requeue {
        /// `NACK delay=`.
        delay_ms: Option<u64>,
    },
    /// Its ack timeout passed: requeue as above.
    Timeout,
    /// Rejected without requeue: dead-lettered (reason `rejected`) or dropped.
    Reject,
    /// Never written to the client: back at its position with its flag as it was.
    Return {
        /// The redelivered flag it had before.
        redelivered: bool,
    },
}

/// Whether a publish may add a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Room, or `overflow=drop-head` (which makes room).
    Accept,
    /// Full with `overflow=reject-publish`.
    Reject,
    /// Full with `overflow=block`: wait for [`Queue::room_signal`].
    Block,
}

/// Additions an operation has decided on but not enqueued yet, per queue
/// id: (messages, body bytes). See [`Queue::admit_after`].
#[derive(Debug, Default)]
pub(crate) struct Planned(HashMap<u64, (u64, u64)>);

impl Planned {
    /// Admits one message of `len` bytes to each of `targets` (dropping
    /// those that refuse it when `all` is false; refusing the whole set
    /// when `all` is true and any refuses) and plans the additions.
    pub(crate) fn admit(
        &mut self,
        targets: Vec<Arc<Queue>>,
        len: usize,
        all: bool,
    ) -> Vec<Arc<Queue>> {
        let (ok, refused): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|q| q.admit_after(self, len) == Admission::Accept);
        if all && !refused.is_empty() {
            return Vec::new();
        }
        for q in &ok {
            self.plan(q, len);
        }
        ok
    }

    /// Plans the addition of one message of `len` bytes to `q`.
    pub(crate) fn plan(&mut self, q: &Queue, len: usize) {
        let e = self.0.entry(q.id).or_default();
        e.0 += 1;
        e.1 += len as u64;
    }
}

/// What a queue is made of (the broker builds queues from it).
#[derive(Debug)]
pub(crate) struct QueueInit {
    /// Name.
    pub(crate) name: Arc<str>,
    /// Internal id (prefix of its store keys).
    pub(crate) id: u64,
    /// Survives a restart.
    pub(crate) durable: bool,
    /// Deleted when its last subscription ends.
    pub(crate) auto_delete: bool,
    /// The owning connection of an exclusive queue.
    pub(crate) owner: Option<u64>,
    /// Failure-handling options.
    pub(crate) args: QueueArgs,
    /// The next sequence number (after recovered messages).
    pub(crate) next_seq: u64,
    /// A partition of a partitioned stream: its index.
    pub(crate) partition: Option<u32>,
}

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Name.
    pub(crate) name: Arc<str>,
    /// Internal id (prefix of its store keys).
    pub(crate) id: u64,
    /// Survives a restart.
    pub(crate) durable: bool,
    /// Deleted when its last subscription ends.
    pub(crate) auto_delete: bool,
    /// The connection that owns it, for an exclusive queue.
    pub(crate) owner: Option<u64>,
    /// Failure-handling options.
    pub(crate) args: QueueArgs,
    /// A partition of a partitioned stream: its index.
    pub(crate) partition: Option<u32>,
    next_seq: AtomicU64,
    /// Its state, and what each operation does with it.
    kind: Kind,
    /// For sessions: a message became ready (a waiting `GET`), room for a
    /// held publish. A stream signals neither.
    ready_signal: Notify,
    room_signal: Notify,
    disk: Arc<Disk>,
    timers: Arc<Timers<Queue>>,
    /// Its event counters (see [`super::stats`]).
    pub(crate) counters: QueueCounters,
    /// The broker's, bumped beside these.
    totals: Arc<Totals>,
}

/// The kinds of queue (see the module docs), matched once per operation.
#[derive(Debug)]
enum Kind {
    Classic(Classic),
    Stream(Stream),
}

/// A snapshot of a queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueStats {
    /// Messages waiting: ready plus delayed.
    pub(crate) messages: u64,
    /// Of those, delayed.
    pub(crate) delayed: u64,
    /// Delivered, not yet settled.
    pub(crate) unacked: u64,
    /// Subscriptions.
    pub(crate) consumers: u64,
    /// When the oldest waiting copy in RAM entered the broker (Unix ms),
    /// if one is waiting: see [`Queue::stats`].
    pub(crate) oldest_at: Option<u64>,
}

impl Queue {
    /// A new, empty queue.
    pub(super) fn new(
        init: QueueInit,
        disk: Arc<Disk>,
        timers: Arc<Timers<Queue>>,
        totals: Arc<Totals>,
    ) -> Queue {
        let kind = if init.args.mode.is_stream() {
            Kind::Stream(Stream::new(init.next_seq))
        } else {
            Kind::Classic(Classic::new(&init.args, &disk))
        };
        Queue {
            name: init.name,
            id: init.id,
            durable: init.durable,
            auto_delete: init.auto_delete,
            owner: init.owner,
            args: init.args,
            partition: init.partition,
            next_seq: AtomicU64::new(init.next_seq),
            kind,
            ready_signal: Notify::new(),
            room_signal: Notify::new(),
            disk,
            timers,
            counters: QueueCounters::default(),
            totals,
        }
    }

    /// Takes the next sequence number (before the message is stored).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Counters. On a classic queue `oldest_at` is the publish time of the
    /// first waiting copy (the ready head, or the first delayed one when
    /// none is ready; the head of a priority queue is its highest priority,
    /// not its oldest), and a copy read back from the store (after a
    /// restart, or paged out and in again) counts from when it was read
    /// back, so its age is a lower bound. On a stream `messages` is what
    /// it keeps and `unacked` what its groups have in flight.
    pub(crate) fn stats(&self) -> QueueStats {
        match &self.kind {
            Kind::Classic(c) => c.stats(),
            Kind::Stream(s) => s.stats(),
        }
    }

    /// Its subscriptions, for `LIST CONSUMERS`.
    pub(crate) fn consumer_list(&self) -> Vec<ConsumerInfo> {
        match &self.kind {
            Kind::Classic(c) => c.consumer_list(),
            Kind::Stream(s) => s.consumer_list(self),
        }
    }

    /// Whether a new copy must be written to the store to save RAM (the
    /// queue is over its RAM budget, or has a tail): a hint read before
    /// the copy is enqueued.
    pub(crate) fn spilling(&self) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.spilling(),
            Kind::Stream(_) => false,
        }
    }

    /// Whether a copy of a message (`persistent` or not) is stored here to
    /// survive a restart: a persistent one on a durable queue that no
    /// connection owns, and everything a stream holds.
    pub(crate) fn keeps(&self, persistent: bool) -> bool {
        (persistent || matches!(self.kind, Kind::Stream(_))) && stores(self)
    }

    /// Whether `e`, stored here, must not survive a restart (a spilled copy).
    pub(crate) fn volatile(&self, e: &Entry) -> bool {
        !self.keeps(e.msg.persistent)
    }

    /// Whether copies stored before an unclean stop are still in the tail,
    /// not yet flagged as possibly delivered (the next start must treat
    /// the store as not cleanly shut down).
    pub(crate) fn crash_flags_pending(&self) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.crash_flags_pending(),
            Kind::Stream(_) => false,
        }
    }

    /// `ERR PRECONDITION` for a verb that a stream does not take.
    pub(crate) fn refuse_stream(&self, verb: &str) -> Result<(), BrokerError> {
        match &self.kind {
            Kind::Classic(_) => Ok(()),
            Kind::Stream(_) => Err(BrokerError::Precondition(format!(
                "{} is a stream: read it with SUB (offset=, time=, group=); {verb} is for queues",
                self.name
            ))),
        }
    }

    /// Whether the queue has been deleted.
    pub(crate) fn is_deleted(&self) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.is_deleted(),
            Kind::Stream(s) => s.is_deleted(),
        }
    }

    /// Records a use (declare, `GET`) for `expires` (which a stream has not).
    pub(crate) fn touch_used(self: &Arc<Self>) {
        match &self.kind {
            Kind::Classic(c) => c.touch_used(self),
            Kind::Stream(_) => {}
        }
    }

    /// The priority a copy gets here: the message's, capped by `max-priority`
    /// (0 on a queue without priorities).
    pub(crate) fn priority_for(&self, asked: Option<u8>) -> u8 {
        match self.args.max_priority {
            Some(max) => asked.unwrap_or(0).min(max),
            None => 0,
        }
    }

    /// When a copy entering now expires: the smaller of the queue's `ttl`
    /// and the message's.
    pub(crate) fn expiry_for(&self, now: &Now, message_ttl: Option<u64>) -> Option<u64> {
        self.expiry_from(now.get(), message_ttl)
    }

    /// When a copy that entered (was published) at `since` expires: the
    /// smaller of the queue's `ttl` and the message's, from then.
    pub(crate) fn expiry_from(&self, since: u64, message_ttl: Option<u64>) -> Option<u64> {
        let ttl = match (self.args.ttl_ms, message_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ttl.map(|t| since.saturating_add(t))
    }

    /// Whether one more message of `len` bytes may be published now.
    pub(crate) fn admit(&self, len: usize) -> Admission {
        self.admit_after(&Planned::default(), len)
    }

    /// Whether one more message of `len` bytes may be added after the
    /// `planned` additions of the same operation (a batch of dead letters,
    /// a redrive) that are not enqueued yet. A stream takes everything
    /// (its `max-bytes` is retention, not a limit).
    pub(crate) fn admit_after(&self, planned: &Planned, len: usize) -> Admission {
        if self.args.overflow == Overflow::DropHead {
            return Admission::Accept;
        }
        match &self.kind {
            Kind::Classic(c) => c.admit_after(self, planned, len),
            Kind::Stream(_) => Admission::Accept,
        }
    }

    /// Signalled when a blocked queue gets room (or is deleted) while a
    /// publish is counted by [`Queue::blocker`].
    pub(crate) fn room_signal(&self) -> &Notify {
        &self.room_signal
    }

    /// Counts a held publish while the guard lives.
    pub(crate) fn blocker(self: &Arc<Self>) -> Blocker {
        if let Kind::Classic(c) = &self.kind {
            c.count_blocked();
        }
        Blocker(self.clone())
    }

    /// Claims `id` in the de-duplication window: false when it is a
    /// duplicate. Also returns the ids whose window ended (to remove from
    /// the store with the next write).
    pub(crate) fn dedup_claim(&self, id: &str, now: u64) -> (bool, Vec<String>) {
        match (&self.kind, self.args.dedup_window_ms) {
            (Kind::Classic(c), Some(window)) => c.dedup_claim(id, now, window),
            _ => (true, Vec::new()),
        }
    }

    /// The end of `id`'s de-duplication window, if it is in one.
    pub(crate) fn dedup_until(&self, id: &str) -> Option<u64> {
        match &self.kind {
            Kind::Classic(c) => c.dedup_until(id),
            Kind::Stream(_) => None,
        }
    }

    /// Restores de-duplication records found in the store.
    pub(crate) fn restore_dedup(&self, entries: Vec<DedupEntry>) {
        if let Kind::Classic(c) = &self.kind {
            c.restore_dedup(entries);
        }
    }

    /// Adds a copy (ready, or delayed until its `not_before`; on a stream,
    /// at its offset), applies `overflow=drop-head`, and dispatches. A copy
    /// for a deleted queue is released instead. Returns the generation of
    /// any store write it caused, and the copies that died (pushed out, or
    /// found expired on the way to a consumer) for the caller to route.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        entry: Entry,
    ) -> Result<(Option<u64>, Dead), BrokerError> {
        match &self.kind {
            Kind::Classic(c) => c.enqueue(self, entry),
            Kind::Stream(s) => Ok((s.arrive(self, entry.seq, Some(entry))?, Dead::default())),
        }
    }

    /// Gives up stream offset `seq`, taken by a publish that failed before
    /// its copy was appended, so that later offsets become readable (a
    /// classic queue has nothing to give up).
    pub(crate) fn stream_abandon(self: &Arc<Self>, seq: u64) {
        if let Kind::Stream(s) = &self.kind {
            if let Err(e) = s.arrive(self, seq, None) {
                tracing::warn!(stream = %self.name, error = %e, "could not trim the stream");
            }
        }
    }

    /// Takes over the copies found in the store at start. A classic queue
    /// puts all of them in its tail, then reads back up to its RAM budget
    /// (so that their TTLs and delays run); `crashed`: the last stop was
    /// not clean. A stream reads nothing.
    pub(crate) fn restore(self: &Arc<Self>, stored: &StoredQueue, crashed: bool) {
        match &self.kind {
            Kind::Classic(c) => c.restore(self, stored, crashed),
            Kind::Stream(s) => s.restore(self, stored),
        }
    }

    /// Restores a stream group's committed offset found in the store.
    pub(crate) fn restore_offset(&self, group: &str, at: u64) {
        if let Kind::Stream(s) = &self.kind {
            s.restore_offset(self, group, at);
        }
    }

    /// Adds a subscription and starts delivering to it (on a stream, as a
    /// private reader from the next offset). Returns the copies that died
    /// on the way to it, for the caller to route
    /// ([`Broker::subscribe`](crate::broker::Broker::subscribe)).
    pub(crate) fn subscribe(self: &Arc<Self>, consumer: Consumer) -> Result<Dead, BrokerError> {
        match &self.kind {
            Kind::Classic(c) => c.subscribe(self, consumer),
            Kind::Stream(s) => {
                s.subscribe(self, consumer, None, None)?;
                Ok(Dead::default())
            }
        }
    }

    /// `SUB` on a stream: joins `group` (or a private one) starting at
    /// `start` (default `next`; a named group that exists resumes at its
    /// committed offset). `PRECONDITION` on a classic queue.
    pub(crate) fn stream_subscribe(
        self: &Arc<Self>,
        consumer: Consumer,
        group: Option<&str>,
        start: Option<StreamStart>,
    ) -> Result<(), BrokerError> {
        match &self.kind {
            Kind::Stream(s) => s.subscribe(self, consumer, group, start),
            Kind::Classic(_) => Err(BrokerError::Precondition(format!(
                "queue {} is not a stream: group=, offset= and time= are for streams",
                self.name
            ))),
        }
    }

    /// Removes a subscription. Returns true when that left an auto-delete
    /// queue without subscriptions (the caller deletes it), and the copies
    /// that died in a `single-active` handover, for the caller to route
    /// ([`Broker::unsubscribe`](crate::broker::Broker::unsubscribe)).
    pub(crate) fn unsubscribe(self: &Arc<Self>, consumer_id: u64) -> (bool, Dead) {
        match &self.kind {
            Kind::Classic(c) => c.unsubscribe(self, consumer_id),
            Kind::Stream(s) => {
                s.unsubscribe(self, consumer_id);
                (false, Dead::default())
            }
        }
    }

    /// Takes up to `count` ready copies for a `GET` by connection `conn`
    /// (they count as unacked until settled; with `auto_ack` the caller
    /// settles them at once). On a `groups` queue they are the copies that
    /// connection may take, and their groups are its own until settled.
    /// `PRECONDITION` on a `single-active` queue that has subscriptions.
    /// Nothing on a stream. Also returns the copies that died on the way
    /// (found expired), for the caller to route
    /// ([`Broker::take`](crate::broker::Broker::take)).
    pub(crate) fn take(
        self: &Arc<Self>,
        count: u32,
        conn: u64,
    ) -> Result<(Vec<Entry>, Dead), BrokerError> {
        match &self.kind {
            Kind::Classic(c) => c.take(self, count, conn),
            Kind::Stream(_) => Ok((Vec::new(), Dead::default())),
        }
    }

    /// Whether a `GET` by connection `conn` would end now: a copy it may
    /// take is ready (or paged out, to be read back), the queue was
    /// deleted, or the `GET` is refused (a `single-active` queue with
    /// subscriptions). What a waiting `GET` checks before it sleeps.
    pub(crate) fn can_take(&self, conn: u64) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.can_take(self, conn),
            Kind::Stream(_) => false,
        }
    }

    /// Copies of up to `count` waiting messages from position `from` on,
    /// in position order, without taking them (on a stream, from its
    /// first offset kept by default).
    pub(crate) fn peek(&self, count: u32, from: Option<u64>) -> Vec<Entry> {
        match &self.kind {
            Kind::Classic(c) => c.peek(self, count, from),
            Kind::Stream(s) => s.peek(self, count, from),
        }
    }

    /// Takes up to `count` ready copies off the head for `REDRIVE` (not
    /// deliveries: no count, no unacked).
    pub(crate) fn take_for_redrive(self: &Arc<Self>, count: u64) -> Vec<Entry> {
        match &self.kind {
            Kind::Classic(c) => c.take_for_redrive(self, count),
            Kind::Stream(_) => Vec::new(),
        }
    }

    /// Puts back copies taken by [`Queue::take_for_redrive`] and kept;
    /// returns those that died meanwhile, for the caller to route.
    pub(crate) fn put_back(self: &Arc<Self>, entries: Vec<Entry>) -> Dead {
        match &self.kind {
            Kind::Classic(c) => c.put_back(self, entries),
            // A stream gives none to take back.
            Kind::Stream(_) => Dead::default(),
        }
    }

    /// Signalled when a message becomes ready (or the queue is deleted)
    /// while a `GET wait=` is counted by [`Queue::waiter`]. Enable a
    /// `notified()` future before calling [`Queue::take`] so no wake-up is lost.
    pub(crate) fn ready_signal(&self) -> &Notify {
        &self.ready_signal
    }

    /// Counts a waiting `GET` while the guard lives, so that enqueue knows
    /// to wake it.
    pub(crate) fn waiter(self: &Arc<Self>) -> GetWaiter {
        if let Kind::Classic(c) = &self.kind {
            c.count_waiter();
        }
        GetWaiter(self.clone())
    }

    /// Settles one delivered copy: ack, requeue, dead-letter (on a stream:
    /// commit, deliver again, or give the offset up for the group and
    /// dead-letter a copy). Gives the credit back to `consumer_id` (a
    /// subscription) and dispatches. Returns what is left for the caller
    /// to finish ([`Settled`]:
    /// [`Broker::settle`](crate::broker::Broker::settle)).
    pub(crate) fn settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        entry: Entry,
        how: Settle,
    ) -> Result<Settled, BrokerError> {
        match &self.kind {
            Kind::Classic(c) => {
                let (gen, dead, release) = c.settle(self, consumer_id, entry, how)?;
                Ok(Settled {
                    gen,
                    dead,
                    release,
                    ..Settled::default()
                })
            }
            Kind::Stream(s) => Ok(s.settle(self, consumer_id, &entry, how)),
        }
    }

    /// Removes every waiting copy. Returns how many. A stream is trimmed by
    /// its retention, not purged (`PRECONDITION`).
    pub(crate) fn purge(&self) -> Result<Purged, BrokerError> {
        match &self.kind {
            Kind::Classic(c) => c.purge(self),
            Kind::Stream(_) => Err(BrokerError::Precondition(format!(
                "{} is a stream: it is trimmed by max-age/max-bytes, not purged",
                self.name
            ))),
        }
    }

    /// Ends every subscription (each gets `NOTICE cancelled <tag>
    /// reason=<reason>`): a replicated queue's node that stopped leading
    /// it. Their deliveries stay outstanding on their connections (an ack
    /// of one still settles it, through the queue's log).
    pub(crate) fn cancel_subscriptions(&self, reason: &'static str) {
        if let Kind::Classic(c) = &self.kind {
            c.cancel_subscriptions(reason);
        }
    }

    /// Marks the queue deleted: cancels its subscriptions (each gets a
    /// notice), wakes waiting `GET`s and held publishes, and returns its
    /// waiting copies and its tail for release (a stream's stay in the
    /// store until the queue's records are deleted with it).
    pub(crate) fn mark_deleted(&self) -> (Vec<Entry>, Tail) {
        match &self.kind {
            Kind::Classic(c) => c.mark_deleted(self),
            Kind::Stream(s) => {
                s.mark_deleted();
                (Vec::new(), Tail::default())
            }
        }
    }

    /// Writes the delivery counts of delivered-but-requeued copies, so that a
    /// clean restart still flags them `redelivered`.
    /// `clean`: the store is marked cleanly shut down. When it is not, the
    /// next start adds its crash delivery again, so the one added after the
    /// last crash (`uncertain`) is not saved: it is not counted twice.
    pub(crate) fn persist_delivery_counts(&self, clean: bool) -> Result<(), BrokerError> {
        match &self.kind {
            Kind::Classic(c) => c.persist_delivery_counts(self, clean),
            Kind::Stream(_) => Ok(()),
        }
    }

    /// The timer fired. A classic queue promotes due delayed copies,
    /// expires copies whose TTL passed (returned, for the caller to route),
    /// tells whether it has been unused past `expires` (for the caller to
    /// delete it), and registers the next deadline; a stream applies its
    /// `max-age`.
    pub(crate) fn on_timer(self: &Arc<Self>, now: u64) -> Timed {
        match &self.kind {
            Kind::Classic(c) => c.on_timer(self, now),
            Kind::Stream(s) => {
                s.on_timer(self, now);
                Timed::default()
            }
        }
    }

    /// Removes the copies of a tail taken off the queue from the store:
    /// by their ranges, nothing read, when the store keeps a copy per
    /// queue; else a page at a time (and their bodies with their last
    /// reference).
    pub(crate) fn drop_tail(&self, mut tail: Tail) -> Result<Option<u64>, BrokerError> {
        if !self.disk.bodies.shared() {
            if tail.is_empty() {
                return Ok(None);
            }
            let batch = MessageBatch {
                del_ranges: tail.ranges.iter().map(|(s, e)| (self.id, *s, *e)).collect(),
                ..MessageBatch::default()
            };
            return Ok(Some(self.disk.apply(&batch)?));
        }
        let mut gen = None;
        loop {
            let page = tail.read(|from, to, n| self.disk.load(self.id, from, to, n), PAGE)?;
            if page.is_empty() {
                return Ok(gen);
            }
            let entries = page
                .iter()
                .map(|m| Entry::from_stored(m, self.disk.bodies.adopt(m), false))
                .collect();
            gen = self.release(entries)?.max(gen);
        }
    }

    /// Removes copies from the store (and their bodies with the last
    /// reference). Returns the generation to wait for, if anything was stored.
    pub(crate) fn release(&self, entries: Vec<Entry>) -> Result<Option<u64>, BrokerError> {
        let mut batch = MessageBatch::default();
        self.add_removals(&entries, &mut batch);
        if batch.is_empty() {
            return Ok(None);
        }
        let gen = self.disk.apply(&batch)?;
        // Removing spilled transient copies needs no fsync before the reply.
        Ok(entries
            .iter()
            .any(|e| e.stored && !self.volatile(e))
            .then_some(gen))
    }

    /// Adds the store removals of `entries` to `batch`.
    pub(crate) fn add_removals(&self, entries: &[Entry], batch: &mut MessageBatch<'_>) {
        for e in entries {
            if e.stored {
                batch.del_metas.push((self.id, e.seq));
                if e.msg.release_stored() {
                    batch.del_bodies.push((e.msg.body_id, e.msg.body.len()));
                }
            }
        }
    }

    /// Rewrites a stored copy's metadata (deliveries, not-before). A body
    /// referenced by this copy alone may be stored inline with its old
    /// metadata: it is written again beside the new metadata.
    fn rewrite(&self, e: &Entry) -> Result<Option<u64>, BrokerError> {
        let meta = e.meta(self.volatile(e));
        let mut batch = MessageBatch::default();
        if e.msg.stored_refs.load(Ordering::Acquire) == 1 {
            batch.put_bodies.push((e.msg.body_id, &e.msg.body));
        }
        batch.put_metas.push((self.id, e.seq, &meta));
        Ok(Some(self.disk.apply(&batch)?))
    }

    /// Counts `n` deliveries, here and broker-wide.
    fn delivered(&self, n: u64) {
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
        self.totals.delivered.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a queue's timer did, for the broker to finish (see
/// [`Queue::on_timer`]).
#[derive(Debug, Default)]
pub(crate) struct Timed {
    /// Copies whose TTL passed.
    pub(crate) dead: Dead,
    /// It has been unused past its `expires`: to be deleted.
    pub(crate) unused: bool,
}

/// What settling a copy did, for the broker to finish (see
/// [`Queue::settle`]): in this order, route `dead`, then release `release`;
/// the reply waits for the latest of the three store generations.
#[derive(Debug, Default)]
#[must_use = "dead letters must be routed and the settled copy released (Broker::settle)"]
pub(crate) struct Settled {
    /// The store generation of a requeued copy's rewrite.
    pub(crate) gen: Option<u64>,
    /// The copies that died: this one (rejected, or at its delivery
    /// limit; on a stream, a copy of the offset its group gave up), or
    /// others on the way to a consumer.
    pub(crate) dead: Dead,
    /// The copy to remove from the store (acked, or its queue deleted),
    /// once the dead letters are routed.
    pub(crate) release: Option<Entry>,
    /// A stream group's new committed offset, for the caller to store (or
    /// to record in a replicated stream's log).
    pub(crate) commit: Option<(Arc<str>, u64)>,
    /// A named stream group's failed delivery (`NACK`, ack timeout): the
    /// offset and how many deliveries of it failed so far, for a
    /// replicated stream's log.
    pub(crate) failed: Option<(Arc<str>, u64, u32)>,
    /// A stream delivery that neither a reader nor a group held any more
    /// (see `Stream::settle`): nothing was settled.
    pub(crate) orphan: bool,
}

/// A waiting `GET`, counted while it lives.
#[derive(Debug)]
pub(crate) struct GetWaiter(Arc<Queue>);

impl Drop for GetWaiter {
    fn drop(&mut self) {
        if let Kind::Classic(c) = &self.0.kind {
            c.uncount_waiter();
        }
    }
}

/// A held publish, counted while it lives.
#[derive(Debug)]
pub(crate) struct Blocker(Arc<Queue>);

impl Drop for Blocker {
    fn drop(&mut self) {
        if let Kind::Classic(c) = &self.0.kind {
            c.uncount_blocked();
        }
    }
}
