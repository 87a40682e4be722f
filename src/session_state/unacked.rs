//! [`Outstanding`]: one connection's deliveries not yet acknowledged, by
//! delivery tag, with their ack deadlines.
//!
//! **Ack timeouts.** Manual deliveries from a queue with `ack-timeout`
//! carry a deadline; when it passes, the delivery goes back to its queue
//! (or is dead-lettered at its delivery limit), the connection gets
//! `NOTICE ack-timeout <ctag> <dtag>` and the tag is no longer outstanding.
//! `TOUCH` restarts the deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::message::Entry;
use crate::broker::queue::{Queue, Settle};
use crate::broker::Broker;
use crate::error::BrokerError;

/// A delivery not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Unacked {
    /// Its queue.
    queue: Arc<Queue>,
    /// The subscription it came through (`None` for `GET`).
    consumer_id: Option<u64>,
    /// Its consumer tag (`-` for `GET`).
    tag: Arc<str>,
    /// When its ack timeout passes, if its queue has one.
    deadline: Option<Instant>,
    /// The queue's copy.
    entry: Entry,
}

impl Unacked {
    /// The queue it came from.
    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Its copy's position in its queue.
    pub(super) fn seq(&self) -> u64 {
        self.entry.seq
    }

    /// The subscription it came through (`None` for `GET`).
    pub(super) fn consumer_id(&self) -> Option<u64> {
        self.consumer_id
    }

    /// Its consumer tag (`-` for `GET`).
    pub(super) fn tag(&self) -> &Arc<str> {
        &self.tag
    }

    /// Its queue, the subscription it came through and the queue's copy:
    /// to settle it as part of a transaction.
    pub(crate) fn into_parts(self) -> (Arc<Queue>, Option<u64>, Entry) {
        (self.queue, self.consumer_id, self.entry)
    }

    /// Settles it with its queue, through `broker`: ack, requeue,
    /// dead-letter. Returns the store generation to wait for when the store
    /// changed.
    pub(crate) fn settle(self, broker: &Broker, how: Settle) -> Result<Option<u64>, BrokerError> {
        broker.settle(&self.queue, self.consumer_id, self.entry, how)
    }
}

/// The outstanding deliveries of one connection.
#[derive(Debug, Default)]
pub(super) struct Outstanding {
    /// By delivery tag.
    by_tag: BTreeMap<u64, Unacked>,
    /// Ack deadlines: (deadline, delivery tag).
    deadlines: BTreeSet<(Instant, u64)>,
    /// How many are `GET` deliveries (counted against `--max-unacked`).
    got: u64,
}

impl Outstanding {
    /// Records a manual delivery as outstanding, with its ack deadline.
    pub(super) fn record(
        &mut self,
        dtag: u64,
        queue: Arc<Queue>,
        consumer_id: Option<u64>,
        tag: Arc<str>,
        entry: Entry,
    ) {
        let deadline = queue
            .args
            .ack_timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        if let Some(d) = deadline {
            self.deadlines.insert((d, dtag));
        }
        if consumer_id.is_none() {
            self.got += 1;
        }
        self.by_tag.insert(
            dtag,
            Unacked {
                queue,
                consumer_id,
                tag,
                deadline,
                entry,
            },
        );
    }

    /// Takes an outstanding delivery (to settle it).
    pub(super) fn take(&mut self, dtag: u64) -> Option<Unacked> {
        let u = self.by_tag.remove(&dtag)?;
        if let Some(d) = u.deadline {
            self.deadlines.remove(&(d, dtag));
        }
        self.forget(&u);
        Some(u)
    }

    /// The outstanding delivery `dtag`, if it is.
    pub(super) fn get(&self, dtag: u64) -> Option<&Unacked> {
        self.by_tag.get(&dtag)
    }

    /// The outstanding tags up to `dtag`, in order.
    pub(super) fn tags_up_to(&self, dtag: u64) -> Vec<u64> {
        self.by_tag.range(..=dtag).map(|(t, _)| *t).collect()
    }

    /// Counts a delivery that is no longer outstanding.
    fn forget(&mut self, u: &Unacked) {
        if u.consumer_id.is_none() {
            self.got = self.got.saturating_sub(1);
        }
    }

    /// Restarts an outstanding delivery's ack timeout. False when the tag
    /// is not outstanding.
    pub(super) fn touch(&mut self, dtag: u64) -> bool {
        let Some(u) = self.by_tag.get_mut(&dtag) else {
            return false;
        };
        if let (Some(old), Some(ms)) = (u.deadline, u.queue.args.ack_timeout_ms) {
            let new = Instant::now() + Duration::from_millis(ms);
            u.deadline = Some(new);
            self.deadlines.remove(&(old, dtag));
            self.deadlines.insert((new, dtag));
        }
        true
    }

    /// The earliest ack deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Takes a delivery whose ack deadline is `now` or earlier, with its tag.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<(u64, Unacked)> {
        while let Some(&(at, dtag)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(u) = self.by_tag.remove(&dtag) else {
                continue;
            };
            self.forget(&u);
            return Some((dtag, u));
        }
        None
    }

    /// How many are outstanding.
    pub(super) fn len(&self) -> usize {
        self.by_tag.len()
    }

    /// How many are `GET` deliveries.
    pub(super) fn got(&self) -> u64 {
        self.got
    }

    /// Takes them all, in tag order (the connection is closing).
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = Unacked> {
        self.deadlines.clear();
        self.got = 0;
        std::mem::take(&mut self.by_tag).into_values()
    }
}
