//! A broker's start and stop: [`Broker::open`] opens the store (sled, or
//! nothing with `--in-memory`), reads back what it holds and starts the
//! group commit; `restore` rebuilds the schema registry, the exchanges
//! (with their `schema=`), queues (with theirs, each taking
//! over its stored copies, de-duplication records and group offsets) and
//! bindings; [`Broker::shutdown`] writes delivery counts, syncs and sets
//! the clean flag, or leaves a failed store alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use super::alarm::Alarms;
use super::disk::Disk;
use super::exchange::{Binding, Bindings};
use super::message::Bodies;
use super::queue::QueueInit;
use super::stats::Sampler;
use super::timer::Timers;
use super::{stores, Broker, Exchange, Inner};
use crate::auth::Registry;
use crate::config::Config;
use crate::store::{
    Committer, DedupEntry, LogStore, NullStore, Recovered, Storage, StoreError, StoredQueue,
};

impl Broker {
    /// Opens the store named by `config` (the message log with the topology
    /// on sled, or nothing with `in_memory`),
    /// recovers durable state and starts the group commit.
    pub fn open(config: Config) -> Result<Broker, StoreError> {
        let mut log_store = None;
        let store = if config.in_memory {
            Storage::one(Arc::new(NullStore))
        } else {
            let log = Arc::new(LogStore::open(&config.data_dir, config.cache_bytes)?);
            log_store = Some(log.clone());
            Storage::one(log)
        };
        let keep = store.clone();
        let opened = Broker::with_store(config, store);
        if let (Ok(broker), Some(log)) = (&opened, log_store) {
            let _ = broker.inner.log_store.set(log);
        }
        if let Err(StoreError::Io(_)) = &opened {
            // sled flushes when its last handle goes, and after an I/O
            // error (a full disk) that flush may never return: the
            // process is about to exit, so the handle is left alone.
            std::mem::forget(keep);
        }
        opened
    }

    /// Builds a broker on a given storage, recovering what it holds.
    pub(crate) fn with_store(config: Config, store: Storage) -> Result<Broker, StoreError> {
        let recovered = store.recover()?;
        let schemas = crate::schema::Stored::read(store.topology.schema_records()?)?;
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
        let shared_bodies = store.messages.shares_bodies();
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
                    bodies: Arc::new(Bodies::new(shared_bodies)),
                    ram_budget,
                    ram_used: Arc::default(),
                    space: alarms.disk.clone(),
                }),
                timers: Arc::new(Timers::default()),
                alarms,
                users,
                schemas: crate::schema::Registry::load(schemas.subjects),
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
                log_store: std::sync::OnceLock::new(),
                cluster: parking_lot::Mutex::new(None),
                consensus: std::sync::OnceLock::new(),
            }),
        };
        broker.restore(recovered, schemas.exchanges, schemas.queues);
        Ok(broker)
    }

    /// Rebuilds from `rec`; `schema_of` and `queue_schema_of` hold each
    /// exchange's and queue's `schema=` (kept apart from their records).
    fn restore(
        &self,
        rec: Recovered,
        mut schema_of: BTreeMap<String, String>,
        mut queue_schema_of: BTreeMap<String, String>,
    ) {
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
                    schema: schema_of.remove(&d.name).map(Arc::from),
                    schema_rejections: Default::default(),
                }),
            );
        }
        // Every stored copy stays on disk: each queue starts with all of
        // them in its tail and reads back what fits its RAM budget.
        inner.disk.bodies.restore(messages.shared_refs);
        inner
            .next_body_id
            .store(messages.max_body_id + 1, Ordering::Relaxed);
        let mut stored: HashMap<u64, StoredQueue> = messages
            .stored
            .into_iter()
            .map(|s| (s.queue_id, s))
            .collect();
        let mut dedup: HashMap<u64, Vec<DedupEntry>> = HashMap::new();
        for d in messages.dedup {
            dedup.entry(d.queue_id).or_default().push(d);
        }
        let mut offsets: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
        for (queue_id, group, at) in messages.offsets {
            offsets.entry(queue_id).or_default().push((group, at));
        }
        let mut max_queue = 0;
        for mut d in topology.queues {
            d.args.schema = queue_schema_of.remove(&d.name);
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
        if messages.first_start {
            tracing::info!("new data directory {}", inner.config.data_dir.display());
        } else {
            tracing::info!(
                exchanges = inner.exchanges.len(),
                queues = inner.queues.len(),
                clean = messages.clean_shutdown,
                "recovered"
            );
        }
    }

    /// Shuts the store down cleanly: delivery counts written, everything
    /// synced, the clean flag set. Call after every connection has closed.
    ///
    /// A store that has failed is not touched (its writes would fail, and
    /// sled's flush may never return after an I/O error): the next start
    /// recovers it as after a crash. Returns the store's first error then.
    pub(crate) fn shutdown(&self) -> Result<(), StoreError> {
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
