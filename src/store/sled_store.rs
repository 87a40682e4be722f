//! [`SledStore`]: the [`Store`] on sled 0.34, one tree per concern.
//!
//! Trees: `exchanges` (name → def), `queues` (name → def), `bindings`
//! (encoded def → empty), `messages` and `meta` (`clean` flag). The
//! `messages` tree holds two key spaces so that one publish is one atomic
//! `Batch`: `m` ‖ queue id ‖ seq → metadata, and `b` ‖ body id ‖ chunk →
//! body bytes. Bodies are cut into 64 KiB chunks so that none reaches sled's
//! blob files (values over ~128 KiB), which sled never fsyncs.
//!
//! Durability: sled's `flush` ends in `sync_file_range`, which is not a
//! barrier against power loss, so [`Store::sync`] follows it with
//! `fdatasync` of sled's `db` file (see `shared/reference/reliability.md` §2).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::codec::{self, Reader, Writer};
use super::{
    BindingDef, ExchangeDef, MessageBatch, QueueDef, Recovered, RecoveredMessage, Store, StoreError,
};

/// Bodies are stored in chunks of at most this many bytes.
pub const BODY_CHUNK_BYTES: usize = 64 * 1024;
/// sled's page cache size: its default (1 GiB) is far too large for a broker.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

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

/// The sled-backed store.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    db_file: File,
    exchanges: sled::Tree,
    queues: sled::Tree,
    bindings: sled::Tree,
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
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500));
        let db = open_waiting_for_lock(&config, dir, lock_wait)?;
        let db_file = File::open(dir.join("db"))?;
        Ok(SledStore {
            exchanges: db.open_tree("exchanges")?,
            queues: db.open_tree("queues")?,
            bindings: db.open_tree("bindings")?,
            messages: db.open_tree("messages")?,
            meta: db.open_tree("meta")?,
            db,
            db_file,
        })
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
        let mut bodies: HashMap<u64, Bytes> = HashMap::new();
        let mut orphans = sled::Batch::default();
        for kv in self.messages.scan_prefix(b"m") {
            let (k, v) = kv?;
            if k.len() != 17 {
                return Err(StoreError::Corrupt("message key of wrong length".into()));
            }
            let (queue_id, seq) = (be_u64(&k[1..9]), be_u64(&k[9..17]));
            if !live.contains(&queue_id) {
                orphans.remove(k);
                continue;
            }
            let (meta, inline) = codec::decode_meta(&v)?;
            if let Some(body) = inline {
                let body = Bytes::from(body);
                bodies.insert(meta.body_id, body.clone());
                out.messages.push(RecoveredMessage {
                    queue_id,
                    seq,
                    meta,
                    body,
                });
                continue;
            }
            let body = match bodies.get(&meta.body_id) {
                Some(b) => b.clone(),
                None => match self.read_body(meta.body_id)? {
                    Some(b) => {
                        bodies.insert(meta.body_id, b.clone());
                        b
                    }
                    None => {
                        tracing::warn!(queue_id, seq, "message without a body, dropped");
                        orphans.remove(k);
                        continue;
                    }
                },
            };
            out.messages.push(RecoveredMessage {
                queue_id,
                seq,
                meta,
                body,
            });
        }
        for kv in self.messages.scan_prefix(b"b") {
            let (k, _) = kv?;
            if k.len() != 13 {
                return Err(StoreError::Corrupt("body key of wrong length".into()));
            }
            if !bodies.contains_key(&be_u64(&k[1..9])) {
                orphans.remove(k);
            }
        }
        self.messages.apply_batch(orphans)?;
        self.meta.insert("clean", &[0u8])?;
        self.sync()?;
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
        // Its message copies become orphans: removed here when cheap, and in
        // any case at the next recovery (their queue id is no longer live).
        let mut batch = sled::Batch::default();
        let mut start = [0u8; 9];
        start[0] = b'm';
        start[1..9].copy_from_slice(&def.id.to_be_bytes());
        for kv in self.messages.scan_prefix(start) {
            batch.remove(kv?.0);
        }
        self.messages.apply_batch(batch)?;
        Ok(())
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
        //   body inline): one insert, atomic by itself;
        // - removals need no atomicity (a body left behind by a crash is an
        //   orphan, collected at recovery): plain removes, meta first.
        // Only a fan-out to several durable queues, or a large body, takes
        // the batch, which keeps it all-or-nothing across a crash.
        if b.put_metas.is_empty() && b.put_bodies.is_empty() {
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
        if let ([(body_id, body)], [(queue_id, seq, meta)], [], []) = (
            &b.put_bodies[..],
            &b.put_metas[..],
            &b.del_metas[..],
            &b.del_bodies[..],
        ) {
            if body.len() <= BODY_CHUNK_BYTES && *body_id == meta.body_id {
                self.messages.insert(
                    meta_key(*queue_id, *seq),
                    codec::encode_meta(meta, Some(body)),
                )?;
                return Ok(());
            }
        }
        let mut batch = sled::Batch::default();
        for (body_id, body) in &b.put_bodies {
            let head_len = body.len().min(BODY_CHUNK_BYTES);
            let mut w = Writer::new();
            w.u32(crc32fast::hash(body))
                .u64(body.len() as u64)
                .bytes(&body[..head_len]);
            batch.insert(&body_key(*body_id, 0), w.finish());
            for (i, part) in body[head_len..].chunks(BODY_CHUNK_BYTES).enumerate() {
                let chunk = u32::try_from(i + 1).unwrap_or(u32::MAX);
                batch.insert(&body_key(*body_id, chunk), part);
            }
        }
        for (queue_id, seq, meta) in &b.put_metas {
            batch.insert(&meta_key(*queue_id, *seq), codec::encode_meta(meta, None));
        }
        for (queue_id, seq) in &b.del_metas {
            batch.remove(&meta_key(*queue_id, *seq));
        }
        for (body_id, len) in &b.del_bodies {
            for chunk in 0..chunk_count(*len) {
                batch.remove(&body_key(*body_id, chunk));
            }
        }
        self.messages.apply_batch(batch)?;
        Ok(())
    }

    fn set_clean(&self, clean: bool) -> Result<(), StoreError> {
        self.meta.insert("clean", &[u8::from(clean)])?;
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db_file.sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_directory_in_use_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let second =
            SledStore::open_with_lock_wait(dir.path(), DEFAULT_CACHE_BYTES, Duration::ZERO);
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
}
