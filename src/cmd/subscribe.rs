//! `SUB` and `UNSUB`. See protocol.md, "SUB".

use std::sync::Arc;

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::auth::{Kind, Perm};
use crate::broker::queue::{Consumer, Queue};
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, StreamStart, Subscribe, Unsubscribe};
use crate::protocol::reply::{quote_for_message, Reply};
use crate::session_state::{SessionState, Sub};

/// `SUB <queue> [prefetch=<n>] [prefetch-bytes=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]
/// [group=<name>] [offset=...|time=...]` → `OK <ctag>`, then `MSG` pushes.
/// On a partitioned stream it subscribes to every partition (prefetch and
/// prefetch-bytes apply to each); `group=`, `offset=` and `time=` are for streams.
///
/// The `OK` precedes the first `MSG`: the queues push into the connection's
/// channel, which the session reads only after it has queued this reply.
#[instrument(level = "debug", name = "SUB", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn subscribe(c: Subscribe, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login().check("SUB", Perm::Read, Kind::Queue, &c.queue)?;
    // A replicated queue led by another node is served by its leader,
    // through this node.
    let leader = s
        .broker()
        .consensus()
        .filter(|consensus| consensus.led_elsewhere(&c.queue));
    if leader.is_none() {
        s.broker().served_here(&c.queue)?;
    }
    let queues = s.broker().queues_named(&c.queue, s.conn_id())?;
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
    let config = s.broker().config();
    let max = config.max_subscriptions;
    if s.subscriptions().len() >= max {
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
        None => s.subscriptions_mut().new_tag(),
    };
    if s.subscriptions().contains(&tag) {
        return Err(BrokerError::Precondition(format!(
            "consumer tag {} is already in use on this connection",
            quote_for_message(&tag)
        )));
    }
    let consumer_id = s.broker().next_id();
    let (conn, tx, exclusive) = (s.conn_id(), s.subscriptions().sender(), c.exclusive);
    let consumer_tag = tag.clone();
    let consumer = move || Consumer {
        id: consumer_id,
        tag: consumer_tag.clone(),
        conn,
        tx: tx.clone(),
        prefetch,
        credit: prefetch,
        prefetch_bytes: c.prefetch_bytes,
        bytes_in_flight: 0,
        exclusive,
        auto_ack: c.ack == AckMode::Auto,
    };
    if let Some(leader) = leader {
        let Some(q) = queues.first().cloned() else {
            return Err(BrokerError::NotFound(format!(
                "queue {}",
                quote_for_message(&c.queue)
            )));
        };
        let linked = leader.consume(q, consumer(), c.group.clone(), c.start);
        return Ok(Outcome::Pending(Pending::new(async move {
            let started = linked.await;
            Box::new(move |s: &mut SessionState| {
                let start = started?;
                let sub = Sub::new(queues, consumer_id, reserves).ok_or_else(|| {
                    BrokerError::Internal("a subscription without its queue".into())
                })?;
                s.subscriptions_mut().insert(tag.clone(), sub);
                // Deliveries flow from now on: after the `OK`, which the
                // session queues before it reads the pushes.
                start();
                Ok(Outcome::reply(Reply::words([tag.to_string()])))
            }) as Completion
        })));
    }
    let confirm = s
        .broker()
        .consensus()
        .filter(|consensus| stream && consensus.replicated(&c.queue));
    let join = Join {
        queues,
        group: c.group,
        start: c.start,
        tag,
        reserves,
        stream,
    };
    if let Some(consensus) = confirm {
        // A replicated stream's groups are its log's: this node serves one
        // once a majority confirms it still leads and it has applied what
        // the log committed (a leader cut off a moment ago would start a
        // group where the next leader had moved it past).
        let confirmed = consensus.confirm_lead(&c.queue);
        return Ok(Outcome::Pending(Pending::new(async move {
            let led = confirmed.await;
            Box::new(move |s: &mut SessionState| {
                led?;
                join.here(s, consumer_id, consumer)
            }) as Completion
        })));
    }
    join.here(s, consumer_id, consumer)
}

/// A subscription to join on this node.
struct Join {
    queues: Vec<Arc<Queue>>,
    group: Option<String>,
    start: Option<StreamStart>,
    tag: Arc<str>,
    reserves: u64,
    stream: bool,
}

impl Join {
    /// Joins every queue (each partition of a partitioned stream) as a
    /// consumer `consumer()` makes: `OK <ctag>`.
    fn here(
        self,
        s: &mut SessionState,
        consumer_id: u64,
        consumer: impl Fn() -> Consumer,
    ) -> Result<Outcome, BrokerError> {
        let Join {
            queues,
            group,
            start,
            tag,
            reserves,
            stream,
        } = self;
        for (i, q) in queues.iter().enumerate() {
            let joined = if stream {
                q.stream_subscribe(consumer(), group.as_deref(), start)
            } else {
                s.broker().subscribe(q, consumer())
            };
            if let Err(e) = joined {
                for done in &queues[..i] {
                    s.broker().unsubscribe(done, consumer_id);
                }
                // What the partitions joined so far sent goes back.
                s.take_pushes_returning(consumer_id);
                return Err(e);
            }
        }
        let Some(sub) = Sub::new(queues, consumer_id, reserves) else {
            return Err(BrokerError::Internal(
                "a subscription without its queue".into(),
            ));
        };
        s.subscriptions_mut().insert(tag.clone(), sub);
        Ok(Outcome::reply(Reply::words([tag.to_string()])))
    }
}

/// `UNSUB <ctag>` → `OK`. Unacked deliveries of the subscription stay
/// outstanding (they can still be acked); no `MSG` for it follows the `OK`.
/// On a `single-active` queue the next subscription takes over once they
/// are settled.
#[instrument(level = "debug", name = "UNSUB", skip_all, fields(conn = s.conn_id(), tag = %c.tag))]
pub(super) fn unsubscribe(c: Unsubscribe, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let sub = s.subscriptions_mut().remove(&c.tag).ok_or_else(|| {
        BrokerError::NotFound(format!("consumer tag {}", quote_for_message(&c.tag)))
    })?;
    let emptied = sub.unsubscribe(s.broker());
    // Deliveries already on their way go back to the queue before the OK;
    // the queue sends nothing more to this consumer once unsubscribed.
    s.take_pushes_returning(sub.consumer_id());
    let mut gen = None;
    if emptied {
        gen = s.broker().delete_queue_now(sub.queue())?;
    }
    Ok(Outcome::Reply(Reply::ok(), gen))
}
