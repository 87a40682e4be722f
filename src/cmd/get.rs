//! `GET`: pull messages, with long polling. See protocol.md, "GET".

use tokio::time::{Duration, Instant};

use super::reply_after;
use crate::auth::{Kind, Perm};
use crate::error::BrokerError;
use crate::protocol::command::{AckMode, Get};
use crate::protocol::reply::Reply;
use crate::session::{GetWait, Session};

/// `GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]` → zero or more
/// `MSG - ...` pushes, then `OK <n>`. With `wait=` and an empty queue, the
/// connection waits (up to that long) for a first message before replying.
pub(super) fn get(c: Get, s: &mut Session) -> Result<Option<GetWait>, BrokerError> {
    s.login.check("GET", Perm::Read, Kind::Queue, &c.queue)?;
    let q = s.broker.queue(&c.queue, s.conn_id)?;
    q.refuse_stream("GET")?;
    if c.ack == AckMode::Manual {
        s.check_unacked_room(u64::from(c.count))?;
    }
    let got = q.take(c.count, s.conn_id)?;
    if got.is_empty() && c.wait_ms > 0 {
        return Ok(Some(GetWait {
            queue: q,
            count: c.count,
            ack: c.ack,
            deadline: Instant::now() + Duration::from_millis(c.wait_ms),
        }));
    }
    let n = got.len();
    let gen = s.deliver_got(&q, got, c.ack);
    reply_after(s, Reply::words([n.to_string()]), gen)?;
    Ok(None)
}
