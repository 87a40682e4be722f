//! The event counters a queue bumps as it works: its own
//! ([`QueueCounters`]) and, beside them, the broker-wide [`Totals`]. Plain
//! `AtomicU64`s bumped with `Relaxed` on paths that already run once per
//! message: no lock, no allocation. `broker/stats.rs` reads them into
//! rates.

use std::sync::atomic::{AtomicU64, Ordering};

use super::DeathReason;

/// One queue's event counters, since it was created (or recovered).
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    /// Copies that entered the queue (published, dead-lettered or
    /// redriven into it).
    pub(crate) published: AtomicU64,
    /// Deliveries (to subscriptions and `GET`s, redeliveries included).
    pub(crate) delivered: AtomicU64,
    /// Deliveries acknowledged (`ACK`, or written with `ack=auto`).
    pub(crate) acked: AtomicU64,
    /// Deliveries that went back to the queue (`NACK`, ack timeout, a
    /// connection that closed with them unacked).
    pub(crate) requeued: AtomicU64,
    /// Copies that died here, by [`DeathReason`] (routed to the queue's
    /// dead-letter exchange, or dropped when it has none).
    pub(crate) dead: [AtomicU64; 4],
    /// Reads of its messages back from the store that failed (a damaged
    /// segment): the messages stay where they are, undelivered.
    pub(crate) read_errors: AtomicU64,
    /// `PUB`s to the default exchange its `schema=` refused (`ERR
    /// SCHEMA`; see `broker/schema.rs`).
    pub(crate) schema_rejections: AtomicU64,
}

impl QueueCounters {
    /// Counts a copy that died for `reason`.
    pub(crate) fn died(&self, reason: DeathReason) {
        self.dead[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Copies that died for `reason`.
    pub(crate) fn dead_of(&self, reason: DeathReason) -> u64 {
        self.dead[reason as usize].load(Ordering::Relaxed)
    }

    /// Copies that died, whatever the reason.
    pub(crate) fn dead_total(&self) -> u64 {
        self.dead.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Broker-wide counters, since the broker started.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// `PUB`s accepted (one per message, however many queues it reached).
    pub(crate) published: AtomicU64,
    /// Deliveries, all queues.
    pub(crate) delivered: AtomicU64,
    /// Acknowledgements, all queues.
    pub(crate) acked: AtomicU64,
}
