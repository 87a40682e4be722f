//! The benchmark's results: latency percentiles and histogram
//! ([`LatencyStats`]), throughputs, the broker's resource use, and the
//! [`Report`] that holds them, printed as text ([`Report::to_text`]) or
//! serialised as one JSON object (`--json`, via `serde`).

use std::fmt::Write as _;

use serde::Serialize;

use super::proc::BrokerUsage;

/// Upper bounds of the latency histogram's buckets, in microseconds (a
/// last bucket takes everything above).
const BUCKETS_US: [f64; 12] = [
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    1_000_000.0,
];

/// The value at quantile `q` (0..=1) of `sorted` (ascending), by the
/// nearest-rank method: the smallest sample with at least `q` of the
/// samples at or below it. `None` when empty.
pub(crate) fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // The epsilon keeps float error (0.7 * 100 = 70.00000000000001) from
    // moving the rank up by one.
    let rank = (q.clamp(0.0, 1.0) * n as f64 - 1e-9).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// How the run was configured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// The kind of broker: `sluice`, or `amqp` (`--amqp`).
    pub(crate) target: &'static str,
    /// Broker address (an AMQP URL without its password).
    pub(crate) addr: String,
    /// Messages asked for (`--count`), if any.
    pub(crate) count: Option<u64>,
    /// Publishing time asked for (`--duration`), if any.
    pub(crate) duration_secs: Option<f64>,
    /// Target publish rate (`latency`).
    pub(crate) rate: Option<f64>,
    /// Body bytes.
    pub(crate) size: u64,
    /// Durable queues and persistent messages.
    pub(crate) persistent: bool,
    /// Publishing connections.
    pub(crate) publishers: u32,
    /// Consuming connections.
    pub(crate) consumers: u32,
    /// Queues (fanout: bound to the exchange).
    pub(crate) queues: u32,
    /// Bindings on the topic exchange (`topic`).
    pub(crate) bindings: Option<u32>,
    /// Unconfirmed publishes in flight per publisher.
    pub(crate) window: u32,
    /// `SUB prefetch=`.
    pub(crate) prefetch: u32,
    /// `manual` or `auto`.
    pub(crate) ack: &'static str,
}

/// A count of events over a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Throughput {
    /// Events.
    pub(crate) count: u64,
    /// Seconds from the start of the phase to the last event.
    pub(crate) secs: f64,
    /// `count / secs`.
    pub(crate) per_sec: f64,
}

impl Throughput {
    /// `count` events in `secs` seconds.
    pub(crate) fn new(count: u64, secs: f64) -> Throughput {
        let per_sec = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        Throughput {
            count,
            secs,
            per_sec,
        }
    }
}

/// One bucket of the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Bucket {
    /// Upper bound (inclusive) in microseconds; `null` for the last bucket.
    pub(crate) le_us: Option<f64>,
    /// Samples in the bucket.
    pub(crate) count: u64,
}

/// The publish→deliver latency distribution, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LatencyStats {
    /// Samples (deliveries).
    pub(crate) samples: u64,
    /// Smallest.
    pub(crate) min_us: f64,
    /// Mean.
    pub(crate) mean_us: f64,
    /// Median.
    pub(crate) p50_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
    /// Samples per bucket.
    pub(crate) histogram: Vec<Bucket>,
}

impl LatencyStats {
    /// Statistics of `samples_ns` (nanoseconds, any order); `None` when empty.
    pub(crate) fn from_ns(mut samples_ns: Vec<u64>) -> Option<LatencyStats> {
        samples_ns.sort_unstable();
        let us = |q: f64| percentile(&samples_ns, q).map(|ns| ns as f64 / 1000.0);
        let sum: u128 = samples_ns.iter().map(|&v| u128::from(v)).sum();
        let n = samples_ns.len();
        let mut histogram: Vec<Bucket> = BUCKETS_US
            .iter()
            .map(|&le| Bucket {
                le_us: Some(le),
                count: 0,
            })
            .chain(std::iter::once(Bucket {
                le_us: None,
                count: 0,
            }))
            .collect();
        for &ns in &samples_ns {
            let v = ns as f64 / 1000.0;
            let i = BUCKETS_US
                .iter()
                .position(|&le| v <= le)
                .unwrap_or(BUCKETS_US.len());
            if let Some(b) = histogram.get_mut(i) {
                b.count += 1;
            }
        }
        Some(LatencyStats {
            samples: n as u64,
            min_us: us(0.0)?,
            mean_us: sum as f64 / n as f64 / 1000.0,
            p50_us: us(0.50)?,
            p90_us: us(0.90)?,
            p99_us: us(0.99)?,
            p999_us: us(0.999)?,
            max_us: us(1.0)?,
            histogram,
        })
    }
}

/// A throughput of messages of a known size: also in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Rate {
    /// Messages, seconds, messages per second.
    #[serde(flatten)]
    pub(crate) msgs: Throughput,
    /// Body bytes per second.
    pub(crate) bytes_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second.
    pub(crate) mb_per_sec: f64,
}

impl Rate {
    /// `msgs` of `size`-byte bodies.
    pub(crate) fn new(msgs: Throughput, size: u64) -> Rate {
        let bytes_per_sec = msgs.per_sec * size as f64;
        Rate {
            msgs,
            bytes_per_sec,
            mb_per_sec: bytes_per_sec / 1e6,
        }
    }
}

/// What one stream reader (a consumer group) read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GroupRead {
    /// `SUB group=`.
    pub(crate) group: String,
    /// `SUB offset=`: `next` (the head reader) or `first`.
    pub(crate) start: &'static str,
    /// Deliveries, from the start of its phase to its last delivery.
    pub(crate) read: Rate,
    /// The first offset it read.
    pub(crate) first_offset: Option<u64>,
    /// The last offset it read.
    pub(crate) last_offset: Option<u64>,
}

/// What `sluice bench stream` measured besides the common figures (whose
/// `published` is the append, `delivered` and `acked` the old-data read of
/// every group together, and `latency` the head reader's).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StreamReport {
    /// The stream's name.
    pub(crate) stream: String,
    /// Consumer groups that read the old data.
    pub(crate) groups: u32,
    /// Messages the stream held after publishing (`DECLARE`'s `messages=`).
    pub(crate) messages: Option<u64>,
    /// Confirmed appends.
    pub(crate) append: Rate,
    /// `PUB` written -> `OK` read, with --window in flight.
    pub(crate) confirm_latency: Option<LatencyStats>,
    /// The reader at the head (`group=head offset=next`) while appending.
    pub(crate) head: GroupRead,
    /// Each group reading the whole stream (`offset=first`) afterwards.
    pub(crate) old_data: Vec<GroupRead>,
    /// Every group's old-data reads together.
    pub(crate) old_data_total: Rate,
    /// The broker while the old data was read (with `--pid`).
    pub(crate) old_data_broker: Option<BrokerUsage>,
    /// Every reader saw every offset once, in order (else the run fails).
    pub(crate) verified: bool,
}

/// The broker's use of one phase of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrokerPhase {
    /// `run`, or `publish` / `drain` (backlog).
    pub(crate) phase: &'static str,
    /// What it used.
    #[serde(flatten)]
    pub(crate) usage: BrokerUsage,
}

/// The broker's resource use (with `--pid`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrokerReport {
    /// The broker's process id.
    pub(crate) pid: u32,
    /// Over the whole run.
    pub(crate) total: BrokerUsage,
    /// Per phase.
    pub(crate) phases: Vec<BrokerPhase>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `queue`, `fanout`, `topic`, `backlog` or `latency`.
    pub(crate) scenario: &'static str,
    /// How it was configured.
    pub(crate) settings: Settings,
    /// Confirmed publishes, over the publishing time.
    pub(crate) published: Throughput,
    /// Deliveries over every queue (fanout: messages × queues).
    pub(crate) delivered: Throughput,
    /// Acknowledgements answered `OK` (`null` with `--ack auto`).
    pub(crate) acked: Option<Throughput>,
    /// Ready messages in the queue after the publish phase (`backlog`).
    pub(crate) backlog: Option<u64>,
    /// Publish→deliver latency (`null` for `backlog`).
    pub(crate) latency: Option<LatencyStats>,
    /// From the first publish to the last ack, in seconds.
    pub(crate) elapsed_secs: f64,
    /// The broker's CPU and memory (`null` without `--pid`).
    pub(crate) broker: Option<BrokerReport>,
    /// The stream scenario's own figures (`null` for the others).
    pub(crate) stream: Option<StreamReport>,
    /// Anything odd seen during the run.
    pub(crate) warnings: Vec<String>,
}

/// `1234567` → `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in microseconds, in a readable unit.
pub(crate) fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Bytes in MiB.
pub(crate) fn fmt_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", group(n), if n == 1 { one } else { many })
}

fn throughput_line(name: &str, t: &Throughput, what: &str, note: &str) -> String {
    format!(
        "  {name:<10} {:>12} {what} in {:>6.2} s  {:>10} {what}/s{note}\n",
        group(t.count),
        t.secs,
        group(t.per_sec.round() as u64),
    )
}

fn rate_line(name: &str, r: &Rate, note: &str) -> String {
    throughput_line(
        name,
        &r.msgs,
        "msgs",
        &format!("  {:>7.2} MB/s{note}", r.mb_per_sec),
    )
}

fn latency_lines(out: &mut String, name: &str, l: &LatencyStats, what: &str) {
    let _ = writeln!(
        out,
        "  {:<10} p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
        name,
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us)
    );
    let _ = writeln!(
        out,
        "  {:<10} min {}   mean {}   ({} samples, {what})",
        "",
        fmt_us(l.min_us),
        fmt_us(l.mean_us),
        group(l.samples)
    );
}

/// `first..=last` offsets, grouped.
fn offsets(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => format!("offsets {}..={}", group(f), group(l)),
        _ => "no offsets".to_string(),
    }
}

fn usage_line(u: &BrokerUsage) -> String {
    format!(
        "{:.2} CPU-s ({:.0}% of a core), peak RSS {} (avg {}, start {}, end {})",
        u.cpu_secs,
        u.cpu_percent,
        fmt_mib(u.peak_rss_bytes),
        fmt_mib(u.avg_rss_bytes),
        fmt_mib(u.start_rss_bytes),
        fmt_mib(u.end_rss_bytes)
    )
}

impl Report {
    /// The human-readable report.
    pub(crate) fn to_text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let amount = match (s.count, s.duration_secs) {
            (_, Some(d)) => format!("publishing for {d} s, msgs of"),
            (Some(n), None) => format!("{} msgs x", group(n)),
            (None, None) => "msgs x".to_string(),
        };
        match s.target {
            "sluice" => {
                let _ = writeln!(out, "sluice bench {} ({})", self.scenario, s.addr);
            }
            other => {
                let _ = writeln!(out, "sluice bench {} ({other}: {})", self.scenario, s.addr);
            }
        }
        if let Some(st) = &self.stream {
            self.stream_text(&mut out, st, &amount);
        } else {
            self.queue_text(&mut out, &amount);
        }
        let _ = writeln!(out, "  {:<10} {:.2} s", "elapsed", self.elapsed_secs);
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "  {:<10} pid {}: {}",
                "broker",
                b.pid,
                usage_line(&b.total)
            );
            if b.phases.len() > 1 {
                for p in &b.phases {
                    let _ = writeln!(
                        out,
                        "  {:<10}   {:<8} {}",
                        "",
                        format!("{}:", p.phase),
                        usage_line(&p.usage)
                    );
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        out
    }

    /// The body of the report of the scenarios on queues.
    fn queue_text(&self, out: &mut String, amount: &str) {
        let s = &self.settings;
        let mut shape = format!(
            "  {amount} {} B, {}, {} (window {})",
            s.size,
            if s.persistent {
                "persistent"
            } else {
                "transient"
            },
            plural(u64::from(s.publishers), "publisher", "publishers"),
            s.window
        );
        if let Some(rate) = s.rate {
            let _ = write!(shape, " at {} msgs/s", group(rate.round() as u64));
        }
        if let Some(b) = s.bindings {
            let _ = write!(shape, ", {}", plural(u64::from(b), "binding", "bindings"));
        }
        if s.queues > 1 {
            let _ = write!(shape, ", {} queues", s.queues);
        }
        let _ = writeln!(
            shape,
            ", {} (prefetch {}, ack {})",
            plural(u64::from(s.consumers), "consumer", "consumers"),
            s.prefetch,
            s.ack
        );
        out.push_str(&shape);
        out.push('\n');

        let backlog = self.scenario == "backlog";
        out.push_str(&throughput_line(
            "published",
            &self.published,
            "msgs",
            if backlog {
                "  (confirmed, no consumer)"
            } else {
                "  (confirmed)"
            },
        ));
        if let Some(b) = self.backlog {
            let _ = writeln!(
                out,
                "  {:<10} {:>12} msgs in the queue",
                "backlog",
                group(b)
            );
        }
        let delivered_note = if self.scenario == "fanout" && s.queues > 0 {
            format!(
                "  ({} msgs x {} queues)",
                group(self.delivered.count / u64::from(s.queues)),
                s.queues
            )
        } else if backlog {
            "  (drain)".to_string()
        } else {
            String::new()
        };
        out.push_str(&throughput_line(
            "delivered",
            &self.delivered,
            "msgs",
            &delivered_note,
        ));
        match &self.acked {
            Some(a) => out.push_str(&throughput_line("acked", a, "msgs", "")),
            None => {
                let _ = writeln!(out, "  {:<10} {:>12}", "acked", "(ack=auto)");
            }
        }
        if let Some(l) = &self.latency {
            latency_lines(out, "latency", l, "publish -> deliver");
            if self.scenario == "latency" {
                out.push_str(&histogram_text(l));
            }
        }
    }

    /// The body of the stream scenario's report.
    fn stream_text(&self, out: &mut String, st: &StreamReport, amount: &str) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "  {amount} {} B, stream (persistent), 1 publisher (window {}), a head reader + {} (prefetch {}, ack {})",
            s.size,
            s.window,
            plural(u64::from(st.groups), "group", "groups"),
            s.prefetch,
            s.ack
        );
        out.push('\n');
        out.push_str(&rate_line("append", &st.append, "  (confirmed)"));
        if let Some(m) = st.messages {
            let _ = writeln!(
                out,
                "  {:<10} {:>12} msgs in the stream",
                "stored",
                group(m)
            );
        }
        if let Some(l) = &st.confirm_latency {
            latency_lines(out, "confirm", l, "PUB -> OK");
        }
        let head_note = format!(
            "  (group {}, offset={}, {})",
            st.head.group,
            st.head.start,
            offsets(st.head.first_offset, st.head.last_offset)
        );
        out.push_str(&rate_line("head read", &st.head.read, &head_note));
        if let Some(l) = &self.latency {
            latency_lines(out, "latency", l, "publish -> deliver at the head");
        }
        let total_note = format!(
            "  ({} from offset=first, together)",
            plural(u64::from(st.groups), "group", "groups")
        );
        out.push_str(&rate_line("old data", &st.old_data_total, &total_note));
        for g in &st.old_data {
            let note = format!("  ({})", offsets(g.first_offset, g.last_offset));
            out.push_str(&rate_line(&format!("  {}", g.group), &g.read, &note));
        }
        if let Some(u) = &st.old_data_broker {
            let _ = writeln!(
                out,
                "  {:<10} peak {}, avg {} while reading old data ({} samples; start {}, end {})",
                "broker RSS",
                fmt_mib(u.peak_rss_bytes),
                fmt_mib(u.avg_rss_bytes),
                group(u.rss_samples),
                fmt_mib(u.start_rss_bytes),
                fmt_mib(u.end_rss_bytes)
            );
        }
        if st.verified {
            let _ = writeln!(
                out,
                "  {:<10} every reader saw every offset once, in order",
                "checked"
            );
        }
    }
}

fn histogram_text(l: &LatencyStats) -> String {
    let mut out = String::new();
    let total = l.samples.max(1) as f64;
    let mut cumulative = 0u64;
    let mut lower = 0.0;
    for b in &l.histogram {
        cumulative += b.count;
        let label = match b.le_us {
            Some(le) => format!("{:>9} .. {:<9}", fmt_us(lower), fmt_us(le)),
            None => format!("{:>9} .. {:<9}", fmt_us(lower), ""),
        };
        if let Some(le) = b.le_us {
            lower = le;
        }
        if b.count == 0 {
            continue;
        }
        let share = b.count as f64 / total;
        let bar = "#".repeat((share * 40.0).round() as usize);
        let _ = writeln!(
            out,
            "  {:<10} {label} {:>10} {:>6.2}% {:>7.2}% {bar}",
            "",
            group(b.count),
            100.0 * share,
            100.0 * cumulative as f64 / total
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.9), Some(90));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.7), Some(70));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[1, 2], 0.5), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn latency_stats_and_histogram() {
        // 1000 samples: 1 µs .. 1000 µs, given in reverse order.
        let ns: Vec<u64> = (1..=1000).rev().map(|us| us * 1000).collect();
        let l = LatencyStats::from_ns(ns).unwrap();
        assert_eq!(l.samples, 1000);
        assert_eq!(l.min_us, 1.0);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p90_us, 900.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(l.max_us, 1000.0);
        assert_eq!(l.mean_us, 500.5);
        let counts: Vec<u64> = l.histogram.iter().map(|b| b.count).collect();
        assert_eq!(&counts[..5], &[100, 150, 250, 500, 0]);
        assert_eq!(counts.iter().sum::<u64>(), 1000);
        assert_eq!(l.histogram.last().unwrap().le_us, None);
        assert!(LatencyStats::from_ns(Vec::new()).is_none());
    }

    #[test]
    fn grouping_and_units() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(1_500.0), "1.50 ms");
        assert_eq!(fmt_us(2_000_000.0), "2.00 s");
        assert_eq!(fmt_mib(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    fn sample() -> Report {
        let usage = BrokerUsage {
            secs: 2.0,
            cpu_secs: 1.0,
            cpu_percent: 50.0,
            start_rss_bytes: 1 << 20,
            peak_rss_bytes: 4 << 20,
            avg_rss_bytes: 3 << 20,
            rss_samples: 10,
            end_rss_bytes: 2 << 20,
        };
        Report {
            scenario: "fanout",
            settings: Settings {
                target: "sluice",
                addr: "127.0.0.1:5680".into(),
                count: Some(1000),
                duration_secs: None,
                rate: None,
                size: 100,
                persistent: false,
                publishers: 1,
                consumers: 4,
                queues: 4,
                bindings: None,
                window: 1000,
                prefetch: 100,
                ack: "manual",
            },
            published: Throughput::new(1000, 0.5),
            delivered: Throughput::new(4000, 1.0),
            acked: Some(Throughput::new(4000, 1.0)),
            backlog: None,
            latency: LatencyStats::from_ns(vec![1_000, 2_000, 3_000]),
            elapsed_secs: 1.1,
            broker: Some(BrokerReport {
                pid: 42,
                total: usage,
                phases: vec![BrokerPhase {
                    phase: "run",
                    usage,
                }],
            }),
            stream: None,
            warnings: vec![],
        }
    }

    fn stream_sample() -> Report {
        let mut r = sample();
        r.scenario = "stream";
        r.settings.queues = 1;
        r.settings.consumers = 3;
        r.settings.persistent = true;
        let read = |group: &str, start, n, secs| GroupRead {
            group: group.into(),
            start,
            read: Rate::new(Throughput::new(n, secs), 100),
            first_offset: Some(0),
            last_offset: Some(n - 1),
        };
        r.stream = Some(StreamReport {
            stream: "bench-1-abc-stream".into(),
            groups: 2,
            messages: Some(1000),
            append: Rate::new(Throughput::new(1000, 0.5), 100),
            confirm_latency: LatencyStats::from_ns(vec![10_000, 20_000, 30_000]),
            head: read("head", "next", 1000, 0.5),
            old_data: vec![
                read("g1", "first", 1000, 0.25),
                read("g2", "first", 1000, 0.5),
            ],
            old_data_total: Rate::new(Throughput::new(2000, 0.5), 100),
            old_data_broker: r.broker.as_ref().map(|b| b.total),
            verified: true,
        });
        r
    }

    #[test]
    fn rates_in_bytes() {
        let r = Rate::new(Throughput::new(1000, 0.5), 100);
        assert_eq!(r.msgs.per_sec, 2000.0);
        assert_eq!(r.bytes_per_sec, 200_000.0);
        assert_eq!(r.mb_per_sec, 0.2);
        assert_eq!(Rate::new(Throughput::new(5, 0.0), 100).mb_per_sec, 0.0);
    }

    #[test]
    fn stream_report_text_and_json() {
        let t = stream_sample().to_text();
        for needle in [
            "sluice bench stream (127.0.0.1:5680)",
            "1,000 msgs x 100 B, stream (persistent), 1 publisher (window 1000), a head reader + 2 groups",
            "append",
            "2,000 msgs/s     0.20 MB/s  (confirmed)",
            "confirm    p50 20 µs",
            "(3 samples, PUB -> OK)",
            "head read",
            "(group head, offset=next, offsets 0..=999)",
            "publish -> deliver at the head",
            "old data",
            "(2 groups from offset=first, together)",
            "    g1",
            "4,000 msgs/s",
            "broker RSS peak 4.0 MiB, avg 3.0 MiB while reading old data (10 samples",
            "every reader saw every offset once, in order",
            "elapsed",
        ] {
            assert!(t.contains(needle), "{needle:?} not in\n{t}");
        }
        assert!(!t.contains("(1,000 msgs x 4 queues)"), "{t}");
        let v = serde_json::to_value(stream_sample()).unwrap();
        let st = &v["stream"];
        assert_eq!(st["groups"], 2);
        assert_eq!(st["append"]["per_sec"], 2000.0);
        assert_eq!(st["append"]["count"], 1000);
        assert_eq!(st["append"]["mb_per_sec"], 0.2);
        assert_eq!(st["confirm_latency"]["p50_us"], 20.0);
        assert_eq!(st["head"]["group"], "head");
        assert_eq!(st["head"]["start"], "next");
        assert_eq!(st["head"]["read"]["per_sec"], 2000.0);
        assert_eq!(st["old_data"][1]["group"], "g2");
        assert_eq!(st["old_data"][0]["last_offset"], 999);
        assert_eq!(st["old_data_total"]["count"], 2000);
        assert_eq!(st["old_data_broker"]["avg_rss_bytes"], 3 << 20);
        assert_eq!(st["verified"], true);
        assert_eq!(
            serde_json::to_value(sample()).unwrap()["stream"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "scenario",
            "settings",
            "published",
            "delivered",
            "acked",
            "backlog",
            "latency",
            "elapsed_secs",
            "broker",
            "stream",
            "warnings",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        assert_eq!(v["scenario"], "fanout");
        assert_eq!(v["published"]["count"], 1000);
        assert_eq!(v["published"]["per_sec"], 2000.0);
        assert_eq!(v["delivered"]["per_sec"], 4000.0);
        assert_eq!(v["settings"]["ack"], "manual");
        assert_eq!(v["settings"]["target"], "sluice");
        assert_eq!(v["settings"]["duration_secs"], serde_json::Value::Null);
        assert_eq!(v["latency"]["p50_us"], 2.0);
        assert_eq!(v["latency"]["histogram"][0]["le_us"], 100.0);
        assert_eq!(
            v["latency"]["histogram"][12]["le_us"],
            serde_json::Value::Null
        );
        assert_eq!(v["broker"]["pid"], 42);
        assert_eq!(v["broker"]["total"]["cpu_secs"], 1.0);
        assert_eq!(v["broker"]["total"]["peak_rss_bytes"], 4 << 20);
        assert_eq!(v["broker"]["phases"][0]["phase"], "run");
        assert_eq!(v["broker"]["phases"][0]["cpu_percent"], 50.0);
        // One line, as --json prints it.
        assert!(!serde_json::to_string(&sample()).unwrap().contains('\n'));
    }

    #[test]
    fn text_mentions_every_figure() {
        let t = sample().to_text();
        for needle in [
            "sluice bench fanout",
            "published",
            "2,000 msgs/s",
            "4,000 msgs/s",
            "(1,000 msgs x 4 queues)",
            "p50 2 µs",
            "p99",
            "elapsed",
            "pid 42: 1.00 CPU-s (50% of a core), peak RSS 4.0 MiB (avg 3.0 MiB,",
        ] {
            assert!(t.contains(needle), "{needle:?} not in\n{t}");
        }
        let mut r = sample();
        r.settings.target = "amqp";
        r.settings.addr = "amqp://guest:***@127.0.0.1:5672/%2f".into();
        assert!(r
            .to_text()
            .starts_with("sluice bench fanout (amqp: amqp://guest:***@127.0.0.1:5672/%2f)\n"));
        r.acked = None;
        r.broker = None;
        r.latency = None;
        let t = r.to_text();
        assert!(t.contains("(ack=auto)"));
        assert!(!t.contains("broker"));
    }
}
