//! `HELLO`: the session handshake. See protocol.md, "HELLO".

use tracing::instrument;

use super::outcome::Outcome;
use crate::error::BrokerError;
use crate::protocol::command::Hello;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;
use crate::{PROTOCOL_VERSION, VERSION};

/// `HELLO [name=<client>] [proto=<n>] [heartbeat=<ms>]` →
/// `OK sluice <version> proto=1`.
#[instrument(level = "debug", name = "HELLO", skip_all, fields(conn = s.conn_id()))]
pub(super) fn hello(c: Hello, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    if let Some(p) = c.proto {
        if p != PROTOCOL_VERSION {
            return Err(BrokerError::Precondition(format!(
                "proto={p} unsupported; supported: proto={PROTOCOL_VERSION}"
            )));
        }
    }
    if let Some(ms) = c.heartbeat {
        s.set_heartbeat((ms > 0).then(|| std::time::Duration::from_millis(ms)));
    }
    if let Some(name) = c.name {
        tracing::debug!(conn = s.conn_id(), client = %name, "hello");
        s.set_client_name(name);
    }
    Ok(Outcome::reply(Reply::Ok(format!(
        "sluice {VERSION} proto={PROTOCOL_VERSION}"
    ))))
}
