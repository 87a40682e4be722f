//! Starting the log store: [`recover`] rebuilds the RAM view of every live
//! queue's log from its files and replays the write-ahead files, ending
//! with a checkpoint; [`migrate_from_sled`] moves the messages of a data
//! directory written by a release that kept them in sled into the log,
//! once, crash-safely.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use super::super::log::acks::{read_acks, AckSet};
use super::super::log::index::{read_index, IndexEntry, IndexWriter};
use super::super::log::record::Entry;
use super::super::log::scan::{read_seal, scan, SegmentRole};
use super::super::log::segment::{SegmentReader, SegmentWriter};
use super::super::log::wal::{replay, WalWriter};
use super::super::log::{
    ack_file_name, index_file_name, parse_file_name, sync_dir, CommitMark, FileKind, LogError,
};
use super::files::{load_groups, Files, QueueFiles};
use super::groups::{self, GroupView};
use super::ops::{self, Op};
use super::side::{Side, Small};
use super::view::{QueueView, SegView};
use super::{dedup_entry, index_entry, SEGMENT_BYTES};
use crate::store::message::now_ms;
use crate::store::{
    add_to_segments, Durable, MessageStore, QueueDef, SledStore, StoreError, StoredMessages,
    StoredQueue, TopologyStore,
};

/// What a start rebuilt.
#[derive(Debug)]
pub(super) struct Recovery {
    pub(super) views: HashMap<u64, QueueView>,
    pub(super) groups: HashMap<u64, GroupView>,
    /// Groups whose copy here was found damaged (see `load_groups`).
    pub(super) damaged: HashSet<u64>,
    pub(super) small: Small,
    pub(super) files: Files,
    pub(super) summary: StoredMessages,
}

/// One live queue being recovered.
#[derive(Debug)]
struct Rec {
    view: QueueView,
    files: QueueFiles,
    /// What the write-ahead files settle (read before the segments, so
    /// that each entry is counted once, as it stands in the end).
    wal: WalSettled,
    /// Settlements found by recovery itself (volatile copies, acks from
    /// the write-ahead files), to append to the ack files.
    acks: HashMap<u64, Vec<u64>>,
    /// Live copies: count, body bytes, smallest and largest seq.
    count: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    /// A stream's live copies, `(seq, body length, publish time)`, for its
    /// retention segments (`None` for other queues).
    stream: Option<Vec<(u64, u64, u64)>>,
}

impl Rec {
    fn new(dir: &Path, next: u64, wal: WalSettled, stream: bool) -> Rec {
        Rec {
            view: QueueView::empty(next),
            files: QueueFiles::new(dir.to_owned()),
            wal,
            acks: HashMap::new(),
            count: 0,
            bytes: 0,
            first_seq: u64::MAX,
            last_seq: 0,
            stream: stream.then(Vec::new),
        }
    }

    /// Adds an entry read back (from a segment or the write-ahead file) to
    /// the active segment's view; `acked` when its ack file settles it.
    fn push(
        &mut self,
        index: u64,
        body: &[u8],
        acked: bool,
        max_body_id: &mut u64,
    ) -> Result<IndexEntry, StoreError> {
        let e = index_entry(body)?;
        self.push_indexed(index, &e, body.len(), acked, max_body_id)?;
        Ok(e)
    }

    /// [`Rec::push`] of an entry known by its index record; `size` is its
    /// body's size in the segment (for when to roll).
    fn push_indexed(
        &mut self,
        index: u64,
        e: &IndexEntry,
        size: usize,
        acked: bool,
        max_body_id: &mut u64,
    ) -> Result<(), StoreError> {
        let (seq, len) = (e.seq, u64::from(e.len));
        *max_body_id = (*max_body_id).max(e.body_id);
        let Some(seg) = self.view.segs.last_mut() else {
            return Err(StoreError::Corrupt(format!(
                "entry {index} outside any segment"
            )));
        };
        if seg.end() != index {
            return Err(StoreError::Corrupt(format!(
                "entry {index} where {} was due",
                seg.end()
            )));
        }
        let first = seg.first;
        if self.view.append(seq, size) != Some(index) {
            return Err(StoreError::Corrupt(format!(
                "entry {index} where {} was due",
                self.view.next_index
            )));
        }
        let Some(seg) = self.view.segs.last_mut() else {
            return Err(StoreError::Corrupt(format!(
                "entry {index} outside any segment"
            )));
        };
        if acked {
            seg.settle((index - first) as usize);
        } else if e.volatile || self.wal.settles(index, seq) {
            // A volatile copy was written only to save RAM: it does not
            // survive a restart. Either way the ack file is told.
            seg.settle((index - first) as usize);
            self.acks.entry(first).or_default().push(index);
        } else {
            self.count += 1;
            self.bytes += len;
            self.first_seq = self.first_seq.min(seq);
            self.last_seq = self.last_seq.max(seq);
            if let Some(s) = &mut self.stream {
                s.push((seq, len, e.published_at));
            }
        }
        Ok(())
    }
}

/// Reads queue `q`'s directory: its segments (the last checked against
/// `mark`) and ack files.
fn load_queue(
    dir: &Path,
    mark: u64,
    rec: &mut Rec,
    max_body_id: &mut u64,
) -> Result<(), StoreError> {
    let mut segs = Vec::new();
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::io(dir, e).into()),
    };
    for e in listing {
        let e = e.map_err(|e| LogError::io(dir, e))?;
        let name = e.file_name();
        match parse_file_name(&name.to_string_lossy()) {
            Some((first, FileKind::Segment)) => segs.push(first),
            Some((_, FileKind::Acks | FileKind::Index)) => {}
            _ => {
                tracing::warn!(file = %e.path().display(), "removed a stray file from a queue's log");
                std::fs::remove_file(e.path()).map_err(|err| LogError::io(&e.path(), err))?;
            }
        }
    }
    segs.sort_unstable();
    let last = segs.last().copied();
    for first in segs {
        let path = dir.join(super::super::log::segment_file_name(first));
        if first < rec.view.next_index && rec.view.segs.last().is_some() {
            return Err(LogError::corrupt(&path, 0, "overlaps the segment before it").into());
        }
        rec.view.segs.push(SegView::new(first, 0));
        rec.view.next_index = first;
        let active = Some(first) == last;
        let acks = read_acks(&dir.join(ack_file_name(first)))?;
        let index_path = dir.join(index_file_name(first));
        if !active && from_index(&path, &index_path, &acks.set, rec, max_body_id)? {
            continue;
        }
        let (mut reader, valid_len, sealed) = if active {
            let s = scan(&path, CommitMark { end: mark }, SegmentRole::Active)?;
            if let Some((offset, bytes)) = s.torn {
                tracing::warn!(
                    file = %path.display(), offset, bytes,
                    "cut the torn tail of a segment (a write never confirmed); \
                     the write-ahead file restores what it held"
                );
            }
            let reader = SegmentReader::open_until(&path, s.valid_len)?;
            if !s.sealed {
                rec.files.writer = Some(SegmentWriter::open_append(&path, &s)?);
            }
            (reader, s.valid_len, s.sealed)
        } else {
            let reader = SegmentReader::open(&path)?;
            let len = std::fs::metadata(&path)
                .map_err(|e| LogError::io(&path, e))?
                .len();
            (reader, len, true)
        };
        // Read through: the index is written again from what was read.
        let mut index = Vec::new();
        while let Some(e) = reader.next_entry()? {
            index.push(rec.push(e.index, e.body, acks.set.contains(e.index), max_body_id)?);
        }
        let mut writer = IndexWriter::create(&index_path)?;
        writer.append(&index)?;
        if active && !sealed {
            rec.files.index = Some(writer);
        }
        if !active && !reader.sealed() {
            return Err(LogError::corrupt(
                &path,
                valid_len,
                "a segment with a successor has no footer",
            )
            .into());
        }
        if let Some(seg) = rec.view.segs.last_mut() {
            seg.on_disk = seg.seqs.len() as u64;
            seg.file_len = valid_len;
            seg.bytes = if sealed {
                SEGMENT_BYTES.max(valid_len)
            } else {
                valid_len
            };
            if seg.seqs.is_empty() {
                rec.view.next_index = first;
            }
        }
    }
    Ok(())
}

/// Reads sealed segment `path` by its footer and its index file instead of
/// its entries: false (nothing done) when the index is missing, damaged or
/// does not count what the footer does (the caller reads the segment).
fn from_index(
    path: &Path,
    index_path: &Path,
    acked: &AckSet,
    rec: &mut Rec,
    max_body_id: &mut u64,
) -> Result<bool, StoreError> {
    let Some(index) = read_index(index_path) else {
        return Ok(false);
    };
    let seal = read_seal(path)?;
    if index.len() as u64 != seal.count {
        return Ok(false);
    }
    let len = std::fs::metadata(path)
        .map_err(|e| LogError::io(path, e))?
        .len();
    let avg = usize::try_from(len / seal.count.max(1)).unwrap_or(0);
    for (at, e) in (seal.first..).zip(&index) {
        rec.push_indexed(at, e, avg, acked.contains(at), max_body_id)?;
    }
    if let Some(seg) = rec.view.segs.last_mut() {
        seg.on_disk = seg.seqs.len() as u64;
        seg.file_len = len;
        seg.bytes = SEGMENT_BYTES.max(len);
    }
    Ok(true)
}

/// What the write-ahead files settle of one queue.
#[derive(Debug, Default)]
struct WalSettled {
    /// Indexes acked one by one.
    acks: HashSet<u64>,
    /// Ranges removed: `(from, to, below)`, see `ops`' RANGE.
    ranges: Vec<(u64, u64, u64)>,
}

impl WalSettled {
    /// Whether the entry at `index`, with sequence number `seq`, is settled.
    fn settles(&self, index: u64, seq: u64) -> bool {
        self.acks.contains(&index)
            || self
                .ranges
                .iter()
                .any(|&(from, to, below)| index < below && (from..to).contains(&seq))
    }
}

/// What the write-ahead files `gens` settle of each queue's entries
/// (first pass of their replay).
fn wal_settled(wal_dir: &Path, gens: &[u64]) -> Result<HashMap<u64, WalSettled>, StoreError> {
    let mut out: HashMap<u64, WalSettled> = HashMap::new();
    for &g in gens {
        let path = wal_dir.join(super::super::log::wal_file_name(g));
        replay(&path, |queue, entry| {
            if queue == ops::CONTROL {
                let ops = ops::decode(entry.body).map_err(|e| {
                    LogError::corrupt(&path, 0, format!("control entry {}: {e}", entry.index))
                })?;
                for op in ops {
                    match op {
                        Op::Acks { queue, indexes } => {
                            out.entry(queue).or_default().acks.extend(indexes)
                        }
                        Op::Range {
                            queue,
                            from,
                            to,
                            below,
                        } => out.entry(queue).or_default().ranges.push((from, to, below)),
                        Op::Drop { queue } => {
                            out.remove(&queue);
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Rebuilds the log of the live queues `queues` under `root` (see the
/// module doc of the store).
pub(super) fn recover(
    root: &Path,
    side: &Side,
    queues: &[QueueDef],
) -> Result<Recovery, StoreError> {
    let wal_dir = root.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(|e| LogError::io(&wal_dir, e))?;
    let live: HashMap<u64, &QueueDef> = queues.iter().map(|q| (q.id, q)).collect();
    let marks = side.marks()?;
    let mut small = side.load()?;
    // Directories of queues deleted before the stop.
    for e in std::fs::read_dir(root).map_err(|e| LogError::io(root, e))? {
        let e = e.map_err(|e| LogError::io(root, e))?;
        let name = e.file_name();
        let Ok(q) = name.to_string_lossy().parse::<u64>() else {
            continue;
        };
        if !live.contains_key(&q) {
            std::fs::remove_dir_all(e.path()).map_err(|err| LogError::io(&e.path(), err))?;
        }
    }
    for q in side.queues()? {
        if !live.contains_key(&q) {
            side.forget_queue(q)?;
        }
    }
    small.dedup.retain(|k, _| live.contains_key(&k.0));
    small.offsets.retain(|k, _| live.contains_key(&k.0));
    small.rewrites.retain(|k, _| live.contains_key(&k.0));
    // The write-ahead files, oldest first.
    let mut gens: Vec<u64> = Vec::new();
    for e in std::fs::read_dir(&wal_dir).map_err(|e| LogError::io(&wal_dir, e))? {
        let e = e.map_err(|e| LogError::io(&wal_dir, e))?;
        match parse_file_name(&e.file_name().to_string_lossy()) {
            Some((g, FileKind::Wal)) => gens.push(g),
            _ => std::fs::remove_file(e.path()).map_err(|err| LogError::io(&e.path(), err))?,
        }
    }
    gens.sort_unstable();
    let mut settled = wal_settled(&wal_dir, &gens)?;
    let (mut groups, damaged) = load_groups(root)?;
    // A damaged group's operations are all skipped: it starts over empty
    // (its placeholder, blank, goes below).
    for g in &damaged {
        groups.insert(*g, GroupView::covering_everything());
    }
    let mut max_body_id = 0;
    let mut recs: HashMap<u64, Rec> = HashMap::new();
    for (&q, def) in &live {
        let mark = marks.get(&q).copied().unwrap_or(0);
        let dir = root.join(q.to_string());
        let acks = settled.remove(&q).unwrap_or_default();
        let mut rec = Rec::new(&dir, mark.max(1), acks, def.args.mode.is_stream());
        load_queue(&dir, mark, &mut rec, &mut max_body_id)?;
        recs.insert(q, rec);
    }
    for &g in &gens {
        let path = wal_dir.join(super::super::log::wal_file_name(g));
        let mut failure: Option<StoreError> = None;
        let result = replay(&path, |queue, entry| {
            let r = replay_entry(
                &mut recs,
                &mut small,
                &mut groups,
                (g, entry.index),
                queue,
                entry.body,
                &mut max_body_id,
            );
            if let Err(e) = r {
                failure = Some(e);
                return Err(LogError::corrupt(&path, 0, "replay stopped"));
            }
            Ok(())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let done = result?;
        if let (Some(bytes), false) = (done.torn, done.zeros) {
            tracing::warn!(file = %path.display(), bytes, "ignored the torn last round of a write-ahead file (never confirmed)");
        }
    }
    // Acks found by recovery, fully settled segments, and the summary.
    let mut views = HashMap::new();
    let mut queue_files = HashMap::new();
    let mut summary = StoredMessages::default();
    let mut ids: Vec<u64> = recs.keys().copied().collect();
    ids.sort_unstable();
    for q in ids {
        let Some(mut rec) = recs.remove(&q) else {
            continue;
        };
        let active = rec.view.segs.last().map(|s| s.first);
        let mut doomed = Vec::new();
        rec.view.segs.retain(|s| {
            let gone = s.live == 0 && Some(s.first) != active;
            if gone {
                doomed.push(s.first);
            }
            !gone
        });
        for (first, indexes) in std::mem::take(&mut rec.acks) {
            if !doomed.contains(&first) {
                rec.files.ack(first, &indexes)?;
            }
        }
        for first in doomed {
            rec.files.unlink(first)?;
        }
        if let Some(def) = live.get(&q) {
            if let Some(stored) = summarize(q, &mut rec, def) {
                summary.stored.push(stored);
            }
        }
        views.insert(q, rec.view);
        queue_files.insert(q, rec.files);
    }
    let now = now_ms();
    summary.dedup = small
        .dedup
        .iter()
        .filter(|(_, exp)| **exp > now)
        .map(|((q, id), exp)| dedup_entry(*q, id, *exp))
        .collect();
    summary
        .dedup
        .sort_by(|a, b| (a.queue_id, &a.id).cmp(&(b.queue_id, &b.id)));
    let expired: Vec<(u64, String)> = small
        .dedup
        .iter()
        .filter(|(_, exp)| **exp <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for (q, id) in expired {
        small.undedup(q, &id);
    }
    summary.offsets = small
        .offsets
        .iter()
        .map(|((q, g), o)| (*q, g.clone(), *o))
        .collect();
    summary.offsets.sort();
    summary.max_body_id = max_body_id;
    // The checkpoint: a new write-ahead file, everything synced, the small
    // state and marks in sled (the caller syncs sled, then deletes the old
    // write-ahead files).
    let generation = gens.last().map_or(1, |g| g + 1);
    let wal = WalWriter::create(&wal_dir, generation)?;
    sync_dir(&wal_dir)?;
    let mut files = Files {
        root: root.to_owned(),
        wal_dir,
        wal,
        old_wals: gens,
        queues: queue_files,
        touched: HashSet::new(),
    };
    let mut marks = Vec::new();
    for (q, f) in files.queues.iter_mut() {
        marks.push((*q, f.sync()?));
    }
    sync_dir(root)?;
    // Each group changed by the replay gets a file of its own again (so
    // the older write-ahead files can go); a group left with nothing goes.
    groups.retain(|_, v| !v.is_blank());
    for g in files.group_files()? {
        if !groups.contains_key(&g) {
            files.remove_group_files(g, None)?;
        }
    }
    for (g, view) in groups.iter_mut() {
        if let Some(snap) = view.snapshot(*g, (generation, 0)) {
            let (file, placed) = files.write_group(&snap)?;
            view.file_written(file, &placed);
            files.remove_group_files(*g, Some(file))?;
        }
    }
    side.write(&small.snapshot(), &marks)?;
    Ok(Recovery {
        views,
        groups,
        damaged,
        small,
        files,
        summary,
    })
}

/// Replays one write-ahead entry.
fn replay_entry(
    recs: &mut HashMap<u64, Rec>,
    small: &mut Small,
    groups: &mut HashMap<u64, GroupView>,
    at: groups::Through,
    queue: u64,
    body: &[u8],
    max_body_id: &mut u64,
) -> Result<(), StoreError> {
    let index = at.1;
    if queue == ops::CONTROL {
        let ops = ops::decode(body)
            .map_err(|e| StoreError::Corrupt(format!("control entry {index}: {e}")))?;
        for op in ops {
            if groups::replay(groups, at, &op)? {
                continue;
            }
            match op {
                Op::Acks { queue, indexes } => {
                    // Settled when read (see `wal_acks`); a rewrite of a
                    // settled copy goes.
                    if let Some(rec) = recs.get(&queue) {
                        for i in indexes {
                            if let Some(seq) = rec
                                .view
                                .seg_of(i)
                                .and_then(|s| s.seqs.get((i - s.first) as usize))
                            {
                                small.unrewrite(queue, seq);
                            }
                        }
                    }
                }
                Op::Rewrite { queue, seq, meta } => {
                    if recs.contains_key(&queue) {
                        small.rewrite(queue, seq, meta.to_vec());
                    }
                }
                Op::Dedup {
                    queue,
                    expires_at,
                    id,
                } => {
                    if recs.contains_key(&queue) {
                        small.dedup(queue, id, expires_at);
                    }
                }
                Op::Undedup { queue, id } => small.undedup(queue, id),
                Op::Offset {
                    queue,
                    offset,
                    group,
                } => {
                    if recs.contains_key(&queue) {
                        small.offset(queue, group, offset);
                    }
                }
                Op::Drop { queue } => small.drop_queue(queue),
                // Settled when read (see `wal_settled`).
                Op::Range {
                    queue, from, to, ..
                } => small.unrewrite_range(queue, from, to),
                // Replayed above.
                Op::GroupAppend { .. }
                | Op::GroupTruncate { .. }
                | Op::GroupPurge { .. }
                | Op::GroupVote { .. }
                | Op::GroupDrop { .. } => {}
            }
        }
        return Ok(());
    }
    let Some(rec) = recs.get_mut(&queue) else {
        return Ok(());
    };
    if index < rec.view.next_index {
        return Ok(());
    }
    if index > rec.view.next_index && rec.view.segs.last().is_some() {
        return Err(StoreError::Corrupt(format!(
            "queue {queue}: the write-ahead file holds entry {index} but its log ends before {}",
            rec.view.next_index
        )));
    }
    let need_segment = rec.files.writer.is_none()
        || rec
            .view
            .segs
            .last()
            .is_none_or(|s| s.bytes >= SEGMENT_BYTES);
    if need_segment {
        rec.files.roll(index)?;
        rec.view.segs.push(SegView::new(
            index,
            super::super::log::header::HEADER_LEN as u64,
        ));
        // A queue with no segment yet starts where its first entry does.
        rec.view.next_index = index;
    }
    rec.files.append(&[Entry {
        index,
        term: 0,
        body,
    }])?;
    let Some(w) = rec.files.writer.as_ref() else {
        return Err(StoreError::Io(format!("queue {queue}: no active segment")));
    };
    let (count, len) = (w.count(), w.len());
    rec.push(index, body, false, max_body_id)?;
    if let Some(seg) = rec.view.segs.last_mut() {
        seg.on_disk = count;
        seg.file_len = len;
    }
    Ok(())
}

/// A queue's stored copies summed up for the broker (`None`: none live).
fn summarize(q: u64, rec: &mut Rec, def: &QueueDef) -> Option<StoredQueue> {
    if rec.count == 0 {
        return None;
    }
    let mut segments = VecDeque::new();
    if let Some(mut live) = rec.stream.take() {
        live.sort_unstable();
        for (seq, len, ts) in live {
            add_to_segments(&mut segments, &def.args, seq, len, ts);
        }
    }
    Some(StoredQueue {
        queue_id: q,
        first_seq: rec.first_seq,
        last_seq: rec.last_seq,
        count: rec.count,
        bytes: rec.bytes,
        segments: segments.into(),
    })
}

/// Moves the messages of a data directory written by a release that kept
/// them in sled into the log at `root`, if there are any and the log does
/// not exist yet.
///
/// Crash-safe at every step: the log is built in `log.migrating/` (removed
/// first if a killed migration left it), fsync'd, and renamed to `log/`;
/// the rename is the commit point. Only after it are the messages removed
/// from sled, and a start that finds `log/` beside messages still in sled
/// finishes that removal. Bodies shared by several queues get a copy in
/// each queue's log.
pub(super) fn migrate_from_sled(
    sled: &SledStore,
    side: &Side,
    dir: &Path,
    root: &Path,
) -> Result<(), StoreError> {
    if root.exists() {
        if sled.has_messages()? {
            sled.clear_messages()?;
            Durable::sync(sled)?;
        }
        return Ok(());
    }
    if !sled.has_messages()? {
        std::fs::create_dir_all(root).map_err(|e| LogError::io(root, e))?;
        sync_dir(dir)?;
        return Ok(());
    }
    let tmp = dir.join("log.migrating");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(tmp.join("wal")).map_err(|e| LogError::io(&tmp, e))?;
    let queues = sled.topology()?.queues;
    let clean = sled.was_clean()?;
    let old = MessageStore::recover(sled, &queues)?;
    MessageStore::set_clean(sled, clean)?;
    let started = std::time::Instant::now();
    let mut copies = 0u64;
    let mut marks = Vec::new();
    for stored in &old.stored {
        let q = stored.queue_id;
        let mut files = QueueFiles::new(tmp.join(q.to_string()));
        let mut next = 1u64;
        let mut size = SEGMENT_BYTES;
        let mut from = stored.first_seq;
        loop {
            let page = sled.load(q, from, u64::MAX, 4096)?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for m in &page {
                let body = super::encode_entry(m.seq, &m.meta, &m.body);
                if size >= SEGMENT_BYTES {
                    files.roll(next)?;
                    size = super::super::log::header::HEADER_LEN as u64;
                }
                files.append(&[Entry {
                    index: next,
                    term: 0,
                    body: &body,
                }])?;
                size = files.writer.as_ref().map_or(size, SegmentWriter::len);
                next += 1;
                copies += 1;
            }
        }
        marks.push((q, files.sync()?));
    }
    let mut small = Small::default();
    for d in &old.dedup {
        small.dedup(d.queue_id, &d.id, d.expires_at);
    }
    for (q, g, o) in &old.offsets {
        small.offset(*q, g, *o);
    }
    side.write(&small.snapshot(), &marks)?;
    Durable::sync(sled)?;
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, root).map_err(|e| LogError::io(root, e))?;
    sync_dir(dir)?;
    tracing::info!(
        copies,
        queues = old.stored.len(),
        ms = started.elapsed().as_millis() as u64,
        "moved the stored messages from sled into the message log"
    );
    sled.clear_messages()?;
    Durable::sync(sled)?;
    Ok(())
}
