//! `SUB` and `UNSUB`. See protocol.md, "SUB".

use std::sync::Arc;

use crate::auth::{Kind, Perm};
use crate::broker::queue::Consumer;
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Subscribe, Unsubscribe};
use crate::protocol::reply::{quote_for_message, Reply};
use crate::session::{Session, Sub};

/// `SUB <queue> [prefetch=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]
/// [group=<name>] [offset=...|time=...]` → `OK <ctag>`, then `MSG` pushes.
/// On a partitioned stream it subscribes to every partition (prefetch
/// applies to each); `group=`, `offset=` and `time=` are for streams.
pub(super) fn subscribe(c: Subscribe, s: &mut Session) -> Result<(), BrokerError> {
    s.login.check("SUB", Perm::Read, Kind::Queue, &c.queue)?;
    let queues = s.broker.queues_named(&c.queue, s.conn_id)?;
    let stream = queues.first().is_some_and(|q| q.args.mode.is_stream());
    if !stream && (c.group.is_some() || c.start.is_some()) {
        return Err(BrokerError::Precondition(format!(
            "queue {} is not a stream: group=, offset= and time= are for streams",
            quote_for_message(&c.queue)
        )));
    }
    if stream && c.exclusive {
        return Err(BrokerError::Precondition(
            "exclusive is for queues: a stream has any number of readers (use group= to share one position)".into(),
        ));
    }
    let config = s.broker.config();
    let max = config.max_subscriptions;
    if s.subs.len() >= max {
        return Err(BrokerError::limit(
            "too many subscriptions on this connection",
            "--max-subscriptions",
            max,
        ));
    }
    let prefetch = c.prefetch.unwrap_or(config.default_prefetch);
    let reserves = match c.ack {
        AckMode::Manual => u64::from(prefetch) * queues.len() as u64,
        AckMode::Auto => 0,
    };
    s.check_unacked_room(reserves)?;
    let tag: Arc<str> = match c.tag {
        Some(t) => Arc::from(t),
        None => s.generate_consumer_tag(),
    };
    if s.subs.contains_key(&tag) {
        return Err(BrokerError::Precondition(format!(
            "consumer tag {} is already in use on this connection",
            quote_for_message(&tag)
        )));
    }
    let consumer_id = s.broker.next_id();
    // The reply is queued before the first delivery can arrive.
    let reply_at = s.out.len();
    s.reply(Reply::words([tag.to_string()]));
    let consumer = || Consumer {
        id: consumer_id,
        tag: tag.clone(),
        conn: s.conn_id,
        tx: s.push_tx.clone(),
        prefetch,
        credit: prefetch,
        exclusive: c.exclusive,
        auto_ack: c.ack == AckMode::Auto,
    };
    for (i, q) in queues.iter().enumerate() {
        let joined = if stream {
            q.stream_subscribe(consumer(), c.group.as_deref(), c.start)
        } else {
            q.subscribe(consumer())
        };
        if let Err(e) = joined {
            for done in &queues[..i] {
                done.unsubscribe(consumer_id);
            }
            // What the partitions joined so far sent goes back.
            s.cancelled.insert(consumer_id);
            s.take_pushes();
            s.cancelled.remove(&consumer_id);
            s.out.remove(reply_at);
            return Err(e);
        }
    }
    let mut queues = queues.into_iter();
    let Some(queue) = queues.next() else {
        return Err(BrokerError::NotFound(format!(
            "queue {}",
            quote_for_message(&c.queue)
        )));
    };
    s.subs.insert(
        tag,
        Sub {
            queue,
            partitions: queues.collect(),
            consumer_id,
            reserves,
        },
    );
    Ok(())
}

/// `UNSUB <ctag>` → `OK`. Unacked deliveries of the subscription stay
/// outstanding (they can still be acked); no `MSG` for it follows the `OK`.
/// On a `single-active` queue the next subscription takes over once they
/// are settled.
pub(super) fn unsubscribe(c: Unsubscribe, s: &mut Session) -> Result<(), BrokerError> {
    let sub = s.subs.remove(c.tag.as_str()).ok_or_else(|| {
        BrokerError::NotFound(format!("consumer tag {}", quote_for_message(&c.tag)))
    })?;
    s.cancelled.insert(sub.consumer_id);
    for p in &sub.partitions {
        p.unsubscribe(sub.consumer_id);
    }
    let emptied = sub.queue.unsubscribe(sub.consumer_id);
    // Deliveries already on their way go back to the queue before the OK;
    // the queue sends nothing more to this consumer once unsubscribed.
    s.take_pushes();
    s.cancelled.remove(&sub.consumer_id);
    let mut gen = None;
    if emptied {
        gen = s.broker.delete_queue_now(&sub.queue)?;
    }
    super::reply_after(s, Reply::ok(), gen)
}
