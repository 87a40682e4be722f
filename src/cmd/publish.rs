//! `PUB`: route, store, enqueue, and confirm. See protocol.md, "PUB".

use super::reply_after;
use crate::broker::{PublishAttempt, Published};
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::protocol::reply::Reply;
use crate::session::{HeldPub, Session};

/// `PUB <exchange> <key> [persistent|transient] [mandatory] [id=<id>]
/// [ttl=<ms>] [delay=<ms>] [priority=<n>] [h.<name>=<value>...] <body>`
/// → `OK <msg-id> routed=<n> [rejected=<n>] [duplicate]`.
///
/// The reply is the publisher confirm: it is queued behind the store
/// generation of the message's write, so it is sent only once the message
/// is fsync'd (for a persistent message on a durable queue). When a target
/// queue is full with `overflow=block`, nothing is stored and the publish
/// goes back to the session to hold; so does every publish while memory is
/// over `--memory-high-watermark`, and one that would write to the store
/// while the disk is under `--disk-free-limit`.
///
/// Needs `write` on the exchange (the default exchange is the name `""`),
/// checked through the session's cache so that a publisher's hot path
/// runs no regex.
pub(super) fn publish(c: Publish, s: &mut Session) -> Result<Option<HeldPub>, BrokerError> {
    s.login.check_publish(&c.exchange)?;
    match s.broker.publish(&c)? {
        PublishAttempt::Done(p) => {
            let gen = p.durable_gen;
            reply_after(s, confirm(p), gen)?;
            Ok(None)
        }
        PublishAttempt::Blocked(on) => Ok(Some(HeldPub { cmd: c, on })),
    }
}

/// The `OK` line of a publish.
pub fn confirm(p: Published) -> Reply {
    let mut w = vec![p.id, format!("routed={}", p.routed)];
    if p.rejected > 0 {
        w.push(format!("rejected={}", p.rejected));
    }
    if p.duplicate {
        w.push("duplicate".into());
    }
    Reply::words(w)
}
