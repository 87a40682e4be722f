//! A replicated queue's side of a transaction (`TX COMMIT` across
//! replicated queues, see `transaction.rs`): the *prepare* entry that
//! carries the queue's part of transaction T ([`Prepare`]), the *resolve*
//! entry that applies or drops it ([`Resolve`]), and what each member's
//! state machine keeps meanwhile ([`Prepared`]): the parts not resolved
//! yet, invisible to consumers, and the copies they settle, held (not
//! delivered again) while T is undecided.
//!
//! Everything here is decided from the log alone, so that every member
//! keeps the same parts; only [`Prepared::stale`] (which parts this
//! node's leader asks the metadata group about) reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stream_replica::GroupOffset;
use crate::broker::ReplicaMessage;

/// Transaction `tx`'s part in one replicated queue: kept aside by every
/// member until a [`Resolve`] of `tx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Prepare {
    /// The transaction's id (unique in the cluster).
    pub(super) tx: String,
    /// Copies to enqueue, in publish order, if it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) enqueue: Vec<ReplicaMessage>,
    /// Positions of delivered copies it acks, if it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) settle: Vec<u64>,
    /// On a stream: the group commits its acks make, if it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) offsets: Vec<GroupOffset>,
    /// With `settle` or `offsets`: the term in which the coordinator led
    /// the group and took those deliveries. An entry of another term is refused: another
    /// leader came between, and may have delivered the copies again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) term: Option<u64>,
}

/// The outcome of transaction `tx`, as the metadata group recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Resolve {
    /// The transaction's id.
    pub(super) tx: String,
    /// Committed (apply the part) or aborted (drop it).
    pub(super) commit: bool,
}

/// Why a member refused a [`Prepare`] (every member alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// Appended in another term than its deliveries were taken in.
    Term,
    /// A copy it acks is settled already, or held by another transaction.
    Settled(u64),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Term => f.write_str("the queue's lead moved since its deliveries were made"),
            Refused::Settled(seq) => write!(f, "the delivery at position {seq} is settled already"),
        }
    }
}

/// The parts a queue's members keep until their transactions resolve.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// By transaction, with when this node applied (or read back) each.
    parts: BTreeMap<String, (Prepare, Instant)>,
    /// The positions the parts settle, each with its transaction.
    held: BTreeMap<u64, String>,
    /// Held copies this node's leader view does not show (it took the
    /// lead while they were held): an abort shows them.
    hidden: BTreeSet<u64>,
    /// Transactions this node's leader is asking the metadata group about.
    asking: BTreeSet<String>,
    /// The copies the parts would enqueue, and their body bytes: room a
    /// `reject-publish` queue holds for them.
    reserved: (u64, u64),
}

impl Prepared {
    /// Keeps part `p` (appended in term `term`); `unsettled` says whether
    /// a position is a copy not settled yet. A part kept already changes
    /// nothing.
    pub(super) fn prepare(
        &mut self,
        p: Prepare,
        term: u64,
        unsettled: impl Fn(u64) -> bool,
    ) -> Result<(), Refused> {
        if self.parts.contains_key(&p.tx) {
            return Ok(());
        }
        if p.term.is_some_and(|t| t != term) {
            return Err(Refused::Term);
        }
        if let Some(seq) = p
            .settle
            .iter()
            .find(|s| !unsettled(**s) || self.held.contains_key(s))
        {
            return Err(Refused::Settled(*seq));
        }
        self.keep(p, Instant::now());
        Ok(())
    }

    /// Keeps part `p`, applied (or read back) at `at`.
    fn keep(&mut self, p: Prepare, at: Instant) {
        for s in &p.settle {
            self.held.insert(*s, p.tx.clone());
        }
        let (n, bytes) = room(&p);
        self.reserved = (self.reserved.0 + n, self.reserved.1.saturating_add(bytes));
        self.parts.insert(p.tx.clone(), (p, at));
    }

    /// Whether transaction `tx`'s part is kept.
    pub(super) fn keeps(&self, tx: &str) -> bool {
        self.parts.contains_key(tx)
    }

    /// The copies the parts would enqueue, and their body bytes.
    pub(super) fn reserved(&self) -> (u64, u64) {
        self.reserved
    }

    /// Takes transaction `tx`'s part (`None`: none kept, or resolved
    /// already): its positions are held no more.
    pub(super) fn resolve(&mut self, tx: &str) -> Option<Prepare> {
        let (p, _) = self.parts.remove(tx)?;
        for s in &p.settle {
            self.held.remove(s);
        }
        let (n, bytes) = room(&p);
        self.reserved = (
            self.reserved.0.saturating_sub(n),
            self.reserved.1.saturating_sub(bytes),
        );
        self.asking.remove(tx);
        Some(p)
    }

    /// How many parts it keeps.
    pub(super) fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether a part commits stream group offsets: the deliveries its
    /// acks made are held, so a new leader's groups wait for it.
    pub(super) fn holds_offsets(&self) -> bool {
        self.parts.values().any(|(p, _)| !p.offsets.is_empty())
    }

    /// Whether the copy at `seq` is held by a transaction.
    pub(super) fn is_held(&self, seq: u64) -> bool {
        self.held.contains_key(&seq)
    }

    /// Records that this node's leader view left held copy `seq` out.
    pub(super) fn hide(&mut self, seq: u64) {
        self.hidden.insert(seq);
    }

    /// Whether copy `seq` was left out of the view (and is no more).
    pub(super) fn unhide(&mut self, seq: u64) -> bool {
        self.hidden.remove(&seq)
    }

    /// This node's leader view is gone.
    pub(super) fn clear_hidden(&mut self) {
        self.hidden.clear();
    }

    /// The transactions whose parts were kept here longer than `bound`
    /// ago and that nobody asks about yet: marked asked about.
    pub(super) fn stale(&mut self, bound: Duration) -> Vec<String> {
        let old: Vec<String> = self
            .parts
            .iter()
            .filter(|(tx, (_, at))| at.elapsed() >= bound && !self.asking.contains(*tx))
            .map(|(tx, _)| tx.clone())
            .collect();
        self.asking.extend(old.iter().cloned());
        old
    }

    /// Asking about `tx` is over (it may be asked about again later).
    pub(super) fn asked(&mut self, tx: &str) {
        self.asking.remove(tx);
    }

    /// The parts, as a snapshot keeps them.
    pub(super) fn saved(&self) -> Vec<Prepare> {
        self.parts.values().map(|(p, _)| p.clone()).collect()
    }

    /// The parts a snapshot kept (their clocks start now).
    pub(super) fn restored(saved: Vec<Prepare>) -> Prepared {
        let mut out = Prepared::default();
        let now = Instant::now();
        for p in saved {
            out.keep(p, now);
        }
        out
    }
}

/// The copies part `p` would enqueue, and their body bytes.
fn room(p: &Prepare) -> (u64, u64) {
    let bytes = p.enqueue.iter().map(ReplicaMessage::body_len).sum();
    (p.enqueue.len() as u64, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(tx: &str, settle: &[u64], term: Option<u64>) -> Prepare {
        Prepare {
            tx: tx.into(),
            enqueue: Vec::new(),
            settle: settle.to_vec(),
            offsets: Vec::new(),
            term,
        }
    }

    #[test]
    fn a_part_holds_its_copies_until_resolved() {
        let mut p = Prepared::default();
        assert_eq!(p.prepare(part("t1", &[5, 7], Some(3)), 3, |_| true), Ok(()));
        assert!(p.is_held(5) && p.is_held(7) && !p.is_held(6));
        // Another transaction cannot take a held copy.
        assert_eq!(
            p.prepare(part("t2", &[7], Some(3)), 3, |_| true),
            Err(Refused::Settled(7))
        );
        // The same part again (a retried append) changes nothing.
        assert_eq!(p.prepare(part("t1", &[5, 7], Some(3)), 3, |_| true), Ok(()));
        let got = p.resolve("t1").expect("kept");
        assert_eq!(got.settle, vec![5, 7]);
        assert!(!p.is_held(5));
        assert!(p.resolve("t1").is_none(), "resolved once only");
    }

    #[test]
    fn a_part_of_another_term_or_a_settled_copy_is_refused() {
        let mut p = Prepared::default();
        assert_eq!(
            p.prepare(part("t1", &[5], Some(2)), 3, |_| true),
            Err(Refused::Term)
        );
        assert_eq!(
            p.prepare(part("t1", &[5], Some(3)), 3, |s| s != 5),
            Err(Refused::Settled(5))
        );
        // Publishes only: no term to match.
        assert_eq!(p.prepare(part("t1", &[], None), 9, |_| false), Ok(()));
        assert!(p.saved().len() == 1);
    }

    #[test]
    fn stale_parts_are_asked_about_once_and_survive_a_snapshot() {
        let mut p = Prepared::default();
        assert_eq!(p.prepare(part("t1", &[1], None), 1, |_| true), Ok(()));
        assert!(p.stale(Duration::from_secs(60)).is_empty());
        assert_eq!(p.stale(Duration::ZERO), vec!["t1".to_string()]);
        assert!(p.stale(Duration::ZERO).is_empty(), "asked about already");
        p.asked("t1");
        assert_eq!(p.stale(Duration::ZERO), vec!["t1".to_string()]);
        let back = Prepared::restored(p.saved());
        assert!(back.is_held(1));
        assert_eq!(back.saved(), p.saved());
    }
}
