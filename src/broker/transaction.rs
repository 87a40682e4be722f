//! `TX COMMIT`: a connection's acks and publishes applied as one atomic
//! step (see protocol.md, "TX").
//!
//! **Why it is atomic.** Everything a transaction changes goes into one
//! [`MessageBatch`] (not `ordered_only`): the removals of the acked copies
//! of classic queues, the committed offsets of the stream groups the acks
//! move, and every new copy and de-duplication record of the publishes.
//! The message store applies a batch under one lock, so one group-commit
//! round (one write-ahead record with one CRC, one `fdatasync`) holds it
//! whole; recovery replays a record whole or drops it as a torn tail. So
//! after a crash the transaction happened entirely or not at all. The
//! reply waits for that round to be durable.
//!
//! **Order.** [`Broker::tx_admit`] routes and admits every publish first
//! (length limits counted across the transaction), changing nothing: a
//! refusal there fails the commit with nothing done. Only then are the
//! de-duplication windows claimed, the deliveries settled in RAM, the
//! batch written, and the new copies enqueued.
//!
//! **Replicated queues.** A transaction on replicated queues only is a
//! two-phase commit over their logs (`tx_replicated.rs`,
//! `cluster/transaction.rs`); one that mixes them with this node's own
//! queues, or touches a replicated stream, is refused. A publish that
//! would be held (a full `overflow=block` queue, a resource alarm) fails
//! the commit instead: a transaction is never held.

use std::sync::Arc;

use super::message::Entry;
use super::publish::{Admitted, Prepared};
use super::queue::{Dead, Planned, Queue, Settle, Settled};
use super::{stores, Broker, Hold};
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::store::MessageBatch;

/// A delivery a transaction acks: its queue, the subscription it came
/// through (`None` for a `GET`), and the queue's copy.
pub(crate) type TxAck = (Arc<Queue>, Option<u64>, Entry);

/// What a committed transaction did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TxDone {
    /// Deliveries acked.
    pub(crate) acked: usize,
    /// Messages published.
    pub(crate) published: usize,
    /// Copies they made, summed over the publishes (queues that had a
    /// message within their de-duplication window count, as for `PUB`).
    pub(crate) routed: usize,
    /// Publishes that some queue already had within its window.
    pub(crate) duplicates: usize,
    /// The store generation the reply waits for.
    pub(crate) gen: Option<u64>,
}

impl Broker {
    /// Checks a `PUB` as a transaction buffers it: its exchange exists, a
    /// `mandatory` one reaches a queue, and it reaches no replicated queue.
    pub(crate) fn tx_check(&self, p: &Publish) -> Result<(), BrokerError> {
        // `COMMIT` checks the body again, against the latest version then.
        let (_, _, targets) = self.route_checked(p, "")?;
        let (local, replicated) = self.split_replicated(targets);
        self.tx_check_replicated(&local, &replicated)
    }

    /// Refuses a replicated queue's delivery a transaction cannot ack
    /// (see `tx_replicated.rs`).
    pub(crate) fn tx_check_ack(&self, q: &Queue) -> Result<(), BrokerError> {
        match self.inner.consensus.get() {
            Some(c) if c.replicated(&q.name) => self.tx_check_replicated_ack(c.as_ref(), q),
            _ => Ok(()),
        }
    }

    /// Routes and admits every publish of a transaction, changing nothing
    /// (see the module docs): `ERR QUEUE_FULL` for a full queue (`overflow=
    /// reject-publish` refusing it everywhere, or `overflow=block`),
    /// `ERR UNAVAILABLE` under a resource alarm, `ERR PRECONDITION` for a
    /// replicated queue, `NOT_FOUND`/`NO_ROUTE` as for `PUB`.
    pub(crate) fn tx_admit(&self, pubs: &[Publish]) -> Result<Vec<Admitted>, BrokerError> {
        let mut planned = Planned::default();
        let mut out = Vec::with_capacity(pubs.len());
        for p in pubs {
            let admitted = match self.admit_publish(p, &mut planned)? {
                Ok(a) => a,
                Err(Hold::Queue(q)) => {
                    return Err(BrokerError::QueueFull(format!(
                        "queue {} is full (overflow=block): a transaction is not held; nothing was done",
                        q.name
                    )))
                }
                Err(Hold::Alarm(a)) => {
                    return Err(BrokerError::Unavailable(format!(
                        "the {} alarm holds publishes: a transaction is not held; nothing was done",
                        a.resource().as_str()
                    )))
                }
            };
            if admitted.replicated() {
                return Err(replicated_refused(p));
            }
            out.push(admitted);
        }
        Ok(out)
    }

    /// Applies a transaction admitted by [`Broker::tx_admit`]: publishes
    /// `pubs` (with their ids `ids`) and acks `acks`, in one store batch.
    pub(crate) fn tx_commit(
        &self,
        pubs: &[Publish],
        admitted: Vec<Admitted>,
        ids: Vec<String>,
        acks: Vec<TxAck>,
    ) -> Result<TxDone, BrokerError> {
        let prepared: Vec<Prepared> = pubs
            .iter()
            .zip(admitted)
            .zip(ids)
            .map(|((p, a), id)| self.prepare(p, a, id))
            .collect();
        let mut done = TxDone {
            acked: acks.len(),
            published: prepared.len(),
            ..TxDone::default()
        };
        let mut released: Vec<(Arc<Queue>, Entry)> = Vec::new();
        let mut offsets: Vec<(Arc<Queue>, Arc<str>, u64)> = Vec::new();
        let mut dead: Vec<(Arc<Queue>, Dead)> = Vec::new();
        for (q, consumer_id, entry) in acks {
            let Settled {
                gen,
                dead: died,
                release,
                commit,
                failed: _,
                orphan: _,
            } = q.settle(consumer_id, entry, Settle::Ack)?;
            done.gen = done.gen.max(gen);
            if let Some(e) = release {
                released.push((q.clone(), e));
            }
            if let Some((group, at)) = commit {
                offsets.push((q.clone(), group, at));
            }
            dead.push((q, died));
        }
        let mut batch = MessageBatch::default();
        for p in &prepared {
            p.add_to(&mut batch);
        }
        for (q, e) in &released {
            q.add_removals(std::slice::from_ref(e), &mut batch);
        }
        for (q, group, at) in &offsets {
            if stores(q) {
                batch.put_offsets.push((q.id, group, *at));
            }
        }
        let durable = prepared.iter().any(Prepared::durable)
            || released.iter().any(|(q, e)| e.stored && !q.volatile(e))
            || !batch.put_offsets.is_empty();
        if !batch.is_empty() {
            let gen = self.inner.disk.apply(&batch)?;
            if durable {
                done.gen = done.gen.max(Some(gen));
            }
        }
        drop(batch);
        // The offsets are in the batch; deferring them too makes the
        // committer's next write of the group carry them, not an older
        // offset an ack deferred before.
        for (q, group, at) in offsets {
            done.gen = done.gen.max(Some(q.defer_offset(group, at)));
        }
        for (q, died) in dead {
            done.gen = self.dead_letter(&q, died)?.max(done.gen);
        }
        for p in prepared {
            let (routed, duplicate) = p.routed();
            done.routed += routed;
            done.duplicates += usize::from(duplicate);
            let published = self.enqueue_prepared(p, None)?;
            done.gen = done.gen.max(published.durable_gen);
        }
        Ok(done)
    }
}

/// A transaction on this node's own queues whose publish now reaches a
/// replicated queue (a binding changed since it was buffered).
fn replicated_refused(p: &Publish) -> BrokerError {
    BrokerError::Precondition(format!(
        "a publish to exchange {} reaches replicated queues and this node's own: a transaction \
         is on either kind, not both; nothing was done",
        crate::protocol::reply::quote_for_message(&p.exchange)
    ))
}
