//! A replicated queue's batcher on each node ([`batch`]): what the node
//! has for the queue's log (copies published, settled, put back, a
//! stream's group offsets, barriers) gathered while its previous entry is
//! in flight, so that one entry (one append and one fsync on each member)
//! carries many, and each waiter answered with what the entry came to.

use tokio::sync::{mpsc, oneshot};

use super::queue_machine::{GroupOffset, QueueOp, MAX_BATCH};
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
    while let Some(first) = rx.recv().await {
        let mut op = QueueOp::default();
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
                Job::Barrier(w) => waiters.push((w, None)),
            }
            if (op.enqueue.len() as u64) < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A barrier alone: everything before it is committed already (the
        // batches go one at a time).
        let (copies, settled) = (op.enqueue.len(), op.settle.len());
        let answer = match op.is_empty() {
            true => MetaAnswer::default(),
            false => MetaAnswer::of(submit(op).await),
        };
        if let MetaAnswer::Err(_, why) = &answer {
            tracing::warn!(queue = %name, error = %why, copies, settled, "a replicated queue's entry");
        }
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
                (MetaAnswer::Ok(_), None) => MetaAnswer::default(),
                (err, _) => err.clone(),
            };
            let _ = w.send(each);
        }
    }
}
