//! [`State`]: what a classic queue's lock guards — its waiting copies in
//! RAM (ready, by priority then position; delayed, by due time), the
//! expiry index, the paged-out [`Tail`], its subscriptions, the group
//! index of a `groups` queue and the active subscription of a
//! `single-active` one — and the index operations that keep them in step
//! (every copy that enters or leaves `ready` goes through here, so the
//! byte count, the expiry index and the group index never disagree).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::groups::{Groups, Owner};
use super::{ready_key, ReadyKey};
use crate::broker::message::{Entry, Now};
use crate::broker::queue::{Consumer, DeathReason, Tail};

/// What a waiting copy costs in RAM besides its body (the entry, its share
/// of the message, the index nodes), for the RAM budget.
const ENTRY_OVERHEAD: u64 = 256;
/// Below this many ready copies in RAM the next page is read ahead.
const LOW_WATER: usize = 256;

/// Body bytes of a queue's waiting copies in RAM, kept in step with the
/// broker-wide sum the RAM budget counts: bodies plus [`ENTRY_OVERHEAD`]
/// each, as [`State::ram_bytes`] counts them (given back when the queue
/// goes).
#[derive(Debug, Default)]
pub(super) struct RamBytes {
    local: u64,
    /// What this queue adds to `global`.
    charged: u64,
    global: Option<Arc<AtomicU64>>,
}

impl RamBytes {
    /// A count that adds to `global`.
    pub(super) fn counted_in(global: Arc<AtomicU64>) -> RamBytes {
        RamBytes {
            local: 0,
            charged: 0,
            global: Some(global),
        }
    }
    pub(super) fn get(&self) -> u64 {
        self.local
    }
    /// A copy of `n` body bytes came in.
    pub(super) fn add(&mut self, n: u64) {
        self.local += n;
        self.charge(n + ENTRY_OVERHEAD, true);
    }
    /// A copy of `n` body bytes left.
    pub(super) fn sub(&mut self, n: u64) {
        self.local -= n.min(self.local);
        self.charge(n + ENTRY_OVERHEAD, false);
    }
    fn charge(&mut self, n: u64, up: bool) {
        let n = if up { n } else { n.min(self.charged) };
        if up {
            self.charged += n;
        } else {
            self.charged -= n;
        }
        if let Some(g) = &self.global {
            if up {
                g.fetch_add(n, Ordering::Relaxed);
            } else {
                g.fetch_sub(n, Ordering::Relaxed);
            }
        }
    }
    /// Every copy left.
    fn clear(&mut self) {
        self.local = 0;
        self.charge(self.charged, false);
    }
}

impl Drop for RamBytes {
    fn drop(&mut self) {
        self.clear();
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) ready: BTreeMap<ReadyKey, Entry>,
    /// Delayed copies by (due, seq).
    pub(super) delayed: BTreeMap<(u64, u64), Entry>,
    /// Ready copies with a TTL, by (expiry, key).
    pub(super) expiry: BTreeSet<(u64, ReadyKey)>,
    /// Body bytes waiting in RAM (ready and delayed).
    pub(super) bytes: RamBytes,
    /// Copies on disk only.
    pub(super) tail: Tail,
    /// Copies below this position were stored before an unclean stop: read
    /// back, they are flagged as possibly delivered.
    pub(super) crash_below: u64,
    pub(super) consumers: Vec<Consumer>,
    pub(super) rr: usize,
    pub(super) unacked: u64,
    pub(super) get_waiters: usize,
    pub(super) blocked: usize,
    pub(super) deleted: bool,
    /// Last time it was used (consumer, GET, declare), for `expires`.
    pub(super) last_used: u64,
    /// The deadline registered with the timers, if any.
    pub(super) timer_at: Option<u64>,
    /// De-duplication: message id → end of its window; and the same in
    /// window order, for expiry.
    pub(super) dedup: HashMap<String, u64>,
    pub(super) dedup_order: VecDeque<(u64, String)>,
    /// Dead letters collected under the lock, routed after it.
    pub(super) dead: Vec<(Entry, DeathReason)>,
    /// A `groups` queue's delivery index (`None` on other queues).
    pub(super) groups: Option<Box<Groups>>,
    /// A `single-active` queue's active subscription, by consumer id.
    pub(super) active: Option<u64>,
}

impl State {
    /// Messages waiting: ready and delayed, in RAM or paged out.
    pub(super) fn waiting(&self) -> u64 {
        (self.ready.len() + self.delayed.len()) as u64 + self.tail.count
    }

    /// Whether a copy is ready, or paged out (and may be).
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.tail.is_empty()
    }

    /// Whether the next page of the tail is due: the head in RAM runs low
    /// and the read-ahead `window` has room.
    pub(super) fn reads_ahead(&self, window: u64) -> bool {
        !self.tail.is_empty() && self.ready.len() < LOW_WATER && self.ram_bytes() < window
    }

    /// On a `groups` queue with nothing in RAM for some consumer: whether
    /// the tail may be read further, looking for a copy it may take (the
    /// read-ahead `window` has room, or nothing at all is ready in RAM).
    pub(super) fn may_read_on(&self, window: u64) -> bool {
        !self.tail.is_empty() && (self.ram_bytes() < window || self.ready.is_empty())
    }

    /// What the waiting copies in RAM cost, for the RAM budget.
    pub(super) fn ram_bytes(&self) -> u64 {
        self.bytes.get() + (self.ready.len() + self.delayed.len()) as u64 * ENTRY_OVERHEAD
    }

    pub(super) fn insert_waiting(&mut self, entry: Entry, now: &Now) {
        match entry.not_before {
            Some(due) if due >= now.get() => {
                self.bytes.add(entry.msg.body.len() as u64);
                if let Some(g) = self.groups.as_deref_mut() {
                    g.waiting(entry.msg.group.as_ref(), ready_key(&entry), false);
                }
                self.delayed.insert((due, entry.seq), entry);
            }
            _ => self.insert_ready(entry),
        }
    }

    pub(super) fn insert_ready(&mut self, entry: Entry) {
        self.bytes.add(entry.msg.body.len() as u64);
        let key = ready_key(&entry);
        if let Some(at) = entry.expires_at {
            self.expiry.insert((at, key));
        }
        if let Some(g) = self.groups.as_deref_mut() {
            g.waiting(entry.msg.group.as_ref(), key, true);
        }
        self.ready.insert(key, entry);
    }

    pub(super) fn pop_ready(&mut self) -> Option<Entry> {
        let (key, e) = self.ready.pop_first()?;
        self.forget_ready(key, &e, None);
        Some(e)
    }

    /// Takes the ready copy at `key`; `to`: for delivery to this owner.
    pub(super) fn take_ready(&mut self, key: ReadyKey, to: Option<Owner>) -> Option<Entry> {
        let e = self.ready.remove(&key)?;
        self.forget_ready(key, &e, to);
        Some(e)
    }

    /// Accounts for a ready copy taken out of `ready`.
    fn forget_ready(&mut self, key: ReadyKey, e: &Entry, to: Option<Owner>) {
        self.bytes.sub(e.msg.body.len() as u64);
        if let Some(at) = e.expires_at {
            self.expiry.remove(&(at, key));
        }
        if let Some(g) = self.groups.as_deref_mut() {
            g.left(e.msg.group.as_ref(), key, to);
        }
    }

    /// Tells the group index that a waiting copy (delayed, or ready and
    /// already out of the expiry index) left without being delivered.
    pub(super) fn left_waiting(&mut self, e: &Entry) {
        if let Some(g) = self.groups.as_deref_mut() {
            g.left(e.msg.group.as_ref(), ready_key(e), None);
        }
    }

    pub(super) fn take_all(&mut self) -> Vec<Entry> {
        self.bytes.clear();
        self.expiry.clear();
        if let Some(g) = self.groups.as_deref_mut() {
            g.clear_waiting();
        }
        let mut out: Vec<Entry> = std::mem::take(&mut self.ready).into_values().collect();
        out.extend(std::mem::take(&mut self.delayed).into_values());
        out
    }
}
