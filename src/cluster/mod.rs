//! Clusters (issue 18): queues and streams replicated over Raft groups on
//! openraft. What is here so far:
//!
//! - `log_store`: [`GroupLog`], one Raft group's log (entries, vote,
//!   truncation, purge) on the message log's consensus groups, checked by
//!   openraft's own storage test suite;
//! - `network`: the nodes' RPCs (append entries, vote, snapshot chunks)
//!   as length-prefixed JSON frames over TCP, client and server;
//! - `tests`: three nodes in one process on loopback, replicating,
//!   electing anew when the leader stops, a restarted node catching up
//!   from its own log, and a node back with an empty disk catching up by
//!   a snapshot sent over the network (its group log purged past its
//!   last entry).
//!
//! Nothing serves cluster traffic in a running broker yet: no `serve`
//! flags, no cluster secret or TLS on the nodes' port, no replicated
//! queue.

mod log_store;
// No node runs a cluster yet: the tests are the callers so far.
#[cfg_attr(not(test), allow(dead_code))]
mod network;
#[cfg(test)]
mod test_sm;
#[cfg(test)]
mod tests;

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
