//! What a replicated queue's state machine does with a transaction's
//! entries (`tx_part.rs` has the entries and the parts kept): a prepare
//! is kept aside, a resolve applies the part as a normal entry would
//! (its copies enqueued, but for a `dedup-window=` queue's duplicates,
//! the copies it acks settled) or drops it (the copies it held are
//! delivered again). A replicated stream's part is applied like a
//! stream's entry: messages appended, group commits made.

use std::sync::Arc;
use std::time::Duration;

use super::{QueueMachine, QueueState};
use crate::broker::queue::Queue;
use crate::cluster::tx_part::{Prepare, Resolve};

/// How an entry's answer says its transaction part was refused: this,
/// then why.
pub(in crate::cluster) const REFUSED: &str = "refused:";

/// How the why of a part refused by a full `reject-publish` queue
/// begins (`ERR QUEUE_FULL`).
pub(in crate::cluster) const FULL: &str = "full: ";

impl QueueMachine {
    /// Keeps transaction part `p`, appended in term `term`: why not, when
    /// refused (every member alike).
    pub(super) fn prepare(&self, st: &mut QueueState, p: Prepare, term: u64) -> Result<(), String> {
        let tx = p.tx.clone();
        // A full `reject-publish` queue refuses a part whose copies do not
        // all fit; one it takes holds their room until resolved.
        if let Some(l) = self.limits().filter(|_| !st.prepared.keeps(&tx)) {
            if !st.fits(l, &p.enqueue) {
                tracing::info!(queue = %self.name, %tx, "a transaction's part refused: the queue is full");
                return Err(format!(
                    "{FULL}replicated queue {} has no room for the transaction's {} copies \
                     (overflow=reject-publish)",
                    self.name,
                    p.enqueue.len()
                ));
            }
        }
        let copies = &st.copies;
        st.prepared
            .prepare(p, term, |seq| copies.contains_key(&seq))
            .map_err(|why| {
                tracing::info!(queue = %self.name, %tx, %why, "a transaction's part refused");
                why.to_string()
            })
    }

    /// Applies or drops the part of `r`'s transaction (none kept: nothing
    /// to do). Its copies take the positions from `from` on; `view` is
    /// the broker's queue when this node leads.
    pub(super) fn resolve(
        &self,
        st: &mut QueueState,
        r: Resolve,
        from: u64,
        view: Option<&Arc<Queue>>,
    ) {
        let Some(part) = st.prepared.resolve(&r.tx) else {
            return;
        };
        tracing::debug!(queue = %self.name, tx = %r.tx, commit = r.commit, "a transaction's part resolved");
        if !r.commit {
            // The copies it held come back; a coordinator that lives put
            // its own back already (they were never out of its view).
            for s in part.settle {
                let hidden = st.prepared.unhide(s);
                if let (true, Some(q), Some(m)) = (hidden, view, st.copies.get(&s)) {
                    let returns = st.returns.get(&s).copied().unwrap_or(0);
                    if let Err(e) = self.broker.enqueue_replica(q, s, m, true, returns) {
                        tracing::warn!(queue = %self.name, error = %e, "a replicated copy");
                    }
                }
            }
            return;
        }
        // A `dedup-window=` queue drops a copy whose id it had within the
        // window, as for a normal entry (its transaction is committed: the
        // copy was a duplicate, not a failure). No limit refuses one: the
        // part held their room since it was prepared.
        let window = self.dedup_window();
        for (seq, m) in (from..).zip(part.enqueue) {
            let _ = self.admit(st, seq, m, window, None, view);
        }
        let mut withdrawn = Vec::new();
        for s in part.settle {
            st.returns.remove(&s);
            let hidden = st.prepared.unhide(s);
            if let (Some(m), Some(q)) = (st.drop_copy(s), view) {
                if !hidden {
                    withdrawn.push(m.waiting_in(q, s));
                }
            }
        }
        if let Some(q) = view.filter(|_| !withdrawn.is_empty()) {
            q.withdraw(&withdrawn);
        }
    }

    /// Applies or drops the part of `r`'s transaction on this node's
    /// copy `q` of a replicated stream: its messages appended at the next
    /// offsets, its group commits made (forward only). Dropped, the
    /// deliveries its acks made come again: the coordinator puts them
    /// back in its view, and a new leader's groups, which waited for the
    /// part (`QueueMachine::may_show`), start at the offsets the log has.
    pub(super) fn resolve_stream(&self, st: &mut QueueState, r: Resolve, q: &Arc<Queue>) {
        let Some(part) = st.prepared.resolve(&r.tx) else {
            return;
        };
        tracing::debug!(stream = %self.name, tx = %r.tx, commit = r.commit, "a transaction's part resolved");
        if r.commit {
            st.stream
                .apply(&self.broker, q, part.enqueue, Vec::new(), part.offsets);
        }
    }

    /// Whether this node, leading, may show the queue now: not while a
    /// stream's transaction part holds group offsets (its deliveries
    /// were made by another view, and its outcome decides whether they
    /// come again). Its leader's recovery resolves it within the bound.
    pub(in crate::cluster) fn may_show(&self) -> bool {
        !self.st.lock().prepared.holds_offsets()
    }

    /// How many transactions' parts this member holds undecided.
    pub(in crate::cluster) fn tx_pending(&self) -> u64 {
        self.st.lock().prepared.len() as u64
    }

    /// The transactions whose parts this node kept for longer than
    /// `bound`, not asked about yet (see `Queues::recover`).
    pub(in crate::cluster) fn stale(&self, bound: Duration) -> Vec<String> {
        self.st.lock().prepared.stale(bound)
    }

    /// Asking about `tx`'s outcome is over.
    pub(in crate::cluster) fn asked(&self, tx: &str) {
        self.st.lock().prepared.asked(tx);
    }
}
