//! The sled store's tests: what it writes where, and what a reopened
//! directory gives back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::message::{body_key, dedup_key, meta_key, queue_prefix};
use super::*;
use crate::protocol::command::{Overflow, QueueArgs};
use crate::store::codec::{self, Writer};
use crate::store::message::now_ms;
use crate::store::{
    DedupEntry, MessageBatch, MessageMeta, MessageStore, QueueDef, Recovered, RecoveredMessage,
    StoredQueue, TopologyStore,
};

const HOUR_MS: u64 = 3_600_000;

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, DEFAULT_CACHE_BYTES).unwrap()
}

fn queue(name: &str, id: u64) -> QueueDef {
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

fn meta(body_id: u64, id: &str) -> MessageMeta {
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

fn volatile(body_id: u64, id: &str) -> MessageMeta {
    MessageMeta {
        volatile: true,
        ..meta(body_id, id)
    }
}

/// What a start reads back: the topology, then the messages against it.
fn recover(s: &SledStore) -> Recovered {
    Recovered::read(s, s).unwrap()
}

/// Every stored copy of a queue, in order.
fn load_all(s: &SledStore, queue_id: u64) -> Vec<RecoveredMessage> {
    s.load(queue_id, 0, u64::MAX, usize::MAX).unwrap()
}

fn seqs(ms: &[RecoveredMessage]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

fn stored(queue_id: u64, first_seq: u64, last_seq: u64, count: u64, bytes: u64) -> StoredQueue {
    StoredQueue {
        segments: Vec::new(),
        queue_id,
        first_seq,
        last_seq,
        count,
        bytes,
    }
}

fn dedup(queue_id: u64, id: &str, expires_at: u64) -> DedupEntry {
    DedupEntry {
        queue_id,
        id: id.into(),
        expires_at,
    }
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
fn message_removal_with_its_dedup_record_is_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
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
    let r = recover(&s);
    assert!(r.messages.stored.is_empty());
    assert!(r.messages.dedup.is_empty());
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
fn recovery_rebuilds_stream_segments_and_keeps_group_offsets_of_live_queues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        recover(&s);
        let mut q = queue("log", 1);
        q.args = QueueArgs {
            stream: true,
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
    let s = open(dir.path());
    let r = recover(&s);
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
fn load_respects_from_to_limit_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    recover(&s);
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
    let all = load_all(&s, 2);
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
    assert_eq!(shared[0].body.as_ptr(), shared[1].body.as_ptr());
    assert!(!shared[0].inline);
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
