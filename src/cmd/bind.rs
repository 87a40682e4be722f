//! `BIND` and `UNBIND`. See protocol.md, "BIND".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::Bind;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]` → `OK`.
#[instrument(level = "debug", name = "BIND", skip_all, fields(conn = s.conn_id(), queue = %c.queue, exchange = %c.exchange))]
pub(super) fn bind(c: Bind, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    may_bind("BIND", &c, s)?;
    let gen = s.broker().bind(&c, s.conn_id())?;
    Ok(Outcome::Reply(Reply::ok(), gen))
}

/// `UNBIND <queue> <exchange> [<key>] [h.<name>=<value>...]` → `OK`.
#[instrument(level = "debug", name = "UNBIND", skip_all, fields(conn = s.conn_id(), queue = %c.queue, exchange = %c.exchange))]
pub(super) fn unbind(c: Bind, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    may_bind("UNBIND", &c, s)?;
    let gen = s.broker().unbind(&c, s.conn_id())?;
    Ok(Outcome::Reply(Reply::ok(), gen))
}

/// As RabbitMQ: `write` on the destination (the queue), `read` on the
/// source (the exchange).
pub(super) fn may_bind(verb: &str, c: &Bind, s: &SessionState) -> Result<(), BrokerError> {
    s.login().check(verb, Perm::Write, Kind::Queue, &c.queue)?;
    s.login()
        .check(verb, Perm::Read, Kind::Exchange, &c.exchange)
}
