//! `DELETE EXCHANGE` and `DELETE QUEUE`. See protocol.md, "DELETE".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::command::{DeleteExchange, DeleteQueue};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `DELETE EXCHANGE <name> [if-unused]` → `OK`.
#[instrument(level = "debug", name = "DELETE", skip_all, fields(conn = s.conn_id(), exchange = %c.name))]
pub(super) fn exchange(c: DeleteExchange, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("DELETE", Perm::Configure, Kind::Exchange, &c.name)?;
    let gen = s.broker().delete_exchange(&c.name, c.if_unused)?;
    Ok(Outcome::Reply(Reply::ok(), gen))
}

/// `DELETE QUEUE <name> [if-unused] [if-empty]` → `OK messages=<n>`.
/// Subscribers of the queue get `NOTICE cancelled <tag> reason=queue-deleted`.
#[instrument(level = "debug", name = "DELETE", skip_all, fields(conn = s.conn_id(), queue = %c.name))]
pub(super) fn queue(c: DeleteQueue, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("DELETE", Perm::Configure, Kind::Queue, &c.name)?;
    let (words, gen) = run_queue(s.broker(), &c, s.conn_id())?;
    s.forget_queue(&c.name);
    Ok(Outcome::Reply(Reply::words(words), gen))
}

/// Deletes the queue `c` for the connection `conn`: the words of the `OK`
/// and the generation to wait for.
pub(super) fn run_queue(
    broker: &Broker,
    c: &DeleteQueue,
    conn: u64,
) -> Result<(Vec<String>, Option<u64>), BrokerError> {
    let (messages, gen) = broker.delete_queue(c, conn)?;
    Ok((vec![format!("messages={messages}")], gen))
}
