//! Membership changes on the metadata group's leader (`CLUSTER ADD |
//! REMOVE | TRANSFER`, forwarded here from whichever node took them):
//!
//! - **add**: the node joins as a learner, the leader waits until it has
//!   caught up with the log, then makes it a voter (openraft's joint
//!   consensus: two entries, each committed by a majority of the old and
//!   of the new members);
//! - **remove**: the voters without it (its process goes on until it is
//!   stopped, answering nothing it is asked as a member);
//! - **transfer**: openraft 0.9 has no leadership transfer, and followers
//!   refuse to vote while the leader's lease holds (an election timeout
//!   after its last heartbeat). So the leader stops its heartbeats, waits
//!   out the lease, and asks the target to stand (`Rpc::Elect`); the target
//!   asks for votes before any other follower's own timer (a lease plus an
//!   election timeout) runs out, and wins. Heartbeats resume either way.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};

use super::network::{call, Peers};
use super::TypeConfig;
use crate::error::BrokerError;
use crate::protocol::command::ClusterCommand;

/// How long a learner may take to catch up before `CLUSTER ADD` gives up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How long the leader stays silent before the target of a transfer
/// stands: the lease (the longest election timeout) and a margin.
const SILENCE: Duration = Duration::from_millis(super::ELECTION_MAX_MS + 200);

/// How long a transfer waits for the target to lead.
const TRANSFER_WAIT: Duration = Duration::from_secs(5);

/// Makes `change` on `raft`, which leads: the words of the `OK`.
pub(super) async fn change(
    raft: &Raft<TypeConfig>,
    peers: &Peers,
    change: ClusterCommand,
) -> Result<Vec<String>, BrokerError> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(metrics.id) {
        return Err(BrokerError::Unavailable(
            "the leader changed meanwhile; nothing was changed, try again".into(),
        ));
    }
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    match change {
        ClusterCommand::Add { id, addr } => {
            if !voters.contains(&id) {
                let node = BasicNode {
                    addr: addr.to_string(),
                };
                let added = tokio::time::timeout(CATCH_UP, raft.add_learner(id, node, true));
                match added.await {
                    Ok(r) => r.map_err(refused)?,
                    Err(_) => {
                        return Err(BrokerError::Unavailable(format!(
                            "node {id} did not catch up within {} s (is it running, with --join, \
                             and is {addr} its --cluster-addr?); it stays a learner until \
                             CLUSTER REMOVE {id}",
                            CATCH_UP.as_secs()
                        )))
                    }
                };
                let mut with = voters.clone();
                with.insert(id);
                raft.change_membership(with, false).await.map_err(refused)?;
            }
            Ok(vec![members(raft)])
        }
        ClusterCommand::Remove(id) => {
            if !voters.contains(&id) {
                return Err(BrokerError::NotFound(format!("node {id} is not a member")));
            }
            let mut without = voters.clone();
            without.remove(&id);
            if without.is_empty() {
                return Err(BrokerError::Precondition(
                    "the last member cannot be removed".into(),
                ));
            }
            raft.change_membership(without, false)
                .await
                .map_err(refused)?;
            Ok(vec![members(raft)])
        }
        ClusterCommand::Transfer(target) => {
            if target == metrics.id {
                return Ok(vec![format!("leader={target}")]);
            }
            let Some(node) = membership
                .get_node(&target)
                .filter(|_| voters.contains(&target))
            else {
                return Err(BrokerError::NotFound(format!(
                    "node {target} is not a member"
                )));
            };
            let rc = raft.runtime_config();
            rc.heartbeat(false);
            tokio::time::sleep(SILENCE).await;
            let by = std::time::Instant::now() + TRANSFER_WAIT;
            let asked = call::<bool>(peers, &node.addr, &super::network::Rpc::Elect, by).await;
            let led = match asked {
                Ok(true) => raft
                    .wait(Some(TRANSFER_WAIT))
                    .metrics(|m| m.current_leader == Some(target), "the transfer")
                    .await
                    .is_ok(),
                _ => false,
            };
            rc.heartbeat(true);
            match led {
                true => Ok(vec![format!("leader={target}")]),
                false => Err(BrokerError::Unavailable(format!(
                    "node {target} did not take the lead (it may be down or behind); the \
                     cluster elects as usual"
                ))),
            }
        }
    }
}

/// `members=1,2,3`: the voters now.
fn members(raft: &Raft<TypeConfig>) -> String {
    let m = raft.metrics().borrow().clone();
    let ids: Vec<String> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|i| i.to_string())
        .collect();
    format!("members={}", ids.join(","))
}

/// A membership change openraft refused.
fn refused(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> BrokerError {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            BrokerError::Precondition(format!("the membership cannot change so: {e}"))
        }
        e => BrokerError::Unavailable(format!(
            "the membership change was not confirmed ({e}); it may or may not have been made"
        )),
    }
}
