//! [`Queue`]: one queue's state — waiting messages (ready, by priority then
//! position; delayed, by due time), the expiry index, the count of unacked
//! deliveries, its subscriptions with their prefetch credit, its
//! de-duplication window — and the dispatch loop that pushes messages to
//! subscribers.
//!
//! **Locking.** Each queue's state sits behind one `parking_lot::Mutex` with
//! short critical sections (insert, pop, credit), never held across an
//! `.await` or a store write. A per-queue task (the rumqttd router model) was
//! the alternative: a lock is cheaper here because publishes and acks touch
//! a queue for microseconds and mostly from one or two connections, and it
//! lets a publisher enqueue and learn the result without a channel round
//! trip. Lock order: the broker's topology lock, then an exchange's bindings,
//! then a queue's state, then the timer heap; never two queues at once.
//! Dead letters are collected under the lock and routed after it is
//! released (see [`Broker::dead_letter`](super::Broker)). The group index
//! of a `groups` queue and the active subscription of a `single-active`
//! one are part of that state, under the same lock.
//!
//! **Delivery.** A subscription holds `credit` (its prefetch room). Dispatch
//! hands the head message to the next subscription with credit, round-robin,
//! by sending a [`Push::Deliver`] into that connection's push channel; the
//! channel is unbounded but cannot grow past the sum of its subscriptions'
//! prefetch (plus one cancel notice each), because credit is taken before
//! the send and only given back on `ACK`/`NACK` (or, for `ack=auto`, once
//! the delivery is written to the socket). A message whose TTL has passed
//! or that has used up its `delivery-limit` is dead-lettered instead.
//!
//! **Single active consumer.** A `single-active` queue delivers to one
//! subscription only, the *active* one: always the earliest subscribed
//! still present, the others wait in subscription order. The first becomes
//! active at once; when the active one ends (`UNSUB`, its connection
//! closing) the next takes over only once no delivery of the queue is
//! outstanding, so the departed one's unacked deliveries are settled, timed
//! out or back at their positions first and order holds across the
//! handover. Each new active subscription gets `NOTICE active <ctag>`.
//! `GET` is refused while the queue has subscriptions.
//!
//! **Message groups.** On a `groups` queue, copies with one `group=` key go
//! out in queue order and to one *owner* at a time: the subscription (or
//! the connection's `GET`s) holding unsettled deliveries of the group, and
//! the group is free again with the last settle. The group index
//! (`broker/groups.rs`) lists only each group's first waiting copy, when it
//! is ready (a delayed first copy, such as a `NACK delay=` requeue, holds
//! its group back), as free or under its owner; copies without a group are
//! free when ready. Dispatch offers the next subscription with credit,
//! round-robin, the smaller of the first free key and the first key of
//! the groups it owns: O(log n) a delivery, with no scan of the ready set,
//! however long one group's backlog is.
//!
//! **Time.** Deadlines are Unix milliseconds (they are stored). The queue
//! registers only its earliest deadline with the broker's [`Timers`].
//!
//! **Paging.** A queue on disk keeps at most its RAM budget
//! (`--queue-memory`) of waiting messages in RAM, and of stored copies
//! (on disk anyway) only an 8 MiB read-ahead window. Past these, a new copy
//! is left in (or, transient, written to) the store (flagged volatile so
//! that a restart drops it) and only its position is kept: the *tail*, a set of
//! position ranges plus a count and byte total. Positions in the tail come
//! after everything in RAM, so the head is always in RAM; as consumers
//! drain it the queue reads the tail back a page at a time, in order (the
//! RabbitMQ lazy-queue / CQv2 model). At start every stored copy is in the
//! tail, so recovery reads no message. Expiry and delays of paged-out copies
//! are applied when they are read back, at the head. Priority queues keep
//! everything in RAM (the head of a priority queue is not its oldest copy).
//! A `groups` queue also reads the tail back when nothing in RAM may go to
//! a consumer with credit, but only while the read-ahead window has room:
//! a backlog that fills the window and cannot go (its groups owned by
//! consumers without credit, or held back by a delayed copy) holds back
//! the copies behind it on disk until it moves.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::MutexGuard;
use tokio::sync::{mpsc, Notify};

mod consumer;
mod counters;
mod stream;
mod tail;

use super::groups::{Groups, Owner};
use super::message::{now_ms, Entry, Message, Now};
use super::timer::Timers;
use super::{stores, Broker, Disk, Inner};
use crate::error::BrokerError;
use crate::protocol::command::{Overflow, QueueArgs, QueueMode};
use crate::protocol::reply::Notice;
use crate::store::{DedupEntry, MessageBatch, StoredQueue};
pub use consumer::{Consumer, ConsumerInfo, Delivery, Push, PushTx};
pub use counters::{QueueCounters, Totals};
use stream::StreamState;
pub use tail::Tail;

/// What a waiting copy costs in RAM besides its body (the entry, its share
/// of the message, the index nodes), for the RAM budget.
const ENTRY_OVERHEAD: u64 = 256;
/// RAM a queue uses for stored copies (which are on disk anyway) before
/// it leaves the rest of them there: the read-ahead window.
const STORED_WINDOW: u64 = 8 * 1024 * 1024;
/// Copies read back from the tail at a time.
const PAGE: usize = 512;
/// Below this many ready copies in RAM the next page is read ahead.
const LOW_WATER: usize = 256;

/// How a delivered copy is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
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

/// Why a message was dead-lettered (`h.x-death-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// `NACK requeue=false` / `REJECT`.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Pushed out by `overflow=drop-head`.
    MaxLen,
    /// Its last allowed delivery ended without an ack.
    DeliveryLimit,
}

impl DeathReason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery-limit",
        }
    }
}

/// Whether a publish may add a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
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
pub struct Planned(HashMap<u64, (u64, u64)>);

impl Planned {
    /// Admits one message of `len` bytes to each of `targets` (dropping
    /// those that refuse it when `all` is false; refusing the whole set
    /// when `all` is true and any refuses) and plans the additions.
    pub fn admit(&mut self, targets: Vec<Arc<Queue>>, len: usize, all: bool) -> Vec<Arc<Queue>> {
        let (ok, refused): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|q| q.admit_after(self, len) == Admission::Accept);
        if all && !refused.is_empty() {
            return Vec::new();
        }
        for q in &ok {
            let e = self.0.entry(q.id).or_default();
            e.0 += 1;
            e.1 += len as u64;
        }
        ok
    }
}

/// Ready messages are ordered by priority (highest first), then position.
pub(super) type ReadyKey = (u8, u64);

fn ready_key(e: &Entry) -> ReadyKey {
    (u8::MAX - e.priority, e.seq)
}

#[derive(Debug, Default)]
struct State {
    ready: BTreeMap<ReadyKey, Entry>,
    /// Delayed copies by (due, seq).
    delayed: BTreeMap<(u64, u64), Entry>,
    /// Ready copies with a TTL, by (expiry, key).
    expiry: BTreeSet<(u64, ReadyKey)>,
    /// Body bytes waiting in RAM (ready and delayed).
    bytes: u64,
    /// Copies on disk only.
    tail: Tail,
    /// Copies below this position were stored before an unclean stop: read
    /// back, they are flagged as possibly delivered.
    crash_below: u64,
    consumers: Vec<Consumer>,
    rr: usize,
    unacked: u64,
    get_waiters: usize,
    blocked: usize,
    deleted: bool,
    /// Last time it was used (consumer, GET, declare), for `expires`.
    last_used: u64,
    /// The deadline registered with the timers, if any.
    timer_at: Option<u64>,
    /// De-duplication: message id → end of its window; and the same in
    /// window order, for expiry.
    dedup: HashMap<String, u64>,
    dedup_order: VecDeque<(u64, String)>,
    /// Dead letters collected under the lock, routed after it.
    dead: Vec<(Entry, DeathReason)>,
    /// A `groups` queue's delivery index (`None` on other queues).
    groups: Option<Box<Groups>>,
    /// A `single-active` queue's active subscription, by consumer id.
    active: Option<u64>,
}

/// What a queue is made of (the broker builds queues from it).
#[derive(Debug)]
pub struct QueueInit {
    /// Name.
    pub name: Arc<str>,
    /// Internal id (prefix of its store keys).
    pub id: u64,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last subscription ends.
    pub auto_delete: bool,
    /// The owning connection of an exclusive queue.
    pub owner: Option<u64>,
    /// Failure-handling options.
    pub args: QueueArgs,
    /// The next sequence number (after recovered messages).
    pub next_seq: u64,
    /// A partition of a partitioned stream: its index.
    pub partition: Option<u32>,
}

/// One queue.
#[derive(Debug)]
pub struct Queue {
    /// Name.
    pub name: Arc<str>,
    /// Internal id (prefix of its store keys).
    pub id: u64,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last subscription ends.
    pub auto_delete: bool,
    /// The connection that owns it, for an exclusive queue.
    pub owner: Option<u64>,
    /// Failure-handling options.
    pub args: QueueArgs,
    /// A partition of a partitioned stream: its index.
    pub partition: Option<u32>,
    /// Pages its backlog out to the store: stored copies past `window`,
    /// transient ones past `ram_budget`.
    pages: bool,
    ram_budget: u64,
    window: u64,
    /// New copies go to the store (see [`Queue::spilling`]).
    spilling: AtomicBool,
    next_seq: AtomicU64,
    state: parking_lot::Mutex<State>,
    /// A stream's log, readers and groups (`type=stream`; see `stream.rs`).
    stream: Option<parking_lot::Mutex<StreamState>>,
    ready_signal: Notify,
    room_signal: Notify,
    disk: Arc<Disk>,
    timers: Arc<Timers<Queue>>,
    broker: Weak<Inner>,
    /// Its event counters (see [`super::stats`]).
    pub counters: QueueCounters,
    /// The broker's, bumped beside these.
    totals: Arc<Totals>,
}

/// A snapshot of a queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting: ready plus delayed.
    pub messages: u64,
    /// Of those, delayed.
    pub delayed: u64,
    /// Delivered, not yet settled.
    pub unacked: u64,
    /// Subscriptions.
    pub consumers: u64,
    /// When the oldest waiting copy in RAM entered the broker (Unix ms),
    /// if one is waiting: see [`Queue::stats`].
    pub oldest_at: Option<u64>,
}

impl Queue {
    /// A new, empty queue.
    pub(super) fn new(
        init: QueueInit,
        disk: Arc<Disk>,
        timers: Arc<Timers<Queue>>,
        broker: Weak<Inner>,
        totals: Arc<Totals>,
    ) -> Queue {
        let state = State {
            last_used: now_ms(),
            groups: (init.args.mode == QueueMode::Groups).then(Box::default),
            ..State::default()
        };
        let ram_budget = disk.ram_budget.unwrap_or(u64::MAX);
        let pages = disk.ram_budget.is_some()
            && init.args.max_priority.is_none()
            && !init.args.mode.is_stream();
        let stream = init
            .args
            .mode
            .is_stream()
            .then(|| parking_lot::Mutex::new(StreamState::new(init.next_seq)));
        Queue {
            name: init.name,
            id: init.id,
            durable: init.durable,
            auto_delete: init.auto_delete,
            owner: init.owner,
            args: init.args,
            partition: init.partition,
            pages,
            ram_budget,
            window: ram_budget.min(STORED_WINDOW),
            spilling: AtomicBool::new(false),
            next_seq: AtomicU64::new(init.next_seq),
            state: parking_lot::Mutex::new(state),
            stream,
            ready_signal: Notify::new(),
            room_signal: Notify::new(),
            disk,
            timers,
            broker,
            counters: QueueCounters::default(),
            totals,
        }
    }

    /// Takes the next sequence number (before the message is stored).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Counters. `oldest_at` is the publish time of the first waiting
    /// copy (the ready head, or the first delayed one when none is ready;
    /// the head of a priority queue is its highest priority, not its
    /// oldest). A copy read back from the store (after a restart, or paged
    /// out and in again) counts from when it was read back, so its age is
    /// a lower bound.
    pub fn stats(&self) -> QueueStats {
        if let Some(st) = self.stream_state() {
            return self.stream_stats(&st);
        }
        let s = self.state.lock();
        let head = s
            .ready
            .values()
            .next()
            .or_else(|| s.delayed.values().next());
        QueueStats {
            messages: s.waiting(),
            delayed: s.delayed.len() as u64,
            unacked: s.unacked,
            consumers: s.consumers.len() as u64,
            oldest_at: head.map(|e| e.msg.published_at),
        }
    }

    /// Its subscriptions, for `LIST CONSUMERS`.
    pub fn consumer_list(&self) -> Vec<ConsumerInfo> {
        if let Some(st) = self.stream_state() {
            return self.stream_consumers(&st);
        }
        let s = self.state.lock();
        s.consumers
            .iter()
            .map(|c| ConsumerInfo {
                tag: c.tag.clone(),
                conn: c.conn,
                prefetch: c.prefetch,
                in_flight: c.prefetch.saturating_sub(c.credit),
                exclusive: c.exclusive,
                auto_ack: c.auto_ack,
            })
            .collect()
    }

    /// Whether a message is ready (or paged out, to be read back).
    pub fn has_ready(&self) -> bool {
        self.stream.is_none() && self.state.lock().has_ready()
    }

    /// Whether a new copy must be written to the store to save RAM (the
    /// queue is over its RAM budget, or has a tail): a hint read before
    /// the copy is enqueued.
    pub fn spilling(&self) -> bool {
        self.spilling.load(Ordering::Relaxed)
    }

    /// Whether `e`, stored here, must not survive a restart (a spilled copy).
    pub fn volatile(&self, e: &Entry) -> bool {
        // Everything a stream holds is kept.
        !((e.msg.persistent || self.args.mode.is_stream()) && stores(self))
    }

    /// Whether copies stored before an unclean stop are still in the tail,
    /// not yet flagged as possibly delivered (the next start must treat
    /// the store as not cleanly shut down).
    pub fn crash_flags_pending(&self) -> bool {
        let s = self.state.lock();
        s.tail.head().is_some_and(|h| h < s.crash_below)
    }

    /// `ERR PRECONDITION` for a verb that a stream does not take.
    pub fn refuse_stream(&self, verb: &str) -> Result<(), BrokerError> {
        if self.args.mode.is_stream() {
            return Err(BrokerError::Precondition(format!(
                "{} is a stream: read it with SUB (offset=, time=, group=); {verb} is for queues",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether the queue has been deleted.
    pub fn is_deleted(&self) -> bool {
        if let Some(st) = self.stream_state() {
            return st.deleted;
        }
        self.state.lock().deleted
    }

    /// Records a use (declare, `GET`) for `expires`.
    pub fn touch_used(self: &Arc<Self>) {
        if self.args.expires_ms.is_some() {
            let mut s = self.state.lock();
            s.last_used = now_ms();
            self.reschedule(&mut s);
        }
    }

    /// The priority a copy gets here: the message's, capped by `max-priority`
    /// (0 on a queue without priorities).
    pub fn priority_for(&self, asked: Option<u8>) -> u8 {
        match self.args.max_priority {
            Some(max) => asked.unwrap_or(0).min(max),
            None => 0,
        }
    }

    /// When a copy entering now expires: the smaller of the queue's `ttl`
    /// and the message's.
    pub fn expiry_for(&self, now: &Now, message_ttl: Option<u64>) -> Option<u64> {
        let ttl = match (self.args.ttl_ms, message_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ttl.map(|t| now.get().saturating_add(t))
    }

    /// Whether one more message of `len` bytes may be published now.
    pub fn admit(&self, len: usize) -> Admission {
        self.admit_after(&Planned::default(), len)
    }

    /// Whether one more message of `len` bytes may be added after the
    /// `planned` additions of the same operation (a batch of dead letters,
    /// a redrive) that are not enqueued yet.
    pub fn admit_after(&self, planned: &Planned, len: usize) -> Admission {
        if self.args.overflow == Overflow::DropHead {
            return Admission::Accept;
        }
        let (n, bytes) = planned.0.get(&self.id).copied().unwrap_or((0, 0));
        let s = self.state.lock();
        if !self.over_limit(&s, n + 1, bytes + len as u64) {
            return Admission::Accept;
        }
        match self.args.overflow {
            Overflow::Block => Admission::Block,
            _ => Admission::Reject,
        }
    }

    /// Signalled when a blocked queue gets room (or is deleted) while a
    /// publish is counted by [`Queue::blocker`].
    pub fn room_signal(&self) -> &Notify {
        &self.room_signal
    }

    /// Counts a held publish while the guard lives.
    pub fn blocker(self: &Arc<Self>) -> Blocker {
        self.state.lock().blocked += 1;
        Blocker(self.clone())
    }

    /// Claims `id` in the de-duplication window: false when it is a
    /// duplicate. Also returns the ids whose window ended (to remove from
    /// the store with the next write).
    pub fn dedup_claim(&self, id: &str, now: u64) -> (bool, Vec<String>) {
        let Some(window) = self.args.dedup_window_ms else {
            return (true, Vec::new());
        };
        let mut s = self.state.lock();
        let mut ended = Vec::new();
        while s.dedup_order.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((t, old)) = s.dedup_order.pop_front() {
                if s.dedup.get(&old) == Some(&t) {
                    s.dedup.remove(&old);
                    ended.push(old);
                }
            }
        }
        if s.dedup.get(id).is_some_and(|t| *t > now) {
            return (false, ended);
        }
        let until = now.saturating_add(window);
        s.dedup.insert(id.to_string(), until);
        s.dedup_order.push_back((until, id.to_string()));
        (true, ended)
    }

    /// The end of `id`'s de-duplication window, if it is in one.
    pub fn dedup_until(&self, id: &str) -> Option<u64> {
        self.state.lock().dedup.get(id).copied()
    }

    /// Restores de-duplication records found in the store.
    pub fn restore_dedup(&self, mut entries: Vec<DedupEntry>) {
        entries.sort_by_key(|e| e.expires_at);
        let mut s = self.state.lock();
        for e in entries {
            s.dedup.insert(e.id.clone(), e.expires_at);
            s.dedup_order.push_back((e.expires_at, e.id));
        }
    }

    /// Adds a copy (ready, or delayed until its `not_before`), applies
    /// `overflow=drop-head`, and dispatches. A copy for a deleted queue is
    /// released instead. Returns the generation of any store write it caused.
    pub fn enqueue(self: &Arc<Self>, entry: Entry) -> Result<Option<u64>, BrokerError> {
        if self.stream.is_some() {
            return self.stream_append(entry);
        }
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            drop(s);
            return self.release(vec![entry]);
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        if self.pages && entry.stored && self.to_tail(&s, &entry) {
            self.disk.bodies.register(&entry.msg);
            s.tail.push(entry.seq, entry.msg.body.len() as u64);
        } else {
            s.insert_waiting(entry, &now);
        }
        // A consumer with room takes it first: the limit is on what waits.
        self.dispatch_and_wake(&mut s, &now);
        if self.args.overflow == Overflow::DropHead {
            while self.over_limit(&s, 0, 0) {
                let Some(head) = self.pop_head(&mut s, &now) else {
                    break;
                };
                s.dead.push((head, DeathReason::MaxLen));
            }
        }
        self.reschedule(&mut s);
        self.finish(s)
    }

    /// Takes over the copies found in the store at start: all of them in
    /// the tail, then read back up to the RAM budget (so that their TTLs
    /// and delays run). `crashed`: the last stop was not clean.
    pub fn restore(self: &Arc<Self>, stored: &StoredQueue, crashed: bool) {
        if self.stream.is_some() {
            return self.stream_restore(stored);
        }
        let now = Now::default();
        let mut s = self.state.lock();
        if stored.count > 0 {
            let end = stored.last_seq.saturating_add(1);
            s.tail.ranges.insert(stored.first_seq, end);
            s.tail.count = stored.count;
            s.tail.bytes = stored.bytes;
            if crashed {
                s.crash_below = end;
            }
        }
        while !s.tail.is_empty() && s.ram_bytes() < self.window {
            if !self.page_in(&mut s, &now) {
                break;
            }
        }
        self.reschedule(&mut s);
        self.update_spill(&s);
    }

    /// Adds a subscription and starts delivering to it.
    pub fn subscribe(self: &Arc<Self>, consumer: Consumer) -> Result<(), BrokerError> {
        if self.stream.is_some() {
            return self.stream_subscribe(consumer, None, None);
        }
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            return Err(BrokerError::NotFound(format!(
                "queue {} was deleted",
                self.name
            )));
        }
        if s.consumers.iter().any(|c| c.exclusive) {
            return Err(BrokerError::Locked(format!(
                "queue {} has an exclusive consumer",
                self.name
            )));
        }
        if consumer.exclusive && !s.consumers.is_empty() {
            return Err(BrokerError::Locked(format!(
                "queue {} already has consumers; exclusive needs it to have none",
                self.name
            )));
        }
        s.consumers.push(consumer);
        s.last_used = now.get();
        if self.args.mode == QueueMode::SingleActive && s.get_waiters > 0 {
            // A waiting GET ends now: refused (see `take`).
            self.ready_signal.notify_waiters();
        }
        self.promote(&mut s);
        self.dispatch(&mut s, &now);
        self.finish(s)?;
        Ok(())
    }

    /// Removes a subscription. Returns true when that left an auto-delete
    /// queue without subscriptions (the caller deletes it).
    pub fn unsubscribe(self: &Arc<Self>, consumer_id: u64) -> bool {
        if self.stream.is_some() {
            self.stream_unsubscribe(consumer_id);
            return false;
        }
        let mut s = self.state.lock();
        let before = s.consumers.len();
        s.consumers.retain(|c| c.id != consumer_id);
        let removed = s.consumers.len() < before;
        if s.rr >= s.consumers.len() {
            s.rr = 0;
        }
        if removed && s.consumers.is_empty() {
            s.last_used = now_ms();
            self.reschedule(&mut s);
        }
        let emptied = removed && self.auto_delete && s.consumers.is_empty() && !s.deleted;
        if s.active == Some(consumer_id) {
            // The next subscription takes over, once the departed one's
            // deliveries are settled (see `promote`).
            s.active = None;
            let now = Now::default();
            self.promote(&mut s);
            self.dispatch(&mut s, &now);
            self.reschedule(&mut s);
            if let Err(e) = self.finish(s) {
                tracing::warn!(queue = %self.name, error = %e, "dead-lettering failed");
            }
        }
        emptied
    }

    /// Takes up to `count` ready copies for a `GET` by connection `conn`
    /// (they count as unacked until settled; with `auto_ack` the caller
    /// settles them at once). On a `groups` queue they are the copies that
    /// connection may take, and their groups are its own until settled.
    /// `PRECONDITION` on a `single-active` queue that has subscriptions.
    pub fn take(self: &Arc<Self>, count: u32, conn: u64) -> Result<Vec<Entry>, BrokerError> {
        if self.stream.is_some() {
            return Ok(Vec::new());
        }
        let now = Now::default();
        let mut s = self.state.lock();
        if self.args.mode == QueueMode::SingleActive && !s.consumers.is_empty() {
            return Err(BrokerError::Precondition(format!(
                "queue {} is single-active and has subscriptions: only its active subscription receives",
                self.name
            )));
        }
        if self.args.expires_ms.is_some() {
            s.last_used = now.get();
        }
        let mut out = Vec::new();
        while out.len() < count as usize {
            let Some(mut e) = self.next_delivery(&mut s, &now, Owner::Get(conn)) else {
                break;
            };
            e.deliveries += 1;
            s.unacked += 1;
            out.push(e);
        }
        self.delivered(out.len() as u64);
        self.reschedule(&mut s);
        if let Err(e) = self.finish(s) {
            tracing::warn!(queue = %self.name, error = %e, "dead-lettering failed");
        }
        Ok(out)
    }

    /// Whether a `GET` by connection `conn` would end now: a copy it may
    /// take is ready (or paged out, to be read back), the queue was
    /// deleted, or the `GET` is refused (a `single-active` queue with
    /// subscriptions). What a waiting `GET` checks before it sleeps.
    pub fn can_take(&self, conn: u64) -> bool {
        let s = self.state.lock();
        if s.deleted || (self.args.mode == QueueMode::SingleActive && !s.consumers.is_empty()) {
            return true;
        }
        match s.groups.as_deref() {
            None => s.has_ready(),
            Some(g) => g.next_for(Owner::Get(conn)).is_some() || s.may_read_on(self.window),
        }
    }

    /// Copies of up to `count` waiting messages from position `from` on,
    /// in position order, without taking them.
    pub fn peek(&self, count: u32, from: Option<u64>) -> Vec<Entry> {
        if let Some(st) = self.stream_state() {
            return self.stream_peek(&st, count, from);
        }
        let from = from.unwrap_or(0);
        let s = self.state.lock();
        let mut all: Vec<Entry> = s
            .ready
            .values()
            .chain(s.delayed.values())
            .filter(|e| e.seq >= from)
            .cloned()
            .collect();
        // The tail's first `count` copies from `from` on (read, not taken).
        let mut want = count as usize;
        for (&start, &end) in s.tail.ranges.range(..) {
            if want == 0 {
                break;
            }
            if end <= from {
                continue;
            }
            match self.disk.load(self.id, start.max(from), end, want) {
                Ok(found) => {
                    want -= found.len().min(want);
                    all.extend(found.iter().map(|m| {
                        Entry::from_stored(
                            m,
                            Arc::new(Message::read_only(m)),
                            m.seq < s.crash_below,
                        )
                    }));
                }
                Err(e) => {
                    tracing::warn!(queue = %self.name, error = %e, "could not read the paged-out messages");
                    break;
                }
            }
        }
        all.sort_by_key(|e| e.seq);
        all.truncate(count as usize);
        all
    }

    /// Takes up to `count` ready copies off the head for `REDRIVE` (not
    /// deliveries: no count, no unacked).
    pub fn take_for_redrive(self: &Arc<Self>, count: u64) -> Vec<Entry> {
        if self.stream.is_some() {
            return Vec::new();
        }
        let now = Now::default();
        let mut s = self.state.lock();
        let mut out = Vec::new();
        while (out.len() as u64) < count {
            match self.next_ready(&mut s, &now) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        self.update_spill(&s);
        drop(s);
        self.signal_room();
        out
    }

    /// Puts back copies taken by [`Queue::take_for_redrive`] and kept.
    pub fn put_back(self: &Arc<Self>, entries: Vec<Entry>) {
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            drop(s);
            if let Err(e) = self.release(entries) {
                tracing::warn!(queue = %self.name, error = %e, "release failed");
            }
            return;
        }
        for e in entries {
            s.insert_ready(e);
        }
        self.dispatch_and_wake(&mut s, &now);
        self.reschedule(&mut s);
        if let Err(e) = self.finish(s) {
            tracing::warn!(queue = %self.name, error = %e, "dead-lettering failed");
        }
    }

    /// Signalled when a message becomes ready (or the queue is deleted)
    /// while a `GET wait=` is counted by [`Queue::waiter`]. Enable a
    /// `notified()` future before calling [`Queue::take`] so no wake-up is lost.
    pub fn ready_signal(&self) -> &Notify {
        &self.ready_signal
    }

    /// Counts a waiting `GET` while the guard lives, so that enqueue knows
    /// to wake it.
    pub fn waiter(self: &Arc<Self>) -> GetWaiter {
        self.state.lock().get_waiters += 1;
        GetWaiter(self.clone())
    }

    /// Settles one delivered copy: ack, requeue, dead-letter. Gives the
    /// credit back to `consumer_id` (a subscription) and dispatches. Returns
    /// the store generation to wait for when the store changed.
    pub fn settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        mut entry: Entry,
        how: Settle,
    ) -> Result<Option<u64>, BrokerError> {
        if self.stream.is_some() {
            return self.stream_settle(consumer_id, &entry, how);
        }
        let now = Now::default();
        let mut gen = None;
        // Decide, and write a requeued copy's new state, before the copy is
        // visible again: no one else can touch it meanwhile.
        let outcome = match how {
            Settle::Ack => None,
            Settle::Reject => Some(DeathReason::Rejected),
            Settle::Return { redelivered } => {
                entry.redelivered = redelivered;
                None
            }
            Settle::Requeue { .. } | Settle::Timeout => {
                if self.limit_reached(&entry) {
                    Some(DeathReason::DeliveryLimit)
                } else {
                    entry.redelivered = true;
                    let delay = match how {
                        Settle::Requeue { delay_ms: Some(d) } => Some(d),
                        _ => self.retry_delay(entry.deliveries),
                    };
                    entry.not_before = delay
                        .filter(|d| *d > 0)
                        .map(|d| now.get().saturating_add(d));
                    if entry.stored
                        && (entry.not_before.is_some() || self.args.delivery_limit.is_some())
                    {
                        gen = self.rewrite(&entry)?;
                    }
                    None
                }
            }
        };
        let keep = matches!(
            how,
            Settle::Requeue { .. } | Settle::Timeout | Settle::Return { .. }
        ) && outcome.is_none();
        match how {
            Settle::Ack => {
                self.counters.acked.fetch_add(1, Ordering::Relaxed);
                self.totals.acked.fetch_add(1, Ordering::Relaxed);
            }
            Settle::Requeue { .. } | Settle::Timeout if keep => {
                self.counters.requeued.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let mut s = self.state.lock();
        s.unacked = s.unacked.saturating_sub(1);
        if let Some(id) = consumer_id {
            if let Some(c) = s.consumers.iter_mut().find(|c| c.id == id) {
                c.credit += 1;
            }
        }
        if let Some(g) = s.groups.as_deref_mut() {
            g.settled(entry.msg.group.as_ref());
        }
        let mut released = None;
        if s.deleted || !(keep || outcome.is_some()) {
            released = Some(entry);
        } else if let Some(reason) = outcome {
            s.dead.push((entry, reason));
        } else if entry.expired(&now) {
            s.dead.push((entry, DeathReason::Expired));
        } else {
            s.insert_waiting(entry, &now);
        }
        self.promote(&mut s);
        self.dispatch_and_wake(&mut s, &now);
        self.reschedule(&mut s);
        gen = self.finish(s)?.max(gen);
        if let Some(e) = released {
            gen = self.release(vec![e])?.max(gen);
        }
        Ok(gen)
    }

    /// Removes every waiting copy. Returns how many.
    pub fn purge(&self) -> Result<(u64, Option<u64>), BrokerError> {
        if self.stream.is_some() {
            return Err(BrokerError::Precondition(format!(
                "{} is a stream: it is trimmed by max-age/max-bytes, not purged",
                self.name
            )));
        }
        let (taken, tail) = {
            let mut s = self.state.lock();
            let out = (s.take_all(), std::mem::take(&mut s.tail));
            self.update_spill(&s);
            out
        };
        self.signal_room();
        let n = taken.len() as u64 + tail.count;
        let gen = self.release(taken)?;
        Ok((n, self.drop_tail(tail)?.max(gen)))
    }

    /// Removes the copies of a tail taken off the queue from the store,
    /// a page at a time (and their bodies with their last reference).
    pub fn drop_tail(&self, mut tail: Tail) -> Result<Option<u64>, BrokerError> {
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

    /// Marks the queue deleted: cancels its subscriptions (each gets a
    /// notice), wakes waiting `GET`s and held publishes, and returns its
    /// waiting copies and its tail for release.
    pub fn mark_deleted(&self) -> (Vec<Entry>, Tail) {
        if let Some(mut st) = self.stream_state() {
            self.stream_mark_deleted(&mut st);
            return (Vec::new(), Tail::default());
        }
        let mut s = self.state.lock();
        s.deleted = true;
        for c in s.consumers.drain(..) {
            let _ = c.tx.send(Push::Cancelled { tag: c.tag });
        }
        let out = s.take_all();
        let tail = std::mem::take(&mut s.tail);
        self.update_spill(&s);
        self.ready_signal.notify_waiters();
        self.room_signal.notify_waiters();
        (out, tail)
    }

    /// Removes copies from the store (and their bodies with the last
    /// reference). Returns the generation to wait for, if anything was stored.
    pub fn release(&self, entries: Vec<Entry>) -> Result<Option<u64>, BrokerError> {
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
    pub fn add_removals(&self, entries: &[Entry], batch: &mut MessageBatch<'_>) {
        for e in entries {
            if e.stored {
                batch.del_metas.push((self.id, e.seq));
                if e.msg.release_stored() {
                    batch.del_bodies.push((e.msg.body_id, e.msg.body.len()));
                }
            }
        }
    }

    /// Writes the delivery counts of delivered-but-requeued copies, so that a
    /// clean restart still flags them `redelivered`.
    /// `clean`: the store is marked cleanly shut down. When it is not, the
    /// next start adds its crash delivery again, so the one added after the
    /// last crash (`uncertain`) is not saved: it is not counted twice.
    pub fn persist_delivery_counts(&self, clean: bool) -> Result<(), BrokerError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let copies: Vec<Entry> = {
            let s = self.state.lock();
            s.ready
                .values()
                .chain(s.delayed.values())
                .filter(|e| e.stored && e.deliveries > 0)
                .cloned()
                .map(|mut e| {
                    if e.uncertain && !clean {
                        e.deliveries -= 1;
                    }
                    e
                })
                .collect()
        };
        for e in &copies {
            self.rewrite(e)?;
        }
        Ok(())
    }

    /// The timer fired: promotes due delayed copies, expires copies whose
    /// TTL passed, deletes the queue if it has been unused past `expires`,
    /// and registers the next deadline.
    pub fn on_timer(self: &Arc<Self>, now: u64) {
        if self.stream.is_some() {
            return self.stream_timer(now);
        }
        let clock = Now::at(now);
        let mut s = self.state.lock();
        s.timer_at = None;
        if s.deleted {
            return;
        }
        while let Some((&(due, seq), _)) = s.delayed.first_key_value() {
            if due >= now {
                break;
            }
            let Some(mut e) = s.delayed.remove(&(due, seq)) else {
                break;
            };
            s.bytes -= e.msg.body.len() as u64;
            e.not_before = None;
            if e.expired(&clock) {
                s.left_waiting(&e);
                s.dead.push((e, DeathReason::Expired));
            } else {
                s.insert_ready(e);
            }
        }
        while let Some(&(at, key)) = s.expiry.first() {
            if at >= now {
                break;
            }
            s.expiry.pop_first();
            if let Some(e) = s.ready.remove(&key) {
                s.bytes -= e.msg.body.len() as u64;
                s.left_waiting(&e);
                s.dead.push((e, DeathReason::Expired));
            }
        }
        // Read the next page of the tail while the head runs low, so that
        // the expiry of paged-out copies goes on without consumers.
        if s.reads_ahead(self.window) {
            self.page_in(&mut s, &clock);
        }
        let idle = self.idle_deadline(&s).is_some_and(|t| t < now);
        self.dispatch_and_wake(&mut s, &clock);
        if !idle {
            self.reschedule(&mut s);
        }
        if let Err(e) = self.finish(s) {
            tracing::warn!(queue = %self.name, error = %e, "dead-lettering failed");
        }
        if idle {
            if let Some(inner) = self.broker.upgrade() {
                tracing::info!(queue = %self.name, "queue unused past its expires; deleting");
                if let Err(e) = (Broker { inner }).delete_queue_now(self) {
                    tracing::warn!(queue = %self.name, error = %e, "could not delete an expired queue");
                }
            }
        }
    }

    /// The delay before a requeue by the queue's `retry-delays` ladder.
    fn retry_delay(&self, deliveries: u32) -> Option<u64> {
        let ladder = &self.args.retry_delays_ms;
        let last = ladder.len().checked_sub(1)?;
        let step = (deliveries.max(1) as usize - 1).min(last);
        ladder.get(step).copied()
    }

    fn limit_reached(&self, e: &Entry) -> bool {
        let counted = e.deliveries - u32::from(e.uncertain && e.deliveries > 0);
        self.args
            .delivery_limit
            .is_some_and(|limit| counted >= limit)
    }

    /// Why a copy about to be delivered must be dead-lettered instead.
    fn undeliverable(&self, e: &Entry, now: &Now) -> Option<DeathReason> {
        if e.expired(now) {
            Some(DeathReason::Expired)
        } else if self.limit_reached(e) {
            Some(DeathReason::DeliveryLimit)
        } else {
            None
        }
    }

    fn over_limit(&self, s: &State, extra: u64, extra_bytes: u64) -> bool {
        self.args
            .max_length
            .is_some_and(|max| s.waiting() + extra > max)
            || self
                .args
                .max_bytes
                .is_some_and(|max| s.bytes + s.tail.bytes + extra_bytes > max)
    }

    /// Whether a new stored copy goes to the tail rather than RAM: after a
    /// tail's first position (so that order holds), or past the window
    /// (a transient copy is stored only once RAM is full, past the window).
    fn to_tail(&self, s: &State, e: &Entry) -> bool {
        match s.tail.head() {
            Some(head) => e.seq >= head,
            None => s.ram_bytes() >= self.window,
        }
    }

    fn update_spill(&self, s: &State) {
        let on =
            self.pages && !s.deleted && (!s.tail.is_empty() || s.ram_bytes() >= self.ram_budget);
        self.spilling.store(on, Ordering::Relaxed);
    }

    /// Reads up to a page of the tail back into RAM, in order. False when
    /// nothing was read (the tail is empty, or the store failed: logged,
    /// and the copies stay where they are).
    fn page_in(self: &Arc<Self>, s: &mut State, now: &Now) -> bool {
        let page = match s
            .tail
            .read(|from, to, n| self.disk.load(self.id, from, to, n), PAGE)
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "could not read paged-out messages back");
                return false;
            }
        };
        for m in &page {
            let e = Entry::from_stored(m, self.disk.bodies.adopt(m), m.seq < s.crash_below);
            s.insert_waiting(e, now);
        }
        !page.is_empty()
    }

    /// The next ready copy, reading the tail back first when the head in
    /// RAM runs low (or would overtake the tail).
    fn next_ready(self: &Arc<Self>, s: &mut State, now: &Now) -> Option<Entry> {
        while let Some(head) = s.tail.head() {
            let blocked = s
                .ready
                .first_key_value()
                .is_none_or(|((_, seq), _)| *seq >= head);
            let low = s.reads_ahead(self.window);
            if !blocked && !low {
                break;
            }
            if !self.page_in(s, now) {
                if blocked && !s.tail.is_empty() {
                    return None;
                }
                break;
            }
            if !blocked {
                break;
            }
        }
        s.pop_ready()
    }

    /// The oldest waiting copy: the ready head, else the first delayed.
    fn pop_head(self: &Arc<Self>, s: &mut State, now: &Now) -> Option<Entry> {
        if let Some(e) = self.next_ready(s, now) {
            return Some(e);
        }
        let (_, e) = s.delayed.pop_first()?;
        s.bytes -= e.msg.body.len() as u64;
        s.left_waiting(&e);
        Some(e)
    }

    fn idle_deadline(&self, s: &State) -> Option<u64> {
        let expires = self.args.expires_ms?;
        (s.consumers.is_empty() && s.get_waiters == 0).then(|| s.last_used.saturating_add(expires))
    }

    /// Registers the earliest deadline with the timers if it is earlier
    /// than the one registered. Deadlines name the last millisecond before
    /// the event (see [`Entry::expired`]), so the timer is set just past it.
    fn reschedule(self: &Arc<Self>, s: &mut State) {
        let next = [
            s.delayed.first_key_value().map(|(k, _)| k.0),
            s.expiry.first().map(|k| k.0),
            self.idle_deadline(s),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_add(1));
        if let Some(at) = next {
            if s.timer_at.is_none_or(|t| at < t) {
                s.timer_at = Some(at);
                self.timers.schedule(at, self);
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

    /// Ends a critical section: wakes held publishes if there is room now,
    /// releases the lock, then routes the dead letters collected under it.
    fn finish(self: &Arc<Self>, mut s: MutexGuard<'_, State>) -> Result<Option<u64>, BrokerError> {
        self.update_spill(&s);
        if s.blocked > 0 && !self.over_limit(&s, 1, 0) {
            self.room_signal.notify_waiters();
        }
        let dead = std::mem::take(&mut s.dead);
        drop(s);
        if dead.is_empty() {
            return Ok(None);
        }
        for (_, reason) in &dead {
            self.counters.died(*reason);
        }
        match self.broker.upgrade() {
            Some(inner) => Broker { inner }.dead_letter(self, dead),
            None => self.release(dead.into_iter().map(|(e, _)| e).collect()),
        }
    }

    /// Counts `n` deliveries, here and broker-wide.
    fn delivered(&self, n: u64) {
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
        self.totals.delivered.fetch_add(n, Ordering::Relaxed);
    }

    fn signal_room(&self) {
        let s = self.state.lock();
        if s.blocked > 0 && !self.over_limit(&s, 1, 0) {
            self.room_signal.notify_waiters();
        }
    }

    /// Dispatches to subscriptions, then wakes waiting `GET`s if anything
    /// is still ready.
    fn dispatch_and_wake(self: &Arc<Self>, s: &mut State, now: &Now) {
        self.dispatch(s, now);
        if s.get_waiters > 0 && s.has_ready() {
            self.ready_signal.notify_waiters();
        }
    }

    fn dispatch(self: &Arc<Self>, s: &mut State, now: &Now) {
        while s.has_ready() && !s.consumers.is_empty() {
            let n = s.consumers.len();
            let Some(idx) = self.pick_consumer(s, now) else {
                return;
            };
            let dead = s.dead.len();
            let Some(mut entry) = self.next_delivery(s, now, Owner::Sub(s.consumers[idx].id))
            else {
                // On a groups queue the copies it found may have been
                // dead-lettered: another subscription may have some still.
                if s.dead.len() > dead {
                    continue;
                }
                return;
            };
            entry.deliveries += 1;
            let c = &mut s.consumers[idx];
            let delivery = Delivery {
                queue: self.clone(),
                consumer_id: c.id,
                tag: c.tag.clone(),
                auto_ack: c.auto_ack,
                entry,
            };
            match c.tx.send(Push::Deliver(delivery)) {
                Ok(()) => {
                    c.credit -= 1;
                    s.unacked += 1;
                    s.rr = (idx + 1) % n;
                    self.delivered(1);
                }
                Err(mpsc::error::SendError(push)) => {
                    // The connection is gone: drop the subscription, keep the message.
                    let gone = s.consumers.remove(idx);
                    s.rr = 0;
                    if let Push::Deliver(mut d) = push {
                        d.entry.deliveries -= 1;
                        if let Some(g) = s.groups.as_deref_mut() {
                            g.settled(d.entry.msg.group.as_ref());
                        }
                        s.insert_ready(d.entry);
                    }
                    if s.active == Some(gone.id) {
                        s.active = None;
                        self.promote(s);
                    }
                }
            }
        }
    }

    /// The subscription the next delivery goes to: the next one with
    /// credit, round-robin; on a `single-active` queue only the active one;
    /// on a `groups` queue the next one with credit that may take a ready
    /// copy (one of a free group, of a group it owns, or without a group).
    fn pick_consumer(self: &Arc<Self>, s: &mut State, now: &Now) -> Option<usize> {
        let n = s.consumers.len();
        if self.args.mode == QueueMode::SingleActive {
            // The active subscription is always the first (see `promote`).
            let first = s.consumers.first()?;
            return (s.active == Some(first.id) && first.credit > 0).then_some(0);
        }
        if s.groups.is_some() {
            for i in 0..n {
                let idx = (s.rr + i) % n;
                let c = &s.consumers[idx];
                if c.credit > 0 && self.next_grouped(s, now, Owner::Sub(c.id)).is_some() {
                    return Some(idx);
                }
            }
            return None;
        }
        (0..n)
            .map(|i| (s.rr + i) % n)
            .find(|&i| s.consumers[i].credit > 0)
    }

    /// Takes the next copy to deliver to `owner` off the queue: the ready
    /// head, or on a `groups` queue the first copy that owner may take
    /// (which counts as delivered to it in the group index). Copies found
    /// expired or at their delivery limit are dead-lettered on the way.
    fn next_delivery(self: &Arc<Self>, s: &mut State, now: &Now, owner: Owner) -> Option<Entry> {
        loop {
            if s.groups.is_none() {
                let e = self.next_ready(s, now)?;
                match self.undeliverable(&e, now) {
                    Some(reason) => s.dead.push((e, reason)),
                    None => return Some(e),
                }
                continue;
            }
            let key = self.next_grouped(s, now, owner)?;
            let reason = s.ready.get(&key).and_then(|e| self.undeliverable(e, now));
            let e = s.take_ready(key, reason.is_none().then_some(owner))?;
            match reason {
                Some(reason) => s.dead.push((e, reason)),
                None => return Some(e),
            }
        }
    }

    /// On a `groups` queue: the key of the first ready copy `owner` may
    /// take. The tail is read back while the head in RAM runs low, as on
    /// any queue, and also when RAM holds nothing for `owner`, as long as
    /// the read-ahead window (`STORED_WINDOW`, or the RAM budget if
    /// smaller) has room, or nothing at all is ready in RAM. So a backlog
    /// that fills the window while it cannot go (its groups owned by
    /// subscriptions without credit, or held back by a delayed copy) holds
    /// back the copies behind it on disk until it moves; RAM stays bounded.
    fn next_grouped(self: &Arc<Self>, s: &mut State, now: &Now, owner: Owner) -> Option<ReadyKey> {
        if s.reads_ahead(self.window) {
            self.page_in(s, now);
        }
        loop {
            if let Some(key) = s.groups.as_deref().and_then(|g| g.next_for(owner)) {
                return Some(key);
            }
            if !s.may_read_on(self.window) || !self.page_in(s, now) {
                return None;
            }
        }
    }

    /// `single-active`: once no delivery of the queue is outstanding, makes
    /// the earliest subscription still present the active one and tells it
    /// (`NOTICE active`). Waiting for every outstanding delivery (the
    /// departed active subscription's, or those of `GET`s taken before
    /// anyone subscribed) is what keeps the queue's order across a
    /// handover: they are settled, or back at their positions, first.
    fn promote(&self, s: &mut State) {
        if self.args.mode != QueueMode::SingleActive || s.active.is_some() || s.unacked > 0 {
            return;
        }
        while let Some(c) = s.consumers.first() {
            let notice = Notice::Active {
                tag: c.tag.to_string(),
                partition: None,
            };
            if c.tx.send(Push::Notice(notice)).is_ok() {
                s.active = Some(c.id);
                return;
            }
            // Its connection is gone (its session drops it too).
            s.consumers.remove(0);
        }
    }
}

impl State {
    /// Messages waiting: ready and delayed, in RAM or paged out.
    fn waiting(&self) -> u64 {
        (self.ready.len() + self.delayed.len()) as u64 + self.tail.count
    }

    /// Whether a copy is ready, or paged out (and may be).
    fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.tail.is_empty()
    }

    /// Whether the next page of the tail is due: the head in RAM runs low
    /// and the read-ahead `window` has room.
    fn reads_ahead(&self, window: u64) -> bool {
        !self.tail.is_empty() && self.ready.len() < LOW_WATER && self.ram_bytes() < window
    }

    /// On a `groups` queue with nothing in RAM for some consumer: whether
    /// the tail may be read further, looking for a copy it may take (the
    /// read-ahead `window` has room, or nothing at all is ready in RAM).
    fn may_read_on(&self, window: u64) -> bool {
        !self.tail.is_empty() && (self.ram_bytes() < window || self.ready.is_empty())
    }

    /// What the waiting copies in RAM cost, for the RAM budget.
    fn ram_bytes(&self) -> u64 {
        self.bytes + (self.ready.len() + self.delayed.len()) as u64 * ENTRY_OVERHEAD
    }

    fn insert_waiting(&mut self, entry: Entry, now: &Now) {
        match entry.not_before {
            Some(due) if due >= now.get() => {
                self.bytes += entry.msg.body.len() as u64;
                if let Some(g) = self.groups.as_deref_mut() {
                    g.waiting(entry.msg.group.as_ref(), ready_key(&entry), false);
                }
                self.delayed.insert((due, entry.seq), entry);
            }
            _ => self.insert_ready(entry),
        }
    }

    fn insert_ready(&mut self, entry: Entry) {
        self.bytes += entry.msg.body.len() as u64;
        let key = ready_key(&entry);
        if let Some(at) = entry.expires_at {
            self.expiry.insert((at, key));
        }
        if let Some(g) = self.groups.as_deref_mut() {
            g.waiting(entry.msg.group.as_ref(), key, true);
        }
        self.ready.insert(key, entry);
    }

    fn pop_ready(&mut self) -> Option<Entry> {
        let (key, e) = self.ready.pop_first()?;
        self.forget_ready(key, &e, None);
        Some(e)
    }

    /// Takes the ready copy at `key`; `to`: for delivery to this owner.
    fn take_ready(&mut self, key: ReadyKey, to: Option<Owner>) -> Option<Entry> {
        let e = self.ready.remove(&key)?;
        self.forget_ready(key, &e, to);
        Some(e)
    }

    /// Accounts for a ready copy taken out of `ready`.
    fn forget_ready(&mut self, key: ReadyKey, e: &Entry, to: Option<Owner>) {
        self.bytes -= e.msg.body.len() as u64;
        if let Some(at) = e.expires_at {
            self.expiry.remove(&(at, key));
        }
        if let Some(g) = self.groups.as_deref_mut() {
            g.left(e.msg.group.as_ref(), key, to);
        }
    }

    /// Tells the group index that a waiting copy (delayed, or ready and
    /// already out of the expiry index) left without being delivered.
    fn left_waiting(&mut self, e: &Entry) {
        if let Some(g) = self.groups.as_deref_mut() {
            g.left(e.msg.group.as_ref(), ready_key(e), None);
        }
    }

    fn take_all(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        self.expiry.clear();
        if let Some(g) = self.groups.as_deref_mut() {
            g.clear_waiting();
        }
        let mut out: Vec<Entry> = std::mem::take(&mut self.ready).into_values().collect();
        out.extend(std::mem::take(&mut self.delayed).into_values());
        out
    }
}

/// A waiting `GET`, counted while it lives.
#[derive(Debug)]
pub struct GetWaiter(Arc<Queue>);

impl Drop for GetWaiter {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.get_waiters = s.get_waiters.saturating_sub(1);
    }
}

/// A held publish, counted while it lives.
#[derive(Debug)]
pub struct Blocker(Arc<Queue>);

impl Drop for Blocker {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.blocked = s.blocked.saturating_sub(1);
    }
}
