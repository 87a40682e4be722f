//! `REDRIVE`: send dead letters back where they were first published. See
//! protocol.md, "REDRIVE".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::Redrive;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `REDRIVE <queue> [count=<n>]` → `OK moved=<n> kept=<k>`, once the move
/// is durable. Needs `read` on the queue; a message whose exchange the user
/// may not `write` to is kept, like one whose route is gone. Messages without `h.x-death-exchange`/`h.x-death-key`, or
/// whose original route reaches no queue (or a full one), are kept.
#[instrument(level = "debug", name = "REDRIVE", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn redrive(c: Redrive, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("REDRIVE", Perm::Read, Kind::Queue, &c.queue)?;
    s.broker().refuse_replicated("REDRIVE", &c.queue)?;
    if let Some(q) = s.broker().find_queue(&c.queue) {
        q.refuse_stream("REDRIVE")?;
    }
    let login = s.login();
    let may_write = |exchange: &str| login.allows(Perm::Write, exchange);
    let (moved, kept, gen) = s
        .broker()
        .redrive(&c.queue, c.count, s.conn_id(), &may_write)?;
    Ok(Outcome::Reply(
        Reply::words([format!("moved={moved}"), format!("kept={kept}")]),
        gen,
    ))
}
