//! `REDRIVE`: send dead letters back where they were first published. See
//! protocol.md, "REDRIVE".

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use super::replicated::append;
use crate::auth::{Kind, Perm};
use crate::broker::{Broker, Redriven};
use crate::error::BrokerError;
use crate::protocol::command::Redrive;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `REDRIVE <queue> [count=<n>]` → `OK moved=<n> kept=<k>`, once the move
/// is durable. Needs `read` on the queue; a message whose exchange the user
/// may not `write` to is kept, like one whose route is gone. Messages without `h.x-death-exchange`/`h.x-death-key`, or
/// whose original route reaches no queue (or a full one), are kept. On a
/// cluster, a replicated queue is redriven on its leader, and the reply
/// waits for the logs of the replicated queues its messages reach, then
/// for its own (where the moved messages are settled).
#[instrument(level = "debug", name = "REDRIVE", skip_all, fields(conn = s.conn_id(), queue = %c.queue))]
pub(super) fn redrive(c: Redrive, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login()
        .check("REDRIVE", Perm::Read, Kind::Queue, &c.queue)?;
    s.broker().served_here(&c.queue)?;
    if let Some(q) = s.broker().find_queue(&c.queue) {
        q.refuse_stream("REDRIVE")?;
    }
    let login = s.login();
    let may_write = |exchange: &str| login.allows(Perm::Write, exchange);
    let r = s
        .broker()
        .redrive(&c.queue, c.count, s.conn_id(), &may_write)?;
    let reply = Reply::words([format!("moved={}", r.moved), format!("kept={}", r.kept)]);
    if r.replicate.is_empty() && r.settle.is_empty() {
        return Ok(Outcome::Reply(reply, r.gen));
    }
    let broker = s.broker().clone();
    Ok(Outcome::Later(Pending::new(async move {
        let done = through_logs(&broker, r).await;
        Box::new(move |_: &mut SessionState| {
            let gen = done?;
            Ok(Outcome::Reply(reply, gen))
        }) as Completion
    })))
}

/// Appends `r`'s copies to their replicated queues' logs, then settles
/// the moved messages in their own queue's log: the generation the reply
/// waits for. Should a copy not be committed, the moved messages go back
/// to their queue (a copy that was made stays: at least once).
async fn through_logs(broker: &Broker, r: Redriven) -> Result<Option<u64>, BrokerError> {
    let Some(c) = broker.consensus() else {
        return Err(BrokerError::Internal("not a cluster node".into()));
    };
    if let Err(e) = append(broker, r.replicate).await {
        broker.put_back(&r.queue, r.settle);
        return Err(e);
    }
    let seqs: Vec<u64> = r.settle.iter().map(|e| e.seq).collect();
    if !seqs.is_empty() {
        c.settled(&r.queue.name, seqs);
        c.settled_barrier(&r.queue.name).await?;
    }
    Ok(r.gen)
}
