//! The metadata group: elections, failover and rejoin, the topology and
//! users replicated, membership changes online, TLS between the nodes.

use std::collections::HashMap;
use std::time::Duration;

use super::{
    agreed, caught_up, eventually, free_port, row, start_joining, start_node, three_nodes, view,
    view_on, Cluster,
};
use crate::common::cert::Cert;
use crate::common::spawned::Spawned;
use crate::common::{http_request, TestConn};

#[tokio::test]
async fn three_nodes_elect_a_leader_elect_another_when_it_is_killed_and_take_it_back() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
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
    let r = row(&table, 1);
    assert_eq!((r[0], r[4], r[5]), ("2", "-", "-"), "{table}");

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

#[tokio::test]
async fn topology_and_users_changed_on_any_node_are_every_nodes_once_committed() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
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
    // Once it has caught up with the group.
    caught_up(&mut o, applied).await;
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
    let dirs = super::three_dirs();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok("DECLARE QUEUE before", "OK before messages=0 consumers=0")
        .await;

    // A fourth node, started with --join and knowing only itself, is
    // added through any node: it catches up (the queue declared before is
    // there), then votes.
    let (fourth, addr4) = start_joining(4).await;
    // Alone and joining, it starts no cluster of its own.
    assert_eq!(view(&fourth).await["cluster_leader"], "none");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "cluster",
            "add",
            "4",
            addr4.as_str(),
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
