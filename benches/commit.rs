//! The store's group commit: a [`SledStore`] in a temporary directory, its
//! [`Committer`] thread, and [`MessageBatch`] applies as the broker makes
//! them for a durable single-queue publish (one inline key) and its ack
//! (removal).
//!
//! - `publish_1000x100b`: 1000 publishes of 100 bytes applied back to back,
//!   each taking a generation, then one wait for the last generation: what a
//!   pipelining publisher costs (its confirms share the fsyncs).
//! - `publish_ack_1000x100b`: the same 1000 publishes, then an ack (removal
//!   of the copy and its body) for each, then one wait for the last generation.
//!
//! Throughput is in messages per second. The numbers include the fsyncs, so
//! they depend on the file system under the temporary directory (`TMPDIR`).
//!
//! Run: `cargo bench --bench commit`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::protocol::command::QueueArgs;
use sluice::store::sled::DEFAULT_CACHE_BYTES;
use sluice::store::{
    Committer, MessageBatch, MessageMeta, MessageStore, QueueDef, SledStore, Storage, TopologyStore,
};

/// Messages per iteration.
const N: u64 = 1000;
/// Body size.
const BODY: usize = 100;
/// The benchmark queue's id.
const QUEUE_ID: u64 = 1;

/// Store, committer and the next free body id / queue sequence number (both
/// go on growing across iterations, as in a long-running broker).
struct Bench {
    store: Arc<dyn MessageStore>,
    committer: Arc<Committer>,
    next: u64,
    body: Vec<u8>,
}

fn meta(body_id: u64) -> MessageMeta {
    MessageMeta {
        published_at: 0,
        group: None,
        body_id,
        id: format!("m{body_id}"),
        exchange: String::new(),
        routing_key: "jobs".into(),
        headers: Vec::new(),
        deliveries: 0,
        expires_at: None,
        not_before: None,
        priority: 0,
        volatile: false,
    }
}

impl Bench {
    fn open(dir: &std::path::Path) -> Bench {
        let store = Arc::new(SledStore::open(dir, DEFAULT_CACHE_BYTES).unwrap());
        let storage = Storage::one(store.clone());
        let recovered = storage.recover().unwrap();
        assert!(recovered.messages.stored.is_empty());
        store
            .put_queue(&QueueDef {
                name: "jobs".into(),
                id: QUEUE_ID,
                auto_delete: false,
                args: QueueArgs::default(),
            })
            .unwrap();
        let committer = Committer::start(&storage).unwrap();
        Bench {
            store,
            committer,
            next: 1,
            body: vec![b'x'; BODY],
        }
    }

    /// Applies N publishes; returns the first body id / seq and the last generation.
    fn publish(&mut self) -> (u64, u64) {
        let first = self.next;
        let mut generation = 0;
        for _ in 0..N {
            let id = self.next;
            self.next += 1;
            // One body for its only copy: the store keeps it inline with the meta.
            let m = meta(id);
            self.store
                .apply(&MessageBatch {
                    put_bodies: vec![(id, &self.body)],
                    put_metas: vec![(QUEUE_ID, id, &m)],
                    ..MessageBatch::default()
                })
                .unwrap();
            generation = self.committer.written();
        }
        (first, generation)
    }

    /// Acks the N messages published from `first`; returns the last generation.
    fn ack(&self, first: u64) -> u64 {
        let mut generation = 0;
        for id in first..first + N {
            self.store
                .apply(&MessageBatch {
                    del_metas: vec![(QUEUE_ID, id)],
                    del_bodies: vec![(id, BODY)],
                    ..MessageBatch::default()
                })
                .unwrap();
            generation = self.committer.written();
        }
        generation
    }
}

fn bench_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bench = Bench::open(dir.path());

    let mut group = c.benchmark_group("group_commit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(N));
    group.bench_function("publish_1000x100b", |b| {
        b.iter(|| {
            let (_, last) = bench.publish();
            rt.block_on(bench.committer.wait(last)).unwrap();
        });
    });
    group.bench_function("publish_ack_1000x100b", |b| {
        b.iter(|| {
            let (first, _) = bench.publish();
            let last = bench.ack(first);
            rt.block_on(bench.committer.wait(last)).unwrap();
        });
    });
    group.finish();

    eprintln!(
        "group_commit: {} messages published, {} syncs",
        bench.next - 1,
        bench.committer.sync_count()
    );
    bench.committer.shutdown(std::time::Duration::from_secs(5));
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);
