//! [`ClusterNode`]: this process as a node of a cluster (`sluice serve
//! --node-id ... --cluster-addr ... --peers ... --cluster-secret ...`):
//! the cluster's metadata Raft group, kept in the message log as its group
//! 0, the nodes' port, and the view of the cluster it keeps up to date for
//! `STATS`. The node with the smallest id starts the group the first time.
//!
//! The group carries the topology and the users ([`MetaGroup`], the
//! broker's [`Consensus`]): a change proposed on a follower is forwarded
//! to the leader, and answered once committed and applied here. Its state
//! machine (`meta.rs`) applies each change to this node's broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::log_store::GroupLog;
use super::membership;
use super::meta::MetaMachine;
use super::network::{call, serve, ForwardError, OnConsume, OnMembership, Peers, Router, Rpc};
use super::queues::Queues;
use super::remote::{self, Links};
use super::submit::{submit, unsubmitted};
use super::{Payload, TypeConfig, ELECTION_MAX_MS, ELECTION_MIN_MS, HEARTBEAT_MS, META_GROUP};
use crate::broker::queue::{Consumer, Queue, Settle};
use crate::broker::{
    Broker, ClusterStatus, Consensus, Linked, MetaAnswer, MetaOp, NodeStatus, Proposal,
    ReplicaMessage, ReplicaStatus,
};
use crate::config::ClusterConfig;
use crate::error::BrokerError;
use crate::protocol::command::{ClusterCommand, StreamStart};

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
    /// This node's copy of the metadata group's log did not read back
    /// whole.
    #[error(
        "this node's copy of the cluster's metadata log is damaged (set aside in the data \
         directory's log/groups/ as a .damaged file): remove the node (sluice cluster remove), \
         empty its data directory, and add it again (serve --join, sluice cluster add)"
    )]
    MetadataDamaged,
}

/// This process as a cluster node (see the module docs).
pub struct ClusterNode {
    raft: Raft<TypeConfig>,
    queues: Arc<Queues>,
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
        if store.group_damaged(META_GROUP) {
            return Err(ClusterError::MetadataDamaged);
        }
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
        let log = GroupLog::new(store.clone(), broker.committer().clone(), META_GROUP);
        let config = Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
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
        let peers = Peers::new(cfg.node_id, secret.clone(), trust);
        let router: Router = Arc::default();
        let queues = Queues::new(
            cfg.node_id,
            broker,
            store,
            peers.clone(),
            // A replicated queue's group takes snapshots; the metadata
            // group's log stays short.
            Arc::new(Config {
                snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
                // Kept behind a snapshot, for members a little behind.
                max_in_snapshot_log_to_keep: (cfg.snapshot_every / 2).min(1000),
                ..(*config).clone()
            }),
            router.clone(),
        );
        let machine = MetaMachine::open(broker, queues.clone()).map_err(ClusterError::Raft)?;
        let raft = Raft::new(cfg.node_id, config, peers.clone(), log, machine)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        router.insert(META_GROUP, raft.clone());
        let links = Links::new(peers.clone(), queues.clone());
        broker.set_consensus(Arc::new(MetaGroup {
            raft: raft.clone(),
            peers: peers.clone(),
            queues: queues.clone(),
            links,
        }));
        let on_consume: OnConsume = {
            let (broker, queues) = (broker.clone(), queues.clone());
            Arc::new(move |req, io| {
                Box::pin(remote::serve(broker.clone(), queues.clone(), req, io))
            })
        };
        let on_membership: OnMembership = {
            let (router, peers) = (router.clone(), peers.clone());
            Arc::new(move |group, change| {
                let peers = peers.clone();
                let raft = router.get(&group).map(|r| r.clone());
                Box::pin(async move {
                    MetaAnswer::of(match raft {
                        // A queue's group hands its lead over by election
                        // alone (`Rpc::Elect` is the metadata group's).
                        Some(_)
                            if group != META_GROUP
                                && matches!(change, ClusterCommand::Transfer(_)) =>
                        {
                            Err(BrokerError::Precondition(
                                "a replicated queue's group takes no transfer".into(),
                            ))
                        }
                        Some(raft) => membership::change(&raft, &peers, change).await,
                        None => Err(BrokerError::Unavailable(format!(
                            "group {group} does not run on this node"
                        ))),
                    })
                })
            })
        };
        let server = tokio::spawn(serve(
            listener,
            router,
            secret,
            acceptor,
            Some(on_membership),
            Some(on_consume),
        ));
        let first = cfg.peers.keys().next().copied();
        if first == Some(cfg.node_id) && !cfg.join {
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
        queues.start(raft.clone());
        let watcher = tokio::spawn(watch(raft.clone(), broker.clone()));
        Ok(ClusterNode {
            raft,
            queues,
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
        self.queues.stop().await;
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
                nodes: nodes(&m),
            }
        };
        broker.set_cluster_status(status);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Every node of the membership, with what the leader knows of how far
/// its log is (nothing on another node).
fn nodes(m: &openraft::RaftMetrics<u64, BasicNode>) -> Vec<NodeStatus> {
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| NodeStatus {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched: match (&m.replication, *id == m.id) {
                (Some(r), false) => r.get(id).and_then(|l| l.map(|l| l.index)),
                (Some(_), true) => m.last_log_index,
                (None, _) => None,
            },
        })
        .collect()
}

/// How long a change waits for the metadata group before `ERR
/// UNAVAILABLE`: a leader to take it, and its commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a membership change waits between tries while no leader
/// takes it.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The metadata group as the broker proposes to it.
#[derive(Clone)]
struct MetaGroup {
    raft: Raft<TypeConfig>,
    peers: Peers,
    queues: Arc<Queues>,
    /// Subscriptions through this node to queues led elsewhere.
    links: Arc<Links>,
}

impl std::fmt::Debug for MetaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaGroup").finish_non_exhaustive()
    }
}

impl Consensus for MetaGroup {
    fn transact(&self, parts: Vec<crate::broker::TxPart>) -> Proposal {
        let queues = self.queues.clone();
        Box::pin(async move { queues.transact(parts).await.map(|()| Vec::new()) })
    }

    fn propose(&self, op: MetaOp) -> Proposal {
        let group = self.clone();
        Box::pin(async move { group.write(op).await })
    }

    fn membership(&self, change: ClusterCommand) -> Proposal {
        let group = self.clone();
        Box::pin(async move { group.change(change).await })
    }

    fn replicated(&self, queue: &str) -> bool {
        self.queues.is_placed(queue)
    }

    fn enqueue(&self, queue: Arc<str>, msg: ReplicaMessage) -> Proposal {
        // Handed over now: see `Queues::enqueue`.
        Box::pin(self.queues.enqueue(&queue, msg))
    }

    fn settled(&self, queue: &str, seqs: Vec<u64>) {
        self.queues.settled(queue, seqs);
    }

    fn offset(&self, queue: &str, group: &str, at: u64, seek: bool) {
        self.queues.offset(queue, group, at, seek);
    }

    fn failed(&self, queue: &str, group: &str, at: u64, count: u32) {
        self.queues.failed(queue, group, at, count);
    }

    fn returned(&self, queue: &str, seqs: Vec<u64>) {
        self.queues.returned(queue, seqs);
    }

    fn serve_here(&self, queue: &str) -> Result<(), BrokerError> {
        self.queues.serve_here(queue)
    }

    fn led_elsewhere(&self, queue: &str) -> bool {
        self.queues.led_elsewhere(queue)
    }

    fn consume(
        &self,
        queue: Arc<Queue>,
        consumer: Consumer,
        group: Option<String>,
        start: Option<StreamStart>,
    ) -> Linked {
        self.links.open(queue, consumer, group, start)
    }

    fn settle_remote(&self, consumer: u64, queue: &str, seq: u64, how: Settle) -> bool {
        self.links.settle(consumer, queue, seq, how)
    }

    fn unsubscribe_remote(&self, consumer: u64) -> bool {
        self.links.unsubscribe(consumer)
    }

    fn closed(&self, conn: u64) {
        self.links.closed(conn)
    }

    fn settled_barrier(&self, queue: &str) -> Proposal {
        let queues = self.queues.clone();
        let queue = queue.to_string();
        Box::pin(async move { queues.barrier(&queue).await.map(|_| Vec::new()) })
    }

    fn relayed_barrier(&self, conn: u64) -> Proposal {
        let linked = self.links.committed(conn);
        Box::pin(async move { linked.await.map(|_| Vec::new()) })
    }

    fn replica_status(&self, queue: &str) -> Option<ReplicaStatus> {
        self.queues.status(queue)
    }

    fn confirm_lead(&self, queue: &str) -> Proposal {
        let queues = self.queues.clone();
        let queue = queue.to_string();
        Box::pin(async move { queues.confirm_lead(&queue).await.map(|_| Vec::new()) })
    }

    fn led(&self, queue: &str) -> Proposal {
        let queues = self.queues.clone();
        let queue = queue.to_string();
        Box::pin(async move {
            queues.led(&queue).await;
            Ok(Vec::new())
        })
    }
}

impl MetaGroup {
    /// Makes a membership change on the leader: here, or forwarded to it
    /// (waiting for one up to [`PROPOSE_TIMEOUT`]).
    async fn change(&self, change: ClusterCommand) -> Result<Vec<String>, BrokerError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        loop {
            let (me, leader) = {
                let m = self.raft.metrics().borrow().clone();
                let node = m
                    .current_leader
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
                (m.current_leader == Some(m.id), node)
            };
            if me {
                return membership::change(&self.raft, &self.peers, change).await;
            }
            if let Some(leader) = leader {
                let rpc = Rpc::membership(META_GROUP, &change);
                // A membership change may wait for a learner to catch up.
                let patience = Instant::now() + Duration::from_secs(90);
                match call::<MetaAnswer>(&self.peers, &leader.addr, &rpc, patience).await {
                    Ok(answer) => return answer.into_result(),
                    Err(ForwardError::Unsent(why)) => {
                        tracing::debug!(%why, "could not reach the leader; trying again");
                    }
                    Err(ForwardError::Unknown(why)) => {
                        return Err(BrokerError::Unavailable(format!(
                            "the leader did not answer ({why}); the change may or may not have \
                             been made"
                        )))
                    }
                }
            }
            if Instant::now() + RETRY_EVERY >= deadline {
                return Err(BrokerError::Unavailable(
                    "no leader within 5 s; nothing was changed".into(),
                ));
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Proposes `op` here when this node leads, or forwards it to the
    /// leader, trying again while there is none (an election) until
    /// [`PROPOSE_TIMEOUT`]; then waits until this node has applied it.
    async fn write(&self, op: MetaOp) -> Result<Vec<String>, BrokerError> {
        let command = Payload::of(&op).map_err(|e| BrokerError::Internal(e.to_string()))?;
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let submitted = submit(
            Some(&self.raft),
            &self.peers,
            &[],
            META_GROUP,
            command,
            deadline,
        )
        .await;
        let (index, answer) = submitted.map_err(|e| unsubmitted(e, "the cluster's metadata"))?;
        // Applied here too before the answer, so that the client's next
        // command on this node sees it.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .raft
            .wait(Some(left.max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "a change")
            .await;
        answer.into_result()
    }
}
