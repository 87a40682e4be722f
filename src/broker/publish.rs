//! Moving messages into queues: `PUB` (route, admit, de-duplicate, store,
//! enqueue), dead-lettering (a dying copy re-published through its queue's
//! `dead-letter` exchange, atomically with its removal) and `REDRIVE` (dead
//! letters sent back where they were first published).
//!
//! Queues never route, nor call up into the broker: their operations return
//! what died in them ([`Dead`]), and the broker routes it here
//! (`Broker::dead_letter`) — after an enqueue or a redrive, on the timer
//! (`mod.rs`), and after the operations a session calls on a queue
//! (`consume.rs`).
//!
//! Each of the three builds one [`MessageBatch`]: the new copies and the
//! removed ones change together in the store, so a crash never leaves a
//! message in both queues or in neither.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::alarm::Alarm;
use super::message::{Entry, Message, Now};
use super::queue::{Admission, Dead, DeathReason, Planned, Queue, StreamGroup};
use super::{not_found, stores, Broker, Exchange, ReplicaMessage, MAX_ALTERNATE_HOPS};
use crate::error::BrokerError;
use crate::protocol::command::{Header, Publish};
use crate::protocol::reply::{quote_for_message, Blocker};
use crate::store::{DedupEntry, MessageBatch, MessageMeta};

/// Dead letters that cause dead letters (a full dead-letter queue with
/// `overflow=drop-head`, ...) are followed this deep; past it they are
/// dropped, so a cycle of queues cannot loop forever.
const MAX_DEAD_LETTER_DEPTH: u32 = 4;

thread_local! {
    static DEAD_LETTER_DEPTH: Cell<u32> = const { Cell::new(0) };
}

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

/// Where a publish goes: the exchange's shared name, the exchange when it
/// checks bodies against a schema, and the queues.
type Routed = (Arc<str>, Option<Arc<Exchange>>, Vec<Arc<Queue>>);

/// New copies of one message, ready to store and enqueue.
struct Copies {
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
    fn republish(
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

    fn metas(&self) -> Vec<(u64, u64, MessageMeta)> {
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
fn add_puts<'a>(
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

/// Whether a header is one that dead-lettering writes.
fn is_death_header(name: &str) -> bool {
    matches!(
        name,
        "x-death-reason"
            | "x-death-queue"
            | "x-death-exchange"
            | "x-death-key"
            | "x-death-group"
            | "x-death-offset"
    )
}

impl Broker {
    /// Enqueues every copy, routing what dies in each queue as it goes;
    /// returns the latest store generation it caused.
    fn enqueue_all(&self, copies: Vec<Copies>) -> Result<Option<u64>, BrokerError> {
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
        let (exchange, checked_by, targets) = self.route_named(&p.exchange, &p.key, &p.headers)?;
        let checked = match checked_by {
            None => None,
            Some(ex) => Some(self.check_body(&ex, p)?),
        };
        let p = checked.as_ref().unwrap_or(p);
        if targets.is_empty() && p.mandatory {
            return Err(BrokerError::NoRoute(format!(
                "exchange {} routed the message to no queue",
                quote_for_message(&p.exchange)
            )));
        }
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

    /// [`Broker::route_to`], also returning the exchange's shared name (so
    /// that a message does not allocate its own copy) and the exchange
    /// itself when it checks bodies against a schema.
    fn route_named(
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
            return Ok((
                self.inner.default_exchange.clone(),
                None,
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
        let checked_by = ex.schema.is_some().then(|| ex.clone());
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

    /// [`Broker::dead_letter`] where there is no reply to fail: an error
    /// is logged ("dead-lettering failed") and the caller goes on.
    pub(super) fn dead_letter_or_log(&self, from: &Arc<Queue>, dead: Dead) {
        if let Err(e) = self.dead_letter(from, dead) {
            tracing::warn!(queue = %from.name, error = %e, "dead-lettering failed");
        }
    }

    /// Dead-letters copies that died in `from` (what its operations
    /// return): each is re-published through `from`'s `dead-letter`
    /// exchange (with `dead-letter-key` or its own key) carrying
    /// `h.x-death-*` headers, in one store batch with its removal. Without
    /// a dead-letter exchange they are dropped. A stream's dead letters
    /// (copies: the stream keeps its messages) also name the group and
    /// offset they died at.
    pub(super) fn dead_letter(
        &self,
        from: &Arc<Queue>,
        dead: Dead,
    ) -> Result<Option<u64>, BrokerError> {
        if dead.is_empty() {
            return Ok(None);
        }
        if let Some(c) = self.inner.consensus.get() {
            // A replicated queue's log learns which copies died (expired,
            // rejected): they are settled.
            if c.replicated(&from.name) {
                c.settled(&from.name, dead.seqs().collect());
            }
        }
        let group = dead.stream_group().cloned();
        let dead = dead.into_letters();
        let depth = DEAD_LETTER_DEPTH.with(Cell::get);
        let Some(dlx) = from
            .args
            .dead_letter
            .as_deref()
            .filter(|_| depth < MAX_DEAD_LETTER_DEPTH)
        else {
            return from.release(dead.into_iter().map(|(e, _)| e).collect());
        };
        let now = Now::default();
        let mut planned = Planned::default();
        let mut sources = Vec::with_capacity(dead.len());
        let mut copies = Vec::with_capacity(dead.len());
        for (e, reason) in dead {
            // Shared, not copied: `Bytes` clones are reference counts.
            let key = from
                .args
                .dead_letter_key
                .clone()
                .unwrap_or_else(|| e.msg.routing_key.clone());
            let mut headers = death_headers(&e.msg, reason, &from.name);
            if let Some(g) = &group {
                stream_death_headers(&mut headers, g, e.seq);
            }
            let targets: Vec<Arc<Queue>> = match self.route_to(dlx, &key, &headers) {
                Ok(t) => t,
                Err(err) => {
                    tracing::warn!(queue = %from.name, error = %err, "dead-letter exchange missing; message dropped");
                    Vec::new()
                }
            };
            // A copy that died of anything but rejection does not go back
            // into the queue it died in (RabbitMQ's cycle rule), and a full
            // queue that refuses publishes refuses dead letters too.
            let targets: Vec<Arc<Queue>> = targets
                .into_iter()
                .filter(|q| reason == DeathReason::Rejected || !Arc::ptr_eq(q, from))
                .collect();
            let targets = planned.admit(targets, e.msg.body.len(), false);
            // A replicated queue takes its dead letters through its log.
            let (targets, replicated) = self.split_replicated(targets);
            if !replicated.is_empty() {
                let m = ReplicaMessage::dead_letter(&e.msg, dlx, &key, &headers, &now);
                self.dead_letter_replicated(replicated, &m);
            }
            copies.push(Copies::republish(
                self, &e, dlx, key, headers, targets, &now,
            ));
            sources.push(e);
        }
        self.move_copies(from, &sources, copies, depth)
    }

    /// Removes `sources` from `from` and adds `copies`, in one store batch,
    /// then enqueues the copies (one level deeper in dead-lettering).
    fn move_copies(
        &self,
        from: &Arc<Queue>,
        sources: &[Entry],
        copies: Vec<Copies>,
        depth: u32,
    ) -> Result<Option<u64>, BrokerError> {
        let metas: Vec<_> = copies.iter().map(Copies::metas).collect();
        let mut batch = MessageBatch::default();
        from.add_removals(sources, &mut batch);
        add_puts(&mut batch, &copies, &metas);
        let mut gen = None;
        if !batch.is_empty() {
            gen = Some(self.inner.disk.apply(&batch)?);
        }
        drop(batch);
        DEAD_LETTER_DEPTH.with(|d| d.set(depth + 1));
        let enqueued = self.enqueue_all(copies);
        DEAD_LETTER_DEPTH.with(|d| d.set(depth));
        Ok(enqueued?.max(gen))
    }

    /// `REDRIVE`: moves up to `count` messages off the head of `queue` back
    /// to the exchange and routing key they were first published to
    /// (`h.x-death-exchange`, `h.x-death-key`), atomically. Messages that
    /// were never dead-lettered, whose exchange `may_write` refuses (the
    /// user's `write` permission), or that would reach no queue (or only
    /// full ones), stay.
    ///
    /// On a cluster node, `queue` may be a replicated queue (on its
    /// leader): then the copies for replicated queues its messages reach
    /// are left for the caller to append to their logs, and the moved
    /// messages to settle in `queue`'s log once those are committed (or
    /// to put back, should they not be). A queue of the node's own keeps a
    /// message whose route reaches a replicated queue (its removal and
    /// the other queue's append could not be one step).
    pub(crate) fn redrive(
        &self,
        queue: &str,
        count: Option<u64>,
        conn: u64,
        may_write: &dyn Fn(&str) -> bool,
    ) -> Result<Redriven, BrokerError> {
        let q = self.queue(queue, conn)?;
        let from_log = self
            .inner
            .consensus
            .get()
            .is_some_and(|c| c.replicated(&q.name));
        let taken = q.take_for_redrive(count.unwrap_or(u64::MAX));
        let now = Now::default();
        let mut planned = Planned::default();
        let mut kept = Vec::new();
        let mut moved = Vec::new();
        let mut copies = Vec::new();
        let mut replicate = Vec::new();
        for e in taken {
            // An exchange name is text; the key may be any bytes.
            let exchange = e
                .msg
                .header("x-death-exchange")
                .and_then(|x| std::str::from_utf8(x).ok());
            let (Some(exchange), Some(key)) = (
                exchange.filter(|x| may_write(x)),
                e.msg.header("x-death-key").cloned(),
            ) else {
                kept.push(e);
                continue;
            };
            let headers: Vec<Header> = e
                .msg
                .headers
                .iter()
                .filter(|(k, _)| !is_death_header(k))
                .cloned()
                .collect();
            let targets = self.route_to(exchange, &key, &headers).unwrap_or_default();
            let (targets, replicated) = self.split_replicated(targets);
            let admitted = planned.admit(targets.clone(), e.msg.body.len(), true);
            let refused = admitted.len() < targets.len();
            if refused || (admitted.is_empty() && replicated.is_empty()) {
                kept.push(e);
                continue;
            }
            if !replicated.is_empty() {
                if !from_log {
                    kept.push(e);
                    continue;
                }
                let copy = ReplicaMessage::dead_letter(&e.msg, exchange, &key, &headers, &now);
                replicate.extend(replicated.into_iter().map(|r| (r, copy.clone())));
            }
            if !admitted.is_empty() {
                copies.push(Copies::republish(
                    self, &e, exchange, key, headers, admitted, &now,
                ));
            }
            moved.push(e);
        }
        let gen = self.move_copies(&q, &moved, copies, 0)?;
        let kept_n = kept.len() as u64;
        self.put_back(&q, kept);
        Ok(Redriven {
            moved: moved.len() as u64,
            kept: kept_n,
            gen,
            replicate,
            settle: match from_log {
                true => moved,
                false => Vec::new(),
            },
            queue: q,
        })
    }
}

/// What a `REDRIVE` did ([`Broker::redrive`]).
#[derive(Debug)]
pub(crate) struct Redriven {
    /// Messages moved, and kept.
    pub(crate) moved: u64,
    pub(crate) kept: u64,
    /// The store generation the reply waits for.
    pub(crate) gen: Option<u64>,
    /// Copies for replicated queues, to append to their logs.
    pub(crate) replicate: Vec<(Arc<str>, ReplicaMessage)>,
    /// A replicated queue's moved messages: settled in its log once the
    /// copies are committed, put back if they are not.
    pub(crate) settle: Vec<Entry>,
    /// The queue redriven.
    pub(crate) queue: Arc<Queue>,
}

/// The headers of a dead-lettered copy: its own minus earlier death
/// headers, plus `x-death-reason`, `x-death-queue`, `x-death-count` (one
/// more than before) and the exchange and key it was first published to.
fn death_headers(msg: &Message, reason: DeathReason, queue: &str) -> Vec<Header> {
    let count = msg
        .header("x-death-count")
        .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let first_exchange = msg
        .header("x-death-exchange")
        .cloned()
        .unwrap_or_else(|| Bytes::copy_from_slice(msg.exchange.as_bytes()));
    let first_key = msg
        .header("x-death-key")
        .unwrap_or(&msg.routing_key)
        .clone();
    let mut h: Vec<Header> = msg
        .headers
        .iter()
        .filter(|(k, _)| !is_death_header(k) && k != "x-death-count")
        .cloned()
        .collect();
    h.push((
        "x-death-reason".into(),
        Bytes::from_static(reason.as_str().as_bytes()),
    ));
    h.push((
        "x-death-queue".into(),
        Bytes::copy_from_slice(queue.as_bytes()),
    ));
    h.push(("x-death-count".into(), Bytes::from(count.to_string())));
    h.push(("x-death-exchange".into(), first_exchange));
    h.push(("x-death-key".into(), first_key));
    h
}

/// Adds the headers of a stream's dead letter: `x-death-group` (a named
/// group's) and `x-death-offset`.
fn stream_death_headers(h: &mut Vec<Header>, group: &StreamGroup, offset: u64) {
    if let Some(name) = &group.name {
        h.push((
            "x-death-group".into(),
            Bytes::copy_from_slice(name.as_bytes()),
        ));
    }
    h.push(("x-death-offset".into(), Bytes::from(offset.to_string())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: Vec<Header>) -> Message {
        Message {
            group: None,
            id: "m1".into(),
            exchange: Arc::from("orders"),
            routing_key: "eu.new".into(),
            headers,
            body: Bytes::from_static(b"x"),
            body_id: 0,
            stored_refs: AtomicU32::new(0),
            persistent: true,
            registry: OnceLock::new(),
            published_at: 0,
        }
    }

    #[test]
    fn first_death_records_where_the_message_was_published() {
        let m = message(vec![("k".into(), "v".into())]);
        let h = death_headers(&m, DeathReason::Expired, "work");
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| &v[..]);
        assert_eq!(get("k"), Some(&b"v"[..]));
        let get = |n: &str| get(n).and_then(|v| std::str::from_utf8(v).ok());
        assert_eq!(get("x-death-reason"), Some("expired"));
        assert_eq!(get("x-death-queue"), Some("work"));
        assert_eq!(get("x-death-count"), Some("1"));
        assert_eq!(get("x-death-exchange"), Some("orders"));
        assert_eq!(get("x-death-key"), Some("eu.new"));
    }

    #[test]
    fn a_second_death_counts_up_and_keeps_the_first_origin() {
        let first = message(vec![]);
        let mut second = message(death_headers(&first, DeathReason::Rejected, "work"));
        second.exchange = Arc::from("dlx");
        second.routing_key = "dead".into();
        let h = death_headers(&second, DeathReason::MaxLen, "dlq");
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        assert_eq!(get("x-death-count"), Some("2"));
        assert_eq!(get("x-death-reason"), Some("maxlen"));
        assert_eq!(get("x-death-queue"), Some("dlq"));
        assert_eq!(get("x-death-exchange"), Some("orders"));
        assert_eq!(get("x-death-key"), Some("eu.new"));
        assert_eq!(h.iter().filter(|(k, _)| k == "x-death-reason").count(), 1);
    }

    #[test]
    fn a_binary_key_is_recorded_and_kept_byte_exact() {
        let mut first = message(vec![]);
        first.routing_key = Bytes::from_static(b"\xc3\x28.\xff");
        let h = death_headers(&first, DeathReason::Rejected, "work");
        let mut second = message(h);
        second.routing_key = Bytes::from_static(b"other");
        let h = death_headers(&second, DeathReason::Expired, "dlq");
        let key = h.iter().find(|(k, _)| k == "x-death-key").map(|(_, v)| v);
        assert_eq!(key.map(|k| &k[..]), Some(&b"\xc3\x28.\xff"[..]));
    }
}
