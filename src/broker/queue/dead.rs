//! What dies in a queue: [`DeathReason`], and the [`Dead`] letters an
//! operation returns.
//!
//! A queue never routes a message itself, nor calls up into the broker to
//! have it routed: routing needs the exchanges, other queues and the store
//! batch that moves a copy atomically, which are the broker's
//! (`broker/publish.rs`, `Broker::dead_letter`). So an operation collects
//! its dead letters under the queue's lock and returns them once the lock
//! is released, and whoever called it through the broker routes them: a
//! publish's enqueue, `REDRIVE`'s put back and the timer in
//! `broker/publish.rs` and `broker/mod.rs`; `SUB`, `UNSUB`, `GET` and
//! settling a delivery (`ACK`/`NACK`) in `broker/consume.rs`, before the
//! reply is queued, so that the reply waits for the dead letter's store
//! write.

use std::sync::Arc;

use crate::broker::message::Entry;

/// Why a message was dead-lettered (`h.x-death-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeathReason {
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery-limit",
        }
    }
}

/// Copies that died in one operation, each with why, in the order they
/// died; already counted in the queue's counters. Whoever gets them routes
/// them ([`Broker::dead_letter`](crate::broker::Broker)), which also
/// removes them from the store.
///
/// A stream's dead letter is a copy of the offset a consumer group gave
/// up on: the stream keeps the message (its entry here is marked not
/// stored, so that routing it removes nothing), and the letter names the
/// group (the second field, a [`StreamGroup`]) and offset (its `seq`).
#[derive(Debug, Default)]
#[must_use = "dead letters must be routed (Broker::dead_letter), or they stay in the store"]
pub(crate) struct Dead(
    pub(super) Vec<(Entry, DeathReason)>,
    pub(super) Option<StreamGroup>,
);

/// The stream consumer group a stream's dead letters died in.
#[derive(Debug, Clone)]
pub(crate) struct StreamGroup {
    /// Its name; `None` for a private reader (a `SUB` without `group=`).
    pub(crate) name: Option<Arc<str>>,
}

impl Dead {
    /// The stream group the letters died in (`None`: a queue's).
    pub(crate) fn stream_group(&self) -> Option<&StreamGroup> {
        self.1.as_ref()
    }

    /// The positions of the copies that died.
    pub(crate) fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|(e, _)| e.seq)
    }

    /// Whether nothing died.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The copies and why each died.
    pub(crate) fn into_letters(self) -> Vec<(Entry, DeathReason)> {
        self.0
    }

    /// The copies alone (to release them when there is nowhere to route).
    pub(crate) fn into_entries(self) -> Vec<Entry> {
        self.0.into_iter().map(|(e, _)| e).collect()
    }
}
