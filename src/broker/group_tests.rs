//! Model-based test of a `groups` queue: random publishes (in a few groups,
//! or none), `GET`s by three connections, acks and requeues, checked at
//! every delivery against a model: a group's copies go out in position
//! order, and never to a second connection while one holds some unsettled.
//! Run in RAM (where a `GET` must also take every copy it may) and with a
//! RAM budget small enough that most of the backlog is paged out.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::message::Entry;
use super::model_tests::{publish_to_q, Rng};
use super::queue::{Queue, Settle};
use super::Broker;
use crate::config::Config;
use crate::protocol::command::{DeclareQueue, QueueArgs, QueueMode};

const GROUPS: u64 = 4;
const CONNS: u64 = 3;

fn open(dir: &std::path::Path, budget: Option<u64>) -> (Broker, std::sync::Arc<Queue>) {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    if let Some(b) = budget {
        config.queue_memory_bytes = b;
    }
    let broker = Broker::open(config).expect("open");
    let args = QueueArgs {
        mode: QueueMode::Groups,
        ..QueueArgs::default()
    };
    let d = DeclareQueue {
        partitions: None,
        replicas: None,
        name: "q".into(),
        durable: true,
        exclusive: false,
        auto_delete: false,
        args,
    };
    let (queue, _) = broker.declare_queue(&d, 1, &|_| Ok(())).expect("declare");
    (broker, queue)
}

fn group_of(e: &Entry) -> Option<u64> {
    let g = e.msg.group.as_ref()?;
    std::str::from_utf8(&g[1..]).ok()?.parse().ok()
}

/// What the model knows: waiting copies (by position: their group), and
/// who holds how many unsettled deliveries of each group.
#[derive(Default)]
struct Model {
    waiting: BTreeMap<u64, Option<u64>>,
    held: HashMap<u64, (u64, u32)>,
}

impl Model {
    /// Checks one delivery to `conn` and records it.
    fn delivered(&mut self, e: &Entry, conn: u64, ctx: &str) {
        let group = self.waiting.remove(&e.seq);
        assert!(group.is_some(), "{ctx}: m{} was not waiting", e.seq);
        let Some(g) = group.flatten() else {
            return;
        };
        assert_eq!(group_of(e), Some(g), "{ctx}: group key");
        if let Some(earlier) = self.waiting.iter().find(|(_, w)| **w == Some(g)) {
            assert!(
                *earlier.0 > e.seq,
                "{ctx}: m{} of g{g} went before m{}",
                e.seq,
                earlier.0
            );
        }
        let held = self.held.entry(g).or_insert((conn, 0));
        assert_eq!(held.0, conn, "{ctx}: g{g} went to a second connection");
        held.1 += 1;
    }

    fn settled(&mut self, e: &Entry, requeued: bool) {
        if let Some(g) = group_of(e) {
            if let Some(h) = self.held.get_mut(&g) {
                h.1 -= 1;
                if h.1 == 0 {
                    self.held.remove(&g);
                }
            }
        }
        if requeued {
            self.waiting.insert(e.seq, group_of(e));
        }
    }

    /// Whether `conn` may take some waiting copy.
    fn takeable(&self, conn: u64) -> bool {
        self.waiting.values().any(|g| match g {
            None => true,
            Some(g) => self.held.get(g).is_none_or(|h| h.0 == conn),
        })
    }
}

fn run(seed: u64, steps: usize, budget: Option<u64>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, queue) = open(dir.path(), budget);
    let mut model = Model::default();
    let mut out: Vec<(Entry, u64)> = Vec::new();
    let mut next = 1u64;
    for step in 0..steps {
        let ctx = format!("seed {seed}, step {step}");
        match rng.below(100) {
            0..=29 => {
                for _ in 0..=rng.below(20) {
                    let g = rng.below(GROUPS + 1);
                    let group = (g < GROUPS).then_some(g);
                    let key = group.map(|g| Bytes::from(format!("g{g}")));
                    publish_to_q(&broker, next, true, key);
                    model.waiting.insert(next, group);
                    next += 1;
                }
            }
            30..=64 => {
                let conn = 1 + rng.below(CONNS);
                let n = 1 + rng.below(4) as u32;
                let got = broker.take(&queue, n, conn).expect("take");
                for e in &got {
                    model.delivered(e, conn, &ctx);
                }
                if budget.is_none() && got.len() < n as usize {
                    assert!(!model.takeable(conn), "{ctx}: conn {conn} got too few");
                }
                out.extend(got.into_iter().map(|e| (e, conn)));
            }
            _ if !out.is_empty() => {
                let (e, _) = out.swap_remove(rng.below(out.len() as u64) as usize);
                let requeue = rng.below(10) < 4;
                model.settled(&e, requeue);
                let how = if requeue {
                    Settle::Requeue { delay_ms: None }
                } else {
                    Settle::Ack
                };
                broker.settle(&queue, None, e, how).expect("settle");
            }
            _ => {}
        }
    }
    // Drain: once nothing is held, one connection gets every copy.
    for (e, _) in out.drain(..) {
        model.settled(&e, false);
        broker.settle(&queue, None, e, Settle::Ack).expect("ack");
    }
    let got = broker.take(&queue, 10_000, 1).expect("take");
    for e in &got {
        model.delivered(e, 1, &format!("seed {seed}, drain"));
    }
    assert!(
        model.waiting.is_empty(),
        "seed {seed}: left {:?}",
        model.waiting
    );
    broker.shutdown().expect("shutdown");
}

#[test]
fn a_groups_queue_delivers_each_group_in_order_to_one_connection_at_a_time() {
    for seed in 1..=8 {
        run(seed, 400, None);
    }
}

#[test]
fn a_paged_groups_queue_keeps_group_order_and_ownership() {
    for seed in 1..=8 {
        run(seed, 400, Some(3000));
    }
}
