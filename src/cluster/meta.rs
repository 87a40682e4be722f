//! [`MetaMachine`]: the metadata group's state machine, openraft's
//! `RaftStateMachine` over this node's broker. Each committed entry is a
//! [`MetaOp`] (a topology or user change) that it applies to the broker
//! (`cmd::apply_meta`, the same calls a single node makes), answering
//! what it came to ([`MetaAnswer`], which the proposer hands its client).
//!
//! How far it has applied (the last log id and the membership) is kept
//! with the topology, in sled, written after each entry's own writes and
//! made durable before the batch is reported applied. sled recovers a
//! prefix of its writes, so after a crash at most the last entry is
//! applied again at the next start; every change is idempotent in what
//! it leaves behind (a declare of what exists, a delete or removal of
//! what is gone, answer an error and change nothing), so that is safe.
//! What is never done is applying the whole log again over a topology
//! that already has it: a `DELETE` then `DECLARE` of one queue would then
//! empty the queue declared since.
//!
//! The group takes no snapshots yet: its log is kept whole (changes to
//! the topology are few), and a node that joins or lost its disk catches
//! up from the log.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use crate::broker::{Broker, MetaAnswer, MetaOp};

/// How far the group has applied, as kept with the topology.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

/// The metadata group's state machine (see the module docs). Clones share
/// it.
#[derive(Debug, Clone)]
pub(super) struct MetaMachine {
    broker: Broker,
    applied: Arc<Mutex<Applied>>,
}

impl MetaMachine {
    /// The state machine over `broker`, from where it last applied.
    pub(super) fn open(broker: &Broker) -> Result<MetaMachine, String> {
        let applied = match broker.cluster_state().map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the metadata group's applied state: {e}"))?,
            None => Applied::default(),
        };
        Ok(MetaMachine {
            broker: broker.clone(),
            applied: Arc::new(Mutex::new(applied)),
        })
    }

    /// Applies one entry to the broker and records it applied (not yet
    /// durable): its answer, and the generation to wait for.
    fn apply_one(&self, e: Entry<TypeConfig>) -> Result<(MetaAnswer, u64), String> {
        let answer = match e.payload {
            EntryPayload::Blank => MetaAnswer::default(),
            EntryPayload::Normal(bytes) => match serde_json::from_slice::<MetaOp>(&bytes) {
                Ok(op) => crate::cmd::apply_meta(&self.broker, &op).0,
                // Written by a newer node: refused, on every node alike.
                Err(e) => MetaAnswer::Err(
                    "INTERNAL".into(),
                    format!("a change this node does not understand: {e}"),
                ),
            },
            EntryPayload::Membership(m) => {
                self.applied.lock().membership = StoredMembership::new(Some(e.log_id), m);
                MetaAnswer::default()
            }
        };
        let state = {
            let mut a = self.applied.lock();
            a.last_applied = Some(e.log_id);
            serde_json::to_vec(&*a).map_err(|e| e.to_string())?
        };
        let gen = self
            .broker
            .put_cluster_state(&state)
            .map_err(|e| e.to_string())?;
        Ok((answer, gen))
    }
}

/// A failure to apply, as openraft takes it (it stops the group).
fn write_error(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::from(StorageIOError::new(
        ErrorSubject::StateMachine,
        ErrorVerb::Write,
        openraft::AnyError::error(e.to_string()),
    ))
}

impl RaftSnapshotBuilder<TypeConfig> for MetaMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        Err(StorageError::from(StorageIOError::new(
            ErrorSubject::None,
            ErrorVerb::Read,
            openraft::AnyError::error("the metadata group takes no snapshots"),
        )))
    }
}

impl RaftStateMachine<TypeConfig> for MetaMachine {
    type SnapshotBuilder = MetaMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let a = self.applied.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaAnswer>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut answers = Vec::new();
        let mut last = None;
        for e in entries {
            let (answer, gen) = self.apply_one(e).map_err(write_error)?;
            answers.push(answer);
            last = Some(gen);
        }
        if let Some(gen) = last {
            self.broker
                .committer()
                .wait(gen)
                .await
                .map_err(write_error)?;
        }
        Ok(answers)
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
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        Err(StorageError::from(StorageIOError::new(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Write,
            openraft::AnyError::error("the metadata group takes no snapshots"),
        )))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(None)
    }
}
