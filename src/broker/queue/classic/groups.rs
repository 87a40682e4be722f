//! [`Groups`]: the delivery index of a queue declared with `groups`.
//!
//! A message group (`PUB group=<key>`) is delivered in queue order and to
//! one owner at a time: the subscription (or the connection's `GET`s) that
//! holds unsettled deliveries of it. The queue keeps every waiting copy in
//! its ready and delayed maps as usual; this index says which of them may
//! go next, and to whom, without scanning them:
//!
//! - each group knows its waiting copies in RAM, in ready-key order (the
//!   queue's order: priority, then position), whether each is ready or
//!   delayed, how many of its deliveries are unsettled and who owns it;
//! - only a group's first waiting copy, and only while that copy is ready,
//!   is *listed*: in `free` while nobody owns the group, else in its
//!   owner's set. A delayed first copy (a `NACK delay=` or `retry-delays`
//!   requeue, a `PUB delay=`) lists nothing, so the group waits for it;
//! - copies without a group are listed in `free` while ready, as on a
//!   plain queue.
//!
//! So the next copy for an owner is the smaller of the first key of `free`
//! and the first key of its own set: O(log n) per delivery, however long
//! one group's backlog is. A group leaves the index once it has neither
//! waiting copies in RAM nor unsettled deliveries, and an owner's set once
//! it is empty, so the index never outgrows what the queue holds.
//!
//! The queue's state lock guards this like the rest of the queue's state
//! (it lives in [`State`](super::state::State)).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::ReadyKey;

/// Who holds a group's unsettled deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Owner {
    /// A subscription, by consumer id.
    Sub(u64),
    /// A connection's `GET`s, by connection id.
    Get(u64),
}

#[derive(Debug, Default)]
struct Group {
    /// Its waiting copies in RAM by ready key: true when ready, false when
    /// delayed.
    waiting: BTreeMap<ReadyKey, bool>,
    /// Deliveries not settled yet.
    unacked: u32,
    /// Set while `unacked` > 0.
    owner: Option<Owner>,
    /// The key listed for it (its first waiting copy, when ready).
    listed: Option<ReadyKey>,
}

impl Group {
    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.unacked == 0
    }
}

/// The listed keys: of unowned groups (and ungrouped copies), and per owner.
#[derive(Debug, Default)]
struct Listed {
    free: BTreeSet<ReadyKey>,
    owned: HashMap<Owner, BTreeSet<ReadyKey>>,
}

impl Listed {
    fn unlist(&mut self, g: &mut Group) {
        let Some(key) = g.listed.take() else {
            return;
        };
        match g.owner {
            None => {
                self.free.remove(&key);
            }
            Some(o) => {
                if let Some(set) = self.owned.get_mut(&o) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.owned.remove(&o);
                    }
                }
            }
        }
    }

    /// Lists the group's first waiting copy if it is ready (and not
    /// listed already), in the set of its owner.
    fn relist(&mut self, g: &mut Group) {
        let head = g
            .waiting
            .first_key_value()
            .and_then(|(k, ready)| ready.then_some(*k));
        if head == g.listed {
            return;
        }
        self.unlist(g);
        if let Some(key) = head {
            match g.owner {
                None => self.free.insert(key),
                Some(o) => self.owned.entry(o).or_default().insert(key),
            };
            g.listed = Some(key);
        }
    }

    /// Gives the group to `owner` (or frees it), moving its listed key.
    fn set_owner(&mut self, g: &mut Group, owner: Option<Owner>) {
        if g.owner != owner {
            self.unlist(g);
            g.owner = owner;
            self.relist(g);
        }
    }
}

/// The delivery index of a `groups` queue (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Groups {
    groups: HashMap<Bytes, Group>,
    listed: Listed,
}

impl Groups {
    /// A copy at `key` waits in RAM (`ready`, or delayed); also called when
    /// a delayed copy becomes ready.
    pub(super) fn waiting(&mut self, group: Option<&Bytes>, key: ReadyKey, ready: bool) {
        let Some(name) = group else {
            if ready {
                self.listed.free.insert(key);
            }
            return;
        };
        let g = match self.groups.get_mut(name) {
            Some(g) => g,
            None => self.groups.entry(name.clone()).or_default(),
        };
        g.waiting.insert(key, ready);
        self.listed.relist(g);
    }

    /// The copy at `key` left RAM (taken, expired, dropped, paged out no
    /// more); `to`: it was delivered, and that owner now holds its group.
    pub(super) fn left(&mut self, group: Option<&Bytes>, key: ReadyKey, to: Option<Owner>) {
        let Some(name) = group else {
            self.listed.free.remove(&key);
            return;
        };
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        g.waiting.remove(&key);
        if let Some(owner) = to {
            g.unacked += 1;
            // Only the owner is offered an owned group's copies.
            if g.owner.is_none() {
                self.listed.set_owner(g, Some(owner));
            }
        }
        self.listed.relist(g);
        if g.idle() {
            self.groups.remove(name);
        }
    }

    /// A delivery of `group` was settled (whatever becomes of its copy: a
    /// requeued copy is `waiting` again right after). The last one frees
    /// the group.
    pub(super) fn settled(&mut self, group: Option<&Bytes>) {
        let Some(name) = group else {
            return;
        };
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        g.unacked = g.unacked.saturating_sub(1);
        if g.unacked == 0 {
            self.listed.set_owner(g, None);
        }
        if g.idle() {
            self.groups.remove(name);
        }
    }

    /// The first copy `owner` may take now: the smaller of the first free
    /// key and the first key of the groups it owns.
    pub(super) fn next_for(&self, owner: Owner) -> Option<ReadyKey> {
        let free = self.listed.free.first();
        let own = self.listed.owned.get(&owner).and_then(BTreeSet::first);
        match (free, own) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Every waiting copy left RAM at once (purge, delete): unsettled
    /// deliveries keep their groups owned.
    pub(super) fn clear_waiting(&mut self) {
        self.listed = Listed::default();
        self.groups.retain(|_, g| {
            g.waiting.clear();
            g.listed = None;
            g.unacked > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Groups, Owner};
    use bytes::Bytes;

    const A: Owner = Owner::Sub(1);
    const B: Owner = Owner::Sub(2);

    fn key(seq: u64) -> (u8, u64) {
        (u8::MAX, seq)
    }

    #[test]
    fn an_owned_group_is_offered_to_its_owner_only_and_freed_by_its_last_settle() {
        let g = Bytes::from_static(b"g");
        let mut ix = Groups::default();
        for seq in 1..=3 {
            ix.waiting(Some(&g), key(seq), true);
        }
        // Only the first copy of the group is listed.
        assert_eq!(ix.next_for(A), Some(key(1)));
        ix.left(Some(&g), key(1), Some(A));
        assert_eq!(ix.next_for(A), Some(key(2)));
        assert_eq!(ix.next_for(B), None, "A owns the group");
        ix.left(Some(&g), key(2), Some(A));
        ix.settled(Some(&g));
        assert_eq!(ix.next_for(B), None, "A still holds one delivery");
        ix.settled(Some(&g));
        assert_eq!(ix.next_for(B), Some(key(3)));
    }

    #[test]
    fn a_delayed_first_copy_holds_its_group_but_not_the_others() {
        let (g, h) = (Bytes::from_static(b"g"), Bytes::from_static(b"h"));
        let mut ix = Groups::default();
        ix.waiting(Some(&g), key(1), true);
        ix.waiting(Some(&g), key(2), true);
        ix.waiting(Some(&h), key(3), true);
        ix.waiting(None, key(4), true);
        ix.left(Some(&g), key(1), Some(A));
        ix.settled(Some(&g));
        // Requeued with a delay: back at its position, not ready.
        ix.waiting(Some(&g), key(1), false);
        assert_eq!(ix.next_for(B), Some(key(3)), "g waits; h goes");
        ix.left(Some(&h), key(3), Some(B));
        assert_eq!(ix.next_for(A), Some(key(4)), "a copy without a group goes");
        ix.left(None, key(4), Some(A));
        assert_eq!(ix.next_for(A), None);
        // The delay passed.
        ix.waiting(Some(&g), key(1), true);
        assert_eq!(ix.next_for(A), Some(key(1)));
        assert_eq!(ix.next_for(B), Some(key(1)));
    }

    #[test]
    fn idle_groups_and_empty_owner_sets_are_forgotten() {
        let g = Bytes::from_static(b"g");
        let mut ix = Groups::default();
        ix.waiting(Some(&g), key(1), true);
        ix.waiting(Some(&g), key(2), true);
        ix.left(Some(&g), key(1), Some(A));
        assert_eq!(ix.listed.owned.len(), 1);
        ix.left(Some(&g), key(2), Some(A));
        assert!(ix.listed.owned.is_empty());
        ix.settled(Some(&g));
        ix.settled(Some(&g));
        assert!(ix.groups.is_empty());
        // A purge keeps the ownership of unsettled deliveries only.
        ix.waiting(Some(&g), key(3), true);
        ix.waiting(Some(&g), key(4), true);
        ix.left(Some(&g), key(3), Some(B));
        ix.clear_waiting();
        assert_eq!(ix.groups.len(), 1);
        assert_eq!(ix.next_for(A), None);
        ix.settled(Some(&g));
        assert!(ix.groups.is_empty());
    }
}
