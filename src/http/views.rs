//! The API's read-only routes, as JSON: what `STATS` and `LIST` show (a
//! login is all they need, as in the protocol), the charts' history, the
//! streams' consumer groups, the schema registry's subjects, and the users
//! (admins only, as `USER LIST`).
//! Values are read from the broker's registries directly; nothing here
//! changes anything.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::login::Caller;
use super::response::{json, Reply};
use crate::broker::message::now_ms;
use crate::broker::stats::{self, BrokerSnapshot, ConnRates, QueueSnapshot};
use crate::broker::Broker;

/// `GET /api/overview`.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// The broker's totals.
    pub(crate) broker: BrokerSnapshot,
    /// Every queue, by name.
    pub(crate) queues: Vec<QueueView>,
    /// This node's view of its cluster (`null` on a single node).
    pub(crate) cluster: Option<crate::broker::ClusterStatus>,
}

/// One queue in the overview: its snapshot and its recent depths.
#[derive(Debug, Serialize)]
pub(crate) struct QueueView {
    /// The snapshot.
    #[serde(flatten)]
    pub(crate) snapshot: QueueSnapshot,
    /// `stream` or `classic`.
    pub(crate) kind: &'static str,
    /// Depth at each of the last samples (one a second), oldest first.
    pub(crate) depth_history: Vec<u64>,
}

/// The overview as the API serves it.
pub(crate) fn overview(broker: &Broker) -> Overview {
    let (totals, queues) = stats::snapshot(broker);
    let sampler = broker.sampler();
    let queues = queues
        .into_iter()
        .map(|snapshot| QueueView {
            depth_history: sampler.queue_depths(snapshot.id),
            kind: match broker.find_queue(&snapshot.name) {
                Some(q) if q.stream_end().is_some() => "stream",
                _ => "classic",
            },
            snapshot,
        })
        .collect();
    Overview {
        broker: totals,
        queues,
        cluster: broker.cluster_status(),
    }
}

/// `GET /api/history`: the last ten minutes (a point a second) and the
/// last hour (a point every five seconds).
pub(crate) fn history(broker: &Broker) -> Reply {
    let (recent, hour) = broker.sampler().history();
    json(&serde_json::json!({ "recent": recent, "hour": hour }))
}

/// One exchange and its bindings.
#[derive(Debug, Serialize)]
struct ExchangeView {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    durable: bool,
    auto_delete: bool,
    alternate: Option<String>,
    bindings: Vec<BindingView>,
}

#[derive(Debug, Serialize)]
struct BindingView {
    queue: String,
    /// The binding key (any bytes, shown as text).
    key: String,
    /// `all`/`any` for header bindings, else null.
    #[serde(rename = "match")]
    matching: Option<&'static str>,
    /// Header arguments.
    headers: Vec<(String, String)>,
}

/// `GET /api/exchanges`: every exchange but the default one (which has
/// no bindings to show: it reaches each queue by its name), by name, with
/// its bindings.
pub(crate) fn exchanges(broker: &Broker) -> Reply {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut all: Vec<ExchangeView> = broker
        .exchange_list()
        .iter()
        .map(|ex| {
            let mut bindings: Vec<BindingView> = ex
                .bindings
                .read()
                .iter()
                .map(|b| BindingView {
                    queue: b.queue.to_string(),
                    key: text(&b.key),
                    matching: (!b.headers.is_empty()).then(|| b.matching.keyword()),
                    headers: b
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), text(v)))
                        .collect(),
                })
                .collect();
            bindings.sort_by(|a, b| (&a.queue, &a.key).cmp(&(&b.queue, &b.key)));
            ExchangeView {
                name: ex.name.to_string(),
                kind: ex.kind.keyword(),
                durable: ex.durable,
                auto_delete: ex.auto_delete,
                alternate: ex.alternate.clone(),
                bindings,
            }
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    json(&all)
}

#[derive(Debug, Serialize)]
struct ConnectionView {
    id: u64,
    peer: String,
    name: Option<String>,
    user: Option<String>,
    tls: bool,
    connected_secs: u64,
    subscriptions: u64,
    unacked: u64,
    published: u64,
    delivered: u64,
    recv_bytes: u64,
    sent_bytes: u64,
    /// Per second, over the last sample interval.
    rates: ConnRates,
}

/// `GET /api/connections`: what `LIST CONNECTIONS` shows, with each
/// connection's counts and rates.
pub(crate) fn connections(broker: &Broker) -> Reply {
    let now = now_ms();
    let sampler = broker.sampler();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let all: Vec<ConnectionView> = broker
        .connections()
        .list()
        .iter()
        .map(|c| ConnectionView {
            id: c.id,
            peer: c.peer.to_string(),
            name: c.client_name.lock().clone(),
            user: c.user.lock().clone(),
            tls: c.tls,
            connected_secs: now.saturating_sub(c.since_ms) / 1000,
            subscriptions: n(&c.subscriptions),
            unacked: n(&c.unacked),
            published: n(&c.published),
            delivered: n(&c.delivered),
            recv_bytes: n(&c.recv_bytes),
            sent_bytes: n(&c.sent_bytes),
            rates: sampler.connection_rates(c.id),
        })
        .collect();
    json(&all)
}

#[derive(Debug, Serialize)]
struct ConsumerView {
    queue: String,
    tag: String,
    connection: u64,
    ack: &'static str,
    prefetch: u32,
    in_flight: u32,
    exclusive: bool,
    prefetch_bytes: Option<u64>,
    bytes_in_flight: u64,
    /// On a stream: the group (`null` for a private reader or a queue).
    group: Option<String>,
    /// On a stream: the group's lag in messages and in ms, and whether
    /// this subscription is its active member (`null` on a queue).
    lag: Option<u64>,
    lag_ms: Option<u64>,
    active: Option<bool>,
}

/// `GET /api/consumers`: what `LIST CONSUMERS` shows.
pub(crate) fn consumers(broker: &Broker) -> Reply {
    let mut all = Vec::new();
    for q in broker.queue_list() {
        for c in q.consumer_list() {
            all.push(ConsumerView {
                queue: q.name.to_string(),
                tag: c.tag.to_string(),
                connection: c.conn,
                ack: if c.auto_ack { "auto" } else { "manual" },
                prefetch: c.prefetch,
                in_flight: c.in_flight,
                exclusive: c.exclusive,
                prefetch_bytes: c.prefetch_bytes,
                bytes_in_flight: c.bytes_in_flight,
                group: c.group.as_ref().and_then(|g| g.name.clone()),
                lag: c.group.as_ref().map(|g| g.lag),
                lag_ms: c.group.as_ref().map(|g| g.lag_ms),
                active: c.group.as_ref().map(|g| g.active),
            });
        }
    }
    json(&all)
}

/// `GET /api/streams`: every stream with its offsets and named consumer
/// groups (committed offset, lag in messages and in time, members, the
/// active one).
pub(crate) fn streams(broker: &Broker) -> Reply {
    let all: Vec<serde_json::Value> = broker
        .queue_list()
        .iter()
        .filter_map(|q| {
            let v = q.stream_view()?;
            Some(serde_json::json!({
                "name": q.name.to_string(),
                "messages": q.stats().messages,
                "first": v.first,
                "end": v.end,
                "groups": v.groups,
            }))
        })
        .collect();
    json(&all)
}

#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    admin: bool,
    configure: String,
    write: String,
    read: String,
}

/// `GET /api/users`: what `USER LIST` shows, for admins (the caller
/// checked).
pub(crate) fn users(broker: &Broker, caller: &Caller) -> Reply {
    if let Err(r) = caller.require_admin("USER LIST") {
        return r;
    }
    let all: Vec<UserView> = broker
        .users()
        .list()
        .iter()
        .map(|u| UserView {
            name: u.name.clone(),
            admin: u.is_admin(),
            configure: u.perms.configure.as_str().to_string(),
            write: u.perms.write.as_str().to_string(),
            read: u.perms.read.as_str().to_string(),
        })
        .collect();
    json(&all)
}

#[derive(Debug, Serialize)]
struct SchemaView {
    subject: String,
    latest: u32,
    versions: Vec<u32>,
    compat: &'static str,
    transitive: bool,
    /// The exchanges and queues declared with `schema=` it.
    used_by: Vec<SchemaUserView>,
}

#[derive(Debug, Serialize)]
struct SchemaUserView {
    /// `exchange` or `queue`.
    kind: &'static str,
    name: String,
}

/// `GET /api/schemas`: what `LIST SCHEMAS` shows, by subject (a version's
/// text is `SCHEMA GET`'s, through `POST /api/command`).
pub(crate) fn schemas(broker: &Broker) -> Reply {
    use crate::broker::schema::User;
    let all: Vec<SchemaView> = broker
        .schemas()
        .list()
        .into_iter()
        .map(|s| SchemaView {
            used_by: broker
                .schema_users(&s.subject)
                .into_iter()
                .map(|u| match u {
                    User::Exchange(name) => SchemaUserView {
                        kind: "exchange",
                        name,
                    },
                    User::Queue(name) => SchemaUserView {
                        kind: "queue",
                        name,
                    },
                })
                .collect(),
            subject: s.subject,
            latest: s.latest,
            versions: s.versions,
            compat: s.compat.keyword(),
            transitive: s.transitive,
        })
        .collect();
    json(&all)
}
