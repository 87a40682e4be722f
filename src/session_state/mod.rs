//! `SessionState`: what one connection holds between its commands, and all
//! that a command may touch: who the connection is (id, peer, login), its
//! delivery tags and unacked deliveries ([`unacked`]), its subscriptions
//! and the channel their queues push into ([`subscription`]), the
//! exclusive queues it declared, and its outbox of replies and pushes
//! waiting to be written ([`outbox`]). It takes the pushes into the
//! outbox: a delivery gets its delivery tag and, if manual-ack, a place
//! among the unacked.
//!
//! It sits below both of its users and imports neither: a [`crate::cmd`]
//! handler gets `&mut SessionState` and returns what happened; the loop in
//! [`crate::session`] owns it, takes the queues' pushes into it, writes its
//! outbox and closes it. Its fields are private: a command changes the
//! connection through the methods here, which keep the tags, the unacked
//! set, the subscriptions and the outbox consistent with one another.
//!
//! **Close.** When the connection ends, subscriptions are cancelled first,
//! then every unacked delivery goes back to its queue at its old position,
//! flagged `redelivered`; exclusive queues, and auto-delete queues the
//! connection emptied of consumers, are deleted.

mod outbox;
mod subscription;
mod tx;
mod unacked;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::{Login, User};
use crate::broker::connections::{ConnInfo, Registered};
use crate::broker::message::Entry;
use crate::broker::queue::{Delivery, Push, Queue, Settle};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Command};
use crate::protocol::reply::Notice;

use outbox::{AutoAck, MsgOut};
pub(crate) use outbox::{Out, Outbox, Shown};
use subscription::return_undelivered;
pub(crate) use subscription::{Sub, Subscriptions};
pub(crate) use tx::Transaction;
use unacked::Outstanding;
pub(crate) use unacked::Unacked;

/// Pushes taken from the channel per wake-up before writing.
const PUSH_BATCH: usize = 512;

/// Per-connection state (see the module docs).
#[derive(Debug)]
pub(crate) struct SessionState {
    /// Connection id (broker-unique).
    conn_id: u64,
    /// The peer's address.
    peer: SocketAddr,
    /// The broker.
    broker: Broker,
    /// This connection's entry in the broker's registry (`LIST
    /// CONNECTIONS`); removed when the session ends. `None` for a
    /// detached state (one command run for the HTTP API), which no
    /// registry lists.
    conn: Option<Registered>,
    /// Who the connection is logged in as, if anyone.
    login: Login,
    /// The heartbeat interval from `HELLO heartbeat=`, if on.
    heartbeat: Option<Duration>,
    /// Outputs in order.
    outbox: Outbox,
    /// Unacked deliveries by delivery tag.
    unacked: Outstanding,
    /// Subscriptions by consumer tag, and their push channel.
    subs: Subscriptions,
    /// Exclusive queues this connection declared.
    exclusive: Vec<Arc<Queue>>,
    next_dtag: u64,
    /// The open transaction (`TX BEGIN`), if any.
    tx: Option<Transaction>,
}

impl SessionState {
    /// The state of a new connection `conn_id`, registered with the broker
    /// (`LIST CONNECTIONS`) until it is closed or dropped.
    pub(crate) fn new(conn_id: u64, peer: SocketAddr, tls: bool, broker: Broker) -> SessionState {
        let conn = broker.connections().register(conn_id, peer, tls);
        SessionState::with(conn_id, peer, broker, Some(conn))
    }

    /// The state of a command run without a connection (the HTTP API's,
    /// see [`crate::session::oneshot`]): not registered, so `LIST
    /// CONNECTIONS` and the connection counts do not see it.
    pub(crate) fn detached(conn_id: u64, peer: SocketAddr, broker: Broker) -> SessionState {
        SessionState::with(conn_id, peer, broker, None)
    }

    fn with(
        conn_id: u64,
        peer: SocketAddr,
        broker: Broker,
        conn: Option<Registered>,
    ) -> SessionState {
        SessionState {
            conn_id,
            peer,
            broker,
            conn,
            login: Login::default(),
            heartbeat: None,
            outbox: Outbox::default(),
            unacked: Outstanding::default(),
            subs: Subscriptions::new(),
            exclusive: Vec::new(),
            next_dtag: 1,
            tx: None,
        }
    }

    /// Connection id (broker-unique).
    pub(crate) fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The broker.
    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    // ---- Login and handshake ----

    /// Who the connection is logged in as, to check permissions with.
    pub(crate) fn login(&self) -> &Login {
        &self.login
    }

    /// `NOAUTH` unless the login lets `command` run at all (see
    /// [`Login::admit`]). A login whose user was removed is logged out,
    /// and `LIST CONNECTIONS` shows it so.
    pub(crate) fn admit(&mut self, command: &Command) -> Result<(), BrokerError> {
        let admitted = self.login.admit(self.broker.users(), command);
        if admitted.is_err() && self.login.user().is_none() {
            if let Some(c) = &self.conn {
                c.set_user(None);
            }
        }
        admitted
    }

    /// `FORBIDDEN` unless the user may publish to `exchange` (see
    /// [`Login::check_publish`]: cached per exchange).
    pub(crate) fn check_publish(&mut self, exchange: &str) -> Result<(), BrokerError> {
        self.login.check_publish(exchange)
    }

    /// Logs in as `user` (read at registry generation `generation`).
    pub(crate) fn log_in(&mut self, user: Arc<User>, generation: u64) {
        if let Some(c) = &self.conn {
            c.set_user(Some(user.name.clone()));
        }
        self.login.set(user, generation);
    }

    /// The heartbeat interval, if on.
    pub(crate) fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Sets the heartbeat interval (`None`: off).
    pub(crate) fn set_heartbeat(&mut self, every: Option<Duration>) {
        self.heartbeat = every;
    }

    /// Records the client's name (`HELLO name=`) for `LIST CONNECTIONS`.
    pub(crate) fn set_client_name(&mut self, name: String) {
        if let Some(c) = &self.conn {
            c.set_client_name(Some(name));
        }
    }

    /// The registry's entry for this connection (`None` when detached),
    /// for the loop to wait on a close asked by an admin.
    pub(crate) fn registration(&self) -> Option<Arc<ConnInfo>> {
        self.conn.as_ref().map(Registered::info)
    }

    /// Counts a `PUB` the connection sent, for its rates.
    pub(crate) fn count_publish(&self) {
        if let Some(c) = &self.conn {
            ConnInfo::count(&c.published, 1);
        }
    }

    /// Counts bytes read from the connection and written to it.
    pub(crate) fn count_bytes(&self, read: usize, written: usize) {
        if let Some(c) = &self.conn {
            if read > 0 {
                ConnInfo::count(&c.recv_bytes, read as u64);
            }
            if written > 0 {
                ConnInfo::count(&c.sent_bytes, written as u64);
            }
        }
    }

    fn count_delivery(&self) {
        if let Some(c) = &self.conn {
            ConnInfo::count(&c.delivered, 1);
        }
    }

    /// Publishes the connection's subscription and unacked counts to the
    /// registry (two relaxed stores).
    pub(crate) fn sync_registry(&self) {
        if let Some(c) = &self.conn {
            c.sync(self.subs.len(), self.unacked.len());
        }
    }

    // ---- Exclusive queues ----

    /// Remembers `q` if this connection owns it (an exclusive queue it
    /// declared), to delete it when the connection closes.
    pub(crate) fn keep_if_owned(&mut self, q: &Arc<Queue>) {
        if q.owner == Some(self.conn_id) && !self.exclusive.iter().any(|e| Arc::ptr_eq(e, q)) {
            self.exclusive.push(q.clone());
        }
    }

    /// Forgets the exclusive queue `name` (deleted).
    pub(crate) fn forget_queue(&mut self, name: &str) {
        self.exclusive.retain(|q| *q.name != *name);
    }

    // ---- Subscriptions and what their queues push ----

    /// The connection's subscriptions.
    pub(crate) fn subscriptions(&self) -> &Subscriptions {
        &self.subs
    }

    /// The connection's subscriptions, to add or end one. Ending one, take
    /// what it had pushed back with [`take_pushes_returning`](Self::take_pushes_returning).
    pub(crate) fn subscriptions_mut(&mut self) -> &mut Subscriptions {
        &mut self.subs
    }

    /// `--max-unacked`: `ERR LIMIT` unless `more` unacked deliveries fit
    /// beside the ones this connection has reserved already (the prefetch
    /// of its manual-ack subscriptions plus its unacked `GET` deliveries).
    pub(crate) fn check_unacked_room(&self, more: u64) -> Result<(), BrokerError> {
        let max = self.broker.config().max_unacked;
        let reserved = self.subs.reserved() + self.unacked.got();
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

    /// The next push from this connection's queues. Cancel-safe.
    pub(crate) async fn next_push(&mut self) -> Option<Push> {
        self.subs.next_push().await
    }

    /// Takes `first` and up to a batch of the pushes behind it into the
    /// outbox.
    pub(crate) fn take_push_batch(&mut self, first: Push) {
        self.on_push(first);
        for _ in 0..PUSH_BATCH {
            match self.subs.try_push() {
                Some(p) => self.on_push(p),
                None => break,
            }
        }
    }

    /// Takes every push already sent to this connection into the outbox,
    /// but for the deliveries to `ended`, a subscription being ended (or
    /// never made): those go back to their queue, not counted as
    /// delivered.
    pub(crate) fn take_pushes_returning(&mut self, ended: u64) {
        while let Some(p) = self.subs.try_push() {
            match p {
                Push::Deliver(d) if d.consumer_id == ended => return_undelivered(&self.broker, d),
                p => self.on_push(p),
            }
        }
    }

    fn on_push(&mut self, push: Push) {
        match push {
            Push::Deliver(d) => self.on_delivery(d),
            Push::Notice(n) => self.outbox.push_around(Out::Notice(n)),
            Push::Cancelled { tag, reason } => {
                if self.subs.remove(&tag).is_some() {
                    self.outbox.push_around(Out::Notice(Notice::Cancelled {
                        tag: tag.to_string(),
                        reason,
                    }));
                }
            }
        }
    }

    fn on_delivery(&mut self, d: Delivery) {
        self.count_delivery();
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
            m.auto = Some(AutoAck::new(d.queue, d.consumer_id, d.entry));
        } else {
            self.unacked
                .record(dtag, d.queue, Some(d.consumer_id), d.tag, d.entry);
        }
        self.outbox.push_around(Out::Msg(m));
    }

    // ---- Deliveries and their acks ----

    /// The next delivery tag.
    fn next_delivery_tag(&mut self) -> u64 {
        let t = self.next_dtag;
        self.next_dtag += 1;
        t
    }

    /// Queues `GET` deliveries (tag `-`), recording manual ones as unacked;
    /// returns the generation an auto-ack removal must reach.
    pub(crate) fn deliver_got(
        &mut self,
        q: &Arc<Queue>,
        entries: Vec<Entry>,
        ack: AckMode,
    ) -> Option<u64> {
        let dash: Arc<str> = Arc::from("-");
        let mut gen = None;
        for e in entries {
            self.count_delivery();
            let dtag = self.next_delivery_tag();
            self.outbox.push(Out::Msg(MsgOut {
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
                AckMode::Manual => self.unacked.record(dtag, q.clone(), None, dash.clone(), e),
                AckMode::Auto => match self.broker.settle(q, None, e, Settle::Ack) {
                    Ok(g) => gen = g.or(gen),
                    Err(err) => tracing::warn!(error = %err, "auto-ack removal failed"),
                },
            }
        }
        gen
    }

    /// Queues a `PEEK` line: `MSG * <position> ...`.
    pub(crate) fn show_peeked(&mut self, e: Entry) {
        self.outbox.push(Out::Msg(MsgOut {
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

    /// Takes outstanding delivery `dtag`, or with `multiple` every one up
    /// to it, to settle them.
    pub(crate) fn take_unacked(&mut self, dtag: u64, multiple: bool) -> Vec<Unacked> {
        if multiple {
            let tags = self.unacked.tags_up_to(dtag);
            tags.iter().filter_map(|t| self.unacked.take(*t)).collect()
        } else {
            self.unacked.take(dtag).into_iter().collect()
        }
    }

    /// The outstanding tags an `ACK <dtag> [multiple]` names: `dtag` if it
    /// is outstanding, or with `multiple` every one up to it; each with
    /// its queue.
    pub(crate) fn outstanding(&self, dtag: u64, multiple: bool) -> Vec<(u64, &Arc<Queue>)> {
        let tags = match multiple {
            true => self.unacked.tags_up_to(dtag),
            false => vec![dtag],
        };
        tags.into_iter()
            .filter_map(|t| self.unacked.get(t).map(|u| (t, u.queue())))
            .collect()
    }

    /// The queue, subscription (`None`: a `GET`) and copy position (a
    /// stream's offset) of outstanding delivery `dtag`.
    pub(crate) fn delivery(&self, dtag: u64) -> Option<(&Arc<Queue>, Option<u64>, u64)> {
        self.unacked
            .get(dtag)
            .map(|u| (u.queue(), u.consumer_id(), u.seq()))
    }

    /// Takes the outstanding deliveries `tags`, all of them or, when one
    /// is not outstanding (any more), none: `Err` with that tag.
    pub(crate) fn take_all_unacked(&mut self, tags: &[u64]) -> Result<Vec<Unacked>, u64> {
        if let Some(t) = tags.iter().find(|t| self.unacked.get(**t).is_none()) {
            return Err(*t);
        }
        Ok(tags.iter().filter_map(|t| self.unacked.take(*t)).collect())
    }

    // ---- The transaction ----

    /// The open transaction, if any.
    pub(crate) fn tx(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// The open transaction, if any, to add to.
    pub(crate) fn tx_mut(&mut self) -> Option<&mut Transaction> {
        self.tx.as_mut()
    }

    /// Opens a transaction; false when one is open already.
    pub(crate) fn tx_begin(&mut self) -> bool {
        if self.tx.is_some() {
            return false;
        }
        self.tx = Some(Transaction::default());
        true
    }

    /// Ends the open transaction, handing back what it buffered.
    pub(crate) fn tx_end(&mut self) -> Option<Transaction> {
        self.tx.take()
    }

    /// `TOUCH`: restarts an outstanding delivery's ack timeout. False when
    /// the tag is not outstanding.
    pub(crate) fn touch(&mut self, dtag: u64) -> bool {
        self.unacked.touch(dtag)
    }

    /// The earliest ack deadline, if any delivery has one.
    pub(crate) fn next_ack_deadline(&self) -> Option<Instant> {
        self.unacked.next_deadline()
    }

    /// Requeues every delivery whose ack timeout has passed and tells the
    /// client.
    pub(crate) fn expire_acks(&mut self, now: Instant) {
        while let Some((dtag, u)) = self.unacked.pop_expired(now) {
            let tag = u.tag().to_string();
            if let Err(e) = u.settle(&self.broker, Settle::Timeout) {
                tracing::warn!(error = %e, "requeue after ack timeout failed");
            }
            self.outbox
                .push_around(Out::Notice(Notice::AckTimeout { tag, dtag }));
        }
    }

    // ---- The loop's ----

    /// The outbox, for the session loop to see what waits.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The outbox, for the session loop to write, and to hold a `PUB`'s
    /// place in.
    pub(crate) fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// The peer closed its sending side while a command of its waits (a
    /// `GET wait=`): nothing it holds can be acked any more, so its
    /// subscriptions end and its unacked deliveries go back to their
    /// queues now. What is queued for it is still written (it may still
    /// read), and the waiting command still answers.
    pub(crate) fn peer_done_sending(&mut self) {
        // No `NOTICE cancelled`: the peer ended them.
        let emptied = self.subs.cancel_all(&self.broker);
        for u in self.unacked.take_all() {
            if let Err(err) = u.settle(&self.broker, Settle::Requeue { delay_ms: None }) {
                tracing::warn!(error = %err, "requeue failed");
            }
        }
        for q in emptied {
            if let Err(err) = self.broker.delete_queue_now(&q) {
                tracing::warn!(queue = %q.name, error = %err, "could not delete queue");
            }
        }
    }

    /// Ends the connection's state: cancel subscriptions, requeue unacked
    /// deliveries, delete exclusive and emptied auto-delete queues.
    pub(crate) fn close(mut self) {
        let emptied = self.subs.cancel_all(&self.broker);
        self.outbox.return_unwritten(&self.broker);
        for u in self.unacked.take_all() {
            if let Err(err) = u.settle(&self.broker, Settle::Requeue { delay_ms: None }) {
                tracing::warn!(error = %err, "requeue failed");
            }
        }
        // What is left of subscriptions through this node to replicated
        // queues' leaders (their deliveries were settled just now).
        if let Some(c) = self.broker.consensus() {
            c.closed(self.conn_id);
        }
        for q in emptied.into_iter().chain(self.exclusive.drain(..)) {
            if let Err(err) = self.broker.delete_queue_now(&q) {
                tracing::warn!(queue = %q.name, error = %err, "could not delete queue");
            }
        }
        tracing::debug!(conn = self.conn_id, "connection closed");
    }
}
