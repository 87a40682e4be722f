//! Replicated queues (`replicas=`): publish anywhere, consume on the
//! leader, and lose no confirmed message through a killed or paused leader,
//! a killed follower, or every node killed and restarted.

use super::{
    drain, publish_some, queue_leader, row, start_node, three_nodes, three_with_queue, Cluster,
};
use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

#[tokio::test]
async fn a_replicated_queue_keeps_every_confirmed_message_when_its_leader_is_killed() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE orders replicas=3",
        "OK orders messages=0 consumers=0",
    )
    .await;
    // What a replicated queue does not take yet is refused, not ignored.
    for bad in [
        "replicas=3 max-length=10 overflow=block",
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
    let header = row(&table, 0);
    let first = row(&table, 1);
    assert_eq!(header.last(), Some(&"leader"), "{table}");
    assert_eq!(
        first.last().copied(),
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
    // The OK comes once the settlement is committed in the queue's log.
    l.ok("ACK 30 multiple", "OK").await;
    let acked = delivered.clone();
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
    let after = drain(&mut n, "orders").await;
    // What was acked (OK) before the kill is not delivered again.
    let again: Vec<_> = after.iter().filter(|b| acked.contains(*b)).collect();
    assert!(again.is_empty(), "acked, then delivered again: {again:?}");
    delivered.extend(after);

    // Every confirmed message was delivered at least once, and nothing
    // was delivered that was not published.
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let unknown: Vec<_> = delivered.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}

/// Publishes pipelined on one connection reach a replicated queue in the
/// order sent, through its leader and through another node alike: each
/// copy is handed to the queue's log as its `PUB` is read, not when its
/// confirm is first waited for.
#[tokio::test]
async fn pipelined_publishes_keep_their_order_in_a_replicated_queue() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_with_queue(&cluster, &dirs, "ordered").await;
    let leader = queue_leader(&nodes, "ordered").await;
    let other = *nodes.keys().find(|id| **id != leader).expect("a follower");
    let mut sent = Vec::new();
    for via in [leader, other] {
        let mut p = TestConn::connect(nodes[&via].addr).await;
        let bodies: Vec<String> = (0..200).map(|i| format!("n{via}-{i:03}")).collect();
        for b in &bodies {
            p.send(&format!("PUB \"\" ordered {b}")).await;
        }
        for b in &bodies {
            let got = p.line().await;
            assert!(got.starts_with("OK"), "{b}: {got}");
        }
        sent.extend(bodies);
    }
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    assert_eq!(drain(&mut l, "ordered").await, sent);
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

#[tokio::test]
async fn a_replicated_queue_loses_nothing_through_a_paused_leader_a_killed_follower_and_a_restart_of_every_node(
) {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
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
    let mut w = TestConn::connect(nodes[&leader].addr).await;
    w.ok("SUB jobs prefetch=1 tag=w", "OK w").await;
    w.msg().await;
    nodes[&leader].signal(libc::SIGSTOP);
    let other = (1..=3).find(|i| *i != leader).expect("another");
    publish_some(&nodes, &[other], 20, &mut confirmed).await;
    nodes[&leader].signal(libc::SIGCONT);
    publish_some(&nodes, &[1, 2, 3], 20, &mut confirmed).await;
    // Its subscriber is told that it no longer leads (the delivery it
    // holds, never acked, comes again from the new leader).
    w.expect("NOTICE cancelled w reason=leader-moved").await;
    drop(w);

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

/// Queue `queue`'s `replica_<key>` on `node` (`STATS QUEUE`), as a number
/// (0 for `none`).
async fn replica_stat(node: &Spawned, queue: &str, key: &str) -> u64 {
    let mut c = TestConn::connect(node.addr).await;
    let (_, stats) = c.data(&format!("STATS QUEUE {queue}")).await;
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("replica_{key} ")))
        .map(str::trim)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn snapshots_bound_a_replicated_queue_s_log_and_bring_a_member_far_behind_up_to_date() {
    let cluster = Cluster::new().with(&["--snapshot-every", "100"]);
    let dirs = super::three_dirs();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let behind = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[leader], 150, &mut confirmed).await;
    // A member far behind: down while the others snapshot and purge.
    nodes.get_mut(&behind).expect("behind").kill().await;
    publish_some(&nodes, &[leader], 300, &mut confirmed).await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET jobs count=100").await;
    let mut acked = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let (_, body) = l.msg().await;
        acked.insert(String::from_utf8(body).expect("utf-8"));
    }
    l.expect("OK 100").await;
    l.ok("ACK 100 multiple", "OK").await;
    drop(l);
    // openraft takes snapshots and purges behind them in the background:
    // the leader's log is purged past where the member stopped, soon.
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    let purged = loop {
        let purged = replica_stat(&nodes[&leader], "jobs", "purged_index").await;
        if purged > 150 {
            break purged;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the leader's log was not purged past 150: {purged}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let snapshot = replica_stat(&nodes[&leader], "jobs", "snapshot_index").await;
    assert!(snapshot >= purged, "snapshot {snapshot}, purged {purged}");
    let files = std::fs::read_dir(dirs[leader as usize - 1].path().join("snapshots"))
        .expect("the snapshots' directory")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .count();
    assert_eq!(files, 1, "one snapshot file per group");

    // Back, it gets the leader's snapshot (what it missed is purged).
    nodes.insert(behind, start_node(&cluster, &dirs, behind as usize).await);
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    while replica_stat(&nodes[&behind], "jobs", "last_applied").await < purged {
        assert!(tokio::time::Instant::now() < until, "it never caught up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(replica_stat(&nodes[&behind], "jobs", "snapshot_index").await > 0);

    // The leader goes: the one that was behind and the other lead with
    // every message not acked, and none acked.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "jobs").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    let delivered: std::collections::BTreeSet<String> =
        drain(&mut n, "jobs").await.into_iter().collect();
    let want: std::collections::BTreeSet<String> = confirmed.difference(&acked).cloned().collect();
    assert_eq!(delivered, want);
}

#[tokio::test]
async fn a_publish_held_by_a_full_queue_that_also_reaches_a_replicated_one_confirms_once_committed()
{
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE rep replicas=3",
        "OK rep messages=0 consumers=0",
    )
    .await;
    // A queue of node 1's own that holds publishes when full.
    c.ok(
        "DECLARE QUEUE full max-length=1 overflow=block",
        "OK full messages=0 consumers=0",
    )
    .await;
    c.ok("DECLARE EXCHANGE both fanout", "OK").await;
    c.ok("BIND rep both", "OK").await;
    c.ok("BIND full both", "OK").await;
    let got = c.cmd("PUB both \"\" one").await;
    assert!(got.ends_with("routed=2"), "{got}");
    // Held by the full queue; the connection's next command waits.
    c.send("PUB both \"\" two").await;
    c.send("PING").await;
    assert_eq!(c.line().await, "NOTICE blocked queue=full");
    let mut other = TestConn::connect(nodes[&1].addr).await;
    other.send("GET full").await;
    let (_, body) = other.msg().await;
    assert_eq!(body, b"one");
    other.expect("OK 1").await;
    other.ok("ACK 1", "OK").await;
    // Run again once there is room: its confirm waits for the replicated
    // queue's commit, and the replies keep their order.
    let got = c.line().await;
    assert!(got.starts_with("OK ") && got.ends_with("routed=2"), "{got}");
    // (The notice is a push: it may come before or after the PING's
    // reply, which waited behind the confirm.)
    let mut next = [c.line().await, c.line().await];
    next.sort();
    assert_eq!(next, ["NOTICE unblocked queue=full", "OK pong"]);
    let leader = queue_leader(&nodes, "rep").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let mut bodies = drain(&mut l, "rep").await;
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
}

#[tokio::test]
async fn the_cli_subscribed_through_a_follower_goes_on_through_a_failover() {
    use tokio::io::AsyncBufReadExt;
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[1, 2, 3], 3, &mut confirmed).await;
    let leader = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sub", "jobs", "-s", &nodes[&follower].addr.to_string()])
        .env_remove("SLUICE_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sluice sub");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = std::collections::BTreeSet::new();
    while printed.len() < 3 {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("printed in time")
            .expect("read")
            .expect("sluice sub ended early");
        printed.insert(line);
    }
    // The leader dies under the CLI's subscription (through the
    // follower): it subscribes again, and the new leader's deliveries
    // come.
    nodes.remove(&leader).expect("leader").kill().await;
    let survivors: Vec<u64> = nodes.keys().copied().collect();
    publish_some(&nodes, &survivors, 3, &mut confirmed).await;
    while !confirmed.is_subset(&printed) {
        let line = tokio::time::timeout(3 * DEADLINE, lines.next_line())
            .await
            .expect("printed in time")
            .expect("read");
        let Some(line) = line else {
            let out = child.wait_with_output().await.expect("sluice sub");
            panic!("sluice sub ended early: {out:?}");
        };
        printed.insert(line);
    }
    let unknown: Vec<_> = printed.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}
