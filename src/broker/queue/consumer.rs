//! What a queue hands a session: a subscription as the queue holds it
//! ([`Consumer`], with its prefetch credit: a count, and with
//! `prefetch-bytes=` a byte budget too), what it pushes into the
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
    /// `prefetch-bytes=`: body bytes allowed in flight, if bounded.
    pub(crate) prefetch_bytes: Option<u64>,
    /// Body bytes of the deliveries holding credit.
    pub(crate) bytes_in_flight: u64,
    /// The queue's only consumer.
    pub(crate) exclusive: bool,
    /// `ack=auto`.
    pub(crate) auto_ack: bool,
}

impl Consumer {
    /// Whether a delivery of a `size`-byte body may go to this subscription
    /// now: it has count credit, and the body fits in its byte budget, or
    /// nothing is in flight (a body larger than the budget goes out alone,
    /// so that nothing is stuck).
    pub(super) fn has_room_for(&self, size: u64) -> bool {
        self.credit > 0
            && self.prefetch_bytes.is_none_or(|max| {
                self.bytes_in_flight == 0 || self.bytes_in_flight.saturating_add(size) <= max
            })
    }

    /// Whether the subscription may take any delivery now (count credit,
    /// and byte budget left): what to check before the next body's size is
    /// known.
    pub(super) fn may_take(&self) -> bool {
        self.credit > 0
            && self
                .prefetch_bytes
                .is_none_or(|max| self.bytes_in_flight < max)
    }

    /// A delivery of a `size`-byte body went out: it holds credit.
    pub(super) fn took(&mut self, size: u64) {
        self.credit = self.credit.saturating_sub(1);
        self.bytes_in_flight = self.bytes_in_flight.saturating_add(size);
    }

    /// A delivery of a `size`-byte body was settled: its credit comes back.
    pub(super) fn gave_back(&mut self, size: u64) {
        self.credit = self.credit.saturating_add(1);
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(size);
    }

    /// The subscription as `LIST CONSUMERS` shows it.
    pub(super) fn info(&self, exclusive: bool) -> ConsumerInfo {
        ConsumerInfo {
            tag: self.tag.clone(),
            conn: self.conn,
            prefetch: self.prefetch,
            in_flight: self.prefetch.saturating_sub(self.credit),
            prefetch_bytes: self.prefetch_bytes,
            bytes_in_flight: self.bytes_in_flight,
            exclusive,
            auto_ack: self.auto_ack,
            group: None,
        }
    }
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
    /// `prefetch-bytes=`, if given.
    pub(crate) prefetch_bytes: Option<u64>,
    /// Body bytes of the deliveries in flight.
    pub(crate) bytes_in_flight: u64,
    /// The queue's only consumer.
    pub(crate) exclusive: bool,
    /// `ack=auto`.
    pub(crate) auto_ack: bool,
    /// On a stream: the group it reads as and where that group stands
    /// (`None` on a classic queue).
    pub(crate) group: Option<ReaderLag>,
}

/// A stream subscription's group, as `LIST CONSUMERS` shows it.
#[derive(Debug, Clone)]
pub(crate) struct ReaderLag {
    /// The named group, or `None` for a private reader.
    pub(crate) name: Option<String>,
    /// Messages from the group's committed offset to the end of the log.
    pub(crate) lag: u64,
    /// Age of the group's oldest message not yet committed, in ms (0 when
    /// caught up).
    pub(crate) lag_ms: u64,
    /// Whether this subscription is the one the group delivers to.
    pub(crate) active: bool,
}
