//! [`ClusterNode`]: this process as a node of a cluster (`sluice serve
//! --node-id ... --cluster-addr ... --peers ... --cluster-secret ...`):
//! the cluster's metadata Raft group, kept in the message log as its group
//! 0, the nodes' port, and the view of the cluster it keeps up to date for
//! `STATS`. The node with the smallest id starts the group the first time.
//!
//! So far the group replicates its membership only: its state machine
//! (`state.rs`) keeps what was applied and the membership, in RAM, and the
//! group takes no snapshots (nothing is purged, so a start re-applies the
//! log). The topology goes through it in the next step of issue 18.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::log_store::GroupLog;
use super::network::{serve, Peers};
use super::state::StateMachine;
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
    /// The nodes' TLS (certificate, key, or what to trust).
    #[error("TLS between the nodes: {0}")]
    Tls(String),
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
        // TLS between nodes when the client port has it.
        let (acceptor, trust) = match &broker.config().tls {
            Some(files) => {
                let acceptor =
                    crate::tls::acceptor(files).map_err(|e| ClusterError::Tls(e.to_string()))?;
                let ca = cfg.ca.as_deref().unwrap_or(&files.cert);
                let trust = crate::tls::TlsClientConfig::from_ca_file(ca)
                    .map_err(|e| ClusterError::Tls(e.to_string()))?;
                (Some(acceptor), Some(trust))
            }
            None => (None, None),
        };
        let raft = Raft::new(
            cfg.node_id,
            config,
            Peers::new(secret.clone(), trust),
            log,
            StateMachine::<()>::default(),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let server = tokio::spawn(serve(listener, raft.clone(), secret, acceptor));
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
