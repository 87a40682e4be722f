//! Consensus groups' logs on the message log: what a replicated queue's
//! Raft group needs of a log store (issue 17's "ready for replication";
//! openraft's `RaftLogStorage` maps onto it one call for one): entries
//! appended at the next index with their term, read by range, truncated
//! after an index, purged up to one, and a saved vote, all made durable by
//! the same group commit as the queues, in the order they were made.
//!
//! A group's operations go into the round's control entry (`ops.rs`,
//! GAPPEND ... GDROP), so they share the one write and fdatasync of the
//! write-ahead file. A group's entries stay in RAM until a checkpoint,
//! which writes each group changed since the last one to a file of its
//! own, whole (`log::group`: a temporary file, fdatasync'd, renamed), and
//! then reads them from there. A group file says how far into the
//! write-ahead files it is up to date, so a start replays a group's
//! operations only past that point, in order. Groups are meant to stay
//! short: a Raft log is purged behind its snapshots.
//!
//! [`GroupView`] is one group in RAM (pure: no files here).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::super::log::group::{GroupHead, Placed};
use super::ops::Op;
use crate::store::StoreError;

/// A position in the write-ahead files: (generation, control entry index).
pub(super) type Through = (u64, u64);

/// One entry of a group's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    /// Its index: consecutive, never 0.
    pub(crate) index: u64,
    /// The term it was written in.
    pub(crate) term: u64,
    /// The caller's bytes.
    pub(crate) payload: Bytes,
}

/// A group's log summed up: `(index, term)` of the last entry purged and
/// of the last entry (the purged one when none is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GroupState {
    pub(crate) purged: Option<(u64, u64)>,
    pub(crate) last: Option<(u64, u64)>,
}

/// Where an entry's payload is.
#[derive(Debug, Clone)]
pub(super) enum Loc {
    /// In RAM: not in the group's file yet.
    Mem(Bytes),
    /// In the group's current file.
    File(Placed),
}

/// One group's log in RAM (see the module docs).
#[derive(Debug)]
pub(super) struct GroupView {
    purged: Option<(u64, u64)>,
    /// The index of `entries[0]`.
    first: u64,
    /// Each entry's term and place, in index order.
    entries: VecDeque<(u64, Loc)>,
    vote: Option<Bytes>,
    /// The generation of the group's current file, if it has one.
    pub(super) file: Option<u64>,
    /// Changed since its file was written.
    dirty: bool,
    /// How far its current file is up to date.
    pub(super) through: Through,
}

/// What a checkpoint writes of a group: its head and entries as of the
/// round it was taken with.
#[derive(Debug)]
pub(super) struct GroupSnapshot {
    pub(super) group: u64,
    pub(super) head: GroupHead,
    /// `(index, term, place)`, from `head.first` on.
    pub(super) entries: Vec<(u64, u64, Loc)>,
    /// The file the `Loc::File` places are in.
    pub(super) file: Option<u64>,
}

/// A refusal: the operation does not fit the log as it stands.
fn refused(group: u64, what: String) -> StoreError {
    StoreError::OutOfOrder(format!("group {group}: {what}"))
}

impl GroupView {
    /// An empty log.
    pub(super) fn new() -> GroupView {
        GroupView {
            purged: None,
            first: 1,
            entries: VecDeque::new(),
            vote: None,
            file: None,
            dirty: false,
            through: (0, 0),
        }
    }

    /// An empty log that no write-ahead operation is replayed onto (a
    /// damaged group's, which starts over empty).
    pub(super) fn covering_everything() -> GroupView {
        GroupView {
            through: (u64::MAX, u64::MAX),
            ..GroupView::new()
        }
    }

    /// The log its file holds (`placed`: its entries), file generation
    /// `file`.
    pub(super) fn from_file(head: GroupHead, placed: Vec<Placed>, file: u64) -> GroupView {
        GroupView {
            purged: head.purged,
            first: head.first,
            entries: placed.into_iter().map(|p| (p.term, Loc::File(p))).collect(),
            vote: head.vote.map(Bytes::from),
            file: Some(file),
            dirty: false,
            through: head.through,
        }
    }

    /// The index the next entry must have.
    pub(super) fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The log summed up.
    pub(super) fn state(&self) -> GroupState {
        GroupState {
            purged: self.purged,
            last: self
                .entries
                .back()
                .map(|(term, _)| (self.next() - 1, *term))
                .or(self.purged),
        }
    }

    /// The saved vote.
    pub(super) fn vote(&self) -> Option<Bytes> {
        self.vote.clone()
    }

    /// Whether it holds nothing at all (no entry, nothing purged, no vote).
    pub(super) fn is_blank(&self) -> bool {
        self.entries.is_empty() && self.purged.is_none() && self.vote.is_none()
    }

    /// The term of entry `index`, if it is in the log.
    pub(super) fn term_at(&self, index: u64) -> Option<u64> {
        let at = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.entries.get(at).map(|(t, _)| *t)
    }

    /// Whether entries `(index, term)`, in this order, may be appended:
    /// each must be the next one (the first of a log that never had any
    /// purged may have any index but 0), of a term no older than the one
    /// before it. Changes nothing.
    pub(super) fn check(
        &self,
        group: u64,
        entries: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<(), StoreError> {
        let blank = self.state().last.is_none();
        let mut next = self.next();
        let mut last_term = self.state().last.map(|(_, t)| t);
        for (i, (index, term)) in entries.into_iter().enumerate() {
            if i == 0 && blank && index > 0 {
                next = index;
            }
            if index != next {
                return Err(refused(
                    group,
                    format!("entry {index} appended where {next} is next"),
                ));
            }
            if let Some(last) = last_term.filter(|l| term < *l) {
                return Err(refused(
                    group,
                    format!("entry {index} of term {term} after one of term {last}"),
                ));
            }
            next += 1;
            last_term = Some(term);
        }
        Ok(())
    }

    /// Appends entry `index` of `term` (see [`GroupView::check`]).
    pub(super) fn append(
        &mut self,
        group: u64,
        index: u64,
        term: u64,
        payload: Bytes,
    ) -> Result<(), StoreError> {
        self.check(group, [(index, term)])?;
        if self.entries.is_empty() && self.purged.is_none() {
            self.first = index;
        }
        self.entries.push_back((term, Loc::Mem(payload)));
        self.dirty = true;
        Ok(())
    }

    /// Removes the entries from `since` on (nothing if there are none);
    /// a purged entry cannot be.
    pub(super) fn truncate(&mut self, group: u64, since: u64) -> Result<(), StoreError> {
        if since < self.first {
            return Err(refused(
                group,
                format!(
                    "truncation at {since}, before the first entry {}",
                    self.first
                ),
            ));
        }
        let keep = usize::try_from(since - self.first).unwrap_or(usize::MAX);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
        Ok(())
    }

    /// Removes the entries up to `upto`, of term `term`: an entry of the
    /// log must have that term; past the last entry, the log is left empty
    /// and starts after `upto` (a follower that installed a snapshot).
    /// Nothing to do when it is purged already. False when nothing changed.
    pub(super) fn purge(&mut self, group: u64, upto: u64, term: u64) -> Result<bool, StoreError> {
        if self.purged.is_some_and(|(index, _)| upto <= index) || upto < self.first {
            return Ok(false);
        }
        if let Some(found) = self.term_at(upto) {
            if found != term {
                return Err(refused(
                    group,
                    format!("purge up to {upto} of term {term}, but its term is {found}"),
                ));
            }
        }
        let n = usize::try_from(upto + 1 - self.first).unwrap_or(usize::MAX);
        self.entries.drain(..n.min(self.entries.len()));
        self.first = upto + 1;
        self.purged = Some((upto, term));
        self.dirty = true;
        Ok(true)
    }

    /// Saves the vote.
    pub(super) fn set_vote(&mut self, vote: Bytes) {
        self.vote = Some(vote);
        self.dirty = true;
    }

    /// What reading `from..to` needs: each entry's index, term and place
    /// (the entries there are: a log that never had any purged may start
    /// after 1), or a refusal when `from` is purged.
    pub(super) fn plan(
        &self,
        group: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64, Loc)>, StoreError> {
        if self.purged.is_some_and(|(index, _)| from <= index) && from < to {
            return Err(refused(
                group,
                format!("read from {from}, before the first entry {}", self.first),
            ));
        }
        let to = to.min(self.next());
        Ok((from.max(self.first)..to)
            .filter_map(|i| {
                let at = usize::try_from(i - self.first).ok()?;
                self.entries
                    .get(at)
                    .map(|(term, loc)| (i, *term, loc.clone()))
            })
            .collect())
    }

    /// What a checkpoint writes of it, if it changed since its file was
    /// written (taken with the round of position `through`).
    pub(super) fn snapshot(&mut self, group: u64, through: Through) -> Option<GroupSnapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.through = through;
        let entries = (self.first..)
            .zip(&self.entries)
            .map(|(i, (term, loc))| (i, *term, loc.clone()))
            .collect();
        Some(GroupSnapshot {
            group,
            head: GroupHead {
                purged: self.purged,
                vote: self.vote.as_ref().map(|v| v.to_vec()),
                first: self.first,
                count: self.entries.len() as u64,
                through,
            },
            entries,
            file: self.file,
        })
    }

    /// Its file `file` was written from a snapshot, with the entries at
    /// `placed`: the entries still the same (same index and term) are read
    /// from there from now on.
    pub(super) fn file_written(&mut self, file: u64, placed: &[Placed]) {
        for p in placed {
            let Some(at) = p
                .index
                .checked_sub(self.first)
                .and_then(|a| usize::try_from(a).ok())
            else {
                continue;
            };
            if let Some(e) = self.entries.get_mut(at) {
                if e.0 == p.term {
                    e.1 = Loc::File(*p);
                }
            }
        }
        self.file = Some(file);
    }
}

/// Replays `op`, read from the write-ahead files at position `at`, onto
/// `groups` when it is a group operation the group's file does not cover
/// yet; false for any other operation. An operation that does not fit the
/// log is corruption: it fitted when it was made.
pub(super) fn replay(
    groups: &mut HashMap<u64, GroupView>,
    at: Through,
    op: &Op<'_>,
) -> Result<bool, StoreError> {
    let g = match op {
        Op::GroupAppend { group, .. }
        | Op::GroupTruncate { group, .. }
        | Op::GroupPurge { group, .. }
        | Op::GroupVote { group, .. }
        | Op::GroupDrop { group } => *group,
        _ => return Ok(false),
    };
    if groups.get(&g).is_some_and(|v| at <= v.through) {
        return Ok(true);
    }
    let corrupt = |e: StoreError| {
        StoreError::Corrupt(format!(
            "write-ahead generation {} entry {}: {e}",
            at.0, at.1
        ))
    };
    match op {
        Op::GroupAppend {
            index,
            term,
            payload,
            ..
        } => {
            let view = groups.entry(g).or_insert_with(GroupView::new);
            view.append(g, *index, *term, Bytes::copy_from_slice(payload))
                .map_err(corrupt)?;
        }
        Op::GroupTruncate { since, .. } => {
            let view = groups.entry(g).or_insert_with(GroupView::new);
            view.truncate(g, *since).map_err(corrupt)?;
        }
        Op::GroupPurge { upto, term, .. } => {
            let view = groups.entry(g).or_insert_with(GroupView::new);
            view.purge(g, *upto, *term).map_err(corrupt)?;
        }
        Op::GroupVote { vote, .. } => {
            let view = groups.entry(g).or_insert_with(GroupView::new);
            view.set_vote(Bytes::copy_from_slice(vote));
        }
        _ => {
            groups.remove(&g);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: u64) -> Bytes {
        Bytes::from(format!("entry {i}"))
    }

    #[test]
    fn a_group_log_appends_truncates_and_purges_as_a_raft_log_does() {
        let mut g = GroupView::new();
        assert_eq!(g.state(), GroupState::default());
        for i in 1..=5 {
            g.append(1, i, 1, body(i)).unwrap();
        }
        // A log that never had any purged may start anywhere.
        let mut h = GroupView::new();
        h.append(1, 5, 1, body(5)).unwrap();
        assert_eq!(h.state().last, Some((5, 1)));
        assert!(h.append(1, 7, 1, body(7)).is_err());
        // Only the next index, and never an older term.
        assert!(g.append(1, 7, 1, body(7)).is_err());
        assert!(g.append(1, 5, 1, body(5)).is_err());
        g.append(1, 6, 2, body(6)).unwrap();
        assert!(g.append(1, 7, 1, body(7)).is_err());
        // A batch is checked whole: a term going back, or a gap, anywhere.
        assert!(g.check(1, [(7, 2), (8, 3)]).is_ok());
        assert!(g.check(1, [(7, 3), (8, 2)]).is_err());
        assert!(g.check(1, [(7, 2), (9, 2)]).is_err());
        assert_eq!(g.state().last, Some((6, 2)));
        // A follower's conflicting suffix goes; the next append replaces it.
        g.truncate(1, 4).unwrap();
        g.truncate(1, 9).unwrap();
        assert_eq!(g.state().last, Some((3, 1)));
        g.append(1, 4, 3, body(40)).unwrap();
        assert_eq!(g.term_at(4), Some(3));
        // Purged up to 2: reads before 3 are refused, the state keeps it.
        assert!(g.purge(1, 2, 2).is_err(), "entry 2's term is 1");
        assert!(g.purge(1, 2, 1).unwrap());
        assert!(!g.purge(1, 1, 1).unwrap(), "already purged: nothing to do");
        assert!(g.truncate(1, 2).is_err());
        assert!(g.plan(1, 2, 5).is_err());
        let got: Vec<(u64, u64)> = g
            .plan(1, 3, 99)
            .unwrap()
            .iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(got, [(3, 1), (4, 3)]);
        assert!(g.purge(1, 4, 3).unwrap());
        assert_eq!(
            g.state(),
            GroupState {
                purged: Some((4, 3)),
                last: Some((4, 3))
            }
        );
        assert_eq!(g.next(), 5);
        assert!(g.plan(1, 5, 9).unwrap().is_empty());
        // Past the last entry (a snapshot installed): the log starts after it.
        assert!(g.purge(1, 20, 5).unwrap());
        assert_eq!(g.state().last, Some((20, 5)));
        assert_eq!(g.next(), 21);
        g.append(1, 21, 5, body(21)).unwrap();
        g.set_vote(Bytes::from_static(b"v"));
        assert!(!g.is_blank());
    }

    #[test]
    fn a_snapshot_takes_what_changed_and_the_written_file_serves_the_same_entries() {
        let mut g = GroupView::new();
        for i in 1..=3 {
            g.append(1, i, 1, body(i)).unwrap();
        }
        let snap = g.snapshot(1, (2, 9)).unwrap();
        assert!(g.snapshot(1, (2, 10)).is_none(), "nothing changed since");
        assert_eq!(
            (snap.head.first, snap.head.count, snap.head.through),
            (1, 3, (2, 9))
        );
        // Entry 3 is replaced before the file lands: it stays in RAM.
        g.truncate(1, 3).unwrap();
        g.append(1, 3, 2, body(30)).unwrap();
        let placed: Vec<Placed> = snap
            .entries
            .iter()
            .map(|(index, term, _)| Placed {
                index: *index,
                term: *term,
                offset: 100 * index,
                size: 10,
            })
            .collect();
        g.file_written(7, &placed);
        assert_eq!(g.file, Some(7));
        let plan = g.plan(1, 1, 4).unwrap();
        assert!(matches!(plan[0].2, Loc::File(Placed { offset: 100, .. })));
        assert!(matches!(&plan[2].2, Loc::Mem(b) if b == &body(30)));
        assert!(
            g.snapshot(1, (3, 1)).is_some(),
            "the replaced entry is a change"
        );
    }
}
