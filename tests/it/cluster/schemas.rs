//! The schema registry on a cluster: `SCHEMA ADD` and `DELETE` go through
//! the metadata group, so every node checks `PUB`s against the same
//! versions, and an exchange's and a queue's `schema=` are everywhere,
//! also after every node was killed and restarted.

use super::{agreed, caught_up, eventually, start_node, three_nodes, view_on, Cluster};
use crate::common::spawned::Spawned;
use crate::common::TestConn;

#[tokio::test]
async fn schema_changes_reach_every_node() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.send_literal(
        "SCHEMA ADD orders",
        br#"{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}"#,
    )
    .await;
    c.expect("OK orders version=1").await;
    c.ok("DECLARE EXCHANGE shop direct schema=orders", "OK")
        .await;
    // A break is refused by the group, as on one node.
    c.send_literal(
        "SCHEMA ADD orders",
        br#"{"type":"object","required":["id","total"]}"#,
    )
    .await;
    let e = c.line().await;
    assert!(
        e.starts_with("ERR PRECONDITION not backward compatible with version 1"),
        "{e}"
    );
    for i in 2..=3u64 {
        // The exchange (declared after the subject) checks there too.
        eventually(&nodes[&i], r#"PUB shop k "{\"id\":1}""#, "ERR SCHEMA /id: ").await;
        let mut n = TestConn::connect(nodes[&i].addr).await;
        let (words, _) = n.data("SCHEMA GET orders").await;
        assert_eq!(words, "orders version=1 compat=backward", "node {i}");
        n.ok(r#"PUB shop k id=a "{\"id\":\"a\"}""#, "OK a routed=0")
            .await;
    }
    // In use on every node: refused.
    c.err("SCHEMA DELETE orders", "PRECONDITION").await;
    c.ok("DELETE EXCHANGE shop", "OK").await;
    c.ok("SCHEMA DELETE orders", "OK").await;
    for i in 2..=3u64 {
        eventually(&nodes[&i], "SCHEMA GET orders", "ERR NOT_FOUND").await;
    }
}

#[tokio::test]
async fn the_registry_and_schema_declarations_survive_a_whole_cluster_restart() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    let v1 = r#"{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}"#;
    let v2 = r#"{"type":"object","properties":{"id":{"type":"string"},"note":{"type":"string"}},"required":["id"]}"#;
    for (args, schema, reply) in [
        ("orders", v1, "OK orders version=1"),
        ("orders", v2, "OK orders version=2"),
        (
            "audit compat=full transitive",
            r#"{"type":"object"}"#,
            "OK audit version=1",
        ),
    ] {
        c.send_literal(&format!("SCHEMA ADD {args}"), schema.as_bytes())
            .await;
        c.expect(reply).await;
    }
    c.ok("SCHEMA DELETE orders version=1", "OK").await;
    c.ok("DECLARE EXCHANGE shop direct durable schema=orders", "OK")
        .await;
    c.ok(
        "DECLARE QUEUE q durable schema=audit",
        "OK q messages=0 consumers=0",
    )
    .await;
    c.ok("BIND q shop k", "OK").await;
    // A replicated queue checks on the node that takes the PUB, before
    // its group sees it.
    c.ok(
        "DECLARE QUEUE rq replicas=3 schema=audit",
        "OK rq messages=0 consumers=0",
    )
    .await;
    let applied: u64 = view_on(&mut c).await["cluster_last_applied"]
        .parse()
        .expect("applied");
    for i in 1..=3u64 {
        caught_up(&mut TestConn::connect(nodes[&i].addr).await, applied).await;
    }
    drop(c);

    // Every node killed, then every node started again on its directory.
    for i in 1..=3u64 {
        nodes.get_mut(&i).expect("node").kill().await;
    }
    for i in 1..=3u64 {
        nodes.insert(i, start_node(&cluster, &dirs, i as usize).await);
    }
    let all: Vec<&Spawned> = (1..=3).map(|i| &nodes[&i]).collect();
    agreed(&all).await;
    for i in 1..=3u64 {
        let mut n = TestConn::connect(nodes[&i].addr).await;
        caught_up(&mut n, applied).await;
        let (words, body) = n.data("SCHEMA GET orders").await;
        assert_eq!(
            (words.as_str(), body.as_str()),
            ("orders version=2 compat=backward", v2),
            "node {i}"
        );
        n.err("SCHEMA GET orders version=1", "NOT_FOUND").await;
        let (words, _) = n.data("SCHEMA GET audit").await;
        assert_eq!(words, "audit version=1 compat=full transitive", "node {i}");
        // The exchange's schema= and the queue's still check, here.
        let e = n.cmd(r#"PUB shop k "{\"id\":1,\"note\":\"x\"}""#).await;
        assert_eq!(
            e, r#"ERR SCHEMA /id: 1 is not of type "string""#,
            "node {i}"
        );
        for queue in ["q", "rq"] {
            let e = n.cmd(&format!(r#"PUB "" {queue} "[1]""#)).await;
            assert_eq!(
                e, r#"ERR SCHEMA "": [1] is not of type "object""#,
                "node {i}, {queue}"
            );
        }
        n.send_literal(&format!("PUB shop k id=s{i}"), br#"{"id":"a","note":"n"}"#)
            .await;
        n.expect(&format!("OK s{i} routed=1")).await;
        n.ok(
            &format!("PUB \"\" q id=q{i} \"{{}}\""),
            &format!("OK q{i} routed=1"),
        )
        .await;
        n.send("GET q count=2 ack=auto").await;
        let (head, _) = n.msg().await;
        assert!(
            head.contains(" h.schema=orders h.schema-version=2"),
            "node {i}: {head}"
        );
        let (head, _) = n.msg().await;
        assert!(
            head.contains(" h.schema=audit h.schema-version=1"),
            "node {i}: {head}"
        );
        n.expect("OK 2").await;
        let (_, table) = n.data("LIST SCHEMAS").await;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["audit", "1", "1", "full,transitive", "queue:q,queue:rq"],
                vec!["orders", "2", "2", "backward", "shop"],
            ],
            "node {i}"
        );
    }
    // Still in use; version numbers go on from before the restart.
    let mut c = TestConn::connect(nodes[&2].addr).await;
    c.err("SCHEMA DELETE audit", "PRECONDITION").await;
    let v3 = v2.replace(r#""note":"#, r#""tag":{"type":"string"},"note":"#);
    c.send_literal("SCHEMA ADD orders", v3.as_bytes()).await;
    c.expect("OK orders version=3").await;
    for i in [1u64, 3] {
        eventually(
            &nodes[&i],
            "SCHEMA GET orders version=3",
            "OK orders version=3",
        )
        .await;
    }
}
