//! What the worker loops run on: a [`PublishLink`] (queue a publish,
//! flush, wait for its confirm) and a [`ConsumeLink`] (next delivery, queue
//! an ack, flush, wait for the ack to be done). `sluice_link.rs` implements
//! them over sluice's text protocol, `amqp.rs` (feature `amqp`) over AMQP
//! 0-9-1, and `target.rs` connects the one the run measures.
//!
//! The loops in `worker.rs` own the semantics (window, pacing, flushing,
//! counting, latency); a link only says how one publish, delivery or ack
//! travels on its protocol, so both brokers are measured by the same code.

use std::future::Future;

use bytes::Bytes;

/// A publishing connection as the publisher loop sees it. Publishes go to
/// the exchange, with the delivery mode, the link was connected for.
pub(crate) trait PublishLink: Send + 'static {
    /// A publish on its way, its confirm still to come.
    type Pending: Send + 'static;
    /// Queues one publish of `body` with routing key `key`. Must keep
    /// the order of calls, and must not wait for the confirm.
    fn publish(
        &mut self,
        key: &str,
        body: &[u8],
    ) -> impl Future<Output = anyhow::Result<Self::Pending>> + Send;
    /// Writes what is queued.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Waits for the broker's confirm of `pending`; an error when the
    /// broker refused the message or did not route it as expected.
    fn confirmed(pending: Self::Pending) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Closes the connection once every confirm is in.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// One delivery, as the consumer loop needs it.
#[derive(Debug)]
pub(crate) struct Received {
    /// The tag to acknowledge it with.
    pub(crate) tag: u64,
    /// Whether the broker flagged it redelivered.
    pub(crate) redelivered: bool,
    /// Its offset, for a stream delivery (`offset=`).
    pub(crate) offset: Option<u64>,
    /// The body (the first bytes carry the timestamp).
    pub(crate) body: Bytes,
}

/// A subscribed connection as the consumer loop sees it.
pub(crate) trait ConsumeLink: Send + 'static {
    /// An ack on its way.
    type Pending: Send + 'static;
    /// The next delivery; `None` once the broker closed the connection or
    /// cancelled the subscription. Must be cancel-safe: the loop drops it
    /// when it would wait.
    fn next_delivery(&mut self) -> impl Future<Output = anyhow::Result<Option<Received>>> + Send;
    /// Queues an acknowledgement of `tag`, without waiting for it.
    fn ack(&mut self, tag: u64) -> impl Future<Output = anyhow::Result<Self::Pending>> + Send;
    /// Writes what is queued.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Waits until the ack is done (answered, or written where the
    /// protocol has no answer).
    fn acked(pending: Self::Pending) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Closes the connection once every ack is done.
    fn close(self) -> impl Future<Output = ()> + Send;
}
