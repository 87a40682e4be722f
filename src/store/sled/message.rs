//! [`MessageStore`] on sled: the `messages` tree (copies, bodies in
//! chunks, de-duplication records and group offsets, in four key spaces:
//! see the [module doc](super)) and the `clean` flag in `meta`.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::{SledStore, BODY_CHUNK_BYTES};
use crate::store::codec::{self, Reader, Writer};
use crate::store::message::{now_ms, Tally};
use crate::store::{
    DedupEntry, Durable, MessageBatch, MessageStore, QueueDef, RecoveredMessage, StoreError,
    StoredMessages,
};

/// Recovery removes orphans in batches of at most this many keys, so that a
/// large backlog of them never sits in RAM at once.
const ORPHAN_BATCH_KEYS: usize = 10_000;

pub(super) fn meta_key(queue_id: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'm';
    k[1..9].copy_from_slice(&queue_id.to_be_bytes());
    k[9..17].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn body_key(body_id: u64, chunk: u32) -> [u8; 13] {
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

pub(super) fn dedup_key(queue_id: u64, id: &str) -> Vec<u8> {
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
pub(super) fn queue_prefix(space: u8, queue_id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = space;
    k[1..9].copy_from_slice(&queue_id.to_be_bytes());
    k
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

impl MessageStore for SledStore {
    fn recover(&self, queues: &[QueueDef]) -> Result<StoredMessages, StoreError> {
        let clean_shutdown = self.was_clean()?;
        let first_start = self.never_started()?;
        let mut tally = Tally::new(queues);
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
            if !tally.is_live(queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let meta = codec::view_meta(&v)?;
            tally.saw_body(meta.body_id);
            if meta.volatile {
                orphans.remove(k)?;
                continue;
            }
            let (len, shared) = match meta.inline_body {
                Some(body) => (body.len() as u64, None),
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
                    (len, Some(meta.body_id))
                }
            };
            tally.copy(queue_id, seq, len, shared, meta.published_at);
        }
        drop(body_lens);
        for kv in self.messages.scan_prefix(b"b") {
            let (k, _) = kv?;
            if k.len() != 13 {
                return Err(StoreError::Corrupt("body key of wrong length".into()));
            }
            if !tally.is_shared(be_u64(&k[1..9])) {
                orphans.remove(k)?;
            }
        }
        // De-duplication records: kept while inside their window and their
        // queue exists; expired and orphaned ones are dropped here.
        let now = now_ms();
        for kv in self.messages.scan_prefix(b"d") {
            let (k, v) = kv?;
            let queue_id = named_key_queue(&k, "dedup")?;
            if !tally.is_live(queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let expires_at = codec::decode_dedup(&v)?;
            if expires_at <= now {
                orphans.remove(k)?;
                continue;
            }
            let id = named_key_name(&k, "dedup")?;
            tally.dedup(DedupEntry {
                queue_id,
                id,
                expires_at,
            });
        }
        for kv in self.messages.scan_prefix(b"o") {
            let (k, v) = kv?;
            let queue_id = named_key_queue(&k, "offset")?;
            if !tally.is_live(queue_id) {
                orphans.remove(k)?;
                continue;
            }
            let group = named_key_name(&k, "offset")?;
            tally.offset(queue_id, group, codec::decode_offset(&v)?);
        }
        orphans.finish()?;
        self.meta.insert("clean", &[0u8])?;
        self.sync()?;
        let mut out = tally.finish(clean_shutdown);
        out.first_start = first_start;
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
            && b.del_ranges.is_empty()
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
        if no_dedup && b.put_metas.is_empty() && b.put_bodies.is_empty() && b.del_ranges.is_empty()
        {
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
        let inline = b
            .sole_copy()
            .filter(|(.., body)| body.len() <= BODY_CHUNK_BYTES)
            .map(|(queue_id, seq, meta, body)| {
                (
                    meta_key(queue_id, seq),
                    codec::encode_meta(meta, Some(body)),
                )
            });
        if inline.is_none()
            && no_dedup
            && b.ordered_only
            && b.del_metas.is_empty()
            && b.del_ranges.is_empty()
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
        for (queue_id, from, to) in b.del_ranges.iter().filter(|r| r.1 < r.2) {
            // Bodies stored apart stay, for recovery (see `del_ranges`).
            for kv in self
                .messages
                .range(meta_key(*queue_id, *from)..meta_key(*queue_id, *to))
            {
                batch.remove(kv?.0);
            }
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

    fn remove_queue(&self, queue_id: u64) -> Result<(), StoreError> {
        // A deleted queue's copies, de-duplication records and offsets are
        // orphans: removed here, and in any case at the next recovery (their
        // queue id is no longer live). Bodies only they referenced go at recovery.
        // In batches of a bounded size: a queue or stream of millions of
        // copies is never one batch in RAM.
        let mut doomed = Orphans::new(&self.messages);
        for space in [b'm', b'd', b'o'] {
            for kv in self.messages.scan_prefix(queue_prefix(space, queue_id)) {
                doomed.remove(kv?.0)?;
            }
        }
        doomed.finish()
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
}
