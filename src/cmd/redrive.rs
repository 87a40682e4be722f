//! `REDRIVE`: send dead letters back where they were first published. See
//! protocol.md, "REDRIVE".

use super::reply_after;
use crate::error::BrokerError;
use crate::protocol::command::Redrive;
use crate::protocol::reply::Reply;
use crate::session::Session;

/// `REDRIVE <queue> [count=<n>]` → `OK moved=<n> kept=<k>`, once the move
/// is durable. Messages without `h.x-death-exchange`/`h.x-death-key`, or
/// whose original route reaches no queue (or a full one), are kept.
pub(super) fn redrive(c: Redrive, s: &mut Session) -> Result<(), BrokerError> {
    let (moved, kept, gen) = s.broker.redrive(&c.queue, c.count, s.conn_id)?;
    reply_after(
        s,
        Reply::words([format!("moved={moved}"), format!("kept={kept}")]),
        gen,
    )
}
