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

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::queues::Queues;
use super::TypeConfig;
use crate::broker::{Broker, MetaAnswer, MetaOp};
use crate::error::BrokerError;
use crate::protocol::parse::decode_one;
use crate::protocol::reply::quote_for_message;
use crate::protocol::Command;

/// How far the group has applied, as kept with the topology, and the
/// replicated queues' placements (which live nowhere else).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    #[serde(default)]
    placed: BTreeMap<String, Placement>,
    /// The outcomes of the latest transactions across replicated queues
    /// (`true`: committed), each with the index that recorded it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    outcomes: BTreeMap<String, (bool, u64)>,
}

/// How many transactions' outcomes the group remembers: the oldest is
/// forgotten past it. A queue's leader asks for an outcome within
/// seconds (`transaction::RECOVERY_BOUND`), so only a part left
/// unresolved while this many transactions were decided meanwhile could
/// find none (and be aborted).
const OUTCOMES_KEPT: usize = 4096;

impl Applied {
    /// Records `commit` as transaction `tx`'s outcome at `index` unless it
    /// has one: the outcome it has.
    fn decide(&mut self, tx: &str, commit: bool, index: u64) -> bool {
        if let Some((was, _)) = self.outcomes.get(tx) {
            return *was;
        }
        self.outcomes.insert(tx.to_string(), (commit, index));
        if self.outcomes.len() > OUTCOMES_KEPT {
            let oldest = self
                .outcomes
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(tx, _)| tx.clone());
            if let Some(tx) = oldest {
                self.outcomes.remove(&tx);
            }
        }
        commit
    }
}

/// The metadata group's state machine (see the module docs). Clones share
/// it.
#[derive(Debug, Clone)]
pub(super) struct MetaMachine {
    broker: Broker,
    applied: Arc<Mutex<Applied>>,
    queues: Arc<Queues>,
}

impl MetaMachine {
    /// The state machine over `broker`, from where it last applied; the
    /// replicated queues it placed go to `queues`.
    pub(super) fn open(broker: &Broker, queues: Arc<Queues>) -> Result<MetaMachine, String> {
        let applied = match broker.cluster_state().map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the metadata group's applied state: {e}"))?,
            None => Applied::default(),
        };
        for (name, p) in &applied.placed {
            queues.place(name, p.clone());
        }
        Ok(MetaMachine {
            broker: broker.clone(),
            applied: Arc::new(Mutex::new(applied)),
            queues,
        })
    }

    /// Applies `op`, the entry at `index`: a declaration with `replicas=`
    /// also places the queue, a deletion of a replicated queue forgets it.
    fn apply_op(&self, op: &MetaOp, index: u64) -> MetaAnswer {
        let command = match op {
            MetaOp::Command(frame) => decode_one(frame.as_bytes()).ok(),
            _ => None,
        };
        if let MetaOp::TxOutcome { tx, commit } = op {
            let commit = self.applied.lock().decide(tx, *commit, index);
            let word = match commit {
                true => super::transaction::COMMITTED,
                false => super::transaction::ABORTED,
            };
            return MetaAnswer::Ok(vec![word.to_string()]);
        }
        let refuse = |text: String| MetaAnswer::error(BrokerError::Precondition(text));
        match &command {
            Some(Command::DeclareQueue(d)) => {
                let want = d.replicas.filter(|r| *r > 1);
                let (has, voters, placed) = {
                    let a = self.applied.lock();
                    let voters: Vec<u64> = a.membership.membership().voter_ids().collect();
                    let placed: Vec<Placement> = a.placed.values().cloned().collect();
                    (a.placed.get(&d.name).cloned(), voters, placed)
                };
                let name = quote_for_message(&d.name);
                match (want, has) {
                    (Some(_), None) if self.broker.find_queue(&d.name).is_some() => {
                        return refuse(format!("queue {name} exists without replicas="))
                    }
                    (None, Some(p)) => {
                        return refuse(format!(
                            "queue {name} exists with replicas={}",
                            p.members.len()
                        ))
                    }
                    (Some(r), Some(p)) if usize::from(r) != p.members.len() => {
                        return refuse(format!(
                            "queue {name} exists with replicas={}",
                            p.members.len()
                        ))
                    }
                    (Some(r), None) => {
                        let Some(p) = Placement::new(index, r, &voters, placed.iter()) else {
                            return refuse(format!(
                                "replicas={r}, but the cluster has {} voting nodes",
                                voters.len()
                            ));
                        };
                        let answer = crate::cmd::apply_meta(&self.broker, op).0;
                        if matches!(answer, MetaAnswer::Ok(_)) {
                            self.applied.lock().placed.insert(d.name.clone(), p.clone());
                            self.queues.place(&d.name, p);
                        }
                        return answer;
                    }
                    _ => {}
                }
            }
            Some(Command::DeleteQueue(d)) => {
                let answer = crate::cmd::apply_meta(&self.broker, op).0;
                if matches!(answer, MetaAnswer::Ok(_))
                    && self.applied.lock().placed.remove(&d.name).is_some()
                {
                    self.queues.unplace(&d.name);
                }
                return answer;
            }
            _ => {}
        }
        crate::cmd::apply_meta(&self.broker, op).0
    }

    /// Applies one entry to the broker and records it applied (not yet
    /// durable): its answer, and the generation to wait for.
    fn apply_one(&self, e: Entry<TypeConfig>) -> Result<(MetaAnswer, u64), String> {
        let answer = match e.payload {
            EntryPayload::Blank => MetaAnswer::default(),
            EntryPayload::Normal(p) => match serde_json::from_str::<MetaOp>(&p.0) {
                Ok(op) => self.apply_op(&op, e.log_id.index),
                // Written by a newer node: refused, on every node alike.
                Err(e) => MetaAnswer::error(BrokerError::Internal(format!(
                    "a change this node does not understand: {e}"
                ))),
            },
            EntryPayload::Membership(m) => {
                // The replicated queues follow the voters: a member that
                // left is replaced, a queue short of members grows.
                let voters: Vec<u64> = m.voter_ids().collect();
                let moved: Vec<(String, Placement)> = {
                    let mut a = self.applied.lock();
                    a.membership = StoredMembership::new(Some(e.log_id), m);
                    let mut moved = Vec::new();
                    let names: Vec<String> = a.placed.keys().cloned().collect();
                    for name in names {
                        let Some(p) = a.placed.get(&name) else {
                            continue;
                        };
                        let next = p.follow(&voters, a.placed.values());
                        if &next != p {
                            a.placed.insert(name.clone(), next.clone());
                            moved.push((name, next));
                        }
                    }
                    moved
                };
                for (name, p) in moved {
                    tracing::info!(queue = %name, members = ?p.members, "a replicated queue's members follow the cluster's");
                    self.queues.place(&name, p);
                }
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
        Err(super::no_snapshots("metadata groups"))
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
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        Err(super::no_snapshots("metadata groups"))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Applied;

    #[test]
    fn the_first_outcome_recorded_wins() {
        let mut a = Applied::default();
        assert!(a.decide("t1", true, 5));
        assert!(a.decide("t1", false, 6), "a later abort does not win");
        assert!(!a.decide("t2", false, 7));
        assert!(!a.decide("t2", true, 8), "a later commit does not win");
    }

    #[test]
    fn only_the_latest_outcomes_are_kept() {
        let mut a = Applied::default();
        for i in 0..=super::OUTCOMES_KEPT as u64 {
            a.decide(&format!("t{i}"), true, i);
        }
        assert_eq!(a.outcomes.len(), super::OUTCOMES_KEPT);
        assert!(!a.outcomes.contains_key("t0"));
    }
}
