//! Membership changes under load: a node added and another removed while
//! a publisher runs; a replicated queue's members follow the cluster's
//! (the removed member replaced by the new node), and nothing confirmed
//! is lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::faults::{publish, Seen};
use super::{
    check_drained, publish_confirmed, queue_leader, start_joining, three_with_queue, Cluster,
};
use crate::common::{TestConn, DEADLINE};

/// The value of `key` in a `STATS` text.
fn stat<'a>(stats: &'a str, key: &str) -> &'a str {
    stats
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next().unwrap_or_default())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_replicated_queue_follows_the_members_changed_under_load_and_loses_nothing() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let mut c = TestConn::connect(nodes[&2].addr).await;
    // Publishing through nodes 2 and 3 all along.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(
        vec![nodes[&2].addr, nodes[&3].addr],
        seen.clone(),
        stop.clone(),
    ));

    // Node 4 joins, node 1 leaves: the queue's members become 2, 3, 4.
    let (fourth, addr4) = start_joining(4).await;
    c.ok(&format!("CLUSTER ADD 4 {addr4}"), "OK members=1,2,3,4")
        .await;
    nodes.insert(4, fourth);
    c.ok("CLUSTER REMOVE 1", "OK members=2,3,4").await;
    let until = tokio::time::Instant::now() + 6 * DEADLINE;
    loop {
        let (_, stats) = c.data("STATS QUEUE jobs").await;
        let mut members: Vec<&str> = stat(&stats, "replica_members").split(',').collect();
        members.sort_unstable();
        if members == ["2", "3", "4"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the members never followed: {stats}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    nodes.get_mut(&1).expect("node 1").kill().await;
    nodes.remove(&1);
    // The load goes on a while without node 1.
    let before = seen.lock().expect("seen").confirmed.len();
    let until = tokio::time::Instant::now() + 6 * DEADLINE;
    while seen.lock().expect("seen").confirmed.len() < before + 200 {
        assert!(
            tokio::time::Instant::now() < until,
            "no publish after node 1 left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.await;
    // Once every member has the whole log (node 4 caught up), node 3 may
    // go: nodes 2 and 4 are a majority of the queue's group, and node 4
    // has every message.
    let leader = queue_leader(&nodes, "jobs").await;
    let until = tokio::time::Instant::now() + 6 * DEADLINE;
    loop {
        let mut l = TestConn::connect(nodes[&leader].addr).await;
        let (_, stats) = l.data("STATS QUEUE jobs").await;
        if stat(&stats, "replica_lag_max") == "0" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    nodes.get_mut(&3).expect("node 3").kill().await;
    nodes.remove(&3);
    let mut confirmed: BTreeSet<String> = seen.lock().expect("seen").confirmed.clone();
    let attempted: BTreeSet<String> = seen
        .lock()
        .expect("seen")
        .attempted
        .iter()
        .cloned()
        .chain(std::iter::once("last".to_string()))
        .collect();
    publish_confirmed(nodes[&2].addr, "jobs", "last").await;
    confirmed.insert("last".into());
    check_drained(&nodes, "jobs", &confirmed, &attempted).await;
    assert!(confirmed.len() > 10, "hardly anything was published");
}
