//! [`submit`]: a command into a group's log, from any node: through this
//! node's Raft of the group when it runs one and leads, else forwarded to
//! the leader (`Rpc::Write`), following the leader's address from a
//! follower's answer, and trying again while there is none (an election)
//! until a deadline.

use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;

use super::network::{call, ForwardError, Peers, Rpc, Written};
use super::{Payload, TypeConfig};
use crate::broker::MetaAnswer;
use crate::error::BrokerError;

/// How long a submission waits between tries while no leader takes it.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Why a submission has no answer.
#[derive(Debug)]
pub(super) enum Unsubmitted {
    /// No leader took it before the deadline: nothing was proposed.
    NoLeader,
    /// A leader took it but did not confirm it in time (it lost its
    /// majority, the connection broke): it may yet be committed.
    Unknown(String),
}

/// Submits `command` to group `group`'s log, through `local` (this node's
/// Raft of the group) or one of `members` (the addresses of the nodes
/// that run it), until `deadline`: the log index it was committed at and
/// what applying it came to on the leader.
pub(super) async fn submit(
    local: Option<&Raft<TypeConfig>>,
    peers: &Peers,
    members: &[String],
    group: u64,
    command: Payload,
    deadline: Instant,
) -> Result<(u64, MetaAnswer), Unsubmitted> {
    let mut hint: Option<String> = None;
    loop {
        if let (Some(raft), None) = (local, &hint) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, raft.client_write(command.clone())).await {
                Ok(Ok(r)) => return Ok((r.log_id.index, r.data)),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    hint = f.leader_node.map(|n| n.addr);
                }
                Ok(Err(e)) => return Err(Unsubmitted::Unknown(e.to_string())),
                Err(_) => return Err(Unsubmitted::Unknown("no commit in time".into())),
            }
        }
        let targets: Vec<String> = match hint.take() {
            Some(addr) => vec![addr],
            None if local.is_none() => members.to_vec(),
            None => Vec::new(),
        };
        for addr in targets {
            let rpc = Rpc::Write(group, command.clone());
            match call::<Written>(peers, &addr, &rpc, deadline).await {
                Ok(Written::Done(index, answer)) => return Ok((index, answer)),
                Ok(Written::NotLeader(Some(leader))) if leader != addr => {
                    hint = Some(leader);
                    break;
                }
                Ok(Written::NotLeader(_)) => {}
                Err(ForwardError::Unsent(why)) => {
                    tracing::debug!(%addr, %why, "could not reach a node of the group");
                }
                Ok(Written::Unknown(why)) | Err(ForwardError::Unknown(why)) => {
                    return Err(Unsubmitted::Unknown(why))
                }
            }
        }
        if Instant::now() + RETRY_EVERY >= deadline {
            return Err(Unsubmitted::NoLeader);
        }
        // Straight on to a leader named, but not in a tight loop should
        // two nodes name each other during an election.
        let pause = match hint {
            Some(_) => RETRY_EVERY / 10,
            None => RETRY_EVERY,
        };
        tokio::time::sleep(pause).await;
    }
}

/// The error of a change that has no answer, for `what`.
pub(super) fn unsubmitted(e: Unsubmitted, what: &str) -> BrokerError {
    match e {
        Unsubmitted::NoLeader => BrokerError::Unavailable(format!(
            "no leader for {what} within 5 s (an election, or this node cannot reach a \
             majority); nothing was changed"
        )),
        Unsubmitted::Unknown(why) => BrokerError::Unavailable(format!(
            "the cluster did not confirm the change ({why}); it may or may not have been made"
        )),
    }
}
