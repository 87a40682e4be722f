//! [`NullStore`]: a [`TopologyStore`] and [`MessageStore`] that keep
//! nothing. A broker on it holds all state in RAM only (`sluice serve
//! --in-memory`, and unit tests): it is the baseline that shows what
//! persistence costs.

use super::{
    BindingDef, Durable, ExchangeDef, MessageBatch, MessageStore, QueueDef, RecoveredMessage,
    StoreError, StoredMessages, Topology, TopologyStore, UserRecord,
};

/// The store that keeps nothing: every write succeeds at once and nothing
/// survives.
#[derive(Debug, Default)]
pub struct NullStore;

impl Durable for NullStore {
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl TopologyStore for NullStore {
    fn topology(&self) -> Result<Topology, StoreError> {
        Ok(Topology::default())
    }
    fn put_exchange(&self, _: &ExchangeDef) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_exchange(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    fn put_queue(&self, _: &QueueDef) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_queue(&self, _: &QueueDef) -> Result<(), StoreError> {
        Ok(())
    }
    fn put_binding(&self, _: &BindingDef) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_binding(&self, _: &BindingDef) -> Result<(), StoreError> {
        Ok(())
    }
    /// Users live in the registry's RAM for the run, like everything else.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn put_user(&self, _: &UserRecord) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_user(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    fn schema_records(&self) -> Result<Vec<crate::store::SchemaRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn put_schema_record(&self, _: &[u8], _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn delete_schema_record(&self, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn cluster_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn put_cluster_state(&self, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MessageStore for NullStore {
    /// Nothing was kept, and nothing was left behind: a clean start.
    fn recover(&self, _: &[QueueDef]) -> Result<StoredMessages, StoreError> {
        Ok(StoredMessages {
            clean_shutdown: true,
            ..StoredMessages::default()
        })
    }
    /// Nothing is stored, so nothing is loaded.
    fn load(&self, _: u64, _: u64, _: u64, _: usize) -> Result<Vec<RecoveredMessage>, StoreError> {
        Ok(Vec::new())
    }
    fn apply(&self, _: &MessageBatch<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove_queue(&self, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn set_clean(&self, _: bool) -> Result<(), StoreError> {
        Ok(())
    }
    fn keeps_messages(&self) -> bool {
        false
    }
}
