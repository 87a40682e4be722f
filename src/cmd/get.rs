//! `GET`: pull messages, with long polling. See protocol.md, "GET".

use std::sync::Arc;

use tokio::time::{Duration, Instant};
use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::auth::{Kind, Perm};
use crate::broker::message::Entry;
use crate::broker::queue::Queue;
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Get};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]` → zero or more
/// `MSG - ...` pushes, then `OK <n>`. With `wait=` and an empty queue, the
/// connection waits (up to that long) for a first message before replying.
#[instrument(level = "trace", name = "GET", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn get(c: Get, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login().check("GET", Perm::Read, Kind::Queue, &c.queue)?;
    s.broker().served_here(&c.queue)?;
    let q = s.broker().queue(&c.queue, s.conn_id())?;
    q.refuse_stream("GET")?;
    if c.ack == AckMode::Manual {
        s.check_unacked_room(u64::from(c.count))?;
    }
    let got = s.broker().take(&q, c.count, s.conn_id())?;
    if got.is_empty() && c.wait_ms > 0 {
        let w = GetWait {
            queue: q,
            count: c.count,
            ack: c.ack,
            deadline: Instant::now() + Duration::from_millis(c.wait_ms),
        };
        return Ok(w.wait(s.conn_id()));
    }
    Ok(deliver(s, &q, got, c.ack))
}

/// Shows what a `GET` took, then `OK <n>`.
fn deliver(s: &mut SessionState, q: &Arc<Queue>, got: Vec<Entry>, ack: AckMode) -> Outcome {
    let n = got.len();
    let gen = s.deliver_got(q, got, ack);
    Outcome::Reply(Reply::words([n.to_string()]), gen)
}

/// A `GET wait=` that found nothing yet.
struct GetWait {
    /// The queue.
    queue: Arc<Queue>,
    /// How many at most.
    count: u32,
    /// Ack mode.
    ack: AckMode,
    /// When to give up and answer `OK 0`.
    deadline: Instant,
}

impl GetWait {
    /// Waits until the queue may have a message for connection `conn` (or
    /// the deadline), then takes again.
    fn wait(self, conn: u64) -> Outcome {
        Outcome::Pending(Pending::new(async move {
            ready(&self.queue, self.deadline, conn).await;
            Box::new(move |s: &mut SessionState| self.take(s)) as Completion
        }))
    }

    /// Takes what is there: none, and time left, waits again.
    fn take(self, s: &mut SessionState) -> Result<Outcome, BrokerError> {
        // Fails when a single-active queue got a subscription meanwhile.
        let got = s.broker().take(&self.queue, self.count, s.conn_id())?;
        if got.is_empty() && Instant::now() < self.deadline && !self.queue.is_deleted() {
            return Ok(self.wait(s.conn_id()));
        }
        Ok(deliver(s, &self.queue, got, self.ack))
    }
}

/// Resolves when `q` may have a message for connection `conn`, or at
/// `deadline`.
async fn ready(q: &Arc<Queue>, deadline: Instant, conn: u64) {
    let _counted = q.waiter();
    let notified = q.ready_signal().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if q.can_take(conn) {
        return;
    }
    let _ = tokio::time::timeout_at(deadline, notified).await;
}
