//! `TX COMMIT` across replicated queues: a two-phase commit over the
//! queues' own Raft groups, decided by one entry in the metadata group
//! (see protocol.md, "Transactions on replicated queues").
//!
//! 1. **Prepare.** The node where `COMMIT` arrives (the coordinator)
//!    appends to each queue's log a [`Prepare`] entry with that queue's
//!    part (copies to enqueue, positions it acks). Every member keeps it
//!    aside: invisible to consumers, the acked copies held.
//! 2. **Decide.** The coordinator proposes `commit` (every prepare went
//!    through) or `abort` to the metadata group ([`MetaOp::TxOutcome`]).
//!    The first outcome the group records for a transaction wins: a
//!    coordinator's commit and a queue leader's abort cannot both.
//!    That entry is the commit point; the client's `OK` waits for it.
//! 3. **Resolve.** A [`Resolve`] entry in each queue's log applies the
//!    part (as a normal entry would) or drops it (the held copies come
//!    again). After the reply, in the background.
//!
//! **Recovery.** A queue leader holding a part unresolved for longer than
//! [`RECOVERY_BOUND`] (a new leader too: the clock starts where a member
//! applied or read back the part) asks the metadata group for its
//! outcome, recording `abort` if it has none, and resolves the part. So a
//! coordinator that dies anywhere leaves nothing held for long, and
//! every queue ends the same way.
//!
//! **Fault points.** `SLUICE_TX_STALL=decide` (`answer`, `resolve`)
//! makes a coordinator log `transaction stalled before <point>` and wait
//! a minute there: after its prepares; after its decision, before
//! anything else (the reply, the resolves, its view's settlements); or
//! before the resolves only. Only the tests set it, to kill a node at
//! that point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue_machine::{GroupOffset, QueueMachine, QueueOp, FULL, MAX_BATCH, REFUSED};
use super::queues::Queues;
use super::submit::{submit, unsubmitted};
use super::tx_part::{Prepare, Resolve};
use super::{Payload, META_GROUP};
use crate::broker::{MetaOp, TxPart};
use crate::error::BrokerError;

/// How long a queue's part may stay unresolved before its leader asks
/// the metadata group for the outcome (recording `abort` if none).
pub(super) const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// How long a reply waits for the parts to be resolved after the
/// decision (the leaders' recovery finishes what is left).
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// How long a decision waits for the metadata group, each try.
const DECIDE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times the coordinator asks for a decision whose proposal was
/// not confirmed (asking again is safe: the first outcome wins).
const DECIDE_TRIES: usize = 3;

/// The outcome words of a [`MetaOp::TxOutcome`]'s answer.
pub(super) const COMMITTED: &str = "commit";
/// See [`COMMITTED`].
pub(super) const ABORTED: &str = "abort";

impl Queues {
    /// Commits `parts` (one per replicated queue) as one transaction:
    /// `Ok` once the metadata group recorded it committed; an error when
    /// it aborted (nothing of it happens: the deliveries it acked are
    /// held until its resolve, then come again) or its outcome is unknown.
    pub(super) async fn transact(self: &Arc<Self>, parts: Vec<TxPart>) -> Result<(), BrokerError> {
        let tx = self.tx_id();
        let mut prepares = Vec::with_capacity(parts.len());
        for part in parts {
            if part.enqueue.len() as u64 > MAX_BATCH {
                return Err(BrokerError::Limit(format!(
                    "a transaction publishes at most {MAX_BATCH} copies to one replicated queue ({} has {}); nothing was done",
                    part.queue, part.enqueue.len()
                )));
            }
            // Acks are taken on the leader, in its term.
            let term = match part.settle.is_empty() && part.offsets.is_empty() {
                true => None,
                false => Some(self.serving_term(&part.queue).map_err(prefixed)?),
            };
            let offsets = part.offsets.into_iter();
            let op = QueueOp {
                prepare: Some(Prepare {
                    tx: tx.clone(),
                    enqueue: part.enqueue,
                    settle: part.settle,
                    offsets: offsets
                        .map(|(group, at)| GroupOffset {
                            group,
                            at,
                            seek: false,
                        })
                        .collect(),
                    term,
                }),
                ..QueueOp::default()
            };
            prepares.push((part.queue, op));
        }
        let names: Vec<String> = prepares.iter().map(|(q, _)| q.clone()).collect();
        let started: Vec<_> = prepares
            .into_iter()
            .map(|(queue, op)| {
                let this = self.clone();
                tokio::spawn(async move {
                    let answer = this.submit(&queue, &op).await;
                    (queue, answer)
                })
            })
            .collect();
        let mut failed: Option<BrokerError> = None;
        for h in started {
            let failure = match h.await {
                Ok((_, Ok(words))) => {
                    words
                        .iter()
                        .find_map(|w| w.strip_prefix(REFUSED))
                        .map(|why| match why.strip_prefix(FULL) {
                            Some(full) => BrokerError::QueueFull(full.to_string()),
                            None => BrokerError::Precondition(why.to_string()),
                        })
                }
                Ok((queue, Err(e))) => Some(BrokerError::Unavailable(format!(
                    "queue {queue} did not take the transaction's part: {e}"
                ))),
                Err(e) => Some(BrokerError::Internal(e.to_string())),
            };
            if failed.is_none() {
                failed = failure;
            }
        }
        stall("decide", &tx).await;
        let decided = self.decide(&tx, failed.is_none()).await;
        tracing::info!(%tx, queues = ?names, outcome = ?decided, "a transaction across replicated queues");
        let commit = match decided {
            Ok(c) => c,
            // The recovery of each queue's leader resolves it, whichever
            // way the group decides.
            Err(e) => {
                return Err(BrokerError::Unavailable(format!(
                    "the transaction's outcome is not known ({e}): its queues' leaders settle it \
                     within {} s; its deliveries come again if it aborted",
                    RECOVERY_BOUND.as_secs()
                )))
            }
        };
        stall("answer", &tx).await;
        let (this, resolved) = (self.clone(), tx.clone());
        let resolving = tokio::spawn(async move {
            stall("resolve", &resolved).await;
            for queue in names {
                this.resolve(&queue, &resolved, commit).await;
            }
        });
        // The outcome is decided; the reply waits a little for the parts
        // to be applied, so that the client's next command sees them.
        let _ = tokio::time::timeout(RESOLVE_WAIT, resolving).await;
        match (commit, failed) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(prefixed(e)),
            (false, None) => Err(BrokerError::Unavailable(format!(
                "a queue's leader aborted the transaction (its part waited over {} s); nothing was done",
                RECOVERY_BOUND.as_secs()
            ))),
        }
    }

    /// Records `commit` (or abort) as transaction `tx`'s outcome in the
    /// metadata group, unless one is recorded already: the outcome
    /// recorded (`true`: committed).
    async fn decide(&self, tx: &str, commit: bool) -> Result<bool, BrokerError> {
        let meta = self
            .meta_raft()
            .ok_or_else(|| BrokerError::Unavailable("the cluster is not started yet".into()))?;
        let op = MetaOp::TxOutcome {
            tx: tx.to_string(),
            commit,
        };
        let command = Payload::of(&op).map_err(|e| BrokerError::Internal(e.to_string()))?;
        let mut last = None;
        for _ in 0..DECIDE_TRIES {
            let deadline = Instant::now() + DECIDE_TIMEOUT;
            match submit(
                Some(&meta),
                self.peers(),
                &[],
                META_GROUP,
                command.clone(),
                deadline,
            )
            .await
            {
                Ok((_, answer)) => {
                    let words = answer.into_result()?;
                    return Ok(words.first().is_some_and(|w| w == COMMITTED));
                }
                Err(e) => last = Some(unsubmitted(e, "the transaction's outcome")),
            }
        }
        Err(last.unwrap_or_else(|| BrokerError::Unavailable("no decision".into())))
    }

    /// Appends the resolve of transaction `tx` to queue `queue`'s log,
    /// trying a few times (its leader's recovery resolves it otherwise).
    async fn resolve(&self, queue: &str, tx: &str, commit: bool) {
        let op = QueueOp {
            resolve: Some(Resolve {
                tx: tx.to_string(),
                commit,
            }),
            ..QueueOp::default()
        };
        for _ in 0..3 {
            match self.submit(queue, &op).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::info!(%queue, %tx, error = %e, "resolving a transaction's part; trying again")
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!(%queue, %tx, "a transaction's part is left to its leader's recovery");
    }

    /// On queue `name`'s leader: resolves the parts `machine` kept for
    /// longer than [`RECOVERY_BOUND`], each with the outcome the metadata
    /// group has for it (abort when it has none).
    pub(super) fn recover(self: &Arc<Self>, name: &str, machine: &QueueMachine) {
        for tx in machine.stale(RECOVERY_BOUND) {
            let (this, name, machine) = (self.clone(), name.to_string(), machine.clone());
            tokio::spawn(async move {
                match this.decide(&tx, false).await {
                    Ok(commit) => {
                        tracing::info!(queue = %name, %tx, commit, "recovering a transaction's part");
                        this.resolve(&name, &tx, commit).await;
                    }
                    Err(e) => {
                        tracing::warn!(queue = %name, %tx, error = %e, "no outcome for a transaction's part yet")
                    }
                }
                machine.asked(&tx);
            });
        }
    }

    /// A transaction id no other node or transaction has.
    fn tx_id(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{}.{now:x}.{}",
            self.me(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Waits a minute at fault point `point` when `SLUICE_TX_STALL` names it
/// (see the module docs).
async fn stall(point: &str, tx: &str) {
    if std::env::var("SLUICE_TX_STALL").is_ok_and(|v| v == point) {
        tracing::warn!(%tx, "transaction stalled before {point}");
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// The error of an aborted transaction: what failed, and that nothing
/// was done.
fn prefixed(e: BrokerError) -> BrokerError {
    let text = format!("the transaction aborted: {e}; nothing was done, its deliveries come again");
    match e {
        BrokerError::Precondition(_) => BrokerError::Precondition(text),
        BrokerError::QueueFull(_) => BrokerError::QueueFull(text),
        _ => BrokerError::Unavailable(text),
    }
}
