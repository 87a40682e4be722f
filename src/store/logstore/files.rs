//! The log store's files: [`Files`] owns every writer (the write-ahead
//! file, each queue's active segment and ack files) and is used by one
//! sync at a time; [`ReadPlan`] reads copies back for a load, out of the
//! store's lock.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::super::log::acks::AckWriter;
use super::super::log::chunks::READ_CHUNK;
use super::super::log::group::{
    group_file_name, parse_group_file_name, read_group_entry, read_group_file, write_group_file,
};
use super::super::log::header::HEADER_LEN;
use super::super::log::index::IndexWriter;
use super::super::log::record::Entry;
use super::super::log::segment::{SegmentReader, SegmentWriter};
use super::super::log::wal::WalWriter;
use super::super::log::{
    ack_file_name, index_file_name, segment_file_name, sync_dir, wal_file_name, LogError,
};
use super::groups::{GroupEntry, GroupSnapshot, GroupView, Loc};
use super::side::{Side, Small, Snapshot};
use super::view::{Cursor, QueueView};
use super::{decode_copy, index_entry, Round, WAL_ROTATE};
use crate::store::{RecoveredMessage, StoreError};

/// A queue's open files.
#[derive(Debug)]
pub(super) struct QueueFiles {
    pub(super) dir: PathBuf,
    /// The active segment.
    pub(super) writer: Option<SegmentWriter>,
    /// Its index file.
    pub(super) index: Option<IndexWriter>,
    /// Ack files written since the last checkpoint, by segment.
    pub(super) acks: HashMap<u64, AckWriter>,
    /// A file was created or removed since the last checkpoint.
    pub(super) dir_dirty: bool,
}

impl QueueFiles {
    pub(super) fn new(dir: PathBuf) -> QueueFiles {
        QueueFiles {
            dir,
            writer: None,
            index: None,
            acks: HashMap::new(),
            dir_dirty: false,
        }
    }

    /// Appends acks to segment `first`'s ack file (opened, or created,
    /// the first time since the last checkpoint).
    pub(super) fn ack(&mut self, first: u64, indexes: &[u64]) -> Result<(), LogError> {
        let writer = match self.acks.entry(first) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                self.dir_dirty = true;
                v.insert(AckWriter::open(&self.dir.join(ack_file_name(first)))?)
            }
        };
        writer.append(indexes)
    }

    /// Starts the segment `first` (sealing the active one, if it has
    /// entries).
    pub(super) fn roll(&mut self, first: u64) -> Result<(), LogError> {
        if let Some(w) = self.writer.take() {
            if w.count() > 0 {
                w.seal()?;
            } else {
                let path = w.path().to_owned();
                drop(w);
                remove(&path)?;
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| LogError::io(&self.dir, e))?;
        self.writer = Some(SegmentWriter::create(
            &self.dir.join(segment_file_name(first)),
        )?);
        self.index = Some(IndexWriter::create(&self.dir.join(index_file_name(first)))?);
        self.dir_dirty = true;
        Ok(())
    }

    /// Appends entries to the active segment and their index.
    pub(super) fn append(&mut self, entries: &[Entry<'_>]) -> Result<(), StoreError> {
        let Some(w) = self.writer.as_mut() else {
            return Err(StoreError::Io(format!(
                "{}: no active segment",
                self.dir.display()
            )));
        };
        w.append(entries)?;
        if let Some(index) = self.index.as_mut() {
            let idx = entries
                .iter()
                .map(|e| index_entry(e.body))
                .collect::<Result<Vec<_>, _>>()?;
            index.append(&idx)?;
        }
        Ok(())
    }

    /// Removes segment `first` and its ack file.
    pub(super) fn unlink(&mut self, first: u64) -> Result<(), LogError> {
        self.acks.remove(&first);
        remove(&self.dir.join(segment_file_name(first)))?;
        remove(&self.dir.join(ack_file_name(first)))?;
        remove(&self.dir.join(index_file_name(first)))?;
        self.dir_dirty = true;
        Ok(())
    }

    /// fdatasyncs what was written since the last checkpoint; returns the
    /// commit mark (one past the last index synced).
    pub(super) fn sync(&mut self) -> Result<u64, LogError> {
        for a in self.acks.values_mut() {
            a.sync()?;
        }
        self.acks.clear();
        if let Some(index) = self.index.as_mut() {
            index.sync()?;
        }
        let mark = match &mut self.writer {
            Some(w) => {
                w.sync()?;
                w.next_index()
            }
            None => 0,
        };
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(mark)
    }
}

/// Removes `path`; one already gone is fine.
fn remove(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(path, e)),
    }
}

/// What a round's write left in one queue's active segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Landed {
    pub(super) queue: u64,
    /// The segment's first index.
    pub(super) segment: u64,
    /// Entries and bytes in its file now.
    pub(super) on_disk: u64,
    pub(super) file_len: u64,
    /// The last index written.
    pub(super) last: u64,
}

/// A read cursor that moved: where the read started, where it stopped.
pub(super) type CursorMove = (Cursor, Cursor);

/// One segment a load reads from.
#[derive(Debug)]
struct SegRead {
    first: u64,
    path: PathBuf,
    /// Bytes readable.
    len: u64,
    /// Where to start: (byte offset, index).
    start: (u64, u64),
    /// The segment's average entry size, to size the reads.
    avg: u64,
    /// The indexes wanted, ascending.
    indexes: Vec<u64>,
}

/// Where the files a round writes ended before it (see
/// [`Files::round_start`]).
#[derive(Debug)]
pub(super) struct RoundStart {
    wal: u64,
    segments: Vec<(PathBuf, u64)>,
}

/// Every writer of the log.
#[derive(Debug)]
pub(super) struct Files {
    pub(super) root: PathBuf,
    pub(super) wal_dir: PathBuf,
    pub(super) wal: WalWriter,
    /// Write-ahead generations older than `wal`'s, not yet deleted.
    pub(super) old_wals: Vec<u64>,
    pub(super) queues: HashMap<u64, QueueFiles>,
    /// Queues written since the last checkpoint.
    pub(super) touched: HashSet<u64>,
}

impl Files {
    pub(super) fn checkpoint_due(&self) -> bool {
        self.wal.len() >= WAL_ROTATE
    }

    fn queue(&mut self, q: u64) -> &mut QueueFiles {
        let root = &self.root;
        self.queues
            .entry(q)
            .or_insert_with(|| QueueFiles::new(root.join(q.to_string())))
    }

    /// Writes the round's entries to the write-ahead file and makes them
    /// durable.
    pub(super) fn write_ahead(&mut self, round: &Round) -> Result<(), StoreError> {
        if round.entries.is_empty() {
            return Ok(());
        }
        let entries: Vec<(u64, Entry<'_>)> = round
            .entries
            .iter()
            .map(|(q, index, body)| {
                (
                    *q,
                    Entry {
                        index: *index,
                        term: 0,
                        body,
                    },
                )
            })
            .collect();
        self.wal.append_round(&entries)?;
        self.wal.sync()?;
        Ok(())
    }

    /// Where the files a round writes end before it: the write-ahead
    /// file's length and each written queue's active segment's, for
    /// [`Files::take_back`].
    pub(super) fn round_start(&self, round: &Round) -> RoundStart {
        let mut segments = Vec::new();
        let mut seen = HashSet::new();
        let queues = round
            .entries
            .iter()
            .map(|e| e.0)
            .chain(round.rolls.iter().map(|r| r.0));
        for q in queues {
            if q == super::ops::CONTROL || !seen.insert(q) {
                continue;
            }
            if let Some(w) = self.queues.get(&q).and_then(|f| f.writer.as_ref()) {
                segments.push((w.path().to_owned(), w.len()));
            }
        }
        RoundStart {
            wal: self.wal.len(),
            segments,
        }
    }

    /// The segments could not take a durable round (a full disk): it was
    /// never confirmed, so it is taken back from every file it reached,
    /// the segments first, then the write-ahead file. A start then finds
    /// the log as it was before the round (needing no room to replay it),
    /// and a fan-out is all or nothing still.
    pub(super) fn take_back(
        &mut self,
        round: &Round,
        start: &RoundStart,
    ) -> Result<(), StoreError> {
        for &(q, first) in &round.rolls {
            let dir = self.root.join(q.to_string());
            remove(&dir.join(segment_file_name(first)))?;
            remove(&dir.join(index_file_name(first)))?;
        }
        for (path, len) in &start.segments {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| LogError::io(path, e))?;
            file.set_len(*len)
                .and_then(|()| file.sync_data())
                .map_err(|e| LogError::io(path, e))?;
        }
        self.wal.take_back(start.wal)?;
        Ok(())
    }

    /// Writes a durable round to the segments and ack files (no sync):
    /// returns what landed per queue for [`super::State::landed`].
    pub(super) fn write_round(&mut self, round: &Round) -> Result<Vec<Landed>, StoreError> {
        let mut landed = Vec::new();
        for &(q, first) in &round.rolls {
            self.queue(q).roll(first)?;
        }
        let mut at = 0;
        while at < round.entries.len() {
            let q = round.entries[at].0;
            let n = round.entries[at..].iter().take_while(|e| e.0 == q).count();
            let group = &round.entries[at..at + n];
            at += n;
            if q == super::ops::CONTROL {
                continue;
            }
            let entries: Vec<Entry<'_>> = group
                .iter()
                .map(|(_, index, body)| Entry {
                    index: *index,
                    term: 0,
                    body,
                })
                .collect();
            self.touched.insert(q);
            let files = self.queue(q);
            files.append(&entries)?;
            let Some(w) = files.writer.as_ref() else {
                return Err(StoreError::Io(format!("queue {q}: no active segment")));
            };
            let last = group.last().map_or(0, |e| e.1);
            landed.push(Landed {
                queue: q,
                segment: w.first(),
                on_disk: w.count(),
                file_len: w.len(),
                last,
            });
        }
        let mut acks: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
        for &(q, first, index) in &round.acks {
            acks.entry((q, first)).or_default().push(index);
        }
        for ((q, first), indexes) in acks {
            if round.doomed.contains(&(q, first)) || round.dropped.contains(&q) {
                continue;
            }
            self.touched.insert(q);
            self.queue(q).ack(first, &indexes)?;
        }
        for &(q, first) in &round.doomed {
            self.touched.insert(q);
            self.queue(q).unlink(first)?;
        }
        for q in &round.dropped {
            self.queues.remove(q);
            self.touched.remove(q);
            let dir = self.root.join(q.to_string());
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(LogError::io(&dir, e).into());
                }
            }
        }
        Ok(landed)
    }

    /// Starts a new write-ahead file and makes everything the older ones
    /// hold durable elsewhere: segments and ack files synced, the small
    /// state and commit marks written to sled (the caller syncs sled, then
    /// calls [`Files::retire_old`]).
    pub(super) fn checkpoint(&mut self, side: &Side, snapshot: Snapshot) -> Result<(), StoreError> {
        let next = self.wal.generation() + 1;
        let wal = WalWriter::create(&self.wal_dir, next)?;
        sync_dir(&self.wal_dir)?;
        let old = std::mem::replace(&mut self.wal, wal);
        self.old_wals.push(old.generation());
        let mut marks = Vec::new();
        for q in std::mem::take(&mut self.touched) {
            if let Some(files) = self.queues.get_mut(&q) {
                marks.push((q, files.sync()?));
            }
        }
        sync_dir(&self.root)?;
        side.write(&snapshot, &marks)?;
        Ok(())
    }

    /// Deletes the write-ahead files a checkpoint made redundant.
    pub(super) fn retire_old(&mut self) -> Result<(), StoreError> {
        for g in std::mem::take(&mut self.old_wals) {
            remove(&self.wal_dir.join(wal_file_name(g)))?;
        }
        sync_dir(&self.wal_dir)?;
        Ok(())
    }

    /// Writes a group's file from a checkpoint's snapshot (the entries
    /// not in RAM read from its current file): returns the new file's
    /// generation and where its entries are.
    pub(super) fn write_group(
        &mut self,
        snap: &GroupSnapshot,
    ) -> Result<(u64, Vec<super::super::log::group::Placed>), StoreError> {
        let dir = groups_dir(&self.root);
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        let old = match snap.file {
            Some(f) => {
                let path = dir.join(group_file_name(snap.group, f));
                let file = std::fs::File::open(&path).map_err(|e| LogError::io(&path, e))?;
                Some((file, path))
            }
            None => None,
        };
        let generation = snap.file.map_or(1, |f| f + 1);
        let entries = snap.entries.iter().map(|(index, term, loc)| match loc {
            Loc::Mem(b) => Ok((*index, *term, b.clone())),
            Loc::File(p) => match &old {
                Some((file, path)) => read_group_entry(file, path, p).map(|(t, b)| (*index, t, b)),
                None => Err(LogError::corrupt(&dir, 0, "a group entry without its file")),
            },
        });
        let placed = write_group_file(&dir, snap.group, generation, &snap.head, entries)?;
        Ok((generation, placed))
    }

    /// The groups that have files.
    pub(super) fn group_files(&self) -> Result<HashSet<u64>, StoreError> {
        let dir = groups_dir(&self.root);
        let mut out = HashSet::new();
        match std::fs::read_dir(&dir) {
            Ok(listing) => {
                for e in listing {
                    let e = e.map_err(|e| LogError::io(&dir, e))?;
                    if let Some((g, _)) = parse_group_file_name(&e.file_name().to_string_lossy()) {
                        out.insert(g);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(&dir, e).into()),
        }
        Ok(out)
    }

    /// Removes group `g`'s files but generation `keep`.
    pub(super) fn remove_group_files(
        &mut self,
        g: u64,
        keep: Option<u64>,
    ) -> Result<(), StoreError> {
        let dir = groups_dir(&self.root);
        let listing = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::io(&dir, e).into()),
        };
        let mut removed = false;
        for e in listing {
            let e = e.map_err(|e| LogError::io(&dir, e))?;
            if let Some((group, generation)) =
                parse_group_file_name(&e.file_name().to_string_lossy())
            {
                if group == g && Some(generation) != keep {
                    remove(&e.path())?;
                    removed = true;
                }
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Bytes the log's files take.
    pub(super) fn size_on_disk(&self) -> u64 {
        dir_size(&self.root)
    }
}

/// Reads every group's newest file under `root` (older generations and
/// temporary files left by a crash are deleted): the groups as of their
/// last checkpoint, and the groups whose copy here is damaged: a file
/// that does not read back whole (a flipped bit, a truncation) is set
/// aside, and so marks its group damaged until [`forget_damage`]; its
/// group starts empty (the caller skips its operations in the
/// write-ahead files too).
pub(super) fn load_groups(
    root: &Path,
) -> Result<(HashMap<u64, GroupView>, HashSet<u64>), StoreError> {
    let dir = groups_dir(root);
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((HashMap::new(), HashSet::new()))
        }
        Err(e) => return Err(LogError::io(&dir, e).into()),
    };
    let mut newest: HashMap<u64, u64> = HashMap::new();
    let mut names = Vec::new();
    let mut damaged = HashSet::new();
    for e in listing {
        let e = e.map_err(|e| LogError::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(g) = parse_damaged_name(&name) {
            damaged.insert(g);
            continue;
        }
        match parse_group_file_name(&name) {
            Some((g, generation)) => {
                let n = newest.entry(g).or_insert(generation);
                *n = (*n).max(generation);
                names.push((g, generation, e.path()));
            }
            None => remove(&e.path())?,
        }
    }
    let mut out = HashMap::new();
    for (g, generation, path) in names {
        // A damaged group's files are not read: it starts over, empty.
        if newest.get(&g) != Some(&generation) || damaged.contains(&g) {
            remove(&path)?;
            continue;
        }
        match read_group_file(&path) {
            Ok((head, placed)) => {
                out.insert(g, GroupView::from_file(head, placed, generation));
            }
            Err(e @ LogError::Corrupt { .. }) => {
                tracing::error!(group = g, error = %e, "a consensus group's file is damaged: it is set aside, and the group's copy here is made again from the other members");
                let aside = dir.join(damaged_name(g));
                std::fs::rename(&path, &aside).map_err(|e| LogError::io(&aside, e))?;
                damaged.insert(g);
            }
            Err(e) => return Err(e.into()),
        }
    }
    sync_dir(&dir)?;
    Ok((out, damaged))
}

/// The name of the file a damaged group's file is set aside as: while it
/// is there, the group's copy on this node is damaged (not repaired yet).
fn damaged_name(group: u64) -> String {
    format!("{group:020}.damaged")
}

/// The group of a damaged group's set-aside file name.
fn parse_damaged_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".damaged")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Marks group `group` damaged (an empty set-aside file, when the damage
/// was found elsewhere than in its file: its snapshot).
pub(super) fn mark_damaged(root: &Path, group: u64) -> Result<(), StoreError> {
    let dir = groups_dir(root);
    std::fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
    let path = dir.join(damaged_name(group));
    let file = std::fs::File::create(&path).map_err(|e| LogError::io(&path, e))?;
    file.sync_all().map_err(|e| LogError::io(&path, e))?;
    sync_dir(&dir).map_err(Into::into)
}

/// Forgets that group `group` was damaged (its set-aside file goes).
pub(super) fn forget_damage(root: &Path, group: u64) -> Result<(), StoreError> {
    let dir = groups_dir(root);
    let path = dir.join(damaged_name(group));
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&dir).map_err(Into::into),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(&path, e).into()),
    }
}

/// Where the consensus groups' files are.
pub(super) fn groups_dir(root: &Path) -> PathBuf {
    root.join("groups")
}

/// Reads a group's entries as planned (`file`: the generation the planned
/// places are in); `None` when that file was replaced meanwhile (plan
/// again).
pub(super) fn read_group(
    root: &Path,
    g: u64,
    file: Option<u64>,
    plan: Vec<(u64, u64, Loc)>,
) -> Result<Option<Vec<GroupEntry>>, LogError> {
    let needs_file = plan.iter().any(|(_, _, l)| matches!(l, Loc::File(_)));
    let opened = match (file, needs_file) {
        (Some(f), true) => {
            let path = groups_dir(root).join(group_file_name(g, f));
            match std::fs::File::open(&path) {
                Ok(file) => Some((file, path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(plan.len());
    for (index, term, loc) in plan {
        let payload = match (loc, &opened) {
            (Loc::Mem(b), _) => b,
            (Loc::File(p), Some((file, path))) => read_group_entry(file, path, &p)?.1,
            (Loc::File(p), None) => {
                return Err(LogError::corrupt(
                    root,
                    p.offset,
                    format!("group {g}: entry {index} without its file"),
                ))
            }
        };
        out.push(GroupEntry {
            index,
            term,
            payload,
        });
    }
    Ok(Some(out))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The copies a load returns, and where to read each: everything taken
/// under the store's lock, the files read after it is released.
#[derive(Debug)]
pub(super) struct ReadPlan {
    queue_id: u64,
    /// In sequence order: where each copy is.
    picks: Vec<Pick>,
    /// The segments to read.
    reads: Vec<SegRead>,
    rewrites: HashMap<u64, Vec<u8>>,
}

#[derive(Debug)]
enum Pick {
    /// In RAM (fresh, or in the round being written).
    Ram(Bytes),
    /// In a segment file, at this index.
    File(u64),
}

impl ReadPlan {
    /// Plans reading the first `limit` live copies of `from..to`.
    pub(super) fn new(
        root: &Path,
        queue_id: u64,
        view: &QueueView,
        small: &Small,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<ReadPlan, StoreError> {
        let dir = root.join(queue_id.to_string());
        let mut picks = Vec::new();
        let mut wanted: Vec<(u64, u64)> = Vec::new();
        let mut rewrites = HashMap::new();
        for (seq, at) in view.pick(from, to, limit) {
            if let Some(r) = small.rewrites.get(&(queue_id, seq)) {
                rewrites.insert(seq, r.clone());
            }
            let pick = match at {
                None => match view.fresh(seq) {
                    Some(b) => Pick::Ram(b.clone()),
                    None => continue,
                },
                Some(index) => {
                    let seg = view
                        .seg_of(index)
                        .ok_or_else(|| StoreError::Corrupt(format!("index {index} lost")))?;
                    if index >= seg.first + seg.on_disk {
                        let p = view.inflight.partition_point(|(i, _)| *i < index);
                        match view.inflight.get(p) {
                            Some((i, b)) if *i == index => Pick::Ram(b.clone()),
                            _ => return Err(StoreError::Corrupt(format!("index {index} lost"))),
                        }
                    } else {
                        wanted.push((seg.first, index));
                        Pick::File(index)
                    }
                }
            };
            picks.push(pick);
        }
        wanted.sort_unstable();
        let mut reads: Vec<SegRead> = Vec::new();
        for (first, index) in wanted {
            match reads.last_mut() {
                Some(r) if r.first == first => r.indexes.push(index),
                _ => {
                    let Some(seg) = view.seg_of(index) else {
                        continue;
                    };
                    // The cursor furthest along this segment that is not
                    // past what is wanted (one per reader of the queue).
                    let start = view
                        .cursors
                        .iter()
                        .filter(|(f, _, at)| *f == first && *at <= index)
                        .max_by_key(|(_, _, at)| *at)
                        .map_or((HEADER_LEN as u64, first), |(_, offset, at)| (*offset, *at));
                    let entries = (seg.seqs.len() as u64).max(1);
                    reads.push(SegRead {
                        first,
                        path: dir.join(segment_file_name(first)),
                        len: seg.file_len,
                        start,
                        avg: seg.bytes.saturating_sub(HEADER_LEN as u64) / entries + 1,
                        indexes: vec![index],
                    });
                }
            }
        }
        Ok(ReadPlan {
            queue_id,
            picks,
            reads,
            rewrites,
        })
    }

    /// Reads the copies; returns them and the read cursors where the reads
    /// stopped, each with where it started.
    pub(super) fn read(self) -> Result<(Vec<RecoveredMessage>, Vec<CursorMove>), StoreError> {
        let mut found: HashMap<u64, Bytes> = HashMap::new();
        let mut cursors = Vec::new();
        for SegRead {
            first,
            path,
            len,
            start: (offset, at),
            avg,
            indexes,
        } in &self.reads
        {
            // About the bytes from the start to the last entry wanted, so
            // that a page of a long segment is not read as a whole chunk.
            let last = indexes.last().copied().unwrap_or(*at);
            let span = (last + 1 - at).saturating_mul(*avg).saturating_add(4096);
            let chunk = usize::try_from(span.min(len.saturating_sub(*offset)))
                .map_or(READ_CHUNK, |s| s.clamp(4096, READ_CHUNK));
            let mut r = SegmentReader::open_at(path, *offset, *at, *len, chunk)?;
            let mut want = indexes.iter().peekable();
            while let Some(&&next) = want.peek() {
                let Some(e) = r.next_entry()? else {
                    return Err(LogError::corrupt(
                        path,
                        r.position(),
                        format!("entry {next} missing"),
                    )
                    .into());
                };
                if e.index == next {
                    found.insert(e.index, Bytes::copy_from_slice(e.body));
                    want.next();
                }
            }
            cursors.push((
                (*first, *offset, *at),
                (*first, r.position(), r.next_index()),
            ));
        }
        let mut out = Vec::with_capacity(self.picks.len());
        for pick in self.picks {
            let bytes = match pick {
                Pick::Ram(b) => b,
                Pick::File(i) => found
                    .remove(&i)
                    .ok_or_else(|| StoreError::Corrupt(format!("entry {i} not read")))?,
            };
            let seq = super::split_entry(&bytes)?.0;
            out.push(decode_copy(self.queue_id, &bytes, self.rewrites.get(&seq))?);
        }
        Ok((out, cursors))
    }
}
