//! A transaction on replicated queues, the broker's side (see protocol.md,
//! "Transactions on replicated queues"): what it may touch, and its parts,
//! one per queue, which the cluster commits all or nothing
//! ([`Consensus::transact`], `cluster/transaction.rs`).
//!
//! **What it may touch.** Replicated queues only: a transaction that
//! also touches this node's own queues is refused (one local write and
//! the queues' logs do not commit together). Not yet: deliveries a
//! subscriber got through another node than the queue's leader (the
//! leader settles those). A full `overflow=reject-publish` queue refuses
//! a part whose copies do not all fit, and holds room for one it takes. A
//! `dedup-window=` queue drops a duplicate as the transaction is applied
//! (`cluster/queue_machine/tx_apply.rs`). A replicated stream's acks are
//! its groups' commits, computed on its leader
//! ([`Queue::stream_commits_if_acked`]) and made by the stream's log.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::message::Now;
use super::queue::Queue;
use super::{Broker, Consensus, ReplicaMessage, TxPart};
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::protocol::reply::quote_for_message;

impl Broker {
    /// Refuses a transaction's publish routed to `local` (this node's
    /// queues) and `replicated` queues at once (see the module docs).
    pub(super) fn tx_check_replicated(
        &self,
        local: &[Arc<Queue>],
        replicated: &[Arc<str>],
    ) -> Result<(), BrokerError> {
        if replicated.is_empty() {
            return Ok(());
        }
        if let Some(q) = local.first() {
            return Err(mixed(&format!(
                "it reaches replicated queue {} and queue {}",
                quote_for_message(&replicated[0]),
                quote_for_message(&q.name)
            )));
        }
        Ok(())
    }

    /// Refuses a delivery of replicated queue `q` a transaction cannot ack
    /// yet (see the module docs).
    pub(super) fn tx_check_replicated_ack(
        &self,
        c: &dyn Consensus,
        q: &Queue,
    ) -> Result<(), BrokerError> {
        let name = quote_for_message(&q.name);
        if c.led_elsewhere(&q.name) {
            return Err(BrokerError::Precondition(format!(
                "replicated queue {name} is led by another node: a transaction acks its \
                 deliveries only on its leader; consume from that node"
            )));
        }
        Ok(())
    }

    /// Whether a transaction acking deliveries of `acked` and publishing
    /// `pubs` is on replicated queues (`true`) or this node's own;
    /// `PRECONDITION` when on both.
    pub(crate) fn tx_on_replicated(
        &self,
        acked: &[Arc<Queue>],
        pubs: &[Publish],
    ) -> Result<bool, BrokerError> {
        let Some(c) = self.inner.consensus.get() else {
            return Ok(false);
        };
        let (mut local, mut replicated) = (false, false);
        for q in acked {
            match c.replicated(&q.name) {
                true => replicated = true,
                false => local = true,
            }
        }
        for p in pubs {
            let (l, r) = self.split_replicated(self.route_to(&p.exchange, &p.key, &p.headers)?);
            local |= !l.is_empty();
            replicated |= !r.is_empty();
        }
        match (local, replicated) {
            (true, true) => Err(mixed("it acks or publishes on both kinds")),
            (_, r) => Ok(r),
        }
    }

    /// A transaction's parts on replicated queues and streams: its
    /// publishes `pubs` (with their ids `ids`) routed now, the queue
    /// deliveries it acks (`acked`: each queue's name and the copy's
    /// position), and the stream group commits its stream acks make
    /// (`commits`: stream, group, offset). Also how many copies it
    /// publishes.
    pub(crate) fn tx_parts(
        &self,
        pubs: &[Publish],
        ids: &[String],
        acked: &[(Arc<str>, u64)],
        commits: &[(Arc<str>, String, u64)],
    ) -> Result<(Vec<TxPart>, usize), BrokerError> {
        let now = Now::default();
        let mut parts: BTreeMap<String, TxPart> = BTreeMap::new();
        let mut routed = 0;
        for (p, id) in pubs.iter().zip(ids) {
            let (_, checked, targets) = self.route_checked(p, "; nothing was done")?;
            let p = checked.as_ref().unwrap_or(p);
            let (local, replicated) = self.split_replicated(targets);
            if let Some(q) = local.first() {
                return Err(mixed(&format!(
                    "it publishes to queue {}",
                    quote_for_message(&q.name)
                )));
            }
            let m = ReplicaMessage::of(p, id, &now);
            for q in replicated {
                routed += 1;
                parts
                    .entry(q.to_string())
                    .or_default()
                    .enqueue
                    .push(m.clone());
            }
        }
        for (q, seq) in acked {
            parts.entry(q.to_string()).or_default().settle.push(*seq);
        }
        for (q, group, at) in commits {
            let part = parts.entry(q.to_string()).or_default();
            part.offsets.push((group.clone(), *at));
        }
        let parts = parts
            .into_iter()
            .map(|(queue, part)| TxPart { queue, ..part })
            .collect();
        Ok((parts, routed))
    }
}

/// A transaction on both replicated queues and this node's own.
fn mixed(how: &str) -> BrokerError {
    BrokerError::Precondition(format!(
        "a transaction is on replicated queues or on this node's own queues, not both ({how}); \
         nothing was done"
    ))
}
