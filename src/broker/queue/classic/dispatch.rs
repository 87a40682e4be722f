//! Who gets the next copy of a classic queue: the dispatch loop (the next
//! subscription with credit, round-robin; only the active one on a
//! `single-active` queue; one that may take a ready copy on a `groups`
//! queue), the hand-over of a `single-active` queue, and the copies that
//! die on the way out (TTL passed, `delivery-limit` used up).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::groups::Owner;
use super::state::State;
use super::{limit_reached, Classic, ReadyKey};
use crate::broker::message::{Entry, Now};
use crate::broker::queue::{DeathReason, Delivery, Push, Queue};
use crate::protocol::command::QueueMode;
use crate::protocol::reply::Notice;

impl Classic {
    /// Dispatches to subscriptions, then wakes waiting `GET`s if anything
    /// is still ready.
    pub(super) fn dispatch_and_wake(&self, q: &Arc<Queue>, s: &mut State, now: &Now) {
        self.dispatch(q, s, now);
        if s.get_waiters > 0 && s.has_ready() {
            q.ready_signal.notify_waiters();
        }
    }

    pub(super) fn dispatch(&self, q: &Arc<Queue>, s: &mut State, now: &Now) {
        // Subscriptions whose `prefetch-bytes` budget the copy they were
        // offered did not fit: passed over until this dispatch ends.
        let mut full: Vec<u64> = Vec::new();
        while s.has_ready() && !s.consumers.is_empty() {
            let n = s.consumers.len();
            let Some(idx) = self.pick_consumer(q, s, now, &full) else {
                return;
            };
            let dead = s.dead.len();
            let Some(mut entry) = self.next_delivery(q, s, now, Owner::Sub(s.consumers[idx].id))
            else {
                // On a groups queue the copies it found may have been
                // dead-lettered: another subscription may have some still.
                if s.dead.len() > dead {
                    continue;
                }
                return;
            };
            let size = entry.msg.body.len() as u64;
            if !s.consumers[idx].has_room_for(size) {
                // Its byte budget has room, but not for this body: the copy
                // goes back where it was, for another subscription (or for
                // this one once its deliveries in flight are settled).
                full.push(s.consumers[idx].id);
                if let Some(g) = s.groups.as_deref_mut() {
                    g.settled(entry.msg.group.as_ref());
                }
                s.insert_ready(entry);
                continue;
            }
            entry.deliveries += 1;
            let c = &mut s.consumers[idx];
            let delivery = Delivery {
                queue: q.clone(),
                consumer_id: c.id,
                tag: c.tag.clone(),
                auto_ack: c.auto_ack,
                entry,
            };
            match c.tx.send(Push::Deliver(delivery)) {
                Ok(()) => {
                    c.took(size);
                    s.unacked += 1;
                    s.rr = (idx + 1) % n;
                    q.delivered(1);
                }
                Err(mpsc::error::SendError(push)) => {
                    // The connection is gone: drop the subscription, keep the message.
                    let gone = s.consumers.remove(idx);
                    s.rr = 0;
                    if let Push::Deliver(mut d) = push {
                        d.entry.deliveries -= 1;
                        if let Some(g) = s.groups.as_deref_mut() {
                            g.settled(d.entry.msg.group.as_ref());
                        }
                        s.insert_ready(d.entry);
                    }
                    if s.active == Some(gone.id) {
                        s.active = None;
                        self.promote(q, s);
                    }
                }
            }
        }
    }

    /// The subscription the next delivery goes to: the next one with
    /// credit, round-robin; on a `single-active` queue only the active one;
    /// on a `groups` queue the next one with credit that may take a ready
    /// copy (one of a free group, of a group it owns, or without a group).
    /// "With credit": count credit and byte budget left, and not in `full`.
    fn pick_consumer(&self, q: &Queue, s: &mut State, now: &Now, full: &[u64]) -> Option<usize> {
        let n = s.consumers.len();
        let open = |c: &crate::broker::queue::Consumer| c.may_take() && !full.contains(&c.id);
        if q.args.mode == QueueMode::SingleActive {
            // The active subscription is always the first (see `promote`).
            let first = s.consumers.first()?;
            return (s.active == Some(first.id) && open(first)).then_some(0);
        }
        if s.groups.is_some() {
            for i in 0..n {
                let idx = (s.rr + i) % n;
                let c = &s.consumers[idx];
                if open(c) && self.next_grouped(q, s, now, Owner::Sub(c.id)).is_some() {
                    return Some(idx);
                }
            }
            return None;
        }
        (0..n)
            .map(|i| (s.rr + i) % n)
            .find(|&i| open(&s.consumers[i]))
    }

    /// Takes the next copy to deliver to `owner` off the queue: the ready
    /// head, or on a `groups` queue the first copy that owner may take
    /// (which counts as delivered to it in the group index). Copies found
    /// expired or at their delivery limit are dead-lettered on the way.
    pub(super) fn next_delivery(
        &self,
        q: &Queue,
        s: &mut State,
        now: &Now,
        owner: Owner,
    ) -> Option<Entry> {
        loop {
            if s.groups.is_none() {
                let e = self.next_ready(q, s, now)?;
                match undeliverable(q, &e, now) {
                    Some(reason) => s.dead.push((e, reason)),
                    None => return Some(e),
                }
                continue;
            }
            let key = self.next_grouped(q, s, now, owner)?;
            let reason = s.ready.get(&key).and_then(|e| undeliverable(q, e, now));
            let e = s.take_ready(key, reason.is_none().then_some(owner))?;
            match reason {
                Some(reason) => s.dead.push((e, reason)),
                None => return Some(e),
            }
        }
    }

    /// On a `groups` queue: the key of the first ready copy `owner` may
    /// take. The tail is read back while the head in RAM runs low, as on
    /// any queue, and also when RAM holds nothing for `owner`, as long as
    /// the read-ahead window (`STORED_WINDOW`, or the RAM budget if
    /// smaller) has room, or nothing at all is ready in RAM. So a backlog
    /// that fills the window while it cannot go (its groups owned by
    /// subscriptions without credit, or held back by a delayed copy) holds
    /// back the copies behind it on disk until it moves; RAM stays bounded.
    fn next_grouped(&self, q: &Queue, s: &mut State, now: &Now, owner: Owner) -> Option<ReadyKey> {
        if s.reads_ahead(self.window) {
            self.page_in(q, s, now);
        }
        loop {
            if let Some(key) = s.groups.as_deref().and_then(|g| g.next_for(owner)) {
                return Some(key);
            }
            if !s.may_read_on(self.window) || !self.page_in(q, s, now) {
                return None;
            }
        }
    }

    /// `single-active`: once no delivery of the queue is outstanding, makes
    /// the earliest subscription still present the active one and tells it
    /// (`NOTICE active`). Waiting for every outstanding delivery (the
    /// departed active subscription's, or those of `GET`s taken before
    /// anyone subscribed) is what keeps the queue's order across a
    /// handover: they are settled, or back at their positions, first.
    pub(super) fn promote(&self, q: &Queue, s: &mut State) {
        if q.args.mode != QueueMode::SingleActive || s.active.is_some() || s.unacked > 0 {
            return;
        }
        while let Some(c) = s.consumers.first() {
            let notice = Notice::Active {
                tag: c.tag.to_string(),
                partition: None,
            };
            if c.tx.send(Push::Notice(notice)).is_ok() {
                s.active = Some(c.id);
                return;
            }
            // Its connection is gone (its session drops it too).
            s.consumers.remove(0);
        }
    }
}

/// Why a copy about to be delivered must be dead-lettered instead.
fn undeliverable(q: &Queue, e: &Entry, now: &Now) -> Option<DeathReason> {
    if e.expired(now) {
        Some(DeathReason::Expired)
    } else if limit_reached(q, e) {
        Some(DeathReason::DeliveryLimit)
    } else {
        None
    }
}
