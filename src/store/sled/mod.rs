//! [`SledStore`]: the [`Store`] on sled 0.34, one tree per concern.
//!
//! Trees: `exchanges` (name → def), `queues` (name → def), `bindings`
//! (encoded def → empty), `users` (name → [`UserRecord`]), `messages` and
//! `meta` (`clean` flag). The
//! `messages` tree holds three key spaces so that one publish is one atomic
//! `Batch` (sled batches are per tree):
//!
//! - `m` ‖ queue id (u64 BE) ‖ seq (u64 BE) → metadata (17-byte key);
//! - `b` ‖ body id (u64 BE) ‖ chunk (u32 BE) → body bytes (13-byte key);
//! - `d` ‖ queue id (u64 BE) ‖ message id (its UTF-8 bytes, any length) →
//!   de-duplication record (its `expires_at`), written in the same batch as
//!   the message it guards;
//! - `o` ‖ queue id (u64 BE) ‖ group name (its bytes) → a stream consumer
//!   group's committed offset.
//!
//! Bodies are cut into 64 KiB chunks so that none reaches sled's blob files
//! (values over ~128 KiB), which sled never fsyncs.
//!
//! Recovery scans the `m` space once, reading each record in place
//! ([`codec::view_meta`]): it keeps a summary per queue, the reference count
//! and length of each body stored apart, and nothing per message, so a
//! backlog of millions recovers in bounded memory. Copies are read later,
//! a window at a time, with a range scan ([`Store::load`]).
//!
//! Durability: sled's `flush` ends in `sync_file_range`, which is not a
//! barrier against power loss, so [`Store::sync`] follows it with
//! `fdatasync` of sled's `db` file (see `shared/reference/reliability.md` §2).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::codec::{self, Reader, Writer};
use super::{
    BindingDef, DedupEntry, ExchangeDef, MessageBatch, QueueDef, Recovered, RecoveredMessage,
    Store, StoreError, StoredQueue, UserRecord,
};

/// Bodies are stored in chunks of at most this many bytes.
pub const BODY_CHUNK_BYTES: usize = 64 * 1024;
/// sled's page cache size: its default (1 GiB) is far too large for a
/// broker, and sled's real use is a few times this on a large tree. 32 MiB
/// measured as fast as 64 MiB on the queue benchmarks, and took the peak RSS
/// of a 10M-message backlog from 510 to 461 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Recovery removes orphans in batches of at most this many keys, so that a
/// large backlog of them never sits in RAM at once.
const ORPHAN_BATCH_KEYS: usize = 10_000;

/// How long [`SledStore::open`] waits for the directory lock.
///
/// sled 0.34 releases its `flock` only when its background threads exit,
/// which can be a few milliseconds after the last `Db` handle is dropped
/// (spacejam/sled#1234, #1289): a restart in the same process would
/// otherwise fail at random. A second live broker on the same directory
/// still fails, once this wait is over.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, retrying while its directory lock is held (see [`LOCK_WAIT`]).
fn open_waiting_for_lock(
    config: &sled::Config,
    dir: &Path,
    wait: std::time::Duration,
) -> Result<sled::Db, StoreError> {
    let start = std::time::Instant::now();
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled =0.34.7 reports the failed `flock` as ErrorKind::Other
            // with this text (config.rs, `open_file`).
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if start.elapsed() >= wait {
                    return Err(StoreError::Locked(dir.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes the snapshot files that sled was still writing when it was
/// stopped (`snap.<lsn>.generating`).
///
/// sled 0.34.7 writes a snapshot to `snap.<lsn>.generating`, fsyncs it and
/// only then renames it to `snap.<lsn>`. Its reader takes every `snap.*`
/// file and prefers the last in name order, which is the `.generating`
/// one, and refuses to open when that file is empty or torn
/// (spacejam/sled#1527, #1533): a kill while sled opened, or a start on a
/// full disk, left a store that no later start could open. The file is
/// incomplete by definition (the rename never happened), so the previous
/// snapshot and the log still hold everything, as NATS does for its own
/// temporary snapshots (nats-server #8101).
fn remove_incomplete_snapshots(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let bytes = entry.metadata().map_or(0, |m| m.len());
            std::fs::remove_file(entry.path())?;
            tracing::warn!(
                file = %entry.path().display(),
                bytes,
                "removed an incomplete sled snapshot (left by a stop while sled was \
                 writing it); the previous snapshot and the log hold its contents"
            );
        }
    }
    Ok(())
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// The sled-backed store.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    db_file: File,
    /// The commit counter (see [`CommitMark`]), held across a whole sync.
    commits: parking_lot::Mutex<u64>,
    mark: CommitMark,
    exchanges: sled::Tree,
    queues: sled::Tree,
    bindings: sled::Tree,
    users: sled::Tree,
    messages: sled::Tree,
    meta: sled::Tree,
}

fn meta_key(queue_id: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'm';
    k[1..9].copy_from_slice(&queue_id.to_be_bytes());
    k[9..17].copy_from_slice(&seq.to_be_bytes());
    k
}

fn body_key(body_id: u64, chunk: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'b';
    k[1..9].copy_from_slice(&body_id.to_be_bytes());
    k[9..13].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// `space` ‖ queue id ‖ a name: the key of a de-duplication record
/// (`d`, the message id) or of a group offset (`o`, the group name).
fn named_key(space: u8, queue_id: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.push(space);
    k.extend_from_slice(&queue_id.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

fn dedup_key(queue_id: u64, id: &str) -> Vec<u8> {
    named_key(b'd', queue_id, id)
}

fn offset_key(queue_id: u64, group: &str) -> Vec<u8> {
    named_key(b'o', queue_id, group)
}

/// The queue id of a [`named_key`] (`what` names the record in errors).
fn named_key_queue(k: &[u8], what: &str) -> Result<u64, StoreError> {
    if k.len() < 9 {
        return Err(StoreError::Corrupt(format!("{what} key too short")));
    }
    Ok(be_u64(&k[1..9]))
}

/// The name of a [`named_key`].
fn named_key_name(k: &[u8], what: &str) -> Result<String, StoreError> {
    std::str::from_utf8(&k[9..])
        .map(str::to_owned)
        .map_err(|_| StoreError::Corrupt(format!("{what} key: invalid UTF-8")))
}

/// The key prefix of one queue in a key space (`m`, `d` or `o`).
fn queue_prefix(space: u8, queue_id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = space;
    k[1..9].copy_from_slice(&queue_id.to_be_bytes());
    k
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `meta` key of the commit counter, written with every sync.
const COMMIT_KEY: &str = "commit";

fn be_u64_checked(b: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("commit counter of wrong length".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A file beside sled's (`commit.mark`) holding the number of the last
/// commit whose sync succeeded, with a CRC.
///
/// sled 0.34 treats a damaged log record as the torn end of its log: it
/// drops everything after it and starts without an error. Every sync
/// writes a counter into sled and, once durable, into this file; at open,
/// a counter in sled below the file's means confirmed writes were lost,
/// and the store refuses to open. The file is written after each sync but
/// fsync'd only at a clean shutdown (an fsync per commit would double
/// their cost), so after a crash it may lag behind, never run ahead.
#[derive(Debug)]
struct CommitMark(File);

impl CommitMark {
    fn open(dir: &Path) -> Result<CommitMark, StoreError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("commit.mark"))?;
        Ok(CommitMark(f))
    }

    /// The marked commit; `None` for a new, short or damaged file.
    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 12];
        self.0.read_exact_at(&mut buf, 0).ok()?;
        let (n, crc) = buf.split_at(8);
        (crc32fast::hash(n).to_be_bytes() == crc)
            .then(|| u64::from_be_bytes(n.try_into().unwrap_or_default()))
    }

    fn write(&self, n: u64) {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&n.to_be_bytes());
        buf[8..].copy_from_slice(&crc32fast::hash(&n.to_be_bytes()).to_be_bytes());
        if let Err(e) = self.0.write_all_at(&buf, 0) {
            tracing::warn!(error = %e, "could not write commit.mark");
        }
    }

    fn sync(&self) {
        if let Err(e) = self.0.sync_data() {
            tracing::warn!(error = %e, "could not sync commit.mark");
        }
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn chunk_count(len: usize) -> u32 {
    u32::try_from(len.div_ceil(BODY_CHUNK_BYTES).max(1)).unwrap_or(u32::MAX)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        Self::open_with_lock_wait(dir, cache_bytes, LOCK_WAIT)
    }

    fn open_with_lock_wait(
        dir: &Path,
        cache_bytes: u64,
        lock_wait: std::time::Duration,
    ) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        remove_incomplete_snapshots(dir)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500));
        let db = open_waiting_for_lock(&config, dir, lock_wait)?;
        match Self::finish_open(db.clone(), dir) {
            Ok(store) => Ok(store),
            Err(e) => {
                if let StoreError::Io(_) = e {
                    // Dropping the last handle flushes, which after an I/O
                    // error (a full disk) may never return; the caller is
                    // about to give up on the directory anyway.
                    std::mem::forget(db);
                }
                Err(e)
            }
        }
    }

    fn finish_open(db: sled::Db, dir: &Path) -> Result<SledStore, StoreError> {
        let db_file = File::open(dir.join("db"))?;
        let meta = db.open_tree("meta")?;
        let committed = match meta.get(COMMIT_KEY)? {
            Some(v) => be_u64_checked(&v)?,
            None => 0,
        };
        let mark = CommitMark::open(dir)?;
        if let Some(marked) = mark.read() {
            if marked > committed {
                return Err(StoreError::Corrupt(format!(
                    "writes that were confirmed are missing: the store ends at commit {committed}, \
                     but commit {marked} was made durable (a damaged or truncated file in {})",
                    dir.display()
                )));
            }
        }
        Ok(SledStore {
            commits: parking_lot::Mutex::new(committed),
            mark,
            exchanges: db.open_tree("exchanges")?,
            queues: db.open_tree("queues")?,
            bindings: db.open_tree("bindings")?,
            users: db.open_tree("users")?,
            messages: db.open_tree("messages")?,
            meta,
            db,
            db_file,
        })
    }

    /// Adds the bodies (in chunks) and the metadata (bodies not inline)
    /// of `b` to `batch`.
    /// The keys and values a batch writes for its bodies (chunked) and
    /// metadata, bodies first.
    fn puts(b: &MessageBatch<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(b.put_bodies.len() + b.put_metas.len());
        for (body_id, body) in &b.put_bodies {
            let head_len = body.len().min(BODY_CHUNK_BYTES);
            let mut w = Writer::new();
            w.u32(crc32fast::hash(body))
                .u64(body.len() as u64)
                .bytes(&body[..head_len]);
            out.push((body_key(*body_id, 0).to_vec(), w.finish()));
            for (i, part) in body[head_len..].chunks(BODY_CHUNK_BYTES).enumerate() {
                let chunk = u32::try_from(i + 1).unwrap_or(u32::MAX);
                out.push((body_key(*body_id, chunk).to_vec(), part.to_vec()));
            }
        }
        for (queue_id, seq, meta) in &b.put_metas {
            out.push((
                meta_key(*queue_id, *seq).to_vec(),
                codec::encode_meta(meta, None),
            ));
        }
        out
    }

    fn add_puts(batch: &mut sled::Batch, b: &MessageBatch<'_>) {
        for (key, value) in Self::puts(b) {
            batch.insert(key, value);
        }
    }

    /// The length of a stored body, from its head chunk alone (whose record
    /// CRC is checked; the whole-body CRC is left to [`Self::read_body`]).
    /// `None` if the body is missing.
    fn body_len(&self, body_id: u64) -> Result<Option<u64>, StoreError> {
        let Some(first) = self.messages.get(body_key(body_id, 0))? else {
            return Ok(None);
        };
        let mut r = Reader::open(&first, "body")?;
        let _crc = r.u32()?;
        Ok(Some(r.u64()?))
    }

    fn read_body(&self, body_id: u64) -> Result<Option<Bytes>, StoreError> {
        let Some(first) = self.messages.get(body_key(body_id, 0))? else {
            return Ok(None);
        };
        let mut r = Reader::open(&first, "body")?;
        let crc = r.u32()?;
        let len = usize::try_from(r.u64()?)
            .map_err(|_| StoreError::Corrupt("body: impossible length".into()))?;
        let head = r.bytes()?;
        let mut body = BytesMut::with_capacity(len.min(64 * 1024 * 1024));
        body.extend_from_slice(head);
        for chunk in 1..chunk_count(len) {
            let part = self
                .messages
                .get(body_key(body_id, chunk))?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("body {body_id}: chunk {chunk} missing"))
                })?;
            body.extend_from_slice(&part);
        }
        if body.len() != len || crc32fast::hash(&body) != crc {
            return Err(StoreError::Corrupt(format!(
                "body {body_id}: checksum mismatch"
            )));
        }
        Ok(Some(body.freeze()))
    }
}

/// The keys recovery and a queue's deletion remove, applied in batches of [`ORPHAN_BATCH_KEYS`]
/// (the removals need no atomicity: an orphan left by a crash is found
/// again at the next recovery).
struct Orphans<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    len: usize,
}

impl<'a> Orphans<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Orphans {
            tree,
            batch: sled::Batch::default(),
            len: 0,
        }
    }

    fn remove(&mut self, key: sled::IVec) -> Result<(), StoreError> {
        self.batch.remove(key);
        self.len += 1;
        if self.len >= ORPHAN_BATCH_KEYS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.len > 0 {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.len = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), StoreError> {
        self.flush()
    }
}

impl Store for SledStore {
    fn recover(&self) -> Result<Recovered, StoreError> {
        let mut out = Recovered {
            clean_shutdown: self.meta.get("clean")?.is_some_and(|v| v.as_ref() == [1]),
            ..Recovered::default()
        };
        for kv in self.exchanges.iter() {
            out.exchanges.push(codec::decode_exchange(&kv?.1)?);
        }
        for kv in self.queues.iter() {
            out.queues.push(codec::decode_queue(&kv?.1)?);
        }
        for kv in self.bindings.iter() {
            out.bindings.push(codec::decode_binding(&kv?.0)?);
        }
        let live: HashSet<u64> = out.queues.iter().map(|q| q.id).collect();
        let streams: HashMap<u64, &crate::protocol::command::QueueArgs> = out
            .queues
            .iter()
            .filter(|q| q.args.stream)
            .map(|q| (q.id, &q.args))
            .collect();
        // A stream's segments as the scan meets its copies (in offset order).
        let mut segments: std::collections::VecDeque<super::StreamSegment> = Default::default();
        let mut orphans = Orphans::new(&self.messages);
        // The length of each separately stored body (`None`: missing), read
        // once from its head chunk however many copies share it.
        let mut body_lens: HashMap<u64, Option<u64>> = HashMap::new();
        for kv in self.messages.scan_prefix(b"m") {
            let (k, v) = kv?;
            if k.len() != 17 {
                return Err(StoreError::Corrupt("message key of wrong length".into()));
            }
            let (queue_id, seq) = (be_u64(&k[1..9]), be_u64(&k[9..17]));
            if !live.contains(&queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let meta = codec::view_meta(&v)?;
            out.max_body_id = out.max_body_id.max(meta.body_id);
            if meta.volatile {
                orphans.remove(k)?;
                continue;
            }
            let len = match meta.inline_body {
                Some(body) => body.len() as u64,
                None => {
                    let len = match body_lens.get(&meta.body_id) {
                        Some(len) => *len,
                        None => {
                            let len = self.body_len(meta.body_id)?;
                            body_lens.insert(meta.body_id, len);
                            len
                        }
                    };
                    let Some(len) = len else {
                        tracing::warn!(queue_id, seq, "message without a body, dropped");
                        orphans.remove(k)?;
                        continue;
                    };
                    let refs = out.shared_refs.entry(meta.body_id).or_insert(0);
                    *refs = refs.saturating_add(1);
                    len
                }
            };
            match out.stored.last_mut() {
                Some(q) if q.queue_id == queue_id => {
                    // Keys come in (queue id, seq) order.
                    q.last_seq = seq;
                    q.count += 1;
                    q.bytes = q.bytes.saturating_add(len);
                }
                _ => {
                    if let Some(prev) = out.stored.last_mut() {
                        prev.segments = std::mem::take(&mut segments).into();
                    }
                    out.stored.push(StoredQueue {
                        queue_id,
                        first_seq: seq,
                        last_seq: seq,
                        count: 1,
                        bytes: len,
                        segments: Vec::new(),
                    })
                }
            }
            if let Some(args) = streams.get(&queue_id) {
                super::add_to_segments(&mut segments, args, seq, len, meta.published_at);
            }
        }
        if let Some(last) = out.stored.last_mut() {
            last.segments = segments.into();
        }
        drop(body_lens);
        for kv in self.messages.scan_prefix(b"b") {
            let (k, _) = kv?;
            if k.len() != 13 {
                return Err(StoreError::Corrupt("body key of wrong length".into()));
            }
            if !out.shared_refs.contains_key(&be_u64(&k[1..9])) {
                orphans.remove(k)?;
            }
        }
        // De-duplication records: kept while inside their window and their
        // queue exists; expired and orphaned ones are dropped here.
        let now = now_ms();
        for kv in self.messages.scan_prefix(b"d") {
            let (k, v) = kv?;
            let queue_id = named_key_queue(&k, "dedup")?;
            if !live.contains(&queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let expires_at = codec::decode_dedup(&v)?;
            if expires_at <= now {
                orphans.remove(k)?;
                continue;
            }
            let id = named_key_name(&k, "dedup")?;
            out.dedup.push(DedupEntry {
                queue_id,
                id,
                expires_at,
            });
        }
        for kv in self.messages.scan_prefix(b"o") {
            let (k, v) = kv?;
            let queue_id = named_key_queue(&k, "offset")?;
            if !live.contains(&queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let group = named_key_name(&k, "offset")?;
            out.offsets
                .push((queue_id, group, codec::decode_offset(&v)?));
        }
        orphans.finish()?;
        self.meta.insert("clean", &[0u8])?;
        self.sync()?;
        Ok(out)
    }

    fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let mut out = Vec::new();
        if from >= to || limit == 0 {
            return Ok(out);
        }
        // Bodies stored apart, read once per call however many copies in
        // the result share them.
        let mut bodies: HashMap<u64, Bytes> = HashMap::new();
        for kv in self
            .messages
            .range(meta_key(queue_id, from)..meta_key(queue_id, to))
        {
            let (k, v) = kv?;
            if k.len() != 17 {
                return Err(StoreError::Corrupt("message key of wrong length".into()));
            }
            let seq = be_u64(&k[9..17]);
            let meta = codec::view_meta(&v)?;
            let (body, inline) = match meta.inline_body {
                Some(body) => (Bytes::copy_from_slice(body), true),
                None => match bodies.get(&meta.body_id) {
                    Some(body) => (body.clone(), false),
                    None => match self.read_body(meta.body_id)? {
                        Some(body) => {
                            bodies.insert(meta.body_id, body.clone());
                            (body, false)
                        }
                        None => {
                            tracing::warn!(queue_id, seq, "message without a body, skipped");
                            continue;
                        }
                    },
                },
            };
            out.push(RecoveredMessage {
                queue_id,
                seq,
                meta: meta.to_meta(),
                body,
                inline,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        self.exchanges
            .insert(def.name.as_bytes(), codec::encode_exchange(def))?;
        Ok(())
    }

    fn delete_exchange(&self, name: &str) -> Result<(), StoreError> {
        self.exchanges.remove(name.as_bytes())?;
        let mut batch = sled::Batch::default();
        for kv in self.bindings.iter() {
            let (k, _) = kv?;
            if codec::decode_binding(&k)?.exchange == name {
                batch.remove(k);
            }
        }
        self.bindings.apply_batch(batch)?;
        Ok(())
    }

    fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        self.queues
            .insert(def.name.as_bytes(), codec::encode_queue(def))?;
        Ok(())
    }

    fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for kv in self.bindings.iter() {
            let (k, _) = kv?;
            if codec::decode_binding(&k)?.queue == def.name {
                batch.remove(k);
            }
        }
        self.bindings.apply_batch(batch)?;
        self.queues.remove(def.name.as_bytes())?;
        // Its message copies and de-duplication records become orphans:
        // removed here, and in any case at the next recovery (their queue id
        // is no longer live). Bodies only they referenced go at recovery.
        // In batches of a bounded size: a queue or stream of millions of
        // copies is never one batch in RAM.
        let mut doomed = Orphans::new(&self.messages);
        for space in [b'm', b'd', b'o'] {
            for kv in self.messages.scan_prefix(queue_prefix(space, def.id)) {
                doomed.remove(kv?.0)?;
            }
        }
        doomed.finish()
    }

    fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.bindings.insert(codec::encode_binding(def), &[])?;
        Ok(())
    }

    fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.bindings.remove(codec::encode_binding(def))?;
        Ok(())
    }

    fn apply(&self, b: &MessageBatch<'_>) -> Result<(), StoreError> {
        // sled 0.34 seals and writes its IO buffer for every `apply_batch`
        // (a pwrite and a sync_file_range each), while a plain insert or
        // remove only reserves log space. So the common cases avoid batches:
        // - a message for one queue with a small body is one key (meta and
        //   body inline): one insert, atomic by itself (with de-duplication
        //   records, that same key goes in a batch with them);
        // - removals need no atomicity (a body left behind by a crash is an
        //   orphan, collected at recovery): plain removes, meta first.
        // Only a fan-out to several durable queues, a large body, or any
        // de-duplication record (which must land with its message, or go
        // with its removal) takes the batch, which keeps it all-or-nothing
        // across a crash.
        let no_offsets = b.put_offsets.is_empty();
        let no_messages = b.put_metas.is_empty()
            && b.put_bodies.is_empty()
            && b.del_metas.is_empty()
            && b.del_bodies.is_empty();
        let no_dedup = b.put_dedup.is_empty() && b.del_dedup.is_empty();
        if !no_offsets && no_messages && no_dedup {
            // Consumer-group commits alone: each key stands by itself.
            for (queue_id, group, offset) in &b.put_offsets {
                self.messages
                    .insert(offset_key(*queue_id, group), codec::encode_offset(*offset))?;
            }
            return Ok(());
        }
        let no_dedup = no_dedup && no_offsets;
        if no_dedup && b.put_metas.is_empty() && b.put_bodies.is_empty() {
            for (queue_id, seq) in &b.del_metas {
                self.messages.remove(meta_key(*queue_id, *seq))?;
            }
            for (body_id, len) in &b.del_bodies {
                for chunk in 0..chunk_count(*len) {
                    self.messages.remove(body_key(*body_id, chunk))?;
                }
            }
            return Ok(());
        }
        // One small body for its only copy: stored inline with the meta.
        let inline = match (
            &b.put_bodies[..],
            &b.put_metas[..],
            &b.del_metas[..],
            &b.del_bodies[..],
        ) {
            ([(body_id, body)], [(queue_id, seq, meta)], [], [])
                if body.len() <= BODY_CHUNK_BYTES && *body_id == meta.body_id =>
            {
                Some((
                    meta_key(*queue_id, *seq),
                    codec::encode_meta(meta, Some(body)),
                ))
            }
            _ => None,
        };
        if inline.is_none()
            && no_dedup
            && b.ordered_only
            && b.del_metas.is_empty()
            && b.del_bodies.is_empty()
        {
            // Key by key, bodies first (see `MessageBatch::ordered_only`).
            for (key, value) in Self::puts(b) {
                self.messages.insert(key, value)?;
            }
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        if let Some((key, value)) = inline {
            if no_dedup {
                self.messages.insert(key, value)?;
                return Ok(());
            }
            batch.insert(&key, value);
        } else {
            Self::add_puts(&mut batch, b);
        }
        for (queue_id, seq) in &b.del_metas {
            batch.remove(&meta_key(*queue_id, *seq));
        }
        for (body_id, len) in &b.del_bodies {
            for chunk in 0..chunk_count(*len) {
                batch.remove(&body_key(*body_id, chunk));
            }
        }
        // Removals first: a record both removed and written in one batch is
        // written (a renewed window).
        for (queue_id, id) in &b.del_dedup {
            batch.remove(dedup_key(*queue_id, id));
        }
        for d in &b.put_dedup {
            batch.insert(
                dedup_key(d.queue_id, &d.id),
                codec::encode_dedup(d.expires_at),
            );
        }
        for (queue_id, group, offset) in &b.put_offsets {
            batch.insert(offset_key(*queue_id, group), codec::encode_offset(*offset));
        }
        self.messages.apply_batch(batch)?;
        Ok(())
    }

    fn set_clean(&self, clean: bool) -> Result<(), StoreError> {
        self.meta.insert("clean", &[u8::from(clean)])?;
        if clean {
            // At rest the mark must be on disk, so that damage done to
            // the store while it is stopped is found at the next start.
            self.mark.sync();
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        let mut commits = self.commits.lock();
        let next = *commits + 1;
        self.meta.insert(COMMIT_KEY, &next.to_be_bytes())?;
        self.db.flush()?;
        self.db_file.sync_data()?;
        *commits = next;
        self.mark.write(next);
        Ok(())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users
            .iter()
            .map(|kv| codec::decode_user(&kv?.1))
            .collect()
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.users
            .insert(user.name.as_bytes(), codec::encode_user(user))?;
        Ok(())
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.users.remove(name.as_bytes())?;
        Ok(())
    }

    fn size_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }
}

#[cfg(test)]
mod tests;
