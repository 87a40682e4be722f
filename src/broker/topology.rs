//! The topology operations: `DECLARE`/`DELETE` of exchanges and queues,
//! `BIND`/`UNBIND`, and partitioned streams (a `hash` exchange and N
//! streams declared, found and deleted together). Each runs under the
//! broker's topology lock, so that a delete and a bind cannot interleave,
//! and writes what is durable through the [`Disk`](super::disk::Disk).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::exchange::{self, Binding, Bindings};
use super::queue::{Queue, QueueInit};
use super::{not_found, stores, Broker, Exchange};
use crate::error::BrokerError;
use crate::protocol::command::{
    Bind, DeclareExchange, DeclareQueue, DeleteQueue, ExchangeKind, HeaderMatch,
};
use crate::protocol::encode::describe_args;
use crate::protocol::reply::quote_for_message;
use crate::schema::{exchange_key, queue_key};
use crate::store::{BindingDef, QueueDef};

impl Broker {
    /// The partition index of a stream named `<stream>-<i>` whose
    /// exchange `<stream>` is a partitioned stream's with more than `i`
    /// partitions.
    pub(super) fn partition_index(&self, name: &str) -> Option<u32> {
        let (base, index) = name.rsplit_once('-')?;
        let index: u32 = index.parse().ok()?;
        let ex = self.inner.exchanges.get(base)?;
        (index < ex.partitions && partition_name(base, index) == name).then_some(index)
    }

    /// What `SUB` and `SEEK` read from a name: the queue `name`, or every
    /// partition of the partitioned stream `name`, in index order.
    pub(crate) fn queues_named(
        &self,
        name: &str,
        conn: u64,
    ) -> Result<Vec<Arc<Queue>>, BrokerError> {
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

    /// `DECLARE EXCHANGE`.
    pub(crate) fn declare_exchange(&self, d: &DeclareExchange) -> Result<Option<u64>, BrokerError> {
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
            if ex.schema.as_deref() != d.schema.as_deref() {
                return Err(BrokerError::Precondition(format!(
                    "exchange {} exists with schema={}",
                    ex.name,
                    ex.schema
                        .as_deref()
                        .map(quote_for_message)
                        .unwrap_or_else(|| "none".into())
                )));
            }
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
        self.check_schema_exists(d.schema.as_deref())?;
        let name: Arc<str> = Arc::from(d.name.as_str());
        let ex = Arc::new(Exchange {
            name: name.clone(),
            kind: d.kind,
            durable: d.durable,
            auto_delete: d.auto_delete,
            alternate: d.alternate.clone(),
            partitions: 0,
            bindings: RwLock::new(Bindings::for_exchange(d.kind, d.hash_header.clone())),
            schema: d.schema.as_deref().map(Arc::from),
            schema_rejections: Default::default(),
        });
        let gen = if d.durable {
            Some(self.inner.disk.write(|s| {
                s.put_exchange(&ex.def())?;
                match &d.schema {
                    Some(subject) => s
                        .topology
                        .put_schema_record(&exchange_key(&d.name), subject.as_bytes()),
                    None => Ok(()),
                }
            })?)
        } else {
            None
        };
        self.inner.exchanges.insert(name, ex);
        Ok(gen)
    }

    /// `DELETE EXCHANGE`.
    pub(crate) fn delete_exchange(
        &self,
        name: &str,
        if_unused: bool,
    ) -> Result<Option<u64>, BrokerError> {
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
            Ok(Some(self.inner.disk.write(|s| {
                s.delete_exchange(&ex.name)?;
                match ex.schema {
                    Some(_) => s.topology.delete_schema_record(&exchange_key(&ex.name)),
                    None => Ok(()),
                }
            })?))
        } else {
            Ok(None)
        }
    }

    /// `DECLARE QUEUE`: returns the name, ready messages, consumers and the
    /// generation to wait for. `may` vets the name (the generated one for
    /// `""`) before anything changes: the permission check.
    pub(crate) fn declare_queue(
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
    pub(crate) fn declare_partitioned(
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
            replicas: None,
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
            schema: None,
            schema_rejections: Default::default(),
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
        self.check_schema_exists(d.args.schema.as_deref())?;
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
            Some(self.inner.disk.write(|s| {
                s.put_queue(&def)?;
                match &d.args.schema {
                    Some(subject) => s
                        .topology
                        .put_schema_record(&queue_key(&def.name), subject.as_bytes()),
                    None => Ok(()),
                }
            })?)
        } else {
            None
        };
        self.inner.queues.insert(name, q.clone());
        q.touch_used();
        Ok((q, gen))
    }

    /// `DELETE QUEUE`: returns the ready messages it held.
    pub(crate) fn delete_queue(
        &self,
        d: &DeleteQueue,
        conn: u64,
    ) -> Result<(u64, Option<u64>), BrokerError> {
        let _topology = self.inner.topology.lock();
        let targets = self.delete_targets(d, conn)?;
        let mut gen = None;
        for q in &targets.queues {
            gen = self.remove_queue(q)?.max(gen);
        }
        if let Some(ex) = targets.exchange {
            gen = self.remove_exchange(&ex)?.max(gen);
        }
        Ok((targets.messages, gen))
    }

    /// Whether `DELETE QUEUE` would go ahead here now (its `if-unused` and
    /// `if-empty` hold): what a cluster node checks before it proposes
    /// the delete to every node.
    pub(crate) fn check_delete_queue(&self, d: &DeleteQueue, conn: u64) -> Result<(), BrokerError> {
        let _topology = self.inner.topology.lock();
        self.delete_targets(d, conn).map(|_| ())
    }

    /// What `DELETE QUEUE` removes, once its conditions hold.
    fn delete_targets(&self, d: &DeleteQueue, conn: u64) -> Result<DeleteTargets, BrokerError> {
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
        Ok(DeleteTargets {
            queues,
            exchange,
            messages,
        })
    }

    /// Removes a queue whatever its state (exclusive owner gone, auto-delete).
    pub(crate) fn delete_queue_now(&self, q: &Arc<Queue>) -> Result<Option<u64>, BrokerError> {
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
            gen = Some(self.inner.disk.write(|s| {
                s.delete_queue(&def)?;
                match def.args.schema {
                    Some(_) => s.topology.delete_schema_record(&queue_key(&def.name)),
                    None => Ok(()),
                }
            })?)
            .max(gen);
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

    /// The binding a `BIND`/`UNBIND` names, to queue `q`.
    fn binding_of(q: &Queue, b: &Bind) -> Binding {
        Binding::new(
            q.name.clone(),
            b.key.clone(),
            b.headers.clone(),
            b.matching.unwrap_or_default(),
        )
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
    pub(crate) fn bind(&self, b: &Bind, conn: u64) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let (ex, q) = self.binding_ends(b, conn)?;
        if ex.kind == ExchangeKind::Hash && exchange::hash::weight(&b.key).is_none() {
            return Err(BrokerError::Precondition(format!(
                "the binding key of a hash exchange is the queue's weight: a number from 1 to {}",
                exchange::hash::MAX_WEIGHT
            )));
        }
        let bnd = Self::binding_of(&q, b);
        let def = Self::binding_def(&ex, &bnd);
        let added = ex.bindings.write().add(bnd);
        if added && ex.durable && stores(&q) {
            return Ok(Some(self.inner.disk.write(|s| s.put_binding(&def))?));
        }
        Ok(None)
    }

    /// `UNBIND` (removing a binding that does not exist is not an error).
    pub(crate) fn unbind(&self, b: &Bind, conn: u64) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let (ex, q) = self.binding_ends(b, conn)?;
        let bnd = Self::binding_of(&q, b);
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
}

/// `1 consumer`, `2 consumers`.
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The name of partition `i` of the partitioned stream `stream`.
pub(crate) fn partition_name(stream: &str, i: u32) -> String {
    format!("{stream}-{i}")
}

/// What a `DELETE QUEUE` removes.
struct DeleteTargets {
    /// The queue, or a partitioned stream's partitions.
    queues: Vec<Arc<Queue>>,
    /// A partitioned stream's exchange.
    exchange: Option<Arc<Exchange>>,
    /// The ready messages they hold.
    messages: u64,
}
