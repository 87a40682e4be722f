//! Clusters (issue 18): queues and streams replicated over Raft groups on
//! openraft. What is here so far is the Raft log store: [`GroupLog`], one
//! Raft group's log (entries, vote, truncation, purge) on the message log's
//! consensus groups, checked by openraft's own storage test suite. Nothing
//! serves cluster traffic yet.

mod log_store;

use std::io::Cursor;

#[allow(unused_imports)]
pub(crate) use log_store::GroupLog;

openraft::declare_raft_types!(
    /// sluice's Raft types: a command is opaque bytes until the replicated
    /// queues' commands exist; node ids are numbers.
    pub(crate) TypeConfig:
        D = Vec<u8>,
        R = (),
);
