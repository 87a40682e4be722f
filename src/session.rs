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
//! **Held publishes.** A `PUB` to a full `overflow=block` queue stores
//! nothing and holds its place in `out` (an [`Out::Held`] placeholder)
//! until the queue has room, then runs again; so does one held by a
//! resource alarm (`broker::alarm`: disk, memory). Meanwhile the connection
//! keeps reading: `ACK`, `NACK` and `TOUCH` take effect at once (so a
//! connection that consumes the full queue frees it), every other command
//! waits in `deferred` and runs, in order, after the held one. Pushes
//! (deliveries, notices) go around the placeholder through `bypass`.
//!
//! **Ack timeouts.** Manual deliveries from a queue with `ack-timeout`
//! carry a deadline; when it passes, the delivery goes back to its queue
//! (or is dead-lettered at its delivery limit), the connection gets
//! `NOTICE ack-timeout <ctag> <dtag>` and the tag is no longer outstanding.
//!
//! **Close.** When the connection ends, subscriptions are cancelled first,
//! then every unacked delivery goes back to its queue at its old position,
//! flagged `redelivered`; exclusive queues are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::auth::Login;
use crate::broker::connections::Registered;
use crate::broker::message::{Entry, Message};
use crate::broker::queue::{Delivery, Push, Queue, Settle};
use crate::broker::{Broker, Hold};
use crate::cmd::{self, Outcome};
use crate::connection::{FrameReader, FrameWriter};
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Command, Publish};
use crate::protocol::frame::FrameEvent;
use crate::protocol::parse::parse_command;
use crate::protocol::reply::{encode_msg, Blocker, MsgHead, Notice, Reply};
use crate::protocol::ErrorCode;
use crate::store::CommitState;

/// Stop reading new commands while this many outputs wait to be written.
const MAX_PENDING_OUTPUTS: usize = 16 * 1024;
/// Pushes taken from the channel per wake-up before writing.
const PUSH_BATCH: usize = 512;
/// How long a closing connection's last writes may wait for the peer to
/// read them (at a shutdown, say), before it is closed regardless.
const CLOSING_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Stop reading while this many commands wait behind a held `PUB`.
const MAX_DEFERRED: usize = 16 * 1024;

/// A timer for a deadline that mostly moves later, such as "this command
/// must have arrived by": armed when first needed, and again only after it
/// fires or when the deadline moves earlier (a `HELLO` with a shorter
/// heartbeat), so a connection whose deadline moves later on every loop
/// iteration (a pipelining client) does not touch the timer wheel each
/// time. When it fires, the caller checks the real deadline.
struct LazyTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer {
            // Never polled before `arm` resets it.
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }
}

impl LazyTimer {
    /// Arms the timer for `at` unless it is armed already for that moment
    /// or an earlier one.
    fn arm(&mut self, at: Instant) {
        if !self.armed || at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
            self.armed = true;
        }
    }

    /// Completes when the armed moment comes. Cancel-safe.
    async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.armed = false;
    }
}

/// One thing to write, in order.
#[derive(Debug)]
pub enum Out {
    /// A reply, possibly waiting for a store generation to be durable.
    Reply(Reply, Option<u64>),
    /// A delivery.
    Msg(MsgOut),
    /// A notice.
    Notice(Notice),
    /// The place of a held `PUB`'s reply.
    Held,
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
    /// A stream delivery: its offset.
    pub offset: Option<u64>,
    /// A partitioned stream's delivery: the partition index.
    pub partition: Option<u32>,
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
    /// Its consumer tag (`-` for `GET`).
    pub tag: Arc<str>,
    /// When its ack timeout passes, if its queue has one.
    pub deadline: Option<Instant>,
    /// The queue's copy.
    pub entry: Entry,
}

/// What waits behind a held `PUB`.
#[derive(Debug)]
enum Deferred {
    /// A command to run once the `PUB` is through.
    Command(Command),
    /// The reply of a command that already ran (`ACK`, `NACK`, `TOUCH`,
    /// an error), to write in its turn.
    Reply(Out),
}

/// A `PUB` waiting for room in a full `overflow=block` queue, or for a
/// resource alarm (disk, memory) to clear.
#[derive(Debug)]
pub struct HeldPub {
    /// The publish, run again when the hold ends.
    pub cmd: Publish,
    /// What it waits for.
    pub on: Hold,
}

/// One subscription of this connection.
#[derive(Debug)]
pub struct Sub {
    /// Its queue (the first partition of a partitioned stream).
    pub queue: Arc<Queue>,
    /// A partitioned stream's other partitions (the same consumer id
    /// subscribes to each).
    pub partitions: Vec<Arc<Queue>>,
    /// Broker-unique consumer id.
    pub consumer_id: u64,
    /// What it counts against `--max-unacked`: its prefetch if manual-ack,
    /// else 0.
    pub reserves: u64,
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

/// What a [`Pending`] command does on the session once its work is done:
/// queue its reply, update the session.
pub type Completion = Box<dyn FnOnce(&mut Session) + Send>;

/// A command whose work runs off the session's task (an argon2 hash, on
/// the blocking pool). Like `GET wait=`, the connection reads no further
/// commands until it completes (pushes still flow), so replies stay in
/// order and what follows runs after it (as the user an `AUTH` logged in).
pub struct Pending(Pin<Box<dyn Future<Output = Completion> + Send>>);

impl Pending {
    /// Wraps the work.
    pub fn new(work: impl Future<Output = Completion> + Send + 'static) -> Pending {
        Pending(Box::pin(work))
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

/// Per-connection state.
#[derive(Debug)]
pub struct Session {
    /// Connection id (broker-unique).
    pub conn_id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The broker.
    pub broker: Broker,
    /// This connection's entry in the broker's registry (`LIST
    /// CONNECTIONS`); removed when the session ends.
    pub conn: Registered,
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
    /// Who the connection is logged in as, if anyone.
    pub login: Login,
    /// The heartbeat interval from `HELLO heartbeat=`, if on.
    pub heartbeat: Option<Duration>,
    /// Ack deadlines: (deadline, delivery tag).
    timeouts: BTreeSet<(Instant, u64)>,
    /// The held `PUB`, if any, and the wait for room.
    held: Option<(HeldPub, RoomWait)>,
    /// Commands read while a `PUB` is held, to run after it, and the
    /// replies of those that ran at once, in order.
    deferred: VecDeque<Deferred>,
    /// Pushes written around a held `PUB`'s placeholder.
    bypass: VecDeque<Out>,
    /// Unacked `GET` deliveries (counted against `--max-unacked`).
    got_unacked: u64,
    next_dtag: u64,
    next_ctag: u64,
}

type WaitFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The wait of a held `PUB` for room in its queue.
struct RoomWait(WaitFuture);

impl std::fmt::Debug for RoomWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomWait")
    }
}

impl Session {
    /// A new session for connection `conn_id`.
    pub fn new(conn_id: u64, peer: SocketAddr, tls: bool, broker: Broker) -> Session {
        // Unbounded, but bounded in practice: see broker::queue (credit).
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn = broker.connections().register(conn_id, peer, tls);
        Session {
            conn_id,
            peer,
            broker,
            conn,
            push_tx,
            push_rx,
            out: VecDeque::new(),
            unacked: BTreeMap::new(),
            subs: HashMap::new(),
            cancelled: HashSet::new(),
            exclusive: Vec::new(),
            client_name: None,
            login: Login::default(),
            heartbeat: None,
            timeouts: BTreeSet::new(),
            held: None,
            deferred: VecDeque::new(),
            bypass: VecDeque::new(),
            got_unacked: 0,
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
        self.push_reply(r, None);
    }

    /// Queues a reply that waits for store generation `gen`, if any. While
    /// a `PUB` is held with commands deferred behind it, a reply (to an
    /// `ACK` that ran at once, or an error) waits its turn behind them.
    pub fn push_reply(&mut self, r: Reply, gen: Option<u64>) {
        let item = Out::Reply(r, gen);
        if self.held.is_some() && !self.deferred.is_empty() {
            self.deferred.push_back(Deferred::Reply(item));
        } else {
            self.out.push_back(item);
        }
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
                offset: None,
                partition: None,
                auto: None,
            }));
            match ack {
                AckMode::Manual => self.record_unacked(dtag, q.clone(), None, dash.clone(), e),
                AckMode::Auto => match q.settle(None, e, Settle::Ack) {
                    Ok(g) => gen = g.or(gen),
                    Err(err) => tracing::warn!(error = %err, "auto-ack removal failed"),
                },
            }
        }
        gen
    }

    /// `--max-unacked`: `ERR LIMIT` unless `more` unacked deliveries fit
    /// beside the ones this connection has reserved already (the prefetch
    /// of its manual-ack subscriptions plus its unacked `GET` deliveries).
    pub fn check_unacked_room(&self, more: u64) -> Result<(), BrokerError> {
        let max = self.broker.config().max_unacked;
        let reserved = self.subs.values().map(|s| s.reserves).sum::<u64>() + self.got_unacked;
        if reserved.saturating_add(more) > max {
            return Err(BrokerError::limit(
                format_args!(
                    "{more} more unacked deliveries would pass this connection's limit ({reserved} reserved by manual-ack prefetch and unacked GETs)"
                ),
                "--max-unacked",
                max,
            ));
        }
        Ok(())
    }

    /// Records a manual delivery as outstanding, with its ack deadline.
    fn record_unacked(
        &mut self,
        dtag: u64,
        queue: Arc<Queue>,
        consumer_id: Option<u64>,
        tag: Arc<str>,
        entry: Entry,
    ) {
        let deadline = queue
            .args
            .ack_timeout_ms
            .map(|ms| Instant::now() + std::time::Duration::from_millis(ms));
        if let Some(d) = deadline {
            self.timeouts.insert((d, dtag));
        }
        if consumer_id.is_none() {
            self.got_unacked += 1;
        }
        self.unacked.insert(
            dtag,
            Unacked {
                queue,
                consumer_id,
                tag,
                deadline,
                entry,
            },
        );
    }

    /// Takes an outstanding delivery (to settle it).
    pub fn take_unacked(&mut self, dtag: u64) -> Option<Unacked> {
        let u = self.unacked.remove(&dtag)?;
        if let Some(d) = u.deadline {
            self.timeouts.remove(&(d, dtag));
        }
        self.forget_unacked(&u);
        Some(u)
    }

    /// Counts a delivery that is no longer outstanding.
    fn forget_unacked(&mut self, u: &Unacked) {
        if u.consumer_id.is_none() {
            self.got_unacked = self.got_unacked.saturating_sub(1);
        }
    }

    /// `TOUCH`: restarts an outstanding delivery's ack timeout. False when
    /// the tag is not outstanding.
    pub fn touch(&mut self, dtag: u64) -> bool {
        let Some(u) = self.unacked.get_mut(&dtag) else {
            return false;
        };
        if let (Some(old), Some(ms)) = (u.deadline, u.queue.args.ack_timeout_ms) {
            let new = Instant::now() + std::time::Duration::from_millis(ms);
            u.deadline = Some(new);
            self.timeouts.remove(&(old, dtag));
            self.timeouts.insert((new, dtag));
        }
        true
    }

    /// Queues a `PEEK` line: `MSG * <position> ...`.
    pub fn show_peeked(&mut self, e: Entry) {
        self.out.push_back(Out::Msg(MsgOut {
            tag: Arc::from("*"),
            dtag: e.seq,
            deliveries: e.deliveries,
            redelivered: e.redelivered,
            msg: e.msg,
            offset: None,
            partition: None,
            auto: None,
        }));
    }

    /// Queues a push: after everything queued, or around a held `PUB`.
    fn push_out(&mut self, item: Out) {
        if self.held.is_some() {
            self.bypass.push_back(item);
        } else {
            self.out.push_back(item);
        }
    }

    /// Requeues every delivery whose ack timeout has passed and tells the
    /// client.
    fn expire_acks(&mut self, now: Instant) {
        while let Some(&(at, dtag)) = self.timeouts.first() {
            if at > now {
                break;
            }
            self.timeouts.pop_first();
            let Some(u) = self.unacked.remove(&dtag) else {
                continue;
            };
            self.forget_unacked(&u);
            if let Err(e) = u.queue.settle(u.consumer_id, u.entry, Settle::Timeout) {
                tracing::warn!(error = %e, "requeue after ack timeout failed");
            }
            self.push_out(Out::Notice(Notice::AckTimeout {
                tag: u.tag.to_string(),
                dtag,
            }));
        }
    }

    /// Holds a `PUB` until its queue has room (or its alarm clears).
    fn start_hold(&mut self, h: HeldPub) {
        self.out.push_back(Out::Held);
        let on = h.on.blocker();
        let wait = RoomWait(wait_room(h.on.clone()));
        self.held = Some((h, wait));
        self.push_out(Out::Notice(Notice::Blocked { on }));
    }

    /// The held `PUB`'s queue signalled room: publish again. Done (or
    /// failed), the reply takes the placeholder's place and the pushes
    /// that went around it follow it.
    fn retry_held(&mut self) {
        let Some((h, _)) = self.held.take() else {
            return;
        };
        let reply = match self.broker.publish(&h.cmd) {
            Ok(crate::broker::PublishAttempt::Blocked(on)) => {
                let wait = RoomWait(wait_room(on.clone()));
                self.held = Some((HeldPub { cmd: h.cmd, on }, wait));
                return;
            }
            Ok(crate::broker::PublishAttempt::Done(p)) => {
                let gen = p.durable_gen;
                Out::Reply(cmd::confirm(p), gen)
            }
            Err(e) => Out::Reply(e.to_reply(), None),
        };
        self.release_held(reply, h.on.blocker());
    }

    /// Puts `reply` where the held `PUB`'s placeholder is, followed by the
    /// pushes that went around it.
    fn release_held(&mut self, reply: Out, on: Blocker) {
        self.bypass.push_back(Out::Notice(Notice::Unblocked { on }));
        match self.out.iter().position(|o| matches!(o, Out::Held)) {
            Some(at) => {
                self.out[at] = reply;
                for (i, item) in self.bypass.drain(..).enumerate() {
                    self.out.insert(at + 1 + i, item);
                }
            }
            None => {
                self.out.push_back(reply);
                self.out.extend(self.bypass.drain(..));
            }
        }
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
            Push::Notice(n) => self.push_out(Out::Notice(n)),
            Push::Cancelled { tag } => {
                if self.subs.remove(&tag).is_some() {
                    self.push_out(Out::Notice(Notice::Cancelled {
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
            offset: d.queue.args.mode.is_stream().then_some(e.seq),
            partition: d.queue.partition,
            auto: None,
        };
        if d.auto_ack {
            m.auto = Some((d.queue, d.consumer_id, d.entry));
        } else {
            self.record_unacked(dtag, d.queue, Some(d.consumer_id), d.tag, d.entry);
        }
        self.push_out(Out::Msg(m));
    }

    /// Encodes every output that may be written now; returns the auto-ack
    /// deliveries to settle once the bytes are out.
    fn encode_ready(
        &mut self,
        commit: &CommitState,
        buf: &mut Vec<u8>,
    ) -> Vec<(Arc<Queue>, u64, Entry)> {
        let mut written_auto = Vec::new();
        loop {
            let item = match self.out.front() {
                None => break,
                Some(Out::Reply(_, Some(g))) if commit.outcome(*g).is_none() => break,
                // A held PUB: only the pushes that go around it.
                Some(Out::Held) => match self.bypass.pop_front() {
                    Some(item) => item,
                    None => break,
                },
                Some(_) => match self.out.pop_front() {
                    Some(item) => item,
                    None => break,
                },
            };
            match item {
                Out::Held => {}
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
                        group: m.msg.group.as_deref(),
                        offset: m.offset,
                        partition: m.partition,
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

    /// Runs the connection until it closes, the client quits, or `shutdown`
    /// fires (with the reason for `NOTICE closing`).
    pub async fn run(
        mut self,
        mut reader: FrameReader,
        mut writer: FrameWriter,
        mut shutdown: watch::Receiver<Option<&'static str>>,
    ) {
        let mut commit_rx = self.broker.committer().subscribe();
        let mut reading = true;
        let mut closing = false;
        // The peer stopped reading or answering: no point lingering.
        let mut peer_gone = false;
        let mut waiting: Option<(GetWait, WaitFuture)> = None;
        let mut pending: Option<Pending> = None;
        let frame_timeout = self.broker.config().frame_timeout;
        // When the command being received started to arrive (see
        // `--frame-timeout`), and how many frames had come before it.
        let mut frame_started: Option<Instant> = None;
        let mut frames_seen = reader.frames();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let mut frame_timer = LazyTimer::default();
        let mut heartbeat_timer = LazyTimer::default();
        loop {
            if waiting.is_none() && pending.is_none() && !closing {
                match self.run_buffered(&mut reader) {
                    Step::Continue => {}
                    Step::Wait(w) => {
                        let fut = wait_ready(w.queue.clone(), w.deadline, self.conn_id);
                        waiting = Some((w, fut));
                    }
                    Step::Pending(p) => pending = Some(p),
                    Step::Close => closing = true,
                }
            }
            let autos = {
                let state = commit_rx.borrow_and_update().clone();
                self.encode_ready(&state, &mut writer.buf)
            };
            let wrote = !writer.buf.is_empty();
            // A peer that does not read for two heartbeats is gone; one
            // that does not read while the server closes is not waited for.
            let patience = match self.heartbeat {
                Some(hb) if closing => Some((2 * hb).min(CLOSING_WRITE_TIMEOUT)),
                Some(hb) => Some(2 * hb),
                None => closing.then_some(CLOSING_WRITE_TIMEOUT),
            };
            let flushed = match patience {
                Some(t) => tokio::time::timeout(t, writer.flush())
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => writer.flush().await,
            };
            if let Err(e) = flushed {
                peer_gone = true;
                tracing::debug!(conn = self.conn_id, error = %e, "write failed; closing");
                // Auto-ack deliveries that may not have reached the peer go
                // back, flagged: dropped, they would stay counted as unacked
                // and hold a single-active handover or a group forever.
                for (q, cid, e) in autos {
                    if let Err(err) = q.settle(Some(cid), e, Settle::Requeue { delay_ms: None }) {
                        tracing::warn!(error = %err, "requeue failed");
                    }
                }
                break;
            }
            if wrote {
                last_write = Instant::now();
            }
            for (q, cid, e) in autos {
                if let Err(err) = q.settle(Some(cid), e, Settle::Ack) {
                    tracing::warn!(error = %err, "auto-ack removal failed");
                }
            }
            if (closing || !reading)
                && self.out.is_empty()
                && waiting.is_none()
                && pending.is_none()
                && self.held.is_none()
                && self.deferred.is_empty()
            {
                break;
            }
            let durable_wait = matches!(self.out.front(), Some(Out::Reply(_, Some(_))));
            let can_read = reading
                && !closing
                && waiting.is_none()
                && pending.is_none()
                && self.out.len() < MAX_PENDING_OUTPUTS
                && self.deferred.len() < MAX_DEFERRED;
            let next_timeout = self.timeouts.first().map(|(at, _)| *at);
            // A command that started to arrive must finish within the frame
            // timeout; time the server spends not reading does not count.
            if !can_read || reader.frames() != frames_seen || !reader.mid_frame() {
                frame_started = None;
                frames_seen = reader.frames();
            }
            if can_read && reader.mid_frame() {
                frame_started.get_or_insert_with(Instant::now);
            }
            let frame_deadline = frame_started.map(|t| t + frame_timeout);
            if let Some(at) = frame_deadline {
                frame_timer.arm(at);
            }
            if !can_read {
                last_read = Instant::now();
            }
            let heartbeat_at = match self.heartbeat {
                Some(hb) if !closing => Some((last_write + hb).min(last_read + 2 * hb)),
                _ => None,
            };
            if let Some(at) = heartbeat_at {
                heartbeat_timer.arm(at);
            }
            self.conn.sync(self.subs.len(), self.unacked.len());
            tokio::select! {
                res = shutdown.changed(), if !closing => {
                    let _ = res;
                    if let Some((h, _)) = self.held.take() {
                        self.release_held(
                            Out::Reply(
                                Reply::Err(ErrorCode::Internal, "server shutting down; message not stored".into()),
                                None,
                            ),
                            h.on.blocker(),
                        );
                    }
                    self.deferred.clear();
                    let reason = shutdown.borrow().unwrap_or("shutdown");
                    self.out.push_back(Out::Notice(Notice::Closing { reason }));
                    closing = true;
                    waiting = None;
                    pending = None;
                }
                n = reader.read_more(), if can_read => match n {
                    Ok(0) => {
                        reading = false;
                        // A literal whose terminator "is not there" is
                        // answered even when the stream ends right after it.
                        if let Some(bad) = reader.at_end() {
                            self.reply(Reply::Err(ErrorCode::BadFrame, bad.0));
                            closing = true;
                        }
                    }
                    Err(_) => reading = false,
                    Ok(_) => last_read = Instant::now(),
                },
                _ = frame_timer.fired(), if frame_deadline.is_some() => {
                    // The timer may be for an earlier command that has since
                    // arrived: then it is armed again for this one.
                    if frame_deadline.is_some_and(|at| Instant::now() < at) {
                        continue;
                    }
                    tracing::info!(conn = self.conn_id, "command not completed within the frame timeout; closing");
                    self.reply(Reply::Err(
                        ErrorCode::BadFrame,
                        format!("command not completed within {} ms; closing", frame_timeout.as_millis()),
                    ));
                    closing = true;
                }
                _ = heartbeat_timer.fired(), if heartbeat_at.is_some() => {
                    let now = Instant::now();
                    if let Some(hb) = self.heartbeat {
                        if now >= last_read + 2 * hb {
                            tracing::info!(conn = self.conn_id, "nothing from the client for two heartbeats; closing");
                            peer_gone = true;
                            break;
                        }
                        if now >= last_write + hb {
                            self.push_out(Out::Notice(Notice::Heartbeat));
                            last_write = now;
                        }
                    }
                }
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
                _ = tokio::time::sleep_until(next_timeout.unwrap_or_else(Instant::now)), if next_timeout.is_some() => {
                    self.expire_acks(Instant::now());
                }
                _ = async { if let Some((_, f)) = self.held.as_mut() { f.0.as_mut().await } }, if self.held.is_some() => {
                    self.retry_held();
                }
                done = async { match pending.as_mut() { Some(p) => p.0.as_mut().await, None => std::future::pending().await } }, if pending.is_some() => {
                    pending = None;
                    done(&mut self);
                }
                _ = async { if let Some((_, f)) = waiting.as_mut() { f.as_mut().await } }, if waiting.is_some() => {
                    if let Some((w, _)) = waiting.take() {
                        let got = match w.queue.take(w.count, self.conn_id) {
                            Ok(got) => got,
                            Err(e) => {
                                // A single-active queue got a subscription meanwhile.
                                self.out.push_back(Out::Reply(e.to_reply(), None));
                                continue;
                            }
                        };
                        if got.is_empty() && Instant::now() < w.deadline && !w.queue.is_deleted() {
                            let fut = wait_ready(w.queue.clone(), w.deadline, self.conn_id);
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
        // Bounded: over TLS the close_notify is a write, which a peer that
        // does not read would hold up.
        let _ = tokio::time::timeout(CLOSING_WRITE_TIMEOUT, writer.shutdown()).await;
        self.close();
        if reading && !peer_gone {
            // Closed by the server (a shutdown, a failed store, a bad
            // frame) while the peer may still be sending: a FIN and a
            // short read to its end, not a reset that would cost the peer
            // our last replies.
            reader.discard_until_eof(crate::connection::LINGER).await;
        }
    }

    /// The next command: one deferred behind a `PUB` that is no longer
    /// held, else one from the buffered frames. `Err` carries the step to
    /// take when the stream ends in a bad frame.
    fn next_command(&mut self, reader: &mut FrameReader) -> Result<Option<Command>, Step> {
        if self.held.is_none() {
            while let Some(d) = self.deferred.pop_front() {
                match d {
                    Deferred::Command(c) => return Ok(Some(c)),
                    Deferred::Reply(r) => self.out.push_back(r),
                }
            }
        } else if self.deferred.len() >= MAX_DEFERRED {
            return Ok(None);
        }
        loop {
            let frame = match reader.next_event() {
                Ok(None) => return Ok(None),
                Ok(Some(FrameEvent::Reject(r))) => {
                    self.reply(Reply::Err(r.code, r.message));
                    continue;
                }
                Ok(Some(FrameEvent::Frame(f))) => f,
                Err(bad) => {
                    self.reply(Reply::Err(ErrorCode::BadFrame, bad.0));
                    return Err(Step::Close);
                }
            };
            match parse_command(&frame) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => {
                    let close = e.code == ErrorCode::BadFrame;
                    self.reply(Reply::Err(e.code, e.message));
                    if close {
                        return Err(Step::Close);
                    }
                }
            }
        }
    }

    /// Executes every complete frame already buffered (and the commands
    /// deferred behind a `PUB` that is no longer held), until a command
    /// must wait (`GET wait=`) or the connection must close.
    fn run_buffered(&mut self, reader: &mut FrameReader) -> Step {
        loop {
            if self.out.len() >= MAX_PENDING_OUTPUTS {
                return Step::Continue;
            }
            let command = match self.next_command(reader) {
                Ok(Some(c)) => c,
                Ok(None) => return Step::Continue,
                Err(step) => return step,
            };
            // While a PUB is held, only settling runs; the rest waits its turn.
            if self.held.is_some()
                && !matches!(
                    command,
                    Command::Ack(_) | Command::Nack(_) | Command::Touch(_)
                )
            {
                self.deferred.push_back(Deferred::Command(command));
                continue;
            }
            match cmd::apply(command, self) {
                Outcome::Done => {}
                Outcome::Wait(w) => return Step::Wait(w),
                Outcome::Pending(p) => return Step::Pending(p),
                Outcome::Hold(h) => self.start_hold(h),
                Outcome::Quit => return Step::Close,
            }
        }
    }

    /// Ends the session: cancel subscriptions, requeue unacked deliveries,
    /// delete exclusive and emptied auto-delete queues.
    fn close(mut self) {
        let mut emptied = Vec::new();
        for (_, sub) in self.subs.drain() {
            for p in &sub.partitions {
                p.unsubscribe(sub.consumer_id);
            }
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
        for item in self.out.drain(..).chain(self.bypass.drain(..)) {
            if let Out::Msg(MsgOut {
                auto: Some((q, consumer_id, mut e)),
                ..
            }) = item
            {
                e.deliveries = e.deliveries.saturating_sub(1);
                let redelivered = e.redelivered;
                if let Err(err) = q.settle(Some(consumer_id), e, Settle::Return { redelivered }) {
                    tracing::warn!(error = %err, "requeue failed");
                }
            }
        }
        for (_, u) in std::mem::take(&mut self.unacked) {
            if let Err(err) =
                u.queue
                    .settle(u.consumer_id, u.entry, Settle::Requeue { delay_ms: None })
            {
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
    Pending(Pending),
    Close,
}

/// Resolves when `q` may have room for a held publish (or was deleted).
fn wait_room(on: Hold) -> WaitFuture {
    let q = match on {
        Hold::Queue(q) => q,
        Hold::Alarm(alarm) => return Box::pin(async move { alarm.wait_clear().await }),
    };
    Box::pin(async move {
        let _counted = q.blocker();
        let notified = q.room_signal().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if q.is_deleted() || q.admit(0) != crate::broker::queue::Admission::Block {
            return;
        }
        notified.await;
    })
}

fn wait_ready(q: Arc<Queue>, deadline: Instant, conn: u64) -> WaitFuture {
    Box::pin(async move {
        let _counted = q.waiter();
        let notified = q.ready_signal().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if q.can_take(conn) {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    })
}
