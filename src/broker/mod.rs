//! [`Broker`]: the handle every connection shares, and the registries of
//! exchanges and queues behind it. This file holds the handle, the
//! registries and their lookups, and the timer task's end; each operation
//! family has a file of its own:
//!
//! - `topology.rs`: declare, delete, bind and unbind; partitioned streams
//!   (a `hash` exchange and N streams declared together);
//! - `publish.rs`: route, store, enqueue; routing the dead letters that
//!   queue operations return;
//! - `consume.rs`: the queue operations sessions call (subscribe,
//!   unsubscribe, take, settle), which route their dead letters too;
//! - `transaction.rs`: `TX COMMIT`, acks and publishes in one atomic
//!   store batch;
//! - `tx_replicated.rs`: a transaction on replicated queues: what it may
//!   touch, and its part for each queue (the cluster commits them);
//! - `schema.rs`: the schema registry stored with the topology, and the
//!   check of a `PUB` body against its exchange's schema;
//! - `cluster.rs`: what a cluster node hooks into the broker (its view
//!   of the cluster, the metadata group that topology changes go
//!   through, how far that group has applied);
//! - `recover.rs`: opening the store and rebuilding from it at start, and
//!   the clean stop;
//! - `disk.rs`: the storage and group commit that queues write through;
//! - `queue/`: a queue's state, by kind: classic queues (with message
//!   groups) in `queue/classic/`, a stream's log and groups in
//!   `queue/stream/`; `exchange/`: the routing tables, by exchange type;
//! - `alarm.rs` and `reserve.rs`: the disk and memory alarms and the disk
//!   reserve; `stats.rs`, `connections.rs`, `timer.rs`: rates, live
//!   connections, queue deadlines.
//!
//! `Broker` is a cheap-clone handle (an `Arc` inside) shared by every
//! connection. Exchanges and queues live in `DashMap`s, so the publish path
//! takes no global lock: it reads one exchange's bindings (a `RwLock` read)
//! and locks each target queue briefly. Topology changes, which are rare,
//! are serialised by one mutex so that a delete and a bind cannot interleave.

pub mod alarm;
mod cluster;
pub(crate) mod connections;
pub(crate) mod consume;
mod dead_letter;
mod disk;
pub mod exchange;
pub(crate) mod history;
pub(crate) mod message;
pub(crate) mod publish;
pub(crate) mod queue;
mod recover;
pub(crate) mod reserve;
pub(crate) mod schema;
pub(crate) mod stats;
pub(crate) mod timer;
mod topology;
mod transaction;
mod tx_replicated;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod model_tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::auth::Registry;
use crate::config::Config;
use crate::error::BrokerError;
use crate::protocol::command::ExchangeKind;
use crate::protocol::reply::quote_for_message;
use crate::store::{Committer, ExchangeDef};
use alarm::Alarms;
pub use cluster::{ClusterStatus, NodeStatus, ReplicaStatus};
pub(crate) use cluster::{Consensus, Linked, MetaAnswer, MetaOp, Proposal, ReplicaMessage, TxPart};
use connections::Connections;
pub(crate) use dead_letter::Redriven;
pub(crate) use disk::Disk;
use exchange::Bindings;
pub(crate) use publish::{Hold, PublishAttempt, Published};
use queue::{Queue, QueueInit, Timed, Totals};
use stats::Sampler;
use timer::Timers;

/// How many alternate exchanges a publish follows before giving up (cycles).
const MAX_ALTERNATE_HOPS: usize = 8;

/// An exchange and its routing table.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// Name.
    pub(crate) name: Arc<str>,
    /// Type.
    pub(crate) kind: ExchangeKind,
    /// Survives a restart.
    pub(crate) durable: bool,
    /// Deleted when its last binding goes.
    pub(crate) auto_delete: bool,
    /// Where unroutable messages go.
    pub(crate) alternate: Option<String>,
    /// The exchange of a partitioned stream: its number of partitions
    /// (0 for an ordinary exchange).
    pub(crate) partitions: u32,
    /// The routing table.
    pub(crate) bindings: RwLock<Bindings>,
    /// `schema=<subject>`: bodies published here are checked against the
    /// subject's latest version (see `schema.rs`).
    pub(crate) schema: Option<Arc<str>>,
    /// `PUB`s refused by the schema (`sluice_schema_rejections_total`).
    pub(crate) schema_rejections: AtomicU64,
}

impl Exchange {
    fn def(&self) -> ExchangeDef {
        ExchangeDef {
            name: self.name.to_string(),
            kind: self.kind,
            auto_delete: self.auto_delete,
            alternate: self.alternate.clone(),
            hash_header: self.bindings.read().hash_header().map(str::to_string),
            partitions: self.partitions,
        }
    }
}

/// The broker handle.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    disk: Arc<Disk>,
    timers: Arc<Timers<Queue>>,
    /// The disk and memory alarms.
    alarms: Alarms,
    /// Users and permissions.
    users: Arc<Registry>,
    /// The schema registry (`SCHEMA`, `schema=`).
    schemas: crate::schema::Registry,
    /// `""`, shared by every message published to the default exchange.
    default_exchange: Arc<str>,
    exchanges: DashMap<Arc<str>, Arc<Exchange>>,
    queues: DashMap<Arc<str>, Arc<Queue>>,
    topology: Mutex<()>,
    next_queue_id: AtomicU64,
    next_body_id: AtomicU64,
    next_id: AtomicU64,
    boot: String,
    /// Broker-wide counters (queues bump them too).
    totals: Arc<Totals>,
    /// Rates over the last second and minute.
    sampler: Sampler,
    /// Live connections.
    connections: Arc<Connections>,
    /// The message log, when the store is one (what a cluster node keeps
    /// its Raft logs in).
    log_store: std::sync::OnceLock<Arc<crate::store::LogStore>>,
    /// This node's view of its cluster, kept up to date by the cluster
    /// node (`None`: a single node).
    cluster: parking_lot::Mutex<Option<ClusterStatus>>,
    /// The metadata group topology changes go through on a cluster node
    /// (unset: a single node, which changes its topology itself).
    consensus: std::sync::OnceLock<Arc<dyn Consensus>>,
}

fn not_found(what: &str, name: &str) -> BrokerError {
    BrokerError::NotFound(format!("{what} {}", quote_for_message(name)))
}

impl Broker {
    fn new_queue(&self, init: QueueInit) -> Arc<Queue> {
        // No handle on the broker: a queue returns its dead letters, and
        // whoever called it through the broker routes them (`publish.rs`).
        Arc::new(Queue::new(
            init,
            self.inner.disk.clone(),
            self.inner.timers.clone(),
            self.inner.totals.clone(),
        ))
    }

    /// Broker-wide counters.
    pub(crate) fn totals(&self) -> &Totals {
        &self.inner.totals
    }

    /// The rates sampler (its task is started by the server).
    pub(crate) fn sampler(&self) -> &Sampler {
        &self.inner.sampler
    }

    /// The registry of live connections.
    pub(crate) fn connections(&self) -> &Arc<Connections> {
        &self.inner.connections
    }

    /// Every queue, by name.
    pub(crate) fn queue_list(&self) -> Vec<Arc<Queue>> {
        let mut out: Vec<Arc<Queue>> = self
            .inner
            .queues
            .iter()
            .map(|e| e.value().clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A queue by name, whoever owns it (introspection, not use).
    pub(crate) fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.inner.queues.get(name).map(|q| q.clone())
    }

    /// Every exchange, by name.
    pub(crate) fn exchange_list(&self) -> Vec<Arc<Exchange>> {
        let mut out: Vec<Arc<Exchange>> = self
            .inner
            .exchanges
            .iter()
            .map(|e| e.value().clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The store's size on disk in bytes, if it keeps one.
    pub(crate) fn store_size(&self) -> Option<u64> {
        self.inner.disk.store.size_on_disk()
    }

    /// The timer task, which [`crate::server::serve`] spawns (and aborts at
    /// shutdown): each queue whose deadline has come runs what is due, and
    /// the broker routes what expired and deletes a queue unused past its
    /// `expires`. It holds no queue, nor the broker, alive.
    pub(crate) fn run_timers(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let broker = Arc::downgrade(&self.inner);
        self.inner.timers.clone().run(move |q: Arc<Queue>, now| {
            let timed = q.on_timer(now);
            match broker.upgrade() {
                Some(inner) => Broker { inner }.timed(&q, timed),
                // Stopping: no dead-letter exchange to route to.
                None => {
                    if let Err(e) = q.release(timed.dead.into_entries()) {
                        tracing::warn!(queue = %q.name, error = %e, "dead-lettering failed");
                    }
                }
            }
        })
    }

    /// Finishes what a queue's timer did: routes the copies that expired,
    /// and deletes the queue if it has been unused past its `expires`.
    fn timed(&self, q: &Arc<Queue>, timed: Timed) {
        self.dead_letter_or_log(q, timed.dead);
        if timed.unused {
            tracing::info!(queue = %q.name, "queue unused past its expires; deleting");
            if let Err(e) = self.delete_queue_now(q) {
                tracing::warn!(queue = %q.name, error = %e, "could not delete an expired queue");
            }
        }
    }

    /// The disk and memory alarms (their task is started by the server).
    pub fn alarms(&self) -> &Alarms {
        &self.inner.alarms
    }

    /// Users and permissions.
    pub(crate) fn users(&self) -> &Arc<Registry> {
        &self.inner.users
    }

    /// Whether this broker may listen on `addrs` (every listener: the plain
    /// port and any other): an open broker (no users) only on loopback,
    /// unless the configuration says `insecure_open`, which is logged loudly.
    pub fn check_exposure(
        &self,
        addrs: &[std::net::SocketAddr],
    ) -> Result<(), crate::auth::ExposureError> {
        let exposed = crate::auth::check_exposure(
            addrs,
            self.inner.users.has_users(),
            self.inner.config.insecure_open,
        )?;
        for addr in exposed {
            tracing::warn!(
                %addr,
                "--insecure-open: serving a broker with NO USERS beyond loopback; anyone who \
                 can reach this address can read, publish and delete everything. Add a user \
                 (USER ADD <name> <password> admin) to close it"
            );
        }
        Ok(())
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The group commit (replies wait on it).
    pub fn committer(&self) -> &Arc<Committer> {
        self.inner.disk.committer()
    }

    /// Looks a queue up for a connection: `NOT_FOUND`, or `LOCKED` when it
    /// is another connection's exclusive queue.
    pub(crate) fn queue(&self, name: &str, conn: u64) -> Result<Arc<Queue>, BrokerError> {
        let q = self
            .inner
            .queues
            .get(name)
            .map(|q| q.clone())
            .ok_or_else(|| not_found("queue", name))?;
        match q.owner {
            Some(owner) if owner != conn => Err(BrokerError::Locked(format!(
                "queue {} is exclusive to another connection",
                q.name
            ))),
            _ => Ok(q),
        }
    }

    /// A fresh broker-unique number (consumer ids, generated names).
    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether a queue keeps its persistent messages in the store.
fn stores(q: &Queue) -> bool {
    q.durable && q.owner.is_none()
}
