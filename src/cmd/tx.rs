//! `TX BEGIN`, `TX COMMIT`, `TX ABORT`, and the `ACK`s and `PUB`s buffered
//! between them: a consumer acks its deliveries and publishes its results
//! as one atomic, fsync'd step. See protocol.md, "TX"; the atomic write is
//! `broker/transaction.rs`.

use std::sync::Arc;

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::broker::queue::{Queue, Settle};
use crate::broker::Consensus;
use crate::error::BrokerError;
use crate::protocol::command::{Ack, Publish, Tx};
use crate::protocol::reply::Reply;
use crate::session_state::{SessionState, Unacked};

/// `TX BEGIN` → `OK`; `TX COMMIT` → `OK acked=<n> published=<m>
/// routed=<r> [duplicate=<d>]` once the transaction's one store write is
/// durable; `TX ABORT` → `OK`.
#[instrument(level = "debug", name = "TX", skip_all, fields(conn = s.conn_id()))]
pub(super) fn tx(c: Tx, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    match c {
        Tx::Begin => match s.tx_begin() {
            true => Ok(Outcome::reply(Reply::ok())),
            false => Err(BrokerError::Precondition(
                "a transaction is open already: TX COMMIT or TX ABORT it first".into(),
            )),
        },
        Tx::Abort => {
            s.tx_end().ok_or_else(none_open)?;
            Ok(Outcome::reply(Reply::ok()))
        }
        Tx::Commit => commit(s),
    }
}

fn none_open() -> BrokerError {
    BrokerError::Precondition("no transaction is open: TX BEGIN first".into())
}

/// `ACK <dtag> [multiple]` in a transaction → `OK queued`: the tags are
/// checked (outstanding, not already in it, not from a replicated queue)
/// and acked at `COMMIT`.
#[instrument(level = "trace", name = "ACK", skip_all, fields(conn = s.conn_id(), tag = c.tag))]
pub(super) fn buffer_ack(c: Ack, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let mut tags = Vec::new();
    let in_tx = |t: u64, s: &SessionState| s.tx().is_some_and(|tx| tx.acks(t));
    for (t, q) in s.outstanding(c.tag, c.multiple) {
        if in_tx(t, s) || q.is_deleted() {
            continue;
        }
        s.broker().tx_check_ack(q)?;
        tags.push(t);
    }
    if tags.is_empty() {
        return Err(BrokerError::UnknownTag(c.tag));
    }
    s.tx_mut().ok_or_else(none_open)?.add_acks(&tags)?;
    Ok(Outcome::reply(Reply::words(["queued"])))
}

/// `PUB ...` in a transaction → `OK queued <msg-id>`: checked (`write`
/// permission, the exchange, `mandatory`, no replicated queue) and given
/// its id now, published at `COMMIT`.
#[instrument(level = "trace", name = "PUB", skip_all, fields(conn = s.conn_id(), exchange = %c.exchange))]
pub(super) fn buffer_publish(c: Publish, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.check_publish(&c.exchange)?;
    s.broker().tx_check(&c)?;
    let id = s.broker().message_id(&c);
    s.tx_mut()
        .ok_or_else(none_open)?
        .add_publish(c, id.clone())?;
    Ok(Outcome::reply(Reply::words(["queued", id.as_str()])))
}

/// Applies the open transaction, all or nothing: on any error nothing of
/// it happened and it is over (its deliveries stay outstanding).
fn commit(s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let (tags, pubs) = s.tx_end().ok_or_else(none_open)?.into_parts();
    let (pubs, ids): (Vec<Publish>, Vec<String>) = pubs.into_iter().unzip();
    // A delivery settled since it was buffered (a NACK, its ack timeout,
    // its queue deleted) fails the whole transaction.
    for &t in &tags {
        if s.outstanding(t, false).iter().any(|(_, q)| q.is_deleted()) {
            return Err(BrokerError::UnknownTag(t));
        }
    }
    let acked: Vec<_> = tags
        .iter()
        .flat_map(|t| s.outstanding(*t, false))
        .map(|(_, q)| q.clone())
        .collect();
    if s.broker().tx_on_replicated(&acked, &pubs)? {
        if let Some(c) = s.broker().consensus() {
            return commit_replicated(s, c, tags, pubs, ids);
        }
    }
    let admitted = s.broker().tx_admit(&pubs)?;
    let taken = s.take_all_unacked(&tags).map_err(BrokerError::UnknownTag)?;
    let acks = taken.into_iter().map(Unacked::into_parts).collect();
    let done = s.broker().tx_commit(&pubs, admitted, ids, acks)?;
    let mut words = vec![
        format!("acked={}", done.acked),
        format!("published={}", done.published),
        format!("routed={}", done.routed),
    ];
    if done.duplicates > 0 {
        words.push(format!("duplicate={}", done.duplicates));
    }
    Ok(Outcome::Reply(Reply::words(words), done.gen))
}

/// A stream delivery a transaction acks: its subscription and offset.
type StreamAck = (Option<u64>, u64);

/// Commits a transaction on replicated queues through the cluster (see
/// `cluster/transaction.rs`): the reply once its outcome is recorded. The
/// deliveries it acks are held meanwhile; it aborted, they come again.
fn commit_replicated(
    s: &mut SessionState,
    c: std::sync::Arc<dyn Consensus>,
    tags: Vec<u64>,
    pubs: Vec<Publish>,
    ids: Vec<String>,
) -> Result<Outcome, BrokerError> {
    // A queue's deliveries are settled by position; a stream's by the
    // commits of their groups that acking them makes.
    let mut acked = Vec::with_capacity(tags.len());
    let mut on_streams: Vec<(Arc<Queue>, Vec<StreamAck>)> = Vec::new();
    for &t in &tags {
        let (q, consumer, seq) = s.delivery(t).ok_or(BrokerError::UnknownTag(t))?;
        if q.stream_end().is_none() {
            acked.push((q.name.clone(), seq));
            continue;
        }
        match on_streams.iter_mut().find(|(sq, _)| Arc::ptr_eq(sq, q)) {
            Some((_, list)) => list.push((consumer, seq)),
            None => on_streams.push((q.clone(), vec![(consumer, seq)])),
        }
    }
    let mut commits = Vec::new();
    for (q, list) in on_streams {
        for (group, at) in q.stream_commits_if_acked(&list)? {
            commits.push((q.name.clone(), group, at));
        }
    }
    let (parts, routed) = s.broker().tx_parts(&pubs, &ids, &acked, &commits)?;
    let held = s.take_all_unacked(&tags).map_err(BrokerError::UnknownTag)?;
    let words = vec![
        format!("acked={}", tags.len()),
        format!("published={}", pubs.len()),
        format!("routed={routed}"),
    ];
    let broker = s.broker().clone();
    // Runs to its end even if the connection closes meanwhile, so that
    // the held deliveries are settled either way: acked once committed
    // (the resolve records it in each queue's log), else put back.
    let task = tokio::spawn(async move {
        let done = c.transact(parts).await;
        for u in held {
            let (q, consumer, entry) = u.into_parts();
            let how = match done {
                Ok(_) => Settle::Ack,
                Err(_) => Settle::Requeue { delay_ms: None },
            };
            if let Err(e) = broker.settle_here(&q, consumer, entry, how, false) {
                tracing::warn!(queue = %q.name, error = %e, "settling a transaction's delivery");
            }
        }
        done
    });
    Ok(Outcome::Pending(Pending::new(async move {
        let done = match task.await {
            Ok(done) => done,
            Err(e) => Err(BrokerError::Internal(e.to_string())),
        };
        Box::new(move |_: &mut SessionState| {
            done?;
            Ok(Outcome::reply(Reply::words(words)))
        }) as Completion
    })))
}
