//! Clusters (issue 18): queues and streams replicated over Raft groups on
//! openraft. What is here so far:
//!
//! - `log_store`: `GroupLog`, one Raft group's log (entries, vote,
//!   truncation, purge) on the message log's consensus groups, checked by
//!   openraft's own storage test suite;
//! - `network`: the nodes' RPCs (append entries, vote, snapshot chunks)
//!   as length-prefixed JSON frames over TCP or TLS, client and server,
//!   behind the cluster's shared secret;
//! - `node`: [`ClusterNode`], this process as a node (`sluice serve
//!   --node-id ...`): the metadata group on group 0 of its message log,
//!   which the broker proposes topology and user changes to (forwarded to
//!   the leader from a follower), its port, and the view `STATS` shows;
//! - `membership`: `CLUSTER ADD|REMOVE|TRANSFER` on the leader;
//! - `remote`: a subscriber on a node that does not lead its replicated
//!   queue, served by the leader over a link between the two nodes;
//! - `meta`: the metadata group's state machine, which applies each
//!   committed change to this node's broker, once;
//! - `queues`, `placement`, `queue_machine`, `submit`: replicated queues
//!   (`replicas=`), each its own group on some of the nodes: where each
//!   is kept, its state machine and snapshots, and how a change reaches
//!   its leader from any node;
//! - `transaction`, `tx_part`: `TX COMMIT` across replicated queues, a
//!   two-phase commit over their groups decided by one entry in the
//!   metadata group (the coordinator, the decision, each leader's
//!   recovery), and a queue's side of it (the prepare and resolve
//!   entries, the parts its members keep aside meanwhile);
//! - `state`: a state machine in RAM, for the tests;
//! - `tests`: three nodes in one process on loopback, replicating,
//!   electing anew when the leader stops, a restarted node catching up
//!   from its own log, and a node back with an empty disk catching up by
//!   a snapshot sent over the network (its group log purged past its
//!   last entry).
//!
//! The nodes talk TLS when the client port has it (`--tls-cert`), checking
//! each other's certificates against `--cluster-ca`. Not yet: replicated
//! streams.

mod batch;
mod log_store;
mod membership;
mod meta;
mod network;
mod node;
mod placement;
mod queue_machine;
mod queues;
mod remote;
#[cfg(test)]
mod state;
mod stream_replica;
mod submit;
#[cfg(test)]
mod tests;
mod transaction;
mod tx_part;

use std::io::Cursor;

/// The message log's group that holds the cluster's metadata (a
/// replicated queue's group is numbered from `placement::GROUP_BASE`).
const META_GROUP: u64 = 0;

/// A leader's heartbeat, when it has nothing to send.
const HEARTBEAT_MS: u64 = 150;
/// A follower that hears no leader for this long (at random between the
/// two; after the leader's lease, as long as the longest) stands for
/// election. So a leader's failure is over in 1.8 to 2.4 s, and a split
/// vote costs another lease and timeout: under the 5 s failover target.
const ELECTION_MIN_MS: u64 = 600;
/// See [`ELECTION_MIN_MS`]; also the leader's lease.
const ELECTION_MAX_MS: u64 = 1200;

pub use node::{ClusterError, ClusterNode};

openraft::declare_raft_types!(
    /// sluice's Raft types: a command is a [`Payload`] (the metadata
    /// group's a [`MetaOp`](crate::broker::MetaOp), a replicated queue's
    /// its entry), answered by what applying it came to; node ids are
    /// numbers.
    pub(crate) TypeConfig:
        D = Payload,
        R = crate::broker::MetaAnswer,
);

/// The error of a snapshot asked of a group that takes none (`what`: which
/// groups); none is ever asked while their snapshot policy is `Never`.
fn no_snapshots(what: &str) -> openraft::StorageError<u64> {
    openraft::StorageError::from(openraft::StorageIOError::new(
        openraft::ErrorSubject::None,
        openraft::ErrorVerb::Read,
        openraft::AnyError::error(format!("{what} take no snapshots yet")),
    ))
}

/// A command in a group's log: JSON text, which the log's own JSON (its
/// file, the nodes' frames) carries as one string, not as an array of
/// numbers that would take four bytes a byte and a number parse each.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Payload(pub(crate) String);

impl Payload {
    /// `value` as JSON.
    pub(crate) fn of(value: &impl serde::Serialize) -> Result<Payload, serde_json::Error> {
        serde_json::to_string(value).map(Payload)
    }
}
