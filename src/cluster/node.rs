//! [`ClusterNode`]: this process as a node of a cluster (`sluice serve
//! --node-id ... --cluster-addr ... --peers ... --cluster-secret ...`):
//! the cluster's metadata Raft group, kept in the message log as its group
//! 0, the nodes' port, and the view of the cluster it keeps up to date for
//! `STATS`. The node with the smallest id starts the group the first time.
//!
//! So far the group replicates its membership only: the state machine
//! ([`Meta`]) records what was applied and the membership, in RAM, and the
//! group takes no snapshots (nothing is purged, so a start re-applies the
//! log). The topology goes through it in the next step of issue 18.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Config, Entry, EntryPayload, LogId, Raft, RaftSnapshotBuilder, ServerState,
    SnapshotMeta, SnapshotPolicy, StorageError, StoredMembership,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::log_store::GroupLog;
use super::network::{serve, Peers};
use super::TypeConfig;
use crate::broker::{Broker, ClusterStatus};
use crate::config::ClusterConfig;

/// The message log's group that holds the cluster's metadata.
const META_GROUP: u64 = 0;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `--in-memory`: a node keeps its Raft log on disk.
    #[error("a cluster node needs a data directory (it cannot run --in-memory)")]
    NoLog,
    /// `--peers` does not name this node.
    #[error("--peers does not name this node (--node-id {0})")]
    NotAPeer(u64),
    /// The nodes' port.
    #[error("listening for the other nodes on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// openraft refused to start or to initialize the group.
    #[error("the cluster's Raft group: {0}")]
    Raft(String),
}

/// This process as a cluster node (see the module docs).
pub struct ClusterNode {
    raft: Raft<TypeConfig>,
    server: JoinHandle<()>,
    watcher: JoinHandle<()>,
    addr: std::net::SocketAddr,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ClusterNode {
    /// Starts this node of the cluster `cfg` describes, on `broker`'s
    /// message log: binds the nodes' port, starts the metadata group (and
    /// initializes it, on the node with the smallest id, the first time).
    pub async fn start(broker: &Broker, cfg: &ClusterConfig) -> Result<ClusterNode, ClusterError> {
        let store = broker.log_store().ok_or(ClusterError::NoLog)?;
        if !cfg.peers.contains_key(&cfg.node_id) {
            return Err(ClusterError::NotAPeer(cfg.node_id));
        }
        let listener =
            TcpListener::bind(cfg.addr)
                .await
                .map_err(|source| ClusterError::Listen {
                    addr: cfg.addr,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ClusterError::Listen {
                addr: cfg.addr,
                source,
            })?;
        let log = GroupLog::new(store, broker.committer().clone(), META_GROUP);
        let config = Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: SnapshotPolicy::Never,
            ..Config::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| ClusterError::Raft(e.to_string()))?,
        );
        let secret: Arc<str> = Arc::from(cfg.secret.as_str());
        let raft = Raft::new(
            cfg.node_id,
            config,
            Peers::new(secret.clone()),
            log,
            Meta::default(),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let server = tokio::spawn(serve(listener, raft.clone(), secret));
        let first = cfg.peers.keys().next().copied();
        if first == Some(cfg.node_id) {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
            if !initialized {
                let members: BTreeMap<u64, BasicNode> = cfg
                    .peers
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                    .collect();
                raft.initialize(members)
                    .await
                    .map_err(|e| ClusterError::Raft(e.to_string()))?;
                tracing::info!(node = cfg.node_id, "started the cluster's metadata group");
            }
        }
        let watcher = tokio::spawn(watch(raft.clone(), broker.clone()));
        Ok(ClusterNode {
            raft,
            server,
            watcher,
            addr,
        })
    }

    /// Where it listens for the other nodes.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops it: the other nodes go on without it.
    pub async fn stop(self) {
        self.server.abort();
        self.watcher.abort();
        let _ = self.raft.shutdown().await;
    }
}

/// Keeps `broker`'s view of the cluster up to date with the Raft's metrics.
async fn watch(raft: Raft<TypeConfig>, broker: Broker) {
    let mut metrics = raft.metrics();
    loop {
        let status = {
            let m = metrics.borrow_and_update();
            ClusterStatus {
                node_id: m.id,
                state: match m.state {
                    ServerState::Leader => "leader",
                    ServerState::Follower => "follower",
                    ServerState::Candidate => "candidate",
                    ServerState::Learner => "learner",
                    ServerState::Shutdown => "shutdown",
                },
                leader: m.current_leader,
                term: m.current_term,
                last_log_index: m.last_log_index,
                last_applied: m.last_applied.map(|l| l.index),
                members: m.membership_config.membership().voter_ids().collect(),
            }
        };
        broker.set_cluster_status(status);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The metadata group's state machine, so far: what was applied and the
/// membership (see the module docs).
#[derive(Debug, Clone, Default)]
struct Meta(Arc<Mutex<MetaState>>);

#[derive(Debug, Default)]
struct MetaState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MetaData {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

impl RaftSnapshotBuilder<TypeConfig> for Meta {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut st = self.0.lock();
        let data = serde_json::to_vec(&MetaData {
            last_applied: st.last_applied,
            membership: st.membership.clone(),
        })
        .map_err(|e| openraft::StorageIOError::read_state_machine(&e))?;
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: format!("{:?}", st.last_applied.map(|l| l.index)),
        };
        st.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for Meta {
    type SnapshotBuilder = Meta;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let st = self.0.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut st = self.0.lock();
        let mut out = Vec::new();
        for e in entries {
            st.last_applied = Some(e.log_id);
            if let EntryPayload::Membership(m) = e.payload {
                st.membership = StoredMembership::new(Some(e.log_id), m);
            }
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let d: MetaData = serde_json::from_slice(&data)
            .map_err(|e| openraft::StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut st = self.0.lock();
        st.last_applied = d.last_applied;
        st.membership = d.membership;
        st.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.0.lock().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
