//! [`Queue`]: one queue's state — ready messages in order, the count of
//! unacked ones, and its subscriptions with their prefetch credit — and the
//! dispatch loop that pushes messages to subscribers.
//!
//! **Locking.** Each queue's state sits behind one `parking_lot::Mutex` with
//! short critical sections (insert, pop, credit), never held across an
//! `.await` or a store write. A per-queue task (the rumqttd router model) was
//! the alternative: a lock is cheaper here because publishes and acks touch
//! a queue for microseconds and mostly from one or two connections, and it
//! lets a publisher enqueue and learn the result without a channel round
//! trip. Lock order: the broker's topology lock, then an exchange's bindings,
//! then a queue's state; never two queues at once.
//!
//! **Delivery.** A subscription holds `credit` (its prefetch room). Dispatch
//! hands the head message to the next subscription with credit, round-robin,
//! by sending a [`Push::Deliver`] into that connection's push channel; the
//! channel is unbounded but cannot grow past the sum of its subscriptions'
//! prefetch (plus one cancel notice each), because credit is taken before
//! the send and only given back on `ACK`/`NACK` (or, for `ack=auto`, once
//! the delivery is written to the socket).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::message::{Entry, Message};
use super::Disk;
use crate::error::BrokerError;
use crate::store::MessageBatch;

/// What the queue pushes to a connection.
#[derive(Debug)]
pub enum Push {
    /// A message for one of the connection's subscriptions.
    Deliver(Delivery),
    /// The server ended a subscription (its queue was deleted).
    Cancelled {
        /// The subscription's consumer tag.
        tag: Arc<str>,
    },
}

/// One delivery on its way to a subscriber.
#[derive(Debug)]
pub struct Delivery {
    /// The queue it came from (acks go back there).
    pub queue: Arc<Queue>,
    /// The subscription's id, to return credit to.
    pub consumer_id: u64,
    /// The subscription's consumer tag.
    pub tag: Arc<str>,
    /// Settled as soon as it is written.
    pub auto_ack: bool,
    /// The queue's copy.
    pub entry: Entry,
}

/// Sender half of a connection's push channel.
pub type PushTx = mpsc::UnboundedSender<Push>;

/// A subscription as the queue sees it.
#[derive(Debug)]
pub struct Consumer {
    /// Broker-unique id.
    pub id: u64,
    /// Consumer tag (unique per connection).
    pub tag: Arc<str>,
    /// Where deliveries go.
    pub tx: PushTx,
    /// Prefetch room left.
    pub credit: u32,
    /// The queue's only consumer.
    pub exclusive: bool,
    /// `ack=auto`.
    pub auto_ack: bool,
}

/// How a delivered copy is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with: remove it.
    Ack,
    /// Put it back at its position, flagged redelivered.
    Requeue,
    /// Rejected without requeue: remove it (dead-lettering arrives later).
    Drop,
    /// Never written to the client: back at its position with its flag as it was.
    Return {
        /// The redelivered flag it had before.
        redelivered: bool,
    },
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    ready_bytes: u64,
    consumers: Vec<Consumer>,
    rr: usize,
    unacked: u64,
    get_waiters: usize,
    deleted: bool,
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
    next_seq: AtomicU64,
    state: parking_lot::Mutex<State>,
    ready_signal: Notify,
    disk: Arc<Disk>,
}

/// A snapshot of a queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready messages.
    pub messages: u64,
    /// Delivered, not yet settled.
    pub unacked: u64,
    /// Subscriptions.
    pub consumers: u64,
}

impl Queue {
    /// A new, empty queue; `next_seq` continues after recovered messages.
    pub fn new(
        name: Arc<str>,
        id: u64,
        durable: bool,
        auto_delete: bool,
        owner: Option<u64>,
        next_seq: u64,
        disk: Arc<Disk>,
    ) -> Queue {
        Queue {
            name,
            id,
            durable,
            auto_delete,
            owner,
            next_seq: AtomicU64::new(next_seq),
            state: parking_lot::Mutex::new(State::default()),
            ready_signal: Notify::new(),
            disk,
        }
    }

    /// Takes the next sequence number (before the message is stored).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        let s = self.state.lock();
        QueueStats {
            messages: s.ready.len() as u64,
            unacked: s.unacked,
            consumers: s.consumers.len() as u64,
        }
    }

    /// Whether a message is ready.
    pub fn has_ready(&self) -> bool {
        !self.state.lock().ready.is_empty()
    }

    /// Whether the queue has been deleted.
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Adds a copy to the ready list at its position and dispatches. A copy
    /// for a deleted queue is released instead.
    pub fn enqueue(self: &Arc<Self>, entry: Entry) {
        let mut s = self.state.lock();
        if s.deleted {
            drop(s);
            if let Err(e) = self.release(vec![entry]) {
                tracing::warn!(queue = %self.name, error = %e, "could not release a message of a deleted queue");
            }
            return;
        }
        s.insert_ready(entry);
        self.dispatch_and_wake(&mut s);
    }

    /// Restores copies found in the store at start (in seq order).
    pub fn restore(&self, entries: Vec<Entry>) {
        let mut s = self.state.lock();
        for e in entries {
            s.insert_ready(e);
        }
    }

    /// Adds a subscription and starts delivering to it.
    pub fn subscribe(self: &Arc<Self>, consumer: Consumer) -> Result<(), BrokerError> {
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
        self.dispatch(&mut s);
        Ok(())
    }

    /// Removes a subscription. Returns true when that left an auto-delete
    /// queue without subscriptions (the caller deletes it).
    pub fn unsubscribe(&self, consumer_id: u64) -> bool {
        let mut s = self.state.lock();
        let before = s.consumers.len();
        s.consumers.retain(|c| c.id != consumer_id);
        let removed = s.consumers.len() < before;
        if s.rr >= s.consumers.len() {
            s.rr = 0;
        }
        removed && self.auto_delete && s.consumers.is_empty() && !s.deleted
    }

    /// Takes up to `count` ready copies for a `GET` (they count as unacked
    /// until settled; with `auto_ack` the caller settles them at once).
    pub fn take(&self, count: u32) -> Vec<Entry> {
        let mut s = self.state.lock();
        let n = (count as usize).min(s.ready.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(mut e) = s.pop_ready() {
                e.deliveries += 1;
                s.unacked += 1;
                out.push(e);
            }
        }
        out
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

    /// Settles one delivered copy: ack, requeue or drop. Gives the credit
    /// back to `consumer_id` (a subscription) and dispatches. Returns the
    /// store generation to wait for when the store changed.
    pub fn settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        entry: Entry,
        how: Settle,
    ) -> Result<Option<u64>, BrokerError> {
        let mut s = self.state.lock();
        s.unacked = s.unacked.saturating_sub(1);
        if let Some(id) = consumer_id {
            if let Some(c) = s.consumers.iter_mut().find(|c| c.id == id) {
                c.credit += 1;
            }
        }
        let released = match how {
            Settle::Requeue | Settle::Return { .. } if !s.deleted => {
                let mut e = entry;
                e.redelivered = match how {
                    Settle::Return { redelivered } => redelivered,
                    _ => true,
                };
                s.insert_ready(e);
                None
            }
            _ => Some(entry),
        };
        self.dispatch_and_wake(&mut s);
        drop(s);
        match released {
            Some(e) => self.release(vec![e]),
            None => Ok(None),
        }
    }

    /// Removes every ready copy. Returns how many.
    pub fn purge(&self) -> Result<(u64, Option<u64>), BrokerError> {
        let taken: Vec<Entry> = {
            let mut s = self.state.lock();
            s.ready_bytes = 0;
            s.ready.drain(..).collect()
        };
        let n = taken.len() as u64;
        Ok((n, self.release(taken)?))
    }

    /// Marks the queue deleted: cancels its subscriptions (each gets a
    /// notice) and returns its ready copies for release.
    pub fn mark_deleted(&self) -> Vec<Entry> {
        let mut s = self.state.lock();
        s.deleted = true;
        for c in s.consumers.drain(..) {
            let _ = c.tx.send(Push::Cancelled { tag: c.tag });
        }
        s.ready_bytes = 0;
        let out = s.ready.drain(..).collect();
        self.ready_signal.notify_waiters();
        out
    }

    /// Removes copies from the store (and their bodies with the last
    /// reference). Returns the generation to wait for, if anything was stored.
    pub fn release(&self, entries: Vec<Entry>) -> Result<Option<u64>, BrokerError> {
        let mut batch = MessageBatch::default();
        for e in &entries {
            if e.stored {
                batch.del_metas.push((self.id, e.seq));
                if e.msg.release_stored() {
                    batch.del_bodies.push((e.msg.body_id, e.msg.body.len()));
                }
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.disk.apply(&batch)?))
    }

    /// Writes the delivery counts of delivered-but-requeued copies, so that a
    /// clean restart still flags them `redelivered`.
    pub fn persist_delivery_counts(&self) -> Result<(), BrokerError> {
        let copies: Vec<(u64, Arc<Message>, crate::store::MessageMeta)> = {
            let s = self.state.lock();
            s.ready
                .iter()
                .filter(|e| e.stored && e.deliveries > 0)
                .map(|e| (e.seq, e.msg.clone(), e.msg.meta(e.deliveries)))
                .collect()
        };
        if copies.is_empty() {
            return Ok(());
        }
        let mut batch = MessageBatch::default();
        for (seq, msg, meta) in &copies {
            // A body referenced by this copy alone may be stored inline with
            // its old metadata: write it again beside the new metadata.
            if msg.stored_refs.load(std::sync::atomic::Ordering::Acquire) == 1 {
                batch.put_bodies.push((msg.body_id, &msg.body));
            }
            batch.put_metas.push((self.id, *seq, meta));
        }
        self.disk.apply(&batch)?;
        Ok(())
    }

    /// Dispatches to subscriptions, then wakes waiting `GET`s if anything
    /// is still ready.
    fn dispatch_and_wake(self: &Arc<Self>, s: &mut State) {
        self.dispatch(s);
        if s.get_waiters > 0 && !s.ready.is_empty() {
            self.ready_signal.notify_waiters();
        }
    }

    fn dispatch(self: &Arc<Self>, s: &mut State) {
        while !s.ready.is_empty() && !s.consumers.is_empty() {
            let n = s.consumers.len();
            let Some(idx) = (0..n)
                .map(|i| (s.rr + i) % n)
                .find(|&i| s.consumers[i].credit > 0)
            else {
                return;
            };
            let Some(mut entry) = s.pop_ready() else {
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
                }
                Err(mpsc::error::SendError(push)) => {
                    // The connection is gone: drop the subscription, keep the message.
                    s.consumers.remove(idx);
                    s.rr = 0;
                    if let Push::Deliver(mut d) = push {
                        d.entry.deliveries -= 1;
                        s.insert_ready(d.entry);
                    }
                }
            }
        }
    }
}

impl State {
    fn insert_ready(&mut self, entry: Entry) {
        self.ready_bytes += entry.msg.body.len() as u64;
        match self.ready.back() {
            Some(last) if last.seq > entry.seq => {
                let at = self.ready.partition_point(|e| e.seq < entry.seq);
                self.ready.insert(at, entry);
            }
            _ => self.ready.push_back(entry),
        }
    }

    fn pop_ready(&mut self) -> Option<Entry> {
        let e = self.ready.pop_front()?;
        self.ready_bytes -= e.msg.body.len() as u64;
        Some(e)
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
