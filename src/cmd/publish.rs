//! `PUB`: route, store, enqueue, and confirm. See protocol.md, "PUB".

use tracing::instrument;

use super::outcome::{Completion, HeldPub, Outcome, Pending};
use super::replicated::append;
use crate::broker::{Broker, Hold, PublishAttempt, Published};
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::protocol::reply::{Blocker, Reply};
use crate::session_state::SessionState;

/// `PUB <exchange> <key> [persistent|transient] [mandatory] [id=<id>]
/// [ttl=<ms>] [delay=<ms>] [priority=<n>] [h.<name>=<value>...] <body>`
/// → `OK <msg-id> routed=<n> [rejected=<n>] [duplicate]`.
///
/// The reply is the publisher confirm: it is queued behind the store
/// generation of the message's write, so it is sent only once the message
/// is fsync'd (for a persistent message on a durable queue). When a target
/// queue is full with `overflow=block`, nothing is stored and the publish
/// goes back to the session to hold ([`HeldPub`]); so does every publish
/// while memory is over `--memory-high-watermark`, and one that would write
/// to the store while the disk is under `--disk-free-limit`.
///
/// Needs `write` on the exchange (the default exchange is the name `""`),
/// checked through the session's cache so that a publisher's hot path
/// runs no regex.
#[instrument(level = "trace", name = "PUB", skip_all, fields(conn = s.conn_id(), exchange = %c.exchange))]
pub(super) fn publish(c: Publish, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.check_publish(&c.exchange)?;
    match s.broker().publish(&c)? {
        PublishAttempt::Done(p) if !p.replicate.is_empty() => {
            Ok(Outcome::Later(confirm_later(s.broker(), p)))
        }
        PublishAttempt::Done(p) => {
            let (reply, gen) = confirm(p);
            Ok(Outcome::Reply(reply, gen))
        }
        PublishAttempt::Blocked(on) => Ok(Outcome::Hold(HeldPub { cmd: c, on })),
    }
}

/// The confirm of a publish that reached replicated queues: it waits for
/// their logs (off the session's task: the connection reads on).
fn confirm_later(broker: &Broker, mut p: Published) -> Pending {
    let copies = std::mem::take(&mut p.replicate);
    // The copies go to the logs now, in the order the `PUB`s came.
    let appended = append(broker, copies);
    Pending::new(async move {
        let replicated = appended.await;
        Box::new(move |_: &mut SessionState| {
            let kept = replicated?;
            p.duplicate |= kept.duplicate;
            if let Some(full) = kept.rejected.first() {
                let n = kept.rejected.len();
                p.routed = p.routed.saturating_sub(n);
                p.rejected += n;
                if p.routed == 0 {
                    return Err(BrokerError::QueueFull(format!(
                        "queue {full} is full (overflow=reject-publish)"
                    )));
                }
            }
            let (reply, gen) = confirm(p);
            Ok(Outcome::Reply(reply, gen))
        }) as Completion
    })
}

/// The confirm of a publish: its `OK` line, and the store generation that
/// must be durable before it is written.
fn confirm(p: Published) -> (Reply, Option<u64>) {
    let gen = p.durable_gen;
    let mut w = vec![p.id, format!("routed={}", p.routed)];
    if p.rejected > 0 {
        w.push(format!("rejected={}", p.rejected));
    }
    if p.duplicate {
        w.push("duplicate".into());
    }
    (Reply::words(w), gen)
}

/// What came of a held `PUB` run again.
pub(crate) enum Retried {
    /// Held still.
    Held,
    /// Done: its confirm, and the store generation that must be durable
    /// first.
    Done(Reply, Option<u64>),
    /// Done, its confirm waiting for replicated queues' logs.
    Later(Pending),
}

/// How a held `PUB` waits, and runs again.
impl HeldPub {
    /// What holds it, as `NOTICE blocked` and `NOTICE unblocked` name it.
    pub(crate) fn blocker(&self) -> Blocker {
        self.on.blocker()
    }

    /// Resolves when what holds it may have cleared: its queue may have
    /// room (or was deleted), or its alarm cleared. Then [`retry`](Self::retry).
    pub(crate) fn room(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let on = self.on.clone();
        async move {
            let q = match on {
                Hold::Queue(q) => q,
                Hold::Alarm(alarm) => return alarm.wait_clear().await,
            };
            let _counted = q.blocker();
            let notified = q.room_signal().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if q.is_deleted() || q.admit(0) != crate::broker::queue::Admission::Block {
                return;
            }
            notified.await;
        }
    }

    /// Publishes again (its permission was checked when it first ran):
    /// still held (now on what holds it this time), or done.
    pub(crate) fn retry(&mut self, broker: &Broker) -> Result<Retried, BrokerError> {
        match broker.publish(&self.cmd)? {
            PublishAttempt::Blocked(on) => {
                self.on = on;
                Ok(Retried::Held)
            }
            // Rare: a publish held (a full queue, an alarm) that also
            // reaches replicated queues.
            PublishAttempt::Done(p) if !p.replicate.is_empty() => {
                Ok(Retried::Later(confirm_later(broker, p)))
            }
            PublishAttempt::Done(p) => {
                let (reply, gen) = confirm(p);
                Ok(Retried::Done(reply, gen))
            }
        }
    }
}
