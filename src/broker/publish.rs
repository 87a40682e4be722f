//! Moving messages into queues: `PUB` (route, admit, de-duplicate, store,
//! enqueue), and the copies ([`Copies`]) that dead-lettering and
//! `REDRIVE` (`dead_letter.rs`) re-publish.
//!
//! Each builds one [`MessageBatch`]: the new copies and the removed ones
//! change together in the store, so a crash never leaves a message in
//! both queues or in neither.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::alarm::Alarm;
use super::message::{Entry, Message, Now};
use super::queue::{Admission, Planned, Queue};
use super::schema::Checker;
use super::{not_found, stores, Broker, ReplicaMessage, MAX_ALTERNATE_HOPS};
use crate::error::BrokerError;
use crate::protocol::command::{Header, Publish};
use crate::protocol::reply::{quote_for_message, Blocker};
use crate::store::{DedupEntry, MessageBatch, MessageMeta};

/// What a publish did.
#[derive(Debug)]
pub(crate) struct Published {
    /// The message id (given or generated).
    pub(crate) id: String,
    /// How many queues hold it (those that took it now and those that had
    /// it already, within their de-duplication window).
    pub(crate) routed: usize,
    /// How many queues refused it (`overflow=reject-publish`, full).
    pub(crate) rejected: usize,
    /// Some queue already had this id within its de-duplication window.
    pub(crate) duplicate: bool,
    /// The store generation the confirm must wait for.
    pub(crate) durable_gen: Option<u64>,
    /// On a cluster node: the copies for replicated queues, which the
    /// caller appends to each queue's log (the confirm waits for those).
    pub(crate) replicate: Vec<(Arc<str>, ReplicaMessage)>,
}

/// The result of trying to publish.
#[derive(Debug)]
pub(crate) enum PublishAttempt {
    /// Done.
    Done(Published),
    /// Held: nothing was stored; retry when the hold ends.
    Blocked(Hold),
}

/// Why a publish is held.
#[derive(Debug, Clone)]
pub(crate) enum Hold {
    /// A target queue is full with `overflow=block`; it signals room.
    Queue(Arc<Queue>),
    /// A resource alarm: the memory alarm holds every publish; the disk
    /// alarm (the data directory's file system under `--disk-free-limit`)
    /// those that would write to the store.
    Alarm(Arc<Alarm>),
}

impl Hold {
    /// What holds it, as `NOTICE blocked` names it.
    pub(crate) fn blocker(&self) -> Blocker {
        match self {
            Hold::Queue(q) => Blocker::Queue(q.name.to_string()),
            Hold::Alarm(a) => Blocker::Alarm(a.resource()),
        }
    }
}

/// Where a publish goes: the exchange's shared name, what checks its body
/// against a schema (if anything does), and the queues.
type Routed = (Arc<str>, Option<Checker>, Vec<Arc<Queue>>);

/// A publish routed and checked ([`Broker::route_checked`]): the
/// exchange's shared name, the copy a schema checked (if one did), and the
/// queues.
type Checked = (Arc<str>, Option<Publish>, Vec<Arc<Queue>>);

/// New copies of one message, ready to store and enqueue.
pub(super) struct Copies {
    msg: Arc<Message>,
    targets: Vec<(Arc<Queue>, Entry)>,
}

impl Copies {
    /// Builds copies of `msg` for `targets`, with a fresh body id when any
    /// of them is stored; `entry` sets each copy's per-queue fields.
    fn new(
        broker: &Broker,
        mut msg: Message,
        targets: Vec<Arc<Queue>>,
        entry: impl Fn(&Queue) -> (u8, Option<u64>, Option<u64>),
    ) -> Copies {
        let stored: Vec<bool> = targets
            .iter()
            .map(|q| q.keeps(msg.persistent) || q.spilling())
            .collect();
        let n = stored.iter().filter(|s| **s).count();
        if n > 0 {
            msg.body_id = broker.inner.next_body_id.fetch_add(1, Ordering::Relaxed);
        }
        msg.stored_refs = AtomicU32::new(u32::try_from(n).unwrap_or(u32::MAX));
        let msg = Arc::new(msg);
        let targets = targets
            .into_iter()
            .zip(stored)
            .map(|(q, stored)| {
                let (priority, expires_at, not_before) = entry(&q);
                let e = Entry {
                    seq: q.next_seq(),
                    msg: msg.clone(),
                    deliveries: 0,
                    redelivered: false,
                    stored,
                    priority,
                    expires_at,
                    not_before,
                    uncertain: false,
                };
                (q, e)
            })
            .collect();
        Copies { msg, targets }
    }

    /// `e`'s message re-published to `exchange` with `key` and `headers`
    /// (a dead letter, a redriven one): same id, body and persistence; it
    /// keeps its priority but not its own TTL (it would expire again at once).
    pub(super) fn republish(
        broker: &Broker,
        e: &Entry,
        exchange: &str,
        key: Bytes,
        headers: Vec<Header>,
        targets: Vec<Arc<Queue>>,
        now: &Now,
    ) -> Copies {
        let msg = Message {
            id: e.msg.id.clone(),
            exchange: Arc::from(exchange),
            routing_key: key,
            headers,
            body: e.msg.body.clone(),
            body_id: 0,
            stored_refs: AtomicU32::new(0),
            persistent: e.msg.persistent,
            registry: OnceLock::new(),
            published_at: now.get(),
            group: e.msg.group.clone(),
        };
        let priority = e.priority;
        let mut copies = Copies::new(broker, msg, targets, |q| {
            (
                q.priority_for(Some(priority)),
                q.expiry_for(now, None),
                None,
            )
        });
        if e.uncertain {
            // `e` came back after a crash, which may have undone an earlier
            // move of it that was not yet on disk, and whose copies a
            // consumer may already have seen: its new copies are flagged as
            // crash-recovered ones are (one possible delivery, not counted
            // against `delivery-limit`).
            for (_, c) in &mut copies.targets {
                c.redelivered = true;
                c.deliveries = 1;
                c.uncertain = true;
            }
        }
        copies
    }

    pub(super) fn metas(&self) -> Vec<(u64, u64, MessageMeta)> {
        self.targets
            .iter()
            .filter(|(_, e)| e.stored)
            .map(|(q, e)| (q.id, e.seq, e.meta(q.volatile(e))))
            .collect()
    }

    fn stored(&self) -> bool {
        self.targets.iter().any(|(_, e)| e.stored)
    }

    /// Whether a copy is stored to survive a restart (not only spilled):
    /// then the confirm waits for the fsync.
    fn durable(&self) -> bool {
        self.targets.iter().any(|(q, e)| e.stored && !q.volatile(e))
    }
}

/// A publish routed and admitted, nothing changed yet
/// ([`Broker::admit_publish`]).
#[derive(Debug)]
pub(crate) struct Admitted {
    exchange: Arc<str>,
    accepted: Vec<Arc<Queue>>,
    rejected: usize,
    replicated: Vec<Arc<str>>,
    /// The publish as its exchange's schema passed it (with `h.schema`
    /// and `h.schema-version`), to store instead of the one given.
    checked: Option<Publish>,
}

impl Admitted {
    /// Whether it reaches a replicated queue.
    pub(crate) fn replicated(&self) -> bool {
        !self.replicated.is_empty()
    }
}

/// A publish's new copies and de-duplication records, claimed but not
/// stored nor enqueued yet ([`Broker::prepare`]).
pub(super) struct Prepared {
    copies: Vec<Copies>,
    metas: Vec<Vec<(u64, u64, MessageMeta)>>,
    dedup_put: Vec<DedupEntry>,
    dedup_del: Vec<(u64, String)>,
    routed: usize,
    rejected: usize,
    duplicate: bool,
    replicate: Vec<(Arc<str>, ReplicaMessage)>,
}

impl Prepared {
    /// Adds its writes (bodies, copies, de-duplication records) to `batch`.
    pub(super) fn add_to<'a>(&'a self, batch: &mut MessageBatch<'a>) {
        add_puts(batch, &self.copies, &self.metas);
        batch.put_dedup.extend(self.dedup_put.iter());
        batch
            .del_dedup
            .extend(self.dedup_del.iter().map(|(q, id)| (*q, id.as_str())));
    }

    /// Whether its writes must be durable before it is confirmed: a copy
    /// kept across a restart, or a de-duplication record.
    pub(super) fn durable(&self) -> bool {
        self.copies.iter().any(Copies::durable)
            || !self.dedup_put.is_empty()
            || !self.dedup_del.is_empty()
    }

    /// How many queues hold it, and whether some had it already.
    pub(super) fn routed(&self) -> (usize, bool) {
        (self.routed, self.duplicate)
    }
}

/// Adds the writes of `copies` (bodies and metadata) to `batch`.
pub(super) fn add_puts<'a>(
    batch: &mut MessageBatch<'a>,
    copies: &'a [Copies],
    metas: &'a [Vec<(u64, u64, MessageMeta)>],
) {
    for (c, m) in copies.iter().zip(metas) {
        if c.stored() {
            batch.put_bodies.push((c.msg.body_id, &c.msg.body));
        }
        for (qid, seq, meta) in m {
            batch.put_metas.push((*qid, *seq, meta));
        }
    }
}

/// A stream offset taken for a copy that is never enqueued (its write or
/// an earlier enqueue failed) is given up, so the stream's later offsets
/// become readable (see `queue/stream/`).
impl Drop for Copies {
    fn drop(&mut self) {
        for (q, e) in self.targets.drain(..) {
            q.stream_abandon(e.seq);
        }
    }
}

/// About what a publish to `copies` queues writes to the store: the body
/// once, and a record per copy (see [`MessageBatch::estimated_bytes`]).
fn publish_bytes(p: &Publish, copies: usize) -> u64 {
    let headers: usize = p.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    let record = (p.key.len() + p.exchange.len() + headers + 256) as u64;
    p.body.len() as u64 + record * copies as u64
}

impl Broker {
    /// Enqueues every copy, routing what dies in each queue as it goes;
    /// returns the latest store generation it caused.
    pub(super) fn enqueue_all(&self, copies: Vec<Copies>) -> Result<Option<u64>, BrokerError> {
        let mut gen = None;
        for mut c in copies {
            let mut targets = std::mem::take(&mut c.targets).into_iter();
            while let Some((q, e)) = targets.next() {
                let enqueued = q
                    .enqueue(e)
                    .and_then(|(g, dead)| Ok(self.dead_letter(&q, dead)?.max(g)));
                match enqueued {
                    Ok(g) => gen = g.max(gen),
                    Err(err) => {
                        c.targets.extend(targets);
                        return Err(err);
                    }
                }
            }
        }
        Ok(gen)
    }

    /// `PUB`: routes, admits (length limits), de-duplicates, stores (one
    /// atomic batch for every durable copy), enqueues. The caller replies
    /// once `durable_gen` is durable.
    pub(crate) fn publish(&self, p: &Publish) -> Result<PublishAttempt, BrokerError> {
        let admitted = match self.admit_publish(p, &mut Planned::default())? {
            Ok(a) => a,
            Err(hold) => return Ok(PublishAttempt::Blocked(hold)),
        };
        let id = self.message_id(p);
        let prepared = self.prepare(p, admitted, id);
        let mut batch = MessageBatch {
            // A publish is not confirmed before its writes are durable, so
            // they need only be ordered (bodies before copies).
            ordered_only: true,
            ..MessageBatch::default()
        };
        prepared.add_to(&mut batch);
        let mut durable_gen = None;
        if !batch.is_empty() {
            let gen = self.inner.disk.apply(&batch)?;
            // Spilled transient copies need no fsync before the confirm.
            if prepared.durable() {
                durable_gen = Some(gen);
            }
        }
        drop(batch);
        self.enqueue_prepared(prepared, durable_gen)
            .map(PublishAttempt::Done)
    }

    /// The id of the message `p` publishes: its `id=`, or a new one.
    pub(crate) fn message_id(&self, p: &Publish) -> String {
        match &p.id {
            Some(id) => id.clone(),
            None => format!("{}-{}", self.inner.boot, self.next_id()),
        }
    }

    /// Routes `p` and admits it to its queues (length limits, after the
    /// additions already `planned` by the same operation, which it adds
    /// its own to) without changing anything: the queues that take it, or
    /// what holds it (a full `overflow=block` queue, a resource alarm).
    /// `ERR NO_ROUTE` (mandatory), `ERR QUEUE_FULL` when every queue
    /// refuses it.
    pub(super) fn admit_publish(
        &self,
        p: &Publish,
        planned: &mut Planned,
    ) -> Result<Result<Admitted, Hold>, BrokerError> {
        let memory = &self.alarms().memory;
        if memory.raised() {
            return Ok(Err(Hold::Alarm(memory.clone())));
        }
        let (exchange, checked, targets) = self.route_checked(p, "")?;
        let p = checked.as_ref().unwrap_or(p);
        let mut accepted = Vec::with_capacity(targets.len());
        let mut rejected = Vec::new();
        // Replicated queues take the message through their own logs.
        let (targets, replicated) = self.split_replicated(targets);
        for q in targets {
            match q.admit_after(planned, p.body.len()) {
                Admission::Accept => accepted.push(q),
                Admission::Reject => rejected.push(q),
                Admission::Block => return Ok(Err(Hold::Queue(q))),
            }
        }
        let disk = &self.alarms().disk;
        let writes = accepted
            .iter()
            .any(|q| (p.persistent != Some(false) && stores(q)) || q.spilling());
        if writes && !disk.admits(publish_bytes(p, accepted.len())) {
            return Ok(Err(Hold::Alarm(disk.clone())));
        }
        if accepted.is_empty() && replicated.is_empty() {
            if let Some(q) = rejected.first() {
                return Err(BrokerError::QueueFull(format!(
                    "queue {} is full (overflow=reject-publish)",
                    q.name
                )));
            }
        }
        for q in &accepted {
            planned.plan(q, p.body.len());
        }
        Ok(Ok(Admitted {
            exchange,
            accepted,
            rejected: rejected.len(),
            replicated,
            checked,
        }))
    }

    /// Claims `p`'s id (as `id`) in the de-duplication windows of the
    /// queues it was admitted to and builds its new copies, stored nowhere
    /// yet: [`Prepared::add_to`] adds their writes to a batch,
    /// [`Broker::enqueue_prepared`] hands them to their queues.
    pub(super) fn prepare(&self, p: &Publish, admitted: Admitted, id: String) -> Prepared {
        let Admitted {
            exchange,
            accepted,
            rejected,
            replicated,
            checked,
        } = admitted;
        let p = checked.as_ref().unwrap_or(p);
        let now = Now::default();
        let routed = accepted.len() + replicated.len();
        let replicate = match replicated.is_empty() {
            true => Vec::new(),
            false => {
                let m = ReplicaMessage::of(p, &id, &now);
                replicated.into_iter().map(|q| (q, m.clone())).collect()
            }
        };
        let mut duplicate = false;
        let mut dedup_put = Vec::new();
        let mut dedup_del: Vec<(u64, String)> = Vec::new();
        let mut fresh = Vec::with_capacity(accepted.len());
        for q in accepted {
            if p.id.is_some() && q.args.dedup_window_ms.is_some() {
                let (claimed, ended) = q.dedup_claim(&id, now.get());
                if stores(&q) {
                    dedup_del.extend(ended.into_iter().map(|old| (q.id, old)));
                    if claimed {
                        if let Some(until) = q.dedup_until(&id) {
                            dedup_put.push(DedupEntry {
                                queue_id: q.id,
                                id: id.clone(),
                                expires_at: until,
                            });
                        }
                    }
                }
                if !claimed {
                    duplicate = true;
                    continue;
                }
            }
            fresh.push(q);
        }
        let msg = Message {
            id,
            exchange,
            routing_key: p.key.clone(),
            headers: p.headers.clone(),
            body: p.body.clone(),
            body_id: 0,
            stored_refs: AtomicU32::new(0),
            persistent: p.persistent != Some(false),
            registry: OnceLock::new(),
            published_at: now.get(),
            group: p.group.clone(),
        };
        let not_before = p
            .delay_ms
            .filter(|d| *d > 0)
            .map(|d| now.get().saturating_add(d));
        let copies = vec![Copies::new(self, msg, fresh, |q| {
            (
                q.priority_for(p.priority),
                q.expiry_for(&now, p.ttl_ms),
                not_before,
            )
        })];
        let metas = copies.iter().map(Copies::metas).collect();
        Prepared {
            copies,
            metas,
            dedup_put,
            dedup_del,
            routed,
            rejected,
            duplicate,
            replicate,
        }
    }

    /// Enqueues a prepared publish whose writes are in the store (to be
    /// durable with generation `durable_gen`, if any): what it did.
    pub(super) fn enqueue_prepared(
        &self,
        p: Prepared,
        durable_gen: Option<u64>,
    ) -> Result<Published, BrokerError> {
        let id = p
            .copies
            .first()
            .map(|c| c.msg.id.clone())
            .unwrap_or_default();
        let durable_gen = self.enqueue_all(p.copies)?.max(durable_gen);
        self.inner.totals.published.fetch_add(1, Ordering::Relaxed);
        Ok(Published {
            id,
            routed: p.routed,
            rejected: p.rejected,
            duplicate: p.duplicate,
            durable_gen,
            replicate: p.replicate,
        })
    }

    /// The queues a message for `exchange` with `key` and `headers` goes
    /// to, following alternate exchanges when nothing matches.
    pub(super) fn route_to(
        &self,
        exchange: &str,
        key: &[u8],
        headers: &[Header],
    ) -> Result<Vec<Arc<Queue>>, BrokerError> {
        Ok(self.route_named(exchange, key, headers)?.2)
    }

    /// Routes `p` as [`Broker::route_named`] does, and checks its body
    /// against the schema of its exchange (or, on the default exchange,
    /// its queue): the exchange's shared name, the checked copy when a
    /// schema checked it (`ERR SCHEMA` when it refuses the body), and the
    /// queues. A `mandatory` publish no queue takes is `ERR NO_ROUTE`, its
    /// text ending with `done`.
    pub(super) fn route_checked(&self, p: &Publish, done: &str) -> Result<Checked, BrokerError> {
        let (exchange, checked_by, targets) = self.route_named(&p.exchange, &p.key, &p.headers)?;
        let checked = checked_by.map(|by| self.check_body(&by, p)).transpose()?;
        if targets.is_empty() && p.mandatory {
            return Err(BrokerError::NoRoute(format!(
                "exchange {} routed the message to no queue{done}",
                quote_for_message(&p.exchange)
            )));
        }
        Ok((exchange, checked, targets))
    }

    /// [`Broker::route_to`], also returning the exchange's shared name (so
    /// that a message does not allocate its own copy) and what checks its
    /// body against a schema: the exchange, or on the default exchange the
    /// queue (see `schema.rs`).
    pub(super) fn route_named(
        &self,
        exchange: &str,
        key: &[u8],
        headers: &[Header],
    ) -> Result<Routed, BrokerError> {
        if exchange.is_empty() {
            // The default exchange routes by queue name; a key that is not
            // UTF-8 cannot be one, so it reaches no queue.
            let q = std::str::from_utf8(key)
                .ok()
                .and_then(|name| self.inner.queues.get(name))
                .map(|q| q.clone());
            let checker = q.as_ref().and_then(Checker::of_queue);
            return Ok((
                self.inner.default_exchange.clone(),
                checker,
                q.into_iter().collect(),
            ));
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut ex = self
            .inner
            .exchanges
            .get(exchange)
            .map(|e| e.clone())
            .ok_or_else(|| not_found("exchange", exchange))?;
        let name = ex.name.clone();
        let checked_by = Checker::of_exchange(&ex);
        for _ in 0..MAX_ALTERNATE_HOPS {
            ex.bindings.read().route(key, headers, &mut names);
            if !names.is_empty() {
                break;
            }
            match ex
                .alternate
                .as_deref()
                .and_then(|a| self.inner.exchanges.get(a))
            {
                Some(next) => {
                    let next = next.clone();
                    ex = next;
                }
                None => break,
            }
        }
        let queues = names
            .iter()
            .filter_map(|n| self.inner.queues.get(n).map(|q| q.clone()))
            .collect();
        Ok((name, checked_by, queues))
    }
}
