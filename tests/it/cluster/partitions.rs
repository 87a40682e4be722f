//! Partitions: a node cut off from the others by the test's proxies
//! (`net.rs`). The side without a majority confirms nothing; the majority
//! goes on; once healed, nothing confirmed is lost and the nodes agree.

use std::collections::{BTreeSet, HashMap};

use super::{check_drained, publish_some, three_with_queue, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

/// The node of `among` that serves `queue` (its `PEEK` is not refused),
/// waiting for one.
async fn leader_among(nodes: &HashMap<u64, Spawned>, among: &[u64], queue: &str) -> u64 {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        for id in among {
            let mut c = TestConn::connect(nodes[id].addr).await;
            let got = c.cmd(&format!("PEEK {queue} count=1")).await;
            if !got.starts_with("ERR") {
                return *id;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no leader for {queue} among {among:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_leader_cut_off_confirms_nothing_and_the_majority_goes_on_losing_nothing() {
    let (cluster, net) = Cluster::behind_proxies().await;
    let dirs = super::three_dirs();
    let nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let all = [1, 2, 3];
    let leader = leader_among(&nodes, &all, "jobs").await;
    let mut confirmed = BTreeSet::new();
    publish_some(&nodes, &all, 30, &mut confirmed).await;

    // The queue's leader is cut off from both others.
    net.isolate(leader, 3);
    let others: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
    // Its side has no majority: a publish there is not confirmed, and
    // says it may or may not be stored; nor is a change of the topology.
    let mut cut = TestConn::connect(nodes[&leader].addr).await;
    let got = cut.cmd("PUB \"\" jobs cut-off").await;
    assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
    let mut attempted = confirmed.clone();
    attempted.insert("cut-off".to_string());
    cut.err("DECLARE EXCHANGE cut-off-x direct", "UNAVAILABLE")
        .await;
    // The majority elects a leader of its own and confirms publishes
    // (through either of its nodes).
    publish_some(&nodes, &others, 30, &mut confirmed).await;
    attempted.extend(confirmed.iter().cloned());
    let new = leader_among(&nodes, &others, "jobs").await;
    assert_ne!(new, leader);
    let mut n = TestConn::connect(nodes[&new].addr).await;
    n.ok("DECLARE EXCHANGE majority-x direct", "OK").await;

    // Healed: the old leader follows, and gets what the majority did.
    net.heal();
    publish_some(&nodes, &all, 10, &mut confirmed).await;
    attempted.extend(confirmed.iter().cloned());
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = cut.cmd("DECLARE EXCHANGE majority-x direct").await;
        if got.starts_with("OK") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{got}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, exchanges) = cut.data("LIST EXCHANGES").await;
    assert!(!exchanges.contains("cut-off-x"), "{exchanges}");

    // Every confirmed message is delivered, and nothing that was not
    // published.
    check_drained(&nodes, "jobs", &confirmed, &attempted).await;
}
