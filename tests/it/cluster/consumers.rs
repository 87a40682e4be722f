//! Consumers on any node: a `SUB` to a replicated queue on a node that
//! does not lead it gets the leader's deliveries through that node, its
//! acks hold through a failover, and it is told when the leader goes.

use std::collections::BTreeSet;

use super::{drain, publish_some, queue_leader, three_nodes, three_with_queue, Cluster};
use crate::common::{Peer, TestConn, DEADLINE};

/// `SUB` on `p` until it is answered `OK` (an election may answer
/// `ERR UNAVAILABLE` meanwhile).
async fn subscribe(p: &mut Peer, line: &str) {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = p.cmd(line).await;
        if got.starts_with("OK") {
            return;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{line}: {got}");
        assert!(tokio::time::Instant::now() < until, "{line}: never OK");
    }
}

#[tokio::test]
async fn a_subscriber_on_a_follower_gets_the_leaders_deliveries_and_its_acks_hold_through_a_failover(
) {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut confirmed = BTreeSet::new();
    let all: Vec<u64> = (1..=3).collect();
    publish_some(&nodes, &all, 30, &mut confirmed).await;

    let mut s = Peer::over(TestConn::connect(nodes[&follower].addr).await);
    subscribe(&mut s, "SUB jobs prefetch=10 tag=t").await;
    // The prefetch bounds what the leader sends: the leader's consumer
    // holds 10 in flight, the subscriber's node no more.
    let mut delivered = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut held = Vec::new();
    for _ in 0..10 {
        let m = s.msg().await;
        assert_eq!(m.ctag, "t");
        assert!(!m.redelivered, "{}", m.head);
        delivered.insert(m.text());
        held.push(m);
    }
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let (_, consumers) = l.data("LIST CONSUMERS jobs").await;
    let cells = super::row(&consumers, 1);
    // queue, tag, connection, ack, prefetch, in_flight, exclusive
    assert_eq!(
        (cells[1], cells[4], cells[5]),
        ("t", "10", "10"),
        "the leader's consumer for the follower's subscription: {consumers}"
    );
    s.quiet().await;
    // Acks through the follower settle on the leader, and free the
    // prefetch there: the rest comes.
    let last = held.last().expect("held").dtag;
    s.ok(&format!("ACK {last} multiple"), "OK").await;
    acked.extend(held.drain(..).map(|m| m.text()));
    while delivered.len() < 30 {
        let m = s.msg().await;
        delivered.insert(m.text());
        held.push(m);
        if held.len() == 10 {
            let last = held.last().expect("held").dtag;
            s.ok(&format!("ACK {last} multiple"), "OK").await;
            acked.extend(held.drain(..).map(|m| m.text()));
        }
    }
    assert_eq!(delivered, confirmed);
    // Two more, one acked, one held when the leader dies.
    publish_some(&nodes, &all, 2, &mut confirmed).await;
    let a = s.msg().await;
    let b = s.msg().await;
    delivered.extend([a.text(), b.text()]);
    s.ok(&format!("ACK {}", a.dtag), "OK").await;
    acked.insert(a.text());

    let mut dead = nodes.remove(&leader).expect("leader");
    dead.kill().await;
    let notice = s.notice().await;
    assert_eq!(notice, "NOTICE cancelled t reason=leader-moved");
    // What it held stays outstanding: acking it is recorded in the log
    // (the OK once a new leader has committed it).
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = s.cmd(&format!("ACK {}", b.dtag)).await;
        if got == "OK" {
            acked.insert(b.text());
            break;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
        assert!(tokio::time::Instant::now() < until, "the ack never held");
    }
    // Subscribed again on the same node: the new leader's deliveries.
    let survivors: Vec<u64> = nodes.keys().copied().collect();
    publish_some(&nodes, &survivors, 5, &mut confirmed).await;
    subscribe(&mut s, "SUB jobs prefetch=10 tag=t").await;
    let mut after = BTreeSet::new();
    while after.len() < 5 {
        let m = s.msg().await;
        s.ok(&format!("ACK {}", m.dtag), "OK").await;
        after.insert(m.text());
    }
    // A publish answered ERR UNAVAILABLE during the election may have been
    // stored all the same, and come twice: nothing else may come.
    s.ok("PING", "OK pong").await;
    after.extend(s.take_buffered().into_iter().map(|m| m.text()));
    let again: Vec<_> = after.intersection(&acked).collect();
    assert!(
        again.is_empty(),
        "acked (OK), then delivered again: {again:?}"
    );
    delivered.extend(after);
    assert_eq!(delivered, confirmed, "lost, or delivered unpublished");
}

#[tokio::test]
async fn a_subscriber_on_a_node_that_is_not_a_member_is_served_and_what_it_held_goes_back() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE jobs replicas=2",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    let leader = queue_leader(&nodes, "jobs").await;
    // The node that keeps no copy.
    let (_, stats) = c.data("STATS QUEUE jobs").await;
    let members = stats
        .lines()
        .find_map(|l| l.strip_prefix("replica_members "))
        .expect("members")
        .trim()
        .to_string();
    let outside = (1..=3u64)
        .find(|i| !members.split(',').any(|m| m == i.to_string()))
        .expect("a node outside the queue's group");
    let mut confirmed = BTreeSet::new();
    publish_some(&nodes, &[outside], 6, &mut confirmed).await;

    let mut s = Peer::over(TestConn::connect(nodes[&outside].addr).await);
    subscribe(&mut s, "SUB jobs prefetch=4 tag=far").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(s.msg().await);
    }
    s.quiet().await;
    // `GET` is still the leader's.
    let refused = s.err("GET jobs", "PRECONDITION").await;
    assert!(refused.contains("consume from its leader"), "{refused}");
    // UNSUB: nothing more comes; what it holds can still be acked.
    s.ok("UNSUB far", "OK").await;
    s.ok(&format!("ACK {}", held[0].dtag), "OK").await;
    s.quiet().await;
    // Its connection closes holding three: they go back to the leader's
    // queue, redelivered there with the two never sent.
    drop(s);
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let until = tokio::time::Instant::now() + DEADLINE;
    let rest = loop {
        let (_, stats) = l.data("STATS QUEUE jobs").await;
        let ready = stats
            .lines()
            .find_map(|l| l.strip_prefix("messages_ready"))
            .map(str::trim);
        if ready == Some("5") {
            break drain(&mut l, "jobs").await;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the held deliveries never came back: {stats}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut expected = confirmed.clone();
    expected.remove(&held[0].text());
    let rest: BTreeSet<String> = rest.into_iter().collect();
    assert_eq!(rest, expected);
}

#[tokio::test]
async fn a_subscriber_through_a_follower_is_told_when_the_leader_is_paused_and_goes_on_with_the_new_one(
) {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut confirmed = BTreeSet::new();
    publish_some(&nodes, &[follower], 3, &mut confirmed).await;
    let mut s = Peer::over(TestConn::connect(nodes[&follower].addr).await);
    subscribe(&mut s, "SUB jobs tag=p").await;
    for _ in 0..3 {
        let m = s.msg().await;
        s.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    // A paused leader keeps its connections open: the link's beats stop,
    // and the subscriber is told.
    nodes[&leader].signal(libc::SIGSTOP);
    let notice = s.notice().await;
    assert_eq!(notice, "NOTICE cancelled p reason=leader-moved");
    let before = confirmed.clone();
    publish_some(&nodes, &[follower], 3, &mut confirmed).await;
    let after: BTreeSet<String> = confirmed.difference(&before).cloned().collect();
    subscribe(&mut s, "SUB jobs tag=p").await;
    let mut got = BTreeSet::new();
    while got.len() < 3 {
        let m = s.msg().await;
        s.ok(&format!("ACK {}", m.dtag), "OK").await;
        got.insert(m.text());
    }
    // A publish that met the election may have been stored twice: nothing
    // else may come.
    s.ok("PING", "OK pong").await;
    got.extend(s.take_buffered().into_iter().map(|m| m.text()));
    nodes[&leader].signal(libc::SIGCONT);
    assert_eq!(got, after, "the new leader's deliveries");
}

#[tokio::test]
async fn prefetch_bytes_through_a_follower_is_applied_by_the_leader() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut confirmed = BTreeSet::new();
    // j1 .. j5: two bytes each.
    publish_some(&nodes, &[leader], 5, &mut confirmed).await;
    let mut s = Peer::over(TestConn::connect(nodes[&follower].addr).await);
    subscribe(&mut s, "SUB jobs prefetch-bytes=5 tag=t").await;
    // 2 + 2 bytes fit in 5; a third body would make 6.
    let first = s.msg().await;
    let second = s.msg().await;
    s.quiet().await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let (_, consumers) = l.data("LIST CONSUMERS jobs").await;
    let cells = super::row(&consumers, 1);
    // ..., exclusive, prefetch_bytes, bytes_in_flight, ...
    assert_eq!(
        (cells[1], cells[7], cells[8]),
        ("t", "5", "4"),
        "the leader's consumer holds the budget: {consumers}"
    );
    s.ok(&format!("ACK {}", first.dtag), "OK").await;
    let third = s.msg().await;
    assert_ne!(third.text(), second.text());
    s.quiet().await;
}
