//! `ACK`, `NACK`, `REJECT` and `TOUCH`: settling deliveries. See
//! protocol.md, "ACK".

use tracing::instrument;

use super::outcome::Outcome;
use super::replicated::once_settled;
use crate::broker::queue::Settle;
use crate::error::BrokerError;
use crate::protocol::command::{Ack, Nack, Touch};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `ACK <dtag> [multiple]` → `OK`, once the removal is durable.
#[instrument(level = "trace", name = "ACK", skip_all, fields(conn = s.conn_id(), tag = c.tag))]
pub(super) fn ack(c: Ack, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    settle(s, c.tag, c.multiple, Settle::Ack)
}

/// `NACK <dtag> [multiple] [requeue=true|false] [delay=<ms>]` → `OK`.
/// Requeued messages go back to their original position, flagged
/// `redelivered` (after `delay=` or the queue's `retry-delays`); others are
/// dead-lettered (reason `rejected`) or dropped.
#[instrument(level = "trace", name = "NACK", skip_all, fields(conn = s.conn_id(), tag = c.tag))]
pub(super) fn nack(c: Nack, s: &mut SessionState) -> Result<Outcome, BrokerError> {
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
#[instrument(level = "trace", name = "TOUCH", skip_all, fields(conn = s.conn_id(), tag = c.tag))]
pub(super) fn touch(c: Touch, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    if !s.touch(c.tag) {
        return Err(BrokerError::UnknownTag(c.tag));
    }
    Ok(Outcome::reply(Reply::ok()))
}

fn settle(
    s: &mut SessionState,
    tag: u64,
    multiple: bool,
    how: Settle,
) -> Result<Outcome, BrokerError> {
    let taken = s.take_unacked(tag, multiple);
    // Replicated queues record settlements in their logs: the reply waits
    // for those to commit too (while the connection reads on).
    let mut replicated: Vec<String> = Vec::new();
    if let Some(c) = s.broker().consensus() {
        for u in &taken {
            let name = &u.queue().name;
            if c.replicated(name) && !replicated.iter().any(|r| **r == **name) {
                replicated.push(name.to_string());
            }
        }
    }
    let mut gen = None;
    let mut failure = None;
    let mut outstanding = 0usize;
    for u in taken {
        // A delivery whose queue was deleted is no longer outstanding: its
        // copy is released and the tag answers UNKNOWN_TAG.
        let how = if u.queue().is_deleted() {
            Settle::Ack
        } else {
            outstanding += 1;
            how
        };
        match u.settle(s.broker(), how) {
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
    match s.broker().consensus() {
        Some(c) if !replicated.is_empty() => Ok(once_settled(
            c,
            replicated,
            Some(s.conn_id()),
            Reply::ok(),
            gen,
        )),
        _ => Ok(Outcome::Reply(Reply::ok(), gen)),
    }
}
