//! [`Outbox`]: what one connection has to write, in the order it is to be
//! written: replies (a confirm waiting for its store generation to be
//! durable), deliveries and notices.
//!
//! **Ordering.** Everything goes through one FIFO. A reply that promises
//! durability (a persistent `PUB`, an `ACK` that removed a stored message)
//! waits at its place until the group commit reaches its generation, and
//! every reply behind it waits too; so replies stay in command order,
//! `SUB`'s `OK` precedes its first `MSG`, and `GET`'s `MSG`s precede its
//! `OK`.
//!
//! **Pushes go ahead of replies waiting for the commit**: a delivery or a
//! notice pushed while everything queued is such a reply is written at
//! once, before them (the contract lets pushes fall between any two
//! replies). So a consumer's `ACK`, whose `OK` waits for the fsync, does
//! not hold back the deliveries its freed prefetch let through: a
//! consumer gets up to a prefetch's worth per round trip, not per fsync.
//! Anything else queued (a `SUB`'s `OK`, a `GET`'s lines, an earlier
//! push) keeps later pushes behind it.
//!
//! **A held `PUB`** keeps its reply's place with a placeholder
//! ([`Out::Held`]) until it is through; pushes (deliveries, notices) go
//! around the placeholder meanwhile, and follow the reply once it takes the
//! placeholder's place.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::broker::message::{Entry, Message};
use crate::broker::queue::{Queue, Settle};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::reply::{encode_msg, MsgHead, Notice, Reply};
use crate::protocol::ErrorCode;
use crate::store::CommitState;

/// One thing to write, in order.
#[derive(Debug)]
pub(crate) enum Out {
    /// A reply, possibly waiting for a store generation to be durable.
    Reply(Reply, Option<u64>),
    /// A delivery.
    Msg(MsgOut),
    /// A notice.
    Notice(Notice),
    /// The place of a held `PUB`'s reply.
    Held,
    /// The place of a reply that comes later ([`Outbox::fill`]).
    Later(u64),
}

/// A delivery waiting to be written.
#[derive(Debug)]
pub(crate) struct MsgOut {
    /// Consumer tag (`-` for `GET`, `*` for `PEEK`).
    pub(super) tag: Arc<str>,
    /// Delivery tag (`PEEK`: the position).
    pub(super) dtag: u64,
    /// The message.
    pub(super) msg: Arc<Message>,
    /// Deliveries, this one included.
    pub(super) deliveries: u32,
    /// Redelivered flag.
    pub(super) redelivered: bool,
    /// A stream delivery: its offset.
    pub(super) offset: Option<u64>,
    /// A partitioned stream's delivery: the partition index.
    pub(super) partition: Option<u32>,
    /// For `ack=auto` subscriptions: settle once written.
    pub(super) auto: Option<AutoAck>,
}

/// A message a command showed, taken by [`Outbox::take_detached`]: what
/// its `MSG` line would say.
#[derive(Debug)]
pub(crate) struct Shown {
    /// `-` for a `GET`, `*` for a `PEEK`.
    pub(crate) tag: Arc<str>,
    /// The delivery tag (`PEEK`: the position).
    pub(crate) dtag: u64,
    /// The message.
    pub(crate) msg: Arc<Message>,
    /// Deliveries, this one included.
    pub(crate) deliveries: u32,
    /// Redelivered flag.
    pub(crate) redelivered: bool,
    /// A stream's message: its offset.
    pub(crate) offset: Option<u64>,
    /// A partitioned stream's: the partition index.
    pub(crate) partition: Option<u32>,
}

/// An `ack=auto` delivery: settled once its bytes are out, given back if
/// they may not have reached the peer.
#[derive(Debug)]
pub(crate) struct AutoAck {
    queue: Arc<Queue>,
    consumer_id: u64,
    entry: Entry,
}

impl AutoAck {
    /// The delivery of `entry` from `queue` through subscription
    /// `consumer_id`.
    pub(super) fn new(queue: Arc<Queue>, consumer_id: u64, entry: Entry) -> AutoAck {
        AutoAck {
            queue,
            consumer_id,
            entry,
        }
    }

    /// Settles it with its queue, through `broker` (`Ack` once written,
    /// `Requeue` when the write failed).
    pub(crate) fn settle(self, broker: &Broker, how: Settle) -> Result<Option<u64>, BrokerError> {
        broker.settle(&self.queue, Some(self.consumer_id), self.entry, how)
    }
}

/// Gives back a copy that never left, through `broker`: not counted as
/// delivered, flagged `redelivered` only if it was before (a requeue would
/// flag it).
pub(super) fn give_back(
    broker: &Broker,
    queue: &Arc<Queue>,
    consumer_id: u64,
    mut entry: Entry,
) -> Result<Option<u64>, BrokerError> {
    entry.deliveries = entry.deliveries.saturating_sub(1);
    let redelivered = entry.redelivered;
    broker.settle(
        queue,
        Some(consumer_id),
        entry,
        Settle::Return { redelivered },
    )
}

/// The connection's outputs, in order (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Outputs in order.
    queue: VecDeque<Out>,
    /// Pushes written around a held `PUB`'s placeholder.
    bypass: VecDeque<Out>,
    /// Whether a held `PUB`'s placeholder is in `queue`.
    holding: bool,
    /// Pushes written ahead of the replies in `queue`, all of which wait
    /// for the commit (see the module docs).
    ahead: VecDeque<Out>,
    /// Items in `queue` that are neither a reply waiting for a store
    /// generation nor the placeholder: while there is one, pushes queue
    /// behind it.
    plain: usize,
    /// Later replies that came before their placeholder was queued (it
    /// waited behind a held `PUB`).
    early: std::collections::HashMap<u64, Out>,
}

/// Whether a push may not go ahead of `item` (see [`Outbox::plain`]).
fn is_plain(item: &Out) -> bool {
    !matches!(item, Out::Reply(_, Some(_)) | Out::Held | Out::Later(_))
}

impl Outbox {
    /// Queues `item` behind everything queued (a reply, a `GET`'s or a
    /// `PEEK`'s lines).
    pub(crate) fn push(&mut self, item: Out) {
        let item = match item {
            Out::Later(id) => self.early.remove(&id).unwrap_or(Out::Later(id)),
            item => item,
        };
        self.plain += usize::from(is_plain(&item));
        self.queue.push_back(item);
    }

    /// Queues a push: around a held `PUB`'s placeholder, ahead of replies
    /// that all wait for the commit, or behind everything queued.
    pub(crate) fn push_around(&mut self, item: Out) {
        if self.holding {
            self.bypass.push_back(item);
        } else if self.plain == 0 && !self.queue.is_empty() {
            self.ahead.push_back(item);
        } else {
            self.push(item);
        }
    }

    /// Keeps the place of a held `PUB`'s reply: what is queued from now on
    /// waits behind it, pushes go around it.
    pub(crate) fn hold(&mut self) {
        self.queue.push_back(Out::Held);
        self.holding = true;
    }

    /// Puts `reply` where the held `PUB`'s placeholder is, followed by the
    /// pushes that went around it.
    pub(crate) fn release(&mut self, reply: Out) {
        self.holding = false;
        self.plain += usize::from(is_plain(&reply)) + self.bypass.len();
        match self.queue.iter().position(|o| matches!(o, Out::Held)) {
            Some(at) => {
                self.queue[at] = reply;
                for (i, item) in self.bypass.drain(..).enumerate() {
                    self.queue.insert(at + 1 + i, item);
                }
            }
            None => {
                self.queue.push_back(reply);
                self.queue.extend(self.bypass.drain(..));
            }
        }
    }

    /// Puts `reply` in the place of the later reply `id`.
    pub(crate) fn fill(&mut self, id: u64, reply: Out) {
        let at = self
            .queue
            .iter()
            .position(|o| matches!(o, Out::Later(i) if *i == id));
        match at {
            Some(at) => {
                self.plain += usize::from(is_plain(&reply));
                self.queue[at] = reply;
            }
            None => {
                self.early.insert(id, reply);
            }
        }
    }

    /// How many outputs wait in order (the pushes around a held `PUB` not
    /// counted).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits in order, nor ahead of it (the pushes around
    /// a held `PUB` not counted).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.ahead.is_empty()
    }

    /// Whether the next output is a reply waiting for a store generation.
    pub(crate) fn waits_for_commit(&self) -> bool {
        matches!(self.queue.front(), Some(Out::Reply(_, Some(_))))
    }

    /// Encodes every output that may be written now; returns the auto-ack
    /// deliveries to settle once the bytes are out.
    pub(crate) fn encode_ready(&mut self, commit: &CommitState, buf: &mut Vec<u8>) -> Vec<AutoAck> {
        let mut written_auto = Vec::new();
        loop {
            let item = if let Some(item) = self.ahead.pop_front() {
                item
            } else {
                match self.queue.front() {
                    None => break,
                    Some(Out::Reply(_, Some(g))) if commit.outcome(*g).is_none() => break,
                    Some(Out::Later(_)) => break,
                    // A held PUB: only the pushes that go around it.
                    Some(Out::Held) => match self.bypass.pop_front() {
                        Some(item) => item,
                        None => break,
                    },
                    Some(_) => match self.queue.pop_front() {
                        Some(item) => {
                            self.plain -= usize::from(is_plain(&item));
                            item
                        }
                        None => break,
                    },
                }
            };
            match item {
                Out::Held | Out::Later(_) => {}
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

    /// Whether a reply queued waits for a store generation whose outcome
    /// `commit` does not know yet.
    pub(crate) fn undecided(&self, commit: &CommitState) -> bool {
        self.queue
            .iter()
            .any(|o| matches!(o, Out::Reply(_, Some(g)) if commit.outcome(*g).is_none()))
    }

    /// Takes everything queued, for a state without a connection (the HTTP
    /// API's, which waits until [`undecided`](Self::undecided) is false
    /// first): the replies, in order (a confirm whose generation failed, or
    /// is still undecided, becomes an `ERR INTERNAL`), and the messages
    /// shown (a `GET`'s deliveries, a `PEEK`'s lines). Notices are dropped;
    /// an auto-ack delivery (a subscription's, which such a state never
    /// has) goes back to its queue, through `broker`.
    pub(crate) fn take_detached(
        &mut self,
        commit: &CommitState,
        broker: &Broker,
    ) -> (Vec<Reply>, Vec<Shown>) {
        let (mut replies, mut shown) = (Vec::new(), Vec::new());
        self.plain = 0;
        self.holding = false;
        let all = self.ahead.drain(..).chain(self.queue.drain(..));
        for item in all.chain(self.bypass.drain(..)) {
            match item {
                Out::Reply(r, Some(g)) if !r.is_err() => match commit.outcome(g) {
                    Some(Ok(())) => replies.push(r),
                    Some(Err(e)) => replies.push(Reply::Err(
                        ErrorCode::Internal,
                        format!("not stored durably: {e}"),
                    )),
                    None => replies.push(Reply::Err(
                        ErrorCode::Internal,
                        "not known to be stored durably".into(),
                    )),
                },
                Out::Reply(r, _) => replies.push(r),
                Out::Msg(MsgOut { auto: Some(a), .. }) => {
                    if let Err(err) = give_back(broker, &a.queue, a.consumer_id, a.entry) {
                        tracing::warn!(error = %err, "requeue failed");
                    }
                }
                Out::Msg(m) => shown.push(Shown {
                    tag: m.tag,
                    dtag: m.dtag,
                    msg: m.msg,
                    deliveries: m.deliveries,
                    redelivered: m.redelivered,
                    offset: m.offset,
                    partition: m.partition,
                }),
                Out::Notice(_) | Out::Held | Out::Later(_) => {}
            }
        }
        self.early.clear();
        (replies, shown)
    }

    /// The connection is closing: gives back the auto-ack deliveries never
    /// written (through `broker`), and drops the rest.
    pub(super) fn return_unwritten(&mut self, broker: &Broker) {
        self.plain = 0;
        let unwritten = self.ahead.drain(..).chain(self.queue.drain(..));
        for item in unwritten.chain(self.bypass.drain(..)) {
            if let Out::Msg(MsgOut { auto: Some(a), .. }) = item {
                if let Err(err) = give_back(broker, &a.queue, a.consumer_id, a.entry) {
                    tracing::warn!(error = %err, "requeue failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Out, Outbox};
    use crate::protocol::reply::{Notice, Reply};
    use crate::store::CommitState;

    fn ok(word: &str) -> Out {
        Out::Reply(Reply::words([word]), None)
    }

    fn durable(g: u64) -> CommitState {
        CommitState {
            durable: g,
            error: None,
        }
    }

    fn written(outbox: &mut Outbox, commit: &CommitState) -> String {
        let mut buf = Vec::new();
        let autos = outbox.encode_ready(commit, &mut buf);
        assert!(autos.is_empty());
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn pushes_go_around_a_held_reply_and_follow_it_once_released() {
        let mut o = Outbox::default();
        o.push(ok("a"));
        o.hold();
        o.push(ok("c"));
        o.push_around(Out::Notice(Notice::Heartbeat));
        assert_eq!(
            written(&mut o, &durable(0)),
            "OK a\r\nNOTICE heartbeat\r\n",
            "nothing passes the placeholder but pushes"
        );
        o.push_around(Out::Notice(Notice::Heartbeat));
        o.release(ok("b"));
        o.push_around(Out::Notice(Notice::Heartbeat));
        assert_eq!(
            written(&mut o, &durable(0)),
            "OK b\r\nNOTICE heartbeat\r\nOK c\r\nNOTICE heartbeat\r\n"
        );
        assert!(o.is_empty());
    }

    #[test]
    fn later_replies_keep_their_places_in_any_order_of_arrival() {
        let mut o = Outbox::default();
        o.push(Out::Later(0));
        o.push(Out::Later(1));
        o.push(ok("c"));
        o.push_around(Out::Notice(Notice::Heartbeat));
        assert_eq!(written(&mut o, &durable(0)), "");
        o.fill(1, ok("b"));
        assert_eq!(written(&mut o, &durable(0)), "", "b waits behind a");
        o.fill(0, Out::Reply(Reply::words(["a"]), Some(2)));
        assert_eq!(written(&mut o, &durable(1)), "", "a waits for its commit");
        assert_eq!(
            written(&mut o, &durable(2)),
            "OK a\r\nOK b\r\nOK c\r\nNOTICE heartbeat\r\n"
        );
        assert!(o.is_empty());
        // A reply that comes before its place was queued (it waited
        // behind a held PUB) takes the place when it comes.
        o.fill(7, ok("early"));
        o.push(Out::Later(7));
        assert_eq!(written(&mut o, &durable(2)), "OK early\r\n");
    }

    #[test]
    fn a_confirm_waits_for_its_generation_and_holds_back_the_replies_after_it() {
        let mut o = Outbox::default();
        o.push(Out::Reply(Reply::words(["x"]), Some(3)));
        o.push(ok("y"));
        o.push_around(Out::Notice(Notice::Heartbeat));
        assert!(o.waits_for_commit());
        assert_eq!(written(&mut o, &durable(2)), "");
        assert_eq!(o.len(), 3);
        assert_eq!(
            written(&mut o, &durable(3)),
            "OK x\r\nOK y\r\nNOTICE heartbeat\r\n",
            "a push stays behind a reply that does not wait (a SUB's OK)"
        );
        assert!(!o.waits_for_commit());
        assert!(o.is_empty());
    }

    #[test]
    fn pushes_go_ahead_of_replies_that_all_wait_for_the_commit_and_keep_their_order() {
        let mut o = Outbox::default();
        o.push(Out::Reply(Reply::words(["x"]), Some(3)));
        o.push(Out::Reply(Reply::words(["y"]), Some(4)));
        o.push_around(Out::Notice(Notice::Heartbeat));
        assert_eq!(written(&mut o, &durable(2)), "NOTICE heartbeat\r\n");
        o.push_around(Out::Notice(Notice::Heartbeat));
        // A reply that does not wait: later pushes queue behind it.
        o.push(ok("z"));
        o.push_around(Out::Notice(Notice::Cancelled {
            tag: "t".into(),
            reason: "shutdown",
        }));
        assert_eq!(o.len(), 4);
        assert!(!o.is_empty());
        assert_eq!(written(&mut o, &durable(3)), "NOTICE heartbeat\r\nOK x\r\n");
        assert_eq!(
            written(&mut o, &durable(4)),
            "OK y\r\nOK z\r\nNOTICE cancelled t reason=shutdown\r\n"
        );
        // Nothing queued: a push goes in line, as ever.
        o.push_around(Out::Notice(Notice::Heartbeat));
        o.push(Out::Reply(Reply::words(["w"]), Some(5)));
        assert_eq!(written(&mut o, &durable(4)), "NOTICE heartbeat\r\n");
        assert!(!o.is_empty() && o.waits_for_commit());
    }

    #[test]
    fn a_confirm_whose_generation_failed_is_an_error() {
        let mut o = Outbox::default();
        o.push(Out::Reply(Reply::words(["x"]), Some(3)));
        let failed = CommitState {
            durable: 2,
            error: Some(Arc::from("disk")),
        };
        assert_eq!(
            written(&mut o, &failed),
            "ERR INTERNAL not stored durably: disk\r\n"
        );
    }
}
