//! Clusters (issue 18): `sluice serve` processes with cluster flags on
//! loopback. This file has what the tests share (starting nodes, reading
//! a node's view, waiting for a leader, draining and checking a queue);
//! `metadata.rs` the metadata group (elections, the topology and users
//! replicated, membership changes, TLS between nodes), `queues.rs`
//! replicated queues and their faults (kills, pauses, snapshots),
//! `features.rs` what a queue does on a replicated one across a failover,
//! `members.rs` membership changes under load, `partitions.rs` network
//! partitions through the proxies of `net.rs`, `damage.rs` a damaged
//! replica, `faults.rs` the long random-fault mode, `transactions.rs` `TX` across
//! replicated queues.

mod consumers;
mod damage;
mod faults;
mod features;
mod members;
mod metadata;
mod net;
mod partitions;
mod queues;
mod schemas;
mod stream_dead_letters;
mod stream_transactions;
mod streams;
mod transactions;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

/// A port free a moment ago, for a node's cluster address: below the
/// ephemeral range (which every `127.0.0.1:0` of the other tests draws
/// from, so one of them could take it before the node binds it), from a
/// run of ports of this test process's own.
pub(super) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 12_000 + (std::process::id() % 1000) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 16_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Three nodes' cluster ports, and the `serve` flags that make node `i`
/// (1 to 3) one of them.
pub(super) struct Cluster {
    /// Where each node listens for the others.
    pub(super) ports: Vec<u16>,
    /// Where the others reach it: the same port, or its proxy's.
    reach: Vec<u16>,
    /// More `serve` flags, every node's.
    extra: Vec<String>,
}

impl Cluster {
    pub(super) fn new() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        Cluster {
            reach: ports.clone(),
            ports,
            extra: Vec::new(),
        }
    }

    /// The same, with more `serve` flags for every node.
    pub(super) fn with(mut self, flags: &[&str]) -> Cluster {
        self.extra.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// Three nodes that reach each other through `net`'s proxies, and the
    /// proxies.
    pub(super) async fn behind_proxies() -> (Cluster, net::Net) {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let net = net::Net::start(&ports).await;
        let cluster = Cluster {
            reach: net.ports.clone(),
            ports,
            extra: Vec::new(),
        };
        (cluster, net)
    }

    pub(super) fn args(&self, i: usize) -> Vec<String> {
        let peers = (1..=3)
            .map(|j| format!("{j}=127.0.0.1:{}", self.reach[j - 1]))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            "--node-id".to_string(),
            i.to_string(),
            "--cluster-addr".to_string(),
            format!("127.0.0.1:{}", self.ports[i - 1]),
            "--peers".to_string(),
            peers,
            "--cluster-secret".to_string(),
            "a test secret".to_string(),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        .collect()
    }
}

/// A node's `cluster_*` lines of `STATS`.
pub(super) async fn view(node: &Spawned) -> HashMap<String, String> {
    view_on(&mut TestConn::connect(node.addr).await).await
}

/// The `cluster_*` lines of `STATS` on the connection `c`.
pub(super) async fn view_on(c: &mut TestConn) -> HashMap<String, String> {
    let (_, text) = c.data("STATS").await;
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (k, v) = (w.next()?, w.next()?);
            k.starts_with("cluster_")
                .then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Waits until every node in `nodes` names the same leader, one of them,
/// at the same term; returns (leader, term).
pub(super) async fn agreed(nodes: &[&Spawned]) -> (u64, u64) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            views.push(view(n).await);
        }
        let first = &views[0];
        let leader = first
            .get("cluster_leader")
            .and_then(|l| l.parse::<u64>().ok());
        let same = views.iter().all(|v| {
            v.get("cluster_leader") == first.get("cluster_leader")
                && v.get("cluster_term") == first.get("cluster_term")
        });
        let leads = views
            .iter()
            .filter(|v| v.get("cluster_state").is_some_and(|s| s == "leader"))
            .count();
        if let (Some(l), true, 1) = (leader, same, leads) {
            let term = first["cluster_term"].parse().expect("term");
            return (l, term);
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no agreed leader: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the three nodes of `cluster` on `dirs`, and waits for a leader.
pub(super) async fn three_nodes(
    cluster: &Cluster,
    dirs: &[tempfile::TempDir],
) -> HashMap<u64, Spawned> {
    let mut nodes = HashMap::new();
    for i in 1..=3usize {
        nodes.insert(i as u64, start_node(cluster, dirs, i).await);
    }
    let all: Vec<&Spawned> = (1..=3).map(|i| &nodes[&i]).collect();
    agreed(&all).await;
    nodes
}

/// Starts node `i` of `cluster` on its directory in `dirs`.
pub(super) async fn start_node(cluster: &Cluster, dirs: &[tempfile::TempDir], i: usize) -> Spawned {
    let a = cluster.args(i);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    Spawned::start_in(dirs[i - 1].path(), &a).await
}

/// Waits until the node behind `c` has applied the metadata group's log
/// up to `index` (whatever it applies again after a restart has been
/// applied by then).
pub(super) async fn caught_up(c: &mut TestConn, index: u64) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while view_on(c)
        .await
        .get("cluster_last_applied")
        .and_then(|a| a.parse::<u64>().ok())
        < Some(index)
    {
        assert!(
            tokio::time::Instant::now() < until,
            "never caught up to {index}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` answers `line` with a reply starting `want`.
pub(super) async fn eventually(node: &Spawned, line: &str, want: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut c = TestConn::connect(node.addr).await;
    loop {
        let got = c.cmd(line).await;
        if got.starts_with(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{line:?} on {}: {got:?}, never {want:?}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node of `nodes` that serves replicated queue `queue` (a `GET` there
/// is not refused as not the leader), waiting for one up to the deadline.
pub(super) async fn queue_leader(nodes: &HashMap<u64, Spawned>, queue: &str) -> u64 {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        for (id, n) in nodes {
            let mut c = TestConn::connect(n.addr).await;
            let got = c.cmd(&format!("PEEK {queue} count=1")).await;
            if !got.starts_with("ERR") {
                return *id;
            }
        }
        assert!(tokio::time::Instant::now() < until, "no leader for {queue}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes every message of `queue` on `c` (`GET` until empty), acking
/// each; returns their bodies.
pub(super) async fn drain(c: &mut TestConn, queue: &str) -> Vec<String> {
    let (bodies, err) = take_all(c, queue).await;
    assert!(err.is_none(), "draining {queue}: {err:?} after {bodies:?}");
    bodies
}

/// As [`drain`], stopping at the first `ERR` (a leader change, say): the
/// bodies whose `ACK` was answered `OK`, and that `ERR` if there was one.
/// A batch whose `GET` or `ACK` failed is not among them: it was not
/// settled, so it comes again.
pub(super) async fn take_all(c: &mut TestConn, queue: &str) -> (Vec<String>, Option<String>) {
    let mut bodies = Vec::new();
    loop {
        c.send(&format!("GET {queue} count=100")).await;
        let mut batch = Vec::new();
        let mut last = None;
        loop {
            let line = c.line().await;
            if line.starts_with("ERR") {
                return (bodies, Some(line));
            }
            if line.starts_with("OK") {
                break;
            }
            let (head, len) = crate::common::split_literal(&line).expect("a MSG");
            batch.push(String::from_utf8(c.literal(len).await).expect("utf-8"));
            last = head.split_whitespace().nth(2).map(str::to_owned);
        }
        let Some(dtag) = last else {
            return (bodies, None);
        };
        let got = c.cmd(&format!("ACK {dtag} multiple")).await;
        if got != "OK" {
            assert!(got.starts_with("ERR"), "ACK {dtag} multiple: {got}");
            return (bodies, Some(got));
        }
        bodies.extend(batch);
    }
}

/// Publishes `body` to `queue` through the node at `addr` until it is
/// confirmed (a failover may answer `ERR UNAVAILABLE` meanwhile).
pub(super) async fn publish_confirmed(addr: std::net::SocketAddr, queue: &str, body: &str) {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    let mut c = TestConn::connect(addr).await;
    loop {
        let got = c.cmd(&format!("PUB \"\" {queue} {body}")).await;
        if got.ends_with("routed=1") {
            return;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
        assert!(
            tokio::time::Instant::now() < until,
            "{body} never confirmed"
        );
    }
}

/// Publishes the next `n` messages (`j<k>`) through the nodes `via`, in
/// turn, each until confirmed; records them in `confirmed`.
pub(super) async fn publish_some(
    nodes: &HashMap<u64, Spawned>,
    via: &[u64],
    n: usize,
    confirmed: &mut std::collections::BTreeSet<String>,
) {
    for i in 0..n {
        let body = format!("j{}", confirmed.len() + 1);
        publish_confirmed(nodes[&via[i % via.len()]].addr, "jobs", &body).await;
        confirmed.insert(body);
    }
}

/// Row `n` of a `LIST` table (0: the header), split into its cells.
pub(super) fn row(table: &str, n: usize) -> Vec<&str> {
    table
        .lines()
        .nth(n)
        .unwrap_or_else(|| panic!("no row {n}: {table}"))
        .split_whitespace()
        .collect()
}

/// Three nodes of `cluster` on `dirs`, with queue `queue` declared
/// `replicas=3` (through node 1).
pub(super) async fn three_with_queue(
    cluster: &Cluster,
    dirs: &[tempfile::TempDir],
    queue: &str,
) -> HashMap<u64, Spawned> {
    three_declaring(cluster, dirs, queue, "replicas=3").await
}

/// Three nodes of `cluster` on `dirs`, with queue `queue` declared with
/// `args` (through node 1).
pub(super) async fn three_declaring(
    cluster: &Cluster,
    dirs: &[tempfile::TempDir],
    queue: &str,
    args: &str,
) -> HashMap<u64, Spawned> {
    let nodes = three_nodes(cluster, dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        &format!("DECLARE QUEUE {queue} {args}"),
        &format!("OK {queue} messages=0 consumers=0"),
    )
    .await;
    nodes
}

/// Three temporary data directories, one for each node.
pub(super) fn three_dirs() -> Vec<tempfile::TempDir> {
    (0..3).map(|_| tempfile::tempdir().expect("dir")).collect()
}

/// Drains `queue` on its leader among `nodes` and checks it: every
/// message of `confirmed` is delivered (`lost` otherwise), and nothing
/// that is not in `attempted` (`never published`).
pub(super) async fn check_drained(
    nodes: &HashMap<u64, Spawned>,
    queue: &str,
    confirmed: &std::collections::BTreeSet<String>,
    attempted: &std::collections::BTreeSet<String>,
) {
    let leader = queue_leader(nodes, queue).await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let delivered: std::collections::BTreeSet<String> =
        drain(&mut l, queue).await.into_iter().collect();
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        confirmed.len()
    );
    let unknown: Vec<_> = delivered.difference(attempted).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}

/// Node `id`, started with `--join` and knowing only itself (`CLUSTER
/// ADD` makes it a member), and its cluster address.
pub(super) async fn start_joining(id: u64) -> (Spawned, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let peers = format!("{id}={addr}");
    let id = id.to_string();
    let node = Spawned::start(&[
        "--node-id",
        &id,
        "--cluster-addr",
        &addr,
        "--peers",
        &peers,
        "--cluster-secret",
        "a test secret",
        "--join",
    ])
    .await;
    (node, addr)
}
