//! `LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS|GROUPS|SCHEMAS [<pattern>]`: one
//! aligned table (see [`crate::protocol::table`]) as a literal, rows
//! filtered by a glob. See protocol.md, "LIST".

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::instrument;

use super::outcome::Outcome;
use crate::broker::message::now_ms;
use crate::broker::stats::QueueSnapshot;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::command::{List, ListKind};
use crate::protocol::reply::Reply;
use crate::protocol::table::Table;
use crate::protocol::token::encode_word;
use crate::session_state::SessionState;

/// `LIST <kind> [<pattern>]` → `OK <rows> {N}` and the table.
#[instrument(level = "debug", name = "LIST", skip_all, fields(conn = s.conn_id()))]
pub(super) fn list(c: List, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let keep = |names: &[&[u8]]| match &c.pattern {
        None => true,
        Some(p) => names.iter().any(|n| glob(p.as_bytes(), n)),
    };
    let table = match c.kind {
        ListKind::Queues => queues(s.broker(), keep),
        ListKind::Exchanges => exchanges(s.broker(), keep),
        ListKind::Bindings => bindings(s.broker(), keep),
        ListKind::Connections => connections(s.broker(), keep),
        ListKind::Consumers => consumers(s.broker(), keep),
        ListKind::Nodes => nodes(s.broker(), keep)?,
        ListKind::Groups => groups(s.broker(), keep),
        ListKind::Schemas => super::schema::table(s.broker(), keep),
    };
    Ok(Outcome::reply(Reply::Data(
        table.len().to_string(),
        Bytes::from(table.render()),
    )))
}

/// Matched against the node's id and address. The `matched` and `lag`
/// columns are the leader's knowledge: `-` on any other node.
fn nodes(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Result<Table, BrokerError> {
    let Some(status) = broker.cluster_status() else {
        return Err(BrokerError::Precondition(
            "not a cluster node (sluice serve --node-id ... starts one)".into(),
        ));
    };
    let mut t = Table::new(&["id", "addr", "role", "leader", "matched", "lag"]);
    let last = status.last_log_index.unwrap_or(0);
    for n in &status.nodes {
        let id = n.id.to_string();
        if !keep(&[id.as_bytes(), n.addr.as_bytes()]) {
            continue;
        }
        let (matched, lag) = match n.matched {
            Some(m) => (m.to_string(), last.saturating_sub(m).to_string()),
            None => ("-".into(), "-".into()),
        };
        t.row([
            id,
            n.addr.clone(),
            if n.voter { "voter" } else { "learner" }.to_string(),
            yes_no(status.leader == Some(n.id)).to_string(),
            matched,
            lag,
        ]);
    }
    Ok(t)
}

/// A value, or `-` for none.
fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Matched against the queue's name.
fn queues(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&[
        "name",
        "messages",
        "unacked",
        "consumers",
        "publish_per_sec",
        "deliver_per_sec",
        "ack_per_sec",
        "dead_lettered",
        "durable",
        "leader",
    ]);
    for q in broker.queue_list() {
        if !keep(&[q.name.as_bytes()]) {
            continue;
        }
        let q = QueueSnapshot::of(&q, broker);
        t.row([
            q.name.clone(),
            q.messages.to_string(),
            q.unacked.to_string(),
            q.consumers.to_string(),
            format!("{:.1}", q.rates.publish.last_second),
            format!("{:.1}", q.rates.deliver.last_second),
            format!("{:.1}", q.rates.ack.last_second),
            q.dead_lettered.to_string(),
            yes_no(q.durable).to_string(),
            match &q.replica {
                Some(r) => r
                    .leader
                    .map_or_else(|| "none".to_string(), |l| l.to_string()),
                None => "-".to_string(),
            },
        ]);
    }
    t
}

/// Matched against the exchange's name.
fn exchanges(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&[
        "name",
        "type",
        "durable",
        "auto_delete",
        "bindings",
        "alternate",
    ]);
    for ex in broker.exchange_list() {
        if !keep(&[ex.name.as_bytes()]) {
            continue;
        }
        t.row([
            ex.name.to_string(),
            ex.kind.keyword().to_string(),
            yes_no(ex.durable).to_string(),
            yes_no(ex.auto_delete).to_string(),
            ex.bindings.read().len().to_string(),
            ex.alternate.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// Matched against the exchange's or the queue's name. The key is any
/// bytes, written as a protocol token; `args` is `-`, or one token holding
/// the header arguments as `BIND` takes them (`"h.a=1 h.b=\"x y\""`).
fn bindings(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut rows = Vec::new();
    for ex in broker.exchange_list() {
        let b = ex.bindings.read();
        for binding in b.iter() {
            if !keep(&[ex.name.as_bytes(), binding.queue.as_bytes()]) {
                continue;
            }
            let (matching, args) = if binding.headers.is_empty() {
                ("-", b"-".to_vec())
            } else {
                let mut args = Vec::new();
                for (i, (k, v)) in binding.headers.iter().enumerate() {
                    if i > 0 {
                        args.push(b' ');
                    }
                    args.extend_from_slice(format!("h.{k}=").as_bytes());
                    encode_word(&mut args, v);
                }
                (binding.matching.keyword(), args)
            };
            rows.push([
                ex.name.as_bytes().to_vec(),
                binding.queue.as_bytes().to_vec(),
                binding.key.to_vec(),
                matching.as_bytes().to_vec(),
                args,
            ]);
        }
    }
    // The routing table's own order is a hash order: sort for a stable listing.
    rows.sort();
    let mut t = Table::new(&["exchange", "queue", "key", "match", "args"]);
    for row in rows {
        t.row(row);
    }
    t
}

/// Matched against the peer address (`127.0.0.1:50312`) or the client
/// name. `name` and `user` are `-` until given; `connected_secs` is the
/// connection's age.
fn connections(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&[
        "id",
        "peer",
        "name",
        "user",
        "tls",
        "connected_secs",
        "subscriptions",
        "unacked",
    ]);
    let now = now_ms();
    for c in broker.connections().list() {
        let peer = c.peer.to_string();
        let name = c.client_name.lock().clone();
        let user = c.user.lock().clone();
        let mut names = vec![peer.as_bytes()];
        if let Some(n) = &name {
            names.push(n.as_bytes());
        }
        if !keep(&names) {
            continue;
        }
        t.row([
            c.id.to_string(),
            peer.clone(),
            name.unwrap_or_else(|| "-".into()),
            user.unwrap_or_else(|| "-".into()),
            yes_no(c.tls).to_string(),
            (now.saturating_sub(c.since_ms) / 1000).to_string(),
            c.subscriptions.load(Ordering::Relaxed).to_string(),
            c.unacked.load(Ordering::Relaxed).to_string(),
        ]);
    }
    t
}

/// Matched against the stream's name or the group's. A stream's named
/// consumer groups: the committed offset (where a member resumes), the lag
/// (messages from there to the end of the log), the deliveries in flight,
/// the members' consumer tags (comma-separated, oldest first) and the
/// active one's; `-` for none; then the stream's last offset, the lag in
/// time (the age of the message at the committed offset) and, on a
/// partition of a partitioned stream, its index.
fn groups(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&[
        "stream",
        "group",
        "committed",
        "lag",
        "in_flight",
        "members",
        "active",
        "last",
        "lag_ms",
        "partition",
    ]);
    for q in broker.queue_list() {
        let Some(view) = q.stream_view() else {
            continue;
        };
        for g in view.groups {
            if !keep(&[q.name.as_bytes(), g.name.as_bytes()]) {
                continue;
            }
            let members = match g.members.is_empty() {
                true => "-".to_string(),
                false => g.members.join(","),
            };
            t.row([
                q.name.to_string(),
                g.name,
                g.committed.to_string(),
                g.lag.to_string(),
                g.in_flight.to_string(),
                members,
                g.active.unwrap_or_else(|| "-".into()),
                or_dash(g.last),
                g.lag_ms.to_string(),
                or_dash(g.partition),
            ]);
        }
    }
    t
}

/// Matched against the queue's name or the consumer tag. `in_flight` is
/// the deliveries holding prefetch credit (unacked, or being written),
/// `bytes_in_flight` their body bytes; on a stream, the group it reads as
/// (`-` for a private reader), that group's lag in messages and in time,
/// and whether it is the member the group delivers to (all `-` on a
/// classic queue).
fn consumers(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&[
        "queue",
        "tag",
        "connection",
        "ack",
        "prefetch",
        "in_flight",
        "exclusive",
        "prefetch_bytes",
        "bytes_in_flight",
        "group",
        "lag",
        "lag_ms",
        "active",
    ]);
    for q in broker.queue_list() {
        for c in q.consumer_list() {
            if !keep(&[q.name.as_bytes(), c.tag.as_bytes()]) {
                continue;
            }
            let g = c.group.as_ref();
            t.row([
                q.name.to_string(),
                c.tag.to_string(),
                c.conn.to_string(),
                if c.auto_ack { "auto" } else { "manual" }.to_string(),
                c.prefetch.to_string(),
                c.in_flight.to_string(),
                yes_no(c.exclusive).to_string(),
                or_dash(c.prefetch_bytes),
                c.bytes_in_flight.to_string(),
                or_dash(g.and_then(|g| g.name.clone())),
                or_dash(g.map(|g| g.lag)),
                or_dash(g.map(|g| g.lag_ms)),
                or_dash(g.map(|g| yes_no(g.active))),
            ]);
        }
    }
    t
}

/// Whether `text` matches the glob `pattern`: `*` any run of bytes (none
/// too), `?` exactly one character, anything else itself (case-sensitive,
/// as names are). Iterative, with one backtrack point: linear in practice,
/// never exponential.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                t += char_len(text, t);
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + char_len(text, st);
                    star = Some((sp, next));
                    p = sp + 1;
                    t = next;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The length of the UTF-8 character at `at` (1 for a stray byte).
fn char_len(text: &[u8], at: usize) -> usize {
    let mut n = 1;
    while text.get(at + n).is_some_and(|b| b & 0xc0 == 0x80) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_like_redis_keys() {
        let m = |p: &str, t: &str| glob(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("*", "jobs"));
        assert!(m("jobs", "jobs"));
        assert!(!m("jobs", "jobs2"));
        assert!(m("jobs*", "jobs.dead"));
        assert!(m("*.dead", "jobs.dead"));
        assert!(!m("*.dead", "jobs.deadx"));
        assert!(m("j?bs", "jobs"));
        assert!(!m("j?bs", "jbs"));
        assert!(m("a*b*c", "a-x-b-y-c"));
        assert!(!m("a*b*c", "a-x-b-y-d"));
        assert!(m("127.0.0.1:*", "127.0.0.1:5000"));
        assert!(m("caf?", "caf\u{e9}"));
        assert!(!m("Jobs", "jobs"), "case-sensitive");
        assert!(!m("", "x"));
        assert!(m("", ""));
        // Many stars against a long miss stays fast.
        let long = "a".repeat(10_000);
        assert!(!glob(b"*a*a*a*a*a*b", long.as_bytes()));
    }
}
