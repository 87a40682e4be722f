//! `sluice bench --amqp URL` (feature `amqp`): the publish and consume
//! links (`link.rs`) and the run's topology over AMQP 0-9-1, with lapin, so
//! that `queue`, `fanout` and `latency` measure an AMQP broker (RabbitMQ)
//! with the very loops, clock and report that measure sluice.
//!
//! This file owns the AMQP side only: connecting ([`Endpoint`]), declaring
//! and deleting the run's queues and exchanges ([`AmqpAdmin`]), and what
//! one publish, delivery or ack is on a channel ([`AmqpPublisher`],
//! [`AmqpConsumer`]). The mapping of sluice's semantics:
//!
//! - one connection with one channel per publisher and per consumer, as
//!   on the sluice side;
//! - publishers: `confirm.select`, then `basic.publish` (mandatory, so an
//!   unroutable message is an error as `routed=0` is on sluice) with up to
//!   `--window` unconfirmed; `--persistent` sets delivery-mode 2;
//! - consumers: `basic.qos` prefetch-count = `--prefetch`, `basic.consume`,
//!   one `basic.ack` (not `multiple`) per delivery, or `no-ack` with
//!   `--ack auto`. AMQP does not answer acks: an ack counts once it is
//!   written to the socket;
//! - topology: queues and exchanges declared durable with `--persistent`,
//!   deleted at the end.
//!
//! lapin's calls queue their frames on the first poll and then wait for
//! its I/O thread to write them (and, for a publish, return the confirm
//! to wait for). [`start`] polls such a call once and keeps the rest for
//! later: that is how one task pipelines publishes and acks, in order,
//! without waiting for each to be written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_stream::StreamExt;

use super::link::{ConsumeLink, PublishLink, Received};
use super::worker::{now_or_never, PublishPlan};
use super::AckMode;

/// How long closing a connection at the end may take before it is left
/// to the broker to notice.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// AMQP's reply code for a normal close.
const REPLY_SUCCESS: u16 = 200;
/// AMQP delivery-mode of a persistent message (1: transient).
const DELIVERY_PERSISTENT: u8 = 2;
/// AMQP delivery-mode of a transient message.
const DELIVERY_TRANSIENT: u8 = 1;

/// A lapin call started by [`start`], to be awaited later.
type InFlight<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Polls `call` once, which queues its frames in the order of the calls,
/// and returns what is left of it: waiting for the write and the reply.
async fn start<T: Send + 'static>(call: impl Future<Output = T> + Send + 'static) -> InFlight<T> {
    let mut call: InFlight<T> = Box::pin(call);
    match now_or_never(&mut call).await {
        Some(done) => Box::pin(std::future::ready(done)),
        None => call,
    }
}

/// The broker's URL, checked, and how the report shows it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    url: String,
    /// The URL without its password.
    pub(crate) display: String,
}

impl Endpoint {
    /// Checks `url` (`amqp://user:pass@host:port/vhost`; the vhost `/` is
    /// written `%2f`).
    pub(crate) fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let display = redact(url);
        if url.starts_with("amqps:") {
            bail!("--amqp {display}: amqps:// (TLS) is not supported by this build, use amqp://");
        }
        url.parse::<AMQPUri>()
            .map_err(|e| anyhow!("--amqp {display}: {e}"))?;
        Ok(Endpoint {
            url: url.to_string(),
            display,
        })
    }

    /// A new connection, on this process's Tokio runtime, named `name` in
    /// the broker's management views.
    async fn connect(&self, name: &str) -> anyhow::Result<Connection> {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name(format!("sluice-bench {name}").into());
        Connection::connect(&self.url, props)
            .await
            .map_err(|e| anyhow!("{name}: connecting to {}: {e}", self.display))
    }

    /// The admin connection for the run's topology.
    pub(crate) async fn admin(&self, timeout: Duration) -> anyhow::Result<AmqpAdmin> {
        let opened = async {
            let conn = self.connect("admin").await?;
            let channel = conn
                .create_channel()
                .await
                .map_err(|e| anyhow!("admin: opening a channel: {e}"))?;
            anyhow::Ok(AmqpAdmin {
                conn: Some(conn),
                channel,
                timeout,
            })
        };
        tokio::time::timeout(timeout, opened).await.map_err(|_| {
            anyhow!(
                "connecting to {}: not open within {timeout:?}",
                self.display
            )
        })?
    }

    /// A publisher for `plan`, with publisher confirms on.
    pub(crate) async fn publisher(&self, plan: &PublishPlan) -> anyhow::Result<AmqpPublisher> {
        let name = format!("publisher {}", plan.index);
        let conn = self.connect(&name).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| anyhow!("{name}: opening a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| anyhow!("{name}: confirm.select: {e}"))?;
        let mode = if plan.persistent {
            DELIVERY_PERSISTENT
        } else {
            DELIVERY_TRANSIENT
        };
        Ok(AmqpPublisher {
            conn,
            channel: Arc::new(channel),
            exchange: Arc::from(plan.exchange.as_str()),
            properties: BasicProperties::default().with_delivery_mode(mode),
        })
    }

    /// A consumer of `queue`, subscribed with `prefetch` unacked at most.
    pub(crate) async fn consumer(
        &self,
        queue: &str,
        prefetch: u32,
        ack: AckMode,
        index: u64,
    ) -> anyhow::Result<AmqpConsumer> {
        let name = format!("consumer {index}");
        let conn = self.connect(&name).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| anyhow!("{name}: opening a channel: {e}"))?;
        channel
            .basic_qos(
                u16::try_from(prefetch).unwrap_or(u16::MAX),
                BasicQosOptions::default(),
            )
            .await
            .map_err(|e| anyhow!("{name}: basic.qos: {e}"))?;
        let options = BasicConsumeOptions {
            no_ack: ack == AckMode::Auto,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(
                queue,
                &format!("bench-{index}"),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| anyhow!("{name}: basic.consume {queue}: {e}"))?;
        Ok(AmqpConsumer {
            conn,
            channel: Arc::new(channel),
            consumer,
        })
    }
}

/// `url` with the password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Closes `conn`, waiting at most [`CLOSE_WAIT`]; a failure only leaves
/// the broker to notice the connection is gone. Once closed, waits for
/// lapin's I/O thread to end too: it uses the runtime's reactor, and
/// would log errors if the runtime shut down under it.
async fn close(conn: Connection) {
    let closed = tokio::time::timeout(CLOSE_WAIT, conn.close(REPLY_SUCCESS, "bench done")).await;
    if matches!(closed, Ok(Ok(()))) {
        // `run` joins the I/O thread, which ends with the connection.
        let joined = tokio::task::spawn_blocking(move || conn.run());
        let _ = tokio::time::timeout(CLOSE_WAIT, joined).await;
    }
}

/// The admin channel: declares, binds and deletes the run's queues and
/// exchanges, each call bounded by `--timeout`.
#[derive(Debug)]
pub(crate) struct AmqpAdmin {
    /// `None` once closed by [`AmqpAdmin::teardown`].
    conn: Option<Connection>,
    channel: Channel,
    timeout: Duration,
}

impl AmqpAdmin {
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = lapin::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| anyhow!("{what}: no reply within {:?}", self.timeout))?
            .map_err(|e| anyhow!("{what}: {e}"))
    }

    /// `queue.declare` (durable or not; neither exclusive nor auto-delete).
    pub(crate) async fn declare_queue(&mut self, name: &str, durable: bool) -> anyhow::Result<()> {
        let options = QueueDeclareOptions {
            durable,
            ..QueueDeclareOptions::default()
        };
        let call = self
            .channel
            .queue_declare(name, options, FieldTable::default());
        self.call(&format!("queue.declare {name}"), call).await?;
        Ok(())
    }

    /// `exchange.declare` of type `kind` (`fanout`, `direct`, `topic`,
    /// `headers`).
    pub(crate) async fn declare_exchange(
        &mut self,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> anyhow::Result<()> {
        let kind = match kind {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_string()),
        };
        let options = ExchangeDeclareOptions {
            durable,
            ..ExchangeDeclareOptions::default()
        };
        let call = self
            .channel
            .exchange_declare(name, kind, options, FieldTable::default());
        self.call(&format!("exchange.declare {name}"), call).await
    }

    /// `queue.bind`.
    pub(crate) async fn bind(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        let call = self.channel.queue_bind(
            queue,
            exchange,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        self.call(&format!("queue.bind {queue} {exchange} {key:?}"), call)
            .await
    }

    /// Deletes `queues`, then `exchanges`, and closes the connection;
    /// returns what went wrong. A channel the broker closed over an error
    /// is reopened to go on; a dead connection or a timeout stops the
    /// cleanup with `leftover` (what to delete by hand).
    pub(crate) async fn teardown(
        &mut self,
        queues: &[String],
        exchanges: &[String],
        leftover: &str,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let deletes = queues
            .iter()
            .map(|q| (true, q))
            .chain(exchanges.iter().map(|e| (false, e)));
        for (is_queue, name) in deletes {
            let (what, result) = if is_queue {
                let what = format!("queue.delete {name}");
                let call = self
                    .channel
                    .queue_delete(name, QueueDeleteOptions::default());
                let r = tokio::time::timeout(self.timeout, call).await;
                (what, r.map(|r| r.map(|_| ())))
            } else {
                let what = format!("exchange.delete {name}");
                let call = self
                    .channel
                    .exchange_delete(name, ExchangeDeleteOptions::default());
                (what, tokio::time::timeout(self.timeout, call).await)
            };
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    problems.push(format!("cleanup: {what}: {e}"));
                    let reopened = match &self.conn {
                        Some(conn) => conn.create_channel().await,
                        None => Err(lapin::Error::InvalidConnectionState(
                            lapin::ConnectionState::Closed,
                        )),
                    };
                    match reopened {
                        Ok(channel) => self.channel = channel,
                        Err(e) => {
                            problems.push(format!("cleanup: reopening a channel: {e}; {leftover}"));
                            break;
                        }
                    }
                }
                Err(_) => {
                    problems.push(format!(
                        "cleanup: {what}: no reply within {:?}; {leftover}",
                        self.timeout
                    ));
                    break;
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            close(conn).await;
        }
        problems
    }
}

/// A publishing connection: one channel in confirm mode.
#[derive(Debug)]
pub(crate) struct AmqpPublisher {
    conn: Connection,
    /// In an `Arc`: each publish takes a reference (a `Channel` clone is
    /// a dozen reference counts).
    channel: Arc<Channel>,
    exchange: Arc<str>,
    properties: BasicProperties,
}

impl PublishLink for AmqpPublisher {
    type Pending = InFlight<anyhow::Result<()>>;

    async fn publish(&mut self, key: &str, body: &[u8]) -> anyhow::Result<Self::Pending> {
        let (channel, exchange) = (self.channel.clone(), self.exchange.clone());
        let (key, body, properties) = (key.to_string(), body.to_vec(), self.properties.clone());
        Ok(start(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirm = channel
                .basic_publish(&exchange, &key, options, &body, properties)
                .await
                .context("basic.publish")?;
            match confirm.await.context("basic.publish confirm")? {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => bail!(
                    "the broker returned a message as unroutable ({} {}; exchange {:?}, key {key:?})",
                    returned.reply_code,
                    returned.reply_text,
                    exchange.as_ref(),
                ),
                Confirmation::Nack(None) => bail!("the broker nacked a publish"),
                Confirmation::NotRequested => {
                    bail!("a publish got no confirm (confirm.select not in effect)")
                }
            }
        })
        .await)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        // lapin's I/O thread writes as soon as a call queues frames.
        Ok(())
    }

    async fn confirmed(pending: Self::Pending) -> anyhow::Result<()> {
        pending.await
    }

    async fn close(self) {
        close(self.conn).await;
    }
}

/// A consuming connection: one channel with one `basic.consume`.
#[derive(Debug)]
pub(crate) struct AmqpConsumer {
    conn: Connection,
    /// In an `Arc`, as for [`AmqpPublisher`].
    channel: Arc<Channel>,
    consumer: lapin::Consumer,
}

impl ConsumeLink for AmqpConsumer {
    type Pending = InFlight<anyhow::Result<()>>;

    async fn next_delivery(&mut self) -> anyhow::Result<Option<Received>> {
        match self.consumer.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(anyhow!("delivery: {e}")),
            Some(Ok(d)) => Ok(Some(Received {
                tag: d.delivery_tag,
                redelivered: d.redelivered,
                offset: None,
                body: Bytes::from(d.data),
            })),
        }
    }

    async fn ack(&mut self, tag: u64) -> anyhow::Result<Self::Pending> {
        let channel = self.channel.clone();
        Ok(start(async move {
            channel
                .basic_ack(tag, BasicAckOptions::default())
                .await
                .context("basic.ack")
        })
        .await)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn acked(pending: Self::Pending) -> anyhow::Result<()> {
        pending.await
    }

    async fn close(self) {
        close(self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://user@host/vh"), "amqp://user@host/vh");
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn urls_are_checked() {
        assert!(Endpoint::parse("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(Endpoint::parse("amqps://h/%2f").is_err());
        let e = Endpoint::parse("http://u:pw@h/").unwrap_err().to_string();
        assert!(!e.contains("pw"), "{e}");
    }
}
