//! The queue operations a session calls — `SUB`, `UNSUB`, `GET` and
//! settling a delivery (`ACK`, `NACK`, `REJECT`, an ack timeout, a
//! connection's close) — done through the broker, which is where what
//! they return is finished.

use std::sync::Arc;

use super::message::Entry;
use super::queue::{Consumer, Queue, Settle};
use super::Broker;
use crate::error::BrokerError;

impl Broker {
    /// Adds subscription `consumer` to `q` and starts delivering to it (on
    /// a stream, as a private reader from the next offset): see
    /// [`Queue::subscribe`].
    pub fn subscribe(&self, q: &Arc<Queue>, consumer: Consumer) -> Result<(), BrokerError> {
        q.subscribe(consumer)
    }

    /// Removes subscription `consumer_id` from `q`: see
    /// [`Queue::unsubscribe`]. True when that left an auto-delete queue
    /// without subscriptions (the caller deletes it).
    pub fn unsubscribe(&self, q: &Arc<Queue>, consumer_id: u64) -> bool {
        q.unsubscribe(consumer_id)
    }

    /// Takes up to `count` ready copies of `q` for a `GET` by connection
    /// `conn`: see [`Queue::take`].
    pub fn take(&self, q: &Arc<Queue>, count: u32, conn: u64) -> Result<Vec<Entry>, BrokerError> {
        q.take(count, conn)
    }

    /// Settles one copy delivered from `q` (through subscription
    /// `consumer_id`, or a `GET`): see [`Queue::settle`]. Returns the store
    /// generation the reply waits for, when the store changed.
    pub fn settle(
        &self,
        q: &Arc<Queue>,
        consumer_id: Option<u64>,
        entry: Entry,
        how: Settle,
    ) -> Result<Option<u64>, BrokerError> {
        q.settle(consumer_id, entry, how)
    }
}
