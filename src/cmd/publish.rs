//! `PUB`: route, store, enqueue, and confirm. See protocol.md, "PUB".

use super::reply_after;
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::protocol::reply::Reply;
use crate::session::Session;

/// `PUB <exchange> <key> [persistent|transient] [mandatory] [id=<id>]
/// [h.<name>=<value>...] <body>` → `OK <msg-id> routed=<n>`.
///
/// The reply is the publisher confirm: it is queued behind the store
/// generation of the message's write, so it is sent only once the message
/// is fsync'd (for a persistent message on a durable queue).
pub(super) fn publish(c: Publish, s: &mut Session) -> Result<(), BrokerError> {
    let p = s.broker.publish(c)?;
    let reply = Reply::words([p.id, format!("routed={}", p.routed)]);
    reply_after(s, reply, p.durable_gen)
}
