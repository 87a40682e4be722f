//! [`LogStore`]: the [`MessageStore`] on the segment log of
//! [`super::log`], with the [`TopologyStore`] and the log's small state on
//! sled (issue 17). One engine to the broker: one [`Durable::sync`] makes
//! both durable.
//!
//! **Where things are.** `<data>/log/<queue id>/` holds each queue's and
//! stream's segments and ack files; `<data>/log/wal/` the node-wide
//! write-ahead files (formats in [`super::log`]). sled keeps the topology,
//! users and, as of the last checkpoint, the log's small state: publisher
//! de-duplication records, stream group offsets, rewritten metadata of
//! requeued copies and each queue's commit mark (trees `log_dedup`,
//! `log_offsets`, `log_rewrites`, `log_marks`; see `side.rs`).
//!
//! **A copy per queue.** Each queue's log holds its own copy of a body
//! fanned out to several queues (measured in `docs/message-log-spike.md`:
//! no slower at 100 B, and a queue's log is what the next issue replicates
//! on its own). An entry's body is `[seq u64 LE]` then the message record
//! of `codec::encode_meta` with the body inline.
//!
//! **A round.** [`MessageStore::apply`] only changes RAM ([`view`]): new
//! copies wait as *fresh* copies of their queue, settlements mark a bit,
//! and everything else (acks, removed ranges, rewrites, de-duplication
//! records, offsets, queue drops) is added to the round's control entry
//! ([`ops`]). A removed range ([`MessageBatch::del_ranges`]: a stream's
//! retention, a purged backlog) settles the sealed segments it covers
//! whole without a look at their entries. The
//! committer's [`Durable::sync`] then takes the round: each queue's fresh
//! copies get consecutive indexes in sequence order, and the round's
//! entries of every queue plus the control entry go to the write-ahead
//! file in one record, one `write` and one `fdatasync`. Only then are they
//! appended to the queues' segments and ack files (`files.rs`), without a
//! sync: a segment never holds what the write-ahead file does not. A copy
//! settled before its round was taken is never written at all.
//!
//! **A checkpoint** (when the write-ahead file passes [`WAL_ROTATE`]
//! bytes): a new write-ahead file is started, every segment and ack file
//! written since the last checkpoint is fdatasync'd, the small state and
//! each queue's commit mark go to sled and are flushed, and the older
//! write-ahead files are deleted.
//!
//! **Consensus groups' logs** (`groups.rs`, for the clusters' Raft
//! groups): appends with terms, truncations, purges and votes go into the
//! round's control entry, in order; a checkpoint writes each changed
//! group's log to a file of its own (format in [`super::log`], "Group
//! file"), which says how far into the write-ahead files it is up to date.
//!
//! **Recovery** (`recover.rs`, at [`LogStore::open`]) reads each live
//! queue's segments (the active one checked against its commit mark) and
//! ack files, replays the write-ahead files still there, settles volatile
//! copies, and ends with a checkpoint, so a start never depends on the
//! write-ahead files of the run before.

mod files;
mod groups;
mod ops;
mod recover;
mod side;
mod view;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use self::files::Files;
pub(crate) use self::groups::{GroupEntry, GroupState};
use self::groups::{GroupSnapshot, GroupView, Through};
use self::side::{Side, Small, Snapshot};
use self::view::{Found, QueueView, SegView};
use super::codec;
use super::log::header::HEADER_LEN;
use super::log::index::IndexEntry;
use super::log::LogError;
use super::{
    BindingDef, DedupEntry, Durable, ExchangeDef, MessageBatch, MessageMeta, MessageStore,
    QueueDef, RecoveredMessage, SledStore, StoreError, StoredMessages, Topology, TopologyStore,
    UserRecord,
};

/// A segment takes entries until it reaches this many bytes; the round
/// after starts the next one.
pub(crate) const SEGMENT_BYTES: u64 = 8 << 20;

/// The write-ahead file is rotated, and a checkpoint made, once it is this
/// large.
pub(crate) const WAL_ROTATE: u64 = 64 << 20;

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Corrupt { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// The message store on segment files, the topology on sled.
#[derive(Debug)]
pub struct LogStore {
    sled: SledStore,
    side: Side,
    /// A topology write (or the clean flag) since sled was last synced.
    sled_dirty: AtomicBool,
    root: PathBuf,
    state: Mutex<State>,
    /// Every writer; `None` until [`MessageStore::recover`] has run.
    files: Mutex<Option<Files>>,
}

/// The log as the broker has changed it: what [`MessageStore::apply`]
/// writes and a round takes.
#[derive(Debug, Default)]
struct State {
    root: PathBuf,
    queues: HashMap<u64, QueueView>,
    /// This round's control operations.
    control: ops::Writer,
    /// The next index of the control entries.
    control_next: u64,
    /// This round's settlements of logged entries, for the ack files:
    /// (queue, segment, index).
    acks: Vec<(u64, u64, u64)>,
    /// Sealed segments settled in full this round: (queue, segment).
    doomed: Vec<(u64, u64)>,
    /// Queues deleted this round.
    dropped: Vec<u64>,
    small: Small,
    /// Consensus groups' logs (`groups.rs`).
    groups: HashMap<u64, GroupView>,
    /// Groups dropped this round (their files go).
    dropped_groups: Vec<u64>,
    /// Groups whose copy was found damaged at the start, not repaired yet.
    damaged: HashSet<u64>,
}

/// One round, taken by the sync.
#[derive(Debug, Default)]
struct Round {
    /// Its entries, the control entry last: (queue, index, body).
    entries: Vec<(u64, u64, Bytes)>,
    /// Queues that start a new segment with this round: (queue, first index).
    rolls: Vec<(u64, u64)>,
    acks: Vec<(u64, u64, u64)>,
    doomed: Vec<(u64, u64)>,
    dropped: Vec<u64>,
    /// The small state to checkpoint after this round, if one is due.
    checkpoint: Option<Snapshot>,
    /// With a checkpoint: the groups changed since their files were
    /// written.
    groups: Vec<GroupSnapshot>,
    dropped_groups: Vec<u64>,
}

/// An entry's body: the copy's sequence number, then its message record
/// with the body inline.
fn encode_entry(seq: u64, meta: &MessageMeta, body: &[u8]) -> Bytes {
    let record = codec::encode_meta(meta, Some(body));
    let mut out = Vec::with_capacity(8 + record.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&record);
    Bytes::from(out)
}

/// The sequence number and message record of an entry's body.
fn split_entry(body: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let (seq, record) = body
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt("log entry shorter than its sequence number".into()))?;
    Ok((u64::from_le_bytes(*seq), record))
}

/// What a segment's index file keeps of an entry (see `log::index`).
fn index_entry(body: &[u8]) -> Result<IndexEntry, StoreError> {
    let (seq, record) = split_entry(body)?;
    let meta = codec::view_meta(record)?;
    Ok(IndexEntry {
        seq,
        len: u32::try_from(meta.inline_body.map_or(0, <[u8]>::len)).unwrap_or(u32::MAX),
        published_at: meta.published_at,
        body_id: meta.body_id,
        volatile: meta.volatile,
    })
}

/// A copy read back from an entry's body (held as `Bytes`, which the body
/// is sliced from), its metadata replaced by a rewrite if it has one.
fn decode_copy(
    queue_id: u64,
    entry: &Bytes,
    rewrite: Option<&Vec<u8>>,
) -> Result<RecoveredMessage, StoreError> {
    let (seq, record) = split_entry(entry)?;
    let view = codec::view_meta(record)?;
    let body = match view.inline_body {
        Some(b) => entry.slice_ref(b),
        None => return Err(StoreError::Corrupt("log entry without its body".into())),
    };
    let meta = match rewrite {
        Some(r) => codec::view_meta(r)?.to_meta(),
        None => view.to_meta(),
    };
    Ok(RecoveredMessage {
        queue_id,
        seq,
        meta,
        body,
        inline: true,
    })
}

impl LogStore {
    /// Opens (or creates) the store in `dir`: sled in `dir`, the log in
    /// `dir/log`; recovers the log against the durable queues (see the
    /// module doc). A data directory whose messages are still in sled is
    /// migrated first.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<LogStore, StoreError> {
        let sled = SledStore::open(dir, cache_bytes)?;
        let side = Side::open(sled.db())?;
        let root = dir.join("log");
        recover::migrate_from_sled(&sled, &side, dir, &root)?;
        Ok(LogStore {
            sled,
            side,
            sled_dirty: AtomicBool::new(false),
            state: Mutex::new(State {
                root: root.clone(),
                control_next: 1,
                ..State::default()
            }),
            root,
            files: Mutex::new(None),
        })
    }

    fn dirty(&self) {
        self.sled_dirty.store(true, Ordering::Release);
    }
}

impl State {
    /// The view of queue `q`, made for a queue that has none yet.
    fn view(&mut self, q: u64) -> &mut QueueView {
        self.queues.entry(q).or_insert_with(|| QueueView::empty(1))
    }

    /// Settles the live copy `seq` of queue `q` (if there is one).
    fn settle(&mut self, q: u64, seq: u64, acked: &mut HashMap<u64, Vec<u64>>) {
        let Some(view) = self.queues.get_mut(&q) else {
            return;
        };
        self.small.unrewrite(q, seq);
        if let Some(Found::Logged { first, index }) = view.settle(seq) {
            acked.entry(q).or_default().push(index);
            self.acks.push((q, first, index));
            let active = view.segs.last().map(|s| s.first);
            if active != Some(first) {
                if let Some(p) = view.segs.iter().position(|s| s.first == first) {
                    if view.segs[p].live == 0 {
                        view.segs.remove(p);
                        self.doomed.push((q, first));
                    }
                }
            }
        }
    }

    /// Settles every live copy of queue `q` with `from <= seq < to`: one
    /// RANGE operation in the control entry, whole segments doomed, the
    /// others' settled indexes for their ack files.
    fn settle_range(&mut self, q: u64, from: u64, to: u64) {
        let Some(view) = self.queues.get_mut(&q) else {
            return;
        };
        let below = view.next_index;
        let cut = view.settle_range(from, to);
        self.control.range(q, from, to, below);
        self.small.unrewrite_range(q, from, to);
        self.acks
            .extend(cut.acks.into_iter().map(|(first, index)| (q, first, index)));
        self.doomed
            .extend(cut.doomed.into_iter().map(|first| (q, first)));
    }

    /// Takes the round (see the module doc); `generation` is the
    /// write-ahead file's it goes to.
    fn take(&mut self, checkpoint: bool, generation: u64) -> Round {
        let mut round = Round::default();
        let mut ids: Vec<u64> = self
            .queues
            .iter()
            .filter(|(_, v)| v.has_fresh())
            .map(|(q, _)| *q)
            .collect();
        ids.sort_unstable();
        for q in ids {
            let Some(view) = self.queues.get_mut(&q) else {
                continue;
            };
            let fresh = view.take_fresh();
            let full = view.segs.last().is_none_or(|s| s.bytes >= SEGMENT_BYTES);
            if full {
                if let Some(old) = view.segs.last() {
                    if old.live == 0 {
                        let first = old.first;
                        view.segs.pop();
                        round.doomed.push((q, first));
                    }
                }
                view.segs
                    .push(SegView::new(view.next_index, HEADER_LEN as u64));
                round.rolls.push((q, view.next_index));
            }
            for (seq, body) in fresh {
                let Some(index) = view.append(seq, body.len()) else {
                    break;
                };
                view.inflight.push((index, body.clone()));
                round.entries.push((q, index, body));
            }
        }
        for body in self.control.take() {
            round
                .entries
                .push((ops::CONTROL, self.control_next, Bytes::from(body)));
            self.control_next += 1;
        }
        round.acks = std::mem::take(&mut self.acks);
        round.doomed.append(&mut self.doomed);
        round.dropped = std::mem::take(&mut self.dropped);
        round.dropped_groups = std::mem::take(&mut self.dropped_groups);
        if checkpoint {
            round.checkpoint = Some(self.small.snapshot());
            let through: Through = (generation, self.control_next - 1);
            round.groups = self
                .groups
                .iter_mut()
                .filter_map(|(g, v)| v.snapshot(*g, through))
                .collect();
        }
        round
    }

    /// The view of group `g`, made for one that has none yet.
    fn group(&mut self, g: u64) -> &mut GroupView {
        self.groups.entry(g).or_insert_with(GroupView::new)
    }

    /// The round's writes landed (see [`files::Landed`]).
    fn landed(&mut self, written: &[files::Landed]) {
        for l in written {
            let Some(view) = self.queues.get_mut(&l.queue) else {
                continue;
            };
            view.inflight.retain(|(i, _)| *i > l.last);
            if let Some(seg) = view.segs.iter_mut().find(|s| s.first == l.segment) {
                seg.on_disk = l.on_disk;
                seg.file_len = l.file_len;
            }
        }
    }
}

impl Durable for LogStore {
    fn sync(&self) -> Result<(), StoreError> {
        let mut files = self.files.lock();
        let Some(files) = files.as_mut() else {
            // Not recovered yet: nothing of the log can have been written.
            if self.sled_dirty.swap(false, Ordering::AcqRel) {
                self.sled.sync()?;
            }
            return Ok(());
        };
        let due = files.checkpoint_due();
        let round = self.state.lock().take(due, files.wal.generation());
        let start = files.round_start(&round);
        files.write_ahead(&round)?;
        if self.sled_dirty.swap(false, Ordering::AcqRel) {
            self.sled.sync()?;
        }
        let written = match files.write_round(&round) {
            Ok(w) => w,
            Err(e) => {
                if let Err(undo) = files.take_back(&round, &start) {
                    tracing::error!(error = %undo, "could not take back a round the segments could not take; a start replays it");
                }
                return Err(e);
            }
        };
        self.state.lock().landed(&written);
        for g in &round.dropped_groups {
            files.remove_group_files(*g, None)?;
        }
        if let Some(snapshot) = round.checkpoint {
            // Groups' files first: the write-ahead files the checkpoint
            // retires hold their operations until then.
            for snap in &round.groups {
                let (file, placed) = files.write_group(snap)?;
                let mut st = self.state.lock();
                // A group dropped (or dropped and made again) since the
                // round was taken keeps its own files.
                if let Some(view) = st.groups.get_mut(&snap.group) {
                    if view.file == snap.file && view.through == snap.head.through {
                        view.file_written(file, &placed);
                        drop(st);
                        files.remove_group_files(snap.group, Some(file))?;
                    }
                }
            }
            files.checkpoint(&self.side, snapshot)?;
            self.sled.sync()?;
            files.retire_old()?;
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        let log = self.files.lock().as_ref().map_or(0, Files::size_on_disk);
        Some(self.sled.size_on_disk().unwrap_or(0).saturating_add(log))
    }
}

impl MessageStore for LogStore {
    fn recover(&self, queues: &[QueueDef]) -> Result<StoredMessages, StoreError> {
        // What this handle wrote lands first: recovery reads the files.
        self.sync()?;
        let mut files = self.files.lock();
        *files = None;
        let mut rec = recover::recover(&self.root, &self.side, queues)?;
        rec.summary.clean_shutdown = self.sled.was_clean()?;
        rec.summary.first_start = self.sled.never_started()?;
        self.sled.set_clean(false)?;
        self.sled.sync()?;
        rec.files.retire_old()?;
        *self.state.lock() = State {
            root: self.root.clone(),
            queues: rec.views,
            control_next: 1,
            small: rec.small,
            groups: rec.groups,
            damaged: rec.damaged,
            ..State::default()
        };
        *files = Some(rec.files);
        Ok(rec.summary)
    }

    fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let plan = {
            let st = self.state.lock();
            let Some(view) = st.queues.get(&queue_id) else {
                return Ok(Vec::new());
            };
            files::ReadPlan::new(&st.root, queue_id, view, &st.small, from, to, limit)?
        };
        let (out, cursors) = plan.read()?;
        if !cursors.is_empty() {
            if let Some(view) = self.state.lock().queues.get_mut(&queue_id) {
                for (from, to) in cursors {
                    view.move_cursor(from, to);
                }
            }
        }
        Ok(out)
    }

    fn apply(&self, b: &MessageBatch<'_>) -> Result<(), StoreError> {
        let bodies: HashMap<u64, &[u8]> = b.put_bodies.iter().copied().collect();
        let mut st = self.state.lock();
        let st = &mut *st;
        for (q, seq, meta) in &b.put_metas {
            let view = st.view(*q);
            if view.is_logged(*seq) {
                // A requeued copy: its metadata is rewritten, its body kept.
                let record = codec::encode_meta(meta, None);
                st.control.rewrite(*q, *seq, &record);
                st.small.rewrite(*q, *seq, record);
                continue;
            }
            let body = match (bodies.get(&meta.body_id), view.fresh(*seq)) {
                (Some(body), _) => encode_entry(*seq, meta, body),
                (None, Some(old)) => {
                    let copy = decode_copy(*q, old, None)?;
                    encode_entry(*seq, meta, &copy.body)
                }
                (None, None) => {
                    return Err(StoreError::Io(format!(
                        "queue {q}: copy {seq} written without its body"
                    )))
                }
            };
            view.add_fresh(*seq, body);
        }
        let mut acked: HashMap<u64, Vec<u64>> = HashMap::new();
        for (q, seq) in &b.del_metas {
            st.settle(*q, *seq, &mut acked);
        }
        let mut acked: Vec<_> = acked.into_iter().collect();
        acked.sort_unstable_by_key(|(q, _)| *q);
        for (q, indexes) in acked {
            st.control.acks(q, &indexes);
        }
        for &(q, from, to) in &b.del_ranges {
            st.settle_range(q, from, to);
        }
        for (q, id) in &b.del_dedup {
            st.control.undedup(*q, id);
            st.small.undedup(*q, id);
        }
        for d in &b.put_dedup {
            st.control.dedup(d.queue_id, &d.id, d.expires_at);
            st.small.dedup(d.queue_id, &d.id, d.expires_at);
        }
        for (q, group, offset) in &b.put_offsets {
            st.control.offset(*q, group, *offset);
            st.small.offset(*q, group, *offset);
        }
        Ok(())
    }

    fn remove_queue(&self, queue_id: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        st.queues.remove(&queue_id);
        st.control.drop_queue(queue_id);
        st.small.drop_queue(queue_id);
        st.dropped.push(queue_id);
        Ok(())
    }

    fn set_clean(&self, clean: bool) -> Result<(), StoreError> {
        self.sled.set_clean(clean)?;
        self.dirty();
        Ok(())
    }

    /// Each queue's log keeps its own copy of a body.
    fn shares_bodies(&self) -> bool {
        false
    }
}

/// Consensus groups' logs (`groups.rs`): what a Raft group's log store
/// needs, one call for each of openraft's `RaftLogStorage`. A change is in
/// RAM at once (a read sees it) and durable with the next
/// [`Durable::sync`], in the order made; call them after
/// [`MessageStore::recover`]. Their caller is the clusters' Raft log
/// store (`cluster::GroupLog`, which passes openraft's storage test
/// suite); no cluster runs it yet.
#[cfg_attr(not(test), allow(dead_code))]
impl LogStore {
    /// Group `g`'s log summed up.
    pub(crate) fn group_state(&self, g: u64) -> GroupState {
        self.state
            .lock()
            .groups
            .get(&g)
            .map(GroupView::state)
            .unwrap_or_default()
    }

    /// Appends `entries` to group `g`'s log: the first must be the next
    /// index, the rest follow it ([`StoreError::OutOfOrder`] otherwise, and
    /// nothing is appended).
    pub(crate) fn group_append(&self, g: u64, entries: &[GroupEntry]) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let st = &mut *st;
        let view = st.groups.entry(g).or_insert_with(GroupView::new);
        // The whole batch fits, or nothing is appended.
        if let Some(e) = entries.iter().find(|e| e.payload.len() > ops::MAX_OP) {
            return Err(StoreError::OutOfOrder(format!(
                "group {g}: entry {} of {} bytes is over the limit of {}",
                e.index,
                e.payload.len(),
                ops::MAX_OP
            )));
        }
        view.check(g, entries.iter().map(|e| (e.index, e.term)))?;
        for e in entries {
            view.append(g, e.index, e.term, e.payload.clone())?;
            st.control.group_append(g, e.index, e.term, &e.payload);
        }
        Ok(())
    }

    /// Group `g`'s entries with `from <= index < to` (fewer at the end of
    /// the log); reading purged entries is refused.
    pub(crate) fn group_read(
        &self,
        g: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<GroupEntry>, StoreError> {
        // A checkpoint may replace the group's file between the plan and
        // the read: then the plan is made again.
        for _ in 0..3 {
            let (plan, file) = {
                let st = self.state.lock();
                match st.groups.get(&g) {
                    Some(v) => (v.plan(g, from, to)?, v.file),
                    None => (GroupView::new().plan(g, from, to)?, None),
                }
            };
            match files::read_group(&self.root, g, file, plan) {
                Ok(Some(entries)) => return Ok(entries),
                Ok(None) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Io(format!(
            "group {g}: its file was replaced during three reads in a row"
        )))
    }

    /// Removes group `g`'s entries from `since` on.
    pub(crate) fn group_truncate(&self, g: u64, since: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        st.group(g).truncate(g, since)?;
        st.control.group_truncate(g, since);
        Ok(())
    }

    /// Removes group `g`'s entries up to `upto`, whose term is `term` (past
    /// the last entry, the log is left empty and goes on after `upto`).
    pub(crate) fn group_purge(&self, g: u64, upto: u64, term: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if st.group(g).purge(g, upto, term)? {
            st.control.group_purge(g, upto, term);
        }
        Ok(())
    }

    /// Whether group `g`'s copy here was found damaged at the start (a
    /// file that did not read back whole) and is not repaired yet: its
    /// log starts empty, and it must not count as a member that has what
    /// it acknowledged before (it must not vote) until it has everything
    /// again from the other members. A restart meanwhile finds it damaged
    /// still, and empties it again.
    pub(crate) fn group_damaged(&self, g: u64) -> bool {
        self.state.lock().damaged.contains(&g)
    }

    /// Marks group `g`'s copy damaged (found so elsewhere than in its
    /// log: a snapshot that does not read back whole), as a start would
    /// have: its log is forgotten, and it stays damaged until
    /// [`LogStore::group_repaired`], through restarts.
    pub(crate) fn group_set_damaged(&self, g: u64) -> Result<(), StoreError> {
        files::mark_damaged(&self.root, g)?;
        self.group_drop(g)?;
        self.state.lock().damaged.insert(g);
        Ok(())
    }

    /// Group `g`'s copy is whole again (made again from the other
    /// members): it is no longer damaged, here or after a restart.
    pub(crate) fn group_repaired(&self, g: u64) -> Result<(), StoreError> {
        files::forget_damage(&self.root, g)?;
        self.state.lock().damaged.remove(&g);
        Ok(())
    }

    /// Saves group `g`'s vote (opaque bytes).
    pub(crate) fn group_save_vote(&self, g: u64, vote: &[u8]) -> Result<(), StoreError> {
        if vote.len() > ops::MAX_OP {
            return Err(StoreError::OutOfOrder(format!("group {g}: vote too large")));
        }
        let mut st = self.state.lock();
        st.group(g).set_vote(Bytes::copy_from_slice(vote));
        st.control.group_vote(g, vote);
        Ok(())
    }

    /// Group `g`'s saved vote.
    pub(crate) fn group_vote(&self, g: u64) -> Option<Bytes> {
        self.state.lock().groups.get(&g).and_then(GroupView::vote)
    }

    /// Forgets group `g`'s log (its files go with the next sync).
    pub(crate) fn group_drop(&self, g: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        st.groups.remove(&g);
        st.control.group_drop(g);
        st.dropped_groups.push(g);
        Ok(())
    }
}

/// The topology is sled's; every write marks sled for the next sync.
impl TopologyStore for LogStore {
    fn topology(&self) -> Result<Topology, StoreError> {
        self.sled.topology()
    }
    fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_exchange(def)
    }
    fn delete_exchange(&self, name: &str) -> Result<(), StoreError> {
        self.dirty();
        self.sled.delete_exchange(name)
    }
    fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_queue(def)
    }
    fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        self.dirty();
        self.sled.delete_queue(def)
    }
    fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_binding(def)
    }
    fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.dirty();
        self.sled.delete_binding(def)
    }
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.sled.users()
    }
    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_user(user)
    }
    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.dirty();
        self.sled.delete_user(name)
    }
    fn schema_records(&self) -> Result<Vec<crate::store::SchemaRecord>, StoreError> {
        self.sled.schema_records()
    }
    fn put_schema_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_schema_record(key, value)
    }
    fn delete_schema_record(&self, key: &[u8]) -> Result<(), StoreError> {
        self.dirty();
        self.sled.delete_schema_record(key)
    }
    fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.sled.cluster_state()
    }
    fn put_cluster_state(&self, state: &[u8]) -> Result<(), StoreError> {
        self.dirty();
        self.sled.put_cluster_state(state)
    }
}

/// A de-duplication record as recovery hands it to the broker.
fn dedup_entry(queue_id: u64, id: &str, expires_at: u64) -> DedupEntry {
    DedupEntry {
        queue_id,
        id: id.to_owned(),
        expires_at,
    }
}

#[cfg(test)]
mod tests;
