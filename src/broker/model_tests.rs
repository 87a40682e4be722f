//! Model-based test of a queue: random sequences of publish (persistent
//! and transient), get, ack, nack and clean restart against a real broker
//! on sled, and again on the memory store (a restart recovers from the
//! same handle), with a RAM budget small enough that most of the backlog
//! is paged out, checked step by step against a reference model (a map of
//! waiting messages by position and a set of unacknowledged ones).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::message::Entry;
use super::queue::{Queue, Settle};
use super::{Broker, PublishAttempt};
use crate::config::Config;
use crate::protocol::command::{DeclareQueue, Publish, QueueArgs};
use crate::store::{MemStore, Storage};

/// A deterministic xorshift generator (no dependency, reproducible seeds).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the model knows of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Model {
    persistent: bool,
    redelivered: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    /// The store in RAM the broker runs on, if not sled in `dir`.
    mem: Option<std::sync::Arc<MemStore>>,
    broker: Broker,
    queue: std::sync::Arc<Queue>,
}

fn open(
    dir: &std::path::Path,
    mem: Option<&std::sync::Arc<MemStore>>,
) -> (Broker, std::sync::Arc<Queue>) {
    let config = Config {
        data_dir: dir.to_path_buf(),
        // A dozen small messages: nearly everything goes through disk.
        queue_memory_bytes: 3000,
        ..Config::default()
    };
    let broker = match mem {
        Some(mem) => Broker::with_store(config, Storage::one(mem.clone())),
        None => Broker::open(config),
    }
    .expect("open");
    let (queue, _) = broker
        .declare_queue(
            &DeclareQueue {
                partitions: None,
                replicas: None,
                name: "q".into(),
                durable: true,
                exclusive: false,
                auto_delete: false,
                args: QueueArgs::default(),
            },
            1,
            &|_| Ok(()),
        )
        .expect("declare");
    (broker, queue)
}

/// Publishes `m<id>` (body `body of m<id>`) to queue `q`, confirmed
/// routed to it.
pub(super) fn publish_to_q(broker: &Broker, id: u64, persistent: bool, group: Option<Bytes>) {
    let p = Publish {
        group,
        exchange: String::new(),
        key: "q".into(),
        persistent: Some(persistent),
        mandatory: true,
        id: Some(format!("m{id}")),
        headers: Vec::new(),
        ttl_ms: None,
        delay_ms: None,
        priority: None,
        body: Bytes::from(format!("body of m{id}")),
    };
    match broker.publish(&p).expect("publish") {
        PublishAttempt::Done(d) => assert_eq!(d.routed, 1),
        PublishAttempt::Blocked(_) => panic!("an unbounded queue blocked"),
    }
}

impl Harness {
    fn new(in_memory: bool) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        Harness::start(dir, in_memory.then(std::sync::Arc::default))
    }

    /// A broker on the sled store in `dir`, or on `mem`.
    fn start(dir: tempfile::TempDir, mem: Option<std::sync::Arc<MemStore>>) -> Harness {
        let (broker, queue) = open(dir.path(), mem.as_ref());
        Harness {
            dir,
            mem,
            broker,
            queue,
        }
    }

    fn publish(&self, id: u64, persistent: bool) {
        publish_to_q(&self.broker, id, persistent, None);
    }

    /// Shuts down cleanly, lets go of every handle on the store (sled
    /// holds its directory lock until then) and opens it again.
    fn restart(self) -> Harness {
        self.broker.shutdown().expect("shutdown");
        let Harness {
            dir,
            mem,
            broker,
            queue,
        } = self;
        drop((broker, queue));
        Harness::start(dir, mem)
    }
}

fn id_of(e: &Entry) -> u64 {
    e.msg.id[1..].parse().expect("id")
}

fn run(seed: u64, steps: usize, in_memory: bool) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut h = Harness::new(in_memory);
    let mut waiting: BTreeMap<u64, Model> = BTreeMap::new();
    let mut unacked: Vec<(Entry, Model)> = Vec::new();
    let mut next_id = 0u64;
    for step in 0..steps {
        let ctx = || format!("seed {seed}, step {step}");
        match rng.below(100) {
            0..=44 => {
                // A burst of publishes.
                for _ in 0..=rng.below(40) {
                    let persistent = rng.below(10) < 7;
                    h.publish(next_id, persistent);
                    waiting.insert(
                        next_id,
                        Model {
                            persistent,
                            redelivered: false,
                        },
                    );
                    next_id += 1;
                }
            }
            45..=69 => {
                let n = 1 + rng.below(30) as u32;
                let got = h.broker.take(&h.queue, n, 1).expect("take");
                let want: Vec<u64> = waiting.keys().take(n as usize).copied().collect();
                let ids: Vec<u64> = got.iter().map(id_of).collect();
                assert_eq!(ids, want, "{}: GET order", ctx());
                for e in got {
                    let m = waiting.remove(&id_of(&e)).expect("in the model");
                    assert_eq!(
                        e.redelivered,
                        m.redelivered,
                        "{}: m{} flag",
                        ctx(),
                        id_of(&e)
                    );
                    assert_eq!(
                        e.msg.body,
                        Bytes::from(format!("body of m{}", id_of(&e))),
                        "{}: body",
                        ctx()
                    );
                    unacked.push((e, m));
                }
            }
            70..=84 if !unacked.is_empty() => {
                let i = rng.below(unacked.len() as u64) as usize;
                let (e, _) = unacked.swap_remove(i);
                h.broker
                    .settle(&h.queue, None, e, Settle::Ack)
                    .expect("ack");
            }
            85..=96 if !unacked.is_empty() => {
                let i = rng.below(unacked.len() as u64) as usize;
                let (e, m) = unacked.swap_remove(i);
                let id = id_of(&e);
                h.broker
                    .settle(&h.queue, None, e, Settle::Requeue { delay_ms: None })
                    .expect("nack");
                waiting.insert(
                    id,
                    Model {
                        redelivered: true,
                        ..m
                    },
                );
            }
            97..=99 => {
                // A clean restart: unacked deliveries come back flagged
                // (as when their connection closes), transient ones are gone.
                for (e, m) in unacked.drain(..) {
                    let id = id_of(&e);
                    h.broker
                        .settle(&h.queue, None, e, Settle::Requeue { delay_ms: None })
                        .expect("requeue");
                    waiting.insert(
                        id,
                        Model {
                            redelivered: true,
                            ..m
                        },
                    );
                }
                h = h.restart();
                waiting.retain(|_, m| m.persistent);
            }
            _ => {}
        }
        assert_eq!(
            h.queue.stats().messages,
            waiting.len() as u64,
            "{}: messages=",
            ctx()
        );
    }
    // Drain: everything the model holds comes out, in order.
    for (e, _) in unacked.drain(..) {
        h.broker
            .settle(&h.queue, None, e, Settle::Ack)
            .expect("ack");
    }
    let got = h.broker.take(&h.queue, 10_000, 1).expect("take");
    let ids: Vec<u64> = got.iter().map(id_of).collect();
    assert_eq!(
        ids,
        waiting.keys().copied().collect::<Vec<_>>(),
        "seed {seed}: drain"
    );
    let flags: HashMap<u64, bool> = got.iter().map(|e| (id_of(e), e.redelivered)).collect();
    for (id, m) in &waiting {
        assert_eq!(
            flags.get(id),
            Some(&m.redelivered),
            "seed {seed}: m{id} flag"
        );
    }
    h.broker.shutdown().expect("shutdown");
}

#[test]
fn a_paged_queue_behaves_like_its_model() {
    for seed in 1..=12 {
        run(seed, 300, false);
    }
}

#[test]
fn a_paged_queue_on_the_memory_store_behaves_like_its_model() {
    for seed in 1..=12 {
        run(seed, 300, true);
    }
}

/// The RAM budget (`--queue-memory`) is the broker's, not each queue's:
/// queues that each stay under it on their own page out once together
/// they reach it, so many queues with a backlog do not multiply it.
#[test]
fn the_ram_budget_is_shared_by_every_queue() {
    use crate::protocol::command::{DeclareQueue, QueueArgs};
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 20_000;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        queue_memory_bytes: budget,
        ..Config::default()
    };
    let broker = Broker::with_store(
        config,
        Storage::one(std::sync::Arc::new(MemStore::default())),
    )
    .expect("open");
    for q in 0..10 {
        let d = DeclareQueue {
            partitions: None,
            replicas: None,
            name: format!("q{q}"),
            durable: true,
            exclusive: false,
            auto_delete: false,
            args: QueueArgs::default(),
        };
        broker.declare_queue(&d, 1, &|_| Ok(())).expect("declare");
        // 20 copies of 100 bytes: about 7 KB with their overhead, well
        // under the budget for this queue alone.
        for i in 0..20 {
            let p = Publish {
                group: None,
                exchange: String::new(),
                key: format!("q{q}").into(),
                persistent: Some(true),
                mandatory: true,
                id: Some(format!("m{q}-{i}")),
                headers: Vec::new(),
                ttl_ms: None,
                delay_ms: None,
                priority: None,
                body: Bytes::from(vec![b'x'; 100]),
            };
            assert!(matches!(broker.publish(&p), Ok(PublishAttempt::Done(_))));
        }
    }
    // Ten queues would hold about 70 KB; together they keep the budget
    // (give or take the copy that crossed it).
    let used = broker
        .inner
        .disk
        .ram_used
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        used <= budget + 400,
        "{used} bytes in RAM against a budget of {budget}"
    );
    assert!(used >= budget / 2, "{used}: the queues kept nothing in RAM");
    // Every copy is still there, in order, paged back in as it is taken.
    for q in 0..10 {
        let queue = broker.queue(&format!("q{q}"), 1).expect("queue");
        assert_eq!(queue.stats().messages, 20);
    }
}
