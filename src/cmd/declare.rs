//! `DECLARE EXCHANGE` and `DECLARE QUEUE`. See protocol.md, "DECLARE".

use tracing::instrument;

use std::sync::Arc;

use super::outcome::Outcome;
use crate::auth::{Kind, Perm};
use crate::broker::queue::Queue;
use crate::broker::Broker;
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
    if c.replicas.is_some_and(|r| r > 1) {
        // On a cluster node, replicated.rs took it before it came here.
        return Err(BrokerError::Precondition(
            "replicas= needs a cluster (sluice serve --node-id ...)".into(),
        ));
    }
    let login = s.login();
    let may = |name: &str| login.check("DECLARE", Perm::Configure, Kind::Queue, name);
    let declared = run_queue(s.broker(), &c, s.conn_id(), &may)?;
    if let Some(q) = &declared.queue {
        s.keep_if_owned(q);
    }
    Ok(Outcome::Reply(Reply::words(declared.words), declared.gen))
}

/// What a `DECLARE QUEUE` came to.
pub(super) struct Declared {
    /// The words of its `OK`.
    pub(super) words: Vec<String>,
    /// The generation to wait for.
    pub(super) gen: Option<u64>,
    /// The queue (not for a partitioned stream).
    pub(super) queue: Option<Arc<Queue>>,
}

/// Declares the queue (or partitioned stream) `c` for the connection
/// `conn`, `may` vetting its name.
pub(super) fn run_queue(
    broker: &Broker,
    c: &DeclareQueue,
    conn: u64,
    may: &dyn Fn(&str) -> Result<(), BrokerError>,
) -> Result<Declared, BrokerError> {
    if let Some(n) = c.partitions {
        let (parts, gen) = broker.declare_partitioned(c, n, conn, may)?;
        let (messages, consumers) = parts
            .iter()
            .map(|q| q.stats())
            .fold((0, 0), |(m, n), st| (m + st.messages, n + st.consumers));
        let words = vec![
            c.name.clone(),
            format!("messages={messages}"),
            format!("consumers={consumers}"),
            format!("partitions={n}"),
        ];
        return Ok(Declared {
            words,
            gen,
            queue: None,
        });
    }
    let (q, gen) = broker.declare_queue(c, conn, may)?;
    let st = q.stats();
    let words = vec![
        q.name.to_string(),
        format!("messages={}", st.messages),
        format!("consumers={}", st.consumers),
    ];
    Ok(Declared {
        words,
        gen,
        queue: Some(q),
    })
}
