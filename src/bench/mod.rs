//! `sluice bench`: the project's load generator, in the spirit of
//! `nats bench` and RabbitMQ's PerfTest, built on [`sluice::client`].
//!
//! Each scenario declares its own queues and exchanges (unique names per
//! run, deleted at the end), connects its publishers and consumers, runs,
//! and prints one report: confirmed publishes/s, deliveries/s, acks/s,
//! the publish→deliver latency distribution, and, with `--pid`, the
//! broker's CPU time and peak RSS.
//!
//! Layout:
//!
//! - this file: the command line
//!   ([`BenchArgs`](crate::bench::BenchArgs),
//!   [`Scenario`](crate::bench::Scenario), the per-scenario arguments and
//!   [`CommonArgs`](crate::bench::CommonArgs)) and
//!   [`run`](crate::bench::run);
//! - `scenarios`: what each scenario sets up and runs, in phases;
//! - `phase`: running one phase (publishers and consumers until every
//!   queue has delivered every confirmed message, a watchdog for stalls)
//!   and the run's context that builds the plans and the report;
//! - `topology`: naming, declaring and deleting the run's queues and
//!   exchanges;
//! - `worker`: the publisher and consumer loops, the body timestamp, the
//!   live counters;
//! - `link`: what the loops run on: the publish and consume link traits;
//! - `sluice_link`: the links over sluice's text protocol, and the
//!   endpoint (`--server`, `--tls`, `--user`) that connects them;
//! - `amqp` (feature `amqp`): the same links and topology over AMQP 0-9-1
//!   (lapin), to measure RabbitMQ with the same scenarios;
//! - `target`: the broker a run measures (sluice or AMQP) and the
//!   publishers and consumers of either kind that run the loops;
//! - `report`: latency percentiles, the report, its text and JSON forms;
//! - `proc`: the broker's CPU time and RSS from `/proc`;
//! - `progress`: the progress bar on a terminal.
//!
//! Every client runs in this one process, so latency is measured against
//! one shared [`std::time::Instant`]: the publisher writes the nanoseconds
//! since that instant into the first 8 bytes of each body, the consumer
//! subtracts it from its own reading when the delivery reaches it.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[cfg(feature = "amqp")]
mod amqp;
mod link;
mod phase;
mod proc;
mod progress;
mod relay;
mod report;
mod scenarios;
mod sluice_link;
mod target;
mod topology;
mod worker;

/// Messages published by a scenario given neither `--count` nor
/// `--duration` (all but `latency`).
pub(crate) const DEFAULT_COUNT: u64 = 100_000;
/// How long `latency` publishes when given neither `--count` nor
/// `--duration`.
pub(crate) const DEFAULT_LATENCY_SECS: f64 = 10.0;

const LONG_ABOUT: &str = "\
Generate load against a running sluice broker and measure it. Pick a
scenario (listed below); `sluice bench <SCENARIO> --help` explains it and
every flag. All scenarios take the same common flags (--count/--duration,
--size, --persistent, --window, --prefetch, --ack, --pid, --json, ...).

Publishers pipeline up to --window unconfirmed publishes each; a publish
counts once the broker's OK (the publisher confirm) arrives. Consumers
subscribe with --prefetch and, with --ack manual (the default), send one
ACK per message. Every scenario ends when every confirmed message has been
delivered (to every queue, for fanout) and acknowledged; nothing happening
for --timeout seconds ends it with an error instead.

Each run declares its own queues and exchanges (named <queue-prefix>-<pid>-<hex>,
durable with --persistent) and deletes them at the end, also on errors and
on Ctrl-C.

The report gives messages published and confirmed publishes/s, deliveries/s,
acks/s, latency p50/p90/p99/p99.9/max (publish->deliver, measured against a
clock shared by all the clients of this process), the elapsed time and, with
--pid (the broker runs on this machine), the broker's CPU-seconds from
/proc/PID/stat and its peak RSS sampled from /proc/PID/status every 200 ms.
--json prints the same as one JSON object on stdout.

Comparing with RabbitMQ: a sluice built with the amqp feature
(cargo build --release --features amqp) takes --amqp URL and runs queue,
fanout and latency against an AMQP 0-9-1 broker instead, the same way:
publisher confirms with --window in flight, basic.qos --prefetch, one
basic.ack per message (no-ack with --ack auto), durable queues and
delivery-mode 2 with --persistent, the same body timestamp and report.

Example:
  sluice serve --data-dir /tmp/sluice-bench & pid=$!
  sluice bench queue --publishers 2 --consumers 2 --count 200000 --pid $pid
  sluice bench latency --rate 20000 --duration 10 --persistent --pid $pid --json
  sluice bench stream --count 200000 --groups 3 --pid $pid
  sluice bench queue --amqp amqp://guest:guest@127.0.0.1:5672/%2f --count 100000";

/// Generate load against a running broker and report throughput, latency
/// and the broker's resource use (`sluice bench <scenario> [flags]`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench",
    about = "Generate load against a running broker and measure throughput, latency and broker CPU/RSS",
    long_about = LONG_ABOUT,
    subcommand_required = true,
    arg_required_else_help = true,
    subcommand_value_name = "SCENARIO",
    subcommand_help_heading = "Scenarios"
)]
pub(crate) struct BenchArgs {
    /// The load to generate.
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

impl BenchArgs {
    /// The flags every scenario takes.
    pub(crate) fn common(&self) -> &CommonArgs {
        match &self.scenario {
            Scenario::Queue(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Topic(a) => &a.common,
            Scenario::Backlog(a) => &a.common,
            Scenario::Latency(a) => &a.common,
            Scenario::Stream(a) => &a.common,
            Scenario::Tx(a) => &a.common,
            Scenario::Schema(a) => &a.common,
        }
    }
}

/// The benchmark scenarios.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Scenario {
    /// P publishers and C competing consumers on one queue.
    #[command(long_about = "\
P publishers and C competing consumers on one queue.

The publishers publish through the default exchange (routing key = the
queue's name) and split --count between them; the consumers share the
queue's messages round-robin. Reports confirmed publishes/s, deliveries/s,
acks/s and the publish->deliver latency.")]
    Queue(QueueArgs),
    /// 1 publisher, a fanout exchange bound to S queues, one consumer per queue.
    #[command(long_about = "\
1 publisher, a fanout exchange bound to S queues (--queues), one consumer
per queue.

Every message is copied to every queue, so deliveries = messages x S; each
consumer ends once its own queue has delivered every confirmed message.
Reports confirmed publishes/s and deliveries/s over all the queues.")]
    Fanout(FanoutArgs),
    /// 1 publisher, a topic exchange with many bindings, one of which matches.
    #[command(long_about = "\
1 publisher, a topic exchange with --bindings bindings, one matching queue
with a consumer.

All but one binding are non-matching patterns (k.<i>.* and, every tenth,
k.<i>.#) that bind a second queue, which must stay empty; the matching
queue is bound with k.hot.* and the publisher cycles through the routing
keys k.hot.0 .. k.hot.999. Measures the cost of routing through many
bindings. Every confirm must say routed=1.")]
    Topic(TopicArgs),
    /// Publish N with no consumer, then drain with C consumers.
    #[command(long_about = "\
Publish N messages into one queue with no consumer (the publish rate with a
growing backlog), check the queue holds them all, then drain it with C
consumers (the drain rate).

With --pid the broker's CPU time and peak RSS are reported for each phase
(the publish phase's peak RSS is what holding the backlog costs). Latency
is not reported: messages wait in the backlog by design.")]
    Backlog(BacklogArgs),
    /// Publish at a fixed rate and report the latency distribution.
    #[command(long_about = "\
Publish at a fixed rate (--rate msgs/s) for --duration seconds (default 10)
or --count messages, with C consumers acking, and report the
publish->deliver latency distribution: percentiles and a histogram.

Unlike the throughput scenarios the broker is not saturated, so this shows
the latency a steady load sees. A warning says so when the publisher could
not keep up with the rate.")]
    Latency(LatencyArgs),
    /// Append to a stream with a reader at its head, then read it all again with G groups.
    #[command(long_about = "\
Append --count messages to a fresh stream (DECLARE QUEUE <s> type=stream
durable; a stream is always persistent) with one pipelined publisher,
while one reader follows the head (SUB <s> group=head offset=next, taken
before the first publish); then --groups consumer groups read the whole
stream from the start (SUB <s> group=g<i> offset=first), concurrently.

Reports the append rate (confirmed msgs/s, MB/s and the PUB -> OK confirm
latency), the read rate at the head (msgs/s, publish->deliver latency),
and the read rate from old data per group and in all, with, given --pid,
the broker's peak and average RSS while the old data is read. Every
reader must see every offset exactly once and in order (offsets
consecutive, each body's sequence number matching, as many deliveries as
confirmed publishes); the run fails otherwise. Acks (one per delivery, or
none with --ack auto) give prefetch credit back and commit the group's
offset; they remove nothing.")]
    Stream(StreamArgs),
    /// The cost of TX: relay a queue to another with one TX per message.
    #[command(long_about = "\
The cost of TX: --count messages are put into a queue `in`, then --workers
connections relay them to a queue `out`, one delivery at a time
(subscribed with --prefetch), each with TX BEGIN, ACK, PUB, TX COMMIT pipelined and one
wait for the commit; with --plain, a confirmed PUB then an ACK instead.
Deliveries/s is the relay rate: run it both ways and compare.")]
    Tx(TxArgs),
    /// The cost of schema checking: JSON bodies without, then with, schema=.
    #[command(long_about = "\
The cost of checking bodies against a JSON Schema (DECLARE EXCHANGE ...
schema=<subject>): two phases with the same JSON bodies
({\"stamp\":\"<hex>\",\"pad\":\"xx...\"}, --size bytes, at least 53), each
with P publishers and one consumer on a direct exchange bound to one
queue. Phase `plain` publishes to an exchange without a schema, phase
`schema` to one with schema=<subject>, a subject added for the run
(an object with a required string `stamp` matching a 32-hex-digit
pattern and a string `pad`, no other fields). The difference between the
two phases' confirmed publishes/s is the cost of the check: the report's
figures are the `schema` phase's, and a closing line gives the `plain`
phase's rate and the ratio. Measure in a release build.")]
    Schema(SchemaArgs),
}

impl Scenario {
    /// The scenario's name, as typed on the command line.
    // Asked only by `--amqp`'s scenario check (feature `amqp`) and the
    // tests: dead code in a plain build of the binary.
    #[cfg_attr(not(any(feature = "amqp", test)), allow(dead_code))]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Scenario::Queue(_) => "queue",
            Scenario::Fanout(_) => "fanout",
            Scenario::Topic(_) => "topic",
            Scenario::Backlog(_) => "backlog",
            Scenario::Latency(_) => "latency",
            Scenario::Stream(_) => "stream",
            Scenario::Tx(_) => "tx",
            Scenario::Schema(_) => "schema",
        }
    }
}

/// Arguments of `sluice bench tx`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TxArgs {
    /// Relaying connections, competing for the input queue.
    #[arg(long, short = 'W', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) workers: u32,
    /// Relay with a confirmed PUB then an ACK instead of one TX.
    #[arg(long)]
    pub(crate) plain: bool,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench queue`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueueArgs {
    /// Publishing connections; --count is split evenly between them.
    #[arg(long, short = 'P', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) publishers: u32,
    /// Consuming connections, competing for the queue's messages.
    #[arg(long, short = 'C', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) consumers: u32,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench fanout`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// Queues bound to the fanout exchange, each with its own consumer.
    #[arg(long, short = 'S', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) queues: u32,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench topic`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TopicArgs {
    /// Bindings on the topic exchange in all: one matching, the rest not.
    #[arg(long, short = 'B', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) bindings: u32,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench backlog`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BacklogArgs {
    /// Publishing connections for the publish phase; --count is split evenly between them.
    #[arg(long, short = 'P', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) publishers: u32,
    /// Consuming connections for the drain phase.
    #[arg(long, short = 'C', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) consumers: u32,
    /// Publish only: skip the drain and leave the queue and its backlog in
    /// the broker (to measure a restart with it; delete it by hand after).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench latency`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LatencyArgs {
    /// Publish rate, in messages per second (one publisher, paced).
    #[arg(long, short = 'r', default_value_t = 10_000.0, value_parser = parse_rate)]
    pub(crate) rate: f64,
    /// Consuming connections, competing for the queue's messages.
    #[arg(long, short = 'C', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) consumers: u32,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench schema`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SchemaArgs {
    /// Publishing connections in each phase; --count is split evenly between them.
    #[arg(long, short = 'P', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) publishers: u32,
    /// Flags common to every scenario.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Arguments of `sluice bench stream`.
#[derive(Debug, Clone, Args)]
pub(crate) struct StreamArgs {
    /// Consumer groups that read the whole stream from offset=first once
    /// publishing is over, concurrently, one connection each.
    #[arg(long, short = 'G', default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) groups: u32,
    /// Flags common to every scenario (a stream is always persistent:
    /// --transient is refused).
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// How consumers acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AckMode {
    /// `SUB ... ack=manual` and one `ACK <tag>` per delivery.
    Manual,
    /// `SUB ... ack=auto`: acknowledged by the broker once written.
    Auto,
}

impl AckMode {
    /// The `SUB ack=` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AckMode::Manual => "manual",
            AckMode::Auto => "auto",
        }
    }
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Common options")]
pub(crate) struct CommonArgs {
    /// Broker address, as for the other client commands (`--addr` is an
    /// alias, kept for old scripts); a list (a cluster's nodes): the first
    /// [default: SLUICE_SERVER, else SLUICE_ADDR, else 127.0.0.1:5680].
    #[arg(
        short = 's',
        long = "server",
        visible_alias = "addr",
        env = "SLUICE_SERVER",
        value_name = "HOST:PORT"
    )]
    pub(crate) server: Option<String>,
    /// Log every connection in as this user (AUTH), for a broker with users.
    #[arg(long, env = "SLUICE_USER", requires = "password")]
    pub(crate) user: Option<String>,
    /// The password of --user.
    #[arg(long, env = "SLUICE_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<sluice::auth::Secret>,
    /// Measure an AMQP 0-9-1 broker (RabbitMQ) at this URL instead of
    /// sluice at --server, e.g. amqp://guest:guest@127.0.0.1:5672/%2f
    /// (queue, fanout and latency; needs a build with --features amqp).
    #[arg(long, value_name = "URL")]
    pub(crate) amqp: Option<String>,
    /// Messages to publish in all [default: 100000; latency: rate x 10 s].
    #[arg(long, short = 'n', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Publish for this many seconds (e.g. 10, 2.5, 500ms) instead of a
    /// fixed count, then wait until every confirmed message is consumed
    /// [latency's default: 10].
    #[arg(long, short = 'd', value_parser = parse_secs)]
    pub(crate) duration: Option<Duration>,
    /// Body size in bytes, at least 16 (the body starts with the send
    /// timestamp and a sequence number). No short flag: `-s` is --server,
    /// as in every other sluice command.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(16..=16 * 1024 * 1024))]
    pub(crate) size: u64,
    /// Unacknowledged deliveries per consumer (SUB prefetch=).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub(crate) prefetch: u32,
    /// Durable queues and exchanges, persistent messages: each publish is
    /// confirmed after an fsync and each ack removes it from disk.
    #[arg(long, conflicts_with = "transient")]
    pub(crate) persistent: bool,
    /// Non-durable queues and exchanges, transient messages: nothing
    /// touches the disk. This is the default.
    #[arg(long)]
    pub(crate) transient: bool,
    /// On a cluster node: declare the run's queues replicated on N nodes
    /// (`replicas=N`; run the bench against the queue's leader, which
    /// serves its consumers).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=7))]
    pub(crate) replicas: Option<u8>,
    /// Unconfirmed publishes in flight per publisher.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) window: u32,
    /// How consumers acknowledge.
    #[arg(long, value_enum, default_value_t = AckMode::Manual)]
    pub(crate) ack: AckMode,
    /// The broker's process id, when it runs on this machine: report its
    /// CPU-seconds (/proc/PID/stat) and peak RSS (/proc/PID/status,
    /// sampled every 200 ms) over the run.
    #[arg(long, env = "SLUICE_PID")]
    pub(crate) pid: Option<u32>,
    /// Print one JSON object on stdout instead of the text report (and no
    /// progress bar).
    #[arg(long)]
    pub(crate) json: bool,
    /// Start of the names of the queues and exchanges this run declares
    /// (a unique -PID-HEX suffix follows; all are deleted at the end).
    #[arg(long, default_value = "bench", value_parser = parse_prefix)]
    pub(crate) queue_prefix: String,
    /// Fail, with what was reached so far, when nothing is published,
    /// confirmed, delivered or acknowledged for this many seconds.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
    /// Connect over TLS (--server is then the broker's TLS port, e.g.
    /// 127.0.0.1:5681); needs --tls-ca.
    #[arg(long, requires = "tls_ca", conflicts_with = "amqp")]
    pub(crate) tls: bool,
    /// The certificate (a CA, or the server's self-signed one) to trust
    /// for --tls, PEM.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry, for --tls.
    #[arg(long, default_value = "localhost")]
    pub(crate) tls_server_name: String,
}

/// The environment variable `sluice bench` read its address from before it
/// took `--server` and `SLUICE_SERVER` like the other commands; still read
/// (after them), so that old scripts and `.ci/run`'s examples keep working.
const LEGACY_ADDR_ENV: &str = "SLUICE_ADDR";

impl CommonArgs {
    /// The broker's address: `-s/--server` (or `--addr`), else
    /// `SLUICE_SERVER`, else `SLUICE_ADDR`, else the default; of a list, the
    /// first entry.
    pub(crate) fn addr(&self) -> String {
        let legacy = std::env::var(LEGACY_ADDR_ENV).ok();
        first_server(self.server.as_deref().or(legacy.as_deref()))
    }
}

/// The first `HOST:PORT` of `a,b,c` (empty entries skipped), or the
/// default address.
fn first_server(list: Option<&str>) -> String {
    list.into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(sluice::config::DEFAULT_ADDR)
        .to_string()
}

/// Runs the benchmark described by `args` and prints its report on stdout:
/// text, or one JSON object with `--json`. Builds its own Tokio runtime.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let json = args.common().json;
    let report = runtime.block_on(scenarios::run(args))?;
    if json {
        let text = serde_json::to_string(&report).context("encoding the report")?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Parses seconds: `10`, `2.5`, `10s`, `500ms`, `2m`.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected seconds (10, 2.5, 500ms, 2m), got {s:?}"))?;
    let secs = v * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("must be a positive number of seconds, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a positive rate in messages per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected messages per second, got {s:?}"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!(
            "must be a positive number of messages per second, got {s:?}"
        ));
    }
    Ok(v)
}

/// Checks a name prefix against the protocol's name alphabet
/// (`A-Z a-z 0-9 _ . : / -`), leaving room for the run's suffix.
fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "use 1-200 bytes of A-Z a-z 0-9 _ . : / - (queue names), got {s:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        BenchArgs::command().debug_assert();
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_secs("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_secs("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_secs("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_secs("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn defaults_and_conflicts() {
        let a = BenchArgs::try_parse_from(["bench", "queue"]).unwrap();
        let c = a.common();
        assert_eq!(c.size, 100);
        assert_eq!(c.prefetch, 100);
        assert_eq!(c.window, 1000);
        assert_eq!(c.ack, AckMode::Manual);
        assert!(!c.persistent);
        assert!(c.count.is_none() && c.duration.is_none());
        assert!(BenchArgs::try_parse_from(["bench", "queue", "-n", "5", "-d", "1"]).is_err());
        assert!(
            BenchArgs::try_parse_from(["bench", "queue", "--persistent", "--transient"]).is_err()
        );
        assert!(BenchArgs::try_parse_from(["bench", "queue", "--size", "15"]).is_err());
        assert!(BenchArgs::try_parse_from(["bench", "queue", "--queue-prefix", "a b"]).is_err());
        let a = BenchArgs::try_parse_from(["bench", "fanout", "--queues", "8", "--ack", "auto"])
            .unwrap();
        match &a.scenario {
            Scenario::Fanout(f) => assert_eq!(f.queues, 8),
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(a.common().ack, AckMode::Auto);
        assert!(BenchArgs::try_parse_from(["bench", "latency", "--rate", "0"]).is_err());
        let a = BenchArgs::try_parse_from(["bench", "stream", "-n", "10"]).unwrap();
        match &a.scenario {
            Scenario::Stream(st) => assert_eq!(st.groups, 3),
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(a.scenario.name(), "stream");
        assert_eq!(a.common().count, Some(10));
        let a = BenchArgs::try_parse_from(["bench", "tx", "-W", "2", "--plain"]).unwrap();
        assert!(matches!(&a.scenario, Scenario::Tx(t) if t.workers == 2 && t.plain));
        assert_eq!(a.scenario.name(), "tx");
        let a =
            BenchArgs::try_parse_from(["bench", "stream", "--groups", "5", "--pid", "1"]).unwrap();
        assert!(matches!(&a.scenario, Scenario::Stream(st) if st.groups == 5));
        assert_eq!(a.common().pid, Some(1));
        assert!(BenchArgs::try_parse_from(["bench", "stream", "--groups", "0"]).is_err());
        assert!(c.amqp.is_none());
        let a = BenchArgs::try_parse_from(["bench", "queue", "--amqp", "amqp://h/%2f"]).unwrap();
        assert_eq!(a.common().amqp.as_deref(), Some("amqp://h/%2f"));
    }

    #[test]
    fn the_server_is_dash_s_or_server_or_addr_and_size_has_no_short_flag() {
        for flag in ["-s", "--server", "--addr"] {
            let a = BenchArgs::try_parse_from(["bench", "queue", flag, "h:1"]).unwrap();
            assert_eq!(a.common().server.as_deref(), Some("h:1"), "{flag}");
        }
        let a = BenchArgs::try_parse_from(["bench", "queue", "--size", "64"]).unwrap();
        assert_eq!(a.common().size, 64);
        assert_eq!(first_server(Some("a:1,b:2")), "a:1");
        assert_eq!(first_server(Some(" ,b:2")), "b:2");
        assert_eq!(first_server(Some("")), sluice::config::DEFAULT_ADDR);
        assert_eq!(first_server(None), sluice::config::DEFAULT_ADDR);
    }
}
