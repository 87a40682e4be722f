//! The log's small state: publisher de-duplication records, stream group
//! offsets and rewritten metadata of requeued copies, in RAM ([`Small`],
//! with what changed since the last checkpoint) and in sled as of the last
//! checkpoint ([`Side`]), beside each queue's commit mark.
//!
//! Trees, keys big-endian so that a queue's records are one prefix:
//! `log_dedup` (queue ‖ message id → expires_at), `log_offsets` (queue ‖
//! group → offset), `log_rewrites` (queue ‖ seq → message record without
//! body), `log_marks` (queue → one past the last index its segments had
//! synced at the checkpoint).

use std::collections::{HashMap, HashSet};

use super::super::StoreError;

/// The sled trees of the log's small state.
#[derive(Debug)]
pub(super) struct Side {
    dedup: sled::Tree,
    offsets: sled::Tree,
    rewrites: sled::Tree,
    marks: sled::Tree,
}

fn key(queue: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + rest.len());
    k.extend_from_slice(&queue.to_be_bytes());
    k.extend_from_slice(rest);
    k
}

fn split_key(k: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let (q, rest) = k
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt("log state key too short".into()))?;
    Ok((u64::from_be_bytes(*q), rest))
}

fn be_u64(v: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("log state value of wrong length".into()))?;
    Ok(u64::from_be_bytes(b))
}

impl Side {
    pub(super) fn open(db: &sled::Db) -> Result<Side, StoreError> {
        Ok(Side {
            dedup: db.open_tree("log_dedup")?,
            offsets: db.open_tree("log_offsets")?,
            rewrites: db.open_tree("log_rewrites")?,
            marks: db.open_tree("log_marks")?,
        })
    }

    /// The small state as of the last checkpoint.
    pub(super) fn load(&self) -> Result<Small, StoreError> {
        let mut s = Small::default();
        for kv in self.dedup.iter() {
            let (k, v) = kv?;
            let (q, id) = split_key(&k)?;
            let id = String::from_utf8(id.to_vec())
                .map_err(|_| StoreError::Corrupt("message id not UTF-8".into()))?;
            s.dedup.insert((q, id), be_u64(&v)?);
        }
        for kv in self.offsets.iter() {
            let (k, v) = kv?;
            let (q, g) = split_key(&k)?;
            let g = String::from_utf8(g.to_vec())
                .map_err(|_| StoreError::Corrupt("group name not UTF-8".into()))?;
            s.offsets.insert((q, g), be_u64(&v)?);
        }
        for kv in self.rewrites.iter() {
            let (k, v) = kv?;
            let (q, seq) = split_key(&k)?;
            s.rewrites.insert((q, be_u64(seq)?), v.to_vec());
        }
        Ok(s)
    }

    /// Each queue's commit mark.
    pub(super) fn marks(&self) -> Result<HashMap<u64, u64>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.marks.iter() {
            let (k, v) = kv?;
            out.insert(split_key(&k)?.0, be_u64(&v)?);
        }
        Ok(out)
    }

    /// Writes a checkpoint's small state and marks (the caller syncs sled).
    pub(super) fn write(&self, s: &Snapshot, marks: &[(u64, u64)]) -> Result<(), StoreError> {
        for q in &s.dropped {
            self.forget_queue(*q)?;
        }
        for ((q, id), v) in &s.dedup {
            let k = key(*q, id.as_bytes());
            match v {
                Some(v) => self.dedup.insert(k, &v.to_be_bytes())?,
                None => self.dedup.remove(k)?,
            };
        }
        for ((q, g), v) in &s.offsets {
            let k = key(*q, g.as_bytes());
            match v {
                Some(v) => self.offsets.insert(k, &v.to_be_bytes())?,
                None => self.offsets.remove(k)?,
            };
        }
        for ((q, seq), v) in &s.rewrites {
            let k = key(*q, &seq.to_be_bytes());
            match v {
                Some(v) => self.rewrites.insert(k, v.as_slice())?,
                None => self.rewrites.remove(k)?,
            };
        }
        for (q, mark) in marks {
            self.marks.insert(q.to_be_bytes(), &mark.to_be_bytes())?;
        }
        Ok(())
    }

    /// Removes everything of queue `q`.
    pub(super) fn forget_queue(&self, q: u64) -> Result<(), StoreError> {
        for t in [&self.dedup, &self.offsets, &self.rewrites] {
            for kv in t.scan_prefix(q.to_be_bytes()) {
                t.remove(kv?.0)?;
            }
        }
        self.marks.remove(q.to_be_bytes())?;
        Ok(())
    }

    /// The queues anything is kept for.
    pub(super) fn queues(&self) -> Result<HashSet<u64>, StoreError> {
        let mut out = HashSet::new();
        for t in [&self.dedup, &self.offsets, &self.rewrites, &self.marks] {
            for kv in t.iter() {
                out.insert(split_key(&kv?.0)?.0);
            }
        }
        Ok(out)
    }
}

/// The small state in RAM, and what changed since the last checkpoint.
#[derive(Debug, Default)]
pub(super) struct Small {
    pub(super) dedup: HashMap<(u64, String), u64>,
    pub(super) offsets: HashMap<(u64, String), u64>,
    pub(super) rewrites: HashMap<(u64, u64), Vec<u8>>,
    dirty_dedup: HashSet<(u64, String)>,
    dirty_offsets: HashSet<(u64, String)>,
    dirty_rewrites: HashSet<(u64, u64)>,
    dropped: Vec<u64>,
}

/// A rewritten copy's `(queue, seq)` and its record (`None`: removed).
type RewriteChange = ((u64, u64), Option<Vec<u8>>);

/// What a checkpoint writes of the small state: each changed key's value
/// (`None`: removed), and the queues dropped.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    dedup: Vec<((u64, String), Option<u64>)>,
    offsets: Vec<((u64, String), Option<u64>)>,
    rewrites: Vec<RewriteChange>,
    dropped: Vec<u64>,
}

impl Small {
    pub(super) fn dedup(&mut self, q: u64, id: &str, expires_at: u64) {
        self.dedup.insert((q, id.to_owned()), expires_at);
        self.dirty_dedup.insert((q, id.to_owned()));
    }
    pub(super) fn undedup(&mut self, q: u64, id: &str) {
        if self.dedup.remove(&(q, id.to_owned())).is_some() {
            self.dirty_dedup.insert((q, id.to_owned()));
        }
    }
    pub(super) fn offset(&mut self, q: u64, group: &str, offset: u64) {
        self.offsets.insert((q, group.to_owned()), offset);
        self.dirty_offsets.insert((q, group.to_owned()));
    }
    pub(super) fn rewrite(&mut self, q: u64, seq: u64, record: Vec<u8>) {
        self.rewrites.insert((q, seq), record);
        self.dirty_rewrites.insert((q, seq));
    }
    pub(super) fn unrewrite(&mut self, q: u64, seq: u64) {
        if self.rewrites.is_empty() {
            return;
        }
        if self.rewrites.remove(&(q, seq)).is_some() {
            self.dirty_rewrites.insert((q, seq));
        }
    }
    /// Rewrites of queue `q`'s copies with `from <= seq < to` removed.
    pub(super) fn unrewrite_range(&mut self, q: u64, from: u64, to: u64) {
        let gone: Vec<(u64, u64)> = self
            .rewrites
            .keys()
            .filter(|(rq, seq)| *rq == q && (from..to).contains(seq))
            .copied()
            .collect();
        for k in gone {
            self.rewrites.remove(&k);
            self.dirty_rewrites.insert(k);
        }
    }
    pub(super) fn drop_queue(&mut self, q: u64) {
        self.dedup.retain(|k, _| k.0 != q);
        self.offsets.retain(|k, _| k.0 != q);
        self.rewrites.retain(|k, _| k.0 != q);
        self.dirty_dedup.retain(|k| k.0 != q);
        self.dirty_offsets.retain(|k| k.0 != q);
        self.dirty_rewrites.retain(|k| k.0 != q);
        self.dropped.push(q);
    }

    /// What changed since the last snapshot, with its current values.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            dedup: std::mem::take(&mut self.dirty_dedup)
                .into_iter()
                .map(|k| {
                    let v = self.dedup.get(&k).copied();
                    (k, v)
                })
                .collect(),
            offsets: std::mem::take(&mut self.dirty_offsets)
                .into_iter()
                .map(|k| {
                    let v = self.offsets.get(&k).copied();
                    (k, v)
                })
                .collect(),
            rewrites: std::mem::take(&mut self.dirty_rewrites)
                .into_iter()
                .map(|k| {
                    let v = self.rewrites.get(&k).cloned();
                    (k, v)
                })
                .collect(),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}
