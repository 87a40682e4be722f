//! [`Storage`]: the broker's handle on its two stores, and what it does
//! across both: read a start's state back ([`Recovered`]), delete a queue,
//! and sync every engine behind them once.

use std::sync::Arc;

use super::{
    BindingDef, Durable, ExchangeDef, MessageStore, QueueDef, StoreError, StoredMessages, Topology,
    TopologyStore,
};

/// The topology store and the message store of a broker (a cheap clone).
///
/// The broker reaches a store through here or through the two fields; what
/// spans both lives here: [`Storage::recover`] reads the topology, then the
/// messages against it; [`Storage::delete_queue`] removes a queue from both;
/// [`Storage::sync`] is the one barrier the group commit calls.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Exchanges, queues, bindings and users.
    pub(crate) topology: Arc<dyn TopologyStore>,
    /// Message copies and bodies, de-duplication records, group offsets.
    pub(crate) messages: Arc<dyn MessageStore>,
    /// Each engine behind the two stores, once (the message store's
    /// first): what [`Storage::sync`] syncs.
    engines: Vec<Arc<dyn Durable>>,
}

impl Storage {
    /// Both concerns kept by one engine ([`super::SledStore`], the stores
    /// in RAM): one sync covers both.
    pub fn one<S: TopologyStore + MessageStore>(store: Arc<S>) -> Storage {
        Storage {
            topology: store.clone(),
            messages: store.clone(),
            engines: vec![store],
        }
    }

    /// A store per concern, each its own engine: [`Storage::sync`] syncs
    /// the message store, then the topology store.
    #[cfg(test)]
    pub(crate) fn split(
        topology: Arc<dyn TopologyStore>,
        messages: Arc<dyn MessageStore>,
    ) -> Storage {
        let engines: Vec<Arc<dyn Durable>> = vec![messages.clone(), topology.clone()];
        Storage {
            topology,
            messages,
            engines,
        }
    }

    /// Reads a start's state back (see [`Recovered::read`]).
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        Recovered::read(self.topology.as_ref(), self.messages.as_ref())
    }

    /// Blocks until every earlier write to either store is durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.engines.iter().try_for_each(|e| e.sync())
    }

    /// Bytes the stores take on disk (`None` when they keep nothing there).
    pub(crate) fn size_on_disk(&self) -> Option<u64> {
        self.engines
            .iter()
            .filter_map(|e| e.size_on_disk())
            .reduce(u64::saturating_add)
    }

    /// Whether written messages can be read back (see
    /// [`MessageStore::keeps_messages`]).
    pub(crate) fn keeps_messages(&self) -> bool {
        self.messages.keeps_messages()
    }

    /// Records whether the broker was shut down cleanly (see
    /// [`MessageStore::set_clean`]).
    pub(crate) fn set_clean(&self, clean: bool) -> Result<(), StoreError> {
        self.messages.set_clean(clean)
    }

    /// Writes or replaces a durable exchange.
    pub(crate) fn put_exchange(&self, def: &ExchangeDef) -> Result<(), StoreError> {
        self.topology.put_exchange(def)
    }

    /// Removes a durable exchange and its bindings.
    pub(crate) fn delete_exchange(&self, name: &str) -> Result<(), StoreError> {
        self.topology.delete_exchange(name)
    }

    /// Writes or replaces a durable queue.
    pub(crate) fn put_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        self.topology.put_queue(def)
    }

    /// Removes a durable queue, its bindings, every message copy it holds,
    /// its de-duplication records and its consumer-group offsets.
    pub(crate) fn delete_queue(&self, def: &QueueDef) -> Result<(), StoreError> {
        self.topology.delete_queue(def)?;
        self.messages.remove_queue(def.id)
    }

    /// Writes a durable binding.
    pub(crate) fn put_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.topology.put_binding(def)
    }

    /// Removes a durable binding.
    pub(crate) fn delete_binding(&self, def: &BindingDef) -> Result<(), StoreError> {
        self.topology.delete_binding(def)
    }
}

/// What the stores hold, read back at start: the topology in full, the
/// stored message copies only summed up (the broker pages them in with
/// [`MessageStore::load`]).
#[derive(Debug, Default)]
pub struct Recovered {
    /// Durable exchanges, queues and bindings.
    pub(crate) topology: Topology,
    /// The stored copies summed up, de-duplication records, group offsets,
    /// and whether the previous run shut down cleanly.
    pub messages: StoredMessages,
}

impl Recovered {
    /// Reads the topology, then sums up the stored messages against its
    /// queues (dropping what no queue holds any more) and marks the run as
    /// not clean.
    pub(crate) fn read(
        topology: &dyn TopologyStore,
        messages: &dyn MessageStore,
    ) -> Result<Recovered, StoreError> {
        let topology = topology.topology()?;
        let messages = messages.recover(&topology.queues)?;
        Ok(Recovered { topology, messages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::{load_all, meta, queue};
    use crate::store::{MemStore, MessageBatch};

    #[test]
    fn one_engine_is_synced_once_and_split_stores_each_once() {
        let one = Arc::new(MemStore::default());
        Storage::one(one.clone()).sync().unwrap();
        assert_eq!(one.syncs(), 1);
        let (t, m) = (Arc::new(MemStore::default()), Arc::new(MemStore::default()));
        Storage::split(t.clone(), m.clone()).sync().unwrap();
        assert_eq!((t.syncs(), m.syncs()), (1, 1));
    }

    #[test]
    fn split_stores_keep_their_own_concern_and_a_queue_deletion_reaches_both() {
        let (t, m) = (Arc::new(MemStore::default()), Arc::new(MemStore::default()));
        let storage = Storage::split(t.clone(), m.clone());
        storage.recover().unwrap();
        let q = queue("q", 1);
        storage.put_queue(&q).unwrap();
        let copy = meta(1, "m");
        let batch = MessageBatch {
            put_bodies: vec![(1, b"body")],
            put_metas: vec![(1, 1, &copy)],
            ..MessageBatch::default()
        };
        storage.messages.apply(&batch).unwrap();
        let r = storage.recover().unwrap();
        assert_eq!(r.topology.queues, vec![q.clone()]);
        assert_eq!(r.messages.stored.len(), 1);
        assert!(m.topology().unwrap().queues.is_empty());
        assert!(load_all(t.as_ref(), 1).is_empty());
        storage.delete_queue(&q).unwrap();
        assert!(t.topology().unwrap().queues.is_empty());
        assert!(load_all(m.as_ref(), 1).is_empty());
    }
}
