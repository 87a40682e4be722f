//! What a queue hands a session: a subscription as the queue holds it
//! ([`Consumer`], with its prefetch credit), what it pushes into the
//! connection's channel ([`Push`], [`Delivery`]) and a subscription as
//! `LIST CONSUMERS` shows it ([`ConsumerInfo`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Queue;
use crate::broker::message::Entry;

/// What the queue pushes to a connection.
#[derive(Debug)]
pub(crate) enum Push {
    /// A message for one of the connection's subscriptions.
    Deliver(Delivery),
    /// The server ended a subscription (its queue was deleted, or this
    /// node no longer leads the replicated queue).
    Cancelled {
        /// The subscription's consumer tag.
        tag: Arc<str>,
        /// Why, as `NOTICE cancelled` says it.
        reason: &'static str,
    },
    /// A notice for the connection (`NOTICE active`, `NOTICE inactive`).
    Notice(crate::protocol::reply::Notice),
}

/// One delivery on its way to a subscriber.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The queue it came from (acks go back there).
    pub(crate) queue: Arc<Queue>,
    /// The subscription's id, to return credit to.
    pub(crate) consumer_id: u64,
    /// The subscription's consumer tag.
    pub(crate) tag: Arc<str>,
    /// Settled as soon as it is written.
    pub(crate) auto_ack: bool,
    /// The queue's copy.
    pub(crate) entry: Entry,
}

/// Sender half of a connection's push channel.
pub(crate) type PushTx = mpsc::UnboundedSender<Push>;

/// A subscription as the queue sees it.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// Broker-unique id.
    pub id: u64,
    /// Consumer tag (unique per connection).
    pub(crate) tag: Arc<str>,
    /// The subscribing connection's id.
    pub(crate) conn: u64,
    /// Where deliveries go.
    pub(crate) tx: PushTx,
    /// Prefetch asked for.
    pub(crate) prefetch: u32,
    /// Prefetch room left.
    pub(crate) credit: u32,
    /// The queue's only consumer.
    pub(crate) exclusive: bool,
    /// `ack=auto`.
    pub(crate) auto_ack: bool,
}

/// A subscription as `LIST CONSUMERS` shows it.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerInfo {
    /// Consumer tag.
    pub(crate) tag: Arc<str>,
    /// The subscribing connection's id.
    pub(crate) conn: u64,
    /// Prefetch asked for.
    pub(crate) prefetch: u32,
    /// Deliveries holding prefetch credit (unacked, or on their way).
    pub(crate) in_flight: u32,
    /// The queue's only consumer.
    pub(crate) exclusive: bool,
    /// `ack=auto`.
    pub(crate) auto_ack: bool,
}
