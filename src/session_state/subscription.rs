//! [`Subscriptions`]: the connection's subscriptions ([`Sub`]) by consumer
//! tag, and the channel their queues push into (deliveries, notices,
//! cancellations). The state takes what comes through it into the outbox.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::outbox::give_back;
use crate::broker::queue::{Delivery, Push, PushTx, Queue};
use crate::broker::Broker;

/// One subscription of this connection.
#[derive(Debug)]
pub(crate) struct Sub {
    /// Its queue (the first partition of a partitioned stream).
    queue: Arc<Queue>,
    /// A partitioned stream's other partitions (the same consumer id
    /// subscribes to each).
    partitions: Vec<Arc<Queue>>,
    /// Broker-unique consumer id.
    consumer_id: u64,
    /// What it counts against `--max-unacked`: its prefetch if manual-ack,
    /// else 0.
    reserves: u64,
}

impl Sub {
    /// The subscription `consumer_id` to `queues` (a queue, or a
    /// partitioned stream's partitions in order); `None` for no queue.
    pub(crate) fn new(queues: Vec<Arc<Queue>>, consumer_id: u64, reserves: u64) -> Option<Sub> {
        let mut queues = queues.into_iter();
        let queue = queues.next()?;
        Some(Sub {
            queue,
            partitions: queues.collect(),
            consumer_id,
            reserves,
        })
    }

    /// Its queue (the first partition of a partitioned stream).
    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Its broker-unique consumer id.
    pub(crate) fn consumer_id(&self) -> u64 {
        self.consumer_id
    }

    /// Leaves every queue it is on, through `broker`, the partitions
    /// first. True when that left its queue, an auto-delete one, without
    /// subscriptions: the caller deletes it.
    pub(crate) fn unsubscribe(&self, broker: &Broker) -> bool {
        for p in &self.partitions {
            broker.unsubscribe(p, self.consumer_id);
        }
        broker.unsubscribe(&self.queue, self.consumer_id)
    }
}

/// The connection's subscriptions and their push channel.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    /// By consumer tag.
    by_tag: HashMap<Arc<str>, Sub>,
    /// Where this connection's queues push.
    push_tx: PushTx,
    /// What they pushed, not yet taken into the outbox.
    push_rx: mpsc::UnboundedReceiver<Push>,
    next_ctag: u64,
}

impl Subscriptions {
    /// No subscriptions yet.
    pub(super) fn new() -> Subscriptions {
        // Unbounded, but bounded in practice: see broker::queue (credit).
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        Subscriptions {
            by_tag: HashMap::new(),
            push_tx,
            push_rx,
            next_ctag: 1,
        }
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.by_tag.len()
    }

    /// Whether consumer tag `tag` is in use.
    pub(crate) fn contains(&self, tag: &str) -> bool {
        self.by_tag.contains_key(tag)
    }

    /// A consumer tag not in use on this connection.
    pub(crate) fn new_tag(&mut self) -> Arc<str> {
        loop {
            let t: Arc<str> = Arc::from(format!("ctag-{}", self.next_ctag));
            self.next_ctag += 1;
            if !self.by_tag.contains_key(&t) {
                return t;
            }
        }
    }

    /// Where a new subscription's queues push.
    pub(crate) fn sender(&self) -> PushTx {
        self.push_tx.clone()
    }

    /// Records subscription `tag`.
    pub(crate) fn insert(&mut self, tag: Arc<str>, sub: Sub) {
        self.by_tag.insert(tag, sub);
    }

    /// Forgets subscription `tag`, returning it.
    pub(crate) fn remove(&mut self, tag: &str) -> Option<Sub> {
        self.by_tag.remove(tag)
    }

    /// What they count against `--max-unacked` (the prefetch of the
    /// manual-ack ones).
    pub(super) fn reserved(&self) -> u64 {
        self.by_tag.values().map(|s| s.reserves).sum()
    }

    /// The next push. Cancel-safe.
    pub(super) async fn next_push(&mut self) -> Option<Push> {
        self.push_rx.recv().await
    }

    /// A push already sent, if any.
    pub(super) fn try_push(&mut self) -> Option<Push> {
        self.push_rx.try_recv().ok()
    }

    /// Cancels every subscription (the connection is closing), and gives
    /// back what their queues pushed that was not taken yet, through
    /// `broker`. Returns the queues that were left without consumers
    /// (auto-delete queues go).
    pub(super) fn cancel_all(&mut self, broker: &Broker) -> Vec<Arc<Queue>> {
        let mut emptied = Vec::new();
        for (_, sub) in self.by_tag.drain() {
            if sub.unsubscribe(broker) {
                emptied.push(sub.queue);
            }
        }
        self.push_rx.close();
        while let Ok(push) = self.push_rx.try_recv() {
            if let Push::Deliver(d) = push {
                return_undelivered(broker, d);
            }
        }
        emptied
    }
}

/// Gives back a delivery that was never written, through `broker`: not
/// counted as delivered.
pub(super) fn return_undelivered(broker: &Broker, d: Delivery) {
    if let Err(err) = give_back(broker, &d.queue, d.consumer_id, d.entry) {
        tracing::warn!(error = %err, "return failed");
    }
}
