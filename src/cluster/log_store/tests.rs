//! openraft's storage test suite against [`GroupLog`], with the tests'
//! state machine in RAM (the suite needs one).

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::super::state::StateMachine;

/// The tests' state machine: it keeps every command.
type Sm = StateMachine<Vec<Vec<u8>>>;
use super::{GroupLog, TypeConfig};
use crate::store::sled::DEFAULT_CACHE_BYTES;
use crate::store::{Committer, LogStore, MessageStore, Storage};

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
