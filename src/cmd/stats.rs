//! `STATS` and `STATS QUEUE <name>`: the broker's totals, or one queue's,
//! as a literal of `key value` lines. See protocol.md, "STATS".

use bytes::Bytes;
use tracing::instrument;

use super::outcome::Outcome;
use crate::broker::queue::StreamView;
use crate::broker::stats::{self, QueueSnapshot, Rates};
use crate::error::BrokerError;
use crate::protocol::command::Stats;
use crate::protocol::reply::{quote_for_message, Reply};
use crate::protocol::table::KeyValues;
use crate::protocol::token::encode_word;
use crate::session_state::SessionState;

/// `STATS` → `OK stats {N}` and the broker's totals; `STATS QUEUE <name>`
/// → `OK stats {N}` and that queue's, or `ERR NOT_FOUND`.
#[instrument(level = "debug", name = "STATS", skip_all, fields(conn = s.conn_id()))]
pub(super) fn stats(c: Stats, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let broker = s.broker();
    let text = match c.queue {
        None => broker_text(broker),
        Some(name) => {
            let q = broker.find_queue(&name).ok_or_else(|| {
                BrokerError::NotFound(format!("queue {}", quote_for_message(&name)))
            })?;
            let mut kv = queue_text(&QueueSnapshot::of(&q, broker));
            if let Some(view) = q.stream_view() {
                stream_lines(&mut kv, &view);
            }
            kv.render()
        }
    };
    Ok(Outcome::reply(Reply::Data(
        "stats".into(),
        Bytes::from(text),
    )))
}

fn broker_text(broker: &crate::broker::Broker) -> Vec<u8> {
    let (b, queues) = stats::snapshot(broker);
    let delayed: u64 = queues.iter().map(|q| q.delayed).sum();
    let mut kv = KeyValues::default();
    kv.put("uptime_seconds", b.uptime_seconds)
        .put("connections", b.connections)
        .put("connections_opened_total", b.connections_opened)
        .put("exchanges", b.exchanges)
        .put("queues", b.queues)
        .put("consumers", b.consumers);
    kv.group()
        .put("messages_ready", b.messages.saturating_sub(delayed))
        .put("messages_delayed", delayed)
        .put("messages_unacked", b.unacked)
        .put("published_total", b.published)
        .put("delivered_total", b.delivered)
        .put("acked_total", b.acked);
    rates(kv.group(), &b.rates);
    kv.group();
    let mut opt = |k, v: Option<u64>| {
        if let Some(v) = v {
            kv.put(k, v);
        }
    };
    opt("memory_rss_bytes", b.memory_rss_bytes);
    opt("disk_free_bytes", b.disk_free_bytes);
    opt("store_size_bytes", b.store_size_bytes);
    kv.put("fsyncs_total", b.fsyncs);
    if let Some(c) = broker.cluster_status() {
        let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        let members: Vec<String> = c.members.iter().map(u64::to_string).collect();
        kv.group()
            .put("cluster_node_id", c.node_id)
            .put("cluster_state", c.state)
            .put("cluster_leader", opt(c.leader))
            .put("cluster_term", c.term)
            .put("cluster_last_log_index", opt(c.last_log_index))
            .put("cluster_last_applied", opt(c.last_applied))
            .put("cluster_members", members.join(","));
    }
    kv.render()
}

fn queue_text(q: &QueueSnapshot) -> KeyValues {
    let mut kv = KeyValues::default();
    kv.put("name", &q.name)
        .put("durable", q.durable)
        .put("exclusive", q.exclusive)
        .put("auto_delete", q.auto_delete);
    if let Some(subject) = &q.schema {
        kv.put("schema", subject)
            .put("schema_rejections_total", q.schema_rejections);
    }
    kv.group()
        .put("messages_ready", q.messages.saturating_sub(q.delayed))
        .put("messages_delayed", q.delayed)
        .put("messages_unacked", q.unacked)
        .put("consumers", q.consumers)
        .put("oldest_message_age_ms", q.oldest_age_ms.unwrap_or(0));
    kv.group()
        .put("published_total", q.published)
        .put("delivered_total", q.delivered)
        .put("acked_total", q.acked)
        .put("requeued_total", q.requeued)
        .put("dead_lettered_total", q.dead_lettered)
        .put("dead_lettered_rejected_total", q.dead_by_reason.rejected)
        .put("dead_lettered_expired_total", q.dead_by_reason.expired)
        .put("dead_lettered_maxlen_total", q.dead_by_reason.maxlen)
        .put(
            "dead_lettered_delivery_limit_total",
            q.dead_by_reason.delivery_limit,
        )
        .put("store_read_errors_total", q.store_read_errors);
    rates(kv.group(), &q.rates);
    if let Some(r) = &q.replica {
        let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        let members: Vec<String> = r.members.iter().map(u64::to_string).collect();
        let lag = r.lag.iter().map(|(_, l)| *l).max();
        kv.group()
            .put("replicas", r.members.len())
            .put("replica_members", members.join(","))
            .put("replica_leader", opt(r.leader))
            .put("replica_term", opt(r.term))
            .put("replica_last_log_index", opt(r.last_log_index))
            .put("replica_last_applied", opt(r.last_applied))
            .put("replica_snapshot_index", opt(r.snapshot))
            .put("replica_purged_index", opt(r.purged))
            .put("replica_damaged", r.damaged)
            .put("replica_tx_pending", opt(r.tx_pending))
            .put("replica_lag_max", opt(lag));
    }
    kv
}

/// A stream's offsets, then one group of lines per named consumer group:
/// `group.<name>.<what>` (a group name holds no space).
fn stream_lines(kv: &mut KeyValues, v: &StreamView) {
    let last = v.end.checked_sub(1).filter(|l| *l >= 1);
    kv.group()
        .put("stream_first_offset", v.first)
        .put(
            "stream_last_offset",
            last.map_or_else(|| "none".to_string(), |l| l.to_string()),
        )
        .put("stream_groups", v.groups.len());
    for g in &v.groups {
        let key = |what: &str| format!("group.{}.{what}", g.name);
        let active = g.active.as_deref().map_or_else(
            || "none".to_string(),
            |t| String::from_utf8_lossy(&word(t)).into_owned(),
        );
        kv.group()
            .put(key("committed_offset"), g.committed)
            .put(key("lag_messages"), g.lag)
            .put(key("lag_ms"), g.lag_ms)
            .put(key("in_flight"), g.in_flight)
            .put(key("members"), g.members.len())
            .put(key("active"), active);
    }
}

/// A consumer tag as one protocol token (quoted when it holds a space).
fn word(tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_word(&mut out, tag.as_bytes());
    out
}

fn rates(kv: &mut KeyValues, r: &Rates) {
    kv.rate("publish_per_sec_1s", r.publish.last_second)
        .rate("publish_per_sec_60s", r.publish.last_minute)
        .rate("deliver_per_sec_1s", r.deliver.last_second)
        .rate("deliver_per_sec_60s", r.deliver.last_minute)
        .rate("ack_per_sec_1s", r.ack.last_second)
        .rate("ack_per_sec_60s", r.ack.last_minute);
}
