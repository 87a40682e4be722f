//! Replicated queues (`DECLARE QUEUE q replicas=N`): each its own Raft
//! group on N of the cluster's nodes, the model RabbitMQ's quorum queues
//! set.
//!
//! - **Placement** ([`Placement`], `placement.rs`): made by the metadata
//!   group, so every node agrees on it: the group's number and its
//!   members. When it changes (the cluster's voters did), the group's
//!   leader changes the group's members to match ([`Queues::reconcile`]).
//! - **A damaged copy** (its log or snapshot did not read back whole)
//!   leaves the voters, starts over and joins again ([`Queues::repair`]).
//! - **The log is the queue.** An entry ([`QueueOp`]) carries copies of
//!   messages published and the positions of copies settled (acked,
//!   rejected by the leader's consumers): each node gathers what it has
//!   for a queue while its previous entry is in flight ([`batch`]), so one
//!   entry (one append, one fsync on each member) carries many. Each
//!   member's state machine ([`QueueMachine`], `queue_machine.rs`) keeps
//!   the copies not yet settled, by position (their entry's index times
//!   [`MAX_BATCH`](super::queue_machine::MAX_BATCH), plus their place in it), and takes the snapshots that
//!   bound the log. Its group log is kept in the node's message log; a
//!   restart reads the snapshot back and applies the log after it.
//! - **The leader serves.** On the member that leads, the copies go into
//!   the broker's queue of that name (in RAM, never in the node's message
//!   store: the log keeps them), and its consumers get them there. When a
//!   member becomes leader it puts every unsettled copy in, flagged
//!   redelivered (the old leader may have delivered it); one that stops
//!   leading empties its view. A `SUB` on another node is served by the
//!   leader through that node (`remote.rs`); `GET` elsewhere is refused,
//!   naming the leader.
//! - **Any node publishes**: routing happens where the `PUB` arrives, and
//!   the copy goes to the queue's leader ([`submit`]); the confirm waits
//!   for the commit, on a majority of the members, each having fsync'd.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::{BasicNode, Config, Raft};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod lead;

use lead::lead;

use super::batch::{batch, Job};
use super::log_store::GroupLog;
use super::network::{call, Peers, Router, Rpc};
use super::placement::Placement;
use super::queue_machine::{remove_snapshot, snapshot_path, QueueMachine, QueueOp};
use super::stream_replica::FIRST_OFFSET;
use super::submit::{submit, unsubmitted};
use super::{Payload, TypeConfig};
use crate::broker::{Broker, MetaAnswer, ReplicaMessage, ReplicaStatus};
use crate::error::BrokerError;
use crate::protocol::command::ClusterCommand;
use crate::store::{Committer, LogStore};

/// How long a new member of a queue's group may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How long a publish or settle waits for the queue's group.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The replicated queues of the cluster, and the groups of those this
/// node is a member of.
pub(super) struct Queues {
    me: u64,
    broker: Broker,
    store: Arc<LogStore>,
    committer: Arc<Committer>,
    peers: Peers,
    config: Arc<Config>,
    router: Router,
    /// The metadata group, for the nodes' addresses.
    meta: OnceLock<Raft<TypeConfig>>,
    /// Every replicated queue, by name.
    placed: RwLock<HashMap<String, Placement>>,
    /// The groups this node runs, by number (`None`: starting).
    running: Mutex<HashMap<u64, Option<Running>>>,
    /// Each queue's batcher on this node, by name.
    batchers: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
}

/// One group this node runs.
struct Running {
    raft: Raft<TypeConfig>,
    /// Its state machine: whether it shows the queue (it leads, caught up).
    machine: QueueMachine,
    watcher: JoinHandle<()>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// The replicated queues of node `me`, their groups run with `config`.
    pub(super) fn new(
        me: u64,
        broker: &Broker,
        store: Arc<LogStore>,
        peers: Peers,
        config: Arc<Config>,
        router: Router,
    ) -> Arc<Queues> {
        Arc::new(Queues {
            me,
            broker: broker.clone(),
            committer: broker.committer().clone(),
            store,
            peers,
            config,
            router,
            meta: OnceLock::new(),
            placed: RwLock::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            batchers: Mutex::new(HashMap::new()),
        })
    }

    /// Hands over the metadata group (once it runs) and starts the groups
    /// of the queues placed so far.
    pub(super) fn start(self: &Arc<Self>, meta: Raft<TypeConfig>) {
        let _ = self.meta.set(meta);
        let placed: Vec<(String, Placement)> = self
            .placed
            .read()
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        for (name, p) in placed {
            self.run(name, p);
        }
    }

    /// Records the placement of queue `name` (the metadata group applied
    /// its declaration, or a start read it back), and runs its group here
    /// if this node is a member.
    ///
    /// A placement that changed (the members followed the cluster's) is
    /// made so by the group's leader ([`Queues::reconcile`]); a node no
    /// longer a member stops its group and drops its copy.
    pub(super) fn place(self: &Arc<Self>, name: &str, p: Placement) {
        let old = self.placed.write().insert(name.to_string(), p.clone());
        if self.meta.get().is_none() {
            return;
        }
        let was = old.as_ref().is_some_and(|o| o.members.contains(&self.me));
        if p.members.contains(&self.me) {
            self.run(name.to_string(), p.clone());
            if old.is_some_and(|o| o.members != p.members) {
                self.reconcile(name);
            }
        } else if was {
            self.stop_group(name, p.group);
        }
    }

    /// Makes queue `name`'s group's voters its placement's members, when
    /// this node leads the group: each new member joins as a learner, and
    /// once it has caught up the voters become the members (openraft's
    /// joint consensus). Tries again every 2 s while this node leads and
    /// the two differ (a member not up yet, another change under way).
    pub(super) fn reconcile(self: &Arc<Self>, name: &str) {
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            loop {
                let Some(p) = this.placement(&name) else {
                    return;
                };
                let Some(raft) = this.raft(p.group) else {
                    return;
                };
                let m = raft.metrics().borrow().clone();
                if m.current_leader != Some(this.me) {
                    return;
                }
                let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
                let want: BTreeSet<u64> = p.members.iter().copied().collect();
                if voters == want {
                    return;
                }
                match this.change_members(&raft, &voters, &want).await {
                    Ok(()) => {
                        tracing::info!(queue = %name, members = ?want, "a replicated queue's group has its new members");
                    }
                    Err(e) => {
                        tracing::warn!(queue = %name, error = %e, "changing a replicated queue's members; trying again");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
    }

    /// Adds the members of `want` not in `voters` as learners (each caught
    /// up before it returns), then makes `want` the voters.
    async fn change_members(
        &self,
        raft: &Raft<TypeConfig>,
        voters: &BTreeSet<u64>,
        want: &BTreeSet<u64>,
    ) -> Result<(), String> {
        for id in want.difference(voters) {
            let node = BasicNode {
                addr: self.addr(*id),
            };
            tokio::time::timeout(CATCH_UP, raft.add_learner(*id, node, true))
                .await
                .map_err(|_| format!("node {id} did not catch up in time"))?
                .map_err(|e| e.to_string())?;
        }
        raft.change_membership(want.clone(), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Forgets queue `name` (deleted): stops its group here and drops its
    /// log.
    pub(super) fn unplace(self: &Arc<Self>, name: &str) {
        self.batchers.lock().remove(name);
        let Some(p) = self.placed.write().remove(name) else {
            return;
        };
        self.stop_group(name, p.group);
    }

    /// Stops group `group` (queue `name`'s) here and drops this node's
    /// copy, its log and snapshot (the queue was deleted, or this node is
    /// no longer one of its members); this node's view of it is emptied.
    fn stop_group(self: &Arc<Self>, name: &str, group: u64) {
        let Some(Some(run)) = self.running.lock().remove(&group) else {
            // Not running here, or still starting: the start sees its
            // place gone and stops what it started.
            return;
        };
        self.router.remove(&group);
        run.watcher.abort();
        let store = self.store.clone();
        let committer = self.committer.clone();
        let snapshot = snapshot_path(&self.broker.config().data_dir, group);
        let view = self.broker.find_queue(name);
        tokio::spawn(async move {
            let _ = run.raft.shutdown().await;
            if let Some(q) = view {
                q.cancel_subscriptions("leader-moved");
                let _ = q.purge();
                // A stream's copy goes too: should this node keep it again,
                // it is rebuilt from the first offset.
                q.stream_replace_groups(&[], false);
                if let Err(e) = q.stream_reset(FIRST_OFFSET) {
                    tracing::warn!(group, error = %e, "emptying a replicated stream's copy");
                }
            }
            if let Err(e) = remove_snapshot(&snapshot) {
                tracing::warn!(group, error = %e, "removing a replicated queue's snapshot");
            }
            if let Err(e) = store.group_drop(group) {
                tracing::warn!(group, error = %e, "dropping a replicated queue's log");
                return;
            }
            let _ = committer.wait(committer.written()).await;
        });
    }

    /// Whether queue `name` is replicated (on every publish target and
    /// settled copy: a read lock, no copy of the placement).
    pub(super) fn is_placed(&self, name: &str) -> bool {
        self.placed.read().contains_key(name)
    }

    /// Whether `name` is a replicated stream (this node's copy is one).
    pub(super) fn is_stream(&self, name: &str) -> bool {
        self.is_placed(name)
            && self
                .broker
                .find_queue(name)
                .is_some_and(|q| q.stream_end().is_some())
    }

    /// The placement of queue `name`, if replicated.
    pub(super) fn placement(&self, name: &str) -> Option<Placement> {
        self.placed.read().get(name).cloned()
    }

    /// Starts group `p` here, when this node is one of its members and
    /// does not run it yet (in the background). Its place is taken at
    /// once, so that two calls never start two Rafts on one log.
    fn run(self: &Arc<Self>, name: String, p: Placement) {
        if !p.members.contains(&self.me) {
            return;
        }
        {
            let mut running = self.running.lock();
            if running.contains_key(&p.group) {
                return;
            }
            running.insert(p.group, None);
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.start_group(&name, &p).await {
                this.running.lock().remove(&p.group);
                tracing::error!(queue = %name, group = p.group, error = %e, "starting a replicated queue's group");
            }
        });
    }

    async fn start_group(self: &Arc<Self>, name: &str, p: &Placement) -> Result<(), String> {
        // A copy found damaged (its log at the start, or its snapshot now)
        // must not vote with what it lost: it leaves the voters first,
        // starts over empty, and joins again (as a learner until it has
        // caught up: see `repair`).
        let file = snapshot_path(&self.broker.config().data_dir, p.group);
        let mut machine = QueueMachine::open(&self.broker, name, file.clone());
        if let Err(e) = &machine {
            tracing::error!(queue = %name, group = p.group, error = %e, "a replicated queue's snapshot");
            self.store
                .group_set_damaged(p.group)
                .map_err(|e| e.to_string())?;
        }
        let damaged = self.store.group_damaged(p.group);
        if damaged {
            tracing::error!(queue = %name, group = p.group, "this node's copy of a replicated queue is damaged: it leaves the group's voters, starts over empty and joins again from the other members");
            self.ask_leader(p, ClusterCommand::Remove(self.me)).await;
            self.store.group_drop(p.group).map_err(|e| e.to_string())?;
            let _ = self.committer.wait(self.committer.written()).await;
            remove_snapshot(&file)
                .map_err(|e| format!("removing a damaged copy's snapshot: {e}"))?;
            machine = QueueMachine::open(&self.broker, name, file);
        }
        let log = GroupLog::new(self.store.clone(), self.committer.clone(), p.group);
        let machine = machine?;
        let raft = Raft::new(
            self.me,
            self.config.clone(),
            self.peers.for_group(p.group),
            log,
            machine.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        self.router.insert(p.group, raft.clone());
        if !damaged
            && p.members.first() == Some(&self.me)
            && !raft.is_initialized().await.map_err(|e| e.to_string())?
        {
            let members: BTreeMap<u64, BasicNode> = p
                .members
                .iter()
                .map(|id| {
                    (
                        *id,
                        BasicNode {
                            addr: self.addr(*id),
                        },
                    )
                })
                .collect();
            raft.initialize(members).await.map_err(|e| e.to_string())?;
        }
        let watcher = tokio::spawn(lead(
            self.clone(),
            name.to_string(),
            p.clone(),
            raft.clone(),
            machine.clone(),
        ));
        let kept = match self.running.lock().get_mut(&p.group) {
            Some(slot) => {
                *slot = Some(Running {
                    raft: raft.clone(),
                    machine,
                    watcher,
                });
                true
            }
            None => {
                watcher.abort();
                false
            }
        };
        if !kept {
            // Deleted (or the node stopped) while it started.
            self.router.remove(&p.group);
            let _ = raft.shutdown().await;
            return Ok(());
        }
        tracing::info!(queue = %name, group = p.group, members = ?p.members, "replicated queue's group started");
        if damaged {
            let this = self.clone();
            let (name, p) = (name.to_string(), p.clone());
            tokio::spawn(async move { this.repair(&name, &p).await });
        }
        Ok(())
    }

    /// Joins queue `name`'s group again after its copy here was found
    /// damaged and emptied: the leader adds this node as a learner, waits
    /// until it has caught up with the log, and makes it a voter again;
    /// only then is the copy no longer damaged (a restart before that
    /// empties it again).
    async fn repair(self: &Arc<Self>, name: &str, p: &Placement) {
        let Ok(addr) = self.addr(self.me).parse() else {
            tracing::error!(queue = %name, "no cluster address of this node's to join the queue's group with");
            return;
        };
        self.ask_leader(p, ClusterCommand::Add { id: self.me, addr })
            .await;
        match self.store.group_repaired(p.group) {
            Ok(()) => {
                tracing::info!(queue = %name, group = p.group, "this node's copy of a replicated queue is whole again")
            }
            Err(e) => {
                tracing::error!(queue = %name, group = p.group, error = %e, "recording a repaired copy")
            }
        }
    }

    /// Has `change` made to group `p`'s membership by its leader, asking
    /// the other members in turn until one (the leader) has made it;
    /// trying again as long as this node runs (the group may have no
    /// leader for a while).
    async fn ask_leader(&self, p: &Placement, change: ClusterCommand) {
        let rpc = Rpc::membership(p.group, &change);
        loop {
            for id in p.members.iter().filter(|id| **id != self.me) {
                // Adding waits for the learner to catch up.
                let patience = Instant::now() + Duration::from_secs(90);
                let answer = call::<MetaAnswer>(&self.peers, &self.addr(*id), &rpc, patience).await;
                match answer.map(MetaAnswer::into_result) {
                    Ok(Ok(_)) => return,
                    // Removed already.
                    Ok(Err(BrokerError::NotFound(_)))
                        if matches!(change, ClusterCommand::Remove(_)) =>
                    {
                        return
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(node = id, error = %e, "a group's membership change")
                    }
                    Err(e) => tracing::debug!(node = id, error = ?e, "a group's membership change"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Where node `id` is reached (from the metadata group's membership).
    fn addr(&self, id: u64) -> String {
        self.meta
            .get()
            .and_then(|m| {
                m.metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .unwrap_or_default()
    }

    /// This node's id.
    pub(super) fn me(&self) -> u64 {
        self.me
    }

    /// The nodes' links.
    pub(super) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The metadata group, once it runs.
    pub(super) fn meta_raft(&self) -> Option<Raft<TypeConfig>> {
        self.meta.get().cloned()
    }

    /// The term in which this node leads and serves queue `name` (as
    /// [`Queues::serve_here`] says, else its error).
    pub(super) fn serving_term(&self, name: &str) -> Result<u64, BrokerError> {
        self.serve_here(name)?;
        let p = self.placement(name);
        let term = p.and_then(|p| self.raft(p.group));
        term.map(|r| r.metrics().borrow().current_term)
            .ok_or_else(|| BrokerError::Unavailable(format!("queue {name} is not led here")))
    }

    /// Group `group`'s Raft, if it runs here.
    fn raft(&self, group: u64) -> Option<Raft<TypeConfig>> {
        self.running
            .lock()
            .get(&group)
            .and_then(|r| r.as_ref().map(|r| r.raft.clone()))
    }

    /// Group `group`'s state machine, if the group runs here.
    fn machine(&self, group: u64) -> Option<QueueMachine> {
        self.running
            .lock()
            .get(&group)
            .and_then(|r| r.as_ref().map(|r| r.machine.clone()))
    }

    /// Appends `op` to queue `name`'s log from this node: what applying it
    /// came to (the places in `op.enqueue` of the copies the queue did not
    /// keep: `d<place>` a duplicate, `r<place>` refused by a full
    /// `reject-publish` queue).
    pub(super) async fn submit(
        &self,
        name: &str,
        op: &QueueOp,
    ) -> Result<Vec<String>, BrokerError> {
        let p = self.placement(name).ok_or_else(|| {
            BrokerError::NotFound(format!("queue {name} is not a replicated queue"))
        })?;
        let command = Payload::of(op).map_err(|e| BrokerError::Internal(e.to_string()))?;
        let local = self.raft(p.group);
        let members: Vec<String> = p.members.iter().map(|id| self.addr(*id)).collect();
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        let submitted = submit(
            local.as_ref(),
            &self.peers,
            &members,
            p.group,
            command,
            deadline,
        )
        .await;
        let (_, answer) =
            submitted.map_err(|e| unsubmitted(e, &format!("replicated queue {name}")))?;
        answer.into_result()
    }

    /// Publishes a copy of `msg` to replicated queue `name`: `Ok` once
    /// committed, with `duplicate` when a `dedup-window=` queue had it,
    /// `rejected` when a full `reject-publish` queue refused it.
    ///
    /// The copy goes to the queue's batcher now, not when the answer is
    /// first waited for: copies handed over one after the other (a
    /// connection's pipelined `PUB`s, a batch of dead letters) keep that
    /// order in the queue's log, however their waits are scheduled.
    pub(super) fn enqueue(
        self: &Arc<Self>,
        name: &str,
        msg: ReplicaMessage,
    ) -> impl std::future::Future<Output = Result<Vec<String>, BrokerError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        self.job(name, Job::Enqueue(msg, tx));
        let name = name.to_string();
        async move {
            match rx.await {
                Ok(answer) => answer.into_result(),
                Err(_) => Err(BrokerError::Unavailable(format!(
                    "queue {name} was deleted; the message may or may not have been stored"
                ))),
            }
        }
    }

    /// Records settled copies of `name` (in its next entry).
    pub(super) fn settled(self: &Arc<Self>, name: &str, seqs: Vec<u64>) {
        self.job(name, Job::Settle(seqs));
    }

    /// Records that stream `name`'s group `group` is at offset `at` (in
    /// its next entry).
    pub(super) fn offset(self: &Arc<Self>, name: &str, group: &str, at: u64, seek: bool) {
        self.job(name, Job::Offset(group.to_string(), at, seek));
    }

    /// Records that stream `name`'s group `group` failed a delivery of
    /// offset `at`, its `count`th (in its next entry).
    pub(super) fn failed(self: &Arc<Self>, name: &str, group: &str, at: u64, count: u32) {
        self.job(name, Job::Failed(group.to_string(), at, count));
    }

    /// Records copies of `name` put back after a delivery (in its next
    /// entry).
    pub(super) fn returned(self: &Arc<Self>, name: &str, seqs: Vec<u64>) {
        self.job(name, Job::Return(seqs));
    }

    /// Resolves once what this node handed over for queue `name` before
    /// (settlements, copies) is committed.
    pub(super) async fn barrier(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        let (tx, rx) = oneshot::channel();
        self.job(name, Job::Barrier(tx));
        match rx.await {
            Ok(answer) => answer.into_result().map(|_| ()),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "queue {name} was deleted meanwhile"
            ))),
        }
    }

    /// Hands `job` to queue `name`'s batcher on this node (started on
    /// first use).
    fn job(self: &Arc<Self>, name: &str, job: Job) {
        let mut batchers = self.batchers.lock();
        let tx = batchers.entry(name.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let (this, queue) = (self.clone(), Arc::<str>::from(name));
            tokio::spawn(batch(name.to_string(), rx, move |op| {
                let (this, queue) = (this.clone(), queue.clone());
                async move { this.submit(&queue, &op).await }
            }));
            tx
        });
        if let Err(mpsc::error::SendError(Job::Enqueue(_, waiter) | Job::Barrier(waiter))) =
            tx.send(job)
        {
            let _ = waiter.send(MetaAnswer::error(BrokerError::Unavailable(format!(
                "queue {name} is not taking messages here"
            ))));
        }
    }

    /// `Ok` on the leader of `name` (or when `name` is not replicated).
    pub(super) fn serve_here(&self, name: &str) -> Result<(), BrokerError> {
        let Some(p) = self.placement(name) else {
            return Ok(());
        };
        // Ready once the lead task has shown the queue: it has applied
        // what the log had when this node began to lead.
        let ready = self.machine(p.group).is_some_and(|m| m.active());
        match self.leader(p.group) {
            Some(l) if l == self.me && ready => Ok(()),
            Some(l) if l == self.me => Err(BrokerError::Unavailable(format!(
                "queue {name}'s new leader is catching up with its log; try again"
            ))),
            Some(l) => Err(BrokerError::Precondition(format!(
                "queue {name} is replicated and led by node {l}: consume from that node"
            ))),
            None if p.members.contains(&self.me) => Err(BrokerError::Unavailable(format!(
                "queue {name} has no leader at the moment (an election); try again"
            ))),
            None => Err(BrokerError::Precondition(format!(
                "queue {name} is replicated on nodes {:?}: consume from its leader",
                p.members
            ))),
        }
    }

    /// Whether a subscriber to `name` on this node is served by its leader
    /// on another node: `name` is replicated, and this node does not lead
    /// it (and is not a leader catching up, or a member that knows of no
    /// leader: those answer [`Queues::serve_here`]'s `UNAVAILABLE`).
    pub(super) fn led_elsewhere(&self, name: &str) -> bool {
        let Some(p) = self.placement(name) else {
            return false;
        };
        match self.leader(p.group) {
            Some(l) => l != self.me,
            None => !p.members.contains(&self.me),
        }
    }

    /// Where queue `name`'s leader is reached, when this node knows it
    /// (it is a member) and it is another node.
    pub(super) fn leader_addr(&self, name: &str) -> Option<String> {
        let p = self.placement(name)?;
        let leader = self.leader(p.group).filter(|l| *l != self.me)?;
        Some(self.addr(leader))
    }

    /// The addresses to ask for queue `name`'s leader: the leader's when
    /// this node knows it, else every other member's.
    pub(super) fn leader_first(&self, name: &str) -> Vec<String> {
        if let Some(addr) = self.leader_addr(name) {
            return vec![addr];
        }
        let Some(p) = self.placement(name) else {
            return Vec::new();
        };
        p.members
            .iter()
            .filter(|m| **m != self.me)
            .map(|m| self.addr(*m))
            .collect()
    }

    /// Group `group`'s leader, as this node's Raft of it knows (`None`:
    /// none known, or the group does not run here).
    fn leader(&self, group: u64) -> Option<u64> {
        self.raft(group)
            .and_then(|r| r.metrics().borrow().current_leader)
    }

    /// Queue `name`'s group as this node sees it (`None`: not replicated).
    pub(super) fn status(&self, name: &str) -> Option<ReplicaStatus> {
        let p = self.placement(name)?;
        let metrics = self.raft(p.group).map(|r| r.metrics().borrow().clone());
        let mut status = ReplicaStatus {
            members: p.members.clone(),
            damaged: self.store.group_damaged(p.group),
            tx_pending: self.machine(p.group).map(|m| m.tx_pending()),
            ..ReplicaStatus::default()
        };
        if let Some(m) = metrics {
            status.leader = m.current_leader;
            status.term = Some(m.current_term);
            status.last_log_index = m.last_log_index;
            status.last_applied = m.last_applied.map(|l| l.index);
            status.snapshot = m.snapshot.map(|l| l.index);
            status.purged = m.purged.map(|l| l.index);
            if let Some(r) = &m.replication {
                let last = m.last_log_index.unwrap_or(0);
                status.lag = r
                    .iter()
                    .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
                    .collect();
            }
        }
        Some(status)
    }

    /// Waits until queue `name`'s group has a leader, when this node is a
    /// member (its group starts in the background once placed), up to
    /// [`SUBMIT_TIMEOUT`].
    pub(super) async fn led(&self, name: &str) {
        let Some(p) = self.placement(name) else {
            return;
        };
        if !p.members.contains(&self.me) {
            return;
        }
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        while Instant::now() < deadline {
            if self.leader(p.group).is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `Ok` once a majority of queue `name`'s members has confirmed that
    /// this node still leads it, and this node has applied everything its
    /// log committed before (a read index): what it serves is then the
    /// log's, not what a node cut off a moment ago believes.
    pub(super) async fn confirm_lead(&self, name: &str) -> Result<(), BrokerError> {
        let Some(p) = self.placement(name) else {
            return Ok(());
        };
        let Some(raft) = self.raft(p.group) else {
            return self.serve_here(name);
        };
        match tokio::time::timeout(SUBMIT_TIMEOUT, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => self.serve_here(name),
            Ok(Err(_)) => match self.serve_here(name) {
                // It led when asked but lost the lead meanwhile.
                Ok(()) => Err(BrokerError::Unavailable(format!(
                    "queue {name}'s lead is moving; try again"
                ))),
                Err(e) => Err(e),
            },
            Err(_) => Err(BrokerError::Unavailable(format!(
                "queue {name}'s leader could not reach a majority of its members; try again"
            ))),
        }
    }

    /// Stops every group (the node stops).
    pub(super) async fn stop(&self) {
        let all: Vec<Running> = self.running.lock().drain().filter_map(|(_, r)| r).collect();
        for r in all {
            r.watcher.abort();
            let _ = r.raft.shutdown().await;
        }
    }
}
