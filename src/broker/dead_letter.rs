//! Dead-lettering (a dying copy re-published through its queue's
//! `dead-letter` exchange, with `h.x-death-*` headers, atomically with
//! its removal) and `REDRIVE` (dead letters sent back where they were
//! first published): the other two ways, besides `PUB`, that messages
//! move into queues (see `publish.rs`).
//!
//! Queues never route, nor call up into the broker: their operations return
//! what died in them ([`Dead`]), and the broker routes it here
//! (`Broker::dead_letter`) — after an enqueue or a redrive, on the timer
//! (`mod.rs`), and after the operations a session calls on a queue
//! (`consume.rs`).

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;

use super::message::{Entry, Message, Now};
use super::publish::{add_puts, Copies};
use super::queue::{Dead, DeathReason, Planned, Queue, StreamGroup};
use super::{Broker, ReplicaMessage};
use crate::error::BrokerError;
use crate::protocol::command::Header;
use crate::store::MessageBatch;

/// Dead letters that cause dead letters (a full dead-letter queue with
/// `overflow=drop-head`, ...) are followed this deep; past it they are
/// dropped, so a cycle of queues cannot loop forever.
const MAX_DEAD_LETTER_DEPTH: u32 = 4;

thread_local! {
    static DEAD_LETTER_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether a header is one that dead-lettering writes.
fn is_death_header(name: &str) -> bool {
    matches!(
        name,
        "x-death-reason"
            | "x-death-queue"
            | "x-death-exchange"
            | "x-death-key"
            | "x-death-group"
            | "x-death-offset"
    )
}

impl Broker {
    /// [`Broker::dead_letter`] where there is no reply to fail: an error
    /// is logged ("dead-lettering failed") and the caller goes on.
    pub(super) fn dead_letter_or_log(&self, from: &Arc<Queue>, dead: Dead) {
        if let Err(e) = self.dead_letter(from, dead) {
            tracing::warn!(queue = %from.name, error = %e, "dead-lettering failed");
        }
    }

    /// Dead-letters copies that died in `from` (what its operations
    /// return): each is re-published through `from`'s `dead-letter`
    /// exchange (with `dead-letter-key` or its own key) carrying
    /// `h.x-death-*` headers, in one store batch with its removal. Without
    /// a dead-letter exchange they are dropped. A stream's dead letters
    /// (copies: the stream keeps its messages) also name the group and
    /// offset they died at.
    pub(super) fn dead_letter(
        &self,
        from: &Arc<Queue>,
        dead: Dead,
    ) -> Result<Option<u64>, BrokerError> {
        if dead.is_empty() {
            return Ok(None);
        }
        if let Some(c) = self.inner.consensus.get() {
            // A replicated queue's log learns which copies died (expired,
            // rejected): they are settled. A stream's are copies: its
            // group's commit records them done.
            if c.replicated(&from.name) && from.stream_end().is_none() {
                c.settled(&from.name, dead.seqs().collect());
            }
        }
        let group = dead.stream_group().cloned();
        let dead = dead.into_letters();
        let depth = DEAD_LETTER_DEPTH.with(Cell::get);
        let Some(dlx) = from
            .args
            .dead_letter
            .as_deref()
            .filter(|_| depth < MAX_DEAD_LETTER_DEPTH)
        else {
            return from.release(dead.into_iter().map(|(e, _)| e).collect());
        };
        let now = Now::default();
        let mut planned = Planned::default();
        let mut sources = Vec::with_capacity(dead.len());
        let mut copies = Vec::with_capacity(dead.len());
        for (e, reason) in dead {
            // Shared, not copied: `Bytes` clones are reference counts.
            let key = from
                .args
                .dead_letter_key
                .clone()
                .unwrap_or_else(|| e.msg.routing_key.clone());
            let mut headers = death_headers(&e.msg, reason, &from.name);
            if let Some(g) = &group {
                stream_death_headers(&mut headers, g, e.seq);
            }
            let targets: Vec<Arc<Queue>> = match self.route_to(dlx, &key, &headers) {
                Ok(t) => t,
                Err(err) => {
                    tracing::warn!(queue = %from.name, error = %err, "dead-letter exchange missing; message dropped");
                    Vec::new()
                }
            };
            // A copy that died of anything but rejection does not go back
            // into the queue it died in (RabbitMQ's cycle rule), and a full
            // queue that refuses publishes refuses dead letters too.
            let targets: Vec<Arc<Queue>> = targets
                .into_iter()
                .filter(|q| reason == DeathReason::Rejected || !Arc::ptr_eq(q, from))
                .collect();
            let targets = planned.admit(targets, e.msg.body.len(), false);
            // A replicated queue takes its dead letters through its log.
            let (targets, replicated) = self.split_replicated(targets);
            if !replicated.is_empty() {
                let m = ReplicaMessage::dead_letter(&e.msg, dlx, &key, &headers, &now);
                self.dead_letter_replicated(replicated, &m);
            }
            copies.push(Copies::republish(
                self, &e, dlx, key, headers, targets, &now,
            ));
            sources.push(e);
        }
        self.move_copies(from, &sources, copies, depth)
    }

    /// Removes `sources` from `from` and adds `copies`, in one store batch,
    /// then enqueues the copies (one level deeper in dead-lettering).
    fn move_copies(
        &self,
        from: &Arc<Queue>,
        sources: &[Entry],
        copies: Vec<Copies>,
        depth: u32,
    ) -> Result<Option<u64>, BrokerError> {
        let metas: Vec<_> = copies.iter().map(Copies::metas).collect();
        let mut batch = MessageBatch::default();
        from.add_removals(sources, &mut batch);
        add_puts(&mut batch, &copies, &metas);
        let mut gen = None;
        if !batch.is_empty() {
            gen = Some(self.inner.disk.apply(&batch)?);
        }
        drop(batch);
        DEAD_LETTER_DEPTH.with(|d| d.set(depth + 1));
        let enqueued = self.enqueue_all(copies);
        DEAD_LETTER_DEPTH.with(|d| d.set(depth));
        Ok(enqueued?.max(gen))
    }

    /// `REDRIVE`: moves up to `count` messages off the head of `queue` back
    /// to the exchange and routing key they were first published to
    /// (`h.x-death-exchange`, `h.x-death-key`), atomically. Messages that
    /// were never dead-lettered, whose exchange `may_write` refuses (the
    /// user's `write` permission), or that would reach no queue (or only
    /// full ones), stay.
    ///
    /// On a cluster node, `queue` may be a replicated queue (on its
    /// leader): then the copies for replicated queues its messages reach
    /// are left for the caller to append to their logs, and the moved
    /// messages to settle in `queue`'s log once those are committed (or
    /// to put back, should they not be). A queue of the node's own keeps a
    /// message whose route reaches a replicated queue (its removal and
    /// the other queue's append could not be one step).
    pub(crate) fn redrive(
        &self,
        queue: &str,
        count: Option<u64>,
        conn: u64,
        may_write: &dyn Fn(&str) -> bool,
    ) -> Result<Redriven, BrokerError> {
        let q = self.queue(queue, conn)?;
        let from_log = self
            .inner
            .consensus
            .get()
            .is_some_and(|c| c.replicated(&q.name));
        let taken = q.take_for_redrive(count.unwrap_or(u64::MAX));
        let now = Now::default();
        let mut planned = Planned::default();
        let mut kept = Vec::new();
        let mut moved = Vec::new();
        let mut copies = Vec::new();
        let mut replicate = Vec::new();
        for e in taken {
            // An exchange name is text; the key may be any bytes.
            let exchange = e
                .msg
                .header("x-death-exchange")
                .and_then(|x| std::str::from_utf8(x).ok());
            let (Some(exchange), Some(key)) = (
                exchange.filter(|x| may_write(x)),
                e.msg.header("x-death-key").cloned(),
            ) else {
                kept.push(e);
                continue;
            };
            let headers: Vec<Header> = e
                .msg
                .headers
                .iter()
                .filter(|(k, _)| !is_death_header(k))
                .cloned()
                .collect();
            let targets = self.route_to(exchange, &key, &headers).unwrap_or_default();
            let (targets, replicated) = self.split_replicated(targets);
            let admitted = planned.admit(targets.clone(), e.msg.body.len(), true);
            let refused = admitted.len() < targets.len();
            if refused || (admitted.is_empty() && replicated.is_empty()) {
                kept.push(e);
                continue;
            }
            if !replicated.is_empty() {
                if !from_log {
                    kept.push(e);
                    continue;
                }
                let copy = ReplicaMessage::dead_letter(&e.msg, exchange, &key, &headers, &now);
                replicate.extend(replicated.into_iter().map(|r| (r, copy.clone())));
            }
            if !admitted.is_empty() {
                copies.push(Copies::republish(
                    self, &e, exchange, key, headers, admitted, &now,
                ));
            }
            moved.push(e);
        }
        let gen = self.move_copies(&q, &moved, copies, 0)?;
        let kept_n = kept.len() as u64;
        self.put_back(&q, kept);
        Ok(Redriven {
            moved: moved.len() as u64,
            kept: kept_n,
            gen,
            replicate,
            settle: match from_log {
                true => moved,
                false => Vec::new(),
            },
            queue: q,
        })
    }
}

/// What a `REDRIVE` did ([`Broker::redrive`]).
#[derive(Debug)]
pub(crate) struct Redriven {
    /// Messages moved, and kept.
    pub(crate) moved: u64,
    pub(crate) kept: u64,
    /// The store generation the reply waits for.
    pub(crate) gen: Option<u64>,
    /// Copies for replicated queues, to append to their logs.
    pub(crate) replicate: Vec<(Arc<str>, ReplicaMessage)>,
    /// A replicated queue's moved messages: settled in its log once the
    /// copies are committed, put back if they are not.
    pub(crate) settle: Vec<Entry>,
    /// The queue redriven.
    pub(crate) queue: Arc<Queue>,
}

/// The headers of a dead-lettered copy: its own minus earlier death
/// headers, plus `x-death-reason`, `x-death-queue`, `x-death-count` (one
/// more than before) and the exchange and key it was first published to.
fn death_headers(msg: &Message, reason: DeathReason, queue: &str) -> Vec<Header> {
    let count = msg
        .header("x-death-count")
        .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let first_exchange = msg
        .header("x-death-exchange")
        .cloned()
        .unwrap_or_else(|| Bytes::copy_from_slice(msg.exchange.as_bytes()));
    let first_key = msg
        .header("x-death-key")
        .unwrap_or(&msg.routing_key)
        .clone();
    let mut h: Vec<Header> = msg
        .headers
        .iter()
        .filter(|(k, _)| !is_death_header(k) && k != "x-death-count")
        .cloned()
        .collect();
    h.push((
        "x-death-reason".into(),
        Bytes::from_static(reason.as_str().as_bytes()),
    ));
    h.push((
        "x-death-queue".into(),
        Bytes::copy_from_slice(queue.as_bytes()),
    ));
    h.push(("x-death-count".into(), Bytes::from(count.to_string())));
    h.push(("x-death-exchange".into(), first_exchange));
    h.push(("x-death-key".into(), first_key));
    h
}

/// Adds the headers of a stream's dead letter: `x-death-group` (a named
/// group's) and `x-death-offset`.
fn stream_death_headers(h: &mut Vec<Header>, group: &StreamGroup, offset: u64) {
    if let Some(name) = &group.name {
        h.push((
            "x-death-group".into(),
            Bytes::copy_from_slice(name.as_bytes()),
        ));
    }
    h.push(("x-death-offset".into(), Bytes::from(offset.to_string())));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::OnceLock;

    use super::*;

    fn message(headers: Vec<Header>) -> Message {
        Message {
            group: None,
            id: "m1".into(),
            exchange: Arc::from("orders"),
            routing_key: "eu.new".into(),
            headers,
            body: Bytes::from_static(b"x"),
            body_id: 0,
            stored_refs: AtomicU32::new(0),
            persistent: true,
            registry: OnceLock::new(),
            published_at: 0,
        }
    }

    #[test]
    fn first_death_records_where_the_message_was_published() {
        let m = message(vec![("k".into(), "v".into())]);
        let h = death_headers(&m, DeathReason::Expired, "work");
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| &v[..]);
        assert_eq!(get("k"), Some(&b"v"[..]));
        let get = |n: &str| get(n).and_then(|v| std::str::from_utf8(v).ok());
        assert_eq!(get("x-death-reason"), Some("expired"));
        assert_eq!(get("x-death-queue"), Some("work"));
        assert_eq!(get("x-death-count"), Some("1"));
        assert_eq!(get("x-death-exchange"), Some("orders"));
        assert_eq!(get("x-death-key"), Some("eu.new"));
    }

    #[test]
    fn a_second_death_counts_up_and_keeps_the_first_origin() {
        let first = message(vec![]);
        let mut second = message(death_headers(&first, DeathReason::Rejected, "work"));
        second.exchange = Arc::from("dlx");
        second.routing_key = "dead".into();
        let h = death_headers(&second, DeathReason::MaxLen, "dlq");
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        assert_eq!(get("x-death-count"), Some("2"));
        assert_eq!(get("x-death-reason"), Some("maxlen"));
        assert_eq!(get("x-death-queue"), Some("dlq"));
        assert_eq!(get("x-death-exchange"), Some("orders"));
        assert_eq!(get("x-death-key"), Some("eu.new"));
        assert_eq!(h.iter().filter(|(k, _)| k == "x-death-reason").count(), 1);
    }

    #[test]
    fn a_binary_key_is_recorded_and_kept_byte_exact() {
        let mut first = message(vec![]);
        first.routing_key = Bytes::from_static(b"\xc3\x28.\xff");
        let h = death_headers(&first, DeathReason::Rejected, "work");
        let mut second = message(h);
        second.routing_key = Bytes::from_static(b"other");
        let h = death_headers(&second, DeathReason::Expired, "dlq");
        let key = h.iter().find(|(k, _)| k == "x-death-key").map(|(_, v)| v);
        assert_eq!(key.map(|k| &k[..]), Some(&b"\xc3\x28.\xff"[..]));
    }
}
