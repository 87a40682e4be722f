//! `PEEK`: look at waiting messages without taking them. See protocol.md,
//! "PEEK".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::Peek;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `PEEK <queue> [count=<n>] [from=<position>]` → one `MSG * <position> ...`
/// line per message (position order, ready and delayed alike), then
/// `OK <n>`. Nothing changes: no delivery tag, no delivery count.
#[instrument(level = "debug", name = "PEEK", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn peek(c: Peek, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login().check("PEEK", Perm::Read, Kind::Queue, &c.queue)?;
    let q = s.broker().queue(&c.queue, s.conn_id())?;
    // Each member of a replicated stream keeps it whole: it reads its own
    // copy (as far as it has applied the stream's log).
    if !(q.stream_end().is_some() && s.broker().keeps_replica(&c.queue)) {
        s.broker().served_here(&c.queue)?;
    }
    let seen = q.peek(c.count, c.from);
    let n = seen.len();
    for e in seen {
        s.show_peeked(e);
    }
    Ok(Outcome::reply(Reply::words([n.to_string()])))
}
