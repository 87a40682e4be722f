//! [`GroupLog`]: one Raft group's log store, openraft's `RaftLogStorage`
//! and `RaftLogReader`, on the message log's consensus groups
//! (`LogStore::group_*`, `store/logstore/groups.rs`).
//!
//! - Raft index `i` is the group's entry `i + 1` (the message log never
//!   has an entry 0; openraft's first entry is 0).
//! - An entry's payload is the openraft entry as JSON; its term is the
//!   group entry's term, so the log's state (last purged, last entry)
//!   needs no decoding. The vote is JSON too.
//! - A change is in RAM at once (readable) and durable with the next group
//!   commit, in the order made: `append` calls openraft back once the
//!   committer reports the generation durable; `save_vote`, `truncate`
//!   and `purge` wait for it before they return. A failed commit is
//!   reported to openraft, which stops the group (a failed fsync is never
//!   retried).

// openraft's traits return its `StorageError`, large as it is.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote,
};

use super::TypeConfig;
use crate::store::{Committer, GroupEntry, LogStore, StoreError};

/// One Raft group's log store (see the module docs). Cheap to clone: each
/// clone is the same log.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct GroupLog {
    store: Arc<LogStore>,
    committer: Arc<Committer>,
    group: u64,
}

type Error = StorageError<u64>;

/// The log id of group entry `index` of term `term`.
fn log_id(index: u64, term: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index.saturating_sub(1))
}

fn io(e: impl std::error::Error + 'static, write: bool) -> Error {
    let e = AnyError::new(&e);
    if write {
        StorageIOError::write_logs(e).into()
    } else {
        StorageIOError::read_logs(e).into()
    }
}

#[cfg_attr(not(test), allow(dead_code))]
impl GroupLog {
    /// Group `group`'s log in `store`, made durable by `committer`.
    pub(crate) fn new(store: Arc<LogStore>, committer: Arc<Committer>, group: u64) -> GroupLog {
        GroupLog {
            store,
            committer,
            group,
        }
    }

    /// Waits until everything changed so far is durable.
    async fn durable(&self) -> Result<(), Error> {
        let g = self.committer.written();
        self.committer
            .wait(g)
            .await
            .map_err(|e| io(StoreError::Io(e.to_string()), true))
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Error> {
        let from = match range.start_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => i.saturating_add(2),
            Bound::Unbounded => 1,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(2),
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => u64::MAX,
        };
        // Purged entries are not there to read: start at the first one.
        let first = self
            .store
            .group_state(self.group)
            .purged
            .map_or(1, |(i, _)| i + 1);
        let entries = self
            .store
            .group_read(self.group, from.max(first), to)
            .map_err(|e| io(e, false))?;
        entries
            .iter()
            .map(|e| serde_json::from_slice(&e.payload).map_err(|err| io(err, false)))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = GroupLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Error> {
        let st = self.store.group_state(self.group);
        Ok(LogState {
            last_purged_log_id: st.purged.map(|(i, t)| log_id(i, t)),
            last_log_id: st.last.map(|(i, t)| log_id(i, t)),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), Error> {
        let bytes =
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.store
            .group_save_vote(self.group, &bytes)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.durable().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, Error> {
        match self.store.group_vote(self.group) {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into()),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // An entry at or below the purge point is in the state machine
        // already (openraft purges up to what was applied): nothing to keep.
        let purged = self
            .store
            .group_state(self.group)
            .purged
            .map_or(0, |(i, _)| i);
        let mut batch = Vec::new();
        for e in entries.into_iter().filter(|e| e.log_id.index + 1 > purged) {
            let payload = serde_json::to_vec(&e).map_err(|err| io(err, true))?;
            batch.push(GroupEntry {
                index: e.log_id.index + 1,
                term: e.log_id.leader_id.term,
                payload: payload.into(),
            });
        }
        self.store
            .group_append(self.group, &batch)
            .map_err(|e| io(e, true))?;
        let g = self.committer.written();
        let committer = self.committer.clone();
        tokio::spawn(async move {
            let done = committer
                .wait(g)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(done);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        self.store
            .group_truncate(self.group, log_id.index + 1)
            .map_err(|e| io(e, true))?;
        self.durable().await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        self.store
            .group_purge(self.group, log_id.index + 1, log_id.leader_id.term)
            .map_err(|e| io(e, true))?;
        self.durable().await
    }
}

#[cfg(test)]
mod tests;
