//! Counters and rates: what `STATS`, `LIST QUEUES`, `/metrics` and the
//! dashboard report.
//!
//! **Counters** are plain `AtomicU64`s bumped with `Relaxed` on paths that
//! already run once per message (a queue's enqueue, dispatch, settle; a
//! `PUB`): no lock and no allocation per message. Each queue owns its
//! [`QueueCounters`](super::queue::QueueCounters); the broker-wide
//! [`Totals`](super::queue::Totals) are bumped beside them
//! (both live with the queue, in `queue/counters.rs`: this module only
//! reads them).
//!
//! **Rates** are not computed per request: the [`Sampler`] (one task, once
//! a second) reads the counters into a ring of the last 60 samples per
//! queue and for the broker, and a rate is the difference between two
//! samples divided by the time between them: over the last second (the
//! newest two) and the last minute (the newest and the oldest, up to 60 s
//! apart). The ring also keeps each queue's depth, for the dashboard's
//! sparklines. A queue is known to the sampler by its internal id, so a
//! queue deleted and declared again under the same name starts afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::history::{History, Reading, Series};
use super::message::now_ms;
use super::queue::{DeathReason, Queue};
use super::Broker;

/// How often the sampler reads the counters.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per queue (and for the broker): one minute's worth, plus
/// the one the minute's rate starts from.
pub(crate) const SAMPLES: usize = 61;

/// Events per second over the last second and the last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Rate {
    /// Over the last sample interval.
    pub(crate) last_second: f64,
    /// Over up to the last 60 samples.
    pub(crate) last_minute: f64,
}

/// The rates of one queue (or of the broker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Rates {
    /// Messages in.
    pub(crate) publish: Rate,
    /// Deliveries.
    pub(crate) deliver: Rate,
    /// Acknowledgements.
    pub(crate) ack: Rate,
}

/// One reading of the counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    published: u64,
    delivered: u64,
    acked: u64,
    depth: u64,
}

impl Sample {
    /// Counters as they start: all zero.
    fn zero(at: Instant) -> Sample {
        Sample {
            at,
            published: 0,
            delivered: 0,
            acked: 0,
            depth: 0,
        }
    }
}

/// The last [`SAMPLES`] readings, oldest first.
#[derive(Debug, Default)]
struct Ring(VecDeque<Sample>);

impl Ring {
    fn push(&mut self, s: Sample) {
        if self.0.len() == SAMPLES {
            self.0.pop_front();
        }
        self.0.push_back(s);
    }

    fn rates(&self) -> Rates {
        let n = self.0.len();
        let (Some(last), Some(prev), Some(first)) = (
            self.0.back(),
            n.checked_sub(2).and_then(|i| self.0.get(i)),
            self.0.front(),
        ) else {
            return Rates::default();
        };
        let rate = |f: fn(&Sample) -> u64| Rate {
            last_second: per_second(f(prev), f(last), prev.at, last.at),
            last_minute: per_second(f(first), f(last), first.at, last.at),
        };
        Rates {
            publish: rate(|s| s.published),
            deliver: rate(|s| s.delivered),
            ack: rate(|s| s.acked),
        }
    }

    fn depths(&self) -> Vec<u64> {
        self.0.iter().map(|s| s.depth).collect()
    }
}

fn per_second(from: u64, to: u64, t0: Instant, t1: Instant) -> f64 {
    let secs = t1.saturating_duration_since(t0).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    to.saturating_sub(from) as f64 / secs
}

/// The rings of every queue and of the broker; see the module doc.
#[derive(Debug)]
pub(crate) struct Sampler {
    rings: Mutex<Rings>,
    started: Instant,
}

impl Default for Sampler {
    fn default() -> Self {
        let started = Instant::now();
        let mut rings = Rings::default();
        // The broker's counters are zero at start.
        rings.broker.push(Sample::zero(started));
        Sampler {
            rings: Mutex::new(rings),
            started,
        }
    }
}

#[derive(Debug, Default)]
struct Rings {
    broker: Ring,
    queues: HashMap<u64, Ring>,
    /// When the last tick ran.
    last: Option<Instant>,
    /// The broker's last ten minutes and last hour, for the charts.
    history: History,
    /// Each live connection's counters at the last tick, and its rates
    /// over the interval before it.
    conns: HashMap<u64, (ConnReading, ConnRates)>,
}

/// A connection's counters, as the sampler reads them.
#[derive(Debug, Clone, Copy)]
struct ConnReading {
    at: Instant,
    published: u64,
    delivered: u64,
    recv_bytes: u64,
    sent_bytes: u64,
}

/// A connection's rates over the last sample interval, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct ConnRates {
    /// `PUB`s it sent.
    pub(crate) publish: f64,
    /// Messages delivered to it.
    pub(crate) deliver: f64,
    /// Bytes read from it.
    pub(crate) recv_bytes: f64,
    /// Bytes written to it.
    pub(crate) sent_bytes: f64,
}

impl Sampler {
    /// Reads every counter once (the sampler task calls this each
    /// [`SAMPLE_INTERVAL`]; tests may call it to move time on at once).
    pub(crate) fn tick(&self, broker: &Broker) {
        let at = Instant::now();
        let mut seen = HashMap::new();
        let (mut depth, mut unacked) = (0, 0);
        for q in broker.queue_list() {
            let st = q.stats();
            depth += st.messages;
            unacked += st.unacked;
            let c = &q.counters;
            seen.insert(
                q.id,
                Sample {
                    at,
                    published: c.published.load(Ordering::Relaxed),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    acked: c.acked.load(Ordering::Relaxed),
                    depth: st.messages,
                },
            );
        }
        let t = broker.totals();
        let total = Sample {
            at,
            published: t.published.load(Ordering::Relaxed),
            delivered: t.delivered.load(Ordering::Relaxed),
            acked: t.acked.load(Ordering::Relaxed),
            depth,
        };
        let reading = Reading {
            at,
            unix_ms: now_ms(),
            published: total.published,
            delivered: total.delivered,
            acked: total.acked,
            messages: depth,
            unacked,
            memory: super::alarm::resident_bytes().ok(),
        };
        let conns: Vec<(u64, ConnReading)> = broker
            .connections()
            .list()
            .iter()
            .map(|c| {
                let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let r = ConnReading {
                    at,
                    published: n(&c.published),
                    delivered: n(&c.delivered),
                    recv_bytes: n(&c.recv_bytes),
                    sent_bytes: n(&c.sent_bytes),
                };
                (c.id, r)
            })
            .collect();
        let mut rings = self.rings.lock();
        rings.history.record(reading);
        let mut rates = HashMap::with_capacity(conns.len());
        for (id, now) in conns {
            // A connection seen for the first time starts from zeros at
            // the previous tick, as a queue does.
            let before = rings.conns.get(&id).map_or(
                ConnReading {
                    at: rings.last.unwrap_or(self.started),
                    published: 0,
                    delivered: 0,
                    recv_bytes: 0,
                    sent_bytes: 0,
                },
                |(r, _)| *r,
            );
            let rate =
                |f: fn(&ConnReading) -> u64| per_second(f(&before), f(&now), before.at, now.at);
            let r = ConnRates {
                publish: rate(|r| r.published),
                deliver: rate(|r| r.delivered),
                recv_bytes: rate(|r| r.recv_bytes),
                sent_bytes: rate(|r| r.sent_bytes),
            };
            rates.insert(id, (now, r));
        }
        rings.conns = rates;
        // A queue's counters start at zero when it is created (or
        // recovered): one seen for the first time starts from zeros at the
        // previous tick, so what it did before this tick counts in its rates.
        let before = rings.last.unwrap_or(self.started);
        rings.last = Some(at);
        rings.broker.push(total);
        rings.queues.retain(|id, _| seen.contains_key(id));
        for (id, s) in seen {
            rings
                .queues
                .entry(id)
                .or_insert_with(|| {
                    let mut r = Ring::default();
                    r.push(Sample::zero(before));
                    r
                })
                .push(s);
        }
    }

    /// Samples every [`SAMPLE_INTERVAL`] until aborted.
    pub(crate) async fn run(broker: Broker) {
        // The first sample a full interval after start (the rings start
        // from zeros at start): a rate is never taken over a sliver of time.
        let first = tokio::time::Instant::now() + SAMPLE_INTERVAL;
        let mut every = tokio::time::interval_at(first, SAMPLE_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            broker.sampler().tick(&broker);
        }
    }

    /// Time since the broker started.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The broker's rates.
    pub(crate) fn broker_rates(&self) -> Rates {
        self.rings.lock().broker.rates()
    }

    /// A queue's rates (zero until it has been sampled twice).
    pub(crate) fn queue_rates(&self, queue_id: u64) -> Rates {
        self.rings
            .lock()
            .queues
            .get(&queue_id)
            .map(Ring::rates)
            .unwrap_or_default()
    }

    /// A connection's rates over the last sample interval (zero until it
    /// has been sampled).
    pub(crate) fn connection_rates(&self, conn_id: u64) -> ConnRates {
        self.rings
            .lock()
            .conns
            .get(&conn_id)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }

    /// The broker's last ten minutes (one point a sample) and last hour
    /// (one point every five), for the charts.
    pub(crate) fn history(&self) -> (Series, Series) {
        let rings = self.rings.lock();
        (
            rings.history.recent(SAMPLE_INTERVAL),
            rings.history.hour(SAMPLE_INTERVAL),
        )
    }

    /// A queue's depth at each of the last samples, oldest first.
    pub(crate) fn queue_depths(&self, queue_id: u64) -> Vec<u64> {
        self.rings
            .lock()
            .queues
            .get(&queue_id)
            .map(Ring::depths)
            .unwrap_or_default()
    }
}

/// One queue as `STATS QUEUE`, `LIST QUEUES`, `/metrics` and the
/// dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueSnapshot {
    /// Internal id (the sampler's key).
    #[serde(skip)]
    pub(crate) id: u64,
    /// Name.
    pub(crate) name: String,
    /// Survives a restart.
    pub(crate) durable: bool,
    /// Deleted when its last subscription ends.
    pub(crate) auto_delete: bool,
    /// Belongs to one connection.
    pub(crate) exclusive: bool,
    /// Waiting: ready plus delayed, in RAM or paged out.
    pub(crate) messages: u64,
    /// Of those, delayed (`delay=`, retry back-off).
    pub(crate) delayed: u64,
    /// Delivered, not yet settled.
    pub(crate) unacked: u64,
    /// Subscriptions.
    pub(crate) consumers: u64,
    /// Copies that entered the queue.
    pub(crate) published: u64,
    /// Deliveries.
    pub(crate) delivered: u64,
    /// Acknowledgements.
    pub(crate) acked: u64,
    /// Deliveries requeued.
    pub(crate) requeued: u64,
    /// Copies dead-lettered (or dropped), every reason.
    pub(crate) dead_lettered: u64,
    /// Of those, by reason.
    pub(crate) dead_by_reason: DeadByReason,
    /// Reads back from the store that failed (a damaged segment).
    pub(crate) store_read_errors: u64,
    /// Rates.
    pub(crate) rates: Rates,
    /// Age of the oldest waiting message in ms (see [`Queue::stats`]).
    pub(crate) oldest_age_ms: Option<u64>,
    /// A replicated queue's group, as this node sees it (`null`: a queue
    /// of the node's own).
    pub(crate) replica: Option<super::ReplicaStatus>,
    /// `schema=<subject>`: what `PUB`s through the default exchange are
    /// checked against (`null`: none).
    pub(crate) schema: Option<String>,
    /// `PUB`s that schema refused.
    pub(crate) schema_rejections: u64,
}

/// Dead-lettered copies by [`DeathReason`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct DeadByReason {
    /// `NACK requeue=false`, `REJECT`.
    pub(crate) rejected: u64,
    /// TTL passed.
    pub(crate) expired: u64,
    /// Pushed out by `overflow=drop-head`.
    pub(crate) maxlen: u64,
    /// Used up `delivery-limit`.
    pub(crate) delivery_limit: u64,
}

impl DeadByReason {
    /// Each reason with its count.
    pub(crate) fn pairs(&self) -> [(DeathReason, u64); 4] {
        [
            (DeathReason::Rejected, self.rejected),
            (DeathReason::Expired, self.expired),
            (DeathReason::MaxLen, self.maxlen),
            (DeathReason::DeliveryLimit, self.delivery_limit),
        ]
    }
}

impl QueueSnapshot {
    /// Reads `q`'s state, counters and rates, and its group's view when
    /// replicated.
    pub(crate) fn of(q: &Queue, broker: &Broker) -> QueueSnapshot {
        let sampler = broker.sampler();
        let st = q.stats();
        let c = &q.counters;
        let now = now_ms();
        QueueSnapshot {
            id: q.id,
            name: q.name.to_string(),
            durable: q.durable,
            auto_delete: q.auto_delete,
            exclusive: q.owner.is_some(),
            messages: st.messages,
            delayed: st.delayed,
            unacked: st.unacked,
            consumers: st.consumers,
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            requeued: c.requeued.load(Ordering::Relaxed),
            dead_lettered: c.dead_total(),
            dead_by_reason: DeadByReason {
                rejected: c.dead_of(DeathReason::Rejected),
                expired: c.dead_of(DeathReason::Expired),
                maxlen: c.dead_of(DeathReason::MaxLen),
                delivery_limit: c.dead_of(DeathReason::DeliveryLimit),
            },
            store_read_errors: c.read_errors.load(Ordering::Relaxed),
            rates: sampler.queue_rates(q.id),
            oldest_age_ms: st.oldest_at.map(|t| now.saturating_sub(t)),
            replica: broker.replica_status(&q.name),
            schema: q.args.schema.clone(),
            schema_rejections: c.schema_rejections.load(Ordering::Relaxed),
        }
    }
}

/// The broker's totals, as `STATS`, `/metrics` and the dashboard show them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrokerSnapshot {
    /// Seconds since start.
    pub(crate) uptime_seconds: u64,
    /// Connections open now.
    pub(crate) connections: u64,
    /// Connections accepted since start.
    pub(crate) connections_opened: u64,
    /// Exchanges (the default one not counted).
    pub(crate) exchanges: u64,
    /// Queues.
    pub(crate) queues: u64,
    /// Subscriptions, all queues.
    pub(crate) consumers: u64,
    /// Messages waiting, all queues.
    pub(crate) messages: u64,
    /// Deliveries not yet settled, all queues.
    pub(crate) unacked: u64,
    /// `PUB`s accepted.
    pub(crate) published: u64,
    /// Deliveries.
    pub(crate) delivered: u64,
    /// Acknowledgements.
    pub(crate) acked: u64,
    /// Rates.
    pub(crate) rates: Rates,
    /// Resident memory.
    pub(crate) memory_rss_bytes: Option<u64>,
    /// Free space on the data directory's file system.
    pub(crate) disk_free_bytes: Option<u64>,
    /// The store's size on disk.
    pub(crate) store_size_bytes: Option<u64>,
    /// Store syncs (fsyncs) since start.
    pub(crate) fsyncs: u64,
}

/// Every queue's snapshot (by name) and the broker's totals over them.
pub(crate) fn snapshot(broker: &Broker) -> (BrokerSnapshot, Vec<QueueSnapshot>) {
    let sampler = broker.sampler();
    let queues: Vec<QueueSnapshot> = broker
        .queue_list()
        .iter()
        .map(|q| QueueSnapshot::of(q, broker))
        .collect();
    let t = broker.totals();
    let conns = broker.connections();
    let in_memory = broker.config().in_memory;
    let totals = BrokerSnapshot {
        uptime_seconds: sampler.uptime().as_secs(),
        connections: conns.current() as u64,
        connections_opened: conns.opened(),
        exchanges: broker.exchange_list().len() as u64,
        queues: queues.len() as u64,
        consumers: queues.iter().map(|q| q.consumers).sum(),
        messages: queues.iter().map(|q| q.messages).sum(),
        unacked: queues.iter().map(|q| q.unacked).sum(),
        published: t.published.load(Ordering::Relaxed),
        delivered: t.delivered.load(Ordering::Relaxed),
        acked: t.acked.load(Ordering::Relaxed),
        rates: sampler.broker_rates(),
        memory_rss_bytes: super::alarm::resident_bytes().ok(),
        disk_free_bytes: (!in_memory)
            .then(|| super::alarm::free_bytes(&broker.config().data_dir).ok())
            .flatten(),
        store_size_bytes: broker.store_size(),
        fsyncs: broker.committer().sync_count(),
    };
    (totals, queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, published: u64) -> Sample {
        Sample {
            at,
            published,
            delivered: published / 2,
            acked: 0,
            depth: published,
        }
    }

    #[test]
    fn rates_come_from_the_newest_two_and_the_oldest_sample() {
        let t0 = Instant::now();
        let mut r = Ring::default();
        assert_eq!(r.rates(), Rates::default());
        r.push(sample(t0, 0));
        assert_eq!(r.rates(), Rates::default());
        r.push(sample(t0 + Duration::from_secs(1), 100));
        r.push(sample(t0 + Duration::from_secs(2), 300));
        let rates = r.rates();
        assert_eq!(rates.publish.last_second, 200.0);
        assert_eq!(rates.publish.last_minute, 150.0);
        assert_eq!(rates.deliver.last_second, 100.0);
        assert_eq!(rates.ack.last_minute, 0.0);
        assert_eq!(r.depths(), vec![0, 100, 300]);
    }

    #[test]
    fn the_ring_keeps_one_minute() {
        let t0 = Instant::now();
        let mut r = Ring::default();
        for i in 0..200u64 {
            r.push(sample(t0 + Duration::from_secs(i), i * 10));
        }
        assert_eq!(r.0.len(), SAMPLES);
        assert_eq!(r.rates().publish.last_minute, 10.0);
        // A counter that went backwards (cannot, but) reads as no events.
        r.push(sample(t0 + Duration::from_secs(201), 0));
        assert_eq!(r.rates().publish.last_second, 0.0);
    }
}
