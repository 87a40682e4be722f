//! `DECLARE EXCHANGE` and `DECLARE QUEUE`. See protocol.md, "DECLARE".

use tracing::instrument;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::{DeclareExchange, DeclareQueue};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `DECLARE EXCHANGE <name> <type> [durable] [auto-delete] [alternate=<ex>]` → `OK`.
#[instrument(level = "debug", name = "DECLARE", skip_all, fields(conn = s.conn_id(), exchange = %c.name))]
pub(super) fn exchange(c: DeclareExchange, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("DECLARE", Perm::Configure, Kind::Exchange, &c.name)?;
    let gen = s.broker().declare_exchange(&c)?;
    Ok(Outcome::Reply(Reply::ok(), gen))
}

/// `DECLARE QUEUE <name> [durable] [exclusive] [auto-delete]`
/// → `OK <name> messages=<n> consumers=<n>` (and `partitions=<n>` for a
/// partitioned stream, whose counts are its partitions' sums). Needs `configure` on the
/// name (for `""`, on the name the server generates).
#[instrument(level = "debug", name = "DECLARE", skip_all, fields(conn = s.conn_id(), queue = %c.name))]
pub(super) fn queue(c: DeclareQueue, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let login = s.login();
    let may = |name: &str| login.check("DECLARE", Perm::Configure, Kind::Queue, name);
    if let Some(n) = c.partitions {
        let (parts, gen) = s.broker().declare_partitioned(&c, n, s.conn_id(), &may)?;
        let (messages, consumers) = parts
            .iter()
            .map(|q| q.stats())
            .fold((0, 0), |(m, n), st| (m + st.messages, n + st.consumers));
        let reply = Reply::words([
            c.name.clone(),
            format!("messages={messages}"),
            format!("consumers={consumers}"),
            format!("partitions={n}"),
        ]);
        return Ok(Outcome::Reply(reply, gen));
    }
    let (q, gen) = s.broker().declare_queue(&c, s.conn_id(), &may)?;
    s.keep_if_owned(&q);
    let st = q.stats();
    let reply = Reply::words([
        q.name.to_string(),
        format!("messages={}", st.messages),
        format!("consumers={}", st.consumers),
    ]);
    Ok(Outcome::Reply(reply, gen))
}
