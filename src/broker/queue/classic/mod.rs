//! [`Classic`]: the kind of queue that hands each copy to one consumer and
//! forgets it once settled (`single-active` and `groups` are modes of it).
//! It owns the queue's [`State`] behind one lock, and every operation on
//! it: enqueue (with `overflow=drop-head`), subscriptions, `GET`, settling,
//! purge, `PEEK`, `REDRIVE`'s take and put back, de-duplication and the
//! timer (delays, TTLs, `expires`). The delivery loop is in `dispatch.rs`,
//! paging to the store in `paging.rs`, the index of waiting copies in
//! `state.rs`, the group index of a `groups` queue in `groups.rs`.
//!
//! **Delivery.** A subscription holds `credit` (its prefetch room). Dispatch
//! hands the head message to the next subscription with credit, round-robin,
//! by sending a [`Push::Deliver`] into that connection's push channel; the
//! channel is unbounded but cannot grow past the sum of its subscriptions'
//! prefetch (plus one cancel notice each), because credit is taken before
//! the send and only given back on `ACK`/`NACK` (or, for `ack=auto`, once
//! the delivery is written to the socket). A message whose TTL has passed
//! or that has used up its `delivery-limit` is dead-lettered instead. With
//! `prefetch-bytes=`, a subscription's credit is also a byte budget
//! ([`Consumer::has_room_for`]): a head that does not fit goes back to its
//! place and the next subscription is offered it.
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
//! (`groups.rs`) lists only each group's first waiting copy, when it
//! is ready (a delayed first copy, such as a `NACK delay=` requeue, holds
//! its group back), as free or under its owner; copies without a group are
//! free when ready. Dispatch offers the next subscription with credit,
//! round-robin, the smaller of the first free key and the first key of
//! the groups it owns: O(log n) a delivery, with no scan of the ready set,
//! however long one group's backlog is.
//!
//! **Time.** Deadlines are Unix milliseconds (they are stored). The queue
//! registers only its earliest deadline with the broker's
//! [`Timers`](crate::broker::timer::Timers).
//!
//! **Paging.** A queue on disk keeps only its RAM budget of waiting
//! copies in RAM; the rest wait in the store, in its *tail*
//! (`paging.rs`).

mod dispatch;
mod groups;
mod paging;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::{
    Admission, Consumer, ConsumerInfo, Dead, DeathReason, Planned, Push, Queue, QueueStats, Settle,
    Tail, Timed,
};
use crate::broker::message::{now_ms, Entry, Message, Now};
use crate::broker::Disk;
use crate::error::BrokerError;
use crate::protocol::command::{Overflow, QueueArgs, QueueMode};
use crate::store::{DedupEntry, StoredQueue};
use groups::Owner;
use state::{RamBytes, State};

/// RAM a queue uses for stored copies (which are on disk anyway) before
/// it leaves the rest of them there: the read-ahead window.
const STORED_WINDOW: u64 = 8 * 1024 * 1024;

/// What a purge removed.
#[derive(Debug, Default)]
pub(crate) struct Purged {
    /// How many messages.
    pub(crate) count: u64,
    /// The store generation that makes it durable.
    pub(crate) gen: Option<u64>,
    /// Their positions (those paged out included).
    pub(crate) seqs: Vec<u64>,
}

/// Ready messages are ordered by priority (highest first), then position.
type ReadyKey = (u8, u64);

fn ready_key(e: &Entry) -> ReadyKey {
    (u8::MAX - e.priority, e.seq)
}

/// A classic queue's state and paging settings (see the module docs).
#[derive(Debug)]
pub(super) struct Classic {
    state: Mutex<State>,
    /// Pages its backlog out to the store: stored copies past `window`,
    /// transient ones past `ram_budget`.
    pages: bool,
    ram_budget: u64,
    window: u64,
    /// What the budget counts, every queue together.
    ram_used: Arc<AtomicU64>,
    /// New copies go to the store (see [`Queue::spilling`]).
    spilling: AtomicBool,
}

impl Classic {
    /// An empty queue with `args`, paging to `disk` if it keeps messages.
    pub(super) fn new(args: &QueueArgs, disk: &Disk) -> Classic {
        let state = State {
            last_used: now_ms(),
            groups: (args.mode == QueueMode::Groups).then(Box::default),
            bytes: RamBytes::counted_in(disk.ram_used.clone()),
            ..State::default()
        };
        let ram_budget = disk.ram_budget.unwrap_or(u64::MAX);
        Classic {
            state: Mutex::new(state),
            pages: disk.ram_budget.is_some() && args.max_priority.is_none(),
            ram_budget,
            window: ram_budget.min(STORED_WINDOW),
            ram_used: disk.ram_used.clone(),
            spilling: AtomicBool::new(false),
        }
    }

    /// See [`Queue::stats`].
    pub(super) fn stats(&self) -> QueueStats {
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

    pub(super) fn consumer_list(&self) -> Vec<ConsumerInfo> {
        let s = self.state.lock();
        s.consumers.iter().map(|c| c.info(c.exclusive)).collect()
    }

    pub(super) fn spilling(&self) -> bool {
        self.spilling.load(Ordering::Relaxed) || (self.pages && self.over_budget())
    }

    /// Whether the waiting copies in RAM of every queue together have
    /// reached the broker-wide budget: new copies then go to the store.
    pub(super) fn over_budget(&self) -> bool {
        self.ram_used.load(Ordering::Relaxed) >= self.ram_budget
    }

    pub(super) fn crash_flags_pending(&self) -> bool {
        let s = self.state.lock();
        s.tail.head().is_some_and(|h| h < s.crash_below)
    }

    pub(super) fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    pub(super) fn touch_used(&self, q: &Arc<Queue>) {
        if q.args.expires_ms.is_some() {
            let mut s = self.state.lock();
            s.last_used = now_ms();
            self.reschedule(q, &mut s);
        }
    }

    /// See [`Queue::admit_after`] (`overflow=drop-head` was answered there).
    pub(super) fn admit_after(&self, q: &Queue, planned: &Planned, len: usize) -> Admission {
        let (n, bytes) = planned.0.get(&q.id).copied().unwrap_or((0, 0));
        let s = self.state.lock();
        if !over_limit(q, &s, n + 1, bytes + len as u64) {
            return Admission::Accept;
        }
        match q.args.overflow {
            Overflow::Block => Admission::Block,
            _ => Admission::Reject,
        }
    }

    pub(super) fn count_blocked(&self) {
        self.state.lock().blocked += 1;
    }

    pub(super) fn uncount_blocked(&self) {
        let mut s = self.state.lock();
        s.blocked = s.blocked.saturating_sub(1);
    }

    pub(super) fn count_waiter(&self) {
        self.state.lock().get_waiters += 1;
    }

    pub(super) fn uncount_waiter(&self) {
        let mut s = self.state.lock();
        s.get_waiters = s.get_waiters.saturating_sub(1);
    }

    /// See [`Queue::dedup_claim`] (a queue without a window was answered
    /// there).
    pub(super) fn dedup_claim(&self, id: &str, now: u64, window: u64) -> (bool, Vec<String>) {
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

    pub(super) fn dedup_until(&self, id: &str) -> Option<u64> {
        self.state.lock().dedup.get(id).copied()
    }

    pub(super) fn restore_dedup(&self, mut entries: Vec<DedupEntry>) {
        entries.sort_by_key(|e| e.expires_at);
        let mut s = self.state.lock();
        for e in entries {
            s.dedup.insert(e.id.clone(), e.expires_at);
            s.dedup_order.push_back((e.expires_at, e.id));
        }
    }

    /// See [`Queue::enqueue`].
    pub(super) fn enqueue(
        &self,
        q: &Arc<Queue>,
        entry: Entry,
    ) -> Result<(Option<u64>, Dead), BrokerError> {
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            drop(s);
            return Ok((q.release(vec![entry])?, Dead::default()));
        }
        q.counters.published.fetch_add(1, Ordering::Relaxed);
        if self.pages && entry.stored && self.to_tail(&s, &entry) {
            q.disk.bodies.register(&entry.msg);
            s.tail.push(entry.seq, entry.msg.body.len() as u64);
        } else {
            s.insert_waiting(entry, &now);
        }
        // A consumer with room takes it first: the limit is on what waits.
        self.dispatch_and_wake(q, &mut s, &now);
        if q.args.overflow == Overflow::DropHead {
            while over_limit(q, &s, 0, 0) {
                let Some(head) = self.pop_head(q, &mut s, &now) else {
                    break;
                };
                s.dead.push((head, DeathReason::MaxLen));
            }
        }
        self.reschedule(q, &mut s);
        Ok((None, self.finish(q, s)))
    }

    /// See [`Queue::restore`].
    pub(super) fn restore(&self, q: &Arc<Queue>, stored: &StoredQueue, crashed: bool) {
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
            if !self.page_in(q, &mut s, &now) {
                break;
            }
        }
        self.reschedule(q, &mut s);
        self.update_spill(&s);
    }

    /// See [`Queue::subscribe`]; returns the copies that died on the way.
    pub(super) fn subscribe(
        &self,
        q: &Arc<Queue>,
        consumer: Consumer,
    ) -> Result<Dead, BrokerError> {
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            return Err(BrokerError::NotFound(format!(
                "queue {} was deleted",
                q.name
            )));
        }
        if s.consumers.iter().any(|c| c.exclusive) {
            return Err(BrokerError::Locked(format!(
                "queue {} has an exclusive consumer",
                q.name
            )));
        }
        if consumer.exclusive && !s.consumers.is_empty() {
            return Err(BrokerError::Locked(format!(
                "queue {} already has consumers; exclusive needs it to have none",
                q.name
            )));
        }
        s.consumers.push(consumer);
        s.last_used = now.get();
        if q.args.mode == QueueMode::SingleActive && s.get_waiters > 0 {
            // A waiting GET ends now: refused (see `take`).
            q.ready_signal.notify_waiters();
        }
        self.promote(q, &mut s);
        self.dispatch(q, &mut s, &now);
        Ok(self.finish(q, s))
    }

    /// See [`Queue::unsubscribe`]; also returns the copies that died in a
    /// `single-active` handover.
    pub(super) fn unsubscribe(&self, q: &Arc<Queue>, consumer_id: u64) -> (bool, Dead) {
        let mut s = self.state.lock();
        let before = s.consumers.len();
        s.consumers.retain(|c| c.id != consumer_id);
        let removed = s.consumers.len() < before;
        if s.rr >= s.consumers.len() {
            s.rr = 0;
        }
        if removed && s.consumers.is_empty() {
            s.last_used = now_ms();
            self.reschedule(q, &mut s);
        }
        let emptied = removed && q.auto_delete && s.consumers.is_empty() && !s.deleted;
        if s.active != Some(consumer_id) {
            return (emptied, Dead::default());
        }
        // The next subscription takes over, once the departed one's
        // deliveries are settled (see `promote`).
        s.active = None;
        let now = Now::default();
        self.promote(q, &mut s);
        self.dispatch(q, &mut s, &now);
        self.reschedule(q, &mut s);
        (emptied, self.finish(q, s))
    }

    /// See [`Queue::take`]; also returns the copies that died on the way.
    pub(super) fn take(
        &self,
        q: &Arc<Queue>,
        count: u32,
        conn: u64,
    ) -> Result<(Vec<Entry>, Dead), BrokerError> {
        let now = Now::default();
        let mut s = self.state.lock();
        if q.args.mode == QueueMode::SingleActive && !s.consumers.is_empty() {
            return Err(BrokerError::Precondition(format!(
                "queue {} is single-active and has subscriptions: only its active subscription receives",
                q.name
            )));
        }
        if q.args.expires_ms.is_some() {
            s.last_used = now.get();
        }
        let mut out = Vec::new();
        while out.len() < count as usize {
            let Some(mut e) = self.next_delivery(q, &mut s, &now, Owner::Get(conn)) else {
                break;
            };
            e.deliveries += 1;
            s.unacked += 1;
            out.push(e);
        }
        q.delivered(out.len() as u64);
        self.reschedule(q, &mut s);
        Ok((out, self.finish(q, s)))
    }

    /// See [`Queue::can_take`].
    pub(super) fn can_take(&self, q: &Queue, conn: u64) -> bool {
        let s = self.state.lock();
        if s.deleted || (q.args.mode == QueueMode::SingleActive && !s.consumers.is_empty()) {
            return true;
        }
        match s.groups.as_deref() {
            None => s.has_ready(),
            Some(g) => g.next_for(Owner::Get(conn)).is_some() || s.may_read_on(self.window),
        }
    }

    /// See [`Queue::peek`].
    pub(super) fn peek(&self, q: &Queue, count: u32, from: Option<u64>) -> Vec<Entry> {
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
            match q.disk.load(q.id, start.max(from), end, want) {
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
                    tracing::warn!(queue = %q.name, error = %e, "could not read the paged-out messages");
                    break;
                }
            }
        }
        all.sort_by_key(|e| e.seq);
        all.truncate(count as usize);
        all
    }

    /// See [`Queue::take_for_redrive`].
    pub(super) fn take_for_redrive(&self, q: &Arc<Queue>, count: u64) -> Vec<Entry> {
        let now = Now::default();
        let mut s = self.state.lock();
        let mut out = Vec::new();
        while (out.len() as u64) < count {
            match self.next_ready(q, &mut s, &now) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        self.update_spill(&s);
        drop(s);
        self.signal_room(q);
        out
    }

    /// See [`Queue::put_back`].
    pub(super) fn put_back(&self, q: &Arc<Queue>, entries: Vec<Entry>) -> Dead {
        let now = Now::default();
        let mut s = self.state.lock();
        if s.deleted {
            drop(s);
            if let Err(e) = q.release(entries) {
                tracing::warn!(queue = %q.name, error = %e, "release failed");
            }
            return Dead::default();
        }
        for e in entries {
            s.insert_ready(e);
        }
        self.dispatch_and_wake(q, &mut s, &now);
        self.reschedule(q, &mut s);
        self.finish(q, s)
    }

    /// See [`Queue::settle`]. Returns the generation of the requeued copy's
    /// rewrite, the copies that died (this one, or others on the way to a
    /// consumer) and the copy to release (acked, or its queue deleted), in
    /// the order the caller is to deal with them.
    pub(super) fn settle(
        &self,
        q: &Arc<Queue>,
        consumer_id: Option<u64>,
        mut entry: Entry,
        how: Settle,
    ) -> Result<(Option<u64>, Dead, Option<Entry>), BrokerError> {
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
                if limit_reached(q, &entry) {
                    Some(DeathReason::DeliveryLimit)
                } else {
                    entry.redelivered = true;
                    let delay = match how {
                        Settle::Requeue { delay_ms: Some(d) } => Some(d),
                        _ => retry_delay(q, entry.deliveries),
                    };
                    entry.not_before = delay
                        .filter(|d| *d > 0)
                        .map(|d| now.get().saturating_add(d));
                    if entry.stored
                        && (entry.not_before.is_some() || q.args.delivery_limit.is_some())
                    {
                        gen = q.rewrite(&entry)?;
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
                q.counters.acked.fetch_add(1, Ordering::Relaxed);
                q.totals.acked.fetch_add(1, Ordering::Relaxed);
            }
            Settle::Requeue { .. } | Settle::Timeout if keep => {
                q.counters.requeued.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let mut s = self.state.lock();
        s.unacked = s.unacked.saturating_sub(1);
        if let Some(id) = consumer_id {
            if let Some(c) = s.consumers.iter_mut().find(|c| c.id == id) {
                c.gave_back(entry.msg.body.len() as u64);
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
        self.promote(q, &mut s);
        self.dispatch_and_wake(q, &mut s, &now);
        self.reschedule(q, &mut s);
        Ok((gen, self.finish(q, s), released))
    }

    /// See [`Queue::withdraw`].
    pub(super) fn withdraw(&self, q: &Queue, copies: &[(u64, u8, Option<u64>)]) {
        let mut taken = Vec::new();
        {
            let mut s = self.state.lock();
            for &(seq, priority, due) in copies {
                let key = (u8::MAX - priority, seq);
                if let Some(e) = s.take_ready(key, None) {
                    taken.push(e);
                } else if let Some(e) = due.and_then(|d| s.delayed.remove(&(d, seq))) {
                    s.bytes.sub(e.msg.body.len() as u64);
                    s.left_waiting(&e);
                    taken.push(e);
                }
            }
            if taken.is_empty() {
                return;
            }
            self.update_spill(&s);
        }
        self.signal_room(q);
        if let Err(e) = q.release(taken) {
            tracing::warn!(queue = %q.name, error = %e, "release failed");
        }
    }

    /// See [`Queue::purge`].
    pub(super) fn purge(&self, q: &Queue) -> Result<Purged, BrokerError> {
        let (taken, tail) = {
            let mut s = self.state.lock();
            let out = (s.take_all(), std::mem::take(&mut s.tail));
            self.update_spill(&s);
            out
        };
        self.signal_room(q);
        let n = taken.len() as u64 + tail.count;
        let on_disk = tail.ranges.iter().flat_map(|(start, end)| *start..*end);
        let seqs = taken.iter().map(|e| e.seq).chain(on_disk).collect();
        let gen = q.release(taken)?;
        Ok(Purged {
            count: n,
            gen: q.drop_tail(tail)?.max(gen),
            seqs,
        })
    }

    /// See [`Queue::mark_deleted`].
    pub(super) fn mark_deleted(&self, q: &Queue) -> (Vec<Entry>, Tail) {
        let mut s = self.state.lock();
        s.deleted = true;
        for c in s.consumers.drain(..) {
            let _ = c.tx.send(Push::Cancelled {
                tag: c.tag,
                reason: "queue-deleted",
            });
        }
        let out = s.take_all();
        let tail = std::mem::take(&mut s.tail);
        self.update_spill(&s);
        q.ready_signal.notify_waiters();
        q.room_signal.notify_waiters();
        (out, tail)
    }

    /// See [`Queue::cancel_subscriptions`].
    pub(super) fn cancel_subscriptions(&self, reason: &'static str) {
        let mut s = self.state.lock();
        for c in s.consumers.drain(..) {
            let _ = c.tx.send(Push::Cancelled { tag: c.tag, reason });
        }
    }

    /// See [`Queue::persist_delivery_counts`].
    pub(super) fn persist_delivery_counts(
        &self,
        q: &Queue,
        clean: bool,
    ) -> Result<(), BrokerError> {
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
            q.rewrite(e)?;
        }
        Ok(())
    }

    /// See [`Queue::on_timer`].
    pub(super) fn on_timer(&self, q: &Arc<Queue>, now: u64) -> Timed {
        let clock = Now::at(now);
        let mut s = self.state.lock();
        s.timer_at = None;
        if s.deleted {
            return Timed::default();
        }
        while let Some((&(due, seq), _)) = s.delayed.first_key_value() {
            if due >= now {
                break;
            }
            let Some(mut e) = s.delayed.remove(&(due, seq)) else {
                break;
            };
            s.bytes.sub(e.msg.body.len() as u64);
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
                s.bytes.sub(e.msg.body.len() as u64);
                s.left_waiting(&e);
                s.dead.push((e, DeathReason::Expired));
            }
        }
        // Read the next page of the tail while the head runs low, so that
        // the expiry of paged-out copies goes on without consumers.
        if s.reads_ahead(self.window) {
            self.page_in(q, &mut s, &clock);
        }
        let unused = idle_deadline(q, &s).is_some_and(|t| t < now);
        self.dispatch_and_wake(q, &mut s, &clock);
        if !unused {
            self.reschedule(q, &mut s);
        }
        Timed {
            dead: self.finish(q, s),
            unused,
        }
    }

    /// Registers the earliest deadline with the timers if it is earlier
    /// than the one registered. Deadlines name the last millisecond before
    /// the event (see [`Entry::expired`]), so the timer is set just past it.
    fn reschedule(&self, q: &Arc<Queue>, s: &mut State) {
        let next = [
            s.delayed.first_key_value().map(|(k, _)| k.0),
            s.expiry.first().map(|k| k.0),
            idle_deadline(q, s),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_add(1));
        if let Some(at) = next {
            if s.timer_at.is_none_or(|t| at < t) {
                s.timer_at = Some(at);
                q.timers.schedule(at, q);
            }
        }
    }

    /// Ends a critical section: wakes held publishes if there is room now,
    /// releases the lock, and returns the dead letters collected under it
    /// (counted here, routed by whoever called the operation).
    fn finish(&self, q: &Queue, mut s: MutexGuard<'_, State>) -> Dead {
        self.update_spill(&s);
        if s.blocked > 0 && !over_limit(q, &s, 1, 0) {
            q.room_signal.notify_waiters();
        }
        let dead = std::mem::take(&mut s.dead);
        drop(s);
        for (_, reason) in &dead {
            q.counters.died(*reason);
        }
        Dead(dead, None)
    }

    fn signal_room(&self, q: &Queue) {
        let s = self.state.lock();
        if s.blocked > 0 && !over_limit(q, &s, 1, 0) {
            q.room_signal.notify_waiters();
        }
    }
}

/// The delay before a requeue by the queue's `retry-delays` ladder.
fn retry_delay(q: &Queue, deliveries: u32) -> Option<u64> {
    let ladder = &q.args.retry_delays_ms;
    let last = ladder.len().checked_sub(1)?;
    let step = (deliveries.max(1) as usize - 1).min(last);
    ladder.get(step).copied()
}

fn limit_reached(q: &Queue, e: &Entry) -> bool {
    let counted = e.deliveries - u32::from(e.uncertain && e.deliveries > 0);
    q.args.delivery_limit.is_some_and(|limit| counted >= limit)
}

fn over_limit(q: &Queue, s: &State, extra: u64, extra_bytes: u64) -> bool {
    q.args
        .max_length
        .is_some_and(|max| s.waiting() + extra > max)
        || q.args
            .max_bytes
            .is_some_and(|max| s.bytes.get() + s.tail.bytes + extra_bytes > max)
}

fn idle_deadline(q: &Queue, s: &State) -> Option<u64> {
    let expires = q.args.expires_ms?;
    (s.consumers.is_empty() && s.get_waiters == 0).then(|| s.last_used.saturating_add(expires))
}
