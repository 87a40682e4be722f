//! The queue operations a session calls — `SUB`, `UNSUB`, `GET` and
//! settling a delivery (`ACK`, `NACK`, `REJECT`, an ack timeout, a
//! connection's close) — done through the broker, which routes the dead
//! letters each returns (`Broker::dead_letter`, `publish.rs`) before it
//! returns itself, so that the reply waits for their store write. A queue
//! never calls up into the broker.

use std::sync::Arc;

use super::message::Entry;
use super::queue::{Consumer, Queue, Settle, Settled};
use super::Broker;
use crate::error::BrokerError;

impl Broker {
    /// Adds subscription `consumer` to `q` and starts delivering to it (on
    /// a stream, as a private reader from the next offset): see
    /// [`Queue::subscribe`]. Routes the copies that died on the way; a
    /// failure to is the `SUB`'s error.
    pub(crate) fn subscribe(&self, q: &Arc<Queue>, consumer: Consumer) -> Result<(), BrokerError> {
        let dead = q.subscribe(consumer)?;
        self.dead_letter(q, dead)?;
        Ok(())
    }

    /// Removes subscription `consumer_id` from `q`: see
    /// [`Queue::unsubscribe`]. True when that left an auto-delete queue
    /// without subscriptions (the caller deletes it). Routes the copies
    /// that died in a `single-active` handover; a failure to is logged.
    pub(crate) fn unsubscribe(&self, q: &Arc<Queue>, consumer_id: u64) -> bool {
        // A subscription through this node to a replicated queue's leader
        // ends there.
        if let Some(c) = self.inner.consensus.get() {
            if c.unsubscribe_remote(consumer_id) {
                return false;
            }
        }
        let (emptied, dead) = q.unsubscribe(consumer_id);
        self.dead_letter_or_log(q, dead);
        emptied
    }

    /// Puts `entries`, taken off `q` and not moved after all, back at
    /// their places: see [`Queue::put_back`]. Routes the copies that died
    /// meanwhile; a failure to is logged.
    pub(crate) fn put_back(&self, q: &Arc<Queue>, entries: Vec<Entry>) {
        let dead = q.put_back(entries);
        self.dead_letter_or_log(q, dead);
    }

    /// Takes up to `count` ready copies of `q` for a `GET` by connection
    /// `conn`: see [`Queue::take`]. Routes the copies found expired on the
    /// way; a failure to is logged.
    pub(crate) fn take(
        &self,
        q: &Arc<Queue>,
        count: u32,
        conn: u64,
    ) -> Result<Vec<Entry>, BrokerError> {
        let (taken, dead) = q.take(count, conn)?;
        self.dead_letter_or_log(q, dead);
        Ok(taken)
    }

    /// Settles one copy delivered from `q` (through subscription
    /// `consumer_id`, or a `GET`): see [`Queue::settle`]. Routes the copies
    /// that died, then releases the settled copy if it is done with.
    /// Returns the store generation the reply waits for, when the store
    /// changed.
    pub(crate) fn settle(
        &self,
        q: &Arc<Queue>,
        consumer_id: Option<u64>,
        entry: Entry,
        how: Settle,
    ) -> Result<Option<u64>, BrokerError> {
        // A delivery through this node from a replicated queue's leader is
        // settled there.
        if let (Some(c), Some(id)) = (self.inner.consensus.get(), consumer_id) {
            if c.settle_remote(id, &q.name, entry.seq, how) {
                return Ok(None);
            }
        }
        self.settle_here(q, consumer_id, entry, how, true)
    }

    /// [`Broker::settle`] on this node, for a replicated queue's leader
    /// settling a delivery to another node's subscriber: `record` false
    /// when that node records an acked copy in the queue's log itself.
    pub(crate) fn settle_here(
        &self,
        q: &Arc<Queue>,
        consumer_id: Option<u64>,
        entry: Entry,
        how: Settle,
        record: bool,
    ) -> Result<Option<u64>, BrokerError> {
        let put_back = matches!(how, Settle::Requeue { .. } | Settle::Timeout).then_some(entry.seq);
        let acked = matches!(how, Settle::Ack | Settle::Reject);
        let seq = entry.seq;
        let Settled {
            gen,
            dead,
            release,
            commit,
            failed,
            orphan,
        } = q.settle(consumer_id, entry, how)?;
        let replicated = self.inner.consensus.get().filter(|c| c.replicated(&q.name));
        if orphan && acked && replicated.is_some() {
            // The stream's lead moved since this delivery: its groups are
            // the log's, where this ack never went. The next leader
            // delivers it again.
            return Err(BrokerError::Unavailable(format!(
                "stream {}'s lead moved before this ack was committed: offset {seq} is delivered again",
                q.name
            )));
        }
        if let (Some((group, at, count)), Some(c)) = (&failed, replicated) {
            // A replicated stream's log counts its groups' failed
            // deliveries, for the next leader's `delivery-limit=`.
            c.failed(&q.name, group, *at, *count);
        }
        let gen = match (commit, replicated) {
            // A replicated stream's group offsets are its log's entries
            // (the leader's, whoever's consumer acked).
            (Some((group, at)), Some(c)) => {
                c.offset(&q.name, &group, at, false);
                gen
            }
            (Some((group, at)), None) => Some(q.defer_offset(group, at)),
            (None, _) => gen,
        };
        if let Some(c) = replicated.filter(|_| q.stream_end().is_none()) {
            // A replicated queue's log learns which copies are done with
            // (those that died: `dead_letter`), and which were put back
            // after a delivery (one that reached its delivery limit died
            // instead).
            if let Some(e) = release.as_ref().filter(|_| record) {
                c.settled(&q.name, vec![e.seq]);
            }
            if let Some(seq) = put_back.filter(|s| !dead.seqs().any(|d| d == *s)) {
                c.returned(&q.name, vec![seq]);
            }
        }
        let mut gen = self.dead_letter(q, dead)?.max(gen);
        if let Some(e) = release {
            gen = q.release(vec![e])?.max(gen);
        }
        Ok(gen)
    }
}
