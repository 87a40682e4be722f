//! [`StateMachine`]: a Raft group's state machine in RAM, openraft's
//! `RaftStateMachine`, for the tests of the group machinery (`tests.rs`):
//! the last entry applied, the membership, the latest snapshot, and what
//! the group's commands built ([`Applied`]: every command, in order).
//! Nothing of it is on disk, and a start applies its log again.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use crate::broker::MetaAnswer;

/// What a group's commands build, and how a command changes it.
pub(super) trait Applied:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static
{
    /// Applies one committed command.
    fn apply(&mut self, command: &[u8]);
}

/// The tests' groups keep every command, in order.
impl Applied for Vec<Vec<u8>> {
    fn apply(&mut self, command: &[u8]) {
        self.push(command.to_vec());
    }
}

/// Everything the state machine keeps.
#[derive(Debug, Default)]
struct SmState<A> {
    data: SmData<A>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots: u64,
}

/// What a snapshot holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SmData<A> {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    applied: A,
}

/// A group's state machine (see the module docs). Clones share it.
#[derive(Debug, Clone, Default)]
pub(super) struct StateMachine<A: Applied>(Arc<Mutex<SmState<A>>>);

impl<A: Applied> StateMachine<A> {
    /// What its commands built.
    pub(super) fn applied(&self) -> A {
        self.0.lock().data.applied.clone()
    }
}

impl<A: Applied> RaftSnapshotBuilder<TypeConfig> for StateMachine<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut st = self.0.lock();
        st.snapshots += 1;
        let data =
            serde_json::to_vec(&st.data).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let meta = SnapshotMeta {
            last_log_id: st.data.last_applied,
            last_membership: st.data.membership.clone(),
            snapshot_id: format!("{}", st.snapshots),
        };
        st.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: Applied> RaftStateMachine<TypeConfig> for StateMachine<A> {
    type SnapshotBuilder = StateMachine<A>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let st = self.0.lock();
        Ok((st.data.last_applied, st.data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaAnswer>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut st = self.0.lock();
        let mut out = Vec::new();
        for e in entries {
            st.data.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => st.data.applied.apply(command.0.as_bytes()),
                EntryPayload::Membership(m) => {
                    st.data.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            out.push(MetaAnswer::default());
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
        let data: SmData<A> = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut st = self.0.lock();
        st.data = data;
        st.snapshot = Some((meta.clone(), bytes));
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
