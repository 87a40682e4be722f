//! [`Readers`]: a stream's subscriptions and the groups they read as. A
//! [`Group`] has a cursor (the next offset to read), the offsets in
//! flight (delivered, unacked) and the offsets to deliver again (nacked or
//! returned); its committed offset is the lowest offset not yet done. One
//! member is active at a time ([`Readers::rebalance`]), and delivery
//! ([`Readers::dispatch_group`]) feeds it while it has credit.
//!
//! A group also counts, per offset, its deliveries that ended without an
//! ack ([`Group::failed`]): what `delivery-limit=` is checked against
//! (`Stream::settle`). Only offsets that failed at least once are kept,
//! in memory only (a replicated stream's log also records them:
//! [`Group::count_failed`]), and forgotten once the committed offset
//! passes them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::log::{load, readable, Log, READ_PAGE};
use crate::broker::message::Entry;
use crate::broker::queue::{Consumer, Delivery, Push, Queue};
use crate::protocol::reply::Notice;

/// Body bytes a group reads ahead from the store at most (a page of
/// smaller messages, or fewer larger ones; at least one).
const READ_AHEAD_BYTES: u64 = 256 * 1024;

/// A group's key: its name, or `\0<consumer id>` for a private reader's
/// (names cannot hold a NUL).
pub(super) type GroupKey = Arc<str>;

/// A group key for consumer `id`'s private reader.
pub(super) fn private_key(id: u64) -> GroupKey {
    Arc::from(format!("\0{id}"))
}

/// A subscription to a stream and the group it reads as.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) c: Consumer,
    pub(super) group: GroupKey,
}

#[derive(Debug)]
pub(super) struct Group {
    /// Named groups store their committed offset.
    pub(super) named: bool,
    /// The lowest offset not yet done.
    pub(super) committed: u64,
    /// What the store holds (named groups).
    pub(super) stored: u64,
    /// The next offset to read.
    pub(super) cursor: u64,
    /// Read ahead from the store for the cursor (old data), in offset
    /// order: at most a page, and at most [`READ_AHEAD_BYTES`].
    ahead: VecDeque<Entry>,
    /// Delivered, unsettled: offset → consumer id.
    pub(super) in_flight: BTreeMap<u64, u64>,
    /// To deliver again: offset → whether it was written before.
    pub(super) again: BTreeMap<u64, bool>,
    /// Deliveries that ended without an ack (`NACK` with requeue, an ack
    /// timeout, the connection lost): offset → how many, for offsets not
    /// yet done only.
    failed: BTreeMap<u64, u32>,
    /// Member consumer ids, ascending.
    pub(super) members: Vec<u64>,
    /// The member that receives.
    active: Option<u64>,
    /// The member told `NOTICE inactive` while its deliveries settle.
    leaving: Option<u64>,
    /// Offsets below this may have been delivered by another node (a
    /// replicated stream's earlier leader): flagged `redelivered`.
    pub(super) seen_below: u64,
}

impl Group {
    /// The member that receives now, if any.
    pub(super) fn active(&self) -> Option<u64> {
        self.active
    }

    pub(super) fn new(named: bool, at: u64) -> Group {
        Group {
            named,
            committed: at,
            stored: at,
            cursor: at,
            ahead: VecDeque::new(),
            in_flight: BTreeMap::new(),
            again: BTreeMap::new(),
            failed: BTreeMap::new(),
            members: Vec::new(),
            active: None,
            leaving: None,
            seen_below: 0,
        }
    }

    /// Recomputes the committed offset; true when it moved.
    pub(super) fn recommit(&mut self) -> bool {
        let low = self.committed_without(&[]);
        let moved = low != self.committed;
        self.committed = low;
        if moved {
            self.failed = self.failed.split_off(&low);
        }
        moved
    }

    /// The committed offset once the deliveries in flight at `acked` are
    /// done with too: the lowest offset still in flight or to deliver
    /// again, or the cursor.
    pub(super) fn committed_without(&self, acked: &[u64]) -> u64 {
        let in_flight = self.in_flight.keys().find(|o| !acked.contains(o));
        [
            in_flight.copied(),
            self.again.keys().next().copied(),
            Some(self.cursor),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.cursor)
    }

    /// Counts one more delivery of `offset` that ended without an ack;
    /// returns how many there have been.
    pub(super) fn failed(&mut self, offset: u64) -> u32 {
        let n = self.failed.entry(offset).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// A replicated stream's log counted `count` failed deliveries of
    /// `offset` (an earlier leader's): counts on from there.
    pub(super) fn count_failed(&mut self, offset: u64, count: u32) {
        if offset >= self.committed {
            let n = self.failed.entry(offset).or_insert(0);
            *n = (*n).max(count);
        }
    }

    /// `offset` is done with (acked, rejected or dead-lettered): its
    /// count goes.
    pub(super) fn done(&mut self, offset: u64) {
        self.failed.remove(&offset);
    }

    /// Moves the group to `at`, forgetting what it had in flight (those
    /// deliveries' acks only give their credit back).
    pub(super) fn reset(&mut self, at: u64) {
        self.ahead.clear();
        self.in_flight.clear();
        self.again.clear();
        self.failed.clear();
        self.cursor = at;
        self.committed = at;
    }

    /// A replicated stream's log says every offset below `at` is done
    /// (acked through a node that led the stream a moment ago, whose
    /// commit this node's log took after it began to lead): those are no
    /// longer delivered again or counted in flight (their acks only give
    /// credit back), and the group reads on from `at` at the earliest.
    pub(super) fn advance(&mut self, at: u64) {
        if at <= self.committed {
            return;
        }
        self.again.retain(|o, _| *o >= at);
        self.in_flight.retain(|o, _| *o >= at);
        while self.ahead.front().is_some_and(|e| e.seq < at) {
            self.ahead.pop_front();
        }
        self.cursor = self.cursor.max(at);
        self.stored = self.stored.max(at);
        self.recommit();
    }

    /// The log now starts at `first`: nothing before it is read or
    /// delivered again.
    fn cut_before(&mut self, first: u64) {
        if self.cursor < first {
            self.cursor = first;
        }
        self.again.retain(|off, _| *off >= first);
        while self.ahead.front().is_some_and(|e| e.seq < first) {
            self.ahead.pop_front();
        }
        self.recommit();
    }

    /// Puts back, in offset order, messages [`Group::read`] returned but
    /// that were not delivered: they are the next to read.
    fn unread(&mut self, back: impl DoubleEndedIterator<Item = Entry>) {
        for e in back.rev() {
            self.ahead.push_front(e);
        }
    }

    /// Up to `n` messages from the cursor on: from the recent window, or
    /// from what the group read ahead from the store, reading the next
    /// stretch when that is used up (one store read per stretch, not per
    /// message).
    fn read(&mut self, log: &Log, q: &Queue, n: usize) -> Vec<Entry> {
        let from = self.cursor.max(log.first);
        while self.ahead.front().is_some_and(|e| e.seq < from) {
            self.ahead.pop_front();
        }
        if self.ahead.is_empty() {
            if log.recent.front().is_some_and(|head| from >= head.seq) {
                return log.recent_from(from, n);
            }
            // Old data: a stretch up to the recent window.
            let avg = (log.bytes / log.count.max(1)).max(1);
            let page = (READ_AHEAD_BYTES / avg).clamp(1, READ_PAGE as u64) as usize;
            let to = log.recent.front().map_or(log.end, |head| head.seq);
            let Some(found) = load(q, from, to, page) else {
                return Vec::new();
            };
            self.ahead.extend(readable(&found));
            if self.ahead.is_empty() && to < log.end {
                // Only holes before the recent window: go on from there.
                self.cursor = to;
                return log.recent_from(to, n);
            }
        }
        let k = n.min(self.ahead.len());
        self.ahead.drain(..k).collect()
    }
}

/// A stream's subscriptions (in consumer id order) and groups.
#[derive(Debug, Default)]
pub(super) struct Readers {
    /// The subscriptions, by consumer id.
    pub(super) list: Vec<Reader>,
    pub(super) groups: HashMap<GroupKey, Group>,
}

impl Readers {
    /// The group that has `offset` in flight for consumer `id`, if any.
    pub(super) fn holding(&self, offset: u64, id: u64) -> Option<&GroupKey> {
        self.groups
            .iter()
            .find(|(_, g)| g.in_flight.get(&offset) == Some(&id))
            .map(|(k, _)| k)
    }

    /// Deliveries in flight, all groups.
    pub(super) fn in_flight(&self) -> u64 {
        self.groups.values().map(|g| g.in_flight.len() as u64).sum()
    }

    /// The log now starts at `first` (retention cut its front).
    pub(super) fn cut_before(&mut self, first: u64) {
        for g in self.groups.values_mut() {
            g.cut_before(first);
        }
    }

    /// Picks the group's active member (on a partition, member `index %
    /// members`); a change waits for the old active member's in-flight
    /// deliveries to settle.
    pub(super) fn rebalance(&mut self, key: &GroupKey, partition: Option<u32>) {
        let index = partition.unwrap_or(0) as usize;
        let Readers { groups, list } = self;
        let Some(g) = groups.get_mut(key) else {
            return;
        };
        let wanted = match g.members.len() {
            0 => None,
            n => Some(g.members[index % n]),
        };
        if g.active == wanted {
            return;
        }
        let notify = |id: u64, active: bool| {
            if let Some(r) = list.iter().find(|r| r.c.id == id) {
                let tag = r.c.tag.to_string();
                let n = if active {
                    Notice::Active { tag, partition }
                } else {
                    Notice::Inactive { tag, partition }
                };
                let _ = r.c.tx.send(Push::Notice(n));
            }
        };
        if let Some(old) = g.active {
            // A member still there is told it stops receiving; one that
            // left is not.
            let told = g.leaving == Some(old);
            if !told && g.named && g.members.contains(&old) {
                notify(old, false);
            }
            if g.in_flight.values().any(|c| *c == old) {
                // It receives nothing more; the next takes over once its
                // deliveries are settled.
                g.leaving = Some(old);
                return;
            }
        }
        g.active = wanted;
        g.leaving = None;
        if let (Some(new), true) = (wanted, g.named) {
            notify(new, true);
        }
    }

    /// Delivers to every group's active member while it has credit.
    pub(super) fn dispatch(&mut self, q: &Arc<Queue>, log: &Log) {
        let keys: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| g.active.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.dispatch_group(q, log, &key);
        }
    }

    /// Delivers group `key`'s offsets to deliver again, then the cursor's,
    /// to its active member while it has credit.
    pub(super) fn dispatch_group(&mut self, q: &Arc<Queue>, log: &Log, key: &GroupKey) {
        loop {
            let Some(g) = self.groups.get(key) else {
                return;
            };
            let Some(active) = g.active else {
                return;
            };
            let seen_below = g.seen_below;
            if g.leaving.is_some() {
                return;
            }
            let Some(ri) = self.list.iter().position(|r| r.c.id == active) else {
                return;
            };
            if !self.list[ri].c.may_take() {
                return;
            }
            let credit = self.list[ri].c.credit as usize;
            // Offsets to deliver again come first, then the cursor's.
            let (batch, again) = match g.again.first_key_value() {
                Some((&off, &redelivered)) => {
                    let found = log.read(q, off, 1);
                    let failed = g.failed.get(&off).copied().unwrap_or(0);
                    match found.into_iter().next() {
                        Some(e) if e.seq == off => (vec![e], Some((redelivered, failed))),
                        _ => {
                            if let Some(g) = self.groups.get_mut(key) {
                                g.again.remove(&off);
                            }
                            continue;
                        }
                    }
                }
                None if g.cursor < log.end => {
                    let page = match self.groups.get_mut(key) {
                        Some(g) => g.read(log, q, credit.min(READ_PAGE)),
                        None => Vec::new(),
                    };
                    if page.is_empty() {
                        // Only holes (abandoned offsets) up to the end.
                        if let Some(g) = self.groups.get_mut(key) {
                            g.cursor = log.end;
                            g.recommit();
                        }
                        return;
                    }
                    (page, None)
                }
                None => return,
            };
            let mut batch = batch.into_iter();
            while let Some(mut e) = batch.next() {
                // An offset read again from the cursor may have failed on
                // a replicated stream's earlier leader (its log's count).
                let counted = self
                    .groups
                    .get(key)
                    .and_then(|g| g.failed.get(&e.seq).copied())
                    .unwrap_or(0);
                let r = &mut self.list[ri];
                let size = e.msg.body.len() as u64;
                if !r.c.has_room_for(size) {
                    // The byte budget is used up: what was read and not
                    // sent goes back (a redelivery stays in `again`).
                    if let (None, Some(g)) = (again, self.groups.get_mut(key)) {
                        g.unread(std::iter::once(e).chain(batch));
                    }
                    return;
                }
                let seq = e.seq;
                // Its deliveries: one for this, one per failed one (at
                // least one before if it comes again or may have).
                let before = u32::from(again.is_some() || seq < seen_below);
                let failed = again.map_or(counted, |(_, n)| n);
                e.redelivered = again.map_or(seq < seen_below, |(r, _)| r);
                e.deliveries = 1 + before.max(failed);
                let d = Delivery {
                    queue: q.clone(),
                    consumer_id: r.c.id,
                    tag: r.c.tag.clone(),
                    auto_ack: r.c.auto_ack,
                    entry: e,
                };
                if r.c.tx.send(Push::Deliver(d)).is_err() {
                    // The connection is gone: drop its reader; what was
                    // not sent stays where it was.
                    let gone = self.list.remove(ri);
                    if let Some(g) = self.groups.get_mut(&gone.group) {
                        g.members.retain(|m| *m != gone.c.id);
                    }
                    self.rebalance(key, q.partition);
                    break;
                }
                r.c.took(size);
                q.delivered(1);
                if let Some(g) = self.groups.get_mut(key) {
                    g.in_flight.insert(seq, active);
                    if again.is_some() {
                        g.again.remove(&seq);
                    } else {
                        g.cursor = seq + 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Group;

    #[test]
    fn a_group_moves_forward_to_a_committed_offset_and_never_back() {
        let mut g = Group::new(true, 10);
        g.cursor = 16;
        for off in 10..14 {
            g.in_flight.insert(off, 7);
        }
        g.again.insert(14, true);
        g.again.insert(15, true);
        assert!(!g.recommit(), "committed stays at 10");
        // The log says everything below 13 is done.
        g.advance(13);
        assert_eq!(g.in_flight.keys().copied().collect::<Vec<_>>(), vec![13]);
        assert_eq!(g.again.keys().copied().collect::<Vec<_>>(), vec![14, 15]);
        assert_eq!((g.committed, g.stored, g.cursor), (13, 13, 16));
        // An older commit (or a SEEK back) does not move it back.
        g.advance(11);
        assert_eq!((g.committed, g.cursor), (13, 16));
        // Past everything: the cursor moves up too.
        g.advance(20);
        assert!(g.in_flight.is_empty() && g.again.is_empty());
        assert_eq!((g.committed, g.cursor), (20, 20));
    }

    #[test]
    fn the_commit_acks_would_make_covers_the_offsets_acked_in_order_only() {
        let mut g = Group::new(true, 5);
        g.cursor = 9;
        for off in 5..8 {
            g.in_flight.insert(off, 7);
        }
        g.again.insert(8, true);
        assert_eq!(g.committed_without(&[]), 5);
        assert_eq!(g.committed_without(&[5]), 6);
        // Above an offset still in flight: nothing moves yet.
        assert_eq!(g.committed_without(&[6, 7]), 5);
        // Everything in flight: up to the one to deliver again.
        assert_eq!(g.committed_without(&[5, 6, 7]), 8);
        g.again.clear();
        assert_eq!(g.committed_without(&[7, 5, 6]), 9, "up to the cursor");
        // Nothing was acked by asking.
        assert_eq!(g.in_flight.len(), 3);
        assert!(!g.recommit());
        assert_eq!(g.committed, 5);
    }

    #[test]
    fn failed_deliveries_are_counted_per_offset_and_forgotten_once_committed() {
        let mut g = Group::new(true, 1);
        g.cursor = 4;
        for off in 1..4 {
            g.in_flight.insert(off, 7);
        }
        assert_eq!((g.failed(1), g.failed(1), g.failed(3)), (1, 2, 1));
        // 1 is done (acked, or given up): its count goes; 3's stays.
        g.in_flight.remove(&1);
        g.done(1);
        assert!(g.recommit());
        assert_eq!(g.failed.keys().copied().collect::<Vec<_>>(), vec![3]);
        // The committed offset passes 3 (the log says it is done): pruned.
        g.advance(4);
        assert!(g.failed.is_empty());
        // A SEEK forgets every count.
        g.failed(5);
        g.reset(1);
        assert!(g.failed.is_empty());
    }
}
