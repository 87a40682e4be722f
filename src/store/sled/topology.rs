//! [`TopologyStore`] on sled: the `exchanges`, `queues` and `users` trees
//! (keyed by name), the `bindings` tree (keyed by the encoded binding) and
//! the `schemas` tree (the schema registry's records, opaque here).

use super::SledStore;
use crate::store::codec;
use crate::store::{
    BindingDef, ExchangeDef, QueueDef, StoreError, Topology, TopologyStore, UserRecord,
};

impl TopologyStore for SledStore {
    fn topology(&self) -> Result<Topology, StoreError> {
        let mut out = Topology::default();
        for kv in self.exchanges.iter() {
            out.exchanges.push(codec::decode_exchange(&kv?.1)?);
        }
        for kv in self.queues.iter() {
            out.queues.push(codec::decode_queue(&kv?.1)?);
        }
        for kv in self.bindings.iter() {
            out.bindings.push(codec::decode_binding(&kv?.0)?);
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

    fn schema_records(&self) -> Result<Vec<crate::store::SchemaRecord>, StoreError> {
        self.schemas
            .iter()
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(Into::into)
            })
            .collect()
    }

    fn put_schema_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.schemas.insert(key, value)?;
        Ok(())
    }

    fn delete_schema_record(&self, key: &[u8]) -> Result<(), StoreError> {
        self.schemas.remove(key)?;
        Ok(())
    }

    fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(CLUSTER_STATE_KEY)?.map(|v| v.to_vec()))
    }

    fn put_cluster_state(&self, state: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(CLUSTER_STATE_KEY, state)?;
        Ok(())
    }
}

/// The `meta` tree's key of [`TopologyStore::cluster_state`].
const CLUSTER_STATE_KEY: &str = "cluster-state";
