//! `GET /metrics`: the Prometheus text exposition format, version 0.0.4.
//!
//! Every family has `# HELP` and `# TYPE` lines, then its samples; label
//! values are escaped as the format asks (`\\`, `\"`, `\n`). Counters end
//! in `_total`; the sync latency is a histogram with cumulative buckets
//! ending in `le="+Inf"`, equal to `_count`. Rates are left to PromQL
//! (`rate(sluice_queue_published_total[1m])`); the dashboard gets them
//! from `/api/overview`.

use std::fmt::Write;

use crate::broker::stats::{self, QueueSnapshot};
use crate::broker::Broker;
use crate::store::commit::SYNC_BUCKETS;

/// The whole exposition.
pub(crate) fn render(broker: &Broker) -> String {
    let (b, queues) = stats::snapshot(broker);
    let mut m = Metrics(String::with_capacity(4096 + queues.len() * 1024));
    let per_queue: &[(&str, &str, &str, QueueValue)] = &[
        (
            "sluice_queue_messages",
            "gauge",
            "Messages waiting in the queue (ready and delayed).",
            |q| q.messages,
        ),
        (
            "sluice_queue_messages_unacked",
            "gauge",
            "Deliveries not yet acknowledged.",
            |q| q.unacked,
        ),
        (
            "sluice_queue_consumers",
            "gauge",
            "Subscriptions on the queue.",
            |q| q.consumers,
        ),
        (
            "sluice_queue_published_total",
            "counter",
            "Messages that entered the queue.",
            |q| q.published,
        ),
        (
            "sluice_queue_delivered_total",
            "counter",
            "Deliveries from the queue, redeliveries included.",
            |q| q.delivered,
        ),
        (
            "sluice_queue_acked_total",
            "counter",
            "Deliveries acknowledged.",
            |q| q.acked,
        ),
        (
            "sluice_queue_requeued_total",
            "counter",
            "Deliveries that went back to the queue.",
            |q| q.requeued,
        ),
        (
            "sluice_queue_store_read_errors_total",
            "counter",
            "Reads of the queue's messages back from the store that failed (a damaged segment): those messages, and the ones behind them, are not delivered.",
            |q| q.store_read_errors,
        ),
    ];
    for (name, kind, help, value) in per_queue {
        m.family(name, kind, help);
        for q in &queues {
            m.sample(name, &[("queue", &q.name)], value(q));
        }
    }
    let replicated: Vec<_> = queues
        .iter()
        .filter_map(|q| Some((q, q.replica.as_ref()?)))
        .collect();
    if !replicated.is_empty() {
        let name = "sluice_queue_replica_leader";
        m.family(
            name,
            "gauge",
            "A replicated queue's leader, as this node sees it (absent while there is none).",
        );
        for (q, r) in &replicated {
            if let Some(l) = r.leader {
                m.sample(name, &[("queue", &q.name)], l);
            }
        }
        let lags: Vec<(&str, String, u64)> = replicated
            .iter()
            .flat_map(|(q, r)| {
                r.lag
                    .iter()
                    .map(|(p, l)| (q.name.as_str(), p.to_string(), *l))
            })
            .collect();
        lag_family(
            &mut m,
            "sluice_queue_replication_lag",
            "On a replicated queue's leader: how many log entries each member is behind it.",
            "queue",
            &lags,
        );
    }
    let name = "sluice_queue_dead_lettered_total";
    m.family(
        name,
        "counter",
        "Messages that died in the queue (dead-lettered, or dropped without a dead-letter exchange), by reason.",
    );
    for q in &queues {
        for (reason, n) in q.dead_by_reason.pairs() {
            m.sample(name, &[("queue", &q.name), ("reason", reason.as_str())], n);
        }
    }
    let name = "sluice_queue_oldest_message_age_seconds";
    m.family(
        name,
        "gauge",
        "Age of the queue's oldest waiting message (0 when empty; a lower bound for messages read back from disk).",
    );
    for q in &queues {
        let age = q.oldest_age_ms.unwrap_or(0) as f64 / 1000.0;
        m.sample_f(name, &[("queue", &q.name)], age);
    }
    groups(&mut m, broker);
    let name = "sluice_schema_rejections_total";
    m.family(
        name,
        "counter",
        "PUBs refused by a schema (ERR SCHEMA: not JSON, or not valid), by exchange declared with schema=, and by queue declared with schema= (exchange=\"\", the default exchange's check).",
    );
    for ex in broker.exchange_list() {
        if ex.schema.is_some() {
            let n = ex
                .schema_rejections
                .load(std::sync::atomic::Ordering::Relaxed);
            m.sample(name, &[("exchange", &ex.name)], n);
        }
    }
    for q in broker.queue_list() {
        if q.args.schema.is_some() {
            let n = q
                .counters
                .schema_rejections
                .load(std::sync::atomic::Ordering::Relaxed);
            m.sample(name, &[("exchange", ""), ("queue", &q.name)], n);
        }
    }
    let broker_wide: &[(&str, &str, &str, Option<u64>)] = &[
        (
            "sluice_connections",
            "gauge",
            "Client connections open.",
            Some(b.connections),
        ),
        (
            "sluice_connections_opened_total",
            "counter",
            "Client connections accepted.",
            Some(b.connections_opened),
        ),
        ("sluice_queues", "gauge", "Queues declared.", Some(b.queues)),
        (
            "sluice_published_total",
            "counter",
            "Messages published (one per PUB, whatever it was routed to).",
            Some(b.published),
        ),
        (
            "sluice_delivered_total",
            "counter",
            "Deliveries, all queues.",
            Some(b.delivered),
        ),
        (
            "sluice_acked_total",
            "counter",
            "Acknowledgements, all queues.",
            Some(b.acked),
        ),
        (
            "sluice_memory_rss_bytes",
            "gauge",
            "Resident memory of the broker process.",
            b.memory_rss_bytes,
        ),
        (
            "sluice_disk_free_bytes",
            "gauge",
            "Free space on the data directory's file system.",
            b.disk_free_bytes,
        ),
        (
            "sluice_store_size_bytes",
            "gauge",
            "The store's size on disk.",
            b.store_size_bytes,
        ),
        (
            "sluice_uptime_seconds",
            "gauge",
            "Seconds since the broker started.",
            Some(b.uptime_seconds),
        ),
    ];
    for (name, kind, help, value) in broker_wide {
        if let Some(v) = value {
            m.family(name, kind, help);
            m.sample(name, &[], *v);
        }
    }
    if let Some(c) = broker.cluster_status() {
        let node = c.node_id.to_string();
        let cluster: [(&str, &str, &str, Option<u64>); 5] = [
            (
                "sluice_cluster_term",
                "gauge",
                "The cluster metadata group's current term, as this node sees it.",
                Some(c.term),
            ),
            (
                "sluice_cluster_leader",
                "gauge",
                "The id of the metadata group's leader (absent while there is none).",
                c.leader,
            ),
            (
                "sluice_cluster_is_leader",
                "gauge",
                "1 when this node leads the metadata group, else 0.",
                Some(u64::from(c.state == "leader")),
            ),
            (
                "sluice_cluster_last_log_index",
                "gauge",
                "The last index in this node's metadata log.",
                c.last_log_index,
            ),
            (
                "sluice_cluster_last_applied",
                "gauge",
                "The last index this node applied.",
                c.last_applied,
            ),
        ];
        for (name, kind, help, value) in cluster {
            if let Some(v) = value {
                m.family(name, kind, help);
                m.sample(name, &[("node", &node)], v);
            }
        }
        let last = c.last_log_index.unwrap_or(0);
        let lags: Vec<(&str, String, u64)> = c
            .nodes
            .iter()
            .filter_map(|n| {
                let lag = last.saturating_sub(n.matched?);
                Some((node.as_str(), n.id.to_string(), lag))
            })
            .collect();
        lag_family(
            &mut m,
            "sluice_cluster_replication_lag",
            "On the metadata group's leader: how many log entries each node is behind it.",
            "node",
            &lags,
        );
    }
    let name = "sluice_fsync_duration_seconds";
    m.family(
        name,
        "histogram",
        "How long the store's group-commit syncs (fsync) take.",
    );
    let (cumulative, sum) = broker.committer().sync_latency().snapshot();
    let bucket = format!("{name}_bucket");
    for (le, n) in SYNC_BUCKETS.iter().zip(&cumulative) {
        m.sample(&bucket, &[("le", &le.to_string())], *n);
    }
    let count = cumulative.last().copied().unwrap_or(0);
    m.sample(&bucket, &[("le", "+Inf")], count);
    m.sample_f(&format!("{name}_sum"), &[], sum);
    m.sample(&format!("{name}_count"), &[], count);
    m.0
}

/// Streams' last offsets and their consumer groups' positions and lag,
/// labelled as Kafka exporters label them: `stream` (a partitioned
/// stream's name for each of its partitions) and `partition` (0 for a
/// stream without partitions), and `group`.
fn groups(m: &mut Metrics, broker: &Broker) {
    let mut streams = Vec::new();
    for q in broker.queue_list() {
        let Some(view) = q.stream_view() else {
            continue;
        };
        let partition = q.partition.unwrap_or(0).to_string();
        let name = match q.partition {
            Some(i) => q
                .name
                .strip_suffix(&format!("-{i}"))
                .unwrap_or(&q.name)
                .to_string(),
            None => q.name.to_string(),
        };
        streams.push((name, partition, view));
    }
    if streams.is_empty() {
        return;
    }
    let name = "sluice_stream_last_offset";
    m.family(
        name,
        "gauge",
        "A stream's newest offset (0 before its first message).",
    );
    for (stream, partition, v) in &streams {
        let labels = [
            ("stream", stream.as_str()),
            ("partition", partition.as_str()),
        ];
        m.sample(name, &labels, v.end.saturating_sub(1));
    }
    type GroupValue = fn(&crate::broker::queue::GroupView) -> f64;
    let per_group: [(&str, &str, GroupValue); 5] = [
        (
            "sluice_group_committed_offset",
            "A consumer group's committed offset: the lowest offset it has not finished, where a member resumes.",
            |g| g.committed as f64,
        ),
        (
            "sluice_group_lag_messages",
            "Messages from a consumer group's committed offset to the end of the stream.",
            |g| g.lag as f64,
        ),
        (
            "sluice_group_lag_seconds",
            "Age of the oldest message a consumer group has not finished (0 when caught up).",
            |g| g.lag_ms as f64 / 1000.0,
        ),
        (
            "sluice_group_in_flight",
            "A consumer group's deliveries not yet acknowledged.",
            |g| g.in_flight as f64,
        ),
        (
            "sluice_group_members",
            "A consumer group's subscriptions.",
            |g| g.members.len() as f64,
        ),
    ];
    for (name, help, value) in per_group {
        m.family(name, "gauge", help);
        for (stream, partition, v) in &streams {
            for g in &v.groups {
                let labels = [
                    ("stream", stream.as_str()),
                    ("group", g.name.as_str()),
                    ("partition", partition.as_str()),
                ];
                m.sample_f(name, &labels, value(g));
            }
        }
    }
    let name = "sluice_group_active_member";
    m.family(
        name,
        "gauge",
        "1 for the subscription (consumer tag) a consumer group delivers to, per partition; absent while it has none.",
    );
    for (stream, partition, v) in &streams {
        for g in &v.groups {
            if let Some(tag) = &g.active {
                let labels = [
                    ("stream", stream.as_str()),
                    ("group", g.name.as_str()),
                    ("partition", partition.as_str()),
                    ("consumer", tag.as_str()),
                ];
                m.sample(name, &labels, 1);
            }
        }
    }
}

/// Reads one per-queue metric's value from a snapshot.
type QueueValue = fn(&QueueSnapshot) -> u64;

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
        }
        self.0.push('}');
    }
}

/// A label value: backslash, double quote and line feed escaped.
pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A help text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A gauge family of replication lags, one sample per (`by`, peer): none
/// at all when there is no sample (only a leader knows lags).
fn lag_family(m: &mut Metrics, name: &str, help: &str, by: &str, lags: &[(&str, String, u64)]) {
    if lags.is_empty() {
        return;
    }
    m.family(name, "gauge", help);
    for (of, peer, lag) in lags {
        m.sample(name, &[(by, of), ("peer", peer)], *lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut m = Metrics(String::new());
        m.sample("x_total", &[("queue", "q\"1"), ("reason", "expired")], 3);
        assert_eq!(m.0, "x_total{queue=\"q\\\"1\",reason=\"expired\"} 3\n");
    }
}
