//! `SUB` and `UNSUB`. See protocol.md, "SUB".

use std::sync::Arc;

use crate::auth::{Kind, Perm};
use crate::broker::queue::Consumer;
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Subscribe, Unsubscribe};
use crate::protocol::reply::{quote_for_message, Reply};
use crate::session::{Session, Sub};

/// `SUB <queue> [prefetch=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]`
/// → `OK <ctag>`, then `MSG` pushes.
pub(super) fn subscribe(c: Subscribe, s: &mut Session) -> Result<(), BrokerError> {
    s.login.check("SUB", Perm::Read, Kind::Queue, &c.queue)?;
    let q = s.broker.queue(&c.queue, s.conn_id)?;
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
        AckMode::Manual => u64::from(prefetch),
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
    s.reply(Reply::words([tag.to_string()]));
    let prefetch = c.prefetch.unwrap_or(s.broker.config().default_prefetch);
    let consumer = Consumer {
        id: consumer_id,
        tag: tag.clone(),
        conn: s.conn_id,
        tx: s.push_tx.clone(),
        prefetch,
        credit: prefetch,
        exclusive: c.exclusive,
        auto_ack: c.ack == AckMode::Auto,
    };
    if let Err(e) = q.subscribe(consumer) {
        s.out.pop_back();
        return Err(e);
    }
    s.subs.insert(
        tag,
        Sub {
            queue: q,
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
