//! [`MemStore`]: a [`TopologyStore`] and [`MessageStore`] that keep
//! everything in RAM for as long as the handle lives, so that tests can
//! restart a broker in memory: a broker started again on the same
//! `Arc<MemStore>` recovers what the previous one left, as it would from
//! a data directory.
//!
//! It follows [`SledStore`](super::SledStore)'s rules, so that a broker
//! sees the same on either: a batch's sole copy of a body up to
//! [`BODY_CHUNK_BYTES`] is kept inline, any other body apart and counted
//! per copy at recovery; recovery drops the same orphans; bindings come
//! back in the order of their encoding (sled's key order).
//!
//! Every write is durable at once: this store cannot show what a crash
//! loses (the sled store and `tests/it/crash.rs` do). It is not what
//! `--in-memory` runs on: that keeps nothing ([`NullStore`](super::NullStore)).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use super::codec;
use super::message::{now_ms, Tally};
use super::sled::BODY_CHUNK_BYTES;
use super::{
    BindingDef, DedupEntry, Durable, ExchangeDef, MessageBatch, MessageMeta, MessageStore,
    QueueDef, RecoveredMessage, StoreError, StoredMessages, Topology, TopologyStore, UserRecord,
};

/// Both stores in RAM, behind one lock (a batch is applied whole under
/// it, so it is atomic). Share it as an `Arc` and hand a clone to each
/// broker that "restarts" on it.
#[derive(Debug, Default)]
pub(crate) struct MemStore {
    state: Mutex<State>,
    syncs: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    exchanges: BTreeMap<String, ExchangeDef>,
    queues: BTreeMap<String, QueueDef>,
    /// Keyed by their encoding, as sled keys them.
    bindings: BTreeMap<Vec<u8>, BindingDef>,
    users: BTreeMap<String, UserRecord>,
    /// The schema registry's records.
    schemas: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Message copies by (queue id, seq).
    copies: BTreeMap<(u64, u64), Copy>,
    /// Bodies stored apart from their copies, by body id.
    bodies: HashMap<u64, Bytes>,
    /// De-duplication records: (queue id, message id) → end of the window.
    dedup: BTreeMap<(u64, String), u64>,
    /// Group offsets: (queue id, group) → committed offset.
    offsets: BTreeMap<(u64, String), u64>,
    /// Whether the last run was marked clean.
    clean: bool,
    /// [`TopologyStore::cluster_state`].
    cluster: Option<Vec<u8>>,
}

/// One stored message copy.
#[derive(Debug)]
struct Copy {
    meta: MessageMeta,
    /// Its body, when kept with it (the copy is the body's only one).
    inline: Option<Bytes>,
}

impl MemStore {
    /// How many times the store was synced (tests of the group commit).
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl Durable for MemStore {
    /// Every write is already as durable as this store makes it: counted
    /// only.
    fn sync(&self) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl TopologyStore for MemStore {
    fn topology(&self) -> Result<Topology, StoreError> {
        let s = self.state.lock();
        Ok(Topology {
            exchanges: s.exchanges.values().cloned().collect(),
            queues: s.queues.values().cloned().collect(),
            bindings: s.bindings.values().cloned().collect(),
        })
    }

    fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.exchanges.insert(def.name.clone(), def.clone());
        Ok(())
    }

    fn delete_exchange(&self, name: &str) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.exchanges.remove(name);
        s.bindings.retain(|_, b| b.exchange != name);
        Ok(())
    }

    fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.queues.insert(def.name.clone(), def.clone());
        Ok(())
    }

    fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.bindings.retain(|_, b| b.queue != def.name);
        s.queues.remove(&def.name);
        Ok(())
    }

    fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.bindings.insert(codec::encode_binding(def), def.clone());
        Ok(())
    }

    fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.state
            .lock()
            .bindings
            .remove(&codec::encode_binding(def));
        Ok(())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.state.lock().users.values().cloned().collect())
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.state.lock().users.remove(name);
        Ok(())
    }

    fn schema_records(&self) -> Result<Vec<crate::store::SchemaRecord>, StoreError> {
        let s = self.state.lock();
        Ok(s.schemas
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put_schema_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.state
            .lock()
            .schemas
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete_schema_record(&self, key: &[u8]) -> Result<(), StoreError> {
        self.state.lock().schemas.remove(key);
        Ok(())
    }

    fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().cluster.clone())
    }

    fn put_cluster_state(&self, state: &[u8]) -> Result<(), StoreError> {
        self.state.lock().cluster = Some(state.to_vec());
        Ok(())
    }
}

impl MessageStore for MemStore {
    fn recover(&self, queues: &[QueueDef]) -> Result<StoredMessages, StoreError> {
        let mut guard = self.state.lock();
        let State {
            copies,
            bodies,
            dedup,
            offsets,
            clean,
            ..
        } = &mut *guard;
        let mut tally = Tally::new(queues);
        // In key order, as the tally needs.
        copies.retain(|&(queue_id, seq), copy| {
            if !tally.is_live(queue_id) {
                return false;
            }
            tally.saw_body(copy.meta.body_id);
            if copy.meta.volatile {
                return false;
            }
            let (len, shared) = match (&copy.inline, bodies.get(&copy.meta.body_id)) {
                (Some(body), _) => (body.len(), None),
                (None, Some(body)) => (body.len(), Some(copy.meta.body_id)),
                (None, None) => {
                    tracing::warn!(queue_id, seq, "message without a body, dropped");
                    return false;
                }
            };
            tally.copy(queue_id, seq, len as u64, shared, copy.meta.published_at);
            true
        });
        bodies.retain(|body_id, _| tally.is_shared(*body_id));
        let now = now_ms();
        dedup.retain(|(queue_id, id), expires_at| {
            let keep = tally.is_live(*queue_id) && *expires_at > now;
            if keep {
                tally.dedup(DedupEntry {
                    queue_id: *queue_id,
                    id: id.clone(),
                    expires_at: *expires_at,
                });
            }
            keep
        });
        offsets.retain(|(queue_id, group), offset| {
            let keep = tally.is_live(*queue_id);
            if keep {
                tally.offset(*queue_id, group.clone(), *offset);
            }
            keep
        });
        let out = tally.finish(*clean);
        *clean = false;
        Ok(out)
    }

    fn load(
        &self,
        queue_id: u64,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let s = self.state.lock();
        let copies = s.copies.range((queue_id, from)..(queue_id, to));
        let found = copies.filter_map(|(&(_, seq), copy)| {
            let (body, inline) = match &copy.inline {
                Some(body) => (body.clone(), true),
                None => {
                    let Some(body) = s.bodies.get(&copy.meta.body_id) else {
                        tracing::warn!(queue_id, seq, "message without a body, skipped");
                        return None;
                    };
                    (body.clone(), false)
                }
            };
            let meta = copy.meta.clone();
            Some(RecoveredMessage {
                queue_id,
                seq,
                meta,
                body,
                inline,
            })
        });
        Ok(found.take(limit).collect())
    }

    /// In the order sled applies a batch: the writes, then the removals,
    /// then the de-duplication records (removals first, so that a record
    /// removed and written in one batch is written) and the offsets.
    fn apply(&self, b: &MessageBatch<'_>) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        match b.sole_copy() {
            Some((queue_id, seq, meta, body)) if body.len() <= BODY_CHUNK_BYTES => {
                let copy = Copy {
                    meta: meta.clone(),
                    inline: Some(Bytes::copy_from_slice(body)),
                };
                s.copies.insert((queue_id, seq), copy);
            }
            _ => {
                for (body_id, body) in &b.put_bodies {
                    s.bodies.insert(*body_id, Bytes::copy_from_slice(body));
                }
                for (queue_id, seq, meta) in &b.put_metas {
                    let copy = Copy {
                        meta: (*meta).clone(),
                        inline: None,
                    };
                    s.copies.insert((*queue_id, *seq), copy);
                }
            }
        }
        for key in &b.del_metas {
            s.copies.remove(key);
        }
        for &(queue_id, from, to) in &b.del_ranges {
            if from < to {
                let doomed: Vec<_> = s
                    .copies
                    .range((queue_id, from)..(queue_id, to))
                    .map(|(k, _)| *k)
                    .collect();
                for k in doomed {
                    s.copies.remove(&k);
                }
            }
        }
        for (body_id, _) in &b.del_bodies {
            s.bodies.remove(body_id);
        }
        for (queue_id, id) in &b.del_dedup {
            s.dedup.remove(&(*queue_id, id.to_string()));
        }
        for d in &b.put_dedup {
            s.dedup.insert((d.queue_id, d.id.clone()), d.expires_at);
        }
        for (queue_id, group, offset) in &b.put_offsets {
            s.offsets.insert((*queue_id, group.to_string()), *offset);
        }
        Ok(())
    }

    fn remove_queue(&self, queue_id: u64) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.copies.retain(|(q, _), _| *q != queue_id);
        s.dedup.retain(|(q, _), _| *q != queue_id);
        s.offsets.retain(|(q, _), _| *q != queue_id);
        Ok(())
    }

    fn set_clean(&self, clean: bool) -> Result<(), StoreError> {
        self.state.lock().clean = clean;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // What every store owes the broker; a restart recovers from the same
    // handle.
    crate::store::contract_tests::tests!(std::sync::Arc::new(crate::store::MemStore::default()));
}
