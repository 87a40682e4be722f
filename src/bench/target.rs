//! The broker a run measures, [`Target`]: sluice at `--server`
//! (`sluice_link.rs`) or, with the `amqp` feature, an AMQP 0-9-1 broker at
//! `--amqp URL` (`amqp.rs`); which scenarios it runs, how the report names
//! it, and the connected [`Publisher`]s and [`Consumer`]s of either kind,
//! which run the worker loops (`worker.rs`) on their links.

use std::sync::Arc;

use anyhow::bail;

use super::sluice_link::{SluiceConsumer, SluiceEndpoint, SluicePublisher};
use super::worker::{
    self, Clock, ConsumeOutcome, ConsumePlan, Counters, PublishOutcome, PublishPlan, StreamRead,
};
use super::{AckMode, CommonArgs, Scenario};

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
    /// sluice at `--server`.
    pub(crate) fn from_args(common: &CommonArgs) -> anyhow::Result<Target> {
        match &common.amqp {
            None => Ok(Target::Sluice(SluiceEndpoint::from_args(common)?)),
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
            Target::Sluice(ep) => ep.display_addr(),
            #[cfg(feature = "amqp")]
            Target::Amqp(e) => e.display.clone(),
        }
    }

    /// Connects a publisher for `plan`.
    pub(crate) async fn publisher(&self, plan: &PublishPlan) -> anyhow::Result<Publisher> {
        match self {
            Target::Sluice(ep) => Ok(Publisher::Sluice(ep.publisher(plan).await?)),
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
            Target::Sluice(ep) => Ok(Consumer::Sluice(
                ep.consumer(queue, prefetch, ack, index, stream).await?,
            )),
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
