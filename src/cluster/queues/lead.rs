//! A replicated queue's lead task ([`lead`]): this node's view of the
//! queue kept in step with its leadership, shown only once the leader has
//! caught up with its log ([`serves`]), and the group started again when
//! its Raft stops on its own.

use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, ServerState};

use super::Queues;
use crate::cluster::placement::Placement;
use crate::cluster::queue_machine::QueueMachine;
use crate::cluster::TypeConfig;

/// The end of its log a leader must apply before it serves: what it
/// had when it began to lead in its term (`began`, kept by the caller
/// from one look to the next; `None` when it does not lead).
///
/// An elected leader's log ends with its term's first entry, so every
/// entry committed before its term is applied with it. A leader that was
/// killed is restored as leader at once when it starts again (openraft
/// does so, in its last term, with no entry of its own): its state
/// machine is then where its snapshot left it, and the entries after it,
/// committed in that very term, come back only as its commit index does.
/// Its term's first entry applied proves nothing then; the end of its log
/// at the start does.
fn log_end_to_apply(
    m: &openraft::RaftMetrics<u64, BasicNode>,
    began: &mut Option<(u64, u64)>,
) -> Option<u64> {
    if m.state != ServerState::Leader {
        *began = None;
        return None;
    }
    match *began {
        Some((term, end)) if term == m.current_term => Some(end),
        _ => {
            let end = m.last_log_index.unwrap_or(0);
            *began = Some((m.current_term, end));
            Some(end)
        }
    }
}

/// Whether the node whose metrics these are leads and has applied its
/// term's first entry and everything its log held when it began to lead
/// (`began`: see [`log_end_to_apply`]): only then is its view of the
/// queue whole.
fn serves(m: &openraft::RaftMetrics<u64, BasicNode>, began: &mut Option<(u64, u64)>) -> bool {
    let Some(end) = log_end_to_apply(m, began) else {
        return false;
    };
    m.last_applied
        .is_some_and(|l| l.leader_id.term == m.current_term && l.index >= end)
}

/// Keeps this node's view of queue `name` in step with its leadership.
///
/// A group stopped on purpose (deleted, the node stopping) has this task
/// aborted first. One whose Raft stopped on its own (a storage error, a
/// bug) is started again a second later, from its log, on a fresh state
/// machine: a member that stays down would leave the queue a member short
/// until the node restarts.
pub(super) async fn lead(
    queues: Arc<Queues>,
    name: String,
    p: Placement,
    raft: Raft<TypeConfig>,
    machine: QueueMachine,
) {
    let mut metrics = raft.metrics();
    let mut led = None;
    let mut began = None;
    // A leader resolves the transactions' parts left unresolved.
    let mut recovery = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (leads, term) = {
            let m = metrics.borrow_and_update();
            (serves(&m, &mut began), m.current_term)
        };
        if leads && led.is_some_and(|t| t != term) {
            // It lost the lead and won it back between two looks: another
            // leader came between, so this is a takeover like any other.
            machine.set_active(false);
            led = None;
        }
        if leads && led != Some(term) {
            // A change of members its predecessor left unfinished.
            queues.reconcile(&name);
        }
        led = leads.then_some(term);
        // Shown once no transaction's part holds its stream's groups
        // (the parts' applies and the recovery's ticks look again).
        machine.set_active(leads && (machine.active() || machine.may_show()));
        loop {
            tokio::select! {
                changed = metrics.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return stopped(queues, name, p, machine).await,
                },
                _ = recovery.tick() => {
                    if led.is_some() {
                        queues.recover(&name, &machine);
                        if !machine.active() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// [`lead`]'s end: group `p`'s Raft stopped on its own.
async fn stopped(queues: Arc<Queues>, name: String, p: Placement, machine: QueueMachine) {
    machine.set_active(false);
    tracing::error!(queue = %name, group = p.group, "a replicated queue's Raft stopped on its own; starting it again in 1 s");
    queues.router.remove(&p.group);
    queues.running.lock().remove(&p.group);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if queues.placement(&name).as_ref() == Some(&p) {
        queues.run(name, p);
    }
}
