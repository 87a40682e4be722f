//! `TX BEGIN`, `TX COMMIT`, `TX ABORT`, and the `ACK`s and `PUB`s buffered
//! between them: a consumer acks its deliveries and publishes its results
//! as one atomic, fsync'd step. See protocol.md, "TX"; the atomic write is
//! `broker/transaction.rs`.

use tracing::instrument;

use super::outcome::Outcome;
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
