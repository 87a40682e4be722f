//! `ACK`, `NACK` and `REJECT`: settling deliveries. See protocol.md, "ACK".

use super::reply_after;
use crate::broker::queue::Settle;
use crate::error::BrokerError;
use crate::protocol::command::{Ack, Nack};
use crate::protocol::reply::Reply;
use crate::session::{Session, Unacked};

/// `ACK <dtag> [multiple]` → `OK`, once the removal is durable.
pub(super) fn ack(c: Ack, s: &mut Session) -> Result<(), BrokerError> {
    settle(s, c.tag, c.multiple, Settle::Ack)
}

/// `NACK <dtag> [multiple] [requeue=true|false]` → `OK`. Requeued messages go
/// back to their original position, flagged `redelivered`.
pub(super) fn nack(c: Nack, s: &mut Session) -> Result<(), BrokerError> {
    let how = if c.requeue {
        Settle::Requeue
    } else {
        Settle::Drop
    };
    settle(s, c.tag, c.multiple, how)
}

fn settle(s: &mut Session, tag: u64, multiple: bool, how: Settle) -> Result<(), BrokerError> {
    let taken: Vec<Unacked> = if multiple {
        let tags: Vec<u64> = s.unacked.range(..=tag).map(|(t, _)| *t).collect();
        tags.iter().filter_map(|t| s.unacked.remove(t)).collect()
    } else {
        s.unacked.remove(&tag).into_iter().collect()
    };
    if taken.is_empty() {
        return Err(BrokerError::UnknownTag(tag));
    }
    let mut gen = None;
    let mut failure = None;
    for u in taken {
        match u.queue.settle(u.consumer_id, u.entry, how) {
            Ok(g) => gen = gen.max(g),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    reply_after(s, Reply::ok(), gen)
}
