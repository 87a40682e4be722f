//! What a cluster node hooks into the broker: its view of the cluster
//! ([`ClusterStatus`], for `STATS`), the metadata group that topology and
//! user changes go through ([`Consensus`], proposing a [`MetaOp`]), and
//! how far that group has applied its log to this broker's topology (kept
//! with the topology, so that a restart applies no entry twice). The
//! cluster itself (`crate::cluster`) builds on the broker; the broker
//! knows it only through these.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::message::{Entry, Message, Now};
use super::queue::{Consumer, Queue, Settle};
use super::Broker;
use crate::error::BrokerError;
use crate::protocol::command::ClusterCommand;
use crate::protocol::command::{Publish, StreamStart};
use crate::store::{MessageBatch, StoreError};

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
    /// The outcome of a transaction across replicated queues: the first
    /// one recorded for `tx` wins (the answer's word says which).
    TxOutcome { tx: String, commit: bool },
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

    /// The answer of a change refused with `e`.
    pub(crate) fn error(e: BrokerError) -> MetaAnswer {
        MetaAnswer::of(Err(e))
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

/// What opening a subscription on a replicated queue's leader comes to
/// ([`Consensus::consume`]): what starts its deliveries, to run once the
/// `SUB` is answered (so that its `OK` comes before the first `MSG`).
pub(crate) type Linked =
    Pin<Box<dyn Future<Output = Result<Box<dyn FnOnce() + Send>, BrokerError>> + Send>>;

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
    /// Whether `queue` is a replicated queue (`replicas=`).
    fn replicated(&self, queue: &str) -> bool;
    /// Appends a copy of `msg` to the replicated queue `queue`'s log (from
    /// any node): answers once a majority of its members has it on disk,
    /// `duplicate` when a `dedup-window=` queue already had its id.
    fn enqueue(&self, queue: Arc<str>, msg: ReplicaMessage) -> Proposal;
    /// Records in `queue`'s log that its leader settled the copies at
    /// these positions (acked, rejected), so that no other member delivers
    /// them after a failover. In the background.
    fn settled(&self, queue: &str, seqs: Vec<u64>);
    /// Records in replicated stream `queue`'s log that its leader moved
    /// consumer group `group` to offset `at`: committed (`seek` false: no
    /// member moves it back) or by `SEEK`. In the background; an `ACK`'s
    /// or `SEEK`'s `OK` waits for [`Consensus::settled_barrier`].
    fn offset(&self, queue: &str, group: &str, at: u64, seek: bool);
    /// Records in replicated stream `queue`'s log that a delivery of
    /// offset `at` to consumer group `group` ended without an ack, its
    /// `count`th, so that a new leader counts on (for `delivery-limit=`).
    /// In the background; a `NACK`'s `OK` waits for
    /// [`Consensus::settled_barrier`].
    fn failed(&self, queue: &str, group: &str, at: u64, count: u32);
    /// Records in `queue`'s log that its leader put the copies at these
    /// positions back after a delivery (`NACK`, an ack timeout, a consumer
    /// gone), so that a new leader counts their deliveries on (for
    /// `delivery-limit=`). In the background.
    fn returned(&self, queue: &str, seqs: Vec<u64>);
    /// Resolves once every settlement of `queue` recorded on this node so
    /// far is committed in its log (an `ACK`'s `OK` waits for it).
    fn settled_barrier(&self, queue: &str) -> Proposal;
    /// Resolves once the stream acks connection `conn` sent to leaders on
    /// other nodes ([`Consensus::settle_remote`]) are committed there
    /// (a stream's group offsets are its leader's to record).
    fn relayed_barrier(&self, conn: u64) -> Proposal;
    /// A replicated queue's group as this node sees it (`None`: not a
    /// replicated queue).
    fn replica_status(&self, queue: &str) -> Option<ReplicaStatus>;
    /// Resolves once a majority confirms that this node leads replicated
    /// queue `queue` and it has applied what its log committed before
    /// (`UNAVAILABLE` or `PRECONDITION` when it does not lead it).
    fn confirm_lead(&self, queue: &str) -> Proposal;
    /// Resolves once replicated queue `queue` has a leader, as far as this
    /// node can see (it runs the queue's group), or after a few seconds.
    fn led(&self, queue: &str) -> Proposal;
    /// `Ok` when this node may serve `queue`'s consumers (`SUB`, `GET`):
    /// a queue of its own, or a replicated queue it leads; else
    /// `PRECONDITION` naming the leader.
    fn serve_here(&self, queue: &str) -> Result<(), BrokerError>;
    /// Whether a `SUB` to replicated queue `queue` on this node goes to
    /// its leader on another node ([`Consensus::consume`]); `false`: it is
    /// served here, as [`Consensus::serve_here`] says.
    fn led_elsewhere(&self, queue: &str) -> bool;
    /// Subscribes `consumer` (this node's connection's) to replicated queue
    /// `queue` on its leader, another node: the leader delivers to this
    /// node, which pushes each delivery into `consumer`'s channel as from
    /// a queue of its own; its settlements go back to the leader
    /// ([`Consensus::settle_remote`]).
    /// On a stream, it reads as `group` (else a reader of its own) from
    /// `start`, as a `SUB` there would.
    fn consume(
        &self,
        queue: Arc<Queue>,
        consumer: Consumer,
        group: Option<String>,
        start: Option<StreamStart>,
    ) -> Linked;
    /// Settles the copy at `seq` of replicated queue `queue`, delivered to
    /// subscription `consumer` through [`Consensus::consume`]; `false`
    /// (nothing done) when `consumer` is not such a subscription.
    fn settle_remote(&self, consumer: u64, queue: &str, seq: u64, how: Settle) -> bool;
    /// Ends subscription `consumer` made through [`Consensus::consume`]
    /// (its deliveries stay outstanding); `false` when it is not one.
    fn unsubscribe_remote(&self, consumer: u64) -> bool;
    /// Connection `conn` closed (its deliveries settled): ends what is
    /// left of its subscriptions through [`Consensus::consume`].
    fn closed(&self, conn: u64);
    /// Commits a transaction's `parts` (one per replicated queue) all or
    /// nothing, coordinated from this node: `Ok` once its commit is
    /// recorded; an error when it aborted or its outcome is unknown.
    fn transact(&self, parts: Vec<TxPart>) -> Proposal;
}

/// A transaction's part in one replicated queue ([`Consensus::transact`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct TxPart {
    /// The queue.
    pub(crate) queue: String,
    /// Copies it publishes there, in order.
    pub(crate) enqueue: Vec<ReplicaMessage>,
    /// Positions of the copies it acks, delivered from this node (which
    /// leads the queue).
    pub(crate) settle: Vec<u64>,
    /// On a stream: the group commits its acks make (group, offset),
    /// computed on this node (which leads the stream).
    pub(crate) offsets: Vec<(String, u64)>,
}

/// A replicated queue's group, as `STATS QUEUE`, `LIST QUEUES`, the
/// metrics and the overview show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStatus {
    /// The nodes that keep it.
    pub members: Vec<u64>,
    /// Its leader, when known here.
    pub leader: Option<u64>,
    /// Its term, on a member.
    pub term: Option<u64>,
    /// The last index of its log on this node (a member).
    pub last_log_index: Option<u64>,
    /// The last index this node applied (a member).
    pub last_applied: Option<u64>,
    /// The last index its newest snapshot here covers (a member).
    pub snapshot: Option<u64>,
    /// The last index purged from its log here, behind a snapshot.
    pub purged: Option<u64>,
    /// This node's copy was found damaged and is not whole again yet (it
    /// takes no part in the group until repaired from the others).
    pub damaged: bool,
    /// On its leader: how many entries each member is behind.
    pub lag: Vec<(u64, u64)>,
    /// The transactions' parts this member holds undecided (a member).
    pub tx_pending: Option<u64>,
}

/// A message as a replicated queue's log carries it (bytes in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaMessage {
    id: String,
    exchange: String,
    key: String,
    headers: Vec<(String, String)>,
    body: String,
    persistent: bool,
    published_at: u64,
    not_before: Option<u64>,
    /// `PUB priority=` (the queue's `max-priority=` caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
    /// `PUB ttl=` (the queue's `ttl=` may be shorter), from
    /// `published_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    /// `PUB group=` (a `groups` queue's key; base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// The publisher chose its id (`PUB id=`): a `dedup-window=` queue
    /// takes it once per window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    chosen_id: bool,
}

impl ReplicaMessage {
    /// The message `p` publishes, with id `id`.
    pub(crate) fn of(p: &Publish, id: &str, now: &Now) -> ReplicaMessage {
        let b64 = |b: &[u8]| BASE64.encode(b);
        ReplicaMessage {
            id: id.to_string(),
            exchange: p.exchange.clone(),
            key: b64(&p.key),
            headers: p.headers.iter().map(|(n, v)| (n.clone(), b64(v))).collect(),
            body: b64(&p.body),
            persistent: p.persistent != Some(false),
            published_at: now.get(),
            not_before: p
                .delay_ms
                .filter(|d| *d > 0)
                .map(|d| now.get().saturating_add(d)),
            priority: p.priority,
            ttl_ms: p.ttl_ms,
            group: p.group.as_deref().map(b64),
            chosen_id: p.id.is_some(),
        }
    }

    /// A dead letter of `msg`: republished through `exchange` with `key`
    /// and `headers` (its `x-death-*`), now.
    pub(crate) fn dead_letter(
        msg: &Message,
        exchange: &str,
        key: &[u8],
        headers: &[crate::protocol::command::Header],
        now: &Now,
    ) -> ReplicaMessage {
        Self::carrying(msg, exchange, key, headers, now.get())
    }

    /// `msg` as a leader sends it to the node of a subscriber (see
    /// [`Consensus::consume`]): what a delivery shows of it.
    pub(crate) fn delivered(msg: &Message) -> ReplicaMessage {
        ReplicaMessage {
            group: msg.group.as_deref().map(|g| BASE64.encode(g)),
            ..Self::carrying(
                msg,
                &msg.exchange,
                &msg.routing_key,
                &msg.headers,
                msg.published_at,
            )
        }
    }

    /// `msg`'s id, body and persistence, through `exchange` with `key` and
    /// `headers`, published at `published_at`: no delay, priority, TTL or
    /// group.
    fn carrying(
        msg: &Message,
        exchange: &str,
        key: &[u8],
        headers: &[crate::protocol::command::Header],
        published_at: u64,
    ) -> ReplicaMessage {
        let b64 = |b: &[u8]| BASE64.encode(b);
        ReplicaMessage {
            id: msg.id.clone(),
            exchange: exchange.to_string(),
            key: b64(key),
            headers: headers.iter().map(|(n, v)| (n.clone(), b64(v))).collect(),
            body: b64(&msg.body),
            persistent: msg.persistent,
            published_at,
            not_before: None,
            priority: None,
            ttl_ms: None,
            group: None,
            chosen_id: false,
        }
    }

    /// The id a `dedup-window=` queue remembers it by (`None`: the id was
    /// made up by the broker, never a duplicate), and when it was
    /// published (what the window counts from, the same on every member).
    pub(crate) fn dedup_key(&self) -> Option<(&str, u64)> {
        self.chosen_id
            .then_some((self.id.as_str(), self.published_at))
    }

    /// Its body's length in bytes (from its base64, not decoded).
    pub(crate) fn body_len(&self) -> u64 {
        let padding = self.body.bytes().rev().take_while(|b| *b == b'=').count();
        ((self.body.len() / 4 * 3).saturating_sub(padding)) as u64
    }

    /// Where its copy at `seq` waits in `q` (see [`Queue::withdraw`]): its
    /// position, priority and due time.
    pub(crate) fn waiting_in(&self, q: &Queue, seq: u64) -> (u64, u8, Option<u64>) {
        (seq, q.priority_for(self.priority), self.not_before)
    }

    /// The message again.
    pub(crate) fn message(&self) -> Result<Message, BrokerError> {
        let bytes = |s: &str| {
            BASE64
                .decode(s)
                .map(Bytes::from)
                .map_err(|e| BrokerError::Internal(format!("a replicated message: {e}")))
        };
        Ok(Message {
            id: self.id.clone(),
            exchange: Arc::from(self.exchange.as_str()),
            routing_key: bytes(&self.key)?,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| Ok((n.clone(), bytes(v)?)))
                .collect::<Result<_, BrokerError>>()?,
            body: bytes(&self.body)?,
            body_id: 0,
            stored_refs: AtomicU32::new(0),
            persistent: self.persistent,
            registry: OnceLock::new(),
            published_at: self.published_at,
            group: self.group.as_deref().map(bytes).transpose()?,
        })
    }
}

impl Broker {
    /// Splits `targets` into the queues of this node and the replicated
    /// ones.
    pub(super) fn split_replicated(
        &self,
        targets: Vec<Arc<Queue>>,
    ) -> (Vec<Arc<Queue>>, Vec<Arc<str>>) {
        let Some(c) = self.inner.consensus.get() else {
            return (targets, Vec::new());
        };
        let mut local = Vec::with_capacity(targets.len());
        let mut replicated = Vec::new();
        for q in targets {
            match c.replicated(&q.name) {
                true => replicated.push(q.name.clone()),
                false => local.push(q),
            }
        }
        (local, replicated)
    }

    /// Appends a dead letter `msg` to each replicated queue of `queues`,
    /// in the background: at most once (the copy it comes from is settled
    /// already; a failure is logged), as RabbitMQ's quorum queues
    /// dead-letter unless told otherwise.
    pub(super) fn dead_letter_replicated(&self, queues: Vec<Arc<str>>, msg: &ReplicaMessage) {
        let Some(c) = self.inner.consensus.get() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("a dead letter for a replicated queue outside the runtime; dropped");
            return;
        };
        for q in queues {
            let appended = c.enqueue(q.clone(), msg.clone());
            rt.spawn(async move {
                if let Err(e) = appended.await {
                    tracing::warn!(queue = %q, error = %e, "a dead letter for a replicated queue was lost");
                }
            });
        }
    }

    /// Replicated queue `queue`'s group as this node sees it.
    pub(crate) fn replica_status(&self, queue: &str) -> Option<ReplicaStatus> {
        self.inner.consensus.get()?.replica_status(queue)
    }

    /// Whether this node is a member of replicated queue `queue`'s group
    /// (it keeps a copy).
    pub(crate) fn keeps_replica(&self, queue: &str) -> bool {
        let me = self.cluster_status().map(|c| c.node_id);
        self.replica_status(queue)
            .is_some_and(|r| me.is_some_and(|me| r.members.contains(&me)))
    }

    /// `Ok` when this node serves `queue`'s consumers (see
    /// [`Consensus::serve_here`]); always on a single node.
    pub(crate) fn served_here(&self, queue: &str) -> Result<(), BrokerError> {
        match self.inner.consensus.get() {
            Some(c) => c.serve_here(queue),
            None => Ok(()),
        }
    }

    /// Puts a replicated queue's copy at position `seq` into this node's
    /// view of the queue (its leader's), in RAM only: the queue's log is
    /// where it is kept. `redelivered`: it may have been delivered before
    /// (by an earlier leader).
    pub(crate) fn enqueue_replica(
        &self,
        q: &Arc<Queue>,
        seq: u64,
        m: &ReplicaMessage,
        redelivered: bool,
        returns: u32,
    ) -> Result<(), BrokerError> {
        let e = Entry {
            seq,
            msg: Arc::new(m.message()?),
            // The deliveries its queue's log counted (returns), and the
            // one that may have been under way when the lead moved.
            deliveries: returns + u32::from(redelivered),
            redelivered,
            stored: false,
            priority: q.priority_for(m.priority),
            // From the publish: a new leader's copy expires when the old
            // leader's would have.
            expires_at: q.expiry_from(m.published_at, m.ttl_ms),
            not_before: m.not_before,
            uncertain: redelivered,
        };
        let (_, dead) = q.enqueue(e)?;
        self.dead_letter_or_log(q, dead);
        Ok(())
    }

    /// Appends a replicated stream's messages, each at its offset (from
    /// its log, the same on every member, in order), to this node's copy
    /// of stream `q`: stored with the next round of the group commit (the
    /// log has them until a snapshot, which waits for that round) and
    /// read from there on like any stream's. Returns the generation to
    /// wait for.
    pub(crate) fn append_to_stream(
        &self,
        q: &Arc<Queue>,
        copies: Vec<(u64, ReplicaMessage)>,
    ) -> Result<Option<u64>, BrokerError> {
        let mut entries = Vec::with_capacity(copies.len());
        for (seq, m) in copies {
            let mut msg = m.message()?;
            msg.body_id = self.inner.next_body_id.fetch_add(1, Ordering::Relaxed);
            msg.stored_refs = AtomicU32::new(1);
            entries.push(Entry {
                seq,
                msg: Arc::new(msg),
                deliveries: 0,
                redelivered: false,
                stored: true,
                priority: 0,
                expires_at: None,
                not_before: None,
                uncertain: false,
            });
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let metas: Vec<_> = entries.iter().map(|e| e.meta(false)).collect();
        let batch = MessageBatch {
            put_bodies: entries
                .iter()
                .map(|e| (e.msg.body_id, &e.msg.body[..]))
                .collect(),
            put_metas: entries
                .iter()
                .zip(&metas)
                .map(|(e, m)| (q.id, e.seq, m))
                .collect(),
            ordered_only: true,
            ..MessageBatch::default()
        };
        let gen = self.inner.disk.apply(&batch)?;
        drop(batch);
        q.raise_next_seq(last.saturating_add(1));
        for e in entries {
            let (_, dead) = q.enqueue(e)?;
            self.dead_letter_or_log(q, dead);
        }
        Ok(Some(gen))
    }

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
