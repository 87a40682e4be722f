//! The schema registry on a cluster: `SCHEMA ADD` and `DELETE` go through
//! the metadata group, so every node checks `PUB`s against the same
//! versions, and an exchange's `schema=` is everywhere.

use super::{eventually, three_nodes, Cluster};
use crate::common::TestConn;

#[tokio::test]
async fn schema_changes_reach_every_node() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
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
