//! Clusters (issue 18, under way): three `sluice serve` processes with
//! cluster flags form the metadata Raft group, elect a leader, elect
//! another when the leader is killed, and take the killed node back when
//! it starts again; `STATS` shows each node's view.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::cert::Cert;
use crate::common::spawned::Spawned;
use crate::common::{http_request, TestConn, DEADLINE};

/// A port free a moment ago, for a node's cluster address: below the
/// ephemeral range (which every `127.0.0.1:0` of the other tests draws
/// from, so one of them could take it before the node binds it), from a
/// run of ports of this test process's own.
fn free_port() -> u16 {
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
struct Cluster {
    ports: Vec<u16>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            ports: (0..3).map(|_| free_port()).collect(),
        }
    }

    fn args(&self, i: usize) -> Vec<String> {
        let peers = (1..=3)
            .map(|j| format!("{j}=127.0.0.1:{}", self.ports[j - 1]))
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
    }
}

/// A node's `cluster_*` lines of `STATS`.
async fn view(node: &Spawned) -> HashMap<String, String> {
    view_on(&mut TestConn::connect(node.addr).await).await
}

/// The `cluster_*` lines of `STATS` on the connection `c`.
async fn view_on(c: &mut TestConn) -> HashMap<String, String> {
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
async fn agreed(nodes: &[&Spawned]) -> (u64, u64) {
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

#[tokio::test]
async fn three_nodes_elect_a_leader_elect_another_when_it_is_killed_and_take_it_back() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let args = |i: usize| {
        let mut a = cluster.args(i);
        if i == 1 {
            a.extend(["--http".to_string(), "127.0.0.1:0".to_string()]);
        }
        a
    };
    let start = |i: usize| {
        let a = args(i);
        let dir = dirs[i - 1].path().to_owned();
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            Spawned::start_in(&dir, &a).await
        }
    };
    let mut nodes: HashMap<u64, Spawned> = HashMap::new();
    for i in 1..=3 {
        nodes.insert(i as u64, start(i).await);
    }
    let all: Vec<&Spawned> = (1..=3).map(|i| &nodes[&i]).collect();
    let (first, term) = agreed(&all).await;
    let v = view(&nodes[&first]).await;
    assert_eq!(v["cluster_members"], "1,2,3");
    assert_eq!(v["cluster_node_id"], first.to_string());
    // The CLI shows it too, as text and as JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "cluster",
            "status",
            "-s",
            &nodes[&first].addr.to_string(),
            "--json",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["leader"], serde_json::json!(first));
    assert_eq!(json["state"], "leader");
    assert_eq!(json["members"], "1,2,3");
    // Node 1 serves the same view as metrics.
    let line = nodes[&1].wait_stdout("http on ").await;
    let http = line
        .trim_start_matches("http on ")
        .trim()
        .parse()
        .expect("http addr");
    let (status, _, body) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("sluice_cluster_leader{{node=\"1\"}} {first}")),
        "{body}"
    );
    assert!(
        body.contains(&format!("sluice_cluster_term{{node=\"1\"}} {term}")),
        "{body}"
    );
    let is_leader = u64::from(first == 1);
    assert!(body.contains(&format!(
        "sluice_cluster_is_leader{{node=\"1\"}} {is_leader}"
    )));
    let (_, _, overview) = http_request(http, "GET", "/api/overview").await;
    let overview: serde_json::Value = serde_json::from_str(&overview).expect("json");
    assert_eq!(
        overview["cluster"]["nodes"].as_array().map(Vec::len),
        Some(3)
    );

    // LIST NODES: the leader knows how far each node's log is; the others
    // say so with `-`.
    let mut c = TestConn::connect(nodes[&first].addr).await;
    let (rows, table) = c.data("LIST NODES").await;
    assert_eq!(rows, "3", "{table}");
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["id", "addr", "role", "leader", "matched", "lag"])
    );
    for (i, row) in lines.enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], (i + 1).to_string(), "{table}");
        assert_eq!(cells[2], "voter", "{table}");
        assert_eq!(cells[3] == "true", cells[0] == first.to_string(), "{table}");
        assert!(cells[4].parse::<u64>().is_ok(), "{table}");
    }
    let follower = (1..=3).find(|i| *i != first).expect("a follower");
    let mut c = TestConn::connect(nodes[&follower].addr).await;
    let (_, table) = c.data("LIST NODES 2").await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!((row[0], row[4], row[5]), ("2", "-", "-"), "{table}");

    // The leader is killed: the other two elect one of them, later.
    let mut dead = nodes.remove(&first).expect("leader");
    dead.kill().await;
    let rest: Vec<&Spawned> = nodes.values().collect();
    let (second, term2) = agreed(&rest).await;
    assert_ne!(second, first);
    assert!(term2 > term, "term {term2} after {term}");

    // It starts again on its data directory and follows the new leader.
    nodes.insert(first, start(first as usize).await);
    let all: Vec<&Spawned> = nodes.values().collect();
    let (third, term3) = agreed(&all).await;
    assert_eq!((third, term3), (second, term2));
    let back = view(&nodes[&first]).await;
    assert_eq!(back["cluster_state"], "follower");
}

#[tokio::test]
async fn cluster_flags_come_together_or_not_at_all_and_a_single_node_is_no_cluster() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--node-id", "1", "--data-dir", "/nonexistent/x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster-addr") && err.contains("--peers"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--node-id",
            "4",
            "--cluster-addr",
            "127.0.0.1:0",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2",
            "--cluster-secret",
            "x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--peers does not name this node"), "{err}");
    // --print-config says the secret is set, never what it is.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--print-config",
            "--node-id",
            "1",
            "--cluster-addr",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--cluster-secret",
            "hunter2",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("cluster-secret = \"<hidden>\"  # flag --cluster-secret"),
        "{text}"
    );
    // `sluice cluster status` on a single node says it is not a cluster.
    let single = Spawned::start(&[]).await;
    let mut c = TestConn::connect(single.addr).await;
    c.err("LIST NODES", "PRECONDITION").await;
    // A list of addresses: the first that answers is used, by the CLI
    // and by the Rust client; none answering names each.
    let dead = format!("127.0.0.1:{}", free_port());
    let list = format!("{dead},{}", single.addr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["stats", "-s", &list])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let client = sluice::client::Client::connect_any(&[dead.clone(), single.addr.to_string()])
        .await
        .expect("the second address");
    assert!(
        client.greeting.starts_with("HELLO sluice"),
        "{}",
        client.greeting
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["stats", "-s", &format!("{dead},{dead}")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{dead}: ")), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "status", "-s", &single.addr.to_string()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a cluster node"), "{err}");
}

#[tokio::test]
async fn with_tls_on_the_client_port_the_nodes_talk_tls() {
    // One certificate (for 127.0.0.1) shared by the three nodes: they
    // trust it by default, form the cluster over TLS, and a peer that
    // speaks plain TCP to a node's cluster port gets no more than a TLS
    // alert before the connection closes.
    let cert = Cert::new();
    let cluster = Cluster::new();
    let mut nodes = Vec::new();
    for i in 1..=3usize {
        let mut args = cert.serve_args();
        args.extend(cluster.args(i));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(Spawned::start(&a).await);
    }
    let all: Vec<&Spawned> = nodes.iter().collect();
    agreed(&all).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", cluster.ports[0]))
        .await
        .expect("connect");
    let hello = br#"{"secret":"a test secret"}"#;
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(hello);
    raw.write_all(&frame).await.expect("write");
    // What comes back is at most a TLS alert (record type 21), then the
    // end of the connection: never a Raft reply.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut got))
        .await
        .expect("closed in time");
    assert!(
        got.is_empty() || got[0] == 21,
        "a plain-TCP peer was answered: {got:?}"
    );
}

/// Starts the three nodes of `cluster` on `dirs`, and waits for a leader.
async fn three_nodes(cluster: &Cluster, dirs: &[tempfile::TempDir]) -> HashMap<u64, Spawned> {
    let mut nodes = HashMap::new();
    for i in 1..=3usize {
        nodes.insert(i as u64, start_node(cluster, dirs, i).await);
    }
    let all: Vec<&Spawned> = (1..=3).map(|i| &nodes[&i]).collect();
    agreed(&all).await;
    nodes
}

/// Starts node `i` of `cluster` on its directory in `dirs`.
async fn start_node(cluster: &Cluster, dirs: &[tempfile::TempDir], i: usize) -> Spawned {
    let a = cluster.args(i);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    Spawned::start_in(dirs[i - 1].path(), &a).await
}

/// Waits until `node` answers `line` with a reply starting `want`.
async fn eventually(node: &Spawned, line: &str, want: &str) {
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

#[tokio::test]
async fn topology_and_users_changed_on_any_node_are_every_nodes_once_committed() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let leader: u64 = view(&nodes[&1]).await["cluster_leader"]
        .parse()
        .expect("leader");
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let other = (1..=3)
        .find(|i| *i != leader && *i != follower)
        .expect("another");

    // Declared through a follower (forwarded to the leader): the reply
    // comes once it is committed and applied there, so the same
    // connection sees it at once; the other nodes have it soon after.
    let mut f = TestConn::connect(nodes[&follower].addr).await;
    f.ok("DECLARE EXCHANGE logs topic", "OK").await;
    f.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    f.ok("BIND q logs app.*", "OK").await;
    let (_, table) = f.data("LIST QUEUES q").await;
    let row = table.lines().nth(1).expect("a row");
    // Durable in a cluster, as declared or not.
    assert!(row.split_whitespace().any(|c| c == "true"), "{table}");
    for i in [leader, other] {
        eventually(&nodes[&i], "PUB logs app.x hello", "OK").await;
        let mut c = TestConn::connect(nodes[&i].addr).await;
        let routed = c.cmd("PUB logs app.y again").await;
        assert!(routed.ends_with("routed=1"), "node {i}: {routed}");
    }
    // The leader's verdict is the answer, wherever it is asked.
    let mut o = TestConn::connect(nodes[&other].addr).await;
    o.err("DECLARE QUEUE q max-length=5", "PRECONDITION").await;
    o.ok("DECLARE QUEUE q", "OK q messages=2 consumers=0").await;
    let refused = o.err("DECLARE QUEUE tmp auto-delete", "PRECONDITION").await;
    assert!(refused.contains("not supported in a cluster"), "{refused}");
    // An exclusive queue is the connection's node's own.
    let own = o.cmd("DECLARE QUEUE mine exclusive").await;
    assert!(own.starts_with("OK mine"), "{own}");
    f.err("STATS QUEUE mine", "NOT_FOUND").await;

    // Users too: added on one node, logged in on another.
    o.ok("USER ADD boss s3cret admin", "OK").await;
    eventually(&nodes[&follower], "AUTH boss s3cret", "OK boss").await;
    eventually(&nodes[&leader], "DECLARE QUEUE x", "ERR NOAUTH").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.ok("AUTH boss s3cret", "OK boss").await;
    l.ok("USER ADD worker pw configure=^w-", "OK").await;
    let mut f = TestConn::connect(nodes[&follower].addr).await;
    f.ok("AUTH boss s3cret", "OK boss").await;
    f.ok("USER PERMIT worker configure=^x-", "OK").await;
    let mut w = TestConn::connect(nodes[&follower].addr).await;
    w.ok("AUTH worker pw", "OK worker").await;
    w.err("DECLARE QUEUE w-1", "FORBIDDEN").await;
    w.ok("DECLARE QUEUE x-1", "OK x-1 messages=0 consumers=0")
        .await;
    l.ok("USER REMOVE worker", "OK").await;
    eventually(&nodes[&follower], "AUTH worker pw", "ERR NOAUTH").await;

    // A queue deleted and declared again keeps what reaches it after: a
    // restart applies none of the group's log a second time (it would
    // delete the queue again, and its message with it).
    l.ok("DELETE QUEUE q", "OK messages=2").await;
    l.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    eventually(&nodes[&other], "PUB \"\" q kept", "ERR NOAUTH").await;
    let mut o = TestConn::connect(nodes[&other].addr).await;
    o.ok("AUTH boss s3cret", "OK boss").await;
    eventually(&nodes[&other], "STATS QUEUE q", "ERR NOAUTH").await;
    let published = o.cmd("PUB \"\" q kept").await;
    assert!(published.ends_with("routed=1"), "{published}");
    drop(o);
    let applied: u64 = view_on(&mut l).await["cluster_last_applied"]
        .parse()
        .expect("applied");
    let mut gone = nodes.remove(&other).expect("node");
    gone.kill().await;
    nodes.insert(other, start_node(&cluster, &dirs, other as usize).await);
    let mut o = TestConn::connect(nodes[&other].addr).await;
    o.ok("AUTH boss s3cret", "OK boss").await;
    // Once it has caught up with the group (whatever it applies again
    // has been applied by then).
    let until = tokio::time::Instant::now() + DEADLINE;
    while view_on(&mut o)
        .await
        .get("cluster_last_applied")
        .and_then(|a| a.parse::<u64>().ok())
        < Some(applied)
    {
        assert!(
            tokio::time::Instant::now() < until,
            "node {other} never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    o.send("GET q").await;
    let (_, body) = o.msg().await;
    assert_eq!(body, b"kept");
    o.expect("OK 1").await;

    // Without a majority a change is refused, not hung: ERR UNAVAILABLE.
    for i in [leader, follower] {
        let mut n = nodes.remove(&i).expect("node");
        n.kill().await;
    }
    let refused = o.err("DECLARE QUEUE late", "UNAVAILABLE").await;
    assert!(
        refused.contains("may or may not") || refused.contains("nothing was changed"),
        "{refused}"
    );
}

#[tokio::test]
async fn nodes_join_leave_and_hand_over_the_lead_online() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok("DECLARE QUEUE before", "OK before messages=0 consumers=0")
        .await;

    // A fourth node, started with --join and knowing only itself, is
    // added through any node: it catches up (the queue declared before is
    // there), then votes.
    let port4 = free_port();
    let addr4 = format!("127.0.0.1:{port4}");
    let peers4 = format!("4={addr4}");
    let fourth = Spawned::start(&[
        "--node-id",
        "4",
        "--cluster-addr",
        &addr4,
        "--peers",
        &peers4,
        "--cluster-secret",
        "a test secret",
        "--join",
    ])
    .await;
    // Alone and joining, it starts no cluster of its own.
    assert_eq!(view(&fourth).await["cluster_leader"], "none");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "cluster",
            "add",
            "4",
            &addr4,
            "-s",
            &nodes[&2].addr.to_string(),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "members=1,2,3,4\n");
    let mut all: Vec<&Spawned> = nodes.values().collect();
    all.push(&fourth);
    let (leader, _) = agreed(&all).await;
    assert_eq!(view(&fourth).await["cluster_members"], "1,2,3,4");
    eventually(&fourth, "STATS QUEUE before", "OK").await;

    // The lead handed over to the new node.
    let mut c = TestConn::connect(nodes[&leader].addr).await;
    c.ok("CLUSTER TRANSFER 4", "OK leader=4").await;
    let (now, _) = agreed(&all).await;
    assert_eq!(now, 4);

    // A member removed: the other three go on, and take changes.
    let gone = if leader == 1 { 2 } else { 1 };
    let stay = (1..=3).find(|i| *i != gone).expect("a node");
    let want: Vec<String> = [1, 2, 3, 4]
        .iter()
        .filter(|i| **i != gone)
        .map(|i| i.to_string())
        .collect();
    let want = want.join(",");
    let mut c = TestConn::connect(nodes[&stay].addr).await;
    c.ok(
        &format!("CLUSTER REMOVE {gone}"),
        &format!("OK members={want}"),
    )
    .await;
    c.err("CLUSTER REMOVE 9", "NOT_FOUND").await;
    c.ok("DECLARE QUEUE after", "OK after messages=0 consumers=0")
        .await;
    let rest: Vec<&Spawned> = all
        .iter()
        .copied()
        .filter(|n| n.addr != nodes[&gone].addr)
        .collect();
    agreed(&rest).await;
    assert_eq!(view(&fourth).await["cluster_members"], want);

    // Bad requests: a parse error, and no cluster on a single node.
    c.err("CLUSTER ADD 5 nowhere", "SYNTAX").await;
    let single = Spawned::start(&[]).await;
    let mut s = TestConn::connect(single.addr).await;
    s.err("CLUSTER TRANSFER 1", "PRECONDITION").await;
}

/// The node of `nodes` that serves replicated queue `queue` (a `GET` there
/// is not refused as not the leader), waiting for one up to the deadline.
async fn queue_leader(nodes: &HashMap<u64, Spawned>, queue: &str) -> u64 {
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
async fn drain(c: &mut TestConn, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        c.send(&format!("GET {queue} count=100")).await;
        let mut last = None;
        loop {
            let line = c.line().await;
            if line.starts_with("OK") {
                break;
            }
            let (head, len) = crate::common::split_literal(&line).expect("a MSG");
            bodies.push(String::from_utf8(c.literal(len).await).expect("utf-8"));
            last = head.split_whitespace().nth(2).map(str::to_owned);
        }
        match last {
            Some(dtag) => c.ok(&format!("ACK {dtag} multiple"), "OK").await,
            None => return bodies,
        }
    }
}

#[tokio::test]
async fn a_replicated_queue_keeps_every_confirmed_message_when_its_leader_is_killed() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE orders replicas=3",
        "OK orders messages=0 consumers=0",
    )
    .await;
    // What a replicated queue does not take yet is refused, not ignored.
    for bad in [
        "replicas=3 ttl=5",
        "replicas=3 dead-letter=dlx",
        "replicas=3 exclusive",
    ] {
        let refused = c
            .err(&format!("DECLARE QUEUE other {bad}"), "PRECONDITION")
            .await;
        assert!(refused.contains("replicated queue"), "{refused}");
    }
    c.err("DECLARE QUEUE other replicas=5", "PRECONDITION")
        .await;
    c.err("DECLARE QUEUE orders", "PRECONDITION").await;
    let leader = queue_leader(&nodes, "orders").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.err("PURGE orders", "PRECONDITION").await;
    // Its group, as STATS QUEUE and LIST QUEUES show it.
    let (_, stats) = l.data("STATS QUEUE orders").await;
    let line = |k: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(k).map(str::trim))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("replicas "), "3", "{stats}");
    assert_eq!(line("replica_leader "), leader.to_string(), "{stats}");
    assert_eq!(line("replica_members ").split(',').count(), 3, "{stats}");
    let (_, table) = l.data("LIST QUEUES orders").await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(header.last(), Some(&"leader"), "{table}");
    assert_eq!(
        row.last().copied(),
        Some(leader.to_string().as_str()),
        "{table}"
    );
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut o = TestConn::connect(nodes[&other].addr).await;
    let refused = o.err("GET orders", "PRECONDITION").await;
    assert!(
        refused.contains(&format!("led by node {leader}")),
        "{refused}"
    );

    // Published through every node: each confirmed message is recorded.
    let mut confirmed = std::collections::BTreeSet::new();
    for i in 0..90 {
        let node = 1 + (i % 3) as u64;
        let mut p = TestConn::connect(nodes[&node].addr).await;
        let got = p.cmd(&format!("PUB \"\" orders m{i}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
        confirmed.insert(format!("m{i}"));
    }
    // A third consumed and acked on the leader.
    let mut delivered = std::collections::BTreeSet::new();
    l.send("GET orders count=30").await;
    for _ in 0..30 {
        let (_, body) = l.msg().await;
        delivered.insert(String::from_utf8(body).expect("utf-8"));
    }
    l.expect("OK 30").await;
    l.ok("ACK 30 multiple", "OK").await;
    drop(l);

    // The leader is killed: another member takes over with every copy
    // that was not settled, and takes publishes again.
    let mut dead = nodes.remove(&leader).expect("leader");
    dead.kill().await;
    let killed = std::time::Instant::now();
    let survivor = *nodes.keys().next().expect("a survivor");
    let mut p = TestConn::connect(nodes[&survivor].addr).await;
    // Generous: the failover's time is measured by examples/, this is
    // about what is kept (and the machine may be loaded).
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = p.cmd("PUB \"\" orders after").await;
        if got.ends_with("routed=1") {
            confirmed.insert("after".into());
            break;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
        assert!(
            tokio::time::Instant::now() < until,
            "no publish after the kill"
        );
    }
    eprintln!(
        "first confirmed publish {:?} after the kill",
        killed.elapsed()
    );
    let new = queue_leader(&nodes, "orders").await;
    assert_ne!(new, leader);
    let mut n = TestConn::connect(nodes[&new].addr).await;
    delivered.extend(drain(&mut n, "orders").await);

    // Every confirmed message was delivered at least once, and nothing
    // was delivered that was not published.
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let unknown: Vec<_> = delivered.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}

#[tokio::test]
async fn replicas_needs_a_cluster() {
    let single = Spawned::start(&[]).await;
    let mut c = TestConn::connect(single.addr).await;
    let refused = c.err("DECLARE QUEUE q replicas=3", "PRECONDITION").await;
    assert!(refused.contains("needs a cluster"), "{refused}");
    c.ok("DECLARE QUEUE q replicas=1", "OK q messages=0 consumers=0")
        .await;
}

/// Publishes `body` to `queue` through the node at `addr` until it is
/// confirmed (a failover may answer `ERR UNAVAILABLE` meanwhile).
async fn publish_confirmed(addr: std::net::SocketAddr, queue: &str, body: &str) {
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
async fn publish_some(
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

#[tokio::test]
async fn a_replicated_queue_loses_nothing_through_a_paused_leader_a_killed_follower_and_a_restart_of_every_node(
) {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE jobs replicas=3",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[1, 2, 3], 30, &mut confirmed).await;

    // The leader pauses (SIGSTOP): the others elect one and take
    // publishes; it comes back (SIGCONT) as a follower.
    let leader = queue_leader(&nodes, "jobs").await;
    nodes[&leader].signal(libc::SIGSTOP);
    let other = (1..=3).find(|i| *i != leader).expect("another");
    publish_some(&nodes, &[other], 20, &mut confirmed).await;
    nodes[&leader].signal(libc::SIGCONT);
    publish_some(&nodes, &[1, 2, 3], 20, &mut confirmed).await;

    // A follower killed and started again.
    let now = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != now).expect("a follower");
    let mut f = nodes.remove(&follower).expect("node");
    f.kill().await;
    publish_some(&nodes, &[now], 10, &mut confirmed).await;
    nodes.insert(
        follower,
        start_node(&cluster, &dirs, follower as usize).await,
    );
    publish_some(&nodes, &[1, 2, 3], 10, &mut confirmed).await;

    // Every node killed, then started again: they read the queue's log
    // back from their disks.
    for (_, mut n) in nodes.drain() {
        n.kill().await;
    }
    for i in 1..=3u64 {
        nodes.insert(i, start_node(&cluster, &dirs, i as usize).await);
    }
    let leader = queue_leader(&nodes, "jobs").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let delivered: std::collections::BTreeSet<String> =
        drain(&mut l, "jobs").await.into_iter().collect();
    // Every confirmed message is there; a publish answered UNAVAILABLE
    // was tried again with the same body, so nothing else may be.
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let unknown: Vec<_> = delivered.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}
