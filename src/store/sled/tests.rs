//! The sled store's tests: what it writes where, and what a reopened
//! directory gives back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::message::{body_key, dedup_key, meta_key, queue_prefix};
use super::*;
use crate::protocol::command::QueueArgs;
use crate::store::codec::{self, Writer};
use crate::store::contract_tests::{
    dedup, load_all, meta, queue, recover, seqs, stored, volatile, HOUR_MS,
};
use crate::store::message::now_ms;
use crate::store::{MessageBatch, MessageStore, TopologyStore};

// What every store owes the broker; a restart reopens the directory.
crate::store::contract_tests::tests!(tempfile::tempdir().unwrap());

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, DEFAULT_CACHE_BYTES).unwrap()
}

fn dedup_keys(s: &SledStore) -> Vec<Vec<u8>> {
    s.messages
        .scan_prefix(b"d")
        .map(|kv| kv.unwrap().0.to_vec())
        .collect()
}

#[test]
fn dedup_lands_with_its_message_and_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue("q", 1);
    let m = meta(11, "msg-1");
    let d = dedup(1, "msg-1", now_ms() + HOUR_MS);
    {
        let s = open(dir.path());
        recover(&s);
        s.put_queue(&q).unwrap();
        // A small single-queue publish plus its dedup record: one batch.
        s.apply(&MessageBatch {
            put_bodies: vec![(11, b"hello")],
            put_metas: vec![(1, 1, &m)],
            put_dedup: vec![&d],
            ..MessageBatch::default()
        })
        .unwrap();
        // A fan-out body (not inline), to check that the body GC leaves
        // `d` keys alone and vice versa.
        let m2 = meta(12, "msg-2");
        let d2 = dedup(1, "msg-2", now_ms() + HOUR_MS);
        s.apply(&MessageBatch {
            put_bodies: vec![(12, b"shared")],
            put_metas: vec![(1, 2, &m2), (1, 3, &m2)],
            put_dedup: vec![&d2],
            ..MessageBatch::default()
        })
        .unwrap();
        s.sync().unwrap();
        // The small body stayed inline (no `b` key), the shared one not.
        assert!(s.messages.get(body_key(11, 0)).unwrap().is_none());
        assert!(s.messages.get(body_key(12, 0)).unwrap().is_some());
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(r.topology.queues, vec![q]);
    assert_eq!(r.messages.stored, vec![stored(1, 1, 3, 3, 5 + 6 + 6)]);
    let ms = load_all(&s, 1);
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[0].meta, m);
    assert!(ms[0].inline && !ms[1].inline && !ms[2].inline);
    assert_eq!(&ms[0].body[..], b"hello");
    assert_eq!(&ms[1].body[..], b"shared");
    assert_eq!(&ms[2].body[..], b"shared");
    assert_eq!(r.messages.dedup.len(), 2);
    assert_eq!(r.messages.dedup[0], d);
    assert_eq!(r.messages.dedup[1].id, "msg-2");
    assert!(s.messages.get(body_key(12, 0)).unwrap().is_some());
}

#[test]
fn an_ordered_fan_out_is_recovered_whole_and_a_half_written_body_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let m = meta(21, "fan");
    let big = vec![7u8; BODY_CHUNK_BYTES * 2 + 5];
    {
        let s = open(dir.path());
        recover(&s);
        s.put_queue(&queue("a", 1)).unwrap();
        s.put_queue(&queue("b", 2)).unwrap();
        s.apply(&MessageBatch {
            put_bodies: vec![(21, &big)],
            put_metas: vec![(1, 1, &m), (2, 1, &m)],
            ordered_only: true,
            ..MessageBatch::default()
        })
        .unwrap();
        // What a crash in the middle of an ordered write leaves: a body
        // head without its chunks and without any copy.
        s.messages.insert(body_key(22, 0), b"head only").unwrap();
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    let len = big.len() as u64;
    assert_eq!(
        r.messages.stored,
        vec![stored(1, 1, 1, 1, len), stored(2, 1, 1, 1, len)]
    );
    assert_eq!(r.messages.shared_refs, HashMap::from([(21, 2)]));
    let ms = [load_all(&s, 1), load_all(&s, 2)].concat();
    assert_eq!(ms.len(), 2);
    assert!(ms.iter().all(|m| m.body[..] == big[..]));
    assert!(s.messages.get(body_key(22, 0)).unwrap().is_none());
}

#[test]
fn expired_and_orphaned_dedup_records_are_dropped_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        recover(&s);
        s.put_queue(&queue("q", 1)).unwrap();
        let expired = dedup(1, "old", 1);
        let live = dedup(1, "new", now_ms() + HOUR_MS);
        let orphan = dedup(99, "gone", now_ms() + HOUR_MS);
        s.apply(&MessageBatch {
            put_dedup: vec![&expired, &live, &orphan],
            ..MessageBatch::default()
        })
        .unwrap();
        assert_eq!(dedup_keys(&s).len(), 3);
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(r.messages.dedup.len(), 1);
    assert_eq!(r.messages.dedup[0].id, "new");
    assert_eq!(dedup_keys(&s), vec![dedup_key(1, "new")]);
    assert!(s.messages.get(dedup_key(1, "old")).unwrap().is_none());
    assert!(s.messages.get(dedup_key(99, "gone")).unwrap().is_none());
}

#[test]
fn delete_queue_removes_its_messages_and_dedup_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
    let (a, b) = (queue("a", 1), queue("b", 2));
    s.put_queue(&a).unwrap();
    s.put_queue(&b).unwrap();
    let until = now_ms() + HOUR_MS;
    let (ma, mb) = (meta(1, "x"), meta(2, "x"));
    let (da, db) = (dedup(1, "x", until), dedup(2, "x", until));
    for (qid, m, d) in [(1, &ma, &da), (2, &mb, &db)] {
        s.apply(&MessageBatch {
            put_bodies: vec![(m.body_id, b"body")],
            put_metas: vec![(qid, 1, m)],
            put_dedup: vec![d],
            ..MessageBatch::default()
        })
        .unwrap();
    }
    // What Storage::delete_queue does: the definition, then the messages.
    s.delete_queue(&a).unwrap();
    s.remove_queue(a.id).unwrap();
    assert_eq!(dedup_keys(&s), vec![dedup_key(2, "x")]);
    assert!(s.messages.get(meta_key(1, 1)).unwrap().is_none());
    assert!(s.messages.get(meta_key(2, 1)).unwrap().is_some());
    let r = recover(&s);
    assert_eq!(r.messages.dedup, vec![db]);
    assert_eq!(r.messages.stored, vec![stored(2, 1, 1, 1, 4)]);
    assert!(load_all(&s, 1).is_empty());
    assert_eq!(load_all(&s, 2).len(), 1);
}

#[test]
fn a_small_publish_without_dedup_is_still_one_inline_insert() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
    s.put_queue(&queue("q", 1)).unwrap();
    let m = meta(5, "id");
    s.apply(&MessageBatch {
        put_bodies: vec![(5, b"small")],
        put_metas: vec![(1, 1, &m)],
        ..MessageBatch::default()
    })
    .unwrap();
    assert!(s.messages.get(body_key(5, 0)).unwrap().is_none());
    let (back, inline) =
        codec::decode_meta(&s.messages.get(meta_key(1, 1)).unwrap().unwrap()).unwrap();
    assert_eq!((back, inline), (m, Some(b"small".to_vec())));
}

#[test]
fn a_batch_of_only_dedup_removals_works() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
    s.put_queue(&queue("q", 1)).unwrap();
    let until = now_ms() + HOUR_MS;
    let (d1, d2) = (dedup(1, "a", until), dedup(1, "b", until));
    s.apply(&MessageBatch {
        put_dedup: vec![&d1, &d2],
        ..MessageBatch::default()
    })
    .unwrap();
    s.apply(&MessageBatch {
        del_dedup: vec![(1, "a"), (1, "never-there")],
        ..MessageBatch::default()
    })
    .unwrap();
    assert_eq!(dedup_keys(&s), vec![dedup_key(1, "b")]);
    // A removal and a write of one record in one batch: the write wins.
    let renewed = dedup(1, "b", until + 1);
    s.apply(&MessageBatch {
        del_dedup: vec![(1, "b")],
        put_dedup: vec![&renewed],
        ..MessageBatch::default()
    })
    .unwrap();
    assert_eq!(recover(&s).messages.dedup, vec![renewed]);
}

#[test]
fn version_1_records_on_disk_are_recovered_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let mut w = Writer::with_version(codec::V1);
        w.str("old").u64(4).u8(0);
        s.queues.insert("old", w.finish()).unwrap();
        let mut w = Writer::with_version(codec::V1);
        w.u64(8)
            .str("m")
            .str("")
            .str("old")
            .headers(&[])
            .u32(2)
            .u8(1)
            .bytes(b"legacy");
        s.messages.insert(meta_key(4, 1), w.finish()).unwrap();
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(r.topology.queues.len(), 1);
    assert_eq!(r.topology.queues[0].args, QueueArgs::default());
    assert_eq!(r.messages.stored, vec![stored(4, 1, 1, 1, 6)]);
    assert_eq!(r.messages.max_body_id, 8);
    let ms = load_all(&s, 4);
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!((m.meta.deliveries, &m.body[..]), (2, &b"legacy"[..]));
    assert_eq!((m.meta.expires_at, m.meta.not_before), (None, None));
    assert_eq!(m.meta.priority, 0);
    assert!(!m.meta.volatile && m.inline);
}

#[test]
fn recover_sums_up_each_queue_and_counts_shared_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![3u8; BODY_CHUNK_BYTES + 1];
    {
        let s = open(dir.path());
        recover(&s);
        for (name, id) in [("a", 1), ("b", 2), ("c", 3)] {
            s.put_queue(&queue(name, id)).unwrap();
        }
        // One body fanned out to three queues: stored once, apart.
        let fan = meta(100, "fan");
        s.apply(&MessageBatch {
            put_bodies: vec![(100, b"shared")],
            put_metas: vec![(1, 1, &fan), (2, 1, &fan), (3, 1, &fan)],
            ordered_only: true,
            ..MessageBatch::default()
        })
        .unwrap();
        // Small single-queue messages: inline.
        for (seq, body_id, body) in [(2, 101, &b"abc"[..]), (3, 102, b"defgh")] {
            let m = meta(body_id, "inline");
            s.apply(&MessageBatch {
                put_bodies: vec![(body_id, body)],
                put_metas: vec![(1, seq, &m)],
                ..MessageBatch::default()
            })
            .unwrap();
        }
        // A large body for one queue: stored apart, one reference.
        let m = meta(103, "big");
        s.apply(&MessageBatch {
            put_bodies: vec![(103, &big)],
            put_metas: vec![(2, 5, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(
        r.messages.stored,
        vec![
            stored(1, 1, 3, 3, 6 + 3 + 5),
            stored(2, 1, 5, 2, 6 + big.len() as u64),
            stored(3, 1, 1, 1, 6),
        ]
    );
    assert_eq!(r.messages.shared_refs, HashMap::from([(100, 3), (103, 1)]));
    assert_eq!(r.messages.max_body_id, 103);
    // The shared body survives the orphan collection.
    assert!(s.messages.get(body_key(100, 0)).unwrap().is_some());
    assert!(s.messages.get(body_key(103, 1)).unwrap().is_some());
}

#[test]
fn volatile_copies_are_dropped_at_recovery_and_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        recover(&s);
        s.put_queue(&queue("a", 1)).unwrap();
        s.put_queue(&queue("b", 2)).unwrap();
        let (kept, spilled) = (meta(1, "kept"), volatile(2, "spilled"));
        for (seq, m) in [(1, &kept), (2, &spilled)] {
            s.apply(&MessageBatch {
                put_bodies: vec![(m.body_id, b"inline")],
                put_metas: vec![(1, seq, m)],
                ..MessageBatch::default()
            })
            .unwrap();
        }
        // A body only volatile copies reference, and one that a
        // volatile and a durable copy share.
        let (v50, v51, d51) = (volatile(50, "v50"), volatile(51, "v51"), meta(51, "d51"));
        s.apply(&MessageBatch {
            put_bodies: vec![(50, b"only-volatile")],
            put_metas: vec![(1, 3, &v50), (2, 1, &v50)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.apply(&MessageBatch {
            put_bodies: vec![(51, b"mixed")],
            put_metas: vec![(1, 4, &v51), (2, 2, &d51)],
            ..MessageBatch::default()
        })
        .unwrap();
        // Until a restart, a volatile copy pages in like any other.
        let ms = load_all(&s, 1);
        assert_eq!(seqs(&ms), vec![1, 2, 3, 4]);
        assert_eq!(
            ms.iter().map(|m| m.meta.volatile).collect::<Vec<_>>(),
            vec![false, true, true, true]
        );
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(
        r.messages.stored,
        vec![stored(1, 1, 1, 1, 6), stored(2, 2, 2, 1, 5)]
    );
    assert_eq!(r.messages.shared_refs, HashMap::from([(51, 1)]));
    for (q, seq) in [(1, 2), (1, 3), (1, 4), (2, 1)] {
        assert!(s.messages.get(meta_key(q, seq)).unwrap().is_none());
    }
    assert!(s.messages.get(body_key(50, 0)).unwrap().is_none());
    assert!(s.messages.get(body_key(51, 0)).unwrap().is_some());
    assert_eq!(seqs(&load_all(&s, 1)), vec![1]);
    let ms = load_all(&s, 2);
    assert_eq!(seqs(&ms), vec![2]);
    assert_eq!(&ms[0].body[..], b"mixed");
}

#[test]
fn load_skips_a_copy_whose_body_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
    s.put_queue(&queue("q", 1)).unwrap();
    let lost = meta(7, "lost");
    s.apply(&MessageBatch {
        put_bodies: vec![(7, b"gone soon")],
        put_metas: vec![(1, 1, &lost), (1, 2, &lost)],
        ..MessageBatch::default()
    })
    .unwrap();
    let m = meta(8, "ok");
    s.apply(&MessageBatch {
        put_bodies: vec![(8, b"here")],
        put_metas: vec![(1, 3, &m)],
        ..MessageBatch::default()
    })
    .unwrap();
    s.messages.remove(body_key(7, 0)).unwrap();
    let ms = load_all(&s, 1);
    assert_eq!(seqs(&ms), vec![3]);
    assert_eq!(&ms[0].body[..], b"here");
    // Recovery drops such copies for good.
    let r = recover(&s);
    assert_eq!(r.messages.stored, vec![stored(1, 3, 3, 1, 4)]);
    assert!(r.messages.shared_refs.is_empty());
    assert!(s.messages.get(meta_key(1, 1)).unwrap().is_none());
}

#[test]
fn recovering_a_large_backlog_keeps_only_its_summary() {
    const N: u64 = 100_000;
    // More orphans than one removal batch holds.
    const ORPHANS: u64 = 25_000;
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        recover(&s);
        s.put_queue(&queue("big", 1)).unwrap();
        for seq in 1..=N {
            let m = meta(seq, "m");
            s.apply(&MessageBatch {
                put_bodies: vec![(seq, b"0123456789")],
                put_metas: vec![(1, seq, &m)],
                ..MessageBatch::default()
            })
            .unwrap();
        }
        // Copies of a queue that no longer exists.
        let m = meta(N + 1, "orphan");
        let value = codec::encode_meta(&m, Some(b"x"));
        for seq in 1..=ORPHANS {
            s.messages.insert(meta_key(2, seq), value.clone()).unwrap();
        }
        s.sync().unwrap();
    }
    let s = open(dir.path());
    let r = recover(&s);
    assert_eq!(r.messages.stored, vec![stored(1, 1, N, N, 10 * N)]);
    assert!(r.messages.shared_refs.is_empty());
    assert_eq!(r.messages.max_body_id, N);
    assert_eq!(s.messages.scan_prefix(queue_prefix(b'm', 2)).count(), 0);
    assert_eq!(seqs(&s.load(1, N - 1, N + 1, 10).unwrap()), vec![N - 1, N]);
}

#[test]
fn a_directory_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    let second = SledStore::open_with_lock_wait(dir.path(), DEFAULT_CACHE_BYTES, Duration::ZERO);
    match second {
        Err(StoreError::Locked(d)) => assert_eq!(d, dir.path().display().to_string()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
}

#[test]
fn reopening_right_after_close_waits_for_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..50 {
        let s = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        s.set_clean(true).unwrap();
        s.sync().unwrap();
        drop(s);
    }
}
