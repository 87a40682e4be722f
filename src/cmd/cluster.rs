//! `CLUSTER ADD|REMOVE|TRANSFER`: an admin changes a cluster's
//! membership, online. See protocol.md, "CLUSTER". The work is the
//! cluster node's (`cluster/node.rs`, on the metadata group's leader);
//! this checks who asks and where.

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::error::BrokerError;
use crate::protocol::command::ClusterCommand;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// Runs a `CLUSTER` command: an admin's (anyone's on an open broker), on
/// a cluster node (`PRECONDITION` on a single node).
#[instrument(level = "debug", name = "CLUSTER", skip_all, fields(conn = s.conn_id()))]
pub(super) fn cluster(c: ClusterCommand, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let verb = match c {
        ClusterCommand::Add { .. } => "CLUSTER ADD",
        ClusterCommand::Remove(_) => "CLUSTER REMOVE",
        ClusterCommand::Transfer(_) => "CLUSTER TRANSFER",
    };
    s.login().require_admin(verb)?;
    let Some(consensus) = s.broker().consensus() else {
        return Err(BrokerError::Precondition(
            "not a cluster node (sluice serve --node-id ... starts one)".into(),
        ));
    };
    tracing::info!(?c, "membership change asked");
    Ok(Outcome::Pending(Pending::new(async move {
        let answer = consensus.membership(c).await;
        Box::new(move |_: &mut SessionState| Ok(Outcome::reply(Reply::words(answer?))))
            as Completion
    })))
}
