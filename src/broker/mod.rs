//! [`Broker`]: the registries of exchanges and queues, the topology
//! operations (declare, delete, bind, purge; partitioned streams, which are
//! a `hash` exchange and N streams declared together), publishing (route,
//! store, enqueue; routing the dead letters queues return), the queue
//! operations sessions call (`consume.rs`: subscribe, take, settle, which
//! route theirs too) and recovery from the store at start. A queue's
//! state, by kind, lives in `queue/`: classic queues (with message groups)
//! in `queue/classic/`, a stream's log and groups in `queue/stream/`.
//!
//! `Broker` is a cheap-clone handle (an `Arc` inside) shared by every
//! connection. Exchanges and queues live in `DashMap`s, so the publish path
//! takes no global lock: it reads one exchange's bindings (a `RwLock` read)
//! and locks each target queue briefly. Topology changes, which are rare,
//! are serialised by one mutex so that a delete and a bind cannot interleave.

pub mod alarm;
pub mod connections;
pub mod consume;
pub mod exchange;
pub mod message;
pub mod publish;
pub mod queue;
pub mod reserve;
pub mod stats;
pub mod timer;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod model_tests;

use std::collections::HashMap;

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::auth::Registry;
use crate::config::Config;
use crate::error::BrokerError;
use crate::protocol::command::{
    Bind, DeclareExchange, DeclareQueue, DeleteQueue, ExchangeKind, HeaderMatch,
};
use crate::protocol::encode::describe_args;
use crate::protocol::reply::quote_for_message;
use crate::store::{
    BindingDef, Committer, ExchangeDef, MessageBatch, NullStore, QueueDef, Recovered, SledStore,
    Storage, StoreError,
};
use alarm::Alarms;
use connections::Connections;
use exchange::{Binding, Bindings};
use message::Bodies;
pub use publish::{Hold, PublishAttempt, Published};
use queue::{Queue, QueueInit, Timed, Totals};
use stats::Sampler;
use timer::Timers;

/// How many alternate exchanges a publish follows before giving up (cycles).
const MAX_ALTERNATE_HOPS: usize = 8;

/// The storage plus its group commit: what a queue needs to persist, and to
/// page its backlog out and back in.
#[derive(Debug)]
pub struct Disk {
    store: Storage,
    committer: Arc<Committer>,
    /// Stored-reference counts of shared bodies whose copies are paged out.
    bodies: Arc<Bodies>,
    /// Per-queue RAM budget; `None` when nothing is on disk (no paging).
    ram_budget: Option<u64>,
    /// The disk alarm, which counts every write against the free space.
    space: Arc<alarm::Alarm>,
}

impl Disk {
    /// Reads stored copies back (see [`MessageStore::load`](crate::store::MessageStore::load)).
    pub fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<crate::store::RecoveredMessage>, StoreError> {
        self.store.messages.load(queue_id, from, to, limit)
    }

    /// Applies a message batch; returns the generation to wait for.
    pub fn apply(&self, batch: &MessageBatch<'_>) -> Result<u64, StoreError> {
        if let Err(e) = self.store.messages.apply(batch) {
            self.committer.write_failed(&e);
            return Err(e);
        }
        self.space.charge(batch.estimated_bytes());
        Ok(self.committer.written())
    }

    /// Runs a topology write; returns the generation to wait for.
    fn write(&self, f: impl FnOnce(&Storage) -> Result<(), StoreError>) -> Result<u64, StoreError> {
        if let Err(e) = f(&self.store) {
            self.committer.write_failed(&e);
            return Err(e);
        }
        self.space.charge(TOPOLOGY_WRITE_BYTES);
        Ok(self.committer.written())
    }

    /// The group commit.
    pub fn committer(&self) -> &Arc<Committer> {
        &self.committer
    }
}

/// What a topology write (a declare, a binding, a user) is counted as
/// against the free disk space.
const TOPOLOGY_WRITE_BYTES: u64 = 1024;

/// An exchange and its routing table.
#[derive(Debug)]
pub struct Exchange {
    /// Name.
    pub name: Arc<str>,
    /// Type.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Where unroutable messages go.
    pub alternate: Option<String>,
    /// The exchange of a partitioned stream: its number of partitions
    /// (0 for an ordinary exchange).
    pub partitions: u32,
    /// The routing table.
    pub bindings: RwLock<Bindings>,
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
}

fn not_found(what: &str, name: &str) -> BrokerError {
    BrokerError::NotFound(format!("{what} {}", quote_for_message(name)))
}

impl Broker {
    /// Opens the store named by `config` (sled, or nothing with `in_memory`),
    /// recovers durable state and starts the group commit.
    pub fn open(config: Config) -> Result<Broker, StoreError> {
        let store = if config.in_memory {
            Storage::one(Arc::new(NullStore))
        } else {
            let sled = SledStore::open(&config.data_dir, config.cache_bytes)?;
            Storage::one(Arc::new(sled))
        };
        let keep = store.clone();
        let opened = Broker::with_store(config, store);
        if let Err(StoreError::Io(_)) = &opened {
            // sled flushes when its last handle goes, and after an I/O
            // error (a full disk) that flush may never return: the
            // process is about to exit, so the handle is left alone.
            std::mem::forget(keep);
        }
        opened
    }

    /// Builds a broker on a given storage, recovering what it holds.
    pub fn with_store(config: Config, store: Storage) -> Result<Broker, StoreError> {
        let recovered = store.recover()?;
        let committer = Committer::start(&store)?;
        let users = match Registry::open(store.topology.clone(), Some(committer.clone())) {
            Ok(users) => Arc::new(users),
            Err(e) => {
                committer.shutdown(SHUTDOWN_PATIENCE);
                return Err(e);
            }
        };
        let ram_budget = (!config.in_memory && store.keeps_messages())
            .then_some(config.queue_memory_bytes.max(1));
        let alarms = Alarms::new(&config);
        let boot_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                disk: Arc::new(Disk {
                    store,
                    committer,
                    bodies: Arc::new(Bodies::default()),
                    ram_budget,
                    space: alarms.disk.clone(),
                }),
                timers: Arc::new(Timers::default()),
                alarms,
                users,
                default_exchange: Arc::from(""),
                exchanges: DashMap::new(),
                queues: DashMap::new(),
                topology: Mutex::new(()),
                next_queue_id: AtomicU64::new(1),
                next_body_id: AtomicU64::new(1),
                next_id: AtomicU64::new(1),
                boot: format!("{boot_ms:x}"),
                totals: Arc::default(),
                sampler: Sampler::default(),
                connections: Arc::default(),
            }),
        };
        broker.restore(recovered);
        Ok(broker)
    }

    fn restore(&self, rec: Recovered) {
        let Recovered { topology, messages } = rec;
        let inner = &self.inner;
        for d in topology.exchanges {
            let name: Arc<str> = Arc::from(d.name.as_str());
            inner.exchanges.insert(
                name.clone(),
                Arc::new(Exchange {
                    name,
                    kind: d.kind,
                    durable: true,
                    auto_delete: d.auto_delete,
                    alternate: d.alternate,
                    partitions: d.partitions,
                    bindings: RwLock::new(Bindings::for_exchange(d.kind, d.hash_header)),
                }),
            );
        }
        // Every stored copy stays on disk: each queue starts with all of
        // them in its tail and reads back what fits its RAM budget.
        inner.disk.bodies.restore(messages.shared_refs);
        inner
            .next_body_id
            .store(messages.max_body_id + 1, Ordering::Relaxed);
        let mut stored: HashMap<u64, crate::store::StoredQueue> = messages
            .stored
            .into_iter()
            .map(|s| (s.queue_id, s))
            .collect();
        let mut dedup: HashMap<u64, Vec<crate::store::DedupEntry>> = HashMap::new();
        for d in messages.dedup {
            dedup.entry(d.queue_id).or_default().push(d);
        }
        let mut offsets: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
        for (queue_id, group, at) in messages.offsets {
            offsets.entry(queue_id).or_default().push((group, at));
        }
        let mut max_queue = 0;
        for d in topology.queues {
            max_queue = max_queue.max(d.id);
            let held = stored.remove(&d.id);
            let next_seq = held.as_ref().map_or(1, |h| h.last_seq + 1);
            let name: Arc<str> = Arc::from(d.name.as_str());
            let partition = d
                .args
                .mode
                .is_stream()
                .then(|| self.partition_index(&name))
                .flatten();
            let q = self.new_queue(QueueInit {
                name: name.clone(),
                id: d.id,
                durable: true,
                auto_delete: d.auto_delete,
                owner: None,
                args: d.args,
                next_seq,
                partition,
            });
            if let Some(held) = &held {
                q.restore(held, !messages.clean_shutdown);
            }
            q.restore_dedup(dedup.remove(&d.id).unwrap_or_default());
            for (group, at) in offsets.remove(&d.id).unwrap_or_default() {
                q.restore_offset(&group, at);
            }
            inner.queues.insert(name, q);
        }
        inner.next_queue_id.store(max_queue + 1, Ordering::Relaxed);
        for b in topology.bindings {
            let (Some(ex), Some(q)) = (
                inner.exchanges.get(b.exchange.as_str()),
                inner.queues.get(b.queue.as_str()),
            ) else {
                continue;
            };
            ex.bindings
                .write()
                .add(Binding::new(q.name.clone(), b.key, b.headers, b.matching));
        }
        tracing::info!(
            exchanges = inner.exchanges.len(),
            queues = inner.queues.len(),
            clean = messages.clean_shutdown,
            "recovered"
        );
    }

    /// The partition index of a stream named `<stream>-<i>` whose
    /// exchange `<stream>` is a partitioned stream's with more than `i`
    /// partitions.
    fn partition_index(&self, name: &str) -> Option<u32> {
        let (base, index) = name.rsplit_once('-')?;
        let index: u32 = index.parse().ok()?;
        let ex = self.inner.exchanges.get(base)?;
        (index < ex.partitions && partition_name(base, index) == name).then_some(index)
    }

    /// What `SUB` and `SEEK` read from a name: the queue `name`, or every
    /// partition of the partitioned stream `name`, in index order.
    pub fn queues_named(&self, name: &str, conn: u64) -> Result<Vec<Arc<Queue>>, BrokerError> {
        match self.stream_partitions(name)? {
            Some(parts) => Ok(parts),
            None => Ok(vec![self.queue(name, conn)?]),
        }
    }

    /// The partitions of the partitioned stream `name`, in index order;
    /// `None` when `name` is not one (a queue of that name comes first).
    fn stream_partitions(&self, name: &str) -> Result<Option<Vec<Arc<Queue>>>, BrokerError> {
        if self.inner.queues.contains_key(name) {
            return Ok(None);
        }
        let Some(n) = self
            .inner
            .exchanges
            .get(name)
            .map(|e| e.partitions)
            .filter(|n| *n > 0)
        else {
            return Ok(None);
        };
        (0..n)
            .map(|i| {
                let part = partition_name(name, i);
                self.inner
                    .queues
                    .get(part.as_str())
                    .map(|q| q.clone())
                    .ok_or_else(|| not_found("stream partition", &part))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

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
    pub fn totals(&self) -> &Totals {
        &self.inner.totals
    }

    /// The rates sampler (its task is started by the server).
    pub fn sampler(&self) -> &Sampler {
        &self.inner.sampler
    }

    /// The registry of live connections.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.inner.connections
    }

    /// Every queue, by name.
    pub fn queue_list(&self) -> Vec<Arc<Queue>> {
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
    pub fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.inner.queues.get(name).map(|q| q.clone())
    }

    /// Every exchange, by name.
    pub fn exchange_list(&self) -> Vec<Arc<Exchange>> {
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
    pub fn store_size(&self) -> Option<u64> {
        self.inner.disk.store.size_on_disk()
    }

    /// The timer task, which [`crate::server::run`] spawns (and aborts at
    /// shutdown): each queue whose deadline has come runs what is due, and
    /// the broker routes what expired and deletes a queue unused past its
    /// `expires`. It holds no queue, nor the broker, alive.
    pub fn run_timers(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
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
        if let Err(e) = self.dead_letter(q, timed.dead) {
            tracing::warn!(queue = %q.name, error = %e, "dead-lettering failed");
        }
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
    pub fn users(&self) -> &Arc<Registry> {
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
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The group commit (replies wait on it).
    pub fn committer(&self) -> &Arc<Committer> {
        self.inner.disk.committer()
    }

    /// Looks a queue up for a connection: `NOT_FOUND`, or `LOCKED` when it
    /// is another connection's exclusive queue.
    pub fn queue(&self, name: &str, conn: u64) -> Result<Arc<Queue>, BrokerError> {
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
    pub fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `DECLARE EXCHANGE`.
    pub fn declare_exchange(&self, d: &DeclareExchange) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        if let Some(ex) = self.inner.exchanges.get(d.name.as_str()) {
            if ex.kind != d.kind {
                return Err(BrokerError::Precondition(format!(
                    "exchange {} exists with type {}",
                    ex.name,
                    ex.kind.keyword()
                )));
            }
            let hash_header = ex.bindings.read().hash_header().map(str::to_string);
            if ex.durable != d.durable
                || ex.auto_delete != d.auto_delete
                || ex.alternate != d.alternate
                || hash_header != d.hash_header
            {
                return Err(BrokerError::Precondition(format!(
                    "exchange {} exists with other options (durable={} auto-delete={} alternate={} hash-header={})",
                    ex.name,
                    ex.durable,
                    ex.auto_delete,
                    ex.alternate.as_deref().map(quote_for_message).unwrap_or_else(|| "none".into()),
                    hash_header.as_deref().map(quote_for_message).unwrap_or_else(|| "none".into())
                )));
            }
            if ex.partitions > 0 {
                return Err(BrokerError::Precondition(format!(
                    "exchange {} belongs to a partitioned stream",
                    ex.name
                )));
            }
            return Ok(None);
        }
        let max = self.inner.config.max_exchanges;
        if self.inner.exchanges.len() >= max {
            return Err(BrokerError::limit(
                "too many exchanges",
                "--max-exchanges",
                max,
            ));
        }
        let name: Arc<str> = Arc::from(d.name.as_str());
        let ex = Arc::new(Exchange {
            name: name.clone(),
            kind: d.kind,
            durable: d.durable,
            auto_delete: d.auto_delete,
            alternate: d.alternate.clone(),
            partitions: 0,
            bindings: RwLock::new(Bindings::for_exchange(d.kind, d.hash_header.clone())),
        });
        let gen = if d.durable {
            Some(self.inner.disk.write(|s| s.put_exchange(&ex.def()))?)
        } else {
            None
        };
        self.inner.exchanges.insert(name, ex);
        Ok(gen)
    }

    /// `DELETE EXCHANGE`.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let ex = self
            .inner
            .exchanges
            .get(name)
            .map(|e| e.clone())
            .ok_or_else(|| not_found("exchange", name))?;
        if ex.partitions > 0 {
            return Err(BrokerError::Precondition(format!(
                "exchange {} belongs to the partitioned stream {0}: DELETE QUEUE {0} deletes it",
                ex.name
            )));
        }
        if if_unused && !ex.bindings.read().is_empty() {
            return Err(BrokerError::Precondition(format!(
                "exchange {} has bindings",
                ex.name
            )));
        }
        self.remove_exchange(&ex)
    }

    fn remove_exchange(&self, ex: &Exchange) -> Result<Option<u64>, BrokerError> {
        self.inner.exchanges.remove(&ex.name);
        if ex.durable {
            Ok(Some(
                self.inner.disk.write(|s| s.delete_exchange(&ex.name))?,
            ))
        } else {
            Ok(None)
        }
    }

    /// `DECLARE QUEUE`: returns the name, ready messages, consumers and the
    /// generation to wait for. `may` vets the name (the generated one for
    /// `""`) before anything changes: the permission check.
    pub fn declare_queue(
        &self,
        d: &DeclareQueue,
        conn: u64,
        may: &dyn Fn(&str) -> Result<(), BrokerError>,
    ) -> Result<(Arc<Queue>, Option<u64>), BrokerError> {
        let _topology = self.inner.topology.lock();
        let name = if d.name.is_empty() {
            format!("gen-{}-{}", self.inner.boot, self.next_id())
        } else {
            d.name.clone()
        };
        may(&name)?;
        let stream;
        let d = if d.args.mode.is_stream() {
            self.check_stream(d, &name)?;
            stream = DeclareQueue {
                durable: true,
                ..d.clone()
            };
            &stream
        } else {
            d
        };
        self.declare_one(d, name, conn, None)
    }

    /// Refuses a stream the broker cannot keep, or whose name a
    /// partitioned stream has.
    fn check_stream(&self, d: &DeclareQueue, name: &str) -> Result<(), BrokerError> {
        if !self.inner.disk.store.keeps_messages() {
            return Err(BrokerError::Precondition(
                "streams need a data directory: this broker runs --in-memory".into(),
            ));
        }
        let clash = self
            .inner
            .exchanges
            .get(name)
            .is_some_and(|e| e.partitions > 0);
        if d.partitions.is_none() && clash {
            return Err(BrokerError::Precondition(format!(
                "{name} is a partitioned stream (declare it with its partitions=)"
            )));
        }
        Ok(())
    }

    /// `DECLARE QUEUE <name> type=stream partitions=N`: the `hash` exchange
    /// `<name>` and the N streams `<name>-<i>` bound to it with weight 1,
    /// all durable. Returns the partitions and the generation to wait for.
    pub fn declare_partitioned(
        &self,
        d: &DeclareQueue,
        n: u32,
        conn: u64,
        may: &dyn Fn(&str) -> Result<(), BrokerError>,
    ) -> Result<(Vec<Arc<Queue>>, Option<u64>), BrokerError> {
        let _topology = self.inner.topology.lock();
        let name = d.name.as_str();
        may(name)?;
        self.check_stream(d, name)?;
        let part = DeclareQueue {
            durable: true,
            partitions: None,
            ..d.clone()
        };
        if let Some(ex) = self.inner.exchanges.get(name).map(|e| e.clone()) {
            if ex.partitions != n {
                return Err(BrokerError::Precondition(match ex.partitions {
                    0 => format!("exchange {name} exists: a partitioned stream needs the name for its exchange"),
                    p => format!("stream {name} exists with partitions={p}"),
                }));
            }
            // Declared before: this checks it, and completes what a failure
            // half-way (a limit, the disk) left undone.
            return self.declare_partitions(&ex, &part, n, conn, None);
        }
        if self.inner.queues.contains_key(name) {
            return Err(BrokerError::Precondition(format!(
                "queue {name} exists: a partitioned stream needs the name for its exchange"
            )));
        }
        if let Some(i) = (0..n).find(|i| {
            self.inner
                .queues
                .contains_key(partition_name(name, *i).as_str())
        }) {
            return Err(BrokerError::Precondition(format!(
                "queue {} exists: it would be a partition of {name}",
                partition_name(name, i)
            )));
        }
        let ex = Arc::new(Exchange {
            name: Arc::from(name),
            kind: ExchangeKind::Hash,
            durable: true,
            auto_delete: false,
            alternate: None,
            partitions: n,
            bindings: RwLock::new(Bindings::new_hash(None)),
        });
        let gen = Some(self.inner.disk.write(|s| s.put_exchange(&ex.def()))?);
        self.inner.exchanges.insert(ex.name.clone(), ex.clone());
        self.declare_partitions(&ex, &part, n, conn, gen)
    }

    /// Declares (or checks) the N partition streams of `ex` and binds each
    /// with weight 1 where it is not bound yet.
    fn declare_partitions(
        &self,
        ex: &Arc<Exchange>,
        part: &DeclareQueue,
        n: u32,
        conn: u64,
        mut gen: Option<u64>,
    ) -> Result<(Vec<Arc<Queue>>, Option<u64>), BrokerError> {
        let mut parts = Vec::new();
        for i in 0..n {
            let (q, g) = self.declare_one(part, partition_name(&ex.name, i), conn, Some(i))?;
            gen = gen.max(g);
            let bnd = Binding::new(
                q.name.clone(),
                Bytes::from_static(b"1"),
                Vec::new(),
                HeaderMatch::All,
            );
            let def = Self::binding_def(ex, &bnd);
            if ex.bindings.write().add(bnd) {
                gen = gen.max(Some(self.inner.disk.write(|s| s.put_binding(&def))?));
            }
            parts.push(q);
        }
        Ok((parts, gen))
    }

    /// Declares (or checks) one queue named `name`, under the topology lock.
    fn declare_one(
        &self,
        d: &DeclareQueue,
        name: String,
        conn: u64,
        partition: Option<u32>,
    ) -> Result<(Arc<Queue>, Option<u64>), BrokerError> {
        if let Some(q) = self.inner.queues.get(name.as_str()) {
            if let Some(owner) = q.owner {
                if owner != conn {
                    return Err(BrokerError::Locked(format!(
                        "queue {} is exclusive to another connection",
                        q.name
                    )));
                }
            }
            if q.durable != d.durable
                || q.owner.is_some() != d.exclusive
                || q.auto_delete != d.auto_delete
            {
                return Err(BrokerError::Precondition(format!(
                    "queue {} exists with other options (durable={} exclusive={} auto-delete={})",
                    q.name,
                    q.durable,
                    q.owner.is_some(),
                    q.auto_delete
                )));
            }
            if q.args != d.args {
                return Err(BrokerError::Precondition(format!(
                    "queue {} exists with other options ({})",
                    q.name,
                    describe_args(&q.args)
                )));
            }
            q.touch_used();
            return Ok((q.clone(), None));
        }
        let max = self.inner.config.max_queues;
        if self.inner.queues.len() >= max {
            return Err(BrokerError::limit("too many queues", "--max-queues", max));
        }
        let id = self.inner.next_queue_id.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(name);
        let owner = d.exclusive.then_some(conn);
        let q = self.new_queue(QueueInit {
            name: name.clone(),
            id,
            durable: d.durable,
            auto_delete: d.auto_delete,
            owner,
            args: d.args.clone(),
            next_seq: 1,
            partition,
        });
        let gen = if stores(&q) {
            let def = QueueDef {
                name: name.to_string(),
                id,
                auto_delete: d.auto_delete,
                args: d.args.clone(),
            };
            Some(self.inner.disk.write(|s| s.put_queue(&def))?)
        } else {
            None
        };
        self.inner.queues.insert(name, q.clone());
        q.touch_used();
        Ok((q, gen))
    }

    /// `DELETE QUEUE`: returns the ready messages it held.
    pub fn delete_queue(
        &self,
        d: &DeleteQueue,
        conn: u64,
    ) -> Result<(u64, Option<u64>), BrokerError> {
        let _topology = self.inner.topology.lock();
        // A partitioned stream goes whole: its partitions, then its exchange.
        let (queues, exchange) = match self.stream_partitions(&d.name)? {
            Some(parts) => (
                parts,
                self.inner.exchanges.get(d.name.as_str()).map(|e| e.clone()),
            ),
            None => (vec![self.queue(&d.name, conn)?], None),
        };
        let mut messages = 0;
        for q in &queues {
            let stats = q.stats();
            if d.if_unused && stats.consumers > 0 {
                return Err(BrokerError::Precondition(format!(
                    "queue {} has {}",
                    q.name,
                    plural(stats.consumers, "consumer")
                )));
            }
            if d.if_empty && stats.messages > 0 {
                return Err(BrokerError::Precondition(format!(
                    "queue {} has {}",
                    q.name,
                    plural(stats.messages, "message")
                )));
            }
            messages += stats.messages;
        }
        let mut gen = None;
        for q in &queues {
            gen = self.remove_queue(q)?.max(gen);
        }
        if let Some(ex) = exchange {
            gen = self.remove_exchange(&ex)?.max(gen);
        }
        Ok((messages, gen))
    }

    /// Removes a queue whatever its state (exclusive owner gone, auto-delete).
    pub fn delete_queue_now(&self, q: &Arc<Queue>) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        self.remove_queue(q)
    }

    fn remove_queue(&self, q: &Arc<Queue>) -> Result<Option<u64>, BrokerError> {
        match self.inner.queues.get(&q.name) {
            Some(cur) if Arc::ptr_eq(&cur, q) => {}
            _ => return Ok(None),
        }
        self.inner.queues.remove(&q.name);
        let mut emptied = Vec::new();
        for ex in self.inner.exchanges.iter() {
            let mut b = ex.bindings.write();
            if b.remove_queue(&q.name) > 0 && b.is_empty() && ex.auto_delete {
                emptied.push(ex.clone());
            }
        }
        let (ready, tail) = q.mark_deleted();
        // Before the store forgets the queue: shared bodies of paged-out
        // copies lose a reference each.
        let mut gen = q.drop_tail(tail)?;
        if stores(q) {
            let def = QueueDef {
                name: q.name.to_string(),
                id: q.id,
                auto_delete: q.auto_delete,
                args: q.args.clone(),
            };
            gen = Some(self.inner.disk.write(|s| s.delete_queue(&def))?).max(gen);
        }
        gen = q.release(ready)?.or(gen);
        for ex in emptied {
            gen = self.remove_exchange(&ex)?.or(gen);
        }
        tracing::debug!(queue = %q.name, "queue deleted");
        Ok(gen)
    }

    fn binding_ends(
        &self,
        b: &Bind,
        conn: u64,
    ) -> Result<(Arc<Exchange>, Arc<Queue>), BrokerError> {
        if b.exchange.is_empty() {
            return Err(BrokerError::Precondition(
                "the default exchange cannot be bound or unbound: every queue is bound to it by name".into(),
            ));
        }
        let ex = self
            .inner
            .exchanges
            .get(b.exchange.as_str())
            .map(|e| e.clone())
            .ok_or_else(|| not_found("exchange", &b.exchange))?;
        let q = self.queue(&b.queue, conn)?;
        Ok((ex, q))
    }

    fn binding_def(ex: &Exchange, bnd: &Binding) -> BindingDef {
        BindingDef {
            exchange: ex.name.to_string(),
            queue: bnd.queue.to_string(),
            key: bnd.key.clone(),
            headers: bnd.headers.clone(),
            matching: bnd.matching,
        }
    }

    /// `BIND`.
    pub fn bind(&self, b: &Bind, conn: u64) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let (ex, q) = self.binding_ends(b, conn)?;
        if ex.kind == ExchangeKind::Hash && exchange::hash::weight(&b.key).is_none() {
            return Err(BrokerError::Precondition(format!(
                "the binding key of a hash exchange is the queue's weight: a number from 1 to {}",
                exchange::hash::MAX_WEIGHT
            )));
        }
        let bnd = Binding::new(
            q.name.clone(),
            b.key.clone(),
            b.headers.clone(),
            b.matching.unwrap_or_default(),
        );
        let def = Self::binding_def(&ex, &bnd);
        let added = ex.bindings.write().add(bnd);
        if added && ex.durable && stores(&q) {
            return Ok(Some(self.inner.disk.write(|s| s.put_binding(&def))?));
        }
        Ok(None)
    }

    /// `UNBIND` (removing a binding that does not exist is not an error).
    pub fn unbind(&self, b: &Bind, conn: u64) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let (ex, q) = self.binding_ends(b, conn)?;
        let bnd = Binding::new(
            q.name.clone(),
            b.key.clone(),
            b.headers.clone(),
            b.matching.unwrap_or_default(),
        );
        let def = Self::binding_def(&ex, &bnd);
        let (removed, now_empty) = {
            let mut t = ex.bindings.write();
            (t.remove(&bnd), t.is_empty())
        };
        let mut gen = None;
        if removed && ex.durable && stores(&q) {
            gen = Some(self.inner.disk.write(|s| s.delete_binding(&def))?);
        }
        if removed && now_empty && ex.auto_delete {
            gen = self.remove_exchange(&ex)?.or(gen);
        }
        Ok(gen)
    }

    /// Shuts the store down cleanly: delivery counts written, everything
    /// synced, the clean flag set. Call after every connection has closed.
    ///
    /// A store that has failed is not touched (its writes would fail, and
    /// sled's flush may never return after an I/O error): the next start
    /// recovers it as after a crash. Returns the store's first error then.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let committer = &self.inner.disk.committer;
        if let Some(e) = committer.subscribe().borrow().error.clone() {
            // Its thread may be stuck in a sync that never returns.
            committer.shutdown(std::time::Duration::ZERO);
            return Err(StoreError::Io(e.to_string()));
        }
        // Copies from before an unclean stop, still paged out, have not
        // been flagged yet: then the next start must treat this stop as
        // unclean too (and will add its crash delivery again).
        let clean = !self.inner.queues.iter().any(|q| q.crash_flags_pending());
        for q in self.inner.queues.iter() {
            if stores(&q) {
                if let Err(e) = q.persist_delivery_counts(clean) {
                    tracing::warn!(queue = %q.name, error = %e, "could not save delivery counts");
                    if committer.has_failed() {
                        committer.shutdown(std::time::Duration::ZERO);
                        return Err(StoreError::Io(e.to_string()));
                    }
                }
            }
        }
        let store = &self.inner.disk.store;
        store.sync()?;
        store.set_clean(clean)?;
        store.sync()?;
        committer.shutdown(SHUTDOWN_PATIENCE);
        Ok(())
    }
}

/// How long a stop waits for the commit thread to finish its last sync.
const SHUTDOWN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// `1 consumer`, `2 consumers`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The name of partition `i` of the partitioned stream `stream`.
pub fn partition_name(stream: &str, i: u32) -> String {
    format!("{stream}-{i}")
}

/// Whether a queue keeps its persistent messages in the store.
fn stores(q: &Queue) -> bool {
    q.durable && q.owner.is_none()
}
