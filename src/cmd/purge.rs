//! `PURGE`. See protocol.md, "PURGE".

use tracing::instrument;

use super::outcome::Outcome;
use super::replicated::once_settled;
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
    let q = s.broker().queue(&c.queue, s.conn_id())?;
    let replicated = s.broker().consensus().filter(|c| c.replicated(&q.name));
    if replicated.is_some() {
        // A replicated queue is purged by its leader, and its log learns
        // which copies went before the reply.
        s.broker().served_here(&q.name)?;
    }
    let purged = q.purge()?;
    let reply = Reply::words([format!("messages={}", purged.count)]);
    let Some(c) = replicated else {
        return Ok(Outcome::Reply(reply, purged.gen));
    };
    if !purged.seqs.is_empty() {
        c.settled(&q.name, purged.seqs);
    }
    Ok(once_settled(
        c,
        vec![q.name.to_string()],
        None,
        reply,
        purged.gen,
    ))
}
