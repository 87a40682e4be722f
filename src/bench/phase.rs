//! What a scenario is made of. [`Ctx`] is what every phase of a run
//! shares: the flags, the [`Target`], the clock and the live counters, the
//! broker probe and the warnings so far; it turns the flags into the
//! clients' plans and the phases' results into the [`Report`]. A *phase*
//! ([`run_phase`]) is publishers and consumers running together until every
//! queue has delivered every confirmed message, watched by a watchdog that
//! turns a stall into an error. What each scenario declares and which
//! phases it runs is `scenarios.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::task::JoinSet;

use super::proc::{BrokerProbe, BrokerUsage};
use super::progress::{Goal, Progress, Track};
use super::report::{group, BrokerPhase, BrokerReport, LatencyStats, Report, Settings, Throughput};
use super::target::Target;
use super::worker::{
    Clock, ConsumeOutcome, ConsumePlan, Counters, PublishOutcome, PublishPlan, Stop, StreamRead,
    Tally,
};
use super::CommonArgs;
use sluice::protocol::command::StreamStart;

/// How often the watchdog looks at the counters.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// What every phase of a run shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The flags every scenario takes.
    pub(crate) common: CommonArgs,
    /// The broker measured.
    pub(crate) target: Target,
    /// The clock every client of the run shares.
    pub(crate) clock: Clock,
    /// Live totals over every client (progress bar, watchdog).
    pub(crate) counters: Arc<Counters>,
    /// The broker's CPU time and RSS, with `--pid`.
    pub(crate) probe: Option<BrokerProbe>,
    /// Whether to draw the progress bar.
    pub(crate) progress: bool,
    /// Warnings so far, for the report.
    pub(crate) warnings: Vec<String>,
}

impl Ctx {
    /// `--count` or `--duration`, else the scenario's default.
    pub(crate) fn stop(&self, default: Stop) -> Stop {
        match (self.common.count, self.common.duration) {
            (Some(n), _) => Stop::Count(n),
            (None, Some(d)) => Stop::For(d),
            (None, None) => default,
        }
    }

    pub(crate) fn publish_plan(
        &self,
        index: u32,
        exchange: &str,
        keys: Arc<[String]>,
        stop: Stop,
        rate: Option<f64>,
        expect_routed: u64,
    ) -> PublishPlan {
        PublishPlan {
            index: u64::from(index),
            exchange: exchange.to_string(),
            keys,
            persistent: self.common.persistent,
            size: usize::try_from(self.common.size).unwrap_or(usize::MAX),
            window: usize::try_from(self.common.window).unwrap_or(usize::MAX),
            stop,
            rate,
            expect_routed,
            record_confirm_latency: false,
            json: false,
        }
    }

    /// The plan of consumer `index`, reading the stream of `tally` as
    /// group `group` from `start`, checking the order.
    pub(crate) fn stream_plan(
        &self,
        tally: &Arc<Tally>,
        index: u64,
        group: &str,
        start: StreamStart,
        record_latency: bool,
    ) -> ConsumePlan {
        ConsumePlan {
            index,
            tally: tally.clone(),
            ack: self.common.ack,
            record_latency,
            stream: Some(StreamRead {
                group: group.to_string(),
                start,
            }),
            check_order: true,
        }
    }

    pub(crate) fn consume_plans(
        &self,
        tally: &Arc<Tally>,
        n: u32,
        first_index: u64,
        record_latency: bool,
    ) -> Vec<ConsumePlan> {
        (0..u64::from(n))
            .map(|i| ConsumePlan {
                index: first_index + i,
                tally: tally.clone(),
                ack: self.common.ack,
                record_latency,
                stream: None,
                check_order: false,
            })
            .collect()
    }

    pub(crate) fn settings(
        &self,
        publishers: u32,
        consumers: u32,
        queues: u32,
        bindings: Option<u32>,
        rate: Option<f64>,
        stop: Stop,
    ) -> Settings {
        let c = &self.common;
        let (count, duration_secs) = match stop {
            Stop::Count(n) => (Some(n), None),
            Stop::For(d) => (None, Some(d.as_secs_f64())),
        };
        Settings {
            target: self.target.kind(),
            addr: self.target.display_addr(),
            count,
            duration_secs,
            rate,
            size: c.size,
            persistent: c.persistent,
            publishers,
            consumers,
            queues,
            bindings,
            window: c.window,
            prefetch: c.prefetch,
            ack: c.ack.as_str(),
        }
    }

    /// The report of phases that ran one after the other: publishing
    /// figures from the first phase that published, consuming figures from
    /// the last phase that consumed.
    pub(crate) fn report(
        &mut self,
        scenario: &'static str,
        settings: Settings,
        phases: &[(&'static str, &PhaseResult)],
        backlog: Option<u64>,
    ) -> Report {
        let publish = phases
            .iter()
            .find(|(_, p)| !p.published.is_empty())
            .map(|(_, p)| *p);
        let consume = phases
            .iter()
            .rev()
            .find(|(_, p)| !p.consumed.is_empty())
            .map(|(_, p)| *p);
        let zero = Throughput::new(0, 0.0);
        let mut samples = Vec::new();
        let mut redelivered = 0;
        let mut unstamped = 0;
        for (_, p) in phases {
            for c in &p.consumed {
                samples.extend_from_slice(&c.latencies_ns);
                redelivered += c.redelivered;
                unstamped += c.unstamped;
            }
        }
        let mut warnings = std::mem::take(&mut self.warnings);
        if redelivered > 0 {
            warnings.push(format!(
                "{} deliveries were flagged redelivered",
                group(redelivered)
            ));
        }
        if unstamped > 0 {
            warnings.push(format!(
                "{} deliveries had a body too short for the timestamp",
                group(unstamped)
            ));
        }
        let expected: u64 = phases
            .iter()
            .flat_map(|(_, p)| p.tallies.iter())
            .filter_map(|t| t.target())
            .sum();
        let delivered = consume.map_or(0, PhaseResult::delivered);
        if delivered > expected {
            warnings.push(format!(
                "{} deliveries more than messages owed to the queues (duplicates)",
                group(delivered - expected)
            ));
        }
        let broker = self.probe.as_ref().and_then(|probe| {
            let phases: Vec<BrokerPhase> = phases
                .iter()
                .filter_map(|(name, p)| p.broker.map(|usage| BrokerPhase { phase: name, usage }))
                .collect();
            let mut total: Option<BrokerUsage> = None;
            for p in &phases {
                total = Some(match total {
                    Some(t) => t.then(p.usage),
                    None => p.usage,
                });
            }
            total.map(|total| BrokerReport {
                pid: probe.pid,
                total,
                phases,
            })
        });
        Report {
            scenario,
            settings,
            published: publish.map_or(zero, PhaseResult::publish_throughput),
            delivered: consume.map_or(zero, PhaseResult::deliver_throughput),
            acked: match self.common.ack {
                super::AckMode::Manual => Some(consume.map_or(zero, PhaseResult::ack_throughput)),
                super::AckMode::Auto => None,
            },
            backlog,
            latency: LatencyStats::from_ns(samples),
            elapsed_secs: phases.iter().map(|(_, p)| p.secs()).sum(),
            broker,
            stream: None,
            warnings,
        }
    }
}

/// One phase: who publishes what, who consumes where.
#[derive(Debug)]
pub(crate) struct PhaseSpec {
    /// The progress bar's label.
    pub(crate) label: &'static str,
    pub(crate) publishers: Vec<PublishPlan>,
    pub(crate) consumers: Vec<ConsumePlan>,
    /// The queues' tallies; a phase with publishers sets their targets to
    /// the confirmed count once publishing is over.
    pub(crate) tallies: Vec<Arc<Tally>>,
    pub(crate) track: Track,
    pub(crate) goal: Goal,
    /// Added to `--timeout` for the watchdog.
    pub(crate) idle_allowance: Duration,
}

/// What a phase did.
#[derive(Debug)]
pub(crate) struct PhaseResult {
    start: Instant,
    end: Instant,
    pub(crate) published: Vec<PublishOutcome>,
    pub(crate) consumed: Vec<ConsumeOutcome>,
    tallies: Vec<Arc<Tally>>,
    pub(crate) broker: Option<BrokerUsage>,
}

impl PhaseResult {
    fn secs(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }

    fn since_start(&self, t: Option<Instant>) -> f64 {
        t.map_or(0.0, |t| {
            t.saturating_duration_since(self.start).as_secs_f64()
        })
    }

    pub(crate) fn confirmed(&self) -> u64 {
        self.published.iter().map(|p| p.confirmed).sum()
    }

    fn delivered(&self) -> u64 {
        self.consumed.iter().map(|c| c.delivered).sum()
    }

    pub(crate) fn publish_throughput(&self) -> Throughput {
        let last = self.published.iter().filter_map(|p| p.last_confirm).max();
        Throughput::new(self.confirmed(), self.since_start(last))
    }

    pub(crate) fn deliver_throughput(&self) -> Throughput {
        let last = self.consumed.iter().filter_map(|c| c.last_delivery).max();
        Throughput::new(self.delivered(), self.since_start(last))
    }

    /// One consumer's deliveries, from the start of the phase.
    pub(crate) fn consumer_throughput(&self, c: &ConsumeOutcome) -> Throughput {
        Throughput::new(c.delivered, self.since_start(c.last_delivery))
    }

    fn ack_throughput(&self) -> Throughput {
        let last = self.consumed.iter().filter_map(|c| c.last_ack).max();
        let acked = self.consumed.iter().map(|c| c.acked).sum();
        Throughput::new(acked, self.since_start(last))
    }
}

/// What a phase's task returns.
enum Finished {
    Published(PublishOutcome),
    Consumed(ConsumeOutcome),
}

/// Runs one phase to its end: connects the publishers, subscribes the
/// consumers, runs them all, and once every publisher is done tells each
/// queue's tally how many deliveries it owes; ends when every consumer has
/// its queue's count. Fails on the first error, or when the watchdog sees
/// nothing happen for `--timeout`.
pub(crate) async fn run_phase(ctx: &Ctx, spec: PhaseSpec) -> anyhow::Result<PhaseResult> {
    let mut publishers = Vec::with_capacity(spec.publishers.len());
    for plan in spec.publishers {
        publishers.push((ctx.target.publisher(&plan).await?, plan));
    }
    // A phase that only consumes starts before the subscriptions (deliveries
    // start with them); otherwise once the consumers are ready.
    let mut start = Instant::now();
    let mut mark = match &ctx.probe {
        Some(p) if publishers.is_empty() => Some(p.mark()?),
        _ => None,
    };
    let mut set: JoinSet<anyhow::Result<Finished>> = JoinSet::new();
    for plan in spec.consumers {
        let c = ctx
            .target
            .consumer(
                &plan.tally.queue,
                ctx.common.prefetch,
                plan.ack,
                plan.index,
                plan.stream.as_ref(),
            )
            .await?;
        let (clock, counters) = (ctx.clock, ctx.counters.clone());
        set.spawn(async move { c.run(plan, clock, counters).await.map(Finished::Consumed) });
    }
    let mut publishing = publishers.len();
    if publishing > 0 {
        start = Instant::now();
        mark = ctx.probe.as_ref().map(BrokerProbe::mark).transpose()?;
    }
    let _bar = Progress::start(
        ctx.progress,
        spec.label,
        spec.track,
        spec.goal,
        ctx.counters.clone(),
    );
    for (c, plan) in publishers {
        let (clock, counters) = (ctx.clock, ctx.counters.clone());
        set.spawn(async move { c.run(plan, clock, counters).await.map(Finished::Published) });
    }
    let tallies = spec.tallies;
    let mut published = Vec::new();
    let mut consumed = Vec::new();
    let everything = async {
        while let Some(joined) = set.join_next().await {
            match joined.context("a benchmark task panicked")?? {
                Finished::Published(p) => {
                    published.push(p);
                    publishing -= 1;
                    if publishing == 0 {
                        let total = published.iter().map(|p| p.confirmed).sum();
                        for t in &tallies {
                            t.set_target(total);
                        }
                    }
                }
                Finished::Consumed(c) => consumed.push(c),
            }
        }
        anyhow::Ok(())
    };
    let patience = ctx.common.timeout + spec.idle_allowance;
    tokio::select! {
        r = everything => r?,
        e = watchdog(&ctx.counters, &tallies, patience) => return Err(e),
    }
    let end = Instant::now();
    let broker = match (&ctx.probe, &mark) {
        (Some(p), Some(m)) => Some(p.usage_since(m)?),
        _ => None,
    };
    Ok(PhaseResult {
        start,
        end,
        published,
        consumed,
        tallies,
        broker,
    })
}

/// Returns an error once `counters` have not moved for `patience`.
async fn watchdog(
    counters: &Counters,
    tallies: &[Arc<Tally>],
    patience: Duration,
) -> anyhow::Error {
    let mut seen = counters.activity();
    let mut since = Instant::now();
    let mut every = tokio::time::interval(WATCH_EVERY);
    loop {
        every.tick().await;
        let now = counters.activity();
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= patience {
            let queues: Vec<String> = tallies
                .iter()
                .map(|t| {
                    let owed = t.target().map_or_else(|| "?".to_string(), group);
                    format!("{}: {} of {owed} delivered", t.label, group(t.delivered()))
                })
                .collect();
            let mut msg = format!(
                "no progress for {:.0} s: {}",
                patience.as_secs_f64(),
                counters.summary()
            );
            if !queues.is_empty() {
                msg.push_str("; ");
                msg.push_str(&queues.join("; "));
            }
            return anyhow!("{msg} (is the broker stuck? raise --timeout if it is just slow)");
        }
    }
}
