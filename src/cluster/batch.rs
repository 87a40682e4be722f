//! A replicated queue's batcher on each node ([`batch`]): what the node
//! has for the queue's log (copies published, settled, put back, a
//! stream's group offsets and failed deliveries, barriers) gathered while its previous entry is
//! in flight, so that one entry (one append and one fsync on each member)
//! carries many, and each waiter answered with what the entry came to.

use tokio::sync::{mpsc, oneshot};

use super::queue_machine::{GroupFailure, GroupOffset, QueueOp, MAX_BATCH};
use crate::broker::{MetaAnswer, ReplicaMessage};
use crate::error::BrokerError;

/// What a node has for a queue's next entry.
pub(super) enum Job {
    /// A copy to append, and who waits for its commit.
    Enqueue(ReplicaMessage, oneshot::Sender<MetaAnswer>),
    /// Copies settled.
    Settle(Vec<u64>),
    /// Copies put back after a delivery.
    Return(Vec<u64>),
    /// A stream group's new offset (`true`: by `SEEK`).
    Offset(String, u64, bool),
    /// A failed delivery of a stream group's offset, and the offset's
    /// count.
    Failed(String, u64, u32),
    /// Who waits until what was handed over before is committed.
    Barrier(oneshot::Sender<MetaAnswer>),
}

/// Queue `name`'s batcher on this node: takes every job waiting, makes
/// them one entry and submits it; the next entry gathers what came
/// meanwhile. So a node has one entry in flight per queue, and the more
/// it is sent, the larger its entries (up to [`MAX_BATCH`] copies).
pub(super) async fn batch<F, Fut>(name: String, mut rx: mpsc::UnboundedReceiver<Job>, submit: F)
where
    F: Fn(QueueOp) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, BrokerError>>,
{
    // What an entry that failed carried and no waiter of its own answers
    // for (settlements, commits): it goes again in the next entry, so
    // that a barrier after it answers `OK` only once it is committed.
    let mut carry = QueueOp::default();
    // A failed entry's `SEEK`s and put-backs (not tried again: a `SEEK`
    // applied twice would move its group back past later commits): the
    // barriers of the next entry answer its error.
    let mut lost: Option<MetaAnswer> = None;
    while let Some(first) = rx.recv().await {
        let mut op = std::mem::take(&mut carry);
        // Who waits, and the place of their copy in the entry.
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Enqueue(m, w) => {
                    waiters.push((w, Some(op.enqueue.len())));
                    op.enqueue.push(m);
                }
                Job::Settle(seqs) => op.settle.extend(seqs),
                Job::Return(seqs) => op.returned.extend(seqs),
                Job::Offset(group, at, seek) => op.offsets.push(GroupOffset { group, at, seek }),
                Job::Failed(group, at, count) => op.failed.push(GroupFailure { group, at, count }),
                Job::Barrier(w) => waiters.push((w, None)),
            }
            if (op.enqueue.len() as u64) < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A barrier alone: everything before it is committed already (the
        // batches go one at a time, and what failed is in `carry`).
        let (copies, settled) = (op.enqueue.len(), op.settle.len());
        let retry = QueueOp {
            settle: op.settle.clone(),
            offsets: op.offsets.iter().filter(|o| !o.seek).cloned().collect(),
            // A count applied twice changes nothing (a member keeps the
            // highest): one never goes missing.
            failed: op.failed.clone(),
            ..QueueOp::default()
        };
        let unretried = !op.returned.is_empty() || op.offsets.iter().any(|o| o.seek);
        let answer = match op.is_empty() {
            true => MetaAnswer::default(),
            false => MetaAnswer::of(submit(op).await),
        };
        if let MetaAnswer::Err(_, why) = &answer {
            tracing::warn!(queue = %name, error = %why, copies, settled, "a replicated queue's entry");
            // Settling twice, committing an offset or counting a failed
            // delivery again changes nothing.
            carry = retry;
            if unretried {
                lost = Some(answer.clone());
            }
        }
        let barriers = waiters.iter().any(|(_, place)| place.is_none());
        let lost_here = match barriers {
            true => lost.take(),
            false => None,
        };
        for (w, place) in waiters {
            // A copy the queue did not keep answers why.
            let each = match (&answer, place) {
                (MetaAnswer::Ok(dropped), Some(i)) => {
                    let why = if dropped.contains(&format!("d{i}")) {
                        Some("duplicate")
                    } else if dropped.contains(&format!("r{i}")) {
                        Some("rejected")
                    } else {
                        None
                    };
                    MetaAnswer::Ok(why.map(str::to_string).into_iter().collect())
                }
                (MetaAnswer::Ok(_), None) => lost_here.clone().unwrap_or_default(),
                (err, _) => err.clone(),
            };
            let _ = w.send(each);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{mpsc, oneshot};

    use super::{batch, Job};
    use crate::broker::MetaAnswer;
    use crate::cluster::queue_machine::QueueOp;
    use crate::error::BrokerError;

    /// A batcher whose first entry fails: what each submit got, and the
    /// channel to give it jobs.
    fn failing_once() -> (Arc<Mutex<Vec<QueueOp>>>, mpsc::UnboundedSender<Job>) {
        let got: Arc<Mutex<Vec<QueueOp>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = got.clone();
        tokio::spawn(batch("q".into(), rx, move |op: QueueOp| {
            let seen = seen.clone();
            async move {
                let mut all = seen
                    .lock()
                    .map_err(|_| BrokerError::Internal("lock".into()))?;
                all.push(op);
                match all.len() {
                    1 => Err(BrokerError::Unavailable("the leader went".into())),
                    _ => Ok(Vec::new()),
                }
            }
        }));
        (got, tx)
    }

    /// Sends a barrier and waits for its answer.
    async fn barrier(tx: &mpsc::UnboundedSender<Job>) -> MetaAnswer {
        let (w, answer) = oneshot::channel();
        assert!(tx.send(Job::Barrier(w)).is_ok());
        answer
            .await
            .unwrap_or_else(|_| MetaAnswer::error(BrokerError::Internal("gone".into())))
    }

    #[tokio::test]
    async fn a_barrier_after_a_failed_entry_alone_is_not_answered_ok() {
        let (got, tx) = failing_once();
        assert!(tx.send(Job::Offset("g".into(), 10, false)).is_ok());
        // The offset's entry fails before the barrier is sent.
        while got.lock().map(|g| g.len()).unwrap_or(0) == 0 {
            tokio::task::yield_now().await;
        }
        // The barrier comes alone: its entry carries the commit again,
        // and answers OK once that is committed.
        assert_eq!(barrier(&tx).await, MetaAnswer::default());
        let all = got.lock().map(|g| g.clone()).unwrap_or_default();
        assert_eq!(
            all.len(),
            2,
            "the barrier did not wait for the commit: {all:?}"
        );
        assert_eq!(all[1].offsets.len(), 1, "{all:?}");
    }

    #[tokio::test]
    async fn a_failed_delivery_s_count_goes_again_after_a_failed_entry() {
        let (got, tx) = failing_once();
        assert!(tx.send(Job::Failed("g".into(), 4, 2)).is_ok());
        while got.lock().map(|g| g.len()).unwrap_or(0) == 0 {
            tokio::task::yield_now().await;
        }
        // Lost, the next leader would deliver offset 4 once more than its
        // limit: the count goes again (applied twice, it changes nothing).
        assert_eq!(barrier(&tx).await, MetaAnswer::default());
        let all = got.lock().map(|g| g.clone()).unwrap_or_default();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[1].failed, all[0].failed, "{all:?}");
        assert_eq!(all[1].failed.len(), 1, "{all:?}");
    }
}
