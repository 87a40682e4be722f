//! Subscriptions: the connection's [`Sub`]s by consumer tag, and what
//! their queues push into the connection's channel (deliveries, notices,
//! cancellations), taken into the outbox as `MSG` and `NOTICE` lines.

use std::sync::Arc;

use super::outbox::{give_back, AutoAck, MsgOut, Out};
use super::SessionState;
use crate::broker::queue::{Delivery, Push, PushTx, Queue};
use crate::error::BrokerError;
use crate::protocol::reply::Notice;

/// Pushes taken from the channel per wake-up before writing.
const PUSH_BATCH: usize = 512;

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

    /// Leaves every queue it is on, the partitions first. True when that
    /// left its queue, an auto-delete one, without subscriptions: the
    /// caller deletes it.
    pub(crate) fn unsubscribe(&self) -> bool {
        for p in &self.partitions {
            p.unsubscribe(self.consumer_id);
        }
        self.queue.unsubscribe(self.consumer_id)
    }
}

impl SessionState {
    /// How many subscriptions the connection has.
    pub(crate) fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// Whether consumer tag `tag` is in use.
    pub(crate) fn has_subscription(&self, tag: &str) -> bool {
        self.subs.contains_key(tag)
    }

    /// A consumer tag not in use on this connection.
    pub(crate) fn generate_consumer_tag(&mut self) -> Arc<str> {
        loop {
            let t: Arc<str> = Arc::from(format!("ctag-{}", self.next_ctag));
            self.next_ctag += 1;
            if !self.subs.contains_key(&t) {
                return t;
            }
        }
    }

    /// Where a new subscription's queues push.
    pub(crate) fn push_sender(&self) -> PushTx {
        self.push_tx.clone()
    }

    /// Records subscription `tag`.
    pub(crate) fn add_subscription(&mut self, tag: Arc<str>, sub: Sub) {
        self.subs.insert(tag, sub);
    }

    /// Forgets subscription `tag`, returning it.
    pub(crate) fn remove_subscription(&mut self, tag: &str) -> Option<Sub> {
        self.subs.remove(tag)
    }

    /// `--max-unacked`: `ERR LIMIT` unless `more` unacked deliveries fit
    /// beside the ones this connection has reserved already (the prefetch
    /// of its manual-ack subscriptions plus its unacked `GET` deliveries).
    pub(crate) fn check_unacked_room(&self, more: u64) -> Result<(), BrokerError> {
        let max = self.broker.config().max_unacked;
        let reserved = self.subs.values().map(|s| s.reserves).sum::<u64>() + self.unacked.got();
        if reserved.saturating_add(more) > max {
            return Err(BrokerError::limit(
                format_args!(
                    "{more} more unacked deliveries would pass this connection's limit ({reserved} reserved by manual-ack prefetch and unacked GETs)"
                ),
                "--max-unacked",
                max,
            ));
        }
        Ok(())
    }

    /// The next push from this connection's queues. Cancel-safe.
    pub(crate) async fn next_push(&mut self) -> Option<Push> {
        self.push_rx.recv().await
    }

    /// Takes `first` and up to a batch of the pushes behind it into the
    /// outbox.
    pub(crate) fn take_push_batch(&mut self, first: Push) {
        self.on_push(first);
        for _ in 0..PUSH_BATCH {
            match self.push_rx.try_recv() {
                Ok(p) => self.on_push(p),
                Err(_) => break,
            }
        }
    }

    /// Takes every push already sent to this connection into the outbox,
    /// but for the deliveries to `ended`, a subscription being ended (or
    /// never made): those go back to their queue, not counted as
    /// delivered.
    pub(crate) fn take_pushes_returning(&mut self, ended: u64) {
        while let Ok(p) = self.push_rx.try_recv() {
            match p {
                Push::Deliver(d) if d.consumer_id == ended => return_undelivered(d),
                p => self.on_push(p),
            }
        }
    }

    fn on_push(&mut self, push: Push) {
        match push {
            Push::Deliver(d) => self.on_delivery(d),
            Push::Notice(n) => self.outbox.push_around(Out::Notice(n)),
            Push::Cancelled { tag } => {
                if self.subs.remove(&tag).is_some() {
                    self.outbox.push_around(Out::Notice(Notice::Cancelled {
                        tag: tag.to_string(),
                        reason: "queue-deleted",
                    }));
                }
            }
        }
    }

    fn on_delivery(&mut self, d: Delivery) {
        let dtag = self.next_delivery_tag();
        let e = &d.entry;
        let mut m = MsgOut {
            tag: d.tag.clone(),
            dtag,
            msg: e.msg.clone(),
            deliveries: e.deliveries,
            redelivered: e.redelivered || e.deliveries > 1,
            offset: d.queue.args.stream.then_some(e.seq),
            partition: d.queue.partition,
            auto: None,
        };
        if d.auto_ack {
            m.auto = Some(AutoAck::new(d.queue, d.consumer_id, d.entry));
        } else {
            self.unacked
                .record(dtag, d.queue, Some(d.consumer_id), d.tag, d.entry);
        }
        self.outbox.push_around(Out::Msg(m));
    }

    /// Cancels every subscription (the connection is closing), and gives
    /// back what their queues pushed that was not taken yet. Returns the
    /// queues that were left without consumers (auto-delete queues go).
    pub(super) fn cancel_subscriptions(&mut self) -> Vec<Arc<Queue>> {
        let mut emptied = Vec::new();
        for (_, sub) in self.subs.drain() {
            if sub.unsubscribe() {
                emptied.push(sub.queue);
            }
        }
        self.push_rx.close();
        while let Ok(push) = self.push_rx.try_recv() {
            if let Push::Deliver(d) = push {
                return_undelivered(d);
            }
        }
        emptied
    }
}

/// Gives back a delivery that was never written: not counted as delivered.
fn return_undelivered(d: Delivery) {
    if let Err(err) = give_back(&d.queue, d.consumer_id, d.entry) {
        tracing::warn!(error = %err, "return failed");
    }
}
