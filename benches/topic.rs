//! Topic exchange routing ([`Bindings::route`] on an [`ExchangeKind::Topic`]
//! table) with 10, 1 000 and 100 000 bindings.
//!
//! Binding patterns have 2-5 words: a literal from a 1024-word vocabulary
//! first (a service prefix, as real bindings have), then literals or, now
//! and then, `*` (8%) or `#` (3%); three broad patterns (`audit.#`,
//! `*.*.created`, `#.error`) are always there. Three routing keys in four
//! are 3-6 random literal words; one in four is an instance of a bound
//! pattern (so it matches at least that binding). Almost every binding
//! misses almost every key. One iteration routes 256 keys, drawn once per
//! table (throughput in keys/s). The trie's claim is that cost follows the
//! key, not the binding count: 100 000 bindings should cost far less than
//! 10 000 times 10.
//!
//! Run: `cargo bench --bench topic` (add `-- --quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::broker::exchange::{Binding, Bindings};
use sluice::protocol::command::{ExchangeKind, HeaderMatch};

/// Keys routed per iteration.
const KEYS: usize = 256;
/// Literal words to draw from.
const VOCAB: u64 = 1024;

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn word(rng: &mut Rng) -> String {
    format!("w{}", rng.below(VOCAB))
}

fn pattern(rng: &mut Rng) -> String {
    let len = 2 + rng.below(4);
    let mut words = Vec::new();
    // The first word is a literal (a service or domain prefix, as real
    // bindings have): without it, random all-wildcard patterns such as
    // `*.#` would match every key.
    words.push(word(rng));
    for _ in 1..len {
        words.push(match rng.below(100) {
            0..=7 => "*".to_string(),
            8..=10 => "#".to_string(),
            _ => word(rng),
        });
    }
    words.join(".")
}

fn routing_key(rng: &mut Rng) -> String {
    let len = 3 + rng.below(4);
    (0..len).map(|_| word(rng)).collect::<Vec<_>>().join(".")
}

/// A routing key that `pattern` matches: `*` becomes one word, `#` zero to
/// two words, literals stay.
fn instance(pattern: &str, rng: &mut Rng) -> String {
    let mut words = Vec::new();
    for w in pattern.split('.') {
        match w {
            "*" => words.push(word(rng)),
            "#" => {
                for _ in 0..rng.below(3) {
                    words.push(word(rng));
                }
            }
            literal => words.push(literal.to_string()),
        }
    }
    words.join(".")
}

/// `n` bindings, and the routing keys to route through them.
fn table(n: usize, rng: &mut Rng) -> (Bindings, Vec<String>) {
    let mut b = Bindings::new(ExchangeKind::Topic);
    let binding = |queue: String, key: String| {
        Binding::new(
            Arc::from(queue),
            Bytes::from(key),
            Vec::new(),
            HeaderMatch::All,
        )
    };
    for key in ["audit.#", "*.*.created", "#.error"] {
        b.add(binding(format!("broad-{key}"), key.to_string()));
    }
    let mut added = 3;
    while added < n {
        // About 100 bindings per queue, as when services bind many keys.
        let queue = format!("q{}", added / 100);
        if b.add(binding(queue, pattern(rng))) {
            added += 1;
        }
    }
    assert_eq!(b.len(), n.max(3));
    // Sorted: `iter` follows a randomly seeded hash map, and the keys must be
    // the same on every run for runs to compare.
    let mut patterns: Vec<&str> = b
        .iter()
        .map(|x| std::str::from_utf8(&x.key).unwrap())
        .collect();
    patterns.sort_unstable();
    let keys = (0..KEYS)
        .map(|i| {
            if i % 4 == 0 {
                let p = patterns[usize::try_from(rng.below(patterns.len() as u64)).unwrap()];
                instance(p, rng)
            } else {
                routing_key(rng)
            }
        })
        .collect();
    (b, keys)
}

fn bench_topic(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let mut group = c.benchmark_group("topic_route");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(KEYS as u64));
    for n in [10usize, 1_000, 100_000] {
        let (bindings, keys) = table(n, &mut rng);
        let mut out = Vec::new();
        let (mut matched, mut none) = (0usize, 0usize);
        for k in &keys {
            out.clear();
            bindings.route(k.as_bytes(), &[], &mut out);
            matched += out.len();
            none += usize::from(out.is_empty());
        }
        eprintln!(
            "topic_route/{n}: {:.2} queues matched per key on average, {} of {KEYS} keys match none",
            matched as f64 / KEYS as f64,
            none
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(n),
            &(bindings, keys),
            |b, (bindings, keys)| {
                let mut out: Vec<Arc<str>> = Vec::with_capacity(64);
                b.iter(|| {
                    let mut total = 0;
                    for k in keys {
                        out.clear();
                        bindings.route(black_box(k.as_bytes()), &[], &mut out);
                        total += out.len();
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_topic);
criterion_main!(benches);
