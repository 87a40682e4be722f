//! `SEEK`: moving a stream consumer group's position (replay). See
//! protocol.md, "SEEK".

use tracing::instrument;

use super::outcome::Outcome;
use super::replicated::once_settled;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::Seek;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>`
/// → `OK offset=<n>` (for a partitioned stream, one offset per partition,
/// comma-separated, in partition order), once the new position is stored.
/// The group's members go on from there; deliveries they still hold are
/// no longer counted (acking them only gives back prefetch room).
#[instrument(level = "debug", name = "SEEK", skip_all, fields(conn = s.conn_id(), queue = %c.stream))]
pub(super) fn seek(c: Seek, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("SEEK", Perm::Read, Kind::Queue, &c.stream)?;
    let streams = s.broker().queues_named(&c.stream, s.conn_id())?;
    // A replicated stream's groups move on its leader, through its log.
    let replicated = s
        .broker()
        .consensus()
        .filter(|consensus| consensus.replicated(&c.stream));
    if replicated.is_some() {
        s.broker().served_here(&c.stream)?;
    }
    let mut at = Vec::with_capacity(streams.len());
    let mut gen = None;
    for q in &streams {
        let (offset, g) = q.stream_seek(&c.group, c.to, replicated.is_none())?;
        if let Some(consensus) = &replicated {
            consensus.offset(&q.name, &c.group, offset, true);
        }
        at.push(offset.to_string());
        gen = gen.max(g);
    }
    let reply = Reply::words([format!("offset={}", at.join(","))]);
    match replicated {
        Some(consensus) => Ok(once_settled(
            consensus,
            vec![c.stream.clone()],
            None,
            reply,
            gen,
        )),
        None => Ok(Outcome::Reply(reply, gen)),
    }
}
