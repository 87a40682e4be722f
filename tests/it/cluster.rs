//! Clusters (issue 18, under way): three `sluice serve` processes with
//! cluster flags form the metadata Raft group, elect a leader, elect
//! another when the leader is killed, and take the killed node back when
//! it starts again; `STATS` shows each node's view.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::cert::Cert;
use crate::common::spawned::Spawned;
use crate::common::{http_request, TestConn, DEADLINE};

/// A port free a moment ago, for a node's cluster address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
    let mut c = TestConn::connect(node.addr).await;
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
