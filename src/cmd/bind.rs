//! `BIND` and `UNBIND`. See protocol.md, "BIND".

use super::reply_after;
use crate::error::BrokerError;
use crate::protocol::command::Bind;
use crate::protocol::reply::Reply;
use crate::session::Session;

/// `BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]` → `OK`.
pub(super) fn bind(c: Bind, s: &mut Session) -> Result<(), BrokerError> {
    let gen = s.broker.bind(&c, s.conn_id)?;
    reply_after(s, Reply::ok(), gen)
}

/// `UNBIND <queue> <exchange> [<key>] [h.<name>=<value>...]` → `OK`.
pub(super) fn unbind(c: Bind, s: &mut Session) -> Result<(), BrokerError> {
    let gen = s.broker.unbind(&c, s.conn_id)?;
    reply_after(s, Reply::ok(), gen)
}
