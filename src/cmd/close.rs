//! `CLOSE CONNECTION`: an admin closes a client connection. See
//! protocol.md, "CLOSE CONNECTION".

use tracing::instrument;

use super::outcome::Outcome;
use crate::error::BrokerError;
use crate::protocol::command::CloseConnection;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `CLOSE CONNECTION <id>` → `OK`: connection `<id>` of this node (a
/// `LIST CONNECTIONS` id) is closed as a shutdown closes it: it is told
/// `NOTICE closing reason=closed-by-admin` after what is queued for it,
/// its unacked deliveries go back to their queues, and it is gone at its
/// session's next turn (right after this `OK`, give or take a moment).
/// Admins only (`FORBIDDEN`); `NOT_FOUND` for no such connection.
#[instrument(level = "debug", name = "CLOSE", skip_all, fields(conn = s.conn_id(), target = c.id))]
pub(super) fn close(c: CloseConnection, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login().require_admin("CLOSE CONNECTION")?;
    let Some(conn) = s.broker().connections().get(c.id) else {
        return Err(BrokerError::NotFound(format!("connection {}", c.id)));
    };
    tracing::info!(
        conn = s.conn_id(),
        closed = c.id,
        "connection closed by an admin"
    );
    conn.close();
    Ok(Outcome::reply(Reply::ok()))
}
