//! The log store against the stores' contract, and what is its own:
//! restarts that replay the write-ahead file, checkpoints, segments rolled
//! and deleted, rewrites, and the migration from sled.

use std::sync::Arc;

use bytes::Bytes;

use super::{GroupEntry, LogStore};
use crate::store::contract_tests::{load_all, meta, queue, recover, seqs, Harness};
use crate::store::sled::DEFAULT_CACHE_BYTES;
use crate::store::{Durable, MessageBatch, MessageStore, SledStore, TopologyStore};

/// A data directory for the log store.
pub(crate) struct LogDir(pub(crate) tempfile::TempDir);

impl Harness for LogDir {
    type Store = LogStore;
    fn open(&self) -> Arc<LogStore> {
        Arc::new(LogStore::open(self.0.path(), DEFAULT_CACHE_BYTES).unwrap())
    }
}

crate::store::contract_tests::tests!(super::LogDir(tempfile::tempdir().unwrap()));

fn publish(s: &LogStore, q: u64, seq: u64, body: &[u8]) {
    let m = meta(seq + 1000 * q, &format!("m{seq}"));
    s.apply(&MessageBatch {
        put_bodies: vec![(m.body_id, body)],
        put_metas: vec![(q, seq, &m)],
        ..MessageBatch::default()
    })
    .unwrap();
}

fn ack(s: &LogStore, q: u64, seqs: impl IntoIterator<Item = u64>) {
    s.apply(&MessageBatch {
        del_metas: seqs.into_iter().map(|seq| (q, seq)).collect(),
        ..MessageBatch::default()
    })
    .unwrap();
}

/// Publishes copies 1 to `n` of `body` to queue 1, syncing every 50.
fn backlog(s: &LogStore, n: u64, body: &[u8]) {
    for seq in 1..=n {
        publish(s, 1, seq, body);
        if seq % 50 == 0 {
            s.sync().unwrap();
        }
    }
    s.sync().unwrap();
}

/// The files of `dir` whose extension is `ext`, in name order.
fn files_with(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn copies_survive_a_crash_through_the_write_ahead_file_and_acks_stay_acked() {
    let h = LogDir(tempfile::tempdir().unwrap());
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        for seq in 1..=100 {
            publish(&s, 1, seq, format!("body {seq}").as_bytes());
        }
        s.sync().unwrap();
        ack(&s, 1, 1..=10);
        // Published and acked before its round: never written.
        publish(&s, 1, 101, b"gone");
        ack(&s, 1, [101]);
        s.sync().unwrap();
        // Not synced: may be lost, never half there.
        publish(&s, 1, 102, b"unsynced");
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.messages.stored.len(), 1);
    let got = load_all(&*s, 1);
    let got = seqs(&got);
    assert!(
        got == (11..=100).collect::<Vec<_>>() || got == (11..=100).chain([102]).collect::<Vec<_>>()
    );
    assert_eq!(&load_all(&*s, 1)[0].body[..], b"body 11");
}

#[test]
fn a_backlog_rolls_segments_pages_back_in_order_and_drained_segments_go() {
    let h = LogDir(tempfile::tempdir().unwrap());
    let body = vec![5u8; 64 * 1024];
    let n = 400u64; // about 26 MiB: several segments
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        backlog(&s, n, &body);
        let segs = || files_with(&h.0.path().join("log/1"), "seg").len();
        assert!(segs() >= 3, "{} segments", segs());
        // Paged back in pages, in order.
        let mut from = 0;
        let mut all = Vec::new();
        loop {
            let page = s.load(1, from, u64::MAX, 37).unwrap();
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            all.extend(page.iter().map(|m| m.seq));
        }
        assert_eq!(all, (1..=n).collect::<Vec<_>>());
        ack(&s, 1, 1..=n - 1);
        s.sync().unwrap();
        assert_eq!(segs(), 1, "settled sealed segments are deleted");
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.messages.stored[0].count, 1);
    assert_eq!(seqs(&load_all(&*s, 1)), vec![n]);
}

#[test]
fn a_requeued_copys_new_metadata_survives_a_restart_and_its_ack() {
    let h = LogDir(tempfile::tempdir().unwrap());
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        publish(&s, 1, 1, b"x");
        publish(&s, 1, 2, b"y");
        s.sync().unwrap();
        let mut m = load_all(&*s, 1)[0].meta.clone();
        m.deliveries = 3;
        s.apply(&MessageBatch {
            put_metas: vec![(1, 1, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.sync().unwrap();
        assert_eq!(load_all(&*s, 1)[0].meta.deliveries, 3);
    }
    let s = h.open();
    recover(&*s);
    let got = load_all(&*s, 1);
    assert_eq!((got[0].meta.deliveries, &got[0].body[..]), (3, &b"x"[..]));
    ack(&s, 1, [1]);
    s.sync().unwrap();
    assert_eq!(seqs(&load_all(&*s, 1)), vec![2]);
}

#[test]
fn a_checkpoint_retires_the_write_ahead_file_and_a_restart_needs_only_the_new_one() {
    let h = LogDir(tempfile::tempdir().unwrap());
    let body = vec![1u8; 256 * 1024];
    let n = 300u64; // 75 MiB of write-ahead: one rotation
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        for seq in 1..=n {
            publish(&s, 1, seq, &body);
            s.sync().unwrap();
        }
        ack(&s, 1, 1..=5);
        s.sync().unwrap();
        let wals = std::fs::read_dir(h.0.path().join("log/wal"))
            .unwrap()
            .count();
        assert_eq!(wals, 1, "older write-ahead files are deleted");
    }
    let s = h.open();
    recover(&*s);
    assert_eq!(seqs(&load_all(&*s, 1)), (6..=n).collect::<Vec<_>>());
}

#[test]
fn messages_kept_in_sled_by_an_older_release_move_into_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        MessageStore::recover(&old, &[]).unwrap();
        old.put_queue(&queue("a", 1)).unwrap();
        old.put_queue(&queue("b", 2)).unwrap();
        let m = meta(7, "fan");
        old.apply(&MessageBatch {
            put_bodies: vec![(7, b"shared")],
            put_metas: vec![(1, 1, &m), (2, 5, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
        old.sync().unwrap();
    }
    // A migration killed half-way leaves its work directory behind.
    std::fs::create_dir_all(dir.path().join("log.migrating/1")).unwrap();
    std::fs::write(dir.path().join("log.migrating/1/junk"), b"junk").unwrap();
    for _ in 0..2 {
        let s = Arc::new(LogStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap());
        let r = recover(&*s);
        assert_eq!(r.messages.stored.len(), 2);
        assert_eq!(seqs(&load_all(&*s, 1)), vec![1]);
        let b = load_all(&*s, 2);
        assert_eq!((b[0].seq, &b[0].body[..]), (5, &b"shared"[..]));
        assert!(!s.sled.has_messages().unwrap());
    }
    assert!(!dir.path().join("log.migrating").exists());
}

#[test]
fn a_start_reads_sealed_segments_by_their_index_and_reads_through_one_that_has_none() {
    let h = LogDir(tempfile::tempdir().unwrap());
    let body = vec![3u8; 64 * 1024];
    let n = 450u64; // about 29 MiB: two sealed segments and an active one
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        backlog(&s, n, &body);
    }
    let dir = h.0.path().join("log/1");
    let files = |ext: &str| files_with(&dir, ext);
    let (segs, idxs) = (files("seg"), files("idx"));
    assert!(
        segs.len() >= 3 && idxs.len() == segs.len(),
        "{segs:?} {idxs:?}"
    );
    // A flipped byte in the middle of the first sealed segment's bodies: a
    // start that reads the index only does not see it...
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&segs[0], &bytes).unwrap();
    {
        let s = h.open();
        let r = recover(&*s);
        assert_eq!(r.messages.stored[0].count, n);
        // ...and a read of it refuses the damaged entry.
        assert!(s.load(1, 0, u64::MAX, usize::MAX).is_err());
    }
    bytes[mid] ^= 1;
    std::fs::write(&segs[0], &bytes).unwrap();
    // Without index files, a start reads the segments through (and writes
    // the indexes again); everything is there either way.
    for idx in &idxs {
        std::fs::remove_file(idx).unwrap();
    }
    let with_damaged_index = |damage: bool| {
        if damage {
            let mut b = std::fs::read(&idxs[1]).unwrap();
            b[20] ^= 1;
            std::fs::write(&idxs[1], b).unwrap();
        }
        let s = h.open();
        let r = recover(&*s);
        assert_eq!(
            (r.messages.stored[0].count, r.messages.stored[0].bytes),
            (n, n * 64 * 1024)
        );
        assert_eq!(seqs(&load_all(&*s, 1)), (1..=n).collect::<Vec<_>>());
    };
    with_damaged_index(false);
    assert_eq!(files("idx").len(), segs.len(), "indexes written again");
    with_damaged_index(true);
}

#[test]
fn a_removed_range_unlinks_the_segments_it_covers_and_a_crash_before_the_unlink_keeps_it_removed() {
    let h = LogDir(tempfile::tempdir().unwrap());
    let body = vec![7u8; 64 * 1024];
    let n = 450u64; // two sealed segments and an active one
    let dir = h.0.path().join("log/1");
    let saved = tempfile::tempdir().unwrap();
    let (first_end, segs_before) = {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        backlog(&s, n, &body);
        let segs = files_with(&dir, "seg");
        assert!(segs.len() >= 3, "{segs:?}");
        // Where the second segment starts: the first holds 1..first_end.
        let first_end: u64 = segs[1]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, saved.path().join(f.file_name().unwrap())).unwrap();
        }
        // The first segment whole, and the start of the second.
        s.apply(&MessageBatch {
            del_ranges: vec![(1, 0, first_end + 10)],
            ..MessageBatch::default()
        })
        .unwrap();
        s.sync().unwrap();
        let segs = files_with(&dir, "seg");
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert!(
            !dir.join(super::super::log::ack_file_name(1)).exists(),
            "a segment dropped whole gets no acks"
        );
        (first_end, files_with(saved.path(), "seg").len())
    };
    assert!(segs_before >= 3);
    let want: Vec<u64> = (first_end + 10..=n).collect();
    {
        let s = h.open();
        recover(&*s);
        assert_eq!(seqs(&load_all(&*s, 1)), want);
    }
    // A crash after the round was durable and before the first segment
    // was unlinked: the write-ahead file's range settles it again. (The
    // files of the first segment are put back as they were before the
    // range; the range is removed again in a run that does not
    // checkpoint, so only its write-ahead file says so.)
    let s = h.open();
    recover(&*s);
    s.apply(&MessageBatch {
        del_ranges: vec![(1, 0, first_end + 10)],
        ..MessageBatch::default()
    })
    .unwrap();
    s.sync().unwrap();
    drop(s);
    for f in std::fs::read_dir(saved.path()).unwrap() {
        let f = f.unwrap().path();
        let to = dir.join(f.file_name().unwrap());
        if !to.exists() {
            std::fs::copy(&f, to).unwrap();
        }
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.messages.stored[0].count, want.len() as u64);
    assert_eq!(seqs(&load_all(&*s, 1)), want);
    assert_eq!(
        files_with(&dir, "seg").len(),
        2,
        "settled at recovery, unlinked"
    );
}

/// A consensus group's log as a plain list, to check the store against.
#[derive(Debug, Clone, Default, PartialEq)]
struct GroupModel {
    purged: Option<(u64, u64)>,
    first: u64,
    entries: Vec<(u64, Vec<u8>)>,
    vote: Option<Vec<u8>>,
}

impl GroupModel {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
    fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.0)
            .or(self.purged.map(|p| p.1))
            .unwrap_or(0)
    }
}

fn rng_next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Checks everything the store says of group `g` against `m`.
fn check_group(s: &LogStore, g: u64, m: &GroupModel, when: &str) {
    let st = s.group_state(g);
    let last = m.entries.last().map(|e| (m.next() - 1, e.0)).or(m.purged);
    assert_eq!((st.purged, st.last), (m.purged, last), "{when}: state");
    assert_eq!(s.group_vote(g).map(|v| v.to_vec()), m.vote, "{when}: vote");
    let got = s.group_read(g, m.first, u64::MAX).unwrap();
    assert_eq!(got.len(), m.entries.len(), "{when}: entries");
    for (e, (i, (term, payload))) in got.iter().zip((m.first..).zip(&m.entries)) {
        assert_eq!(
            (e.index, e.term, &e.payload[..]),
            (i, *term, &payload[..]),
            "{when}"
        );
    }
    if m.first > 1 {
        assert!(
            s.group_read(g, m.first - 1, m.first).is_err(),
            "{when}: purged"
        );
    }
}

#[test]
fn group_logs_match_a_model_through_random_operations_checkpoints_and_crashes() {
    // Two groups beside a queue; random appends (now and then a new term),
    // truncations, purges and votes; a sync now and then (what is synced
    // is durable, what is not is lost at a crash); crashes (the store
    // dropped without a sync) and restarts; payloads large enough that the
    // write-ahead file rotates, so checkpoints write the groups' files.
    let h = LogDir(tempfile::tempdir().unwrap());
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let fresh = GroupModel {
        first: 1,
        ..GroupModel::default()
    };
    let mut synced = [fresh.clone(), fresh.clone()];
    let mut seq = 0u64;
    let mut published = 0u64;
    for life in 0..6 {
        let s = h.open();
        let r = recover(&*s);
        if life == 0 {
            s.put_queue(&queue("a", 1)).unwrap();
        } else {
            assert_eq!(r.messages.stored.first().map_or(0, |q| q.count), published);
        }
        let mut model = synced.clone();
        for (g, m) in model.iter().enumerate() {
            check_group(&s, g as u64 + 1, m, &format!("life {life} start"));
        }
        for step in 0..300 {
            let g = (rng_next(&mut rng) % 2) as usize;
            let gid = g as u64 + 1;
            let m = &mut model[g];
            match rng_next(&mut rng) % 10 {
                0..=5 => {
                    let term =
                        m.last_term().max(1) + u64::from(rng_next(&mut rng).is_multiple_of(8));
                    let n = 1 + rng_next(&mut rng) % 4;
                    let entries: Vec<GroupEntry> = (0..n)
                        .map(|k| {
                            let len = (rng_next(&mut rng) % (320 * 1024)) as usize;
                            let payload = vec![(step % 251) as u8; len];
                            GroupEntry {
                                index: m.next() + k,
                                term,
                                payload: Bytes::from(payload),
                            }
                        })
                        .collect();
                    s.group_append(gid, &entries).unwrap();
                    m.entries
                        .extend(entries.iter().map(|e| (e.term, e.payload.to_vec())));
                }
                6 => {
                    let span = m.entries.len() as u64 + 1;
                    let since = m.first + rng_next(&mut rng) % span;
                    s.group_truncate(gid, since).unwrap();
                    m.entries.truncate((since - m.first) as usize);
                }
                7 if !m.entries.is_empty() => {
                    // Now and then past the last entry, as after a snapshot.
                    let upto = m.first + rng_next(&mut rng) % (m.entries.len() as u64 + 2);
                    let n = ((upto + 1 - m.first) as usize).min(m.entries.len());
                    let term = match m.entries.get((upto - m.first) as usize) {
                        Some(e) => e.0,
                        None => m.last_term(),
                    };
                    s.group_purge(gid, upto, term).unwrap();
                    m.entries.drain(..n);
                    m.first = upto + 1;
                    m.purged = Some((upto, term));
                }
                8 => {
                    let vote = format!("vote {step} of life {life}").into_bytes();
                    s.group_save_vote(gid, &vote).unwrap();
                    m.vote = Some(vote);
                }
                _ => {
                    seq += 1;
                    publish(&s, 1, seq, b"beside");
                    s.sync().unwrap();
                    published += 1;
                    synced = model.clone();
                }
            }
            // Refusals change nothing (an empty log that never had any
            // purged takes any first index: nothing to refuse there).
            let m = &model[g];
            let started = !m.entries.is_empty() || m.purged.is_some();
            assert!(
                !started
                    || s.group_append(
                        gid,
                        &[GroupEntry {
                            index: m.next() + 1,
                            term: 9,
                            payload: Bytes::new()
                        }]
                    )
                    .is_err()
            );
            if step % 50 == 49 {
                check_group(&s, gid, m, &format!("life {life} step {step}"));
            }
        }
        // Half the lives end with what was done since the last sync lost.
        if life % 2 == 0 {
            s.sync().unwrap();
            synced = model.clone();
        }
    }
    let wals = files_with(&h.0.path().join("log/wal"), "wal");
    assert_eq!(wals.len(), 1);
    let groups = files_with(&h.0.path().join("log/groups"), "grp");
    assert_eq!(groups.len(), 2, "one file per group: {groups:?}");
}

#[test]
fn a_group_file_is_not_replayed_over_by_the_write_ahead_file_it_covers() {
    // A checkpoint writes the group's file and retires the write-ahead file
    // holding its operations; a crash before the retirement leaves both,
    // and the start must not apply the operations twice (an append the
    // file has already would not fit).
    let h = LogDir(tempfile::tempdir().unwrap());
    let saved = tempfile::tempdir().unwrap();
    let entry = |index: u64, term: u64| GroupEntry {
        index,
        term,
        payload: Bytes::from(format!("entry {index} of term {term}")),
    };
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        s.group_append(5, &(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.group_save_vote(5, b"term 1").unwrap();
        s.sync().unwrap();
        // Fill the write-ahead file to just below its rotation.
        let body = vec![1u8; 1 << 20];
        let mut seq = 0;
        while std::fs::metadata(&files_with(&h.0.path().join("log/wal"), "wal")[0])
            .unwrap()
            .len()
            < super::WAL_ROTATE - (2 << 20)
        {
            seq += 1;
            publish(&s, 1, seq, &body);
            s.sync().unwrap();
        }
        for f in files_with(&h.0.path().join("log/wal"), "wal") {
            std::fs::copy(&f, saved.path().join(f.file_name().unwrap())).unwrap();
        }
        // One more round passes the rotation: the checkpoint after it
        // writes the group's file.
        publish(&s, 1, seq + 1, &body);
        publish(&s, 1, seq + 2, &body);
        s.sync().unwrap();
        s.group_truncate(5, 8).unwrap();
        s.group_append(5, &[entry(8, 2)]).unwrap();
        s.group_purge(5, 3, 1).unwrap();
        s.sync().unwrap();
        assert_eq!(files_with(&h.0.path().join("log/groups"), "grp").len(), 1);
    }
    for f in files_with(saved.path(), "wal") {
        std::fs::copy(&f, h.0.path().join("log/wal").join(f.file_name().unwrap())).unwrap();
    }
    let s = h.open();
    recover(&*s);
    let want = GroupModel {
        purged: Some((3, 1)),
        first: 4,
        entries: (4..=8)
            .map(|i| {
                let term = if i == 8 { 2 } else { 1 };
                (term, format!("entry {i} of term {term}").into_bytes())
            })
            .collect(),
        vote: Some(b"term 1".to_vec()),
    };
    check_group(&s, 5, &want, "after the restart");
    // Dropped, its file goes with the next sync, and a start knows nothing of it.
    s.group_drop(5).unwrap();
    s.sync().unwrap();
    assert!(files_with(&h.0.path().join("log/groups"), "grp").is_empty());
    drop(s);
    let s = h.open();
    recover(&*s);
    assert_eq!(s.group_state(5), super::GroupState::default());
}

#[test]
fn a_round_the_segments_could_not_take_is_taken_back_from_every_file() {
    // What the sync does when the segments fail a durable round (a full
    // disk): the round, a fan-out to two queues and a new segment for one
    // of them, is taken back, so a start finds neither copy and replays
    // nothing (it would need the room the disk lacked).
    let h = LogDir(tempfile::tempdir().unwrap());
    {
        let s = h.open();
        recover(&*s);
        s.put_queue(&queue("a", 1)).unwrap();
        s.put_queue(&queue("b", 2)).unwrap();
        backlog(&s, 130, &vec![9u8; 64 * 1024]); // queue 1's segment is full
        publish(&s, 2, 1, b"kept");
        s.sync().unwrap();
        let m = meta(500, "fan");
        s.apply(&MessageBatch {
            put_bodies: vec![(m.body_id, b"fan-out")],
            put_metas: vec![(1, 131, &m), (2, 2, &m)],
            ..MessageBatch::default()
        })
        .unwrap();
        let mut files = s.files.lock();
        let files = files.as_mut().unwrap();
        let round = s.state.lock().take(false, files.wal.generation());
        assert_eq!(round.rolls.len(), 1, "queue 1 starts a segment");
        let start = files.round_start(&round);
        files.write_ahead(&round).unwrap();
        files.write_round(&round).unwrap();
        files.take_back(&round, &start).unwrap();
        assert!(
            files.wal.append_round(&[]).is_err(),
            "the store takes no more"
        );
    }
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(
        r.messages
            .stored
            .iter()
            .map(|q| q.count)
            .collect::<Vec<_>>(),
        [130, 1]
    );
    assert_eq!(seqs(&load_all(&*s, 2)), [1]);
    // The segment the round sealed is the active one again, and goes on.
    assert_eq!(files_with(&h.0.path().join("log/1"), "seg").len(), 1);
    publish(&s, 1, 131, b"after");
    s.sync().unwrap();
    drop(s);
    let s = h.open();
    let r = recover(&*s);
    assert_eq!(r.messages.stored[0].count, 131);
    assert_eq!(files_with(&h.0.path().join("log/1"), "seg").len(), 2);
}

#[test]
fn a_damaged_group_file_starts_its_group_over_empty_until_it_is_repaired() {
    // A group whose file does not read back whole (a flipped bit here) is
    // set aside: its group starts empty, its operations still in the
    // write-ahead file skipped, and it stays damaged through restarts
    // until repaired; another group is untouched.
    let h = LogDir(tempfile::tempdir().unwrap());
    let entry = |index: u64| GroupEntry {
        index,
        term: 1,
        payload: Bytes::from(format!("entry {index} with some bytes to flip")),
    };
    {
        let s = h.open();
        recover(&*s);
        for g in [5, 6] {
            s.group_append(g, &(1..=10).map(entry).collect::<Vec<_>>())
                .unwrap();
            s.group_save_vote(g, b"term 1").unwrap();
        }
        s.sync().unwrap();
    }
    // A start writes each group's file.
    {
        let s = h.open();
        recover(&*s);
        assert!(!s.group_damaged(5));
        // An operation past the file, in the write-ahead file.
        s.group_append(5, &[entry(11)]).unwrap();
        s.sync().unwrap();
    }
    let groups = h.0.path().join("log/groups");
    let file = files_with(&groups, "grp")
        .into_iter()
        .find(|f| f.to_string_lossy().contains(&format!("{:020}.", 5)))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    for _ in 0..2 {
        let s = h.open();
        recover(&*s);
        assert!(s.group_damaged(5));
        assert_eq!(s.group_state(5), super::groups::GroupState::default());
        assert_eq!(s.group_vote(5), None);
        assert!(!s.group_damaged(6));
        assert_eq!(s.group_state(6).last, Some((10, 1)));
    }
    // Made again (from the other members) and repaired: no longer damaged.
    {
        let s = h.open();
        recover(&*s);
        s.group_append(5, &[entry(1), entry(2)]).unwrap();
        s.sync().unwrap();
        s.group_repaired(5).unwrap();
        assert!(!s.group_damaged(5));
    }
    let s = h.open();
    recover(&*s);
    assert!(!s.group_damaged(5));
    assert_eq!(s.group_state(5).last, Some((2, 1)));
    assert!(files_with(&groups, "damaged").is_empty());
}
