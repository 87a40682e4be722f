//! What dies in a queue, and where it goes: [`DeathReason`], the [`Dead`]
//! letters an operation returns, and the [`DeadLetters`] port through
//! which the operations a session calls hand theirs to the broker.
//!
//! A queue never routes a message itself: routing needs the exchanges,
//! other queues and the store batch that moves a copy atomically, which
//! are the broker's (`broker/publish.rs`, `Broker::dead_letter`). So an
//! operation collects its dead letters under the queue's lock and returns
//! them once the lock is released. Where the broker called the operation
//! (a publish's enqueue, `REDRIVE`'s put back, the timer) it routes them
//! itself. Where a session did (`ACK`/`NACK`, `GET`, `SUB`, `UNSUB`, whose
//! `Queue` methods keep the signatures the sessions use) the queue hands
//! them to its [`DeadLetters`] port before it returns, so that the reply
//! still waits for the dead letter's store write, as it always has.

use std::sync::Arc;

use super::Queue;
use crate::broker::message::Entry;
use crate::error::BrokerError;

/// Why a message was dead-lettered (`h.x-death-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
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
    pub fn as_str(self) -> &'static str {
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
#[derive(Debug, Default)]
#[must_use = "dead letters must be routed (Broker::dead_letter), or they stay in the store"]
pub struct Dead(pub(super) Vec<(Entry, DeathReason)>);

impl Dead {
    /// Whether nothing died.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The copies and why each died.
    pub fn into_letters(self) -> Vec<(Entry, DeathReason)> {
        self.0
    }

    /// The copies alone (to release them when there is nowhere to route).
    pub fn into_entries(self) -> Vec<Entry> {
        self.0.into_iter().map(|(e, _)| e).collect()
    }
}

/// Where a queue hands the dead letters of the operations a session calls
/// (see the module docs): the broker, held weakly (it holds the queue).
pub trait DeadLetters: Send + Sync {
    /// Routes `dead`, which died in `from`, through `from`'s dead-letter
    /// exchange; returns the store generation to wait for.
    fn route(self: Arc<Self>, from: &Arc<Queue>, dead: Dead) -> Result<Option<u64>, BrokerError>;
}
