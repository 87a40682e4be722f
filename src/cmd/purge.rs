//! `PURGE`. See protocol.md, "PURGE".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::Purge;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `PURGE <queue>` → `OK messages=<n>`: removes the ready messages
/// (unacked deliveries stay with their consumers). Needs `configure` on the
/// queue (RabbitMQ asks for `read`; the issue that added users chose
/// `configure`, as for the other commands that destroy messages in bulk).
#[instrument(level = "debug", name = "PURGE", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn purge(c: Purge, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("PURGE", Perm::Configure, Kind::Queue, &c.queue)?;
    s.broker().refuse_replicated("PURGE", &c.queue)?;
    let q = s.broker().queue(&c.queue, s.conn_id())?;
    let (n, gen) = q.purge()?;
    Ok(Outcome::Reply(Reply::words([format!("messages={n}")]), gen))
}
