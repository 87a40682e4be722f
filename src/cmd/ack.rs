//! `ACK`, `NACK`, `REJECT` and `TOUCH`: settling deliveries. See
//! protocol.md, "ACK".

use super::reply_after;
use crate::broker::queue::Settle;
use crate::error::BrokerError;
use crate::protocol::command::{Ack, Nack, Touch};
use crate::protocol::reply::Reply;
use crate::session::{Session, Unacked};

/// `ACK <dtag> [multiple]` → `OK`, once the removal is durable.
pub(super) fn ack(c: Ack, s: &mut Session) -> Result<(), BrokerError> {
    settle(s, c.tag, c.multiple, Settle::Ack)
}

/// `NACK <dtag> [multiple] [requeue=true|false] [delay=<ms>]` → `OK`.
/// Requeued messages go back to their original position, flagged
/// `redelivered` (after `delay=` or the queue's `retry-delays`); others are
/// dead-lettered (reason `rejected`) or dropped.
pub(super) fn nack(c: Nack, s: &mut Session) -> Result<(), BrokerError> {
    let how = if c.requeue {
        Settle::Requeue {
            delay_ms: c.delay_ms,
        }
    } else {
        Settle::Reject
    };
    settle(s, c.tag, c.multiple, how)
}

/// `TOUCH <dtag>` → `OK`: restarts the delivery's ack timeout (a no-op on a
/// queue without `ack-timeout`).
pub(super) fn touch(c: Touch, s: &mut Session) -> Result<(), BrokerError> {
    if !s.touch(c.tag) {
        return Err(BrokerError::UnknownTag(c.tag));
    }
    reply_after(s, Reply::ok(), None)
}

fn settle(s: &mut Session, tag: u64, multiple: bool, how: Settle) -> Result<(), BrokerError> {
    let taken: Vec<Unacked> = if multiple {
        let tags: Vec<u64> = s.unacked.range(..=tag).map(|(t, _)| *t).collect();
        tags.iter().filter_map(|t| s.take_unacked(*t)).collect()
    } else {
        s.take_unacked(tag).into_iter().collect()
    };
    let mut gen = None;
    let mut failure = None;
    let mut outstanding = 0usize;
    for u in taken {
        // A delivery whose queue was deleted is no longer outstanding: its
        // copy is released and the tag answers UNKNOWN_TAG.
        let how = if u.queue.is_deleted() {
            Settle::Ack
        } else {
            outstanding += 1;
            how
        };
        match u.queue.settle(u.consumer_id, u.entry, how) {
            Ok(g) => gen = gen.max(g),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if outstanding == 0 {
        return Err(BrokerError::UnknownTag(tag));
    }
    reply_after(s, Reply::ok(), gen)
}
