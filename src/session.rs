//! [`Session`]: one connection's state — delivery tags, unacked deliveries,
//! subscriptions, exclusive queues — and its event loop: frames in, commands
//! run, replies and pushes out, in the order the protocol promises.
//!
//! **Ordering.** Everything to be written goes through one FIFO, `out`.
//! A reply that promises durability (a persistent `PUB`, an `ACK` that
//! removed a stored message) waits at its place in the FIFO until the group
//! commit reaches its generation, and everything behind it waits too; so
//! replies stay in command order, `SUB`'s `OK` precedes its first `MSG`,
//! and `GET`'s `MSG`s precede its `OK`. Meanwhile the loop keeps reading
//! and executing pipelined commands, which is what lets many publishes
//! share one fsync.
//!
//! **Close.** When the connection ends, subscriptions are cancelled first,
//! then every unacked delivery goes back to its queue at its old position,
//! flagged `redelivered`; exclusive queues are deleted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::broker::message::{Entry, Message};
use crate::broker::queue::{Delivery, Push, Queue, Settle};
use crate::broker::Broker;
use crate::cmd::{self, Outcome};
use crate::connection::{FrameReader, FrameWriter};
use crate::protocol::command::AckMode;
use crate::protocol::frame::FrameEvent;
use crate::protocol::parse::parse_command;
use crate::protocol::reply::{encode_msg, MsgHead, Notice, Reply};
use crate::protocol::ErrorCode;
use crate::store::CommitState;

/// Stop reading new commands while this many outputs wait to be written.
const MAX_PENDING_OUTPUTS: usize = 16 * 1024;
/// Pushes taken from the channel per wake-up before writing.
const PUSH_BATCH: usize = 512;

/// One thing to write, in order.
#[derive(Debug)]
pub enum Out {
    /// A reply, possibly waiting for a store generation to be durable.
    Reply(Reply, Option<u64>),
    /// A delivery.
    Msg(MsgOut),
    /// A notice.
    Notice(Notice),
}

/// A delivery waiting to be written.
#[derive(Debug)]
pub struct MsgOut {
    /// Consumer tag (`-` for `GET`).
    pub tag: Arc<str>,
    /// Delivery tag.
    pub dtag: u64,
    /// The message.
    pub msg: Arc<Message>,
    /// Deliveries, this one included.
    pub deliveries: u32,
    /// Redelivered flag.
    pub redelivered: bool,
    /// For `ack=auto` subscriptions: settle once written.
    pub auto: Option<(Arc<Queue>, u64, Entry)>,
}

/// A delivery not yet acknowledged.
#[derive(Debug)]
pub struct Unacked {
    /// Its queue.
    pub queue: Arc<Queue>,
    /// The subscription it came through (`None` for `GET`).
    pub consumer_id: Option<u64>,
    /// The queue's copy.
    pub entry: Entry,
}

/// One subscription of this connection.
#[derive(Debug)]
pub struct Sub {
    /// Its queue.
    pub queue: Arc<Queue>,
    /// Broker-unique consumer id.
    pub consumer_id: u64,
}

/// A `GET wait=` in progress: the connection reads no further commands
/// until it ends (pushes still flow).
#[derive(Debug)]
pub struct GetWait {
    /// The queue.
    pub queue: Arc<Queue>,
    /// How many at most.
    pub count: u32,
    /// Ack mode.
    pub ack: AckMode,
    /// When to give up and answer `OK 0`.
    pub deadline: Instant,
}

/// Per-connection state.
#[derive(Debug)]
pub struct Session {
    /// Connection id (broker-unique).
    pub conn_id: u64,
    /// The broker.
    pub broker: Broker,
    /// Where this connection's queues push.
    pub push_tx: mpsc::UnboundedSender<Push>,
    /// What they pushed, not yet taken into `out`.
    push_rx: mpsc::UnboundedReceiver<Push>,
    /// Outputs in order.
    pub out: VecDeque<Out>,
    /// Unacked deliveries by delivery tag.
    pub unacked: BTreeMap<u64, Unacked>,
    /// Subscriptions by consumer tag.
    pub subs: HashMap<Arc<str>, Sub>,
    /// Consumer ids ended by `UNSUB`: deliveries already on their way are returned.
    pub cancelled: HashSet<u64>,
    /// Exclusive queues this connection declared.
    pub exclusive: Vec<Arc<Queue>>,
    /// The client's name from `HELLO`.
    pub client_name: Option<String>,
    next_dtag: u64,
    next_ctag: u64,
}

type WaitFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Session {
    /// A new session for connection `conn_id`.
    pub fn new(conn_id: u64, broker: Broker) -> Session {
        // Unbounded, but bounded in practice: see broker::queue (credit).
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        Session {
            conn_id,
            broker,
            push_tx,
            push_rx,
            out: VecDeque::new(),
            unacked: BTreeMap::new(),
            subs: HashMap::new(),
            cancelled: HashSet::new(),
            exclusive: Vec::new(),
            client_name: None,
            next_dtag: 1,
            next_ctag: 1,
        }
    }

    /// The next delivery tag.
    pub fn next_delivery_tag(&mut self) -> u64 {
        let t = self.next_dtag;
        self.next_dtag += 1;
        t
    }

    /// A consumer tag not in use on this connection.
    pub fn generate_consumer_tag(&mut self) -> Arc<str> {
        loop {
            let t: Arc<str> = Arc::from(format!("ctag-{}", self.next_ctag));
            self.next_ctag += 1;
            if !self.subs.contains_key(&t) {
                return t;
            }
        }
    }

    /// Queues a reply.
    pub fn reply(&mut self, r: Reply) {
        self.out.push_back(Out::Reply(r, None));
    }

    /// Queues `GET` deliveries (tag `-`), recording manual ones as unacked;
    /// returns the generation an auto-ack removal must reach.
    pub fn deliver_got(
        &mut self,
        q: &Arc<Queue>,
        entries: Vec<Entry>,
        ack: AckMode,
    ) -> Option<u64> {
        let dash: Arc<str> = Arc::from("-");
        let mut gen = None;
        for e in entries {
            let dtag = self.next_delivery_tag();
            self.out.push_back(Out::Msg(MsgOut {
                tag: dash.clone(),
                dtag,
                msg: e.msg.clone(),
                deliveries: e.deliveries,
                redelivered: e.redelivered || e.deliveries > 1,
                auto: None,
            }));
            match ack {
                AckMode::Manual => {
                    self.unacked.insert(
                        dtag,
                        Unacked {
                            queue: q.clone(),
                            consumer_id: None,
                            entry: e,
                        },
                    );
                }
                AckMode::Auto => match q.settle(None, e, Settle::Ack) {
                    Ok(g) => gen = g.or(gen),
                    Err(err) => tracing::warn!(error = %err, "auto-ack removal failed"),
                },
            }
        }
        gen
    }

    /// Takes every push already sent to this connection into `out` (or
    /// back to its queue, for a cancelled subscription).
    pub fn take_pushes(&mut self) {
        while let Ok(p) = self.push_rx.try_recv() {
            self.on_push(p);
        }
    }

    fn on_push(&mut self, push: Push) {
        match push {
            Push::Deliver(d) => self.on_delivery(d),
            Push::Cancelled { tag } => {
                if self.subs.remove(&tag).is_some() {
                    self.out.push_back(Out::Notice(Notice::Cancelled {
                        tag: tag.to_string(),
                        reason: "queue-deleted",
                    }));
                }
            }
        }
    }

    fn on_delivery(&mut self, d: Delivery) {
        if self.cancelled.contains(&d.consumer_id) {
            return_undelivered(d);
            return;
        }
        let dtag = self.next_delivery_tag();
        let e = &d.entry;
        let mut m = MsgOut {
            tag: d.tag.clone(),
            dtag,
            msg: e.msg.clone(),
            deliveries: e.deliveries,
            redelivered: e.redelivered || e.deliveries > 1,
            auto: None,
        };
        if d.auto_ack {
            m.auto = Some((d.queue, d.consumer_id, d.entry));
        } else {
            self.unacked.insert(
                dtag,
                Unacked {
                    queue: d.queue,
                    consumer_id: Some(d.consumer_id),
                    entry: d.entry,
                },
            );
        }
        self.out.push_back(Out::Msg(m));
    }

    /// Encodes every output that may be written now; returns the auto-ack
    /// deliveries to settle once the bytes are out.
    fn encode_ready(
        &mut self,
        commit: &CommitState,
        buf: &mut Vec<u8>,
    ) -> Vec<(Arc<Queue>, u64, Entry)> {
        let mut written_auto = Vec::new();
        while let Some(front) = self.out.front() {
            if let Out::Reply(_, Some(g)) = front {
                if commit.outcome(*g).is_none() {
                    break;
                }
            }
            let Some(item) = self.out.pop_front() else {
                break;
            };
            match item {
                Out::Reply(r, gen) => match gen.and_then(|g| commit.outcome(g)) {
                    Some(Err(e)) if !r.is_err() => {
                        Reply::Err(ErrorCode::Internal, format!("not stored durably: {e}"))
                            .encode(buf)
                    }
                    _ => r.encode(buf),
                },
                Out::Notice(n) => n.encode(buf),
                Out::Msg(m) => {
                    let head = MsgHead {
                        consumer_tag: &m.tag,
                        delivery_tag: m.dtag,
                        exchange: &m.msg.exchange,
                        routing_key: &m.msg.routing_key,
                        redelivered: m.redelivered,
                        deliveries: m.deliveries,
                        id: &m.msg.id,
                        headers: &m.msg.headers,
                    };
                    encode_msg(buf, &head, &m.msg.body);
                    if let Some(a) = m.auto {
                        written_auto.push(a);
                    }
                }
            }
        }
        written_auto
    }

    /// Runs the connection until it closes, the client quits, or `shutdown` fires.
    pub async fn run(
        mut self,
        mut reader: FrameReader,
        mut writer: FrameWriter,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut commit_rx = self.broker.committer().subscribe();
        let mut reading = true;
        let mut closing = false;
        let mut waiting: Option<(GetWait, WaitFuture)> = None;
        loop {
            if waiting.is_none() && !closing {
                match self.run_buffered(&mut reader) {
                    Step::Continue => {}
                    Step::Wait(w) => {
                        let fut = wait_ready(w.queue.clone(), w.deadline);
                        waiting = Some((w, fut));
                    }
                    Step::Close => closing = true,
                }
            }
            let autos = {
                let state = commit_rx.borrow_and_update().clone();
                self.encode_ready(&state, &mut writer.buf)
            };
            if writer.flush().await.is_err() {
                break;
            }
            for (q, cid, e) in autos {
                if let Err(err) = q.settle(Some(cid), e, Settle::Ack) {
                    tracing::warn!(error = %err, "auto-ack removal failed");
                }
            }
            if (closing || !reading) && self.out.is_empty() && waiting.is_none() {
                break;
            }
            let durable_wait = matches!(self.out.front(), Some(Out::Reply(_, Some(_))));
            let can_read =
                reading && !closing && waiting.is_none() && self.out.len() < MAX_PENDING_OUTPUTS;
            tokio::select! {
                res = shutdown.changed(), if !closing => {
                    let _ = res;
                    self.out.push_back(Out::Notice(Notice::Closing { reason: "shutdown" }));
                    closing = true;
                    waiting = None;
                }
                n = reader.read_more(), if can_read => match n {
                    Ok(0) | Err(_) => reading = false,
                    Ok(_) => {}
                },
                Some(push) = self.push_rx.recv() => {
                    self.on_push(push);
                    for _ in 0..PUSH_BATCH {
                        match self.push_rx.try_recv() {
                            Ok(p) => self.on_push(p),
                            Err(_) => break,
                        }
                    }
                }
                res = commit_rx.changed(), if durable_wait => {
                    if res.is_err() {
                        break;
                    }
                }
                _ = async { if let Some((_, f)) = waiting.as_mut() { f.as_mut().await } }, if waiting.is_some() => {
                    if let Some((w, _)) = waiting.take() {
                        let got = w.queue.take(w.count);
                        if got.is_empty() && Instant::now() < w.deadline && !w.queue.is_deleted() {
                            let fut = wait_ready(w.queue.clone(), w.deadline);
                            waiting = Some((w, fut));
                        } else {
                            let n = got.len();
                            let gen = self.deliver_got(&w.queue, got, w.ack);
                            self.out.push_back(Out::Reply(Reply::words([n.to_string()]), gen));
                        }
                    }
                }
            }
        }
        writer.shutdown().await;
        self.close();
    }

    /// Executes every complete frame already buffered, until a command must
    /// wait (`GET wait=`) or the connection must close.
    fn run_buffered(&mut self, reader: &mut FrameReader) -> Step {
        loop {
            if self.out.len() >= MAX_PENDING_OUTPUTS {
                return Step::Continue;
            }
            let frame = match reader.next_event() {
                Ok(None) => return Step::Continue,
                Ok(Some(FrameEvent::Reject(r))) => {
                    self.reply(Reply::Err(r.code, r.message));
                    continue;
                }
                Ok(Some(FrameEvent::Frame(f))) => f,
                Err(bad) => {
                    self.reply(Reply::Err(ErrorCode::BadFrame, bad.0));
                    return Step::Close;
                }
            };
            let command = match parse_command(&frame) {
                Ok(c) => c,
                Err(e) => {
                    let close = e.code == ErrorCode::BadFrame;
                    self.reply(Reply::Err(e.code, e.message));
                    if close {
                        return Step::Close;
                    }
                    continue;
                }
            };
            match cmd::apply(command, self) {
                Outcome::Done => {}
                Outcome::Wait(w) => return Step::Wait(w),
                Outcome::Quit => return Step::Close,
            }
        }
    }

    /// Ends the session: cancel subscriptions, requeue unacked deliveries,
    /// delete exclusive and emptied auto-delete queues.
    fn close(mut self) {
        let mut emptied = Vec::new();
        for (_, sub) in self.subs.drain() {
            if sub.queue.unsubscribe(sub.consumer_id) {
                emptied.push(sub.queue);
            }
        }
        self.push_rx.close();
        while let Ok(push) = self.push_rx.try_recv() {
            if let Push::Deliver(d) = push {
                return_undelivered(d);
            }
        }
        for item in self.out.drain(..) {
            if let Out::Msg(MsgOut {
                auto: Some((q, _, mut e)),
                ..
            }) = item
            {
                e.deliveries = e.deliveries.saturating_sub(1);
                let redelivered = e.redelivered;
                if let Err(err) = q.settle(None, e, Settle::Return { redelivered }) {
                    tracing::warn!(error = %err, "requeue failed");
                }
            }
        }
        for (_, u) in std::mem::take(&mut self.unacked) {
            if let Err(err) = u.queue.settle(None, u.entry, Settle::Requeue) {
                tracing::warn!(error = %err, "requeue failed");
            }
        }
        for q in emptied.into_iter().chain(self.exclusive.drain(..)) {
            if let Err(err) = self.broker.delete_queue_now(&q) {
                tracing::warn!(queue = %q.name, error = %err, "could not delete queue");
            }
        }
        tracing::debug!(conn = self.conn_id, "connection closed");
    }
}

/// Gives back a delivery that was never written: not counted as delivered.
fn return_undelivered(d: Delivery) {
    let mut e = d.entry;
    e.deliveries = e.deliveries.saturating_sub(1);
    let redelivered_before = e.redelivered;
    let q = d.queue;
    // Requeue flags redelivered; keep the flag as it was for a copy that never left.
    match q.settle(
        Some(d.consumer_id),
        e,
        Settle::Return {
            redelivered: redelivered_before,
        },
    ) {
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "return failed"),
    }
}

enum Step {
    Continue,
    Wait(GetWait),
    Close,
}

fn wait_ready(q: Arc<Queue>, deadline: Instant) -> WaitFuture {
    Box::pin(async move {
        let _counted = q.waiter();
        let notified = q.ready_signal().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if q.has_ready() || q.is_deleted() {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    })
}
