//! What a cluster node hooks into the broker: its view of the cluster
//! ([`ClusterStatus`], for `STATS`), the metadata group that topology and
//! user changes go through ([`Consensus`], proposing a [`MetaOp`]), and
//! how far that group has applied its log to this broker's topology (kept
//! with the topology, so that a restart applies no entry twice). The
//! cluster itself (`crate::cluster`) builds on the broker; the broker
//! knows it only through these.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Broker;
use crate::error::BrokerError;
use crate::protocol::command::ClusterCommand;
use crate::store::StoreError;

/// A cluster node's view of its cluster, as `STATS` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub state: &'static str,
    /// The leader's id, when one is known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The last index in this node's log.
    pub last_log_index: Option<u64>,
    /// The last index applied.
    pub last_applied: Option<u64>,
    /// The voting members.
    pub members: Vec<u64>,
    /// Every node of the membership (voters and learners).
    pub nodes: Vec<NodeStatus>,
}

/// One node of a cluster, as `LIST NODES` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: u64,
    /// Where the other nodes reach it.
    pub addr: String,
    /// A voting member (else a learner, catching up).
    pub voter: bool,
    /// On the leader: the last log index known to be on that node.
    pub matched: Option<u64>,
}

/// One change to the cluster's metadata, as its group's log carries it:
/// every node applies it to its own broker, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MetaOp {
    /// `DECLARE`, `DELETE`, `BIND`, `UNBIND`, `USER PERMIT` or `USER
    /// REMOVE`, as the command's wire frame (none of them carries a
    /// secret), run as an admin.
    Command(String),
    /// `USER ADD`, with the password's hash (made once, by the node that
    /// took the command: every node must store the same one).
    UserAdd {
        name: String,
        hash: String,
        admin: bool,
        /// The permissions as given (`None`: `.*`).
        configure: Option<String>,
        write: Option<String>,
        read: Option<String>,
    },
    /// `USER PASSWD`, with the new password's hash.
    UserPasswd { name: String, hash: String },
}

/// What applying a [`MetaOp`] came to: the words of its `OK`, or its
/// error's wire code and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MetaAnswer {
    /// `OK <words>`.
    Ok(Vec<String>),
    /// `ERR <code> <text>`.
    Err(String, String),
}

impl Default for MetaAnswer {
    fn default() -> Self {
        MetaAnswer::Ok(Vec::new())
    }
}

impl MetaAnswer {
    /// The answer of a change that ran to `result`.
    pub(crate) fn of(result: Result<Vec<String>, BrokerError>) -> MetaAnswer {
        match result {
            Ok(words) => MetaAnswer::Ok(words),
            Err(e) => MetaAnswer::Err(e.code().as_str().to_string(), e.to_string()),
        }
    }

    /// Back to a result, on the node that took the command.
    pub(crate) fn into_result(self) -> Result<Vec<String>, BrokerError> {
        match self {
            MetaAnswer::Ok(words) => Ok(words),
            MetaAnswer::Err(code, text) => Err(BrokerError::from_wire(&code, text)),
        }
    }
}

/// The answer a proposal comes to, later.
pub(crate) type Proposal = Pin<Box<dyn Future<Output = Result<Vec<String>, BrokerError>> + Send>>;

/// The metadata group, as the broker's commands see it: a change proposed
/// here answers once the group has committed it and this node has applied
/// it (so the connection's next command sees it), with what applying it
/// on the leader came to. `ERR UNAVAILABLE` when no leader answers in time.
pub(crate) trait Consensus: Send + Sync + std::fmt::Debug {
    /// Proposes `op`.
    fn propose(&self, op: MetaOp) -> Proposal;
    /// Changes the membership (`CLUSTER ADD|REMOVE|TRANSFER`), on the
    /// leader: the words of the `OK`.
    fn membership(&self, change: ClusterCommand) -> Proposal;
}

impl Broker {
    /// The message log the broker stores in (`None` with `--in-memory`).
    pub(crate) fn log_store(&self) -> Option<Arc<crate::store::LogStore>> {
        self.inner.log_store.get().cloned()
    }

    /// Records this node's view of its cluster (for `STATS`).
    pub(crate) fn set_cluster_status(&self, status: ClusterStatus) {
        *self.inner.cluster.lock() = Some(status);
    }

    /// This node's view of its cluster (`None`: a single node).
    pub(crate) fn cluster_status(&self) -> Option<ClusterStatus> {
        self.inner.cluster.lock().clone()
    }

    /// Makes topology and user changes go through `consensus` from now on
    /// (once: a node joins one cluster for its life).
    pub(crate) fn set_consensus(&self, consensus: Arc<dyn Consensus>) {
        let _ = self.inner.consensus.set(consensus);
    }

    /// The metadata group, on a cluster node.
    pub(crate) fn consensus(&self) -> Option<Arc<dyn Consensus>> {
        self.inner.consensus.get().cloned()
    }

    /// How far the metadata group has applied (see
    /// [`TopologyStore::cluster_state`](crate::store::TopologyStore::cluster_state)).
    pub(crate) fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.disk.store.topology.cluster_state()
    }

    /// Records how far the metadata group has applied; returns the
    /// generation to wait for.
    pub(crate) fn put_cluster_state(&self, state: &[u8]) -> Result<u64, StoreError> {
        self.inner
            .disk
            .write(|s| s.topology.put_cluster_state(state))
    }
}
