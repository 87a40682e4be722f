//! What every store that keeps its data owes the broker, written once and
//! run against each ([`SledStore`] in `sled/tests.rs`, [`MemStore`] in
//! `mem.rs`, through [`tests!`]): what a restart gives back, what recovery
//! drops, what removals remove, how a queue pages back in. A store's own
//! tests check how it lays its data out; these check only what the traits
//! promise, so that a test may run a broker on either and see the same.
//!
//! Also the fixtures those tests share (queues, message metadata, reading
//! a start back).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::codec;
use super::message::now_ms;
use super::sled::{BODY_CHUNK_BYTES, DEFAULT_CACHE_BYTES};
use super::{
    BindingDef, DedupEntry, Durable, ExchangeDef, MemStore, MessageBatch, MessageMeta,
    MessageStore, QueueDef, Recovered, RecoveredMessage, SledStore, Storage, StoredQueue,
    TopologyStore, UserRecord,
};
use crate::protocol::command::{ExchangeKind, HeaderMatch, Overflow, QueueArgs, Secret};

/// A store under test, and how it starts again.
pub(super) trait Harness {
    /// The store.
    type Store: TopologyStore + MessageStore;
    /// The store as a start finds it: a new handle on the same data (the
    /// caller has let the previous one go).
    fn open(&self) -> Arc<Self::Store>;
}

/// The memory store restarts on the same handle.
impl Harness for Arc<MemStore> {
    type Store = MemStore;
    fn open(&self) -> Arc<MemStore> {
        self.clone()
    }
}

/// The sled store restarts on the same directory.
impl Harness for tempfile::TempDir {
    type Store = SledStore;
    fn open(&self) -> Arc<SledStore> {
        Arc::new(SledStore::open(self.path(), DEFAULT_CACHE_BYTES).unwrap())
    }
}

/// The contract's tests, in a module `contract` with one `#[test]` per
/// scenario, each on a fresh [`Harness`] that `$fresh` (an expression with
/// whole paths) makes.
macro_rules! tests {
    ($fresh:expr) => {
        $crate::store::contract_tests::tests!($fresh;
            topology_and_users_survive_a_restart,
            a_restart_sums_up_what_was_published,
            removals_take_what_they_name_and_nothing_else,
            the_clean_flag_tells_how_the_last_run_ended,
            message_removal_with_its_dedup_record_is_one_batch,
            recovery_rebuilds_stream_segments_and_keeps_group_offsets_of_live_queues,
            load_respects_from_to_limit_and_order,
            ranges_remove_every_copy_in_them_and_nothing_else,
        );
    };
    ($fresh:expr; $($scenario:ident),* $(,)?) => {
        /// What every store owes the broker (`store/contract_tests.rs`).
        mod contract {
            $(
                #[test]
                fn $scenario() {
                    $crate::store::contract_tests::$scenario(&$fresh);
                }
            )*
        }
    };
}
pub(super) use tests;

/// The de-duplication window the fixtures' queues have.
pub(super) const HOUR_MS: u64 = 3_600_000;

/// A durable queue with a few arguments set (so that they round-trip).
pub(super) fn queue(name: &str, id: u64) -> QueueDef {
    QueueDef {
        name: name.into(),
        id,
        auto_delete: false,
        args: QueueArgs {
            dedup_window_ms: Some(HOUR_MS),
            overflow: Overflow::RejectPublish,
            retry_delays_ms: vec![10, 20],
            ..QueueArgs::default()
        },
    }
}

/// A copy's metadata with most fields set.
pub(super) fn meta(body_id: u64, id: &str) -> MessageMeta {
    MessageMeta {
        published_at: 0,
        group: None,
        body_id,
        id: id.into(),
        exchange: String::new(),
        routing_key: "q".into(),
        headers: vec![],
        deliveries: 0,
        expires_at: Some(now_ms() + HOUR_MS),
        not_before: Some(5),
        priority: 7,
        volatile: false,
    }
}

/// The metadata of a copy written only to save RAM.
pub(super) fn volatile(body_id: u64, id: &str) -> MessageMeta {
    MessageMeta {
        volatile: true,
        ..meta(body_id, id)
    }
}

/// What a start reads back: the topology, then the messages against it.
pub(super) fn recover(s: &(impl TopologyStore + MessageStore)) -> Recovered {
    Recovered::read(s, s).unwrap()
}

/// Every stored copy of a queue, in order.
pub(super) fn load_all(s: &dyn MessageStore, queue_id: u64) -> Vec<RecoveredMessage> {
    s.load(queue_id, 0, u64::MAX, usize::MAX).unwrap()
}

/// The sequence numbers of copies.
pub(super) fn seqs(ms: &[RecoveredMessage]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

/// A queue's summary without segments.
pub(super) fn stored(
    queue_id: u64,
    first_seq: u64,
    last_seq: u64,
    count: u64,
    bytes: u64,
) -> StoredQueue {
    StoredQueue {
        segments: Vec::new(),
        queue_id,
        first_seq,
        last_seq,
        count,
        bytes,
    }
}

/// A de-duplication record.
pub(super) fn dedup(queue_id: u64, id: &str, expires_at: u64) -> DedupEntry {
    DedupEntry {
        queue_id,
        id: id.into(),
        expires_at,
    }
}

/// Applies `batch`, which must succeed.
fn apply(s: &dyn MessageStore, batch: MessageBatch<'_>) {
    s.apply(&batch).unwrap();
}

/// One publish of `body` to the copies `to` ((queue id, seq) each).
fn publish(s: &dyn MessageStore, m: &MessageMeta, body: &[u8], to: &[(u64, u64)]) {
    apply(
        s,
        MessageBatch {
            put_bodies: vec![(m.body_id, body)],
            put_metas: to.iter().map(|(q, seq)| (*q, *seq, m)).collect(),
            ..MessageBatch::default()
        },
    );
}

fn binding(exchange: &str, queue: &str, key: &'static str) -> BindingDef {
    BindingDef {
        exchange: exchange.into(),
        queue: queue.into(),
        key: Bytes::from_static(key.as_bytes()),
        headers: vec![("x-match-me".into(), "1".into())],
        matching: HeaderMatch::Any,
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        hash: Secret("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        tags: vec!["admin".into()],
        configure: ".*".into(),
        write: "^orders$".into(),
        read: String::new(),
    }
}

/// Exchanges, queues, bindings and users come back as last written;
/// deleting an exchange or a queue takes its bindings along.
pub(super) fn topology_and_users_survive_a_restart(h: &impl Harness) {
    let logs = ExchangeDef {
        name: "logs".into(),
        kind: ExchangeKind::Topic,
        auto_delete: true,
        alternate: Some("ae".into()),
        hash_header: None,
        partitions: 0,
    };
    let parts = ExchangeDef {
        name: "parts".into(),
        kind: ExchangeKind::Hash,
        auto_delete: false,
        alternate: None,
        hash_header: Some("user".into()),
        partitions: 2,
    };
    let gone = ExchangeDef {
        name: "gone".into(),
        ..logs.clone()
    };
    let (a, b) = (queue("a", 1), queue("b", 2));
    {
        let s = h.open();
        recover(&*s);
        for e in [&logs, &parts, &gone] {
            s.put_exchange(e).unwrap();
        }
        for q in [&a, &b, &queue("doomed", 3)] {
            s.put_queue(q).unwrap();
        }
        for bnd in [
            binding("logs", "b", "b.#"),
            binding("logs", "a", "a.*"),
            binding("logs", "a", "a.*"),
            binding("parts", "a", "1"),
            binding("gone", "a", "x"),
            binding("logs", "doomed", "d"),
            binding("parts", "b", "1"),
        ] {
            s.put_binding(&bnd).unwrap();
        }
        s.delete_binding(&binding("parts", "b", "1")).unwrap();
        s.delete_exchange("gone").unwrap();
        s.delete_queue(&queue("doomed", 3)).unwrap();
        // A redeclared queue is replaced.
        let mut a2 = a.clone();
        a2.args.max_length = Some(9);
        s.put_queue(&a2).unwrap();
        s.put_user(&user("bob")).unwrap();
        s.put_user(&user("alice")).unwrap();
        s.put_user(&user("carol")).unwrap();
        s.delete_user("carol").unwrap();
        s.sync().unwrap();
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.topology.exchanges, vec![logs, parts]);
    let mut a2 = a;
    a2.args.max_length = Some(9);
    assert_eq!(r.topology.queues, vec![a2, b]);
    // In the order of their encoding (sled's key order).
    let mut bindings = vec![
        binding("logs", "a", "a.*"),
        binding("logs", "b", "b.#"),
        binding("parts", "a", "1"),
    ];
    bindings.sort_by_key(codec::encode_binding);
    assert_eq!(r.topology.bindings, bindings);
    assert_eq!(s.users().unwrap(), vec![user("alice"), user("bob")]);
}

/// Copies come back summed up per queue (bodies counted per copy), shared
/// bodies counted, volatile copies, orphans and expired records dropped;
/// loads give each copy back whole.
pub(super) fn a_restart_sums_up_what_was_published(h: &impl Harness) {
    let big = vec![7u8; BODY_CHUNK_BYTES * 2 + 5];
    let until = now_ms() + HOUR_MS;
    let (small, fan, large) = (meta(11, "small"), meta(12, "fan"), meta(13, "large"));
    let (spilled, mixed_v, mixed_d) = (volatile(14, "spilled"), volatile(15, "v"), meta(15, "d"));
    let live = dedup(1, "small", until);
    {
        let s = h.open();
        recover(&*s);
        for q in [&queue("a", 1), &queue("b", 2)] {
            s.put_queue(q).unwrap();
        }
        // A small publish with its de-duplication record: inline.
        apply(
            &*s,
            MessageBatch {
                put_bodies: vec![(11, b"hello")],
                put_metas: vec![(1, 1, &small)],
                put_dedup: vec![&live, &dedup(1, "expired", 1), &dedup(9, "orphan", until)],
                ..MessageBatch::default()
            },
        );
        // A fan-out, written in order only: one body, apart.
        apply(
            &*s,
            MessageBatch {
                put_bodies: vec![(12, b"shared")],
                put_metas: vec![(1, 2, &fan), (2, 1, &fan)],
                ordered_only: true,
                ..MessageBatch::default()
            },
        );
        // A body too large to go inline, for one copy.
        publish(&*s, &large, &big, &[(2, 2)]);
        // A body only volatile copies reference, and one that a volatile
        // and a durable copy share.
        publish(&*s, &spilled, b"spilled", &[(1, 3), (2, 3)]);
        apply(
            &*s,
            MessageBatch {
                put_bodies: vec![(15, b"mixed")],
                put_metas: vec![(1, 4, &mixed_v), (2, 4, &mixed_d)],
                ..MessageBatch::default()
            },
        );
        // Until a restart, a volatile copy pages in like any other.
        assert_eq!(seqs(&load_all(&*s, 1)), vec![1, 2, 3, 4]);
        // Copies of a queue that does not exist.
        publish(&*s, &meta(16, "orphan"), b"orphan", &[(9, 1)]);
        s.sync().unwrap();
    }
    let s = h.open();
    let r = recover(&*s);
    let m = &r.messages;
    let len = big.len() as u64;
    assert_eq!(m.stored.len(), 2);
    assert_eq!(m.stored[0], stored(1, 1, 2, 2, 5 + 6));
    assert_eq!(m.stored[1], stored(2, 1, 4, 3, 6 + len + 5));
    assert_eq!(m.max_body_id, 15, "the volatile copies' bodies count");
    if s.shares_bodies() {
        assert_eq!(
            m.shared_refs,
            HashMap::from([(12, 2), (13, 1), (15, 1)]),
            "a shared body counts its copies; an inline one is not counted"
        );
    } else {
        assert!(m.shared_refs.is_empty(), "every copy has its own body");
    }
    assert_eq!(m.dedup, vec![live]);
    let a = load_all(&*s, 1);
    assert_eq!(seqs(&a), vec![1, 2]);
    assert_eq!((a[0].meta.clone(), &a[0].body[..]), (small, &b"hello"[..]));
    assert!(a[0].inline && a[1].inline != s.shares_bodies());
    let b = load_all(&*s, 2);
    assert_eq!(seqs(&b), vec![1, 2, 4]);
    assert_eq!(&b[0].body[..], b"shared");
    assert_eq!((b[1].meta.clone(), &b[1].body[..]), (large, &big[..]));
    assert_eq!(
        (b[2].meta.clone(), &b[2].body[..]),
        (mixed_d, &b"mixed"[..])
    );
    assert!(load_all(&*s, 9).is_empty());
    // What recovery dropped stays dropped.
    let again = recover(&*s).messages;
    assert_eq!(
        (again.stored, again.dedup),
        (m.stored.clone(), m.dedup.clone())
    );
}

/// A removed range takes every copy of its queue in it, whatever the
/// copies' history (acked already, requeued with new metadata, not yet
/// synced), and nothing else; across a restart too.
pub(super) fn ranges_remove_every_copy_in_them_and_nothing_else(h: &impl Harness) {
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        s.put_queue(&queue("b", 2)).unwrap();
        for seq in 1..=10 {
            let m = meta(seq, &format!("m{seq}"));
            publish(&*s, &m, format!("body {seq}").as_bytes(), &[(1, seq)]);
        }
        publish(&*s, &meta(20, "other"), b"other", &[(2, 3)]);
        s.sync().unwrap();
        apply(
            &*s,
            MessageBatch {
                del_metas: vec![(1, 3)],
                ..MessageBatch::default()
            },
        );
        let mut requeued = meta(4, "m4");
        requeued.deliveries = 2;
        apply(
            &*s,
            MessageBatch {
                put_metas: vec![(1, 4, &requeued)],
                ..MessageBatch::default()
            },
        );
        s.sync().unwrap();
        publish(&*s, &meta(11, "m11"), b"body 11", &[(1, 11)]);
        apply(
            &*s,
            MessageBatch {
                del_ranges: vec![(1, 2, 6), (1, 9, u64::MAX), (1, 7, 7), (2, 4, 9)],
                ..MessageBatch::default()
            },
        );
        assert_eq!(seqs(&load_all(&*s, 1)), vec![1, 6, 7, 8]);
        s.sync().unwrap();
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.messages.stored.len(), 2);
    assert_eq!(r.messages.stored[0], stored(1, 1, 8, 4, 4 * 6));
    let a = load_all(&*s, 1);
    assert_eq!(seqs(&a), vec![1, 6, 7, 8]);
    assert_eq!(&a[1].body[..], b"body 6");
    assert_eq!(seqs(&load_all(&*s, 2)), vec![3]);
}

/// An ack removes its copy (and a dedup record in the same batch), a
/// renewed dedup record replaces the old one, a body removed while a copy
/// still names it makes the copy skipped then dropped, and deleting a
/// queue removes its definition, copies, records and offsets, and nothing
/// of another queue.
pub(super) fn removals_take_what_they_name_and_nothing_else(h: &impl Harness) {
    let until = now_ms() + HOUR_MS;
    let s = h.open();
    recover(&*s);
    let (a, b) = (queue("a", 1), queue("b", 2));
    s.put_queue(&a).unwrap();
    s.put_queue(&b).unwrap();
    for (qid, body_id) in [(1, 1), (2, 2)] {
        apply(
            &*s,
            MessageBatch {
                put_bodies: vec![(body_id, b"body")],
                put_metas: vec![(qid, 1, &meta(body_id, "x"))],
                put_dedup: vec![&dedup(qid, "x", until), &dedup(qid, "y", until)],
                put_offsets: vec![(qid, "g", 7)],
                ..MessageBatch::default()
            },
        );
    }
    // B: an ack with its dedup record; a dedup record removed, one that
    // never was, and one removed and written again (the write wins).
    apply(
        &*s,
        MessageBatch {
            del_metas: vec![(2, 1)],
            del_bodies: vec![(2, 4)],
            del_dedup: vec![(2, "x"), (2, "never-there"), (2, "y")],
            put_dedup: vec![&dedup(2, "y", until + 1)],
            ..MessageBatch::default()
        },
    );
    // B again: a fan-out whose body then goes while one copy remains.
    let fan = meta(3, "fan");
    publish(&*s, &fan, b"fan", &[(2, 2), (2, 3)]);
    apply(
        &*s,
        MessageBatch {
            del_metas: vec![(2, 2)],
            del_bodies: vec![(3, 3)],
            ..MessageBatch::default()
        },
    );
    if s.shares_bodies() {
        assert!(
            load_all(&*s, 2).is_empty(),
            "a copy without its body is skipped"
        );
    } else {
        // Each copy has its own body: removing "the" body removes nothing.
        assert_eq!(seqs(&load_all(&*s, 2)), vec![3]);
        apply(
            &*s,
            MessageBatch {
                del_metas: vec![(2, 3)],
                ..MessageBatch::default()
            },
        );
    }
    Storage::one(s.clone()).delete_queue(&a).unwrap();
    assert!(load_all(&*s, 1).is_empty());
    // A queue that takes the id again finds nothing of the deleted one.
    let again = queue("again", 1);
    s.put_queue(&again).unwrap();
    let r = recover(&*s);
    assert_eq!(r.topology.queues, vec![again, b]);
    assert!(r.messages.stored.is_empty(), "{:?}", r.messages.stored);
    assert!(r.messages.shared_refs.is_empty());
    assert_eq!(r.messages.dedup, vec![dedup(2, "y", until + 1)]);
    assert_eq!(r.messages.offsets, vec![(2, "g".to_string(), 7)]);
}

/// A start reads whether the last run was marked clean, and marks this one
/// as not clean until it says so.
pub(super) fn the_clean_flag_tells_how_the_last_run_ended(h: &impl Harness) {
    {
        let s = h.open();
        assert!(!recover(&*s).messages.clean_shutdown, "a new store");
        s.set_clean(true).unwrap();
        s.sync().unwrap();
    }
    {
        let s = h.open();
        assert!(recover(&*s).messages.clean_shutdown);
        s.sync().unwrap();
    }
    let s = h.open();
    assert!(
        !recover(&*s).messages.clean_shutdown,
        "a crash after a start"
    );
}

pub(super) fn message_removal_with_its_dedup_record_is_one_batch(h: &impl Harness) {
    let s = h.open();
    recover(&*s);
    s.put_queue(&queue("q", 1)).unwrap();
    let m = meta(3, "id");
    let d = dedup(1, "id", now_ms() + HOUR_MS);
    s.apply(&MessageBatch {
        put_bodies: vec![(3, b"b")],
        put_metas: vec![(1, 1, &m)],
        put_dedup: vec![&d],
        ..MessageBatch::default()
    })
    .unwrap();
    s.apply(&MessageBatch {
        del_metas: vec![(1, 1)],
        del_bodies: vec![(3, 1)],
        del_dedup: vec![(1, "id")],
        ..MessageBatch::default()
    })
    .unwrap();
    let r = recover(&*s);
    assert!(r.messages.stored.is_empty());
    assert!(r.messages.dedup.is_empty());
}

pub(super) fn recovery_rebuilds_stream_segments_and_keeps_group_offsets_of_live_queues(
    h: &impl Harness,
) {
    {
        let s = h.open();
        recover(&*s);
        let mut q = queue("log", 1);
        q.args = QueueArgs {
            mode: crate::protocol::command::QueueMode::Stream,
            max_bytes: Some(80),
            ..QueueArgs::default()
        };
        s.put_queue(&q).unwrap();
        s.put_queue(&queue("plain", 2)).unwrap();
        for seq in 1..=5u64 {
            let m = MessageMeta {
                published_at: 1000 + seq,
                ..meta(seq, "m")
            };
            s.apply(&MessageBatch {
                put_bodies: vec![(seq, b"0123456")],
                put_metas: vec![(1, seq, &m)],
                ..MessageBatch::default()
            })
            .unwrap();
        }
        let m = meta(9, "q");
        s.apply(&MessageBatch {
            put_bodies: vec![(9, b"x")],
            put_metas: vec![(2, 1, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.apply(&MessageBatch {
            put_offsets: vec![(1, "billing", 3), (1, "audit", 1), (7, "gone", 4)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.sync().unwrap();
    }
    let s = h.open();
    let r = recover(&*s);
    // max-bytes=80: a segment is full once it holds 80 / 8 = 10 bytes
    // or more, so two 7-byte messages each.
    let log = &r.messages.stored[0];
    assert_eq!(log.queue_id, 1);
    let spans: Vec<_> = log
        .segments
        .iter()
        .map(|g| (g.first, g.end, g.count, g.first_ts, g.last_ts))
        .collect();
    assert_eq!(
        spans,
        [
            (1, 3, 2, 1001, 1002),
            (3, 5, 2, 1003, 1004),
            (5, 6, 1, 1005, 1005)
        ]
    );
    assert!(r.messages.stored[1].segments.is_empty(), "not a stream");
    let mut offsets = r.messages.offsets.clone();
    offsets.sort();
    assert_eq!(
        offsets,
        [(1, "audit".to_string(), 1), (1, "billing".to_string(), 3)]
    );
}

pub(super) fn load_respects_from_to_limit_and_order(h: &impl Harness) {
    let s = h.open();
    recover(&*s);
    for (name, id) in [("a", 1), ("b", 2), ("c", 3)] {
        s.put_queue(&queue(name, id)).unwrap();
    }
    // Queue 2: seqs 1..=10; its neighbours hold copies too, which must
    // never show up in its range. Written out of order.
    for seq in (1..=10).rev() {
        let m = meta(seq, &format!("m{seq}"));
        let body = seq.to_string();
        s.apply(&MessageBatch {
            put_bodies: vec![(seq, body.as_bytes())],
            put_metas: vec![(2, seq, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
    }
    let fan = meta(99, "fan");
    s.apply(&MessageBatch {
        put_bodies: vec![(99, b"fan")],
        put_metas: vec![(1, 1, &fan), (3, 0, &fan), (2, 20, &fan), (2, 21, &fan)],
        ..MessageBatch::default()
    })
    .unwrap();
    let all = load_all(&*s, 2);
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21]);
    assert!(all.iter().all(|m| m.queue_id == 2));
    assert_eq!(&all[2].body[..], b"3");
    assert_eq!(all[2].meta.id, "m3");
    assert_eq!(
        seqs(&s.load(2, 3, 7, usize::MAX).unwrap()),
        vec![3, 4, 5, 6]
    );
    assert_eq!(seqs(&s.load(2, 3, 7, 2).unwrap()), vec![3, 4]);
    assert_eq!(seqs(&s.load(2, 10, u64::MAX, 2).unwrap()), vec![10, 20]);
    assert_eq!(seqs(&s.load(2, 11, 20, 5).unwrap()), Vec::<u64>::new());
    assert!(s.load(2, 5, 5, 10).unwrap().is_empty());
    assert!(s.load(2, 7, 3, 10).unwrap().is_empty());
    assert!(s.load(2, 0, u64::MAX, 0).unwrap().is_empty());
    assert!(s.load(4, 0, u64::MAX, 10).unwrap().is_empty());
    // A body shared by two copies of the result is read once.
    let shared = s.load(2, 20, 22, 10).unwrap();
    assert_eq!(shared.len(), 2);
    if s.shares_bodies() {
        assert_eq!(shared[0].body.as_ptr(), shared[1].body.as_ptr());
        assert!(!shared[0].inline);
    } else {
        assert_eq!(shared[0].body, shared[1].body);
        assert!(shared[0].inline);
    }
}
