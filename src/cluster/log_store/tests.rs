//! openraft's storage test suite against [`GroupLog`], with a state
//! machine in RAM (the suite needs one; the clusters' own comes later).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use parking_lot::Mutex;

use super::{GroupLog, TypeConfig};
use crate::store::sled::DEFAULT_CACHE_BYTES;
use crate::store::{Committer, LogStore, MessageStore, Storage};

/// What the state machine keeps: what it applied, and its snapshot.
#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    applied: Vec<Vec<u8>>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots: u64,
}

#[derive(Debug, Clone, Default)]
struct Sm(Arc<Mutex<SmState>>);

#[derive(serde::Serialize, serde::Deserialize)]
struct SmData {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    applied: Vec<Vec<u8>>,
}

impl RaftSnapshotBuilder<TypeConfig> for Sm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut st = self.0.lock();
        st.snapshots += 1;
        let data = serde_json::to_vec(&SmData {
            last_applied: st.last_applied,
            membership: st.membership.clone(),
            applied: st.applied.clone(),
        })
        .unwrap_or_default();
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: format!("s{}", st.snapshots),
        };
        st.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for Sm {
    type SnapshotBuilder = Sm;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let st = self.0.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut st = self.0.lock();
        let mut out = Vec::new();
        for e in entries {
            st.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(d) => st.applied.push(d),
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            out.push(());
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
        let data = snapshot.into_inner();
        let d: SmData = serde_json::from_slice(&data)
            .map_err(|e| openraft::StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut st = self.0.lock();
        st.last_applied = d.last_applied;
        st.membership = d.membership;
        st.applied = d.applied;
        st.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.0.lock().snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Keeps a test's data directory and group commit until it ends.
struct Guard {
    committer: Arc<Committer>,
    _dir: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.committer.shutdown(std::time::Duration::from_secs(5));
    }
}

/// A fresh log store (its group 7) and state machine for each test.
struct Builder;

impl StoreBuilder<TypeConfig, GroupLog, Sm, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, GroupLog, Sm), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| openraft::StorageIOError::write_logs(openraft::AnyError::new(&e)))?;
        let store = Arc::new(LogStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("open"));
        store.recover(&[]).expect("recover");
        let committer = Committer::start(&Storage::one(store.clone())).expect("committer");
        let log = GroupLog::new(store, committer.clone(), 7);
        Ok((
            Guard {
                committer,
                _dir: dir,
            },
            log,
            Sm::default(),
        ))
    }
}

#[test]
fn the_group_log_passes_openrafts_storage_suite() {
    // Every test of the suite, each on a fresh data directory and group
    // commit (about 8 s: the purge tests wait a second each).
    Suite::test_all(Builder).expect("openraft's storage suite");
}
