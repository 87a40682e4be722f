//! What each scenario declares and runs: [`run`] sets up the run (the
//! target, the broker probe, the topology's admin connection), runs the
//! scenario named on the command line and tears the topology down at the
//! end, also on errors and Ctrl-C. Each scenario is one or two phases
//! ([`run_phase`], in `phase.rs`), and builds its report from them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::phase::{run_phase, Ctx, PhaseResult, PhaseSpec};
use super::proc::BrokerProbe;
use super::progress::{self, Goal, Track};
use super::report::{group, GroupRead, LatencyStats, Rate, Report, StreamReport};
use super::target::Target;
use super::topology::Topology;
use super::worker::{Clock, ConsumeOutcome, ConsumePlan, PublishPlan, Stop, Tally};
use super::{
    BacklogArgs, BenchArgs, FanoutArgs, LatencyArgs, QueueArgs, Scenario, SchemaArgs, StreamArgs,
    TopicArgs, DEFAULT_COUNT, DEFAULT_LATENCY_SECS,
};
use sluice::protocol::command::StreamStart;

/// Distinct routing keys the topic scenario cycles through.
const TOPIC_KEYS: usize = 1000;

/// Runs the scenario in `args` against the broker and returns its report.
/// The run's queues and exchanges are deleted at the end, whatever
/// happened; problems doing so are warnings in the report (or on stderr
/// when the run failed).
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let common = args.common().clone();
    let target = Target::from_args(&common)?;
    target.check_scenario(&args.scenario)?;
    let mut warnings = Vec::new();
    let probe = match common.pid {
        Some(pid) => {
            let p = BrokerProbe::start(pid)?;
            let expected = matches!(target, Target::Sluice(_)).then_some("sluice");
            if let Some(name) = p
                .command_name()
                .filter(|n| expected.is_some_and(|e| !n.contains(e)))
            {
                warnings.push(format!(
                    "--pid {pid} is {name:?}, which does not look like a sluice broker"
                ));
            }
            Some(p)
        }
        None => None,
    };
    let mut topo = Topology::connect(
        &target,
        &common.queue_prefix,
        common.persistent,
        common.replicas,
        common.timeout,
    )
    .await?;
    let mut ctx = Ctx {
        progress: progress::wanted(common.json),
        common,
        target,
        clock: Clock::new(),
        counters: Arc::default(),
        probe,
        warnings,
    };
    let counters = ctx.counters.clone();
    let result = tokio::select! {
        r = dispatch(&mut ctx, &args.scenario, &mut topo) => r,
        r = tokio::signal::ctrl_c() => Err(match r {
            Ok(()) => anyhow!("interrupted ({})", counters.summary()),
            Err(e) => anyhow!(e).context("listening for Ctrl-C"),
        }),
    };
    let problems = topo.teardown().await;
    match result {
        Ok(mut report) => {
            report.warnings.extend(problems);
            Ok(report)
        }
        Err(e) => {
            for p in problems {
                eprintln!("sluice bench: {p}");
            }
            Err(e)
        }
    }
}

async fn dispatch(
    ctx: &mut Ctx,
    scenario: &Scenario,
    topo: &mut Topology,
) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Queue(a) => queue(ctx, topo, a).await,
        Scenario::Fanout(a) => fanout(ctx, topo, a).await,
        Scenario::Topic(a) => topic(ctx, topo, a).await,
        Scenario::Backlog(a) => backlog(ctx, topo, a).await,
        Scenario::Latency(a) => latency(ctx, topo, a).await,
        Scenario::Stream(a) => stream(ctx, topo, a).await,
        Scenario::Tx(a) => super::relay::relay(ctx, topo, a).await,
        Scenario::Schema(a) => schema(ctx, topo, a).await,
    }
}

/// The subject the `schema` scenario checks bodies against (what
/// `worker::json_body` writes).
const BENCH_SCHEMA: &str = r#"{"type":"object","properties":{"stamp":{"type":"string","pattern":"^[0-9a-f]{32}$"},"pad":{"type":"string"}},"required":["stamp","pad"],"additionalProperties":false}"#;

/// `schema`: the same JSON bodies to an exchange without, then with,
/// `schema=`.
async fn schema(ctx: &mut Ctx, topo: &mut Topology, a: &SchemaArgs) -> anyhow::Result<Report> {
    let subject = topo.add_schema("subject", BENCH_SCHEMA).await?;
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let mut phases = Vec::new();
    for label in ["plain", "schema"] {
        let ex = match label {
            "plain" => topo.declare_exchange(label, "direct").await?,
            _ => {
                topo.declare_checked_exchange(label, "direct", &subject)
                    .await?
            }
        };
        let q = topo.declare_queue(label).await?;
        topo.bind_all(&[(q.clone(), ex.clone(), "k".to_string())])
            .await?;
        let tally = Tally::new(&q);
        let keys: Arc<[String]> = Arc::from(vec!["k".to_string()]);
        let publishers = (0..a.publishers)
            .map(|i| {
                let mut p =
                    ctx.publish_plan(i, &ex, keys.clone(), split(stop, a.publishers, i), None, 1);
                p.json = true;
                p
            })
            .collect();
        let consumers = ctx.consume_plans(&tally, 1, 0, true);
        phases.push(delivered(ctx, label, publishers, consumers, tally, stop).await?);
    }
    let settings = ctx.settings(a.publishers, 1, 2, None, None, stop);
    let [plain, checked] = &phases[..] else {
        bail!("the schema scenario ran {} phases, not 2", phases.len());
    };
    // The report's figures are the checked phase's; the baseline is this
    // line (a report holds one publish and one delivery rate).
    let (base, with) = (
        plain.publish_throughput().per_sec,
        checked.publish_throughput().per_sec,
    );
    ctx.warnings.push(format!(
        "baseline, not a problem: without schema= the same bodies were confirmed at {base:.0} \
         msgs/s; with schema= at {with:.0} msgs/s ({:.1}% of it)",
        100.0 * with / base.max(f64::MIN_POSITIVE)
    ));
    Ok(ctx.report("schema", settings, &[("schema", checked)], None))
}

/// Runs a phase that ends once `tally`'s queue has delivered every message
/// `stop` publishes (each once).
async fn delivered(
    ctx: &mut Ctx,
    label: &'static str,
    publishers: Vec<PublishPlan>,
    consumers: Vec<ConsumePlan>,
    tally: Arc<Tally>,
    stop: Stop,
) -> anyhow::Result<PhaseResult> {
    run_phase(
        ctx,
        PhaseSpec {
            label,
            publishers,
            consumers,
            tallies: vec![tally],
            track: Track::Delivered,
            goal: goal(stop, 1),
            idle_allowance: Duration::ZERO,
        },
    )
    .await
}

/// `queue`: P publishers, C competing consumers, one queue.
async fn queue(ctx: &mut Ctx, topo: &mut Topology, a: &QueueArgs) -> anyhow::Result<Report> {
    let q = topo.declare_queue("q").await?;
    let tally = Tally::new(&q);
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let keys: Arc<[String]> = Arc::from(vec![q.clone()]);
    let publishers = (0..a.publishers)
        .map(|i| ctx.publish_plan(i, "", keys.clone(), split(stop, a.publishers, i), None, 1))
        .collect();
    let consumers = ctx.consume_plans(&tally, a.consumers, 0, true);
    let phase = delivered(ctx, "queue", publishers, consumers, tally, stop).await?;
    let settings = ctx.settings(a.publishers, a.consumers, 1, None, None, stop);
    Ok(ctx.report("queue", settings, &[("run", &phase)], None))
}

/// `fanout`: 1 publisher, a fanout exchange bound to S queues, 1 consumer
/// per queue.
async fn fanout(ctx: &mut Ctx, topo: &mut Topology, a: &FanoutArgs) -> anyhow::Result<Report> {
    let ex = topo.declare_exchange("fanout", "fanout").await?;
    let mut tallies = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..a.queues {
        let q = topo.declare_queue(&format!("q{i}")).await?;
        bindings.push((q.clone(), ex.clone(), String::new()));
        tallies.push(Tally::new(&q));
    }
    topo.bind_all(&bindings).await?;
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let keys: Arc<[String]> = Arc::from(vec![String::new()]);
    let publishers = vec![ctx.publish_plan(0, &ex, keys, stop, None, u64::from(a.queues))];
    let consumers = tallies
        .iter()
        .enumerate()
        .flat_map(|(i, t)| ctx.consume_plans(t, 1, i as u64, true))
        .collect();
    let phase = run_phase(
        ctx,
        PhaseSpec {
            label: "fanout",
            publishers,
            consumers,
            tallies,
            track: Track::Delivered,
            goal: goal(stop, u64::from(a.queues)),
            idle_allowance: Duration::ZERO,
        },
    )
    .await?;
    let settings = ctx.settings(1, a.queues, a.queues, None, None, stop);
    Ok(ctx.report("fanout", settings, &[("run", &phase)], None))
}

/// The topic scenario's bindings: the matching one first, then
/// `bindings - 1` that match none of the keys published (`k.<i>.*`, and
/// `k.<i>.#` every tenth).
fn topic_bindings(
    hot: &str,
    sink: &str,
    exchange: &str,
    bindings: u32,
) -> Vec<(String, String, String)> {
    let mut out = vec![(hot.to_string(), exchange.to_string(), "k.hot.*".to_string())];
    for i in 0..bindings.saturating_sub(1) {
        let key = if i % 10 == 9 {
            format!("k.{i}.#")
        } else {
            format!("k.{i}.*")
        };
        out.push((sink.to_string(), exchange.to_string(), key));
    }
    out
}

/// `topic`: a topic exchange with many non-matching bindings and one
/// matching queue with a consumer.
async fn topic(ctx: &mut Ctx, topo: &mut Topology, a: &TopicArgs) -> anyhow::Result<Report> {
    let ex = topo.declare_exchange("topic", "topic").await?;
    let hot = topo.declare_queue("hot").await?;
    let sink = if a.bindings > 1 {
        Some(topo.declare_queue("sink").await?)
    } else {
        None
    };
    let bindings = topic_bindings(&hot, sink.as_deref().unwrap_or(""), &ex, a.bindings);
    let bound = Instant::now();
    topo.bind_all(&bindings).await?;
    let bind_secs = bound.elapsed().as_secs_f64();
    let tally = Tally::new(&hot);
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let keys: Arc<[String]> = (0..TOPIC_KEYS).map(|j| format!("k.hot.{j}")).collect();
    let publishers = vec![ctx.publish_plan(0, &ex, keys, stop, None, 1)];
    let consumers = ctx.consume_plans(&tally, 1, 0, true);
    let phase = delivered(ctx, "topic", publishers, consumers, tally, stop).await?;
    if let Some(sink) = &sink {
        let stray = topo.depth(sink).await?;
        if stray > 0 {
            ctx.warnings.push(format!(
                "{stray} messages reached the queue of the non-matching bindings ({sink})"
            ));
        }
    }
    if bind_secs > 1.0 {
        ctx.warnings.push(format!(
            "declaring the {} bindings took {bind_secs:.1} s",
            group(u64::from(a.bindings))
        ));
    }
    let settings = ctx.settings(
        1,
        1,
        1 + u32::from(sink.is_some()),
        Some(a.bindings),
        None,
        stop,
    );
    Ok(ctx.report("topic", settings, &[("run", &phase)], None))
}

/// `backlog`: publish with no consumer, then drain.
async fn backlog(ctx: &mut Ctx, topo: &mut Topology, a: &BacklogArgs) -> anyhow::Result<Report> {
    let q = topo.declare_queue("q").await?;
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let keys: Arc<[String]> = Arc::from(vec![q.clone()]);
    let publishers = (0..a.publishers)
        .map(|i| ctx.publish_plan(i, "", keys.clone(), split(stop, a.publishers, i), None, 1))
        .collect();
    let filled = run_phase(
        ctx,
        PhaseSpec {
            label: "publish",
            publishers,
            consumers: Vec::new(),
            tallies: Vec::new(),
            track: Track::Confirmed,
            goal: goal(stop, 1),
            idle_allowance: Duration::ZERO,
        },
    )
    .await?;
    let confirmed = filled.confirmed();
    let depth = topo.depth(&q).await?;
    if depth != confirmed {
        ctx.warnings.push(format!(
            "after the publish phase the queue holds {} ready messages, {} were confirmed",
            group(depth),
            group(confirmed)
        ));
    }
    if a.keep {
        topo.keep(&q);
        let settings = ctx.settings(a.publishers, 0, 1, None, None, stop);
        let mut report = ctx.report("backlog", settings, &[("publish", &filled)], Some(depth));
        report.latency = None;
        return Ok(report);
    }
    let tally = Tally::new(&q);
    tally.set_target(depth);
    let consumers = ctx.consume_plans(&tally, a.consumers, 0, false);
    let drained = run_phase(
        ctx,
        PhaseSpec {
            label: "drain",
            publishers: Vec::new(),
            consumers,
            tallies: vec![tally],
            track: Track::Delivered,
            goal: Goal::Count(depth),
            idle_allowance: Duration::ZERO,
        },
    )
    .await?;
    let settings = ctx.settings(a.publishers, a.consumers, 1, None, None, stop);
    let mut report = ctx.report(
        "backlog",
        settings,
        &[("publish", &filled), ("drain", &drained)],
        Some(depth),
    );
    report.latency = None;
    Ok(report)
}

/// `latency`: one publisher at a fixed rate, C consumers.
async fn latency(ctx: &mut Ctx, topo: &mut Topology, a: &LatencyArgs) -> anyhow::Result<Report> {
    let q = topo.declare_queue("q").await?;
    let tally = Tally::new(&q);
    let stop = ctx.stop(Stop::For(Duration::from_secs_f64(DEFAULT_LATENCY_SECS)));
    let keys: Arc<[String]> = Arc::from(vec![q.clone()]);
    let publishers = vec![ctx.publish_plan(0, "", keys, stop, Some(a.rate), 1)];
    let consumers = ctx.consume_plans(&tally, a.consumers, 0, true);
    let phase = run_phase(
        ctx,
        PhaseSpec {
            label: "latency",
            publishers,
            consumers,
            tallies: vec![tally],
            track: Track::Delivered,
            goal: goal(stop, 1),
            // A slow rate is quiet between messages by design.
            idle_allowance: Duration::from_secs_f64((2.0 / a.rate).min(1e6)),
        },
    )
    .await?;
    let achieved = phase.publish_throughput().per_sec;
    if achieved < 0.95 * a.rate {
        ctx.warnings.push(format!(
            "the publisher reached {} msgs/s of the {} asked for (window full, or the bench is CPU-bound)",
            group(achieved.round() as u64),
            group(a.rate.round() as u64)
        ));
    }
    let settings = ctx.settings(1, a.consumers, 1, None, Some(a.rate), stop);
    Ok(ctx.report("latency", settings, &[("run", &phase)], None))
}

/// The consumer group that follows the stream's head while it is written.
const HEAD_GROUP: &str = "head";

/// The name of old-data group `i` (1-based).
fn old_group(i: u32) -> String {
    format!("g{i}")
}

/// `stream`: append to a fresh stream with a reader at its head, then read
/// the whole of it again with G groups at once; every reader must see
/// every offset once, in order.
async fn stream(ctx: &mut Ctx, topo: &mut Topology, a: &StreamArgs) -> anyhow::Result<Report> {
    if ctx.common.transient {
        bail!("a stream is always persistent: `sluice bench stream` does not take --transient");
    }
    let s = topo.declare_stream("stream").await?;
    let stop = ctx.stop(Stop::Count(DEFAULT_COUNT));
    let keys: Arc<[String]> = Arc::from(vec![s.clone()]);
    let mut publisher = ctx.publish_plan(0, "", keys, stop, None, 1);
    publisher.persistent = true;
    publisher.record_confirm_latency = true;
    let head_tally = Tally::labelled(&s, format!("{s} group={HEAD_GROUP}"));
    let head = ctx.stream_plan(&head_tally, 0, HEAD_GROUP, StreamStart::Next, true);
    let appended = run_phase(
        ctx,
        PhaseSpec {
            label: "append",
            publishers: vec![publisher],
            consumers: vec![head],
            tallies: vec![head_tally],
            track: Track::Delivered,
            goal: goal(stop, 1),
            idle_allowance: Duration::ZERO,
        },
    )
    .await?;
    let confirmed = appended.confirmed();
    let head = appended
        .consumed
        .first()
        .ok_or_else(|| anyhow!("the head reader reported nothing"))?;
    let head_order = head.order.clone().unwrap_or_default();
    head_order
        .verify(confirmed, None)
        .map_err(|e| anyhow!("stream {s}: the head reader (group {HEAD_GROUP}): {e}"))?;
    let base = head_order.first_offset;
    let head_read = GroupRead {
        group: HEAD_GROUP.to_string(),
        start: "next",
        read: Rate::new(appended.consumer_throughput(head), ctx.common.size),
        first_offset: head_order.first_offset,
        last_offset: head_order.last_offset,
    };
    let messages = topo.stream_depth(&s).await?;
    if messages != confirmed {
        ctx.warnings.push(format!(
            "after publishing, the stream holds {} messages, {} were confirmed",
            group(messages),
            group(confirmed)
        ));
    }

    let mut tallies = Vec::new();
    let mut consumers = Vec::new();
    for i in 1..=a.groups {
        let g = old_group(i);
        let t = Tally::labelled(&s, format!("{s} group={g}"));
        t.set_target(confirmed);
        consumers.push(ctx.stream_plan(&t, u64::from(i), &g, StreamStart::First, false));
        tallies.push(t);
    }
    let old = run_phase(
        ctx,
        PhaseSpec {
            label: "old data",
            publishers: Vec::new(),
            consumers,
            tallies,
            track: Track::Delivered,
            goal: Goal::Count(confirmed.saturating_mul(u64::from(a.groups))),
            idle_allowance: Duration::ZERO,
        },
    )
    .await?;
    let mut reads: Vec<&ConsumeOutcome> = old.consumed.iter().collect();
    reads.sort_by_key(|c| c.index);
    let mut failures = Vec::new();
    let mut old_data = Vec::new();
    for c in &reads {
        let g = u32::try_from(c.index).map_or_else(|_| c.index.to_string(), old_group);
        let order = c.order.clone().unwrap_or_default();
        if let Err(e) = order.verify(confirmed, base) {
            failures.push(format!("group {g}: {e}"));
        }
        old_data.push(GroupRead {
            group: g,
            start: "first",
            read: Rate::new(old.consumer_throughput(c), ctx.common.size),
            first_offset: order.first_offset,
            last_offset: order.last_offset,
        });
    }
    if reads.len() != a.groups as usize {
        failures.push(format!(
            "{} of the {} groups reported",
            reads.len(),
            a.groups
        ));
    }
    if !failures.is_empty() {
        bail!(
            "stream {s}: reading from offset=first (head's first offset {}): {}",
            base.map_or_else(|| "?".to_string(), group),
            failures.join("; ")
        );
    }
    let mut settings = ctx.settings(1, 1 + a.groups, 1, None, None, stop);
    settings.persistent = true;
    let mut report = ctx.report(
        "stream",
        settings,
        &[("append", &appended), ("old-data", &old)],
        None,
    );
    report.stream = Some(StreamReport {
        stream: s,
        groups: a.groups,
        messages: Some(messages),
        append: Rate::new(appended.publish_throughput(), ctx.common.size),
        confirm_latency: LatencyStats::from_ns(
            appended
                .published
                .iter()
                .flat_map(|p| p.confirm_latencies_ns.iter().copied())
                .collect(),
        ),
        head: head_read,
        old_data,
        old_data_total: Rate::new(old.deliver_throughput(), ctx.common.size),
        old_data_broker: old.broker,
        verified: true,
    });
    Ok(report)
}

/// `count` deliveries per message over the whole run, or the time.
fn goal(stop: Stop, per_message: u64) -> Goal {
    match stop {
        Stop::Count(n) => Goal::Count(n.saturating_mul(per_message)),
        Stop::For(d) => Goal::Time(d),
    }
}

/// Publisher `i`'s share of `stop` among `n`: counts split evenly (the
/// first ones take the remainder), durations unchanged.
fn split(stop: Stop, n: u32, i: u32) -> Stop {
    match stop {
        Stop::Count(total) => {
            let n = u64::from(n.max(1));
            let i = u64::from(i);
            Stop::Count(total / n + u64::from(i < total % n))
        }
        Stop::For(d) => Stop::For(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_evenly() {
        let shares: Vec<u64> = (0..3)
            .map(|i| match split(Stop::Count(10), 3, i) {
                Stop::Count(n) => n,
                Stop::For(_) => 0,
            })
            .collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert!(matches!(
            split(Stop::For(Duration::from_secs(2)), 3, 1),
            Stop::For(d) if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn topic_bindings_match_only_the_hot_queue() {
        let b = topic_bindings("hot", "sink", "ex", 1000);
        assert_eq!(b.len(), 1000);
        assert_eq!(b[0], ("hot".into(), "ex".into(), "k.hot.*".into()));
        assert!(b[1..]
            .iter()
            .all(|(q, _, k)| q == "sink" && k.starts_with("k.")));
        assert!(b[1..].iter().any(|(_, _, k)| k.ends_with(".#")));
        assert_eq!(topic_bindings("hot", "sink", "ex", 1).len(), 1);
    }
}
