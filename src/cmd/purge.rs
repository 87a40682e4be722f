//! `PURGE`. See protocol.md, "PURGE".

use super::reply_after;
use crate::error::BrokerError;
use crate::protocol::command::Purge;
use crate::protocol::reply::Reply;
use crate::session::Session;

/// `PURGE <queue>` → `OK messages=<n>`: removes the ready messages
/// (unacked deliveries stay with their consumers).
pub(super) fn purge(c: Purge, s: &mut Session) -> Result<(), BrokerError> {
    let q = s.broker.queue(&c.queue, s.conn_id)?;
    let (n, gen) = q.purge()?;
    reply_after(s, Reply::words([format!("messages={n}")]), gen)
}
