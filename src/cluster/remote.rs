//! Consumers on any node: a `SUB` to a replicated queue on a node that
//! does not lead it is served by the queue's leader, through the node the
//! subscriber is connected to (RabbitMQ's quorum queues do the same).
//!
//! - **The subscriber's node** ([`Links`]) opens a connection of its own
//!   to the leader's cluster port (`Rpc::Consume`), and pushes each
//!   delivery that comes over it into the subscriber's connection as from
//!   a queue of its own: the connection gives it a delivery tag, counts it
//!   unacked, times its ack out. Its settlements go back over the link
//!   ([`Up::Settle`]). An `ACK` or `REJECT` is also recorded in the
//!   queue's log by this node, and the `OK` waits for that record's
//!   commit, as on the leader: a message whose ack was answered `OK` is not
//!   delivered again after a failover.
//! - **The leader** ([`serve`]) subscribes a consumer of its own to the
//!   queue, with the subscriber's prefetch, and keeps what it sent until
//!   it is settled. When the link breaks (the subscriber's connection
//!   closed, its node died), it puts back what was not settled, as a
//!   connection's close does.
//! - **Beats.** Each side of an idle link says so every second; a side
//!   that reads nothing for 4 s (a paused node, a cut without a close)
//!   counts the link broken, as it does one whose write takes that long.
//! - **When the leader fails or moves**, the link ends and the subscriber
//!   gets `NOTICE cancelled <tag> reason=leader-moved`, as a subscriber on
//!   the old leader would; it subscribes again (on the same node) and gets
//!   the new leader's deliveries. What it holds from the old link stays
//!   outstanding: an `ACK` of it is recorded in the log still.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::network::{read_frame, write_frame, ConsumeReq, Io, Peers, Rpc, Start};
use super::queues::Queues;
use crate::broker::message::Entry;
use crate::broker::queue::{Consumer, Delivery, Push, Queue, Settle};
use crate::broker::{Broker, Linked, MetaAnswer, ReplicaMessage};
use crate::error::BrokerError;
use crate::protocol::command::StreamStart;
use crate::protocol::reply::Notice;

/// How long a `SUB` looks for the queue's leader (an election).
const FIND_LEADER: Duration = Duration::from_secs(5);

/// How long between two rounds of the members while none leads.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Deliveries the leader writes to a link at a time.
const BATCH: usize = 256;

/// How often each side of an idle link says it is there.
const BEAT: Duration = Duration::from_secs(1);

/// How long a link may be silent (nothing read), or a write to it take,
/// before its side counts it broken: the other node is paused, or cut off
/// without the connection closing. So a subscriber whose leader was
/// paused hears `NOTICE cancelled` and goes to the new one.
const SILENCE: Duration = Duration::from_secs(4);

/// How long one member may take to answer a subscription.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// From the subscriber's node to the leader, after the request.
#[derive(Debug, Serialize, Deserialize)]
enum Up {
    /// The copy at this position is settled so.
    Settle(u64, How),
    /// `UNSUB`: deliver no more (what was delivered stays outstanding).
    Unsub,
    /// Nothing else to say for a while ([`BEAT`]).
    Beat,
    /// Answer [`Down::Barrier`] once what this link settled before is
    /// committed in the queue's log (a stream's group offsets: the
    /// leader records them).
    Barrier(u64),
}

/// A settlement, as a link carries it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum How {
    Ack,
    Requeue(Option<u64>),
    Timeout,
    Reject,
    /// Never written to the subscriber; its flag as it was.
    Return(bool),
}

impl From<Settle> for How {
    fn from(s: Settle) -> How {
        match s {
            Settle::Ack => How::Ack,
            Settle::Requeue { delay_ms } => How::Requeue(delay_ms),
            Settle::Timeout => How::Timeout,
            Settle::Reject => How::Reject,
            Settle::Return { redelivered } => How::Return(redelivered),
        }
    }
}

impl From<How> for Settle {
    fn from(h: How) -> Settle {
        match h {
            How::Ack => Settle::Ack,
            How::Requeue(delay_ms) => Settle::Requeue { delay_ms },
            How::Timeout => Settle::Timeout,
            How::Reject => Settle::Reject,
            How::Return(redelivered) => Settle::Return { redelivered },
        }
    }
}

/// From the leader to the subscriber's node.
#[derive(Debug, Serialize, Deserialize)]
enum Down {
    /// The subscription is made: deliveries follow.
    Subscribed,
    /// Not the queue's leader: where it is, when known.
    NotLeader(Option<String>),
    /// Refused (the queue is gone, another consumer is exclusive, ...).
    Refused(MetaAnswer),
    /// A delivery: the copy's position, its deliveries so far, whether it
    /// may have been delivered before, and the message.
    Deliver {
        seq: u64,
        deliveries: u32,
        redelivered: bool,
        msg: ReplicaMessage,
    },
    /// `single-active`: the subscription became the active consumer.
    Active,
    /// The leader ended the subscription (`queue-deleted`,
    /// `leader-moved`).
    Cancelled(String),
    /// Nothing else to say for a while ([`BEAT`]).
    Beat,
    /// What was settled before [`Up::Barrier`] is committed (`true`), or
    /// could not be.
    Barrier(u64, bool),
}

/// The subscriber's side of one link.
#[derive(Debug)]
struct Link {
    /// Its read side is over: nothing more comes from the leader.
    down: bool,
    /// The subscriber's connection.
    conn: u64,
    /// To the link's writer: closed once the link is down.
    up: mpsc::UnboundedSender<Up>,
    /// Deliveries pushed to the connection and not yet settled.
    outstanding: u64,
    /// Unsubscribed, or cancelled: it ends once nothing is outstanding.
    ended: bool,
}

/// This node's subscriptions to replicated queues led by other nodes, by
/// consumer id.
#[derive(Debug)]
pub(super) struct Links {
    peers: Peers,
    queues: Arc<Queues>,
    by_consumer: DashMap<u64, Link>,
    /// The next [`Up::Barrier`]'s number.
    next_barrier: AtomicU64,
    /// Who waits for each [`Down::Barrier`]: by its number, with the
    /// consumer whose link it went on.
    barriers: DashMap<u64, (u64, oneshot::Sender<bool>)>,
    /// Each connection's stream acks not yet known committed.
    pending: DashMap<u64, Vec<oneshot::Receiver<bool>>>,
}

impl Links {
    /// No links yet; they are opened through `peers`, to the leaders of
    /// `queues`.
    pub(super) fn new(peers: Peers, queues: Arc<Queues>) -> Arc<Links> {
        Arc::new(Links {
            peers,
            queues,
            by_consumer: DashMap::new(),
            next_barrier: AtomicU64::new(1),
            barriers: DashMap::new(),
            pending: DashMap::new(),
        })
    }

    /// Opens a link for `consumer` to `queue`'s leader: see
    /// [`crate::broker::Consensus::consume`].
    pub(super) fn open(
        self: &Arc<Self>,
        queue: Arc<Queue>,
        consumer: Consumer,
        group: Option<String>,
        start: Option<StreamStart>,
    ) -> Linked {
        let links = self.clone();
        Box::pin(async move {
            let req = ConsumeReq {
                queue: queue.name.to_string(),
                tag: consumer.tag.to_string(),
                prefetch: consumer.prefetch,
                prefetch_bytes: consumer.prefetch_bytes,
                exclusive: consumer.exclusive,
                group,
                start: start.map(Start::from),
            };
            let io = links.find_leader(&req).await?;
            let start: Box<dyn FnOnce() + Send> =
                Box::new(move || links.start(io, queue, consumer));
            Ok(start)
        })
    }

    /// A link to `req.queue`'s leader, subscribed: asks the leader this
    /// node knows of, or each member in turn, following a member's
    /// pointer to the leader, until [`FIND_LEADER`] has passed.
    async fn find_leader(&self, req: &ConsumeReq) -> Result<Box<dyn Io>, BrokerError> {
        let deadline = Instant::now() + FIND_LEADER;
        let mut hint: Option<String> = None;
        loop {
            let targets = match hint.take() {
                Some(addr) => vec![addr],
                None => self.queues.leader_first(&req.queue),
            };
            for addr in targets {
                let left = deadline.saturating_duration_since(Instant::now());
                let asked = self.ask(&addr, req);
                match tokio::time::timeout(left.min(ASK_TIMEOUT), asked).await {
                    Ok(Ok(Asked::Linked(io))) => return Ok(io),
                    Ok(Ok(Asked::Elsewhere(Some(leader)))) if leader != addr => {
                        hint = Some(leader);
                        break;
                    }
                    Ok(Ok(Asked::Elsewhere(_))) => {}
                    Ok(Err(AskError::Refused(e))) => return Err(e),
                    Ok(Err(AskError::Io(why))) => {
                        tracing::debug!(%addr, %why, queue = %req.queue, "no link to this member");
                    }
                    Err(_) => {
                        tracing::debug!(%addr, queue = %req.queue, "a member did not answer in time");
                    }
                }
            }
            if Instant::now() + RETRY_EVERY >= deadline {
                return Err(BrokerError::Unavailable(format!(
                    "queue {} has no leader this node can reach (an election, or a partition); \
                     try again",
                    req.queue
                )));
            }
            let pause = match hint {
                Some(_) => RETRY_EVERY / 10,
                None => RETRY_EVERY,
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Asks the node at `addr` for the subscription `req`.
    async fn ask(&self, addr: &str, req: &ConsumeReq) -> Result<Asked, AskError> {
        let io_err = |e: std::io::Error| AskError::Io(e.to_string());
        let mut io = self.peers.connect(addr).await.map_err(io_err)?;
        write_frame(&mut io, &Rpc::Consume(req.clone()))
            .await
            .map_err(io_err)?;
        match read_frame::<Down>(&mut io).await.map_err(io_err)? {
            Down::Subscribed => Ok(Asked::Linked(io)),
            Down::NotLeader(leader) => Ok(Asked::Elsewhere(leader)),
            Down::Refused(answer) => Err(AskError::Refused(
                answer
                    .into_result()
                    .err()
                    .unwrap_or_else(|| BrokerError::Internal("an empty refusal".into())),
            )),
            other => Err(AskError::Io(format!("{other:?} before the subscription"))),
        }
    }

    /// Starts the link `io` for `consumer`: its deliveries go to the
    /// consumer's connection, its settlements to the leader.
    fn start(self: Arc<Self>, io: Box<dyn Io>, queue: Arc<Queue>, consumer: Consumer) {
        let (up, up_rx) = mpsc::unbounded_channel();
        self.by_consumer.insert(
            consumer.id,
            Link {
                down: false,
                conn: consumer.conn,
                up,
                outstanding: 0,
                ended: false,
            },
        );
        let (read, write) = tokio::io::split(io);
        tokio::spawn(send_up(write, up_rx));
        tokio::spawn(self.receive(read, queue, consumer));
    }

    /// The subscriber's side of a link: pushes what the leader sends into
    /// the consumer's connection, until the link ends. Then, unless the
    /// subscription was ended here, `NOTICE cancelled`.
    async fn receive(self: Arc<Self>, mut read: ReadHalf<Box<dyn Io>>, q: Arc<Queue>, c: Consumer) {
        let mut reason = "leader-moved";
        loop {
            let down = match tokio::time::timeout(SILENCE, read_frame::<Down>(&mut read)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::debug!(queue = %q.name, error = %e, "a link to the leader ended");
                    break;
                }
                Err(_) => {
                    tracing::info!(queue = %q.name, "the leader went silent: its subscription is cancelled");
                    break;
                }
            };
            let push = match down {
                Down::Deliver {
                    seq,
                    deliveries,
                    redelivered,
                    msg,
                } => {
                    let msg = match msg.message() {
                        Ok(m) => Arc::new(m),
                        Err(e) => {
                            tracing::warn!(queue = %q.name, error = %e, "a delivery that does not decode");
                            break;
                        }
                    };
                    Push::Deliver(Delivery {
                        queue: q.clone(),
                        consumer_id: c.id,
                        tag: c.tag.clone(),
                        auto_ack: c.auto_ack,
                        entry: Entry {
                            seq,
                            msg,
                            deliveries,
                            redelivered,
                            stored: false,
                            priority: 0,
                            expires_at: None,
                            not_before: None,
                            uncertain: false,
                        },
                    })
                }
                Down::Beat => continue,
                Down::Barrier(id, committed) => {
                    if let Some((_, (_, w))) = self.barriers.remove(&id) {
                        let _ = w.send(committed);
                    }
                    continue;
                }
                Down::Active => Push::Notice(Notice::Active {
                    tag: c.tag.to_string(),
                    partition: None,
                }),
                Down::Cancelled(why) => {
                    reason = match why.as_str() {
                        "queue-deleted" => "queue-deleted",
                        _ => "leader-moved",
                    };
                    break;
                }
                other => {
                    tracing::warn!(queue = %q.name, "unexpected on a link: {other:?}");
                    break;
                }
            };
            if !self.pass(&c, push) {
                break;
            }
        }
        // Nothing more comes from the leader: who waits for its word is
        // told no.
        self.barriers.retain(|_, (consumer, _)| *consumer != c.id);
        // Told while the link is looked at, so that an `UNSUB` meanwhile
        // (which ends it) cannot see its tag cancelled after.
        if let Some(mut link) = self.by_consumer.get_mut(&c.id) {
            link.down = true;
            if !link.ended {
                link.ended = true;
                let _ = c.tx.send(Push::Cancelled {
                    tag: c.tag.clone(),
                    reason,
                });
            }
        }
        self.end_if_done(c.id);
    }

    /// Pushes `push` to consumer `c`'s connection, counting a delivery
    /// outstanding; one for a subscription ended meanwhile goes back.
    /// False when the link is over (the connection closed).
    fn pass(&self, c: &Consumer, push: Push) -> bool {
        let Some(mut link) = self.by_consumer.get_mut(&c.id) else {
            return false;
        };
        match push {
            Push::Deliver(d) if link.ended => {
                let back = Up::Settle(d.entry.seq, How::Return(d.entry.redelivered));
                link.up.send(back).is_ok()
            }
            Push::Deliver(d) => {
                link.outstanding += 1;
                if let Err(mpsc::error::SendError(Push::Deliver(d))) = c.tx.send(Push::Deliver(d)) {
                    // The connection is closing: its close settles what it
                    // took; this one it never took.
                    link.outstanding -= 1;
                    let back = Up::Settle(d.entry.seq, How::Return(d.entry.redelivered));
                    let _ = link.up.send(back);
                    return false;
                }
                true
            }
            other => c.tx.send(other).is_ok(),
        }
    }

    /// See [`crate::broker::Consensus::settle_remote`].
    pub(super) fn settle(&self, consumer: u64, queue: &str, seq: u64, how: Settle) -> bool {
        let Some(mut link) = self.by_consumer.get_mut(&consumer) else {
            return false;
        };
        let acked = matches!(how, Settle::Ack | Settle::Reject);
        let stream = self.queues.is_stream(queue);
        if acked && !stream {
            // Recorded from here too: the `ACK`'s `OK` waits for this
            // node's records of the queue to commit, whether the link
            // still stands or not.
            self.queues.settled(queue, vec![seq]);
        }
        let _ = link.up.send(Up::Settle(seq, how.into()));
        if acked && stream {
            // A stream's group offsets are the leader's to record (only it
            // knows where the group is): the `OK` waits for its word that
            // they are committed, on the same link, after the settlement.
            let (tx, rx) = oneshot::channel();
            let id = self.next_barrier.fetch_add(1, Ordering::Relaxed);
            if !link.down && link.up.send(Up::Barrier(id)).is_ok() {
                self.barriers.insert(id, (consumer, tx));
            }
            // Else `tx` is dropped: the ack is answered UNAVAILABLE.
            self.pending.entry(link.conn).or_default().push(rx);
        }
        link.outstanding = link.outstanding.saturating_sub(1);
        drop(link);
        self.end_if_done(consumer);
        true
    }

    /// See [`crate::broker::Consensus::unsubscribe_remote`].
    pub(super) fn unsubscribe(&self, consumer: u64) -> bool {
        let Some(mut link) = self.by_consumer.get_mut(&consumer) else {
            return false;
        };
        if !link.ended {
            link.ended = true;
            let _ = link.up.send(Up::Unsub);
        }
        drop(link);
        self.end_if_done(consumer);
        true
    }

    /// See [`crate::broker::Consensus::closed`].
    pub(super) fn closed(&self, conn: u64) {
        self.by_consumer.retain(|_, link| link.conn != conn);
        self.pending.remove(&conn);
    }

    /// Resolves once the stream acks connection `conn` sent through
    /// links so far are committed in their streams' logs (a leader records
    /// a group's offsets): its `ACK`'s `OK` waits for it. `UNAVAILABLE`
    /// when a link broke first (the ack may not hold: delivered again).
    pub(super) fn committed(
        &self,
        conn: u64,
    ) -> impl std::future::Future<Output = Result<(), BrokerError>> {
        let waits = self
            .pending
            .remove(&conn)
            .map(|(_, w)| w)
            .unwrap_or_default();
        async move {
            let mut held = true;
            for w in waits {
                held &= w.await.unwrap_or(false);
            }
            match held {
                true => Ok(()),
                false => Err(BrokerError::Unavailable(
                    "the stream's leader went before the ack was committed; it may be delivered again".into(),
                )),
            }
        }
    }

    /// Drops the link of `consumer` once it is ended and nothing it
    /// delivered is outstanding: its writer sends what is queued, then
    /// closes the connection.
    fn end_if_done(&self, consumer: u64) {
        self.by_consumer
            .remove_if(&consumer, |_, link| link.ended && link.outstanding == 0);
    }
}

/// What a member answered a subscription.
enum Asked {
    Linked(Box<dyn Io>),
    Elsewhere(Option<String>),
}

/// Why a member gave no subscription.
enum AskError {
    Refused(BrokerError),
    Io(String),
}

/// The subscriber's side of a link: sends its settlements, in order, until
/// the link is dropped, then closes the connection (the leader puts back
/// what is left).
async fn send_up(mut write: WriteHalf<Box<dyn Io>>, mut rx: mpsc::UnboundedReceiver<Up>) {
    let mut batch = Vec::new();
    loop {
        let first = match tokio::time::timeout(BEAT, rx.recv()).await {
            Ok(Some(up)) => up,
            Ok(None) => break,
            Err(_) => Up::Beat,
        };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(up) => batch.push(up),
                Err(_) => break,
            }
        }
        if write_all(&mut write, batch.drain(..)).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Writes `frames` in one write, within [`SILENCE`] (a paused peer stops
/// reading).
async fn write_all<T: Serialize>(
    write: &mut WriteHalf<Box<dyn Io>>,
    frames: impl Iterator<Item = T>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for f in frames {
        write_frame(&mut buf, &f).await?;
    }
    let written = async {
        write.write_all(&buf).await?;
        write.flush().await
    };
    match tokio::time::timeout(SILENCE, written).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::other("the peer stopped reading")),
    }
}

/// The leader's side of a link: subscribes a consumer of its own to
/// `req.queue` for the subscriber on the other end of `io`, and serves
/// it until the link ends; then puts back what was not settled.
pub(super) async fn serve(
    broker: Broker,
    queues: Arc<Queues>,
    req: ConsumeReq,
    mut io: Box<dyn Io>,
) {
    if queues.led_elsewhere(&req.queue) {
        let hint = queues.leader_addr(&req.queue);
        let _ = write_frame(&mut io, &Down::NotLeader(hint)).await;
        return;
    }
    let q = match (queues.serve_here(&req.queue), broker.find_queue(&req.queue)) {
        (Ok(()), Some(q)) if queues.is_placed(&req.queue) => q,
        (Ok(()), _) => {
            let gone = BrokerError::NotFound(format!("queue {}", req.queue));
            let _ = write_frame(&mut io, &Down::Refused(MetaAnswer::error(gone))).await;
            return;
        }
        (Err(e), _) => {
            let _ = write_frame(&mut io, &Down::Refused(MetaAnswer::error(e))).await;
            return;
        }
    };
    if q.stream_end().is_some() {
        // A stream's groups are the log's: served once a majority confirms
        // this node still leads (see `Queues::confirm_lead`).
        if let Err(e) = queues.confirm_lead(&req.queue).await {
            let _ = write_frame(&mut io, &Down::Refused(MetaAnswer::error(e))).await;
            return;
        }
    }
    let (tx, mut pushes) = mpsc::unbounded_channel();
    let id = broker.next_id();
    let consumer = Consumer {
        id,
        tag: Arc::from(req.tag.as_str()),
        conn: id,
        tx,
        prefetch: req.prefetch,
        credit: req.prefetch,
        prefetch_bytes: req.prefetch_bytes,
        bytes_in_flight: 0,
        exclusive: req.exclusive,
        auto_ack: false,
    };
    let subscribed = match q.stream_end() {
        Some(_) => q.stream_subscribe(consumer, req.group.as_deref(), req.start.map(Into::into)),
        None => broker.subscribe(&q, consumer),
    };
    if let Err(e) = subscribed {
        let _ = write_frame(&mut io, &Down::Refused(MetaAnswer::error(e))).await;
        return;
    }
    if write_frame(&mut io, &Down::Subscribed).await.is_err() {
        broker.unsubscribe(&q, id);
        return;
    }
    let (mut read, mut write) = tokio::io::split(io);
    let (up_tx, mut ups) = mpsc::unbounded_channel();
    // Ends when the subscriber's node closes the link or goes silent.
    let reader = tokio::spawn(async move {
        while let Ok(Ok(up)) = tokio::time::timeout(SILENCE, read_frame::<Up>(&mut read)).await {
            if up_tx.send(up).is_err() {
                return;
            }
        }
    });
    let mut beat = tokio::time::interval(BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wrote = false;
    // What was sent and is not settled yet, by position.
    let mut sent: HashMap<u64, Entry> = HashMap::new();
    let mut subscribed = true;
    // An ack since the last barrier that settled nothing (the stream's
    // lead moved meanwhile): that barrier is answered not committed.
    let mut refused = false;
    // Barriers asked for, answered once the queue's log has what came
    // before them.
    let (done_tx, mut done) = mpsc::unbounded_channel();
    loop {
        tokio::select! {
            Some((id, committed)) = done.recv() => {
                if write_all(&mut write, std::iter::once(Down::Barrier(id, committed))).await.is_err() {
                    break;
                }
            }
            // Once unsubscribed, the queue has dropped the consumer's
            // sender: only settlements come.
            push = pushes.recv(), if subscribed => {
                let Some(first) = push else { break };
                let mut frames = Vec::new();
                let mut over = false;
                let mut next = Some(first);
                while let Some(p) = next {
                    match p {
                        Push::Deliver(d) => {
                            frames.push(Down::Deliver {
                                seq: d.entry.seq,
                                deliveries: d.entry.deliveries,
                                redelivered: d.entry.redelivered,
                                msg: ReplicaMessage::delivered(&d.entry.msg),
                            });
                            sent.insert(d.entry.seq, d.entry);
                        }
                        Push::Notice(Notice::Active { .. }) => frames.push(Down::Active),
                        Push::Notice(_) => {}
                        Push::Cancelled { reason, .. } => {
                            frames.push(Down::Cancelled(reason.to_string()));
                            over = true;
                            break;
                        }
                    }
                    next = match frames.len() < BATCH {
                        true => pushes.try_recv().ok(),
                        false => None,
                    };
                }
                if write_all(&mut write, frames.into_iter()).await.is_err() || over {
                    break;
                }
                wrote = true;
            }
            _ = beat.tick() => {
                if !std::mem::take(&mut wrote)
                    && write_all(&mut write, std::iter::once(Down::Beat)).await.is_err()
                {
                    break;
                }
            }
            up = ups.recv() => match up {
                Some(Up::Settle(seq, how)) => {
                    if let Some(e) = sent.remove(&seq) {
                        let acked = matches!(how, How::Ack | How::Reject);
                        refused |= !settle(&broker, &q, id, e, how) && acked;
                    }
                }
                Some(Up::Beat) => {}
                Some(Up::Barrier(id)) => {
                    let (queues, name, done) = (queues.clone(), q.name.clone(), done_tx.clone());
                    let refused = std::mem::take(&mut refused);
                    tokio::spawn(async move {
                        let committed = queues.barrier(&name).await.is_ok() && !refused;
                        let _ = done.send((id, committed));
                    });
                }
                Some(Up::Unsub) => {
                    if subscribed {
                        subscribed = false;
                        broker.unsubscribe(&q, id);
                        give_back_unsent(&broker, &q, id, &mut pushes);
                    }
                }
                None => break,
            },
        }
    }
    reader.abort();
    if subscribed {
        broker.unsubscribe(&q, id);
    }
    give_back_unsent(&broker, &q, id, &mut pushes);
    // Sent and not settled: back, as a connection's close puts them.
    for (_, e) in sent {
        settle(&broker, &q, id, e, How::Requeue(None));
    }
}

/// Puts back what the queue pushed to consumer `id` and the link did not
/// send: not counted as delivered.
fn give_back_unsent(
    broker: &Broker,
    q: &Arc<Queue>,
    id: u64,
    pushes: &mut mpsc::UnboundedReceiver<Push>,
) {
    while let Ok(p) = pushes.try_recv() {
        if let Push::Deliver(d) = p {
            let redelivered = d.entry.redelivered;
            settle(broker, q, id, d.entry, How::Return(redelivered));
        }
    }
}

/// Settles copy `e` of `q`, delivered to consumer `id`, as a link says:
/// false when that failed (an ack of a stream whose lead moved meanwhile).
fn settle(broker: &Broker, q: &Arc<Queue>, id: u64, mut e: Entry, how: How) -> bool {
    if let How::Return(_) = how {
        // Never written: not counted as delivered.
        e.deliveries = e.deliveries.saturating_sub(1);
    }
    // The subscriber's node recorded an ack in the log already (its `OK`
    // waited for it): not twice (a fifth fewer acked msgs/s through a
    // follower with both). Should its record fail (its `ACK` answered
    // `ERR UNAVAILABLE`), the copy stays in the log, out of this view:
    // delivered again by a next leader, at least once.
    let record = !matches!(how, How::Ack);
    match broker.settle_here(q, Some(id), e, how.into(), record) {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(queue = %q.name, error = %err, "a settlement from a link failed");
            false
        }
    }
}
