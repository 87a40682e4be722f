//! A replicated queue's state machine ([`QueueMachine`]): the copies of
//! its messages not yet settled, from its log's entries ([`QueueOp`]), and
//! its snapshots, which bound the log.
//!
//! - **Positions.** A copy's position is its entry's index times
//!   [`MAX_BATCH`], plus its place in the entry: the same on every member.
//! - **The leader's view.** On the member that leads, the copies are also
//!   in the broker's queue of that name (in RAM: the log keeps them), where
//!   its consumers get them ([`QueueMachine::set_active`]).
//! - **De-duplication and `reject-publish`.** A `dedup-window=` queue's
//!   machine keeps the ids publishers chose, each until its window
//!   (counted from its publish) has passed, and drops a copy whose id it
//!   has; a full `overflow=reject-publish` queue's drops a copy that
//!   would take it over its limits, counting every copy not yet settled.
//!   Every member alike; the entry's answer says which were dropped.
//! - **Snapshots.** Every `--snapshot-every` entries (20,000 unless
//!   told) openraft asks for one, and purges the log behind it (keeping
//!   its last 1,000 entries for members a little behind): the copies not yet settled, with the last entry applied and the
//!   membership, written whole to a file of the queue's group
//!   (`<data-dir>/snapshots/<group>.snap`: a CRC-32 of the JSON, then the
//!   JSON; a temporary file, fdatasync'd, renamed, the directory synced)
//!   before openraft purges the entries it covers. A start reads it back
//!   and applies only the entries after it; a member too far behind the
//!   leader's log gets it over the network instead of the purged entries. A
//!   snapshot that does not read back whole refuses the group's start.

// openraft's traits return its `StorageError`, large as it is.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::stream_replica::StreamPart;
pub(super) use super::stream_replica::{GroupFailure, GroupOffset};
use super::tx_part::{Prepare, Prepared, Resolve};
use super::TypeConfig;
use crate::broker::{Broker, MetaAnswer, ReplicaMessage};
use crate::protocol::command::Overflow;

mod tx_apply;
pub(super) use tx_apply::{FULL, REFUSED};

/// At most this many copies in one entry; a copy's position is its
/// entry's index times this, plus its place in the entry.
pub(super) const MAX_BATCH: u64 = 4096;

type Meta = SnapshotMeta<u64, BasicNode>;

/// A replicated queue's log entry: what one node had for the queue since
/// its last entry (see `queues::batch`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct QueueOp {
    /// Copies of messages, in publish order.
    pub(super) enqueue: Vec<ReplicaMessage>,
    /// Positions of copies that are done with.
    pub(super) settle: Vec<u64>,
    /// Positions of copies put back after a delivery (their deliveries
    /// counted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) returned: Vec<u64>,
    /// A stream's group offsets, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) offsets: Vec<GroupOffset>,
    /// A stream's failed deliveries, each with its offset's count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) failed: Vec<GroupFailure>,
    /// A transaction's part, kept aside until resolved (`tx_part.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) prepare: Option<Prepare>,
    /// A transaction's outcome: its part applied or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) resolve: Option<Resolve>,
}

impl QueueOp {
    /// Whether it carries nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.enqueue.is_empty()
            && self.settle.is_empty()
            && self.returned.is_empty()
            && self.offsets.is_empty()
            && self.failed.is_empty()
            && self.prepare.is_none()
            && self.resolve.is_none()
    }
}

/// What a replicated queue's state machine keeps.
#[derive(Debug, Default)]
struct QueueState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// The copies not yet settled, by position.
    copies: BTreeMap<u64, ReplicaMessage>,
    /// How many times each copy was put back after a delivery (those
    /// never put back are absent).
    returns: HashMap<u64, u32>,
    /// Whether this node's broker queue shows them (it leads).
    active: bool,
    /// The copies' body bytes (for `max-bytes=` with `reject-publish`).
    bytes: u64,
    /// A `dedup-window=` queue's ids, each with the end of its window.
    dedup: HashMap<String, u64>,
    /// The same, by the end of their window.
    dedup_ends: BTreeSet<(u64, String)>,
    /// A stream's next offset and group offsets.
    stream: StreamPart,
    /// Transactions' parts not resolved yet.
    prepared: Prepared,
}

/// What a `reject-publish` queue's machine checks a copy against: its
/// `max-length=` and `max-bytes=`, counting every copy not yet settled.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_length: Option<u64>,
    max_bytes: Option<u64>,
}

/// Why a copy was not kept ([`QueueMachine::admit`]).
enum NotKept {
    /// A `dedup-window=` queue had its id.
    Duplicate,
    /// A full `overflow=reject-publish` queue refused it.
    Rejected,
}

/// The copies of an entry that its queue did not keep, by their place in
/// the entry: as its answer's words (`d<place>`, `r<place>`) say them.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    /// Duplicates (`dedup-window=`).
    duplicates: Vec<usize>,
    /// Refused by a full `overflow=reject-publish` queue.
    rejected: Vec<usize>,
    /// Why the entry's transaction part was refused.
    refused: Option<String>,
}

impl Dropped {
    /// As the entry's answer carries it.
    fn words(&self) -> Vec<String> {
        let d = self.duplicates.iter().map(|i| format!("d{i}"));
        d.chain(self.rejected.iter().map(|i| format!("r{i}")))
            .chain(self.refused.iter().map(|why| format!("{REFUSED}{why}")))
            .collect()
    }
}

impl QueueState {
    /// Whether one more copy of `len` bytes would take a `reject-publish`
    /// queue over `limits`.
    ///
    /// The copies transactions' parts hold room for count too (a part
    /// that fitted when prepared is applied whole if it commits).
    fn full(&self, limits: Limits, len: u64) -> bool {
        self.full_with(limits, (0, 0), len)
    }

    /// [`QueueState::full`], with `more` (copies, bytes) taken already.
    fn full_with(&self, limits: Limits, more: (u64, u64), len: u64) -> bool {
        let (held, held_bytes) = self.prepared.reserved();
        let count = self.copies.len() as u64 + held + more.0;
        let bytes = self.bytes.saturating_add(held_bytes).saturating_add(more.1);
        limits.max_length.is_some_and(|max| count + 1 > max)
            || limits
                .max_bytes
                .is_some_and(|max| bytes.saturating_add(len) > max)
    }

    /// Whether all of `copies` fit in a `reject-publish` queue under
    /// `limits`, one after the other.
    fn fits(&self, limits: Limits, copies: &[ReplicaMessage]) -> bool {
        let mut more = (0, 0);
        for m in copies {
            if self.full_with(limits, more, m.body_len()) {
                return false;
            }
            more = (more.0 + 1, more.1.saturating_add(m.body_len()));
        }
        true
    }

    /// Takes over a snapshot's copies, their returns and the ids of a
    /// `dedup-window=` queue.
    fn restore(&mut self, saved: Saved) {
        self.copies = saved.copies.into_iter().collect();
        self.bytes = self.copies.values().map(ReplicaMessage::body_len).sum();
        self.returns = saved.returns.into_iter().collect();
        self.dedup_ends = saved
            .dedup
            .iter()
            .map(|(id, end)| (*end, id.clone()))
            .collect();
        self.dedup = saved.dedup.into_iter().collect();
        self.stream = StreamPart::restored(saved.next, saved.offsets).with_failed(saved.failed);
        self.prepared = Prepared::restored(saved.prepared);
    }

    /// Keeps copy `m` at position `seq`.
    fn keep(&mut self, seq: u64, m: ReplicaMessage) {
        self.bytes = self.bytes.saturating_add(m.body_len());
        self.copies.insert(seq, m);
    }

    /// Drops the copy at `seq` (settled), returning it.
    fn drop_copy(&mut self, seq: u64) -> Option<ReplicaMessage> {
        let m = self.copies.remove(&seq)?;
        self.bytes = self.bytes.saturating_sub(m.body_len());
        Some(m)
    }

    /// Whether a copy with id `id` published at `at` is a duplicate for a
    /// window of `window` ms; if not, its id is remembered until
    /// `at + window`. Windows that ended by `at` are forgotten. Counted
    /// from the publishing node's clock, so every member decides alike.
    fn duplicate(&mut self, id: &str, at: u64, window: u64) -> bool {
        while let Some((end, _)) = self.dedup_ends.first() {
            if *end > at {
                break;
            }
            if let Some((_, gone)) = self.dedup_ends.pop_first() {
                self.dedup.remove(&gone);
            }
        }
        if self.dedup.get(id).is_some_and(|end| *end > at) {
            return true;
        }
        let end = at.saturating_add(window);
        if let Some(old) = self.dedup.insert(id.to_string(), end) {
            self.dedup_ends.remove(&(old, id.to_string()));
        }
        self.dedup_ends.insert((end, id.to_string()));
        false
    }
}

/// A snapshot's content.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    copies: Vec<(u64, ReplicaMessage)>,
    #[serde(default)]
    returns: Vec<(u64, u32)>,
    /// A `dedup-window=` queue's ids and the ends of their windows.
    #[serde(default)]
    dedup: Vec<(String, u64)>,
    /// A stream's next offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
    /// A stream's group offsets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offsets: Vec<(String, u64)>,
    /// A stream's failed deliveries not yet passed by their group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed: Vec<GroupFailure>,
    /// A stream's messages, by offset: only in a snapshot sent to a
    /// member too far behind (see `stream_replica.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    messages: Vec<(u64, ReplicaMessage)>,
    /// Transactions' parts not resolved yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prepared: Vec<Prepare>,
}

/// A replicated queue's state machine (see the module docs). Clones share
/// it.
#[derive(Debug, Clone)]
pub(super) struct QueueMachine {
    broker: Broker,
    name: Arc<str>,
    st: Arc<Mutex<QueueState>>,
    /// Its snapshot's file.
    file: Arc<PathBuf>,
}

/// Where group `group`'s snapshot is kept under the data directory `dir`.
pub(super) fn snapshot_path(dir: &Path, group: u64) -> PathBuf {
    dir.join("snapshots").join(format!("{group:020}.snap"))
}

/// Removes the snapshot at `file` (the group's copy here is dropped or
/// starts over); none there is fine.
pub(super) fn remove_snapshot(file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn io_error(verb: ErrorVerb, e: impl ToString) -> StorageError<u64> {
    StorageError::from(StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        AnyError::error(e.to_string()),
    ))
}

impl QueueMachine {
    /// Queue `name`'s state machine, from its snapshot at `file` if there
    /// is one.
    pub(super) fn open(broker: &Broker, name: &str, file: PathBuf) -> Result<QueueMachine, String> {
        let mut st = QueueState::default();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let saved =
                    decode(&bytes).map_err(|e| format!("the snapshot {}: {e}", file.display()))?;
                st.last_applied = saved.last_applied;
                st.membership = saved.membership.clone();
                st.restore(saved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading the snapshot {}: {e}", file.display())),
        }
        Ok(QueueMachine {
            broker: broker.clone(),
            name: Arc::from(name),
            st: Arc::new(Mutex::new(st)),
            file: Arc::new(file),
        })
    }

    /// A `reject-publish` queue's limits (`None`: any other queue).
    fn limits(&self) -> Option<Limits> {
        let def = self.broker.find_queue(&self.name)?;
        (def.args.overflow == Overflow::RejectPublish).then_some(Limits {
            max_length: def.args.max_length,
            max_bytes: def.args.max_bytes,
        })
    }

    /// A `dedup-window=` queue's window, in ms.
    fn dedup_window(&self) -> Option<u64> {
        let def = self.broker.find_queue(&self.name)?;
        def.args.dedup_window_ms
    }

    /// Keeps copy `m` at position `seq`, shown in `view` (this node
    /// leads), unless a `dedup-window=` queue (`window`) had its id or a
    /// full `reject-publish` queue (`limits`) refuses it.
    fn admit(
        &self,
        st: &mut QueueState,
        seq: u64,
        m: ReplicaMessage,
        window: Option<u64>,
        limits: Option<Limits>,
        view: Option<&Arc<crate::broker::queue::Queue>>,
    ) -> Result<(), NotKept> {
        if let (Some(w), Some((id, at))) = (window, m.dedup_key()) {
            if st.duplicate(id, at, w) {
                return Err(NotKept::Duplicate);
            }
        }
        if limits.is_some_and(|l| st.full(l, m.body_len())) {
            return Err(NotKept::Rejected);
        }
        if let Some(q) = view {
            if let Err(e) = self.broker.enqueue_replica(q, seq, &m, false, 0) {
                tracing::warn!(queue = %self.name, error = %e, "a replicated copy");
            }
        }
        st.keep(seq, m);
        Ok(())
    }

    /// This node's copy of the stream, when the queue is a stream.
    fn stream(&self) -> Option<Arc<crate::broker::queue::Queue>> {
        self.broker
            .find_queue(&self.name)
            .filter(|q| q.stream_end().is_some())
    }

    /// Resolves once everything this node's store was given so far is
    /// durable (a stream's copy, before a snapshot that counts on it).
    async fn durable(&self) -> Result<(), StorageError<u64>> {
        let committer = self.broker.committer().clone();
        committer
            .wait(committer.written())
            .await
            .map_err(|e| io_error(ErrorVerb::Write, e))
    }

    /// Whether this node's broker queue shows the copies (it leads, and
    /// has caught up with its log).
    pub(super) fn active(&self) -> bool {
        self.st.lock().active
    }

    /// Shows the copies in this node's broker queue (`true`: it leads), or
    /// takes them out of it.
    pub(super) fn set_active(&self, active: bool) {
        let mut st = self.st.lock();
        if st.active == active {
            return;
        }
        st.active = active;
        let Some(q) = self.broker.find_queue(&self.name) else {
            return;
        };
        if q.stream_end().is_some() {
            // Every member keeps the stream; only its groups and readers
            // follow the lead.
            let groups = st.stream.groups();
            q.stream_replace_groups(&groups, active);
            if active {
                // Its groups count on from the log's failed deliveries.
                let failures = st.stream.failures();
                let failed: Vec<_> = failures
                    .iter()
                    .map(|f| (f.group.as_str(), f.at, f.count))
                    .collect();
                q.stream_restore_failed(&failed);
            }
            tracing::info!(stream = %self.name, leads = active, ?groups, applied = ?st.last_applied.map(|l| l.index), "a replicated stream's lead");
            return;
        }
        if active {
            // What the view may hold is stale: a delivery put back after
            // this node last led it (a late NACK) went there, off the log.
            let _ = q.purge();
            self.show(&mut st);
            tracing::info!(queue = %self.name, copies = st.copies.len(), "leading a replicated queue");
        } else {
            st.prepared.clear_hidden();
            q.cancel_subscriptions("leader-moved");
            let _ = q.purge();
            tracing::info!(queue = %self.name, "no longer leading a replicated queue");
        }
    }

    /// Puts every copy in the broker's queue, flagged redelivered, but
    /// those a transaction holds (left out until it is resolved).
    fn show(&self, st: &mut QueueState) {
        let Some(q) = self.broker.find_queue(&self.name) else {
            return;
        };
        let st = &mut *st;
        for (seq, m) in &st.copies {
            if st.prepared.is_held(*seq) {
                st.prepared.hide(*seq);
                continue;
            }
            let returns = st.returns.get(seq).copied().unwrap_or(0);
            if let Err(e) = self.broker.enqueue_replica(&q, *seq, m, true, returns) {
                tracing::warn!(queue = %self.name, error = %e, "a replicated copy");
            }
        }
    }

    /// Applies entry `e`: the copies its queue did not keep.
    fn apply_one(&self, st: &mut QueueState, e: Entry<TypeConfig>) -> Dropped {
        let mut dropped = Dropped::default();
        st.last_applied = Some(e.log_id);
        match e.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                st.membership = StoredMembership::new(Some(e.log_id), m);
            }
            EntryPayload::Normal(p) => match serde_json::from_str::<QueueOp>(&p.0) {
                Ok(op) => {
                    if let Some(q) = self.stream() {
                        st.stream
                            .apply(&self.broker, &q, op.enqueue, op.failed, op.offsets);
                        if let Some(p) = op.prepare {
                            let term = e.log_id.leader_id.term;
                            dropped.refused = self.prepare(st, p, term).err();
                        }
                        if let Some(r) = op.resolve {
                            self.resolve_stream(st, r, &q);
                        }
                        return dropped;
                    }
                    if !op.offsets.is_empty() || !op.failed.is_empty() {
                        // Only a stream's entries carry group offsets: its
                        // copy is not here (yet), and they are not applied.
                        tracing::error!(queue = %self.name, index = e.log_id.index, "a replicated stream's entry applied without the stream's copy on this node: its group offsets are not applied");
                    }
                    let q = match st.active {
                        true => self.broker.find_queue(&self.name),
                        false => None,
                    };
                    let first = e.log_id.index.saturating_mul(MAX_BATCH);
                    let (window, limits) = (self.dedup_window(), self.limits());
                    let placed = op.enqueue.len() as u64;
                    for ((seq, m), place) in (first..).zip(op.enqueue).zip(0..) {
                        match self.admit(st, seq, m, window, limits, q.as_ref()) {
                            Ok(()) => {}
                            Err(NotKept::Duplicate) => dropped.duplicates.push(place),
                            Err(NotKept::Rejected) => dropped.rejected.push(place),
                        }
                    }
                    let mut withdrawn = Vec::new();
                    for s in op.settle {
                        st.returns.remove(&s);
                        if let (Some(m), Some(q)) = (st.drop_copy(s), &q) {
                            withdrawn.push(m.waiting_in(q, s));
                        }
                    }
                    // Settled by another node (an ack through a
                    // subscriber's node, after the lead moved): out of the
                    // view too, unless delivered meanwhile. This node's own
                    // settlements are out of it already.
                    if let Some(q) = q.as_ref().filter(|_| !withdrawn.is_empty()) {
                        q.withdraw(&withdrawn);
                    }
                    for r in op.returned {
                        if st.copies.contains_key(&r) {
                            *st.returns.entry(r).or_default() += 1;
                        }
                    }
                    if let Some(p) = op.prepare {
                        let term = e.log_id.leader_id.term;
                        dropped.refused = self.prepare(st, p, term).err();
                    }
                    if let Some(r) = op.resolve {
                        // Its copies take the places after the entry's own.
                        let from = first.saturating_add(placed);
                        self.resolve(st, r, from, q.as_ref());
                    }
                }
                Err(err) => {
                    tracing::warn!(queue = %self.name, error = %err, "an entry this node does not understand");
                }
            },
        }
        dropped
    }

    /// Writes `bytes` as its snapshot file, whole (off the runtime's
    /// threads).
    async fn keep(&self, bytes: Vec<u8>) -> Result<(), StorageError<u64>> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || write_whole(&file, &bytes))
            .await
            .map_err(|e| io_error(ErrorVerb::Write, e))?
            .map_err(|e| io_error(ErrorVerb::Write, e))
    }

    /// The snapshot of `st`, as stored and sent.
    fn snapshot_of(st: &QueueState) -> Result<(Meta, Vec<u8>), StorageError<u64>> {
        let saved = Saved {
            last_applied: st.last_applied,
            membership: st.membership.clone(),
            copies: st.copies.iter().map(|(s, m)| (*s, m.clone())).collect(),
            returns: st.returns.iter().map(|(s, n)| (*s, *n)).collect(),
            dedup: st
                .dedup
                .iter()
                .map(|(id, end)| (id.clone(), *end))
                .collect(),
            next: st.stream.saved().0,
            offsets: st.stream.saved().1,
            failed: st.stream.failures(),
            messages: Vec::new(),
            prepared: st.prepared.saved(),
        };
        let bytes = encode(&saved)?;
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: snapshot_id(st.last_applied),
        };
        Ok((meta, bytes))
    }
}

/// A snapshot's id: the term and index of the last entry it covers.
fn snapshot_id(last: Option<LogId<u64>>) -> String {
    format!(
        "{}-{}",
        last.map_or(0, |l| l.leader_id.term),
        last.map_or(0, |l| l.index)
    )
}

/// A snapshot's bytes: a CRC-32 of the JSON, then the JSON.
fn encode(saved: &Saved) -> Result<Vec<u8>, StorageError<u64>> {
    let json = serde_json::to_vec(saved).map_err(|e| io_error(ErrorVerb::Write, e))?;
    let mut bytes = crc32fast::hash(&json).to_be_bytes().to_vec();
    bytes.extend_from_slice(&json);
    Ok(bytes)
}

/// Reads a snapshot's bytes back: a CRC-32 of the JSON, then the JSON.
fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let (crc, json) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "cut short".to_string())?;
    if u32::from_be_bytes(*crc) != crc32fast::hash(json) {
        return Err("damaged (its checksum does not match)".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("does not parse: {e}"))
}

/// Writes `bytes` to `path` whole: a temporary file, fdatasync'd, renamed,
/// the directory synced.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a snapshot path without a directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for QueueMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, bytes) = Self::snapshot_of(&self.st.lock())?;
        // A stream's messages are in this node's copy, not the snapshot:
        // the log behind it goes only once they are durable.
        self.durable().await?;
        self.keep(bytes.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for QueueMachine {
    type SnapshotBuilder = QueueMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let st = self.st.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaAnswer>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut st = self.st.lock();
        let mut out = Vec::new();
        for e in entries {
            let dropped = self.apply_one(&mut st, e);
            out.push(MetaAnswer::Ok(dropped.words()));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let mut saved = decode(&bytes).map_err(|e| io_error(ErrorVerb::Read, e))?;
        let stream = self.stream();
        let bytes = match stream {
            Some(q) => {
                // This node's copy of the stream becomes the snapshot's,
                // durable before the snapshot is kept (which holds no
                // messages).
                let messages = std::mem::take(&mut saved.messages);
                let part = StreamPart::restored(saved.next, saved.offsets.clone());
                part.install(&self.broker, &q, messages)
                    .map_err(|e| io_error(ErrorVerb::Write, e))?;
                self.durable().await?;
                encode(&saved)?
            }
            None => bytes,
        };
        self.keep(bytes).await?;
        let mut st = self.st.lock();
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.restore(saved);
        if st.active {
            // Not expected (a leader is not sent snapshots), but its view
            // is made whole again if so.
            if let Some(q) = self.broker.find_queue(&self.name) {
                let _ = q.purge();
            }
            self.show(&mut st);
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let file = self.file.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&*file))
            .await
            .map_err(|e| io_error(ErrorVerb::Read, e))?;
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(ErrorVerb::Read, e)),
        };
        let mut saved = decode(&bytes).map_err(|e| io_error(ErrorVerb::Read, e))?;
        let meta = SnapshotMeta {
            last_log_id: saved.last_applied,
            last_membership: saved.membership.clone(),
            snapshot_id: snapshot_id(saved.last_applied),
        };
        // A stream's is sent with the messages this node's copy keeps
        // below its next offset.
        let stream = self.stream();
        let bytes = match stream {
            Some(q) => {
                let part = StreamPart::restored(saved.next, Vec::new());
                saved.messages = tokio::task::spawn_blocking(move || part.pack(&q))
                    .await
                    .map_err(|e| io_error(ErrorVerb::Read, e))?;
                encode(&saved)?
            }
            None => bytes,
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests;
