//! [`Transaction`]: what a connection buffered between `TX BEGIN` and
//! `TX COMMIT`: delivery tags to ack and publishes, each checked when it
//! came (see `cmd/tx.rs`), applied together at `COMMIT`.

use std::collections::BTreeSet;

use crate::error::BrokerError;
use crate::protocol::command::Publish;

/// At most this many `ACK`ed tags and `PUB`s together in one transaction:
/// the buffer lives in RAM until `COMMIT`, and the commit is one store
/// write. Past it, `ERR LIMIT`.
pub(crate) const MAX_TX_OPS: usize = 10_000;

/// At most this many body bytes of `PUB`s in one transaction (`ERR LIMIT`
/// past it).
pub(crate) const MAX_TX_BYTES: usize = 64 * 1024 * 1024;

/// An open transaction (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    /// The tags to ack, in order.
    acks: BTreeSet<u64>,
    /// The publishes, in order, with the id each was given.
    pubs: Vec<(Publish, String)>,
    /// Their body bytes.
    bytes: usize,
}

impl Transaction {
    /// Whether `dtag` is among the tags to ack.
    pub(crate) fn acks(&self, dtag: u64) -> bool {
        self.acks.contains(&dtag)
    }

    /// Adds tags to ack; `LIMIT` past [`MAX_TX_OPS`] (nothing added).
    pub(crate) fn add_acks(&mut self, tags: &[u64]) -> Result<(), BrokerError> {
        self.room(tags.len(), 0)?;
        self.acks.extend(tags);
        Ok(())
    }

    /// Adds a publish with its id; `LIMIT` past [`MAX_TX_OPS`] or
    /// [`MAX_TX_BYTES`].
    pub(crate) fn add_publish(&mut self, p: Publish, id: String) -> Result<(), BrokerError> {
        self.room(1, p.body.len())?;
        self.bytes += p.body.len();
        self.pubs.push((p, id));
        Ok(())
    }

    fn room(&self, ops: usize, bytes: usize) -> Result<(), BrokerError> {
        if self.acks.len() + self.pubs.len() + ops > MAX_TX_OPS {
            return Err(BrokerError::Limit(format!(
                "a transaction holds at most {MAX_TX_OPS} ACKs and PUBs; COMMIT this one first"
            )));
        }
        if self.bytes + bytes > MAX_TX_BYTES {
            return Err(BrokerError::Limit(format!(
                "a transaction holds at most {MAX_TX_BYTES} body bytes; COMMIT this one first"
            )));
        }
        Ok(())
    }

    /// What it buffered: the tags to ack, and the publishes with their ids.
    pub(crate) fn into_parts(self) -> (Vec<u64>, Vec<(Publish, String)>) {
        (self.acks.into_iter().collect(), self.pubs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::Command;
    use crate::protocol::parse::parse_line;

    fn publish(body: Vec<u8>) -> Publish {
        match parse_line(b"PUB \"\" q x", None) {
            Ok(Command::Publish(p)) => Publish {
                body: bytes::Bytes::from(body),
                ..p
            },
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn a_transaction_refuses_ops_past_its_limit_and_keeps_what_it_had() {
        let mut t = Transaction::default();
        let tags: Vec<u64> = (1..=MAX_TX_OPS as u64).collect();
        t.add_acks(&tags).expect("room for the limit");
        assert!(matches!(t.add_acks(&[0]), Err(BrokerError::Limit(_))));
        assert!(matches!(
            t.add_publish(publish(b"x".to_vec()), "m".into()),
            Err(BrokerError::Limit(_))
        ));
        let (acks, pubs) = t.into_parts();
        assert_eq!(acks.len(), MAX_TX_OPS);
        assert!(pubs.is_empty());
    }

    #[test]
    fn a_transaction_refuses_bodies_past_its_byte_limit() {
        let mut t = Transaction::default();
        t.add_publish(publish(vec![0u8; MAX_TX_BYTES]), "a".into())
            .expect("room");
        assert!(matches!(
            t.add_publish(publish(b"x".to_vec()), "b".into()),
            Err(BrokerError::Limit(_))
        ));
        assert_eq!(t.into_parts().1.len(), 1);
    }
}
