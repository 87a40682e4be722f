//! What the worker loops run on: a [`PublishLink`] (queue a publish, flush,
//! wait for its confirm) and a [`ConsumeLink`] (next delivery, queue an ack,
//! flush, wait for the ack to be done), their sluice implementations over
//! [`Client`], and the [`Target`] that connects them: a sluice broker, or,
//! with the `amqp` feature, an AMQP 0-9-1 broker (`amqp.rs`).
//!
//! The loops in `worker.rs` own the semantics (window, pacing, flushing,
//! counting, latency); a link only says how one publish, delivery or ack
//! travels on its protocol, so both brokers are measured by the same code.

use std::future::Future;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;

use super::worker::{
    self, Clock, ConsumeOutcome, ConsumePlan, Counters, PublishOutcome, PublishPlan, StreamRead,
};
use super::{AckMode, CommonArgs, Scenario};
use sluice::client::{Client, ReplyHandle};
use sluice::protocol::command::Subscribe;
use sluice::protocol::Command;
use sluice::tls::TlsClientConfig;

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

/// A sluice publisher: pipelined `PUB`s whose `OK` must say `routed=N`.
#[derive(Debug)]
pub(crate) struct SluicePublisher {
    client: Client,
    exchange: String,
    delivery: &'static str,
    expect_routed: u64,
}

impl PublishLink for SluicePublisher {
    type Pending = (ReplyHandle, u64);

    async fn publish(&mut self, key: &str, body: &[u8]) -> anyhow::Result<Self::Pending> {
        let reply = self
            .client
            .send_publish(&self.exchange, key, self.delivery, body);
        Ok((reply, self.expect_routed))
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.client.flush().await?)
    }

    async fn confirmed((reply, expect_routed): Self::Pending) -> anyhow::Result<()> {
        let r = reply.wait().await.context("PUB")?;
        let routed = r
            .words
            .iter()
            .find_map(|w| w.strip_prefix("routed="))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("PUB reply without routed=: OK {}", r.words.join(" ")))?;
        if routed != expect_routed {
            bail!(
                "the broker routed a message to {routed} queue(s), expected {expect_routed} (OK {})",
                r.words.join(" ")
            );
        }
        Ok(())
    }

    async fn close(self) {}
}

/// A sluice subscription (`SUB ... prefetch= ack=`), acked with `ACK <tag>`.
#[derive(Debug)]
pub(crate) struct SluiceConsumer {
    client: Client,
}

impl ConsumeLink for SluiceConsumer {
    type Pending = ReplyHandle;

    async fn next_delivery(&mut self) -> anyhow::Result<Option<Received>> {
        Ok(self.client.next_delivery().await.map(|d| Received {
            tag: d.delivery_tag,
            redelivered: d.redelivered,
            offset: d.offset,
            body: d.body,
        }))
    }

    async fn ack(&mut self, tag: u64) -> anyhow::Result<Self::Pending> {
        Ok(self.client.send_ack(tag))
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.client.flush().await?)
    }

    async fn acked(pending: Self::Pending) -> anyhow::Result<()> {
        pending.wait().await.context("ACK")?;
        Ok(())
    }

    async fn close(self) {}
}

/// A sluice broker: its address, how to reach it over TLS (`--tls`), and
/// who to log in as (`--user`, `--password`).
#[derive(Clone)]
pub(crate) struct SluiceEndpoint {
    /// `--addr`.
    pub(crate) addr: String,
    /// What to trust and the server name, with `--tls`.
    tls: Option<(TlsClientConfig, String)>,
    /// `--user`, `--password`: sent as `AUTH` on every connection.
    login: Option<(String, String)>,
}

impl std::fmt::Debug for SluiceEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.login.as_ref().map(|(u, _)| u);
        f.debug_struct("SluiceEndpoint")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("user", &user)
            .finish_non_exhaustive()
    }
}

impl SluiceEndpoint {
    /// A new connection (over TLS with `--tls`), logged in when a user was
    /// given.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let addr = &self.addr;
        let mut client = match &self.tls {
            None => Client::connect(addr.as_str()).await,
            Some((tls, name)) => Client::connect_tls(addr.as_str(), name, tls).await,
        }
        .map_err(|e| anyhow::Error::new(e).context(format!("connecting to {addr}")))?;
        if let Some((user, password)) = &self.login {
            let auth = client.send_command(&sluice::protocol::Command::Auth(
                sluice::protocol::command::Auth {
                    user: user.clone(),
                    password: sluice::protocol::command::Secret(password.clone()),
                },
            ));
            let replied = match client.flush().await {
                Ok(()) => auth.wait().await,
                Err(e) => Err(e),
            };
            replied.map_err(|e| anyhow!("AUTH {user} at {addr}: {e}"))?;
        }
        Ok(client)
    }
}

/// The broker a run measures.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A sluice broker.
    Sluice(SluiceEndpoint),
    /// An AMQP 0-9-1 broker (`--amqp URL`).
    #[cfg(feature = "amqp")]
    Amqp(Arc<super::amqp::Endpoint>),
}

impl Target {
    /// `--amqp URL` if given (which needs the `amqp` feature), else
    /// sluice at `--addr`.
    pub(crate) fn from_args(common: &CommonArgs) -> anyhow::Result<Target> {
        match &common.amqp {
            None => {
                let tls = match &common.tls_ca {
                    Some(ca) if common.tls => Some((
                        TlsClientConfig::from_ca_file(ca)?,
                        common.tls_server_name.clone(),
                    )),
                    _ => None,
                };
                Ok(Target::Sluice(SluiceEndpoint {
                    addr: common.addr.clone(),
                    tls,
                    login: common
                        .user
                        .clone()
                        .map(|u| (u, common.password.clone().unwrap_or_default().0)),
                }))
            }
            #[cfg(feature = "amqp")]
            Some(url) => Ok(Target::Amqp(Arc::new(super::amqp::Endpoint::parse(url)?))),
            #[cfg(not(feature = "amqp"))]
            Some(_) => bail!(
                "--amqp needs a sluice built with the amqp feature \
                 (cargo build --release --features amqp)"
            ),
        }
    }

    /// An error for a scenario this target cannot run: over AMQP only
    /// `queue`, `fanout` and `latency` run.
    pub(crate) fn check_scenario(&self, scenario: &Scenario) -> anyhow::Result<()> {
        match (self, scenario) {
            (Target::Sluice(_), _) => Ok(()),
            #[cfg(feature = "amqp")]
            (Target::Amqp(_), Scenario::Queue(_) | Scenario::Fanout(_) | Scenario::Latency(_)) => {
                Ok(())
            }
            #[cfg(feature = "amqp")]
            (Target::Amqp(_), other) => bail!(
                "`sluice bench {}` does not run against an AMQP broker: with --amqp, \
                 use queue, fanout or latency",
                other.name()
            ),
        }
    }

    /// `sluice` or `amqp`, for the report.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Target::Sluice(_) => "sluice",
            #[cfg(feature = "amqp")]
            Target::Amqp(_) => "amqp",
        }
    }

    /// The address as the report shows it (no password).
    pub(crate) fn display_addr(&self) -> String {
        match self {
            Target::Sluice(ep) if ep.tls.is_some() => format!("{} (TLS)", ep.addr),
            Target::Sluice(ep) => ep.addr.clone(),
            #[cfg(feature = "amqp")]
            Target::Amqp(e) => e.display.clone(),
        }
    }

    /// Connects a publisher for `plan`.
    pub(crate) async fn publisher(&self, plan: &PublishPlan) -> anyhow::Result<Publisher> {
        match self {
            Target::Sluice(ep) => {
                let client = ep
                    .connect()
                    .await
                    .map_err(|e| e.context(format!("publisher {}", plan.index)))?;
                Ok(Publisher::Sluice(SluicePublisher {
                    client,
                    exchange: plan.exchange.clone(),
                    delivery: if plan.persistent {
                        "persistent"
                    } else {
                        "transient"
                    },
                    expect_routed: plan.expect_routed,
                }))
            }
            #[cfg(feature = "amqp")]
            Target::Amqp(e) => Ok(Publisher::Amqp(Box::new(e.publisher(plan).await?))),
        }
    }

    /// Connects a consumer and subscribes it to `queue` (as a member of
    /// a group, from a start offset, for a `stream` read); deliveries may
    /// start at once, so [`Consumer::run`] should follow.
    pub(crate) async fn consumer(
        &self,
        queue: &str,
        prefetch: u32,
        ack: AckMode,
        index: u64,
        stream: Option<&StreamRead>,
    ) -> anyhow::Result<Consumer> {
        match self {
            Target::Sluice(ep) => {
                let mut client = ep
                    .connect()
                    .await
                    .map_err(|e| e.context(format!("consumer {index}")))?;
                let sub = subscribe_command(queue, prefetch, ack, index, stream);
                let reply = client.send_command(&sub);
                let replied = match client.flush().await {
                    Ok(()) => reply.wait().await,
                    Err(e) => Err(e),
                };
                replied.map_err(|e| {
                    let line = String::from_utf8_lossy(&sub.encode())
                        .trim_end()
                        .to_string();
                    anyhow!("consumer {index}: {line}: {e}")
                })?;
                Ok(Consumer::Sluice(SluiceConsumer { client }))
            }
            #[cfg(feature = "amqp")]
            Target::Amqp(_) if stream.is_some() => {
                bail!("consumer {index}: streams are not read over AMQP")
            }
            #[cfg(feature = "amqp")]
            Target::Amqp(e) => Ok(Consumer::Amqp(Box::new(
                e.consumer(queue, prefetch, ack, index).await?,
            ))),
        }
    }
}

/// The `SUB` of consumer `index`: `SUB <queue> prefetch= ack= tag=bench-<index>`,
/// with `group=` and `offset=` for a stream read.
fn subscribe_command(
    queue: &str,
    prefetch: u32,
    ack: AckMode,
    index: u64,
    stream: Option<&StreamRead>,
) -> Command {
    Command::Subscribe(Subscribe {
        queue: queue.to_string(),
        prefetch: Some(prefetch),
        ack: match ack {
            AckMode::Manual => sluice::protocol::command::AckMode::Manual,
            AckMode::Auto => sluice::protocol::command::AckMode::Auto,
        },
        tag: Some(format!("bench-{index}")),
        exclusive: false,
        group: stream.map(|s| s.group.clone()),
        start: stream.map(|s| s.start),
    })
}

/// A connected publisher of either kind.
#[derive(Debug)]
pub(crate) enum Publisher {
    /// On a sluice broker.
    Sluice(SluicePublisher),
    /// On an AMQP broker.
    #[cfg(feature = "amqp")]
    Amqp(Box<super::amqp::AmqpPublisher>),
}

impl Publisher {
    /// Runs the publisher loop ([`worker::publish`]) on this connection.
    pub(crate) async fn run(
        self,
        plan: PublishPlan,
        clock: Clock,
        counters: Arc<Counters>,
    ) -> anyhow::Result<PublishOutcome> {
        match self {
            Publisher::Sluice(l) => worker::publish(l, plan, clock, counters).await,
            #[cfg(feature = "amqp")]
            Publisher::Amqp(l) => worker::publish(*l, plan, clock, counters).await,
        }
    }
}

/// A subscribed consumer of either kind.
#[derive(Debug)]
pub(crate) enum Consumer {
    /// On a sluice broker.
    Sluice(SluiceConsumer),
    /// On an AMQP broker.
    #[cfg(feature = "amqp")]
    Amqp(Box<super::amqp::AmqpConsumer>),
}

impl Consumer {
    /// Runs the consumer loop ([`worker::consume`]) on this connection.
    pub(crate) async fn run(
        self,
        plan: ConsumePlan,
        clock: Clock,
        counters: Arc<Counters>,
    ) -> anyhow::Result<ConsumeOutcome> {
        match self {
            Consumer::Sluice(l) => worker::consume(l, plan, clock, counters).await,
            #[cfg(feature = "amqp")]
            Consumer::Amqp(l) => worker::consume(*l, plan, clock, counters).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BenchArgs;
    use clap::Parser;

    fn target(args: &[&str]) -> anyhow::Result<Target> {
        Target::from_args(BenchArgs::try_parse_from(args)?.common())
    }

    #[test]
    fn sluice_is_the_default_target() {
        let t = target(&["bench", "queue", "--addr", "127.0.0.1:1"]).unwrap();
        assert_eq!(t.kind(), "sluice");
        assert_eq!(t.display_addr(), "127.0.0.1:1");
    }

    #[test]
    fn stream_reads_subscribe_with_group_and_offset() {
        let read = StreamRead {
            group: "g1".into(),
            start: sluice::protocol::command::StreamStart::First,
        };
        let line = subscribe_command("bench-s", 100, AckMode::Manual, 1, Some(&read)).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB bench-s prefetch=100 tag=bench-1 group=g1 offset=first\r\n"
        );
        let read = StreamRead {
            group: "head".into(),
            start: sluice::protocol::command::StreamStart::Next,
        };
        let line = subscribe_command("s", 7, AckMode::Auto, 0, Some(&read)).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB s prefetch=7 ack=auto tag=bench-0 group=head offset=next\r\n"
        );
        let line = subscribe_command("q", 100, AckMode::Manual, 3, None).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB q prefetch=100 tag=bench-3\r\n"
        );
        // The parser reads it back as it was built.
        let sub = subscribe_command("bench-s", 100, AckMode::Manual, 1, Some(&read));
        let line = sub.encode();
        let parsed = sluice::protocol::parse::parse_line(line.trim_ascii_end(), None).unwrap();
        assert_eq!(parsed, sub);
    }

    #[cfg(not(feature = "amqp"))]
    #[test]
    fn amqp_url_without_the_feature_says_how_to_build_it() {
        let e = target(&["bench", "queue", "--amqp", "amqp://h/%2f"]).unwrap_err();
        assert!(e.to_string().contains("--features amqp"), "{e}");
    }

    #[cfg(feature = "amqp")]
    #[test]
    fn amqp_runs_queue_fanout_and_latency_only() {
        let url = "amqp://guest:secret@h:5672/%2f";
        for (scenario, ok) in [
            ("queue", true),
            ("fanout", true),
            ("latency", true),
            ("topic", false),
            ("backlog", false),
            ("stream", false),
        ] {
            let args = BenchArgs::try_parse_from(["bench", scenario, "--amqp", url]).unwrap();
            let t = Target::from_args(args.common()).unwrap();
            assert_eq!(t.kind(), "amqp");
            assert_eq!(t.display_addr(), "amqp://guest:***@h:5672/%2f");
            let checked = t.check_scenario(&args.scenario);
            assert_eq!(checked.is_ok(), ok, "{scenario}: {checked:?}");
        }
    }
}
